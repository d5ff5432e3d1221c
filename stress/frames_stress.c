/* SPDX-License-Identifier: MIT */
/* The frames stress: random mixes, swaps between CPUs, exhaustion phases. */
#include "stress.h"

#define MAILBOX_OWNER 0xffffffffu

static void fail(struct stress_frames *s, int err, const char *what, uint64_t a, uint64_t b)
{
	atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
	cairn_port_report(err, what, a, b);
}

static void barrier(struct stress_frames *s)
{
	stress_barrier_wait(&s->barrier, s->ncpus, NULL, NULL);
}

/* Move every frame of a block in the oracle from `from` to `to` holder. */
static bool oracle_move(struct stress_frames *s, cairn_phys_t phys, unsigned order,
			uint32_t from, uint32_t to)
{
	uint64_t bad;
	uint32_t was;
	int err = stress_oracle_move(s->owner, s->oracle_first, s->oracle_frames, phys, order,
				     from, to, &bad, &was);
	if (err == CAIRN_ERANGE)
		fail(s, err, "stress: block outside the managed memory", phys, order);
	else if (err)
		fail(s, err, from == 0 ? "stress: frame handed to two holders"
				       : "stress: frame not held by its holder", bad, was);
	return err == 0;
}

static uint64_t total_free(struct cairn_frames *f)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	return st.free_frames[0] + st.free_frames[1] + st.free_frames[2];
}

static void take(struct stress_frames *s, struct stress_cpu *c, unsigned me,
		 cairn_phys_t p, unsigned k)
{
	if (!oracle_move(s, p, k, 0, me + 1))
		return;
	/* write the frame: a frame shared with another holder would race here */
	uint64_t *m = cairn_port_phys_to_virt(p);
	m[0] = p ^ me;
	c->held[c->nheld++] = (struct stress_held){ p, k };
	c->allocs++;
}

static void give_back(struct stress_frames *s, struct stress_cpu *c, unsigned me, unsigned i)
{
	struct stress_held h = c->held[i];
	c->held[i] = c->held[--c->nheld];
	uint64_t *m = cairn_port_phys_to_virt(h.phys);
	if (m[0] != (h.phys ^ me))
		fail(s, CAIRN_ECORRUPT, "stress: frame contents changed under its holder", h.phys, m[0]);
	if (!oracle_move(s, h.phys, h.order, me + 1, 0))
		return;
	int err = cairn_frames_free(s->f, h.phys, h.order);
	if (err)
		fail(s, err, "stress: free of a held block failed", h.phys, h.order);
	c->frees++;
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
		int err = cairn_frames_alloc_aligned(s->f, k, a, flags, &p);
		if (err == 0) {
			if (p & ((CAIRN_FRAME_SIZE << a) - 1))
				fail(s, CAIRN_EALIGN, "stress: misaligned block", p, a);
			if ((flags & CAIRN_F_ZERO) && ((uint64_t *)cairn_port_phys_to_virt(p))[1])
				fail(s, CAIRN_ECORRUPT, "stress: zeroed block not zero", p, k);
			take(s, c, me, p, k);
		} else if (err == CAIRN_ENOMEM) {
			c->enomem++;
		} else {
			fail(s, err, "stress: alloc failed", k, a);
		}
	} else if (x < 85) {
		cairn_phys_t v[16];
		size_t n = cairn_frames_alloc_bulk(s->f, 0, v, 1 + stress_below(r, 16));
		for (size_t i = 0; i < n; i++)
			take(s, c, me, v[i], 0);
	} else if (x < 92 && c->nheld) {
		/* swap a block with whoever left one in a random mailbox slot */
		unsigned i = (unsigned)stress_below(r, c->nheld);
		struct stress_held h = c->held[i];
		if (!oracle_move(s, h.phys, h.order, me + 1, MAILBOX_OWNER))
			return;
		c->held[i] = c->held[--c->nheld];
		uint64_t got = atomic_exchange_explicit(&s->mailbox[stress_below(r, STRESS_MAILBOX)],
							h.phys | (h.order + 1), memory_order_acq_rel);
		if (got) {
			cairn_phys_t p = got & ~(CAIRN_FRAME_SIZE - 1);
			unsigned k = (unsigned)(got & 0xfff) - 1;
			if (oracle_move(s, p, k, MAILBOX_OWNER, me + 1)) {
				/* it is ours now: rewrite the holder mark */
				((uint64_t *)cairn_port_phys_to_virt(p))[0] = p ^ me;
				c->held[c->nheld++] = (struct stress_held){ p, k };
			}
			c->swaps++;
		}
	} else if (c->nheld) {
		/* reserve a small range next to a held block; usually busy */
		struct stress_held h = c->held[stress_below(r, c->nheld)];
		cairn_phys_t p = h.phys + (CAIRN_FRAME_SIZE << h.order);
		uint64_t n = 1 + stress_below(r, 8);
		int err = cairn_frames_reserve(s->f, p, n * CAIRN_FRAME_SIZE);
		if (err == 0) {
			for (uint64_t i = 0; i < n; i++)
				take(s, c, me, p + i * CAIRN_FRAME_SIZE, 0);
		} else if (err != CAIRN_EBUSY && err != CAIRN_ERANGE) {
			fail(s, err, "stress: reserve failed", p, n);
		}
	}
	if (s->plant == STRESS_PLANT_DOUBLE && me == 0 && c->ops == 100 && c->nheld)
		oracle_move(s, c->held[0].phys, c->held[0].order, 0, me + 1);
}

