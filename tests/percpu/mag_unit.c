/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the magazine cache in front of a reference source: the
 * paths of Bonwick's algorithm one by one, statistics, the bound, draining
 * one CPU and all of them, bad configurations, exhaustion while every
 * item sits in other CPUs' caches, and a CPU that does not answer.
 */
#include <cairn/host.h>
#include <cairn/magazine.h>

#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "ref_source.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4

static struct cairn_frames *frames;

static void bind(unsigned cpu)
{
	cairn_host_cpu_unregister();
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
}

static struct cairn_mag_config config(struct ref_source *s, unsigned mag, unsigned refill,
				      unsigned full, unsigned empty)
{
	return (struct cairn_mag_config){
		.source = ref_as_source(s), .frames = frames, .ncpus = NCPUS,
		.mag_size = mag, .refill = refill, .depot_full = full, .depot_empty = empty,
		.drain_wait = 1000,
	};
}

static uint64_t cached(struct cairn_mag_cache *mc)
{
	struct cairn_mag_stats st;
	cairn_mag_stats(mc, &st);
	return st.cpu_held + st.depot_items;
}

static struct cairn_mag_cpu_stats cpu_stats(struct cairn_mag_cache *mc, unsigned cpu)
{
	struct cairn_mag_cpu_stats st;
	REQUIRE(cairn_mag_cpu_stats(mc, cpu, &st) == 0);
	return st;
}

static struct cairn_mag_stats mag_stats(struct cairn_mag_cache *mc)
{
	struct cairn_mag_stats st;
	cairn_mag_stats(mc, &st);
	return st;
}

static void test_config(void)
{
	struct ref_source s;
	ref_init(&s, 10);
	uint64_t before = frames_free_total(frames);
	struct cairn_mag_cache *mc;
	struct cairn_mag_config c = config(&s, 8, 0, 0, 0);
	c.frames = NULL;
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	c = config(&s, CAIRN_MAG_MAX + 1, 0, 0, 0);
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	c = config(&s, 8, 9, 0, 0);
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	c = config(&s, CAIRN_MAG_MAX, 0, 0, 0); /* the largest is allowed */
	CHECK(cairn_mag_mem_size(&c) > 0);
	c = config(&s, 8, 0, 40000, 40000);
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	/* magazine ids are 16 bits with one value for "none": 2 * NCPUS +
	 * full + empty magazines may be 65535, not one more */
	c = config(&s, 8, 0, 32764, CAIRN_MAG_MAX_MAGS - 2 * NCPUS - 32764);
	CHECK(cairn_mag_mem_size(&c) > 0);
	c.depot_empty++;
	CHECK_EQ(cairn_mag_mem_size(&c), 0);
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	c = config(&s, 8, 0, 0, 0);
	c.source.get = NULL;
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	c = config(&s, 8, 0, 0, 0);
	CHECK(cairn_mag_mem_size(&c) > 0);
	static _Alignas(64) unsigned char mem[16384];
	c.mem = mem;
	c.mem_size = cairn_mag_mem_size(&c) - 1;
	CHECK_EQ(cairn_mag_create(&mc, &c), CAIRN_EINVAL);
	CHECK_EQ(frames_free_total(frames), before);
	/* caller memory: nothing of the cache itself comes from frames */
	c.mem_size = sizeof(mem);
	REQUIRE(cairn_mag_create(&mc, &c) == 0);
	CHECK_EQ(frames_free_total(frames), before);
	uint64_t it;
	CHECK_EQ(cairn_mag_alloc(mc, &it), 0);
	cairn_mag_free(mc, it);
	cairn_mag_destroy(mc);
	CHECK_EQ(frames_free_total(frames), before);
	CHECK_EQ(ref_free(&s), 10);
}

