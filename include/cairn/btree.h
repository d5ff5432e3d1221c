/* SPDX-License-Identifier: MIT */
/*
 * cairn btree: a concurrent B+-tree of extents, keyed by extent start.
 *
 * The tree stores disjoint extents [start, start + len) of a 64-bit integer
 * space (virtual addresses, device windows, any resource), each with a
 * cookie and flags. Extents flagged CAIRN_EXT_FREE are free space: every
 * inner entry carries the length of the longest free extent below it, so a
 * fitting free extent is found in O(log n).
 *
 * Synchronisation is optimistic lock coupling: readers never write shared
 * memory and never block; writers lock only the nodes they change, with
 * try-locks, and restart on conflict. Nodes are 4 KiB frames taken from a
 * cairn frames instance; a node that empties goes onto a free list local
 * to its tree and returns to the frame allocator only at destroy.
 *
 * The tree is the index under the range arenas (cairn/arena.h), which is
 * its intended user; the interface is an extent editor: a query finds an
 * extent, a planner sees it with its neighbours and describes the change,
 * and the tree applies the change atomically.
 */
#ifndef CAIRN_BTREE_H
#define CAIRN_BTREE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cairn/error.h>
#include <cairn/frames.h>

/* Slots per node at 4 KiB; a tree may use fewer (a test build does, to
 * split and merge often). */
#define CAIRN_BTREE_FANOUT_MAX 126
#define CAIRN_BTREE_FANOUT_MIN 4
/* Finger slots per tree (a power of two), indexed by CPU modulo this. */
#define CAIRN_BTREE_FINGERS 8
/* Levels, root included; a root split beyond this fails (CAIRN_ENOSPC,
 * tree unchanged, no node taken, whether or not frames are left). Every operation's bookkeeping (paths, read set, change
 * plan) is sized by it on the stack, so it stays small and fixed; the
 * capacity it gives follows from the fanout F. A node splits only when
 * full, into halves of at least m = F / 2 (rounded down) entries, and the
 * root splits only when full, so a tree built by inserts reaches the limit
 * only when its full root has F children, each the top of DEPTH_MAX - 1
 * levels of at least m entries per node: at least F * m^(DEPTH_MAX - 1)
 * extents. F = 4: 2^13 (extents in address order leave leaves about half
 * full and fail near 12,000); F = 8: 2^25; F = 16: 2^37; F = 32: 2^49;
 * F >= 64, the full fanout among them: beyond any 64-bit key space. Frees
 * leave nodes thinner (a node leaves the tree only when it empties), so a
 * tree that churns may reach the limit with fewer extents than it once
 * held. */
#define CAIRN_BTREE_DEPTH_MAX 12

struct cairn_ext {
	uint64_t start;
	uint64_t len;
	uint64_t cookie;
	uint32_t flags;
};

#define CAIRN_EXT_FREE 0x1u /* free space: counts for the gap maxima */
/* Bits 8..31 belong to the user of the tree; the tree only keeps them. */

struct cairn_btree {
	/* Read by every operation, written only at init: a line of its own,
	 * so that readers never share one with what writers write. */
	_Alignas(64) void *root;    /* the root node; never changes */
	struct cairn_frames *frames;
	unsigned fanout;
	/* Written by writers that split or unlink. Tree-local free list of
	 * retired nodes: a Treiber stack whose head is a (node, tag) pair
	 * swapped with a 16-byte CAS. */
	_Alignas(64) unsigned __int128 free_head;
	_Atomic uint64_t nodes;     /* frames taken from `frames` */
	/* Written by writers that carve (cairn_btree_carve, and
	 * cairn_btree_update with the carve shape): per finger slot
	 * (cairn_port_cpu() modulo CAIRN_BTREE_FINGERS), the start of the
	 * extent carved last and the entry indices of its path, a guess for
	 * the release that usually follows. A guess is checked against the
	 * keys before it is used (btree.c, fingers), so a record overwritten
	 * or read torn by CPUs sharing a slot only wastes it. One slot per
	 * line: up to CAIRN_BTREE_FINGERS CPUs write no line in common. */
	struct cairn_btree_finger {
		_Alignas(64) _Atomic uint64_t key;
		_Atomic uint64_t path;
	} finger[CAIRN_BTREE_FINGERS];
};

/* Create an empty tree; fanout 0 means CAIRN_BTREE_FANOUT_MAX. Takes one
 * frame for the root. CAIRN_EINVAL for a bad argument (t untouched);
 * CAIRN_ENOMEM without a frame, and then destroy finds the tree empty. */
