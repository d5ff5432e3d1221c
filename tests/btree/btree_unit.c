/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the extent tree's own interface: init and destroy, lookup
 * in an empty and a filled tree, the edit checks (a malformed edit is
 * rejected with CAIRN_EINVAL and changes nothing), planner errors, fit
 * searches in both directions, walk, frame accounting, and the window of
 * slots a node's entries occupy (moved either way, recentred, full), and
 * the depth limit (a refused root split changes nothing).
 */
#include <string.h>
#include <unistd.h>

#include "env.h"

struct ins_req {
	struct cairn_ext e;
	int err; /* planner result to force */
	unsigned char act[3];
	struct cairn_ext val[3];
	unsigned nins;
	struct cairn_ext ins[2];
};

/* A planner that returns what the test prepared. */
static int plan_fixed(const struct cairn_bt_view *v, void *arg,
		      struct cairn_bt_edit *e)
{
	const struct ins_req *r = arg;
	(void)v;
	if (r->err)
		return r->err;
	for (unsigned k = 0; k < 3; k++) {
		e->act[k] = r->act[k];
		e->val[k] = r->val[k];
	}
	e->nins = r->nins;
	e->ins[0] = r->ins[0];
	e->ins[1] = r->ins[1];
	return 0;
}

static int at(struct cairn_btree *t, uint64_t key, struct ins_req *r)
{
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = key,
				    .plan = plan_fixed, .arg = r };
	return cairn_btree_update(t, &q);
}

static int at_shape(struct cairn_btree *t, uint64_t key, struct ins_req *r,
		    enum cairn_bt_shape shape)
{
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = key,
				    .plan = plan_fixed, .arg = r, .shape = shape };
	return cairn_btree_update(t, &q);
}

static int insert(struct cairn_btree *t, uint64_t s, uint64_t len, bool free_)
{
	struct ins_req r = { .nins = 1 };
	r.ins[0] = (struct cairn_ext){ s, len, s * 3, free_ ? CAIRN_EXT_FREE : 0 };
	return at(t, s, &r);
}

static int count(const struct cairn_ext *e, void *arg)
{
	uint64_t *n = arg;
	CHECK(e->start >= n[1]); /* in order */
	n[1] = e->start + e->len;
	n[0]++;
	return 0;
}

static uint64_t extents(struct cairn_btree *t)
{
	uint64_t n[2] = { 0, 0 };
	CHECK_EQ(cairn_btree_walk(t, count, n), 0);
	return n[0];
}

/* The window test's reference: which of the keys 10 * k are in the tree. */
#define WKEYS (4 * CAIRN_BTREE_FANOUT_MAX)
static bool wfilled[WKEYS];

static int wcheck(const struct cairn_ext *e, void *arg)
{
	uint64_t *n = arg, k = e->start / 10;
	CHECK(k < WKEYS && e->start % 10 == 0 && wfilled[k] && e->len == 5);
	CHECK(n[0] == 0 || e->start > n[1]); /* in order */
	n[1] = e->start;
	n[0]++;
	return 0;
}

/* Insert (or delete) key 10 * k in a tree that stays one leaf, then check
 * the tree against the reference. */
static void wstep(struct cairn_btree *t, uint64_t k, bool add)
{
	struct cairn_btree_stats st;
	struct ins_req r = { .nins = 1 };
	uint64_t n[2] = { 0, 0 }, want = 0;
	if (add) {
		r.ins[0] = (struct cairn_ext){ 10 * k, 5, k, 0 };
	} else {
		r.nins = 0;
		r.act[1] = CAIRN_BT_DEL;
	}
	CHECK_EQ(at(t, 10 * k, &r), 0);
	wfilled[k] = add;
	CHECK_EQ(cairn_btree_validate(t, &st), 0);
	CHECK_EQ(st.depth, 1);
	CHECK_EQ(cairn_btree_walk(t, wcheck, n), 0);
	for (unsigned i = 0; i < WKEYS; i++)
		want += wfilled[i];
	CHECK_EQ(n[0], want);
}

static bool found_ext;
static struct cairn_ext found;

static int plan_note(const struct cairn_bt_view *v, void *arg,
		     struct cairn_bt_edit *e)
{
	(void)arg;
	(void)e;
	found_ext = v->has_cur;
	found = v->cur;
	return CAIRN_EBUSY; /* look only */
}

static uint64_t fit(struct cairn_btree *t, enum cairn_bt_find how,
		    uint64_t need, uint64_t lo, uint64_t hi)
{
	struct cairn_bt_query q = { .find = how, .lo = lo, .hi = hi,
				    .need = need, .plan = plan_note };
	found_ext = false;
	int r = cairn_btree_update(t, &q);
	if (r == CAIRN_ENOMEM)
		return UINT64_MAX;
	CHECK_EQ(r, CAIRN_EBUSY);
	return found.start;
}

/* Edits that the checks must reject, around the extent 5000+10 (the next
 * extents start at 6000 and 7000, none lies past 2^64 - 5). On a full-fanout tree
 * these take the one-leaf fast path, whose checks are its own. */
