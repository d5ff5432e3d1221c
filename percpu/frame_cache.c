/* SPDX-License-Identifier: MIT */
/*
 * The frame cache: one magazine cache per cached order, each with the frame
 * allocator as its source. Orders 0 and 9 refill and drain with the bulk
 * calls; orders 1 to 3 with loops of single allocations and frees. A hit
 * of any cached order is served inline, without a call into the magazine
 * layer; misses go through cairn_mag_*.
 */
#include <cairn/frame_cache.h>

#include "cache_frame.h"
#include "magazine_layout.h"

static const unsigned cached_order[CAIRN_FCACHE_ORDERS] = { 0, 1, 2, 3, CAIRN_HUGE_ORDER };
static const unsigned default_mag_size[CAIRN_FCACHE_ORDERS] = { 63, 31, 15, 15, 8 };

struct fc_source {
	struct cairn_frames *f;
	unsigned order;
	bool hold; /* order 9 unless trust_frees: blocks in magazines held */
};

struct cairn_fcache {
	struct cairn_frames *f;
	struct fc_source src[CAIRN_FCACHE_ORDERS];
	struct cairn_mag_cache *mag[CAIRN_FCACHE_ORDERS];
	struct mag_cpu *slots[CAIRN_FCACHE_ORDERS]; /* mag[i]->cpu, for the hits */
	cairn_phys_t self; /* the frame this structure lives in */
	bool trust_frees;
	struct cairn_mag_group own_group; /* unless the config names one */
};

_Static_assert(sizeof(struct cairn_fcache) <= CAIRN_FRAME_SIZE, "a frame cache lives in one frame");

#define HUGE_INDEX 4

static inline int order_index(unsigned order)
{
	return order <= 3 ? (int)order : order == CAIRN_HUGE_ORDER ? HUGE_INDEX : -1;
}

/* ---- the frame allocator as a source of items ---- */

static size_t get0(void *ctx, uint64_t *items, size_t n)
{
	struct fc_source *s = ctx;
	return cairn_frames_alloc_bulk(s->f, 0, items, n);
}

/* Every item passed cairn_fcache_free's check, so a bulk free fails only
 * on a double free whose first free was still cached: the frame allocator
 * reports that item, and the rest of the batch is freed past it (a bulk
 * free stops at its first bad item). */
static void put_past_bad(int (*free_bulk)(struct cairn_frames *, const cairn_phys_t *,
					  size_t, size_t *),
			 struct cairn_frames *f, const uint64_t *items, size_t n)
{
	size_t done;
	for (size_t off = 0; off < n; off += done + 1)
		if (!free_bulk(f, items + off, n - off, &done))
			break;
}

static void put0(void *ctx, const uint64_t *items, size_t n)
{
	put_past_bad(cairn_frames_free_bulk, ((struct fc_source *)ctx)->f, items, n);
}

/* Order 9: every block in a magazine is held in the frame allocator
 * (cairn_frames_huge_hold), so that a free of a block whose first free is
 * cached is refused wherever it goes: the cache's check, the pass, the
 * frame allocator's own free. Blocks come from a refill held, and leave
 * the cache unheld: to the caller (the alloc paths) or to the frame
 * allocator (here, before the bulk free, which frees unheld blocks only).
 * With trust_frees nothing is held: the cache checks nothing. */
static size_t get9(void *ctx, uint64_t *items, size_t n)
{
	struct fc_source *s = ctx;
	size_t got = cairn_frames_alloc_bulk_huge(s->f, 0, items, n);
	for (size_t i = 0; s->hold && i < got; i++)
		(void)cairn_frames_huge_hold(s->f, items[i]);
	return got;
}

static void put9(void *ctx, const uint64_t *items, size_t n)
{
	struct fc_source *s = ctx;
	for (size_t i = 0; s->hold && i < n; i++)
		cairn_frames_huge_unhold(s->f, items[i]);
	put_past_bad(cairn_frames_free_bulk_huge, s->f, items, n);
}

static size_t getk(void *ctx, uint64_t *items, size_t n)
{
	struct fc_source *s = ctx;
	size_t i = 0;
	while (i < n && cairn_frames_alloc(s->f, s->order, 0, &items[i]) == 0)
		i++;
	return i;
}

