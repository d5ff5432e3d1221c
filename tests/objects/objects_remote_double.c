/* SPDX-License-Identifier: MIT */
/*
 * Hardened double frees of another CPU's objects, in a fixed order, each
 * before the object could have been handed out again: the second free must
 * be refused at the call (CAIRN_EFREE, or CAIRN_ERANGE for a slab gone back
 * to the page layer) with exactly one report, and change nothing: every
 * other object of the batches involved reaches its owner, no object is
 * handed out twice or lost, validate passes and every frame comes back.
 *
 * h0 owns every object (64 bytes); h1 and h2 free them remotely.
 *   same_batch     p freed twice into h1's pending batch
 *   two_batches    p and a posted, then p again (p the tail of both)
 *   between        p posted by h1, q by h2, then p again by h1: the second
 *                  push of p would store 0 over p's queue link to q
 *   two_cpus       p posted by h1, then freed by h2
 *   remote_local   p and a posted by h1, then p freed by its owner before
 *                  it collects
 *   pending_local  the same, h1's batch not posted yet
 *   local_remote   p freed by its owner, then by h1 behind a: the owner's
 *                  free list would follow p's batch link to a, still held
 *   collected      p freed by h1 and collected, then freed by h1 again
 *   released       p's slab went back to the page layer, then p freed by h1
 *   realloc_pending   p freed by h1 (in its batch, then posted), then
 *                     realloc'd on h1 and h2 to sizes it holds and to
 *                     larger ones: refused, nothing kept or copied (kept,
 *                     p was the caller's while its owner handed it out
 *                     again)
 *   realloc_collected the same after h0 collected p
 *
 * A double free after the object was handed out again is a free of the new
 * allocation: no allocator can tell, and none is tried here.
 */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "objtest.h"

enum { N = 2500, SZ = 64 };

static struct cairn_objects *o;
static struct cairn_heap *h0, *h1, *h2;

static uint64_t held(void)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st.objects;
}

static int cmp_ptr(const void *x, const void *y)
{
	uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
	return a < b ? -1 : a > b;
}

/* Everything posted and collected; then `keep` objects are still held
 * (their pointers in keep[]), the rest of the objects freed in the test
 * reach h0 again: allocating more than a slab's worth on h0 hands out
 * none twice, none of keep[], and every one of back[]. */
static void settle(void *const *keep, unsigned nkeep, void *const *back, unsigned nback)
{
	cairn_heap_flush(h1);
	cairn_heap_flush(h2);
	cairn_heap_flush(h0);
	CHECK_EQ(held(), nkeep);
	CHECK_EQ(cairn_objects_validate(o), 0);
	static uintptr_t v[N];
	for (unsigned i = 0; i < N; i++)
		REQUIRE((v[i] = (uintptr_t)cairn_heap_alloc(h0, SZ)) != 0);
	qsort(v, N, sizeof(v[0]), cmp_ptr);
	unsigned dup = 0;
	for (unsigned i = 1; i < N; i++)
		dup += v[i] == v[i - 1];
	CHECK_EQ(dup, 0);
	for (unsigned k = 0; k < nkeep; k++)
		CHECK(!bsearch(&keep[k], v, N, sizeof(v[0]), cmp_ptr));
	for (unsigned k = 0; k < nback; k++)
		CHECK(bsearch(&back[k], v, N, sizeof(v[0]), cmp_ptr) != NULL);
	uint64_t before = cairn_host_reports();
	for (unsigned i = 0; i < N; i++)
		if (i == 0 || v[i] != v[i - 1])
			CHECK_EQ(cairn_heap_free(h0, (void *)v[i]), 0);
	for (unsigned k = 0; k < nkeep; k++)
		CHECK_EQ(cairn_heap_free(h0, keep[k]), 0);
	CHECK_EQ(cairn_host_reports(), before);
	CHECK_EQ(held(), 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

static void *obj(void)
{
	void *p = cairn_heap_alloc(h0, SZ);
	REQUIRE(p != NULL);
	return p;
}

/* The second free: refused with err and reported once. */
static void second_free(struct cairn_heap *h, void *p, int err)
{
	uint64_t before = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h, p), err);
	CHECK_EQ(cairn_host_reports(), before + 1);
}

