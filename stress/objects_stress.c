/* SPDX-License-Identifier: MIT */
/* The objects stress: see objects_stress.h. */
#include "objects_stress.h"

#define TAG_MAGIC 0xc30000000000005aull /* tag: magic | cpu << 40 | seq << 8 */

static void fail(struct stress_objects *s, const char *what, uint64_t a, uint64_t b)
{
	atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
	cairn_port_report(CAIRN_ECORRUPT, what, a, b);
}

static void barrier(struct stress_objects *s)
{
	stress_barrier_wait(&s->barrier, s->ncpus, s->idle, s->idle_arg);
}

void stress_objects_init(struct stress_objects *s)
{
	stress_barrier_init(&s->barrier);
	atomic_store(&s->errors, 0);
	atomic_store(&s->seats, 0);
	for (unsigned i = 0; i < STRESS_OBJ_MAX_CPUS; i++) {
		atomic_store(&s->fed[i], 0);
		for (unsigned j = 0; j < STRESS_OBJ_INBOX; j++)
			atomic_store(&s->inbox[i][j], 0);
	}
}

/* ---- the oracle: bit per granule, the object's first granule ---- */

/* The oracle word of p's granule (and its bit), or NULL outside both ranges. */
static _Atomic uint64_t *oracle_word(struct stress_objects *s, uintptr_t p, uint64_t *bit)
{
	uint64_t g = (p - s->oracle_base) >> 4;
	_Atomic uint64_t *o = s->oracle;
	if (g >= s->oracle_granules) {
		g = (p - s->oracle_va_base) >> 4;
		o = s->oracle_va;
		if (!o || g >= s->oracle_va_granules)
			return NULL;
	}
	*bit = 1ull << (g % 64);
	return &o[g / 64];
}

static bool oracle_claim(struct stress_objects *s, uintptr_t p)
{
	uint64_t bit;
	_Atomic uint64_t *w = oracle_word(s, p, &bit);
	if (!w) {
		fail(s, "stress: object outside the oracle's range", p, 0);
		return false;
	}
	if (atomic_fetch_or_explicit(w, bit, memory_order_acq_rel) & bit) {
		fail(s, "stress: object handed to two holders", p, 0);
		return false;
	}
	return true;
}

static bool oracle_release(struct stress_objects *s, uintptr_t p)
{
	uint64_t bit;
	_Atomic uint64_t *w = oracle_word(s, p, &bit);
	if (!w)
		return false;
	if (!(atomic_fetch_and_explicit(w, ~bit, memory_order_acq_rel) & bit)) {
		fail(s, "stress: freeing an object the oracle has as free", p, 0);
		return false;
	}
	return true;
}

/* ---- stamps: tag and size at both ends; small objects filled ---- */

static void stamp(uintptr_t p, size_t size, uint64_t tag)
{
	volatile uint64_t *w = (volatile uint64_t *)p;
	size_t words = (size < 16 ? 16 : size) / 8;
	w[0] = tag;
	w[1] = size;
	if (size <= 512)
		for (size_t i = 2; i < words; i++)
			w[i] = tag + i;
	else if (words > 2)
		w[words - 1] = ~tag;
}

static bool stamp_ok(uintptr_t p, size_t size)
{
	volatile uint64_t *w = (volatile uint64_t *)p;
	size_t words = (size < 16 ? 16 : size) / 8;
	uint64_t tag = w[0];
	if ((tag & 0xff000000000000ffull) != TAG_MAGIC || w[1] != size)
		return false;
	if (size <= 512) {
		for (size_t i = 2; i < words; i++)
			if (w[i] != tag + i)
				return false;
	} else if (words > 2 && w[words - 1] != ~tag) {
		return false;
	}
	return true;
}

/* After a realloc of an object stamped for `old` bytes to `new` (>= 16)
 * bytes: its stamp, up to the smaller size, moved with it. */
