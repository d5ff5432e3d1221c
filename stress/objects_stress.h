/* SPDX-License-Identifier: MIT */
/*
 * The objects stress, shared by the host stress test and the test kernel.
 * Freestanding: it uses only the port and the cairn API.
 *
 * Every participating CPU runs stress_objects_cpu() at once on one shared
 * struct stress_objects: random allocations of every size class, large
 * blocks, aligned requests, calloc and realloc; objects handed between CPUs
 * through per-CPU inboxes so that many frees are remote; CPUs going offline
 * and online in the middle. Each round opens with a hand-off: every CPU
 * allocates s->handoff objects for its neighbour (another CPU each round)
 * while freeing the ones its own neighbour allocates for it, so every CPU
 * posts remote frees to a heap whose CPU is allocating, and collects the
 * messages of another CPU's frees at the same time. The ownership oracle is one atomic bit per 16-byte
 * granule: an object's first granule is claimed when cairn hands it out and
 * released before it is freed, so an object handed to two holders fails the
 * claim; every object carries its tag and size at both ends (small ones are
 * filled), so an overlap is caught when either holder checks, and a realloc
 * must bring the stamp along up to the smaller of the two sizes. At the end
 * of a run everything is freed and every CPU goes offline: then no slab and
 * no large block may be left (nothing leaked, no free lost), and validate
 * must pass.
 */
#ifndef CAIRN_OBJECTS_STRESS_H
#define CAIRN_OBJECTS_STRESS_H

#include <cairn/objects.h>

#include <stdatomic.h>

#include "stress_util.h"

#define STRESS_OBJ_HELD 256
#define STRESS_OBJ_INBOX 64 /* slots per CPU taking part */
#define STRESS_OBJ_MAX_CPUS 256

enum stress_obj_plant {
	STRESS_OBJ_PLANT_NONE = 0,
	STRESS_OBJ_PLANT_DOUBLE = 1, /* hand one object to two holders: must fail */
};

struct stress_obj {
	uintptr_t p;
	size_t size;
};

struct stress_obj_cpu {
	struct stress_obj held[STRESS_OBJ_HELD];
	unsigned nheld;
	uint64_t rng, seq;
	/* remote: objects taken from another CPU's hands (allocated there);
	 * handed: objects allocated for the neighbour in the hand-off */
	uint64_t ops, allocs, frees, remote, handed, reallocs, large, aligned, offlines, enomem;
};

struct stress_objects {
	/* set by the caller */
	struct cairn_objects *o;
	_Atomic uint64_t *oracle;  /* zeroed: one bit per 16 bytes from oracle_base */
	uintptr_t oracle_base;
	uint64_t oracle_granules;
	/* Optional: the same for large objects outside the identity map
	 * (an arena of mapped address space); NULL: none. */
	_Atomic uint64_t *oracle_va;
	uintptr_t oracle_va_base;
	uint64_t oracle_va_granules;
	/* Optional: the frame allocator under the instance. A NULL from
	 * cairn while it still has a free block the request would fit in
	 * fails the run; NULL: ENOMEM is only counted. */
	struct cairn_frames *frames;
	unsigned ncpus;            /* CPUs taking part in a round (barrier count) */
	uint64_t ops;              /* per CPU per round */
	uint64_t seed;
	unsigned offline_every;    /* ops between offline/online cycles; 0 = never */
	uint64_t handoff;          /* objects per CPU per round handed to the neighbour */
	unsigned plant;
	/* Optional: called while a CPU waits at a barrier (answer the drain
	 * requests of the caches in front of the instance). */
	void (*idle)(void *arg);
	void *idle_arg;
	struct stress_obj_cpu *cpu; /* one per CPU index in use */
	/* shared, zeroed by stress_objects_init */
	struct stress_barrier barrier;
	_Atomic uint64_t errors;
	/* A round seats its CPUs 0..ncpus-1 in the order they come (CPU
	 * indices need not be dense); seat i's inbox is inbox[i], and fed[i]
	 * is the last round (barrier generation) whose hand-off to it ended. */
	_Atomic unsigned seats;
	_Atomic uint32_t fed[STRESS_OBJ_MAX_CPUS];
	_Atomic uintptr_t inbox[STRESS_OBJ_MAX_CPUS][STRESS_OBJ_INBOX];
};

void stress_objects_init(struct stress_objects *s);

/* One round on CPU `cpu` (registered/online), with s->ncpus CPUs at once:
 * the hand-off, mixed operations, then everything this CPU holds is freed
 * (the inboxes keep some for the next round). Returns errors so far. */
uint64_t stress_objects_round(struct stress_objects *s, unsigned cpu);

/* After the last round, on one CPU: free what the inboxes hold. */
void stress_objects_drain_inboxes(struct stress_objects *s);

/* With every CPU offline (nothing in flight): no slab, no large block, no
 * object left, validate passes. Returns errors so far. */
uint64_t stress_objects_check_empty(struct stress_objects *s);

#endif /* CAIRN_OBJECTS_STRESS_H */
