/* SPDX-License-Identifier: MIT */
/*
 * A reader holding a stale child pointer, against the node it names
 * unlinked, retired and reused, in a fixed order.
 *
 * A reader (a one-path lookup, a fit query on the fast path's gap-maximum
 * descent, a fit query on the general writer's search, whose step walks
 * down into the next child) is parked by the test's hook (the library is
 * built with CAIRN_BTREE_TEST_YIELD) at one of two sites on a chosen node
 * X: right after it read X's pointer from X's parent and validated the
 * parent (BT_AT_CHILD), or right after it read X's version, before any of
 * X's fields (BT_AT_VISITED). X holds one extent then (one leaf of one
 * extent for an inner X), so that its retirement is its only change after
 * the reader's read: a reuse must move the version past that one step.
 * Meanwhile the main thread
 *   - deletes that extent, so that X is unlinked and retired to the
 *     tree's free list (an inner X after its leaf, so X is on top);
 *   - makes the answer the reader looks for another one (an extent that
 *     now covers the looked-up address, a free extent further on);
 *   - and, unless X is to stay on the free list, splits a full node
 *     elsewhere so that X is popped and published with other contents:
 *     a leaf reused as the leaf of another key range (one where the old
 *     question has a different, wrong, answer), an inner node reused as
 *     an inner node at another position, or as a leaf; X is not changed
 *     again after it is published.
 * Then the reader goes on. It must restart (it visits the root again) and
 * return exactly what the reference (a sorted array of the extents) says
 * for the tree as it is now, never anything read from X's new contents or
 * X's old ones.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "env.h"
#include "../../btree/node.h"

#define LEN 0x10ull
#define COOKIE 0xc0000000ull /* a cookie is COOKIE | start */

static struct cairn_btree tree;

/* ---- the reference ---- */

#define MAXE 512
static struct cairn_ext ref[MAXE];
static unsigned nref;

static void ref_add(struct cairn_ext e)
{
	REQUIRE(nref < MAXE);
	unsigned i = nref;
	while (i > 0 && ref[i - 1].start > e.start) {
		ref[i] = ref[i - 1];
		i--;
	}
	ref[i] = e;
	nref++;
}

static void ref_del(uint64_t start)
{
	for (unsigned i = 0; i < nref; i++)
		if (ref[i].start == start) {
			memmove(&ref[i], &ref[i + 1],
				(nref - i - 1) * sizeof(ref[0]));
			nref--;
			return;
		}
	REQUIRE(0);
}

static int ref_lookup(uint64_t addr, struct cairn_ext *out)
{
	for (unsigned i = 0; i < nref; i++)
		if (addr - ref[i].start < ref[i].len) {
			*out = ref[i];
			return 0;
		}
	return CAIRN_ERANGE;
}

/* The lowest free extent of at least need that overlaps [lo, hi). */
static bool ref_fit(uint64_t lo, uint64_t hi, uint64_t need,
		    struct cairn_ext *out)
{
	for (unsigned i = 0; i < nref; i++)
		if ((ref[i].flags & CAIRN_EXT_FREE) && ref[i].len >= need &&
		    ref[i].start < hi && ref[i].start + ref[i].len > lo) {
			*out = ref[i];
			return true;
		}
	return false;
}

/* ---- updates by the main thread ---- */

struct edit_req {
	bool del;
	struct cairn_ext e;
};

static int plan_edit(const struct cairn_bt_view *v, void *arg,
		     struct cairn_bt_edit *e)
{
	const struct edit_req *r = arg;
	if (r->del) {
		if (!v->has_cur || v->cur.start != r->e.start)
			return CAIRN_ERANGE;
		e->act[1] = CAIRN_BT_DEL;
		return 0;
	}
	e->nins = 1;
	e->ins[0] = r->e;
	return 0;
}

static void ins(uint64_t start, uint64_t len, bool free_)
{
	struct edit_req r = { false, { start, len, COOKIE | start,
				       free_ ? CAIRN_EXT_FREE : 0 } };
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = start,
				    .plan = plan_edit, .arg = &r };
	REQUIRE(cairn_btree_update(&tree, &q) == 0);
	ref_add(r.e);
}

