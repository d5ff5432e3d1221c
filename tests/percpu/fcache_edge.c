/* SPDX-License-Identifier: MIT */
/*
 * The frame cache at the edges of its paths, in a fixed order:
 *
 *  bad frees in every state of the freeing slot (room in the loaded
 *    magazine: the inline check; loaded full, the depot below its limit:
 *    the slow path's check; loaded and prev full and the depot at its
 *    limit: the pass to the frame allocator; a CPU outside the cache):
 *    misaligned, free, outside the regions, another order's block (larger,
 *    smaller, or one of the smaller order cached in its own magazine) get
 *    their own error and change nothing: no frame, nothing cached, no hit
 *    or miss counted; the good free after them is cached or passed.
 *  a CPU outside the cache (a bypass slot): every cached order goes to and
 *    from the frame allocator, nothing cached or counted; and it gets every
 *    frame of memory, zeroed, while another CPU holds dirty frames in its
 *    magazines and the depot (the allocation that drains zeroes the frame
 *    the drain gave back).
 *  zeroing on every path of a cached order: the loaded magazine, the swap
 *    with prev, the depot exchange, a refill, each of dirty blocks.
 *  lean ended by the pass: after a drain, a free that the pass hands to
 *    the frame allocator ends lean, so the next miss that reaches the
 *    frame allocator refills a magazine instead of taking one block.
 *  a slot whose thread left without draining it (unregistered, or gone
 *    and its slot given back): a CPU of the cache gets every frame of
 *    memory, and the slot's next thread works in it.
 *  a huge block freed twice while its first free is cached (room in the
 *    magazine; everything full, where the pass gives frees to the frame
 *    allocator): reported, and never handed to two owners.
 */
#include <cairn/frame_cache.h>
#include <cairn/host.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../check.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4
#define CACHE_CPUS 2 /* CPUs 2 and 3 are outside the caches made here */

static struct cairn_frames *fa; /* most tests */
static struct cairn_frames *fb; /* a small one, to be exhausted */

static void bind(unsigned cpu)
{
	cairn_host_cpu_unregister();
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
}

static uint64_t ops(struct cairn_fcache *fc, unsigned k, unsigned cpu)
{
	struct cairn_mag_cpu_stats st;
	REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(fc, k), cpu, &st) == 0);
	return st.hits + st.misses;
}

static uint64_t all_ops(struct cairn_fcache *fc)
{
	static const unsigned orders[] = { 0, 1, 2, 3, CAIRN_HUGE_ORDER };
	uint64_t n = 0;
	for (unsigned i = 0; i < 5; i++)
		for (unsigned c = 0; c < CACHE_CPUS; c++)
			n += ops(fc, orders[i], c);
	return n;
}

static void dirty(cairn_phys_t p, unsigned k)
{
	memset(cairn_port_phys_to_virt(p), 0xa5, CAIRN_FRAME_SIZE << k);
}

/* The calling CPU takes two huge blocks, then order-0 frames until none
 * is left, and frees them all: as much as its caches hold ends there
 * (dirtied first if asked, for a later zeroed allocation to prove). */
static void cache_all(struct cairn_fcache *fc, bool dirty_them)
{
	cairn_phys_t *v = calloc(1u << 14, sizeof(*v));
	REQUIRE(v);
	unsigned n = 0;
	while (n < 2 && cairn_fcache_alloc(fc, CAIRN_HUGE_ORDER, 0, &v[n]) == 0)
		n++;
	unsigned huge = n;
	while (n < 1u << 14 && cairn_fcache_alloc(fc, 0, 0, &v[n]) == 0)
		n++;
	for (unsigned i = 0; i < n; i++) {
		unsigned k = i < huge ? CAIRN_HUGE_ORDER : 0;
		if (dirty_them)
			dirty(v[i], k);
		REQUIRE(cairn_fcache_free(fc, v[i], k) == 0);
	}
	free(v);
}

static bool zeroed(cairn_phys_t p, unsigned k)
{
	const uint64_t *v = cairn_port_phys_to_virt(p);
	uint64_t any = 0;
	for (uint64_t i = 0; i < (CAIRN_FRAME_SIZE << k) / 8; i++)
		any |= v[i];
	return any == 0;
}

