/* SPDX-License-Identifier: MIT */
/*
 * Releases of imported spans against a span imported again at the same
 * address, made to happen in a fixed order.
 *
 * Two calls release an imported span found by its start: an alloc that
 * imports and still fails gives back the spans it imported, and a free
 * that leaves a span one free extent releases it, each in an update after
 * the one that made the span free. In between, the span can be used and
 * freed by another CPU (that free releases it to the source) and imported
 * again, at the same address, by a third CPU's alloc, which then retries
 * its query. A release that took the span at that address for its own
 * would give back the third CPU's fresh span before that CPU's retry
 * could use it; an alloc that loses each of its imports that way fails
 * with ENOMEM while the source never refused it anything and holds the
 * span free.
 *
 * The arena (fanout 4) has a static span of three allocated quanta and a
 * source of one span X. Four thieves, one at a time, each park with X
 * free in the arena and a release of X ahead of them:
 *   give-back: an xalloc below X (a window no import reaches) imports X,
 *     fails its retry, and parks in its second import (X is taken: that
 *     import fails); its give-back of X follows;
 *   free: an alloc of X whole (the first imports it, the others find it
 *     free) and its free, parked by the test's yield hook at the first
 *     yield point after the free (in the update of its release of X).
 * Then the main thread allocates X whole and frees it, so that X goes back
 * to the source. Then the victim, an xalloc of 256 bytes at phase 16 of
 * 256 (inside X, not at an end: the update that adds X cannot serve it, so
 * the victim retries), imports X;
 * its retry must split the full leaf, which takes the general writer, and
 * the yield hook (the library is built with CAIRN_BTREE_TEST_YIELD) parks
 * it at its first yield point after the import added X, before it has
 * locked anything. A thief is let go then: its release of X runs. Then
 * the victim goes on. Repeated for every import the victim makes.
 *
 * Expected: the victim gets X (one import), every thief returns what it
 * would alone and releases nothing more, the source sees matching imports
 * and releases, and the arena validates.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "env.h"
#include "../../btree/node.h"

#define Q 16ull
#define X 0x40000000ull      /* the source's one span ... */
#define SPAN 0x1000ull       /* ... of the import quantum */
#define LOW 0x10000ull       /* a static span, all allocated */
#define WINDOW 0x10000000ull /* the thieves' maxaddr: below X */
#define THIEVES 4            /* the imports an alloc makes at most */
#define PHASE Q              /* the victim's, modulo 256 */

static struct cairn_arena arena;

enum role { MAIN, THIEF, VICTIM };
static _Thread_local enum role role;
static _Thread_local unsigned thief_no;
static enum kind { GIVE_BACK, FREE } kind;

/* The source: X, handed out while it is not taken. */
static atomic_bool taken;
static atomic_uint imports, refused, releases, bad;

static sem_t parked, go[THIEVES];	  /* a thief in its second import */
static sem_t victim_event, victim_go; /* the victim parked, or done */
static atomic_bool victim_done;
static atomic_uint victim_pauses, victim_refused;

/* The victim's pause: armed by an import it got, it fires at the first
 * yield point once the arena counts that import (the span is in the
 * tree), which is in the retry's query, before any lock. A freeing
 * thief's: armed before its free, it fires at the first yield point once
 * X is free in the tree, which is in the update of the release that
 * follows, before any lock. */
static _Thread_local bool armed, armed_free, in_hook;
static _Thread_local uint64_t armed_at;

/* Has the free committed? Asked only while the root, the tree's one leaf,
 * is unlocked: this thread may hold it at a yield point (every other one
 * is parked), and a lookup would wait for it for ever. */
static bool x_free_now(void)
{
	struct bt_node *r = bt_root(&arena.tree);
	if (atomic_load(&r->level) != 0 || olc_busy(atomic_load(&r->version)))
		return false;
	uint64_t s, n, c;
	in_hook = true; /* the lookup's own yield points */
	int rc = cairn_arena_lookup(&arena, X, &s, &n, &c);
	in_hook = false;
	return rc == CAIRN_EFREE;
}

