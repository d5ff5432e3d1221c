/* SPDX-License-Identifier: MIT */
/* The benchmark harness: see harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- options ---- */

static void usage(const char *prog, const struct bench_option *extra, int rc)
{
	FILE *out = rc ? stderr : stdout;
	fprintf(out,
		"usage: %s [options]\n"
		"  --runs N        repetitions per configuration, median reported (5)\n"
		"  --threads L     thread counts, comma separated (1,2,4)\n"
		"  --test L        only these tests, comma separated\n"
		"  --impl L        only these implementations, comma separated\n"
		"  --json          JSON lines on stdout, one object per result\n"
		"  --check         check every result more thoroughly (slower)\n"
		"  --limit MS      cut a timed phase short after MS ms (1000)\n"
		"  --quick         tiny sizes and one run, with --check (smoke test)\n",
		prog);
	for (const struct bench_option *e = extra; e && e->name; e++)
		fprintf(out, "  --%-13s %s\n", e->name, e->help);
	exit(rc);
}

bool bench_parse_list(const char *s, unsigned *v, unsigned *n, unsigned max)
{
	*n = 0;
	while (*s) {
		char *end;
		errno = 0;
		unsigned long x = strtoul(s, &end, 10);
		if (end == s || errno || x > 1000000 || *n == max)
			return false;
		v[(*n)++] = (unsigned)x;
		if (*end == ',')
			end++;
		else if (*end)
			return false;
		s = end;
	}
	return *n > 0;
}

bool bench_selected(const char *list, const char *name)
{
	if (!list)
		return true;
	size_t len = strlen(name);
	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);
		if (l == len && !strncmp(p, name, len))
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

void bench_parse(struct bench_opts *o, int argc, char **argv,
		 const struct bench_option *extra)
{
	memset(o, 0, sizeof(*o));
	o->runs = 5;
	o->threads[0] = 1;
	o->threads[1] = 2;
	o->threads[2] = 4;
	o->nthreads = 3;
	bool runs_given = false, limit_given = false;

	for (int i = 1; i < argc; i++) {
		/* Accept both "--name value" and "--name=value". */
		char name[64];
		const char *arg = argv[i], *val = NULL;
		if (strncmp(arg, "--", 2))
			usage(argv[0], extra, 2);
		arg += 2;
		const char *eq = strchr(arg, '=');
		size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
		if (len >= sizeof(name))
			usage(argv[0], extra, 2);
		memcpy(name, arg, len);
		name[len] = 0;
		if (eq)
			val = eq + 1;

#define NEED_VAL()                                      \
	do {                                            \
		if (!val && i + 1 < argc)               \
			val = argv[++i];                \
		if (!val)                               \
			usage(argv[0], extra, 2);       \
	} while (0)

		if (!strcmp(name, "help")) {
			usage(argv[0], extra, 0);
		} else if (!strcmp(name, "quick")) {
			o->quick = o->check = true;
		} else if (!strcmp(name, "check")) {
			o->check = true;
		} else if (!strcmp(name, "json")) {
			o->json = true;
		} else if (!strcmp(name, "runs")) {
			NEED_VAL();
			unsigned v[1], n;
			if (!bench_parse_list(val, v, &n, 1) || v[0] == 0 ||
			    v[0] > BENCH_MAX_RUNS)
				usage(argv[0], extra, 2);
			o->runs = v[0];
			runs_given = true;
		} else if (!strcmp(name, "limit")) {
			NEED_VAL();
			unsigned v[1], n;
			if (!bench_parse_list(val, v, &n, 1) || v[0] == 0)
				usage(argv[0], extra, 2);
			o->limit_ms = v[0];
			limit_given = true;
		} else if (!strcmp(name, "threads")) {
			NEED_VAL();
			if (!bench_parse_list(val, o->threads, &o->nthreads,
					      BENCH_MAX_LIST))
				usage(argv[0], extra, 2);
			for (unsigned t = 0; t < o->nthreads; t++)
				if (o->threads[t] == 0 ||
				    o->threads[t] > BENCH_MAX_THREADS)
					usage(argv[0], extra, 2);
		} else if (!strcmp(name, "test")) {
			NEED_VAL();
			o->tests = val;
		} else if (!strcmp(name, "impl")) {
			NEED_VAL();
			o->impls = val;
		} else {
			const struct bench_option *e = extra;
			while (e && e->name && strcmp(e->name, name))
				e++;
			if (!e || !e->name)
				usage(argv[0], extra, 2);
			if (e->has_arg)
				NEED_VAL();
			else if (val)
				usage(argv[0], extra, 2);
			if (!e->set(val))
				usage(argv[0], extra, 2);
		}
#undef NEED_VAL
	}
	if (o->quick && !runs_given)
		o->runs = 1;
	if (!limit_given)
		o->limit_ms = o->quick ? 250 : 1000;
}

