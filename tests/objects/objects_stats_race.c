/* SPDX-License-Identifier: MIT */
/*
 * Statistics read while every other CPU is inside the instance: workers
 * allocate small and large objects, free most of them themselves and hand
 * the rest to the next worker (remote frees: batches, messages), empty
 * their slabs (released, their blocks cached or given back) and take
 * their heaps offline and back now and then; meanwhile the main thread
 * reads cairn_objects_stats and cairn_objects_heap_stats in a loop.
 * A racing snapshot is not exact, but no figure may exceed what the
 * instance could ever hold (a count that wrapped below zero, or one torn,
 * would), and every heap's share stays within the whole's bounds. When
 * everyone is quiet the figures are exact: what the test holds, then
 * nothing. Under TSan, every field the stats read must be an atomic its
 * writers store: a plain one is a reported race.
 * usage: objects_stats_race [workers [rounds [seed]]]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "../check.h"
#include "objtest.h"

#define MEM_MIB 64
#define BATCH 96
#define MAILBOX 4096
#define LARGE_SIZE (68u << 10) /* 17 pages: a large cache's smallest bin */

static struct cairn_objects *o;
static unsigned nworkers, rounds;
static uint64_t seed;
static _Atomic unsigned running, snapshots;
static _Atomic uint64_t handed; /* small objects freed by another worker's heap */
static _Atomic unsigned bad;    /* frees refused (workers do not CHECK) */
#define MIN_SNAPSHOTS 64        /* workers go on until the monitor made as many */

/* Objects waiting for worker i to free them (handed over by worker i - 1). */
static struct mailbox {
	pthread_mutex_t lock;
	void *p[MAILBOX];
	unsigned n;
} *box;

static size_t obj_size(uint64_t r)
{
	if (r % 64 == 0)
		return LARGE_SIZE + (r >> 8) % (4 * 4096);
	return 1 + (r >> 8) % (r % 8 == 0 ? 4096 : 512);
}

static void drain_mailbox(struct cairn_heap *h, unsigned id)
{
	struct mailbox *m = &box[id];
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->n; i++) {
		/* a large one is freed to this heap's large cache: no message */
		if (cairn_objects_usable_size(o, m->p[i]) <= CAIRN_OBJ_SMALL_MAX)
			atomic_fetch_add(&handed, 1);
		if (cairn_heap_free(h, m->p[i]))
			atomic_fetch_add(&bad, 1);
	}
	m->n = 0;
	pthread_mutex_unlock(&m->lock);
}

/* To the next worker, or freed here when its mailbox is full. */
static void hand_over(struct cairn_heap *h, unsigned id, void *p)
{
	struct mailbox *m = &box[(id + 1) % nworkers];
	pthread_mutex_lock(&m->lock);
	bool room = m->n < MAILBOX;
	if (room)
		m->p[m->n++] = p;
	pthread_mutex_unlock(&m->lock);
	if (!room && cairn_heap_free(h, p))
		atomic_fetch_add(&bad, 1);
}

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	int cpu = cairn_host_cpu_register();
	REQUIRE(cpu >= 0);
	struct cairn_heap *h = cairn_objects_heap(o, (unsigned)cpu);
	REQUIRE(h);
	void *v[BATCH];
	uint64_t rng = seed * 7919 + id;
	for (unsigned round = 0;
	     round < rounds || atomic_load(&snapshots) < MIN_SNAPSHOTS; round++) {
		unsigned n = 0;
		while (n < BATCH) {
			uint64_t r = splitmix64(&rng);
			unsigned char *p = cairn_heap_alloc(h, obj_size(r));
			REQUIRE(p);
			p[0] = (unsigned char)id; /* the memory is ours */
			v[n++] = p;
		}
		/* a quarter to the next worker, the rest freed here: every slab
		 * of the round empties (released, its block cached or given
		 * back), large ranges go to the large cache */
		while (n) {
			unsigned k = (unsigned)(splitmix64(&rng) % n);
			void *p = v[k];
			v[k] = v[--n];
			if (splitmix64(&rng) % 4 == 0)
				hand_over(h, id, p);
			else if (cairn_heap_free(h, p))
				atomic_fetch_add(&bad, 1);
		}
		drain_mailbox(h, id);
		if (round % 16 == 15) {
			/* away: what others free to this heap is collected by them */
			cairn_heap_offline(h);
			sched_yield();
			cairn_heap_online(h);
		}
	}
	/* nobody hands over once every worker is done with its rounds */
	atomic_fetch_sub(&running, 1);
	while (atomic_load(&running)) {
		drain_mailbox(h, id);
		sched_yield();
	}
	drain_mailbox(h, id);
	cairn_heap_flush(h);
	cairn_host_cpu_unregister();
	return NULL;
}

