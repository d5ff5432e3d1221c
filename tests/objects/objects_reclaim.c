/* SPDX-License-Identifier: MIT */
/*
 * Exhaustion reaches every heap's caches: a heap that finds no memory takes
 * back what the other heaps keep for themselves (released slab blocks and
 * freed large ranges) before it reports failure, so memory cached on
 * another CPU is never why an allocation fails.
 * usage: objects_reclaim [threads rounds seed]
 *  - blocks: three heaps free 12 MiB of small objects each into their block
 *    caches; a fourth then allocates until NULL and must have had it all;
 *  - large: the same with large objects and the heaps' large caches;
 *  - race: thread 0 allocates until NULL and frees, round after round, while
 *    the others fill and empty their caches; every object carries its
 *    holder's tag, checked before its free (two holders of one byte fail);
 *    no call may report an error.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../check.h"
#include "objtest.h"

#define SMALL_SIZE 2048u
#define LARGE_SIZE (68u << 10) /* 17 pages: a large cache's smallest bin */

static struct cairn_objects *make(unsigned block_cache_kib, unsigned large_cache_kib)
{
	struct cairn_objects *o;
	struct cairn_objects_config cfg = {
		.frames = objtest_frames, .phys_base = 0, .phys_limit = objtest_mem,
		.harden = CAIRN_OBJ_HARDEN_OFF, .seed = 7,
		.block_cache_kib = block_cache_kib,
		.large_arena = objtest_mode != OBJTEST_BUDDY ? &objtest_arena : NULL,
		.large_cache_kib = large_cache_kib,
	};
	REQUIRE(cairn_objects_create(&o, &cfg) == 0);
	return o;
}

static struct cairn_objects_stats heap_stats(struct cairn_objects *o, unsigned i)
{
	struct cairn_objects_stats st;
	cairn_objects_heap_stats(o, i, &st);
	return st;
}

/* Heaps 1..3 each allocate `bytes` in objects of `size` and free them all,
 * which leaves their memory in their caches; heap 0 then allocates objects
 * of `size` until NULL. Returns how many it had (*v holds them). */
static size_t fill_others_then_exhaust(struct cairn_objects *o, size_t size, size_t bytes,
				       void ***out)
{
	size_t per = bytes / size, cap = 1u << 20;
	void **v = malloc(cap * sizeof(*v));
	REQUIRE(v);
	for (unsigned i = 1; i < 4; i++) {
		struct cairn_heap *h = cairn_objects_heap(o, i);
		for (size_t k = 0; k < per; k++)
			REQUIRE((v[k] = cairn_heap_alloc(h, size)) != NULL);
		for (size_t k = 0; k < per; k++)
			CHECK_EQ(cairn_heap_free(h, v[k]), 0);
	}
	size_t n = 0;
	struct cairn_heap *h0 = cairn_objects_heap(o, 0);
	for (void *p; n < cap && (p = cairn_heap_alloc(h0, size));)
		v[n++] = p;
	REQUIRE(n < cap);
	*out = v;
	return n;
}

static void free_all(struct cairn_objects *o, void **v, size_t n)
{
	struct cairn_heap *h0 = cairn_objects_heap(o, 0);
	while (n)
		CHECK_EQ(cairn_heap_free(h0, v[--n]), 0);
	free(v);
}

/* Heaps 1..3 leave 12 MiB each in one of their caches (bounds far above
 * that: nothing but exhaustion empties them); heap 0 must then have had
 * all but the metadata, a kept slab per heap and what is too small for a
 * slab or a span: at least `tenths` of the frames.
 * large: released slab blocks (false) or freed large ranges (true). */
static void test_caches(uint64_t free0, bool large, unsigned tenths)
{
	if (large)
		objtest_large_init(OBJTEST_DIRECT, 2 * MiB);
	struct cairn_objects *o = large ? make(0, 32 << 10) : make(64 << 10, 0);
	size_t size = large ? LARGE_SIZE : SMALL_SIZE;
	void **v;
	size_t n = fill_others_then_exhaust(o, size, 12 * MiB, &v);
	uint64_t cached = 0;
	for (unsigned i = 1; i < 4; i++)
		cached += large ? heap_stats(o, i).large_cached_frames
				: heap_stats(o, i).cached_frames;
	CHECK_EQ(cached, 0);
	CHECK((uint64_t)n * size / CAIRN_FRAME_SIZE >= free0 / 10 * tenths);
	CHECK_EQ(cairn_objects_validate(o), 0);
	free_all(o, v, n);
	cairn_objects_destroy(o);
	if (large)
		objtest_large_fini();
	CHECK_EQ(objtest_free_frames(), free0);
}

