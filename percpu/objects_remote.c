/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: frees across CPUs.
 *
 * A free of an object another heap owns is appended to a batch for that
 * heap (a small direct-mapped cache of batches by destination); a batch is
 * posted when it holds OBJ_BATCH_MAX objects, when its slot is wanted for
 * another destination, or when the heap holds more than OBJ_OUT_BYTES_MAX
 * bytes of them: a freeing CPU never sits on much memory.
 *
 * The message queue is Vyukov's intrusive MPSC queue. A message is the
 * last object of a batch (its tail, the oldest); its second word is the
 * queue link, its first names the batch's head (see struct obj_out).
 *
 *   push(n): n.next = 0; prev = XCHG(head, n); prev.next = n   (one exchange)
 *
 * Ordering: the exchange is acq_rel. Its release side, and the release
 * store of prev.next, publish the batch (links written into the objects,
 * and everything the freeing CPUs did with them before) to the consumer,
 * which loads every next with acquire. Its acquire side orders our store
 * to prev.next after the previous producer's store of prev.next = 0, which
 * happened before that producer's exchange. Between a producer's exchange
 * and its link the consumer sees a gap: it stops there and comes back later
 * (the owner on its next slow path), so the queue is lock-free for
 * producers and never blocks the consumer.
 *
 * Offline heaps. A heap whose CPU went away is OFFLINE; whoever posts to it
 * then claims it (CAS OFFLINE -> CLAIMED, acquire), collects its messages
 * as its owner would, gives its empty slabs back and releases it (seq_cst
 * store). The lost-wakeup race between a producer (exchange head, load
 * state) and the heap going offline or being released (store state, load
 * head) is Dekker's: all four accesses are seq_cst, so at least one side
 * sees the other, and a message is never left in a heap nobody will look
 * at.
 *
 * The head alone does not say the queue is empty. q_pop pushes the stub
 * back behind what it took for the last node; a producer may exchange just
 * before that push-back and link its node only after the consumer looked.
 * The head is then the stub again while in_tail's node and the producer's
 * are still to be collected, and the producer may have loaded the state
 * before the release store. So a holder releases the heap only with
 * in_tail at the stub (waiting out the gap, as for any producer between
 * exchange and link): every node exchanged in before the stub's last
 * push-back is then collected, and a head still at the stub after the
 * release store means nothing came since.
 */
#include "objects_layout.h"
#include "hook.h"
#include "objects_pages.h"

void cairn__heap_queue_init(struct cairn_heap *h)
{
	uintptr_t stub = (uintptr_t)h->stub;
	atomic_store_explicit(obj_qnext(stub), 0, memory_order_relaxed);
	atomic_store_explicit(&h->in_head, stub, memory_order_relaxed);
	h->in_tail = stub;
}

static void q_push(struct cairn_heap *dest, uintptr_t n)
{
	atomic_store_explicit(obj_qnext(n), 0, memory_order_relaxed);
	uintptr_t prev = atomic_exchange_explicit(&dest->in_head, n, memory_order_seq_cst);
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_PUSH_LINK, (void *)n);
	atomic_store_explicit(obj_qnext(prev), n, memory_order_release);
}

/* A node whose link names itself was pushed twice in a row: one object
 * the tail of two batches, freed twice on another CPU (the second push
 * stored 0 over the link and then, finding itself the head, itself).
 * Taken as pushed once: the link goes back to 0 with a CAS, so that a
 * producer's link stored meanwhile wins; the first batch's head info is
 * lost under the second's, its other objects leaked. */
static uintptr_t __attribute__((noinline)) q_unloop(uintptr_t n)
{
	cairn__obj_report(CAIRN_EFREE, "objects: a message pushed twice (its object freed twice on "
			  "another CPU); the first batch is lost", n, 0);
	uintptr_t next = n;
	if (atomic_compare_exchange_strong_explicit(obj_qnext(n), &next, 0, memory_order_acquire,
						    memory_order_acquire))
		return 0;
	return next;
}

/* The next message, or 0 (empty, or a producer is between its exchange
 * and its link). Consumer only. */