/* Allocate every frame there is, threading the frames into a list through
 * their own first word, then check nothing is left. */
static void exhaust(struct stress_frames *s, struct stress_cpu *c, unsigned me)
{
	cairn_phys_t list = 0, v[64];
	size_t n;
	while ((n = cairn_frames_alloc_bulk(s->f, 0, v, 64)) > 0) {
		for (size_t i = 0; i < n; i++) {
			if (!oracle_move(s, v[i], 0, 0, me + 1))
				continue;
			*(cairn_phys_t *)cairn_port_phys_to_virt(v[i]) = list;
			list = v[i];
			c->exhaust_frames++;
		}
	}
	barrier(s);
	if (me == 0) {
		cairn_phys_t p;
		if (total_free(s->f) != 0)
			fail(s, CAIRN_ENOMEM, "stress: ENOMEM while frames are free", total_free(s->f), 0);
		if (cairn_frames_alloc(s->f, 0, 0, &p) != CAIRN_ENOMEM)
			fail(s, CAIRN_ECORRUPT, "stress: allocation from exhausted memory", p, 0);
	}
	barrier(s);
	while (list) {
		cairn_phys_t next = *(cairn_phys_t *)cairn_port_phys_to_virt(list);
		size_t k = 0;
		while (list && k < 64) {
			next = *(cairn_phys_t *)cairn_port_phys_to_virt(list);
			if (oracle_move(s, list, 0, me + 1, 0))
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
	atomic_init(&s->errors, 0);
	for (unsigned i = 0; i < STRESS_MAILBOX; i++)
		atomic_init(&s->mailbox[i], 0);
	s->free_at_start = total_free(s->f);
	for (unsigned i = 0; i < s->ncpus; i++) {
		struct stress_cpu *c = &s->cpu[i];
		c->nheld = 0;
		c->rng = s->seed * 0x100000001b3ull + i;
		c->ops = c->allocs = c->frees = c->enomem = c->swaps = c->exhaust_frames = 0;
	}
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
		exhaust(s, c, me);
		barrier(s);
	}
	while (c->nheld)
		give_back(s, c, me, c->nheld - 1);
	barrier(s);
	if (me == 0) { /* blocks left in the mailbox go back too */
		for (unsigned i = 0; i < STRESS_MAILBOX; i++) {
			uint64_t got = atomic_exchange_explicit(&s->mailbox[i], 0, memory_order_acq_rel);
			if (!got)
				continue;
			cairn_phys_t p = got & ~(CAIRN_FRAME_SIZE - 1);
			unsigned k = (unsigned)(got & 0xfff) - 1;
			if (oracle_move(s, p, k, MAILBOX_OWNER, 0)) {
				int err = cairn_frames_free(s->f, p, k);
				if (err)
					fail(s, err, "stress: free from the mailbox failed", p, k);
			}
		}
		if (cairn_frames_validate(s->f))
			fail(s, CAIRN_ECORRUPT, "stress: validate failed at the end", 0, 0);
		if (total_free(s->f) != s->free_at_start)
			fail(s, CAIRN_ECORRUPT, "stress: frames lost", total_free(s->f), s->free_at_start);
	}
	barrier(s);
	return atomic_load_explicit(&s->errors, memory_order_relaxed);
}
