/* SPDX-License-Identifier: MIT */
/*
 * bench-objects: cairn's malloc shim against the allocators Debian ships,
 * each preloaded into a fresh process (LD_PRELOAD), on workloads shaped like
 * mimalloc-bench's:
 *
 *   larson   server churn: each thread replaces random objects (16..1000 B)
 *            of a slot array; every round the arrays move to another
 *            thread, so most frees are of objects another thread allocated
 *   xmalloc  producer/consumer (xmalloc-test): half the threads allocate
 *            batches of 4096 objects, the other half free whole batches
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
 * (all threads), and the process's peak RSS, medians of --runs processes;
 * for xmalloc also the most batches that waited at once (its data in flight).
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

/* Work per thread is SCALE units of each test. A full run's scale is 8 times
 * `units`, which gives every test a timed phase of 0.07-0.2 s on one thread
 * with cairn here. With one unit for all (the first version), larson,
 * xmalloc and scratch ran 3-9 ms, and their figures were mostly thread
 * start and first-touch faults: larson at 8 threads ran at a third of its
 * steady rate, for cairn and mimalloc alike. */
static const struct {
	const char *name;
	unsigned units;
} tests[] = {
	{ "larson", 64 }, { "xmalloc", 32 }, { "scratch", 16 }, { "simple", 8 },
	{ "mstress", 4 }, { "rss", 1 },	    { "big", 1 },
};
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

/* xmalloc: mimalloc-bench's xmalloc-test (Lever and Boreham's malloc
 * test, run there as `xmalloc-test -w N -s 64`). Producers fill batches of
 * 4096 objects of 64 bytes (writing each), consumers free whole batches;
 * batches travel through one stack under a mutex, at most 100 in flight,
 * and a thread with nothing to do sleeps on a condition variable. The
 * hand-off is one lock round trip per 4096 objects, so the figure is the
 * allocator's: allocation on one thread and frees of its objects on
 * another. (An earlier version handed objects over one at a time through
 * rings with sched_yield waits; its figures were the scheduler's.) Here
 * THREADS/2 producers and as many consumers run a fixed amount of work
 * (the original runs for a fixed time); one thread frees its own batches.
 * With an odd count the extra thread is a producer. */
#define XM_BATCH 4096
#define XM_LIMIT 100
#define XM_SIZE 64
struct xm_batch {
	struct xm_batch *next;
	void *obj[XM_BATCH];
};
static struct {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct xm_batch *top;
	unsigned count;           /* batches on the stack */
	uint64_t left;            /* batches not yet taken by a consumer */
} xm = { .lock = PTHREAD_MUTEX_INITIALIZER, .nonempty = PTHREAD_COND_INITIALIZER,
	  .nonfull = PTHREAD_COND_INITIALIZER };
static uint64_t xm_per_producer; /* batches */
/* The most batches that waited on the stack at once: the workload's own
 * data in flight, which is most of its peak RSS (up to XM_LIMIT batches of
 * 288 KiB) and depends on how far the producers run ahead of the
 * consumers. Reported with the row so that its RSS can be read. */
static unsigned xm_peak;

static struct xm_batch *xm_fill(void)
{
	struct xm_batch *b = xmalloc_checked(sizeof *b);
	for (unsigned i = 0; i < XM_BATCH; i++) {
		b->obj[i] = malloc(XM_SIZE);
		if (!b->obj[i])
			exit(3);
		memset(b->obj[i], (int)(i % 256), XM_SIZE);
	}
	return b;
}

static void xm_drain(struct xm_batch *b)
{
	for (unsigned i = 0; i < XM_BATCH; i++)
		free(b->obj[i]);
	free(b);
}

