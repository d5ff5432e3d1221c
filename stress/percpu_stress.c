/* SPDX-License-Identifier: MIT */
/* The per-CPU cache stress: see percpu_stress.h. */
#include "percpu_stress.h"

static void fail(struct stress_percpu *s, int err, const char *what, uint64_t a, uint64_t b)
{
	stress_fail(&s->blocks, err, what, a, b);
}

static void barrier_idle(void *fc)
{
	cairn_fcache_poll(fc);
}

/* Waiting CPUs keep answering drain requests: a CPU that is exhausting
 * memory may be waiting for their answer. */
static void barrier(struct stress_percpu *s)
{
	stress_barrier_wait(&s->barrier, s->ncpus, barrier_idle, s->fc);
}

static void give_back(struct stress_percpu *s, struct stress_cpu *c, unsigned me, unsigned i)
{
	struct stress_held h;
	if (!stress_release(&s->blocks, c, me, i, &h))
		return;
	int err = cairn_fcache_free(s->fc, h.phys, h.order);
	if (err)
		fail(s, err, "percpu stress: free of a held block failed", h.phys, h.order);
}

static void alloc_one(struct stress_percpu *s, struct stress_cpu *c, unsigned me)
{
	uint64_t *r = &c->rng, x = stress_below(r, 100);
	/* mostly cached orders; some passed through */
	unsigned k = x < 55 ? 0 : x < 80 ? 1 + (unsigned)stress_below(r, 3) : x < 86 ? 9
		   : 4 + (unsigned)stress_below(r, 5);
	unsigned flags = 0;
	x = stress_below(r, 100);
	if (x < 8)
		flags = (unsigned)stress_below(r, 7) + 1; /* some areas, or all of them */
	if (stress_below(r, 30) == 0)
		flags |= CAIRN_F_ZERO;
	cairn_phys_t p;
	int err = cairn_fcache_alloc(s->fc, k, flags, &p);
	if (err == CAIRN_ENOMEM) {
		c->enomem++;
		return;
	}
	if (err) {
		fail(s, err, "percpu stress: alloc failed", k, flags);
		return;
	}
	if (p & ((CAIRN_FRAME_SIZE << k) - 1))
		fail(s, CAIRN_EALIGN, "percpu stress: misaligned block", p, k);
	if ((flags & CAIRN_F_ANY) && !(stress_area_of(p) & flags))
		fail(s, CAIRN_ERANGE, "percpu stress: block outside the areas asked for", p, flags);
	if ((flags & CAIRN_F_ZERO) && !stress_zeroed(p, k))
		fail(s, CAIRN_ECORRUPT, "percpu stress: zeroed block not zero", p, k);
	stress_take(&s->blocks, c, me, p, k);
}

static void mixed_op(struct stress_percpu *s, struct stress_cpu *c, unsigned me)
{
	uint64_t x = stress_below(&c->rng, 1000);
	if (c->nheld + 4 >= SP_HELD || (x < 420 && c->nheld)) {
		give_back(s, c, me, (unsigned)stress_below(&c->rng, c->nheld));
	} else if (x < 850) {
		alloc_one(s, c, me);
	} else if (x < 950) {
		stress_swap(&s->blocks, c, me);
	} else if (x < 990) {
		cairn_fcache_poll(s->fc);
	} else if (x < 999) {
		/* this CPU goes offline and comes back: its slot empties */
		unsigned long irq = cairn_port_local_enter();
		cairn_fcache_drain_cpu(s->fc, cairn_port_cpu());
		cairn_port_local_leave(irq);
		c->offline++;
	} else {
		cairn_fcache_drain_all(s->fc); /* memory pressure */
	}
	stress_plant(&s->blocks, c, me, s->plant);
}

/* Allocate every frame there is through the cache, threading the frames
 * into a list through their first word; then nothing may be left. */
