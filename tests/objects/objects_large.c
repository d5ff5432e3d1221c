/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of large objects through a range arena: sizes rounded to pages
 * (not powers of two), the instance as owner in the arena's tree,
 * usable_size, aligned requests, calloc and realloc across the small/large
 * boundary; every error path (double free, interior pointer, a range of
 * another owner or instance and a pointer inside one, a pointer nobody
 * handed out) reported with its own code and changing nothing;
 * exhaustion; the quantum cache in front (unhardened only); destroy with
 * live large objects; bad configurations. Run for the
 * arena in place and mapped at addresses of a VA arena, and in place with
 * the heaps' large caches and the instance's released blocks: reuse by
 * bin, the bound, second frees and interior frees of cached ranges, a
 * planted link overwrite, ranges going back on offline and exhaustion,
 * released slab blocks taken before fresh frames and drained on exhaustion.
 */
#include <string.h>

#include "../check.h"
#include "objtest.h"

static struct cairn_objects_stats stats(struct cairn_objects *o)
{
	struct cairn_objects_stats st;
	cairn_objects_stats(o, &st);
	return st;
}

static uint64_t extents(void)
{
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&objtest_arena.tree, &st), 0);
	return st.extents;
}

static size_t pages(size_t size)
{
	return (size + 4095) & ~(size_t)4095;
}

/* Sizes rounded to pages, the owner in the tree, contents, counts. */
static void test_sizes(struct cairn_objects *o, bool qcached)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	size_t sizes[] = { CAIRN_OBJ_SMALL_MAX + 1, 65 << 10, 100000, 1u << 20, 2u << 20,
			   (3u << 20) + 5 };
	for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		unsigned char *p = cairn_heap_alloc(h, sizes[k]);
		REQUIRE(p);
		CHECK(((uintptr_t)p & 4095) == 0);
		size_t u = cairn_objects_usable_size(o, p);
		/* the large cache may hand out a longer range it kept */
		if (objtest_large_cache_kib)
			CHECK(u >= pages(sizes[k]) && u <= 2 * pages(sizes[k]));
		else
			CHECK_EQ(u, pages(sizes[k]));
		uint64_t s, n, c;
		CHECK_EQ(cairn_arena_lookup(&objtest_arena, (uintptr_t)p, &s, &n, &c), 0);
		CHECK_EQ(s, (uintptr_t)p);
		CHECK_EQ(n, u);
		CHECK_EQ(c, qcached ? cairn_qcache_cookie(objtest_qc) : (uintptr_t)o);
		memset(p, 0x5a, sizes[k]);
		CHECK_EQ(stats(o).large, 1);
		CHECK_EQ(stats(o).large_frames, u / 4096);
		CHECK_EQ(cairn_heap_free(h, p), 0);
		CHECK_EQ(stats(o).large, 0);
		CHECK_EQ(stats(o).large_frames, 0);
	}
	/* 65 KiB takes 68 KiB: two of them and a third fit where one 128 KiB
	 * buddy block and a half would */
	unsigned char *a = cairn_heap_alloc(h, 65 << 10), *b = cairn_heap_alloc(h, 65 << 10);
	REQUIRE(a && b);
	if (!qcached && !objtest_large_cache_kib)
		CHECK(b == a + (68 << 10) || a == b + (68 << 10));
	cairn_heap_free(h, a);
	cairn_heap_free(h, b);
	CHECK(cairn_heap_alloc(h, (size_t)1 << 50) == NULL);
	CHECK(cairn_heap_alloc(h, SIZE_MAX) == NULL);
	CHECK(cairn_heap_alloc(h, SIZE_MAX - 4095) == NULL);
	CHECK_EQ(stats(o).large, 0);
	CHECK_EQ(cairn_arena_validate(&objtest_arena), 0);
}

/* Alignment above the page comes from the arena's xalloc. */
static void test_aligned(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	size_t aligns[] = { 4096, 8192, 64 << 10, 128 << 10, 1u << 20, 4u << 20 };
	size_t sizes[] = { 100, 70000, (1u << 20) + 1 };
	for (unsigned i = 0; i < sizeof aligns / sizeof aligns[0]; i++)
		for (unsigned k = 0; k < 3; k++) {
			unsigned char *p = cairn_heap_alloc_aligned(h, sizes[k], aligns[i]);
			REQUIRE(p);
			CHECK(((uintptr_t)p & (aligns[i] - 1)) == 0);
			size_t u = cairn_objects_usable_size(o, p);
			CHECK(u >= sizes[k]);
			/* large (or aligned above the largest class): pages only */
			if (sizes[k] > CAIRN_OBJ_SMALL_MAX || aligns[i] > CAIRN_OBJ_SMALL_MAX)
				CHECK_EQ(u, pages(sizes[k]));
			memset(p, 1, sizes[k]);
			CHECK_EQ(cairn_heap_free(h, p), 0);
		}
	CHECK(cairn_heap_alloc_aligned(h, 100000, 3 << 12) == NULL);
	CHECK_EQ(stats(o).large, 0);
	CHECK_EQ(stats(o).objects, 0);
}

static void test_calloc_realloc(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	unsigned char *p = cairn_heap_alloc(h, 300000);
	REQUIRE(p);
	memset(p, 0xff, 300000);
	cairn_heap_free(h, p);
	unsigned char *z = cairn_heap_calloc(h, 3, 100000);
	REQUIRE(z);
	for (size_t i = 0; i < 300000; i++)
		if (z[i]) {
			CHECK(!"calloc of a large object not zero");
			break;
		}
	cairn_heap_free(h, z);

	/* small -> large -> larger -> smaller (kept) -> small */
	p = cairn_heap_alloc(h, 1000);
	REQUIRE(p);
	for (unsigned i = 0; i < 1000; i++)
		p[i] = (unsigned char)i;
	p = cairn_heap_realloc(h, p, 200000);
	REQUIRE(p);
	CHECK_EQ(stats(o).large, 1);
	/* the large cache may hand out the 300000-byte range freed above */
	if (objtest_large_cache_kib)
		CHECK(cairn_objects_usable_size(o, p) >= pages(200000) &&
		      cairn_objects_usable_size(o, p) <= 2 * pages(200000));
	else
		CHECK_EQ(cairn_objects_usable_size(o, p), pages(200000));
	for (unsigned i = 1000; i < 200000; i++)
		p[i] = (unsigned char)i;
	p = cairn_heap_realloc(h, p, 1u << 20);
	REQUIRE(p);
	for (unsigned i = 0; i < 200000; i++)
		if (p[i] != (unsigned char)i) {
			CHECK(!"realloc lost the prefix");
			break;
		}
	unsigned char *q = cairn_heap_realloc(h, p, 600000);
	CHECK(q == p); /* fits and wastes less than half */
	q = cairn_heap_realloc(h, p, 500);
	REQUIRE(q);
	CHECK(q != p);
	for (unsigned i = 0; i < 500; i++)
		CHECK(q[i] == (unsigned char)i);
	CHECK_EQ(stats(o).large, 0);
	/* impossible: NULL, the object untouched */
	p = cairn_heap_alloc(h, 100000);
	REQUIRE(p);
	p[99999] = 9;
	CHECK(cairn_heap_realloc(h, p, (size_t)1 << 50) == NULL);
	CHECK(p[99999] == 9);
	CHECK_EQ(cairn_objects_usable_size(o, p), pages(100000));
	CHECK(cairn_heap_realloc(h, p, 0) == NULL); /* frees */
	cairn_heap_free(h, q);
	CHECK_EQ(stats(o).large, 0);
	CHECK_EQ(stats(o).objects, 0);
}

/* Every misuse: its own code, reported once, nothing changed (counts,
 * the arena's extents, the other objects). */
