/* SPDX-License-Identifier: MIT */
/* Blocks held by stress CPUs and the ownership oracle: see blocks.h. */
#include "blocks.h"

void stress_blocks_init(struct stress_blocks *b)
{
	atomic_init(&b->errors, 0);
	for (unsigned i = 0; i < STRESS_MAILBOX; i++)
		atomic_init(&b->mailbox[i], 0);
}

void stress_cpu_init(struct stress_cpu *c, uint64_t rng)
{
	c->nheld = 0;
	c->rng = rng;
	c->ops = c->allocs = c->frees = c->enomem = c->swaps = 0;
	c->offline = c->exhaust_frames = 0;
}

void stress_fail(struct stress_blocks *b, int err, const char *what, uint64_t x, uint64_t y)
{
	atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
	cairn_port_report(err, what, x, y);
}

bool stress_move(struct stress_blocks *b, cairn_phys_t phys, unsigned order, uint32_t from,
		 uint32_t to)
{
	uint64_t bad;
	uint32_t was;
	int err = stress_oracle_move(b->owner, b->oracle_first, b->oracle_frames, phys, order,
				     from, to, &bad, &was);
	if (err == CAIRN_ERANGE)
		stress_fail(b, err, "stress: block outside the managed memory", phys, order);
	else if (err)
		stress_fail(b, err, from == 0 ? "stress: frame handed to two holders"
					      : "stress: frame not held by its holder", bad, was);
	return err == 0;
}

static void mark(cairn_phys_t p, unsigned order, unsigned me)
{
	*(uint64_t *)cairn_port_phys_to_virt(p) = p ^ me;
	*stress_last_word(p, order) = ~(p ^ me);
}

void stress_take(struct stress_blocks *b, struct stress_cpu *c, unsigned me, cairn_phys_t p,
		 unsigned order)
{
	if (!stress_move(b, p, order, 0, me + 1))
		return;
	mark(p, order, me); /* a block shared with another holder races here */
	c->held[c->nheld++] = (struct stress_held){ p, order };
	c->allocs++;
}

bool stress_release(struct stress_blocks *b, struct stress_cpu *c, unsigned me, unsigned i,
		    struct stress_held *h)
{
	*h = c->held[i];
	c->held[i] = c->held[--c->nheld];
	uint64_t m = *(uint64_t *)cairn_port_phys_to_virt(h->phys);
	if (m != (h->phys ^ me) || *stress_last_word(h->phys, h->order) != ~m)
		stress_fail(b, CAIRN_ECORRUPT, "stress: block changed under its holder", h->phys, m);
	if (!stress_move(b, h->phys, h->order, me + 1, 0))
		return false;
	/* The holder's last write, after the oracle let the block go and
	 * before the caller frees it: the oracle's acq_rel CAS orders what
	 * came before it, not this, so the allocator's own release (the free)
	 * and acquire (the next allocation) are all that order this write
	 * before the next holder's mark. Without them ThreadSanitizer reports
	 * the pair, which the oracle's ordering hid for the mark alone. */
	*(uint64_t *)cairn_port_phys_to_virt(h->phys) = ~h->phys;
	c->frees++;
	return true;
}

/* A mailbox word: the block's address with its order + 1 in the low bits. */
static uint64_t mail(struct stress_held h)
{
	return h.phys | (h.order + 1);
}

static struct stress_held unmail(uint64_t w)
{
	return (struct stress_held){ w & ~(uint64_t)(CAIRN_FRAME_SIZE - 1),
				     (unsigned)(w & (CAIRN_FRAME_SIZE - 1)) - 1 };
}

void stress_swap(struct stress_blocks *b, struct stress_cpu *c, unsigned me)
{
	if (!c->nheld)
		return;
	unsigned i = (unsigned)stress_below(&c->rng, c->nheld);
	struct stress_held h = c->held[i];
	if (!stress_move(b, h.phys, h.order, me + 1, STRESS_MAILBOX_OWNER))
		return;
	c->held[i] = c->held[--c->nheld];
	/* acq_rel: the block's contents (its mark) travel with it */
	uint64_t got = atomic_exchange_explicit(&b->mailbox[stress_below(&c->rng, STRESS_MAILBOX)],
						mail(h), memory_order_acq_rel);
	if (!got)
		return;
	h = unmail(got);
	if (stress_move(b, h.phys, h.order, STRESS_MAILBOX_OWNER, me + 1)) {
		mark(h.phys, h.order, me); /* it is ours now */
		c->held[c->nheld++] = h;
	}
	c->swaps++;
}

void stress_plant(struct stress_blocks *b, struct stress_cpu *c, unsigned me, unsigned plant)
{
	if (plant == STRESS_PLANT_DOUBLE && me == 0 && c->ops == 100 && c->nheld)
		stress_move(b, c->held[0].phys, c->held[0].order, 0, me + 1);
}

void stress_mailbox_take(struct stress_blocks *b, struct stress_cpu *c, unsigned me)
{
	for (unsigned k = 0; k < STRESS_MAILBOX && c->nheld < STRESS_HELD; k++) {
		uint64_t got = atomic_exchange_explicit(&b->mailbox[k], 0, memory_order_acq_rel);
		if (!got)
			continue;
		struct stress_held h = unmail(got);
		if (!stress_move(b, h.phys, h.order, STRESS_MAILBOX_OWNER, me + 1))
			continue;
		mark(h.phys, h.order, me);
		c->held[c->nheld++] = h;
	}
}

void stress_mailbox_empty(struct stress_blocks *b,
			  int (*give)(void *ctx, cairn_phys_t phys, unsigned order), void *ctx)
{
	for (unsigned i = 0; i < STRESS_MAILBOX; i++) {
		uint64_t got = atomic_exchange_explicit(&b->mailbox[i], 0, memory_order_acq_rel);
		if (!got)
			continue;
		struct stress_held h = unmail(got);
		if (!stress_move(b, h.phys, h.order, STRESS_MAILBOX_OWNER, 0))
			continue;
		int err = give(ctx, h.phys, h.order);
		if (err)
			stress_fail(b, err, "stress: free from the mailbox failed", h.phys, h.order);
	}
}

uint64_t stress_free_frames(struct cairn_frames *f)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	return st.free_frames[0] + st.free_frames[1] + st.free_frames[2];
}
