/* SPDX-License-Identifier: MIT */
/*
 * Thousands of thread lifetimes through the shim's prefixed entry points:
 * waves of threads that allocate small and large objects, hand most of
 * them to a ring where threads of later waves (and, at the end, main)
 * free them, and exit with objects still out, so that frees reach heaps
 * whose threads are gone (claims) and heaps that a new thread took over.
 *
 * What a departed thread held must not stay with its heap: the footprint
 * (slab, large, cached and metadata frames) at the end may not exceed
 * what it was after the first tenth of the waves by more than the ring's
 * turnover, where one slab per thread left behind would add thousands of
 * frames. Once main has freed the ring and flushed its batches, every
 * object is accounted for (none live, no large block), and every heap
 * but main's holds no slab, no cached block and no cached large range:
 * the heaps of threads that exited gave everything back.
 *
 * Then forks while two threads keep starting and joining such threads, so
 * that a fork finds threads taking a slot and bringing its heap online,
 * and threads taking theirs offline as they exit. Each child frees the
 * ring (objects of threads it does not have), runs threads of its own
 * and frees the ring again; a child that hangs is killed by its alarm
 * (not under the sanitizers: their runtimes' allocators are not
 * fork-safe while threads start).
 *
 * usage: shim_churn_test [WAVES [THREADS_PER_WAVE [OPS [FORKS]]]]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/host.h>
#include <cairn/objects.h>

#include "../check.h"
#include "shim.h"

#define RING 2048
#define KEEP 32
#define MAX_PER_WAVE 32
#define SLOTS 256 /* the shim's heaps: 255 slots and the shared one */

static _Atomic(void *) ring[RING];
static unsigned long ops = 400;
static atomic_uint bad;

/* A size for an object: mostly small, one in 32 large; at least 24
 * bytes, for the tag. */
static size_t churn_size(unsigned x)
{
	return (x >> 24) % 32 ? 24 + (x >> 8) % 3000 : 66000 + (x >> 6) % 200000;
}

/* The size in bytes 8..15, and its low bytes first and last. */
static void put_tag(unsigned char *p, size_t size)
{
	p[0] = (unsigned char)size;
	memcpy(p + 8, &size, sizeof(size));
	p[size - 1] = (unsigned char)(size >> 8);
}

static void check_free(unsigned char *p)
{
	if (!p)
		return;
	size_t size;
	memcpy(&size, p + 8, sizeof(size));
	if (size < 24 || size > cairn_malloc_usable_size(p) || p[0] != (unsigned char)size ||
	    p[size - 1] != (unsigned char)(size >> 8))
		atomic_fetch_add_explicit(&bad, 1, memory_order_relaxed);
	cairn_free(p);
}

static void *churn(void *arg)
{
	unsigned x = (unsigned)(uintptr_t)arg * 2654435761u + 12345;
	unsigned char *keep[KEEP];
	for (unsigned i = 0; i < KEEP; i++) {
		x = x * 1103515245 + 12345;
		size_t size = churn_size(x);
		if (!(keep[i] = cairn_malloc(size)))
			abort();
		put_tag(keep[i], size);
	}
	for (unsigned long i = 0; i < ops; i++) {
		x = x * 1103515245 + 12345;
		size_t size = churn_size(x);
		unsigned char *p = cairn_malloc(size);
		if (!p)
			abort();
		put_tag(p, size);
		if (i % 16 == 0) { /* and across the boundaries, keeping the contents */
			size_t to = i % 32 ? size / 5 + 24 : size * 3;
			unsigned char *q = cairn_realloc(p, to);
			if (!q)
				abort();
			if (q[0] != (unsigned char)size)
				atomic_fetch_add_explicit(&bad, 1, memory_order_relaxed);
			put_tag(q, to);
			p = q;
		}
		check_free(atomic_exchange(&ring[(x >> 9) % RING], p));
		unsigned k = (x >> 3) % KEEP;
		check_free(keep[k]); /* a local free */
		size = churn_size(x * 7);
		if (!(keep[k] = cairn_malloc(size)))
			abort();
		put_tag(keep[k], size);
	}
	for (unsigned i = 0; i < KEEP; i++)
		check_free(keep[i]);
	return NULL; /* the ring keeps up to RING of this thread's objects */
}

/* Heaps other than main's that hold what they should not: with `slabs`,
 * any slab; always, a cached slab block or large range (a heap going
 * offline, or claimed to collect, gives those back). */
