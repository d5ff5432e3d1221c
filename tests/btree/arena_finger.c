/* SPDX-License-Identifier: MIT */
/*
 * The fingers (btree.c): a carve leaves, per CPU, the start of the extent
 * it made and the entry indices of its path; a free of that start descends
 * by those guesses, each checked against the keys beside it before it is
 * taken. Against the library built with CAIRN_BTREE_TEST_YIELD, which
 * counts the guided levels (a guess taken, a guess that failed its check)
 * and reports every guess taken that the binary search over the same node
 * refutes. Checked here: a free right after its alloc takes every guess;
 * a free whose extent moved (an insert before it in its leaf, splits)
 * refuses the stale guesses and still frees what it should (an old copy
 * of its entry just past the leaf's count among them); a free of
 * another start, or on another CPU, is not guided at all; a random mix of
 * allocs and frees (fanouts 4, 8, 126) frees everything it allocated;
 * planted guesses, one level moved off the true path, are refused there;
 * and a root collapse lost to a conflict is retried by a carve or release.
 * No guess is refuted anywhere.
 */
#include <stdatomic.h>

#include "env.h"
#include "../../btree/node.h"

extern _Atomic uint64_t cairn_btree_test_guesses[2];

/* Armed (lose_collapse): whenever the root has a single child and is not
 * locked, its version moves on, so that a collapse started then fails its
 * validation and gives up, as it would against a concurrent writer. */
static struct cairn_btree *_Atomic lose_tree;

void cairn_btree_test_yield(void);
void cairn_btree_test_yield(void)
{
	struct cairn_btree *t = atomic_load(&lose_tree);
	if (!t)
		return;
	struct bt_node *r = bt_root(t);
	uint64_t v = atomic_load(&r->version);
	if (!olc_busy(v) && atomic_load(&r->count) == 1 &&
	    atomic_load(&r->level) != 0)
		atomic_compare_exchange_strong(&r->version, &v, v + OLC_STEP);
}

#define B 0x100000ull
#define SPAN 0x100000ull

static uint64_t taken(void)
{
	return atomic_load(&cairn_btree_test_guesses[0]);
}

static uint64_t missed(void)
{
	return atomic_load(&cairn_btree_test_guesses[1]);
}

static unsigned depth(struct cairn_arena *a)
{
	struct cairn_btree_stats st;
	REQUIRE(cairn_btree_validate(&a->tree, &st) == 0);
	return st.depth;
}

/* [a 1][hole 2][a 1][hole 3] repeated n times, quantum 1: allocs of 2 and
 * 3 take a hole whole (no insert), an alloc of 1 carves a hole's head and
 * inserts its rest after it. */
static void populate(struct cairn_arena *a, unsigned fanout, unsigned n)
{
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = fanout };
	REQUIRE(cairn_arena_create(a, env_frames, B, SPAN, &cfg) == 0);
	uint64_t at = B;
	for (unsigned i = 0; i < n; i++) {
		REQUIRE(cairn_arena_reserve(a, at, 1, 1) == 0);
		REQUIRE(cairn_arena_reserve(a, at + 3, 1, 1) == 0);
		at += 7;
	}
	REQUIRE(cairn_arena_validate(a) == 0);
}

/* Free every reserved quantum again and check the arena is one span. */
static void unpopulate(struct cairn_arena *a, unsigned n)
{
	uint64_t at = B;
	for (unsigned i = 0; i < n; i++) {
		CHECK_EQ(cairn_arena_free(a, at, 1), 0);
		CHECK_EQ(cairn_arena_free(a, at + 3, 1), 0);
		at += 7;
	}
	CHECK_EQ(cairn_arena_validate(a), 0);
	uint64_t s, l, c;
	CHECK_EQ(cairn_arena_lookup(a, B, &s, &l, &c), CAIRN_EFREE);
	cairn_arena_destroy(a);
}

