/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the arenas: every operation and every error path, on a
 * tree with tiny nodes (fanout 4) and on one with full 4 KiB nodes.
 */
#include <string.h>

#include "env.h"
#include "../../btree/node.h" /* deep_free reads the root's separators */

#define B 0x100000ull /* base of the first span */
#define Q 16ull       /* quantum */

/* Reports planted by the tests (main expects exactly these). */
static uint64_t planted_reports;

static void valid(struct cairn_arena *a)
{
	CHECK_EQ(cairn_arena_validate(a), 0);
}

static void basics(unsigned fanout)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = Q, .fanout = fanout };
	uint64_t x, y, z, s, n, c;

	CHECK_EQ(cairn_arena_create(&a, env_frames, B, 0x1000, &cfg), 0);
	valid(&a);

	/* first fit, rounding to the quantum, lookup with cookies */
	CHECK_EQ(cairn_arena_alloc(&a, 1, 11, &x), 0);
	CHECK_EQ(x, B);
	CHECK_EQ(cairn_arena_alloc(&a, 17, 12, &y), 0);
	CHECK_EQ(y, B + 16);
	CHECK_EQ(cairn_arena_alloc(&a, 32, 13, &z), 0);
	CHECK_EQ(z, B + 48);
	CHECK_EQ(cairn_arena_lookup(&a, y + 20, &s, &n, &c), 0);
	CHECK(s == y && n == 32 && c == 12);
	CHECK_EQ(cairn_arena_lookup(&a, B + 0x800, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&a, B - 1, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&a, B + 0x1000, &s, &n, &c), CAIRN_ERANGE);
	valid(&a);

	/* free errors, then coalescing both ways */
	CHECK_EQ(cairn_arena_free(&a, y, 0), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_free(&a, y + 1, 32), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_free(&a, y + 16, 16), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_free(&a, y, 16), CAIRN_EORDER);
	CHECK_EQ(cairn_arena_free(&a, y, 48), CAIRN_EORDER);
	CHECK_EQ(cairn_arena_free(&a, B + 0x800, 16), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_free(&a, B + 0x2000, 16), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_free(&a, y, 32), 0);
	CHECK_EQ(cairn_arena_free(&a, y, 32), CAIRN_EFREE);
	valid(&a);
	CHECK_EQ(cairn_arena_free(&a, x, 16), 0);  /* merges right */
	valid(&a);
	CHECK_EQ(cairn_arena_free(&a, z, 32), 0);  /* merges both */
	valid(&a);
	CHECK_EQ(cairn_arena_lookup(&a, B, &s, &n, &c), CAIRN_EFREE);

	/* xalloc: alignment, phase, nocross, window, policies */
	CHECK_EQ(cairn_arena_xalloc(&a, 0, 0, 0, 0, 0, 0, CAIRN_FIT_FIRST, 0, &x), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 48, 0, 0, 0, 0, CAIRN_FIT_FIRST, 0, &x), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 64, 64, 0, 0, 0, CAIRN_FIT_FIRST, 0, &x), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 64, 8, 0, 0, 0, CAIRN_FIT_FIRST, 0, &x), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 0, 0, 0, 0, 0, 7, 0, &x), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_xalloc(&a, 64, 0, 0, 32, 0, 0, CAIRN_FIT_FIRST, 0, &x), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 0, 0, 0, B + 64, B + 64, CAIRN_FIT_FIRST, 0, &x), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 0, 0, 0, B + 0x2000, B + 0x3000, CAIRN_FIT_FIRST, 0, &x), CAIRN_ENOMEM);

	CHECK_EQ(cairn_arena_xalloc(&a, 16, 256, 32, 0, 0, 0, CAIRN_FIT_FIRST, 1, &x), 0);
	CHECK_EQ(x, B + 32);
	CHECK_EQ(cairn_arena_xalloc(&a, 16, 0, 0, 0, 0, 0, CAIRN_FIT_HIGH, 2, &y), 0);
	CHECK_EQ(y, B + 0x1000 - 16);
	CHECK_EQ(cairn_arena_xalloc(&a, 64, 64, 0, 0, 0, B + 0x800, CAIRN_FIT_HIGH, 3, &z), 0);
	CHECK_EQ(z, B + 0x800 - 64);
	/* free space now: [B, B+32) 32, [B+48, z) , [z+64, y): best fit of 32
	 * takes the 32-byte hole at B */
	CHECK_EQ(cairn_arena_xalloc(&a, 32, 0, 0, 0, 0, 0, CAIRN_FIT_BEST, 4, &s), 0);
	CHECK_EQ(s, B);
	/* nocross: 64 bytes not crossing a 128 boundary, from B+96 on */
	CHECK_EQ(cairn_arena_xalloc(&a, 64, 0, 0, 128, B + 96, 0, CAIRN_FIT_FIRST, 5, &n), 0);
	CHECK_EQ(n, B + 128);
	valid(&a);
	CHECK_EQ(cairn_arena_free(&a, x, 16), 0);
	CHECK_EQ(cairn_arena_free(&a, y, 16), 0);
	CHECK_EQ(cairn_arena_free(&a, z, 64), 0);
	CHECK_EQ(cairn_arena_free(&a, s, 32), 0);
	CHECK_EQ(cairn_arena_free(&a, n, 64), 0);
	valid(&a);

	/* reserve and add */
	CHECK_EQ(cairn_arena_reserve(&a, B + 64, 0, 0), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_reserve(&a, B + 65, 16, 0), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_reserve(&a, B - 16, 32, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_reserve(&a, B + 0xff0, 32, 0), CAIRN_ERANGE);
	/* a range that wraps past 2^64 is refused before any extent is looked
	 * at: a free extent at addr must not be carved by it */
	CHECK_EQ(cairn_arena_reserve(&a, B + 0x800, 0 - B, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_reserve(&a, B + 0x800, 0 - Q, 0), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&a, B + 0x800, &s, &n, &c), CAIRN_EFREE);
	valid(&a);
	CHECK_EQ(cairn_arena_reserve(&a, B + 64, 64, 9), 0);
	CHECK_EQ(cairn_arena_reserve(&a, B + 96, 16, 0), CAIRN_EBUSY);
	CHECK_EQ(cairn_arena_reserve(&a, B + 32, 64, 0), CAIRN_EBUSY);
	CHECK_EQ(cairn_arena_lookup(&a, B + 100, &s, &n, &c), 0);
	CHECK(s == B + 64 && n == 64 && c == 9);
	CHECK_EQ(cairn_arena_add(&a, B + 0x800, 0x1000), CAIRN_EEXIST);
	CHECK_EQ(cairn_arena_add(&a, B - 0x10, 0x20), CAIRN_EEXIST);
	CHECK_EQ(cairn_arena_add(&a, B + 0x1000, 0), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_add(&a, B + 0x1008, 0x10), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_add(&a, UINT64_MAX - 15, 0x20), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_add(&a, B + 0x1000, 0x1000), 0); /* adjacent span */
	valid(&a);
	/* spans never coalesce: a request across both does not fit ... */
	CHECK_EQ(cairn_arena_reserve(&a, B + 0xff0, 32, 0), CAIRN_EBUSY);
	CHECK_EQ(cairn_arena_xalloc(&a, 0x1800, 0, 0, 0, 0, 0, CAIRN_FIT_FIRST, 0, &x), CAIRN_ENOMEM);
	/* ... and a free at the start of the second span stays separate */
	CHECK_EQ(cairn_arena_xalloc(&a, 0x10, 0, 0, 0, B + 0x1000, 0, CAIRN_FIT_FIRST, 0, &x), 0);
	CHECK_EQ(x, B + 0x1000);
	CHECK_EQ(cairn_arena_free(&a, x, 16), 0);
	valid(&a);
	CHECK_EQ(cairn_arena_free(&a, B + 64, 64), 0);

	/* many small allocations: splits, then frees: node recycling */
	static uint64_t addrs[1024];
	unsigned k = 0;
	while (k < 1024 && cairn_arena_alloc(&a, 16, k, &addrs[k]) == 0)
		k++;
	CHECK_EQ(k, 0x2000 / 16);
	valid(&a);
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	uint64_t nodes = st.nodes;
	for (unsigned i = 0; i < k; i += 2)
		CHECK_EQ(cairn_arena_free(&a, addrs[i], 16), 0);
	valid(&a);
	for (unsigned i = 1; i < k; i += 2)
		CHECK_EQ(cairn_arena_free(&a, addrs[i], 16), 0);
	valid(&a);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.extents, 2);
	CHECK_EQ(st.nodes, nodes);
	for (unsigned i = 0; i < k; i++)
		CHECK_EQ(cairn_arena_alloc(&a, 16, i, &addrs[i]), 0);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.nodes, nodes); /* all from the free list */
	cairn_arena_destroy(&a);
}

/* A tree that grew tall shrinks back once emptied (root collapse). */
static void shrink(void)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = 4 };
	static uint64_t x[400];
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 1 << 20, &cfg), 0);
	for (unsigned i = 0; i < 400; i++)
		CHECK_EQ(cairn_arena_xalloc(&a, 1, 2, 0, 0, 0, 0, CAIRN_FIT_FIRST, 1, &x[i]), 0);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK(st.depth >= 5);
	for (unsigned i = 0; i < 400; i++)
		CHECK_EQ(cairn_arena_free(&a, x[(i * 7) % 400], 1), 0);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.extents, 1);
	CHECK_EQ(st.depth, 1);
	CHECK_EQ(st.tree_nodes, 1);
	valid(&a);
	cairn_arena_destroy(&a);
}

/* Fanout 4, allocations in address order: an extent each (allocated
 * extents never merge), the free rest last, leaves about half full (a
 * split halves a full node and the next inserts go right), so the tree
 * grows a level per doubling until the depth limit refuses a root split.
 * That must come no sooner than btree.h promises (F * (F/2)^(DEPTH_MAX -
 * 1) extents), as CAIRN_ENOSPC, and change nothing; the frees, out of
 * order, must then shrink the tree back to one node, and it must grow
 * again. */