/* ---- bad frees ---- */

struct bad {
	cairn_phys_t p;
	int err;
};

/* Bad frees of order k: their blocks taken from f (and, for orders 1-3 on
 * a CPU of the cache, a smaller block cached in the smaller order's
 * magazine); the caller gives them back with put_bad. */
static unsigned make_bad(struct cairn_fcache *fc, struct cairn_frames *f, unsigned k,
			 bool caching_cpu, struct bad *b, cairn_phys_t *held)
{
	unsigned n = 0;
	cairn_phys_t p;
	REQUIRE(cairn_frames_alloc(f, k, 0, &p) == 0);
	b[n++] = (struct bad){ k ? p + CAIRN_FRAME_SIZE : p + 1, CAIRN_EALIGN };
	REQUIRE(cairn_frames_free(f, p, k) == 0);
	b[n++] = (struct bad){ 0, CAIRN_EFREE }; /* (made by try_bad) */
	b[n++] = (struct bad){ 1ull << 40, CAIRN_ERANGE };
	/* the head of a larger block */
	REQUIRE(cairn_frames_alloc(f, k + 1, 0, &held[0]) == 0);
	b[n++] = (struct bad){ held[0], CAIRN_EORDER };
	held[1] = 0;
	if (k) {
		/* a smaller block, aligned as ours */
		REQUIRE(cairn_frames_alloc_aligned(f, k - 1, k, 0, &held[1]) == 0);
		b[n++] = (struct bad){ held[1], CAIRN_EORDER };
	}
	if (k && k <= 3 && caching_cpu) {
		/* a smaller block aligned as ours, sitting in its own order's
		 * magazine here: freed first, into loaded, so that the frees
		 * after it (which may fill everything and pass) keep it */
		cairn_phys_t q[8];
		unsigned got = 0, pick = 8;
		while (got < 8 && cairn_fcache_alloc(fc, k - 1, 0, &q[got]) == 0) {
			if (pick == 8 && !(q[got] & ((CAIRN_FRAME_SIZE << k) - 1)))
				pick = got;
			got++;
		}
		REQUIRE(pick < 8);
		REQUIRE(cairn_fcache_free(fc, q[pick], k - 1) == 0);
		while (got--)
			if (got != pick)
				REQUIRE(cairn_fcache_free(fc, q[got], k - 1) == 0);
		CHECK(cairn_frames_is_allocated(f, q[pick], k - 1));
		b[n++] = (struct bad){ q[pick], CAIRN_EORDER };
	}
	return n;
}

static void put_bad(struct cairn_frames *f, unsigned k, const cairn_phys_t *held)
{
	CHECK_EQ(cairn_frames_free(f, held[0], k + 1), 0);
	if (held[1])
		CHECK_EQ(cairn_frames_free(f, held[1], k - 1), 0);
}

/* Every bad free of b: its error, and nothing changed. */
static void try_bad(struct cairn_fcache *fc, struct cairn_frames *f, unsigned k,
		    struct bad *b, unsigned n, const char *state)
{
	cairn_host_reports_quiet(1);
	for (unsigned i = 0; i < n; i++) {
		if (b[i].err != CAIRN_EFREE)
			continue;
		/* a block free now (a later allocation may take an earlier one) */
		cairn_phys_t p;
		REQUIRE(cairn_frames_alloc(f, k, 0, &p) == 0);
		REQUIRE(cairn_frames_free(f, p, k) == 0);
		b[i].p = p;
	}
	uint64_t fr = frames_free_total(f), cached = cairn_fcache_cached_frames(fc);
	uint64_t o = all_ops(fc);
	for (unsigned i = 0; i < n; i++) {
		uint64_t reports = cairn_host_reports();
		int err = cairn_fcache_free(fc, b[i].p, k);
		if (err != b[i].err)
			fprintf(stderr, "%s: order %u, bad free %u: %d, not %d\n", state, k, i,
				err, b[i].err);
		CHECK_EQ(err, b[i].err);
		/* every bad free is reported, once: by the cache (a
		 * misaligned block of a cached order) or by the frame
		 * allocator, never by both */
		CHECK_EQ(cairn_host_reports(), reports + 1);
	}
	cairn_host_reports_quiet(0);
	CHECK_EQ(frames_free_total(f), fr);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(all_ops(fc), o);
}

