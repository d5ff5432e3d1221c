/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the objects front end: every size class, alignment,
 * calloc/realloc, large blocks, every error path (reported, nothing
 * changed), remote frees and offline heaps on explicit heaps, exhaustion,
 * and destroy giving every frame back.
 */
#include <string.h>

#include "../check.h"
#include "../../percpu/objects_layout.h"
#include "objtest.h"

static struct cairn_objects_stats stats(struct cairn_objects *o)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st;
}

static void test_classes(void)
{
	unsigned prev = 0;
	for (size_t size = 0; size <= CAIRN_OBJ_SMALL_MAX; size++) {
		unsigned c = cairn_obj_class(size);
		size_t cs = cairn_obj_class_size(c);
		if (c >= CAIRN_OBJ_CLASSES || cs < size || (c && cairn_obj_class_size(c - 1) >= size) ||
		    c < prev) {
			CHECK(!"class table");
			fprintf(stderr, "size %zu -> class %u (%zu)\n", size, c, cs);
			return;
		}
		prev = c;
	}
	CHECK_EQ(cairn_obj_class(CAIRN_OBJ_SMALL_MAX), CAIRN_OBJ_CLASSES - 1);
	CHECK_EQ(cairn_obj_class_size(0), 16);
	CHECK_EQ(cairn_obj_class_size(CAIRN_OBJ_CLASSES - 1), CAIRN_OBJ_SMALL_MAX);
	/* about four classes per power of two, sizes multiples of 16 */
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++)
		CHECK(cairn_obj_class_size(c) % 16 == 0);
}

static void test_every_class(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	enum { N = 40 };
	for (unsigned c = 0; c < CAIRN_OBJ_CLASSES; c++) {
		size_t size = cairn_obj_class_size(c);
		unsigned order = cairn_obj_class_order(o, c);
		/* the arrays by order, and desc_get's static assertion */
		CHECK(order >= 2 && order < OBJ_SLAB_ORDERS);
		CHECK((4096u << order) / size >= 4);
		/* A slab wastes at most an eighth of itself: the tail no
		 * object fits in, and the objects past the live bitmap's
		 * 1024 that are never carved. */
		size_t bytes = 4096u << order, n = bytes / size;
		CHECK(bytes - (n > 1024 ? 1024 : n) * size <= bytes / 8);
		void *p[N];
		for (unsigned i = 0; i < N; i++) {
			p[i] = cairn_heap_alloc(h, size);
			REQUIRE(p[i]);
			CHECK(((uintptr_t)p[i] & 15) == 0);
			CHECK_EQ(cairn_objects_usable_size(o, p[i]), size);
			memset(p[i], (int)i, size);
		}
		for (unsigned i = 0; i < N; i++) {
			CHECK(((unsigned char *)p[i])[0] == (unsigned char)i);
			CHECK(((unsigned char *)p[i])[size - 1] == (unsigned char)i);
			for (unsigned j = 0; j < i; j++)
				CHECK(p[i] != p[j]);
		}
		CHECK_EQ(stats(o).objects, N);
		for (unsigned i = 0; i < N; i++)
			CHECK_EQ(cairn_heap_free(h, p[i]), 0);
		CHECK_EQ(cairn_objects_validate(o), 0);
		/* a size just above the previous class lands here */
		if (c) {
			void *q = cairn_heap_alloc(h, cairn_obj_class_size(c - 1) + 1);
			CHECK_EQ(cairn_objects_usable_size(o, q), size);
			cairn_heap_free(h, q);
		}
	}
	CHECK_EQ(stats(o).objects, 0);
	void *z = cairn_heap_alloc(h, 0);
	CHECK(z && cairn_objects_usable_size(o, z) == 16);
	cairn_heap_free(h, z);
	cairn_heap_offline(h);
	CHECK_EQ(stats(o).slabs, 0);
	cairn_heap_online(h);
}

/* The fast path alone: a pop from the class's current slab of the size's
 * class, NULL when the class has none at hand, always NULL hardened; then
 * the slow path alone makes the slab. */
static void test_alloc_fast(struct cairn_objects *o, bool harden)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	CHECK(cairn_heap_alloc_fast(h, CAIRN_OBJ_SMALL_MAX + 1) == NULL);
	for (size_t size = 0; size <= CAIRN_OBJ_SMALL_MAX; size += size < 1100 ? 1 : 97) {
		/* no slab of the class yet */
		CHECK(cairn_heap_alloc_fast(h, size) == NULL);
		void *a = cairn_heap_alloc_slow(h, size); /* the caller's next step */
		REQUIRE(a);
		CHECK_EQ(cairn_objects_usable_size(o, a), cairn_obj_class_size(cairn_obj_class(size)));
		void *b = cairn_heap_alloc_fast(h, size);
		size_t cs = cairn_obj_class_size(cairn_obj_class(size));
		if (harden) {
			CHECK(b == NULL); /* a hardened heap's fast slots are empty */
		} else if (!b && cs > 2048) {
			/* nothing to check: a slab is carved a page at a time,
			 * and above 2 KiB the first allocation may have taken
			 * all there was */
		} else if (!b || b == a || cairn_objects_usable_size(o, b) != cs) {
			CHECK(!"alloc_fast: an object of the size's class");
			fprintf(stderr, "size %zu: %p %p\n", size, a, b);
			return;
		}
		CHECK_EQ(cairn_objects_validate(o), 0);
		cairn_heap_free(h, a);
		if (b)
			cairn_heap_free(h, b);
		/* the class's slab goes back: nothing may be popped from it */
		cairn_heap_offline(h);
		cairn_heap_online(h);
		CHECK(cairn_heap_alloc_fast(h, size) == NULL);
		CHECK_EQ(cairn_objects_validate(o), 0);
	}
	CHECK_EQ(stats(o).objects, 0);
}

/* Unhardened, the fast path takes the owner's own frees back: once the
 * current slab's carved objects are handed out, an object its owner
 * freed is the next one out (the objects of local_free become the free
 * list there, not out of line). Hardened, it stays NULL. */
