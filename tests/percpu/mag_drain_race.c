/* SPDX-License-Identifier: MIT */
/*
 * The drain handshake against interleavings a stress run seldom makes,
 * each in a fixed order: the library is built with the per-CPU hook points
 * (CAIRN_PERCPU_TEST_HOOK), and the test parks a CPU at one of them while
 * others act.
 *
 *  slow path: the owner parked in its miss, inside the depot pop of the
 *    full stack (it read the top), holding an empty magazine; a drainer
 *    pops and frees that very magazine and asks the owner. The owner's pop
 *    must fail and find the depot empty (the miss then takes one item:
 *    lean), and its answer at the next poll lets the drainer return.
 *  two drainers: the owner parked in its answer after reading the request
 *    of the first, before emptying its slot; a second drainer asks then.
 *    The first returns on that answer, the second on the emptied slot (it
 *    holds nothing to wait for); the owner's next operation answers the
 *    second request before it serves.
 *  departure: the owner parked in its own drain_cpu (leaving) after reading
 *    the request; a drainer asks then; the owner leaves with the request
 *    unanswered. The drainer returns on the empty slot, not after
 *    drain_wait; a new thread takes the slot, and its first operation
 *    answers the request.
 *  leaving while drained: a drainer parked after asking; the owner leaves
 *    (drain_cpu) before the drainer waits; the drainer returns on that.
 *  left while drained: a drainer parked after asking; the owner's thread
 *    unregisters and exits without draining, its slot full. The drainer
 *    waits, and empties the slot itself once the port lends it (no thread
 *    holds it): it returns with every item back, the request answered,
 *    and a new thread finds the slot empty.
 *  joiner and drain: a thread leaves its slot full and is joined; its
 *    joiner empties the slot with drain_cpu (it knows that no thread took
 *    the slot since) while a drain runs. The drain borrowed the slot and
 *    is parked in its answer when the joiner's drain_cpu starts, or the
 *    joiner is parked in its answer when the drain starts: either way the
 *    second must wait for the first to be done with the slot, not empty
 *    it at the same time.
 *  an unregistered drainer: the thread of slot 0 leaves it full; a drain
 *    borrows it and parks in its answer; a thread that never registered
 *    (it runs as CPU 0) drains: its own CPU's part must wait for the
 *    slot, not empty it at the same time.
 *  left in a short wait: as left while drained, with a drain_wait shorter
 *    than the turns between the drainer's looks at the port. The drainer
 *    still empties the slot before it gives up on it.
 *
 * Expected every time: each item exactly once (in a thread's hands, a
 * magazine, or the source: the reference source counts a put of an item
 * that is not out), a drainer returns only once the CPU it waits for has
 * emptied its slot, and at once when it has, and no magazine frame is left
 * behind.
 */
#define _GNU_SOURCE
#include <cairn/host.h>
#include <cairn/magazine.h>

#include <pthread.h>
#include <semaphore.h>
#include <errno.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "ref_source.h"
#include "../../percpu/magazine_layout.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4
#define NITEMS 64
#define MAG 4

static struct cairn_frames *frames;

/* ---- CPU threads that run steps on command, and park at a hook ---- */

#define CPU_THREAD_OWN                                                         \
	uint64_t hand[NITEMS]; /* items in this thread's hands */              \
	unsigned nhand;
#include "cpu_thread.h"

/* ---- the cache and its steps ---- */

static struct ref_source src;
static struct cairn_mag_cache *mc;
static struct cpu_thread cpu[NCPUS];
static unsigned watched;	 /* the CPU a drainer waits for */
static uint32_t ret_nmag[NCPUS]; /* its magazines when a drainer returned */

static void step_alloc(struct cpu_thread *ct)
{
	REQUIRE(ct->nhand < NITEMS);
	CHECK_EQ(cairn_mag_alloc(mc, &ct->hand[ct->nhand]), 0);
	ct->nhand++;
}

static void step_alloc4(struct cpu_thread *ct)
{
	for (unsigned i = 0; i < 4; i++)
		step_alloc(ct);
}

static void step_free_all(struct cpu_thread *ct)
{
	while (ct->nhand)
		cairn_mag_free(mc, ct->hand[--ct->nhand]);
}

