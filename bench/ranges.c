/* SPDX-License-Identifier: MIT */
/*
 * bench-ranges: cairn arenas against a vmem-like baseline.
 *
 * The baseline is what a classic kernel range allocator does: one lock
 * (a pthread mutex) around an address-ordered red-black tree of every
 * extent plus a size-ordered red-black tree of the free ones (libbsd's
 * tree.h), best fit through the size index, coalescing frees.
 *
 * Workloads, each at 1, 2 and 4 threads and over 10^3 and 10^6 extents:
 *   lookup  look up random addresses (the resource-tree query)
 *   mixed   90% lookups, 10% alloc-free pairs
 *   alloc   alloc-free pairs (ops/s counts pairs)
 * A run pre-populates the arena with the extents (alternately allocated
 * and free ranges of 1..4 quanta), then each thread runs for a fixed time.
 *
 * Each figure is reported twice: ops/s of wall time, and ops per second
 * of thread CPU time summed over the threads (the "cpu" columns), which a
 * machine shared with other work does not distort.
 *
 * Every result is checked. Then it runs bench-ranges-reclaim (next to it,
 * if built) with the same options: the reclamation comparison (free list
 * vs RCU vs epochs).
 *
 * usage: bench-ranges [harness options: --json --quick --runs N
 *                      --threads 1,2,4 --tests T --impls I] [--time MS]
 *                     [--extents 1000,1000000]
 */
#define _GNU_SOURCE
#include <cairn/arena.h>
#include <cairn/host.h>

#include "harness.h"

#include <bsd/sys/cdefs.h>
#ifndef __unused /* libbsd leaves it undefined on Linux */
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define Q 4096ull
#define BASE (1ull << 40)


/* ---- the baseline ---- */

struct bext {
	uint64_t start, len, cookie;
	bool free;
	RB_ENTRY(bext) by_addr;
	RB_ENTRY(bext) by_size;
};

static int cmp_addr(struct bext *a, struct bext *b)
{
	return a->start < b->start ? -1 : a->start > b->start;
}

static int cmp_size(struct bext *a, struct bext *b)
{
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return cmp_addr(a, b);
}

RB_HEAD(addr_tree, bext);
RB_HEAD(size_tree, bext);
RB_GENERATE_STATIC(addr_tree, bext, by_addr, cmp_addr)
RB_GENERATE_STATIC(size_tree, bext, by_size, cmp_size)

struct baseline {
	pthread_mutex_t lock;
	struct addr_tree addr;
	struct size_tree size;
	struct bext *pool; /* spare extent records */
};

static struct bext *bx_new(struct baseline *b)
{
	struct bext *e = b->pool;
	if (e)
		b->pool = *(struct bext **)e;
	else
		e = malloc(sizeof(*e));
	return e;
}

static void bx_put(struct baseline *b, struct bext *e)
{
	*(struct bext **)e = b->pool;
	b->pool = e;
}

static void bl_init(struct baseline *b, uint64_t base, uint64_t size)
{
	pthread_mutex_init(&b->lock, NULL);
	RB_INIT(&b->addr);
	RB_INIT(&b->size);
	b->pool = NULL;
	struct bext *e = bx_new(b);
	*e = (struct bext){ .start = base, .len = size, .free = true };
	RB_INSERT(addr_tree, &b->addr, e);
	RB_INSERT(size_tree, &b->size, e);
}

