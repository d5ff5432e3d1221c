/* SPDX-License-Identifier: MIT */
/*
 * Blocks of frames held by the CPUs of a stress run, and the ownership
 * oracle that proves no two holders ever have the same frame. Shared by the
 * frames stress and the per-CPU cache stress. Freestanding.
 *
 * A holder marks each block it takes at both ends (first word = address ^
 * holder, last word its complement) and checks the marks before it gives
 * the block back: a block handed to two holders at once fails the oracle's
 * CAS, and one written by someone else fails a mark. The marks also leave
 * both ends of every block that was ever held dirty, so a zeroed
 * allocation that reads zero at both ends was zeroed by the allocator.
 * Holders 1..ncpus are CPUs (CPU i is holder i + 1), 0 is "free",
 * STRESS_MAILBOX_OWNER a mailbox slot. A holder writes the block
 * once more after the oracle let it go, just before the free: only the
 * allocator orders that write before the next holder's mark, so the
 * sanitizer builds see an allocator that hands a block on without
 * release/acquire (the oracle's own ordering covers the mark alone).
 */
#ifndef CAIRN_STRESS_BLOCKS_H
#define CAIRN_STRESS_BLOCKS_H

#include <stdbool.h>

#include "stress_util.h"

#define STRESS_HELD 512    /* blocks one CPU can hold */
#define STRESS_MAILBOX 64  /* slots through which CPUs swap blocks */
#define STRESS_MAX_CPUS 256
#define STRESS_MAILBOX_OWNER 0xffffffffu

enum stress_plant {
	STRESS_PLANT_NONE = 0,
	STRESS_PLANT_DOUBLE = 1, /* claim a block twice: the oracle must fail the run */
};

struct stress_held {
	cairn_phys_t phys;
	unsigned order;
};

/* One CPU's (or one worker thread's) state: caller-provided memory. */
struct stress_cpu {
	struct stress_held held[STRESS_HELD];
	unsigned nheld;
	uint64_t rng;
	uint64_t ops, allocs, frees, enomem, swaps, offline, exhaust_frames;
};

/* What the CPUs of one run share. */
struct stress_blocks {
	/* set by the caller */
	_Atomic uint32_t *owner;   /* the oracle: one word per frame, zeroed */
	uint64_t oracle_first;     /* first frame number the oracle covers */
	uint64_t oracle_frames;
	/* shared state, zeroed by stress_blocks_init */
	_Atomic uint64_t errors;
	_Atomic uint64_t mailbox[STRESS_MAILBOX];
};

void stress_blocks_init(struct stress_blocks *b);

/* A fresh CPU state whose generator starts at `rng`. */
void stress_cpu_init(struct stress_cpu *c, uint64_t rng);

/* Count an error and report it through the port. */
void stress_fail(struct stress_blocks *b, int err, const char *what, uint64_t x, uint64_t y);

/* Move every frame of a block in the oracle from holder `from` to `to`;
 * false (and the error counted) if any frame was not `from`'s. */
bool stress_move(struct stress_blocks *b, cairn_phys_t phys, unsigned order, uint32_t from,
		 uint32_t to);

/* CPU `me` takes a block it was just given (the allocator said it is free). */
void stress_take(struct stress_blocks *b, struct stress_cpu *c, unsigned me, cairn_phys_t p,
		 unsigned order);

/* CPU `me` lets go of its i-th block: *h is the block, to be freed by the
 * caller if this returns true (mark intact and the oracle agreed). */
bool stress_release(struct stress_blocks *b, struct stress_cpu *c, unsigned me, unsigned i,
		    struct stress_held *h);

/* Leave a random held block in a random mailbox slot and take whatever was
 * there: the block will most likely be freed on another CPU. */
void stress_swap(struct stress_blocks *b, struct stress_cpu *c, unsigned me);

/* The planted fault: CPU 0 claims a block it already holds, once. */
void stress_plant(struct stress_blocks *b, struct stress_cpu *c, unsigned me, unsigned plant);

/* The last 64-bit word of a block (the complement mark's place). */
static inline uint64_t *stress_last_word(cairn_phys_t p, unsigned order)
{
	return (uint64_t *)cairn_port_phys_to_virt(p + (CAIRN_FRAME_SIZE << order) - 8);
}

/* Whether a CAIRN_F_ZERO block reads zero where holders leave marks (both
 * ends) and in its second word. */
static inline bool stress_zeroed(cairn_phys_t p, unsigned order)
{
	const uint64_t *w = cairn_port_phys_to_virt(p);
	return !(w[0] | w[1] | *stress_last_word(p, order));
}

/* The area (CAIRN_F_*) a frame lies in. */
static inline unsigned stress_area_of(cairn_phys_t p)
{
	return p < (16ull << 20) ? CAIRN_F_LOW16M : p < (4096ull << 20) ? CAIRN_F_LOW4G : CAIRN_F_HIGH;
}

/* Free frames of every area. */
uint64_t stress_free_frames(struct cairn_frames *f);

/* Take the blocks left in the mailbox (while c has room): a region's
 * removal waits for those of its range. */
void stress_mailbox_take(struct stress_blocks *b, struct stress_cpu *c, unsigned me);

/* After the run: every block left in the mailbox goes back through `give`. */
void stress_mailbox_empty(struct stress_blocks *b,
			  int (*give)(void *ctx, cairn_phys_t phys, unsigned order), void *ctx);

#endif /* CAIRN_STRESS_BLOCKS_H */
