/* SPDX-License-Identifier: MIT */
/*
 * Bad input gets its documented error and changes nothing: for every public
 * API, an instance with live state, a digest of everything observable about
 * it (statistics, validate, the outstanding allocations, the tree's extents),
 * and a seeded random stream of bad calls mixed with good ones. After each
 * bad call the error must be the one the header documents for that defect
 * (one defect per call, so the code is determined) and the digest unchanged.
 * Then the same on every CPU at once, each planting only what its own
 * state decides.
 *
 *   api_misuse [seed [rounds]]
 */
#include <cairn/arena.h>
#include <cairn/btree.h>
#include <cairn/frame_cache.h>
#include <cairn/frames.h>
#include <cairn/host.h>
#include <cairn/magazine.h>
#include <cairn/objects.h>
#include <cairn/quantum_cache.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "frames_total.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE
#define NCPUS 4

static uint64_t rng_state;
static unsigned rounds = 3000;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* A failed expectation names the call that broke it (once per kind). */
#define EXPECT(what, got, want)                                               \
	do {                                                                  \
		long long g_ = (long long)(got), w_ = (long long)(want);      \
		check_count++;                                                \
		if (g_ != w_) {                                               \
			check_failures++;                                     \
			if (check_failures < 40)                              \
				fprintf(stderr, "%s:%d: %s: got %lld (%s), want %lld (%s)\n", \
					__FILE__, __LINE__, what, g_,         \
					cairn_strerror((int)g_), w_,          \
					cairn_strerror((int)w_));             \
		}                                                             \
	} while (0)

#define SAME(what, cond)                                                      \
	do {                                                                  \
		check_count++;                                                \
		if (!(cond)) {                                                \
			check_failures++;                                     \
			if (check_failures < 40)                              \
				fprintf(stderr, "%s:%d: %s changed the state: %s\n", \
					__FILE__, __LINE__, what, #cond);     \
		}                                                             \
	} while (0)

/* ======================================================================
 * frames
 * ====================================================================== */

/* The model: every frame of the regions, used or not, and the order of
 * each live block at its head (order + 1; 0: not a head). */
struct mreg {
	uint64_t base, end; /* bytes */
	uint8_t *used, *ord;
	bool present;
};

#define FR_REGIONS 3
static struct mreg mr[FR_REGIONS];
static struct cairn_frames *fr;

struct blk {
	cairn_phys_t p;
	unsigned order;
};
static struct blk live[16384];
static size_t nlive;
static struct blk rsv[256]; /* reserved ranges: p, size in frames (order field) */
static size_t nrsv, nreserved;

static struct mreg *reg_of(uint64_t p)
{
	for (int i = 0; i < FR_REGIONS; i++)
		if (mr[i].present && p >= mr[i].base && p < mr[i].end)
			return &mr[i];
	return NULL;
}

/* Is [p, p + len) inside the present regions (a run of adjacent ones)? */
static bool inside(uint64_t p, uint64_t len)
{
	if (p + len < p)
		return false;
	for (uint64_t at = p; at < p + len;) {
		struct mreg *r = reg_of(at);
		if (!r)
			return false;
		at = r->end;
	}
	return true;
}

static uint8_t *used_at(uint64_t p)
{
	struct mreg *r = reg_of(p);
	return &r->used[(p - r->base) / FRAME];
}

static uint8_t *ord_at(uint64_t p)
{
	struct mreg *r = reg_of(p);
	return &r->ord[(p - r->base) / FRAME];
}

static bool all_free(uint64_t p, uint64_t len)
{
	for (uint64_t at = p; at < p + len; at += FRAME)
		if (*used_at(at))
			return false;
	return true;
}

static void mark(uint64_t p, unsigned order, bool use)
{
	for (uint64_t i = 0; i < (1ull << order); i++)
		*used_at(p + i * FRAME) = use;
	*ord_at(p) = use ? (uint8_t)(order + 1) : 0;
}

static void live_add(cairn_phys_t p, unsigned order)
{
	REQUIRE(inside(p, FRAME << order));
	REQUIRE(p % (FRAME << order) == 0);
	SAME("frames alloc: a used frame handed out", all_free(p, FRAME << order));
	mark(p, order, true);
	REQUIRE(nlive < sizeof(live) / sizeof(live[0]));
	live[nlive++] = (struct blk){ p, order };
}

static void live_drop(size_t i)
{
	mark(live[i].p, live[i].order, false);
	live[i] = live[--nlive];
}

struct fdigest {
	struct cairn_frames_stats st;
};

static void fdigest(struct fdigest *d)
{
	memset(d, 0, sizeof(*d));
	cairn_frames_stats(fr, &d->st);
}

static unsigned fcheck_n;

/* The state after a refused call is the state before it. */
static void fsame(const char *what, const struct fdigest *before)
{
	struct fdigest now;
	fdigest(&now);
	SAME(what, memcmp(&now.st, &before->st, sizeof(now.st)) == 0);
	SAME(what, cairn_frames_validate(fr) == 0);
	for (size_t i = 0; i < nlive; i++)
		SAME(what, cairn_frames_is_allocated(fr, live[i].p, live[i].order));
	if (++fcheck_n % 32)
		return;
	/* every frame: an order-0 block exactly where the model has one */
	for (int i = 0; i < FR_REGIONS; i++) {
		if (!mr[i].present)
			continue;
		for (uint64_t p = mr[i].base; p < mr[i].end; p += FRAME)
			SAME(what, cairn_frames_is_allocated(fr, p, 0) == (*ord_at(p) == 1));
	}
}

static uint64_t rand_frame(void)
{
	for (;;) {
		struct mreg *r = &mr[below(FR_REGIONS)];
		if (r->present)
			return r->base + below((r->end - r->base) / FRAME) * FRAME;
	}
}

/* Addresses outside every region: below, between, one past the end, far. */
static uint64_t rand_outside(unsigned order)
{
	uint64_t sz = FRAME << order;
	for (;;) {
		uint64_t p;
		switch (below(7)) {
		case 0: p = 0; break;
		case 1: p = mr[below(FR_REGIONS)].end; break;
		case 2: p = mr[below(FR_REGIONS)].base - sz; break;
		case 3: p = (UINT64_MAX - sz + 1); break;
		case 4: p = 3 * GiB; break;
		case 5: p = (1ull << 52) + below(1ull << 30) * FRAME; break;
		default: p = mr[below(FR_REGIONS)].end + below(64) * FRAME; break;
		}
		p &= ~(sz - 1);
		bool any = false;
		for (int i = 0; i < FR_REGIONS; i++)
			if (mr[i].present && p < mr[i].end && mr[i].base < p + sz)
				any = true;
		if (!any && p + sz > p)
			return p;
	}
}

static int expect_free(uint64_t p, unsigned order)
{
	if (order > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	if (p % (FRAME << order))
		return CAIRN_EALIGN;
	if (!inside(p, FRAME << order))
		return CAIRN_ERANGE;
	if (!*used_at(p))
		return CAIRN_EFREE;
	return *ord_at(p) == order + 1 ? 0 : CAIRN_EORDER;
}

static int expect_alloc_at(uint64_t p, unsigned order)
{
	if (order > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	if (p % (FRAME << order))
		return CAIRN_EALIGN;
	if (!inside(p, FRAME << order))
		return CAIRN_ERANGE;
	return all_free(p, FRAME << order) ? 0 : CAIRN_EBUSY;
}

static int expect_reserve(uint64_t p, uint64_t size)
{
	if (size == 0 || p + size < p)
		return CAIRN_EINVAL;
	if ((p | size) % FRAME)
		return CAIRN_EALIGN;
	if (!inside(p, size))
		return CAIRN_ERANGE;
	return all_free(p, size) ? 0 : CAIRN_EBUSY;
}

static int expect_unreserve(uint64_t p, uint64_t size)
{
	if (size == 0 || p + size < p)
		return CAIRN_EINVAL;
	if ((p | size) % FRAME)
		return CAIRN_EALIGN;
	if (!inside(p, size))
		return CAIRN_ERANGE;
	for (uint64_t at = p; at < p + size; at += FRAME) {
		if (!*used_at(at))
			return CAIRN_EFREE;
		if (*ord_at(at) != 1)
			return CAIRN_EORDER;
	}
	return 0;
}

static unsigned rand_bad_order(void)
{
	static const unsigned v[] = { CAIRN_MAX_ORDER + 1, 31, 32, 63, 64, 255, 1u << 20, ~0u };
	return v[below(sizeof(v) / sizeof(v[0]))];
}

static unsigned rand_bad_flags(void)
{
	unsigned bit;
	do
		bit = (unsigned)below(32);
	while (bit < CAIRN_AREAS || bit == 8);
	return (unsigned)(below(2) ? CAIRN_F_ANY & rnd() : 0) | (1u << bit);
}

static void frames_valid_op(void)
{
	cairn_phys_t p;
	int err;
	switch (below(9)) {
	case 0:
	case 1: {
		unsigned order = (unsigned)below(11);
		unsigned flags = below(3) ? 0 : (unsigned)(rnd() & (CAIRN_F_ANY | CAIRN_F_ZERO));
		err = cairn_frames_alloc(fr, order, flags, &p);
		if (err == 0)
			live_add(p, order);
		else
			EXPECT("frames alloc", err, CAIRN_ENOMEM);
		break;
	}
	case 2: {
		unsigned order = (unsigned)below(6), al = order + (unsigned)below(6);
		err = cairn_frames_alloc_aligned(fr, order, al, 0, &p);
		if (err == 0) {
			CHECK(p % (FRAME << al) == 0);
			live_add(p, order);
		} else {
			EXPECT("frames alloc_aligned", err, CAIRN_ENOMEM);
		}
		break;
	}
	case 3:
	case 4:
		if (nlive) {
			size_t i = below(nlive);
			EXPECT("frames free", cairn_frames_free(fr, live[i].p, live[i].order), 0);
			live_drop(i);
		}
		break;
	case 5: {
		unsigned order = (unsigned)below(5);
		p = rand_frame() & ~((FRAME << order) - 1);
		int want = expect_alloc_at(p, order);
		if (want == 0) {
			EXPECT("frames alloc_at", cairn_frames_alloc_at(fr, p, order), 0);
			live_add(p, order);
		}
		break;
	}
	case 6: {
		p = rand_frame();
		uint64_t size = (1 + below(40)) * FRAME;
		if (expect_reserve(p, size) == 0 && nrsv < 256) {
			EXPECT("frames reserve", cairn_frames_reserve(fr, p, size), 0);
			nreserved++;
			for (uint64_t at = p; at < p + size; at += FRAME)
				mark(at, 0, true);
			rsv[nrsv++] = (struct blk){ p, (unsigned)(size / FRAME) };
		}
		break;
	}
	case 7:
		if (nrsv) {
			size_t i = below(nrsv);
			uint64_t size = rsv[i].order * FRAME;
			EXPECT("frames unreserve", cairn_frames_unreserve(fr, rsv[i].p, size), 0);
			for (uint64_t at = rsv[i].p; at < rsv[i].p + size; at += FRAME)
				mark(at, 0, false);
			rsv[i] = rsv[--nrsv];
		}
		break;
	default: {
		cairn_phys_t v[16];
		size_t n = cairn_frames_alloc_bulk(fr, 0, v, 1 + below(16));
		for (size_t i = 0; i < n; i++)
			live_add(v[i], 0);
		break;
	}
	}
}

/* A live block of this order, or none. */
static long find_live(unsigned order)
{
	size_t s = below(nlive + 1);
	for (size_t k = 0; k < nlive; k++) {
		size_t i = (s + k) % nlive;
		if (live[i].order == order)
			return (long)i;
	}
	return -1;
}

static void frames_bad_op(void)
{
	struct fdigest d;
	fdigest(&d);
	cairn_phys_t p, out = 0x5a5a5a5a;
	unsigned order;
	int want, err;
	char what[96];

	switch (below(17)) {
	case 0: /* free: a live block with another order */
		if (!nlive)
			return;
		{
			size_t i = below(nlive);
			p = live[i].p;
			do
				order = (unsigned)below(CAIRN_MAX_ORDER + 1);
			while (order == live[i].order);
		}
		goto do_free;
	case 1: /* free: a frame never allocated, or inside a block */
		p = rand_frame();
		order = (unsigned)below(3) ? 0 : (unsigned)below(10);
		p &= ~((FRAME << order) - 1);
		if (expect_free(p, order) == 0)
			return;
		goto do_free;
	case 2: /* free: misaligned */
		if (nlive) {
			size_t i = below(nlive);
			p = live[i].p;
			order = live[i].order;
		} else {
			p = rand_frame();
			order = 0;
		}
		p += below(2) ? 1 + below(FRAME - 1) : (1 + below(3)) * FRAME;
		if (expect_free(p, order) == 0)
			return;
		goto do_free;
	case 3: /* free: outside every region, first/last frame edges */
		order = (unsigned)below(CAIRN_MAX_ORDER + 1);
		p = rand_outside(order);
		goto do_free;
	case 4: /* free: bad order (on a live block, and anywhere) */
		p = nlive ? live[below(nlive)].p : rand_frame();
		order = rand_bad_order();
		goto do_free;
	case 5: /* double free: free a block, then again (the first is good) */
		if (!nlive)
			return;
		{
			size_t i = below(nlive);
			p = live[i].p;
			order = live[i].order;
			EXPECT("frames free", cairn_frames_free(fr, p, order), 0);
			live_drop(i);
			fdigest(&d);
		}
		goto do_free;
	do_free:
		want = expect_free(p, order);
		snprintf(what, sizeof(what), "frames_free(%#llx, %u)", (unsigned long long)p, order);
		err = cairn_frames_free(fr, p, order);
		EXPECT(what, err, want);
		if (err == 0) /* the expectation failed: keep the model true */
			for (size_t i = 0; i < nlive; i++)
				if (live[i].p == p && live[i].order == order) {
					live_drop(i);
					return;
				}
		fsame(what, &d);
		return;
	case 15: { /* bulk allocations with bad flags: none */
		cairn_phys_t v[4] = { 1, 2, 3, 4 };
		unsigned fl = rand_bad_flags();
		snprintf(what, sizeof(what), "frames_alloc_bulk(flags %#x)", fl);
		EXPECT(what, cairn_frames_alloc_bulk(fr, fl, v, 4), 0);
		EXPECT(what, cairn_frames_alloc_bulk_huge(fr, fl, v, 4), 0);
		SAME(what, v[0] == 1 && v[3] == 4);
		fsame(what, &d);
		return;
	}
	case 6: /* alloc: bad order, bad flags */
		if (below(2)) {
			order = rand_bad_order();
			err = cairn_frames_alloc(fr, order, 0, &out);
			snprintf(what, sizeof(what), "frames_alloc(order %u)", order);
		} else {
			unsigned fl = rand_bad_flags();
			err = cairn_frames_alloc(fr, (unsigned)below(4), fl, &out);
			snprintf(what, sizeof(what), "frames_alloc(flags %#x)", fl);
		}
		EXPECT(what, err, CAIRN_EINVAL);
		SAME(what, out == 0x5a5a5a5a);
		fsame(what, &d);
		return;
	case 7: /* alloc_aligned: align below order, above the maximum, flags */
		switch (below(3)) {
		case 0:
			order = 1 + (unsigned)below(CAIRN_MAX_ORDER);
			err = cairn_frames_alloc_aligned(fr, order, (unsigned)below(order), 0, &out);
			break;
		case 1:
			order = (unsigned)below(CAIRN_MAX_ORDER + 1);
			err = cairn_frames_alloc_aligned(fr, order, rand_bad_order(), 0, &out);
			break;
		default:
			err = cairn_frames_alloc_aligned(fr, 0, (unsigned)below(4), rand_bad_flags(), &out);
			break;
		}
		EXPECT("frames_alloc_aligned", err, CAIRN_EINVAL);
		SAME("frames_alloc_aligned", out == 0x5a5a5a5a);
		fsame("frames_alloc_aligned", &d);
		return;
	case 8: /* alloc_at: misaligned, outside, over a used frame, bad order */
		switch (below(5)) {
		case 0:
			order = (unsigned)below(10);
			p = (rand_frame() & ~((FRAME << order) - 1)) + 1 + below(FRAME << order) - 1;
			if (p % (FRAME << order) == 0)
				p += FRAME / 2;
			break;
		case 1:
			order = (unsigned)below(CAIRN_MAX_ORDER + 1);
			p = rand_outside(order);
			break;
		case 2:
			order = rand_bad_order();
			p = rand_frame();
			break;
		default:
			/* an aligned block over a used frame, or off an edge */
			order = (unsigned)below(10);
			p = (nlive && below(2) ? live[below(nlive)].p : rand_frame()) &
			    ~((FRAME << order) - 1);
			break;
		}
		want = expect_alloc_at(p, order);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "frames_alloc_at(%#llx, %u)", (unsigned long long)p, order);
		err = cairn_frames_alloc_at(fr, p, order);
		EXPECT(what, err, want);
		if (err == 0) {
			live_add(p, order);
			return;
		}
		fsame(what, &d);
		return;
	case 9: { /* reserve: empty, wrapping, misaligned, outside, partly used */
		uint64_t size;
		switch (below(6)) {
		case 0: p = rand_frame(); size = 0; break;
		case 1: p = rand_frame(); size = UINT64_MAX - p + 1 + below(4) * FRAME + FRAME; break;
		case 2: p = rand_frame() + 1 + below(FRAME - 1); size = FRAME * (1 + below(8)); break;
		case 3: p = rand_frame(); size = 1 + below(8 * FRAME); if (!(size % FRAME)) size++; break;
		case 4: { /* from inside a region past its end, or from outside into one */
			struct mreg *r = &mr[below(FR_REGIONS)];
			if (!r->present)
				return;
			if (below(2)) {
				p = r->end - FRAME * (1 + below(8));
				size = (r->end - p) + FRAME * (1 + below(8));
			} else {
				p = r->base - FRAME * (1 + below(8));
				size = (r->base - p) + FRAME * (1 + below(8));
			}
			break;
		}
		default: p = rand_frame(); size = FRAME * (1 + below(64)); break;
		}
		want = expect_reserve(p, size);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "frames_reserve(%#llx, %#llx)", (unsigned long long)p,
			 (unsigned long long)size);
		err = cairn_frames_reserve(fr, p, size);
		EXPECT(what, err, want);
		if (err == 0) {
			CHECK(cairn_frames_unreserve(fr, p, size) == 0);
			return;
		}
		fsame(what, &d);
		return;
	}
	case 10: { /* unreserve: empty, wrapping, misaligned, outside, partly free, in a block */
		uint64_t size;
		switch (below(6)) {
		case 0: p = rand_frame(); size = 0; break;
		case 1: p = rand_frame(); size = UINT64_MAX - p + 1 + FRAME; break;
		case 2: p = rand_frame() + 1 + below(FRAME - 1); size = FRAME; break;
		case 3:
			if (nrsv) {
				size_t i = below(nrsv);
				/* a reserved range and one frame more on either side */
				p = rsv[i].p - (below(2) ? FRAME : 0);
				size = rsv[i].order * FRAME + FRAME;
			} else {
				p = rand_frame();
				size = FRAME;
			}
			break;
		case 4: {
			long i = -1;
			for (unsigned o = 1 + (unsigned)below(6); o > 0 && i < 0; o--)
				i = find_live(o);
			if (i < 0)
				return;
			p = live[i].p + FRAME * below(1ull << live[i].order);
			size = FRAME;
			break;
		}
		default:
			order = (unsigned)below(4);
			p = rand_outside(order);
			size = FRAME << order;
			break;
		}
		want = expect_unreserve(p, size);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "frames_unreserve(%#llx, %#llx)", (unsigned long long)p,
			 (unsigned long long)size);
		err = cairn_frames_unreserve(fr, p, size);
		EXPECT(what, err, want);
		fsame(what, &d);
		return;
	}
	case 11: { /* free_bulk: good frames, then a bad one: those before it freed */
		cairn_phys_t v[8];
		size_t n = 0, done = 99;
		size_t idx[8];
		for (size_t k = 0; k < nlive && n < 6; k++)
			if (live[k].order == 0 && below(3) == 0) {
				idx[n] = k;
				v[n++] = live[k].p;
			}
		size_t good = n;
		switch (below(4)) {
		case 0: v[n] = n ? v[0] : rand_outside(0); break;  /* a double free in the batch */
		case 1: v[n] = rand_outside(0); break;
		case 2: v[n] = rand_frame() + 8; break;
		default: {
			long i = find_live(1 + (unsigned)below(4));
			v[n] = i >= 0 ? live[i].p : rand_outside(0);
			break;
		}
		}
		/* the expected error of the bad one, after the good ones */
		for (size_t k = 0; k < good; k++)
			mark(v[k], 0, false);
		want = expect_free(v[n], 0);
		for (size_t k = 0; k < good; k++)
			mark(v[k], 0, true);
		if (want == 0)
			return;
		n++;
		err = cairn_frames_free_bulk(fr, v, n, &done);
		EXPECT("frames_free_bulk", err, want);
		EXPECT("frames_free_bulk done", done, good);
		/* the good ones are freed: drop them from the model, highest index first */
		for (size_t k = good; k-- > 0;) {
			for (size_t j = 0; j < k; j++)
				if (idx[j] > idx[k]) {
					size_t t = idx[j];
					idx[j] = idx[k];
					idx[k] = t;
				}
		}
		for (size_t k = good; k-- > 0;)
			live_drop(idx[k]);
		fdigest(&d);
		err = cairn_frames_free_bulk(fr, v + good, 1, &done);
		EXPECT("frames_free_bulk (bad first)", err, want);
		EXPECT("frames_free_bulk (bad first) done", done, 0);
		fsame("frames_free_bulk", &d);
		return;
	}
	case 12: { /* free_bulk_huge: a bad block first */
		cairn_phys_t v[2];
		size_t done = 99;
		switch (below(4)) {
		case 0: v[0] = rand_outside(9); break;
		case 1: v[0] = (rand_frame() & ~(2 * MiB - 1)) + FRAME; break;
		case 2: {
			long i = find_live((unsigned)below(9));
			v[0] = i >= 0 ? live[i].p & ~(2 * MiB - 1) : rand_outside(9);
			break;
		}
		default: v[0] = rand_frame() & ~(2 * MiB - 1); break;
		}
		v[1] = v[0];
		want = expect_free(v[0], 9);
		if (want == 0)
			return;
		err = cairn_frames_free_bulk_huge(fr, v, 2, &done);
		EXPECT("frames_free_bulk_huge", err, want);
		EXPECT("frames_free_bulk_huge done", done, 0);
		fsame("frames_free_bulk_huge", &d);
		return;
	}
	case 13: { /* add_region misuse */
		static char meta[64 * KiB];
		uint64_t base, size;
		size_t msz = sizeof(meta);
		switch (below(7)) {
		case 0: { /* overlapping a present region */
			struct mreg *r = &mr[below(FR_REGIONS)];
			if (!r->present)
				return;
			base = r->base + (below(2) ? 0 : below((r->end - r->base) / FRAME) * FRAME);
			size = FRAME * (1 + below(512));
			if (below(2)) { /* from below it */
				base = r->base - FRAME * (1 + below(16));
				size += r->base - base;
			}
			/* (one across an area boundary has two defects: the
			 * boundary is checked first) */
			want = (base < 16 * MiB && base + size > 16 * MiB) ||
				       (base < 4 * GiB && base + size > 4 * GiB)
				       ? CAIRN_EINVAL : CAIRN_EEXIST;
			break;
		}
		case 1: /* straddling 16 MiB or 4 GiB */
			base = (below(2) ? 16 * MiB : 4 * GiB) - FRAME * (1 + below(64));
			size = FRAME * (65 + below(64));
			if (base < 16 * MiB && base + size > mr[0].base && mr[0].end > base)
				return;
			want = CAIRN_EINVAL;
			break;
		case 2: /* meta too small */
			base = 7 * GiB;
			size = 4 * MiB;
			msz = cairn_frames_region_meta_size(base, size) - 1 - below(64);
			want = CAIRN_EINVAL;
			break;
		case 3: /* empty */
			base = 7 * GiB + below(1024) * FRAME;
			size = 0;
			want = CAIRN_EINVAL;
			break;
		case 4: /* no whole frame */
			base = 7 * GiB + 1 + below(FRAME - 2);
			size = FRAME - 1 - (base % FRAME);
			want = CAIRN_EINVAL;
			break;
		case 5: /* wrapping */
			base = UINT64_MAX - below(1024) * FRAME;
			size = UINT64_MAX - base + 1 + FRAME * (1 + below(1024));
			want = CAIRN_EINVAL;
			break;
		default: /* twice the same region (a present one) */
			if (!mr[2].present)
				return;
			base = mr[2].base;
			size = mr[2].end - mr[2].base;
			want = CAIRN_EEXIST;
			break;
		}
		if (msz > sizeof(meta))
			msz = sizeof(meta);
		snprintf(what, sizeof(what), "frames_add_region(%#llx, %#llx, %zu)",
			 (unsigned long long)base, (unsigned long long)size, msz);
		err = cairn_frames_add_region(fr, base, size, meta, msz);
		EXPECT(what, err, want);
		REQUIRE(err != 0);
		fsame(what, &d);
		return;
	}
	case 14: { /* remove_region / reclaim_region misuse */
		uint64_t base;
		switch (below(4)) {
		case 0: { /* not a region start */
			struct mreg *r = &mr[below(FR_REGIONS)];
			base = r->base + FRAME * (1 + below(64));
			if (below(4) == 0)
				base = rand_outside(0);
			snprintf(what, sizeof(what), "frames_remove_region(%#llx)", (unsigned long long)base);
			EXPECT(what, cairn_frames_remove_region(fr, base), CAIRN_ERANGE);
			break;
		}
		case 1: { /* a region with a frame in use */
			int i = (int)below(FR_REGIONS);
			/* (model region 0 is two regions, split at 16 MiB) */
			base = i == 0 && below(2) ? 16 * MiB : mr[i].base;
			uint64_t end = i == 0 && base < 16 * MiB ? 16 * MiB : mr[i].end;
			if (!mr[i].present || all_free(base, end - base))
				return;
			snprintf(what, sizeof(what), "frames_remove_region(%#llx) busy", (unsigned long long)base);
			EXPECT(what, cairn_frames_remove_region(fr, base), CAIRN_EBUSY);
			break;
		}
		default: /* reclaim of a present region, or of none */
			base = below(2) ? mr[below(FR_REGIONS)].base : rand_outside(0);
			if (!reg_of(base) && base == mr[2].base)
				return; /* removed and unreclaimed: see frames_regions() */
			snprintf(what, sizeof(what), "frames_reclaim_region(%#llx)", (unsigned long long)base);
			EXPECT(what, cairn_frames_reclaim_region(fr, base), CAIRN_ERANGE);
			break;
		}
		fsame(what, &d);
		return;
	}
	default: { /* queries with garbage: no change, the model's answer */
		for (int k = 0; k < 8; k++) {
			order = below(4) ? (unsigned)below(CAIRN_MAX_ORDER + 1) : rand_bad_order();
			p = below(2) ? rand_frame() : rand_outside(order > CAIRN_MAX_ORDER ? 0 : order);
			if (below(4) == 0)
				p += 1 + below(FRAME - 1);
			bool want_alloc = expect_free(p, order) == 0;
			SAME("frames_is_allocated", cairn_frames_is_allocated(fr, p, order) == want_alloc);
		}
		fsame("frames_is_allocated", &d);
		return;
	}
	}
}

