/* SPDX-License-Identifier: MIT */
/*
 * Walking and checking a quiescent tree.
 */
#include "node.h"

#include <cairn/port.h>

struct vstate {
	struct cairn_btree *t;
	struct cairn_btree_stats st;
	bool have_prev;
	uint64_t prev_end; /* end of the previous extent (0 = 2^64) */
	bool prev_wraps;
};

static int bad(const char *what, uint64_t a, uint64_t b)
{
	cairn_port_report(CAIRN_ECORRUPT, what, a, b);
	return CAIRN_ECORRUPT;
}

/* Check the subtree of n, whose keys must lie in [lo, hi) (hi_set false:
 * unbounded), and return its gap maximum in *max. */
static int check(struct vstate *vs, struct bt_node *n, unsigned depth,
		 unsigned level, uint64_t lo, uint64_t hi, bool hi_set,
		 uint64_t *max)
{
	struct cairn_btree *t = vs->t;
	uint64_t v = atomic_load_explicit(&n->version, memory_order_relaxed);
	unsigned cnt = rd(n->count), f = rd(n->first);
	uint64_t m = 0;

	if (olc_busy(v))
		return bad("btree: reachable node locked or obsolete",
			   (uintptr_t)n, v);
	if (rd(n->level) != level)
		return bad("btree: node level", (uintptr_t)n, rd(n->level));
	if (cnt > t->fanout)
		return bad("btree: node count above fanout", (uintptr_t)n, cnt);
	if (f > t->fanout - cnt)
		return bad("btree: node entries outside its slots", f, cnt);
	if (cnt == 0 && depth > 0)
		return bad("btree: empty node in the tree", (uintptr_t)n, depth);
	vs->st.tree_nodes++;
	if (depth + 1 > vs->st.depth)
		vs->st.depth = depth + 1;

	/* From here on, entry i is slot f + i (node.h). */
	for (unsigned i = 0; i < cnt; i++) {
		uint64_t k = rd(n->key[f + i]);
		bool keyed = level == 0 || i > 0;
		if (keyed && (k < lo || (hi_set && k >= hi)))
			return bad("btree: key outside its separators", k, lo);
		if (keyed && i > (level == 0 ? 0u : 1u) &&
		    k <= rd(n->key[f + i - 1]))
			return bad("btree: keys out of order", k,
				   rd(n->key[f + i - 1]));
	}

	if (level == 0) {
		for (unsigned i = 0; i < cnt; i++) {
			uint64_t s = rd(n->key[f + i]), len = rd(n->a[f + i]);
			if (len == 0)
				return bad("btree: empty extent", s, 0);
			if (s + len < s && s + len != 0)
				return bad("btree: extent wraps", s, len);
			if (vs->have_prev && (vs->prev_wraps || s < vs->prev_end))
				return bad("btree: extents overlap", s,
					   vs->prev_end);
			vs->have_prev = true;
			vs->prev_end = s + len;
			vs->prev_wraps = s + len == 0;
			uint64_t g = bt_leaf_gap(n, f + i);
			if (g > m)
				m = g;
			if (g > vs->st.max_free)
				vs->st.max_free = g;
			vs->st.extents++;
		}
		*max = m;
		return 0;
	}

	for (unsigned i = 0; i < cnt; i++) {
		uint64_t clo = i == 0 ? lo : rd(n->key[f + i]);
		bool chs = i + 1 < cnt || hi_set;
		uint64_t chi = i + 1 < cnt ? rd(n->key[f + i + 1]) : hi;
		uint64_t cm;
		if (depth + 1 >= CAIRN_BTREE_DEPTH_MAX)
			return bad("btree: too deep", depth, 0);
		int r = check(vs, bt_child(n, f + i), depth + 1, level - 1, clo,
			      chi, chs, &cm);
		if (r)
			return r;
		if (cm != rd(n->b[f + i]))
			return bad("btree: stored gap maximum is wrong",
				   rd(n->b[f + i]), cm);
		if (cm > m)
			m = cm;
	}
	*max = m;
	return 0;
}

int cairn_btree_validate(struct cairn_btree *t, struct cairn_btree_stats *st)
{
	struct vstate vs = { .t = t };
	uint64_t m;
	struct bt_node *root = bt_root(t);
	int r = check(&vs, root, 0, rd(root->level), 0, 0, false, &m);
	if (r)
		return r;

	uint64_t total = atomic_load_explicit(&t->nodes, memory_order_relaxed);
	for (struct bt_node *n = cairn__bt_freelist_peek(t); n;
	     n = (struct bt_node *)(uintptr_t)rd(n->next)) {
		uint64_t v = atomic_load_explicit(&n->version,
						  memory_order_relaxed);
		if (!(v & OLC_OBSOLETE) || (v & OLC_LOCKED))
			return bad("btree: free-list node not retired",
				   (uintptr_t)n, v);
		if (++vs.st.free_nodes > total)
			return bad("btree: free list cycles", total, 0);
	}
	vs.st.nodes = total;
	if (vs.st.tree_nodes + vs.st.free_nodes != total)
		return bad("btree: node frames unaccounted", total,
			   vs.st.tree_nodes + vs.st.free_nodes);
	if (st)
		*st = vs.st;
	return 0;
}

static int walk(struct cairn_btree *t, struct bt_node *n, unsigned depth,
		int (*fn)(const struct cairn_ext *, void *), void *arg)
{
	unsigned f, cnt = bt_shape(t, n, &f);
	for (unsigned s = f; s < f + cnt; s++) {
		int r;
		if (rd(n->level) == 0) {
			struct cairn_ext e = { rd(n->key[s]), rd(n->a[s]),
					       rd(n->b[s]), (uint32_t)rd(n->c[s]) };
			r = fn(&e, arg);
		} else if (depth + 1 < CAIRN_BTREE_DEPTH_MAX) {
			r = walk(t, bt_child(n, s), depth + 1, fn, arg);
		} else {
			r = CAIRN_ECORRUPT;
		}
		if (r)
			return r;
	}
	return 0;
}

int cairn_btree_walk(struct cairn_btree *t,
		     int (*fn)(const struct cairn_ext *e, void *arg), void *arg)
{
	return walk(t, bt_root(t), 0, fn, arg);
}
