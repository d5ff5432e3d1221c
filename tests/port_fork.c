/* SPDX-License-Identifier: MIT */
/*
 * The host port across a fork. A slot lent to a drain
 * (cairn_port_cpu_borrow) while another thread forks: the drain is a
 * thread the child does not have, so no giveback ever comes there, and a
 * bind to the slot in the child would wait for ever. The child must find
 * the slot free: bind takes it, and a drain may borrow every other free
 * slot.
 *
 * Fixed order, no timing: the lender holds its slot until the fork is
 * under way or done. It sees a fork under way only when lending is closed
 * (a borrow of a slot no one holds fails), so if the fork never closes it,
 * the slot is held across the fork. A child's bind that waits for ever is
 * ended by its alarm, and the parent sees the child killed. A child that
 * takes the slot must find the drain's work whole: freeing a slot copied
 * lent would hand the next thread what a drain left half done.
 *
 * And a fork from inside a drain: the forking thread's own lent slot is
 * not waited for (its giveback comes after the fork, from that thread),
 * and stays lent to it in the child.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/error.h>
#include <cairn/host.h>
#include <cairn/port.h>

#include "check.h"

#define NCPUS 4
#define LENT 1  /* the slot the drain holds across the fork */
#define PROBE 2 /* a free slot the lender borrows to see a fork begin */
#define OWN 3   /* a slot the forking thread holds lent */

/* The lender's "drain": done is set by the lender just before its
 * giveback, as a drain's answer is whole before the slot comes back. */
static atomic_int lent, forked, done;

/* The child leaves without the exit handlers: the sanitizers' would look
 * at threads of the parent, which the child does not have. */
static void child_exit(int code)
{
	syscall(SYS_exit_group, code);
	for (;;)
		;
}

static void *lender(void *arg)
{
	(void)arg;
	REQUIRE(cairn_port_cpu_borrow(LENT) == 1);
	atomic_store(&lent, 1);
	while (!atomic_load(&forked)) {
		if (cairn_port_cpu_borrow(PROBE) != 1)
			break; /* lending closed: a fork waits for our slot */
		cairn_port_cpu_giveback(PROBE);
		sched_yield();
	}
	atomic_store(&done, 1);
	cairn_port_cpu_giveback(LENT);
	return NULL;
}

/* In the child: the lent slot is free, and lending is open again. */
static int child_lent(void)
{
	alarm(10); /* a bind waiting for a giveback that never comes */
	cairn_host_cpu_unregister(); /* (the forking thread's slot) */
	if (cairn_host_cpu_bind(LENT) != 0 || cairn_port_cpu() != LENT)
		return 1;
	if (!atomic_load(&done))
		return 3; /* the slot freed with its drain half done */
	if (cairn_port_cpu_borrow(PROBE) != 1)
		return 2;
	cairn_port_cpu_giveback(PROBE);
	return 0;
}

/* What a child did: 0 for an exit with 0, else a line saying what. */
static int child_status(pid_t pid, const char *what)
{
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		fprintf(stderr, "%s: child killed by signal %d%s\n", what, WTERMSIG(st),
			WTERMSIG(st) == SIGALRM ? " (it waited for ever)" : "");
	else
		fprintf(stderr, "%s: child exited with %d\n", what, WEXITSTATUS(st));
	return 1;
}

/* A drain holds a slot while the main thread forks. */
static void test_lent_across_fork(void)
{
	pthread_t t;
	atomic_store(&lent, 0);
	atomic_store(&forked, 0);
	atomic_store(&done, 0);
	REQUIRE(pthread_create(&t, NULL, lender, NULL) == 0);
	while (!atomic_load(&lent))
		sched_yield();
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		child_exit(child_lent());
	atomic_store(&forked, 1);
	pthread_join(t, NULL);
	CHECK_EQ(child_status(pid, "lent across a fork"), 0);
	/* and in the parent, the slot came back */
	CHECK_EQ(cairn_port_cpu_borrow(LENT), 1);
	cairn_port_cpu_giveback(LENT);
}

/* In the child of a fork from inside a drain: the slot is still lent to
 * this thread (another borrow of it is CAIRN_EBUSY), and its giveback
 * frees it. */
static int child_own(void)
{
	alarm(10);
	if (cairn_port_cpu_borrow(OWN) != CAIRN_EBUSY)
		return 1; /* lent to no one any more */
	cairn_port_cpu_giveback(OWN);
	if (cairn_port_cpu_borrow(OWN) != 1)
		return 2;
	cairn_port_cpu_giveback(OWN);
	return 0;
}

/* A fork from inside a drain (a source's put, a signal handler): the
 * fork must not wait for the forking thread's own lent slot, whose
 * giveback comes after the fork. */
static void test_own_lent_fork(void)
{
	REQUIRE(cairn_port_cpu_borrow(OWN) == 1);
	alarm(20); /* a fork waiting for its own thread */
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		child_exit(child_own());
	alarm(0);
	cairn_port_cpu_giveback(OWN);
	CHECK_EQ(child_status(pid, "own lent slot across a fork"), 0);
}

int main(void)
{
	REQUIRE(cairn_host_init_private(NCPUS, 0, 16ull << 20) == 0);
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	test_lent_across_fork();
	test_own_lent_fork();
	return check_done("port_fork");
}
