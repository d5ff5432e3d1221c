/* SPDX-License-Identifier: MIT */
/*
 * A failing alloc's give-back against a span imported again at the same
 * address, made to happen in a fixed order.
 *
 * An alloc that imports and still fails gives back the spans it imported.
 * Between its import and its give-back, the span can be used and freed by
 * another CPU (the free releases it to the source) and imported again, at
 * the same address, by a third CPU's alloc, which then retries its query.
 * If the give-back found that span by its address alone, it would release
 * the third CPU's fresh span before that CPU's retry could use it; an
 * alloc that loses each of its imports that way fails with ENOMEM while
 * the source never refused it anything and holds the span free.
 *
 * The arena (fanout 4) has a static span of three allocated quanta and a
 * source of one span X. Four thieves, one at a time, each xalloc below X
 * (a window no import reaches): each imports X, fails its retry, and
 * parks in its second import (X is taken: that import fails); meanwhile
 * the main thread allocates X whole and frees it, so that X goes back to
 * the source. Then the victim, a plain alloc of 256 bytes, imports X;
 * its retry must split the full leaf, which takes the general writer, and
 * the test's yield hook (the library is built with CAIRN_BTREE_TEST_YIELD)
 * parks it at its first yield point after the import added X, before it
 * has locked anything. A thief is let go then: it gives back what it
 * imported. Then the victim goes on. Repeated for every import the
 * victim makes.
 *
 * Expected: the victim gets X (one import), every thief fails with
 * ENOMEM and releases nothing that is not its own, the source sees
 * matching imports and releases, and the arena validates.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "env.h"

#define Q 16ull
#define X 0x40000000ull      /* the source's one span ... */
#define SPAN 0x1000ull       /* ... of the import quantum */
#define LOW 0x10000ull       /* a static span, all allocated */
#define WINDOW 0x10000000ull /* the thieves' maxaddr: below X */
#define THIEVES 4            /* the imports an alloc makes at most */

static struct cairn_arena arena;

enum role { MAIN, THIEF, VICTIM };
static _Thread_local enum role role;
static _Thread_local unsigned thief_no;

/* The source: X, handed out while it is not taken. */
static atomic_bool taken;
static atomic_uint imports, refused, releases, bad;

static sem_t parked, go[THIEVES];	  /* a thief in its second import */
static sem_t victim_event, victim_go; /* the victim parked, or done */
static atomic_bool victim_done;
static atomic_uint victim_pauses, victim_refused;

/* The victim's pause: armed by an import it got, it fires at the first
 * yield point once the arena counts that import (the span is in the
 * tree), which is in the retry's query, before any lock. */
static _Thread_local bool armed;
static _Thread_local uint64_t armed_at;

static int src_import(void *ctx, uint64_t size, uint64_t align, uint64_t *addr)
{
	(void)ctx;
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
	if (role != VICTIM || !armed ||
	    atomic_load(&arena.imports) == armed_at)
		return;
	armed = false;
	atomic_fetch_add(&victim_pauses, 1);
	sem_post(&victim_event);
	sem_wait(&victim_go);
}

static int thief_rc[THIEVES];

static void *thief(void *arg)
{
	role = THIEF;
	thief_no = (unsigned)(uintptr_t)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t x = 0;
	thief_rc[thief_no] = cairn_arena_xalloc(&arena, 16, 0, 0, 0, 0, WINDOW,
						CAIRN_FIT_FIRST, 100 + thief_no,
						&x);
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
	victim_rc = cairn_arena_alloc(&arena, 256, 77, &victim_addr);
	cairn_host_cpu_unregister();
	atomic_store(&victim_done, true);
	sem_post(&victim_event);
	return NULL;
}

