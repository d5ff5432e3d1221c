/* SPDX-License-Identifier: MIT */
/*
 * Model-based random test of the arenas against a sorted array of extents.
 *
 * The reference implements the specification naively: a fit is found by
 * trying every admissible address of every free extent in order, frees
 * merge with free neighbours inside a span, and every error is decided
 * from the array. Returned addresses and error codes must match exactly,
 * and after every operation the tree's extents must equal the array and
 * the tree and arena validators must pass. Now and then every free frame
 * is taken away, so tree node allocation fails: an operation may then
 * return CAIRN_ENOMEM, and must leave the arena exactly as it was.
 *
 * Frees come by size, by owner with any size (free_owned) and by owner
 * with the size (free_as); spans are now and then added right beside an
 * extent (spans that touch: lookups, frees, reserves and fits at their
 * common edge), lookups ask for the edges of extents, and requests draw
 * nocross equal to their size, windows at the top of the space and bad
 * policies on both sides.
 *
 * With `top`, the universe lies at the top of the address space (its last
 * quantum just below 2^64), so fits, merges, windows and adds meet the
 * arithmetic's edge; requests of sizes near 2^64 run in both placements.
 *
 * usage: arena_model [seed] [ops] [fanout] [top]
 */
#include <string.h>

#include "env.h"
#include "model.h"

#define UNIVERSE (1ull << 20)

static uint64_t seed;
static uint64_t base_off; /* where the universe starts (top: 2^64 - universe) */

