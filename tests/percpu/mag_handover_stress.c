/* SPDX-License-Identifier: MIT */
/*
 * Slots that change hands while drains run. Threads register, run a burst
 * of allocations and frees, and unregister, over and over; half the time
 * they drain their slot first, otherwise they leave what it holds to the
 * slot's next thread. More threads than the cache has slots run at once,
 * so some registrations land on slots past ncpus (straight to the source).
 * Meanwhile a drainer on a CPU outside the cache calls cairn_mag_drain_all
 * without pause, with drain_wait 1: it asks every CPU holding magazines and
 * gives up on each almost at once, so requests reach slots in every state
 * (in a burst, between an unregister and the next register, just handed
 * over), and every pending one is answered by the slot's next operation,
 * whichever thread runs it. The source is small, so allocations run dry
 * and drain too.
 *
 * Oracles: one owner byte per item (an item handed out twice, or one the
 * source never had, fails at once); the reference source counts every bad
 * put; and once every thread has been joined, for the quiescent cache: in
 * hands (none) + in the slots + in the depot + in the source == the items,
 * each slot at most two magazines, the depot within its limits, the whole
 * within the bound, and each slot's hits + misses == the operations its
 * threads ran on it.
 *
 * A drainer that, giving up on a CPU, emptied its slot itself (racing the
 * owner's hits) fails it in every run (12 of 12 with the registered
 * arguments): items handed out twice, put back twice, or a magazine used
 * after its frame was freed. A depot pop that stores the head instead of
 * its CAS fails about half the runs.
 *
 * Arguments: threads, lives per thread, operations per life, seed.
 */
#include <cairn/host.h>
#include <cairn/magazine.h>

#include <sched.h>
#include <stdatomic.h>

#include "../check.h"
#include "ref_source.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define PORT_CPUS 8
#define NCPUS 4             /* the cache's slots; the others bypass it */
#define DRAINER (PORT_CPUS - 1)
#define NITEMS 200
#define MAG 5
#define DEPOT 2
#define HAND 40
#define MAX_THREADS 6       /* with the drainer, at most PORT_CPUS slots */

static struct cairn_frames *frames;
static struct ref_source src;
static struct cairn_mag_cache *mc;
static _Atomic unsigned char owner[NITEMS]; /* 1 + thread, or 0 */
static _Atomic uint64_t ops[NCPUS];         /* operations run on each slot */
static atomic_int failed, running, drainer_bound;
static unsigned lives, ops_per_life;
static uint64_t seed;

static void fail(unsigned id, const char *what, uint64_t v)
{
	fprintf(stderr, "thread %u: %s (%#llx)\n", id, what, (unsigned long long)v);
	atomic_store(&failed, 1);
}

static void count(unsigned slot)
{
	if (slot < NCPUS)
		atomic_fetch_add_explicit(&ops[slot], 1, memory_order_relaxed);
}

static void take(unsigned id, uint64_t it)
{
	int64_t i = ref_index(&src, it);
	if (i < 0)
		fail(id, "an item the source never had", it);
	else if (atomic_exchange(&owner[i], (unsigned char)(1 + id)))
		fail(id, "an item already in another hand", it);
}

static void give(unsigned slot, uint64_t it)
{
	atomic_store(&owner[ref_index(&src, it)], 0);
	count(slot);
	cairn_mag_free(mc, it);
}

/* cairn_mag_alloc with its tries counted on the slot. */
static int alloc(unsigned slot, uint64_t *it)
{
	count(slot);
	int err = cairn_mag_try_alloc(mc, it);
	if (err == CAIRN_ENOMEM) {
		cairn_mag_drain_all(mc);
		count(slot);
		err = cairn_mag_try_alloc(mc, it);
	}
	return err;
}

