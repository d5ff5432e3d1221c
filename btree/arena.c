/* SPDX-License-Identifier: MIT */
/*
 * Range arenas on the extent tree.
 *
 * Every span is tiled by extents: allocated ones carry the owner cookie,
 * free ones are maximal (a free extent never has a free neighbour in the
 * same span). The extent at the start of a span is flagged SPAN (and
 * IMPORTED if it came from the source); coalescing never crosses a span
 * start, so spans keep their identity and an imported span is known to be
 * entirely free when one free extent starting at it reaches the next span
 * (or the next gap).
 *
 * Each operation is one atomic tree update: the tree finds the extent, the
 * planners below turn the snapshot into an edit. Planners only compute;
 * they may run several times when the tree restarts.
 */
#include <cairn/arena.h>
#include <cairn/port.h>

#define EXT_FREE CAIRN_EXT_FREE
#define SPAN_FLAGS (CAIRN_ARENA_SPAN | CAIRN_ARENA_IMPORTED)
#define IMPORT_TRIES 4

static bool pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* The least power of two >= x; 0 above 2^63, where it would be 2^64 (a
 * shift by 64: undefined). */
static uint64_t next_pow2(uint64_t x)
{
	if (x > 1ull << 63)
		return 0;
	return x <= 1 ? 1 : 1ull << (64 - __builtin_clzll(x - 1));
}

static uint64_t ext_end(const struct cairn_ext *e)
{
	return e->start + e->len;
}

/* Round x up to the quantum; 0 if that overflows. */
static uint64_t qround(const struct cairn_arena *a, uint64_t x)
{
	uint64_t r = (x + a->quantum - 1) & ~(a->quantum - 1);
	return r < x ? 0 : r;
}

/* cairn_arena_create knows the frames source by its import function. */
static int frames_import(void *ctx, uint64_t size, uint64_t align,
			 uint64_t *addr);

/* ---- fitting a constrained request into one free extent ---- */

struct xreq {
	uint64_t size, align, phase, nocross, lo, hi;
	enum cairn_fit policy;
	uint64_t cookie;
	struct cairn_ext got; /* out: the allocated extent */
};

static bool crosses(const struct xreq *r, uint64_t a)
{
	return r->nocross &&
	       ((a ^ (a + r->size - 1)) & ~(r->nocross - 1)) != 0;
}

/* Smallest a >= x with a = phase (mod align); false on overflow. */
static bool up_phase(const struct xreq *r, uint64_t x, uint64_t *a)
{
	if (x <= r->phase) {
		*a = r->phase;
		return true;
	}
	uint64_t y = x - r->phase, m = r->align - 1;
	if (y > UINT64_MAX - m)
		return false;
	y = (y + m) & ~m;
	if (y > UINT64_MAX - r->phase)
		return false;
	*a = y + r->phase;
	return true;
}

/* Largest a <= x with a = phase (mod align). */
static bool down_phase(const struct xreq *r, uint64_t x, uint64_t *a)
{
	if (x < r->phase)
		return false;
	*a = ((x - r->phase) & ~(r->align - 1)) + r->phase;
	return true;
}

static bool fit_low(const struct xreq *r, uint64_t lo, uint64_t hi,
		    uint64_t *out)
{
	uint64_t a;
	if (hi <= lo || hi - lo < r->size || !up_phase(r, lo, &a))
		return false;
	if (crosses(r, a)) {
		uint64_t b = (a | (r->nocross - 1)) + 1; /* next boundary */
		if (b == 0 || !up_phase(r, b, &a) || crosses(r, a))
			return false;
	}
	if (a > hi || hi - a < r->size)
		return false;
	*out = a;
	return true;
}

static bool fit_high(const struct xreq *r, uint64_t lo, uint64_t hi,
		     uint64_t *out)
{
	uint64_t a;
	if (hi <= lo || hi - lo < r->size || !down_phase(r, hi - r->size, &a))
		return false;
	if (crosses(r, a)) {
		uint64_t b = (a + r->size - 1) & ~(r->nocross - 1);
		if (b < r->size || !down_phase(r, b - r->size, &a) ||
		    crosses(r, a))
			return false;
	}
	if (a < lo)
		return false;
	*out = a;
	return true;
}

static bool xfit(const struct cairn_ext *e, void *arg, uint64_t *where)
{
	const struct xreq *r = arg;
	uint64_t lo = e->start > r->lo ? e->start : r->lo;
	uint64_t hi = ext_end(e) < r->hi ? ext_end(e) : r->hi;
	if (r->policy == CAIRN_FIT_HIGH)
		return fit_high(r, lo, hi, where);
	return fit_low(r, lo, hi, where);
}

/* ---- planners ---- */

/* Carve [at, at + size) out of the free extent cur. */
static void carve(const struct cairn_bt_view *v, uint64_t at, uint64_t size,
		  uint64_t cookie, struct cairn_bt_edit *e)
{
	const struct cairn_ext *c = &v->cur;
	uint64_t end = ext_end(c);

	e->act[1] = CAIRN_BT_SET;
	if (at == c->start) {
		e->val[1] = (struct cairn_ext){ c->start, size, cookie,
						c->flags & ~EXT_FREE };
	} else {
		e->val[1] = (struct cairn_ext){ c->start, at - c->start, 0,
						c->flags };
		e->ins[e->nins++] = (struct cairn_ext){ at, size, cookie, 0 };
	}
	if (at + size != end)
		e->ins[e->nins++] = (struct cairn_ext){ at + size,
							end - at - size, 0,
							EXT_FREE };
}

