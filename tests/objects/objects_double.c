/* SPDX-License-Identifier: MIT */
/*
 * Double frees across CPUs, as the owner's collection meets them (white
 * box: the heap's queue, objects_layout.h).
 *
 * Unhardened, nothing checks a free, so free(p); free(p) on a CPU that does
 * not own p pushes p twice onto its batch: p's second link points at p (or
 * at an object freed after its first free), a cycle. A batch of one slab is
 * spliced whole, by its count; a batch of two slabs is walked from its head,
 * and a walk that follows links to the end marker would never end. The
 * collection must return (with a report) whatever the caller did: it runs on
 * a thread of its own here, and the test fails if it has not returned
 * within seconds.
 *
 * Hardened, a repeat is refused at the free, before it writes into p: a
 * repeat after p's batch was posted ("tail": p the tail of both batches,
 * whose second push would link p behind itself in the queue; "head": p the
 * head of the first, its batch link overwritten), or after the owner
 * collected p ("middle": p on the owner's free list, its link overwritten).
 * One report, no object cut off a free list or handed out twice
 * (objects_remote_double has the other orders).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "objtest.h"

#include "../../percpu/objects_layout.h"

static struct cairn_objects_stats stats(struct cairn_objects *o)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st;
}

static int cmp_ptr(const void *x, const void *y)
{
	uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
	return a < b ? -1 : a > b;
}

/* Allocate more 64-byte objects than a slab holds: none handed out twice,
 * c and p among them (free once each), lost not (still counted as held). */
static void check_handed_out(struct cairn_objects *o, struct cairn_heap *h, uintptr_t c,
			     uintptr_t p, uintptr_t lost)
{
	enum { N = 2500 };
	static uintptr_t v[N];
	for (unsigned i = 0; i < N; i++)
		REQUIRE((v[i] = (uintptr_t)cairn_heap_alloc(h, 64)) != 0);
	qsort(v, N, sizeof(v[0]), cmp_ptr);
	unsigned dup = 0, seen_c = 0, seen_p = 0, seen_lost = 0;
	for (unsigned i = 0; i < N; i++) {
		dup += i && v[i] == v[i - 1];
		seen_c += v[i] == c;
		seen_p += v[i] == p;
		seen_lost += v[i] == lost;
	}
	CHECK_EQ(dup, 0);
	CHECK_EQ(seen_c, 1);
	CHECK_EQ(seen_p, 1);
	CHECK_EQ(seen_lost, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	for (unsigned i = 0; i < N; i++)
		if (i == 0 || v[i] != v[i - 1])
			cairn_heap_free(h, (void *)v[i]);
}

static struct cairn_heap *wd_heap;
static atomic_int wd_done;

static void *collector(void *arg)
{
	(void)arg;
	cairn_heap_flush(wd_heap);
	atomic_store(&wd_done, 1);
	return NULL;
}

/* h collects its messages on a thread of its own; a collection that has
 * not returned within 10 s fails the test at once (it cannot be stopped). */
static void collect_or_fail(struct cairn_heap *h)
{
	wd_heap = h;
	atomic_store(&wd_done, 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, collector, NULL) == 0);
	for (unsigned i = 0; i < 1000 && !atomic_load(&wd_done); i++)
		usleep(10000);
	if (!atomic_load(&wd_done)) {
		fprintf(stderr, "objects_double: the collection did not return within 10 s\n");
		check_done("objects_double");
		fflush(stdout);
		fflush(stderr);
		_exit(1);
	}
	pthread_join(t, NULL);
}

/* Unhardened: h1 frees a (64 B), b (128 B: another slab), then p (64 B)
 * twice, and posts: a batch of two slabs whose head p links to itself
 * (a and b are behind the cycle, never reached). The owner's collection
 * returns and reports the batch. What the caller's double free did to the
 * accounting of p's slab is its own (as for a double free on the owner's
 * CPU): no validate here, only that everything goes back at destroy. */
static void test_plain_repeat(void)
{
	struct cairn_objects *o = objtest_create(CAIRN_OBJ_HARDEN_OFF);
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	void *keep[16];
	for (unsigned i = 0; i < 16; i++) /* the 64-byte slab's used stays above 0 */
		REQUIRE((keep[i] = cairn_heap_alloc(h0, 64)) != NULL);
	char *a = cairn_heap_alloc(h0, 64), *b = cairn_heap_alloc(h0, 128);
	char *p = cairn_heap_alloc(h0, 64);
	REQUIRE(a && b && p);
	uint64_t posted = stats(o).remote_posted;
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	CHECK_EQ(cairn_heap_free(h1, b), 0);
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	CHECK_EQ(cairn_heap_free(h1, p), 0); /* unhardened: not checked */
	cairn_heap_flush(h1);
	CHECK_EQ(stats(o).remote_posted, posted + 1);
	uint64_t before = cairn_host_reports();
	collect_or_fail(h0);
	CHECK(cairn_host_reports() > before);
	(void)keep;
	cairn_objects_destroy(o);
}

