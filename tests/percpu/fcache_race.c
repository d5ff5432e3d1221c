/* SPDX-License-Identifier: MIT */
/*
 * The frame cache's own fast paths against a drain request, in a fixed
 * order: the library is built with the per-CPU hook points
 * (CAIRN_PERCPU_TEST_HOOK), and a drainer is parked between asking the
 * owner and waiting for it (CAIRN_HOOK_DRAIN_ASKED) while the owner
 * operates. The frame cache serves its hits inline (cairn_fcache_alloc,
 * the order-0 free and free_other for orders 1-3 and 9), each with its own
 * look at the request word; free_other also hands a block straight to the
 * frame allocator when its magazines and the depot are full (free_pass).
 *
 *  hits: the owner holds one magazine with items and room; asked, its
 *    next allocation and its next free of orders 0, 2 and 9 must answer
 *    first (the slot emptied, ack == req) and then be served: the
 *    allocation by one block from the frame allocator (the drain made the
 *    cache lean), the free into a new magazine.
 *  pass: the owner's loaded and prev are full; the drainer empties the
 *    depot and asks; another CPU, not asked (it held nothing), fills the
 *    depot to its limit again. The owner's free of orders 2 and 9 now
 *    meets full magazines and a full depot, but a request is pending: it
 *    must answer (both magazines back to the frame allocator) and cache
 *    the block, not pass it and keep the request for later.
 *
 * In both, the drainer must then return without waiting, and at every
 * step every block is in exactly one place: a thread's hands, a magazine
 * or the depot, or the frame allocator (its free count, checked at each
 * case's end after everything went back).
 */
#define _GNU_SOURCE
#include <cairn/frame_cache.h>
#include <cairn/host.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "../frames_total.h"
#include "../../percpu/magazine_layout.h"

#define MiB (1024ull * 1024)
#define NCPUS 4     /* port CPUs; the cache has CACHE_CPUS */
#define CACHE_CPUS 3 /* CPU 3 (the main thread) is outside: a bypass */
#define NHAND 16

static struct cairn_frames *frames;
static struct cairn_fcache *fc;

/* ---- CPU threads that run steps on command, and park at a hook ---- */

#define CPU_THREAD_OWN                                                         \
	unsigned order;           /* of the blocks in hand */                  \
	cairn_phys_t hand[NHAND]; /* blocks in this thread's hands */          \
	unsigned nhand;                                                        \
	int err;                  /* the last step's result */
#include "cpu_thread.h"

static struct cpu_thread cpu[CACHE_CPUS];

/* ---- steps ---- */

static void step_alloc(struct cpu_thread *ct)
{
	REQUIRE(ct->nhand < NHAND);
	ct->err = cairn_fcache_alloc(fc, ct->order, 0, &ct->hand[ct->nhand]);
	if (!ct->err)
		ct->nhand++;
}

static void step_free(struct cpu_thread *ct)
{
	REQUIRE(ct->nhand);
	ct->err = cairn_fcache_free(fc, ct->hand[--ct->nhand], ct->order);
}

static void step_free_all(struct cpu_thread *ct)
{
	while (ct->nhand)
		CHECK_EQ(cairn_fcache_free(fc, ct->hand[--ct->nhand], ct->order), 0);
}

static void step_poll(struct cpu_thread *ct)
{
	(void)ct;
	cairn_fcache_poll(fc);
}

static void step_leave(struct cpu_thread *ct)
{
	CHECK_EQ(cairn_fcache_drain_cpu(fc, ct->cpu), 0);
}

static void step_drain(struct cpu_thread *ct)
{
	cairn_fcache_drain_all(fc);
	atomic_store(&ct->drained, true);
	sem_post(&ct->event);
}

static void run_times(struct cpu_thread *ct, void (*fn)(struct cpu_thread *), unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		run_wait(ct, fn);
		REQUIRE(ct->err == 0);
	}
}

/* The drainer of order k's cache, parked after asking. */
static void park_drainer(struct cpu_thread *d, unsigned k)
{
	d->at = CAIRN_HOOK_DRAIN_ASKED;
	d->obj = cairn_fcache_mags(fc, k);
	d->arm = true;
	d->noted = false;
	atomic_store(&d->drained, false);
	run(d, step_drain);
	wait_for(&d->parked, d, "the park after asking");
}