static void malformed_edits(struct cairn_btree *t)
{
	struct cairn_ext e;
	struct ins_req r = { .nins = 1 };
	r.ins[0] = (struct cairn_ext){ 5005, 10, 0, 0 };   /* overlaps 5000+10 */
	CHECK_EQ(at(t, 5005, &r), CAIRN_EINVAL);
	r.ins[0] = (struct cairn_ext){ 5995, 10, 0, 0 };   /* runs into 6000 */
	CHECK_EQ(at(t, 5995, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { 0, CAIRN_BT_SET, 0 } };
	r.val[1] = (struct cairn_ext){ 5001, 5, 0, 0 };    /* start moved */
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	r.val[1] = (struct cairn_ext){ 5000, 1001, 0, 0 }; /* grows into 6000 */
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { 0, 3, 0 } };         /* not an action */
	r.val[1] = (struct cairn_ext){ 5000, 5, 0, 0 };
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { 0, CAIRN_BT_SET, 0 } };
	r.val[1] = (struct cairn_ext){ 5000, 0, 0, 0 };    /* emptied */
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .nins = 3 };                 /* too many */
	r.ins[0] = (struct cairn_ext){ 5500, 10, 0, 0 };
	r.ins[1] = (struct cairn_ext){ 5600, 10, 0, 0 };
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .nins = 1 };                 /* before cur */
	r.ins[0] = (struct cairn_ext){ 4995, 2, 0, 0 };
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { 0, CAIRN_BT_DEL, 0 }, .nins = 1 };
	r.ins[0] = (struct cairn_ext){ 4500, 10, 0, 0 };   /* placed before cur: */
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);           /* ordered, disjoint */
	r = (struct ins_req){ .nins = 2 };                 /* out of order */
	r.ins[0] = (struct cairn_ext){ 5600, 10, 0, 0 };
	r.ins[1] = (struct cairn_ext){ 5500, 10, 0, 0 };
	CHECK_EQ(at(t, 5500, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .nins = 1 };                 /* past 2^64 */
	r.ins[0] = (struct cairn_ext){ UINT64_MAX - 5, 10, 0, 0 };
	CHECK_EQ(at(t, UINT64_MAX - 5, &r), CAIRN_EINVAL);
	/* A SET may not lengthen succ: its successor (7000) is not in view */
	r = (struct ins_req){ .act = { 0, 0, CAIRN_BT_SET } };
	r.val[2] = (struct cairn_ext){ 6000, 1500, 0, 0 };
	CHECK_EQ(at(t, 5000, &r), CAIRN_EINVAL);
	CHECK_EQ(cairn_btree_lookup(t, 7005, &e), 0);
	CHECK(e.start == 7000 && e.len == 10);
	CHECK_EQ(cairn_btree_validate(t, NULL), 0);
	{ /* cur_only: an insert must lie inside cur */
		r = (struct ins_req){ .nins = 1 };
		r.ins[0] = (struct cairn_ext){ 5500, 10, 0, 0 }; /* past cur */
		struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = 5000,
					    .plan = plan_fixed, .arg = &r,
					    .cur_only = true };
		CHECK_EQ(cairn_btree_update(t, &q), CAIRN_EINVAL);
		/* ... and a SET may not lengthen cur either: what follows
		 * it is not in view (here 6000, which it would overlap) */
		r = (struct ins_req){ .act = { 0, CAIRN_BT_SET, 0 } };
		r.val[1] = (struct cairn_ext){ 5000, 1500, 0, 0 };
		CHECK_EQ(cairn_btree_update(t, &q), CAIRN_EINVAL);
	}
	/* With succ (6000, 16 or 10 long) deleted, nothing in view bounds
	 * the sequence above: what follows succ is not in view either
	 * (7000), so the last extent may not reach past succ's end, whether
	 * an insert or a replacement of cur or pred; on the fast path and
	 * in the general writer. (Up to succ's end is a merge: the arenas'
	 * free.) */
	CHECK_EQ(cairn_btree_lookup(t, 6005, &e), 0);
	uint64_t slen = e.len;
	for (unsigned g = 0; g < 2; g++) {
		enum cairn_bt_shape sh = g ? CAIRN_BT_GENERAL : CAIRN_BT_PLANNED;
		r = (struct ins_req){ .act = { 0, 0, CAIRN_BT_DEL }, .nins = 1 };
		r.ins[0] = (struct cairn_ext){ 5500, 1505, 0, 0 }; /* to 7005 */
		CHECK_EQ(at_shape(t, 5000, &r, sh), CAIRN_EINVAL);
		r = (struct ins_req){ .act = { 0, CAIRN_BT_SET, CAIRN_BT_DEL } };
		r.val[1] = (struct cairn_ext){ 5000, 2005, 0, 0 };
		CHECK_EQ(at_shape(t, 5000, &r, sh), CAIRN_EINVAL);
		/* key 5500: in the gap, pred 5000+10 */
		r = (struct ins_req){ .act = { CAIRN_BT_SET, 0, CAIRN_BT_DEL } };
		r.val[0] = (struct cairn_ext){ 5000, 2005, 0, 0 };
		CHECK_EQ(at_shape(t, 5500, &r, sh), CAIRN_EINVAL);
		r = (struct ins_req){ .act = { 0, 0, CAIRN_BT_DEL }, .nins = 1 };
		r.ins[0] = (struct cairn_ext){ 5500, 1600, 0, 0 };
		CHECK_EQ(at_shape(t, 5500, &r, sh), CAIRN_EINVAL);
	}
	CHECK_EQ(cairn_btree_lookup(t, 6005, &e), 0);
	CHECK(e.start == 6000 && e.len == slen);
	CHECK_EQ(cairn_btree_lookup(t, 7005, &e), 0);
	CHECK(e.start == 7000 && e.len == 10);
	CHECK_EQ(cairn_btree_validate(t, NULL), 0);
}

/* A planner's error is negative. Any other non-zero return is malformed,
 * refused with CAIRN_EINVAL like a malformed edit, with nothing changed,
 * on the fast path and in the general writer (CAIRN_BT_GENERAL). The
 * tree's own codes are small positive numbers: none may leak out or be
 * taken for a restart (which looped for ever: the alarm ends the test). */
static void planner_returns(struct cairn_btree *t)
{
	static const int bad[] = { 2, 3, 4, 6, 7, 1000, 5, 1 };
	struct cairn_btree_stats st0, st;
	struct cairn_ext e;
	CHECK_EQ(cairn_btree_validate(t, &st0), 0);
	alarm(30);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (unsigned g = 0; g < 2; g++) {
			struct ins_req r = { .err = bad[i] };
			struct cairn_bt_query q = {
				.find = CAIRN_BT_AT, .key = 5000, .plan = plan_fixed,
				.arg = &r, .shape = g ? CAIRN_BT_GENERAL : CAIRN_BT_PLANNED
			};
			CHECK_EQ(cairn_btree_update(t, &q), CAIRN_EINVAL);
		}
	}
	alarm(0);
	CHECK_EQ(cairn_btree_validate(t, &st), 0);
	CHECK_EQ(st.extents, st0.extents);
	CHECK_EQ(cairn_btree_lookup(t, 5005, &e), 0);
	CHECK(e.start == 5000 && e.len == 10);
}

