/* SPDX-License-Identifier: MIT */
/*
 * What every stress program shares: a seeded generator and a barrier for
 * all CPUs of a run. Freestanding (the test kernel compiles it too).
 */
#ifndef CAIRN_STRESS_UTIL_H
#define CAIRN_STRESS_UTIL_H

#include <stdatomic.h>
#include <stdint.h>

#include <cairn/error.h>
#include <cairn/frames.h>

/* splitmix64: one word of state per CPU, reproducible from the seed. */
static inline uint64_t stress_rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t stress_below(uint64_t *s, uint64_t n)
{
	return n ? stress_rnd(s) % n : 0;
}

/* A sense-reversing barrier: the last CPU to arrive resets the count and
 * publishes a new generation (release); the others wait for it (acquire),
 * so everything done before the barrier is visible after it. */
struct stress_barrier {
	_Atomic uint32_t count, gen;
};

static inline void stress_barrier_init(struct stress_barrier *b)
{
	atomic_init(&b->count, 0);
	atomic_init(&b->gen, 0);
}

/* `idle` (may be NULL) runs while waiting: a CPU that others may need an
 * answer from (a cache drain) keeps answering. */
static inline void stress_barrier_wait(struct stress_barrier *b, unsigned ncpus,
				       void (*idle)(void *), void *arg)
{
	uint32_t gen = atomic_load_explicit(&b->gen, memory_order_acquire);
	if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1 == ncpus) {
		atomic_store_explicit(&b->count, 0, memory_order_relaxed);
		atomic_store_explicit(&b->gen, gen + 1, memory_order_release);
		return;
	}
	while (atomic_load_explicit(&b->gen, memory_order_acquire) == gen) {
		if (idle)
			idle(arg);
		cairn_port_pause();
	}
}

/* The ownership oracle: one atomic owner word per frame of [first, first +
 * frames), 0 = free, else the holder. Moving a block checks every frame is
 * held by `from` and makes it `to`'s; a frame handed to two holders fails
 * the CAS. Returns 0, CAIRN_ERANGE (block outside) or CAIRN_EBUSY with
 * *bad = the frame's address and *was = its actual holder. */
static inline int stress_oracle_move(_Atomic uint32_t *owner, uint64_t first, uint64_t frames,
				     cairn_phys_t phys, unsigned order, uint32_t from,
				     uint32_t to, uint64_t *bad, uint32_t *was)
{
	uint64_t fr = phys >> CAIRN_FRAME_SHIFT;
	if (fr < first || fr + (1ull << order) > first + frames)
		return CAIRN_ERANGE;
	for (uint64_t i = 0; i < 1ull << order; i++) {
		uint32_t expect = from;
		if (!atomic_compare_exchange_strong_explicit(&owner[fr - first + i], &expect, to,
							     memory_order_acq_rel,
							     memory_order_relaxed)) {
			*bad = (fr + i) << CAIRN_FRAME_SHIFT;
			*was = expect;
			return CAIRN_EBUSY;
		}
	}
	return 0;
}

#endif /* CAIRN_STRESS_UTIL_H */
