/* SPDX-License-Identifier: MIT */
/*
 * An unpark in flight against a request that comes up short, in a fixed
 * order: the library is built with the frames hook points
 * (CAIRN_FRAMES_TEST_HOOK).
 *
 * One region of 2 MiB above 4 GiB, every frame allocated but X, which
 * CPU 0 has freed and so parked. CPU 0 (U) unparks X and is held at
 * UNPARK: X's HEAD bit cleared, X not yet counted in FREE. Then CPU 1
 * (F) asks for one frame of any area. X is the only free frame, and its
 * free returned long ago: F must get X, not ENOMEM. F may wait for the
 * unpark in flight (UNPARK_WAIT): its first call there lets U go on, and
 * F waits in the hook until U's call has returned. Without that point, U
 * goes on once F's request has returned, so the test ends either way.
 *
 * U unparks X on each path that unparks: a request short of frames (the
 * park slots, and the area's bitmap with X in no slot), alloc_at and
 * reserve of X's buddy pair, and removal of the region. None of them can
 * use X alone: U's call fails, and F's gets X.
 *
 * Then the other way round: U is the short request (through the slots,
 * and through the bitmap), F an alloc_at of X, a reserve of X, or, with
 * every other frame of the region free, the removal of the region or
 * the alloc_at of the whole 2 MiB chunk that holds X (order 9: alloc_at's
 * huge branch, which takes whole chunks by their FREE counts: X's, while
 * its unpark is in flight, is one short, and the chunk's unpark finds X
 * no longer parked). X is free all along: F must succeed, not fail with
 * EBUSY.
 *
 * After every case: validate, the free total, every frame back.
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "../core/frames_layout.h"
#include "check.h"
#include "frames_total.h"

#ifndef CAIRN_FRAMES_TEST_HOOK
#error "built with the frames hook points"
#endif

#define MiB (1024ull * 1024)
#define BASE (4096 * MiB)
#define NFRAMES (2 * MiB / CAIRN_FRAME_SIZE)
#define X_INDEX 101 /* odd: its buddy X - 1 stays allocated */

static struct cairn_frames *f;
static void *meta;
static size_t meta_size;
static cairn_phys_t held[NFRAMES];
static cairn_phys_t X;
static uint64_t total;

/* ---- F: CPU 1, one request per command ---- */

enum { F_IDLE, F_POSTED, F_WAITING, F_DONE };
static _Atomic int f_state;
static _Atomic bool f_quit;
static int f_res;
static cairn_phys_t f_got;
static int (*f_op)(void); /* F's call; sets f_got if it took X */
static _Thread_local bool is_u, is_f;

/* U's call has returned: F's wait point holds F until then. */
static _Atomic bool u_done;

/* Wait until cond() holds, at most 10 s: false if it never did. */
static bool wait_until(bool (*cond)(void))
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!cond()) {
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 10)
			return false;
	}
	return true;
}

static bool f_posted(void)
{
	return atomic_load_explicit(&f_state, memory_order_acquire) == F_POSTED ||
	       atomic_load_explicit(&f_quit, memory_order_acquire);
}

static bool f_waiting_or_done(void)
{
	return atomic_load_explicit(&f_state, memory_order_acquire) >= F_WAITING;
}

static bool f_done(void)
{
	return atomic_load_explicit(&f_state, memory_order_acquire) == F_DONE;
}

static bool u_returned(void)
{
	return atomic_load_explicit(&u_done, memory_order_acquire);
}

static void *cpu1(void *arg)
{
	(void)arg;
	is_f = true;
	REQUIRE(cairn_host_cpu_bind(1) == 0);
	for (;;) {
		while (!f_posted())
			sched_yield();
		if (atomic_load_explicit(&f_quit, memory_order_acquire))
			break;
		f_res = f_op();
		atomic_store_explicit(&f_state, F_DONE, memory_order_release);
	}
	cairn_host_cpu_unregister();
	return NULL;
}

/* ---- the hook ---- */

static _Atomic uint64_t *armed_word; /* U is held at UNPARK of this word */
static unsigned fired, waited;
static bool f_stuck; /* F's wait for U timed out (F's; read after F_DONE) */