static int plan_alloc(const struct cairn_bt_view *v, void *arg,
		      struct cairn_bt_edit *e)
{
	struct xreq *r = arg;
	carve(v, v->where, r->size, r->cookie, e);
	r->got = v->where == v->cur.start ? e->val[1] : e->ins[0];
	return 0;
}

struct rreq {
	uint64_t addr, size, cookie;
};

static int plan_reserve(const struct cairn_bt_view *v, void *arg,
			struct cairn_bt_edit *e)
{
	const struct rreq *r = arg;
	if (!v->has_cur)
		return CAIRN_ERANGE;
	if (!(v->cur.flags & EXT_FREE))
		return CAIRN_EBUSY;
	if (r->addr + r->size > ext_end(&v->cur))
		/* It runs into the next extent (allocated, or another span),
		 * or off the end of the spans. */
		return v->has_succ && v->succ.start == ext_end(&v->cur)
			       ? CAIRN_EBUSY : CAIRN_ERANGE;
	carve(v, r->addr, r->size, r->cookie, e);
	return 0;
}

struct freq {
	uint64_t addr, size;
	uint64_t cookie;         /* free_owned: the owner the range must have */
	struct cairn_ext merged; /* out: the free extent that results */
};

static int plan_free(const struct cairn_bt_view *v, void *arg,
		     struct cairn_bt_edit *e)
{
	struct freq *r = arg;
	const struct cairn_ext *c = &v->cur;

	if (!v->has_cur)
		return CAIRN_ERANGE;
	if ((c->flags & EXT_FREE) || c->start != r->addr)
		return CAIRN_EFREE;
	if (c->len != r->size)
		return CAIRN_EORDER;

	bool left = v->has_pred && (v->pred.flags & EXT_FREE) &&
		    !(c->flags & CAIRN_ARENA_SPAN) &&
		    ext_end(&v->pred) == c->start;
	bool right = v->has_succ && (v->succ.flags & EXT_FREE) &&
		     !(v->succ.flags & CAIRN_ARENA_SPAN) &&
		     v->succ.start == ext_end(c);
	struct cairn_ext m;
	if (left) {
		m = v->pred;
		m.len += c->len;
		e->act[0] = CAIRN_BT_SET;
		e->act[1] = CAIRN_BT_DEL;
	} else {
		m = (struct cairn_ext){ c->start, c->len, 0, c->flags | EXT_FREE };
		e->act[1] = CAIRN_BT_SET;
	}
	if (right) {
		m.len += v->succ.len;
		e->act[2] = CAIRN_BT_DEL;
	}
	m.cookie = 0;
	e->val[left ? 0 : 1] = m;
	r->merged = m;
	return 0;
}

/* Free the allocated range that starts at addr if its owner is r->cookie,
 * whatever its size (r->size out). */
static int plan_free_owned(const struct cairn_bt_view *v, void *arg,
			   struct cairn_bt_edit *e)
{
	struct freq *r = arg;
	const struct cairn_ext *c = &v->cur;
	if (!v->has_cur)
		return CAIRN_ERANGE;
	if (c->flags & EXT_FREE)
		return CAIRN_EFREE;
	if (c->start != r->addr)
		return CAIRN_EALIGN;
	if (c->cookie != r->cookie)
		return CAIRN_EBUSY;
	r->size = c->len;
	return plan_free(v, arg, e);
}

/* Free exactly [r->addr, r->addr + r->size) if its owner is r->cookie
 * (cairn_arena_free_as; a span's release to a parent arena). */
static int plan_free_as(const struct cairn_bt_view *v, void *arg,
			struct cairn_bt_edit *e)
{
	const struct freq *r = arg;
	if (v->has_cur && !(v->cur.flags & EXT_FREE) &&
	    v->cur.start == r->addr && v->cur.cookie != r->cookie)
		return CAIRN_EBUSY;
	return plan_free(v, arg, e);
}

/* Drop an imported span if it is one free extent with the cookie in
 * span: 0 for a free's release (the free wrote the extent), an import's
 * tag for an alloc's give-back. Between the update that made the span
 * free and this one, it may have been released and imported again at the
 * same start by another CPU, whose retry is about to use it: that import
 * has a tag of its own, which neither release has. */
static int plan_release(const struct cairn_bt_view *v, void *arg,
			struct cairn_bt_edit *e)
{
	struct cairn_ext *span = arg;
	const struct cairn_ext *c = &v->cur;
	if (!v->has_cur || c->start != span->start ||
	    (c->flags & (EXT_FREE | CAIRN_ARENA_IMPORTED)) !=
		    (EXT_FREE | CAIRN_ARENA_IMPORTED) ||
	    c->cookie != span->cookie)
		return CAIRN_EBUSY;
	if (v->has_succ && v->succ.start == ext_end(c) &&
	    !(v->succ.flags & CAIRN_ARENA_SPAN))
		return CAIRN_EBUSY; /* the rest of the span is allocated */
	*span = *c;
	e->act[1] = CAIRN_BT_DEL;
	return 0;
}

struct areq {
	uint64_t base, size, tag;
	uint32_t flags;
	/* need != 0: [at, at + need) goes to `cookie` in the same update, at
	 * the span's start or end (two extents at most: an insert's limit) */
	uint64_t at, need, cookie;
};

