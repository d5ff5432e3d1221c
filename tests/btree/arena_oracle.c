/* SPDX-License-Identifier: MIT */
/*
 * Lookups against a history oracle, and lending accounted exactly, while
 * N threads (as CPUs) allocate with every xalloc constraint, free, free by
 * owner, reserve, add spans and look up, on five arenas at once:
 *
 *   A        fixed spans, more of them added while the others work;
 *   G        a fixed span, the source of
 *   P        which is the source of the children C0, C1, C2 (spans come
 *            and go at both levels: a child's free that empties a span
 *            releases it to P, where it may empty P's span, which goes
 *            back to G in the same call).
 *
 * Every allocation has a cookie of its own (arena, thread, sequence
 * number), drawn before the call; its record (start, size) is published
 * when the call returns, and the tick of a global clock when its free has
 * returned. An owner word per 64 bytes holds the cookie from just after
 * the alloc returned to just before the free is called. A lookup of x must
 * then return (linearizability of lookups against every update):
 *   - a cookie that was drawn (never a range that was never allocated),
 *     whose call succeeded, with exactly its start and size, containing x,
 *     not freed before the lookup began (never a stale or torn extent);
 *   - that very cookie if x's owner word held it before and after the
 *     lookup (x was allocated throughout), and never "free" or "outside";
 *   - in P or G, the lending cookie if x belonged to a child (or to P's
 *     own range, for G) throughout;
 *   - never "outside" for a span of A whose add returned before it began.
 * Every xalloc result must meet its constraints (alignment and phase,
 * nocross, [minaddr, maxaddr)).
 *
 * At the end of every round the threads stop and the main thread checks
 * the quiescent state exactly: the validators; every allocated extent
 * owned, word by word, by its cookie and nothing else owned; every span a
 * child imported lent by P (allocated there with P's cookie, same start
 * and size) and every range P lends a child's span, the same between P
 * and G; imports - releases = spans held, at both levels. At the end
 * everything is freed, the children and P destroyed, and G must be its
 * one free span, the node frames all back.
 *
 * With `drain` set, the main thread keeps taking every free frame away and
 * giving them back while the threads work, so node allocations fail at
 * random points of concurrent operations (and of imports): those fail with
 * CAIRN_ENOMEM and change nothing; frees and releases never need a node.
 *
 * With `top` set, G's span ends one quantum below 2^64 and A's spans lie
 * just below it: every boundary and window meets the top of the space.
 *
 * usage: arena_oracle threads ops-per-thread-per-round rounds fanout seed
 *                     [drain [top]]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "env.h"

#define QA 64ull
#define STRIDE_A (64 * 1024ull) /* span k of A: [base_a + k * STRIDE_A, + SPAN_A) */
#define SPAN_A (32 * 1024ull)
#define NSPAN_A 8
#define NOWN_A (NSPAN_A * STRIDE_A / 64)
#define SIZE_G (4 * MiB)
#define NOWN_G (SIZE_G / 64)
#define NCHILD 3
#define NARENA (3 + NCHILD)
#define LIVE 48
#define MAXT 16

enum { AR_A = 0, AR_G, AR_P, AR_C0 };

/* A's spans from base_a on, G's span at base_g; with `top`, G's ends one
 * quantum below 2^64 and A's lie just below it. */
static uint64_t base_a = 1ull << 32, base_g = 3ull << 32;

static struct cairn_arena ar[NARENA];
static struct cairn_arena_source src_g, src_p;
static _Atomic uint64_t own_a[NOWN_A], own_g[NOWN_G];
static _Atomic int span_added[NSPAN_A];
static atomic_uint next_span;
static _Atomic uint64_t clk;
static unsigned nthreads, nops;
static atomic_int failed;
static atomic_uint_fast64_t n_alloc, n_nomem, n_free, n_lookup, n_hit, n_reserve,
	n_add, n_stuck;