static void deep(void)
{
	enum { N = 1 << 16 };
	uint64_t bound = 4;
	for (unsigned l = 1; l < CAIRN_BTREE_DEPTH_MAX; l++)
		bound *= 2;
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = 4 };
	struct cairn_btree_stats st;
	uint64_t x, frames = env_free_frames();
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 1ull << 32, &cfg), 0);
	unsigned n = 0;
	int err = 0;
	while (n < N && !(err = cairn_arena_alloc(&a, 1, n, &x)) && x == n)
		n++;
	CHECK(n >= bound);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.extents, n + 1ull);
	printf("arena_unit: fanout 4: %llu extents, depth %u, %llu nodes (at least %llu promised)\n",
	       (unsigned long long)st.extents, st.depth, (unsigned long long)st.tree_nodes,
	       (unsigned long long)bound);
	if (n < N) { /* the limit: refused, nothing changed, refused again */
		CHECK_EQ(err, CAIRN_ENOSPC);
		CHECK_EQ(st.depth, CAIRN_BTREE_DEPTH_MAX);
		x = 7;
		CHECK_EQ(cairn_arena_alloc(&a, 1, n, &x), CAIRN_ENOSPC);
		CHECK_EQ(x, 7);
		struct cairn_btree_stats again;
		CHECK_EQ(cairn_btree_validate(&a.tree, &again), 0);
		CHECK_EQ(again.extents, st.extents);
		CHECK_EQ(again.tree_nodes, st.tree_nodes);
		CHECK_EQ(cairn_arena_free(&a, n - 1, 1), 0); /* frees still work there */
		CHECK_EQ(cairn_arena_alloc(&a, 1, n, &x), 0);
		CHECK_EQ(x, n - 1);
	}
	for (unsigned i = 0; i < n; i++) /* 7919 is prime: a permutation of 0..n-1 */
		CHECK_EQ(cairn_arena_free(&a, n % 7919 ? (i * 7919ull) % n : i, 1), 0);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.extents, 1);
	CHECK_EQ(st.depth, 1);
	for (unsigned i = 0; i < 1000; i++) {
		CHECK_EQ(cairn_arena_alloc(&a, 1, 0, &x), 0);
		CHECK_EQ(x, i);
	}
	valid(&a);
	cairn_arena_destroy(&a);
	CHECK_EQ(env_free_frames(), frames);
}

/*
 * A free whose update changes three whole paths that part at the root, at
 * the depth limit. Fanout 4, allocations in address order until the root
 * split is refused (depth 12, the root's four children each the top of
 * 11 levels); X and Y are the root's second and third children, keys
 * [s1, s2) and [s2, s3). s2 (Y's first extent, so the longest free one in
 * Y) is freed, then s1 - 1 (the last of the first child) and s1 .. s2 - 2
 * in order, each merging into the free extent before X, which leaves X a
 * chain of single children down to one leaf holding s2 - 1. Its free
 * merges with both neighbours: the first child's path (the merged extent
 * grows its maxima, 11 nodes), X's chain (every node empties and is
 * unlinked, 11) and Y's path (its maximum drops to 0, 11) change, and the
 * root: 34 nodes, two more than the change plan had room for, and the
 * free came back CAIRN_ENOSPC with the range still allocated. It must
 * succeed and leave one free extent [s1 - 1, s2 + 1).
 */
static void deep_free(void)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = 4 };
	struct cairn_btree_stats st;
	uint64_t x, s, len, cookie, frames = env_free_frames();
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 1ull << 32, &cfg), 0);
	unsigned n = 0;
	while (n < (1u << 16) && cairn_arena_alloc(&a, 1, n + 1, &x) == 0)
		n++;
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.depth, CAIRN_BTREE_DEPTH_MAX);
	struct bt_node *r = a.tree.root;
	unsigned f = rd(r->first);
	REQUIRE(rd(r->count) >= 3);
	uint64_t s1 = rd(r->key[f + 1]), s2 = rd(r->key[f + 2]);
	REQUIRE(s1 > 0 && s1 + 2 < s2 && s2 < n);
	CHECK_EQ(cairn_arena_free(&a, s2, 1), 0);
	CHECK_EQ(cairn_arena_free(&a, s1 - 1, 1), 0);
	for (uint64_t u = s1; u < s2 - 1; u++)
		CHECK_EQ(cairn_arena_free(&a, u, 1), 0);
	CHECK_EQ(cairn_arena_free(&a, s2 - 1, 1), 0);
	CHECK_EQ(cairn_arena_lookup(&a, s2 - 1, &s, &len, &cookie), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&a, s1 - 2, &s, &len, &cookie), 0);
	CHECK_EQ(s, s1 - 2);
	CHECK_EQ(cairn_arena_lookup(&a, s2 + 1, &s, &len, &cookie), 0);
	CHECK_EQ(s, s2 + 1);
	CHECK_EQ(cairn_arena_free(&a, s2 - 1, 1), CAIRN_EFREE);
	valid(&a);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(st.extents, n + 1ull - (s2 - s1 + 2) + 1);
	cairn_arena_destroy(&a);
	CHECK_EQ(env_free_frames(), frames);
}

/*
 * Constrained fits that scan far in a deep tree, then insert through a
 * descent of their own. Fanout 4, 6000 allocated quanta (depth 10); every
 * odd quantum below 1848 and above 2100 freed (free extents of one quantum
 * that no 1024-aligned request can use), and [1858, 2051) freed in address
 * order, so that one free extent, filed in the leaf of 1858, reaches past
 * that leaf's upper separator (the merges deleted the next leaves' first
 * keys). A request aligned to 1024 fits below 6000 only at 2048: a lowest
 * fit from each of the 400 minaddrs below the block, a highest fit from
 * each of the 400 maxaddrs above it and a best fit scan the free quanta on
 * the way (the read set is compacted every few dozen nodes, so the scans
 * end at every point of that cycle), and the carve's pieces at 2048 and
 * 2049 lie past the separator: the update descends for them after the
 * scan. Each must be served at 2048, and its free must leave the extents
 * as they were. Then the tree's own query from the same minaddrs, with a
 * fit callback and the neighbours in view: the block is its leaf's last
 * extent, so the step to succ reads the next leaf's path after the scan;
 * the planner must see pred, the block and succ (and changes nothing).
 */
static bool deep_fit(const struct cairn_ext *e, void *arg, uint64_t *where)
{
	(void)arg;
	uint64_t at = (e->start + 1023) & ~1023ull;
	if (at < e->start || e->start + e->len - at < 1 || at >= e->start + e->len)
		return false;
	*where = at;
	return true;
}

static int deep_view(const struct cairn_bt_view *v, void *arg,
		     struct cairn_bt_edit *e)
{
	(void)e;
	*(struct cairn_bt_view *)arg = *v;
	return 0; /* every action KEEP: nothing changes */
}

static void deep_scan(void)
{
	enum { M = 6000, LOW = 1848, BLK0 = 1858, BLK1 = 2051, HIGH = 2100 };
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = 4 };
	struct cairn_btree_stats st, again;
	uint64_t x;
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 1 << 20, &cfg), 0);
	for (unsigned i = 0; i < M; i++) {
		REQUIRE(cairn_arena_alloc(&a, 1, i + 1, &x) == 0);
		REQUIRE(x == i);
	}
	for (uint64_t u = 1; u < LOW; u += 2)
		CHECK_EQ(cairn_arena_free(&a, u, 1), 0);
	for (uint64_t u = HIGH + 1; u < M; u += 2)
		CHECK_EQ(cairn_arena_free(&a, u, 1), 0);
	for (uint64_t u = BLK0; u < BLK1; u++)
		CHECK_EQ(cairn_arena_free(&a, u, 1), 0);
	valid(&a);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK(st.depth >= 10);
	unsigned bad = 0;
	for (uint64_t lo = LOW - 400; lo <= LOW; lo++) {
		x = 0;
		int err = cairn_arena_xalloc(&a, 1, 1024, 0, 0, lo, 0,
					     CAIRN_FIT_FIRST, 7, &x);
		if (err != 0 || x != 2048)
			printf("lo %llu: %d %llu\n", (unsigned long long)lo, err, (unsigned long long)x);
		bad += err != 0 || x != 2048;
		if (err == 0)
			CHECK_EQ(cairn_arena_free(&a, x, 1), 0);
		x = 0;
		err = cairn_arena_xalloc(&a, 1, 1024, 0, 0, 0, HIGH + LOW - lo,
					 CAIRN_FIT_HIGH, 7, &x);
		if (err != 0 || x != 2048)
			printf("hi %llu: %d %llu\n", (unsigned long long)(HIGH + LOW - lo), err, (unsigned long long)x);
		bad += err != 0 || x != 2048;
		if (err == 0)
			CHECK_EQ(cairn_arena_free(&a, x, 1), 0);
	}
	/* The tree's own query, neighbours in view: the steps to pred and
	 * succ after the scan (succ lies in the next leaf) need room too. */
	for (uint64_t lo = LOW - 400; lo <= LOW; lo++) {
		struct cairn_bt_view v = { 0 };
		struct cairn_bt_query q = { .find = CAIRN_BT_FIT_LOW, .lo = lo,
					    .hi = UINT64_MAX, .need = 1,
					    .fit = deep_fit, .plan = deep_view,
					    .arg = &v };
		int err = cairn_btree_update(&a.tree, &q);
		if (err != 0 || v.where != 2048 || v.cur.start != BLK0 ||
		    !v.has_pred || v.pred.start != BLK0 - 1 || !v.has_succ ||
		    v.succ.start != BLK1)
			printf("view from %llu: %d %llu\n", (unsigned long long)lo,
			       err, (unsigned long long)v.where);
		bad += err != 0 || v.where != 2048 || v.cur.start != BLK0 ||
		       !v.has_pred || v.pred.start != BLK0 - 1 ||
		       !v.has_succ || v.succ.start != BLK1;
	}
	for (uint64_t hi = BLK1; hi < BLK1 + 64; hi++) {
		x = 0;
		int err = cairn_arena_xalloc(&a, 1, 1024, 0, 0, 0, hi,
					     CAIRN_FIT_BEST, 7, &x);
		bad += err != 0 || x != 2048;
		if (err == 0)
			CHECK_EQ(cairn_arena_free(&a, x, 1), 0);
	}
	CHECK_EQ(bad, 0);
	valid(&a);
	CHECK_EQ(cairn_btree_validate(&a.tree, &again), 0);
	CHECK_EQ(again.extents, st.extents);
	cairn_arena_destroy(&a);
}