static void putk(void *ctx, const uint64_t *items, size_t n)
{
	struct fc_source *s = ctx;
	for (size_t i = 0; i < n; i++)
		(void)cairn_frames_free(s->f, items[i], s->order);
}

/* ---- setup ---- */

int cairn_fcache_create(struct cairn_fcache **out, struct cairn_frames *f,
			const struct cairn_fcache_config *cfg)
{
	static const struct cairn_fcache_config defaults;
	if (!out || !f)
		return CAIRN_EINVAL;
	if (!cfg)
		cfg = &defaults;
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS; i++)
		if (cfg->mag_size[i] > CAIRN_MAG_MAX)
			return CAIRN_EINVAL;
	cairn_phys_t self;
	int err = cairn_frames_alloc(f, 0, 0, &self);
	if (err)
		return err;
	struct cairn_fcache *fc = cache_frame_place(self, sizeof(*fc));
	fc->f = f;
	fc->self = self;
	fc->trust_frees = cfg->trust_frees;
	/* One drain group for the orders at least: an allocation of one
	 * order drains them all, and two CPUs short of different orders
	 * must answer each other while they wait. */
	atomic_init(&fc->own_group.head, NULL);
	atomic_init(&fc->own_group.lock, 0);
	atomic_init(&fc->own_group.walkers, 0);
	struct cairn_mag_group *group = cfg->group ? cfg->group : &fc->own_group;
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS; i++) {
		unsigned k = cached_order[i];
		fc->src[i] = (struct fc_source){ f, k, k == CAIRN_HUGE_ORDER && !cfg->trust_frees };
		struct cairn_mag_config mcfg = {
			.source = { k == 0 ? get0 : k == CAIRN_HUGE_ORDER ? get9 : getk,
				    k == 0 ? put0 : k == CAIRN_HUGE_ORDER ? put9 : putk,
				    &fc->src[i] },
			.frames = f,
			.ncpus = cfg->ncpus,
			.mag_size = cfg->mag_size[i] ? cfg->mag_size[i] : default_mag_size[i],
			.depot_full = cfg->depot_full,
			.depot_empty = cfg->depot_empty,
			.drain_wait = cfg->drain_wait,
			.group = group,
		};
		if ((err = cairn_mag_create(&fc->mag[i], &mcfg))) {
			while (i--)
				cairn_mag_destroy(fc->mag[i]);
			cairn_frames_free(f, self, 0);
			return err;
		}
		fc->slots[i] = fc->mag[i]->cpu;
	}
	*out = fc;
	return 0;
}

void cairn_fcache_destroy(struct cairn_fcache *fc)
{
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS; i++)
		cairn_mag_destroy(fc->mag[i]);
	cairn_frames_free(fc->f, fc->self, 0);
}

/* ---- alloc and free ---- */

/* Only "any area" requests are cached: a cached frame may come from any
 * area, so a request restricted to some areas goes to the frame allocator,
 * which knows them. */
static inline bool cacheable(unsigned flags)
{
	unsigned areas = flags & CAIRN_F_ANY;
	return (areas == 0 || areas == CAIRN_F_ANY) && !(flags & ~(CAIRN_F_ANY | CAIRN_F_ZERO));
}

static void zero_block(cairn_phys_t phys, unsigned order)
{
	/* A plain loop: the freestanding build must not turn it into memset. */
	uint64_t *p = cairn_port_phys_to_virt(phys);
	for (uint64_t i = 0; i < (CAIRN_FRAME_SIZE << order) / 8; i++)
		p[i] = 0;
}

/* The check of a free of cached order i before the block enters a
 * magazine: allocated in the frame allocator, and at order 9 not held
 * (which it then becomes: see get9). Not with trust_frees. */
static inline bool free_check(struct cairn_fcache *fc, int i, cairn_phys_t phys, unsigned order)
{
	return i == HUGE_INDEX ? cairn_frames_huge_hold(fc->f, phys)
			       : cairn_frames_is_allocated(fc->f, phys, order);
}