static void step_poll(struct cpu_thread *ct)
{
	(void)ct;
	cairn_mag_poll(mc);
}

static void step_leave(struct cpu_thread *ct)
{
	CHECK_EQ(cairn_mag_drain_cpu(mc, ct->cpu), 0);
}

/* The joiner of the thread that left slot `watched`: empties it. */
static void step_drain_left(struct cpu_thread *ct)
{
	CHECK_EQ(cairn_mag_drain_cpu(mc, watched), 0);
	atomic_store(&ct->drained, true);
	sem_post(&ct->event);
}

static void step_drain(struct cpu_thread *ct)
{
	cairn_mag_drain_all(mc);
	/* ack's acquire orders the answer's publication before this */
	ret_nmag[ct->cpu] = atomic_load_explicit(&mc->cpu[watched].nmag,
						 memory_order_relaxed);
	atomic_store(&ct->drained, true);
	sem_post(&ct->event);
}

/* Let a drainer parked after asking go on; `waits`: it must then wait for
 * an answer, else it must return without waiting. */
static void let_drainer_go(struct cpu_thread *d, bool waits)
{
	d->noted = false;
	atomic_store(&d->drained, false);
	let_go(d);
	wait_for(&d->event, d, "waiting or returning"); /* either */
	CHECK_EQ(atomic_load(&d->drained), !waits);
}

static struct cairn_mag_cpu_stats cpu_stats(unsigned c)
{
	struct cairn_mag_cpu_stats st;
	REQUIRE(cairn_mag_cpu_stats(mc, c, &st) == 0);
	return st;
}

static struct cairn_mag_stats stats(void)
{
	struct cairn_mag_stats st;
	cairn_mag_stats(mc, &st);
	return st;
}

/* Every item once: in hands + cached + in the source == all of them. */
static void check_conserved(const char *when)
{
	uint64_t hands = 0;
	for (unsigned i = 0; i < NCPUS; i++)
		hands += cpu[i].nhand;
	struct cairn_mag_stats st = stats();
	uint64_t total = hands + st.cpu_held + st.depot_items + ref_free(&src);
	if (total != NITEMS || src.errors)
		fprintf(stderr, "%s: %llu in hands, %llu in slots, %llu in the "
			"depot, %llu in the source, %llu bad puts\n", when,
			(unsigned long long)hands, (unsigned long long)st.cpu_held,
			(unsigned long long)st.depot_items,
			(unsigned long long)ref_free(&src),
			(unsigned long long)src.errors);
	CHECK_EQ(total, NITEMS);
	CHECK_EQ(src.errors, 0);
}

/* no drainer here may give up unless the case says so: it waits for
 * every answer (the timed waits end a run where one never comes) */
#define WAIT_ALL (1u << 31)

static void setup_wait(unsigned drain_wait)
{
	ref_init(&src, NITEMS);
	struct cairn_mag_config c = {
		.source = ref_as_source(&src), .frames = frames, .ncpus = NCPUS,
		.mag_size = MAG, .depot_full = 4, .depot_empty = 4,
		.drain_wait = drain_wait,
	};
	REQUIRE(cairn_mag_create(&mc, &c) == 0);
	for (unsigned i = 1; i < NCPUS; i++)
		cpu_start(&cpu[i], i);
}

static void setup(void)
{
	setup_wait(WAIT_ALL);
}

static void teardown(const char *name)
{
	for (unsigned i = 1; i < NCPUS; i++) {
		run_wait(&cpu[i], step_free_all);
		run_wait(&cpu[i], step_leave);
		cpu_stop(&cpu[i]);
	}
	check_conserved(name);
	cairn_mag_drain_all(mc);
	struct cairn_mag_stats st = stats();
	CHECK_EQ(st.cpu_held + st.depot_items, 0);
	CHECK_EQ(st.magazines, 0);
	cairn_mag_destroy(mc);
	CHECK_EQ(ref_free(&src), NITEMS);
	CHECK_EQ(src.errors, 0);
	free(src.out);
	free(src.stack);
}

/* ---- the interleavings ---- */