static void test_paths(void)
{
	enum { N = 1000, MAG = 8 };
	struct ref_source s;
	ref_init(&s, N);
	uint64_t before = frames_free_total(frames);
	struct cairn_mag_cache *mc;
	struct cairn_mag_config c = config(&s, MAG, 4, 2, 2);
	REQUIRE(cairn_mag_create(&mc, &c) == 0);
	bind(0);

	/* first alloc: a miss that refills 4 items from the source */
	uint64_t a, b;
	CHECK_EQ(cairn_mag_alloc(mc, &a), 0);
	CHECK_EQ(ref_free(&s), N - 4);
	struct cairn_mag_cpu_stats st = cpu_stats(mc, 0);
	CHECK_EQ(st.misses, 1);
	CHECK_EQ(st.hits, 0);
	CHECK_EQ(st.held, 3);
	CHECK_EQ(st.magazines, 1);
	/* repeat: free then alloc returns the same item, all hits */
	for (int i = 0; i < 100; i++) {
		cairn_mag_free(mc, a);
		CHECK_EQ(cairn_mag_alloc(mc, &b), 0);
		CHECK_EQ(b, a);
	}
	st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, 200);
	CHECK_EQ(st.misses, 1);
	CHECK_EQ(st.held, 3);

	/* free 2 * MAG + 1 more items: loaded fills, swaps with the empty prev
	 * (fetching a new magazine), then the full prev goes to the depot */
	uint64_t items[64];
	unsigned n = 0;
	items[n++] = a;
	while (n < 3 * MAG + 2)
		REQUIRE(cairn_mag_alloc(mc, &items[n++]) == 0);
	uint64_t src_free = ref_free(&s);
	for (unsigned i = 0; i < n; i++)
		cairn_mag_free(mc, items[i]);
	st = cpu_stats(mc, 0);
	struct cairn_mag_stats ms;
	cairn_mag_stats(mc, &ms);
	CHECK(ms.depot_full >= 1);
	CHECK_EQ(st.exchanges, ms.depot_full);
	CHECK_EQ(st.magazines, 2);
	/* every operation so far one hit or one miss: the first alloc, the
	 * 200 repeats, n - 1 allocs and n frees (swaps with prev are hits) */
	CHECK_EQ(st.hits + st.misses, 1 + 200 + (n - 1) + n);
	CHECK(st.hits > 200);
	CHECK_EQ(ref_free(&s), src_free); /* all of them cached */
	CHECK_EQ(cached(mc) + ref_free(&s), N);
	/* what the CPU holds comes back as hits alone, the full prev's
	 * items through a swap; then freed again, as they were */
	struct cairn_mag_cpu_stats st0 = cpu_stats(mc, 0);
	CHECK(st0.held > MAG);
	for (unsigned i = 0; i < st0.held; i++)
		REQUIRE(cairn_mag_alloc(mc, &items[i]) == 0);
	st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, st0.hits + st0.held);
	CHECK_EQ(st.misses, st0.misses);
	CHECK_EQ(st.held, 0);
	for (unsigned i = 0; i < st0.held; i++)
		cairn_mag_free(mc, items[i]);
	CHECK_EQ(cpu_stats(mc, 0).held, st0.held);
	CHECK_EQ(cached(mc) + ref_free(&s), N);

	/* a free on another CPU joins that CPU's magazine */
	bind(1);
	CHECK_EQ(cairn_mag_alloc(mc, &a), 0); /* the depot's full magazine */
	CHECK_EQ(cpu_stats(mc, 1).exchanges, 1);
	bind(2);
	cairn_mag_free(mc, a);
	CHECK_EQ(cpu_stats(mc, 2).held, 1);
	CHECK_EQ(cached(mc) + ref_free(&s), N);

	/* the bound: free everything on CPU 3, the cache keeps at most its bound */
	bind(3);
	n = 0;
	uint64_t *all = calloc(N, sizeof(*all));
	while (cairn_mag_try_alloc(mc, &all[n]) == 0)
		n++;
	CHECK_EQ(n + cached(mc), N);
	CHECK_EQ(ref_free(&s), 0);
	for (unsigned i = 0; i < n; i++)
		cairn_mag_free(mc, all[i]);
	cairn_mag_stats(mc, &ms);
	CHECK_EQ(ms.bound, (2 * NCPUS + 2) * MAG);
	CHECK(cached(mc) <= ms.bound);
	CHECK_EQ(ms.depot_full, 2);
	CHECK(ms.depot_empty <= 2);
	CHECK_EQ(cached(mc) + ref_free(&s), N);

	/* drain one CPU (as if it went offline): its items to the source, its
	 * magazine frames to the frame allocator */
	uint64_t held2 = cpu_stats(mc, 2).held;
	uint64_t fr = ref_free(&s);
	CHECK_EQ(cairn_mag_drain_cpu(mc, 2), 0);
	CHECK_EQ(cpu_stats(mc, 2).held, 0);
	CHECK_EQ(cpu_stats(mc, 2).magazines, 0);
	CHECK_EQ(ref_free(&s), fr + held2);
	CHECK_EQ(cairn_mag_drain_cpu(mc, NCPUS), CAIRN_EINVAL);
	struct cairn_mag_cpu_stats none;
	CHECK_EQ(cairn_mag_cpu_stats(mc, NCPUS, &none), CAIRN_EINVAL);
	CHECK_EQ(cairn_mag_cpu_stats(mc, 0, NULL), CAIRN_EINVAL);

	/* drain all from CPU 3: own CPU and depot at once; CPUs 0 and 1 do not
	 * answer (no thread runs them) and keep theirs */
	cairn_mag_drain_all(mc);
	cairn_mag_stats(mc, &ms);
	CHECK_EQ(cpu_stats(mc, 3).held, 0);
	CHECK_EQ(ms.depot_full, 0);
	CHECK_EQ(ms.depot_empty, 0);
	CHECK_EQ(ms.cpu_held, cpu_stats(mc, 0).held + cpu_stats(mc, 1).held);
	/* they answer at their next operation */
	bind(0);
	cairn_mag_poll(mc);
	CHECK_EQ(cpu_stats(mc, 0).held, 0);
	bind(1);
	uint64_t held1 = cpu_stats(mc, 1).held;
	fr = ref_free(&s);
	/* answers, then (lean after the drain) takes one item and no magazine */
	CHECK_EQ(cairn_mag_alloc(mc, &a), 0);
	CHECK_EQ(ref_free(&s), fr + held1 - 1);
	CHECK_EQ(cpu_stats(mc, 1).misses, 2);
	CHECK_EQ(cpu_stats(mc, 1).magazines, 0);
	/* its free loads an empty magazine; then it hits again: the answer is
	 * remembered, not given at every operation */
	cairn_mag_free(mc, a);
	CHECK_EQ(cpu_stats(mc, 1).misses, 3);
	for (int i = 0; i < 10; i++) {
		CHECK_EQ(cairn_mag_alloc(mc, &a), 0);
		cairn_mag_free(mc, a);
	}
	CHECK_EQ(cpu_stats(mc, 1).misses, 3);
	CHECK_EQ(cpu_stats(mc, 1).hits, 20);

	/* a CPU beyond the cache's slots goes to the source directly */
	bind(NCPUS);
	fr = ref_free(&s);
	CHECK_EQ(cairn_mag_alloc(mc, &a), 0);
	CHECK_EQ(ref_free(&s), fr - 1);
	cairn_mag_free(mc, a);
	CHECK_EQ(ref_free(&s), fr);

	cairn_mag_destroy(mc);
	CHECK_EQ(ref_free(&s), N);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(frames_free_total(frames), before);
	free(all);
}