/* Region 2 removed (when all free), frees into it refused, reclaimed,
 * added again: the runtime region table's misuse. */
static char region2_meta[256 * KiB];

static void frames_regions(void)
{
	struct mreg *r = &mr[2];
	char what[64];
	if (r->present) {
		if (!all_free(r->base, r->end - r->base))
			return;
		EXPECT("frames_remove_region", cairn_frames_remove_region(fr, r->base), 0);
		r->present = false;
		struct fdigest d;
		fdigest(&d);
		/* a removed region: its frames are outside, it cannot be
		 * removed again, a reclaim of another base is refused */
		snprintf(what, sizeof(what), "removed region");
		EXPECT("free in a removed region", cairn_frames_free(fr, r->base, 0), CAIRN_ERANGE);
		EXPECT("alloc_at in a removed region", cairn_frames_alloc_at(fr, r->base, 0), CAIRN_ERANGE);
		EXPECT("reserve in a removed region", cairn_frames_reserve(fr, r->base, FRAME), CAIRN_ERANGE);
		EXPECT("remove of a removed region", cairn_frames_remove_region(fr, r->base), CAIRN_ERANGE);
		EXPECT("reclaim inside a removed region",
		       cairn_frames_reclaim_region(fr, r->base + FRAME), CAIRN_ERANGE);
		fsame(what, &d);
	} else {
		/* (every call that began before the removal returned: the
		 * grace period of a single thread) */
		EXPECT("frames_reclaim_region", cairn_frames_reclaim_region(fr, r->base), 0);
		struct fdigest d;
		fdigest(&d);
		EXPECT("reclaim twice", cairn_frames_reclaim_region(fr, r->base), CAIRN_ERANGE);
		fsame("reclaim twice", &d);
		size_t msz = cairn_frames_region_meta_size(r->base, r->end - r->base);
		REQUIRE(msz + 64 <= sizeof(region2_meta));
		EXPECT("frames_add_region again",
		       cairn_frames_add_region(fr, r->base, r->end - r->base, region2_meta,
					       sizeof(region2_meta)), 0);
		r->present = true;
		memset(r->used, 0, (r->end - r->base) / FRAME);
		memset(r->ord, 0, (r->end - r->base) / FRAME);
	}
}

/* init misuse: nothing written to *out, the error documented. */
static void frames_init_misuse(void)
{
	static char meta[1 * MiB];
	struct cairn_frames *f = (struct cairn_frames *)0x1234;
	struct cairn_frames_config cfg = { .ncpus = NCPUS, .meta = meta, .meta_size = sizeof(meta) };
	const struct cairn_mem_range good[] = { { 6 * GiB, 8 * MiB } };
	const struct cairn_mem_range wrap[] = { { 6 * GiB, 8 * MiB }, { UINT64_MAX - 8 * MiB, 16 * MiB } };
	const struct cairn_mem_range overlap[] = { { 6 * GiB, 8 * MiB }, { 6 * GiB + 4 * MiB, 8 * MiB } };
	const struct cairn_mem_range tiny[] = { { 6 * GiB + 1, FRAME - 2 } };

	EXPECT("init: NULL map", cairn_frames_init(&f, NULL, 1, &cfg), CAIRN_EINVAL);
	EXPECT("init: no range", cairn_frames_init(&f, good, 0, &cfg), CAIRN_EINVAL);
	EXPECT("init: no whole frame", cairn_frames_init(&f, tiny, 1, &cfg), CAIRN_EINVAL);
	EXPECT("init: wrapping", cairn_frames_init(&f, wrap, 2, &cfg), CAIRN_EINVAL);
	EXPECT("init: overlapping", cairn_frames_init(&f, overlap, 2, &cfg), CAIRN_EEXIST);
	cfg.ncpus = 65535;
	EXPECT("init: ncpus 65535", cairn_frames_init(&f, good, 1, &cfg), CAIRN_EINVAL);
	cfg.ncpus = ~0u;
	EXPECT("init: ncpus ~0", cairn_frames_init(&f, good, 1, &cfg), CAIRN_EINVAL);
	cfg.ncpus = NCPUS;
	cfg.meta_size = cairn_frames_meta_size(good, 1, NCPUS) - 1;
	EXPECT("init: meta too small", cairn_frames_init(&f, good, 1, &cfg), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_meta_size(wrap, 2, NCPUS), 0);
	CHECK_EQ(cairn_frames_meta_size(overlap, 2, NCPUS), 0);
	CHECK_EQ(cairn_frames_meta_size(NULL, 0, NCPUS), 0);
	CHECK_EQ(cairn_frames_meta_size(good, 1, 65535), 0); /* ncpus init refuses */
	CHECK_EQ(cairn_frames_meta_size(good, 1, ~0u), 0);
	CHECK(cairn_frames_meta_size(good, 1, 65534) > 0);
	CHECK(f == (struct cairn_frames *)0x1234);
	CHECK_EQ(cairn_frames_region_meta_size(6 * GiB + 1, FRAME - 2), 0);
	CHECK_EQ(cairn_frames_region_meta_size(UINT64_MAX - FRAME, 4 * FRAME), 0);
}

