/* SPDX-License-Identifier: MIT */
/*
 * bench-percpu: the frame allocator with and without the per-CPU frame
 * cache in front of it, in the same run.
 *
 *   repeat  half of memory allocated, then each thread frees and
 *           reallocates one order-0 frame in a loop: ns per (free + alloc)
 *           pair. The case per-CPU caches are built for.
 *   bulk    each thread allocates its share of half of memory, one block at
 *           a time, then frees it all: ns per alloc and ns per free, for
 *           order 0 and order 9.
 *
 * impl "uncached" calls cairn_frames_alloc/free, impl "cached" calls
 * cairn_fcache_alloc/free with default magazine sizes and depot limits, and
 * "cached-trusted" the same with trust_frees (a free checks alignment only,
 * not the frame allocator's record of the block). The simulated memory is
 * touched once before anything is measured, so that no run pays the host's
 * first-touch page faults for the magazine frames it writes.
 * The two run interleaved, each run on a fresh frames instance (and a fresh
 * cache) over the same simulated memory; every result is checked: a block
 * handed out twice, a failed allocation with half of memory free, or memory
 * not all free after a run (cache drained and destroyed) fails the program.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <cairn/frame_cache.h>
#include <cairn/quantum_cache.h>
#include <cairn/host.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PHYS_BASE (4ull << 30)

enum impl { IMPL_CACHED, IMPL_TRUSTED, IMPL_UNCACHED, NIMPL };
static const char *const impl_name[NIMPL] = { "cached", "cached-trusted", "uncached" };

enum test { TEST_REPEAT, TEST_BULK, NTEST };
static const char *const test_name[NTEST] = { "repeat", "bulk" };

static uint64_t mem_mib, repeat_iters, mem_size, nframes;
static struct cairn_mem_range map;
static void *meta;
static size_t meta_size;
static struct cairn_frames *cf;
static struct cairn_fcache *fc;

static bool set_mem(const char *v)
{
	char *end;
	mem_mib = strtoull(v, &end, 10);
	return !*end && mem_mib >= 16 && mem_mib <= (1ull << 20);
}

static unsigned bulk_orders[2] = { 0, 9 }, nbulk_orders = 2;

static bool set_orders(const char *v)
{
	nbulk_orders = 0;
	for (const char *p = v; *p;) {
		char *end;
		unsigned long k = strtoul(p, &end, 10);
		if (end == p || (k != 0 && k != 9) || nbulk_orders == 2 || (*end && *end != ','))
			return false;
		bulk_orders[nbulk_orders++] = (unsigned)k;
		p = *end ? end + 1 : end;
	}
	return nbulk_orders > 0;
}

static bool set_iters(const char *v)
{
	char *end;
	repeat_iters = strtoull(v, &end, 10);
	return !*end && repeat_iters > 0;
}

static const struct bench_option options[] = {
	{ "mem", true, "simulated memory in MiB (1024; quick: 64)", set_mem },
	{ "iters", true, "repeat: pairs per thread (2000000; quick: 2000)", set_iters },
	{ "orders", true, "bulk: orders, comma separated (0,9)", set_orders },
	{ 0 }
};

static inline int do_alloc(enum impl im, unsigned order, uint64_t *out)
{
	if (im != IMPL_UNCACHED)
		return cairn_fcache_alloc(fc, order, 0, out);
	return cairn_frames_alloc(cf, order, 0, out);
}

static inline int do_free(enum impl im, uint64_t phys, unsigned order)
{
	if (im != IMPL_UNCACHED)
		return cairn_fcache_free(fc, phys, order);
	return cairn_frames_free(cf, phys, order);
}

static uint64_t frames_free(void)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(cf, &st);
	return st.free_frames[0] + st.free_frames[1] + st.free_frames[2];
}

/* ---- one run ---- */

struct run {
	enum impl impl;
	enum test test;
	unsigned order, nthreads;
	bool check;
	uint64_t share, iters;
	uint64_t *blocks;             /* thread t: blocks[t * share ...] */
	_Atomic unsigned char *owner; /* check: one flag per block slot */
	struct bench_barrier bar;
	double ns[2][BENCH_MAX_THREADS], cpu[2][BENCH_MAX_THREADS];
};