static void test_alloc_fast_local(struct cairn_objects *o, bool harden)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	enum { MAX = 8192 };
	static void *got[MAX];
	unsigned n = 0;
	REQUIRE((got[n++] = cairn_heap_alloc(h, 200)) != NULL);
	while (n < MAX && (got[n] = cairn_heap_alloc_fast(h, 200)) != NULL)
		n++;
	REQUIRE(n < MAX);
	if (harden) {
		CHECK_EQ(n, 1);
	} else {
		void *x = got[n / 2];
		CHECK_EQ(cairn_heap_free(h, x), 0);
		void *y = cairn_heap_alloc_fast(h, 200), *z;
		CHECK(y == x);
		got[n / 2] = y ? y : cairn_heap_alloc(h, 200);
		CHECK((z = cairn_heap_alloc_fast(h, 200)) == NULL);
		if (z)
			cairn_heap_free(h, z);
	}
	CHECK_EQ(cairn_objects_validate(o), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_heap_free(h, got[i]), 0);
	CHECK_EQ(stats(o).objects, 0);
}

/* Everything of got[0..n) still held back to h, and the instance empty. */
static void free_got(struct cairn_objects *o, struct cairn_heap *h, void **got, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (got[i])
			CHECK_EQ(cairn_heap_free(h, got[i]), 0);
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* The owner's free of an object of its class's current slab is the next
 * object out, even while that slab's free list still holds others (it goes
 * onto that list, not onto local_free). An object of another of its slabs
 * (full, then available), freed by the owner or freed remotely and
 * collected, waits in that slab until the current slab runs dry; then
 * the refill takes that slab with both, and every object comes out once. */
static void test_cur_free_first(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	cairn_heap_offline(h); /* no slab left: a fresh one for the class */
	cairn_heap_online(h);
	enum { SIZE = 512, MAX = 4096 };
	static void *got[MAX];
	void *a = cairn_heap_alloc(h, SIZE), *b = cairn_heap_alloc(h, SIZE), *c;
	REQUIRE(a && b);
	CHECK_EQ(cairn_heap_free(h, a), 0);
	CHECK((c = cairn_heap_alloc(h, SIZE)) == a);
	CHECK_EQ(cairn_heap_free(h, b), 0);
	CHECK((b = cairn_heap_alloc(h, SIZE)) != NULL);
	CHECK(cairn_objects_usable_size(o, b) == SIZE);
	CHECK_EQ(cairn_heap_free(h, c), 0);
	CHECK_EQ(cairn_heap_free(h, b), 0);
	CHECK_EQ(cairn_objects_validate(o), 0);

	/* Fill the first slab and start a second; free two objects of the
	 * first (FULL, then AVAIL). */
	uint64_t slabs0 = stats(o).slabs;
	unsigned n = 0;
	while (n < MAX && stats(o).slabs < slabs0 + 2)
		REQUIRE((got[n++] = cairn_heap_alloc(h, SIZE)));
	REQUIRE(n < MAX && n > 2);
	void *x = got[0], *y = got[1];
	struct cairn_heap *h1 = cairn_objects_heap(o, 1);
	CHECK_EQ(cairn_heap_free(h, x), 0);
	CHECK_EQ(cairn_heap_free(h1, y), 0);
	cairn_heap_flush(h1); /* y's message posted, not collected */
	got[0] = got[1] = NULL;
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* The current slab runs dry first (every object carved), then the
	 * refill collects y and takes the first slab back with x and y. */
	size_t per = (CAIRN_FRAME_SIZE << cairn_obj_class_order(o, cairn_obj_class(SIZE))) / SIZE;
	unsigned seen = 0, m = n, first = 0;
	while (m < MAX && seen < 2) {
		void *p = cairn_heap_alloc(h, SIZE);
		REQUIRE(p);
		if (p == x || p == y)
			first = seen++ ? first : m - n;
		got[m++] = p;
	}
	CHECK_EQ(seen, 2);
	CHECK_EQ(first, per - 1); /* the second slab held one object */
	CHECK_EQ(stats(o).slabs, slabs0 + 2);
	CHECK_EQ(cairn_objects_validate(o), 0);
	free_got(o, h, got, m);
}

/* The avail list is first in, first out: of two full slabs that each get
 * a free, the one freed into first is the next current slab, then the
 * other; validate checks the list's tail all along. */
static void test_avail_fifo(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	enum { SIZE = 512, MAX = 4096 };
	static void *got[MAX];
	size_t per = (CAIRN_FRAME_SIZE << cairn_obj_class_order(o, cairn_obj_class(SIZE))) / SIZE;
	unsigned n = 0;
	/* two full slabs and a current one holding one object */
	while (n < 2 * per + 1)
		REQUIRE((got[n++] = cairn_heap_alloc(h, SIZE)));
	void *x = got[per], *y = got[0]; /* the second slab's, then the first's */
	CHECK_EQ(cairn_heap_free(h, x), 0);
	CHECK_EQ(cairn_heap_free(h, y), 0);
	got[per] = got[0] = NULL;
	CHECK_EQ(cairn_objects_validate(o), 0);
	for (unsigned i = 0; i < per - 1; i++) /* the current slab runs dry */
		REQUIRE((got[n++] = cairn_heap_alloc(h, SIZE)));
	CHECK((got[n++] = cairn_heap_alloc(h, SIZE)) == x);
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK((got[n++] = cairn_heap_alloc(h, SIZE)) == y);
	CHECK_EQ(cairn_objects_validate(o), 0);
	free_got(o, h, got, n);
}

static void test_alignment(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	for (size_t align = 1; align <= (4u << 20); align <<= 1) {
		size_t sizes[] = { 1, align > 1 ? align - 1 : 1, align, align + 1, 3 * align, 100 };
		for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
			void *p = cairn_heap_alloc_aligned(h, sizes[k], align);
			REQUIRE(p);
			CHECK(((uintptr_t)p & (align - 1)) == 0);
			CHECK(cairn_objects_usable_size(o, p) >= sizes[k]);
			memset(p, 0xab, sizes[k]);
			CHECK_EQ(cairn_heap_free(h, p), 0);
		}
	}
	CHECK(cairn_heap_alloc_aligned(h, 16, 3) == NULL);
	CHECK(cairn_heap_alloc_aligned(h, 16, 0) == NULL);
	CHECK(cairn_heap_alloc_aligned(h, 16, 48) == NULL);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

