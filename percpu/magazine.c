/* SPDX-License-Identifier: MIT */
/*
 * cairn magazines: creation, the per-CPU fast paths and their slow paths.
 * The structures and their invariants are in magazine_layout.h, the depot
 * stacks in depot.h, draining and statistics in magazine_drain.c.
 *
 * The fast paths run inside a CPU-local section, on the slot of the CPU
 * they run on, and touch nothing any other CPU writes except the slot's req
 * word (one relaxed load). Everything they write is either the slot's own
 * magazine (plain memory, held by this CPU only) or the slot's count word
 * (its item count and hits), an atomic with a single writer (relaxed
 * stores), so they need no atomic
 * read-modify-write and no lock. The section keeps the slot ours: in a
 * kernel interrupts are off, so no other context of this CPU can enter it
 * half way; on the host a thread owns its CPU slot.
 */
#include "magazine_layout.h"

#define DEFAULT_MAG_SIZE 63 /* 2^n - 1 items: Linux's batch, and under a frame */
#define DEFAULT_DRAIN_WAIT (1u << 22)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
/* Slow paths stay out of line so that the fast paths need no stack frame. */
#define slow_path __attribute__((noinline, cold))

/* ---- configuration and memory ---- */

struct geometry {
	unsigned ncpus, nslots, mag_size, refill, full, empty, wait;
	uint32_t nmags;
	size_t off_next, off_mag, size;
};

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int geometry(const struct cairn_mag_config *cfg, struct geometry *g)
{
	if (!cfg || !cfg->frames || !cfg->source.get || !cfg->source.put)
		return CAIRN_EINVAL;
	g->ncpus = cfg->ncpus ? cfg->ncpus : cairn_port_cpu_count();
	g->nslots = g->ncpus > cairn_port_cpu_count() ? g->ncpus : cairn_port_cpu_count();
	g->mag_size = cfg->mag_size ? cfg->mag_size : DEFAULT_MAG_SIZE;
	g->refill = cfg->refill ? cfg->refill : g->mag_size;
	g->full = cfg->depot_full ? cfg->depot_full : g->ncpus;
	g->empty = cfg->depot_empty ? cfg->depot_empty : g->ncpus;
	g->wait = cfg->drain_wait ? cfg->drain_wait : DEFAULT_DRAIN_WAIT;
	if (g->ncpus == 0 || g->mag_size > CAIRN_MAG_MAX || g->refill > g->mag_size)
		return CAIRN_EINVAL;
	uint64_t nmags = 2ull * g->ncpus + g->full + g->empty;
	if (nmags > CAIRN_MAG_MAX_MAGS)
		return CAIRN_EINVAL;
	g->nmags = (uint32_t)nmags;
	g->off_next = sizeof(struct cairn_mag_cache) + (size_t)g->nslots * sizeof(struct mag_cpu);
	g->off_mag = align_up(g->off_next + g->nmags * sizeof(_Atomic uint32_t), 8);
	g->size = g->off_mag + g->nmags * sizeof(struct mag *);
	return 0;
}

size_t cairn_mag_mem_size(const struct cairn_mag_config *cfg)
{
	struct geometry g;
	return geometry(cfg, &g) ? 0 : g.size;
}