void cairn_frames_test_hook(enum cairn_frames_hook_point at, void *obj)
{
	if (at == CAIRN_FRAMES_HOOK_UNPARK && is_u && armed_word && obj == armed_word) {
		armed_word = NULL;
		fired++;
		/* F's request runs its whole course in U's window, unless it
		 * waits for the unpark: then it lets U go on. */
		atomic_store_explicit(&f_state, F_POSTED, memory_order_release);
		CHECK(wait_until(f_waiting_or_done));
		return;
	}
	if (at == CAIRN_FRAMES_HOOK_UNPARK_WAIT && is_f) {
		if (atomic_load_explicit(&f_state, memory_order_relaxed) == F_POSTED) {
			waited++;
			atomic_store_explicit(&f_state, F_WAITING, memory_order_release);
		}
		if (!wait_until(u_returned))
			f_stuck = true;
	}
}

/* ---- the cases ---- */

static bool parked(cairn_phys_t p)
{
	struct region *r = region_find(f, p >> CAIRN_FRAME_SHIFT);
	return r && (word_parked(atomic_load(frame_word(r, p >> CAIRN_FRAME_SHIFT))) >>
		     ((p >> CAIRN_FRAME_SHIFT) % WORD_FRAMES) & 1);
}

static size_t nheld;

/* A fresh instance, every frame allocated but X (or, !all, no frame
 * allocated but X), X parked: in CPU 0's park slot, or (!slot) in none,
 * as when two threads ran as one CPU index. */
static void fresh(bool slot, bool all)
{
	const struct cairn_mem_range map[] = { { BASE, 2 * MiB } };
	struct cairn_frames_config cfg = { .ncpus = 2, .meta = meta, .meta_size = meta_size };
	REQUIRE(cairn_frames_init(&f, map, 1, &cfg) == 0);
	total = frames_free_total(f);
	REQUIRE(total == NFRAMES);
	X = (BASE >> CAIRN_FRAME_SHIFT) + X_INDEX;
	X <<= CAIRN_FRAME_SHIFT;
	nheld = 0;
	if (all) {
		for (nheld = 0; nheld < NFRAMES; nheld++)
			REQUIRE(cairn_frames_alloc(f, 0, CAIRN_F_HIGH, &held[nheld]) == 0);
		cairn_phys_t p;
		REQUIRE(cairn_frames_alloc(f, 0, CAIRN_F_ANY, &p) == CAIRN_ENOMEM);
	} else {
		REQUIRE(cairn_frames_alloc_at(f, X, 0) == 0);
	}
	REQUIRE(cairn_frames_free(f, X, 0) == 0);
	REQUIRE(parked(X));
	if (!slot)
		atomic_store(&f->cpu[0].park[CAIRN_AREA_HIGH], 0);
	else
		REQUIRE(atomic_load(&f->cpu[0].park[CAIRN_AREA_HIGH]) ==
			(X >> CAIRN_FRAME_SHIFT) + 1);
}

static int u_order1(void)
{
	cairn_phys_t p;
	return cairn_frames_alloc(f, 1, CAIRN_F_ANY, &p);
}

static int u_alloc_at(void)
{
	return cairn_frames_alloc_at(f, X - CAIRN_FRAME_SIZE, 1);
}

static int u_reserve(void)
{
	return cairn_frames_reserve(f, X - CAIRN_FRAME_SIZE, 2 * CAIRN_FRAME_SIZE);
}

static int u_remove(void)
{
	return cairn_frames_remove_region(f, BASE);
}

/* A request no region can serve (4 MiB, the region is 2): short even
 * with every frame free, so it unparks X. */
static int u_order10(void)
{
	cairn_phys_t p;
	return cairn_frames_alloc(f, 10, CAIRN_F_ANY, &p);
}

/* F's calls, and how each gives back what it took */

static int f_alloc(void)
{
	return cairn_frames_alloc(f, 0, CAIRN_F_ANY, &f_got);
}

static int f_alloc_at(void)
{
	int res = cairn_frames_alloc_at(f, X, 0);
	if (res == 0)
		f_got = X;
	return res;
}

/* The whole chunk (the region): X goes with it. */
static int f_alloc_at_huge(void)
{
	int res = cairn_frames_alloc_at(f, BASE, CAIRN_HUGE_ORDER);
	if (res == 0)
		f_got = X;
	return res;
}

static int f_reserve(void)
{
	int res = cairn_frames_reserve(f, X, CAIRN_FRAME_SIZE);
	if (res == 0)
		f_got = X;
	return res;
}

static int f_remove(void)
{
	int res = cairn_frames_remove_region(f, BASE);
	if (res == 0)
		f_got = X; /* X went with the region */
	return res;
}

static int undo_free(void)
{
	return cairn_frames_free(f, f_got, 0);
}

static int undo_free_huge(void)
{
	return cairn_frames_free(f, BASE, CAIRN_HUGE_ORDER);
}

static int undo_unreserve(void)
{
	return cairn_frames_unreserve(f, f_got, CAIRN_FRAME_SIZE);
}