struct rec {
	_Atomic uint64_t start, size;
	_Atomic uint64_t freed; /* clock tick after the free returned */
	_Atomic int state;      /* 0 in flight, 1 allocated, 2 the call failed */
	_Atomic unsigned arena;
};
/* A call's success: its range, then state 1 (release: a lookup that
 * reads 1 reads the range). */
static void rec_publish(struct rec *rc, unsigned arena, uint64_t start, uint64_t size)
{
	atomic_store_explicit(&rc->start, start, memory_order_relaxed);
	atomic_store_explicit(&rc->size, size, memory_order_relaxed);
	atomic_store_explicit(&rc->arena, arena, memory_order_relaxed);
	atomic_store_explicit(&rc->state, 1, memory_order_release);
}
static struct rec *recs[MAXT];
static _Atomic uint64_t issued[MAXT];
static uint64_t maxseq;

struct live {
	unsigned ar;
	uint64_t addr, size, cookie;
};

static void fail(const char *what, uint64_t x, uint64_t y)
{
	if (atomic_fetch_add(&failed, 1) < 20)
		fprintf(stderr, "arena_oracle: %s %#llx %#llx\n", what,
			(unsigned long long)x, (unsigned long long)y);
}

static uint64_t lend_cookie(unsigned i)
{
	return (uint64_t)(uintptr_t)&ar[i];
}

static uint64_t cookie_of(unsigned arena, unsigned tid, uint64_t seq)
{
	return 1ull << 63 | (uint64_t)arena << 52 | (uint64_t)tid << 40 | seq;
}

/* The next call's record and cookie for thread tid, or NULL when its
 * records are used up. The count is published (release) before the call,
 * so a lookup that finds the cookie finds its record. */
static struct rec *rec_issue(unsigned tid, unsigned arena, uint64_t *cookie)
{
	uint64_t seq = atomic_load_explicit(&issued[tid], memory_order_relaxed);
	if (seq >= maxseq)
		return NULL;
	*cookie = cookie_of(arena, tid, seq);
	atomic_store_explicit(&issued[tid], seq + 1, memory_order_release);
	return &recs[tid][seq];
}

static bool is_ours(uint64_t c)
{
	return (c >> 63) && ((c >> 52) & 0x7ff) < NARENA &&
	       ((c >> 40) & 0xfff) < nthreads;
}

static _Atomic uint64_t *owner(unsigned arena, uint64_t x)
{
	if (arena == AR_A)
		return x >= base_a && x - base_a < NSPAN_A * STRIDE_A
			       ? &own_a[(x - base_a) / 64] : NULL;
	return x >= base_g && x - base_g < SIZE_G ? &own_g[(x - base_g) / 64]
						   : NULL;
}

static void claim(const struct live *l)
{
	for (uint64_t o = 0; o < l->size; o += 64) {
		_Atomic uint64_t *w = owner(l->ar, l->addr + o);
		uint64_t zero = 0;
		if (!w) {
			fail("allocation outside the arena's space", l->addr, l->size);
			return;
		}
		if (!atomic_compare_exchange_strong(w, &zero, l->cookie))
			fail("range handed out twice", l->addr + o, zero);
	}
}

static void unclaim(const struct live *l)
{
	for (uint64_t o = 0; o < l->size; o += 64)
		if (atomic_exchange(owner(l->ar, l->addr + o), 0) != l->cookie)
			fail("freeing a range not owned", l->addr + o, l->cookie);
}

static struct rec *rec_of(uint64_t c)
{
	return &recs[(c >> 40) & 0xfff][c & 0xffffffffffull];
}