static void scenarios(unsigned fanout)
{
	struct cairn_arena a;
	const unsigned n = 200;
	uint64_t x, y, z, t0, m0;

	populate(&a, fanout, n);

	/* A free right after its alloc: every level guessed right. */
	CHECK_EQ(cairn_arena_alloc(&a, 2, 7, &x), 0);
	CHECK_EQ(x, B + 1);
	unsigned levels = depth(&a);
	t0 = taken();
	m0 = missed();
	CHECK_EQ(cairn_arena_free(&a, x, 2), 0);
	unsigned guessed = levels < 8 ? levels : 8; /* deeper: no guess */
	CHECK_EQ(taken() - t0, guessed);
	CHECK_EQ(missed() - m0, levels - guessed);
	CHECK_EQ(cairn_arena_validate(&a), 0);

	/* The extent moved one entry on in its leaf (an insert before it):
	 * the leaf's guess is refused, and the right extent is freed. A carve
	 * before it would take the finger, so a reserve of the head of the
	 * hole before it inserts the rest. */
	CHECK_EQ(cairn_arena_alloc(&a, 3, 7, &x), 0); /* finger: x */
	CHECK_EQ(x, B + 4);
	CHECK_EQ(cairn_arena_reserve(&a, B + 1, 1, 9), 0);
	t0 = taken();
	m0 = missed();
	CHECK_EQ(cairn_arena_free(&a, x, 3), 0);
	CHECK(missed() - m0 >= 1);
	CHECK_EQ(cairn_arena_lookup(&a, x, &z, NULL, NULL), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&a, B + 1, &z, NULL, NULL), 0);
	CHECK_EQ(z, B + 1);
	CHECK_EQ(cairn_arena_free(&a, B + 1, 1), 0);
	CHECK_EQ(cairn_arena_validate(&a), 0);

	/* Splits under the extent: allocs of 1 insert rests until its leaf
	 * and those around it split; the stale guesses are refused. */
	CHECK_EQ(cairn_arena_alloc(&a, 3, 7, &x), 0); /* finger: x */
	for (unsigned i = 0; i < 64; i++)
		REQUIRE(cairn_arena_reserve(&a, B + 7 * i + 1, 1, 9) == 0);
	t0 = taken();
	m0 = missed();
	CHECK_EQ(cairn_arena_free(&a, x, 3), 0);
	if (fanout && fanout <= 8)
		CHECK(missed() - m0 >= 1);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	for (unsigned i = 0; i < 64; i++)
		CHECK_EQ(cairn_arena_free(&a, B + 7 * i + 1, 1), 0);

	/* A free of another start, or on another CPU, is not guided. */
	CHECK_EQ(cairn_arena_alloc(&a, 2, 7, &x), 0);
	CHECK_EQ(cairn_arena_alloc(&a, 2, 7, &y), 0); /* finger: y */
	t0 = taken();
	m0 = missed();
	CHECK_EQ(cairn_arena_free(&a, x, 2), 0);
	CHECK_EQ(taken() - t0, 0);
	CHECK_EQ(missed() - m0, 0);
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	CHECK_EQ(cairn_arena_alloc(&a, 3, 7, &z), 0); /* CPU 1's finger: z */
	cairn_host_cpu_unregister();
	t0 = taken();
	CHECK_EQ(cairn_arena_free(&a, z, 3), 0); /* CPU 0's finger: y */
	CHECK_EQ(taken() - t0, 0);
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	t0 = taken();
	CHECK_EQ(cairn_arena_free(&a, y, 2), 0); /* CPU 1's finger: z */
	CHECK_EQ(taken() - t0, 0);
	cairn_host_cpu_unregister();
	CHECK_EQ(cairn_arena_validate(&a), 0);

	unpopulate(&a, n);
}

/* An old copy just past the leaf's count: one span taken whole by x0..x6
 * (2 quanta each, x6 the last carve: the finger's); freeing x4, then x5
 * merges them and moves x6 down one entry, leaving its old copy, key and
 * all, in the entry past the count, where the finger's leaf guess points.
 * The free of x6 must refuse that guess (it lies past the count, however
 * well its key matches), free x6, and leave the arena whole. */
