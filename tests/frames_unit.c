/* SPDX-License-Identifier: MIT */
/* Unit tests of cairn frames: every operation and every error path. */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "../core/frames_layout.h"
#include "check.h"
#include "frames_total.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE

static struct cairn_frames *make(const struct cairn_mem_range *map, size_t n, bool carve)
{
	struct cairn_frames *f = NULL;
	struct cairn_frames_config cfg = { .ncpus = 4 };
	if (!carve) {
		cfg.meta_size = cairn_frames_meta_size(map, n, 4);
		cfg.meta = malloc(cfg.meta_size);
	}
	REQUIRE(cairn_frames_init(&f, map, n, &cfg) == 0);
	REQUIRE(cairn_frames_validate(f) == 0);
	return f;
}

/* A firmware-like map: low memory with the usual hole, a range across the
 * 16 MiB line, and memory above 4 GiB. */
static const struct cairn_mem_range pc_map[] = {
	{ 4 * GiB, 64 * MiB },
	{ 0x1000, 0x9e000 },
	{ 1 * MiB, 39 * MiB },
};

static void test_init_and_areas(void)
{
	struct cairn_frames *f = make(pc_map, 3, true);
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.regions, 4); /* the 1..40 MiB range split at 16 MiB */
	CHECK_EQ(st.total_frames[CAIRN_AREA_LOW16M], 0x9e + (15 * MiB) / FRAME);
	CHECK_EQ(st.total_frames[CAIRN_AREA_LOW4G], 24 * MiB / FRAME);
	CHECK_EQ(st.total_frames[CAIRN_AREA_HIGH], 64 * MiB / FRAME);
	/* metadata carved from the top of the high range, and accounted */
	uint64_t meta_frames = (cairn_frames_meta_size(pc_map, 3, 4) + FRAME - 1) / FRAME;
	CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], 64 * MiB / FRAME - meta_frames);
	CHECK_EQ(st.free_frames[CAIRN_AREA_LOW4G], 24 * MiB / FRAME);
	/* no caller's block: carved metadata is no allocation (test_carved_meta) */
	CHECK(!cairn_frames_is_allocated(f, 4 * GiB + 64 * MiB - FRAME, 0));
	/* at most ~2 bits per frame plus a small cost per 2 MiB */
	uint64_t frames = st.total_frames[0] + st.total_frames[1] + st.total_frames[2];
	CHECK(st.meta_bytes * 8 <= frames * 2 + (frames / 512 + 8) * 64 + 8 * 8192);
	printf("metadata: %llu bytes for %llu frames (%.3f bits/frame)\n",
	       (unsigned long long)st.meta_bytes, (unsigned long long)frames,
	       st.meta_bytes * 8.0 / frames);

	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK(p >= 4 * GiB); /* "any" prefers high memory */
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_LOW16M, &p), 0);
	CHECK(p < 16 * MiB && p >= 0x1000);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_alloc(f, 3, CAIRN_F_LOW4G, &p), 0);
	CHECK(p >= 16 * MiB && p < 4 * GiB);
	CHECK_EQ(cairn_frames_free(f, p, 3), 0);
	/* exhaust high: the next "any" request falls back to below 4 GiB */
	size_t n = st.free_frames[CAIRN_AREA_HIGH];
	cairn_phys_t *all = malloc(n * sizeof(*all));
	CHECK_EQ(cairn_frames_alloc_bulk(f, CAIRN_F_HIGH, all, n), n);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_HIGH | CAIRN_F_LOW4G, &p), 0);
	CHECK(p >= 16 * MiB && p < 4 * GiB);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_free_bulk(f, all, n, NULL), 0);
	free(all);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* bad maps */
	struct cairn_frames *g;
	struct cairn_mem_range overlap[] = { { 0, 8 * MiB }, { 4 * MiB, 8 * MiB } };
	CHECK_EQ(cairn_frames_init(&g, overlap, 2, NULL), CAIRN_EEXIST);
	/* Bytes listed twice are an overlap whole frames or not: inside the
	 * frame between two entries' whole frames, across a frame line the
	 * entries would otherwise merge at, and an entry of no whole frame
	 * inside another. Each also makes meta_size 0. Entries that only
	 * touch, in a frame or on a line, are no overlap. */
	static const struct cairn_mem_range bytes_twice[][2] = {
		{ { 8 * MiB, 0x1800 }, { 8 * MiB + 0x1400, 0x1c00 } },
		{ { 8 * MiB, 0x2100 }, { 8 * MiB + 0x2000, 0x3000 } },
		{ { 8 * MiB, 1 * MiB }, { 8 * MiB + 0x1100, 0x100 } },
		{ { 8 * MiB + 0x1100, 0x100 }, { 8 * MiB, 1 * MiB } },
		{ { 8 * MiB + 0x800, 0x10 }, { 8 * MiB + 0x80f, 0x10 } },
	};
	for (unsigned i = 0; i < sizeof bytes_twice / sizeof bytes_twice[0]; i++) {
		CHECK_EQ(cairn_frames_meta_size(bytes_twice[i], 2, 4), 0);
		CHECK_EQ(cairn_frames_init(&g, bytes_twice[i], 2, NULL), CAIRN_EEXIST);
	}
	static const struct cairn_mem_range touch[][2] = {
		{ { 8 * MiB, 0x1800 }, { 8 * MiB + 0x1800, 0x1800 + 1 * MiB } },
		{ { 8 * MiB + 0x800, 1 * MiB }, { 8 * MiB + 0x100800, 1 * MiB } },
	};
	for (unsigned i = 0; i < sizeof touch / sizeof touch[0]; i++) {
		struct cairn_frames_config c = { .ncpus = 4 };
		c.meta_size = cairn_frames_meta_size(touch[i], 2, 4);
		CHECK(c.meta_size != 0);
		c.meta = malloc(c.meta_size);
		CHECK_EQ(cairn_frames_init(&g, touch[i], 2, &c), 0);
		free(c.meta);
	}
	struct cairn_mem_range tiny[] = { { 0x10, 0x100 } };
	CHECK_EQ(cairn_frames_init(&g, tiny, 1, NULL), CAIRN_EINVAL);
	struct cairn_mem_range small[] = { { 0, FRAME } };
	CHECK_EQ(cairn_frames_init(&g, small, 1, NULL), CAIRN_ENOMEM); /* no room for metadata */
}

static void test_orders_and_alignment(void)
{
	const struct cairn_mem_range big[] = { { 8 * GiB, 1 * GiB + 64 * MiB } };
	struct cairn_frames *f = make(big, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t p;
	for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++) {
		CHECK_EQ(cairn_frames_alloc(f, k, 0, &p), 0);
		CHECK_EQ(p % (FRAME << k), 0);
		CHECK(cairn_frames_is_allocated(f, p, k));
		CHECK_EQ(frames_free_total(f), total - (1ull << k));
		CHECK_EQ(cairn_frames_validate(f), 0);
		CHECK_EQ(cairn_frames_free(f, p, k), 0);
		CHECK_EQ(frames_free_total(f), total);
	}
	/* a second 1 GiB block does not fit; the first does again after free */
	CHECK_EQ(cairn_frames_alloc(f, 18, 0, &p), 0);
	cairn_phys_t q;
	CHECK_EQ(cairn_frames_alloc(f, 18, 0, &q), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_free(f, p, 18), 0);
	/* alignment larger than size takes only the block itself */
	for (unsigned k = 0; k <= 10; k += 2) {
		for (unsigned a = k; a <= 16; a += 3) {
			CHECK_EQ(cairn_frames_alloc_aligned(f, k, a, 0, &p), 0);
			CHECK_EQ(p % (FRAME << a), 0);
			CHECK_EQ(frames_free_total(f), total - (1ull << k));
			CHECK(cairn_frames_is_allocated(f, p, k));
			CHECK_EQ(cairn_frames_validate(f), 0);
			CHECK_EQ(cairn_frames_free(f, p, k), 0);
		}
	}
	CHECK_EQ(cairn_frames_alloc_aligned(f, 3, 2, 0, &p), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_alloc(f, 19, 0, &p), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_alloc(f, 0, 1u << 20, &p), CAIRN_EINVAL);
	/* areas that have no memory at all */
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_LOW16M, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_validate(f), 0);
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.free_blocks[CAIRN_AREA_HIGH][18], 1);
	CHECK_EQ(st.free_blocks[CAIRN_AREA_HIGH][14], 1); /* the 64 MiB tail */
}

