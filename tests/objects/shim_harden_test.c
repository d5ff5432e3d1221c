/* SPDX-License-Identifier: MIT */
/*
 * The shim hardened (CAIRN_HARDEN=1, set before the instance is made): a
 * realloc of a freed object is refused and reported, whatever the size,
 * and the object is handed out once afterwards, not twice.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/host.h>

#include "../check.h"
#include "shim.h"

/* p (100 B, freed) realloc'd to `size`: NULL, reported once, and the
 * next allocations of its class hand p out once. */
static void freed_realloc(size_t size)
{
	unsigned char *p = cairn_malloc(100);
	REQUIRE(p);
	memset(p, 0x33, 100);
	cairn_free(p);
	uint64_t r = cairn_host_reports();
	void *q = cairn_realloc(p, size);
	CHECK(q == NULL);
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
	return check_done("shim_harden_test");
}
