/* SPDX-License-Identifier: MIT */
/*
 * cairn frames: bootstrap from a memory map, and regions added or removed at
 * run time.
 *
 * Metadata placement: the instance (header, per-CPU hints, region table)
 * followed by each region's chunk entries and bitmap, in one block. Carved,
 * the block is the top of the highest range that can hold it (low memory is
 * scarce), and the region made of that range ends below it (its meta_end
 * is the range's end): no allocation or free can reach those frames, and a
 * free of one is named for what it is (CAIRN_EMETA).
 */
#include "frames_layout.h"
#include "hook.h"

#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))

/* The first whole frame at or above phys. Counted in frames, so a base in
 * the last partial frame of the address space does not wrap to frame 0. */
static inline uint64_t first_frame(cairn_phys_t phys)
{
	return (phys >> CAIRN_FRAME_SHIFT) + !!(phys & (CAIRN_FRAME_SIZE - 1));
}
#define FRAMES_16M ((16ull << 20) >> CAIRN_FRAME_SHIFT)
#define FRAMES_4G ((4ull << 30) >> CAIRN_FRAME_SHIFT)

struct span {
	uint64_t first, end; /* frame numbers */
	cairn_phys_t lo, hi; /* the bytes given for them, partial frames too */
};

static uint64_t instance_bytes(unsigned ncpus)
{
	return ALIGN_UP(sizeof(struct cairn_frames), 64) + (uint64_t)ncpus * sizeof(struct cpu_hint);
}

/* The whole frames of a map entry, [*first, *end); false if none. */
static bool entry_frames(const struct cairn_mem_range *e, uint64_t *first, uint64_t *end)
{
	*first = first_frame(e->base);
	*end = (e->base + e->size) >> CAIRN_FRAME_SHIFT;
	return *end > *first;
}

/* Append s to out[], cut at the area boundaries (a cut is a frame line,
 * where the parts' bytes meet); false when the table has no room for a
 * part. */
static bool spans_add(struct span *out, int *k, struct span s)
{
	static const uint64_t cuts[2] = { FRAMES_16M, FRAMES_4G };
	for (int c = 0; c <= 2; c++) {
		uint64_t stop = c < 2 && s.first < cuts[c] && s.end > cuts[c] ? cuts[c] : s.end;
		if (c < 2 && stop == s.end)
			continue;
		if (*k == CAIRN_MAX_REGIONS)
			return false;
		out[(*k)++] = (struct span){ s.first, stop, s.lo,
					     stop == s.end ? s.hi : stop << CAIRN_FRAME_SHIFT };
		s.first = stop;
		s.lo = stop << CAIRN_FRAME_SHIFT;
	}
	return true;
}

/* The walk's order: by base, then by index (two entries at one base are
 * an overlap, found when the second is visited). */
static inline bool map_before(const struct cairn_mem_range *map, size_t a, size_t b)
{
	return map[a].base < map[b].base || (map[a].base == map[b].base && a < b);
}

/* Entries a walk of a map not listed by base sorts at a time: a max-heap
 * of indices on the stack (2 KiB), then the batch in order. */
#define WALK_BATCH 256u

struct walk {
	const struct cairn_mem_range *map;
	size_t n;
	size_t last;              /* the entry visited last; n: none yet */
	bool sorted;              /* listed by base: walked as it stands */
	unsigned pos, len;        /* batch[pos, len): the next entries */
	size_t batch[WALK_BATCH];
};

/* Restore the max-heap below heap[at] (len entries; larger: later in
 * the walk's order). */
static void heap_down(const struct cairn_mem_range *map, size_t *heap, unsigned len,
		      unsigned at)
{
	for (;;) {
		unsigned big = at, l = 2 * at + 1;
		if (l < len && map_before(map, heap[big], heap[l]))
			big = l;
		if (l + 1 < len && map_before(map, heap[big], heap[l + 1]))
			big = l + 1;
		if (big == at)
			return;
		size_t t = heap[at];
		heap[at] = heap[big];
		heap[big] = t;
		at = big;
	}
}

/* The next WALK_BATCH non-empty entries after w->last in the walk's
 * order, sorted: one pass over the map keeps the least of those seen in a
 * max-heap (an entry past its top is dropped, one before it replaces the
 * top), then heapsort. n log WALK_BATCH compares a batch. */
