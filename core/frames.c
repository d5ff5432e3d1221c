/* SPDX-License-Identifier: MIT */
/*
 * cairn frames: allocation and free. The metadata and its invariants are
 * described in frames_layout.h; read that first.
 *
 * Memory ordering. Frame contents pass from a freeing CPU to the next
 * allocating CPU through the metadata: every read-modify-write that gives
 * frames back is a release, every one that takes frames is an acquire, and
 * both are acq_rel so a CAS on a word that carries both (a bitmap word shared
 * by several blocks) orders correctly in either direction. A taker's CAS
 * reads from the freer's CAS (or from a later RMW in its release sequence),
 * so what the freer wrote to the frames happens-before the taker's use. On
 * x86 every such RMW is one locked instruction, whatever the order argument.
 * Hints are relaxed: a stale hint costs a failed attempt, never correctness.
 */
#include "frames_layout.h"
#include "hook.h"

#define ACQ_REL memory_order_acq_rel
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define RELAXED memory_order_relaxed

/* The entry of a 2 MiB block's chunk is exactly this (no owner, no count). */
#define HUGE9_HEAD (CE_HUGE | CE_HEAD | (uint64_t)CAIRN_HUGE_ORDER << CE_ORDER_SHIFT)

static inline uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, RELAXED);
}

static inline bool cas(_Atomic uint64_t *p, uint64_t *old, uint64_t new)
{
	return atomic_compare_exchange_weak_explicit(p, old, new, ACQ_REL, RELAXED);
}

static inline bool cas_strong(_Atomic uint64_t *p, uint64_t old, uint64_t new)
{
	return atomic_compare_exchange_strong_explicit(p, &old, new, ACQ_REL, RELAXED);
}

/* A whole chunk given back: an add to FREE (REFILL). */
static inline bool cas_refill(_Atomic uint64_t *ce, uint64_t old)
{
	return atomic_compare_exchange_strong_explicit(ce, &old, CHUNK_FRAMES, REFILL, RELAXED);
}

/* The head word of a block of several words while it is being taken or
 * freed: frame 0 a head, and frame 3 a head too. No free accepts it at
 * any order: frames 0..2 run into a continuation (frames 1 and 2) or into
 * the head at 3, and frame 3, odd, heads only an order-0 block, which the
 * continuation at frame 4 denies. Frame 0 keeps its head bit, so the word
 * never looks like a continuation to the block before it. */
#define WORD_MARKED (ALLOC_HALF | 9ull << 32)

/* n low bits set, n <= 32 */
static inline uint64_t run_mask(unsigned n)
{
	return n >= 32 ? ALLOC_HALF : (1ull << n) - 1;
}

/* Bit positions in a word that are multiples of 2^a frames (a <= 5). */
static const uint32_t align_positions[6] = {
	0xffffffffu, 0x55555555u, 0x11111111u, 0x01010101u, 0x00010001u, 0x00000001u,
};

static inline unsigned this_cpu(const struct cairn_frames *f)
{
	unsigned cpu = cairn_port_cpu();
	return cpu < f->ncpus ? cpu : cpu % f->ncpus; /* no division when sane */
}

/* A huge or owned hint: chunk c (index in the region) of r. Built here,
 * or moved on by one chunk (alloc9). c < 2^43 (a frame number is below
 * 2^52) never reaches the slot field. */
static inline uint64_t chunk_hint(const struct region *r, uint64_t c)
{
	return r->tag | c;
}

/* The place a hint names: a chunk index, or a small hint's word number. */
static inline uint64_t hint_place(uint64_t hint)
{
	return hint & HINT_WORD;
}

/* A small hint: the word of frame (in r), as its global word number. */
static inline uint64_t frame_hint(const struct region *r, uint64_t frame)
{
	return r->tag | frame / WORD_FRAMES;
}

/* The same for word wi of chunk c of r. */
static inline uint64_t small_hint(const struct region *r, uint64_t c, unsigned wi)
{
	return r->tag | ((r->chunk0 + c) * CHUNK_WORDS + wi);
}

static int misuse(int err, const char *what, cairn_phys_t phys, unsigned order)
{
	cairn_port_report(err, what, phys, order);
	return err;
}

static void zero_frames(cairn_phys_t phys, uint64_t frames)
{
	/* A plain loop: the freestanding build forbids turning it into memset. */
	uint64_t *p = cairn_port_phys_to_virt(phys);
	for (uint64_t i = 0; i < frames * (CAIRN_FRAME_SIZE / 8); i++)
		p[i] = 0;
}

/* ---- regions ---- */


/* Region slot i (< CAIRN_MAX_REGIONS) if it is active. No look at
 * nregions: every slot's state starts UNUSED, and one read active by
 * acquire has its fields, stored before the release of the state,
 * visible. */
static inline struct region *active_region(struct cairn_frames *f, unsigned i)
{
	struct region *r = &f->region[i];
	return region_active(atomic_load_explicit(&r->state, ACQUIRE)) ? r : NULL;
}

/* The region a hint names, if that filling of its slot is still active:
 * the state must equal the hint's tag, which holds the slot's generation
 * (frames_layout.h). A hint of 0, or one from a removed region whose slot
 * is unused, dead or filled again since, matches no state. The tag's slot
 * bits index the table as they are: no bounds check. */
static inline struct region *hint_region(struct cairn_frames *f, uint64_t hint)
{
	uint32_t t = (uint32_t)(hint >> HINT_SLOT_SHIFT);
	struct region *r = &f->region[t & TAG_SLOT_MASK];
	return atomic_load_explicit(&r->state, ACQUIRE) == t ? r : NULL;
}

/* ---- chunk counters ---- */

/* Claim between `min` and `max` frames of a chunk's FREE count. `strict`
 * skips chunks another CPU prefers and makes an unowned chunk ours.
 * Returns the number claimed (0: nothing) and whether we took ownership. */
static uint64_t chunk_claim(_Atomic uint64_t *ce, uint64_t min, uint64_t max,
			    unsigned me1, bool strict, bool *owned)
{
	uint64_t e = ld(ce), ne, take;
	do {
		if ((e & CE_HUGE) || ce_free(e) < min)
			return 0;
		unsigned owner = ce_owner(e);
		if (strict && owner != 0 && owner != me1)
			return 0;
		take = ce_free(e) < max ? ce_free(e) : max;
		ne = e - take;
		*owned = strict && owner == 0;
		if (*owned)
			ne |= (uint64_t)me1 << CE_OWNER_SHIFT;
	} while (!cas(ce, &e, ne));
	return take;
}

/* Give n frames to the FREE count of r's chunk entry ce (a free, or a
 * claim undone). */
static void chunk_unclaim(struct region *r, _Atomic uint64_t *ce, uint64_t n)
{
	atomic_fetch_add_explicit(ce, n, REFILL);
	region_refilled(r);
}

/* Drop our soft ownership of a chunk we are moving away from. */
static void chunk_disown(_Atomic uint64_t *ce, unsigned me1)
{
	uint64_t e = ld(ce);
	while (ce_owner(e) == me1 && !(e & CE_HUGE))
		if (cas(ce, &e, e & ~CE_OWNER_MASK))
			break;
}

/* ---- bitmap: taking blocks (FREE already claimed) ---- */

/* Take the order-k block at frame offset `off` of a chunk, if all free. */
static bool bits_take_at(_Atomic uint64_t *w, unsigned off, unsigned k)
{
	unsigned wi = off / WORD_FRAMES, p = off % WORD_FRAMES;
	if (k <= 5) {
		uint64_t mask = run_mask(1u << k) << p;
		uint64_t v = ld(&w[wi]);
		while (!((v | v >> 32) & mask)) /* neither bit: a parked frame is not ours */
			if (cas(&w[wi], &v, v | mask | (1ull << (32 + p))))
				return true;
		return false;
	}
	/* 2..8 whole words: take them in order, undo on the first conflict.
	 * The head word is taken marked (WORD_MARKED) and made the block's
	 * head only once every word is ours: a head word of its own, with
	 * the next word still free, read as an allocated order-5 block, and
	 * the words taken so far as a block one order down, which a double
	 * free of an earlier block there took and counted. The words are
	 * entirely ours once taken, so the last step and the undo are plain
	 * stores. */
	unsigned nw = 1u << (k - 5);
	for (unsigned j = 0; j < nw; j++)
		if (ld(&w[wi + j]) != 0)
			return false;
	for (unsigned j = 0; j < nw; j++) {
		if (!cas_strong(&w[wi + j], 0, j == 0 ? WORD_MARKED : ALLOC_HALF)) {
			while (j--)
				atomic_store_explicit(&w[wi + j], 0, RELEASE);
			return false;
		}
		if (j == nw / 2 - 1)
			CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_BLOCK_TAKING, &w[wi]);
	}
	atomic_store_explicit(&w[wi], ALLOC_HALF | 1ull << 32, RELEASE);
	return true;
}

/* Find and take an order-k block aligned to 2^a frames (k <= a <= 8) in a
 * chunk, starting at word `start`. Returns the frame offset or -1. */
static int bits_take(_Atomic uint64_t *w, unsigned k, unsigned a, unsigned start)
{
	if (a <= 5) {
		unsigned n = 1u << k;
		for (unsigned i = 0; i < CHUNK_WORDS; i++) {
			unsigned wi = (start + i) % CHUNK_WORDS;
			uint64_t v = ld(&w[wi]);
			for (;;) {
				/* m: positions p where frames p..p+n-1 are all free
				 * and none is parked */
				uint32_t m = word_avail(v);
				for (unsigned s = 1; s < n; s <<= 1)
					m &= m >> s;
				m &= align_positions[a];
				if (!m)
					break;
				unsigned p = (unsigned)__builtin_ctz(m);
				uint64_t nv = v | (run_mask(n) << p) | (1ull << (32 + p));
				if (cas(&w[wi], &v, nv))
					return (int)(wi * WORD_FRAMES + p);
			}
		}
		return -1;
	}
	unsigned step = 1u << (a - 5);
	for (unsigned wi = 0; wi < CHUNK_WORDS; wi += step)
		if (bits_take_at(w, wi * WORD_FRAMES, k))
			return (int)(wi * WORD_FRAMES);
	return -1;
}