static int plan_add(const struct cairn_bt_view *v, void *arg,
		    struct cairn_bt_edit *e)
{
	const struct areq *r = arg;
	if (v->has_cur || (v->has_pred && ext_end(&v->pred) > r->base) ||
	    (v->has_succ && v->succ.start < r->base + r->size))
		return CAIRN_EEXIST;
	struct cairn_ext span = { r->base, r->size, r->tag, EXT_FREE | r->flags };
	if (!r->need) {
		e->ins[0] = span;
		e->nins = 1;
		return 0;
	}
	/* The span as an alloc's carve would leave it, inserted whole: the
	 * carve's replacement of the span's extent, then what it inserts. */
	struct cairn_bt_view whole = { .cur = span, .has_cur = true };
	struct cairn_bt_edit c = { .nins = 0 };
	carve(&whole, r->at, r->need, r->cookie, &c);
	e->ins[0] = c.val[1];
	e->ins[1] = c.ins[0];
	e->nins = 1 + c.nins;
	return 0;
}

/* ---- the record of spans held (cairn_arena_could_hold) ---- */

/* The largest power of two with a multiple in [lo, hi] (lo <= hi): the
 * highest bit in which hi and lo - 1 differ (above it they agree, so a
 * multiple of twice that would be at most lo - 1); 2^63 for lo 0. */
static uint64_t reach(uint64_t lo, uint64_t hi)
{
	if (!lo)
		return 1ull << 63;
	return 1ull << (63 - __builtin_clzll(hi ^ (lo - 1)));
}

static void raise_to(_Atomic uint64_t *v, uint64_t x)
{
	uint64_t m = atomic_load_explicit(v, memory_order_relaxed);
	while (m < x && !atomic_compare_exchange_weak_explicit(v, &m, x, memory_order_relaxed,
							       memory_order_relaxed))
		;
}

/* The arena is about to hold [base, base + len), added or imported:
 * raise the record of the longest span held and of the largest alignment
 * any span held has a quantum at. Only ever raised, and before the update
 * that puts the span in the tree (a span refused there counts too: the
 * record is a bound): whoever sees the span, or a range of it, through
 * the tree (node versions: release by the writer, acquire by readers)
 * comes after the raise, so a request that failed while the span held
 * cached ranges it could use finds it in the record. Relaxed otherwise:
 * could_hold answers for some moment, and adds and imports are rare. */
static void held_note(struct cairn_arena *a, uint64_t base, uint64_t len)
{
	raise_to(&a->held_max, len);
	raise_to(&a->held_align, reach(base, base + len - a->quantum));
}

/* ---- operations ---- */

static int add_span(struct cairn_arena *a, struct areq *r)
{
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = r->base,
				    .plan = plan_add, .arg = r };
	return cairn_btree_update(&a->tree, &q);
}

int cairn_arena_add(struct cairn_arena *a, uint64_t base, uint64_t size)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if ((base | size) & (a->quantum - 1))
		return CAIRN_EALIGN;
	if (base + size <= base)
		return CAIRN_ERANGE;
	struct areq r = { .base = base, .size = size, .flags = CAIRN_ARENA_SPAN };
	held_note(a, base, size);
	return add_span(a, &r);
}

static void try_release(struct cairn_arena *a, const struct cairn_ext *m)
{
	if ((m->flags & CAIRN_ARENA_IMPORTED) == 0)
		return;
	struct cairn_ext span = *m;
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = m->start,
				    .plan = plan_release, .arg = &span };
	if (cairn_btree_update(&a->tree, &q) == 0) {
		atomic_fetch_add_explicit(&a->releases, 1, memory_order_relaxed);
		a->source.release(a->source.ctx, span.start, span.len);
	}
}

/*
 * The span's alignment: the request's, and with nocross enough that the
 * span holds the request between two boundaries (the source guarantees
 * nothing else of where the span lies). Aligned to the boundary itself,
 * the request sits at base + phase, which crosses none unless every
 * placement does. A boundary wider than the span's power of two needs
 * only that power of two: the span then lies between two boundaries.
 */
static uint64_t span_align(const struct cairn_arena *a, const struct xreq *r, uint64_t sz)
{
	uint64_t align = r->align > a->quantum ? r->align : a->quantum;
	if (r->nocross) {
		uint64_t p = next_pow2(sz); /* 0 above 2^63: the boundary */
		uint64_t b = p && p < r->nocross ? p : r->nocross;
		if (b > align)
			align = b;
	}
	return align;
}

/* A span the source must not have lent (struct cairn_arena_source): it
 * is reported as the corruption it is, goes straight back (the source
 * counts it lent; nothing of it entered the tree), and the request fails
 * with CAIRN_ECORRUPT. CAIRN_ENOMEM would tell its caller that memory is
 * short, which no amount of it would mend; and a parent arena's
 * CAIRN_ENOMEM makes its child ask again, for less, of the same source. */
static int source_broken(struct cairn_arena *a, const char *what,
			 uint64_t base, uint64_t sz)
{
	cairn_port_report(CAIRN_ECORRUPT, what, base, sz);
	a->source.release(a->source.ctx, base, sz);
	return CAIRN_ECORRUPT;
}

/* Bring in a span from the source that can hold the request. Where the
 * request fits at the span's start or end, the update that adds the span
 * carves it too (*served, r->got): added free and retried in a second
 * update, the span could be taken whole by another CPU in between, and an
 * alloc that lost each of its imports so would fail with ENOMEM while the
 * source still lent (arena_import_steal). Otherwise (a phase leaves room
 * on both sides, or the request's window misses the span) the span is
 * added free, *span with its tag in the cookie, for the caller's retry;
 * *fits says whether the span, as added, holds the request (a phase).
 * The import quantum is a preference (fewer, larger spans): a source that
 * has no span that large (frames fragmented into smaller blocks) is asked
 * for half as much, down to the request's own size with its phase (a
 * quantum that is not a power of two: that size at once), before the
 * request fails. */
