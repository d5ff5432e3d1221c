/* SPDX-License-Identifier: MIT */
/* Host set-up shared by the objects tests: simulated memory, frames, objects. */
#ifndef CAIRN_TEST_OBJTEST_H
#define CAIRN_TEST_OBJTEST_H

#include <cairn/arena.h>
#include <cairn/frames.h>
#include <cairn/host.h>
#include <cairn/objects.h>
#include <cairn/quantum_cache.h>

#include <stdio.h>
#include <stdlib.h>
#include "../frames_total.h"

#define MiB (1024ull * 1024)

static struct cairn_frames *objtest_frames;
static uint64_t objtest_mem;

/* Memory [0, mib MiB), frames over [1 MiB, mib MiB), ncpus CPU slots. */
static inline void objtest_init(unsigned ncpus, uint64_t mib)
{
	objtest_mem = mib * MiB;
	if (cairn_host_init(ncpus, 0, objtest_mem)) {
		fprintf(stderr, "cairn_host_init failed\n");
		exit(2);
	}
	struct cairn_mem_range map[] = { { 1 * MiB, (mib - 1) * MiB } };
	struct cairn_frames_config cfg = { .ncpus = ncpus };
	if (cairn_frames_init(&objtest_frames, map, 1, &cfg)) {
		fprintf(stderr, "cairn_frames_init failed\n");
		exit(2);
	}
}

/* Where large objects come from: buddy blocks (no arena), or a range arena
 * importing frames in place (direct) or mapped at addresses of a VA arena,
 * optionally with a quantum cache in front, or in place with the heaps'
 * large caches and the instance's released blocks (caches). */
enum objtest_large { OBJTEST_BUDDY, OBJTEST_DIRECT, OBJTEST_MAPPED, OBJTEST_QCACHE,
		     OBJTEST_CACHES };

static enum objtest_large objtest_mode;
static struct cairn_arena objtest_va, objtest_arena;
static struct cairn_frames_source objtest_fs;
static struct cairn_arena_source objtest_src;
static struct cairn_qcache *objtest_qc;
static uint64_t objtest_va_base; /* mapped mode: the VA arena's window */
/* The heaps' large caches and the instance's released blocks (0: none). */
static unsigned objtest_large_cache_kib, objtest_released_kib;
/* large_max of the instances with an arena (0: unknown). */
static uint64_t objtest_large_max;

/* The VA arena's window (mapped mode): 4 GiB of host address space,
 * reserved at run time (under TSan, fixed addresses may lie outside what
 * it lets a program map). */
#define OBJTEST_VA_SIZE (4ull << 30)

static inline void objtest_large_init(enum objtest_large mode, uint64_t import_quantum)
{
	if (mode == OBJTEST_CACHES) {
		mode = OBJTEST_DIRECT;
		objtest_large_cache_kib = 512;
		objtest_released_kib = 16 << 10;
	}
	objtest_mode = mode;
	if (mode == OBJTEST_BUDDY)
		return;
	struct cairn_arena_config vc = { .quantum = 4096 };
	if (mode == OBJTEST_MAPPED)
		objtest_va_base = cairn_host_va_window(OBJTEST_VA_SIZE, 1ull << 30);
	if (mode == OBJTEST_MAPPED &&
	    (!objtest_va_base ||
	     cairn_arena_create(&objtest_va, objtest_frames, objtest_va_base,
				OBJTEST_VA_SIZE, &vc))) {
		fprintf(stderr, "va arena: create failed\n");
		exit(2);
	}
	objtest_fs = (struct cairn_frames_source){
		.frames = objtest_frames, .va = mode == OBJTEST_MAPPED ? &objtest_va : NULL };
	cairn_arena_source_frames(&objtest_src, &objtest_fs);
	struct cairn_arena_config ac = { .quantum = 4096, .source = &objtest_src,
					 .import_quantum = import_quantum };
	/* Large sizes are 17..64 pages: few of each per CPU, and a drainer
	 * does not wait long for a CPU that is busy elsewhere. */
	struct cairn_qcache_config qc = { .max_quanta = 64, .mag_size = 4, .depot_full = 4,
					  .depot_empty = 4, .drain_wait = 1u << 16 };
	if (cairn_arena_create(&objtest_arena, objtest_frames, 0, 0, &ac) ||
	    (mode == OBJTEST_QCACHE && cairn_qcache_create(&objtest_qc, &objtest_arena,
							   objtest_frames, &qc))) {
		fprintf(stderr, "large arena: create failed\n");
		exit(2);
	}
}

/* After the objects instances are gone. */
static inline void objtest_large_fini(void)
{
	if (objtest_qc)
		cairn_qcache_destroy(objtest_qc);
	objtest_qc = NULL;
	if (objtest_mode != OBJTEST_BUDDY)
		cairn_arena_destroy(&objtest_arena);
	if (objtest_mode == OBJTEST_MAPPED)
		cairn_arena_destroy(&objtest_va);
	objtest_mode = OBJTEST_BUDDY;
	objtest_large_cache_kib = objtest_released_kib = 0;
}

/* Is p the start of a large object? */
static inline bool objtest_is_large(struct cairn_objects *o, const void *p)
{
	uint64_t s, n, c;
	if (objtest_mode == OBJTEST_BUDDY)
		return cairn_objects_usable_size(o, p) > CAIRN_OBJ_SMALL_MAX;
	return cairn_arena_lookup(&objtest_arena, (uintptr_t)p, &s, &n, &c) == 0 &&
	       s == (uintptr_t)p;
}

static inline struct cairn_objects *objtest_create_with(enum cairn_obj_harden harden,
							struct cairn_fcache *fc)
{
	struct cairn_objects *o;
	struct cairn_objects_config cfg = {
		.frames = objtest_frames, .fcache = fc, .phys_base = 0, .phys_limit = objtest_mem,
		.harden = harden, .seed = 42,
		.large_arena = objtest_mode != OBJTEST_BUDDY ? &objtest_arena : NULL,
		.large_qcache = objtest_qc,
		.large_cache_kib = objtest_mode != OBJTEST_BUDDY ? objtest_large_cache_kib : 0,
		.released_kib = objtest_released_kib,
		.large_max = objtest_mode != OBJTEST_BUDDY ? objtest_large_max : 0,
	};
	if (cairn_objects_create(&o, &cfg)) {
		fprintf(stderr, "cairn_objects_create failed\n");
		exit(2);
	}
	return o;
}

static inline struct cairn_objects *objtest_create(enum cairn_obj_harden harden)
{
	return objtest_create_with(harden, NULL);
}

static inline uint64_t objtest_free_frames(void)
{
	return frames_free_total(objtest_frames);
}

#endif