/* The region table full: CAIRN_ENOSPC, nothing changed; a removed region
 * keeps its slot until reclaimed. Init with more ranges than slots. */
static void frames_table_full(void)
{
	static char meta[1 * MiB];
	static char rmeta[CAIRN_MAX_REGIONS][8 * KiB];
	const uint64_t base = 7 * GiB, step = 128 * KiB, rsize = 64 * KiB;
	struct cairn_mem_range many[CAIRN_MAX_REGIONS + 1];
	for (int i = 0; i <= CAIRN_MAX_REGIONS; i++)
		many[i] = (struct cairn_mem_range){ base + i * step, rsize };
	struct cairn_frames *f = (struct cairn_frames *)0x1234;
	struct cairn_frames_config cfg = { .ncpus = NCPUS, .meta = meta, .meta_size = sizeof(meta) };
	EXPECT("init: more ranges than regions", cairn_frames_init(&f, many, CAIRN_MAX_REGIONS + 1, &cfg),
	       CAIRN_ENOSPC);
	/* 63 ranges, one across 4 GiB: 64 regions after the split */
	struct cairn_mem_range split[CAIRN_MAX_REGIONS];
	for (int i = 0; i < CAIRN_MAX_REGIONS - 2; i++)
		split[i] = many[i];
	split[CAIRN_MAX_REGIONS - 2] = (struct cairn_mem_range){ 4 * GiB - 64 * KiB, 128 * KiB };
	split[CAIRN_MAX_REGIONS - 1] = (struct cairn_mem_range){ 16 * MiB - 64 * KiB, 128 * KiB };
	EXPECT("init: too many regions after the split",
	       cairn_frames_init(&f, split, CAIRN_MAX_REGIONS, &cfg), CAIRN_ENOSPC);
	CHECK_EQ(cairn_frames_meta_size(many, CAIRN_MAX_REGIONS + 1, NCPUS), 0);
	CHECK(f == (struct cairn_frames *)0x1234);

	REQUIRE(cairn_frames_init(&f, many, 1, &cfg) == 0);
	int added = 0, err = 0;
	for (int i = 1; i <= CAIRN_MAX_REGIONS && !err; i++) {
		err = cairn_frames_add_region(f, many[i].base, many[i].size, rmeta[i - 1],
					      sizeof(rmeta[0]));
		added += !err;
	}
	EXPECT("add_region past the table", err, CAIRN_ENOSPC);
	CHECK_EQ(added, CAIRN_MAX_REGIONS - 1);
	struct cairn_frames_stats st0, st1;
	cairn_frames_stats(f, &st0);
	uint64_t last = many[CAIRN_MAX_REGIONS].base;
	EXPECT("add_region, table full", cairn_frames_add_region(f, last, rsize, rmeta[63], sizeof(rmeta[0])),
	       CAIRN_ENOSPC);
	/* a removed region keeps its slot */
	EXPECT("remove_region", cairn_frames_remove_region(f, many[5].base), 0);
	cairn_frames_stats(f, &st0);
	EXPECT("add_region, a slot removed but not reclaimed",
	       cairn_frames_add_region(f, last, rsize, rmeta[63], sizeof(rmeta[0])), CAIRN_ENOSPC);
	EXPECT("add_region over the removed one",
	       cairn_frames_add_region(f, many[5].base, rsize, rmeta[4], sizeof(rmeta[0])), CAIRN_ENOSPC);
	cairn_frames_stats(f, &st1);
	SAME("add_region, table full", memcmp(&st0, &st1, sizeof(st0)) == 0);
	SAME("add_region, table full", cairn_frames_validate(f) == 0);
	cairn_phys_t p;
	EXPECT("free in the removed region", cairn_frames_free(f, many[5].base, 0), CAIRN_ERANGE);
	EXPECT("reclaim", cairn_frames_reclaim_region(f, many[5].base), 0);
	EXPECT("add_region after the reclaim",
	       cairn_frames_add_region(f, last, rsize, rmeta[63], sizeof(rmeta[0])), 0);
	EXPECT("alloc_at in it", cairn_frames_alloc_at(f, last, 4), 0);
	EXPECT("remove busy", cairn_frames_remove_region(f, last), CAIRN_EBUSY);
	EXPECT("free", cairn_frames_free(f, last, 4), 0);
	EXPECT("alloc", cairn_frames_alloc(f, 0, 0, &p), 0);
	EXPECT("free", cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* a region carrying its own metadata: none too small to hold it, and
	 * the region never removed (its metadata frames stay in use) */
	EXPECT("remove_region", cairn_frames_remove_region(f, many[7].base), 0);
	EXPECT("reclaim_region", cairn_frames_reclaim_region(f, many[7].base), 0);
	const uint64_t self = 7 * GiB + 512 * MiB;
	cairn_frames_stats(f, &st0);
	EXPECT("add_region, no room for its metadata",
	       cairn_frames_add_region(f, self, FRAME, NULL, 0), CAIRN_ENOMEM);
	cairn_frames_stats(f, &st1);
	SAME("add_region, no room", memcmp(&st0, &st1, sizeof(st0)) == 0);
	EXPECT("add_region, metadata carved", cairn_frames_add_region(f, self, 4 * MiB, NULL, 0), 0);
	cairn_frames_stats(f, &st0);
	EXPECT("remove_region, metadata carved", cairn_frames_remove_region(f, self), CAIRN_EBUSY);
	EXPECT("reclaim_region, never removed", cairn_frames_reclaim_region(f, self), CAIRN_ERANGE);
	cairn_frames_stats(f, &st1);
	SAME("remove_region, metadata carved", memcmp(&st0, &st1, sizeof(st0)) == 0);
	SAME("remove_region, metadata carved", cairn_frames_validate(f) == 0);
}

static void test_frames(void)
{
	frames_init_misuse();
	frames_table_full();

	/* LOW16M with a partial first chunk and LOW4G after it; HIGH with partial chunks at both
	 * ends; a runtime region with its metadata apart, removed and added
	 * again through the run. */
	static const struct cairn_mem_range map[] = {
		{ 1 * MiB, 23 * MiB }, /* split at 16 MiB: two adjacent regions */
		{ 4 * GiB + 64 * KiB, 16 * MiB },
	};
	mr[0] = (struct mreg){ .base = 1 * MiB, .end = 24 * MiB };
	mr[1] = (struct mreg){ .base = 4 * GiB + 64 * KiB, .end = 4 * GiB + 16 * MiB + 64 * KiB };
	mr[2] = (struct mreg){ .base = 5 * GiB - 2 * MiB + 12 * KiB, .end = 5 * GiB + 4 * MiB };
	for (int i = 0; i < FR_REGIONS; i++) {
		size_t n = (mr[i].end - mr[i].base) / FRAME;
		mr[i].used = calloc(n, 1);
		mr[i].ord = calloc(n, 1);
		mr[i].present = true;
	}
	struct cairn_frames_config cfg = { .ncpus = NCPUS };
	cfg.meta_size = cairn_frames_meta_size(map, 2, NCPUS);
	cfg.meta = malloc(cfg.meta_size);
	REQUIRE(cairn_frames_init(&fr, map, 2, &cfg) == 0);
	REQUIRE(cairn_frames_add_region(fr, mr[2].base, mr[2].end - mr[2].base, region2_meta,
					sizeof(region2_meta)) == 0);
	REQUIRE(cairn_frames_validate(fr) == 0);

	cairn_host_reports_quiet(1);
	/* the last block of every order below 2^64, and beyond the last byte */
	struct fdigest d0;
	fdigest(&d0);
	for (unsigned o = 0; o <= CAIRN_MAX_ORDER; o++) {
		cairn_phys_t top = 0 - (FRAME << o);
		EXPECT("frames_free(top block)", cairn_frames_free(fr, top, o), CAIRN_ERANGE);
		EXPECT("frames_alloc_at(top block)", cairn_frames_alloc_at(fr, top, o), CAIRN_ERANGE);
		CHECK(!cairn_frames_is_allocated(fr, top, o));
		EXPECT("frames_reserve(to 2^64)", cairn_frames_reserve(fr, top, FRAME << o), CAIRN_EINVAL);
		EXPECT("frames_unreserve(to 2^64)", cairn_frames_unreserve(fr, top, FRAME << o),
		       CAIRN_EINVAL);
		EXPECT("frames_reserve(below 2^64)", cairn_frames_reserve(fr, top - FRAME, FRAME << o),
		       CAIRN_ERANGE);
		EXPECT("frames_free(last byte)", cairn_frames_free(fr, UINT64_MAX, o), CAIRN_EALIGN);
		EXPECT("frames_free(top block, order + 1)", cairn_frames_free(fr, top, o + 1),
		       o == CAIRN_MAX_ORDER ? CAIRN_EINVAL : CAIRN_EALIGN);
	}
	fsame("top blocks", &d0);
	for (unsigned i = 0; i < rounds * 4; i++) {
		for (unsigned k = (unsigned)below(4); k-- > 0;)
			frames_valid_op();
		frames_bad_op();
		if (i % 500 == 250) {
			/* free everything in region 2 now and then: remove it */
			for (size_t k = nlive; k-- > 0;)
				if (live[k].p >= mr[2].base && live[k].p < mr[2].end) {
					EXPECT("frames free", cairn_frames_free(fr, live[k].p, live[k].order), 0);
					live_drop(k);
				}
			for (size_t k = nrsv; k-- > 0;)
				if (rsv[k].p >= mr[2].base && rsv[k].p < mr[2].end) {
					EXPECT("frames unreserve",
					       cairn_frames_unreserve(fr, rsv[k].p, rsv[k].order * FRAME), 0);
					for (uint64_t at = 0; at < rsv[k].order; at++)
						mark(rsv[k].p + at * FRAME, 0, false);
					rsv[k] = rsv[--nrsv];
				}
		}
		if (i % 500 == 251 || i % 500 == 400)
			frames_regions();
	}
	/* exhaustion: everything allocated, every allocation fails cleanly */
	for (;;) {
		cairn_phys_t v[64];
		size_t n = cairn_frames_alloc_bulk(fr, 0, v, 64);
		for (size_t k = 0; k < n; k++)
			live_add(v[k], 0);
		if (!n)
			break;
	}
	struct fdigest d;
	fdigest(&d);
	cairn_phys_t p = 0x77;
	for (unsigned o = 0; o <= CAIRN_MAX_ORDER; o++) {
		EXPECT("frames_alloc exhausted", cairn_frames_alloc(fr, o, 0, &p), CAIRN_ENOMEM);
		EXPECT("frames_alloc_aligned exhausted",
		       cairn_frames_alloc_aligned(fr, o, CAIRN_MAX_ORDER, CAIRN_F_ZERO, &p), CAIRN_ENOMEM);
	}
	EXPECT("frames_alloc_bulk exhausted", cairn_frames_alloc_bulk(fr, 0, &p, 1), 0);
	EXPECT("frames_alloc_bulk_huge exhausted", cairn_frames_alloc_bulk_huge(fr, 0, &p, 1), 0);
	CHECK(p == 0x77);
	fsame("exhausted allocations", &d);
	cairn_host_reports_quiet(0);
	printf("frames: %zu reserves; %zu blocks, %zu reserved ranges live at the end\n",
	       nreserved, nlive, nrsv);
}

/* ======================================================================
 * arena and btree
 * ====================================================================== */

static struct cairn_frames *fr2; /* nodes, magazines, caches, objects */

#define AQ 16ull
#define TOP (UINT64_MAX - 0xffffull) /* a span near 2^64: [TOP, TOP + 0x8000) */

struct aspan {
	uint64_t base, end;
};
/* S0 and S1 adjacent (a span start between them), S2 apart, S3 near 2^64 */
static const struct aspan aspans[] = {
	{ 0x10000, 0x20000 }, { 0x20000, 0x28000 }, { 0x40000, 0x48000 }, { TOP, TOP + 0x8000 },
};
#define NSPANS 4

struct aalloc {
	uint64_t addr, size, cookie;
};
static struct aalloc al[16384];
static size_t nal;
static struct cairn_arena ar;

static int span_of(uint64_t x)
{
	for (int i = 0; i < NSPANS; i++)
		if (x >= aspans[i].base && x < aspans[i].end)
			return i;
	return -1;
}

static long alloc_of(uint64_t x)
{
	for (size_t i = 0; i < nal; i++)
		if (x >= al[i].addr && x - al[i].addr < al[i].size)
			return (long)i;
	return -1;
}

/* The free extent around x (x in a span, in no allocation). */
static void free_ext(uint64_t x, uint64_t *fs, uint64_t *fe)
{
	int s = span_of(x);
	*fs = aspans[s].base;
	*fe = aspans[s].end;
	for (size_t i = 0; i < nal; i++) {
		if (al[i].addr + al[i].size <= x && al[i].addr + al[i].size > *fs)
			*fs = al[i].addr + al[i].size;
		if (al[i].addr > x && al[i].addr < *fe)
			*fe = al[i].addr;
	}
}

static uint64_t qround16(uint64_t size)
{
	return (size + AQ - 1) & ~(AQ - 1);
}

static int aexpect_free(uint64_t addr, uint64_t size)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if (addr % AQ)
		return CAIRN_EALIGN;
	uint64_t len = qround16(size);
	if (len == 0)
		return CAIRN_EORDER;
	if (span_of(addr) < 0)
		return CAIRN_ERANGE;
	long i = alloc_of(addr);
	if (i < 0 || al[i].addr != addr)
		return CAIRN_EFREE;
	return al[i].size == len ? 0 : CAIRN_EORDER;
}

static int aexpect_free_owned(uint64_t addr, uint64_t cookie)
{
	if (span_of(addr) < 0)
		return CAIRN_ERANGE;
	long i = alloc_of(addr);
	if (i < 0)
		return CAIRN_EFREE;
	if (al[i].addr != addr)
		return CAIRN_EALIGN;
	return al[i].cookie == cookie ? 0 : CAIRN_EBUSY;
}

static int aexpect_reserve(uint64_t addr, uint64_t size)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if ((addr | size) % AQ)
		return CAIRN_EALIGN;
	if (addr + size <= addr)
		return CAIRN_ERANGE;
	int s = span_of(addr);
	if (s < 0)
		return CAIRN_ERANGE;
	if (alloc_of(addr) >= 0)
		return CAIRN_EBUSY;
	uint64_t fs, fe;
	free_ext(addr, &fs, &fe);
	if (addr + size <= fe)
		return 0;
	if (fe == aspans[s].end)
		return span_of(fe) >= 0 ? CAIRN_EBUSY : CAIRN_ERANGE;
	return CAIRN_EBUSY;
}

