/* SPDX-License-Identifier: MIT */
/*
 * The shim with no instance: the host port is taken first, so the shim
 * cannot make its own (EEXIST) and serves every request from its bootstrap
 * buffer, as it does while the instance is being made. Aligned requests
 * must be aligned as addresses, whatever the buffer's own alignment, and
 * sizes beyond the buffer refused (not wrapped by the rounding).
 */
#include <stdint.h>

#include <cairn/host.h>

#include "../check.h"
#include "shim.h"

int main(void)
{
	REQUIRE(cairn_host_init(1, 0, 16u << 20) == 0);
	for (size_t align = 16; align <= (256u << 10); align <<= 1) {
		void *p = cairn_aligned_alloc(align, 100);
		REQUIRE(p);
		CHECK(((uintptr_t)p & (align - 1)) == 0);
		CHECK(cairn_malloc_usable_size(p) >= 100);
		cairn_free(p); /* ignored: bootstrap blocks are never reused */
	}
	void *q = NULL;
	CHECK_EQ(cairn_posix_memalign(&q, 8192, 10), 0);
	CHECK(q && ((uintptr_t)q & 8191) == 0);
	/* sizes no buffer holds, rounding included */
	CHECK(cairn_malloc(SIZE_MAX) == NULL);
	CHECK(cairn_malloc(SIZE_MAX - 8) == NULL);
	CHECK(cairn_aligned_alloc(64, SIZE_MAX) == NULL);
	CHECK(cairn_aligned_alloc((size_t)1 << 40, 16) == NULL);
	CHECK(cairn_shim_objects() == NULL);
	return check_done("shim_boot_test");
}