static bool stamp_moved(uintptr_t q, size_t old, size_t new, uint64_t tag)
{
	volatile uint64_t *w = (volatile uint64_t *)q;
	size_t words = (old < 16 ? 16 : old) / 8, kept = new / 8 < words ? new / 8 : words;
	if (w[0] != tag || w[1] != old)
		return false;
	if (old <= 512) {
		for (size_t i = 2; i < kept; i++)
			if (w[i] != tag + i)
				return false;
	} else if (kept == words && w[words - 1] != ~tag) {
		return false;
	}
	return true;
}

/* ---- operations ---- */

/* The message for a free block of order CAIRN_HUGE_ORDER + i: its size. */
static const char *const enomem_what[] = {
	"stress: NULL from cairn while the frame allocator had a 2 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 4 MiB block free",
	"stress: NULL from cairn while the frame allocator had an 8 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 16 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 32 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 64 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 128 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 256 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 512 MiB block free",
	"stress: NULL from cairn while the frame allocator had a 1 GiB block free",
};
_Static_assert(((uint64_t)CAIRN_FRAME_SIZE << CAIRN_HUGE_ORDER) == 2u << 20 &&
		       sizeof(enomem_what) / sizeof(enomem_what[0]) ==
			       CAIRN_MAX_ORDER - CAIRN_HUGE_ORDER + 1,
	       "a message for each order check_enomem may look at, from 2 MiB up");

/* cairn returned NULL for `size` bytes aligned to `align` (0: none): an
 * allocation may fail only when its memory is gone. Frames are taken only
 * by allocations, so a free 2 MiB block of the frame allocator just after
 * the NULL (or one holding size plus alignment, if larger) means the NULL
 * was false: no slab, metadata frame, large block or arena import the
 * request could need is larger. Unless other CPUs' frees brought the block
 * back in between, which only memory near exhaustion makes possible; the
 * runs stay far from it. With a cache in front of the allocator only what
 * the allocator itself holds is checked. */
static void check_enomem(struct stress_objects *s, struct stress_obj_cpu *c, size_t size,
			 size_t align)
{
	c->enomem++;
	if (!s->frames)
		return;
	unsigned order = CAIRN_HUGE_ORDER;
	while (((uint64_t)CAIRN_FRAME_SIZE << order) < size + align && order < CAIRN_MAX_ORDER)
		order++;
	cairn_phys_t p;
	if (cairn_frames_alloc(s->frames, order, 0, &p) != 0)
		return;
	cairn_frames_free(s->frames, p, order);
	fail(s, enomem_what[order - CAIRN_HUGE_ORDER], size, align);
}

static size_t pick_size(uint64_t *r)
{
	uint64_t k = stress_below(r, 100);
	if (k < 60)
		return 1 + stress_below(r, 128);
	if (k < 85)
		return 129 + stress_below(r, 2048 - 128);
	if (k < 97)
		return 2049 + stress_below(r, CAIRN_OBJ_SMALL_MAX - 2048);
	return CAIRN_OBJ_SMALL_MAX + 1 + stress_below(r, 3 * CAIRN_OBJ_SMALL_MAX);
}

static void hold(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me,
		 uintptr_t p, size_t size)
{
	if (!oracle_claim(s, p))
		return;
	size_t usable = cairn_objects_usable_size(s->o, (void *)p);
	if (usable < size || usable < 16)
		fail(s, "stress: usable size below the request", p, usable);
	stamp(p, size, TAG_MAGIC | (uint64_t)me << 40 | (++c->seq & 0xffffffffull) << 8);

	c->held[c->nheld].p = p;
	c->held[c->nheld].size = size;
	c->nheld++;
}

static void release(struct stress_objects *s, struct stress_obj_cpu *c, unsigned i)
{
	struct stress_obj ob = c->held[i];
	c->held[i] = c->held[--c->nheld];
	if (!stamp_ok(ob.p, ob.size))
		fail(s, "stress: object overwritten while held (overlap?)", ob.p, ob.size);
	if (!oracle_release(s, ob.p))
		return; /* freeing it would corrupt the allocator: the run has failed */
	int err = cairn_objects_free(s->o, (void *)ob.p);
	if (err)
		fail(s, "stress: free refused a good object", ob.p, (uint64_t)-err);
	c->frees++;
}