/* A query the tree cannot read: a find or a shape outside its enum, no
 * planner. Each is CAIRN_EINVAL with nothing changed (an unknown find was
 * taken for a lowest fit and an unknown shape for a planned update, and
 * the edit applied; a missing planner was called). */
static void bad_queries(struct cairn_btree *t)
{
	struct cairn_btree_stats st0, st;
	struct cairn_ext e;
	CHECK_EQ(cairn_btree_validate(t, &st0), 0);
	struct ins_req r = { .act = { 0, CAIRN_BT_DEL, 0 } };
	struct cairn_bt_query q = { .find = (enum cairn_bt_find)4, .key = 5000,
				    .hi = UINT64_MAX, .need = 1,
				    .plan = plan_fixed, .arg = &r };
	CHECK_EQ(cairn_btree_update(t, &q), CAIRN_EINVAL);
	q.find = CAIRN_BT_AT;
	q.shape = (enum cairn_bt_shape)4;
	CHECK_EQ(cairn_btree_update(t, &q), CAIRN_EINVAL);
	q.shape = CAIRN_BT_PLANNED;
	q.plan = NULL;
	CHECK_EQ(cairn_btree_update(t, &q), CAIRN_EINVAL);
	CHECK_EQ(cairn_btree_validate(t, &st), 0);
	CHECK_EQ(st.extents, st0.extents);
	CHECK_EQ(cairn_btree_lookup(t, 0, &e), 0);
	CHECK(e.start == 0);
	CHECK_EQ(cairn_btree_lookup(t, 5005, &e), 0);
	CHECK(e.start == 5000 && e.len == 10);
}

/* ---- shapes: edits the tree applies in the planner's place ---- */

#define SH_NOMERGE 0x100u
#define SH_X 0x200u /* flags a shape must carry over, not stop on */
#define SH_Y 0x400u
/* What *result holds until the tree or the planner stores a result. */
#define SH_UNTOUCHED \
	((struct cairn_ext){ 0xdeadbeef, 0xdead, 0xbeef, 0x8000u })

static bool sh_untouched(const struct cairn_ext *e)
{
	return e->start == 0xdeadbeef && e->len == 0xdead &&
	       e->cookie == 0xbeef && e->flags == 0x8000u;
}

struct shape_req {
	bool carve;
	uint64_t key, need, cookie;
	unsigned calls;     /* planner runs */
	struct cairn_ext res;
};

/* What the shapes stand for: the arena's carve at the head of the first
 * fit, and its free (SH_NOMERGE as the span flag). */
static int plan_shape(const struct cairn_bt_view *v, void *arg,
		      struct cairn_bt_edit *e)
{
	struct shape_req *r = arg;
	const struct cairn_ext *c = &v->cur;
	r->calls++;
	if (r->carve) {
		e->act[1] = CAIRN_BT_SET;
		e->val[1] = (struct cairn_ext){ c->start, r->need, r->cookie,
						c->flags & ~CAIRN_EXT_FREE };
		if (c->len > r->need) {
			e->ins[0] = (struct cairn_ext){ c->start + r->need,
							c->len - r->need, 0,
							CAIRN_EXT_FREE };
			e->nins = 1;
		}
		r->res = e->val[1];
		return 0;
	}
	if (!v->has_cur)
		return CAIRN_ERANGE;
	if ((c->flags & CAIRN_EXT_FREE) || c->start != r->key)
		return CAIRN_EFREE;
	if (c->len != r->need)
		return CAIRN_EORDER;
	bool left = v->has_pred && (v->pred.flags & CAIRN_EXT_FREE) &&
		    !(c->flags & SH_NOMERGE) &&
		    v->pred.start + v->pred.len == c->start;
	bool right = v->has_succ && (v->succ.flags & CAIRN_EXT_FREE) &&
		     !(v->succ.flags & SH_NOMERGE) &&
		     v->succ.start == c->start + c->len;
	struct cairn_ext m = left ? v->pred
				  : (struct cairn_ext){ c->start, 0, 0,
							c->flags | CAIRN_EXT_FREE };
	m.len += c->len + (right ? v->succ.len : 0);
	m.cookie = 0;
	if (left) {
		e->act[0] = CAIRN_BT_SET;
		e->act[1] = CAIRN_BT_DEL;
	} else {
		e->act[1] = CAIRN_BT_SET;
	}
	if (right)
		e->act[2] = CAIRN_BT_DEL;
	e->val[left ? 0 : 1] = m;
	r->res = m;
	return 0;
}

static bool any_fit(const struct cairn_ext *e, void *arg, uint64_t *where)
{
	(void)arg;
	*where = e->start;
	return true;
}

/* Carve need at the first fit: its start, or UINT64_MAX. */
static uint64_t sh_carve(struct cairn_btree *t, uint64_t need, uint64_t cookie,
			 bool with_fit, unsigned *calls)
{
	struct shape_req r = { .carve = true, .need = need, .cookie = cookie,
			       .res = SH_UNTOUCHED };
	struct cairn_bt_query q = { .find = CAIRN_BT_FIT_LOW, .lo = 0,
				    .hi = UINT64_MAX, .need = need,
				    .fit = with_fit ? any_fit : NULL,
				    .plan = plan_shape, .arg = &r,
				    .cur_only = true, .shape = CAIRN_BT_CARVE,
				    .cookie = cookie, .result = &r.res };
	int err = cairn_btree_update(t, &q);
	*calls = r.calls;
	if (err) {
		CHECK(sh_untouched(&r.res)); /* no result on an error */
		return UINT64_MAX;
	}
	CHECK(r.res.len == need && r.res.cookie == cookie &&
	      !(r.res.flags & CAIRN_EXT_FREE));
	return r.res.start;
}