/* A block of cached order i leaves the cache for the caller: at order 9
 * no longer held, so that the caller's free is accepted. */
static inline void block_out(struct cairn_fcache *fc, int i, cairn_phys_t phys)
{
	if (i == HUGE_INDEX && fc->src[i].hold)
		cairn_frames_huge_unhold(fc->f, phys);
}

static __attribute__((noinline)) int alloc_slow(struct cairn_fcache *fc, unsigned order,
						unsigned flags, cairn_phys_t *out)
{
	/* On exhaustion every CPU's caches go back and the request is tried
	 * once more, unless no region could ever hold the block: then what
	 * the caches hold cannot help, and a drain would only empty every
	 * CPU's magazines and leave the caches lean, at every such call. */
	int i = order_index(order);
	if (i < 0 || !cacheable(flags)) {
		int err = cairn_frames_alloc(fc->f, order, flags, out);
		if (err == CAIRN_ENOMEM && cairn_frames_could_hold(fc->f, order, flags)) {
			cairn_fcache_drain_all(fc);
			err = cairn_frames_alloc(fc->f, order, flags, out);
		}
		return err;
	}
	int err = cairn_mag_try_alloc(fc->mag[i], out);
	if (__builtin_expect(err == CAIRN_ENOMEM, 0) &&
	    cairn_frames_could_hold(fc->f, order, flags)) {
		/* Frames may sit in the caches of other orders too. */
		cairn_fcache_drain_all(fc);
		err = cairn_mag_try_alloc(fc->mag[i], out);
	}
	if (err)
		return err;
	block_out(fc, i, *out);
	if (flags & CAIRN_F_ZERO)
		zero_block(*out, order);
	return 0;
}

/* Declared inline (still an external definition: the header's declaration
 * is not), as cairn_heap_free: with LTO a caller's allocation then takes
 * the hit whole instead of a call; GCC's size estimate, which counts each
 * atomic load and store as a call, kept it out of line before. */
inline int cairn_fcache_alloc(struct cairn_fcache *fc, unsigned order, unsigned flags,
			      cairn_phys_t *out)
{
	/* Order 0 first, with its cache named outright: the common request
	 * pays for no index. */
	if (__builtin_expect(order == 0 && flags == 0, 1)) {
		if (mag_hit_alloc(fc->slots[0], out))
			return 0;
	} else {
		int i = order_index(order);
		if (i >= 0 && flags == 0 && mag_hit_alloc(fc->slots[i], out)) {
			block_out(fc, i, *out);
			return 0;
		}
	}
	return alloc_slow(fc, order, flags, out);
}

static __attribute__((noinline)) int free_slow(struct cairn_fcache *fc, cairn_phys_t phys,
					       unsigned order)
{
	int i = order_index(order);
	if (i < 0)
		return cairn_frames_free(fc->f, phys, order);
	if (phys & ((CAIRN_FRAME_SIZE << order) - 1)) {
		cairn_port_report(CAIRN_EALIGN, "fcache: free of a misaligned block", phys, order);
		return CAIRN_EALIGN;
	}
	/* Checked before the block enters a magazine: if it is not a block of
	 * this order allocated in the frame allocator, let the frame allocator
	 * say what it is instead (it rejects it and changes nothing). */
	if (!fc->trust_frees && !free_check(fc, i, phys, order))
		return cairn_frames_free(fc->f, phys, order);
	cairn_mag_free(fc->mag[i], phys);
	return 0;
}

/* A hit of cairn_fcache_free at order 0: the block checked as in
 * free_slow, into a loaded magazine with room. */
static inline bool free_hit0(struct cairn_fcache *fc, cairn_phys_t phys)
{
	return !(phys & (CAIRN_FRAME_SIZE - 1)) &&
	       (fc->trust_frees || cairn_frames_is_allocated(fc->f, phys, 0)) &&
	       mag_hit_free(fc->slots[0], phys);
}