/* A child arena (quantum 16, fanout 4, import quantum iq) importing
 * through src from a parent over [pbase, pbase + 1 MiB) of quantum pq. */
static void family(struct cairn_arena *parent, struct cairn_arena *child,
		   struct cairn_arena_source *src, uint64_t pbase, uint64_t pq, uint64_t iq)
{
	struct cairn_arena_config pc = { .quantum = pq, .fanout = 4 };
	CHECK_EQ(cairn_arena_create(parent, env_frames, pbase, 0x100000, &pc), 0);
	cairn_arena_source_arena(src, parent);
	struct cairn_arena_config cc = { .quantum = 16, .source = src,
					 .import_quantum = iq, .fanout = 4 };
	CHECK_EQ(cairn_arena_create(child, env_frames, 0, 0, &cc), 0);
}

/* Imports from a parent arena, release of wholly free spans. */
static void imports(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000000, 4096, 0x4000);

	uint64_t x, y, z, s, n, c;
	CHECK_EQ(cairn_arena_alloc(&child, 100, 1, &x), 0);
	CHECK_EQ(x, 0x40000000);
	CHECK_EQ(cairn_arena_lookup(&parent, x, &s, &n, &c), 0);
	CHECK(s == x && n == 0x4000 && c == (uintptr_t)&parent);
	CHECK_EQ(cairn_arena_alloc(&child, 0x4000, 2, &y), 0); /* a second span */
	CHECK_EQ(y, 0x40004000);
	CHECK_EQ(atomic_load(&child.imports), 2);
	CHECK_EQ(cairn_arena_alloc(&child, 0x10, 3, &z), 0);
	CHECK_EQ(z, x + 112);
	valid(&child);
	valid(&parent);
	CHECK_EQ(cairn_arena_free(&child, y, 0x4000), 0);
	CHECK_EQ(atomic_load(&child.releases), 1);
	CHECK_EQ(cairn_arena_lookup(&parent, y, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_free(&child, x, 112), 0);
	CHECK_EQ(atomic_load(&child.releases), 1);
	CHECK_EQ(cairn_arena_free(&child, z, 16), 0);
	CHECK_EQ(atomic_load(&child.releases), 2);
	CHECK_EQ(cairn_arena_lookup(&parent, x, &s, &n, &c), CAIRN_EFREE);
	valid(&child);
	valid(&parent);
	/* parent exhaustion: the child fails cleanly */
	CHECK_EQ(cairn_arena_alloc(&child, 0x200000, 1, &x), CAIRN_ENOMEM);
	valid(&child);
	/* destroy gives allocated spans back too */
	CHECK_EQ(cairn_arena_alloc(&child, 0x100, 1, &x), 0);
	cairn_arena_destroy(&child);
	CHECK_EQ(cairn_arena_lookup(&parent, x, &s, &n, &c), CAIRN_EFREE);
	valid(&parent);
	cairn_arena_destroy(&parent);
}

/* A span the parent no longer has allocated as the child's import (here
 * freed in the parent behind the child's back, then taken by another
 * owner): the child's release must not free the other owner's range, and
 * the misuse is reported, as the frames source reports a span it did not
 * import. */
static void import_release_foreign(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000000, 4096, 0x4000);
	uint64_t x, y, s, n, c, reports = cairn_host_reports();
	CHECK_EQ(cairn_arena_alloc(&child, 100, 1, &x), 0);
	CHECK_EQ(cairn_arena_free(&parent, x, 0x4000), 0); /* the misuse */
	CHECK_EQ(cairn_arena_alloc(&parent, 0x4000, 77, &y), 0);
	CHECK_EQ(y, x);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_arena_free(&child, x, 100), 0);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports + 1);
	planted_reports++;
	CHECK_EQ(cairn_arena_lookup(&parent, y, &s, &n, &c), 0);
	CHECK(s == y && n == 0x4000 && c == 77); /* the other owner's, still */
	CHECK_EQ(cairn_arena_free(&parent, y, 0x4000), 0);
	valid(&child);
	valid(&parent);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
}

/* A request above 2^63 with a power-of-two import quantum: no import
 * size can hold it, so it fails before asking the source (the power of
 * two above it would be 2^64; UBSan aborts on the shift that computes
 * it), and nothing changes. */
static void import_huge(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000000, 4096, 0);

	uint64_t x = 0, s, n, c;
	CHECK_EQ(cairn_arena_alloc(&child, (1ull << 63) + 16, 1, &x), CAIRN_ENOMEM);
	CHECK_EQ(cairn_arena_xalloc(&child, (1ull << 63) + 1, 0, 0, 0, 0, 0,
				    CAIRN_FIT_BEST, 1, &x), CAIRN_ENOMEM);
	CHECK_EQ(cairn_arena_xalloc(&child, 1ull << 62, 1ull << 62, 0, 0, 0, 0,
				    CAIRN_FIT_FIRST, 1, &x), CAIRN_ENOMEM);
	CHECK_EQ(x, 0);
	CHECK_EQ(atomic_load(&child.imports), 0);
	CHECK_EQ(cairn_arena_lookup(&parent, 0x40000000, &s, &n, &c), CAIRN_EFREE);
	valid(&child);
	valid(&parent);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
}

/* nocross through imports: the parent's space starts 16 bytes past a
 * 64-byte boundary, so a span it hands out with the quantum's alignment
 * crosses a nocross boundary wherever the request would sit in it. The
 * import asks for an alignment that leaves room for the request between
 * two boundaries, and one import serves it. */
static void import_nocross(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000010, 16, 0);

	uint64_t x = 0, y = 0, z = 0;
	CHECK_EQ(cairn_arena_xalloc(&child, 64, 0, 0, 64, 0, 0, CAIRN_FIT_FIRST, 1, &x), 0);
	CHECK_EQ(x & 63, 0);
	CHECK_EQ(atomic_load(&child.imports), 1);
	/* a boundary wider than the span: the span lies between two */
	CHECK_EQ(cairn_arena_xalloc(&child, 48, 0, 0, 256, 0, 0, CAIRN_FIT_FIRST, 2, &y), 0);
	CHECK_EQ(y / 256, (y + 47) / 256);
	CHECK_EQ(atomic_load(&child.imports), 2);
	/* with a phase: 32 bytes at 16 mod 64, inside a 64-byte block */
	CHECK_EQ(cairn_arena_xalloc(&child, 32, 64, 16, 64, 0, 0, CAIRN_FIT_FIRST, 3, &z), 0);
	CHECK_EQ(z & 63, 16);
	valid(&child);
	valid(&parent);
	CHECK_EQ(cairn_arena_free(&child, x, 64), 0);
	CHECK_EQ(cairn_arena_free(&child, y, 48), 0);
	CHECK_EQ(cairn_arena_free(&child, z, 32), 0);
	CHECK_EQ(atomic_load(&child.releases), atomic_load(&child.imports));
	valid(&child);
	valid(&parent);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
}

/* A request no import can serve (a window below the parent's space): it
 * fails with ENOMEM after importing, and the spans it imported, all still
 * free, go back to the source; a rejected call changes nothing. */
static void import_useless(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000000, 4096, 0x4000);

	uint64_t x = 0, s, n, c;
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0, 0, 0, 0, 0x10000000,
				    CAIRN_FIT_FIRST, 1, &x), CAIRN_ENOMEM);
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0, 0, 0, 0x50000000, 0,
				    CAIRN_FIT_HIGH, 1, &x), CAIRN_ENOMEM);
	CHECK_EQ(x, 0);
	CHECK(atomic_load(&child.imports) > 0);
	CHECK_EQ(atomic_load(&child.releases), atomic_load(&child.imports));
	CHECK_EQ(cairn_arena_lookup(&child, 0x40000000, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&parent, 0x40000000, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&parent, 0x400fffff, &s, &n, &c), CAIRN_EFREE);
	valid(&child);
	valid(&parent);
	/* a span in use stays: one import serves a plain alloc afterwards */
	CHECK_EQ(cairn_arena_alloc(&child, 16, 2, &x), 0);
	CHECK_EQ(x, 0x40000000);
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0, 0, 0, 0, 0x10000000,
				    CAIRN_FIT_FIRST, 3, &s), CAIRN_ENOMEM);
	CHECK_EQ(cairn_arena_lookup(&child, x, &s, &n, &c), 0);
	CHECK(s == x && n == 16 && c == 2);
	CHECK_EQ(atomic_load(&child.releases) + 1, atomic_load(&child.imports));
	valid(&child);
	CHECK_EQ(cairn_arena_free(&child, x, 16), 0);
	CHECK_EQ(atomic_load(&child.releases), atomic_load(&child.imports));
	valid(&child);
	valid(&parent);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
}

/* A request whose window the third import reaches: the two spans below
 * it served nothing and go back, as a failed request's would; only the
 * span that serves it stays (they stayed in the child, whole and free,
 * and nothing but an allocation from them and its free would have
 * released them). */