int cairn_btree_init(struct cairn_btree *t, struct cairn_frames *f,
		     unsigned fanout);

/* Return every node frame to the frame allocator (quiescent tree). */
void cairn_btree_destroy(struct cairn_btree *t);

/* The extent that contains addr: 0, or CAIRN_ERANGE if none does.
 * Lock-free; linearizable with the updates. */
int cairn_btree_lookup(struct cairn_btree *t, uint64_t addr,
		       struct cairn_ext *out);

/* ---- updates ---- */

enum cairn_bt_find {
	CAIRN_BT_AT,       /* the extent containing `key` (or the gap there) */
	CAIRN_BT_FIT_LOW,  /* free extents in [lo, hi), lowest first */
	CAIRN_BT_FIT_HIGH, /* free extents in [lo, hi), highest first */
	CAIRN_BT_FIT_BEST, /* the shortest accepted one (lowest on a tie) */
};

/* What a planner sees: the found extent `cur` and its neighbours in key
 * order. For CAIRN_BT_AT without an extent containing key, has_cur is
 * false and pred/succ are the extents around key. */
struct cairn_bt_view {
	struct cairn_ext pred, cur, succ;
	bool has_pred, has_cur, has_succ;
	uint64_t where; /* the fit callback's answer for cur */
};

enum cairn_bt_action { CAIRN_BT_KEEP = 0, CAIRN_BT_SET, CAIRN_BT_DEL };

/* A change: each of pred/cur/succ (index 0/1/2) kept, replaced (same start)
 * or deleted, and up to two new extents inserted. The new set of extents
 * must stay disjoint; the tree checks the new sequence in view (ordered,
 * disjoint, below 2^64) and rejects a malformed edit with CAIRN_EINVAL.
 * What follows the view is unseen: a replacement may not lengthen succ,
 * nor cur for a cur_only query, and with succ deleted no extent of the
 * new sequence may reach past succ's end. */
struct cairn_bt_edit {
	unsigned char act[3];
	struct cairn_ext val[3];
	struct cairn_ext ins[2];
	unsigned nins;
};

/* How an update is made (cairn_bt_query.shape). CARVE and RELEASE are
 * edits the tree may make itself: the planner's result for the two changes
 * the arenas make most, applied without a view or a planner call where the
 * change stays inside one leaf. Wherever a shape's conditions do not hold,
 * or the change reaches past the leaf, the planner runs as usual: a shape
 * must be exactly what the planner would decide for the snapshot whenever
 * its conditions hold. GENERAL is only a route: any query, the same result
 * as PLANNED. */
enum cairn_bt_shape {
	CAIRN_BT_PLANNED = 0, /* the planner decides every change */
	/* CAIRN_BT_FIT_LOW without a fit callback: the extent found, cur,
	 * becomes [cur.start, cur.start + need) with `cookie` and cur's flags
	 * without CAIRN_EXT_FREE; the rest of cur, if any, a free extent
	 * (cookie 0, flags CAIRN_EXT_FREE) inserted after it. *result: the
	 * carved extent. */
	CAIRN_BT_CARVE,
	/* CAIRN_BT_AT, where cur starts at key, is not free and is exactly
	 * need long: cur becomes free (cookie 0, flags | CAIRN_EXT_FREE),
	 * merged with a free pred ending at key unless cur has a flag of
	 * `nomerge`, and with a free succ starting at cur's end unless succ
	 * has one; the merged extent keeps the first one's start and flags,
	 * cookie 0. *result: the merged extent. With cur_only the planner
	 * sees no neighbours and the shape does not apply. */
	CAIRN_BT_RELEASE,
	/* No shape, and no fast path either: the general writer decides from
	 * the start. For a caller whose cairn_btree_carve or
	 * cairn_btree_release just came back unshaped, where the planner's
	 * fast path would only reach the same hand-over (see there). */
	CAIRN_BT_GENERAL,
};

