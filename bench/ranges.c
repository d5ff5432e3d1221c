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
 * Then it runs bench-ranges-reclaim (next to it, if built) with the same
 * options: the reclamation comparison (free list vs RCU vs epochs).
 *
 * usage: bench-ranges [--json] [--quick] [--time SECONDS]
 */
#define _GNU_SOURCE
#include <cairn/arena.h>
#include <cairn/host.h>

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

static bool json;
static double run_time = 0.3;

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

/* ---- the harness ---- */

enum impl { CAIRN, BASELINE };
enum test { T_LOOKUP, T_MIXED, T_ALLOC };
static const char *impl_name[] = { "cairn", "baseline" };
static const char *test_name[] = { "lookup", "mixed", "alloc" };

static struct cairn_frames *frames;
static struct cairn_arena arena;
static struct baseline bl;
static enum impl impl;
static enum test test;
static uint64_t span; /* bytes */
static atomic_bool go, stop;
static atomic_uint ready;

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int do_alloc(uint64_t size, uint64_t cookie, uint64_t *x)
{
	return impl == CAIRN ? cairn_arena_alloc(&arena, size, cookie, x)
			     : bl_alloc(&bl, size, cookie, x);
}

static int do_free(uint64_t x, uint64_t size)
{
	return impl == CAIRN ? cairn_arena_free(&arena, x, size)
			     : bl_free(&bl, x, size);
}

static int do_lookup(uint64_t x)
{
	uint64_t c = 0;
	if (impl == CAIRN)
		return cairn_arena_lookup(&arena, x, NULL, NULL, &c);
	return bl_lookup(&bl, x, &c);
}

struct worker {
	pthread_t th;
	uint64_t seed, ops;
	bool failed;
};

static void *worker(void *arg)
{
	struct worker *w = arg;
	if (impl == CAIRN && cairn_host_cpu_register() < 0)
		w->failed = true;
	atomic_fetch_add(&ready, 1);
	while (!atomic_load_explicit(&go, memory_order_acquire))
		;
	uint64_t ops = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (unsigned k = 0; k < 64; k++) {
			uint64_t r = rng(&w->seed);
			if (test == T_LOOKUP || (test == T_MIXED && r % 10)) {
				do_lookup(BASE + (r >> 8) % span);
			} else {
				uint64_t size = ((r >> 4) % 4 + 1) * Q, x;
				if (do_alloc(size, r, &x) == 0 && do_free(x, size))
					w->failed = true;
			}
			ops++;
		}
	}
	w->ops = ops;
	if (impl == CAIRN)
		cairn_host_cpu_unregister();
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Alternately allocated and free ranges of 1..4 quanta: `extents` in all. */
static void populate(uint64_t extents)
{
	uint64_t s = 12345, x;
	span = extents * 5 * Q + 64 * 1024 * Q;
	if (impl == CAIRN) {
		struct cairn_arena_config cfg = { .quantum = Q };
		if (cairn_arena_create(&arena, frames, BASE, span, &cfg))
			abort();
	} else {
		bl_init(&bl, BASE, span);
	}
	/* allocate pairs of ranges back to back, then free the second of
	 * each: holes of 1..4 quanta between allocations */
	uint64_t n = extents / 2, *hole = malloc(n * 2 * sizeof(*hole));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t a = (rng(&s) % 4 + 1) * Q, b = (rng(&s) % 4 + 1) * Q;
		if (do_alloc(a, i + 1, &x) || do_alloc(b, 0, &hole[2 * i]))
			abort();
		hole[2 * i + 1] = b;
	}
	for (uint64_t i = 0; i < n; i++)
		if (do_free(hole[2 * i], hole[2 * i + 1]))
			abort();
	free(hole);
}

static void depopulate(void)
{
	if (impl == CAIRN)
		cairn_arena_destroy(&arena);
	else
		bl_destroy(&bl);
}

static double run(unsigned threads)
{
	struct worker w[8];
	atomic_store(&go, false);
	atomic_store(&stop, false);
	atomic_store(&ready, 0);
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ .seed = 777 * (i + 1) };
		pthread_create(&w[i].th, NULL, worker, &w[i]);
	}
	while (atomic_load(&ready) < threads)
		;
	double t0 = now();
	atomic_store_explicit(&go, true, memory_order_release);
	struct timespec ts = { (time_t)run_time,
			       (long)((run_time - (time_t)run_time) * 1e9) };
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	uint64_t ops = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].th, NULL);
		ops += w[i].ops;
		if (w[i].failed) {
			fprintf(stderr, "bench-ranges: a worker failed\n");
			exit(1);
		}
	}
	return ops / (now() - t0);
}

int main(int argc, char **argv)
{
	bool quick = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--quick"))
			quick = true;
		else if (!strcmp(argv[i], "--time") && i + 1 < argc)
			run_time = atof(argv[++i]);
	}
	const uint64_t sizes[] = { 1000, 1000000 };
	const unsigned nthreads[] = { 1, 2, 4 };

	if (cairn_host_init(8, 0, 1024ull << 20))
		abort();
	struct cairn_mem_range map[] = { { 1 << 20, (1024ull << 20) - (1 << 20) } };
	struct cairn_frames_config fc = { .ncpus = 8 };
	if (cairn_frames_init(&frames, map, 1, &fc))
		abort();
	cairn_host_cpu_register();

	if (!json)
		printf("%-8s %9s %-9s %12s %12s %12s\n", "test", "extents", "impl",
		       "1 thread", "2 threads", "4 threads");
	for (unsigned si = 0; si < 2; si++) {
		if (quick && si)
			break;
		for (unsigned t = 0; t < 3; t++) {
			for (unsigned im = 0; im < 2; im++) {
				impl = (enum impl)im;
				test = (enum test)t;
				populate(sizes[si]);
				double r[3];
				for (unsigned k = 0; k < 3; k++) {
					r[k] = run(nthreads[k]);
					if (json)
						printf("{\"suite\": \"ranges\", \"test\": \"%s\", "
						       "\"impl\": \"%s\", \"threads\": %u, "
						       "\"extents\": %llu, \"ops_per_s\": %.0f}\n",
						       test_name[t], impl_name[im],
						       nthreads[k],
						       (unsigned long long)sizes[si], r[k]);
				}
				if (!json)
					printf("%-8s %9llu %-9s %12.0f %12.0f %12.0f\n",
					       test_name[t],
					       (unsigned long long)sizes[si],
					       impl_name[im], r[0], r[1], r[2]);
				fflush(stdout);
				depopulate();
			}
		}
	}

	char path[4096];
	ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 32);
	if (len > 0) {
		path[len] = 0;
		strcat(path, "-reclaim");
		if (access(path, X_OK) == 0) {
			if (!json)
				printf("\n");
			fflush(stdout);
			argv[0] = path;
			execv(path, argv);
		}
	}
	return 0;
}
