/* SPDX-License-Identifier: MIT */
/*
 * The host port's cairn_port_map/unmap against port.h's contract, the
 * test kernel's: a map over any page already mapped (by an earlier map,
 * or the identity map) is CAIRN_EEXIST and maps nothing, the earlier
 * mapping untouched; an unmap of a page not mapped is CAIRN_ERANGE and
 * unmaps nothing. Then threads racing to map the same pages: each page
 * mapped by exactly one of them; and threads racing to unmap one range:
 * exactly one of them unmaps it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cairn/error.h>
#include <cairn/host.h>
#include <cairn/port.h>

#include "check.h"

#define PG 4096ull
#define MEM (16ull << 20)
#define WIN (4ull << 20)

static uint64_t win;

/* The word at the start of frame `phys`, through the identity map. */
static uint64_t *frame_word(cairn_phys_t phys)
{
	return cairn_port_phys_to_virt(phys);
}

static void test_contract(void)
{
	const cairn_phys_t a = 1 * PG, b = 2 * PG, c = 3 * PG;
	*frame_word(a) = 0xa;
	*frame_word(b) = 0xb;
	*frame_word(c) = 0xc;

	CHECK_EQ(cairn_port_map(win, a, PG), 0);
	CHECK_EQ(*(uint64_t *)win, 0xa);

	/* the same page again, with other frames: refused, a's stays */
	CHECK_EQ(cairn_port_map(win, b, PG), CAIRN_EEXIST);
	CHECK_EQ(*(uint64_t *)win, 0xa);

	/* a range whose second page is mapped: nothing of it mapped (its
	 * first page can be mapped afterwards) */
	CHECK_EQ(cairn_port_map(win - PG + WIN / 2, b, PG), 0);
	CHECK_EQ(cairn_port_map(win - 2 * PG + WIN / 2, c, 2 * PG), CAIRN_EEXIST);
	CHECK_EQ(*(uint64_t *)(win - PG + WIN / 2), 0xb);
	CHECK_EQ(cairn_port_map(win - 2 * PG + WIN / 2, c, PG), 0);
	CHECK_EQ(*(uint64_t *)(win - 2 * PG + WIN / 2), 0xc);

	/* over the identity map */
	uintptr_t ident = (uintptr_t)cairn_port_phys_to_virt(4 * PG);
	CHECK_EQ(cairn_port_map(ident, c, PG), CAIRN_EEXIST);
	CHECK_EQ(*frame_word(4 * PG), 0);

	/* unmap of pages the port did not map (the identity map, a range
	 * running out of the window, or out of every window): ERANGE, as the
	 * kernel's, and nothing unmapped */
	CHECK_EQ(cairn_port_unmap(ident, PG), CAIRN_ERANGE);
	CHECK_EQ(*frame_word(4 * PG), 0);
	CHECK_EQ(cairn_port_map(win + WIN - PG, c, PG), 0);
	CHECK_EQ(cairn_port_unmap(win + WIN - PG, 2 * PG), CAIRN_ERANGE);
	CHECK_EQ(*(uint64_t *)(win + WIN - PG), 0xc);
	CHECK_EQ(cairn_port_unmap(win + WIN - PG, PG), 0);
	CHECK_EQ(cairn_port_unmap(win + WIN, PG), CAIRN_ERANGE);

	/* unmap: of pages not all mapped, refused and nothing unmapped */
	CHECK_EQ(cairn_port_unmap(win, 2 * PG), CAIRN_ERANGE);
	CHECK_EQ(*(uint64_t *)win, 0xa);
	CHECK_EQ(cairn_port_unmap(win, PG), 0);
	CHECK_EQ(cairn_port_unmap(win, PG), CAIRN_ERANGE);
	/* unmapped: the page can be mapped again */
	CHECK_EQ(cairn_port_map(win, b, PG), 0);
	CHECK_EQ(*(uint64_t *)win, 0xb);
	CHECK_EQ(cairn_port_unmap(win, PG), 0);
	CHECK_EQ(cairn_port_unmap(win - 2 * PG + WIN / 2, 2 * PG), 0);
	/* and the frames were never written through the window */
	CHECK_EQ(*frame_word(a), 0xa);
	CHECK_EQ(*frame_word(b), 0xb);
	CHECK_EQ(*frame_word(c), 0xc);
}