/* Let it go on: it must return without waiting for an answer (if it
 * waits, the owner's poll lets it return, and the check has failed). */
static void release_drainer(struct cpu_thread *d, struct cpu_thread *owner)
{
	sem_post(&d->go);
	wait_for(&d->event, d, "waiting or returning");
	bool returned = atomic_load(&d->drained);
	CHECK(returned);
	if (!returned)
		run_wait(owner, step_poll);
	wait_for(&d->done, d, "the end of the drain");
}

/* ---- what the cache holds ---- */

static struct mag_cpu *slot(unsigned k, unsigned c)
{
	struct mag_cpu *s = &cairn_fcache_mags(fc, k)->cpu[c];
	__asm__("" : "+r"(s)); /* (a slot of the cache's memory, not of a 0-sized array) */
	return s;
}

static struct cairn_mag_cpu_stats cpu_stats(unsigned k, unsigned c)
{
	struct cairn_mag_cpu_stats st;
	REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(fc, k), c, &st) == 0);
	return st;
}

static struct cairn_mag_stats stats(unsigned k)
{
	struct cairn_mag_stats st;
	cairn_mag_stats(cairn_fcache_mags(fc, k), &st);
	return st;
}

static bool answered(unsigned k, unsigned c)
{
	return atomic_load(&slot(k, c)->req) == atomic_load(&slot(k, c)->ack);
}

static unsigned mag_of(unsigned k)
{
	return k == CAIRN_HUGE_ORDER ? 2 : 4;
}

static uint64_t start_free;

static void setup(unsigned k)
{
	start_free = frames_free_total(frames);
	struct cairn_fcache_config cfg = {
		.ncpus = CACHE_CPUS,
		.mag_size = { 4, 4, 4, 4, 2 },
		.depot_full = 1,
		.depot_empty = 1,
		/* a drainer here never gives up: every answer is awaited */
		.drain_wait = 1u << 31,
	};
	REQUIRE(cairn_fcache_create(&fc, frames, &cfg) == 0);
	for (unsigned c = 0; c < CACHE_CPUS; c++) {
		cpu_start(&cpu[c], c);
		cpu[c].order = k;
	}
}

/* Every block back: hands freed, every CPU leaves, the depot drained. */
static void teardown(const char *name)
{
	for (unsigned c = 0; c < CACHE_CPUS; c++) {
		run_wait(&cpu[c], step_free_all);
		run_wait(&cpu[c], step_leave);
		cpu_stop(&cpu[c]);
	}
	cairn_fcache_drain_all(fc); /* from CPU 3: outside the cache */
	CHECK_EQ(cairn_fcache_cached_frames(fc), 0);
	cairn_fcache_destroy(fc);
	if (frames_free_total(frames) != start_free)
		fprintf(stderr, "%s: blocks not back\n", name);
	CHECK_EQ(frames_free_total(frames), start_free);
	CHECK_EQ(cairn_frames_validate(frames), 0);
}

/* ---- the interleavings ---- */

/* The owner's next operation after a request, a hit had it not been
 * asked: it answers first. */