static int sh_release_q(struct cairn_btree *t, uint64_t key, uint64_t len,
			bool cur_only, struct cairn_ext *merged,
			unsigned *calls)
{
	struct shape_req r = { .key = key, .need = len, .res = SH_UNTOUCHED };
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = key,
				    .need = len, .plan = plan_shape, .arg = &r,
				    .cur_only = cur_only,
				    .shape = CAIRN_BT_RELEASE,
				    .nomerge = SH_NOMERGE, .result = &r.res };
	int err = cairn_btree_update(t, &q);
	*calls = r.calls;
	*merged = r.res;
	if (err)
		CHECK(sh_untouched(&r.res)); /* no result on an error */
	return err;
}

static int sh_release(struct cairn_btree *t, uint64_t key, uint64_t len,
		      struct cairn_ext *merged, unsigned *calls)
{
	return sh_release_q(t, key, len, false, merged, calls);
}

static void shape_valid(struct cairn_btree *t, uint64_t want_extents)
{
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(t, &st), 0);
	CHECK_EQ(st.extents, want_extents);
}

/*
 * The shapes on trees of fanout 4 (a leaf boundary every few extents) and
 * 126 (one leaf): results, the planner's fallback where a neighbour lies
 * in another leaf or the shape's conditions fail, errors that change
 * nothing, span-like flags that stop a merge, and gap maxima that must
 * drop and grow up the path (the validator recomputes them after every
 * step).
 */
static void shapes(unsigned fanout)
{
	struct cairn_btree t;
	struct cairn_ext e, m;
	unsigned calls, planned = 0, shaped = 0;
	const uint64_t N = 40;

	CHECK_EQ(cairn_btree_init(&t, env_frames, fanout), 0);
	/* [10i, 10i + 10): odd i free, even i allocated (cookie i + 1); the
	 * free ones grow with i, so each carve below of the longest takes
	 * it whole and the maxima on its path drop. */
	for (uint64_t i = 0; i < N; i++) {
		struct ins_req r = { .nins = 1 };
		r.ins[0] = (struct cairn_ext){ 10 * i, 10, i % 2 ? 0 : i + 1,
					       i % 2 ? CAIRN_EXT_FREE : 0 };
		CHECK_EQ(at(&t, 10 * i, &r), 0);
	}
	shape_valid(&t, N);

	/* errors: the planner's, nothing changed */
	CHECK_EQ(sh_release(&t, 20, 5, &m, &calls), CAIRN_EORDER);
	CHECK_EQ(calls, 1);
	CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), CAIRN_EFREE);
	CHECK_EQ(sh_release(&t, 25, 10, &m, &calls), CAIRN_EFREE);
	CHECK_EQ(sh_release(&t, 10 * N, 10, &m, &calls), CAIRN_ERANGE);
	shape_valid(&t, N);

	/* a fit callback: the planner decides */
	CHECK_EQ(sh_carve(&t, 10, 99, true, &calls), 10);
	CHECK_EQ(calls, 1);
	CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), 0);
	CHECK(m.start == 10 && m.len == 10 && m.cookie == 0 &&
	      m.flags == CAIRN_EXT_FREE);
	shape_valid(&t, N);

	/* carve 7 out of the first free extent (10+10): the head, the rest
	 * inserted after it; then 3, which takes the rest exactly */
	CHECK_EQ(sh_carve(&t, 7, 5, false, &calls), 10);
	planned += calls;
	shaped += !calls;
	shape_valid(&t, N + 1);
	CHECK_EQ(cairn_btree_lookup(&t, 17, &e), 0);
	CHECK(e.start == 17 && e.len == 3 && e.flags == CAIRN_EXT_FREE);
	CHECK_EQ(sh_carve(&t, 3, 6, false, &calls), 17);
	shape_valid(&t, N + 1);
	CHECK_EQ(cairn_btree_lookup(&t, 17, &e), 0);
	CHECK(e.start == 17 && e.len == 3 && e.cookie == 6 && e.flags == 0);
	/* free them again: 17+3 alone (10+7 and 20+10 are allocated), then
	 * 10+7, which merges with it */
	CHECK_EQ(sh_release(&t, 17, 3, &m, &calls), 0);
	CHECK(m.start == 17 && m.len == 3);
	CHECK_EQ(sh_release(&t, 10, 7, &m, &calls), 0);
	CHECK(m.start == 10 && m.len == 10 && m.flags == CAIRN_EXT_FREE);
	shape_valid(&t, N);

	/* flags that stop a merge: on cur (no left merge), on succ (no right
	 * merge) */
	{
		struct ins_req r = { .act = { 0, CAIRN_BT_SET, 0 } };
		r.val[1] = (struct cairn_ext){ 40, 10, 41, SH_NOMERGE };
		CHECK_EQ(at(&t, 40, &r), 0);
		r.val[1] = (struct cairn_ext){ 50, 10, 0,
					       CAIRN_EXT_FREE | SH_NOMERGE };
		CHECK_EQ(at(&t, 50, &r), 0);
		CHECK_EQ(sh_release(&t, 40, 10, &m, &calls), 0);
		CHECK(m.start == 40 && m.len == 10 &&
		      m.flags == (CAIRN_EXT_FREE | SH_NOMERGE));
		shape_valid(&t, N);
		/* back to plain: allocate 40 again, clear 50's flag */
		CHECK_EQ(sh_carve(&t, 10, 41, true, &calls), 10);
		CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), 0);
		r.val[1] = (struct cairn_ext){ 40, 10, 41, 0 };
		CHECK_EQ(at(&t, 40, &r), 0);
		r.val[1] = (struct cairn_ext){ 50, 10, 0, CAIRN_EXT_FREE };
		CHECK_EQ(at(&t, 50, &r), 0);
		shape_valid(&t, N);
	}

	/* carve every free extent whole at first fit (all are 10 long, the
	 * lowest goes first): the maxima of a leaf and its ancestors drop
	 * when its last free extent goes; then free them, highest first */
	for (uint64_t i = 1; i < N; i += 2) {
		CHECK_EQ(sh_carve(&t, 10, 1000 + i, false, &calls), 10 * i);
		planned += calls;
		shaped += !calls;
		shape_valid(&t, N);
	}
	CHECK_EQ(sh_carve(&t, 1, 1, false, &calls), UINT64_MAX);
	for (uint64_t i = N - 1; i >= 1; i -= 2) {
		CHECK_EQ(sh_release(&t, 10 * i, 10, &m, &calls), 0);
		CHECK(m.start == 10 * i && m.len == 10);
		planned += calls;
		shaped += !calls;
		shape_valid(&t, N);
		if (i == 1)
			break;
	}

	/* release every allocated extent, lowest first: each merges with
	 * the free run before it and the free extent after it, so the
	 * maxima grow up the path; at fanout 4 some neighbours lie in
	 * another leaf (the planner runs), most do not */
	uint64_t ext = N;
	for (uint64_t i = 0; i < N; i += 2) {
		CHECK_EQ(sh_release(&t, 10 * i, 10, &m, &calls), 0);
		CHECK(m.start == 0 && m.len == 10 * i + 20 && m.cookie == 0 &&
		      m.flags == CAIRN_EXT_FREE);
		planned += calls;
		shaped += !calls;
		ext -= i ? 2 : 1;
		shape_valid(&t, ext);
		CHECK_EQ(cairn_btree_lookup(&t, 10 * i + 15, &e), 0);
		CHECK(e.start == 0 && e.len == 10 * i + 20);
	}
	CHECK_EQ(ext, 1);

	/* one free extent: carve it into 37 pieces of 11 at first fit, the
	 * last one taking the rest exactly; splits on the way (fanout 4) */
	CHECK_EQ(10 * N - 36 * 11, 4);
	for (uint64_t k = 0; k < 36; k++) {
		CHECK_EQ(sh_carve(&t, 11, k + 1, false, &calls), 11 * k);
		planned += calls;
		shaped += !calls;
		shape_valid(&t, k + 2);
	}
	CHECK_EQ(sh_carve(&t, 4, 99, false, &calls), 396);
	shape_valid(&t, 37);
	CHECK_EQ(sh_carve(&t, 1, 1, false, &calls), UINT64_MAX);
	/* and free them all, highest first (merges to the right) */
	for (uint64_t k = 37; k-- > 0;) {
		uint64_t len = k == 36 ? 4 : 11;
		CHECK_EQ(sh_release(&t, 11 * k, len, &m, &calls), 0);
		CHECK(m.start == 11 * k && m.len == 10 * N - 11 * k);
		planned += calls;
		shaped += !calls;
		shape_valid(&t, k + 1);
	}
	/* one leaf: never a neighbour elsewhere */
	CHECK(shaped > 0);
	CHECK(fanout == CAIRN_BTREE_FANOUT_MAX ? planned == 0 : planned > 0);
	cairn_btree_destroy(&t);

	/* free neighbours across a gap do not merge: [20i, 20i + 10),
	 * allocated for odd i, free for even i, gaps of 10 between */
	CHECK_EQ(cairn_btree_init(&t, env_frames, fanout), 0);
	for (uint64_t i = 0; i < 9; i++) {
		struct ins_req r = { .nins = 1 };
		r.ins[0] = (struct cairn_ext){ 20 * i, 10, i % 2 ? i : 0,
					       i % 2 ? 0 : CAIRN_EXT_FREE };
		CHECK_EQ(at(&t, 20 * i, &r), 0);
	}
	for (uint64_t i = 1; i < 9; i += 2) {
		CHECK_EQ(sh_release(&t, 20 * i, 10, &m, &calls), 0);
		CHECK(m.start == 20 * i && m.len == 10 &&
		      m.flags == CAIRN_EXT_FREE);
		shape_valid(&t, 9);
	}
	cairn_btree_destroy(&t);
}