static void test_errors(struct cairn_objects *o, struct cairn_objects *other, bool qcached)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	cairn_host_reports_quiet(1);
	unsigned char *keep = cairn_heap_alloc(h, 100000); /* keeps the span in place */
	unsigned char *p = cairn_heap_alloc(h, 200000);
	unsigned char *theirs = cairn_heap_alloc(cairn_objects_heap(other, 0), 70000);
	uint64_t raw;
	REQUIRE(keep && p && theirs);
	REQUIRE(cairn_arena_alloc(&objtest_arena, 80000, 12345, &raw) == 0);
	memset(p, 7, 200000);
	uint64_t ext = extents(), large = stats(o).large, r = cairn_host_reports();
	int local;
	struct {
		void *ptr;
		int err;
	} bad[] = {
		{ p + 4096, CAIRN_EALIGN },              /* interior, page aligned */
		{ p + 16, CAIRN_EALIGN },                /* interior */
		{ p + 199999, CAIRN_EALIGN },            /* last byte */
		{ theirs, CAIRN_ERANGE },                /* another instance's */
		{ theirs + 4096, CAIRN_ERANGE },         /* inside it: still foreign */
		{ theirs + 16, CAIRN_ERANGE },
		{ (void *)(uintptr_t)raw, CAIRN_ERANGE },  /* another owner's range */
		{ (void *)(uintptr_t)(raw + 8192), CAIRN_ERANGE },
		{ &local, CAIRN_ERANGE },                /* nobody's */
		{ (void *)(uintptr_t)0x10000, CAIRN_ERANGE },
	};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_EQ(cairn_heap_free(h, bad[i].ptr), bad[i].err);
		CHECK_EQ(cairn_host_reports(), r + i + 1);
		CHECK_EQ(extents(), ext);
		CHECK_EQ(stats(o).large, large);
	}
	CHECK_EQ(cairn_objects_usable_size(o, p + 4096), 0);
	CHECK_EQ(cairn_objects_usable_size(o, theirs), 0);
	CHECK_EQ(cairn_objects_usable_size(o, (void *)(uintptr_t)raw), 0);
	CHECK(cairn_heap_realloc(h, p + 4096, 10) == NULL);
	for (unsigned i = 0; i < 200000; i++)
		if (p[i] != 7) {
			CHECK(!"a rejected free changed the object");
			break;
		}
	uint64_t s, n, c;
	CHECK_EQ(cairn_arena_lookup(&objtest_arena, raw, &s, &n, &c), 0);
	CHECK_EQ(c, 12345);
	CHECK_EQ(cairn_objects_usable_size(other, theirs), pages(70000));

	/* double free: the arena still has the span, and refuses */
	CHECK_EQ(cairn_heap_free(h, p), 0);
	ext = extents();
	r = cairn_host_reports();
	if (!qcached) {
		CHECK_EQ(cairn_heap_free(h, p), CAIRN_EFREE);
		CHECK_EQ(cairn_host_reports(), r + 1);
		CHECK_EQ(extents(), ext);
		CHECK_EQ(stats(o).large, large - 1);
		CHECK_EQ(cairn_objects_usable_size(o, p), 0);
		/* never handed out, inside a span */
		CHECK_EQ(cairn_heap_free(h, keep + (200u << 10) + (400u << 10)), CAIRN_EFREE);
	}
	CHECK_EQ(cairn_heap_free(h, keep), 0);
	CHECK_EQ(cairn_heap_free(cairn_objects_heap(other, 0), theirs), 0);
	CHECK_EQ(cairn_arena_free(&objtest_arena, raw, 80000), 0);
	/* the span went back: a second free now meets no span at all */
	if (!qcached && atomic_load(&objtest_arena.releases) &&
	    cairn_arena_lookup(&objtest_arena, (uintptr_t)keep, &s, &n, &c) == CAIRN_ERANGE)
		CHECK_EQ(cairn_heap_free(h, keep), CAIRN_ERANGE);
	CHECK_EQ(stats(o).large, 0);
	CHECK_EQ(cairn_arena_validate(&objtest_arena), 0);
	cairn_host_reports_quiet(0);
}

/* Three ranges of 17 pages and one of 200 (251 of the 256 pages a heap
 * caches here): the nearly full cache of the eviction tests. */
static void *cache_set_alloc(struct cairn_heap *h, void *a[3])
{
	for (unsigned i = 0; i < 3; i++)
		REQUIRE((a[i] = cairn_heap_alloc(h, 17 * 4096)));
	void *b200 = cairn_heap_alloc(h, 200 * 4096);
	REQUIRE(b200);
	return b200;
}

static void cache_set_free(struct cairn_heap *h, void *a[3], void *b200)
{
	for (unsigned i = 0; i < 3; i++)
		CHECK_EQ(cairn_heap_free(h, a[i]), 0);
	CHECK_EQ(cairn_heap_free(h, b200), 0);
}

/* The cached set is served back (the newest 17-page range first), then
 * freed again. */
static void cache_set_cycle(struct cairn_objects *o, struct cairn_heap *h, void *a[3],
			    void *b200)
{
	for (unsigned i = 3; i-- > 0;)
		CHECK(cairn_heap_alloc(h, 17 * 4096) == a[i]);
	CHECK(cairn_heap_alloc(h, 200 * 4096) == b200);
	CHECK_EQ(stats(o).large_cached_frames, 0);
	cache_set_free(h, a, b200);
}

/* The heaps' large caches (large_cache_kib = 1 MiB): a freed range stays
 * allocated in the arena and comes back by bin without a tree update. */
