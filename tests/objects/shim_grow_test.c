/* SPDX-License-Identifier: MIT */
/*
 * The shim grows its memory a GiB at a time when an allocation fails,
 * up to CAIRN_MEMORY_GIB. A request no amount of memory can serve (an
 * alignment beyond the whole simulated memory) must fail without growing
 * it: the growth carves metadata for every GiB, resident for good. The
 * test reads the shim's count of GiB (resident pages, which it read at
 * first, move by megabytes under ThreadSanitizer's own runtime).
 */
#include <stdint.h>
#include <stdio.h>

#include "../check.h"
#include "shim.h"

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
	return check_done("shim_grow_test");
}
