/* SPDX-License-Identifier: MIT */
/*
 * Quantum caches in front of a range arena: sizes, alignment, owners seen by
 * lookup, pass-through sizes, bad frees (the arena's error, nothing changed;
 * every wrong size, address and owner against every size of range),
 * conservation (allocated + cached + free in the arena == the span), and
 * exhaustion while every free range sits in other CPUs' caches, of a span
 * and of a frames source.
 */
#include <cairn/host.h>
#include <cairn/quantum_cache.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4
#define Q 4096ull
#define VA 0x100000000000ull

static struct cairn_frames *frames;

static void bind(unsigned cpu)
{
	cairn_host_cpu_unregister();
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
}

/* Quanta of the arena's span that are free in the arena itself. */
static uint64_t arena_free_quanta(struct cairn_arena *a, uint64_t span)
{
	uint64_t n = 0, start, len, cookie;
	for (uint64_t at = VA; at < VA + span;) {
		int err = cairn_arena_lookup(a, at, &start, &len, &cookie);
		if (err == CAIRN_EFREE) {
			n++;
			at += Q;
		} else {
			REQUIRE(err == 0 && len);
			at = start + len;
		}
	}
	return n;
}

static void test_basic(void)
{
	struct cairn_arena a;
	const uint64_t span = 64 * MiB;
	struct cairn_arena_config acfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&a, frames, VA, span, &acfg) == 0);
	struct cairn_qcache *qc;
	CHECK_EQ(cairn_qcache_create(&qc, &a, frames, &(struct cairn_qcache_config){ .max_quanta = 65 }),
		 CAIRN_EINVAL);
	REQUIRE(cairn_qcache_create(&qc, &a, frames, NULL) == 0);
	bind(0);

	uint64_t addr[17][8], held = 0;
	for (unsigned q = 1; q <= 17; q++) { /* 17: passes through */
		for (unsigned i = 0; i < 8; i++) {
			uint64_t size = q * Q - (i & 1) * 100; /* rounded up */
			CHECK_EQ(cairn_qcache_alloc(qc, size, &addr[q - 1][i]), 0);
			CHECK_EQ(addr[q - 1][i] % Q, 0);
			uint64_t start, len, cookie;
			CHECK_EQ(cairn_arena_lookup(&a, addr[q - 1][i] + (q - 1) * Q, &start, &len, &cookie), 0);
			CHECK_EQ(start, addr[q - 1][i]);
			CHECK_EQ(len, q * Q);
			CHECK_EQ(cookie, cairn_qcache_cookie(qc));
			held += q;
		}
	}
	/* conservation: in hands + cached + free in the arena == the span */
	CHECK_EQ(held + cairn_qcache_cached_quanta(qc) + arena_free_quanta(&a, span), span / Q);
	CHECK_EQ(cairn_arena_validate(&a), 0);

	cairn_host_reports_quiet(1);
	uint64_t x = addr[2][0]; /* 3 quanta */
	CHECK_EQ(cairn_qcache_free(qc, x, 2 * Q), CAIRN_EORDER);  /* wrong size */
	CHECK_EQ(cairn_qcache_free(qc, x + Q, 3 * Q), CAIRN_EFREE); /* interior */
	CHECK_EQ(cairn_qcache_free(qc, VA + span + Q, Q), CAIRN_ERANGE);
	CHECK_EQ(cairn_qcache_alloc(qc, 0, &x), CAIRN_EINVAL);
	/* a size no arena can ever hold (it rounds past 2^64) fails with the
	 * arena's ENOMEM and drains nothing: every CPU's cached ranges stay,
	 * and no size goes lean */
	uint64_t cached0 = cairn_qcache_cached_quanta(qc);
	struct cairn_mag_stats ms0, ms1;
	cairn_mag_stats(cairn_qcache_mags(qc, 1), &ms0);
	CHECK_EQ(cairn_qcache_alloc(qc, UINT64_MAX, &x), CAIRN_ENOMEM);
	CHECK_EQ(cairn_qcache_alloc(qc, UINT64_MAX - Q + 2, &x), CAIRN_ENOMEM);
	cairn_mag_stats(cairn_qcache_mags(qc, 1), &ms1);
	CHECK_EQ(ms1.drains, ms0.drains);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), cached0);
	CHECK_EQ(held + cairn_qcache_cached_quanta(qc) + arena_free_quanta(&a, span), span / Q);
	cairn_host_reports_quiet(0);
	/* a range of a cached size the arena gave another owner is the
	 * arena's to free: it goes back there, never into a magazine (from
	 * which the cache would hand it out as its own) */
	uint64_t cached = cairn_qcache_cached_quanta(qc), y, start, len, cookie;
	CHECK_EQ(cairn_arena_alloc(&a, 2 * Q, 77, &y), 0);
	CHECK_EQ(cairn_qcache_free(qc, y, 2 * Q), 0);
	CHECK_EQ(cairn_arena_lookup(&a, y, &start, &len, &cookie), CAIRN_EFREE);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), cached);
	CHECK_EQ(held + cairn_qcache_cached_quanta(qc) + arena_free_quanta(&a, span), span / Q);

	/* frees from another CPU join that CPU's magazines */
	bind(1);
	for (unsigned q = 1; q <= 17; q++)
		for (unsigned i = 0; i < 8; i += 2) {
			CHECK_EQ(cairn_qcache_free(qc, addr[q - 1][i], q * Q), 0);
			held -= q;
		}
	bind(0);
	for (unsigned q = 1; q <= 17; q++)
		for (unsigned i = 1; i < 8; i += 2) {
			CHECK_EQ(cairn_qcache_free(qc, addr[q - 1][i], q * Q), 0);
			held -= q;
		}
	CHECK_EQ(held, 0);
	CHECK_EQ(cairn_qcache_cached_quanta(qc) + arena_free_quanta(&a, span), span / Q);
	/* After a drain every range is back in the arena, so freeing one again
	 * is the arena's double free. (While the first free still sits in a
	 * magazine the range is allocated to the cache: not detectable.) */
	CHECK_EQ(cairn_qcache_drain_cpu(qc, 1), 0);
	cairn_qcache_drain_all(qc);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(arena_free_quanta(&a, span), span / Q);
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_qcache_free(qc, addr[0][0], Q), CAIRN_EFREE);
	cairn_host_reports_quiet(0);
	cairn_qcache_destroy(qc);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
}

