/* SPDX-License-Identifier: MIT */
/*
 * Fork while another thread posts remote frees to the forking thread's
 * heap. A post is an exchange of the heap's queue head, then a store that
 * links the message behind the one before it; a child forked between the
 * two has a queue with a link that nobody will ever write. The child's
 * main thread then exits, which takes its heap offline, and going offline
 * waits for every link a producer owes (as it must while producers run):
 * in the child, for ever.
 *
 * Not deterministic: the test makes a post of every remote free and forks
 * until `forks` children have exited or one hangs. Each child forks once
 * more before it exits (its prepare handler waits for no flag a thread
 * of the parent left set).
 *
 * First, a fork handler that runs after the shim's (the gate closed and
 * the shim's locks held) and frees, and allocates enough to make the
 * instance grow: the forking thread passes its own gate and takes no
 * lock it already holds (deterministic).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "shim.h"

#define N 65536
#define SLOTS 16 /* a heap's batches are kept by destination CPU mod 16 */
static void *objs[N];
static atomic_int round_go, round_done, made_other, slots_taken, stop;

/* Takes the next CPU slot and keeps it; the last of them (slot 16, the
 * batch slot of main's heap) allocates every other object of a round. */
static void *holder(void *arg)
{
	int other = arg != NULL;
	cairn_free(cairn_malloc(16));
	atomic_fetch_add(&slots_taken, 1);
	for (int seen = 0; !atomic_load(&stop);) {
		int r = atomic_load(&round_go);
		if (!other || r == seen) {
			sched_yield();
			continue;
		}
		seen = r;
		for (unsigned i = 1; i < N; i += 2)
			if (!(objs[i] = cairn_malloc(16)))
				abort();
		atomic_store(&made_other, r);
	}
	return NULL;
}

/* Frees every object of a round, alternately main's and slot 16's: each
 * free finds the batch slot holding the other heap's batch and posts it,
 * so there is a post per free. */
static void *freer(void *arg)
{
	(void)arg;
	cairn_free(cairn_malloc(16));
	atomic_fetch_add(&slots_taken, 1);
	for (int seen = 0;;) {
		int r;
		while ((r = atomic_load(&made_other)) == seen && !atomic_load(&stop))
			sched_yield();
		if (r == seen)
			return NULL;
		seen = r;
		for (unsigned i = 0; i < N; i++)
			cairn_free(objs[i]); /* remote, one post each */
		atomic_store(&round_done, r);
	}
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	int before = atomic_load(&slots_taken);
	pthread_create(t, NULL, fn, arg);
	while (atomic_load(&slots_taken) == before)
		sched_yield(); /* slots go lowest first: take them in order */
}

/* A fork handler registered before the shim's (so run after it, with the
 * gate closed) that frees: a batch of another thread's objects, whose
 * last free posts it, and a one-page large object, which goes back to the
 * arena. The forking thread must pass its own gate. */
#define EARLY_OBJS 64
static void *early_objs[EARLY_OBJS], *early_large;

static int early_grow;

static void early_prepare(void)
{
	/* Large enough that the instance must grow: the shim's prepare
	 * handler holds the lock that growth takes. */
	if (early_grow) {
		void *big[3];
		for (unsigned i = 0; i < 3; i++)
			REQUIRE((big[i] = cairn_malloc(400u << 20)));
		for (unsigned i = 0; i < 3; i++)
			cairn_free(big[i]);
		early_grow = 0;
	}
	for (unsigned i = 0; i < EARLY_OBJS; i++)
		cairn_free(early_objs[i]);
	cairn_free(early_large);
	early_large = NULL;
	for (unsigned i = 0; i < EARLY_OBJS; i++)
		early_objs[i] = NULL;
}

static void *early_alloc(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < EARLY_OBJS; i++)
		REQUIRE((early_objs[i] = cairn_malloc(32)));
	return NULL;
}

static void test_early_handler(void)
{
	cairn_free(cairn_malloc(16)); /* the shim made, slot 0 ours */
	pthread_t t;
	pthread_create(&t, NULL, early_alloc, NULL);
	pthread_join(t, NULL);
	REQUIRE((early_large = cairn_aligned_alloc(1u << 20, 100)));
	early_grow = 1;
	alarm(30); /* the forking thread waiting at its own gate hangs here */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(0);
	int status;
	waitpid(pid, &status, 0);
	alarm(0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(early_large == NULL);
	CHECK(early_grow == 0);
}

/* Before the shim's, which it registers at load: so it runs after the
 * shim's prepare handler. */
__attribute__((constructor(101))) static void early_register(void)
{
	pthread_atfork(early_prepare, NULL, NULL);
}

int main(int argc, char **argv)
{
	test_early_handler();
	unsigned forks = argc > 1 ? (unsigned)atoi(argv[1]) : 1000, made = 0, hung = 0;
	cairn_free(cairn_malloc(16)); /* slot 0 */
	pthread_t t[SLOTS + 1];
	start(&t[0], freer, NULL); /* slot 1 */
	for (unsigned i = 1; i < SLOTS; i++) /* slots 2 .. 16 */
		start(&t[i], holder, i == SLOTS - 1 ? (void *)1 : NULL);
	for (int r = 1; made < forks && !hung; r++) {
		for (unsigned i = 0; i < N; i += 2)
			REQUIRE((objs[i] = cairn_malloc(16)));
		atomic_store(&round_go, r);
		while (atomic_load(&round_done) != r && made < forks && !hung) {
			if (atomic_load(&made_other) != r)
				continue;
			pid_t pid = fork();
			REQUIRE(pid >= 0);
			if (pid == 0) {
				alarm(10); /* a link owed by a thread the child lacks */
				/* The child forks too: it waits at its gate for
				 * no flag of a thread it does not have. */
				pid_t g = fork();
				if (g == 0)
					_exit(0);
				if (g < 0 || waitpid(g, NULL, 0) != g)
					_exit(1);
				pthread_exit(NULL); /* the heap goes offline; then exit(0) */
			}
			int status;
			waitpid(pid, &status, 0);
			made++;
			hung += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		}
		while (atomic_load(&round_done) != r)
			sched_yield();
	}
	atomic_store(&stop, 1);
	for (unsigned i = 0; i < SLOTS; i++)
		pthread_join(t[i], NULL);
	printf("fork while posting: %u forks, %u children hung\n", made, hung);
	CHECK_EQ(hung, 0);
	return check_done("shim_fork_test");
}
