/* SPDX-License-Identifier: MIT */
/*
 * Regions added and removed while worker threads (each a CPU) allocate,
 * free, allocate at fixed places, reserve and unreserve, and bulk-free in
 * the same ranges. Ranges above 4 GiB come and go, two of them sharing a
 * chunk (separate metadata for the one 2 MiB of addresses), one smaller
 * than a chunk; one range below 4 GiB stays.
 *
 * What must hold, with the ownership oracle of stress/ (one word per
 * frame: no frame is ever held twice, every free of a held block
 * succeeds):
 *  - a removal that succeeds leaves no frame of its range held (the
 *    oracle is scanned at once), and no allocation, alloc_at or reserve
 *    hands out a frame of a range whose removal has returned (each
 *    worker looks at the range's state after the call returns);
 *  - a reserve that succeeds gives the caller every frame of its range and
 *    nobody else any (the oracle's moves), one that fails leaves nothing
 *    taken (the count at the quiescent points below); an unreserve of a
 *    range the caller holds succeeds;
 *  - at quiescent points (the workers paused, holding what they hold)
 *    validate passes, and the statistics equal a reference computed from
 *    the oracle: total and free frames per area, free blocks per order and
 *    area, the number of regions; there, removing a range with a frame
 *    held must be EBUSY and removing one with none held must succeed.
 * At the end every frame is free. A grace period of the test's own
 * (grace.h) comes before each reclaim, and the metadata is then
 * freed, so the ASan build catches a look into a removed region.
 *
 * usage: frames_region_race [workers] [cycles] [seed]
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"
#include "grace.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE
#define HELD_MAX 48
#define RESV_MAX 4
#define NRANGES 5

static const struct cairn_mem_range boot = { 32 * MiB, 8 * MiB };
/* B and C share the chunk at 4 GiB + 6 MiB; D is less than a chunk. */
static const struct cairn_mem_range ranges[NRANGES] = {
	{ 4 * GiB, 4 * MiB },
	{ 4 * GiB + 4 * MiB, 2 * MiB + 64 * KiB },
	{ 4 * GiB + 6 * MiB + 64 * KiB, 3 * MiB - 64 * KiB },
	{ 4 * GiB + 12 * MiB, 1 * MiB + 8 * KiB },
	{ 4 * GiB + 16 * MiB, 8 * MiB },
};
#define TOP (4 * GiB + 24 * MiB)

struct resv {
	cairn_phys_t phys;
	uint64_t n; /* frames */
};

struct worker {
	struct stress_cpu c;
	struct resv resv[RESV_MAX];
	unsigned nresv;
	_Atomic uint64_t epoch; /* odd: inside the allocator */
	_Atomic uint64_t ops;
	uint64_t reserves, reserve_busy, at_ok, at_busy, late;
} __attribute__((aligned(64)));

static struct cairn_frames *f;
static struct stress_blocks blocks;
static struct worker *w;
static unsigned nworkers;
static _Atomic int stop, pause_req;
static _Atomic unsigned paused;
static _Atomic unsigned live;     /* ranges added and not removed (bit per range) */
static _Atomic unsigned draining; /* ranges whose removal is being tried */

static int range_of(cairn_phys_t p)
{
	for (int i = 0; i < NRANGES; i++)
		if (p >= ranges[i].base && p < ranges[i].base + ranges[i].size)
			return i;
	return -1;
}

static void grace(void)
{
	grace_fence();
	for (unsigned i = 0; i < nworkers; i++)
		grace_wait(&w[i].epoch);
}

/* A block [p, p + n frames) just handed out: its range must still be in
 * (a removal that returned had to refuse while it was allocated). */
static void check_live(struct worker *me, cairn_phys_t p, uint64_t n)
{
	int g = range_of(p);
	if (g >= 0 && !(atomic_load(&live) & (1u << g))) {
		me->late++;
		stress_fail(&blocks, CAIRN_ECORRUPT, "region race: a frame of a removed range",
			    p, n);
	}
}

static void take(struct worker *me, unsigned cpu, cairn_phys_t p, unsigned order)
{
	check_live(me, p, 1ull << order);
	stress_take(&blocks, &me->c, cpu, p, order);
}