/* ---- exhaustion with everything in other CPUs' caches ---- */

enum { XN = 60, XMAG = 8 };
static struct cairn_mag_cache *xmc;
static atomic_int x_phase; /* 1: cached, 2: stop */
static atomic_int x_ready;
static int x_depart;

static void *x_worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
	/* CPUs 1 and 2 take a third each, CPU 3 all the rest (the source and
	 * the depot); all free what they took, so every item ends up cached */
	uint64_t it[XN];
	unsigned n = 0;
	while (n < (cpu == 3 ? XN : XN / 3) && cairn_mag_try_alloc(xmc, &it[n]) == 0)
		n++;
	for (unsigned i = 0; i < n; i++)
		cairn_mag_free(xmc, it[i]);
	if (x_depart) /* a thread that leaves drains its slot first */
		cairn_mag_drain_cpu(xmc, cpu);
	atomic_fetch_add(&x_ready, 1);
	if (!x_depart)
		while (atomic_load(&x_phase) != 2)
			cairn_mag_poll(xmc); /* an online CPU keeps answering */
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_exhaustion(int depart)
{
	struct ref_source s;
	ref_init(&s, XN);
	/* refill 1: each worker takes exactly what it allocates */
	struct cairn_mag_config c = config(&s, XMAG, 1, 8, 8);
	c.drain_wait = 0; /* the default: wait long for every answer */
	REQUIRE(cairn_mag_create(&xmc, &c) == 0);
	atomic_store(&x_phase, 0);
	atomic_store(&x_ready, 0);
	x_depart = depart;
	cairn_host_cpu_unregister();
	pthread_t t[3];
	/* one after the other, so each worker gets what it asks for */
	for (unsigned i = 0; i < 3; i++) {
		pthread_create(&t[i], NULL, x_worker, (void *)(uintptr_t)(i + 1));
		while (atomic_load(&x_ready) != (int)i + 1)
			;
	}
	bind(0);
	if (!depart) {
		CHECK_EQ(ref_free(&s), 0);
		CHECK_EQ(cached(xmc), XN);
	}
	uint64_t it[XN];
	for (unsigned i = 0; i < XN; i++)
		CHECK_EQ(cairn_mag_alloc(xmc, &it[i]), 0);
	CHECK_EQ(cairn_mag_alloc(xmc, &it[0]), CAIRN_ENOMEM);
	atomic_store(&x_phase, 2);
	for (unsigned i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(cached(xmc) + ref_free(&s), 0);
	for (unsigned i = 0; i < XN; i++)
		cairn_mag_free(xmc, it[i]);
	cairn_mag_destroy(xmc);
	CHECK_EQ(ref_free(&s), XN);
	CHECK_EQ(s.errors, 0);
}

/* ---- a CPU that does not answer, and a slot left holding items ---- */

/* A drainer waits drain_wait for each CPU and then gives up on it: the CPU
 * keeps everything it holds (nobody but the owner touches a slot), so the
 * allocation fails with nothing moved; the requests stay pending, and the
 * CPU's next operation answers them before it does anything else. A slot
 * whose thread left without draining is not: no thread holds it, so the
 * drain borrows it from the port and empties it itself, and the thread
 * that takes the slot over next finds it empty. */
enum { UMAG = 8, UN = 2 * UMAG };
static struct cairn_mag_cache *umc;
static atomic_int u_step; /* 1: cached; 2: operate once; 3: done; 4: stop */

static void *u_busy(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	uint64_t it[UN];
	for (unsigned i = 0; i < UN; i++)
		REQUIRE(cairn_mag_try_alloc(umc, &it[i]) == 0);
	for (unsigned i = 0; i < UN; i++) /* both magazines full */
		cairn_mag_free(umc, it[i]);
	atomic_store(&u_step, 1);
	while (atomic_load(&u_step) != 2) /* busy: no cache call, no poll */
		;
	REQUIRE(cairn_mag_try_alloc(umc, &it[0]) == 0);
	atomic_store(&u_step, 3);
	while (atomic_load(&u_step) != 4)
		;
	cairn_mag_free(umc, it[0]);
	cairn_mag_drain_cpu(umc, 1);
	cairn_host_cpu_unregister();
	return NULL;
}

/* Caches UMAG items in slot 2 and leaves without draining. */
static void *u_leaver(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(2) == 0);
	uint64_t it[UMAG];
	for (unsigned i = 0; i < UMAG; i++)
		REQUIRE(cairn_mag_try_alloc(umc, &it[i]) == 0);
	for (unsigned i = 0; i < UMAG; i++)
		cairn_mag_free(umc, it[i]);
	cairn_host_cpu_unregister();
	return NULL;
}

