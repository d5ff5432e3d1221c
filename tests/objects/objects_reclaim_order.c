/* SPDX-License-Identifier: MIT */
/*
 * Taking caches back in a fixed order, against the library built with the
 * hook points: heap B, exhausted, is parked in cairn__caches_reclaim
 * between heap A's block flush and A's large cache flush
 * (CAIRN_HOOK_RECLAIM_BETWEEN) while A releases a slab; then B is parked
 * inside A's large cache flush (the embedder's gate, around the give-back
 * of A's cached range) while A goes offline. A heap that goes offline
 * gives back its caches: nothing may be left in them once B is done.
 * While B is parked there, the range it gives back (RETIRING, still
 * allocated in the arena) is freed again on two heaps: both refused
 * (CAIRN_EFREE), the range left to B's give-back.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <cairn/error.h>

#include "../check.h"
#include "objtest.h"
#include "park.h"

#define LARGE_SIZE (68u << 10)

static struct cairn_objects *o;
static struct cairn_heap *heap_a, *heap_b;
static _Thread_local bool armed;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	if (park_once(at, obj, CAIRN_HOOK_RECLAIM_BETWEEN, heap_a))
		armed = true; /* the next gate on this thread: A's range given back */
}

static void gate_enter(void)
{
	if (!armed)
		return;
	armed = false;
	atomic_store(&stage, 3);
	wait_stage(4);
}

static void gate_leave(void) {}

/* Heap B: 48 KiB objects until its first exhaustion has gone through
 * the order above (a later one would flush A again), then all back. */
static void *exhaust(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	size_t cap = 4096, n = 0; /* 32 MiB of 48 KiB objects: fewer */
	void **v = malloc(cap * sizeof(*v));
	REQUIRE(v);
	for (void *p; n < cap && atomic_load(&stage) != 4 && (p = cairn_heap_alloc(heap_b, 48 << 10));)
		v[n++] = p;
	REQUIRE(atomic_load(&stage) == 4);
	while (n)
		CHECK_EQ(cairn_heap_free(heap_b, v[--n]), 0);
	free(v);
	cairn_host_cpu_unregister();
	return NULL;
}

int main(void)
{
	objtest_init(3, 32);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t free0 = objtest_free_frames();
	objtest_large_init(OBJTEST_DIRECT, 2 * MiB);
	struct cairn_objects_config cfg = {
		.frames = objtest_frames, .phys_base = 0, .phys_limit = objtest_mem,
		.harden = CAIRN_OBJ_HARDEN_OFF, .seed = 3, .large_arena = &objtest_arena,
		.large_cache_kib = 4 << 10, .arena_enter = gate_enter, .arena_leave = gate_leave,
	};
	REQUIRE(cairn_objects_create(&o, &cfg) == 0);
	heap_a = cairn_objects_heap(o, 0);
	heap_b = cairn_objects_heap(o, 1);

	/* A: three slabs of 32 KiB objects (above 64 KiB each: an emptied
	 * one is released, not kept), and a range in its large cache */
	unsigned order = cairn_obj_class_order(o, cairn_obj_class(32 << 10));
	size_t slab = (size_t)CAIRN_FRAME_SIZE << order, per = slab / (32 << 10);
	REQUIRE(slab > (64 << 10));
	void *v[64];
	REQUIRE(3 * per <= 64);
	for (size_t i = 0; i < 3 * per; i++)
		REQUIRE((v[i] = cairn_heap_alloc(heap_a, 32 << 10)) != NULL);
	void *big = cairn_heap_alloc(heap_a, LARGE_SIZE);
	REQUIRE(big);
	CHECK_EQ(cairn_heap_free(heap_a, big), 0);
	struct cairn_objects_stats st;
	cairn_objects_heap_stats(o, 0, &st);
	REQUIRE(st.large_cached_frames == LARGE_SIZE / CAIRN_FRAME_SIZE);

	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, exhaust, NULL) == 0);
	/* B has flushed A's blocks: A empties the slab of v[0] */
	wait_stage(1);
	uintptr_t first = (uintptr_t)v[0] & ~(uintptr_t)(slab - 1);
	for (size_t i = 0; i < 3 * per; i++)
		if (((uintptr_t)v[i] & ~(uintptr_t)(slab - 1)) == first) {
			CHECK_EQ(cairn_heap_free(heap_a, v[i]), 0);
			v[i] = NULL;
		}
	atomic_store(&stage, 2);
	/* B is inside A's large cache flush, giving back `big`: a second
	 * free of it, on A and on a third heap, must not reach the tree */
	wait_stage(3);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_heap_free(heap_a, big), CAIRN_EFREE);
	CHECK_EQ(cairn_heap_free(cairn_objects_heap(o, 2), big), CAIRN_EFREE);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), 2);
	/* ... and A goes offline */
	cairn_heap_offline(heap_a);
	atomic_store(&stage, 4);
	pthread_join(t, NULL);

	cairn_objects_heap_stats(o, 0, &st);
	CHECK_EQ(st.cached_frames, 0);
	CHECK_EQ(st.large_cached_frames, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);

	cairn_heap_online(heap_a);
	for (size_t i = 0; i < 3 * per; i++)
		if (v[i])
			CHECK_EQ(cairn_heap_free(heap_a, v[i]), 0);
	cairn_heap_offline(heap_a);
	cairn_heap_offline(heap_b);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_objects_destroy(o);
	objtest_large_fini();
	CHECK_EQ(objtest_free_frames(), free0);
	CHECK_EQ(cairn_host_reports(), 2); /* the two refusals alone */
	return check_done("objects_reclaim_order");
}
