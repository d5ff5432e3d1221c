/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: the instance and the allocation and free paths.
 *
 * Fast paths (the heap's own CPU, no atomics):
 *   alloc: class from the size, pop the class's current slab's free list.
 *   free:  the pagemap names the slab; if ours, push onto its free list.
 * Everything else is out of line: refilling a class, remote frees, large
 * blocks, and the hardened checks' reports.
 */
#include "objects_layout.h"
#include "objects_pages.h"
#include "hook.h"

void cairn__obj_report(int err, const char *what, uintptr_t a, uintptr_t b)
{
	cairn_port_report(err, what, a, b);
}

/* ---- size classes and slab geometry ---- */

const uint8_t cairn__obj_class_by16[OBJ_CLASS_TABLE_MAX / 16 + 1] = {
	0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11, 11, /* .. 256 B */
	12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15, /* .. 512 B */
	16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17,
	18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19, /* .. 1 KiB */
};

unsigned cairn_obj_class(size_t size) { return obj_class(size); }
size_t cairn_obj_class_size(unsigned cls) { return obj_class_size(cls); }
unsigned cairn_obj_class_order(struct cairn_objects *o, unsigned cls)
{
	return o->cls_order[cls];
}

/* A slab starts at 64 KiB (OBJ_SLAB_MIN_ORDER), or at the largest slab
 * from 16 KiB up with no more than OBJ_MAX_OBJS objects (small classes);
 * from there it grows until it holds enough objects (8, or 4 from 16 KiB
 * up) and wastes at most an eighth of itself. */
static void classes_init(struct cairn_objects *o)
{
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++) {
		size_t size = obj_class_size(c), want = size >= (16u << 10) ? 4 : 8;
		unsigned order = OBJ_SLAB_MIN_ORDER;
		while (order > 2 && (OBJ_PAGE << order) / size > OBJ_MAX_OBJS)
			order--;
		for (;; order++) {
			size_t bytes = OBJ_PAGE << order, n = bytes / size;
			if (n >= want && bytes % size <= bytes / 8)
				break;
		}
		size_t n = (OBJ_PAGE << order) / size;
		o->cls_order[c] = (uint8_t)order;
		o->cls_nobjs[c] = (uint16_t)(n > OBJ_MAX_OBJS ? OBJ_MAX_OBJS : n);
	}
}

