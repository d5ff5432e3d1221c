/* SPDX-License-Identifier: MIT */
/*
 * Every xalloc constraint combination at the edges of the integer space,
 * exhaustively, against model.h's reference.
 *
 * Small spans lie at the bottom of the space, around 2^32, across 2^63 and
 * at the top (its last extent ending one quantum below 2^64), each with
 * allocated pieces in it, so that each span holds several free extents.
 * Every combination of a list of sizes (1 quantum up to 2^64 - 1, unrounded
 * ones included), alignments (0, powers of two up to 2^63, and bad ones),
 * phases (0, one quantum, half and all but one quantum of the alignment,
 * off the quantum), nocross boundaries (none, the least power of two that
 * holds the size and a few above it, 2^63, bad ones), windows [minaddr,
 * maxaddr) at and across the edges (empty ones too) and the three policies
 * (and a bad one) is asked of the arena and of the reference: the error
 * code and the address must be the same, and the extents after it; a
 * range served is freed again in both, so every request meets the same
 * state. Quanta 1 and 16 (sizes, phases and windows off the quantum
 * then), fanouts 4 and 126. Then such requests of a child that imports
 * from a parent at 2^63 and at the top (run_imp).
 *
 * usage: arena_edges fanout
 */
#include "env.h"
#include "model.h"

static bool same(struct cairn_arena *a)
{
	return m_same(&a->tree, false);
}

#define TOP (0ull - 1)
#define H63 (1ull << 63)

static unsigned served, refused, asked;

static void one(struct cairn_arena *a, uint64_t size, uint64_t align,
		uint64_t phase, uint64_t nocross, uint64_t lo, uint64_t hi, int pol)
{
	uint64_t xa = 0, xm = 0;
	int ra = cairn_arena_xalloc(a, size, align, phase, nocross, lo, hi,
				    (enum cairn_fit)pol, 77, &xa);
	int rm = m_xalloc(size, align, phase, nocross, lo, hi, pol, 77, &xm);
	asked++;
	if (ra != rm || (ra == 0 && xa != xm) || !same(a)) {
		fprintf(stderr, "Q %llu size %#llx align %#llx phase %#llx nocross %#llx "
			"lo %#llx hi %#llx pol %d: arena %d %#llx, reference %d %#llx\n",
			(unsigned long long)Q, (unsigned long long)size,
			(unsigned long long)align, (unsigned long long)phase,
			(unsigned long long)nocross, (unsigned long long)lo,
			(unsigned long long)hi, pol, ra, (unsigned long long)xa, rm,
			(unsigned long long)xm);
		CHECK(!"arena and reference differ");
		REQUIRE(check_failures < 10);
	}
	if (ra == 0 && rm == 0) {
		served++;
		CHECK_EQ(cairn_arena_free(a, xa, size), 0);
		CHECK_EQ(m_free(xm, size), 0);
	} else {
		refused++;
	}
}

