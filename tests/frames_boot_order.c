/* SPDX-License-Identifier: MIT */
/*
 * Bootstrap does not depend on the order of the map: a model check.
 *
 * Each round makes a random map as firmware lists memory (runs of entries
 * that meet on frame lines or inside frames, holes between runs, entries
 * of no whole frame in the holes, empty entries, runs across 16 MiB and
 * 4 GiB, and now and then an overlap: a byte in two entries, or two
 * entries at one base), from a few entries to several hundred. The model
 * is the same map listed by base: whatever cairn_frames_init and
 * cairn_frames_meta_size answer for it, they must answer for the map
 * shuffled, reversed, and listed by base but for one pair, and a created
 * instance must be the same in every byte of its metadata (the region
 * table, every chunk entry, every frame's bitmap bits; the caller's
 * memory at one address, or carved at the same place), with the same
 * statistics and validate passing. The map is only read: it is the same
 * after each call.
 *
 * Then large maps (MANY entries), listed in reverse and shuffled, must
 * give the instance the map listed by base gives; their times are
 * printed, not judged. And a large map with two entries at one base is
 * EEXIST in every order, for every place of the pair among the first
 * thousand entries in address order at and around each 64th (where a walk
 * that sorts a batch at a time may cut).
 *
 * usage: frames_boot_order [seed] [rounds]
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/frames_layout.h"
#include "check.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE
#define TOP (8 * GiB) /* the simulated physical memory */
#define NCPUS 2
#define MAX_ENTRIES 4096
#define MANY 2000u

static uint64_t rng_state;

static uint64_t rnd(void)
{
	return splitmix64(&rng_state);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* ---- the map ---- */

static struct cairn_mem_range map[MAX_ENTRIES];
static size_t nmap;

static void add_entry(uint64_t base, uint64_t end)
{
	if (nmap < MAX_ENTRIES && base <= end && end <= TOP)
		map[nmap++] = (struct cairn_mem_range){ base, end - base };
}

/* An entry of no whole frame inside [lo, hi), if one fits. */
static void add_tiny(uint64_t lo, uint64_t hi)
{
	if (hi <= lo + 2)
		return;
	uint64_t b = lo + below(hi - lo - 1);
	uint64_t room = FRAME - 1 - (b & (FRAME - 1)); /* to the frame's end */
	uint64_t s = below(2) ? 1 + below(room + 1) : 1 + below(FRAME - 1);
	if (b + s > hi)
		s = hi - b;
	if (((b + FRAME - 1) & ~(FRAME - 1)) + FRAME > b + s) /* no whole frame */
		add_entry(b, b + s);
}

/* A run of entries that meet, from at; returns its end. Most pieces end
 * on a frame line (the run is then one region); now and then one ends
 * inside a frame, or is empty. */
static uint64_t add_run(uint64_t at, unsigned pieces)
{
	for (unsigned i = 0; i < pieces; i++) {
		uint64_t size;
		switch (below(16)) {
		case 0:
			size = 1 + below(2 * FRAME); /* about a frame, unaligned */
			break;
		case 1:
			size = 0; /* an empty entry */
			break;
		case 2:
		case 3:
			size = (1 + below(4)) * 2 * MiB + below(3) * FRAME;
			break;
		case 4:
		case 5:
		case 6:
			size = (1 + below(64)) * 16 * KiB;
			break;
		default:
			size = (1 + below(16)) * FRAME;
		}
		if (size > FRAME + 1 || below(2)) /* to the next frame line */
			size = ((at + size + FRAME - 1) & ~(FRAME - 1)) - at;
		add_entry(at, at + size);
		at += size;
	}
	return at;
}

/* Where a run starts: low memory, near 16 MiB, near 4 GiB, or anywhere. */
static uint64_t site(void)
{
	switch (below(4)) {
	case 0:
		return below(4 * MiB);
	case 1:
		return 16 * MiB - below(4 * MiB);
	case 2:
		return 4 * GiB - below(16 * MiB);
	default:
		return below(TOP - 1 * GiB);
	}
}

static void make_map(void)
{
	nmap = 0;
	unsigned clusters = 1 + (unsigned)below(3);
	/* from a few entries to several hundred: more than one batch of
	 * whatever bootstrap sorts at a time */
	unsigned size_class = (unsigned)below(3);
	unsigned max_pieces = size_class == 0 ? 4 : size_class == 1 ? 16 : 64;
	uint64_t end = 0; /* of the cluster before: clusters do not overlap */
	for (unsigned c = 0; c < clusters; c++) {
		uint64_t at = site();
		if (at < end)
			at = end + below(64 * MiB);
		if (below(2))
			at += below(FRAME);
		/* now and then more runs than the table has regions */
		unsigned runs = below(8) ? 1 + (unsigned)below(12) : 20 + (unsigned)below(40);
		for (unsigned r = 0; r < runs && at < TOP - 512 * MiB; r++) {
			at = add_run(at, 1 + (unsigned)below(max_pieces));
			/* the hole to the next run: none (the runs meet), inside
			 * a frame, or up to 2 MiB with entries of no whole frame */
			switch (below(4)) {
			case 0:
				break;
			case 1:
				at += below(FRAME);
				break;
			default: {
				uint64_t gap = 1 + below(2 * MiB);
				for (unsigned t = (unsigned)below(4); t > 0; t--) /* apart */
					add_tiny(at + 1 + (t - 1) * gap / 3, at + t * gap / 3);
				at += gap;
			}
			}
		}
		end = at;
	}
	if (nmap && below(6) == 0) { /* an overlap: a byte in two entries */
		const struct cairn_mem_range *e = &map[below(nmap)];
		if (e->size) {
			uint64_t b = below(2) ? e->base : e->base + below(e->size);
			add_entry(b, b + 1 + below(e->size + FRAME));
		}
	}
}

static int cmp_base(const void *a, const void *b)
{
	const struct cairn_mem_range *x = a, *y = b;
	return x->base < y->base ? -1 : x->base > y->base;
}

static void shuffle(struct cairn_mem_range *m, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = below(i);
		struct cairn_mem_range t = m[i - 1];
		m[i - 1] = m[j];
		m[j] = t;
	}
}

