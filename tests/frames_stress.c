/* SPDX-License-Identifier: MIT */
/*
 * Host driver of the frames stress suite: threads registered as CPUs.
 * usage: frames_stress [threads] [ops per thread] [MiB] [seed] [plant]
 * Exits 0 only if the suite saw no error (with plant=1 the suite must fail,
 * and this driver inverts the verdict so the test proves the oracle works).
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "stress.h"

#define MiB (1024ull * 1024)

static struct stress_frames s;

static void *cpu_main(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	if (cairn_host_cpu_bind(cpu)) {
		fprintf(stderr, "cannot bind cpu %u\n", cpu);
		exit(2);
	}
	stress_frames_cpu(&s, cpu);
	cairn_host_cpu_unregister();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000;
	uint64_t mib = argc > 3 ? strtoull(argv[3], NULL, 0) : 64;
	uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	unsigned plant = argc > 5 ? (unsigned)atoi(argv[5]) : 0;
	if (threads == 0 || threads > STRESS_MAX_CPUS)
		return 2;

	/* a map with holes, across the 16 MiB line and above 4 GiB */
	uint64_t hi = mib > 32 ? mib - 32 : 8;
	struct cairn_mem_range map[] = {
		{ 1 * MiB, 7 * MiB },
		{ 9 * MiB, 23 * MiB },
		{ 4096 * MiB, hi * MiB },
	};
	if (cairn_host_init(threads, 0, (4096 + hi) * MiB) ||
	    cairn_host_hole(8 * MiB, 1 * MiB))
		return 2;
	struct cairn_frames *f;
	struct cairn_frames_config cfg = { .ncpus = threads };
	if (cairn_frames_init(&f, map, 3, &cfg)) /* metadata carved */
		return 2;

	s.f = f;
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
	stress_frames_init(&s);

	pthread_t t[STRESS_MAX_CPUS];
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, cpu_main, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);

	uint64_t errors = atomic_load(&s.errors);
	for (unsigned i = 0; i < threads; i++) {
		struct stress_cpu *c = &s.cpu[i];
		printf("cpu %u: ops %llu allocs %llu frees %llu enomem %llu swaps %llu exhaust %llu\n",
		       i, (unsigned long long)c->ops, (unsigned long long)c->allocs,
		       (unsigned long long)c->frees, (unsigned long long)c->enomem,
		       (unsigned long long)c->swaps, (unsigned long long)c->exhaust_frames);
	}
	printf("frames stress: %u threads, seed %llu, errors %llu%s\n", threads,
	       (unsigned long long)seed, (unsigned long long)errors,
	       plant ? " (planted fault: errors expected)" : "");
	if (plant)
		return errors ? 0 : 1;
	return errors ? 1 : 0;
}
