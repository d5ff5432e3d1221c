/* SPDX-License-Identifier: MIT */
/*
 * The concurrent B+-tree of extents: optimistic lock coupling.
 *
 * Readers descend from the root reading each node optimistically (olc.h):
 * they record the node's version, read what they need with relaxed loads,
 * and validate the parent before they touch a child whose pointer they read
 * from it, so every pointer they follow was current when they followed it.
 * Every node a reader or writer looked at is kept with its version in the
 * operation's read set; for the common operations, which read one
 * root-to-leaf path, the path itself (a cursor) is the read set.
 *
 * Updates confined to one leaf take the fast path (fast_update, below):
 * the same four phases on one path, with only the leaf and the ancestors
 * whose gap maxima change locked. A query that names a shape (the arenas'
 * carve and release) has the leaf change computed by the tree itself, on
 * the same path with the same commit (shape_update). Everything else takes the general
 * writer, which runs in four phases:
 *   1. read: locate the extent, its neighbours and the leaves that will take
 *      inserts, all optimistically, and compute every node change from that
 *      snapshot (leaf entries, then the gap maxima and unlinks up the paths
 *      as far as they change anything);
 *   2. lock: upgrade each node to be changed from the version it was read at
 *      (a try-lock: failure restarts the operation, so there is no deadlock);
 *   3. validate: check every other node of the read set is unchanged;
 *   4. write the precomputed changes, then unlock.
 * Between the last read and the first validation every node of the read set
 * held the values read (each was unchanged from its read until its own
 * validation or lock), and the nodes written stay locked until every write
 * is done, so the operation takes effect atomically at that point. Readers
 * that meet a locked node restart; readers that read a node before it was
 * locked fail their validation.
 *
 * Full nodes are split before an insert needs the room, as a small operation
 * of their own (parent and node locked), after which the insert restarts;
 * a chain of full nodes is split from the top. The root never moves: a root
 * split moves its entries into two new children, and a root left with one
 * child takes over that child's entries (collapse). A node that empties is
 * unlinked from its parent in the same operation, retired (unlocked
 * obsolete) and recycled through the tree's free list (node.c).
 */
#include "node.h"

#include <cairn/port.h>

/* Per operation, from the depth limit (64, 36 and 48 at 12 levels): a
 * scan keeps two paths after rs_compact and reads one more path, and an
 * update makes room (rs_room) for each path it reads after the scan. An
 * update changes at most three leaves (pred's, cur's and succ's; an
 * insert lands in cur's leaf or in the next one, as nothing lies between
 * them), and each change may rise to the root along its leaf's path (gap
 * maxima, unlinks): three paths that part at the root are 3 * (DEPTH_MAX
 * - 1) + 1 nodes, and every node but the root gives its parent one
 * change, beside at most five in the leaves. Beyond that: CAIRN_ENOSPC. */
#define RS_MAX (3 * CAIRN_BTREE_DEPTH_MAX + 28)    /* nodes one operation may read */
#define DIRTY_MAX (3 * CAIRN_BTREE_DEPTH_MAX)      /* nodes one operation may change */
#define CHG_MAX (2 * CAIRN_BTREE_DEPTH_MAX + 24)   /* changes one operation may make */
#define STEP_GUARD 4096

/* R_SLOW: the fast path hands over to the general writer (see fast_update) */
enum { R_OK = 0, R_RESTART = 1, R_END = 2, R_OVERFLOW = 3, R_SLOW = 4 };

/* One level of a path: a node, the version it was read at, its shape as
 * read (bt_shape: first slot and count, clamped together; idx is below
 * cnt or -1, so f + idx always lies inside the node) and an entry. */
struct bt_lv {
	struct bt_node *n;
	uint64_t v;
	int idx;
	uint16_t f, cnt;
};

/* Column col of the entry a path level points at. */
#define lv_slot(lv, col) ((lv)->n->col[(lv)->f + (unsigned)(lv)->idx])

static inline void lv_shape(const struct cairn_btree *t, struct bt_lv *lv)
{
	unsigned f, cnt = bt_shape(t, lv->n, &f);
	lv->f = (uint16_t)f;
	lv->cnt = (uint16_t)cnt;
}

/* A path from the root to a leaf position. A shape's descent also keeps
 * what it read on the way that the shape needs (descend_to): */
struct bt_cur {
	struct bt_lv lv[CAIRN_BTREE_DEPTH_MAX];
	unsigned leaf; /* depth of the leaf level */
	uint64_t pmax; /* the leaf's gap maximum as its parent stores it */
	uint64_t path; /* a carve's finger: the inner levels' entries */
};

struct bt_op {
	struct cairn_btree *t;
	unsigned nrs;
	struct {
		struct bt_node *n;
		uint64_t v;
	} rs[RS_MAX];
};

/* ---- optimistic reading ---- */

/* Start reading node n: its version goes to *vp and, unless op is NULL (a
 * reader whose read set is its cursor path), to the read set. */
static int visit(struct bt_op *op, struct bt_node *n, uint64_t *vp)
{
	uint64_t v = olc_read_begin(&n->version);
	if (olc_busy(v))
		return R_RESTART;
	CAIRN_BTREE_AT(BT_AT_VISITED, n);
	if (!op) {
		*vp = v;
		return R_OK;
	}
	for (unsigned i = 0; i < op->nrs; i++)
		if (op->rs[i].n == n) {
			if (op->rs[i].v != v)
				return R_RESTART;
			*vp = v;
			return R_OK;
		}
	if (op->nrs == RS_MAX)
		return R_OVERFLOW;
	op->rs[op->nrs].n = n;
	op->rs[op->nrs].v = v;
	op->nrs++;
	*vp = v;
	return R_OK;
}

struct bt_plan;
static bool plan_locks(const struct bt_plan *p, const struct bt_node *n);

/* Is every node read still at the version read? A node the operation has
 * locked itself (plan p) counts as unchanged. */
static bool rs_validate(struct bt_op *op, const struct bt_plan *p)
{
	for (unsigned i = 0; i < op->nrs; i++) {
		olc_t *w = &op->rs[i].n->version;
		uint64_t v = op->rs[i].v;
		if (olc_validate(w, v))
			continue;
		if (p && atomic_load_explicit(w, memory_order_relaxed) ==
				 (v | OLC_LOCKED) &&
		    plan_locks(p, op->rs[i].n))
			continue;
		return false;
	}
	return true;
}

/* Largest entry i in [from, cnt) with key <= key, or from - 1 (entries
 * start at slot f). Keys may be torn in a stale node; the loop is bounded
 * all the same. */