static void claim(struct run *r, uint64_t phys, bool take)
{
	uint64_t off = phys - PHYS_BASE;
	BENCH_CHECK(phys >= PHYS_BASE && off < mem_size &&
			    !(off & ((CAIRN_FRAME_SIZE << r->order) - 1)),
		    "%s returned %#llx: outside memory or misaligned", impl_name[r->impl],
		    (unsigned long long)phys);
	unsigned char was = atomic_exchange_explicit(
		&r->owner[off >> (CAIRN_FRAME_SHIFT + r->order)], take, memory_order_relaxed);
	BENCH_CHECK(was != take, "%s: block %#llx handed out twice (or freed twice)",
		    impl_name[r->impl], (unsigned long long)phys);
}

static void record(struct run *r, int phase, unsigned tid, uint64_t ops, uint64_t t0,
		   uint64_t t1, uint64_t c0, uint64_t c1)
{
	r->ns[phase][tid] = (double)(t1 - t0) / (double)(ops ? ops : 1);
	r->cpu[phase][tid] = (double)(c1 - c0) / (double)(ops ? ops : 1);
}

/* The timed repeat loop, free+alloc of one block. Inlined once per
 * implementation with the test's common settings as constants, so that
 * what a pair costs is the allocator's code and the loop's, not the
 * harness's dispatch on its options (what every implementation's rows
 * would otherwise share). */
static inline __attribute__((always_inline)) void repeat_loop(struct run *r, uint64_t *b,
							      const enum impl im,
							      const unsigned order,
							      const bool check)
{
	for (uint64_t i = 0; i < r->iters; i++) {
		if (check)
			claim(r, *b, 0);
		int rc = do_free(im, *b, order);
		BENCH_CHECK(rc == 0, "%s: repeat free failed (%d)", impl_name[im], rc);
		rc = do_alloc(im, order, b);
		BENCH_CHECK(rc == 0, "%s: repeat alloc failed (%d)", impl_name[im], rc);
		if (check)
			claim(r, *b, 1);
	}
}

static __attribute__((noinline)) void repeat(struct run *r, uint64_t *b)
{
	if (r->check || r->order)
		repeat_loop(r, b, r->impl, r->order, r->check);
	else if (r->impl == IMPL_UNCACHED)
		repeat_loop(r, b, IMPL_UNCACHED, 0, false);
	else
		repeat_loop(r, b, IMPL_CACHED, 0, false);
}

static void worker(unsigned tid, void *arg)
{
	struct run *r = arg;
	const enum impl im = r->impl;
	const unsigned order = r->order;
	uint64_t *mine = r->blocks + tid * r->share;
	BENCH_CHECK(cairn_host_cpu_register() >= 0, "no CPU slot for thread %u", tid);

	bench_barrier_wait(&r->bar);
	uint64_t t0 = bench_now_ns(), c0 = bench_thread_cpu_ns();
	for (uint64_t i = 0; i < r->share; i++) {
		int rc = do_alloc(im, order, &mine[i]);
		BENCH_CHECK(rc == 0, "%s: order-%u alloc failed (%d) with half of memory free",
			    impl_name[im], order, rc);
	}
	uint64_t t1 = bench_now_ns(), c1 = bench_thread_cpu_ns();
	record(r, 0, tid, r->share, t0, t1, c0, c1);
	if (r->check)
		for (uint64_t i = 0; i < r->share; i++)
			claim(r, mine[i], 1);
	bench_barrier_wait(&r->bar);

	if (r->test == TEST_REPEAT) {
		uint64_t *b = &mine[r->share - 1];
		t0 = bench_now_ns(), c0 = bench_thread_cpu_ns();
		repeat(r, b);
		t1 = bench_now_ns(), c1 = bench_thread_cpu_ns();
		record(r, 0, tid, r->iters, t0, t1, c0, c1);
	} else {
		if (r->check)
			for (uint64_t i = 0; i < r->share; i++)
				claim(r, mine[i], 0);
		t0 = bench_now_ns(), c0 = bench_thread_cpu_ns();
		for (uint64_t i = 0; i < r->share; i++) {
			int rc = do_free(im, mine[i], order);
			BENCH_CHECK(rc == 0, "%s: free failed (%d)", impl_name[im], rc);
			mine[i] = 0;
		}
		t1 = bench_now_ns(), c1 = bench_thread_cpu_ns();
		record(r, 1, tid, r->share, t0, t1, c0, c1);
	}
	bench_barrier_wait(&r->bar);
	/* Untimed: what repeat still holds goes back, and this CPU's magazines
	 * with it (the thread leaves; its slot is drained for the next). */
	for (uint64_t i = 0; i < r->share; i++)
		if (mine[i]) {
			if (r->check)
				claim(r, mine[i], 0);
			BENCH_CHECK(do_free(im, mine[i], order) == 0, "cleanup free failed");
			mine[i] = 0;
		}
	if (im != IMPL_UNCACHED)
		cairn_fcache_drain_cpu(fc, cairn_port_cpu());
	cairn_host_cpu_unregister();
}

