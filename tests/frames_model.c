/* SPDX-License-Identifier: MIT */
/*
 * Model-based random test of cairn frames against a per-frame reference.
 *
 * The reference knows, for every frame, whether it is outside the map, free,
 * or which block (head frame, order) holds it. Every operation's result must
 * match it exactly: error codes of free, alloc_at, reserve and unreserve,
 * statistics (free frames per area and the buddy decomposition per order),
 * and validate(). Where cairn chooses (which free block an allocation
 * returns) the reference checks the choice is admissible under the policy:
 * the block was free, lies in one region, has the alignment, lies in an
 * accepted area, and no accepted area of higher preference could have served
 * it; ENOMEM only when no accepted area can.
 *
 * Parked frames (core/frames_layout.h) are modelled exactly: the one CPU's
 * park slot per area (the frame an order-0 free parked when the slot was
 * empty), and whether that frame is still parked. A plain order-0
 * allocation must return the slot's frame while it is parked; a search must
 * never return a parked frame; an area that cannot serve a request without
 * its parked frame unparks it; alloc_at and reserve unpark the parked
 * frames of their range. After every operation the parked frames of the
 * bitmap must be exactly the model's. The huge bulk allocation alone is
 * not predicted (how often it falls to the general path, which unparks,
 * depends on its hint's runs): there the model only checks that nothing
 * was parked anew, and follows.
 *
 * usage: frames_model [seed] [ops]
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdlib.h>
#include <string.h>

#include "../core/frames_layout.h"
#include "check.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE
#define UNIVERSE ((4 * GiB + 32 * MiB) / FRAME)

enum { ABSENT = -2, FREE = -1 };

static int32_t *head;   /* per frame: ABSENT, FREE, or head frame (offset) */
static uint8_t *order;  /* per head frame */

/* The map and its normalised spans (merged, split at 16 MiB / 4 GiB). */
static const struct cairn_mem_range map[] = {
	{ 4 * GiB, 10 * MiB + 36 * 1024 }, /* partial chunk at the end */
	{ 1 * MiB + 8192, 11 * MiB - 8192 },
	{ 12 * MiB, 8 * MiB },             /* crosses 16 MiB */
	{ 20 * MiB, 2 * MiB + 4096 },      /* adjacent: merged */
};
struct span {
	uint64_t first, end;
	unsigned area;
};
static struct span spans[4] = {
	{ (1 * MiB + 8192) / FRAME, 16 * MiB / FRAME, CAIRN_AREA_LOW16M },
	{ 16 * MiB / FRAME, (22 * MiB + 4096) / FRAME, CAIRN_AREA_LOW4G },
	{ 4 * GiB / FRAME, (4 * GiB + 10 * MiB + 36 * 1024) / FRAME, CAIRN_AREA_HIGH },
};
#define NSPANS nspans
static int nspans = 3; /* the map's, and spans[3] while a range is added */

/* Ranges added at run time, one at a time, and removed again: each
 * removal is reclaimed, so they all pass through one slot of the table,
 * many more times than it has slots. */
static const struct cairn_mem_range extra[3] = {
	{ 4 * GiB + 12 * MiB, 4 * MiB },
	{ 4 * GiB + 18 * MiB, 2 * MiB },
	{ 4 * GiB + 22 * MiB, 6 * MiB },
};
static void *extra_meta;
static uint64_t gone_first, gone_end; /* the last removed range's frames */
static uint64_t extra_adds, extra_removals, extra_busy;

static uint64_t rng_state;
static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

static const struct span *span_of(uint64_t fr)
{
	for (int i = 0; i < NSPANS; i++)
		if (fr >= spans[i].first && fr < spans[i].end)
			return &spans[i];
	return NULL;
}

/* The park slot per area (frame, or -1) and whether its frame is still
 * parked. Only the slots hold parked frames here (one thread, one CPU). */
static int64_t ref_slot[CAIRN_AREAS] = { -1, -1, -1 };
static bool ref_live[CAIRN_AREAS];
static uint64_t parked_taken, parked_searched; /* how often each happened */

static bool is_parked_ref(uint64_t fr)
{
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		if (ref_live[a] && ref_slot[a] == (int64_t)fr)
			return true;
	return false;
}

static bool range_parked(uint64_t fr, uint64_t n)
{
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		if (ref_live[a] && (uint64_t)ref_slot[a] - fr < n)
			return true;
	return false;
}

