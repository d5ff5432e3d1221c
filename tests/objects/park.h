/* SPDX-License-Identifier: MIT */
/* Fixed-order tests against the library built with the hook points: one
 * thread parks at a hook point while the test acts, through `stage`. */
#ifndef CAIRN_TEST_PARK_H
#define CAIRN_TEST_PARK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../../percpu/hook.h"

static atomic_int stage;

static inline void wait_stage(int s)
{
	while (atomic_load(&stage) != s)
		sched_yield();
}

/* The first time the hook is at `want` for `want_obj` (stage 0): say so
 * (stage 1) and wait until the test lets it go (stage 2). True if it did. */
static inline bool park_once(enum cairn_percpu_hook_point at, void *obj,
			     enum cairn_percpu_hook_point want, void *want_obj)
{
	if (at != want || obj != want_obj || atomic_load(&stage) != 0)
		return false;
	atomic_store(&stage, 1);
	wait_stage(2);
	return true;
}

#endif