static void obj_zero(void *p, size_t n)
{
	uint64_t *w = p;
	for (size_t i = 0; i < n / 8; i++)
		w[i] = 0;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* ---- instance ---- */

int cairn_objects_create(struct cairn_objects **out, const struct cairn_objects_config *cfg)
{
	if (!out || !cfg || !cfg->frames || cfg->phys_limit <= cfg->phys_base ||
	    ((cfg->large_cache_kib || cfg->large_max) && !cfg->large_arena) ||
	    (cfg->phys_base & (OBJ_PAGE - 1)) || cfg->harden > CAIRN_OBJ_HARDEN_ON ||
	    (cfg->large_arena && cfg->large_arena->quantum != OBJ_PAGE) ||
	    (cfg->large_qcache && !cfg->large_arena) ||
	    (!cfg->arena_enter != !cfg->arena_leave) || (cfg->arena_enter && !cfg->large_arena))
		return CAIRN_EINVAL;
	/* The calling CPU's heap is heaps[cairn_port_cpu()], unchecked on the
	 * fast paths: every CPU index must have one. */
	unsigned ncpus = cfg->ncpus ? cfg->ncpus : cairn_port_cpu_count();
	if (!ncpus || ncpus < cairn_port_cpu_count())
		return CAIRN_EINVAL;

	size_t head = (sizeof(struct cairn_objects) + ncpus + 63) & ~(size_t)63;
	size_t bytes = head + (size_t)ncpus * sizeof(struct cairn_heap);
	unsigned order = 0;
	while ((OBJ_PAGE << order) < bytes)
		order++;
	if (order > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	struct cairn_objects tmp = { .frames = cfg->frames, .fcache = cfg->fcache };
	uintptr_t mem = pages_get(&tmp, order, false);
	if (!mem)
		return CAIRN_ENOMEM;
	obj_zero((void *)mem, head); /* the heaps are zeroed when they are made */

	struct cairn_objects *o = (void *)mem;
	o->frames = cfg->frames;
	o->fcache = cfg->fcache;
	o->phys_base = cfg->phys_base;
	o->vbase = (uintptr_t)cairn_port_phys_to_virt(cfg->phys_base);
	o->span = (uintptr_t)(cfg->phys_limit - cfg->phys_base);
	o->self_order = order;
	o->ncpus = ncpus;
	o->block_cache_frames = cfg->block_cache_kib ? (unsigned)(cfg->block_cache_kib / 4)
						     : OBJ_BLOCK_CACHE_FRAMES;
	o->large_cache_pages = cfg->large_arena ? cfg->large_cache_kib / 4 : 0;
	/* a stacked block's index + 1 must fit the head's 32 bits */
	o->released_max = (o->span >> (OBJ_PAGE_SHIFT + 2)) < 0xffffffffu ? cfg->released_kib / 4 : 0;
#ifdef CAIRN_DEBUG
	o->harden = cfg->harden != CAIRN_OBJ_HARDEN_OFF;
#else
	o->harden = cfg->harden == CAIRN_OBJ_HARDEN_ON;
#endif
	o->arena = cfg->large_arena;
	o->qc = o->harden ? NULL : cfg->large_qcache;
	o->large_max = cfg->large_max ? cfg->large_max : UINT64_MAX;
	o->arena_enter = cfg->arena_enter;
	o->arena_leave = cfg->arena_leave;
	atomic_init(&o->meta_frames, (uint64_t)1 << order);
	classes_init(o);
	int err = cairn__pm_create(o);
	if (err) {
		pages_put(o, mem, order);
		return err;
	}
	o->heap_made = (void *)(mem + sizeof(*o));
	o->heaps = (void *)(mem + head);
	o->seed = cfg->seed ? cfg->seed : mix64((uintptr_t)o ^ ((uintptr_t)&tmp << 7));
	*out = o;
	return 0;
}

static void heap_init(struct cairn_objects *o, unsigned i)
{
	struct cairn_heap *h = &o->heaps[i];
	obj_zero(h, sizeof(*h));
	h->o = o;
	h->cpu = i;
	h->harden = o->harden;
	for (unsigned c = 0; c < OBJ_FAST_SLOTS; c++)
		h->fast[c] = &o->empty;
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++)
		heap_set_cur(h, c, &o->empty);
	h->pm_vbase = o->vbase;
	h->pm_span = o->span;
	h->pagemap = o->pagemap;
	h->key = (uintptr_t)mix64(o->seed + i * 0x9e3779b97f4a7c15ull) | 1;
	cairn__heap_queue_init(h);
	atomic_init(&h->state, HEAP_ONLINE);
}

/* The first caller makes the heap; a racing one waits for it (a few
 * hundred stores). Only a heap's own CPU (or a caller that owns the
 * slot) gets it this way; remote freers reach only made heaps (they own
 * slabs). */
struct cairn_heap *__attribute__((noinline)) cairn__heap_make(struct cairn_objects *o, unsigned i)
{
	uint8_t expect = HEAP_UNMADE;
	if (atomic_compare_exchange_strong_explicit(&o->heap_made[i], &expect, HEAP_MAKING,
						    memory_order_acquire, memory_order_acquire)) {
		heap_init(o, i);
		atomic_store_explicit(&o->heap_made[i], HEAP_MADE, memory_order_release);
	} else {
		while (!heap_is_made(o, i))
			cairn_port_pause();
	}
	return &o->heaps[i];
}

static void large_destroy_all(struct cairn_objects *o);
static void arena_destroy_all(struct cairn_objects *o);

void cairn_objects_destroy(struct cairn_objects *o)
{
	if (!o)
		return;
	for (unsigned i = 0; i < o->ncpus; i++)
		if (heap_is_made(o, i))
			cairn__heap_destroy_slabs(&o->heaps[i]);
	cairn__released_drain(o);
	if (o->arena)
		arena_destroy_all(o);
	else
		large_destroy_all(o);
	cairn__pm_destroy(o);
	pages_put(o, (uintptr_t)o, o->self_order);
}

struct cairn_heap *cairn_objects_heap(struct cairn_objects *o, unsigned cpu)
{
	return cpu < o->ncpus ? heap_get(o, cpu) : NULL;
}

struct cairn_objects *cairn_heap_objects(struct cairn_heap *h)
{
	return h->o;
}

/* ---- large blocks: whole buddy blocks, order in the pagemap ---- */

/* The statistics' large counts, kept per heap: no shared counter is
 * written by every large operation. */
static void large_count(struct cairn_heap *h, uint64_t objects, uint64_t frames)
{
	if (!h)
		return;
	stat_add(&h->st.large, objects);
	stat_add(&h->st.large_frames, frames);
}

static void large_count_reset(struct cairn_objects *o)
{
	for (unsigned i = 0; i < o->ncpus; i++) {
		if (!heap_is_made(o, i))
			continue;
		atomic_store_explicit(&o->heaps[i].st.large, 0, memory_order_relaxed);
		atomic_store_explicit(&o->heaps[i].st.large_frames, 0, memory_order_relaxed);
	}
}

static unsigned large_order(size_t size)
{
	size_t pages = (size + OBJ_PAGE - 1) >> OBJ_PAGE_SHIFT;
	unsigned order = 0;
	while (((size_t)1 << order) < pages)
		order++;
	return order;
}

static void qcache_drain(struct cairn_objects *o);

/* Exhausted: give back what this heap holds, take back what the other
 * heaps cache, and empty the shared caches (the released stacks; the
 * quantum cache and the large caches, whose ranges pin arena spans), so
 * the caller's one retry sees all memory not handed out or in a slab. */
static void heap_exhausted(struct cairn_heap *h)
{
	cairn__remote_flush(h);
	cairn__heap_collect(h, false);
	cairn__heap_release_empty(h);
	cairn__caches_reclaim(h);
	cairn__released_drain(h->o);
	qcache_drain(h->o);
}

static void *large_alloc(struct cairn_heap *h, size_t size)
{
	struct cairn_objects *o = h->o;
	if (size > ((size_t)OBJ_PAGE << CAIRN_MAX_ORDER))
		return NULL;
	unsigned order = large_order(size);
	uintptr_t p = pages_get(o, order, false);
	/* What the caches hold can serve the retry only if some region of
	 * the memory holds such a block at all: else fail with nothing
	 * changed (a block beyond the whole memory). */
	if (!p && cairn_frames_could_hold(o->frames, order, 0)) {
		heap_exhausted(h);
		p = pages_get(o, order, false);
	}
	if (!p)
		return NULL;
	_Atomic uintptr_t *e = cairn__pm_entry(o, p);
	if (!e) {
		pages_put(o, p, order);
		return NULL;
	}
	/* Interior frames are marked below 2 MiB (within one leaf) only: above, an
	 * interior pointer finds no entry and is reported as foreign. */
	if (order < CAIRN_HUGE_ORDER)
		cairn__pm_set(o, p + OBJ_PAGE, ((uintptr_t)1 << order) - 1, PM_LARGE_TAIL);
	atomic_store_explicit(e, PM_LARGE_ENTRY(order), memory_order_release);
	large_count(h, 1, (uint64_t)1 << order);
	return (void *)p;
}

/* h: the freeing heap (NULL: destroy, which zeroes the counts after). */
static int large_free(struct cairn_objects *o, struct cairn_heap *h, uintptr_t p, uintptr_t e)
{
	if ((e & PM_TAG_MASK) != PM_LARGE || (p & (OBJ_PAGE - 1))) {
		cairn__obj_report(CAIRN_EALIGN, "objects: free of an interior pointer of a large block", p, e);
		return CAIRN_EALIGN;
	}
	/* One CAS takes the block, so of two racing frees one loses. */
	_Atomic uintptr_t *ent = cairn__pm_entry(o, p);
	if (!atomic_compare_exchange_strong_explicit(ent, &e, 0, memory_order_acq_rel,
						     memory_order_relaxed)) {
		cairn__obj_report(CAIRN_EFREE, "objects: large block freed twice", p, e);
		return CAIRN_EFREE;
	}
	unsigned order = PM_LARGE_ORDER(e);
	if (order < CAIRN_HUGE_ORDER)
		cairn__pm_set(o, p + OBJ_PAGE, ((uintptr_t)1 << order) - 1, 0);
	large_count(h, (uint64_t)-1, -((uint64_t)1 << order));
	pages_put(o, p, order);
	return 0;
}

static void large_destroy_all(struct cairn_objects *o)
{
	uintptr_t leaves = (o->span + ((uintptr_t)1 << OBJ_LEAF_SPAN_SHIFT) - 1) >> OBJ_LEAF_SPAN_SHIFT;
	for (uintptr_t l = 0; l < leaves; l++) {
		_Atomic uintptr_t *leaf = atomic_load_explicit(&o->pagemap[l], memory_order_relaxed);
		for (unsigned i = 0; leaf != o->zero_leaf && i < (1u << OBJ_LEAF_SHIFT); i++) {
			uintptr_t e = atomic_load_explicit(&leaf[i], memory_order_relaxed);
			if ((e & PM_TAG_MASK) == PM_LARGE)
				large_free(o, NULL, o->vbase + ((l << OBJ_LEAF_SHIFT) + i) * OBJ_PAGE, e);
		}
	}
	large_count_reset(o);
}

/* ---- large objects in a range arena ----
 *
 * A large object is one allocated extent of the arena: start, length
 * (pages) and owner cookie are all there is, so the arena's tree is the
 * only shared state. Lookup is lock-free; a free checks the owner and
 * frees in one tree update, the single point where a block changes hands:
 * of two racing frees of one block, one is refused there (EFREE) with
 * nothing changed.
 */

static inline uint64_t arena_cookie(const struct cairn_objects *o)
{
	return (uint64_t)(uintptr_t)o;
}

static inline bool arena_ours(const struct cairn_objects *o, uint64_t cookie)
{
	return cookie == arena_cookie(o) || (o->qc && cookie == cairn_qcache_cookie(o->qc));
}

/* Exhaustion: the quantum cache's ranges pin arena spans. */
static void qcache_drain(struct cairn_objects *o)
{
	if (o->qc) {
		arena_enter(o);
		cairn_qcache_drain_all(o->qc);
		arena_leave(o);
	}
}

/* ---- the heaps' large caches ----
 *
 * A large object of up to OBJ_LC_MAX_PAGES pages in the pagemap's range
 * (an arena in place) has an entry on its first page: PM_X_LIVE and its
 * pages while handed out, PM_X_CACHED while a heap keeps it, 0 once it went
 * back to the arena. A free takes the entry LIVE -> CACHED with one CAS,
 * the point where the block changes hands (of two racing frees one fails
 * the CAS and reports; a free of a cached range finds CACHED and reports),
 * and pushes the range onto its heap's bin; an allocation of n pages takes
 * a range of at least n among the first four of bin(n), else the newest of
 * bins bin(n) + 1 .. bin(n) + OBJ_LC_ABOVE (at most 2n pages), and stores
 * LIVE. Neither
 * touches the arena's tree: the range stays allocated there (cookie: the
 * instance). Entries are relaxed atomics, as a slab's are: a range in a
 * heap's cache is that heap's alone, and a free of a block comes after
 * its allocation by the program's own synchronisation. A range going back
 * to the arena is RETIRING until the tree has it, then its entry is
 * cleared unless a new owner already wrote it or another give-back marked
 * it since (arena_give_back), so no
 * stale head survives into an extent that may later start elsewhere (or
 * hold slabs), and no second free reaches the tree meanwhile. Links are
 * encoded as free lists are (hardened: with the heap's key), and every
 * link followed must name a CACHED entry of its own bin, else the rest of
 * the bin is dropped and reported (leaked, never followed).
 */

/* The entry stays non-zero (RETIRING: a free finds it and reports) until
 * the tree has the range back; it is cleared after, by a CAS that fails
 * harmlessly if the range was meanwhile allocated again and its new owner
 * stored an entry of its own. Clearing first would send a racing second
 * free to the tree, which frees whatever extent starts at p: after a
 * reallocation there, another owner's live object. The mark names the
 * giver, the heap `by` whose holder runs this (p's cache's, or a
 * reclaimer's own): between the tree update and the CAS, another heap may
 * take p, cache it and give it back in turn, and a mark of the same value
 * (p's length alone) was cleared by this CAS while that give-back had yet
 * to free p in the tree, so a second free of p reached the tree and freed
 * it under the give-back (objects_retiring_order). A holder does one thing
 * at a time, so no other give-back in flight stores this mark. */
static void arena_give_back(struct cairn_heap *by, uintptr_t p)
{
	struct cairn_objects *o = by->o;
	_Atomic uintptr_t *slot = pm_slot(o, p);
	uintptr_t retiring = PM_RETIRING(PM_X_VALUE(atomic_load_explicit(slot, memory_order_relaxed)),
					 by->cpu);
	atomic_store_explicit(slot, retiring, memory_order_relaxed);
	uint64_t len;
	arena_enter(o);
	int err = cairn_arena_free_owned(o->arena, p, arena_cookie(o), &len);
	arena_leave(o);
	if (err)
		cairn__obj_report(err, "objects: cached large block not allocated in the arena", p, 0);
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_GIVE_BACK, by);
	atomic_compare_exchange_strong_explicit(slot, &retiring, 0, memory_order_relaxed,
						memory_order_relaxed);
}

