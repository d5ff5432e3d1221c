/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: slab life cycle, on the owning heap (or its claimer).
 *
 * Descriptors are carved 16 to a frame and never leave their heap until the
 * instance is destroyed: a descriptor is type-stable, so a pagemap entry
 * read by a racing (buggy) free still points at a slab-shaped thing.
 */
#include "objects_layout.h"
#include "objects_pages.h"
#include "hook.h"

/* Spare descriptors looked at before a fresh frame is carved. */
#define DESC_SEARCH 16

/* A descriptor for a slab on the block at b (its leaf made) whose first
 * line (and, hardened, live bitmap) is off the lines of the pagemap entries
 * b's frees load (desc_ruled_out, objects_layout.h): the first such spare
 * among the first DESC_SEARCH, else one of a fresh frame (which always has
 * one). With no frame left, any spare: the placement is worth a few ns a
 * free, not an allocation failure (slot 0 of every descriptor frame is on
 * the line of the top entries of the first 64 MiB, so such spares pile up);
 * it is marked misplaced until desc_put. NULL only with no spare either. */
static struct slab *desc_get(struct cairn_heap *h, uintptr_t b, unsigned order)
{
	uint64_t ruled_out = desc_ruled_out(h->o, b, order, h->harden);
	struct slab **link = &h->spare;
	for (unsigned n = 0; *link && n < DESC_SEARCH; link = &(*link)->next, n++)
		if (!desc_line_ruled_out(ruled_out, *link)) {
			struct slab *d = *link;
			*link = d->next;
			return d;
		}
	uintptr_t frame = pages_get(h->o, desc_frame_order(h), true);
	if (!frame) {
		struct slab *d = h->spare;
		if (d) {
			h->spare = d->next;
			d->misplaced = 1;
		}
		return d;
	}
	atomic_fetch_add_explicit(&h->o->meta_frames, 1u << desc_frame_order(h),
				  memory_order_relaxed);
	/* never 0: a frame has a slot off every ruled-out line (static assertion) */
	unsigned line = (unsigned)__builtin_ctzll(~ruled_out & DESC_LINE_STARTS);
	struct slab *first = (struct slab *)frame, *d = (struct slab *)(frame + line * 64);
	/* release: stats, reaching the frame through desc_frames, reads its
	 * descriptors' used (zeroed above) and the link */
	first->frame_next = atomic_load_explicit(&h->desc_frames, memory_order_relaxed);
	atomic_store_explicit(&h->desc_frames, first, memory_order_release);
	for (unsigned i = OBJ_PAGE / OBJ_DESC_SIZE; i-- > 0;) {
		struct slab *s = (struct slab *)(frame + i * OBJ_DESC_SIZE);
		if (s != d) {
			s->next = h->spare;
			h->spare = s;
		}
	}
	return d;
}

static void desc_put(struct cairn_heap *h, struct slab *d)
{
	slab_set_state(h, d, SLAB_UNUSED);
	d->owner = NULL;
	d->misplaced = 0;
	d->next = h->spare;
	h->spare = d;
}

/* A full slab's first free: it joins its class's avail list at the tail,
 * so the refill (which takes the head) comes to it last, when it has
 * gathered the most frees: larson, one thread, took a slab off the list
 * every 99 allocations while the list was last in first out (the slab
 * taken had just had its first free) and every 194 since. */
void cairn__avail_push(struct cairn_heap *h, struct slab *s)
{
	slab_set_state(h, s, SLAB_AVAIL);
	s->next = NULL;
	s->prev = h->avail_tail[s->cls];
	if (s->prev)
		s->prev->next = s;
	else
		h->avail[s->cls] = s;
	h->avail_tail[s->cls] = s;
}

void cairn__avail_remove(struct cairn_heap *h, struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		h->avail[s->cls] = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		h->avail_tail[s->cls] = s->prev;
	s->next = s->prev = NULL;
}