/* What no snapshot may exceed, racing or not: the instance's memory. */
static void check_bounds(const struct cairn_objects_stats *st)
{
	const uint64_t frames = objtest_mem / 4096;
	CHECK(st->objects <= objtest_mem / 16);
	CHECK(st->slabs <= frames);
	CHECK(st->slab_frames <= frames);
	CHECK(st->cached_frames <= frames);
	CHECK(st->released_frames <= frames);
	CHECK(st->large_cached_frames <= frames);
	CHECK(st->meta_frames <= frames);
}

static void monitor(void)
{
	while (atomic_load(&running)) {
		struct cairn_objects_stats all, one;
		cairn_objects_stats(o, &all);
		check_bounds(&all);
		for (unsigned i = 0; i <= nworkers; i++) {
			cairn_objects_heap_stats(o, i, &one);
			check_bounds(&one);
			/* the instance's own figures belong to no heap */
			CHECK_EQ(one.meta_frames, 0);
			CHECK_EQ(one.released_frames, 0);
		}
		atomic_fetch_add(&snapshots, 1);
	}
}

int main(int argc, char **argv)
{
	nworkers = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
	rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 200;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	REQUIRE(nworkers >= 2 && nworkers < 16);
	objtest_init(nworkers + 1, MEM_MIB);
	REQUIRE(cairn_host_cpu_register() == 0);
	uint64_t free0 = objtest_free_frames();
	objtest_large_init(OBJTEST_CACHES, 2 * MiB);
	o = objtest_create(CAIRN_OBJ_HARDEN_OFF);
	box = calloc(nworkers, sizeof(*box));
	REQUIRE(box);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_mutex_init(&box[i].lock, NULL);

	atomic_store(&running, nworkers);
	pthread_t t[16];
	for (unsigned i = 0; i < nworkers; i++)
		REQUIRE(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0);
	monitor();
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(t[i], NULL);
	CHECK(atomic_load(&snapshots) >= MIN_SNAPSHOTS);
	CHECK_EQ(atomic_load(&bad), 0);

	/* quiet: every worker flushed its batches; collected by this CPU's
	 * claims for the departed heaps, or by their next flush */
	struct cairn_objects_stats st;
	for (unsigned i = 1; i <= nworkers; i++)
		cairn_heap_offline(cairn_objects_heap(o, i));
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.large, 0);
	CHECK_EQ(st.large_frames, 0);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.remote_objects, atomic_load(&handed));
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);

	/* exact: what this CPU holds now, and nothing once it is freed */
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	enum { SMALL = 300, LARGE = 3 };
	void *small[SMALL], *large[LARGE];
	for (unsigned i = 0; i < SMALL; i++)
		REQUIRE((small[i] = cairn_heap_alloc(h, 48)));
	for (unsigned i = 0; i < LARGE; i++)
		REQUIRE((large[i] = cairn_heap_alloc(h, LARGE_SIZE)));
	cairn_objects_heap_stats(o, 0, &st);
	CHECK_EQ(st.objects, SMALL);
	CHECK_EQ(st.large, LARGE);
	CHECK_EQ(st.large_frames, LARGE * (LARGE_SIZE / 4096));
	CHECK(st.slabs >= 1);
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, SMALL);
	CHECK_EQ(st.large, LARGE);
	for (unsigned i = 0; i < SMALL; i++)
		CHECK_EQ(cairn_heap_free(h, small[i]), 0);
	for (unsigned i = 0; i < LARGE; i++)
		CHECK_EQ(cairn_heap_free(h, large[i]), 0);
	cairn_heap_offline(h);
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.large, 0);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.cached_frames, 0);
	CHECK_EQ(st.large_cached_frames, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);

	cairn_objects_destroy(o);
	objtest_large_fini();
	CHECK_EQ(objtest_free_frames(), free0);
	CHECK_EQ(cairn_host_reports(), 0);
	printf("objects_stats_race: %u workers, %u rounds, %u snapshots, %llu handed over\n",
	       nworkers, rounds, atomic_load(&snapshots),
	       (unsigned long long)atomic_load(&handed));
	free(box);
	return check_done("objects_stats_race");
}