static void op_alloc(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me)
{
	size_t size = pick_size(&c->rng);
	uintptr_t p;
	size_t align = 0;
	uint64_t k = stress_below(&c->rng, 100);
	if (k < 10) {
		align = (size_t)32 << stress_below(&c->rng, 12); /* 32 B .. 64 KiB */
		p = (uintptr_t)cairn_objects_alloc_aligned(s->o, size, align);
		if (p && (p & (align - 1)))
			fail(s, "stress: misaligned aligned allocation", p, align);
		c->aligned++;
	} else if (k < 15) {
		p = (uintptr_t)cairn_objects_calloc(s->o, 1, size);
		for (size_t i = 0; p && i < size / 8; i++)
			if (((volatile uint64_t *)p)[i])
				fail(s, "stress: calloc memory not zero", p, i);
	} else {
		p = (uintptr_t)cairn_objects_alloc(s->o, size);
	}
	if (!p) {
		check_enomem(s, c, size, align);
		return;
	}
	if (p & 15)
		fail(s, "stress: allocation not 16-byte aligned", p, size);
	if (size > CAIRN_OBJ_SMALL_MAX)
		c->large++;
	c->allocs++;
	hold(s, c, me, p, size);
}

static void op_realloc(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me)
{
	unsigned i = (unsigned)stress_below(&c->rng, c->nheld);
	struct stress_obj ob = c->held[i];
	size_t size = pick_size(&c->rng);
	if (size < 16)
		size = 16;
	if (!stamp_ok(ob.p, ob.size))
		fail(s, "stress: object overwritten while held (overlap?)", ob.p, ob.size);
	uint64_t tag = *(volatile uint64_t *)ob.p;
	oracle_release(s, ob.p);
	uintptr_t q = (uintptr_t)cairn_objects_realloc(s->o, (void *)ob.p, size);
	if (!q) {
		oracle_claim(s, ob.p); /* untouched on failure */
		check_enomem(s, c, size, 0);
		return;
	}
	if (!stamp_moved(q, ob.size, size, tag))
		fail(s, "stress: realloc lost the contents", q, tag);
	c->held[i] = c->held[--c->nheld];
	c->reallocs++;
	hold(s, c, me, q, size);
}

/* ---- objects between CPUs ----
 * An object in an inbox keeps its oracle bit and its stamp: it changes
 * hands, not state. A give fills an empty slot (CAS from 0), a take
 * empties one (exchange): each object has one holder at a time. */

/* Put p in an empty slot of inbox `to`, probing from a random slot. */
static bool give(struct stress_objects *s, struct stress_obj_cpu *c, unsigned to, uintptr_t p)
{
	unsigned at = (unsigned)stress_below(&c->rng, STRESS_OBJ_INBOX);
	for (unsigned probe = 0; probe < 8; probe++) {
		uintptr_t expect = 0;
		if (atomic_compare_exchange_strong_explicit(&s->inbox[to][(at + probe) % STRESS_OBJ_INBOX],
							    &expect, p, memory_order_acq_rel,
							    memory_order_relaxed))
			return true;
	}
	return false;
}

/* An object taken from an inbox: checked, then held (keep) or freed. */
static void took(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me, uintptr_t got,
		 bool keep)
{
	size_t size = (size_t)((volatile uint64_t *)got)[1];
	if ((((volatile uint64_t *)got)[0] >> 40 & 0xff) != (me & 0xff))
		c->remote++; /* allocated on another CPU */
	c->held[c->nheld].p = got;
	c->held[c->nheld].size = size;
	c->nheld++;
	if (!keep)
		release(s, c, c->nheld - 1);
}

/* Empty inbox `seat`: keep about one in `keep_one_in` (0: none), free the
 * rest at once. Returns how many were taken. */
