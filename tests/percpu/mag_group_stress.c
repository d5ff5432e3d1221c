/* SPDX-License-Identifier: MIT */
/*
 * Two magazine caches of one drain group under threads that come and go,
 * with exact oracles at every quiescent point.
 *
 * Each round starts NCPUS threads that take any free CPU slot. They
 * allocate from and free to both caches at random (frees often on another
 * CPU than the allocation, through a mailbox), drain everything now and
 * then, drain their own slot now and then, and wait for one another in a
 * barrier that keeps answering (cairn_mag_poll of both caches). Then two
 * of them exhaust one cache each at once, each holding cached items of the
 * other's cache, while the rest answer: each must end with every item of
 * its cache that no other thread holds in its hands (the drains of the two
 * caches wait for each other's CPUs, which answer only through the group).
 * At the end of a round each thread either drains its slot and leaves, or
 * leaves it as it is, for the next round's thread in that slot or, every
 * other round, for the main thread to drain once it joined them.
 *
 * At every barrier, for each cache: in hands + in CPUs' magazines + in the
 * depot + in the source == the items, exactly; no item in two hands (one
 * owner byte per item) and no bad put (the reference source); per CPU at
 * most two magazines' worth, the depot within its limits, the whole within
 * cairn_mag_stats().bound; and each slot's hits + misses == the operations
 * its threads ran on it (every try_alloc and every free is one operation).
 * Each round ends with every thread giving back all it holds, so the
 * caches fill to their bound and the depots to their limits.
 *
 * Arguments: rounds, operations per thread per phase, seed.
 */
#include <cairn/host.h>
#include <cairn/magazine.h>

#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "ref_source.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4
#define NCACHES 2
#define NITEMS 150 /* per cache: the bound is (2 * 4 + 2) * 5 = 50 */
#define MAG 5
#define DEPOT 2
#define HAND 64    /* items a thread holds at most, per cache */
#define BOX 32     /* the mailbox, per cache */

static struct cairn_frames *frames;
static struct cairn_mag_group group;
static struct ref_source src[NCACHES];
static struct cairn_mag_cache *mc[NCACHES];
static _Atomic unsigned char owner[NCACHES][NITEMS]; /* 1 + thread, or 0 */
static uint64_t ops[NCACHES][NCPUS]; /* per slot: written by its thread */
static unsigned ops_per_phase;
static bool full_seen[NCACHES]; /* a depot held its limit of full magazines */
static _Atomic int failed; /* a thread's oracle failed (threads do not CHECK) */

/* ---- the mailbox: items handed from one CPU to another ---- */

static pthread_mutex_t box_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t box[NCACHES][BOX];
static unsigned nbox[NCACHES];

/* ---- a barrier that keeps answering ---- */

static _Atomic unsigned bar_count, bar_gen;

static void poll_all(void)
{
	for (unsigned k = 0; k < NCACHES; k++)
		cairn_mag_poll(mc[k]);
}

static void barrier(void)
{
	const unsigned nthreads = NCPUS + 1; /* the threads and the main one */
	unsigned gen = atomic_load(&bar_gen);
	if (atomic_fetch_add(&bar_count, 1) + 1 == nthreads) {
		atomic_store(&bar_count, 0);
		atomic_fetch_add(&bar_gen, 1);
		return;
	}
	/* Polls between yields: the spin must not take the cores from the
	 * threads it waits for (5 threads, 2 cores in CI), or a round's time
	 * grows with the machine's load. */
	while (atomic_load(&bar_gen) == gen) {
		poll_all();
		sched_yield();
	}
}

/* ---- per thread ---- */

struct worker {
	pthread_t t;
	unsigned id, slot;
	uint64_t rng;
	bool leave_drained; /* at the end of the round */
	uint64_t hand[NCACHES][HAND];
	unsigned nhand[NCACHES];
	uint64_t got; /* the exhaustion phase: items taken */
};

static struct worker w[NCPUS];

static uint64_t rnd(struct worker *me)
{
	me->rng ^= me->rng << 13;
	me->rng ^= me->rng >> 7;
	me->rng ^= me->rng << 17;
	return me->rng;
}

static void fail(struct worker *me, const char *what, uint64_t v)
{
	fprintf(stderr, "thread %u (slot %u): %s (%llu)\n", me->id, me->slot, what,
		(unsigned long long)v);
	atomic_store(&failed, 1);
}

static void take(struct worker *me, unsigned k, uint64_t it)
{
	int64_t i = ref_index(&src[k], it);
	if (i < 0) {
		fail(me, "an item the source never had", it);
		return;
	}
	unsigned char was = atomic_exchange(&owner[k][i], (unsigned char)(1 + me->id));
	if (was)
		fail(me, "an item already in another hand", it);
	me->hand[k][me->nhand[k]++] = it;
}