/* ---- threads racing for the same pages ----
 *
 * Each round every thread maps the same RACE_PAGES pages, in pairs at
 * once or one page at a time, each with its own frames; a successful map
 * is counted per page. Then the main thread checks every page mapped
 * exactly once, to the frame of the thread that counted it, and unmaps
 * them for the next round. */
#define RACE_THREADS 4
#define RACE_PAGES 16
#define RACE_ROUNDS 200

static pthread_barrier_t race_start, race_done;
static _Atomic unsigned race_owner[RACE_PAGES]; /* thread + 1, or 0 */
static _Atomic unsigned race_bad;

static cairn_phys_t race_frame(unsigned t, unsigned page)
{
	return (64 + t * RACE_PAGES + page) * PG;
}

static void *race_thread(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	for (unsigned r = 0; r < RACE_ROUNDS; r++) {
		pthread_barrier_wait(&race_start);
		for (unsigned i = 0; i < RACE_PAGES; i += 2) {
			unsigned pair = (i + me * 2) % RACE_PAGES;
			/* the pair at once, or its pages one by one */
			size_t n = (r + me) % 2 ? 2 : 1;
			for (unsigned p = pair; p < pair + 2; p += (unsigned)n) {
				int err = cairn_port_map(win + p * PG, race_frame(me, p), n * PG);
				if (err && err != CAIRN_EEXIST)
					atomic_fetch_add(&race_bad, 1);
				for (unsigned k = 0; !err && k < n; k++) {
					unsigned was = 0;
					if (!atomic_compare_exchange_strong(&race_owner[p + k], &was,
									    me + 1))
						atomic_fetch_add(&race_bad, 1);
				}
			}
		}
		pthread_barrier_wait(&race_done);
		pthread_barrier_wait(&race_done); /* main checked and unmapped */
	}
	return NULL;
}

static void test_race(void)
{
	for (unsigned t = 0; t < RACE_THREADS; t++)
		for (unsigned p = 0; p < RACE_PAGES; p++)
			*frame_word(race_frame(t, p)) = (uint64_t)t << 32 | p;
	pthread_barrier_init(&race_start, NULL, RACE_THREADS + 1);
	pthread_barrier_init(&race_done, NULL, RACE_THREADS + 1);
	pthread_t th[RACE_THREADS];
	for (unsigned t = 0; t < RACE_THREADS; t++)
		REQUIRE(pthread_create(&th[t], NULL, race_thread, (void *)(uintptr_t)t) == 0);
	for (unsigned r = 0; r < RACE_ROUNDS; r++) {
		pthread_barrier_wait(&race_start);
		pthread_barrier_wait(&race_done);
		for (unsigned p = 0; p < RACE_PAGES; p++) {
			unsigned o = atomic_exchange(&race_owner[p], 0);
			if (!o) {
				atomic_fetch_add(&race_bad, 1);
				continue;
			}
			if (*(uint64_t *)(win + p * PG) != ((uint64_t)(o - 1) << 32 | p))
				atomic_fetch_add(&race_bad, 1);
			if (cairn_port_unmap(win + p * PG, PG))
				atomic_fetch_add(&race_bad, 1);
		}
		pthread_barrier_wait(&race_done);
	}
	for (unsigned t = 0; t < RACE_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&race_start);
	pthread_barrier_destroy(&race_done);
	CHECK_EQ(atomic_load(&race_bad), 0);
}

/* ---- threads racing to unmap one range ----
 *
 * Each round the main thread maps UNMAP_PAGES pages (across a bitmap
 * word, at an odd page) and lets every thread go at once from a spin;
 * each unmaps the whole range. Exactly one may say 0, the others
 * CAIRN_ERANGE: a second unmap that succeeds would have the range's
 * frames freed twice, and one that lands after the range is mapped again
 * tears the new mapping down. The range must then map again. */
