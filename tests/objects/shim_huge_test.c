/* SPDX-License-Identifier: MIT */
/*
 * Requests no span of the memory holds (more than 1 GiB, or an alignment
 * that makes the span so): glibc serves them (python3's bytearray of
 * 2 GiB), and so must the shim, from mappings of their own, without
 * growing the memory. Every entry point, realloc into and out of such a
 * block and between two of them (the contents kept), calloc's zeros,
 * frees from another thread and from a forked child, errno untouched on
 * success; a second free of one reported.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/host.h>
#include <cairn/objects.h>

#include "../check.h"
#include "shim.h"

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

/* p of `size` bytes aligned to `align`, usable, its ends writable. */
static int huge_ok(unsigned char *p, size_t size, size_t align)
{
	if (!p || ((uintptr_t)p & (align - 1)) || cairn_malloc_usable_size(p) < size)
		return 0;
	p[0] = 0x11;
	p[size - 1] = 0x22;
	return p[0] == 0x11 && p[size - 1] == 0x22;
}

static void test_entry_points(void)
{
	struct { size_t align, size; } req[] = {
		{ 16, GIB + 1 }, { 4096, 3 * GIB / 2 }, { GIB, GIB }, { 2 * GIB, 16 },
		{ 512 * MIB, 600 * MIB }, { 64, 2 * GIB + 12345 },
	};
	for (unsigned i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		size_t a = req[i].align, n = req[i].size;
		errno = 321;
		unsigned char *p = a <= 16 ? cairn_malloc(n) : cairn_aligned_alloc(a, n);
		CHECK(huge_ok(p, n, a));
		CHECK_EQ(errno, 321);
		cairn_free(p);
		void *q = NULL;
		CHECK_EQ(cairn_posix_memalign(&q, a < 8 ? 8 : a, n), 0);
		CHECK(huge_ok(q, n, a));
		cairn_free(q);
		p = cairn_memalign(a, n);
		CHECK(huge_ok(p, n, a));
		cairn_free(p);
		CHECK_EQ(errno, 321);
	}
	unsigned char *v = cairn_valloc(GIB + 1);
	CHECK(huge_ok(v, GIB + 1, 4096));
	cairn_free(v);
	v = cairn_pvalloc(GIB + 1);
	CHECK(huge_ok(v, GIB + 4096, 4096));
	cairn_free(v);
}

static void test_calloc(void)
{
	size_t n = 2 * GIB + 5;
	unsigned char *p = cairn_calloc(1, n);
	REQUIRE(p);
	int zero = 1;
	for (size_t off = 0; off < n; off += 61 * MIB + 17)
		zero &= p[off] == 0;
	CHECK(zero && p[n - 1] == 0);
	cairn_free(p);
	p = cairn_calloc(GIB / 8 + 1, 8);
	CHECK(p != NULL && p[0] == 0 && p[GIB + 7] == 0);
	cairn_free(p);
}

static void fill(unsigned char *p, size_t n, unsigned char c)
{
	for (size_t off = 0; off < n; off += 65536 + 3)
		p[off] = c;
	p[n - 1] = c;
}

static int filled(const unsigned char *p, size_t n, unsigned char c)
{
	int ok = p[n - 1] == c;
	for (size_t off = 0; off < n; off += 65536 + 3)
		ok &= p[off] == c;
	return ok;
}

/* small -> huge -> larger huge -> smaller huge -> small, and a failed
 * realloc of a huge block that keeps it */
static void test_realloc(void)
{
	unsigned char *p = cairn_malloc(100);
	REQUIRE(p);
	memset(p, 0x5a, 100);
	unsigned char *q = cairn_realloc(p, GIB + 100);
	REQUIRE(q);
	CHECK(filled(q, 100, 0x5a));
	fill(q + 100, 100 * MIB, 0x6b);
	q[GIB + 99] = 0x7c;
	unsigned char *r = cairn_realloc(q, 3 * GIB);
	REQUIRE(r);
	CHECK(filled(r, 100, 0x5a) && filled(r + 100, 100 * MIB, 0x6b) && r[GIB + 99] == 0x7c);
	CHECK(cairn_malloc_usable_size(r) >= 3 * GIB);
	r[3 * GIB - 1] = 1;
	q = cairn_realloc(r, GIB + 200);
	REQUIRE(q);
	CHECK(filled(q, 100, 0x5a) && q[GIB + 99] == 0x7c);
	errno = 0;
	CHECK(cairn_realloc(q, SIZE_MAX - 8192) == NULL && errno == ENOMEM);
	CHECK(filled(q, 100, 0x5a) && q[GIB + 99] == 0x7c);
	p = cairn_realloc(q, 50);
	REQUIRE(p);
	CHECK(filled(p, 50, 0x5a));
	CHECK(cairn_malloc_usable_size(p) < GIB);
	cairn_free(p);
	/* realloc to 0 frees it */
	p = cairn_malloc(GIB + 1);
	REQUIRE(p);
	CHECK(cairn_realloc(p, 0) == NULL);
}

/* A realloc above a GiB asks the heap first (it keeps p if it can): the
 * heap refuses it at once, what it caches untouched, and p goes to a huge
 * block. The caches: released slab blocks and freed large objects of this
 * thread's heap, which an exhaustion would have taken back. */