static void del(uint64_t start)
{
	struct edit_req r = { true, { start, 0, 0, 0 } };
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = start,
				    .plan = plan_edit, .arg = &r };
	REQUIRE(cairn_btree_update(&tree, &q) == 0);
	ref_del(start);
}

/* ---- the tree as it stands (read by the main thread alone, with the
 * reader parked or gone: plain reads of a quiescent tree) ---- */

static unsigned cnt(struct bt_node *n)
{
	return rd(n->count);
}

static struct bt_node *child(struct bt_node *n, unsigned i)
{
	REQUIRE(rd(n->level) != 0 && i < cnt(n));
	return bt_child(n, rd(n->first) + i);
}

static uint64_t key(struct bt_node *n, unsigned i)
{
	REQUIRE(i < cnt(n));
	return rd(n->key[rd(n->first) + i]);
}

static struct bt_node *root(void)
{
	return bt_root(&tree);
}

/* The first and the last leaf below n. */
static struct bt_node *first_leaf(struct bt_node *n)
{
	while (rd(n->level) != 0)
		n = child(n, 0);
	return n;
}

static struct bt_node *last_leaf(struct bt_node *n)
{
	while (rd(n->level) != 0)
		n = child(n, cnt(n) - 1);
	return n;
}

/* Every extent start below n, in order, into keys; their number. */
static unsigned starts_below(struct bt_node *n, uint64_t *keys, unsigned k)
{
	if (rd(n->level) == 0) {
		for (unsigned i = 0; i < cnt(n); i++)
			keys[k++] = key(n, i);
		return k;
	}
	for (unsigned i = 0; i < cnt(n); i++)
		k = starts_below(child(n, i), keys, k);
	return k;
}

/* Where x is in the tree: its parent (NULL for the root) and entry, and
 * whether it is there at all. */
static bool find_node(struct bt_node *n, struct bt_node *x,
		      struct bt_node **parent, unsigned *idx)
{
	if (rd(n->level) == 0)
		return false;
	for (unsigned i = 0; i < cnt(n); i++) {
		struct bt_node *c = child(n, i);
		if (c == x) {
			*parent = n;
			*idx = i;
			return true;
		}
		if (find_node(c, x, parent, idx))
			return true;
	}
	return false;
}

static bool on_free_list(struct bt_node *x)
{
	for (struct bt_node *n = cairn__bt_freelist_peek(&tree); n;
	     n = (struct bt_node *)(uintptr_t)rd(n->next))
		if (n == x)
			return true;
	return false;
}

static void validate(void)
{
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&tree, &st), 0);
	CHECK_EQ(st.extents, nref);
}

/* ---- the reader and its hook ---- */

enum rkind { R_LOOKUP, R_FIT_FAST, R_FIT_GENERAL, R_CARVE };
static const char *const rname[] = { "lookup", "fit (fast descent)",
				     "fit (general search, step)",
				     "carve (general search, at once)" };

static struct {
	enum rkind kind;
	uint64_t addr;        /* lookup */
	uint64_t lo, need;    /* fits, hi 2^64 - 1 */
	int rc;
	struct cairn_ext out; /* lookup: the extent; fits: the planner's cur */
	bool has_out;
} rq;

static _Thread_local bool is_reader;
static const void *_Atomic park_node;
static atomic_uint park_site;
static atomic_bool fired, reader_done;
static atomic_uint root_visits, root_visits_at_park;
static sem_t parked, resume;

void cairn_btree_test_yield(void);
void cairn_btree_test_yield(void)
{
}

void cairn_btree_test_at(unsigned site, const void *node);
void cairn_btree_test_at(unsigned site, const void *node)
{
	if (!is_reader)
		return;
	if (site == BT_AT_VISITED && node == (const void *)root())
		atomic_fetch_add(&root_visits, 1);
	if (site != atomic_load(&park_site) || node != atomic_load(&park_node) ||
	    atomic_exchange(&fired, true))
		return;
	atomic_store(&root_visits_at_park, atomic_load(&root_visits));
	sem_post(&parked);
	sem_wait(&resume);
}