static void walk_refill(struct walk *w)
{
	const struct cairn_mem_range *map = w->map;
	size_t *heap = w->batch;
	unsigned len = 0;
	for (size_t i = 0; i < w->n; i++) {
		if (!map[i].size || (w->last < w->n && !map_before(map, w->last, i)))
			continue; /* empty, or visited */
		if (len < WALK_BATCH) {
			unsigned at = len++;
			heap[at] = i;
			while (at && map_before(map, heap[(at - 1) / 2], heap[at])) {
				size_t t = heap[at];
				heap[at] = heap[(at - 1) / 2];
				heap[(at - 1) / 2] = t;
				at = (at - 1) / 2;
			}
		} else if (map_before(map, i, heap[0])) {
			heap[0] = i;
			heap_down(map, heap, len, 0);
		}
	}
	for (unsigned end = len; end > 1; end--) { /* the largest to the back */
		size_t t = heap[0];
		heap[0] = heap[end - 1];
		heap[end - 1] = t;
		heap_down(map, heap, end - 1, 0);
	}
	w->pos = 0;
	w->len = len;
}

/* The next entry of the walk, empty ones left out; n at the end. A map
 * listed by base (the bases of its non-empty entries never fall) is
 * walked as it stands, one step an entry; any other a batch at a time. */
static size_t walk_next(struct walk *w)
{
	size_t next;
	if (w->sorted) {
		for (next = w->last < w->n ? w->last + 1 : 0; next < w->n && !w->map[next].size;
		     next++)
			;
	} else {
		if (w->pos == w->len)
			walk_refill(w);
		next = w->pos < w->len ? w->batch[w->pos++] : w->n;
	}
	if (next < w->n)
		w->last = next;
	return next;
}

/* Reject overlaps, trim to whole frames, sort, merge neighbours, split at
 * the area boundaries. Returns the number of spans or a negative error.
 *
 * The map may list far more entries than the table has regions (firmware
 * lists neighbouring ranges apart), so entries are not gathered first: the
 * walk visits them in (base, index) order, with no memory but the spans
 * and a batch of indices on the stack. A map already in that order
 * (firmware's usually is) is walked as it stands, n steps of one; any
 * other a batch of WALK_BATCH entries at a time, each found by one pass
 * over the map (walk_refill): n log n compares for a map of up to
 * WALK_BATCH entries, n / WALK_BATCH passes of n log WALK_BATCH for a
 * larger one. The map is the caller's, read only (perhaps const), and
 * neither meta_size nor init has memory for a sorted copy of any size:
 * the caller's metadata is sized by this very walk, and the carve is
 * placed by it.
 * An overlap is judged on the bytes listed, before the trim: a byte in two
 * entries is the map's error whether or not either holds its
 * frame whole (an entry of no whole frame too), so the verdict does not
 * depend on where the frame lines fall. Only what is left after the merge
 * counts against the table; an overlap is the map's error wherever it
 * lies, so the walk goes on to the end when the table is full.
 * What the map lists outside its entries' whole frames goes into no region
 * and is counted in *skipped (if not NULL): the entries of no whole frame,
 * and the bytes of them and of every entry's partial frames. */