static uintptr_t q_pop(struct cairn_heap *h)
{
	uintptr_t stub = (uintptr_t)h->stub;
	uintptr_t tail = h->in_tail;
	uintptr_t next = atomic_load_explicit(obj_qnext(tail), memory_order_acquire);
	if (tail == stub) {
		if (!next)
			return 0;
		h->in_tail = tail = next;
		next = atomic_load_explicit(obj_qnext(tail), memory_order_acquire);
	}
	if (unlikely(next == tail))
		next = q_unloop(tail);
	if (next) {
		h->in_tail = next;
		return tail;
	}
	if (tail != atomic_load_explicit(&h->in_head, memory_order_acquire))
		return 0;
	/* tail is the last node: put the stub behind it so it can leave */
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_POP_LAST, h);
	q_push(h, stub);
	next = atomic_load_explicit(obj_qnext(tail), memory_order_acquire);
	if (next) {
		h->in_tail = next;
		return tail;
	}
	return 0;
}

/* Has anything been pushed since the stub last went in? (Any CPU;
 * seq_cst: see above.) */
static bool inbox_head_moved(struct cairn_heap *h)
{
	return atomic_load_explicit(&h->in_head, memory_order_seq_cst) != (uintptr_t)h->stub;
}

/* Anything posted and not yet collected? Holder only: in_tail short of the
 * stub is a node waiting for a producer's link (see above). */
bool cairn__heap_inbox_pending(struct cairn_heap *h)
{
	return h->in_tail != (uintptr_t)h->stub || inbox_head_moved(h);
}

/* The slab of h that owns p, or NULL after reporting a corrupted batch. */
static struct slab *collect_slab(struct cairn_heap *h, uintptr_t p, uintptr_t m)
{
	uintptr_t e = heap_pm_lookup(h, p);
	struct slab *s = (struct slab *)e;
	if (likely(e && !(e & PM_TAG_MASK) && s->owner == h))
		return s;
	cairn__obj_report(CAIRN_ECORRUPT,
			  "objects: a message holds an object this heap does not own "
			  "(corrupted batch link); rest of the batch dropped", p, m);
	return NULL;
}

/* A batch whose links do not end at its count: an object of it was
 * freed twice on another CPU (pushed twice, it links back into the batch,
 * a cycle; or a later push overwrote its link). The walk stops at the
 * count: what it did not reach is dropped (leaked), never followed. */
static void __attribute__((noinline)) collect_miscount(uintptr_t head, uintptr_t p)
{
	cairn__obj_report(CAIRN_EFREE, "objects: a message's links do not match its count (an object "
			  "freed twice on another CPU?); rest of the batch dropped", head, p);
}

/* Unhardened, batch links and local_free links are both plain pointers,
 * so a run of consecutive objects of one slab is spliced onto its
 * local_free whole: per object a load, a range test and the count's
 * decrement (objects of s are exactly [base, end), and no other slab
 * overlaps it), and per run one pagemap lookup and one state check. A
 * batch is usually a few runs: a freeing CPU tends to free neighbours. */
static void collect_plain(struct cairn_heap *h, uintptr_t head, uint32_t left, bool offline)
{
	uintptr_t p = head;
	do {
		struct slab *s = collect_slab(h, p, head);
		if (unlikely(!s))
			return;
		uintptr_t first = p, last, base = s->base, span = s->end - s->base;
		uint32_t n = 0;
		do {
			last = p;
			p = obj_word(p);
			n++;
		} while (--left && p && p - base < span);
		obj_set_word(last, s->local_free);
		s->local_free = first;
		slab_used_set(s, slab_used(s) - n);
		/* Off the run's common case (CUR or AVAIL, objects left) only
		 * when the slab was FULL or is now empty. */
		if (unlikely(s->state == SLAB_FULL || slab_used(s) == 0))
			cairn__slab_after_free(h, s, offline);
	} while (p && left);
	if (unlikely(p || left))
		collect_miscount(head, p);
}

/* Hardened: p, an object of a batch, is free already: freed again on
 * another CPU after its first free reached the owner (or was walked into
 * from another batch that its second push linked to). Its word is the
 * owner's free-list link if the owner freed p after that push, else what
 * the second free wrote there: a batch link to an object of that batch
 * (still held: not collected) or a message's head info, which decodes as
 * a link to no object (MSG_SALT). A link that could be the owner's (the
 * end, or a free object of s) is kept; anything else is cut, the list
 * ending at p (what was behind it leaked, s damaged), where it would have
 * handed out an object the owner counts as held. */
