/* SPDX-License-Identifier: MIT */
/*
 * Taking caches back while everything else moves: thread 1 allocates until
 * NULL round after round (every exhaustion empties the other heaps' block
 * and large caches), while the other threads churn small and large objects,
 * hand a quarter of them to each other (remote frees: batches, messages,
 * and large ranges cached by the freeing heap), and take their heaps
 * offline and back (posters claim them and release their empty slabs and
 * caches, racing the reclaimers and the heap's own return).
 * The oracle: a bit per 16-byte granule of the objects' memory, set (it
 * must have been clear) when an object is handed out and cleared before
 * its free; every object carries its holder's tag and its length in words,
 * checked before its free. At the end every heap goes offline: nothing may
 * be left in a slab or a cache, validate passes, the frames all come back,
 * and no call reported anything.
 * usage: objects_reclaim_churn threads rounds seed [large [harden [fcache]]]
 *   large: objtest_large (0 buddy, 1 arena in place, 3 quantum cache,
 *   4 in place with large caches and released blocks); harden 0/1.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include <cairn/frame_cache.h>

#include "../check.h"
#include "objtest.h"

#define MEM_MIB 64
#define LARGE_SIZE (68u << 10) /* 17 pages: a large cache's smallest bin */
#define MAILBOX 1024           /* objects waiting for their freer, per thread */
#define HELD_MAX 32768

static struct cairn_objects *o;
static struct cairn_fcache *fc;
static unsigned nthreads, rounds;
static uint64_t seed;
static uintptr_t mem_base; /* the objects' memory: [mem_base, + MEM_MIB MiB) */
static _Atomic uint64_t *oracle;
static atomic_ulong bad, exhausted, offlines, handed;
static atomic_uint running, finished;
static _Atomic uintptr_t mailbox[16][MAILBOX];

static void poll_caches(void)
{
	if (fc)
		cairn_fcache_poll(fc);
	if (objtest_qc)
		cairn_qcache_poll(objtest_qc);
}

static void fail(const char *what, const void *p)
{
	if (atomic_fetch_add(&bad, 1) < 10)
		fprintf(stderr, "objects_reclaim_churn: %s: %p\n", what, p);
}

static _Atomic uint64_t *oracle_word(const void *p, uint64_t *bit)
{
	uint64_t g = ((uintptr_t)p - mem_base) >> 4;
	if (g >= (uint64_t)MEM_MIB * MiB / 16)
		return NULL;
	*bit = 1ull << (g % 64);
	return &oracle[g / 64];
}

static void obj_claim(uint64_t *p, size_t size, uint64_t tag)
{
	uint64_t bit;
	_Atomic uint64_t *w = oracle_word(p, &bit);
	if (!w)
		fail("object outside the memory", p);
	else if (atomic_fetch_or(w, bit) & bit)
		fail("object handed to two holders", p);
	size_t words = size / 8;
	p[0] = p[words - 1] = tag;
	p[1] = words;
	if (words > 4)
		p[words / 2] = tag;
}

/* Check the tags, give the granule back, then free through h. */
static void obj_release(struct cairn_heap *h, uint64_t *p)
{
	size_t words = p[1];
	uint64_t tag = p[0];
	if (words < 3 || words > (8u << 20) / 8 || p[words - 1] != tag ||
	    (words > 4 && p[words / 2] != tag))
		fail("object overwritten while held", p);
	uint64_t bit;
	_Atomic uint64_t *w = oracle_word(p, &bit);
	if (w && !(atomic_fetch_and(w, ~bit) & bit))
		fail("object freed while not held", p);
	if (cairn_heap_free(h, p))
		fail("free refused", p);
}

static size_t obj_size(uint64_t r)
{
	switch (r % 5) {
	case 0: return 24 + (r >> 8) % 1000;
	case 1: return 1024 + (r >> 8) % 7000;
	case 2: return 8192 + (r >> 8) % 56000;
	case 3: return LARGE_SIZE + ((r >> 8) % 40) * 4096;
	default: return 24 + (r >> 8) % 200;
	}
}

/* To another thread's mailbox (its free is remote), else freed here. */
static void hand_over(struct cairn_heap *h, unsigned id, uint64_t *p, uint64_t r)
{
	unsigned to = 1 + (unsigned)(r % nthreads);
	if (to != id)
		for (unsigned k = 0; k < 4; k++) {
			uintptr_t zero = 0;
			if (atomic_compare_exchange_strong(&mailbox[to][((r >> 16) + k) % MAILBOX],
							   &zero, (uintptr_t)p)) {
				atomic_fetch_add(&handed, 1);
				return;
			}
		}
	obj_release(h, p);
}

static void drain_mailbox(struct cairn_heap *h, unsigned id)
{
	for (unsigned k = 0; k < MAILBOX; k++) {
		uintptr_t p = atomic_exchange(&mailbox[id][k], 0);
		if (p)
			obj_release(h, (uint64_t *)p);
	}
}