static unsigned heaps_holding(struct cairn_objects *o, int me, bool slabs)
{
	unsigned holding = 0;
	for (unsigned c = 0; c < SLOTS; c++) {
		struct cairn_objects_stats st;
		if ((int)c == me)
			continue;
		cairn_objects_heap_stats(o, c, &st);
		if ((slabs && st.slabs) || st.cached_frames || st.large_cached_frames) {
			if (!holding++)
				fprintf(stderr, "heap %u: %llu slabs, %llu cached, %llu large cached\n",
					c, (unsigned long long)st.slabs,
					(unsigned long long)st.cached_frames,
					(unsigned long long)st.large_cached_frames);
		}
	}
	return holding;
}

static uint64_t footprint(struct cairn_objects *o)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st.slab_frames + st.large_frames + st.cached_frames + st.large_cached_frames +
	       st.meta_frames;
}

static atomic_int spawn_stop;

static void *spawner(void *arg)
{
	for (unsigned n = 0; !atomic_load_explicit(&spawn_stop, memory_order_relaxed); n++) {
		pthread_t t[2];
		for (unsigned i = 0; i < 2; i++)
			if (pthread_create(&t[i], NULL, churn,
					   (void *)(uintptr_t)(n * 4 + i * 2 + (uintptr_t)arg)))
				abort();
		for (unsigned i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
	}
	return NULL;
}

static int fork_child(void)
{
	alarm(20);
	for (unsigned i = 0; i < RING; i++)
		check_free(atomic_exchange(&ring[i], NULL));
	for (unsigned w = 0; w < 4; w++) {
		pthread_t t[2];
		for (unsigned i = 0; i < 2; i++)
			if (pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(w * 2 + i)))
				return 2;
		for (unsigned i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
	}
	for (unsigned i = 0; i < RING; i++)
		check_free(atomic_exchange(&ring[i], NULL));
	return atomic_load(&bad) ? 3 : 0;
}

static void test_fork(unsigned forks)
{
	unsigned long saved = ops;
	ops = 100;
	pthread_t sp[2];
	for (uintptr_t i = 0; i < 2; i++)
		REQUIRE(pthread_create(&sp[i], NULL, spawner, (void *)i) == 0);
	unsigned failed = 0;
	for (unsigned f = 0; f < forks; f++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(fork_child());
		int st;
		waitpid(pid, &st, 0);
		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			failed++;
			fprintf(stderr, "child %u: %s %d\n", f,
				WIFEXITED(st) ? "exit status" : "signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		}
	}
	atomic_store(&spawn_stop, 1);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(sp[i], NULL);
	ops = saved;
	printf("fork while threads come and go: %u forks, %u children failed\n", forks, failed);
	CHECK_EQ(failed, 0);
}

int main(int argc, char **argv)
{
	unsigned waves = argc > 1 ? (unsigned)atoi(argv[1]) : 500;
	unsigned per_wave = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
	ops = argc > 3 ? strtoul(argv[3], NULL, 10) : 400;
	unsigned forks = argc > 4 ? (unsigned)atoi(argv[4]) : 0;
	REQUIRE(per_wave >= 1 && per_wave <= MAX_PER_WAVE && waves >= 10);
	cairn_free(cairn_malloc(1)); /* main takes its slot */
	struct cairn_objects *o = cairn_shim_objects();
	REQUIRE(o);
	uint64_t early = 0, peak = 0;
	for (unsigned w = 0; w < waves; w++) {
		pthread_t t[MAX_PER_WAVE];
		for (unsigned i = 0; i < per_wave; i++)
			REQUIRE(pthread_create(&t[i], NULL, churn,
					       (void *)(uintptr_t)(w * per_wave + i)) == 0);
		for (unsigned i = 0; i < per_wave; i++)
			pthread_join(t[i], NULL);
		uint64_t f = footprint(o);
		peak = f > peak ? f : peak;
		if (w + 1 == waves / 10)
			early = peak;
	}
	uint64_t end = footprint(o);
	/* The ring holds up to RING objects, whichever threads made them:
	 * what may differ is its mix of sizes, not anything per thread
	 * (released blocks are left out: the instance bounds them). */
	printf("%u threads: footprint %llu frames after the first tenth, %llu at most, "
	       "%llu at the end\n",
	       waves * per_wave, (unsigned long long)early, (unsigned long long)peak,
	       (unsigned long long)end);
	CHECK(end <= early + early / 2 + 4096);
	int me = cairn_host_cpu_register(); /* the slot main holds */
	REQUIRE(me >= 0);
	CHECK_EQ(heaps_holding(o, me, false), 0);
	if (forks)
		test_fork(forks);

	for (unsigned i = 0; i < RING; i++)
		check_free(atomic_exchange(&ring[i], NULL));
	cairn_objects_flush(o); /* main's batches: posted, and claims collect them */
	CHECK_EQ(atomic_load(&bad), 0);
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.objects, 0);
	CHECK_EQ(st.large, 0);
	CHECK_EQ(heaps_holding(o, me, true), 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	return check_done("shim_churn_test");
}
