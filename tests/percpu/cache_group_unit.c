/* SPDX-License-Identifier: MIT */
/*
 * The frame cache's counts and frames accounted under random use, bad
 * frees among it. A frame cache and a quantum cache in one drain group, exhausted at once
 * by two CPUs that each hold what the other's drain asks for; the quantum
 * cache at its largest size (CAIRN_QCACHE_MAX quanta) and just past it;
 * and configurations the caches refuse, which must leave the frame
 * allocator as it was.
 */
#include <cairn/frame_cache.h>
#include <cairn/host.h>
#include <cairn/quantum_cache.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4
#define Q 4096ull
#define VA 0x100000000000ull
#define SPAN_QUANTA 40

static struct cairn_frames *f1; /* the frame cache's memory */
static struct cairn_frames *f2; /* the arena's nodes, the quantum cache's memory */

static void bind(unsigned cpu)
{
	cairn_host_cpu_unregister();
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
}

/* ---- two CPUs draining a frame cache and a quantum cache at once ---- */

/* CPU 1 keeps frames in its order-0 magazines and takes every quantum of
 * the quantum cache; CPU 2 keeps a range in its 1-quantum magazines and
 * takes every frame of the frame cache. Neither operates on the other's
 * cache meanwhile, and the drains wait without limit: each drain is
 * answered only by the other CPU's own waiting drain, through the group.
 * Each must end with everything its cache's memory has: CPU 1 every
 * quantum of the span, CPU 2 every frame that is not the caches' own
 * memory; nothing cached, nothing free. */
static struct cairn_fcache *gfc;
static struct cairn_qcache *gqc;
static atomic_int g_step;
static uint64_t g_got[2];
static uint64_t *g_frames; /* CPU 2's frames */
static uint64_t g_ranges[SPAN_QUANTA + 1];

static void *g_cpu(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg; /* 1 or 2 */
	REQUIRE(cairn_host_cpu_bind(me) == 0);
	uint64_t it;
	if (me == 1) {
		REQUIRE(cairn_fcache_alloc(gfc, 0, 0, &it) == 0);
		REQUIRE(cairn_fcache_free(gfc, it, 0) == 0);
	} else {
		REQUIRE(cairn_qcache_alloc(gqc, Q, &it) == 0);
		REQUIRE(cairn_qcache_free(gqc, it, Q) == 0);
	}
	atomic_fetch_add(&g_step, 1);
	while (atomic_load(&g_step) < 2)
		;
	uint64_t n = 0;
	if (me == 1) {
		while (n <= SPAN_QUANTA && cairn_qcache_alloc(gqc, Q, &g_ranges[n]) == 0)
			n++;
	} else {
		while (cairn_fcache_alloc(gfc, 0, 0, &g_frames[n]) == 0)
			n++;
	}
	g_got[me - 1] = n;
	atomic_fetch_add(&g_step, 1);
	while (atomic_load(&g_step) != 5) { /* an online CPU keeps answering */
		cairn_fcache_poll(gfc);
		cairn_qcache_poll(gqc);
	}
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_group_exhaustion(void)
{
	static struct cairn_mag_group group; /* zeroed: empty */
	struct cairn_arena a;
	struct cairn_arena_config acfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&a, f2, VA, SPAN_QUANTA * Q, &acfg) == 0);
	struct cairn_qcache_config qcfg = { .ncpus = NCPUS, .mag_size = 4,
					    .drain_wait = ~0u, .group = &group };
	REQUIRE(cairn_qcache_create(&gqc, &a, f2, &qcfg) == 0);
	struct cairn_fcache_config fcfg = { .ncpus = NCPUS, .drain_wait = ~0u, .group = &group };
	REQUIRE(cairn_fcache_create(&gfc, f1, &fcfg) == 0);
	/* every frame of f1 but the caches' own memory */
	uint64_t frames = frames_free_total(f1);
	g_frames = calloc(frames + 1, sizeof(*g_frames));
	REQUIRE(g_frames);

	bind(0);
	atomic_store(&g_step, 0);
	alarm(60); /* drains that wait for each other for ever */
	pthread_t t[2];
	for (unsigned i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, g_cpu, (void *)(uintptr_t)(i + 1));
	while (atomic_load(&g_step) != 4) {
		cairn_fcache_poll(gfc);
		cairn_qcache_poll(gqc);
	}
	CHECK_EQ(g_got[0], SPAN_QUANTA);
	CHECK_EQ(g_got[1], frames);
	CHECK_EQ(cairn_qcache_cached_quanta(gqc), 0);
	CHECK_EQ(cairn_fcache_cached_frames(gfc), 0);
	CHECK_EQ(frames_free_total(f1), 0);
	atomic_store(&g_step, 5);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	alarm(0);

	/* every quantum and frame distinct, and back */
	for (uint64_t i = 0; i < g_got[0]; i++) {
		uint64_t start, len, cookie;
		CHECK_EQ(cairn_arena_lookup(&a, g_ranges[i], &start, &len, &cookie), 0);
		CHECK(start == g_ranges[i] && len == Q && cookie == cairn_qcache_cookie(gqc));
		CHECK_EQ(cairn_qcache_free(gqc, g_ranges[i], Q), 0);
	}
	for (uint64_t i = 0; i < g_got[1]; i++)
		CHECK_EQ(cairn_fcache_free(gfc, g_frames[i], 0), 0);
	cairn_fcache_destroy(gfc);
	cairn_qcache_destroy(gqc);
	uint64_t start, len, cookie;
	CHECK_EQ(cairn_arena_lookup(&a, VA, &start, &len, &cookie), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
	CHECK(atomic_load(&group.head) == NULL);
	free(g_frames);
}

