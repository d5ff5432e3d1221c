/* SPDX-License-Identifier: MIT */
/*
 * Region slots reused under load: worker threads (registered as CPUs)
 * allocate and free blocks of every kind the short paths serve, in both
 * areas, while one more thread adds a range above 4 GiB, lets the workers
 * use it, removes it, waits for a grace period, reclaims its slot, frees
 * its metadata and adds the next range into the same slot, many times
 * more than the table has slots. The hints, seeds and park slots the
 * workers keep from one filling of the slot meet the next one. The
 * ownership oracle of stress/ checks no frame is ever held twice, every
 * free must succeed, and at the end every frame is free and validate
 * passes. Runs in the TSan build (zero reports) and the ASan build (the
 * old metadata is freed, so any look into it is caught).
 *
 * Now and then a worker saves its hints of the area and later plants them
 * back, as a CPU stalled between its load of a hint and its use would
 * use it after the slot was reclaimed and filled again.
 *
 * The grace period is the test's own (grace.h): the remover waits out
 * every call a worker may have begun before the removal returned.
 * usage: frames_reuse_stress [workers] [cycles] [seed]
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/frames_layout.h"
#include "blocks.h"
#include "grace.h"

#define MiB (1024ull * 1024)
#define HELD_MAX 64        /* blocks a worker holds at most */
#define OPS_PER_CYCLE 2000 /* worker operations while a range is in */

static const struct cairn_mem_range boot = { 32 * MiB, 16 * MiB }; /* below 4 GiB */
static const struct cairn_mem_range cycle[4] = {
	{ 4096 * MiB, 4 * MiB },
	{ 4096 * MiB + 6 * MiB, 2 * MiB },
	{ 4096 * MiB + 10 * MiB, 6 * MiB },
	{ 4096 * MiB + 18 * MiB, 8 * MiB },
};

/* A worker's hints for the high area (the cycled ranges'), as saved at
 * some point: planted back later, they are what a CPU that loaded them
 * before a reclaim cleared them uses after the next add, or a CPU's
 * hints of a removed filling of the slot, however old (below 512
 * generations, the tag alone must refuse them). */
struct saved_hints {
	uint64_t small, word, huge, owned, park;
};

struct worker {
	struct stress_cpu c;
	struct saved_hints saved;
	_Atomic uint64_t epoch; /* odd: inside the allocator */
	_Atomic uint64_t ops;
} __attribute__((aligned(64)));

static struct cairn_frames *f;
static struct stress_blocks blocks;
static struct worker *w;
static unsigned nworkers;
static _Atomic int stop, draining;

/* Every call that may have seen the region before its removal returned. */
static void grace(void)
{
	grace_fence();
	for (unsigned i = 0; i < nworkers; i++)
		grace_wait(&w[i].epoch);
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
		stress_fail(&blocks, err, "reuse stress: free of a held block failed", h.phys,
			    h.order);
}

static void hints_save(struct saved_hints *sv, struct cpu_hint *h)
{
	sv->small = atomic_load_explicit(&h->small[CAIRN_AREA_HIGH], memory_order_relaxed);
	sv->word = atomic_load_explicit(&h->word[CAIRN_AREA_HIGH], memory_order_relaxed);
	sv->huge = atomic_load_explicit(&h->huge[CAIRN_AREA_HIGH], memory_order_relaxed);
	sv->owned = atomic_load_explicit(&h->owned[CAIRN_AREA_HIGH], memory_order_relaxed);
	sv->park = atomic_load_explicit(&h->park[CAIRN_AREA_HIGH], memory_order_relaxed);
}