static int normalise(const struct cairn_mem_range *map, size_t n, struct span *out,
		     struct boot_skipped *skipped)
{
	if (!map || n == 0)
		return CAIRN_EINVAL;
	struct walk w; /* (the batch is written before it is read) */
	w.map = map;
	w.n = n;
	w.last = n;
	w.sorted = true;
	w.pos = w.len = 0;
	cairn_phys_t prev = 0;
	for (size_t i = 0; i < n; i++) {
		if (map[i].base + map[i].size < map[i].base)
			return CAIRN_EINVAL;
		if (!map[i].size)
			continue;
		w.sorted = w.sorted && map[i].base >= prev;
		prev = map[i].base;
	}
	int k = 0;
	bool any = false, full = false;
	struct span cur = { 0, 0, 0, 0 }; /* the span being merged */
	uint64_t reach = 0; /* the end of the bytes visited (none: w.last == n) */
	struct boot_skipped skip = { 0, 0 };
	for (;;) {
		bool first = w.last == n;
		size_t next = walk_next(&w);
		if (next == n)
			break;
		/* in base order no overlap means each entry starts at or
		 * past the end of the one before, so reach only grows */
		if (!first && map[next].base < reach)
			return CAIRN_EEXIST;
		reach = map[next].base + map[next].size;
		uint64_t nf, ne;
		if (!entry_frames(&map[next], &nf, &ne)) {
			skip.entries++;
			skip.bytes += map[next].size;
			continue;
		}
		skip.bytes += map[next].size - ((ne - nf) << CAIRN_FRAME_SHIFT);
		/* (frames that meet come from bytes that meet: the entry
		 * before ended on the frame line this one starts at) */
		if (any && cur.end == nf) {
			cur.end = ne;
			cur.hi = reach;
			continue;
		}
		if (any && !spans_add(out, &k, cur))
			full = true;
		any = true;
		cur = (struct span){ nf, ne, map[next].base, reach };
	}
	if (!any)
		return CAIRN_EINVAL;
	if (!spans_add(out, &k, cur) || full)
		return CAIRN_ENOSPC;
	if (skipped)
		*skipped = skip;
	return k;
}

/* Lay a region of span s out in `meta` with every frame free, but for
 * [carve, s.end), the metadata carved from its top (carve == s.end when
 * none): the region ends at carve, and the carve's frames in its last
 * chunk are absent like any frame outside it. The metadata laid out is
 * at most region_meta_bytes(s.first, s.end), which the caller placed. */
static void region_init(struct region *r, struct span s, void *meta, uint64_t carve)
{
	r->area = area_of(s.first);
	r->first = s.first;
	r->end = carve;
	r->meta_end = s.end;
	r->lead = (uint16_t)((s.first << CAIRN_FRAME_SHIFT) - s.lo);
	r->trail = (uint16_t)(s.hi - (s.end << CAIRN_FRAME_SHIFT));
	r->chunk0 = s.first >> CHUNK_SHIFT;
	r->nchunks = ((carve - 1) >> CHUNK_SHIFT) - r->chunk0 + 1;
	r->chunk = meta;
	r->bits = (_Atomic uint64_t *)((char *)meta + ALIGN_UP(r->nchunks * sizeof(uint64_t), 64));
	r->nframes = carve - s.first;
	r->entry_base = (uintptr_t)r->chunk - r->chunk0 * sizeof(uint64_t);
	r->word_base = (uintptr_t)r->bits - r->chunk0 * CHUNK_WORDS * sizeof(uint64_t);
	atomic_store_explicit(&r->exhausted, 0, memory_order_relaxed);
	for (uint64_t c = 0; c < r->nchunks; c++) {
		uint64_t base = (r->chunk0 + c) << CHUNK_SHIFT, free = 0;
		for (unsigned wi = 0; wi < CHUNK_WORDS; wi++) {
			uint64_t v = 0;
			for (unsigned p = 0; p < WORD_FRAMES; p++) {
				uint64_t fr = base + wi * WORD_FRAMES + p;
				if (fr < r->first || fr >= r->end) /* absent */
					v |= (1ull << p) | (1ull << (32 + p));
				else
					free++;
			}
			atomic_init(&r->bits[c * CHUNK_WORDS + wi], v);
		}
		atomic_init(&r->chunk[c], free);
	}
}

/* Metadata bytes for the k spans of a map (cairn_frames_meta_size). */
static uint64_t meta_bytes(const struct span *s, int k, unsigned ncpus)
{
	/* + 64: room to align a caller's buffer up to a cache line */
	uint64_t bytes = 64 + instance_bytes(ncpus);
	for (int i = 0; i < k; i++)
		bytes += ALIGN_UP(region_meta_bytes(s[i].first, s[i].end), 64);
	return bytes;
}

size_t cairn_frames_meta_size(const struct cairn_mem_range *map, size_t n, unsigned ncpus)
{
	struct span s[CAIRN_MAX_REGIONS];
	int k = normalise(map, n, s, NULL);
	if (ncpus == 0)
		ncpus = cairn_port_cpu_count();
	if (k < 0 || ncpus == 0 || ncpus > FRAMES_MAX_CPUS)
		return 0;
	return (size_t)meta_bytes(s, k, ncpus);
}

