/* SPDX-License-Identifier: MIT */
/*
 * The extent tree's own interface against a sorted array: random updates
 * of every shape the edit allows, well formed or not, through both routes
 * (the planned fast path and the general writer), by address (key in an
 * extent or in a gap, cur_only or not) and by every fit (lowest, highest,
 * best, with a window and a length). For each, the view the planner is
 * shown must be the reference's (the same pred, cur and succ, or no call
 * and CAIRN_ENOMEM when nothing fits), and the edit must be applied
 * exactly when the documented rules accept it (cairn_bt_edit in btree.h),
 * CAIRN_EINVAL with nothing changed otherwise: each of pred, cur and succ
 * kept, replaced with the same start (not lengthened where its successor
 * is out of view), deleted, up to two inserts after cur (or pred) and
 * before succ, inside cur for cur_only, the whole sequence ordered,
 * disjoint, ending at or below 2^64, and, with succ deleted, not past
 * succ's end. After each step the tree's extents are the array's, the
 * validator passes, and lookups agree.
 *
 * The arenas make a few kinds of edit only; this drives the rest, where
 * a rule the checks missed leaves overlapping extents behind a 0.
 *
 * seed, operations, fanout, base, key space: extents lie in
 * [base - 64, base + key space + 64), so a base near 2^64 meets the top.
 */
#include <string.h>

#include "env.h"

#define MAXR 8192
#define SPAN 64 /* extents are at most this long, and lie this near key */

static struct cairn_ext ref[MAXR];
static unsigned nref;
static uint64_t rng;

static uint64_t rnd(uint64_t n)
{
	return n ? splitmix(&rng) % n : 0;
}

static bool same(const struct cairn_ext *a, const struct cairn_ext *b)
{
	return a->start == b->start && a->len == b->len &&
	       a->cookie == b->cookie && a->flags == b->flags;
}

/* ---- the reference's view ---- */

static struct cairn_bt_view want;
static int wslot[3]; /* pred, cur, succ in ref[], or -1 */

static void view_clear(void)
{
	memset(&want, 0, sizeof(want));
	wslot[0] = wslot[1] = wslot[2] = -1;
}

static void view_take(unsigned k, int i)
{
	wslot[k] = i;
	struct cairn_ext *dst = k == 0 ? &want.pred : k == 1 ? &want.cur
								: &want.succ;
	bool *has = k == 0 ? &want.has_pred : k == 1 ? &want.has_cur
						     : &want.has_succ;
	*dst = ref[i];
	*has = true;
}

/* The found extent i (or, with i -1, the gap after pred) and, unless
 * the query is cur_only and found one, its neighbours. */
static void view_around(int i, int pred, bool cur_only)
{
	view_clear();
	if (i >= 0) {
		view_take(1, i);
		if (cur_only)
			return;
		pred = i - 1;
	}
	if (pred >= 0)
		view_take(0, pred);
	if ((unsigned)(pred + 1 + (i >= 0)) < nref)
		view_take(2, pred + 1 + (i >= 0));
}

static void view_at(uint64_t key, bool cur_only)
{
	int le = -1;
	for (unsigned i = 0; i < nref && ref[i].start <= key; i++)
		le = (int)i;
	if (le >= 0 && key - ref[le].start < ref[le].len)
		view_around(le, -1, cur_only);
	else
		view_around(-1, le, cur_only);
}

/* What a fit without a callback accepts: free, at least need (and not
 * empty), overlapping [lo, hi); an extent ending at 2^64 never (btree.h:
 * its end reads as 0). */
static bool accepted(const struct cairn_ext *e, uint64_t need, uint64_t lo,
		     uint64_t hi)
{
	return (e->flags & CAIRN_EXT_FREE) && e->len >= need && e->len &&
	       e->start < hi && e->start + e->len > lo;
}

static bool view_fit(enum cairn_bt_find how, uint64_t need, uint64_t lo,
		     uint64_t hi, bool cur_only)
{
	int b = -1;
	for (unsigned i = 0; i < nref; i++) {
		if (!accepted(&ref[i], need, lo, hi))
			continue;
		if (how == CAIRN_BT_FIT_LOW) {
			b = (int)i;
			break;
		}
		if (how == CAIRN_BT_FIT_HIGH ||
		    b < 0 || ref[i].len < ref[b].len)
			b = (int)i;
	}
	if (b < 0)
		return false;
	view_around(b, -1, cur_only);
	return true;
}

/* ---- the rules, as btree.h states them ---- */

static bool before(const struct cairn_ext *a, const struct cairn_ext *b)
{
	return a->start < b->start && a->len <= b->start - a->start;
}

static bool below_top(const struct cairn_ext *x)
{
	return x->start + x->len >= x->start || x->start + x->len == 0;
}

