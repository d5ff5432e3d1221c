/* SPDX-License-Identifier: MIT */
/*
 * bench-objects: cairn's malloc shim against the allocators Debian ships,
 * each preloaded into a fresh process (LD_PRELOAD), on workloads shaped like
 * mimalloc-bench's:
 *
 *   larson   server churn: each thread replaces random objects (16..1000 B)
 *            of a slot array; every round the arrays move to another
 *            thread, so most frees are of objects another thread allocated
 *   xmalloc  producer/consumer: half the threads allocate, the other half
 *            free what they receive through a ring
 *   scratch  cache-scratch: a thread repeatedly allocates an 8-byte object
 *            and writes it; an allocator that puts two threads' objects in
 *            one cache line makes them fight over it (false sharing)
 *   simple   glibc-simple: batches of 100 allocations of one size, then
 *            their frees, cycling through sizes 16..1024 B (the fast path)
 *   mstress  thread churn: rounds of short-lived threads that free half of
 *            what the previous round left and allocate more
 *   rss      peak resident memory of a growing and shrinking working set
 *   big      large blocks: each thread replaces random slots of 64 blocks
 *            of 64 KiB .. 1 MiB, touching every page it asked for
 *
 * Figures: operations (allocations + frees) per second over the whole run
 * (all threads), and the process's peak RSS, medians of --runs processes.
 *
 * cairn-hardened is the shim with its checks on (CAIRN_HARDEN=1): the row
 * pair shows what the checks cost.
 *
 * The parent runs `bench-objects --worker TEST:THREADS` under each
 * allocator; a worker only calls malloc & co. and prints "ops_per_s rss".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#ifndef CAIRN_MALLOC_SO
#define CAIRN_MALLOC_SO "libcairn-malloc.so"
#endif

struct impl {
	const char *name;
	const char *so;  /* NULL: the system allocator */
	const char *env; /* NAME=VALUE for the worker, or NULL */
};

static const struct impl impls[] = {
	{ "cairn", CAIRN_MALLOC_SO, "CAIRN_HARDEN=0" },
	{ "cairn-hardened", CAIRN_MALLOC_SO, "CAIRN_HARDEN=1" },
	{ "glibc", NULL, NULL },
	{ "jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2" , NULL },
	{ "tcmalloc", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4" , NULL },
	{ "mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2" , NULL },
	{ "tbbmalloc", "/usr/lib/x86_64-linux-gnu/libtbbmalloc_proxy.so.2" , NULL },
	{ "scudo", "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.scudo_standalone-x86_64.so" , NULL },
};
#define NIMPLS (sizeof impls / sizeof impls[0])

static const char *tests[] = { "larson", "xmalloc", "scratch", "simple", "mstress", "rss",
			       "big" };
#define NTESTS (sizeof tests / sizeof tests[0])

/* ---- workers ---- */

static unsigned nthreads;
static uint64_t scale = 1; /* work per thread, in units */
static _Atomic uint64_t total_ops;
static struct bench_barrier bar;

static void *xmalloc_checked(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "malloc(%zu) failed\n", n);
		exit(3);
	}
	((volatile char *)p)[0] = 1;
	((volatile char *)p)[n - 1] = 2;
	return p;
}

/* larson */
#define LARSON_SLOTS 1000
#define LARSON_ROUNDS 8
static void **larson_arr[BENCH_MAX_THREADS];

static void larson(unsigned tid, void *arg)
{
	(void)arg;
	uint64_t r = tid + 1, ops = 0, iters = 25000 * scale / LARSON_ROUNDS;
	for (unsigned round = 0; round < LARSON_ROUNDS; round++) {
		void **a = larson_arr[(tid + round) % nthreads];
		for (uint64_t i = 0; i < iters; i++) {
			uint64_t x = bench_rand(&r);
			unsigned k = (unsigned)(x % LARSON_SLOTS);
			free(a[k]);
			a[k] = xmalloc_checked(16 + (x >> 32) % 1000);
		}
		ops += 2 * iters;
		bench_barrier_wait(&bar);
	}
	atomic_fetch_add(&total_ops, ops);
}