static void xmalloc_run(unsigned tid, void *arg)
{
	(void)arg;
	if (nthreads == 1) {
		for (uint64_t i = 0; i < xm_per_producer; i++)
			xm_drain(xm_fill());
		atomic_fetch_add(&total_ops, 2 * XM_BATCH * xm_per_producer);
		return;
	}
	if (tid % 2 == 0) { /* producer */
		for (uint64_t i = 0; i < xm_per_producer; i++) {
			struct xm_batch *b = xm_fill();
			pthread_mutex_lock(&xm.lock);
			while (xm.count >= XM_LIMIT)
				pthread_cond_wait(&xm.nonfull, &xm.lock);
			b->next = xm.top;
			xm.top = b;
			xm.count++;
			if (xm.count > xm_peak)
				xm_peak = xm.count;
			pthread_cond_signal(&xm.nonempty);
			pthread_mutex_unlock(&xm.lock);
		}
		return;
	}
	uint64_t ops = 0;
	for (;;) { /* consumer */
		pthread_mutex_lock(&xm.lock);
		while (!xm.top && xm.left)
			pthread_cond_wait(&xm.nonempty, &xm.lock);
		struct xm_batch *b = xm.top;
		if (b) {
			xm.top = b->next;
			xm.count--;
			if (!--xm.left)
				pthread_cond_broadcast(&xm.nonempty);
			pthread_cond_signal(&xm.nonfull);
		}
		pthread_mutex_unlock(&xm.lock);
		if (!b)
			break;
		xm_drain(b);
		ops += 2 * XM_BATCH;
	}
	atomic_fetch_add(&total_ops, ops);
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
		/* 50000 * scale objects per producer, in whole batches */
		xm_per_producer = (50000 * scale + XM_BATCH - 1) / XM_BATCH;
		xm.left = xm_per_producer * ((t + 1) / 2); /* even tids produce */
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
	printf("%.0f %ld %u\n", (double)atomic_load(&total_ops) / secs, ru.ru_maxrss, xm_peak);
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
		    unsigned t, uint64_t sc, double *ops, double *rss_kib, double *peak)
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
	       sscanf(buf, "%lf %lf %lf", ops, rss_kib, peak) == 3;
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
		if (!bench_selected(o.tests, tests[k].name))
			continue;
		uint64_t sc = o.quick ? 1 : 8 * (uint64_t)tests[k].units;
		for (unsigned ti = 0; ti < o.nthreads; ti++) {
			unsigned t = o.threads[ti];
			if (!o.json)
				printf("%-8s %3u", tests[k].name, t);
			/* Run by run, every allocator in turn: a change in the
			 * machine's load between runs then falls on all of them
			 * alike, not on whichever ran in that stretch. */
			double ops[NIMPLS][BENCH_MAX_RUNS], rs[NIMPLS][BENCH_MAX_RUNS];
			double pk[NIMPLS][BENCH_MAX_RUNS];
			bool xm = !strcmp(tests[k].name, "xmalloc");
			unsigned n[NIMPLS] = { 0 };
			for (unsigned r = 0; r < o.runs; r++)
				for (unsigned i = 0; i < NIMPLS; i++)
					if (have[i] && run_one(argv[0], &impls[i], tests[k].name, t, sc,
							       &ops[i][n[i]], &rs[i][n[i]], &pk[i][n[i]]))
						n[i]++;
			for (unsigned i = 0; i < NIMPLS; i++) {
				if (!have[i])
					continue;
				if (n[i] < o.runs) {
					failures++;
					fprintf(stderr, "%s %s %u threads: %u of %u runs failed\n",
						impls[i].name, tests[k].name, t, o.runs - n[i], o.runs);
				}
				if (!n[i]) {
					if (!o.json)
						printf(" %18s", "failed");
					continue;
				}
				double mo = median(ops[i], n[i]), mr = median(rs[i], n[i]);
				char extra[48] = "";
				if (xm)
					snprintf(extra, sizeof extra, ", \"peak_batches\": %.0f",
						 median(pk[i], n[i]));
				if (o.json)
					printf("{\"suite\": \"objects\", \"test\": \"%s\", \"impl\": \"%s\", "
					       "\"threads\": %u, \"ops_per_s\": %.0f, \"peak_rss_kib\": %.0f%s, "
					       "\"runs\": %u}\n", tests[k].name, impls[i].name, t, mo, mr, extra,
					       n[i]);
				else
					printf(" %8.2f %9.0f", mo / 1e6, mr);
			}
			if (!o.json && xm) { /* what the row's peak RSS is made of */
				printf("\n%-12s", "  (batches)");
				for (unsigned i = 0; i < NIMPLS; i++)
					if (have[i])
						printf(" %18.0f", n[i] ? median(pk[i], n[i]) : 0.0);
			}
			if (!o.json)
				printf("\n");
			fflush(stdout);
		}
	}
	return failures ? 1 : 0;
}