static void import_window_served(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000000, 4096, 0x4000);

	uint64_t x = 0, y = 0, s, n, c;
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0, 0, 0, 0x40008000, 0,
				    CAIRN_FIT_FIRST, 1, &x), 0);
	CHECK_EQ(x, 0x40008000);
	CHECK_EQ(atomic_load(&child.imports), 3);
	CHECK_EQ(atomic_load(&child.releases), 2);
	CHECK_EQ(cairn_arena_lookup(&child, 0x40000000, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&child, 0x40004000, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&parent, 0x40000000, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&parent, 0x40004000, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&parent, x, &s, &n, &c), 0);
	CHECK(s == x && n == 0x4000 && c == (uintptr_t)&parent);
	valid(&child);
	valid(&parent);
	/* a span another request then allocates from stays */
	CHECK_EQ(cairn_arena_alloc(&child, 16, 2, &y), 0);
	CHECK_EQ(y, x + 16);
	CHECK_EQ(atomic_load(&child.imports), 3);
	CHECK_EQ(cairn_arena_free(&child, x, 16), 0);
	CHECK_EQ(cairn_arena_free(&child, y, 16), 0);
	CHECK_EQ(atomic_load(&child.releases), 3);
	CHECK_EQ(cairn_arena_lookup(&parent, x, &s, &n, &c), CAIRN_EFREE);
	valid(&child);
	valid(&parent);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
}

/* A source that hands out one base given by the test (or fails with the
 * test's error) and records what comes back. */
struct fixed_source {
	uint64_t base, released, released_size;
	unsigned imports, releases;
	int err;
};

static int fixed_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	struct fixed_source *fs = ctx;
	(void)size;
	(void)align;
	fs->imports++;
	if (fs->err)
		return fs->err;
	*addr = fs->base;
	return 0;
}

static void fixed_release(void *ctx, uint64_t addr, uint64_t size)
{
	struct fixed_source *fs = ctx;
	fs->releases++;
	fs->released = addr;
	fs->released_size = size;
}

/* A span the arena cannot hold although nothing is wrong with it: the
 * last 4 KiB of the space, which ends at 2^64 (no extent can end there;
 * cairn_arena_add refuses it too). It is given straight back, and serves
 * nothing: the request fails with CAIRN_ENOMEM, nothing is reported, and
 * nothing changes; a good span then serves. */
static void import_refused(void)
{
	struct fixed_source fs = { 0 };
	struct cairn_arena_source src = { fixed_import, fixed_release, &fs, NULL };
	struct cairn_arena child;
	struct cairn_arena_config cc = { .quantum = 16, .source = &src,
					 .import_quantum = 0x1000, .fanout = 4 };
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &cc), 0);
	uint64_t x = 0, s, n, c, reports = cairn_host_reports();
	fs.base = 0ull - 0x1000; /* the last 4 KiB: it ends at 2^64 */
	CHECK_EQ(cairn_arena_alloc(&child, 16, 1, &x), CAIRN_ENOMEM);
	CHECK(fs.releases == 1 && fs.released == fs.base && fs.released_size == 0x1000);
	CHECK_EQ(x, 0);
	CHECK_EQ(atomic_load(&child.imports), 0);
	CHECK_EQ(cairn_host_reports(), reports);
	CHECK_EQ(cairn_arena_lookup(&child, fs.base, &s, &n, &c), CAIRN_ERANGE);
	valid(&child);
	fs.base = 0x20000;
	CHECK_EQ(cairn_arena_alloc(&child, 16, 2, &x), 0);
	CHECK_EQ(x, 0x20000);
	CHECK_EQ(atomic_load(&child.imports), 1);
	CHECK_EQ(cairn_arena_free(&child, x, 16), 0);
	CHECK(fs.releases == 2 && fs.released == 0x20000);
	valid(&child);
	cairn_arena_destroy(&child);
}

/*
 * Spans no source may lend (each breaks struct cairn_arena_source's
 * contract): one off the quantum, one running past 2^64, and one over a
 * span the arena holds (added, or imported and lent again while the arena
 * still holds it). Nothing is exhausted, so CAIRN_ENOMEM would send the
 * caller after memory that cannot help: each is reported
 * (cairn_port_report), given straight back, and the request fails with
 * CAIRN_ECORRUPT, whether the add would have carved it (a plain alloc) or
 * added the span free for a retry (a phase). Nothing changes: no import
 * counted, the extents as before, the owner of what the span overlaps
 * untouched. Through an arena source, the parent's CAIRN_ECORRUPT is the
 * child's request's error, reported once.
 */
static void import_broken(void)
{
	struct fixed_source fs = { 0 };
	struct cairn_arena_source src = { fixed_import, fixed_release, &fs, NULL };
	struct cairn_arena child;
	struct cairn_arena_config cc = { .quantum = 16, .source = &src,
					 .import_quantum = 0x1000, .fanout = 4 };
	uint64_t x = 7, y, s, n, c, reports = cairn_host_reports();
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0x20000, 0x10, &cc), 0);
	CHECK_EQ(cairn_arena_alloc(&child, 16, 1, &y), 0); /* the span, whole */
	CHECK_EQ(y, 0x20000);
	cairn_host_reports_quiet(1);
	fs.base = 0x10008; /* off the quantum */
	CHECK_EQ(cairn_arena_alloc(&child, 16, 2, &x), CAIRN_ECORRUPT);
	CHECK(fs.releases == 1 && fs.released == 0x10008 && fs.released_size == 0x1000);
	fs.base = 0ull - 0x800; /* 2 KiB of it past 2^64 */
	CHECK_EQ(cairn_arena_alloc(&child, 16, 2, &x), CAIRN_ECORRUPT);
	CHECK(fs.releases == 2 && fs.released == fs.base && fs.released_size == 0x1000);
	fs.base = 0x1f800; /* [0x1f800, 0x20800): over the added span */
	CHECK_EQ(cairn_arena_alloc(&child, 16, 2, &x), CAIRN_ECORRUPT);
	CHECK(fs.releases == 3 && fs.released == fs.base && fs.released_size == 0x1000);
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 64, 32, 0, 0, 0, CAIRN_FIT_FIRST, 2, &x),
		 CAIRN_ECORRUPT); /* room on both sides: it would be added free */
	CHECK(fs.releases == 4 && fs.released == fs.base && fs.released_size == 0x1000);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports + 4);
	CHECK_EQ(fs.imports, 4);
	CHECK_EQ(x, 7);
	CHECK_EQ(atomic_load(&child.imports), 0);
	CHECK_EQ(cairn_arena_lookup(&child, 0x20000, &s, &n, &c), 0);
	CHECK(s == 0x20000 && n == 16 && c == 1);
	CHECK_EQ(cairn_arena_lookup(&child, 0x1f800, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&child, 0x20010, &s, &n, &c), CAIRN_ERANGE);
	valid(&child);

	/* A good span serves; lent again while the arena holds it (a larger
	 * request than its rest: another import), it is refused so too. */
	fs.base = 0x40000;
	CHECK_EQ(cairn_arena_alloc(&child, 16, 3, &x), 0);
	CHECK_EQ(x, 0x40000);
	CHECK_EQ(atomic_load(&child.imports), 1);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_arena_alloc(&child, 0x2000, 4, &y), CAIRN_ECORRUPT);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports + 5);
	CHECK(fs.releases == 5 && fs.released == 0x40000 && fs.released_size == 0x2000);
	CHECK_EQ(atomic_load(&child.imports), 1);
	CHECK_EQ(cairn_arena_lookup(&child, 0x40000, &s, &n, &c), 0);
	CHECK(s == 0x40000 && n == 16 && c == 3);
	CHECK_EQ(cairn_arena_lookup(&child, 0x40010, &s, &n, &c), CAIRN_EFREE);
	valid(&child);
	CHECK_EQ(cairn_arena_free(&child, 0x40000, 16), 0); /* the span goes back */
	CHECK(fs.releases == 6 && fs.released == 0x40000 && fs.released_size == 0x1000);
	CHECK_EQ(cairn_arena_free(&child, 0x20000, 16), 0);
	valid(&child);
	cairn_arena_destroy(&child);

	/* A parent arena whose source lends off the quantum, under a child. */
	struct fixed_source pfs = { .base = 0x10008 };
	struct cairn_arena_source psrc = { fixed_import, fixed_release, &pfs, NULL };
	struct cairn_arena parent;
	struct cairn_arena_config pc = { .quantum = 16, .source = &psrc,
					 .import_quantum = 0x10000 };
	struct cairn_arena_source asrc;
	CHECK_EQ(cairn_arena_create(&parent, env_frames, 0, 0, &pc), 0);
	cairn_arena_source_arena(&asrc, &parent);
	cc.source = &asrc;
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &cc), 0);
	x = 7;
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_arena_alloc(&child, 16, 1, &x), CAIRN_ECORRUPT);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports + 6);
	CHECK(pfs.imports == 1 && pfs.releases == 1 && pfs.released == 0x10008);
	CHECK_EQ(atomic_load(&parent.imports), 0);
	CHECK_EQ(atomic_load(&child.imports), 0);
	CHECK_EQ(x, 7);
	valid(&child);
	valid(&parent);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
	planted_reports += 6;
}

/*
 * A span on the quantum but not at the alignment the import asked for
 * breaks the source's contract as well (import returns a range aligned to
 * `align`): an aligned request (0x1000), a nocross one (the span aligned
 * to the boundary, 0x100) and one whose span would have room for it past
 * the misaligned start (0x1000 at 0x1000: a span of 0x2000), each from a
 * span of its own. Each is
 * reported, the span goes straight back, and the request fails with
 * CAIRN_ECORRUPT, nothing changed: no import counted, no span in the
 * tree. The arena served them before, from the aligned part of the span
 * it accepted. A span at the alignment asked then serves.
 */
