/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the frame cache: cached and passed-through orders and
 * flags, zeroing, frees on another CPU, bad input rejected with the frame
 * allocator's error codes and nothing changed, and exhaustion while every
 * frame sits in other CPUs' caches.
 */
#include <cairn/frame_cache.h>
#include <cairn/host.h>

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "../check.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4

static struct cairn_frames *frames;
static struct cairn_fcache *fc;

static void bind(unsigned cpu)
{
	cairn_host_cpu_unregister();
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
}

static void test_basic(void)
{
	bind(0);
	cairn_phys_t p, q;
	/* the cached orders, and a passed-through one */
	static const unsigned orders[] = { 0, 1, 2, 3, 9, 4, 10 };
	for (unsigned i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
		unsigned k = orders[i];
		REQUIRE(cairn_fcache_alloc(fc, k, 0, &p) == 0);
		CHECK_EQ(p & ((CAIRN_FRAME_SIZE << k) - 1), 0);
		CHECK(cairn_frames_is_allocated(frames, p, k));
		CHECK_EQ(cairn_fcache_free(fc, p, k), 0);
		CHECK_EQ(!!cairn_fcache_mags(fc, k), k <= 3 || k == 9);
		/* cached orders keep the block allocated in the frame allocator */
		CHECK_EQ(cairn_frames_is_allocated(frames, p, k), k <= 3 || k == 9);
		REQUIRE(cairn_fcache_alloc(fc, k, 0, &q) == 0);
		if (k <= 3 || k == 9)
			CHECK_EQ(q, p); /* LIFO: the repeat case */
		CHECK_EQ(cairn_fcache_free(fc, q, k), 0);
	}
	/* all areas named is "any": cached; some areas: passed through */
	uint64_t cached = cairn_fcache_cached_frames(fc);
	REQUIRE(cairn_fcache_alloc(fc, 0, CAIRN_F_ANY, &p) == 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached - 1);
	CHECK_EQ(cairn_fcache_free(fc, p, 0), 0);
	REQUIRE(cairn_fcache_alloc(fc, 0, CAIRN_F_LOW16M, &p) == 0);
	CHECK(p < 16 * MiB);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(cairn_fcache_free(fc, p, 0), 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached + 1);
	CHECK_EQ(cairn_fcache_alloc(fc, 0, 1u << 20, &p), CAIRN_EINVAL);
	CHECK_EQ(cairn_fcache_alloc(fc, CAIRN_MAX_ORDER + 1, 0, &p), CAIRN_EINVAL);

	/* zeroing: a cached frame comes back dirty unless asked */
	REQUIRE(cairn_fcache_alloc(fc, 1, 0, &p) == 0);
	uint64_t *m = cairn_port_phys_to_virt(p);
	for (unsigned i = 0; i < 1024; i++)
		m[i] = ~0ull;
	CHECK_EQ(cairn_fcache_free(fc, p, 1), 0);
	REQUIRE(cairn_fcache_alloc(fc, 1, CAIRN_F_ZERO, &q) == 0);
	CHECK_EQ(q, p);
	uint64_t any = 0;
	for (unsigned i = 0; i < 1024; i++)
		any |= m[i];
	CHECK_EQ(any, 0);
	CHECK_EQ(cairn_fcache_free(fc, q, 1), 0);

	/* a free on another CPU: the frame joins that CPU's magazine */
	REQUIRE(cairn_fcache_alloc(fc, 0, 0, &p) == 0);
	bind(2);
	struct cairn_mag_cpu_stats st;
	cairn_mag_cpu_stats(cairn_fcache_mags(fc, 0), 2, &st);
	uint64_t held = st.held;
	CHECK_EQ(cairn_fcache_free(fc, p, 0), 0);
	cairn_mag_cpu_stats(cairn_fcache_mags(fc, 0), 2, &st);
	CHECK_EQ(st.held, held + 1);
	bind(0);
}