int main(void)
{
	env_init(8, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t frames0 = env_free_frames();
	REQUIRE(sem_init(&parked, 0, 0) == 0);
	REQUIRE(sem_init(&victim_event, 0, 0) == 0);
	REQUIRE(sem_init(&victim_go, 0, 0) == 0);
	for (unsigned i = 0; i < THIEVES; i++)
		REQUIRE(sem_init(&go[i], 0, 0) == 0);

	struct cairn_arena_source src = { src_import, src_release, NULL };
	struct cairn_arena_config cfg = { .quantum = Q, .source = &src,
					  .import_quantum = SPAN, .fanout = 4 };
	REQUIRE(cairn_arena_create(&arena, env_frames, LOW, 3 * Q, &cfg) == 0);
	for (unsigned i = 0; i < 3; i++) /* a leaf of 3; 4 with X in it */
		REQUIRE(cairn_arena_reserve(&arena, LOW + i * Q, Q, 1) == 0);

	/* Each thief holds X in its list of imports, X back in the source. */
	pthread_t th[THIEVES], vt;
	uint64_t x, s, n, c;
	for (unsigned i = 0; i < THIEVES; i++) {
		REQUIRE(pthread_create(&th[i], NULL, thief,
				       (void *)(uintptr_t)i) == 0);
		sem_wait(&parked);
		CHECK_EQ(cairn_arena_lookup(&arena, X, &s, &n, &c), CAIRN_EFREE);
		CHECK_EQ(cairn_arena_alloc(&arena, SPAN, 9, &x), 0);
		CHECK_EQ(x, X);
		CHECK_EQ(cairn_arena_free(&arena, x, SPAN), 0);
		CHECK(!atomic_load(&taken));
		CHECK_EQ(cairn_arena_lookup(&arena, X, &s, &n, &c), CAIRN_ERANGE);
	}
	CHECK_EQ(atomic_load(&imports), THIEVES);
	CHECK_EQ(atomic_load(&releases), THIEVES);

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
		CHECK_EQ(thief_rc[let_go], CAIRN_ENOMEM);
		let_go++;
		sem_post(&victim_go);
	}
	pthread_join(vt, NULL);
	for (; let_go < THIEVES; let_go++) {
		sem_post(&go[let_go]);
		pthread_join(th[let_go], NULL);
		CHECK_EQ(thief_rc[let_go], CAIRN_ENOMEM);
	}

	/* The window was opened (else the test proves nothing), and the
	 * victim's one import served it. */
	CHECK(atomic_load(&victim_pauses) >= 1);
	CHECK_EQ(atomic_load(&victim_refused), 0);
	if (victim_rc)
		fprintf(stderr, "victim: %d after %u imports of X, each released "
			"by a thief's give-back; X %s in the source\n",
			victim_rc, atomic_load(&victim_pauses),
			atomic_load(&taken) ? "taken" : "free");
	CHECK_EQ(victim_rc, 0);
	CHECK_EQ(atomic_load(&victim_pauses), 1);
	CHECK_EQ(victim_addr, X);
	CHECK(atomic_load(&taken));
	CHECK_EQ(atomic_load(&imports), THIEVES + 1);
	CHECK_EQ(atomic_load(&releases), THIEVES);
	CHECK_EQ(atomic_load(&bad), 0);
	CHECK_EQ(cairn_arena_validate(&arena), 0);
	if (victim_rc == 0) {
		CHECK_EQ(cairn_arena_lookup(&arena, X + 8, &s, &n, &c), 0);
		CHECK(s == X && n == 256 && c == 77);
		CHECK_EQ(cairn_arena_free(&arena, X, 256), 0);
	}
	CHECK(!atomic_load(&taken));
	CHECK_EQ(atomic_load(&releases), atomic_load(&imports));
	CHECK_EQ(cairn_arena_validate(&arena), 0);
	for (unsigned i = 0; i < 3; i++)
		CHECK_EQ(cairn_arena_free(&arena, LOW + i * Q, Q), 0);
	cairn_arena_destroy(&arena);
	CHECK_EQ(atomic_load(&bad), 0);
	CHECK_EQ(env_free_frames(), frames0);
	CHECK_EQ(cairn_host_reports(), 0);
	cairn_host_cpu_unregister();
	return check_done("arena_import_race");
}
