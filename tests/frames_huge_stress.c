/* SPDX-License-Identifier: MIT */
/*
 * The huge paths under contention, with an exact oracle.
 *
 * Worker threads (each a CPU) allocate 2 MiB blocks in bulk
 * (alloc_bulk_huge) and one at a time (the order-9 short path), blocks of
 * 4 and 8 MiB, 2 MiB blocks aligned to 4 and 8 MiB, blocks at fixed
 * places (alloc_at of orders 9 and 10), and small blocks (orders 0..3,
 * freed at once or kept) that compete for the same chunk entries; they
 * free singly, in huge bulk batches (whole, or stopped by an address that
 * is no block: misaligned, or outside every region, which must be refused
 * with its error, the blocks before it freed and the rest untouched), and
 * hand blocks to each other through a mailbox. Regions have partial first and last
 * chunks in two areas.
 *
 * Every block goes through the ownership oracle of stress/ (one word per
 * frame: a frame handed out twice fails a CAS); its alignment and area
 * are checked. Each round ends with an exhaustion phase: every CPU takes
 * 2 MiB blocks (bulk, then single) until none is left; then no 2 MiB
 * block may be free anywhere (statistics), and the CPUs give them back in
 * bulk. At the end every frame is free, validate passes and the
 * statistics equal those of the fresh instance.
 *
 * usage: frames_huge_stress [threads] [rounds] [ops per round] [seed]
 */
#include <cairn/frames.h>
#include <cairn/host.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stress_util.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)
#define FRAME CAIRN_FRAME_SIZE
#define HUGE (FRAME << CAIRN_HUGE_ORDER)
#define PHYS0 (1 * GiB)
#define PHYS_SIZE (3 * GiB + 64 * MiB)
#define HELD_MAX 64
#define MAILBOX 8

/* Below 4 GiB: partial chunks at both ends; above: one partial at its end. */
static const struct cairn_mem_range map[] = {
	{ 1 * GiB + 1 * MiB, 30 * MiB },
	{ 4 * GiB, 40 * MiB + 512 * 1024 },
};

struct block {
	cairn_phys_t phys;
	unsigned order;
};

static struct cairn_frames *f;
static _Atomic uint32_t *owner;
static const uint64_t first = PHYS0 >> CAIRN_FRAME_SHIFT;
static const uint64_t nframes = PHYS_SIZE >> CAIRN_FRAME_SHIFT;
static _Atomic uint64_t mailbox[MAILBOX]; /* phys | order, 0: empty */
static _Atomic unsigned errors;
static _Atomic uint64_t exhausted; /* 2 MiB blocks taken by exhaustion phases */
static struct stress_barrier barrier;
static unsigned nthreads, rounds, ops;
static uint64_t seed0;

static void fail(const char *what, cairn_phys_t p, unsigned order, long v)
{
	atomic_fetch_add(&errors, 1);
	fprintf(stderr, "frames_huge_stress: %s: %#llx order %u (%ld)\n", what,
		(unsigned long long)p, order, v);
}

/* A block handed to `me` by the allocator (me = CPU + 1). */
static void got(unsigned me, cairn_phys_t p, unsigned order, unsigned align, unsigned flags)
{
	uint64_t bad;
	uint32_t was;
	if (p & ((FRAME << align) - 1))
		fail("misaligned block", p, order, align);
	enum cairn_area a = p < (16 * MiB) ? CAIRN_AREA_LOW16M
			   : p < 4 * GiB   ? CAIRN_AREA_LOW4G
					   : CAIRN_AREA_HIGH;
	if ((flags & CAIRN_F_ANY) && !(flags & (1u << a)))
		fail("block outside its areas", p, order, flags);
	int err = stress_oracle_move(owner, first, nframes, p, order, 0, me, &bad, &was);
	if (err)
		fail("block handed out twice", bad, order, was);
}

/* Give a block `me` holds back to the oracle, before its free. */
static void let_go(unsigned me, cairn_phys_t p, unsigned order)
{
	uint64_t bad;
	uint32_t was;
	if (stress_oracle_move(owner, first, nframes, p, order, me, 0, &bad, &was))
		fail("freeing a block not held", bad, order, was);
}