/* A fresh tree of the given fanout holding exts[0..n), in order. */
static void sh_tree(struct cairn_btree *t, unsigned fanout,
		    const struct cairn_ext *exts, unsigned n)
{
	CHECK_EQ(cairn_btree_init(t, env_frames, fanout), 0);
	for (unsigned i = 0; i < n; i++) {
		struct ins_req r = { .nins = 1 };
		r.ins[0] = exts[i];
		CHECK_EQ(at(t, exts[i].start, &r), 0);
	}
	shape_valid(t, n);
}

static void sh_expect(struct cairn_btree *t, uint64_t key, struct cairn_ext x)
{
	struct cairn_ext e;
	CHECK_EQ(cairn_btree_lookup(t, key, &e), 0);
	CHECK(e.start == x.start && e.len == x.len && e.cookie == x.cookie &&
	      e.flags == x.flags);
}

/*
 * The shapes' single conditions, each alone on a small tree (at fanout
 * 126 one leaf, so the shape itself decides): the flags each one keeps,
 * each nomerge flag alone, a release with cur_only (the planner sees no
 * neighbours, so nothing merges), an extent ending at 2^64 (never
 * carved), and a carve whose rest would pass the leaf's upper separator.
 */
static void shape_cases(unsigned fanout)
{
	struct cairn_btree t;
	struct cairn_ext m;
	unsigned calls;
	const uint32_t F = CAIRN_EXT_FREE;

	/* a carve keeps cur's flags without FREE; the rest is plain free */
	{
		const struct cairn_ext x[] = { { 0, 10, 7, 0 },
					       { 10, 10, 0, F | SH_X } };
		sh_tree(&t, fanout, x, 2);
		CHECK_EQ(sh_carve(&t, 4, 9, false, &calls), 10);
		sh_expect(&t, 10, (struct cairn_ext){ 10, 4, 9, SH_X });
		sh_expect(&t, 14, (struct cairn_ext){ 14, 6, 0, F });
		shape_valid(&t, 3);
		cairn_btree_destroy(&t);
	}
	/* a left merge keeps pred's start and flags (cur's and succ's go);
	 * without one, cur keeps its flags and gains FREE */
	{
		const struct cairn_ext x[] = { { 0, 10, 0, F | SH_X },
					       { 10, 10, 3, SH_Y },
					       { 20, 10, 0, F | SH_Y },
					       { 30, 10, 4, SH_Y } };
		sh_tree(&t, fanout, x, 4);
		CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), 0);
		CHECK(m.start == 0 && m.len == 30 && m.cookie == 0 &&
		      m.flags == (F | SH_X));
		sh_expect(&t, 0, m);
		shape_valid(&t, 2);
		CHECK_EQ(sh_release(&t, 30, 10, &m, &calls), 0);
		CHECK(m.start == 0 && m.len == 40 && m.flags == (F | SH_X));
		shape_valid(&t, 1);
		cairn_btree_destroy(&t);

		const struct cairn_ext y[] = { { 0, 10, 3, SH_Y },
					       { 10, 10, 0, F | SH_X } };
		sh_tree(&t, fanout, y, 2);
		CHECK_EQ(sh_release(&t, 0, 10, &m, &calls), 0);
		CHECK(m.start == 0 && m.len == 20 && m.cookie == 0 &&
		      m.flags == (F | SH_Y));
		sh_expect(&t, 15, m);
		shape_valid(&t, 1);
		cairn_btree_destroy(&t);
	}
	/* nomerge on cur alone: no left merge, the right one still */
	{
		const struct cairn_ext x[] = { { 0, 10, 0, F },
					       { 10, 10, 3, SH_NOMERGE },
					       { 20, 10, 0, F } };
		sh_tree(&t, fanout, x, 3);
		CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), 0);
		CHECK(m.start == 10 && m.len == 20 && m.cookie == 0 &&
		      m.flags == (F | SH_NOMERGE));
		sh_expect(&t, 25, m);
		sh_expect(&t, 5, (struct cairn_ext){ 0, 10, 0, F });
		shape_valid(&t, 2);
		cairn_btree_destroy(&t);
	}
	/* nomerge on succ alone: the left merge, no right one */
	{
		const struct cairn_ext x[] = { { 0, 10, 0, F },
					       { 10, 10, 3, 0 },
					       { 20, 10, 0, F | SH_NOMERGE } };
		sh_tree(&t, fanout, x, 3);
		CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), 0);
		CHECK(m.start == 0 && m.len == 20 && m.cookie == 0 &&
		      m.flags == F);
		sh_expect(&t, 15, m);
		sh_expect(&t, 20,
			  (struct cairn_ext){ 20, 10, 0, F | SH_NOMERGE });
		shape_valid(&t, 2);
		cairn_btree_destroy(&t);
	}
	/* cur_only: the planner sees neither neighbour, so nothing merges */
	{
		const struct cairn_ext x[] = { { 0, 10, 0, F },
					       { 10, 10, 3, 0 },
					       { 20, 10, 0, F } };
		sh_tree(&t, fanout, x, 3);
		CHECK_EQ(sh_release_q(&t, 10, 10, true, &m, &calls), 0);
		CHECK_EQ(calls, 1);
		CHECK(m.start == 10 && m.len == 10 && m.cookie == 0 &&
		      m.flags == F);
		sh_expect(&t, 10, m);
		shape_valid(&t, 3);
		cairn_btree_destroy(&t);
	}
	/* an extent ending at 2^64 is never carved (nothing fits), and
	 * nothing changes */
	{
		const struct cairn_ext x[] = {
			{ 0, UINT64_MAX - 9, 5, 0 },
			{ UINT64_MAX - 9, 10, 0, F },
		};
		sh_tree(&t, fanout, x, 2);
		CHECK_EQ(sh_carve(&t, 4, 9, false, &calls), UINT64_MAX);
		CHECK_EQ(calls, 0);
		sh_expect(&t, UINT64_MAX, x[1]);
		shape_valid(&t, 2);
		cairn_btree_destroy(&t);
	}
	/* fanout 4: leaves [0, 10] and [20, 30, 40] (a full leaf splits at
	 * its middle), separator 20. Free 10 and 20 (the planner merges 20
	 * into 10: the first leaf holds free [10, 30)); a carve of 15 would
	 * leave its rest at 25, past the separator: it goes the slow way. */
	if (fanout == 4) {
		const struct cairn_ext x[] = { { 0, 10, 1, 0 },
					       { 10, 10, 2, 0 },
					       { 20, 10, 3, 0 },
					       { 30, 10, 4, 0 },
					       { 40, 10, 5, 0 } };
		sh_tree(&t, fanout, x, 5);
		CHECK_EQ(sh_release(&t, 10, 10, &m, &calls), 0);
		CHECK(m.start == 10 && m.len == 10);
		CHECK_EQ(sh_release(&t, 20, 10, &m, &calls), 0);
		CHECK_EQ(calls, 1); /* pred in the other leaf */
		CHECK(m.start == 10 && m.len == 20);
		shape_valid(&t, 4);
		CHECK_EQ(sh_carve(&t, 15, 6, false, &calls), 10);
		sh_expect(&t, 10, (struct cairn_ext){ 10, 15, 6, 0 });
		sh_expect(&t, 25, (struct cairn_ext){ 25, 5, 0, F });
		shape_valid(&t, 5);
		cairn_btree_destroy(&t);
	}
}