static int src_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	(void)ctx;
	if (size < SPAN && !(size & (size - 1)))
		return CAIRN_ENOMEM; /* the arena asks for less after a refusal: none */
	if (size != SPAN || (X & (align - 1))) {
		atomic_fetch_add(&bad, 1);
		return CAIRN_ENOMEM;
	}
	bool was = false;
	if (!atomic_compare_exchange_strong(&taken, &was, true)) {
		atomic_fetch_add(&refused, 1);
		if (role == VICTIM)
			atomic_fetch_add(&victim_refused, 1);
		if (role == THIEF) { /* refused now; returns when let go */
			sem_post(&parked);
			sem_wait(&go[thief_no]);
		}
		return CAIRN_ENOMEM;
	}
	atomic_fetch_add(&imports, 1);
	if (role == VICTIM) {
		armed = true;
		armed_at = atomic_load(&arena.imports);
	}
	*addr = X;
	return 0;
}

static void src_release(void *ctx, uint64_t addr, uint64_t size)
{
	(void)ctx;
	bool was = true;
	if (addr != X || size != SPAN ||
	    !atomic_compare_exchange_strong(&taken, &was, false)) {
		atomic_fetch_add(&bad, 1);
		return;
	}
	atomic_fetch_add(&releases, 1);
}

void cairn_btree_test_yield(void);
void cairn_btree_test_yield(void)
{
	if (in_hook)
		return;
	if (role == THIEF && armed_free) {
		if (!x_free_now())
			return;
		armed_free = false;
		sem_post(&parked);
		sem_wait(&go[thief_no]);
		return;
	}
	if (role != VICTIM || !armed ||
	    atomic_load(&arena.imports) == armed_at)
		return;
	armed = false;
	atomic_fetch_add(&victim_pauses, 1);
	sem_post(&victim_event);
	sem_wait(&victim_go);
}

static int thief_rc[THIEVES];
static atomic_bool thief_lost; /* a freeing thief that could not park */

static void *thief(void *arg)
{
	role = THIEF;
	thief_no = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t x = 0;
	if (kind == GIVE_BACK) {
		thief_rc[thief_no] = cairn_arena_xalloc(&arena, 16, 0, 0, 0, 0,
							WINDOW, CAIRN_FIT_FIRST,
							100 + thief_no, &x);
	} else {
		int rc = cairn_arena_alloc(&arena, SPAN, 100 + thief_no, &x);
		bool paused = false;
		if (rc == 0 && x == X) {
			armed_free = true;
			rc = cairn_arena_free(&arena, x, SPAN);
			paused = !armed_free;
			armed_free = false;
		}
		thief_rc[thief_no] = rc;
		if (!paused) { /* the test cannot go on */
			atomic_store(&thief_lost, true);
			sem_post(&parked);
		}
	}
	cairn_host_cpu_unregister();
	return NULL;
}

static int victim_rc;
static uint64_t victim_addr;

static void *victim(void *arg)
{
	(void)arg;
	role = VICTIM;
	REQUIRE(cairn_host_cpu_register() >= 0);
	victim_rc = cairn_arena_xalloc(&arena, 256, 256, PHASE, 0, 0, 0, CAIRN_FIT_FIRST, 77,
				       &victim_addr);
	cairn_host_cpu_unregister();
	atomic_store(&victim_done, true);
	sem_post(&victim_event);
	return NULL;
}

