/* SPDX-License-Identifier: MIT */
/*
 * An alloc that imports a span must not lose it to another CPU.
 *
 * Nothing in the arena fits, so the alloc imports a span from the source.
 * Were the span added to the tree free and the request retried in a second
 * update, another CPU could take the whole span in between, and the alloc
 * would import again, and again, until it gave up with ENOMEM while the
 * source still had memory to lend. Here that other CPU is the main thread:
 * the yield hook (the library is built with CAIRN_BTREE_TEST_YIELD) parks
 * the victim at its first yield point once the arena counts an import of
 * its own, and the main thread then allocates a whole span. Where the
 * import serves the request in the update that adds the span, the hook
 * never fires for a request the span serves at its start or end.
 *
 * Three victims: first fit and best fit (the piece at the span's start),
 * highest fit (at its end). The source lends SPANS spans of the import
 * quantum, the lowest free one first. Expected: the victim gets the first
 * span the source lent it, in one import, with its owner; the main thread
 * then takes a span whole from the source; everything goes back.
 *
 * Then the same three fits with a phase (PHASE of ALIGN: free room on both
 * sides of the request in any span, so the update that adds the span
 * cannot serve it and the victim retries). The main thread takes the span
 * whole at each of the victim's first STEALS (more than the four imports
 * an alloc once made at most) retries, and lets the next retry be.
 * Expected: the victim gets the span of its last import, STEALS + 1 of
 * them, at the phase; an import lost to another CPU is no reason to fail
 * while the source lends. And a victim whose window misses every span the
 * source lends: it fails with ENOMEM after IMPORT_TRIES imports although
 * the main thread takes each of them, rather than importing until the
 * source has nothing left.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "env.h"

#define Q 16ull
#define X 0x40000000ull /* the source's spans, from here up */
#define SPAN 0x1000ull  /* the import quantum */
#define SPANS 8u
#define REQ 256ull
#define ALIGN 512ull
#define PHASE 128ull       /* placed at 128 or 0xe80 in a span: room both sides */
#define STEALS 5u
#define IMPORT_TRIES 4u    /* the imports a request no span serves may make */
#define WINDOW 0x10000000ull /* a maxaddr below every span */

static struct cairn_arena arena;

static _Thread_local bool is_victim, armed;
static _Thread_local uint64_t armed_at;

static atomic_uint lent_mask; /* bit i: span i is out */
static atomic_uint imports, releases, bad, victim_imports, pauses;
static sem_t victim_event, victim_go;
static atomic_bool victim_done;

static int src_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	(void)ctx;
	if (size != SPAN || (X & (align - 1))) {
		if (size > SPAN || (size & (size - 1)))
			atomic_fetch_add(&bad, 1);
		return CAIRN_ENOMEM;
	}
	for (unsigned i = 0; i < SPANS; i++) {
		unsigned m = atomic_load(&lent_mask);
		if (m & (1u << i))
			continue;
		if (!atomic_compare_exchange_strong(&lent_mask, &m, m | 1u << i)) {
			i = (unsigned)-1; /* look again from the lowest */
			continue;
		}
		atomic_fetch_add(&imports, 1);
		if (is_victim) {
			atomic_fetch_add(&victim_imports, 1);
			armed = true;
			armed_at = atomic_load(&arena.imports);
		}
		*addr = X + i * SPAN;
		return 0;
	}
	return CAIRN_ENOMEM;
}

static void src_release(void *ctx, uint64_t addr, uint64_t size)
{
	(void)ctx;
	uint64_t i = (addr - X) / SPAN;
	if (addr < X || (addr - X) % SPAN || i >= SPANS || size != SPAN ||
	    !(atomic_fetch_and(&lent_mask, ~(1u << i)) & (1u << i))) {
		atomic_fetch_add(&bad, 1);
		return;
	}
	atomic_fetch_add(&releases, 1);
}

/* The victim parks once its import is in the tree and it is still in the
 * call: a retry's query is the only place that can happen. */
void cairn_btree_test_yield(void);
void cairn_btree_test_yield(void)
{
	if (!is_victim || !armed || atomic_load(&arena.imports) == armed_at)
		return;
	armed = false;
	atomic_fetch_add(&pauses, 1);
	sem_post(&victim_event);
	sem_wait(&victim_go);
}

static enum cairn_fit victim_fit;
static uint64_t victim_align, victim_phase, victim_max;
static int victim_rc;
static uint64_t victim_addr;

static void *victim(void *arg)
{
	(void)arg;
	is_victim = true;
	REQUIRE(cairn_host_cpu_register() >= 0);
	victim_rc = cairn_arena_xalloc(&arena, REQ, victim_align, victim_phase, 0,
				       0, victim_max, victim_fit, 77, &victim_addr);
	cairn_host_cpu_unregister();
	atomic_store(&victim_done, true);
	sem_post(&victim_event);
	return NULL;
}

/* A victim and what it must come to: its result, its imports, the spans
 * the main thread took from it, its pauses, and where it lies in the span
 * of its last import. */
struct vcase {
	const char *name;
	enum cairn_fit fit;
	uint64_t align, phase, maxaddr;
	unsigned steals; /* the main thread takes a span at this many pauses */
	int rc;
	unsigned imports, stolen, pauses;
	uint64_t off;
};