/* The extents depth_limit() inserts, 2i + [0, 1) with insert()'s cookie,
 * in key order; arg counts them. */
static int deep_check(const struct cairn_ext *e, void *arg)
{
	uint64_t *i = arg;
	CHECK(e->start == 2 * *i && e->len == 1 && e->cookie == 6 * *i &&
	      e->flags == 0);
	++*i;
	return 0;
}

static void same_stats(const struct cairn_btree_stats *a,
		       const struct cairn_btree_stats *b)
{
	CHECK_EQ(a->extents, b->extents);
	CHECK_EQ(a->nodes, b->nodes);
	CHECK_EQ(a->tree_nodes, b->tree_nodes);
	CHECK_EQ(a->free_nodes, b->free_nodes);
	CHECK_EQ(a->depth, b->depth);
	CHECK_EQ(a->max_free, b->max_free);
}

/*
 * A root split beyond the depth limit. Fanout 4, one-unit extents inserted
 * in key order (leaves about half full) until the insert that needs a root
 * split at depth CAIRN_BTREE_DEPTH_MAX, which must come no sooner than
 * btree.h promises (F * (F/2)^(DEPTH_MAX - 1) extents); the tree is then
 * built again up to just before that insert. The insert, tried with no
 * frame left, planned, as a free extent long enough to raise the longest
 * free one, and on the general route, must return CAIRN_ENOSPC each time
 * and change nothing: the validator passes, the extents are as before,
 * every stat is equal (frames held, nodes in the tree and on its free
 * list, depth, longest free extent) and the frame allocator has as many
 * free frames as before. A delete in the last leaf then makes room, and
 * the insert goes in.
 */
