/* SPDX-License-Identifier: MIT */
/*
 * Parked frames in their two windows, in a fixed order: the library is
 * built with the frames hook points (CAIRN_FRAMES_TEST_HOOK), and CPU 0 is
 * held at one of them while CPU 1 acts on the same frame.
 *
 *  PARKED: CPU 0's order-0 free has parked frame X (HEAD alone, FREE
 *      unchanged) and not yet named it in its park slot. X is free: CPU 1
 *      must get it by alloc_at, by a reserve over it, by allocating every
 *      frame of the area (X is in no slot: only the area's bitmap scan
 *      finds it), and must be refused a second free of it; a removal of
 *      X's region must succeed, and the slot CPU 0 then stores, naming a
 *      frame of a removed region, must do no harm once the region's slot
 *      is reclaimed and filled again (ASan: no look into the freed
 *      metadata).
 *  TAKE_BACK: CPU 0's order-0 allocation (the short path, and the general
 *      path's) has emptied its park slot and not yet taken X back. CPU 1
 *      takes X by alloc_at, by exhaustion, or removes X's region: CPU 0's
 *      allocation must then come up with another frame, or ENOMEM, never
 *      X.
 *
 * After every case: validate, the free total, each frame held once.
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../core/frames_layout.h"
#include "check.h"
#include "frames_hold.h"
#include "frames_total.h"

#define MiB (1024ull * 1024)
#define FRAME CAIRN_FRAME_SIZE
#define BASE (4096 * MiB)           /* the boot region: 8 MiB */
#define RBASE (BASE + 8 * MiB)      /* a region added at run time: 4 MiB */
#define NFRAMES ((12 * MiB) / FRAME)

static struct cairn_frames *f;
static void *meta, *rmeta;
static size_t meta_size, rmeta_size;

/* ---- state shared with CPU 1's actions (ordered by the command) ---- */

static cairn_phys_t X;
static int res;
static cairn_phys_t got[NFRAMES + 1];
static size_t ngot;
static uint64_t total; /* free frames of a fresh instance */

static void fresh(bool with_runtime_region)
{
	const struct cairn_mem_range map[] = { { BASE, 8 * MiB } };
	struct cairn_frames_config cfg = { .ncpus = 2, .meta = meta, .meta_size = meta_size };
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	if (with_runtime_region) {
		rmeta = malloc(rmeta_size);
		REQUIRE(cairn_frames_add_region(f, RBASE, 4 * MiB, rmeta, rmeta_size) == 0);
	}
	total = frames_free_total(f);
}

static bool parked(cairn_phys_t p)
{
	struct region *r = region_find(f, p >> CAIRN_FRAME_SHIFT);
	return r && (word_parked(atomic_load(frame_word(r, p >> CAIRN_FRAME_SHIFT))) >>
		     ((p >> CAIRN_FRAME_SHIFT) % WORD_FRAMES) & 1);
}

static bool in(cairn_phys_t p, cairn_phys_t base, uint64_t size)
{
	return p >= base && p - base < size;
}

/* Free what the lists hold, and see everything back. */
static void settle_check(const char *what, cairn_phys_t *held, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (held[i] != ~0ull)
			CHECK_EQ(cairn_frames_free(f, held[i], 0), 0);
	int v = cairn_frames_validate(f);
	uint64_t t = frames_free_total(f);
	CHECK_EQ(v, 0);
	CHECK_EQ(t, total);
	if (v || t != total)
		fprintf(stderr, "  (in: %s)\n", what);
}

