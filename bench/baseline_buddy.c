/* SPDX-License-Identifier: MIT */
/* A textbook single-lock buddy allocator: see baseline_buddy.h. */
#include "baseline_buddy.h"

#include <ck_spinlock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORDERS (BASELINE_MAX_ORDER + 1)
#define NIL UINT32_MAX

/* The metadata byte of a frame. Only block heads carry a state; every other
 * frame reads 0. Merging clears the absorbed buddy's head byte, so a stale
 * head can never be mistaken for a free buddy later. */
#define M_ORDER 0x1f
#define M_ALLOC 0x40
#define M_FREE 0x80

struct link {
	uint32_t next, prev; /* frame indices, NIL at the ends */
};

struct baseline_buddy {
	/* The lock sits alone in its cache line, as Linux pads its zone
	 * lock: waiters spin on their own MCS nodes, and the holder's list
	 * updates do not bounce the line that newcomers swap themselves into. */
	_Alignas(64) ck_spinlock_mcs_t lock;
	_Alignas(64) uint32_t head[ORDERS];
	uint64_t nr_free[ORDERS]; /* free blocks per order */
	uint64_t base_pfn, end_pfn;
	uint64_t cap_pfn; /* end of the range the arrays were sized for */
	uint8_t *meta;
	struct link *link;
};

static void list_add(struct baseline_buddy *b, uint32_t i, unsigned o)
{
	uint32_t h = b->head[o];
	b->link[i].prev = NIL;
	b->link[i].next = h;
	if (h != NIL)
		b->link[h].prev = i;
	b->head[o] = i;
	b->nr_free[o]++;
}

static void list_del(struct baseline_buddy *b, uint32_t i, unsigned o)
{
	uint32_t n = b->link[i].next, p = b->link[i].prev;
	if (p != NIL)
		b->link[p].next = n;
	else
		b->head[o] = n;
	if (n != NIL)
		b->link[n].prev = p;
	b->nr_free[o]--;
}

struct baseline_buddy *baseline_create(uint64_t phys_base, uint64_t size)
{
	uint64_t first = (phys_base + (1u << BASELINE_FRAME_SHIFT) - 1) >>
			 BASELINE_FRAME_SHIFT;
	uint64_t end = (phys_base + size) >> BASELINE_FRAME_SHIFT;
	if (end <= first || end - first >= NIL)
		return NULL;

	struct baseline_buddy *b = aligned_alloc(64, sizeof(*b));
	if (!b)
		return NULL;
	memset(b, 0, sizeof(*b));
	b->base_pfn = first;
	b->end_pfn = b->cap_pfn = end;
	b->meta = malloc(end - first);
	b->link = malloc((end - first) * sizeof(*b->link));
	if (!b->meta || !b->link) {
		baseline_destroy(b);
		return NULL;
	}
	baseline_reset(b, 0);
	return b;
}

void baseline_destroy(struct baseline_buddy *b)
{
	if (!b)
		return;
	free(b->meta);
	free(b->link);
	free(b);
}

void baseline_reset(struct baseline_buddy *b, uint64_t size)
{
	uint64_t frames = size >> BASELINE_FRAME_SHIFT;
	b->end_pfn = frames && b->base_pfn + frames < b->cap_pfn
			     ? b->base_pfn + frames : b->cap_pfn;
	ck_spinlock_mcs_init(&b->lock);
	memset(b->meta, 0, b->end_pfn - b->base_pfn);
	for (unsigned o = 0; o < ORDERS; o++) {
		b->head[o] = NIL;
		b->nr_free[o] = 0;
	}
	/* Cover the range with maximal naturally aligned blocks, from the top
	 * down so that the lowest block of each order ends up at the head of
	 * its list. */
	uint64_t pfn = b->end_pfn;
	while (pfn > b->base_pfn) {
		unsigned o = BASELINE_MAX_ORDER;
		while (o && ((pfn & ((1ull << o) - 1)) ||
			     pfn - (1ull << o) < b->base_pfn))
			o--;
		pfn -= 1ull << o;
		uint32_t i = (uint32_t)(pfn - b->base_pfn);
		b->meta[i] = M_FREE | o;
		list_add(b, i, o);
	}
}

int baseline_alloc(struct baseline_buddy *b, unsigned order, uint64_t *out)
{
	ck_spinlock_mcs_context_t node;
	if (order > BASELINE_MAX_ORDER)
		return -1;

	ck_spinlock_mcs_lock(&b->lock, &node);
	unsigned o = order;
	while (o <= BASELINE_MAX_ORDER && b->head[o] == NIL)
		o++;
	if (o > BASELINE_MAX_ORDER) {
		ck_spinlock_mcs_unlock(&b->lock, &node);
		return -1;
	}
	uint32_t i = b->head[o];
	list_del(b, i, o);
	/* Split: keep the lower half, give the upper half back one order
	 * down, until the block has the size asked for. */
	while (o > order) {
		o--;
		uint32_t upper = i + (1u << o);
		b->meta[upper] = M_FREE | o;
		list_add(b, upper, o);
	}
	b->meta[i] = M_ALLOC | order;
	ck_spinlock_mcs_unlock(&b->lock, &node);

	*out = (b->base_pfn + i) << BASELINE_FRAME_SHIFT;
	return 0;
}

