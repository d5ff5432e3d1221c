/* SPDX-License-Identifier: MIT */
/*
 * The quantum cache in fixed interleavings of two or three CPUs, against
 * the library built with the per-CPU hook points (CAIRN_PERCPU_TEST_HOOK):
 * each CPU is a thread that runs steps on command and may park at a hook
 * point while the others act.
 *
 *  stale copy: a range freed twice, once on each of two CPUs, sits in both
 *    CPUs' magazines (the cache cannot tell the second free from a good
 *    one). The first copy goes back to the arena, which gives the range to
 *    another owner; the second copy's flush must leave that owner's range
 *    alone (and report it), not free it from under it.
 *  departure: CPU 1 caches the whole span in 2-quantum ranges (both its
 *    magazines and a full one in the depot); CPU 0 asks for one quantum,
 *    and its drain parks after asking CPU 1 in the 2-quantum cache. CPU 1
 *    leaves (drain_cpu) and its thread goes; the drainer must return
 *    without waiting, and the allocation succeed.
 *  answer parked: the same, but CPU 1 stays and is parked in its answer
 *    (the request read, its slot not emptied yet) when the drainer goes
 *    on: the drainer must wait, and succeed once the answer is done.
 *  free parked: CPU 1's free, its full prev pushed to the depot, parked
 *    in its pop of an empty magazine (top read); a drain takes that full
 *    magazine and that empty one (its frame freed) and asks. CPU 1's pop
 *    must fail and its free go into a fresh magazine; the drainer must
 *    wait for its answer, and then everything not in hands is free in
 *    the arena.
 *  bound: CPU 2 takes the whole span in quanta, CPU 1 frees them all; the
 *    depot stops at its limit, the rest goes back to the arena, and every
 *    count (held, depot, hits, misses, exchanges) is exact.
 *
 * Expected every time: every quantum of the span in exactly one place (in
 * a CPU's hands, in a cache, or free in the arena), every range in hands
 * allocated in the arena at its start with its size and the cache's
 * cookie, and at the end the span one free extent and every frame back.
 */
#define _GNU_SOURCE
#include <cairn/host.h>
#include <cairn/quantum_cache.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "../frames_total.h"
#include "../../percpu/magazine_layout.h"

#define MiB (1024ull * 1024)
#define NCPUS 3
#define Q 4096ull
#define VA 0x100000000000ull
#define SPAN_QUANTA 24
#define NHAND 64

static struct cairn_frames *frames;

/* ---- CPU threads that run steps on command, and park at a hook ---- */

#define CPU_THREAD_OWN                                                         \
	uint64_t hand[NHAND];   /* ranges in this CPU's hands ... */           \
	uint64_t quanta[NHAND]; /* ... and their sizes in quanta */            \
	unsigned nhand;                                                        \
	int err;                /* the last step's result */
#include "cpu_thread.h"

/* ---- the arena, the cache, and the steps ---- */

static struct cairn_arena arena;
static struct cairn_qcache *qc;
static struct cpu_thread cpu[NCPUS];
static unsigned step_quanta; /* the size the next alloc/free steps use */
static unsigned step_count;  /* and how many ranges */

static void step_alloc(struct cpu_thread *ct)
{
	for (unsigned i = 0; i < step_count; i++) {
		REQUIRE(ct->nhand < NHAND);
		ct->err = cairn_qcache_alloc(qc, step_quanta * Q, &ct->hand[ct->nhand]);
		if (ct->err)
			return;
		ct->quanta[ct->nhand++] = step_quanta;
	}
}

/* Free the last range in hands, and keep it there (a double free follows). */
static void step_free_keep(struct cpu_thread *ct)
{
	ct->err = cairn_qcache_free(qc, ct->hand[ct->nhand - 1],
				    ct->quanta[ct->nhand - 1] * Q);
}

/* Free step_count ranges from the end of the hands. */
static void step_free_n(struct cpu_thread *ct)
{
	for (unsigned i = 0; i < step_count; i++) {
		ct->nhand--;
		CHECK_EQ(cairn_qcache_free(qc, ct->hand[ct->nhand], ct->quanta[ct->nhand] * Q), 0);
	}
}

static void step_drain(struct cpu_thread *ct)
{
	cairn_qcache_drain_all(qc);
	atomic_store(&ct->drained, true);
}

static void step_free_all(struct cpu_thread *ct)
{
	while (ct->nhand) {
		ct->nhand--;
		CHECK_EQ(cairn_qcache_free(qc, ct->hand[ct->nhand], ct->quanta[ct->nhand] * Q), 0);
	}
}