static void free_held(struct worker *me, unsigned cpu, unsigned i)
{
	struct stress_held h;
	if (!stress_release(&blocks, &me->c, cpu, i, &h))
		return;
	grace_enter(&me->epoch);
	int err = cairn_frames_free(f, h.phys, h.order);
	grace_leave(&me->epoch);
	if (err)
		stress_fail(&blocks, err, "region race: free of a held block failed", h.phys, h.order);
}

/* Free every held order-0 frame at once, by bulk free. */
static void free_bulk_held(struct worker *me, unsigned cpu)
{
	cairn_phys_t v[HELD_MAX];
	size_t n = 0;
	for (unsigned i = 0; i < me->c.nheld;) {
		struct stress_held h;
		if (me->c.held[i].order) {
			i++;
			continue;
		}
		if (stress_release(&blocks, &me->c, cpu, i, &h))
			v[n++] = h.phys;
	}
	size_t done = 0;
	grace_enter(&me->epoch);
	int err = n ? cairn_frames_free_bulk(f, v, n, &done) : 0;
	grace_leave(&me->epoch);
	if (err || done != n)
		stress_fail(&blocks, err, "region race: bulk free of held frames failed", done, n);
}

static void unreserve(struct worker *me, unsigned cpu, unsigned i)
{
	struct resv r = me->resv[i];
	me->resv[i] = me->resv[--me->nresv];
	bool ok = true;
	for (uint64_t j = 0; j < r.n; j++)
		ok &= stress_move(&blocks, r.phys + j * FRAME, 0, cpu + 1, 0);
	/* the holder's last write, ordered by the allocator alone */
	*(uint64_t *)cairn_port_phys_to_virt(r.phys) = ~r.phys;
	grace_enter(&me->epoch);
	int err = ok ? cairn_frames_unreserve(f, r.phys, r.n * FRAME) : 0;
	grace_leave(&me->epoch);
	if (err)
		stress_fail(&blocks, err, "region race: unreserve of a reserved range failed", r.phys,
			    r.n);
}

/* A place in a range (any, in or out) or in the boot range. */
static void pick_place(uint64_t *rng, cairn_phys_t *base, uint64_t *size)
{
	unsigned g = (unsigned)stress_below(rng, NRANGES + 1);
	const struct cairn_mem_range *r = g < NRANGES ? &ranges[g] : &boot;
	*base = r->base;
	*size = r->size;
}

static void do_alloc_at(struct worker *me, unsigned cpu)
{
	uint64_t *rng = &me->c.rng;
	cairn_phys_t base;
	uint64_t size;
	pick_place(rng, &base, &size);
	unsigned order = (unsigned)stress_below(rng, 11);
	uint64_t bs = FRAME << order;
	/* an aligned block at or just around the range (its edges too) */
	cairn_phys_t p = ((base + stress_below(rng, size + bs)) & ~(bs - 1));
	if (stress_below(rng, 4) == 0)
		p = stress_below(rng, 2) ? base & ~(bs - 1) : ((base + size) & ~(bs - 1)) - bs;
	grace_enter(&me->epoch);
	int err = cairn_frames_alloc_at(f, p, order);
	grace_leave(&me->epoch);
	if (!err) {
		me->at_ok++;
		take(me, cpu, p, order);
	} else if (err == CAIRN_EBUSY) {
		me->at_busy++;
	} else if (err != CAIRN_ERANGE) {
		stress_fail(&blocks, err, "region race: alloc_at failed oddly", p, order);
	}
}