static void run_once(struct run *r)
{
	struct cairn_frames_config cfg = { .meta = meta, .meta_size = meta_size };
	int rc = cairn_frames_init(&cf, &map, 1, &cfg);
	BENCH_CHECK(rc == 0, "cairn_frames_init: %s", cairn_strerror(rc));
	uint64_t total = frames_free();
	if (r->impl != IMPL_UNCACHED) {
		struct cairn_fcache_config fcfg = { .trust_frees = r->impl == IMPL_TRUSTED };
		rc = cairn_fcache_create(&fc, cf, &fcfg);
		BENCH_CHECK(rc == 0, "cairn_fcache_create: %s", cairn_strerror(rc));
	}
	bench_barrier_init(&r->bar, r->nthreads);
	bench_run_threads(r->nthreads, worker, r, NULL);
	if (r->impl != IMPL_UNCACHED)
		cairn_fcache_destroy(fc);
	BENCH_CHECK(frames_free() == total && cairn_frames_validate(cf) == 0,
		    "%s %s order %u x%u: %llu of %llu frames free after the run",
		    impl_name[r->impl], test_name[r->test], r->order, r->nthreads,
		    (unsigned long long)frames_free(), (unsigned long long)total);
}

static void measure(const struct bench_opts *o, enum test t, unsigned order, unsigned nt,
		    uint64_t *blocks, _Atomic unsigned char *owner)
{
	uint64_t share = t == TEST_REPEAT ? ((nframes / 2) / nt)
					  : ((nframes / 2) >> order) / nt;
	if (!share) {
		bench_note(o, "skip %s order %u x%u: memory too small", test_name[t], order, nt);
		return;
	}
	static struct run r;
	struct bench_samples s[NIMPL][2][2];
	memset(s, 0, sizeof(s));
	unsigned phases = t == TEST_REPEAT ? 1 : 2;
	for (unsigned run = 0; run < o->runs; run++)
		for (unsigned im = 0; im < NIMPL; im++) {
			if (!bench_selected(o->impls, impl_name[im]))
				continue;
			r = (struct run){ .impl = im, .test = t, .order = order, .nthreads = nt,
					  .check = o->check, .share = share,
					  .iters = repeat_iters, .blocks = blocks, .owner = owner };
			run_once(&r);
			for (unsigned ph = 0; ph < phases; ph++) {
				bench_sample_threads(&s[im][ph][0], &s[im][ph][1], r.ns[ph], r.cpu[ph], nt);
			}
		}
	for (unsigned im = 0; im < NIMPL; im++) {
		if (!bench_selected(o->impls, impl_name[im]))
			continue;
		for (unsigned ph = 0; ph < phases; ph++) {
			struct bench_row row = {
				.suite = "percpu", .test = test_name[t], .impl = impl_name[im],
				.op = t == TEST_REPEAT ? "pair" : ph ? "free" : "alloc",
				.param = "order", .value = order, .threads = nt,
				.ns = s[im][ph][0], .cpu_ns = s[im][ph][1],
			};
			bench_report(o, &row);
		}
	}
}

/* ---- ranges: an arena with and without quantum caches ---- */

#define RANGE_VA 0x100000000000ull
#define RANGE_SPAN (1ull << 36)
#define RANGE_HELD 64 /* ranges each thread keeps allocated meanwhile */

struct range_run {
	bool cached;
	unsigned pages, nthreads;
	uint64_t iters;
	struct cairn_arena arena;
	struct cairn_qcache *qc;
	struct bench_barrier bar;
	double ns[BENCH_MAX_THREADS], cpu[BENCH_MAX_THREADS];
};