/* Hardened: h1 frees p and posts (message 1: p alone), then frees p
 * again before h0 collects: refused (p's remote free is on its way). c,
 * freed on h0, heads p's slab's local_free when p's message is collected,
 * so p's word is then a link of that list. */
static void test_checked_tail_again(void)
{
	struct cairn_objects *o = objtest_create(CAIRN_OBJ_HARDEN_ON);
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	char *c = cairn_heap_alloc(h0, 64), *p = cairn_heap_alloc(h0, 64);
	char *k = cairn_heap_alloc(h0, 64);
	REQUIRE(c && p && k);
	CHECK_EQ(cairn_heap_free(h0, c), 0);
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	cairn_heap_flush(h1);
	uint64_t before = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h1, p), CAIRN_EFREE); /* its batch is posted */
	cairn_heap_flush(h1);
	collect_or_fail(h0);
	CHECK_EQ(cairn_host_reports(), before + 1);
	CHECK_EQ(stats(o).objects, 1); /* k */
	CHECK_EQ(cairn_objects_validate(o), 0);
	check_handed_out(o, h0, (uintptr_t)c, (uintptr_t)p, (uintptr_t)k);
	cairn_objects_destroy(o);
}

/* Hardened: h1 frees a, then p, and posts (message 1: p -> a); frees p
 * again: refused, so p's link to a stays and a comes back too. k stays
 * held. */
static void test_checked_head_again(void)
{
	struct cairn_objects *o = objtest_create(CAIRN_OBJ_HARDEN_ON);
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	char *c = cairn_heap_alloc(h0, 64), *a = cairn_heap_alloc(h0, 64);
	char *p = cairn_heap_alloc(h0, 64), *k = cairn_heap_alloc(h0, 64);
	REQUIRE(c && a && p && k);
	CHECK_EQ(cairn_heap_free(h0, c), 0);
	CHECK_EQ(cairn_heap_free(h1, a), 0);
	CHECK_EQ(cairn_heap_free(h1, p), 0);
	cairn_heap_flush(h1);
	uint64_t before = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h1, p), CAIRN_EFREE);
	cairn_heap_flush(h1);
	collect_or_fail(h0);
	CHECK_EQ(cairn_host_reports(), before + 1);
	CHECK_EQ(stats(o).objects, 1); /* k */
	CHECK_EQ(cairn_objects_validate(o), 0);
	check_handed_out(o, h0, (uintptr_t)a, (uintptr_t)p, (uintptr_t)k);
	cairn_objects_destroy(o);
}

/* Hardened: h1 frees x and posts, h0 collects (x is free, its link to
 * c, freed before it); then h1 frees y and x again and posts. x's second
 * free is refused (its owner holds it free), before it writes over x's
 * link to c: y is collected alone and comes back, and so do x and c;
 * pushed, x's word would have become a batch link to y, which the owner's
 * list would follow to hand y out while it is counted as held. */
static void test_checked_middle_again(void)
{
	struct cairn_objects *o = objtest_create(CAIRN_OBJ_HARDEN_ON);
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	char *c = cairn_heap_alloc(h0, 64), *x = cairn_heap_alloc(h0, 64);
	char *y = cairn_heap_alloc(h0, 64);
	REQUIRE(c && x && y);
	CHECK_EQ(cairn_heap_free(h0, c), 0);
	CHECK_EQ(cairn_heap_free(h1, x), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).objects, 1);
	CHECK_EQ(cairn_heap_free(h1, y), 0);
	uint64_t before = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h1, x), CAIRN_EFREE); /* x is free */
	cairn_heap_flush(h1);
	collect_or_fail(h0);
	CHECK_EQ(cairn_host_reports(), before + 1);
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	enum { N = 2500 };
	static uintptr_t v[N];
	unsigned seen_y = 0, seen_x = 0, seen_c = 0;
	for (unsigned i = 0; i < N; i++) {
		REQUIRE((v[i] = (uintptr_t)cairn_heap_alloc(h0, 64)) != 0);
		seen_y += v[i] == (uintptr_t)y;
		seen_x += v[i] == (uintptr_t)x;
		seen_c += v[i] == (uintptr_t)c;
	}
	CHECK_EQ(seen_y, 1);
	CHECK_EQ(seen_x, 1);
	CHECK_EQ(seen_c, 1);
	before = cairn_host_reports();
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h0, (void *)v[i]), 0);
	CHECK_EQ(cairn_host_reports(), before);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_objects_destroy(o);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*run)(void);
	} cases[] = {
		{ "plain", test_plain_repeat },
		{ "tail", test_checked_tail_again },
		{ "head", test_checked_head_again },
		{ "middle", test_checked_middle_again },
	};
	objtest_init(2, 64);
	uint64_t free0 = objtest_free_frames();
	cairn_host_reports_quiet(1);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name))
			continue;
		cases[i].run();
		CHECK_EQ(objtest_free_frames(), free0);
	}
	cairn_host_reports_quiet(0);
	return check_done("objects_double");
}
