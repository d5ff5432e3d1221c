/* SPDX-License-Identifier: MIT */
/*
 * cairn frames: statistics, the invariant checker and a dump. All of these
 * read a quiescent instance; on a live one they see a plausible snapshot.
 */
#include "fmt.h"
#include "frames_layout.h"

static inline uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_acquire);
}

static bool frame_free(struct region *r, uint64_t c, unsigned off)
{
	return !((ld(&chunk_words(r, c)[off / WORD_FRAMES]) >> (off % WORD_FRAMES)) & 1);
}

/* Parked frames of chunk c (free, not counted in FREE: frames_layout.h). */
static uint64_t chunk_parked(struct region *r, uint64_t c)
{
	uint64_t n = 0;
	for (unsigned wi = 0; wi < CHUNK_WORDS; wi++)
		n += bit_count(word_parked(ld(&chunk_words(r, c)[wi])));
	return n;
}

/* Count [off, off + 2^k) of chunk c as maximal aligned free blocks. */
static void count_bits(struct region *r, uint64_t c, unsigned off, unsigned k,
		       uint64_t *blocks)
{
	bool all = true;
	for (unsigned i = 0; i < (1u << k) && all; i++)
		all = frame_free(r, c, off + i);
	if (all)
		blocks[k]++;
	else if (k > 0) {
		count_bits(r, c, off, k - 1, blocks);
		count_bits(r, c, off + (1u << (k - 1)), k - 1, blocks);
	}
}

/* The same over chunk numbers [cn, cn + 2^(k-9)) for k >= 9. */
static void count_chunks(struct region *r, uint64_t cn, unsigned k, uint64_t *blocks)
{
	uint64_t nc = 1ull << (k - CAIRN_HUGE_ORDER);
	if (cn + nc <= r->chunk0 || cn >= r->chunk0 + r->nchunks)
		return;
	bool all = cn >= r->chunk0 && cn + nc <= r->chunk0 + r->nchunks;
	for (uint64_t j = 0; j < nc && all; j++) {
		uint64_t e = ld(&r->chunk[cn - r->chunk0 + j]);
		all = !(e & CE_HUGE) &&
		      ce_free(e) + chunk_parked(r, cn - r->chunk0 + j) == CHUNK_FRAMES;
	}
	if (all) {
		blocks[k]++;
	} else if (k > CAIRN_HUGE_ORDER) {
		count_chunks(r, cn, k - 1, blocks);
		count_chunks(r, cn + nc / 2, k - 1, blocks);
	} else if (!(ld(&r->chunk[cn - r->chunk0]) & CE_HUGE)) {
		count_bits(r, cn - r->chunk0, 0, CAIRN_HUGE_ORDER - 1, blocks);
		count_bits(r, cn - r->chunk0, CHUNK_FRAMES / 2, CAIRN_HUGE_ORDER - 1, blocks);
	}
}

void cairn_frames_stats(struct cairn_frames *f, struct cairn_frames_stats *st)
{
	*st = (struct cairn_frames_stats){ .meta_bytes = f->meta_bytes,
					   .boot_skipped_entries = f->boot_skipped.entries,
					   .boot_skipped_bytes = f->boot_skipped.bytes };
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_acquire);
	for (uint32_t i = 0; i < n; i++) {
		struct region *r = &f->region[i];
		if (!region_active(atomic_load_explicit(&r->state, memory_order_acquire)))
			continue;
		st->regions++;
		st->meta_bytes += region_meta_bytes(r->first, r->meta_end);
		/* the range given, carved metadata too: never free */
		st->total_frames[r->area] += r->meta_end - r->first;
		for (uint64_t c = 0; c < r->nchunks; c++) {
			/* the entry first: an unpark between the two reads (bits,
			 * then FREE) is then missed, never counted twice */
			uint64_t e = ld(&r->chunk[c]);
			st->free_frames[r->area] += ce_free(e) + chunk_parked(r, c);
		}
		uint64_t step = 1ull << (CAIRN_MAX_ORDER - CAIRN_HUGE_ORDER);
		for (uint64_t cn = r->chunk0 & ~(step - 1); cn < r->chunk0 + r->nchunks; cn += step)
			count_chunks(r, cn, CAIRN_MAX_ORDER, st->free_blocks[r->area]);
	}
}

/* Frame numbers of a 64-bit physical address: all below this one. */
#define FRAME_LIMIT (1ull << (64 - CAIRN_FRAME_SHIFT))

static int broken(const char *what, uint64_t a, uint64_t b)
{
	cairn_port_report(CAIRN_ECORRUPT, what, a, b);
	return CAIRN_ECORRUPT;
}

/* One small (non-huge) chunk: bits agree with the counter (parked frames
 * are free, not counted), absent frames are allocated heads, every block
 * is a naturally aligned power of two. */