int cairn_mag_create(struct cairn_mag_cache **out, const struct cairn_mag_config *cfg)
{
	struct geometry g;
	int err = geometry(cfg, &g);
	if (err || !out)
		return err ? err : CAIRN_EINVAL;

	unsigned char *mem = cfg->mem;
	cairn_phys_t phys = 0;
	unsigned order = 0;
	if (mem) {
		if (cfg->mem_size < g.size || ((uintptr_t)mem & 63))
			return CAIRN_EINVAL;
	} else {
		while ((CAIRN_FRAME_SIZE << order) < g.size)
			order++;
		if ((err = cairn_frames_alloc(cfg->frames, order, 0, &phys)))
			return err;
		mem = cairn_port_phys_to_virt(phys);
	}

	struct cairn_mag_cache *mc = (struct cairn_mag_cache *)mem;
	mc->src = cfg->source;
	mc->frames = cfg->frames;
	mc->ncpus = g.ncpus;
	mc->mag_size = g.mag_size;
	mc->refill = g.refill;
	mc->drain_wait = g.wait;
	mc->nmags = g.nmags;
	mc->mem_phys = phys;
	mc->mem_order = order;
	mc->own_mem = !cfg->mem;
	mc->group = cfg->group;
	mc->none = (struct mag){ .n = 0, .cap = 0, .id = DEPOT_NONE };
	mc->next = (_Atomic uint32_t *)(mem + g.off_next);
	mc->mag = (struct mag **)(mem + g.off_mag);
	atomic_init(&mc->lean, 0);
	atomic_init(&mc->lean_gets, 0);
	atomic_init(&mc->drains, 0);

	for (unsigned i = 0; i < g.nslots; i++) {
		struct mag_cpu *c = &mc->cpu[i];
		c->loaded = c->prev = &mc->none;
		c->cap = 0;
		c->seen = 0;
		atomic_init(&c->count, 0);
		atomic_init(&c->hit_wraps, 0);
		atomic_init(&c->prev_n, 0);
		atomic_init(&c->req, 0);
		atomic_init(&c->ack, 0);
		atomic_init(&c->nmag, 0);
		atomic_init(&c->misses, 0);
		atomic_init(&c->exchanges, 0);
	}
	/* Every id starts on the spare stack, without a frame: 0 on top. */
	for (uint32_t i = 0; i < g.nmags; i++) {
		atomic_init(&mc->next[i], i + 1 < g.nmags ? i + 2 : 0);
		mc->mag[i] = NULL;
	}
	atomic_init(&mc->full.head, 0);
	atomic_init(&mc->empty.head, 0);
	atomic_init(&mc->spare.head, (uint64_t)g.nmags << 16 | 1);
	mc->full.limit = g.full;
	mc->empty.limit = g.empty;
	mc->spare.limit = g.nmags;
	atomic_init(&mc->group_next, NULL);
	cairn__mag_group_join(mc); /* last: waiters may poll it from here on */
	*out = mc;
	return 0;
}

/* ---- magazines ---- */

/* An empty magazine: from the depot, else (may_alloc) a new frame. */
static struct mag *mag_get_empty(struct cairn_mag_cache *mc)
{
	uint32_t id = ds_pop(&mc->empty, mc->next);
	if (id != DEPOT_NONE)
		return mc->mag[id];
	if ((id = ds_pop(&mc->spare, mc->next)) == DEPOT_NONE)
		return NULL;
	cairn_phys_t p;
	if (cairn_frames_alloc(mc->frames, 0, 0, &p)) {
		ds_push(&mc->spare, mc->next, id); /* room: the spare limit is nmags */
		return NULL;
	}
	struct mag *m = cairn_port_phys_to_virt(p);
	m->n = 0;
	m->cap = mc->mag_size;
	m->id = id;
	mc->mag[id] = m;
	return m;
}

/* Give an empty magazine's frame back to the frame allocator. */
void cairn__mag_free_frame(struct cairn_mag_cache *mc, struct mag *m)
{
	uint32_t id = m->id;
	mc->mag[id] = NULL;
	cairn_frames_free(mc->frames, cairn_port_virt_to_phys(m), 0);
	ds_push(&mc->spare, mc->next, id);
}

/* Every item of m back to the source. */
void cairn__mag_flush(struct cairn_mag_cache *mc, struct mag *m)
{
	if (m->n) {
		mc->src.put(mc->src.ctx, mag_items(m), m->n);
		m->n = 0;
	}
}

/* An empty magazine we no longer want: to the depot, or its frame freed. */
void cairn__mag_release(struct cairn_mag_cache *mc, struct mag *m)
{
	if (m != &mc->none && !ds_push(&mc->empty, mc->next, m->id))
		cairn__mag_free_frame(mc, m);
}

/* A synced slot's magazines: items to the source, frames to the frame
 * allocator. */
static void slot_let_go(struct cairn_mag_cache *mc, struct mag_cpu *c)
{
	struct mag *m[2] = { c->loaded, c->prev };
	c->loaded = c->prev = &mc->none;
	for (unsigned i = 0; i < 2; i++) {
		if (m[i] == &mc->none)
			continue;
		cairn__mag_flush(mc, m[i]);
		cairn__mag_free_frame(mc, m[i]);
	}
}

/* The slot's magazines let go (draining happens under memory pressure, so
 * keep nothing). */
void cairn__mag_slot_empty(struct cairn_mag_cache *mc, struct mag_cpu *c)
{
	mag_slot_sync(mc, c);
	slot_let_go(mc, c);
	cairn__mag_slot_publish(mc, c);
}

/* After a slow path: the loaded magazine's count and capacity into the slot
 * for the hits (its header's count is stale from here on), prev's count
 * and the magazines for the statistics and the drainers. */
