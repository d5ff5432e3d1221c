/* SPDX-License-Identifier: MIT */
/*
 * Fork while another thread makes the shim's instance. The child's copy
 * of the shim's state says "being made", by a thread the child does not
 * have: its calls must not wait for it for ever.
 *
 * The instance is made once per process, so every round is a new process
 * (a child of this one, which never calls the shim): a thread there makes
 * the instance with its first call while the process's main thread forks,
 * at a delay that moves with the round; the grandchild allocates under an
 * alarm. Not deterministic: the delay sweeps the making's window, and
 * any grandchild that hangs fails the test. Not under TSan (see
 * tests/objects/meson.build).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/port.h>

#include "../check.h"
#include "shim.h"

static atomic_int started;

static void *maker(void *arg)
{
	(void)arg;
	atomic_store(&started, 1);
	void *p = cairn_malloc(16); /* the process's first call: makes the instance */
	cairn_free(p);
	return p;
}

/* The grandchild: its first call after a fork in the middle of making. */
static int grandchild(void)
{
	alarm(10);
	void *p = cairn_malloc(100);
	if (!p)
		return 2;
	cairn_free(p);
	return 0;
}

/* One round: 0, or 1 when the grandchild failed (hung: killed by the
 * alarm), 3 when the round could not run. */
static int round_run(unsigned delay)
{
	pthread_t t;
	if (pthread_create(&t, NULL, maker, NULL))
		return 3;
	while (!atomic_load(&started))
		;
	for (unsigned i = 0; i < delay; i++)
		cairn_port_pause();
	pid_t pid = fork();
	if (pid < 0)
		return 3;
	if (pid == 0)
		_exit(grandchild());
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return 3;
	void *r;
	pthread_join(t, &r);
	if (!r)
		return 3;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 200;
	unsigned hung = 0, broken = 0;
	for (unsigned r = 0; r < rounds && hung < 3; r++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(round_run(r * 37 % 4000));
		int status;
		REQUIRE(waitpid(pid, &status, 0) == pid);
		int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
		hung += rc == 1;
		broken += rc == 3;
	}
	printf("fork while making the instance: %u rounds, %u children hung, %u rounds broken\n",
	       rounds, hung, broken);
	CHECK_EQ(hung, 0);
	CHECK_EQ(broken, 0);
	return check_done("shim_init_fork_test");
}
