/* SPDX-License-Identifier: MIT */
/*
 * Bootstrap from firmware-style memory maps, against a reference of its own.
 *
 * Each round makes a random map the way firmware lists memory: spans cut
 * into adjacent entries (at frame boundaries and inside frames), entries
 * that are less than a frame, unaligned bases and ends, spans across
 * 16 MiB and 4 GiB, and now and then an entry that overlaps another; all
 * shuffled. The reference finds overlaps in the bytes listed (a byte in
 * two entries, whole frames or not), trims every entry to whole frames,
 * drops the empty ones, sorts, merges neighbours and splits at the area
 * boundaries, and so knows the answer of cairn_frames_init: EEXIST for
 * an overlap, ENOSPC for more than CAIRN_MAX_REGIONS regions after the
 * merge and the split, ENOMEM when no region can hold carved metadata,
 * else the regions. cairn_frames_meta_size must be 0 exactly for the maps
 * init rejects (caller's metadata).
 *
 * A created instance must then show exactly the reference: the number of
 * regions, total and free frames per area, the free blocks per order and
 * area (the buddy decomposition of each region's free frames), metadata
 * carved from the top of the highest region that holds it (or from the
 * caller's memory), validate passing. Allocating every frame must hand
 * out each free frame of the reference exactly once and nothing else
 * (the carved frames are EBUSY to alloc_at and EMETA to free and
 * unreserve, frames outside the map ERANGE), and freeing them all must give back the statistics of the start.
 * Before that, aligned requests (alignment above the size, 2 MiB and more
 * for small blocks) in random areas until ENOMEM must take exactly the
 * reference's count of aligned free blocks, highest area first: the
 * partial chunks at the ends of regions and areas hold such blocks too.
 * What the map listed outside whole frames must be reported: the entries
 * of no whole frame (skipped) and the bytes outside every entry's whole
 * frames, which with the regions' frames make up the map's bytes.
 * Ranges added after init that share the first or last byte of an entry,
 * or only touch it, must be EEXIST exactly when they share a byte with an
 * entry of a whole frame: a region keeps the bytes of the entries merged
 * into it, partial frames too, cut at the area lines.
 * A map of thousands of entries must give the same instance listed in
 * address order (walked as it stands), shuffled, and nearly in order
 * (walked a batch at a time), and the same EEXIST for an overlap in each.
 *
 * usage: frames_boot [seed] [rounds]
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
#define TOP (8 * GiB) /* the simulated physical memory */
#define NCPUS 4
#define MAX_ENTRIES 256

static uint64_t rng_state;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

struct ival {
	uint64_t first, end; /* frames */
};

/* ---- the map ---- */

static struct cairn_mem_range map[MAX_ENTRIES];
static size_t nmap;

static void add_entry(uint64_t base, uint64_t end)
{
	if (nmap < MAX_ENTRIES && base < end)
		map[nmap++] = (struct cairn_mem_range){ base, end - base };
}

/* A span [base, end) in bytes, listed as adjacent entries. Cuts fall on
 * frame boundaries mostly; one inside a frame drops that frame. */
static void add_span(uint64_t base, uint64_t end, unsigned pieces)
{
	uint64_t at = base;
	for (unsigned i = 1; i < pieces && at < end; i++) {
		uint64_t cut = at + 1 + below((end - at) / (pieces - i + 1) * 2);
		if (cut >= end)
			break;
		if (below(4))
			cut &= ~(FRAME - 1);
		if (cut <= at)
			continue;
		add_entry(at, cut);
		at = cut;
	}
	add_entry(at, end);
}

/* Where a run of spans starts: low memory, either side of 16 MiB or of
 * 4 GiB, or anywhere. */
static uint64_t site(void)
{
	switch (below(5)) {
	case 0:
		return below(2 * MiB);
	case 1:
		return 16 * MiB - below(8 * MiB);
	case 2:
		return 4 * GiB - below(64 * MiB);
	case 3:
		return 4 * GiB + below(4 * MiB);
	default:
		return below(TOP - 512 * MiB);
	}
}