/* ---- one instance ---- */

/* What a bootstrap gave: its answers and, if created, every byte of its
 * metadata. */
struct outcome {
	int err;
	size_t msize;
	struct cairn_frames_stats st;
	uintptr_t at;    /* where the instance is */
	uint8_t *bytes;  /* its metadata, msize bytes (carved: whole frames) */
	size_t nbytes;
	double seconds;  /* meta_size and init */
};

static uint8_t *caller_meta; /* one buffer, so the pointers in it agree */
static size_t caller_meta_size;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Bootstrap from m[0..n). carve: the metadata from the map's memory,
 * where fill_at (from an earlier bootstrap of the same memory, else 0) is
 * filled with a pattern first, so that a byte not written shows. */
static void boot(const struct cairn_mem_range *m, size_t n, bool carve, struct outcome *o,
		 uintptr_t fill_at, size_t fill_bytes)
{
	struct cairn_mem_range *copy = malloc((n ? n : 1) * sizeof(*m));
	REQUIRE(copy);
	memcpy(copy, m, n * sizeof(*m));
	memset(o, 0, sizeof(*o));
	struct cairn_frames_config cfg = { .ncpus = NCPUS };
	if (!carve) {
		memset(caller_meta, 0xa5, caller_meta_size);
		cfg.meta = caller_meta;
	} else if (fill_at) {
		memset((void *)fill_at, 0xa5, fill_bytes);
	}
	double t0 = now();
	o->msize = cairn_frames_meta_size(m, n, NCPUS);
	REQUIRE(o->msize <= caller_meta_size);
	cfg.meta_size = carve ? 0 : o->msize ? o->msize : caller_meta_size;
	struct cairn_frames *f = (struct cairn_frames *)0x1234;
	o->err = cairn_frames_init(&f, m, n, &cfg);
	o->seconds = now() - t0;
	CHECK(memcmp(copy, m, n * sizeof(*m)) == 0); /* only read */
	free(copy);
	if (o->err) {
		CHECK(f == (struct cairn_frames *)0x1234);
		return;
	}
	CHECK_EQ(cairn_frames_validate(f), 0);
	cairn_frames_stats(f, &o->st);
	o->at = (uintptr_t)f;
	o->nbytes = carve ? (o->msize + FRAME - 1) & ~(FRAME - 1) : o->msize - 64;
	o->bytes = malloc(o->nbytes);
	REQUIRE(o->bytes);
	memcpy(o->bytes, f, o->nbytes);
}