static void test_calloc_realloc(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	/* dirty some memory, then calloc must still be zero */
	for (size_t size = 16; size <= (256u << 10); size *= 2) {
		void *d = cairn_heap_alloc(h, size);
		memset(d, 0xff, size);
		cairn_heap_free(h, d);
		unsigned char *p = cairn_heap_calloc(h, 1, size);
		REQUIRE(p);
		for (size_t i = 0; i < size; i++)
			if (p[i]) {
				CHECK(!"calloc not zero");
				break;
			}
		cairn_heap_free(h, p);
	}
	CHECK(cairn_heap_calloc(h, SIZE_MAX / 2 + 1, 2) == NULL);
	CHECK(cairn_heap_calloc(h, SIZE_MAX, SIZE_MAX) == NULL);
	CHECK(cairn_heap_calloc(h, (size_t)1 << 33, (size_t)1 << 33) == NULL);
	void *z = cairn_heap_calloc(h, 0, 8);
	CHECK(z != NULL);
	cairn_heap_free(h, z);

	/* realloc grows and shrinks through every range, keeping contents */
	unsigned char *p = cairn_heap_realloc(h, NULL, 10);
	REQUIRE(p);
	for (unsigned i = 0; i < 10; i++)
		p[i] = (unsigned char)i;
	size_t sizes[] = { 30, 100, 1000, 5000, 70000, 300000, 2000, 17, 200000, 12 };
	size_t have = 10;
	for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		unsigned char *q = cairn_heap_realloc(h, p, sizes[k]);
		REQUIRE(q);
		size_t keep = have < sizes[k] ? have : sizes[k];
		for (size_t i = 0; i < keep; i++)
			if (q[i] != (unsigned char)i) {
				CHECK(!"realloc lost contents");
				break;
			}
		for (size_t i = 0; i < sizes[k]; i++)
			q[i] = (unsigned char)i;
		CHECK(cairn_objects_usable_size(o, q) >= sizes[k]);
		p = q;
		have = sizes[k];
	}
	/* a request that cannot be met: NULL, and p untouched */
	CHECK(cairn_heap_realloc(h, p, (size_t)1 << 45) == NULL);
	CHECK(p[5] == 5);
	CHECK(cairn_heap_realloc(h, p, 0) == NULL); /* frees */
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(stats(o).large, 0);
}

static void test_large(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	size_t sizes[] = { CAIRN_OBJ_SMALL_MAX + 1, 100000, 1u << 20, (3u << 20) + 5 };
	for (unsigned k = 0; k < 4; k++) {
		unsigned char *p = cairn_heap_alloc(h, sizes[k]);
		REQUIRE(p);
		CHECK(((uintptr_t)p & 4095) == 0);
		CHECK(cairn_objects_usable_size(o, p) >= sizes[k]);
		p[0] = 1;
		p[sizes[k] - 1] = 2;
		CHECK_EQ(stats(o).large, 1);
		CHECK_EQ(cairn_heap_free(h, p + 4096), sizes[k] < (2u << 20) ? CAIRN_EALIGN
									 : CAIRN_ERANGE);
		CHECK_EQ(cairn_heap_free(h, p + 16), CAIRN_EALIGN);
		CHECK_EQ(stats(o).large, 1);
		CHECK_EQ(cairn_heap_free(h, p), 0);
		CHECK_EQ(stats(o).large, 0);
		CHECK(cairn_heap_free(h, p) != 0); /* double free */
	}
	CHECK(cairn_heap_alloc(h, (size_t)1 << 50) == NULL);
}

/* cairn_heap_covers: the instance's memory, every byte of it and nothing
 * else, whatever lies there (an object, a slab's free object, a page
 * never used); it changes nothing and reports nothing. */