static void test_large_cache(struct cairn_objects *o, bool harden)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0), *h1 = cairn_objects_heap(o, 1);
	cairn_heap_offline(h); /* what earlier tests left cached goes back */
	cairn_heap_online(h);
	CHECK_EQ(stats(o).large_cached_frames, 0);
	cairn_host_reports_quiet(1);
	unsigned char *keep = cairn_heap_alloc(h, 100000); /* keeps the span in place */
	unsigned char *p = cairn_heap_alloc(h, 17 * 4096);
	REQUIRE(keep && p);
	uint64_t ext = extents(), r = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(h, p), 0);
	CHECK_EQ(extents(), ext); /* still allocated in the arena */
	CHECK_EQ(stats(o).large_cached_frames, 17);
	CHECK_EQ(stats(o).large, 1);
	CHECK_EQ(cairn_objects_usable_size(o, p), 0);
	CHECK(cairn_heap_realloc(h, p, 10) == NULL);
	/* a second free and interior frees of the cached range: refused */
	CHECK_EQ(cairn_heap_free(h, p), CAIRN_EFREE);
	CHECK_EQ(cairn_heap_free(h1, p), CAIRN_EFREE);
	CHECK_EQ(cairn_heap_free(h, p + 16), CAIRN_EALIGN);
	CHECK_EQ(cairn_heap_free(h, p + 4096), CAIRN_EALIGN);
	CHECK_EQ(cairn_host_reports(), r + 5);
	CHECK_EQ(stats(o).large_cached_frames, 17);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* 18 pages do not fit the 17-page range (same bin); 16 pages do */
	unsigned char *q = cairn_heap_alloc(h, 18 * 4096);
	REQUIRE(q);
	CHECK(q != p);
	CHECK_EQ(cairn_heap_free(h, q), 0); /* cached: bin of 17..20 pages */
	q = cairn_heap_alloc(h, 17 * 4096);
	CHECK(q == p || q == p + 17 * 4096 || cairn_objects_usable_size(o, q) == 18 * 4096);
	unsigned char *q2 = cairn_heap_alloc(h, 17 * 4096);
	CHECK((q == p) != (q2 == p)); /* both cached ranges served */
	CHECK_EQ(stats(o).large_cached_frames, 0);
	CHECK_EQ(extents(), ext + 1);
	CHECK_EQ(cairn_objects_usable_size(o, q) + cairn_objects_usable_size(o, q2),
		 (17 + 18) * 4096);
	memset(q, 1, 17 * 4096);
	memset(q2, 2, 17 * 4096);
	/* a range of the next bin serves a request of this one */
	CHECK_EQ(cairn_heap_free(h, q), 0);
	CHECK_EQ(cairn_heap_free(h, q2), 0);
	unsigned char *big = cairn_heap_alloc(h, 24 * 4096);
	REQUIRE(big);
	CHECK_EQ(cairn_heap_free(h, big), 0); /* bin of 21..24 pages */
	unsigned char *b2 = cairn_heap_alloc(h, 20 * 4096); /* 17 and 18 too short */
	CHECK(b2 == big);
	CHECK_EQ(cairn_objects_usable_size(o, b2), 24 * 4096);
	CHECK_EQ(cairn_heap_free(h, b2), 0);
	/* a free on another heap caches on that heap */
	q = cairn_heap_alloc(h, 17 * 4096);
	REQUIRE(q);
	CHECK_EQ(cairn_heap_free(h1, q), 0);
	CHECK(cairn_heap_alloc(h1, 17 * 4096) == q);
	CHECK_EQ(cairn_heap_free(h1, q), 0);
	/* the bound: beyond 1 MiB per heap, frees go to the arena */
	void *v[12];
	for (unsigned i = 0; i < 12; i++)
		REQUIRE((v[i] = cairn_heap_alloc(h, 200 * 4096)));
	uint64_t ext_full = extents();
	for (unsigned i = 0; i < 12; i++)
		CHECK_EQ(cairn_heap_free(h, v[i]), 0);
	CHECK(stats(o).large_cached_frames <= 2 * 256); /* two heaps */
	CHECK(extents() < ext_full);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	cairn_heap_offline(h1);
	cairn_heap_online(h1);
	/* a range three bins up serves a request (at most twice its
	 * length), four bins up does not: 40 pages (bin of 33..40) serve 21
	 * (bin of 21..24), never 20 (bin of 17..20) */
	q = cairn_heap_alloc(h, 40 * 4096);
	REQUIRE(q);
	CHECK_EQ(cairn_heap_free(h, q), 0);
	q2 = cairn_heap_alloc(h, 20 * 4096);
	REQUIRE(q2);
	CHECK(q2 != q);
	CHECK_EQ(stats(o).large_cached_frames, 40);
	b2 = cairn_heap_alloc(h, 21 * 4096);
	CHECK(b2 == q);
	CHECK_EQ(cairn_objects_usable_size(o, b2), 40 * 4096);
	CHECK_EQ(cairn_heap_free(h, b2), 0);
	CHECK_EQ(cairn_heap_free(h, q2), 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	/* full (256 pages): a freed range of a bin with fewer ranges than
	 * the fullest bin takes the place of that bin's newest, which goes
	 * back to the arena; one of a bin with as many goes back itself */
	void *a[3], *b200, *c21, *d17;
	b200 = cache_set_alloc(h, a);
	REQUIRE((c21 = cairn_heap_alloc(h, 21 * 4096)));
	REQUIRE((d17 = cairn_heap_alloc(h, 17 * 4096)));
	cache_set_free(h, a, b200);
	CHECK_EQ(stats(o).large_cached_frames, 3 * 17 + 200);
	CHECK_EQ(cairn_heap_free(h, d17), 0); /* bin 17..20 is the fullest */
	CHECK_EQ(stats(o).large_cached_frames, 3 * 17 + 200);
	CHECK_EQ(cairn_heap_free(h, c21), 0); /* a[2] makes room */
	CHECK_EQ(stats(o).large_cached_frames, 2 * 17 + 200 + 21);
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK(cairn_heap_alloc(h, 17 * 4096) == a[1]);
	CHECK(cairn_heap_alloc(h, 17 * 4096) == a[0]);
	CHECK(cairn_heap_alloc(h, 21 * 4096) == c21);
	CHECK(cairn_heap_alloc(h, 200 * 4096) == b200);
	CHECK_EQ(stats(o).large_cached_frames, 0);
	CHECK_EQ(cairn_heap_free(h, a[0]), 0);
	CHECK_EQ(cairn_heap_free(h, a[1]), 0);
	CHECK_EQ(cairn_heap_free(h, c21), 0);
	CHECK_EQ(cairn_heap_free(h, b200), 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	/* a free that eviction cannot make room for evicts nothing: 300
	 * pages exceed the bound alone; 210 (the bin of the cached 200, so
	 * only two of the three 17-page ranges may go) need 205 freed */
	void *e300, *f210;
	b200 = cache_set_alloc(h, a);
	REQUIRE((e300 = cairn_heap_alloc(h, 300 * 4096)));
	REQUIRE((f210 = cairn_heap_alloc(h, 210 * 4096)));
	cache_set_free(h, a, b200);
	CHECK_EQ(cairn_heap_free(h, e300), 0);
	CHECK_EQ(stats(o).large_cached_frames, 3 * 17 + 200);
	CHECK_EQ(cairn_heap_free(h, f210), 0);
	CHECK_EQ(stats(o).large_cached_frames, 3 * 17 + 200);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cache_set_cycle(o, h, a, b200);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	/* no request takes a range under 17 pages (a small size aligned
	 * above a page): such ranges go straight back, and in a full cache
	 * evict nothing */
	b200 = cache_set_alloc(h, a);
	void *s1 = cairn_heap_alloc_aligned(h, 100, 128 << 10);
	void *s16 = cairn_heap_alloc_aligned(h, 64 << 10, 2 << 20);
	REQUIRE(s1 && s16);
	CHECK_EQ(cairn_objects_usable_size(o, s16), 64 << 10);
	CHECK_EQ(cairn_heap_free(h, s1), 0);
	CHECK_EQ(stats(o).large_cached_frames, 0);
	cache_set_free(h, a, b200);
	CHECK_EQ(cairn_heap_free(h, s16), 0);
	CHECK_EQ(stats(o).large_cached_frames, 3 * 17 + 200);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cache_set_cycle(o, h, a, b200);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	/* hardened: an overwritten link is reported and not followed */
	if (harden) {
		q = cairn_heap_alloc(h, 40 * 4096);
		q2 = cairn_heap_alloc(h, 40 * 4096);
		REQUIRE(q && q2);
		CHECK_EQ(cairn_heap_free(h, q), 0);
		CHECK_EQ(cairn_heap_free(h, q2), 0);
		*(uintptr_t *)q2 = (uintptr_t)keep; /* a write after free */
		r = cairn_host_reports();
		unsigned char *x = cairn_heap_alloc(h, 40 * 4096);
		CHECK(x == q2); /* the top of the bin is still sound */
		unsigned char *y = cairn_heap_alloc(h, 40 * 4096);
		CHECK(y != q && y != keep);
		CHECK_EQ(cairn_host_reports(), r + 1);
		CHECK_EQ(cairn_objects_validate(o), 0);
		cairn_heap_free(h, x);
		cairn_heap_free(h, y);
		CHECK_EQ(cairn_heap_free(h, q), CAIRN_EFREE); /* dropped, still cached */
	}
	/* two bins overwritten (hardened: a garbage link; not: a cycle):
	 * validate reports and the recount after the first cut cuts the
	 * second, neither followed nor looping */
	q = cairn_heap_alloc(h, 40 * 4096);
	q2 = cairn_heap_alloc(h, 40 * 4096);
	unsigned char *c1 = cairn_heap_alloc(h, 24 * 4096), *c2 = cairn_heap_alloc(h, 24 * 4096);
	REQUIRE(q && q2 && c1 && c2);
	CHECK_EQ(cairn_heap_free(h, q), 0);
	CHECK_EQ(cairn_heap_free(h, q2), 0);
	CHECK_EQ(cairn_heap_free(h, c1), 0);
	CHECK_EQ(cairn_heap_free(h, c2), 0);
	r = cairn_host_reports();
	*(uintptr_t *)c2 = harden ? (uintptr_t)keep : (uintptr_t)c2;
	CHECK(cairn_objects_validate(o) != 0);
	*(uintptr_t *)q2 = (uintptr_t)keep;
	CHECK(cairn_heap_alloc(h, 40 * 4096) == q2);
	unsigned char *y = cairn_heap_alloc(h, 40 * 4096); /* q dropped, c1 too */
	CHECK(y != q && y != c1 && y != c2);
	CHECK_EQ(cairn_host_reports(), r + 3); /* validate's, q2's and c2's links */
	CHECK_EQ(cairn_objects_validate(o), 0);
	CHECK(cairn_heap_alloc(h, 24 * 4096) == c2);
	CHECK_EQ(stats(o).large_cached_frames, 0);
	CHECK_EQ(cairn_heap_free(h, q), CAIRN_EFREE);
	CHECK_EQ(cairn_heap_free(h, c1), CAIRN_EFREE);
	CHECK_EQ(cairn_heap_free(h, q2), 0);
	CHECK_EQ(cairn_heap_free(h, y), 0);
	CHECK_EQ(cairn_heap_free(h, c2), 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* not hardened (a raw pointer is a link): a link into another bin
	 * is cut like any bad link, not followed; the range it names stays
	 * on its own bin and is served from there, once */
	if (!harden) {
		cairn_heap_offline(h);
		cairn_heap_online(h);
		unsigned char *l200 = cairn_heap_alloc(h, 200 * 4096);
		unsigned char *l24a = cairn_heap_alloc(h, 24 * 4096);
		unsigned char *l24b = cairn_heap_alloc(h, 24 * 4096);
		REQUIRE(l200 && l24a && l24b);
		CHECK_EQ(cairn_heap_free(h, l200), 0);
		CHECK_EQ(cairn_heap_free(h, l24a), 0);
		CHECK_EQ(cairn_heap_free(h, l24b), 0);
		*(uintptr_t *)l24b = (uintptr_t)l200; /* a write after free */
		r = cairn_host_reports();
		CHECK(cairn_heap_alloc(h, 24 * 4096) == l24b);
		unsigned char *z = cairn_heap_alloc(h, 24 * 4096);
		REQUIRE(z);
		CHECK(z != l200 && z != l24a);
		CHECK_EQ(cairn_host_reports(), r + 1);
		CHECK_EQ(cairn_objects_validate(o), 0);
		CHECK(cairn_heap_alloc(h, 200 * 4096) == l200);
		CHECK_EQ(cairn_host_reports(), r + 1);
		CHECK_EQ(cairn_heap_free(h, l24a), CAIRN_EFREE); /* dropped, still cached */
		CHECK_EQ(cairn_heap_free(h, l24b), 0);
		CHECK_EQ(cairn_heap_free(h, z), 0);
		CHECK_EQ(cairn_heap_free(h, l200), 0);
		CHECK_EQ(cairn_objects_validate(o), 0);
	}
	/* offline: every cached range back to the arena */
	CHECK_EQ(cairn_heap_free(h, keep), 0);
	cairn_heap_offline(h);
	cairn_heap_online(h);
	cairn_heap_offline(h1);
	cairn_heap_online(h1);
	CHECK_EQ(stats(o).large_cached_frames, 0); /* (the dropped range leaks) */
	CHECK(cairn_heap_free(h, keep) != 0); /* gone back: the arena refuses it */
	CHECK_EQ(cairn_objects_usable_size(o, keep), 0);
	CHECK_EQ(stats(o).large, 0);
	CHECK_EQ(cairn_arena_validate(&objtest_arena), 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	cairn_host_reports_quiet(0);
}

/* The instance's released blocks: what one heap gives back going offline
 * is the next slab of another, before any fresh frame; drained back to the
 * frames when memory runs out. */
static void test_released(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 2), *h1 = cairn_objects_heap(o, 3);
	enum { N = 4000 };
	static void *v[N];
	for (unsigned i = 0; i < N; i++)
		REQUIRE((v[i] = cairn_heap_alloc(h, 1000)));
	uint64_t slab_frames = stats(o).slab_frames;
	/* what the earlier tests' heaps left on the stacks, of orders these
	 * slabs did not take (an impossible request no longer drains them) */
	uint64_t released0 = stats(o).released_frames;
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h, v[i]), 0);
	cairn_heap_offline(h);
	CHECK_EQ(stats(o).slabs, 0);
	CHECK_EQ(stats(o).cached_frames, 0);
	CHECK_EQ(stats(o).released_frames, released0 + slab_frames);
	CHECK_EQ(cairn_objects_validate(o), 0);
	uint64_t fresh = objtest_free_frames(), meta = stats(o).meta_frames;
	for (unsigned i = 0; i < N; i++)
		REQUIRE((v[i] = cairn_heap_alloc(h1, 1000)));
	/* no frame taken for slabs (descriptors aside): all reused */
	CHECK_EQ(objtest_free_frames() + (stats(o).meta_frames - meta), fresh);
	CHECK_EQ(stats(o).released_frames, released0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	/* a free into a stacked block is refused */
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(cairn_heap_free(h1, v[i]), 0);
	cairn_heap_offline(h1);
	CHECK(stats(o).released_frames > 0);
	cairn_host_reports_quiet(1);
	uint64_t r = cairn_host_reports();
	CHECK_EQ(cairn_heap_free(cairn_objects_heap(o, 0), v[0]), CAIRN_ERANGE);
	CHECK_EQ(cairn_host_reports(), r + 1);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_objects_usable_size(o, v[0]), 0);
	cairn_heap_online(h);
	cairn_heap_online(h1);
	CHECK_EQ(cairn_objects_validate(o), 0);
}

