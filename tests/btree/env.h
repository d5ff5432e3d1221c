/* SPDX-License-Identifier: MIT */
/*
 * Shared set-up for the btree and arena tests: simulated physical memory,
 * a frames instance for tree nodes, a random generator, and frame
 * exhaustion on demand (to make node allocation fail for real).
 */
#ifndef CAIRN_TEST_BTREE_ENV_H
#define CAIRN_TEST_BTREE_ENV_H

#include <cairn/arena.h>
#include <cairn/btree.h>
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdlib.h>

#include "../check.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)

static struct cairn_frames *env_frames;

/* Simulated memory of `mib` MiB (one region from 1 MiB up). */
static inline struct cairn_frames *env_init(unsigned cpus, unsigned mib)
{
	REQUIRE(cairn_host_init(cpus, 0, (uint64_t)mib * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, (uint64_t)(mib - 1) * MiB } };
	struct cairn_frames_config cfg = { .ncpus = cpus };
	REQUIRE(cairn_frames_init(&env_frames, map, 1, &cfg) == 0);
	return env_frames;
}

/* A window of host address space for mapped spans (64 MiB), reserved
 * once: under TSan, fixed addresses may lie outside what it lets a
 * program map. */
static inline uint64_t env_va_window(void)
{
	static uint64_t base;
	if (!base)
		base = cairn_host_va_window(64 * MiB, 64 * MiB);
	REQUIRE(base != 0);
	return base;
}

static inline uint64_t env_free_frames(void)
{
	return frames_free_total(env_frames);
}

/* Take every free frame away, so a node allocation fails, and give them
 * back. */
static cairn_phys_t *drained;
static size_t ndrained;

static inline void env_drain(void)
{
	static size_t cap;
	if (!drained) {
		cap = env_free_frames() + 4096;
		drained = malloc(cap * sizeof(*drained));
	}
	size_t got;
	while (ndrained < cap &&
	       (got = cairn_frames_alloc_bulk(env_frames, 0, drained + ndrained,
					      cap - ndrained)) > 0)
		ndrained += got;
	REQUIRE(env_free_frames() == 0);
}

static inline void env_undrain(void)
{
	if (ndrained)
		REQUIRE(cairn_frames_free_bulk(env_frames, drained, ndrained,
					       NULL) == 0);
	ndrained = 0;
}

static inline uint64_t splitmix(uint64_t *s)
{
	return splitmix64(s);
}

#endif