static void do_reserve(struct worker *me, unsigned cpu)
{
	uint64_t *rng = &me->c.rng;
	if (me->nresv == RESV_MAX)
		return unreserve(me, cpu, (unsigned)stress_below(rng, RESV_MAX));
	cairn_phys_t base;
	uint64_t size;
	pick_place(rng, &base, &size);
	uint64_t n = 1 + stress_below(rng, stress_below(rng, 4) ? 8 : 80);
	cairn_phys_t p = (base + stress_below(rng, size)) & ~(FRAME - 1);
	if (stress_below(rng, 4) == 0) /* across the shared chunk's two regions */
		p = ranges[2].base - stress_below(rng, n) * FRAME;
	grace_enter(&me->epoch);
	int err = cairn_frames_reserve(f, p, n * FRAME);
	grace_leave(&me->epoch);
	me->reserves++;
	if (err == CAIRN_EBUSY || err == CAIRN_ERANGE) {
		me->reserve_busy += err == CAIRN_EBUSY;
		return;
	}
	if (err) {
		stress_fail(&blocks, err, "region race: reserve failed oddly", p, n);
		return;
	}
	check_live(me, p, n);
	check_live(me, p + (n - 1) * FRAME, 1);
	bool ok = true;
	for (uint64_t j = 0; j < n; j++)
		ok &= stress_move(&blocks, p + j * FRAME, 0, 0, cpu + 1);
	if (ok)
		me->resv[me->nresv++] = (struct resv){ p, n };
}

static void do_alloc(struct worker *me, unsigned cpu, unsigned r)
{
	static const unsigned orders[10] = { 0, 0, 0, 1, 2, 3, 5, 6, 9, 10 };
	uint64_t *rng = &me->c.rng;
	unsigned flags = r & 1 ? CAIRN_F_HIGH : (unsigned)stress_below(rng, 8);
	if (r % 5 == 0) { /* bulk */
		cairn_phys_t v[16];
		size_t want = 1 + stress_below(rng, 16);
		if (me->c.nheld + want > STRESS_HELD)
			return;
		grace_enter(&me->epoch);
		size_t got = cairn_frames_alloc_bulk(f, flags, v, want);
		grace_leave(&me->epoch);
		for (size_t i = 0; i < got; i++)
			take(me, cpu, v[i], 0);
		return;
	}
	unsigned order = orders[stress_below(rng, 10)];
	unsigned align = order + (stress_below(rng, 4) == 0 ? (unsigned)stress_below(rng, 5) : 0);
	cairn_phys_t p;
	grace_enter(&me->epoch);
	int err = align == order ? cairn_frames_alloc(f, order, flags, &p)
				 : cairn_frames_alloc_aligned(f, order, align, flags, &p);
	grace_leave(&me->epoch);
	if (err) {
		me->c.enomem++;
		return;
	}
	if (p & ((FRAME << align) - 1))
		stress_fail(&blocks, CAIRN_EALIGN, "region race: block misaligned", p, align);
	take(me, cpu, p, order);
}

static void *worker_main(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	struct worker *me = &w[cpu];
	struct stress_cpu *c = &me->c;
	if (cairn_host_cpu_bind(cpu)) {
		fprintf(stderr, "cannot bind cpu %u\n", cpu);
		exit(2);
	}
	while (!atomic_load(&stop)) {
		if (atomic_load(&pause_req)) {
			atomic_fetch_add(&paused, 1);
			while (atomic_load(&pause_req))
				sched_yield();
			atomic_fetch_sub(&paused, 1);
			continue;
		}
		c->ops++;
		atomic_fetch_add_explicit(&me->ops, 1, memory_order_relaxed);
		unsigned dr = atomic_load(&draining);
		if (dr) {
			/* give back what lies in a range being removed, but keep
			 * allocating there: the removal races with that */
			stress_mailbox_take(&blocks, &me->c, cpu);
			unsigned i = 0;
			while (i < c->nheld) {
				int g = range_of(c->held[i].phys);
				if (g >= 0 && (dr & (1u << g)))
					free_held(me, cpu, i);
				else
					i++;
			}
			for (i = 0; i < me->nresv;) {
				int g = range_of(me->resv[i].phys);
				int h = range_of(me->resv[i].phys + (me->resv[i].n - 1) * FRAME);
				if ((g >= 0 && (dr & (1u << g))) || (h >= 0 && (dr & (1u << h))))
					unreserve(me, cpu, i);
				else
					i++;
			}
		}
		unsigned r = (unsigned)stress_below(&c->rng, 100);
		if (c->nheld && (r < 35 || c->nheld >= HELD_MAX)) {
			free_held(me, cpu, (unsigned)stress_below(&c->rng, c->nheld));
		} else if (r < 38) {
			free_bulk_held(me, cpu);
		} else if (r < 42) {
			if (!dr)
				stress_swap(&blocks, c, cpu);
		} else if (r < 52) {
			if (me->nresv)
				unreserve(me, cpu, (unsigned)stress_below(&c->rng, me->nresv));
		} else if (r < 62) {
			do_reserve(me, cpu);
		} else if (r < 75) {
			do_alloc_at(me, cpu);
		} else {
			do_alloc(me, cpu, r);
		}
	}
	while (me->nresv)
		unreserve(me, cpu, me->nresv - 1);
	while (c->nheld)
		free_held(me, cpu, c->nheld - 1);
	cairn_host_cpu_unregister();
	return NULL;
}

