/* SPDX-License-Identifier: MIT */
/*
 * The metadata of a cairn frames instance, and the rules that hold for it.
 *
 * Two levels, both plain arrays in the metadata memory:
 *
 *  bitmap word (64 bits) covers 32 frames: the low half has one ALLOCATED
 *      bit per frame, the high half one HEAD bit per frame. A block of 2^k
 *      frames (k <= 8) is its first frame with ALLOCATED|HEAD, followed by
 *      2^k - 1 frames with ALLOCATED only ("continuations"). So a block's
 *      order is recorded by where the next head or free frame is, which is
 *      what lets free() reject a wrong order or an interior frame. Blocks of
 *      order <= 5 live in one word and change with one CAS.
 *
 *  chunk entry (64 bits) covers 512 frames (2 MiB, 16 bitmap words):
 *      FREE   free frames in the chunk not yet claimed by an allocator
 *      HUGE   the chunk belongs to a block of order >= 9 (or to a region
 *             being removed); its bitmap words are then all zero
 *      HEAD   first chunk of such a block, ORDER its order (9..18)
 *      OWNER  CPU index + 1 that prefers this chunk for small allocations
 *             (a soft reservation: others use it only when nothing else fits)
 *      HELD   on an order-9 head only: the block sits in a frame cache's
 *             magazine, not in a caller's hands (cairn_frames_huge_hold).
 *             Allocated all the same; no free accepts it, so a second
 *             free of a block whose first free is cached is refused.
 *
 * Counting rule (the core invariant): FREE never exceeds the number of free
 * unparked frames in the chunk (neither bit set; parked frames below) minus
 * the frames that in-flight allocators have claimed.
 * Allocators decrement FREE first (claim) and then set bits; free() clears
 * bits first and then increments FREE. Hence a claimed order-0 frame always
 * exists, and FREE == 512 means no operation is in flight in the chunk, which
 * is what makes the chunk-level CAS of a huge allocation safe.
 *
 * Parked frames. An order-0 frame with HEAD and without ALLOCATED (a state
 * no block uses) is "parked": free in the bitmap, but NOT counted in FREE.
 * An order-0 free whose CPU's park slot (struct cpu_hint) is empty parks
 * the frame (one word CAS, no FREE add) and names it in the slot; that
 * CPU's next plain order-0 allocation CASes it straight back to allocated
 * (no claim). Anybody may unpark a parked frame: CAS HEAD off, then add 1
 * to FREE, the two inside the area's transit count (word_unpark). The word
 * CAS alone decides who has the frame. So the counting
 * rule reads: FREE + parked <= free bits - claims, and FREE alone never
 * exceeds the unparked free bits (neither bit set) minus claims, which is
 * why every search takes only frames with neither bit set, and why every
 * path that needs counted frames and comes up short unparks first: an
 * area short of frames the frames its CPUs' slots name and then its
 * bitmap (a slot can lose one), a range's words for alloc_at, reserve and
 * region removal.
 *
 * Frames of a partial chunk that lie outside the region are marked
 * ALLOCATED|HEAD forever and never counted; every entry point checks region
 * bounds first, so they are never freed. Metadata carved from the top of a
 * region's range lies outside the region in this sense (struct region,
 * meta_end): a free of it fails the bounds check like any frame outside,
 * and only then is it named (CAIRN_EMETA).
 *
 * Metadata cost: 2 bits per frame plus 8 bytes per 2 MiB chunk.
 */
#ifndef CAIRN_FRAMES_LAYOUT_H
#define CAIRN_FRAMES_LAYOUT_H

#include <cairn/frames.h>

#include <stdatomic.h>

#include "hook.h"

#define WORD_FRAMES 32u
#define CHUNK_WORDS 16u
#define CHUNK_FRAMES 512u
#define CHUNK_SHIFT 9u
#define ALLOC_HALF 0xffffffffull

#define CE_FREE_MASK 0x3ffull
#define CE_HUGE (1ull << 10)
#define CE_HEAD (1ull << 11)
#define CE_ORDER_SHIFT 12
#define CE_ORDER_MASK (0x1full << CE_ORDER_SHIFT)
#define CE_HELD (1ull << 17)
#define CE_OWNER_SHIFT 32
#define CE_OWNER_MASK (0xffffull << CE_OWNER_SHIFT)

