/* SPDX-License-Identifier: MIT */
/*
 * Two CPUs in a fixed order, for the tests built with the frames hook
 * points (CAIRN_FRAMES_TEST_HOOK). The main thread is CPU 0; CPU 1 is a
 * thread that runs one action at a time on command (on_cpu1). arm() holds
 * CPU 0 once at a hook point (on one object, or on any when obj is NULL)
 * while CPU 1 runs an action, then lets it go on. One test program
 * includes this once: it defines the hook.
 */
#ifndef CAIRN_TEST_FRAMES_HOLD_H
#define CAIRN_TEST_FRAMES_HOLD_H

#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../core/hook.h"
#include "check.h"

#ifndef CAIRN_FRAMES_TEST_HOOK
#error "built with the frames hook points"
#endif

/* ---- CPU 1: runs one action at a time, on command ---- */

static void (*action)(void);
static _Atomic unsigned posted, done_; /* command numbers */
static _Atomic bool quit;
static pthread_t cpu1_thread;

static void *cpu1(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	for (unsigned n = 1;; n++) {
		while (atomic_load_explicit(&posted, memory_order_acquire) != n)
			if (atomic_load_explicit(&quit, memory_order_acquire))
				goto out;
			else
				sched_yield();
		action();
		atomic_store_explicit(&done_, n, memory_order_release);
	}
out:
	cairn_host_cpu_unregister();
	return NULL;
}

static void on_cpu1(void (*fn)(void))
{
	action = fn;
	unsigned n = atomic_fetch_add_explicit(&posted, 1, memory_order_acq_rel) + 1;
	while (atomic_load_explicit(&done_, memory_order_acquire) != n)
		sched_yield();
}

/* ---- the hook: CPU 0 held at `armed_at` (on `armed_obj`, if set) ---- */

static _Thread_local bool cpu0;
static enum cairn_frames_hook_point armed_at;
static void *armed_obj;
static bool armed;
static void (*at_hook)(void);
static unsigned fired;

void cairn_frames_test_hook(enum cairn_frames_hook_point at, void *obj)
{
	if (!cpu0 || !armed || at != armed_at || (armed_obj && obj != armed_obj))
		return;
	armed = false;
	fired++;
	on_cpu1(at_hook);
}

static void arm(enum cairn_frames_hook_point at, void *obj, void (*fn)(void))
{
	armed_at = at;
	armed_obj = obj;
	at_hook = fn;
	armed = true;
}

/* The calling thread becomes CPU 0, and CPU 1 starts. */
static void hold_start(void)
{
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	cpu0 = true;
	REQUIRE(pthread_create(&cpu1_thread, NULL, cpu1, NULL) == 0);
}

static void hold_stop(void)
{
	atomic_store_explicit(&quit, true, memory_order_release);
	pthread_join(cpu1_thread, NULL);
}

#endif /* CAIRN_TEST_FRAMES_HOLD_H */