/* The link at r (the range after prev, or the bin's head) is not a cached
 * range: cut the bin there and recount every bin. The recount checks each
 * link as take does, and more: the range in its bin, not already on the
 * bin (a cycle) and within the bin's count; a bad link cuts its bin too
 * and is reported. The ranges past a cut cannot be found (their link is
 * gone): they stay CACHED and allocated, counted in lcache_lost. A
 * corrupted cache only: the quadratic cycle check costs nothing else. */
static void lcache_corrupt(struct cairn_heap *h, unsigned bin, uintptr_t prev, uintptr_t r)
{
	cairn__obj_report(CAIRN_ECORRUPT, "objects: large cache link overwritten", r, 0);
	if (prev)
		obj_set_word(prev, obj_encode(h, prev, 0));
	else
		h->lcache[bin] = 0;
	uint64_t pages = 0;
	for (unsigned b = 0; b < OBJ_LC_BINS; b++) {
		unsigned was = h->lcache_n[b], n = 0;
		uintptr_t last = 0;
		for (uintptr_t q = h->lcache[b]; q;) {
			uint64_t len = lc_is_cached(h->o, q) ? PM_X_VALUE(pm_lookup(h->o, q)) : 0;
			bool bad = n == was || !len || lc_bin(len) != b;
			/* a cycle: q is one of the n ranges counted (checked links) */
			uintptr_t s = h->lcache[b];
			for (unsigned k = 0; !bad && k < n; k++, s = obj_decode(h, s, obj_word(s)))
				bad = s == q;
			if (bad) {
				cairn__obj_report(CAIRN_ECORRUPT, "objects: large cache link overwritten", q, 0);
				if (last)
					obj_set_word(last, obj_encode(h, last, 0));
				else
					h->lcache[b] = 0;
				break;
			}
			pages += len;
			n++;
			last = q;
			q = obj_decode(h, q, obj_word(q));
		}
		h->lcache_lost += was - n;
		h->lcache_n[b] = n;
	}
	atomic_store_explicit(&h->lcache_pages, (unsigned)pages, memory_order_relaxed);
}

/* A cached range of at least `pages` (its length in *len), or 0: one of
 * the first four of bin(pages), else the newest of the next OBJ_LC_ABOVE
 * bins, whose every range fits. */
static uintptr_t lcache_take(struct cairn_heap *h, uint64_t pages, uint64_t *len)
{
	unsigned b = lc_bin(pages);
	for (unsigned bin = b; bin < OBJ_LC_BINS && bin <= b + OBJ_LC_ABOVE; bin++) {
		uintptr_t prev = 0, r = h->lcache[bin];
		/* a few of bin b may be too short; any above fits */
		for (unsigned n = 0; r && n < 4; n++) {
			/* a link must name a cached range of this bin: one of
			 * another bin is still on that bin's list, and its
			 * count and this one's would both be wrong */
			uint64_t l = lc_is_cached(h->o, r) ? PM_X_VALUE(pm_lookup(h->o, r)) : 0;
			if (unlikely(!l || lc_bin(l) != bin)) {
				lcache_corrupt(h, bin, prev, r);
				break;
			}
			uintptr_t next = obj_decode(h, r, obj_word(r));
			if (l >= pages) {
				if (prev)
					obj_set_word(prev, obj_encode(h, prev, next));
				else
					h->lcache[bin] = next;
				h->lcache_n[bin]--;
				stat_add(&h->lcache_pages, -(unsigned)l);
				atomic_store_explicit(pm_slot(h->o, r), PM_X_ENTRY(PM_X_LIVE, l),
						      memory_order_relaxed);
				*len = l;
				return r;
			}
			prev = r;
			r = next;
		}
	}
	return 0;
}

/* The cache is full and a range of `pages` (bin b) is freed: which goes
 * back to the arena? While some bin holds more ranges than b, the newest
 * of the fullest goes, until the new range fits (true); if that cannot
 * make room, nothing is evicted and the new range goes back itself
 * (false). The evictions are planned first, on copies of the counts and
 * heads (reading each range's entry for its length), and made only if
 * they suffice: evicting as it went, a range that could never fit
 * emptied the cache before giving itself back. Giving back the new range
 * alone kept whatever lengths came first, and a cache of many ranges of
 * a few lengths missed the others: spread over the bins it serves more
 * requests with the same pages (big, 1 thread: 87% -> 92% of
 * allocations served). */