/* A lookup's allocated answer: a range some call handed out. */
static void check_answer(unsigned arena, uint64_t x, uint64_t s, uint64_t n,
			 uint64_t c, uint64_t t0)
{
	if (x < s || x - s >= n || s % ar[arena].quantum || n % ar[arena].quantum) {
		fail("lookup: extent does not hold the address", x, s);
		return;
	}
	if ((arena == AR_P || arena == AR_G) &&
	    c == lend_cookie(arena == AR_P ? AR_P : AR_G))
		return; /* lent to a child (to P) */
	if (!is_ours(c) || ((c >> 52) & 0x7ff) != arena) {
		fail("lookup: a cookie no call of this arena had", x, c);
		return;
	}
	unsigned tid = (unsigned)((c >> 40) & 0xfff);
	uint64_t seq = c & 0xffffffffffull;
	if (seq >= atomic_load_explicit(&issued[tid], memory_order_acquire)) {
		fail("lookup: a cookie not drawn yet", x, c);
		return;
	}
	struct rec *r = rec_of(c);
	int st;
	unsigned spins = 0;
	while ((st = atomic_load_explicit(&r->state, memory_order_acquire)) == 0)
		if (++spins % 64 == 0)
			sched_yield();
	if (spins)
		atomic_fetch_add_explicit(&n_stuck, 1, memory_order_relaxed);
	if (st != 1) {
		fail("lookup: a range whose call failed", x, c);
		return;
	}
	if (atomic_load_explicit(&r->start, memory_order_relaxed) != s ||
	    atomic_load_explicit(&r->size, memory_order_relaxed) != n) {
		fail("lookup: torn extent (start/size not the call's)", s, n);
		return;
	}
	uint64_t f = atomic_load(&r->freed);
	if (f && f <= t0)
		fail("lookup: a range freed before the lookup began", s, c);
}

static void check_lookup(unsigned arena, uint64_t x)
{
	_Atomic uint64_t *w = owner(arena, x);
	int added = -1;
	if (arena == AR_A && w && (x - base_a) % STRIDE_A < SPAN_A)
		added = atomic_load(&span_added[(x - base_a) / STRIDE_A]);
	uint64_t t0 = atomic_load(&clk);
	uint64_t w0 = w ? atomic_load(w) : 0;
	uint64_t s = 0, n = 0, c = 0;
	int r = cairn_arena_lookup(&ar[arena], x, &s, &n, &c);
	uint64_t w1 = w ? atomic_load(w) : 0;
	atomic_fetch_add_explicit(&n_lookup, 1, memory_order_relaxed);
	/* x allocated throughout, under w0 (the cookie is unique): */
	bool held = w0 && w0 == w1;
	unsigned warena = (unsigned)((w0 >> 52) & 0x7ff);
	if (r == 0) {
		atomic_fetch_add_explicit(&n_hit, 1, memory_order_relaxed);
		check_answer(arena, x, s, n, c, t0);
		if (held) {
			uint64_t want = warena == arena ? w0
				: arena == AR_P && warena >= AR_C0 ? lend_cookie(AR_P)
				: arena == AR_G && (warena == AR_P || warena >= AR_C0)
					? lend_cookie(AR_G) : c;
			if (c != want)
				fail("lookup: not the range allocated throughout", x, c);
		}
	} else if (r == CAIRN_EFREE || r == CAIRN_ERANGE) {
		if (held && (warena == arena ||
			     (arena == AR_P && warena >= AR_C0) ||
			     (arena == AR_G && warena != AR_A)))
			fail("lookup: free/outside while allocated throughout", x,
			     (uint64_t)r);
		if (r == CAIRN_ERANGE && added == 1)
			fail("lookup: outside a span added before it began", x, 0);
	} else {
		fail("lookup error", x, (uint64_t)r);
	}
}

static uint64_t space_base(unsigned arena)
{
	return arena == AR_A ? base_a : base_g;
}

static uint64_t space_size(unsigned arena)
{
	return arena == AR_A ? NSPAN_A * STRIDE_A : SIZE_G;
}