static void import_misaligned(void)
{
	struct fixed_source fs = { .base = 0x20010 }; /* on the quantum, 16 */
	struct cairn_arena_source src = { fixed_import, fixed_release, &fs, NULL };
	struct cairn_arena child;
	struct cairn_arena_config cc = { .quantum = 16, .source = &src,
					 .import_quantum = 0x1000, .fanout = 4 };
	uint64_t x = 7, s, n, c, reports = cairn_host_reports();
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &cc), 0);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0x1000, 0, 0, 0, 0, CAIRN_FIT_FIRST, 1, &x),
		 CAIRN_ECORRUPT);
	CHECK(fs.releases == 1 && fs.released == 0x20010 && fs.released_size == 0x1000);
	fs.base = 0x40010;
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0, 0, 0x100, 0, 0, CAIRN_FIT_FIRST, 2, &x),
		 CAIRN_ECORRUPT);
	CHECK(fs.releases == 2 && fs.released == 0x40010 && fs.released_size == 0x1000);
	fs.base = 0x60010;
	CHECK_EQ(cairn_arena_xalloc(&child, 0x1000, 0x1000, 0, 0, 0, 0, CAIRN_FIT_HIGH, 3,
				    &x), CAIRN_ECORRUPT);
	CHECK(fs.releases == 3 && fs.released == 0x60010 && fs.released_size == 0x2000);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports + 3);
	CHECK_EQ(fs.imports, 3);
	CHECK_EQ(x, 7);
	CHECK_EQ(atomic_load(&child.imports), 0);
	CHECK_EQ(atomic_load(&child.releases), 0);
	CHECK_EQ(cairn_arena_lookup(&child, 0x21000, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_arena_lookup(&child, 0x61000, &s, &n, &c), CAIRN_ERANGE);
	CHECK_EQ(cairn_btree_validate(&child.tree, &st), 0);
	CHECK_EQ(st.extents, 0);
	valid(&child);

	fs.base = 0x30000; /* aligned as asked: served at its start */
	CHECK_EQ(cairn_arena_xalloc(&child, 16, 0x1000, 0, 0, 0, 0, CAIRN_FIT_FIRST, 4, &x), 0);
	CHECK_EQ(x, 0x30000);
	CHECK_EQ(atomic_load(&child.imports), 1);
	CHECK_EQ(cairn_arena_free(&child, x, 16), 0);
	CHECK(fs.releases == 4 && fs.released == 0x30000 && fs.released_size == 0x1000);
	valid(&child);
	cairn_arena_destroy(&child);
	planted_reports += 3;
}

/* An import that fails says why: exhaustion (the source's CAIRN_ENOMEM)
 * is CAIRN_ENOMEM, but a structural failure is its own code, not
 * "nothing fits". Fanout 4, one span filled with one-quantum allocations
 * in address order until the depth limit refuses a root split
 * (CAIRN_ENOSPC, as deep()); then a request larger than the free rest
 * imports a span above it, whose add needs a slot in the same full
 * rightmost leaf and so the same refused split: CAIRN_ENOSPC, the span
 * given straight back. A source that fails with another error (here
 * CAIRN_EBUSY) passes it through. Each call changes nothing; a free then
 * makes room and the import serves. */
static void import_errors(void)
{
	enum { N = 1 << 16 };
	struct fixed_source fs = { .base = 1ull << 40 };
	struct cairn_arena_source src = { fixed_import, fixed_release, &fs, NULL };
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .source = &src, .fanout = 4 };
	struct cairn_btree_stats st, again;
	uint64_t x, frames = env_free_frames();
	const uint64_t big = 1ull << 33; /* more than the span's free rest */
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 1ull << 32, &cfg), 0);
	unsigned n = 0;
	int err = 0;
	while (n < N && !(err = cairn_arena_alloc(&a, 1, n, &x)) && x == n)
		n++;
	REQUIRE(n < N && err == CAIRN_ENOSPC);
	CHECK_EQ(cairn_btree_validate(&a.tree, &st), 0);
	CHECK_EQ(fs.imports, 0);

	x = 7;
	CHECK_EQ(cairn_arena_alloc(&a, big, 1, &x), CAIRN_ENOSPC);
	CHECK_EQ(cairn_arena_xalloc(&a, big, 0, 0, 0, 0, 0, CAIRN_FIT_FIRST, 1, &x),
		 CAIRN_ENOSPC);
	CHECK_EQ(cairn_arena_xalloc(&a, big, 0, 0, 0, 0, 0, CAIRN_FIT_BEST, 1, &x),
		 CAIRN_ENOSPC);
	CHECK_EQ(x, 7);
	CHECK_EQ(fs.imports, 3);
	CHECK(fs.releases == 3 && fs.released == fs.base && fs.released_size == big);
	CHECK_EQ(atomic_load(&a.imports), 0);

	fs.err = CAIRN_EBUSY; /* the source's own error */
	CHECK_EQ(cairn_arena_alloc(&a, big, 1, &x), CAIRN_EBUSY);
	CHECK_EQ(cairn_arena_xalloc(&a, big, 0, 0, 0, 0, 0, CAIRN_FIT_HIGH, 1, &x),
		 CAIRN_EBUSY);
	fs.err = CAIRN_ENOMEM; /* exhaustion stays exhaustion */
	CHECK_EQ(cairn_arena_alloc(&a, big, 1, &x), CAIRN_ENOMEM);
	CHECK_EQ(x, 7);
	CHECK_EQ(fs.releases, 3);
	CHECK_EQ(cairn_btree_validate(&a.tree, &again), 0);
	CHECK_EQ(again.extents, st.extents);
	CHECK_EQ(again.tree_nodes, st.tree_nodes);

	/* room in the rightmost leaf: the import serves */
	fs.err = 0;
	CHECK_EQ(cairn_arena_free(&a, n - 1, 1), 0);
	CHECK_EQ(cairn_arena_free(&a, n - 2, 1), 0);
	CHECK_EQ(cairn_arena_alloc(&a, big, 1, &x), 0);
	CHECK_EQ(x, fs.base);
	CHECK_EQ(atomic_load(&a.imports), 1);
	CHECK_EQ(cairn_arena_free(&a, x, big), 0);
	CHECK_EQ(fs.releases, 4);
	valid(&a);
	cairn_arena_destroy(&a);
	CHECK_EQ(env_free_frames(), frames);
}

/* A source that serves spans of at most `cap` bytes, naturally aligned,
 * from a bump pointer, as a fragmented frame allocator would: it has
 * small blocks and no large one. It records the sizes asked. */
struct short_source {
	uint64_t next, cap;
	unsigned asked, releases;
	uint64_t sizes[32];
};

static int short_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	struct short_source *ss = ctx;
	if (ss->asked < 32)
		ss->sizes[ss->asked] = size;
	ss->asked++;
	if (size > ss->cap)
		return CAIRN_ENOMEM;
	uint64_t al = align > size ? align : size;
	if (al & (al - 1))
		al = 4096;
	ss->next = (ss->next + al - 1) & ~(al - 1);
	*addr = ss->next;
	ss->next += size;
	return 0;
}

static void short_release(void *ctx, uint64_t addr, uint64_t size)
{
	(void)addr;
	(void)size;
	((struct short_source *)ctx)->releases++;
}

/* The import quantum is a preference: a source short of spans that large
 * serves the request from the largest smaller span it has, halving (a
 * power-of-two quantum) down to the request's own size, or (any other
 * quantum) from a span of the request's size. A request no span can hold
 * still fails with ENOMEM, and nothing changes. */
static void import_short_source(void)
{
	struct short_source ss = { .next = 1ull << 40, .cap = 2 * MiB };
	struct cairn_arena_source src = { short_import, short_release, &ss, NULL };
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 4096, .source = &src,
					  .import_quantum = 64 * MiB };
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 0, &cfg), 0);
	uint64_t x = 0, y = 0, s, n, c;
	CHECK_EQ(cairn_arena_alloc(&a, 100 << 10, 1, &x), 0);
	CHECK_EQ(ss.asked, 6); /* 64, 32, 16, 8, 4, 2 MiB */
	for (unsigned i = 0; i < 6 && i < ss.asked; i++)
		CHECK_EQ(ss.sizes[i], (64 * MiB) >> i);
	CHECK_EQ(atomic_load(&a.imports), 1);
	CHECK_EQ(cairn_arena_lookup(&a, x, &s, &n, &c), 0);
	CHECK(s == x && n == 100 << 10 && c == 1);
	/* 3 MiB needs a 4 MiB span: none */
	ss.asked = 0;
	CHECK_EQ(cairn_arena_alloc(&a, 3 * MiB, 2, &y), CAIRN_ENOMEM);
	CHECK_EQ(ss.asked, 5); /* 64 .. 4 MiB */
	CHECK_EQ(ss.sizes[4], 4 * MiB);
	CHECK_EQ(atomic_load(&a.imports), 1);
	CHECK_EQ(ss.releases, 0);
	valid(&a);
	/* the first span's rest serves without an import */
	ss.asked = 0;
	CHECK_EQ(cairn_arena_alloc(&a, MiB, 3, &y), 0);
	CHECK_EQ(ss.asked, 0);
	CHECK_EQ(cairn_arena_free(&a, x, 100 << 10), 0);
	CHECK_EQ(cairn_arena_free(&a, y, MiB), 0);
	CHECK_EQ(ss.releases, 1);
	valid(&a);
	cairn_arena_destroy(&a);

	/* a quantum of 3 MiB: then a span of the request's size, 100 KiB */
	ss = (struct short_source){ .next = 1ull << 40, .cap = MiB };
	cfg.import_quantum = 3 * MiB;
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 0, &cfg), 0);
	CHECK_EQ(cairn_arena_alloc(&a, 100 << 10, 4, &x), 0);
	CHECK_EQ(ss.asked, 2);
	CHECK(ss.sizes[0] == 3 * MiB && ss.sizes[1] == 100 << 10);
	CHECK_EQ(cairn_arena_free(&a, x, 100 << 10), 0);
	CHECK_EQ(ss.releases, 1);
	valid(&a);
	cairn_arena_destroy(&a);
}

/*
 * An aligned request whose source holds only the least span that serves
 * it: a block aligned for the request, phase + size long (a power of two
 * above that for a power-of-two import quantum), and nothing larger. The
 * import quantum is a preference, and the source is asked for less, down
 * to that span: the request is served there, at the block's start plus
 * its phase (the only place it fits), and goes back whole when freed.
 * Before, the least span asked for kept room for every phase of the
 * alignment (size + align - quantum), which such a source refuses, and
 * the request failed with ENOMEM.
 */
