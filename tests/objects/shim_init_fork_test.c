/* SPDX-License-Identifier: MIT */
/*
 * Fork while another thread makes the shim's instance. The child's copy
 * of the shim's state says "being made", by a thread the child does not
 * have: its calls must not wait for it for ever.
 *
 * The instance is made once per process, so every round is a new process
 * (this program again, started by posix_spawn, which runs no fork
 * handlers: a fork would run the shim's in this process): a thread there
 * makes the instance with its first call while the process's main thread
 * forks, at a delay that moves with the round; the grandchild allocates
 * under an alarm. Two ways to meet the making:
 *  - early: the main thread waits the delay, then forks;
 *  - late: the main thread forks at once, and a prepare handler of this
 *    program's, registered before the shim's and so run after it, lets
 *    the maker go and waits the delay: the shim's own prepare handler has
 *    run by then, and the making meets the fork itself.
 * Not deterministic: the delay sweeps the making's window, and any
 * grandchild that hangs fails the test. Not under TSan (see
 * tests/objects/meson.build).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/port.h>

#include "../check.h"
#include "shim.h"

extern char **environ;

static atomic_int started;
static atomic_int go;     /* late: the prepare handler lets the maker start */
static int late;          /* this round meets the making late */
static unsigned delay;    /* pauses before the fork */

static void *maker(void *arg)
{
	(void)arg;
	atomic_store(&started, 1);
	while (late && !atomic_load(&go))
		;
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

static void late_prepare(void)
{
	if (!late || atomic_load(&go))
		return;
	atomic_store(&go, 1);
	for (unsigned i = 0; i < delay; i++)
		cairn_port_pause();
}

/* Before the shim's constructor registers its handlers. */
__attribute__((constructor(101))) static void register_late(void)
{
	pthread_atfork(late_prepare, NULL, NULL);
}

/* One round: 0, or 1 when the grandchild failed (hung: killed by the
 * alarm), 3 when the round could not run. */
static int round_run(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, maker, NULL))
		return 3;
	while (!atomic_load(&started))
		;
	for (unsigned i = 0; !late && i < delay; i++)
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
	if (argc == 4 && !strcmp(argv[1], "--round")) {
		late = !strcmp(argv[2], "late");
		delay = (unsigned)atoi(argv[3]);
		return round_run();
	}
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 200;
	unsigned hung[2] = {0, 0}, broken = 0, r;
	for (r = 0; r < rounds && hung[0] + hung[1] < 3; r++) {
		char d[16];
		snprintf(d, sizeof(d), "%u", r / 2 * 37 % 4000);
		char *args[] = {argv[0], "--round", r % 2 ? "late" : "early", d, NULL};
		pid_t pid;
		REQUIRE(posix_spawn(&pid, argv[0], NULL, NULL, args, environ) == 0);
		int status;
		REQUIRE(waitpid(pid, &status, 0) == pid);
		int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
		hung[r % 2] += rc == 1;
		broken += rc == 3;
	}
	printf("fork while making the instance: %u of %u rounds, children hung: %u early, "
	       "%u late; %u rounds broken\n",
	       r, rounds, hung[0], hung[1], broken);
	CHECK_EQ(hung[0], 0);
	CHECK_EQ(hung[1], 0);
	CHECK_EQ(broken, 0);
	return check_done("shim_init_fork_test");
}
