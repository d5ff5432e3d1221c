/* SPDX-License-Identifier: MIT */
/*
 * Hook points for the frame allocator's interleaving tests: a build that
 * defines CAIRN_FRAMES_TEST_HOOK calls cairn_frames_test_hook() at each
 * point below, so that a test can hold one CPU exactly there while others
 * act, and then let it go on. The hook has one definition, in the test
 * program; shipped builds compile it away.
 */
#ifndef CAIRN_FRAMES_HOOK_H
#define CAIRN_FRAMES_HOOK_H

enum cairn_frames_hook_point {
	/* bits_free: a block of several bitmap words marked as being freed
	 * (the linearisation point), none of its words cleared yet (its
	 * head word) */
	CAIRN_FRAMES_HOOK_BLOCK_MARKED,
	/* free0_fast: the frame parked by the word's CAS, the CPU's park
	 * slot not yet naming it (the word) */
	CAIRN_FRAMES_HOOK_PARKED,
	/* alloc0_parked, alloc_parked: the CPU's park slot emptied, its
	 * frame not yet taken back (the slot) */
	CAIRN_FRAMES_HOOK_TAKE_BACK,
	/* bits_take_at, chunks_take: a block of several bitmap words or
	 * chunk entries half taken (the block's head word, or its first
	 * chunk's entry) */
	CAIRN_FRAMES_HOOK_BLOCK_TAKING,
	/* area_alloc_small: a search found no counted frame in the region,
	 * whose exhausted mark it has not yet set (the region) */
	CAIRN_FRAMES_HOOK_MARKING,
	/* cairn_frames_remove_region: a chunk found busy, the chunks before
	 * it still taken, not yet given back (the region) */
	CAIRN_FRAMES_HOOK_REMOVE_UNDO,
	/* chunks_take: a chunk's entry read free (512, not HUGE) after the
	 * take's check, its CAS not yet made (the entry) */
	CAIRN_FRAMES_HOOK_CHUNK_CAS,
	/* cairn_frames_reserve: a piece found busy (and undone), the pieces
	 * before it still taken, not yet undone (the busy piece's region) */
	CAIRN_FRAMES_HOOK_RESERVE_UNDO,
	/* word_unpark: parked frames' HEAD bits cleared by the word's CAS,
	 * FREE not yet counting them (the word) */
	CAIRN_FRAMES_HOOK_UNPARK,
	/* transit_recheck: a request that came up short, or an alloc_at,
	 * reserve or region removal, about to fail, waits for unparks in
	 * flight in its areas (the instance) */
	CAIRN_FRAMES_HOOK_UNPARK_WAIT,
};

#ifdef CAIRN_FRAMES_TEST_HOOK
void cairn_frames_test_hook(enum cairn_frames_hook_point at, void *obj);
#define CAIRN_FRAMES_HOOK(at, obj) cairn_frames_test_hook(at, obj)
#else
#define CAIRN_FRAMES_HOOK(at, obj) ((void)0)
#endif

#endif /* CAIRN_FRAMES_HOOK_H */
