/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: statistics (any time) and the invariant checker
 * (quiescent instance).
 */
#include "objects_layout.h"

#include <cairn/arena.h>

#define for_each_slab(h, f, s)                                                   \
	for (struct slab *f = atomic_load_explicit(&(h)->desc_frames,            \
						   memory_order_relaxed);        \
	     f; f = f->frame_next)                                               \
		for (struct slab *s = f; (uintptr_t)s < (uintptr_t)f + OBJ_PAGE;  \
		     s = (struct slab *)((uintptr_t)s + OBJ_DESC_SIZE))          \
			if (s->state != SLAB_UNUSED)

/*
 * Heap i's share, added to *st. Called while the heap's holder works:
 * every field read here is an atomic of one writer at a time, loaded
 * relaxed (a snapshot: each figure a value its field held). The
 * descriptor frames are reached with acquire (objects_slab.c, desc_get),
 * so their zeroed descriptors and links are seen; a frame is never taken
 * off before destroy. A descriptor not in use has used == 0 (zeroed with
 * its frame; a slab is released only when empty), so summing every
 * descriptor's used needs no look at its state.
 */
static void heap_stats(struct cairn_objects *o, unsigned i, struct cairn_objects_stats *st)
{
	if (i >= o->ncpus || !heap_is_made(o, i))
		return;
	struct cairn_heap *h = &o->heaps[i];
	for (struct slab *f = atomic_load_explicit(&h->desc_frames, memory_order_acquire); f;
	     f = f->frame_next)
		for (uintptr_t d = 0; d < OBJ_PAGE; d += OBJ_DESC_SIZE)
			st->objects += slab_used((struct slab *)((uintptr_t)f + d));
	st->slabs += atomic_load_explicit(&h->st.slabs, memory_order_relaxed);
	st->slab_frames += atomic_load_explicit(&h->st.slab_frames, memory_order_relaxed);
	st->cached_frames += stat_get(&h->block_frames);
	st->large_cached_frames += stat_get(&h->lcache_pages);
	st->remote_posted += atomic_load_explicit(&h->st.posted, memory_order_relaxed);
	st->remote_objects += atomic_load_explicit(&h->st.remote_objects, memory_order_relaxed);
	st->remote_collected += atomic_load_explicit(&h->st.collected, memory_order_relaxed);
	st->offline_collects += atomic_load_explicit(&h->st.offline_collects, memory_order_relaxed);
	st->large += atomic_load_explicit(&h->st.large, memory_order_relaxed);
	st->large_frames += atomic_load_explicit(&h->st.large_frames, memory_order_relaxed);
}

void cairn_objects_stats(struct cairn_objects *o, struct cairn_objects_stats *st)
{
	*st = (struct cairn_objects_stats){ 0 };
	for (unsigned i = 0; i < o->ncpus; i++)
		heap_stats(o, i, st);
	st->meta_frames = atomic_load_explicit(&o->meta_frames, memory_order_relaxed);
	st->released_frames = atomic_load_explicit(&o->released_frames, memory_order_relaxed);
}

void cairn_objects_heap_stats(struct cairn_objects *o, unsigned cpu,
			      struct cairn_objects_stats *st)
{
	*st = (struct cairn_objects_stats){ 0 };
	heap_stats(o, cpu, st);
}

static int bad(const char *what, uintptr_t a, uintptr_t b)
{
	cairn_port_report(CAIRN_ECORRUPT, what, a, b);
	return CAIRN_ECORRUPT;
}

/* Length of an encoded list of objects of s; -1 if it leaves the slab or
 * is longer than the slab could hold. */
static long list_len(struct cairn_heap *h, struct slab *s, uintptr_t p)
{
	long n = 0;
	while (p) {
		if (!slab_is_object(s, p) || slab_index(s, p) >= s->capacity || n > (long)s->nobjs)
			return -1;
		if (h->harden && live_test(s, slab_index(s, p)))
			return -1;
		n++;
		p = obj_decode(h, p, obj_word(p));
	}
	return n;
}

/* The heap's large cache: every range CACHED, in its bin, pages summed. */
static int lcache_check(struct cairn_heap *h)
{
	uint64_t pages = 0;
	for (unsigned b = 0; b < OBJ_LC_BINS; b++) {
		uint64_t n = 0;
		for (uintptr_t r = h->lcache[b]; r; r = obj_decode(h, r, obj_word(r))) {
			if (n == h->lcache_n[b] || !lc_is_cached(h->o, r))
				return bad("objects: large cache holds a range not cached", r, b);
			uint64_t len = PM_X_VALUE(pm_lookup(h->o, r));
			if (!len || len > OBJ_LC_MAX_PAGES || lc_bin(len) != b)
				return bad("objects: large cache range in the wrong bin", r, len);
			pages += len;
			n++;
		}
		if (n != h->lcache_n[b])
			return bad("objects: large cache bin count", n, h->lcache_n[b]);
	}
	if (pages != stat_get(&h->lcache_pages))
		return bad("objects: large cache pages", pages, stat_get(&h->lcache_pages));
	return 0;
}