static bool lcache_make_room(struct cairn_heap *h, unsigned b, uint64_t pages)
{
	struct cairn_objects *o = h->o;
	/* bins below hold nothing (OBJ_LC_MIN_PAGES) */
	const unsigned first = lc_bin(OBJ_LC_MIN_PAGES);
	if (pages > o->large_cache_pages)
		return false; /* alone beyond the bound */
again:;
	/* n: the counts as the plan leaves them; evict[m]: ranges planned
	 * off bin m, the last of them last[m] */
	unsigned n[OBJ_LC_BINS], evict[OBJ_LC_BINS];
	uintptr_t last[OBJ_LC_BINS];
	for (unsigned i = first; i < OBJ_LC_BINS; i++) {
		n[i] = h->lcache_n[i];
		evict[i] = 0;
	}
	for (uint64_t left = stat_get(&h->lcache_pages); left + pages > o->large_cache_pages;) {
		unsigned m = first;
		for (unsigned i = first + 1; i < OBJ_LC_BINS; i++)
			if (n[i] > n[m])
				m = i;
		if (n[m] <= n[b])
			return false;
		uintptr_t prev = evict[m] ? last[m] : 0;
		uintptr_t r = prev ? obj_decode(h, prev, obj_word(prev)) : h->lcache[m];
		uint64_t l = lc_is_cached(o, r) ? PM_X_VALUE(pm_lookup(o, r)) : 0;
		if (unlikely(!l || lc_bin(l) != m)) { /* as in lcache_take */
			lcache_corrupt(h, m, prev, r);
			if (stat_get(&h->lcache_pages) + pages <= o->large_cache_pages)
				return true;
			goto again;
		}
		left -= l;
		n[m]--;
		evict[m]++;
		last[m] = r;
	}
	/* the plan suffices: each bin's planned ranges are its newest, every
	 * link on the way checked above */
	for (unsigned m = first; m < OBJ_LC_BINS; m++)
		for (; evict[m]; evict[m]--) {
			uintptr_t r = h->lcache[m];
			h->lcache[m] = obj_decode(h, r, obj_word(r));
			h->lcache_n[m]--;
			stat_add(&h->lcache_pages, -(unsigned)PM_X_VALUE(pm_lookup(o, r)));
			arena_give_back(h, r);
		}
	return true;
}

/* A free at a RETIRING entry, refused: a second free of the range going
 * back (EFREE), unless the tree has it back and p is now inside another
 * extent of ours that starts before it, whose interior pointer p is
 * (EALIGN, as after the giver's CAS). The arena's lock-free lookup, on
 * this error path alone; the mark stays the giver's either way. */
static int retiring_err(struct cairn_objects *o, uintptr_t p)
{
	uint64_t start, len, cookie;
	arena_enter(o);
	int r = cairn_arena_lookup(o->arena, p, &start, &len, &cookie);
	arena_leave(o);
	return r == 0 && start != p && arena_ours(o, cookie) ? CAIRN_EALIGN : CAIRN_EFREE;
}

/* The free of a large object with an entry (e: tag PM_X). */
static int __attribute__((noinline)) lcache_free(struct cairn_heap *h, uintptr_t p, uintptr_t e)
{
	struct cairn_objects *o = h->o;
	int err = 0;
	if (PM_X_KIND(e) == PM_X_STACKED)
		err = CAIRN_ERANGE;
	else if (p & (OBJ_PAGE - 1))
		err = CAIRN_EALIGN;
	else if (PM_X_KIND(e) != PM_X_LIVE)
		err = PM_X_KIND(e) == PM_X_RETIRING ? retiring_err(o, p) : CAIRN_EFREE;
	uint64_t pages = PM_X_VALUE(e);
	if (!err &&
	    !atomic_compare_exchange_strong_explicit(pm_slot(o, p), &e,
						     PM_X_ENTRY(PM_X_CACHED, pages),
						     memory_order_relaxed, memory_order_relaxed))
		err = CAIRN_EFREE; /* a racing free of the same block won */
	switch (err) {
	case 0:
		break;
	case CAIRN_ERANGE:
		cairn__obj_report(err, "objects: free of a pointer this instance never handed out", p, 0);
		return err;
	case CAIRN_EALIGN:
		cairn__obj_report(err, "objects: free of an interior pointer of a large block", p, 0);
		return err;
	default:
		cairn__obj_report(err, "objects: large block freed twice (or never allocated)", p, 0);
		return err;
	}
	large_count(h, (uint64_t)-1, -pages);
	unsigned b = lc_bin(pages);
	if (pages < OBJ_LC_MIN_PAGES || !caches_try(h)) {
		arena_give_back(h, p);
		return 0;
	}
	bool room = stat_get(&h->lcache_pages) + pages <= o->large_cache_pages ||
		    lcache_make_room(h, b, pages);
	if (room) {
		obj_set_word(p, obj_encode(h, p, h->lcache[b]));
		h->lcache[b] = p;
		h->lcache_n[b]++;
		stat_add(&h->lcache_pages, (unsigned)pages);
	}
	caches_done(h);
	if (!room)
		arena_give_back(h, p);
	return 0;
}

/* Every cached range back to the arena; the caller holds the caches (h's
 * holder, or the holder of `by` reclaiming them). */
void cairn__large_cache_flush_held(struct cairn_heap *h, struct cairn_heap *by)
{
	for (unsigned b = 0; b < OBJ_LC_BINS; b++) {
		uintptr_t r = h->lcache[b];
		unsigned n = h->lcache_n[b];
		h->lcache[b] = 0;
		h->lcache_n[b] = 0;
		for (; r; n--) {
			/* a cycle or a link into another bin: past the count or
			 * in the wrong bin (a range given back is no longer CACHED) */
			if (unlikely(!n || !lc_is_cached(h->o, r) ||
				     lc_bin(PM_X_VALUE(pm_lookup(h->o, r))) != b)) {
				cairn__obj_report(CAIRN_ECORRUPT, "objects: large cache link overwritten", r, 0);
				h->lcache_lost += n; /* the rest of the bin: unreachable */
				break;
			}
			uintptr_t next = obj_decode(h, r, obj_word(r));
			arena_give_back(by, r);
			r = next;
		}
	}
	atomic_store_explicit(&h->lcache_pages, 0, memory_order_relaxed);
}

/* Offline or this heap's exhaustion: nothing to do when a reclaimer has
 * the caches (it empties both). */
void cairn__large_cache_flush(struct cairn_heap *h)
{
	if (!caches_try(h))
		return;
	cairn__large_cache_flush_held(h, h);
	caches_done(h);
}

static void *__attribute__((noinline)) arena_alloc(struct cairn_heap *h, size_t size, size_t align)
{
	struct cairn_objects *o = h->o;
	if (size > ((size_t)1 << 62))
		return NULL;
	uint64_t bytes = (size + OBJ_PAGE - 1) & ~(uint64_t)(OBJ_PAGE - 1), addr, pages = 0;
	/* No span can hold it: fail now, as the buddy path does above its
	 * largest order, before the exhaustion path below takes back every
	 * heap's caches for a retry that cannot succeed either. No overflow:
	 * bytes <= 2^62 and align <= 2^63. */
	if (bytes + (align > OBJ_PAGE ? align - OBJ_PAGE : 0) > o->large_max)
		return NULL;
	bool small = o->large_cache_pages && bytes <= (uint64_t)OBJ_LC_MAX_PAGES << OBJ_PAGE_SHIFT;
	if (small && align <= OBJ_PAGE && caches_try(h)) {
		addr = lcache_take(h, bytes >> OBJ_PAGE_SHIFT, &pages);
		caches_done(h);
		if (addr) {
			large_count(h, 1, pages);
			return (void *)(uintptr_t)addr;
		}
	}
	bool cached = o->qc && align <= OBJ_PAGE;
	for (int tries = 0;; tries++) {
		arena_enter(o);
		int err = cached ? cairn_qcache_alloc(o->qc, bytes, &addr)
				 : cairn_arena_xalloc(o->arena, bytes, align > OBJ_PAGE ? align : 0,
						      0, 0, 0, 0, CAIRN_FIT_FIRST,
						      arena_cookie(o), &addr);
		arena_leave(o);
		if (!err)
			break;
		/* The exhaustion path gives back what could make room (cached
		 * ranges and slab blocks, to the arena and its frames); with
		 * no bound from the embedder (large_max 0) the arena says
		 * whether any span could ever hold the request, its alignment
		 * counted: if none could, fail with nothing changed. Only
		 * after a failure, so it costs a served request nothing. */
		if (err != CAIRN_ENOMEM || tries ||
		    !cairn_arena_could_hold(o->arena, bytes, align > OBJ_PAGE ? align : 0))
			return NULL;
		heap_exhausted(h);
	}
	/* In the pagemap's range, the entry that lets its free skip the tree
	 * (no leaf and no frame for one: the free goes through the tree). */
	if (small && !cached && addr - o->vbase < o->span) {
		_Atomic uintptr_t *slot = cairn__pm_entry(o, (uintptr_t)addr);
		if (slot)
			atomic_store_explicit(slot,
					      PM_X_ENTRY(PM_X_LIVE, bytes >> OBJ_PAGE_SHIFT),
					      memory_order_relaxed);
	} else if (o->large_cache_pages && addr - o->vbase < o->span &&
		   pm_lookup(o, (uintptr_t)addr)) {
		/* An object without an entry (above OBJ_LC_MAX_PAGES, or from
		 * the quantum cache) at the address of a range given back
		 * since: its RETIRING entry is cleared only after the tree
		 * update this allocation came after, and the object's free or
		 * usable size must not read it. Nothing else can be there:
		 * the extent is ours, slabs never share frames with the arena. */
		atomic_store_explicit(pm_slot(o, (uintptr_t)addr), 0, memory_order_relaxed);
	}
	large_count(h, 1, bytes >> OBJ_PAGE_SHIFT);
	return (void *)(uintptr_t)addr;
}

