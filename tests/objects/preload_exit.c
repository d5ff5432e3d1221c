/* SPDX-License-Identifier: MIT */
/*
 * Run under LD_PRELOAD by preload.sh (built without the shim), printing
 * what it prints on glibc: allocations where a thread's heap is gone.
 *
 * - Detached threads whose pthread key destructor allocates, small and
 *   large, and sets its key again for two more rounds: the rounds after
 *   the shim's own destructor took the thread's heap offline. Each leaves
 *   objects for later.
 * - main leaves with pthread_exit, so the last thread out runs exit(),
 *   and the atexit handler runs on a thread past its destructors: it
 *   allocates, checks and frees what every departed thread left.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 64
#define LEFT 24

static void *left[THREADS][3][LEFT];
static pthread_key_t key;
static atomic_int bad;

static size_t left_size(unsigned i)
{
	return i % 8 ? 24 + i * 40 : 70000 + i * 4096;
}

/* value: (thread + 1) << 2 | round */
static void destructor(void *value)
{
	uintptr_t v = (uintptr_t)value;
	unsigned me = (unsigned)(v >> 2) - 1, round = v & 3;
	unsigned char *big = malloc(300000);
	char *s = strdup("a destructor");
	if (!big || !s)
		abort();
	memset(big, (int)me, 300000);
	atomic_fetch_add(&bad, big[299999] != (unsigned char)me || strcmp(s, "a destructor"));
	free(big);
	free(s);
	for (unsigned i = 0; i < LEFT; i++) {
		unsigned char *p = malloc(left_size(i));
		if (!p)
			abort();
		memset(p, (int)(me + round), left_size(i));
		left[me][round][i] = p;
	}
	if (round < 2)
		pthread_setspecific(key, (void *)(v + 1)); /* once more */
}

static void *thread(void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	free(malloc(1000));
	pthread_setspecific(key, (void *)((me + 1) << 2));
	return NULL;
}

static void at_exit(void)
{
	void *mine[100];
	for (unsigned i = 0; i < 100; i++) {
		mine[i] = malloc(left_size(i));
		if (!mine[i])
			abort();
		memset(mine[i], 0x5c, left_size(i));
	}
	unsigned long freed = 0;
	for (unsigned t = 0; t < THREADS; t++)
		for (unsigned r = 0; r < 3; r++)
			for (unsigned i = 0; i < LEFT; i++) {
				unsigned char *p = left[t][r][i];
				if (!p || p[0] != (unsigned char)(t + r) ||
				    p[left_size(i) - 1] != (unsigned char)(t + r))
					atomic_fetch_add(&bad, 1);
				free(p);
				freed++;
			}
	for (unsigned i = 0; i < 100; i++) {
		unsigned char *p = mine[i];
		atomic_fetch_add(&bad, p[left_size(i) - 1] != 0x5c);
		free(p);
	}
	printf("destructors and atexit: %lu objects of departed threads, %s\n", freed,
	       atomic_load(&bad) ? "failed" : "ok");
}

int main(void)
{
	if (atexit(at_exit) || pthread_key_create(&key, destructor))
		return 1;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (uintptr_t i = 0; i < THREADS; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, thread, (void *)i))
			return 1;
	}
	pthread_attr_destroy(&attr);
	pthread_exit(NULL); /* the last thread out calls exit() */
}
