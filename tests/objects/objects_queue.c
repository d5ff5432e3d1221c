/* SPDX-License-Identifier: MIT */
/*
 * The message queue's one interleaving a stress run rarely hits, built by
 * hand (white box: the heap's queue fields, objects_layout.h); then many
 * producers posting to one heap at once.
 *
 * The owner pops x, the last node, and pushes the stub back behind it; a
 * producer exchanges y in just before that push-back and has not linked
 * y behind x yet when the owner looks at x's link. q_pop returns nothing,
 * and the queue is left as
 *
 *     in_tail = x  -(link pending)->  y  ->  stub = in_head
 *
 * The producer then links and loads the heap's state, which may still be
 * ONLINE: it leaves the messages to the owner. If the owner now goes
 * offline, a head back at the stub must not pass for an empty queue: x
 * and y are still to be collected, and nobody else will. The producer
 * here links only once the owner has stored OFFLINE (or claimed its own
 * heap), and does no more, as the real one that saw ONLINE: the owner
 * cannot tell the two apart, since it never looks at x's link again
 * unless it waits for it.
 */
#include <pthread.h>

#include "../check.h"
#include "objtest.h"

#include "../../percpu/objects_layout.h"

static struct cairn_heap *owner;
static uintptr_t link_from, link_to;

/* The producer's link, once the owner has left ONLINE. */
static void *producer(void *arg)
{
	(void)arg;
	while (atomic_load(&owner->state) == HEAP_ONLINE)
		cairn_port_pause();
	atomic_store_explicit(obj_qnext(link_from), link_to, memory_order_release);
	return NULL;
}

/* p as a message of one object for h, as cairn__remote_post writes it. */
static void message(struct cairn_heap *h, uintptr_t p)
{
	obj_set_word(p, msg_encode(h, p, p | MSG_ONE_SLAB));
}

static struct cairn_objects_stats stats(struct cairn_objects *o)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st;
}

static void test_stub_pushed_over_a_gap(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	uintptr_t stub = (uintptr_t)h->stub;
	uintptr_t x = (uintptr_t)cairn_heap_alloc(h, 64);
	uintptr_t y = (uintptr_t)cairn_heap_alloc(h, 64);
	REQUIRE(x && y);
	CHECK_EQ(stats(o).objects, 2);
	/* Both freed on another CPU, in two batches. */
	message(h, x);
	message(h, y);
	/* x pushed: stub -> x. */
	atomic_store(obj_qnext(x), 0);
	uintptr_t prev = atomic_exchange(&h->in_head, x);
	REQUIRE(prev == stub);
	atomic_store(obj_qnext(stub), x);
	/* The owner steps past the stub onto x: x is the head, so it will push
	 * the stub back before it returns x... */
	h->in_tail = x;
	/* ...but y's producer exchanges first, and is preempted... */
	atomic_store(obj_qnext(y), 0);
	prev = atomic_exchange(&h->in_head, y);
	REQUIRE(prev == x);
	/* ...and the stub goes in behind y. x's link is still 0: q_pop
	 * returned nothing. */
	atomic_store(obj_qnext(stub), 0);
	prev = atomic_exchange(&h->in_head, stub);
	REQUIRE(prev == y);
	atomic_store(obj_qnext(y), stub);

	owner = h;
	link_from = x;
	link_to = y;
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, producer, NULL) == 0);
	cairn_heap_offline(h); /* must wait for the link and collect x and y */
	pthread_join(t, NULL);

	struct cairn_objects_stats st = stats(o);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(atomic_load(&h->in_head), stub);
	CHECK_EQ(h->in_tail, stub);
	cairn_heap_online(h);
	cairn_heap_flush(h); /* (without the fix: collects what was left) */
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* ---- producers meeting at one heap's head ---- */

/* Four CPUs free objects of heap 0 one at a time, flushing after each, so
 * that every free is a message of its own and the producers' exchanges on
 * heap 0's head meet, while heap 0's owner collects. An exchange that were
 * a load and a store would lose a message whenever two met: its objects
 * would stay allocated for good (and a head left at the lost node would
 * cut off every message after it). */
#define QP_PRODUCERS 4
#define QP_OBJECTS 100000 /* per producer */
static struct cairn_objects *qp_o;
static uintptr_t *qp_obj;
static atomic_int qp_left;

static void *qp_producer(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_bind(i + 1) == 0);
	struct cairn_heap *h = cairn_objects_heap(qp_o, i + 1);
	for (unsigned k = 0; k < QP_OBJECTS; k++) {
		REQUIRE(cairn_heap_free(h, (void *)qp_obj[i * QP_OBJECTS + k]) == 0);
		cairn_heap_flush(h);
	}
	atomic_fetch_sub(&qp_left, 1);
	cairn_host_cpu_unregister();
	return NULL;
}

static void test_producers_at_once(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	qp_o = o;
	qp_obj = calloc(QP_PRODUCERS * QP_OBJECTS, sizeof(*qp_obj));
	REQUIRE(qp_obj);
	for (unsigned k = 0; k < QP_PRODUCERS * QP_OBJECTS; k++)
		REQUIRE((qp_obj[k] = (uintptr_t)cairn_heap_alloc(h, 32)) != 0);
	CHECK_EQ(stats(o).objects, QP_PRODUCERS * QP_OBJECTS);
	atomic_store(&qp_left, QP_PRODUCERS);
	pthread_t t[QP_PRODUCERS];
	for (unsigned i = 0; i < QP_PRODUCERS; i++)
		REQUIRE(pthread_create(&t[i], NULL, qp_producer, (void *)(uintptr_t)i) == 0);
	while (atomic_load(&qp_left))
		cairn_heap_flush(h); /* the owner collects meanwhile */
	for (unsigned i = 0; i < QP_PRODUCERS; i++)
		pthread_join(t[i], NULL);
	cairn_heap_flush(h);
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	free(qp_obj);
}

int main(void)
{
	objtest_init(QP_PRODUCERS + 1, 64);
	uint64_t free0 = objtest_free_frames();
	for (int harden = 0; harden < 2; harden++) {
		struct cairn_objects *o = objtest_create(harden ? CAIRN_OBJ_HARDEN_ON
								: CAIRN_OBJ_HARDEN_OFF);
		test_stub_pushed_over_a_gap(o);
		test_producers_at_once(o);
		cairn_objects_destroy(o);
		CHECK_EQ(objtest_free_frames(), free0);
	}
	return check_done("objects_queue");
}