static void steal(const struct vcase *k)
{
	victim_fit = k->fit;
	victim_align = k->align;
	victim_phase = k->phase;
	victim_max = k->maxaddr;
	victim_rc = -100;
	victim_addr = 0;
	atomic_store(&victim_done, false);
	atomic_store(&victim_imports, 0);
	atomic_store(&pauses, 0);
	unsigned imports0 = atomic_load(&imports), releases0 = atomic_load(&releases);
	uint64_t frames0 = env_free_frames();

	struct cairn_arena_source src = { src_import, src_release, NULL, NULL };
	struct cairn_arena_config cfg = { .quantum = Q, .source = &src,
					  .import_quantum = SPAN, .fanout = 4 };
	REQUIRE(cairn_arena_create(&arena, env_frames, 0, 0, &cfg) == 0);

	/* At each of the victim's first k->steals pauses, take a whole span:
	 * the one it just imported, the only free extent in the tree. */
	uint64_t stolen[SPANS];
	unsigned nstolen = 0;
	pthread_t vt;
	REQUIRE(pthread_create(&vt, NULL, victim, NULL) == 0);
	for (;;) {
		sem_wait(&victim_event);
		if (atomic_load(&victim_done))
			break;
		if (nstolen < k->steals) {
			REQUIRE(nstolen < SPANS);
			CHECK_EQ(cairn_arena_alloc(&arena, SPAN, 9, &stolen[nstolen]), 0);
			nstolen++;
		}
		sem_post(&victim_go);
	}
	pthread_join(vt, NULL);

	if (victim_rc != k->rc || atomic_load(&victim_imports) != k->imports)
		fprintf(stderr, "%s: victim %d after %u imports, %u spans taken "
			"from it\n", k->name, victim_rc,
			atomic_load(&victim_imports), nstolen);
	CHECK_EQ(victim_rc, k->rc);
	CHECK_EQ(atomic_load(&victim_imports), k->imports);
	CHECK_EQ(atomic_load(&pauses), k->pauses);
	CHECK_EQ(nstolen, k->stolen);
	uint64_t s, n, c;
	if (victim_rc == 0) {
		CHECK_EQ(victim_addr, X + (k->imports - 1) * SPAN + k->off);
		CHECK_EQ(cairn_arena_lookup(&arena, victim_addr + 8, &s, &n, &c), 0);
		CHECK(s == victim_addr && n == REQ && c == 77);
	}
	CHECK_EQ(cairn_arena_validate(&arena), 0);

	/* The rest of the victim's span is free and serves the requests for
	 * its pieces with no import; a whole span comes from the source. */
	uint64_t lo = 0, hi = 0, whole;
	uint64_t nlo = 0, nhi = 0;
	if (victim_rc == 0) {
		uint64_t span = victim_addr & ~(SPAN - 1);
		nlo = victim_addr - span;
		nhi = span + SPAN - victim_addr - REQ;
		if (nlo) {
			CHECK_EQ(cairn_arena_alloc(&arena, nlo, 5, &lo), 0);
			CHECK_EQ(lo, span);
		}
		if (nhi) {
			CHECK_EQ(cairn_arena_alloc(&arena, nhi, 5, &hi), 0);
			CHECK_EQ(hi, victim_addr + REQ);
		}
	}
	CHECK_EQ(atomic_load(&imports) - imports0, k->imports);
	CHECK_EQ(cairn_arena_alloc(&arena, SPAN, 6, &whole), 0);
	CHECK_EQ(whole, X + k->imports * SPAN);
	CHECK_EQ(cairn_arena_validate(&arena), 0);

	for (unsigned i = 0; i < nstolen; i++)
		CHECK_EQ(cairn_arena_free(&arena, stolen[i], SPAN), 0);
	CHECK_EQ(cairn_arena_free(&arena, whole, SPAN), 0);
	if (nlo)
		CHECK_EQ(cairn_arena_free(&arena, lo, nlo), 0);
	if (nhi)
		CHECK_EQ(cairn_arena_free(&arena, hi, nhi), 0);
	if (victim_rc == 0)
		CHECK_EQ(cairn_arena_free(&arena, victim_addr, REQ), 0);
	CHECK_EQ(cairn_arena_validate(&arena), 0);
	CHECK_EQ(atomic_load(&lent_mask), 0);
	CHECK_EQ(atomic_load(&releases) - releases0, atomic_load(&imports) - imports0);
	cairn_arena_destroy(&arena);
	CHECK_EQ(atomic_load(&bad), 0);
	CHECK_EQ(env_free_frames(), frames0);
}

int main(void)
{
	static const struct vcase cases[] = {
		/* served by the update that adds the span: no pause */
		{ "first", CAIRN_FIT_FIRST, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
		{ "best", CAIRN_FIT_BEST, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
		{ "high", CAIRN_FIT_HIGH, 0, 0, 0, 0, 0, 1, 0, 0, SPAN - REQ },
		/* phased: added free, each retry paused, the first STEALS
		 * spans taken whole meanwhile */
		{ "phased first", CAIRN_FIT_FIRST, ALIGN, PHASE, 0, STEALS, 0,
		  STEALS + 1, STEALS, STEALS + 1, PHASE },
		{ "phased best", CAIRN_FIT_BEST, ALIGN, PHASE, 0, STEALS, 0,
		  STEALS + 1, STEALS, STEALS + 1, PHASE },
		{ "phased high", CAIRN_FIT_HIGH, ALIGN, PHASE, 0, STEALS, 0,
		  STEALS + 1, STEALS, STEALS + 1, SPAN - ALIGN + PHASE },
		/* no span the source lends is in the window: it stops */
		{ "window", CAIRN_FIT_FIRST, 0, 0, WINDOW, STEALS, CAIRN_ENOMEM,
		  IMPORT_TRIES, IMPORT_TRIES, IMPORT_TRIES, 0 },
	};
	env_init(4, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	REQUIRE(sem_init(&victim_event, 0, 0) == 0);
	REQUIRE(sem_init(&victim_go, 0, 0) == 0);
	for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++)
		steal(&cases[i]);
	CHECK_EQ(cairn_host_reports(), 0);
	cairn_host_cpu_unregister();
	return check_done("arena_import_steal");
}