struct race {
	const char *what;
	bool slot, all;      /* fresh()'s */
	int (*u)(void);      /* U's call, held in its unpark of X */
	int u_want;
	int (*f)(void);      /* F's call, which must take X */
	int (*undo)(void);   /* gives X back; none: F removed the region */
};

static void run_case(const struct race *c)
{
	fresh(c->slot, c->all);
	struct region *r = region_find(f, X >> CAIRN_FRAME_SHIFT);
	atomic_store_explicit(&u_done, false, memory_order_release);
	atomic_store_explicit(&f_state, F_IDLE, memory_order_release);
	f_op = c->f;
	f_got = 0;
	armed_word = frame_word(r, X >> CAIRN_FRAME_SHIFT);
	unsigned fired0 = fired;

	int res = c->u();
	atomic_store_explicit(&u_done, true, memory_order_release);
	CHECK_EQ(fired, fired0 + 1);
	CHECK_EQ(res, c->u_want);
	REQUIRE(wait_until(f_done));
	CHECK(!f_stuck);
	CHECK_EQ(f_res, 0);
	if (f_res == 0)
		CHECK_EQ(f_got, X);
	else
		fprintf(stderr, "  %s: CPU 1's call failed (%s) with X %#llx free, "
			"its unpark in flight\n", c->what, cairn_strerror(f_res),
			(unsigned long long)X);

	/* everything back */
	for (size_t i = 0; i < nheld; i++)
		if (held[i] != X)
			CHECK_EQ(cairn_frames_free(f, held[i], 0), 0);
	if (f_res == 0 && c->undo)
		CHECK_EQ(c->undo(), 0);
	CHECK_EQ(cairn_frames_validate(f), 0);
	CHECK_EQ(frames_free_total(f), f_res == 0 && !c->undo ? 0 : total);
}

static const struct race races[] = {
	/* U: the unparker that fails; F: a request for one frame */
	{ "a short request, X in a park slot", true, true, u_order1, CAIRN_ENOMEM, f_alloc, undo_free },
	{ "a short request, X in no slot", false, true, u_order1, CAIRN_ENOMEM, f_alloc, undo_free },
	{ "alloc_at of X's pair", true, true, u_alloc_at, CAIRN_EBUSY, f_alloc, undo_free },
	{ "reserve of X's pair", true, true, u_reserve, CAIRN_EBUSY, f_alloc, undo_free },
	{ "removal of the region", true, true, u_remove, CAIRN_EBUSY, f_alloc, undo_free },
	/* U: a short request; F: a call over X that must not fail EBUSY */
	{ "alloc_at of X, X in a park slot", true, true, u_order1, CAIRN_ENOMEM, f_alloc_at, undo_free },
	{ "alloc_at of X, X in no slot", false, true, u_order1, CAIRN_ENOMEM, f_alloc_at, undo_free },
	{ "reserve of X, X in a park slot", true, true, u_order1, CAIRN_ENOMEM, f_reserve, undo_unreserve },
	{ "reserve of X, X in no slot", false, true, u_order1, CAIRN_ENOMEM, f_reserve, undo_unreserve },
	{ "removal, X in a park slot", true, false, u_order10, CAIRN_ENOMEM, f_remove, NULL },
	{ "removal, X in no slot", false, false, u_order10, CAIRN_ENOMEM, f_remove, NULL },
	{ "alloc_at of X's 2 MiB chunk, X in a park slot", true, false, u_order10, CAIRN_ENOMEM,
	  f_alloc_at_huge, undo_free_huge },
	{ "alloc_at of X's 2 MiB chunk, X in no slot", false, false, u_order10, CAIRN_ENOMEM,
	  f_alloc_at_huge, undo_free_huge },
};

int main(void)
{
	REQUIRE(cairn_host_init(2, BASE, 2 * MiB) == 0);
	const struct cairn_mem_range map[] = { { BASE, 2 * MiB } };
	meta_size = cairn_frames_meta_size(map, 1, 2);
	meta = malloc(meta_size);
	REQUIRE(meta);

	REQUIRE(cairn_host_cpu_bind(0) == 0);
	is_u = true;
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, cpu1, NULL) == 0);

	for (size_t i = 0; i < sizeof(races) / sizeof(races[0]); i++)
		run_case(&races[i]);

	atomic_store_explicit(&f_quit, true, memory_order_release);
	pthread_join(t, NULL);
	printf("unpark race: %u unparks held, %u requests waited for one\n", fired, waited);
	free(meta);
	return check_done("frames_unpark_race");
}