/* ---- machine ---- */

static int cpu_list[CPU_SETSIZE];
static unsigned cpu_count;

unsigned bench_cpus(void)
{
	if (cpu_count)
		return cpu_count;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				cpu_list[cpu_count++] = c;
	}
	if (!cpu_count) {
		/* No mask: fall back to the online CPUs, numbered densely. */
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		for (long c = 0; c < (n > 0 ? n : 1) && c < CPU_SETSIZE; c++)
			cpu_list[cpu_count++] = (int)c;
	}
	return cpu_count;
}

static FILE *text_out(const struct bench_opts *o)
{
	return o->json ? stderr : stdout;
}

void bench_header(const struct bench_opts *o, const char *title,
		  const char *what)
{
	FILE *out = text_out(o);
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned maxt = 0;
	for (unsigned i = 0; i < o->nthreads; i++)
		if (o->threads[i] > maxt)
			maxt = o->threads[i];

	fprintf(out, "%s\n%s\n", title, what);
	fprintf(out, "machine: %ld online cores, %u usable by this process; "
		"median of %u run%s%s\n", online, bench_cpus(), o->runs,
		o->runs == 1 ? "" : "s", o->quick ? " (quick: tiny sizes)" : "");
	double load[3];
	if (getloadavg(load, 3) == 3)
		fprintf(out, "load average at start: %.2f %.2f %.2f (other "
			"work on the machine shows up as wall > cpu ns/op)\n",
			load[0], load[1], load[2]);
	if (maxt > bench_cpus())
		fprintf(out, "note: runs with more threads than usable cores are "
			"oversubscribed (marked *): wall ns/op then includes time "
			"spent descheduled; cpu ns/op does not\n");
	fprintf(out, "a timed phase stops after %u ms; rows marked ! had runs "
		"cut short there (ns/op over the operations done)\n",
		o->limit_ms);
	fprintf(out, "\n");
	fflush(out);
}

/* ---- time ---- */

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bench_thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- threads ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

void bench_barrier_init(struct bench_barrier *b, unsigned n)
{
	atomic_init(&b->count, 0);
	atomic_init(&b->gen, 0);
	b->n = n;
}

void bench_barrier_wait(struct bench_barrier *b)
{
	/* Generation barrier: the last to arrive resets the count, then
	 * publishes the next generation with a release store. A waiter that
	 * saw the new generation (acquire) and comes straight back for the
	 * next barrier therefore counts from the reset value. */
	unsigned gen = atomic_load_explicit(&b->gen, memory_order_acquire);
	if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) ==
	    b->n - 1) {
		atomic_store_explicit(&b->count, 0, memory_order_relaxed);
		atomic_store_explicit(&b->gen, gen + 1, memory_order_release);
		return;
	}
	for (unsigned spins = 0;
	     atomic_load_explicit(&b->gen, memory_order_acquire) == gen;
	     spins++) {
		if (spins < 20000)
			cpu_relax();
		else
			sched_yield();
	}
}

void bench_limit_init(struct bench_limit *l, uint64_t limit_ns)
{
	for (unsigned i = 0; i < BENCH_MAX_PHASES; i++) {
		atomic_init(&l->stop[i], false);
		atomic_init(&l->begun[i], 0);
	}
	atomic_init(&l->hit, false);
	l->limit_ns = limit_ns;
}

