/* SPDX-License-Identifier: MIT */
/*
 * The benchmark harness, shared by every bench program (frames, ranges,
 * percpu, objects).
 *
 * A program measures configurations; each configuration is run R times
 * (--runs, default 5) and the median of the per-run figures is reported,
 * because the machines we measure on are shared and noisy and the median
 * shrugs off the odd run that met a timer interrupt storm.
 *
 * Multi-threaded figures are per thread: a thread's elapsed time divided by
 * the operations it did, averaged over the threads. That is what "ns per
 * operation at N threads" means in the LLFree method: a scalable allocator
 * keeps it flat as N grows, a contended one sees it climb.
 *
 * Threads are pinned to the CPUs the process may run on, round robin. When
 * there are more threads than CPUs the run is oversubscribed: wall time then
 * also counts time spent descheduled, so rows say so, and carry the thread
 * CPU time per operation next to the wall time.
 *
 * Oversubscription is also why a timed phase has a time limit (--limit): a
 * FIFO spinlock whose next waiter has been descheduled stalls every other
 * thread until the scheduler runs that waiter again, and a phase of a
 * hundred thousand operations can then take hours. A kernel never sees this
 * (spinlock waiters do not get preempted); a host does. A phase that hits
 * the limit stops, reports ns per operation over the operations it did, and
 * its row is marked as cut short.
 */
#ifndef CAIRN_BENCH_HARNESS_H
#define CAIRN_BENCH_HARNESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_RUNS 64
#define BENCH_MAX_LIST 16
#define BENCH_MAX_THREADS 256

struct bench_opts {
	unsigned runs;       /* repetitions per configuration */
	bool quick;          /* tiny sizes, one run: the smoke test */
	bool check;          /* extra result checking (implied by quick) */
	bool json;           /* JSON lines on stdout instead of the table */
	unsigned threads[BENCH_MAX_LIST];
	unsigned nthreads;
	const char *tests;   /* comma list of tests to run, NULL = all */
	const char *impls;   /* comma list of implementations, NULL = all */
	unsigned limit_ms;   /* a timed phase stops after this long */
};

/* A program-specific option: called for "--name value" (or "--name" when
 * has_arg is false, with val NULL). Return false to reject the value. */
struct bench_option {
	const char *name;
	bool has_arg;
	const char *help;
	bool (*set)(const char *val);
};

/* Parse the common options and the program's extra ones (a table ended by a
 * zeroed entry, or NULL). Prints usage and exits on --help or bad input. */
void bench_parse(struct bench_opts *o, int argc, char **argv,
		 const struct bench_option *extra);

/* Parse "1,2,4" into v[] (at most max entries); false on malformed input. */
bool bench_parse_list(const char *s, unsigned *v, unsigned *n, unsigned max);

/* Is `name` selected by a comma list (NULL selects everything)? */
bool bench_selected(const char *list, const char *name);

/* Print what the program measures and on what machine: to stdout for the
 * table, to stderr with --json so stdout stays pure JSON lines. */
void bench_header(const struct bench_opts *o, const char *title,
		  const char *what);

/* CPUs the process may run on (its affinity mask). */
unsigned bench_cpus(void);

/* ---- time ---- */

/* Monotonic wall-clock nanoseconds. */
uint64_t bench_now_ns(void);
/* CPU time consumed by the calling thread, nanoseconds. */
uint64_t bench_thread_cpu_ns(void);

/* ---- threads ---- */

/* A reusable spinning barrier. Spinning keeps the start of a timed phase
 * tight; after a while a waiter yields so that an oversubscribed run still
 * makes progress. */
struct bench_barrier {
	atomic_uint count;
	atomic_uint gen;
	unsigned n;
};

void bench_barrier_init(struct bench_barrier *b, unsigned n);
void bench_barrier_wait(struct bench_barrier *b);

/* The time limit of timed phases. A thread marks a phase begun, and checks
 * bench_phase_stop once per operation: one relaxed load of a line nobody
 * writes until the limit is hit, so it costs next to nothing. The thread
 * that waits in bench_run_threads is the watchdog: it raises the stop flag
 * of a phase that has run longer than the limit. (Reading the clock in the
 * loop instead would either cost more than the operations or, when an
 * operation takes milliseconds, look too rarely.) */
#define BENCH_MAX_PHASES 4