static void test_covers(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	char *a = cairn_heap_alloc(h, 40);
	REQUIRE(a);
	uint64_t objs = stats(o).objects, r0 = cairn_host_reports();
	uintptr_t lo = (uintptr_t)cairn_port_phys_to_virt(0), hi = lo + objtest_mem;
	char local;
	const void *outside[] = { NULL, &local, (void *)(lo - 1), (void *)hi,
				  (void *)(hi + 4096), (void *)UINTPTR_MAX };
	for (unsigned i = 0; i < sizeof outside / sizeof outside[0]; i++) {
		CHECK(!cairn_heap_covers(h, outside[i]));
		CHECK(!cairn_heap_covers(h1, outside[i]));
	}
	const void *inside[] = { a, a + 1, (void *)lo, (void *)(hi - 1), (void *)(lo + objtest_mem / 2) };
	for (unsigned i = 0; i < sizeof inside / sizeof inside[0]; i++) {
		CHECK(cairn_heap_covers(h, inside[i]));
		CHECK(cairn_heap_covers(h1, inside[i]));
	}
	CHECK(cairn_host_reports() == r0);
	CHECK_EQ(stats(o).objects, objs);
	cairn_heap_free(h, a);
	CHECK(cairn_heap_covers(h, a)); /* freed: still the instance's memory */
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* Hardened: on CPU h1, free four objects of h into h1's pending batch,
 * then repeat one of them: the first freed (repeat 0: the batch's tail),
 * one in the middle (1, 2) or the last (3: its head). The repeat is refused
 * at the free with one report, nothing changed: a fifth free joins the
 * batch, and once it is posted and collected all five objects are back. */
static void check_batch_repeat(struct cairn_objects *o, struct cairn_heap *h,
			       struct cairn_heap *h1, unsigned repeat)
{
	enum { FREED = 4 };
	char *x[FREED + 1];
	for (unsigned i = 0; i <= FREED; i++)
		REQUIRE((x[i] = cairn_heap_alloc(h, 64)) != NULL);
	uint64_t objs = stats(o).objects;
	for (unsigned i = 0; i < FREED; i++)
		CHECK_EQ(cairn_heap_free(h1, x[i]), 0);
	uint64_t before = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h1, x[repeat]), CAIRN_EFREE);
	CHECK(cairn_host_reports() == before + 1);
	CHECK_EQ(cairn_heap_free(h1, x[FREED]), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h);
	CHECK_EQ(stats(o).objects, objs - FREED - 1);
	CHECK(cairn_host_reports() == before + 1);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* Hardened: every misuse is reported and changes nothing. */
static void test_errors(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	uint64_t r0 = cairn_host_reports();
	cairn_host_reports_quiet(1);
	char *a = cairn_heap_alloc(h, 48), *b = cairn_heap_alloc(h, 48);
	REQUIRE(a && b);
	int local;
	CHECK_EQ(cairn_heap_free(h, &local), CAIRN_ERANGE);          /* foreign */
	CHECK_EQ(cairn_heap_free(h, (void *)16), CAIRN_ERANGE);
	CHECK_EQ(cairn_heap_free(h, a + 16), CAIRN_EALIGN);          /* interior */
	CHECK_EQ(cairn_heap_free(h, a + 1), CAIRN_EALIGN);           /* misaligned */
	CHECK_EQ(cairn_heap_free(h, b + 48 * 3), CAIRN_EFREE);       /* never handed out */
	CHECK_EQ(stats(o).objects, 2);
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK_EQ(cairn_heap_free(h, a), 0);
	CHECK_EQ(cairn_heap_free(h, a), CAIRN_EFREE);                /* double free */
	CHECK_EQ(stats(o).objects, 1);
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK(cairn_objects_usable_size(o, &local) == 0);
	CHECK(cairn_heap_realloc(h, &local, 10) == NULL);
	/* an interior pointer, of a slab object or of a large block, has no
	 * usable size: realloc refuses it, nothing is copied or freed */
	CHECK_EQ(cairn_objects_usable_size(o, b + 16), 0);
	CHECK_EQ(cairn_objects_usable_size(o, b + 1), 0);
	CHECK(cairn_heap_realloc(h, b + 16, 10) == NULL);
	CHECK_EQ(stats(o).objects, 1);
	char *big = cairn_heap_alloc(h, 4 * CAIRN_OBJ_SMALL_MAX);
	REQUIRE(big);
	CHECK(cairn_objects_usable_size(o, big) >= 4 * CAIRN_OBJ_SMALL_MAX);
	CHECK_EQ(cairn_objects_usable_size(o, big + 16), 0);
	CHECK_EQ(cairn_objects_usable_size(o, big + 4096), 0);
	CHECK(cairn_heap_realloc(h, big + 16, 10) == NULL);
	CHECK(cairn_objects_usable_size(o, big) >= 4 * CAIRN_OBJ_SMALL_MAX);
	CHECK_EQ(cairn_heap_free(h, big), 0);
	/* realloc of a freed object, to a size it still holds and to a larger
	 * one: refused and reported, the object stays free (not handed back
	 * to the caller while the free list holds it too) */
	for (size_t size = 40; size <= 400; size *= 10) {
		uint64_t was = cairn_host_reports();
		CHECK(cairn_heap_realloc(h, a, size) == NULL);
		CHECK(cairn_host_reports() == was + 1);
		CHECK_EQ(stats(o).objects, 1);
		CHECK_EQ(cairn_objects_validate(o), 0);
	}

	/* A write after free over a free-list link is caught on allocation.
	 * No 32-byte object is live: after offline/online the class starts
	 * a fresh slab, carved in address order, so x's neighbour heads the
	 * free list. Overwrite its link with a plausible pointer. */
	cairn_heap_offline(h);
	cairn_heap_online(h);
	char *x = cairn_heap_alloc(h, 32);
	REQUIRE(x);
	uint64_t before = cairn_host_reports();
	*(uintptr_t *)(x + 32) = (uintptr_t)(x + 8);
	char *y = cairn_heap_alloc(h, 32);
	CHECK(y == x + 32);
	CHECK(cairn_host_reports() == before + 1);
	char *z = cairn_heap_alloc(h, 32);
	CHECK(z && z != x + 8);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_free(h, x);
	cairn_heap_free(h, y);
	cairn_heap_free(h, z);
	/* a free by the owner of an object it collected from another CPU */
	struct cairn_heap *h1 = cairn_objects_heap(o, 1);
	char *e = cairn_heap_alloc(h, 64);
	CHECK_EQ(cairn_heap_free(h1, e), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h);
	before = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h, e), CAIRN_EFREE);
	CHECK(cairn_host_reports() == before + 1);
	/* repeat frees of objects in the freeing CPU's own batch: its tail
	 * (the word the post overwrites), the middle, and its head (newest:
	 * free(p); free(p) on another CPU). Pushed, a repeat would link p to
	 * the head over its link to the objects freed before it, which the
	 * owner's walk would then lose, or meet p twice */
	for (unsigned repeat = 0; repeat < 4; repeat++)
		check_batch_repeat(o, h, h1, repeat);
	cairn_heap_free(h, b);
	cairn_host_reports_quiet(0);
	CHECK(cairn_host_reports() > r0);
}