/* Exhaustion: NULL, cleanly; everything works after the frees. */
static void test_exhaustion(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	enum { CAP = 4096 };
	static void *v[CAP];
	unsigned n = 0;
	for (;;) {
		void *p = cairn_heap_alloc(h, n % 2 ? 300000 : 90000);
		if (!p)
			break;
		REQUIRE(n < CAP);
		v[n++] = p;
	}
	CHECK(n > 100);
	CHECK_EQ(stats(o).large, n);
	CHECK_EQ(stats(o).released_frames, 0); /* drained for the arena */
	CHECK_EQ(stats(o).large_cached_frames, 0);
	CHECK_EQ(cairn_arena_validate(&objtest_arena), 0);
	for (void *p; n < CAP && (p = cairn_heap_alloc(h, 70000));) /* smaller may fit */
		v[n++] = p;
	while (n)
		CHECK_EQ(cairn_heap_free(h, v[--n]), 0);
	void *p = cairn_heap_alloc(h, 300000);
	CHECK(p != NULL);
	cairn_heap_free(h, p);
	CHECK_EQ(stats(o).large, 0);
}

/* The quantum cache: ranges of its own cookie, kept in magazines. */
static void test_qcache(struct cairn_objects *o)
{
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	void *p = cairn_heap_alloc(h, 100000);
	REQUIRE(p);
	uint64_t s, n, c;
	CHECK_EQ(cairn_arena_lookup(&objtest_arena, (uintptr_t)p, &s, &n, &c), 0);
	CHECK_EQ(c, cairn_qcache_cookie(objtest_qc));
	CHECK_EQ(cairn_objects_usable_size(o, p), pages(100000));
	CHECK_EQ(cairn_heap_free(h, p), 0);
	CHECK(cairn_qcache_cached_quanta(objtest_qc) >= pages(100000) / 4096);
	void *q = cairn_heap_alloc(h, 100000);
	CHECK(q == p); /* from the magazine */
	CHECK_EQ(cairn_heap_free(h, q), 0);
	/* aligned above a page, or beyond the cached sizes: the arena */
	p = cairn_heap_alloc_aligned(h, 100000, 1u << 20);
	REQUIRE(p);
	CHECK_EQ(cairn_arena_lookup(&objtest_arena, (uintptr_t)p, &s, &n, &c), 0);
	CHECK_EQ(c, (uintptr_t)o);
	CHECK_EQ(cairn_heap_free(h, p), 0);
	p = cairn_heap_alloc(h, 1u << 20);
	REQUIRE(p);
	CHECK_EQ(cairn_arena_lookup(&objtest_arena, (uintptr_t)p, &s, &n, &c), 0);
	CHECK_EQ(c, cairn_qcache_cookie(objtest_qc)); /* passed through */
	CHECK_EQ(cairn_heap_free(h, p), 0);
	cairn_objects_cpu_offline(o); /* the CPU's cached ranges go back */
	cairn_objects_cpu_online(o);
	CHECK_EQ(stats(o).large, 0);
}