struct thread_start {
	pthread_t th;
	unsigned tid;
	void (*fn)(unsigned tid, void *arg);
	void *arg;
	atomic_uint *finished;
};

static void *thread_main(void *p)
{
	struct thread_start *s = p;
	s->fn(s->tid, s->arg);
	atomic_fetch_add_explicit(s->finished, 1, memory_order_release);
	return NULL;
}

/* Wait for the threads, stopping every phase that overran the limit. */
static void watch(struct bench_limit *l, atomic_uint *finished, unsigned n)
{
	const struct timespec tick = { 0, 1000000 }; /* 1 ms */
	while (atomic_load_explicit(finished, memory_order_acquire) < n) {
		nanosleep(&tick, NULL);
		uint64_t now = bench_now_ns();
		for (unsigned i = 0; i < BENCH_MAX_PHASES; i++) {
			uint64_t t0 = atomic_load_explicit(&l->begun[i],
							   memory_order_relaxed);
			if (t0 && now - t0 > l->limit_ns &&
			    !atomic_load_explicit(&l->stop[i],
						  memory_order_relaxed)) {
				atomic_store_explicit(&l->stop[i], true,
						      memory_order_relaxed);
				atomic_store_explicit(&l->hit, true,
						      memory_order_relaxed);
			}
		}
	}
}

void bench_run_threads(unsigned n, void (*fn)(unsigned tid, void *arg),
		       void *arg, struct bench_limit *limit)
{
	struct thread_start *ts = calloc(n, sizeof(*ts));
	BENCH_CHECK(ts, "out of memory for %u threads", n);
	atomic_uint finished;
	atomic_init(&finished, 0);
	unsigned ncpu = bench_cpus();
	for (unsigned i = 0; i < n; i++) {
		ts[i] = (struct thread_start){ .tid = i, .fn = fn, .arg = arg,
					       .finished = &finished };
		pthread_attr_t attr;
		cpu_set_t set;
		pthread_attr_init(&attr);
		CPU_ZERO(&set);
		CPU_SET(cpu_list[i % ncpu], &set);
		/* Pin before the thread runs, so it never starts elsewhere. */
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		int rc = pthread_create(&ts[i].th, &attr, thread_main, &ts[i]);
		pthread_attr_destroy(&attr);
		BENCH_CHECK(rc == 0, "pthread_create: %s", strerror(rc));
	}
	if (limit)
		watch(limit, &finished, n);
	for (unsigned i = 0; i < n; i++)
		pthread_join(ts[i].th, NULL);
	free(ts);
}

/* ---- machine control ---- */

#define CONTROL_WORDS (128 * 1024 / 8)

struct control {
	struct bench_barrier bar;
	uint64_t iters;
	double ns[BENCH_MAX_THREADS], cpu[BENCH_MAX_THREADS];
};

static void control_thread(unsigned tid, void *arg)
{
	struct control *c = arg;
	/* Each thread's own array, allocated by the thread: nothing shared,
	 * not even a cache line. */
	_Atomic uint64_t *w = aligned_alloc(64, CONTROL_WORDS * sizeof(*w));
	BENCH_CHECK(w, "out of memory");
	for (unsigned i = 0; i < CONTROL_WORDS; i++)
		atomic_init(&w[i], 0);
	bench_barrier_wait(&c->bar);
	uint64_t t0 = bench_now_ns(), c0 = bench_thread_cpu_ns();
	for (uint64_t i = 0; i < c->iters; i++) {
		_Atomic uint64_t *p = &w[i % CONTROL_WORDS];
		uint64_t v = atomic_load_explicit(p, memory_order_relaxed);
		uint64_t bit = 1ull << (i / CONTROL_WORDS % 64);
		while (!atomic_compare_exchange_weak_explicit(p, &v, v ^ bit,
				memory_order_acq_rel, memory_order_relaxed))
			;
	}
	uint64_t t1 = bench_now_ns(), c1 = bench_thread_cpu_ns();
	c->ns[tid] = (double)(t1 - t0) / (double)c->iters;
	c->cpu[tid] = (double)(c1 - c0) / (double)c->iters;
	free((void *)w);
}

