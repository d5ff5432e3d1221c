/* SPDX-License-Identifier: MIT */
/*
 * Host driver of the frames stress suite: threads registered as CPUs.
 * usage: frames_stress [threads] [ops per thread] [MiB] [seed] [plant]
 * Exits 0 only if the suite saw no error (with plant=1 the suite must fail,
 * and this driver inverts the verdict so the test proves the oracle works).
 */
#include <pthread.h>

#include "frames_stress.h"
#include "stress_host.h"

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
	struct stress_args a;
	if (stress_args_parse(&a, argc, argv))
		return 2;
	if (stress_host_memory(&a, &s.f, &s.blocks))
		return 2;
	s.ncpus = a.threads;
	s.ops = a.ops;
	s.seed = a.seed;
	s.phases = 2;
	s.plant = a.plant;
	s.cpu = calloc(a.threads, sizeof(*s.cpu));
	if (!s.cpu)
		return 2;
	stress_frames_init(&s);

	pthread_t t[STRESS_MAX_CPUS];
	for (unsigned i = 0; i < a.threads; i++)
		pthread_create(&t[i], NULL, cpu_main, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < a.threads; i++)
		pthread_join(t[i], NULL);

	for (unsigned i = 0; i < a.threads; i++)
		stress_print_cpu(i, &s.cpu[i]);
	printf("frames stress: %u threads, seed %llu: ", a.threads, (unsigned long long)a.seed);
	return stress_verdict(&a, atomic_load(&s.blocks.errors));
}