/* ---- every wrong free refused, with nothing changed ---- */

#define MQ 4          /* cached sizes: 1..MQ quanta */
#define MSPAN 48      /* quanta in the span */

/* What a free could change: every quantum's lookup, the cached quanta,
 * every size's operations on CPU 0. */
struct qc_snap {
	int err[MSPAN];
	uint64_t start[MSPAN], len[MSPAN], cookie[MSPAN];
	uint64_t cached, ops[MQ];
};

static void qc_snap(struct cairn_arena *a, struct cairn_qcache *qc, struct qc_snap *sn)
{
	memset(sn, 0, sizeof(*sn));
	for (unsigned i = 0; i < MSPAN; i++)
		sn->err[i] = cairn_arena_lookup(a, VA + i * Q, &sn->start[i], &sn->len[i],
						&sn->cookie[i]);
	sn->cached = cairn_qcache_cached_quanta(qc);
	for (unsigned q = 1; q <= MQ; q++) {
		struct cairn_mag_cpu_stats st;
		REQUIRE(cairn_mag_cpu_stats(cairn_qcache_mags(qc, q), 0, &st) == 0);
		sn->ops[q - 1] = st.hits + st.misses;
	}
}

/* The size the arena gives a request of `size` bytes (0: none). */
static uint64_t qround(uint64_t size)
{
	return size && size <= UINT64_MAX - (Q - 1) ? (size + Q - 1) & ~(Q - 1) : 0;
}

/* Ranges of the cache at every cached size and one past them, and ranges
 * of another owner (77) at the same sizes; every free of one of them at a
 * size it was not allocated with (zero, a byte short of or past a class,
 * past the largest, past 2^64), at an address inside it, of a free quantum
 * and of an address outside the span: refused with the arena's error, and
 * nothing changed: no quantum's owner, start or size, nothing cached, no
 * operation on any size's magazines (a free the check let through would go
 * into the magazines of the size it names, and the cache would hand the
 * range out as that size). Then every range freed at its own size. */