static void make_map(void)
{
	nmap = 0;
	unsigned runs = 1 + (unsigned)below(4);
	/* many small pieces now and then: more entries than regions */
	unsigned many = below(3) == 0;
	uint64_t bytes = 0; /* at most 256 MiB in all: a round stays quick */
	for (unsigned s = 0; s < runs; s++) {
		uint64_t at = site();
		unsigned nspans = 1 + (unsigned)below(many ? 40 : 6);
		for (unsigned i = 0; i < nspans && at < TOP - 64 * MiB && bytes < 256 * MiB; i++) {
			uint64_t size;
			switch (below(4)) {
			case 0:
				size = 1 + below(4 * FRAME); /* a frame or so, unaligned */
				break;
			case 1:
				size = (1 + below(64)) * FRAME;
				break;
			case 2:
				size = (1 + below(8)) * 2 * MiB + below(3) * FRAME;
				break;
			default:
				size = (1 + below(256)) * 64 * KiB;
			}
			if (below(3) == 0)
				at += below(FRAME); /* unaligned base */
			bytes += size;
			add_span(at, at + size, many ? 1 + (unsigned)below(6) : 1 + (unsigned)below(3));
			at += size;
			/* the next span: adjacent, in the same frame, or past a gap */
			switch (below(4)) {
			case 0:
				break;
			case 1:
				at += below(FRAME);
				break;
			default:
				at += below(4 * MiB);
			}
		}
	}
	/* entries smaller than a frame, anywhere (overlapping others too,
	 * which is an overlap though they hold no whole frame) */
	for (unsigned i = below(4); i > 0; i--) {
		uint64_t b = nmap && below(2) ? map[below(nmap)].base + below(8 * FRAME) : below(TOP);
		uint64_t s = below(2) ? 1 + below(FRAME - 1) : FRAME - (b & (FRAME - 1)) + below(FRAME - 1);
		if ((b & ~(FRAME - 1)) + FRAME >= b + s) /* no whole frame */
			add_entry(b, b + s);
	}
	if (nmap && below(8) == 0) { /* an overlap, most of the time */
		const struct cairn_mem_range *e = &map[below(nmap)];
		uint64_t b = e->base + below(e->size);
		add_entry(b, b + 1 + below(2 * e->size + FRAME));
	}
	for (size_t i = nmap; i > 1; i--) { /* firmware order: any */
		size_t j = below(i);
		struct cairn_mem_range t = map[i - 1];
		map[i - 1] = map[j];
		map[j] = t;
	}
}

/* ---- the reference ---- */

static struct ival ref[2 * MAX_ENTRIES + 2];
static unsigned nref;