static inline uint64_t ce_free(uint64_t e) { return e & CE_FREE_MASK; }
static inline unsigned ce_order(uint64_t e) { return (unsigned)((e & CE_ORDER_MASK) >> CE_ORDER_SHIFT); }
static inline unsigned ce_owner(uint64_t e) { return (unsigned)(e >> CE_OWNER_SHIFT) & 0xffff; }
/* An entry names its owner as CPU + 1 in 16 bits (0: none). */
#define FRAMES_MAX_CPUS 0xfffeu

/* A slot's state: UNUSED (never filled, or reclaimed), DEAD (removed, not
 * yet reclaimed: the slot keeps its range and is not reused), or, while
 * the region is active, the slot's tag (TAG_ACTIVE | generation | slot,
 * below): the one value a hint's top 16 bits must equal for the hint to
 * name this region, so one compare says both "active" and "this very
 * filling of the slot". Neither UNUSED nor DEAD is 0, the top bits of no
 * hint at all, nor has TAG_ACTIVE, which every hint's tag has. */
enum region_state { REGION_UNUSED = 1, REGION_DEAD = 2 };
#define TAG_ACTIVE 0x8000u
#define TAG_SLOT_MASK 0x3fu   /* slot index, bits 0..5 of the tag */
#define TAG_GEN_SHIFT 6       /* generation, bits 6..14 */
#define TAG_GENS 512u

static inline bool region_active(uint32_t state)
{
	return state & TAG_ACTIVE;
}

/* Immutable while the slot is active; readers load state with acquire
 * before touching anything else (region_find too), so they see the fields
 * of the filling whose state they read. A slot is refilled only after the
 * caller reclaimed it (cairn_frames_reclaim_region), i.e. after a grace
 * period since its removal: no reader that saw the old filling active is
 * still inside the allocator, and every later reader finds the state not
 * active until the new filling is published (release). */
struct region {
	_Atomic uint32_t state;
	uint32_t area;
	uint64_t first, end;    /* frame numbers [first, end): what it hands out */
	uint64_t nframes;       /* end - first: one compare finds the region */
	/* chunk and bits indexed by global chunk and word number (frame / 512,
	 * frame / 32) rather than by their index in the region: the short
	 * paths reach a frame's entry and word without subtracting chunk0.
	 * Only ever offset by an in-region number (frame_entry, frame_word). */
	uintptr_t entry_base;   /* (uintptr_t)chunk - chunk0 * 8 */
	uintptr_t word_base;    /* (uintptr_t)bits - chunk0 * CHUNK_WORDS * 8 */
	uint64_t tag;           /* region_tag(slot, gen): the region's part of a hint */
	uint64_t chunk0;        /* chunk number of chunk[0] = first >> 9 */
	uint64_t nchunks;
	_Atomic uint64_t *chunk;  /* nchunks entries */
	_Atomic uint64_t *bits;   /* nchunks * CHUNK_WORDS words */
	/* The end of the range the region was given. [end, meta_end) is
	 * metadata carved from the range's top (the instance's or the
	 * region's own; empty if it has none): outside the region for every
	 * lookup, so no path that starts with one (every alloc and free,
	 * the short ones too) can take or give back a frame of it, and no
	 * bitmap state has to tell it apart. Only the slow paths' errors,
	 * the table (overlaps, removal) and the statistics look past end. */
	uint64_t meta_end;
	/* A hint, not a count: set when a search of every chunk found no
	 * counted frame, cleared by whatever adds to a chunk's FREE after
	 * that (region_refilled). A request skips the region while it is set,
	 * until every area has come up short (alloc_request). */
	_Atomic uint32_t exhausted;
	/* The bytes of the range given in its partial frames, below first
	 * and above meta_end (each below a frame): its bytes are
	 * region_given_base() .. region_given_end(). No region manages
	 * those frames, but an add that shares a byte with the range is
	 * EEXIST all the same, as init judges its map. (In what was the
	 * struct's padding: its size, which the short paths multiply by,
	 * stays.) */
	uint16_t lead, trail;
};