/* ---- the instance's released blocks ----
 *
 * One Treiber stack per slab order of blocks heaps gave up (their caches
 * full, or the heap going offline), so the next slab anywhere reuses
 * memory that is hot (on a host: already resident) before the frame
 * allocator's untouched frames. The head is [63:32] tag, [31:0] index + 1
 * of the top block (index: offset from the pagemap's base in blocks of
 * the order; 0: empty). A block's link is its first frame's pagemap entry
 * (PM_X_STACKED, the next index + 1): the pagemap lives as long as the
 * instance and its entries are atomics, so a popper that lost a race and
 * reads the link of a block meanwhile popped (and now a slab) reads a
 * stale value race-free, and its CAS fails on the tag, which every push
 * and pop advances (ABA; 2^32 updates within one pop's window).
 *
 * Ordering, as for the depot's stacks: a push stores the link (relaxed)
 * and publishes with a release CAS; a pop loads the head with acquire,
 * the link relaxed, and takes the block with an acquire CAS, so the
 * popper's writes to the block (a new slab) come after every write of the
 * heap that released it. The frame count is a separate relaxed counter
 * that a push reserves before it pushes and a pop releases after it
 * popped, so it bounds the stacks exactly.
 */
static inline uint64_t rs_next(uint64_t old, uint64_t top)
{
	return (((old >> 32) + 1) << 32) | top;
}

static bool released_push(struct cairn_objects *o, uintptr_t b, unsigned order)
{
	uint64_t frames = (uint64_t)1 << order;
	/* Reserve before pushing, so the bound is exact and the stacks never
	 * hold more frames than the counter says. */
	if (atomic_fetch_add_explicit(&o->released_frames, frames, memory_order_relaxed) + frames >
	    o->released_max) {
		atomic_fetch_sub_explicit(&o->released_frames, frames, memory_order_relaxed);
		return false;
	}
	_Atomic uintptr_t *link = cairn__pm_entry(o, b); /* the leaf exists: b was a slab */
	uint64_t idx = ((b - o->vbase) >> (OBJ_PAGE_SHIFT + order)) + 1;
	_Atomic uint64_t *head = &o->released[order];
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed);
	do
		atomic_store_explicit(link, PM_X_ENTRY(PM_X_STACKED, old & 0xffffffffu),
				      memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(head, &old, rs_next(old, idx),
						      memory_order_release, memory_order_relaxed));
	return true;
}

static uintptr_t released_pop(struct cairn_objects *o, unsigned order)
{
	_Atomic uint64_t *head = &o->released[order];
	uint64_t old = atomic_load_explicit(head, memory_order_acquire);
	for (;;) {
		uint64_t top = old & 0xffffffffu;
		if (!top)
			return 0;
		uintptr_t b = o->vbase + ((uintptr_t)(top - 1) << (OBJ_PAGE_SHIFT + order));
		uintptr_t link = pm_lookup(o, b);
		if (atomic_compare_exchange_weak_explicit(head, &old,
							  rs_next(old, PM_X_VALUE(link) & 0xffffffffu),
							  memory_order_acquire, memory_order_acquire)) {
			cairn__pm_set(o, b, 1, 0);
			atomic_fetch_sub_explicit(&o->released_frames, (uint64_t)1 << order,
						  memory_order_relaxed);
			return b;
		}
	}
}

/* Exhaustion and destroy: every released block back to the frames. */
void cairn__released_drain(struct cairn_objects *o)
{
	if (!o->released_max)
		return;
	for (unsigned order = 0; order < OBJ_SLAB_ORDERS; order++)
		for (uintptr_t b; (b = released_pop(o, order));)
			pages_put(o, b, order);
}

/* A block that leaves a heap: to the instance's stacks, else the frames. */
static void block_away(struct cairn_objects *o, uintptr_t b, unsigned order)
{
	if (!o->released_max || !released_push(o, b, order))
		pages_put(o, b, order);
}

/* An empty slab of the order kept on another class's avail list (see
 * cairn__slab_after_free), released: its block serves the new slab, so a kept
 * slab seldom makes the heap ask for more memory. Only list heads are
 * looked at: a kept slab was alone when it emptied, and a slab that gets a
 * free later joins behind it (the list is first in, first out), so it
 * stays the head until a refill takes it; one that emptied behind another
 * slab is found by cairn__heap_release_empty on exhaustion. */