static bool do_alloc(unsigned tid, uint64_t *seed, struct live *l)
{
	uint64_t r = splitmix(seed), r2 = splitmix(seed);
	unsigned k = (unsigned)(r % 20);
	unsigned arena = k < 6 ? AR_A : k < 9 ? AR_P : AR_C0 + (unsigned)(r >> 8) % NCHILD;
	struct cairn_arena *a = &ar[arena];
	uint64_t q = a->quantum;
	uint64_t size = ((r >> 12) % 8 + 1) * q;
	if (((r >> 16) & 15) == 0)
		size *= 1 + (r >> 20) % 40; /* beyond the child's import quantum */
	if (arena == AR_P && size > 64 * 1024)
		size = 64 * 1024;
	uint64_t align = 0, phase = 0, nocross = 0, lo = 0, hi = 0;
	enum cairn_fit pol = (enum cairn_fit)((r >> 28) % 3);
	bool plain = ((r >> 30) & 3) == 0;
	if (!plain) {
		if ((r2 & 3) != 0) {
			align = q << (r2 >> 2) % 8;
			if (align > q && (r2 & 4))
				phase = ((r2 >> 8) % (align / q)) * q;
		}
		if (((r2 >> 16) & 3) == 0) {
			uint64_t p = 1;
			while (p < size)
				p <<= 1;
			nocross = p << (r2 >> 18) % 4;
		}
		if (((r2 >> 24) & 3) == 0) {
			uint64_t sp = space_size(arena);
			lo = space_base(arena) + ((r2 >> 26) % 64) * (sp / 64);
			lo &= ~(q - 1);
			hi = lo + (1 + (r2 >> 34) % 32) * (sp / 64);
			if (hi < lo) /* past 2^64 (top): no limit */
				hi = 0;
			if ((r2 >> 40) & 1)
				lo = 0;
		}
	}
	uint64_t cookie;
	struct rec *rc = rec_issue(tid, arena, &cookie);
	if (!rc)
		return false;
	uint64_t x;
	int e = plain && pol == CAIRN_FIT_FIRST
			? cairn_arena_alloc(a, size, cookie, &x)
			: cairn_arena_xalloc(a, size, align, phase, nocross, lo, hi,
					     pol, cookie, &x);
	if (e) {
		atomic_store_explicit(&rc->state, 2, memory_order_release);
		if (e == CAIRN_ENOMEM)
			atomic_fetch_add_explicit(&n_nomem, 1, memory_order_relaxed);
		else
			fail("alloc error", size, (uint64_t)e);
		return false;
	}
	rec_publish(rc, arena, x, size);
	uint64_t al = align < q ? q : align;
	if (x % al != phase)
		fail("xalloc: alignment or phase not met", x, al);
	if (nocross && ((x ^ (x + size - 1)) & ~(nocross - 1)))
		fail("xalloc: crosses a boundary", x, nocross);
	if (x < lo || (hi && (x + size > hi || x + size < x)))
		fail("xalloc: outside [minaddr, maxaddr)", x, lo);
	*l = (struct live){ arena, x, size, cookie };
	claim(l);
	atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
	return true;
}

static bool do_reserve(unsigned tid, uint64_t *seed, struct live *l)
{
	uint64_t r = splitmix(seed);
	unsigned arena = (r & 1) ? AR_A : AR_C0 + (unsigned)(r >> 1) % NCHILD;
	struct cairn_arena *a = &ar[arena];
	uint64_t q = a->quantum;
	uint64_t size = ((r >> 8) % 4 + 1) * q;
	uint64_t x = space_base(arena) +
		     ((r >> 16) % (space_size(arena) / q - 4)) * q;
	uint64_t cookie;
	struct rec *rc = rec_issue(tid, arena, &cookie);
	if (!rc)
		return false;
	int e = cairn_arena_reserve(a, x, size, cookie);
	if (e) {
		atomic_store_explicit(&rc->state, 2, memory_order_release);
		if (e != CAIRN_EBUSY && e != CAIRN_ERANGE && e != CAIRN_ENOMEM)
			fail("reserve error", x, (uint64_t)e);
		return false;
	}
	rec_publish(rc, arena, x, size);
	*l = (struct live){ arena, x, size, cookie };
	claim(l);
	atomic_fetch_add_explicit(&n_reserve, 1, memory_order_relaxed);
	return true;
}

