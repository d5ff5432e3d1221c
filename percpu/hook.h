/* SPDX-License-Identifier: MIT */
/*
 * Hook points for the per-CPU caches' interleaving tests: a build that
 * defines CAIRN_PERCPU_TEST_HOOK calls cairn_percpu_test_hook() at each
 * point below, so that a test can park one CPU exactly there while others
 * act, and then let it go on. The hook has one definition, in the test
 * program; shipped builds compile it away.
 */
#ifndef CAIRN_PERCPU_HOOK_H
#define CAIRN_PERCPU_HOOK_H

enum cairn_percpu_hook_point {
	/* ds_pop: the head and its top's link read, before the CAS (the
	 * stack) */
	CAIRN_HOOK_DEPOT_POP,
	/* cairn__mag_answer: the request read, the slot not emptied yet (the
	 * slot) */
	CAIRN_HOOK_ANSWER,
	/* cairn_mag_drain_all: a batch of CPUs asked, before the waits (the
	 * cache) */
	CAIRN_HOOK_DRAIN_ASKED,
	/* wait_answer: a CPU's answer not there yet, at every turn;
	 * cairn_mag_drain_cpu: the CPU lent to a drain, at every turn (the
	 * CPU's slot) */
	CAIRN_HOOK_DRAIN_WAITING,
	/* cairn__caches_reclaim: another heap's blocks flushed, its large
	 * cache not yet, its caches held (the heap) */
	CAIRN_HOOK_RECLAIM_BETWEEN,
	/* offline_collect: the claimed heap's messages collected, its state
	 * not yet OFFLINE again (the heap) */
	CAIRN_HOOK_CLAIM_ENDING,
	/* offline_collect: the claimed heap's state OFFLINE again, its queue
	 * not looked at again yet (the heap) */
	CAIRN_HOOK_CLAIM_ENDED,
	/* arena_give_back: the range freed into the arena, its RETIRING
	 * entry not cleared yet (the heap whose holder gives it back) */
	CAIRN_HOOK_GIVE_BACK,
	/* q_push: the queue's head exchanged, the previous node not yet
	 * linked to the new one (the node: a message, or the heap's stub) */
	CAIRN_HOOK_PUSH_LINK,
	/* q_pop: the consumer's tail is the head (the last node), the stub
	 * not yet pushed back behind it (the heap) */
	CAIRN_HOOK_POP_LAST,
	/* cairn_heap_offline: the heap collected and emptied, its tail not
	 * yet read and its state not yet OFFLINE (the heap) */
	CAIRN_HOOK_GOING_OFFLINE,
	/* cairn_heap_realloc_err: p's usable size known, its hardened check
	 * not made yet (the calling heap) */
	CAIRN_HOOK_REALLOC_SIZED,
	/* free_remote_slow: hardened, p found an object start of its slab,
	 * its bitmaps not looked at yet (the freeing heap) */
	CAIRN_HOOK_REMOTE_CHECKED,
	/* remote_claim, realloc_freed: hardened, p's index in its slab's
	 * bitmaps computed by a CPU that need not own the slab, about to be
	 * used (a const uint32_t *: the index) */
	CAIRN_HOOK_BITMAP_INDEX,
};

#ifdef CAIRN_PERCPU_TEST_HOOK
void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj);
#define CAIRN_PERCPU_HOOK(at, obj) cairn_percpu_test_hook(at, obj)
#else
#define CAIRN_PERCPU_HOOK(at, obj) ((void)0)
#endif

#endif /* CAIRN_PERCPU_HOOK_H */