static void range_worker(unsigned tid, void *arg)
{
	struct range_run *r = arg;
	uint64_t size = (uint64_t)r->pages << CAIRN_FRAME_SHIFT, held[RANGE_HELD];
	BENCH_CHECK(cairn_host_cpu_register() >= 0, "no CPU slot for thread %u", tid);
	for (unsigned i = 0; i < RANGE_HELD; i++) /* a tree that is not empty */
		BENCH_CHECK(cairn_arena_alloc(&r->arena, size, tid, &held[i]) == 0, "arena alloc");
	bench_barrier_wait(&r->bar);
	uint64_t t0 = bench_now_ns(), c0 = bench_thread_cpu_ns();
	for (uint64_t i = 0; i < r->iters; i++) {
		uint64_t a;
		int rc = r->cached ? cairn_qcache_alloc(r->qc, size, &a)
				   : cairn_arena_alloc(&r->arena, size, tid, &a);
		BENCH_CHECK(rc == 0, "range alloc failed (%d)", rc);
		rc = r->cached ? cairn_qcache_free(r->qc, a, size) : cairn_arena_free(&r->arena, a, size);
		BENCH_CHECK(rc == 0, "range free failed (%d)", rc);
	}
	uint64_t t1 = bench_now_ns(), c1 = bench_thread_cpu_ns();
	r->ns[tid] = (double)(t1 - t0) / (double)r->iters;
	r->cpu[tid] = (double)(c1 - c0) / (double)r->iters;
	for (unsigned i = 0; i < RANGE_HELD; i++)
		BENCH_CHECK(cairn_arena_free(&r->arena, held[i], size) == 0, "arena free");
	cairn_host_cpu_unregister();
}

static void measure_range(const struct bench_opts *o, unsigned pages, unsigned nt)
{
	static const char *const names[2] = { "uncached", "cached" };
	struct bench_samples s[2][2];
	memset(s, 0, sizeof(s));
	static struct range_run r;
	for (unsigned run = 0; run < o->runs; run++)
		for (int cached = 0; cached < 2; cached++) {
			if (!bench_selected(o->impls, names[cached]))
				continue;
			struct cairn_frames_config cfg = { .meta = meta, .meta_size = meta_size };
			int rc = cairn_frames_init(&cf, &map, 1, &cfg);
			BENCH_CHECK(rc == 0, "cairn_frames_init: %s", cairn_strerror(rc));
			r = (struct range_run){ .cached = cached, .pages = pages, .nthreads = nt,
						.iters = repeat_iters / 4 };
			struct cairn_arena_config acfg = { .quantum = CAIRN_FRAME_SIZE };
			rc = cairn_arena_create(&r.arena, cf, RANGE_VA, RANGE_SPAN, &acfg);
			BENCH_CHECK(rc == 0, "cairn_arena_create: %s", cairn_strerror(rc));
			if (cached) {
				rc = cairn_qcache_create(&r.qc, &r.arena, cf, NULL);
				BENCH_CHECK(rc == 0, "cairn_qcache_create: %s", cairn_strerror(rc));
			}
			bench_barrier_init(&r.bar, nt);
			bench_run_threads(nt, range_worker, &r, NULL);
			if (cached)
				cairn_qcache_destroy(r.qc);
			BENCH_CHECK(cairn_arena_validate(&r.arena) == 0, "arena invalid after the run");
			cairn_arena_destroy(&r.arena);
			bench_sample_threads(&s[cached][0], &s[cached][1], r.ns, r.cpu, nt);
		}
	for (int cached = 0; cached < 2; cached++) {
		if (!bench_selected(o->impls, names[cached]))
			continue;
		struct bench_row row = {
			.suite = "percpu", .test = "range", .impl = names[cached], .op = "pair",
			.param = "pages", .value = pages, .threads = nt,
			.ns = s[cached][0], .cpu_ns = s[cached][1],
		};
		bench_report(o, &row);
	}
}

/* Targets on wall time and on thread CPU time: on a shared machine the
 * wall figure at 2 threads also counts time spent descheduled. */