static void larson_setup(void)
{
	uint64_t r = 99;
	for (unsigned t = 0; t < nthreads; t++) {
		larson_arr[t] = calloc(LARSON_SLOTS, sizeof(void *));
		for (unsigned k = 0; k < LARSON_SLOTS; k++)
			larson_arr[t][k] = xmalloc_checked(16 + bench_rand(&r) % 1000);
	}
}

/* xmalloc: producer/consumer pairs through single-producer rings */
#define RING 4096
struct ring {
	_Alignas(64) _Atomic uint64_t head;
	_Alignas(64) _Atomic uint64_t tail;
	void *slot[RING];
};
static struct ring *rings;

static void xmalloc_run(unsigned tid, void *arg)
{
	(void)arg;
	uint64_t n = 50000 * scale, r = tid + 7;
	if (nthreads == 1 || (nthreads % 2 && tid == nthreads - 1)) {
		void *batch[64];
		for (uint64_t i = 0; i < n; i += 64) {
			for (unsigned j = 0; j < 64; j++)
				batch[j] = xmalloc_checked(16 + bench_rand(&r) % 240);
			for (unsigned j = 0; j < 64; j++)
				free(batch[j]);
		}
		atomic_fetch_add(&total_ops, 2 * ((n + 63) / 64 * 64));
		return;
	}
	struct ring *q = &rings[tid / 2];
	if (tid % 2 == 0) {
		for (uint64_t i = 0; i < n; i++) {
			void *p = xmalloc_checked(16 + bench_rand(&r) % 240);
			uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
			while (h - atomic_load_explicit(&q->tail, memory_order_acquire) >= RING)
				sched_yield();
			q->slot[h % RING] = p;
			atomic_store_explicit(&q->head, h + 1, memory_order_release);
		}
	} else {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
			while (atomic_load_explicit(&q->head, memory_order_acquire) == t)
				sched_yield();
			free(q->slot[t % RING]);
			atomic_store_explicit(&q->tail, t + 1, memory_order_release);
		}
		atomic_fetch_add(&total_ops, 2 * n);
	}
}

/* cache-scratch */
static void *scratch_given[BENCH_MAX_THREADS];

static void scratch(unsigned tid, void *arg)
{
	(void)arg;
	free(scratch_given[tid]);
	uint64_t n = 20000 * scale;
	for (uint64_t i = 0; i < n; i++) {
		volatile char *p = xmalloc_checked(8);
		for (unsigned w = 0; w < 64; w++)
			p[w & 7] = (char)(p[w & 7] + 1);
		free((void *)p);
	}
	atomic_fetch_add(&total_ops, 2 * n);
}

/* glibc-simple */
static void simple(unsigned tid, void *arg)
{
	(void)arg;
	(void)tid;
	void *batch[100];
	uint64_t n = 2000 * scale, ops = 0;
	for (uint64_t i = 0; i < n; i++) {
		size_t size = 16 + (i % 64) * 16;
		for (unsigned j = 0; j < 100; j++)
			batch[j] = xmalloc_checked(size);
		for (unsigned j = 0; j < 100; j++)
			free(batch[j]);
		ops += 200;
	}
	atomic_fetch_add(&total_ops, ops);
}

/* mstress: rounds of short-lived threads */
#define MS_POOL 4096
static void *ms_pool[BENCH_MAX_THREADS][MS_POOL];
static unsigned ms_round;

static void *mstress_thread(void *arg)
{
	unsigned tid = (unsigned)(uintptr_t)arg;
	void **mine = ms_pool[(tid + ms_round) % nthreads];
	uint64_t r = tid * 31 + ms_round + 1, ops = 0;
	for (unsigned k = 0; k < MS_POOL; k += 2)
		if (mine[k]) {
			free(mine[k]);
			mine[k] = NULL;
			ops++;
		}
	for (unsigned k = 0; k < MS_POOL; k++) {
		if (mine[k])
			continue;
		uint64_t x = bench_rand(&r);
		size_t size = x % 100 < 95 ? 16 + x % 2000 : 4096 + (x >> 20) % (60 << 10);
		mine[k] = xmalloc_checked(size);
		ops++;
	}
	atomic_fetch_add(&total_ops, ops);
	return NULL;
}

