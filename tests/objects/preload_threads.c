/* SPDX-License-Identifier: MIT */
/*
 * Run under LD_PRELOAD by preload.sh (built without the shim, so glibc's
 * own calls reach it too), printing what it prints on glibc:
 *
 * - allocations in a constructor, before main;
 * - dlopen, dlsym and dlerror, which allocate in the loader;
 * - posix_spawn and vfork;
 * - bursts of detached threads that never allocate. glibc frees the
 *   stacks of exited threads from an exiting detached thread, after its
 *   key destructors ran: that free is the thread's first call, takes a
 *   slot, and sets the shim's key too late for its destructor. With
 *   those slots kept, two threads after 2400 such threads shared one
 *   heap (their objects came from one slab); two threads must get two.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static unsigned char *early;

__attribute__((constructor(101))) static void before_main(void)
{
	early = calloc(10, 100);
	free(malloc(5));
}

static int loader(void)
{
	int bad = 0;
	for (int i = 0; i < 20; i++) {
		void *h = dlopen("libm.so.6", RTLD_NOW);
		if (!h)
			return 1;
		double (*cosine)(double) = (double (*)(double))dlsym(h, "cos");
		bad |= !cosine || cosine(0.0) != 1.0;
		bad |= dlsym(h, "no_such_symbol") != NULL || dlerror() == NULL;
		dlclose(h);
	}
	return bad;
}

static int spawn(void)
{
	char *argv[] = { "true", NULL };
	pid_t pid;
	int st1 = -1, st2 = -1;
	if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) == 0)
		waitpid(pid, &st1, 0);
	pid = vfork();
	if (pid == 0) {
		execve("/bin/true", argv, environ);
		_exit(127);
	}
	waitpid(pid, &st2, 0);
	return st1 != 0 || st2 != 0;
}

static atomic_int exited;
static pthread_barrier_t burst_start;

/* All 20 alive at once, so that their stacks overflow glibc's cache of
 * stacks as they exit and the last ones out free the others'. */
static void *idle(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&burst_start);
	atomic_fetch_add(&exited, 1);
	return NULL;
}

static pthread_barrier_t both;

static void *one_object(void *arg)
{
	*(void **)arg = malloc(100);
	pthread_barrier_wait(&both); /* both alive: two heaps, or the shared one */
	return NULL;
}

/* Two live threads' first objects of 100 bytes: in one 64 KiB block (one
 * slab of the class: one heap), three times in a row? */
static int shared_heap(void)
{
	int same = 0;
	for (int round = 0; round < 3; round++) {
		void *p[2];
		pthread_t t[2];
		pthread_barrier_init(&both, NULL, 2);
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, one_object, &p[i]);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&both);
		same += (uintptr_t)p[0] >> 16 == (uintptr_t)p[1] >> 16;
		free(p[0]);
		free(p[1]);
	}
	return same == 3;
}

int main(void)
{
	int bad = early == NULL;
	for (int i = 0; i < 1000 && early; i++)
		bad |= early[i] != 0;
	free(early);
	bad |= loader();
	bad |= spawn();
	void *m = memalign(24, 100);
	bad |= m == NULL || ((uintptr_t)m & 31);
	free(m);
	printf("constructor, loader, spawn, memalign: %s\n", bad ? "failed" : "ok");

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int burst = 0; burst < 120; burst++) {
		atomic_store(&exited, 0);
		pthread_barrier_init(&burst_start, NULL, 21);
		for (int i = 0; i < 20; i++) {
			pthread_t t;
			if (pthread_create(&t, &attr, idle, NULL))
				return 1;
		}
		pthread_barrier_wait(&burst_start);
		while (atomic_load(&exited) < 20)
			usleep(100);
		usleep(5000); /* and out of the kernel */
		pthread_barrier_destroy(&burst_start);
	}
	pthread_attr_destroy(&attr);
	printf("after 2400 detached threads, two threads share a heap: %s\n",
	       shared_heap() ? "yes" : "no");
	return 0;
}