static unsigned sweep(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me, unsigned seat,
		      unsigned keep_one_in)
{
	unsigned n = 0;
	for (unsigned i = 0; i < STRESS_OBJ_INBOX; i++) {
		if (!atomic_load_explicit(&s->inbox[seat][i], memory_order_relaxed))
			continue;
		uintptr_t got = atomic_exchange_explicit(&s->inbox[seat][i], 0, memory_order_acq_rel);
		if (!got)
			continue;
		n++;
		took(s, c, me, got, keep_one_in && c->nheld + 1 < STRESS_OBJ_HELD / 2 &&
					     !stress_below(&c->rng, keep_one_in));
	}
	return n;
}

/* Mixed phase: give a few held objects to a random other CPU, or empty
 * our inbox (half of it kept for later frees and reallocs). */
static void op_swap(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me,
		    unsigned seat, unsigned n)
{
	if (n > 1 && c->nheld && stress_below(&c->rng, 2)) {
		unsigned to = (seat + 1 + (unsigned)stress_below(&c->rng, n - 1)) % n;
		for (unsigned k = 1 + (unsigned)stress_below(&c->rng, 8); k && c->nheld; k--) {
			unsigned i = (unsigned)stress_below(&c->rng, c->nheld);
			if (!give(s, c, to, c->held[i].p))
				break;
			c->held[i] = c->held[--c->nheld];
		}
	} else {
		sweep(s, c, me, seat, 2);
	}
}

/* The hand-off: allocate s->handoff objects, each stamped and claimed,
 * into the inbox of seat `to`, while emptying our own inbox, which seat
 * `from` fills. It ends when ours are all given and `from` has said it is
 * done (fed[seat] == gen, release/acquire: every give of `from` happened
 * before, so the sweep after the load finds them all). A full inbox waits
 * for its CPU's sweep, and every CPU sweeps until its feeder is done, so
 * the ring of hand-offs always moves. */
static void handoff(struct stress_objects *s, struct stress_obj_cpu *c, unsigned me,
		    unsigned seat, unsigned to, uint32_t gen)
{
	uint64_t made = 0;
	uintptr_t p = 0;
	bool told = false;
	for (;;) {
		bool moved = false;
		if (!p && made < s->handoff) {
			/* small objects: the ones whose frees travel as messages */
			size_t size = 1 + stress_below(&c->rng, stress_below(&c->rng, 4) ? 256 : 2048);
			p = (uintptr_t)cairn_objects_alloc(s->o, size);
			made++;
			if (!p) {
				check_enomem(s, c, size, 0);
			} else {
				if (p & 15)
					fail(s, "stress: allocation not 16-byte aligned", p, size);
				c->allocs++;
				unsigned had = c->nheld;
				hold(s, c, me, p, size); /* claimed and stamped */
				/* the inbox holds it next (a failed claim failed the run) */
				p = c->nheld > had ? c->held[--c->nheld].p : 0;
			}
			moved = true;
		}
		if (p && give(s, c, to, p)) {
			c->handed++;
			p = 0;
			moved = true;
		}
		if (!p && made == s->handoff && !told) {
			atomic_store_explicit(&s->fed[to], gen, memory_order_release);
			told = true;
		}
		bool last = atomic_load_explicit(&s->fed[seat], memory_order_acquire) == gen;
		moved |= sweep(s, c, me, seat, 16) != 0;
		if (last && told)
			return;
		if (!moved) {
			if (s->idle)
				s->idle(s->idle_arg);
			cairn_port_pause();
		}
	}
}

