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
#include <cairn/frame_cache.h>
#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "percpu_stress.h"

#define MiB (1024ull * 1024)

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
	struct sp_cpu *c = calloc(1, sizeof(*c));
	c->rng = s.seed * 0x9e3779b97f4a7c15ull + me;
	stress_percpu_worker(&s, c, me, churn_ops);
	free(c);
	cairn_host_cpu_unregister();
	atomic_fetch_sub(&alive, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000;
	uint64_t mib = argc > 3 ? strtoull(argv[3], NULL, 0) : 64;
	uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	unsigned plant = argc > 5 ? (unsigned)atoi(argv[5]) : 0;
	unsigned churn = argc > 6 ? (unsigned)atoi(argv[6]) : 4 * threads;
	if (threads == 0 || threads > SP_MAX_CPUS)
		return 2;

	/* a map with holes, across the 16 MiB line and above 4 GiB */
	uint64_t hi = mib > 32 ? mib - 32 : 8;
	struct cairn_mem_range map[] = {
		{ 1 * MiB, 7 * MiB },
		{ 9 * MiB, 23 * MiB },
		{ 4096 * MiB, hi * MiB },
	};
	if (cairn_host_init(threads, 0, (4096 + hi) * MiB) || cairn_host_hole(8 * MiB, 1 * MiB))
		return 2;
	struct cairn_frames *f;
	struct cairn_frames_config cfg = { .ncpus = threads };
	if (cairn_frames_init(&f, map, 3, &cfg))
		return 2;
	struct cairn_fcache *fc;
	/* small magazines and depots: the slow paths run often */
	struct cairn_fcache_config fcfg = { .mag_size = { 15, 7, 7, 3, 2 }, .depot_full = 4,
					    .depot_empty = 2 };
	if (cairn_fcache_create(&fc, f, &fcfg))
		return 2;

	s.f = f;
	s.fc = fc;
	s.oracle_first = (1 * MiB) >> CAIRN_FRAME_SHIFT;
	s.oracle_frames = ((4096 + hi) * MiB >> CAIRN_FRAME_SHIFT) - s.oracle_first;
	s.owner = calloc(s.oracle_frames, sizeof(*s.owner));
	s.ncpus = threads;
	s.ops = ops;
	s.seed = seed;
	s.phases = 2;
	s.plant = plant;
	s.cpu = calloc(threads, sizeof(*s.cpu));
	if (!s.owner || !s.cpu)
		return 2;
	if (plant)
		cairn_host_reports_quiet(1);
	stress_percpu_init(&s);

	pthread_t t[SP_MAX_CPUS];
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, cpu_main, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);

	/* threads coming and going */
	churn_ops = ops / 8 + 1;
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

	for (unsigned i = 0; i < threads; i++) {
		struct sp_cpu *c = &s.cpu[i];
		printf("cpu %u: ops %llu allocs %llu frees %llu enomem %llu swaps %llu offline %llu "
		       "exhaust %llu\n", i, (unsigned long long)c->ops, (unsigned long long)c->allocs,
		       (unsigned long long)c->frees, (unsigned long long)c->enomem,
		       (unsigned long long)c->swaps, (unsigned long long)c->offline,
		       (unsigned long long)c->exhaust_frames);
	}
	for (unsigned i = 0; i < threads; i++) {
		struct cairn_mag_cpu_stats st;
		cairn_mag_cpu_stats(cairn_fcache_mags(fc, 0), i, &st);
		printf("order-0 cache, cpu %u: hits %llu misses %llu exchanges %llu\n", i,
		       (unsigned long long)st.hits, (unsigned long long)st.misses,
		       (unsigned long long)st.exchanges);
	}
	cairn_fcache_destroy(fc);
	printf("percpu stress: %u threads, %u coming and going, seed %llu, errors %llu%s\n",
	       threads, churn, (unsigned long long)seed, (unsigned long long)errors,
	       plant ? " (planted fault: errors expected)" : "");
	if (plant)
		return errors ? 0 : 1;
	return errors ? 1 : 0;
}