static void run(unsigned fanout, uint64_t q)
{
	Q = q;
	nm = 0;
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = Q, .fanout = fanout };
	REQUIRE(cairn_arena_create(&a, env_frames, 0, 0, &cfg) == 0);
	/* spans: [base, base + len), then reserved pieces (in quanta) */
	static const struct {
		uint64_t base, len;
	} spans[] = {
		{ 0, 48 }, { 1ull << 32, 40 }, { H63 - 40, 80 }, { 0, 0 } /* top */
	};
	for (unsigned i = 0; i < 4; i++) {
		uint64_t base = spans[i].base, len = spans[i].len * Q;
		if (i == 3) { /* 96 quanta ending one quantum below 2^64 */
			len = 96 * Q;
			base = 0 - len - Q;
		} else if (i == 2) {
			base = H63 - 40 * Q;
		}
		REQUIRE(m_add(base, len) == 0);
		REQUIRE(cairn_arena_add(&a, base, len) == 0);
		/* allocated pieces at 1/4 and 5/8 of the span */
		uint64_t r1 = base + len / 4 / Q * Q, r2 = base + len * 5 / 8 / Q * Q;
		REQUIRE(m_reserve(r1, 3 * Q, 5) == 0);
		REQUIRE(cairn_arena_reserve(&a, r1, 3 * Q, 5) == 0);
		REQUIRE(m_reserve(r2, Q, 6) == 0);
		REQUIRE(cairn_arena_reserve(&a, r2, Q, 6) == 0);
	}
	/* and the space's very first and last quanta taken */
	REQUIRE(m_reserve(0, Q, 7) == 0);
	REQUIRE(cairn_arena_reserve(&a, 0, Q, 7) == 0);
	REQUIRE(m_reserve(0 - 2 * Q, Q, 7) == 0);
	REQUIRE(cairn_arena_reserve(&a, 0 - 2 * Q, Q, 7) == 0);
	REQUIRE(same(&a));

	const uint64_t sizes[] = { 1, Q, 2 * Q, 3 * Q, 5 * Q, 8 * Q, 16 * Q,
				   17 * Q, 33 * Q, 64 * Q, 95 * Q, 96 * Q, H63,
				   H63 + 1, 0 - 64 * Q, TOP, 0 };
	const uint64_t aligns[] = { 0, 1, Q, 2 * Q, 4 * Q, 8 * Q, 32 * Q, 64 * Q,
				    1ull << 32, 1ull << 62, H63, 3 * Q };
	const uint64_t windows[][2] = {
		{ 0, 0 }, { H63, 0 }, { 0, H63 }, { 0 - 90 * Q, 0 },
		{ 0 - 90 * Q, 0 - 3 * Q }, { 0 - Q, 0 }, { TOP, 0 },
		{ 1ull << 32, (1ull << 32) + 8 * Q }, { H63 - 3 * Q, H63 + 5 * Q + 1 },
		{ 5 * Q, 3 * Q }, { 0, 1 }, { Q + 1, 40 * Q - 1 },
		{ 0 - 60 * Q, 0 - 20 * Q }, { H63 + Q, TOP },
	};
	for (unsigned si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t size = sizes[si];
		uint64_t p = 1;
		while (p && p < size)
			p <<= 1;
		const uint64_t nocrosses[] = { 0, p, p << 1, p << 2, p << 5, H63,
					       3 * Q, p > 1 ? p >> 1 : 0 };
		for (unsigned ai = 0; ai < sizeof(aligns) / sizeof(aligns[0]); ai++) {
			uint64_t al = aligns[ai];
			uint64_t eff = al < Q ? Q : al;
			/* ... and the phases of addresses inside the top span
			 * and the one across 2^63 */
			const uint64_t phases[] = { 0, Q, eff / 2, eff - Q, 1, eff,
						    (0 - 50 * Q) & (eff - 1),
						    (H63 + 7 * Q) & (eff - 1) };
			for (unsigned pi = 0; pi < 8; pi++) {
				if (pi > 0 && phases[pi] == 0)
					continue;
				for (unsigned ni = 0; ni < 8; ni++)
					for (unsigned wi = 0;
					     wi < sizeof(windows) / sizeof(windows[0]); wi++)
						for (int pol = 0; pol < 4; pol++)
							one(&a, size, al, phases[pi],
							    nocrosses[ni], windows[wi][0],
							    windows[wi][1], pol == 3 ? 7 : pol);
			}
		}
	}
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
}

/* ---- the same requests of a child that imports ---- */

struct snap {
	struct cairn_ext e[64];
	unsigned n;
	bool over;
};

static int snap_visit(const struct cairn_ext *e, void *arg)
{
	struct snap *s = arg;
	if (s->n == 64) {
		s->over = true;
		return 1;
	}
	s->e[s->n++] = *e;
	return 0;
}

static void take(struct cairn_arena *a, struct snap *s)
{
	s->n = 0;
	s->over = false;
	cairn_btree_walk(&a->tree, snap_visit, s);
	REQUIRE(!s->over);
}

