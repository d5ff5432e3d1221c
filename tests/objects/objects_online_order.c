/* SPDX-License-Identifier: MIT */
/*
 * A heap's CPU coming back while another CPU holds its claim, in a fixed
 * order, against the library built with the hook points.
 *
 * Heap D is offline with x and y of one slab out. C frees x and posts: D
 * is OFFLINE, so C claims it, collects x, and is held before its release
 * store (CAIRN_HOOK_CLAIM_ENDING). P frees y and posts: D is CLAIMED, so
 * the message is left to the holder. D's CPU comes back: its
 * cairn_heap_online must wait while C holds D (half a second to return
 * anyway). C stores OFFLINE and is held before it looks at the queue again
 * (CAIRN_HOOK_CLAIM_ENDED); D's online now returns, D ONLINE. C goes on:
 * it finds y's message, but D is its owner's again, so its claim must fail
 * and leave y to D, which collects it on its next flush. Two holders at
 * once, or D's CPU running with its heap OFFLINE, would show in D's state
 * and in who collected what: x on D's behalf, y by D itself, once each;
 * the slab, kept by D as its current one, goes back when D goes offline.
 * Unhardened and hardened.
 */
#include <pthread.h>

#include "../check.h"
#include "objtest.h"
#include "hold.h"

#include "../../percpu/objects_layout.h"

static struct cairn_heap *heap_d, *heap_c, *heap_p; /* heaps 0, 1, 2 */
static void *x, *y;
static atomic_int online_done, flush_go;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	hold_at(at, obj);
}

static void *claimer(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	CHECK_EQ(cairn_heap_free(heap_c, x), 0);
	cairn_heap_flush(heap_c); /* D OFFLINE: this post claims it */
	cairn_host_cpu_unregister();
	return NULL;
}

/* D's CPU: back online, then (when told) a flush, which collects. */
static void *owner(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	cairn_heap_online(heap_d);
	atomic_store(&online_done, 1);
	while (!atomic_load(&flush_go))
		sched_yield();
	cairn_heap_flush(heap_d);
	cairn_host_cpu_unregister();
	return NULL;
}

static void run(enum cairn_obj_harden harden)
{
	uint64_t free0 = objtest_free_frames();
	struct cairn_objects *o = objtest_create(harden);
	heap_d = cairn_objects_heap(o, 0);
	heap_c = cairn_objects_heap(o, 1);
	heap_p = cairn_objects_heap(o, 2);
	REQUIRE((x = cairn_heap_alloc(heap_d, 64)) != NULL);
	REQUIRE((y = cairn_heap_alloc(heap_d, 64)) != NULL);
	cairn_heap_offline(heap_d);
	atomic_store(&online_done, 0);
	atomic_store(&flush_go, 0);

	holds_reset();
	unsigned ending = hold_add(CAIRN_HOOK_CLAIM_ENDING, heap_d);
	unsigned ended = hold_add(CAIRN_HOOK_CLAIM_ENDED, heap_d);
	holds_arm();

	pthread_t tc, td;
	REQUIRE(pthread_create(&tc, NULL, claimer, NULL) == 0);
	hold_wait(ending); /* C holds D, x collected */
	CHECK_EQ(atomic_load(&heap_d->state), HEAP_CLAIMED);
	CHECK_EQ(cairn_heap_free(heap_p, y), 0);
	cairn_heap_flush(heap_p); /* D CLAIMED: left to its holder */
	REQUIRE(pthread_create(&td, NULL, owner, NULL) == 0);
	CHECK(!flag_within(&online_done, 500)); /* waits while C holds D */
	hold_let_go(ending);
	hold_wait(ended); /* C let D go; y's message still queued */
	while (!atomic_load(&online_done))
		sched_yield();
	CHECK_EQ(atomic_load(&heap_d->state), HEAP_ONLINE);
	hold_let_go(ended);
	pthread_join(tc, NULL); /* C's second look: D is not OFFLINE */
	holds_disarm();
	CHECK_EQ(atomic_load(&heap_d->state), HEAP_ONLINE);

	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.remote_posted, 2);
	CHECK_EQ(st.offline_collects, 1); /* x, by C */
	CHECK_EQ(st.remote_collected, 0);
	CHECK_EQ(st.objects, 1);          /* y: posted, not collected */
	CHECK_EQ(st.slabs, 1);

	atomic_store(&flush_go, 1);
	pthread_join(td, NULL);
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.remote_collected, 1); /* y, by D */
	CHECK_EQ(st.offline_collects, 1);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.slabs, 1);            /* D's current slab, kept empty */
	CHECK_EQ(cairn_objects_validate(o), 0);

	cairn_heap_offline(heap_d);
	cairn_heap_offline(heap_c);
	cairn_heap_offline(heap_p);
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);
}

int main(void)
{
	objtest_init(3, 32);
	REQUIRE(cairn_host_cpu_register() >= 0);
	run(CAIRN_OBJ_HARDEN_OFF);
	run(CAIRN_OBJ_HARDEN_ON);
	CHECK_EQ(cairn_host_reports(), 0);
	return check_done("objects_online_order");
}
