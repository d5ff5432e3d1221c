/* SPDX-License-Identifier: MIT */
/*
 * What the C allocation API promises that shim_test does not reach:
 *
 * - blocks of the bootstrap buffer after the instance exists: the shim
 *   hands them out while it makes the instance (glibc's pthread_atfork
 *   allocates there under LD_PRELOAD); here the key it creates is wrapped
 *   (-Wl,--wrap) so that the test allocates at that point too. free must
 *   ignore them from every thread (not report them as pointers the
 *   instance never handed out), malloc_usable_size report them,
 *   realloc copy them out;
 * - errno across the first call of the process and of a thread, which
 *   take a slot and make the instance: free and posix_memalign leave it;
 * - more live threads than slots, each freeing and reallocating its
 *   neighbour's objects;
 * - alignments from 1 MiB to 1 GiB, above and below the size, through
 *   every aligned entry point, and malloc_usable_size at least what was
 *   asked on every size and alignment path (realloc of aligned blocks
 *   too);
 * - with `fork`, forks from fork handlers that run while the shim's
 *   locks are held;
 * - with `exhaust`, in a memory of 1 GiB: ENOMEM from every entry point
 *   once it is used up, and a failed realloc keeps its block.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cairn/host.h>

#include "../check.h"
#include "shim.h"

static int churn_some(void);

/* ---- the bootstrap buffer ---- */

#define BOOT_N 4
static unsigned char *boot_blk[BOOT_N];
static const size_t boot_len[BOOT_N] = { 24, 100, 4000, 70000 };

/* Armed by main just before the shim's first call, so that the next key
 * created is the shim's. (A sanitizer runtime linked in statically makes
 * keys of its own through the wrapper, before it can run instrumented
 * code: nothing else happens here unarmed.) */
static int boot_armed;

#if defined(__has_attribute) && __has_attribute(disable_sanitizer_instrumentation)
#define NOT_INSTRUMENTED __attribute__((disable_sanitizer_instrumentation))
#else
#define NOT_INSTRUMENTED __attribute__((no_sanitize("thread")))
#endif

int __real_pthread_key_create(pthread_key_t *key, void (*destructor)(void *));
NOT_INSTRUMENTED
int __wrap_pthread_key_create(pthread_key_t *key, void (*destructor)(void *))
{
	/* the shim's, made inside its first call: the instance is not ready */
	if (boot_armed) {
		boot_armed = 0;
		for (unsigned i = 0; i < BOOT_N; i++) {
			boot_blk[i] = cairn_malloc(boot_len[i]);
			if (boot_blk[i])
				memset(boot_blk[i], 0x40 + (int)i, boot_len[i]);
		}
	}
	return __real_pthread_key_create(key, destructor);
}

static void *boot_free_thread(void *arg)
{
	(void)arg;
	cairn_free(cairn_malloc(16)); /* a heap of its own: the fast path */
	int bad = 0;
	for (unsigned i = 0; i < BOOT_N; i++) {
		errno = 777;
		cairn_free(boot_blk[i]);
		bad |= errno != 777;
		bad |= cairn_malloc_usable_size(boot_blk[i]) < boot_len[i];
	}
	return (void *)(uintptr_t)bad;
}