static void test_misfree(void)
{
	struct cairn_arena a;
	struct cairn_arena_config acfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&a, frames, VA, MSPAN * Q, &acfg) == 0);
	struct cairn_qcache *qc;
	struct cairn_qcache_config qcfg = { .max_quanta = MQ, .ncpus = NCPUS, .mag_size = 2,
					    .depot_full = 1, .depot_empty = 1 };
	REQUIRE(cairn_qcache_create(&qc, &a, frames, &qcfg) == 0);
	bind(0);
	enum { NR = 3 * (MQ + 1) };
	uint64_t r[NR], len[NR];
	bool ours[NR];
	unsigned n = 0;
	for (unsigned rep = 0; rep < 2; rep++)
		for (unsigned q = 1; q <= MQ + 1; q++, n++) {
			REQUIRE(cairn_qcache_alloc(qc, q * Q, &r[n]) == 0);
			len[n] = q * Q;
			ours[n] = true;
		}
	for (unsigned q = 1; q <= MQ + 1; q++, n++) {
		REQUIRE(cairn_arena_alloc(&a, q * Q, 77, &r[n]) == 0);
		len[n] = q * Q;
		ours[n] = false;
	}
	const uint64_t sizes[] = { 0, 1, Q - 1, Q, Q + 1, 2 * Q - 1, 2 * Q, 2 * Q + 1, 3 * Q,
				   MQ * Q, MQ * Q + 1, (MQ + 1) * Q, (MQ + 2) * Q, MSPAN * Q,
				   UINT64_MAX, UINT64_MAX - Q + 2 };
	unsigned refused = 0;
	cairn_host_reports_quiet(1);
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
			for (uint64_t off = 0; off < len[i]; off += Q) {
				uint64_t size = sizes[k];
				if (!off && qround(size) == len[i])
					continue; /* its own size */
				struct qc_snap was, now;
				qc_snap(&a, qc, &was);
				int err = cairn_qcache_free(qc, r[i] + off, size);
				qc_snap(&a, qc, &now);
				if (!err || memcmp(&was, &now, sizeof(was)))
					fprintf(stderr, "%s range %#llx of %llu quanta, free at +%llu of "
						"%llu bytes: %d\n", ours[i] ? "cache" : "owner 77",
						(unsigned long long)r[i],
						(unsigned long long)(len[i] / Q),
						(unsigned long long)off, (unsigned long long)size, err);
				CHECK(err != 0);
				CHECK(!memcmp(&was, &now, sizeof(was)));
				refused++;
			}
	/* a free quantum, and outside the span */
	struct qc_snap was, now;
	qc_snap(&a, qc, &was);
	uint64_t start, l, cookie, hole = VA;
	while (cairn_arena_lookup(&a, hole, &start, &l, &cookie) == 0)
		hole = start + l;
	REQUIRE(hole < VA + MSPAN * Q);
	CHECK_EQ(cairn_qcache_free(qc, hole, Q), CAIRN_EFREE);
	CHECK_EQ(cairn_qcache_free(qc, VA + MSPAN * Q, Q), CAIRN_ERANGE);
	CHECK_EQ(cairn_qcache_free(qc, VA - Q, 2 * Q), CAIRN_ERANGE);
	qc_snap(&a, qc, &now);
	CHECK(!memcmp(&was, &now, sizeof(was)));
	cairn_host_reports_quiet(0);
	CHECK(refused > 500);

	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(ours[i] ? cairn_qcache_free(qc, r[i], len[i])
				 : cairn_arena_free(&a, r[i], len[i]), 0);
	cairn_qcache_drain_all(qc);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(arena_free_quanta(&a, MSPAN * Q), MSPAN);
	cairn_qcache_destroy(qc);
	CHECK_EQ(cairn_arena_validate(&a), 0);
	cairn_arena_destroy(&a);
}

/* Destroy with ranges still handed out, over an arena that imports from
 * a parent: the cached ranges go back (their spans to the parent), the
 * ranges in hand stay allocated in the arena under the cache's cookie, and
 * freeing them in the arena afterwards gives their spans back too. */
static void test_destroy_outstanding(void)
{
	struct cairn_arena parent, a;
	struct cairn_arena_config pcfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&parent, frames, VA, 16 * MiB, &pcfg) == 0);
	struct cairn_arena_source src;
	cairn_arena_source_arena(&src, &parent);
	struct cairn_arena_config acfg = { .quantum = Q, .source = &src,
					   .import_quantum = 16 * Q };
	REQUIRE(cairn_arena_create(&a, frames, 0, 0, &acfg) == 0);
	struct cairn_qcache *qc;
	REQUIRE(cairn_qcache_create(&qc, &a, frames, NULL) == 0);
	bind(0);
	uint64_t x[64], cookie = cairn_qcache_cookie(qc), s, n, c;
	for (unsigned i = 0; i < 64; i++)
		CHECK_EQ(cairn_qcache_alloc(qc, (i % 20 + 1) * Q, &x[i]), 0);
	for (unsigned i = 0; i < 64; i += 2) /* half back, into the caches */
		CHECK_EQ(cairn_qcache_free(qc, x[i], (i % 20 + 1) * Q), 0);
	CHECK(cairn_qcache_cached_quanta(qc) > 0);
	cairn_qcache_destroy(qc);
	for (unsigned i = 0; i < 64; i++) {
		int err = cairn_arena_lookup(&a, x[i], &s, &n, &c);
		if (i % 2 == 0) {
			CHECK(err == CAIRN_EFREE || err == CAIRN_ERANGE);
		} else {
			CHECK_EQ(err, 0);
			CHECK(s == x[i] && n == (i % 20 + 1) * Q && c == cookie);
		}
	}
	CHECK_EQ(cairn_arena_validate(&a), 0);
	for (unsigned i = 1; i < 64; i += 2)
		CHECK_EQ(cairn_arena_free(&a, x[i], (i % 20 + 1) * Q), 0);
	CHECK_EQ(atomic_load(&a.imports), atomic_load(&a.releases));
	CHECK_EQ(cairn_arena_lookup(&parent, VA, &s, &n, &c), CAIRN_EFREE);
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&parent.tree, &st), 0);
	CHECK_EQ(st.extents, 1);
	cairn_arena_destroy(&a);
	cairn_arena_destroy(&parent);
}