static void import_least_span(void)
{
	static const struct {
		uint64_t size, align, phase, nocross;
		enum cairn_fit pol;
	} rq[] = {
		{ 4 * Q, 4 * Q, 0, 0, CAIRN_FIT_FIRST },
		{ 4 * Q, 4 * Q, 0, 0, CAIRN_FIT_HIGH },
		{ Q, 8 * Q, 2 * Q, 0, CAIRN_FIT_FIRST },
		{ Q, 8 * Q, 3 * Q, 0, CAIRN_FIT_BEST },
		{ Q, 4 * Q, 2 * Q, 2 * Q, CAIRN_FIT_HIGH },  /* nocross too */
		{ 2 * Q, 1ull << 20, 0, 2 * Q, CAIRN_FIT_HIGH }, /* nocross = size */
		{ Q, 1ull << 40, 5 * Q, 0, CAIRN_FIT_FIRST }, /* far beyond the span */
	};
	const uint64_t base = 1ull << 44; /* aligned for every request */
	for (unsigned i = 0; i < sizeof(rq) / sizeof(rq[0]); i++) {
		for (unsigned pw = 0; pw < 2; pw++) {
			uint64_t hold = rq[i].size + rq[i].phase, span = hold;
			while (pw && (span & (span - 1)))
				span += span & -span; /* up to a power of two */
			struct cairn_arena parent, child;
			struct cairn_arena_source src;
			struct cairn_arena_config pc = { .quantum = Q, .fanout = 4 };
			CHECK_EQ(cairn_arena_create(&parent, env_frames, base, span, &pc), 0);
			cairn_arena_source_arena(&src, &parent);
			struct cairn_arena_config cc = {
				.quantum = Q, .source = &src, .fanout = 4,
				.import_quantum = pw ? 64 * Q : 3 * Q,
			};
			CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &cc), 0);
			uint64_t x = 0, s = 0, n = 0, c = 0;
			int err = cairn_arena_xalloc(&child, rq[i].size, rq[i].align,
						     rq[i].phase, rq[i].nocross, 0, 0,
						     rq[i].pol, 5, &x);
			if (err)
				fprintf(stderr, "request %u (import quantum %s): %d\n",
					i, pw ? "64Q" : "3Q", err);
			CHECK_EQ(err, 0);
			if (err == 0) {
				CHECK_EQ(x, base + rq[i].phase);
				CHECK_EQ(cairn_arena_lookup(&child, x, &s, &n, &c), 0);
				CHECK(s == x && n == rq[i].size && c == 5);
				CHECK_EQ(cairn_arena_lookup(&parent, base, &s, &n, &c), 0);
				CHECK(s == base && n == span && c == (uintptr_t)&parent);
				CHECK_EQ(atomic_load(&child.imports), 1);
				valid(&child);
				CHECK_EQ(cairn_arena_free(&child, x, rq[i].size), 0);
			}
			CHECK_EQ(atomic_load(&child.releases), atomic_load(&child.imports));
			CHECK_EQ(cairn_arena_lookup(&parent, base, &s, &n, &c), CAIRN_EFREE);
			valid(&child);
			valid(&parent);
			cairn_arena_destroy(&child);
			cairn_arena_destroy(&parent);
		}
	}
}

/* A heap arena of 64-byte quantum whose spans are frames the port maps
 * at addresses from a VA arena over the test window. */
struct mapped_heap {
	struct cairn_arena va, heap;
	struct cairn_frames_source fs;
	struct cairn_arena_source src;
};

static void mapped_heap_create(struct mapped_heap *m, uint64_t va_quantum,
			       uint64_t import_quantum)
{
	struct cairn_arena_config vc = { .quantum = va_quantum };
	CHECK_EQ(cairn_arena_create(&m->va, env_frames, env_va_window(), 64 * MiB, &vc), 0);
	m->fs = (struct cairn_frames_source){ .frames = env_frames, .va = &m->va };
	cairn_arena_source_frames(&m->src, &m->fs);
	struct cairn_arena_config hc = { .quantum = 64, .source = &m->src,
					 .import_quantum = import_quantum };
	CHECK_EQ(cairn_arena_create(&m->heap, env_frames, 0, 0, &hc), 0);
}

/* Frames mapped by the port at addresses from a VA arena. */
static void frames_source(void)
{
	struct mapped_heap m;
	mapped_heap_create(&m, 4096, 2 * MiB);
	uint64_t before = env_free_frames();
	uint64_t x, y;
	CHECK_EQ(cairn_arena_alloc(&m.heap, 1000, 7, &x), 0);
	CHECK_EQ(x & (2 * MiB - 1), 0);
	memset((void *)(uintptr_t)x, 0xa5, 1000); /* it is mapped */
	CHECK_EQ(cairn_arena_alloc(&m.heap, 3 * MiB, 8, &y), 0); /* 4 MiB import */
	memset((void *)(uintptr_t)y, 0x5a, 3 * MiB);
	CHECK(env_free_frames() <= before - 6 * MiB / 4096);
	CHECK_EQ(cairn_arena_free(&m.heap, y, 3 * MiB), 0);
	CHECK_EQ(cairn_arena_free(&m.heap, x, 1000), 0);
	CHECK_EQ(atomic_load(&m.heap.releases), 2);
	CHECK_EQ(env_free_frames(), before);
	valid(&m.heap);
	valid(&m.va);
	cairn_arena_destroy(&m.heap);
	cairn_arena_destroy(&m.va);
}

/* A VA arena whose quantum (64 KiB) is above the import size (4 KiB): each
 * import's VA range is rounded up to that quantum in the VA arena, and the
 * release must still find it as the range the import took, unmap it and
 * give back both the frame and the VA range. */
static void frames_source_coarse_va(void)
{
	struct mapped_heap m;
	mapped_heap_create(&m, 64 * 1024, 4096);
	uint64_t before = env_free_frames(), reports = cairn_host_reports();
	uint64_t x, y, s, n, c;
	CHECK_EQ(cairn_arena_alloc(&m.heap, 1000, 7, &x), 0);
	memset((void *)(uintptr_t)x, 0xa5, 1000); /* it is mapped */
	CHECK_EQ(cairn_arena_lookup(&m.va, x, &s, &n, &c), 0);
	CHECK(s == x && n == 64 * 1024);
	CHECK_EQ(cairn_arena_alloc(&m.heap, 4096, 8, &y), 0); /* a second span */
	CHECK_EQ(cairn_arena_free(&m.heap, x, 1000), 0);
	CHECK_EQ(cairn_arena_free(&m.heap, y, 4096), 0);
	CHECK_EQ(atomic_load(&m.heap.releases), 2);
	CHECK_EQ(cairn_host_reports(), reports);
	CHECK_EQ(env_free_frames(), before);
	CHECK_EQ(cairn_arena_lookup(&m.va, x, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(&m.va, y, &s, &n, &c), CAIRN_EFREE);
	valid(&m.heap);
	valid(&m.va);
	/* destroy gives an allocated span back the same way */
	CHECK_EQ(cairn_arena_alloc(&m.heap, 64, 9, &x), 0);
	cairn_arena_destroy(&m.heap);
	CHECK_EQ(cairn_host_reports(), reports);
	CHECK_EQ(cairn_arena_lookup(&m.va, x, &s, &n, &c), CAIRN_EFREE);
	CHECK_EQ(env_free_frames(), before + 1); /* and the heap's root node */
	cairn_arena_destroy(&m.va);
}

/* A release whose unmap fails: the frames may still be reachable through
 * the mapping, so they must not go back to the frames instance (another
 * user would get memory this address still reaches), nor the VA range to
 * its arena (the next import would map over it). Both stay taken, the
 * failure is reported, and the VA arena still says where the frames are.
 * From a free and from destroy. */
static void frames_source_unmap_fails(void)
{
	struct mapped_heap m;
	mapped_heap_create(&m, 4096, 4096);
	uint64_t before = env_free_frames(), reports = cairn_host_reports();
	uint64_t x, y, s, n, phys;
	CHECK_EQ(cairn_arena_alloc(&m.heap, 4096, 7, &x), 0);
	memset((void *)(uintptr_t)x, 0xa5, 4096);
	CHECK_EQ(cairn_arena_lookup(&m.va, x, &s, &n, &phys), 0);

	cairn_host_reports_quiet(1);
	cairn_host_fail_unmaps(1);
	CHECK_EQ(cairn_arena_free(&m.heap, x, 4096), 0); /* the heap's part is done */
	cairn_host_reports_quiet(0);
	CHECK_EQ(atomic_load(&m.heap.releases), 1);
	CHECK_EQ(cairn_host_reports(), reports + 1);
	CHECK_EQ(env_free_frames(), before - 1); /* the frame stays taken */
	CHECK_EQ(cairn_arena_lookup(&m.va, x, &s, &n, &y), 0);
	CHECK(s == x && n == 4096 && y == phys);
	CHECK_EQ(((volatile unsigned char *)(uintptr_t)x)[100], 0xa5); /* still mapped */
	/* the next import takes another frame and another VA range */
	CHECK_EQ(cairn_arena_alloc(&m.heap, 4096, 8, &y), 0);
	CHECK(y != x);
	CHECK_EQ(env_free_frames(), before - 2);

	/* the same from destroy */
	uint64_t yphys;
	CHECK_EQ(cairn_arena_lookup(&m.va, y, &s, &n, &yphys), 0);
	cairn_host_reports_quiet(1);
	cairn_host_fail_unmaps(1);
	cairn_arena_destroy(&m.heap);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports + 2);
	CHECK_EQ(cairn_arena_lookup(&m.va, y, &s, &n, &s), 0);
	CHECK_EQ(s, yphys);
	planted_reports += 2;

	/* what the port would do after fixing what made the unmaps fail */
	CHECK_EQ(cairn_port_unmap((uintptr_t)x, 4096), 0);
	CHECK_EQ(cairn_port_unmap((uintptr_t)y, 4096), 0);
	CHECK_EQ(cairn_frames_free(env_frames, phys, 0), 0);
	CHECK_EQ(cairn_frames_free(env_frames, yphys, 0), 0);
	CHECK_EQ(cairn_arena_free(&m.va, x, 4096), 0);
	CHECK_EQ(cairn_arena_free(&m.va, y, 4096), 0);
	CHECK_EQ(env_free_frames(), before + 1); /* and the heap's root node */
	valid(&m.va);
	cairn_arena_destroy(&m.va);
}