static int cmp_ival(const void *a, const void *b)
{
	const struct ival *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* The regions init must make, or its error. */
static int reference(void)
{
	struct ival t[MAX_ENTRIES];
	unsigned n = 0;
	/* the bytes first: sorted by base, each entry must start at or past
	 * the end of every entry before it */
	for (size_t i = 0; i < nmap; i++)
		if (map[i].size)
			t[n++] = (struct ival){ map[i].base, map[i].base + map[i].size };
	qsort(t, n, sizeof(t[0]), cmp_ival);
	uint64_t reach = 0; /* the end of the bytes before t[i] */
	for (unsigned i = 0; i < n; i++) {
		if (i && t[i].first < reach)
			return CAIRN_EEXIST;
		reach = t[i].end > reach ? t[i].end : reach;
	}
	n = 0;
	for (size_t i = 0; i < nmap; i++) {
		uint64_t first = (map[i].base + FRAME - 1) / FRAME;
		uint64_t end = (map[i].base + map[i].size) / FRAME;
		if (end > first)
			t[n++] = (struct ival){ first, end };
	}
	if (n == 0)
		return CAIRN_EINVAL;
	qsort(t, n, sizeof(t[0]), cmp_ival);
	nref = 0;
	for (unsigned i = 0; i < n; i++) {
		if (nref && ref[nref - 1].end > t[i].first)
			return CAIRN_EEXIST;
		if (nref && ref[nref - 1].end == t[i].first)
			ref[nref - 1].end = t[i].end;
		else
			ref[nref++] = t[i];
	}
	static const uint64_t cuts[2] = { 16 * MiB / FRAME, 4 * GiB / FRAME };
	unsigned m = nref;
	for (unsigned i = 0; i < nref; i++)
		for (unsigned c = 0; c < 2; c++)
			m += ref[i].first < cuts[c] && ref[i].end > cuts[c];
	if (m > CAIRN_MAX_REGIONS)
		return CAIRN_ENOSPC;
	struct ival out[2 * MAX_ENTRIES + 2];
	m = 0;
	for (unsigned i = 0; i < nref; i++) {
		struct ival v = ref[i];
		for (unsigned c = 0; c < 2; c++)
			if (v.first < cuts[c] && v.end > cuts[c]) {
				out[m++] = (struct ival){ v.first, cuts[c] };
				v.first = cuts[c];
			}
		out[m++] = v;
	}
	memcpy(ref, out, m * sizeof(out[0]));
	nref = m;
	return 0;
}

static unsigned area_of_frame(uint64_t fr)
{
	return fr < 16 * MiB / FRAME ? CAIRN_AREA_LOW16M
	       : fr < 4 * GiB / FRAME ? CAIRN_AREA_LOW4G : CAIRN_AREA_HIGH;
}

/* Metadata bytes for the reference regions, computed from the layout. */
static uint64_t ref_meta_bytes(void)
{
#define UP64(x) (((x) + 63) & ~63ull)
	uint64_t b = 64 + UP64(sizeof(struct cairn_frames)) + NCPUS * sizeof(struct cpu_hint);
	for (unsigned i = 0; i < nref; i++) {
		uint64_t nc = (ref[i].end - 1) / CHUNK_FRAMES - ref[i].first / CHUNK_FRAMES + 1;
		b += UP64(UP64(nc * 8) + nc * CHUNK_WORDS * 8);
	}
	return b;
#undef UP64
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

/* ---- one round ---- */

static uint8_t *seen; /* one bit per frame of TOP */
static unsigned outcomes[5], many_entries; /* created, EEXIST, ENOSPC, ENOMEM, EINVAL */
static uint64_t boot_skipped; /* entries of no whole frame in created instances */
static cairn_phys_t *got;

static bool in_ref(uint64_t fr)
{
	for (unsigned i = 0; i < nref; i++)
		if (fr >= ref[i].first && fr < ref[i].end)
			return true;
	return false;
}

/* Free order-k blocks at multiples of 2^a frames in area `area` (they
 * cannot overlap: a >= k), with [cfirst, cend) in use. */
static uint64_t ref_aligned(unsigned area, unsigned k, unsigned a, uint64_t cfirst, uint64_t cend)
{
	uint64_t n = 0, step = 1ull << a, len = 1ull << k;
	for (unsigned i = 0; i < nref; i++) {
		if (area_of_frame(ref[i].first) != area)
			continue;
		for (uint64_t p = (ref[i].first + step - 1) & ~(step - 1); p + len <= ref[i].end;
		     p += step)
			n += p + len <= cfirst || p >= cend;
	}
	return n;
}

/* Aligned requests (alignment above the size too) until ENOMEM: each block
 * free, aligned, in one region of an accepted area, the areas taken highest
 * first, and exactly as many as the reference has. */
static void aligned_exhaust(struct cairn_frames *f, unsigned round, uint64_t cfirst, uint64_t cend)
{
	static const unsigned pref[CAIRN_AREAS] = { CAIRN_AREA_HIGH, CAIRN_AREA_LOW4G,
						    CAIRN_AREA_LOW16M };
	unsigned k = below(4) ? (unsigned)below(9) : (unsigned)below(CAIRN_MAX_ORDER + 1);
	unsigned a = k + (unsigned)below(CAIRN_MAX_ORDER + 1 - k);
	if (below(2) && k < CAIRN_HUGE_ORDER) /* below 2 MiB, aligned to 2 MiB or more */
		a = CAIRN_HUGE_ORDER + (unsigned)below(4);
	unsigned flags = (unsigned)below(8); /* 0: any area */
	unsigned areas = flags ? flags : CAIRN_F_ANY;
	uint64_t left[CAIRN_AREAS], want = 0;
	for (unsigned ar = 0; ar < CAIRN_AREAS; ar++) {
		left[ar] = areas & (1u << ar) ? ref_aligned(ar, k, a, cfirst, cend) : 0;
		want += left[ar];
	}
	if (want > 4096)
		return;
	uint64_t n = 0;
	cairn_phys_t p;
	int err;
	while ((err = cairn_frames_alloc_aligned(f, k, a, flags, &p)) == 0) {
		uint64_t fr = p / FRAME, len = 1ull << k;
		unsigned ar = area_of_frame(fr);
		bool in = false;
		for (unsigned i = 0; i < nref; i++)
			in |= fr >= ref[i].first && fr + len <= ref[i].end;
		CHECK(in && fr % (1ull << a) == 0 && (areas & (1u << ar)));
		CHECK(fr + len <= cfirst || fr >= cend);
		for (unsigned i = 0; i < CAIRN_AREAS && pref[i] != ar; i++)
			CHECK_EQ(left[pref[i]], 0); /* a higher accepted area had one */
		if (left[ar])
			left[ar]--;
		got[n++] = p;
		if (!in || n > want)
			break;
	}
	if (n != want)
		fprintf(stderr, "round %u: order %u align %u areas %#x: %llu blocks, expected %llu\n",
			round, k, a, areas, (unsigned long long)n, (unsigned long long)want);
	CHECK_EQ(n, want);
	CHECK(err == 0 || err == CAIRN_ENOMEM);
	CHECK_EQ(cairn_frames_validate(f), 0);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(cairn_frames_free(f, got[i], k), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
}

/* ---- adds after init, judged on the bytes the map listed ---- */

static unsigned probes[3]; /* EEXIST, accepted, other */

/* What cairn_frames_add_region of [base, base + size) must answer: every
 * region holds the bytes of the entries merged into it, partial frames
 * too, so a byte in an entry of a whole frame is EEXIST (an entry of no
 * whole frame is in no region); a range across an area line is EINVAL
 * first, and a full table ENOSPC last. */
static int probe_want(cairn_phys_t base, uint64_t size)
{
	uint64_t first = (base + FRAME - 1) / FRAME, end = (base + size) / FRAME;
	if (area_of_frame(first) != area_of_frame(end - 1))
		return CAIRN_EINVAL;
	for (size_t i = 0; i < nmap; i++) {
		const struct cairn_mem_range *e = &map[i];
		if ((e->base + FRAME - 1) / FRAME < (e->base + e->size) / FRAME &&
		    e->base < base + size && base < e->base + e->size)
			return CAIRN_EEXIST;
	}
	return nref == CAIRN_MAX_REGIONS ? CAIRN_ENOSPC : 0;
}

static void probe(struct cairn_frames *f, unsigned round, cairn_phys_t base, uint64_t size)
{
	static char meta[4096];
	REQUIRE(cairn_frames_region_meta_size(base, size) <= sizeof(meta));
	int want = probe_want(base, size);
	int err = cairn_frames_add_region(f, base, size, meta, sizeof(meta));
	if (err != want)
		fprintf(stderr, "round %u: add %#llx + %#llx: %d, expected %d\n", round,
			(unsigned long long)base, (unsigned long long)size, err, want);
	CHECK_EQ(err, want);
	probes[err == CAIRN_EEXIST ? 0 : err == 0 ? 1 : 2]++;
	if (!err) { /* out again: the round goes on with the map's regions */
		cairn_phys_t first = (base + FRAME - 1) & ~(FRAME - 1);
		CHECK_EQ(cairn_frames_remove_region(f, first), 0);
		CHECK_EQ(cairn_frames_reclaim_region(f, first), 0);
	}
}

/* Ranges of two frames that share the first or the last byte of a few
 * entries, or only touch them. */
static void probe_edges(struct cairn_frames *f, unsigned round)
{
	for (unsigned n = 0; n < 8 && nmap; n++) {
		const struct cairn_mem_range *e = &map[below(nmap)];
		cairn_phys_t end = e->base + e->size;
		if (e->base >= 2 * FRAME) {
			probe(f, round, e->base + 1 - 2 * FRAME, 2 * FRAME);
			probe(f, round, e->base - 2 * FRAME, 2 * FRAME);
		}
		probe(f, round, end - 1, 2 * FRAME);
		probe(f, round, end, 2 * FRAME);
	}
}

static void round_check(unsigned round, bool carve)
{
	make_map();
	int want = reference();
	size_t msize = cairn_frames_meta_size(map, nmap, NCPUS);
	if (want) {
		CHECK_EQ(msize, 0);
	} else {
		CHECK(msize != 0);
		CHECK_EQ(msize, ref_meta_bytes());
	}
	/* carved: the top of the highest region larger than the metadata */
	uint64_t cfirst = 0, cend = 0;
	if (!want && carve) {
		uint64_t frames = (msize + FRAME - 1) / FRAME;
		for (unsigned i = nref; i-- > 0;)
			if (ref[i].end - ref[i].first > frames) {
				cend = ref[i].end;
				cfirst = cend - frames;
				break;
			}
		if (!cend)
			want = CAIRN_ENOMEM;
	}
	struct cairn_frames_config cfg = { .ncpus = NCPUS };
	void *meta = NULL;
	if (!carve) {
		cfg.meta_size = msize ? msize : 1 * MiB;
		cfg.meta = meta = malloc(cfg.meta_size);
		REQUIRE(meta);
	}
	struct cairn_frames *f = (struct cairn_frames *)0x1234;
	int err = cairn_frames_init(&f, map, nmap, &cfg);
	if (err != want) {
		fprintf(stderr, "round %u: init %d, expected %d (%zu entries, %u regions)\n", round,
			err, want, nmap, nref);
		for (size_t i = 0; i < nmap; i++)
			fprintf(stderr, "  %#llx + %#llx\n", (unsigned long long)map[i].base,
				(unsigned long long)map[i].size);
	}
	CHECK_EQ(err, want);
	outcomes[want == 0 ? 0 : want == CAIRN_EEXIST ? 1 : want == CAIRN_ENOSPC ? 2
		 : want == CAIRN_ENOMEM ? 3 : 4]++;
	many_entries += !want && nmap > CAIRN_MAX_REGIONS;
	if (err) {
		CHECK(f == (struct cairn_frames *)0x1234);
		free(meta);
		return;
	}
	if (carve)
		CHECK((uintptr_t)f == (uintptr_t)cairn_port_phys_to_virt(cfirst * FRAME));
	else
		CHECK((char *)f >= (char *)meta && (char *)f < (char *)meta + 64);
	CHECK_EQ(cairn_frames_validate(f), 0);

	/* the statistics: regions, totals, free frames and blocks */
	struct cairn_frames_stats st, st0;
	cairn_frames_stats(f, &st0);
	uint64_t total[CAIRN_AREAS] = { 0 }, freef[CAIRN_AREAS] = { 0 };
	uint64_t blocks[CAIRN_AREAS][CAIRN_MAX_ORDER + 1] = { { 0 } };
	for (unsigned i = 0; i < nref; i++) {
		unsigned a = area_of_frame(ref[i].first);
		CHECK_EQ(area_of_frame(ref[i].end - 1), a);
		total[a] += ref[i].end - ref[i].first;
		freef[a] += ref[i].end - ref[i].first;
		if (cend > ref[i].first && cend <= ref[i].end) { /* holds the carved frames */
			freef[a] -= cend - cfirst;
			decompose(ref[i].first, cfirst, blocks);
		} else {
			decompose(ref[i].first, ref[i].end, blocks);
		}
	}
	CHECK_EQ(st0.regions, nref);
	CHECK_EQ(st0.meta_bytes + 64, msize);
	/* what the map listed outside whole frames: entries of none skipped
	 * and counted, every entry's partial frames counted in bytes */
	uint64_t skipped = 0, skipped_bytes = 0, listed = 0;
	for (size_t i = 0; i < nmap; i++) {
		uint64_t first = (map[i].base + FRAME - 1) / FRAME;
		uint64_t end = (map[i].base + map[i].size) / FRAME;
		listed += map[i].size;
		if (end <= first) {
			skipped += map[i].size != 0;
			skipped_bytes += map[i].size;
		} else {
			skipped_bytes += map[i].size - (end - first) * FRAME;
		}
	}
	CHECK_EQ(st0.boot_skipped_entries, skipped);
	CHECK_EQ(st0.boot_skipped_bytes, skipped_bytes);
	CHECK_EQ(listed, st0.boot_skipped_bytes + (total[0] + total[1] + total[2]) * FRAME);
	boot_skipped += skipped;
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		CHECK_EQ(st0.total_frames[a], total[a]);
		CHECK_EQ(st0.free_frames[a], freef[a]);
		for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++)
			if (st0.free_blocks[a][k] != blocks[a][k]) {
				fprintf(stderr, "round %u: area %u order %u: %llu free blocks, expected %llu\n",
					round, a, k, (unsigned long long)st0.free_blocks[a][k],
					(unsigned long long)blocks[a][k]);
				CHECK(0);
			}
	}

	/* edges: the carved frames are in use, frames outside the map are not
	 * the allocator's (partial frames, gaps, past the top) */
	if (carve) {
		CHECK_EQ(cairn_frames_alloc_at(f, cfirst * FRAME, 0), CAIRN_EBUSY);
		CHECK_EQ(cairn_frames_alloc_at(f, (cend - 1) * FRAME, 0), CAIRN_EBUSY);
		/* and no caller's to free: refused, nothing changed */
		cairn_host_reports_quiet(1);
		CHECK_EQ(cairn_frames_free(f, cfirst * FRAME, 0), CAIRN_EMETA);
		CHECK_EQ(cairn_frames_free(f, (cend - 1) * FRAME, 0), CAIRN_EMETA);
		CHECK_EQ(cairn_frames_unreserve(f, cfirst * FRAME, (cend - cfirst) * FRAME),
			 CAIRN_EMETA);
		cairn_host_reports_quiet(0);
	}
	for (unsigned i = 0; i < nref; i++) {
		if (!in_ref(ref[i].end))
			CHECK_EQ(cairn_frames_alloc_at(f, ref[i].end * FRAME, 0), CAIRN_ERANGE);
		if (ref[i].first && !in_ref(ref[i].first - 1))
			CHECK_EQ(cairn_frames_alloc_at(f, (ref[i].first - 1) * FRAME, 0), CAIRN_ERANGE);
	}
	CHECK_EQ(cairn_frames_validate(f), 0);
	probe_edges(f, round);
	cairn_frames_stats(f, &st);
	CHECK(memcmp(&st, &st0, sizeof(st)) == 0);
	CHECK_EQ(cairn_frames_validate(f), 0);

	for (unsigned i = 0; i < 4; i++)
		aligned_exhaust(f, round, cfirst, cend);
	cairn_frames_stats(f, &st);
	CHECK(memcmp(&st, &st0, sizeof(st)) == 0);

	/* every free frame exactly once, nothing else */
	uint64_t want_free = freef[0] + freef[1] + freef[2], n = 0;
	for (;;) {
		size_t k = cairn_frames_alloc_bulk(f, 0, got + n, 4096);
		if (!k)
			break;
		for (size_t i = n; i < n + k; i++) {
			uint64_t fr = got[i] / FRAME;
			CHECK(got[i] % FRAME == 0 && fr < TOP / FRAME);
			if (fr >= TOP / FRAME)
				continue;
			CHECK(in_ref(fr) && !(fr >= cfirst && fr < cend));
			CHECK(!(seen[fr / 8] & (1u << (fr % 8))));
			seen[fr / 8] |= (uint8_t)(1u << (fr % 8));
		}
		n += k;
		REQUIRE(n <= want_free);
	}
	CHECK_EQ(n, want_free);
	cairn_frames_stats(f, &st);
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		CHECK_EQ(st.free_frames[a], 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	size_t done = 0;
	CHECK_EQ(cairn_frames_free_bulk(f, got, n, &done), 0);
	CHECK_EQ(done, n);
	for (uint64_t i = 0; i < n; i++)
		seen[got[i] / FRAME / 8] = 0;
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_frames_stats(f, &st);
	CHECK(memcmp(&st, &st0, sizeof(st)) == 0);
	free(meta);
}

static bool init_ok(struct cairn_frames **f, const struct cairn_frames_config *cfg)
{
	int err = cairn_frames_init(f, map, nmap, cfg);
	CHECK_EQ(err, 0);
	return !err;
}

/* Maps chosen by hand: the cases a random map reaches rarely. */
static void fixed_maps(void)
{
	struct cairn_frames_config cfg = { .ncpus = NCPUS };
	struct cairn_frames *f;
	struct cairn_frames_stats st;

	/* 200 entries of 64 KiB, all adjacent: one region, as one entry */
	nmap = 0;
	for (unsigned i = 0; i < 200; i++)
		add_entry(64 * MiB + i * 64 * KiB, 64 * MiB + (i + 1) * 64 * KiB);
	CHECK(cairn_frames_meta_size(map, nmap, NCPUS) != 0);
	if (init_ok(&f, &cfg)) {
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 1);
		CHECK_EQ(st.total_frames[CAIRN_AREA_LOW4G], 200 * 16);
		CHECK_EQ(cairn_frames_validate(f), 0);
	}

	/* the same in reverse order, with a 3000-byte entry in every gap's
	 * place: still one region */
	nmap = 0;
	for (unsigned i = 200; i-- > 0;) {
		add_entry(128 * MiB + i * 64 * KiB, 128 * MiB + (i + 1) * 64 * KiB);
		add_entry(512 * MiB + i * 64 * KiB + 100, 512 * MiB + i * 64 * KiB + 3100);
	}
	if (init_ok(&f, &cfg)) {
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 1);
		/* skipped, and said so (the map holds MAX_ENTRIES of them, a
		 * half of no whole frame) */
		CHECK_EQ(st.boot_skipped_entries, nmap / 2);
		CHECK_EQ(st.boot_skipped_bytes, nmap / 2 * 3000);
		CHECK_EQ(cairn_frames_validate(f), 0);
		/* fixed at init: an add does not change it */
		static char rmeta[4096];
		CHECK_EQ(cairn_frames_add_region(f, 1 * GiB + 100, 4 * MiB, rmeta, sizeof(rmeta)), 0);
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 2);
		CHECK_EQ(st.boot_skipped_entries, nmap / 2);
		CHECK_EQ(st.boot_skipped_bytes, nmap / 2 * 3000);
	}

	/* partial frames around whole ones are counted in bytes only; an
	 * empty entry is nothing */
	nmap = 0;
	add_entry(64 * MiB + 100, 64 * MiB + 64 * FRAME + 7); /* 63 frames, 3996 + 7 bytes */
	add_entry(80 * MiB, 80 * MiB);                         /* empty */
	add_entry(96 * MiB + FRAME - 1, 96 * MiB + FRAME + 1); /* 2 bytes in two frames */
	if (init_ok(&f, &cfg)) {
		cairn_frames_stats(f, &st);
		CHECK_EQ(st.regions, 1);
		CHECK_EQ(st.boot_skipped_entries, 1);
		CHECK_EQ(st.boot_skipped_bytes, (FRAME - 100) + 7 + 2);
	}

	/* 65 entries past a frame apart: 65 regions, one too many; but an
	 * overlap among them is the map's first defect */
	nmap = 0;
	for (unsigned i = 0; i < 65; i++)
		add_entry(64 * MiB + i * 128 * KiB, 64 * MiB + i * 128 * KiB + 64 * KiB);
	CHECK_EQ(cairn_frames_init(&f, map, nmap, &cfg), CAIRN_ENOSPC);
	add_entry(64 * MiB + 32 * KiB, 64 * MiB + 96 * KiB);
	CHECK_EQ(cairn_frames_init(&f, map, nmap, &cfg), CAIRN_EEXIST);

	/* blocks aligned to 2 MiB and more in a chunk the region holds only in
	 * part: at the start of the area above 16 MiB, and a region smaller
	 * than a chunk at an aligned base */
	nmap = 0;
	add_entry(15 * MiB, 17 * MiB);
	add_entry(6 * GiB, 6 * GiB + 1 * MiB);
	if (init_ok(&f, &cfg)) {
		cairn_phys_t p = 0;
		int err = cairn_frames_alloc_aligned(f, 0, 9, CAIRN_F_LOW4G, &p);
		CHECK_EQ(err, 0);
		if (!err) {
			CHECK_EQ(p, 16 * MiB);
			CHECK_EQ(cairn_frames_alloc_aligned(f, 0, 9, CAIRN_F_LOW4G, &p),
				 CAIRN_ENOMEM);
			CHECK_EQ(cairn_frames_free(f, 16 * MiB, 0), 0);
		}
		err = cairn_frames_alloc_aligned(f, 7, 12, CAIRN_F_HIGH, &p);
		CHECK_EQ(err, 0);
		if (!err) {
			CHECK_EQ(p, 6 * GiB);
			CHECK_EQ(cairn_frames_free(f, 6 * GiB, 7), 0);
		}
		CHECK_EQ(cairn_frames_validate(f), 0);
	}

	/* the first range too small for the metadata, the second holds it */
	nmap = 0;
	add_entry(4 * GiB, 4 * GiB + 2 * FRAME);
	add_entry(1 * MiB, 8 * MiB);
	size_t ms = cairn_frames_meta_size(map, nmap, NCPUS);
	if (init_ok(&f, &cfg)) {
		CHECK((uintptr_t)f == (uintptr_t)cairn_port_phys_to_virt(
					      8 * MiB - ((ms + FRAME - 1) & ~(FRAME - 1))));
		CHECK_EQ(cairn_frames_validate(f), 0);
	}
}