static int cmp_phys(const void *a, const void *b)
{
	cairn_phys_t x = *(const cairn_phys_t *)a, y = *(const cairn_phys_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- CPU 1's actions ---- */

static void c1_alloc_at(void) { res = cairn_frames_alloc_at(f, X, 0); }
static void c1_free(void) { res = cairn_frames_free(f, X, 0); }
static void c1_free_x(void) { CHECK_EQ(cairn_frames_free(f, X, 0), 0); }
static void c1_reserve(void) { res = cairn_frames_reserve(f, X - 3 * FRAME, 40 * FRAME); }
static void c1_unreserve(void) { CHECK_EQ(cairn_frames_unreserve(f, X - 3 * FRAME, 40 * FRAME), 0); }
static void c1_remove(void) { res = cairn_frames_remove_region(f, RBASE); }

/* Every frame, in bulk, then one more try. */
static void c1_take_all(void)
{
	ngot = cairn_frames_alloc_bulk(f, 0, got, NFRAMES + 1);
	cairn_phys_t q;
	res = cairn_frames_alloc(f, 0, 0, &q);
	if (res == 0)
		got[ngot++] = q;
}

static void c1_free_all(void)
{
	size_t done;
	CHECK_EQ(cairn_frames_free_bulk(f, got, ngot, &done), 0);
	ngot = 0;
}

/* One frame; the last one, X, parked by CPU 0 (single allocations: the
 * short path and then the general one). */
static void c1_take_one(void)
{
	ngot = 0;
	cairn_phys_t q;
	res = cairn_frames_alloc(f, 0, 0, &q);
	if (res == 0)
		got[ngot++] = q;
	res = cairn_frames_alloc_aligned(f, 0, 0, 0, &q);
	if (res == 0)
		got[ngot++] = q;
}

/* ---- the cases ---- */

/* CPU 0 frees X, its park slot empty, and is held once X is parked. */
static void free_held(void (*fn)(void))
{
	arm(CAIRN_FRAMES_HOOK_PARKED, NULL, fn);
	unsigned before = fired;
	CHECK_EQ(cairn_frames_free(f, X, 0), 0);
	CHECK_EQ(fired, before + 1);
}

static void case_parked_alloc_at(void)
{
	fresh(false);
	REQUIRE(cairn_frames_alloc(f, 0, 0, &X) == 0);
	free_held(c1_alloc_at);
	CHECK_EQ(res, 0);
	CHECK(cairn_frames_is_allocated(f, X, 0) && !parked(X));
	CHECK_EQ(frames_free_total(f), total - 1);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_phys_t q[2];
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q[0]), 0); /* the slot names X: stale */
	CHECK_EQ(cairn_frames_alloc_aligned(f, 0, 0, 0, &q[1]), 0);
	CHECK(q[0] != X && q[1] != X && q[0] != q[1]);
	on_cpu1(c1_free_x);
	settle_check("parked, alloc_at", q, 2);
}

static void case_parked_reserve(void)
{
	fresh(false);
	REQUIRE(cairn_frames_alloc_at(f, BASE + 100 * FRAME, 0) == 0);
	X = BASE + 100 * FRAME;
	free_held(c1_reserve);
	CHECK_EQ(res, 0);
	CHECK(cairn_frames_is_allocated(f, X, 0) && !parked(X));
	CHECK_EQ(frames_free_total(f), total - 40);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_phys_t q;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0);
	CHECK(!in(q, X - 3 * FRAME, 40 * FRAME));
	on_cpu1(c1_unreserve);
	settle_check("parked, reserve", &q, 1);
}

static void case_parked_double_free(void)
{
	fresh(false);
	REQUIRE(cairn_frames_alloc(f, 0, 0, &X) == 0);
	free_held(c1_free);
	CHECK_EQ(res, CAIRN_EFREE);
	CHECK(parked(X));
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_phys_t q;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), 0); /* taken back */
	CHECK_EQ(q, X);
	settle_check("parked, double free", &q, 1);
}

static void case_parked_exhaust(void)
{
	fresh(false);
	REQUIRE(cairn_frames_alloc(f, 0, 0, &X) == 0);
	free_held(c1_take_all);
	CHECK_EQ(ngot, total);
	CHECK_EQ(res, CAIRN_ENOMEM);
	bool has_x = false;
	for (size_t i = 0; i < ngot; i++)
		has_x |= got[i] == X;
	CHECK(has_x);
	cairn_phys_t q;
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), CAIRN_ENOMEM); /* a stale slot */
	CHECK_EQ(frames_free_total(f), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	on_cpu1(c1_free_all);
	settle_check("parked, exhaustion", NULL, 0);
}

/* X in the region added at run time; CPU 1 removes the region while X is
 * parked in no slot. CPU 0's free then names X in its slot and its hint
 * names the removed region. After that free returned (the grace period
 * for this test: no other call was in flight), CPU 1 reclaims the slot and
 * frees the metadata; the same range comes back in the same slot with new
 * metadata, and CPU 0 allocates everything. */
