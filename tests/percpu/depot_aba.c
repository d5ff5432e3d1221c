/* SPDX-License-Identifier: MIT */
/*
 * The depot stack's ABA, made to happen in a fixed order.
 *
 * A pop reads the head (top A) and A's link (B), and stalls before its CAS
 * (the test's hook parks it there: this file is built with
 * CAIRN_PERCPU_TEST_HOOK). Meanwhile another CPU pops A, pops B, pushes D
 * (a magazine from elsewhere) and pushes A back: the head's top and count
 * are as the stalled pop read them, and only the tag tells that the stack
 * changed under it. Let go, the stalled pop must fail its CAS and take A
 * again from the new head; a CAS that succeeded would install B, which
 * the other CPU holds, as the top and lose D: B held twice, D nowhere.
 *
 * Also with A pushed back at once (pop A, pop B, push A): there the count
 * differs already, so the count alone fails the stale CAS.
 *
 * Expected, both ways: every id exactly once, in the stack or in one
 * holder's hands, and the count the stack's length.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "../../percpu/depot.h"

#ifndef CAIRN_PERCPU_TEST_HOOK
#error "built with the depot's hook point"
#endif

enum { A, B, C, D, NIDS };

static struct depot_stack st = { .limit = NIDS };
static _Atomic uint32_t next[NIDS];

static _Thread_local bool parker; /* the thread to stall */
static atomic_uint stalls;
static sem_t parked, go;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	if (at != CAIRN_HOOK_DEPOT_POP || obj != &st || !parker)
		return;
	parker = false; /* once: the retry runs through */
	atomic_fetch_add(&stalls, 1);
	sem_post(&parked);
	sem_wait(&go);
}

static void *stalled_pop(void *arg)
{
	parker = true;
	*(uint32_t *)arg = ds_pop(&st, next);
	return NULL;
}

static void race(bool four)
{
	/* A on top of B on top of C; D held by this thread. */
	atomic_store(&st.head, 0);
	REQUIRE(ds_push(&st, next, C) && ds_push(&st, next, B) && ds_push(&st, next, A));
	uint64_t before = atomic_load(&st.head);
	atomic_store(&stalls, 0);

	uint32_t got = DEPOT_NONE;
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, stalled_pop, &got) == 0);
	sem_wait(&parked); /* it read top A and A's link, B */
	CHECK_EQ(atomic_load(&st.head), before);

	uint32_t a = ds_pop(&st, next), b = ds_pop(&st, next);
	CHECK_EQ(a, A);
	CHECK_EQ(b, B);
	if (four)
		CHECK(ds_push(&st, next, D));
	CHECK(ds_push(&st, next, A));
	uint64_t now = atomic_load(&st.head);
	/* the window is what we meant: same top, and the count the same
	 * exactly when D went in */
	CHECK_EQ(ds_top(now), ds_top(before));
	CHECK_EQ(ds_count(now) == ds_count(before), four);

	sem_post(&go);
	pthread_join(t, NULL);
	CHECK_EQ(atomic_load(&stalls), 1);
	CHECK_EQ(got, A);

	/* Every id once: in the stack, held by this thread (B, and D unless
	 * pushed), or taken by the stalled pop. */
	unsigned seen[NIDS];
	memset(seen, 0, sizeof(seen));
	uint32_t count = ds_size(&st), len = 0, id;
	while (len <= NIDS && (id = ds_pop(&st, next)) != DEPOT_NONE) {
		REQUIRE(id < NIDS);
		seen[id]++;
		len++;
	}
	CHECK_EQ(len, count);
	seen[B]++;
	if (!four)
		seen[D]++;
	if (got < NIDS)
		seen[got]++;
	for (unsigned i = 0; i < NIDS; i++)
		if (seen[i] != 1) {
			fprintf(stderr, "%s: id %u held %u times\n",
				four ? "four steps" : "three steps", i, seen[i]);
			CHECK_EQ(seen[i], 1);
		}
}

int main(void)
{
	alarm(20); /* a pop that never came back */
	REQUIRE(sem_init(&parked, 0, 0) == 0);
	REQUIRE(sem_init(&go, 0, 0) == 0);
	race(false);
	race(true);
	return check_done("depot_aba");
}