/* A map of many entries (BIG_N), as a firmware that lists every range
 * apart makes: 60 spans of entries that meet (on frame lines and inside
 * frames), with entries of no whole frame and empty ones among them.
 * Walked as listed (sorted), shuffled, and sorted but for one pair, it
 * must give the same instance: meta_size, statistics and validate; and
 * one overlap added, in each order, EEXIST. Not timed: only the answer
 * counts here. */
#define BIG_N 3000u

static void big_shuffle(struct cairn_mem_range *m, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = below(i);
		struct cairn_mem_range t = m[i - 1];
		m[i - 1] = m[j];
		m[j] = t;
	}
}

static int big_init(const struct cairn_mem_range *m, size_t n, struct cairn_frames_stats *st,
		    size_t *msize)
{
	*msize = cairn_frames_meta_size(m, n, NCPUS);
	void *meta = malloc(*msize ? *msize : 1);
	REQUIRE(meta);
	struct cairn_frames_config cfg = { .ncpus = NCPUS, .meta = meta, .meta_size = *msize };
	struct cairn_frames *f = NULL;
	int err = cairn_frames_init(&f, m, n, &cfg);
	if (!err) {
		cairn_frames_stats(f, st);
		CHECK_EQ(cairn_frames_validate(f), 0);
	}
	free(meta);
	return err;
}

