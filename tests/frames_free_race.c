/* SPDX-License-Identifier: MIT */
/*
 * Frees that land while a block of several bitmap words is being freed, in
 * a fixed order.
 *
 * Such a free marks its head word first (the linearisation point) and then
 * clears the words one by one, so for a few stores the head word holds a
 * state of its own. No free may take a block out of that state: a second
 * free of the block, or a wrong-order free of its head or of a frame inside
 * it (a buggy caller's double free), single, bulk or by unreserve, must be
 * EORDER or EFREE, is_allocated must know no block there, and every frame
 * is freed and counted exactly once. The library is built with the frames
 * hook points (CAIRN_FRAMES_TEST_HOOK): CPU 0's free of the block is held
 * at the point where it has marked the block, while CPU 1 fires one such
 * free (or asks is_allocated), and then goes on. CPU 1's park slot is kept
 * full, so an order-0 free it wins adds to FREE as the general path does.
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../core/frames_layout.h"
#include "../core/hook.h"
#include "check.h"
#include "frames_total.h"

#ifndef CAIRN_FRAMES_TEST_HOOK
#error "built with the frames hook points"
#endif

#define MiB (1024ull * 1024)
#define FRAME CAIRN_FRAME_SIZE
#define BASE (4096 * MiB)
#define SIZE (16 * MiB)

/* CPU 1's call: which frame of the block (in frames), at which order (~0u:
 * the block's own), how. */
enum how { SINGLE, BULK, UNRESERVE, IS_ALLOCATED };
struct shot {
	unsigned off, order;
	enum how how;
};

/* Everything the head word in that state might be taken for: the head at
 * each small order, the frames next to it (a marker may make one a head),
 * the first frame of the next word, the block's own order (a second
 * free of it), and the order-0 entry points that check frames their own
 * way. */
static const struct shot shots[] = {
	{ 0, 0, SINGLE },  { 0, 0, BULK },	{ 0, 0, UNRESERVE }, { 0, 1, SINGLE },
	{ 0, 2, SINGLE },  { 0, 3, SINGLE },	{ 0, 4, SINGLE },    { 0, 5, SINGLE },
	{ 1, 0, SINGLE },  { 1, 0, BULK },	{ 1, 0, UNRESERVE }, { 2, 0, SINGLE },
	{ 2, 1, SINGLE },  { 3, 0, SINGLE },	{ 3, 0, BULK },	     { 3, 0, UNRESERVE },
	{ 4, 0, SINGLE },  { 4, 2, SINGLE },	{ 8, 3, SINGLE },    { 16, 4, SINGLE },
	{ 24, 3, SINGLE }, { 28, 2, SINGLE },	{ 30, 1, SINGLE },   { 31, 0, SINGLE },
	{ 31, 0, BULK },   { 32, 0, SINGLE },	{ 32, 5, SINGLE },   { 0, ~0u, SINGLE },
	{ 0, 0, IS_ALLOCATED }, { 0, 1, IS_ALLOCATED }, { 0, 5, IS_ALLOCATED },
	{ 1, 0, IS_ALLOCATED }, { 3, 0, IS_ALLOCATED }, { 0, ~0u, IS_ALLOCATED },
};
#define NSHOTS (sizeof(shots) / sizeof(shots[0]))

static struct cairn_frames *f;
static _Atomic unsigned go, ready, marked, fired; /* round numbers */
static _Atomic bool stop;
static cairn_phys_t blk;
static unsigned blk_order, shot_i, round_no;
static _Atomic uint64_t *blk_word;
static int shot_err;
static _Thread_local bool holder; /* the thread whose free the hook holds */

/* CPU 0's free of the block, marked and not yet cleared: let CPU 1 fire,
 * then go on. */
void cairn_frames_test_hook(enum cairn_frames_hook_point at, void *obj)
{
	if (at != CAIRN_FRAMES_HOOK_BLOCK_MARKED || !holder || obj != (void *)blk_word)
		return;
	atomic_store_explicit(&marked, round_no, memory_order_release);
	while (atomic_load_explicit(&fired, memory_order_acquire) != round_no)
		sched_yield();
}