static void do_free(struct live *l, bool owned)
{
	uint64_t s, n, c;
	if (cairn_arena_lookup(&ar[l->ar], l->addr + l->size - 1, &s, &n, &c) ||
	    s != l->addr || n != l->size || c != l->cookie)
		fail("own range not found", l->addr, l->size);
	unclaim(l);
	int e;
	if (owned) {
		uint64_t got = 0;
		e = cairn_arena_free_owned(&ar[l->ar], l->addr, l->cookie, &got);
		if (!e && got != l->size)
			fail("free_owned: wrong size", l->addr, got);
	} else {
		e = cairn_arena_free(&ar[l->ar], l->addr, l->size);
	}
	if (e)
		fail("free failed", l->addr, (uint64_t)e);
	atomic_store(&rec_of(l->cookie)->freed, atomic_fetch_add(&clk, 1) + 1);
	atomic_fetch_add_explicit(&n_free, 1, memory_order_relaxed);
}

/* An address in a range another thread allocated lately (it may be
 * being freed right now), or *arena and *x unchanged. */
static void recent(uint64_t *seed, unsigned *arena, uint64_t *x)
{
	uint64_t y = splitmix(seed);
	unsigned t = (unsigned)(y % nthreads);
	uint64_t n = atomic_load_explicit(&issued[t], memory_order_acquire);
	uint64_t back = 1 + (y >> 8) % 8;
	if (n < back)
		return;
	struct rec *r = &recs[t][n - back];
	if (atomic_load_explicit(&r->state, memory_order_acquire) != 1)
		return;
	uint64_t size = atomic_load_explicit(&r->size, memory_order_relaxed);
	*arena = atomic_load_explicit(&r->arena, memory_order_relaxed);
	*x = atomic_load_explicit(&r->start, memory_order_relaxed) +
	     ((y >> 16) % (size / 64)) * 64 + (y >> 40) % 64;
	/* now and then its parent: the span lent to the child */
	if (*arena >= AR_C0 && ((y >> 12) & 3) == 0)
		*arena = (y >> 14) & 1 ? AR_P : AR_G;
}

struct worker {
	pthread_t th;
	unsigned tid;
	uint64_t seed;
	struct live live[LIVE];
	unsigned nlive;
};

static unsigned rounds;
static pthread_barrier_t bar;
static atomic_uint at_barrier;

static void *worker(void *arg)
{
	struct worker *w = arg;
	if (cairn_host_cpu_register() < 0) {
		fail("no cpu slot", 0, 0);
		return NULL;
	}
	for (unsigned round = 0; round < rounds; round++) {
		for (unsigned op = 0; op < nops && !atomic_load(&failed); op++) {
			uint64_t r = splitmix(&w->seed);
			unsigned kind = (unsigned)(r % 100);
			if (w->nlive == LIVE || (kind < 36 && w->nlive)) {
				unsigned i = (unsigned)((r >> 8) % w->nlive);
				struct live l = w->live[i];
				w->live[i] = w->live[--w->nlive];
				do_free(&l, (r >> 20) & 1);
			} else if (kind < 72) {
				if (do_alloc(w->tid, &w->seed, &w->live[w->nlive]))
					w->nlive++;
			} else if (kind < 77) {
				if (do_reserve(w->tid, &w->seed, &w->live[w->nlive]))
					w->nlive++;
			} else if (kind < 79) {
				unsigned k = atomic_fetch_add(&next_span, 1);
				if (k < NSPAN_A) {
					int e;
					while ((e = cairn_arena_add(&ar[AR_A],
								    base_a + k * STRIDE_A,
								    SPAN_A)) == CAIRN_ENOMEM)
						sched_yield(); /* no node: frames drained */
					if (e)
						fail("add failed", k, (uint64_t)e);
					atomic_store(&span_added[k], 1);
					atomic_fetch_add_explicit(&n_add, 1,
								  memory_order_relaxed);
				}
			} else {
				for (unsigned j = 0; j < 4; j++) {
					uint64_t y = splitmix(&w->seed);
					unsigned arena = (unsigned)(y % NARENA);
					uint64_t x = space_base(arena) +
						     (y >> 8) % space_size(arena);
					if (y & 0x100000000000ull)
						recent(&w->seed, &arena, &x);
					check_lookup(arena, x);
				}
			}
		}
		if (round + 1 == rounds)
			while (w->nlive)
				do_free(&w->live[--w->nlive], false);
		atomic_fetch_add(&at_barrier, 1);
		pthread_barrier_wait(&bar); /* the main thread checks */
		pthread_barrier_wait(&bar);
	}
	cairn_host_cpu_unregister();
	return NULL;
}

