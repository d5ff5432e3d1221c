/* SPDX-License-Identifier: MIT */
/*
 * Model-based random test of the magazine cache: one thread plays every CPU
 * (binding to one slot after another), in front of a reference source, with
 * magazine frames from a deliberately small frame allocator so that the
 * paths for "no magazine to be had" run too. After every operation:
 *   - an allocated item was out of the source and not already allocated;
 *   - allocated + cached + free in the source == total (nothing lost or
 *     duplicated), and the per-CPU figures add up;
 *   - the cache holds no more than its bound, a CPU no more than two
 *     magazines, the depot no more than its limits;
 *   - magazine frames in use + free frames == all frames;
 *   - ENOMEM only when the source, the depot and this CPU hold nothing;
 *   - every operation on a CPU's slot counts exactly one hit or one miss
 *     (cairn_mag_alloc a miss and then one more: it may try again after a
 *     drain), checked at each operation and in total; and one exchange
 *     for each magazine it moved to or from the depot's full stack; and it
 *     changes no other CPU's figures;
 *   - an allocation takes from the source exactly what the algorithm says
 *     (predict_try): nothing on a hit or a depot exchange; after a drain
 *     ("lean", which the model keeps by its own rule: ncpus * refill
 *     single items, or until a free finds the depot full) one item; else a
 *     refill, or one item when no magazine can be had; and whether it
 *     fails. A drain empties the other CPUs' slots itself (no thread holds
 *     them: the port lends them), a request left pending on one of them
 *     included.
 * A hit that moves an item without the slot's count is seen by the
 * conservation check: the count is what the figures read, so such a hit
 * loses or duplicates an item.
 * usage: mag_model seed ops
 */
#include <cairn/host.h>
#include <cairn/magazine.h>

#include "../check.h"
#include "ref_source.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 4
#define N 300

static uint64_t rng;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static unsigned below(unsigned n) { return (unsigned)(rnd() % n); }

static struct cairn_frames *frames;
static uint64_t frames_total;
static struct ref_source src;
static struct cairn_mag_cache *mc;
static unsigned mag_size, depot_full, depot_empty, cpu;
static uint64_t user[N];
static unsigned nuser;
static unsigned char is_user[N];
static uint64_t op;
static uint64_t ops_lo[NCPUS], ops_hi[NCPUS]; /* operations on each slot */
static unsigned refill;
static int64_t lean_left;   /* the model's lean countdown (magazine.c) */
static bool asked[NCPUS];   /* drain requests not answered yet */

static void fail_at(const char *what)
{
	fprintf(stderr, "op %llu (cpu %u): %s\n", (unsigned long long)op, cpu, what);
	exit(1);
}

static void check_state(void)
{
	struct cairn_mag_stats ms;
	cairn_mag_stats(mc, &ms);
	uint64_t sum = 0, mags = 0;
	for (unsigned c = 0; c < NCPUS; c++) {
		struct cairn_mag_cpu_stats st;
		REQUIRE(cairn_mag_cpu_stats(mc, c, &st) == 0);
		if (st.held > 2ull * mag_size || st.magazines > 2)
			fail_at("a CPU holds more than two magazines");
		sum += st.held;
		mags += st.magazines;
		if (st.hits + st.misses < ops_lo[c] || st.hits + st.misses > ops_hi[c])
			fail_at("hits + misses do not count the operations");
	}
	if (sum != ms.cpu_held)
		fail_at("per-CPU held does not add up");
	if (ms.depot_full > depot_full || ms.depot_empty > depot_empty)
		fail_at("depot over its limit");
	if (ms.depot_items != ms.depot_full * mag_size)
		fail_at("depot items");
	if (ms.cpu_held + ms.depot_items > ms.bound)
		fail_at("cache over its bound");
	if (nuser + ms.cpu_held + ms.depot_items + ref_free(&src) != N)
		fail_at("items lost or duplicated");
	if (ms.magazines != mags + ms.depot_full + ms.depot_empty)
		fail_at("magazine count");
	if (frames_free_total(frames) + ms.magazines != frames_total)
		fail_at("magazine frames lost");
	if (src.errors)
		fail_at("bad put into the source");
}