/* Take `n` order-0 frames anywhere in a chunk (n already claimed, so they
 * exist: the loop only retries lost CAS races). */
static unsigned bits_take_many(_Atomic uint64_t *w, uint64_t frame0, uint64_t n,
			       unsigned start, cairn_phys_t *out)
{
	unsigned wi = start;
	while (n) {
		uint64_t v = ld(&w[wi]);
		uint32_t avail = word_avail(v);
		if (!avail) {
			wi = (wi + 1) % CHUNK_WORDS;
			continue;
		}
		uint32_t m = 0, t = avail;
		for (uint64_t i = 0; i < n && t; i++) {
			m |= t & -t;
			t &= t - 1;
		}
		if (!cas(&w[wi], &v, v | m | ((uint64_t)m << 32)))
			continue;
		n -= (unsigned)bit_count(m);
		for (; m; m &= m - 1)
			*out++ = (frame0 + wi * WORD_FRAMES + (unsigned)__builtin_ctz(m))
				 << CAIRN_FRAME_SHIFT;
	}
	return wi;
}

/* ---- allocation ---- */

struct request {
	unsigned k, a;      /* order, alignment order */
	unsigned me, me1;   /* CPU index, and index + 1 for owner fields */
	cairn_phys_t *out;  /* where frames go */
	size_t want;        /* blocks wanted (> 1 only for order-0 bulk) */
	size_t got;
};

/* Allocate from chunk c of region ri; true if the request is now complete. */
static bool chunk_alloc(struct cairn_frames *f, unsigned ri, uint64_t c,
			struct request *q, bool strict, unsigned word)
{
	struct region *r = &f->region[ri];
	_Atomic uint64_t *ce = &r->chunk[c];
	uint64_t n = 1ull << q->k, frame0 = (r->chunk0 + c) << CHUNK_SHIFT;
	bool owned = false;
	struct cpu_hint *h = &f->cpu[q->me];

	if (q->want > 1) { /* order-0 bulk: take what the chunk has */
		uint64_t got = chunk_claim(ce, 1, q->want - q->got, q->me1, strict, &owned);
		if (!got)
			return false;
		word = bits_take_many(chunk_words(r, c), frame0, got, word, q->out + q->got);
		q->got += got;
	} else {
		if (!chunk_claim(ce, n, n, q->me1, strict, &owned))
			return false;
		int off = bits_take(chunk_words(r, c), q->k, q->a, word);
		if (off < 0) { /* enough frames, but fragmented */
			chunk_unclaim(r, ce, n);
			if (owned)
				chunk_disown(ce, q->me1);
			return false;
		}
		q->out[q->got++] = (frame0 + (unsigned)off) << CAIRN_FRAME_SHIFT;
		word = (unsigned)off / WORD_FRAMES;
	}
	/* Remember where we are; a CPU owns one chunk per area at a time, so
	 * taking a new one gives up the old. */
	atomic_store_explicit(&h->small[r->area], small_hint(r, c, word), RELAXED);
	if (owned) {
		uint64_t at = chunk_hint(r, c);
		uint64_t old = atomic_exchange_explicit(&h->owned[r->area], at, RELAXED);
		struct region *or = hint_region(f, old);
		if (or && hint_place(old) < or->nchunks && old != at)
			chunk_disown(&or->chunk[hint_place(old)], q->me1);
	}
	return q->got == q->want;
}

/* r's search found no counted frame in any chunk: mark it, then look
 * once more, so that a free which added frames after that search and read
 * the mark before this store does not leave the region passed by with
 * them (REFILL). Only when a region runs out, so the second pass over its
 * entries is rare. */
static void region_mark_exhausted(struct region *r)
{
	CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_MARKING, r);
	atomic_store_explicit(&r->exhausted, 1, REFILL);
	for (uint64_t c = 0; c < r->nchunks; c++) {
		uint64_t e = atomic_load_explicit(&r->chunk[c], REFILL);
		if (!(e & CE_HUGE) && ce_free(e)) {
			atomic_store_explicit(&r->exhausted, 0, RELAXED);
			return;
		}
	}
}

/* Small blocks (order <= 8, alignment <= 8) from one area: the CPU's current
 * chunk first, then chunks nobody prefers, then any chunk. Each CPU starts
 * its search at its own share of the region so CPUs spread out. A region
 * whose every chunk the second pass found without a counted frame is
 * marked exhausted, and skipped unless `all`. */
static bool area_alloc_small(struct cairn_frames *f, enum cairn_area area,
			     struct request *q, bool all)
{
	uint64_t hint = atomic_load_explicit(&f->cpu[q->me].small[area], RELAXED);
	struct region *r = hint_region(f, hint);
	unsigned hr = r ? hint_slot(hint) : ~0u;
	uint64_t hc = r ? hint_place(hint) / CHUNK_WORDS - r->chunk0 : ~0ull;
	if (r && hc < r->nchunks &&
	    chunk_alloc(f, hr, hc, q, false, (unsigned)(hint_place(hint) % CHUNK_WORDS)))
		return true;

	/* Resume after the hinted chunk (the chunks before it were full when
	 * we passed), or start at this CPU's share of the region. */
	uint32_t nr = atomic_load_explicit(&f->nregions, ACQUIRE);
	uint64_t need = q->want > 1 ? 1 : 1ull << q->k;
	for (int strict = 1; strict >= 0; strict--) {
		for (unsigned ri = 0; ri < nr; ri++) {
			r = active_region(f, ri);
			if (!r || r->area != area ||
			    (!all && atomic_load_explicit(&r->exhausted, RELAXED)))
				continue;
			uint64_t nc = r->nchunks;
			uint64_t c = ri == hr && hc < nc ? hc : q->me * nc / f->ncpus;
			bool counted = false;
			for (uint64_t i = 0; i < nc; i++, c = c + 1 < nc ? c + 1 : 0) {
				uint64_t e = ld(&r->chunk[c]);
				if (e & CE_HUGE)
					continue;
				counted |= ce_free(e) != 0;
				if (ce_free(e) < need)
					continue;
				if (strict && ce_owner(e) && ce_owner(e) != q->me1)
					continue;
				if (chunk_alloc(f, ri, c, q, strict, 0))
					return true;
			}
			if (!strict && !counted)
				region_mark_exhausted(r);
		}
	}
	return false;
}

/* Take chunks [c, c + 2^(k-9)) of r as one huge block, or nothing. Last
 * to first, the head last: a head entry published while chunks after it
 * were still free read as the whole block, which a double free of an
 * earlier block there took, storing "512 free" over chunks the take had
 * not reached (another CPU's claims among them). Chunks taken without the
 * head are HUGE without HEAD, which no free accepts. */
static bool chunks_take(struct region *r, uint64_t c, unsigned k)
{
	uint64_t nc = 1ull << (k - CAIRN_HUGE_ORDER);
	for (uint64_t j = 0; j < nc; j++) {
		uint64_t e = ld(&r->chunk[c + j]);
		if ((e & CE_HUGE) || ce_free(e) != CHUNK_FRAMES)
			return false;
	}
	for (uint64_t j = nc; j-- > 0;) {
		uint64_t e = ld(&r->chunk[c + j]);
		uint64_t ne = CE_HUGE | (j == 0 ? CE_HEAD | ((uint64_t)k << CE_ORDER_SHIFT) : 0);
		/* FREE == 512 means nothing is in flight in the chunk; only the
		 * owner hint may change under us, so retry on that alone. */
		while (!((e & CE_HUGE) || ce_free(e) != CHUNK_FRAMES)) {
			CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_CHUNK_CAS, &r->chunk[c + j]);
			if (cas(&r->chunk[c + j], &e, ne))
				goto taken;
		}
		while (++j < nc) /* ours alone while HUGE: a store undoes it */
			atomic_store_explicit(&r->chunk[c + j], CHUNK_FRAMES, REFILL);
		region_refilled(r);
		return false;
taken:
		if (j == nc / 2 && nc > 1)
			CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_BLOCK_TAKING, &r->chunk[c]);
	}
	return true;
}

/* A small block at the start of chunk c (alignment >= 2 MiB). The chunk
 * need not be wholly the region's, only the block: a region's partial
 * chunk at its end (or a region smaller than a chunk) holds such blocks
 * too. */
static bool chunk_head_take(struct region *r, uint64_t c, unsigned k)
{
	bool owned;
	uint64_t n = 1ull << k, start = (r->chunk0 + c) << CHUNK_SHIFT;
	if (start < r->first || start + n > r->end ||
	    !chunk_claim(&r->chunk[c], n, n, 0, false, &owned))
		return false;
	if (bits_take_at(chunk_words(r, c), 0, k))
		return true;
	chunk_unclaim(r, &r->chunk[c], n);
	return false;
}

/* Blocks that are whole chunks, or aligned to 2 MiB or more: walk aligned
 * candidates from the CPU's huge hint (the chunk after its last block, or the
 * one it last freed); each candidate is O(1) to reject via its first chunk
 * entry, so no bits are ever scanned one by one. */
