/* SPDX-License-Identifier: MIT */
/*
 * Host stress of the arenas: N threads registered as CPUs allocate, free,
 * reserve and look up ranges in two arenas at once, one with fixed spans
 * and one importing from a parent arena (spans come and go). An ownership
 * oracle (one atomic owner word per quantum) catches a range handed to two
 * holders at once; lookups of a thread's own ranges must return them
 * exactly, and lookups of random addresses must return a consistent
 * extent (the cookie encodes the size it was allocated with), racing with
 * splits, unlinks and node recycling. At the end every range is freed and
 * each arena must be back to its spans, validated.
 *
 * With `drain` set, the main thread keeps taking every free frame away and
 * giving them back meanwhile, so node allocations fail at random points
 * of concurrent operations (they must fail cleanly with CAIRN_ENOMEM).
 *
 * With `share` set, the threads run in pairs on CPUs k and k + 8, which
 * share a finger slot (btree.c: cairn_port_cpu() & 7): two carves write
 * one slot at once and a free may read the key of one with the path of
 * the other (a torn record); half the frees are of the live list's last
 * entry, usually the extent allocated last, whose finger is the one just
 * written, so guided descents race
 * with the other writer's record. Every guess is checked before it is
 * used: the oracle, the lookups and the validator must not notice.
 *
 * usage: arena_stress threads ops-per-thread fanout seed [drain [share]]
 */
#include <pthread.h>
#include <stdio.h>

#include "env.h"

#define QA 64ull
#define NQA 16384ull
#define BASE_A (1ull << 30)
#define QC 64ull
#define PSIZE (16 * MiB)
#define BASE_P (2ull << 30)
#define NQC (PSIZE / QC)
#define LIVE 48

static struct cairn_arena arena_a, parent, child;
static _Atomic uint32_t owner_a[NQA], owner_c[NQC];
static unsigned nthreads, nops, maxme;
static bool share;
static atomic_int failed;
static atomic_uint running;
static atomic_uint_fast64_t n_alloc, n_nomem, n_free, n_lookup, n_reserve;

struct live {
	struct cairn_arena *a;
	uint64_t addr, size;
};

static void fail(const char *what, uint64_t x, uint64_t y)
{
	fprintf(stderr, "arena_stress: %s %#llx %#llx\n", what,
		(unsigned long long)x, (unsigned long long)y);
	atomic_store(&failed, 1);
}

static _Atomic uint32_t *oracle(struct cairn_arena *a, uint64_t addr,
				uint64_t *q)
{
	if (a == &arena_a) {
		*q = QA;
		return &owner_a[(addr - BASE_A) / QA];
	}
	*q = QC;
	return &owner_c[(addr - BASE_P) / QC];
}

static void claim(struct cairn_arena *a, uint64_t addr, uint64_t size,
		  uint32_t me)
{
	uint64_t q;
	_Atomic uint32_t *o = oracle(a, addr, &q);
	for (uint64_t i = 0; i < size / q; i++) {
		uint32_t zero = 0;
		if (!atomic_compare_exchange_strong(&o[i], &zero, me))
			fail("range handed out twice", addr + i * q, zero);
	}
}

static void unclaim(struct cairn_arena *a, uint64_t addr, uint64_t size,
		    uint32_t me)
{
	uint64_t q;
	_Atomic uint32_t *o = oracle(a, addr, &q);
	for (uint64_t i = 0; i < size / q; i++)
		if (atomic_exchange(&o[i], 0) != me)
			fail("freeing a range not owned", addr + i * q, me);
}

static uint64_t cookie_of(uint32_t me, uint64_t size, uint64_t seq)
{
	return (uint64_t)me << 56 | (size & 0xffffff) << 32 | (seq & 0xffffffff);
}

static void check_lookup(struct cairn_arena *a, uint64_t x)
{
	uint64_t s, n, c;
	int r = cairn_arena_lookup(a, x, &s, &n, &c);
	atomic_fetch_add_explicit(&n_lookup, 1, memory_order_relaxed);
	if (r == CAIRN_EFREE || r == CAIRN_ERANGE)
		return;
	if (r != 0)
		fail("lookup error", x, (uint64_t)r);
	else if (x < s || x - s >= n || ((c >> 32) & 0xffffff) != n ||
		 (c >> 56) == 0 || (c >> 56) > maxme || s % a->quantum)
		fail("inconsistent lookup", x, c);
}