/* What the source, the depot and this CPU hold, as the algorithm sees it. */
struct view {
	uint64_t src, frames, spare;
	uint64_t held, mags;             /* this CPU's (0 outside the slots) */
	uint64_t depot_full, depot_empty;
};

static struct view look(void)
{
	struct cairn_mag_stats ms;
	cairn_mag_stats(mc, &ms);
	struct cairn_mag_cpu_stats st = { 0 };
	if (cpu < NCPUS)
		REQUIRE(cairn_mag_cpu_stats(mc, cpu, &st) == 0);
	return (struct view){
		.src = ref_free(&src), .frames = frames_free_total(frames),
		.spare = 2ull * NCPUS + depot_full + depot_empty - ms.magazines,
		.held = st.held, .mags = st.magazines,
		.depot_full = ms.depot_full, .depot_empty = ms.depot_empty,
	};
}

/* A CPU asked to drain empties its slot at its next operation. */
static void answer(struct view *v)
{
	if (cpu >= NCPUS || !asked[cpu])
		return;
	asked[cpu] = false;
	v->src += v->held;
	v->frames += v->mags;
	v->spare += v->mags;
	v->held = v->mags = 0;
}

/* One try of an allocation (cairn_mag_try_alloc): whether it succeeds, and
 * the source's count after it in v->src. */
static bool predict_try(struct view *v)
{
	if (cpu >= NCPUS) { /* a bypass slot: one item */
		if (!v->src)
			return false;
		v->src--;
		return true;
	}
	answer(v);
	if (v->held || v->depot_full) /* a hit, a swap, an exchange */
		return true;
	if (lean_left > 0) { /* one item, no magazine */
		if (!v->src)
			return false;
		v->src--;
		lean_left--;
		return true;
	}
	/* a refill into a magazine, if one can be had; else one item */
	bool mag = v->mags || v->depot_empty || (v->spare && v->frames);
	uint64_t want = mag ? refill : 1, got = v->src < want ? v->src : want;
	v->src -= got;
	return got > 0;
}

/* cairn_mag_drain_all from this CPU: its slot and the depot to the source,
 * the cache lean. The other CPUs holding magazines are slots no thread
 * holds (one thread plays them all): the drain borrows each from the port
 * and empties it, with any request it had pending. */
static void predict_drain(struct view *v)
{
	if (cpu < NCPUS) {
		asked[cpu] = true;
		answer(v);
	}
	v->src += v->depot_full * mag_size;
	v->depot_full = v->depot_empty = 0;
	for (unsigned c = 0; c < NCPUS; c++) {
		struct cairn_mag_cpu_stats st;
		REQUIRE(cairn_mag_cpu_stats(mc, c, &st) == 0);
		if (c != cpu && st.magazines) {
			asked[c] = false;
			v->src += st.held;
			v->frames += st.magazines;
			v->spare += st.magazines;
		}
	}
	lean_left = (int64_t)NCPUS * refill;
}

static void take(uint64_t it)
{
	int64_t k = ref_index(&src, it);
	if (k < 0 || !src.out[k] || is_user[k])
		fail_at("allocated an item that is not out, or twice");
	is_user[k] = 1;
	user[nuser++] = it;
}

/* Every slot's figures and the depot's, to see what one operation counted
 * and where. */
struct counts {
	struct cairn_mag_cpu_stats cpu[NCPUS];
	uint64_t depot_full, drains;
};

static struct counts counts(void)
{
	struct counts k;
	for (unsigned c = 0; c < NCPUS; c++)
		REQUIRE(cairn_mag_cpu_stats(mc, c, &k.cpu[c]) == 0);
	struct cairn_mag_stats ms;
	cairn_mag_stats(mc, &ms);
	k.depot_full = ms.depot_full;
	k.drains = ms.drains;
	return k;
}

