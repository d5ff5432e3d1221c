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
 * Per-CPU slots. loaded/prev/cap/seen are plain fields: only the slot's
 * CPU touches them, inside its CPU-local section (or drain_cpu when that
 * CPU is gone). While a magazine is a slot's loaded one, its count lives in
 * the slot (`n`), not in its header: the hits change that one word, and
 * the slow paths write it back to the header before they look at or move
 * the magazine (mag_slot_sync) and take it from the header again when they
 * are done (cairn__mag_slot_publish). `n`, `prev_n` (prev's count) and the other
 * counters are atomics written only by the slot's CPU with relaxed stores
 * (one writer: no RMW), so statistics may read them from anywhere:
 *	held = n + prev_n = the items in the slot's magazines
 * after every operation, exact when no operation is in flight. Every
 * operation on a slot adds one to `hits` (served by loaded, or by prev
 * after a swap) or to `misses` (everything else); the hit's counter sits on
 * the line the hit already writes (the first half of the slot, with `n`),
 * a relaxed load and store like the count: one writer, so exact, and
 * monotonic for a reader on another CPU. Drainers
 * decide whom to ask from `nmag` alone (items live only in magazines, so a
 * CPU without one holds nothing). req/ack are the drain handshake
 * (magazine_drain.c); `seen` is the owner's copy of ack.
 *
 * There is a slot for every CPU index the port can return (port.h: below
 * cairn_port_cpu_count()), so the hits index the slots without a bound
 * check. Slots at or above ncpus only ever hold the sentinel (n = cap = 0,
 * req = seen): every hit on them misses, and the miss paths send those CPUs
 * to the source.
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
	/* read or written by every hit */
	struct mag *loaded;           /* owner only; its items are the hits' */
	_Atomic uint32_t n;           /* items in loaded (its header's n is stale) */
	uint32_t cap;                 /* owner only: loaded->cap, 0 for none */
	_Atomic uint32_t req;         /* drain generation asked for (drainers) */
	uint32_t seen;                /* owner only: the last ack it stored */
	_Atomic uint64_t hits;        /* operations the loaded/prev served */
	/* slow paths only */
	_Atomic uint32_t ack;         /* last generation answered (owner) */
	_Atomic uint16_t prev_n;      /* items in prev (<= CAIRN_MAG_MAX) */
	_Atomic uint16_t nmag;        /* real magazines in loaded/prev */
	struct mag *prev;             /* owner only */
	_Atomic uint64_t misses, exchanges;
} __attribute__((aligned(64)));

/* One line: a hit reads and writes only its first half. */
_Static_assert(sizeof(struct mag_cpu) == 64, "a CPU slot is one cache line");

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
	/* The drain group, if any, and the next member in it (written under
	 * the group's lock, read by waiting drainers with acquire). */
	struct cairn_mag_group *group;
	_Atomic(struct cairn_mag_cache *) group_next;
	/* Lean: after a drain, misses take single items (magazine.c). Any
	 * CPU reads and writes it, relaxed: a hint. Written only near
	 * exhaustion, so on a line of its own, away from the fields every
	 * slow path reads. */
	_Alignas(64) _Atomic int32_t lean; /* > 0: lean, for that many gets */
	_Atomic uint64_t lean_gets, drains; /* statistics */
	/* The slots: ncpus, then a bypass slot for every other CPU index the
	 * port may return. At a fixed offset from the cache: a hit finds its
	 * own with a shift of the CPU index. */
	struct mag_cpu cpu[];
};

/* Owner-only counter update: one writer, so a load and a store suffice. */
static inline void stat_add(_Atomic uint64_t *v, uint64_t d)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

/* Shared by magazine.c and magazine_drain.c. */
void cairn__mag_flush(struct cairn_mag_cache *mc, struct mag *m);
void cairn__mag_release(struct cairn_mag_cache *mc, struct mag *m);
void cairn__mag_free_frame(struct cairn_mag_cache *mc, struct mag *m);
void cairn__mag_slot_publish(struct cairn_mag_cache *mc, struct mag_cpu *c);
void cairn__mag_slot_empty(struct cairn_mag_cache *mc, struct mag_cpu *c);
void cairn__mag_answer(struct cairn_mag_cache *mc, struct mag_cpu *c);
void cairn__mag_go_lean(struct cairn_mag_cache *mc);
void cairn__mag_end_lean(struct cairn_mag_cache *mc);
void cairn__mag_group_join(struct cairn_mag_cache *mc);
void cairn__mag_group_leave(struct cairn_mag_cache *mc);

