/* SPDX-License-Identifier: MIT */
/*
 * A fork while another thread reallocs a huge block (a mapping of its
 * own, moved by mremap). The realloc marks the block's entry moving
 * before it moves the mapping and names the moved block after; a child
 * forked in between would have the entry marked for ever, its block
 * found by no free: the mapping leaked in the child, and a free of the
 * block as the child has it (not moved yet) reported as a pointer never
 * handed out. The child must find the block whole: at its old address
 * (not moved yet) or at the new one (moved), freed there without a
 * report.
 *
 * Fixed order, no timing (the shim's hook points): the realloc is held
 * with its entry marked, and let go only when the fork waits for it at
 * the fork gate. A fork that does not wait copies the entry marked.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/host.h>

#include "../check.h"
#include "hook.h"
#include "shim.h"

#define GIB ((size_t)1 << 30)
#define PAGE 4096ul
#define MARK 0x5a

static unsigned char *block;     /* the huge block the realloc moves */
static atomic_int held, let_go;

void cairn_shim_test_hook(enum cairn_shim_hook_point point, const void *what)
{
	if (point == CAIRN_SHIM_HOOK_HUGE_MOVING && what == block) {
		atomic_store(&held, 1);
		while (!atomic_load(&let_go))
			sched_yield();
	} else if (point == CAIRN_SHIM_HOOK_GATE_WAIT) {
		atomic_store(&let_go, 1); /* the fork waits for the realloc */
	}
}

/* The child leaves without the exit handlers: the sanitizers' would look
 * at threads of the parent, which the child does not have. */
static void child_exit(int code)
{
	syscall(SYS_exit_group, code);
	for (;;)
		;
}

static void *reallocer(void *arg)
{
	(void)arg;
	cairn_free(cairn_malloc(16)); /* a heap of its own: a slot */
	/* two pages more: the kernel may have to move the mapping */
	return cairn_realloc(block, GIB + 3 * PAGE);
}

/* The block as the fork left it, at `at` (old) or `moved` (new), whole
 * and freed without a report. 0, or which check failed. */
static int child_check(int fd)
{
	alarm(20);
	unsigned char *moved;
	if (read(fd, &moved, sizeof moved) != (ssize_t)sizeof moved)
		return 10;
	cairn_host_reports_quiet(1);
	unsigned char *b = cairn_malloc_usable_size(block) ? block
			   : cairn_malloc_usable_size(moved) ? moved : NULL;
	if (!b)
		return 1; /* found at neither address: lost to the child */
	if (cairn_malloc_usable_size(b) < GIB + PAGE || b[0] != MARK || b[GIB] != MARK)
		return 2;
	uint64_t reports = cairn_host_reports();
	cairn_free(b);
	if (cairn_host_reports() != reports)
		return 3;
	return 0;
}

static void test_fork_while_moving(void)
{
	block = cairn_malloc(GIB + PAGE);
	REQUIRE(block);
	block[0] = block[GIB] = MARK;
	int fds[2];
	REQUIRE(pipe(fds) == 0);
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, reallocer, NULL) == 0);
	while (!atomic_load(&held))
		sched_yield();
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		child_exit(child_check(fds[0]));
	atomic_store(&let_go, 1);
	void *moved;
	pthread_join(t, &moved);
	REQUIRE(moved);
	REQUIRE(write(fds[1], &moved, sizeof moved) == (ssize_t)sizeof moved);
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st))
		fprintf(stderr, "child killed by signal %d\n", WTERMSIG(st));
	else if (WEXITSTATUS(st))
		fprintf(stderr, "child: check %d failed (1: the block found at neither address)\n",
			WEXITSTATUS(st));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ(((unsigned char *)moved)[0], MARK);
	cairn_free(moved);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	cairn_free(cairn_malloc(16)); /* the instance made, main's heap */
	test_fork_while_moving();
	return check_done("shim_huge_fork_test");
}
