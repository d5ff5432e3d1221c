/* SPDX-License-Identifier: MIT */
/*
 * Frees that land while a block of several bitmap words or chunk entries
 * is being freed or taken, in a fixed order.
 *
 * Freeing such a block marks its head word first (the linearisation
 * point) and then clears the words one by one; taking one sets its words
 * (or chunk entries) one CAS at a time. For a few stores the block is in
 * a state of its own. No free may take a block out of that state: a second
 * free of the block, or a wrong-order free of its head or of a frame inside
 * it (a buggy caller's double free, of this block or of an earlier one at
 * the same place), single, bulk or by unreserve, must be EORDER or EFREE,
 * is_allocated must know no block there, and every frame is freed and
 * counted exactly once: the block being taken ends up whole and allocated,
 * the block being freed free. The library is built with the frames hook
 * points (CAIRN_FRAMES_TEST_HOOK): CPU 0's free or alloc_at of the block is
 * held at the point where it has marked the block (or taken half of it)
 * while CPU 1 fires one such call, and then goes on. CPU 1's park slot is
 * kept full, so an order-0 free it wins adds to FREE as the general path
 * does.
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

/* CPU 1's call: which frame of the block (in frames), at which order (OWN:
 * the block's own, BELOW: one less), how. */
#define OWN (~0u)
#define BELOW (~1u)
enum how { SINGLE, BULK, UNRESERVE, IS_ALLOCATED, BULK_HUGE };
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
	{ 31, 0, BULK },   { 32, 0, SINGLE },	{ 32, 5, SINGLE },   { 0, OWN, SINGLE },
	{ 0, 0, IS_ALLOCATED }, { 0, 1, IS_ALLOCATED }, { 0, 5, IS_ALLOCATED },
	{ 1, 0, IS_ALLOCATED }, { 3, 0, IS_ALLOCATED }, { 0, OWN, IS_ALLOCATED },
};
#define NSHOTS (sizeof(shots) / sizeof(shots[0]))

/* While a small block of 2..8 words is half taken: the words taken so
 * far may look like a block one order down (a double free of an earlier
 * block there), the head word like an order-5 block. */
static const struct shot take_shots[] = {
	{ 0, 0, SINGLE },  { 0, 0, BULK },     { 0, 0, UNRESERVE }, { 0, 5, SINGLE },
	{ 0, BELOW, SINGLE }, { 0, OWN, SINGLE }, { 32, 5, SINGLE }, { 3, 0, SINGLE },
	{ 0, 5, IS_ALLOCATED }, { 0, BELOW, IS_ALLOCATED }, { 0, OWN, IS_ALLOCATED },
};
#define NTAKE (sizeof(take_shots) / sizeof(take_shots[0]))

/* While a huge block of 2 or 4 chunks is half taken. */
static const struct shot huge_shots[] = {
	{ 0, OWN, SINGLE }, { 0, BELOW, SINGLE }, { 0, 9, SINGLE }, { 512, 9, SINGLE },
	{ 0, 9, BULK_HUGE }, { 0, 0, SINGLE },     { 0, OWN, IS_ALLOCATED },
	{ 0, 9, IS_ALLOCATED },
};
#define NHUGE (sizeof(huge_shots) / sizeof(huge_shots[0]))

static struct cairn_frames *f;
static _Atomic unsigned go, ready, marked, fired; /* round numbers */
static _Atomic bool stop;
static cairn_phys_t blk;
static unsigned blk_order, round_no;
static const struct shot *cur;
static enum cairn_frames_hook_point hold_at;
static void *hold_obj;
static int shot_err;
static _Thread_local bool holder; /* the thread whose free the hook holds */

/* CPU 0's free or alloc_at of the block, at the hook point: let CPU 1
 * fire, then go on. */
void cairn_frames_test_hook(enum cairn_frames_hook_point at, void *obj)
{
	if (at != hold_at || !holder || obj != hold_obj)
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
		struct shot s = *cur;
		unsigned order = s.order == OWN ? blk_order : s.order == BELOW ? blk_order - 1 : s.order;
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
		case BULK_HUGE:
			shot_err = cairn_frames_free_bulk_huge(f, &at, 1, NULL);
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
				: h == BULK_HUGE ? "free_bulk_huge" : "is_allocated";
}

