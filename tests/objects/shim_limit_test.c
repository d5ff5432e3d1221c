/* SPDX-License-Identifier: MIT */
/*
 * The shim under an address-space limit (ulimit -v, RLIMIT_AS) below its
 * reservation: 64 GiB of simulated memory and one GiB for alignment,
 * NORESERVE but counted against the limit. The reservation failed, the
 * instance was never made, and every request came from the 1 MiB
 * bootstrap buffer, then failed (python3 died at start-up with a
 * MemoryError under `ulimit -v 8000000`). The shim must reserve what the
 * limit allows and work as usual within it.
 *
 * usage: shim_limit_test [HEADROOM_MIB [LARGEST_MIB [THREADS]]]: the
 * limit is what the process maps now plus HEADROOM_MIB (default 6144);
 * LARGEST_MIB (default 600) is the largest request that must then be
 * served. With less than 2 GiB of headroom, even 1 GiB of memory and its
 * alignment do not fit: below that, python3 and sort failed as before
 * under `ulimit -v 1500000`. THREADS (default 0) threads first allocate
 * and free 16 MiB of small objects each and stay alive while main
 * allocates as much again: what their heaps cache must not keep that
 * memory from main (a heap that runs out reclaims only its own caches).
 * Then main allocates 1 MiB objects: the threads' slab descriptors
 * (frames a heap keeps) are spread over the memory, and in 256 or 512 MiB
 * they leave no free block of the large objects' import quantum, so those
 * come from smaller spans.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../check.h"
#include "shim.h"

static pthread_barrier_t freed, done;

static void *cacher(void *arg)
{
	void **v = arg;
	for (unsigned i = 0; i < 4096; i++)
		if (!(v[i] = cairn_malloc(4000)))
			abort();
	for (unsigned i = 0; i < 4096; i++)
		cairn_free(v[i]);
	pthread_barrier_wait(&freed);
	pthread_barrier_wait(&done); /* alive, its heap online, while main allocates */
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long long headroom = argc > 1 ? strtoull(argv[1], NULL, 10) : 6144;
	size_t largest = (size_t)(argc > 2 ? strtoull(argv[2], NULL, 10) : 600) << 20;
	unsigned threads = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
	/* the headroom beyond what the process has now (the sanitizers'
	 * shadow included) */
	unsigned long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	REQUIRE(f && fscanf(f, "%lu", &pages) == 1);
	fclose(f);
	struct rlimit rl;
	rl.rlim_cur = rl.rlim_max = pages * 4096 + (headroom << 20);
	REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0);

	/* the first call makes the instance, its reservations refused
	 * before one fits: posix_memalign still leaves errno alone */
	void *p = NULL;
	errno = 4321;
	CHECK_EQ(cairn_posix_memalign(&p, 64, 100), 0);
	CHECK_EQ(errno, 4321);
	CHECK(p != NULL);
	CHECK(cairn_shim_objects() != NULL); /* an instance, not the buffer */
	cairn_free(p);
	/* threads whose heaps have cached what they freed */
	pthread_t t[64];
	static void *objs[64][4096];
	REQUIRE(threads <= 64);
	pthread_barrier_init(&freed, NULL, threads + 1);
	pthread_barrier_init(&done, NULL, threads + 1);
	for (unsigned i = 0; i < threads; i++)
		REQUIRE(pthread_create(&t[i], NULL, cacher, objs[i]) == 0);
	pthread_barrier_wait(&freed);
	/* as much as the threads freed, while they hold their caches */
	static void *again[64 * 4096];
	unsigned got = 0;
	while (got < threads * 4096 && (again[got] = cairn_malloc(4000)))
		got++;
	CHECK_EQ(got, threads * 4096);
	for (unsigned i = 0; i < got; i++)
		cairn_free(again[i]);
	pthread_barrier_wait(&done);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	/* more than the bootstrap buffer holds, small and large (after the
	 * threads, in memory their slabs' descriptors left without a free
	 * block of the large objects' import quantum: smaller spans) */
	void *v[64];
	unsigned n = 0;
	for (unsigned i = 0; i < 64; i++)
		n += (v[i] = cairn_malloc(i % 2 ? 1u << 20 : 3000)) != NULL;
	CHECK_EQ(n, 64);
	for (unsigned i = 0; i < 64; i++)
		cairn_free(v[i]);
	if (threads)
		return check_done("shim_limit_test");
	/* and the largest request: growing the memory within the limit */
	unsigned char *b = cairn_malloc(largest);
	CHECK(b != NULL);
	if (b) {
		b[0] = 1;
		b[largest - 1] = 2;
	}
	cairn_free(b);
	printf("under a limit of %llu MiB: %llu GiB of memory\n",
	       (unsigned long long)(rl.rlim_cur >> 20), (unsigned long long)cairn_shim_memory_gib());
	return check_done("shim_limit_test");
}