static void test_bad_input(void)
{
	bind(1);
	cairn_phys_t p, q;
	REQUIRE(cairn_fcache_alloc(fc, 2, 0, &p) == 0);
	REQUIRE(cairn_fcache_alloc(fc, 0, 0, &q) == 0);
	uint64_t cached = cairn_fcache_cached_frames(fc), fr = frames_free_total(frames);
	cairn_host_reports_quiet(1);
	uint64_t reports = cairn_host_reports();
	CHECK_EQ(cairn_fcache_free(fc, p + CAIRN_FRAME_SIZE, 2), CAIRN_EALIGN);
	CHECK_EQ(cairn_fcache_free(fc, p, 1), CAIRN_EORDER);
	CHECK_EQ(cairn_fcache_free(fc, 1ull << 40, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_fcache_free(fc, q + 1, 0), CAIRN_EALIGN);
	/* the order-0 check inline in the free: the head and a continuation
	 * of a larger block, and the frames just outside the regions */
	CHECK_EQ(cairn_fcache_free(fc, p, 0), CAIRN_EORDER);
	CHECK_EQ(cairn_fcache_free(fc, p + CAIRN_FRAME_SIZE, 0), CAIRN_EORDER);
	CHECK_EQ(cairn_fcache_free(fc, 1 * MiB - CAIRN_FRAME_SIZE, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_fcache_free(fc, 63 * MiB, 0), CAIRN_ERANGE);
	/* a frame free in the frame allocator */
	cairn_phys_t r;
	REQUIRE(cairn_frames_alloc(frames, 0, 0, &r) == 0);
	REQUIRE(cairn_frames_free(frames, r, 0) == 0);
	CHECK_EQ(cairn_fcache_free(fc, r, 0), CAIRN_EFREE);
	CHECK(cairn_host_reports() > reports);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(frames_free_total(frames), fr);
	CHECK_EQ(cairn_fcache_free(fc, p, 2), 0);
	CHECK_EQ(cairn_fcache_free(fc, q, 0), 0);
	CHECK_EQ(cairn_fcache_drain_cpu(fc, NCPUS), CAIRN_EINVAL);

	/* the same for a huge block (its own check on the inline path) */
	REQUIRE(cairn_fcache_alloc(fc, CAIRN_HUGE_ORDER, 0, &p) == 0);
	cached = cairn_fcache_cached_frames(fc);
	fr = frames_free_total(frames);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_fcache_free(fc, p + CAIRN_FRAME_SIZE, CAIRN_HUGE_ORDER), CAIRN_EALIGN);
	CHECK_EQ(cairn_fcache_free(fc, p, 8), CAIRN_EORDER);
	CHECK_EQ(cairn_fcache_free(fc, 1ull << 40, CAIRN_HUGE_ORDER), CAIRN_ERANGE);
	REQUIRE(cairn_frames_alloc(frames, CAIRN_HUGE_ORDER, 0, &r) == 0);
	REQUIRE(cairn_frames_free(frames, r, CAIRN_HUGE_ORDER) == 0);
	CHECK_EQ(cairn_fcache_free(fc, r, CAIRN_HUGE_ORDER), CAIRN_EFREE);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(frames_free_total(frames), fr);
	CHECK_EQ(cairn_fcache_free(fc, p, CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached + (1u << CAIRN_HUGE_ORDER));

	/* trust_frees: alignment is still checked, the rest is the caller's */
	struct cairn_fcache *t;
	struct cairn_fcache_config cfg = { .trust_frees = true };
	REQUIRE(cairn_fcache_create(&t, frames, &cfg) == 0);
	REQUIRE(cairn_fcache_alloc(t, 3, 0, &p) == 0);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_fcache_free(t, p + CAIRN_FRAME_SIZE, 3), CAIRN_EALIGN);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_fcache_free(t, p, 3), 0);
	REQUIRE(cairn_fcache_alloc(t, 3, 0, &q) == 0);
	CHECK_EQ(q, p);
	CHECK_EQ(cairn_fcache_free(t, q, 3), 0);
	CHECK_EQ(cairn_fcache_drain_cpu(t, 1), 0);
	cairn_fcache_destroy(t);
}

/* ---- exhaustion: every free frame cached by other CPUs ---- */

static atomic_int x_ready, x_stop;

static void *x_worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
	/* take some memory as 2 MiB blocks and as frames, then free it all:
	 * the caches keep what their bounds allow, the rest goes back */
	cairn_phys_t *v = calloc(1u << 16, sizeof(*v));
	unsigned n = 0, k = cpu == 1 ? 9 : 0;
	while (n < (cpu == 1 ? 8u : 1u << 16) && cairn_fcache_alloc(fc, k, 0, &v[n]) == 0)
		n++;
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_fcache_free(fc, v[i], k), 0);
	free(v);
	atomic_fetch_add(&x_ready, 1);
	while (!atomic_load(&x_stop))
		cairn_fcache_poll(fc); /* an online CPU keeps answering */
	cairn_host_cpu_unregister();
	return NULL;
}