static int import(struct cairn_arena *a, struct xreq *r, struct cairn_ext *span,
		  bool *served, bool *fits)
{
	uint64_t iq = a->import_quantum;
	/* The first size asked for has room for any phase of the alignment
	 * (a source that aligns blocks only to their size, the frames
	 * source without a VA arena, can serve it); the least holds the
	 * request at base + phase in a span aligned for it (span_align),
	 * phase + size, no more (phase < align: hold <= need). */
	uint64_t need = r->size + (r->align > a->quantum ? r->align - a->quantum : 0);
	uint64_t hold = r->size + r->phase;
	if (need < r->size)
		return CAIRN_ENOMEM;
	uint64_t sz = pow2(iq) ? next_pow2(need) : ((need + iq - 1) / iq) * iq;
	uint64_t least = pow2(iq) ? next_pow2(hold) : hold;
	if (sz < iq)
		sz = iq;
	if (sz < need || least < hold) /* next_pow2 found none, or the rounding wrapped */
		return CAIRN_ENOMEM;
	uint64_t base, align;
	int err;
	for (;;) {
		align = span_align(a, r, sz);
		err = a->source.import(a->source.ctx, sz, align, &base);
		if (err != CAIRN_ENOMEM || sz <= least)
			break;
		sz = pow2(iq) ? sz / 2 : least;
	}
	if (err)
		return err;
	/* Every extent is quantum aligned (the unconstrained fits rely on it),
	 * and the span is aligned as asked (at least the quantum): the sizes
	 * asked for count on it (least holds the request at the span's start
	 * plus the phase, a nocross request lies between two boundaries). A
	 * span off that alignment, or one that runs past 2^64, breaks the
	 * source's contract and is refused, not spread (source_broken): used
	 * where it happened to fit, it hid the broken source, and where it did
	 * not, the request imported again and failed with CAIRN_ENOMEM. A
	 * span that ends exactly at 2^64 breaks nothing, but the arena cannot
	 * hold it, as cairn_arena_add cannot: an extent's end must be a
	 * number (nothing could be carved from it). It serves nothing: the
	 * request is short, CAIRN_ENOMEM. */
	if ((base & (align - 1)) || (base + sz < base && base + sz != 0))
		return source_broken(a, "arena: the source lent a span off the "
				     "alignment asked (or the quantum) or past 2^64",
				     base, sz);
	if (base + sz == 0) {
		a->source.release(a->source.ctx, base, sz);
		return CAIRN_ENOMEM;
	}
	struct areq add = { .base = base, .size = sz, .flags = SPAN_FLAGS };
	struct cairn_ext whole = { base, sz, 0, EXT_FREE | SPAN_FLAGS };
	uint64_t at;
	*fits = xfit(&whole, r, &at);
	*served = *fits && (at == base || at + r->size == base + sz);
	if (*served) {
		add.at = at;
		add.need = r->size;
		add.cookie = r->cookie;
	} else {
		/* The span's free extent carries a tag no other import of
		 * this arena has had (2^64 of them would wrap it), until a
		 * carve or a merge rewrites that extent (both clear the
		 * cookie of what stays free): the give-back of a failed
		 * alloc finds its span by it. */
		add.tag = atomic_fetch_add_explicit(&a->tags, 1, memory_order_relaxed) + 1;
	}
	/* A span that overlaps one of the arena's breaks the source's
	 * contract too (a span leaves the tree before it goes back to the
	 * source, so no source that keeps its contract lends one the arena
	 * holds); the tree's own failures (no node: CAIRN_ENOMEM, a root
	 * split past the depth limit: CAIRN_ENOSPC) are the request's. */
	held_note(a, base, sz);
	err = add_span(a, &add);
	if (err == CAIRN_EEXIST)
		return source_broken(a, "arena: the source lent a span the "
				     "arena holds", base, sz);
	if (err) {
		a->source.release(a->source.ctx, base, sz);
		return err;
	}
	atomic_fetch_add_explicit(&a->imports, 1, memory_order_relaxed);
	if (*served)
		r->got = (struct cairn_ext){ at, r->size, r->cookie,
					     at == base ? SPAN_FLAGS : 0 };
	else
		*span = (struct cairn_ext){ base, sz, add.tag, EXT_FREE | SPAN_FLAGS };
	return 0;
}

/* Whether another CPU allocated from a span this alloc imported free: it
 * is no longer one free extent with its import's tag (no other import has
 * that tag, and a carve or a merge clears it for good), or it is gone
 * (emptied and released since). Read after the retry that failed: if the
 * span is still as added now, it was so at that retry too. */
static bool import_lost(struct cairn_arena *a, const struct cairn_ext *span)
{
	struct cairn_ext e;
	return cairn_btree_lookup(&a->tree, span->start, &e) != 0 ||
	       e.start != span->start || e.len != span->len ||
	       e.cookie != span->cookie || e.flags != span->flags;
}

/* xalloc; carved: cairn_arena_alloc tried the carve shape already. Out of
 * line: its frame (the request, the query) stays off alloc's common path. */
