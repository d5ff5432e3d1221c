/* SPDX-License-Identifier: MIT */
/*
 * A program whose first allocation comes from inside pthread_atfork: glibc
 * grows its list of fork handlers with malloc while it holds the lock of
 * that list, so under LD_PRELOAD the shim makes its instance there, and
 * must not register its own fork handlers then (the same lock: the
 * program hung). Nothing is allocated before the registrations; then a
 * fork, whose child allocates, runs every handler. A hang ends with the
 * alarm. Built without the shim (preload.sh runs it under LD_PRELOAD).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int prepared, parented, childed;
static void prepare(void) { prepared++; }
static void parent(void) { parented++; }
static void child(void) { childed++; }

int main(void)
{
	alarm(10);
	for (int i = 0; i < 64; i++)
		if (pthread_atfork(prepare, parent, child))
			return 1;
	pid_t pid = fork();
	if (pid == 0) {
		char *p = malloc(100000);
		if (!p)
			_exit(2);
		memset(p, 1, 100000);
		free(p);
		_exit(childed == 64 ? 0 : 3);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 4;
	printf("handlers: %d %d, child %d\n", prepared, parented, WEXITSTATUS(st));
	return 0;
}