/* A fit that only looks: the last run's view is the answer. */
static int plan_look(const struct cairn_bt_view *v, void *arg,
		     struct cairn_bt_edit *e)
{
	(void)arg;
	(void)e;
	rq.has_out = v->has_cur;
	rq.out = v->cur;
	return CAIRN_EBUSY;
}

/* A writer: [lo, lo + need) allocated out of the free extent found, as an
 * arena's constrained alloc carves it (a cur_only query): cur keeps its
 * head, the range and the rest are inserted after it. */
static int plan_carve(const struct cairn_bt_view *v, void *arg,
		      struct cairn_bt_edit *e)
{
	(void)arg;
	const struct cairn_ext *c = &v->cur;
	uint64_t end = c->start + c->len;
	if (!v->has_cur || c->start >= rq.lo || end - rq.lo <= rq.need)
		return CAIRN_EINVAL; /* not the case this test builds */
	rq.has_out = true;
	rq.out = *c;
	e->act[1] = CAIRN_BT_SET;
	e->val[1] = (struct cairn_ext){ c->start, rq.lo - c->start, c->cookie,
					c->flags };
	e->ins[0] = (struct cairn_ext){ rq.lo, rq.need, COOKIE | rq.lo, 0 };
	e->ins[1] = (struct cairn_ext){ rq.lo + rq.need, end - rq.lo - rq.need,
					COOKIE | (rq.lo + rq.need), CAIRN_EXT_FREE };
	e->nins = 2;
	return 0;
}

static void *reader(void *arg)
{
	(void)arg;
	is_reader = true;
	REQUIRE(cairn_host_cpu_register() >= 0);
	if (rq.kind == R_LOOKUP) {
		rq.rc = cairn_btree_lookup(&tree, rq.addr, &rq.out);
	} else if (rq.kind == R_CARVE) {
		struct cairn_bt_query q = { .find = CAIRN_BT_FIT_LOW,
					    .lo = rq.lo, .hi = UINT64_MAX,
					    .need = rq.need, .cur_only = true,
					    .plan = plan_carve };
		rq.rc = cairn_btree_update(&tree, &q);
	} else {
		struct cairn_bt_query q = { .find = CAIRN_BT_FIT_LOW,
					    .lo = rq.lo, .hi = UINT64_MAX,
					    .need = rq.need,
					    .plan = plan_look };
		rq.rc = cairn_btree_update(&tree, &q);
	}
	cairn_host_cpu_unregister();
	atomic_store(&reader_done, true);
	sem_post(&parked); /* if it never parked, the main thread learns so */
	return NULL;
}