static __attribute__((noinline)) int xalloc(struct cairn_arena *a, uint64_t size, uint64_t align,
		  uint64_t phase, uint64_t nocross, uint64_t minaddr,
		  uint64_t maxaddr, enum cairn_fit policy, uint64_t cookie,
		  uint64_t *addr, bool carved)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if (align == 0)
		align = a->quantum;
	if (!pow2(align) || phase >= align || (phase & (a->quantum - 1)))
		return CAIRN_EALIGN;
	if (align < a->quantum)
		align = a->quantum;
	struct xreq r = { .size = qround(a, size), .align = align,
			  .phase = phase, .nocross = nocross,
			  .lo = minaddr, .hi = maxaddr ? maxaddr : UINT64_MAX,
			  .policy = policy, .cookie = cookie };
	if (r.size == 0)
		return CAIRN_ENOMEM;
	if (policy > CAIRN_FIT_BEST ||
	    (nocross && (!pow2(nocross) || nocross < r.size)))
		return CAIRN_EINVAL;
	if (r.lo >= r.hi)
		return CAIRN_ERANGE;

	static const enum cairn_bt_find how[] = {
		[CAIRN_FIT_FIRST] = CAIRN_BT_FIT_LOW,
		[CAIRN_FIT_HIGH] = CAIRN_BT_FIT_HIGH,
		[CAIRN_FIT_BEST] = CAIRN_BT_FIT_BEST,
	};
	/* Unconstrained lowest or best fit: a free extent fits at its start
	 * when it is at least r.size long (extents are quantum aligned; one
	 * ending at 2^64 is refused by both), which is what the tree decides
	 * without a fit callback, without calling one per candidate. */
	bool plain = align == a->quantum && phase == 0 && nocross == 0 &&
		     r.lo == 0 && r.hi == UINT64_MAX && policy != CAIRN_FIT_HIGH;
	/* Unconstrained first fit carves the head of the extent found: the
	 * tree does that itself (CAIRN_BT_CARVE is carve() at cur's start).
	 * Field by field: an initialiser clears the whole query first. */
	struct cairn_bt_query q;
	q.find = how[policy];
	q.key = 0;
	q.lo = r.lo;
	q.hi = r.hi;
	q.need = r.size;
	q.fit = plain ? NULL : xfit;
	q.plan = plan_alloc;
	q.arg = &r;
	q.cur_only = true;
	/* carved: the carve came back unshaped, which it does only where the
	 * planner's fast path would hand over to the general writer too (a
	 * split due, the rest of the extent in another leaf, no fit in the
	 * leaf the gap maxima lead to, nothing fits): start there. After an import the carve
	 * is worth trying again. */
	enum cairn_bt_shape shape = plain && policy == CAIRN_FIT_FIRST
					    ? CAIRN_BT_CARVE : CAIRN_BT_PLANNED;
	q.shape = carved ? CAIRN_BT_GENERAL : shape;
	q.cookie = cookie;
	q.nomerge = 0;
	q.result = &r.got;
	int err;
	unsigned nspans = 0;
	struct cairn_ext spans[IMPORT_TRIES];
	bool fits = false; /* spans[nspans - 1] held the request as added */
	for (;;) {
		err = cairn_btree_update(&a->tree, &q);
		if (err != CAIRN_ENOMEM || !a->source.import)
			break;
		/* The last span held the request and the retry found none: if
		 * another CPU allocated from it in between, that import does
		 * not count against the limit (its tag is gone: there is
		 * nothing to give back), and the alloc fails only when the
		 * source refuses, or after IMPORT_TRIES spans that were still
		 * as added at the retry that failed (no node) or never held
		 * it (a window that misses them: those count even when taken,
		 * so such a request stops rather than draining the source).
		 * Each import not counted is another CPU's alloc done since
		 * the import: lock-free, as the tree's own restarts. */
		if (fits && import_lost(a, &spans[nspans - 1]))
			nspans--;
		else if (nspans == IMPORT_TRIES)
			break;
		/* Nothing fits (or no node): import, served there or tried
		 * again. A span from a source need not satisfy minaddr/maxaddr.
		 * An import that fails says why: CAIRN_ENOMEM when the source
		 * is exhausted (or its span serves nothing), CAIRN_ECORRUPT
		 * when it lent a span it must not have, else its own error
		 * (the source's, or the add's CAIRN_ENOSPC). */
		bool served;
		int ierr = import(a, &r, &spans[nspans], &served, &fits);
		if (ierr) {
			err = ierr;
			break;
		}
		if (served) {
			err = 0;
			break;
		}
		nspans++;
		q.shape = shape;
	}
	if (err == 0)
		*addr = r.got.start;
	/* The spans this call imported and did not use go back to the
	 * source (a rejected call so changes nothing; one that succeeds
	 * keeps the span that serves it), each if it is still one free
	 * extent with the tag its import gave it, in one update that
	 * checks. Not otherwise: it was allocated from (the carve that
	 * served this request, or another CPU's; the free that empties it
	 * releases it), or it went back already, and a span at that address
	 * now is another import, another CPU's, which its retry needs. */
	while (nspans)
		try_release(a, &spans[--nspans]);
	return err;
}

int cairn_arena_xalloc(struct cairn_arena *a, uint64_t size, uint64_t align,
		       uint64_t phase, uint64_t nocross, uint64_t minaddr,
		       uint64_t maxaddr, enum cairn_fit policy, uint64_t cookie,
		       uint64_t *addr)
{
	return xalloc(a, size, align, phase, nocross, minaddr, maxaddr, policy,
		      cookie, addr, false);
}

int cairn_arena_alloc(struct cairn_arena *a, uint64_t size, uint64_t cookie,
		      uint64_t *addr)
{
	/* The common case first: the carve xalloc would ask for (a size that
	 * rounds to a non-zero multiple of the quantum, lowest fit, no
	 * constraint), without its checks or its query. Anything else (an
	 * error, nothing fits, a split due) goes through xalloc, its checks
	 * in the old order, and then straight to the general writer; the
	 * carve changed nothing then. */
	uint64_t need = qround(a, size);
	struct cairn_ext got;
	if (need && cairn_btree_carve(&a->tree, need, cookie, &got) == 0) {
		*addr = got.start;
		return 0;
	}
	return xalloc(a, size, 0, 0, 0, 0, 0, CAIRN_FIT_FIRST, cookie, addr,
		      need != 0);
}