static void step_poll(struct cpu_thread *ct)
{
	(void)ct;
	cairn_qcache_poll(qc);
}

static void step_leave(struct cpu_thread *ct)
{
	CHECK_EQ(cairn_qcache_drain_cpu(qc, ct->cpu), 0);
}

/* Quanta of the span free in the arena itself. */
static uint64_t arena_free_quanta(void)
{
	uint64_t n = 0, start, len, cookie;
	for (uint64_t at = VA; at < VA + SPAN_QUANTA * Q;) {
		int err = cairn_arena_lookup(&arena, at, &start, &len, &cookie);
		if (err == CAIRN_EFREE) {
			n++;
			at += Q;
		} else {
			REQUIRE(err == 0 && len);
			at = start + len;
		}
	}
	return n;
}

/* Every quantum once: in hands (each range the cache's, at its start, of
 * its size) + cached + free in the arena == the span. */
static void check_conserved(const char *when)
{
	uint64_t hands = 0, start, len, cookie;
	for (unsigned i = 0; i < NCPUS; i++)
		for (unsigned j = 0; j < cpu[i].nhand; j++) {
			hands += cpu[i].quanta[j];
			CHECK_EQ(cairn_arena_lookup(&arena, cpu[i].hand[j], &start, &len, &cookie), 0);
			CHECK(start == cpu[i].hand[j] && len == cpu[i].quanta[j] * Q &&
			      cookie == cairn_qcache_cookie(qc));
		}
	uint64_t cached = cairn_qcache_cached_quanta(qc), free = arena_free_quanta();
	if (hands + cached + free != SPAN_QUANTA)
		fprintf(stderr, "%s: %llu quanta in hands, %llu cached, %llu free\n", when,
			(unsigned long long)hands, (unsigned long long)cached,
			(unsigned long long)free);
	CHECK_EQ(hands + cached + free, SPAN_QUANTA);
	CHECK_EQ(cairn_arena_validate(&arena), 0);
}

static void setup(void)
{
	struct cairn_arena_config acfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&arena, frames, VA, SPAN_QUANTA * Q, &acfg) == 0);
	struct cairn_qcache_config cfg = {
		.max_quanta = 4, .ncpus = NCPUS, .mag_size = 4,
		.depot_full = 2, .depot_empty = 2,
		/* no drainer here may give up: it waits for every answer (the
		 * timed waits end a run where one never comes) */
		.drain_wait = 1u << 31,
	};
	REQUIRE(cairn_qcache_create(&qc, &arena, frames, &cfg) == 0);
	for (unsigned i = 0; i < NCPUS; i++)
		cpu_start(&cpu[i], i);
}

static void teardown(const char *name)
{
	for (unsigned i = 0; i < NCPUS; i++) {
		run_wait(&cpu[i], step_free_all);
		run_wait(&cpu[i], step_leave);
	}
	check_conserved(name);
	for (unsigned i = 0; i < NCPUS; i++)
		cpu_stop(&cpu[i]);
	cairn_qcache_drain_all(qc); /* the depot (every slot is empty) */
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(arena_free_quanta(), SPAN_QUANTA);
	cairn_qcache_destroy(qc);
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&arena.tree, &st), 0);
	CHECK_EQ(st.extents, 1);
	cairn_arena_destroy(&arena);
}

/* ---- the interleavings ---- */

static struct cairn_mag_cpu_stats cpu_stats(unsigned quanta, unsigned c)
{
	struct cairn_mag_cpu_stats st;
	REQUIRE(cairn_mag_cpu_stats(cairn_qcache_mags(qc, quanta), c, &st) == 0);
	return st;
}

static struct cairn_mag_stats stats(unsigned quanta)
{
	struct cairn_mag_stats st;
	cairn_mag_stats(cairn_qcache_mags(qc, quanta), &st);
	return st;
}

/* CPU 1 takes the whole span in 2-quantum ranges (three refills of one
 * magazine) and frees them: both its magazines full, the first full prev
 * in the depot. Nothing is free in the arena. */
static void cache_span_in_pairs(struct cpu_thread *o)
{
	step_quanta = 2;
	step_count = SPAN_QUANTA / 2;
	run_wait(o, step_alloc);
	CHECK_EQ(o->err, 0);
	run_wait(o, step_free_all);
	CHECK_EQ(cpu_stats(2, o->cpu).held, 8);
	CHECK_EQ(stats(2).depot_full, 1);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), SPAN_QUANTA);
	CHECK_EQ(arena_free_quanta(), 0);
}