/* The range r was given, [base, end) in bytes: the map entries init
 * merged into it (cut at the area lines), or the range of its add. */
static inline cairn_phys_t region_given_base(const struct region *r)
{
	return (r->first << CAIRN_FRAME_SHIFT) - r->lead;
}

static inline cairn_phys_t region_given_end(const struct region *r)
{
	return (r->meta_end << CAIRN_FRAME_SHIFT) + r->trail;
}

/* Bytes of chunk entries and bitmap for frames [first, end). */
static inline uint64_t region_meta_bytes(uint64_t first, uint64_t end)
{
	uint64_t nchunks = ((end - 1) >> CHUNK_SHIFT) - (first >> CHUNK_SHIFT) + 1;
	return ((nchunks * sizeof(uint64_t) + 63) & ~63ull) +
	       nchunks * CHUNK_WORDS * sizeof(uint64_t);
}

/* Every add to a chunk's FREE (the RMW or store that adds) is seq_cst, and
 * so are region_refilled's load and the marker's store and second look
 * (region_mark_exhausted): in the one order of seq_cst operations either
 * the free's load comes after the mark and clears it, or the marker's look
 * comes after the add and finds the frames. No region stays marked over
 * counted frames. On x86-64 and arm64 a seq_cst RMW is the acq_rel one's
 * instruction and the load a plain (x86) or acquire (arm64) load. */
#define REFILL memory_order_seq_cst

/* The region gained counted frames: no longer exhausted. One load; a
 * store only when the hint was set. */
static inline void region_refilled(struct region *r)
{
	if (__builtin_expect(atomic_load_explicit(&r->exhausted, REFILL), 0))
		atomic_store_explicit(&r->exhausted, 0, memory_order_relaxed);
}

/* Hints pack the region's tag << HINT_SLOT_SHIFT with a place in it; 0 is
 * no hint. The tag is TAG_ACTIVE | generation << 6 | slot: the slot's
 * generation counts its fillings, so a hint left from an earlier filling
 * of the slot (a stale hint, a hint loaded before the reclaim cleared it)
 * does not match the state of a later one, and no hint of 0 matches any
 * state. The huge and owned hints' place is the chunk's index in the
 * region; the small hint's is the global word number (frame / 32) of the
 * word it names, which gives its entry, word and first frame by shifts
 * alone (HINT_WORD). A frame number is below 2^52 (phys >> 12), so a word
 * number is below 2^47 for any 64-bit physical address: the place never
 * reaches the tag, whatever the region's base. */
#define HINT_SLOT_SHIFT 48
#define HINT_WORD ((1ull << HINT_SLOT_SHIFT) - 1)

_Static_assert(64 - CAIRN_FRAME_SHIFT - 5 <= HINT_SLOT_SHIFT,
	       "a global word number must fit below the hint's tag");
_Static_assert(CAIRN_MAX_REGIONS == TAG_SLOT_MASK + 1,
	       "a tag's slot bits index the whole region table");
_Static_assert((TAG_GENS - 1) << TAG_GEN_SHIFT < TAG_ACTIVE && TAG_ACTIVE < 1u << 16,
	       "slot, generation and TAG_ACTIVE fit the hint's 16 tag bits");

static inline uint64_t region_tag(unsigned slot, unsigned gen)
{
	return (uint64_t)(TAG_ACTIVE | gen << TAG_GEN_SHIFT | slot) << HINT_SLOT_SHIFT;
}

/* The region slot a hint names (of any generation); ~0u for no hint. */
static inline unsigned hint_slot(uint64_t hint)
{
	return hint ? (unsigned)(hint >> HINT_SLOT_SHIFT) & TAG_SLOT_MASK : ~0u;
}

/* The chunk entry and the bitmap word of an in-region frame, and the entry
 * of an in-region global word number. */
static inline _Atomic uint64_t *frame_entry(const struct region *r, uint64_t frame)
{
	return (_Atomic uint64_t *)(r->entry_base + (frame >> CHUNK_SHIFT) * sizeof(uint64_t));
}

static inline _Atomic uint64_t *frame_word(const struct region *r, uint64_t frame)
{
	return (_Atomic uint64_t *)(r->word_base + (frame / WORD_FRAMES) * sizeof(uint64_t));
}