static int free_planned(struct cairn_arena *a, uint64_t addr, uint64_t size,
			uint64_t len);

int cairn_arena_free(struct cairn_arena *a, uint64_t addr, uint64_t size)
{
	/* The common case first: an aligned address, a size that rounds to a
	 * non-zero multiple of the quantum, and the release shape applies
	 * (the size right, the merge inside one leaf). Otherwise nothing
	 * changed, and the checks and the planner below decide. */
	uint64_t len = qround(a, size);
	struct cairn_ext m;
	if (len && !(addr & (a->quantum - 1)) &&
	    cairn_btree_release(&a->tree, addr, len, CAIRN_ARENA_SPAN, &m) == 0) {
		if (m.flags & CAIRN_ARENA_IMPORTED)
			try_release(a, &m);
		return 0;
	}
	return free_planned(a, addr, size, len);
}

/* cairn_arena_free when the release shape did not apply (or was not
 * tried): out of line, as xalloc. */
static __attribute__((noinline)) int free_planned(struct cairn_arena *a,
						  uint64_t addr, uint64_t size,
						  uint64_t len)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if (addr & (a->quantum - 1))
		return CAIRN_EALIGN;
	struct freq r = { .addr = addr, .size = len };
	if (r.size == 0)
		return CAIRN_EORDER;
	/* The release shape (plan_free's edit for an allocated extent of
	 * r.size at addr, merged across no span start) did not apply above:
	 * the planner decides, in the general writer (CAIRN_BT_GENERAL): the
	 * release comes back unshaped where the fast path would hand over too
	 * (a neighbour in another leaf) or on the planner's error, which the
	 * general writer returns as well. Field by field, as in xalloc. */
	struct cairn_bt_query q;
	q.find = CAIRN_BT_AT;
	q.key = addr;
	q.lo = q.hi = 0;
	q.need = r.size;
	q.fit = NULL;
	q.plan = plan_free;
	q.arg = &r;
	q.cur_only = false;
	q.shape = CAIRN_BT_GENERAL;
	q.cookie = 0;
	q.nomerge = 0;
	q.result = NULL;
	int err = cairn_btree_update(&a->tree, &q);
	if (err == 0 && (r.merged.flags & CAIRN_ARENA_IMPORTED))
		try_release(a, &r.merged);
	return err;
}

int cairn_arena_free_owned(struct cairn_arena *a, uint64_t addr, uint64_t cookie,
			   uint64_t *size)
{
	struct freq r = { .addr = addr, .cookie = cookie };
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = addr,
				    .plan = plan_free_owned, .arg = &r };
	int err = cairn_btree_update(&a->tree, &q);
	if (err)
		return err;
	if (size)
		*size = r.size;
	if (r.merged.flags & CAIRN_ARENA_IMPORTED)
		try_release(a, &r.merged);
	return 0;
}

int cairn_arena_free_as(struct cairn_arena *a, uint64_t addr, uint64_t size,
			uint64_t cookie)
{
	/* The common case first, as cairn_arena_free's, the owner checked in
	 * the shape's own read (validated with the leaf): otherwise nothing
	 * changed, and the planner decides. */
	uint64_t len = qround(a, size);
	struct cairn_ext m;
	if (len && !(addr & (a->quantum - 1)) &&
	    cairn_btree_release_as(&a->tree, addr, len, cookie, CAIRN_ARENA_SPAN, &m) == 0) {
		if (m.flags & CAIRN_ARENA_IMPORTED)
			try_release(a, &m);
		return 0;
	}
	if (size == 0)
		return CAIRN_EINVAL;
	if (addr & (a->quantum - 1))
		return CAIRN_EALIGN;
	struct freq r = { .addr = addr, .size = len, .cookie = cookie };
	if (r.size == 0)
		return CAIRN_EORDER;
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = addr,
				    .plan = plan_free_as, .arg = &r };
	int err = cairn_btree_update(&a->tree, &q);
	if (err == 0 && (r.merged.flags & CAIRN_ARENA_IMPORTED))
		try_release(a, &r.merged);
	return err;
}

int cairn_arena_reserve(struct cairn_arena *a, uint64_t addr, uint64_t size,
			uint64_t cookie)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if ((addr | size) & (a->quantum - 1))
		return CAIRN_EALIGN;
	if (addr + size <= addr)
		return CAIRN_ERANGE;
	struct rreq r = { addr, size, cookie };
	struct cairn_bt_query q = { .find = CAIRN_BT_AT, .key = addr,
				    .plan = plan_reserve, .arg = &r };
	return cairn_btree_update(&a->tree, &q);
}

int cairn_arena_lookup(struct cairn_arena *a, uint64_t addr, uint64_t *start,
		       uint64_t *size, uint64_t *cookie)
{
	struct cairn_ext e;
	int err = cairn_btree_lookup(&a->tree, addr, &e);
	if (err)
		return err;
	if (e.flags & EXT_FREE)
		return CAIRN_EFREE;
	if (start)
		*start = e.start;
	if (size)
		*size = e.len;
	if (cookie)
		*cookie = e.cookie;
	return 0;
}

/* ---- life cycle ---- */