/* The large object at p: its length, or 0 with the error (not reported). */
static uint64_t arena_find(struct cairn_objects *o, uintptr_t p, uint64_t *cookie, int *err)
{
	uint64_t start, len;
	int r = cairn_arena_lookup(o->arena, p, &start, &len, cookie);
	if (r == 0 && !arena_ours(o, *cookie))
		r = CAIRN_ERANGE;
	else if (r == 0 && start != p)
		r = CAIRN_EALIGN;
	*err = r;
	return r ? 0 : len;
}

/* One tree update checks the owner and frees; a range of the quantum
 * cache (another cookie) is looked up and goes back to the cache. The
 * tree reports a pointer inside an allocated range (EALIGN) before it
 * compares owners: inside another owner's range, p is foreign (ERANGE,
 * as that range's start is), which one lookup on this error path tells. */
static int __attribute__((noinline)) arena_free(struct cairn_heap *h, uintptr_t p)
{
	struct cairn_objects *o = h->o;
	uint64_t len, cookie;
	arena_enter(o);
	int err = cairn_arena_free_owned(o->arena, p, arena_cookie(o), &len);
	if (err == CAIRN_EBUSY && o->qc) {
		len = arena_find(o, p, &cookie, &err);
		if (!err && cairn_qcache_free(o->qc, p, len))
			err = CAIRN_EFREE; /* a racing free of the same block won */
	} else if (err == CAIRN_EALIGN) {
		(void)arena_find(o, p, &cookie, &err);
		if (err != CAIRN_ERANGE) /* not foreign (nor in no span by now) */
			err = CAIRN_EALIGN;
	}
	arena_leave(o);
	if (!err) {
		large_count(h, (uint64_t)-1, -(len >> OBJ_PAGE_SHIFT));
		return 0;
	}
	switch (err) {
	case CAIRN_EALIGN:
		cairn__obj_report(err, "objects: free of an interior pointer of a large block", p, 0);
		break;
	case CAIRN_EFREE:
		cairn__obj_report(err, "objects: large block freed twice (or never allocated)", p, 0);
		break;
	default:
		err = CAIRN_ERANGE;
		cairn__obj_report(err, "objects: free of a pointer this instance never handed out", p, 0);
	}
	return err;
}

struct arena_sweep {
	const struct cairn_objects *o;
	uint64_t start[64], len[64];
	unsigned n;
	bool more;
};

static int arena_sweep_visit(const struct cairn_ext *e, void *arg)
{
	struct arena_sweep *w = arg;
	if ((e->flags & CAIRN_EXT_FREE) || !arena_ours(w->o, e->cookie))
		return 0;
	if (w->n == 64) {
		w->more = true;
		return 1;
	}
	w->start[w->n] = e->start;
	w->len[w->n++] = e->len;
	return 0;
}

/* Quiescent: empty the quantum cache, then free every range we own, 64
 * per walk of the tree (the walk must not run into our own frees). */
static void arena_destroy_all(struct cairn_objects *o)
{
	if (o->qc) {
		for (unsigned c = 0; c < o->ncpus; c++)
			(void)cairn_qcache_drain_cpu(o->qc, c);
		cairn_qcache_drain_all(o->qc);
	}
	struct arena_sweep w = { .o = o };
	do {
		w.n = 0;
		w.more = false;
		cairn_btree_walk(&o->arena->tree, arena_sweep_visit, &w);
		for (unsigned i = 0; i < w.n; i++)
			(void)cairn_arena_free(o->arena, w.start[i], w.len[i]);
	} while (w.more);
	large_count_reset(o);
}

/* ---- allocation ---- */

static void *alloc_slow(struct cairn_heap *h, size_t size);

/* The pop with the checks: the link must decode to an object of s. */
static void *__attribute__((noinline)) slab_pop_hardened(struct cairn_heap *h, struct slab *s,
							 uintptr_t p)
{
	uintptr_t next = obj_decode(h, p, obj_word(p));
	if (unlikely(next && !slab_is_object(s, next))) {
		cairn__obj_report(CAIRN_ECORRUPT,
				  "objects: corrupted free-list link (write after free?); "
				  "rest of the list dropped", p, next);
		next = 0;
		s->damaged = 1;
	}
	live_flip(s, slab_index(s, p));
	s->free = next;
	slab_used_set(s, slab_used(s) + 1);
	return (void *)p;
}

static inline void *slab_pop(struct cairn_heap *h, struct slab *s, uintptr_t p)
{
	if (unlikely(h->harden))
		return slab_pop_hardened(h, s, p);
	s->free = obj_word(p); /* unhardened: a plain link */
	slab_used_set(s, slab_used(s) + 1);
	return (void *)p;
}

/* The fast path: an unhardened pop from the class's current slab, or NULL.
 * Up to 1 KiB the slab comes straight from the size (h->fast, &o->empty
 * when hardened, whose two lists are always empty), so neither the class
 * nor the hardening flag is loaded. */
static inline void *heap_pop(struct cairn_heap *h, size_t size)
{
	struct slab *s;
	if (likely(size <= OBJ_CLASS_TABLE_MAX))
		s = h->fast[(size + 15) >> 4];
	else if (size <= CAIRN_OBJ_SMALL_MAX && !h->harden)
		s = h->cur[obj_class(size)];
	else
		return NULL;
	uintptr_t p = s->free;
	if (unlikely(!p)) {
		/* the refill inline: the remote frees collected into the
		 * slab (o->empty has none: a hardened heap still gets NULL) */
		p = s->local_free;
		if (unlikely(!p))
			return NULL;
		s->local_free = 0;
	}
	s->free = obj_word(p); /* unhardened: a plain link */
	slab_used_set(s, slab_used(s) + 1);
	return (void *)p;
}

void *cairn_heap_alloc_fast(struct cairn_heap *h, size_t size)
{
	return heap_pop(h, size);
}

void *cairn_heap_alloc_slow(struct cairn_heap *h, size_t size)
{
	return alloc_slow(h, size);
}

