/* SPDX-License-Identifier: MIT */
/* A random pause for the tree's test yield hook: yield or spin now and
 * then, so that two cores reach more interleavings. */
#ifndef CAIRN_TEST_BTREE_YIELD_H
#define CAIRN_TEST_BTREE_YIELD_H

#include <sched.h>
#include <stdint.h>

static inline void random_yield(uint64_t *seed)
{
	uint64_t z = (*seed += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z ^= z >> 27;
	if ((z & 7) == 0)
		sched_yield();
	else if ((z & 7) == 1)
		for (volatile unsigned i = 0; i < (z >> 8) % 200; i++)
			;
}

#endif
