/* SPDX-License-Identifier: MIT */
/*
 * The stress suite, shared by the host stress tests and the test kernel.
 * Freestanding: it uses only the port and the cairn API.
 *
 * Every CPU runs stress_frames_cpu() at once on one shared struct
 * stress_frames. An ownership oracle (one atomic owner word per frame)
 * catches any frame handed to two holders; phases of memory exhaustion check
 * that ENOMEM means empty; at the end every frame must be free again and
 * validate() must pass.
 */
#ifndef CAIRN_STRESS_H
#define CAIRN_STRESS_H

#include <cairn/frames.h>

#include <stdatomic.h>

#include "stress_util.h"

#define STRESS_HELD 512     /* blocks a CPU holds at most in the mixed phase */
#define STRESS_MAILBOX 64   /* slots through which CPUs swap blocks */
#define STRESS_MAX_CPUS 256

enum stress_plant {
	STRESS_PLANT_NONE = 0,
	STRESS_PLANT_DOUBLE = 1, /* claim a block twice: the oracle must fail the run */
};

struct stress_held {
	cairn_phys_t phys;
	unsigned order;
};

/* Per-CPU state: caller-provided memory, one per CPU. */
struct stress_cpu {
	struct stress_held held[STRESS_HELD];
	unsigned nheld;
	uint64_t rng;
	uint64_t ops, allocs, frees, enomem, swaps, exhaust_frames;
};

struct stress_frames {
	/* set by the caller */
	struct cairn_frames *f;
	_Atomic uint32_t *owner;   /* oracle: one word per frame, zeroed */
	uint64_t oracle_first;     /* first frame number the oracle covers */
	uint64_t oracle_frames;
	unsigned ncpus;
	uint64_t ops;              /* per CPU */
	uint64_t seed;
	unsigned phases;           /* mixed phases, each followed by exhaustion */
	unsigned plant;
	struct stress_cpu *cpu;    /* ncpus entries */
	/* shared state, zero-initialised by stress_frames_init */
	struct stress_barrier barrier;
	_Atomic uint64_t errors;
	_Atomic uint64_t mailbox[STRESS_MAILBOX];
	uint64_t free_at_start;
};

/* Prepare the shared state (call once, before the CPUs start). */
void stress_frames_init(struct stress_frames *s);

/* Run on every CPU in [0, ncpus) at once; returns the number of errors seen
 * by the whole run (the same on every CPU once all return). */
uint64_t stress_frames_cpu(struct stress_frames *s, unsigned cpu);

#endif /* CAIRN_STRESS_H */