int cairn_arena_create(struct cairn_arena *a, struct cairn_frames *nodes,
		       uint64_t base, uint64_t size,
		       const struct cairn_arena_config *cfg)
{
	static const struct cairn_arena_config none = { 0 };
	if (!cfg)
		cfg = &none;
	uint64_t q = cfg->quantum ? cfg->quantum : 1;
	if (!a || !nodes || !pow2(q) || (cfg->import_quantum & (q - 1)) ||
	    (cfg->source && (!cfg->source->import || !cfg->source->release)))
		return CAIRN_EINVAL;
	uint64_t iq = cfg->import_quantum ? cfg->import_quantum : q;
	if (cfg->source && cfg->source->import == frames_import) {
		/* A frames source takes blocks of 2^k frames and nothing
		 * else: a power-of-two import quantum of at least a frame
		 * rounds every import size to one (a power of two above the
		 * quantum is a multiple of it). */
		uint64_t p = next_pow2(iq);
		if (!p)
			return CAIRN_EINVAL;
		iq = p > CAIRN_FRAME_SIZE ? p : CAIRN_FRAME_SIZE;
	}
	a->quantum = q;
	a->import_quantum = iq;
	a->source = cfg->source ? *cfg->source : (struct cairn_arena_source){ 0 };
	atomic_store_explicit(&a->imports, 0, memory_order_relaxed);
	atomic_store_explicit(&a->releases, 0, memory_order_relaxed);
	atomic_store_explicit(&a->tags, 0, memory_order_relaxed);
	atomic_store_explicit(&a->held_max, 0, memory_order_relaxed);
	atomic_store_explicit(&a->held_align, 0, memory_order_relaxed);
	int err = cairn_btree_init(&a->tree, nodes, cfg->fanout);
	if (err)
		return err;
	if (size) {
		err = cairn_arena_add(a, base, size);
		if (err) {
			cairn_btree_destroy(&a->tree);
			return err;
		}
	}
	return 0;
}

/* Imported spans, in order: the extents from one IMPORTED span start to
 * the next span start (or gap) make up the span. */
struct span_walk {
	struct cairn_arena *a;
	bool open;
	uint64_t start, end;
};

static void span_close(struct span_walk *w)
{
	if (w->open)
		w->a->source.release(w->a->source.ctx, w->start,
				     w->end - w->start);
	w->open = false;
}

static int span_visit(const struct cairn_ext *e, void *arg)
{
	struct span_walk *w = arg;
	if (w->open && (e->start != w->end || (e->flags & CAIRN_ARENA_SPAN)))
		span_close(w);
	if (e->flags & CAIRN_ARENA_IMPORTED) {
		w->open = true;
		w->start = e->start;
	}
	w->end = ext_end(e);
	return 0;
}

void cairn_arena_destroy(struct cairn_arena *a)
{
	if (a->source.release) {
		struct span_walk w = { .a = a };
		cairn_btree_walk(&a->tree, span_visit, &w);
		span_close(&w);
	}
	cairn_btree_destroy(&a->tree);
}

/* ---- checking ---- */

struct arena_check {
	struct cairn_arena *a;
	bool have;
	struct cairn_ext prev;
};

static int arena_bad(const char *what, uint64_t x, uint64_t y)
{
	cairn_port_report(CAIRN_ECORRUPT, what, x, y);
	return CAIRN_ECORRUPT;
}

static int check_visit(const struct cairn_ext *e, void *arg)
{
	struct arena_check *c = arg;
	uint64_t qm = c->a->quantum - 1;
	bool contiguous = c->have && ext_end(&c->prev) == e->start;

	if ((e->start | e->len) & qm)
		return arena_bad("arena: extent not quantum aligned", e->start,
				 e->len);
	if (e->flags & ~(EXT_FREE | SPAN_FLAGS))
		return arena_bad("arena: unknown extent flags", e->start,
				 e->flags);
	if ((e->flags & CAIRN_ARENA_IMPORTED) && !(e->flags & CAIRN_ARENA_SPAN))
		return arena_bad("arena: imported extent not a span start",
				 e->start, e->flags);
	if (!contiguous && !(e->flags & CAIRN_ARENA_SPAN))
		return arena_bad("arena: span does not start with a span extent",
				 e->start, e->flags);
	if (contiguous && !(e->flags & CAIRN_ARENA_SPAN) &&
	    (e->flags & EXT_FREE) && (c->prev.flags & EXT_FREE))
		return arena_bad("arena: free neighbours not coalesced",
				 c->prev.start, e->start);
	if ((e->flags & EXT_FREE) && e->cookie &&
	    !(e->flags & CAIRN_ARENA_IMPORTED))
		return arena_bad("arena: free extent with a cookie", e->start,
				 e->cookie);
	/* A tag: the span as its import added it, one free extent. */
	if (contiguous && !(e->flags & CAIRN_ARENA_SPAN) &&
	    (c->prev.flags & EXT_FREE) && c->prev.cookie)
		return arena_bad("arena: tagged span not one free extent",
				 c->prev.start, c->prev.cookie);
	c->have = true;
	c->prev = *e;
	return 0;
}

int cairn_arena_validate(struct cairn_arena *a)
{
	int r = cairn_btree_validate(&a->tree, NULL);
	if (r)
		return r;
	struct arena_check c = { .a = a };
	return cairn_btree_walk(&a->tree, check_visit, &c);
}

/* ---- sources ---- */

static int arena_import(void *ctx, uint64_t size, uint64_t align,
			uint64_t *addr)
{
	struct cairn_arena *parent = ctx;
	return cairn_arena_xalloc(parent, size, align, 0, 0, 0, 0,
				  CAIRN_FIT_FIRST, (uint64_t)(uintptr_t)parent,
				  addr);
}

/* A span goes back only if the parent still lends it: allocated at addr,
 * to a child (the parent's cookie), of the size it was imported with (as
 * the parent rounded it). Checked in the update that frees it, so a range
 * the parent has since given another owner is never freed. */
static void arena_release(void *ctx, uint64_t addr, uint64_t size)
{
	struct cairn_arena *parent = ctx;
	int err = cairn_arena_free_as(parent, addr, size, (uint64_t)(uintptr_t)parent);
	if (err)
		cairn_port_report(err, "arena: release of a span the parent "
				  "arena does not lend", addr, size);
}