static bool area_alloc_chunks(struct cairn_frames *f, enum cairn_area area,
			      struct request *q, bool all)
{
	unsigned k = q->k, shift = q->a - CAIRN_HUGE_ORDER;
	uint64_t nc = k >= CAIRN_HUGE_ORDER ? 1ull << (k - CAIRN_HUGE_ORDER) : 1;
	uint64_t step = 1ull << shift;
	_Atomic uint64_t *hp = &f->cpu[q->me].huge[area];
	uint64_t hint = atomic_load_explicit(hp, RELAXED);
	/* (a hint of another filling of its slot is no place to start) */
	unsigned hr = hint_region(f, hint) ? hint_slot(hint) : ~0u;
	uint32_t nr = atomic_load_explicit(&f->nregions, ACQUIRE);

	for (unsigned i = 0; i < nr; i++) {
		/* the hinted region first, then the others in order */
		unsigned ri = i == 0 && hr < nr ? hr : (i <= hr && hr < nr ? i - 1 : i);
		struct region *r = active_region(f, ri);
		if (!r || r->area != area ||
		    (!all && atomic_load_explicit(&r->exhausted, RELAXED)))
			continue;
		uint64_t c0 = ((r->chunk0 + step - 1) & ~(step - 1)) - r->chunk0;
		if (c0 >= r->nchunks || r->nchunks - c0 < nc)
			continue;
		uint64_t count = ((r->nchunks - c0 - nc) >> shift) + 1, idx;
		uint64_t hc = hint_place(hint);
		if (ri == hr && hc >= c0)
			idx = (hc - c0) >> shift;
		else
			idx = q->me * count / f->ncpus;
		for (uint64_t j = 0; j < count; j++, idx = idx + 1 < count ? idx + 1 : 0) {
			if (idx >= count)
				idx = 0;
			uint64_t c = c0 + (idx << shift);
			if (!(k >= CAIRN_HUGE_ORDER ? chunks_take(r, c, k) : chunk_head_take(r, c, k)))
				continue;
			q->out[q->got++] = (r->chunk0 + c) << (CHUNK_SHIFT + CAIRN_FRAME_SHIFT);
			atomic_store_explicit(hp, chunk_hint(r, c + nc), RELAXED);
			return true;
		}
	}
	return false;
}

/* Unpark the frames the CPUs' park slots name in the area (ncpus loads: the
 * first thing an area short of counted frames tries). A slot is only a
 * place to look: the word's CAS decides, and a stale slot unparks nothing.
 * Slots are never written here (a store could overwrite a frame the owner
 * parks at that moment); the owner finds its slot stale and moves on. */
static __attribute__((noinline)) uint64_t slots_unpark(struct cairn_frames *f,
						       enum cairn_area area)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < f->ncpus; i++) {
		uint64_t pk = atomic_load_explicit(&f->cpu[i].park[area], RELAXED);
		if (!pk)
			continue;
		uint64_t frame = pk - 1; /* frame number + 1 in the slot */
		struct region *r = region_find(f, frame);
		if (r && r->area == area &&
		    word_unpark(&f->transit[area], frame_word(r, frame), frame_entry(r, frame),
				1u << (frame % WORD_FRAMES))) {
			region_refilled(r);
			n++;
		}
	}
	return n;
}

/* Unpark every parked frame of the area: the bitmap, not the slots, which
 * miss one when two threads run as one CPU index at once (both find the
 * slot empty and park, one slot store survives; or one empties the slot
 * the other has just filled). Only when the area failed a request and the
 * slots had nothing for it. For a request of whole chunks (`whole`), only
 * chunks with no allocated frame can help: the walk of a chunk stops at
 * its first word with one, so a fragmented area costs about a word per
 * chunk, not all sixteen. */
static __attribute__((noinline)) uint64_t area_unpark(struct cairn_frames *f,
						      enum cairn_area area, bool whole)
{
	uint32_t nr = atomic_load_explicit(&f->nregions, ACQUIRE);
	uint64_t n = 0;
	for (unsigned ri = 0; ri < nr; ri++) {
		struct region *r = active_region(f, ri);
		if (!r || r->area != area)
			continue;
		for (uint64_t c = 0; c < r->nchunks; c++) {
			if (ld(&r->chunk[c]) & CE_HUGE)
				continue;
			unsigned wi = 0;
			while (whole && wi < CHUNK_WORDS &&
			       !(uint32_t)ld(&r->bits[c * CHUNK_WORDS + wi]))
				wi++;
			if (!whole || wi == CHUNK_WORDS)
				n += chunk_unpark(f, r, c, 0, CHUNK_FRAMES);
		}
	}
	return n;
}

/* Areas in fallback order: highest first, so low memory is kept for the
 * requests that need it. */
static const enum cairn_area area_order[CAIRN_AREAS] = {
	CAIRN_AREA_HIGH, CAIRN_AREA_LOW4G, CAIRN_AREA_LOW16M,
};

/* `all`: exhausted regions too (see alloc_request). */
static bool area_alloc(struct cairn_frames *f, enum cairn_area area, struct request *q,
		       bool all)
{
	return q->a >= CAIRN_HUGE_ORDER ? area_alloc_chunks(f, area, q, all)
					: area_alloc_small(f, area, q, all);
}

/* Every area short, every region looked at, exhausted or not (a free
 * may have missed the mark a search was setting), then every parked
 * frame in each area's bitmap. */
static bool areas_last_look(struct cairn_frames *f, unsigned areas, struct request *q)
{
	for (unsigned i = 0; i < CAIRN_AREAS; i++) {
		enum cairn_area area = area_order[i];
		if ((areas & (1u << area)) &&
		    (area_alloc(f, area, q, true) ||
		     (area_unpark(f, area, q->k >= CAIRN_HUGE_ORDER) && area_alloc(f, area, q, true))))
			return true;
	}
	return false;
}

static bool alloc_request(struct cairn_frames *f, unsigned flags, struct request *q)
{
	unsigned areas = flags & CAIRN_F_ANY ? flags & CAIRN_F_ANY : CAIRN_F_ANY;
	q->me = this_cpu(f);
	q->me1 = q->me + 1;
	/* An area short of counted frames: parked frames may be what is
	 * missing (a huge block's chunk short of one, the area's last frames).
	 * Those the CPUs' slots name (ncpus loads) are unparked before the
	 * request falls to the next area. Regions found exhausted are
	 * skipped: a full area above 4 GiB would otherwise cost a look at
	 * every chunk entry to every request served below it. */
	for (unsigned i = 0; i < CAIRN_AREAS; i++) {
		enum cairn_area area = area_order[i];
		if ((areas & (1u << area)) &&
		    (area_alloc(f, area, q, false) ||
		     (slots_unpark(f, area) && area_alloc(f, area, q, false))))
			return true;
	}
	/* Every area short: the last look (areas_last_look), before the
	 * request fails. Two threads running as one CPU index lose slots, and
	 * their frames would otherwise stay parked (counted free, taken by
	 * nobody). Not before the next area: the walk reads every word of the
	 * area. And once more while an unpark in the areas was in flight
	 * during the look or ended after it began: its frames may have been
	 * in neither state the look finds (transit_recheck). */
	struct transit_wait tw = transit_start(f, areas);
	do
		if (areas_last_look(f, areas, q))
			return true;
	while (transit_recheck(f, areas, &tw));
	return false;
}

/* Take the parked frame `frame` (a park slot's frame: it may be stale in
 * any way) for this CPU, whose small hint for the frame's area is hp:
 * true if the word's CAS from HEAD alone to ALLOCATED|HEAD won it. No
 * claim: a parked frame is not counted in FREE. */
static __attribute__((noinline)) bool take_parked(struct cairn_frames *f, uint64_t frame,
						  _Atomic uint64_t *hp, cairn_phys_t *out)
{
	struct region *r = region_find(f, frame);
	if (!r)
		return false;
	_Atomic uint64_t *w = frame_word(r, frame);
	uint64_t bit = 1ull << (frame % WORD_FRAMES), v = ld(w);
	while (word_parked(v) & bit)
		if (cas(w, &v, v | bit)) {
			atomic_store_explicit(hp, frame_hint(r, frame), RELAXED);
			atomic_store_explicit(hint_word(hp), v | bit, RELAXED);
			*out = frame << CAIRN_FRAME_SHIFT;
			return true;
		}
	return false;
}

/* The plain order-0 allocation of the general path: the CPU's parked frame
 * of the first area present among the request's, if it has one. */
static bool alloc_parked(struct cairn_frames *f, unsigned areas, cairn_phys_t *out)
{
	areas &= atomic_load_explicit(&f->areas_present, RELAXED);
	if (!areas)
		return false;
	_Atomic uint64_t *hp = &f->cpu[this_cpu(f)].small[31 - __builtin_clz(areas)];
	_Atomic uint64_t *pk = hint_park(hp);
	uint64_t parked = atomic_load_explicit(pk, RELAXED);
	if (!parked)
		return false;
	atomic_store_explicit(pk, 0, RELAXED);
	CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_TAKE_BACK, pk);
	return take_parked(f, parked - 1, hp, out);
}

int cairn_frames_alloc_aligned(struct cairn_frames *f, unsigned order,
			       unsigned align_order, unsigned flags,
			       cairn_phys_t *out)
{
	if (order > CAIRN_MAX_ORDER || align_order > CAIRN_MAX_ORDER ||
	    align_order < order || (flags & ~(CAIRN_F_ANY | CAIRN_F_ZERO)))
		return CAIRN_EINVAL;
	struct request q = { .k = order, .a = align_order, .out = out, .want = 1 };
	if (!(align_order == 0 && alloc_parked(f, flags & CAIRN_F_ANY ? flags & CAIRN_F_ANY
								  : CAIRN_F_ANY, out)) &&
	    !alloc_request(f, flags, &q))
		return CAIRN_ENOMEM;
	if (flags & CAIRN_F_ZERO)
		zero_frames(*out, 1ull << order);
	return 0;
}