/* Orders 0, 2 and 9 with magazines of 2 and a depot of one: bad frees
 * with room in loaded, with loaded full, with everything full (the pass;
 * order 0 has none, and its inline check refuses them there too). */
static void test_bad_states(void)
{
	static const unsigned orders[] = { 0, 2, CAIRN_HUGE_ORDER };
	for (unsigned oi = 0; oi < 3; oi++) {
		unsigned k = orders[oi];
		uint64_t start = frames_free_total(fa), fk = 1ull << k;
		struct cairn_fcache *fc;
		struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS,
						   .mag_size = { 2, 2, 2, 2, 2 },
						   .depot_full = 1 };
		REQUIRE(cairn_fcache_create(&fc, fa, &cfg) == 0);
		bind(1);
		struct bad b[8];
		cairn_phys_t held[2];
		unsigned nb = make_bad(fc, fa, k, true, b, held);
		cairn_phys_t v[7];
		for (unsigned j = 0; j < 7; j++)
			REQUIRE(cairn_fcache_alloc(fc, k, 0, &v[j]) == 0);
		/* 7 allocations (refills of 2) leave loaded with one block */
		try_bad(fc, fa, k, b, nb, "room in loaded");
		CHECK_EQ(cairn_fcache_free(fc, v[0], k), 0); /* loaded full */
		try_bad(fc, fa, k, b, nb, "loaded full");
		/* prev, then the depot, then both magazines full again */
		for (unsigned j = 1; j < 5; j++)
			CHECK_EQ(cairn_fcache_free(fc, v[j], k), 0);
		struct cairn_mag_stats ms;
		cairn_mag_stats(cairn_fcache_mags(fc, k), &ms);
		CHECK_EQ(ms.depot_full, 1);
		CHECK_EQ(ms.cpu_held, 4);
		try_bad(fc, fa, k, b, nb, "everything full");
		/* the good free: passed (orders 1-3, 9), or (order 0, which has
		 * no pass) prev's blocks flushed and the block cached */
		uint64_t fr = frames_free_total(fa), o = ops(fc, k, 1);
		uint64_t cached = cairn_fcache_cached_frames(fc);
		CHECK_EQ(cairn_fcache_free(fc, v[5], k), 0);
		CHECK_EQ(ops(fc, k, 1), o + 1);
		if (k) {
			CHECK_EQ(frames_free_total(fa), fr + fk);
			CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
		} else {
			CHECK_EQ(frames_free_total(fa), fr + 2);
			CHECK_EQ(cairn_fcache_cached_frames(fc), cached - 1);
		}
		CHECK_EQ(cairn_fcache_free(fc, v[6], k), 0);
		put_bad(fa, k, held);
		CHECK_EQ(cairn_fcache_drain_cpu(fc, 1), 0);
		cairn_fcache_destroy(fc);
		CHECK_EQ(frames_free_total(fa), start);
	}
}

/* ---- a CPU outside the cache ---- */

static void test_bypass_ops(void)
{
	uint64_t start = frames_free_total(fa);
	struct cairn_fcache *fc;
	struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS };
	REQUIRE(cairn_fcache_create(&fc, fa, &cfg) == 0);
	bind(3);
	static const unsigned orders[] = { 0, 1, 2, 3, CAIRN_HUGE_ORDER };
	for (unsigned i = 0; i < 5; i++) {
		unsigned k = orders[i];
		uint64_t fr = frames_free_total(fa), fk = 1ull << k;
		cairn_phys_t p;
		REQUIRE(cairn_fcache_alloc(fc, k, 0, &p) == 0);
		CHECK(cairn_frames_is_allocated(fa, p, k));
		CHECK_EQ(frames_free_total(fa), fr - fk);
		dirty(p, k);
		CHECK_EQ(cairn_fcache_free(fc, p, k), 0);
		CHECK_EQ(frames_free_total(fa), fr);
		CHECK(!cairn_frames_is_allocated(fa, p, k));
		REQUIRE(cairn_fcache_alloc(fc, k, CAIRN_F_ZERO, &p) == 0);
		CHECK(zeroed(p, k));
		struct bad b[8];
		cairn_phys_t held[2];
		unsigned nb = make_bad(fc, fa, k, false, b, held);
		try_bad(fc, fa, k, b, nb, "outside the cache");
		CHECK_EQ(cairn_fcache_free(fc, p, k), 0);
		put_bad(fa, k, held);
		CHECK_EQ(frames_free_total(fa), fr);
		CHECK_EQ(cairn_fcache_cached_frames(fc), 0);
		CHECK_EQ(all_ops(fc), 0);
	}
	CHECK_EQ(cairn_fcache_drain_cpu(fc, 3), CAIRN_EINVAL);
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(fa), start);
}