static void test_boot(void)
{
	uint64_t reports = cairn_host_reports();
	for (unsigned i = 0; i < BOOT_N; i++)
		REQUIRE(boot_blk[i] != NULL);
	/* main's heap, then another thread's, then main's again */
	for (unsigned i = 0; i < BOOT_N; i++) {
		CHECK(cairn_malloc_usable_size(boot_blk[i]) >= boot_len[i]);
		errno = 777;
		cairn_free(boot_blk[i]);
		CHECK_EQ(errno, 777);
	}
	pthread_t t;
	void *bad;
	REQUIRE(pthread_create(&t, NULL, boot_free_thread, NULL) == 0);
	pthread_join(t, &bad);
	CHECK(bad == NULL);
	/* never reused: what they held is still there */
	for (unsigned i = 0; i < BOOT_N; i++)
		for (size_t k = 0; k < boot_len[i]; k += 97)
			CHECK(boot_blk[i][k] == 0x40 + i);
	/* realloc copies them out, larger and smaller; a failed one changes
	 * nothing */
	errno = 0;
	CHECK(cairn_realloc(boot_blk[2], SIZE_MAX - 4096) == NULL && errno == ENOMEM);
	unsigned char *g = cairn_realloc(boot_blk[2], 9000);
	REQUIRE(g);
	CHECK(g != boot_blk[2] && g[0] == 0x42 && g[3999] == 0x42);
	unsigned char *s = cairn_realloc(boot_blk[3], 10);
	REQUIRE(s);
	CHECK(s != boot_blk[3] && s[0] == 0x43 && s[9] == 0x43);
	CHECK(boot_blk[3][69999] == 0x43);
	cairn_free(g);
	cairn_free(s);
	CHECK(cairn_realloc(boot_blk[1], 0) == NULL); /* freed: ignored */
	CHECK(boot_blk[1][99] == 0x41);
	CHECK_EQ(cairn_host_reports(), reports); /* none taken for a stranger's */
}

/* ---- errno across a thread's first call ---- */

static void *first_free_thread(void *arg)
{
	errno = 555;
	cairn_free(arg); /* the first call: takes a slot, a remote free */
	int bad = errno != 555;
	void *p = NULL;
	errno = 556;
	bad |= cairn_posix_memalign(&p, 64, 100) != 0 || errno != 556;
	cairn_free(p);
	return (void *)(uintptr_t)bad;
}

static void *first_memalign_thread(void *arg)
{
	(void)arg;
	void *p = NULL;
	errno = 557;
	int bad = cairn_posix_memalign(&p, 4096, 100000) != 0 || errno != 557;
	errno = 558;
	cairn_free(p);
	bad |= errno != 558;
	return (void *)(uintptr_t)bad;
}

static void test_first_calls(void)
{
	void *(*fn[])(void *) = { first_free_thread, first_memalign_thread };
	for (unsigned i = 0; i < 2; i++)
		for (unsigned r = 0; r < 8; r++) {
			pthread_t t;
			void *bad;
			REQUIRE(pthread_create(&t, NULL, fn[i],
					       i ? NULL : cairn_malloc(r % 2 ? 200000 : 48)) == 0);
			pthread_join(t, &bad);
			CHECK(bad == NULL);
		}
}

/* ---- more live threads than slots, freeing each other's ----
 *
 * Every thread allocates (some on a heap of their own, the rest on the
 * shared one), then reallocs and frees its neighbour's objects: a slot's
 * objects through the shared heap and the other way round, while the
 * neighbour may already have gone. */
#define CROSS_THREADS 270
#define CROSS_OBJS 24
static unsigned char *cross[CROSS_THREADS][CROSS_OBJS];
static pthread_barrier_t cross_made;
static _Atomic unsigned cross_bad;

static size_t cross_size(unsigned i)
{
	return i % 6 == 5 ? 70000 + i * 1000 : 16 + i * 48;
}

static void *cross_thread(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, next = (me + 1) % CROSS_THREADS;
	for (unsigned i = 0; i < CROSS_OBJS; i++) {
		if (!(cross[me][i] = cairn_malloc(cross_size(i))))
			abort();
		memset(cross[me][i], (int)(me & 0xff), cross_size(i));
	}
	pthread_barrier_wait(&cross_made);
	for (unsigned i = 0; i < CROSS_OBJS; i++) {
		unsigned char *p = cross[next][i];
		size_t n = cross_size(i);
		if (p[0] != (next & 0xff) || p[n - 1] != (next & 0xff))
			atomic_fetch_add(&cross_bad, 1);
		if (i % 2) {
			unsigned char *q = cairn_realloc(p, i % 4 == 1 ? n * 2 : n / 2 + 1);
			if (!q || q[0] != (next & 0xff) || q[n / 2] != (next & 0xff))
				atomic_fetch_add(&cross_bad, 1);
			p = q;
		}
		cairn_free(p);
	}
	return NULL;
}

