/* SPDX-License-Identifier: MIT */
/*
 * The huge paths' windows, in a fixed order: the library is built with the
 * frames hook points (CAIRN_FRAMES_TEST_HOOK), and CPU 0 is held at one of
 * them while CPU 1 acts. One region of four chunks above 4 GiB.
 *
 *  BLOCK_TAKING: CPU 0's take of a block of 2 or 4 chunks (alloc_at, or the
 *      general path) has taken the chunks from the last to the middle one.
 *      CPU 1 claims a frame in, or takes, one of the chunks still free. The
 *      take must fail there and give back every chunk it took: alloc_at is
 *      EBUSY, the general path goes on to the next candidate or ENOMEM.
 *  CHUNK_CAS: CPU 0's take has checked a chunk free (512, not HUGE) and not
 *      yet CASed its entry. CPU 1 claims a frame of it (a small allocation
 *      that makes the chunk its own, or alloc_at), or takes it whole: the
 *      CAS must fail, whatever the check saw. A chunk whose owner alone
 *      changed (claimed and given back) is still free: the take goes on.
 *  PARKED, TAKE_BACK (see frames_park_race): a frame of the only free
 *      whole chunk(s) is parked and in no park slot. CPU 1's request for a
 *      block of one or two chunks must find it: only the walk of the area's
 *      bitmap does, the slots name nothing there (or another frame).
 *
 * After every case: the returned blocks and errors, validate, the free
 * frames and the free blocks per order exactly; then everything freed and
 * the region whole again.
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../core/frames_layout.h"
#include "check.h"
#include "frames_hold.h"

#define MiB (1024ull * 1024)
#define FRAME CAIRN_FRAME_SIZE
#define CH (2 * MiB)       /* a chunk */
#define BASE (4096 * MiB)  /* chunks 0..3 */
#define SIZE (4 * CH)
#define NFRAMES (SIZE / FRAME)

static struct cairn_frames *f;
static struct region *reg;
static struct cairn_frames_config cfg = { .ncpus = 2 };

static _Atomic uint64_t *entry(unsigned chunk)
{
	return &reg->chunk[chunk];
}

/* ---- state shared with CPU 1's actions (ordered by the command) ---- */

static cairn_phys_t c1_at, q1;
static unsigned c1_order;
static int res1;

static void fresh(void)
{
	const struct cairn_mem_range map[] = { { BASE, SIZE } };
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	reg = region_find(f, BASE >> CAIRN_FRAME_SHIFT);
	REQUIRE(reg && reg->nchunks == 4 && reg->chunk0 == (BASE / FRAME) >> CHUNK_SHIFT);
	q1 = ~0ull;
	res1 = -1;
}

/* Free blocks per order, as designated initialisers. */
#define BLOCKS(...) ((const uint64_t[CAIRN_MAX_ORDER + 1]){ __VA_ARGS__ })
/* what a chunk with one frame taken leaves: one block of each order 0..8 */
#define LESS_ONE [0] = 1, [1] = 1, [2] = 1, [3] = 1, [4] = 1, [5] = 1, [6] = 1, [7] = 1, [8] = 1

/* validate, then the free frames and the maximal aligned free blocks of
 * each order exactly (all of them above 4 GiB). */
static void expect(const char *what, uint64_t frames, const uint64_t *blocks)
{
	struct cairn_frames_stats st;
	int v = cairn_frames_validate(f);
	cairn_frames_stats(f, &st);
	const uint64_t *got = st.free_blocks[CAIRN_AREA_HIGH];
	bool ok = v == 0 && st.free_frames[CAIRN_AREA_HIGH] == frames &&
		  !memcmp(got, blocks, sizeof(st.free_blocks[0]));
	CHECK_EQ(v, 0);
	CHECK_EQ(st.free_frames[CAIRN_AREA_HIGH], frames);
	for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++)
		CHECK_EQ(got[k], blocks[k]);
	if (!ok)
		fprintf(stderr, "  (in: %s)\n", what);
}