/* The released stacks: every block STACKED, frames summed. */
static int released_check(struct cairn_objects *o)
{
	uint64_t frames = 0;
	for (unsigned order = 0; order < OBJ_SLAB_ORDERS; order++) {
		uint64_t top = atomic_load_explicit(&o->released[order], memory_order_relaxed);
		for (top &= 0xffffffffu; top; frames += (uint64_t)1 << order) {
			uintptr_t b = o->vbase + ((uintptr_t)(top - 1) << (OBJ_PAGE_SHIFT + order));
			uintptr_t e = pm_lookup(o, b);
			if ((e & PM_TAG_MASK) != PM_X || PM_X_KIND(e) != PM_X_STACKED ||
			    frames > o->released_max)
				return bad("objects: released stack broken", b, e);
			top = PM_X_VALUE(e);
		}
	}
	if (frames != atomic_load_explicit(&o->released_frames, memory_order_relaxed))
		return bad("objects: released frames", frames, o->released_frames);
	return 0;
}

/* Every tag-3 entry of the pagemap accounted for: as many STACKED as
 * blocks on the stacks, as many CACHED as ranges in the heaps' caches,
 * and each LIVE one the start of an extent of ours of its length. */
static int pm_check(struct cairn_objects *o)
{
	uint64_t stacked = 0, cached = 0;
	for (unsigned order = 0; order < OBJ_SLAB_ORDERS; order++)
		for (uint64_t top = atomic_load_explicit(&o->released[order], memory_order_relaxed) &
				    0xffffffffu;
		     top; stacked++)
			top = PM_X_VALUE(pm_lookup(o, o->vbase + ((uintptr_t)(top - 1)
								   << (OBJ_PAGE_SHIFT + order))));
	for (unsigned i = 0; i < o->ncpus; i++)
		cached += heap_is_made(o, i) ? o->heaps[i].lcache_lost : 0;
	for (unsigned i = 0; i < o->ncpus; i++)
		for (unsigned b = 0; heap_is_made(o, i) && b < OBJ_LC_BINS; b++) {
			/* links checked and the walk bounded by the bin's count:
			 * an overwritten link or a cycle is reported, not followed */
			struct cairn_heap *h = &o->heaps[i];
			unsigned n = 0;
			for (uintptr_t r = h->lcache[b]; r; r = obj_decode(h, r, obj_word(r)), n++)
				if (n == h->lcache_n[b] || !lc_is_cached(o, r))
					return bad("objects: large cache list broken", r, b);
			cached += n;
		}
	for (unsigned i = 0; i < (1u << OBJ_LEAF_SHIFT); i++)
		if (atomic_load_explicit(&o->zero_leaf[i], memory_order_relaxed))
			return bad("objects: the zero leaf was written", i,
				   atomic_load_explicit(&o->zero_leaf[i], memory_order_relaxed));
	/* the shared empty slab: a pop or a free must never find anything */
	if (o->empty.free || o->empty.local_free || slab_used(&o->empty))
		return bad("objects: the empty slab was written", o->empty.free,
			   (uint64_t)slab_used(&o->empty) << 32 | (o->empty.local_free != 0));
	uintptr_t leaves = (o->span + ((uintptr_t)1 << OBJ_LEAF_SPAN_SHIFT) - 1) >> OBJ_LEAF_SPAN_SHIFT;
	for (uintptr_t l = 0; l < leaves; l++) {
		_Atomic uintptr_t *leaf = atomic_load_explicit(&o->pagemap[l], memory_order_acquire);
		for (unsigned i = 0; leaf != o->zero_leaf && i < (1u << OBJ_LEAF_SHIFT); i++) {
			uintptr_t e = atomic_load_explicit(&leaf[i], memory_order_relaxed);
			uintptr_t p = o->vbase + (((l << OBJ_LEAF_SHIFT) + i) << OBJ_PAGE_SHIFT);
			if ((e & PM_TAG_MASK) != PM_X)
				continue;
			uint64_t start, len, cookie;
			if (PM_X_KIND(e) == PM_X_STACKED) {
				stacked--;
				continue;
			}
			if (PM_X_KIND(e) == PM_X_CACHED)
				cached--; /* and still allocated in the arena */
			else if (PM_X_KIND(e) != PM_X_LIVE)
				return bad("objects: pagemap entry of no kind", p, e);
			if (!o->arena || cairn_arena_lookup(o->arena, p, &start, &len, &cookie) ||
			    start != p || len != PM_X_VALUE(e) << OBJ_PAGE_SHIFT ||
			    cookie != (uintptr_t)o)
				return bad("objects: large object entry without its extent", p, e);
		}
	}
	if (stacked || cached)
		return bad("objects: stacked or cached entries not on their lists", stacked, cached);
	return 0;
}

