/* SPDX-License-Identifier: MIT */
/*
 * The shim's prefixed entry points (the system allocator stays in place):
 * the C API's contracts and error paths, threads beyond the CPU slots,
 * thread churn with producer/consumer frees, and fork.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/host.h>
#include <cairn/port.h>

#include "../check.h"
#include "shim.h"

/* memalign is glibc's, not C's aligned_alloc: an alignment up to 16 is
 * malloc's, one that is not a power of two is rounded up to the next,
 * and only one above 2^63 (no power of two is that large) is EINVAL. */
static void test_memalign(void)
{
	static const size_t want[][2] = {
		{ 0, 16 }, { 1, 16 }, { 3, 16 }, { 8, 16 }, { 24, 32 }, { 48, 64 },
		{ 100, 128 }, { 4095, 4096 }, { 3u << 20, 4u << 20 },
	};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		errno = 0;
		unsigned char *p = cairn_memalign(want[i][0], 48);
		CHECK(p != NULL && errno == 0);
		if (!p)
			continue;
		CHECK_EQ((uintptr_t)p & (want[i][1] - 1), 0);
		CHECK(cairn_malloc_usable_size(p) >= 48);
		memset(p, 0x11, 48);
		cairn_free(p);
	}
	errno = 0;
	CHECK(cairn_memalign(((size_t)1 << 63) + 1, 16) == NULL && errno == EINVAL);
}

/* Sizes no memory holds, failures that must change nothing, usable sizes
 * at every class boundary, realloc's contents, errno across free. */