static bool well_formed(const struct cairn_bt_edit *e, bool cur_only)
{
	const struct cairn_bt_view *v = &want;
	const struct cairn_ext *old[3] = { &v->pred, &v->cur, &v->succ };
	bool has[3] = { v->has_pred, v->has_cur, v->has_succ };
	const struct cairn_ext *lo = v->has_cur ? &v->cur
				     : v->has_pred ? &v->pred : NULL;
	const struct cairn_ext *seq[5];
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
		     ((k == 2 || (k == 1 && cur_only)) &&
		      e->val[k].len > old[k]->len)))
			return false;
	}
	for (unsigned k = 0; k < 2; k++)
		if (has[k] && e->act[k] != CAIRN_BT_DEL)
			seq[n++] = e->act[k] == CAIRN_BT_SET ? &e->val[k] : old[k];
	for (unsigned k = 0; k < e->nins; k++) {
		const struct cairn_ext *x = &e->ins[k];
		if (x->len == 0 || (lo && x->start <= lo->start) ||
		    (v->has_succ && x->start >= v->succ.start))
			return false;
		if (cur_only &&
		    !(v->has_cur && x->start - v->cur.start < v->cur.len &&
		      x->len <= v->cur.len - (x->start - v->cur.start)))
			return false;
		seq[n++] = x;
	}
	if (has[2] && e->act[2] != CAIRN_BT_DEL)
		seq[n++] = e->act[2] == CAIRN_BT_SET ? &e->val[2] : old[2];
	for (unsigned k = 0; k < n; k++)
		if (!below_top(seq[k]) || (k > 0 && !before(seq[k - 1], seq[k])))
			return false;
	if (has[2] && e->act[2] == CAIRN_BT_DEL && n > 0) {
		uint64_t end = v->succ.start + v->succ.len;
		const struct cairn_ext *x = seq[n - 1];
		if (end != 0 && (x->start >= end || x->len > end - x->start))
			return false;
	}
	return true;
}