/* The slot of the CPU running the caller (inside its CPU-local section).
 * The empty asm makes the compiler form the slot's address once and reach
 * each field from it; left alone, it adds the array's offset into the
 * scaled index of every field separately. */
static inline struct mag_cpu *mag_my_slot(struct cairn_mag_cache *mc)
{
	struct mag_cpu *c = &mc->cpu[cairn_port_cpu()];
	__asm__("" : "+r"(c));
	return c;
}

/* A drain request not answered yet: the drainers' word against the
 * owner's own copy of its last answer. */
static inline bool mag_asked(struct mag_cpu *c)
{
	return atomic_load_explicit(&c->req, memory_order_relaxed) != c->seen;
}

/* Write the loaded magazine's count back to its header, before a slow path
 * looks at the magazine or moves it (the sentinel is never written). */
static inline void mag_slot_sync(struct cairn_mag_cache *mc, struct mag_cpu *c)
{
	if (c->loaded != &mc->none)
		c->loaded->n = atomic_load_explicit(&c->n, memory_order_relaxed);
}

/* Items in a slot's magazines: exact for the owner, and for others when the
 * owner is between operations and they are ordered after it. */
static inline uint64_t mag_cpu_held(struct mag_cpu *c)
{
	return (uint64_t)atomic_load_explicit(&c->n, memory_order_relaxed) +
	       atomic_load_explicit(&c->prev_n, memory_order_relaxed);
}

#define mag_likely(x) __builtin_expect(!!(x), 1)

/* Would a free on this (owner's, synced or not) slot find both magazines
 * full and the depot's full stack at its limit, so that free_slow could
 * only flush prev to the source and start it again? Then an item may as
 * well go to the source itself, and the magazines stay as they are. The
 * depot's count is read relaxed: a stale one only sends one item to the
 * source, or one more prev to the flush; an item is never anywhere but in
 * a magazine or the source, whichever the answer. */
static inline bool mag_full_past_depot(struct cairn_mag_cache *mc, struct mag_cpu *c)
{
	return atomic_load_explicit(&c->nmag, memory_order_relaxed) == 2 &&
	       atomic_load_explicit(&c->n, memory_order_relaxed) == c->cap &&
	       atomic_load_explicit(&c->prev_n, memory_order_relaxed) == mc->mag_size &&
	       ds_size(&mc->full) >= mc->full.limit;
}

/* The hits, inline so that the frame cache serves one without a call into
 * the magazine layer (everyone else through cairn_mag_try_alloc/free).
 * Inside a CPU-local section on the caller's slot: one relaxed load of the
 * drainers' word, compared with the owner's copy of its last answer; then
 * the slot's count and hit counter (single-writer atomics: a relaxed load
 * and store each) and a plain access to the loaded magazine's items (ours
 * alone). A drain request
 * that arrives after the check is answered at the next operation: the hit
 * finishes on a magazine only this CPU touches, and the drainer waits for
 * ack, which only this CPU stores (magazine_drain.c). Anything else (a
 * bypass slot, a request, an empty or full magazine) returns false with
 * nothing changed, and the caller takes the slow path, which looks again. */
static inline bool mag_hit_alloc(struct cairn_mag_cache *mc, uint64_t *item)
{
	unsigned long irq = cairn_port_local_enter();
	struct mag_cpu *c = mag_my_slot(mc);
	uint32_t n = atomic_load_explicit(&c->n, memory_order_relaxed);
	bool hit = mag_likely(!mag_asked(c) && n);
	if (hit) {
		*item = mag_items(c->loaded)[n - 1];
		atomic_store_explicit(&c->n, n - 1, memory_order_relaxed);
		stat_add(&c->hits, 1);
	}
	cairn_port_local_leave(irq);
	return hit;
}

static inline bool mag_hit_free(struct cairn_mag_cache *mc, uint64_t item)
{
	unsigned long irq = cairn_port_local_enter();
	struct mag_cpu *c = mag_my_slot(mc);
	uint32_t n = atomic_load_explicit(&c->n, memory_order_relaxed);
	bool hit = mag_likely(!mag_asked(c) && n < c->cap);
	if (hit) {
		mag_items(c->loaded)[n] = item;
		atomic_store_explicit(&c->n, n + 1, memory_order_relaxed);
		stat_add(&c->hits, 1);
	}
	cairn_port_local_leave(irq);
	return hit;
}

#endif /* CAIRN_PERCPU_MAGAZINE_LAYOUT_H */