/* alloc_at and reserve unpark the parked frames of their range. */
static void unpark_range(uint64_t fr, uint64_t n)
{
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		if (ref_live[a] && (uint64_t)ref_slot[a] - fr < n)
			ref_live[a] = false;
}

static bool range_free(uint64_t fr, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (head[fr + i] != FREE)
			return false;
	return true;
}

static void mark(uint64_t fr, unsigned k)
{
	for (uint64_t i = 0; i < 1ull << k; i++)
		head[fr + i] = (int32_t)fr;
	order[fr] = (uint8_t)k;
}

static void unmark(uint64_t fr, unsigned k)
{
	for (uint64_t i = 0; i < 1ull << k; i++)
		head[fr + i] = FREE;
}

/* Is there a free order-k block aligned to 2^a in `area`? With
 * `unparked`, one without parked frames: what a search can take. */
static bool ref_fits_in(unsigned area, unsigned k, unsigned a, bool unparked)
{
	for (int i = 0; i < NSPANS; i++) {
		if (spans[i].area != area)
			continue;
		uint64_t step = 1ull << a, n = 1ull << k;
		for (uint64_t fr = (spans[i].first + step - 1) & ~(step - 1);
		     fr + n <= spans[i].end; fr += step)
			if (range_free(fr, n) && !(unparked && range_parked(fr, n)))
				return true;
	}
	return false;
}

static bool ref_fits(unsigned area, unsigned k, unsigned a)
{
	return ref_fits_in(area, k, a, false);
}

static bool ref_fits_unparked(unsigned area, unsigned k, unsigned a)
{
	return ref_fits_in(area, k, a, true);
}

static uint64_t ref_free_in(unsigned area)
{
	uint64_t n = 0;
	for (int i = 0; i < NSPANS; i++)
		if (spans[i].area == area)
			for (uint64_t fr = spans[i].first; fr < spans[i].end; fr++)
				n += head[fr] == FREE;
	return n;
}

static const unsigned pref[3] = { CAIRN_AREA_HIGH, CAIRN_AREA_LOW4G, CAIRN_AREA_LOW16M };
static unsigned areas_of(unsigned flags) { return flags & CAIRN_F_ANY ? flags & CAIRN_F_ANY : CAIRN_F_ANY; }

static int ref_locate(cairn_phys_t phys, unsigned k)
{
	if (k > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	uint64_t fr = phys / FRAME;
	if (phys % FRAME || fr % (1ull << k))
		return CAIRN_EALIGN;
	const struct span *s = span_of(fr);
	if (!s || fr + (1ull << k) > s->end)
		return CAIRN_ERANGE;
	return 0;
}

static int ref_free_err(cairn_phys_t phys, unsigned k)
{
	int err = ref_locate(phys, k);
	if (err)
		return err;
	uint64_t fr = phys / FRAME;
	if (head[fr] == FREE)
		return CAIRN_EFREE;
	if (head[fr] != (int32_t)fr || order[fr] != k)
		return CAIRN_EORDER;
	return 0;
}

static int ref_range_err(cairn_phys_t phys, uint64_t size)
{
	if (size == 0 || phys + size < phys)
		return CAIRN_EINVAL;
	if ((phys | size) % FRAME)
		return CAIRN_EALIGN;
	for (uint64_t fr = phys / FRAME; fr < (phys + size) / FRAME; fr++)
		if (fr >= UNIVERSE || !span_of(fr))
			return CAIRN_ERANGE;
	return 0;
}

struct held {
	cairn_phys_t phys;
	unsigned order;
};
static struct held *held;
static size_t nheld;
static struct held *gone; /* recently freed: double-free candidates */
static size_t ngone;

static void hold(cairn_phys_t p, unsigned k)
{
	held[nheld++] = (struct held){ p, k };
}

/* A single order-0 free that succeeded parks the frame if its area's
 * slot is empty. */
static void ref_freed0(cairn_phys_t p)
{
	const struct span *s = span_of(p / FRAME);
	if (ref_slot[s->area] < 0) {
		ref_slot[s->area] = (int64_t)(p / FRAME);
		ref_live[s->area] = true;
	}
}

/* The bitmap's parked frames are exactly the model's. */
static void compare_parked(struct cairn_frames *f)
{
	uint64_t n = 0;
	for (int i = 0; i < NSPANS; i++) {
		struct region *r = region_find(f, spans[i].first);
		REQUIRE(r);
		for (uint64_t w = 0; w < r->nchunks * CHUNK_WORDS; w++)
			for (uint32_t m = word_parked(atomic_load(&r->bits[w])); m; m &= m - 1) {
				uint64_t fr = (r->chunk0 * CHUNK_WORDS + w) * WORD_FRAMES +
					      (unsigned)__builtin_ctz(m);
				CHECK(is_parked_ref(fr));
				n++;
			}
	}
	uint64_t want = 0;
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		want += ref_live[a];
		CHECK_EQ(atomic_load(&f->cpu[0].park[a]), ref_slot[a] < 0 ? 0 : (uint64_t)ref_slot[a] + 1);
	}
	CHECK_EQ(n, want);
}