/* ---- the quantum cache at CAIRN_QCACHE_MAX quanta ---- */

static uint64_t drains(struct cairn_qcache *qc)
{
	uint64_t n = 0;
	for (unsigned q = 1; q <= CAIRN_QCACHE_MAX; q++) {
		struct cairn_mag_stats st;
		cairn_mag_stats(cairn_qcache_mags(qc, q), &st);
		n += st.drains;
	}
	return n;
}

static void test_qcache_edge(void)
{
	struct cairn_arena a;
	struct cairn_arena_config acfg = { .quantum = Q };
	const uint64_t span = 1024 * Q;
	REQUIRE(cairn_arena_create(&a, f2, VA, span, &acfg) == 0);
	struct cairn_qcache *qc;
	struct cairn_qcache_config cfg = { .max_quanta = CAIRN_QCACHE_MAX, .ncpus = NCPUS,
					   .mag_size = 2 };
	REQUIRE(cairn_qcache_create(&qc, &a, f2, &cfg) == 0);
	CHECK(cairn_qcache_mags(qc, CAIRN_QCACHE_MAX) != NULL);
	CHECK(cairn_qcache_mags(qc, CAIRN_QCACHE_MAX + 1) == NULL);
	CHECK(cairn_qcache_mags(qc, 0) == NULL);
	bind(0);
	struct cairn_mag_cache *top = cairn_qcache_mags(qc, CAIRN_QCACHE_MAX);

	/* The largest cached size, exactly and rounded up: through the
	 * cache (its CPU counts the operations), the range that size. */
	uint64_t x[4], start, len, cookie;
	const uint64_t max = CAIRN_QCACHE_MAX * Q;
	for (unsigned i = 0; i < 2; i++) {
		CHECK_EQ(cairn_qcache_alloc(qc, max - i * (Q - 1), &x[i]), 0);
		CHECK_EQ(x[i] % Q, 0);
		CHECK_EQ(cairn_arena_lookup(&a, x[i], &start, &len, &cookie), 0);
		CHECK(start == x[i] && len == max && cookie == cairn_qcache_cookie(qc));
	}
	struct cairn_mag_cpu_stats cs;
	REQUIRE(cairn_mag_cpu_stats(top, 0, &cs) == 0);
	CHECK_EQ(cs.hits + cs.misses, 2);
	/* one byte more passes through: the arena's own range, no magazine */
	CHECK_EQ(cairn_qcache_alloc(qc, max + 1, &x[2]), 0);
	CHECK_EQ(cairn_arena_lookup(&a, x[2], &start, &len, &cookie), 0);
	CHECK(start == x[2] && len == max + Q && cookie == cairn_qcache_cookie(qc));
	REQUIRE(cairn_mag_cpu_stats(top, 0, &cs) == 0);
	CHECK_EQ(cs.hits + cs.misses, 2);

	/* Wrong sizes for a cached range: the arena's error, nothing
	 * changed (the range stays allocated, nothing enters a magazine). */
	cairn_host_reports_quiet(1);
	uint64_t cached = cairn_qcache_cached_quanta(qc);
	CHECK(cairn_qcache_free(qc, x[0], max + 1) != 0);     /* passes through */
	CHECK(cairn_qcache_free(qc, x[0], max - Q) != 0);     /* a smaller class */
	CHECK(cairn_qcache_free(qc, x[2], max) != 0);         /* a pass-through range */
	CHECK(cairn_qcache_free(qc, x[0] + Q, max) != 0);     /* not its start */
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), cached);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(cairn_arena_lookup(&a, x[i], &start, &len, &cookie), 0);
		CHECK_EQ(start, x[i]);
		CHECK_EQ(len, i < 2 ? max : max + Q);
	}
	REQUIRE(cairn_mag_cpu_stats(top, 0, &cs) == 0);
	CHECK_EQ(cs.hits + cs.misses, 2);

	/* Sizes no arena holds: ENOMEM at once, no drain. */
	uint64_t d = drains(qc);
	CHECK_EQ(cairn_qcache_alloc(qc, UINT64_MAX, &x[3]), CAIRN_ENOMEM);
	CHECK_EQ(cairn_qcache_alloc(qc, UINT64_MAX - Q + 2, &x[3]), CAIRN_ENOMEM);
	CHECK_EQ(drains(qc), d);
	/* size 0: refused, nothing drained */
	CHECK(cairn_qcache_alloc(qc, 0, &x[3]) != 0);
	CHECK_EQ(drains(qc), d);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), cached);

	CHECK_EQ(cairn_qcache_free(qc, x[0], max), 0);
	CHECK_EQ(cairn_qcache_free(qc, x[1], max - Q + 1), 0); /* rounds to the class */
	CHECK_EQ(cairn_qcache_free(qc, x[2], max + 1), 0);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 2 * CAIRN_QCACHE_MAX);
	REQUIRE(cairn_mag_cpu_stats(top, 0, &cs) == 0);
	CHECK_EQ(cs.hits + cs.misses, 4);
	CHECK_EQ(cs.held, 2);

	/* The span holds 1024 quanta, 16 ranges of the largest size: all of
	 * them are had, the two cached ones among them. */
	uint64_t r[17];
	unsigned n = 0;
	while (n < 17 && cairn_qcache_alloc(qc, max, &r[n]) == 0)
		n++;
	CHECK_EQ(n, 16);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_qcache_free(qc, r[i], max), 0);
	cairn_qcache_destroy(qc);
	CHECK_EQ(cairn_arena_lookup(&a, VA, &start, &len, &cookie), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
}