/* Free the blocks (address, order; ~0 for none) and see the region whole. */
struct held {
	cairn_phys_t at;
	unsigned order;
};

static void settle(const char *what, const struct held *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].at != ~0ull)
			CHECK_EQ(cairn_frames_free(f, h[i].at, h[i].order), 0);
	expect(what, NFRAMES, BLOCKS([11] = 1));
}

/* ---- CPU 1's actions ---- */

static void c1_alloc_at(void) { res1 = cairn_frames_alloc_at(f, c1_at, c1_order); }
static void c1_free_at(void) { res1 = cairn_frames_free(f, c1_at, c1_order); }
/* the general path: a chunk nobody prefers becomes CPU 1's */
static void c1_alloc(void) { res1 = cairn_frames_alloc(f, c1_order, 0, &q1); }
static void c1_alloc_aligned10(void) { res1 = cairn_frames_alloc_aligned(f, c1_order, 10, 0, &q1); }
static void c1_bulk_huge(void) { res1 = cairn_frames_alloc_bulk_huge(f, 0, &q1, 1) == 1 ? 0 : CAIRN_ENOMEM; }

/* An order-1 block of CPU 1's chunk, given back: FREE back to 512, the
 * chunk CPU 1's (an order-1 free adds to FREE; it does not park). */
static void c1_claim_and_return(void)
{
	res1 = cairn_frames_alloc(f, 1, 0, &q1);
	if (res1 == 0) {
		CHECK_EQ(ce_owner(atomic_load(entry(2))), 2);
		CHECK_EQ(cairn_frames_free(f, q1, 1), 0);
	}
}

/* ---- BLOCK_TAKING: a take of several chunks meets a claimed or taken
 * chunk part way ---- */

enum via { AT, GENERAL };

/* CPU 0 takes an order-k block at BASE (alloc_at) or anywhere (the
 * general path starts at chunk 0), held once the chunks from the middle
 * on are taken, while CPU 1 runs fn. */
static int take_held(enum via via, unsigned k, void (*fn)(void), cairn_phys_t *q)
{
	arm(CAIRN_FRAMES_HOOK_BLOCK_TAKING, entry(0), fn);
	unsigned before = fired;
	*q = ~0ull;
	int err = via == AT ? cairn_frames_alloc_at(f, BASE, k) : cairn_frames_alloc(f, k, 0, q);
	CHECK_EQ(fired, before + 1);
	return err;
}