static void compare_stats(struct cairn_frames *f)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	uint64_t blocks[CAIRN_AREAS][CAIRN_MAX_ORDER + 1] = { { 0 } };
	for (int i = 0; i < NSPANS; i++) {
		/* buddy decomposition of each span into maximal aligned free blocks */
		for (uint64_t fr = spans[i].first; fr < spans[i].end;) {
			if (head[fr] != FREE) {
				fr++;
				continue;
			}
			unsigned k = CAIRN_MAX_ORDER;
			while (k && (fr % (1ull << k) || fr + (1ull << k) > spans[i].end ||
				     !range_free(fr, 1ull << k)))
				k--;
			blocks[spans[i].area][k]++;
			fr += 1ull << k;
		}
	}
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		CHECK_EQ(st.free_frames[a], ref_free_in(a));
		for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++)
			CHECK_EQ(st.free_blocks[a][k], blocks[a][k]);
	}
}

/* A random physical address: mostly in the map, sometimes just outside. */
static cairn_phys_t random_addr(unsigned k)
{
	const struct span *s = &spans[below(NSPANS)];
	uint64_t fr = s->first + below(s->end - s->first + 64) - 32;
	if (gone_end && below(16) == 0) /* a frame of the removed range */
		fr = gone_first + below(gone_end - gone_first);
	if (below(8) != 0)
		fr &= ~((1ull << k) - 1);
	return fr * FRAME;
}

static unsigned random_order(void)
{
	uint64_t r = below(100);
	return r < 50 ? 0 : r < 80 ? 1 + (unsigned)below(5) : r < 95 ? 6 + (unsigned)below(4) : 10 + (unsigned)below(2);
}

static void op_alloc(struct cairn_frames *f)
{
	unsigned k = random_order(), a = k + (below(3) == 0 ? (unsigned)below(5) : 0);
	unsigned flags = (unsigned)below(8) | (below(10) == 0 ? CAIRN_F_ZERO : 0);
	cairn_phys_t p;
	bool plain = k == 0 && a == 0 && !(flags & CAIRN_F_ZERO) && below(2);
	int err = plain ? cairn_frames_alloc(f, 0, flags, &p)
			: cairn_frames_alloc_aligned(f, k, a, flags, &p);
	unsigned areas = areas_of(flags);
	/* the model's way: the slot of the first accepted area for a plain
	 * order-0 request, else each accepted area in turn, its parked frame
	 * unparked when the area cannot serve the request without it */
	int64_t expect = -1;
	unsigned first = 0;
	while (!(areas & (1u << pref[first])))
		first++;
	if (k == 0 && a == 0 && ref_slot[pref[first]] >= 0) {
		if (ref_live[pref[first]])
			expect = ref_slot[pref[first]];
		parked_taken += ref_live[pref[first]];
		ref_live[pref[first]] = false;
		ref_slot[pref[first]] = -1;
	}
	for (unsigned i = 0; expect < 0 && i < 3; i++) {
		if (!(areas & (1u << pref[i])))
			continue;
		if (ref_fits_unparked(pref[i], k, a))
			break;
		parked_searched += ref_live[pref[i]];
		ref_live[pref[i]] = false;
		if (ref_fits(pref[i], k, a))
			break;
	}
	if (err) {
		CHECK_EQ(err, CAIRN_ENOMEM);
		CHECK_EQ(expect, -1);
		for (unsigned i = 0; i < 3; i++)
			if (areas & (1u << pref[i]))
				CHECK(!ref_fits(pref[i], k, a));
		return;
	}
	uint64_t fr = p / FRAME;
	if (expect >= 0)
		CHECK_EQ(fr, (uint64_t)expect);
	else
		CHECK(!range_parked(fr, 1ull << k));
	const struct span *s = span_of(fr);
	REQUIRE(s);
	CHECK_EQ(fr % (1ull << a), 0);
	CHECK(fr + (1ull << k) <= s->end);
	CHECK(areas & (1u << s->area));
	CHECK(range_free(fr, 1ull << k));
	for (unsigned i = 0; i < 3 && pref[i] != s->area; i++)
		if (areas & (1u << pref[i]))
			CHECK(!ref_fits(pref[i], k, a));
	if ((flags & CAIRN_F_ZERO) && k <= 2) {
		const uint64_t *m = cairn_port_phys_to_virt(p);
		for (uint64_t i = 0; i < (FRAME << k) / 8; i++)
			if (m[i]) {
				CHECK(!"CAIRN_F_ZERO block not zero");
				break;
			}
	}
	if (k <= 2) /* dirty it, so a later zeroed allocation means something */
		memset(cairn_port_phys_to_virt(p), 0x5a, FRAME << k);
	mark(fr, k);
	hold(p, k);
}

