/* SPDX-License-Identifier: MIT */
/*
 * The host port's cairn_port_map/unmap against port.h's contract, the
 * test kernel's: a map over any page already mapped (by an earlier map,
 * or the identity map) is CAIRN_EEXIST and maps nothing, the earlier
 * mapping untouched; an unmap of a page not mapped is CAIRN_ERANGE and
 * unmaps nothing. Then threads racing to map the same pages: each page
 * mapped by exactly one of them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

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

int main(void)
{
	REQUIRE(cairn_host_init(RACE_THREADS + 1, 0, MEM) == 0);
	win = cairn_host_va_window(WIN, WIN);
	REQUIRE(win != 0);
	test_contract();
	test_race();
	return check_done("port_map");
}
