/* SPDX-License-Identifier: MIT */
/*
 * The shim grows its memory a GiB at a time when an allocation fails,
 * up to CAIRN_MEMORY_GIB. A request no amount of memory can serve (an
 * alignment beyond the whole simulated memory) must fail without growing
 * it: the growth carves metadata for every GiB, resident for good.
 */
#include <stdint.h>
#include <stdio.h>

#include "../check.h"
#include "shim.h"

/* Resident pages of this process (/proc/self/statm), or -1. */
static long resident(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size, rss;
	if (!f)
		return -1;
	int n = fscanf(f, "%ld %ld", &size, &rss);
	fclose(f);
	return n == 2 ? rss : -1;
}

int main(void)
{
	cairn_free(cairn_malloc(1)); /* the instance, with its first GiB */
	long before = resident();
	REQUIRE(before > 0);
	CHECK(cairn_aligned_alloc((size_t)1 << 40, 16) == NULL);
	void *p = (void *)1;
	CHECK(cairn_posix_memalign(&p, (size_t)1 << 45, 100) != 0);
	long after = resident();
	/* growing to 64 GiB makes about 4.5 MiB of metadata resident */
	CHECK(after - before < 256);
	printf("resident pages %ld -> %ld\n", before, after);
	/* and what memory can serve is still served */
	void *q = cairn_aligned_alloc(1u << 20, 100);
	CHECK(q && ((uintptr_t)q & ((1u << 20) - 1)) == 0);
	cairn_free(q);
	return check_done("shim_grow_test");
}