static void op_free(struct cairn_frames *f)
{
	if (!nheld)
		return;
	size_t i = below(nheld);
	struct held h = held[i];
	CHECK_EQ(cairn_frames_free(f, h.phys, h.order), 0);
	unmark(h.phys / FRAME, h.order);
	if (h.order == 0)
		ref_freed0(h.phys);
	held[i] = held[--nheld];
	gone[ngone++ % 64] = h;
}

static cairn_phys_t rsv_base[64];
static uint64_t rsv_size[64];
static size_t nrsv;

/* [p, p + size) was freed: a reserve record that named some of it keeps the
 * rest reserved, tracked from now on as single frames. */
static void forget_record(cairn_phys_t p, uint64_t size)
{
	for (size_t j = 0; j < nrsv;)
		if (rsv_base[j] < p + size && p < rsv_base[j] + rsv_size[j]) {
			for (cairn_phys_t q = rsv_base[j]; q < rsv_base[j] + rsv_size[j]; q += FRAME)
				if (q < p || q >= p + size)
					hold(q, 0);
			rsv_base[j] = rsv_base[--nrsv];
			rsv_size[j] = rsv_size[nrsv];
		} else {
			j++;
		}
}

static void op_bad_free(struct cairn_frames *f)
{
	cairn_phys_t p;
	unsigned k;
	switch (below(4)) {
	case 0: /* double free */
		if (!ngone)
			return;
		p = gone[below(ngone < 64 ? ngone : 64)].phys;
		k = gone[below(ngone < 64 ? ngone : 64)].order;
		break;
	case 1: /* wrong order */
		if (!nheld)
			return;
		p = held[below(nheld)].phys;
		k = (unsigned)below(CAIRN_MAX_ORDER + 2);
		break;
	case 2: /* interior frame */
		if (!nheld)
			return;
		{
			struct held h = held[below(nheld)];
			p = h.phys + below(1ull << h.order) * FRAME;
			k = h.order;
		}
		break;
	default:
		k = random_order();
		p = random_addr(k) + (below(16) == 0 ? 8 : 0);
	}
	int expect = ref_free_err(p, k);
	int err = cairn_frames_free(f, p, k);
	CHECK_EQ(err, expect);
	if (err == 0 && expect == 0) { /* it was a block we hold after all */
		unmark(p / FRAME, k);
		if (k == 0)
			ref_freed0(p);
		forget_record(p, FRAME << k);
		for (size_t i = 0; i < nheld; i++)
			if (held[i].phys == p) {
				held[i] = held[--nheld];
				break;
			}
	}
}

static void op_alloc_at(struct cairn_frames *f)
{
	unsigned k = random_order();
	cairn_phys_t p = random_addr(k);
	int expect = ref_locate(p, k);
	if (!expect && !range_free(p / FRAME, 1ull << k))
		expect = CAIRN_EBUSY;
	if (!expect || expect == CAIRN_EBUSY)
		unpark_range(p / FRAME, 1ull << k);
	CHECK_EQ(cairn_frames_alloc_at(f, p, k), expect);
	if (!expect) {
		mark(p / FRAME, k);
		hold(p, k);
	}
}