/* ---- the quiescent checks ---- */

static unsigned area_of(uint64_t fr)
{
	return fr < 16 * MiB / FRAME ? CAIRN_AREA_LOW16M
	       : fr < 4 * GiB / FRAME ? CAIRN_AREA_LOW4G : CAIRN_AREA_HIGH;
}

static bool frame_held(uint64_t fr)
{
	return atomic_load_explicit(&blocks.owner[fr - blocks.oracle_first], memory_order_relaxed);
}

/* The reference's statistics of a region [first, end): its frames, its
 * free frames and its free blocks (maximal aligned blocks of each run of
 * free frames) from the oracle. */
static void ref_region(uint64_t first, uint64_t end, struct cairn_frames_stats *st)
{
	unsigned a = area_of(first);
	st->regions++;
	st->total_frames[a] += end - first;
	for (uint64_t fr = first; fr < end;) {
		if (frame_held(fr)) {
			fr++;
			continue;
		}
		uint64_t run = fr;
		while (run < end && !frame_held(run))
			run++;
		st->free_frames[a] += run - fr;
		while (fr < run) {
			unsigned k = 0;
			while (k < CAIRN_MAX_ORDER && !(fr & ((2ull << k) - 1)) && fr + (2ull << k) <= run)
				k++;
			st->free_blocks[a][k]++;
			fr += 1ull << k;
		}
	}
}

static bool range_held(unsigned g)
{
	uint64_t first = ranges[g].base / FRAME, end = (ranges[g].base + ranges[g].size) / FRAME;
	for (uint64_t fr = first; fr < end; fr++)
		if (frame_held(fr))
			return true;
	return false;
}

static void *metas[NRANGES];
static uint64_t quiet_removes, quiet_busy;

static bool remove_and_reclaim(unsigned g)
{
	int err = cairn_frames_remove_region(f, ranges[g].base);
	if (err)
		return false;
	/* nothing of it may be held now, and nothing handed out later */
	if (range_held(g))
		stress_fail(&blocks, CAIRN_EBUSY, "region race: removed with a frame held",
			    ranges[g].base, g);
	atomic_fetch_and(&live, ~(1u << g));
	grace();
	if ((err = cairn_frames_reclaim_region(f, ranges[g].base)))
		stress_fail(&blocks, err, "region race: reclaim failed", ranges[g].base, g);
	free(metas[g]);
	metas[g] = NULL;
	return true;
}

