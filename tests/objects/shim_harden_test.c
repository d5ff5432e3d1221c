/* SPDX-License-Identifier: MIT */
/*
 * The shim hardened (CAIRN_HARDEN=1, set before the instance is made): a
 * realloc of a freed object is refused and reported, whatever the size
 * (one no span of the memory holds too), and the object is handed out once afterwards, not twice. Then frees of
 * pointers it never handed out: reported, and nothing corrupted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cairn/host.h>
#include <cairn/objects.h>

#include "../check.h"
#include "shim.h"

/* p (100 B, freed) realloc'd to `size`: NULL with EINVAL (not ENOMEM:
 * more memory would not help), reported once, and the next allocations
 * of its class hand p out once. */
static void freed_realloc(size_t size)
{
	unsigned char *p = cairn_malloc(100);
	REQUIRE(p);
	memset(p, 0x33, 100);
	cairn_free(p);
	uint64_t r = cairn_host_reports();
	errno = 0;
	void *q = cairn_realloc(p, size);
	CHECK(q == NULL);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(cairn_host_reports(), r + 1);
	if (q && q != p)
		cairn_free(q);
	/* the class's next objects: p among them at most once */
	void *v[64];
	unsigned seen = q == p;
	for (unsigned i = 0; i < 64; i++) {
		v[i] = cairn_malloc(100);
		REQUIRE(v[i]);
		seen += v[i] == p;
	}
	CHECK(seen <= 1);
	for (unsigned i = 0; i < 64; i++)
		cairn_free(v[i]);
}

/* A free of p that is not an object start the shim handed out: one
 * report, errno untouched, nothing else. */
static void bad_free(void *p)
{
	uint64_t r = cairn_host_reports();
	errno = 77;
	cairn_free(p);
	CHECK_EQ(cairn_host_reports(), r + 1);
	CHECK_EQ(errno, 77);
}

/* Pointers into objects, off their starts, of the stack, of another
 * allocator, of no mapping, and second frees: each reported, none
 * followed; then the classes hand out distinct objects and validate
 * passes. */
static void invalid_frees(void)
{
	unsigned char *small = cairn_malloc(100), *mid = cairn_malloc(5000);
	unsigned char *big = cairn_malloc(200000), *huge = cairn_malloc(5u << 20);
	REQUIRE(small && mid && big && huge);
	memset(small, 0x42, 100);
	int on_stack;
	void *sys = malloc(64); /* the system allocator's */
	void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(sys && map != MAP_FAILED);
	bad_free(small + 16);
	bad_free(small + 1);
	bad_free(small + 8);
	bad_free(mid + 4096);
	bad_free(big + 16);
	bad_free(big + 4096);
	bad_free(big + 1);
	bad_free(huge + 4096);
	bad_free(huge + (3u << 20));
	bad_free(big + 303104); /* past its pages, in its span */
	bad_free(&on_stack);
	bad_free(sys);
	bad_free(map);
	bad_free((void *)16);
	bad_free((void *)-16);
	bad_free(cairn_shim_objects()); /* the shim's own metadata */
	for (unsigned i = 0; i < 100; i++)
		CHECK(small[i] == 0x42);
	cairn_free(mid);
	bad_free(mid);
	cairn_free(big);
	bad_free(big);
	free(sys);
	munmap(map, 4096);
	enum { N = 4096 };
	static void *v[N];
	unsigned same = 0;
	for (unsigned i = 0; i < N; i++) {
		v[i] = cairn_malloc(i % 2 ? 100 : 5000);
		REQUIRE(v[i]);
		/* an interior free accepted would hand out small + 16 */
		same += (unsigned char *)v[i] >= small && (unsigned char *)v[i] < small + 100;
	}
	CHECK_EQ(same, 0);
	for (unsigned i = 0; i < N; i++)
		cairn_free(v[i]);
	cairn_free(small);
	cairn_free(huge);
	CHECK_EQ(cairn_objects_validate(cairn_shim_objects()), 0);
}

int main(void)
{
	setenv("CAIRN_HARDEN", "1", 1);
	cairn_free(cairn_malloc(1)); /* the instance, hardened */
	cairn_host_reports_quiet(1);
	freed_realloc(50);    /* kept in place by the size */
	freed_realloc(10);    /* below half: moved */
	freed_realloc(100);
	freed_realloc(5000);  /* larger: moved */
	freed_realloc(1 << 20);
	freed_realloc((size_t)2 << 30); /* no span holds it: a mapping of its own */
	invalid_frees();
	return check_done("shim_harden_test");
}