/* The same answers and the same instance, byte for byte. */
static bool same(const struct outcome *a, const struct outcome *b, const char *what,
		 unsigned round)
{
	bool ok = a->err == b->err && a->msize == b->msize;
	if (ok && !a->err)
		ok = a->at == b->at && a->nbytes == b->nbytes &&
		     memcmp(&a->st, &b->st, sizeof(a->st)) == 0 &&
		     memcmp(a->bytes, b->bytes, a->nbytes) == 0;
	if (!ok)
		fprintf(stderr, "round %u, %s (%zu entries): init %d meta_size %zu, listed by base "
			"%d %zu\n", round, what, nmap, b->err, b->msize, a->err, a->msize);
	CHECK(ok);
	return ok;
}

static void dump_map(const struct cairn_mem_range *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "  %#llx + %#llx\n", (unsigned long long)m[i].base,
			(unsigned long long)m[i].size);
}

static unsigned outcomes[5]; /* created, EEXIST, ENOSPC, ENOMEM, EINVAL */
static unsigned batches;     /* rounds of more than 256 entries */

static void round_check(unsigned round)
{
	static struct cairn_mem_range sorted[MAX_ENTRIES], other[MAX_ENTRIES];
	make_map();
	shuffle(map, nmap);
	memcpy(sorted, map, nmap * sizeof(map[0]));
	qsort(sorted, nmap, sizeof(sorted[0]), cmp_base);
	bool carve = round % 2;
	struct outcome want, got;
	boot(sorted, nmap, carve, &want, 0, 0);
	if (carve && !want.err) { /* again, over the pattern the others meet */
		uintptr_t at = want.at;
		size_t nbytes = want.nbytes;
		free(want.bytes);
		boot(sorted, nmap, carve, &want, at, nbytes);
	}
	outcomes[want.err == 0 ? 0 : want.err == CAIRN_EEXIST ? 1 : want.err == CAIRN_ENOSPC ? 2
		 : want.err == CAIRN_ENOMEM ? 3 : 4]++;
	batches += nmap > 256;
	for (unsigned order = 0; order < 3; order++) {
		const char *what;
		if (order == 0) {
			what = "shuffled";
			memcpy(other, map, nmap * sizeof(map[0]));
		} else if (order == 1) {
			what = "reversed";
			for (size_t i = 0; i < nmap; i++)
				other[i] = sorted[nmap - 1 - i];
		} else {
			what = "one pair swapped";
			memcpy(other, sorted, nmap * sizeof(map[0]));
			if (nmap > 1) {
				size_t i = below(nmap - 1);
				other[i] = sorted[i + 1];
				other[i + 1] = sorted[i];
			}
		}
		boot(other, nmap, carve, &got, want.at, want.nbytes);
		bool ok = same(&want, &got, what, round);
		free(got.bytes);
		if (!ok) {
			dump_map(other, nmap);
			break;
		}
	}
	free(want.bytes);
}

/* ---- large maps ---- */

/* MANY entries: runs of entries that meet on frame lines, empty entries
 * among them, and entries of no whole frame in the holes between runs;
 * about 40 runs, so the regions fit the table. */
static void make_large(void)
{
	nmap = 0;
	uint64_t at = 1 * MiB;
	while (nmap < MANY) {
		uint64_t gap = 64 * KiB + below(MiB);
		add_tiny(at + 1, at + gap);
		at = (at + gap + FRAME - 1) & ~(FRAME - 1);
		for (unsigned i = 0; i < MANY / 40 && nmap < MANY; i++) {
			uint64_t size = below(12) ? FRAME * (1 + below(8)) : 0;
			add_entry(at, at + size);
			at += size;
		}
	}
	REQUIRE(at < TOP);
}