/* Remote frees, batching, and an offline heap's slabs going back. */
static void test_remote(struct cairn_objects *o)
{
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	enum { N = 3000 };
	static void *p[N];
	for (unsigned i = 0; i < N; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h0, 16 + (i % 7) * 100)));
	uint64_t slabs = stats(o).slabs;
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	struct cairn_objects_stats st = stats(o);
	CHECK(st.remote_posted >= N / 64 - 1);
	CHECK_EQ(st.objects, N); /* counted until the owner collects */
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).objects, 0);
	CHECK(stats(o).slabs <= slabs);
	CHECK_EQ(cairn_objects_validate(o), 0);

	/* The bounds on what a heap holds in its batches, exactly: a batch
	 * goes at 64 objects, and all of them once the heap's remote frees
	 * since its last flush pass 1 MiB, whatever their number. */
	uint64_t posted = stats(o).remote_posted, robjs = stats(o).remote_objects;
	for (unsigned i = 0; i < 64; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h0, 16)));
	for (unsigned i = 0; i < 63; i++)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	CHECK_EQ(stats(o).remote_posted, posted);
	CHECK_EQ(cairn_heap_free(h1, p[63]), 0);
	st = stats(o);
	CHECK_EQ(st.remote_posted, posted + 1);
	CHECK_EQ(st.remote_objects, robjs + 64);
	cairn_heap_flush(h1); /* (the count of bytes starts again) */
	CHECK_EQ(stats(o).remote_posted, posted + 1);
	for (unsigned i = 0; i < 17; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h0, CAIRN_OBJ_SMALL_MAX)));
	for (unsigned i = 0; i < 16; i++) /* 1 MiB: not more */
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	CHECK_EQ(stats(o).remote_posted, posted + 1);
	CHECK_EQ(cairn_heap_free(h1, p[16]), 0);
	st = stats(o);
	CHECK_EQ(st.remote_posted, posted + 2);
	CHECK_EQ(st.remote_objects, robjs + 64 + 17);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* every message collected once, by h0 itself: per heap, h1 posted
	 * them and h0 collected them */
	st = stats(o);
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);
	struct cairn_objects_stats s0, s1;
	cairn_objects_heap_stats(o, 0, &s0);
	cairn_objects_heap_stats(o, 1, &s1);
	CHECK(s1.remote_posted >= 2 && s1.remote_objects >= 64 + 17);
	CHECK(s0.remote_collected >= 2);
	CHECK_EQ(s0.remote_posted + s1.remote_posted, st.remote_posted);
	CHECK_EQ(s0.remote_collected + s1.remote_collected, st.remote_collected);
	cairn_objects_heap_stats(o, 1u << 20, &s0); /* no such heap: zeros */
	CHECK_EQ(s0.remote_posted, 0);
	CHECK_EQ(s0.slabs, 0);

	/* h0 allocates, goes offline; h1 frees: h1 collects for h0 */
	for (unsigned i = 0; i < N; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h0, 200)));
	cairn_heap_offline(h0);
	CHECK(stats(o).slabs > 0);
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	cairn_heap_offline(h1);
	st = stats(o);
	CHECK_EQ(st.slabs, 0);
	CHECK_EQ(st.objects, 0);
	CHECK(st.offline_collects > 0);
	CHECK_EQ(st.remote_posted, st.remote_collected + st.offline_collects);
	cairn_heap_online(h0);
	cairn_heap_online(h1);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* Collection splices runs of one slab's objects: runs that straddle two
 * slabs, runs of two alternating slabs, a full slab emptied by one run
 * (released), the current slab emptied (kept), and a message whose runs
 * leave slabs partly used. Counts, lists and slab numbers must come out
 * exact; validate checks every slab's accounting. */
static void test_remote_runs(struct cairn_objects *o)
{
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	cairn_heap_offline(h0); /* no slab of h0 left: a known start */
	cairn_heap_online(h0);
	uint64_t slabs0 = stats(o).slabs;
	enum { N = 2600 }; /* 64 B: 1024 per slab, so two full slabs and a current one */
	static char *p[N];
	for (unsigned i = 0; i < N; i++) {
		REQUIRE((p[i] = cairn_heap_alloc(h0, 64)));
		p[i][0] = (char)i;
	}
	CHECK_EQ(stats(o).slabs, slabs0 + 3);
	/* Free 1099..40, last first: batches of 64 start mid-slab, and one
	 * straddles the first two slabs, whose blocks are usually adjacent:
	 * a run of the first must stop at its end, where the second's first
	 * object lies (a batch is a stack, so this one lists them upwards). */
	for (unsigned i = 1100; i-- > 40;)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).objects, N - 1060);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* Alternate two slabs (runs of one and two objects). */
	for (unsigned i = 1100; i < 1500; i++) {
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
		CHECK_EQ(cairn_heap_free(h1, p[i + 1000]), 0);
	}
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).objects, N - 1860);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* The first slab is emptied by its last run (0..39): released. */
	for (unsigned i = 0; i < 40; i++)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).slabs, slabs0 + 2);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* Everything else: the current slab stays, and so does the second,
	 * alone on the avail list (kept empty for the next refill). */
	for (unsigned i = 1500; i < 2100; i++)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	for (unsigned i = 2500; i < N; i++)
		CHECK_EQ(cairn_heap_free(h1, p[i]), 0);
	cairn_heap_flush(h1);
	cairn_heap_flush(h0);
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(stats(o).slabs, slabs0 + 2);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* The spliced lists hand every object out again, each once. */
	for (unsigned i = 0; i < N; i++) {
		REQUIRE((p[i] = cairn_heap_alloc(h0, 64)));
		memset(p[i], 0x5a, 64);
	}
	CHECK_EQ(stats(o).slabs, slabs0 + 3);
	CHECK_EQ(cairn_objects_validate(o), 0);
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h0, p[i]), 0);
	CHECK_EQ(stats(o).objects, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* An emptied slab of at most 64 KiB alone on its class's avail list is
 * kept for the class's next refill (a second one is not, nor a bigger
 * slab), until another class needs a block and the heap has none cached;
 * going offline releases them all. */
static void test_slab_keep(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	uint64_t slabs0 = stats(o).slabs;
	enum { N = 3000 }; /* 64 B: 1024 per slab, two full slabs and a current one */
	static void *p[N];
	for (int round = 0; round < 3; round++) {
		for (unsigned i = 0; i < N; i++) {
			REQUIRE((p[i] = cairn_heap_alloc(h, 64)));
			/* past the current slab, the refill took the kept one
			 * from the avail list: the fast slots name it */
			if (round && i == 1100)
				CHECK_EQ(cairn_objects_validate(o), 0);
		}
		CHECK_EQ(stats(o).slabs, slabs0 + 3);
		for (unsigned i = 0; i < N; i++)
			CHECK_EQ(cairn_heap_free(h, p[i]), 0);
		/* the first full slab emptied is kept, the second released */
		CHECK_EQ(stats(o).slabs, slabs0 + 2);
		CHECK_EQ(cairn_objects_validate(o), 0);
	}
	/* A new slab of another class takes the heap's cached block (the
	 * released one), then the kept slab's: no more slabs than before. */
	CHECK_EQ(cairn_obj_class_order(o, cairn_obj_class(128)), cairn_obj_class_order(o, cairn_obj_class(64)));
	CHECK_EQ(cairn_obj_class_order(o, cairn_obj_class(256)), cairn_obj_class_order(o, cairn_obj_class(64)));
	void *c128 = cairn_heap_alloc(h, 128);
	REQUIRE(c128);
	CHECK_EQ(stats(o).slabs, slabs0 + 3);
	void *c256 = cairn_heap_alloc(h, 256);
	REQUIRE(c256);
	CHECK_EQ(stats(o).slabs, slabs0 + 3);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_free(h, c128);
	cairn_heap_free(h, c256);
	/* A class whose slabs are bigger than 64 KiB keeps only its current. */
	size_t big = cairn_obj_class_size(CAIRN_OBJ_CLASSES - 1);
	REQUIRE(cairn_obj_class_order(o, CAIRN_OBJ_CLASSES - 1) > 4);
	unsigned per = (unsigned)((4096u << cairn_obj_class_order(o, CAIRN_OBJ_CLASSES - 1)) / big);
	for (unsigned i = 0; i < per + 1; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h, big)));
	CHECK_EQ(stats(o).slabs, slabs0 + 5);
	for (unsigned i = 0; i < per + 1; i++)
		CHECK_EQ(cairn_heap_free(h, p[i]), 0);
	CHECK_EQ(stats(o).slabs, slabs0 + 4);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_offline(h);
	CHECK_EQ(stats(o).slabs, slabs0);
	cairn_heap_online(h);
}

