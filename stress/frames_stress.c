/* SPDX-License-Identifier: MIT */
/* The frames stress: random mixes, swaps between CPUs, exhaustion phases. */
#include "frames_stress.h"

static void fail(struct stress_frames *s, int err, const char *what, uint64_t a, uint64_t b)
{
	stress_fail(&s->blocks, err, what, a, b);
}

static void barrier(struct stress_frames *s)
{
	stress_barrier_wait(&s->barrier, s->ncpus, NULL, NULL);
}

static void give_back(struct stress_frames *s, struct stress_cpu *c, unsigned me, unsigned i)
{
	struct stress_held h;
	if (!stress_release(&s->blocks, c, me, i, &h))
		return;
	int err = cairn_frames_free(s->f, h.phys, h.order);
	if (err)
		fail(s, err, "stress: free of a held block failed", h.phys, h.order);
}

static unsigned random_order(uint64_t *r)
{
	uint64_t x = stress_below(r, 1000);
	return x < 600 ? 0 : x < 850 ? 1 + (unsigned)stress_below(r, 3) : x < 960 ? 4 + (unsigned)stress_below(r, 5)
		: x < 995 ? 9 : 10;
}

static void mixed_op(struct stress_frames *s, struct stress_cpu *c, unsigned me)
{
	uint64_t *r = &c->rng;
	uint64_t x = stress_below(r, 100);
	if (c->nheld + 16 >= STRESS_HELD || (x < 40 && c->nheld)) {
		give_back(s, c, me, (unsigned)stress_below(r, c->nheld));
	} else if (x < 75) {
		unsigned k = random_order(r), a = k + (stress_below(r, 8) == 0 ? (unsigned)stress_below(r, 4) : 0);
		unsigned flags = (unsigned)stress_below(r, 8) | (stress_below(r, 50) == 0 ? CAIRN_F_ZERO : 0);
		cairn_phys_t p;
		if (a > CAIRN_MAX_ORDER)
			a = CAIRN_MAX_ORDER;
		/* Naturally aligned requests go through cairn_frames_alloc, whose
		 * own fast paths (order 0 and 9) the general path never runs. */
		int err = a == k ? cairn_frames_alloc(s->f, k, flags, &p)
				 : cairn_frames_alloc_aligned(s->f, k, a, flags, &p);
		if (err == 0) {
			if (p & ((CAIRN_FRAME_SIZE << a) - 1))
				fail(s, CAIRN_EALIGN, "stress: misaligned block", p, a);
			if ((flags & CAIRN_F_ANY) && !(stress_area_of(p) & flags))
				fail(s, CAIRN_ERANGE, "stress: block outside the areas asked for", p, flags);
			if ((flags & CAIRN_F_ZERO) && !stress_zeroed(p, k))
				fail(s, CAIRN_ECORRUPT, "stress: zeroed block not zero", p, k);
			stress_take(&s->blocks, c, me, p, k);
		} else if (err == CAIRN_ENOMEM) {
			c->enomem++;
		} else {
			fail(s, err, "stress: alloc failed", k, a);
		}
	} else if (x < 85) {
		cairn_phys_t v[16];
		size_t n = cairn_frames_alloc_bulk(s->f, 0, v, 1 + stress_below(r, 16));
		for (size_t i = 0; i < n; i++)
			stress_take(&s->blocks, c, me, v[i], 0);
	} else if (x < 92) {
		stress_swap(&s->blocks, c, me);
	} else if (c->nheld) {
		/* reserve a small range next to a held block; usually busy */
		struct stress_held h = c->held[stress_below(r, c->nheld)];
		cairn_phys_t p = h.phys + (CAIRN_FRAME_SIZE << h.order);
		uint64_t n = 1 + stress_below(r, 8);
		int err = cairn_frames_reserve(s->f, p, n * CAIRN_FRAME_SIZE);
		if (err == 0) {
			for (uint64_t i = 0; i < n; i++)
				stress_take(&s->blocks, c, me, p + i * CAIRN_FRAME_SIZE, 0);
		} else if (err != CAIRN_EBUSY && err != CAIRN_ERANGE) {
			fail(s, err, "stress: reserve failed", p, n);
		}
	}
	stress_plant(&s->blocks, c, me, s->plant);
}

/* Take up to 64 order-0 frames: in bulk, or (`single`) one at a time
 * through cairn_frames_alloc's fast path, which must find every frame as
 * well (parked ones included). *empty: the allocator said nothing is free
 * (bulk: it stored none; single: a call returned ENOMEM). */