static void large_maps(void)
{
	static struct cairn_mem_range sorted[MAX_ENTRIES], other[MAX_ENTRIES];
	for (unsigned carve = 0; carve < 2; carve++) {
		make_large();
		memcpy(sorted, map, nmap * sizeof(map[0]));
		struct outcome want, got;
		boot(sorted, nmap, carve, &want, 0, 0);
		if (carve && !want.err) {
			uintptr_t at = want.at;
			size_t nbytes = want.nbytes;
			free(want.bytes);
			boot(sorted, nmap, carve, &want, at, nbytes);
		}
		CHECK_EQ(want.err, 0);
		CHECK(want.st.regions > 30);
		for (size_t i = 0; i < nmap; i++)
			other[i] = sorted[nmap - 1 - i];
		boot(other, nmap, carve, &got, want.at, want.nbytes);
		same(&want, &got, "large, reversed", 0);
		printf("frames_boot_order: %zu entries, %s metadata: listed by base %.3f ms, "
		       "reversed %.3f ms",
		       nmap, carve ? "carved" : "caller's", want.seconds * 1e3, got.seconds * 1e3);
		free(got.bytes);
		memcpy(other, sorted, nmap * sizeof(map[0]));
		shuffle(other, nmap);
		boot(other, nmap, carve, &got, want.at, want.nbytes);
		same(&want, &got, "large, shuffled", 0);
		printf(", shuffled %.3f ms\n", got.seconds * 1e3);
		free(got.bytes);
		free(want.bytes);
	}
	/* two entries at one base, the j-th non-empty entry in address order
	 * and one added: EEXIST, listed by base or not, wherever j falls
	 * among whatever batches the walk takes (about every 64th) */
	make_large();
	size_t nz[MAX_ENTRIES], k = 0;
	for (size_t i = 0; i < nmap; i++)
		if (map[i].size)
			nz[k++] = i;
	unsigned pairs = 0;
	for (size_t m = 64; m + 2 < k && m <= 1024; m += 64)
		for (size_t j = m - 2; j <= m + 2; j++) {
			memcpy(sorted, map, nmap * sizeof(map[0]));
			sorted[nmap] = (struct cairn_mem_range){ map[nz[j]].base, 1 };
			size_t n = nmap + 1;
			qsort(sorted, n, sizeof(sorted[0]), cmp_base);
			struct outcome want, got;
			boot(sorted, n, false, &want, 0, 0);
			CHECK_EQ(want.err, CAIRN_EEXIST);
			for (size_t i = 0; i < n; i++)
				other[i] = sorted[n - 1 - i];
			boot(other, n, false, &got, 0, 0);
			same(&want, &got, "large, reversed, two at one base", (unsigned)j);
			memcpy(other, map, nmap * sizeof(map[0]));
			other[nmap] = (struct cairn_mem_range){ map[nz[j]].base, 1 };
			boot(other, n, false, &got, 0, 0);
			same(&want, &got, "large, two at one base, the second last", (unsigned)j);
			pairs++;
		}
	CHECK(pairs >= 16 * 5);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 300;
	rng_state = seed;
	REQUIRE(cairn_host_init(NCPUS, 0, TOP) == 0);
	caller_meta_size = 4 * MiB;
	caller_meta = malloc(caller_meta_size);
	REQUIRE(caller_meta);
	large_maps();
	int fixed_failures = check_failures; /* the random rounds stop at their first */
	for (unsigned r = 0; r < rounds && check_failures == fixed_failures; r++)
		round_check(r);
	printf("frames_boot_order: seed %llu, %u rounds (%u of more than 256 entries): %u "
	       "created, %u EEXIST, %u ENOSPC, %u ENOMEM, %u EINVAL\n",
	       (unsigned long long)seed, rounds, batches, outcomes[0], outcomes[1], outcomes[2],
	       outcomes[3], outcomes[4]);
	CHECK(outcomes[0] && outcomes[1]); /* both answers met */
	free(caller_meta);
	return check_done("frames_boot_order");
}