/* ---- quiescent checks ---- */

struct span {
	uint64_t start, len;
};

struct walk {
	unsigned arena;
	uint64_t owned; /* 64-byte units of allocated extents with our cookies */
	struct span *spans; /* imported spans (children, P) or lent ranges */
	unsigned nspans, cap;
	bool open;      /* in an imported span */
	uint64_t lend;  /* lending cookie (P, G), or 0 */
};

static void push(struct walk *w, uint64_t s, uint64_t n)
{
	if (w->nspans == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 64;
		w->spans = realloc(w->spans, w->cap * sizeof(*w->spans));
		REQUIRE(w->spans);
	}
	w->spans[w->nspans++] = (struct span){ s, n };
}

/* Imported spans: from an IMPORTED extent up to the next span start or
 * gap; lent ranges: allocated extents with the lending cookie. */
static int walk_visit(const struct cairn_ext *e, void *arg)
{
	struct walk *w = arg;
	if (w->open) {
		struct span *sp = &w->spans[w->nspans - 1];
		if (e->start == sp->start + sp->len && !(e->flags & CAIRN_ARENA_SPAN))
			sp->len += e->len;
		else
			w->open = false;
	}
	if (!w->lend && (e->flags & CAIRN_ARENA_IMPORTED)) {
		push(w, e->start, e->len);
		w->open = true;
	}
	if (e->flags & CAIRN_EXT_FREE)
		return 0;
	if (w->lend && e->cookie == w->lend) {
		push(w, e->start, e->len);
		return 0;
	}
	if (!w->lend && (e->cookie == lend_cookie(AR_P) ||
			 e->cookie == lend_cookie(AR_G)))
		return 0; /* lent: the other walk counts it */
	if (!is_ours(e->cookie) || ((e->cookie >> 52) & 0x7ff) != w->arena) {
		fail("quiescent: an extent with a foreign cookie", e->start, e->cookie);
		return 0;
	}
	for (uint64_t o = 0; o < e->len; o += 64) {
		_Atomic uint64_t *ow = owner(w->arena, e->start + o);
		if (!ow || atomic_load(ow) != e->cookie) {
			fail("quiescent: extent not owned by its cookie",
			     e->start + o, e->cookie);
			return 0;
		}
	}
	w->owned += e->len / 64;
	return 0;
}

static int span_cmp(const void *x, const void *y)
{
	const struct span *a = x, *b = y;
	return a->start < b->start ? -1 : a->start > b->start;
}

static void walk_arena(unsigned arena, uint64_t lend, struct walk *w)
{
	memset(w, 0, sizeof(*w));
	w->arena = arena;
	w->lend = lend;
	CHECK_EQ(cairn_btree_walk(&ar[arena].tree, walk_visit, w), 0);
}

/* What `lender` lends is exactly what the borrowers imported. */
static void check_lending(struct walk *lender, struct walk *imp, unsigned nimp)
{
	struct walk all = { 0 };
	for (unsigned i = 0; i < nimp; i++)
		for (unsigned j = 0; j < imp[i].nspans; j++)
			push(&all, imp[i].spans[j].start, imp[i].spans[j].len);
	if (all.nspans)
		qsort(all.spans, all.nspans, sizeof(*all.spans), span_cmp);
	CHECK_EQ(all.nspans, lender->nspans);
	for (unsigned j = 0; j < all.nspans && j < lender->nspans; j++)
		if (all.spans[j].start != lender->spans[j].start ||
		    all.spans[j].len != lender->spans[j].len)
			fail("lent range is not an imported span",
			     lender->spans[j].start, all.spans[j].start);
	free(all.spans);
}