/* Magazine frames in use, all orders. */
static uint64_t magazines(void)
{
	static const unsigned orders[] = { 0, 1, 2, 3, 9 };
	uint64_t mags = 0;
	for (unsigned i = 0; i < 5; i++) {
		struct cairn_mag_stats ms;
		cairn_mag_stats(cairn_fcache_mags(fc, orders[i]), &ms);
		mags += ms.magazines;
	}
	return mags;
}

static void test_exhaustion(void)
{
	/* a cache whose depot can hold all of memory */
	struct cairn_fcache *basic = fc;
	struct cairn_fcache_config cfg = { .depot_full = 300, .depot_empty = 8 };
	REQUIRE(cairn_fcache_create(&fc, frames, &cfg) == 0);
	cairn_host_cpu_unregister();
	uint64_t total = frames_free_total(frames);
	atomic_store(&x_ready, 0);
	atomic_store(&x_stop, 0);
	pthread_t t[3];
	for (unsigned i = 0; i < 3; i++) { /* one after the other */
		pthread_create(&t[i], NULL, x_worker, (void *)(uintptr_t)(i + 1));
		while (atomic_load(&x_ready) != (int)i + 1)
			;
	}
	bind(0);
	uint64_t cached = cairn_fcache_cached_frames(fc);
	printf("exhaustion: %llu frames, %llu of them cached by CPUs 1-3\n",
	       (unsigned long long)total, (unsigned long long)cached);
	uint64_t mags = magazines();
	/* every frame is cached, or a magazine holding cached frames, or (a
	 * few, flushed while magazines could not be had) free */
	CHECK_EQ(cached + mags + frames_free_total(frames), total);
	CHECK(cached > total / 10 * 9);
	/* every frame, one at a time, on CPU 0. The allocation that finds
	 * memory exhausted drains everything back (cached frames and magazine
	 * frames) and then, lean, takes one frame: not a magazine's worth */
	cairn_phys_t *v = calloc(total + 1, sizeof(*v));
	uint64_t n = 0, drains = 0;
	for (;;) {
		uint64_t back = frames_free_total(frames) + cairn_fcache_cached_frames(fc) + magazines();
		struct cairn_mag_stats was, now;
		cairn_mag_stats(cairn_fcache_mags(fc, 0), &was);
		if (n > total || cairn_fcache_alloc(fc, 0, 0, &v[n]))
			break;
		n++;
		cairn_mag_stats(cairn_fcache_mags(fc, 0), &now);
		if (now.drains != was.drains) {
			drains++;
			CHECK_EQ(frames_free_total(frames), back - 1);
			CHECK_EQ(now.lean_gets, was.lean_gets + 1);
		}
	}
	/* one drain among the allocations that succeeded (the last one,
	 * which fails, drains again) */
	CHECK_EQ(drains, 1);
	CHECK_EQ(n, total);
	CHECK_EQ(frames_free_total(frames), 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), 0);
	atomic_store(&x_stop, 1);
	for (unsigned i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(cairn_fcache_free(fc, v[i], 0), 0);
	free(v);
	/* CPUs 1-3 are gone: drain their slots (nothing left) and ours */
	for (unsigned c = 0; c < NCPUS; c++)
		CHECK_EQ(cairn_fcache_drain_cpu(fc, c), 0);
	cairn_fcache_drain_all(fc); /* and the depot */
	CHECK_EQ(cairn_fcache_cached_frames(fc), 0);
	CHECK_EQ(frames_free_total(frames), total);
	cairn_fcache_destroy(fc);
	fc = basic;
}

/* Memory exhausted while lean (just after a drain): a miss whose own
 * magazines are empty lets their frames go before it fails, so the
 * allocation that needs them has one without draining everyone again. */