static void __attribute__((noinline)) collect_free_again(struct cairn_heap *h, struct slab *s,
							 uintptr_t p)
{
	uintptr_t v = obj_decode(h, p, obj_word(p));
	if (v && !(slab_is_object(s, v) && !live_test(s, slab_index(s, v)))) {
		obj_set_word(p, obj_encode(h, p, 0));
		s->damaged = 1;
	}
}

/* Hardened: every object checked (object start, live bit) on its own.
 * No count bounds this walk: every step clears a live bit or stops, so a
 * cycle ends at its first repeat. */
static void collect_checked(struct cairn_heap *h, uintptr_t head, bool offline)
{
	for (uintptr_t p = head; p;) {
		struct slab *s = collect_slab(h, p, head);
		if (unlikely(!s))
			return;
		uintptr_t next = obj_decode(h, p, obj_word(p));
		int err = cairn__slab_free_collected(h, s, p, offline);
		if (unlikely(err)) {
			if (err == CAIRN_EFREE)
				collect_free_again(h, s, p);
			s->damaged = 1;
			return;
		}
		p = next;
	}
}

/* Hardened: is the message's tail, m, not an object still handed out?
 * It is one until the owner collects it; one already free was freed
 * again (collect_free_again), and its word is not the head info. */
static bool collect_tail_bad(struct cairn_heap *h, uintptr_t m)
{
	struct slab *s = collect_slab(h, m, m);
	if (unlikely(!s))
		return true;
	if (unlikely(!slab_is_object(s, m))) {
		cairn__obj_report(CAIRN_ECORRUPT, "objects: a message is not an object (corrupted "
				  "queue link); dropped", m, s->base);
		return true;
	}
	if (likely(live_test(s, slab_index(s, m))))
		return false;
	cairn__obj_report(CAIRN_EFREE, "objects: a message's object is free already (freed twice "
			  "on another CPU); batch dropped", m, s->base);
	collect_free_again(h, s, m);
	return true;
}

/* One message: m is the batch's tail, its first word names the head, and
 * the head's second word holds the count (head == tail: one object).
 * A batch of one slab (unhardened) is spliced whole: two loads of lines
 * the collector touches anyway (m, and the head for the count), where a
 * walk would load every object's line, each just written by the freeing
 * CPU, one after the other. Any other batch is walked, at most count
 * objects. */
static void collect_msg(struct cairn_heap *h, uintptr_t m, bool offline)
{
	if (h->harden && collect_tail_bad(h, m))
		return;
	uintptr_t info = msg_decode(h, m, obj_word(m));
	uintptr_t first = info & ~(uintptr_t)(CAIRN_OBJ_MIN - 1);
	if (!h->harden && (info & MSG_ONE_SLAB)) {
		struct slab *s = collect_slab(h, m, m);
		if (unlikely(!s))
			return;
		if (unlikely(first - s->base >= s->end - s->base)) {
			cairn__obj_report(CAIRN_ECORRUPT, "objects: a one-slab message names an object of "
					  "another slab; batch dropped", first, m);
			return;
		}
		uint32_t n = first == m ? 1 : (uint32_t)obj_word(first + sizeof(uintptr_t));
		obj_set_word(m, s->local_free);
		s->local_free = first;
		slab_used_set(s, slab_used(s) - n);
		if (unlikely(s->state == SLAB_FULL || slab_used(s) == 0))
			cairn__slab_after_free(h, s, offline);
		return;
	}
	obj_set_word(m, obj_encode(h, m, 0)); /* the list ends at the tail */
	if (h->harden) {
		collect_checked(h, first, offline);
		return;
	}
	/* The head is read only inside the objects' memory; its walk checks
	 * it is ours. */
	uint32_t n = 1;
	if (first != m) {
		if (unlikely(first - h->pm_vbase >= h->pm_span)) {
			collect_miscount(first, m);
			return;
		}
		n = (uint32_t)obj_word(first + sizeof(uintptr_t));
		if (unlikely(n - 1 >= OBJ_BATCH_MAX)) {
			collect_miscount(first, n);
			return;
		}
	}
	collect_plain(h, first, n, offline);
}

