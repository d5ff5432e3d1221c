/* SPDX-License-Identifier: MIT */
/*
 * The region table against a reference of its own: regions added, removed
 * and reclaimed at random among allocations, frees and alloc_at, every
 * result predicted.
 *
 * Three windows of physical memory, one across 16 MiB, one across 4 GiB,
 * one above it (the boot region, with the instance's metadata carved from
 * its top, at the end of that one). Ranges to add start anywhere in a
 * window, at the end or start of a region there (neighbours, active or
 * removed), or exactly where a removed region lies (its range again); they
 * are whole frames or not, a frame, two, up to a few chunks; the metadata is
 * the caller's (sometimes one byte short, at any misalignment) or carved
 * from the range. The reference knows every answer: EINVAL for no whole
 * frame, a range across an area boundary or metadata too small; ENOMEM when
 * the carve leaves no frame; EEXIST for a byte in the range an active
 * region was given, in a partial frame too (a removed one does not count); ENOSPC with no slot left (a removed
 * region keeps its slot until reclaimed); else the lowest reclaimed slot,
 * or the next new one. A removal is ERANGE where no active region starts,
 * EBUSY for carved metadata or a frame the test holds (parked frames are
 * free: the order-0 frees park some), else the region goes. A free of a
 * carved frame is EMETA (no caller's block). A reclaim takes
 * the oldest removal at its base, ERANGE if there is none, and its metadata
 * is freed at once (ASan catches a later look into it through a hint).
 *
 * Per frame the reference knows: in no active region, free, carved
 * metadata, or in a block the test holds. Allocations must return free
 * frames of one active region, in an accepted area, aligned; ENOMEM only
 * when no active region of those areas has a fitting free block; alloc_at
 * and frees must answer as the reference does. After every step the table
 * (each slot's state and the count of slots used), the statistics (regions,
 * total and free frames per area, free blocks per order and area, metadata
 * bytes) and validate must be exactly the reference's: a call that fails
 * changed nothing.
 *
 * Before the random steps, fixed cases: the caller's metadata for an
 * instance and for a region at every misalignment of its buffer, with no
 * byte to spare (ASan: a write past it); regions of 1 GiB and more, carved
 * or not, with a 1 GiB block in them; carved regions of one and two frames.
 *
 * usage: frames_regions [seed] [steps]
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdlib.h>
#include <string.h>

#include "../core/frames_layout.h"
#include "check.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE
#define NCPUS 4
#define MEM (8 * GiB) /* the simulated physical memory */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static unsigned area_of_frame(uint64_t fr)
{
	return fr < 16 * MiB / FRAME ? CAIRN_AREA_LOW16M
	       : fr < 4 * GiB / FRAME ? CAIRN_AREA_LOW4G : CAIRN_AREA_HIGH;
}

static uint64_t region_bytes(uint64_t first, uint64_t end)
{
	uint64_t nc = (end - 1) / CHUNK_FRAMES - first / CHUNK_FRAMES + 1;
	return ((nc * 8 + 63) & ~63ull) + nc * CHUNK_WORDS * 8;
}

static uint64_t instance_bytes(void)
{
	return ((sizeof(struct cairn_frames) + 63) & ~63ull) + NCPUS * sizeof(struct cpu_hint);
}

/* ---- fixed cases ---- */

/* The caller's metadata with no byte to spare, at every misalignment: the
 * buffer is the exact size asked for, so ASan sees a write past it. */