/* The parent's spans (held, or its own source's) answer. */
static bool arena_could_lend(void *ctx, uint64_t size, uint64_t align)
{
	return cairn_arena_could_hold(ctx, size, align);
}

void cairn_arena_source_arena(struct cairn_arena_source *s,
			      struct cairn_arena *parent)
{
	s->import = arena_import;
	s->release = arena_release;
	s->ctx = parent;
	s->could_lend = arena_could_lend;
}

static unsigned order_of(uint64_t size)
{
	return (unsigned)(63 - __builtin_clzll(size)) - CAIRN_FRAME_SHIFT;
}

static int frames_import(void *ctx, uint64_t size, uint64_t align,
			 uint64_t *addr)
{
	struct cairn_frames_source *fs = ctx;
	if (!pow2(size) || size < CAIRN_FRAME_SIZE ||
	    order_of(size) > CAIRN_MAX_ORDER || (!fs->va && align > size))
		return CAIRN_ENOMEM;
	cairn_phys_t phys;
	int err = cairn_frames_alloc(fs->frames, order_of(size), fs->flags,
				     &phys);
	if (err)
		return err;
	if (!fs->va) { /* direct: the block where the identity map has it */
		*addr = (uint64_t)(uintptr_t)cairn_port_phys_to_virt(phys);
		return 0;
	}
	uint64_t va;
	err = cairn_arena_xalloc(fs->va, size, align > size ? align : size, 0,
				 0, 0, 0, CAIRN_FIT_FIRST, phys, &va);
	if (err == 0) {
		err = cairn_port_map((uintptr_t)va, phys, size);
		if (err)
			cairn_arena_free(fs->va, va, size);
	}
	if (err) {
		cairn_frames_free(fs->frames, phys, order_of(size));
		return err;
	}
	*addr = va;
	return 0;
}

static void frames_release(void *ctx, uint64_t addr, uint64_t size)
{
	struct cairn_frames_source *fs = ctx;
	uint64_t start, len, phys;
	if (!fs->va) {
		phys = cairn_port_virt_to_phys((const void *)(uintptr_t)addr);
		cairn_frames_free(fs->frames, phys, order_of(size));
		return;
	}
	/* The import's VA range is the size rounded up to the VA arena's
	 * quantum (its own xalloc did that), and starts at the span. */
	if (cairn_arena_lookup(fs->va, addr, &start, &len, &phys) != 0 ||
	    start != addr || len != qround(fs->va, size)) {
		cairn_port_report(CAIRN_ECORRUPT, "arena: release of a span "
				  "the frames source did not import", addr, size);
		return;
	}
	/* A failed unmap may leave the frames reachable at addr: they stay
	 * taken (freed, they would go to another user while this mapping
	 * still reaches them), and so does the VA range (the next import
	 * would map over it; its cookie keeps saying where the frames are).
	 * The span is out of the arena already; nothing is left to fail. */
	int err = cairn_port_unmap((uintptr_t)addr, size);
	if (err) {
		cairn_port_report(err, "arena: unmap of a released frames span "
				  "failed; frames and VA range kept", addr, size);
		return;
	}
	cairn_frames_free(fs->frames, phys, order_of(size));
	cairn_arena_free(fs->va, addr, size);
}

/* A block of the size (a power of two of at least a frame, as
 * frames_import takes) that some region holds: the frame allocator's
 * regions only grow. In place, the block's own alignment is the span's
 * (frames_import refuses an alignment above the size); mapped, the VA
 * arena must hold a range of the size aligned to both. */
static bool frames_could_lend(void *ctx, uint64_t size, uint64_t align)
{
	const struct cairn_frames_source *fs = ctx;
	size = next_pow2(size);
	if (!size)
		return false;
	if (size < CAIRN_FRAME_SIZE)
		size = CAIRN_FRAME_SIZE;
	if (!fs->va)
		return cairn_frames_could_hold(fs->frames, order_of(size > align ? size : align),
					       fs->flags);
	return cairn_frames_could_hold(fs->frames, order_of(size), fs->flags) &&
	       cairn_arena_could_hold(fs->va, size, align > size ? align : size);
}

void cairn_arena_source_frames(struct cairn_arena_source *s,
			       struct cairn_frames_source *fs)
{
	s->import = frames_import;
	s->release = frames_release;
	s->ctx = fs;
	s->could_lend = frames_could_lend;
}

/* Every span in the tree was added or imported, and each raised the
 * record (held_note): a span that holds the request is at least the size
 * long and has a multiple of the alignment with a quantum after it, so
 * none was held while the size is above held_max or the alignment above
 * held_align (both needed, perhaps of different spans: true may still
 * fail). The spans a source has not lent yet: an import for the request
 * asks for no less than `least` of import() (the size, here with phase 0,
 * rounded to a power of two when the import quantum is one) at the
 * alignment (span_align), which could_lend answers for. A source without
 * it: unknown. */
bool cairn_arena_could_hold(struct cairn_arena *a, uint64_t size, uint64_t align)
{
	size = qround(a, size);
	if (!size || (align & (align - 1)))
		return false;
	if (align < a->quantum)
		align = a->quantum;
	if (size <= atomic_load_explicit(&a->held_max, memory_order_relaxed) &&
	    align <= atomic_load_explicit(&a->held_align, memory_order_relaxed))
		return true;
	if (!a->source.import)
		return false;
	uint64_t least = pow2(a->import_quantum) ? next_pow2(size) : size;
	if (!least)
		return false;
	return !a->source.could_lend || a->source.could_lend(a->source.ctx, least, align);
}