static bool snap_eq(const struct snap *x, const struct snap *y)
{
	if (x->n != y->n)
		return false;
	for (unsigned i = 0; i < x->n; i++)
		if (x->e[i].start != y->e[i].start || x->e[i].len != y->e[i].len ||
		    x->e[i].cookie != y->e[i].cookie || x->e[i].flags != y->e[i].flags)
			return false;
	return true;
}

static unsigned imported_served;

/*
 * A child with a span of its own at the bottom of the space, importing
 * from a parent whose spans lie across 2^63 and at the top. Whatever a
 * request asks, the child serves it from its own span exactly as the
 * reference does, without importing, when it fits there; otherwise from
 * a span it imports (and then the range meets every constraint) or not
 * at all. Either way, once the range is freed, the child and the parent
 * are exactly as before: the spans a failed request imported went back,
 * and so did the one that served it, when its range was freed.
 */
static void one_imp(struct cairn_arena *c, struct cairn_arena *p, uint64_t size,
		    uint64_t align, uint64_t phase, uint64_t nocross, uint64_t lo,
		    uint64_t hi, int pol)
{
	static struct snap c0, p0, c1, p1;
	take(c, &c0);
	take(p, &p0);
	uint64_t imports = atomic_load(&c->imports);
	uint64_t xa = 0, xm = 0;
	int ra = cairn_arena_xalloc(c, size, align, phase, nocross, lo, hi,
				    (enum cairn_fit)pol, 77, &xa);
	int rm = m_xalloc(size, align, phase, nocross, lo, hi, pol, 77, &xm);
	asked++;
	bool bad = false;
	uint64_t sz = (size + Q - 1) / Q * Q;
	if (rm != CAIRN_ENOMEM) { /* decided by the child's own spans */
		bad = ra != rm || (ra == 0 && xa != xm) ||
		      atomic_load(&c->imports) != imports;
	} else if (ra == 0) { /* served from an import: the constraints */
		uint64_t al = align < Q ? Q : align;
		uint64_t s0, n0, k0;
		bad = xa % al != phase ||
		      (nocross && ((xa ^ (xa + sz - 1)) & ~(nocross - 1))) ||
		      xa < lo || (hi && xa + sz > hi) || xa + sz < xa ||
		      atomic_load(&c->imports) == imports ||
		      cairn_arena_lookup(c, xa, &s0, &n0, &k0) != 0 || s0 != xa ||
		      n0 != sz || k0 != 77;
		imported_served++;
	} else {
		bad = ra != CAIRN_ENOMEM;
	}
	if (ra == 0)
		CHECK_EQ(cairn_arena_free(c, xa, size), 0);
	if (rm == 0)
		CHECK_EQ(m_free(xm, size), 0);
	take(c, &c1);
	take(p, &p1);
	if (!bad && (!snap_eq(&c0, &c1) || !snap_eq(&p0, &p1))) {
		bad = true;
		fprintf(stderr, "not as before:\n");
	}
	if (bad) {
		fprintf(stderr, "child: Q %llu size %#llx align %#llx phase %#llx "
			"nocross %#llx lo %#llx hi %#llx pol %d: arena %d %#llx, "
			"reference %d %#llx, imports %llu -> %llu\n",
			(unsigned long long)Q, (unsigned long long)size,
			(unsigned long long)align, (unsigned long long)phase,
			(unsigned long long)nocross, (unsigned long long)lo,
			(unsigned long long)hi, pol, ra, (unsigned long long)xa, rm,
			(unsigned long long)xm, (unsigned long long)imports,
			(unsigned long long)atomic_load(&c->imports));
		CHECK(!"child request wrong");
		REQUIRE(check_failures < 10);
	}
	if (ra == 0)
		served++;
	else
		refused++;
}

