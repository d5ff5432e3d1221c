/* SPDX-License-Identifier: MIT */
/*
 * Constrained requests served by imports, with every kind of source: a
 * parent arena of a few small spans of random size and place (a source
 * that refuses a large ask, so an import falls back to the least span
 * that holds the request), frames whose blocks are aligned only to their
 * size (no VA arena), and frames mapped at addresses from a VA arena,
 * the frames fragmented first. Alignment up to 2 MiB, phases, nocross,
 * windows, every fit policy, import quanta that are powers of two and
 * ones that are not. Every request served must lie where it was asked
 * for: aligned with its phase, between no two nocross boundaries, inside
 * its window; each served range is written (a frames span is mapped),
 * freed, and at the end every span and every frame is back. The parent
 * arena has now and then a span just below 2^64.
 *
 * usage: arena_import_fit [rounds [seed]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

#define MiB (1024ull * 1024)
#define Q 4096ull
#define OPS 8

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

struct req {
	uint64_t size, align, phase, nocross, lo, hi;
	enum cairn_fit pol;
};

/* A request of quantum q: alignment up to 2^(maxa) quanta, a phase half
 * the time, nocross a power of two at least the size, a window now and
 * then (lo and hi 0: none). */
static struct req draw(uint64_t q, unsigned maxa, bool window)
{
	struct req r = { .size = (below(16) + 1) * q, .align = q << below(maxa + 1) };
	r.phase = r.align > q && below(2) ? below(r.align / q) * q : 0;
	if (!below(4)) {
		uint64_t p = r.size & (r.size - 1) ? 1ull << (64 - __builtin_clzll(r.size)) : r.size;
		r.nocross = p << below(4);
	}
	if (window && !below(5)) {
		r.lo = (1ull << 40) + below(64) * q;
		r.hi = below(2) ? r.lo + (1ull << 40) * (below(3) + 1) : 0;
	}
	r.pol = (enum cairn_fit)below(3);
	return r;
}

static bool placed(const struct req *r, uint64_t x)
{
	uint64_t hi = r->hi ? r->hi : UINT64_MAX;
	return (x & (r->align - 1)) == r->phase && x >= r->lo && x + r->size <= hi &&
	       x + r->size > x &&
	       (!r->nocross || x / r->nocross == (x + r->size - 1) / r->nocross);
}

/* Requests of one round against `a`; false if one was misplaced. Served
 * ones are written, then freed. */
static bool requests(struct cairn_arena *a, uint64_t q, unsigned maxa, bool window,
		     bool touch, unsigned round, unsigned *served)
{
	uint64_t at[OPS], len[OPS];
	unsigned n = 0;
	bool ok = true;
	for (unsigned i = 0; i < OPS; i++) {
		struct req r = draw(q, maxa, window);
		uint64_t x;
		if (cairn_arena_xalloc(a, r.size, r.align, r.phase, r.nocross, r.lo, r.hi, r.pol,
				       7, &x))
			continue;
		if (!placed(&r, x)) {
			ok = false;
			fprintf(stderr,
				"round %u: at %#llx size %#llx align %#llx phase %#llx "
				"nocross %#llx window %#llx-%#llx fit %d\n",
				round, (unsigned long long)x, (unsigned long long)r.size,
				(unsigned long long)r.align, (unsigned long long)r.phase,
				(unsigned long long)r.nocross, (unsigned long long)r.lo,
				(unsigned long long)r.hi, r.pol);
		}
		if (touch)
			memset((void *)(uintptr_t)x, 0x5a, r.size);
		at[n] = x;
		len[n++] = r.size;
		(*served)++;
	}
	CHECK_EQ(cairn_arena_validate(a), 0);
	while (n--)
		CHECK_EQ(cairn_arena_free(a, at[n], len[n]), 0);
	return ok;
}