/* Buddy large blocks beside released slab blocks: a large allocation that
 * finds no frames drains the released stacks before it fails. */
static void test_buddy_released(uint64_t free0)
{
	objtest_released_kib = 256 << 10;
	struct cairn_objects *o = objtest_create(CAIRN_OBJ_HARDEN_OFF);
	struct cairn_heap *h = cairn_objects_heap(o, 0);
	enum { CAP = 200000 };
	static void *v[CAP];
	unsigned n = 0;
	for (void *p; n < CAP && (p = cairn_heap_alloc(h, 1000));)
		v[n++] = p;
	while (n)
		CHECK_EQ(cairn_heap_free(h, v[--n]), 0);
	CHECK(stats(o).released_frames > 0);
	for (void *p; n < CAP && (p = cairn_heap_alloc(h, 1u << 20));)
		v[n++] = p;
	CHECK(n > 0);
	CHECK_EQ(stats(o).released_frames, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	while (n)
		CHECK_EQ(cairn_heap_free(h, v[--n]), 0);
	cairn_objects_destroy(o);
	objtest_released_kib = 0;
	CHECK_EQ(objtest_free_frames(), free0);
}

/* ---- requests above large_max: refused before anything changes ---- */

#define BEYOND_MAX (64 * MiB) /* large_max of the instance below */

/* Everything exhaustion would change: every heap's statistics and the
 * instance's (slabs, cached and released blocks, cached large ranges,
 * posted batches), the frames free, the arena's extents, the quantum
 * cache's ranges. */
struct beyond_snap {
	struct cairn_objects_stats all, heap[4];
	uint64_t free_frames, extents, qcached;
};

static struct beyond_snap beyond_snap(struct cairn_objects *o)
{
	struct beyond_snap s;
	memset(&s, 0, sizeof(s));
	cairn_objects_stats(o, &s.all);
	for (unsigned i = 0; i < 4; i++)
		cairn_objects_heap_stats(o, i, &s.heap[i]);
	s.free_frames = objtest_free_frames();
	s.extents = objtest_mode != OBJTEST_BUDDY ? extents() : 0;
	s.qcached = objtest_qc ? cairn_qcache_cached_quanta(objtest_qc) : 0;
	return s;
}

/* A test's instance after beyond_begin: its heaps 0 and 1, the live
 * objects beyond_fill left, and the state taken then. */
struct beyond {
	struct cairn_objects *o;
	struct cairn_heap *h, *h1;
	unsigned char *large;
	void *small;
	size_t usable; /* large's */
	struct beyond_snap was;
};

static void beyond_same(const struct beyond *t, const char *what)
{
	_Static_assert(sizeof(struct beyond_snap) % sizeof(uint64_t) == 0, "all uint64_t");
	struct beyond_snap now = beyond_snap(t->o);
	const uint64_t *a = (const uint64_t *)&t->was, *b = (const uint64_t *)&now;
	for (size_t i = 0; i < sizeof(now) / sizeof(uint64_t); i++) {
		if (a[i] != b[i])
			fprintf(stderr, "%s: figure %zu was %llu, now %llu\n", what, i,
				(unsigned long long)a[i], (unsigned long long)b[i]);
		CHECK_EQ(a[i], b[i]);
	}
}

/* Heaps with something to lose: slab blocks cached (heap 0) and released
 * (heap 2 went offline), large ranges cached (the heaps' caches or the
 * quantum cache), a remote free not posted yet (heap 1), and live objects
 * (*large with a pattern, *small). */
static void beyond_fill(struct cairn_objects *o, unsigned char **large, void **small)
{
	struct cairn_heap *h0 = cairn_objects_heap(o, 0), *h2 = cairn_objects_heap(o, 2);
	enum { N = 600 };
	static void *v[N];
	for (struct cairn_heap *h = h0;; h = h2) {
		for (unsigned i = 0; i < N; i++)
			REQUIRE((v[i] = cairn_heap_alloc(h, 2048)) != NULL);
		for (unsigned i = 1; i < N; i++)
			CHECK_EQ(cairn_heap_free(h, v[i]), 0);
		if (h == h2)
			break;
		*small = v[0];
	}
	CHECK_EQ(cairn_heap_free(h2, v[0]), 0);
	cairn_heap_offline(h2);
	cairn_heap_online(h2);
	for (unsigned i = 0; i < 4; i++)
		REQUIRE((v[i] = cairn_heap_alloc(h0, 100000)) != NULL);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(cairn_heap_free(h0, v[i]), 0);
	void *remote = cairn_heap_alloc(h0, 64);
	REQUIRE(remote);
	CHECK_EQ(cairn_heap_free(cairn_objects_heap(o, 1), remote), 0);
	*large = cairn_heap_alloc(h0, 200000);
	REQUIRE(*large);
	memset(*large, 0x5a, 200000);
}

/* Set-ups beyond objtest's modes: the large arena imports from a parent
 * arena, which imports frames in place (objtest_va stands for the parent,
 * so objtest_large_fini destroys both). */
#define SETUP_PARENT (OBJTEST_CACHES + 1)
/* ... or from an embedder's source the arena does not know (frames in
 * place, in spans of at most USER_SPAN_MAX, which it says it can ever
 * lend), with or without the quantum cache in front. */
#define SETUP_USER (OBJTEST_CACHES + 2)
#define SETUP_USER_QCACHE (OBJTEST_CACHES + 3)
#define USER_SPAN_MAX (64 * MiB)

static int user_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	(void)ctx;
	if (size > USER_SPAN_MAX)
		return CAIRN_ENOMEM;
	return objtest_src.import(objtest_src.ctx, size, align, addr);
}

static void user_release(void *ctx, uint64_t addr, uint64_t size)
{
	(void)ctx;
	objtest_src.release(objtest_src.ctx, addr, size);
}

/* A block of frames in place is aligned to its size, which the frames
 * import takes as at least the alignment: what user_import can ever lend
 * is one of at most USER_SPAN_MAX at that alignment. */
static bool user_could_lend(void *ctx, uint64_t size, uint64_t align)
{
	(void)ctx;
	return (size > align ? size : align) <= USER_SPAN_MAX;
}

