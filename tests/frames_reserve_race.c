/* SPDX-License-Identifier: MIT */
/*
 * A bad free that lands on a reserve's frames between its marks and its
 * undo, in a fixed order: the library is built with the frames hook
 * points (CAIRN_FRAMES_TEST_HOOK), and CPU 0's reserve is held at
 * RESERVE_UNDO (its last piece found busy, the pieces before it still
 * taken) while CPU 1 frees frames of the first piece that nobody was
 * given: a plain order-0 free (which parks the frame), a bulk free and an
 * unreserve.
 *
 * A reserve's marks are order-0 allocations (frames.h, docs/design.md:
 * "A free of a reserve's frames"), so the free cannot tell and returns 0.
 * The undo can: it finds a frame it took no longer allocated, which only
 * a free of a frame nobody held does. It must report that through
 * cairn_port_report (once for the piece), still fail the reserve with
 * EBUSY, and leave the counts right: every frame of the range free again
 * but the blocker, validate passing, each victim free exactly once.
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdlib.h>

#include "../core/frames_layout.h"
#include "check.h"
#include "frames_hold.h"
#include "frames_total.h"

#define MiB (1024ull * 1024)
#define FRAME CAIRN_FRAME_SIZE
#define BASE (4096 * MiB)
/* the range: all of chunk 0 and 64 frames of chunk 1, whose frame 40 is
 * taken (the blocker), so the second piece fails in its second word */
#define RANGE (2 * MiB + 64 * FRAME)
#define BLOCKER (BASE + 2 * MiB + 40 * FRAME)

static struct cairn_frames *f;
static cairn_phys_t victim[2];

static void c1_free(void)
{
	uint64_t fr = victim[0] >> CAIRN_FRAME_SHIFT;
	struct region *r = region_find(f, fr);
	CHECK_EQ(cairn_frames_free(f, victim[0], 0), 0);
	/* CPU 1's park slot was empty: the frame is parked, HEAD alone */
	CHECK(word_parked(atomic_load(frame_word(r, fr))) & 1u << fr % WORD_FRAMES);
}

static void c1_free_bulk(void)
{
	size_t done = 0;
	CHECK_EQ(cairn_frames_free_bulk(f, victim, 2, &done), 0);
	CHECK_EQ(done, 2);
}

static void c1_unreserve(void)
{
	CHECK_EQ(cairn_frames_unreserve(f, victim[0], 2 * FRAME), 0);
}

static void run_case(const char *what, void (*fn)(void), unsigned nvictims)
{
	uint64_t total = frames_free_total(f);
	struct region *r = region_find(f, BASE >> CAIRN_FRAME_SHIFT);
	REQUIRE(r);
	uint64_t reports = cairn_host_reports();
	arm(CAIRN_FRAMES_HOOK_RESERVE_UNDO, r, fn);
	CHECK_EQ(cairn_frames_reserve(f, BASE, RANGE), CAIRN_EBUSY);
	CHECK(!armed);
	uint64_t seen = cairn_host_reports() - reports;
	CHECK_EQ(seen, 1);
	if (seen != 1)
		fprintf(stderr, "  (%s: %llu reports of the bad free)\n", what,
			(unsigned long long)seen);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), total);
	/* each victim free, once: taken back and freed, then EFREE */
	for (unsigned i = 0; i < nvictims; i++) {
		CHECK(!cairn_frames_is_allocated(f, victim[i], 0));
		CHECK_EQ(cairn_frames_alloc_at(f, victim[i], 0), 0);
		CHECK_EQ(cairn_frames_free(f, victim[i], 0), 0);
		CHECK_EQ(cairn_frames_free(f, victim[i], 0), CAIRN_EFREE);
	}
	/* and the whole range, but the blocker, reservable */
	CHECK_EQ(cairn_frames_reserve(f, BASE, 2 * MiB + 40 * FRAME), 0);
	CHECK_EQ(cairn_frames_unreserve(f, BASE, 2 * MiB + 40 * FRAME), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), total);
}

int main(void)
{
	REQUIRE(cairn_host_init(2, BASE, 8 * MiB) == 0);
	const struct cairn_mem_range map[] = { { BASE, 8 * MiB } };
	struct cairn_frames_config cfg = { .ncpus = 2 };
	cfg.meta_size = cairn_frames_meta_size(map, 1, 2);
	cfg.meta = malloc(cfg.meta_size);
	REQUIRE(cfg.meta && cairn_frames_init(&f, map, 1, &cfg) == 0);
	hold_start();
	REQUIRE(cairn_frames_alloc_at(f, BLOCKER, 0) == 0);
	cairn_host_reports_quiet(1);
	victim[0] = BASE + 5 * FRAME;
	victim[1] = BASE + 6 * FRAME;
	run_case("a free (parked)", c1_free, 1);
	victim[0] = BASE + 300 * FRAME;
	victim[1] = BASE + 301 * FRAME;
	run_case("a bulk free", c1_free_bulk, 2);
	run_case("an unreserve", c1_unreserve, 2);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_frames_free(f, BLOCKER, 0), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	hold_stop();
	printf("reserve race: %u cases held at a hook point\n", fired);
	CHECK_EQ(fired, 3);
	free(cfg.meta);
	return check_done("frames_reserve_race");
}