/* The one quantum CPU 0 got after the drain: taken alone (lean), and
 * nothing cached anywhere. */
static void check_drained_alloc(struct cpu_thread *d, const char *when)
{
	CHECK_EQ(d->err, 0);
	CHECK_EQ(d->nhand, 1);
	CHECK_EQ(stats(1).lean_gets, 1);
	CHECK_EQ(stats(2).drains, 1);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(arena_free_quanta(), SPAN_QUANTA - 1);
	check_conserved(when);
}

static void stale_copy(void)
{
	setup();
	struct cpu_thread *a = &cpu[1], *b = &cpu[2];
	step_quanta = 1;
	step_count = 1;
	run_wait(a, step_alloc); /* a refill of 4: x and 3 cached */
	CHECK_EQ(a->err, 0);
	uint64_t x = a->hand[0];
	/* freed on CPU 1, then again on CPU 2: both pass the check (the
	 * range is still allocated to the cache while its first free sits
	 * in a magazine) */
	run_wait(a, step_free_keep);
	CHECK_EQ(a->err, 0);
	b->hand[0] = x;
	b->quanta[0] = 1;
	b->nhand = 1;
	run_wait(b, step_free_keep);
	CHECK_EQ(b->err, 0);
	a->nhand = b->nhand = 0;
	CHECK_EQ(cpu_stats(1, 1).held, 4);
	CHECK_EQ(cpu_stats(1, 2).held, 1);
	/* CPU 1's copy goes back; the arena gives x to another owner */
	run_wait(a, step_leave);
	uint64_t start, len, cookie;
	CHECK_EQ(cairn_arena_reserve(&arena, x, Q, 77), 0);
	/* CPU 2's copy is flushed: the arena must still lend x to owner 77 */
	uint64_t reports = cairn_host_reports();
	cairn_host_reports_quiet(1);
	run_wait(b, step_leave);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(cairn_arena_lookup(&arena, x, &start, &len, &cookie), 0);
	CHECK(start == x && len == Q && cookie == 77);
	CHECK_EQ(cairn_host_reports(), reports + 1); /* the stale copy, seen */
	CHECK_EQ(arena_free_quanta(), SPAN_QUANTA - 1);
	CHECK_EQ(cairn_arena_free(&arena, x, Q), 0);
	teardown("stale copy");
}

static void departure(void)
{
	setup();
	struct cpu_thread *d = &cpu[0], *o = &cpu[1];
	cache_span_in_pairs(o);
	step_quanta = 1;
	step_count = 1;
	d->noted = false;
	run_parked(d, step_alloc, CAIRN_HOOK_DRAIN_ASKED, cairn_qcache_mags(qc, 2));
	CHECK_EQ(cpu_stats(2, 1).magazines, 2);
	run_wait(o, step_leave);
	cpu_stop(o); /* gone */
	CHECK_EQ(cpu_stats(2, 1).magazines, 0);
	let_go(d);
	wait_for(&d->done, d, "the end of the drained allocation");
	CHECK(!d->noted); /* answered and empty: nothing to wait for */
	check_drained_alloc(d, "departure");
	cpu_start(o, 1);
	teardown("departure");
}

static void answer_parked(void)
{
	setup();
	struct cpu_thread *d = &cpu[0], *o = &cpu[1];
	struct cairn_mag_cache *m2 = cairn_qcache_mags(qc, 2);
	cache_span_in_pairs(o);
	step_quanta = 1;
	step_count = 1;
	d->noted = false;
	run_parked(d, step_alloc, CAIRN_HOOK_DRAIN_ASKED, m2);
	run_parked(o, step_poll, CAIRN_HOOK_ANSWER, &m2->cpu[1]);
	let_go(d);
	wait_for(&d->event, d, "the drainer's wait"); /* it must wait */
	CHECK_EQ(cpu_stats(2, 1).magazines, 2); /* still unanswered */
	CHECK_EQ(d->nhand, 0);
	let_go(o);
	wait_for(&o->done, o, "the answer");
	wait_for(&d->done, d, "the end of the drained allocation");
	CHECK_EQ(cpu_stats(2, 1).magazines, 0);
	CHECK_EQ(atomic_load(&m2->cpu[1].req), atomic_load(&m2->cpu[1].ack));
	check_drained_alloc(d, "answer parked");
	teardown("answer parked");
}