/* The common cases, kept short: one order-0 frame from the CPU's current
 * chunk, or one 2 MiB block from the chunk its huge hint names, in the first
 * accepted area. Anything unusual (no hint yet, chunk exhausted or taken)
 * goes to the general path, so the area preference and every other rule
 * stay in one place. Each is a function of its own that tail-calls the
 * general path: few live values, so a short prologue. */
static __attribute__((noinline)) int alloc_slow(struct cairn_frames *f, unsigned order,
						unsigned flags, cairn_phys_t *out)
{
	return cairn_frames_alloc_aligned(f, order, order, flags, out);
}

/* The highest area present among `areas` (highest first, see area_order),
 * or -1. The areas' CAIRN_F_* bit numbers are their order of preference. */
static inline int first_area(struct cairn_frames *f, unsigned areas)
{
	areas &= atomic_load_explicit(&f->areas_present, RELAXED);
	return areas ? 31 - __builtin_clz(areas) : -1;
}

static __attribute__((noinline)) int alloc0(struct cairn_frames *f, unsigned flags,
					    cairn_phys_t *out);

/* alloc0_parked's frame in another word than the hint's, or a stale seed
 * (no verdict: take_parked reads the word); then alloc0 as usual. */
static __attribute__((noinline)) int alloc0_parked_slow(struct cairn_frames *f, unsigned flags,
							cairn_phys_t *out, _Atomic uint64_t *hp,
							uint64_t frame)
{
	if (take_parked(f, frame, hp, out))
		return 0;
	return alloc0(f, flags, out);
}

/* alloc0 with a frame in this CPU's park slot (hp its small hint): the
 * frame it parked, in the hint's word as after an order-0 free (else
 * take_parked finds its region). One CAS of its word from HEAD alone back
 * to allocated, seeded as alloc0's claim path is (the free left the word's
 * value in the seed), and no claim: a parked frame is not counted. The slot
 * is emptied first, whatever comes of it; a slot whose frame is parked no
 * more (another CPU unparked or took it) costs a failed CAS, and alloc0
 * then runs as usual. Apart from alloc0, so that its claim path keeps its
 * short prologue. */
static __attribute__((noinline)) int alloc0_parked(struct cairn_frames *f, unsigned flags,
						   cairn_phys_t *out, _Atomic uint64_t *hp)
{
	_Atomic uint64_t *pk = hint_park(hp), *seed = hint_word(hp);
	/* (0 if a thread running as this CPU emptied it since alloc0 looked:
	 * frame ~0 then matches no hint's word and no region) */
	uint64_t frame = atomic_load_explicit(pk, RELAXED) - 1;
	atomic_store_explicit(pk, 0, RELAXED);
	CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_TAKE_BACK, pk);
	uint64_t hint = atomic_load_explicit(hp, RELAXED);
	struct region *r = hint_region(f, hint);
	if (r && hint_place(hint) == frame / WORD_FRAMES) {
		_Atomic uint64_t *w = frame_word(r, frame);
		uint64_t bit = 1ull << (frame % WORD_FRAMES);
		uint64_t v = atomic_load_explicit(seed, RELAXED);
		while (word_parked(v) & bit)
			if (cas(w, &v, v | bit)) {
				atomic_store_explicit(seed, v | bit, RELAXED);
				*out = frame << CAIRN_FRAME_SHIFT;
				return 0;
			}
	}
	return alloc0_parked_slow(f, flags, out, hp, frame);
}

static __attribute__((noinline)) int alloc0(struct cairn_frames *f, unsigned flags,
					    cairn_phys_t *out)
{
	int area = first_area(f, flags ? flags : CAIRN_F_ANY);
	if (area < 0)
		return alloc_slow(f, 0, flags, out);
	_Atomic uint64_t *hp = &f->cpu[this_cpu(f)].small[area], *seed = hint_word(hp);
	if (atomic_load_explicit(hint_park(hp), RELAXED))
		return alloc0_parked(f, flags, out, hp);
	uint64_t hint = atomic_load_explicit(hp, RELAXED);
	/* (a CPU with no hint yet reads 0, and a hint left from a removed
	 * region has another generation than its slot's state, if the slot
	 * is active at all: no region, so the general path runs) */
	struct region *r = hint_region(f, hint);
	if (!r)
		return alloc_slow(f, 0, flags, out);
	/* The hint names a word by its global number: its entry, the word and
	 * the frames it covers follow by shifts from the region's bases. */
	uint64_t gw = hint_place(hint);
	_Atomic uint64_t *ce = word_entry(r, gw);
	/* Seed the bit CAS with the value this CPU last gave the word (its
	 * hint's `word`), not with a load of the word: after a free, that load
	 * would issue right behind the free's locked add on the chunk entry,
	 * and it waits for that add, the longer when the word and the entry
	 * share their low 12 address bits (one chunk in 32). The CAS compares
	 * the whole word, so a stale seed only makes it fail and return the
	 * current value; the bit is still set only after the claim, so the
	 * counting rule is unchanged. What the tail needs from the region is
	 * read here too: a load after the locked RMWs would wait for them. */
	uintptr_t words = r->word_base;
	uint64_t v = atomic_load_explicit(seed, RELAXED);
	uint64_t e = ld(ce);
	do {
		if ((e & CE_HUGE) || !ce_free(e))
			return alloc_slow(f, 0, flags, out);
	} while (!cas(ce, &e, e - 1));
	/* The claimed frame exists (counting rule): retry only lost races.
	 * A full seed is no reason to leave the word (it may be stale, as
	 * after the general path moved the hint): look at the word first. */
	uint64_t at = gw;
	_Atomic uint64_t *w = (_Atomic uint64_t *)(words + at * sizeof(uint64_t));
	if (!word_avail(v))
		v = ld(w);
	for (;;) {
		uint32_t avail = word_avail(v);
		if (!avail) { /* the next word of the chunk, round */
			at = (at & ~(uint64_t)(CHUNK_WORDS - 1)) | ((at + 1) % CHUNK_WORDS);
			w = (_Atomic uint64_t *)(words + at * sizeof(uint64_t));
			v = ld(w);
			continue;
		}
		unsigned p = (unsigned)__builtin_ctz(avail);
		uint64_t nv = v | 1ull << p | 1ull << (32 + p);
		if (cas(w, &v, nv)) { /* else v is now the word's */
			atomic_store_explicit(seed, nv, RELAXED);
			*out = (at * WORD_FRAMES + p) << CAIRN_FRAME_SHIFT;
			if (at != gw)
				atomic_store_explicit(hp, (hint & ~HINT_WORD) | at, RELAXED);
			return 0;
		}
	}
}

static __attribute__((noinline)) int alloc9(struct cairn_frames *f, unsigned flags,
					    cairn_phys_t *out)
{
	int area = first_area(f, flags ? flags : CAIRN_F_ANY);
	if (area < 0)
		return alloc_slow(f, CAIRN_HUGE_ORDER, flags, out);
	_Atomic uint64_t *hp = &f->cpu[this_cpu(f)].huge[area];
	uint64_t hint = atomic_load_explicit(hp, RELAXED);
	struct region *r = hint_region(f, hint);
	uint64_t c = hint_place(hint);
	if (!r || c >= r->nchunks)
		return alloc_slow(f, CAIRN_HUGE_ORDER, flags, out);
	/* Expect a free chunk nobody prefers, the usual case: the CAS is then
	 * the only access to the entry. Only the owner field may differ. */
	uint64_t e = CHUNK_FRAMES;
	while (!cas(&r->chunk[c], &e, HUGE9_HEAD))
		if ((e & CE_HUGE) || ce_free(e) != CHUNK_FRAMES)
			return alloc_slow(f, CAIRN_HUGE_ORDER, flags, out);
	*out = (r->chunk0 + c) << (CHUNK_SHIFT + CAIRN_FRAME_SHIFT);
	atomic_store_explicit(hp, hint + 1, RELAXED);
	/* Runs of huge blocks walk the chunk array: fetch the next line of
	 * entries before we CAS on it. */
	__builtin_prefetch(&r->chunk[c + 16 < r->nchunks ? c + 16 : c], 1);
	return 0;
}

int cairn_frames_alloc(struct cairn_frames *f, unsigned order, unsigned flags,
		       cairn_phys_t *out)
{
	if (!(flags & ~CAIRN_F_ANY)) {
		if (order == 0)
			return alloc0(f, flags, out);
		if (order == CAIRN_HUGE_ORDER)
			return alloc9(f, flags, out);
	}
	return alloc_slow(f, order, flags, out);
}

/* The regions are immutable while active (frames_layout.h), so this reads
 * them as region_find does; it answers for the regions of this moment. */
bool cairn_frames_could_hold(struct cairn_frames *f, unsigned order, unsigned flags)
{
	if (order > CAIRN_MAX_ORDER)
		return false;
	unsigned areas = flags & CAIRN_F_ANY ? flags & CAIRN_F_ANY : CAIRN_F_ANY;
	uint64_t n = 1ull << order;
	uint32_t nr = atomic_load_explicit(&f->nregions, ACQUIRE);
	for (unsigned ri = 0; ri < nr; ri++) {
		struct region *r = active_region(f, ri);
		if (r && (areas >> r->area & 1) && ((r->first + n - 1) & ~(n - 1)) + n <= r->end)
			return true;
	}
	return false;
}

size_t cairn_frames_alloc_bulk(struct cairn_frames *f, unsigned flags,
			       cairn_phys_t *out, size_t n)
{
	if (n == 0 || (flags & ~(CAIRN_F_ANY | CAIRN_F_ZERO)))
		return 0;
	struct request q = { .k = 0, .a = 0, .out = out, .want = n };
	alloc_request(f, flags, &q);
	if (flags & CAIRN_F_ZERO)
		for (size_t i = 0; i < q.got; i++)
			zero_frames(out[i], 1);
	return q.got;
}