/* A frames source under an arena whose import quantum is below a frame
 * (0: the 64-byte quantum) or not a power of two (12 KiB): the header
 * promises import sizes rounded to powers of two of at least 4 KiB, which
 * is all the source can take (a block of 2^k frames). direct: the identity
 * map, else a VA arena. */
static void frames_source_small_iq(bool direct)
{
	struct cairn_arena va, heap;
	const uint64_t base = env_va_window();
	struct cairn_arena_config vc = { .quantum = 4096 };
	CHECK_EQ(cairn_arena_create(&va, env_frames, base, 64 * MiB, &vc), 0);
	struct cairn_frames_source fs = { .frames = env_frames,
					  .va = direct ? NULL : &va };
	struct cairn_arena_source src;
	cairn_arena_source_frames(&src, &fs);
	static const uint64_t iqs[] = { 0, 12 * 1024 };
	for (unsigned i = 0; i < 2; i++) {
		struct cairn_arena_config hc = { .quantum = 64, .source = &src,
						 .import_quantum = iqs[i] };
		CHECK_EQ(cairn_arena_create(&heap, env_frames, 0, 0, &hc), 0);
		uint64_t before = env_free_frames();
		uint64_t x = 0, y = 0, s, n, c;
		CHECK_EQ(cairn_arena_alloc(&heap, 100, 7, &x), 0);
		CHECK_EQ(atomic_load(&heap.imports), 1);
		/* one block: a frame, or 16 KiB for the 12 KiB quantum */
		uint64_t span = i ? 16 * 1024 : 4096;
		CHECK_EQ(env_free_frames(), before - span / 4096);
		if (x)
			memset((void *)(uintptr_t)x, 0xa5, 100);
		/* the rest of the block serves the next request */
		CHECK_EQ(cairn_arena_alloc(&heap, span - 128, 8, &y), 0);
		CHECK_EQ(y, x + 128);
		CHECK_EQ(atomic_load(&heap.imports), 1);
		CHECK_EQ(cairn_arena_free(&heap, x, 100), 0);
		CHECK_EQ(cairn_arena_free(&heap, y, span - 128), 0);
		CHECK_EQ(atomic_load(&heap.releases), 1);
		CHECK_EQ(env_free_frames(), before);
		CHECK_EQ(cairn_arena_lookup(&heap, x, &s, &n, &c), CAIRN_ERANGE);
		valid(&heap);
		cairn_arena_destroy(&heap);
	}
	valid(&va);
	cairn_arena_destroy(&va);
}

/* Frames used in place: spans are blocks of the identity map. */
static void frames_source_direct(void)
{
	struct cairn_arena heap;
	struct cairn_frames_source fs = { .frames = env_frames };
	struct cairn_arena_source src;
	cairn_arena_source_frames(&src, &fs);
	struct cairn_arena_config hc = { .quantum = 4096, .source = &src,
					 .import_quantum = 2 * MiB };
	uint64_t first = env_free_frames();
	CHECK_EQ(cairn_arena_create(&heap, env_frames, 0, 0, &hc), 0);
	uint64_t before = env_free_frames();
	uint64_t x, y, z, s, n, c;
	CHECK_EQ(cairn_arena_alloc(&heap, 70000, 7, &x), 0);
	CHECK_EQ(x & (2 * MiB - 1), 0);
	CHECK_EQ(cairn_port_virt_to_phys((void *)(uintptr_t)x) & (2 * MiB - 1), 0);
	memset((void *)(uintptr_t)x, 0xa5, 70000);
	CHECK_EQ(cairn_arena_alloc(&heap, 70000, 8, &y), 0);
	CHECK_EQ(y, x + 72 * 1024); /* page-rounded, in the same span */
	CHECK_EQ(env_free_frames(), before - 512);
	/* aligned above its size: a bigger import, still aligned */
	CHECK_EQ(cairn_arena_xalloc(&heap, 4096, 4 * MiB, 0, 0, 0, 0, CAIRN_FIT_FIRST, 9, &z), 0);
	CHECK_EQ(z & (4 * MiB - 1), 0);
	CHECK_EQ(cairn_arena_lookup(&heap, z, &s, &n, &c), 0);
	CHECK_EQ(c, 9);
	CHECK_EQ(cairn_arena_free(&heap, z, 4096), 0);
	CHECK_EQ(cairn_arena_free(&heap, y, 70000), 0);
	CHECK_EQ(cairn_arena_free(&heap, y, 70000), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_free(&heap, x, 70000), 0);
	CHECK_EQ(atomic_load(&heap.releases), 2);
	CHECK_EQ(env_free_frames(), before);
	CHECK_EQ(cairn_arena_lookup(&heap, x, &s, &n, &c), CAIRN_ERANGE);
	valid(&heap);
	CHECK_EQ(cairn_arena_alloc(&heap, 3 * MiB, 1, &x), 0); /* destroy gives it back */
	cairn_arena_destroy(&heap);
	CHECK_EQ(env_free_frames(), first); /* and its tree's nodes */
}

/* Node allocation failure: clean ENOMEM, arena intact. */
/* Free by owner: the check and the free in one update, errors change
 * nothing. */
static void free_owned(void)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 4096 };
	CHECK_EQ(cairn_arena_create(&a, env_frames, 1 << 20, 1 << 20, &cfg), 0);
	uint64_t x, y, n = 0, s, len, c;
	CHECK_EQ(cairn_arena_alloc(&a, 3 * 4096, 5, &x), 0);
	CHECK_EQ(cairn_arena_alloc(&a, 4096, 6, &y), 0);
	CHECK_EQ(cairn_arena_free_owned(&a, x, 6, &n), CAIRN_EBUSY);      /* not its owner */
	CHECK_EQ(cairn_arena_free_owned(&a, x + 4096, 5, &n), CAIRN_EALIGN); /* interior */
	CHECK_EQ(cairn_arena_free_owned(&a, x + 100, 5, &n), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_free_owned(&a, y + 4096, 5, &n), CAIRN_EFREE); /* free space */
	CHECK_EQ(cairn_arena_free_owned(&a, 4096, 5, &n), CAIRN_ERANGE);   /* no span */
	CHECK_EQ(n, 0);
	CHECK_EQ(cairn_arena_lookup(&a, x, &s, &len, &c), 0);
	CHECK(s == x && len == 3 * 4096 && c == 5);
	valid(&a);
	CHECK_EQ(cairn_arena_free_owned(&a, x, 5, &n), 0);
	CHECK_EQ(n, 3 * 4096);
	CHECK_EQ(cairn_arena_free_owned(&a, x, 5, &n), CAIRN_EFREE);       /* twice */
	CHECK_EQ(cairn_arena_free_owned(&a, y, 6, NULL), 0);
	CHECK_EQ(cairn_arena_lookup(&a, 1 << 20, &s, &len, &c), CAIRN_EFREE);
	valid(&a);
	cairn_arena_destroy(&a);
}

/* Free by owner at a size: cairn_arena_free's checks and the owner's, in
 * one update; errors change nothing. */
static void free_as(void)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 4096 };
	CHECK_EQ(cairn_arena_create(&a, env_frames, 1 << 20, 1 << 20, &cfg), 0);
	uint64_t x, y, s, len, c;
	CHECK_EQ(cairn_arena_alloc(&a, 3 * 4096, 5, &x), 0);
	CHECK_EQ(cairn_arena_alloc(&a, 4096, 6, &y), 0);
	CHECK_EQ(cairn_arena_free_as(&a, x, 3 * 4096, 6), CAIRN_EBUSY);     /* not its owner */
	CHECK_EQ(cairn_arena_free_as(&a, x, 2 * 4096, 5), CAIRN_EORDER);    /* not its size */
	CHECK_EQ(cairn_arena_free_as(&a, x + 4096, 4096, 5), CAIRN_EFREE);  /* interior */
	CHECK_EQ(cairn_arena_free_as(&a, x + 100, 4096, 5), CAIRN_EALIGN);
	CHECK_EQ(cairn_arena_free_as(&a, x, 0, 5), CAIRN_EINVAL);
	CHECK_EQ(cairn_arena_free_as(&a, y + 4096, 4096, 6), CAIRN_EFREE);  /* free space */
	CHECK_EQ(cairn_arena_free_as(&a, 4096, 4096, 5), CAIRN_ERANGE);     /* no span */
	CHECK_EQ(cairn_arena_lookup(&a, x, &s, &len, &c), 0);
	CHECK(s == x && len == 3 * 4096 && c == 5);
	valid(&a);
	CHECK_EQ(cairn_arena_free_as(&a, x, 3 * 4096 - 100, 5), 0);        /* rounded */
	CHECK_EQ(cairn_arena_free_as(&a, x, 3 * 4096, 5), CAIRN_EFREE);     /* twice */
	CHECK_EQ(cairn_arena_free_as(&a, y, 4096, 6), 0);
	CHECK_EQ(cairn_arena_lookup(&a, 1 << 20, &s, &len, &c), CAIRN_EFREE);
	valid(&a);
	cairn_arena_destroy(&a);
}

static void node_failure(void)
{
	struct cairn_arena a;
	struct cairn_arena_config cfg = { .quantum = 1, .fanout = 4 };
	CHECK_EQ(cairn_arena_create(&a, env_frames, 0, 1 << 20, &cfg), 0);
	uint64_t x;
	env_drain();
	unsigned ok = 0, nomem = 0;
	for (unsigned i = 0; i < 64; i++) {
		int r = cairn_arena_xalloc(&a, 1, 4, 0, 0, 0, 0, CAIRN_FIT_FIRST, i, &x);
		if (r == 0)
			ok++;
		else if (r == CAIRN_ENOMEM)
			nomem++;
		valid(&a);
	}
	CHECK(ok > 0 && nomem > 0);
	CHECK_EQ(ok + nomem, 64);
	env_undrain();
	CHECK_EQ(cairn_arena_xalloc(&a, 1, 4, 0, 0, 0, 0, CAIRN_FIT_FIRST, 0, &x), 0);
	CHECK_EQ(x, 4 * ok);
	valid(&a);
	cairn_arena_destroy(&a);
}