static void free_parked(void)
{
	setup();
	struct cpu_thread *d = &cpu[0], *o = &cpu[1], *h = &cpu[2];
	struct cairn_mag_cache *m1 = cairn_qcache_mags(qc, 1);
	step_quanta = 1;
	/* CPU 1 ends with both magazines real and empty, 8 quanta in hands */
	step_count = 8;
	run_wait(o, step_alloc);
	run_wait(o, step_free_all);
	run_wait(o, step_alloc);
	CHECK_EQ(cpu_stats(1, 1).magazines, 2);
	CHECK_EQ(cpu_stats(1, 1).held, 0);
	/* CPU 2 leaves a full magazine in the depot (12 frees) */
	step_count = 12;
	run_wait(h, step_alloc);
	run_wait(h, step_free_all);
	CHECK_EQ(stats(1).depot_full, 1);
	/* CPU 1 takes it for its empty prev, which goes to the empty stack */
	step_count = 1;
	run_wait(o, step_alloc);
	CHECK_EQ(stats(1).depot_full, 0);
	CHECK_EQ(stats(1).depot_empty, 1);
	/* five frees fill both magazines; the sixth pushes the full prev and
	 * parks in the pop of the empty stack, its top read */
	step_count = 5;
	run_wait(o, step_free_n);
	CHECK_EQ(cpu_stats(1, 1).held, 8);
	step_count = 1;
	run_parked(o, step_free_n, CAIRN_HOOK_DEPOT_POP, &m1->empty);
	CHECK_EQ(stats(1).depot_full, 1);
	/* the drain takes both from the depot and asks CPUs 1 and 2 */
	uint64_t mags_before = stats(1).magazines;
	d->noted = false;
	run_parked(d, step_drain, CAIRN_HOOK_DRAIN_ASKED, m1);
	CHECK_EQ(stats(1).depot_full, 0);
	CHECK_EQ(stats(1).depot_empty, 0);
	CHECK_EQ(stats(1).magazines, mags_before - 2);
	let_go(o); /* its CAS fails; the free goes into a fresh magazine */
	wait_for(&o->done, o, "the parked free");
	CHECK_EQ(cpu_stats(1, 1).held, 5);
	CHECK_EQ(cpu_stats(1, 1).magazines, 2);
	check_conserved("free parked, freed");
	let_go(d);
	wait_for(&d->event, d, "the drainer's wait"); /* it must wait */
	CHECK(!atomic_load(&d->drained));
	run_wait(h, step_poll);
	run_wait(o, step_poll);
	wait_for(&d->done, d, "the end of the drain");
	CHECK(atomic_load(&d->drained));
	CHECK_EQ(stats(1).magazines, 0);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(arena_free_quanta(), SPAN_QUANTA - o->nhand);
	check_conserved("free parked");
	teardown("free parked");
}

static void bound(void)
{
	setup();
	struct cpu_thread *a = &cpu[1], *b = &cpu[2];
	step_quanta = 1;
	step_count = SPAN_QUANTA;
	run_wait(b, step_alloc); /* six refills of 4 */
	CHECK_EQ(b->err, 0);
	CHECK_EQ(arena_free_quanta(), 0);
	for (unsigned i = 0; i < b->nhand; i++) {
		a->hand[i] = b->hand[i];
		a->quanta[i] = 1;
	}
	a->nhand = b->nhand;
	b->nhand = 0;
	/* 24 frees: a miss every 4th (a new magazine, then prev to the depot
	 * twice, then at the limit prev flushed to the arena twice) */
	run_wait(a, step_free_all);
	struct cairn_mag_stats st = stats(1);
	CHECK_EQ(st.cpu_held, 8);
	CHECK_EQ(st.depot_full, 2);
	CHECK_EQ(st.depot_items, 8);
	CHECK_EQ(st.bound, (2 * NCPUS + 2) * 4);
	CHECK_EQ(st.drains, 0);
	CHECK_EQ(arena_free_quanta(), SPAN_QUANTA - 16);
	struct cairn_mag_cpu_stats ca = cpu_stats(1, 1), cb = cpu_stats(1, 2);
	CHECK(ca.hits == 18 && ca.misses == 6 && ca.exchanges == 2 && ca.magazines == 2);
	CHECK(cb.hits == 18 && cb.misses == 6 && cb.exchanges == 0 && cb.held == 0);
	check_conserved("bound");
	teardown("bound");
}

int main(void)
{
	alarm(60); /* a wait the timed waits do not see */
	REQUIRE(cairn_host_init(NCPUS + 1, 0, 16 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 14 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS + 1 };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	uint64_t before = frames_free_total(frames);
	stale_copy();
	departure();
	answer_parked();
	free_parked();
	bound();
	CHECK_EQ(frames_free_total(frames), before);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("qcache_race");
}