static void hints_plant(const struct saved_hints *sv, struct cpu_hint *h)
{
	atomic_store_explicit(&h->small[CAIRN_AREA_HIGH], sv->small, memory_order_relaxed);
	atomic_store_explicit(&h->word[CAIRN_AREA_HIGH], sv->word, memory_order_relaxed);
	atomic_store_explicit(&h->huge[CAIRN_AREA_HIGH], sv->huge, memory_order_relaxed);
	atomic_store_explicit(&h->owned[CAIRN_AREA_HIGH], sv->owned, memory_order_relaxed);
	atomic_store_explicit(&h->park[CAIRN_AREA_HIGH], sv->park, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	struct worker *me = &w[cpu];
	struct stress_cpu *c = &me->c;
	static const unsigned orders[8] = { 0, 0, 0, 0, 0, 1, 3, CAIRN_HUGE_ORDER };
	if (cairn_host_cpu_bind(cpu)) {
		fprintf(stderr, "cannot bind cpu %u\n", cpu);
		exit(2);
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&me->ops, 1, memory_order_relaxed);
		c->ops++;
		if (atomic_load_explicit(&draining, memory_order_relaxed)) {
			/* give back the blocks of the range being removed */
			stress_mailbox_take(&blocks, &me->c, cpu);
			unsigned i = 0;
			while (i < c->nheld && c->held[i].phys < 4096 * MiB)
				i++;
			if (i < c->nheld) {
				free_held(me, cpu, i);
				continue;
			}
		}
		unsigned r = (unsigned)stress_below(&c->rng, 100);
		if (c->nheld && (r < 45 || c->nheld >= HELD_MAX)) {
			free_held(me, cpu, (unsigned)stress_below(&c->rng, c->nheld));
		} else if (r < 50) {
			if (!atomic_load_explicit(&draining, memory_order_relaxed))
				stress_swap(&blocks, c, cpu);
		} else {
			unsigned order = orders[stress_below(&c->rng, 8)];
			unsigned flags = atomic_load_explicit(&draining, memory_order_relaxed)
						 ? CAIRN_F_LOW4G
						 : r < 75 ? CAIRN_F_HIGH : 0;
			cairn_phys_t p;
			grace_enter(&me->epoch);
			/* (this CPU's own hints: only it stores them, or the
			 * reclaim, which clears them) */
			if (r % 16 == 0)
				hints_save(&me->saved, &f->cpu[cpu]);
			else if (r % 16 == 1)
				hints_plant(&me->saved, &f->cpu[cpu]);
			int err = cairn_frames_alloc(f, order, flags, &p);
			grace_leave(&me->epoch);
			if (err)
				c->enomem++;
			else
				stress_take(&blocks, c, cpu, p, order);
		}
	}
	while (c->nheld)
		free_held(me, cpu, c->nheld - 1);
	cairn_host_cpu_unregister();
	return NULL;
}

static uint64_t ops_total(void)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < nworkers; i++)
		n += atomic_load_explicit(&w[i].ops, memory_order_relaxed);
	return n;
}

static int give(void *ctx, cairn_phys_t phys, unsigned order)
{
	(void)ctx;
	return cairn_frames_free(f, phys, order);
}