/* One operation on a slot is one hit or one miss; an alloc that may retry
 * after a drain is a miss (the ENOMEM) and then one more. A CPU outside the
 * slots counts nothing. The slot counts one exchange for each magazine its
 * operation moved to or from the depot's full stack, which only an
 * exchange does (a drain empties the depot first, so an operation that
 * drained exchanged nothing); and no other slot's counts change, nor what
 * it holds unless the operation drained: a drain empties them (no thread
 * holds them), and nothing else touches them. */
static void check_counted(const struct counts *was, bool may_retry)
{
	struct counts now = counts();
	for (unsigned c = 0; c < NCPUS; c++) {
		const struct cairn_mag_cpu_stats *a = &was->cpu[c], *b = &now.cpu[c];
		uint64_t hits = b->hits - a->hits, misses = b->misses - a->misses;
		uint64_t exch = b->exchanges - a->exchanges;
		if (c != cpu) {
			if (hits || misses || exch ||
			    (now.drains == was->drains &&
			     (a->held != b->held || a->magazines != b->magazines)) ||
			    (now.drains != was->drains && (b->held || b->magazines)))
				fail_at("an operation changed another CPU's slot");
			continue;
		}
		bool one = hits + misses == 1;
		bool retried = may_retry && misses >= 1 && hits + misses == 2;
		if (!(one || retried))
			fail_at("an operation not counted as exactly one hit or miss");
		bool drained = now.drains != was->drains;
		uint64_t moved = now.depot_full > was->depot_full ?
					 now.depot_full - was->depot_full :
					 was->depot_full - now.depot_full;
		if (exch != (drained ? 0 : moved) || exch > misses)
			fail_at("exchanges do not count the magazines moved to or from the depot");
	}
}

static void do_alloc(bool drain)
{
	uint64_t it;
	struct counts was = counts();
	struct view v = look();
	bool ok = predict_try(&v);
	if (!ok && drain) {
		predict_drain(&v);
		ok = predict_try(&v);
	}
	int err = drain ? cairn_mag_alloc(mc, &it) : cairn_mag_try_alloc(mc, &it);
	check_counted(&was, drain);
	if ((err == 0) != ok)
		fail_at(ok ? "alloc failed where the model has an item" :
			     "alloc succeeded where the model has none");
	if (ref_free(&src) != v.src) {
		fprintf(stderr, "source %llu, model %llu (lean %lld)\n",
			(unsigned long long)ref_free(&src), (unsigned long long)v.src,
			(long long)lean_left);
		fail_at("alloc took other than the model's count from the source");
	}
	if (cpu < NCPUS) {
		ops_lo[cpu]++;
		ops_hi[cpu] += drain ? 2 : 1;
	}
	if (err == 0) {
		take(it);
		return;
	}
	if (err != CAIRN_ENOMEM)
		fail_at("alloc error");
	struct cairn_mag_stats ms;
	cairn_mag_stats(mc, &ms);
	struct cairn_mag_cpu_stats st = { 0 };
	if (cpu < NCPUS)
		cairn_mag_cpu_stats(mc, cpu, &st);
	/* a CPU outside the cache's slots only asks the source (try_alloc) */
	bool outside = cpu >= NCPUS && !drain;
	if (ref_free(&src) || (!outside && (ms.depot_full || st.held)))
		fail_at("ENOMEM while the source, the depot or this CPU has items");
}