/* The mean over n threads of their ns per operation (and of their CPU ns). */
static double thread_means(const double *ns, const double *cpu, unsigned n, double *cpu_ns)
{
	double sum = 0, cpu_sum = 0;
	for (unsigned i = 0; i < n; i++) {
		sum += ns[i];
		cpu_sum += cpu[i];
	}
	if (cpu_ns)
		*cpu_ns = cpu_sum / n;
	return sum / n;
}

double bench_control(unsigned n, uint64_t iters, double *cpu_ns)
{
	static struct control c;
	c.iters = iters ? iters : 1;
	bench_barrier_init(&c.bar, n);
	bench_run_threads(n, control_thread, &c, NULL);
	return thread_means(c.ns, c.cpu, n, cpu_ns);
}

/* ---- machine control, shared words ---- */

#define SHARED_WORDS 16384 /* as many as the order-9 runs have chunk entries */
#define SHARED_ROUNDS 32

struct control_shared {
	struct bench_barrier bar;
	unsigned n;
	_Atomic uint64_t *w;  /* 8 to a cache line */
	uint32_t *order;      /* every word once, shuffled */
	double ns[BENCH_MAX_THREADS], cpu[BENCH_MAX_THREADS];
};

static void control_shared_thread(unsigned tid, void *arg)
{
	struct control_shared *c = arg;
	uint64_t share = SHARED_WORDS / c->n, lo = tid * share, ns = 0, cpu = 0;
	for (unsigned round = 0; round < SHARED_ROUNDS; round++) {
		/* Write our own contiguous part, as a thread's allocations
		 * write the entries of its own chunks ... */
		for (uint64_t i = lo; i < lo + share; i++)
			atomic_store_explicit(&c->w[i], 1, memory_order_relaxed);
		bench_barrier_wait(&c->bar);
		/* ... then CAS our slice of the shuffled list, as rand's frees
		 * do: most of these words another thread wrote last. */
		uint64_t t0 = bench_now_ns(), c0 = bench_thread_cpu_ns();
		for (uint64_t i = lo; i < lo + share; i++) {
			uint64_t v = 1;
			atomic_compare_exchange_strong_explicit(&c->w[c->order[i]], &v, 0,
				memory_order_acq_rel, memory_order_relaxed);
		}
		ns += bench_now_ns() - t0;
		cpu += bench_thread_cpu_ns() - c0;
		bench_barrier_wait(&c->bar);
	}
	c->ns[tid] = (double)ns / (double)(share * SHARED_ROUNDS);
	c->cpu[tid] = (double)cpu / (double)(share * SHARED_ROUNDS);
}

double bench_control_shared(unsigned n, double *cpu_ns)
{
	static struct control_shared c;
	c.n = n;
	c.w = aligned_alloc(64, SHARED_WORDS * sizeof(*c.w));
	c.order = malloc(SHARED_WORDS * sizeof(*c.order));
	BENCH_CHECK(c.w && c.order, "out of memory");
	uint64_t seed = 42;
	for (uint32_t i = 0; i < SHARED_WORDS; i++) {
		atomic_init(&c.w[i], 0);
		c.order[i] = i;
	}
	for (uint32_t i = SHARED_WORDS - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(bench_rand(&seed) % (i + 1)), t = c.order[i];
		c.order[i] = c.order[j];
		c.order[j] = t;
	}
	bench_barrier_init(&c.bar, n);
	bench_run_threads(n, control_shared_thread, &c, NULL);
	free((void *)c.w);
	free(c.order);
	return thread_means(c.ns, c.cpu, n, cpu_ns);
}

/* ---- statistics ---- */