/* ---- the race ---- */

static struct cairn_objects *race_o;
static unsigned race_rounds;
static uint64_t race_seed;
static atomic_uint race_left;      /* fillers still running */
static atomic_uint race_exhausted; /* thread 0's rounds that reached NULL */
static atomic_ulong race_bad;      /* tags found wrong */

struct obj {
	uint64_t *p;
	size_t words;
	uint64_t tag;
};

/* The tag in the first, middle and last word of the object. */
static void tag_set(struct obj *x)
{
	x->p[0] = x->p[x->words / 2] = x->p[x->words - 1] = x->tag;
}

static void tag_check(struct obj *x)
{
	if (x->p[0] != x->tag || x->p[x->words / 2] != x->tag || x->p[x->words - 1] != x->tag)
		atomic_fetch_add(&race_bad, 1);
}

static size_t race_size(uint64_t r)
{
	switch (r % 4) {
	case 0: return 16 + (r >> 8) % 4080;
	case 1: return 4096 + (r >> 8) % 60000;
	case 2: return LARGE_SIZE + ((r >> 8) % 60) * 4096;
	default: return 100 + (r >> 8) % 900;
	}
}

#define RACE_CAP 65536

static void *race_thread(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	struct cairn_heap *h = cairn_objects_heap(race_o, id);
	struct obj *v = malloc(RACE_CAP * sizeof(*v));
	REQUIRE(v);
	uint64_t rng = race_seed * 1000 + id, serial = 0;
	for (unsigned round = 0; round < race_rounds || (id == 0 && atomic_load(&race_left)); round++) {
		/* thread 0 until NULL, the others a few MiB, then all back */
		size_t n = 0, want = id == 0 ? RACE_CAP : 200 + splitmix64(&rng) % 800;
		while (n < want) {
			size_t size = race_size(splitmix64(&rng));
			void *p = cairn_heap_alloc(h, size);
			if (!p) {
				if (id == 0)
					atomic_fetch_add(&race_exhausted, 1);
				break;
			}
			v[n] = (struct obj){ p, size / 8, ((uint64_t)id << 48) | ++serial };
			tag_set(&v[n++]);
		}
		while (n) {
			tag_check(&v[--n]);
			if (cairn_heap_free(h, v[n].p))
				atomic_fetch_add(&race_bad, 1);
		}
	}
	free(v);
	if (id)
		atomic_fetch_sub(&race_left, 1);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_race(unsigned threads, unsigned rounds, uint64_t seed, uint64_t free0)
{
	objtest_large_init(OBJTEST_DIRECT, 2 * MiB);
	race_o = make(4 << 10, 4 << 10);
	race_rounds = rounds;
	race_seed = seed;
	atomic_store(&race_left, threads - 1);
	pthread_t t[16];
	for (unsigned i = 0; i < threads; i++)
		REQUIRE(pthread_create(&t[i], NULL, race_thread, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&race_bad), 0);
	CHECK(atomic_load(&race_exhausted) > 0);
	CHECK_EQ(cairn_objects_validate(race_o), 0);
	for (unsigned i = 0; i < threads; i++) {
		struct cairn_heap *h = cairn_objects_heap(race_o, i);
		cairn_heap_offline(h);
		cairn_heap_online(h);
	}
	CHECK_EQ(cairn_objects_validate(race_o), 0);
	cairn_objects_destroy(race_o);
	objtest_large_fini();
	CHECK_EQ(objtest_free_frames(), free0);
	printf("race: %u threads, %u exhausted rounds of thread 0\n", threads,
	       atomic_load(&race_exhausted));
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 50;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	REQUIRE(threads >= 4 && threads <= 16);
	objtest_init(threads, 64);
	uint64_t free0 = objtest_free_frames();
	test_caches(free0, false, 9);
	test_caches(free0, true, 8);
	test_race(threads, rounds, seed, free0);
	CHECK_EQ(cairn_host_reports(), 0);
	return check_done("objects_reclaim");
}
