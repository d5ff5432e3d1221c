/* SPDX-License-Identifier: MIT */
/* The tree's test yield hook (CAIRN_BTREE_TEST_YIELD builds): yield or spin
 * at random, so that two cores reach more interleavings. */
#include "yield.h"

void cairn_btree_test_yield(void);

static _Thread_local uint64_t yseed;

void cairn_btree_test_yield(void)
{
	random_yield(&yseed);
}