static void do_free(void)
{
	if (!nuser)
		return;
	unsigned i = below(nuser);
	uint64_t it = user[i];
	user[i] = user[--nuser];
	is_user[ref_index(&src, it)] = 0;
	struct counts was = counts();
	struct view v = look();
	answer(&v);
	/* both magazines full and the depot at its limit: a full magazine
	 * goes back to the source, and the cache is lean no more */
	if (cpu < NCPUS && v.mags == 2 && v.held == 2ull * mag_size &&
	    v.depot_full == depot_full)
		lean_left = 0;
	cairn_mag_free(mc, it);
	check_counted(&was, false);
	if (cpu < NCPUS) {
		ops_lo[cpu]++;
		ops_hi[cpu]++;
	}
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	uint64_t ops = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000;
	rng = seed;
	REQUIRE(cairn_host_init(NCPUS + 1, 0, 8 * MiB) == 0);

	/* A small frame allocator for the magazines: 3..40 frames. */
	uint64_t nfr = 3 + below(38);
	struct cairn_mem_range map[] = { { 1 * MiB, nfr * CAIRN_FRAME_SIZE } };
	size_t meta = cairn_frames_meta_size(map, 1, NCPUS + 1);
	struct cairn_frames_config fcfg = { .ncpus = NCPUS + 1, .meta = aligned_alloc(64, (meta + 63) & ~63ull),
					    .meta_size = meta };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	frames_total = frames_free_total(frames);

	mag_size = 1 + below(16);
	depot_full = 1 + below(6);
	depot_empty = 1 + below(6);
	ref_init(&src, N);
	static _Alignas(64) unsigned char mem[8192];
	struct cairn_mag_config cfg = {
		.source = ref_as_source(&src), .frames = frames, .ncpus = NCPUS,
		.mag_size = mag_size, .refill = refill = 1 + below(mag_size),
		.depot_full = depot_full, .depot_empty = depot_empty,
		.drain_wait = 1, /* nobody else runs: do not wait for answers */
		.mem = mem, .mem_size = sizeof(mem),
	};
	REQUIRE(cairn_mag_create(&mc, &cfg) == 0);
	printf("seed %llu: %llu magazine frames, mag_size %u, refill %u, depot %u/%u\n",
	       (unsigned long long)seed, (unsigned long long)nfr, mag_size, cfg.refill,
	       depot_full, depot_empty);
	REQUIRE(cairn_host_cpu_bind(0) == 0);

	for (op = 0; op < ops; op++) {
		unsigned x = below(1000);
		if (x < 330) {
			do_alloc(below(2));
		} else if (x < 700) {
			do_free();
		} else if (x < 760) { /* a burst of allocations, or of frees */
			unsigned n = below(3 * mag_size + 2);
			bool al = below(2);
			for (unsigned i = 0; i < n; i++)
				al ? do_alloc(false) : do_free();
		} else if (x < 900) { /* move to another CPU (NCPUS: outside) */
			cairn_host_cpu_unregister();
			cpu = below(NCPUS + 1);
			REQUIRE(cairn_host_cpu_bind(cpu) == 0);
		} else if (x < 930) {
			unsigned c = below(NCPUS);
			CHECK_EQ(cairn_mag_drain_cpu(mc, c), 0);
			asked[c] = false;
			struct cairn_mag_cpu_stats st;
			cairn_mag_cpu_stats(mc, c, &st);
			if (st.held || st.magazines)
				fail_at("drained CPU still holds something");
		} else if (x < 950) {
			struct view v = look();
			predict_drain(&v);
			cairn_mag_drain_all(mc);
			if (ref_free(&src) != v.src)
				fail_at("drain_all gave back other than the model's count");
			struct cairn_mag_stats ms;
			cairn_mag_stats(mc, &ms);
			if (ms.depot_full || ms.depot_empty)
				fail_at("depot not empty after drain_all");
		} else {
			struct view v = look();
			answer(&v);
			cairn_mag_poll(mc);
		}
		check_state();
	}
	while (nuser)
		do_free();
	cairn_mag_destroy(mc);
	CHECK_EQ(ref_free(&src), N);
	CHECK_EQ(frames_free_total(frames), frames_total);
	CHECK_EQ(src.errors, 0);
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("mag_model");
}