void cairn__mag_slot_publish(struct cairn_mag_cache *mc, struct mag_cpu *c)
{
	c->cap = c->loaded->cap;
	slot_set_n(c, c->loaded->n);
	atomic_store_explicit(&c->prev_n, (uint16_t)c->prev->n, memory_order_relaxed);
	/* release: a drainer that reads 0 returns, and its retry must find
	 * what the slow path put back or pushed (wait_answer) */
	atomic_store_explicit(&c->nmag,
			      (uint16_t)((c->loaded != &mc->none) + (c->prev != &mc->none)),
			      memory_order_release);
}

/* The hits field of a slot's count carried out of the word (slot_count):
 * 2^48 hits more. Out of line, as it happens once in days. */
__attribute__((noinline, cold)) void cairn__mag_hit_wrapped(struct mag_cpu *c)
{
	atomic_store_explicit(&c->hit_wraps,
			      atomic_load_explicit(&c->hit_wraps, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* ---- lean: after a drain, no refills ---- */

/* A drain means memory is short; a miss that then refilled a whole
 * magazine would hoard what the drain gave back, and the next CPU to miss
 * would drain everyone again. So a drain makes the cache lean for the
 * next ncpus * refill misses the depot cannot serve (as many items as every
 * CPU refilling once would take): each takes a single item from the source.
 * A free that finds the depot full ends it at once (memory came back).
 * The word is a hint, read and written by any CPU with relaxed accesses:
 * it decides only how many items a miss asks of the source, never where an
 * item is, so no ordering is needed; a stale or lost update makes one miss
 * take one item or a magazine's worth, both correct. */
void cairn__mag_go_lean(struct cairn_mag_cache *mc)
{
	atomic_store_explicit(&mc->lean, (int32_t)(mc->ncpus * mc->refill),
			      memory_order_relaxed);
}

static bool mag_lean(struct cairn_mag_cache *mc)
{
	return atomic_load_explicit(&mc->lean, memory_order_relaxed) > 0;
}

void cairn__mag_end_lean(struct cairn_mag_cache *mc)
{
	if (mag_lean(mc)) /* a store only when it changes something */
		atomic_store_explicit(&mc->lean, 0, memory_order_relaxed);
}

/* ---- alloc ---- */

static slow_path int alloc_slow(struct cairn_mag_cache *mc, struct mag_cpu *c, uint64_t *item)
{
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	uint32_t n = count_n(w);
	if (n) { /* a hit after all (we may run on another CPU than the fast
		    path did, or an interrupt freed meanwhile) */
		*item = mag_items(c->loaded)[n - 1];
		slot_count(c, w, MAG_HIT_ALLOC);
		return 0;
	}
	mag_slot_sync(mc, c);
	struct mag *l = c->loaded, *p = c->prev;
	if (p->n) { /* prev is full: swap (prev is always full, empty or none) */
		c->loaded = p;
		c->prev = l;
		*item = mag_items(p)[--p->n];
		slot_count_hit(c);
		cairn__mag_slot_publish(mc, c);
		return 0;
	}
	stat_add(&c->misses, 1);
	uint32_t id = ds_pop(&mc->full, mc->next);
	if (id != DEPOT_NONE) { /* a full one for our empty prev */
		cairn__mag_release(mc, p);
		c->prev = l;
		c->loaded = mc->mag[id];
		stat_add(&c->exchanges, 1);
		goto take;
	}

	/* The depot has nothing. Lean: one item from the source, and the
	 * magazines stay as they are. */
	if (mag_lean(mc)) {
		bool got = mc->src.get(mc->src.ctx, item, 1);
		if (!got) { /* exhausted: as below */
			slot_let_go(mc, c);
			got = mc->src.get(mc->src.ctx, item, 1);
		}
		cairn__mag_slot_publish(mc, c);
		if (!got)
			return CAIRN_ENOMEM; /* (the caller drains everyone) */
		atomic_fetch_sub_explicit(&mc->lean, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&mc->lean_gets, 1, memory_order_relaxed);
		return 0;
	}

	/* Refill an empty magazine from the source. */
	struct mag *m = l != &mc->none ? l : p != &mc->none ? p : mag_get_empty(mc);
	if (m) {
		if (m == p)
			c->prev = &mc->none;
		c->loaded = m;
		m->n = (uint32_t)mc->src.get(mc->src.ctx, mag_items(m), mc->refill);
		if (m->n)
			goto take;
	}
	/* The source is exhausted, and both our magazines are empty: their
	 * frames may be what the caller needs (a frame cache), so let them go
	 * before one last try; failing it, the caller drains everyone. */
	slot_let_go(mc, c);
	cairn__mag_slot_publish(mc, c);
	return mc->src.get(mc->src.ctx, item, 1) ? 0 : CAIRN_ENOMEM;

take:
	*item = mag_items(c->loaded)[--c->loaded->n];
	cairn__mag_slot_publish(mc, c);
	return 0;
}

/* Everything but a hit: a CPU without a slot, a drain request to answer,
 * an empty loaded magazine. A section of its own: the fast path's ended. */
static slow_path int alloc_miss(struct cairn_mag_cache *mc, uint64_t *item)
{
	unsigned long irq = cairn_port_local_enter();
	unsigned cpu = cairn_port_cpu();
	int err;
	if (cpu >= mc->ncpus) { /* a bypass slot */
		err = mc->src.get(mc->src.ctx, item, 1) ? 0 : CAIRN_ENOMEM;
	} else {
		struct mag_cpu *c = &mc->cpu[cpu];
		if (mag_asked(c))
			cairn__mag_answer(mc, c); /* (empties the slot) */
		err = alloc_slow(mc, c, item);
	}
	cairn_port_local_leave(irq);
	return err;
}

int cairn_mag_try_alloc(struct cairn_mag_cache *mc, uint64_t *item)
{
	if (likely(mag_hit_alloc(mc->cpu, item)))
		return 0;
	return alloc_miss(mc, item);
}

int cairn_mag_alloc(struct cairn_mag_cache *mc, uint64_t *item)
{
	int err = cairn_mag_try_alloc(mc, item);
	if (likely(err != CAIRN_ENOMEM))
		return err;
	cairn_mag_drain_all(mc);
	return cairn_mag_try_alloc(mc, item);
}

/* ---- free ---- */

static slow_path void free_slow(struct cairn_mag_cache *mc, struct mag_cpu *c, uint64_t item)
{
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	uint32_t n = count_n(w);
	if (n < c->cap) { /* a hit after all (see alloc_slow) */
		mag_items(c->loaded)[n] = item;
		slot_count(c, w, MAG_HIT_FREE);
		return;
	}
	mag_slot_sync(mc, c);
	struct mag *l = c->loaded, *p = c->prev;
	if (p->n < p->cap) { /* prev is empty: swap */
		c->loaded = p;
		c->prev = l;
		mag_items(p)[p->n++] = item;
		slot_count_hit(c);
		cairn__mag_slot_publish(mc, c);
		return;
	}
	stat_add(&c->misses, 1);
	if (p != &mc->none) {
		if (!ds_push(&mc->full, mc->next, p->id)) {
			/* The depot is at its limit: the full prev's items go
			 * to the source and it becomes our empty magazine.
			 * Memory is plentiful: refills may hoard again. */
			cairn__mag_end_lean(mc);
			cairn__mag_flush(mc, p);
			c->loaded = p;
			c->prev = l;
			goto put;
		}
		stat_add(&c->exchanges, 1);
	}
	/* prev went to the depot: loaded (full, or none) becomes prev */
	c->prev = l;
	c->loaded = mag_get_empty(mc);
	if (c->loaded)
		goto put;
	/* No magazine to be had (memory is short): empty the one we have, or
	 * give the item itself back. */
	c->loaded = &mc->none;
	if (l != &mc->none) {
		cairn__mag_flush(mc, l);
		c->loaded = l;
		c->prev = &mc->none;
		goto put;
	}
	cairn__mag_slot_publish(mc, c);
	mc->src.put(mc->src.ctx, &item, 1);
	return;
put:
	mag_items(c->loaded)[c->loaded->n++] = item;
	cairn__mag_slot_publish(mc, c);
}

static slow_path void free_miss(struct cairn_mag_cache *mc, uint64_t item)
{
	unsigned long irq = cairn_port_local_enter();
	unsigned cpu = cairn_port_cpu();
	if (cpu >= mc->ncpus) { /* a bypass slot */
		mc->src.put(mc->src.ctx, &item, 1);
	} else {
		struct mag_cpu *c = &mc->cpu[cpu];
		if (mag_asked(c))
			cairn__mag_answer(mc, c); /* (empties the slot) */
		free_slow(mc, c, item);
	}
	cairn_port_local_leave(irq);
}

void cairn_mag_free(struct cairn_mag_cache *mc, uint64_t item)
{
	if (likely(mag_hit_free(mc->cpu, item)))
		return;
	free_miss(mc, item);
}