int cairn_frames_init(struct cairn_frames **out, const struct cairn_mem_range *map,
		      size_t n, const struct cairn_frames_config *cfg)
{
	struct span s[CAIRN_MAX_REGIONS];
	unsigned ncpus = cfg && cfg->ncpus ? cfg->ncpus : cairn_port_cpu_count();
	if (!out || ncpus == 0 || ncpus > FRAMES_MAX_CPUS)
		return CAIRN_EINVAL;
	struct boot_skipped skipped;
	int k = normalise(map, n, s, &skipped);
	if (k < 0)
		return k;
	uint64_t bytes = meta_bytes(s, k, ncpus); /* (one walk of the map, not two) */
	int carved = -1; /* the span the metadata is carved from */
	uint64_t carve = 0;
	char *meta;
	if (cfg && cfg->meta) {
		if (cfg->meta_size < bytes)
			return CAIRN_EINVAL;
		meta = (char *)ALIGN_UP((uintptr_t)cfg->meta, 64);
	} else {
		/* Carve from the top of the highest span that holds it. */
		uint64_t frames = ALIGN_UP(bytes, CAIRN_FRAME_SIZE) >> CAIRN_FRAME_SHIFT;
		int i = k - 1;
		while (i >= 0 && s[i].end - s[i].first <= frames)
			i--;
		if (i < 0)
			return CAIRN_ENOMEM;
		carved = i;
		carve = s[i].end - frames;
		meta = cairn_port_phys_to_virt(carve << CAIRN_FRAME_SHIFT);
	}

	struct cairn_frames *f = (struct cairn_frames *)meta;
	f->ncpus = ncpus;
	atomic_init(&f->nregions, 0);
	atomic_init(&f->table_lock, 0);
	atomic_init(&f->areas_present, 0);
	f->meta_bytes = instance_bytes(ncpus);
	f->removals = 0;
	f->boot_skipped = skipped;
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		atomic_init(&f->transit[a], 0);
	f->cpu = (struct cpu_hint *)(meta + ALIGN_UP(sizeof(struct cairn_frames), 64));
	for (unsigned c = 0; c < ncpus; c++)
		for (unsigned a = 0; a < CAIRN_AREAS; a++) {
			atomic_init(&f->cpu[c].small[a], 0);
			atomic_init(&f->cpu[c].word[a], 0);
			atomic_init(&f->cpu[c].huge[a], 0);
			atomic_init(&f->cpu[c].owned[a], 0);
			atomic_init(&f->cpu[c].park[a], 0);
		}
	for (unsigned i = 0; i < CAIRN_MAX_REGIONS; i++)
		atomic_init(&f->region[i].state, REGION_UNUSED);

	char *at = meta + f->meta_bytes;
	for (int i = 0; i < k; i++) {
		struct region *r = &f->region[i];
		region_init(r, s[i], at, i == carved ? carve : s[i].end);
		r->tag = region_tag((unsigned)i, 0);
		at += ALIGN_UP(region_meta_bytes(s[i].first, s[i].end), 64);
		atomic_store_explicit(&r->state, (uint32_t)(r->tag >> HINT_SLOT_SHIFT),
				      memory_order_relaxed);
		atomic_fetch_or_explicit(&f->areas_present, 1u << r->area, memory_order_relaxed);
	}
	/* Publication to other CPUs is the caller's (it hands them *out). */
	atomic_store_explicit(&f->nregions, (uint32_t)k, memory_order_release);
	*out = f;
	return 0;
}

/* ---- regions at run time (rare: a spin flag keeps adders apart) ---- */

static void table_lock(struct cairn_frames *f)
{
	uint32_t z = 0;
	while (!atomic_compare_exchange_weak_explicit(&f->table_lock, &z, 1,
						      memory_order_acquire,
						      memory_order_relaxed)) {
		z = 0;
		cairn_port_pause();
	}
}

static void table_unlock(struct cairn_frames *f)
{
	atomic_store_explicit(&f->table_lock, 0, memory_order_release);
}

size_t cairn_frames_region_meta_size(cairn_phys_t base, uint64_t size)
{
	uint64_t first = first_frame(base);
	uint64_t end = (base + size) >> CAIRN_FRAME_SHIFT;
	return end > first ? (size_t)region_meta_bytes(first, end) + 64 : 0;
}