void bench_sample(struct bench_samples *s, double v)
{
	if (s->n < BENCH_MAX_RUNS)
		s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

void bench_sample_threads(struct bench_samples *wall, struct bench_samples *cpu,
			  const double *ns, const double *cpu_ns, unsigned n)
{
	double w = 0, t = 0;
	for (unsigned i = 0; i < n; i++) {
		w += ns[i];
		t += cpu_ns[i];
	}
	bench_sample(wall, w / n);
	bench_sample(cpu, t / n);
}

double bench_median(const struct bench_samples *s)
{
	if (!s->n)
		return 0;
	double v[BENCH_MAX_RUNS];
	memcpy(v, s->v, s->n * sizeof(v[0]));
	qsort(v, s->n, sizeof(v[0]), cmp_double);
	return s->n & 1 ? v[s->n / 2] : (v[s->n / 2 - 1] + v[s->n / 2]) / 2;
}

double bench_min(const struct bench_samples *s)
{
	double m = s->n ? s->v[0] : 0;
	for (unsigned i = 1; i < s->n; i++)
		m = s->v[i] < m ? s->v[i] : m;
	return m;
}

double bench_max(const struct bench_samples *s)
{
	double m = s->n ? s->v[0] : 0;
	for (unsigned i = 1; i < s->n; i++)
		m = s->v[i] > m ? s->v[i] : m;
	return m;
}

/* ---- results ---- */

struct kept_row {
	const char *test, *impl, *op;
	long value;
	unsigned threads;
	double median, cpu;
};

static struct kept_row *kept;
static size_t nkept, capkept;
static bool header_done;

double bench_find(const char *test, const char *impl, const char *op,
		  long value, unsigned threads, bool cpu)
{
	for (size_t i = 0; i < nkept; i++)
		if (!strcmp(kept[i].test, test) && !strcmp(kept[i].impl, impl) &&
		    !strcmp(kept[i].op, op) && kept[i].value == value &&
		    kept[i].threads == threads)
			return cpu ? kept[i].cpu : kept[i].median;
	return -1;
}

void bench_report(const struct bench_opts *o, const struct bench_row *r)
{
	double med = bench_median(&r->ns);
	double cpu = bench_median(&r->cpu_ns);
	bool over = r->threads > bench_cpus();

	if (nkept == capkept) {
		capkept = capkept ? 2 * capkept : 64;
		kept = realloc(kept, capkept * sizeof(*kept));
		BENCH_CHECK(kept, "out of memory");
	}
	kept[nkept++] = (struct kept_row){ r->test, r->impl, r->op, r->value,
					   r->threads, med, cpu };

	if (o->json) {
		char param[80] = "";
		if (r->param)
			snprintf(param, sizeof(param), "\"%s\":%ld,", r->param,
				 r->value);
		printf("{\"suite\":\"%s\",\"test\":\"%s\",\"impl\":\"%s\","
		       "%s\"threads\":%u,\"op\":\"%s\","
		       "\"ns_per_op\":%.2f,\"min\":%.2f,\"max\":%.2f,"
		       "\"cpu_ns_per_op\":%.2f,\"runs\":%u,\"cores\":%u,"
		       "\"oversubscribed\":%s,\"cut_runs\":%u}\n",
		       r->suite, r->test, r->impl, param, r->threads, r->op, med, bench_min(&r->ns),
		       bench_max(&r->ns), cpu, r->ns.n, bench_cpus(),
		       over ? "true" : "false", r->cut);
		fflush(stdout);
		return;
	}
	if (!header_done) {
		/* The parameter column is named after the first row that
		 * has one; a suite keeps to one parameter. */
		printf("%-8s %-8s %-9s %6s %8s %-6s %10s %10s %10s %10s\n",
		       "suite", "test", "impl", r->param ? r->param : "",
		       "threads", "op", "ns/op", "min", "max", "cpu ns/op");
		header_done = true;
	}
	char value[24] = "-";
	if (r->param)
		snprintf(value, sizeof(value), "%ld", r->value);
	printf("%-8s %-8s %-9s %6s %7u%c %-6s %10.1f %10.1f %10.1f %10.1f%s\n",
	       r->suite, r->test, r->impl, value, r->threads,
	       over ? '*' : ' ', r->op, med, bench_min(&r->ns),
	       bench_max(&r->ns), cpu, r->cut ? " !" : "");
	fflush(stdout);
}

void bench_note(const struct bench_opts *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(text_out(o), fmt, ap);
	va_end(ap);
	fputc('\n', text_out(o));
}

_Noreturn void bench_fail(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}