static void depth_limit(void)
{
	enum { CAP = 1 << 16 };
	uint64_t bound = 4, frames0 = env_free_frames(), n = 0;
	for (unsigned l = 1; l < CAIRN_BTREE_DEPTH_MAX; l++)
		bound *= 2;
	struct cairn_btree t;
	struct cairn_btree_stats st, again;
	struct cairn_ext e;
	int err = 0;

	CHECK_EQ(cairn_btree_init(&t, env_frames, 4), 0);
	while (n < CAP && !(err = insert(&t, 2 * n, 1, false)))
		n++;
	REQUIRE(n < CAP);
	CHECK_EQ(err, CAIRN_ENOSPC);
	CHECK(n >= bound);
	cairn_btree_destroy(&t);
	CHECK_EQ(env_free_frames(), frames0);

	CHECK_EQ(cairn_btree_init(&t, env_frames, 4), 0);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(insert(&t, 2 * i, 1, false), 0);
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK_EQ(st.depth, CAIRN_BTREE_DEPTH_MAX);
	CHECK_EQ(st.extents, n);
	CHECK_EQ(st.free_nodes, 0);
	uint64_t frames = env_free_frames();
	CHECK_EQ(frames, frames0 - st.nodes);
	for (unsigned round = 0; round < 4; round++) {
		struct ins_req r = { .nins = 1 };
		r.ins[0] = (struct cairn_ext){ 2 * n, round == 2 ? 100 : 1, 7,
					       round == 2 ? CAIRN_EXT_FREE : 0 };
		if (round == 0)
			env_drain(); /* the refusal needs no frame */
		err = round == 3 ? at_shape(&t, 2 * n, &r, CAIRN_BT_GENERAL)
				 : at(&t, 2 * n, &r);
		if (round == 0)
			env_undrain();
		CHECK_EQ(err, CAIRN_ENOSPC);
		CHECK_EQ(cairn_btree_validate(&t, &again), 0);
		same_stats(&again, &st);
		CHECK_EQ(env_free_frames(), frames);
		uint64_t i = 0;
		CHECK_EQ(cairn_btree_walk(&t, deep_check, &i), 0);
		CHECK_EQ(i, n);
		CHECK_EQ(cairn_btree_lookup(&t, 2 * n, &e), CAIRN_ERANGE);
	}

	struct ins_req r = { .act = { 0, CAIRN_BT_DEL, 0 } };
	CHECK_EQ(at(&t, 2 * (n - 1), &r), 0);
	CHECK_EQ(insert(&t, 2 * n, 1, false), 0);
	CHECK_EQ(cairn_btree_validate(&t, &again), 0);
	CHECK_EQ(again.extents, n);
	CHECK_EQ(again.depth, CAIRN_BTREE_DEPTH_MAX);
	CHECK_EQ(cairn_btree_lookup(&t, 2 * n, &e), 0);
	CHECK(e.start == 2 * n && e.len == 1 && e.cookie == 6 * n);
	CHECK_EQ(cairn_btree_lookup(&t, 2 * (n - 1), &e), CAIRN_ERANGE);
	cairn_btree_destroy(&t);
	CHECK_EQ(env_free_frames(), frames0);
}