static void big_maps(void)
{
	struct cairn_mem_range *m = malloc(BIG_N * sizeof(*m));
	struct cairn_mem_range *s = malloc(BIG_N * sizeof(*s));
	REQUIRE(m && s);
	size_t n = 0;
	uint64_t at = 5 * GiB;
	while (n < BIG_N) {
		/* a gap, with an entry of no whole frame in it */
		at += MiB + below(FRAME);
		m[n++] = (struct cairn_mem_range){ at, below(FRAME - at % FRAME) };
		at = (at + (1 + below(4)) * MiB) & ~(FRAME - 1);
		/* a span: entries that meet on frame lines, the first and the
		 * last reaching into the partial frames around it */
		uint64_t lead = below(FRAME);
		for (unsigned i = 0; i < BIG_N / 60 && n < BIG_N; i++) {
			uint64_t len = below(16) ? FRAME * (1 + below(8)) : 0; /* empty: left out */
			m[n++] = (struct cairn_mem_range){ at - lead, len + lead };
			at += len;
			lead = 0;
		}
		m[n - 1].size += below(FRAME);
		at += FRAME;
	}
	REQUIRE(at < TOP + 64 * GiB);
	struct cairn_frames_stats st_sorted, st;
	size_t ms_sorted, ms;
	CHECK_EQ(big_init(m, n, &st_sorted, &ms_sorted), 0);
	CHECK(st_sorted.regions >= 50 && st_sorted.regions <= CAIRN_MAX_REGIONS);

	memcpy(s, m, n * sizeof(*m));
	big_shuffle(s, n);
	memset(&st, 0, sizeof(st));
	CHECK_EQ(big_init(s, n, &st, &ms), 0);
	CHECK_EQ(ms, ms_sorted);
	CHECK(memcmp(&st, &st_sorted, sizeof(st)) == 0);

	/* sorted but for one pair of neighbours */
	memcpy(s, m, n * sizeof(*m));
	s[n / 2] = m[n / 2 + 1];
	s[n / 2 + 1] = m[n / 2];
	memset(&st, 0, sizeof(st));
	CHECK_EQ(big_init(s, n, &st, &ms), 0);
	CHECK_EQ(ms, ms_sorted);
	CHECK(memcmp(&st, &st_sorted, sizeof(st)) == 0);

	/* one byte shared with the entry before, in sorted order and not */
	size_t i = n / 3;
	while (!m[i].size || !m[i - 1].size)
		i++;
	m[i].base--;
	m[i].size++;
	CHECK_EQ(big_init(m, n, &st, &ms), CAIRN_EEXIST);
	CHECK_EQ(ms, 0);
	memcpy(s, m, n * sizeof(*m));
	big_shuffle(s, n);
	CHECK_EQ(big_init(s, n, &st, &ms), CAIRN_EEXIST);
	m[i].base++;
	m[i].size--;
	/* two entries at one base: an overlap, the first listed or not */
	m[i] = (struct cairn_mem_range){ m[i - 1].base, m[i].size ? 1 : 0 };
	CHECK_EQ(big_init(m, n, &st, &ms), CAIRN_EEXIST);
	free(m);
	free(s);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 300;
	rng_state = seed;
	REQUIRE(cairn_host_init(NCPUS, 0, TOP) == 0);
	seen = calloc(TOP / FRAME / 8, 1);
	got = malloc(TOP / FRAME * sizeof(*got));
	REQUIRE(seen && got);
	fixed_maps();
	big_maps();
	int fixed_failures = check_failures; /* the random rounds stop at their first */
	for (unsigned r = 0; r < rounds && check_failures == fixed_failures; r++)
		round_check(r, r % 2);
	printf("frames_boot: seed %llu, %u rounds: %u created (%u from more entries than "
	       "regions), %u EEXIST, %u ENOSPC, %u ENOMEM, %u EINVAL\n",
	       (unsigned long long)seed, rounds, outcomes[0], many_entries, outcomes[1],
	       outcomes[2], outcomes[3], outcomes[4]);
	printf("frames_boot: adds after init: %u EEXIST, %u accepted, %u other\n", probes[0],
	       probes[1], probes[2]);
	printf("frames_boot: %llu entries of no whole frame skipped in created instances\n",
	       (unsigned long long)boot_skipped);
	CHECK(probes[0] && probes[1]); /* both answers met */
	return check_done("frames_boot");
}