/* A slab's descriptor never shares its first line's offset in a 4 KiB
 * page with the top-array entry or a leaf entry of the slab's frames, nor
 * (hardened) its live bitmap's lines 2-3: the free fast path loads those
 * entries while the allocation's stores to these lines may still be in
 * flight, and a 4 KiB alias holds the loads back (desc_get,
 * objects_layout.h). Many slabs of several orders walk their leaf entries
 * over every line of a page; then, freed, their spare descriptors serve
 * slabs of other classes at other addresses. Computed here apart from
 * desc_ruled_out, entry by entry. */
static unsigned desc_check_heap(struct cairn_objects *o, struct cairn_heap *h)
{
	unsigned n = 0;
	for (struct slab *f = h->desc_frames; f; f = f->frame_next)
		for (unsigned i = 0; i < OBJ_PAGE / OBJ_DESC_SIZE; i++) {
			struct slab *s = (struct slab *)((uintptr_t)f + i * OBJ_DESC_SIZE);
			if (s->state == SLAB_UNUSED)
				continue;
			n++;
			CHECK(!s->misplaced);
			uintptr_t off = s->base - o->vbase;
			uintptr_t top = (uintptr_t)&o->pagemap[off >> OBJ_LEAF_SPAN_SHIFT];
			for (unsigned l = 0; l < 4; l++) {
				if (l == 1 || (l > 1 && !h->harden))
					continue;
				unsigned line = (unsigned)(((uintptr_t)s + 64 * l) % 4096 / 64);
				CHECK(top % 4096 / 64 != line);
				for (uintptr_t pg = 0; pg < ((uintptr_t)1 << s->order); pg++)
					CHECK((uintptr_t)pm_slot(o, s->base + pg * OBJ_PAGE) % 4096 / 64 !=
					      line);
			}
		}
	return n;
}

