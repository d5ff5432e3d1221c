/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: the pagemap, one entry per frame of the physical range,
 * in two levels: a top array with one leaf pointer per 8 MiB, made at
 * creation, and leaves of 2048 entries (16 KiB each), made on first use
 * and kept until the instance is destroyed. Lookup is two loads, with no
 * test in between: a leaf not made yet is the instance's zero leaf, all
 * entries 0 and never written (entries are written only through
 * cairn__pm_entry, which makes the leaf first, or cairn__pm_set on frames that have one).
 *
 * A leaf is zeroed before it is published with a release CAS; lookups load
 * the leaf pointer with acquire, so they never see its memory before the
 * zeroes. Two CPUs racing to create a leaf: the loser frees its frames.
 * Entries are relaxed atomics: an entry is written by the holder of the
 * frames it describes, and whoever frees an object learned of the object
 * through an allocation that happened after the entry was written.
 */
#include "objects_layout.h"
#include "objects_pages.h"

static uintptr_t pm_leaves(const struct cairn_objects *o)
{
	return (o->span + ((uintptr_t)1 << OBJ_LEAF_SPAN_SHIFT) - 1) >> OBJ_LEAF_SPAN_SHIFT;
}

int cairn__pm_create(struct cairn_objects *o)
{
	uintptr_t bytes = pm_leaves(o) * sizeof(*o->pagemap);
	unsigned order = 0;
	while ((OBJ_PAGE << order) < bytes)
		order++;
	if (order > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	uintptr_t top = pages_get(o, order, false);
	if (!top)
		return CAIRN_ENOMEM;
	uintptr_t zero = pages_get(o, OBJ_LEAF_ORDER, true);
	if (!zero) {
		pages_put(o, top, order);
		return CAIRN_ENOMEM;
	}
	o->pagemap = (void *)top;
	o->pagemap_order = order;
	o->zero_leaf = (void *)zero;
	for (uintptr_t i = 0; i < pm_leaves(o); i++)
		atomic_init(&o->pagemap[i], o->zero_leaf);
	atomic_fetch_add_explicit(&o->meta_frames,
				  ((uint64_t)1 << order) + (1u << OBJ_LEAF_ORDER),
				  memory_order_relaxed);
	return 0;
}

_Atomic uintptr_t *cairn__pm_entry(struct cairn_objects *o, uintptr_t p)
{
	uintptr_t off = p - o->vbase;
	_Atomic(_Atomic uintptr_t *) *slot = &o->pagemap[off >> OBJ_LEAF_SPAN_SHIFT];
	_Atomic uintptr_t *leaf = atomic_load_explicit(slot, memory_order_acquire);
	if (leaf == o->zero_leaf) {
		uintptr_t fresh = pages_get(o, OBJ_LEAF_ORDER, true);
		if (!fresh)
			return NULL;
		_Atomic uintptr_t *expect = o->zero_leaf;
		if (atomic_compare_exchange_strong_explicit(slot, &expect, (void *)fresh,
							    memory_order_acq_rel,
							    memory_order_acquire)) {
			leaf = (void *)fresh;
			atomic_fetch_add_explicit(&o->meta_frames, 1u << OBJ_LEAF_ORDER,
						  memory_order_relaxed);
		} else {
			pages_put(o, fresh, OBJ_LEAF_ORDER);
			leaf = expect;
		}
	}
	return &leaf[(off >> OBJ_PAGE_SHIFT) & ((1u << OBJ_LEAF_SHIFT) - 1)];
}

void cairn__pm_set(struct cairn_objects *o, uintptr_t p, uintptr_t npages, uintptr_t v)
{
	for (uintptr_t i = 0; i < npages; i++) {
		uintptr_t off = p + i * OBJ_PAGE - o->vbase;
		_Atomic uintptr_t *leaf = atomic_load_explicit(&o->pagemap[off >> OBJ_LEAF_SPAN_SHIFT],
							       memory_order_relaxed);
		atomic_store_explicit(&leaf[(off >> OBJ_PAGE_SHIFT) & ((1u << OBJ_LEAF_SHIFT) - 1)],
				      v, memory_order_relaxed);
	}
}

void cairn__pm_destroy(struct cairn_objects *o)
{
	uintptr_t n = pm_leaves(o);
	for (uintptr_t i = 0; i < n; i++) {
		_Atomic uintptr_t *leaf = atomic_load_explicit(&o->pagemap[i], memory_order_relaxed);
		if (leaf != o->zero_leaf)
			pages_put(o, (uintptr_t)leaf, OBJ_LEAF_ORDER);
	}
	pages_put(o, (uintptr_t)o->zero_leaf, OBJ_LEAF_ORDER);
	pages_put(o, (uintptr_t)o->pagemap, o->pagemap_order);
}