/* Start the reader and wait until it parks at (site, x). */
static pthread_t start_reader(unsigned site, struct bt_node *x)
{
	pthread_t th;
	atomic_store(&park_site, site);
	atomic_store(&park_node, (const void *)x);
	atomic_store(&fired, false);
	atomic_store(&reader_done, false);
	atomic_store(&root_visits, 0);
	rq.has_out = false;
	REQUIRE(pthread_create(&th, NULL, reader, NULL) == 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 30;
	int r;
	while ((r = sem_timedwait(&parked, &ts)) != 0 && errno == EINTR)
		;
	REQUIRE(r == 0);
	REQUIRE(!atomic_load(&reader_done)); /* it parked */
	return th;
}

/* Let it go on, and check its answer against the reference. */
static void finish_reader(pthread_t th, const char *what)
{
	printf("%s\n", what);
	fflush(stdout);
	sem_post(&resume);
	pthread_join(th, NULL);
	sem_wait(&parked);
	bool restarted = atomic_load(&root_visits) >
			 atomic_load(&root_visits_at_park);
	if (!restarted)
		fprintf(stderr, "%s: the reader did not restart\n", what);
	CHECK(restarted);
	struct cairn_ext want;
	if (rq.kind == R_LOOKUP) {
		int rc = ref_lookup(rq.addr, &want);
		if (rq.rc != rc || (rc == 0 && (rq.out.start != want.start ||
						rq.out.len != want.len ||
						rq.out.cookie != want.cookie ||
						rq.out.flags != want.flags)))
			fprintf(stderr, "%s: lookup %#" PRIx64 " gave %d [%#" PRIx64
				", +%#" PRIx64 ") want %d [%#" PRIx64 ", +%#" PRIx64 ")\n",
				what, rq.addr, rq.rc, rq.out.start, rq.out.len,
				rc, want.start, want.len);
		CHECK_EQ(rq.rc, rc);
		if (rc == 0 && rq.rc == 0) {
			CHECK_EQ(rq.out.start, want.start);
			CHECK_EQ(rq.out.len, want.len);
			CHECK_EQ(rq.out.cookie, want.cookie);
			CHECK_EQ(rq.out.flags, want.flags);
		}
	} else {
		REQUIRE(ref_fit(rq.lo, UINT64_MAX, rq.need, &want));
		if (rq.rc != CAIRN_EBUSY || !rq.has_out ||
		    rq.out.start != want.start)
			fprintf(stderr, "%s: fit gave %d [%#" PRIx64 ", +%#" PRIx64
				") want [%#" PRIx64 ", +%#" PRIx64 ")\n", what,
				rq.rc, rq.out.start, rq.out.len, want.start,
				want.len);
		CHECK_EQ(rq.rc, CAIRN_EBUSY);
		CHECK(rq.has_out);
		CHECK_EQ(rq.out.start, want.start);
		CHECK_EQ(rq.out.len, want.len);
		CHECK_EQ(rq.out.cookie, want.cookie);
	}
}

static void tree_init(unsigned fanout)
{
	REQUIRE(cairn_btree_init(&tree, env_frames, fanout) == 0);
	nref = 0;
}

static void tree_done(void)
{
	validate();
	cairn_btree_destroy(&tree);
}

/* Delete every extent below x (x leaves the tree, and so do the leaves of
 * an inner x, x last). */
static void empty_node(struct bt_node *x)
{
	static uint64_t keys[MAXE];
	unsigned k = starts_below(x, keys, 0);
	for (unsigned i = 0; i < k; i++)
		del(keys[i]);
}

/* Delete every extent below x but the one at keep, so that the update
 * that deletes that one retires x, and is the only change of x after the
 * reader read it: x goes from the version the reader saw to that version
 * retired (+ 4, obsolete), the least a reuse must move it past. */
static void thin(struct bt_node *x, uint64_t keep)
{
	static uint64_t keys[MAXE];
	unsigned k = starts_below(x, keys, 0);
	for (unsigned i = 0; i < k; i++)
		if (keys[i] != keep)
			del(keys[i]);
	REQUIRE(starts_below(x, keys, 0) == 1 && keys[0] == keep);
}

/* Insert into the full leaf lf right after its first extent until x
 * leaves the free list: the split makes x the upper half of lf (or of
 * lf's parent, when that is full too and splits first), and the insert
 * lands in the lower half, so that x is published and then left alone. */
static void split_until_popped(struct bt_node *lf, struct bt_node *x)
{
	for (uint64_t k = 1; on_free_list(x); k++) {
		REQUIRE(k < 8 && cnt(lf) > 1);
		uint64_t s = key(lf, 0) + k * LEN;
		REQUIRE(s + LEN <= key(lf, 1));
		ins(s, LEN, false);
	}
}

/* ---- leaves: a leaf reused as the leaf of another key range ---- */

enum reuse { REUSED, ON_FREE_LIST };
static const char *const reuse_name[] = { "reused", "on the free list" };
static const char *const site_name[] = { "", "after the parent's check",
					 "after the child's version" };

/*
 * Fanout 8, two levels: leaves A, W, X, Y, ..., Z under the root, of
 * extents of LEN at 0x1000 apart, allocated (for the fits: the second
 * extent of X and of Y and the last but one of Z free); A and Z full.
 * The lookup asks for an address inside X's first extent, the fits for
 * the lowest free extent of LEN (X's second). X is thinned to that one
 * extent before the reader starts. Meanwhile X is emptied (one update,
 * which retires it); for the lookup an extent E from the end of W to near
 * Y's first extent now covers the address; for the fits Y's free extent
 * is now the first. Reused: A (lookup) or Z (fits) takes an extent after
 * its first and splits, so that X becomes its upper half and is not
 * changed again: the lookup's address then lies past every extent of X
 * (a stale reader would say CAIRN_ERANGE), the fits find Z's free extent
 * in X, not at X's edge (a stale reader would take it on the fast path).
 */
static void leaf_case(enum rkind kind, unsigned site, enum reuse reuse)
{
	char what[160];
	snprintf(what, sizeof(what), "leaf, %s, parked %s, %s", rname[kind],
		 site_name[site], reuse_name[reuse]);
	tree_init(8);
	for (uint64_t k = 1; k <= 24; k++) {
		bool free_ = kind != R_LOOKUP &&
			     (k == 10 || k == 14 || k == 23);
		ins(k * 0x1000, LEN, free_);
	}
	struct bt_node *r = root();
	REQUIRE(rd(r->level) == 1 && cnt(r) >= 5);
	struct bt_node *a = child(r, 0), *w = child(r, 1), *x = child(r, 2),
		       *y = child(r, 3), *z = child(r, cnt(r) - 1);
	/* the fits' free extents: the second of X and Y, Z's last but one */
	REQUIRE(cnt(x) == 4 && key(x, 1) == 10 * 0x1000);
	REQUIRE(cnt(y) == 4 && key(y, 1) == 14 * 0x1000);
	REQUIRE(cnt(z) == 8 && key(z, 6) == 23 * 0x1000);
	while (cnt(a) < 8)
		ins(key(a, cnt(a) - 1) + 0x100, LEN, false);
	REQUIRE(child(r, 0) == a && child(r, 2) == x && cnt(r) >= 5);

	rq.kind = kind;
	rq.addr = key(x, 0) + LEN / 2;
	rq.lo = kind == R_FIT_GENERAL ? 1 : 0;
	rq.need = LEN;
	thin(x, kind == R_LOOKUP ? key(x, 0) : key(x, 1));
	pthread_t th = start_reader(site, x);

	uint64_t e_start = key(w, cnt(w) - 1) + 0x100;
	uint64_t y_first = key(y, 0);
	empty_node(x);
	REQUIRE(on_free_list(x) && cairn__bt_freelist_peek(&tree) == x);
	if (kind == R_LOOKUP)
		ins(e_start, y_first - 0x100 - e_start, false);
	if (reuse == REUSED) {
		split_until_popped(kind == R_LOOKUP ? a : z, x);
		struct bt_node *p;
		unsigned i;
		REQUIRE(find_node(r, x, &p, &i) && p == r);
		REQUIRE(rd(x->level) == 0);
		if (kind == R_LOOKUP) /* A's upper half, all below E */
			REQUIRE(i == 1 && key(x, cnt(x) - 1) < e_start);
		else /* Z's upper half, with its free extent */
			REQUIRE(i == cnt(r) - 1 &&
				key(x, cnt(x) - 2) == 23 * 0x1000);
	}
	finish_reader(th, what);
	tree_done();
}

/* ---- inner nodes ---- */

/*
 * Fanout 4, three levels: the root over inner nodes I0, I1, I2 (, I3).
 * I0 is filled to four children, its first leaf to four extents; I1's
 * last leaf keeps room for one; I2 is thinned to one leaf of one extent.
 * The lookup asks for an address inside that extent, parked at I2.
 * Meanwhile that extent is deleted (one update retires the leaf, then
 * I2, which is on top of the free list), an extent E from the end of
 * I1's last leaf to near the next subtree covers the address, and
 *   reused, inner: I0's first leaf takes one more extent: I0 splits
 *     first and I2 becomes its upper half, an inner node at another
 *     position (over leaves below E: a stale reader would say
 *     CAIRN_ERANGE), not changed again;
 *   reused, leaf: E's insert splits I1's last leaf instead, and I2
 *     becomes a leaf (another level), with E in it;
 *   on the free list: nothing more.
 */
enum inner_reuse { AS_INNER, AS_LEAF, INNER_FREE };
static const char *const inner_name[] = { "reused as an inner node",
					  "reused as a leaf",
					  "on the free list" };

static void inner_case(unsigned site, enum inner_reuse how)
{
	char what[160];
	snprintf(what, sizeof(what), "inner, lookup, parked %s, %s",
		 site_name[site], inner_name[how]);
	tree_init(4);
	for (uint64_t k = 1; k <= 20; k++)
		ins(k * 0x1000, LEN, false);
	struct bt_node *r = root();
	REQUIRE(rd(r->level) == 2 && cnt(r) >= 3);
	struct bt_node *i0 = child(r, 0), *i1 = child(r, 1), *i2 = child(r, 2);
	uint64_t next = cnt(r) > 3 ? key(r, 3) : UINT64_MAX / 2;
	/* I0: four children, the first one full */
	while (cnt(i0) < 4 || cnt(last_leaf(i0)) < 4) {
		struct bt_node *lf = last_leaf(i0);
		ins(key(lf, cnt(lf) - 1) + 0x100, LEN, false);
	}
	while (cnt(first_leaf(i0)) < 4) {
		struct bt_node *lf = first_leaf(i0);
		ins(key(lf, cnt(lf) - 1) + 0x100, LEN, false);
	}
	/* I1's last leaf: room for one (AS_LEAF: full) */
	struct bt_node *l1 = last_leaf(i1);
	if (how == AS_LEAF) {
		while (cnt(l1) < 4)
			ins(key(l1, cnt(l1) - 1) + 0x100, LEN, false);
	} else if (cnt(l1) == 4) {
		del(key(l1, 3));
	}
	REQUIRE(child(r, 0) == i0 && child(r, 1) == i1 && child(r, 2) == i2);
	REQUIRE(cnt(i2) >= 2 && rd(i2->level) == 1);

	rq.kind = R_LOOKUP;
	rq.addr = key(first_leaf(i2), 0) + LEN / 2;
	thin(i2, key(first_leaf(i2), 0));
	REQUIRE(cnt(i2) == 1 && cnt(first_leaf(i2)) == 1);
	pthread_t th = start_reader(site, i2);

	l1 = last_leaf(i1);
	uint64_t e_start = key(l1, cnt(l1) - 1) + 0x100;
	empty_node(i2);
	REQUIRE(on_free_list(i2) && cairn__bt_freelist_peek(&tree) == i2);
	REQUIRE(cnt(r) >= 2); /* no collapse */
	ins(e_start, next - 0x100 - e_start, false);
	struct bt_node *p;
	unsigned i;
	if (how == AS_INNER) {
		REQUIRE(on_free_list(i2));
		split_until_popped(first_leaf(i0), i2);
		REQUIRE(find_node(r, i2, &p, &i) && p == r && i == 1);
		REQUIRE(rd(i2->level) == 1 &&
			key(last_leaf(i2), cnt(last_leaf(i2)) - 1) < e_start);
	} else if (how == AS_LEAF) {
		REQUIRE(find_node(r, i2, &p, &i) && rd(i2->level) == 0);
		REQUIRE(key(i2, cnt(i2) - 1) == e_start);
	} else {
		REQUIRE(on_free_list(i2));
	}
	finish_reader(th, what);
	tree_done();
}

/* ---- a writer: an error decided from a stale node ---- */

/*
 * Fanout 8, the leaves of leaf_case (A full). A constrained fit (the
 * general search: lo is not 0) for [K, K + LEN) with K inside X's key
 * range, which carves what it finds and inserts the pieces after it
 * (cur_only, as an arena's xalloc), is parked at X. Meanwhile X is
 * emptied (retired), W's extents move to the top of its range (X's
 * unlink gave it X's), X is reused as the upper half of A's split and
 * filled up, its last extent E a free one from X's range over K, the
 * free list is empty and no frame is left. In the tree as it is now,
 * K's key range is W's, the fit finds E (the step back from W), and the
 * pieces, past X's upper separator, go into W, which has room: no node
 * is needed, and the carve must succeed. A writer that goes on reading
 * X finds E at once (no step, so no validation on the way); through
 * its stale path X's upper separator is Y's, the pieces seem to belong
 * in X, which is full, and a split fails for want of a node. That is
 * X's state, not the tree's: like every error, a failure to split must
 * come from a snapshot that validates, or the writer restarts.
 */
static void writer_case(unsigned site)
{
	char what[160];
	snprintf(what, sizeof(what), "leaf, %s, parked %s, reused full",
		 rname[R_CARVE], site_name[site]);
	tree_init(8);
	for (uint64_t k = 1; k <= 24; k++)
		ins(k * 0x1000, LEN, false);
	struct bt_node *r = root();
	REQUIRE(rd(r->level) == 1 && cnt(r) >= 5);
	struct bt_node *a = child(r, 0), *w = child(r, 1), *x = child(r, 2),
		       *y = child(r, 3);
	REQUIRE(cnt(w) == 4 && cnt(x) == 4 && key(x, 0) == 9 * 0x1000);
	while (cnt(a) < 8)
		ins(key(a, cnt(a) - 1) + 0x100, LEN, false);

	rq.kind = R_CARVE;
	rq.lo = key(x, 0) + 0x800;
	rq.need = LEN;
	rq.has_out = false;
	uint64_t e_end = key(x, 1);
	pthread_t th = start_reader(site, x);

	empty_node(x);
	REQUIRE(on_free_list(x) && cairn__bt_freelist_peek(&tree) == x);
	/* W: one extent, above E */
	uint64_t w_keys[4] = { key(w, 0), key(w, 1), key(w, 2), key(w, 3) };
	ins(key(y, 0) - 0x800, LEN, false);
	for (unsigned i = 0; i < 4; i++)
		del(w_keys[i]);
	REQUIRE(cnt(w) == 1 && key(w, 0) == key(y, 0) - 0x800);
	split_until_popped(a, x);
	struct bt_node *p;
	unsigned i;
	REQUIRE(find_node(r, x, &p, &i) && p == r && i == 1 &&
		rd(x->level) == 0);
	while (cnt(x) < 7)
		ins(key(x, cnt(x) - 1) + 0x100, LEN, false);
	uint64_t e_start = key(x, 6) + 0x100;
	ins(e_start, e_end - e_start, true); /* E */
	REQUIRE(cnt(x) == 8 && child(r, 2) == w && child(r, 3) == y);
	REQUIRE(cairn__bt_freelist_peek(&tree) == NULL);
	env_drain();

	printf("%s\n", what);
	fflush(stdout);
	sem_post(&resume);
	pthread_join(th, NULL);
	sem_wait(&parked);
	env_undrain();
	if (rq.rc != 0)
		fprintf(stderr, "%s: carve at %#" PRIx64 " gave %d, want 0\n",
			what, rq.lo, rq.rc);
	CHECK_EQ(rq.rc, 0);
	struct cairn_ext got;
	if (rq.rc == 0) {
		CHECK(rq.has_out && rq.out.start == e_start);
		ref_del(e_start);
		ref_add((struct cairn_ext){ e_start, rq.lo - e_start,
					    COOKIE | e_start, CAIRN_EXT_FREE });
		ref_add((struct cairn_ext){ rq.lo, rq.need, COOKIE | rq.lo, 0 });
		ref_add((struct cairn_ext){ rq.lo + rq.need, e_end - rq.lo - rq.need,
					    COOKIE | (rq.lo + rq.need),
					    CAIRN_EXT_FREE });
	}
	/* the tree is the reference, and nothing else */
	for (unsigned k = 0; k < nref; k++) {
		CHECK_EQ(cairn_btree_lookup(&tree, ref[k].start, &got), 0);
		CHECK_EQ(got.start, ref[k].start);
		CHECK_EQ(got.len, ref[k].len);
		CHECK_EQ(got.cookie, ref[k].cookie);
		CHECK_EQ(got.flags, ref[k].flags);
	}
	tree_done();
}

int main(void)
{
	env_init(2, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	REQUIRE(sem_init(&parked, 0, 0) == 0 && sem_init(&resume, 0, 0) == 0);
	uint64_t frames0 = env_free_frames();

	for (unsigned site = BT_AT_CHILD; site <= BT_AT_VISITED; site++) {
		for (enum rkind k = R_LOOKUP; k <= R_FIT_GENERAL; k++)
			for (enum reuse u = REUSED; u <= ON_FREE_LIST; u++)
				leaf_case(k, site, u);
		for (enum inner_reuse h = AS_INNER; h <= INNER_FREE; h++)
			inner_case(site, h);
		writer_case(site);
	}
	CHECK_EQ(env_free_frames(), frames0);
	cairn_host_cpu_unregister();
	return check_done("btree_stale_child");
}
