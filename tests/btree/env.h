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

static inline uint64_t env_free_frames(void)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(env_frames, &st);
	uint64_t n = 0;
	for (int a = 0; a < CAIRN_AREAS; a++)
		n += st.free_frames[a];
	return n;
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
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#endif