static inline _Atomic uint64_t *word_entry(const struct region *r, uint64_t gword)
{
	return (_Atomic uint64_t *)(r->entry_base + (gword / CHUNK_WORDS) * sizeof(uint64_t));
}

/* Per-CPU search hints; written by their CPU, and cleared by the reclaim
 * of the slot they name (relaxed atomics keep the host TSan build honest
 * when a slot passes from one thread to another). */
struct cpu_hint {
	_Atomic uint64_t small[CAIRN_AREAS]; /* tag << HINT_SLOT_SHIFT | global word number */
	/* The value this CPU last gave that word (by an order-0 free or
	 * allocation): only the expected value of the next order-0
	 * allocation's bit CAS, or of an order-0 free's CAS in the word the
	 * hint names, so it may be stale or wrong in any way. */
	_Atomic uint64_t word[CAIRN_AREAS];
	_Atomic uint64_t huge[CAIRN_AREAS];  /* tag << HINT_SLOT_SHIFT | chunk */
	_Atomic uint64_t owned[CAIRN_AREAS]; /* chunk whose OWNER is us, same packing */
	/* Frame number + 1 of the frame this CPU last parked in the area (0:
	 * none). Only a place to look: whoever CASes the frame's word decides
	 * who has it, so the slot may be stale in any way (see "Parked
	 * frames" below). Written only by its CPU. */
	_Atomic uint64_t park[CAIRN_AREAS];
} __attribute__((aligned(64)));

/* The `word` that goes with the small hint at hp (&h->small[area]): the
 * same offset from it for every area. The short paths reach both through
 * the one pointer, which keeps a register free on them. */
static inline _Atomic uint64_t *hint_word(_Atomic uint64_t *hp)
{
	return (_Atomic uint64_t *)((char *)hp + offsetof(struct cpu_hint, word) -
				    offsetof(struct cpu_hint, small));
}

/* Set bits of a word. Not __builtin_popcount: without -mpopcnt it becomes
 * a libgcc call, and the freestanding library links no runtime. */
static inline unsigned bit_count(uint64_t v)
{
	v = v - ((v >> 1) & 0x5555555555555555ull);
	v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
	v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
	return (unsigned)((v * 0x0101010101010101ull) >> 56);
}

/* The park slot that goes with the small hint at hp, as hint_word. */
static inline _Atomic uint64_t *hint_park(_Atomic uint64_t *hp)
{
	return (_Atomic uint64_t *)((char *)hp + offsetof(struct cpu_hint, park) -
				    offsetof(struct cpu_hint, small));
}

/* Parked frames of word v: HEAD without ALLOCATED (see "Parked frames"
 * above), as a mask of the ALLOCATED half. */
static inline uint32_t word_parked(uint64_t v)
{
	return (uint32_t)(v >> 32) & ~(uint32_t)v;
}

/* Frames of word v that a search may take: neither bit set (a parked
 * frame is free but not counted, so it is no search's to take). */
static inline uint32_t word_avail(uint64_t v)
{
	return ~(uint32_t)(v | v >> 32);
}

/* Map entries of no whole frame, and the map's bytes outside its
 * entries' whole frames: listed, in no region. */
struct boot_skipped {
	uint64_t entries, bytes;
};

struct cairn_frames {
	unsigned ncpus;
	_Atomic uint32_t nregions;   /* slots [0, nregions) may be in use */
	_Atomic uint32_t table_lock; /* serialises add/remove/reclaim region only */
	_Atomic uint32_t areas_present; /* CAIRN_F_* of areas with an active region */
	uint64_t meta_bytes;         /* instance part */
	uint64_t removals;           /* regions removed so far (under table_lock) */
	struct cpu_hint *cpu;
	struct region region[CAIRN_MAX_REGIONS];
	/* A DEAD slot's removal number (`removals` then), under table_lock:
	 * the reclaim takes the oldest. Apart from struct region, which the
	 * short paths index: its size stays a cheap multiply. */
	uint64_t removed[CAIRN_MAX_REGIONS];
	/* What the boot map listed outside whole frames (the statistics'
	 * boot_skipped_*), fixed at init. */
	struct boot_skipped boot_skipped;
	/* Unparks in flight, one word per area (TRANSIT_*, below): written by
	 * unparks only, read by a request about to fail. A line apart from
	 * everything the short paths read. */
	_Atomic uint64_t transit[CAIRN_AREAS] __attribute__((aligned(64)));
};