/* A pop, or one call out of line (a tail call: no frame). */
void *cairn_heap_alloc(struct cairn_heap *h, size_t size)
{
	void *p = heap_pop(h, size);
	return likely(p != NULL) ? p : alloc_slow(h, size);
}

/* A slab that has objects to hand out, as the current slab of the class. */
static bool refill(struct cairn_heap *h, unsigned cls)
{
	struct slab *s = h->cur[cls];
	if (s != &h->o->empty) {
		if (s->local_free) {
			s->free = s->local_free;
			s->local_free = 0;
			return true;
		}
		if (s->capacity < s->nobjs) {
			cairn__slab_extend(h, s);
			return true;
		}
	}
	/* Collect before looking further: remote frees may refill this class. */
	if (cairn__heap_inbox_pending(h)) {
		cairn__heap_collect(h, false);
		s = h->cur[cls];
		if (s != &h->o->empty && s->local_free) {
			s->free = s->local_free;
			s->local_free = 0;
			return true;
		}
	}
	struct slab *next = h->avail[cls];
	if (s != &h->o->empty)
		slab_set_state(h, s, SLAB_FULL);
	if (next) {
		/* (cur names the full slab until here: nothing in between
		 * looks at it, so the fast slots are written once) */
		cairn__avail_remove(h, next);
		slab_set_state(h, next, SLAB_CUR);
		/* the owner's frees first (on free); the collected ones
		 * when those run out */
		if (!next->free) {
			next->free = next->local_free;
			next->local_free = 0;
		}
		heap_set_cur(h, cls, next);
		return true;
	}
	if (s != &h->o->empty) /* before cairn__slab_new, which may collect */
		heap_set_cur(h, cls, &h->o->empty);
	s = cairn__slab_new(h, cls);
	if (!s) {
		heap_exhausted(h);
		if (h->cur[cls] != &h->o->empty || h->avail[cls])
			return refill(h, cls);
		s = cairn__slab_new(h, cls);
		if (!s)
			return false;
	}
	heap_set_cur(h, cls, s);
	return true;
}

static void *__attribute__((noinline)) alloc_refill(struct cairn_heap *h, unsigned cls)
{
	if (!refill(h, cls))
		return NULL;
	struct slab *s = h->cur[cls];
	return slab_pop(h, s, s->free);
}

static void *__attribute__((noinline)) alloc_large(struct cairn_heap *h, size_t size)
{
	return h->o->arena ? arena_alloc(h, size, 0) : large_alloc(h, size);
}

/* Everything but an unhardened pop: a refill, the hardened pop, large. */
static void *__attribute__((noinline)) alloc_slow(struct cairn_heap *h, size_t size)
{
	if (size > CAIRN_OBJ_SMALL_MAX)
		return alloc_large(h, size);
	unsigned cls = obj_class(size);
	struct slab *s = h->cur[cls];
	if (!s->free) {
		if (!s->local_free) /* (always so for o->empty) */
			return alloc_refill(h, cls);
		/* the remote frees collected into the slab */
		s->free = s->local_free;
		s->local_free = 0;
	}
	return slab_pop(h, s, s->free);
}

void *cairn_heap_alloc_aligned(struct cairn_heap *h, size_t size, size_t align)
{
	if (!align || (align & (align - 1)))
		return NULL;
	if (align <= CAIRN_OBJ_MIN)
		return cairn_heap_alloc(h, size);
	/* The arena aligns large objects itself (above a page on request). */
	if (h->o->arena && (size > CAIRN_OBJ_SMALL_MAX || align > CAIRN_OBJ_SMALL_MAX))
		return arena_alloc(h, size ? size : 1, align);
	if (size < align)
		size = align;
	/* Power-of-two classes are naturally aligned: slabs are naturally
	 * aligned blocks at least as big as their objects, and so are large
	 * blocks. Round to the next power of two when the class is not. */
	if (size <= CAIRN_OBJ_SMALL_MAX && (obj_class_size(obj_class(size)) & (align - 1))) {
		size = (size_t)1 << (64 - __builtin_clzll(size - 1));
	}
	return cairn_heap_alloc(h, size);
}

/* ---- free ---- */

/* After a free into s (the owner's push, or a collected remote free): a
 * full slab becomes available, an empty one goes back, unless the heap
 * is online and it is the current slab of its class, or a slab of at
 * most 64 KiB alone on the class's avail list: the next refill of the
 * class takes it as it is, carved, where a released one would have to
 * be made again (a batch of allocations a little over a slab, then its
 * frees, made and released a slab every round). So a class keeps at
 * most one empty slab besides the current one; offline and the heap's
 * exhaustion release them. A damaged slab is never kept: the objects it
 * dropped go back with it. */
void cairn__slab_after_free(struct cairn_heap *h, struct slab *s, bool offline)
{
	if (unlikely(s->state == SLAB_FULL))
		cairn__avail_push(h, s); /* (a collected run may also have emptied it) */
	if (unlikely(slab_used(s) == 0) &&
	    (offline || (s->state != SLAB_CUR &&
			 (s->next || s->prev || s->order > OBJ_SLAB_MIN_ORDER || s->damaged))))
		cairn__slab_release(h, s);
}

static void __attribute__((noinline)) slab_emptied(struct cairn_heap *h, struct slab *s)
{
	cairn__slab_after_free(h, s, false);
}

/* Hardened: may the owner take p, an object of its slab s, back? Not
 * unless it is an object start (EALIGN) handed out (live bit, EFREE).
 * Its index, or the error reported. */
static inline __attribute__((always_inline)) int64_t owned_check(const struct slab *s, uintptr_t p)
{
	if (unlikely(!slab_is_object(s, p))) {
		cairn__obj_report(CAIRN_EALIGN, "objects: free of an interior or misaligned pointer",
				  p, s->base);
		return CAIRN_EALIGN;
	}
	uint32_t i = slab_index(s, p);
	if (unlikely(!live_test(s, i))) {
		cairn__obj_report(CAIRN_EFREE, "objects: double free (or never allocated)", p, s->base);
		return CAIRN_EFREE;
	}
	return i;
}

/* p onto `list`, s's free (the owner's free) or local_free (a collected
 * remote free), its link encoded. */
static inline __attribute__((always_inline)) void owned_push(struct cairn_heap *h, struct slab *s,
							     uintptr_t *list, uintptr_t p, bool offline)
{
	obj_set_word(p, obj_encode(h, p, *list));
	*list = p;
	slab_used_set(s, slab_used(s) - 1);
	cairn__slab_after_free(h, s, offline);
}

/* An object of a slab this heap owns, freed by the owner, goes onto the
 * slab's free list (objects_layout.h). Hardened, also refused while a
 * remote free of it is on its way to us (its pending bit,
 * objects_layout.h: a double free). Out of line: inlined into the free
 * path, it costs that path registers. */
int __attribute__((noinline)) cairn__slab_free_owned(struct cairn_heap *h, struct slab *s,
						   uintptr_t p, bool offline)
{
	if (h->harden) {
		int64_t i = owned_check(s, p);
		if (unlikely(i < 0))
			return (int)i;
		if (unlikely(pending_test(s, (uint32_t)i))) {
			cairn__obj_report(CAIRN_EFREE, "objects: double free (already freed on another "
					  "CPU, not collected yet)", p, s->base);
			return CAIRN_EFREE;
		}
		live_flip(s, (uint32_t)i);
	}
	owned_push(h, s, &s->free, p, offline);
	return 0;
}