static void test_lean_own_magazines(void)
{
	struct cairn_fcache *basic = fc;
	uint64_t before = frames_free_total(frames);
	REQUIRE(cairn_fcache_create(&fc, frames, NULL) == 0);
	bind(0);
	uint64_t total = frames_free_total(frames);
	cairn_phys_t *v = calloc(total + 1, sizeof(*v));
	uint64_t n = 0;
	while (n <= total && cairn_fcache_alloc(fc, 0, 0, &v[n]) == 0)
		n++;
	CHECK_EQ(n, total);
	/* The failing allocation drained: lean. The first free finds no
	 * frame for a magazine and goes back; the second is cached in a
	 * magazine made of the first. */
	CHECK_EQ(cairn_fcache_free(fc, v[--n], 0), 0);
	CHECK_EQ(cairn_fcache_free(fc, v[--n], 0), 0);
	CHECK_EQ(frames_free_total(frames), 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), 1);
	CHECK_EQ(magazines(), 1);
	struct cairn_mag_stats st;
	cairn_mag_stats(cairn_fcache_mags(fc, 0), &st);
	uint64_t drains = st.drains;
	/* the cached frame, then the magazine's own: no drain */
	REQUIRE(cairn_fcache_alloc(fc, 0, 0, &v[n++]) == 0);
	REQUIRE(cairn_fcache_alloc(fc, 0, 0, &v[n++]) == 0);
	cairn_mag_stats(cairn_fcache_mags(fc, 0), &st);
	CHECK_EQ(st.drains, drains);
	CHECK_EQ(magazines(), 0);
	CHECK_EQ(n, total);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(cairn_fcache_free(fc, v[i], 0), 0);
	free(v);
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(frames), before);
	fc = basic;
}

/* Two CPUs short of different orders drain at once: CPU 1 holds an
 * order-0 frame and drains order 1's cache, CPU 2 holds an order-1 block
 * and drains order 0's while CPU 1 waits for it, both without limit. The
 * orders' caches share a drain group, so each waiting drainer answers the
 * other and both return with everything back. Apart, both waited for ever
 * (the alarm ends the test). */
static atomic_int g_step;      /* 2: both hold their block; 4: both drained */
static uint64_t g_left[2];     /* what each drained order held after the drain */

static void *g_drainer(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg; /* 1 or 2 */
	unsigned mine = me - 1, other = 2 - me;  /* orders */
	REQUIRE(cairn_host_cpu_bind(me) == 0);
	cairn_phys_t p;
	REQUIRE(cairn_fcache_alloc(fc, mine, 0, &p) == 0);
	REQUIRE(cairn_fcache_free(fc, p, mine) == 0); /* held in a magazine */
	atomic_fetch_add(&g_step, 1);
	while (atomic_load(&g_step) < 2)
		;
	struct cairn_mag_stats st;
	if (me == 2) /* after CPU 1's drain began: it waits for us */
		do
			cairn_mag_stats(cairn_fcache_mags(fc, 1), &st);
		while (st.drains == 0);
	cairn_mag_drain_all(cairn_fcache_mags(fc, other));
	/* our drain returned: the other CPU answered it (checked by the
	 * main thread: the checks' counters are not for threads) */
	cairn_mag_stats(cairn_fcache_mags(fc, other), &st);
	g_left[me - 1] = st.cpu_held + st.depot_items;
	atomic_fetch_add(&g_step, 1);
	while (atomic_load(&g_step) != 4)
		cairn_fcache_poll(fc); /* an online CPU keeps answering */
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_orders_drain_group(void)
{
	struct cairn_fcache *basic = fc;
	uint64_t before = frames_free_total(frames);
	struct cairn_fcache_config cfg = { .drain_wait = ~0u }; /* for ever here */
	REQUIRE(cairn_fcache_create(&fc, frames, &cfg) == 0);
	cairn_host_cpu_unregister();
	atomic_store(&g_step, 0);
	alarm(60); /* two drains waiting for each other */
	pthread_t t[2];
	for (unsigned i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, g_drainer, (void *)(uintptr_t)(i + 1));
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	alarm(0);
	bind(0);
	CHECK_EQ(g_left[0], 0);
	CHECK_EQ(g_left[1], 0);
	CHECK_EQ(cairn_fcache_cached_frames(fc), 0);
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(frames), before);
	fc = basic;
}

/* A double free whose first free still sits in a magazine passes the
 * free's check at order 0 (as with Linux's per-CPU lists). When the
 * magazine goes back to the frame allocator the second copy is reported
 * there, and every other block of the batch still goes back. At order 9
 * the first free holds the block in the frame allocator, and the second
 * is reported at once and changes nothing. */