/* Huge (order-9) bulk allocation: the short path's single CAS, repeated
 * over the chunks after the CPU's huge hint, with the area, hint and region
 * looked up once per run. A chunk that is not free ends the run; one
 * allocation through the general path (which walks on and moves the hint)
 * starts the next, and its failure ends the call. Each block is taken by
 * the same acq_rel CAS as a single allocation, so the ordering argument is
 * unchanged. */
size_t cairn_frames_alloc_bulk_huge(struct cairn_frames *f, unsigned flags,
				    cairn_phys_t *out, size_t n)
{
	if (n == 0 || (flags & ~(CAIRN_F_ANY | CAIRN_F_ZERO)))
		return 0;
	unsigned areas = flags & CAIRN_F_ANY;
	size_t got = 0;
	int area = first_area(f, areas ? areas : CAIRN_F_ANY);
	while (got < n) {
		if (area >= 0) {
			_Atomic uint64_t *hp = &f->cpu[this_cpu(f)].huge[area];
			uint64_t hint = atomic_load_explicit(hp, RELAXED);
			struct region *r = hint_region(f, hint);
			uint64_t c = hint_place(hint), c0 = c;
			for (; r && got < n && c < r->nchunks; c++) {
				uint64_t e = CHUNK_FRAMES;
				while (!cas(&r->chunk[c], &e, HUGE9_HEAD))
					if ((e & CE_HUGE) || ce_free(e) != CHUNK_FRAMES)
						goto run_end;
				out[got++] = (r->chunk0 + c) << (CHUNK_SHIFT + CAIRN_FRAME_SHIFT);
				if (!(c & 7)) /* the next line of entries */
					__builtin_prefetch(&r->chunk[c + 8 < r->nchunks ? c + 8 : c], 1);
			}
run_end:
			if (c != c0)
				atomic_store_explicit(hp, chunk_hint(r, c), RELAXED);
			if (got == n)
				break;
		}
		if (cairn_frames_alloc_aligned(f, CAIRN_HUGE_ORDER, CAIRN_HUGE_ORDER, areas,
					       &out[got]))
			break;
		got++;
	}
	if (flags & CAIRN_F_ZERO)
		for (size_t i = 0; i < got; i++)
			zero_frames(out[i], CHUNK_FRAMES);
	return got;
}

/* ---- free ---- */

/* Check the block [off, off + 2^k) of a chunk is one allocated block of
 * order k given the words' current values, or say what it is instead. */
static inline int check_block_word(uint64_t v, unsigned p, unsigned n, uint64_t next_cont)
{
	uint64_t mask = run_mask(n) << p;
	/* ALLOCATED first: a parked frame (HEAD alone) is free */
	if (!(v & (1ull << p)))
		return CAIRN_EFREE;
	if (!(v & (1ull << (32 + p))))
		return CAIRN_EORDER; /* a continuation */
	if ((v & mask) != mask || ((v >> 32) & mask & ~(1ull << p)))
		return CAIRN_EORDER; /* a smaller block starts here */
	if (next_cont)
		return CAIRN_EORDER; /* the block goes on: it is larger */
	return 0;
}

/* Is frame offset `off` of the chunk a continuation (allocated, not head)? */
static inline uint64_t is_continuation(_Atomic uint64_t *w, unsigned off)
{
	if (off >= CHUNK_FRAMES)
		return 0; /* blocks never cross a chunk: nothing continues into it */
	uint64_t v = ld(&w[off / WORD_FRAMES]);
	unsigned p = off % WORD_FRAMES;
	return (v >> p) & 1 && !((v >> (32 + p)) & 1);
}

/* Does the allocated block with head `off` go on past n frames, into the
 * next word? Only if it is larger, so it starts 2n-aligned: a block that
 * merely ends at a word boundary is never checked against the next word.
 * (Together with the order of clearing in bits_free, this means a word of a
 * block being freed is never misread as part of a live block.) */
static inline uint64_t goes_on_past_word(_Atomic uint64_t *w, unsigned off, unsigned n)
{
	if ((off + n) % WORD_FRAMES || off % (2 * n))
		return 0;
	return is_continuation(w, off + n);
}

static int bits_free(struct region *r, uint64_t c, unsigned off, unsigned k)
{
	_Atomic uint64_t *w = chunk_words(r, c);
	unsigned wi = off / WORD_FRAMES, p = off % WORD_FRAMES, n = 1u << k;
	uint64_t next_cont = goes_on_past_word(w, off, n);

	if (k <= 5) {
		uint64_t v = ld(&w[wi]);
		uint64_t clear = (run_mask(n) << p) | (1ull << (32 + p));
		for (;;) {
			if (p + n < WORD_FRAMES)
				next_cont = (v >> (p + n)) & 1 && !((v >> (32 + p + n)) & 1);
			int err = check_block_word(v, p, n, next_cont);
			if (err)
				return err;
			if (cas(&w[wi], &v, v & ~clear))
				return 0;
		}
	}
	/* Multi-word block. Marking its head word (WORD_MARKED: frame 3 a
	 * head too, a word no free accepts) is the linearisation point: of
	 * two racing frees exactly one wins, and from then on the block is
	 * ours alone. (Frame 1 as the mark made frame 0 an order-0 block: a
	 * wrong-order free of the head then went through and was counted
	 * twice.) Then the words go free last to first, the head word last,
	 * so a word that becomes free is never followed by a word still
	 * marked as this block's continuation. */
	unsigned nw = n / WORD_FRAMES;
	uint64_t v = ld(&w[wi]);
	for (;;) {
		int err = check_block_word(v, 0, WORD_FRAMES, 0);
		if (err)
			return err;
		for (unsigned j = 1; j < nw; j++)
			if (ld(&w[wi + j]) != ALLOC_HALF)
				return CAIRN_EORDER;
		if (next_cont)
			return CAIRN_EORDER;
		if (cas(&w[wi], &v, WORD_MARKED))
			break;
	}
	CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_BLOCK_MARKED, &w[wi]);
	for (unsigned j = nw - 1; j > 0; j--)
		atomic_store_explicit(&w[wi + j], 0, RELEASE);
	atomic_store_explicit(&w[wi], 0, RELEASE);
	return 0;
}

/* Return a huge block whose head chunk is c. */
static int chunks_free(struct region *r, uint64_t c, unsigned k)
{
	uint64_t e = ld(&r->chunk[c]);
	do {
		if (!(e & CE_HUGE))
			return CAIRN_EFREE;
		if (!(e & CE_HEAD) || ce_order(e) != k)
			return CAIRN_EORDER;
		if (e & CE_HELD) /* in a frame cache: freed once already */
			return CAIRN_EFREE;
	} while (!atomic_compare_exchange_weak_explicit(&r->chunk[c], &e, CHUNK_FRAMES,
							REFILL, RELAXED));
	/* every chunk REFILL: another CPU may take the head chunk before a
	 * marker's second look, which must then find these */
	for (uint64_t j = 1; j < 1ull << (k - CAIRN_HUGE_ORDER); j++)
		atomic_store_explicit(&r->chunk[c + j], CHUNK_FRAMES, REFILL);
	region_refilled(r);
	return 0;
}