static void *cpu1(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	for (unsigned round = 1;; round++) {
		while (atomic_load_explicit(&go, memory_order_acquire) != round)
			if (atomic_load_explicit(&stop, memory_order_acquire))
				goto out;
			else
				sched_yield();
		/* A fresh instance: fill this CPU's park slot (its first order-0
		 * free parks), so that an order-0 free it wins is counted. */
		REQUIRE(cairn_frames_alloc_at(f, BASE + SIZE - FRAME, 0) == 0);
		REQUIRE(cairn_frames_free(f, BASE + SIZE - FRAME, 0) == 0);
		atomic_store_explicit(&ready, round, memory_order_release);
		while (atomic_load_explicit(&marked, memory_order_acquire) != round)
			sched_yield();
		struct shot s = shots[shot_i];
		unsigned order = s.order == ~0u ? blk_order : s.order;
		cairn_phys_t at = blk + s.off * FRAME;
		switch (s.how) {
		case SINGLE:
			shot_err = cairn_frames_free(f, at, order);
			break;
		case BULK:
			shot_err = cairn_frames_free_bulk(f, &at, 1, NULL);
			break;
		case UNRESERVE:
			shot_err = cairn_frames_unreserve(f, at, FRAME);
			break;
		case IS_ALLOCATED: /* no block there: "accepted" if it says so */
			shot_err = cairn_frames_is_allocated(f, at, order) ? 0 : CAIRN_EFREE;
			break;
		}
		atomic_store_explicit(&fired, round, memory_order_release);
	}
out:
	cairn_host_cpu_unregister();
	return NULL;
}

static const char *how_name(enum how h)
{
	return h == SINGLE ? "free" : h == BULK ? "free_bulk" : h == UNRESERVE ? "unreserve"
										 : "is_allocated";
}

int main(void)
{
	REQUIRE(cairn_host_init(2, BASE, SIZE) == 0);
	const struct cairn_mem_range map[] = { { BASE, SIZE } };
	struct cairn_frames_config cfg = { .ncpus = 2 };
	cfg.meta_size = cairn_frames_meta_size(map, 1, 2);
	cfg.meta = malloc(cfg.meta_size);
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	holder = true;
	cairn_host_reports_quiet(1);

	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cpu1, NULL) == 0);
	unsigned accepted = 0, rounds = 0;
	uint64_t seed = 1;
	for (unsigned k = 6; k <= 8; k++) {
		for (unsigned i = 0; i < NSHOTS; i++) {
			/* each round on a fresh instance (CPU 1 parks a frame) */
			REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
			struct region *reg = region_find(f, BASE >> CAIRN_FRAME_SHIFT);
			REQUIRE(reg);
			uint64_t total = frames_free_total(f);
			round_no = ++rounds;
			atomic_store_explicit(&go, rounds, memory_order_release);
			while (atomic_load_explicit(&ready, memory_order_acquire) != rounds)
				sched_yield();
			/* a block somewhere in the first 14 MiB, away from CPU 1's frame */
			blk_order = k;
			blk = BASE + splitmix64(&seed) % (14 * MiB / (FRAME << k)) * (FRAME << k);
			blk_word = frame_word(reg, blk >> CAIRN_FRAME_SHIFT);
			shot_i = i;
			REQUIRE(cairn_frames_alloc_at(f, blk, k) == 0);
			CHECK_EQ(cairn_frames_free(f, blk, k), 0);
			CHECK_EQ(atomic_load(&fired), rounds);
			struct shot s = shots[i];
			if (shot_err == 0) {
				accepted++;
				fprintf(stderr, "%s of frame %u at order %u accepted while an "
						"order-%u block was being freed\n",
					how_name(s.how), s.off, s.order == ~0u ? k : s.order, k);
			}
			CHECK(shot_err == CAIRN_EORDER || shot_err == CAIRN_EFREE);
			CHECK_EQ(cairn_frames_validate(f), 0);
			CHECK_EQ(frames_free_total(f), total);
		}
	}
	atomic_store_explicit(&stop, true, memory_order_release);
	pthread_join(t, NULL);
	cairn_host_reports_quiet(0);
	CHECK_EQ(accepted, 0);
	printf("free race: %u rounds, every call fired inside a block's free, %u accepted\n",
	       rounds, accepted);
	return check_done("frames_free_race");
}