static void *worker(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg;
	/* share: thread i on CPU 1 + i / 2 + 8 * (i % 2), finger slots
	 * 1, 1, 2, 2, ... (CPU 0 is main's) */
	unsigned ti = (unsigned)(seed % 1000);
	int cpu = share ? cairn_host_cpu_bind(1 + ti / 2 + 8 * (ti % 2)) == 0
				  ? (int)(1 + ti / 2 + 8 * (ti % 2)) : -1
			: cairn_host_cpu_register();
	if (cpu < 0) {
		fail("no cpu slot", 0, 0);
		return NULL;
	}
	uint32_t me = (uint32_t)cpu + 1;
	struct live live[LIVE];
	unsigned nlive = 0;

	for (unsigned op = 0; op < nops && !atomic_load(&failed); op++) {
		uint64_t r = splitmix(&seed);
		struct cairn_arena *a = (r & 3) ? &arena_a : &child;
		uint64_t q = a->quantum;
		unsigned kind = (unsigned)((r >> 8) % 100);

		if (nlive == LIVE || (kind < 40 && nlive)) { /* free one */
			unsigned i = (unsigned)((r >> 16) % nlive);
			if (share && (r & 0x1000000000000ull)) /* the last entry: usually the last alloc */
				i = nlive - 1;
			struct live l = live[i];
			live[i] = live[--nlive];
			uint64_t s, n, c;
			if (cairn_arena_lookup(l.a, l.addr + l.size - 1, &s, &n, &c) ||
			    s != l.addr || n != l.size || (c >> 56) != me)
				fail("own range not found", l.addr, l.size);
			unclaim(l.a, l.addr, l.size, me);
			int e = cairn_arena_free(l.a, l.addr, l.size);
			if (e)
				fail("free failed", l.addr, (uint64_t)e);
			atomic_fetch_add_explicit(&n_free, 1, memory_order_relaxed);
		} else if (kind < 75) { /* allocate */
			uint64_t size = ((r >> 20) % 16 + 1) * q;
			if (((r >> 28) & 15) == 0)
				size *= 16;
			uint64_t align = ((r >> 32) & 3) == 0 ? q << ((r >> 34) % 5) : 0;
			enum cairn_fit pol = (enum cairn_fit)((r >> 40) % 3);
			uint64_t x;
			/* plain first fit: the carve's own entry, or the query */
			int e = !align && pol == CAIRN_FIT_FIRST && (r & 0x100000000000ull)
					? cairn_arena_alloc(a, size, cookie_of(me, size, op), &x)
					: cairn_arena_xalloc(a, size, align, 0, 0, 0, 0, pol,
							     cookie_of(me, size, op), &x);
			if (e == CAIRN_ENOMEM) {
				atomic_fetch_add_explicit(&n_nomem, 1, memory_order_relaxed);
				continue;
			}
			if (e) {
				fail("alloc error", size, (uint64_t)e);
				continue;
			}
			if (align && x % align)
				fail("misaligned allocation", x, align);
			claim(a, x, size, me);
			live[nlive++] = (struct live){ a, x, size };
			atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
		} else if (kind < 80 && a == &arena_a) { /* reserve */
			uint64_t size = ((r >> 20) % 4 + 1) * q;
			uint64_t x = BASE_A + ((r >> 24) % (NQA - 4)) * q;
			int e = cairn_arena_reserve(a, x, size, cookie_of(me, size, op));
			if (e == 0) {
				claim(a, x, size, me);
				live[nlive++] = (struct live){ a, x, size };
				atomic_fetch_add_explicit(&n_reserve, 1, memory_order_relaxed);
			} else if (e != CAIRN_EBUSY && e != CAIRN_ENOMEM) {
				fail("reserve error", x, (uint64_t)e);
			}
		} else { /* look up random addresses */
			for (unsigned k = 0; k < 4; k++) {
				uint64_t y = splitmix(&seed);
				if (a == &arena_a)
					check_lookup(a, BASE_A + y % (NQA * QA));
				else
					check_lookup(a, BASE_P + y % PSIZE);
			}
		}
	}
	while (nlive) {
		struct live l = live[--nlive];
		unclaim(l.a, l.addr, l.size, me);
		int e = cairn_arena_free(l.a, l.addr, l.size);
		if (e)
			fail("final free failed", l.addr, (uint64_t)e);
	}
	cairn_host_cpu_unregister();
	atomic_fetch_sub(&running, 1);
	return NULL;
}