static int check_chunk(struct cairn_frames *f, struct region *r, uint64_t c)
{
	uint64_t e = ld(&r->chunk[c]), base = (r->chunk0 + c) << CHUNK_SHIFT, free = 0, parked = 0;
	_Atomic uint64_t *w = chunk_words(r, c);
	if (e & (CE_HEAD | CE_ORDER_MASK | CE_HELD))
		return broken("frames: head/order/held on a small chunk", base, e);
	if (ce_owner(e) > f->ncpus)
		return broken("frames: chunk owner out of range", base, e);
	unsigned head = 0, len = 0; /* the block being walked */
	for (unsigned o = 0; o <= CHUNK_FRAMES; o++) {
		uint64_t v = o < CHUNK_FRAMES ? ld(&w[o / WORD_FRAMES]) : 0;
		unsigned p = o % WORD_FRAMES;
		bool alloc = (v >> p) & 1, is_head = (v >> (32 + p)) & 1;
		uint64_t fr = base + o;
		if (o < CHUNK_FRAMES && (fr < r->first || fr >= r->end)) {
			if (!alloc || !is_head)
				return broken("frames: absent frame not marked", fr, v);
			alloc = false; /* ends any block, like a free frame */
			is_head = false;
		} else if (o < CHUNK_FRAMES && !alloc) {
			free++;
			parked += is_head; /* HEAD alone: parked, free */
			is_head = false;
		}
		if (len && (!alloc || is_head)) { /* the previous block ended */
			if (len & (len - 1) || head % len)
				return broken("frames: block not a power of two or misaligned",
					      base + head, len);
			len = 0;
		}
		if (o < CHUNK_FRAMES && alloc && !is_head && !len)
			return broken("frames: continuation without a head", fr, v);
		if (o < CHUNK_FRAMES && alloc && is_head && !(fr < r->first || fr >= r->end)) {
			head = o;
			len = 1;
		} else if (o < CHUNK_FRAMES && alloc && !is_head) {
			len++;
		}
	}
	/* Counting rule, quiescent: FREE + parked == free bits */
	if (free != ce_free(e) + parked)
		return broken("frames: chunk counter differs from its bitmap", base, ce_free(e));
	return 0;
}

int cairn_frames_validate(struct cairn_frames *f)
{
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_acquire);
	if (n > CAIRN_MAX_REGIONS)
		return broken("frames: region count", n, 0);
	uint32_t present = 0; /* the areas of the active regions */
	for (uint32_t i = 0; i < n; i++) {
		struct region *r = &f->region[i];
		uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
		if (!region_active(state)) {
			if (state != REGION_UNUSED && state != REGION_DEAD)
				return broken("frames: region state", i, state);
			continue;
		}
		if (state != r->tag >> HINT_SLOT_SHIFT || (state & TAG_SLOT_MASK) != i)
			return broken("frames: region tag", i, state);
		/* every frame below 2^52, the end of what the range was given
		 * too: frame << CAIRN_FRAME_SHIFT, the byte every path makes of
		 * a frame (region_given_end, the hints' places), must not wrap,
		 * and no range init or add_region takes ends at 2^64 */
		if (r->meta_end >= FRAME_LIMIT)
			return broken("frames: region past 2^52 frames", r->first, r->meta_end);
		if (r->first >= r->end || r->end > r->meta_end || r->area != area_of(r->first) ||
		    area_of(r->meta_end - 1) != r->area ||
		    r->nchunks != ((r->end - 1) >> CHUNK_SHIFT) - r->chunk0 + 1)
			return broken("frames: region bounds", r->first, r->end);
		/* each under a frame, and no given byte below byte 0 (else
		 * region_given_base wraps past the range's end, and the
		 * overlap checks, add's too, never meet the range) */
		if (r->lead >= CAIRN_FRAME_SIZE || r->trail >= CAIRN_FRAME_SIZE ||
		    r->lead > r->first << CAIRN_FRAME_SHIFT)
			return broken("frames: region's partial frames", r->lead, r->trail);
		present |= 1u << r->area;
		/* on the bytes given, which hold the frames, carves too */
		for (uint32_t j = 0; j < i; j++)
			if (region_active(atomic_load_explicit(&f->region[j].state,
							       memory_order_acquire)) &&
			    region_given_base(&f->region[j]) < region_given_end(r) &&
			    region_given_base(r) < region_given_end(&f->region[j]))
				return broken("frames: regions overlap", r->first, f->region[j].first);
		uint64_t tail = 0; /* chunks still owed to the last huge head */
		for (uint64_t c = 0; c < r->nchunks; c++) {
			uint64_t e = ld(&r->chunk[c]), cn = r->chunk0 + c;
			if (!(e & CE_HUGE)) {
				if (tail)
					return broken("frames: huge block cut short", cn, tail);
				int err = check_chunk(f, r, c);
				if (err)
					return err;
				continue;
			}
			for (unsigned wi = 0; wi < CHUNK_WORDS; wi++)
				if (ld(&chunk_words(r, c)[wi]))
					return broken("frames: bits set in a huge chunk", cn, wi);
			if (ce_free(e) || chunk_capacity(r, c) != CHUNK_FRAMES)
				return broken("frames: huge chunk count/capacity", cn, e);
			if (e & CE_HEAD) {
				unsigned k = ce_order(e);
				if (tail || k < CAIRN_HUGE_ORDER || k > CAIRN_MAX_ORDER ||
				    cn & ((1ull << (k - CAIRN_HUGE_ORDER)) - 1) ||
				    ((e & CE_HELD) && k != CAIRN_HUGE_ORDER))
					return broken("frames: bad huge head", cn, e);
				tail = (1ull << (k - CAIRN_HUGE_ORDER)) - 1;
			} else if (!tail) {
				return broken("frames: huge chunk without a head", cn, e);
			} else if (e & CE_HELD) { /* (an order-9 head's mark only) */
				return broken("frames: held mark on a huge block's later chunk",
					      cn, e);
			} else {
				tail--;
			}
		}
		if (tail)
			return broken("frames: huge block past the region", r->end, tail);
	}
	uint32_t bits = atomic_load_explicit(&f->areas_present, memory_order_relaxed);
	if (bits != present)
		return broken("frames: areas present", bits, present);
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		uint64_t t = atomic_load_explicit(&f->transit[a], memory_order_relaxed);
		if (t & TRANSIT_LIVE) /* quiescent: no unpark in flight */
			return broken("frames: unparks in flight", a, t);
	}
	return 0;
}