static void run_imp(unsigned fanout, uint64_t q)
{
	Q = q;
	nm = 0;
	struct cairn_arena p, c;
	struct cairn_arena_config cp = { .quantum = Q, .fanout = fanout };
	REQUIRE(cairn_arena_create(&p, env_frames, 0, 0, &cp) == 0);
	/* the parent: 2^20 quanta across 2^63, and 2^20 up to one quantum
	 * below 2^64, each with a piece taken */
	REQUIRE(cairn_arena_add(&p, H63 - (Q << 19), Q << 20) == 0);
	REQUIRE(cairn_arena_reserve(&p, H63 + 3 * Q, Q, 9) == 0);
	REQUIRE(cairn_arena_add(&p, 0 - (Q << 20) - Q, Q << 20) == 0);
	REQUIRE(cairn_arena_reserve(&p, 0 - (Q << 19), Q, 9) == 0);
	struct cairn_arena_source src;
	cairn_arena_source_arena(&src, &p);
	struct cairn_arena_config cc = { .quantum = Q, .fanout = fanout, .source = &src,
					 .import_quantum = 64 * Q };
	REQUIRE(cairn_arena_create(&c, env_frames, 0, 0, &cc) == 0);
	/* the child's own span, [16, 112) quanta, with a piece at 40 */
	REQUIRE(m_add(16 * Q, 96 * Q) == 0);
	REQUIRE(cairn_arena_add(&c, 16 * Q, 96 * Q) == 0);
	REQUIRE(m_reserve(40 * Q, 3 * Q, 5) == 0);
	REQUIRE(cairn_arena_reserve(&c, 40 * Q, 3 * Q, 5) == 0);
	REQUIRE(same(&c));

	const uint64_t sizes[] = { 1, Q, 3 * Q, 17 * Q, 64 * Q, 65 * Q, 97 * Q,
				   Q << 19, (Q << 20) - 2 * Q, Q << 20, H63, TOP };
	const uint64_t aligns[] = { 0, Q, 4 * Q, 64 * Q, 128 * Q, Q << 18, Q << 20,
				    1ull << 62, H63 };
	const uint64_t windows[][2] = {
		{ 0, 0 }, { H63, 0 }, { 0, H63 }, { 0 - (Q << 19), 0 },
		{ 0 - (Q << 20), 0 - (Q << 18) }, { 0, 50 * Q }, { TOP, 0 },
	};
	for (unsigned si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t size = sizes[si];
		uint64_t pw = 1;
		while (pw && pw < size)
			pw <<= 1;
		const uint64_t nocrosses[] = { 0, pw, pw << 1, pw << 6, H63 };
		for (unsigned ai = 0; ai < sizeof(aligns) / sizeof(aligns[0]); ai++) {
			uint64_t al = aligns[ai];
			uint64_t eff = al < Q ? Q : al;
			const uint64_t phases[] = { 0, Q, eff / 2, eff - Q };
			for (unsigned pi = 0; pi < 4; pi++) {
				if ((pi > 0 && phases[pi] == 0) || phases[pi] >= eff)
					continue;
				for (unsigned ni = 0; ni < 5; ni++)
					for (unsigned wi = 0;
					     wi < sizeof(windows) / sizeof(windows[0]); wi++)
						for (int pol = 0; pol < 3; pol++)
							one_imp(&c, &p, size, al, phases[pi],
								nocrosses[ni], windows[wi][0],
								windows[wi][1], pol);
			}
		}
	}
	CHECK_EQ(cairn_arena_validate(&c), 0);
	CHECK_EQ(cairn_arena_validate(&p), 0);
	CHECK_EQ(atomic_load(&c.imports), atomic_load(&c.releases));
	CHECK(atomic_load(&c.imports) > 100);
	cairn_arena_destroy(&c);
	cairn_arena_destroy(&p);
}

int main(int argc, char **argv)
{
	unsigned fanout = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 4;
	env_init(1, 16);
	uint64_t frames0 = env_free_frames();
	run(fanout, 1);
	run(fanout, 16);
	run_imp(fanout, 1);
	run_imp(fanout, 4096);
	printf("arena_edges: fanout %u: %u requests, %u served (%u from imports), "
	       "%u refused\n", fanout, asked, served, imported_served, refused);
	CHECK(imported_served > 100);
	CHECK(served > 1000 && refused > 1000);
	CHECK_EQ(env_free_frames(), frames0);
	return check_done("arena_edges");
}