static size_t take_some(struct stress_frames *s, bool single, cairn_phys_t *v, bool *empty)
{
	if (!single) {
		size_t n = cairn_frames_alloc_bulk(s->f, 0, v, 64);
		*empty = n == 0;
		return n;
	}
	size_t n = 0;
	while (n < 64 && cairn_frames_alloc(s->f, 0, 0, &v[n]) == 0)
		n++;
	*empty = n < 64;
	return n;
}

/* One batch of an exhaustion phase, checked against the others' ENOMEM.
 * Nobody frees while the phase allocates, so free memory only shrinks: an
 * ENOMEM returned before a call starts leaves nothing for that call. The
 * flag is stored after an ENOMEM returned and loaded before the next call
 * (both seq_cst); a call that sees it set and still gets a frame proves
 * the earlier ENOMEM false, though the phase's end would find the memory
 * exhausted all the same. */
static size_t exhaust_batch(struct stress_frames *s, bool single, cairn_phys_t *v)
{
	bool empty, after = atomic_load(&s->enomem_seen) != 0;
	size_t n = take_some(s, single, v, &empty);
	if (after && n)
		fail(s, CAIRN_ENOMEM, "stress: a frame allocated after an ENOMEM of the "
		     "exhaustion phase", v[0], n);
	if (empty)
		atomic_store(&s->enomem_seen, 1);
	return n;
}

/* Allocate every frame there is, threading the frames into a list through
 * their own first word, then check nothing is left. */
static void exhaust(struct stress_frames *s, struct stress_cpu *c, unsigned me, bool single)
{
	cairn_phys_t list = 0, v[64];
	size_t n;
	while ((n = exhaust_batch(s, single, v)) > 0) {
		for (size_t i = 0; i < n; i++) {
			if (!stress_move(&s->blocks, v[i], 0, 0, me + 1))
				continue;
			*(cairn_phys_t *)cairn_port_phys_to_virt(v[i]) = list;
			list = v[i];
			c->exhaust_frames++;
		}
	}
	barrier(s);
	if (me == 0) {
		cairn_phys_t p;
		atomic_store(&s->enomem_seen, 0); /* the next phase starts afresh */
		if (stress_free_frames(s->f) != 0)
			fail(s, CAIRN_ENOMEM, "stress: ENOMEM while frames are free", stress_free_frames(s->f), 0);
		if (cairn_frames_alloc(s->f, 0, 0, &p) != CAIRN_ENOMEM)
			fail(s, CAIRN_ECORRUPT, "stress: allocation from exhausted memory", p, 0);
	}
	barrier(s);
	while (list) {
		cairn_phys_t next = *(cairn_phys_t *)cairn_port_phys_to_virt(list);
		size_t k = 0;
		while (list && k < 64) {
			next = *(cairn_phys_t *)cairn_port_phys_to_virt(list);
			if (stress_move(&s->blocks, list, 0, me + 1, 0))
				v[k++] = list;
			list = next;
		}
		size_t done;
		int err = cairn_frames_free_bulk(s->f, v, k, &done);
		if (err)
			fail(s, err, "stress: bulk free failed", v[done], done);
	}
}

void stress_frames_init(struct stress_frames *s)
{
	stress_barrier_init(&s->barrier);
	stress_blocks_init(&s->blocks);
	atomic_init(&s->enomem_seen, 0);
	s->free_at_start = stress_free_frames(s->f);
	for (unsigned i = 0; i < s->ncpus; i++)
		stress_cpu_init(&s->cpu[i], s->seed * 0x100000001b3ull + i);
}

static int give_frames(void *f, cairn_phys_t phys, unsigned order)
{
	return cairn_frames_free(f, phys, order);
}

uint64_t stress_frames_cpu(struct stress_frames *s, unsigned me)
{
	struct stress_cpu *c = &s->cpu[me];
	unsigned phases = s->phases ? s->phases : 1;
	barrier(s);
	for (unsigned ph = 0; ph < phases; ph++) {
		for (uint64_t i = 0; i < s->ops / phases; i++, c->ops++)
			mixed_op(s, c, me);
		barrier(s);
		exhaust(s, c, me, ph % 2 == 1);
		barrier(s);
	}
	while (c->nheld)
		give_back(s, c, me, c->nheld - 1);
	barrier(s);
	if (me == 0) {
		stress_mailbox_empty(&s->blocks, give_frames, s->f);
		if (cairn_frames_validate(s->f))
			fail(s, CAIRN_ECORRUPT, "stress: validate failed at the end", 0, 0);
		if (stress_free_frames(s->f) != s->free_at_start)
			fail(s, CAIRN_ECORRUPT, "stress: frames lost", stress_free_frames(s->f), s->free_at_start);
	}
	barrier(s);
	return atomic_load_explicit(&s->blocks.errors, memory_order_relaxed);
}