static void meta_misaligned(void)
{
	const struct cairn_mem_range map[] = {
		{ 4 * GiB - 4 * MiB + 0x800, 6 * MiB }, /* across 4 GiB, unaligned */
		{ 9 * MiB, 9 * MiB },                  /* across 16 MiB */
	};
	size_t ms = cairn_frames_meta_size(map, 2, NCPUS);
	size_t rms = cairn_frames_region_meta_size(6 * GiB + 2 * MiB - FRAME, 6 * MiB + 0x10);
	REQUIRE(ms > 0 && rms > 0);
	for (unsigned mis = 0; mis < 64; mis++) {
		char *buf = malloc(ms + mis);
		REQUIRE(buf);
		struct cairn_frames_config cfg = { .ncpus = NCPUS, .meta = buf + mis, .meta_size = ms };
		struct cairn_frames *f = NULL;
		CHECK_EQ(cairn_frames_init(&f, map, 2, &cfg), 0);
		if (!f) {
			free(buf);
			continue;
		}
		CHECK_EQ((uintptr_t)f % 64, 0);
		char *rbuf = malloc(rms + mis);
		REQUIRE(rbuf);
		CHECK_EQ(cairn_frames_add_region(f, 6 * GiB + 2 * MiB - FRAME, 6 * MiB + 0x10,
						 rbuf + mis, rms - 1), CAIRN_EINVAL);
		CHECK_EQ(cairn_frames_add_region(f, 6 * GiB + 2 * MiB - FRAME, 6 * MiB + 0x10,
						 rbuf + mis, rms), 0);
		struct cairn_frames_stats st;
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 5); /* the map's four (split at 16 MiB and 4 GiB) and it */
		CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], st.total_frames[CAIRN_AREA_HIGH]);
		CHECK_EQ(st.total_frames[CAIRN_AREA_HIGH], 2 * MiB / FRAME + 6 * MiB / FRAME);
		CHECK_EQ(st.total_frames[CAIRN_AREA_LOW4G], 4 * MiB / FRAME - 1 + 2 * MiB / FRAME);
		CHECK_EQ(cairn_frames_validate(f), 0);
		CHECK_EQ(cairn_frames_remove_region(f, 6 * GiB + 2 * MiB - FRAME), 0);
		CHECK_EQ(cairn_frames_reclaim_region(f, 6 * GiB + 2 * MiB - FRAME), 0);
		free(rbuf);
		CHECK_EQ(cairn_frames_validate(f), 0);
		free(buf);
	}
	/* one byte short of what meta_size asked for */
	char *buf = malloc(ms);
	REQUIRE(buf);
	struct cairn_frames_config cfg = { .ncpus = NCPUS, .meta = buf, .meta_size = ms - 1 };
	struct cairn_frames *f = NULL;
	CHECK_EQ(cairn_frames_init(&f, map, 2, &cfg), CAIRN_EINVAL);
	CHECK(f == NULL);
	free(buf);
}

/* A whole 1 GiB block in a region added at run time, and regions larger
 * than 1 GiB, with the caller's metadata or carved. */