struct worker {
	unsigned cpu, me;
	uint64_t rnd;
	struct block held[HELD_MAX];
	unsigned n;
	cairn_phys_t ex[512]; /* the exhaustion phase's blocks */
};

static void keep(struct worker *w, cairn_phys_t p, unsigned order)
{
	if (w->n < HELD_MAX) {
		w->held[w->n++] = (struct block){ p, order };
		return;
	}
	let_go(w->me, p, order);
	int err = cairn_frames_free(f, p, order);
	if (err)
		fail("free", p, order, err);
}

static unsigned rnd_flags(struct worker *w)
{
	static const unsigned fl[] = { 0, CAIRN_F_HIGH, CAIRN_F_LOW4G, CAIRN_F_ANY,
				       CAIRN_F_LOW4G | CAIRN_F_LOW16M };
	return fl[stress_below(&w->rnd, 5)];
}

/* Free up to 12 held order-9 blocks in one huge bulk call, cut when `bad`
 * by a block that is nobody's to free (a misaligned address, or one
 * outside every region): the call must stop there with that error, the
 * blocks before it freed and the ones after it still held. */
static void free_batch(struct worker *w, bool bad)
{
	cairn_phys_t v[HELD_MAX + 1];
	unsigned idx[HELD_MAX], k = 0;
	for (unsigned i = 0; i < w->n && k < 12; i++)
		if (w->held[i].order == CAIRN_HUGE_ORDER) {
			idx[k] = i;
			v[k++] = w->held[i].phys;
		}
	if (!k)
		return;
	unsigned cut = bad ? (unsigned)stress_below(&w->rnd, k + 1) : k;
	int want = 0;
	if (bad) {
		bool outside = stress_below(&w->rnd, 2);
		cairn_phys_t inside = v[0] + FRAME; /* a frame of a held block */
		for (unsigned j = k; j > cut; j--)
			v[j] = v[j - 1];
		v[cut] = outside ? 256 * MiB : inside;
		want = outside ? CAIRN_ERANGE : CAIRN_EALIGN;
	}
	for (unsigned j = 0; j < cut; j++)
		let_go(w->me, v[j], CAIRN_HUGE_ORDER);
	size_t done = ~(size_t)0;
	int err = cairn_frames_free_bulk_huge(f, v, k + bad, &done);
	if (err != want || done != cut)
		fail("free_bulk_huge", v[0], k, err != want ? err : (long)done - (long)cut);
	/* the blocks after the cut are still ours: free them one by one */
	for (unsigned j = cut + 1; bad && j <= k; j++) {
		let_go(w->me, v[j], CAIRN_HUGE_ORDER);
		int e = cairn_frames_free(f, v[j], CAIRN_HUGE_ORDER);
		if (e)
			fail("free after a stopped bulk free", v[j], CAIRN_HUGE_ORDER, e);
	}
	/* drop the batch from held[], highest index first */
	while (k--)
		w->held[idx[k]] = w->held[--w->n];
}