void cairn_frames_dump(struct cairn_frames *f)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	struct fmt_line l = { .n = 0 };
	fmt_str(&l, "cairn frames: ");
	fmt_dec(&l, st.regions);
	fmt_str(&l, " regions, metadata ");
	fmt_dec(&l, st.meta_bytes);
	fmt_str(&l, " bytes, ");
	fmt_dec(&l, f->ncpus);
	fmt_str(&l, " cpus");
	cairn_port_log(l.s);
	if (st.boot_skipped_bytes) { /* listed by the boot map, in no region */
		l.n = 0;
		fmt_str(&l, "  boot map: ");
		fmt_dec(&l, st.boot_skipped_bytes);
		fmt_str(&l, " bytes outside whole frames, ");
		fmt_dec(&l, st.boot_skipped_entries);
		fmt_str(&l, " entries of no whole frame skipped");
		cairn_port_log(l.s);
	}
	static const char *const names[CAIRN_AREAS] = { "low16m", "low4g", "high" };
	uint32_t n = atomic_load_explicit(&f->nregions, memory_order_acquire);
	for (uint32_t i = 0; i < n; i++) {
		struct region *r = &f->region[i];
		uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
		if (state == REGION_UNUSED) /* (reclaimed: its fields are stale) */
			continue;
		l.n = 0;
		fmt_str(&l, "  region ");
		fmt_dec(&l, i);
		fmt_str(&l, region_active(state) ? " " : " (removed) ");
		fmt_hex(&l, r->first << CAIRN_FRAME_SHIFT);
		fmt_str(&l, "-");
		fmt_hex(&l, r->end << CAIRN_FRAME_SHIFT);
		if (r->meta_end != r->end) { /* carved from the range's top */
			fmt_str(&l, " metadata to ");
			fmt_hex(&l, r->meta_end << CAIRN_FRAME_SHIFT);
		}
		fmt_str(&l, " ");
		fmt_str(&l, names[r->area]);
		uint64_t free = 0, huge = 0, full = 0;
		for (uint64_t c = 0; region_active(state) && c < r->nchunks; c++) {
			uint64_t e = ld(&r->chunk[c]);
			free += ce_free(e) + chunk_parked(r, c);
			huge += !!(e & CE_HUGE);
			full += !(e & CE_HUGE) && ce_free(e) == 0;
		}
		fmt_str(&l, " free ");
		fmt_dec(&l, free);
		fmt_str(&l, "/");
		fmt_dec(&l, r->end - r->first);
		fmt_str(&l, " chunks ");
		fmt_dec(&l, r->nchunks);
		fmt_str(&l, " (huge ");
		fmt_dec(&l, huge);
		fmt_str(&l, ", full ");
		fmt_dec(&l, full);
		fmt_str(&l, ")");
		if (region_active(state) && atomic_load_explicit(&r->exhausted, memory_order_relaxed))
			fmt_str(&l, " exhausted"); /* requests pass it by (alloc_request) */
		cairn_port_log(l.s);
	}
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		if (!st.total_frames[a])
			continue;
		l.n = 0;
		fmt_str(&l, "  ");
		fmt_str(&l, names[a]);
		fmt_str(&l, " free blocks by order:");
		for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++) {
			fmt_str(&l, " ");
			fmt_dec(&l, st.free_blocks[a][k]);
		}
		cairn_port_log(l.s);
	}
}