/* ---- exhaustion: every free range cached by other CPUs ---- */

static struct cairn_arena xa;
static struct cairn_qcache *xqc;
static atomic_int x_ready, x_stop;
#define XSPAN (2 * MiB)

/* A worker's end: ready, then answering drains until told to stop. */
static void *x_wait(void)
{
	atomic_fetch_add(&x_ready, 1);
	while (!atomic_load(&x_stop))
		cairn_qcache_poll(xqc); /* an online CPU keeps answering */
	cairn_host_cpu_unregister();
	return NULL;
}

/* CPUs 1-3 run fn one after the other (each has cached what it took
 * before the next starts); then the caller runs as CPU 0. */
static void x_start(pthread_t t[3], void *(*fn)(void *))
{
	cairn_host_cpu_unregister();
	atomic_store(&x_ready, 0);
	atomic_store(&x_stop, 0);
	for (unsigned i = 0; i < 3; i++) {
		pthread_create(&t[i], NULL, fn, (void *)(uintptr_t)(i + 1));
		while (atomic_load(&x_ready) != (int)i + 1)
			;
	}
	bind(0);
}

/* Stop the workers, free the n quanta CPU 0 took, and drain every CPU's
 * cache and the depot back to the arena. */
static void x_finish(pthread_t t[3], const uint64_t *v, uint64_t n)
{
	atomic_store(&x_stop, 1);
	for (unsigned i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (uint64_t i = 0; i < n; i++)
		CHECK_EQ(cairn_qcache_free(xqc, v[i], Q), 0);
	for (unsigned c = 0; c < NCPUS; c++)
		CHECK_EQ(cairn_qcache_drain_cpu(xqc, c), 0);
	cairn_qcache_drain_all(xqc);
}

static void *x_worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
	uint64_t v[XSPAN / Q];
	unsigned n = 0, q = cpu; /* CPU c caches ranges of c quanta */
	while (n < XSPAN / Q && cairn_qcache_alloc(xqc, q * Q, &v[n]) == 0)
		n++;
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(cairn_qcache_free(xqc, v[i], q * Q), 0);
	return x_wait();
}

/* CPU `arg` takes frames-sourced quanta until the source is empty, and
 * caches them all. */
static atomic_int xf_errors;

static void *xf_worker(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_bind(cpu) == 0);
	static uint64_t v[4][512];
	unsigned n = 0;
	while (n < 512 && cairn_qcache_alloc(xqc, Q, &v[cpu][n]) == 0)
		n++;
	for (unsigned i = 0; i < n; i++)
		if (cairn_qcache_free(xqc, v[cpu][i], Q))
			atomic_fetch_add(&xf_errors, 1); /* checked by CPU 0 */
	return x_wait();
}