static int by_start(const void *a, const void *b)
{
	const struct cairn_ext *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static void apply(const struct cairn_bt_edit *e)
{
	static bool gone[MAXR];
	memset(gone, 0, nref * sizeof(gone[0]));
	for (unsigned k = 0; k < 3; k++) {
		if (e->act[k] == CAIRN_BT_SET)
			ref[wslot[k]] = e->val[k];
		else if (e->act[k] == CAIRN_BT_DEL)
			gone[wslot[k]] = true;
	}
	unsigned j = 0;
	for (unsigned i = 0; i < nref; i++)
		if (!gone[i])
			ref[j++] = ref[i];
	nref = j;
	REQUIRE(nref + e->nins <= MAXR);
	for (unsigned k = 0; k < e->nins; k++)
		ref[nref++] = e->ins[k];
	qsort(ref, nref, sizeof(ref[0]), by_start);
}

/* ---- the tree ---- */

static struct cairn_bt_view seen;
static bool planned;
static struct cairn_bt_edit edit;

static int plan(const struct cairn_bt_view *v, void *arg,
		struct cairn_bt_edit *e)
{
	(void)arg;
	seen = *v;
	planned = true;
	*e = edit;
	return 0;
}

static unsigned walked;
static bool walk_bad;

static int walk_one(const struct cairn_ext *e, void *arg)
{
	(void)arg;
	if (walked >= nref || !same(e, &ref[walked])) {
		walk_bad = true;
		return 1;
	}
	walked++;
	return 0;
}

static bool seen_is_want(void)
{
	return seen.has_pred == want.has_pred && seen.has_cur == want.has_cur &&
	       seen.has_succ == want.has_succ &&
	       (!want.has_pred || same(&seen.pred, &want.pred)) &&
	       (!want.has_cur || same(&seen.cur, &want.cur)) &&
	       (!want.has_succ || same(&seen.succ, &want.succ));
}

static struct cairn_ext random_ext(uint64_t near)
{
	return (struct cairn_ext){ near + rnd(2 * SPAN) - SPAN, 1 + rnd(SPAN),
				   rnd(1000), rnd(2) ? CAIRN_EXT_FREE : 0 };
}

/* An edit of pred, cur and succ (most often what is there: an action on
 * an absent one is malformed) and up to two inserts near key. */
static void random_edit(uint64_t key)
{
	const struct cairn_ext *old[3] = { &want.pred, &want.cur, &want.succ };
	bool has[3] = { want.has_pred, want.has_cur, want.has_succ };
	memset(&edit, 0, sizeof(edit));
	for (unsigned k = 0; k < 3; k++) {
		unsigned a = (unsigned)rnd(nref > 300 ? 3 : 8);
		if (!has[k] && rnd(20))
			a = 0;
		edit.act[k] = a == 1 ? CAIRN_BT_SET : a == 2 ? CAIRN_BT_DEL
							   : CAIRN_BT_KEEP;
		if (edit.act[k] != CAIRN_BT_SET)
			continue;
		edit.val[k] = *old[k];
		edit.val[k].len = rnd(3) ? 1 + rnd(old[k]->len + 8) : old[k]->len;
		edit.val[k].cookie = rnd(1000);
		edit.val[k].flags = rnd(2) ? CAIRN_EXT_FREE : 0;
	}
	edit.nins = (unsigned)rnd(nref > 300 ? 2 : 4);
	if (edit.nins > 2)
		edit.nins = 2;
	for (unsigned k = 0; k < edit.nins; k++)
		edit.ins[k] = random_ext(key);
	if (edit.nins == 2 && edit.ins[1].start < edit.ins[0].start) {
		struct cairn_ext x = edit.ins[0];
		edit.ins[0] = edit.ins[1];
		edit.ins[1] = x;
	}
}

int main(int argc, char **argv)
{
	rng = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned ops = argc > 2 ? (unsigned)atoi(argv[2]) : 20000;
	unsigned fanout = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
	uint64_t base = argc > 4 ? strtoull(argv[4], NULL, 0) : 0x1000;
	uint64_t space = argc > 5 ? strtoull(argv[5], NULL, 0) : 4096;
	unsigned counts[3] = { 0 }; /* applied, refused, nothing found */

	env_init(1, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t frames0 = env_free_frames();
	struct cairn_btree t;
	REQUIRE(cairn_btree_init(&t, env_frames, fanout) == 0);

	for (unsigned op = 0; op < ops && check_failures == 0; op++) {
		uint64_t key = base + rnd(space);
		bool cur_only = rnd(4) == 0;
		enum cairn_bt_find how = rnd(2) ? CAIRN_BT_AT
						: (enum cairn_bt_find)(1 + rnd(3));
		uint64_t need = 1 + rnd(SPAN / 2);
		uint64_t lo = rnd(3) ? 0 : base + rnd(space);
		uint64_t hi = rnd(3) ? UINT64_MAX : lo + rnd(space);
		bool found = true;
		if (how == CAIRN_BT_AT) {
			view_at(key, cur_only);
		} else {
			found = view_fit(how, need, lo, hi, cur_only);
			if (found) /* the inserts near what was found */
				key = want.cur.start + rnd(want.cur.len);
		}
		random_edit(key);
		bool ok = found && well_formed(&edit, cur_only);
		struct cairn_bt_query q = {
			.find = how, .key = key, .lo = lo, .hi = hi, .need = need,
			.plan = plan, .cur_only = cur_only,
			.shape = rnd(3) ? CAIRN_BT_PLANNED : CAIRN_BT_GENERAL
		};
		planned = false;
		int rc = cairn_btree_update(&t, &q);

		if (!found) {
			CHECK(!planned);
			CHECK_EQ(rc, CAIRN_ENOMEM);
			counts[2]++;
		} else {
			CHECK(planned && seen_is_want());
			CHECK_EQ(rc, ok ? 0 : CAIRN_EINVAL);
			if (rc == 0 && ok)
				apply(&edit);
			counts[ok]++;
		}
		if (check_failures) {
			fprintf(stderr, "op %u: find %d key %#" PRIx64 " lo %#" PRIx64
				" hi %#" PRIx64 " need %" PRIu64 " cur_only %d shape %d:"
				" rc %d, acts %u %u %u, %u inserts\n", op, how, key,
				lo, hi, need, cur_only, q.shape, rc, edit.act[0],
				edit.act[1], edit.act[2], edit.nins);
			break;
		}
		walked = 0;
		walk_bad = false;
		cairn_btree_walk(&t, walk_one, NULL);
		CHECK(!walk_bad && walked == nref);
		CHECK_EQ(cairn_btree_validate(&t, NULL), 0);
		for (unsigned l = 0; l < 4; l++) {
			uint64_t x = base - SPAN + rnd(space + 2 * SPAN);
			struct cairn_ext got;
			int r = cairn_btree_lookup(&t, x, &got), w = -1;
			for (unsigned i = 0; i < nref; i++)
				if (x - ref[i].start < ref[i].len)
					w = (int)i;
			CHECK_EQ(r, w < 0 ? CAIRN_ERANGE : 0);
			if (w >= 0 && r == 0)
				CHECK(same(&got, &ref[w]));
		}
		if (check_failures)
			fprintf(stderr, "op %u: the tree differs from the reference\n", op);
	}
	printf("%u applied, %u refused, %u found nothing; %u extents\n",
	       counts[1], counts[0], counts[2], nref);
	cairn_btree_destroy(&t);
	CHECK_EQ(env_free_frames(), frames0);
	cairn_host_cpu_unregister();
	return check_done("btree_model");
}