static void case_taking(void)
{
	cairn_phys_t q;

	/* 2 chunks, chunk 1 taken; a frame of chunk 0 claimed */
	fresh();
	c1_at = BASE + 7 * FRAME, c1_order = 0;
	CHECK_EQ(take_held(AT, 10, c1_alloc_at, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	expect("order 10 at, chunk 0 claimed", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 10 at, chunk 0 claimed", (struct held[]){ { c1_at, 0 } }, 1);

	/* chunk 0 taken as a 2 MiB block */
	fresh();
	c1_at = BASE, c1_order = 9;
	CHECK_EQ(take_held(AT, 10, c1_alloc_at, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	expect("order 10 at, chunk 0 taken", NFRAMES - 512, BLOCKS([9] = 1, [10] = 1));
	settle("order 10 at, chunk 0 taken", (struct held[]){ { BASE, 9 } }, 1);

	/* the general path: chunks 0-1 fail, chunks 2-3 are the block */
	fresh();
	c1_at = BASE + 7 * FRAME, c1_order = 0;
	CHECK_EQ(take_held(GENERAL, 10, c1_alloc_at, &q), 0);
	CHECK_EQ(q, BASE + 2 * CH);
	CHECK_EQ(res1, 0);
	expect("order 10, chunk 0 claimed", NFRAMES - 1024 - 1, BLOCKS(LESS_ONE, [9] = 1));
	settle("order 10, chunk 0 claimed", (struct held[]){ { c1_at, 0 }, { q, 10 } }, 2);

	/* 4 chunks, chunks 3 and 2 taken; a frame of chunk 1 claimed */
	fresh();
	c1_at = BASE + CH + 7 * FRAME, c1_order = 0;
	CHECK_EQ(take_held(AT, 11, c1_alloc_at, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	expect("order 11 at, chunk 1 claimed", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 11 at, chunk 1 claimed", (struct held[]){ { c1_at, 0 } }, 1);

	/* chunks 3, 2 and 1 taken when the take finds chunk 0 claimed */
	fresh();
	c1_at = BASE + 7 * FRAME, c1_order = 0;
	CHECK_EQ(take_held(AT, 11, c1_alloc_at, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	expect("order 11 at, chunk 0 claimed", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 11 at, chunk 0 claimed", (struct held[]){ { c1_at, 0 } }, 1);

	/* the general path, CPU 1's small allocation: its search starts at
	 * chunk 2 (taken), and chunk 0 becomes its own; the only candidate
	 * fails, and so does the request */
	fresh();
	c1_order = 0;
	CHECK_EQ(take_held(GENERAL, 11, c1_alloc, &q), CAIRN_ENOMEM);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE);
	CHECK_EQ(ce_owner(atomic_load(entry(0))), 2);
	expect("order 11, chunk 0 CPU 1's", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 11, chunk 0 CPU 1's", (struct held[]){ { q1, 0 } }, 1);
}

/* ---- CHUNK_CAS: a claim between the take's check and its CAS ---- */

/* CPU 0's take (of chunk 2 and on: alloc_at at BASE + 2 CH, or the general
 * path with chunks 0 and 1 taken before) held before its CAS of chunk
 * `at`, while CPU 1 runs fn. */
static int cas_held(enum via via, unsigned k, unsigned at, void (*fn)(void), cairn_phys_t *q)
{
	arm(CAIRN_FRAMES_HOOK_CHUNK_CAS, entry(at), fn);
	unsigned before = fired;
	*q = ~0ull;
	int err = via == AT ? cairn_frames_alloc_at(f, BASE + 2 * CH, k)
			    : cairn_frames_alloc_aligned(f, k, k, 0, q);
	CHECK_EQ(fired, before + 1);
	return err;
}

static void case_cas(void)
{
	cairn_phys_t q;

	/* CPU 1's small allocation starts at chunk 2 (its share of the
	 * region) and makes it its own; CPU 0's general path walks on to
	 * chunk 3 */
	fresh();
	REQUIRE(cairn_frames_alloc_at(f, BASE, 10) == 0);
	c1_order = 0;
	CHECK_EQ(cas_held(GENERAL, 9, 2, c1_alloc, &q), 0);
	CHECK_EQ(q, BASE + 3 * CH);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE + 2 * CH);
	CHECK_EQ(ce_owner(atomic_load(entry(2))), 2);
	expect("order 9, chunk 2 CPU 1's", NFRAMES - 1536 - 1, BLOCKS(LESS_ONE));
	settle("order 9, chunk 2 CPU 1's",
	       (struct held[]){ { BASE, 10 }, { q, 9 }, { q1, 0 } }, 3);

	/* the same against alloc_at */
	fresh();
	c1_order = 0;
	CHECK_EQ(cas_held(AT, 9, 2, c1_alloc, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE + 2 * CH);
	expect("order 9 at, chunk 2 CPU 1's", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 9 at, chunk 2 CPU 1's", (struct held[]){ { q1, 0 } }, 1);

	/* a frame of chunk 2 claimed by alloc_at (no owner) */
	fresh();
	c1_at = BASE + 2 * CH + 7 * FRAME, c1_order = 0;
	CHECK_EQ(cas_held(AT, 9, 2, c1_alloc_at, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	expect("order 9 at, chunk 2 claimed", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 9 at, chunk 2 claimed", (struct held[]){ { c1_at, 0 } }, 1);

	/* chunk 2 taken whole by CPU 1's 2 MiB allocation */
	fresh();
	c1_order = 9;
	CHECK_EQ(cas_held(AT, 9, 2, c1_alloc, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE + 2 * CH);
	expect("order 9 at, chunk 2 taken", NFRAMES - 512, BLOCKS([9] = 1, [10] = 1));
	settle("order 9 at, chunk 2 taken", (struct held[]){ { q1, 9 } }, 1);

	/* two chunks: a claim of chunk 3 before the first CAS (nothing taken
	 * yet), then of chunk 2 before the last (chunk 3 taken: given back) */
	fresh();
	c1_at = BASE + 3 * CH + 7 * FRAME, c1_order = 0;
	CHECK_EQ(cas_held(AT, 10, 3, c1_alloc_at, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	expect("order 10 at, chunk 3 claimed", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 10 at, chunk 3 claimed", (struct held[]){ { c1_at, 0 } }, 1);
	fresh();
	c1_order = 0;
	CHECK_EQ(cas_held(AT, 10, 2, c1_alloc, &q), CAIRN_EBUSY);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE + 2 * CH);
	expect("order 10 at, chunk 2 CPU 1's", NFRAMES - 1, BLOCKS(LESS_ONE, [9] = 1, [10] = 1));
	settle("order 10 at, chunk 2 CPU 1's", (struct held[]){ { q1, 0 } }, 1);

	/* only the owner changed: claimed and given back in the window, the
	 * chunk is free again and the take goes through */
	for (enum via via = AT; via <= GENERAL; via++) {
		fresh();
		if (via == GENERAL)
			REQUIRE(cairn_frames_alloc_at(f, BASE, 10) == 0);
		CHECK_EQ(cas_held(via, 9, 2, c1_claim_and_return, &q), 0);
		CHECK_EQ(res1, 0);
		CHECK_EQ(q1, BASE + 2 * CH);
		CHECK(cairn_frames_is_allocated(f, BASE + 2 * CH, 9));
		CHECK(via == AT || q == BASE + 2 * CH);
		expect("order 9, owner changed", via == AT ? NFRAMES - 512 : 512,
		       via == AT ? BLOCKS([9] = 1, [10] = 1) : BLOCKS([9] = 1));
		settle("order 9, owner changed",
		       (struct held[]){ { BASE + 2 * CH, 9 }, { via == AT ? ~0ull : BASE, 10 } }, 2);
	}
}

/* ---- PARKED, TAKE_BACK: whole chunks only the area's walk finds ---- */

static bool parked(cairn_phys_t p)
{
	uint64_t frame = p >> CAIRN_FRAME_SHIFT;
	return word_parked(atomic_load(frame_word(reg, frame))) >> (frame % WORD_FRAMES) & 1;
}

/* A fresh instance with the blocks taken, and frame X allocated. */
static void walk_setup(cairn_phys_t x, const struct held *h, size_t n)
{
	fresh();
	for (size_t i = 0; i < n; i++)
		REQUIRE(cairn_frames_alloc_at(f, h[i].at, h[i].order) == 0);
	REQUIRE(cairn_frames_alloc_at(f, x, 0) == 0);
}

/* X (in chunk 0) parked in CPU 0's slot; CPU 0's order-0 allocation, the
 * short path or the general one, is held once it has emptied the slot,
 * while CPU 1 asks for a 2 MiB block (fn) that only chunk 0 can be. CPU 1
 * gets chunk 0; CPU 0 then finds X taken and nothing else: ENOMEM. */
static void take_back_case(const char *what, bool general, void (*fn)(void))
{
	const struct held taken[] = { { BASE + CH, 9 }, { BASE + 2 * CH, 10 } };
	cairn_phys_t x = BASE + 100 * FRAME, q;
	walk_setup(x, taken, 2);
	REQUIRE(cairn_frames_free(f, x, 0) == 0 && parked(x));
	arm(CAIRN_FRAMES_HOOK_TAKE_BACK, NULL, fn);
	unsigned before = fired;
	c1_order = 9;
	int err = general ? cairn_frames_alloc_aligned(f, 0, 0, 0, &q) : cairn_frames_alloc(f, 0, 0, &q);
	CHECK_EQ(fired, before + 1);
	CHECK_EQ(err, CAIRN_ENOMEM);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE);
	CHECK(cairn_frames_is_allocated(f, BASE, 9));
	expect(what, 0, BLOCKS([0] = 0));
	settle(what, (struct held[]){ taken[0], taken[1], { q1, 9 }, { err ? ~0ull : q, 0 } }, 4);
}

static void case_walk(void)
{
	take_back_case("take back, order 9", false, c1_alloc);
	take_back_case("take back (general), order 9 aligned to 4 MiB", true, c1_alloc_aligned10);
	take_back_case("take back, huge bulk", false, c1_bulk_huge);

	/* X parked by CPU 0's free, not yet in its slot */
	const struct held taken[] = { { BASE + CH, 9 }, { BASE + 2 * CH, 10 } };
	cairn_phys_t x = BASE + 100 * FRAME, q;
	walk_setup(x, taken, 2);
	arm(CAIRN_FRAMES_HOOK_PARKED, NULL, c1_alloc);
	unsigned before = fired;
	c1_order = 9;
	CHECK_EQ(cairn_frames_free(f, x, 0), 0);
	CHECK_EQ(fired, before + 1);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE);
	CHECK_EQ(cairn_frames_alloc(f, 0, 0, &q), CAIRN_ENOMEM); /* a stale slot */
	expect("parked, order 9", 0, BLOCKS([0] = 0));
	settle("parked, order 9", (struct held[]){ taken[0], taken[1], { q1, 9 } }, 3);

	/* two chunks: Y (chunk 0) parked in CPU 1's slot, which the slots'
	 * unpark finds, and X (chunk 1) parked by CPU 0's held free, which
	 * only the walk finds */
	cairn_phys_t y = BASE + 200 * FRAME;
	x = BASE + CH + 100 * FRAME;
	walk_setup(x, (struct held[]){ { BASE + 2 * CH, 10 } }, 1);
	c1_at = y, c1_order = 0;
	on_cpu1(c1_alloc_at);
	REQUIRE(res1 == 0);
	on_cpu1(c1_free_at);
	REQUIRE(res1 == 0 && parked(y));
	arm(CAIRN_FRAMES_HOOK_PARKED, NULL, c1_alloc);
	before = fired;
	c1_order = 10;
	q1 = ~0ull;
	CHECK_EQ(cairn_frames_free(f, x, 0), 0);
	CHECK_EQ(fired, before + 1);
	CHECK_EQ(res1, 0);
	CHECK_EQ(q1, BASE);
	CHECK(cairn_frames_is_allocated(f, BASE, 10));
	expect("parked, order 10", 0, BLOCKS([0] = 0));
	settle("parked, order 10", (struct held[]){ { BASE + 2 * CH, 10 }, { q1, 10 } }, 2);
}

int main(void)
{
	REQUIRE(cairn_host_init(2, BASE, SIZE) == 0);
	const struct cairn_mem_range map[] = { { BASE, SIZE } };
	cfg.meta_size = cairn_frames_meta_size(map, 1, 2);
	cfg.meta = malloc(cfg.meta_size);
	hold_start();
	cairn_host_reports_quiet(1);

	case_taking();
	case_cas();
	case_walk();

	cairn_host_reports_quiet(0);
	hold_stop();
	printf("huge race: %u cases held at a hook point\n", fired);
	free(cfg.meta);
	return check_done("frames_huge_race");
}