static void user_setup(bool qcached)
{
	static const struct cairn_arena_source user_src = { user_import, user_release, NULL,
							    user_could_lend };
	objtest_mode = OBJTEST_DIRECT;
	objtest_fs = (struct cairn_frames_source){ .frames = objtest_frames };
	cairn_arena_source_frames(&objtest_src, &objtest_fs);
	struct cairn_arena_config ac = { .quantum = 4096, .source = &user_src,
					 .import_quantum = 2 << 20 };
	REQUIRE(cairn_arena_create(&objtest_arena, objtest_frames, 0, 0, &ac) == 0);
	struct cairn_qcache_config qc = { .max_quanta = 64, .mag_size = 4, .depot_full = 4,
					  .depot_empty = 4, .drain_wait = 1u << 16 };
	if (qcached)
		REQUIRE(cairn_qcache_create(&objtest_qc, &objtest_arena, objtest_frames, &qc) == 0);
}

static void large_setup(int setup)
{
	if (setup == SETUP_USER || setup == SETUP_USER_QCACHE) {
		user_setup(setup == SETUP_USER_QCACHE);
		return;
	}
	if (setup != SETUP_PARENT) {
		objtest_large_init((enum objtest_large)setup, 2 << 20);
		return;
	}
	static struct cairn_arena_source parent_src;
	objtest_mode = OBJTEST_MAPPED;
	objtest_fs = (struct cairn_frames_source){ .frames = objtest_frames };
	cairn_arena_source_frames(&objtest_src, &objtest_fs);
	struct cairn_arena_config pc = { .quantum = 4096, .source = &objtest_src,
					 .import_quantum = 2 << 20 };
	REQUIRE(cairn_arena_create(&objtest_va, objtest_frames, 0, 0, &pc) == 0);
	cairn_arena_source_arena(&parent_src, &objtest_va);
	struct cairn_arena_config ac = { .quantum = 4096, .source = &parent_src,
					 .import_quantum = 2 << 20 };
	REQUIRE(cairn_arena_create(&objtest_arena, objtest_frames, 0, 0, &ac) == 0);
}

/* An instance of the set-up, filled (beyond_fill) and its state taken:
 * what the refused requests of the tests below must leave as it is. */
static void beyond_begin(int mode, bool harden, struct beyond *t)
{
	large_setup(mode);
	t->o = objtest_create(harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF);
	beyond_fill(t->o, &t->large, &t->small);
	t->was = beyond_snap(t->o);
	CHECK(t->was.heap[0].slabs > 0);
	CHECK(t->was.heap[0].cached_frames > 0);
	t->h = cairn_objects_heap(t->o, 0);
	t->h1 = cairn_objects_heap(t->o, 1);
	t->usable = cairn_objects_usable_size(t->o, t->large);
}

/* The large object beyond_fill wrote, with its bytes as written. */
static void beyond_large_intact(const struct beyond *t)
{
	CHECK_EQ(cairn_objects_usable_size(t->o, t->large), t->usable);
	for (size_t i = 0; i < 200000; i++)
		if (t->large[i] != 0x5a) {
			CHECK_EQ(t->large[i], 0x5a);
			break;
		}
	CHECK_EQ(cairn_objects_validate(t->o), 0);
}

/* The end of each test below: large (the large object where it is now)
 * and the small one freed, heap 1's batch flushed, the instance whole and
 * gone; with arena_empty, the arena holds nothing and is whole. */
static void beyond_end(const struct beyond *t, void *large, bool arena_empty)
{
	CHECK_EQ(cairn_heap_free(t->h, large), 0);
	CHECK_EQ(cairn_heap_free(t->h, t->small), 0);
	cairn_heap_flush(t->h1);
	CHECK_EQ(cairn_objects_validate(t->o), 0);
	cairn_objects_destroy(t->o);
	if (arena_empty) {
		CHECK_EQ(extents(), 0);
		CHECK_EQ(cairn_arena_validate(&objtest_arena), 0);
	}
	objtest_large_max = 0;
	objtest_large_fini();
}

static void test_beyond_max(enum objtest_large mode, bool harden)
{
	objtest_large_max = BEYOND_MAX;
	struct beyond t;
	beyond_begin(mode, harden, &t);
	/* what the requests below would take back, were they tried */
	if (objtest_released_kib)
		CHECK(t.was.all.released_frames > 0);
	if (objtest_large_cache_kib)
		CHECK(t.was.all.large_cached_frames > 0);
	if (mode == OBJTEST_QCACHE && !harden)
		CHECK(t.was.qcached > 0);
	CHECK(t.usable >= 200000);

	/* malloc-like: above the bound, by far and by a byte */
	CHECK(cairn_heap_alloc(t.h, 2ull << 30) == NULL);
	beyond_same(&t, "alloc 2 GiB");
	CHECK(cairn_heap_alloc(t.h, BEYOND_MAX + 1) == NULL);
	beyond_same(&t, "alloc large_max + 1");
	CHECK(cairn_heap_alloc_slow(t.h, 2ull << 30) == NULL);
	CHECK(cairn_heap_calloc(t.h, 2, 1ull << 30) == NULL);
	CHECK(cairn_heap_alloc(t.h1, 2ull << 30) == NULL); /* its batch stays */
	beyond_same(&t, "alloc_slow, calloc, heap 1");
	/* aligned: an alignment no span has, and a size that fits only
	 * without its alignment's slack (pages + align - 4 KiB) */
	CHECK(cairn_heap_alloc_aligned(t.h, 100000, 1ull << 40) == NULL);
	CHECK(cairn_heap_alloc_aligned(t.h, 16, 1ull << 40) == NULL);
	beyond_same(&t, "aligned 2^40");
	CHECK(cairn_heap_alloc_aligned(t.h, BEYOND_MAX / 2 + 8192 - 100, BEYOND_MAX / 2) == NULL);
	beyond_same(&t, "aligned beyond by its slack");
	/* realloc: ENOMEM, the object untouched */
	int err = -1;
	CHECK(cairn_heap_realloc_err(t.h, t.large, 2ull << 30, &err) == NULL);
	CHECK_EQ(err, CAIRN_ENOMEM);
	err = -1;
	CHECK(cairn_heap_realloc_err(t.h, t.small, BEYOND_MAX + 1, &err) == NULL);
	CHECK_EQ(err, CAIRN_ENOMEM);
	CHECK(cairn_heap_realloc(t.h, t.large, 2ull << 30) == NULL);
	beyond_same(&t, "realloc");
	/* the calls on the calling CPU's heap */
	CHECK(cairn_objects_alloc(t.o, 2ull << 30) == NULL);
	CHECK(cairn_objects_alloc_aligned(t.o, 4096, 1ull << 40) == NULL);
	CHECK(cairn_objects_calloc(t.o, 1, 2ull << 30) == NULL);
	CHECK(cairn_objects_realloc(t.o, t.large, 2ull << 30) == NULL);
	beyond_same(&t, "cairn_objects_*");
	beyond_large_intact(&t);

	/* at the bound: tried, and served */
	void *p = cairn_heap_alloc(t.h, BEYOND_MAX);
	REQUIRE(p);
	CHECK(cairn_objects_usable_size(t.o, p) >= BEYOND_MAX);
	CHECK_EQ(cairn_heap_free(t.h, p), 0);
	p = cairn_heap_alloc_aligned(t.h, BEYOND_MAX / 2, BEYOND_MAX / 2);
	REQUIRE(p);
	CHECK_EQ((uintptr_t)p & (BEYOND_MAX / 2 - 1), 0);
	CHECK_EQ(cairn_heap_free(t.h, p), 0);
	p = cairn_heap_realloc(t.h, t.large, BEYOND_MAX);
	REQUIRE(p);
	CHECK_EQ(((unsigned char *)p)[199999], 0x5a);
	beyond_end(&t, p, false);
}

/* large_max 0 (unknown): a request no memory could ever hold (1 GiB,
 * twice the frames the arena's spans and the buddy blocks come from)
 * fails as one above large_max does, with nothing changed, rather than
 * after the exhaustion path took every heap's caches back for a retry
 * that fails too. Buddy blocks too, whose largest order (1 GiB) is beyond
 * the memory. */