/* Common argument checks; on success rp, cp and offp locate the block. */
static inline int locate(struct cairn_frames *f, cairn_phys_t phys, unsigned order,
			 struct region **rp, uint64_t *cp, unsigned *offp)
{
	if (order > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	uint64_t frame = phys >> CAIRN_FRAME_SHIFT;
	if (phys & (CAIRN_FRAME_SIZE - 1) || frame & ((1ull << order) - 1))
		return CAIRN_EALIGN;
	struct region *r = region_find(f, frame);
	if (!r || frame + (1ull << order) > r->end)
		return CAIRN_ERANGE;
	*rp = r;
	*cp = (frame >> CHUNK_SHIFT) - r->chunk0;
	*offp = (unsigned)(frame % CHUNK_FRAMES);
	return 0;
}

/* The active region whose carved metadata ([end, meta_end): struct
 * region) the frames [frame, frame + n) reach, all of them inside the
 * range it was given; NULL if none. Only for calls the region bounds
 * refused already: the carve is outside every region, so no short path
 * meets it, and the errors that name it cost nothing until then. */
static struct region *carve_find(struct cairn_frames *f, uint64_t frame, uint64_t n)
{
	uint32_t nr = atomic_load_explicit(&f->nregions, ACQUIRE);
	for (uint32_t i = 0; i < nr; i++) {
		struct region *r = &f->region[i];
		if (region_active(atomic_load_explicit(&r->state, ACQUIRE)) &&
		    frame >= r->first && frame + n > r->end && frame + n <= r->meta_end)
			return r;
	}
	return NULL;
}

/* A free whose block is no block of any region (locate's EALIGN and
 * ERANGE) is reported as every bad free is (frames.h): as EMETA when the
 * block holds carved metadata, which no caller was ever given. A bad
 * order (EINVAL) is a bad argument, returned only. */
static int bad_place(struct cairn_frames *f, int err, cairn_phys_t phys, unsigned order)
{
	if (err == CAIRN_EINVAL)
		return err;
	if (err == CAIRN_ERANGE && carve_find(f, phys >> CAIRN_FRAME_SHIFT, 1ull << order))
		return misuse(CAIRN_EMETA, "frames: free of the allocator's metadata", phys,
			      order);
	return misuse(err, err == CAIRN_EALIGN ? "frames: free of a misaligned block"
					       : "frames: free outside every region",
		      phys, order);
}

/* Is the frame at `bit` of word v an allocated order-0 block? An allocated
 * head whose next frame in the word is no continuation (frame 31 can head
 * no larger block). */
static inline bool word_has_frame0(uint64_t v, uint64_t bit)
{
	uint64_t both = bit | bit << 32, cont = v & ALLOC_HALF & ~(v >> 32);
	return (v & both) == both && !(cont & bit << 1);
}

/* The same predicate for frame i of the word, in the form the order-0
 * check wants (it has the index); the free keeps the mask form above, as
 * its CAS needs the bits anyway. Bit j of block0 says frame j is an
 * order-0 block: allocated and a head, and the next frame no continuation
 * (allocated without being a head). The 32-bit shift brings in a zero for
 * frame 31's next. One test of bit i ends it (a bt: no variable shift,
 * which x86 without BMI2 pays two or three micro-ops for, as the shifted
 * form paid twice; the check is on every cached order-0 free). */
static inline bool word_has_frame0_at(uint64_t v, unsigned i)
{
	uint32_t alloc = (uint32_t)v, head = (uint32_t)(v >> 32);
	uint32_t block0 = alloc & head & ~((alloc & ~head) >> 1);
	return block0 >> i & 1;
}

/* The active region of the frame at phys, if phys is a frame's address
 * (aligned) in one, else NULL: where the order-0 free and
 * cairn_frames_is_allocated(order 0) start. */
static inline struct region *frame_region(struct cairn_frames *f, cairn_phys_t phys)
{
	return phys & (CAIRN_FRAME_SIZE - 1) ? NULL : region_find(f, phys >> CAIRN_FRAME_SHIFT);
}

/* The common frees, kept short: an order-0 block (one CAS on its word, then
 * the counter) and a 2 MiB block (one CAS on its chunk entry). They only
 * accept what they can prove is exactly such a block; anything else (bad
 * input, another order, a block of a huge chunk) goes the general way,
 * which finds the error. */
static inline bool free0_fast(struct cairn_frames *f, cairn_phys_t phys)
{
	uint64_t frame = phys >> CAIRN_FRAME_SHIFT;
	struct region *r = frame_region(f, phys);
	if (!r)
		return false;
	_Atomic uint64_t *w = frame_word(r, frame);
	_Atomic uint64_t *hp = &f->cpu[this_cpu(f)].small[r->area];
	uint64_t bit = 1ull << (frame % WORD_FRAMES), both = bit | bit << 32;
	/* Seed the CAS as the allocation does: if this CPU's small hint names
	 * the word, its seed is the value this CPU last gave it (the
	 * allocation of this very frame, in free+alloc), and the CAS need not
	 * wait for a load of the word behind that allocation's locked RMW.
	 * The CAS compares the whole word, so a stale seed only makes it fail
	 * and return the word; a value that fails the check is a verdict only
	 * once the word itself says so. The hint's place alone is compared:
	 * a seed of another region's word of the same number (two regions
	 * may share a word's frames) or of a removed region's slot is only a
	 * stale seed, since the CAS is always on this region's own word. */
	uint64_t v = hint_place(atomic_load_explicit(hp, RELAXED)) == frame / WORD_FRAMES
			     ? atomic_load_explicit(hint_word(hp), RELAXED) : ld(w);
	/* Park the frame if this CPU's slot is free: clear ALLOCATED only
	 * (HEAD alone is "parked", frames_layout.h) and leave FREE as it is,
	 * so this CPU's next order-0 allocation takes it back with one CAS
	 * and no claim. The slot is read plainly: a thread that shares this
	 * CPU index may park at the same time and one frame is then in no
	 * slot, which the bitmap scan of an area that comes up short still
	 * finds (alloc_request). */
	_Atomic uint64_t *pk = hint_park(hp);
	uint64_t clear = atomic_load_explicit(pk, RELAXED) ? both : bit;
	for (;;) {
		if (!word_has_frame0(v, bit)) {
			uint64_t now = ld(w);
			if (now == v)
				return false;
			v = now;
			continue;
		}
		if (cas(w, &v, v & ~clear))
			break;
	}
	if (clear == bit) {
		CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_PARKED, w);
		atomic_store_explicit(pk, frame + 1, RELAXED);
	} else {
		chunk_unclaim(r, frame_entry(r, frame), 1);
	}
	/* Allocate next where we just freed: the frame is warm in this CPU's
	 * cache, and free+alloc stays O(1). The word's new value seeds that
	 * allocation's CAS. */
	atomic_store_explicit(hp, frame_hint(r, frame), RELAXED);
	atomic_store_explicit(hint_word(hp), v & ~clear, RELAXED);
	return true;
}

/* Could phys, in r, be an order-9 block: aligned, its chunk wholly r's? */
static inline bool huge_fits(const struct region *r, cairn_phys_t phys)
{
	return !(phys & ((CAIRN_FRAME_SIZE << CAIRN_HUGE_ORDER) - 1)) &&
	       (phys >> CAIRN_FRAME_SHIFT) + CHUNK_FRAMES <= r->end;
}

/* The chunk entry of the 2 MiB block at phys if phys is 2 MiB aligned and
 * its whole chunk is in an active region (r is then its region), else NULL:
 * where the order-9 free and cairn_frames_is_allocated(order 9) start. */
static inline _Atomic uint64_t *entry_of_huge(struct cairn_frames *f, cairn_phys_t phys,
					      struct region **rp)
{
	uint64_t frame = phys >> CAIRN_FRAME_SHIFT;
	struct region *r = region_find(f, frame);
	if (!r || !huge_fits(r, phys))
		return NULL;
	*rp = r;
	return frame_entry(r, frame);
}

/* The index in r of the chunk holding in-region address phys. */
static inline uint64_t chunk_of(const struct region *r, cairn_phys_t phys)
{
	return (phys >> (CAIRN_FRAME_SHIFT + CHUNK_SHIFT)) - r->chunk0;
}

static inline bool free9_fast(struct cairn_frames *f, cairn_phys_t phys)
{
	struct region *r;
	_Atomic uint64_t *ce = entry_of_huge(f, phys, &r);
	if (!ce || !cas_refill(ce, HUGE9_HEAD))
		return false;
	region_refilled(r);
	/* the next huge block of this CPU comes from here */
	atomic_store_explicit(&f->cpu[this_cpu(f)].huge[r->area],
			      chunk_hint(r, chunk_of(r, phys)), RELAXED);
	return true;
}

static __attribute__((noinline)) int free_slow(struct cairn_frames *f, cairn_phys_t phys,
					       unsigned order)
{
	struct region *r;
	uint64_t c;
	unsigned off;
	int err = locate(f, phys, order, &r, &c, &off);
	if (err)
		return bad_place(f, err, phys, order);
	uint64_t e = ld(&r->chunk[c]);
	if (e & CE_HUGE) {
		err = order >= CAIRN_HUGE_ORDER ? chunks_free(r, c, order) : CAIRN_EORDER;
		if (!err) /* the next huge block of this CPU comes from here */
			atomic_store_explicit(&f->cpu[this_cpu(f)].huge[r->area],
					      chunk_hint(r, c), RELAXED);
	} else if (order >= CAIRN_HUGE_ORDER) {
		err = is_continuation(chunk_words(r, c), 0) ||
		      (ld(&chunk_words(r, c)[0]) & 1) ? CAIRN_EORDER : CAIRN_EFREE;
	} else {
		err = bits_free(r, c, off, order);
		if (!err) {
			chunk_unclaim(r, &r->chunk[c], 1ull << order);
			/* Allocate next where we just freed: the frame is warm in
			 * this CPU's cache, and free+alloc stays O(1). */
			atomic_store_explicit(&f->cpu[this_cpu(f)].small[r->area],
					      small_hint(r, c, off / WORD_FRAMES), RELAXED);
		}
	}
	if (err)
		return misuse(err, err == CAIRN_EFREE ? "frames: double free"
						      : "frames: free with wrong order",
			      phys, order);
	return 0;
}

int cairn_frames_free(struct cairn_frames *f, cairn_phys_t phys, unsigned order)
{
	if (order == 0 && free0_fast(f, phys))
		return 0;
	if (order == CAIRN_HUGE_ORDER && free9_fast(f, phys))
		return 0;
	return free_slow(f, phys, order);
}

int cairn_frames_free_bulk(struct cairn_frames *f, const cairn_phys_t *frames,
			   size_t n, size_t *done)
{
	size_t i = 0;
	int err = 0;
	while (i < n) {
		/* Batch the run of frames that share a bitmap word. */
		struct region *r;
		uint64_t c;
		unsigned off;
		err = locate(f, frames[i], 0, &r, &c, &off);
		if (err) {
			err = bad_place(f, err, frames[i], 0);
			break;
		}
		unsigned wi = off / WORD_FRAMES;
		uint64_t m = 1ull << (off % WORD_FRAMES);
		size_t j = i + 1;
		for (; j < n; j++) {
			uint64_t fr = frames[j] >> CAIRN_FRAME_SHIFT;
			if (frames[j] & (CAIRN_FRAME_SIZE - 1) ||
			    fr / WORD_FRAMES != (frames[i] >> CAIRN_FRAME_SHIFT) / WORD_FRAMES ||
			    fr < r->first || fr >= r->end || (m >> (fr % WORD_FRAMES)) & 1)
				break;
			m |= 1ull << (fr % WORD_FRAMES);
		}
		_Atomic uint64_t *w = &chunk_words(r, c)[wi];
		uint64_t v = ld(w);
		for (;;) {
			/* every frame an order-0 block: allocated head, and the
			 * frame after it no continuation */
			uint64_t cont = v & ALLOC_HALF & ~(v >> 32);
			/* (frame 31 can head no larger block: no look at the next word) */
			bool ok = (v & m) == m && ((v >> 32) & m) == m && !((m << 1) & cont & ALLOC_HALF);
			if (!ok) {
				/* one by one, to free the good ones and name the bad one */
				for (; i < j; i++)
					if ((err = cairn_frames_free(f, frames[i], 0)))
						goto out;
				break;
			}
			if (cas(w, &v, v & ~(m | m << 32))) {
				chunk_unclaim(r, &r->chunk[c], (uint64_t)bit_count(m));
				i = j;
				break;
			}
		}
	}
out:
	if (done)
		*done = i;
	return err;
}

