/* SPDX-License-Identifier: MIT */
/*
 * What the host drivers of the frames stress and the per-CPU cache stress
 * share: their common arguments, the memory they run on and the oracle over
 * it, the per-CPU report and the verdict.
 * usage: DRIVER threads ops-per-thread MiB seed [plant] ...
 */
#ifndef CAIRN_TESTS_STRESS_HOST_H
#define CAIRN_TESTS_STRESS_HOST_H

#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdio.h>
#include <stdlib.h>

#include "blocks.h"

#define MiB (1024ull * 1024)

struct stress_args {
	unsigned threads, plant;
	uint64_t ops, mib, seed;
};

/* 0, or 2 (the usage exit code) for a bad thread count. */
static inline int stress_args_parse(struct stress_args *a, int argc, char **argv)
{
	a->threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	a->ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000;
	a->mib = argc > 3 ? strtoull(argv[3], NULL, 0) : 64;
	a->seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	a->plant = argc > 5 ? (unsigned)atoi(argv[5]) : STRESS_PLANT_NONE;
	return a->threads == 0 || a->threads > STRESS_MAX_CPUS ? 2 : 0;
}

/* A memory map with holes, across the 16 MiB line and above 4 GiB, the
 * frame allocator's metadata carved from it, and an oracle over all of it. */
static inline int stress_host_memory(const struct stress_args *a, struct cairn_frames **f,
				     struct stress_blocks *b)
{
	uint64_t hi = a->mib > 32 ? a->mib - 32 : 8;
	struct cairn_mem_range map[] = {
		{ 1 * MiB, 7 * MiB },
		{ 9 * MiB, 23 * MiB },
		{ 4096 * MiB, hi * MiB },
	};
	if (cairn_host_init(a->threads, 0, (4096 + hi) * MiB) ||
	    cairn_host_hole(8 * MiB, 1 * MiB))
		return -1;
	struct cairn_frames_config cfg = { .ncpus = a->threads };
	if (cairn_frames_init(f, map, 3, &cfg))
		return -1;
	b->oracle_first = (1 * MiB) >> CAIRN_FRAME_SHIFT;
	b->oracle_frames = ((4096 + hi) * MiB >> CAIRN_FRAME_SHIFT) - b->oracle_first;
	b->owner = calloc(b->oracle_frames, sizeof(*b->owner));
	if (!b->owner)
		return -1;
	if (a->plant)
		cairn_host_reports_quiet(1);
	return 0;
}

static inline void stress_print_cpu(unsigned i, const struct stress_cpu *c)
{
	printf("cpu %u: ops %llu allocs %llu frees %llu enomem %llu swaps %llu offline %llu "
	       "exhaust %llu\n", i, (unsigned long long)c->ops, (unsigned long long)c->allocs,
	       (unsigned long long)c->frees, (unsigned long long)c->enomem,
	       (unsigned long long)c->swaps, (unsigned long long)c->offline,
	       (unsigned long long)c->exhaust_frames);
}

/* Errors of a run without a planted fault include every report the library
 * made: cairn reports only misuse or broken invariants, and the stress
 * misuses nothing, so a report the run survived is still a failure (the
 * test kernel counts them the same way). Every stress error is a report
 * too (stress_fail), already in `errors`: only the rest are added. */
static inline uint64_t stress_reports_unplanned(unsigned plant, uint64_t errors)
{
	uint64_t all = plant ? 0 : cairn_host_reports();
	uint64_t n = all > errors ? all - errors : 0;
	if (n)
		printf("%llu cairn reports in a run that provoked none\n", (unsigned long long)n);
	return n;
}

/* The exit code: 0 when the run saw no error; with a planted fault the run
 * must have failed, so the verdict is inverted (the test proves the oracle
 * catches it). */
static inline int stress_verdict(const struct stress_args *a, uint64_t errors)
{
	errors += stress_reports_unplanned(a->plant, errors);
	printf("errors %llu%s\n", (unsigned long long)errors,
	       a->plant ? " (planted fault: errors expected)" : "");
	return a->plant ? !errors : !!errors;
}

#endif /* CAIRN_TESTS_STRESS_HOST_H */