static void slow_path(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d = &cpu[2], *h = &cpu[3];
	watched = 1;
	/* The owner empties the magazine of its refill. */
	run_wait(o, step_alloc4);
	CHECK_EQ(cpu_stats(1).magazines, 1);
	CHECK_EQ(cpu_stats(1).held, 0);
	/* CPU 3 leaves one full magazine in the depot: 12 frees fill loaded
	 * and prev and push the first full prev. */
	for (unsigned i = 0; i < 3; i++)
		run_wait(h, step_alloc4);
	run_wait(h, step_free_all);
	run_wait(h, step_leave);
	CHECK_EQ(stats().depot_full, 1);
	/* The owner misses: parked in the pop of the full stack, top read. */
	run_parked(o, step_alloc, CAIRN_HOOK_DEPOT_POP, &mc->full);
	/* The drainer takes that magazine from the depot, frees its frame,
	 * and asks the owner (it holds the empty one). */
	run_parked(d, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	CHECK_EQ(stats().depot_full, 0);
	CHECK_EQ(stats().depot_empty, 0);
	CHECK_EQ(stats().magazines, 1); /* its frame is free, the owner's left */
	let_go(o); /* its CAS fails; lean: one item from the source */
	wait_done(o);
	CHECK_EQ(o->nhand, 5);
	CHECK_EQ(cpu_stats(1).magazines, 1); /* not answered yet */
	let_drainer_go(d, true);
	run_wait(o, step_poll); /* the answer */
	wait_done(d);
	CHECK_EQ(ret_nmag[2], 0);
	CHECK_EQ(cpu_stats(1).magazines, 0);
	CHECK_EQ(stats().lean_gets, 1);
	teardown("slow path");
}

static void two_drainers(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d1 = &cpu[2], *d2 = &cpu[3];
	watched = 1;
	run_wait(o, step_alloc4);
	run_wait(o, step_free_all); /* one full magazine loaded */
	CHECK_EQ(cpu_stats(1).held, MAG);
	run_parked(d1, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	/* The owner reads the first request and parks before emptying. */
	run_parked(o, step_poll, CAIRN_HOOK_ANSWER, &mc->cpu[1]);
	run_parked(d2, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	CHECK_EQ(cpu_stats(1).magazines, 1); /* the second asked it too */
	CHECK(atomic_load(&mc->cpu[1].req) - mc->cpu[1].seen == 2);
	let_go(o);
	wait_done(o); /* answered the first request only */
	CHECK_EQ(cpu_stats(1).magazines, 0);
	CHECK_EQ(atomic_load(&mc->cpu[1].req) - atomic_load(&mc->cpu[1].ack), 1);
	let_drainer_go(d1, false);
	wait_done(d1);
	let_drainer_go(d2, false); /* the slot is empty: nothing to wait for */
	wait_done(d2);
	CHECK_EQ(ret_nmag[3], 0);
	CHECK_EQ(atomic_load(&mc->cpu[1].req) - atomic_load(&mc->cpu[1].ack), 1);
	run_wait(o, step_alloc); /* answers, then takes one item (lean) */
	CHECK_EQ(atomic_load(&mc->cpu[1].req), atomic_load(&mc->cpu[1].ack));
	CHECK_EQ(o->nhand, 1);
	teardown("two drainers");
}

static void departure(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d = &cpu[2];
	watched = 1;
	run_wait(o, step_alloc4);
	run_wait(o, step_free_all);
	/* Leaving: parked in its own drain_cpu, the request read. */
	run_parked(o, step_leave, CAIRN_HOOK_ANSWER, &mc->cpu[1]);
	run_parked(d, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	let_go(o);
	wait_done(o);
	cpu_stop(o); /* gone, the request unanswered */
	CHECK_EQ(cpu_stats(1).magazines, 0);
	CHECK(atomic_load(&mc->cpu[1].ack) != atomic_load(&mc->cpu[1].req));
	check_conserved("departure, gone");
	let_drainer_go(d, false); /* nothing there: no wait for a next thread */
	wait_done(d);
	CHECK_EQ(ret_nmag[2], 0);
	check_conserved("departure, drained");
	cpu_start(o, 1); /* a new thread in the old slot */
	run_wait(o, step_alloc4); /* the first answers */
	CHECK_EQ(atomic_load(&mc->cpu[1].req), atomic_load(&mc->cpu[1].ack));
	CHECK_EQ(o->nhand, 4);
	teardown("departure");
}

static void leave_while_drained(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d = &cpu[2];
	watched = 1;
	run_wait(o, step_alloc4);
	run_wait(o, step_free_all);
	run_parked(d, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	run_wait(o, step_leave); /* answers the request as it leaves */
	cpu_stop(o);
	let_drainer_go(d, false);
	wait_done(d);
	CHECK_EQ(ret_nmag[2], 0);
	CHECK_EQ(ref_free(&src), NITEMS);
	cpu_start(o, 1);
	teardown("leaving while drained");
}

static void left_while_drained(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d = &cpu[2];
	watched = 1;
	run_wait(o, step_alloc4);
	run_wait(o, step_free_all);
	CHECK_EQ(cpu_stats(1).held, MAG);
	run_parked(d, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	cpu_stop(o); /* unregistered, its slot as it was */
	CHECK_EQ(cpu_stats(1).magazines, 1);
	d->noted = false;
	let_go(d);
	wait_done(d);
	CHECK(d->noted); /* it waited for an answer first */
	CHECK_EQ(ret_nmag[2], 0);
	CHECK_EQ(ref_free(&src), NITEMS);
	CHECK_EQ(atomic_load(&mc->cpu[1].req), atomic_load(&mc->cpu[1].ack));
	cpu_start(o, 1);
	run_wait(o, step_alloc4);
	CHECK_EQ(o->nhand, 4);
	teardown("left while drained");
}

/* Run fn on ct armed to park in slot `watched`'s answer, and say which
 * comes first: that park (true), or the step's first wait for a slot or
 * an answer (false). */
static bool enters_slot(struct cpu_thread *ct, void (*fn)(struct cpu_thread *))
{
	ct->noted = false;
	atomic_store(&ct->drained, false);
	ct->at = CAIRN_HOOK_ANSWER;
	ct->obj = &mc->cpu[watched];
	ct->arm = true;
	run(ct, fn);
	for (unsigned ms = 0; ms < 10000; ms++) {
		if (sem_trywait(&ct->parked) == 0)
			return true;
		if (sem_trywait(&ct->event) == 0) {
			/* a wait, not the step's end */
			CHECK(!atomic_load(&ct->drained));
			return false;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	fprintf(stderr, "CPU %u: neither a park nor a wait came\n", ct->cpu);
	exit(1);
}

/* The end of ct's step, letting it go if it parks at the point it was
 * armed for (a drain that waited may still take the slot from the port
 * once the other gave it back, and answer in it). */
static void finish(struct cpu_thread *ct)
{
	for (unsigned ms = 0; ms < 10000; ms++) {
		if (sem_trywait(&ct->done) == 0)
			return;
		if (sem_trywait(&ct->parked) == 0)
			let_go(ct);
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	fprintf(stderr, "CPU %u: the end of a step never came\n", ct->cpu);
	exit(1);
}

/* Slot 1 full, its thread unregistered and joined. */
static void leave_full(struct cpu_thread *o)
{
	run_wait(o, step_alloc4);
	run_wait(o, step_free_all);
	CHECK_EQ(cpu_stats(1).held, MAG);
	cpu_stop(o);
}

static void joiner_after_drain(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d = &cpu[2], *j = &cpu[3];
	watched = 1;
	leave_full(o);
	/* The drain borrowed the slot: parked in its answer. */
	run_parked(d, step_drain, CAIRN_HOOK_ANSWER, &mc->cpu[1]);
	bool inside = enters_slot(j, step_drain_left);
	if (inside)
		fprintf(stderr, "joiner after drain: the joiner's drain_cpu empties "
			"slot 1 while a drain empties it\n");
	CHECK(!inside);
	let_go(d);
	wait_done(d);
	CHECK_EQ(ret_nmag[2], 0);
	if (!inside) /* the slot given back: the joiner takes it in turn */
		wait_for(&j->parked, j, "the park at a hook point");
	let_go(j);
	wait_done(j);
	CHECK_EQ(cpu_stats(1).magazines, 0);
	CHECK_EQ(ref_free(&src), NITEMS);
	CHECK_EQ(atomic_load(&mc->cpu[1].req), atomic_load(&mc->cpu[1].ack));
	cpu_start(o, 1);
	run_wait(o, step_alloc4);
	CHECK_EQ(o->nhand, 4);
	teardown("joiner after drain");
}

static void drain_after_joiner(void)
{
	setup();
	struct cpu_thread *o = &cpu[1], *d = &cpu[2], *j = &cpu[3];
	watched = 1;
	leave_full(o);
	/* The joiner in its drain_cpu: parked in the answer. */
	run_parked(j, step_drain_left, CAIRN_HOOK_ANSWER, &mc->cpu[1]);
	bool inside = enters_slot(d, step_drain);
	if (inside)
		fprintf(stderr, "drain after joiner: a drain empties slot 1 while "
			"the joiner's drain_cpu empties it\n");
	CHECK(!inside);
	let_go(j);
	wait_done(j);
	if (inside)
		let_go(d);
	finish(d); /* (on the emptied slot) */
	CHECK_EQ(ret_nmag[2], 0);
	CHECK_EQ(cpu_stats(1).magazines, 0);
	CHECK_EQ(ref_free(&src), NITEMS);
	cpu_start(o, 1);
	run_wait(o, step_alloc4); /* answers what is pending first */
	CHECK_EQ(atomic_load(&mc->cpu[1].req), atomic_load(&mc->cpu[1].ack));
	CHECK_EQ(o->nhand, 4);
	teardown("drain after joiner");
}

static void unregistered_drainer(void)
{
	setup();
	struct cpu_thread *d = &cpu[2], u;
	watched = 0;
	/* This thread fills slot 0 and leaves it. */
	uint64_t hand[MAG];
	for (unsigned i = 0; i < MAG; i++)
		REQUIRE(cairn_mag_alloc(mc, &hand[i]) == 0);
	for (unsigned i = 0; i < MAG; i++)
		cairn_mag_free(mc, hand[i]);
	CHECK_EQ(cpu_stats(0).held, MAG);
	cairn_host_cpu_unregister();
	run_parked(d, step_drain, CAIRN_HOOK_ANSWER, &mc->cpu[0]);
	cpu_start_as(&u, 0, true);
	bool inside = enters_slot(&u, step_drain);
	if (inside)
		fprintf(stderr, "unregistered drainer: it empties slot 0 while a "
			"drain empties it\n");
	CHECK(!inside);
	let_go(d);
	wait_done(d);
	if (inside)
		let_go(&u);
	finish(&u);
	CHECK_EQ(cpu_stats(0).magazines, 0);
	CHECK_EQ(ref_free(&src), NITEMS);
	cpu_stop(&u);
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	teardown("unregistered drainer");
}

static void left_in_short_wait(void)
{
	setup_wait(8); /* fewer turns than between two looks at the port */
	struct cpu_thread *o = &cpu[1], *d = &cpu[2];
	watched = 1;
	run_wait(o, step_alloc4);
	run_wait(o, step_free_all);
	run_parked(d, step_drain, CAIRN_HOOK_DRAIN_ASKED, NULL);
	cpu_stop(o); /* unregistered, its slot as it was */
	let_go(d);
	wait_done(d);
	if (ret_nmag[2])
		fprintf(stderr, "left in a short wait: the drain gave up on a slot "
			"no thread holds, still full\n");
	CHECK_EQ(ret_nmag[2], 0);
	CHECK_EQ(ref_free(&src), NITEMS);
	cpu_start(o, 1);
	teardown("left in a short wait");
}

int main(void)
{
	alarm(40); /* a wait the timed waits do not see */
	REQUIRE(cairn_host_init(NCPUS + 1, 0, 16 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 14 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS + 1 };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	uint64_t before = frames_free_total(frames);
	slow_path();
	two_drainers();
	departure();
	leave_while_drained();
	left_while_drained();
	joiner_after_drain();
	drain_after_joiner();
	unregistered_drainer();
	left_in_short_wait();
	CHECK_EQ(frames_free_total(frames), before);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	cairn_host_cpu_unregister();
	return check_done("mag_drain_race");
}