int main(void)
{
	env_init(1, 128);
	uint64_t frames0 = env_free_frames();
	struct cairn_btree t;
	struct cairn_ext e;
	struct cairn_btree_stats st;

	CHECK_EQ(cairn_btree_init(&t, env_frames, 3), CAIRN_EINVAL);
	CHECK_EQ(cairn_btree_init(&t, env_frames, CAIRN_BTREE_FANOUT_MAX + 1), CAIRN_EINVAL);
	/* an init that finds no frame for its root leaves a tree that destroy
	 * takes for empty, whatever the memory held before */
	memset(&t, 0xa5, sizeof t);
	env_drain();
	CHECK_EQ(cairn_btree_init(&t, env_frames, 0), CAIRN_ENOMEM);
	env_undrain();
	cairn_btree_destroy(&t);
	CHECK_EQ(env_free_frames(), frames0);
	CHECK_EQ(cairn_btree_init(&t, env_frames, 4), 0);
	CHECK_EQ(cairn_btree_lookup(&t, 0, &e), CAIRN_ERANGE);
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK(st.extents == 0 && st.depth == 1 && st.nodes == 1);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_LOW, 1, 0, UINT64_MAX), UINT64_MAX);

	/* 300 extents, every third free with growing lengths */
	for (uint64_t i = 0; i < 300; i++)
		CHECK_EQ(insert(&t, 1000 * i, i % 3 ? 10 : 10 + i, i % 3 == 0), 0);
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK_EQ(st.extents, 300);
	CHECK(st.depth >= 4);
	CHECK_EQ(st.max_free, 10 + 297);
	CHECK_EQ(extents(&t), 300);
	CHECK_EQ(cairn_btree_lookup(&t, 5005, &e), 0);
	CHECK(e.start == 5000 && e.len == 10 && e.cookie == 15000);
	CHECK_EQ(cairn_btree_lookup(&t, 5010, &e), CAIRN_ERANGE);
	CHECK_EQ(cairn_btree_lookup(&t, 1000ull * 299 + 9, &e), 0);

	/* fits: lowest/highest/best with a window */
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_LOW, 100, 0, UINT64_MAX), 90000);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_HIGH, 100, 0, UINT64_MAX), 297000);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_HIGH, 100, 0, 150000), 147000);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_LOW, 100, 150001, UINT64_MAX), 150000); /* reaches in */
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_LOW, 100, 150160, UINT64_MAX), 153000);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_BEST, 200, 0, UINT64_MAX), 192000);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_LOW, 400, 0, UINT64_MAX), UINT64_MAX);
	CHECK_EQ(fit(&t, CAIRN_BT_FIT_LOW, 1, 299001, UINT64_MAX), UINT64_MAX);

	/* malformed edits change nothing */
	struct ins_req r = { .nins = 1 };
	r.ins[0] = (struct cairn_ext){ 5005, 10, 0, 0 };   /* overlaps 5000+10 */
	CHECK_EQ(at(&t, 5005, &r), CAIRN_EINVAL);
	r.ins[0] = (struct cairn_ext){ 5995, 10, 0, 0 };   /* runs into 6000 */
	CHECK_EQ(at(&t, 5995, &r), CAIRN_EINVAL);
	r.ins[0] = (struct cairn_ext){ 5500, 0, 0, 0 };    /* empty */
	CHECK_EQ(at(&t, 5500, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { 0, CAIRN_BT_SET, 0 } };
	r.val[1] = (struct cairn_ext){ 5001, 5, 0, 0 };    /* start moved */
	CHECK_EQ(at(&t, 5000, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { CAIRN_BT_DEL, 0, 0 } }; /* no pred at 0 */
	CHECK_EQ(at(&t, 0, &r), CAIRN_EINVAL);
	r = (struct ins_req){ .act = { 0, CAIRN_BT_SET, 0 } };
	r.val[1] = (struct cairn_ext){ 5000, 1001, 0, 0 }; /* grows into 6000 */
	CHECK_EQ(at(&t, 5000, &r), CAIRN_EINVAL);
	malformed_edits(&t);
	planner_returns(&t);
	bad_queries(&t);
	{ /* the same on a full-fanout tree, where they take the fast path */
		struct cairn_btree t2;
		CHECK_EQ(cairn_btree_init(&t2, env_frames, 0), 0);
		for (uint64_t i = 0; i < 300; i++)
			CHECK_EQ(insert(&t2, 1000 * i, 10, i % 3 == 0), 0);
		malformed_edits(&t2);
		planner_returns(&t2);
		bad_queries(&t2);
		CHECK_EQ(cairn_btree_validate(&t2, &st), 0);
		CHECK_EQ(st.extents, 300);
		cairn_btree_destroy(&t2);
	}
	r = (struct ins_req){ .err = CAIRN_EBUSY };
	CHECK_EQ(at(&t, 5000, &r), CAIRN_EBUSY);
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK_EQ(st.extents, 300);

	/* a well-formed three-way edit: merge 4000..6010 into one extent */
	r = (struct ins_req){ .act = { CAIRN_BT_SET, CAIRN_BT_DEL, CAIRN_BT_DEL } };
	r.val[0] = (struct cairn_ext){ 4000, 2010, 7, CAIRN_EXT_FREE };
	CHECK_EQ(at(&t, 5000, &r), 0);
	CHECK_EQ(cairn_btree_lookup(&t, 6005, &e), 0);
	CHECK(e.start == 4000 && e.len == 2010 && e.cookie == 7);
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK_EQ(st.extents, 298);

	/* delete everything: the tree shrinks to its root, frames stay */
	for (uint64_t i = 0; i < 300; i++) {
		if (cairn_btree_lookup(&t, 1000 * i, &e) != 0 || e.start != 1000 * i)
			continue;
		r = (struct ins_req){ .act = { 0, CAIRN_BT_DEL, 0 } };
		CHECK_EQ(at(&t, 1000 * i, &r), 0);
	}
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK(st.extents == 0 && st.depth == 1 && st.tree_nodes == 1);
	CHECK_EQ(st.nodes, st.free_nodes + 1);
	CHECK_EQ(env_free_frames(), frames0 - st.nodes);
	cairn_btree_destroy(&t);
	CHECK_EQ(env_free_frames(), frames0);

	/* One leaf at the full fanout, its entries a window of its slots.
	 * Inserts at the front until the window reaches slot 0 and is
	 * recentred, twice; then near the front while it sits at slot 0 (the
	 * few entries before the insert are the ones to move, but have no
	 * room: the whole node is recentred, the front part moving further
	 * than the hole is wide); then at the back up to a full leaf;
	 * deletions at both ends and in the middle; the leaf filled again
	 * from both ends. The tree never splits. */
	const unsigned F = CAIRN_BTREE_FANOUT_MAX;
	CHECK_EQ(cairn_btree_init(&t, env_frames, 0), 0);
	for (unsigned j = 200; j >= 106; j--)
		wstep(&t, 2 * j, true); /* 95 at the front: 400 down to 212 */
	for (unsigned k = 233; k >= 213; k -= 2)
		wstep(&t, k, true); /* 11 near the front, from slot 0 */
	for (unsigned k = 401; k <= 420; k++)
		wstep(&t, k, true);     /* 20 at the back */
	CHECK_EQ(cairn_btree_lookup(&t, 10 * 213 + 4, &e), 0);
	CHECK_EQ(e.cookie, 213);
	for (unsigned n = 0; n < 10; n++) {
		unsigned lo = 0, hi = WKEYS - 1;
		while (!wfilled[lo])
			lo++;
		while (!wfilled[hi])
			hi--;
		wstep(&t, lo, false);          /* the first entry */
		wstep(&t, hi, false);          /* the last */
		wstep(&t, 300 + 2 * n, false); /* one in the middle */
	}
	for (unsigned n = 0; n < 15; n++) {
		wstep(&t, 211 - n, true);
		wstep(&t, 421 + n, true);
	}
	CHECK_EQ(cairn_btree_validate(&t, &st), 0);
	CHECK(st.extents == F && st.tree_nodes == 1);
	cairn_btree_destroy(&t);
	CHECK_EQ(env_free_frames(), frames0);

	shapes(4);
	shapes(CAIRN_BTREE_FANOUT_MAX);
	shape_cases(4);
	shape_cases(CAIRN_BTREE_FANOUT_MAX);
	depth_limit();
	CHECK_EQ(env_free_frames(), frames0);
	CHECK_EQ(cairn_host_reports(), 0);
	return check_done("btree_unit");
}