static int aexpect_add(uint64_t base, uint64_t size)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if ((base | size) % AQ)
		return CAIRN_EALIGN;
	if (base + size <= base)
		return CAIRN_ERANGE;
	for (int i = 0; i < NSPANS; i++)
		if (base < aspans[i].end && aspans[i].base < base + size)
			return CAIRN_EEXIST;
	return 0;
}

static void al_add(uint64_t addr, uint64_t size, uint64_t cookie)
{
	int s = span_of(addr);
	SAME("arena alloc: inside a span", s >= 0 && addr + size <= aspans[s].end &&
						   addr + size > addr);
	for (size_t i = 0; i < nal; i++)
		SAME("arena alloc: overlapping", addr + size <= al[i].addr ||
							 al[i].addr + al[i].size <= addr);
	REQUIRE(nal < sizeof(al) / sizeof(al[0]));
	al[nal++] = (struct aalloc){ addr, size, cookie };
}

struct adigest {
	uint64_t hash, extents;
	struct cairn_btree_stats bs;
	uint64_t imports, releases, frames_free;
};

static int hash_ext(const struct cairn_ext *e, void *arg)
{
	struct adigest *d = arg;
	uint64_t v[4] = { e->start, e->len, e->cookie, e->flags };
	for (int i = 0; i < 4; i++)
		d->hash = (d->hash ^ v[i]) * 0x100000001b3ull;
	d->extents++;
	return 0;
}

static void adigest_of(struct cairn_arena *a, struct adigest *d)
{
	memset(d, 0, sizeof(*d));
	d->hash = 0xcbf29ce484222325ull;
	CHECK_EQ(cairn_btree_walk(&a->tree, hash_ext, d), 0);
	CHECK_EQ(cairn_btree_validate(&a->tree, &d->bs), 0);
	d->imports = atomic_load(&a->imports);
	d->releases = atomic_load(&a->releases);
	d->frames_free = frames_free_total(fr2);
}

static void asame(const char *what, const struct adigest *before)
{
	struct adigest now;
	adigest_of(&ar, &now);
	SAME(what, now.hash == before->hash && now.extents == before->extents);
	SAME(what, memcmp(&now.bs, &before->bs, sizeof(now.bs)) == 0);
	SAME(what, now.imports == before->imports && now.releases == before->releases);
	SAME(what, now.frames_free == before->frames_free);
	SAME(what, cairn_arena_validate(&ar) == 0);
	for (size_t i = 0; i < nal; i++) {
		uint64_t st = 0, sz = 0, ck = 0;
		SAME(what, cairn_arena_lookup(&ar, al[i].addr + below(al[i].size), &st, &sz, &ck) == 0 &&
				   st == al[i].addr && sz == al[i].size && ck == al[i].cookie);
	}
}

/* Somewhere in or near the spans: starts and ends of spans and allocations,
 * one before, one past, inside. */
static uint64_t arand_addr(void)
{
	switch (below(6)) {
	case 0: {
		const struct aspan *s = &aspans[below(NSPANS)];
		return below(2) ? s->base : s->end;
	}
	case 1: {
		const struct aspan *s = &aspans[below(NSPANS)];
		return below(2) ? s->base - AQ : s->end - AQ;
	}
	case 2:
		if (nal) {
			struct aalloc *x = &al[below(nal)];
			return below(2) ? x->addr : x->addr + x->size;
		}
		/* fall through */
	case 3:
		if (nal) {
			struct aalloc *x = &al[below(nal)];
			return x->addr + below(x->size / AQ) * AQ;
		}
		/* fall through */
	case 4: {
		const struct aspan *s = &aspans[below(NSPANS)];
		return s->base + below((s->end - s->base) / AQ) * AQ;
	}
	default: {
		static const uint64_t far[] = { 0, AQ, 0x30000, 0x48000, UINT64_MAX - AQ + 1,
						 TOP - AQ, TOP + 0x8000, 1ull << 63 };
		return far[below(sizeof(far) / sizeof(far[0]))];
	}
	}
}

static uint64_t arand_size(void)
{
	switch (below(5)) {
	case 0: return AQ * (1 + below(4));
	case 1: return 1 + below(0x400);
	case 2: return AQ * (1 + below(0x800));
	case 3: return nal ? al[below(nal)].size : AQ;
	default: return 1 + below(AQ * 64);
	}
}

static void arena_valid_op(void)
{
	uint64_t addr, size, cookie = 1 + below(8);
	int err;
	switch (below(6)) {
	case 0:
		size = 1 + below(0x800);
		err = cairn_arena_alloc(&ar, size, cookie, &addr);
		if (!err)
			al_add(addr, qround16(size), cookie);
		else
			EXPECT("arena_alloc", err, CAIRN_ENOMEM);
		break;
	case 1: {
		size = AQ * (1 + below(32));
		uint64_t align = AQ << below(6), phase = below(align / AQ) * AQ;
		uint64_t nocross = below(2) ? 0 : (size <= 0x400 ? 0x400 : 0);
		uint64_t lo = below(2) ? 0 : 0x18000, hi = below(2) ? 0 : 0x44000;
		enum cairn_fit pol = (enum cairn_fit)below(3);
		err = cairn_arena_xalloc(&ar, size, align, phase, nocross, lo, hi, pol, cookie, &addr);
		if (!err) {
			CHECK(addr % align == phase);
			CHECK(addr >= lo && (!hi || addr + size <= hi));
			CHECK(!nocross || addr / nocross == (addr + size - 1) / nocross);
			al_add(addr, size, cookie);
		} else {
			EXPECT("arena_xalloc", err, CAIRN_ENOMEM);
		}
		break;
	}
	case 2:
	case 3:
		if (nal) {
			size_t i = below(nal);
			if (below(2)) {
				/* any size that rounds to the allocated one */
				uint64_t sz = al[i].size - below(AQ);
				EXPECT("arena_free", cairn_arena_free(&ar, al[i].addr, sz), 0);
			} else {
				uint64_t sz = 0;
				EXPECT("arena_free_owned",
				       cairn_arena_free_owned(&ar, al[i].addr, al[i].cookie, &sz), 0);
				EXPECT("arena_free_owned size", sz, al[i].size);
			}
			al[i] = al[--nal];
		}
		break;
	default:
		addr = arand_addr() & ~(AQ - 1);
		size = AQ * (1 + below(64));
		if (aexpect_reserve(addr, size) == 0) {
			EXPECT("arena_reserve", cairn_arena_reserve(&ar, addr, size, cookie), 0);
			al_add(addr, size, cookie);
		}
		break;
	}
}

static void arena_bad_op(void)
{
	struct adigest d;
	adigest_of(&ar, &d);
	uint64_t addr, size, out = 0x5a5a, cookie;
	int want, err;
	char what[128];

	switch (below(9)) {
	case 0: /* free: free space, interior, wrong size, misaligned, outside, 0, huge */
		addr = arand_addr();
		if (below(4) == 0)
			addr += 1 + below(AQ - 1);
		size = below(8) ? arand_size() : (below(2) ? 0 : UINT64_MAX - below(AQ));
		want = aexpect_free(addr, size);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "arena_free(%#llx, %#llx)", (unsigned long long)addr,
			 (unsigned long long)size);
		err = cairn_arena_free(&ar, addr, size);
		EXPECT(what, err, want);
		if (err == 0) {
			long i = alloc_of(addr);
			if (i >= 0)
				al[i] = al[--nal];
			return;
		}
		asame(what, &d);
		return;
	case 1: /* double free */
		if (!nal)
			return;
		{
			size_t i = below(nal);
			addr = al[i].addr;
			size = al[i].size;
			EXPECT("arena_free", cairn_arena_free(&ar, addr, size), 0);
			al[i] = al[--nal];
			adigest_of(&ar, &d);
		}
		snprintf(what, sizeof(what), "arena_free twice (%#llx, %#llx)", (unsigned long long)addr,
			 (unsigned long long)size);
		EXPECT(what, cairn_arena_free(&ar, addr, size), aexpect_free(addr, size));
		asame(what, &d);
		return;
	case 2: /* free_owned: wrong owner, interior, free, outside */
		addr = arand_addr();
		if (below(4) == 0)
			addr += 1 + below(AQ - 1);
		cookie = 1 + below(8);
		want = aexpect_free_owned(addr, cookie);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "arena_free_owned(%#llx, %llu)", (unsigned long long)addr,
			 (unsigned long long)cookie);
		size = 0x5a5a;
		err = cairn_arena_free_owned(&ar, addr, cookie, &size);
		EXPECT(what, err, want);
		if (err == 0) {
			long i = alloc_of(addr);
			if (i >= 0)
				al[i] = al[--nal];
			return;
		}
		SAME(what, size == 0x5a5a);
		asame(what, &d);
		return;
	case 3: /* reserve: used, into a gap, into the next span, misaligned, empty, wrapping */
		addr = arand_addr();
		switch (below(5)) {
		case 0: size = 0; break;
		case 1: size = UINT64_MAX - addr + 1 + AQ * below(4); break;
		case 2: addr += 1 + below(AQ - 1); size = AQ; break;
		case 3: size = 1 + below(AQ - 1); break;
		default: size = AQ * (1 + below(0x1000)); break;
		}
		want = aexpect_reserve(addr, size);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "arena_reserve(%#llx, %#llx)", (unsigned long long)addr,
			 (unsigned long long)size);
		err = cairn_arena_reserve(&ar, addr, size, 7);
		EXPECT(what, err, want);
		if (err == 0) {
			al_add(addr, size, 7);
			return;
		}
		asame(what, &d);
		return;
	case 4: /* add: overlapping, misaligned, empty, wrapping */
		addr = arand_addr();
		switch (below(5)) {
		case 0: size = 0; break;
		case 1: size = UINT64_MAX - addr + 1 + AQ * below(4); break;
		case 2: addr |= 1 + below(AQ - 1); size = AQ; break;
		case 3: size = UINT64_MAX - addr + 1; break; /* ends at 2^64 exactly */
		default: size = AQ * (1 + below(0x10000)); break;
		}
		want = aexpect_add(addr, size);
		if (want == 0)
			return;
		snprintf(what, sizeof(what), "arena_add(%#llx, %#llx)", (unsigned long long)addr,
			 (unsigned long long)size);
		err = cairn_arena_add(&ar, addr, size);
		EXPECT(what, err, want);
		REQUIRE(err != 0);
		asame(what, &d);
		return;
	case 5: /* alloc / xalloc with malformed requests */
		switch (below(10)) {
		case 0:
			snprintf(what, sizeof(what), "arena_alloc(0)");
			err = cairn_arena_alloc(&ar, 0, 1, &out);
			want = CAIRN_EINVAL;
			break;
		case 1:
			size = UINT64_MAX - below(AQ - 1);
			snprintf(what, sizeof(what), "arena_alloc(%#llx)", (unsigned long long)size);
			err = cairn_arena_alloc(&ar, size, 1, &out);
			want = CAIRN_ENOMEM;
			break;
		case 2: {
			uint64_t align = (AQ << below(8)) + AQ * (1 + below(3));
			if (!(align & (align - 1)))
				align += AQ;
			snprintf(what, sizeof(what), "arena_xalloc(align %#llx)", (unsigned long long)align);
			err = cairn_arena_xalloc(&ar, AQ, align, 0, 0, 0, 0, CAIRN_FIT_FIRST, 1, &out);
			want = CAIRN_EALIGN;
			break;
		}
		case 3: {
			uint64_t align = AQ << below(8), phase = align + AQ * below(4);
			snprintf(what, sizeof(what), "arena_xalloc(phase %#llx >= align)",
				 (unsigned long long)phase);
			err = cairn_arena_xalloc(&ar, AQ, align, phase, 0, 0, 0, CAIRN_FIT_FIRST, 1, &out);
			want = CAIRN_EALIGN;
			break;
		}
		case 4:
			snprintf(what, sizeof(what), "arena_xalloc(phase off the quantum)");
			err = cairn_arena_xalloc(&ar, AQ, 256, 1 + below(AQ - 1), 0, 0, 0, CAIRN_FIT_FIRST,
						 1, &out);
			want = CAIRN_EALIGN;
			break;
		case 5: {
			unsigned pol = 3 + (unsigned)below(100);
			snprintf(what, sizeof(what), "arena_xalloc(policy %u)", pol);
			err = cairn_arena_xalloc(&ar, AQ, 0, 0, 0, 0, 0, (enum cairn_fit)pol, 1, &out);
			want = CAIRN_EINVAL;
			break;
		}
		case 6: {
			uint64_t nc = below(2) ? 0x300 : 0x40;
			snprintf(what, sizeof(what), "arena_xalloc(nocross %#llx)", (unsigned long long)nc);
			err = cairn_arena_xalloc(&ar, 0x100, 0, 0, nc, 0, 0, CAIRN_FIT_FIRST, 1, &out);
			want = CAIRN_EINVAL;
			break;
		}
		case 7: {
			uint64_t lo = arand_addr();
			if (lo < 16 * AQ)
				lo += 16 * AQ;
			uint64_t hi = lo - AQ * below(16);
			snprintf(what, sizeof(what), "arena_xalloc(min %#llx >= max %#llx)",
				 (unsigned long long)lo, (unsigned long long)hi);
			err = cairn_arena_xalloc(&ar, AQ, 0, 0, 0, lo, hi, (enum cairn_fit)below(3), 1,
						 &out);
			want = lo >= hi ? CAIRN_ERANGE : CAIRN_ENOMEM;
			break;
		}
		case 8:
			/* bounds in the gap between the spans: nothing fits */
			snprintf(what, sizeof(what), "arena_xalloc(bounds in a gap)");
			err = cairn_arena_xalloc(&ar, AQ, 0, 0, 0, 0x28000, 0x40000,
						 (enum cairn_fit)below(3), 1, &out);
			want = CAIRN_ENOMEM;
			break;
		default:
			/* larger than any span */
			snprintf(what, sizeof(what), "arena_xalloc(too large)");
			err = cairn_arena_xalloc(&ar, 0x20000, 0, 0, 0, 0, 0, (enum cairn_fit)below(3), 1,
						 &out);
			want = CAIRN_ENOMEM;
			break;
		}
		EXPECT(what, err, want);
		if (err == 0) {
			CHECK(0); /* not expected: keep the model */
			return;
		}
		SAME(what, out == 0x5a5a);
		asame(what, &d);
		return;
	default: /* lookups: the model's answer, and nothing changes */
		for (int k = 0; k < 8; k++) {
			addr = arand_addr() + (below(2) ? below(AQ) : 0);
			uint64_t st = 1, sz = 2, ck = 3;
			err = cairn_arena_lookup(&ar, addr, &st, &sz, &ck);
			long i = alloc_of(addr);
			want = span_of(addr) < 0 ? CAIRN_ERANGE : i < 0 ? CAIRN_EFREE : 0;
			snprintf(what, sizeof(what), "arena_lookup(%#llx)", (unsigned long long)addr);
			EXPECT(what, err, want);
			if (!err && i >= 0)
				CHECK(st == al[i].addr && sz == al[i].size && ck == al[i].cookie);
			else if (!(st == 1 && sz == 2 && ck == 3)) {
				check_failures++;
				if (check_failures < 40)
					fprintf(stderr, "%s: %s, yet wrote start %#llx size %#llx cookie %#llx\n",
						what, cairn_strerror(err), (unsigned long long)st,
						(unsigned long long)sz, (unsigned long long)ck);
			}
		}
		asame("arena_lookup", &d);
		return;
	}
}

/* Planners for the btree's own misuse. */
static int plan_err(const struct cairn_bt_view *v, void *arg, struct cairn_bt_edit *e)
{
	(void)v;
	(void)e;
	return (int)(intptr_t)arg;
}

