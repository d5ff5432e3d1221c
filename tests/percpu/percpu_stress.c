/* SPDX-License-Identifier: MIT */
/*
 * Host driver of the per-CPU cache stress: first threads bound to every CPU
 * slot run stress_percpu_cpu at once (mixed phases, exhaustion phases);
 * then threads come and go: each takes any free slot, works, gives back
 * what it holds, drains its slot and leaves, and a new thread takes the
 * slot, while up to `threads` run at once.
 * usage: percpu_stress threads ops MiB seed [plant] [churn threads]
 * With plant=1 the suite must fail, and the verdict is inverted.
 */
#include <pthread.h>
#include <sched.h>

#include "percpu_stress.h"
#include "../stress_host.h"

static struct stress_percpu s;
static atomic_uint alive;
static uint64_t churn_ops;

static void *cpu_main(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	if (cairn_host_cpu_bind(cpu)) {
		fprintf(stderr, "cannot bind cpu %u\n", cpu);
		exit(2);
	}
	stress_percpu_cpu(&s, cpu);
	cairn_host_cpu_unregister();
	return NULL;
}

static void *churn_main(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	while (cairn_host_cpu_register() < 0) /* a leaving thread frees its slot */
		sched_yield();
	struct stress_cpu *c = calloc(1, sizeof(*c));
	stress_cpu_init(c, s.seed * 0x9e3779b97f4a7c15ull + me);
	stress_percpu_worker(&s, c, me, churn_ops);
	free(c);
	cairn_host_cpu_unregister();
	atomic_fetch_sub(&alive, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	struct stress_args a;
	if (stress_args_parse(&a, argc, argv))
		return 2;
	unsigned threads = a.threads, churn = argc > 6 ? (unsigned)atoi(argv[6]) : 4 * threads;
	struct cairn_frames *f;
	if (stress_host_memory(&a, &f, &s.blocks))
		return 2;
	struct cairn_fcache *fc;
	/* small magazines and depots: the slow paths run often */
	struct cairn_fcache_config fcfg = { .mag_size = { 15, 7, 7, 3, 2 }, .depot_full = 4,
					    .depot_empty = 2 };
	if (cairn_fcache_create(&fc, f, &fcfg))
		return 2;

	s.f = f;
	s.fc = fc;
	s.ncpus = threads;
	s.ops = a.ops;
	s.seed = a.seed;
	s.phases = 2;
	s.plant = a.plant;
	s.cpu = calloc(threads, sizeof(*s.cpu));
	if (!s.cpu)
		return 2;
	stress_percpu_init(&s);

	pthread_t t[STRESS_MAX_CPUS];
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, cpu_main, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);

	/* threads coming and going */
	churn_ops = a.ops / 8 + 1;
	pthread_t *ct = calloc(churn, sizeof(*ct));
	for (unsigned i = 0; i < churn; i++) {
		while (atomic_load(&alive) >= threads)
			sched_yield();
		atomic_fetch_add(&alive, 1);
		pthread_create(&ct[i], NULL, churn_main, (void *)(uintptr_t)i);
	}
	for (unsigned i = 0; i < churn; i++)
		pthread_join(ct[i], NULL);
	uint64_t errors = stress_percpu_finish(&s);

	for (unsigned i = 0; i < threads; i++)
		stress_print_cpu(i, &s.cpu[i]);
	for (unsigned i = 0; i < threads; i++) {
		struct cairn_mag_cpu_stats st;
		cairn_mag_cpu_stats(cairn_fcache_mags(fc, 0), i, &st);
		printf("order-0 cache, cpu %u: hits %llu misses %llu exchanges %llu\n", i,
		       (unsigned long long)st.hits, (unsigned long long)st.misses,
		       (unsigned long long)st.exchanges);
	}
	cairn_fcache_destroy(fc);
	printf("percpu stress: %u threads, %u coming and going, seed %llu: ", threads, churn,
	       (unsigned long long)a.seed);
	return stress_verdict(&a, errors);
}