static void mstress(void)
{
	unsigned rounds = (unsigned)(10 * scale);
	for (ms_round = 0; ms_round < rounds; ms_round++) {
		pthread_t t[BENCH_MAX_THREADS];
		for (unsigned i = 0; i < nthreads; i++)
			pthread_create(&t[i], NULL, mstress_thread, (void *)(uintptr_t)i);
		for (unsigned i = 0; i < nthreads; i++)
			pthread_join(t[i], NULL);
	}
}

/* rss: a working set that grows and shrinks */
static void rss(unsigned tid, void *arg)
{
	(void)arg;
	enum { N = 40000 };
	void **v = calloc(N, sizeof(void *));
	uint64_t r = tid + 5, ops = 0;
	for (unsigned phase = 0; phase < 4 * scale; phase++) {
		for (unsigned k = 0; k < N; k++)
			if (!v[k]) {
				uint64_t x = bench_rand(&r);
				size_t size = x % 100 < 90 ? 16 + x % 512 : 1024 + (x >> 16) % 16384;
				v[k] = xmalloc_checked(size);
				memset(v[k], 1, size);
				ops++;
			}
		for (unsigned k = 0; k < N; k++)
			if (bench_rand(&r) % 4 != 0) {
				free(v[k]);
				v[k] = NULL;
				ops++;
			}
	}
	for (unsigned k = 0; k < N; k++)
		if (v[k]) {
			free(v[k]);
			ops++;
		}
	free(v);
	atomic_fetch_add(&total_ops, ops);
}

/* big: a working set of large blocks, every page asked for touched */
static void big(unsigned tid, void *arg)
{
	(void)arg;
	enum { N = 64 };
	void *v[N] = { 0 };
	uint64_t r = tid * 7 + 3, ops = 0;
	for (unsigned i = 0; i < 4000 * scale; i++) {
		uint64_t x = bench_rand(&r);
		unsigned k = (unsigned)(x % N);
		if (v[k]) {
			free(v[k]);
			ops++;
		}
		size_t size = (64u << 10) + 1 + (x >> 16) % (960u << 10);
		unsigned char *p = xmalloc_checked(size);
		for (size_t off = 0; off < size; off += 4096)
			p[off] = 1;
		v[k] = p;
		ops++;
	}
	for (unsigned k = 0; k < N; k++)
		if (v[k]) {
			free(v[k]);
			ops++;
		}
	atomic_fetch_add(&total_ops, ops);
}

static int worker(const char *spec)
{
	char test[32];
	unsigned t;
	if (sscanf(spec, "%31[a-z]:%u:%lu", test, &t, &scale) < 2 || !t || t > BENCH_MAX_THREADS)
		return 2;
	nthreads = t;
	bench_barrier_init(&bar, t);
	uint64_t t0;
	if (!strcmp(test, "larson")) {
		larson_setup();
		t0 = bench_now_ns();
		bench_run_threads(t, larson, NULL, NULL);
	} else if (!strcmp(test, "xmalloc")) {
		rings = aligned_alloc(64, sizeof(struct ring) * (t / 2 + 1));
		memset(rings, 0, sizeof(struct ring) * (t / 2 + 1));
		t0 = bench_now_ns();
		bench_run_threads(t, xmalloc_run, NULL, NULL);
	} else if (!strcmp(test, "scratch")) {
		for (unsigned i = 0; i < t; i++)
			scratch_given[i] = xmalloc_checked(8);
		t0 = bench_now_ns();
		bench_run_threads(t, scratch, NULL, NULL);
	} else if (!strcmp(test, "simple")) {
		t0 = bench_now_ns();
		bench_run_threads(t, simple, NULL, NULL);
	} else if (!strcmp(test, "mstress")) {
		t0 = bench_now_ns();
		mstress();
	} else if (!strcmp(test, "rss")) {
		t0 = bench_now_ns();
		bench_run_threads(t, rss, NULL, NULL);
	} else if (!strcmp(test, "big")) {
		t0 = bench_now_ns();
		bench_run_threads(t, big, NULL, NULL);
	} else {
		return 2;
	}
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("%.0f %ld\n", (double)atomic_load(&total_ops) / secs, ru.ru_maxrss);
	return 0;
}

/* ---- the parent ---- */

static const char *worker_spec;

