/* SPDX-License-Identifier: MIT */
/*
 * Hook points for the malloc shim's fork tests: a build that defines
 * CAIRN_SHIM_TEST_HOOK calls cairn_shim_test_hook() at each point below,
 * so that a test can hold a thread exactly there while another forks,
 * and let it go on when the fork waits for it. The hook has one
 * definition, in the test program; shipped builds compile it away.
 */
#ifndef CAIRN_SHIM_HOOK_H
#define CAIRN_SHIM_HOOK_H

enum cairn_shim_hook_point {
	/* huge_realloc: the block's entry marked moving, its mapping not
	 * yet moved (the block) */
	CAIRN_SHIM_HOOK_HUGE_MOVING,
	/* atfork_prepare: the gate closed, a thread found inside it, at
	 * every turn of the wait (the thread's flag) */
	CAIRN_SHIM_HOOK_GATE_WAIT,
};

#ifdef CAIRN_SHIM_TEST_HOOK
void cairn_shim_test_hook(enum cairn_shim_hook_point point, const void *what);
#define CAIRN_SHIM_HOOK(point, what) cairn_shim_test_hook(point, what)
#else
#define CAIRN_SHIM_HOOK(point, what) ((void)0)
#endif

#endif