static void case_parked_remove(void)
{
	fresh(true);
	X = RBASE + 77 * FRAME;
	REQUIRE(cairn_frames_alloc_at(f, X, 0) == 0);
	free_held(c1_remove);
	CHECK_EQ(res, 0);
	CHECK_EQ(frames_free_total(f), total - 1024);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, RBASE), 0);
	memset(rmeta, 0xa5, rmeta_size); /* (whatever the new metadata was) */
	free(rmeta);
	rmeta = malloc(rmeta_size);
	REQUIRE(cairn_frames_add_region(f, RBASE, 4 * MiB, rmeta, rmeta_size) == 0);
	CHECK_EQ(frames_free_total(f), total);
	CHECK_EQ(cairn_frames_validate(f), 0);
	size_t n = 0;
	cairn_phys_t q;
	while (n <= NFRAMES && cairn_frames_alloc(f, 0, 0, &q) == 0)
		got[n++] = q;
	CHECK_EQ(n, total);
	qsort(got, n, sizeof(got[0]), cmp_phys);
	for (size_t i = 1; i < n; i++) /* each once */
		CHECK(got[i - 1] != got[i]);
	settle_check("parked, region removed and its slot filled again", got, n);
	CHECK_EQ(cairn_frames_remove_region(f, RBASE), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, RBASE), 0);
	free(rmeta);
}

/* CPU 0 has X parked in its slot and starts an allocation, held once the
 * slot is emptied. */
static void take_back_held(void (*fn)(void), bool general, cairn_phys_t *q, int want)
{
	REQUIRE(cairn_frames_free(f, X, 0) == 0);
	REQUIRE(parked(X));
	arm(CAIRN_FRAMES_HOOK_TAKE_BACK, NULL, fn);
	unsigned before = fired;
	int err = general ? cairn_frames_alloc_aligned(f, 0, 0, 0, q) : cairn_frames_alloc(f, 0, 0, q);
	CHECK_EQ(fired, before + 1);
	CHECK_EQ(err, want);
	if (err)
		*q = ~0ull;
}

static void case_take_back_alloc_at(bool general)
{
	fresh(false);
	REQUIRE(cairn_frames_alloc(f, 0, 0, &X) == 0);
	cairn_phys_t q;
	take_back_held(c1_alloc_at, general, &q, 0);
	CHECK_EQ(res, 0);
	CHECK(q != X);
	CHECK(cairn_frames_is_allocated(f, X, 0) && cairn_frames_is_allocated(f, q, 0));
	CHECK_EQ(frames_free_total(f), total - 2);
	on_cpu1(c1_free_x);
	settle_check(general ? "take back (general), alloc_at" : "take back, alloc_at", &q, 1);
}

static void case_take_back_exhaust(bool general)
{
	fresh(false);
	static cairn_phys_t all[NFRAMES + 1];
	size_t n = cairn_frames_alloc_bulk(f, 0, all, NFRAMES + 1);
	REQUIRE(n == total);
	X = all[n / 2];
	all[n / 2] = ~0ull;
	cairn_phys_t q;
	take_back_held(c1_take_one, general, &q, CAIRN_ENOMEM);
	CHECK_EQ(ngot, 1);
	CHECK(ngot == 1 && got[0] == X);
	CHECK_EQ(frames_free_total(f), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	on_cpu1(c1_free_all);
	settle_check(general ? "take back (general), exhaustion" : "take back, exhaustion", all, n);
}

static void case_take_back_remove(bool general)
{
	fresh(true);
	X = RBASE + 300 * FRAME;
	REQUIRE(cairn_frames_alloc_at(f, X, 0) == 0);
	cairn_phys_t q;
	take_back_held(c1_remove, general, &q, 0);
	CHECK_EQ(res, 0);
	CHECK(in(q, BASE, 8 * MiB));
	CHECK_EQ(frames_free_total(f), total - 1024 - 1);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_reclaim_region(f, RBASE), 0);
	free(rmeta);
	total -= 1024;
	settle_check(general ? "take back (general), removal" : "take back, removal", &q, 1);
}

int main(void)
{
	REQUIRE(cairn_host_init(2, BASE, 12 * MiB) == 0);
	const struct cairn_mem_range map[] = { { BASE, 8 * MiB } };
	meta_size = cairn_frames_meta_size(map, 1, 2);
	meta = malloc(meta_size);
	rmeta_size = cairn_frames_region_meta_size(RBASE, 4 * MiB);
	hold_start();
	cairn_host_reports_quiet(1);

	case_parked_alloc_at();
	case_parked_reserve();
	case_parked_double_free();
	case_parked_exhaust();
	case_parked_remove();
	for (int general = 0; general < 2; general++) {
		case_take_back_alloc_at(general);
		case_take_back_exhaust(general);
		case_take_back_remove(general);
	}

	cairn_host_reports_quiet(0);
	hold_stop();
	printf("park race: %u cases held at a hook point\n", fired);
	free(meta);
	return check_done("frames_park_race");
}