static int find_le(struct bt_node *n, unsigned f, int from, int cnt,
		   uint64_t key)
{
	_Atomic uint64_t *k = n->key + f;
	unsigned lo = (unsigned)from, hi = (unsigned)cnt; /* answer in [lo - 1, hi - 1] */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2; /* unsigned: no sign fix-up */
		if (rd(k[mid]) <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (int)lo - 1;
}

/* A binary search over a cold node misses on nearly every probe, one
 * after the other; asking for the whole key column (16 lines at the full
 * fanout) at once turns that into about one miss. Only a hint: the pointer
 * was validated, and a prefetch reads nothing the program sees. */
static inline void prefetch_keys(struct bt_node *n)
{
	const char *p = (const char *)n->key;
	for (unsigned off = 0; off < sizeof(n->key); off += 64)
		__builtin_prefetch(p + off);
}

static int scan(struct bt_node *n, unsigned f, int i, int cnt, int dir,
		bool leaf, uint64_t need);

/*
 * Fingers: a guess, per level, of the entry a key descent will pick, byte d
 * of a word for depth d (0xff: none; levels from 8 on are never guessed).
 * A guess is only a shortcut for the binary search: it is taken when the
 * keys read beside it, inside the node's optimistic read, say it is the
 * binary search's answer (an inner entry g with key[g] <= key < key[g + 1],
 * a leaf entry whose key is key itself), which for keys in strictly
 * increasing order is the only entry that passes; otherwise the binary
 * search runs. The path built is therefore the one a plain descent builds
 * from the same reads, and is validated the same way; a stale or torn
 * guess (another CPU's, another tree shape's) costs a binary search, never
 * a wrong path. The arenas' carve records where the extent it made sits
 * (per CPU slot, with its start), and the release that usually follows
 * starts from there.
 */
#define BT_NO_GUESS (~0ull)

#ifdef CAIRN_BTREE_TEST_YIELD
/*
 * The test build counts the guided levels ([0] a guess taken, [1] a guess
 * that failed its check) and holds every guess taken against the binary
 * search over the same node: if the node still validates, both read one
 * state, and they must agree.
 */
_Atomic uint64_t cairn_btree_test_guesses[2];

static void guess_check(struct bt_node *n, uint64_t v, unsigned f, int cnt,
			uint64_t key, bool leaf, bool taken, int i)
{
	atomic_fetch_add_explicit(&cairn_btree_test_guesses[!taken], 1,
				  memory_order_relaxed);
	if (!taken)
		return;
	int j = find_le(n, f, leaf ? 0 : 1, cnt, key);
	j = !leaf && j < 0 ? 0 : j;
	if (j != i && olc_validate(&n->version, v))
		cairn_port_report(CAIRN_ECORRUPT,
				  "btree: a guess the binary search refutes",
				  key, (uint64_t)i);
}
#define GUESS_CHECK(n, v, f, cnt, key, leaf, taken, i) \
	guess_check(n, v, f, cnt, key, leaf, taken, i)
#else
#define GUESS_CHECK(n, v, f, cnt, key, leaf, taken, i) ((void)0)
#endif

/* The one descent. By key: to the leaf that covers key, whose index is the
 * last entry starting at or before key, or -1 (guess: see fingers). By fit
 * (no read set): to the leftmost leaf below children whose gap maximum
 * reaches need, leaf index -1; R_SLOW when no child of the root does (the
 * general search then finds nothing, or an import is due). */
static inline __attribute__((always_inline)) int
descend_to(struct cairn_btree *t, struct bt_op *op, uint64_t key, bool fit,
	   uint64_t need, uint64_t guess, bool shape, struct bt_cur *c)
{
	struct bt_node *n = bt_root(t);
	uint64_t v, pmax = 0, path = BT_NO_GUESS;
	int st = visit(op, n, &v);
	if (st)
		return st;
	/* guided: a constant for every caller but the release's */
	const bool guided = !fit && guess != BT_NO_GUESS;
	for (unsigned d = 0;; d++) {
		struct bt_lv *lv = &c->lv[d];
		lv->n = n;
		lv->v = v;
		lv_shape(t, lv);
		unsigned f = lv->f;
		int cnt = lv->cnt;
		unsigned level = bt_level(n);
		if (d == 0) /* the root's level gives the depth of the leaves */
			c->leaf = level;
		else if (level + d != c->leaf)
			return R_RESTART;
		unsigned g = (unsigned)guess & 0xff; /* this level's guess */
		guess = guess >> 8 | 0xffull << 56; /* the next one's; 0xff */
		if (d == c->leaf) {
			if (shape) {
				c->pmax = pmax;
				c->path = path;
			}
			if (fit) {
				lv->idx = -1;
			} else if (guided && g < (unsigned)cnt &&
				   rd(n->key[f + g]) == key) {
				lv->idx = (int)g; /* find_le's answer */
				GUESS_CHECK(n, v, f, cnt, key, true, true, lv->idx);
			} else {
				lv->idx = find_le(n, f, 0, cnt, key);
				if (guided)
					GUESS_CHECK(n, v, f, cnt, key, true, false, 0);
			}
			return R_OK;
		}
		int i;
		if (fit) {
			i = scan(n, f, 0, cnt, 1, false, need);
			if (i >= cnt)
				return d == 0 ? R_SLOW : R_RESTART;
		} else {
			if (cnt == 0)
				return R_RESTART;
			if (guided && g < (unsigned)cnt &&
			    (g == 0 || rd(n->key[f + g]) <= key) &&
			    (g + 1 == (unsigned)cnt || rd(n->key[f + g + 1]) > key)) {
				i = (int)g; /* find_le's answer, or 0 below key[1] */
				GUESS_CHECK(n, v, f, cnt, key, false, true, i);
			} else {
				i = find_le(n, f, 1, cnt, key);
				if (i < 0)
					i = 0;
				if (guided)
					GUESS_CHECK(n, v, f, cnt, key, false, false, 0);
			}
		}
		lv->idx = i;
		/* A shape's descent keeps the child's gap maximum, read here
		 * inside n's optimistic read like every field of the path
		 * (validated with the path at the commit), and a carve the
		 * entry taken at each depth (byte d; 0xff where none). */
		if (shape) {
			pmax = rd(n->b[f + (unsigned)i]);
			if (fit && d < 8)
				path ^= (uint64_t)((unsigned)i ^ 0xffu) << (8 * d);
		}
		struct bt_node *child = bt_child(n, f + (unsigned)i);
		if (!olc_validate(&n->version, v))
			return R_RESTART;
		CAIRN_BTREE_AT(BT_AT_CHILD, child);
		/* A fit descent reads the gap columns, not keys; a guided one
		 * reads the two keys beside each guess, in nodes the carve
		 * that left the guesses touched, and searches without the
		 * prefetch where a guess fails. */
		if (!fit && !guided)
			prefetch_keys(child);
		st = visit(op, child, &v);
		if (st)
			return st;
		n = child;
	}
}

static int descend(struct cairn_btree *t, struct bt_op *op, uint64_t key,
		   struct bt_cur *c)
{
	return descend_to(t, op, key, false, 0, BT_NO_GUESS, false, c);
}

/* From entry i in direction dir, the first entry that can hold a free
 * extent of `need` (any entry if need is 0); -1 or cnt if none. Entries
 * start at slot f. */
static int scan(struct bt_node *n, unsigned f, int i, int cnt, int dir,
		bool leaf, uint64_t need)
{
	if (need == 0 || i < 0 || i >= cnt)
		return i;
	_Atomic uint64_t *a = n->a + f, *b = n->b + f, *c = n->c + f;
	if (dir > 0) {
		if (leaf) {
			for (; i < cnt; i++)
				if ((rd(c[i]) & CAIRN_EXT_FREE) &&
				    rd(a[i]) >= need)
					return i;
		} else {
			for (; i < cnt; i++)
				if (rd(b[i]) >= need)
					return i;
		}
		return cnt;
	}
	if (leaf) {
		for (; i >= 0; i--)
			if ((rd(c[i]) & CAIRN_EXT_FREE) && rd(a[i]) >= need)
				return i;
	} else {
		for (; i >= 0; i--)
			if (rd(b[i]) >= need)
				return i;
	}
	return -1;
}

/*
 * Move to the next (dir = 1) or previous (dir = -1) entry in key order;
 * with need != 0, to the next free extent at least that long, skipping
 * every subtree whose gap maximum is shorter. R_END past the last one.
 */
static int step(struct bt_op *op, struct bt_cur *c, int dir, uint64_t need)
{
	struct cairn_btree *t = op->t;
	unsigned d = c->leaf;
	int i = c->lv[d].idx + dir;

	/* Nothing in this leaf is long enough: go up at once. */
	if (need && d > 0 && rd(lv_slot(&c->lv[d - 1], b)) < need)
		i = dir > 0 ? CAIRN_BTREE_FANOUT_MAX : -1;

	for (unsigned guard = 0; guard < STEP_GUARD; guard++) {
		struct bt_node *n = c->lv[d].n;
		lv_shape(t, &c->lv[d]);
		unsigned f = c->lv[d].f;
		int cnt = c->lv[d].cnt;
		bool leaf = d == c->leaf;

		if (dir < 0 && i >= cnt)
			i = cnt - 1;
		i = scan(n, f, i, cnt, dir, leaf, need);
		if (i < 0 || i >= cnt) {
			if (d == 0)
				return R_END;
			d--;
			i = c->lv[d].idx + dir;
			continue;
		}
		c->lv[d].idx = i;
		if (leaf)
			return R_OK;

		struct bt_node *child = bt_child(n, f + (unsigned)i);
		if (!olc_validate(&n->version, c->lv[d].v))
			return R_RESTART;
		CAIRN_BTREE_AT(BT_AT_CHILD, child);
		uint64_t v;
		int st = visit(op, child, &v);
		if (st)
			return st;
		if (bt_level(child) + d + 1 != c->leaf)
			return R_RESTART;
		d++;
		c->lv[d] = (struct bt_lv){ child, v, 0, 0, 0 };
		i = dir > 0 ? 0 : (int)bt_count(t, child) - 1;
	}
	return R_RESTART;
}

static void read_slot(struct bt_node *n, unsigned s, struct cairn_ext *e)
{
	e->start = rd(n->key[s]);
	CAIRN_BTREE_YIELD(); /* a torn read must fail validation */
	e->len = rd(n->a[s]);
	e->cookie = rd(n->b[s]);
	e->flags = (uint32_t)rd(n->c[s]);
}

static void read_ext(const struct bt_cur *c, struct cairn_ext *e)
{
	const struct bt_lv *lf = &c->lv[c->leaf];
	read_slot(lf->n, lf->f + (unsigned)lf->idx, e);
}

/* The last extent starting at or before key: R_OK, or R_END if none, in
 * which case *c is left before the first extent (step +1 reaches it). */
static int seek_le(struct bt_op *op, uint64_t key, struct bt_cur *c)
{
	int st = descend(op->t, op, key, c);
	if (st || c->lv[c->leaf].idx >= 0)
		return st;
	struct bt_cur tmp = *c;
	st = step(op, &tmp, -1, 0);
	if (st == R_OK)
		*c = tmp;
	return st;
}

/* Is every node of the path still at the version read? Nodes in `locked`
 * (a bit per depth) were upgraded from that version by the caller and
 * count as unchanged. */
static bool path_validate(const struct bt_cur *c, unsigned locked)
{
	for (unsigned d = 0; d <= c->leaf; d++)
		if (!(locked & (1u << d)) &&
		    !olc_validate(&c->lv[d].n->version, c->lv[d].v))
			return false;
	return true;
}

/* ---- lookup ---- */

/* The general lookup: a cursor that may step back to the previous leaf,
 * and a read set (out of line: it keeps the table off the common path's
 * stack frame). */
static __attribute__((noinline)) int lookup_slow(struct cairn_btree *t,
						 uint64_t addr,
						 struct cairn_ext *out)
{
	for (;;) {
		struct bt_op op;
		struct bt_cur c;
		struct cairn_ext e = { 0 };
		op.t = t;
		op.nrs = 0;
		int st = seek_le(&op, addr, &c);
		if (st == R_OK)
			read_ext(&c, &e);
		if ((st == R_OK || st == R_END) && rs_validate(&op, NULL)) {
			if (st == R_END || addr - e.start >= e.len)
				return CAIRN_ERANGE;
			*out = e;
			return 0;
		}
		cairn_port_pause();
	}
}

int cairn_btree_lookup(struct cairn_btree *t, uint64_t addr,
		       struct cairn_ext *out)
{
	/*
	 * The common case reads one root-to-leaf path, and the path is the
	 * whole read set: no table to fill or search, and no shared write.
	 * All reads precede all validations (path_validate), so the extent
	 * read is what the tree held at one instant. An address before the
	 * first key of its leaf needs the step to the previous leaf, and a
	 * reader that keeps meeting writers takes the general lookup.
	 */
	for (unsigned tries = 0; tries < 4; tries++) {
		struct bt_cur c;
		struct cairn_ext e;
		int st = descend(t, NULL, addr, &c);
		if (st) {
			cairn_port_pause();
			continue;
		}
		if (c.lv[c.leaf].idx < 0)
			break;
		read_ext(&c, &e);
		if (!path_validate(&c, 0)) {
			cairn_port_pause();
			continue;
		}
		if (addr - e.start >= e.len)
			return CAIRN_ERANGE;
		*out = e;
		return 0;
	}
	return lookup_slow(t, addr, out);
}

/* ---- fit search ---- */

struct fit_state {
	const struct cairn_bt_query *q;
	struct cairn_ext e;
	uint64_t where;
};

/* Does the query accept fs->e (just read)? If so, fs->where is set. */
static bool accept(struct fit_state *fs)
{
	const struct cairn_bt_query *q = fs->q;
	const struct cairn_ext *e = &fs->e;
	if (!(e->flags & CAIRN_EXT_FREE) || e->len < q->need || e->len == 0)
		return false;
	if (e->start >= q->hi || e->start + e->len <= q->lo)
		return false;
	if (!q->fit) {
		fs->where = e->start;
		return true;
	}
	return q->fit(e, q->arg, &fs->where);
}

static bool consider(struct fit_state *fs, const struct bt_cur *c)
{
	read_ext(c, &fs->e);
	return accept(fs);
}

/* Validate the read set, then keep only the n paths x still needed: every
 * node dropped held what was read from its read until this validation. */
static int rs_keep(struct bt_op *op, const struct bt_cur *const *x,
		   unsigned n)
{
	if (!rs_validate(op, NULL))
		return R_RESTART;
	op->nrs = 0;
	for (unsigned k = 0; k < n; k++) {
		for (unsigned d = 0; d <= x[k]->leaf; d++) {
			/* re-adding at the recorded version cannot fail:
			 * the validation just passed */
			op->rs[op->nrs].n = x[k]->lv[d].n;
			op->rs[op->nrs].v = x[k]->lv[d].v;
			bool dup = false;
			for (unsigned i = 0; i < op->nrs; i++)
				if (op->rs[i].n == x[k]->lv[d].n)
					dup = true;
			if (!dup)
				op->nrs++;
		}
	}
	return R_OK;
}

/*
 * A long scan (a constrained request that max-pruning cannot steer, or best
 * fit) could outgrow the read set. Before that happens, validate what was
 * read so far, then keep only the paths still needed: the scan position
 * and the best candidate. The scanned prefix held no acceptable extent at
 * the validation; the result is then the first fit among the extents
 * scanned after it (see docs/design.md, Ranges: a relaxation that only long
 * constrained scans see).
 */
static int rs_compact(struct bt_op *op, const struct bt_cur *c,
		      const struct bt_cur *keep)
{
	if (op->nrs + CAIRN_BTREE_DEPTH_MAX + 1 < RS_MAX)
		return R_OK;
	const struct bt_cur *x[2] = { c, keep };
	return rs_keep(op, x, keep ? 2 : 1);
}

/*
 * Room for one more path (a neighbour's step, an insert's descent) after
 * the scan: a scan leaves up to RS_MAX - DEPTH_MAX - 2 nodes plus its
 * path, and an update then reads up to four more paths. Only when the
 * table could overflow (a long scan in a deep tree) is the read set
 * validated and cut down to the paths the update uses, which drops the
 * scanned prefix as rs_compact does; otherwise nothing changes.
 */
static int rs_room(struct bt_op *op, const struct bt_cur *const *x,
		   unsigned n)
{
	if (op->nrs + CAIRN_BTREE_DEPTH_MAX <= RS_MAX)
		return R_OK;
	return rs_keep(op, x, n);
}

/* Position *c on the accepted extent (R_OK) or report R_END. */
static int search_fit(struct bt_op *op, const struct cairn_bt_query *q,
		      struct bt_cur *c, uint64_t *where)
{
	struct fit_state fs = { .q = q };
	int st;

	if (q->hi <= q->lo)
		return R_END;

	if (q->find == CAIRN_BT_FIT_HIGH) {
		st = descend(op->t, op, q->hi - 1, c);
		if (st)
			return st;
		if (c->lv[c->leaf].idx >= 0 && consider(&fs, c))
			goto found;
		for (;;) {
			st = rs_compact(op, c, NULL);
			if (st)
				return st;
			st = step(op, c, -1, q->need);
			if (st)
				return st;
			read_ext(c, &fs.e);
			if (fs.e.start + fs.e.len <= q->lo)
				return R_END;
			if (consider(&fs, c))
				goto found;
		}
	}

	/* Lowest first; best fit scans the same way and keeps the shortest. */
	bool best = q->find == CAIRN_BT_FIT_BEST;
	bool have = false;
	struct bt_cur bc;
	uint64_t blen = 0, bwhere = 0;

	st = descend(op->t, op, q->lo, c);
	if (st)
		return st;
	if (c->lv[c->leaf].idx < 0) {
		/* The extent before lo may reach into [lo, hi). */
		struct bt_cur tmp = *c;
		st = step(op, &tmp, -1, 0);
		if (st == R_OK && consider(&fs, &tmp)) {
			if (!best) {
				*c = tmp;
				goto found;
			}
			have = true;
			bc = tmp;
			blen = fs.e.len;
			bwhere = fs.where;
		} else if (st != R_OK && st != R_END) {
			return st;
		}
	} else if (consider(&fs, c)) {
		if (!best)
			goto found;
		have = true;
		bc = *c;
		blen = fs.e.len;
		bwhere = fs.where;
	}
	while (!(have && blen == q->need)) {
		st = rs_compact(op, c, have ? &bc : NULL);
		if (st)
			return st;
		st = step(op, c, 1, q->need);
		if (st == R_END)
			break;
		if (st)
			return st;
		read_ext(c, &fs.e);
		if (fs.e.start >= q->hi)
			break;
		if (!consider(&fs, c))
			continue;
		if (!best)
			goto found;
		if (!have || fs.e.len < blen) {
			have = true;
			bc = *c;
			blen = fs.e.len;
			bwhere = fs.where;
		}
	}
	if (!have)
		return R_END;
	*c = bc;
	*where = bwhere;
	return R_OK;
found:
	*where = fs.where;
	return R_OK;
}

/* ---- planning node changes ---- */

enum { CHG_SET = 1, CHG_DEL, CHG_INS, CHG_MAX_SET };

struct bt_chg {
	unsigned char dirty; /* index of the node it applies to */
	unsigned char kind;
	int idx;             /* entry index, the slot is first + idx (CHG_INS:
			      * insert before this original entry) */
	uint64_t max;        /* CHG_MAX_SET */
	const struct cairn_ext *ext;
};

#define NODE_CHG 8 /* changes one node may receive in one operation */

struct bt_dirty {
	struct bt_node *n;
	uint64_t v;
	const struct bt_cur *path; /* a path through this node */
	unsigned depth;
	unsigned newcnt;
	uint64_t newmax;
	bool retire;
	unsigned char nch;
	unsigned char ch[NODE_CHG]; /* its changes, in slot order */
};

struct bt_plan {
	unsigned ndirty, nchg;
	struct bt_dirty d[DIRTY_MAX];
	struct bt_chg chg[CHG_MAX];
};

static int dirty_of(struct bt_plan *p, const struct bt_cur *c, unsigned depth)
{
	struct bt_node *n = c->lv[depth].n;
	for (unsigned i = 0; i < p->ndirty; i++)
		if (p->d[i].n == n)
			return p->d[i].v == c->lv[depth].v && p->d[i].depth == depth
				       ? (int)i : -R_RESTART;
	if (p->ndirty == DIRTY_MAX)
		return -R_OVERFLOW;
	p->d[p->ndirty] = (struct bt_dirty){ .n = n, .v = c->lv[depth].v,
					     .path = c, .depth = depth };
	return (int)p->ndirty++;
}

static bool plan_locks(const struct bt_plan *p, const struct bt_node *n)
{
	for (unsigned i = 0; i < p->ndirty; i++)
		if (p->d[i].n == n)
			return true;
	return false;
}

/* Slot order: an insert before original slot i sorts before slot i. */
static int chg_order(const struct bt_chg *c)
{
	return 2 * c->idx + (c->kind != CHG_INS);
}

static int add_chg(struct bt_plan *p, const struct bt_cur *c, unsigned depth,
		   unsigned kind, int idx, uint64_t max,
		   const struct cairn_ext *ext)
{
	int di = dirty_of(p, c, depth);
	if (di < 0)
		return -di;
	struct bt_dirty *d = &p->d[di];
	if (p->nchg == CHG_MAX || d->nch == NODE_CHG)
		return R_OVERFLOW;
	struct bt_chg *nc = &p->chg[p->nchg];
	*nc = (struct bt_chg){ (unsigned char)di, (unsigned char)kind, idx,
			       max, ext };
	unsigned k = d->nch;
	while (k > 0 && chg_order(&p->chg[d->ch[k - 1]]) > chg_order(nc)) {
		d->ch[k] = d->ch[k - 1];
		k--;
	}
	if (k > 0 && kind != CHG_INS && chg_order(&p->chg[d->ch[k - 1]]) ==
						 chg_order(nc))
		return R_RESTART; /* two changes of one slot: inconsistent */
	d->ch[k] = (unsigned char)p->nchg++;
	d->nch++;
	return R_OK;
}

static uint64_t ext_gap(const struct cairn_ext *e)
{
	return (e->flags & CAIRN_EXT_FREE) ? e->len : 0;
}

/* Gap maximum over entries [from, to) as they are (entries start at slot
 * f); it stops early once it has seen `enough`. */
static uint64_t range_max(struct bt_node *n, unsigned f, bool leaf,
			  unsigned from, unsigned to, uint64_t enough)
{
	_Atomic uint64_t *a = n->a + f, *b = n->b + f, *c = n->c + f;
	uint64_t m = 0;
	for (unsigned i = from; i < to; i++) {
		uint64_t g = !leaf ? rd(b[i])
			     : (rd(c[i]) & CAIRN_EXT_FREE) ? rd(a[i]) : 0;
		if (g > m) {
			m = g;
			if (m >= enough) /* checked only when m grows */
				break;
		}
	}
	return m;
}

/*
 * New count and gap maximum of a dirty node, from the snapshot. The old
 * maximum is stored in the parent. If no changed slot held it, or a new
 * value reaches it, the new maximum follows from the changes alone;
 * otherwise the untouched slots are scanned, but only until one of them
 * still holds the old maximum (nothing can exceed it). The root's maximum
 * is not stored anywhere and not needed.
 */
static void dirty_result(struct bt_plan *p, unsigned di)
{
	struct bt_dirty *d = &p->d[di];
	bool leaf = d->depth == d->path->leaf;
	const struct bt_lv *lv = &d->path->lv[d->depth];
	unsigned f = lv->f, cnt = lv->cnt;
	uint64_t old = 0, m = 0, g;
	bool rescan = false;
	unsigned ndel = 0, nins = 0;

	if (d->depth > 0)
		old = rd(lv_slot(&d->path->lv[d->depth - 1], b));
	for (unsigned k = 0; k < d->nch; k++) {
		const struct bt_chg *c = &p->chg[d->ch[k]];
		if (c->kind == CHG_INS) {
			nins++;
			g = ext_gap(c->ext);
		} else {
			ndel += c->kind == CHG_DEL;
			if (c->idx >= 0 && c->idx < (int)cnt && old &&
			    (leaf ? bt_leaf_gap(d->n, f + (unsigned)c->idx)
				  : rd(d->n->b[f + (unsigned)c->idx])) == old)
				rescan = true;
			g = c->kind == CHG_SET ? ext_gap(c->ext)
			    : c->kind == CHG_MAX_SET ? c->max : 0;
		}
		m = g > m ? g : m;
	}
	d->newcnt = cnt + nins >= ndel ? cnt + nins - ndel : 0;
	if (!rescan || m >= old || d->depth == 0) {
		d->newmax = old > m ? old : m;
		return;
	}

	uint64_t u = 0;
	unsigned from = 0;
	for (unsigned k = 0; k < d->nch && u < old; k++) {
		const struct bt_chg *c = &p->chg[d->ch[k]];
		if (c->kind == CHG_INS || c->idx < (int)from)
			continue;
		unsigned stop = (unsigned)c->idx < cnt ? (unsigned)c->idx : cnt;
		g = range_max(d->n, f, leaf, from, stop, old);
		u = g > u ? g : u;
		from = stop + 1;
	}
	if (u < old && from < cnt) {
		g = range_max(d->n, f, leaf, from, cnt, old);
		u = g > u ? g : u;
	}
	d->newmax = u > m ? u : m;
}

/* From the leaf changes, derive the changes of the inner nodes above,
 * level by level, stopping where nothing changes any more. */
static int plan_upwards(struct cairn_btree *t, struct bt_plan *p)
{
	if (p->ndirty == 0)
		return R_OK;
	unsigned leaf = p->d[0].path->leaf;
	for (unsigned i = 0; i < p->ndirty; i++)
		if (p->d[i].path->leaf != leaf)
			return R_RESTART;

	for (int depth = (int)leaf; depth >= 0; depth--) {
		unsigned end = p->ndirty; /* parents are appended behind */
		for (unsigned di = 0; di < end; di++) {
			struct bt_dirty *d = &p->d[di];
			if (d->depth != (unsigned)depth)
				continue;
			dirty_result(p, di);
			if (d->newcnt > t->fanout)
				return R_RESTART; /* a split is due first */
			if (depth == 0)
				continue;
			const struct bt_cur *c = d->path;
			const struct bt_lv *up = &c->lv[depth - 1];
			int st;
			if (d->newcnt == 0) {
				d->retire = true;
				st = add_chg(p, c, (unsigned)depth - 1, CHG_DEL,
					     up->idx, 0, NULL);
			} else if (d->newmax != rd(lv_slot(up, b))) {
				st = add_chg(p, c, (unsigned)depth - 1,
					     CHG_MAX_SET, up->idx, d->newmax,
					     NULL);
			} else {
				continue;
			}
			if (st)
				return st;
			d = &p->d[di];
		}
	}
	return R_OK;
}

/* ---- applying them (every node involved is locked) ---- */

/* Move k entries of one column from src to dst (the ranges may overlap),
 * four at a time: all four loads of a group come before its stores, and a
 * group never stores where a later group loads. */
static inline __attribute__((always_inline)) void
move_col(_Atomic uint64_t *x, unsigned dst, unsigned src, unsigned k)
{
	unsigned i;
	if (dst > src) {
		for (i = k; i >= 4; i -= 4) {
			uint64_t a = rd(x[src + i - 1]), b = rd(x[src + i - 2]);
			uint64_t c = rd(x[src + i - 3]), d = rd(x[src + i - 4]);
			wr(x[dst + i - 1], a);
			wr(x[dst + i - 2], b);
			wr(x[dst + i - 3], c);
			wr(x[dst + i - 4], d);
		}
		while (i-- > 0)
			wr(x[dst + i], rd(x[src + i]));
		return;
	}
	for (i = 0; i + 4 <= k; i += 4) {
		uint64_t a = rd(x[src + i]), b = rd(x[src + i + 1]);
		uint64_t c = rd(x[src + i + 2]), d = rd(x[src + i + 3]);
		wr(x[dst + i], a);
		wr(x[dst + i + 1], b);
		wr(x[dst + i + 2], c);
		wr(x[dst + i + 3], d);
	}
	for (; i < k; i++)
		wr(x[dst + i], rd(x[src + i]));
}

/* Move k slots of a locked node from src to dst, column by column (readers
 * of the node meanwhile fail validation). */
static inline __attribute__((always_inline)) void
move_slots(struct bt_node *n, unsigned dst, unsigned src, unsigned k)
{
	if (dst == src || k == 0)
		return; /* the side of the window that stays */
	move_col(n->key, dst, src, k);
	move_col(n->a, dst, src, k);
	move_col(n->b, dst, src, k);
	move_col(n->c, dst, src, k);
}

static void write_slot(struct bt_node *n, unsigned i, const struct cairn_ext *e)
{
	wr(n->key[i], e->start);
	wr(n->a[i], e->len);
	wr(n->b[i], e->cookie);
	wr(n->c[i], e->flags);
}

/*
 * Make room in a locked node (cnt entries from slot f) for replacing its
 * entries [w0, w1) by nn new ones: the entries before w0 or those from w1
 * on move, whichever are fewer, provided they have room to move into;
 * otherwise every entry moves so that the node sits in the middle of its
 * slots, with room on both sides for the changes to come. first is
 * updated; the caller writes the nn entries from slot (returned) + w0, and
 * the count. The new count must fit the fanout.
 *
 * First fit keeps changing the front of the lowest leaf, which therefore
 * moves a few entries, not the ~60 after them in four columns.
 */
static inline __attribute__((always_inline)) unsigned
open_window(const struct cairn_btree *t, struct bt_node *n, unsigned f,
	    unsigned cnt, unsigned w0, unsigned w1, unsigned nn)
{
	unsigned left = w0, right = cnt - w1, newcnt = cnt - (w1 - w0) + nn;
	unsigned nf;

	if (nn == w1 - w0)
		return f;
	if (left <= right && f + (w1 - w0) >= nn)
		nf = f + (w1 - w0) - nn; /* the entries before move */
	else if (left > right && f + newcnt <= t->fanout)
		nf = f; /* the entries after move */
	else
		nf = (t->fanout - newcnt) / 2;
	/* Move first the part that moves away from the other one. */
	if (nf <= f)
		move_slots(n, nf, f, left);
	move_slots(n, nf + w0 + nn, f + w1, right);
	if (nf > f)
		move_slots(n, nf, f, left);
	if (nf != f)
		wr(n->first, nf);
	return nf;
}


/* Apply the changes of one node in slot order: the deletions (and the
 * changes of slots in place) first, then the inserts, so that the count
 * never exceeds the larger of the old and the new one. */
static void apply_node(const struct cairn_btree *t, struct bt_plan *p,
		       unsigned di, bool leaf)
{
	const struct bt_dirty *d = &p->d[di];
	struct bt_node *n = d->n;
	unsigned f = rd(n->first), cnt = rd(n->count);
	unsigned ndel = 0, nins = 0;
	const struct bt_chg *ins[NODE_CHG];
	unsigned at[NODE_CHG];

	for (unsigned k = 0; k < d->nch; k++) {
		const struct bt_chg *c = &p->chg[d->ch[k]];
		unsigned i = (unsigned)c->idx - ndel; /* its entry by now */
		switch (c->kind) {
		case CHG_SET:
			wr(n->a[f + i], c->ext->len);
			wr(n->b[f + i], c->ext->cookie);
			wr(n->c[f + i], c->ext->flags);
			break;
		case CHG_MAX_SET:
			wr(n->b[f + i], c->max);
			break;
		case CHG_DEL:
			f = open_window(t, n, f, cnt, i, i + 1, 0);
			cnt--;
			ndel++;
			break;
		case CHG_INS: /* before entry i, after the deletions before it */
			ins[nins] = c;
			at[nins++] = i;
			break;
		}
	}
	for (unsigned k = 0; k < nins; k++) {
		unsigned i = at[k] + k;
		f = open_window(t, n, f, cnt, i, i, 1);
		write_slot(n, f + i, ins[k]->ext);
		cnt++;
	}
	wr(n->count, cnt);
	if (cnt == 0 && !leaf)
		wr(n->level, 0); /* only the root gets here: an empty tree */
}

static void unlock_all(struct bt_plan *p, unsigned nlocked)
{
	for (unsigned i = 0; i < nlocked; i++)
		olc_unlock_unchanged(&p->d[i].n->version, p->d[i].v);
}

static int commit(struct bt_op *op, struct bt_plan *p)
{
	unsigned i;
	for (i = 0; i < p->ndirty; i++) {
		if (!olc_upgrade(&p->d[i].n->version, p->d[i].v)) {
			unlock_all(p, i);
			return R_RESTART;
		}
	}
	if (!rs_validate(op, p)) {
		unlock_all(p, p->ndirty);
		return R_RESTART;
	}
	for (i = 0; i < p->ndirty; i++) {
		if (p->d[i].retire)
			continue;
		apply_node(op->t, p, i, p->d[i].depth == p->d[i].path->leaf);
	}
	for (i = 0; i < p->ndirty; i++) {
		if (p->d[i].retire) {
			olc_unlock_obsolete(&p->d[i].n->version, p->d[i].v);
			cairn__bt_node_retire(op->t, p->d[i].n);
		} else {
			olc_unlock(&p->d[i].n->version, p->d[i].v);
		}
	}
	return R_OK;
}

/* ---- splits ---- */

struct bt_spares {
	struct bt_node *n[2];
	unsigned cnt;
};

/* Copy entries [from, to) of the locked node src into dst, in the middle
 * of its slots (room to grow both ways). */
static void fill(const struct cairn_btree *t, struct bt_node *dst,
		 struct bt_node *src, unsigned from, unsigned to)
{
	unsigned sf = rd(src->first), df = (t->fanout - (to - from)) / 2;
	for (unsigned i = from; i < to; i++)
		bt_copy_slot(dst, df + i - from, src, sf + i);
	wr(dst->first, df);
	wr(dst->count, to - from);
}

/*
 * A split that cannot be made (no node to be had, or a root split beyond
 * the depth limit) fails the update only if what called for it still
 * holds: the path and the counts make_room read, and the root's level,
 * were read optimistically, and a stale leaf (reused, full, elsewhere)
 * may seem to need a split the tree does not. Like every error, this
 * one is returned after the read set validates; otherwise the update
 * restarts.
 */
static int split_fail(struct bt_op *op, int err)
{
	return rs_validate(op, NULL) ? err : R_RESTART;
}

/* Split the node at depth d of c (its parent, if any, has room). */
static int split(struct bt_op *op, const struct bt_cur *c, unsigned d,
		 struct bt_spares *sp)
{
	struct cairn_btree *t = op->t;
	struct bt_node *n = c->lv[d].n;
	uint64_t v = c->lv[d].v;
	unsigned want = d == 0 ? 2 : 1;
	unsigned level = d == 0 ? bt_level(n) : 0;

	/* The depth limit first: a root split it refuses needs no node, so
	 * the refusal is CAIRN_ENOSPC with or without frames, and takes
	 * none from the frame allocator (they would stay on the free list
	 * until destroy). */
	if (d == 0 && level + 1 >= CAIRN_BTREE_DEPTH_MAX)
		return split_fail(op, CAIRN_ENOSPC);
	while (sp->cnt < want) {
		struct bt_node *x = cairn__bt_node_alloc(t);
		if (!x)
			return split_fail(op, CAIRN_ENOMEM);
		sp->n[sp->cnt++] = x;
	}

	if (d == 0) {
		if (!olc_upgrade(&n->version, v))
			return R_RESTART;
		unsigned cnt = rd(n->count), mid = cnt / 2;
		struct bt_node *l = sp->n[--sp->cnt], *r = sp->n[--sp->cnt];
		cairn__bt_node_prepare(l, level);
		cairn__bt_node_prepare(r, level);
		fill(t, l, n, 0, mid);
		fill(t, r, n, mid, cnt);
		uint64_t ml = bt_node_max(t, l), mr = bt_node_max(t, r);
		uint64_t sep = rd(n->key[rd(n->first) + mid]);
		cairn__bt_node_publish(l);
		cairn__bt_node_publish(r);
		wr(n->first, 0);
		write_slot(n, 0, &(struct cairn_ext){ 0, (uintptr_t)l, ml, 0 });
		write_slot(n, 1, &(struct cairn_ext){ sep, (uintptr_t)r, mr, 0 });
		wr(n->count, 2);
		wr(n->level, level + 1);
		olc_unlock(&n->version, v);
		return R_RESTART;
	}

	struct bt_node *pn = c->lv[d - 1].n;
	uint64_t pv = c->lv[d - 1].v;
	unsigned ci = (unsigned)c->lv[d - 1].idx;
	if (!olc_upgrade(&pn->version, pv))
		return R_RESTART;
	if (!olc_upgrade(&n->version, v)) {
		olc_unlock_unchanged(&pn->version, pv);
		return R_RESTART;
	}
	unsigned pc = rd(pn->count);
	unsigned cnt = rd(n->count), mid = cnt / 2;
	if (pc >= t->fanout || cnt < 2) {
		olc_unlock_unchanged(&n->version, v);
		olc_unlock_unchanged(&pn->version, pv);
		return R_RESTART;
	}
	struct bt_node *r = sp->n[--sp->cnt];
	cairn__bt_node_prepare(r, rd(n->level));
	fill(t, r, n, mid, cnt);
	wr(n->count, mid);
	uint64_t mr = bt_node_max(t, r), mn = bt_node_max(t, n);
	cairn__bt_node_publish(r);
	unsigned pf = open_window(t, pn, rd(pn->first), pc, ci + 1, ci + 1, 1);
	write_slot(pn, pf + ci + 1,
		   &(struct cairn_ext){ rd(r->key[rd(r->first)]),
					(uint64_t)(uintptr_t)r, mr, 0 });
	wr(pn->b[pf + ci], mn);
	wr(pn->count, pc + 1);
	olc_unlock(&n->version, v);
	olc_unlock(&pn->version, pv);
	return R_RESTART;
}

/*
 * The tree shrinks from the top: while the root is an inner node with a
 * single child, the child's entries move up into the root (which never
 * moves) and the child is retired. Best effort: on any conflict it stops,
 * and a later update tries again (every successful one checks, the shapes'
 * entries included: collapse_check).
 */
static __attribute__((noinline, cold)) void collapse(struct cairn_btree *t)
{
	struct bt_node *r = bt_root(t);
	for (unsigned k = 0; k < CAIRN_BTREE_DEPTH_MAX; k++) {
		uint64_t rv = olc_read_begin(&r->version);
		unsigned f;
		if (olc_busy(rv) || rd(r->level) == 0 || bt_shape(t, r, &f) != 1)
			return;
		struct bt_node *c = bt_child(r, f);
		if (!olc_validate(&r->version, rv))
			return;
		uint64_t cv = olc_read_begin(&c->version);
		if (olc_busy(cv) || !olc_upgrade(&r->version, rv))
			return;
		if (!olc_upgrade(&c->version, cv)) {
			olc_unlock_unchanged(&r->version, rv);
			return;
		}
		fill(t, r, c, 0, rd(c->count));
		wr(r->level, rd(c->level));
		olc_unlock(&r->version, rv);
		olc_unlock_obsolete(&c->version, cv);
		cairn__bt_node_retire(t, c);
	}
}

/* After every successful update: a root with a single child, left by this
 * update's unlink or by a collapse that lost a conflict, collapses. Two
 * relaxed loads (the level only when the count is 1); a torn pair costs at
 * most a collapse() call that finds nothing to do. */
static inline void collapse_check(struct cairn_btree *t)
{
	struct bt_node *r = bt_root(t);
	if (rd(r->count) == 1 && rd(r->level) != 0)
		collapse(t);
}

/* Make room for `add` inserts in the leaf of c: split the topmost of the
 * full nodes the leaf split would cascade into. R_OK if there is room. */
static int make_room(struct bt_op *op, const struct bt_cur *c, unsigned add,
		     struct bt_spares *sp)
{
	struct cairn_btree *t = op->t;
	unsigned d = c->leaf;
	if (bt_count(t, c->lv[d].n) + add <= t->fanout)
		return R_OK;
	while (d > 0 && bt_count(t, c->lv[d - 1].n) >= t->fanout)
		d--;
	return split(op, c, d, sp);
}

/* ---- the update operation ---- */

static bool ext_before(const struct cairn_ext *a, const struct cairn_ext *b)
{
	return a->start < b->start && a->len <= b->start - a->start;
}

/* May the planner insert x? It must lie strictly after the last extent in
 * view before the inserts and before succ, and, when the view holds no
 * neighbours (inside), inside cur. */
static inline __attribute__((always_inline)) bool
ins_ok(const struct cairn_bt_view *v, const struct cairn_ext *x, bool inside)
{
	const struct cairn_ext *lo = v->has_cur ? &v->cur
				     : v->has_pred ? &v->pred : NULL;
	if (x->len == 0 || (lo && x->start <= lo->start) ||
	    (v->has_succ && x->start >= v->succ.start))
		return false;
	return !inside ||
	       (v->has_cur && x->start - v->cur.start < v->cur.len &&
		x->len <= v->cur.len - (x->start - v->cur.start));
}

/* Does x end at or below 2^64 (an end of exactly 2^64 reads as 0)? */
static inline bool ext_fits(const struct cairn_ext *x)
{
	return x->start + x->len >= x->start || x->start + x->len == 0;
}

/* With succ deleted, may x, the new sequence's last extent (it starts
 * before succ), end where it does? What follows succ is not in view and
 * may start right at succ's end, so x may reach that far (a merge) and
 * no further; nothing follows a succ that ends at 2^64. */
static inline bool within_succ(const struct cairn_ext *succ,
			       const struct cairn_ext *x)
{
	uint64_t end = succ->start + succ->len;
	return end == 0 || (x->start < end && x->len <= end - x->start);
}

/* Is view slot k (0 pred, 1 cur, 2 succ) one whose successor the view does
 * not show, so that a SET of it may not lengthen it? succ's never is in
 * view, nor is cur's for a cur_only query (`inside`); pred's successor is
 * cur or succ, and cur without cur_only is followed by succ or by nothing
 * (has_succ false: the last extent), so the sequence checks cover them. */
static inline __attribute__((always_inline)) bool set_capped(unsigned k,
							     bool inside)
{
	return k == 2 || (k == 1 && inside);
}

/* The planned sequence pred, cur, inserts, succ must stay ordered and
 * disjoint, SET must keep the start (and not lengthen an extent whose
 * successor is out of view: set_capped), inserts lie between
 * neighbours, and with succ deleted nothing reaches past its end (what
 * follows it is out of view too: within_succ). (The fast path makes the
 * same checks in its own pass over the edit.) */
static bool edit_ok(const struct cairn_bt_view *v,
		    const struct cairn_bt_edit *e, bool inside)
{
	const struct cairn_ext *seq[5];
	const struct cairn_ext *old[3] = { &v->pred, &v->cur, &v->succ };
	bool has[3] = { v->has_pred, v->has_cur, v->has_succ };
	unsigned n = 0;

	if (e->nins > 2)
		return false;
	for (unsigned k = 0; k < 3; k++) {
		if (e->act[k] == CAIRN_BT_KEEP)
			continue;
		if (!has[k] || e->act[k] > CAIRN_BT_DEL)
			return false;
		if (e->act[k] == CAIRN_BT_SET &&
		    (e->val[k].start != old[k]->start || e->val[k].len == 0 ||
		     (set_capped(k, inside) && e->val[k].len > old[k]->len)))
			return false;
	}
	for (unsigned k = 0; k < 2; k++) {
		const struct cairn_ext *x = k == 0 ? old[0] : old[1];
		if (has[k] && e->act[k] != CAIRN_BT_DEL)
			seq[n++] = e->act[k] == CAIRN_BT_SET ? &e->val[k] : x;
	}
	for (unsigned k = 0; k < e->nins; k++) {
		if (!ins_ok(v, &e->ins[k], inside))
			return false;
		seq[n++] = &e->ins[k];
	}
	if (has[2] && e->act[2] != CAIRN_BT_DEL)
		seq[n++] = e->act[2] == CAIRN_BT_SET ? &e->val[2] : old[2];
	for (unsigned k = 0; k < n; k++) {
		if (!ext_fits(seq[k]))
			return false;
		if (k > 0 && !ext_before(seq[k - 1], seq[k]))
			return false;
	}
	return !(has[2] && e->act[2] == CAIRN_BT_DEL && n > 0 &&
		 !within_succ(old[2], seq[n - 1]));
}

/* A planner's error as the update returns it. Errors are negative; any
 * other non-zero return is malformed (and must not be taken for one of
 * the tree's own codes, R_RESTART above all, which would loop). */
static inline int plan_error(int err)
{
	return err < 0 ? err : CAIRN_EINVAL;
}

/* What a planner starts from: nothing changed, nothing inserted (the
 * values behind KEEP and beyond nins are never read). */
static void edit_clear(struct cairn_bt_edit *e)
{
	e->act[0] = e->act[1] = e->act[2] = CAIRN_BT_KEEP;
	e->nins = 0;
}

struct bt_upd {
	struct bt_cur c[3];  /* pred, cur, succ */
	struct bt_cur ic[2]; /* insert positions */
	struct cairn_bt_view view;
	struct cairn_bt_edit edit;
	struct bt_plan plan;
};

/* Locate the extent and its neighbours (R_END: no fit). */
static int locate(struct bt_op *op, const struct cairn_bt_query *q,
		  struct bt_upd *u)
{
	struct cairn_bt_view *v = &u->view;
	struct bt_cur *c = u->c;
	/* The paths kept should the read set need room (rs_room): c[1] is
	 * a whole path in every case (the position seek_le left), c[0] once
	 * there is a pred. */
	const struct bt_cur *const keep[2] = { &c[1], &c[0] };
	int st;

	v->has_pred = v->has_cur = v->has_succ = false;
	v->where = 0;
	if (q->find == CAIRN_BT_AT) {
		st = seek_le(op, q->key, &c[1]);
		if (st == R_END) { /* nothing at or before key */
			c[2] = c[1];
			goto succ;
		}
		if (st)
			return st;
		read_ext(&c[1], &v->cur);
		if (q->key - v->cur.start >= v->cur.len) {
			/* key is in the gap after this extent */
			v->pred = v->cur;
			v->has_pred = true;
			c[0] = c[1];
			c[2] = c[1];
			goto succ;
		}
	} else {
		st = search_fit(op, q, &c[1], &v->where);
		if (st)
			return st;
		read_ext(&c[1], &v->cur);
	}
	v->has_cur = true;
	if (q->cur_only)
		return R_OK;
	st = rs_room(op, keep, 1);
	if (st)
		return st;
	c[0] = c[1];
	st = step(op, &c[0], -1, 0);
	if (st == R_OK) {
		read_ext(&c[0], &v->pred);
		v->has_pred = true;
	} else if (st != R_END) {
		return st;
	}
	c[2] = c[1];
succ:
	st = rs_room(op, keep, v->has_pred ? 2 : 1);
	if (st)
		return st;
	st = step(op, &c[2], 1, 0);
	if (st == R_OK) {
		read_ext(&c[2], &v->succ);
		v->has_succ = true;
	} else if (st != R_END) {
		return st;
	}
	return R_OK;
}

/* The upper key bound of the leaf of c, from the separators on its path;
 * false when the leaf is the last one. */
static bool leaf_upper(const struct bt_cur *c, uint64_t *hi)
{
	for (unsigned d = c->leaf; d-- > 0;) {
		const struct bt_lv *lv = &c->lv[d];
		if (lv->idx + 1 < (int)lv->cnt) {
			*hi = rd(lv->n->key[lv->f + (unsigned)lv->idx + 1]);
			return true;
		}
	}
	return false;
}

static int try_update(struct bt_op *op, const struct cairn_bt_query *q,
		      struct bt_upd *u, struct bt_spares *sp)
{
	struct cairn_btree *t = op->t;
	int st = locate(op, q, u);
	if (st == R_END)
		return rs_validate(op, NULL) ? CAIRN_ENOMEM : R_RESTART;
	if (st)
		return st;

	struct cairn_bt_edit *e = &u->edit;
	edit_clear(e);
	int err = q->plan(&u->view, q->arg, e);
	if (err == 0 && !edit_ok(&u->view, e, q->cur_only))
		err = CAIRN_EINVAL;
	if (err)
		return rs_validate(op, NULL) ? plan_error(err) : R_RESTART;

	/* Where the inserts go: right after the extent before them when its
	 * leaf's key range takes them (the common case), else where a fresh
	 * descent says; and room for them. */
	const struct bt_cur *ic[2];
	const struct bt_cur *anchor = &u->c[1];
	for (unsigned k = 0; k < e->nins; k++) {
		uint64_t hi;
		if (!leaf_upper(anchor, &hi) || e->ins[k].start < hi) {
			ic[k] = anchor;
			continue;
		}
		/* the paths the plan uses: the view's and the inserts' so far */
		const struct bt_cur *keep[4];
		unsigned nk = 0;
		keep[nk++] = &u->c[1];
		if (u->view.has_pred)
			keep[nk++] = &u->c[0];
		if (u->view.has_succ)
			keep[nk++] = &u->c[2];
		if (k == 1 && ic[0] == &u->ic[0])
			keep[nk++] = &u->ic[0];
		st = rs_room(op, keep, nk);
		if (st)
			return st;
		st = descend(op->t, op, e->ins[k].start, &u->ic[k]);
		if (st)
			return st;
		ic[k] = &u->ic[k];
	}
	for (unsigned k = 0; k < e->nins; k++) {
		unsigned add = 1;
		if (e->nins == 2 && ic[0]->lv[ic[0]->leaf].n ==
					    ic[1]->lv[ic[1]->leaf].n)
			add = 2;
		st = make_room(op, ic[k], add, sp);
		if (st)
			return st;
	}

	/* The leaf changes, then everything they imply above. */
	struct bt_plan *p = &u->plan;
	p->ndirty = p->nchg = 0;
	static const unsigned char kind[3] = { 0, CHG_SET, CHG_DEL };
	for (unsigned k = 0; k < 3; k++) {
		if (e->act[k] == CAIRN_BT_KEEP)
			continue;
		const struct bt_cur *c = &u->c[k];
		st = add_chg(p, c, c->leaf, kind[e->act[k]],
			     c->lv[c->leaf].idx, 0, &e->val[k]);
		if (st)
			return st;
	}
	for (unsigned k = 0; k < e->nins; k++) {
		const struct bt_cur *c = ic[k];
		st = add_chg(p, c, c->leaf, CHG_INS, c->lv[c->leaf].idx + 1, 0,
			     &e->ins[k]);
		if (st)
			return st;
	}
	st = plan_upwards(t, p);
	if (st)
		return st;
	return commit(op, p);
}

/* ---- the fast path: updates confined to one leaf ---- */

/*
 * Almost every arena operation changes a few adjacent slots of one leaf:
 * an alloc carves the found free extent (one SET, maybe an insert after
 * it), a free turns an extent free and merges it with neighbours in the
 * same leaf. The fast path does exactly what the general writer does, the
 * same four phases with the same ordering argument, with less machinery:
 *
 *   read      one root-to-leaf path, kept in a cursor that is the whole
 *             read set (a fit search descends along the gap maxima; an
 *             address is routed by its key); the view is the found extent
 *             and its neighbours in that leaf. The planner runs.
 *   plan      the edit replaces a window of at most three adjacent slots
 *             (pred, cur, succ) by at most five extents in key order; the
 *             leaf's new gap maximum is computed from the parent's stored
 *             one and, if it changes, the ancestors whose stored maxima
 *             change are found on the path (a short upward walk).
 *   lock      the leaf, then those ancestors, each upgraded from the
 *             version it was read at;
 *   validate  the rest of the path;
 *   write     open or close the window (the shorter side of the leaf
 *             moves, or the entries are recentred), write the window,
 *             the count and the new maxima, unlock.
 *
 * Anything else returns R_SLOW before locking anything, and the general
 * writer runs: a neighbour in another leaf, an insert past the leaf's upper
 * separator, a leaf that would overflow (split first) or empty (unlink), a
 * fit search that does not start at the bottom of the key space or whose
 * first candidate leaf has nothing acceptable.
 */

/* Is the leaf of c the first (dir < 0) or the last (dir > 0) leaf? */
static bool path_edge(struct cairn_btree *t, const struct bt_cur *c, int dir)
{
	for (unsigned d = 0; d < c->leaf; d++) {
		int i = c->lv[d].idx;
		if (dir < 0 ? i != 0 : i + 1 != (int)bt_count(t, c->lv[d].n))
			return false;
	}
	return true;
}

static inline __attribute__((always_inline)) int
descend_fit(struct cairn_btree *t, uint64_t need, struct bt_cur *c)
{
	return descend_to(t, NULL, 0, true, need, BT_NO_GUESS, false, c);
}

/*
 * A writer that lost the race for its leaf (the upgrade failed because
 * another writer changed the leaf) while the path above it still holds
 * retries on the same path: it waits for the leaf's lock to go, reads the
 * leaf again at its new version and plans again. The path above keeps the
 * versions it was read at and is validated at commit as always; every node
 * then held what was read, from its read to its validation, so the
 * snapshot argument is unchanged. The leaf pointer was validated when it
 * was first followed (type-stable node: re-reading it is safe). A leaf that
 * left the tree, or that stays locked, sends the writer back to the root.
 */
enum { R_AGAIN = 5, LEAF_SPIN = 1024 };

static int leaf_again(const struct cairn_btree *t, struct bt_lv *lf)
{
	for (unsigned spin = 0; spin < LEAF_SPIN; spin++) {
		uint64_t v = olc_read_begin(&lf->n->version);
		if (v & OLC_OBSOLETE)
			return R_RESTART;
		if (!(v & OLC_LOCKED)) {
			if (rd(lf->n->level) != 0)
				return R_RESTART;
			lf->v = v;
			lv_shape(t, lf);
			return R_OK;
		}
		cairn_port_pause();
	}
	return R_RESTART;
}

/*
 * Find the extent and its neighbours in one leaf. slot[k] is the leaf entry
 * of pred, cur, succ (k = 0, 1, 2), or -1 when the view has none; the view
 * is the one the general writer's locate() would build.
 */
static int fast_locate(struct cairn_btree *t, const struct cairn_bt_query *q,
		       struct bt_cur *c, struct cairn_bt_view *v, int slot[3],
		       bool again)
{
	struct bt_lv *lf;
	struct bt_node *n;
	unsigned f;
	int i, cnt, st;

	bool at = q->find == CAIRN_BT_AT;
	if (!at && !(q->find == CAIRN_BT_FIT_LOW && q->lo == 0 && q->hi > 0))
		return R_SLOW;
	slot[0] = slot[1] = slot[2] = -1;
	v->has_pred = v->has_cur = v->has_succ = false;
	v->where = 0;
	if (again) {
		lf = &c->lv[c->leaf];
		st = leaf_again(t, lf);
		if (st)
			return st;
		if (at)
			lf->idx = find_le(lf->n, lf->f, 0, lf->cnt, q->key);
	} else {
		st = at ? descend(t, NULL, q->key, c) : descend_fit(t, q->need, c);
		if (st)
			return st;
		lf = &c->lv[c->leaf];
	}
	n = lf->n;
	f = lf->f;
	cnt = lf->cnt;
	if (at) {
		i = lf->idx;
		if (i < 0) { /* nothing at or before key, if this is the first leaf */
			if (!path_edge(t, c, -1))
				return R_SLOW;
			goto succ;
		}
		read_slot(n, f + (unsigned)i, &v->cur);
		if (q->key - v->cur.start >= v->cur.len) { /* in the gap after it */
			v->pred = v->cur;
			v->has_pred = true;
			slot[0] = i;
			goto succ;
		}
	} else {
		struct fit_state fs = { .q = q };
		for (i = scan(n, f, 0, cnt, 1, true, q->need); i < cnt;
		     i = scan(n, f, i + 1, cnt, 1, true, q->need)) {
			read_slot(n, f + (unsigned)i, &fs.e);
			if (accept(&fs))
				break;
		}
		if (i >= cnt) /* R_SLOW unless the leaf changed under a retry */
			return again ? R_RESTART : R_SLOW;
		lf->idx = i;
		v->cur = fs.e;
		v->where = fs.where;
	}
	v->has_cur = true;
	slot[1] = i;
	if (q->cur_only)
		return R_OK;
	if (i > 0) {
		read_slot(n, f + (unsigned)i - 1, &v->pred);
		v->has_pred = true;
		slot[0] = i - 1;
	} else if (!path_edge(t, c, -1)) {
		return R_SLOW;
	}
succ:
	if (i + 1 < cnt) {
		read_slot(n, f + (unsigned)i + 1, &v->succ);
		v->has_succ = true;
		slot[2] = i + 1;
	} else if (!path_edge(t, c, 1)) {
		return R_SLOW;
	}
	return R_OK;
}

static uint64_t max2(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* Gap maximum of the entries of a path level other than [from, to), as
 * they are; stops early at `enough`. The entries after the window come
 * first: a lowest fit changes the front of a leaf, whose entries before
 * the window are all shorter than the request, so only the part after it
 * can stop the scan early. */
static uint64_t others_max(const struct bt_lv *lv, bool leaf, unsigned from,
			   unsigned to, uint64_t enough)
{
	uint64_t m = range_max(lv->n, lv->f, leaf, to, lv->cnt, enough);
	return m >= enough ? m
			   : max2(m, range_max(lv->n, lv->f, leaf, 0, from,
					       enough));
}

/*
 * The fast path's phases 3 and 4, once the leaf's change is known: entries
 * [w0, w1) of the leaf of c become seq[0..nn) (nn <= 5), or for a shape
 * (seq NULL) w[0..nn) (nn <= 2), whose count fits
 * the fanout, and the leaf's gap maximum goes from pmax (stored in its
 * parent; 0 for a root leaf) to newmax. Up the path, the stored maxima
 * that change: mx[d] is the new b[] slot of the node at depth d, for
 * depths top..L-1. Then lock the leaf and those ancestors, each from the
 * version it was read at, validate the rest of the path, write, unlock.
 * R_AGAIN: only the leaf changed meanwhile (retry on it).
 */
static inline __attribute__((always_inline)) int
fast_commit(struct cairn_btree *t, struct bt_cur *c, unsigned w0, unsigned w1,
	    const struct cairn_ext *const *seq, const struct cairn_ext *w,
	    unsigned nn, uint64_t newmax, uint64_t pmax)
{
	const unsigned L = c->leaf;
	struct bt_node *n = c->lv[L].n;
	const uint64_t v = c->lv[L].v;
	unsigned cnt = c->lv[L].cnt, newcnt = cnt - (w1 - w0) + nn;
	uint64_t mx[CAIRN_BTREE_DEPTH_MAX];
	unsigned top = L;
	for (uint64_t cur = newmax, was = pmax; top > 0 && cur != was;) {
		unsigned d = --top;
		mx[d] = cur;
		if (d == 0)
			break;
		unsigned pi = (unsigned)c->lv[d].idx;
		uint64_t pold = rd(lv_slot(&c->lv[d - 1], b));
		uint64_t pnew = cur >= pold ? cur
				: was == pold ? max2(cur, others_max(&c->lv[d], false,
							    pi, pi + 1, pold))
				: pold;
		was = pold;
		cur = pnew;
	}

	/* Lock the leaf, then the ancestors to change (bottom-up), each
	 * from the version read; validate the rest of the path, above them. */
	if (!olc_upgrade(&n->version, v))
		return path_validate(c, 1u << L) ? R_AGAIN : R_RESTART;
	for (unsigned d = L; d-- > top;) {
		if (!olc_upgrade(&c->lv[d].n->version, c->lv[d].v)) {
			for (unsigned x = d + 1; x <= L; x++)
				olc_unlock_unchanged(&c->lv[x].n->version,
						     c->lv[x].v);
			return R_RESTART;
		}
	}
	for (unsigned d = 0; d < top; d++) {
		if (!olc_validate(&c->lv[d].n->version, c->lv[d].v)) {
			for (unsigned x = top; x <= L; x++)
				olc_unlock_unchanged(&c->lv[x].n->version,
						     c->lv[x].v);
			return R_RESTART;
		}
	}

	unsigned f = open_window(t, n, c->lv[L].f, cnt, w0, w1, nn);
	if (!seq) { /* a shape: one or two new extents, in place */
		write_slot(n, f + w0, &w[0]);
		if (nn == 2)
			write_slot(n, f + w0 + 1, &w[1]);
	} else {
		for (unsigned k = 0; k < nn; k++)
			write_slot(n, f + w0 + k, seq[k]);
	}
	if (newcnt != cnt)
		wr(n->count, newcnt);
	for (unsigned d = top; d < L; d++)
		wr(lv_slot(&c->lv[d], b), mx[d]);
	for (unsigned d = top; d < L; d++) /* every write done: unlock */
		olc_unlock(&c->lv[d].n->version, c->lv[d].v);
	olc_unlock(&n->version, v);
	return R_OK;
}

/*
 * The shapes (enum cairn_bt_shape): the change the planner would make,
 * computed from the leaf directly, without a view, a planner call or the
 * edit's checks (a shape is well formed by construction: a carve stays
 * inside cur, a merge covers adjacent extents). The read phase is the fast
 * path's (one path, the leaf's fields read relaxed inside its validated
 * read, the leaf retry), and so is the commit. R_PLAN: the shape's
 * conditions do not hold, or a neighbour it needs lies in another leaf;
 * the planner decides (fast_update, then perhaps the general writer).
 */
enum { R_PLAN = 6 };

static inline __attribute__((always_inline)) int
shape_update(struct cairn_btree *t, bool carve, uint64_t key, uint64_t need,
	     uint64_t cookie, const uint64_t *owner, uint32_t nomerge,
	     struct cairn_ext *result, uint64_t guess, struct bt_cur *c, bool again)
{
	struct bt_lv *lf;
	int st;

	if (again) {
		lf = &c->lv[c->leaf];
		st = leaf_again(t, lf);
		if (st)
			return st;
		if (!carve)
			lf->idx = find_le(lf->n, lf->f, 0, lf->cnt, key);
	} else {
		st = carve ? descend_to(t, NULL, 0, true, need, BT_NO_GUESS,
					true, c)
			   : descend_to(t, NULL, key, false, 0, guess, true, c);
		if (st)
			return st;
		lf = &c->lv[c->leaf];
	}

	struct bt_node *n = lf->n;
	_Atomic uint64_t *k = n->key + lf->f, *a = n->a + lf->f,
			 *fl = n->c + lf->f;
	unsigned cnt = lf->cnt, w0, w1, nn;
	uint64_t pmax = c->pmax, newmax;
	struct cairn_ext w[2];
	int i;

	if (carve) {
		/* The first free extent long enough, taken at its start (what
		 * accept() says without a fit callback, lo 0, hi 2^64 - 1:
		 * an extent ending at 2^64 is refused). */
		uint64_t s = 0, len = 0;
		for (i = 0; i < (int)cnt; i++) { /* scan()'s rule, one pass */
			if (!(rd(fl[i]) & CAIRN_EXT_FREE) || (len = rd(a[i])) < need)
				continue;
			s = rd(k[i]);
			if (s + len != 0 && s < UINT64_MAX)
				break;
		}
		if (i >= (int)cnt) /* as fast_locate: the leaf changed, or */
			return again ? R_RESTART : R_SLOW; /* general search */
		lf->idx = i;
		uint32_t f = (uint32_t)rd(fl[i]);
		w[0] = (struct cairn_ext){ s, need, cookie,
					   f & ~CAIRN_EXT_FREE };
		w[1] = (struct cairn_ext){ s + need, len - need, 0,
					   CAIRN_EXT_FREE };
		nn = len > need ? 2 : 1;
		if (nn == 2) {
			uint64_t hi;
			if (cnt + 1 > t->fanout ||
			    (leaf_upper(c, &hi) && w[1].start >= hi))
				return R_SLOW; /* split first; routed elsewhere */
		}
		w0 = (unsigned)i;
		w1 = w0 + 1;
		/* Only cur lost free length: if it held the leaf's maximum,
		 * the rest of cur and the other slots decide. */
		newmax = len == pmax
				 ? max2(nn == 2 ? w[1].len : 0,
					others_max(lf, true, w0, w1, pmax))
				 : pmax;
	} else {
		i = lf->idx;
		if (i < 0)
			return R_PLAN; /* nothing at or before key here */
		uint64_t s = rd(k[i]), len = rd(a[i]);
		uint32_t f = (uint32_t)rd(fl[i]);
		if (s != key || len != need || (f & CAIRN_EXT_FREE) ||
		    (owner && rd(n->b[lf->f + (unsigned)i]) != *owner))
			return R_PLAN; /* the planner's error */
		/* A neighbour the merge needs outside the leaf: unless this is
		 * the first (last) leaf, it lies in another one. */
		bool pred = i > 0, succ = i + 1 < (int)cnt;
		if ((!pred && !(f & nomerge) && !path_edge(t, c, -1)) ||
		    (!succ && !path_edge(t, c, 1)))
			return R_PLAN;
		bool left = false, right = false;
		w0 = (unsigned)i;
		w[0] = (struct cairn_ext){ s, len, 0, f | CAIRN_EXT_FREE };
		if (pred && !(f & nomerge)) {
			uint32_t pf = (uint32_t)rd(fl[i - 1]);
			uint64_t ps = rd(k[i - 1]), pl = rd(a[i - 1]);
			left = (pf & CAIRN_EXT_FREE) && ps + pl == s;
			if (left) {
				w[0] = (struct cairn_ext){ ps, pl + len, 0, pf };
				w0--;
			}
		}
		if (succ) {
			uint32_t sf = (uint32_t)rd(fl[i + 1]);
			right = (sf & CAIRN_EXT_FREE) && !(sf & nomerge) &&
				rd(k[i + 1]) == s + len;
			if (right)
				w[0].len += rd(a[i + 1]);
		}
		w1 = (unsigned)i + (right ? 2 : 1);
		nn = 1;
		/* The merged extent covers every free extent it replaces:
		 * the maximum can only grow. */
		newmax = max2(pmax, w[0].len);
	}
	st = fast_commit(t, c, w0, w1, NULL, w, nn, newmax, pmax);
	if (st == R_OK)
		*result = w[0];
	return st;
}

static int fast_update(struct cairn_btree *t, const struct cairn_bt_query *q,
		       struct bt_cur *c, struct cairn_bt_view *v,
		       struct cairn_bt_edit *e, bool again)
{
	int slot[3];
	int st = fast_locate(t, q, c, v, slot, again);
	if (st)
		return st;

	edit_clear(e);
	int err = q->plan(v, q->arg, e);
	if (err)
		return path_validate(c, 0) ? plan_error(err) : R_RESTART;

	/* The window: the view's slots, adjacent in the leaf. One pass over
	 * the edit builds the new sequence (kept or replaced pred and cur,
	 * the inserts, succ), checks it as edit_ok does (ordered, disjoint,
	 * SET keeps the start, inserts between the neighbours) and takes its
	 * gap maximum m; held: a window slot held the leaf's old maximum.
	 * A SET of succ, or of cur for cur_only, may not lengthen it
	 * (set_capped): its successor may lie in this leaf, but the
	 * general writer's view does not show it either. */
	const unsigned L = c->leaf;
	unsigned cnt = c->lv[L].cnt;
	const struct cairn_ext *old[3] = { &v->pred, &v->cur, &v->succ };
	const struct cairn_ext *seq[5];
	unsigned nn = 0, w0 = cnt, w1 = 0;
	uint64_t pmax = L > 0 ? rd(lv_slot(&c->lv[L - 1], b)) : 0, m = 0;
	bool held = false;

	if (e->nins > 2)
		goto bad;
#pragma GCC unroll 3
	for (unsigned k = 0; k < 3; k++) {
		if (k == 2)
			for (unsigned j = 0; j < e->nins; j++) {
				if (!ins_ok(v, &e->ins[j], q->cur_only))
					goto bad;
				seq[nn++] = &e->ins[j];
			}
		unsigned act = e->act[k];
		if (slot[k] < 0) { /* not in view */
			if (act != CAIRN_BT_KEEP)
				goto bad;
			continue;
		}
		w0 = w0 < (unsigned)slot[k] ? w0 : (unsigned)slot[k];
		w1 = (unsigned)slot[k] + 1;
		held |= pmax && ext_gap(old[k]) == pmax;
		if (act == CAIRN_BT_KEEP) {
			seq[nn++] = old[k];
		} else if (act == CAIRN_BT_SET) {
			if (e->val[k].start != old[k]->start ||
			    e->val[k].len == 0 ||
			    (set_capped(k, q->cur_only) &&
			     e->val[k].len > old[k]->len))
				goto bad;
			seq[nn++] = &e->val[k];
		} else if (act != CAIRN_BT_DEL) {
			goto bad;
		}
	}
	for (unsigned k = 0; k < nn; k++) {
		if (!ext_fits(seq[k]) ||
		    (k > 0 && !ext_before(seq[k - 1], seq[k])))
			goto bad;
		m = max2(m, ext_gap(seq[k]));
	}
	if (slot[2] >= 0 && e->act[2] == CAIRN_BT_DEL && nn > 0 &&
	    !within_succ(&v->succ, seq[nn - 1]))
		goto bad; /* past succ's end: out of view */
	if (w0 > w1) /* empty view: only the first leaf, before slot 0 */
		w0 = w1 = 0;
	unsigned newcnt = cnt - (w1 - w0) + nn;
	if (newcnt > t->fanout || (newcnt == 0 && L > 0))
		return R_SLOW; /* split first, or unlink the leaf */
	if (e->nins) {
		uint64_t hi;
		if (leaf_upper(c, &hi))
			for (unsigned j = 0; j < e->nins; j++)
				if (e->ins[j].start >= hi)
					return R_SLOW; /* routed elsewhere */
	}

	/* The leaf's new gap maximum (a window slot held the old one and
	 * nothing new reaches it: the other slots decide). */
	uint64_t newmax = held && m < pmax
				  ? max2(m, others_max(&c->lv[L], true, w0, w1, pmax))
				  : max2(m, pmax);
	return fast_commit(t, c, w0, w1, seq, NULL, nn, newmax, pmax);
bad: /* a malformed edit: rejected like the planner's own errors */
	return path_validate(c, 0) ? CAIRN_EINVAL : R_RESTART;
}

/* The general writer, out of line: its bookkeeping (five cursors, the read
 * set, the change plan) stays off the fast path's stack frame. */
static __attribute__((noinline)) int slow_update(struct cairn_btree *t,
						 const struct cairn_bt_query *q)
{
	struct bt_spares sp = { .cnt = 0 };
	struct bt_upd u;
	struct bt_op op;
	int r;

	for (;;) {
		op.t = t;
		op.nrs = 0;
		r = try_update(&op, q, &u, &sp);
		if (r == R_OVERFLOW)
			r = rs_validate(&op, NULL) ? CAIRN_ENOSPC : R_RESTART;
		if (r != R_RESTART)
			break;
		cairn_port_pause();
	}
	while (sp.cnt)
		cairn__bt_node_release_unused(t, sp.n[--sp.cnt]);
	return r;
}

/* The fingers' slot of the calling CPU (any slot would be correct: a
 * guess is checked before it is used). CPUs k and k + CAIRN_BTREE_FINGERS
 * share one, and may overwrite or tear each other's record: a wasted
 * guess, no more. */
static inline struct cairn_btree_finger *finger_of(struct cairn_btree *t)
{
	return &t->finger[cairn_port_cpu() & (CAIRN_BTREE_FINGERS - 1)];
}

/* The shapes' loops and the planner's, each out of line with the cursor
 * and the view in its own frame: the dispatchers stay small. A carve
 * leaves the path of the extent it made in the CPU's finger (entry w0 of
 * the leaf: the window is written from there); a release whose key is
 * the finger's starts its descent from that guess. */
static __attribute__((noinline)) int carve_run(struct cairn_btree *t,
					       uint64_t need, uint64_t cookie,
					       struct cairn_ext *result)
{
	struct bt_cur c;
	bool again = false;
	int r;

	while ((r = shape_update(t, true, 0, need, cookie, NULL, 0, result,
				 BT_NO_GUESS, &c, again)) == R_RESTART ||
	       r == R_AGAIN) {
		again = r == R_AGAIN;
		if (!again)
			cairn_port_pause();
	}
	if (r == R_OK) { /* byte d: the entry at depth d; 0xff above */
		uint64_t path = c.path;
		if (c.leaf < 8) /* the leaf's: where the window put the extent */
			path ^= (uint64_t)((unsigned)c.lv[c.leaf].idx ^ 0xffu)
				<< (8 * c.leaf);
		struct cairn_btree_finger *fs = finger_of(t);
		wr(fs->key, result->start);
		wr(fs->path, path);
	}
	return r;
}

static __attribute__((noinline)) int release_run(struct cairn_btree *t,
						 uint64_t key, uint64_t need,
						 const uint64_t *owner, uint32_t nomerge,
						 struct cairn_ext *result)
{
	struct bt_cur c;
	bool again = false;
	int r;
	struct cairn_btree_finger *fs = finger_of(t);
	uint64_t guess = rd(fs->key) == key ? rd(fs->path) : BT_NO_GUESS;

	while ((r = shape_update(t, false, key, need, 0, owner, nomerge, result,
				 guess, &c, again)) == R_RESTART ||
	       r == R_AGAIN) {
		again = r == R_AGAIN;
		if (!again)
			cairn_port_pause();
	}
	return r;
}

static __attribute__((noinline)) int plan_run(struct cairn_btree *t,
					      const struct cairn_bt_query *q)
{
	struct bt_cur c;
	struct cairn_bt_view v;
	struct cairn_bt_edit e;
	bool again = false;
	int r;

	while ((r = fast_update(t, q, &c, &v, &e, again)) == R_RESTART ||
	       r == R_AGAIN) {
		again = r == R_AGAIN;
		if (!again)
			cairn_port_pause();
	}
	return r;
}

int cairn_btree_update(struct cairn_btree *t, const struct cairn_bt_query *q)
{
	int r = R_PLAN;
	struct cairn_ext res, *out = q->result ? q->result : &res;
	/* A query the tree cannot read: refused before anything is read
	 * (every route may end at the planner, so it is always needed). */
	if ((unsigned)q->find > CAIRN_BT_FIT_BEST ||
	    (unsigned)q->shape > CAIRN_BT_GENERAL || !q->plan)
		return CAIRN_EINVAL;
	if (q->shape == CAIRN_BT_CARVE && q->find == CAIRN_BT_FIT_LOW &&
	    !q->fit && q->need && q->lo == 0 && q->hi == UINT64_MAX)
		r = carve_run(t, q->need, q->cookie, out);
	else if (q->shape == CAIRN_BT_RELEASE && q->find == CAIRN_BT_AT &&
		 !q->cur_only) /* else the planner sees no neighbours */
		r = release_run(t, q->key, q->need, NULL, q->nomerge, out);
	else if (q->shape == CAIRN_BT_GENERAL)
		r = R_SLOW;
	if (r == R_PLAN)
		r = plan_run(t, q);
	if (r == R_SLOW)
		r = slow_update(t, q);
	if (r == 0)
		collapse_check(t);
	return r;
}

/* The shapes never unlink a node (a carve only inserts, a release merges
 * inside its leaf and never empties it), so they never make a root with a
 * single child; but a collapse lost to a conflict is left to a later
 * update, and plain allocs and frees may be the only later ones: they
 * check too, as every update does. */
int cairn_btree_carve(struct cairn_btree *t, uint64_t need, uint64_t cookie,
		      struct cairn_ext *result)
{
	if (need == 0 || carve_run(t, need, cookie, result) != R_OK)
		return CAIRN_BT_UNSHAPED;
	collapse_check(t);
	return 0;
}

int cairn_btree_release(struct cairn_btree *t, uint64_t key, uint64_t need,
			uint32_t nomerge, struct cairn_ext *result)
{
	if (release_run(t, key, need, NULL, nomerge, result) != R_OK)
		return CAIRN_BT_UNSHAPED;
	collapse_check(t);
	return 0;
}

int cairn_btree_release_as(struct cairn_btree *t, uint64_t key, uint64_t need,
			   uint64_t cookie, uint32_t nomerge, struct cairn_ext *result)
{
	if (release_run(t, key, need, &cookie, nomerge, result) != R_OK)
		return CAIRN_BT_UNSHAPED;
	collapse_check(t);
	return 0;
}


/* ---- setup ---- */

int cairn_btree_init(struct cairn_btree *t, struct cairn_frames *f,
		     unsigned fanout)
{
	if (fanout == 0)
		fanout = CAIRN_BTREE_FANOUT_MAX;
	if (!t || !f || fanout < CAIRN_BTREE_FANOUT_MIN ||
	    fanout > CAIRN_BTREE_FANOUT_MAX)
		return CAIRN_EINVAL;
	t->root = NULL; /* what destroy finds should the root's frame fail */
	t->free_head = 0;
	t->frames = f;
	t->fanout = fanout;
	atomic_store_explicit(&t->nodes, 0, memory_order_relaxed);
	for (unsigned i = 0; i < CAIRN_BTREE_FINGERS; i++) {
		atomic_store_explicit(&t->finger[i].key, 0, memory_order_relaxed);
		atomic_store_explicit(&t->finger[i].path, BT_NO_GUESS,
				      memory_order_relaxed);
	}
	struct bt_node *root = cairn__bt_node_alloc(t);
	if (!root)
		return CAIRN_ENOMEM;
	cairn__bt_node_prepare(root, 0);
	cairn__bt_node_publish(root);
	t->root = root;
	return 0;
}
