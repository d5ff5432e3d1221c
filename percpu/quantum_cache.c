/* SPDX-License-Identifier: MIT */
/*
 * Quantum caches: one magazine cache per size of 1..N quanta, each with the
 * arena as its source (a refill is a run of arena allocations of that size,
 * a flush a run of frees). The structure lives in one frame.
 */
#include <cairn/quantum_cache.h>

#include "cache_frame.h"

struct qc_source {
	struct cairn_arena *a;
	uint64_t size;   /* bytes of this size class */
	uint64_t cookie; /* owner of the ranges in the arena */
};

struct cairn_qcache {
	struct cairn_arena *a;
	struct cairn_frames *f;
	unsigned shift; /* log2 of the quantum */
	unsigned max;   /* sizes 1..max quanta are cached */
	bool trust_frees;
	cairn_phys_t self; /* the frame this structure lives in */
	struct cairn_mag_group own_group; /* unless the config names one */
	struct qc_source src[CAIRN_QCACHE_MAX];
	struct cairn_mag_cache *mag[CAIRN_QCACHE_MAX];
};

_Static_assert(sizeof(struct cairn_qcache) <= CAIRN_FRAME_SIZE,
	       "a quantum cache lives in one frame");

/* ---- the arena as a source of items ---- */

static size_t qc_get(void *ctx, uint64_t *items, size_t n)
{
	struct qc_source *s = ctx;
	size_t i = 0;
	while (i < n && cairn_arena_alloc(s->a, s->size, s->cookie, &items[i]) == 0)
		i++;
	return i;
}

static void qc_put(void *ctx, const uint64_t *items, size_t n)
{
	struct qc_source *s = ctx;
	/* Every item passed cairn_qcache_free's check when it entered a
	 * magazine (or the caller vouched for it). But a range freed twice
	 * while its first free sat in a magazine is in two magazines, and
	 * once one copy went back the arena may have given the range to
	 * another owner, or to this cache in another size. So the free
	 * checks, in the same update, that the range is still the cache's,
	 * of this size: a copy that is not is reported and left alone. */
	for (size_t i = 0; i < n; i++) {
		int err = cairn_arena_free_as(s->a, items[i], s->size, s->cookie);
		if (err)
			cairn_port_report(err, "qcache: a cached range the cache does "
					  "not own (freed twice?)", items[i], s->size);
	}
}

/* ---- setup ---- */

int cairn_qcache_create(struct cairn_qcache **out, struct cairn_arena *a,
			struct cairn_frames *f, const struct cairn_qcache_config *cfg)
{
	static const struct cairn_qcache_config defaults;
	if (!out || !a || !f)
		return CAIRN_EINVAL;
	if (!cfg)
		cfg = &defaults;
	unsigned max = cfg->max_quanta ? cfg->max_quanta : 16;
	if (max > CAIRN_QCACHE_MAX || cfg->mag_size > CAIRN_MAG_MAX ||
	    (a->quantum & (a->quantum - 1)))
		return CAIRN_EINVAL;
	cairn_phys_t self;
	int err = cairn_frames_alloc(f, 0, 0, &self);
	if (err)
		return err;
	struct cairn_qcache *qc = cache_frame_place(self, sizeof(*qc));
	qc->a = a;
	qc->f = f;
	qc->shift = (unsigned)__builtin_ctzll(a->quantum);
	qc->max = max;
	qc->trust_frees = cfg->trust_frees;
	qc->self = self;
	/* One drain group for the sizes at least (see frame_cache.c). */
	atomic_init(&qc->own_group.head, NULL);
	atomic_init(&qc->own_group.lock, 0);
	atomic_init(&qc->own_group.walkers, 0);
	struct cairn_mag_group *group = cfg->group ? cfg->group : &qc->own_group;
	for (unsigned i = 0; i < max; i++) {
		qc->src[i] = (struct qc_source){ a, (uint64_t)(i + 1) << qc->shift,
						 cairn_qcache_cookie(qc) };
		struct cairn_mag_config mcfg = {
			.source = { qc_get, qc_put, &qc->src[i] },
			.frames = f,
			.ncpus = cfg->ncpus,
			.mag_size = cfg->mag_size ? cfg->mag_size : 15,
			.depot_full = cfg->depot_full,
			.depot_empty = cfg->depot_empty,
			.drain_wait = cfg->drain_wait,
			.group = group,
		};
		if ((err = cairn_mag_create(&qc->mag[i], &mcfg))) {
			while (i--)
				cairn_mag_destroy(qc->mag[i]);
			cairn_frames_free(f, self, 0);
			return err;
		}
	}
	*out = qc;
	return 0;
}