static void targets(const struct bench_opts *o)
{
	for (int cpu = 0; cpu < 2; cpu++) {
		double c1 = bench_find("repeat", "cached", "pair", 0, 1, cpu);
		double u1 = bench_find("repeat", "uncached", "pair", 0, 1, cpu);
		double t1 = bench_find("repeat", "cached-trusted", "pair", 0, 1, cpu);
		double c2 = bench_find("repeat", "cached", "pair", 0, 2, cpu);
		if (c1 < 0)
			return;
		bench_note(o, "\ntargets (medians, %s ns per free+alloc pair, order 0):",
			   cpu ? "thread CPU" : "wall");
		bench_note(o, "  repeat x1 below 15 ns:            %6.1f ns  %s", c1,
			   c1 < 15 ? "met" : "MISSED");
		if (u1 > 0)
			bench_note(o, "  repeat x1 at least 5x uncached:   %6.1fx    %s", u1 / c1,
				   u1 / c1 >= 5 ? "met" : "MISSED");
		if (t1 > 0)
			bench_note(o, "  (cached-trusted x1: %.1f ns, %.1fx uncached)", t1,
				   u1 > 0 ? u1 / t1 : 0);
		if (c2 > 0)
			bench_note(o, "  repeat flat from 1 to 2 threads:  %6.2fx    %s", c2 / c1,
				   c2 <= c1 * 1.15 ? "met" : "MISSED");
	}
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	bench_parse(&o, argc, argv, options);
	if (!mem_mib)
		mem_mib = o.quick ? 64 : 1024;
	if (!repeat_iters)
		repeat_iters = o.quick ? 2000 : 2000000;
	mem_size = mem_mib << 20;
	nframes = mem_size >> CAIRN_FRAME_SHIFT;
	unsigned maxt = 1;
	for (unsigned i = 0; i < o.nthreads; i++)
		maxt = o.threads[i] > maxt ? o.threads[i] : maxt;

	char what[512];
	snprintf(what, sizeof(what),
		 "ns per operation and thread, frame allocator with and without per-CPU caches\n"
		 "  repeat: half of memory allocated, then each thread frees and reallocates one\n"
		 "          order-0 frame in a loop (pair = free + alloc)\n"
		 "  bulk:   each thread allocates its share of half of memory, then frees it all\n"
		 "  range:  each thread allocates and frees a range of 1, 4 or 16 pages in a\n"
		 "          loop, in an arena of 64 GiB of address space (pair = alloc + free)\n"
		 "impls: cached (cairn_fcache; cairn_qcache for ranges), uncached (cairn_frames;\n"
		 "       cairn_arena); memory: %llu MiB simulated",
		 (unsigned long long)mem_mib);
	bench_header(&o, "bench-percpu: per-CPU magazine caches in front of the frame allocator",
		     what);

	int rc = cairn_host_init(maxt, PHYS_BASE, mem_size);
	BENCH_CHECK(rc == 0, "cairn_host_init: %s", cairn_strerror(rc));
	map = (struct cairn_mem_range){ PHYS_BASE, mem_size };
	meta_size = cairn_frames_meta_size(&map, 1, maxt);
	meta = aligned_alloc(4096, (meta_size + 4095) & ~4095ull);
	uint64_t *blocks = calloc(nframes, sizeof(*blocks));
	_Atomic unsigned char *owner = calloc(nframes, 1);
	BENCH_CHECK(meta && blocks && owner, "out of memory");
	for (uint64_t off = 0; off < mem_size; off += CAIRN_FRAME_SIZE)
		*(volatile uint64_t *)cairn_port_phys_to_virt(PHYS_BASE + off) = 0;

	for (unsigned ti = 0; ti < o.nthreads; ti++)
		if (bench_selected(o.tests, "repeat"))
			measure(&o, TEST_REPEAT, 0, o.threads[ti], blocks, owner);
	for (unsigned oi = 0; oi < nbulk_orders; oi++)
		for (unsigned ti = 0; ti < o.nthreads; ti++)
			if (bench_selected(o.tests, "bulk"))
				measure(&o, TEST_BULK, bulk_orders[oi], o.threads[ti], blocks, owner);
	static const unsigned range_pages[] = { 1, 4, 16 };
	for (unsigned pi = 0; pi < 3; pi++)
		for (unsigned ti = 0; ti < o.nthreads; ti++)
			if (bench_selected(o.tests, "range"))
				measure_range(&o, range_pages[pi], o.threads[ti]);
	targets(&o);
	/* Order 9 holds 512 times fewer blocks than order 0: at the default
	 * size a bulk phase of it lasts microseconds, and its rows are mostly
	 * page faults and scheduling. */
	uint64_t huge = (nframes / 2) >> CAIRN_HUGE_ORDER;
	if (bench_selected(o.tests, "bulk") && huge < 2048 && !o.quick)
		bench_note(&o, "\nnote: bulk order 9 moves only %llu blocks at one thread, a phase of "
			   "microseconds;\n      --mem 16384 gives it 4096 blocks and a steadier figure",
			   (unsigned long long)huge);
	return 0;
}