static void *churn(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	int cpu = cairn_host_cpu_register();
	REQUIRE(cpu >= 0);
	struct cairn_heap *h = cairn_objects_heap(o, (unsigned)cpu);
	REQUIRE(h);
	uint64_t **v = malloc(HELD_MAX * sizeof(*v));
	REQUIRE(v);
	uint64_t rng = seed * 7919 + id, serial = 0;
	for (unsigned round = 0; round < rounds; round++) {
		size_t n = 0, want = id == 1 ? HELD_MAX : 100 + splitmix64(&rng) % 600;
		while (n < want) {
			size_t size = obj_size(splitmix64(&rng));
			uint64_t *p = cairn_heap_alloc(h, size);
			if (!p) {
				if (id == 1)
					atomic_fetch_add(&exhausted, 1);
				break;
			}
			obj_claim(p, size, (uint64_t)id << 56 | ++serial);
			v[n++] = p;
			if ((n & 63) == 0)
				poll_caches();
		}
		/* a quarter to the others, the rest freed here, in random order */
		while (n) {
			size_t k = splitmix64(&rng) % n;
			uint64_t *p = v[k], r = splitmix64(&rng);
			v[k] = v[--n];
			if (r % 4 == 0)
				hand_over(h, id, p, r >> 2);
			else
				obj_release(h, p);
		}
		drain_mailbox(h, id);
		if (id != 1 && splitmix64(&rng) % 4 == 0) {
			/* away for a while: what the others free to this heap
			 * meanwhile is collected by its posters */
			cairn_heap_offline(h);
			atomic_fetch_add(&offlines, 1);
			for (unsigned k = 0; k < 64; k++) {
				poll_caches();
				sched_yield();
			}
			cairn_heap_online(h);
		}
		poll_caches();
	}
	/* nobody hands over once every thread is done with its rounds */
	atomic_fetch_sub(&running, 1);
	while (atomic_load(&running)) {
		drain_mailbox(h, id);
		poll_caches();
		sched_yield();
	}
	drain_mailbox(h, id);
	cairn_heap_offline(h);
	if (fc)
		cairn_fcache_drain_cpu(fc, (unsigned)cpu);
	free(v);
	cairn_host_cpu_unregister();
	atomic_fetch_add(&finished, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	nthreads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 100;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	enum objtest_large large = argc > 4 ? (enum objtest_large)atoi(argv[4]) : OBJTEST_CACHES;
	bool harden = argc > 5 && atoi(argv[5]);
	bool use_fcache = argc > 6 && atoi(argv[6]);
	REQUIRE(nthreads >= 2 && nthreads <= 15 && large != OBJTEST_MAPPED &&
		large <= OBJTEST_CACHES);
	/* slot 0 is this thread's (the frame cache's and destroy's CPU) */
	objtest_init(nthreads + 1, MEM_MIB);
	REQUIRE(cairn_host_cpu_register() == 0);
	mem_base = (uintptr_t)cairn_port_phys_to_virt(0);
	oracle = calloc((size_t)MEM_MIB * MiB / 16 / 64, sizeof(*oracle));
	REQUIRE(oracle);
	uint64_t free0 = objtest_free_frames();
	objtest_large_init(large, 2 * MiB);
	if (use_fcache)
		REQUIRE(cairn_fcache_create(&fc, objtest_frames, NULL) == 0);
	o = objtest_create_with(harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF, fc);
	atomic_store(&running, nthreads);
	pthread_t t[16];
	for (unsigned i = 1; i <= nthreads; i++)
		REQUIRE(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)i) == 0);
	/* this CPU answers the frame cache's drain requests meanwhile */
	while (atomic_load(&finished) < nthreads) {
		poll_caches();
		sched_yield();
	}
	for (unsigned i = 1; i <= nthreads; i++)
		pthread_join(t[i], NULL);

	CHECK_EQ(atomic_load(&bad), 0);
	CHECK(atomic_load(&exhausted) > 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.large, 0);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.cached_frames, 0);
	CHECK_EQ(st.large_cached_frames, 0);
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);
	for (size_t i = 0; i < (size_t)MEM_MIB * MiB / 16 / 64; i++)
		if (atomic_load(&oracle[i]))
			fail("object still held at the end", (void *)(mem_base + i * 64 * 16));
	cairn_objects_destroy(o);
	if (fc)
		cairn_fcache_destroy(fc);
	objtest_large_fini();
	CHECK_EQ(objtest_free_frames(), free0);
	CHECK_EQ(cairn_host_reports(), 0);
	printf("objects_reclaim_churn: %u threads, %u rounds, large %d, harden %d, fcache %d: "
	       "%lu exhausted rounds, %lu offline cycles, %lu handed over, %llu messages "
	       "(%llu collected for offline heaps)\n",
	       nthreads, rounds, (int)large, (int)harden, (int)use_fcache,
	       atomic_load(&exhausted), atomic_load(&offlines), atomic_load(&handed),
	       (unsigned long long)st.remote_posted, (unsigned long long)st.offline_collects);
	free(oracle);
	return check_done("objects_reclaim_churn");
}