/* A free of the other cached orders that finds both of its CPU's
 * magazines full and the depot too (mag_full_past_depot): the magazine
 * layer could only flush prev to the frame allocator, whose free checks
 * every block again, so the block goes to the frame allocator's free
 * instead, checked once, by it, and the magazines stay as they are. Called
 * inside the caller's section, as the magazine layer's own puts to the
 * source are: the slot is ours until the miss is counted. A refused block
 * counts nothing and changes nothing (the frame allocator's error); a
 * freed one is the slot's miss, and memory came back, so lean ends (as in
 * the magazine layer's free_slow). Not with trust_frees: there the cache
 * checks nothing, and the flush's bulk free costs less per block than a
 * single free. */
static __attribute__((noinline)) int free_pass(struct cairn_fcache *fc,
					       struct cairn_mag_cache *mc, struct mag_cpu *c,
					       cairn_phys_t phys, unsigned order)
{
	int err = cairn_frames_free(fc->f, phys, order);
	if (!err) {
		stat_add(&c->misses, 1);
		cairn__mag_end_lean(mc);
	}
	return err;
}

/* cairn_fcache_free of the other cached orders: 0 freed, an error, or 1
 * for free_slow. The slot first: the cache's check (inside the section)
 * only when the loaded magazine has room, so that a free the magazines
 * cannot take pays no check before free_pass gives it to the frame
 * allocator. The check reads only the frame allocator's records; in a
 * kernel it runs with interrupts off, a few loads longer. Order 0 keeps
 * the check first: its check is inline, and its hits are what the cache
 * is for. */
static inline int free_other(struct cairn_fcache *fc, int i, cairn_phys_t phys, unsigned order)
{
	if (phys & ((CAIRN_FRAME_SIZE << order) - 1))
		return 1;
	struct cairn_mag_cache *mc = fc->mag[i];
	int ret = 1;
	unsigned long irq = cairn_port_local_enter();
	struct mag_cpu *c = mag_my_slot(mc);
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	uint32_t n = count_n(w);
	if (mag_likely(!mag_asked(c))) {
		if (mag_likely(n < c->cap)) {
			if (fc->trust_frees || free_check(fc, i, phys, order)) {
				mag_items(c->loaded)[n] = phys;
				slot_count(c, w, MAG_HIT_FREE);
				ret = 0;
			}
		} else if (!fc->trust_frees && mag_full_past_depot(mc, c)) {
			ret = free_pass(fc, mc, c, phys, order);
		}
	}
	cairn_port_local_leave(irq);
	return ret;
}

int cairn_fcache_free(struct cairn_fcache *fc, cairn_phys_t phys, unsigned order)
{
	/* Anything but a hit or a pass (free_other; a failed check included)
	 * takes the slow path, which checks again and names the error. Order
	 * 0 first, as in cairn_fcache_alloc: with the constants inlined its
	 * check is the order-0 one, with no test of the order. */
	if (__builtin_expect(order == 0, 1)) {
		if (free_hit0(fc, phys))
			return 0;
	} else {
		int i = order_index(order);
		int ret = i >= 0 ? free_other(fc, i, phys, order) : 1;
		if (ret <= 0)
			return ret;
	}
	return free_slow(fc, phys, order);
}

/* ---- draining ---- */

void cairn_fcache_poll(struct cairn_fcache *fc)
{
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS; i++)
		cairn_mag_poll(fc->mag[i]);
}

int cairn_fcache_drain_cpu(struct cairn_fcache *fc, unsigned cpu)
{
	int err = 0;
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS && !err; i++)
		err = cairn_mag_drain_cpu(fc->mag[i], cpu);
	return err;
}

void cairn_fcache_drain_all(struct cairn_fcache *fc)
{
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS; i++)
		cairn_mag_drain_all(fc->mag[i]);
}

struct cairn_mag_cache *cairn_fcache_mags(struct cairn_fcache *fc, unsigned order)
{
	int i = order_index(order);
	return i < 0 ? NULL : fc->mag[i];
}

uint64_t cairn_fcache_cached_frames(struct cairn_fcache *fc)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < CAIRN_FCACHE_ORDERS; i++) {
		struct cairn_mag_stats st;
		cairn_mag_stats(fc->mag[i], &st);
		n += (st.cpu_held + st.depot_items) << cached_order[i];
	}
	return n;
}