int cairn_objects_validate(struct cairn_objects *o)
{
	int err = released_check(o);
	if (!err)
		err = pm_check(o);
	if (err)
		return err;
	for (unsigned i = 0; i < o->ncpus; i++) {
		if (!heap_is_made(o, i))
			continue;
		struct cairn_heap *h = &o->heaps[i];
		if ((err = lcache_check(h)))
			return err;
		for (unsigned k = 0; k < OBJ_FAST_SLOTS; k++)
			if (h->fast[k] != (h->harden ? &o->empty : h->cur[obj_class(k << 4)]))
				return bad("objects: fast-path slot does not name the current slab",
					   (uintptr_t)h->fast[k], k);
		for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++) {
			struct slab *s = h->cur[c];
			if (s != &o->empty && (s->state != SLAB_CUR || s->cls != c || s->owner != h))
				return bad("objects: current slab of a class in the wrong state",
					   (uintptr_t)s, c);
			for (s = h->avail[c]; s; s = s->next)
				if (s->state != SLAB_AVAIL || s->cls != c || s->owner != h ||
				    (s->next && s->next->prev != s) ||
				    (!s->next && h->avail_tail[c] != s))
					return bad("objects: avail list broken", (uintptr_t)s, c);
			if (!h->avail[c] && h->avail_tail[c])
				return bad("objects: avail tail of an empty list",
					   (uintptr_t)h->avail_tail[c], c);
		}
		uint64_t slabs = 0, frames = 0;
		for_each_slab(h, f, s) {
			slabs++;
			frames += (uint64_t)1 << s->order;
		}
		if (slabs != atomic_load_explicit(&h->st.slabs, memory_order_relaxed) ||
		    frames != atomic_load_explicit(&h->st.slab_frames, memory_order_relaxed))
			return bad("objects: slabs counted != slabs held", slabs, frames);
		for_each_slab(h, f, s) {
			if (s->owner != h || s->size != obj_class_size(s->cls) ||
			    s->capacity > s->nobjs || s->order != o->cls_order[s->cls])
				return bad("objects: slab descriptor fields", (uintptr_t)s, s->base);
			long nf = list_len(h, s, s->free), nl = list_len(h, s, s->local_free);
			if (nf < 0 || nl < 0)
				return bad("objects: slab free list broken", (uintptr_t)s, s->base);
			if (!s->damaged && (uint64_t)nf + (uint64_t)nl + slab_used(s) != s->capacity)
				return bad("objects: slab counts (free + local_free + used != carved)",
					   s->base, ((uint64_t)nf + (uint64_t)nl) << 32 | slab_used(s));
			if (s->state == SLAB_FULL && (nf || nl || s->capacity != s->nobjs))
				return bad("objects: full slab with free objects", s->base, (uint64_t)nf);
			if (h->harden && !s->damaged) {
				uint64_t live = 0;
				for (unsigned w = 0; w < OBJ_MAX_OBJS / 64; w++)
					for (uint64_t x = atomic_load_explicit(&s->live[w],
									       memory_order_relaxed);
					     x; x &= x - 1)
						live++;
				if (live != slab_used(s))
					return bad("objects: live bits != used", s->base, live);
			}
			/* a remote free on its way names an object handed out */
			for (unsigned i = 0; h->harden && i < OBJ_MAX_OBJS; i += 64) {
				uint64_t w = atomic_load_explicit(slab_pending(s, i),
								  memory_order_relaxed);
				if (w & ~atomic_load_explicit(&s->live[i / 64], memory_order_relaxed))
					return bad("objects: pending remote free of an object not "
						   "handed out", s->base, i);
			}
			for (uintptr_t pg = 0; pg < ((uintptr_t)1 << s->order); pg++)
				if (pm_lookup(o, s->base + pg * OBJ_PAGE) != (uintptr_t)s)
					return bad("objects: pagemap does not name the slab",
						   s->base + pg * OBJ_PAGE, (uintptr_t)s);
			/* after the range-checked lookups: base is ours, its leaf made */
			if (!s->misplaced &&
			    desc_line_ruled_out(desc_ruled_out(o, s->base, s->order, h->harden), s))
				return bad("objects: slab descriptor aliases its pagemap entries",
					   (uintptr_t)s, s->base);
		}
	}
	return 0;
}
