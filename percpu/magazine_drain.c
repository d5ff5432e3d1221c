/* SPDX-License-Identifier: MIT */
/*
 * cairn magazines: draining, and statistics.
 *
 * Why a handshake. A CPU's fast path changes its loaded magazine with plain
 * stores and no fence. Taking that magazine away from under it would need
 * the two sides to exclude each other, and mutual exclusion between a side
 * that only stores and loads and another side needs a store-load fence or
 * an atomic RMW on the first side (Attiya et al., "Laws of Order", POPL
 * 2011) - exactly what the fast path is built to avoid. So nobody but the
 * owner ever touches a CPU's magazines; a drainer asks, and the owner does
 * the work. (Linux drains its per-CPU page lists the same way: it runs the
 * drain on each CPU.)
 *
 * The handshake, per CPU slot: two 32-bit generations, req and ack.
 *  - A drainer takes a generation g = ++req (an RMW: drainers may race) and
 *    waits until ack - g >= 0 (wrap-safe), loading ack with acquire.
 *  - The owner checks req != seen (its plain copy of ack) at the start of
 *    every cache operation (the only cost on the fast path: a relaxed load
 *    of a word that only a drainer ever writes) and in cairn_mag_poll. To
 *    answer, it reads r = req, empties its magazines into the source, frees
 *    their frames, and stores ack = r with release (and seen = r). Every
 *    request up to r is then answered.
 *  - The release store of ack is read by the drainer's acquire load, so the
 *    owner's puts into the source happen-before the drainer's next attempt
 *    to take from the source: what the owner gave back is there to be had.
 *  - The owner is the only writer of ack and seen (or drain_cpu, when the
 *    owner is gone and ordered before it), so seen is always the ack it
 *    stored last: comparing req with it is exact.
 *  - A drainer that waits also answers its own CPU's requests while it
 *    waits, in this cache and in every cache of its drain group, so two
 *    CPUs draining caches of one group at once cannot wait for each other.
 *    (Without a group, two CPUs draining two caches, each holding what the
 *    other asks for, would each wait out drain_wait and keep what they
 *    hold.) Answering from inside a drain is safe because a drain runs
 *    outside every cache's section: no cache's source drains a cache of
 *    its group, so no slot this CPU answers for is half way through an
 *    operation.
 *  - A drainer asks only CPUs that hold magazines (their relaxed nmag;
 *    items live only in magazines), and stops waiting for one whose nmag
 *    reads 0 (acquire, from the release store after its emptying).
 *    A CPU that does not answer within drain_wait pause hints
 *    keeps what it has; that is the documented contract of an online CPU
 *    (answer at the next operation or at poll, or be drained when it goes
 *    offline), not a race: nothing is lost or duplicated either way.
 *
 * Guarantee: when no other CPU allocates or frees concurrently and every
 * CPU holding anything answers, cairn_mag_drain_all returns with every
 * cached item back in the source and every magazine frame freed.
 */
#include "magazine_layout.h"

#define ASK_BATCH 64

/* Out of line: the misses that answer are inlined into their callers
 * under LTO, and this body with them pushed a caller's hit path apart. */
__attribute__((noinline)) void cairn__mag_answer(struct cairn_mag_cache *mc, struct mag_cpu *c)
{
	/* Relaxed: the drainer passes us nothing but the request itself. */
	uint32_t r = atomic_load_explicit(&c->req, memory_order_relaxed);
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_ANSWER, c);
	cairn__mag_slot_empty(mc, c);
	c->seen = r;
	atomic_store_explicit(&c->ack, r, memory_order_release);
}

void cairn_mag_poll(struct cairn_mag_cache *mc)
{
	unsigned long irq = cairn_port_local_enter();
	unsigned cpu = cairn_port_cpu();
	if (cpu < mc->ncpus && mag_asked(&mc->cpu[cpu]))
		cairn__mag_answer(mc, &mc->cpu[cpu]);
	cairn_port_local_leave(irq);
}

/* Answer for CPU cpu, inside the caller's section: the caller's own CPU,
 * or one that is gone and whose last operation happens-before the call.
 * A drain may borrow a CPU that nothing runs as (drain_lent) and empty it
 * at this very moment: a departed thread's free slot, and on the host
 * slot 0 too when the caller is a thread that never registered, which
 * the port runs as CPU 0. Two emptyings at once flush one magazine twice.
 * So we borrow it as well: lent, it is ours until we give it back; in use
 * (the caller's own, or one it took over) or never lent (a kernel), it is
 * ours by the premise. While a drain has it we wait: the drain gives it
 * back after one answer and waits for nothing meanwhile (a port that
 * lends nothing never says so, so no kernel waits in a section). */
static void answer_for(struct cairn_mag_cache *mc, unsigned cpu)
{
	int lent;
	while ((lent = cairn_port_cpu_borrow(cpu)) < 0) {
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_DRAIN_WAITING, &mc->cpu[cpu]);
		cairn_port_pause();
	}
	cairn__mag_answer(mc, &mc->cpu[cpu]);
	if (lent)
		cairn_port_cpu_giveback(cpu);
}

