/* SPDX-License-Identifier: MIT */
/*
 * An offline heap's slabs coming back through claims, in a fixed order,
 * every count exact after every step (explicit heaps, one thread).
 *
 * Heap D fills slab S (FULL) and starts S2 (CUR, one object out), then
 * goes offline. X frees the first part of S and Y the rest: every 64th
 * free posts a batch, which finds D OFFLINE and claims it (S FULL ->
 * AVAIL on the first, used down by each); what X and Y still hold in
 * their partial batches stays counted as out, so S must stay. X then frees
 * an object of D2, whose batch slot is D's (17 % 16 == 1): the slot's
 * batch for D is posted first, and claims D. Y's flush brings S's last
 * objects back: S empty on an offline heap goes back at once (not kept
 * for a refill that cannot come). S2's object the same way; then D has
 * no slab. D2 is online: X's batch for it waits for D2's own flush. D comes
 * back and serves again from new slabs; at the end every heap goes offline
 * and every frame is back. Unhardened and hardened.
 */
#include "../check.h"
#include "objtest.h"

enum { X = 0, D = 1, Y = 2, D2 = 17, NCPUS = 18 };

static struct cairn_objects *o;

static struct cairn_objects_stats heap_st(unsigned cpu)
{
	struct cairn_objects_stats st;
	cairn_objects_heap_stats(o, cpu, &st);
	return st;
}

/* D's slabs and objects out, what X and Y posted and what was collected
 * on D's behalf, all exact. */
static void expect(uint64_t slabs, uint64_t objects, uint64_t posted_x, uint64_t posted_y,
		   uint64_t offline)
{
	struct cairn_objects_stats d = heap_st(D);
	CHECK_EQ(d.slabs, slabs);
	CHECK_EQ(d.objects, objects);
	CHECK_EQ(d.offline_collects, offline);
	CHECK_EQ(d.remote_collected, 0);
	CHECK_EQ(heap_st(X).remote_posted, posted_x);
	CHECK_EQ(heap_st(Y).remote_posted, posted_y);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

static void run(enum cairn_obj_harden harden)
{
	uint64_t free0 = objtest_free_frames();
	o = objtest_create(harden);
	struct cairn_heap *hx = cairn_objects_heap(o, X), *hd = cairn_objects_heap(o, D);
	struct cairn_heap *hy = cairn_objects_heap(o, Y), *hd2 = cairn_objects_heap(o, D2);
	unsigned cls = cairn_obj_class(64);
	unsigned n = (unsigned)((4096u << cairn_obj_class_order(o, cls)) / 64); /* per slab */
	REQUIRE(n > 2 * 64);
	char **p = calloc(n + 1, sizeof(*p));
	REQUIRE(p);
	for (unsigned i = 0; i <= n; i++)
		REQUIRE((p[i] = cairn_heap_alloc(hd, 64)));
	void *z = cairn_heap_alloc(hd2, 64);
	REQUIRE(z);
	cairn_heap_offline(hd);
	expect(2, n + 1, 0, 0, 0);

	/* X: [0, a) -- a / 64 posts, each a claim; a % 64 held */
	unsigned a = n / 2 - 13, b = n - a;
	REQUIRE(a % 64 && b % 64);
	for (unsigned i = 0; i < a; i++)
		CHECK_EQ(cairn_heap_free(hx, p[i]), 0);
	expect(2, n + 1 - a / 64 * 64, a / 64, 0, a / 64);
	/* Y: [a, n) */
	for (unsigned i = a; i < n; i++)
		CHECK_EQ(cairn_heap_free(hy, p[i]), 0);
	uint64_t held = a % 64 + b % 64; /* S's objects in X's and Y's batches */
	expect(2, 1 + held, a / 64, b / 64, a / 64 + b / 64);

	/* X frees z: the slot's batch for D is posted first (a claim) */
	CHECK_EQ(cairn_heap_free(hx, z), 0);
	expect(2, 1 + b % 64, a / 64 + 1, b / 64, a / 64 + b / 64 + 1);
	CHECK_EQ(heap_st(D2).objects, 1); /* z, in X's batch */

	/* Y's flush: S empty, released by the claim */
	cairn_heap_flush(hy);
	expect(1, 1, a / 64 + 1, b / 64 + 1, a / 64 + b / 64 + 2);
	/* S2's object: D has no slab left */
	CHECK_EQ(cairn_heap_free(hy, p[n]), 0);
	cairn_heap_flush(hy);
	expect(0, 0, a / 64 + 1, b / 64 + 2, a / 64 + b / 64 + 3);

	/* z to D2, online: left to it, collected by its own flush */
	cairn_heap_flush(hx);
	CHECK_EQ(heap_st(X).remote_posted, a / 64 + 2);
	CHECK_EQ(heap_st(D2).objects, 1);
	CHECK_EQ(heap_st(D2).remote_collected, 0);
	cairn_heap_flush(hd2);
	CHECK_EQ(heap_st(D2).objects, 0);
	CHECK_EQ(heap_st(D2).remote_collected, 1);
	CHECK_EQ(heap_st(D2).offline_collects, 0);

	/* D back: serving again, from new slabs */
	cairn_heap_online(hd);
	for (unsigned i = 0; i <= n; i++)
		REQUIRE((p[i] = cairn_heap_alloc(hd, 64)));
	CHECK_EQ(heap_st(D).slabs, 2);
	for (unsigned i = 0; i <= n; i++)
		CHECK_EQ(cairn_heap_free(hd, p[i]), 0);
	CHECK_EQ(heap_st(D).objects, 0);
	free(p);

	for (unsigned i = 0; i < NCPUS; i++)
		if (i == X || i == D || i == Y || i == D2)
			cairn_heap_offline(cairn_objects_heap(o, i));
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.remote_objects, n + 2);
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);
}

int main(void)
{
	objtest_init(NCPUS, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	run(CAIRN_OBJ_HARDEN_OFF);
	run(CAIRN_OBJ_HARDEN_ON);
	CHECK_EQ(cairn_host_reports(), 0);
	return check_done("objects_offline_slabs");
}