static void test_same_batch(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	second_free(h1, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

static void test_two_batches(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	cairn_heap_flush(h1);
	second_free(h1, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

static void test_between(void)
{
	void *k = obj(), *q = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	cairn_heap_flush(h1);
	CHECK_EQ(cairn_heap_free(h2, q), 0);
	cairn_heap_flush(h2);
	second_free(h1, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ q, p }, 2);
}

static void test_two_cpus(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	cairn_heap_flush(h1);
	second_free(h2, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

static void test_remote_local(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	cairn_heap_flush(h1);
	second_free(h0, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

static void test_pending_local(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	second_free(h0, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

/* Before h1 posts, h0 allocates: a (in h1's batch) must not be among
 * what it hands out. */
static void test_local_remote(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h0, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	second_free(h1, p, CAIRN_EFREE);
	static uintptr_t v[N];
	unsigned seen_a = 0, seen_p = 0;
	for (unsigned i = 0; i < N; i++) {
		REQUIRE((v[i] = (uintptr_t)cairn_heap_alloc(h0, SZ)) != 0);
		seen_a += v[i] == (uintptr_t)a;
		seen_p += v[i] == (uintptr_t)p;
	}
	CHECK_EQ(seen_a, 0);
	CHECK_EQ(seen_p, 1);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	uint64_t before = cairn_host_reports();
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h0, (void *)v[i]), 0);
	CHECK_EQ(cairn_host_reports(), before);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

/* c, freed on h0 before p's first free is collected, is behind p on
 * h0's free list then. */
static void test_collected(void)
{
	void *k = obj(), *c = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h0, c), 0);
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(held(), 1);
	second_free(h1, p, CAIRN_EFREE);
	settle(&k, 1, (void *[]){ c, p }, 2);
}

/* h0 going offline gives its empty slabs back (p's among them). */
static void test_released(void)
{
	void *p = obj();
	CHECK_EQ(cairn_heap_free(h0, p), 0);
	cairn_heap_offline(h0);
	cairn_heap_online(h0);
	second_free(h1, p, CAIRN_ERANGE);
	settle(NULL, 0, NULL, 0);
}

/* A realloc of p, freed: NULL with CAIRN_EFREE, reported once, and no
 * new object (held() counts every object handed out). */
static void freed_realloc(struct cairn_heap *h, void *p, size_t size)
{
	uint64_t before = cairn_host_reports(), objs = held();
	int err = 0;
	CHECK(cairn_heap_realloc_err(h, p, size, &err) == NULL);
	CHECK_EQ(err, CAIRN_EFREE);
	CHECK_EQ(cairn_host_reports(), before + 1);
	CHECK_EQ(held(), objs);
}

/* Sizes p's 64 bytes hold (kept in place), larger ones (moved), and 0
 * (a free), on the heap that freed p and on a third. */
static void freed_reallocs(void *p)
{
	static const size_t sizes[] = { SZ, SZ - 20, 200, 5000, 100000, 0 };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		freed_realloc(h1, p, sizes[i]);
		freed_realloc(h2, p, sizes[i]);
	}
}

static void test_realloc_pending(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	freed_reallocs(p);
	cairn_heap_flush(h1);
	freed_reallocs(p);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

static void test_realloc_collected(void)
{
	void *k = obj(), *a = obj(), *p = obj();
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(held(), 1);
	freed_reallocs(p);
	settle(&k, 1, (void *[]){ a, p }, 2);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*run)(void);
	} cases[] = {
		{ "same_batch", test_same_batch },     { "two_batches", test_two_batches },
		{ "between", test_between },           { "two_cpus", test_two_cpus },
		{ "remote_local", test_remote_local }, { "pending_local", test_pending_local },
		{ "local_remote", test_local_remote }, { "collected", test_collected },
		{ "released", test_released },
		{ "realloc_pending", test_realloc_pending },
		{ "realloc_collected", test_realloc_collected },
	};
	objtest_init(3, 64);
	uint64_t free0 = objtest_free_frames();
	cairn_host_reports_quiet(1);
	alarm(120); /* a collection that loops fails the test */
	unsigned ran = 0;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name))
			continue;
		o = objtest_create(CAIRN_OBJ_HARDEN_ON);
		h0 = cairn_objects_heap(o, 0);
		h1 = cairn_objects_heap(o, 1);
		h2 = cairn_objects_heap(o, 2);
		cases[i].run();
		cairn_objects_destroy(o);
		CHECK_EQ(objtest_free_frames(), free0);
		ran++;
	}
	REQUIRE(ran > 0);
	cairn_host_reports_quiet(0);
	return check_done("objects_remote_double");
}