/* Huge (order-9) bulk free: free9_fast's checks and CAS per block
 * (entry_of_huge's, with the region kept), the region looked up only when
 * a block lies outside the last one (a region holding an
 * allocated block cannot be removed, so it stays active while we use it) and
 * the CPU's huge hint stored once. Anything the CAS does not accept goes to
 * cairn_frames_free, which frees it or names the error; the first error
 * stops the call, as in free_bulk. */
int cairn_frames_free_bulk_huge(struct cairn_frames *f, const cairn_phys_t *blocks,
				size_t n, size_t *done)
{
	struct region *r = NULL, *last = NULL;
	cairn_phys_t last_phys = 0;
	size_t i = 0;
	int err = 0;
	for (; i < n; i++) {
		cairn_phys_t phys = blocks[i];
		uint64_t frame = phys >> CAIRN_FRAME_SHIFT;
		if (!r || frame - r->first >= r->nframes)
			r = region_find(f, frame);
		if (r && huge_fits(r, phys) &&
		    cas_refill(frame_entry(r, frame), HUGE9_HEAD)) {
			region_refilled(r);
			last = r;
			last_phys = phys;
			continue;
		}
		if ((err = cairn_frames_free(f, phys, CAIRN_HUGE_ORDER)))
			break;
	}
	if (last) /* the next huge block of this CPU comes from here */
		atomic_store_explicit(&f->cpu[this_cpu(f)].huge[last->area],
				      chunk_hint(last, chunk_of(last, last_phys)), RELAXED);
	if (done)
		*done = i;
	return err;
}

/* ---- specific blocks and ranges ---- */

int cairn_frames_alloc_at(struct cairn_frames *f, cairn_phys_t phys, unsigned order)
{
	struct region *r;
	uint64_t c;
	unsigned off;
	int err = locate(f, phys, order, &r, &c, &off);
	if (err == CAIRN_ERANGE && carve_find(f, phys >> CAIRN_FRAME_SHIFT, 1ull << order))
		return CAIRN_EBUSY; /* carved metadata: in use for good */
	if (err)
		return err;
	/* A parked frame in the block: unpark the block's (once), then try
	 * once more. Before failing, once more while an unpark in the area
	 * was in flight during the tries or ended since they began: a frame
	 * of the block may have been neither parked nor counted when they
	 * passed it (transit_recheck; the unpark read every word of the
	 * block). */
	unsigned areas = 1u << r->area;
	struct transit_wait tw = transit_start(f, areas);
	if (order >= CAIRN_HUGE_ORDER) {
		uint64_t nc = 1ull << (order - CAIRN_HUGE_ORDER);
		for (uint64_t j = 0; j < nc; j++)
			if (chunk_capacity(r, c + j) != CHUNK_FRAMES)
				return CAIRN_ERANGE;
		for (int again = 1;; again = 0) {
			if (chunks_take(r, c, order))
				return 0;
			uint64_t n = 0;
			for (uint64_t j = 0; again && j < nc; j++)
				n += chunk_unpark(f, r, c + j, 0, CHUNK_FRAMES);
			if (!n && !transit_recheck(f, areas, &tw))
				return CAIRN_EBUSY;
		}
	}
	uint64_t n = 1ull << order;
	for (int again = 1;; again = 0) {
		bool owned;
		if (chunk_claim(&r->chunk[c], n, n, 0, false, &owned)) {
			if (bits_take_at(chunk_words(r, c), off, order))
				return 0;
			chunk_unclaim(r, &r->chunk[c], n);
		}
		if (!(again && chunk_unpark(f, r, c, off, off + (unsigned)n)) &&
		    !transit_recheck(f, areas, &tw))
			return CAIRN_EBUSY;
	}
}

/* Clear frames [lo, hi) of a chunk's bitmap that a reserve took, and return
 * how many still had a bit set. A double free by a buggy caller can land
 * between the reserve and its undo: that free cleared (and counted) its
 * frame, or parked it (uncounted, and clearing it unparks it). Counting
 * what the clear found, not the piece's length, keeps FREE equal to the
 * free bits whatever such a caller does. Such a frame is no longer
 * ALLOCATED, which nothing but a free of a frame nobody held makes it:
 * *freed counts them, *first_freed is the first (offset in the chunk). */
static unsigned words_clear(_Atomic uint64_t *w, unsigned lo, unsigned hi,
			    unsigned *freed, unsigned *first_freed)
{
	unsigned cleared = 0;
	*freed = 0;
	*first_freed = hi;
	for (unsigned at = lo; at < hi;) {
		unsigned wi = at / WORD_FRAMES, p = at % WORD_FRAMES;
		unsigned n = hi - at < WORD_FRAMES - p ? hi - at : WORD_FRAMES - p;
		uint64_t m = run_mask(n) << p;
		uint64_t v = atomic_fetch_and_explicit(&w[wi], ~(m | m << 32), ACQ_REL);
		uint32_t gone = (uint32_t)(m & ~v);
		cleared += bit_count((v | v >> 32) & m);
		if (gone && !*freed)
			*first_freed = wi * WORD_FRAMES + (unsigned)__builtin_ctz(gone);
		*freed += bit_count(gone);
		at += n;
	}
	return cleared;
}

/* Undo frames [lo, hi) of chunk c taken by a reserve whose claim was
 * `claimed`: give back the claim of the frames it never took, then count
 * the ones it clears. A frame of its own that a free gave back meanwhile
 * was a bad free the free could not see (its marks are order-0
 * allocations: docs/design.md, "A free of a reserve's frames"): report
 * it here, on this rare path, not on every free's. */
static void piece_undo(struct region *r, uint64_t c, unsigned lo, unsigned hi,
		       unsigned claimed)
{
	unsigned freed, first;
	unsigned cleared = words_clear(chunk_words(r, c), lo, hi, &freed, &first);
	chunk_unclaim(r, &r->chunk[c], claimed - (hi - lo) + cleared);
	if (__builtin_expect(freed, 0))
		misuse(CAIRN_EFREE, "frames: free of a frame a failing reserve held",
		       ((r->chunk0 + c) * CHUNK_FRAMES + first) << CAIRN_FRAME_SHIFT, freed);
}

/* Reserve frames [lo, hi) of one chunk as order-0 blocks: claim FREE first,
 * then each word requires its frames free; a conflict undoes this chunk. */
static bool piece_reserve(struct region *r, uint64_t c, unsigned lo, unsigned hi)
{
	bool owned;
	_Atomic uint64_t *w = chunk_words(r, c);
	if (!chunk_claim(&r->chunk[c], hi - lo, hi - lo, 0, false, &owned))
		return false;
	for (unsigned at = lo; at < hi;) {
		unsigned wi = at / WORD_FRAMES, p = at % WORD_FRAMES;
		unsigned n = hi - at < WORD_FRAMES - p ? hi - at : WORD_FRAMES - p;
		uint64_t m = run_mask(n) << p, v = ld(&w[wi]);
		bool ok = false;
		while (!((v | v >> 32) & m)) /* neither bit: a parked frame is not ours */
			if ((ok = cas(&w[wi], &v, v | m | m << 32)))
				break;
		if (!ok) {
			piece_undo(r, c, lo, at, hi - lo);
			return false;
		}
		at += n;
	}
	return true;
}

/* Free frames [lo, hi) of chunk c, each an order-0 block, word by word:
 * each CAS requires the word's frames to be order-0 blocks in the value it
 * replaces, so of two racing frees of a frame (two unreserves of one range,
 * an unreserve and a free) exactly one clears it, as between two frees of
 * one block. Stops at the first word that fails and returns its error;
 * what it cleared before is counted (bits first, then FREE). */
static int piece_free(struct region *r, uint64_t c, unsigned lo, unsigned hi)
{
	_Atomic uint64_t *w = chunk_words(r, c);
	uint64_t n = 0;
	int err = 0;
	for (unsigned at = lo; at < hi && !err;) {
		unsigned wi = at / WORD_FRAMES, p = at % WORD_FRAMES;
		unsigned k = hi - at < WORD_FRAMES - p ? hi - at : WORD_FRAMES - p;
		uint64_t m = run_mask(k) << p, v = ld(&w[wi]);
		for (;;) {
			/* allocated heads, and the frame after each no
			 * continuation (frame 31 heads no larger block) */
			uint64_t cont = v & ALLOC_HALF & ~(v >> 32);
			if ((v & m) != m) {
				err = CAIRN_EFREE;
				break;
			}
			if (((v >> 32) & m) != m || ((m << 1) & cont & ALLOC_HALF)) {
				err = CAIRN_EORDER;
				break;
			}
			if (cas(&w[wi], &v, v & ~(m | m << 32))) {
				n += k;
				break;
			}
		}
		at += k;
	}
	if (n)
		chunk_unclaim(r, &r->chunk[c], n);
	return err;
}

/* Walk [first, end) chunk piece by chunk piece across regions. */
struct piece_walk {
	struct region *r;
	uint64_t c;
	unsigned lo, hi;
};

/* 1: the next piece is in pw; 0: the walk is done; CAIRN_ERANGE: no region
 * holds *at (left unchanged). range_check saw every frame covered, but a
 * region it saw may have been removed since: nothing stops a removal of a
 * region none of whose frames the caller holds. */