static void test_cross_threads(void)
{
	pthread_t t[CROSS_THREADS];
	pthread_barrier_init(&cross_made, NULL, CROSS_THREADS);
	for (unsigned i = 0; i < CROSS_THREADS; i++) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 << 10);
		REQUIRE(pthread_create(&t[i], &attr, cross_thread, (void *)(uintptr_t)i) == 0);
		pthread_attr_destroy(&attr);
	}
	for (unsigned i = 0; i < CROSS_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&cross_made);
	CHECK_EQ(atomic_load(&cross_bad), 0);
	CHECK_EQ(churn_some(), 0);
}

/* ---- alignments ---- */

static int aligned_ok(unsigned char *p, size_t size, size_t align)
{
	if (!p || ((uintptr_t)p & (align - 1)) || cairn_malloc_usable_size(p) < size)
		return 0;
	p[0] = 1;
	p[size - 1] = 2;
	return 1;
}

static void test_big_alignments(void)
{
	for (size_t align = 1u << 20; align <= (1u << 30); align <<= 1) {
		const size_t sizes[] = { 1, 4096, 70000, align / 2, align, align + 1 };
		for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t size = sizes[i];
			/* a span of align + size does not fit a GiB: skip those */
			if (align >= (1u << 30) && size > 4096)
				continue;
			void *p = NULL;
			errno = 99;
			CHECK_EQ(cairn_posix_memalign(&p, align, size), 0);
			CHECK(errno == 99);
			CHECK(aligned_ok(p, size, align));
			cairn_free(p);
			p = cairn_aligned_alloc(align, size);
			CHECK(aligned_ok(p, size, align));
			cairn_free(p);
			p = cairn_memalign(align, size);
			CHECK(aligned_ok(p, size, align));
			cairn_free(p);
		}
	}
}

static void test_usable(void)
{
	for (size_t align = 16; align <= (1u << 20); align <<= 1)
		for (size_t b = 1; b <= (1u << 20); b = b * 2 + 1)
			for (size_t size = b - 1; size <= b + 1; size++) {
				unsigned char *p = cairn_aligned_alloc(align, size);
				REQUIRE(p);
				CHECK(aligned_ok(p, size ? size : 1, align));
				size_t u = cairn_malloc_usable_size(p);
				p[0] = p[u - 1] = 0x5c; /* (the ends: cheap under TSan) */
				/* realloc of an aligned block: the contents kept */
				unsigned char *q = cairn_realloc(p, u + 1);
				REQUIRE(q);
				CHECK(cairn_malloc_usable_size(q) >= u + 1);
				CHECK(q[0] == 0x5c && q[u - 1] == 0x5c);
				cairn_free(q);
			}
	for (size_t size = 0; size < 3 * 4096 + 3; size += 509) {
		unsigned char *v = cairn_valloc(size), *pv = cairn_pvalloc(size);
		CHECK(aligned_ok(v, size ? size : 1, 4096));
		size_t pages = (size + 4095) / 4096 * 4096;
		CHECK(aligned_ok(pv, pages ? pages : 4096, 4096));
		cairn_free(v);
		cairn_free(pv);
	}
}

/* ---- fork from a fork handler ----
 *
 * Handlers registered before the shim's (which it registers at load): their
 * prepare runs after the shim's, their parent and child handlers before
 * the shim's, so the shim's locks are held and its gate closed while they
 * run. Each allocates and frees, small and large, and in the phase under
 * test forks once more: the shim's prepare handler runs again on the
 * thread that already holds its locks. The inner child allocates and
 * exits; the outer child allocates, runs a thread and exits. A hang is
 * ended by the alarm. */
enum { NEST_NONE, NEST_PREPARE, NEST_PARENT, NEST_CHILD };
static int nest_phase, nest_busy, nest_bad;

static int churn_some(void)
{
	void *p[8];
	for (unsigned i = 0; i < 8; i++)
		if (!(p[i] = cairn_malloc(i % 2 ? 100000 + i * 4096 : 40 + i * 100)))
			return 1;
	for (unsigned i = 0; i < 8; i++)
		cairn_free(p[i]);
	return 0;
}

static void nest_handler(int phase)
{
	if (nest_phase == NEST_NONE)
		return;
	nest_bad |= churn_some();
	if (phase != nest_phase || nest_busy)
		return;
	nest_busy = 1;
	pid_t pid = fork();
	if (pid == 0)
		_exit(churn_some());
	int st;
	nest_bad |= pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st);
	nest_busy = 0;
}