struct cairn_bt_query {
	enum cairn_bt_find find;
	uint64_t key;  /* CAIRN_BT_AT */
	uint64_t lo, hi; /* fits: only extents that overlap [lo, hi) */
	uint64_t need; /* fits: only free extents at least this long;
			* CAIRN_BT_RELEASE: the length cur must have */
	/* fits: does the request fit in e? If so set *where. May be NULL
	 * (every free extent of length >= need is accepted at its start). */
	bool (*fit)(const struct cairn_ext *e, void *arg, uint64_t *where);
	/* Decide the change from a consistent snapshot. *edit arrives with
	 * every act KEEP and nins 0 (val[] and ins[] are read only where act
	 * and nins say). Returns 0 (apply *edit) or a negative error, which
	 * cairn_btree_update returns after checking that the snapshot was
	 * consistent (a positive return is malformed: CAIRN_EINVAL). May
	 * run more than once; the last run is the one that counts. */
	int (*plan)(const struct cairn_bt_view *v, void *arg,
		    struct cairn_bt_edit *edit);
	void *arg;
	/* The planner needs no neighbours when it found an extent, and will
	 * only replace it or insert inside its range (saves two steps). */
	bool cur_only;
	/* Optional (see enum cairn_bt_shape): the edit in the planner's
	 * place, its parameters, and where the tree puts the extent it
	 * made when it applied the shape itself (the planner must store
	 * the same there when it runs instead). */
	enum cairn_bt_shape shape;
	uint64_t cookie;
	uint32_t nomerge;
	struct cairn_ext *result;
};

/* Find, plan, apply, atomically. CAIRN_EINVAL at once for a find or shape
 * outside its enum or no planner. 0, the planner's error, CAIRN_ENOMEM when
 * a fit search finds nothing (the planner is not called) or a node cannot
 * be allocated (tree unchanged), CAIRN_ENOSPC when the query would need
 * more than the fixed per-operation bookkeeping allows. */
int cairn_btree_update(struct cairn_btree *t, const struct cairn_bt_query *q);

/* The two shapes alone, for a caller that builds its full query only when
 * they do not apply (the arenas' plain alloc and free): the same change as
 * cairn_btree_update with shape CAIRN_BT_CARVE (find CAIRN_BT_FIT_LOW over
 * the whole key space, no fit callback, need > 0) or CAIRN_BT_RELEASE
 * (find CAIRN_BT_AT, key, need, nomerge, not cur_only). 0 and *result:
 * applied. CAIRN_BT_UNSHAPED: the shape's conditions did not hold, or the
 * change reaches past one leaf (or nothing fits, or a split is due);
 * nothing changed, and the caller asks cairn_btree_update, whose planner
 * decides. Never an error code. A carve comes back unshaped only where
 * the planner's fast path would hand the query to the general writer too
 * (a split due, the rest of the extent belonging in another leaf, no fit
 * in the leaf the gap maxima lead to, nothing fits anywhere): its caller
 * may name CAIRN_BT_GENERAL, which starts there (and still reports
 * CAIRN_ENOMEM when nothing fits). A release comes back unshaped where the
 * fast path would hand over too (a neighbour in another leaf) or where the
 * planner would return an error: GENERAL serves its caller as well (the
 * general writer runs the planner, and returns the same error). */
#define CAIRN_BT_UNSHAPED 1
int cairn_btree_carve(struct cairn_btree *t, uint64_t need, uint64_t cookie,
		      struct cairn_ext *result);
int cairn_btree_release(struct cairn_btree *t, uint64_t key, uint64_t need,
			uint32_t nomerge, struct cairn_ext *result);
/* The release shape of an extent whose cookie is `cookie`: unshaped too
 * when the allocated extent at key has another (the planner decides). */
int cairn_btree_release_as(struct cairn_btree *t, uint64_t key, uint64_t need,
			   uint64_t cookie, uint32_t nomerge, struct cairn_ext *result);

/* ---- checking and walking (quiescent tree only) ---- */

/* Visit every extent in key order; stop early if fn returns non-zero and
 * return that value. */
int cairn_btree_walk(struct cairn_btree *t,
		     int (*fn)(const struct cairn_ext *e, void *arg), void *arg);

struct cairn_btree_stats {
	uint64_t extents;
	uint64_t nodes;       /* frames held: in the tree + on the free list */
	uint64_t tree_nodes;
	uint64_t free_nodes;
	unsigned depth;
	uint64_t max_free;    /* longest free extent */
};

/* Check every invariant: keys ordered and bounded by the separators,
 * extents disjoint, gap maxima equal recomputed ones, no reachable node
 * locked or obsolete, free list nodes all obsolete, frames accounted.
 * 0 or CAIRN_ECORRUPT, the first violation reported via the port. */
int cairn_btree_validate(struct cairn_btree *t, struct cairn_btree_stats *st);

#endif /* CAIRN_BTREE_H */
