/* SPDX-License-Identifier: MIT */
/*
 * The shim grows its memory a GiB at a time when an allocation fails,
 * up to CAIRN_MEMORY_GIB. A request no amount of memory can serve (an
 * alignment beyond the whole simulated memory) must fail without growing
 * it: the growth carves metadata for every GiB, resident for good. The
 * test reads the shim's count of GiB (resident pages, which it read at
 * first, move by megabytes under ThreadSanitizer's own runtime). Then the
 * largest requests: those a 1 GiB span holds are served from the memory,
 * those it cannot hold from mappings of their own, neither growing the
 * memory by more than a GiB.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../check.h"
#include "shim.h"

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

/* A large object is carved from a span that is one buddy block of at
 * most 1 GiB (its size, plus its alignment beyond a page, rounded up to
 * a power of two). Up to that every request is served, growing the
 * memory by the GiB it needs; beyond, from a mapping of its own (as glibc
 * serves it), and the memory must not grow for it. Before, a grown GiB held its own metadata, so no 1 GiB
 * block ever existed: every request above 512 MiB failed, after growing
 * the memory to its limit. */
static void test_largest(void)
{
	uint64_t before = cairn_shim_memory_gib();
	/* spans of 2 GiB: beside the memory */
	unsigned char *h = cairn_aligned_alloc(GIB, GIB);
	CHECK(h != NULL && !((uintptr_t)h & (GIB - 1)));
	cairn_free(h);
	h = cairn_aligned_alloc(512 * MIB, 600 * MIB);
	CHECK(h != NULL && !((uintptr_t)h & (512 * MIB - 1)));
	cairn_free(h);
	CHECK_EQ(cairn_shim_memory_gib(), before);
	void *p = (void *)1;
	CHECK(cairn_posix_memalign(&p, GIB, 4096) == 0 || p == (void *)1);
	if (p != (void *)1)
		cairn_free(p); /* a 1 GiB span: may be served */
	uint64_t after = cairn_shim_memory_gib();
	CHECK(after <= before + 1);
	/* spans of 1 GiB: served, and one more GiB is all they take */
	size_t sizes[] = { 600 * MIB, GIB - 4096, GIB };
	for (unsigned i = 0; i < 3; i++) {
		unsigned char *b = cairn_malloc(sizes[i]);
		CHECK(b != NULL);
		if (!b)
			continue;
		CHECK(cairn_malloc_usable_size(b) >= sizes[i]);
		b[0] = 1;
		b[sizes[i] - 1] = 2;
		cairn_free(b);
	}
	unsigned char *r = cairn_malloc(100);
	REQUIRE(r);
	memset(r, 0x5c, 100);
	unsigned char *g = cairn_realloc(r, 700 * MIB);
	CHECK(g != NULL);
	if (g) {
		CHECK(g[0] == 0x5c && g[99] == 0x5c);
		cairn_free(g);
	} else {
		cairn_free(r);
	}
	printf("largest requests: memory %llu GiB -> %llu GiB\n", (unsigned long long)before,
	       (unsigned long long)cairn_shim_memory_gib());
	CHECK(cairn_shim_memory_gib() <= after + 1);
}

int main(void)
{
	cairn_free(cairn_malloc(1)); /* the instance, with its first GiB */
	uint64_t before = cairn_shim_memory_gib();
	CHECK(before >= 1);
	/* User addresses are below 2^47, so no address of the memory is a
	 * multiple of 2^50 or 2^60 (a smaller alignment, 2^40 say, may have
	 * one within the memory's limit, depending on where it is mapped:
	 * then growing is right) */
	CHECK(cairn_aligned_alloc((size_t)1 << 50, 16) == NULL);
	void *p = (void *)1;
	CHECK(cairn_posix_memalign(&p, (size_t)1 << 60, 100) != 0);
	/* growing to the limit would have made a GiB's frame metadata
	 * resident for every GiB, for nothing */
	CHECK_EQ(cairn_shim_memory_gib(), before);
	printf("memory %llu GiB -> %llu GiB\n", (unsigned long long)before,
	       (unsigned long long)cairn_shim_memory_gib());
	/* and what memory can serve is still served */
	void *q = cairn_aligned_alloc(1u << 20, 100);
	CHECK(q && ((uintptr_t)q & ((1u << 20) - 1)) == 0);
	cairn_free(q);
	test_largest();
	return check_done("shim_grow_test");
}