static void stale_copy(unsigned fanout)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = fanout };
	REQUIRE(cairn_arena_create(&a, env_frames, B, 14, &cfg) == 0);
	uint64_t x[7], s;
	for (unsigned i = 0; i < 7; i++) {
		CHECK_EQ(cairn_arena_alloc(&a, 2, 7, &x[i]), 0);
		CHECK_EQ(x[i], B + 2 * i);
	}
	CHECK_EQ(cairn_arena_free(&a, x[4], 2), 0);
	CHECK_EQ(cairn_arena_free(&a, x[5], 2), 0);
	CHECK_EQ(atomic_load(&a.tree.finger[0].key), x[6]);
	uint64_t reports = cairn_host_reports();
	CHECK_EQ(cairn_arena_free(&a, x[6], 2), 0);
	CHECK_EQ(cairn_host_reports(), reports); /* no guess refuted */
	CHECK_EQ(cairn_arena_lookup(&a, x[6], &s, NULL, NULL), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	CHECK_EQ(cairn_arena_free(&a, x[6], 2), CAIRN_EFREE); /* not twice */
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(cairn_arena_free(&a, x[i], 2), 0);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	CHECK_EQ(cairn_arena_lookup(&a, B, &s, NULL, NULL), CAIRN_EFREE);
	cairn_arena_destroy(&a);
}

/* A root collapse lost to a conflict is retried by the next update, a
 * plain alloc's carve or free's release among them: allocs of 1 quantum
 * grow the tree (fanout 4), frees with every collapse lost shrink it to
 * one leaf under a chain of single children; then the carve (the first
 * time) or the release (the second) must collapse the root. */
static void lost_collapse(void)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = 4 };
	REQUIRE(cairn_arena_create(&a, env_frames, B, 64, &cfg) == 0);
	uint64_t x[40], y;
	for (unsigned round = 0; round < 2; round++) {
		for (unsigned i = 0; i < 40; i++)
			CHECK_EQ(cairn_arena_alloc(&a, 1, 7, &x[i]), 0);
		CHECK(depth(&a) > 1);
		atomic_store(&lose_tree, &a.tree);
		for (unsigned i = 1; i < 40; i++)
			CHECK_EQ(cairn_arena_free(&a, x[i], 1), 0);
		atomic_store(&lose_tree, NULL);
		CHECK(depth(&a) > 1); /* every collapse lost */
		if (round == 0) {
			CHECK_EQ(cairn_arena_alloc(&a, 1, 7, &y), 0); /* carve */
			CHECK_EQ(depth(&a), 1);
			CHECK_EQ(cairn_arena_free(&a, y, 1), 0);
		} else {
			CHECK_EQ(cairn_arena_free(&a, x[0], 1), 0); /* release */
			CHECK_EQ(depth(&a), 1);
		}
		if (round == 0)
			CHECK_EQ(cairn_arena_free(&a, x[0], 1), 0);
	}
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
}

/* Random allocs and frees against a list of what is allocated. The
 * extent allocated last (its finger fresh) is freed now and then, at once
 * or after frees of others (the one just below it among them) that merge,
 * shift and unlink entries around it; any other free is not guided. */