static inline enum cairn_area area_of(uint64_t frame)
{
	if (frame < (16ull << 20) >> CAIRN_FRAME_SHIFT)
		return CAIRN_AREA_LOW16M;
	if (frame < (4ull << 30) >> CAIRN_FRAME_SHIFT)
		return CAIRN_AREA_LOW4G;
	return CAIRN_AREA_HIGH;
}

/* Frames of chunk `c` (index in the region) that lie inside the region. */
static inline uint64_t chunk_capacity(const struct region *r, uint64_t c)
{
	uint64_t lo = (r->chunk0 + c) << CHUNK_SHIFT, hi = lo + CHUNK_FRAMES;
	if (lo < r->first)
		lo = r->first;
	if (hi > r->end)
		hi = r->end;
	return hi - lo;
}

static inline _Atomic uint64_t *chunk_words(const struct region *r, uint64_t c)
{
	return &r->bits[c * CHUNK_WORDS];
}

/* An area's transit word: the low half counts the unparks in flight in
 * the area (from before their word's CAS until after their add to FREE),
 * the high half the unparks that ended there, mod 2^32. An ending does
 * both in one add. A request that saw no unpark in flight after its scan,
 * and none ended since it read the word before its scan, missed no frame
 * of the area to an unpark (docs/design.md, "Unparks in flight"). */
#define TRANSIT_LIVE 0xffffffffull
#define TRANSIT_END ((1ull << 32) - 1) /* ended + 1, in flight - 1 */

/* Unpark the parked frames among `within` (a mask of frames) of word w of
 * a chunk whose entry is ce, in the area whose transit word is tr: one CAS
 * takes HEAD off all of them (the CAS decides: a frame another CPU took
 * or unparked first is no longer parked in the value it compares), then
 * FREE counts them, bits first as in every free. Between the two the
 * frames are neither parked nor counted; tr says so to every request that
 * comes up short meanwhile. It is raised (relaxed) before the CAS, whose
 * release makes it seen by whoever reads the word the CAS wrote and then
 * acquires; it is lowered (release) after the add, so whoever acquires
 * the lowered word sees the add. An unpark that finds nothing lowers it
 * without ending: it changed nothing. Returns how many. */
static inline unsigned word_unpark(_Atomic uint64_t *tr, _Atomic uint64_t *w,
				   _Atomic uint64_t *ce, uint32_t within)
{
	uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
	uint32_t m;
	if (!(word_parked(v) & within))
		return 0;
	atomic_fetch_add_explicit(tr, 1, memory_order_relaxed);
	while ((m = word_parked(v) & within))
		if (atomic_compare_exchange_weak_explicit(w, &v, v & ~((uint64_t)m << 32),
							  memory_order_acq_rel,
							  memory_order_relaxed)) {
			CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_UNPARK, w);
			atomic_fetch_add_explicit(ce, bit_count(m), REFILL);
			atomic_fetch_add_explicit(tr, TRANSIT_END, memory_order_release);
			return bit_count(m);
		}
	atomic_fetch_sub_explicit(tr, 1, memory_order_relaxed);
	return 0;
}

/* Unpark every parked frame of chunk c's frames [lo, hi). A huge chunk's
 * words are zero: nothing there. Returns how many. */
static inline uint64_t chunk_unpark(struct cairn_frames *f, struct region *r, uint64_t c,
				    unsigned lo, unsigned hi)
{
	_Atomic uint64_t *w = &r->bits[c * CHUNK_WORDS], *tr = &f->transit[r->area];
	uint64_t n = 0;
	for (unsigned at = lo; at < hi;) {
		unsigned wi = at / WORD_FRAMES, p = at % WORD_FRAMES;
		unsigned k = hi - at < WORD_FRAMES - p ? hi - at : WORD_FRAMES - p;
		uint32_t within = (uint32_t)((k >= 32 ? 0xffffffffull : (1ull << k) - 1) << p);
		n += word_unpark(tr, &w[wi], &r->chunk[c], within);
		at += k;
	}
	if (n)
		region_refilled(r);
	return n;
}