static void test_desc_placement(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 2);
	enum { N = 24 * 1024 };
	static void *p[N];
	/* 16 B: 16 KiB slabs (32 bytes of leaf entries each), 24 of them */
	for (unsigned i = 0; i < N; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h, 16)));
	CHECK(desc_check_heap(o, h) >= 24);
	/* A corrupt base is reported, not followed: validate looks at the
	 * placement only once the pagemap (range-checked) names the slab.
	 * A full slab: no free list trips on the base first. */
	struct slab *full = (struct slab *)pm_lookup(o, (uintptr_t)p[0]);
	REQUIRE(full->state == SLAB_FULL);
	uintptr_t base = full->base;
	full->base = o->vbase - ((uintptr_t)1 << 40);
	cairn_host_reports_quiet(1);
	CHECK(cairn_objects_validate(o) != 0);
	cairn_host_reports_quiet(0);
	full->base = base;
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* the biggest class: the largest slabs (64 frames, 512 B of leaf
	 * entries, two descriptor slots), 4 objects each: 10 of them */
	size_t big = cairn_obj_class_size(CAIRN_OBJ_CLASSES - 1);
	CHECK_EQ(cairn_obj_class_order(o, CAIRN_OBJ_CLASSES - 1), 6);
	void *q[40];
	for (unsigned i = 0; i < 40; i++)
		REQUIRE((q[i] = cairn_heap_alloc(h, big)));
	CHECK(desc_check_heap(o, h) >= 24 + 10);
	CHECK_EQ(cairn_objects_validate(o), 0);
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h, p[i]), 0);
	/* spares now: slabs of 64 B and 2 KiB elsewhere take them */
	for (unsigned i = 0; i < N / 2; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h, i & 1 ? 64 : 2048)));
	CHECK(desc_check_heap(o, h) >= 12);
	CHECK_EQ(cairn_objects_validate(o), 0);
	for (unsigned i = 0; i < N / 2; i++)
		CHECK_EQ(cairn_heap_free(h, p[i]), 0);
	for (unsigned i = 0; i < 40; i++)
		CHECK_EQ(cairn_heap_free(h, q[i]), 0);
	cairn_heap_offline(h);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* Placement is a preference, never a reason to fail: with no frame left
 * for a fresh descriptor frame, a spare on a ruled-out line serves (marked
 * misplaced, which validate accepts, until it goes back). A fresh heap's
 * first descriptor frame: 15 full 16 B slabs take slots 1-15 (slot 0 is on
 * line 0, the top entries' of the first 64 MiB). Every frame is taken but
 * one 64 KiB block X. One slab emptied is kept on the avail list, a second
 * (whose descriptor fits X) released: block cached, descriptor spare; a
 * 64 B slab on X takes that descriptor, so slot 0 is the only spare. 16 B
 * objects then: the kept slab's 1024, and a slab on the cached block with
 * slot 0 (refusing it: 1024 in all, and for good, as the exhaustion retry
 * takes the block back and refuses again). */
static void test_desc_exhausted(enum cairn_obj_harden harden)
{
	struct cairn_objects *o = objtest_create(harden);
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	REQUIRE(cairn_obj_class_order(o, cairn_obj_class(16)) == 2);
	REQUIRE(cairn_obj_class_order(o, cairn_obj_class(64)) == 4);
	enum { PER = 1024, FULL = 15, MORE = 4 * PER };
	static void *p[FULL * PER], *q[MORE];
	for (unsigned i = 0; i < FULL * PER; i++)
		REQUIRE((p[i] = cairn_heap_alloc(h, 16)));
	struct slab *frame = h->desc_frames;
	REQUIRE(frame && !frame->frame_next);
	REQUIRE(h->spare == frame && !h->spare->next);
	/* X, where the leaf of the 16 B slabs is; then every other frame */
	cairn_phys_t xp;
	REQUIRE(cairn_frames_alloc(objtest_frames, 4, 0, &xp) == 0);
	uintptr_t x = (uintptr_t)cairn_port_phys_to_virt(xp);
	REQUIRE((x - o->vbase) >> OBJ_LEAF_SPAN_SHIFT == ((uintptr_t)p[0] - o->vbase) >> OBJ_LEAF_SPAN_SHIFT);
	enum { TAKEN_MAX = 4096 };
	static cairn_phys_t taken[TAKEN_MAX];
	static unsigned char taken_order[TAKEN_MAX];
	unsigned nt = 0;
	for (unsigned order = CAIRN_MAX_ORDER + 1; order-- > 0;)
		for (cairn_phys_t f; cairn_frames_alloc(objtest_frames, order, 0, &f) == 0;) {
			REQUIRE(nt < TAKEN_MAX);
			taken[nt] = f;
			taken_order[nt++] = (unsigned char)order;
		}
	/* slabs 0..13 (14 is current): A kept, B released with a descriptor X fits */
	uint64_t x_out = desc_ruled_out(o, x, 4, h->harden);
	unsigned a = FULL, b = FULL;
	for (unsigned j = 0; j < FULL - 1 && b == FULL; j++) {
		struct slab *sj = (struct slab *)pm_lookup(o, (uintptr_t)p[j * PER]);
		if (a == FULL)
			a = j;
		else if (!desc_line_ruled_out(x_out, sj))
			b = j;
	}
	REQUIRE(b < FULL);
	for (unsigned i = 0; i < PER; i++)
		CHECK_EQ(cairn_heap_free(h, p[a * PER + i]), 0);
	for (unsigned i = 0; i < PER; i++)
		CHECK_EQ(cairn_heap_free(h, p[b * PER + i]), 0);
	REQUIRE(h->avail[cairn_obj_class(16)] && h->blocks[2]);
	CHECK_EQ(cairn_frames_free(objtest_frames, xp, 4), 0);
	void *c64 = cairn_heap_alloc(h, 64);
	REQUIRE(c64);
	REQUIRE(((uintptr_t)c64 & -(OBJ_PAGE << 4)) == x);
	REQUIRE(h->desc_frames == frame && h->spare == frame && !frame->next);
	REQUIRE(desc_line_ruled_out(desc_ruled_out(o, h->blocks[2], 2, h->harden), frame));
	unsigned n = 0;
	while (n < MORE && (q[n] = cairn_heap_alloc(h, 16)))
		n++;
	CHECK_EQ(n, 2 * PER);
	REQUIRE(n);
	struct slab *s = (struct slab *)pm_lookup(o, (uintptr_t)q[n - 1]);
	CHECK(s == frame);
	CHECK_EQ(s->misplaced, 1);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* unmarked, the same descriptor is a broken invariant */
	s->misplaced = 0;
	cairn_host_reports_quiet(1);
	CHECK(cairn_objects_validate(o) != 0);
	cairn_host_reports_quiet(0);
	s->misplaced = 1;
	for (unsigned i = 0; i < nt; i++)
		CHECK_EQ(cairn_frames_free(objtest_frames, taken[i], taken_order[i]), 0);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_heap_free(h, q[i]), 0);
	for (unsigned j = 0; j < FULL; j++)
		for (unsigned i = 0; j != a && j != b && i < PER; i++)
			CHECK_EQ(cairn_heap_free(h, p[j * PER + i]), 0);
	CHECK_EQ(cairn_heap_free(h, c64), 0);
	cairn_heap_offline(h);
	/* back on the spare list, unmarked */
	CHECK(s->state == SLAB_UNUSED && !s->misplaced);
	CHECK_EQ(stats(o).slabs, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_objects_destroy(o);
}

/* An address of the instance's range in a region with no leaf yet (the
 * zero leaf's): foreign to free and usable size, and nothing changes. A
 * fresh instance with one slab: every other 8 MiB region has no leaf. */
static void test_zero_leaf(enum cairn_obj_harden harden)
{
	struct cairn_objects *o = objtest_create(harden);
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	void *a = cairn_heap_alloc(h, 48);
	REQUIRE(a);
	uintptr_t l = (((uintptr_t)a - o->vbase) >> OBJ_LEAF_SPAN_SHIFT) ^ 1;
	REQUIRE((l + 1) << OBJ_LEAF_SPAN_SHIFT <= o->span);
	_Atomic uintptr_t *leaf = atomic_load(&o->pagemap[l]);
	char *q = (char *)(o->vbase + (l << OBJ_LEAF_SPAN_SHIFT) + 5 * OBJ_PAGE + 48);
	struct cairn_objects_stats st = stats(o);
	uint64_t before = cairn_host_reports();
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_heap_free(h, q), CAIRN_ERANGE);
	CHECK_EQ(cairn_heap_free(h, q - 48), CAIRN_ERANGE);
	cairn_host_reports_quiet(0);
	CHECK(cairn_host_reports() == before + 2);
	CHECK_EQ(cairn_objects_usable_size(o, q), 0);
	CHECK_EQ(cairn_objects_usable_size(o, q - 48), 0);
	CHECK(atomic_load(&o->pagemap[l]) == leaf);
	CHECK(leaf == o->zero_leaf);
	CHECK_EQ(stats(o).objects, st.objects);
	CHECK_EQ(stats(o).slabs, st.slabs);
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK_EQ(cairn_heap_free(h, a), 0);
	cairn_objects_destroy(o);
}