static int plan_bad_edit(const struct cairn_bt_view *v, void *arg, struct cairn_bt_edit *e)
{
	unsigned kind = (unsigned)(uintptr_t)arg;
	switch (kind) {
	case 0: /* insert over cur */
		if (!v->has_cur)
			return CAIRN_EBUSY;
		e->ins[0] = (struct cairn_ext){ v->cur.start, 1, 0, 0 };
		e->nins = 1;
		return 0;
	case 1: /* an extent past 2^64 */
		e->ins[0] = (struct cairn_ext){ UINT64_MAX - 4, 16, 0, 0 };
		e->nins = 1;
		return 0;
	case 2: /* two inserts out of order */
		e->ins[0] = (struct cairn_ext){ 0x38000, 16, 0, 0 };
		e->ins[1] = (struct cairn_ext){ 0x30000, 16, 0, 0 };
		e->nins = 2;
		return 0;
	case 3: /* cur lengthened over succ */
		if (!v->has_cur || !v->has_succ)
			return CAIRN_EBUSY;
		e->act[1] = CAIRN_BT_SET;
		e->val[1] = v->cur;
		e->val[1].len += v->succ.len + 16;
		return 0;
	case 4: /* an action outside the enum */
		e->act[1] = 7;
		return 0;
	case 5: /* too many inserts */
		e->ins[0] = (struct cairn_ext){ 0x38000, 16, 0, 0 };
		e->nins = 3;
		return 0;
	default: /* an empty extent */
		e->ins[0] = (struct cairn_ext){ 0x38000, 0, 0, 0 };
		e->nins = 1;
		return 0;
	}
}

static void btree_bad_op(void)
{
	struct adigest d;
	adigest_of(&ar, &d);
	if (below(4) == 0) {
		/* the shapes alone: a release of what is not an allocated
		 * extent of that length at that key, a carve of nothing or
		 * of more than any free extent: unshaped, nothing changed */
		struct cairn_ext res = { 1, 2, 3, 4 };
		uint64_t key = arand_addr() + (below(4) ? 0 : 1 + below(AQ - 1)), need;
		long i = alloc_of(key);
		need = below(4) ? arand_size() : (below(2) ? 0 : UINT64_MAX - below(AQ));
		if (i >= 0 && al[i].addr == key && al[i].size == need)
			need += AQ;
		int err = cairn_btree_release(&ar.tree, key, need, CAIRN_ARENA_SPAN, &res);
		EXPECT("btree_release of no such extent", err, CAIRN_BT_UNSHAPED);
		need = below(2) ? 0 : 0x10000 + AQ * (1 + below(1000));
		if (below(4) == 0)
			need = UINT64_MAX - below(AQ);
		err = cairn_btree_carve(&ar.tree, need, 5, &res);
		EXPECT("btree_carve of nothing or too much", err, CAIRN_BT_UNSHAPED);
		SAME("btree shapes", res.start == 1 && res.len == 2 && res.cookie == 3 && res.flags == 4);
		asame("btree shapes", &d);
		return;
	}
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = arand_addr(), .plan = plan_err };
	char what[96];
	int want;
	switch (below(5)) {
	case 0:
		q.find = (enum cairn_bt_find)(4 + below(100));
		want = CAIRN_EINVAL;
		snprintf(what, sizeof(what), "btree_update(find %u)", (unsigned)q.find);
		break;
	case 1:
		q.shape = (enum cairn_bt_shape)(4 + below(100));
		want = CAIRN_EINVAL;
		snprintf(what, sizeof(what), "btree_update(shape %u)", (unsigned)q.shape);
		break;
	case 2:
		q.plan = NULL;
		want = CAIRN_EINVAL;
		snprintf(what, sizeof(what), "btree_update(no planner)");
		break;
	case 3: {
		static const int errs[] = { 1, 5, CAIRN_EBUSY, CAIRN_ENOMEM, CAIRN_EFREE };
		int e = errs[below(5)];
		q.arg = (void *)(intptr_t)e;
		q.find = (enum cairn_bt_find)below(4);
		q.lo = 0;
		q.hi = UINT64_MAX;
		q.need = AQ;
		want = e > 0 ? CAIRN_EINVAL : e;
		snprintf(what, sizeof(what), "btree_update(planner returns %d)", e);
		break;
	}
	default: {
		unsigned kind = (unsigned)below(7);
		q.plan = plan_bad_edit;
		q.arg = (void *)(uintptr_t)kind;
		q.key = kind == 3 ? (nal ? al[below(nal)].addr : aspans[0].base)
				  : (kind == 0 ? arand_addr() : 0x38000);
		/* (kinds 0 and 3 need a cur, and 3 a succ: the planner says
		 * EBUSY without them) */
		want = kind == 0 || kind == 3 ? 1 : CAIRN_EINVAL;
		snprintf(what, sizeof(what), "btree_update(malformed edit %u at %#llx)", kind,
			 (unsigned long long)q.key);
		break;
	}
	}
	int err = cairn_btree_update(&ar.tree, &q);
	if (want == 1)
		want = err == CAIRN_EBUSY ? CAIRN_EBUSY : CAIRN_EINVAL;
	EXPECT(what, err, want);
	REQUIRE(err != 0);
	asame(what, &d);
}

static void arena_create_misuse(void)
{
	struct cairn_arena a;
	uint64_t before = frames_free_total(fr2);
	struct cairn_arena_source src = { 0 };
	struct {
		struct cairn_arena_config cfg;
		uint64_t base, size;
		int want;
	} bad[] = {
		{ { .quantum = 3 }, 0, 0, CAIRN_EINVAL },
		{ { .quantum = 16, .import_quantum = 24 }, 0, 0, CAIRN_EINVAL },
		{ { .quantum = 16, .fanout = 3 }, 0, 0, CAIRN_EINVAL },
		{ { .quantum = 16, .fanout = CAIRN_BTREE_FANOUT_MAX + 1 }, 0, 0, CAIRN_EINVAL },
		{ { .quantum = 16, .source = &src }, 0, 0, CAIRN_EINVAL },
		{ { .quantum = 16 }, 0x1008, 0x100, CAIRN_EALIGN },
		{ { .quantum = 16 }, UINT64_MAX - 0xff, 0x200, CAIRN_ERANGE },
		{ { .quantum = 16 }, UINT64_MAX - 0xff, 0x100, CAIRN_ERANGE },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "arena_create bad config %zu", i);
		EXPECT(what, cairn_arena_create(&a, fr2, bad[i].base, bad[i].size, &bad[i].cfg),
		       bad[i].want);
		SAME(what, frames_free_total(fr2) == before);
	}
	/* no arena, no frames for its nodes: refused as every create refuses
	 * a missing instance */
	EXPECT("arena_create NULL arena", cairn_arena_create(NULL, fr2, 0x1000, 0x100, NULL),
	       CAIRN_EINVAL);
	EXPECT("arena_create NULL nodes", cairn_arena_create(&a, NULL, 0x1000, 0x100, NULL),
	       CAIRN_EINVAL);
	SAME("arena_create", frames_free_total(fr2) == before);
	struct cairn_frames_source fs = { .frames = fr2 };
	cairn_arena_source_frames(&src, &fs);
	struct cairn_arena_config big = { .quantum = 4096, .source = &src,
					  .import_quantum = (1ull << 63) + 4096 };
	EXPECT("arena_create frames source, import quantum past 2^63",
	       cairn_arena_create(&a, fr2, 0, 0, &big), CAIRN_EINVAL);
	SAME("arena_create", frames_free_total(fr2) == before);

	/* importing from frames: requests no import can serve fail cleanly,
	 * no frame kept, the arena as it was */
	struct cairn_arena_config icfg = { .quantum = FRAME, .source = &src,
					   .import_quantum = 2 * MiB };
	REQUIRE(cairn_arena_create(&a, fr2, 0, 0, &icfg) == 0);
	uint64_t addr = 0x5a5a, with_root = frames_free_total(fr2);
	static const uint64_t huge[] = { 1ull << 31, 1ull << 40, (1ull << 63) + FRAME,
					 UINT64_MAX - FRAME + 1, 3ull << 30 };
	for (int i = 0; i < 5; i++) {
		char what[64];
		snprintf(what, sizeof(what), "arena_alloc(%#llx) from frames",
			 (unsigned long long)huge[i]);
		EXPECT(what, cairn_arena_alloc(&a, huge[i], 1, &addr), CAIRN_ENOMEM);
		snprintf(what, sizeof(what), "arena_xalloc(align %#llx) from frames",
			 (unsigned long long)huge[i]);
		EXPECT(what, cairn_arena_xalloc(&a, FRAME, huge[i], 0, 0, 0, 0, CAIRN_FIT_HIGH, 1,
						 &addr),
		       huge[i] & (huge[i] - 1) ? CAIRN_EALIGN : CAIRN_ENOMEM);
		SAME(what, addr == 0x5a5a && frames_free_total(fr2) == with_root &&
				   atomic_load(&a.imports) == 0 && cairn_arena_validate(&a) == 0);
	}
	cairn_arena_destroy(&a);
	SAME("arena_destroy", frames_free_total(fr2) == before);

	struct cairn_btree t;
	memset(&t, 0xa5, sizeof(t));
	unsigned char pat[sizeof(t)];
	memcpy(pat, &t, sizeof(t));
	EXPECT("btree_init fanout 3", cairn_btree_init(&t, fr2, 3), CAIRN_EINVAL);
	EXPECT("btree_init fanout max + 1", cairn_btree_init(&t, fr2, CAIRN_BTREE_FANOUT_MAX + 1),
	       CAIRN_EINVAL);
	EXPECT("btree_init no frames", cairn_btree_init(&t, NULL, 0), CAIRN_EINVAL);
	SAME("btree_init", memcmp(&t, pat, sizeof(t)) == 0);
	SAME("btree_init", frames_free_total(fr2) == before);
}

/* An arena importing from a parent: malformed requests are refused before
 * any import, and a refused free or reserve touches neither arena. */
static void arena_import_misuse(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	struct cairn_arena_config pcfg = { .quantum = AQ, .fanout = 4 };
	REQUIRE(cairn_arena_create(&parent, fr2, 0x1000000, 0x100000, &pcfg) == 0);
	cairn_arena_source_arena(&src, &parent);
	struct cairn_arena_config ccfg = { .quantum = AQ, .source = &src, .import_quantum = 0x1000,
					   .fanout = 4 };
	REQUIRE(cairn_arena_create(&child, fr2, 0, 0, &ccfg) == 0);
	uint64_t live[16], out;
	for (int i = 0; i < 16; i++)
		REQUIRE(cairn_arena_alloc(&child, 0x100 + AQ * i, 7, &live[i]) == 0);
	cairn_host_reports_quiet(1);
	for (unsigned r = 0; r < rounds / 4 + 10; r++) {
		struct adigest pd, cd;
		adigest_of(&parent, &pd);
		adigest_of(&child, &cd);
		int err, want;
		uint64_t x = live[below(16)];
		switch (below(8)) {
		case 0: err = cairn_arena_alloc(&child, 0, 1, &out); want = CAIRN_EINVAL; break;
		case 1:
			err = cairn_arena_xalloc(&child, AQ, 48, 0, 0, 0, 0, CAIRN_FIT_FIRST, 1, &out);
			want = CAIRN_EALIGN;
			break;
		case 2:
			err = cairn_arena_xalloc(&child, 0x200, 0, 0, 0x100, 0, 0, CAIRN_FIT_FIRST, 1, &out);
			want = CAIRN_EINVAL;
			break;
		case 3:
			err = cairn_arena_xalloc(&child, AQ, 0, 0, 0, 0x5000, 0x4000, CAIRN_FIT_FIRST, 1, &out);
			want = CAIRN_ERANGE;
			break;
		case 4:
			err = cairn_arena_xalloc(&child, AQ, 0, 0, 0, 0, 0, (enum cairn_fit)7, 1, &out);
			want = CAIRN_EINVAL;
			break;
		case 5: /* more than the parent holds: its xalloc fails, nothing imported */
			err = cairn_arena_alloc(&child, 0x200000 + AQ * below(100), 1, &out);
			want = CAIRN_ENOMEM;
			break;
		case 6:
			err = cairn_arena_free(&child, x, AQ * 3);
			want = CAIRN_EORDER;
			break;
		default:
			err = cairn_arena_reserve(&child, x, AQ, 1);
			want = CAIRN_EBUSY;
			break;
		}
		EXPECT("importing arena: bad call", err, want);
		struct adigest pn, cn;
		adigest_of(&parent, &pn);
		adigest_of(&child, &cn);
		SAME("importing arena: parent", pn.hash == pd.hash && pn.extents == pd.extents);
		SAME("importing arena: child", cn.hash == cd.hash && cn.extents == cd.extents &&
						       cn.imports == cd.imports && cn.releases == cd.releases);
		/* the parent's lent spans: a free there of less than a span is refused */
		uint64_t st, len, ck;
		REQUIRE(cairn_arena_lookup(&parent, x, &st, &len, &ck) == 0);
		EXPECT("parent: free of part of a lent span", cairn_arena_free(&parent, st, len - AQ),
		       CAIRN_EORDER);
		EXPECT("parent: free_owned as another owner",
		       cairn_arena_free_owned(&parent, st, ck + 1, NULL), CAIRN_EBUSY);
	}
	cairn_host_reports_quiet(0);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(cairn_arena_free(&child, live[i], 0x100 + AQ * i), 0);
	CHECK_EQ(cairn_arena_validate(&child), 0);
	CHECK_EQ(atomic_load(&child.imports), atomic_load(&child.releases));
	cairn_arena_destroy(&child);
	CHECK_EQ(cairn_arena_validate(&parent), 0);
	cairn_arena_destroy(&parent);
}

static void test_arena(void)
{
	arena_create_misuse();
	arena_import_misuse();
	struct cairn_arena_config cfg = { .quantum = AQ, .fanout = 4 };
	REQUIRE(cairn_arena_create(&ar, fr2, aspans[0].base, aspans[0].end - aspans[0].base, &cfg) == 0);
	for (int i = 1; i < NSPANS; i++)
		REQUIRE(cairn_arena_add(&ar, aspans[i].base, aspans[i].end - aspans[i].base) == 0);
	cairn_host_reports_quiet(1);
	for (unsigned i = 0; i < rounds * 2; i++) {
		for (unsigned k = (unsigned)below(5); k-- > 0;)
			arena_valid_op();
		if (below(8) == 0)
			btree_bad_op();
		else
			arena_bad_op();
	}
	/* exhaustion: fill every span, then allocations fail cleanly */
	uint64_t addr;
	while (cairn_arena_alloc(&ar, AQ, 9, &addr) == 0)
		al_add(addr, AQ, 9);
	struct adigest d;
	adigest_of(&ar, &d);
	EXPECT("arena_alloc exhausted", cairn_arena_alloc(&ar, AQ, 1, &addr), CAIRN_ENOMEM);
	for (int p = 0; p < 3; p++)
		EXPECT("arena_xalloc exhausted",
		       cairn_arena_xalloc(&ar, AQ, 0, 0, 0, 0, 0, (enum cairn_fit)p, 1, &addr),
		       CAIRN_ENOMEM);
	asame("arena exhausted", &d);
	cairn_host_reports_quiet(0);
	printf("arena: %zu ranges live at the end\n", nal);
	cairn_arena_destroy(&ar);
}

/* ======================================================================
 * magazines, the frame cache, the quantum cache
 * ====================================================================== */

static size_t src_get(void *ctx, uint64_t *items, size_t n)
{
	uint64_t *next = ctx;
	for (size_t i = 0; i < n; i++)
		items[i] = (*next)++;
	return n;
}