static void test_realloc_keeps_caches(void)
{
	struct cairn_objects *o = cairn_shim_objects();
	enum { N = 600 };
	static void *v[N];
	for (unsigned i = 0; i < N; i++)
		REQUIRE((v[i] = cairn_malloc(2048)) != NULL);
	for (unsigned i = 1; i < N; i++)
		cairn_free(v[i]);
	for (unsigned i = 1; i < 5; i++)
		REQUIRE((v[i] = cairn_malloc(100000)) != NULL);
	for (unsigned i = 1; i < 5; i++)
		cairn_free(v[i]);
	unsigned char *p = cairn_malloc(200000);
	REQUIRE(p);
	fill(p, 200000, 0x3c);
	struct cairn_objects_stats was, now;
	cairn_objects_stats(o, &was);
	CHECK(was.cached_frames > 0);
	CHECK(was.large_cached_frames > 0);
	unsigned char *q = cairn_realloc(p, 2 * GIB);
	REQUIRE(q);
	CHECK(filled(q, 200000, 0x3c));
	CHECK(huge_ok(q, 2 * GIB, 16));
	unsigned char *r = cairn_realloc(v[0], GIB + 100);
	REQUIRE(r);
	cairn_objects_stats(o, &now);
	CHECK_EQ(now.slabs, was.slabs);
	CHECK_EQ(now.cached_frames, was.cached_frames);
	/* plus p's 49 pages, freed once moved */
	CHECK_EQ(now.large_cached_frames, was.large_cached_frames + 49);
	CHECK_EQ(now.remote_posted, was.remote_posted);
	cairn_free(q);
	cairn_free(r);
}

static void *free_thread(void *arg)
{
	cairn_free(arg);
	return NULL;
}

static void test_elsewhere(void)
{
	unsigned char *p = cairn_malloc(GIB + 3);
	REQUIRE(p);
	fill(p, GIB + 3, 0x3d);
	pid_t pid = fork();
	if (pid == 0) {
		int ok = filled(p, GIB + 3, 0x3d);
		unsigned char *q = cairn_realloc(p, 2 * GIB);
		ok = ok && q && filled(q, GIB + 3, 0x3d);
		cairn_free(q);
		_exit(!ok);
	}
	int st;
	REQUIRE(pid > 0 && waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(filled(p, GIB + 3, 0x3d));
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, free_thread, p) == 0);
	pthread_join(t, NULL);
}

/* A huge block freed twice, or at an inner address: reported, errno
 * untouched, nothing unmapped twice. */
static void test_bad_frees(void)
{
	unsigned char *p = cairn_malloc(GIB + 1);
	REQUIRE(p);
	uint64_t r = cairn_host_reports();
	cairn_host_reports_quiet(1);
	errno = 55;
	cairn_free(p + 4096);
	CHECK_EQ(cairn_host_reports(), r + 1);
	CHECK(huge_ok(p, GIB + 1, 16));
	cairn_free(p);
	cairn_free(p);
	CHECK_EQ(cairn_host_reports(), r + 2);
	CHECK_EQ(cairn_malloc_usable_size(p), 0);
	CHECK_EQ(cairn_host_reports(), r + 3);
	CHECK_EQ(errno, 55);
	cairn_host_reports_quiet(0);
}

/* The shim tracks its live huge blocks in a table of HUGE_SLOTS (4096):
 * full, a new one fails (ENOMEM). A realloc moving one block's entry
 * while another thread asks for a new block must not hand that thread
 * the entry's slot meanwhile: the realloc, finding no other, would take
 * it back, and the new block would be forgotten (its free reported). */
#define HUGE_SLOTS 4096
#define RACE_REALLOCS 20000

static _Atomic int race_done;

static void *steal_thread(void *arg)
{
	unsigned *stolen = arg;
	while (!atomic_load_explicit(&race_done, memory_order_relaxed)) {
		void *x = cairn_malloc(GIB + 1);
		if (x) {
			(*stolen)++;
			cairn_free(x);
		}
	}
	return NULL;
}

static void test_full_table(void)
{
	static void *v[HUGE_SLOTS + 1];
	unsigned n = 0;
	while (n <= HUGE_SLOTS && (v[n] = cairn_malloc(GIB + 1)))
		n++;
	if (n < HUGE_SLOTS) {
		/* the address space ran out first (ThreadSanitizer's holds
		 * some TiB): nothing to race for; else the shim failed early */
		void *m = mmap(NULL, GIB + 2 * 4096, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(m == MAP_FAILED);
		if (m != MAP_FAILED)
			munmap(m, GIB + 2 * 4096);
		while (n)
			cairn_free(v[--n]);
		return;
	}
	REQUIRE(n == HUGE_SLOTS); /* full: the table's limit */
	cairn_free(v[--n]);
	unsigned char *a = cairn_malloc(GIB + 1);
	REQUIRE(a);
	a[0] = 0x4e;
	uint64_t r = cairn_host_reports();
	unsigned stolen = 0;
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, steal_thread, &stolen) == 0);
	int ok = 1;
	for (unsigned i = 0; i < RACE_REALLOCS && ok; i++) {
		unsigned char *b = cairn_realloc(a, GIB + 4096 * (1 + i % 2));
		ok = b != NULL && b[0] == 0x4e;
		if (b)
			a = b;
	}
	atomic_store(&race_done, 1);
	pthread_join(t, NULL);
	CHECK(ok);
	/* every block still known: freed without a report */
	cairn_free(a);
	for (unsigned i = 0; i < n; i++)
		cairn_free(v[i]);
	CHECK_EQ(cairn_host_reports(), r);
	CHECK_EQ(stolen, 0);
}

int main(void)
{
	cairn_free(cairn_malloc(1)); /* the instance, with its first GiB */
	uint64_t gib = cairn_shim_memory_gib();
	test_realloc_keeps_caches();
	test_entry_points();
	test_calloc();
	test_realloc();
	test_elsewhere();
	test_bad_frees();
	test_full_table();
	/* all of it beside the memory, none of it grown for them */
	CHECK_EQ(cairn_shim_memory_gib(), gib);
	return check_done("shim_huge_test");
}