/* Takes slot 2 over (a drain emptied it) and drains it. */
static void *u_taker(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(2) == 0);
	REQUIRE(cpu_stats(umc, 2).held == 0);
	REQUIRE(cairn_mag_drain_cpu(umc, 2) == 0);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_unanswered(void)
{
	struct ref_source s;
	ref_init(&s, UN);
	struct cairn_mag_config c = config(&s, UMAG, UMAG, 1, 1); /* drain_wait 1000 */
	REQUIRE(cairn_mag_create(&umc, &c) == 0);
	cairn_host_cpu_unregister();
	atomic_store(&u_step, 0);
	pthread_t t;
	pthread_create(&t, NULL, u_busy, NULL);
	while (atomic_load(&u_step) != 1)
		;
	bind(0);
	CHECK_EQ(ref_free(&s), 0);
	CHECK_EQ(cpu_stats(umc, 1).held, UN);
	struct cairn_mag_cpu_stats busy = cpu_stats(umc, 1);
	uint64_t it[UN];
	/* twice: two requests pending on CPU 1, each given up on */
	for (unsigned i = 0; i < 2; i++)
		CHECK_EQ(cairn_mag_alloc(umc, &it[0]), CAIRN_ENOMEM);
	CHECK_EQ(mag_stats(umc).drains, 2);
	struct cairn_mag_cpu_stats now = cpu_stats(umc, 1);
	CHECK_EQ(now.held, UN);
	CHECK_EQ(now.magazines, 2);
	CHECK_EQ(now.hits + now.misses, busy.hits + busy.misses);
	CHECK_EQ(ref_free(&s), 0);
	CHECK_EQ(cpu_stats(umc, 0).held + cpu_stats(umc, 0).magazines, 0);

	/* CPU 1's next operation answers first: its magazines go back, and
	 * its allocation is a miss that takes one item (the cache is lean) */
	atomic_store(&u_step, 2);
	while (atomic_load(&u_step) != 3)
		;
	now = cpu_stats(umc, 1);
	CHECK_EQ(now.held, 0);
	CHECK_EQ(now.magazines, 0);
	CHECK_EQ(now.hits, busy.hits);
	CHECK_EQ(now.misses, busy.misses + 1);
	CHECK_EQ(ref_free(&s), UN - 1);

	/* CPU 0 takes all but UMAG of the rest; slot 2 caches those and its
	 * thread leaves without draining */
	unsigned n = 0;
	while (n < UN - 1 - UMAG)
		REQUIRE(cairn_mag_alloc(umc, &it[n++]) == 0);
	pthread_t l;
	pthread_create(&l, NULL, u_leaver, NULL);
	pthread_join(l, NULL);
	CHECK_EQ(ref_free(&s), 0);
	CHECK_EQ(cpu_stats(umc, 2).held, UMAG);
	/* nobody answers for slot 2, but no thread holds it either: the
	 * drain borrows it from the port and empties it, and the allocation
	 * takes one of its items */
	CHECK_EQ(cairn_mag_alloc(umc, &it[n++]), 0);
	CHECK_EQ(cpu_stats(umc, 2).held, 0);
	CHECK_EQ(cpu_stats(umc, 2).magazines, 0);
	CHECK_EQ(ref_free(&s), UMAG - 1);
	/* a thread that takes the slot over finds it empty */
	pthread_create(&l, NULL, u_taker, NULL);
	pthread_join(l, NULL);
	CHECK_EQ(cpu_stats(umc, 2).magazines, 0);
	CHECK_EQ(ref_free(&s), UMAG - 1);
	while (n < UN - 1)
		CHECK_EQ(cairn_mag_alloc(umc, &it[n++]), 0);
	CHECK_EQ(cairn_mag_alloc(umc, &it[n]), CAIRN_ENOMEM);
	CHECK_EQ(cached(umc) + ref_free(&s), 0);

	atomic_store(&u_step, 4);
	pthread_join(t, NULL);
	while (n)
		cairn_mag_free(umc, it[--n]);
	cairn_mag_destroy(umc);
	CHECK_EQ(ref_free(&s), UN);
	CHECK_EQ(s.errors, 0);
}