static void test_edges(void)
{
	static const size_t huge[] = {
		SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX - 4096,
		(size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62,
	};
	unsigned char *keep = cairn_malloc(100);
	REQUIRE(keep);
	memset(keep, 0x3c, 100);
	for (unsigned i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		errno = 0;
		CHECK(cairn_malloc(huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(cairn_calloc(1, huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(cairn_aligned_alloc(64, huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(cairn_memalign(1u << 20, huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(cairn_valloc(huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(cairn_pvalloc(huge[i]) == NULL && errno == ENOMEM);
		errno = 0;
		CHECK(cairn_realloc(keep, huge[i]) == NULL && errno == ENOMEM);
		/* posix_memalign: the error returned, errno and *out untouched */
		void *out = (void *)1;
		errno = 1234;
		CHECK_EQ(cairn_posix_memalign(&out, 64, huge[i]), ENOMEM);
		CHECK(out == (void *)1 && errno == 1234);
	}
	void *out = (void *)1;
	errno = 1234;
	CHECK_EQ(cairn_posix_memalign(&out, 24, 10), EINVAL);
	CHECK_EQ(cairn_posix_memalign(&out, 0, 10), EINVAL);
	CHECK_EQ(cairn_posix_memalign(&out, (size_t)1 << 63, 10), ENOMEM);
	CHECK(out == (void *)1 && errno == 1234);
	for (unsigned i = 0; i < 100; i++)
		CHECK(keep[i] == 0x3c); /* every failed realloc left it */
	errno = 0;
	void *z = cairn_calloc(SIZE_MAX, 0); /* no overflow: a unique object */
	CHECK(z != NULL && z != keep);
	cairn_free(z);
	CHECK_EQ(cairn_malloc_usable_size(NULL), 0);
	void *m0 = cairn_malloc(0), *m1 = cairn_malloc(0), *r0 = cairn_realloc(NULL, 0);
	CHECK(m0 && m1 && r0 && m0 != m1 && r0 != m0 && r0 != m1);
	unsigned char *rn = cairn_realloc(NULL, 3000); /* malloc */
	CHECK(rn && cairn_malloc_usable_size(rn) >= 3000);
	cairn_free(m0);
	cairn_free(m1);
	cairn_free(r0);
	cairn_free(rn);
	/* around every class boundary and past the large threshold */
	for (size_t b = 16; b <= (1u << 20); b += b < 128 ? 16 : b / 4) {
		for (size_t size = b - 1; size <= b + 1; size++) {
			unsigned char *p = cairn_malloc(size);
			CHECK(p != NULL);
			if (!p)
				continue;
			size_t u = cairn_malloc_usable_size(p);
			CHECK(u >= size);
			memset(p, 0x77, u); /* all of it is the caller's */
			unsigned char *q = cairn_realloc(p, size / 3 + 1); /* shrink */
			REQUIRE(q);
			CHECK(q[0] == 0x77 && q[size / 3] == 0x77);
			p = cairn_realloc(q, size * 3); /* grow: the prefix stays */
			REQUIRE(p);
			CHECK(p[0] == 0x77 && p[size / 3] == 0x77);
			errno = 4321;
			cairn_free(p);
			CHECK_EQ(errno, 4321);
		}
	}
	errno = 4321;
	cairn_free(NULL);
	cairn_free(keep);
	CHECK_EQ(errno, 4321);
}

static void test_api(void)
{
	void *p = cairn_malloc(0);
	CHECK(p != NULL);
	cairn_free(p);
	cairn_free(NULL);
	for (size_t size = 1; size < (4u << 20); size = size * 3 + 1) {
		unsigned char *q = cairn_malloc(size);
		REQUIRE(q);
		CHECK(((uintptr_t)q & 15) == 0);
		CHECK(cairn_malloc_usable_size(q) >= size);
		memset(q, 0x5a, size);
		q = cairn_realloc(q, size * 2);
		REQUIRE(q);
		CHECK(q[size - 1] == 0x5a);
		cairn_free(q);
	}
	errno = 0;
	CHECK(cairn_malloc(SIZE_MAX) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_calloc(SIZE_MAX / 4, 8) == NULL && errno == ENOMEM);
	unsigned *z = cairn_calloc(1000, sizeof(unsigned));
	REQUIRE(z);
	for (unsigned i = 0; i < 1000; i++)
		CHECK(z[i] == 0);
	errno = 0;
	CHECK(cairn_reallocarray(z, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
	z = cairn_reallocarray(z, 2000, sizeof(unsigned));
	REQUIRE(z);
	cairn_free(z);
	CHECK(cairn_realloc(cairn_malloc(10), 0) == NULL);

	void *a = NULL;
	CHECK_EQ(cairn_posix_memalign(&a, 3, 10), EINVAL);
	CHECK_EQ(cairn_posix_memalign(&a, 4, 10), EINVAL); /* not a multiple of sizeof(void *) */
	CHECK(a == NULL);
	for (size_t al = 8; al <= (2u << 20); al <<= 1) {
		CHECK_EQ(cairn_posix_memalign(&a, al, 100), 0);
		CHECK(((uintptr_t)a & (al - 1)) == 0);
		cairn_free(a);
		void *b = cairn_aligned_alloc(al, al * 2);
		CHECK(b && ((uintptr_t)b & (al - 1)) == 0);
		cairn_free(b);
		b = cairn_memalign(al, 5);
		CHECK(b && ((uintptr_t)b & (al - 1)) == 0);
		cairn_free(b);
	}
	errno = 0;
	CHECK(cairn_aligned_alloc(24, 48) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(cairn_aligned_alloc(0, 48) == NULL && errno == EINVAL);
	test_memalign();
	test_edges();
	void *v = cairn_valloc(10);
	CHECK(v && ((uintptr_t)v & 4095) == 0);
	cairn_free(v);
	v = cairn_pvalloc(10);
	CHECK(v && ((uintptr_t)v & 4095) == 0 && cairn_malloc_usable_size(v) >= 4096);
	cairn_free(v);
	v = cairn_pvalloc(0);
	CHECK(v != NULL);
	cairn_free(v);
}

/* Producer/consumer across threads that come and go. */
#define RING 1024
static _Atomic(void *) ring[RING];
static _Atomic unsigned long produced, consumed;

static void *producer(void *arg)
{
	unsigned long n = (unsigned long)(uintptr_t)arg;
	for (unsigned long i = 0; i < n; i++) {
		size_t size = 8 + (i * 2654435761u) % 3000;
		unsigned char *p = cairn_malloc(size);
		if (!p)
			abort();
		p[0] = (unsigned char)size;
		p[size - 1] = (unsigned char)(size >> 3);
		*(size_t *)(p + (size >= 16 ? 8 : 0)) = size >= 16 ? size : *(size_t *)p;
		unsigned slot = (unsigned)(i * 7919 + n) % RING;
		void *old = atomic_exchange(&ring[slot], p);
		if (old) {
			cairn_free(old);
			atomic_fetch_add(&consumed, 1);
		}
		atomic_fetch_add(&produced, 1);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	unsigned long n = (unsigned long)(uintptr_t)arg;
	for (unsigned long i = 0; i < n; i++) {
		void *old = atomic_exchange(&ring[(i * 31 + n) % RING], NULL);
		if (old) {
			cairn_free(old);
			atomic_fetch_add(&consumed, 1);
		}
	}
	return NULL;
}

static void test_threads(unsigned waves, unsigned per_wave, unsigned long ops)
{
	for (unsigned w = 0; w < waves; w++) {
		pthread_t t[64];
		for (unsigned i = 0; i < per_wave; i++)
			pthread_create(&t[i], NULL, i % 2 ? consumer : producer,
				       (void *)(uintptr_t)(ops + w + i));
		for (unsigned i = 0; i < per_wave; i++)
			pthread_join(t[i], NULL);
	}
	for (unsigned i = 0; i < RING; i++) {
		void *old = atomic_exchange(&ring[i], NULL);
		if (old) {
			cairn_free(old);
			atomic_fetch_add(&consumed, 1);
		}
	}
	CHECK_EQ(atomic_load(&produced), atomic_load(&consumed));
}

/* More live threads than CPU slots: the rest share one locked heap. */
static pthread_barrier_t many_barrier;
static void *many(void *arg)
{
	(void)arg;
	void *p[16];
	for (int i = 0; i < 16; i++)
		p[i] = cairn_malloc(24 + i * 40);
	pthread_barrier_wait(&many_barrier);
	for (int i = 0; i < 16; i++)
		cairn_free(p[i]);
	return NULL;
}

static void test_many_threads(unsigned n)
{
	pthread_t *t = calloc(n, sizeof(*t));
	pthread_barrier_init(&many_barrier, NULL, n);
	unsigned made = 0;
	for (; made < n; made++) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 << 10);
		int err = pthread_create(&t[made], &attr, many, NULL);
		pthread_attr_destroy(&attr);
		REQUIRE(err == 0);
	}
	for (unsigned i = 0; i < made; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&many_barrier);
	free(t);
}

/* A thread that found every slot taken takes one at its first call after
 * a slot was given back; between, it does not try the slots at every call
 * (a try reads all of them). Slot 0 is main's, so the port's CPU index of
 * a thread is 0 exactly while it has no slot. */
#define FULL_HOLDERS 255
static pthread_barrier_t full_in, full_out;
static _Atomic int full_looked, full_released;

static void *full_holder(void *arg)
{
	(void)arg;
	cairn_free(cairn_malloc(24));
	pthread_barrier_wait(&full_in);
	pthread_barrier_wait(&full_out);
	return NULL;
}

static void *full_latecomer(void *arg)
{
	(void)arg;
	uintptr_t ok = 1;
	for (int i = 0; i < 1000; i++) /* the shared heap, slots not tried again */
		cairn_free(cairn_malloc(24));
	ok &= cairn_port_cpu() == 0;
	atomic_store(&full_looked, 1);
	while (!atomic_load(&full_released))
		sched_yield();
	cairn_free(cairn_malloc(24));
	ok &= cairn_port_cpu() != 0;
	return (void *)ok;
}

static void test_slot_freed(void)
{
	cairn_free(cairn_malloc(24));
	CHECK_EQ(cairn_port_cpu(), 0); /* main: slot 0, its first call */
	pthread_t t[FULL_HOLDERS], late;
	pthread_barrier_init(&full_in, NULL, FULL_HOLDERS + 1);
	pthread_barrier_init(&full_out, NULL, FULL_HOLDERS + 1);
	atomic_store(&full_looked, 0);
	atomic_store(&full_released, 0);
	for (unsigned i = 0; i < FULL_HOLDERS; i++) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 << 10);
		REQUIRE(pthread_create(&t[i], &attr, full_holder, NULL) == 0);
		pthread_attr_destroy(&attr);
	}
	/* every holder has its slot (or found none) before the latecomer looks */
	pthread_barrier_wait(&full_in);
	REQUIRE(pthread_create(&late, NULL, full_latecomer, NULL) == 0);
	while (!atomic_load(&full_looked))
		sched_yield();
	pthread_barrier_wait(&full_out);
	for (unsigned i = 0; i < FULL_HOLDERS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&full_released, 1);
	void *ok;
	pthread_join(late, &ok);
	CHECK(ok == (void *)1);
	pthread_barrier_destroy(&full_in);
	pthread_barrier_destroy(&full_out);
}

/* Calls after the shim's key destructor: a key made after the shim's has
 * its destructor run after the shim's in the same round, when the thread's
 * slot may already be another thread's. It allocates and frees (on the
 * shared heap), frees what the thread allocated on its own heap, and what
 * a thread of the wave before left it, while the other thread of its wave
 * does the same and threads take the slots given back. */
#define AFTER_THREADS 64
#define AFTER_OBJS 64
static pthread_key_t after_key;
static void *after_own[AFTER_THREADS][AFTER_OBJS], *after_left[AFTER_THREADS][AFTER_OBJS];
static _Atomic unsigned after_bad;

static size_t after_size(unsigned i)
{
	return i % 8 == 0 ? 70000 + i * 4096 : 24 + i * 40;
}

static void after_free(void **objs, unsigned owner)
{
	for (unsigned i = 0; i < AFTER_OBJS; i++) {
		unsigned char *p = objs[i];
		if (p[0] != (unsigned char)owner || p[after_size(i) - 1] != (unsigned char)owner)
			atomic_fetch_add(&after_bad, 1);
		cairn_free(p);
	}
}

static void after_destructor(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg - 1;
	void *mine[AFTER_OBJS];
	for (unsigned i = 0; i < AFTER_OBJS; i++) {
		mine[i] = cairn_malloc(after_size(i));
		if (!mine[i])
			abort();
		memset(mine[i], (int)me, after_size(i));
	}
	after_free(after_own[me], me);
	if (me >= 2)
		after_free(after_left[me - 2], me - 2);
	after_free(mine, me);
}

static void *after_thread(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	for (unsigned i = 0; i < 2 * AFTER_OBJS; i++) {
		unsigned char *p = cairn_malloc(after_size(i % AFTER_OBJS));
		if (!p)
			abort();
		memset(p, (int)me, after_size(i % AFTER_OBJS));
		(i < AFTER_OBJS ? after_own[me] : after_left[me])[i % AFTER_OBJS] = p;
	}
	pthread_setspecific(after_key, (void *)(uintptr_t)(me + 1));
	return NULL;
}

static void test_after_exit(void)
{
	REQUIRE(pthread_key_create(&after_key, after_destructor) == 0);
	for (unsigned w = 0; w < AFTER_THREADS; w += 2) {
		pthread_t t[2];
		for (unsigned i = 0; i < 2; i++)
			REQUIRE(pthread_create(&t[i], NULL, after_thread,
					       (void *)(uintptr_t)(w + i)) == 0);
		for (unsigned i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
	}
	for (unsigned i = AFTER_THREADS - 2; i < AFTER_THREADS; i++)
		after_free(after_left[i], i);
	CHECK_EQ(atomic_load(&after_bad), 0);
	pthread_key_delete(after_key);
}

/* A thread whose first call comes after its last chance at a key
 * destructor: glibc runs destructors for at most
 * PTHREAD_DESTRUCTOR_ITERATIONS rounds, so the shim's key, set in the last
 * round, is never destroyed, and the slot taken there is never given
 * back. (glibc itself frees from an exiting detached thread after every
 * round: a thread that never allocated takes a slot there.) Such threads,
 * more than there are slots, must not leave a later thread without one. */
static pthread_key_t late_key;

static void late_destructor(void *arg)
{
	uintptr_t round = (uintptr_t)arg;
	if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
		pthread_setspecific(late_key, (void *)(round + 1)); /* once more */
		return;
	}
	cairn_free(cairn_malloc(100)); /* the last round: the first call */
}

static void *late_thread(void *arg)
{
	(void)arg;
	pthread_setspecific(late_key, (void *)1);
	return NULL;
}

static void *slot_thread(void *arg)
{
	(void)arg;
	cairn_free(cairn_malloc(100));
	/* the slot the shim registered this thread on (or ENOSPC) */
	return (void *)(intptr_t)cairn_host_cpu_register();
}

static void test_late_threads(unsigned n)
{
	REQUIRE(pthread_key_create(&late_key, late_destructor) == 0);
	for (unsigned i = 0; i < n; i++) {
		pthread_t t;
		REQUIRE(pthread_create(&t, NULL, late_thread, NULL) == 0);
		pthread_join(t, NULL);
	}
	pthread_t t;
	void *slot;
	REQUIRE(pthread_create(&t, NULL, slot_thread, NULL) == 0);
	pthread_join(t, &slot);
	CHECK((intptr_t)slot >= 0);
	pthread_key_delete(late_key);
}

static void test_fork(void)
{
	void *keep = cairn_malloc(1000);
	memset(keep, 7, 1000);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* the child: its own copy, everything works */
		unsigned char *k = keep;
		int bad = k[999] != 7;
		for (int i = 0; i < 10000; i++)
			cairn_free(cairn_malloc((size_t)i % 5000));
		cairn_free(keep);
		pthread_t t;
		pthread_create(&t, NULL, producer, (void *)(uintptr_t)1000);
		pthread_join(t, NULL);
		_exit(bad);
	}
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(((unsigned char *)keep)[500] == 7);
	cairn_free(keep);
}

/* Fork while other threads allocate and free large objects: the child's
 * copy of the arena must not have a node locked by a thread that is gone
 * (the fork gate), and large blocks are private copies. */
static atomic_int churn_stop;

static void *large_churn(void *arg)
{
	unsigned n = 0;
	void *held[8] = { 0 };
	while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
		unsigned k = n++ % 8;
		cairn_free(held[k]);
		held[k] = cairn_malloc(70000 + (n * 4099 + (uintptr_t)arg) % 600000);
		if (held[k])
			((char *)held[k])[0] = 1;
		if (n % 3 == 0) {
			void *q = cairn_realloc(cairn_malloc(1000), 200000);
			cairn_free(q);
		}
	}
	for (unsigned k = 0; k < 8; k++)
		cairn_free(held[k]);
	return NULL;
}

static void test_fork_large(void)
{
	unsigned char *big = cairn_malloc(300000);
	REQUIRE(big);
	memset(big, 9, 300000);
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, large_churn, (void *)i);
	for (int f = 0; f < 20; f++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			alarm(20); /* a lock left held would hang here */
			int bad = big[299999] != 9;
			memset(big, 1, 300000); /* the child's copy only */
			for (int i = 0; i < 200; i++) {
				void *p = cairn_malloc(65537 + (size_t)i * 8192);
				bad |= p == NULL || cairn_malloc_usable_size(p) < 65537 + (size_t)i * 8192;
				cairn_free(p);
			}
			cairn_free(big);
			_exit(bad);
		}
		int status;
		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	atomic_store(&churn_stop, 1);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < 300000; i += 4096)
		CHECK(big[i] == 9);
	/* large blocks: pages, not powers of two */
	CHECK_EQ(cairn_malloc_usable_size(big), 303104);
	cairn_free(big);
}

/* Fork while two threads are in the middle of small and large allocations
 * and frees, handing objects to each other through a ring (remote frees).
 * The child frees the ring's objects (of heaps whose threads it does not
 * have: posts nobody collects), allocates, starts a thread and forks
 * again; the grandchild does the same. A child that waits for ever is
 * killed by its alarm. */
#define FRING 2048
static _Atomic(void *) fring[FRING];
static atomic_int fchurn_stop;

static void *fork_churn(void *arg)
{
	unsigned x = (unsigned)(uintptr_t)arg * 7919 + 1;
	while (!atomic_load_explicit(&fchurn_stop, memory_order_relaxed)) {
		x = x * 1103515245 + 12345;
		size_t size = (x >> 20) % 64 ? (x >> 8) % 3000 + 1 : 70000 + (x >> 6) % 300000;
		unsigned char *p = cairn_malloc(size);
		if (!p)
			abort();
		p[0] = (unsigned char)x;
		cairn_free(atomic_exchange(&fring[(x >> 12) % FRING], p));
	}
	return NULL;
}

static void *fork_child_thread(void *arg)
{
	for (unsigned i = 0; i < 3000; i++)
		cairn_free(cairn_malloc(i % 5000 + 1));
	return arg;
}

static int fork_child(int depth)
{
	alarm(20);
	for (unsigned i = 0; i < FRING; i++)
		cairn_free(atomic_exchange(&fring[i], NULL));
	void *held[256];
	for (unsigned i = 0; i < 10000; i++) {
		void *p = cairn_malloc(i % 7 ? i % 4000 + 1 : 100000);
		if (!p)
			return 2;
		memset(p, 1, 16);
		if (i < 256)
			held[i] = p;
		else
			cairn_free(p);
	}
	for (unsigned i = 0; i < 256; i++)
		cairn_free(held[i]);
	pthread_t t;
	if (pthread_create(&t, NULL, fork_child_thread, NULL))
		return 3;
	pthread_join(t, NULL);
	if (depth) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(fork_child(depth - 1));
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
			return 4;
	}
	return 0;
}

static void test_fork_churn(unsigned forks)
{
	pthread_t t[2];
	for (uintptr_t i = 0; i < 2; i++)
		REQUIRE(pthread_create(&t[i], NULL, fork_churn, (void *)i) == 0);
	unsigned failed = 0;
	for (unsigned f = 0; f < forks; f++) {
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(fork_child(1));
		int st;
		waitpid(pid, &st, 0);
		failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	atomic_store(&fchurn_stop, 1);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < FRING; i++)
		cairn_free(atomic_exchange(&fring[i], NULL));
	printf("fork while allocating: %u forks, %u children failed\n", forks, failed);
	CHECK_EQ(failed, 0);
}

/* Fork while another thread holds an offline heap it claimed. A heap whose
 * thread exited is OFFLINE with its slot free; every batch of remote frees
 * posted to it claims it (CLAIMED), collects and gives it back. A child
 * forked during such a claim has the heap CLAIMED with no thread left to
 * give it back, and the child's next new thread takes that slot (the
 * lowest free one) and waits for ever to bring its heap online. */
#define CLAIM_OBJS 16384
static void *claim_objs[CLAIM_OBJS];
static atomic_int claim_round, claim_freed, claim_stop;

static void *claim_maker(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < CLAIM_OBJS; i++) {
		claim_objs[i] = cairn_malloc(48);
		if (!claim_objs[i])
			abort();
	}
	return NULL; /* its heap goes offline, its slot is freed */
}

static void *claim_freer(void *arg)
{
	(void)arg;
	cairn_free(cairn_malloc(16)); /* take a slot before the maker */
	atomic_store(&claim_freed, -1);
	for (int seen = 0;;) {
		int r;
		while ((r = atomic_load(&claim_round)) == seen && !atomic_load(&claim_stop))
			sched_yield();
		if (r == seen)
			return NULL;
		seen = r;
		for (unsigned i = 0; i < CLAIM_OBJS; i++)
			cairn_free(claim_objs[i]); /* remote: posts claim the maker's heap */
		atomic_store(&claim_freed, r);
	}
}

static void *claim_child_thread(void *arg)
{
	(void)arg;
	void *p = cairn_malloc(100); /* the freed slot: its heap must come online */
	cairn_free(p);
	return p;
}

static void test_fork_claim(unsigned rounds)
{
	pthread_t freer;
	pthread_create(&freer, NULL, claim_freer, NULL);
	while (atomic_load(&claim_freed) != -1)
		sched_yield();
	unsigned forks = 0, failed = 0;
	for (unsigned r = 1; r <= rounds && !failed; r++) {
		pthread_t maker;
		pthread_create(&maker, NULL, claim_maker, NULL);
		pthread_join(maker, NULL);
		atomic_store(&claim_round, (int)r);
		while (atomic_load(&claim_freed) != (int)r && !failed) {
			pid_t pid = fork();
			REQUIRE(pid >= 0);
			if (pid == 0) {
				alarm(10); /* a heap left claimed hangs here */
				pthread_t t;
				pthread_create(&t, NULL, claim_child_thread, NULL);
				pthread_join(t, NULL);
				_exit(0);
			}
			int status;
			waitpid(pid, &status, 0);
			forks++;
			failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		}
	}
	atomic_store(&claim_stop, 1);
	pthread_join(freer, NULL);
	printf("fork while claiming: %u forks, %u children hung\n", forks, failed);
	CHECK_EQ(failed, 0);
}

int main(int argc, char **argv)
{
	unsigned many_threads = argc > 1 ? (unsigned)atoi(argv[1]) : 300;
	/* 0 under TSan, whose runtime refuses threads in a child forked from
	 * a multithreaded parent */
	unsigned claim_rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 40;
	/* 0 under TSan, whose runtime re-arms its own key to tear the thread
	 * down in the last destructor round: a destructor after it may not
	 * run instrumented code */
	unsigned late_threads = argc > 3 ? (unsigned)atoi(argv[3]) : 300;
	test_api();
	test_slot_freed();
	test_threads(6, 6, 20000);
	test_many_threads(many_threads);
	test_after_exit();
	if (late_threads)
		test_late_threads(late_threads);
	test_fork();
	test_fork_large();
	if (claim_rounds) {
		test_fork_churn(claim_rounds);
		test_fork_claim(claim_rounds);
	}
	test_api();
	return check_done("shim_test");
}