int cairn_mag_drain_cpu(struct cairn_mag_cache *mc, unsigned cpu)
{
	if (cpu >= mc->ncpus)
		return CAIRN_EINVAL;
	/* The section matters when cpu is the caller's own; for a CPU that is
	 * gone, the caller's ordering after its last operation makes the slot
	 * ours (answer_for). Answering also settles requests the slot never
	 * saw. */
	unsigned long irq = cairn_port_local_enter();
	answer_for(mc, cpu);
	cairn_port_local_leave(irq);
	return 0;
}

/* Everything in the depot back to the source, every frame freed. Concurrent
 * pushes and pops are fine: each popped magazine is ours alone. */
static void depot_drain(struct cairn_mag_cache *mc)
{
	uint32_t id;
	while ((id = ds_pop(&mc->full, mc->next)) != DEPOT_NONE) {
		cairn__mag_flush(mc, mc->mag[id]);
		cairn__mag_free_frame(mc, mc->mag[id]);
	}
	while ((id = ds_pop(&mc->empty, mc->next)) != DEPOT_NONE)
		cairn__mag_free_frame(mc, mc->mag[id]);
}

/* ---- drain groups ---- */

/* Joins and leaves are rare (create, destroy) and serialised by the
 * group's lock; waiting drainers walk the members without it. A member is
 * published by a release store of the link that names it, after it was
 * made, and the walkers load every link with acquire, so a member they
 * reach is a whole cache.
 *
 * A leave unlinks the cache and then waits until `walkers` reads 0. A
 * walker counts itself in before it loads the head and out after its last
 * poll. Each side has a seq_cst fence between its write and its read
 * (the walker's increment and its loads of the links; the leave's unlink
 * and its load of the count), so of the two fences in their single total
 * order, either the leave's comes first and the walker's loads see the
 * cache unlinked, or the walker's does and the leave's load sees the
 * walker counted (and then waits for its decrement, a release that
 * orders the walker's polls of the cache before the destroy). Walks are a
 * few loads and polls long, and a waiting drainer pauses between them, so
 * the count reads 0 soon. */
static void group_lock(struct cairn_mag_group *g)
{
	while (atomic_exchange_explicit(&g->lock, 1, memory_order_acquire))
		cairn_port_pause();
}

static void group_unlock(struct cairn_mag_group *g)
{
	atomic_store_explicit(&g->lock, 0, memory_order_release);
}

