/* SPDX-License-Identifier: MIT */
/*
 * The baseline the frame allocator is measured against: a textbook buddy
 * allocator as Linux (mm/page_alloc.c, without its per-CPU lists) and
 * kvm-unit-tests (lib/alloc_page.c) build it.
 *
 * - One free list per order, doubly linked, so that a buddy can be unlinked
 *   from the middle of its list in O(1) when it coalesces.
 * - One byte of metadata per frame, meaningful at the head of a block: free
 *   or allocated, and the block's order.
 * - Allocation pops the smallest non-empty order and splits it down; free
 *   merges with the buddy for as long as the buddy is a free block of the
 *   same order.
 * - One lock around everything, a queued (MCS) spinlock from Concurrency
 *   Kit, as Linux's zone lock is a queued spinlock.
 *
 * The list links live in a side array indexed by frame (Linux keeps them in
 * struct page, also a side array), not in the free frames themselves: the
 * benchmark's simulated memory is mostly never touched, and threading links
 * through it would fault in every page and measure the page-fault path.
 *
 * It lives in bench/ only: the lock comes from Concurrency Kit, whose inline
 * assembly ThreadSanitizer cannot see, so it is not for sanitizer builds.
 */
#ifndef CAIRN_BENCH_BASELINE_BUDDY_H
#define CAIRN_BENCH_BASELINE_BUDDY_H

#include <stdbool.h>
#include <stdint.h>

#define BASELINE_MAX_ORDER 18 /* 1 GiB, as cairn */
#define BASELINE_FRAME_SHIFT 12

struct baseline_buddy;

/* An allocator over the frames of [phys_base, phys_base + size), every
 * frame free. NULL if out of memory or the range holds no frame. */
struct baseline_buddy *baseline_create(uint64_t phys_base, uint64_t size);
void baseline_destroy(struct baseline_buddy *b);

/* A fresh instance over the first `size` bytes of the range it was created
 * with (size 0: all of it), every frame free, reusing the metadata arrays.
 * Not concurrent with use. */
void baseline_reset(struct baseline_buddy *b, uint64_t size);

/* Allocate 2^order frames, naturally aligned: 0 and *out, or -1 when
 * nothing large enough is free. */
int baseline_alloc(struct baseline_buddy *b, unsigned order, uint64_t *out);

/* Free a block: 0, or -1 (and no change) if `phys` is not the head of a
 * block allocated with this order. */
int baseline_free(struct baseline_buddy *b, uint64_t phys, unsigned order);

/* Free frames, and free blocks per order (may be NULL). Quiescent only. */
uint64_t baseline_free_frames(struct baseline_buddy *b,
			      uint64_t blocks[BASELINE_MAX_ORDER + 1]);

/* Check the lists against the metadata bytes: every listed block is a free
 * head of its list's order, linked both ways, aligned, inside the range, not
 * mergeable with its buddy; and no free head is missing from the lists.
 * 0 when consistent, else -1 with a message on stderr. Quiescent only. */
int baseline_validate(struct baseline_buddy *b);

#endif /* CAIRN_BENCH_BASELINE_BUDDY_H */
