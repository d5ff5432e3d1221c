/* SPDX-License-Identifier: MIT */
/*
 * The optimistic version lock: one 64-bit word per tree node.
 *
 *   bit 0      obsolete: the node left the tree (it sits on, or came from,
 *              the tree's free list)
 *   bit 1      locked by a writer
 *   bits 2..63 version counter
 *
 * Every unlock adds 2 to the locked word, which clears the lock bit and
 * carries into the counter, so the word never returns to a value a reader
 * has seen: a reader validates by comparing the whole word. The word of a
 * node is never reset, not even when the node is recycled (see node.c), so
 * a reader holding a stale pointer always fails validation.
 *
 * Memory ordering is the seqlock recipe (Boehm, MSPC 2012) with the lock
 * taken by CAS:
 *
 *   reader                         writer
 *   v = load_acquire(word)         CAS(word, v, v|LOCKED)      (lock)
 *   x = load_relaxed(field) ...    fence(release)
 *   fence(acquire)                 store_relaxed(field) ...
 *   load_relaxed(word) == v ?      store_release(word, v+4)    (unlock)
 *
 * If a reader's relaxed load returns a value stored after the writer's
 * release fence, that fence synchronises with the reader's acquire fence,
 * so the writer's CAS happens before the reader's re-load, which then sees
 * the lock bit or a later version. If the reader's first load saw the
 * unlocking store, everything the writer wrote is visible to it. Upgrading
 * a read to a lock (olc_upgrade) is a validation whose re-load is the CAS,
 * so it takes the same acquire fence first.
 *
 * The fences are the only stand-alone fences in the tree; ThreadSanitizer
 * does not model them, but it needs no help either: every node field is an
 * atomic, so it sees no plain racing access to report.
 */
#ifndef CAIRN_BTREE_OLC_H
#define CAIRN_BTREE_OLC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define OLC_OBSOLETE 1ull
#define OLC_LOCKED 2ull
#define OLC_STEP 4ull /* one version */

/*
 * Yield points for the concurrency tests: a build that defines
 * CAIRN_BTREE_TEST_YIELD gets a call between optimistic reads and their
 * validation, before lock upgrades, and in the split and recycle paths, so
 * that two cores reach the interleavings that matter. The hook has one
 * definition, in the test program; shipped builds compile it away.
 */
#ifdef CAIRN_BTREE_TEST_YIELD
void cairn_btree_test_yield(void);
#define CAIRN_BTREE_YIELD() cairn_btree_test_yield()
#else
#define CAIRN_BTREE_YIELD() ((void)0)
#endif

/*
 * Named pause points, for the tests that need one interleaving in a fixed
 * order rather than many at random. The same build calls
 * cairn_btree_test_at(site, node) where a descent stands at a site, if the
 * test program defines it (a weak reference: the others need not):
 *
 *   BT_AT_CHILD    a child pointer was read from its parent and the parent
 *                  validated; nothing of the child read yet, not even its
 *                  version (descend_to, step)
 *   BT_AT_VISITED  a node's version was read, not busy; none of its fields
 *                  read yet (visit)
 *
 * A stale pointer is met at either: the child may be unlinked, retired and
 * reused before the reader goes on.
 */
enum { BT_AT_CHILD = 1, BT_AT_VISITED = 2 };
#ifdef CAIRN_BTREE_TEST_YIELD
void cairn_btree_test_at(unsigned site, const void *node)
	__attribute__((weak));
#define CAIRN_BTREE_AT(site, node)                          \
	do {                                                \
		if (cairn_btree_test_at)                    \
			cairn_btree_test_at((site), (node)); \
	} while (0)
#else
#define CAIRN_BTREE_AT(site, node) ((void)0)
#endif

typedef _Atomic uint64_t olc_t;

static inline bool olc_busy(uint64_t v)
{
	return (v & (OLC_LOCKED | OLC_OBSOLETE)) != 0;
}

/* Start an optimistic read; the caller restarts if olc_busy(result). */
static inline uint64_t olc_read_begin(olc_t *w)
{
	return atomic_load_explicit(w, memory_order_acquire);
}

/* Did nothing change since olc_read_begin returned v? */
static inline bool olc_validate(olc_t *w, uint64_t v)
{
	CAIRN_BTREE_YIELD();
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(w, memory_order_relaxed) == v;
}

/* Turn a validated read at version v into the write lock, or fail. */
static inline bool olc_upgrade(olc_t *w, uint64_t v)
{
	CAIRN_BTREE_YIELD();
	if (olc_busy(v))
		return false;
	atomic_thread_fence(memory_order_acquire);
	if (!atomic_compare_exchange_strong_explicit(w, &v, v | OLC_LOCKED,
						     memory_order_acquire,
						     memory_order_relaxed))
		return false;
	/* Order the lock before the field stores that follow (see above). */
	atomic_thread_fence(memory_order_release);
	return true;
}

/* Release a lock taken at version v after changing the node. */
static inline void olc_unlock(olc_t *w, uint64_t v)
{
	atomic_store_explicit(w, v + OLC_STEP, memory_order_release);
}

/* Release a lock taken at version v without having changed anything:
 * readers that saw v may keep it. */
static inline void olc_unlock_unchanged(olc_t *w, uint64_t v)
{
	atomic_store_explicit(w, v, memory_order_release);
}

/* Release a lock taken at version v and retire the node. */
static inline void olc_unlock_obsolete(olc_t *w, uint64_t v)
{
	atomic_store_explicit(w, v + OLC_STEP + OLC_OBSOLETE,
			      memory_order_release);
}

#endif /* CAIRN_BTREE_OLC_H */