static bool block_steal(struct cairn_heap *h, unsigned order)
{
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++) {
		struct slab *s = h->avail[c];
		if (s && slab_used(s) == 0 && s->order == order) {
			cairn__slab_release(h, s);
			return true;
		}
	}
	return false;
}

/* The newest cached block of the order, or 0 (none, or a reclaimer has
 * the caches). */
static uintptr_t cache_pop(struct cairn_heap *h, unsigned order)
{
	uintptr_t b = 0;
	if (caches_try(h)) {
		b = h->blocks[order];
		if (b) {
			h->blocks[order] = obj_word(b);
			stat_add(&h->block_frames, -(1u << order));
		}
		caches_done(h);
	}
	return b;
}

static uintptr_t block_get(struct cairn_heap *h, unsigned order)
{
	uintptr_t b = cache_pop(h, order);
	if (!b && order <= OBJ_SLAB_MIN_ORDER && block_steal(h, order))
		b = cache_pop(h, order);
	if (b)
		return b;
	if (h->o->released_max && (b = released_pop(h->o, order)))
		return b;
	return pages_get(h->o, order, false);
}

static void block_put(struct cairn_heap *h, uintptr_t b, unsigned order)
{
	if (caches_try(h)) {
		bool room = stat_get(&h->block_frames) + (1u << order) <=
			    h->o->block_cache_frames;
		if (room) {
			obj_set_word(b, h->blocks[order]);
			h->blocks[order] = b;
			stat_add(&h->block_frames, 1u << order);
		}
		caches_done(h);
		if (room)
			return;
	}
	block_away(h->o, b, order);
}

/* Every cached block away; the caller holds the caches. */
static void flush_blocks_held(struct cairn_heap *h)
{
	for (unsigned order = 0; order < OBJ_SLAB_ORDERS; order++)
		while (h->blocks[order]) {
			uintptr_t b = h->blocks[order];
			h->blocks[order] = obj_word(b);
			block_away(h->o, b, order);
		}
	atomic_store_explicit(&h->block_frames, 0, memory_order_relaxed);
}

/* Every cached block away, by the holder; nothing to do when a reclaimer
 * has the caches (it empties both). */
void cairn__heap_flush_blocks(struct cairn_heap *h)
{
	if (!caches_try(h))
		return;
	flush_blocks_held(h);
	caches_done(h);
}

/* Exhaustion of self: every other heap's cached blocks and large ranges
 * back to the instance's stacks, the frames and the arena (the caller
 * drains the stacks next). Both caches under one hold of the word: a
 * holder that finds it taken does without, and takes it that its flushes
 * have nothing to do, so the reclaimer must be emptying both. Taken once
 * per cache, a block the holder released between the two (the word free)
 * stayed in a heap that had gone offline meanwhile, its flush having
 * found the reclaimer in the large cache (objects_reclaim_order). Inside
 * the embedder's gate, as a claim is: a host process forked meanwhile
 * would copy a heap's word taken, with no thread to give it back, and the
 * heap would do without its caches for ever. */
void cairn__caches_reclaim(struct cairn_heap *self)
{
	struct cairn_objects *o = self->o;
	arena_enter(o);
	for (unsigned i = 0; i < o->ncpus; i++) {
		struct cairn_heap *h = &o->heaps[i];
		if (h != self && heap_is_made(o, i) && caches_try(h)) {
			flush_blocks_held(h);
			CAIRN_PERCPU_HOOK(CAIRN_HOOK_RECLAIM_BETWEEN, h);
			cairn__large_cache_flush_held(h, self);
			caches_done(h);
		}
	}
	arena_leave(o);
}