static void src_put(void *ctx, const uint64_t *items, size_t n)
{
	(void)ctx;
	(void)items;
	(void)n;
}

static void test_mag(void)
{
	uint64_t next = 1;
	uint64_t before = frames_free_total(fr2);
	struct cairn_mag_cache *mc = (struct cairn_mag_cache *)0x1234;
	static _Alignas(64) unsigned char mem[64 * KiB];
	const struct cairn_mag_config good = { .source = { src_get, src_put, &next }, .frames = fr2,
					       .ncpus = NCPUS };
	struct cairn_mag_config bad[12];
	for (int i = 0; i < 12; i++)
		bad[i] = good;
	bad[0].frames = NULL;
	bad[1].source.get = NULL;
	bad[2].source.put = NULL;
	bad[3].mag_size = CAIRN_MAG_MAX + 1;
	bad[4].refill = 64; /* above the default mag_size 63 */
	bad[5].mag_size = 8;
	bad[5].refill = 9;
	bad[6].ncpus = 40000; /* more magazines than ids */
	bad[7].depot_full = CAIRN_MAG_MAX_MAGS;
	bad[8].mem = mem + 8; /* misaligned */
	bad[8].mem_size = sizeof(mem) - 8;
	bad[9].mem = mem;
	bad[9].mem_size = cairn_mag_mem_size(&good) - 1;
	bad[10].depot_empty = ~0u;
	bad[11].ncpus = ~0u;
	for (int i = 0; i < 12; i++) {
		char what[48];
		snprintf(what, sizeof(what), "mag_create bad config %d", i);
		EXPECT(what, cairn_mag_create(&mc, &bad[i]), CAIRN_EINVAL);
		SAME(what, mc == (struct cairn_mag_cache *)0x1234);
		SAME(what, frames_free_total(fr2) == before);
		if (i < 8 || i >= 10)
			CHECK_EQ(cairn_mag_mem_size(&bad[i]), 0);
	}
	EXPECT("mag_create NULL config", cairn_mag_create(&mc, NULL), CAIRN_EINVAL);
	EXPECT("mag_create NULL out", cairn_mag_create(NULL, &good), CAIRN_EINVAL);
	SAME("mag_create", frames_free_total(fr2) == before);
	CHECK_EQ(cairn_mag_mem_size(NULL), 0);

	REQUIRE(cairn_mag_create(&mc, &good) == 0);
	uint64_t items[200];
	for (int i = 0; i < 200; i++)
		REQUIRE(cairn_mag_alloc(mc, &items[i]) == 0);
	for (int i = 0; i < 100; i++)
		cairn_mag_free(mc, items[i]);
	struct cairn_mag_stats st0, st1;
	struct cairn_mag_cpu_stats cs = { 1, 2, 3, 4, 5 }, cs0 = cs;
	cairn_mag_stats(mc, &st0);
	for (unsigned cpu = NCPUS; cpu < NCPUS + 4; cpu++) {
		EXPECT("mag_drain_cpu out of range", cairn_mag_drain_cpu(mc, cpu), CAIRN_EINVAL);
		EXPECT("mag_cpu_stats out of range", cairn_mag_cpu_stats(mc, cpu, &cs), CAIRN_EINVAL);
	}
	EXPECT("mag_drain_cpu ~0", cairn_mag_drain_cpu(mc, ~0u), CAIRN_EINVAL);
	EXPECT("mag_cpu_stats ~0", cairn_mag_cpu_stats(mc, ~0u, &cs), CAIRN_EINVAL);
	EXPECT("mag_cpu_stats NULL", cairn_mag_cpu_stats(mc, 0, NULL), CAIRN_EINVAL);
	SAME("mag_cpu_stats", memcmp(&cs, &cs0, sizeof(cs)) == 0);
	cairn_mag_stats(mc, &st1);
	SAME("mag bad calls", memcmp(&st0, &st1, sizeof(st0)) == 0);
	cairn_mag_destroy(mc);
	SAME("mag_destroy", frames_free_total(fr2) == before);
}

/* -- the frame cache -- */

static struct cairn_fcache *fc;
static struct blk fcl[16384];
static size_t nfcl;

struct cdigest {
	struct cairn_frames_stats st;
	uint64_t cached;
	struct cairn_mag_stats ms[CAIRN_FCACHE_ORDERS];
};

static const unsigned fc_orders[CAIRN_FCACHE_ORDERS] = { 0, 1, 2, 3, 9 };

static void fc_digest(struct cdigest *d)
{
	memset(d, 0, sizeof(*d));
	cairn_frames_stats(fr2, &d->st);
	d->cached = cairn_fcache_cached_frames(fc);
	for (int i = 0; i < CAIRN_FCACHE_ORDERS; i++)
		cairn_mag_stats(cairn_fcache_mags(fc, fc_orders[i]), &d->ms[i]);
}

static void fc_same(const char *what, const struct cdigest *before)
{
	struct cdigest now;
	fc_digest(&now);
	SAME(what, memcmp(&now, before, sizeof(now)) == 0);
	SAME(what, cairn_frames_validate(fr2) == 0);
	for (size_t i = 0; i < nfcl; i++)
		SAME(what, cairn_frames_is_allocated(fr2, fcl[i].p, fcl[i].order));
}

static const uint64_t FR2_BASE = 6 * GiB, FR2_END = 6 * GiB + 512 * MiB;

/* Take every free frame of fr2 (exhaustion on demand) and give them back. */
static cairn_phys_t *drained2;
static size_t ndrained2;

static void fr2_drain(void)
{
	size_t cap = (size_t)(FR2_END - FR2_BASE) / FRAME, got;
	if (!drained2)
		drained2 = malloc(cap * sizeof(*drained2));
	while ((got = cairn_frames_alloc_bulk(fr2, 0, drained2 + ndrained2, cap - ndrained2)) > 0)
		ndrained2 += got;
	REQUIRE(frames_free_total(fr2) == 0);
}

static void fr2_undrain(void)
{
	REQUIRE(cairn_frames_free_bulk(fr2, drained2, ndrained2, NULL) == 0);
	ndrained2 = 0;
}

/* The frame allocator's answer for a block the cache does not hold:
 * p free in the frame allocator (not cached), or a live block. */
static int fc_expect(uint64_t p, unsigned order)
{
	if (order > CAIRN_MAX_ORDER)
		return CAIRN_EINVAL;
	if (p % (FRAME << order))
		return CAIRN_EALIGN;
	if (p < FR2_BASE || p + (FRAME << order) > FR2_END || p + (FRAME << order) < p)
		return CAIRN_ERANGE;
	for (size_t i = 0; i < nfcl; i++) {
		if (p >= fcl[i].p && p < fcl[i].p + (FRAME << fcl[i].order))
			return p == fcl[i].p && order == fcl[i].order ? 0 : CAIRN_EORDER;
	}
	return -100; /* unknown: not asked */
}

static void test_fcache(void)
{
	uint64_t before = frames_free_total(fr2);
	struct cairn_fcache *bad = (struct cairn_fcache *)0x1234;
	struct cairn_fcache_config cfg = { .ncpus = NCPUS };
	for (int i = 0; i < CAIRN_FCACHE_ORDERS; i++) {
		cfg.mag_size[i] = CAIRN_MAG_MAX + 1;
		EXPECT("fcache_create mag_size", cairn_fcache_create(&bad, fr2, &cfg), CAIRN_EINVAL);
		cfg.mag_size[i] = 0;
	}
	cfg.ncpus = 40000;
	EXPECT("fcache_create ncpus", cairn_fcache_create(&bad, fr2, &cfg), CAIRN_EINVAL);
	cfg.ncpus = NCPUS;
	cfg.depot_full = CAIRN_MAG_MAX_MAGS;
	EXPECT("fcache_create depot_full", cairn_fcache_create(&bad, fr2, &cfg), CAIRN_EINVAL);
	cfg.depot_full = 0;
	EXPECT("fcache_create NULL frames", cairn_fcache_create(&bad, NULL, &cfg), CAIRN_EINVAL);
	EXPECT("fcache_create NULL out", cairn_fcache_create(NULL, fr2, &cfg), CAIRN_EINVAL);
	SAME("fcache_create", bad == (struct cairn_fcache *)0x1234);
	SAME("fcache_create", frames_free_total(fr2) == before);

	REQUIRE(cairn_fcache_create(&fc, fr2, &cfg) == 0);
	cairn_host_reports_quiet(1);
	for (unsigned r = 0; r < rounds; r++) {
		/* good calls */
		for (unsigned k = (unsigned)below(4); k-- > 0;) {
			if (nfcl < 2000 && below(2)) {
				static const unsigned ord[] = { 0, 0, 0, 1, 2, 3, 9, 4, 6 };
				unsigned o = ord[below(9)], fl = below(4) ? 0 : CAIRN_F_ZERO;
				if (below(8) == 0)
					fl |= CAIRN_F_HIGH;
				cairn_phys_t p;
				if (cairn_fcache_alloc(fc, o, fl, &p) == 0) {
					CHECK(p % (FRAME << o) == 0);
					CHECK(cairn_frames_is_allocated(fr2, p, o));
					fcl[nfcl++] = (struct blk){ p, o };
				}
			} else if (nfcl) {
				size_t i = below(nfcl);
				EXPECT("fcache_free", cairn_fcache_free(fc, fcl[i].p, fcl[i].order), 0);
				fcl[i] = fcl[--nfcl];
			}
		}
		if (below(16) == 0)
			cairn_fcache_drain_all(fc);

		struct cdigest d;
		fc_digest(&d);
		cairn_phys_t p = 0, out = 0x5a5a;
		unsigned order = 0;
		int want, err;
		char what[96];
		switch (below(7)) {
		case 0: /* a live block with another order, or an interior frame */
			if (!nfcl)
				continue;
			{
				size_t i = below(nfcl);
				p = fcl[i].p;
				order = fcl[i].order;
				if (order && below(2))
					p += FRAME * (1 + below((1ull << order) - 1));
				else
					do
						order = below(2) ? (unsigned)below(10) : fc_orders[below(5)];
					while (order == fcl[i].order);
			}
			break;
		case 1: /* misaligned */
			p = nfcl ? fcl[below(nfcl)].p : FR2_BASE;
			order = fc_orders[below(5)];
			p += below(2) ? 1 + below(FRAME - 1) : FRAME;
			break;
		case 2: { /* outside the memory */
			static const uint64_t far[] = { 0, 6 * GiB - 2 * MiB, 6 * GiB + 512 * MiB,
							 7 * GiB, UINT64_MAX & ~(2 * MiB - 1) };
			p = far[below(5)];
			order = fc_orders[below(5)];
			break;
		}
		case 3: /* bad order */
			p = nfcl ? fcl[below(nfcl)].p : FR2_BASE;
			order = rand_bad_order();
			break;
		case 4: /* double free: freed, drained to the frame allocator, freed again */
			if (!nfcl)
				continue;
			{
				size_t i = below(nfcl);
				p = fcl[i].p;
				order = fcl[i].order;
				EXPECT("fcache_free", cairn_fcache_free(fc, p, order), 0);
				fcl[i] = fcl[--nfcl];
				cairn_fcache_drain_all(fc);
				fc_digest(&d);
			}
			snprintf(what, sizeof(what), "fcache_free twice (%#llx, %u)",
				 (unsigned long long)p, order);
			EXPECT(what, cairn_fcache_free(fc, p, order), CAIRN_EFREE);
			fc_same(what, &d);
			continue;
		case 5: /* alloc: bad order, bad flags */
			if (below(2)) {
				order = rand_bad_order();
				snprintf(what, sizeof(what), "fcache_alloc(order %u)", order);
				err = cairn_fcache_alloc(fc, order, 0, &out);
			} else {
				unsigned fl = rand_bad_flags();
				snprintf(what, sizeof(what), "fcache_alloc(flags %#x)", fl);
				err = cairn_fcache_alloc(fc, fc_orders[below(5)], fl, &out);
			}
			EXPECT(what, err, CAIRN_EINVAL);
			if (err == 0) {
				cairn_fcache_free(fc, out, order);
				continue;
			}
			SAME(what, out == 0x5a5a);
			fc_same(what, &d);
			continue;
		default:
			snprintf(what, sizeof(what), "fcache_drain_cpu out of range");
			EXPECT(what, cairn_fcache_drain_cpu(fc, NCPUS + (unsigned)below(4)), CAIRN_EINVAL);
			fc_same(what, &d);
			continue;
		}
		want = fc_expect(p, order);
		if (want == 0 || want == -100)
			continue;
		snprintf(what, sizeof(what), "fcache_free(%#llx, %u)", (unsigned long long)p, order);
		err = cairn_fcache_free(fc, p, order);
		EXPECT(what, err, want);
		if (err == 0)
			REQUIRE(0);
		fc_same(what, &d);
	}
	/* exhaustion: the frame allocator empty, the caches drained back to
	 * it first (so taken as well), then every order fails cleanly */
	fr2_drain();
	for (int i = 0; i < CAIRN_FCACHE_ORDERS; i++) {
		cairn_phys_t p = 0x5a5a;
		int err = cairn_fcache_alloc(fc, fc_orders[i], 0, &p);
		if (err == 0) { /* a frame a cache held: take them all */
			REQUIRE(nfcl < sizeof(fcl) / sizeof(fcl[0]));
			fcl[nfcl++] = (struct blk){ p, fc_orders[i] };
			i--;
			continue;
		}
		EXPECT("fcache_alloc exhausted", err, CAIRN_ENOMEM);
		SAME("fcache_alloc exhausted", p == 0x5a5a);
	}
	EXPECT("fcache exhausted: nothing cached", cairn_fcache_cached_frames(fc), 0);
	cairn_phys_t p5;
	EXPECT("fcache_alloc exhausted, order 5", cairn_fcache_alloc(fc, 5, 0, &p5), CAIRN_ENOMEM);
	fr2_undrain();
	cairn_host_reports_quiet(0);
	while (nfcl) {
		nfcl--;
		CHECK_EQ(cairn_fcache_free(fc, fcl[nfcl].p, fcl[nfcl].order), 0);
	}
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(fr2), before);
	CHECK_EQ(cairn_frames_validate(fr2), 0);
}


/* -- the quantum cache -- */

#define VA 0x100000000000ull
#define QSPAN (4 * MiB)

