/* SPDX-License-Identifier: MIT */
/* The tree's test yield hook (CAIRN_BTREE_TEST_YIELD builds): yield or spin
 * at random, so that two cores reach more interleavings. */
#include <sched.h>
#include <stdint.h>

void cairn_btree_test_yield(void);

static _Thread_local uint64_t yseed;

void cairn_btree_test_yield(void)
{
	uint64_t z = (yseed += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z ^= z >> 27;
	if ((z & 7) == 0)
		sched_yield();
	else if ((z & 7) == 1)
		for (volatile unsigned i = 0; i < (z >> 8) % 200; i++)
			;
}