static void test_cached_double_free(void)
{
	bind(2);
	cairn_fcache_drain_all(fc); /* CPUs 0 and 1 have no thread to answer */
	uint64_t fr = frames_free_total(frames), cached = cairn_fcache_cached_frames(fc);
	static const unsigned orders[] = { 0, CAIRN_HUGE_ORDER };
	for (unsigned i = 0; i < 2; i++) {
		unsigned k = orders[i];
		cairn_phys_t b[4];
		for (unsigned j = 0; j < 4; j++)
			REQUIRE(cairn_fcache_alloc(fc, k, 0, &b[j]) == 0);
		CHECK_EQ(cairn_fcache_free(fc, b[0], k), 0);
		cairn_host_reports_quiet(1);
		uint64_t reports = cairn_host_reports();
		/* order 0: not seen yet; order 9: held, refused */
		CHECK_EQ(cairn_fcache_free(fc, b[0], k), k ? CAIRN_EFREE : 0);
		CHECK_EQ(cairn_host_reports() - reports, k ? 1 : 0);
		for (unsigned j = 1; j < 4; j++)
			CHECK_EQ(cairn_fcache_free(fc, b[j], k), 0);
		reports = cairn_host_reports();
		cairn_fcache_drain_all(fc);
		CHECK_EQ(cairn_host_reports() - reports, k ? 0 : 1);
		cairn_host_reports_quiet(0);
		CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
		CHECK_EQ(frames_free_total(frames), fr);
	}
}

/* A huge free that finds its CPU's magazines full and the depot at its
 * limit goes to the frame allocator's free, which checks it: bad ones are
 * refused there with the same errors, counting nothing and changing
 * nothing; a good one is freed at once (the frame allocator's free count
 * rises, the cache holds what it held) and counts one miss; the magazines
 * still serve the next allocation. */
static uint64_t ops9(struct cairn_fcache *c, unsigned cpu)
{
	struct cairn_mag_cpu_stats cs;
	REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(c, CAIRN_HUGE_ORDER), cpu, &cs) == 0);
	return cs.hits + cs.misses;
}