/* ---- lean after a drain ---- */

enum { LN = 200, LMAG = 8, LREFILL = 2, LHELD = 2 * LMAG };
static struct cairn_mag_cache *lmc;
static atomic_int l_step; /* 1: items taken, 2: free them, 3: cached, 4: stop */

static void *l_holder(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	uint64_t it[LHELD];
	for (unsigned i = 0; i < LHELD; i++)
		REQUIRE(cairn_mag_try_alloc(lmc, &it[i]) == 0);
	atomic_store(&l_step, 1);
	while (atomic_load(&l_step) != 2)
		;
	for (unsigned i = 0; i < LHELD; i++) /* both magazines full, no depot */
		cairn_mag_free(lmc, it[i]);
	atomic_store(&l_step, 3);
	while (atomic_load(&l_step) != 4)
		cairn_mag_poll(lmc); /* answers the drain */
	cairn_host_cpu_unregister();
	return NULL;
}

/* After a drain a miss takes one item from the source, not a refill, for
 * ncpus * refill such misses; then refills again. And a free that finds
 * the depot full ends it at once. */
static void test_lean(void)
{
	struct ref_source s;
	ref_init(&s, LN);
	struct cairn_mag_config c = config(&s, LMAG, LREFILL, 2, 2);
	c.drain_wait = 0; /* wait for the holder's answer */
	REQUIRE(cairn_mag_create(&lmc, &c) == 0);
	const unsigned lean = NCPUS * LREFILL;
	cairn_host_cpu_unregister();
	atomic_store(&l_step, 0);
	pthread_t t;
	pthread_create(&t, NULL, l_holder, NULL);
	while (atomic_load(&l_step) != 1)
		;
	/* CPU 0 takes the rest of the source; then CPU 1 caches LHELD */
	bind(0);
	uint64_t *v = calloc(LN, sizeof(*v));
	unsigned n = 0;
	while (cairn_mag_try_alloc(lmc, &v[n]) == 0)
		n++;
	CHECK_EQ(n, LN - LHELD);
	atomic_store(&l_step, 2);
	while (atomic_load(&l_step) != 3)
		;
	CHECK_EQ(ref_free(&s), 0);
	CHECK_EQ(cpu_stats(lmc, 1).held, LHELD);
	CHECK_EQ(mag_stats(lmc).drains, 0);
	CHECK_EQ(mag_stats(lmc).lean_gets, 0);

	/* exhaustion: the drain gives CPU 1's items back, and the retry takes
	 * exactly one of them (not a refill of LREFILL) */
	CHECK_EQ(cairn_mag_alloc(lmc, &v[n++]), 0);
	CHECK_EQ(mag_stats(lmc).drains, 1);
	CHECK_EQ(ref_free(&s), LHELD - 1);
	CHECK_EQ(mag_stats(lmc).lean_gets, 1);
	CHECK_EQ(cpu_stats(lmc, 0).magazines, 0);
	/* while lean, every miss takes one item */
	for (unsigned i = 1; i < lean; i++) {
		CHECK_EQ(cairn_mag_alloc(lmc, &v[n++]), 0);
		CHECK_EQ(ref_free(&s), LHELD - 1 - i);
	}
	CHECK_EQ(mag_stats(lmc).lean_gets, lean);
	CHECK_EQ(mag_stats(lmc).drains, 1);
	/* ncpus * refill single items later, a miss refills again */
	CHECK_EQ(cairn_mag_alloc(lmc, &v[n++]), 0);
	CHECK_EQ(ref_free(&s), LHELD - lean - LREFILL);
	CHECK_EQ(cpu_stats(lmc, 0).held, LREFILL - 1);
	CHECK_EQ(mag_stats(lmc).lean_gets, lean);
	atomic_store(&l_step, 4);
	pthread_join(t, NULL);
	for (unsigned i = 0; i < n; i++)
		cairn_mag_free(lmc, v[i]);

	/* A free that finds the depot full ends lean. Everything back in the
	 * source; CPU 2 takes 4 magazines' worth, CPU 3 drains (lean) and
	 * takes one item. */
	for (unsigned cpu = 0; cpu < NCPUS; cpu++)
		CHECK_EQ(cairn_mag_drain_cpu(lmc, cpu), 0);
	bind(2);
	for (n = 0; n < 4 * LMAG + 1; n++)
		REQUIRE(cairn_mag_try_alloc(lmc, &v[n]) == 0);
	CHECK_EQ(cairn_mag_drain_cpu(lmc, 2), 0); /* (no one to wait for) */
	bind(3);
	cairn_mag_drain_all(lmc);
	CHECK_EQ(ref_free(&s), LN - n);
	uint64_t lg = mag_stats(lmc).lean_gets;
	CHECK_EQ(cairn_mag_alloc(lmc, &v[n++]), 0);
	CHECK_EQ(ref_free(&s), LN - n);
	CHECK_EQ(mag_stats(lmc).lean_gets, lg + 1);
	/* CPU 3 frees: two magazines full, the depot's two full, then one
	 * more: the depot is at its limit, a full magazine goes back */
	for (unsigned i = 0; i < 4 * LMAG; i++)
		cairn_mag_free(lmc, v[--n]);
	CHECK_EQ(mag_stats(lmc).depot_full, 2);
	uint64_t fr = ref_free(&s);
	cairn_mag_free(lmc, v[--n]);
	CHECK_EQ(ref_free(&s), fr + LMAG);
	/* CPU 0 empties the depot's two magazines, then its miss refills */
	bind(0);
	uint64_t w[2 * LMAG + 1];
	for (unsigned i = 0; i < 2 * LMAG; i++)
		REQUIRE(cairn_mag_alloc(lmc, &w[i]) == 0);
	CHECK_EQ(mag_stats(lmc).depot_full, 0);
	fr = ref_free(&s);
	CHECK_EQ(cairn_mag_alloc(lmc, &w[2 * LMAG]), 0);
	CHECK_EQ(ref_free(&s), fr - LREFILL);
	CHECK_EQ(mag_stats(lmc).lean_gets, lg + 1);
	for (unsigned i = 0; i <= 2 * LMAG; i++)
		cairn_mag_free(lmc, w[i]);
	while (n)
		cairn_mag_free(lmc, v[--n]);
	free(v);
	cairn_mag_destroy(lmc);
	CHECK_EQ(ref_free(&s), LN);
	CHECK_EQ(s.errors, 0);
}