static int bl_alloc(struct baseline *b, uint64_t size, uint64_t cookie,
		    uint64_t *out)
{
	struct bext key = { .start = 0, .len = size };
	pthread_mutex_lock(&b->lock);
	struct bext *f = RB_NFIND(size_tree, &b->size, &key);
	if (!f) {
		pthread_mutex_unlock(&b->lock);
		return CAIRN_ENOMEM;
	}
	RB_REMOVE(size_tree, &b->size, f);
	if (f->len > size) {
		struct bext *r = bx_new(b);
		*r = (struct bext){ .start = f->start + size,
				    .len = f->len - size, .free = true };
		RB_INSERT(addr_tree, &b->addr, r);
		RB_INSERT(size_tree, &b->size, r);
		f->len = size;
	}
	f->free = false;
	f->cookie = cookie;
	*out = f->start;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int bl_free(struct baseline *b, uint64_t addr, uint64_t size)
{
	struct bext key = { .start = addr };
	pthread_mutex_lock(&b->lock);
	struct bext *e = RB_FIND(addr_tree, &b->addr, &key);
	if (!e || e->free || e->len != size) {
		pthread_mutex_unlock(&b->lock);
		return CAIRN_EFREE;
	}
	e->free = true;
	e->cookie = 0;
	struct bext *n = RB_NEXT(addr_tree, &b->addr, e);
	if (n && n->free && n->start == e->start + e->len) {
		RB_REMOVE(size_tree, &b->size, n);
		RB_REMOVE(addr_tree, &b->addr, n);
		e->len += n->len;
		bx_put(b, n);
	}
	struct bext *p = RB_PREV(addr_tree, &b->addr, e);
	if (p && p->free && p->start + p->len == e->start) {
		RB_REMOVE(size_tree, &b->size, p);
		RB_REMOVE(addr_tree, &b->addr, e);
		p->len += e->len;
		bx_put(b, e);
		e = p;
	}
	RB_INSERT(size_tree, &b->size, e);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int bl_lookup(struct baseline *b, uint64_t addr, uint64_t *cookie)
{
	struct bext key = { .start = addr + 1 };
	int r = CAIRN_ERANGE;
	pthread_mutex_lock(&b->lock);
	struct bext *e = RB_NFIND(addr_tree, &b->addr, &key);
	e = e ? RB_PREV(addr_tree, &b->addr, e) : RB_MAX(addr_tree, &b->addr);
	if (e && addr - e->start < e->len) {
		r = e->free ? CAIRN_EFREE : 0;
		*cookie = e->cookie;
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}

static void bl_destroy(struct baseline *b)
{
	struct bext *e, *n;
	RB_FOREACH_SAFE(e, addr_tree, &b->addr, n) {
		RB_REMOVE(addr_tree, &b->addr, e);
		free(e);
	}
	while ((e = b->pool)) {
		b->pool = *(struct bext **)e;
		free(e);
	}
}

/* ---- the measurement ---- */

enum impl { CAIRN, BASELINE };
enum test { T_LOOKUP, T_MIXED, T_ALLOC };
static const char *impl_name[] = { "cairn", "baseline" };
static const char *test_name[] = { "lookup", "mixed", "alloc" };

static struct bench_opts opts;
static double run_ms = 200;
static struct cairn_frames *frames;
static struct cairn_arena arena;
static struct baseline bl;
static enum impl impl;
static enum test test;
static uint64_t span; /* bytes */
static uint64_t populated; /* extents after populate() */

/* Out of line, both: callgrind then counts an alloc and a free as the
 * inclusive cost of these two (docs/benchmarks.md, Ranges). */
static __attribute__((noinline)) int do_alloc(uint64_t size, uint64_t cookie,
					      uint64_t *x)
{
	return impl == CAIRN ? cairn_arena_alloc(&arena, size, cookie, x)
			     : bl_alloc(&bl, size, cookie, x);
}

static __attribute__((noinline)) int do_free(uint64_t x, uint64_t size)
{
	return impl == CAIRN ? cairn_arena_free(&arena, x, size)
			     : bl_free(&bl, x, size);
}

static int do_lookup(uint64_t x, uint64_t *cookie)
{
	if (impl == CAIRN)
		return cairn_arena_lookup(&arena, x, NULL, NULL, cookie);
	return bl_lookup(&bl, x, cookie);
}

struct run {
	struct bench_barrier start;
	uint64_t ops[BENCH_MAX_THREADS];
	uint64_t cpu_ns[BENCH_MAX_THREADS]; /* thread CPU time of the loop */
	uint64_t deadline;
};

/* One thread of a timed run: operations until the deadline, every result
 * checked (an allocation must free, a lookup hit must carry the cookie of
 * an allocated range: odd cookies are only ever given to allocations). */
static void worker(unsigned tid, void *arg)
{
	struct run *r = arg;
	uint64_t seed = 777 * (tid + 1), ops = 0, c;
	if (impl == CAIRN)
		BENCH_CHECK(cairn_host_cpu_register() >= 0, "no CPU slot");
	bench_barrier_wait(&r->start);
	uint64_t c0 = bench_thread_cpu_ns();
	do {
		for (unsigned k = 0; k < 64; k++) {
			uint64_t x = bench_rand(&seed);
			if (test == T_LOOKUP || (test == T_MIXED && x % 10)) {
				int e = do_lookup(BASE + (x >> 8) % span, &c);
				BENCH_CHECK(e == CAIRN_EFREE || (e == 0 && (c & 1)),
					    "lookup returned %d cookie %llu", e,
					    (unsigned long long)c);
			} else {
				uint64_t size = ((x >> 4) % 4 + 1) * Q, a;
				BENCH_CHECK(do_alloc(size, x | 1, &a) == 0,
					    "allocation failed");
				BENCH_CHECK(do_free(a, size) == 0, "free failed");
			}
			ops++;
		}
	} while (bench_now_ns() < r->deadline);
	r->cpu_ns[tid] = bench_thread_cpu_ns() - c0;
	r->ops[tid] = ops;
	if (impl == CAIRN)
		cairn_host_cpu_unregister();
}

/* ops/s of all threads together, one run; in *cpu_rate the same per
 * second of thread CPU time (each thread's ops over its own CPU time,
 * summed): what the threads would do if each had a core to itself, so a
 * loaded machine's descheduling does not show, but contention does. */
static double run(unsigned threads, double *cpu_rate)
{
	static struct run r;
	bench_barrier_init(&r.start, threads);
	memset(r.ops, 0, sizeof(r.ops));
	uint64_t t0 = bench_now_ns();
	r.deadline = t0 + (uint64_t)(run_ms * 1e6);
	bench_run_threads(threads, worker, &r, NULL);
	double secs = (bench_now_ns() - t0) * 1e-9;
	uint64_t ops = 0;
	*cpu_rate = 0;
	for (unsigned i = 0; i < threads; i++) {
		ops += r.ops[i];
		if (r.cpu_ns[i])
			*cpu_rate += r.ops[i] / (r.cpu_ns[i] * 1e-9);
	}
	return ops / secs;
}

static int count_ext(const struct cairn_ext *e, void *arg)
{
	(void)e;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Alternately allocated and free ranges of 1..4 quanta: `extents` in all,
 * then a long free tail. */
static void populate(uint64_t extents)
{
	uint64_t s = 12345, x;
	span = extents * 5 * Q + 64 * 1024 * Q;
	if (impl == CAIRN) {
		struct cairn_arena_config cfg = { .quantum = Q };
		BENCH_CHECK(cairn_arena_create(&arena, frames, BASE, span, &cfg) == 0,
			    "arena create");
	} else {
		bl_init(&bl, BASE, span);
	}
	uint64_t n = extents / 2, *hole = malloc(n * 2 * sizeof(*hole));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t a = (bench_rand(&s) % 4 + 1) * Q, b = (bench_rand(&s) % 4 + 1) * Q;
		BENCH_CHECK(do_alloc(a, 2 * i + 1, &x) == 0 &&
			    do_alloc(b, 0, &hole[2 * i]) == 0, "populate");
		hole[2 * i + 1] = b;
	}
	for (uint64_t i = 0; i < n; i++)
		BENCH_CHECK(do_free(hole[2 * i], hole[2 * i + 1]) == 0, "populate");
	free(hole);
	populated = 0;
	if (impl == CAIRN)
		cairn_btree_walk(&arena.tree, count_ext, &populated);
}

/* Every alloc-free pair left the arena as it was: check that. */
static void depopulate(void)
{
	if (impl == CAIRN) {
		uint64_t n = 0;
		BENCH_CHECK(cairn_arena_validate(&arena) == 0, "arena invalid");
		cairn_btree_walk(&arena.tree, count_ext, &n);
		BENCH_CHECK(n == populated, "arena has %llu extents, not %llu",
			    (unsigned long long)n, (unsigned long long)populated);
		cairn_arena_destroy(&arena);
	} else {
		bl_destroy(&bl);
	}
}

static bool set_time(const char *v)
{
	run_ms = atof(v);
	return run_ms > 0;
}

static unsigned ext_list[BENCH_MAX_LIST] = { 1000, 1000000 }, n_ext = 2;

static bool set_extents(const char *v)
{
	return bench_parse_list(v, ext_list, &n_ext, BENCH_MAX_LIST) && n_ext;
}

int main(int argc, char **argv)
{
	static const struct bench_option extra[] = {
		{ "time", true, "milliseconds per run (default 200)", set_time },
		{ "extents", true, "tree sizes, comma separated (1000,1000000)",
		  set_extents },
		{ 0 }
	};
	bench_parse(&opts, argc, argv, extra);
	if (opts.quick)
		run_ms = 20;

	unsigned maxt = 1;
	for (unsigned i = 0; i < opts.nthreads; i++)
		maxt = opts.threads[i] > maxt ? opts.threads[i] : maxt;
	BENCH_CHECK(cairn_host_init(maxt + 1, 0, 1024ull << 20) == 0, "host init");
	struct cairn_mem_range map[] = { { 1 << 20, (1024ull << 20) - (1 << 20) } };
	struct cairn_frames_config fc = { .ncpus = maxt + 1 };
	BENCH_CHECK(cairn_frames_init(&frames, map, 1, &fc) == 0, "frames init");
	cairn_host_cpu_register();

	bench_header(&opts, "bench-ranges: range arenas (OLC B+-tree) against one "
		     "lock around red-black trees",
		     "ops/s of all threads together (alloc: alloc+free pairs), "
		     "median of the runs");
	if (!opts.json) {
		printf("%-8s %9s %-9s", "test", "extents", "impl");
		for (unsigned k = 0; k < opts.nthreads; k++)
			printf(" %10u thr", opts.threads[k]);
		for (unsigned k = 0; k < opts.nthreads; k++)
			printf(" %6u thr cpu", opts.threads[k]);
		printf("\n");
	}
	for (unsigned si = 0; si < n_ext && !(opts.quick && si); si++) {
		for (unsigned t = 0; t < 3; t++) {
			if (!bench_selected(opts.tests, test_name[t]))
				continue;
			for (unsigned im = 0; im < 2; im++) {
				if (!bench_selected(opts.impls, impl_name[im]))
					continue;
				impl = (enum impl)im;
				test = (enum test)t;
				populate((uint64_t)ext_list[si]);
				if (!opts.json)
					printf("%-8s %9llu %-9s", test_name[t],
					       (unsigned long long)(uint64_t)ext_list[si],
					       impl_name[im]);
				double cmed[BENCH_MAX_LIST];
				for (unsigned k = 0; k < opts.nthreads; k++) {
					struct bench_samples sm = { .n = 0 };
					struct bench_samples sc = { .n = 0 };
					for (unsigned r = 0; r < opts.runs; r++) {
						double c;
						bench_sample(&sm, run(opts.threads[k], &c));
						bench_sample(&sc, c);
					}
					double med = bench_median(&sm);
					cmed[k] = bench_median(&sc);
					if (opts.json)
						printf("{\"suite\": \"ranges\", \"test\": \"%s\", "
						       "\"impl\": \"%s\", \"threads\": %u, "
						       "\"extents\": %llu, \"ops_per_s\": %.0f, "
						       "\"ops_per_cpu_s\": %.0f}\n",
						       test_name[t], impl_name[im],
						       opts.threads[k],
						       (unsigned long long)(uint64_t)ext_list[si], med,
						       cmed[k]);
					else
						printf(" %14.0f", med);
					fflush(stdout);
				}
				for (unsigned k = 0; k < opts.nthreads && !opts.json; k++)
					printf(" %14.0f", cmed[k]);
				if (!opts.json)
					printf("\n");
				depopulate();
			}
		}
	}

	/* The reclamation comparison lives next to this program. */
	char path[4096];
	ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 32);
	if (len > 0) {
		path[len] = 0;
		strcat(path, "-reclaim");
		if (access(path, X_OK) == 0) {
			if (!opts.json)
				printf("\n");
			fflush(stdout);
			argv[0] = path;
			execv(path, argv);
		}
	}
	return 0;
}