static void test_errors(void)
{
	const struct cairn_mem_range map[] = { { 16 * GiB, 8 * MiB }, { 16 * GiB + 12 * MiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 2, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t p, h;
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_frames_alloc(f, 3, 0, &p), 0);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &h), 0);
	CHECK_EQ(cairn_frames_free(f, p, 2), CAIRN_EORDER);   /* smaller */
	CHECK_EQ(cairn_frames_free(f, p, 4), p % (FRAME << 4) ? CAIRN_EALIGN : CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, p + FRAME, 0), CAIRN_EORDER); /* interior */
	CHECK_EQ(cairn_frames_free(f, p + 1, 0), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_free(f, p + FRAME, 3), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_free(f, 16 * GiB + 9 * MiB, 0), CAIRN_ERANGE); /* hole */
	CHECK_EQ(cairn_frames_free(f, 0, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_frames_free(f, p, 19), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_free(f, h, 0), CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, h, 10), h % (FRAME << 10) ? CAIRN_EALIGN : CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, h + 2 * MiB, 9), CAIRN_EFREE);
	CHECK_EQ(cairn_frames_free(f, 16 * GiB, 12), CAIRN_ERANGE); /* past the end */
	CHECK_EQ(frames_free_total(f), total - 8 - 512); /* nothing changed */
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, p, 3), 0);
	CHECK_EQ(cairn_frames_free(f, p, 3), CAIRN_EFREE);   /* double free */
	CHECK_EQ(cairn_frames_free(f, h, 9), 0);
	CHECK_EQ(cairn_frames_free(f, h, 9), CAIRN_EFREE);
	/* a 64-frame (multi-word) block */
	CHECK_EQ(cairn_frames_alloc(f, 6, 0, &p), 0);
	CHECK_EQ(cairn_frames_free(f, p, 5), CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, p + 32 * FRAME, 5), CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, p, 7), p % (FRAME << 7) ? CAIRN_EALIGN : CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, p, 6), 0);
	CHECK_EQ(cairn_frames_free(f, p, 6), CAIRN_EFREE);
	CHECK(cairn_host_reports() > 0);
	cairn_host_reports_quiet(0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* frames.h: a bad free (EALIGN, ERANGE, EFREE, EORDER) is also reported
 * through cairn_port_report, whichever free call meets it: each refused
 * call below must report once, and change nothing. */
static int free_one(struct cairn_frames *f, int how, cairn_phys_t phys, unsigned order)
{
	size_t done = 99;
	int err;
	switch (how) {
	case 0:
		return cairn_frames_free(f, phys, order);
	case 1:
		err = cairn_frames_free_bulk(f, &phys, 1, &done);
		break;
	default:
		err = cairn_frames_free_bulk_huge(f, &phys, 1, &done);
		break;
	}
	CHECK_EQ(done, err ? 0 : 1);
	return err;
}

static void test_bad_free_reports(void)
{
	const struct cairn_mem_range map[] = { { 16 * GiB, 8 * MiB }, { 16 * GiB + 12 * MiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 2, false);
	cairn_phys_t p, h, gone, gone9, q;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &h), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &gone), 0);
	CHECK_EQ(cairn_frames_free(f, gone, 0), 0);
	/* a free 2 MiB block, and an order-0 block at a 2 MiB boundary */
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &gone9), 0);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &q), 0);
	CHECK_EQ(cairn_frames_free(f, gone9, 9), 0);
	CHECK_EQ(cairn_frames_free(f, q, 9), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, q, 0), 0);
	uint64_t total = frames_free_total(f);
	static const char *const call[] = { "free", "free_bulk", "free_bulk_huge" };
	for (int how = 0; how < 3; how++) {
		unsigned o0 = how == 2 ? 9 : 0; /* the order the call frees */
		cairn_phys_t block = how == 2 ? h : p;
		const struct {
			cairn_phys_t phys;
			unsigned order;
			int err;
		} bad[] = {
			{ block + 1, o0, CAIRN_EALIGN },               /* not a frame */
			{ 16 * GiB + 8 * MiB, o0, CAIRN_ERANGE },      /* the hole */
			{ 0, o0, CAIRN_ERANGE },                       /* below every region */
			{ 16 * GiB + 16 * MiB, o0, CAIRN_ERANGE },     /* past the end */
			{ how == 2 ? gone9 : gone, o0, CAIRN_EFREE },  /* free already */
			{ how == 2 ? q : h, o0, CAIRN_EORDER },        /* another order */
		};
		for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			uint64_t before = cairn_host_reports();
			cairn_host_reports_quiet(1);
			int err = free_one(f, how, bad[i].phys, bad[i].order);
			cairn_host_reports_quiet(0);
			if (err != bad[i].err || cairn_host_reports() != before + 1)
				fprintf(stderr, "  %s of %#llx (order %u): %d, %llu reports\n", call[how],
					(unsigned long long)bad[i].phys, bad[i].order, err,
					(unsigned long long)(cairn_host_reports() - before));
			CHECK_EQ(err, bad[i].err);
			CHECK_EQ(cairn_host_reports(), before + 1);
		}
		/* order-aligned only in part: order 3 at a single frame's address */
		if (how == 0) {
			uint64_t before = cairn_host_reports();
			cairn_host_reports_quiet(1);
			CHECK_EQ(cairn_frames_free(f, p | FRAME, 3), CAIRN_EALIGN);
			cairn_host_reports_quiet(0);
			CHECK_EQ(cairn_host_reports(), before + 1);
		}
	}
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_free(f, q, 0), 0);
	CHECK_EQ(cairn_frames_free(f, h, 9), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* A refused call into carved metadata: CAIRN_EMETA, reported once. */
static int meta_call(struct cairn_frames *f, int how, cairn_phys_t phys, unsigned order)
{
	uint64_t before = cairn_host_reports();
	cairn_host_reports_quiet(1);
	int err = how < 3 ? free_one(f, how, phys, order)
			  : cairn_frames_unreserve(f, phys, FRAME << order);
	cairn_host_reports_quiet(0);
	if (err != CAIRN_EMETA || cairn_host_reports() != before + 1)
		fprintf(stderr, "  call %d of %#llx (order %u): %d, %llu reports\n", how,
			(unsigned long long)phys, order, err,
			(unsigned long long)(cairn_host_reports() - before));
	CHECK_EQ(cairn_host_reports(), before + 1);
	return err;
}

/* Metadata carved from the managed memory (the instance's at init, a
 * region's by add_region) belongs to no caller: every free of it (each
 * frame, any order whose block holds one, the bulk frees, unreserve) is
 * CAIRN_EMETA, reported, and changes nothing; no allocation hands it out
 * later; alloc_at and reserve find it in use; the other region, whose
 * metadata lies in the carve, still goes. */
static void test_carved_meta(void)
{
	const struct cairn_mem_range map[] = { { 20 * GiB, 8 * MiB }, { 21 * GiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 2, true);
	cairn_phys_t top = 21 * GiB + 4 * MiB;
	uint64_t mf = (cairn_frames_meta_size(map, 2, 4) + FRAME - 1) / FRAME;
	cairn_phys_t carve = top - mf * FRAME;
	REQUIRE(mf >= 2 && mf < 512);
	CHECK((uintptr_t)f == (uintptr_t)cairn_port_phys_to_virt(carve));
	struct cairn_frames_stats st0, st;
	cairn_frames_stats(f, &st0);
	CHECK_EQ(st0.total_frames[CAIRN_AREA_HIGH], (8 + 4) * MiB / FRAME);
	CHECK_EQ(st0.free_frames[CAIRN_AREA_HIGH], (8 + 4) * MiB / FRAME - mf);
	/* an allocated frame just below the carve: its frees are unharmed */
	CHECK_EQ(cairn_frames_alloc_at(f, carve - FRAME, 0), 0);
	for (uint64_t i = 0; i < mf; i++) {
		cairn_phys_t m = carve + i * FRAME;
		CHECK(!cairn_frames_is_allocated(f, m, 0));
		for (int how = 0; how < 4; how++) /* free, free_bulk, unreserve */
			if (how != 2)
				CHECK_EQ(meta_call(f, how, m, 0), CAIRN_EMETA);
		CHECK_EQ(cairn_frames_alloc_at(f, m, 0), CAIRN_EBUSY);
		CHECK_EQ(cairn_frames_reserve(f, m, FRAME), CAIRN_EBUSY);
	}
	/* blocks of larger orders that hold carved frames, the 2 MiB block
	 * of the carve's chunk, unreserve of a range that ends in the carve */
	for (unsigned k = 1; k <= 8; k++)
		CHECK_EQ(meta_call(f, 0, carve & ~((FRAME << k) - 1), k), CAIRN_EMETA);
	CHECK_EQ(meta_call(f, 0, top - 2 * MiB, 9), CAIRN_EMETA);
	CHECK_EQ(meta_call(f, 2, top - 2 * MiB, 9), CAIRN_EMETA);
	CHECK_EQ(meta_call(f, 3, carve - FRAME, 1), CAIRN_EMETA);
	CHECK(cairn_frames_is_allocated(f, carve - FRAME, 0));
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, carve - FRAME, 0), 0);
	cairn_frames_stats(f, &st);
	CHECK(memcmp(&st, &st0, sizeof(st)) == 0);
	/* every free frame once, no carved one */
	uint64_t n = st0.free_frames[CAIRN_AREA_HIGH], got = 0;
	cairn_phys_t *all = malloc((n + 1) * sizeof(*all));
	REQUIRE(all);
	for (size_t k; (k = cairn_frames_alloc_bulk(f, 0, all + got, n + 1 - got)) > 0;)
		got += k;
	CHECK_EQ(got, n);
	for (uint64_t i = 0; i < got; i++)
		CHECK(all[i] < carve || all[i] >= top);
	CHECK_EQ(cairn_frames_free_bulk(f, all, got, NULL), 0);
	free(all);
	cairn_frames_stats(f, &st);
	CHECK(memcmp(&st, &st0, sizeof(st)) == 0);
	/* the carved range is still the region's: no region over it */
	size_t ms = cairn_frames_region_meta_size(top - FRAME, FRAME);
	void *meta = malloc(ms);
	CHECK_EQ(cairn_frames_add_region(f, top - FRAME, FRAME, meta, ms), CAIRN_EEXIST);
	free(meta);
	/* the region holding the carve stays; the other goes */
	CHECK_EQ(cairn_frames_remove_region(f, 21 * GiB), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_remove_region(f, 20 * GiB), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* a region's own carve, of one frame */
	cairn_phys_t r = 22 * GiB;
	CHECK_EQ(cairn_frames_add_region(f, r, 2 * MiB, NULL, 0), 0);
	uint64_t total = frames_free_total(f);
	CHECK_EQ(meta_call(f, 0, r + 2 * MiB - FRAME, 0), CAIRN_EMETA);
	CHECK_EQ(meta_call(f, 1, r + 2 * MiB - FRAME, 0), CAIRN_EMETA);
	CHECK_EQ(meta_call(f, 3, r + 2 * MiB - FRAME, 0), CAIRN_EMETA);
	CHECK_EQ(meta_call(f, 0, r, 9), CAIRN_EMETA);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_remove_region(f, r), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_frames_dump(f);
}

/* cairn_frames_could_hold: whether some region of the areas holds an
 * aligned block of the order, free or not. */
static void test_could_hold(void)
{
	const struct cairn_mem_range map[] = { { 16 * GiB, 8 * MiB }, { 16 * GiB + 12 * MiB, 6 * MiB } };
	struct cairn_frames *f = make(map, 2, false);
	cairn_phys_t p;
	CHECK(cairn_frames_could_hold(f, 0, 0));
	CHECK(cairn_frames_could_hold(f, 11, 0));          /* [16 GiB, +8 MiB) itself */
	CHECK(cairn_frames_could_hold(f, 11, CAIRN_F_HIGH));
	CHECK(!cairn_frames_could_hold(f, 12, 0));         /* 16 MiB: no region is that large */
	CHECK(!cairn_frames_could_hold(f, 18, 0));
	CHECK(!cairn_frames_could_hold(f, 19, 0));         /* no such order */
	CHECK(!cairn_frames_could_hold(f, 0, CAIRN_F_LOW16M)); /* no memory in the area */
	CHECK(!cairn_frames_could_hold(f, 0, CAIRN_F_LOW4G | CAIRN_F_LOW16M));
	CHECK(cairn_frames_could_hold(f, 0, CAIRN_F_LOW4G | CAIRN_F_HIGH));
	/* free or not: the whole first region allocated, it still holds one */
	CHECK_EQ(cairn_frames_alloc(f, 11, 0, &p), 0);
	CHECK_EQ(p, 16 * GiB);
	CHECK(cairn_frames_could_hold(f, 11, 0));
	CHECK_EQ(cairn_frames_free(f, p, 11), 0);
	/* the second region, [16 GiB + 12 MiB, +6 MiB), holds a 4 MiB
	 * block (at its start) and no aligned 8 MiB one */
	CHECK_EQ(cairn_frames_remove_region(f, 16 * GiB), 0);
	CHECK(cairn_frames_could_hold(f, 10, 0));
	CHECK(!cairn_frames_could_hold(f, 11, 0));
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* The short paths of free (order 0 and order 9) take only exact blocks of
 * their order inside a region; every other free falls through to the
 * general path and gets its error, with nothing changed. A free also makes
 * the CPU's next allocation of that order come from the block just freed. */
static void test_short_frees(void)
{
	/* both edge chunks partial: their out-of-region frames are marked
	 * allocated heads forever, and must not be freeable */
	const uint64_t base = 20 * GiB + 64 * KiB, size = 32 * MiB;
	const struct cairn_mem_range map[] = { { base, size } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t a, b, q, h, g, o1, o6, o10, s;

	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &a), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &b), 0);
	CHECK_EQ(cairn_frames_free(f, a, 0), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK_EQ(q, a);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &h), 0);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &g), 0);
	CHECK_EQ(cairn_frames_free(f, h, 9), 0);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &q), 0);
	CHECK_EQ(q, h);
	CHECK_EQ(cairn_frames_alloc(f, 1, 0, &o1), 0);
	CHECK_EQ(cairn_frames_alloc(f, 6, 0, &o6), 0);
	CHECK_EQ(cairn_frames_alloc(f, 10, 0, &o10), 0);
	CHECK_EQ(cairn_frames_alloc_aligned(f, 0, 9, 0, &s), 0); /* a small block heads a chunk */
	CHECK_EQ(cairn_frames_free(f, g, 9), 0);

	uint64_t before = frames_free_total(f), reports = cairn_host_reports();
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_frames_free(f, o1, 0), CAIRN_EORDER);          /* head of order 1 */
	CHECK_EQ(cairn_frames_free(f, o1 + FRAME, 0), CAIRN_EORDER);  /* its tail */
	CHECK_EQ(cairn_frames_free(f, o6, 0), CAIRN_EORDER);          /* head of order 6 */
	CHECK_EQ(cairn_frames_free(f, o6 + 31 * FRAME, 0), CAIRN_EORDER); /* last of a word */
	CHECK_EQ(cairn_frames_free(f, o6 + 32 * FRAME, 0), CAIRN_EORDER); /* first of the next */
	CHECK_EQ(cairn_frames_free(f, h, 0), CAIRN_EORDER);           /* a 2 MiB block */
	CHECK_EQ(cairn_frames_free(f, o10 + 2 * MiB + FRAME, 0), CAIRN_EORDER); /* its 2nd chunk */
	CHECK_EQ(cairn_frames_free(f, a + 1, 0), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_free(f, base - FRAME, 0), CAIRN_ERANGE);  /* edge chunk, outside */
	CHECK_EQ(cairn_frames_free(f, base + size, 0), CAIRN_ERANGE);   /* the other edge */
	CHECK_EQ(cairn_frames_free(f, g, 9), CAIRN_EFREE);            /* freed above */
	CHECK_EQ(cairn_frames_free(f, g, 0), CAIRN_EFREE);
	CHECK_EQ(cairn_frames_free(f, h + FRAME, 9), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_free(f, o10, 9), CAIRN_EORDER);         /* head of order 10 */
	CHECK_EQ(cairn_frames_free(f, o10 + 2 * MiB, 9), CAIRN_EORDER); /* its 2nd chunk */
	CHECK_EQ(cairn_frames_free(f, s, 9), CAIRN_EORDER);           /* small blocks */
	CHECK_EQ(cairn_frames_free(f, base & ~(2 * MiB - 1), 9), CAIRN_ERANGE);
	cairn_host_reports_quiet(0);
	CHECK(cairn_host_reports() > reports);
	CHECK_EQ(frames_free_total(f), before);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK(cairn_frames_is_allocated(f, o1, 1) && cairn_frames_is_allocated(f, o6, 6) &&
	      cairn_frames_is_allocated(f, h, 9) && cairn_frames_is_allocated(f, o10, 10) &&
	      cairn_frames_is_allocated(f, s, 0) && cairn_frames_is_allocated(f, a, 0));

	CHECK_EQ(cairn_frames_free(f, a, 0), 0);
	CHECK_EQ(cairn_frames_free(f, b, 0), 0);
	CHECK_EQ(cairn_frames_free(f, h, 9), 0);
	CHECK_EQ(cairn_frames_free(f, o1, 1), 0);
	CHECK_EQ(cairn_frames_free(f, o6, 6), 0);
	CHECK_EQ(cairn_frames_free(f, o10, 10), 0);
	CHECK_EQ(cairn_frames_free(f, s, 0), 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* The order-0 short path seeds its bit CAS with the value its CPU last gave
 * the hinted word (cpu_hint.word) instead of loading the word. The seed may
 * be stale or wrong in any way: the frame returned must still be one that
 * was free, and the counts exact (a wrong seed costs a failed CAS or a load
 * of the word, nothing else). */
static void test_stale_seed(void)
{
	const struct cairn_mem_range map[] = { { 20 * GiB, 16 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t held[40], q;
	unsigned n = 0;

	for (; n < 3; n++)
		CHECK_EQ(cairn_frames_alloc(f, 0, 0, &held[n]), 0);
	/* free held[1] (the seed now says it is free), then take it by
	 * another path, which leaves the seed alone */
	CHECK_EQ(cairn_frames_free(f, held[1], 0), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, held[1], 0), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK(q != held[i]);
	held[n++] = q;
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), total - n);

	/* A seed that says "full" is not trusted either: the allocation looks
	 * at the word itself before moving on. Otherwise the seed a CPU leaves
	 * in one chunk's last word would make it skip the first word of the
	 * next chunk: a fresh region must still hand out frames in address
	 * order across chunks. */
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_frames_free(f, held[i], 0), 0);
	n = 0;
	CHECK_EQ(frames_free_total(f), total);
	struct cairn_frames *g = make(map, 1, false);
	cairn_phys_t prev, next;
	CHECK_EQ(cairn_frames_alloc(g, 0, 0, &prev), 0);
	CHECK_EQ(prev, 20 * GiB);
	for (unsigned i = 1; i < 3 * 512; i++, prev = next) {
		CHECK_EQ(cairn_frames_alloc(g, 0, 0, &next), 0);
		if (next != prev + FRAME) {
			CHECK_EQ(next, prev + FRAME);
			break;
		}
	}
	CHECK_EQ(cairn_frames_validate(g), 0);
	for (; n < 3; n++)
		CHECK_EQ(cairn_frames_alloc(f, 0, 0, &held[n]), 0);

	/* seeds that lie outright: all free, all allocated, every other frame
	 * free, a head without its frame; each before a free (which rewrites
	 * it) and before an allocation (which trusts it) */
	static const uint64_t lies[] = { 0, ~0ull, ALLOC_HALF, 0x5555555555555555ull,
					 1ull << 40 };
	_Atomic uint64_t *seed = &f->cpu[cairn_port_cpu()].word[CAIRN_AREA_HIGH];
	for (unsigned l = 0; l < sizeof(lies) / sizeof(lies[0]); l++) {
		atomic_store(seed, lies[l]);
		CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
		for (unsigned i = 0; i < n; i++)
			CHECK(q != held[i]);
		held[n++] = q;
		CHECK_EQ(cairn_frames_free(f, held[0], 0), 0);
		atomic_store(seed, lies[l]);
		CHECK_EQ(cairn_frames_alloc(f, 0, 0, &held[0]), 0);
		for (unsigned i = 1; i < n; i++)
			CHECK(held[0] != held[i]);
		CHECK_EQ(cairn_frames_validate(f), 0);
		CHECK_EQ(frames_free_total(f), total - n);
	}

	/* The order-0 free seeds its CAS the same way when the CPU's small
	 * hint names the frame's word: the same lies before such frees. A
	 * free must clear its own frame and nothing else, and a double free
	 * must still be found, whatever the seed says. */
	CHECK(n >= 3 && n < WORD_FRAMES);
	for (unsigned i = 1; i < n; i++) /* all from one word of a fresh chunk */
		CHECK_EQ(held[i] >> 17, held[0] >> 17);
	for (unsigned l = 0; l < sizeof(lies) / sizeof(lies[0]); l++) {
		CHECK_EQ(cairn_frames_free(f, held[0], 0), 0); /* the hint names the word */
		atomic_store(seed, lies[l]);
		CHECK_EQ(cairn_frames_free(f, held[1], 0), 0);
		CHECK_EQ(cairn_frames_validate(f), 0);
		CHECK_EQ(frames_free_total(f), total - (n - 2));
		for (unsigned i = 2; i < n; i++)
			CHECK(cairn_frames_is_allocated(f, held[i], 0));
		CHECK(!cairn_frames_is_allocated(f, held[0], 0) &&
		      !cairn_frames_is_allocated(f, held[1], 0));
		uint64_t reports = cairn_host_reports();
		cairn_host_reports_quiet(1);
		atomic_store(seed, lies[l]);
		CHECK_EQ(cairn_frames_free(f, held[1], 0), CAIRN_EFREE);
		cairn_host_reports_quiet(0);
		CHECK(cairn_host_reports() > reports);
		CHECK_EQ(cairn_frames_alloc_at(f, held[0], 0), 0);
		CHECK_EQ(cairn_frames_alloc_at(f, held[1], 0), 0);
		CHECK_EQ(cairn_frames_validate(f), 0);
		CHECK_EQ(frames_free_total(f), total - n);
	}
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_frames_free(f, held[i], 0), 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

static void test_alloc_at_reserve(void)
{
	const struct cairn_mem_range map[] = { { 20 * GiB, 16 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t base = 20 * GiB;
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 64 * FRAME, 4), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 64 * FRAME, 4), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 64 * FRAME, 6), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 72 * FRAME, 0), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 8 * FRAME, 4), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_alloc_at(f, base - 16 * FRAME, 4), CAIRN_ERANGE);
	CHECK_EQ(cairn_frames_alloc_at(f, base, 9), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 2 * MiB, 10), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 4 * MiB, 10), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 6 * MiB, 9), CAIRN_EBUSY);
	CHECK_EQ(frames_free_total(f), total - 16 - 1024);
	CHECK_EQ(cairn_frames_free(f, base + 4 * MiB, 10), 0);
	CHECK_EQ(cairn_frames_free(f, base + 64 * FRAME, 4), 0);

	/* reserve across chunk and word boundaries, all or nothing */
	cairn_phys_t r0 = base + 2 * MiB - 37 * FRAME;
	uint64_t rsize = 700 * FRAME;
	CHECK_EQ(cairn_frames_reserve(f, r0, rsize), 0);
	CHECK_EQ(frames_free_total(f), total - 700);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_reserve(f, r0 + rsize - FRAME, 2 * FRAME), CAIRN_EBUSY);
	CHECK_EQ(frames_free_total(f), total - 700); /* the free frame after it was not kept */
	CHECK(!cairn_frames_is_allocated(f, r0 + rsize, 0));
	CHECK_EQ(cairn_frames_reserve(f, r0, 0), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_reserve(f, r0 + 1, FRAME), CAIRN_EALIGN);
	CHECK_EQ(cairn_frames_reserve(f, base + 15 * MiB, 2 * MiB), CAIRN_ERANGE);
	/* unreserve with a free frame inside: nothing changes */
	CHECK_EQ(cairn_frames_unreserve(f, r0, rsize + FRAME), CAIRN_EFREE);
	CHECK_EQ(frames_free_total(f), total - 700);
	CHECK_EQ(cairn_frames_unreserve(f, r0, rsize), 0);
	CHECK_EQ(frames_free_total(f), total);
	/* unreserve inside a real block is refused */
	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc(f, 2, 0, &p), 0);
	CHECK_EQ(cairn_frames_unreserve(f, p, FRAME), CAIRN_EORDER);
	CHECK_EQ(cairn_frames_free(f, p, 2), 0);
	/* reserving a whole chunk blocks huge allocations there */
	CHECK_EQ(cairn_frames_reserve(f, base, 16 * MiB), 0);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_unreserve(f, base, 16 * MiB), 0);
	cairn_host_reports_quiet(0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

static void test_bulk_huge(void)
{
	const struct cairn_mem_range map[] = { { 24 * GiB, 32 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	const uint64_t huge = FRAME << CAIRN_HUGE_ORDER;
	/* a small block in chunk 5 ends the first run; the general path
	 * walks past it and the next run goes on to the end */
	CHECK_EQ(cairn_frames_alloc_at(f, 24 * GiB + 5 * huge + FRAME, 0), 0);
	cairn_phys_t v[20];
	CHECK_EQ(cairn_frames_alloc_bulk_huge(f, 0, v, 20), 15);
	for (int i = 0; i < 15; i++) {
		CHECK(cairn_frames_is_allocated(f, v[i], CAIRN_HUGE_ORDER));
		CHECK(v[i] != 24 * GiB + 5 * huge);
		for (int j = 0; j < i; j++)
			CHECK(v[i] != v[j]);
	}
	CHECK_EQ(cairn_frames_alloc_bulk_huge(f, 0, v + 15, 1), 0);
	CHECK_EQ(cairn_frames_alloc_bulk_huge(f, 1u << 31, v + 15, 1), 0); /* bad flags */
	CHECK_EQ(cairn_frames_alloc_bulk_huge(f, CAIRN_F_LOW4G, v + 15, 1), 0); /* no such area */
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* bad blocks: the error of cairn_frames_free, the ones before freed */
	cairn_host_reports_quiet(1);
	cairn_phys_t bad[4] = { v[0], v[1] + FRAME, v[2], v[3] };
	size_t done = 99;
	CHECK_EQ(cairn_frames_free_bulk_huge(f, bad, 4, &done), CAIRN_EALIGN);
	CHECK_EQ(done, 1);
	bad[0] = v[1];
	bad[1] = v[0]; /* freed above */
	CHECK_EQ(cairn_frames_free_bulk_huge(f, bad, 2, &done), CAIRN_EFREE);
	CHECK_EQ(done, 1);
	bad[0] = 24 * GiB + 5 * huge; /* a small chunk whose first frame is free */
	CHECK_EQ(cairn_frames_free_bulk_huge(f, bad, 1, &done), CAIRN_EFREE);
	CHECK_EQ(done, 0);
	CHECK_EQ(done, 0);
	bad[0] = 8 * GiB;
	CHECK_EQ(cairn_frames_free_bulk_huge(f, bad, 1, &done), CAIRN_ERANGE);
	CHECK_EQ(done, 0);
	cairn_host_reports_quiet(0);
	CHECK_EQ(frames_free_total(f), total - 1 - 13 * (huge / FRAME));
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* zeroed */
	memset(cairn_port_phys_to_virt(v[2]), 0xa5, huge);
	CHECK_EQ(cairn_frames_free_bulk_huge(f, v + 2, 13, &done), 0);
	CHECK_EQ(done, 13);
	CHECK_EQ(frames_free_total(f), total - 1);
	cairn_phys_t z[16];
	size_t nz = cairn_frames_alloc_bulk_huge(f, CAIRN_F_ZERO, z, 16);
	CHECK_EQ(nz, 15);
	for (size_t i = 0; i < nz; i++) {
		const uint64_t *m = cairn_port_phys_to_virt(z[i]);
		CHECK(m[0] == 0 && m[huge / 16] == 0 && m[huge / 8 - 1] == 0);
	}
	CHECK_EQ(cairn_frames_free_bulk_huge(f, z, nz, NULL), 0);
	CHECK_EQ(cairn_frames_free(f, 24 * GiB + 5 * huge + FRAME, 0), 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

static void test_bulk_and_zero(void)
{
	const struct cairn_mem_range map[] = { { 24 * GiB, 8 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t v[1500];
	CHECK_EQ(cairn_frames_alloc_bulk(f, 0, v, 1500), 1500);
	CHECK_EQ(frames_free_total(f), total - 1500);
	for (int i = 0; i < 1500; i++)
		CHECK(cairn_frames_is_allocated(f, v[i], 0));
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* a duplicate in the list: the frames before it are freed */
	cairn_phys_t dup[4] = { v[0], v[1], v[0], v[2] };
	size_t done = 99;
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_frames_free_bulk(f, dup, 4, &done), CAIRN_EFREE);
	cairn_host_reports_quiet(0);
	CHECK_EQ(done, 2);
	CHECK_EQ(cairn_frames_free_bulk(f, v + 2, 1498, &done), 0);
	CHECK_EQ(done, 1498);
	CHECK_EQ(frames_free_total(f), total);
	/* exhaustion: bulk returns what there is */
	cairn_phys_t *all = malloc((total + 10) * sizeof(*all));
	CHECK_EQ(cairn_frames_alloc_bulk(f, 0, all, total + 10), total);
	CHECK_EQ(cairn_frames_alloc_bulk(f, 0, all, 1), 0);
	CHECK_EQ(cairn_frames_free_bulk(f, all, total, NULL), 0);
	free(all);
	/* zeroing through the identity map */
	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc(f, 2, 0, &p), 0);
	memset(cairn_port_phys_to_virt(p), 0xa5, 4 * FRAME);
	CHECK_EQ(cairn_frames_free(f, p, 2), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, p, 2), 0);
	CHECK_EQ(((unsigned char *)cairn_port_phys_to_virt(p))[100], 0xa5);
	CHECK_EQ(cairn_frames_free(f, p, 2), 0);
	cairn_phys_t q;
	do { /* until the dirty block comes back, zeroed */
		CHECK_EQ(cairn_frames_alloc(f, 2, CAIRN_F_ZERO, &q), 0);
		unsigned char *m = cairn_port_phys_to_virt(q);
		for (unsigned i = 0; i < 4 * FRAME; i++)
			if (m[i]) {
				CHECK(!"zeroed block has a non-zero byte");
				break;
			}
	} while (q != p && frames_free_total(f) > 16);
	CHECK_EQ(q, p);
}

/* A bulk free batches the frames that share a bitmap word, and a region
 * may begin and end inside a word whose other frames lie outside it (kept
 * as allocated frames nobody holds). A frame outside the region is an
 * error even in the word of one inside: the good ones before it are
 * freed, the outside one is not. And a bulk of nothing takes nothing. */
static void test_bulk_region_edges(void)
{
	struct cairn_frames *f = make(pc_map, 3, true);
	uint64_t total = frames_free_total(f);
	/* the region [0x1000, 0x9f000): frames 1..158 of words 0 and 4 */
	cairn_phys_t last = 0x9e000, first = 0x1000;
	CHECK_EQ(cairn_frames_alloc_at(f, last, 0), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, first, 0), 0);
	cairn_phys_t past[2] = { last, last + FRAME }, before[2] = { first, 0 };
	size_t done = 99;
	CHECK_EQ(cairn_frames_free_bulk(f, past, 2, &done), CAIRN_ERANGE);
	CHECK_EQ(done, 1);
	CHECK(!cairn_frames_is_allocated(f, last, 0));
	done = 99;
	CHECK_EQ(cairn_frames_free_bulk(f, before, 2, &done), CAIRN_ERANGE);
	CHECK_EQ(done, 1);
	CHECK(!cairn_frames_is_allocated(f, first, 0));
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* the outside frames are still nobody's to free */
	CHECK_EQ(cairn_frames_free(f, last + FRAME, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_frames_free(f, 0, 0), CAIRN_ERANGE);

	cairn_phys_t out[1] = { 12345 };
	CHECK_EQ(cairn_frames_alloc_bulk(f, 0, out, 0), 0);
	CHECK_EQ(cairn_frames_alloc_bulk_huge(f, 0, out, 0), 0);
	CHECK_EQ(out[0], 12345);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

static void test_regions_runtime(void)
{
	const struct cairn_mem_range map[] = { { 28 * GiB, 8 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t extra = 30 * GiB;
	size_t ms = cairn_frames_region_meta_size(extra, 4 * MiB);
	void *meta = malloc(ms);
	CHECK_EQ(cairn_frames_add_region(f, 28 * GiB + 4 * MiB, 4 * MiB, meta, ms), CAIRN_EEXIST);
	CHECK_EQ(cairn_frames_add_region(f, extra, 4 * MiB, meta, ms - 65), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_add_region(f, 4 * GiB - 2 * MiB, 4 * MiB, meta, ms), CAIRN_EINVAL);
	CHECK_EQ(cairn_frames_add_region(f, extra, 4 * MiB, meta, ms), 0);
	CHECK_EQ(frames_free_total(f), total + 1024);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* a hypervisor-style 2 MiB chunk with its metadata carved from itself */
	CHECK_EQ(cairn_frames_add_region(f, 31 * GiB, 2 * MiB, NULL, 0), 0);
	CHECK_EQ(frames_free_total(f), total + 1024 + 511);
	CHECK_EQ(cairn_frames_remove_region(f, 31 * GiB), CAIRN_EBUSY);
	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc_at(f, extra + 2 * MiB, 9), 0);
	CHECK_EQ(cairn_frames_remove_region(f, extra), CAIRN_EBUSY);
	CHECK_EQ(frames_free_total(f), total + 1024 + 511 - 512);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, extra + 2 * MiB, 9), 0);
	CHECK_EQ(cairn_frames_remove_region(f, extra), 0);
	CHECK_EQ(cairn_frames_remove_region(f, extra), CAIRN_ERANGE);
	CHECK_EQ(frames_free_total(f), total + 511);
	CHECK_EQ(cairn_frames_free(f, extra, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_frames_alloc_at(f, extra, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* The range comes back as a new slot after the removed one, which
	 * still spans it: every lookup must pass over the dead slot. */
	void *meta2 = malloc(ms);
	CHECK_EQ(cairn_frames_add_region(f, extra, 4 * MiB, meta2, ms), 0);
	CHECK_EQ(frames_free_total(f), total + 1024 + 511);
	CHECK(!cairn_frames_is_allocated(f, extra, 0));
	CHECK_EQ(cairn_frames_alloc_at(f, extra, 0), 0);
	CHECK(cairn_frames_is_allocated(f, extra, 0));
	CHECK_EQ(cairn_frames_free(f, extra, 0), 0);
	CHECK_EQ(cairn_frames_free(f, extra, 0), CAIRN_EFREE);
	CHECK_EQ(cairn_frames_alloc_at(f, extra + 2 * MiB, 9), 0);
	CHECK(cairn_frames_is_allocated(f, extra + 2 * MiB, 9));
	CHECK_EQ(cairn_frames_free(f, extra + 2 * MiB, 9), 0);
	CHECK(!cairn_frames_is_allocated(f, extra + 2 * MiB, 9));
	CHECK_EQ(cairn_frames_free(f, extra + 2 * MiB, 9), CAIRN_EFREE);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* The order-0 and huge frees above left this CPU's hints on the
	 * new slot; remove it under them. The next allocations must see the
	 * slot gone without reading its metadata, take the general path and
	 * come from the other regions. */
	struct cpu_hint *h = &f->cpu[cairn_port_cpu()];
	unsigned slot = hint_slot(atomic_load(&h->small[CAIRN_AREA_HIGH]));
	CHECK(slot < CAIRN_MAX_REGIONS && f->region[slot].first == extra >> CAIRN_FRAME_SHIFT);
	CHECK_EQ(hint_slot(atomic_load(&h->huge[CAIRN_AREA_HIGH])), slot);
	CHECK_EQ(cairn_frames_remove_region(f, extra), 0);
	CHECK_EQ(frames_free_total(f), total + 511);
	/* No CPU is inside the allocator: the metadata goes back, so under
	 * ASan any look through the stale hints into it is caught. */
	free(meta2);
	cairn_phys_t q;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK(p - extra >= 4 * MiB);
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &q), 0);
	CHECK(q - extra >= 4 * MiB);
	CHECK_EQ(frames_free_total(f), total + 511 - 513);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_free(f, q, 9), 0);
	CHECK_EQ(frames_free_total(f), total + 511);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_frames_dump(f);
}

/* Regions high in the physical space: a small hint's word number (frame
 * / 32) reaches 2^40 at 2^57 and 2^47 near 2^64, and must never spill into
 * the hint's slot field. The metadata is the caller's: the frames are never
 * touched. Orders 0 and 9 round and round so each takes its hinted path
 * after the first trip stored the hint. */
static void high_region_round(cairn_phys_t base, uint64_t size)
{
	/* the only region, so slot 0: a word number spilling into the slot
	 * field would still name an active region */
	const struct cairn_mem_range map[] = { { base, size } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	CHECK_EQ(total, size / FRAME);
	enum { N = 40 };
	cairn_phys_t small[N], huge[2];
	for (unsigned round = 0; round < 4; round++) {
		for (unsigned i = 0; i < N; i++) {
			CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &small[i]), 0);
			CHECK(small[i] - base < size);
			CHECK(cairn_frames_is_allocated(f, small[i], 0));
			CHECK_EQ(cairn_frames_validate(f), 0);
		}
		for (unsigned i = 0; i < 2; i++) {
			CHECK_EQ(cairn_frames_alloc(f, 9, CAIRN_F_HIGH, &huge[i]), 0);
			CHECK(huge[i] - base < size);
			CHECK(cairn_frames_is_allocated(f, huge[i], 9));
		}
		CHECK_EQ(frames_free_total(f), total - N - 1024);
		CHECK_EQ(cairn_frames_validate(f), 0);
		for (unsigned i = 0; i < N; i++)
			CHECK_EQ(cairn_frames_free(f, small[i], 0), 0);
		for (unsigned i = 0; i < 2; i++)
			CHECK_EQ(cairn_frames_free(f, huge[i], 9), 0);
		CHECK_EQ(frames_free_total(f), total);
		CHECK_EQ(cairn_frames_validate(f), 0);
	}
}

/* An add is judged on the bytes it is given against the bytes every active
 * region was given (cairn_frames_init's entries, merged and cut at the
 * area lines; an add's range; the carved metadata and the partial frames
 * at either end too), as init judges its map: a byte in both is EEXIST,
 * and nothing changes; ranges that only touch are no overlap. Judged in
 * whole frames, a range sharing only bytes of a partial frame went in. */
static void add_rejected(struct cairn_frames *f, cairn_phys_t base, uint64_t size)
{
	struct cairn_frames_stats st0, st;
	cairn_frames_stats(f, &st0);
	uint32_t n = atomic_load(&f->nregions);
	size_t ms = cairn_frames_region_meta_size(base, size);
	void *meta = malloc(ms);
	REQUIRE(ms && meta);
	int err = cairn_frames_add_region(f, base, size, meta, ms);
	CHECK_EQ(err, CAIRN_EEXIST);
	if (err == 0) { /* taken: out again, so that what follows still tells */
		cairn_phys_t first = (base + FRAME - 1) & ~(FRAME - 1);
		CHECK_EQ(cairn_frames_remove_region(f, first), 0);
		CHECK_EQ(cairn_frames_reclaim_region(f, first), 0);
	} else { /* carved from itself: the same verdict */
		CHECK_EQ(cairn_frames_add_region(f, base, size, NULL, 0), CAIRN_EEXIST);
	}
	cairn_frames_stats(f, &st);
	CHECK(memcmp(&st, &st0, sizeof(st)) == 0);
	CHECK_EQ(atomic_load(&f->nregions), n);
	CHECK_EQ(cairn_frames_validate(f), 0);
	free(meta);
}

/* The touching range goes in, and out again. */
static void add_touching(struct cairn_frames *f, cairn_phys_t base, uint64_t size)
{
	size_t ms = cairn_frames_region_meta_size(base, size);
	void *meta = malloc(ms);
	REQUIRE(ms && meta);
	CHECK_EQ(cairn_frames_add_region(f, base, size, meta, ms), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_phys_t first = (base + FRAME - 1) & ~(FRAME - 1);
	CHECK_EQ(cairn_frames_remove_region(f, first), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, first), 0);
	free(meta);
}

static void test_add_region_bytes(void)
{
	/* 20 GiB + 2 KiB .. 20 GiB + 8 MiB + 2 KiB from two entries that
	 * merge, the instance's metadata carved from its top; 8 MiB + 2 KiB
	 * .. 24 MiB + 2 KiB, cut at 16 MiB */
	const struct cairn_mem_range map[] = {
		{ 20 * GiB + 0x800, 4 * MiB - 0x800 },
		{ 20 * GiB + 4 * MiB, 4 * MiB + 0x800 },
		{ 8 * MiB + 0x800, 16 * MiB },
	};
	struct cairn_frames *f = make(map, 3, true);
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.regions, 3);

	/* above the carve, in the range's last partial frame */
	add_rejected(f, 20 * GiB + 8 * MiB + 0x400, 4 * MiB);
	add_rejected(f, 20 * GiB + 8 * MiB + 0x7ff, 4 * MiB);
	add_touching(f, 20 * GiB + 8 * MiB + 0x800, 4 * MiB);
	/* below the range, in its first partial frame */
	add_rejected(f, 20 * GiB - 4 * MiB, 4 * MiB + 0xc00);
	add_rejected(f, 20 * GiB - 4 * MiB, 4 * MiB + 0x801);
	add_touching(f, 20 * GiB - 4 * MiB, 4 * MiB + 0x800);
	/* both ends of the range cut at 16 MiB */
	add_rejected(f, 4 * MiB, 4 * MiB + 0x900);
	add_touching(f, 4 * MiB, 4 * MiB + 0x800);
	add_rejected(f, 24 * MiB + 0x400, 4 * MiB);
	add_touching(f, 24 * MiB + 0x800, 4 * MiB);

	/* a region added with the caller's metadata, and one carved from
	 * itself: their partial frames are theirs as well */
	const cairn_phys_t r1 = 24 * GiB + 0x100, r2 = 26 * GiB;
	size_t ms = cairn_frames_region_meta_size(r1, 4 * MiB);
	void *meta = malloc(ms);
	REQUIRE(meta);
	CHECK_EQ(cairn_frames_add_region(f, r1, 4 * MiB, meta, ms), 0);
	CHECK_EQ(cairn_frames_add_region(f, r2, 2 * MiB + 0x300, NULL, 0), 0);
	add_rejected(f, r1 + 4 * MiB - 0x100, 4 * MiB);
	add_rejected(f, r1 - 4 * MiB - 0x100, 4 * MiB + 0x200);
	add_touching(f, r1 + 4 * MiB, 4 * MiB);
	add_touching(f, r1 - 4 * MiB - 0x100, 4 * MiB + 0x100);
	add_rejected(f, r2 + 2 * MiB + 0x200, 2 * MiB);
	add_touching(f, r2 + 2 * MiB + 0x300, 2 * MiB);
	/* a removed region's bytes are free to add again; it is named by
	 * its first whole frame, not by the base it was given */
	CHECK_EQ(cairn_frames_remove_region(f, r1), CAIRN_ERANGE);
	CHECK_EQ(cairn_frames_remove_region(f, r1 + FRAME - 0x100), 0);
	add_touching(f, r1 + 4 * MiB - 0x100, 4 * MiB);
	CHECK_EQ(cairn_frames_reclaim_region(f, r1 + FRAME - 0x100), 0);
	free(meta);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* Regions added and removed again and again (a hypervisor handing chunks
 * to and from a guest): a removed region's slot is reused once the caller
 * reclaims it, after the grace period that also frees its metadata, so
 * an instance outlives any number of cycles. Each cycle puts another
 * range into the same slot. The hints, seed and park slot a CPU kept from
 * the slot's previous region are planted back after the reclaim, as a
 * CPU that loaded them before the reclaim cleared them would use them:
 * they must miss (the old metadata is freed: ASan catches a look into it)
 * and never reach a word of the new region through the old one's word
 * number. */
static void test_regions_reuse(void)
{
	const cairn_phys_t base = 20 * GiB;
	const struct cairn_mem_range map[] = { { base, 8 * MiB } };
	static const struct cairn_mem_range cycle[3] = {
		{ 32 * GiB, 4 * MiB },
		{ 33 * GiB + 2 * MiB, 2 * MiB },
		{ 34 * GiB + 6 * MiB, 6 * MiB },
	};
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	struct cpu_hint *h = &f->cpu[cairn_port_cpu()];
	const unsigned hi = CAIRN_AREA_HIGH;
	uint64_t old_small = 0, old_word = 0, old_huge = 0, old_owned = 0, old_park = 0;
	cairn_phys_t old_frame = 0, old_huge_block = 0;
	unsigned slot = ~0u;
	struct cairn_frames_stats st;
	for (unsigned i = 0; i < 3 * CAIRN_MAX_REGIONS; i++) {
		const struct cairn_mem_range *g = &cycle[i % 3];
		uint64_t frames = g->size / FRAME;
		size_t ms = cairn_frames_region_meta_size(g->base, g->size);
		void *meta = malloc(ms);
		REQUIRE(meta);
		int err = cairn_frames_add_region(f, g->base, g->size, meta, ms);
		CHECK_EQ(err, 0);
		if (err) {
			free(meta);
			break;
		}
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 2);
		CHECK_EQ(frames_free_total(f), total + frames);
		CHECK_EQ(cairn_frames_validate(f), 0);
		/* Every cycle reuses the one slot after the boot region's. */
		struct region *r = region_find(f, g->base / FRAME);
		REQUIRE(r);
		if (i)
			CHECK_EQ(r - f->region, slot);
		slot = (unsigned)(r - f->region);

		/* The previous region's hints and park slot, as a CPU that
		 * loaded them before the reclaim would use them: the next
		 * allocations must take the general path or another region,
		 * never a word of this region through the old word number. */
		if (i) {
			atomic_store(&h->small[hi], old_small);
			atomic_store(&h->word[hi], old_word);
			atomic_store(&h->huge[hi], old_huge);
			atomic_store(&h->owned[hi], old_owned);
			atomic_store(&h->park[hi], old_park);
			cairn_phys_t p, q;
			CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
			CHECK_EQ(cairn_frames_alloc(f, CAIRN_HUGE_ORDER, 0, &q), 0);
			CHECK(cairn_frames_is_allocated(f, p, 0));
			CHECK(cairn_frames_is_allocated(f, q, CAIRN_HUGE_ORDER));
			CHECK_EQ(frames_free_total(f), total + frames - 1 - CHUNK_FRAMES);
			CHECK_EQ(cairn_frames_validate(f), 0);
			/* (the bulk free never parks: the slot stays empty) */
			CHECK_EQ(cairn_frames_free_bulk(f, &p, 1, NULL), 0);
			CHECK_EQ(cairn_frames_free(f, q, CAIRN_HUGE_ORDER), 0);
			CHECK_EQ(atomic_load(&h->park[hi]), 0);
			CHECK_EQ(frames_free_total(f), total + frames);
			CHECK_EQ(cairn_frames_validate(f), 0);
			/* the removed region's blocks, unless this range has them */
			if (old_frame - g->base >= g->size) {
				CHECK_EQ(cairn_frames_free(f, old_frame, 0), CAIRN_ERANGE);
				CHECK(!cairn_frames_is_allocated(f, old_frame, 0));
			}
			if (old_huge_block - g->base >= g->size)
				CHECK_EQ(cairn_frames_free(f, old_huge_block, CAIRN_HUGE_ORDER),
					 CAIRN_ERANGE);
		}

		/* Frames of the new region are handed out and freed: a frame
		 * and a 2 MiB block taken where asked, freed (the CPU's hints
		 * then name them), and had again by the short paths. */
		cairn_phys_t fr = g->base + (i % 7 + 1) * 37 * FRAME;
		cairn_phys_t hb = g->base + g->size - 2 * MiB, p;
		CHECK_EQ(cairn_frames_alloc_at(f, hb, CAIRN_HUGE_ORDER), 0);
		CHECK_EQ(cairn_frames_free(f, hb, CAIRN_HUGE_ORDER), 0);
		CHECK_EQ(cairn_frames_free(f, hb, CAIRN_HUGE_ORDER), CAIRN_EFREE);
		CHECK_EQ(hint_slot(atomic_load(&h->huge[hi])), slot);
		CHECK_EQ(cairn_frames_alloc(f, CAIRN_HUGE_ORDER, 0, &p), 0);
		CHECK_EQ(p, hb);
		CHECK_EQ(cairn_frames_free(f, p, CAIRN_HUGE_ORDER), 0);
		CHECK_EQ(cairn_frames_alloc_at(f, fr, 0), 0);
		CHECK_EQ(cairn_frames_free(f, fr, 0), 0);
		CHECK_EQ(cairn_frames_free(f, fr, 0), CAIRN_EFREE);
		CHECK_EQ(hint_slot(atomic_load(&h->small[hi])), slot);
		CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
		CHECK_EQ(p, fr);
		CHECK_EQ(cairn_frames_free(f, p, 0), 0);
		/* an owned chunk in the region for the owned hint */
		CHECK_EQ(cairn_frames_alloc_at(f, fr, 0), 0);
		CHECK_EQ(cairn_frames_free_bulk(f, &fr, 1, NULL), 0);
		old_small = atomic_load(&h->small[hi]);
		old_word = atomic_load(&h->word[hi]);
		old_huge = atomic_load(&h->huge[hi]);
		old_owned = atomic_load(&h->owned[hi]);
		old_park = atomic_load(&h->park[hi]);
		CHECK_EQ(hint_slot(old_small), slot);
		old_frame = fr;
		old_huge_block = hb;
		CHECK_EQ(frames_free_total(f), total + frames);
		CHECK_EQ(cairn_frames_validate(f), 0);

		/* Remove it: its frames are nobody's to free any more. Its
		 * slot is not reused before the reclaim. */
		CHECK_EQ(cairn_frames_remove_region(f, g->base), 0);
		CHECK_EQ(cairn_frames_free(f, fr, 0), CAIRN_ERANGE);
		CHECK_EQ(cairn_frames_free(f, hb, CAIRN_HUGE_ORDER), CAIRN_ERANGE);
		CHECK(!cairn_frames_is_allocated(f, fr, 0));
		CHECK_EQ(cairn_frames_alloc_at(f, fr, 0), CAIRN_ERANGE);
		CHECK_EQ(frames_free_total(f), total);
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 1);
		CHECK_EQ(cairn_frames_validate(f), 0);
		CHECK_EQ(cairn_frames_reclaim_region(f, base), CAIRN_ERANGE); /* active */
		/* (the grace period: no other CPU is inside the allocator) */
		CHECK_EQ(cairn_frames_reclaim_region(f, g->base), 0);
		CHECK_EQ(cairn_frames_reclaim_region(f, g->base), CAIRN_ERANGE);
		free(meta);
		/* the reclaim cleared this CPU's hints into the slot */
		CHECK(hint_slot(atomic_load(&h->small[hi])) != slot);
		CHECK(hint_slot(atomic_load(&h->huge[hi])) != slot);
		CHECK(hint_slot(atomic_load(&h->owned[hi])) != slot);
	}
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.regions, 1);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* Without reclaims, removed regions keep their slots: the table
	 * fills, and one reclaim makes room for one more. The reclaim takes
	 * the oldest removal of its base first. */
	size_t ms = cairn_frames_region_meta_size(cycle[0].base, cycle[0].size);
	void *metas[CAIRN_MAX_REGIONS];
	unsigned n = 0;
	int err;
	for (;;) {
		metas[n] = malloc(ms);
		REQUIRE(metas[n]);
		err = cairn_frames_add_region(f, cycle[0].base, cycle[0].size, metas[n], ms);
		if (err)
			break;
		CHECK_EQ(cairn_frames_remove_region(f, cycle[0].base), 0);
		n++;
		REQUIRE(n < CAIRN_MAX_REGIONS);
	}
	CHECK_EQ(err, CAIRN_ENOSPC);
	CHECK_EQ(n, CAIRN_MAX_REGIONS - 1);
	CHECK_EQ(cairn_frames_reclaim_region(f, cycle[0].base), 0);
	CHECK_EQ(cairn_frames_add_region(f, cycle[0].base, cycle[0].size, metas[n], ms), 0);
	CHECK_EQ(frames_free_total(f), total + cycle[0].size / FRAME);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_remove_region(f, cycle[0].base), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_frames_reclaim_region(f, cycle[0].base), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, cycle[0].base), CAIRN_ERANGE);
	for (unsigned i = 0; i <= n; i++)
		free(metas[i]);
	CHECK_EQ(cairn_frames_add_region(f, cycle[1].base, cycle[1].size, NULL, 0), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* The first region of the map, in slot 0, removed and reclaimed: an
 * unused slot 0 must match no hint, not even a CPU's "no hint yet" (0),
 * whatever the caller then does with the metadata. Here the caller reuses
 * it so that it reads as free chunks: a CPU with no hints that took slot 0
 * for its hinted region would hand out frames of the removed range. */
static void test_slot0_reuse(void)
{
	const struct cairn_mem_range map[] = { { 8 * GiB, 4 * MiB }, { 9 * GiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 2, false);
	struct region *r0 = region_find(f, 8 * GiB / FRAME);
	REQUIRE(r0 == &f->region[0]);
	_Atomic uint64_t *chunk = r0->chunk, *bits = r0->bits;
	uint64_t nchunks = r0->nchunks;
	CHECK_EQ(cairn_frames_remove_region(f, 8 * GiB), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, 8 * GiB), 0);
	for (uint64_t c = 0; c < nchunks; c++) {
		atomic_store(&chunk[c], CHUNK_FRAMES);
		for (unsigned wi = 0; wi < CHUNK_WORDS; wi++)
			atomic_store(&bits[c * CHUNK_WORDS + wi], 0);
	}
	struct cpu_hint *h = &f->cpu[cairn_port_cpu()];
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		CHECK_EQ(atomic_load(&h->small[a]), 0);
		CHECK_EQ(atomic_load(&h->huge[a]), 0);
		CHECK_EQ(atomic_load(&h->owned[a]), 0);
		CHECK_EQ(atomic_load(&h->park[a]), 0);
	}
	cairn_phys_t p, q;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK(p - 9 * GiB < 4 * MiB);
	CHECK_EQ(cairn_frames_alloc(f, CAIRN_HUGE_ORDER, 0, &q), 0);
	CHECK(q - 9 * GiB < 4 * MiB);
	CHECK_EQ(frames_free_total(f), 1024 - 1 - 512);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_free(f, q, CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(frames_free_total(f), 1024);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

static void test_high_regions(void)
{
	high_region_round(1ull << 57, 8 * MiB);
	high_region_round(3ull << 58, 8 * MiB);
	/* the top of the 64-bit space, its end one chunk short of 2^64 */
	high_region_round(0ull - 10 * MiB, 8 * MiB);
}

/* An area whose last region goes away is no longer present: requests that
 * accept it skip it at once on the short paths instead of trying its
 * hints first every time (validate checks the bits against the table). */
static void test_area_gone(void)
{
	const struct cairn_mem_range map[] = { { 2 * GiB, 4 * MiB }, { 10 * GiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 2, false);
	CHECK_EQ(atomic_load(&f->areas_present), CAIRN_F_LOW4G | CAIRN_F_HIGH);
	size_t ms = cairn_frames_region_meta_size(3 * GiB, 2 * MiB);
	void *meta = malloc(ms);
	CHECK_EQ(cairn_frames_add_region(f, 3 * GiB, 2 * MiB, meta, ms), 0);
	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_LOW4G, &p), 0);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	/* one of two regions of the area gone: still present */
	CHECK_EQ(cairn_frames_remove_region(f, 2 * GiB), 0);
	CHECK_EQ(atomic_load(&f->areas_present), CAIRN_F_LOW4G | CAIRN_F_HIGH);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* a refused removal changes nothing */
	CHECK_EQ(cairn_frames_alloc_at(f, 3 * GiB, 0), 0);
	CHECK_EQ(cairn_frames_remove_region(f, 3 * GiB), CAIRN_EBUSY);
	CHECK_EQ(atomic_load(&f->areas_present), CAIRN_F_LOW4G | CAIRN_F_HIGH);
	CHECK_EQ(cairn_frames_free(f, 3 * GiB, 0), 0);
	/* the last one gone: the area is not present */
	CHECK_EQ(cairn_frames_remove_region(f, 3 * GiB), 0);
	CHECK_EQ(atomic_load(&f->areas_present), CAIRN_F_HIGH);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_LOW4G, &p), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_LOW4G | CAIRN_F_HIGH, &p), 0);
	CHECK(p - 10 * GiB < 4 * MiB);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	/* and present again with a new region, a reclaimed slot */
	CHECK_EQ(cairn_frames_reclaim_region(f, 3 * GiB), 0);
	CHECK_EQ(cairn_frames_add_region(f, 3 * GiB, 2 * MiB, meta, ms), 0);
	CHECK_EQ(atomic_load(&f->areas_present), CAIRN_F_LOW4G | CAIRN_F_HIGH);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_LOW4G, &p), 0);
	CHECK(p - 3 * GiB < 2 * MiB);
	CHECK_EQ(cairn_frames_free(f, p, 0), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_remove_region(f, 3 * GiB), 0);
	free(meta);
}

