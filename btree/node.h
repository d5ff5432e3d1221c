/* SPDX-License-Identifier: MIT */
/*
 * Tree nodes: one 4 KiB frame each, reached through the identity map.
 *
 * Slot arrays are laid out column-wise so a search scans contiguous keys.
 *
 *            key[i]            a[i]             b[i]          c[i]
 *   leaf     extent start      length           cookie        flags
 *   inner    separator         child (pointer)  gap maximum   -
 *
 * A node's entries 0..count-1 occupy the slots first..first+count-1 of the
 * columns, a window inside [0, fanout) that may start anywhere: a change
 * near the front of a node moves the entries before it, one near the back
 * those after it, whichever are fewer (open_window in btree.c). Entry i
 * below means slot first + i.
 *
 * Inner node: child i holds the keys in [key[i], key[i+1]); key[0] is not
 * used (the lower bound comes from above). b[i] is the length of the
 * longest free extent in child i's subtree. Leaves hold extents in key
 * order; an extent may reach past its leaf's upper separator (it is filed
 * under its start), so inserts are routed by key, never by neighbourhood.
 *
 * Every field is an atomic: readers load them relaxed inside a validated
 * read (olc.h), writers store them relaxed while holding the lock. That
 * keeps racing optimistic reads defined behaviour and visible to TSan.
 */
#ifndef CAIRN_BTREE_NODE_H
#define CAIRN_BTREE_NODE_H

#include <cairn/btree.h>

#include "olc.h"

#define BT_NODE_SIZE 4096u
#define BT_SLOTS CAIRN_BTREE_FANOUT_MAX

struct bt_node {
	olc_t version;
	_Atomic uint64_t next;   /* free-list link (a struct bt_node *) */
	_Atomic uint32_t count;  /* entries */
	_Atomic uint32_t level;  /* 0 = leaf */
	_Atomic uint32_t first;  /* slot of entry 0 */
	uint32_t pad32;
	uint64_t pad[4];
	_Atomic uint64_t key[BT_SLOTS];
	_Atomic uint64_t a[BT_SLOTS];
	_Atomic uint64_t b[BT_SLOTS];
	_Atomic uint64_t c[BT_SLOTS];
};

_Static_assert(sizeof(struct bt_node) == BT_NODE_SIZE, "node is one frame");

#define rd(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define wr(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

static inline struct bt_node *bt_root(const struct cairn_btree *t)
{
	return (struct bt_node *)t->root;
}

/* Optimistic reads: counts clamped to the fanout, so that a torn read of a
 * recycled node never indexes outside it. */
static inline unsigned bt_count(const struct cairn_btree *t, struct bt_node *n)
{
	unsigned c = rd(n->count);
	return c > t->fanout ? t->fanout : c;
}

/* The count and, in *first, the slot of entry 0, clamped together so that
 * first + i < fanout for every i below the count returned, whatever a torn
 * read gave: an index is only ever used with the first it was paired with. */
static inline unsigned bt_shape(const struct cairn_btree *t, struct bt_node *n,
				unsigned *first)
{
	unsigned fanout = t->fanout; /* read once: the atomics below keep the
				      * compiler from reusing it */
	unsigned c = rd(n->count), f;
	c = c > fanout ? fanout : c;
	f = rd(n->first);
	*first = f > fanout - c ? fanout - c : f;
	return c;
}

static inline unsigned bt_level(struct bt_node *n)
{
	unsigned l = rd(n->level);
	return l >= CAIRN_BTREE_DEPTH_MAX ? CAIRN_BTREE_DEPTH_MAX - 1 : l;
}

/* Slot accessors below take slot numbers (first + entry). */
static inline struct bt_node *bt_child(struct bt_node *n, unsigned s)
{
	return (struct bt_node *)(uintptr_t)rd(n->a[s]);
}

static inline void bt_copy_slot(struct bt_node *d, unsigned di,
				struct bt_node *s, unsigned si)
{
	wr(d->key[di], rd(s->key[si]));
	wr(d->a[di], rd(s->a[si]));
	wr(d->b[di], rd(s->b[si]));
	wr(d->c[di], rd(s->c[si]));
}

static inline uint64_t bt_leaf_gap(struct bt_node *n, unsigned i)
{
	return (rd(n->c[i]) & CAIRN_EXT_FREE) ? rd(n->a[i]) : 0;
}

/* The node's contribution to its parent's gap maximum. */
static inline uint64_t bt_node_max(const struct cairn_btree *t,
				   struct bt_node *n)
{
	unsigned f, cnt = bt_shape(t, n, &f);
	uint64_t m = 0;
	bool leaf = rd(n->level) == 0;
	for (unsigned s = f; s < f + cnt; s++) {
		uint64_t g = leaf ? bt_leaf_gap(n, s) : rd(n->b[s]);
		if (g > m)
			m = g;
	}
	return m;
}

/* node.c: the node pool of one tree. */
struct bt_node *cairn__bt_node_alloc(struct cairn_btree *t);
void cairn__bt_node_prepare(struct bt_node *n, unsigned level);
void cairn__bt_node_publish(struct bt_node *n);
void cairn__bt_node_retire(struct cairn_btree *t, struct bt_node *n);
void cairn__bt_node_release_unused(struct cairn_btree *t, struct bt_node *n);
struct bt_node *cairn__bt_freelist_peek(struct cairn_btree *t);

#endif /* CAIRN_BTREE_NODE_H */
