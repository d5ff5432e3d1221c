/* SPDX-License-Identifier: MIT */
/*
 * A slot's count word (magazine_layout.h): the loaded magazine's item count
 * and the slot's hits in one word, which a hit changes with one add. The
 * hits field carries out of the word once every 2^48 hits; no test can
 * make that many, so this one sets the field just below the top, as the
 * slot's owner, and checks that the hits go on counting across the carry,
 * on every path that adds to the word: the magazine layer's hits, the
 * frame cache's order-0 hits and its other orders' free (free_other), and
 * a swap with prev, and that the item count beside the field and the items
 * handed out are unchanged by it.
 */
#include <cairn/frame_cache.h>
#include <cairn/host.h>
#include <cairn/magazine.h>

#include "../check.h"
#include "ref_source.h"
#include "../../percpu/magazine_layout.h"
#include "../frames_total.h"

#define MiB (1024ull * 1024)
#define NCPUS 2
#define FIELD_TOP ((1ull << (64 - MAG_N_BITS)) - 1) /* the field's largest value */

static struct cairn_frames *frames;

static struct cairn_mag_cpu_stats cpu_stats(struct cairn_mag_cache *mc, unsigned cpu)
{
	struct cairn_mag_cpu_stats st;
	REQUIRE(cairn_mag_cpu_stats(mc, cpu, &st) == 0);
	return st;
}

/* As the slot's owner between operations: its hits field set to `hits`
 * (below the carry), its item count left as it is. */
static void set_hits(struct cairn_mag_cache *mc, unsigned cpu, uint64_t hits)
{
	struct mag_cpu *c = &mc->cpu[cpu];
	uint64_t w = atomic_load_explicit(&c->count, memory_order_relaxed);
	atomic_store_explicit(&c->count, (w & MAG_N_MASK) | hits << MAG_N_BITS,
			      memory_order_relaxed);
}

/* The magazine layer's hits, alloc and free, across the carry. */
static void test_mag_hits(void)
{
	struct ref_source s;
	ref_init(&s, 100);
	struct cairn_mag_cache *mc;
	struct cairn_mag_config cfg = {
		.source = ref_as_source(&s), .frames = frames, .ncpus = NCPUS,
		.mag_size = 8, .refill = 4, .depot_full = 2, .depot_empty = 2,
	};
	REQUIRE(cairn_mag_create(&mc, &cfg) == 0);
	uint64_t a, b;
	CHECK_EQ(cairn_mag_alloc(mc, &a), 0); /* a miss: 3 items left loaded */
	struct cairn_mag_cpu_stats st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, 0);
	CHECK_EQ(st.held, 3);

	/* the free's add carries: hits FIELD_TOP + 1 */
	set_hits(mc, 0, FIELD_TOP);
	CHECK_EQ(cpu_stats(mc, 0).hits, FIELD_TOP);
	cairn_mag_free(mc, a);
	st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, FIELD_TOP + 1);
	CHECK_EQ(st.held, 4);
	CHECK_EQ(st.misses, 1);
	CHECK_EQ(cairn_mag_alloc(mc, &b), 0);
	CHECK_EQ(b, a);
	st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, FIELD_TOP + 2);
	CHECK_EQ(st.held, 3);

	/* the allocation's add carries: a second wrap on top of the first */
	set_hits(mc, 0, FIELD_TOP);
	CHECK_EQ(cpu_stats(mc, 0).hits, 2 * FIELD_TOP + 1);
	cairn_mag_free(mc, a);
	CHECK_EQ(cairn_mag_alloc(mc, &b), 0);
	CHECK_EQ(b, a);
	st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, 2 * FIELD_TOP + 3);
	CHECK_EQ(st.held, 3);
	CHECK_EQ(st.misses, 1);

	/* a swap with prev is a hit too (slot_count_hit): free until loaded,
	 * full, becomes prev, take loaded's items, and the next allocation
	 * swaps in prev */
	enum { OUT = 12 };
	uint64_t it[OUT];
	it[0] = a;
	for (int i = 1; i < OUT; i++)
		CHECK_EQ(cairn_mag_alloc(mc, &it[i]), 0);
	for (int i = 0; i < OUT; i++)
		cairn_mag_free(mc, it[i]);
	struct mag_cpu *c = &mc->cpu[0];
	int k = 0;
	while (slot_n(c))
		CHECK_EQ(cairn_mag_alloc(mc, &it[k++]), 0);
	REQUIRE(c->prev->cap > 0 && c->prev->n == c->prev->cap);
	uint64_t misses = cpu_stats(mc, 0).misses;
	set_hits(mc, 0, FIELD_TOP);
	CHECK_EQ(cpu_stats(mc, 0).hits, 3 * FIELD_TOP + 2);
	CHECK_EQ(cairn_mag_alloc(mc, &it[k++]), 0);
	st = cpu_stats(mc, 0);
	CHECK_EQ(st.hits, 3 * FIELD_TOP + 3);
	CHECK_EQ(st.misses, misses);
	CHECK_EQ(st.held, c->prev->n + slot_n(c));
	while (k)
		cairn_mag_free(mc, it[--k]);

	cairn_mag_drain_all(mc);
	CHECK_EQ(cpu_stats(mc, 0).held, 0);
	cairn_mag_destroy(mc);
	CHECK_EQ(ref_free(&s), 100);
	CHECK_EQ(s.errors, 0);
}