static void step(struct worker *w)
{
	cairn_phys_t p, v[8];
	unsigned flags = rnd_flags(w);
	switch (stress_below(&w->rnd, 12)) {
	case 0: case 1: { /* bulk */
		size_t n = cairn_frames_alloc_bulk_huge(f, flags, v, 1 + stress_below(&w->rnd, 8));
		for (size_t i = 0; i < n; i++) {
			got(w->me, v[i], 9, 9, flags);
			keep(w, v[i], 9);
		}
		break;
	}
	case 2: /* the short path */
		if (!cairn_frames_alloc(f, 9, flags & CAIRN_F_ANY, &p)) {
			got(w->me, p, 9, 9, flags);
			keep(w, p, 9);
		}
		break;
	case 3: { /* 4 and 8 MiB, or 2 MiB aligned to them */
		unsigned k = 9 + (unsigned)stress_below(&w->rnd, 3);
		unsigned a = k + (unsigned)stress_below(&w->rnd, 12 - k);
		if (!cairn_frames_alloc_aligned(f, k, a, flags, &p)) {
			got(w->me, p, k, a, flags);
			keep(w, p, k);
		}
		break;
	}
	case 4: { /* at a fixed place: somewhere in a region, or not */
		unsigned k = 9 + (unsigned)stress_below(&w->rnd, 2);
		const struct cairn_mem_range *m = &map[stress_below(&w->rnd, 2)];
		p = (m->base + stress_below(&w->rnd, m->size + 4 * MiB)) & ~((FRAME << k) - 1);
		int err = cairn_frames_alloc_at(f, p, k);
		if (!err) {
			got(w->me, p, k, k, 0);
			keep(w, p, k);
		} else if (err != CAIRN_EBUSY && err != CAIRN_ERANGE) {
			fail("alloc_at", p, k, err);
		}
		break;
	}
	case 5: case 6: { /* small blocks in the same chunks */
		unsigned k = (unsigned)stress_below(&w->rnd, 4);
		if (!cairn_frames_alloc(f, k, flags & CAIRN_F_ANY, &p)) {
			got(w->me, p, k, k, flags);
			if (stress_below(&w->rnd, 2))
				keep(w, p, k);
			else {
				let_go(w->me, p, k);
				int err = cairn_frames_free(f, p, k);
				if (err)
					fail("free", p, k, err);
			}
		}
		break;
	}
	case 7: case 8: { /* free one held block */
		if (!w->n)
			break;
		unsigned i = (unsigned)stress_below(&w->rnd, w->n);
		struct block b = w->held[i];
		w->held[i] = w->held[--w->n];
		let_go(w->me, b.phys, b.order);
		int err = cairn_frames_free(f, b.phys, b.order);
		if (err)
			fail("free", b.phys, b.order, err);
		break;
	}
	case 9: /* a batch, whole or cut by a double free */
		free_batch(w, stress_below(&w->rnd, 3) == 0);
		break;
	case 10: { /* the mailbox: swap one held block for what is there */
		uint64_t put = 0;
		unsigned i = 0;
		if (w->n) {
			i = (unsigned)stress_below(&w->rnd, w->n);
			put = w->held[i].phys | w->held[i].order;
			let_go(w->me, w->held[i].phys, w->held[i].order);
			w->held[i] = w->held[--w->n];
		}
		uint64_t take = atomic_exchange_explicit(&mailbox[stress_below(&w->rnd, MAILBOX)],
							 put, memory_order_acq_rel);
		if (take) {
			cairn_phys_t tp = take & ~(FRAME - 1);
			unsigned to = (unsigned)(take & (FRAME - 1));
			got(w->me, tp, to, to, 0);
			keep(w, tp, to);
		}
		break;
	}
	default: { /* is_allocated agrees with what we hold */
		if (!w->n)
			break;
		struct block b = w->held[stress_below(&w->rnd, w->n)];
		if (!cairn_frames_is_allocated(f, b.phys, b.order))
			fail("is_allocated of a held block", b.phys, b.order, 0);
		break;
	}
	}
}