static void quiescent_check(uint64_t *rng)
{
	atomic_store(&pause_req, 1);
	while (atomic_load(&paused) != nworkers)
		sched_yield();
	if (cairn_frames_validate(f))
		stress_fail(&blocks, CAIRN_ECORRUPT, "region race: validate failed", 0, 0);
	struct cairn_frames_stats st, ref = { 0 };
	cairn_frames_stats(f, &st);
	ref_region(boot.base / FRAME, (boot.base + boot.size) / FRAME, &ref);
	unsigned lv = atomic_load(&live);
	for (unsigned g = 0; g < NRANGES; g++)
		if (lv & (1u << g))
			ref_region(ranges[g].base / FRAME, (ranges[g].base + ranges[g].size) / FRAME,
				   &ref);
	ref.meta_bytes = st.meta_bytes;
	if (memcmp(&st, &ref, sizeof(st))) {
		stress_fail(&blocks, CAIRN_ECORRUPT, "region race: statistics differ from the oracle",
			    st.free_frames[2], ref.free_frames[2]);
		for (unsigned a = 0; a < CAIRN_AREAS; a++) {
			printf("area %u: total %llu/%llu free %llu/%llu, blocks", a,
			       (unsigned long long)st.total_frames[a],
			       (unsigned long long)ref.total_frames[a],
			       (unsigned long long)st.free_frames[a],
			       (unsigned long long)ref.free_frames[a]);
			for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++)
				printf(" %llu/%llu", (unsigned long long)st.free_blocks[a][k],
				       (unsigned long long)ref.free_blocks[a][k]);
			printf("\n");
		}
	}
	/* a removal decides from what is held alone: every live range with a
	 * frame held refuses, and one with none (from a random start) goes */
	bool removed = false;
	for (unsigned j = 0, g0 = (unsigned)stress_below(rng, NRANGES); j < NRANGES; j++) {
		unsigned g = (g0 + j) % NRANGES;
		if (!(lv & (1u << g)))
			continue;
		bool held = range_held(g);
		if (!held && removed)
			continue;
		int err = cairn_frames_remove_region(f, ranges[g].base);
		if (held && err != CAIRN_EBUSY)
			stress_fail(&blocks, err, "region race: removal of a held range not EBUSY",
				    ranges[g].base, g);
		if (!held && err)
			stress_fail(&blocks, err, "region race: removal of a free range failed",
				    ranges[g].base, g);
		quiet_busy += held;
		if (err)
			continue;
		removed = true;
		atomic_fetch_and(&live, ~(1u << g));
		/* (every worker is paused outside the allocator) */
		if (cairn_frames_reclaim_region(f, ranges[g].base))
			stress_fail(&blocks, CAIRN_ERANGE, "region race: reclaim failed", ranges[g].base,
				    g);
		free(metas[g]);
		metas[g] = NULL;
		quiet_removes++;
	}
	atomic_store(&pause_req, 0);
}

/* Let the workers run n operations (between them). */
static void let_run(uint64_t n)
{
	uint64_t until = n, now;
	for (unsigned i = 0; i < nworkers; i++)
		until += atomic_load_explicit(&w[i].ops, memory_order_relaxed);
	do {
		sched_yield();
		now = 0;
		for (unsigned i = 0; i < nworkers; i++)
			now += atomic_load_explicit(&w[i].ops, memory_order_relaxed);
	} while (now < until && !atomic_load(&blocks.errors));
}

static int give(void *ctx, cairn_phys_t phys, unsigned order)
{
	(void)ctx;
	return cairn_frames_free(f, phys, order);
}

