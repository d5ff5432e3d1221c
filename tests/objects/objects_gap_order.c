/* SPDX-License-Identifier: MIT */
/*
 * A heap's holder letting it go with messages behind a producer's pending
 * link, in a fixed order, against the library built with the hook points:
 * the real q_push, q_pop, cairn_heap_offline and claim (objects_queue
 * builds the same queue by hand).
 *
 * Heap D owns x and y (one slab); a producer P frees them, one post each.
 * The holder H of D takes x, the last node: its q_pop is held before it
 * pushes the stub back (CAIRN_HOOK_POP_LAST). P's post of y exchanges y
 * in behind x and is held before it links x to y (CAIRN_HOOK_PUSH_LINK).
 * H goes on: the stub goes in behind y, x's link is still 0, and q_pop
 * returns nothing. The head is at the stub again, the tail at x.
 *
 *   owner    H is D's own CPU going offline (P posted x while D was
 *            ONLINE). H is held before its release store
 *            (CAIRN_HOOK_GOING_OFFLINE); P links x to y, loads ONLINE and
 *            leaves both messages to D. H must see its tail short of the
 *            stub and collect as a claimer does: the head alone says empty.
 *   claimer  D is offline; H is P' (a third heap) whose post of x claimed
 *            it. H must wait for P's link before it lets D go: its claim
 *            is given half a second to reach CAIRN_HOOK_CLAIM_ENDING
 *            anyway (held there if it does), then P links x to y and loads
 *            CLAIMED, leaving both messages to H.
 *
 * Either way nobody else will come: x and y must be collected before D is
 * let go, once each, on D's behalf; stats exact, no slab left, every frame
 * back. Unhardened and hardened (encoded links and head info).
 */
#include <pthread.h>
#include <string.h>

#include "../check.h"
#include "objtest.h"
#include "hold.h"

#include "../../percpu/objects_layout.h"

static bool claimer_variant;
static struct cairn_heap *heap_d, *heap_p, *heap_c; /* heaps 0, 1, 2 */
static void *x, *y;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	hold_at(at, obj);
}

/* H: D going offline (owner), or C posting x to offline D (claimer). */
static void *holder(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	if (claimer_variant) {
		CHECK_EQ(cairn_heap_free(heap_c, x), 0);
		cairn_heap_flush(heap_c); /* D OFFLINE: this post claims it */
	} else {
		cairn_heap_offline(heap_d);
	}
	cairn_host_cpu_unregister();
	return NULL;
}

/* P: y's post, held between its exchange and its link. */
static void *producer(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	CHECK_EQ(cairn_heap_free(heap_p, y), 0);
	cairn_heap_flush(heap_p);
	cairn_host_cpu_unregister();
	return NULL;
}

static void run(enum cairn_obj_harden harden)
{
	uint64_t free0 = objtest_free_frames();
	struct cairn_objects *o = objtest_create(harden);
	heap_d = cairn_objects_heap(o, 0);
	heap_p = cairn_objects_heap(o, 1);
	heap_c = cairn_objects_heap(o, 2);
	REQUIRE((x = cairn_heap_alloc(heap_d, 64)) != NULL);
	REQUIRE((y = cairn_heap_alloc(heap_d, 64)) != NULL);
	if (claimer_variant) {
		cairn_heap_offline(heap_d);
	} else {
		CHECK_EQ(cairn_heap_free(heap_p, x), 0);
		cairn_heap_flush(heap_p); /* D ONLINE: left to D */
	}

	holds_reset();
	unsigned hold_pop = hold_add(CAIRN_HOOK_POP_LAST, heap_d);
	unsigned hold_link = hold_add(CAIRN_HOOK_PUSH_LINK, y);
	unsigned hold_let = hold_add(claimer_variant ? CAIRN_HOOK_CLAIM_ENDING
						     : CAIRN_HOOK_GOING_OFFLINE, heap_d);
	holds_arm();

	pthread_t th, tp;
	REQUIRE(pthread_create(&th, NULL, holder, NULL) == 0);
	hold_wait(hold_pop); /* H has x, the head, in its tail */
	REQUIRE(pthread_create(&tp, NULL, producer, NULL) == 0);
	hold_wait(hold_link); /* y exchanged in behind x */
	hold_let_go(hold_pop);
	if (claimer_variant) {
		/* A claim that does not wait for the link gets there now. */
		(void)flag_within(&holds[hold_let].reached, 500);
	} else {
		hold_wait(hold_let);
		/* the shape the test is after: stub pushed over the gap */
		CHECK_EQ(heap_d->in_tail, (uintptr_t)x);
		CHECK_EQ(atomic_load(&heap_d->in_head), (uintptr_t)heap_d->stub);
		CHECK_EQ(atomic_load(&heap_d->state), HEAP_ONLINE);
	}
	hold_let_go(hold_link);
	pthread_join(tp, NULL); /* P linked and left both messages */
	hold_let_go(hold_let);
	pthread_join(th, NULL);
	holds_disarm();
	CHECK(hold_reached(hold_let));

	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.remote_posted, 2);
	CHECK_EQ(st.remote_objects, 2);
	CHECK_EQ(st.remote_collected, 0);
	CHECK_EQ(st.offline_collects, 2);
	CHECK_EQ(atomic_load(&heap_d->state), HEAP_OFFLINE);
	CHECK_EQ(heap_d->in_tail, (uintptr_t)heap_d->stub);
	CHECK_EQ(cairn_objects_validate(o), 0);

	/* D back, serving again. */
	cairn_heap_online(heap_d);
	void *a = cairn_heap_alloc(heap_d, 64), *b = cairn_heap_alloc(heap_d, 64);
	CHECK(a && b && a != b);
	CHECK_EQ(cairn_heap_free(heap_d, a), 0);
	CHECK_EQ(cairn_heap_free(heap_d, b), 0);
	cairn_heap_offline(heap_d);
	cairn_heap_offline(heap_p);
	cairn_heap_offline(heap_c);
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.slabs, 0);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);
}

int main(int argc, char **argv)
{
	REQUIRE(argc == 2);
	claimer_variant = !strcmp(argv[1], "claimer");
	REQUIRE(claimer_variant || !strcmp(argv[1], "owner"));
	objtest_init(3, 32);
	REQUIRE(cairn_host_cpu_register() >= 0);
	run(CAIRN_OBJ_HARDEN_OFF);
	run(CAIRN_OBJ_HARDEN_ON);
	CHECK_EQ(cairn_host_reports(), 0);
	return check_done(claimer_variant ? "objects_gap_order claimer" : "objects_gap_order owner");
}