/* Every CPU takes 2 MiB blocks until none is left. */
static void exhaust(struct worker *w)
{
	size_t n = 0;
	for (;;) {
		size_t want = 1 + stress_below(&w->rnd, 16);
		if (n + want > 512)
			break;
		size_t k = cairn_frames_alloc_bulk_huge(f, 0, &w->ex[n], want);
		for (size_t i = 0; i < k; i++)
			got(w->me, w->ex[n + i], 9, 9, 0);
		n += k;
		if (k < want)
			break;
	}
	cairn_phys_t p;
	while (n < 512 && !cairn_frames_alloc(f, 9, 0, &p)) {
		got(w->me, p, 9, 9, 0);
		w->ex[n++] = p;
	}
	atomic_fetch_add(&exhausted, n);
	stress_barrier_wait(&barrier, nthreads, NULL, NULL);
	if (w->cpu == 0) {
		struct cairn_frames_stats st;
		cairn_frames_stats(f, &st);
		for (unsigned a = 0; a < CAIRN_AREAS; a++)
			for (unsigned k = CAIRN_HUGE_ORDER; k <= CAIRN_MAX_ORDER; k++)
				if (st.free_blocks[a][k])
					fail("a 2 MiB block left free after exhaustion", a, k,
					     (long)st.free_blocks[a][k]);
	}
	stress_barrier_wait(&barrier, nthreads, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		let_go(w->me, w->ex[i], 9);
	size_t done;
	int err = cairn_frames_free_bulk_huge(f, w->ex, n, &done);
	if (err || done != n)
		fail("free_bulk_huge after exhaustion", n ? w->ex[0] : 0, 9, err);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	if (cairn_host_cpu_bind(w->cpu) != 0) {
		fail("cpu bind", 0, 0, w->cpu);
		return NULL;
	}
	w->me = w->cpu + 1;
	w->rnd = seed0 * 1000003 + w->cpu;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < ops; i++)
			step(w);
		stress_barrier_wait(&barrier, nthreads, NULL, NULL);
		exhaust(w);
	}
	stress_barrier_wait(&barrier, nthreads, NULL, NULL);
	/* give everything back, the mailbox too */
	while (w->n) {
		struct block b = w->held[--w->n];
		let_go(w->me, b.phys, b.order);
		int err = cairn_frames_free(f, b.phys, b.order);
		if (err)
			fail("free at the end", b.phys, b.order, err);
	}
	for (unsigned i = w->cpu; i < MAILBOX; i += nthreads) {
		uint64_t take = atomic_exchange(&mailbox[i], 0);
		if (take) {
			cairn_phys_t tp = take & ~(FRAME - 1);
			unsigned to = (unsigned)(take & (FRAME - 1));
			got(w->me, tp, to, to, 0);
			let_go(w->me, tp, to);
			int err = cairn_frames_free(f, tp, to);
			if (err)
				fail("free from the mailbox", tp, to, err);
		}
	}
	cairn_host_cpu_unregister();
	return NULL;
}

int main(int argc, char **argv)
{
	nthreads = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
	rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 4;
	ops = argc > 3 ? (unsigned)atoi(argv[3]) : 3000;
	seed0 = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	if (nthreads < 1 || nthreads > 8 || cairn_host_init(nthreads, PHYS0, PHYS_SIZE))
		return 2;
	struct cairn_frames_config cfg = { .ncpus = nthreads };
	cfg.meta_size = cairn_frames_meta_size(map, 2, nthreads);
	cfg.meta = malloc(cfg.meta_size);
	owner = calloc(nframes, sizeof(*owner));
	if (!cfg.meta || !owner || cairn_frames_init(&f, map, 2, &cfg))
		return 2;
	struct cairn_frames_stats fresh, end;
	cairn_frames_stats(f, &fresh);
	stress_barrier_init(&barrier);
	cairn_host_reports_quiet(1); /* the planted bad blocks */

	static struct worker w[8];
	pthread_t t[8];
	for (unsigned i = 0; i < nthreads; i++) {
		w[i] = (struct worker){ .cpu = i };
		if (pthread_create(&t[i], NULL, worker_main, &w[i]))
			return 2;
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	cairn_host_reports_quiet(0);

	if (cairn_frames_validate(f))
		fail("validate at the end", 0, 0, 0);
	cairn_frames_stats(f, &end);
	for (unsigned a = 0; a < CAIRN_AREAS; a++) {
		if (end.free_frames[a] != fresh.free_frames[a])
			fail("free frames at the end", a, 0,
			     (long)end.free_frames[a] - (long)fresh.free_frames[a]);
		for (unsigned k = 0; k <= CAIRN_MAX_ORDER; k++)
			if (end.free_blocks[a][k] != fresh.free_blocks[a][k])
				fail("free blocks at the end", a, k,
				     (long)end.free_blocks[a][k] - (long)fresh.free_blocks[a][k]);
	}
	for (uint64_t i = 0; i < nframes; i++)
		if (atomic_load(&owner[i]))
			fail("a frame still held at the end", (first + i) << CAIRN_FRAME_SHIFT, 0,
			     atomic_load(&owner[i]));
	unsigned e = atomic_load(&errors);
	printf("frames huge stress: %u threads, %u rounds of %u ops, seed %llu: "
	       "%llu blocks taken by exhaustion, errors %u\n", nthreads, rounds, ops,
	       (unsigned long long)seed0, (unsigned long long)atomic_load(&exhausted), e);
	return e ? 1 : 0;
}