static void test_impossible(enum objtest_large mode, bool harden)
{
	objtest_large_max = 0;
	struct beyond t;
	beyond_begin(mode, harden, &t);
	const size_t never = 2 * objtest_mem; /* 1 GiB: the largest order */

	CHECK(cairn_heap_alloc(t.h, never) == NULL);
	beyond_same(&t, "impossible: alloc");
	CHECK(cairn_heap_alloc(t.h, never - 4096) == NULL);
	CHECK(cairn_heap_calloc(t.h, 2, never / 2) == NULL);
	CHECK(cairn_heap_alloc(t.h1, never) == NULL); /* its batch stays */
	beyond_same(&t, "impossible: alloc below, calloc, heap 1");
	int err = -1;
	CHECK(cairn_heap_realloc_err(t.h, t.large, never, &err) == NULL);
	CHECK_EQ(err, CAIRN_ENOMEM);
	err = -1;
	CHECK(cairn_heap_realloc_err(t.h, t.small, never, &err) == NULL);
	CHECK_EQ(err, CAIRN_ENOMEM);
	beyond_same(&t, "impossible: realloc");
	CHECK(cairn_objects_alloc(t.o, never) == NULL);
	CHECK(cairn_objects_realloc(t.o, t.large, never) == NULL);
	beyond_same(&t, "impossible: cairn_objects_*");
	beyond_large_intact(&t);
	beyond_end(&t, t.large, false);
}

/* large_max 0 (unknown), and an alignment no span has or could be lent
 * at: 2^47 lies above every address of the host's user space, so no span
 * of the arena (frames in place, mapped in the VA window, or lent by a
 * parent arena) and no range of the VA arena starts at a multiple of it,
 * whatever the size; the buddy path rounds the request to a block beyond
 * its largest order. Such a request fails at once with nothing changed
 * (NULL), as one of a size no memory holds does, rather than after the
 * exhaustion path took every heap's caches and the quantum cache back
 * for a retry that fails too. An alignment some span can have is still
 * served. */
static void test_impossible_aligned(int setup, bool harden)
{
	objtest_large_max = 0;
	struct beyond t;
	beyond_begin(setup, harden, &t);
	const size_t never = 1ull << 47;
	if (setup == OBJTEST_QCACHE && !harden)
		CHECK(t.was.qcached > 0); /* what a drain would send back */

	CHECK(cairn_heap_alloc_aligned(t.h, 16, never) == NULL);
	beyond_same(&t, "impossible aligned: 16 B");
	CHECK(cairn_heap_alloc_aligned(t.h, 100000, never) == NULL);
	CHECK(cairn_heap_alloc_aligned(t.h, 2 << 20, never) == NULL);
	CHECK(cairn_heap_alloc_aligned(t.h, 100000, never << 1) == NULL);
	beyond_same(&t, "impossible aligned: large sizes");
	CHECK(cairn_heap_alloc_aligned(t.h1, 4096, never) == NULL); /* its batch stays */
	CHECK(cairn_objects_alloc_aligned(t.o, 4096, never) == NULL);
	beyond_same(&t, "impossible aligned: heap 1, cairn_objects_*");
	beyond_large_intact(&t);

	/* an alignment the memory has: served */
	void *p = cairn_heap_alloc_aligned(t.h, 100000, 1 << 20);
	REQUIRE(p);
	CHECK_EQ((uintptr_t)p & ((1 << 20) - 1), 0);
	CHECK_EQ(cairn_heap_free(t.h, p), 0);
	beyond_end(&t, t.large, setup != OBJTEST_BUDDY);
}

/* large_max 0, and an arena whose source is the embedder's own: the
 * arena cannot know what it lends but asks it (could_lend). A size beyond
 * its spans (though within the memory) or an alignment no span of it can
 * have fails at once with nothing changed, here and in the quantum cache
 * in front, rather than after the exhaustion path (and the cache's drain)
 * for a retry that fails too. What it lends is still served. */
static void test_impossible_user(int setup, bool harden)
{
	objtest_large_max = 0;
	struct beyond t;
	beyond_begin(setup, harden, &t);
	if (setup == SETUP_USER_QCACHE && !harden)
		CHECK(t.was.qcached > 0); /* what a drain would send back */

	CHECK(cairn_heap_alloc(t.h, 2 * USER_SPAN_MAX) == NULL);
	beyond_same(&t, "user source: twice its spans");
	CHECK(cairn_heap_alloc(t.h, USER_SPAN_MAX + 1) == NULL); /* imports 2x */
	CHECK(cairn_heap_alloc(t.h1, 2 * USER_SPAN_MAX) == NULL); /* its batch stays */
	CHECK(cairn_heap_calloc(t.h, 2, USER_SPAN_MAX) == NULL);
	beyond_same(&t, "user source: above its spans");
	/* 512 MiB: the memory's spans lie inside one such block, off its
	 * start (frames from 1 MiB): none ever held has a multiple of it */
	CHECK(cairn_heap_alloc_aligned(t.h, 100000, 8 * USER_SPAN_MAX) == NULL);
	CHECK(cairn_heap_alloc_aligned(t.h, 16, 1ull << 47) == NULL);
	beyond_same(&t, "user source: aligned");
	int err = -1;
	CHECK(cairn_heap_realloc_err(t.h, t.large, 2 * USER_SPAN_MAX, &err) == NULL);
	CHECK_EQ(err, CAIRN_ENOMEM);
	CHECK(cairn_objects_alloc(t.o, 2 * USER_SPAN_MAX) == NULL);
	beyond_same(&t, "user source: realloc, cairn_objects_*");
	if (objtest_qc) {
		uint64_t addr = 7;
		CHECK_EQ(cairn_qcache_alloc(objtest_qc, 2 * USER_SPAN_MAX, &addr), CAIRN_ENOMEM);
		CHECK_EQ(addr, 7);
		beyond_same(&t, "user source: the quantum cache");
	}
	beyond_large_intact(&t);

	/* what the source lends: served */
	void *p = cairn_heap_alloc(t.h, USER_SPAN_MAX / 2);
	REQUIRE(p);
	CHECK_EQ(cairn_heap_free(t.h, p), 0);
	p = cairn_heap_alloc_aligned(t.h, 100000, USER_SPAN_MAX / 2);
	REQUIRE(p);
	CHECK_EQ((uintptr_t)p & (USER_SPAN_MAX / 2 - 1), 0);
	CHECK_EQ(cairn_heap_free(t.h, p), 0);
	beyond_end(&t, t.large, true);
}

/* The embedder's gate around every arena call: the leave of the first
 * call after `window_action` is set, at depth 0, runs it (what another CPU
 * may do right then). */
static int window_depth;
static void (*window_action)(void);

static void window_enter(void)
{
	window_depth++;
}

static void window_leave(void)
{
	if (--window_depth == 0 && window_action) {
		void (*f)(void) = window_action;
		window_action = NULL;
		f();
	}
}

static struct cairn_objects *window_o;
static void *window_q;
static size_t window_usable;
static int window_free;

/* Another heap takes a range of more than 4 MiB (no entry of its own)
 * at the address just given back, and frees it. */
static void window_big(void)
{
	struct cairn_heap *h1 = cairn_objects_heap(window_o, 1);
	window_q = cairn_heap_alloc(h1, 5u << 20);
	if (!window_q)
		return;
	window_usable = cairn_objects_usable_size(window_o, window_q);
	window_free = cairn_heap_free(h1, window_q);
}

/* A cached range going back to the arena is RETIRING until the tree has
 * it, then cleared by a CAS. In between another CPU may take the address
 * for an object that stores no entry (above 4 MiB, or from the quantum
 * cache): its free and usable size must not read the stale RETIRING. An
 * arena of its own, first fit from a known base, makes the reuse exact. */