int main(int argc, char **argv)
{
	nworkers = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
	unsigned cycles = argc > 2 ? (unsigned)atoi(argv[2]) : 3 * CAIRN_MAX_REGIONS + 8;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	if (nworkers == 0 || nworkers >= STRESS_MAX_CPUS)
		return 2;
	uint64_t top = cycle[3].base + cycle[3].size;
	/* the workers and the remover, each a CPU */
	if (cairn_host_init(nworkers + 1, 0, top))
		return 2;
	struct cairn_frames_config cfg = { .ncpus = nworkers + 1 };
	cfg.meta_size = cairn_frames_meta_size(&boot, 1, cfg.ncpus);
	cfg.meta = malloc(cfg.meta_size);
	if (!cfg.meta || cairn_frames_init(&f, &boot, 1, &cfg))
		return 2;
	blocks.oracle_first = boot.base >> CAIRN_FRAME_SHIFT;
	blocks.oracle_frames = (top >> CAIRN_FRAME_SHIFT) - blocks.oracle_first;
	blocks.owner = calloc(blocks.oracle_frames, sizeof(*blocks.owner));
	w = aligned_alloc(64, nworkers * sizeof(*w));
	if (!blocks.owner || !w)
		return 2;
	stress_blocks_init(&blocks);
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	uint64_t total = st.free_frames[CAIRN_AREA_LOW4G];

	pthread_t t[STRESS_MAX_CPUS];
	for (unsigned i = 0; i < nworkers; i++) {
		stress_cpu_init(&w[i].c, seed * 0x9e3779b97f4a7c15ull + i + 1);
		w[i].saved = (struct saved_hints){ 0 };
		atomic_init(&w[i].epoch, 0);
		atomic_init(&w[i].ops, 0);
	}
	for (unsigned i = 0; i < nworkers; i++)
		pthread_create(&t[i], NULL, worker_main, (void *)(uintptr_t)i);
	if (cairn_host_cpu_bind(nworkers))
		return 2;

	uint64_t busy = 0, reused = 0;
	unsigned first_slot = ~0u;
	for (unsigned i = 0; i < cycles; i++) {
		const struct cairn_mem_range *g = &cycle[i % 4];
		size_t ms = cairn_frames_region_meta_size(g->base, g->size);
		void *meta = malloc(ms);
		if (!meta)
			return 2;
		int err = cairn_frames_add_region(f, g->base, g->size, meta, ms);
		if (err) {
			stress_fail(&blocks, err, "reuse stress: add_region failed", g->base, i);
			free(meta);
			break;
		}
		struct region *r = region_find(f, g->base >> CAIRN_FRAME_SHIFT);
		unsigned slot = r ? (unsigned)(r - f->region) : ~0u;
		if (i == 0)
			first_slot = slot;
		reused += slot == first_slot;
		/* let the workers use it */
		uint64_t until = ops_total() + OPS_PER_CYCLE;
		while (ops_total() < until)
			sched_yield();
		atomic_store_explicit(&draining, 1, memory_order_relaxed);
		while ((err = cairn_frames_remove_region(f, g->base)) == CAIRN_EBUSY) {
			busy++;
			sched_yield();
		}
		atomic_store_explicit(&draining, 0, memory_order_relaxed);
		if (err)
			stress_fail(&blocks, err, "reuse stress: remove_region failed", g->base, i);
		grace();
		if ((err = cairn_frames_reclaim_region(f, g->base)))
			stress_fail(&blocks, err, "reuse stress: reclaim failed", g->base, i);
		free(meta);
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(t[i], NULL);
	stress_mailbox_empty(&blocks, give, NULL);

	uint64_t errors = atomic_load(&blocks.errors);
	cairn_frames_stats(f, &st);
	if (st.free_frames[CAIRN_AREA_LOW4G] != total || st.free_frames[CAIRN_AREA_HIGH] ||
	    st.regions != 1) {
		printf("free frames %llu (of %llu), high %llu, regions %u\n",
		       (unsigned long long)st.free_frames[CAIRN_AREA_LOW4G],
		       (unsigned long long)total,
		       (unsigned long long)st.free_frames[CAIRN_AREA_HIGH], st.regions);
		errors++;
	}
	if (cairn_frames_validate(f))
		errors++;
	if (reused != cycles || atomic_load(&f->nregions) != 2) {
		printf("slot reused %llu of %u cycles, %u slots used\n", (unsigned long long)reused,
		       cycles, atomic_load(&f->nregions));
		errors++;
	}
	uint64_t allocs = 0, frees = 0, enomem = 0, swaps = 0;
	for (unsigned i = 0; i < nworkers; i++) {
		allocs += w[i].c.allocs;
		frees += w[i].c.frees;
		enomem += w[i].c.enomem;
		swaps += w[i].c.swaps;
	}
	uint64_t reports = cairn_host_reports();
	printf("reuse stress: %u workers, %u cycles, seed %llu: allocs %llu frees %llu enomem %llu "
	       "swaps %llu, removals busy %llu times, reports %llu, errors %llu\n",
	       nworkers, cycles, (unsigned long long)seed, (unsigned long long)allocs,
	       (unsigned long long)frees, (unsigned long long)enomem, (unsigned long long)swaps,
	       (unsigned long long)busy, (unsigned long long)reports,
	       (unsigned long long)errors);
	return errors + reports ? 1 : 0;
}