static void nest_prepare(void) { nest_handler(NEST_PREPARE); }
static void nest_parent(void) { nest_handler(NEST_PARENT); }
static void nest_child(void) { nest_handler(NEST_CHILD); }

static void *nest_thread(void *arg)
{
	return (void *)(uintptr_t)churn_some() + (uintptr_t)arg;
}

static void test_nested_fork(void)
{
	for (int phase = NEST_PREPARE; phase <= NEST_CHILD; phase++) {
		nest_phase = phase;
		nest_bad = 0;
		alarm(20);
		pid_t pid = fork();
		if (pid == 0) {
			nest_phase = NEST_NONE;
			pthread_t t;
			void *r = (void *)1;
			if (pthread_create(&t, NULL, nest_thread, NULL) == 0)
				pthread_join(t, &r);
			_exit(nest_bad || churn_some() || r);
		}
		nest_phase = NEST_NONE;
		int st;
		REQUIRE(pid > 0 && waitpid(pid, &st, 0) == pid);
		alarm(0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		CHECK_EQ(nest_bad, 0);
		CHECK_EQ(churn_some(), 0); /* the locks given back */
	}
}

/* ---- exhaustion (run alone: a memory of 1 GiB) ----
 *
 * Large blocks until nothing is left, then every entry point asked for
 * more: NULL (or the error returned) with ENOMEM, the block a realloc
 * was asked to grow untouched; everything freed, the memory serves again. */
static void *fill[4096];

static int exhaust(void)
{
	unsigned n = 0;
	for (size_t size = 64u << 20; size >= (1u << 20); size /= 2)
		while (n < 4096 && (fill[n] = cairn_malloc(size)))
			n++;
	REQUIRE(n > 0 && n < 4096);
	const size_t big = 2u << 20;
	errno = 0;
	CHECK(cairn_malloc(big) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_calloc(1, big) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_aligned_alloc(4096, big) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_memalign(1u << 20, big) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_valloc(big) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_pvalloc(big) == NULL && errno == ENOMEM);
	void *out = (void *)1;
	errno = 1234;
	CHECK_EQ(cairn_posix_memalign(&out, 64, big), ENOMEM);
	CHECK(out == (void *)1 && errno == 1234);
	unsigned char *keep = fill[n - 1];
	memset(keep, 0x6d, 1u << 20);
	errno = 0;
	CHECK(cairn_realloc(keep, 64u << 20) == NULL && errno == ENOMEM);
	errno = 0;
	CHECK(cairn_reallocarray(keep, 64, 1u << 20) == NULL && errno == ENOMEM);
	CHECK(keep[0] == 0x6d && keep[(1u << 20) - 1] == 0x6d);
	CHECK(cairn_malloc_usable_size(keep) >= (1u << 20));
	for (unsigned i = 0; i < n; i++)
		cairn_free(fill[i]);
	void *again = cairn_malloc(64u << 20);
	CHECK(again != NULL);
	cairn_free(again);
	printf("exhausted after %u blocks, %llu GiB\n", n,
	       (unsigned long long)cairn_shim_memory_gib());
	return check_done("shim_api_test exhaust");
}

/* Before the shim's, which it registers at load: see test_nested_fork. */
__attribute__((constructor(101))) static void nest_register(void)
{
	REQUIRE(pthread_atfork(nest_prepare, nest_parent, nest_child) == 0);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "exhaust")) {
		setenv("CAIRN_MEMORY_GIB", "1", 1);
		return exhaust();
	}
	void *p = NULL;
	boot_armed = 1;
	errno = 4321;
	/* the process's first call: it makes the instance */
	CHECK_EQ(cairn_posix_memalign(&p, 256, 1000), 0);
	CHECK_EQ(errno, 4321);
	CHECK(p && ((uintptr_t)p & 255) == 0);
	cairn_free(p);
	test_boot();
	test_first_calls();
	test_cross_threads();
	test_usable();
	test_big_alignments();
	if (argc > 1 && !strcmp(argv[1], "fork"))
		test_nested_fork();
	return check_done("shim_api_test");
}