int cairn_frames_add_region(struct cairn_frames *f, cairn_phys_t base, uint64_t size,
			    void *meta, size_t meta_size)
{
	struct cairn_mem_range one = { base, size };
	struct span s[CAIRN_MAX_REGIONS];
	int k = normalise(&one, 1, s, NULL);
	if (k < 0)
		return k;
	if (k != 1)
		return CAIRN_EINVAL; /* straddles an area boundary: add each part */
	uint64_t bytes = region_meta_bytes(s[0].first, s[0].end);
	uint64_t carve = s[0].end; /* no carve */
	if (meta) {
		if (meta_size < bytes + 64)
			return CAIRN_EINVAL;
		meta = (void *)ALIGN_UP((uintptr_t)meta, 64);
	} else {
		uint64_t frames = ALIGN_UP(bytes, CAIRN_FRAME_SIZE) >> CAIRN_FRAME_SHIFT;
		if (frames >= s[0].end - s[0].first)
			return CAIRN_ENOMEM;
		carve = s[0].end - frames;
	}

	table_lock(f);
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_relaxed), slot = n;
	for (uint32_t i = 0; i < n; i++) {
		struct region *r = &f->region[i];
		uint32_t state = atomic_load_explicit(&r->state, memory_order_relaxed);
		if (state == REGION_UNUSED && slot == n)
			slot = i; /* reclaimed: the lowest is reused */
		/* On the bytes given, each range's partial frames and carve
		 * too, as init judges its map: a byte in both is the
		 * caller's error, though neither region manages its frame.
		 * The given bytes hold the frames, so no range sharing a
		 * frame passes either. */
		if (region_active(state) && region_given_base(r) < s[0].hi &&
		    s[0].lo < region_given_end(r)) {
			table_unlock(f);
			return CAIRN_EEXIST;
		}
	}
	if (slot == CAIRN_MAX_REGIONS) {
		table_unlock(f);
		return CAIRN_ENOSPC;
	}
	struct region *r = &f->region[slot];
	/* A reused slot's next generation: hints of its earlier fillings
	 * match the new state in no generation but their own (a stale hint
	 * outlives no reclaim, which clears them; one loaded before the
	 * reclaim is in a call that began after the removal, and the slot's
	 * next reuse waits for a grace period that ends that call). */
	unsigned gen = slot < n ? ((unsigned)(r->tag >> (HINT_SLOT_SHIFT + TAG_GEN_SHIFT)) + 1) %
					  TAG_GENS
				: 0;
	if (!meta)
		meta = cairn_port_phys_to_virt(carve << CAIRN_FRAME_SHIFT);
	region_init(r, s[0], meta, carve);
	r->tag = region_tag(slot, gen);
	/* Publish: fields before state, state before the count. */
	atomic_store_explicit(&r->state, (uint32_t)(r->tag >> HINT_SLOT_SHIFT),
			      memory_order_release);
	if (slot == n)
		atomic_store_explicit(&f->nregions, n + 1, memory_order_release);
	atomic_fetch_or_explicit(&f->areas_present, 1u << r->area, memory_order_relaxed);
	table_unlock(f);
	return 0;
}

/* The areas of the active regions, after a removal (under the table lock,
 * which every writer of the bits holds once the instance is published).
 * The bits only steer the short paths to an area's hints; a reader that
 * loads them before this store still finds the region inactive and takes
 * the general path. */
static void areas_recount(struct cairn_frames *f, uint32_t n)
{
	uint32_t present = 0;
	for (uint32_t i = 0; i < n; i++)
		if (region_active(atomic_load_explicit(&f->region[i].state, memory_order_relaxed)))
			present |= 1u << f->region[i].area;
	atomic_store_explicit(&f->areas_present, present, memory_order_relaxed);
}