static void give(struct worker *me, unsigned k, unsigned at)
{
	uint64_t it = me->hand[k][at];
	me->hand[k][at] = me->hand[k][--me->nhand[k]];
	atomic_store(&owner[k][ref_index(&src[k], it)], 0);
	ops[k][me->slot]++;
	cairn_mag_free(mc[k], it);
}

/* cairn_mag_alloc with its tries counted. */
static int alloc(struct worker *me, unsigned k, uint64_t *it)
{
	ops[k][me->slot]++;
	int err = cairn_mag_try_alloc(mc[k], it);
	if (err == CAIRN_ENOMEM) {
		cairn_mag_drain_all(mc[k]);
		ops[k][me->slot]++;
		err = cairn_mag_try_alloc(mc[k], it);
	}
	return err;
}

static void mixed(struct worker *me)
{
	for (unsigned n = 0; n < ops_per_phase; n++) {
		unsigned k = (unsigned)(rnd(me) % NCACHES);
		unsigned r = (unsigned)(rnd(me) % 100);
		uint64_t it;
		if (r < 45) {
			if (me->nhand[k] < HAND && alloc(me, k, &it) == 0)
				take(me, k, it);
		} else if (r < 80) {
			if (me->nhand[k])
				give(me, k, (unsigned)(rnd(me) % me->nhand[k]));
		} else if (r < 90) { /* to the mailbox, or from it */
			pthread_mutex_lock(&box_lock);
			if (r < 85 && me->nhand[k] && nbox[k] < BOX) {
				it = me->hand[k][--me->nhand[k]];
				atomic_store(&owner[k][ref_index(&src[k], it)], 0);
				box[k][nbox[k]++] = it;
				it = 0;
			} else if (r >= 85 && nbox[k] && me->nhand[k] < HAND) {
				it = box[k][--nbox[k]];
			} else {
				it = 0;
			}
			pthread_mutex_unlock(&box_lock);
			if (it)
				take(me, k, it);
		} else if (r < 93) {
			cairn_mag_drain_all(mc[k]);
		} else if (r < 95) {
			/* the caller's own CPU: legal at any time */
			if (cairn_mag_drain_cpu(mc[k], me->slot) != 0)
				fail(me, "drain_cpu of the caller's slot", me->slot);
		} else {
			cairn_mag_poll(mc[k]);
		}
	}
}

/* Take everything of cache k there is. The other exhausting thread holds
 * an item of k in its magazines, and this one an item of the other's
 * cache; neither answers the other cache between allocations: a drain
 * waiting for the other thread is answered when that thread drains too,
 * through the group, and not before (the drains wait without limit). */
static void exhaust(struct worker *me, unsigned k)
{
	uint64_t it;
	me->got = 0;
	while (alloc(me, k, &it) == 0) {
		int64_t i = ref_index(&src[k], it);
		if (i < 0 || atomic_exchange(&owner[k][i], (unsigned char)(1 + me->id)))
			fail(me, "exhaustion: a bad or duplicated item", it);
		me->got++;
	}
}

static void give_back_exhausted(struct worker *me, unsigned k)
{
	/* what exhaust took is not in hand[]: find it by owner */
	for (unsigned i = 0; i < NITEMS; i++) {
		if (atomic_load(&owner[k][i]) != 1 + me->id)
			continue;
		bool in_hand = false;
		for (unsigned j = 0; j < me->nhand[k] && !in_hand; j++)
			in_hand = me->hand[k][j] == ref_item(i);
		if (in_hand)
			continue;
		atomic_store(&owner[k][i], 0);
		ops[k][me->slot]++;
		cairn_mag_free(mc[k], ref_item(i));
	}
}

/* Between phases: all threads in the barrier, then the main thread checks
 * (the threads poll meanwhile), then on. */
static void quiesce(void)
{
	barrier();
	barrier();
}