/* CPU 1 holds dirty frames and 2 MiB blocks in its magazines and the
 * depot; CPU 3, outside the cache, takes every frame with CAIRN_F_ZERO. */
static struct cairn_fcache *xfc;
static atomic_int x_step;

static void *x_holder(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	cache_all(xfc, true);
	atomic_store(&x_step, 1);
	while (atomic_load(&x_step) == 1)
		cairn_fcache_poll(xfc); /* an online CPU keeps answering */
	REQUIRE(cairn_fcache_drain_cpu(xfc, 1) == 0);
	cairn_host_cpu_unregister();
	return NULL;
}

static uint64_t magazines(struct cairn_fcache *fc)
{
	static const unsigned orders[] = { 0, 1, 2, 3, CAIRN_HUGE_ORDER };
	uint64_t m = 0;
	for (unsigned i = 0; i < 5; i++) {
		struct cairn_mag_stats st;
		cairn_mag_stats(cairn_fcache_mags(fc, orders[i]), &st);
		m += st.magazines;
	}
	return m;
}

/* On this CPU, order-0 frames (with flags) until none is left: exactly
 * the total of fb, which every cache gave back for them, zeroed if asked;
 * then all freed again. */
static void take_all(struct cairn_fcache *fc, uint64_t total, unsigned flags)
{
	cairn_phys_t *v = calloc(total + 1, sizeof(*v));
	REQUIRE(v);
	uint64_t n = 0, dirty_frames = 0;
	while (n <= total && cairn_fcache_alloc(fc, 0, flags, &v[n]) == 0) {
		if (flags & CAIRN_F_ZERO)
			dirty_frames += !zeroed(v[n], 0);
		n++;
	}
	CHECK_EQ(dirty_frames, 0);
	CHECK_EQ(n, total);
	CHECK_EQ(frames_free_total(fb), 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), 0);
	CHECK_EQ(magazines(fc), 0);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(cairn_fcache_free(fc, v[i], 0), 0);
	free(v);
}

static void test_bypass_exhaustion(void)
{
	uint64_t start = frames_free_total(fb);
	struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS, .depot_full = 100,
					   .depot_empty = 4 };
	REQUIRE(cairn_fcache_create(&xfc, fb, &cfg) == 0);
	uint64_t total = frames_free_total(fb);
	bind(3);
	atomic_store(&x_step, 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, x_holder, NULL) == 0);
	while (atomic_load(&x_step) != 1)
		;
	uint64_t cached = cairn_fcache_cached_frames(xfc);
	printf("bypass exhaustion: %llu frames, %llu of them cached by CPU 1\n",
	       (unsigned long long)total, (unsigned long long)cached);
	CHECK_EQ(cached + magazines(xfc) + frames_free_total(fb), total);
	/* (the first free of each order finds no frame for a magazine and
	 * gives its block back: a 2 MiB block of the two is free) */
	CHECK(cached > total / 4 * 3);
	take_all(xfc, total, CAIRN_F_ZERO);
	CHECK_EQ(frames_free_total(fb), total);
	atomic_store(&x_step, 2);
	pthread_join(t, NULL);
	cairn_fcache_destroy(xfc);
	CHECK_EQ(frames_free_total(fb), start);
}

/* ---- zeroing on every path ---- */