/* Hardened: p, collected from a message, goes onto local_free as an
 * unhardened collection's objects do, and its pending bit is cleared
 * before p can be handed out again (a fetch-and: remote freers set other
 * bits of the word meanwhile). */
int cairn__slab_free_collected(struct cairn_heap *h, struct slab *s, uintptr_t p, bool offline)
{
	int64_t i = owned_check(s, p);
	if (unlikely(i < 0))
		return (int)i;
	atomic_fetch_and_explicit(slab_pending(s, (uint32_t)i), ~((uint64_t)1 << (i % 64)),
				  memory_order_relaxed);
	live_flip(s, (uint32_t)i);
	owned_push(h, s, &s->local_free, p, offline);
	return 0;
}

static int __attribute__((noinline)) remote_batch_full(struct cairn_heap *h, struct obj_out *b)
{
	if (b->n >= OBJ_BATCH_MAX)
		cairn__remote_post(h, b);
	else
		cairn__remote_flush(h);
	return 0;
}

/* The batch's first object is its tail; a second slab makes it mixed. */
static inline void remote_track(struct obj_out *b, struct slab *s, uintptr_t p)
{
	if (!b->n) {
		b->tail = p;
		b->slab = s;
	} else if (b->slab != s) {
		b->slab = NULL;
	}
}

static inline int remote_push(struct cairn_heap *h, struct obj_out *b, struct slab *s,
			      uintptr_t p)
{
	remote_track(b, s, p);
	obj_set_word(p, obj_encode(b->dest, p, b->head));
	b->head = p;
	h->out_bytes += s->size;
	if (unlikely(++b->n >= OBJ_BATCH_MAX || h->out_bytes > OBJ_OUT_BYTES_MAX))
		return remote_batch_full(h, b);
	return 0;
}

/* Hardened: may p, an object of another heap's slab s, be freed here?
 * Not if its owner holds it free (live bit clear: freed by the owner, or
 * freed remotely and collected already), nor if another remote free of it
 * is on its way (pending bit set, by this CPU or another, its message
 * posted or not). Either is a double free (or a pointer never handed
 * out), refused before p's words are touched: pushed again, p's batch
 * link or message words would be written over while its first free
 * still uses them, or while the owner's free list links through it.
 * The live bit is read with a relaxed load: a valid free reads it set
 * (objects_layout.h). The fetch-or marks p pending for the owner, which
 * clears the mark when it collects p, before p can be handed out again.
 * An index past s's objects is such a double free too, whose slab was
 * given back and made anew since p was checked against it
 * (slab_index_bounded): refused before either bitmap is touched
 * (objects_reuse_order). */
static bool __attribute__((noinline)) remote_claim(struct slab *s, uintptr_t p)
{
	int64_t at = slab_index_bounded(s, p);
	if (unlikely(at < 0)) {
		cairn__obj_report(CAIRN_EFREE, "objects: double free on another CPU (its slab was "
				  "given back and made anew meanwhile)", p, s->base);
		return false;
	}
	uint32_t i = (uint32_t)at;
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_BITMAP_INDEX, &i);
	uint64_t bit = (uint64_t)1 << (i % 64);
	if (unlikely(!live_test(s, i))) {
		cairn__obj_report(CAIRN_EFREE, "objects: double free on another CPU (its owner holds "
				  "the object free)", p, s->base);
		return false;
	}
	if (unlikely(atomic_fetch_or_explicit(slab_pending(s, i), bit, memory_order_relaxed) & bit)) {
		cairn__obj_report(CAIRN_EFREE, "objects: double free on another CPU (freed remotely "
				  "already, not collected yet)", p, s->base);
		return false;
	}
	return true;
}

/* Hardened checks, or the batch slot holds another destination's. */
static int __attribute__((noinline)) free_remote_slow(struct cairn_heap *h, struct slab *s,
						      uintptr_t p, struct obj_out *b)
{
	if (h->harden) {
		if (unlikely(!slab_is_object(s, p))) {
			cairn__obj_report(CAIRN_EALIGN,
					  "objects: free of an interior or misaligned pointer", p, s->base);
			return CAIRN_EALIGN;
		}
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_REMOTE_CHECKED, h);
		if (unlikely(!remote_claim(s, p)))
			return CAIRN_EFREE;
	}
	if (b->dest != s->owner) {
		if (b->n)
			cairn__remote_post(h, b);
		b->dest = s->owner;
	}
	return remote_push(h, b, s, p);
}

/* Onto the batch for s's owner: a push, and rarely a post. */
static int __attribute__((noinline)) free_remote(struct cairn_heap *h, struct slab *s,
						 uintptr_t p)
{
	struct cairn_heap *dest = s->owner;
	struct obj_out *b = &h->out[dest->cpu % OBJ_OUT_SLOTS];
	if (unlikely(h->harden || b->dest != dest))
		return free_remote_slow(h, s, p, b);
	remote_track(b, s, p);
	obj_set_word(p, b->head); /* unhardened (as is dest): a plain link */
	b->head = p;
	h->out_bytes += s->size;
	if (unlikely(++b->n >= OBJ_BATCH_MAX || h->out_bytes > OBJ_OUT_BYTES_MAX))
		return remote_batch_full(h, b);
	return 0;
}

/* NULL, large objects, pointers that are not ours. */
static int __attribute__((noinline)) free_other(struct cairn_heap *h, uintptr_t p, uintptr_t e)
{
	if (!p)
		return 0;
	if ((e & PM_TAG_MASK) == PM_X)
		return lcache_free(h, p, e);
	if (!e) {
		if (h->o->arena)
			return arena_free(h, p);
		cairn__obj_report(CAIRN_ERANGE, "objects: free of a pointer this instance never handed out",
				  p, 0);
		return CAIRN_ERANGE;
	}
	return large_free(h->o, h, p, e);
}

/* Everything but a plain push: hardened, full or foreign slabs, the rest. */
static int free_slow(struct cairn_heap *h, uintptr_t p, uintptr_t e)
{
	if (unlikely(!e || (e & PM_TAG_MASK)))
		return free_other(h, p, e);
	struct slab *s = (struct slab *)e;
	if (s->owner == h)
		return cairn__slab_free_owned(h, s, p, false);
	return free_remote(h, s, p);
}

/* The fast path: the pagemap names a slab whose free is a plain push by
 * this heap (fast_owner: ours, CUR or AVAIL, unhardened), so push; the
 * last object out of an AVAIL slab and everything else go out of line.
 * An emptied CUR slab stays as it is (cairn__slab_after_free keeps it online), so
 * its state, on the line just written, is tested here: an allocation and
 * its free in turn (one object in and out of the current slab, which
 * every such free empties) make no call. Declared inline (an external
 * definition still: the header's declaration is not) so that, with LTO,
 * a caller's free takes it whole: GCC's size estimate counts each atomic
 * load and store as a call, and used's relaxed pair tipped it over. */
inline int cairn_heap_free(struct cairn_heap *h, void *ptr)
{
	uintptr_t p = (uintptr_t)ptr;
	uintptr_t e = heap_pm_lookup(h, p);
	struct slab *s = (struct slab *)e;
	if (likely(e && !(e & PM_TAG_MASK)) &&
	    likely(atomic_load_explicit(&s->fast_owner, memory_order_relaxed) == h)) {
		if (unlikely(!slab_push_plain(s, p)) && s->state != SLAB_CUR)
			slab_emptied(h, s);
		return 0;
	}
	return free_slow(h, p, e);
}

inline bool cairn_heap_covers(const struct cairn_heap *h, const void *p)
{
	return (uintptr_t)p - h->pm_vbase < h->pm_span;
}

/* The bytes usable at p, whose pagemap entry is e; 0 if p is not an
 * object start of this instance. */
