/* SPDX-License-Identifier: MIT */
/*
 * Quantum caches under concurrency: threads as CPUs allocate and free ranges
 * of 1..20 quanta (20 > the cached 16: some pass through), hand ranges to
 * each other through a mailbox so frees land on other CPUs, and come and go
 * (a departing thread's slot is drained and reused). An ownership oracle of
 * one atomic byte per quantum fails the run on any quantum handed out twice.
 * Every range handed out is looked up at once: it must be allocated in the
 * arena to the cache, exactly as long as asked (rounded to the quantum).
 * At the end every quantum is free in the arena again.
 *
 * With a span of a few MiB the arena runs out: allocations that fail drain
 * every CPU's caches while the others allocate and free. With `import`,
 * the cache's arena has no span of its own and imports 64 KiB spans from a
 * parent arena over the span, releasing them when they become free again
 * (so drains race imports and releases too); at the end the child holds
 * nothing and the parent's span is one free extent.
 *
 * usage: qcache_stress [threads] [ops per thread] [rounds] [seed] [span MiB]
 *                      [import]
 */
#include <cairn/host.h>
#include <cairn/quantum_cache.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../check.h"

#define MiB (1024ull * 1024)
#define Q 4096ull
#define VA 0x200000000000ull
#define MAXSPAN (32 * MiB)
#define HELD 64
#define MAILBOX 32

static struct cairn_arena parent, arena;
static struct cairn_qcache *qc;
static uint64_t span = MAXSPAN;
static atomic_uint nomem;
static _Atomic unsigned char owner[MAXSPAN / Q];
static _Atomic uint64_t mailbox[MAILBOX]; /* addr | quanta, 0 = empty */
static atomic_int errors;
static uint64_t ops, seed;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void own(uint64_t addr, unsigned q, unsigned char from, unsigned char to)
{
	for (unsigned i = 0; i < q; i++) {
		unsigned char e = from;
		if (!atomic_compare_exchange_strong(&owner[(addr - VA) / Q + i], &e, to)) {
			fprintf(stderr, "quantum %#llx: holder %u, expected %u\n",
				(unsigned long long)(addr + i * Q), e, from);
			atomic_fetch_add(&errors, 1);
		}
	}
}