/* A range inside the last partial frame of the address space holds no
 * whole frame: it is dropped, and does not wrap round to frame 0. */
static void test_top_partial_frame(void)
{
	const cairn_phys_t top = 0ull - 100;
	const struct cairn_mem_range map[] = { { 36 * GiB, 4 * MiB }, { top, 50 } };
	CHECK_EQ(cairn_frames_region_meta_size(top, 50), 0);
	CHECK_EQ(cairn_frames_meta_size(map, 2, 4), cairn_frames_meta_size(map, 1, 4));
	struct cairn_frames *f = make(map, 2, false);
	CHECK_EQ(frames_free_total(f), (4 * MiB) >> CAIRN_FRAME_SHIFT);
	CHECK_EQ(cairn_frames_add_region(f, top, 50, NULL, 0), CAIRN_EINVAL);
	CHECK_EQ(frames_free_total(f), (4 * MiB) >> CAIRN_FRAME_SHIFT);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

static void test_two_instances(void)
{
	const struct cairn_mem_range a[] = { { 32 * GiB, 4 * MiB } };
	const struct cairn_mem_range b[] = { { 33 * GiB, 4 * MiB } };
	struct cairn_frames *fa = make(a, 1, true), *fb = make(b, 1, true);
	uint64_t ta = frames_free_total(fa), tb = frames_free_total(fb);
	cairn_phys_t p, q;
	CHECK_EQ(cairn_frames_alloc(fa, 0, 0, &p), 0);
	CHECK_EQ(cairn_frames_alloc(fb, 0, 0, &q), 0);
	CHECK(p >= 32 * GiB && p < 32 * GiB + 4 * MiB);
	CHECK(q >= 33 * GiB && q < 33 * GiB + 4 * MiB);
	CHECK_EQ(cairn_frames_free(fa, q, 0), CAIRN_ERANGE);
	CHECK_EQ(frames_free_total(fa), ta - 1);
	CHECK_EQ(frames_free_total(fb), tb - 1);
	CHECK_EQ(cairn_frames_free(fa, p, 0), 0);
	CHECK_EQ(cairn_frames_free(fb, q, 0), 0);
}

/* Parked frames (frames_layout.h): an order-0 free on a CPU whose park slot
 * is empty leaves the frame HEAD without ALLOCATED, uncounted in FREE and
 * named by the slot; that CPU's next order-0 allocation takes it back.
 * Every other path must see it as free but not take it by a search, and
 * unpark it when it needs it. */
static _Atomic uint64_t *park_slot(struct cairn_frames *f)
{
	return &f->cpu[cairn_port_cpu()].park[CAIRN_AREA_HIGH];
}

static uint64_t word_of(struct cairn_frames *f, cairn_phys_t p)
{
	uint64_t fr = p >> CAIRN_FRAME_SHIFT;
	return atomic_load(frame_word(region_find(f, fr), fr));
}

static uint64_t entry_of(struct cairn_frames *f, cairn_phys_t p)
{
	uint64_t fr = p >> CAIRN_FRAME_SHIFT;
	return atomic_load(frame_entry(region_find(f, fr), fr));
}

static bool is_parked(struct cairn_frames *f, cairn_phys_t p)
{
	return (word_parked(word_of(f, p)) >> ((p >> CAIRN_FRAME_SHIFT) % WORD_FRAMES)) & 1;
}

/* Leave this CPU's park slot empty and nothing of it parked: an
 * allocation takes the slot's frame (or clears a stale slot), and the
 * bulk free, which never parks, gives it back. */
static void settle(struct cairn_frames *f)
{
	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK_EQ(cairn_frames_free_bulk(f, &p, 1, NULL), 0);
	CHECK_EQ(atomic_load(park_slot(f)), 0);
}

/* Allocate every frame of f's only region, one by one. */
static size_t take_all(struct cairn_frames *f, cairn_phys_t *v, size_t max)
{
	size_t n = 0;
	while (n < max && cairn_frames_alloc(f, 0, 0, &v[n]) == 0)
		n++;
	return n;
}

static void test_parked(void)
{
	const cairn_phys_t base = 24 * GiB;
	const struct cairn_mem_range map[] = { { base, 4 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	cairn_phys_t a, b, q;

	/* free parks (no FREE add), the next allocation takes it back (no
	 * claim); a second free while the slot is full frees as before */
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &a), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &b), 0);
	uint64_t e = entry_of(f, a);
	CHECK_EQ(atomic_load(park_slot(f)), 0);
	CHECK_EQ(cairn_frames_free(f, a, 0), 0);
	CHECK_EQ(atomic_load(park_slot(f)), (a >> CAIRN_FRAME_SHIFT) + 1);
	CHECK(is_parked(f, a));
	CHECK_EQ(entry_of(f, a), e);
	CHECK(!cairn_frames_is_allocated(f, a, 0));
	CHECK_EQ(frames_free_total(f), total - 1); /* stats: parked is free */
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, b, 0), 0);
	CHECK_EQ(entry_of(f, a), e + 1);
	CHECK(!is_parked(f, b));
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK_EQ(q, a);
	CHECK_EQ(atomic_load(park_slot(f)), 0);
	CHECK_EQ(entry_of(f, a), e + 1);
	CHECK(cairn_frames_is_allocated(f, a, 0));
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* the general path's order-0 allocation takes it back too */
	CHECK_EQ(cairn_frames_free(f, a, 0), 0);
	CHECK(is_parked(f, a));
	CHECK_EQ(cairn_frames_alloc_aligned(f, 0, 0, CAIRN_F_ZERO, &q), 0);
	CHECK_EQ(q, a);
	CHECK_EQ(entry_of(f, a), e + 1);

	/* A parked frame in no slot (two threads as one CPU index both
	 * parked; simulated by emptying the slot) is no search's to take,
	 * not even the order-0 claim path's in the frame's own word: it
	 * stays parked until something unparks it. */
	CHECK_EQ(cairn_frames_free(f, a, 0), 0);
	CHECK(is_parked(f, a));
	atomic_store(park_slot(f), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK(q != a && (q >> 17) == (a >> 17)); /* the same word */
	CHECK(is_parked(f, a));
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_phys_t q2, q3;
	CHECK_EQ(cairn_frames_alloc_bulk(f, 0, &q2, 1), 1);
	CHECK(q2 != a && is_parked(f, a));
	CHECK_EQ(cairn_frames_alloc_aligned(f, 0, 1, 0, &q3), 0);
	CHECK(q3 != a && is_parked(f, a));
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, q3, 0), 0); /* slot empty: parks q3 */
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &b), 0);
	CHECK_EQ(b, q3);
	CHECK_EQ(cairn_frames_alloc_at(f, a, 0), 0);
	CHECK_EQ(frames_free_total(f), total - 4);
	CHECK_EQ(entry_of(f, a), e - 2);
	CHECK_EQ(cairn_frames_free_bulk(f, &q, 1, NULL), 0);
	CHECK_EQ(cairn_frames_free_bulk(f, &q2, 1, NULL), 0);
	CHECK_EQ(cairn_frames_free_bulk(f, &q3, 1, NULL), 0);
	CHECK_EQ(frames_free_total(f), total - 1);
	CHECK_EQ(entry_of(f, a), e + 1);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(atomic_load(park_slot(f)), 0);

	/* a double free of a parked frame: EFREE, nothing changed */
	CHECK_EQ(cairn_frames_free(f, a, 0), 0);
	uint64_t w = word_of(f, a), slot = atomic_load(park_slot(f));
	uint64_t reports = cairn_host_reports();
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_frames_free(f, a, 0), CAIRN_EFREE);
	CHECK_EQ(cairn_frames_free_bulk(f, &a, 1, NULL), CAIRN_EFREE);
	CHECK_EQ(cairn_frames_unreserve(f, a, FRAME), CAIRN_EFREE);
	cairn_host_reports_quiet(0);
	CHECK(cairn_host_reports() > reports);
	CHECK_EQ(word_of(f, a), w);
	CHECK_EQ(entry_of(f, a), e + 1);
	CHECK_EQ(atomic_load(park_slot(f)), slot);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* alloc_at and reserve over a parked frame unpark it and go on; the
	 * slot, now stale, costs the next allocation a failed CAS only */
	CHECK_EQ(cairn_frames_alloc_at(f, a, 0), 0);
	CHECK(cairn_frames_is_allocated(f, a, 0) && !is_parked(f, a));
	CHECK_EQ(frames_free_total(f), total - 1);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK(q != a);
	CHECK_EQ(atomic_load(park_slot(f)), 0);
	CHECK_EQ(cairn_frames_free(f, q, 0), 0);
	CHECK_EQ(cairn_frames_free(f, a, 0), 0); /* slot full: freed */
	CHECK(is_parked(f, q));
	CHECK_EQ(cairn_frames_alloc_at(f, q & ~(2 * FRAME - 1), 1), 0); /* its pair */
	CHECK(!is_parked(f, q));
	CHECK_EQ(cairn_frames_free(f, q & ~(2 * FRAME - 1), 1), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	settle(f);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK_EQ(cairn_frames_free(f, q, 0), 0);
	CHECK(is_parked(f, q));
	cairn_phys_t lo = q >= base + 3 * FRAME ? q - 3 * FRAME : base;
	CHECK_EQ(cairn_frames_reserve(f, lo, 40 * FRAME), 0);
	CHECK(!is_parked(f, q) && cairn_frames_is_allocated(f, q, 0));
	CHECK_EQ(frames_free_total(f), total - 40);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_unreserve(f, lo, 40 * FRAME), 0);
	CHECK_EQ(frames_free_total(f), total);
	settle(f);

	/* A 2 MiB block of a chunk one parked frame short: the search finds
	 * no chunk with 512 counted, so the area is unparked and searched
	 * again. */
	CHECK_EQ(cairn_frames_alloc_at(f, base + 2 * MiB, 9), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, base + 5 * FRAME, 0), 0);
	CHECK_EQ(cairn_frames_free(f, base + 5 * FRAME, 0), 0);
	CHECK(is_parked(f, base + 5 * FRAME));
	CHECK_EQ(cairn_frames_alloc(f, 9, 0, &q), 0);
	CHECK_EQ(q, base);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, q, 9), 0);
	CHECK_EQ(cairn_frames_free(f, base + 2 * MiB, 9), 0);
	/* and alloc_at of a chunk holding one */
	settle(f);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK_EQ(cairn_frames_free(f, q, 0), 0);
	CHECK(is_parked(f, q));
	CHECK_EQ(cairn_frames_alloc_at(f, q & ~(2 * MiB - 1), 9), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, q & ~(2 * MiB - 1), 9), 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* Exhaustion: every frame allocated but one, parked. It must be
	 * found whether or not a slot names it: by this CPU through its
	 * slot, by another CPU, and by this CPU when its slot lost it (two
	 * threads running as one CPU index both park; simulated by emptying
	 * the slot). */
	enum { N = 1024 };
	static cairn_phys_t all[N + 1];
	settle(f);
	size_t n = take_all(f, all, N + 1);
	CHECK_EQ(n, total);
	CHECK_EQ(frames_free_total(f), 0);
	for (unsigned round = 0; round < 4; round++) {
		cairn_phys_t x = all[(round * 397) % n];
		CHECK_EQ(cairn_frames_free(f, x, 0), 0);
		CHECK(is_parked(f, x));
		CHECK_EQ(frames_free_total(f), 1);
		CHECK_EQ(cairn_frames_validate(f), 0);
		if (round == 1) { /* another CPU: the slot is not its own */
			CHECK_EQ(cairn_host_cpu_bind(1), 0);
			CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
			cairn_host_cpu_unregister();
		} else if (round == 2) { /* the slot lost it */
			atomic_store(park_slot(f), 0);
			CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
		} else if (round == 3) { /* the same, in bulk */
			atomic_store(park_slot(f), 0);
			CHECK_EQ(cairn_frames_alloc_bulk(f, 0, &q, 1), 1);
		} else {
			CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
		}
		CHECK_EQ(q, x);
		CHECK_EQ(frames_free_total(f), 0);
		CHECK(cairn_frames_alloc(f, 0, 0, &q) == CAIRN_ENOMEM); /* (a stale slot) */
		CHECK_EQ(atomic_load(park_slot(f)), 0);
		CHECK_EQ(cairn_frames_validate(f), 0);
	}
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(cairn_frames_free(f, all[i], 0), 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* Region removal with a parked frame in the region: it is free, so
	 * the removal succeeds; the slot naming it is then stale and the
	 * metadata gone (ASan catches any look into it). */
	const cairn_phys_t extra = 26 * GiB;
	size_t ms = cairn_frames_region_meta_size(extra, 4 * MiB);
	void *meta = malloc(ms);
	CHECK_EQ(cairn_frames_add_region(f, extra, 4 * MiB, meta, ms), 0);
	settle(f);
	CHECK_EQ(cairn_frames_alloc_at(f, extra + 7 * FRAME, 0), 0);
	CHECK_EQ(cairn_frames_free(f, extra + 7 * FRAME, 0), 0);
	CHECK(is_parked(f, extra + 7 * FRAME));
	CHECK_EQ(frames_free_total(f), total + 1024);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_remove_region(f, extra), 0);
	free(meta);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0); /* the stale slot */
	CHECK(q - base < 4 * MiB);
	CHECK_EQ(cairn_frames_free(f, q, 0), 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* Threads that never registered all run as CPU 0 and race on its park
 * slots: frames parked by one are dropped from the slot by another, so
 * many end up parked in no slot. Counted free, they must still serve every
 * request: the area's bitmap is scanned when its slots come up short. */
struct shared_cpu_arg {
	struct cairn_frames *f;
	unsigned rounds;
	_Atomic unsigned bad_frees; /* (the checks' counters are not atomic) */
};

static void *shared_cpu_worker(void *arg)
{
	struct shared_cpu_arg *a = arg;
	cairn_phys_t p[4];
	for (unsigned it = 0; it < a->rounds; it++) {
		for (int i = 0; i < 4; i++)
			if (cairn_frames_alloc(a->f, 0, 0, &p[i]))
				p[i] = 0;
		for (int i = 0; i < 4; i++)
			if (p[i] && cairn_frames_free(a->f, p[i], 0))
				atomic_fetch_add(&a->bad_frees, 1);
	}
	return NULL;
}

static void test_parked_shared_cpu(void)
{
	const struct cairn_mem_range map[] = { { 4 * GiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	struct shared_cpu_arg a = { f, 20000, 0 };
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		REQUIRE(pthread_create(&t[i], NULL, shared_cpu_worker, &a) == 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&a.bad_frees), 0);
	CHECK_EQ(frames_free_total(f), 1024);
	CHECK_EQ(cairn_frames_validate(f), 0);
	/* the whole region as one 4 MiB block (chunks' walk), then every
	 * order-3 block after the threads again (the full walk) */
	cairn_phys_t blk[128], p;
	CHECK_EQ(cairn_frames_alloc(f, 10, 0, &p), 0);
	CHECK_EQ(cairn_frames_free(f, p, 10), 0);
	for (int i = 0; i < 4; i++)
		REQUIRE(pthread_create(&t[i], NULL, shared_cpu_worker, &a) == 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 128; i++)
		CHECK_EQ(cairn_frames_alloc(f, 3, 0, &blk[i]), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), CAIRN_ENOMEM);
	for (int i = 0; i < 128; i++)
		CHECK_EQ(cairn_frames_free(f, blk[i], 3), 0);
	CHECK_EQ(atomic_load(&a.bad_frees), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* A reserve across two regions while the second is removed and added
 * again: the reserve must come back with an error or the range, whatever
 * the removal does meanwhile, and never look up a piece in a region that
 * is no longer there. Each round is one instance: the removals have no
 * grace period (the reserve may be inside the allocator), so no slot is
 * reclaimed and an instance has room for 63 additions. */
struct reserve_remove_arg {
	struct cairn_frames *f;
	cairn_phys_t base;
	void *meta[CAIRN_MAX_REGIONS];
	unsigned adds;
	_Atomic int done;
};

static void *reserve_remove_worker(void *arg)
{
	struct reserve_remove_arg *a = arg;
	size_t ms = cairn_frames_region_meta_size(a->base, 2 * MiB);
	while (a->adds < CAIRN_MAX_REGIONS - 1) {
		void *meta = malloc(ms);
		REQUIRE(meta);
		a->meta[a->adds++] = meta;
		REQUIRE(cairn_frames_add_region(a->f, a->base, 2 * MiB, meta, ms) == 0);
		for (int i = 0; i < 4; i++) /* let some reserves find it */
			sched_yield();
		int err;
		while ((err = cairn_frames_remove_region(a->f, a->base)) == CAIRN_EBUSY)
			sched_yield(); /* a reserve holds it */
		REQUIRE(err == 0);
	}
	atomic_store(&a->done, 1);
	return NULL;
}

static void test_reserve_vs_remove(void)
{
	const cairn_phys_t base = 12 * GiB;
	const struct cairn_mem_range map[] = { { base, 16 * MiB } };
	unsigned ok = 0, busy = 0, range = 0;
	for (unsigned round = 0; round < 16; round++) {
		struct cairn_frames *f = make(map, 1, false);
		uint64_t total = frames_free_total(f);
		struct reserve_remove_arg a = { .f = f, .base = base + 16 * MiB };
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, reserve_remove_worker, &a) == 0);
		while (!atomic_load(&a.done)) {
			int err = cairn_frames_reserve(f, base, 18 * MiB);
			if (err == 0) {
				ok++;
				CHECK_EQ(cairn_frames_unreserve(f, base, 18 * MiB), 0);
				sched_yield(); /* room for the removal */
			} else {
				busy += err == CAIRN_EBUSY;
				range += err == CAIRN_ERANGE;
				CHECK(err == CAIRN_EBUSY || err == CAIRN_ERANGE);
			}
		}
		pthread_join(t, NULL);
		CHECK_EQ(frames_free_total(f), total);
		CHECK_EQ(cairn_frames_validate(f), 0);
		for (unsigned i = 0; i < a.adds; i++)
			free(a.meta[i]);
	}
	printf("reserve vs remove: %u reserved, %u busy, %u out of range\n", ok, busy, range);
}

/* Two threads unreserve the same reserved range at once (a double free
 * by a range): as with two frees of one block, exactly one succeeds, the
 * other says EFREE, and every frame is freed and counted once. */
struct unreserve_race_arg {
	struct cairn_frames *f;
	cairn_phys_t base;
	uint64_t size;
	_Atomic unsigned *go; /* both start together */
	int err;
};

static void *unreserve_race_worker(void *arg)
{
	struct unreserve_race_arg *a = arg;
	atomic_fetch_add(a->go, 1);
	while (atomic_load(a->go) < 2)
		;
	a->err = cairn_frames_unreserve(a->f, a->base, a->size);
	return NULL;
}

static void test_unreserve_race(void)
{
	const cairn_phys_t base = 12 * GiB;
	const struct cairn_mem_range map[] = { { base, 8 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	unsigned both_ok = 0;
	cairn_host_reports_quiet(1);
	for (unsigned round = 0; round < 500; round++) {
		/* across a chunk boundary: two pieces, 20 words */
		_Atomic unsigned go = 0;
		struct unreserve_race_arg a[2];
		for (int i = 0; i < 2; i++)
			a[i] = (struct unreserve_race_arg){ f, base + 2 * MiB - 300 * FRAME,
							    600 * FRAME, &go, 0 };
		REQUIRE(cairn_frames_reserve(f, a[0].base, a[0].size) == 0);
		pthread_t t[2];
		for (int i = 0; i < 2; i++)
			REQUIRE(pthread_create(&t[i], NULL, unreserve_race_worker, &a[i]) == 0);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		both_ok += a[0].err == 0 && a[1].err == 0;
		CHECK_EQ((a[0].err == 0) + (a[1].err == 0), 1);
		CHECK_EQ(a[0].err + a[1].err, CAIRN_EFREE);
		CHECK_EQ(frames_free_total(f), total);
		int v = cairn_frames_validate(f);
		CHECK_EQ(v, 0);
		if (v || frames_free_total(f) != total)
			break;
	}
	cairn_host_reports_quiet(0);
	printf("unreserve race: both returned 0 %u times\n", both_ok);
}

/* A double free by a buggy caller that lands while a failing reserve holds
 * the frame: the reserve's undo must count only the frames it still finds
 * taken, or FREE exceeds the free bits and allocations could loop. The
 * freeing thread's park slot is kept full so its frees really count. */
struct undo_free_arg {
	struct cairn_frames *f;
	cairn_phys_t victim, parked;
	_Atomic bool stop;
	unsigned freed;
};

static void *undo_free_worker(void *arg)
{
	struct undo_free_arg *a = arg;
	a->freed = cairn_frames_free(a->f, a->parked, 0) == 0; /* fills the slot */
	while (!atomic_load(&a->stop))
		a->freed += cairn_frames_free(a->f, a->victim, 0) == 0;
	return NULL;
}

static void test_reserve_undo_vs_free(void)
{
	const cairn_phys_t base = 12 * GiB;
	const struct cairn_mem_range map[] = { { base, 16 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	uint64_t total = frames_free_total(f);
	/* the blocker: the last frame of the reserved range, taken throughout */
	const uint64_t size = 14 * MiB;
	REQUIRE(cairn_frames_alloc_at(f, base + size - FRAME, 0) == 0);
	struct undo_free_arg a = { .f = f, .victim = base + 5 * FRAME,
				   .parked = base + 16 * MiB - FRAME };
	REQUIRE(cairn_frames_alloc_at(f, a.parked, 0) == 0);
	cairn_host_reports_quiet(1);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, undo_free_worker, &a) == 0);
	unsigned busy = 0, rounds;
	for (rounds = 0; rounds < 200000 && a.freed < 64; rounds++)
		busy += cairn_frames_reserve(f, base, size) == CAIRN_EBUSY;
	atomic_store(&a.stop, true);
	pthread_join(t, NULL);
	cairn_host_reports_quiet(0);
	CHECK_EQ(busy, rounds);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), total - 1);
	printf("reserve undo vs free: %u of %u frees landed in a reserve\n",
	       a.freed - 1, rounds);
}

static void test_validate_catches(void)
{
	const struct cairn_mem_range map[] = { { 34 * GiB, 4 * MiB } };
	struct cairn_frames *f = make(map, 1, false);
	struct region *r = region_find(f, (34 * GiB) >> CAIRN_FRAME_SHIFT);
	REQUIRE(r);
	cairn_host_reports_quiet(1);
	atomic_fetch_xor(&r->bits[3], 1ull << 5); /* a frame allocated behind our back */
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	atomic_fetch_xor(&r->bits[3], 1ull << 5);
	atomic_fetch_xor(&r->bits[3], 1ull << 37); /* a head on a free frame */
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	atomic_fetch_xor(&r->bits[3], 1ull << 37);
	atomic_fetch_sub(&r->chunk[1], 1);
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	atomic_fetch_add(&r->chunk[1], 1);
	/* The HELD mark anywhere but on an order-9 head: on a small chunk,
	 * and on the second chunk of an order-10 block (the region's two) */
	atomic_fetch_or(&r->chunk[1], CE_HELD);
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	atomic_fetch_and(&r->chunk[1], ~CE_HELD);
	cairn_phys_t b;
	REQUIRE(cairn_frames_alloc(f, 10, 0, &b) == 0);
	CHECK_EQ(b, 34 * GiB);
	CHECK_EQ(cairn_frames_validate(f), 0);
	atomic_fetch_or(&r->chunk[1], CE_HELD);
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	atomic_fetch_and(&r->chunk[1], ~CE_HELD);
	atomic_fetch_or(&r->chunk[0], CE_HELD); /* an order-10 head */
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	atomic_fetch_and(&r->chunk[0], ~CE_HELD);
	CHECK_EQ(cairn_frames_free(f, b, 10), 0);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* The bytes a region was given in its partial frames (lead, trail) are
 * under a frame each, and none lies below byte 0: a region at frame 0 has
 * no lead. A lead there would put the range's start at the top of the
 * address space, past its end, and no add would ever be judged to
 * overlap it. */
static void test_validate_given_range(void)
{
	const struct cairn_mem_range map[] = { { 0, 4 * MiB }, { 34 * GiB + 0x400, 4 * MiB } };
	struct cairn_frames *f = make(map, 2, false);
	struct region *r0 = region_find(f, 0);
	struct region *r1 = region_find(f, ((34 * GiB) >> CAIRN_FRAME_SHIFT) + 1);
	REQUIRE(r0 && r1);
	CHECK_EQ(r0->lead, 0);
	CHECK_EQ(r1->lead, 0xc00);
	cairn_host_reports_quiet(1);
	r0->lead = 1;
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	r0->lead = 0;
	r1->lead = CAIRN_FRAME_SIZE;
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	r1->lead = 0xc00;
	r1->trail = CAIRN_FRAME_SIZE;
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	r1->trail = 0x400;
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* Frame numbers are below 2^52: a physical address has 64 bits, so every
 * frame a range can hold is, and frame << CAIRN_FRAME_SHIFT, the byte
 * every path computes from one, must not wrap. init and add_region refuse
 * a range whose end is not below 2^64 and change nothing; the last whole
 * frame under 2^64 is a region like any; and validate names a region whose
 * bounds lie past 2^52 frames as corrupt, even when everything else about
 * it is consistent (bounds moved by 2^52 frames, whose bytes wrap to the
 * same addresses). */
static void test_frame_bound(void)
{
	const uint64_t limit = 1ull << (64 - CAIRN_FRAME_SHIFT);
	const cairn_phys_t top = 0ull - 2 * FRAME; /* frame limit - 2 */
	const struct cairn_mem_range map[] = { { 40 * GiB, 4 * MiB } };
	const struct cairn_mem_range wraps[][2] = {
		{ { 40 * GiB, 4 * MiB }, { 0ull - FRAME, FRAME } },      /* ends at 2^64 */
		{ { 40 * GiB, 4 * MiB }, { top, 2 * FRAME + 1 } },       /* past it */
		{ { 40 * GiB, 4 * MiB }, { 1ull << 63, 1ull << 63 } },
	};
	static unsigned char buf[1 << 16], before[1 << 16];
	for (unsigned i = 0; i < 3; i++) {
		struct cairn_frames *g = (struct cairn_frames *)buf;
		struct cairn_frames_config cfg = { .ncpus = 4, .meta = buf, .meta_size = sizeof(buf) };
		memset(buf, 0x5a, sizeof(buf));
		memcpy(before, buf, sizeof(buf));
		CHECK_EQ(cairn_frames_meta_size(wraps[i], 2, 4), 0);
		CHECK_EQ(cairn_frames_init(&g, wraps[i], 2, &cfg), CAIRN_EINVAL);
		CHECK(g == (struct cairn_frames *)buf);
		CHECK(memcmp(buf, before, sizeof(buf)) == 0);
		CHECK_EQ(cairn_frames_init(&g, wraps[i], 2, NULL), CAIRN_EINVAL);
		CHECK(g == (struct cairn_frames *)buf);
	}

	struct cairn_frames *f = make(map, 1, false);
	struct cairn_frames_stats st0, st;
	cairn_frames_stats(f, &st0);
	size_t msize = cairn_frames_region_meta_size(top, 2 * FRAME - 1);
	void *meta = malloc(msize);
	REQUIRE(meta && msize);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(cairn_frames_region_meta_size(wraps[i][1].base, wraps[i][1].size), 0);
		CHECK_EQ(cairn_frames_add_region(f, wraps[i][1].base, wraps[i][1].size, meta, msize),
			 CAIRN_EINVAL);
		CHECK_EQ(cairn_frames_add_region(f, wraps[i][1].base, wraps[i][1].size, NULL, 0),
			 CAIRN_EINVAL);
		cairn_frames_stats(f, &st);
		CHECK(memcmp(&st, &st0, sizeof(st)) == 0);
		CHECK_EQ(atomic_load(&f->nregions), 1);
	}
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* the highest whole frame there is: frame limit - 2, its range's
	 * last byte the address space's last but one */
	CHECK_EQ(cairn_frames_add_region(f, top, 2 * FRAME - 1, meta, msize), 0);
	struct region *r = region_find(f, limit - 2);
	REQUIRE(r);
	CHECK_EQ(r->meta_end, limit - 1);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK(cairn_frames_is_allocated(f, top, 0) == false);
	CHECK_EQ(cairn_frames_alloc_at(f, top, 0), 0);
	CHECK(cairn_frames_is_allocated(f, top, 0));
	CHECK_EQ(cairn_frames_free(f, top, 0), 0);
	CHECK_EQ(cairn_frames_remove_region(f, top), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, top), 0);
	free(meta);

	/* a region past the bound, consistent in all else: first, end,
	 * meta_end and chunk0 moved up by 2^52 frames (2^43 chunks) */
	r = region_find(f, (40 * GiB) >> CAIRN_FRAME_SHIFT);
	REQUIRE(r);
	const struct region keep = *r;
	cairn_host_reports_quiet(1);
	r->first += limit;
	r->end += limit;
	r->meta_end += limit;
	r->chunk0 += limit >> CHUNK_SHIFT;
	r->nframes = r->end - r->first;
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	/* only the end of the metadata carved (or the range given) past it */
	r->first = keep.first;
	r->end = keep.end;
	r->chunk0 = keep.chunk0;
	r->nframes = keep.nframes;
	r->meta_end = limit;
	CHECK_EQ(cairn_frames_validate(f), CAIRN_ECORRUPT);
	r->meta_end = limit - 1; /* (the range's end at 2^64 - 4096 + trail) */
	r->trail = 0;
	CHECK_EQ(cairn_frames_validate(f), 0);
	r->meta_end = keep.meta_end;
	r->trail = keep.trail;
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* A full area is skipped: the search that finds a region without a
 * counted frame marks it exhausted, and requests of any area pass it by
 * until a free gives it frames again. Every kind of free must clear the
 * mark, or a request of any area goes below 4 GiB while a block above is
 * free (the policy the model test holds cairn to). */
static struct cairn_frames *exh_f;
static struct region *exh_r;

/* Above 4 GiB is empty: the next request of any area falls below it and
 * leaves the region marked. */
static void exh_marked(void)
{
	cairn_phys_t p;
	CHECK_EQ(cairn_frames_alloc(exh_f, 0, 0, &p), 0);
	CHECK(p < 4 * GiB);
	CHECK_EQ(atomic_load(&exh_r->exhausted), 1u);
	CHECK_EQ(cairn_frames_free(exh_f, p, 0), 0);
	CHECK_EQ(atomic_load(&exh_r->exhausted), 1u); /* a free below leaves it */
}

/* b (order k, above 4 GiB) was just freed: it is what a request of any
 * area gets. */
static void exh_served(cairn_phys_t b, unsigned k)
{
	cairn_phys_t p;
	CHECK_EQ(atomic_load(&exh_r->exhausted), 0u);
	CHECK_EQ(cairn_frames_alloc(exh_f, k, 0, &p), 0);
	CHECK_EQ(p, b);
	exh_marked();
}

static void test_exhausted_region(void)
{
	static const struct cairn_mem_range map[] = {
		{ 4 * GiB, 64 * MiB },
		{ 1 * MiB, 39 * MiB },
	};
	struct cairn_frames *f = exh_f = make(map, 2, false);
	exh_r = region_find(f, 4 * GiB / FRAME);
	REQUIRE(exh_r);
	CHECK_EQ(atomic_load(&exh_r->exhausted), 0u);
	/* Above 4 GiB: a reserved range, an order-3 and an order-10 block,
	 * then 2 MiB blocks and frames until nothing is left. */
	const cairn_phys_t rsv = 4 * GiB + 40 * MiB + 5 * FRAME;
	CHECK_EQ(cairn_frames_reserve(f, rsv, 3 * FRAME), 0);
	cairn_phys_t b3, b10, p;
	CHECK_EQ(cairn_frames_alloc(f, 3, CAIRN_F_HIGH, &b3), 0);
	CHECK_EQ(cairn_frames_alloc(f, 10, CAIRN_F_HIGH, &b10), 0);
	enum { MAXN = 64 * MiB / FRAME };
	static cairn_phys_t huge[64], small[MAXN];
	size_t nh = 0, ns = 0;
	while (nh < 64 && cairn_frames_alloc(f, 9, CAIRN_F_HIGH, &huge[nh]) == 0)
		nh++;
	while (ns < MAXN && cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &small[ns]) == 0)
		ns++;
	CHECK(nh >= 4 && ns >= 8);
	exh_marked();
	cairn_frames_dump(f); /* the region above 4 GiB shown exhausted */

	/* order 0: the first free parks (the CPU's slot, not FREE), the
	 * second is counted */
	CHECK_EQ(cairn_frames_free(f, small[0], 0), 0);
	CHECK_EQ(cairn_frames_free(f, small[1], 0), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK_EQ(p, small[0]); /* the parked one, from the slot */
	exh_served(small[1], 0);
	/* the bulk free */
	CHECK_EQ(cairn_frames_free_bulk(f, &small[2], 1, NULL), 0);
	exh_served(small[2], 0);
	/* the general free (order 3) */
	CHECK_EQ(cairn_frames_free(f, b3, 3), 0);
	exh_served(b3, 3);
	/* 2 MiB: the short free, the bulk free */
	CHECK_EQ(cairn_frames_free(f, huge[0], 9), 0);
	exh_served(huge[0], 9);
	CHECK_EQ(cairn_frames_free_bulk_huge(f, &huge[1], 1, NULL), 0);
	exh_served(huge[1], 9);
	/* several chunks: the general huge free */
	CHECK_EQ(cairn_frames_free(f, b10, 10), 0);
	exh_served(b10, 10);
	/* an unreserve */
	CHECK_EQ(cairn_frames_unreserve(f, rsv, FRAME), 0);
	exh_served(rsv, 0);
	/* a frame parked in another CPU's slot: unparked by a request of any
	 * area (CPU 2's hints name nothing here, so it searches) */
	CHECK_EQ(cairn_frames_free(f, small[3], 0), 0); /* parks in CPU 0's slot */
	REQUIRE(cairn_host_cpu_bind(2) == 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK_EQ(p, small[3]);
	cairn_host_cpu_unregister(); /* CPU 0 again */
	exh_marked();

	/* A mark that missed a free (a free between a search's last look and
	 * its mark): requests of any area pass the region by, one that only
	 * the region can serve still finds the frame. On a CPU whose hints
	 * name no word here (this CPU's would take it at once, without a
	 * search). */
	CHECK_EQ(cairn_frames_free_bulk(f, &small[5], 1, NULL), 0);
	atomic_store(&exh_r->exhausted, 1);
	REQUIRE(cairn_host_cpu_bind(3) == 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &p), 0);
	CHECK(p < 4 * GiB);
	CHECK_EQ(cairn_frames_free_bulk(f, &p, 1, NULL), 0);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &p), 0);
	CHECK_EQ(p, small[5]);
	cairn_host_cpu_unregister(); /* CPU 0 again */
	exh_marked();
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* everything back: the region is whole again, and unmarked */
	CHECK_EQ(cairn_frames_free_bulk(f, small, ns, NULL), 0);
	CHECK_EQ(atomic_load(&exh_r->exhausted), 0u);
	CHECK_EQ(cairn_frames_free_bulk_huge(f, huge, nh, NULL), 0);
	CHECK_EQ(cairn_frames_unreserve(f, rsv + FRAME, 2 * FRAME), 0);
	CHECK_EQ(cairn_frames_free(f, rsv, 0), 0); /* served after its unreserve */
	CHECK_EQ(cairn_frames_free(f, b3, 3), 0);
	CHECK_EQ(cairn_frames_free(f, b10, 10), 0);
	CHECK_EQ(frames_free_total(f), 103 * MiB / FRAME);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

int main(void)
{
	REQUIRE(cairn_host_init(4, 0, 36 * GiB) == 0);
	REQUIRE(cairn_host_hole(0x9f000, 1 * MiB - 0x9f000) == 0);
	test_init_and_areas();
	test_orders_and_alignment();
	test_errors();
	test_bad_free_reports();
	test_carved_meta();
	test_could_hold();
	test_short_frees();
	test_stale_seed();
	test_alloc_at_reserve();
	test_bulk_and_zero();
	test_bulk_region_edges();
	test_bulk_huge();
	test_regions_runtime();
	test_add_region_bytes();
	test_regions_reuse();
	test_slot0_reuse();
	test_area_gone();
	test_high_regions();
	test_top_partial_frame();
	test_two_instances();
	test_parked();
	test_parked_shared_cpu();
	test_reserve_vs_remove();
	test_unreserve_race();
	test_reserve_undo_vs_free();
	test_validate_catches();
	test_validate_given_range();
	test_frame_bound();
	test_exhausted_region();
	return check_done("frames_unit");
}