int cairn_frames_remove_region(struct cairn_frames *f, cairn_phys_t base)
{
	uint64_t first = base >> CAIRN_FRAME_SHIFT;
	int err = CAIRN_ERANGE;
	table_lock(f);
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_relaxed);
	for (uint32_t i = 0; i < n; i++) {
		struct region *r = &f->region[i];
		if (!region_active(atomic_load_explicit(&r->state, memory_order_relaxed)) ||
		    r->first != first || (base & (CAIRN_FRAME_SIZE - 1)))
			continue;
		err = 0;
		if (r->meta_end != r->end) { /* its frames hold live metadata */
			err = CAIRN_EBUSY;
			break;
		}
		/* Take every chunk as if allocating it whole: FREE == capacity
		 * means no frame is allocated and nothing is in flight. */
		unsigned areas = 1u << r->area;
		struct transit_wait tw = transit_start(f, areas);
		uint64_t c;
		for (c = 0; c < r->nchunks; c++) {
			uint64_t e = atomic_load_explicit(&r->chunk[c], memory_order_relaxed);
			uint64_t cap = chunk_capacity(r, c);
			bool ok = false;
			for (int again = 1;; again = 0) {
				while (!(e & CE_HUGE) && ce_free(e) == cap)
					if ((ok = atomic_compare_exchange_weak_explicit(
						     &r->chunk[c], &e, CE_HUGE, memory_order_acq_rel,
						     memory_order_relaxed)))
						break;
				/* Parked frames are free but not counted: unpark the
				 * chunk's (once), then once more. Before giving up,
				 * once more while an unpark in the area was in flight
				 * or ended since the first chunk's try (as alloc_at;
				 * its wait is bounded, under the table lock). */
				if (ok || (!(again && chunk_unpark(f, r, c, 0, CHUNK_FRAMES)) &&
					   !transit_recheck(f, areas, &tw)))
					break;
				e = atomic_load_explicit(&r->chunk[c], memory_order_relaxed);
			}
			if (!ok)
				break;
		}
		if (c < r->nchunks) {
			CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_REMOVE_UNDO, r);
			/* an add to FREE, as every free's (REFILL): a search
			 * meanwhile found the region empty and may have
			 * marked it */
			while (c--)
				atomic_store_explicit(&r->chunk[c], chunk_capacity(r, c), REFILL);
			region_refilled(r);
			err = CAIRN_EBUSY;
			break;
		}
		f->removed[i] = ++f->removals;
		atomic_store_explicit(&r->state, REGION_DEAD, memory_order_release);
		areas_recount(f, n);
		break;
	}
	table_unlock(f);
	return err;
}

/* Clear a hint that names slot i, of any generation (a CAS: a hint the
 * CPU stores meanwhile names another slot, and stays). */
static void hint_clear(_Atomic uint64_t *hp, unsigned i)
{
	uint64_t h = atomic_load_explicit(hp, memory_order_relaxed);
	while (hint_slot(h) == i &&
	       !atomic_compare_exchange_weak_explicit(hp, &h, 0, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

int cairn_frames_reclaim_region(struct cairn_frames *f, cairn_phys_t base)
{
	uint64_t first = base >> CAIRN_FRAME_SHIFT;
	if (base & (CAIRN_FRAME_SIZE - 1))
		return CAIRN_ERANGE;
	table_lock(f);
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_relaxed), slot = n;
	for (uint32_t i = 0; i < n; i++) { /* the oldest removal at base */
		struct region *r = &f->region[i];
		if (atomic_load_explicit(&r->state, memory_order_relaxed) == REGION_DEAD &&
		    r->first == first && (slot == n || f->removed[i] < f->removed[slot]))
			slot = i;
	}
	if (slot == n) {
		table_unlock(f);
		return CAIRN_ERANGE;
	}
	/* The grace period the caller waited for ended every call that saw
	 * the region active: nothing stores a hint of this slot now until
	 * it is filled again. Hints stored before are cleared here, so none
	 * outlives the slot's generations; a CPU that loaded one already
	 * compares it with the state, which is not active or of the next
	 * generation. The park slots name frames, found by region_find:
	 * nothing to clear there. */
	for (unsigned c = 0; c < f->ncpus; c++)
		for (unsigned a = 0; a < CAIRN_AREAS; a++) {
			hint_clear(&f->cpu[c].small[a], slot);
			hint_clear(&f->cpu[c].huge[a], slot);
			hint_clear(&f->cpu[c].owned[a], slot);
		}
	atomic_store_explicit(&f->region[slot].state, REGION_UNUSED, memory_order_relaxed);
	table_unlock(f);
	return 0;
}