static void exhaust(struct stress_percpu *s, struct stress_cpu *c, unsigned me)
{
	cairn_phys_t list = 0, p;
	while (cairn_fcache_alloc(s->fc, 0, 0, &p) == 0) {
		if (!stress_move(&s->blocks, p, 0, 0, me + 1))
			continue;
		*(cairn_phys_t *)cairn_port_phys_to_virt(p) = list;
		list = p;
		c->exhaust_frames++;
	}
	barrier(s);
	if (me == 0) {
		uint64_t left = stress_free_frames(s->f), cached = cairn_fcache_cached_frames(s->fc);
		if (left || cached)
			fail(s, CAIRN_ENOMEM, "percpu stress: ENOMEM while frames are free or cached",
			     left, cached);
		if (cairn_fcache_alloc(s->fc, 0, 0, &p) != CAIRN_ENOMEM)
			fail(s, CAIRN_ECORRUPT, "percpu stress: allocation from exhausted memory", p, 0);
	}
	barrier(s);
	while (list) {
		cairn_phys_t next = *(cairn_phys_t *)cairn_port_phys_to_virt(list);
		if (stress_move(&s->blocks, list, 0, me + 1, 0)) {
			int err = cairn_fcache_free(s->fc, list, 0);
			if (err)
				fail(s, err, "percpu stress: free after exhaustion failed", list, 0);
		}
		list = next;
	}
}

void stress_percpu_init(struct stress_percpu *s)
{
	stress_barrier_init(&s->barrier);
	stress_blocks_init(&s->blocks);
	s->free_at_start = stress_free_frames(s->f);
	for (unsigned i = 0; i < s->ncpus; i++)
		stress_cpu_init(&s->cpu[i], s->seed * 0x100000001b3ull + i);
}

static int give_cached(void *fc, cairn_phys_t phys, unsigned order)
{
	return cairn_fcache_free(fc, phys, order);
}

void stress_percpu_worker(struct stress_percpu *s, struct stress_cpu *c, unsigned me, uint64_t ops)
{
	for (uint64_t i = 0; i < ops; i++, c->ops++)
		mixed_op(s, c, me);
	while (c->nheld)
		give_back(s, c, me, c->nheld - 1);
	unsigned long irq = cairn_port_local_enter();
	cairn_fcache_drain_cpu(s->fc, cairn_port_cpu());
	cairn_port_local_leave(irq);
}

uint64_t stress_percpu_finish(struct stress_percpu *s)
{
	stress_mailbox_empty(&s->blocks, give_cached, s->fc);
	cairn_fcache_drain_all(s->fc);
	if (cairn_fcache_cached_frames(s->fc))
		fail(s, CAIRN_ECORRUPT, "percpu stress: frames cached after drain_all",
		     cairn_fcache_cached_frames(s->fc), 0);
	if (cairn_frames_validate(s->f))
		fail(s, CAIRN_ECORRUPT, "percpu stress: validate failed at the end", 0, 0);
	if (stress_free_frames(s->f) != s->free_at_start)
		fail(s, CAIRN_ECORRUPT, "percpu stress: frames lost", stress_free_frames(s->f),
		     s->free_at_start);
	return atomic_load_explicit(&s->blocks.errors, memory_order_relaxed);
}

uint64_t stress_percpu_cpu(struct stress_percpu *s, unsigned me)
{
	struct stress_cpu *c = &s->cpu[me];
	unsigned phases = s->phases ? s->phases : 1;
	barrier(s);
	for (unsigned ph = 0; ph < phases; ph++) {
		for (uint64_t i = 0; i < s->ops / phases; i++, c->ops++)
			mixed_op(s, c, me);
		barrier(s);
		exhaust(s, c, me);
		barrier(s);
	}
	while (c->nheld)
		give_back(s, c, me, c->nheld - 1);
	barrier(s);
	if (me == 0)
		stress_percpu_finish(s); /* the others answer drains in the barrier */
	barrier(s);
	return atomic_load_explicit(&s->blocks.errors, memory_order_relaxed);
}