static void test_zero_paths(void)
{
	uint64_t start = frames_free_total(fa);
	struct cairn_fcache *fc;
	struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS,
					   .mag_size = { 4, 4, 4, 4, 2 },
					   .depot_full = 1 };
	REQUIRE(cairn_fcache_create(&fc, fa, &cfg) == 0);
	bind(0);
	static const unsigned orders[] = { 0, 2, CAIRN_HUGE_ORDER };
	for (unsigned oi = 0; oi < 3; oi++) {
		unsigned k = orders[oi], m = k == CAIRN_HUGE_ORDER ? 2 : 4;
		cairn_phys_t v[12];
		for (unsigned j = 0; j < 3 * m; j++) {
			REQUIRE(cairn_fcache_alloc(fc, k, 0, &v[j]) == 0);
			dirty(v[j], k);
		}
		/* loaded, prev and the depot's magazine: each full of dirt */
		for (unsigned j = 0; j < 3 * m; j++)
			CHECK_EQ(cairn_fcache_free(fc, v[j], k), 0);
		struct cairn_mag_stats st;
		cairn_mag_stats(cairn_fcache_mags(fc, k), &st);
		CHECK_EQ(st.cpu_held, 2 * m);
		CHECK_EQ(st.depot_full, 1);
		struct cairn_mag_cpu_stats cs;
		REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(fc, k), 0, &cs) == 0);
		uint64_t hits = cs.hits, misses = cs.misses, exch = cs.exchanges;
		/* m hits of loaded, m after the swap (hits too), then the
		 * exchange for the depot's magazine (a miss) and m - 1 hits */
		for (unsigned j = 0; j < 3 * m; j++) {
			REQUIRE(cairn_fcache_alloc(fc, k, CAIRN_F_ZERO, &v[j]) == 0);
			CHECK(zeroed(v[j], k));
		}
		REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(fc, k), 0, &cs) == 0);
		CHECK_EQ(cs.hits, hits + 3 * m - 1);
		CHECK_EQ(cs.misses, misses + 1);
		CHECK_EQ(cs.exchanges, exch + 1);
		/* and a refill, of dirty blocks the frame allocator had */
		dirty(v[0], k);
		CHECK_EQ(cairn_fcache_free(fc, v[0], k), 0);
		CHECK_EQ(cairn_fcache_drain_cpu(fc, 0), 0);
		REQUIRE(cairn_fcache_alloc(fc, k, CAIRN_F_ZERO, &v[0]) == 0);
		CHECK(zeroed(v[0], k));
		for (unsigned j = 0; j < 3 * m; j++)
			CHECK_EQ(cairn_fcache_free(fc, v[j], k), 0);
	}
	CHECK_EQ(cairn_fcache_drain_cpu(fc, 0), 0);
	cairn_fcache_drain_all(fc);
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(fa), start);
}

/* ---- lean ended by the pass ---- */

static void test_pass_ends_lean(void)
{
	uint64_t start = frames_free_total(fa);
	struct cairn_fcache *fc;
	struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS,
					   .mag_size = { 0, 0, 0, 0, 2 },
					   .depot_full = 1 };
	REQUIRE(cairn_fcache_create(&fc, fa, &cfg) == 0);
	struct cairn_mag_cache *mc = cairn_fcache_mags(fc, CAIRN_HUGE_ORDER);
	bind(0);
	cairn_phys_t v[8];
	for (unsigned j = 0; j < 7; j++)
		REQUIRE(cairn_fcache_alloc(fc, CAIRN_HUGE_ORDER, 0, &v[j]) == 0);
	cairn_fcache_drain_all(fc); /* lean: 2 CPUs * 2 single blocks */
	/* loaded and prev full, one full magazine in the depot: the seventh
	 * free is passed to the frame allocator, and ends lean */
	for (unsigned j = 0; j < 7; j++)
		CHECK_EQ(cairn_fcache_free(fc, v[j], CAIRN_HUGE_ORDER), 0);
	struct cairn_mag_stats st;
	cairn_mag_stats(mc, &st);
	CHECK_EQ(st.cpu_held, 4);
	CHECK_EQ(st.depot_full, 1);
	uint64_t lean_gets = st.lean_gets;
	/* CPU 1: the depot's magazine (an exchange), its second block, then
	 * a miss the frame allocator serves: a refill of 2, not 1 block */
	bind(1);
	for (unsigned j = 0; j < 3; j++)
		REQUIRE(cairn_fcache_alloc(fc, CAIRN_HUGE_ORDER, 0, &v[j]) == 0);
	cairn_mag_stats(mc, &st);
	CHECK_EQ(st.lean_gets, lean_gets);
	struct cairn_mag_cpu_stats cs;
	REQUIRE(cairn_mag_cpu_stats(mc, 1, &cs) == 0);
	CHECK_EQ(cs.held, 1);
	CHECK_EQ(cs.exchanges, 1);
	for (unsigned j = 0; j < 3; j++)
		CHECK_EQ(cairn_fcache_free(fc, v[j], CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(cairn_fcache_drain_cpu(fc, 1), 0);
	CHECK_EQ(cairn_fcache_drain_cpu(fc, 0), 0);
	cairn_fcache_drain_all(fc);
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(fa), start);
}