static void hit_asked(unsigned k, bool alloc)
{
	setup(k);
	struct cpu_thread *o = &cpu[2], *d = &cpu[1];
	unsigned m = mag_of(k);
	uint64_t fk = 1ull << k;
	run_times(o, step_alloc, 1); /* a refill of m, one taken: room and items */
	CHECK_EQ(cpu_stats(k, 2).held, m - 1);
	CHECK_EQ(cpu_stats(k, 2).magazines, 1);
	uint64_t free0 = frames_free_total(frames);
	park_drainer(d, k);
	CHECK(!answered(k, 2));
	struct cairn_mag_cpu_stats was = cpu_stats(k, 2);
	run_wait(o, alloc ? step_alloc : step_free);
	CHECK_EQ(o->err, 0);
	struct cairn_mag_cpu_stats now = cpu_stats(k, 2);
	CHECK(answered(k, 2));
	CHECK_EQ(now.hits + now.misses, was.hits + was.misses + 1);
	if (alloc) {
		/* emptied, then lean: one block, no magazine */
		CHECK_EQ(now.held, 0);
		CHECK_EQ(now.magazines, 0);
		CHECK_EQ(o->nhand, 2);
		CHECK_EQ(frames_free_total(frames), free0 + (m - 1) * fk - fk + 1);
	} else {
		/* emptied, then the block into a new magazine */
		CHECK_EQ(now.held, 1);
		CHECK_EQ(now.magazines, 1);
		CHECK_EQ(o->nhand, 0);
		CHECK_EQ(frames_free_total(frames), free0 + (m - 1) * fk);
	}
	CHECK_EQ(cairn_fcache_cached_frames(fc), now.held * fk);
	release_drainer(d, o);
	CHECK_EQ(cairn_fcache_cached_frames(fc), now.held * fk);
	teardown(alloc ? "allocation asked" : "free asked");
}

/* The owner's free that meets full magazines and a full depot, asked. */
static void pass_asked(unsigned k)
{
	setup(k);
	struct cpu_thread *o = &cpu[2], *d = &cpu[1], *h = &cpu[0];
	unsigned m = mag_of(k);
	uint64_t fk = 1ull << k;
	/* 2m + 1 allocations (three refills), m + 1 frees: loaded and prev
	 * full, m blocks in hand */
	run_times(o, step_alloc, 2 * m + 1);
	run_times(o, step_free, m + 1);
	CHECK_EQ(cpu_stats(k, 2).held, 2 * m);
	CHECK_EQ(cpu_stats(k, 2).magazines, 2);
	CHECK_EQ(stats(k).depot_full, 0);
	park_drainer(d, k); /* depot drained (empty), the owner asked */
	CHECK(!answered(k, 2));
	/* CPU 0, not asked (it held nothing), takes 2m + 1 blocks (one by
	 * one: the drain made the cache lean) and frees them: loaded, then
	 * prev filled, prev pushed: the depot at its limit again, m + 1 in
	 * CPU 0's magazines */
	CHECK(answered(k, 0));
	run_times(h, step_alloc, 2 * m + 1);
	CHECK_EQ(cpu_stats(k, 0).magazines, 0);
	run_times(h, step_free, 2 * m + 1);
	CHECK_EQ(stats(k).depot_full, 1);
	CHECK_EQ(cpu_stats(k, 0).held, m + 1);
	uint64_t free0 = frames_free_total(frames);
	/* the owner's free: answer (2m blocks and 2 magazine frames back),
	 * then the block into a new magazine (one frame) */
	run_wait(o, step_free);
	CHECK_EQ(o->err, 0);
	CHECK(answered(k, 2));
	CHECK_EQ(cpu_stats(k, 2).held, 1);
	CHECK_EQ(cpu_stats(k, 2).magazines, 1);
	CHECK_EQ(frames_free_total(frames), free0 + 2 * m * fk + 2 - 1);
	CHECK_EQ(cairn_fcache_cached_frames(fc), (1 + (m + 1) + m) * fk);
	release_drainer(d, o); /* CPU 0 was not asked; the depot drained again */
	CHECK_EQ(stats(k).depot_full, 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), (1 + (m + 1)) * fk);
	CHECK(answered(k, 0));
	teardown("pass asked");
}

int main(void)
{
	alarm(40); /* a wait the timed waits do not see */
	REQUIRE(cairn_host_init(NCPUS, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	REQUIRE(cairn_host_cpu_bind(CACHE_CPUS) == 0);
	uint64_t before = frames_free_total(frames);
	static const unsigned orders[] = { 0, 2, CAIRN_HUGE_ORDER };
	for (unsigned i = 0; i < 3; i++) {
		hit_asked(orders[i], true);
		hit_asked(orders[i], false);
	}
	pass_asked(2);
	pass_asked(CAIRN_HUGE_ORDER);
	CHECK_EQ(frames_free_total(frames), before);
	cairn_host_cpu_unregister();
	return check_done("fcache_race");
}