static void *cpu_main(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	int cpu = cairn_host_cpu_register();
	REQUIRE(cpu >= 0);
	unsigned char me = (unsigned char)(cpu + 1);
	uint64_t s = seed * 7919 + id + 1, held[HELD];
	unsigned q[HELD], n = 0;
	for (uint64_t i = 0; i < ops; i++) {
		uint64_t r = rnd(&s) % 100;
		if (n && (r < 45 || n == HELD)) {
			unsigned k = (unsigned)(rnd(&s) % n);
			own(held[k], q[k], me, 0);
			if (cairn_qcache_free(qc, held[k], q[k] * Q))
				atomic_fetch_add(&errors, 1);
			held[k] = held[--n], q[k] = q[n];
		} else if (r < 90) {
			unsigned k = 1 + (unsigned)(rnd(&s) % 20);
			uint64_t a;
			int err = cairn_qcache_alloc(qc, k * Q - (r & 1) * 7, &a);
			if (err == CAIRN_ENOMEM) {
				atomic_fetch_add(&nomem, 1);
				continue;
			}
			if (err || a < VA || a + k * Q > VA + span || a % Q) {
				atomic_fetch_add(&errors, 1);
				continue;
			}
			own(a, k, 0, me);
			uint64_t start, len, cookie;
			if (cairn_arena_lookup(&arena, a + (k - 1) * Q, &start, &len,
					       &cookie) != 0 ||
			    start != a || len != k * Q ||
			    cookie != cairn_qcache_cookie(qc)) {
				fprintf(stderr, "%#llx (%u quanta): not the cache's\n",
					(unsigned long long)a, k);
				atomic_fetch_add(&errors, 1);
			}
			held[n] = a, q[n++] = k;
		} else if (n) { /* swap with whoever left a range in a slot */
			unsigned k = (unsigned)(rnd(&s) % n);
			own(held[k], q[k], me, 255);
			uint64_t got = atomic_exchange(&mailbox[rnd(&s) % MAILBOX], held[k] | q[k]);
			held[k] = held[--n], q[k] = q[n];
			if (got) {
				held[n] = got & ~(Q - 1), q[n] = (unsigned)(got & (Q - 1));
				own(held[n], q[n], 255, me);
				n++;
			}
		}
	}
	while (n--) {
		own(held[n], q[n], me, 0);
		if (cairn_qcache_free(qc, held[n], q[n] * Q))
			atomic_fetch_add(&errors, 1);
	}
	/* going away: what this CPU caches goes back before the slot is free */
	if (cairn_qcache_drain_cpu(qc, (unsigned)cpu))
		atomic_fetch_add(&errors, 1);
	cairn_host_cpu_unregister();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000;
	unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 3;
	seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	span = argc > 5 ? strtoull(argv[5], NULL, 0) * MiB : MAXSPAN;
	bool import = argc > 6 && atoi(argv[6]);
	REQUIRE(threads >= 1 && threads <= 64);
	REQUIRE(span && span <= MAXSPAN);
	/* fewer slots than threads over all rounds: slots are reused */
	REQUIRE(cairn_host_init(threads, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames *f;
	struct cairn_frames_config fcfg = { .ncpus = threads };
	REQUIRE(cairn_frames_init(&f, map, 1, &fcfg) == 0);
	struct cairn_arena_config acfg = { .quantum = Q };
	struct cairn_arena_source src;
	if (import) {
		REQUIRE(cairn_arena_create(&parent, f, VA, span, &acfg) == 0);
		cairn_arena_source_arena(&src, &parent);
		struct cairn_arena_config ccfg = { .quantum = Q, .source = &src,
						   .import_quantum = 16 * Q };
		REQUIRE(cairn_arena_create(&arena, f, 0, 0, &ccfg) == 0);
	} else {
		REQUIRE(cairn_arena_create(&arena, f, VA, span, &acfg) == 0);
	}
	struct cairn_qcache_config qcfg = { .ncpus = threads };
	REQUIRE(cairn_qcache_create(&qc, &arena, f, &qcfg) == 0);

	for (unsigned round = 0; round < rounds; round++) {
		pthread_t t[64];
		for (unsigned i = 0; i < threads; i++)
			pthread_create(&t[i], NULL, cpu_main, (void *)(uintptr_t)(round * threads + i));
		for (unsigned i = 0; i < threads; i++)
			pthread_join(t[i], NULL);
	}
	for (unsigned i = 0; i < MAILBOX; i++) {
		uint64_t got = atomic_exchange(&mailbox[i], 0);
		if (got) {
			own(got & ~(Q - 1), (unsigned)(got & (Q - 1)), 255, 0);
			CHECK_EQ(cairn_qcache_free(qc, got & ~(Q - 1), (got & (Q - 1)) * Q), 0);
		}
	}
	cairn_qcache_drain_all(qc);
	CHECK_EQ(cairn_qcache_cached_quanta(qc), 0);
	CHECK_EQ(atomic_load(&errors), 0);
	CHECK_EQ(cairn_host_reports(), 0); /* the stress misuses nothing */
	uint64_t start, len, cookie;
	if (import) {
		/* every import went back: the child has no span left */
		CHECK_EQ(cairn_arena_lookup(&arena, VA, &start, &len, &cookie), CAIRN_ERANGE);
		CHECK_EQ(atomic_load(&arena.imports), atomic_load(&arena.releases));
		CHECK(atomic_load(&arena.imports) > 0);
		CHECK_EQ(cairn_arena_validate(&parent), 0);
	}
	struct cairn_arena *whole = import ? &parent : &arena;
	CHECK_EQ(cairn_arena_lookup(whole, VA, &start, &len, &cookie), CAIRN_EFREE);
	CHECK_EQ(cairn_arena_lookup(whole, VA + span - Q, &start, &len, &cookie),
		 CAIRN_EFREE);
	struct cairn_btree_stats bst;
	CHECK_EQ(cairn_btree_validate(&whole->tree, &bst), 0);
	CHECK_EQ(bst.extents, 1); /* one free extent: the span */
	CHECK_EQ(cairn_arena_validate(&arena), 0);
	cairn_qcache_destroy(qc);
	cairn_arena_destroy(&arena);
	if (import)
		cairn_arena_destroy(&parent);
	CHECK_EQ(cairn_frames_validate(f), 0);
	printf("qcache stress: %u threads x %u rounds, seed %llu, %llu MiB%s, %u ENOMEM, errors %d\n",
	       threads, rounds, (unsigned long long)seed, (unsigned long long)(span / MiB),
	       import ? " imported" : "", atomic_load(&nomem), atomic_load(&errors));
	return check_done("qcache_stress");
}