void cairn__mag_group_join(struct cairn_mag_cache *mc)
{
	struct cairn_mag_group *g = mc->group;
	if (!g)
		return;
	group_lock(g);
	atomic_store_explicit(&mc->group_next,
			      atomic_load_explicit(&g->head, memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&g->head, mc, memory_order_release);
	group_unlock(g);
}

void cairn__mag_group_leave(struct cairn_mag_cache *mc)
{
	struct cairn_mag_group *g = mc->group;
	if (!g)
		return;
	group_lock(g);
	_Atomic(struct cairn_mag_cache *) *link = &g->head;
	struct cairn_mag_cache *m;
	while ((m = atomic_load_explicit(link, memory_order_relaxed)) && m != mc)
		link = &m->group_next;
	if (m)
		atomic_store_explicit(link,
				      atomic_load_explicit(&mc->group_next, memory_order_relaxed),
				      memory_order_release);
	group_unlock(g);
	atomic_thread_fence(memory_order_seq_cst);
	while (atomic_load_explicit(&g->walkers, memory_order_acquire))
		cairn_port_pause();
}

/* This CPU's pending requests in mc and every cache of its group. */
static void poll_group(struct cairn_mag_cache *mc)
{
	struct cairn_mag_group *g = mc->group;
	if (!g) {
		cairn_mag_poll(mc);
		return;
	}
	atomic_fetch_add_explicit(&g->walkers, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	for (struct cairn_mag_cache *m = atomic_load_explicit(&g->head, memory_order_acquire);
	     m; m = atomic_load_explicit(&m->group_next, memory_order_acquire))
		cairn_mag_poll(m);
	atomic_fetch_sub_explicit(&g->walkers, 1, memory_order_release);
}

/* Empty slot cpu ourselves if the port lends it: nothing runs as that
 * CPU (on the host, a slot whose thread left without draining it), so no
 * one would answer until a thread takes the slot again, maybe never, and
 * what it holds would be lost to every allocation meanwhile. The port's
 * lending orders the slot's last operation before our answer, and our
 * answer before the slot's next thread: drain_cpu's premise. The answer
 * settles every request up to the one it reads, ours included. A CPU
 * lent to someone else (another drain, a joiner's drain_cpu) is theirs
 * to empty: we ask it and wait, as for a CPU in use. */
static bool drain_lent(struct cairn_mag_cache *mc, unsigned cpu)
{
	if (cairn_port_cpu_borrow(cpu) <= 0)
		return false;
	unsigned long irq = cairn_port_local_enter();
	cairn__mag_answer(mc, &mc->cpu[cpu]);
	cairn_port_local_leave(irq);
	cairn_port_cpu_giveback(cpu);
	return true;
}

/* How often a wait asks the port whether the CPU it waits for was left. */
#define LENT_EVERY 64

/* Until the answer, or until the slot holds no magazine: an owner that
 * emptied it after our request was taken (another drainer's answer, its
 * own departure) has nothing left for us, and a departed slot may not
 * operate again for a long time. nmag's release store follows the puts of
 * the emptying (and any push to the depot, which our last depot_drain
 * takes), so the acquire load orders them before our retry as ack's
 * would. A thread that leaves its slot unanswered while we wait is gone
 * without emptying it: we take the slot from the port and empty it,
 * every LENT_EVERY turns and once more as we give up (a wait shorter
 * than LENT_EVERY, or a thread that left in its last turns). */
static void wait_answer(struct cairn_mag_cache *mc, unsigned cpu, uint32_t gen)
{
	struct mag_cpu *c = &mc->cpu[cpu];
	for (unsigned spin = 0; spin < mc->drain_wait; spin++) {
		if ((int32_t)(atomic_load_explicit(&c->ack, memory_order_acquire) - gen) >= 0 ||
		    !atomic_load_explicit(&c->nmag, memory_order_acquire))
			return;
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_DRAIN_WAITING, c);
		if (spin % LENT_EVERY == LENT_EVERY - 1 && drain_lent(mc, cpu))
			return;
		poll_group(mc);
		cairn_port_pause();
	}
	(void)drain_lent(mc, cpu);
}

void cairn_mag_drain_all(struct cairn_mag_cache *mc)
{
	atomic_fetch_add_explicit(&mc->drains, 1, memory_order_relaxed);
	/* Lean before anyone gives anything back, so that a CPU that answers
	 * and misses takes single items; and again at the end, for our own
	 * retry, whatever misses meanwhile counted down. */
	cairn__mag_go_lean(mc);
	/* Our own CPU first; after the section we may run elsewhere (a kernel
	 * may migrate us), which only means we may ask, and then answer
	 * ourselves while waiting. */
	unsigned long irq = cairn_port_local_enter();
	unsigned me = cairn_port_cpu();
	if (me < mc->ncpus)
		answer_for(mc, me);
	cairn_port_local_leave(irq);

	depot_drain(mc);

	for (unsigned base = 0; base < mc->ncpus; base += ASK_BATCH) {
		uint32_t gen[ASK_BATCH];
		bool asked[ASK_BATCH];
		unsigned n = mc->ncpus - base < ASK_BATCH ? mc->ncpus - base : ASK_BATCH;
		for (unsigned i = 0; i < n; i++) {
			struct mag_cpu *c = &mc->cpu[base + i];
			/* A CPU nothing runs as is emptied here, not asked. */
			asked[i] = base + i != me &&
				   atomic_load_explicit(&c->nmag, memory_order_relaxed) &&
				   !drain_lent(mc, base + i);
			if (asked[i])
				gen[i] = atomic_fetch_add_explicit(&c->req, 1,
								   memory_order_relaxed) + 1;
		}
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_DRAIN_ASKED, mc);
		for (unsigned i = 0; i < n; i++)
			if (asked[i])
				wait_answer(mc, base + i, gen[i]);
	}
	/* Magazines the answering CPUs had pushed meanwhile. */
	depot_drain(mc);
	cairn__mag_go_lean(mc);
}

void cairn_mag_destroy(struct cairn_mag_cache *mc)
{
	cairn__mag_group_leave(mc);
	for (unsigned i = 0; i < mc->ncpus; i++)
		cairn__mag_slot_empty(mc, &mc->cpu[i]);
	depot_drain(mc);
	if (mc->own_mem)
		cairn_frames_free(mc->frames, mc->mem_phys, mc->mem_order);
}

int cairn_mag_cpu_stats(struct cairn_mag_cache *mc, unsigned cpu,
			struct cairn_mag_cpu_stats *st)
{
	if (cpu >= mc->ncpus || !st)
		return CAIRN_EINVAL;
	struct mag_cpu *c = &mc->cpu[cpu];
	st->hits = slot_hits(c);
	st->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
	st->exchanges = atomic_load_explicit(&c->exchanges, memory_order_relaxed);
	st->held = mag_cpu_held(c);
	st->magazines = atomic_load_explicit(&c->nmag, memory_order_relaxed);
	return 0;
}

void cairn_mag_stats(struct cairn_mag_cache *mc, struct cairn_mag_stats *st)
{
	st->cpu_held = 0;
	for (unsigned i = 0; i < mc->ncpus; i++)
		st->cpu_held += mag_cpu_held(&mc->cpu[i]);
	st->depot_full = ds_size(&mc->full);
	st->depot_empty = ds_size(&mc->empty);
	st->depot_items = st->depot_full * mc->mag_size;
	st->magazines = mc->nmags - ds_size(&mc->spare);
	st->bound = (2ull * mc->ncpus + mc->full.limit) * mc->mag_size;
	st->drains = atomic_load_explicit(&mc->drains, memory_order_relaxed);
	st->lean_gets = atomic_load_explicit(&mc->lean_gets, memory_order_relaxed);
	st->ncpus = mc->ncpus;
	st->mag_size = mc->mag_size;
}
