/* SPDX-License-Identifier: MIT */
/*
 * probe-frames-fallback: the cost of an allocation that falls from a full
 * area to the next, single thread. A request of any area tries the area
 * above 4 GiB first; once that area is used up, every such request pays
 * for finding it so before it is served below 4 GiB.
 *
 *   probe-frames-fallback [--high MiB] [--count N] [--reps R]
 *
 * Two regions: 256 MiB below 4 GiB and --high MiB (1024) above it. Every
 * frame above 4 GiB is allocated; then N order-0 frames (4096) of any area
 * are allocated one at a time and freed, R times (15). Prints the minimum
 * over the repetitions of thread-CPU ns per allocation and per free.
 */
#include "harness.h"

#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOW_BASE (1ull << 30)
#define LOW_SIZE (256ull << 20)
#define HIGH_BASE (4ull << 30)

int main(int argc, char **argv)
{
	uint64_t high = 1024, count = 4096, reps = 15;
	for (int i = 1; i + 1 < argc; i += 2) {
		uint64_t v = strtoull(argv[i + 1], NULL, 10);
		if (!strcmp(argv[i], "--high"))
			high = v;
		else if (!strcmp(argv[i], "--count"))
			count = v;
		else if (!strcmp(argv[i], "--reps"))
			reps = v;
		else
			BENCH_CHECK(0, "usage: %s [--high MiB] [--count N] [--reps R]", argv[0]);
	}
	if (argc % 2 == 0)
		BENCH_CHECK(0, "%s: option without a value", argv[0]);
	uint64_t high_size = high << 20;
	BENCH_CHECK(high >= 4 && count && count <= LOW_SIZE >> CAIRN_FRAME_SHIFT && reps,
		    "need --high of at least 4 MiB, --count at most %llu",
		    (unsigned long long)(LOW_SIZE >> CAIRN_FRAME_SHIFT));

	/* The simulated memory spans both regions; the gap stays untouched. */
	BENCH_CHECK(cairn_host_init(1, LOW_BASE, HIGH_BASE + high_size - LOW_BASE) == 0,
		    "cairn_host_init");
	BENCH_CHECK(cairn_host_cpu_register() >= 0, "no CPU slot");
	struct cairn_mem_range map[] = { { LOW_BASE, LOW_SIZE }, { HIGH_BASE, high_size } };
	struct cairn_frames_config cfg = { .ncpus = 1 };
	cfg.meta_size = cairn_frames_meta_size(map, 2, 1);
	cfg.meta = aligned_alloc(4096, (cfg.meta_size + 4095) & ~4095ull);
	struct cairn_frames *f;
	BENCH_CHECK(cfg.meta && cairn_frames_init(&f, map, 2, &cfg) == 0, "cairn_frames_init");

	/* The area above 4 GiB, all of it: 2 MiB blocks, then what is left. */
	cairn_phys_t b;
	while (cairn_frames_alloc(f, CAIRN_HUGE_ORDER, CAIRN_F_HIGH, &b) == 0)
		;
	while (cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &b) == 0)
		;

	cairn_phys_t *got = malloc(count * sizeof(*got));
	BENCH_CHECK(got, "malloc");
	double best_alloc = 1e30, best_free = 1e30;
	for (uint64_t rep = 0; rep < reps; rep++) {
		uint64_t t0 = bench_thread_cpu_ns();
		for (uint64_t i = 0; i < count; i++) {
			BENCH_CHECK(cairn_frames_alloc(f, 0, 0, &got[i]) == 0, "alloc");
			BENCH_CHECK(got[i] < HIGH_BASE, "a frame above 4 GiB was left");
		}
		uint64_t t1 = bench_thread_cpu_ns();
		for (uint64_t i = 0; i < count; i++)
			BENCH_CHECK(cairn_frames_free(f, got[i], 0) == 0, "free");
		uint64_t t2 = bench_thread_cpu_ns();
		double a = (double)(t1 - t0) / (double)count, fr = (double)(t2 - t1) / (double)count;
		best_alloc = a < best_alloc ? a : best_alloc;
		best_free = fr < best_free ? fr : best_free;
	}
	BENCH_CHECK(cairn_frames_validate(f) == 0, "validate");
	printf("above 4 GiB: %llu MiB, full; %llu frames allocated below it and freed, "
	       "min of %llu: alloc %.1f ns, free %.1f ns (thread CPU)\n",
	       (unsigned long long)high, (unsigned long long)count, (unsigned long long)reps,
	       best_alloc, best_free);
	free(got);
	return 0;
}