static void test_qcache(void)
{
	uint64_t before = frames_free_total(fr2);
	struct cairn_arena a;
	struct cairn_arena_config acfg = { .quantum = FRAME };
	REQUIRE(cairn_arena_create(&a, fr2, VA, QSPAN, &acfg) == 0);
	uint64_t fr_arena = frames_free_total(fr2);
	struct cairn_qcache *qc = (struct cairn_qcache *)0x1234;
	struct cairn_qcache_config bad[] = {
		{ .max_quanta = CAIRN_QCACHE_MAX + 1 },
		{ .max_quanta = ~0u },
		{ .mag_size = CAIRN_MAG_MAX + 1 },
		{ .ncpus = 40000 },
		{ .depot_empty = CAIRN_MAG_MAX_MAGS },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[48];
		snprintf(what, sizeof(what), "qcache_create bad config %zu", i);
		EXPECT(what, cairn_qcache_create(&qc, &a, fr2, &bad[i]), CAIRN_EINVAL);
	}
	EXPECT("qcache_create NULL arena", cairn_qcache_create(&qc, NULL, fr2, NULL), CAIRN_EINVAL);
	EXPECT("qcache_create NULL frames", cairn_qcache_create(&qc, &a, NULL, NULL), CAIRN_EINVAL);
	SAME("qcache_create", qc == (struct cairn_qcache *)0x1234);
	SAME("qcache_create", frames_free_total(fr2) == fr_arena);

	struct cairn_qcache_config cfg = { .ncpus = NCPUS, .max_quanta = 8 };
	REQUIRE(cairn_qcache_create(&qc, &a, fr2, &cfg) == 0);
	uint64_t cookie = cairn_qcache_cookie(qc);
	struct aalloc ql[1100];
	size_t nql = 0;
	cairn_host_reports_quiet(1);
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = (unsigned)below(4); k-- > 0;) {
			if (nql < 600 && below(2)) {
				uint64_t size = below(4) ? 1 + below(8 * FRAME) : 1 + below(24 * FRAME), addr;
				if (cairn_qcache_alloc(qc, size, &addr) == 0) {
					uint64_t st, len, ck;
					CHECK(cairn_arena_lookup(&a, addr, &st, &len, &ck) == 0 && st == addr &&
					      ck == cookie && len == ((size + FRAME - 1) & ~(FRAME - 1)));
					ql[nql++] = (struct aalloc){ addr, size, 0 };
				}
			} else if (nql) {
				size_t i = below(nql);
				EXPECT("qcache_free", cairn_qcache_free(qc, ql[i].addr, ql[i].size), 0);
				ql[i] = ql[--nql];
			}
		}
		if (below(16) == 0)
			cairn_qcache_drain_all(qc);

		struct adigest d;
		uint64_t cached = cairn_qcache_cached_quanta(qc);
		adigest_of(&a, &d);
		uint64_t addr = 0, size = 0, out = 0x5a5a;
		int want = 0, err;
		char what[96];
		switch (below(7)) {
		case 0: /* wrong size (another number of quanta), 0 */
			if (!nql)
				continue;
			{
				size_t i = below(nql);
				addr = ql[i].addr;
				uint64_t q = (ql[i].size + FRAME - 1) / FRAME, q2;
				do
					q2 = below(4) ? 1 + below(10) : 0;
				while (q2 == q);
				size = q2 ? q2 * FRAME - below(FRAME) : 0;
				want = q2 ? CAIRN_EORDER : CAIRN_EINVAL;
			}
			break;
		case 1: /* interior or misaligned */
			if (!nql)
				continue;
			{
				size_t i = below(nql);
				size = ql[i].size;
				if (size > FRAME && below(2)) {
					addr = ql[i].addr + FRAME * (1 + below((size - 1) / FRAME));
					want = CAIRN_EFREE;
				} else {
					addr = ql[i].addr + 1 + below(FRAME - 1);
					want = CAIRN_EALIGN;
				}
			}
			break;
		case 2: /* outside the arena */
			addr = below(2) ? VA + QSPAN : VA - FRAME * (1 + below(16));
			size = FRAME * (1 + below(8));
			want = CAIRN_ERANGE;
			break;
		case 3: { /* free space of the arena (not cached: a cached range is allocated) */
			addr = VA + below(QSPAN / FRAME) * FRAME;
			if (cairn_arena_lookup(&a, addr, NULL, NULL, NULL) != CAIRN_EFREE)
				continue;
			size = FRAME * (1 + below(8));
			want = CAIRN_EFREE;
			break;
		}
		case 4: /* double free, after the cache gave the range back to the arena */
			if (!nql)
				continue;
			{
				size_t i = below(nql);
				addr = ql[i].addr;
				size = ql[i].size;
				EXPECT("qcache_free", cairn_qcache_free(qc, addr, size), 0);
				ql[i] = ql[--nql];
				cairn_qcache_drain_all(qc);
				cached = cairn_qcache_cached_quanta(qc);
				adigest_of(&a, &d);
				want = CAIRN_EFREE;
			}
			break;
		case 5: /* alloc of 0 and of sizes that round past 2^64 */
			if (below(2)) {
				snprintf(what, sizeof(what), "qcache_alloc(0)");
				err = cairn_qcache_alloc(qc, 0, &out);
				want = CAIRN_EINVAL;
			} else {
				size = UINT64_MAX - below(FRAME - 1);
				snprintf(what, sizeof(what), "qcache_alloc(%#llx)", (unsigned long long)size);
				err = cairn_qcache_alloc(qc, size, &out);
				want = CAIRN_ENOMEM;
			}
			EXPECT(what, err, want);
			SAME(what, out == 0x5a5a);
			goto same;
		default:
			snprintf(what, sizeof(what), "qcache_drain_cpu out of range");
			EXPECT(what, cairn_qcache_drain_cpu(qc, NCPUS + (unsigned)below(4)), CAIRN_EINVAL);
			goto same;
		}
		snprintf(what, sizeof(what), "qcache_free(%#llx, %#llx)", (unsigned long long)addr,
			 (unsigned long long)size);
		err = cairn_qcache_free(qc, addr, size);
		EXPECT(what, err, want);
		REQUIRE(err != 0);
	same:
		SAME(what, cairn_qcache_cached_quanta(qc) == cached);
		{
			struct adigest now;
			adigest_of(&a, &now);
			SAME(what, now.hash == d.hash && now.extents == d.extents &&
					   memcmp(&now.bs, &d.bs, sizeof(d.bs)) == 0 &&
					   now.frames_free == d.frames_free);
		}
	}
	/* exhaustion: every quantum handed out, then allocations fail cleanly */
	uint64_t addr;
	while (nql < 1100 && cairn_qcache_alloc(qc, FRAME, &addr) == 0)
		ql[nql++] = (struct aalloc){ addr, FRAME, 0 };
	CHECK(nql < 1100);
	EXPECT("qcache_alloc exhausted", cairn_qcache_alloc(qc, FRAME, &addr), CAIRN_ENOMEM);
	EXPECT("qcache_alloc exhausted", cairn_qcache_alloc(qc, 20 * FRAME, &addr), CAIRN_ENOMEM);
	cairn_host_reports_quiet(0);
	while (nql) {
		nql--;
		CHECK_EQ(cairn_qcache_free(qc, ql[nql].addr, ql[nql].size), 0);
	}
	cairn_qcache_destroy(qc);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
	CHECK_EQ(frames_free_total(fr2), before);
}

/* ======================================================================
 * objects
 * ====================================================================== */

struct oobj {
	unsigned char *p;
	size_t size;
	unsigned char fill;
};
static struct oobj ol[4096];
static size_t nol;
static struct cairn_objects *ob;

struct odigest {
	struct cairn_objects_stats st;
	struct cairn_frames_stats fs;
};

static void ob_digest(struct odigest *d)
{
	memset(d, 0, sizeof(*d));
	cairn_objects_stats(ob, &d->st);
	cairn_frames_stats(fr2, &d->fs);
}

static void ob_same(const char *what, const struct odigest *before)
{
	struct odigest now;
	ob_digest(&now);
	SAME(what, memcmp(&now.st, &before->st, sizeof(now.st)) == 0);
	SAME(what, memcmp(&now.fs, &before->fs, sizeof(now.fs)) == 0);
	SAME(what, cairn_objects_validate(ob) == 0);
	for (size_t i = 0; i < nol; i++) {
		size_t n = ol[i].size < 64 ? ol[i].size : 64;
		bool ok = cairn_objects_usable_size(ob, ol[i].p) >= ol[i].size;
		for (size_t k = 0; k < n && ok; k++)
			ok = ol[i].p[k] == ol[i].fill && ol[i].p[ol[i].size - 1 - k] == ol[i].fill;
		SAME(what, ok);
	}
}

static size_t orand_size(void)
{
	switch (below(6)) {
	case 0: return below(17);
	case 1: return 1 + below(256);
	case 2: return 1 + below(4096);
	case 3: return 1 + below(CAIRN_OBJ_SMALL_MAX);
	case 4: return below(16) ? CAIRN_OBJ_SMALL_MAX + 1 + below(256 * KiB)
				 : 2 * MiB + below(2 * MiB); /* a buddy block of order 9 or 10 */
	default: return (size_t)16 << below(13);
	}
}

static void ob_keep(void *p, size_t size)
{
	REQUIRE(p);
	REQUIRE(nol < sizeof(ol) / sizeof(ol[0]));
	unsigned char fill = (unsigned char)(1 + below(255));
	memset(p, fill, size);
	ol[nol++] = (struct oobj){ p, size, fill };
}

static void noop_hook(void)
{
}

static void objects_create_misuse(void)
{
	uint64_t before = frames_free_total(fr2);
	struct cairn_objects *o = (struct cairn_objects *)0x1234;
	struct cairn_arena a;
	struct cairn_arena_config acfg = { .quantum = 16 };
	REQUIRE(cairn_arena_create(&a, fr2, 1ull << 44, 64 * MiB, &acfg) == 0);
	uint64_t with_arena = frames_free_total(fr2);
	const struct cairn_objects_config good = { .frames = fr2, .phys_base = FR2_BASE,
						   .phys_limit = FR2_END, .ncpus = NCPUS };
	struct cairn_objects_config bad[10];
	for (int i = 0; i < 10; i++)
		bad[i] = good;
	bad[0].frames = NULL;
	bad[1].phys_limit = bad[1].phys_base;
	bad[2].phys_limit = bad[2].phys_base - FRAME;
	bad[3].phys_base += 8;
	bad[4].ncpus = NCPUS - 1;
	bad[5].harden = (enum cairn_obj_harden)3;
	bad[6].large_cache_kib = 64;
	bad[7].large_qcache = (struct cairn_qcache *)0x1000;
	bad[8].arena_enter = noop_hook; /* without arena_leave */
	bad[9].large_arena = &a;        /* quantum 16, not the frame size */
	for (int i = 0; i < 10; i++) {
		char what[48];
		snprintf(what, sizeof(what), "objects_create bad config %d", i);
		EXPECT(what, cairn_objects_create(&o, &bad[i]), CAIRN_EINVAL);
		SAME(what, o == (struct cairn_objects *)0x1234);
		SAME(what, frames_free_total(fr2) == with_arena);
	}
	EXPECT("objects_create NULL config", cairn_objects_create(&o, NULL), CAIRN_EINVAL);
	EXPECT("objects_create NULL out", cairn_objects_create(NULL, &good), CAIRN_EINVAL);
	SAME("objects_create", frames_free_total(fr2) == with_arena);
	cairn_arena_destroy(&a);
	CHECK_EQ(frames_free_total(fr2), before);
}

/* mode 0: hardened, large objects buddy blocks; 1: hardened, large
 * objects from an arena importing frames, with the heaps' large caches;
 * 2: the same unhardened, with released blocks kept (only what is always
 * checked is planted: foreign pointers, large objects). */