static void random_mix(unsigned fanout, uint64_t seed, unsigned ops)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 16, .fanout = fanout };
	REQUIRE(cairn_arena_create(&a, env_frames, B, 64 * SPAN, &cfg) == 0);
	enum { MAXA = 4096 };
	static uint64_t at[MAXA], len[MAXA];
	unsigned na = 0;
	uint64_t t0 = taken(), m0 = missed(), recent = 0;

	for (unsigned k = 0; k < ops; k++) {
		uint64_t r = splitmix(&seed);
		unsigned j = ~0u; /* none to free */
		if (na < MAXA && (na < 1024 || r % 2 == 0)) {
			uint64_t l = (r >> 8) % 5 * 16 + 16, x;
			REQUIRE(cairn_arena_alloc(&a, l, r | 1, &x) == 0);
			at[na] = x;
			len[na++] = l;
			recent = x;
			if (r & 0x10000) /* free it at once */
				j = na - 1;
		} else if ((r & 0x60000) == 0 && recent) {
			for (j = 0; at[j] != recent; j++) /* the last alloc */
				;
		} else if ((r & 0x60000) == 0x20000 && recent) {
			/* the allocation just below it: its free merges and
			 * moves the entries before the last alloc's */
			for (unsigned i = 0; i < na; i++)
				if (at[i] < recent && (j >= na || at[i] > at[j]))
					j = i;
		} else {
			j = (unsigned)((r >> 20) % na);
		}
		if (j < na) {
			if (at[j] == recent)
				recent = 0;
			CHECK_EQ(cairn_arena_free(&a, at[j], len[j]), 0);
			at[j] = at[--na];
			len[j] = len[na];
		}
		if (k % 512 == 0)
			CHECK_EQ(cairn_arena_validate(&a), 0);
	}
	for (unsigned j = 0; j < na; j++)
		CHECK_EQ(cairn_arena_free(&a, at[j], len[j]), 0);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	uint64_t s, l, c;
	CHECK_EQ(cairn_arena_lookup(&a, B, &s, &l, &c), CAIRN_EFREE);
	/* guesses were taken, and refused */
	CHECK(taken() - t0 > ops / 8);
	CHECK(missed() - m0 > 0);
	cairn_arena_destroy(&a);
}

/* Planted guesses: right after an alloc its finger holds the true path;
 * one level's guess is moved (one or two entries either way, or far past
 * the node's count) before the free, which must refuse it there, take the
 * others, and free the extent. */
static void planted(unsigned fanout, uint64_t seed, unsigned rounds)
{
	struct cairn_arena a;
	const unsigned n = 300;
	static const int delta[] = { 1, -1, 2, -2, 0xfe };
	uint64_t t0 = taken(), m0 = missed();

	populate(&a, fanout, n);
	unsigned levels = depth(&a);
	for (unsigned k = 0; k < rounds; k++) {
		uint64_t r = splitmix(&seed), x, len = r % 3 + 1;
		CHECK_EQ(cairn_arena_alloc(&a, len, 5, &x), 0);
		struct cairn_btree_finger *fg = &a.tree.finger[0];
		uint64_t path = atomic_load(&fg->path);
		CHECK_EQ(atomic_load(&fg->key), x);
		unsigned d = (unsigned)(r >> 8) % (levels < 8 ? levels : 8);
		unsigned g = (unsigned)(path >> (8 * d)) & 0xff;
		g = (g + (unsigned)delta[(r >> 16) % 5]) & 0xff;
		path = (path & ~(0xffull << (8 * d))) | (uint64_t)g << (8 * d);
		atomic_store(&fg->path, path);
		uint64_t m1 = missed();
		CHECK_EQ(cairn_arena_free(&a, x, len), 0);
		CHECK(missed() > m1 || g == 0xff);
		CHECK_EQ(cairn_arena_lookup(&a, x, NULL, NULL, NULL), CAIRN_EFREE);
		if (k % 64 == 0)
			CHECK_EQ(cairn_arena_validate(&a), 0);
	}
	/* every level but the moved one taken (below 8), the moved one
	 * refused unless it became "no guess" */
	unsigned guessed = levels < 8 ? levels : 8;
	CHECK(taken() - t0 >= (uint64_t)rounds * (guessed - 1) - rounds / 4);
	CHECK(missed() - m0 >= rounds / 2);
	unpopulate(&a, n);
}

int main(void)
{
	env_init(2, 256);
	cairn_host_reports_quiet(0);
	uint64_t frames0 = env_free_frames();
	scenarios(4);
	scenarios(8);
	scenarios(0);
	stale_copy(4);
	stale_copy(8);
	stale_copy(0);
	lost_collapse();
	random_mix(4, 1, 20000);
	random_mix(8, 2, 20000);
	random_mix(0, 3, 20000);
	planted(4, 4, 3000);
	planted(8, 5, 3000);
	planted(0, 6, 3000);
	CHECK_EQ(env_free_frames(), frames0);
	CHECK_EQ(cairn_host_reports(), 0); /* no guess refuted */
	return check_done("arena_finger");
}