static int count_ext(const struct cairn_ext *e, void *arg)
{
	(void)e;
	(*(unsigned *)arg)++;
	return 0;
}

int main(int argc, char **argv)
{
	nthreads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	nops = argc > 2 ? (unsigned)atoi(argv[2]) : 20000;
	unsigned fanout = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
	uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	bool drain = argc > 5 && atoi(argv[5]);
	share = argc > 6 && atoi(argv[6]);
	maxme = share ? nthreads / 2 + 9 : nthreads + 1;

	env_init(share ? nthreads / 2 + 10 : nthreads + 1, 256);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t frames0 = env_free_frames();
	struct cairn_arena_config ca = { .quantum = QA, .fanout = fanout };
	REQUIRE(cairn_arena_create(&arena_a, env_frames, BASE_A, NQA * QA, &ca) == 0);
	struct cairn_arena_config cp = { .quantum = 4096, .fanout = fanout };
	REQUIRE(cairn_arena_create(&parent, env_frames, BASE_P, PSIZE, &cp) == 0);
	struct cairn_arena_source src;
	cairn_arena_source_arena(&src, &parent);
	struct cairn_arena_config cc = { .quantum = QC, .source = &src,
					 .import_quantum = 64 * 1024,
					 .fanout = fanout };
	REQUIRE(cairn_arena_create(&child, env_frames, 0, 0, &cc) == 0);

	pthread_t th[64];
	REQUIRE(nthreads <= 64);
	atomic_store(&running, nthreads);
	for (unsigned i = 0; i < nthreads; i++)
		REQUIRE(pthread_create(&th[i], NULL, worker,
				       (void *)(uintptr_t)(seed * 1000 + i)) == 0);
	unsigned drains = 0;
	while (drain && atomic_load(&running)) {
		env_drain();
		for (volatile unsigned i = 0; i < 20000; i++)
			;
		env_undrain();
		for (volatile unsigned i = 0; i < 200000; i++)
			;
		drains++;
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);

	CHECK(!atomic_load(&failed));
	CHECK_EQ(cairn_arena_validate(&arena_a), 0);
	CHECK_EQ(cairn_arena_validate(&child), 0);
	CHECK_EQ(cairn_arena_validate(&parent), 0);
	unsigned na = 0, nc = 0, np = 0;
	cairn_btree_walk(&arena_a.tree, count_ext, &na);
	cairn_btree_walk(&child.tree, count_ext, &nc);
	cairn_btree_walk(&parent.tree, count_ext, &np);
	CHECK_EQ(na, 1);
	uint64_t s, n, c;
	CHECK_EQ(cairn_arena_lookup(&arena_a, BASE_A, &s, &n, &c), CAIRN_EFREE);
	/* spans imported but never used by the importer may stay: release
	 * happens on free. Everything else went back to the parent. */
	CHECK_EQ(np, 1 + 2 * nc);
	struct cairn_btree_stats st;
	CHECK_EQ(cairn_btree_validate(&arena_a.tree, &st), 0);
	printf("arena_stress: %u threads x %u ops%s, fanout %u: %llu allocs (%llu ENOMEM), "
	       "%llu frees, %llu reserves, %llu lookups; imports %llu releases %llu; "
	       "arena nodes %llu (%llu on the free list), depth %u; %u drains\n",
	       nthreads, nops, share ? " (finger slots shared)" : "", fanout,
	       (unsigned long long)n_alloc,
	       (unsigned long long)n_nomem, (unsigned long long)n_free,
	       (unsigned long long)n_reserve, (unsigned long long)n_lookup,
	       (unsigned long long)atomic_load(&child.imports),
	       (unsigned long long)atomic_load(&child.releases),
	       (unsigned long long)st.nodes, (unsigned long long)st.free_nodes,
	       st.depth, drains);
	CHECK_EQ(cairn_host_reports(), 0);
	cairn_arena_destroy(&child);
	cairn_arena_destroy(&parent);
	cairn_arena_destroy(&arena_a);
	CHECK_EQ(env_free_frames(), frames0);
	return check_done("arena_stress");
}