int baseline_free(struct baseline_buddy *b, uint64_t phys, unsigned order)
{
	ck_spinlock_mcs_context_t node;
	uint64_t pfn = phys >> BASELINE_FRAME_SHIFT;
	if (phys & ((1u << BASELINE_FRAME_SHIFT) - 1) ||
	    order > BASELINE_MAX_ORDER || pfn < b->base_pfn ||
	    pfn >= b->end_pfn)
		return -1;

	ck_spinlock_mcs_lock(&b->lock, &node);
	uint32_t i = (uint32_t)(pfn - b->base_pfn);
	if (b->meta[i] != (M_ALLOC | order)) {
		ck_spinlock_mcs_unlock(&b->lock, &node);
		return -1;
	}
	b->meta[i] = 0;
	/* Coalesce: the buddy of an order-o block at pfn is at pfn ^ 2^o
	 * (buddies are aligned by physical frame number, so the range need
	 * not start on a large boundary). Merge while it is a free head of
	 * exactly this order. */
	while (order < BASELINE_MAX_ORDER) {
		uint64_t bp = pfn ^ (1ull << order);
		if (bp < b->base_pfn || bp >= b->end_pfn)
			break;
		uint32_t j = (uint32_t)(bp - b->base_pfn);
		if (b->meta[j] != (M_FREE | order))
			break;
		list_del(b, j, order);
		b->meta[j] = 0;
		pfn &= ~(1ull << order);
		order++;
	}
	i = (uint32_t)(pfn - b->base_pfn);
	b->meta[i] = M_FREE | order;
	list_add(b, i, order);
	ck_spinlock_mcs_unlock(&b->lock, &node);
	return 0;
}

uint64_t baseline_free_frames(struct baseline_buddy *b,
			      uint64_t blocks[BASELINE_MAX_ORDER + 1])
{
	uint64_t frames = 0;
	for (unsigned o = 0; o < ORDERS; o++) {
		frames += b->nr_free[o] << o;
		if (blocks)
			blocks[o] = b->nr_free[o];
	}
	return frames;
}

#define BAD(...)                                          \
	do {                                              \
		fprintf(stderr, "baseline_validate: " __VA_ARGS__); \
		fputc('\n', stderr);                      \
		return -1;                                \
	} while (0)

int baseline_validate(struct baseline_buddy *b)
{
	uint64_t n = b->end_pfn - b->base_pfn, free_heads = 0;

	/* The heads must partition the range into aligned blocks. */
	for (uint64_t i = 0; i < n;) {
		uint8_t m = b->meta[i];
		unsigned o = m & M_ORDER;
		uint64_t pfn = b->base_pfn + i;
		if (!(m & (M_FREE | M_ALLOC)) || (m & M_FREE && m & M_ALLOC) ||
		    o > BASELINE_MAX_ORDER)
			BAD("frame %#llx is not the head of a block",
			    (unsigned long long)pfn);
		if (pfn & ((1ull << o) - 1) || i + (1ull << o) > n)
			BAD("block %#llx order %u misaligned or out of range",
			    (unsigned long long)pfn, o);
		for (uint64_t k = 1; k < (1ull << o); k++)
			if (b->meta[i + k])
				BAD("frame inside block %#llx carries %#x",
				    (unsigned long long)pfn, b->meta[i + k]);
		if (m & M_FREE) {
			free_heads++;
			uint64_t bp = pfn ^ (1ull << o);
			if (o < BASELINE_MAX_ORDER && bp >= b->base_pfn &&
			    bp < b->end_pfn &&
			    b->meta[bp - b->base_pfn] == (M_FREE | o))
				BAD("free buddies %#llx and %#llx not merged",
				    (unsigned long long)pfn,
				    (unsigned long long)bp);
		}
		i += 1ull << o;
	}

	/* Every free head is on the list of its order, linked both ways. */
	uint64_t listed = 0;
	for (unsigned o = 0; o < ORDERS; o++) {
		uint64_t count = 0;
		uint32_t prev = NIL;
		for (uint32_t i = b->head[o]; i != NIL; i = b->link[i].next) {
			if (i >= n || b->meta[i] != (M_FREE | o))
				BAD("order-%u list holds frame index %u", o, i);
			if (b->link[i].prev != prev)
				BAD("order-%u list: bad back link at %u", o, i);
			if (++count > n)
				BAD("order-%u list loops", o);
			prev = i;
		}
		if (count != b->nr_free[o])
			BAD("order-%u list has %llu blocks, counter says %llu",
			    o, (unsigned long long)count,
			    (unsigned long long)b->nr_free[o]);
		listed += count;
	}
	if (listed != free_heads)
		BAD("%llu free blocks, %llu on lists",
		    (unsigned long long)free_heads,
		    (unsigned long long)listed);
	return 0;
}