static void check_quiescent(void)
{
	for (unsigned i = 0; i < NARENA; i++)
		CHECK_EQ(cairn_arena_validate(&ar[i]), 0);
	struct walk w[NARENA];
	walk_arena(AR_A, 0, &w[AR_A]);
	walk_arena(AR_G, lend_cookie(AR_G), &w[AR_G]);
	/* P: its imports (from G) and, separately, its loans to children. */
	walk_arena(AR_P, 0, &w[AR_P]);
	struct walk plend;
	walk_arena(AR_P, lend_cookie(AR_P), &plend);
	for (unsigned c = 0; c < NCHILD; c++)
		walk_arena(AR_C0 + c, 0, &w[AR_C0 + c]);

	/* Every owner word is an allocated extent's, and the reverse. */
	uint64_t words[NARENA] = { 0 };
	for (uint64_t i = 0; i < NOWN_A; i++) {
		uint64_t c = atomic_load(&own_a[i]);
		if (c)
			words[(c >> 52) & 0x7ff]++;
	}
	for (uint64_t i = 0; i < NOWN_G; i++) {
		uint64_t c = atomic_load(&own_g[i]);
		if (c)
			words[(c >> 52) & 0x7ff]++;
	}
	CHECK_EQ(words[AR_A], w[AR_A].owned);
	CHECK_EQ(words[AR_G], 0);
	CHECK_EQ(words[AR_P], plend.owned);
	for (unsigned c = 0; c < NCHILD; c++)
		CHECK_EQ(words[AR_C0 + c], w[AR_C0 + c].owned);

	check_lending(&plend, &w[AR_C0], NCHILD);
	check_lending(&w[AR_G], &w[AR_P], 1);
	for (unsigned c = AR_P; c < NARENA; c++)
		CHECK_EQ(atomic_load(&ar[c].imports) - atomic_load(&ar[c].releases),
			 w[c].nspans);
	for (unsigned i = 0; i < NARENA; i++)
		free(w[i].spans);
	free(plend.spans);
}

