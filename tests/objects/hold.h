/* SPDX-License-Identifier: MIT */
/* Fixed-order tests against the library built with the hook points, with
 * several CPUs held at once: each hold names a hook point and its object;
 * the first time a CPU reaches it (while armed) it says so and waits until
 * the test lets it go. */
#ifndef CAIRN_TEST_HOLD_H
#define CAIRN_TEST_HOLD_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "../../percpu/hook.h"

#define HOLD_MAX 4

static struct {
	enum cairn_percpu_hook_point at;
	void *obj;
	atomic_int reached, released;
} holds[HOLD_MAX];
static unsigned nholds;
static atomic_bool holds_armed;

static inline void holds_reset(void)
{
	atomic_store(&holds_armed, false);
	memset(holds, 0, sizeof(holds));
	nholds = 0;
}

/* A hold at (at, obj); its index. Before holds_arm. */
static inline unsigned hold_add(enum cairn_percpu_hook_point at, void *obj)
{
	holds[nholds].at = at;
	holds[nholds].obj = obj;
	return nholds++;
}

static inline void holds_arm(void)
{
	atomic_store(&holds_armed, true);
}

static inline void holds_disarm(void)
{
	atomic_store(&holds_armed, false);
}

/* The test program's cairn_percpu_test_hook calls this. */
static inline void hold_at(enum cairn_percpu_hook_point at, void *obj)
{
	if (!atomic_load(&holds_armed))
		return;
	for (unsigned i = 0; i < nholds; i++) {
		if (holds[i].at != at || holds[i].obj != obj || atomic_exchange(&holds[i].reached, 1))
			continue;
		while (!atomic_load(&holds[i].released))
			sched_yield();
		return;
	}
}

static inline bool hold_reached(unsigned i)
{
	return atomic_load(&holds[i].reached);
}

static inline void hold_wait(unsigned i)
{
	while (!hold_reached(i))
		sched_yield();
}

/* Is *flag set within ms milliseconds? */
static inline bool flag_within(atomic_int *flag, unsigned ms)
{
	for (unsigned t = 0; t < ms && !atomic_load(flag); t++)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	return atomic_load(flag);
}

static inline void hold_let_go(unsigned i)
{
	atomic_store(&holds[i].released, 1);
}

#endif