static int piece_next(struct cairn_frames *f, uint64_t *at, uint64_t end,
		      struct piece_walk *pw)
{
	if (*at >= end)
		return 0;
	pw->r = region_find(f, *at);
	if (!pw->r)
		return CAIRN_ERANGE;
	uint64_t stop = ((*at >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT;
	if (stop > end)
		stop = end;
	if (stop > pw->r->end)
		stop = pw->r->end;
	pw->c = (*at >> CHUNK_SHIFT) - pw->r->chunk0;
	pw->lo = (unsigned)(*at % CHUNK_FRAMES);
	pw->hi = pw->lo + (unsigned)(stop - *at);
	*at = stop;
	return 1;
}

/* The range's frames, if regions and their carved metadata cover it with
 * no hole; *carved says whether some of it is carved metadata. */
static int range_check(struct cairn_frames *f, cairn_phys_t phys, uint64_t size,
		       uint64_t *first, uint64_t *end, bool *carved)
{
	if (size == 0 || phys + size < phys)
		return CAIRN_EINVAL;
	if ((phys | size) & (CAIRN_FRAME_SIZE - 1))
		return CAIRN_EALIGN;
	*first = phys >> CAIRN_FRAME_SHIFT;
	*end = (phys + size) >> CAIRN_FRAME_SHIFT;
	*carved = false;
	for (uint64_t at = *first; at < *end;) { /* covered by regions, no hole */
		struct region *r = region_find(f, at);
		if (r) {
			at = r->end;
			continue;
		}
		if (!(r = carve_find(f, at, 1)))
			return CAIRN_ERANGE;
		*carved = true;
		at = r->meta_end;
	}
	return 0;
}

int cairn_frames_reserve(struct cairn_frames *f, cairn_phys_t phys, uint64_t size)
{
	uint64_t first, end, at;
	bool carved;
	int err = range_check(f, phys, size, &first, &end, &carved);
	if (err)
		return err;
	if (carved)
		return CAIRN_EBUSY; /* metadata: in use for good */
	/* Regions do not cross an area's bounds, and the areas are in address
	 * order: the range's are those from its first frame's to its last's. */
	unsigned areas = (2u << area_of(end - 1)) - (1u << area_of(first));
	struct transit_wait tw = transit_start(f, areas);
	struct piece_walk pw;
	for (int again = 1;; again = 0) {
		for (at = first; (err = piece_next(f, &at, end, &pw)) > 0;) {
			if (piece_reserve(pw.r, pw.c, pw.lo, pw.hi))
				continue;
			at -= pw.hi - pw.lo; /* (piece_reserve undid the failed piece) */
			err = CAIRN_EBUSY;
			CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_RESERVE_UNDO, pw.r);
			break;
		}
		if (!err)
			return 0;
		/* Undo every piece before `at`. Each holds frames of its region,
		 * so no region of theirs can have been removed: the walk finds
		 * the same pieces. */
		uint64_t stop = at;
		for (at = first; piece_next(f, &at, stop, &pw) > 0;)
			piece_undo(pw.r, pw.c, pw.lo, pw.hi, pw.hi - pw.lo);
		if (err == CAIRN_ERANGE)
			return err;
		/* A parked frame in the range: unpark them all (once), then
		 * once more. Before failing, once more while an unpark in the
		 * range's areas was in flight or ended since the first try
		 * (as alloc_at). */
		uint64_t n = 0;
		for (at = first; again && piece_next(f, &at, end, &pw) > 0;)
			n += chunk_unpark(f, pw.r, pw.c, pw.lo, pw.hi);
		if (!n && !transit_recheck(f, areas, &tw))
			return CAIRN_EBUSY;
	}
}

int cairn_frames_unreserve(struct cairn_frames *f, cairn_phys_t phys, uint64_t size)
{
	uint64_t first, end, at;
	bool carved;
	int err = range_check(f, phys, size, &first, &end, &carved);
	if (err)
		return err;
	if (carved)
		return misuse(CAIRN_EMETA, "frames: unreserve of the allocator's metadata", phys, 0);
	struct piece_walk pw;
	/* check everything first: all or nothing */
	for (at = first; (err = piece_next(f, &at, end, &pw)) > 0;) {
		if (ld(&pw.r->chunk[pw.c]) & CE_HUGE)
			return misuse(CAIRN_EORDER, "frames: unreserve of a huge block", phys, 0);
		_Atomic uint64_t *w = chunk_words(pw.r, pw.c);
		for (unsigned o = pw.lo; o < pw.hi; o++) {
			uint64_t v = ld(&w[o / WORD_FRAMES]);
			unsigned p = o % WORD_FRAMES;
			if (!((v >> p) & 1))
				return misuse(CAIRN_EFREE, "frames: unreserve of a free frame",
					      (pw.r->chunk0 + pw.c) * CHUNK_FRAMES + o, 0);
			if (!((v >> (32 + p)) & 1) || goes_on_past_word(w, o, 1) ||
			    (p < WORD_FRAMES - 1 && (v >> (p + 1)) & 1 && !((v >> (33 + p)) & 1)))
				return misuse(CAIRN_EORDER, "frames: unreserve inside a block",
					      (pw.r->chunk0 + pw.c) * CHUNK_FRAMES + o, 0);
		}
	}
	if (err)
		return err; /* a region gone since range_check: nothing changed */
	/* Against bad input the checks above make it all or nothing. What
	 * they cannot see is a free of the same frames racing with this one
	 * (two unreserves of one range, or a free of one of its frames): the
	 * CASes of piece_free find it, and the call stops there with the
	 * error, the frames before it freed, as free_bulk does. A region can
	 * go only once such a racer freed all of its frames. */
	for (at = first; (err = piece_next(f, &at, end, &pw)) > 0;)
		if ((err = piece_free(pw.r, pw.c, pw.lo, pw.hi)))
			return misuse(err, err == CAIRN_EFREE ? "frames: unreserve of a free frame"
							      : "frames: unreserve inside a block",
				      phys, 0);
	return err;
}

static __attribute__((noinline)) bool is_allocated_other(struct cairn_frames *f,
							 cairn_phys_t phys, unsigned order);

/* The order a frame cache asks about on almost every free, order 0, is
 * answered here in a region search and one load of the frame's word, by
 * the order-0 free's own checks; the other orders out of line. Marked to be
 * inlined: under LTO the frame cache's free then checks without a call
 * (the header's declaration has no inline, so this stays an external
 * definition for every other build). */
inline __attribute__((always_inline)) bool cairn_frames_is_allocated(struct cairn_frames *f,
								     cairn_phys_t phys,
								     unsigned order)
{
	if (__builtin_expect(order == 0, 1)) {
		uint64_t frame = phys >> CAIRN_FRAME_SHIFT;
		struct region *r = frame_region(f, phys);
		return r && word_has_frame0_at(ld(frame_word(r, frame)), frame % WORD_FRAMES);
	}
	return is_allocated_other(f, phys, order);
}

static bool is_allocated_other(struct cairn_frames *f, cairn_phys_t phys, unsigned order)
{
	struct region *r;
	uint64_t c;
	unsigned off;
	if (order == CAIRN_HUGE_ORDER) { /* the order-9 free's checks; held or not */
		_Atomic uint64_t *ce = entry_of_huge(f, phys, &r);
		return ce && (ld(ce) & ~CE_HELD) == HUGE9_HEAD;
	}
	if (locate(f, phys, order, &r, &c, &off))
		return false;
	if (order >= CAIRN_HUGE_ORDER) {
		uint64_t e = ld(&r->chunk[c]);
		return (e & CE_HUGE) && (e & CE_HEAD) && ce_order(e) == order;
	}
	/* (a huge chunk's words are zero: no small block is found in it) */
	_Atomic uint64_t *w = chunk_words(r, c);
	unsigned n = 1u << order, wi = off / WORD_FRAMES;
	if (order <= 5)
		return check_block_word(ld(&w[wi]), off % WORD_FRAMES, n,
					off % WORD_FRAMES + n < WORD_FRAMES
						? is_continuation(w, off + n)
						: goes_on_past_word(w, off, n)) == 0;
	for (unsigned j = 1; j < n / WORD_FRAMES; j++)
		if (ld(&w[wi + j]) != ALLOC_HALF)
			return false;
	return check_block_word(ld(&w[wi]), 0, WORD_FRAMES, goes_on_past_word(w, off, n)) == 0;
}

/* A frame cache's mark on an order-9 block it holds (CE_HELD), set as the
 * block goes into a magazine and cleared as it comes out. No free accepts
 * a held head (free9_fast's and the bulk free's CAS expect the exact
 * unheld value, chunks_free refuses it), so a second free of a block
 * whose first free is cached is a double free here, wherever it goes.
 * A plain load and store: only the block's holder (its caller, then the
 * cache) changes an allocated head, and a free by anyone else fails on
 * it, so nothing else writes the entry between them. A free of the same
 * block on another CPU at the same moment (a double free racing its
 * first free) is outside that: an RMW here would order the two, and this
 * is the order-9 hit of the cache, which does without one. */
bool cairn_frames_huge_hold(struct cairn_frames *f, cairn_phys_t phys)
{
	struct region *r;
	_Atomic uint64_t *ce = entry_of_huge(f, phys, &r);
	if (!ce || ld(ce) != HUGE9_HEAD)
		return false;
	atomic_store_explicit(ce, HUGE9_HEAD | CE_HELD, RELAXED);
	return true;
}

void cairn_frames_huge_unhold(struct cairn_frames *f, cairn_phys_t phys)
{
	struct region *r;
	_Atomic uint64_t *ce = entry_of_huge(f, phys, &r);
	if (ce && ld(ce) == (HUGE9_HEAD | CE_HELD))
		atomic_store_explicit(ce, HUGE9_HEAD, RELAXED);
}