/* ---- a departed thread's slot ---- */

/* A thread bound to slot 1 holds every frame of fb it can get in its
 * magazines and the depot, and leaves: through cairn_host_cpu_unregister
 * without draining (its items left to the slot's next thread), or by
 * exiting still registered, its slot given back by
 * cairn_host_cpu_release. */
static struct cairn_fcache *dfc;

static void *d_holder(void *arg)
{
	bool unregister = arg != NULL;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	cache_all(dfc, false);
	if (unregister)
		cairn_host_cpu_unregister();
	return NULL;
}

/* What the departed slot holds is not lost to an allocation: CPU 0 (a CPU
 * of the cache) gets every frame of memory, and the slot's next thread
 * finds it empty and works in it. */
static void test_departed_exhaustion(void)
{
	uint64_t start = frames_free_total(fb);
	struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS, .depot_full = 100,
					   .depot_empty = 4 };
	for (unsigned way = 0; way < 2; way++) {
		REQUIRE(cairn_fcache_create(&dfc, fb, &cfg) == 0);
		uint64_t total = frames_free_total(fb);
		bind(0);
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, d_holder, way ? NULL : (void *)1) == 0);
		pthread_join(t, NULL);
		if (way)
			cairn_host_cpu_release(1);
		struct cairn_mag_cpu_stats cs;
		REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(dfc, 0), 1, &cs) == 0);
		CHECK(cs.held > 0);
		uint64_t cached = cairn_fcache_cached_frames(dfc);
		CHECK(cached > total / 4 * 3);
		take_all(dfc, total, 0);
		/* the slot's next thread */
		cairn_host_cpu_unregister();
		bind(1);
		cairn_phys_t p;
		CHECK_EQ(cairn_fcache_alloc(dfc, CAIRN_HUGE_ORDER, 0, &p), 0);
		CHECK_EQ(cairn_fcache_free(dfc, p, CAIRN_HUGE_ORDER), 0);
		CHECK_EQ(cairn_fcache_drain_cpu(dfc, 1), 0);
		bind(0);
		cairn_fcache_drain_all(dfc);
		CHECK_EQ(cairn_fcache_cached_frames(dfc), 0);
		cairn_fcache_destroy(dfc);
		CHECK_EQ(frames_free_total(fb), start);
	}
}

/* ---- a huge block freed twice while its first free is cached ---- */

/* No two of n blocks alike. */
static bool distinct(const cairn_phys_t *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = i + 1; j < n; j++)
			if (v[i] == v[j])
				return false;
	return true;
}

/* The second free of an order-9 block whose first free sits in a magazine
 * is a double free: reported (EFREE, through the port's report hook),
 * nothing cached or freed by it, and no block is ever handed to two
 * owners. Twice: with room in the loaded magazine (the second copy would
 * join the first in the magazines), and with both magazines and the depot
 * full (the pass would give the block to the frame allocator while the
 * first copy is still cached, and the frame allocator would give it to
 * another owner; the flush of the cached copy would free it from under
 * that owner). */