int main(int argc, char **argv)
{
	nthreads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	nops = argc > 2 ? (unsigned)atoi(argv[2]) : 4000;
	rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 3;
	unsigned fanout = argc > 4 ? (unsigned)atoi(argv[4]) : 4;
	uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 0) : 1;
	bool drain = argc > 6 && atoi(argv[6]);
	if (argc > 7 && atoi(argv[7])) {
		base_g = 0 - SIZE_G - 4096;
		base_a = base_g - NSPAN_A * STRIDE_A - 16 * 4096;
	}
	REQUIRE(nthreads >= 1 && nthreads <= MAXT && rounds >= 1);
	maxseq = (uint64_t)nops * rounds;
	for (unsigned t = 0; t < nthreads; t++)
		REQUIRE((recs[t] = calloc(maxseq, sizeof(struct rec))));

	env_init(nthreads + 1, 128);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t frames0 = env_free_frames();

	struct cairn_arena_config ca = { .quantum = QA, .fanout = fanout };
	REQUIRE(cairn_arena_create(&ar[AR_A], env_frames, 0, 0, &ca) == 0);
	atomic_store(&next_span, 3);
	for (unsigned k = 0; k < 3; k++) {
		REQUIRE(cairn_arena_add(&ar[AR_A], base_a + k * STRIDE_A, SPAN_A) == 0);
		atomic_store(&span_added[k], 1);
	}
	struct cairn_arena_config cg = { .quantum = 4096, .fanout = fanout };
	REQUIRE(cairn_arena_create(&ar[AR_G], env_frames, base_g, SIZE_G, &cg) == 0);
	cairn_arena_source_arena(&src_g, &ar[AR_G]);
	struct cairn_arena_config cp = { .quantum = 4096, .source = &src_g,
					 .import_quantum = 64 * 1024,
					 .fanout = fanout };
	REQUIRE(cairn_arena_create(&ar[AR_P], env_frames, 0, 0, &cp) == 0);
	cairn_arena_source_arena(&src_p, &ar[AR_P]);
	struct cairn_arena_config cc = { .quantum = 64, .source = &src_p,
					 .import_quantum = 16 * 1024,
					 .fanout = fanout };
	for (unsigned c = 0; c < NCHILD; c++)
		REQUIRE(cairn_arena_create(&ar[AR_C0 + c], env_frames, 0, 0, &cc) == 0);

	static struct worker ws[MAXT];
	REQUIRE(pthread_barrier_init(&bar, NULL, nthreads + 1) == 0);
	for (unsigned t = 0; t < nthreads; t++) {
		ws[t].tid = t;
		ws[t].seed = seed * 1000 + t;
		REQUIRE(pthread_create(&ws[t].th, NULL, worker, &ws[t]) == 0);
	}
	unsigned drains = 0;
	for (unsigned round = 0; round < rounds; round++) {
		while (drain && atomic_load(&at_barrier) < nthreads * (round + 1)) {
			env_drain();
			for (volatile unsigned i = 0; i < 20000; i++)
				;
			env_undrain();
			for (volatile unsigned i = 0; i < 100000; i++)
				;
			drains++;
		}
		pthread_barrier_wait(&bar);
		check_quiescent();
		pthread_barrier_wait(&bar);
	}
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(ws[t].th, NULL);

	/* Everything freed: no child holds an allocated range, P lends only
	 * the spans the children still hold (entirely free). */
	for (unsigned c = 0; c < NCHILD; c++) {
		struct walk w;
		walk_arena(AR_C0 + c, 0, &w);
		CHECK_EQ(w.owned, 0);
		free(w.spans);
		cairn_arena_destroy(&ar[AR_C0 + c]);
	}
	struct walk wp;
	walk_arena(AR_P, lend_cookie(AR_P), &wp);
	CHECK_EQ(wp.nspans, 0);
	CHECK_EQ(wp.owned, 0);
	free(wp.spans);
	cairn_arena_destroy(&ar[AR_P]);
	struct cairn_ext e;
	CHECK_EQ(cairn_btree_lookup(&ar[AR_G].tree, base_g, &e), 0);
	CHECK(e.start == base_g && e.len == SIZE_G && (e.flags & CAIRN_EXT_FREE));
	CHECK_EQ(cairn_arena_validate(&ar[AR_G]), 0);

	printf("arena_oracle: %u threads x %u ops x %u rounds, fanout %u: %llu allocs "
	       "(%llu ENOMEM), %llu reserves, %llu frees, %llu span adds, %llu lookups "
	       "(%llu allocated, %llu waited for their call); P imports %llu releases "
	       "%llu; children imports %llu releases %llu; %u drains\n",
	       nthreads, nops, rounds, fanout, (unsigned long long)n_alloc,
	       (unsigned long long)n_nomem, (unsigned long long)n_reserve,
	       (unsigned long long)n_free, (unsigned long long)n_add,
	       (unsigned long long)n_lookup, (unsigned long long)n_hit,
	       (unsigned long long)n_stuck,
	       (unsigned long long)atomic_load(&ar[AR_P].imports),
	       (unsigned long long)atomic_load(&ar[AR_P].releases),
	       (unsigned long long)(atomic_load(&ar[AR_C0].imports) +
				    atomic_load(&ar[AR_C0 + 1].imports) +
				    atomic_load(&ar[AR_C0 + 2].imports)),
	       (unsigned long long)(atomic_load(&ar[AR_C0].releases) +
				    atomic_load(&ar[AR_C0 + 1].releases) +
				    atomic_load(&ar[AR_C0 + 2].releases)), drains);
	CHECK(!atomic_load(&failed));
	CHECK_EQ(cairn_host_reports(), 0);
	cairn_arena_destroy(&ar[AR_G]);
	cairn_arena_destroy(&ar[AR_A]);
	CHECK_EQ(env_free_frames(), frames0);
	for (unsigned t = 0; t < nthreads; t++)
		free(recs[t]);
	return check_done("arena_oracle");
}