static void race(enum kind k)
{
	kind = k;
	atomic_store(&victim_done, false);
	atomic_store(&victim_pauses, 0);
	atomic_store(&victim_refused, 0);
	victim_rc = -100;
	victim_addr = 0;
	uint64_t frames0 = env_free_frames();
	unsigned imports0 = atomic_load(&imports);
	unsigned releases0 = atomic_load(&releases);

	struct cairn_arena_source src = { src_import, src_release, NULL, NULL };
	struct cairn_arena_config cfg = { .quantum = Q, .source = &src,
					  .import_quantum = SPAN, .fanout = 4 };
	REQUIRE(cairn_arena_create(&arena, env_frames, LOW, 3 * Q, &cfg) == 0);
	for (unsigned i = 0; i < 3; i++) /* a leaf of 3; 4 with X in it */
		REQUIRE(cairn_arena_reserve(&arena, LOW + i * Q, Q, 1) == 0);

	/* Each thief parked with a release of X ahead of it, X back in the
	 * source. */
	pthread_t th[THIEVES], vt;
	uint64_t x, s, n, c;
	for (unsigned i = 0; i < THIEVES; i++) {
		REQUIRE(pthread_create(&th[i], NULL, thief,
				       (void *)(uintptr_t)i) == 0);
		sem_wait(&parked);
		REQUIRE(!atomic_load(&thief_lost));
		CHECK_EQ(cairn_arena_lookup(&arena, X, &s, &n, &c), CAIRN_EFREE);
		if (k == FREE && i + 1 < THIEVES)
			continue; /* the next thief allocates X from the arena */
		CHECK_EQ(cairn_arena_alloc(&arena, SPAN, 9, &x), 0);
		CHECK_EQ(x, X);
		CHECK_EQ(cairn_arena_free(&arena, x, SPAN), 0);
		CHECK(!atomic_load(&taken));
		CHECK_EQ(cairn_arena_lookup(&arena, X, &s, &n, &c), CAIRN_ERANGE);
	}
	unsigned lent = k == FREE ? 1 : THIEVES; /* imports of X so far */
	CHECK_EQ(atomic_load(&imports) - imports0, lent);
	CHECK_EQ(atomic_load(&releases) - releases0, lent);
	int thief_want = k == FREE ? 0 : CAIRN_ENOMEM;

	/* The victim; a thief gives back while it is parked after each
	 * import. */
	REQUIRE(pthread_create(&vt, NULL, victim, NULL) == 0);
	unsigned let_go = 0;
	for (;;) {
		sem_wait(&victim_event);
		if (atomic_load(&victim_done))
			break;
		REQUIRE(let_go < THIEVES);
		CHECK_EQ(cairn_arena_lookup(&arena, X, &s, &n, &c), CAIRN_EFREE);
		sem_post(&go[let_go]);
		pthread_join(th[let_go], NULL);
		CHECK_EQ(thief_rc[let_go], thief_want);
		let_go++;
		sem_post(&victim_go);
	}
	pthread_join(vt, NULL);
	for (; let_go < THIEVES; let_go++) {
		sem_post(&go[let_go]);
		pthread_join(th[let_go], NULL);
		CHECK_EQ(thief_rc[let_go], thief_want);
	}

	/* The window was opened (else the test proves nothing), and the
	 * victim's one import served it. */
	CHECK(atomic_load(&victim_pauses) >= 1);
	CHECK_EQ(atomic_load(&victim_refused), 0);
	if (victim_rc || atomic_load(&victim_pauses) != 1)
		fprintf(stderr, "%s: victim %d after %u imports of X (the "
			"thieves' releases took them); X %s in the source\n",
			k == FREE ? "free" : "give-back", victim_rc,
			atomic_load(&victim_pauses),
			atomic_load(&taken) ? "taken" : "free");
	CHECK_EQ(victim_rc, 0);
	CHECK_EQ(atomic_load(&victim_pauses), 1);
	CHECK_EQ(victim_addr, X + PHASE);
	CHECK(atomic_load(&taken));
	CHECK_EQ(atomic_load(&imports) - imports0, lent + 1);
	CHECK_EQ(atomic_load(&releases) - releases0, lent);
	CHECK_EQ(atomic_load(&bad), 0);
	CHECK_EQ(cairn_arena_validate(&arena), 0);
	if (victim_rc == 0) {
		CHECK_EQ(cairn_arena_lookup(&arena, X + PHASE + 8, &s, &n, &c), 0);
		CHECK(s == X + PHASE && n == 256 && c == 77);
		CHECK_EQ(cairn_arena_free(&arena, X + PHASE, 256), 0);
	}
	CHECK(!atomic_load(&taken));
	CHECK_EQ(atomic_load(&releases), atomic_load(&imports));
	CHECK_EQ(cairn_arena_validate(&arena), 0);
	for (unsigned i = 0; i < 3; i++)
		CHECK_EQ(cairn_arena_free(&arena, LOW + i * Q, Q), 0);
	cairn_arena_destroy(&arena);
	CHECK_EQ(atomic_load(&bad), 0);
	CHECK_EQ(env_free_frames(), frames0);
}

int main(void)
{
	env_init(8, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	REQUIRE(sem_init(&parked, 0, 0) == 0);
	REQUIRE(sem_init(&victim_event, 0, 0) == 0);
	REQUIRE(sem_init(&victim_go, 0, 0) == 0);
	for (unsigned i = 0; i < THIEVES; i++)
		REQUIRE(sem_init(&go[i], 0, 0) == 0);
	race(GIVE_BACK);
	race(FREE);
	CHECK_EQ(cairn_host_reports(), 0);
	cairn_host_cpu_unregister();
	return check_done("arena_import_race");
}