static void test_huge_double_free(void)
{
	const unsigned k = CAIRN_HUGE_ORDER;
	uint64_t start = frames_free_total(fa);
	struct cairn_fcache *fc;
	struct cairn_fcache_config cfg = { .ncpus = CACHE_CPUS,
					   .mag_size = { 0, 0, 0, 0, 2 },
					   .depot_full = 1 };
	REQUIRE(cairn_fcache_create(&fc, fa, &cfg) == 0);
	bind(0);

	/* room in the loaded magazine */
	cairn_phys_t b[8], c[8], r;
	REQUIRE(cairn_fcache_alloc(fc, k, 0, &b[0]) == 0);
	REQUIRE(cairn_fcache_alloc(fc, k, 0, &b[1]) == 0); /* loaded now empty */
	CHECK_EQ(cairn_fcache_free(fc, b[0], k), 0);
	uint64_t cached = cairn_fcache_cached_frames(fc), fr = frames_free_total(fa);
	cairn_host_reports_quiet(1);
	uint64_t reports = cairn_host_reports();
	CHECK_EQ(cairn_fcache_free(fc, b[0], k), CAIRN_EFREE);
	CHECK(cairn_host_reports() > reports);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(frames_free_total(fa), fr);
	REQUIRE(cairn_fcache_alloc(fc, k, 0, &c[0]) == 0);
	REQUIRE(cairn_fcache_alloc(fc, k, 0, &c[1]) == 0);
	c[2] = b[1];
	CHECK(distinct(c, 3));
	for (unsigned j = 0; j < 3; j++)
		cairn_fcache_free(fc, c[j], k);
	CHECK_EQ(cairn_fcache_drain_cpu(fc, 0), 0);

	/* loaded and prev full, one full magazine in the depot: the pass */
	for (unsigned j = 0; j < 7; j++)
		REQUIRE(cairn_fcache_alloc(fc, k, 0, &b[j]) == 0);
	for (unsigned j = 0; j < 6; j++)
		CHECK_EQ(cairn_fcache_free(fc, b[j], k), 0);
	cached = cairn_fcache_cached_frames(fc);
	fr = frames_free_total(fa);
	CHECK_EQ(cached, 6u << k);
	cairn_host_reports_quiet(1);
	reports = cairn_host_reports();
	CHECK_EQ(cairn_fcache_free(fc, b[0], k), CAIRN_EFREE);
	CHECK(cairn_host_reports() > reports);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(frames_free_total(fa), fr);
	/* another owner from the frame allocator (this CPU's huge hint would
	 * name a block the pass freed), then everything cached, and a flush
	 * of all of it: the other owner's block stays allocated */
	REQUIRE(cairn_frames_alloc(fa, k, 0, &r) == 0);
	for (unsigned j = 0; j < 6; j++)
		REQUIRE(cairn_fcache_alloc(fc, k, 0, &c[j]) == 0);
	c[6] = r;
	c[7] = b[6];
	CHECK(distinct(c, 8));
	cairn_host_reports_quiet(1);
	reports = cairn_host_reports();
	for (unsigned j = 0; j < 6; j++)
		cairn_fcache_free(fc, c[j], k);
	cairn_fcache_free(fc, b[6], k);
	CHECK_EQ(cairn_fcache_drain_cpu(fc, 0), 0);
	CHECK(cairn_frames_is_allocated(fa, r, k));
	CHECK_EQ(cairn_host_reports(), reports);
	cairn_host_reports_quiet(0);
	cairn_frames_free(fa, r, k);
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(fa), start);
}

int main(void)
{
	REQUIRE(cairn_host_init(NCPUS, 0, 64 * MiB) == 0);
	struct cairn_mem_range ma[] = { { 1 * MiB, 39 * MiB } };
	struct cairn_mem_range mb[] = { { 40 * MiB, 16 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&fa, ma, 1, &fcfg) == 0);
	REQUIRE(cairn_frames_init(&fb, mb, 1, &fcfg) == 0);
	uint64_t before_a = frames_free_total(fa), before_b = frames_free_total(fb);
	test_bad_states();
	test_bypass_ops();
	test_zero_paths();
	test_pass_ends_lean();
	test_huge_double_free();
	test_bypass_exhaustion();
	test_departed_exhaustion();
	CHECK_EQ(frames_free_total(fa), before_a);
	CHECK_EQ(frames_free_total(fb), before_b);
	CHECK_EQ(cairn_frames_validate(fa), 0);
	CHECK_EQ(cairn_frames_validate(fb), 0);
	cairn_host_cpu_unregister();
	return check_done("fcache_edge");
}