void cairn_qcache_destroy(struct cairn_qcache *qc)
{
	for (unsigned i = 0; i < qc->max; i++)
		cairn_mag_destroy(qc->mag[i]);
	cairn_frames_free(qc->f, qc->self, 0);
}

uint64_t cairn_qcache_cookie(const struct cairn_qcache *qc)
{
	return (uint64_t)(uintptr_t)qc;
}

/* ---- alloc and free ---- */

/* Size class of a request: quanta, or 0 when it is not cached. */
static inline unsigned size_class(const struct cairn_qcache *qc, uint64_t size)
{
	uint64_t q = (size + (1ull << qc->shift) - 1) >> qc->shift;
	return size && size + (1ull << qc->shift) > size && q <= qc->max ? (unsigned)q : 0;
}

int cairn_qcache_alloc(struct cairn_qcache *qc, uint64_t size, uint64_t *addr)
{
	unsigned q = size_class(qc, size);
	if (!q) {
		int err = cairn_arena_alloc(qc->a, size, cairn_qcache_cookie(qc), addr);
		/* Cached ranges may be what is missing, unless no span the
		 * arena has or could import is that long (or the size rounds
		 * past 2^64): then a drain (every CPU asked, every size lean)
		 * would change the caches for nothing. */
		if (err == CAIRN_ENOMEM && cairn_arena_could_hold(qc->a, size, 0)) {
			cairn_qcache_drain_all(qc);
			err = cairn_arena_alloc(qc->a, size, cairn_qcache_cookie(qc), addr);
		}
		return err;
	}
	int err = cairn_mag_try_alloc(qc->mag[q - 1], addr);
	if (__builtin_expect(err == CAIRN_ENOMEM, 0)) {
		/* Free space may sit in the caches of other sizes too. */
		cairn_qcache_drain_all(qc);
		err = cairn_mag_try_alloc(qc->mag[q - 1], addr);
	}
	return err;
}

int cairn_qcache_free(struct cairn_qcache *qc, uint64_t addr, uint64_t size)
{
	unsigned q = size_class(qc, size);
	if (!q)
		return cairn_arena_free(qc->a, addr, size);
	if (!qc->trust_frees) {
		/* Only a range of exactly this class that the cache handed out
		 * may enter a magazine; the arena judges anything else. */
		uint64_t start, len, cookie;
		if (cairn_arena_lookup(qc->a, addr, &start, &len, &cookie) != 0 ||
		    start != addr || len != (uint64_t)q << qc->shift ||
		    cookie != cairn_qcache_cookie(qc))
			return cairn_arena_free(qc->a, addr, size);
	}
	cairn_mag_free(qc->mag[q - 1], addr);
	return 0;
}

/* ---- draining ---- */

void cairn_qcache_poll(struct cairn_qcache *qc)
{
	for (unsigned i = 0; i < qc->max; i++)
		cairn_mag_poll(qc->mag[i]);
}

int cairn_qcache_drain_cpu(struct cairn_qcache *qc, unsigned cpu)
{
	int err = 0;
	for (unsigned i = 0; i < qc->max && !err; i++)
		err = cairn_mag_drain_cpu(qc->mag[i], cpu);
	return err;
}

void cairn_qcache_drain_all(struct cairn_qcache *qc)
{
	for (unsigned i = 0; i < qc->max; i++)
		cairn_mag_drain_all(qc->mag[i]);
}

uint64_t cairn_qcache_cached_quanta(struct cairn_qcache *qc)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < qc->max; i++) {
		struct cairn_mag_stats st;
		cairn_mag_stats(qc->mag[i], &st);
		n += (st.cpu_held + st.depot_items) * (i + 1);
	}
	return n;
}

struct cairn_mag_cache *cairn_qcache_mags(struct cairn_qcache *qc, unsigned quanta)
{
	return quanta >= 1 && quanta <= qc->max ? qc->mag[quanta - 1] : NULL;
}