#define UNMAP_THREADS 3
#define UNMAP_PAGES 40
#define UNMAP_FIRST 61
#define UNMAP_ROUNDS 2000 /* at least, and for UNMAP_NS at least */
#define UNMAP_NS 2000000000ull
#define UNMAP_STOP (~0u)

static _Atomic unsigned unmap_go;   /* the round under way, from 1 */
static _Atomic unsigned unmap_done; /* unmaps finished, this round */
static _Atomic unsigned unmap_won;  /* unmaps that said 0, this round */
static _Atomic unsigned unmap_bad;  /* unmaps that said neither 0 nor ERANGE */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *unmap_thread(void *arg)
{
	(void)arg;
	uintptr_t va = win + UNMAP_FIRST * PG;
	for (unsigned r = 1;; r++) {
		/* a spin, not a barrier, so that the threads start the round
		 * running rather than waking one by one; it yields now and
		 * then, so that on a machine with fewer cores than threads
		 * the main thread still gets to start the round */
		unsigned go;
		for (unsigned n = 1;
		     (go = atomic_load_explicit(&unmap_go, memory_order_acquire)) != r &&
		     go != UNMAP_STOP; n++)
			if (n % 1024)
				cairn_port_pause();
			else
				sched_yield();
		if (go == UNMAP_STOP)
			break;
		int err = cairn_port_unmap(va, UNMAP_PAGES * PG);
		if (!err)
			atomic_fetch_add(&unmap_won, 1);
		else if (err != CAIRN_ERANGE)
			atomic_fetch_add(&unmap_bad, 1);
		atomic_fetch_add_explicit(&unmap_done, 1, memory_order_release);
	}
	return NULL;
}

static void test_unmap_race(void)
{
	uintptr_t va = win + UNMAP_FIRST * PG;
	const cairn_phys_t frames = 256 * PG;
	unsigned rounds_bad = 0;
	*frame_word(frames) = 0x5eed;
	pthread_t th[UNMAP_THREADS];
	for (unsigned t = 0; t < UNMAP_THREADS; t++)
		REQUIRE(pthread_create(&th[t], NULL, unmap_thread, NULL) == 0);
	uint64_t end = now_ns() + UNMAP_NS;
	unsigned r = 1;
	for (; r <= UNMAP_ROUNDS || now_ns() < end; r++) {
		/* every page free again: the last round's winner cleared them
		 * all, and no loser kept one */
		CHECK_EQ(cairn_port_map(va, frames, UNMAP_PAGES * PG), 0);
		CHECK_EQ(*(uint64_t *)va, 0x5eed);
		atomic_store(&unmap_won, 0);
		atomic_store(&unmap_done, 0);
		atomic_store_explicit(&unmap_go, r, memory_order_release);
		while (atomic_load_explicit(&unmap_done, memory_order_acquire) != UNMAP_THREADS)
			sched_yield();
		if (atomic_load(&unmap_won) != 1)
			rounds_bad++;
	}
	atomic_store_explicit(&unmap_go, UNMAP_STOP, memory_order_release);
	for (unsigned t = 0; t < UNMAP_THREADS; t++)
		pthread_join(th[t], NULL);
	if (rounds_bad)
		fprintf(stderr, "port_map: %u of %u unmap rounds without exactly one winner\n",
			rounds_bad, r - 1);
	CHECK_EQ(rounds_bad, 0);
	CHECK_EQ(atomic_load(&unmap_bad), 0);
	/* the last winner left the range free */
	CHECK_EQ(cairn_port_unmap(va, PG), CAIRN_ERANGE);
}

int main(void)
{
	REQUIRE(cairn_host_init(RACE_THREADS + 1, 0, MEM) == 0);
	win = cairn_host_va_window(WIN, WIN);
	REQUIRE(win != 0);
	test_contract();
	test_race();
	test_unmap_race();
	return check_done("port_map");
}