/* The transit words of `areas`, summed: the low half is 0 only if no
 * unpark was in flight in any of them, and the high half changes if one
 * ended in any (the low halves never carry: an area has fewer unparks in
 * flight than there are threads). */
static inline uint64_t transit_read(struct cairn_frames *f, unsigned areas)
{
	uint64_t t = 0;
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		if (areas & (1u << a))
			t += atomic_load_explicit(&f->transit[a], memory_order_acquire);
	return t;
}

/* What a call about to fail spends on unparks in flight: TRANSIT_WAIT
 * pause iterations in all waiting for them, and TRANSIT_LOOKS looks more.
 * An unparker is two RMWs from done unless it was stopped there: this
 * waits out an interrupt or a virtual machine's exit, not a preemption
 * (docs/design.md, "Unparks in flight"). */
#define TRANSIT_WAIT (1u << 16)
#define TRANSIT_LOOKS 4u

struct transit_wait {
	uint64_t seen;    /* the transit words before the last look began */
	unsigned pauses;  /* left of TRANSIT_WAIT */
	unsigned looks;   /* left of TRANSIT_LOOKS */
};

/* Read before the first look of a call that may fail for want of free
 * frames in `areas`: a request's last look, or alloc_at's, reserve's or a
 * region removal's tries over their range. */
static inline struct transit_wait transit_start(struct cairn_frames *f, unsigned areas)
{
	return (struct transit_wait){ transit_read(f, areas), TRANSIT_WAIT, TRANSIT_LOOKS };
}

/* A call found no (or not every) frame it needs in `areas` by a look that
 * began after it read tw->seen from their transit words and that read the
 * words of every frame it needs that was parked then (its unpark did): true
 * if it must look once more, because an unpark was in flight after its
 * look or ended since then (its frames may have been neither parked nor
 * counted when the look passed them). Waits for the unparks in flight
 * first. Out of line: only a call about to fail comes here (unused in a
 * file that includes this and fails nothing). */
static __attribute__((noinline, unused)) bool transit_recheck(struct cairn_frames *f,
							      unsigned areas,
							      struct transit_wait *tw)
{
	/* The look's loads of words (relaxed) that read an unpark's CAS:
	 * this fence makes the raise before that CAS seen below. */
	atomic_thread_fence(memory_order_acquire);
	uint64_t t = transit_read(f, areas);
	while ((t & TRANSIT_LIVE) && tw->pauses) {
		CAIRN_FRAMES_HOOK(CAIRN_FRAMES_HOOK_UNPARK_WAIT, f);
		cairn_port_pause();
		tw->pauses--;
		t = transit_read(f, areas);
	}
	if ((t & TRANSIT_LIVE) || t >> 32 == tw->seen >> 32 || !tw->looks)
		return false;
	tw->seen = t;
	tw->looks--;
	return true;
}

/* The active region holding `frame`, or NULL. The state first (acquire):
 * a slot is refilled once reclaimed, so its bounds are only read under a
 * state read active, and then they are that filling's (struct region). A
 * removed region's range may come back in another slot, so a slot that
 * is not active does not end the search. */
static inline bool region_holds(const struct region *r, uint64_t frame)
{
	return region_active(atomic_load_explicit(&r->state, memory_order_acquire)) &&
	       frame - r->first < r->nframes;
}

static inline struct region *region_find(struct cairn_frames *f, uint64_t frame)
{
	struct region *r = f->region;
	/* The first slot apart, before the count: every slot's state starts
	 * UNUSED, so its state alone answers (as in active_region). With one
	 * region, or a frame in the first, the search is one compare, with
	 * no count to read and no loop to set up. */
	if (__builtin_expect(region_holds(r, frame), 1))
		return r;
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_acquire);
	for (uint32_t i = 1; i < n; i++)
		if (region_holds(&r[i], frame))
			return &r[i];
	return NULL;
}

#endif /* CAIRN_FRAMES_LAYOUT_H */