/* Collect every message that can be popped. */
void cairn__heap_collect(struct cairn_heap *h, bool offline)
{
	uintptr_t m;
	uint64_t msgs = 0;
	while ((m = q_pop(h))) {
		msgs++;
		collect_msg(h, m, offline);
	}
	if (msgs)
		stat_add(offline ? &h->st.offline_collects : &h->st.collected, msgs);
}

/* The claims pass the embedder's gate (arena_enter), as the posts do,
 * entered before the CAS: a claimer holds a heap that is not its CPU's,
 * and a host process forked meanwhile would have the heap CLAIMED for
 * ever, with no thread to give it back, while its slot is free for the
 * child's next thread, which would wait in cairn_heap_online without
 * end. A claimer that finds the gate closed waits there holding no heap. */
static void offline_collect(struct cairn_heap *h)
{
	arena_enter(h->o);
	for (;;) {
		unsigned expect = HEAP_OFFLINE;
		if (!atomic_compare_exchange_strong_explicit(&h->state, &expect, HEAP_CLAIMED,
							     memory_order_acquire,
							     memory_order_relaxed))
			break; /* online again, or another CPU has it */
		/* Producers between exchange and link are a few instructions
		 * from done: wait for them, the heap has no one else. */
		do {
			cairn__heap_collect(h, true);
			if (!cairn__heap_inbox_pending(h))
				break;
			cairn_port_pause();
		} while (1);
		cairn__heap_release_empty(h);
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_CLAIM_ENDING, h);
		atomic_store_explicit(&h->state, HEAP_OFFLINE, memory_order_seq_cst);
		CAIRN_PERCPU_HOOK(CAIRN_HOOK_CLAIM_ENDED, h);
		/* in_tail was at the stub; it is the next holder's now */
		if (!inbox_head_moved(h))
			break;
	}
	arena_leave(h->o);
}

void cairn__remote_post(struct cairn_heap *h, struct obj_out *b)
{
	struct cairn_heap *dest = b->dest;
	stat_add(&h->st.posted, 1);
	stat_add(&h->st.remote_objects, b->n);
	uintptr_t head = b->head, tail = b->tail;
	if (head != tail)
		obj_set_word(head + sizeof(uintptr_t), b->n);
	obj_set_word(tail, msg_encode(dest, tail, head | (b->slab ? MSG_ONE_SLAB : 0)));
	/* The push passes the embedder's gate: a host process forked between
	 * its exchange and its link would leave the child a link nobody will
	 * write, and the heap's going offline (or a claim) waits for every
	 * such link, for ever in the child. */
	arena_enter(dest->o);
	q_push(dest, tail);
	arena_leave(dest->o);
	b->head = 0;
	b->n = 0;
	if (unlikely(atomic_load_explicit(&dest->state, memory_order_seq_cst) == HEAP_OFFLINE))
		offline_collect(dest);
}

void cairn__remote_flush(struct cairn_heap *h)
{
	for (unsigned i = 0; i < OBJ_OUT_SLOTS; i++)
		if (h->out[i].n)
			cairn__remote_post(h, &h->out[i]);
	h->out_bytes = 0;
}

void cairn_heap_flush(struct cairn_heap *h)
{
	cairn__remote_flush(h);
	cairn__heap_collect(h, false);
}

void cairn_heap_offline(struct cairn_heap *h)
{
	cairn__remote_flush(h);
	cairn__heap_collect(h, false);
	cairn__heap_release_empty(h);
	CAIRN_PERCPU_HOOK(CAIRN_HOOK_GOING_OFFLINE, h);
	/* A node behind a producer's unwritten link: that producer may have
	 * loaded ONLINE already, so collect it as a claimer would. Read before
	 * the release store: after it, in_tail is a claimer's. */
	bool gap = h->in_tail != (uintptr_t)h->stub;
	atomic_store_explicit(&h->state, HEAP_OFFLINE, memory_order_seq_cst);
	if (gap || inbox_head_moved(h))
		offline_collect(h);
}

void cairn_heap_online(struct cairn_heap *h)
{
	for (;;) {
		unsigned expect = HEAP_OFFLINE;
		if (atomic_compare_exchange_weak_explicit(&h->state, &expect, HEAP_ONLINE,
							  memory_order_acquire,
							  memory_order_relaxed) ||
		    expect == HEAP_ONLINE)
			return;
		cairn_port_pause(); /* a poster is collecting for us */
	}
}
