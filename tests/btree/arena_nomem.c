/* SPDX-License-Identifier: MIT */
/*
 * Node exhaustion at every point of a split cascade, against the
 * reference of model.h.
 *
 * Every operation that may insert (alloc, xalloc with constraints,
 * reserve, add) runs first with no free frame at all, then with one frame
 * given back, then two, and so on, until it stops failing with
 * CAIRN_ENOMEM: a split that needs more nodes than it can have fails at
 * the first, the second, ... node of its cascade (the root's split takes
 * two; the nodes taken for a split that did not happen go to the tree's
 * free list, where the next attempt finds them). After each ENOMEM the
 * extents must equal the reference exactly (nothing changed, whatever
 * splits were done), and the tree and arena validators must pass (frames
 * taken = nodes in the tree + on its free list). When it succeeds, its
 * address and the extents must be the reference's. Frees, frees by owner
 * and the errors must succeed or fail as the reference says with no free
 * frame at all: they never need a node.
 *
 * usage: arena_nomem seed ops fanout [top]
 */
#include "env.h"
#include "model.h"

#define UNIVERSE (1ull << 22)

static uint64_t seed, base_off;

static uint64_t rnd(void)
{
	return splitmix(&seed);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static bool same(struct cairn_arena *a)
{
	return m_same(&a->tree, false);
}

/* The reference before the operation: m[] is put back to it while the
 * tree's failed attempts are compared. */
static struct mext saved[MAXEXT];
static unsigned nsaved;

static bool same_as_before(struct cairn_arena *a)
{
	static struct mext after[MAXEXT];
	unsigned nafter = nm;
	memcpy(after, m, nm * sizeof(m[0]));
	memcpy(m, saved, nsaved * sizeof(m[0]));
	nm = nsaved;
	bool ok = same(a);
	memcpy(m, after, nafter * sizeof(m[0]));
	nm = nafter;
	return ok;
}

/* Leave exactly k free frames. */
static void leave(unsigned k)
{
	env_undrain();
	env_drain();
	while (k-- && ndrained)
		REQUIRE(cairn_frames_free(env_frames, drained[--ndrained], 0) == 0);
}

static uint64_t live[MAXEXT], live_size[MAXEXT], live_cookie[MAXEXT];
static unsigned nlive;

enum { OP_XALLOC, OP_ALLOC, OP_RESERVE, OP_ADD, OP_FREE, OP_FREE_OWNED };

struct req {
	int op;
	uint64_t size, align, phase, nocross, lo, hi, addr, cookie;
	int pol;
	unsigned li; /* live index (frees) */
};

static int run_tree(struct cairn_arena *a, const struct req *r, uint64_t *x)
{
	switch (r->op) {
	case OP_XALLOC:
		return cairn_arena_xalloc(a, r->size, r->align, r->phase, r->nocross,
					  r->lo, r->hi, (enum cairn_fit)r->pol,
					  r->cookie, x);
	case OP_ALLOC:
		return cairn_arena_alloc(a, r->size, r->cookie, x);
	case OP_RESERVE:
		return cairn_arena_reserve(a, r->addr, r->size, r->cookie);
	case OP_ADD:
		return cairn_arena_add(a, r->addr, r->size);
	case OP_FREE:
		return cairn_arena_free(a, r->addr, r->size);
	default:
		return cairn_arena_free_owned(a, r->addr, r->cookie, x);
	}
}

static int run_model(const struct req *r, uint64_t *x)
{
	switch (r->op) {
	case OP_XALLOC:
		return m_xalloc(r->size, r->align, r->phase, r->nocross, r->lo,
				r->hi, r->pol, r->cookie, x);
	case OP_ALLOC:
		return m_xalloc(r->size, 0, 0, 0, 0, 0, 0, r->cookie, x);
	case OP_RESERVE:
		return m_reserve(r->addr, r->size, r->cookie);
	case OP_ADD:
		return m_add(r->addr, r->size);
	case OP_FREE:
		return m_free(r->addr, r->size);
	default:
		return m_free_owned(r->addr, r->cookie, x);
	}
}

static uint64_t rnd_addr(void)
{
	if (nm && rnd_below(4)) {
		const struct mext *e = &m[rnd_below(nm)];
		return (e->start + rnd_below(e->len)) & ~(Q - 1);
	}
	return (base_off + rnd_below(UNIVERSE)) & ~(Q - 1);
}

static void draw(struct req *r)
{
	*r = (struct req){ .cookie = rnd() | 1 };
	unsigned k = (unsigned)rnd_below(100);
	if (nlive && (k < 30 || nlive == MAXEXT / 4)) {
		r->li = (unsigned)rnd_below(nlive);
		r->addr = live[r->li];
		if (k < 20) {
			r->op = OP_FREE;
			r->size = rnd_below(16) ? live_size[r->li] : live_size[r->li] + Q;
		} else {
			r->op = OP_FREE_OWNED;
			r->cookie = rnd_below(8) ? live_cookie[r->li] : 2;
		}
		return;
	}
	r->size = (rnd_below(8) + 1) * Q;
	if (rnd_below(10) == 0)
		r->size *= 1 + rnd_below(64);
	if (k < 55) {
		r->op = OP_XALLOC;
		r->pol = (int)rnd_below(3);
		if (rnd_below(2))
			r->align = Q << rnd_below(10);
		if (rnd_below(20) == 0)
			r->align = 1ull << (63 - rnd_below(8));
		if (r->align > Q && rnd_below(2))
			r->phase = rnd_below(r->align / Q) * Q;
		if (rnd_below(4) == 0) {
			uint64_t p = 1;
			while (p < r->size)
				p <<= 1;
			r->nocross = p << rnd_below(rnd_below(8) ? 4 : 60);
			if (r->nocross < p)
				r->nocross = 1ull << 63;
		}
		if (rnd_below(4) == 0)
			r->lo = rnd_addr();
		if (rnd_below(4) == 0)
			r->hi = rnd_below(8) ? rnd_addr() : 0 - Q * rnd_below(4);
	} else if (k < 75) {
		r->op = OP_ALLOC;
	} else if (k < 97) {
		r->op = OP_RESERVE;
		r->addr = rnd_addr();
	} else {
		r->op = OP_ADD;
		r->addr = rnd_addr();
		r->size *= 8;
		if (rnd_below(4) == 0) /* up to (and past) 2^64 */
			r->addr = 0 - r->size - Q * rnd_below(3);
	}
}

int main(int argc, char **argv)
{
	seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	uint64_t seed0 = seed;
	unsigned ops = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 1000;
	unsigned fanout = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 4;
	bool top = argc > 4 && atoi(argv[4]);
	Q = 16;
	base_off = top ? 0 - UNIVERSE : 1ull << 40;

	env_init(1, 16);
	cairn_host_reports_quiet(1);
	uint64_t frames0 = env_free_frames();
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = Q, .fanout = fanout };
	REQUIRE(cairn_arena_create(&a, env_frames, 0, 0, &cfg) == 0);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t base = base_off + i * (UNIVERSE / 4);
		uint64_t size = UNIVERSE / 4 - (i == 3 ? Q : UNIVERSE / 16);
		REQUIRE(m_add(base, size) == 0);
		REQUIRE(cairn_arena_add(&a, base, size) == 0);
	}

	unsigned failed_tries = 0, max_tries = 0, depth = 0;
	for (unsigned op = 0; op < ops && !check_failures; op++) {
		struct req r;
		draw(&r);
		uint64_t xm = 0, xa = 0;
		memcpy(saved, m, nm * sizeof(m[0]));
		nsaved = nm;
		int rm = run_model(&r, &xm);
		bool frees = r.op == OP_FREE || r.op == OP_FREE_OWNED;
		int ra;
		unsigned k = 0;
		for (;; k++) {
			leave(k);
			ra = run_tree(&a, &r, &xa);
			if (ra != CAIRN_ENOMEM)
				break;
			/* a failed attempt: nothing changed */
			env_undrain();
			CHECK(same_as_before(&a));
			CHECK_EQ(cairn_arena_validate(&a), 0);
			if (rm == CAIRN_ENOMEM) { /* and with every frame */
				ra = run_tree(&a, &r, &xa);
				break;
			}
			failed_tries++;
			if (frees || k > 64) {
				CHECK(!"free or error needed a node (or no end)");
				break;
			}
		}
		env_undrain();
		if (k > max_tries)
			max_tries = k;
		CHECK_EQ(ra, rm);
		if (ra == 0 && rm == 0 && r.op != OP_RESERVE && r.op != OP_ADD)
			CHECK_EQ(xa, xm);
		if (ra != rm || (ra == 0 && r.op < OP_RESERVE && xa != xm)) {
			fprintf(stderr, "op %u kind %d: tree %d %#llx, reference %d %#llx "
				"(size %#llx align %#llx phase %#llx nocross %#llx "
				"lo %#llx hi %#llx pol %d addr %#llx)\n",
				op, r.op, ra, (unsigned long long)xa, rm,
				(unsigned long long)xm, (unsigned long long)r.size,
				(unsigned long long)r.align, (unsigned long long)r.phase,
				(unsigned long long)r.nocross, (unsigned long long)r.lo,
				(unsigned long long)r.hi, r.pol, (unsigned long long)r.addr);
			break;
		}
		CHECK(same(&a));
		CHECK_EQ(cairn_arena_validate(&a), 0);
		if (rm == 0) {
			if (r.op == OP_FREE || r.op == OP_FREE_OWNED) {
				live[r.li] = live[--nlive];
				live_size[r.li] = live_size[nlive];
				live_cookie[r.li] = live_cookie[nlive];
			} else if (r.op != OP_ADD) {
				live[nlive] = r.op == OP_RESERVE ? r.addr : xm;
				live_size[nlive] = (r.size + Q - 1) / Q * Q;
				live_cookie[nlive++] = r.cookie;
			}
		}
		struct cairn_btree_stats st;
		CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
		if (st.depth > depth)
			depth = st.depth;
	}
	printf("arena_nomem: seed %llu, %u ops, fanout %u%s: %u attempts failed for want "
	       "of a node, at most %u frames needed, depth %u, %u extents\n",
	       (unsigned long long)seed0, ops, fanout, top ? " (top)" : "",
	       failed_tries, max_tries, depth, nm);
	CHECK(failed_tries > 0);
	cairn_arena_destroy(&a);
	CHECK_EQ(env_free_frames(), frames0);
	return check_done("arena_nomem");
}
