/* SPDX-License-Identifier: MIT */
/*
 * The per-CPU cache stress, shared by the host stress test and the test
 * kernel. Freestanding: it uses only the port and the cairn API.
 *
 * Every CPU runs stress_percpu_cpu() at once on one shared struct
 * stress_percpu: random mixes of cached and passed-through orders and
 * flags through a frame cache, blocks swapped between CPUs (so most frees
 * happen on another CPU than the allocation), CPUs going offline and coming
 * back (draining their own slot), drains of everything, and phases of
 * exhaustion: all CPUs allocate until ENOMEM, after which no frame may be
 * free or cached anywhere. An ownership oracle (one atomic owner word per
 * frame) catches a frame handed to two holders. At the end every frame must
 * be free again and validate() must pass.
 *
 * stress_percpu_worker() is the mixed phase alone, without barriers, for
 * hosts whose threads come and go: a thread takes any free CPU slot, works,
 * gives back what it holds, drains its slot and leaves.
 */
#ifndef CAIRN_STRESS_PERCPU_H
#define CAIRN_STRESS_PERCPU_H

#include <cairn/frame_cache.h>
#include <cairn/frames.h>

#include "blocks.h"

#define SP_HELD 256 /* blocks one CPU holds at most in the mixed phase */

struct stress_percpu {
	/* set by the caller */
	struct cairn_frames *f;
	struct cairn_fcache *fc;
	struct stress_blocks blocks; /* its owner and oracle_* fields */
	unsigned ncpus;            /* CPUs running stress_percpu_cpu */
	uint64_t ops;              /* per CPU */
	uint64_t seed;
	unsigned phases;           /* mixed phases, each followed by exhaustion */
	unsigned plant;            /* enum stress_plant */
	struct stress_cpu *cpu;    /* ncpus entries */
	/* shared, set up by stress_percpu_init */
	struct stress_barrier barrier;
	uint64_t free_at_start;
};

/* Prepare the shared state (once, before any CPU starts). */
void stress_percpu_init(struct stress_percpu *s);

/* Run on every CPU in [0, ncpus) at once; returns the run's error count. */
uint64_t stress_percpu_cpu(struct stress_percpu *s, unsigned cpu);

/* The mixed phase for `ops` operations on whatever CPU slot the caller runs
 * as (`me` names the holder in the oracle, unique among running workers),
 * then everything back and the slot drained. */
void stress_percpu_worker(struct stress_percpu *s, struct stress_cpu *c, unsigned me,
			  uint64_t ops);

/* After every CPU and worker finished: empty the mailbox, drain the cache,
 * check every frame is free and validate() passes. Returns the error count. */
uint64_t stress_percpu_finish(struct stress_percpu *s);

#endif /* CAIRN_STRESS_PERCPU_H */
