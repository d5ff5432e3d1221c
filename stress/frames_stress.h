/* SPDX-License-Identifier: MIT */
/*
 * The stress suite, shared by the host stress tests and the test kernel.
 * Freestanding: it uses only the port and the cairn API.
 *
 * Every CPU runs stress_frames_cpu() at once on one shared struct
 * stress_frames. An ownership oracle (one atomic owner word per frame)
 * catches any frame handed to two holders; phases of memory exhaustion check
 * that ENOMEM means empty (no CPU gets a frame once an ENOMEM of the phase
 * has returned, and none is free when all have stopped); at the end every
 * frame must be free again and validate() must pass.
 */
#ifndef CAIRN_FRAMES_STRESS_H
#define CAIRN_FRAMES_STRESS_H

#include <cairn/frames.h>

#include "blocks.h"

struct stress_frames {
	/* set by the caller */
	struct cairn_frames *f;
	struct stress_blocks blocks; /* its owner and oracle_* fields */
	unsigned ncpus;
	uint64_t ops;              /* per CPU */
	uint64_t seed;
	unsigned phases;           /* mixed phases, each followed by exhaustion */
	unsigned plant;
	struct stress_cpu *cpu;    /* ncpus entries */
	/* shared state, set up by stress_frames_init */
	struct stress_barrier barrier;
	uint64_t free_at_start;
	_Atomic int enomem_seen; /* an exhaustion phase's ENOMEM has returned */
};

/* Prepare the shared state (call once, before the CPUs start). */
void stress_frames_init(struct stress_frames *s);

/* Run on every CPU in [0, ncpus) at once; returns the number of errors seen
 * by the whole run (the same on every CPU once all return). */
uint64_t stress_frames_cpu(struct stress_frames *s, unsigned cpu);

#endif /* CAIRN_FRAMES_STRESS_H */