/* ---- two CPUs draining two caches of one drain group at once ---- */

/* CPU 1 holds an item of cache A and drains cache B; CPU 2 holds an item
 * of B and drains A, while CPU 1 waits for its answer. Both drains wait
 * without limit. A and B share a drain group, so each waiting drainer
 * answers the other's request in the cache it is not draining, and both
 * return with everything back. Apart, each answered requests of the cache
 * it drained only, and both waited for ever (the alarm ends the test).
 * Run again with a third member that joined last and holds nothing: it is
 * the group's first (members are newest first), and a waiting drainer
 * must walk past it; one that polled the first member only would leave
 * both waiting (with two members it escapes: whichever CPU holds an item
 * of the first member answers, returns, and answers the other). */
static struct cairn_mag_cache *cmc[3];
static atomic_int c_step; /* 2: both hold their item; 4: both drained */
static uint64_t c_left[2]; /* what each drained cache held after the drain */

static void *c_drainer(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg; /* 1 or 2 */
	struct cairn_mag_cache *mine = cmc[me - 1], *other = cmc[2 - me];
	REQUIRE(cairn_host_cpu_bind(me) == 0);
	uint64_t it;
	REQUIRE(cairn_mag_try_alloc(mine, &it) == 0);
	cairn_mag_free(mine, it); /* held in this CPU's magazine */
	atomic_fetch_add(&c_step, 1);
	while (atomic_load(&c_step) < 2)
		;
	if (me == 2) /* after CPU 1's drain began: it waits for us in B */
		while (mag_stats(mine).drains == 0)
			;
	cairn_mag_drain_all(other);
	/* our drain returned: the other CPU answered it (checked by the
	 * main thread: the checks' counters are not for threads) */
	c_left[me - 1] = cached(other);
	atomic_fetch_add(&c_step, 1);
	while (atomic_load(&c_step) != 4) { /* an online CPU keeps answering */
		cairn_mag_poll(mine);
		cairn_mag_poll(other);
	}
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_cross_drain(bool idle_first)
{
	static struct cairn_mag_group group; /* zeroed: empty */
	struct ref_source s[3];
	unsigned n = idle_first ? 3 : 2;
	for (unsigned i = 0; i < n; i++) {
		ref_init(&s[i], 16);
		struct cairn_mag_config c = config(&s[i], 4, 1, 2, 2);
		c.drain_wait = ~0u; /* (about 2^32 pause hints: for ever here) */
		c.group = &group;
		REQUIRE(cairn_mag_create(&cmc[i], &c) == 0);
	}
	cairn_host_cpu_unregister();
	atomic_store(&c_step, 0);
	alarm(60); /* two drains waiting for each other */
	pthread_t t[2];
	for (unsigned i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, c_drainer, (void *)(uintptr_t)(i + 1));
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	alarm(0);
	bind(0);
	for (unsigned i = 0; i < n; i++) {
		if (i < 2)
			CHECK_EQ(c_left[i], 0);
		CHECK_EQ(cached(cmc[i]), 0);
		cairn_mag_destroy(cmc[i]);
		CHECK_EQ(ref_free(&s[i]), 16);
		CHECK_EQ(s[i].errors, 0);
	}
	/* all left the group */
	CHECK(atomic_load(&group.head) == NULL);
}

/* ---- a cache joins a drain group while a drainer walks it ---- */

/* Caches join at create, and nothing stops a drain of the group meanwhile:
 * the join publishes the new member with a release store of the link that
 * names it, and a waiting drainer walks the links with acquire loads, so a
 * member it reaches is a whole cache. CPU 2 holds an item of cache A and
 * does not answer; CPU 1 drains A over and over (each drain waits
 * drain_wait pause hints, walking the group meanwhile) while CPU 2 creates
 * cache B in the group and then raises a flag; once CPU 1 has seen the
 * flag it drains once more, so it walks a group that holds B. The flag is
 * relaxed and orders nothing: the join's release and the walk's acquire
 * are all that orders B's initialisation before CPU 1's reads of B's CPU
 * count and slots (ThreadSanitizer reports those reads otherwise). */
static struct cairn_mag_cache *jmc[2];
static atomic_bool j_joined;
static uint64_t j_drains, j_held; /* CPU 1's, read after the join */

static void *j_walker(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	bool seen;
	do {
		seen = atomic_load_explicit(&j_joined, memory_order_relaxed);
		cairn_mag_drain_all(jmc[0]);
		j_drains++;
	} while (!seen);
	j_held = cached(jmc[0]);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_join_while_draining(void)
{
	static struct cairn_mag_group group;
	struct ref_source s[2];
	struct cairn_mag_config c[2];
	for (unsigned i = 0; i < 2; i++) {
		ref_init(&s[i], 16);
		c[i] = config(&s[i], 4, 1, 2, 2);
		c[i].drain_wait = 2000;
		c[i].group = &group;
	}
	bind(2);
	REQUIRE(cairn_mag_create(&jmc[0], &c[0]) == 0);
	uint64_t it;
	REQUIRE(cairn_mag_try_alloc(jmc[0], &it) == 0);
	cairn_mag_free(jmc[0], it); /* held in CPU 2's magazine */
	atomic_store(&j_joined, false);
	pthread_t t;
	pthread_create(&t, NULL, j_walker, NULL);
	REQUIRE(cairn_mag_create(&jmc[1], &c[1]) == 0); /* joins while CPU 1 walks */
	atomic_store_explicit(&j_joined, true, memory_order_relaxed);
	pthread_join(t, NULL);
	CHECK(j_drains >= 1);
	CHECK_EQ(j_held, 1); /* CPU 2 did not answer: its item stayed */
	CHECK(atomic_load(&group.head) == jmc[1]);
	cairn_mag_poll(jmc[0]); /* now it does */
	CHECK_EQ(cached(jmc[0]), 0);
	CHECK_EQ(ref_free(&s[0]), 16);
	for (unsigned i = 0; i < 2; i++) {
		cairn_mag_destroy(jmc[i]);
		CHECK_EQ(ref_free(&s[i]), 16);
		CHECK_EQ(s[i].errors, 0);
	}
	CHECK(atomic_load(&group.head) == NULL);
	bind(0);
}

/* ---- full magazines handed between CPUs through the depot ---- */

/* Three CPUs allocate and free in bursts longer than their two magazines
 * hold, so full magazines go into the depot on one CPU and come out on
 * another, and pops meet pushes and other pops. The items a CPU wrote into
 * a magazine reach the CPU that pops it only through the depot's release
 * and acquire, also for a pop whose CAS lost a race and retried from the
 * head that the failed CAS returned (ThreadSanitizer reports the popper's
 * reads of the items otherwise). No item is out twice (the reference
 * source counts a second put) and every one comes back. */
#define H_CPUS 3
#define H_BURST 12
static struct cairn_mag_cache *hmc;
static atomic_int h_go;

static void *h_worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
	atomic_fetch_add(&h_go, 1);
	while (atomic_load(&h_go) < H_CPUS)
		;
	uint64_t it[H_BURST];
	for (unsigned r = 0; r < 3000; r++) {
		unsigned n = 0;
		while (n < H_BURST && cairn_mag_try_alloc(hmc, &it[n]) == 0)
			n++;
		while (n)
			cairn_mag_free(hmc, it[--n]);
	}
	REQUIRE(cairn_mag_drain_cpu(hmc, cpu) == 0);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_depot_handoff(void)
{
	struct ref_source s;
	ref_init(&s, 64);
	struct cairn_mag_config c = config(&s, 2, 1, 64, 64);
	REQUIRE(cairn_mag_create(&hmc, &c) == 0);
	cairn_host_cpu_unregister();
	atomic_store(&h_go, 0);
	pthread_t t[H_CPUS];
	for (unsigned i = 0; i < H_CPUS; i++)
		pthread_create(&t[i], NULL, h_worker, (void *)(uintptr_t)(i + 1));
	for (unsigned i = 0; i < H_CPUS; i++)
		pthread_join(t[i], NULL);
	bind(0);
	uint64_t exchanges = 0;
	for (unsigned i = 1; i <= H_CPUS; i++)
		exchanges += cpu_stats(hmc, i).exchanges;
	CHECK(exchanges > 0); /* the depot was used */
	cairn_mag_drain_all(hmc);
	CHECK_EQ(cached(hmc), 0);
	cairn_mag_destroy(hmc);
	CHECK_EQ(ref_free(&s), 64);
	CHECK_EQ(s.errors, 0);
}

/* ---- destroying a cache while a drain of its group waits ---- */

/* CPU 1 holds an item of cache X and does not answer; CPUs 2 and 3 drain
 * X, and while they wait they walk the group and poll every member.
 * Meanwhile the main thread creates and destroys cache Y of the same group
 * in memory of its own, and scribbles over that memory after each destroy,
 * as an embedder reusing it would. A destroy must wait until no drainer stands
 * on Y; before it did, the walker read the scribbled cache. */
#define D_ROUNDS 100000
static struct cairn_mag_cache *dx;
static atomic_int d_stop, d_held;

static void *d_holder(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	uint64_t it;
	REQUIRE(cairn_mag_try_alloc(dx, &it) == 0);
	cairn_mag_free(dx, it);
	atomic_store(&d_held, 1);
	while (!atomic_load(&d_stop)) /* online, but never answers */
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	cairn_host_cpu_unregister();
	return NULL;
}

static void *d_drainer(void *arg)
{
	REQUIRE(cairn_host_cpu_bind((unsigned)(uintptr_t)arg) == 0);
	while (!atomic_load(&d_stop))
		cairn_mag_drain_all(dx);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_destroy_while_draining(void)
{
	static struct cairn_mag_group group;
	struct ref_source sx, sy;
	ref_init(&sx, 16);
	ref_init(&sy, 16);
	struct cairn_mag_config cx = config(&sx, 4, 1, 2, 2), cy = config(&sy, 4, 1, 2, 2);
	cx.drain_wait = 1u << 16;
	cx.group = cy.group = &group;
	REQUIRE(cairn_mag_create(&dx, &cx) == 0);
	size_t size = cairn_mag_mem_size(&cy);
	cy.mem_size = size;
	bind(0);
	atomic_store(&d_stop, 0);
	atomic_store(&d_held, 0);
	pthread_t th, td[2];
	pthread_create(&th, NULL, d_holder, NULL);
	while (!atomic_load(&d_held))
		;
	for (unsigned i = 0; i < 2; i++) /* more threads than cores: walkers
					    get preempted where they stand */
		pthread_create(&td[i], NULL, d_drainer, (void *)(uintptr_t)(2 + i));
	while (mag_stats(dx).drains < 2)
		;
	unsigned made = 0;
	for (unsigned i = 0; i < D_ROUNDS; i++) {
		void *mem = aligned_alloc(64, (size + 63) & ~(size_t)63);
		REQUIRE(mem);
		cy.mem = mem;
		struct cairn_mag_cache *y;
		made += cairn_mag_create(&y, &cy) == 0;
		cairn_mag_destroy(y);
		memset(mem, 0xa5, size);
		free(mem);
	}
	atomic_store(&d_stop, 1);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(td[i], NULL);
	pthread_join(th, NULL);
	CHECK_EQ(made, D_ROUNDS);
	CHECK(atomic_load(&group.head) == dx); /* every Y left */
	REQUIRE(cairn_mag_drain_cpu(dx, 1) == 0); /* CPU 1 is gone */
	cairn_mag_destroy(dx);
	CHECK(atomic_load(&group.head) == NULL);
	CHECK_EQ(ref_free(&sx), 16);
	CHECK_EQ(ref_free(&sy), 16);
	CHECK_EQ(sx.errors + sy.errors, 0);
}

/* ---- host port: a registered thread keeps one slot ---- */

static void *slot_taker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	int err = cairn_host_cpu_bind(cpu);
	if (!err)
		cairn_host_cpu_unregister();
	return (void *)(intptr_t)err;
}

/* A thread that holds a slot and binds to another would leave the first
 * taken for good, with no thread to answer its drains or give it back. */
static void test_host_rebind(void)
{
	cairn_host_cpu_unregister();
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	CHECK_EQ(cairn_host_cpu_bind(1), 0); /* its own slot: nothing changes */
	CHECK_EQ(cairn_host_cpu_bind(2), CAIRN_EBUSY);
	CHECK_EQ(cairn_host_cpu_register(), 1);
	cairn_host_cpu_unregister();
	/* both slots free again */
	for (unsigned cpu = 1; cpu <= 2; cpu++) {
		pthread_t t;
		void *ret;
		pthread_create(&t, NULL, slot_taker, (void *)(uintptr_t)cpu);
		pthread_join(t, &ret);
		CHECK_EQ((intptr_t)ret, 0);
	}
}

int main(void)
{
	REQUIRE(cairn_host_init(NCPUS + 1, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS + 1 };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	uint64_t before = frames_free_total(frames);
	test_config();
	test_paths();
	test_exhaustion(0);
	test_exhaustion(1);
	test_unanswered();
	test_lean();
	test_cross_drain(false);
	test_cross_drain(true);
	test_join_while_draining();
	test_depot_handoff();
	test_destroy_while_draining();
	test_host_rebind();
	CHECK_EQ(frames_free_total(frames), before);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("mag_unit");
}
