/* SPDX-License-Identifier: MIT */
/*
 * The inside of a magazine cache, and the rules that hold for it.
 *
 * A magazine is one frame: a header and up to cap items, item[0..n). Every
 * magazine has an id (its index in the cache's tables) and is, at any time,
 * held by exactly one of: a CPU slot (as loaded or prev), one depot stack
 * (full, empty; spare holds ids without a frame), or a CPU/drainer that
 * popped it and is moving it. Only its holder reads or writes its header
 * and items; holders change only through the depot stacks (release push,
 * acquire pop, see depot.h) or through the drain handshake below, each of
 * which orders the old holder's writes before the new holder's reads.
 *
 * Items: everything the source handed out is exactly one of: in the
 * caller's hands, in one magazine, or back in the source. The cache moves
 * items only between those places and never copies one without removing it
 * where it was.
 *
 * Bound: a CPU slot holds two magazines, the full stack at most depot_full,
 * so the items cached are at most (2 * ncpus + depot_full) * mag_size. Full
 * magazines in the depot are always full (only the free path pushes them,
 * and only a prev that is full), so the depot holds count * mag_size items.
 *
 * The sentinel `none` (n = cap = 0) stands for "no magazine" in a slot: it
 * looks empty to alloc and full to free, so the fast paths need no NULL
 * test and fall to the slow path, which never writes to it.
 *
 * Per-CPU slots. loaded/prev are plain fields: only the slot's CPU touches
 * them, inside its CPU-local section (or drain_cpu when that CPU is gone).
 * The counters are atomics written only by the slot's CPU with a relaxed
 * load and store (no RMW: one writer), so stats may read them from
 * anywhere. A hit updates one counter: `in` (a free) or `out` (an alloc);
 * the slow paths keep `moved_in`/`moved_out` such that
 *	held = in + moved_in - out - moved_out = loaded->n + prev->n
 * after every operation (mag_slot_publish), and hits = in + out. Readers
 * get exact figures only when no operation is in flight; drainers decide
 * whom to ask from `nmag` alone (items live only in magazines, so a CPU
 * without one holds nothing). req/ack are the drain handshake
 * (magazine_drain.c).
 */
#ifndef CAIRN_PERCPU_MAGAZINE_LAYOUT_H
#define CAIRN_PERCPU_MAGAZINE_LAYOUT_H

#include <cairn/magazine.h>

#include <stdatomic.h>
#include <stdbool.h>

#include "depot.h"

struct mag {
	uint32_t n;   /* items held */
	uint32_t cap; /* the cache's mag_size; 0 for the sentinel */
	uint32_t id;
	uint32_t unused;
	/* uint64_t item[cap] follows */
};

static inline uint64_t *mag_items(struct mag *m)
{
	return (uint64_t *)(m + 1);
}

struct mag_cpu {
	/* read or written by every hit: one line */
	struct mag *loaded;           /* owner only */
	_Atomic uint32_t req;         /* drain generation asked for (drainers) */
	_Atomic uint32_t ack;         /* last generation answered (owner) */
	_Atomic uint64_t in, out;     /* items freed into / taken by hits */
	/* slow paths only */
	struct mag *prev;             /* owner only */
	_Atomic uint64_t moved_in, moved_out; /* items moved by slow paths */
	_Atomic uint64_t misses, exchanges;
	_Atomic uint32_t nmag;        /* real magazines in loaded/prev */
} __attribute__((aligned(64)));

struct cairn_mag_cache {
	struct cairn_mag_source src;
	struct cairn_frames *frames;
	unsigned ncpus, mag_size, refill, drain_wait;
	uint32_t nmags;
	cairn_phys_t mem_phys;  /* the cache's own frames, if taken from frames */
	unsigned mem_order;
	bool own_mem;
	struct mag none;        /* the sentinel */
	struct depot_stack full, empty, spare;
	_Atomic uint32_t *next; /* nmags links of the depot stacks */
	struct mag **mag;       /* nmags: the frame of each id (its holder's) */
	struct mag_cpu *cpu;    /* ncpus slots */
};

