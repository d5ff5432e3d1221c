/* SPDX-License-Identifier: MIT */
/*
 * probe-frames-pair: the cost of one order-0 free+alloc pair on a chosen
 * frame, single thread, without the harness loop around it. The frame's
 * place decides where its bitmap word lies relative to its chunk entry (the
 * two are separate arrays), which is what this program is for: bench-frames'
 * repeat row always frees the last frame of the first half of memory.
 *
 *   probe-frames-pair [--mem MiB] [--chunk C] [--iters N] [--reps R]
 *
 * One region of --mem MiB (256); the frames of chunks [0, C] are allocated
 * (C defaults to the last chunk of the first half, the repeat row's frame),
 * then the last of them is freed and reallocated N times (300000), R times
 * (31). Prints the minimum over the R repetitions of thread-CPU ns per
 * pair, the least disturbed figure on a shared machine, and the page
 * offsets of the frame's word and chunk entry.
 */
#include "harness.h"

#include <cairn/frames.h>
#include <cairn/host.h>

#include "../core/frames_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PHYS_BASE (4ull << 30)

int main(int argc, char **argv)
{
	uint64_t mem = 256, chunk = ~0ull, iters = 300000, reps = 31;
	for (int i = 1; i + 1 < argc; i += 2) {
		uint64_t v = strtoull(argv[i + 1], NULL, 10);
		if (!strcmp(argv[i], "--mem"))
			mem = v;
		else if (!strcmp(argv[i], "--chunk"))
			chunk = v;
		else if (!strcmp(argv[i], "--iters"))
			iters = v;
		else if (!strcmp(argv[i], "--reps"))
			reps = v;
		else
			BENCH_CHECK(0, "usage: %s [--mem MiB] [--chunk C] [--iters N] "
				    "[--reps R]", argv[0]);
	}
	if (argc % 2 == 0)
		BENCH_CHECK(0, "%s: option without a value", argv[0]);
	uint64_t size = mem << 20, chunks = size >> (CHUNK_SHIFT + CAIRN_FRAME_SHIFT);
	if (chunk == ~0ull)
		chunk = chunks / 2 - 1;
	BENCH_CHECK(chunks >= 2 && chunk < chunks && iters && reps,
		    "need --mem of at least 4 MiB, --chunk below %llu",
		    (unsigned long long)chunks);

	BENCH_CHECK(cairn_host_init(1, PHYS_BASE, size) == 0, "cairn_host_init");
	BENCH_CHECK(cairn_host_cpu_register() >= 0, "no CPU slot");
	struct cairn_mem_range map = { PHYS_BASE, size };
	struct cairn_frames_config cfg = { .ncpus = 1 };
	cfg.meta_size = cairn_frames_meta_size(&map, 1, 1);
	cfg.meta = aligned_alloc(4096, (cfg.meta_size + 4095) & ~4095ull);
	struct cairn_frames *f;
	BENCH_CHECK(cfg.meta && cairn_frames_init(&f, &map, 1, &cfg) == 0,
		    "cairn_frames_init");

	cairn_phys_t b = 0;
	for (uint64_t i = 0; i < (chunk + 1) * CHUNK_FRAMES; i++)
		BENCH_CHECK(cairn_frames_alloc(f, 0, 0, &b) == 0, "fill");
	uint64_t frame = b >> CAIRN_FRAME_SHIFT;
	struct region *r = region_find(f, frame);
	uint64_t c = (frame >> CHUNK_SHIFT) - r->chunk0;
	unsigned wi = (unsigned)(frame % CHUNK_FRAMES) / WORD_FRAMES;

	double best = 1e30;
	for (uint64_t rep = 0; rep < reps; rep++) {
		uint64_t t0 = bench_thread_cpu_ns();
		for (uint64_t i = 0; i < iters; i++) {
			BENCH_CHECK(cairn_frames_free(f, b, 0) == 0, "free");
			BENCH_CHECK(cairn_frames_alloc(f, 0, 0, &b) == 0, "alloc");
		}
		double ns = (double)(bench_thread_cpu_ns() - t0) / (double)iters;
		if (ns < best)
			best = ns;
	}
	BENCH_CHECK(cairn_frames_validate(f) == 0, "validate");
	printf("chunk %llu word %u: entry at page offset %#03llx, word at %#03llx: "
	       "%.2f ns per pair (min of %llu x %llu)\n",
	       (unsigned long long)c, wi,
	       (unsigned long long)((uintptr_t)&r->chunk[c] & 4095),
	       (unsigned long long)((uintptr_t)&chunk_words(r, c)[wi] & 4095), best,
	       (unsigned long long)reps, (unsigned long long)iters);
	return 0;
}
