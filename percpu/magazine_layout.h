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
 * the slot (n, the low bits of `count`), not in its header: the hits change
 * that one word, and the slow paths write it back to the header before
 * they look at or move the magazine (mag_slot_sync) and take it from the
 * header again when they are done (cairn__mag_slot_publish). `count`,
 * `prev_n` (prev's count) and the other counters are atomics written only
 * by the slot's CPU with relaxed stores (one writer: no RMW), so
 * statistics may read them from anywhere:
 *	held = n + prev_n = the items in the slot's magazines
 * after every operation, exact when no operation is in flight. Every
 * operation on a slot adds one hit (served by loaded, or by prev after a
 * swap) or one to `misses` (everything else). The hits are the high bits
 * of `count` (slot_count): a hit adds one constant to the word, which
 * counts the hit and moves n at once, and stores it: one writer, so
 * exact, and monotonic for a reader on another CPU but for the moment of
 * a carry out of the field (slot_hits). Drainers
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
	_Atomic uint64_t count;       /* n | hits << MAG_N_BITS (slot_n, slot_hits) */
	uint32_t cap;                 /* owner only: loaded->cap, 0 for none */
	_Atomic uint32_t req;         /* drain generation asked for (drainers) */
	uint32_t seen;                /* owner only: the last ack it stored */
	_Atomic uint32_t hit_wraps;   /* times count's hits wrapped (rare) */
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

/* The slot's count word: the loaded magazine's item count n in the low
 * MAG_N_BITS, the slot's hits above it. A hit changes both with one add
 * to the word it loaded and one store (a separate hit counter cost the
 * hot paths a load, an add and a store each). The hits field carries out
 * of the word once every 2^48 hits; the add's carry counts that in
 * hit_wraps (cairn__mag_hit_wrapped). */
#define MAG_N_BITS 16
#define MAG_N_MASK ((1ull << MAG_N_BITS) - 1)
#define MAG_HIT (1ull << MAG_N_BITS)
#define MAG_HIT_ALLOC (MAG_HIT - 1) /* one hit, one item fewer */
#define MAG_HIT_FREE (MAG_HIT + 1)  /* one hit, one item more */
_Static_assert(CAIRN_MAG_MAX <= MAG_N_MASK, "a magazine's count fits its field");

static inline uint32_t count_n(uint64_t w)
{
	return (uint32_t)(w & MAG_N_MASK);
}

static inline uint32_t slot_n(struct mag_cpu *c)
{
	return count_n(atomic_load_explicit(&c->count, memory_order_relaxed));
}

void cairn__mag_hit_wrapped(struct mag_cpu *c);

/* Store w + d (d one of MAG_HIT*), w being the word as the owner loaded
 * it in this operation. */
static inline void slot_count(struct mag_cpu *c, uint64_t w, uint64_t d)
{
	uint64_t next;
	if (__builtin_expect(__builtin_add_overflow(w, d, &next), 0))
		cairn__mag_hit_wrapped(c);
	atomic_store_explicit(&c->count, next, memory_order_relaxed);
}

/* n items in loaded now, the hits as they are (the slow paths). */
static inline void slot_set_n(struct mag_cpu *c, uint32_t n)
{
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	atomic_store_explicit(&c->count, (w & ~MAG_N_MASK) | n, memory_order_relaxed);
}

/* One hit more, n as it is (the slow paths' hits: a swap with prev). */
static inline void slot_count_hit(struct mag_cpu *c)
{
	slot_count(c, atomic_load_explicit(&c->count, memory_order_relaxed), MAG_HIT);
}

/* The slot's hits. Exact for the owner and for a reader ordered after
 * the owner's last operation; another reader reads the two words apart,
 * and one that races the owner's wrap of the field (every 2^48 hits, days
 * of hits on one CPU) is 2^48 off for that read. */
static inline uint64_t slot_hits(struct mag_cpu *c)
{
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	uint64_t wraps = atomic_load_explicit(&c->hit_wraps, memory_order_relaxed);
	return (wraps << (64 - MAG_N_BITS)) + (w >> MAG_N_BITS);
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

/* The slot of the CPU running the caller (inside its CPU-local section),
 * in a cache's slot array (mc->cpu; callers of the hits keep that address
 * so that a hit forms its slot's with a shift and an add, not also the
 * array's offset in the cache). The empty asm makes the compiler form the
 * slot's address once and reach each field from it; left alone, it adds
 * the index into the address of every field separately. */
static inline struct mag_cpu *mag_slot_in(struct mag_cpu *slots)
{
	struct mag_cpu *c = &slots[cairn_port_cpu()];
	__asm__("" : "+r"(c));
	return c;
}

static inline struct mag_cpu *mag_my_slot(struct cairn_mag_cache *mc)
{
	return mag_slot_in(mc->cpu);
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
		c->loaded->n = slot_n(c);
}

/* Items in a slot's magazines: exact for the owner, and for others when the
 * owner is between operations and they are ordered after it. */
static inline uint64_t mag_cpu_held(struct mag_cpu *c)
{
	return (uint64_t)slot_n(c) +
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
	       slot_n(c) == c->cap &&
	       atomic_load_explicit(&c->prev_n, memory_order_relaxed) == mc->mag_size &&
	       ds_size(&mc->full) >= mc->full.limit;
}

/* The hits, inline so that the frame cache serves one without a call into
 * the magazine layer (everyone else through cairn_mag_try_alloc/free).
 * Inside a CPU-local section on the caller's slot: one relaxed load of the
 * drainers' word, compared with the owner's copy of its last answer; then
 * the slot's count word (a single-writer atomic: a relaxed load, one add
 * for the count and the hit, a relaxed store) and a plain access to the loaded magazine's items (ours
 * alone). A drain request
 * that arrives after the check is answered at the next operation: the hit
 * finishes on a magazine only this CPU touches, and the drainer waits for
 * ack, which only this CPU stores (magazine_drain.c). Anything else (a
 * bypass slot, a request, an empty or full magazine) returns false with
 * nothing changed, and the caller takes the slow path, which looks again. */
static inline bool mag_hit_alloc(struct mag_cpu *slots, uint64_t *item)
{
	unsigned long irq = cairn_port_local_enter();
	struct mag_cpu *c = mag_slot_in(slots);
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	uint32_t n = count_n(w);
	bool hit = mag_likely(!mag_asked(c) && n);
	if (hit) {
		*item = mag_items(c->loaded)[n - 1];
		slot_count(c, w, MAG_HIT_ALLOC);
	}
	cairn_port_local_leave(irq);
	return hit;
}

static inline bool mag_hit_free(struct mag_cpu *slots, uint64_t item)
{
	unsigned long irq = cairn_port_local_enter();
	struct mag_cpu *c = mag_slot_in(slots);
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	uint32_t n = count_n(w);
	bool hit = mag_likely(!mag_asked(c) && n < c->cap);
	if (hit) {
		mag_items(c->loaded)[n] = item;
		slot_count(c, w, MAG_HIT_FREE);
	}
	cairn_port_local_leave(irq);
	return hit;
}

#endif /* CAIRN_PERCPU_MAGAZINE_LAYOUT_H */