/* ---- the frame cache's counts, and every frame accounted ---- */

/* Random allocations (with and without CAIRN_F_ZERO, cached orders and
 * passed-through ones) and frees, on CPUs 0 and 1, frees often on the
 * other CPU, with rejected frees between them. Each cached order's
 * CPU counts hits + misses == the operations that reached its cache (a
 * rejected free or a passed-through order reaches none), and after every
 * step: free frames + cached frames + frames in hand + magazine frames ==
 * what was free after the cache was made. */
static const unsigned fc_order[5] = { 0, 1, 2, 3, 9 };

static void test_fcache_counts(void)
{
	struct cairn_fcache *fc;
	struct cairn_fcache_config cfg = { .ncpus = NCPUS, .mag_size = { 4, 3, 2, 2, 1 },
					   .depot_full = 1, .depot_empty = 1,
					   .drain_wait = 1000 }; /* the other CPU is not there to answer */
	REQUIRE(cairn_fcache_create(&fc, f1, &cfg) == 0);
	const uint64_t total = frames_free_total(f1);
	enum { HELD = 48 };
	uint64_t hand[HELD];
	unsigned hand_order[HELD], nh = 0;
	uint64_t ops[5][2] = { { 0 } };
	uint64_t rng = 0x2545f4914f6cdd1dull;
	cairn_host_reports_quiet(1);
	for (unsigned step = 0; step < 6000; step++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		unsigned cpu = (unsigned)(rng >> 60) & 1;
		bind(cpu);
		unsigned r = (unsigned)(rng % 100), oi = (unsigned)((rng >> 8) % 6);
		if (r < 50 && nh < HELD) {
			unsigned order = oi < 5 ? fc_order[oi] : 4; /* 4: passes through */
			unsigned flags = (rng >> 20) & 1 ? CAIRN_F_ZERO : 0;
			uint64_t p;
			struct cairn_mag_stats was, now;
			cairn_mag_stats(cairn_fcache_mags(fc, 0), &was);
			int err = cairn_fcache_alloc(fc, order, flags, &p);
			cairn_mag_stats(cairn_fcache_mags(fc, 0), &now);
			/* one try, and one more after a drain (ENOMEM drains
			 * every order, order 0's among them) */
			if (oi < 5)
				ops[oi][cpu] += 1 + (now.drains != was.drains);
			if (err == 0) {
				hand[nh] = p;
				hand_order[nh++] = order;
			}
		} else if (r < 90 && nh) {
			unsigned i = (unsigned)((rng >> 24) % nh);
			int k = -1;
			for (unsigned j = 0; j < 5; j++)
				if (fc_order[j] == hand_order[i])
					k = (int)j;
			/* first a bad free of it: misaligned, or the wrong order */
			if (hand_order[i] && (rng >> 30) & 1)
				CHECK(cairn_fcache_free(fc, hand[i] + CAIRN_FRAME_SIZE, hand_order[i]) != 0);
			else
				CHECK(cairn_fcache_free(fc, hand[i], hand_order[i] == 9 ? 3 : hand_order[i] + 1) != 0);
			CHECK_EQ(cairn_fcache_free(fc, hand[i], hand_order[i]), 0);
			if (k >= 0)
				ops[k][cpu]++;
			hand[i] = hand[--nh];
			hand_order[i] = hand_order[nh];
		} else if (r < 92) {
			cairn_fcache_drain_all(fc);
		}
		uint64_t in_hand = 0, mags = 0;
		for (unsigned i = 0; i < nh; i++)
			in_hand += 1ull << hand_order[i];
		for (unsigned j = 0; j < 5; j++) {
			struct cairn_mag_stats st;
			cairn_mag_stats(cairn_fcache_mags(fc, fc_order[j]), &st);
			mags += st.magazines;
			CHECK(st.depot_full <= 1 && st.depot_empty <= 1);
			CHECK(st.cpu_held + st.depot_items <= st.bound);
		}
		CHECK_EQ(frames_free_total(f1) + cairn_fcache_cached_frames(fc) + in_hand + mags, total);
	}
	cairn_host_reports_quiet(0);
	for (unsigned j = 0; j < 5; j++)
		for (unsigned c = 0; c < 2; c++) {
			struct cairn_mag_cpu_stats cs;
			REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(fc, fc_order[j]), c, &cs) == 0);
			if (cs.hits + cs.misses != ops[j][c])
				fprintf(stderr, "order %u cpu %u: %llu hits + %llu misses, %llu ops\n",
					fc_order[j], c, (unsigned long long)cs.hits,
					(unsigned long long)cs.misses, (unsigned long long)ops[j][c]);
			CHECK_EQ(cs.hits + cs.misses, ops[j][c]);
		}
	bind(0);
	for (unsigned i = 0; i < nh; i++)
		CHECK_EQ(cairn_fcache_free(fc, hand[i], hand_order[i]), 0);
	cairn_fcache_destroy(fc);
}

