/* SPDX-License-Identifier: MIT */
/*
 * A test's own grace period for memory the library hands back (a removed
 * region's metadata). Each worker's epoch is odd while it is inside the
 * library: made odd, then a seq_cst fence, before its call; made even by a
 * release store after it. The waiter, after a seq_cst fence, waits for
 * every odd epoch to change. Either a worker's fence comes first and the
 * waiter sees it inside, or the worker's call sees what the waiter did.
 */
#ifndef CAIRN_TEST_GRACE_H
#define CAIRN_TEST_GRACE_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

static inline void grace_enter(_Atomic uint64_t *epoch)
{
	atomic_store_explicit(epoch, atomic_load_explicit(epoch, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
}

static inline void grace_leave(_Atomic uint64_t *epoch)
{
	atomic_store_explicit(epoch, atomic_load_explicit(epoch, memory_order_relaxed) + 1,
			      memory_order_release);
}

/* Waits out the call one worker may be in; after a grace_fence. */
static inline void grace_wait(_Atomic uint64_t *epoch)
{
	uint64_t e = atomic_load_explicit(epoch, memory_order_acquire);
	while ((e & 1) && atomic_load_explicit(epoch, memory_order_acquire) == e)
		sched_yield();
}

static inline void grace_fence(void)
{
	atomic_thread_fence(memory_order_seq_cst);
}

#endif