static struct cairn_frames_config cfg = { .ncpus = 2 };
static unsigned rounds, accepted;

/* One round on a fresh instance: CPU 0 frees (taking: allocates at) an
 * order-k block at a random place, held at the hook while CPU 1 fires s. */
static void round_one(bool taking, unsigned k, const struct shot *s, uint64_t *seed)
{
	const struct cairn_mem_range map[] = { { BASE, SIZE } };
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	struct region *reg = region_find(f, BASE >> CAIRN_FRAME_SHIFT);
	REQUIRE(reg);
	uint64_t total = frames_free_total(f);
	round_no = ++rounds;
	atomic_store_explicit(&go, rounds, memory_order_release);
	while (atomic_load_explicit(&ready, memory_order_acquire) != rounds)
		sched_yield();
	/* a block somewhere in the first 14 MiB (8 for huge ones), away from
	 * CPU 1's frame */
	uint64_t span = k >= CAIRN_HUGE_ORDER ? 8 * MiB : 14 * MiB;
	blk_order = k;
	blk = BASE + splitmix64(seed) % (span / (FRAME << k)) * (FRAME << k);
	uint64_t frame = blk >> CAIRN_FRAME_SHIFT;
	hold_at = taking ? CAIRN_FRAMES_HOOK_BLOCK_TAKING : CAIRN_FRAMES_HOOK_BLOCK_MARKED;
	hold_obj = k >= CAIRN_HUGE_ORDER ? (void *)frame_entry(reg, frame) : (void *)frame_word(reg, frame);
	cur = s;
	if (taking) {
		CHECK_EQ(cairn_frames_alloc_at(f, blk, k), 0);
	} else {
		REQUIRE(cairn_frames_alloc_at(f, blk, k) == 0);
		CHECK_EQ(cairn_frames_free(f, blk, k), 0);
	}
	CHECK_EQ(atomic_load(&fired), rounds);
	unsigned order = s->order == OWN ? k : s->order == BELOW ? k - 1 : s->order;
	if (shot_err == 0) {
		accepted++;
		fprintf(stderr, "%s of frame %u at order %u accepted while an order-%u block was "
				"being %s\n",
			how_name(s->how), s->off, order, k, taking ? "taken" : "freed");
	}
	CHECK(shot_err == CAIRN_EORDER || shot_err == CAIRN_EFREE);
	CHECK_EQ(cairn_frames_validate(f), 0);
	if (taking) { /* the block whole and allocated, then free */
		CHECK(cairn_frames_is_allocated(f, blk, k));
		CHECK_EQ(frames_free_total(f), total - (1ull << k));
		CHECK_EQ(cairn_frames_free(f, blk, k), 0);
		CHECK_EQ(cairn_frames_validate(f), 0);
	}
	CHECK_EQ(frames_free_total(f), total);
}

int main(void)
{
	REQUIRE(cairn_host_init(2, BASE, SIZE) == 0);
	const struct cairn_mem_range map[] = { { BASE, SIZE } };
	cfg.meta_size = cairn_frames_meta_size(map, 1, 2);
	cfg.meta = malloc(cfg.meta_size);
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	holder = true;
	cairn_host_reports_quiet(1);

	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cpu1, NULL) == 0);
	uint64_t seed = 1;
	for (unsigned k = 6; k <= 8; k++)
		for (unsigned i = 0; i < NSHOTS; i++)
			round_one(false, k, &shots[i], &seed);
	for (unsigned k = 6; k <= 8; k++)
		for (unsigned i = 0; i < NTAKE; i++)
			round_one(true, k, &take_shots[i], &seed);
	for (unsigned k = 10; k <= 11; k++)
		for (unsigned i = 0; i < NHUGE; i++)
			round_one(true, k, &huge_shots[i], &seed);
	atomic_store_explicit(&stop, true, memory_order_release);
	pthread_join(t, NULL);
	cairn_host_reports_quiet(0);
	CHECK_EQ(accepted, 0);
	printf("free race: %u rounds, every call fired inside a block's free or take, "
	       "%u accepted\n", rounds, accepted);
	return check_done("frames_free_race");
}