static void op_reserve(struct cairn_frames *f)
{
	cairn_phys_t p = random_addr(0);
	uint64_t size = (1 + below(below(4) ? 40 : 700)) * FRAME + (below(20) == 0 ? 100 : 0);
	if (below(30) == 0)
		size = 0;
	int expect = ref_range_err(p, size);
	if (!expect && !range_free(p / FRAME, size / FRAME))
		expect = CAIRN_EBUSY;
	if (!expect || expect == CAIRN_EBUSY)
		unpark_range(p / FRAME, size / FRAME);
	CHECK_EQ(cairn_frames_reserve(f, p, size), expect);
	if (!expect) {
		for (uint64_t fr = p / FRAME; fr < (p + size) / FRAME; fr++)
			mark(fr, 0);
		if (nrsv < 64) {
			rsv_base[nrsv] = p;
			rsv_size[nrsv++] = size;
		} else { /* the list is full: forget it as a range, keep its frames */
			for (uint64_t fr = p / FRAME; fr < (p + size) / FRAME; fr++)
				hold(fr * FRAME, 0);
		}
	}
}

static void op_unreserve(struct cairn_frames *f)
{
	cairn_phys_t p;
	uint64_t size;
	size_t i = nrsv ? below(nrsv) : 0;
	bool own = nrsv && below(3);
	if (own) {
		p = rsv_base[i];
		size = rsv_size[i];
	} else {
		p = random_addr(0);
		size = (1 + below(64)) * FRAME;
	}
	int expect = ref_range_err(p, size);
	for (uint64_t fr = p / FRAME; !expect && fr < (p + size) / FRAME; fr++) {
		if (head[fr] == FREE)
			expect = CAIRN_EFREE;
		else if (head[fr] != (int32_t)fr || order[fr] != 0)
			expect = CAIRN_EORDER;
	}
	CHECK_EQ(cairn_frames_unreserve(f, p, size), expect);
	if (!expect) {
		unmark(p / FRAME, 0);
		for (uint64_t fr = p / FRAME; fr < (p + size) / FRAME; fr++)
			head[fr] = FREE;
		forget_record(p, size);
		for (size_t j = 0; j < nheld;)
			if (held[j].phys >= p && held[j].phys < p + size)
				held[j] = held[--nheld];
			else
				j++;
	}
}

static void op_bulk(struct cairn_frames *f)
{
	size_t n = 1 + below(100);
	unsigned flags = (unsigned)below(8);
	cairn_phys_t v[100];
	unsigned areas = areas_of(flags), lowest = 0;
	/* an area short of counted frames unparks its parked one */
	uint64_t need = n;
	for (unsigned j = 0; j < 3 && need; j++) {
		if (!(areas & (1u << pref[j])))
			continue;
		uint64_t counted = ref_free_in(pref[j]) - ref_live[pref[j]];
		if (need > counted)
			ref_live[pref[j]] = false;
		uint64_t avail = ref_free_in(pref[j]) - ref_live[pref[j]];
		need -= need < avail ? need : avail;
	}
	size_t got = cairn_frames_alloc_bulk(f, flags, v, n);
	for (size_t i = 0; i < got; i++) {
		const struct span *s = span_of(v[i] / FRAME);
		REQUIRE(s);
		CHECK(!is_parked_ref(v[i] / FRAME));
		CHECK(areas & (1u << s->area));
		CHECK(head[v[i] / FRAME] == FREE);
		mark(v[i] / FRAME, 0);
		hold(v[i], 0);
		for (unsigned j = 0; j < 3; j++)
			if (pref[j] == s->area && j > lowest)
				lowest = j;
	}
	/* anything taken from a lower area means the higher ones are empty */
	for (unsigned j = 0; j < lowest; j++)
		if (areas & (1u << pref[j]))
			CHECK_EQ(ref_free_in(pref[j]), 0);
	if (got < n)
		for (unsigned j = 0; j < 3; j++)
			if (areas & (1u << pref[j]))
				CHECK_EQ(ref_free_in(pref[j]), 0);
	/* and give back a batch of order-0 frames we hold */
	cairn_phys_t back[64];
	size_t nb = 0;
	for (size_t i = 0; i < nheld && nb < 64;)
		if (held[i].order == 0 && below(2)) {
			back[nb++] = held[i].phys;
			unmark(held[i].phys / FRAME, 0);
			held[i] = held[--nheld];
		} else {
			i++;
		}
	size_t done;
	CHECK_EQ(cairn_frames_free_bulk(f, back, nb, &done), 0);
	CHECK_EQ(done, nb);
}