/* ---- refused configurations change nothing ---- */

static void test_refused(void)
{
	uint64_t before1 = frames_free_total(f1), before2 = frames_free_total(f2);
	struct cairn_fcache *fc = (struct cairn_fcache *)1;
	/* depot limits that make too many magazines: the first order's cache
	 * refuses, after the frame cache took its own frame */
	struct cairn_fcache_config fcfg = { .ncpus = NCPUS, .depot_full = 70000 };
	CHECK_EQ(cairn_fcache_create(&fc, f1, &fcfg), CAIRN_EINVAL);
	CHECK(fc == (struct cairn_fcache *)1);
	fcfg = (struct cairn_fcache_config){ .ncpus = NCPUS, .mag_size = { 0, 0, 0, 0, 511 } };
	CHECK_EQ(cairn_fcache_create(&fc, f1, &fcfg), CAIRN_EINVAL);
	CHECK_EQ(frames_free_total(f1), before1);

	struct cairn_arena a;
	struct cairn_arena_config acfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&a, f2, VA, 64 * Q, &acfg) == 0);
	before2 = frames_free_total(f2);
	struct cairn_qcache *qc = (struct cairn_qcache *)1;
	struct cairn_qcache_config qcfg = { .ncpus = NCPUS, .max_quanta = 8,
					    .depot_empty = 70000 };
	CHECK_EQ(cairn_qcache_create(&qc, &a, f2, &qcfg), CAIRN_EINVAL);
	qcfg = (struct cairn_qcache_config){ .max_quanta = CAIRN_QCACHE_MAX + 1 };
	CHECK_EQ(cairn_qcache_create(&qc, &a, f2, &qcfg), CAIRN_EINVAL);
	qcfg = (struct cairn_qcache_config){ .mag_size = CAIRN_MAG_MAX + 1 };
	CHECK_EQ(cairn_qcache_create(&qc, &a, f2, &qcfg), CAIRN_EINVAL);
	CHECK(qc == (struct cairn_qcache *)1);
	CHECK_EQ(frames_free_total(f2), before2);
	cairn_arena_destroy(&a);

	/* caller memory: too small or misaligned, refused untouched */
	static _Alignas(64) unsigned char mem[1 << 16];
	memset(mem, 0xa5, sizeof(mem));
	struct cairn_mag_config mcfg = {
		.source = { (size_t (*)(void *, uint64_t *, size_t))1,
			    (void (*)(void *, const uint64_t *, size_t))1, NULL },
		.frames = f1, .ncpus = NCPUS, .mem = mem,
	};
	size_t need = cairn_mag_mem_size(&mcfg);
	REQUIRE(need > 64 && need < sizeof(mem));
	struct cairn_mag_cache *mc = (struct cairn_mag_cache *)1;
	mcfg.mem_size = need - 1;
	CHECK_EQ(cairn_mag_create(&mc, &mcfg), CAIRN_EINVAL);
	mcfg.mem = mem + 8;
	mcfg.mem_size = need;
	CHECK_EQ(cairn_mag_create(&mc, &mcfg), CAIRN_EINVAL);
	mcfg.mem = mem;
	mcfg.refill = 64; /* above the magazine size (63) */
	CHECK_EQ(cairn_mag_create(&mc, &mcfg), CAIRN_EINVAL);
	CHECK(mc == (struct cairn_mag_cache *)1);
	bool untouched = true;
	for (size_t i = 0; i < sizeof(mem); i++)
		untouched &= mem[i] == 0xa5;
	CHECK(untouched);
	CHECK_EQ(frames_free_total(f1), before1);
}

int main(void)
{
	REQUIRE(cairn_host_init(NCPUS + 1, 0, 64 * MiB) == 0);
	struct cairn_mem_range m1[] = { { 1 * MiB, 7 * MiB } };
	struct cairn_mem_range m2[] = { { 16 * MiB, 32 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS + 1 };
	REQUIRE(cairn_frames_init(&f1, m1, 1, &fcfg) == 0);
	REQUIRE(cairn_frames_init(&f2, m2, 1, &fcfg) == 0);
	uint64_t before1 = frames_free_total(f1), before2 = frames_free_total(f2);
	test_refused();
	test_fcache_counts();
	test_qcache_edge();
	test_group_exhaustion();
	CHECK_EQ(frames_free_total(f1), before1);
	CHECK_EQ(frames_free_total(f2), before2);
	CHECK_EQ(cairn_frames_validate(f1), 0);
	CHECK_EQ(cairn_frames_validate(f2), 0);
	return check_done("cache_group_unit");
}