static unsigned take_slot(void)
{
	int slot;
	while ((slot = cairn_host_cpu_register()) < 0)
		sched_yield();
	return (unsigned)slot;
}

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t rng = seed * 0x100000001b3ull + id, hand[HAND];
	unsigned nh = 0;
	for (unsigned life = 0; life < lives && !atomic_load(&failed); life++) {
		unsigned slot = take_slot();
		for (unsigned n = 0; n < ops_per_life; n++) {
			unsigned r = (unsigned)(splitmix64(&rng) % 100);
			uint64_t it;
			if (r < 48) {
				if (nh < HAND && alloc(slot, &it) == 0) {
					take(id, it);
					hand[nh++] = it;
				}
			} else if (r < 96) {
				if (nh) {
					unsigned k = (unsigned)(splitmix64(&rng) % nh);
					it = hand[k];
					hand[k] = hand[--nh];
					give(slot, it);
				}
			} else if (r < 98) {
				if (slot < NCPUS && cairn_mag_drain_cpu(mc, slot))
					fail(id, "drain_cpu of the caller's slot", slot);
			} else {
				cairn_mag_poll(mc);
			}
		}
		if (splitmix64(&rng) & 1 && slot < NCPUS)
			cairn_mag_drain_cpu(mc, slot);
		cairn_host_cpu_unregister();
	}
	unsigned slot = take_slot();
	while (nh)
		give(slot, hand[--nh]);
	cairn_host_cpu_unregister();
	atomic_fetch_sub(&running, 1);
	return NULL;
}

static void *drainer(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(DRAINER) == 0);
	atomic_store(&drainer_bound, 1);
	while (atomic_load(&running))
		cairn_mag_drain_all(mc);
	cairn_host_cpu_unregister();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 5;
	lives = argc > 2 ? (unsigned)atoi(argv[2]) : 40;
	ops_per_life = argc > 3 ? (unsigned)atoi(argv[3]) : 2000;
	seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	REQUIRE(threads >= 1 && threads <= MAX_THREADS);
	REQUIRE(cairn_host_init(PORT_CPUS, 0, 16 * MiB) == 0);
	/* magazine frames: a few more than the cache can ever use */
	struct cairn_mem_range map[] = { { 1 * MiB, 40 * CAIRN_FRAME_SIZE } };
	struct cairn_frames_config fcfg = { .ncpus = PORT_CPUS };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	const uint64_t frames0 = frames_free_total(frames);
	ref_init(&src, NITEMS);
	struct cairn_mag_config cfg = {
		.source = ref_as_source(&src), .frames = frames, .ncpus = NCPUS,
		.mag_size = MAG, .refill = 3, .depot_full = DEPOT, .depot_empty = DEPOT,
		.drain_wait = 1,
	};
	REQUIRE(cairn_mag_create(&mc, &cfg) == 0);

	atomic_store(&running, (int)threads);
	pthread_t t[MAX_THREADS], d;
	REQUIRE(pthread_create(&d, NULL, drainer, NULL) == 0);
	while (!atomic_load(&drainer_bound)) /* its slot before the workers take any */
		sched_yield();
	for (unsigned i = 0; i < threads; i++)
		REQUIRE(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	pthread_join(d, NULL);
	REQUIRE(!atomic_load(&failed));

	struct cairn_mag_stats ms;
	cairn_mag_stats(mc, &ms);
	uint64_t held = 0, total = 0;
	for (unsigned c = 0; c < NCPUS; c++) {
		struct cairn_mag_cpu_stats st;
		REQUIRE(cairn_mag_cpu_stats(mc, c, &st) == 0);
		CHECK(st.held <= 2 * MAG && st.magazines <= 2);
		CHECK_EQ(st.hits + st.misses, atomic_load(&ops[c]));
		held += st.held;
		total += st.hits + st.misses;
	}
	CHECK_EQ(held, ms.cpu_held);
	CHECK(ms.depot_full <= DEPOT && ms.depot_empty <= DEPOT);
	CHECK(ms.cpu_held + ms.depot_items <= ms.bound);
	CHECK_EQ(ms.cpu_held + ms.depot_items + ref_free(&src), NITEMS);
	CHECK_EQ(src.errors, 0);
	printf("%llu operations on the slots, %llu drains; left cached %llu, in the depot %llu\n",
	       (unsigned long long)total, (unsigned long long)ms.drains,
	       (unsigned long long)ms.cpu_held,
	       (unsigned long long)ms.depot_items);

	/* every slot's next thread is gone: drain them, then everything */
	for (unsigned c = 0; c < NCPUS; c++)
		CHECK_EQ(cairn_mag_drain_cpu(mc, c), 0);
	cairn_mag_drain_all(mc);
	CHECK_EQ(ref_free(&src), NITEMS);
	cairn_mag_destroy(mc);
	CHECK_EQ(ref_free(&src), NITEMS);
	CHECK_EQ(src.errors, 0);
	CHECK_EQ(frames_free_total(frames), frames0);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("mag_handover_stress");
}
