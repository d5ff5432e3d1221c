/* SPDX-License-Identifier: MIT */
/*
 * The depot's stacks: lock-free LIFO stacks of magazine ids (Treiber), with
 * the link of each id kept in the cache's own `next` table rather than in
 * the magazine frame. A popper that lost a race may still read the link of
 * an id that has meanwhile been popped, its frame freed and reused by
 * someone else; the link lives in memory of the cache that never changes
 * owner, and is an atomic, so that stale read is harmless and race free.
 *
 * The head is one 64-bit word: [63:32] tag, [31:16] count, [15:0] top id+1
 * (0: empty). Every successful push or pop adds one to the tag, so a pop
 * whose head value went A -> B -> A (id popped and pushed again) fails its
 * CAS instead of installing a stale link (ABA). The count alone fails it
 * when the length changed (pop A, pop B, push A leaves it one short); pop
 * A, pop B, push D, push A restores top and count, and only the tag
 * differs (tests/percpu/depot_aba.c parks a pop at the hook point below
 * for exactly that). The tag wraps after 2^32 updates; a pop would have
 * to stall across all of them between its load and its CAS, which a
 * CPU-local section (interrupts off) rules out in a kernel and which would
 * take minutes of preemption on the host. The count changes in the same
 * CAS, so the depot's limit is exact.
 *
 * Ordering. A push writes the id's link (relaxed), then publishes with a
 * release CAS; a pop reads the head with acquire, then the link (relaxed),
 * and takes the id with an acquire CAS. Every RMW on the head continues the
 * release sequence of the pushes before it, so a pop that reads any later
 * head value synchronises with the push of the id it sees on top: it reads
 * that push's link (or a newer one, which only a later push writes, after
 * which the tag differs and the CAS fails), and after its CAS it sees every
 * write the pusher made to the magazine's contents.
 */
#ifndef CAIRN_PERCPU_DEPOT_H
#define CAIRN_PERCPU_DEPOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hook.h"

#define DEPOT_NONE 0xffffffffu

struct depot_stack {
	_Atomic uint64_t head;
	uint32_t limit; /* most ids the stack holds; immutable */
} __attribute__((aligned(64)));

static inline uint32_t ds_top(uint64_t h) { return (uint32_t)(h & 0xffff); }
static inline uint32_t ds_count(uint64_t h) { return (uint32_t)(h >> 16) & 0xffff; }

static inline uint64_t ds_next_head(uint64_t old, uint32_t count, uint32_t top)
{
	return (((old >> 32) + 1) << 32) | (uint64_t)count << 16 | top;
}

/* Push id, unless the stack holds its limit already. */
static inline bool ds_push(struct depot_stack *s, _Atomic uint32_t *next, uint32_t id)
{
	uint64_t old = atomic_load_explicit(&s->head, memory_order_relaxed);
	for (;;) {
		if (ds_count(old) >= s->limit)
			return false;
		atomic_store_explicit(&next[id], ds_top(old), memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(
			    &s->head, &old, ds_next_head(old, ds_count(old) + 1, id + 1),
			    memory_order_release, memory_order_relaxed))
			return true;
	}
}

/* Pop an id, or DEPOT_NONE when the stack is empty. */
static inline uint32_t ds_pop(struct depot_stack *s, _Atomic uint32_t *next)
{
	uint64_t old = atomic_load_explicit(&s->head, memory_order_acquire);
	for (;;) {
		uint32_t top = ds_top(old);
		if (!top)
			return DEPOT_NONE;
		uint32_t below = atomic_load_explicit(&next[top - 1], memory_order_relaxed);
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_DEPOT_POP, s); /* the ABA window */
		if (atomic_compare_exchange_weak_explicit(
			    &s->head, &old, ds_next_head(old, ds_count(old) - 1, below),
			    memory_order_acquire, memory_order_acquire))
			return top - 1;
	}
}

static inline uint32_t ds_size(struct depot_stack *s)
{
	return ds_count(atomic_load_explicit(&s->head, memory_order_relaxed));
}

#endif /* CAIRN_PERCPU_DEPOT_H */