static void test_exhaustion(void)
{
	struct cairn_arena_config acfg = { .quantum = Q };
	REQUIRE(cairn_arena_create(&xa, frames, VA, XSPAN, &acfg) == 0);
	struct cairn_qcache_config cfg = { .depot_full = 200, .mag_size = 15 };
	REQUIRE(cairn_qcache_create(&xqc, &xa, frames, &cfg) == 0);
	pthread_t t[3];
	x_start(t, x_worker);
	uint64_t cached = cairn_qcache_cached_quanta(xqc);
	printf("exhaustion: %llu quanta, %llu of them cached by CPUs 1-3\n",
	       (unsigned long long)(XSPAN / Q), (unsigned long long)cached);
	CHECK(cached > XSPAN / Q / 2);
	/* the whole span, one quantum at a time, on CPU 0. The allocation
	 * that finds the arena exhausted drains every cached range back and
	 * then, lean, takes one quantum: not a magazine's worth */
	uint64_t v[XSPAN / Q + 1], n = 0, drains = 0;
	for (;;) {
		uint64_t back = arena_free_quanta(&xa, XSPAN) + cairn_qcache_cached_quanta(xqc);
		struct cairn_mag_stats was, now;
		cairn_mag_stats(cairn_qcache_mags(xqc, 1), &was);
		if (n > XSPAN / Q || cairn_qcache_alloc(xqc, Q, &v[n]))
			break;
		n++;
		cairn_mag_stats(cairn_qcache_mags(xqc, 1), &now);
		if (now.drains != was.drains) {
			drains++;
			CHECK_EQ(arena_free_quanta(&xa, XSPAN), back - 1);
			CHECK_EQ(now.lean_gets, was.lean_gets + 1);
		}
	}
	/* one drain among the allocations that succeeded (the last one,
	 * which fails, drains again) */
	CHECK_EQ(drains, 1);
	CHECK_EQ(n, XSPAN / Q);
	CHECK_EQ(cairn_qcache_cached_quanta(xqc), 0);
	x_finish(t, v, n);
	CHECK_EQ(arena_free_quanta(&xa, XSPAN), XSPAN / Q);
	cairn_qcache_destroy(xqc);
	CHECK_EQ(cairn_arena_validate(&xa), 0);
	cairn_arena_destroy(&xa);
}

/* ---- exhaustion of a frames-sourced arena ----
 *
 * The arena has no span of its own: it imports frames, used in place, from
 * a small frames instance of its own (1 MiB), one frame a span. CPUs 1-3
 * take every frame through the cache and free it into their magazines, so
 * every frame is imported and cached elsewhere. CPU 0 must still get every
 * quantum: the allocation that finds the source empty drains the cached
 * ranges back, their spans go back to the frames, and the import succeeds.
 * Every range's owner is the cache; at the end every frame is back. */

static struct cairn_frames *small;
static struct cairn_frames_source fsrc;

static void test_frames_exhaustion(void)
{
	struct cairn_mem_range map[] = { { 63 * MiB, 1 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&small, map, 1, &fcfg) == 0);
	uint64_t total = frames_free_total(small);
	REQUIRE(total > 64);
	fsrc = (struct cairn_frames_source){ .frames = small };
	struct cairn_arena_source src;
	cairn_arena_source_frames(&src, &fsrc);
	struct cairn_arena_config acfg = { .quantum = Q, .source = &src };
	REQUIRE(cairn_arena_create(&xa, frames, 0, 0, &acfg) == 0);
	struct cairn_qcache_config cfg = { .depot_full = 200, .mag_size = 15,
					   .max_quanta = 1 };
	REQUIRE(cairn_qcache_create(&xqc, &xa, frames, &cfg) == 0);
	pthread_t t[3];
	x_start(t, xf_worker);
	CHECK_EQ(atomic_load(&xf_errors), 0);
	CHECK_EQ(frames_free_total(small), 0); /* every frame imported ... */
	CHECK_EQ(cairn_qcache_cached_quanta(xqc), total); /* ... and cached */
	static uint64_t v[512];
	uint64_t n = 0;
	while (n < 512 && cairn_qcache_alloc(xqc, Q, &v[n]) == 0) {
		uint64_t start, len, cookie;
		CHECK_EQ(cairn_arena_lookup(&xa, v[n], &start, &len, &cookie), 0);
		CHECK(start == v[n] && len == Q && cookie == cairn_qcache_cookie(xqc));
		n++;
	}
	CHECK_EQ(n, total);
	CHECK_EQ(cairn_qcache_cached_quanta(xqc), 0);
	CHECK_EQ(frames_free_total(small), 0);
	x_finish(t, v, n);
	CHECK_EQ(frames_free_total(small), total); /* every span went back */
	CHECK_EQ(atomic_load(&xa.imports), atomic_load(&xa.releases));
	cairn_qcache_destroy(xqc);
	CHECK_EQ(cairn_arena_validate(&xa), 0);
	cairn_arena_destroy(&xa);
	CHECK_EQ(cairn_frames_validate(small), 0);
}

int main(void)
{
	REQUIRE(cairn_host_init(NCPUS, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	uint64_t before = frames_free_total(frames);
	test_basic();
	test_misfree();
	test_destroy_outstanding();
	test_exhaustion();
	test_frames_exhaustion();
	/* every frame of the caches and the trees went back */
	CHECK_EQ(frames_free_total(frames), before);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("qcache_unit");
}