struct slab *cairn__slab_new(struct cairn_heap *h, unsigned cls)
{
	struct cairn_objects *o = h->o;
	unsigned order = o->cls_order[cls];
	uintptr_t base = block_get(h, order);
	struct slab *s = NULL;
	/* the block first: its descriptor is chosen by where it is */
	if (!base || !cairn__pm_entry(o, base) || !(s = desc_get(h, base, order))) {
		if (base)
			pages_put(o, base, order);
		return NULL;
	}
	uint32_t size = (uint32_t)obj_class_size(cls);
	s->free = s->local_free = 0;
	slab_used_set(s, 0);
	s->capacity = 0;
	s->size = size;
	s->recip = (uint32_t)(((uint64_t)1 << 32) / size + 1);
	s->nobjs = o->cls_nobjs[cls];
	s->base = base;
	s->end = base + (uintptr_t)s->nobjs * size;
	s->owner = h;
	s->cls = (uint8_t)cls;
	s->order = (uint8_t)order;
	slab_set_state(h, s, SLAB_CUR);
	s->damaged = 0;
	s->next = s->prev = NULL;
	if (h->harden)
		for (unsigned i = 0; i < OBJ_MAX_OBJS; i += 64) {
			atomic_store_explicit(&s->live[i / 64], 0, memory_order_relaxed);
			atomic_store_explicit(slab_pending(s, i), 0, memory_order_relaxed);
		}
	cairn__pm_set(o, base, (uintptr_t)1 << order, (uintptr_t)s);
	cairn__slab_extend(h, s);
	stat_add(&h->st.slabs, 1);
	stat_add(&h->st.slab_frames, (uint64_t)1 << order);
	return s;
}

/* Carve about a page worth of objects (at least one) onto `free`. */
void cairn__slab_extend(struct cairn_heap *h, struct slab *s)
{
	uint32_t n = (uint32_t)(OBJ_PAGE / s->size);
	if (n == 0)
		n = 1;
	if (n > s->nobjs - s->capacity)
		n = s->nobjs - s->capacity;
	uintptr_t first = s->base + (uintptr_t)s->capacity * s->size;
	uintptr_t p = first;
	for (uint32_t i = 1; i < n; i++, p += s->size)
		obj_set_word(p, obj_encode(h, p, p + s->size));
	obj_set_word(p, obj_encode(h, p, s->free));
	s->free = first;
	s->capacity += n;
}

/* An empty slab (used == 0) leaves its list and goes back to the page
 * layer; the descriptor goes back to the heap's spares. */
void cairn__slab_release(struct cairn_heap *h, struct slab *s)
{
	struct cairn_objects *o = h->o;
	if (s->state == SLAB_AVAIL)
		cairn__avail_remove(h, s);
	else if (s->state == SLAB_CUR)
		heap_set_cur(h, s->cls, &o->empty);
	cairn__pm_set(o, s->base, (uintptr_t)1 << s->order, 0);
	stat_add(&h->st.slabs, (uint64_t)-1);
	stat_add(&h->st.slab_frames, -((uint64_t)1 << s->order));
	block_put(h, s->base, s->order);
	desc_put(h, s);
}

/* Every empty slab of the heap, the current ones included, and the
 * cached blocks: all back to the page layer. */
void cairn__heap_release_empty(struct cairn_heap *h)
{
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++) {
		struct slab *s = h->cur[c];
		if (s != &h->o->empty && slab_used(s) == 0)
			cairn__slab_release(h, s);
		for (s = h->avail[c]; s;) {
			struct slab *next = s->next;
			if (slab_used(s) == 0)
				cairn__slab_release(h, s);
			s = next;
		}
	}
	cairn__heap_flush_blocks(h);
	cairn__large_cache_flush(h);
}

/* Destroy: every slab and descriptor frame back, whatever it holds. */
void cairn__heap_destroy_slabs(struct cairn_heap *h)
{
	struct cairn_objects *o = h->o;
	cairn__heap_flush_blocks(h);
	for (struct slab *f = atomic_load_explicit(&h->desc_frames, memory_order_relaxed); f;) {
		struct slab *next = f->frame_next;
		for (unsigned i = 0; i < OBJ_PAGE / OBJ_DESC_SIZE; i++) {
			struct slab *s = (struct slab *)((uintptr_t)f + i * OBJ_DESC_SIZE);
			if (s->state != SLAB_UNUSED) {
				cairn__pm_set(o, s->base, (uintptr_t)1 << s->order, 0);
				pages_put(o, s->base, s->order);
			}
		}
		pages_put(o, (uintptr_t)f, desc_frame_order(h));
		f = next;
	}
	atomic_store_explicit(&h->desc_frames, NULL, memory_order_relaxed);
	h->spare = NULL;
}
