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

static struct slab *desc_get(struct cairn_heap *h)
{
	struct slab *d = h->spare;
	if (likely(d)) {
		h->spare = d->next;
		return d;
	}
	uintptr_t frame = pages_get(h->o, 0, true);
	if (!frame)
		return NULL;
	atomic_fetch_add_explicit(&h->o->meta_frames, 1, memory_order_relaxed);
	struct slab *first = (struct slab *)frame;
	first->frame_next = h->desc_frames;
	h->desc_frames = first;
	for (unsigned i = OBJ_PAGE / OBJ_DESC_SIZE; i-- > 1;) {
		struct slab *s = (struct slab *)(frame + i * OBJ_DESC_SIZE);
		s->next = h->spare;
		h->spare = s;
	}
	return first;
}

static void desc_put(struct cairn_heap *h, struct slab *d)
{
	slab_set_state(h, d, SLAB_UNUSED);
	d->owner = NULL;
	d->next = h->spare;
	h->spare = d;
}

void avail_push(struct cairn_heap *h, struct slab *s)
{
	slab_set_state(h, s, SLAB_AVAIL);
	s->prev = NULL;
	s->next = h->avail[s->cls];
	if (s->next)
		s->next->prev = s;
	h->avail[s->cls] = s;
}

void avail_remove(struct cairn_heap *h, struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		h->avail[s->cls] = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
}

static uintptr_t block_get(struct cairn_heap *h, unsigned order)
{
	uintptr_t b = h->blocks[order];
	if (b) {
		h->blocks[order] = obj_word(b);
		h->block_frames -= 1u << order;
		return b;
	}
	return pages_get(h->o, order, false);
}

static void block_put(struct cairn_heap *h, uintptr_t b, unsigned order)
{
	if (h->block_frames + (1u << order) > h->o->block_cache_frames) {
		pages_put(h->o, b, order);
		return;
	}
	obj_set_word(b, h->blocks[order]);
	h->blocks[order] = b;
	h->block_frames += 1u << order;
}

void heap_flush_blocks(struct cairn_heap *h)
{
	for (unsigned order = 0; order < OBJ_SLAB_ORDERS; order++)
		while (h->blocks[order]) {
			uintptr_t b = h->blocks[order];
			h->blocks[order] = obj_word(b);
			pages_put(h->o, b, order);
		}
	h->block_frames = 0;
}

struct slab *slab_new(struct cairn_heap *h, unsigned cls)
{
	struct cairn_objects *o = h->o;
	struct slab *s = desc_get(h);
	if (!s)
		return NULL;
	unsigned order = o->cls_order[cls];
	uintptr_t base = block_get(h, order);
	if (!base || !pm_entry(o, base)) {
		if (base)
			pages_put(o, base, order);
		desc_put(h, s);
		return NULL;
	}
	uint32_t size = (uint32_t)obj_class_size(cls);
	s->free = s->local_free = 0;
	s->used = 0;
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
		for (unsigned i = 0; i < OBJ_MAX_OBJS / 64; i++)
			s->live[i] = 0;
	pm_set(o, base, (uintptr_t)1 << order, (uintptr_t)s);
	slab_extend(h, s);
	return s;
}

/* Carve about a page worth of objects (at least one) onto `free`. */
void slab_extend(struct cairn_heap *h, struct slab *s)
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
void slab_release(struct cairn_heap *h, struct slab *s)
{
	struct cairn_objects *o = h->o;
	if (s->state == SLAB_AVAIL)
		avail_remove(h, s);
	else if (s->state == SLAB_CUR)
		h->cur[s->cls] = &o->empty;
	pm_set(o, s->base, (uintptr_t)1 << s->order, 0);
	block_put(h, s->base, s->order);
	desc_put(h, s);
}

/* Every empty slab of the heap, the current ones included, and the
 * cached blocks: all back to the page layer. */
void heap_release_empty(struct cairn_heap *h)
{
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++) {
		struct slab *s = h->cur[c];
		if (s != &h->o->empty && s->used == 0)
			slab_release(h, s);
		for (s = h->avail[c]; s;) {
			struct slab *next = s->next;
			if (s->used == 0)
				slab_release(h, s);
			s = next;
		}
	}
	heap_flush_blocks(h);
}

/* Destroy: every slab and descriptor frame back, whatever it holds. */
void heap_destroy_slabs(struct cairn_heap *h)
{
	struct cairn_objects *o = h->o;
	heap_flush_blocks(h);
	for (struct slab *f = h->desc_frames; f;) {
		struct slab *next = f->frame_next;
		for (unsigned i = 0; i < OBJ_PAGE / OBJ_DESC_SIZE; i++) {
			struct slab *s = (struct slab *)((uintptr_t)f + i * OBJ_DESC_SIZE);
			if (s->state != SLAB_UNUSED) {
				pm_set(o, s->base, (uintptr_t)1 << s->order, 0);
				pages_put(o, s->base, s->order);
			}
		}
		pages_put(o, (uintptr_t)f, 0);
		f = next;
	}
	h->desc_frames = NULL;
	h->spare = NULL;
}