static uint64_t fc_hits(struct cairn_fcache *fc, unsigned order)
{
	return cpu_stats(cairn_fcache_mags(fc, order), 0).hits;
}

/* The frame cache's own adds: the order-0 hits and free_other. */
static void test_fcache_hits(void)
{
	uint64_t before = frames_free_total(frames);
	struct cairn_fcache *fc;
	struct cairn_fcache_config cfg = { .ncpus = NCPUS };
	REQUIRE(cairn_fcache_create(&fc, frames, &cfg) == 0);
	for (unsigned order = 0; order <= 1; order++) {
		struct cairn_mag_cache *mc = cairn_fcache_mags(fc, order);
		cairn_phys_t p, q;
		CHECK_EQ(cairn_fcache_alloc(fc, order, 0, &p), 0); /* a miss */
		uint64_t held = cpu_stats(mc, 0).held;
		set_hits(mc, 0, FIELD_TOP);
		CHECK_EQ(cairn_fcache_free(fc, p, order), 0);
		CHECK_EQ(fc_hits(fc, order), FIELD_TOP + 1);
		CHECK_EQ(cpu_stats(mc, 0).held, held + 1);
		CHECK_EQ(cairn_fcache_alloc(fc, order, 0, &q), 0);
		CHECK_EQ(q, p);
		CHECK_EQ(fc_hits(fc, order), FIELD_TOP + 2);
		set_hits(mc, 0, FIELD_TOP);
		CHECK_EQ(cairn_fcache_free(fc, p, order), 0);
		CHECK_EQ(cairn_fcache_alloc(fc, order, 0, &q), 0);
		CHECK_EQ(q, p);
		CHECK_EQ(fc_hits(fc, order), 2 * FIELD_TOP + 3);
		CHECK_EQ(cpu_stats(mc, 0).held, held);
		CHECK_EQ(cpu_stats(mc, 0).misses, 1);
		CHECK_EQ(cairn_fcache_free(fc, p, order), 0);
	}
	cairn_fcache_destroy(fc);
	CHECK_EQ(frames_free_total(frames), before);
}

int main(void)
{
	REQUIRE(cairn_host_init(NCPUS, 0, 64 * MiB) == 0);
	struct cairn_mem_range map[] = { { 1 * MiB, 62 * MiB } };
	struct cairn_frames_config fcfg = { .ncpus = NCPUS };
	REQUIRE(cairn_frames_init(&frames, map, 1, &fcfg) == 0);
	REQUIRE(cairn_host_cpu_bind(0) == 0);
	test_mag_hits();
	test_fcache_hits();
	CHECK_EQ(cairn_frames_validate(frames), 0);
	return check_done("mag_count");
}