static void test_full_pass(void)
{
	bind(3);
	uint64_t start = frames_free_total(frames);
	struct cairn_fcache *t;
	struct cairn_fcache_config cfg = { .mag_size = { 0, 0, 0, 0, 2 }, .depot_full = 1 };
	REQUIRE(cairn_fcache_create(&t, frames, &cfg) == 0);
	cairn_phys_t b[8], r;
	for (unsigned j = 0; j < 8; j++)
		REQUIRE(cairn_fcache_alloc(t, CAIRN_HUGE_ORDER, 0, &b[j]) == 0);
	/* loaded and prev full (2 each), one full magazine in the depot */
	for (unsigned j = 0; j < 6; j++)
		CHECK_EQ(cairn_fcache_free(t, b[j], CAIRN_HUGE_ORDER), 0);
	uint64_t cached = cairn_fcache_cached_frames(t), fr = frames_free_total(frames);
	CHECK_EQ(cached, 6u << CAIRN_HUGE_ORDER);
	struct cairn_mag_cpu_stats cs;
	REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(t, CAIRN_HUGE_ORDER), 3, &cs) == 0);
	uint64_t ops = ops9(t, 3), misses = cs.misses;

	REQUIRE(cairn_frames_alloc(frames, CAIRN_HUGE_ORDER, 0, &r) == 0);
	REQUIRE(cairn_frames_free(frames, r, CAIRN_HUGE_ORDER) == 0);
	cairn_host_reports_quiet(1);
	uint64_t reports = cairn_host_reports();
	CHECK_EQ(cairn_fcache_free(t, r, CAIRN_HUGE_ORDER), CAIRN_EFREE);
	CHECK_EQ(cairn_fcache_free(t, b[6] + CAIRN_FRAME_SIZE, CAIRN_HUGE_ORDER), CAIRN_EALIGN);
	CHECK_EQ(cairn_fcache_free(t, 1ull << 40, CAIRN_HUGE_ORDER), CAIRN_ERANGE);
	REQUIRE(cairn_frames_alloc(frames, 0, 0, &r) == 0);
	CHECK_EQ(cairn_fcache_free(t, r & ~((CAIRN_FRAME_SIZE << CAIRN_HUGE_ORDER) - 1),
				   CAIRN_HUGE_ORDER) < 0, 1);
	CHECK(cairn_host_reports() > reports);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_frames_free(frames, r, 0), 0);
	CHECK_EQ(cairn_fcache_cached_frames(t), cached);
	CHECK_EQ(frames_free_total(frames), fr);
	CHECK_EQ(ops9(t, 3), ops);

	/* the good ones: to the frame allocator, one miss each */
	CHECK_EQ(cairn_fcache_free(t, b[6], CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(frames_free_total(frames), fr + (1u << CAIRN_HUGE_ORDER));
	CHECK_EQ(cairn_fcache_cached_frames(t), cached);
	CHECK_EQ(cairn_fcache_free(t, b[7], CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(frames_free_total(frames), fr + (2u << CAIRN_HUGE_ORDER));
	REQUIRE(cairn_mag_cpu_stats(cairn_fcache_mags(t, CAIRN_HUGE_ORDER), 3, &cs) == 0);
	CHECK_EQ(cs.misses, misses + 2);
	CHECK_EQ(ops9(t, 3), ops + 2);
	CHECK_EQ(cairn_fcache_free(t, b[7], CAIRN_HUGE_ORDER), CAIRN_EFREE);

	/* the magazines still serve: a hit each way */
	REQUIRE(cairn_fcache_alloc(t, CAIRN_HUGE_ORDER, 0, &b[0]) == 0);
	CHECK_EQ(cairn_fcache_cached_frames(t), cached - (1u << CAIRN_HUGE_ORDER));
	CHECK_EQ(cairn_fcache_free(t, b[0], CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(cairn_fcache_cached_frames(t), cached);
	CHECK_EQ(cairn_fcache_drain_cpu(t, 3), 0);
	cairn_fcache_destroy(t);
	CHECK_EQ(frames_free_total(frames), start);
}

/* Drains counted by every order's cache. */
static uint64_t all_drains(void)
{
	static const unsigned order[] = { 0, 1, 2, 3, CAIRN_HUGE_ORDER };
	uint64_t n = 0;
	for (unsigned i = 0; i < 5; i++) {
		struct cairn_mag_stats st;
		cairn_mag_stats(cairn_fcache_mags(fc, order[i]), &st);
		n += st.drains;
	}
	return n;
}

/* A request no region could ever serve (a block larger than every region
 * of its areas holds, or areas with no memory at all) fails without a
 * drain: nothing the caches hold could make it possible, and a drain
 * would take every CPU's magazines and leave the caches lean, on every
 * such call. The memory: [1, 63) MiB, below 16 MiB and below 4 GiB. */
static void test_hopeless(void)
{
	bind(0);
	cairn_phys_t v[8], p;
	for (unsigned i = 0; i < 8; i++)
		REQUIRE(cairn_fcache_alloc(fc, 0, 0, &v[i]) == 0);
	for (unsigned i = 0; i < 8; i++)
		CHECK_EQ(cairn_fcache_free(fc, v[i], 0), 0);
	uint64_t cached = cairn_fcache_cached_frames(fc), fr = frames_free_total(frames);
	uint64_t drains = all_drains(), mags = magazines();
	CHECK(cached >= 8);
	/* 1 GiB: no region is that large */
	CHECK_EQ(cairn_fcache_alloc(fc, 18, 0, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_fcache_alloc(fc, 18, CAIRN_F_ZERO, &p), CAIRN_ENOMEM);
	/* above 4 GiB: no memory there, at a cached order and another */
	CHECK_EQ(cairn_fcache_alloc(fc, 0, CAIRN_F_HIGH, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_fcache_alloc(fc, 5, CAIRN_F_HIGH, &p), CAIRN_ENOMEM);
	/* 16 MiB below 16 MiB: [1, 16) MiB holds no aligned one */
	CHECK_EQ(cairn_fcache_alloc(fc, 12, CAIRN_F_LOW16M, &p), CAIRN_ENOMEM);
	CHECK_EQ(all_drains(), drains);
	CHECK_EQ(cairn_fcache_cached_frames(fc), cached);
	CHECK_EQ(frames_free_total(frames), fr);
	/* one that memory could serve still drains when it fails: 8 MiB
	 * blocks until none is left (62 MiB of memory hold at most 7) */
	cairn_phys_t big[8];
	unsigned n = 0;
	while (n < 8 && cairn_fcache_alloc(fc, 11, 0, &big[n]) == 0)
		n++;
	CHECK(n >= 1 && n < 8);
	CHECK(all_drains() > drains);
	CHECK(cairn_fcache_cached_frames(fc) < cached);
	while (n)
		CHECK_EQ(cairn_fcache_free(fc, big[--n], 11), 0);
	/* (a magazine is a frame of its own) */
	CHECK_EQ(frames_free_total(frames) + cairn_fcache_cached_frames(fc) + magazines(),
		 fr + cached + mags);
}

int main(void)
{
	REQUIRE(cairn_host_init(NCPUS, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	uint64_t before = frames_free_total(frames);
	REQUIRE(cairn_fcache_create(&fc, frames, NULL) == 0);
	test_basic();
	test_bad_input();
	test_cached_double_free();
	test_full_pass();
	test_exhaustion();
	test_lean_own_magazines();
	test_hopeless();
	test_orders_drain_group();
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(frames), before);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("fcache_unit");
}