static bool set_worker(const char *v)
{
	worker_spec = v;
	return true;
}

static bool run_one(const char *self, const struct impl *im, const char *test,
		    unsigned t, uint64_t sc, double *ops, double *rss_kib)
{
	int fd[2];
	if (pipe(fd))
		return false;
	char spec[64];
	snprintf(spec, sizeof spec, "%s:%u:%lu", test, t, sc);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		if (im->env)
			putenv((char *)im->env);
		if (im->so)
			setenv("LD_PRELOAD", im->so, 1);
		else
			unsetenv("LD_PRELOAD");
		execl(self, self, "--worker", spec, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	char buf[128] = { 0 };
	ssize_t n = read(fd[0], buf, sizeof buf - 1);
	close(fd[0]);
	int status;
	waitpid(pid, &status, 0);
	return n > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	       sscanf(buf, "%lf %lf", ops, rss_kib) == 2;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	static const struct bench_option extra[] = {
		{ "worker", true, "run one TEST:THREADS[:SCALE] in this process (internal)",
		  set_worker },
		{ 0 },
	};
	bool threads_given = false;
	for (int i = 1; i < argc; i++)
		threads_given |= !strcmp(argv[i], "--threads");
	bench_parse(&o, argc, argv, extra);
	if (worker_spec)
		return worker(worker_spec);
	if (!threads_given) {
		unsigned def[] = { 1, 2, 4, 8 };
		memcpy(o.threads, def, sizeof def);
		o.nthreads = 4;
	}
	uint64_t sc = o.quick ? 1 : 8;
	bench_header(&o, "objects: malloc shim against Debian's allocators (LD_PRELOAD)",
		     "ops/s = allocations + frees per second, all threads; rss = peak "
		     "resident KiB; medians of the runs");
	bool have[NIMPLS];
	for (unsigned i = 0; i < NIMPLS; i++) {
		have[i] = bench_selected(o.impls, impls[i].name) &&
			  (!impls[i].so || access(impls[i].so, R_OK) == 0);
		if (bench_selected(o.impls, impls[i].name) && !have[i])
			bench_note(&o, "%s: %s not found, skipped", impls[i].name, impls[i].so);
	}
	if (!o.json) {
		printf("%-8s %3s", "test", "thr");
		for (unsigned i = 0; i < NIMPLS; i++)
			if (have[i])
				printf(" %18s", impls[i].name);
		printf("\n%-8s %3s", "", "");
		for (unsigned i = 0; i < NIMPLS; i++)
			if (have[i])
				printf(" %18s", "Mops/s   rss KiB");
		printf("\n");
	}
	int failures = 0;
	for (unsigned k = 0; k < NTESTS; k++) {
		if (!bench_selected(o.tests, tests[k]))
			continue;
		for (unsigned ti = 0; ti < o.nthreads; ti++) {
			unsigned t = o.threads[ti];
			if (!o.json)
				printf("%-8s %3u", tests[k], t);
			for (unsigned i = 0; i < NIMPLS; i++) {
				if (!have[i])
					continue;
				double ops[BENCH_MAX_RUNS], rs[BENCH_MAX_RUNS];
				unsigned n = 0;
				for (unsigned r = 0; r < o.runs; r++)
					if (run_one(argv[0], &impls[i], tests[k], t, sc, &ops[n], &rs[n]))
						n++;
				if (n < o.runs) {
					failures++;
					fprintf(stderr, "%s %s %u threads: %u of %u runs failed\n",
						impls[i].name, tests[k], t, o.runs - n, o.runs);
				}
				if (!n) {
					if (!o.json)
						printf(" %18s", "failed");
					continue;
				}
				double mo = median(ops, n), mr = median(rs, n);
				if (o.json)
					printf("{\"suite\": \"objects\", \"test\": \"%s\", \"impl\": \"%s\", "
					       "\"threads\": %u, \"ops_per_s\": %.0f, \"peak_rss_kib\": %.0f, "
					       "\"runs\": %u}\n", tests[k], impls[i].name, t, mo, mr, n);
				else
					printf(" %8.2f %9.0f", mo / 1e6, mr);
				fflush(stdout);
			}
			if (!o.json)
				printf("\n");
		}
	}
	return failures ? 1 : 0;
}