struct bench_limit {
	_Alignas(64) atomic_bool stop[BENCH_MAX_PHASES];
	_Alignas(64) _Atomic uint64_t begun[BENCH_MAX_PHASES]; /* ns, 0: not */
	atomic_bool hit;     /* some phase was stopped */
	uint64_t limit_ns;
};

void bench_limit_init(struct bench_limit *l, uint64_t limit_ns);

static inline void bench_phase_begin(struct bench_limit *l, unsigned phase)
{
	uint64_t none = 0;
	atomic_compare_exchange_strong_explicit(&l->begun[phase], &none,
						bench_now_ns(),
						memory_order_relaxed,
						memory_order_relaxed);
}

static inline bool bench_phase_stop(struct bench_limit *l, unsigned phase)
{
	return atomic_load_explicit(&l->stop[phase], memory_order_relaxed);
}

/* Run fn(tid, arg) on n threads, thread tid pinned to the (tid mod CPUs)-th
 * CPU of the affinity mask, and wait for all of them, enforcing `limit` if
 * it is not NULL. */
void bench_run_threads(unsigned n, void (*fn)(unsigned tid, void *arg),
		       void *arg, struct bench_limit *limit);

/* ---- statistics ---- */

struct bench_samples {
	double v[BENCH_MAX_RUNS];
	unsigned n;
};

void bench_sample(struct bench_samples *s, double v);
/* One run's per-thread figures (wall and CPU ns/op of n threads): sample
 * their means. */
void bench_sample_threads(struct bench_samples *wall, struct bench_samples *cpu,
			  const double *ns, const double *cpu_ns, unsigned n);
double bench_median(const struct bench_samples *s);
double bench_min(const struct bench_samples *s);
double bench_max(const struct bench_samples *s);

/* ---- machine control ---- */

/* What the machine itself does when threads are added: n pinned threads
 * each run `iters` compare-and-swaps over their own private 128 KiB array
 * (the access pattern of a bitmap allocator, with nothing shared). Returns
 * the mean per-thread wall ns per CAS; its CPU time per CAS in *cpu_ns.
 * If this climbs from 1 to 2 threads, so will every allocator: the cores
 * share something (SMT siblings behind the virtual CPUs, a memory bus). */
double bench_control(unsigned n, uint64_t iters, double *cpu_ns);

/* The same CAS over words the threads share: each thread first writes its
 * own contiguous share of 16384 words (8 to a cache line), then CASes its
 * slice of a shuffled list of all of them, so with n threads about
 * (n-1)/n of its CASes find the line in another core's cache. This is the
 * access pattern of freeing blocks other threads allocated (rand): what
 * any allocator that keeps its metadata next to the block pays. */
double bench_control_shared(unsigned n, double *cpu_ns);

/* ---- results ---- */

/* One reported figure: the median of `ns` (wall, per op and thread) and of
 * `cpu_ns` (thread CPU time per op) over the runs of one configuration. */
struct bench_row {
	const char *suite;
	const char *test;
	const char *impl;
	const char *op;
	const char *param;   /* name of the size-like parameter, e.g. "order";
				NULL when the row has none */
	long value;          /* its value */
	unsigned threads;
	struct bench_samples ns;
	struct bench_samples cpu_ns;
	unsigned cut;        /* runs whose phase hit the time limit */
};

/* Print a row (table line or JSON object) and keep it for bench_find. */
void bench_report(const struct bench_opts *o, const struct bench_row *r);

/* A reported row's median ns/op (wall, or thread CPU time when `cpu`), or
 * a negative value if there is no such row. */
double bench_find(const char *test, const char *impl, const char *op,
		  long value, unsigned threads, bool cpu);

/* Print a free-form line below the table (stderr with --json). */
void bench_note(const struct bench_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- checking ---- */

/* A wrong result: say what and exit non-zero. Benchmarks check what every
 * allocation returned, so a fast but wrong allocator cannot pass. */
_Noreturn void bench_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#define BENCH_CHECK(cond, ...)                  \
	do {                                    \
		if (__builtin_expect(!(cond), 0)) \
			bench_fail(__VA_ARGS__); \
	} while (0)

/* Small, fast, deterministic PRNG (splitmix64) for shuffles. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#endif /* CAIRN_BENCH_HARNESS_H */