/* Hardened: a slab that dropped objects behind a corrupted link goes back
 * when it empties, even alone on its class's avail list (where an intact
 * one is kept), so what it dropped is not handed out again. */
static void test_damaged_release(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	uint64_t slabs0 = stats(o).slabs;
	REQUIRE(cairn_obj_class_order(o, cairn_obj_class(64)) <= OBJ_SLAB_MIN_ORDER);
	enum { N = 1100 };
	static char *p[N];
	/* a fresh slab is carved in address order: p[0]'s neighbour heads
	 * the free list; overwrite its link */
	REQUIRE((p[0] = cairn_heap_alloc(h, 64)));
	*(uintptr_t *)(p[0] + 64) = (uintptr_t)(p[0] + 8);
	cairn_host_reports_quiet(1);
	uint64_t before = cairn_host_reports();
	REQUIRE((p[1] = cairn_heap_alloc(h, 64)));
	cairn_host_reports_quiet(0);
	CHECK(cairn_host_reports() == before + 1);
	/* fill the damaged slab: the allocation that makes a second one
	 * is the first of the next slab */
	unsigned n = 2;
	for (; n < N; n++) {
		REQUIRE((p[n] = cairn_heap_alloc(h, 64)));
		if (stats(o).slabs > slabs0 + 1)
			break;
	}
	REQUIRE(n < N);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* empty it: alone on the avail list, but damaged, so released */
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_heap_free(h, p[i]), 0);
	CHECK_EQ(stats(o).slabs, slabs0 + 1);
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK_EQ(cairn_heap_free(h, p[n]), 0);
	CHECK_EQ(stats(o).objects, 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
}

/* validate checks the shared empty slab (every class with no slab, and
 * every hardened fast slot, names it): it must hold nothing. */
static void test_validate_empty(struct cairn_objects *o)
{
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_host_reports_quiet(1);
	o->empty.used = 1;
	CHECK(cairn_objects_validate(o) != 0);
	o->empty.used = 0;
	o->empty.free = (uintptr_t)&o->empty;
	CHECK(cairn_objects_validate(o) != 0);
	o->empty.free = 0;
	o->empty.local_free = (uintptr_t)&o->empty;
	CHECK(cairn_objects_validate(o) != 0);
	o->empty.local_free = 0;
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* Exhaustion: NULL, cleanly, and everything works again after frees. */
static void test_exhaustion(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	size_t cap = 1 << 16, n = 0;
	void **v = malloc(cap * sizeof(*v));
	for (;;) {
		size_t size = n % 3 == 0 ? 40000 : n % 3 == 1 ? 3000 : 200000;
		void *p = cairn_heap_alloc(h, size);
		if (!p)
			break;
		REQUIRE(n < cap);
		v[n++] = p;
	}
	/* smaller requests may still fit */
	for (void *p; n < cap && (p = cairn_heap_alloc(h, 16));)
		v[n++] = p;
	CHECK(n > 100);
	CHECK_EQ(cairn_objects_validate(o), 0);
	while (n)
		CHECK_EQ(cairn_heap_free(h, v[--n]), 0);
	void *p = cairn_heap_alloc(h, 40000);
	CHECK(p != NULL);
	cairn_heap_free(h, p);
	free(v);
	cairn_heap_offline(h);
	CHECK_EQ(stats(o).slabs, 0);
	cairn_heap_online(h);
}

int main(void)
{
	objtest_init(4, 256);
	uint64_t free0 = objtest_free_frames();
	test_classes();
	for (int harden = 0; harden < 2; harden++) {
		struct cairn_objects *o = objtest_create(harden ? CAIRN_OBJ_HARDEN_ON
								: CAIRN_OBJ_HARDEN_OFF);
		test_every_class(o);
		test_alloc_fast(o, harden);
		test_alloc_fast_local(o, harden);
		test_cur_free_first(o);
		test_avail_fifo(o);
		test_alignment(o);
		test_calloc_realloc(o);
		cairn_host_reports_quiet(1);
		test_large(o);
		cairn_host_reports_quiet(0);
		if (harden)
			test_errors(o);
		test_remote(o);
		test_remote_runs(o);
		test_covers(o);
		test_slab_keep(o);
		test_desc_placement(o);
		if (harden)
			test_damaged_release(o);
		test_validate_empty(o);
		CHECK_EQ(cairn_objects_validate(o), 0);
		cairn_objects_destroy(o);
		CHECK_EQ(objtest_free_frames(), free0);
		test_zero_leaf(harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF);
		CHECK_EQ(objtest_free_frames(), free0);
		test_desc_exhausted(harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF);
		CHECK_EQ(objtest_free_frames(), free0);
	}
	/* destroy with live objects gives everything back too */
	struct cairn_objects *o = objtest_create(CAIRN_OBJ_HARDEN_ON);
	for (unsigned i = 0; i < 1000; i++)
		cairn_heap_alloc(cairn_objects_heap(o, i % 4), i * 37 % 90000);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);

	/* bad configurations */
	struct cairn_objects_config bad = { .frames = objtest_frames, .phys_limit = 0 };
	CHECK_EQ(cairn_objects_create(&o, &bad), CAIRN_EINVAL);
	CHECK_EQ(cairn_objects_create(&o, NULL), CAIRN_EINVAL);
	bad.phys_base = 100;
	bad.phys_limit = objtest_mem;
	CHECK_EQ(cairn_objects_create(&o, &bad), CAIRN_EINVAL);
	/* fewer heaps than CPUs: cairn_objects_alloc on CPU 3 would index
	 * heap 3 of an instance of 2 */
	bad.phys_base = 0;
	bad.ncpus = 2;
	int r = cairn_objects_create(&o, &bad);
	CHECK_EQ(r, CAIRN_EINVAL);
	if (r == 0)
		cairn_objects_destroy(o);
	bad.ncpus = 5; /* more is fine: explicit heaps beyond the CPUs */
	CHECK_EQ(cairn_objects_create(&o, &bad), 0);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);

	o = objtest_create(CAIRN_OBJ_HARDEN_ON);
	test_exhaustion(o);
	cairn_objects_destroy(o);
	CHECK_EQ(objtest_free_frames(), free0);
	return check_done("objects_unit");
}