static uint64_t rnd(void)
{
	return splitmix(&seed);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* ---- comparing ---- */

static bool same(struct cairn_arena *a)
{
	return m_same(&a->tree, true);
}

/* ---- random requests ---- */

/* The least power of two that holds size rounded to the quantum (0 past
 * 2^63, or for size 0). */
static uint64_t rnd_pow2_above(uint64_t size)
{
	if (size == 0 || size > UINT64_MAX - (Q - 1))
		return 0;
	uint64_t r = (size + Q - 1) / Q * Q, p = 1;
	while (p && p < r)
		p <<= 1;
	return p;
}

static uint64_t rnd_size(void)
{
	switch (rnd_below(8)) {
	case 0: return 0;
	case 1: /* unrounded, and now and then near 2^64 */
		return rnd_below(32) ? rnd_below(Q * 4) + 1 : 0 - rnd_below(2 * Q);
	case 2: return (rnd_below(256) + 1) * Q;
	default: return (rnd_below(16) + 1) * Q;
	}
}

static uint64_t rnd_addr(void)
{
	if (nm && rnd_below(4)) {
		const struct mext *e = &m[rnd_below(nm)];
		uint64_t x = e->start + rnd_below(e->len);
		return rnd_below(8) ? x & ~(Q - 1) : x;
	}
	return (base_off + rnd_below(UNIVERSE)) & (rnd_below(16) ? ~(Q - 1) : ~0ull);
}

int main(int argc, char **argv)
{
	seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	uint64_t seed0 = seed;
	unsigned ops = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 5000;
	unsigned fanout = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 4;
	static const uint64_t quanta[] = { 1, 16, 4096 };
	Q = quanta[seed % 3];
	uint64_t universe = UNIVERSE * (Q == 4096 ? 64 : 1);
	bool top = argc > 4 && atoi(argv[4]);
	base_off = top ? 0 - universe : 0;

	env_init(1, 512);
	cairn_host_reports_quiet(1);
	uint64_t frames0 = env_free_frames();

	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = Q, .fanout = fanout };
	REQUIRE(cairn_arena_create(&a, env_frames, 0, 0, &cfg) == 0);

	/* a few spans to start with */
	for (unsigned i = 0; i < 6; i++) {
		uint64_t base = (base_off + rnd_below(universe)) & ~(Q - 1);
		uint64_t size = (rnd_below(4096) + 16) * Q;
		if (top && i == 0) /* the last span below 2^64 */
			base = 0 - size - Q;
		int r = m_add(base, size);
		CHECK_EQ(cairn_arena_add(&a, base, size), r);
	}

	static uint64_t live[MAXEXT];
	static uint64_t live_size[MAXEXT], live_cookie[MAXEXT];
	unsigned nlive = 0;
	unsigned stats[8] = { 0 }, nomem_injected = 0, drained_ops = 0;
	bool drained = false;

	int rm = 0, ra = 0;
	uint64_t xm = 0, xa = 0;
	for (unsigned op = 0; op < ops && !check_failures; op++) {
		if (rnd_below(200) == 0) {
			if (drained)
				env_undrain();
			else
				env_drain();
			drained = !drained;
		}
		drained_ops += drained;
		unsigned kind = (unsigned)rnd_below(100);
		rm = ra = 0;
		xm = xa = 0;
		if (kind < 40) { /* xalloc */
			uint64_t size = rnd_size();
			uint64_t align = rnd_below(3) ? 0 : (Q << rnd_below(7));
			unsigned qbits = (unsigned)__builtin_ctzll(Q);
			if (rnd_below(20) == 0) /* up to 2^63 */
				align = 1ull << (qbits + rnd_below(64 - qbits));
			if (rnd_below(50) == 0)
				align = 3 * Q;
			uint64_t phase = align && rnd_below(3) == 0
						 ? rnd_below(align / Q) * Q : 0;
			uint64_t nocross = rnd_below(6) == 0
				? (Q << (4 + rnd_below(6))) : 0;
			if (rnd_below(40) == 0)
				nocross = 1ull << (qbits + rnd_below(64 - qbits));
			if (rnd_below(30) == 0) /* the boundary the size itself */
				nocross = rnd_pow2_above(size);
			uint64_t lo = rnd_below(4) == 0 ? rnd_addr() & ~(Q - 1) : 0;
			uint64_t hi = rnd_below(4) == 0 ? rnd_addr() & ~(Q - 1) : 0;
			if (rnd_below(60) == 0) /* at the top of the space */
				lo = 0 - 1 - rnd_below(Q * 64);
			if (rnd_below(60) == 0)
				hi = 0 - 1 - rnd_below(2 * Q);
			int pol = (int)rnd_below(3);
			if (rnd_below(100) == 0)
				pol = rnd_below(2) ? 5 : -1;
			uint64_t cookie = rnd() | 1;
			ra = cairn_arena_xalloc(&a, size, align, phase, nocross, lo, hi,
						(enum cairn_fit)pol, cookie, &xa);
			if (drained && ra == CAIRN_ENOMEM) {
				nomem_injected++;
				CHECK(same(&a));
				continue;
			}
			rm = m_xalloc(size, align, phase, nocross, lo, hi, pol, cookie, &xm);
			CHECK_EQ(ra, rm);
			if (ra == 0 && rm == 0) {
				CHECK_EQ(xa, xm);
				if (nlive < MAXEXT) {
					live[nlive] = xm;
					live_cookie[nlive] = cookie;
					live_size[nlive++] = (size + Q - 1) / Q * Q;
				}
			}
			if (ra == 0 && rm != 0) {
				fprintf(stderr, "op %u: tree allocated %#llx size %#llx align %#llx phase %#llx nocross %#llx lo %#llx hi %#llx pol %d, model %d\n",
					op, (unsigned long long)xa, (unsigned long long)size,
					(unsigned long long)align, (unsigned long long)phase,
					(unsigned long long)nocross, (unsigned long long)lo,
					(unsigned long long)hi, pol, rm);
			}
			stats[0 + (ra != 0)]++;
		} else if (kind < 75) { /* free: mostly right, sometimes not */
			uint64_t addr, size;
			unsigned li = 0;
			if (nlive && rnd_below(8)) {
				li = (unsigned)rnd_below(nlive);
				addr = live[li];
				size = live_size[li];
				if (rnd_below(10) == 0)
					size += Q;
			} else {
				addr = rnd_addr();
				size = rnd_size();
			}
			if (rnd_below(8) == 0) { /* exactly, by owner */
				uint64_t c = nlive && rnd_below(4) ? live_cookie[li]
								   : rnd() | 1;
				ra = cairn_arena_free_as(&a, addr, size, c);
				rm = m_free_as(addr, size, c);
				CHECK_EQ(ra, rm);
			} else if (rnd_below(4) == 0) { /* by owner, any size */
				uint64_t c = nlive && rnd_below(4) ? live_cookie[li]
								   : rnd() | 1;
				uint64_t sa = 1, sm = 2;
				ra = cairn_arena_free_owned(&a, addr, c, &sa);
				rm = m_free_owned(addr, c, &sm);
				CHECK_EQ(ra, rm);
				if (ra == 0 && rm == 0)
					CHECK_EQ(sa, sm);
				if (ra)
					CHECK_EQ(sa, 1); /* untouched */
			} else {
				ra = cairn_arena_free(&a, addr, size);
				rm = m_free(addr, size);
				CHECK_EQ(ra, rm);
			}
			if (rm == 0) {
				for (unsigned k = 0; k < nlive; k++)
					if (live[k] == addr) {
						live[k] = live[--nlive];
						live_size[k] = live_size[nlive];
						live_cookie[k] = live_cookie[nlive];
						break;
					}
			}
			stats[2 + (ra != 0)]++;
		} else if (kind < 85) { /* reserve */
			uint64_t addr = rnd_addr(), size = rnd_size();
			uint64_t cookie = rnd() | 1;
			ra = cairn_arena_reserve(&a, addr, size, cookie);
			if (drained && ra == CAIRN_ENOMEM) {
				nomem_injected++;
				CHECK(same(&a));
				continue;
			}
			rm = m_reserve(addr, size, cookie);
			CHECK_EQ(ra, rm);
			if (rm == 0 && nlive < MAXEXT) {
				live[nlive] = addr;
				live_cookie[nlive] = cookie;
				live_size[nlive++] = size;
			}
			stats[4 + (ra != 0)]++;
		} else if (kind < 88) { /* add a span */
			uint64_t base = rnd_addr(), size = rnd_size() * 8;
			if (nm && rnd_below(3) == 0) { /* beside an extent */
				const struct mext *e = &m[rnd_below(nm)];
				base = rnd_below(2) ? end_of(e) : e->start - size;
			}
			if (!top && base + size > universe)
				size = 0; /* top: some run to 2^64 and past */
			ra = cairn_arena_add(&a, base, size);
			if (drained && ra == CAIRN_ENOMEM) {
				nomem_injected++;
				CHECK(same(&a));
				continue;
			}
			rm = m_add(base, size);
			CHECK_EQ(ra, rm);
			stats[6 + (ra != 0)]++;
		} else { /* lookups */
			for (unsigned k = 0; k < 4; k++) {
				uint64_t x = rnd_addr(), s = 0, n = 0, c = 0;
				if (nm && rnd_below(3) == 0) { /* at an edge */
					const struct mext *e = &m[rnd_below(nm)];
					uint64_t edge[] = { e->start, e->start - 1,
							    end_of(e) - 1, end_of(e) };
					x = edge[rnd_below(4)];
				}
				ra = cairn_arena_lookup(&a, x, &s, &n, &c);
				int i = m_find(x);
				rm = i < 0 ? CAIRN_ERANGE
				     : is_free(&m[i]) ? CAIRN_EFREE : 0;
				CHECK_EQ(ra, rm);
				if (ra == 0 && rm == 0)
					CHECK(s == m[i].start && n == m[i].len &&
					      c == m[i].cookie);
			}
		}
		CHECK_EQ(cairn_arena_validate(&a), 0);
		if (!same(&a)) {
			CHECK(!"tree differs from the model");
			fprintf(stderr, "after op %u (kind %u): tree %d %#llx, model %d %#llx, drained %d\n",
				op, kind, ra, (unsigned long long)xa, rm,
				(unsigned long long)xm, drained);
		}
	}
	if (drained)
		env_undrain();

	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	printf("seed %llu Q %llu fanout %u%s: %u extents, depth %u, %llu node frames "
	       "(%llu free); alloc ok/err %u/%u free %u/%u reserve %u/%u add %u/%u; "
	       "%u ops drained, %u injected ENOMEM\n",
	       (unsigned long long)seed0, (unsigned long long)Q, fanout,
	       top ? " top" : "", nm, st.depth,
	       (unsigned long long)st.nodes, (unsigned long long)st.free_nodes,
	       stats[0], stats[1], stats[2], stats[3], stats[4], stats[5], stats[6],
	       stats[7], drained_ops, nomem_injected);
	CHECK(nomem_injected > 0 || ops < 2000);
	cairn_arena_destroy(&a);
	CHECK_EQ(env_free_frames(), frames0);
	return check_done("arena_model");
}