static void parent_rounds(unsigned rounds, unsigned *served)
{
	for (unsigned round = 0; round < rounds; round++) {
		uint64_t pq = Q << below(3);
		struct cairn_arena parent, child;
		struct cairn_arena_source src;
		struct cairn_arena_config pc = { .quantum = pq, .fanout = 4 };
		REQUIRE(cairn_arena_create(&parent, env_frames, 0, 0, &pc) == 0);
		for (unsigned s = (unsigned)below(4) + 1; s; s--)
			CHECK_EQ(cairn_arena_add(&parent, (1ull << 40) * s + below(64) * pq,
						 (below(64) + 1) * pq), 0);
		if (!below(8)) /* a span just below 2^64 */
			CHECK_EQ(cairn_arena_add(&parent, (UINT64_MAX - (1ull << 30)) & ~(pq - 1),
						 1ull << 29), 0);
		cairn_arena_source_arena(&src, &parent);
		uint64_t q = Q << below(2);
		struct cairn_arena_config cc = {
			.quantum = q, .source = &src, .fanout = 4,
			.import_quantum = below(2) ? q << below(6) : q * (below(7) + 1),
		};
		REQUIRE(cairn_arena_create(&child, env_frames, 0, 0, &cc) == 0);
		CHECK(requests(&child, q, 7, true, false, round, served));
		CHECK_EQ(atomic_load(&child.imports), atomic_load(&child.releases));
		cairn_arena_destroy(&child);
		CHECK_EQ(cairn_arena_validate(&parent), 0);
		cairn_arena_destroy(&parent);
	}
}

static void frames_rounds(unsigned rounds, unsigned *served)
{
	static cairn_phys_t held[2048];
	static unsigned order[2048];
	uint64_t before = env_free_frames();
	for (unsigned round = 0; round < rounds; round++) {
		/* fragment the frames: hold every other block of a run */
		unsigned nh = 0;
		for (unsigned i = (unsigned)below(2048); i; i--) {
			unsigned k = (unsigned)below(4);
			if (cairn_frames_alloc(env_frames, k, 0, &held[nh]) == 0)
				order[nh++] = k;
		}
		for (unsigned i = 0; i < nh; i++)
			if (i % 2)
				CHECK_EQ(cairn_frames_free(env_frames, held[i], order[i]), 0);
		struct cairn_arena va, child;
		struct cairn_arena_source src;
		struct cairn_frames_source fs = { .frames = env_frames };
		bool mapped = below(2);
		if (mapped) {
			struct cairn_arena_config vc = { .quantum = Q << below(3), .fanout = 4 };
			REQUIRE(cairn_arena_create(&va, env_frames, env_va_window(), 64 * MiB, &vc) == 0);
			fs.va = &va;
		}
		cairn_arena_source_frames(&src, &fs);
		struct cairn_arena_config cc = { .quantum = Q, .source = &src, .fanout = 4,
						 .import_quantum = Q << below(10) };
		REQUIRE(cairn_arena_create(&child, env_frames, 0, 0, &cc) == 0);
		CHECK(requests(&child, Q, 9, false, true, round, served));
		CHECK_EQ(atomic_load(&child.imports), atomic_load(&child.releases));
		cairn_arena_destroy(&child);
		if (mapped) {
			CHECK_EQ(cairn_arena_validate(&va), 0);
			cairn_arena_destroy(&va);
		}
		for (unsigned i = 0; i < nh; i += 2)
			CHECK_EQ(cairn_frames_free(env_frames, held[i], order[i]), 0);
	}
	CHECK_EQ(env_free_frames(), before);
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 400;
	rng = argc > 2 ? strtoull(argv[2], NULL, 0) * 0x9e3779b97f4a7c15ull + 1 : 1;
	env_init(1, 64);
	uint64_t reports = cairn_host_reports();
	unsigned from_parent = 0, from_frames = 0;
	parent_rounds(rounds, &from_parent);
	frames_rounds(rounds, &from_frames);
	printf("arena_import_fit: %u rounds: %u served from a parent arena, %u from frames\n",
	       rounds, from_parent, from_frames);
	/* most requests are served: the checks above saw placements */
	CHECK(from_parent > rounds * OPS / 2 && from_frames > rounds * OPS / 2);
	CHECK_EQ(cairn_host_reports(), reports);
	return check_done("arena_import_fit");
}