/* Owner-only counter update: one writer, so a load and a store suffice. */
static inline void stat_add(_Atomic uint64_t *v, uint64_t d)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

static inline void stat_set(_Atomic uint64_t *v, uint64_t x)
{
	atomic_store_explicit(v, x, memory_order_relaxed);
}

/* Shared by magazine.c and magazine_drain.c. */
void mag_flush(struct cairn_mag_cache *mc, struct mag *m);
void mag_release(struct cairn_mag_cache *mc, struct mag *m);
void mag_free_frame(struct cairn_mag_cache *mc, struct mag *m);
void mag_slot_publish(struct cairn_mag_cache *mc, struct mag_cpu *c);
void mag_slot_empty(struct cairn_mag_cache *mc, struct mag_cpu *c);
void mag_answer(struct cairn_mag_cache *mc, struct mag_cpu *c);

static inline bool mag_asked(struct mag_cpu *c)
{
	return atomic_load_explicit(&c->req, memory_order_relaxed) !=
	       atomic_load_explicit(&c->ack, memory_order_relaxed);
}

/* Items in a slot's magazines, from its counters: exact for the owner, and
 * for others when the owner is between operations and they are ordered
 * after it. Another CPU's reads may tear (an "out" newer than the "in"
 * read before it), so the difference is taken signed and a negative one
 * read as 0. */
static inline uint64_t mag_cpu_held(struct mag_cpu *c)
{
	int64_t held = (int64_t)(atomic_load_explicit(&c->in, memory_order_relaxed) +
				 atomic_load_explicit(&c->moved_in, memory_order_relaxed) -
				 atomic_load_explicit(&c->out, memory_order_relaxed) -
				 atomic_load_explicit(&c->moved_out, memory_order_relaxed));
	return held > 0 ? (uint64_t)held : 0;
}

#define mag_likely(x) __builtin_expect(!!(x), 1)

/* The hits, inline so that the frame cache serves one without a call into
 * the magazine layer (everyone else through cairn_mag_try_alloc/free). Inside a CPU-local section on the caller's slot: the two
 * relaxed loads of the drain handshake, then plain accesses to the loaded
 * magazine (ours alone) and one single-writer counter. A drain request
 * that arrives after the check is answered at the next operation: the hit
 * finishes on a magazine only this CPU touches, and the drainer waits for
 * ack, which only this CPU stores (magazine_drain.c). Anything else (no
 * slot, a request, an empty or full magazine) returns false with nothing
 * changed, and the caller takes the slow path, which looks again. */
static inline bool mag_hit_alloc(struct cairn_mag_cache *mc, uint64_t *item)
{
	unsigned long irq = cairn_port_local_enter();
	unsigned cpu = cairn_port_cpu();
	bool hit = false;
	if (mag_likely(cpu < mc->ncpus)) {
		struct mag_cpu *c = &mc->cpu[cpu];
		struct mag *m = c->loaded;
		if (mag_likely(!mag_asked(c) && m->n)) {
			*item = mag_items(m)[--m->n];
			stat_add(&c->out, 1);
			hit = true;
		}
	}
	cairn_port_local_leave(irq);
	return hit;
}

static inline bool mag_hit_free(struct cairn_mag_cache *mc, uint64_t item)
{
	unsigned long irq = cairn_port_local_enter();
	unsigned cpu = cairn_port_cpu();
	bool hit = false;
	if (mag_likely(cpu < mc->ncpus)) {
		struct mag_cpu *c = &mc->cpu[cpu];
		struct mag *m = c->loaded;
		if (mag_likely(!mag_asked(c) && m->n < m->cap)) {
			mag_items(m)[m->n++] = item;
			stat_add(&c->in, 1);
			hit = true;
		}
	}
	cairn_port_local_leave(irq);
	return hit;
}

#endif /* CAIRN_PERCPU_MAGAZINE_LAYOUT_H */
