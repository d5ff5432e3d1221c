/* SPDX-License-Identifier: MIT */
/*
 * The exhausted mark against a free that lands between a search's last
 * look at a region and its mark, in a fixed order: the library is built
 * with the frames hook points (CAIRN_FRAMES_TEST_HOOK), and CPU 0 is held
 * at MARKING while CPU 1 frees a block of that region.
 *
 * Memory: 8 MiB below 4 GiB and 8 MiB above, so a request of any area
 * looks above 4 GiB first. The region above is filled (with order-3
 * blocks, or with 2 MiB blocks: the two ways a free adds to FREE, a
 * count added to a chunk's entry or a whole chunk given back), then a
 * request of any area is held at the mark while one block above is freed.
 * Afterwards the region must not stay marked over that block: the next
 * request of any area gets it (a marked region is passed by, and the
 * request would be served below 4 GiB).
 *
 * And the other way round: a removal of the region above, held after it
 * took every chunk but its last (busy) and before it gives them back,
 * while CPU 1's request finds the region without a counted frame and
 * marks it. The removal's undo adds to FREE: it must clear the mark.
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdlib.h>

#include "../core/frames_layout.h"
#include "check.h"
#include "frames_hold.h"
#include "frames_total.h"

#define MiB (1024ull * 1024)
#define LOW (4096 * MiB - 8 * MiB) /* [LOW, 4 GiB) and [4 GiB, 4 GiB + 8 MiB) */
#define HIGH (4096 * MiB)
#define NHELD (8 * MiB / (8 * CAIRN_FRAME_SIZE))

static struct cairn_frames *f;
static cairn_phys_t held[NHELD];
static size_t nheld;

/* CPU 1's actions, while CPU 0 is held on the region above 4 GiB */
static cairn_phys_t victim, got1;
static unsigned victim_order;
static void c1_free(void) { CHECK_EQ(cairn_frames_free(f, victim, victim_order), 0); }
static void c1_alloc(void) { CHECK_EQ(cairn_frames_alloc(f, 3, CAIRN_F_ANY, &got1), 0); }

static struct region *high(void)
{
	return region_find(f, HIGH >> CAIRN_FRAME_SHIFT);
}

static bool marked(void)
{
	return atomic_load(&high()->exhausted) != 0;
}

static uint64_t total;

static void *fresh(void)
{
	const struct cairn_mem_range map[] = { { LOW, 16 * MiB } };
	struct cairn_frames_config cfg = { .ncpus = 2 };
	cfg.meta_size = cairn_frames_meta_size(map, 1, 2);
	cfg.meta = malloc(cfg.meta_size);
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	total = frames_free_total(f);
	return cfg.meta;
}

static void report_below(const char *what, cairn_phys_t a, cairn_phys_t b)
{
	fprintf(stderr, "  (%s: %#llx and %#llx below 4 GiB, mark %d)\n", what,
		(unsigned long long)a, (unsigned long long)b, marked());
}

static void run_case(const char *what, unsigned order)
{
	void *meta = fresh();

	/* Fill the region above 4 GiB; a failing small request marks it. */
	cairn_phys_t p;
	for (nheld = 0; cairn_frames_alloc(f, order, CAIRN_F_HIGH, &p) == 0;)
		held[nheld++] = p;
	CHECK(nheld > 1);
	CHECK_EQ(cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &p), CAIRN_ENOMEM);
	CHECK(marked());
	/* A free clears the mark; taking the block back leaves the region
	 * full and unmarked. */
	CHECK_EQ(cairn_frames_free(f, held[0], order), 0);
	CHECK(!marked());
	CHECK_EQ(cairn_frames_alloc(f, order, CAIRN_F_HIGH, &p), 0);
	CHECK_EQ(p, held[0]);

	/* A request of any area, held at the mark while the last block is
	 * freed: in another chunk than held[0], where CPU 0's hint is. */
	victim = held[nheld - 1];
	victim_order = order;
	held[nheld - 1] = ~0ull;
	arm(CAIRN_FRAMES_HOOK_MARKING, high(), c1_free);
	cairn_phys_t got[2];
	CHECK_EQ(cairn_frames_alloc(f, 3, CAIRN_F_ANY, &got[0]), 0);
	CHECK(!armed);
	/* The hook's block, or one below 4 GiB; then the next request must
	 * find the freed block above, not pass its region by. */
	CHECK_EQ(cairn_frames_alloc(f, 3, CAIRN_F_ANY, &got[1]), 0);
	bool above = got[0] >= HIGH || got[1] >= HIGH;
	CHECK(above);
	if (!above)
		report_below(what, got[0], got[1]);

	for (int i = 0; i < 2; i++)
		CHECK_EQ(cairn_frames_free(f, got[i], 3), 0);
	for (size_t i = 0; i < nheld; i++)
		if (held[i] != ~0ull)
			CHECK_EQ(cairn_frames_free(f, held[i], order), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), total);
	free(meta);
}

/* A removal of the region above undone (its last chunk busy), held before
 * it gives its chunks back while CPU 1 allocates and marks the region. */
static void case_remove_undo(void)
{
	void *meta = fresh();
	cairn_phys_t busy = HIGH + 6 * MiB, p;
	CHECK_EQ(cairn_frames_alloc_at(f, busy, CAIRN_HUGE_ORDER), 0);
	arm(CAIRN_FRAMES_HOOK_REMOVE_UNDO, high(), c1_alloc);
	CHECK_EQ(cairn_frames_remove_region(f, HIGH), CAIRN_EBUSY);
	CHECK(!armed);
	CHECK(got1 < HIGH); /* the region had nothing to give then */
	CHECK_EQ(cairn_frames_alloc(f, 3, CAIRN_F_ANY, &p), 0);
	CHECK(p >= HIGH);
	if (p < HIGH)
		report_below("a removal undone", got1, p);
	CHECK_EQ(cairn_frames_free(f, p, 3), 0);
	CHECK_EQ(cairn_frames_free(f, got1, 3), 0);
	CHECK_EQ(cairn_frames_free(f, busy, CAIRN_HUGE_ORDER), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), total);
	free(meta);
}

int main(void)
{
	REQUIRE(cairn_host_init(2, LOW, 16 * MiB) == 0);
	hold_start();
	run_case("order 3: a count added to a chunk", 3);
	run_case("2 MiB: a whole chunk given back", CAIRN_HUGE_ORDER);
	case_remove_undo();
	hold_stop();
	printf("mark race: %u cases held at a hook point\n", fired);
	CHECK_EQ(fired, 3);
	return check_done("frames_mark_race");
}