int main(int argc, char **argv)
{
	nworkers = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
	unsigned cycles = argc > 2 ? (unsigned)atoi(argv[2]) : 200;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	if (nworkers == 0 || nworkers >= STRESS_MAX_CPUS)
		return 2;
	if (cairn_host_init(nworkers + 1, 0, TOP))
		return 2;
	struct cairn_frames_config cfg = { .ncpus = nworkers + 1 };
	cfg.meta_size = cairn_frames_meta_size(&boot, 1, cfg.ncpus);
	cfg.meta = malloc(cfg.meta_size);
	if (!cfg.meta || cairn_frames_init(&f, &boot, 1, &cfg))
		return 2;
	blocks.oracle_first = boot.base / FRAME;
	blocks.oracle_frames = TOP / FRAME - blocks.oracle_first;
	blocks.owner = calloc(blocks.oracle_frames, sizeof(*blocks.owner));
	w = aligned_alloc(64, nworkers * sizeof(*w));
	if (!blocks.owner || !w)
		return 2;
	stress_blocks_init(&blocks);
	memset(w, 0, nworkers * sizeof(*w));
	for (unsigned i = 0; i < nworkers; i++)
		stress_cpu_init(&w[i].c, seed * 0x9e3779b97f4a7c15ull + i + 1);
	uint64_t total = stress_free_frames(f);

	pthread_t t[STRESS_MAX_CPUS];
	for (unsigned i = 0; i < nworkers; i++)
		pthread_create(&t[i], NULL, worker_main, (void *)(uintptr_t)i);
	if (cairn_host_cpu_bind(nworkers))
		return 2;

	uint64_t rng = seed ^ 0x5bd1e995;
	uint64_t adds = 0, removes = 0, busy = 0, gaveup = 0;
	for (unsigned i = 0; i < cycles && !atomic_load(&blocks.errors); i++) {
		unsigned g = (unsigned)stress_below(&rng, NRANGES);
		if (!(atomic_load(&live) & (1u << g))) {
			size_t ms = cairn_frames_region_meta_size(ranges[g].base, ranges[g].size);
			metas[g] = malloc(ms);
			if (!metas[g])
				return 2;
			/* live before the add: a worker may be handed a frame of
			 * it as soon as the add publishes it */
			atomic_fetch_or(&live, 1u << g);
			int err = cairn_frames_add_region(f, ranges[g].base, ranges[g].size, metas[g], ms);
			if (err) {
				stress_fail(&blocks, err, "region race: add_region failed", ranges[g].base, g);
				break;
			}
			adds++;
		} else {
			/* the workers give its blocks back but keep allocating
			 * from it; try the removal against them for a while */
			atomic_fetch_or(&draining, 1u << g);
			bool done = false;
			for (unsigned k = 0; k < 100 && !done; k++) {
				if (!(done = remove_and_reclaim(g))) {
					busy++;
					let_run(4);
				}
			}
			atomic_fetch_and(&draining, ~(1u << g));
			removes += done;
			gaveup += !done;
		}
		let_run(1000);
		if (i % 4 == 3)
			quiescent_check(&rng);
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(t[i], NULL);
	stress_mailbox_empty(&blocks, give, NULL);

	uint64_t errors = atomic_load(&blocks.errors);
	/* everything back: the ranges still in, then out */
	unsigned lv = atomic_load(&live);
	uint64_t want = total;
	for (unsigned g = 0; g < NRANGES; g++)
		if (lv & (1u << g))
			want += ranges[g].size / FRAME;
	if (stress_free_frames(f) != want) {
		printf("free frames %llu, expected %llu\n", (unsigned long long)stress_free_frames(f),
		       (unsigned long long)want);
		errors++;
	}
	for (unsigned g = 0; g < NRANGES; g++)
		if ((lv & (1u << g)) && !remove_and_reclaim(g)) {
			printf("range %u: removal refused with everything free\n", g);
			errors++;
		}
	if (cairn_frames_validate(f) || stress_free_frames(f) != total)
		errors++;
	uint64_t allocs = 0, frees = 0, resv = 0, resv_busy = 0, at_ok = 0, at_busy = 0;
	for (unsigned i = 0; i < nworkers; i++) {
		allocs += w[i].c.allocs;
		frees += w[i].c.frees;
		resv += w[i].reserves;
		resv_busy += w[i].reserve_busy;
		at_ok += w[i].at_ok;
		at_busy += w[i].at_busy;
	}
	uint64_t reports = cairn_host_reports();
	printf("region race: %u workers, %u cycles, seed %llu: adds %llu, removals %llu (busy %llu, "
	       "given up %llu; at quiescent points %llu, busy %llu), allocs %llu frees %llu, "
	       "reserves %llu (busy %llu), alloc_at %llu (busy %llu), reports %llu, errors %llu\n",
	       nworkers, cycles, (unsigned long long)seed, (unsigned long long)adds,
	       (unsigned long long)removes, (unsigned long long)busy, (unsigned long long)gaveup,
	       (unsigned long long)quiet_removes, (unsigned long long)quiet_busy,
	       (unsigned long long)allocs, (unsigned long long)frees, (unsigned long long)resv,
	       (unsigned long long)resv_busy, (unsigned long long)at_ok,
	       (unsigned long long)at_busy, (unsigned long long)reports,
	       (unsigned long long)errors);
	return errors + reports ? 1 : 0;
}