static size_t usable_at(struct cairn_objects *o, uintptr_t p, uintptr_t e)
{
	if (!e && o->arena && p) {
		uint64_t cookie;
		int err;
		arena_enter(o);
		size_t len = (size_t)arena_find(o, p, &cookie, &err);
		arena_leave(o);
		return len;
	}
	if (!e || (e & PM_TAG_MASK) == PM_LARGE_TAIL)
		return 0;
	if ((e & PM_TAG_MASK) == PM_X)
		return PM_X_KIND(e) == PM_X_LIVE && !(p & (OBJ_PAGE - 1))
			       ? (size_t)PM_X_VALUE(e) << OBJ_PAGE_SHIFT : 0;
	if ((e & PM_TAG_MASK) == PM_LARGE)
		return (p & (OBJ_PAGE - 1)) ? 0 : (size_t)OBJ_PAGE << PM_LARGE_ORDER(e);
	struct slab *s = (struct slab *)e;
	return slab_is_object(s, p) ? s->size : 0;
}

size_t cairn_objects_usable_size(struct cairn_objects *o, const void *ptr)
{
	return usable_at(o, (uintptr_t)ptr, pm_lookup(o, (uintptr_t)ptr));
}

/* ---- the calling CPU's heap ---- */

static inline struct cairn_heap *this_heap(struct cairn_objects *o)
{
	return heap_get(o, cairn_port_cpu());
}

void *cairn_objects_alloc(struct cairn_objects *o, size_t size)
{
	unsigned long irq = cairn_port_local_enter();
	void *p = cairn_heap_alloc(this_heap(o), size);
	cairn_port_local_leave(irq);
	return p;
}

void *cairn_objects_alloc_aligned(struct cairn_objects *o, size_t size, size_t align)
{
	unsigned long irq = cairn_port_local_enter();
	void *p = cairn_heap_alloc_aligned(this_heap(o), size, align);
	cairn_port_local_leave(irq);
	return p;
}

int cairn_objects_free(struct cairn_objects *o, void *p)
{
	unsigned long irq = cairn_port_local_enter();
	int err = cairn_heap_free(this_heap(o), p);
	cairn_port_local_leave(irq);
	return err;
}

void cairn_objects_flush(struct cairn_objects *o)
{
	unsigned long irq = cairn_port_local_enter();
	cairn_heap_flush(this_heap(o));
	cairn_port_local_leave(irq);
}

void cairn_objects_cpu_offline(struct cairn_objects *o)
{
	unsigned long irq = cairn_port_local_enter();
	if (o->qc) { /* the CPU's cached ranges go back to the arena */
		arena_enter(o);
		(void)cairn_qcache_drain_cpu(o->qc, cairn_port_cpu());
		arena_leave(o);
	}
	cairn_heap_offline(this_heap(o));
	cairn_port_local_leave(irq);
}

void cairn_objects_cpu_online(struct cairn_objects *o)
{
	unsigned long irq = cairn_port_local_enter();
	cairn_heap_online(this_heap(o));
	cairn_port_local_leave(irq);
}

/* ---- calloc, realloc ---- */


static void obj_copy(void *dst, const void *src, size_t n)
{
	uint64_t *d = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < n / 8; i++)
		d[i] = s[i];
	for (size_t i = n & ~(size_t)7; i < n; i++)
		((unsigned char *)dst)[i] = ((const unsigned char *)src)[i];
}

void *cairn_heap_calloc(struct cairn_heap *h, size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes))
		return NULL;
	void *p = cairn_heap_alloc(h, bytes);
	if (p) /* usable sizes are multiples of 16 */
		obj_zero(p, (bytes + 15) & ~(size_t)15);
	return p;
}

/* Hardened: is p, an object of s, freed? Its live bit clear or its
 * pending bit set; or its index past s's objects: s was given back and
 * made anew since usable_at found p in it (slab_index_bounded), so p was
 * freed (objects_reuse_order). */
static bool realloc_freed(const struct slab *s, uintptr_t p)
{
	int64_t at = slab_index_bounded(s, p);
	if (unlikely(at < 0))
		return true;
	uint32_t i = (uint32_t)at;
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_BITMAP_INDEX, &i);
	return !live_test(s, i) || pending_test(s, i);
}

/* *err: 0, CAIRN_ENOMEM (no new object: p untouched, nothing reported),
 * or the error reported for p (refused, untouched). */
void *cairn_heap_realloc_err(struct cairn_heap *h, void *p, size_t size, int *err)
{
	*err = 0;
	if (!p) {
		void *q = cairn_heap_alloc(h, size);
		if (!q)
			*err = CAIRN_ENOMEM;
		return q;
	}
	/* One lookup for the size and the check below: a second one could
	 * find p's slab given back meanwhile (its free collected) and no
	 * slab to check, and keep p or move it with no error
	 * (objects_realloc_order). */
	uintptr_t e = heap_pm_lookup(h, (uintptr_t)p);
	size_t have = usable_at(h->o, (uintptr_t)p, e);
	if (!have) {
		cairn__obj_report(CAIRN_ERANGE, "objects: realloc of a pointer this instance never handed out",
				  (uintptr_t)p, size);
		*err = CAIRN_ERANGE;
		return NULL;
	}
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_REALLOC_SIZED, h);
	/* Hardened, a freed object is refused before anything happens to it:
	 * kept in place it would be handed back while its owner's free list
	 * holds it, or will once the owner collects its remote free (two
	 * holders); moved it would be copied and then fail the free. Of any
	 * heap's slab: its live bit clear (its owner holds it free) or its
	 * pending bit set (a remote free of it not collected yet). Both are
	 * relaxed loads, as in remote_claim: a valid realloc comes after the
	 * allocation that set the live bit, which came after the collection
	 * that cleared the pending bit, so it reads the bit set and the
	 * other clear; and p's slab, holding p, cannot be given back. The
	 * slab of a freed p of another heap can be, once its owner collected
	 * p, between the lookup above and these loads: its descriptor stays
	 * (type-stable, on the spares with p's live bit clear until a new
	 * slab clears every bit), so p is still found freed. */
	struct slab *s = (struct slab *)e;
	if (h->harden && e && !(e & PM_TAG_MASK) && realloc_freed(s, (uintptr_t)p)) {
		cairn__obj_report(CAIRN_EFREE, "objects: realloc of a freed object", (uintptr_t)p, s->base);
		*err = CAIRN_EFREE;
		return NULL;
	}
	if (!size) {
		*err = cairn_heap_free(h, p);
		return NULL;
	}
	/* Keep the block when the size still fits and does not waste half. */
	if (size <= have && size >= have / 2)
		return p;
	void *q = cairn_heap_alloc(h, size);
	if (!q) {
		*err = CAIRN_ENOMEM;
		return NULL;
	}
	obj_copy(q, p, size < have ? size : have);
	cairn_heap_free(h, p);
	return q;
}

void *cairn_heap_realloc(struct cairn_heap *h, void *p, size_t size)
{
	int err;
	return cairn_heap_realloc_err(h, p, size, &err);
}

void *cairn_objects_calloc(struct cairn_objects *o, size_t n, size_t size)
{
	unsigned long irq = cairn_port_local_enter();
	void *p = cairn_heap_calloc(this_heap(o), n, size);
	cairn_port_local_leave(irq);
	return p;
}

void *cairn_objects_realloc(struct cairn_objects *o, void *p, size_t size)
{
	unsigned long irq = cairn_port_local_enter();
	void *q = cairn_heap_realloc(this_heap(o), p, size);
	cairn_port_local_leave(irq);
	return q;
}