static void test_retiring_reuse(uint64_t free0)
{
	cairn_phys_t base;
	REQUIRE(cairn_frames_alloc(objtest_frames, 12, 0, &base) == 0); /* 16 MiB */
	for (int harden = 0; harden < 2; harden++) {
		struct cairn_arena ar;
		struct cairn_arena_config ac = { .quantum = 4096 };
		uintptr_t vb = (uintptr_t)cairn_port_phys_to_virt(base);
		REQUIRE(cairn_arena_create(&ar, objtest_frames, vb, 16u << 20, &ac) == 0);
		struct cairn_btree_stats bs;
		CHECK_EQ(cairn_btree_validate(&ar.tree, &bs), 0);
		uint64_t ext0 = bs.extents; /* the free span */
		struct cairn_objects_config cfg = {
			.frames = objtest_frames, .phys_limit = objtest_mem, .seed = 7,
			.harden = harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF,
			.large_arena = &ar, .large_cache_kib = 512,
			.arena_enter = window_enter, .arena_leave = window_leave,
		};
		struct cairn_objects *o;
		REQUIRE(cairn_objects_create(&o, &cfg) == 0);
		struct cairn_heap *h = cairn_objects_heap(o, 0);
		unsigned char *p = cairn_heap_alloc(h, 17 * 4096);
		REQUIRE(p);
		CHECK_EQ((uintptr_t)p, vb); /* first fit */
		CHECK_EQ(cairn_heap_free(h, p), 0); /* cached */
		CHECK_EQ(stats(o).large_cached_frames, 17);
		uint64_t r = cairn_host_reports();
		window_o = o;
		window_q = NULL;
		window_usable = 0;
		window_free = -1;
		window_action = window_big;
		cairn_heap_offline(h); /* the cache goes back: the window */
		cairn_heap_online(h);
		CHECK(window_action == NULL);
		CHECK(window_q == p);
		CHECK_EQ(window_usable, 5u << 20);
		CHECK_EQ(window_free, 0);
		CHECK_EQ(cairn_host_reports(), r);
		CHECK_EQ(stats(o).large, 0);
		CHECK_EQ(cairn_objects_validate(o), 0);
		/* the address serves again, cached or not */
		p = cairn_heap_alloc(h, 17 * 4096);
		CHECK_EQ((uintptr_t)p, vb);
		CHECK_EQ(cairn_heap_free(h, p), 0);
		cairn_objects_destroy(o);
		CHECK_EQ(cairn_btree_validate(&ar.tree, &bs), 0);
		CHECK_EQ(bs.extents, ext0);
		cairn_arena_destroy(&ar);
	}
	CHECK_EQ(cairn_frames_free(objtest_frames, base, 12), 0);
	CHECK_EQ(objtest_free_frames(), free0);
}

static void run(enum objtest_large mode, uint64_t free0)
{
	/* objtest_large_fini clears them: both passes get the caller's */
	unsigned large_cache_kib = objtest_large_cache_kib, released_kib = objtest_released_kib;
	for (int harden = 0; harden < 2; harden++) {
		objtest_large_cache_kib = large_cache_kib;
		objtest_released_kib = released_kib;
		objtest_large_init(mode, 2 << 20);
		enum cairn_obj_harden hd = harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF;
		struct cairn_objects *o = objtest_create(hd);
		struct cairn_qcache *qc = objtest_qc; /* the cache serves o alone */
		objtest_qc = NULL;
		struct cairn_objects *other = objtest_create(hd);
		objtest_qc = qc;
		bool qcached = mode == OBJTEST_QCACHE && !harden;
		test_sizes(o, qcached);
		test_aligned(o);
		test_calloc_realloc(o);
		test_errors(o, other, qcached);
		if (qcached)
			test_qcache(o);
		if (objtest_large_cache_kib)
			test_large_cache(o, harden);
		if (objtest_released_kib)
			test_released(o);
		if (mode != OBJTEST_QCACHE)
			test_exhaustion(o);
		CHECK_EQ(cairn_objects_validate(o), 0);
		/* destroy with live large objects (and cached ranges) */
		for (unsigned i = 0; i < 300; i++)
			cairn_heap_alloc(cairn_objects_heap(o, i % 4), 70000 + i * 5000);
		for (unsigned i = 0; i < 10; i++)
			cairn_heap_alloc(cairn_objects_heap(other, 0), 70000);
		cairn_objects_destroy(o);
		CHECK_EQ(stats(other).large, 10);
		cairn_objects_destroy(other);
		CHECK_EQ(extents(), 0); /* every span went back */
		objtest_large_fini();
		CHECK_EQ(objtest_free_frames(), free0);
	}
}

int main(void)
{
	objtest_init(4, 512);
	uint64_t free0 = objtest_free_frames();
	run(OBJTEST_DIRECT, free0);
	run(OBJTEST_MAPPED, free0);
	run(OBJTEST_QCACHE, free0);
	objtest_large_cache_kib = 1024;
	objtest_released_kib = 64 << 10;
	run(OBJTEST_DIRECT, free0);
	objtest_large_cache_kib = objtest_released_kib = 0;
	test_buddy_released(free0);
	test_retiring_reuse(free0);
	for (int harden = 0; harden < 2; harden++) {
		test_beyond_max(OBJTEST_CACHES, harden);
		test_beyond_max(OBJTEST_MAPPED, harden);
		test_beyond_max(OBJTEST_QCACHE, harden);
		test_impossible(OBJTEST_BUDDY, harden);
		test_impossible(OBJTEST_CACHES, harden);
		test_impossible(OBJTEST_MAPPED, harden);
		test_impossible(OBJTEST_QCACHE, harden);
		test_impossible_aligned(OBJTEST_BUDDY, harden);
		test_impossible_aligned(OBJTEST_CACHES, harden);
		test_impossible_aligned(OBJTEST_MAPPED, harden);
		test_impossible_aligned(OBJTEST_QCACHE, harden);
		test_impossible_aligned(SETUP_PARENT, harden);
		test_impossible_user(SETUP_USER, harden);
		test_impossible_user(SETUP_USER_QCACHE, harden);
		CHECK_EQ(objtest_free_frames(), free0);
	}

	/* bad configurations */
	objtest_large_init(OBJTEST_DIRECT, 2 << 20);
	struct cairn_objects *o;
	struct cairn_objects_config cfg = { .frames = objtest_frames, .phys_limit = objtest_mem,
					    .large_qcache = (struct cairn_qcache *)&cfg };
	CHECK_EQ(cairn_objects_create(&o, &cfg), CAIRN_EINVAL); /* cache, no arena */
	cfg.large_qcache = NULL;
	cfg.large_cache_kib = 1024;
	CHECK_EQ(cairn_objects_create(&o, &cfg), CAIRN_EINVAL); /* large cache, no arena */
	cfg.large_cache_kib = 0;
	cfg.large_max = 1ull << 30;
	CHECK_EQ(cairn_objects_create(&o, &cfg), CAIRN_EINVAL); /* large_max, no arena */
	cfg.large_max = 0;
	struct cairn_arena fine;
	struct cairn_arena_config ac = { .quantum = 64 };
	REQUIRE(cairn_arena_create(&fine, objtest_frames, 1u << 30, 1u << 20, &ac) == 0);
	cfg.large_qcache = NULL;
	cfg.large_arena = &fine;
	CHECK_EQ(cairn_objects_create(&o, &cfg), CAIRN_EINVAL); /* quantum not a page */
	cairn_arena_destroy(&fine);
	objtest_large_fini();
	CHECK_EQ(objtest_free_frames(), free0);
	return check_done("objects_large");
}
