/* SPDX-License-Identifier: MIT */
/*
 * A hardened double free (free) or realloc (realloc) of another heap's
 * object p, held between the reads that check p against its slab and the
 * index into the slab's bitmaps: the owner meanwhile collects p's first
 * free, gives p's emptied slab back and makes the slab's descriptor into
 * a slab of another class, elsewhere. The index then comes from the new
 * layout (its base and size) and p, an object of neither, and lands past
 * the bitmaps; the remote free would set a bit there with its fetch-or.
 * The free or realloc must be refused (CAIRN_EFREE, one report) with
 * nothing changed, and every index that reaches a bitmap must be within
 * it and within the slab's objects (CAIRN_HOOK_BITMAP_INDEX: one out of
 * range ends the test before the access).
 *
 * One thread drives all three heaps (explicit heaps: the caller owns
 * their slots), and the hook runs the owner's steps itself.
 */
#include <string.h>

#include <cairn/error.h>

#include "../check.h"
#include "objtest.h"
#include "../../percpu/hook.h"
#include "../../percpu/objects_layout.h"

enum { SZ_OLD = 1024, SZ_NEW = 16, NEW_OBJS = 8 };

static struct cairn_objects *o;
static struct cairn_heap *h0, *h1, *h2;
static struct slab *desc; /* p's slab's descriptor at the lookup */
static void *fresh[NEW_OBJS]; /* h0's objects of the new slab */
static bool armed, realloc_mode;

static uint64_t held(void)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st.objects;
}

/* The owner's steps, in the window: p collected, its slab given back,
 * the descriptor made into a slab of SZ_NEW (a smaller order: its block
 * is another one). */
static void reuse(void)
{
	cairn_heap_offline(h0); /* collects p, releases p's slab */
	CHECK_EQ(held(), 0);
	cairn_heap_online(h0);
	for (unsigned k = 0; k < NEW_OBJS; k++) {
		fresh[k] = cairn_heap_alloc(h0, SZ_NEW);
		REQUIRE(fresh[k]);
	}
	/* the scenario: the descriptor p's lookup found now names the new
	 * slab */
	REQUIRE(pm_lookup(o, (uintptr_t)fresh[0]) == (uintptr_t)desc);
	REQUIRE(desc->size == SZ_NEW && desc->owner == h0);
}

static void bitmap_index(uint32_t i)
{
	if (i >= OBJ_MAX_OBJS || i >= desc->nobjs) {
		fprintf(stderr, "objects_reuse_order: bitmap index %u of a slab of %u objects "
			"(bitmaps of %u)\n", i, desc->nobjs, OBJ_MAX_OBJS);
		exit(1);
	}
}

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	if (at == CAIRN_HOOK_BITMAP_INDEX && desc) {
		bitmap_index(*(const uint32_t *)obj);
		return;
	}
	enum cairn_percpu_hook_point hold = realloc_mode ? CAIRN_HOOK_REALLOC_SIZED
							 : CAIRN_HOOK_REMOTE_CHECKED;
	if (at != hold || obj != h2 || !armed)
		return;
	armed = false;
	reuse();
}

/* h0's slab of SZ_OLD, full; p its last object (the far end of its
 * block), the others freed again. */
static void *last_of_a_slab(void)
{
	unsigned n = o->cls_nobjs[obj_class(SZ_OLD)];
	void *objs[64], *p = NULL;
	REQUIRE(n <= 64);
	for (unsigned k = 0; k < n; k++) {
		objs[k] = cairn_heap_alloc(h0, SZ_OLD);
		REQUIRE(objs[k]);
		if (!p || objs[k] > p)
			p = objs[k];
	}
	for (unsigned k = 0; k < n; k++)
		REQUIRE(pm_lookup(o, (uintptr_t)objs[k]) == pm_lookup(o, (uintptr_t)p));
	for (unsigned k = 0; k < n; k++)
		if (objs[k] != p)
			CHECK_EQ(cairn_heap_free(h0, objs[k]), 0);
	return p;
}

static void reused(bool re)
{
	realloc_mode = re;
	void *p = last_of_a_slab();
	desc = (struct slab *)pm_lookup(o, (uintptr_t)p);
	REQUIRE(desc && !((uintptr_t)desc & PM_TAG_MASK));
	CHECK_EQ(cairn_heap_free(h1, p), 0); /* its one valid free, posted */
	cairn_heap_flush(h1);
	CHECK_EQ(held(), 1);
	uint64_t before = cairn_host_reports();
	armed = true;
	cairn_host_reports_quiet(1);
	int err;
	if (re) {
		void *q = cairn_heap_realloc_err(h2, p, SZ_OLD, &err);
		CHECK(q == NULL);
	} else {
		err = cairn_heap_free(h2, p); /* the second free */
		cairn_heap_flush(h2);
	}
	cairn_host_reports_quiet(0);
	CHECK(!armed);
	CHECK_EQ(err, CAIRN_EFREE);
	CHECK_EQ(cairn_host_reports(), before + 1);
	/* nothing changed: the new slab's objects, and only they, are held,
	 * and each is freed on another heap without a report */
	CHECK_EQ(held(), NEW_OBJS);
	for (unsigned k = 0; k < NEW_OBJS; k++)
		CHECK_EQ(cairn_heap_free(k % 2 ? h1 : h2, fresh[k]), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h2);
	CHECK_EQ(cairn_host_reports(), before + 1);
	desc = NULL;
	cairn_heap_offline(h0);
	cairn_heap_offline(h1);
	cairn_heap_offline(h2);
	CHECK_EQ(held(), 0);
	cairn_heap_online(h0);
	cairn_heap_online(h1);
	cairn_heap_online(h2);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

int main(int argc, char **argv)
{
	bool re = argc > 1 && strcmp(argv[1], "realloc") == 0;
	REQUIRE(argc > 1 && (re || strcmp(argv[1], "free") == 0));
	objtest_init(3, 64);
	uint64_t free0 = objtest_free_frames();
	o = objtest_create(CAIRN_OBJ_HARDEN_ON);
	h0 = cairn_objects_heap(o, 0);
	h1 = cairn_objects_heap(o, 1);
	h2 = cairn_objects_heap(o, 2);
	reused(re);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);
	return check_done(re ? "objects_reuse_order_realloc" : "objects_reuse_order_free");
}