/* Huge bulk: what it takes is free, aligned, in an accepted area; when it
 * takes fewer than asked, no accepted area has a free 2 MiB block. Then a
 * batch of held huge blocks goes back through the bulk free, sometimes with
 * a bad block at the end (its exact error, the good ones before it freed). */
static void op_bulk_huge(struct cairn_frames *f)
{
	const unsigned k = CAIRN_HUGE_ORDER;
	size_t n = 1 + below(6);
	unsigned flags = (unsigned)below(8);
	cairn_phys_t v[8];
	size_t got = cairn_frames_alloc_bulk_huge(f, flags, v, n);
	unsigned areas = areas_of(flags);
	CHECK(got <= n);
	for (unsigned a = 0; a < CAIRN_AREAS; a++) /* (see the top: followed) */
		if (ref_live[a] && !(word_parked(atomic_load(frame_word(
			    region_find(f, (uint64_t)ref_slot[a]), (uint64_t)ref_slot[a]))) >>
				     (ref_slot[a] % WORD_FRAMES) & 1))
			ref_live[a] = false;
	for (size_t i = 0; i < got; i++) {
		uint64_t fr = v[i] / FRAME;
		const struct span *s = span_of(fr);
		REQUIRE(s);
		CHECK_EQ(fr % (1ull << k), 0);
		CHECK(fr + (1ull << k) <= s->end);
		CHECK(areas & (1u << s->area));
		CHECK(range_free(fr, 1ull << k));
		mark(fr, k);
		hold(v[i], k);
	}
	if (got < n)
		for (unsigned i = 0; i < 3; i++)
			if (areas & (1u << pref[i]))
				CHECK(!ref_fits(pref[i], k, k));
	cairn_phys_t back[9];
	size_t nb = 0;
	for (size_t i = 0; i < nheld && nb < 8;)
		if (held[i].order == k && below(2)) {
			back[nb++] = held[i].phys;
			unmark(held[i].phys / FRAME, k);
			forget_record(held[i].phys, FRAME << k);
			held[i] = held[--nheld];
		} else {
			i++;
		}
	int expect = 0;
	if (below(4) == 0) { /* a bad block last: a double free or a random one */
		back[nb] = nb && below(2) ? back[0] : random_addr(k) + (below(8) == 0 ? FRAME : 0);
		bool dup = false;
		for (size_t i = 0; i < nb; i++)
			dup |= back[i] == back[nb];
		expect = dup ? CAIRN_EFREE : ref_free_err(back[nb], k);
		if (expect == 0) /* a block we hold after all: leave it */
			expect = -100;
		else
			nb++;
	}
	size_t done = 99;
	int err = cairn_frames_free_bulk_huge(f, back, nb, &done);
	if (expect == -100 || expect == 0) {
		CHECK_EQ(err, 0);
		CHECK_EQ(done, nb);
	} else {
		CHECK_EQ(err, expect);
		CHECK_EQ(done, nb - 1);
	}
}

/* Add a range (when none is in), or remove it: EBUSY while any frame of
 * it is in use, and then the chunks up to the first such one (its
 * own included) have had their parked frames unparked; removed, its
 * frames are outside the regions (frees and alloc_at are ERANGE), and
 * its slot is reclaimed (one thread: no call can be in flight). Half the
 * removals first free every block held in the range. */
