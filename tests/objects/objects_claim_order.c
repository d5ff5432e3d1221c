/* SPDX-License-Identifier: MIT */
/*
 * A claim of an offline heap ending while another CPU posts to it, in a
 * fixed order, against the library built with the hook points. Heap D is
 * offline with two objects of one slab out. C frees the first remotely and
 * posts: D is OFFLINE, so C claims it, collects, and is parked just before
 * it stores OFFLINE again (CAIRN_HOOK_CLAIM_ENDING). P frees the second
 * and posts: D is CLAIMED, so P leaves the message to the claimer. C goes
 * on. Its claim must look at the queue again after storing OFFLINE and
 * collect P's message: else the object stays counted as out and its slab
 * stays, with nobody left to collect it until some later post to D.
 */
#include <pthread.h>

#include "../check.h"
#include "objtest.h"
#include "park.h"

static struct cairn_objects *o;
static struct cairn_heap *heap_c, *heap_p, *heap_d;
static void *first, *second;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	park_once(at, obj, CAIRN_HOOK_CLAIM_ENDING, heap_d);
}

static void *claimer(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	CHECK_EQ(cairn_heap_free(heap_c, first), 0);
	cairn_heap_flush(heap_c); /* D offline: this post claims it */
	cairn_host_cpu_unregister();
	return NULL;
}

int main(void)
{
	objtest_init(3, 32);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t free0 = objtest_free_frames();
	o = objtest_create(CAIRN_OBJ_HARDEN_OFF);
	heap_c = cairn_objects_heap(o, 0);
	heap_p = cairn_objects_heap(o, 1);
	heap_d = cairn_objects_heap(o, 2);
	REQUIRE((first = cairn_heap_alloc(heap_d, 64)) != NULL);
	REQUIRE((second = cairn_heap_alloc(heap_d, 64)) != NULL);
	cairn_heap_offline(heap_d);

	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, claimer, NULL) == 0);
	wait_stage(1); /* C holds D, its collection done */
	CHECK_EQ(cairn_heap_free(heap_p, second), 0);
	cairn_heap_flush(heap_p); /* D CLAIMED: left to C */
	atomic_store(&stage, 2);
	pthread_join(t, NULL);

	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.remote_posted, 2);
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_online(heap_d);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);
	CHECK_EQ(cairn_host_reports(), 0);
	return check_done("objects_claim_order");
}