static void huge_regions(void)
{
	const struct cairn_mem_range map[] = { { 1 * MiB, 8 * MiB } };
	struct cairn_frames_config cfg = { .ncpus = NCPUS };
	cfg.meta_size = cairn_frames_meta_size(map, 1, NCPUS);
	cfg.meta = malloc(cfg.meta_size);
	REQUIRE(cfg.meta);
	struct cairn_frames *f;
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	struct cairn_frames_stats st;

	/* 1 GiB + 4 MiB from 2 MiB below a 1 GiB line, far above memory:
	 * the caller's metadata, so the frames are never touched */
	const cairn_phys_t big = 64 * GiB - 2 * MiB;
	const uint64_t bsize = 1 * GiB + 4 * MiB;
	size_t rms = cairn_frames_region_meta_size(big, bsize);
	CHECK_EQ(rms, region_bytes(big / FRAME, (big + bsize) / FRAME) + 64);
	void *rmeta = malloc(rms);
	REQUIRE(rmeta);
	CHECK_EQ(cairn_frames_add_region(f, big, bsize, rmeta, rms), 0);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.total_frames[CAIRN_AREA_HIGH], bsize / FRAME);
	CHECK_EQ(st.free_blocks[CAIRN_AREA_HIGH][CAIRN_MAX_ORDER], 1);
	CHECK_EQ(st.meta_bytes, instance_bytes() + region_bytes(1 * MiB / FRAME, 9 * MiB / FRAME) +
					region_bytes(big / FRAME, (big + bsize) / FRAME));
	cairn_phys_t p, q;
	CHECK_EQ(cairn_frames_alloc(f, CAIRN_MAX_ORDER, 0, &p), 0);
	CHECK_EQ(p, 64 * GiB);
	CHECK_EQ(cairn_frames_alloc(f, CAIRN_MAX_ORDER, 0, &q), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_remove_region(f, big), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], 4 * MiB / FRAME);
	CHECK_EQ(cairn_frames_free(f, p, CAIRN_MAX_ORDER), 0);
	/* the refused removal left every chunk as it was: the block again */
	CHECK_EQ(cairn_frames_alloc_at(f, 64 * GiB, CAIRN_MAX_ORDER), 0);
	CHECK_EQ(cairn_frames_free(f, 64 * GiB, CAIRN_MAX_ORDER), 0);
	CHECK_EQ(cairn_frames_remove_region(f, big), 0);
	CHECK_EQ(cairn_frames_alloc(f, CAIRN_MAX_ORDER, 0, &q), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_free(f, 64 * GiB, CAIRN_MAX_ORDER), CAIRN_ERANGE);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.total_frames[CAIRN_AREA_HIGH], 0);
	CHECK_EQ(st.regions, 1);
	CHECK_EQ(cairn_frames_reclaim_region(f, big), 0);
	free(rmeta);

	/* 1 GiB carved from itself, inside the simulated memory: its top
	 * frames hold the metadata, so no 1 GiB block, and it stays */
	const cairn_phys_t cb = 6 * GiB;
	uint64_t mframes = (region_bytes(cb / FRAME, (cb + GiB) / FRAME) + FRAME - 1) / FRAME;
	CHECK_EQ(cairn_frames_add_region(f, cb, 1 * GiB, NULL, 0), 0);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.total_frames[CAIRN_AREA_HIGH], GiB / FRAME);
	CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], GiB / FRAME - mframes);
	CHECK_EQ(st.free_blocks[CAIRN_AREA_HIGH][CAIRN_MAX_ORDER], 0);
	CHECK_EQ(st.free_blocks[CAIRN_AREA_HIGH][CAIRN_MAX_ORDER - 1], 1);
	/* in use for good, and no caller's block */
	CHECK(!cairn_frames_is_allocated(f, cb + GiB - FRAME, 0));
	CHECK(!cairn_frames_is_allocated(f, cb + GiB - mframes * FRAME, 0));
	CHECK(!cairn_frames_is_allocated(f, cb + GiB - (mframes + 1) * FRAME, 0));
	CHECK_EQ(cairn_frames_alloc_at(f, cb + GiB - FRAME, 0), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_alloc_at(f, cb + GiB - 2 * MiB, CAIRN_HUGE_ORDER), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_free(f, cb + GiB - mframes * FRAME, 0), CAIRN_EMETA);
	CHECK_EQ(cairn_frames_free(f, cb + GiB - 2 * MiB, CAIRN_HUGE_ORDER), CAIRN_EMETA);
	CHECK_EQ(cairn_frames_alloc(f, CAIRN_MAX_ORDER, 0, &q), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_remove_region(f, cb), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], GiB / FRAME - mframes);

	/* carved regions of one frame (no room: ENOMEM, nothing changed) and
	 * of two (one frame left), within a chunk and across a chunk line */
	CHECK_EQ(cairn_frames_add_region(f, 7 * GiB, FRAME, NULL, 0), CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_add_region(f, 7 * GiB + 0x800, 2 * FRAME, NULL, 0), CAIRN_ENOMEM);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.regions, 2);
	CHECK_EQ(cairn_frames_add_region(f, 7 * GiB, 2 * FRAME, NULL, 0), 0);
	CHECK_EQ(cairn_frames_add_region(f, 7 * GiB + 4 * MiB - FRAME, 2 * FRAME, NULL, 0), 0);
	cairn_frames_stats(f, &st);
	CHECK_EQ(st.regions, 4);
	CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], GiB / FRAME - mframes + 2);
	CHECK_EQ(cairn_frames_free(f, 7 * GiB + FRAME, 0), CAIRN_EMETA);
	CHECK_EQ(cairn_frames_free(f, 7 * GiB + 4 * MiB, 0), CAIRN_EMETA);
	CHECK_EQ(cairn_frames_free(f, 7 * GiB, 1), CAIRN_EMETA); /* holds a carved frame */
	CHECK_EQ(cairn_frames_alloc_at(f, 7 * GiB, 0), 0);
	CHECK_EQ(cairn_frames_alloc_at(f, 7 * GiB + 4 * MiB - FRAME, 0), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(cairn_frames_free(f, 7 * GiB, 0), 0);
	CHECK_EQ(cairn_frames_free(f, 7 * GiB + 4 * MiB - FRAME, 0), 0);
	CHECK_EQ(cairn_frames_remove_region(f, 7 * GiB), CAIRN_EBUSY);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* ---- the reference ---- */

enum { ABSENT = -3, META = -2, FREE = -1 };

struct window {
	uint64_t first, end; /* frames */
};
static const struct window win[3] = {
	{ 8 * MiB / FRAME, 24 * MiB / FRAME },
	{ (4 * GiB - 8 * MiB) / FRAME, (4 * GiB + 8 * MiB) / FRAME },
	{ 5 * GiB / FRAME, (5 * GiB + 32 * MiB) / FRAME },
};
#define BOOT_FIRST ((5 * GiB + 24 * MiB) / FRAME)
static int32_t *fs[3]; /* per frame of each window: ABSENT, META, FREE or a block */

struct block {
	uint64_t first;
	unsigned order;
};
#define MAX_BLOCKS 4096
static struct block held[MAX_BLOCKS];
static unsigned nheld;

enum { S_UNUSED, S_DEAD, S_ACTIVE };
struct slot {
	int state;
	uint64_t first, end, removal;
	bool carved;
	void *meta; /* the caller's buffer (freed at reclaim) */
	cairn_phys_t base, top; /* the bytes it was given, partial frames too */
};
static struct slot slot[CAIRN_MAX_REGIONS];
static unsigned nslots;
static uint64_t removals;

static struct cairn_frames *f;
static unsigned outcome[12]; /* by -error */
static unsigned adds_ok, removes_ok, reclaims_ok, allocs_ok, enomem;

static int32_t *ref_at(uint64_t fr)
{
	for (unsigned w = 0; w < 3; w++)
		if (fr >= win[w].first && fr < win[w].end)
			return &fs[w][fr - win[w].first];
	return NULL;
}

static int active_at(uint64_t fr)
{
	for (unsigned i = 0; i < nslots; i++)
		if (slot[i].state == S_ACTIVE && fr >= slot[i].first && fr < slot[i].end)
			return (int)i;
	return -1;
}

static bool all_free(uint64_t a, uint64_t n)
{
	for (uint64_t fr = a; fr < a + n; fr++)
		if (*ref_at(fr) != FREE)
			return false;
	return true;
}

/* A free block of 2^k frames aligned to 2^a in an active region of the
 * accepted areas? */
static bool fits(unsigned k, unsigned a, unsigned areas)
{
	for (unsigned i = 0; i < nslots; i++) {
		struct slot *s = &slot[i];
		if (s->state != S_ACTIVE || !(areas & (1u << area_of_frame(s->first))))
			continue;
		uint64_t step = 1ull << a;
		for (uint64_t at = (s->first + step - 1) & ~(step - 1); at + (1ull << k) <= s->end;
		     at += step)
			if (all_free(at, 1ull << k))
				return true;
	}
	return false;
}

static void hold(uint64_t first, unsigned k)
{
	REQUIRE(nheld < MAX_BLOCKS);
	for (uint64_t fr = first; fr < first + (1ull << k); fr++)
		*ref_at(fr) = (int32_t)nheld;
	held[nheld++] = (struct block){ first, k };
}

static void unhold(unsigned i)
{
	for (uint64_t fr = held[i].first; fr < held[i].first + (1ull << held[i].order); fr++)
		*ref_at(fr) = FREE;
	held[i] = held[--nheld];
	if (i < nheld)
		for (uint64_t fr = held[i].first; fr < held[i].first + (1ull << held[i].order); fr++)
			*ref_at(fr) = (int32_t)i;
}

/* Maximal naturally aligned blocks of [a, b), into blocks[area][order]. */
static void decompose(uint64_t a, uint64_t b, uint64_t blocks[CAIRN_AREAS][CAIRN_MAX_ORDER + 1])
{
	while (a < b) {
		unsigned k = 0;
		while (k < CAIRN_MAX_ORDER && !(a & ((2ull << k) - 1)) && a + (2ull << k) <= b)
			k++;
		blocks[area_of_frame(a)][k]++;
		a += 1ull << k;
	}
}

static void compare(const char *what, unsigned step)
{
	struct cairn_frames_stats st, ref;
	memset(&ref, 0, sizeof(ref));
	ref.meta_bytes = instance_bytes();
	for (unsigned i = 0; i < nslots; i++) {
		struct slot *s = &slot[i];
		uint32_t state = atomic_load(&f->region[i].state);
		bool ok = s->state == S_UNUSED   ? state == REGION_UNUSED
			  : s->state == S_DEAD ? state == REGION_DEAD
					       : region_active(state) && f->region[i].first == s->first &&
							 f->region[i].meta_end == s->end;
		if (!ok) {
			CHECK(ok);
			fprintf(stderr, "  step %u (%s): slot %u state %#x, expected %d\n", step, what, i,
				state, s->state);
		}
		if (s->state != S_ACTIVE)
			continue;
		unsigned a = area_of_frame(s->first);
		ref.regions++;
		ref.total_frames[a] += s->end - s->first;
		ref.meta_bytes += region_bytes(s->first, s->end);
		for (uint64_t fr = s->first; fr < s->end;) {
			if (*ref_at(fr) != FREE) {
				fr++;
				continue;
			}
			uint64_t e = fr;
			while (e < s->end && *ref_at(e) == FREE)
				e++;
			ref.free_frames[a] += e - fr;
			decompose(fr, e, ref.free_blocks);
			fr = e;
		}
	}
	CHECK_EQ(atomic_load(&f->nregions), nslots);
	cairn_frames_stats(f, &st);
	if (memcmp(&st, &ref, sizeof(st))) {
		CHECK(!memcmp(&st, &ref, sizeof(st)));
		fprintf(stderr, "  step %u (%s): regions %u/%u meta %llu/%llu\n", step, what,
			st.regions, ref.regions, (unsigned long long)st.meta_bytes,
			(unsigned long long)ref.meta_bytes);
		for (unsigned a = 0; a < CAIRN_AREAS; a++)
			fprintf(stderr, "    area %u: total %llu/%llu free %llu/%llu\n", a,
				(unsigned long long)st.total_frames[a],
				(unsigned long long)ref.total_frames[a],
				(unsigned long long)st.free_frames[a],
				(unsigned long long)ref.free_frames[a]);
		exit(1);
	}
	if (cairn_frames_validate(f)) {
		fprintf(stderr, "  step %u (%s): validate failed\n", step, what);
		exit(1);
	}
}

static void expect(const char *what, unsigned step, int got, int want)
{
	CHECK_EQ(got, want);
	if (got != want) {
		fprintf(stderr, "  step %u: %s: %d, expected %d\n", step, what, got, want);
		exit(1);
	}
	outcome[-want]++;
}

/* ---- steps ---- */

/* A place in window w for a range to start: anywhere, or next to a region
 * there, or a removed region's own base. */
static uint64_t pick_first(unsigned w)
{
	unsigned i = (unsigned)below(nslots ? nslots : 1);
	struct slot *s = &slot[i];
	bool here = nslots && s->state != S_UNUSED && s->first >= win[w].first && s->end <= win[w].end;
	switch (below(6)) {
	case 0:
		if (here)
			return s->end;
		break;
	case 1:
		if (here && s->state == S_DEAD)
			return s->first;
		break;
	case 2:
		if (here)
			return s->first > win[w].first + 4 ? s->first - 1 - below(4) : s->first;
		break;
	}
	return win[w].first + below(win[w].end - win[w].first);
}

static int add_at(unsigned step, cairn_phys_t base, uint64_t size, bool carve, bool short_meta);

static void step_add(unsigned step)
{
	unsigned w = (unsigned)below(3);
	uint64_t first = pick_first(w), n;
	switch (below(6)) {
	case 0:
		n = 1 + below(2);
		break;
	case 1:
		n = CHUNK_FRAMES * (1 + below(2));
		break;
	case 2:
		n = 0;
		break;
	default:
		n = 1 + below(3 * CHUNK_FRAMES / 2);
	}
	if (first + n > win[w].end)
		n = win[w].end - first;
	cairn_phys_t base = first * FRAME;
	uint64_t size = n * FRAME;
	if (!below(4)) { /* bytes of a frame each side, which trim away */
		uint64_t lead = below(FRAME);
		base -= lead;
		size += lead + below(FRAME);
	}
	if (!below(8)) /* less than a frame */
		size = below(FRAME);
	bool carve = !below(4);
	add_at(step, base, size, carve, !carve && !below(10));
}

static int add_at(unsigned step, cairn_phys_t base, uint64_t size, bool carve, bool short_meta)
{
	/* the reference */
	uint64_t rf = (base + FRAME - 1) / FRAME, re = (base + size) / FRAME;
	size_t rms = cairn_frames_region_meta_size(base, size);
	int want = 0;
	unsigned at = nslots;
	if (re <= rf) {
		want = CAIRN_EINVAL;
		CHECK_EQ(rms, 0);
	} else {
		CHECK_EQ(rms, region_bytes(rf, re) + 64);
		if (area_of_frame(rf) != area_of_frame(re - 1))
			want = CAIRN_EINVAL;
		else if (short_meta)
			want = CAIRN_EINVAL;
		else if (carve && (region_bytes(rf, re) + FRAME - 1) / FRAME >= re - rf)
			want = CAIRN_ENOMEM;
		/* on the bytes given, as init judges its map */
		for (unsigned i = 0; !want && i < nslots; i++)
			if (slot[i].state == S_ACTIVE && slot[i].base < base + size &&
			    base < slot[i].top)
				want = CAIRN_EEXIST;
		for (unsigned i = 0; !want && i < nslots && at == nslots; i++)
			if (slot[i].state == S_UNUSED)
				at = i;
		if (!want && at == CAIRN_MAX_REGIONS)
			want = CAIRN_ENOSPC;
	}
	size_t msz = rms ? rms : 64;
	unsigned mis = (unsigned)below(64);
	char *buf = NULL, *meta = NULL;
	if (!carve) {
		buf = malloc(msz + mis);
		REQUIRE(buf);
		meta = buf + mis;
		if (short_meta && rms)
			msz -= 1 + below(64 < rms ? 64 : rms);
	}
	int err = cairn_frames_add_region(f, base, size, meta, carve ? 0 : msz);
	expect("add_region", step, err, want);
	if (err) {
		free(buf);
		return err;
	}
	adds_ok++;
	if (at == nslots)
		nslots++;
	slot[at] = (struct slot){ S_ACTIVE, rf, re, 0, carve, buf, base, base + size };
	uint64_t mf = carve ? (region_bytes(rf, re) + FRAME - 1) / FRAME : 0;
	for (uint64_t fr = rf; fr < re; fr++)
		*ref_at(fr) = fr >= re - mf ? META : FREE;
	CHECK(region_find(f, rf) == &f->region[at]);
	/* the carve is in no region: no lookup reaches it */
	CHECK(region_find(f, re - mf - 1) == &f->region[at]);
	CHECK(region_find(f, re - 1) == (mf ? NULL : &f->region[at]));
	return 0;
}

static int remove_at(unsigned step, cairn_phys_t base);

static void step_remove(unsigned step)
{
	cairn_phys_t base;
	unsigned i = (unsigned)below(nslots);
	for (unsigned j = 0; j < nslots && slot[i].state != S_ACTIVE; j++)
		i = (i + 1) % nslots; /* mostly an active region's base */
	switch (below(8)) {
	case 0: /* inside a region, or not a frame's start */
		base = slot[i].first * FRAME + (below(2) ? FRAME : 1 + below(FRAME - 1));
		break;
	case 1: /* a frame in some window */
		base = (win[below(3)].first + below(4096)) * FRAME;
		break;
	default:
		base = slot[i].first * FRAME;
	}
	remove_at(step, base);
}

static int remove_at(unsigned step, cairn_phys_t base)
{
	int want = CAIRN_ERANGE;
	int at = -1;
	for (unsigned j = 0; j < nslots; j++)
		if (slot[j].state == S_ACTIVE && slot[j].first * FRAME == base)
			at = (int)j;
	if (at >= 0) {
		want = slot[at].carved ? CAIRN_EBUSY : 0;
		for (uint64_t fr = slot[at].first; !want && fr < slot[at].end; fr++)
			if (*ref_at(fr) >= 0)
				want = CAIRN_EBUSY;
	}
	expect("remove_region", step, cairn_frames_remove_region(f, base), want);
	if (want)
		return want;
	removes_ok++;
	slot[at].state = S_DEAD;
	slot[at].removal = ++removals;
	for (uint64_t fr = slot[at].first; fr < slot[at].end; fr++)
		*ref_at(fr) = ABSENT;
	return 0;
}

static int reclaim_at(unsigned step, cairn_phys_t base);

static void step_reclaim(unsigned step)
{
	unsigned i = (unsigned)below(nslots);
	reclaim_at(step, slot[i].first * FRAME + (below(8) ? 0 : 1 + below(FRAME - 1)));
}

static int reclaim_at(unsigned step, cairn_phys_t base)
{
	int at = -1;
	for (unsigned j = 0; j < nslots; j++)
		if (slot[j].state == S_DEAD && slot[j].first * FRAME == base &&
		    (at < 0 || slot[j].removal < slot[at].removal))
			at = (int)j;
	expect("reclaim_region", step, cairn_frames_reclaim_region(f, base), at < 0 ? CAIRN_ERANGE : 0);
	if (at < 0)
		return CAIRN_ERANGE;
	reclaims_ok++;
	/* one thread: the grace period is over */
	slot[at].state = S_UNUSED;
	free(slot[at].meta);
	slot[at].meta = NULL;
	return 0;
}

static const unsigned area_flag[4] = { 0, CAIRN_F_LOW16M, CAIRN_F_LOW4G, CAIRN_F_HIGH };

static void step_alloc(unsigned step)
{
	unsigned k = below(2) ? 0 : (unsigned)below(11), a = k;
	if (!below(4))
		a = k + (unsigned)below(CAIRN_MAX_ORDER - k < 4 ? CAIRN_MAX_ORDER - k + 1 : 4);
	unsigned flags = area_flag[below(4)] | (below(3) ? 0 : area_flag[below(4)]);
	unsigned areas = flags ? flags : CAIRN_F_ANY;
	cairn_phys_t p;
	if (nheld == MAX_BLOCKS)
		return;
	int err = a == k && !below(2) ? cairn_frames_alloc(f, k, flags, &p)
				      : cairn_frames_alloc_aligned(f, k, a, flags, &p);
	if (err) {
		expect("alloc", step, err, CAIRN_ENOMEM);
		enomem++;
		if (fits(k, a, areas)) {
			CHECK(!"ENOMEM with a fitting free block");
			fprintf(stderr, "  step %u: alloc order %u align %u areas %#x\n", step, k, a,
				areas);
			exit(1);
		}
		return;
	}
	outcome[0]++;
	allocs_ok++;
	uint64_t fr = p / FRAME;
	int r = active_at(fr);
	bool ok = p % (FRAME << a) == 0 && r >= 0 && fr + (1ull << k) <= slot[r].end &&
		  (areas & (1u << area_of_frame(fr))) && all_free(fr, 1ull << k);
	if (!ok) {
		CHECK(ok);
		fprintf(stderr, "  step %u: alloc order %u align %u areas %#x gave %#llx\n", step, k,
			a, areas, (unsigned long long)p);
		exit(1);
	}
	hold(fr, k);
}

static void step_free(unsigned step)
{
	if (!nheld)
		return;
	unsigned i = (unsigned)below(nheld);
	cairn_phys_t p = held[i].first * FRAME;
	unsigned k = held[i].order;
	expect("free", step, cairn_frames_free(f, p, k), 0);
	unhold(i);
	if (!below(4)) /* again: a double free, reported, nothing changed */
		expect("free again", step, cairn_frames_free(f, p, k), CAIRN_EFREE);
}

/* alloc_at anywhere in a window, and frees of frames there the test does
 * not hold (in a removed region, outside every region, free). */
static void step_at(unsigned step)
{
	unsigned w = (unsigned)below(3), k = below(2) ? 0 : (unsigned)below(11);
	uint64_t fr = (win[w].first + below(win[w].end - win[w].first)) & ~((1ull << k) - 1);
	if (!below(8)) { /* carved metadata, which a random place seldom meets */
		uint64_t n = win[w].end - win[w].first, at = below(n);
		for (uint64_t i = 0; i < n; i++)
			if (fs[w][(at + i) % n] == META) {
				fr = (win[w].first + (at + i) % n) & ~((1ull << k) - 1);
				break;
			}
	}
	if (fr < win[w].first)
		fr += 1ull << k;
	int r = active_at(fr);
	int want;
	if (r < 0 || fr + (1ull << k) > slot[r].end)
		want = CAIRN_ERANGE;
	else if (k >= CAIRN_HUGE_ORDER && (fr / CHUNK_FRAMES * CHUNK_FRAMES < slot[r].first ||
					   (fr + (1ull << k) + CHUNK_FRAMES - 1) / CHUNK_FRAMES *
							   CHUNK_FRAMES > slot[r].end))
		want = CAIRN_ERANGE;
	else
		want = all_free(fr, 1ull << k) ? 0 : CAIRN_EBUSY;
	if (below(3) && nheld < MAX_BLOCKS) {
		expect("alloc_at", step, cairn_frames_alloc_at(f, fr * FRAME, k), want);
		if (!want)
			hold(fr, k);
		return;
	}
	/* a free of that frame, which the test does not hold */
	if (r < 0) {
		want = CAIRN_ERANGE;
	} else {
		int32_t s = *ref_at(fr);
		if (s >= 0)
			return; /* the test's own block */
		/* carved metadata is no caller's block: refused as such */
		want = s == FREE ? CAIRN_EFREE : s == META ? CAIRN_EMETA : CAIRN_EORDER;
	}
	expect("free of a block not held", step, cairn_frames_free(f, fr * FRAME, 0), want);
}

/* One range added and removed again and again without a reclaim: every
 * removal keeps its slot, so the table fills (ENOSPC, nothing changed).
 * Then one reclaim, the oldest removal at that base, and the range fits
 * again in the slot it freed. Frames of two absent in a window, if any. */
static void fill_table(unsigned step)
{
	uint64_t fr = 0;
	for (unsigned w = 0; w < 3 && !fr; w++)
		for (uint64_t x = win[w].first; x + 2 <= win[w].end && !fr; x++)
			if (*ref_at(x) == ABSENT && *ref_at(x + 1) == ABSENT)
				fr = x;
	if (!fr)
		return;
	int err;
	unsigned added = 0;
	while (!(err = add_at(step, fr * FRAME, 2 * FRAME, false, false))) {
		added++;
		compare("fill: add", step);
		CHECK_EQ(remove_at(step, fr * FRAME), 0);
		compare("fill: remove", step);
	}
	CHECK_EQ(err, CAIRN_ENOSPC);
	compare("fill: ENOSPC", step);
	if (!added)
		return; /* full already: no removal at fr to reclaim */
	CHECK_EQ(reclaim_at(step, fr * FRAME), 0);
	compare("fill: reclaim", step);
	CHECK_EQ(add_at(step, fr * FRAME, 2 * FRAME, false, false), 0);
	compare("fill: add again", step);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned steps = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 4000;
	rng_state = seed;
	REQUIRE(cairn_host_init(NCPUS, 0, MEM) == 0);
	cairn_host_reports_quiet(1);
	meta_misaligned();
	huge_regions();

	for (unsigned w = 0; w < 3; w++) {
		fs[w] = malloc((win[w].end - win[w].first) * sizeof(int32_t));
		REQUIRE(fs[w]);
		for (uint64_t i = 0; i < win[w].end - win[w].first; i++)
			fs[w][i] = ABSENT;
	}
	/* The boot region at the top of the high window, the instance's
	 * metadata carved from its top. */
	const struct cairn_mem_range map[] = { { BOOT_FIRST * FRAME, win[2].end * FRAME -
									     BOOT_FIRST * FRAME } };
	struct cairn_frames_config cfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	uint64_t mf = (cairn_frames_meta_size(map, 1, NCPUS) + FRAME - 1) / FRAME;
	slot[0] = (struct slot){ S_ACTIVE, BOOT_FIRST, win[2].end, 0, true, NULL,
				 BOOT_FIRST * FRAME, win[2].end * FRAME };
	nslots = 1;
	for (uint64_t fr = BOOT_FIRST; fr < win[2].end; fr++)
		*ref_at(fr) = fr >= win[2].end - mf ? META : FREE;
	compare("init", 0);

	for (unsigned s = 1; s <= steps; s++) {
		/* every third stretch of 400 steps reclaims nothing and adds
		 * more: removed regions keep their slots until the table fills */
		bool hoard = s / 400 % 3 == 2;
		unsigned op = (unsigned)below(100);
		const char *what;
		if (hoard ? op < 20 : op < 16) {
			what = "add";
			step_add(s);
		} else if (hoard ? op < 36 : op < 26) {
			what = "remove";
			step_remove(s);
		} else if (op < 32) {
			what = "reclaim";
			step_reclaim(s);
		} else if (op < 60) {
			what = "alloc";
			step_alloc(s);
		} else if (op < 88) {
			what = "free";
			step_free(s);
		} else {
			what = "at";
			step_at(s);
		}
		compare(what, s);
		if (s == steps / 2)
			fill_table(s);
		/* now and then free everything held: removals can succeed */
		if (!below(hoard ? 25 : 200))
			while (nheld) {
				expect("free", s, cairn_frames_free(f, held[0].first * FRAME, held[0].order), 0);
				unhold(0);
			}
	}
	printf("frames_regions: seed %llu, %u steps: adds %u, removes %u, reclaims %u, allocs %u "
	       "(ENOMEM %u); EINVAL %u ERANGE %u EBUSY %u EEXIST %u ENOSPC %u ENOMEM %u EFREE %u "
	       "EMETA %u\n",
	       (unsigned long long)seed, steps, adds_ok, removes_ok, reclaims_ok, allocs_ok, enomem,
	       outcome[2], outcome[3], outcome[7], outcome[8], outcome[9], outcome[1], outcome[5],
	       outcome[11]);
	/* every outcome met, so no branch of the reference went untried */
	CHECK(adds_ok && removes_ok && reclaims_ok && enomem);
	CHECK(outcome[-CAIRN_EINVAL] && outcome[-CAIRN_ERANGE] && outcome[-CAIRN_EBUSY] &&
	      outcome[-CAIRN_EEXIST] && outcome[-CAIRN_ENOSPC] && outcome[-CAIRN_ENOMEM] &&
	      outcome[-CAIRN_EMETA]);
	return check_done("frames_regions");
}