static void op_region(struct cairn_frames *f)
{
	if (nspans == 3) {
		const struct cairn_mem_range *g = &extra[below(3)];
		size_t ms = cairn_frames_region_meta_size(g->base, g->size);
		extra_meta = malloc(ms);
		REQUIRE(extra_meta);
		CHECK_EQ(cairn_frames_add_region(f, g->base, g->size, extra_meta, ms), 0);
		spans[nspans++] = (struct span){ g->base / FRAME, (g->base + g->size) / FRAME,
						 CAIRN_AREA_HIGH };
		for (uint64_t fr = g->base / FRAME; fr < (g->base + g->size) / FRAME; fr++)
			head[fr] = FREE;
		extra_adds++;
		return;
	}
	struct span *s = &spans[3];
	if (below(2)) {
		for (size_t i = 0; i < nheld;) {
			struct held h = held[i];
			if (h.phys / FRAME - s->first >= s->end - s->first) {
				i++;
				continue;
			}
			CHECK_EQ(cairn_frames_free(f, h.phys, h.order), 0);
			unmark(h.phys / FRAME, h.order);
			if (h.order == 0)
				ref_freed0(h.phys);
			held[i] = held[--nheld];
		}
	}
	uint64_t busy = s->first;
	while (busy < s->end && head[busy] == FREE)
		busy++;
	int expect = busy < s->end ? CAIRN_EBUSY : 0;
	uint64_t upto = busy < s->end ? ((busy >> CHUNK_SHIFT) + 1) << CHUNK_SHIFT : s->end;
	unpark_range(s->first, upto - s->first);
	CHECK_EQ(cairn_frames_remove_region(f, s->first * FRAME), expect);
	if (expect) {
		extra_busy++;
		return;
	}
	for (uint64_t fr = s->first; fr < s->end; fr++)
		head[fr] = ABSENT;
	gone_first = s->first;
	gone_end = s->end;
	nspans = 3;
	CHECK_EQ(cairn_frames_reclaim_region(f, gone_first * FRAME), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, gone_first * FRAME), CAIRN_ERANGE);
	free(extra_meta);
	extra_removals++;
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000;
	rng_state = seed;
	REQUIRE(cairn_host_init(1, 0, UNIVERSE * FRAME) == 0);
	head = malloc(UNIVERSE * sizeof(*head));
	order = calloc(UNIVERSE, 1);
	held = malloc(sizeof(*held) * (UNIVERSE / 4));
	gone = malloc(sizeof(*gone) * 64);
	for (uint64_t fr = 0; fr < UNIVERSE; fr++)
		head[fr] = span_of(fr) ? FREE : ABSENT;

	struct cairn_frames_config cfg = { .ncpus = 1 };
	cfg.meta_size = cairn_frames_meta_size(map, 4, 1);
	cfg.meta = malloc(cfg.meta_size);
	struct cairn_frames *f;
	REQUIRE(cairn_frames_init(&f, map, 4, &cfg) == 0);
	cairn_host_reports_quiet(getenv("CAIRN_VERBOSE") == NULL);
	compare_stats(f);

	for (uint64_t i = 0; i < ops && !check_failures; i++) {
		uint64_t r = below(100);
		if (r < 30)
			op_alloc(f);
		else if (r < 58)
			op_free(f);
		else if (r < 68)
			op_bad_free(f);
		else if (r < 78)
			op_alloc_at(f);
		else if (r < 84)
			op_reserve(f);
		else if (r < 90)
			op_unreserve(f);
		else if (r < 95)
			op_bulk(f);
		else if (r < 98)
			op_bulk_huge(f);
		else
			op_region(f);
		CHECK_EQ(cairn_frames_validate(f), 0);
		compare_parked(f);
		if (i % 64 == 0)
			compare_stats(f);
		if (check_failures)
			fprintf(stderr, "seed %llu: failed at op %llu\n",
				(unsigned long long)seed, (unsigned long long)i);
	}
	/* drain: everything back, the whole map free again */
	while (nheld)
		op_free(f);
	while (nrsv) {
		CHECK_EQ(cairn_frames_unreserve(f, rsv_base[nrsv - 1], rsv_size[nrsv - 1]), 0);
		unmark(rsv_base[nrsv - 1] / FRAME, 0);
		for (uint64_t fr = rsv_base[nrsv - 1] / FRAME;
		     fr < (rsv_base[nrsv - 1] + rsv_size[nrsv - 1]) / FRAME; fr++)
			head[fr] = FREE;
		nrsv--;
	}
	compare_stats(f);
	CHECK_EQ(cairn_frames_validate(f), 0);
	uint64_t total = 0;
	for (int i = 0; i < NSPANS; i++)
		total += spans[i].end - spans[i].first;
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.free_frames[0] + st.free_frames[1] + st.free_frames[2], total);
	printf("seed %llu, %llu ops; parked frames taken back %llu times, unparked by a "
	       "failing area %llu times; a range added %llu times, removed %llu (busy %llu)\n",
	       (unsigned long long)seed, (unsigned long long)ops,
	       (unsigned long long)parked_taken, (unsigned long long)parked_searched,
	       (unsigned long long)extra_adds, (unsigned long long)extra_removals,
	       (unsigned long long)extra_busy);
	return check_done("frames_model");
}