/* Node allocation failing, on and off, in a child that imports from a
 * parent (both fanout 4, so splits come often), between allocs and frees
 * (which release spans while no node can be had): each alloc succeeds or
 * fails with ENOMEM, and a failure leaves no span it imported behind, in
 * the child or the parent; in the end everything frees and goes back. */
static void node_failure_imports(void)
{
	struct cairn_arena parent, child;
	struct cairn_arena_source src;
	family(&parent, &child, &src, 0x40000000, 16, 64);
	static uint64_t x[512];
	unsigned held = 0, ok = 0, nomem = 0;
	uint64_t seed = 7, s, n, c;
	for (unsigned i = 0; i < 2048; i++) {
		if (i % 64 == 0)
			env_drain();
		if (i % 64 == 40)
			env_undrain();
		if (held && (held == 512 || splitmix(&seed) % 3 == 0)) {
			unsigned k = (unsigned)(splitmix(&seed) % held);
			CHECK_EQ(cairn_arena_free(&child, x[k], 16), 0);
			x[k] = x[--held];
		} else {
			uint64_t imports = atomic_load(&child.imports);
			uint64_t releases = atomic_load(&child.releases);
			int r = cairn_arena_xalloc(&child, 16, 32, 0, 0, 0, 0,
						   CAIRN_FIT_FIRST, i + 1, &x[held]);
			if (r == 0) {
				ok++;
				CHECK_EQ(cairn_arena_lookup(&child, x[held], &s, &n, &c), 0);
				CHECK(s == x[held] && n == 16 && c == i + 1);
				held++;
			} else {
				CHECK_EQ(r, CAIRN_ENOMEM);
				nomem++;
				/* every span this call imported went back */
				CHECK_EQ(atomic_load(&child.imports) - imports,
					 atomic_load(&child.releases) - releases);
			}
		}
		valid(&child);
		valid(&parent);
	}
	env_undrain();
	CHECK(nomem > 0 && ok > 256);
	CHECK(atomic_load(&child.releases) > 0);
	while (held) {
		held--;
		CHECK_EQ(cairn_arena_free(&child, x[held], 16), 0);
	}
	CHECK_EQ(atomic_load(&child.imports), atomic_load(&child.releases));
	CHECK_EQ(cairn_arena_lookup(&parent, 0x40000000, &s, &n, &c), CAIRN_EFREE);
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&parent.tree, &st), 0);
	CHECK_EQ(st.extents, 1);
	CHECK_EQ(cairn_btree_validate(&child.tree, &st), 0);
	CHECK_EQ(st.extents, 0);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
}

/* could_hold: the spans held (the longest, and the largest alignment one
 * had), else what the source could lend at the alignment (the memory here
 * is [1 MiB, 255 MiB): its largest block is 64 MiB); asking changes
 * nothing. */
static int could_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	(void)ctx, (void)size, (void)align, (void)addr;
	return CAIRN_ENOMEM;
}

static void could_release(void *ctx, uint64_t addr, uint64_t size)
{
	(void)ctx, (void)addr, (void)size;
}

/* Spans of up to 1 MiB, at up to their own size's alignment. */
static bool could_lend_mib(void *ctx, uint64_t size, uint64_t align)
{
	(void)ctx;
	return (size > align ? size : align) <= 1 * MiB;
}

static void could_hold(void)
{
	struct cairn_arena plain, child, direct;
	struct cairn_arena_config pc = { .quantum = 64 };
	uint64_t before = env_free_frames();
	CHECK_EQ(cairn_arena_create(&plain, env_frames, 1ull << 40, 1 * MiB, &pc), 0);
	CHECK(cairn_arena_could_hold(&plain, 1 * MiB, 0));
	CHECK(cairn_arena_could_hold(&plain, 1 * MiB - 100, 0)); /* rounded: 1 MiB */
	CHECK(!cairn_arena_could_hold(&plain, 1 * MiB + 1, 0));
	CHECK(!cairn_arena_could_hold(&plain, 0, 0));
	CHECK(!cairn_arena_could_hold(&plain, UINT64_MAX, 0));
	/* the alignment: the span's start is a multiple of 2^40, no more */
	CHECK(cairn_arena_could_hold(&plain, 64, 1ull << 40));
	CHECK(cairn_arena_could_hold(&plain, 1 * MiB, 1ull << 40));
	CHECK(cairn_arena_could_hold(&plain, 1 * MiB, 1)); /* below the quantum */
	CHECK(!cairn_arena_could_hold(&plain, 64, 1ull << 41));
	CHECK(!cairn_arena_could_hold(&plain, 64, 1ull << 63));
	CHECK(!cairn_arena_could_hold(&plain, 64, 3 << 12)); /* not a power of two */
	CHECK_EQ(cairn_arena_add(&plain, 1ull << 41, 3 * MiB), 0);
	CHECK(cairn_arena_could_hold(&plain, 3 * MiB, 0));
	CHECK_EQ(cairn_arena_add(&plain, 1ull << 42, 2 * MiB), 0); /* never lowered */
	CHECK(cairn_arena_could_hold(&plain, 3 * MiB, 0));
	CHECK(!cairn_arena_could_hold(&plain, 3 * MiB + 64, 0));
	CHECK(cairn_arena_could_hold(&plain, 64, 1ull << 42));
	CHECK(!cairn_arena_could_hold(&plain, 64, 1ull << 43));

	/* an arena source: the parent's answer for what an import asks at
	 * least (the size rounded to a power of two: 4 MiB for 3 MiB) */
	struct cairn_arena_source asrc;
	cairn_arena_source_arena(&asrc, &plain);
	struct cairn_arena_config cc = { .quantum = 64, .source = &asrc };
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &cc), 0);
	CHECK(cairn_arena_could_hold(&child, 2 * MiB, 0));
	CHECK(!cairn_arena_could_hold(&child, 3 * MiB, 0));
	CHECK(cairn_arena_could_hold(&child, 2 * MiB, 1ull << 42));
	CHECK(!cairn_arena_could_hold(&child, 64, 1ull << 43));
	CHECK_EQ(atomic_load(&child.imports), 0);
	cairn_arena_destroy(&child);

	/* frames in place: blocks of up to 64 MiB */
	struct cairn_frames_source fs = { .frames = env_frames };
	struct cairn_arena_source fsrc;
	cairn_arena_source_frames(&fsrc, &fs);
	struct cairn_arena_config dc = { .quantum = 4096, .source = &fsrc,
					 .import_quantum = 2 * MiB };
	CHECK_EQ(cairn_arena_create(&direct, env_frames, 0, 0, &dc), 0);
	uint64_t made = env_free_frames();
	CHECK(cairn_arena_could_hold(&direct, 100, 0));
	CHECK(cairn_arena_could_hold(&direct, 64 * MiB, 0));
	CHECK(!cairn_arena_could_hold(&direct, 64 * MiB + 1, 0));
	CHECK(!cairn_arena_could_hold(&direct, 1ull << 62, 0));
	/* in place, a span is aligned to its own block: 64 MiB at most */
	CHECK(cairn_arena_could_hold(&direct, 100, 64 * MiB));
	CHECK(!cairn_arena_could_hold(&direct, 100, 128 * MiB));
	CHECK_EQ(env_free_frames(), made);
	cairn_arena_destroy(&direct);

	/* mapped: the VA arena (64 MiB) must hold the span too */
	struct mapped_heap m;
	mapped_heap_create(&m, 4096, 2 * MiB);
	CHECK(cairn_arena_could_hold(&m.heap, 64 * MiB, 0));
	CHECK(!cairn_arena_could_hold(&m.heap, 64 * MiB + 64, 0));
	/* no VA range of the window (host user space) starts at 2^47 */
	CHECK(cairn_arena_could_hold(&m.heap, 4096, 2 * MiB));
	CHECK(!cairn_arena_could_hold(&m.heap, 4096, 1ull << 47));
	cairn_arena_destroy(&m.heap);
	cairn_arena_destroy(&m.va);

	/* a source it does not know may lend anything */
	struct cairn_arena_source usrc = { could_import, could_release, NULL, NULL };
	struct cairn_arena_config uc = { .quantum = 64, .source = &usrc };
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &uc), 0);
	CHECK(cairn_arena_could_hold(&child, 1ull << 62, 0));
	cairn_arena_destroy(&child);
	/* one that says what it could ever lend: the size at least an
	 * import asks (a power of two here), at the alignment */
	usrc.could_lend = could_lend_mib;
	CHECK_EQ(cairn_arena_create(&child, env_frames, 0, 0, &uc), 0);
	CHECK(cairn_arena_could_hold(&child, 1 * MiB, 0));
	CHECK(!cairn_arena_could_hold(&child, 1 * MiB + 64, 0)); /* 2 MiB asked */
	CHECK(cairn_arena_could_hold(&child, 64, 1 * MiB));
	CHECK(!cairn_arena_could_hold(&child, 64, 2 * MiB));
	CHECK_EQ(atomic_load(&child.imports), 0);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&plain);
	CHECK_EQ(env_free_frames(), before);
}

int main(void)
{
	env_init(1, 256);
	cairn_host_reports_quiet(0);
	uint64_t frames0 = env_free_frames();
	basics(4);
	basics(5);
	basics(0);
	shrink();
	deep();
	deep_scan();
	deep_free();
	imports();
	import_release_foreign();
	import_huge();
	import_nocross();
	import_useless();
	import_window_served();
	import_refused();
	import_broken();
	import_misaligned();
	import_errors();
	import_short_source();
	import_least_span();
	frames_source();
	frames_source_coarse_va();
	frames_source_unmap_fails();
	frames_source_small_iq(false);
	frames_source_small_iq(true);
	frames_source_direct();
	could_hold();
	free_owned();
	free_as();
	node_failure();
	node_failure_imports();
	CHECK_EQ(env_free_frames(), frames0);
	CHECK_EQ(cairn_host_reports(), planted_reports);
	return check_done("arena_unit");
}