static void *worker_main(void *arg)
{
	struct worker *me = arg;
	int slot = cairn_host_cpu_register();
	REQUIRE(slot >= 0 && slot < NCPUS);
	me->slot = (unsigned)slot;
	quiesce(); /* the main thread learns the slots */
	mixed(me);
	quiesce();
	/* Exhaustion: threads 0 and 1 take all of caches 0 and 1 at once.
	 * First each puts an item of the other's cache in its magazines, so
	 * the two drains need each other's answers. */
	if (me->id < 2) {
		unsigned k = me->id, o = 1 - k;
		uint64_t it;
		if (me->nhand[o] < HAND && alloc(me, o, &it) == 0) {
			take(me, o, it);
			give(me, o, me->nhand[o] - 1);
		}
	}
	barrier();
	if (me->id < 2)
		exhaust(me, me->id);
	quiesce(); /* main checks: nothing of either cache is left outside hands */
	if (me->id < 2)
		give_back_exhausted(me, me->id);
	mixed(me);
	quiesce();
	/* Everything in hand back, on this CPU: the caches fill to their
	 * bound and the depots to their limits, the rest to the sources. */
	for (unsigned k = 0; k < NCACHES; k++)
		while (me->nhand[k])
			give(me, k, me->nhand[k] - 1);
	quiesce();
	if (me->leave_drained)
		for (unsigned k = 0; k < NCACHES; k++)
			cairn_mag_drain_cpu(mc[k], me->slot);
	cairn_host_cpu_unregister();
	return NULL;
}

/* ---- the main thread's checks ---- */

static uint64_t in_hands(unsigned k)
{
	uint64_t n = nbox[k];
	for (unsigned t = 0; t < NCPUS; t++)
		n += w[t].nhand[k];
	return n;
}

static uint64_t owned(unsigned k)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < NITEMS; i++)
		n += atomic_load(&owner[k][i]) != 0;
	return n;
}

static void check_cache(unsigned k, uint64_t hands, const char *when)
{
	struct cairn_mag_stats st;
	cairn_mag_stats(mc[k], &st);
	uint64_t free_now = ref_free(&src[k]);
	if (hands + st.cpu_held + st.depot_items + free_now != NITEMS)
		fprintf(stderr, "%s: cache %u: %llu in hands + %llu in CPUs + %llu in the depot "
			"+ %llu in the source\n", when, k, (unsigned long long)hands,
			(unsigned long long)st.cpu_held, (unsigned long long)st.depot_items,
			(unsigned long long)free_now);
	CHECK_EQ(hands + st.cpu_held + st.depot_items + free_now, NITEMS);
	CHECK(st.cpu_held + st.depot_items <= st.bound);
	CHECK(st.depot_full <= DEPOT && st.depot_empty <= DEPOT);
	CHECK_EQ(st.bound, (2ull * NCPUS + DEPOT) * MAG);
	CHECK_EQ(src[k].errors, 0);
	uint64_t held = 0, mags = 0;
	for (unsigned c = 0; c < NCPUS; c++) {
		struct cairn_mag_cpu_stats cs;
		REQUIRE(cairn_mag_cpu_stats(mc[k], c, &cs) == 0);
		CHECK(cs.held <= 2 * MAG && cs.magazines <= 2);
		if (cs.hits + cs.misses != ops[k][c])
			fprintf(stderr, "%s: cache %u slot %u: %llu hits + %llu misses, %llu ops\n",
				when, k, c, (unsigned long long)cs.hits,
				(unsigned long long)cs.misses, (unsigned long long)ops[k][c]);
		CHECK_EQ(cs.hits + cs.misses, ops[k][c]);
		held += cs.held;
		mags += cs.magazines;
	}
	CHECK_EQ(held, st.cpu_held);
	CHECK_EQ(st.magazines, mags + st.depot_full + st.depot_empty);
}

