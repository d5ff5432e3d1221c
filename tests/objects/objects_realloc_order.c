/* SPDX-License-Identifier: MIT */
/*
 * A hardened realloc of a freed object of another heap, in a fixed order,
 * against the library built with the hook points: the realloc is held
 * once it knows p's usable size (CAIRN_HOOK_REALLOC_SIZED), and the owner
 * then collects p's free and goes offline, which gives p's emptied slab
 * back to the page layer. The realloc must still refuse p (NULL,
 * CAIRN_EFREE, one report, nothing handed out): what it saw was a freed
 * object of a slab, and its verdict must be on that slab. Kept in place,
 * p (memory no slab holds any more) would be the caller's.
 *
 * One thread drives all three heaps (explicit heaps: the caller owns
 * their slots), and the hook runs the owner's steps itself.
 */
#include <string.h>

#include <cairn/error.h>

#include "../check.h"
#include "objtest.h"
#include "../../percpu/hook.h"

enum { SZ = 64 };

static struct cairn_objects *o;
static struct cairn_heap *h0, *h1, *h2;
static bool armed;

static uint64_t held(void)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st.objects;
}

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	if (at != CAIRN_HOOK_REALLOC_SIZED || obj != h2 || !armed)
		return;
	armed = false;
	uint64_t before = held();
	cairn_heap_offline(h0); /* collects p's free, releases p's slab */
	CHECK_EQ(held(), before - 1);
}

/* p, h0's only object, freed on h1 and posted; h2's realloc of p (to a
 * size p holds, then a larger one) held while h0 takes p back and lets
 * its slab go. */
static void realloc_released(size_t size)
{
	void *p = cairn_heap_alloc(h0, SZ);
	REQUIRE(p);
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	cairn_heap_flush(h1);
	CHECK_EQ(held(), 1);
	uint64_t before = cairn_host_reports();
	int err = 0;
	armed = true;
	cairn_host_reports_quiet(1);
	void *q = cairn_heap_realloc_err(h2, p, size, &err);
	cairn_host_reports_quiet(0);
	CHECK(!armed);
	CHECK(q == NULL);
	CHECK_EQ(err, CAIRN_EFREE);
	CHECK_EQ(cairn_host_reports(), before + 1);
	CHECK_EQ(held(), 0);
	if (q && q != p)
		cairn_heap_free(h2, q);
	cairn_heap_online(h0);
	cairn_heap_offline(h1);
	cairn_heap_offline(h2);
	cairn_heap_online(h1);
	cairn_heap_online(h2);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

int main(void)
{
	objtest_init(3, 64);
	uint64_t free0 = objtest_free_frames();
	static const size_t sizes[] = { SZ, 200 };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		o = objtest_create(CAIRN_OBJ_HARDEN_ON);
		h0 = cairn_objects_heap(o, 0);
		h1 = cairn_objects_heap(o, 1);
		h2 = cairn_objects_heap(o, 2);
		realloc_released(sizes[i]);
		cairn_objects_destroy(o);
		CHECK_EQ(objtest_free_frames(), free0);
	}
	return check_done("objects_realloc_order");
}