static void test_objects(unsigned mode)
{
	uint64_t before = frames_free_total(fr2);
	struct cairn_arena la;
	struct cairn_arena_source src;
	struct cairn_frames_source fs = { .frames = fr2 };
	struct cairn_objects_config cfg = { .frames = fr2, .phys_base = FR2_BASE,
					    .phys_limit = FR2_END, .ncpus = NCPUS,
					    .harden = mode < 2 ? CAIRN_OBJ_HARDEN_ON
							       : CAIRN_OBJ_HARDEN_OFF };
	if (mode) {
		cairn_arena_source_frames(&src, &fs);
		struct cairn_arena_config acfg = { .quantum = FRAME, .source = &src,
						   .import_quantum = 2 * MiB };
		REQUIRE(cairn_arena_create(&la, fr2, 0, 0, &acfg) == 0);
		cfg.large_arena = &la;
		cfg.large_cache_kib = 1024;
		cfg.released_kib = mode == 2 ? 2048 : 0;
	}
	REQUIRE(cairn_objects_create(&ob, &cfg) == 0);
	/* another instance on the same frames (and arena): its objects are
	 * foreign to this one */
	struct cairn_objects *ob2;
	REQUIRE(cairn_objects_create(&ob2, &cfg) == 0);
	void *other[64];
	size_t nother = 0;
	for (; nother < 64; nother++) {
		size_t size = nother % 4 == 3 ? CAIRN_OBJ_SMALL_MAX + 1 + FRAME * nother : 16 + 64 * nother;
		REQUIRE((other[nother] = cairn_objects_alloc(ob2, size)) != NULL);
	}
	struct cairn_heap *h0 = cairn_objects_heap(ob, 0);
	REQUIRE(h0);
	cairn_phys_t foreign_frame;
	REQUIRE(cairn_frames_alloc(fr2, 0, 0, &foreign_frame) == 0);
	unsigned char *foreign = cairn_port_phys_to_virt(foreign_frame);
	unsigned char *hostmem = malloc(256), stackmem[64];

	cairn_host_reports_quiet(1);
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = (unsigned)below(5); k-- > 0;) {
			if (nol < 1500 && below(2)) {
				size_t size = orand_size();
				void *p = below(4) ? cairn_objects_alloc(ob, size)
						   : cairn_objects_alloc_aligned(ob, size, (size_t)16 << below(9));
				ob_keep(p, size);
			} else if (nol) {
				size_t i = below(nol);
				EXPECT("objects_free", cairn_objects_free(ob, ol[i].p), 0);
				ol[i] = ol[--nol];
			}
		}
		struct odigest d;
		ob_digest(&d);
		char what[96];
		int err;
		void *q;
		switch (below(8)) {
		case 0: { /* foreign pointers */
			static const char *names[] = { "a frame of the frame allocator", "host memory",
						       "the stack", "one past the range", "NULL + 16",
						       "another instance's object", "the instance",
						       "a heap" };
			unsigned k = (unsigned)below(8);
			unsigned char *p = k == 0 ? foreign + 16 * below(256)
					   : k == 1 ? hostmem : k == 2 ? stackmem
					   : k == 3 ? (unsigned char *)cairn_port_phys_to_virt(FR2_END)
					   : k == 4 ? (unsigned char *)16
					   : k == 5 ? other[below(nother)]
					   : k == 6 ? (unsigned char *)ob : (unsigned char *)cairn_objects_heap(ob, (unsigned)below(NCPUS));
			snprintf(what, sizeof(what), "objects_free(%s)", names[k]);
			EXPECT(what, cairn_objects_free(ob, p), CAIRN_ERANGE);
			SAME(what, cairn_objects_usable_size(ob, p) == 0);
			break;
		}
		case 1: /* interior, misaligned */
			if (!nol)
				continue;
			{
				struct oobj *x = &ol[below(nol)];
				size_t us = cairn_objects_usable_size(ob, x->p), off;
				if (us < 32 || (mode == 2 && us <= CAIRN_OBJ_SMALL_MAX))
					continue;
				off = below(2) ? 1 + below(15) : 16 * (1 + below(us / 16 - 1));
				/* a buddy block of 2 MiB or more has only its first
				 * page in the pagemap: past it, a pointer is foreign */
				int want = mode == 0 && us >= 2 * MiB && off >= FRAME ? CAIRN_ERANGE
										     : CAIRN_EALIGN;
				snprintf(what, sizeof(what), "objects_free(interior +%zu of %zu)", off, us);
				EXPECT(what, cairn_objects_free(ob, x->p + off), want);
			}
			break;
		case 2: /* double free */
			if (!nol)
				continue;
			{
				size_t i = below(nol);
				unsigned char *p = ol[i].p;
				size_t size = ol[i].size;
				if (mode == 2 && size <= CAIRN_OBJ_SMALL_MAX)
					continue;
				EXPECT("objects_free", cairn_objects_free(ob, p), 0);
				ol[i] = ol[--nol];
				ob_digest(&d);
				err = cairn_objects_free(ob, p);
				snprintf(what, sizeof(what), "objects_free twice (size %zu): %s", size,
					 cairn_strerror(err));
				/* EFREE while its slab (or block) is the instance's; ERANGE
				 * once the memory went back */
				SAME(what, err == CAIRN_EFREE || err == CAIRN_ERANGE);
				q = cairn_heap_realloc_err(h0, p, 1 + below(100), &err);
				SAME(what, q == NULL && (err == CAIRN_EFREE || err == CAIRN_ERANGE));
			}
			break;
		case 3: { /* impossible requests */
			static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 15, SIZE_MAX / 2 + 1,
							((size_t)FRAME << CAIRN_MAX_ORDER) + 1 };
			/* (with an arena, a large object may pass 1 GiB: that one is
			 * exhaustion, which gives cached memory back first) */
			size_t size = sizes[below(mode ? 3 : 4)];
			snprintf(what, sizeof(what), "objects_alloc(%#zx)", size);
			SAME(what, cairn_objects_alloc(ob, size) == NULL);
			SAME(what, cairn_heap_alloc(h0, size) == NULL);
			SAME(what, cairn_objects_alloc_aligned(ob, size, 64) == NULL);
			SAME(what, cairn_objects_realloc(ob, NULL, size) == NULL);
			break;
		}
		case 4: { /* bad alignments */
			size_t al2 = below(3) == 0 ? 0 : (size_t)(3 + 2 * below(1000));
			if (below(4) == 0)
				al2 = ((size_t)1 << 40) + 16;
			snprintf(what, sizeof(what), "objects_alloc_aligned(align %#zx)", al2);
			SAME(what, cairn_objects_alloc_aligned(ob, orand_size(), al2) == NULL);
			SAME(what, cairn_heap_alloc_aligned(h0, orand_size(), al2) == NULL);
			break;
		}
		case 5: { /* calloc overflow */
			size_t n = below(2) ? SIZE_MAX / 2 + 1 + below(100) : 2 + below(100);
			size_t sz = SIZE_MAX / n + 1 + below(100);
			snprintf(what, sizeof(what), "objects_calloc(%#zx, %#zx)", n, sz);
			SAME(what, cairn_objects_calloc(ob, n, sz) == NULL);
			SAME(what, cairn_heap_calloc(h0, sz, n) == NULL);
			break;
		}
		case 6: /* realloc to an impossible size, or of a foreign pointer */
			if (nol && below(3) == 0) {
				/* not the start of an object: refused, as foreign */
				struct oobj *x = &ol[below(nol)];
				size_t us = cairn_objects_usable_size(ob, x->p);
				size_t off = below(2) ? 1 + below(15) : 16 * (1 + below(us / 16 - 1));
				if (us < 32 || (mode == 2 && us <= CAIRN_OBJ_SMALL_MAX) || off >= 2 * MiB)
					continue;
				err = 99;
				q = cairn_heap_realloc_err(h0, x->p + off, 1 + below(100000), &err);
				snprintf(what, sizeof(what), "heap_realloc_err(interior +%zu of %zu): %s", off,
					 us, cairn_strerror(err));
				SAME(what, q == NULL && err == CAIRN_ERANGE);
				err = 99;
				/* (size 0 too: p is judged before anything is freed) */
				q = cairn_heap_realloc_err(h0, x->p + off, 0, &err);
				snprintf(what, sizeof(what), "heap_realloc_err(interior +%zu, 0): %s", off,
					 cairn_strerror(err));
				SAME(what, q == NULL && err == CAIRN_ERANGE);
			} else if (nol && below(2)) {
				struct oobj *x = &ol[below(nol)];
				snprintf(what, sizeof(what), "objects_realloc(live, SIZE_MAX)");
				SAME(what, cairn_objects_realloc(ob, x->p, SIZE_MAX - below(16)) == NULL);
				err = 99;
				SAME(what, cairn_heap_realloc_err(h0, x->p, SIZE_MAX, &err) == NULL &&
						   err == CAIRN_ENOMEM);
			} else {
				snprintf(what, sizeof(what), "objects_realloc(foreign)");
				err = 99;
				SAME(what, cairn_heap_realloc_err(h0, hostmem, 32, &err) == NULL &&
						   err == CAIRN_ERANGE);
				SAME(what, cairn_objects_realloc(ob, foreign + 64, 32) == NULL);
			}
			break;
		default: { /* heaps out of range */
			unsigned cpu = NCPUS + (unsigned)below(4);
			snprintf(what, sizeof(what), "objects_heap(%u)", cpu);
			SAME(what, cairn_objects_heap(ob, cpu) == NULL);
			struct cairn_objects_stats hs, zero;
			memset(&hs, 0x5a, sizeof(hs));
			memset(&zero, 0, sizeof(zero));
			cairn_objects_heap_stats(ob, cpu, &hs);
			SAME(what, memcmp(&hs, &zero, sizeof(hs)) == 0);
			break;
		}
		}
		ob_same(what, &d);
	}
	/* exhaustion: allocations fail with NULL (after the heap gave back
	 * what it keeps), the live objects intact, and work again after */
	fr2_drain();
	for (int k = 0; k < 8; k++) {
		static const size_t big[] = { 256 * KiB, 4 * MiB, 64 * MiB };
		unsigned char *p = cairn_objects_alloc(ob, big[k % 3]);
		if (p) /* what the heap or the arena had cached */
			ob_keep(p, big[k % 3]);
	}
	{
		struct odigest d;
		ob_digest(&d);
		ob_same("objects exhausted", &d);
	}
	fr2_undrain();
	cairn_host_reports_quiet(0);
	while (nol) {
		nol--;
		CHECK_EQ(cairn_objects_free(ob, ol[nol].p), 0);
	}
	CHECK_EQ(cairn_objects_validate(ob), 0);
	for (size_t i = 0; i < nother; i++)
		CHECK_EQ(cairn_objects_free(ob2, other[i]), 0);
	CHECK_EQ(cairn_objects_validate(ob2), 0);
	cairn_objects_destroy(ob2);
	cairn_objects_destroy(ob);
	if (mode) {
		CHECK_EQ(cairn_arena_validate(&la), 0);
		cairn_arena_destroy(&la);
	}
	CHECK_EQ(cairn_frames_free(fr2, foreign_frame, 0), 0);
	CHECK_EQ(frames_free_total(fr2), before);
	free(hostmem);
}

/* ======================================================================
 * concurrent: bad calls on a thread's own blocks while the others work
 * ====================================================================== */

/* Each thread plants only what its own state decides (a wrong order, an
 * interior or misaligned address of its own live block, an address
 * outside everything, a bad order), never a double free: a block freed
 * may be another thread's by then. After each refused call its own block
 * is still allocated as it was. */

static struct cairn_arena car;
static struct cairn_objects *cob;
static _Atomic unsigned conc_failures;

struct conc_arg {
	unsigned seed;
};

#define CFAIL(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			if (atomic_fetch_add(&conc_failures, 1) < 20)         \
				fprintf(stderr, __VA_ARGS__);                 \
		}                                                             \
	} while (0)

static void *conc_worker(void *argp)
{
	struct conc_arg *arg = argp;
	uint64_t st = arg->seed;
	REQUIRE(cairn_host_cpu_register() >= 0);
	struct blk mine[64];
	size_t n = 0;
	struct aalloc ra[64];
	size_t nr = 0;
	unsigned char *objs[64];
	size_t sizes[64], no = 0;
	uint64_t cookie = 1000 + arg->seed;

	for (unsigned r = 0; r < rounds * 4; r++) {
		/* good calls */
		if (n < 64 && splitmix64(&st) % 2) {
			unsigned o = (unsigned)(splitmix64(&st) % 6);
			cairn_phys_t p;
			if (cairn_frames_alloc(fr2, o, 0, &p) == 0)
				mine[n++] = (struct blk){ p, o };
		} else if (n) {
			size_t i = splitmix64(&st) % n;
			CFAIL(cairn_frames_free(fr2, mine[i].p, mine[i].order) == 0, "conc: frames free\n");
			mine[i] = mine[--n];
		}
		if (nr < 64 && splitmix64(&st) % 2) {
			uint64_t size = AQ * (1 + splitmix64(&st) % 16), a;
			if (cairn_arena_alloc(&car, size, cookie, &a) == 0)
				ra[nr++] = (struct aalloc){ a, size, cookie };
		} else if (nr) {
			size_t i = splitmix64(&st) % nr;
			CFAIL(cairn_arena_free(&car, ra[i].addr, ra[i].size) == 0, "conc: arena free\n");
			ra[i] = ra[--nr];
		}
		if (no < 64 && splitmix64(&st) % 2) {
			size_t size = 16 + splitmix64(&st) % 2000;
			unsigned char *p = cairn_objects_alloc(cob, size);
			if (p) {
				memset(p, (int)(size & 0xff), size);
				objs[no] = p;
				sizes[no++] = size;
			}
		} else if (no) {
			size_t i = splitmix64(&st) % no;
			CFAIL(cairn_objects_free(cob, objs[i]) == 0, "conc: objects free\n");
			objs[i] = objs[no - 1];
			sizes[i] = sizes[--no];
		}

		/* a bad call on our own state */
		int err;
		if (n) {
			struct blk *b = &mine[splitmix64(&st) % n];
			unsigned o;
			switch (splitmix64(&st) % 4) {
			case 0:
				do
					o = (unsigned)(splitmix64(&st) % 12);
				while (o == b->order);
				err = cairn_frames_free(fr2, b->p, o);
				CFAIL(err == (b->p % (FRAME << o) ? CAIRN_EALIGN : CAIRN_EORDER),
				      "conc: frames_free(own, order %u of %u): %d\n", o, b->order, err);
				break;
			case 1:
				err = cairn_frames_free(fr2, b->p + 1 + splitmix64(&st) % (FRAME - 1), b->order);
				CFAIL(err == CAIRN_EALIGN, "conc: frames_free(misaligned): %d\n", err);
				break;
			case 2:
				if (b->order) {
					err = cairn_frames_free(fr2, b->p + FRAME * (1 + splitmix64(&st) % ((1u << b->order) - 1)), 0);
					CFAIL(err == CAIRN_EORDER, "conc: frames_free(interior): %d\n", err);
				}
				err = cairn_frames_alloc_at(fr2, b->p, b->order);
				CFAIL(err == CAIRN_EBUSY, "conc: frames_alloc_at(own): %d\n", err);
				err = cairn_frames_reserve(fr2, b->p, FRAME << b->order);
				CFAIL(err == CAIRN_EBUSY, "conc: frames_reserve(own): %d\n", err);
				break;
			default:
				err = cairn_frames_free(fr2, b->p, CAIRN_MAX_ORDER + 1 + (unsigned)(splitmix64(&st) % 8));
				CFAIL(err == CAIRN_EINVAL, "conc: frames_free(bad order): %d\n", err);
				err = cairn_frames_free(fr2, FR2_END + FRAME * (splitmix64(&st) % 64), 0);
				CFAIL(err == CAIRN_ERANGE, "conc: frames_free(outside): %d\n", err);
				break;
			}
			CFAIL(cairn_frames_is_allocated(fr2, b->p, b->order), "conc: own block lost\n");
		}
		if (nr) {
			struct aalloc *x = &ra[splitmix64(&st) % nr];
			uint64_t s2, c2, st2;
			switch (splitmix64(&st) % 5) {
			case 0:
				err = cairn_arena_free(&car, x->addr, x->size + AQ * (1 + splitmix64(&st) % 4));
				CFAIL(err == CAIRN_EORDER, "conc: arena_free(wrong size): %d\n", err);
				break;
			case 1:
				if (x->size > AQ) {
					err = cairn_arena_free(&car, x->addr + AQ, x->size - AQ);
					CFAIL(err == CAIRN_EFREE, "conc: arena_free(interior): %d\n", err);
				}
				break;
			case 2:
				err = cairn_arena_free_owned(&car, x->addr, cookie + 1, NULL);
				CFAIL(err == CAIRN_EBUSY, "conc: arena_free_owned(other owner): %d\n", err);
				break;
			case 3:
				err = cairn_arena_reserve(&car, x->addr, x->size, 1);
				CFAIL(err == CAIRN_EBUSY, "conc: arena_reserve(own): %d\n", err);
				break;
			default:
				err = cairn_arena_free(&car, x->addr + 1, x->size);
				CFAIL(err == CAIRN_EALIGN, "conc: arena_free(misaligned): %d\n", err);
				break;
			}
			err = cairn_arena_lookup(&car, x->addr, &st2, &s2, &c2);
			CFAIL(err == 0 && st2 == x->addr && s2 == x->size && c2 == cookie,
			      "conc: own range lost\n");
		}
		if (no) {
			size_t i = splitmix64(&st) % no;
			size_t us = cairn_objects_usable_size(cob, objs[i]);
			if (us >= 32) {
				err = cairn_objects_free(cob, objs[i] + 16 * (1 + splitmix64(&st) % (us / 16 - 1)));
				CFAIL(err == CAIRN_EALIGN, "conc: objects_free(interior): %d\n", err);
			}
			err = cairn_objects_free(cob, objs[i] + 1 + splitmix64(&st) % 15);
			CFAIL(err == CAIRN_EALIGN, "conc: objects_free(misaligned): %d\n", err);
			bool ok = cairn_objects_usable_size(cob, objs[i]) >= sizes[i];
			for (size_t k = 0; k < sizes[i] && ok; k += 61)
				ok = objs[i][k] == (unsigned char)(sizes[i] & 0xff);
			CFAIL(ok, "conc: own object changed\n");
		}
	}
	while (n--)
		CFAIL(cairn_frames_free(fr2, mine[n].p, mine[n].order) == 0, "conc: frames free\n");
	while (nr--)
		CFAIL(cairn_arena_free(&car, ra[nr].addr, ra[nr].size) == 0, "conc: arena free\n");
	while (no--)
		CFAIL(cairn_objects_free(cob, objs[no]) == 0, "conc: objects free\n");
	cairn_objects_flush(cob);
	cairn_objects_cpu_offline(cob);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_concurrent(void)
{
	uint64_t before = frames_free_total(fr2);
	struct cairn_arena_config acfg = { .quantum = AQ, .fanout = 8 };
	REQUIRE(cairn_arena_create(&car, fr2, 0x100000, 0x100000, &acfg) == 0);
	const struct cairn_objects_config ocfg = { .frames = fr2, .phys_base = FR2_BASE,
						   .phys_limit = FR2_END, .ncpus = NCPUS,
						   .harden = CAIRN_OBJ_HARDEN_ON };
	REQUIRE(cairn_objects_create(&cob, &ocfg) == 0);
	pthread_t th[NCPUS - 1];
	struct conc_arg args[NCPUS - 1];
	cairn_host_reports_quiet(1);
	for (unsigned i = 0; i < NCPUS - 1; i++) {
		args[i].seed = (unsigned)rnd() | 1;
		REQUIRE(pthread_create(&th[i], NULL, conc_worker, &args[i]) == 0);
	}
	for (unsigned i = 0; i < NCPUS - 1; i++)
		pthread_join(th[i], NULL);
	cairn_host_reports_quiet(0);
	CHECK_EQ(atomic_load(&conc_failures), 0);
	CHECK_EQ(cairn_arena_validate(&car), 0);
	CHECK_EQ(cairn_objects_validate(cob), 0);
	cairn_objects_destroy(cob);
	cairn_arena_destroy(&car);
	CHECK_EQ(cairn_frames_validate(fr2), 0);
	CHECK_EQ(frames_free_total(fr2), before);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	if (argc > 2)
		rounds = (unsigned)strtoul(argv[2], NULL, 0);
	rng_state = seed;
	REQUIRE(cairn_host_init(NCPUS, 0, 8 * GiB) == 0);
	test_frames();
	static const struct cairn_mem_range map2[] = { { 6 * GiB, 512 * MiB } };
	struct cairn_frames_config cfg2 = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&fr2, map2, 1, &cfg2) == 0);
	test_arena();
	test_mag();
	test_fcache();
	test_qcache();
	objects_create_misuse();
	for (unsigned mode = 0; mode < 3; mode++)
		test_objects(mode);
	test_concurrent();
	return check_done("api_misuse");
}