static void check_all(const char *when)
{
	for (unsigned k = 0; k < NCACHES; k++) {
		for (unsigned i = 0; i < NITEMS; i++) {
			unsigned o = atomic_load(&owner[k][i]);
			if (!o)
				continue;
			bool found = false;
			for (unsigned j = 0; j < w[o - 1].nhand[k] && !found; j++)
				found = w[o - 1].hand[k][j] == ref_item(i);
			if (!found)
				fprintf(stderr, "%s: cache %u item %u: owner %u, not in its hand\n",
					when, k, i, o - 1);
		}
		CHECK_EQ(owned(k), in_hands(k) - nbox[k]);
		check_cache(k, in_hands(k), when);
	}
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 6;
	ops_per_phase = argc > 2 ? (unsigned)atoi(argv[2]) : 3000;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	REQUIRE(cairn_host_init(NCPUS + 1, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS + 1 };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	uint64_t frames_before = frames_free_total(frames);
	for (unsigned k = 0; k < NCACHES; k++) {
		ref_init(&src[k], NITEMS);
		struct cairn_mag_config c = {
			.source = ref_as_source(&src[k]), .frames = frames, .ncpus = NCPUS,
			.mag_size = MAG, .refill = k ? 0 : 2, .depot_full = DEPOT,
			.depot_empty = DEPOT,
			.drain_wait = ~0u, /* (about 2^32 pause hints: for ever here) */
			.group = &group,
		};
		REQUIRE(cairn_mag_create(&mc[k], &c) == 0);
	}
	/* The main thread takes slot NCPUS: outside the caches (bypass), so
	 * its polls in the barrier touch no slot of theirs. */
	REQUIRE(cairn_host_cpu_bind(NCPUS) == 0);
	for (unsigned r = 0; r < rounds; r++) {
		/* Drains waiting for each other wait for ever: a round that
		 * has not ended in 60 s never will (six took at most 7 s on
		 * a loaded 2-core machine, in every variant). Per round, not
		 * for the whole run, whose time is the rounds' sum. */
		alarm(60);
		for (unsigned t = 0; t < NCPUS; t++) {
			w[t].id = t;
			w[t].rng = seed * 0x9e3779b97f4a7c15ull + r * 977 + t * 131 + 1;
			w[t].leave_drained = (seed + r + t) % 3 != 0;
			REQUIRE(pthread_create(&w[t].t, NULL, worker_main, &w[t]) == 0);
		}
		barrier(); /* registered */
		barrier();
		barrier(); /* mixed */
		check_all("after a mixed phase");
		barrier();
		barrier(); /* each put an item in the other's cache */
		barrier(); /* exhausted */
		for (unsigned k = 0; k < NCACHES; k++) {
			/* every item of cache k is in a hand: the exhausting
			 * thread's, or another's */
			uint64_t others = in_hands(k) - w[k].nhand[k];
			CHECK_EQ(w[k].got + w[k].nhand[k] + others, NITEMS);
			struct cairn_mag_stats st;
			cairn_mag_stats(mc[k], &st);
			CHECK_EQ(st.cpu_held + st.depot_items, 0);
			CHECK_EQ(ref_free(&src[k]), 0);
		}
		barrier();
		barrier(); /* mixed again */
		check_all("after the second mixed phase");
		barrier();
		barrier(); /* everything in hand given back */
		check_all("after the threads gave everything back");
		for (unsigned k = 0; k < NCACHES; k++) {
			struct cairn_mag_stats st;
			cairn_mag_stats(mc[k], &st);
			full_seen[k] |= st.depot_full == DEPOT;
		}
		barrier();
		for (unsigned t = 0; t < NCPUS; t++)
			pthread_join(w[t].t, NULL);
		check_all("after the threads left");
		/* Slots left as they were: every other round, the main thread
		 * drains them (the threads were joined: they are offline). A
		 * CPU outside the cache is refused and changes nothing. */
		for (unsigned k = 0; k < NCACHES; k++) {
			struct cairn_mag_stats was, now;
			cairn_mag_stats(mc[k], &was);
			CHECK_EQ(cairn_mag_drain_cpu(mc[k], NCPUS), CAIRN_EINVAL);
			CHECK_EQ(cairn_mag_cpu_stats(mc[k], NCPUS, &(struct cairn_mag_cpu_stats){ 0 }),
				 CAIRN_EINVAL);
			CHECK_EQ(cairn_mag_cpu_stats(mc[k], 0, NULL), CAIRN_EINVAL);
			cairn_mag_stats(mc[k], &now);
			CHECK(memcmp(&was, &now, sizeof(was)) == 0);
			for (unsigned t = 0; t < NCPUS && r % 2; t++) {
				if (w[t].leave_drained)
					continue;
				CHECK_EQ(cairn_mag_drain_cpu(mc[k], w[t].slot), 0);
				struct cairn_mag_cpu_stats cs;
				REQUIRE(cairn_mag_cpu_stats(mc[k], w[t].slot, &cs) == 0);
				CHECK_EQ(cs.held + cs.magazines, 0);
			}
		}
		check_all("after the main thread drained departed slots");
		if (atomic_load(&failed))
			break;
	}
	alarm(0);
	CHECK_EQ(atomic_load(&failed), 0);
	/* the depots' limits were reached (and so tested) */
	for (unsigned k = 0; k < NCACHES; k++)
		CHECK(full_seen[k]);
	/* Everything back: the hands, the mailbox, then the caches. */
	for (unsigned k = 0; k < NCACHES; k++) {
		for (unsigned t = 0; t < NCPUS; t++)
			if (w[t].nhand[k])
				ref_put(&src[k], w[t].hand[k], w[t].nhand[k]);
		if (nbox[k])
			ref_put(&src[k], box[k], nbox[k]);
		cairn_mag_destroy(mc[k]);
		CHECK_EQ(ref_free(&src[k]), NITEMS);
		CHECK_EQ(src[k].errors, 0);
	}
	CHECK(atomic_load(&group.head) == NULL);
	CHECK_EQ(frames_free_total(frames), frames_before);
	return check_done("mag_group_stress");
}