uint64_t stress_objects_round(struct stress_objects *s, unsigned me)
{
	struct stress_obj_cpu *c = &s->cpu[me];
	bool planted = false;
	c->rng = s->seed * 0x9e3779b97f4a7c15ull + me * 0xbf58476d1ce4e5b9ull + c->ops + 1;
	unsigned seat = atomic_fetch_add_explicit(&s->seats, 1, memory_order_relaxed);
	unsigned n = s->ncpus < STRESS_OBJ_MAX_CPUS ? s->ncpus : STRESS_OBJ_MAX_CPUS;
	barrier(s);
	/* Everyone is seated and nobody seats again before the round's last
	 * barrier; until the next barrier gen is the same for all. */
	uint32_t gen = atomic_load_explicit(&s->barrier.gen, memory_order_acquire);
	if (seat == 0)
		atomic_store_explicit(&s->seats, 0, memory_order_relaxed);
	if (seat >= n) {
		fail(s, "stress: more CPUs in a round than ncpus", seat, n);
		seat = n - 1;
	}
	if (n > 1 && s->handoff)
		handoff(s, c, me, seat, (seat + 1 + gen % (n - 1)) % n, gen);
	for (uint64_t k = 0; k < s->ops; k++, c->ops++) {
		uint64_t r = stress_below(&c->rng, 100);
		if (c->nheld + 1 >= STRESS_OBJ_HELD || (r < 40 && c->nheld)) {
			release(s, c, (unsigned)stress_below(&c->rng, c->nheld));
		} else if (r < 50 && c->nheld) {
			op_realloc(s, c, me);
		} else if (r < 65) {
			op_swap(s, c, me, seat, n);
		} else {
			op_alloc(s, c, me);
		}
		if (s->plant == STRESS_OBJ_PLANT_DOUBLE && me == 0 && !planted &&
		    k >= s->ops / 2 && c->nheld) {
			oracle_claim(s, c->held[0].p); /* as if cairn handed it out again */
			planted = true;
		}
		if (s->offline_every && k % s->offline_every == s->offline_every - 1) {
			/* The CPU leaves and comes back while the others free its
			 * objects: their messages reach an offline heap. */
			cairn_objects_cpu_offline(s->o);
			for (unsigned spin = 0; spin < 64; spin++)
				cairn_port_pause();
			cairn_objects_cpu_online(s->o);
			c->offlines++;
		}
	}
	/* Everyone's gives are in: take half of what was handed to us (the
	 * rest outlives this round and maybe its thread), free all we hold. */
	barrier(s);
	for (unsigned i = 0; i < STRESS_OBJ_INBOX; i += 2) {
		uintptr_t got = atomic_exchange_explicit(&s->inbox[seat][i], 0, memory_order_acq_rel);
		if (got)
			took(s, c, me, got, false);
	}
	while (c->nheld)
		release(s, c, c->nheld - 1);
	barrier(s);
	return atomic_load(&s->errors);
}

void stress_objects_drain_inboxes(struct stress_objects *s)
{
	for (unsigned i = 0; i < STRESS_OBJ_MAX_CPUS * STRESS_OBJ_INBOX; i++) {
		uintptr_t p = atomic_exchange(&s->inbox[i / STRESS_OBJ_INBOX][i % STRESS_OBJ_INBOX], 0);
		if (!p)
			continue;
		size_t size = (size_t)((volatile uint64_t *)p)[1];
		if (!stamp_ok(p, size))
			fail(s, "stress: object overwritten in an inbox", p, size);
		oracle_release(s, p);
		if (cairn_objects_free(s->o, (void *)p))
			fail(s, "stress: free refused a good object", p, 0);
	}
}

uint64_t stress_objects_check_empty(struct stress_objects *s)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(s->o, &st);
	if (st.slabs || st.objects || st.large || st.cached_frames || st.large_cached_frames)
		fail(s, "stress: left behind after everything was freed and every CPU went offline "
			"(slabs << 32 | large, objects)", st.slabs << 32 | st.large, st.objects);
	if (cairn_objects_validate(s->o))
		fail(s, "stress: objects validate failed", 0, 0);
	for (uint64_t w = 0; w < (s->oracle_granules + 63) / 64; w++)
		if (atomic_load_explicit(&s->oracle[w], memory_order_relaxed))
			fail(s, "stress: the oracle still has live objects", w, 0);
	for (uint64_t w = 0; s->oracle_va && w < (s->oracle_va_granules + 63) / 64; w++)
		if (atomic_load_explicit(&s->oracle_va[w], memory_order_relaxed))
			fail(s, "stress: the oracle still has live large objects", w, 0);
	return atomic_load(&s->errors);
}
