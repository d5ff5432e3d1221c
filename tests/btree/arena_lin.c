/* SPDX-License-Identifier: MIT */
/*
 * Linearizability check of many short concurrent histories.
 *
 * Each round builds a small arena (tiny tree nodes, so a handful of
 * extents spans several leaves and levels), identically in the sequential
 * model, then 3 or 4 threads run a few operations each (allocations with
 * every policy, frees, reserves, lookups) against it at once. Even rounds
 * draw the operations at random; odd rounds aim them at the races of the
 * one-leaf fast path (make_aimed), with one thread paused mid-operation.
 * Every operation records its call and return times on a shared clock and
 * its result. The history must then have a linearization: an order that
 * respects real time (an operation that returned before another was called
 * comes first) in which the model, run sequentially, returns exactly the
 * recorded results and ends in exactly the tree's final state. The search
 * tries every admissible order.
 *
 * The library under test is built with CAIRN_BTREE_TEST_YIELD: the tree
 * yields or spins at random between optimistic reads and validation,
 * before lock upgrades, and in split and recycle paths, so that two cores
 * reach the interleavings that matter; the test's hook (below) adds the
 * pauses of aimed rounds.
 *
 * usage: arena_lin rounds threads seed
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

#include "env.h"
#include "model.h"
#include "yield.h"

#define OPS 3
#define MAXT 4
#define SPAN 2048

enum { OP_ALLOC, OP_FREE, OP_FREE_MINE, OP_RESERVE, OP_LOOKUP };

struct op {
	int kind;
	uint64_t size, align, addr, cookie;
	enum cairn_fit pol;
	/* results */
	int rc;
	uint64_t out, s, n, c;
	uint64_t inv, resp;
};

static struct cairn_arena arena;
static struct op ops[MAXT][OPS];
static unsigned nthreads;
static pthread_barrier_t start, done;
static atomic_uint_fast64_t clock_;
static atomic_bool stop;

/*
 * The tree's yield hook (the library is built with CAIRN_BTREE_TEST_YIELD):
 * yield or spin at random, as yield.c does. In aimed rounds one thread also
 * stops at one chosen yield point of its first operation (between its
 * optimistic reads and its lock, most often) until the other threads have
 * finished pause_ops more operations (writes, if pause_writes), or all of
 * theirs, or a millisecond has passed (it may hold a lock they wait for).
 * The window that a random yield opens only now and then, others
 * committing in the middle of a read-plan-lock, opens in every aimed round.
 */
static atomic_uint finished[2]; /* operations, writes returned this round */
static bool pause_writes;	/* count only writes */
static _Thread_local uint64_t yseed;
static _Thread_local int pause_at = -1; /* yield points left before it */
static unsigned pause_thread, pause_point, pause_ops;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cairn_btree_test_yield(void);

void cairn_btree_test_yield(void)
{
	if (pause_at >= 0 && pause_at-- == 0) {
		atomic_uint *f = &finished[pause_writes];
		unsigned target = atomic_load(f) + pause_ops;
		uint64_t until = now_ns() + 1000000;
		while (atomic_load(f) < target && now_ns() < until &&
		       atomic_load(&finished[0]) < (nthreads - 1) * OPS)
			sched_yield();
		return;
	}
	random_yield(&yseed);
}

static void run(struct op *o, struct op *prev_alloc)
{
	if (o->kind == OP_FREE_MINE) {
		if (prev_alloc && prev_alloc->rc == 0) {
			o->addr = prev_alloc->out;
			o->size = prev_alloc->size;
		}
		o->kind = OP_FREE;
	}
	o->inv = atomic_fetch_add(&clock_, 1);
	switch (o->kind) {
	case OP_ALLOC:
		o->rc = cairn_arena_xalloc(&arena, o->size, o->align, 0, 0, 0, 0,
					   o->pol, o->cookie, &o->out);
		break;
	case OP_FREE:
		o->rc = cairn_arena_free(&arena, o->addr, o->size);
		break;
	case OP_RESERVE:
		o->rc = cairn_arena_reserve(&arena, o->addr, o->size, o->cookie);
		break;
	case OP_LOOKUP:
		o->rc = cairn_arena_lookup(&arena, o->addr, &o->s, &o->n, &o->c);
		break;
	}
	o->resp = atomic_fetch_add(&clock_, 1);
	pause_at = -1;
	atomic_fetch_add(&finished[0], 1);
	if (o->kind != OP_LOOKUP)
		atomic_fetch_add(&finished[1], 1);
}

static void *worker(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	cairn_host_cpu_register();
	for (;;) {
		pthread_barrier_wait(&start);
		if (atomic_load(&stop))
			break;
		struct op *last = NULL;
		if (t == pause_thread)
			pause_at = (int)pause_point;
		for (unsigned i = 0; i < OPS; i++) {
			run(&ops[t][i], last);
			if (ops[t][i].kind == OP_ALLOC)
				last = &ops[t][i];
		}
		pthread_barrier_wait(&done);
	}
	cairn_host_cpu_unregister();
	return NULL;
}

/* ---- the search for a linearization ---- */

static struct op *flat[MAXT * OPS];
static unsigned nflat;
static struct mext saved[MAXT * OPS + 1][256];
static unsigned saved_n[MAXT * OPS + 1];
static bool placed[MAXT * OPS];

/* Run o on the model; does it give the recorded result? */
static bool replay(const struct op *o)
{
	uint64_t x = 0;
	int rc;
	switch (o->kind) {
	case OP_ALLOC:
		rc = m_xalloc(o->size, o->align, 0, 0, 0, 0, (int)o->pol,
			      o->cookie, &x);
		return rc == o->rc && (rc || x == o->out);
	case OP_FREE:
		return m_free(o->addr, o->size) == o->rc;
	case OP_RESERVE:
		return m_reserve(o->addr, o->size, o->cookie) == o->rc;
	default: {
		int i = m_find(o->addr);
		rc = i < 0 ? CAIRN_ERANGE : is_free(&m[i]) ? CAIRN_EFREE : 0;
		if (rc != o->rc)
			return false;
		return rc || (o->s == m[i].start && o->n == m[i].len &&
			      o->c == m[i].cookie);
	}
	}
}

static bool tree_equals_model(void)
{
	return m_same(&arena.tree, false);
}

static bool search(unsigned depth)
{
	if (depth == nflat)
		return tree_equals_model();
	REQUIRE(nm <= 256);
	memcpy(saved[depth], m, nm * sizeof(m[0]));
	saved_n[depth] = nm;
	for (unsigned j = 0; j < nflat; j++) {
		if (placed[j])
			continue;
		bool ok = true; /* nothing unplaced returned before j began */
		for (unsigned i = 0; i < nflat && ok; i++)
			if (!placed[i] && i != j && flat[i]->resp < flat[j]->inv)
				ok = false;
		if (!ok)
			continue;
		placed[j] = true;
		bool good = replay(flat[j]) && search(depth + 1);
		placed[j] = false;
		if (good)
			return true;
		nm = saved_n[depth];
		memcpy(m, saved[depth], nm * sizeof(m[0]));
	}
	return false;
}

static void dump_history(void)
{
	static const char *names[] = { "alloc", "free", "free-mine", "reserve", "lookup" };
	for (unsigned i = 0; i < nflat; i++) {
		const struct op *o = flat[i];
		fprintf(stderr, "  [%llu,%llu] %s size %#llx align %#llx pol %d addr %#llx -> rc %d out %#llx s %#llx n %#llx\n",
			(unsigned long long)o->inv, (unsigned long long)o->resp,
			names[o->kind], (unsigned long long)o->size,
			(unsigned long long)o->align, o->pol,
			(unsigned long long)o->addr, o->rc,
			(unsigned long long)o->out, (unsigned long long)o->s,
			(unsigned long long)o->n);
	}
}

/* ---- rounds ---- */

static uint64_t seed;

static uint64_t rnd_below(uint64_t n)
{
	return splitmix(&seed) % n;
}

static void both_alloc(uint64_t size, uint64_t cookie)
{
	uint64_t x, y;
	int r = cairn_arena_xalloc(&arena, size, 0, 0, 0, 0, 0, CAIRN_FIT_FIRST,
				   cookie, &x);
	int s = m_xalloc(size, 0, 0, 0, 0, 0, CAIRN_FIT_FIRST, cookie, &y);
	REQUIRE(r == s && (r || x == y));
}

static void make_op(struct op *o, unsigned t)
{
	*o = (struct op){ 0 };
	o->cookie = splitmix(&seed) | 1;
	o->size = (rnd_below(4) + 1) * Q;
	unsigned k = (unsigned)rnd_below(10);
	if (k < 4) {
		o->kind = OP_ALLOC;
		o->pol = (enum cairn_fit)rnd_below(3);
		o->align = rnd_below(3) == 0 ? Q << rnd_below(3) : 0;
	} else if (k < 7) {
		o->kind = rnd_below(2) ? OP_FREE_MINE : OP_FREE;
		if (nm) { /* an allocated extent of the initial state */
			const struct mext *e = &m[rnd_below(nm)];
			o->addr = e->start;
			o->size = e->len;
		}
	} else if (k < 8) {
		o->kind = OP_RESERVE;
		o->addr = rnd_below(SPAN / Q) * Q;
	} else {
		o->kind = OP_LOOKUP;
		o->addr = rnd_below(SPAN + 64);
	}
	(void)t;
}

/*
 * Aimed histories, for the races of the one-leaf fast path.
 *
 * A first-fit alloc of size s targets the free extent T (the model's first
 * fit), and s is chosen so that freeing an allocated extent X below T
 * (merged with its free neighbours) makes room for it: thread 1 frees X and
 * then looks T up, and an observer looks X and T up. An alloc that commits
 * a fit found before the free, after the free and such a lookup, cannot be
 * linearized: the fit search's answer depends on the ancestors' gap maxima,
 * so the whole path must validate before the write.
 *
 * The other writers free, reserve in or allocate from a few adjacent
 * extents (around T, or the last ones before the long free tail, whose leaf
 * keeps its gap maximum through such changes): two writers meet in one
 * leaf, the path above it unchanged, and the one that loses retries on the
 * leaf with its slots shifted; the retry must find its slot again.
 *
 * One thread (the alloc, or any other) pauses inside its first operation
 * (see the yield hook), and every thread's first operation is its racing
 * one: the threads leave the barrier together.
 */
static uint64_t hot[4];

/* A write on one of the nr extents indexed by r; a free or a reserve (an
 * update by address) if at */
static void aimed_writer(struct op *o, const unsigned *r, unsigned nr, bool at)
{
	const struct mext *e = &m[r[rnd_below(nr)]];
	unsigned k = (unsigned)rnd_below(at ? 7 : 8);
	if (!is_free(e) && k < 5) {
		o->kind = OP_FREE;
		o->addr = e->start;
		o->size = e->len;
	} else if (is_free(e) || at) {
		o->kind = OP_RESERVE;
		o->size = Q;
		o->addr = e->start + rnd_below(e->len / Q) * Q;
	} else {
		o->kind = OP_ALLOC;
		o->pol = CAIRN_FIT_FIRST;
		o->size = (rnd_below(4) + 1) * Q;
	}
}

static void make_aimed(bool leaf)
{
	/* X and s: freeing X leaves a free extent of h >= s where every free
	 * extent below it is shorter than s */
	unsigned cand[MAXEXT / 8], nc = 0, xi = nm;
	uint64_t below = 0, s = 0;
	for (unsigned i = 0; i < nm && nc < MAXEXT / 8; i++) {
		if (is_free(&m[i])) {
			below = m[i].len > below ? m[i].len : below;
			continue;
		}
		uint64_t h = m[i].len + (i > 0 && is_free(&m[i - 1]) ? m[i - 1].len : 0) +
			     (i + 1 < nm && is_free(&m[i + 1]) ? m[i + 1].len : 0);
		if (h > below && i + 2 < nm)
			cand[nc++] = i;
	}
	/* T: preferably a few extents above X (another leaf, likely) and with
	 * a free extent as long after it, nearby: the alloc then keeps its
	 * leaf's gap maximum and locks the leaf alone, and only the path
	 * validation sees the free */
	unsigned ti = 0;
	for (unsigned tries = 0; tries < 16; tries++) {
		if (nc) {
			xi = cand[rnd_below(nc)];
			uint64_t lo = 0, h = m[xi].len;
			for (unsigned i = 0; i < xi; i++)
				if (is_free(&m[i]) && m[i].len > lo)
					lo = m[i].len;
			if (xi > 0 && is_free(&m[xi - 1]))
				h += m[xi - 1].len;
			if (is_free(&m[xi + 1]))
				h += m[xi + 1].len;
			s = lo + Q + rnd_below((h - lo) / Q) * Q;
		} else {
			s = (rnd_below(4) + 1) * Q;
		}
		ti = 0;
		while (ti < nm && !(is_free(&m[ti]) && m[ti].len >= s))
			ti++;
		if (ti == nm)
			continue; /* longer than the tail */
		bool keeps = false;
		for (unsigned j = ti + 1; j < nm && j < ti + 4; j++)
			keeps |= is_free(&m[j]) && m[j].len >= m[ti].len;
		if (keeps && ti >= xi + 4)
			break;
	}
	if (ti == nm) { /* the tail is at least 4 quanta long */
		s = Q;
		for (ti = 0; !(is_free(&m[ti]) && m[ti].len >= s); ti++)
			;
	}
	if (xi == nm)
		xi = ti;

	/* the writers' extents: around T, or the last ones before the tail */
	unsigned r[8], nr = 0;
	unsigned from = leaf && rnd_below(3) ? (nm > 5 ? nm - 5 : 0)
					     : (ti > 3 ? ti - 3 : 0);
	for (unsigned i = from; i + 1 < nm && nr < 6; i++)
		r[nr++] = i;
	if (!nr)
		r[nr++] = ti;
	hot[0] = m[ti].start;
	hot[1] = m[xi].start;
	hot[2] = m[r[rnd_below(nr)]].start;
	hot[3] = leaf ? m[r[rnd_below(nr)]].start : m[ti].start + s;

	/* who pauses (the alloc, or a writer that then waits for another in
	 * its leaf), at which yield point, for how many writes of the others */
	pause_thread = leaf ? 1 + (unsigned)rnd_below(nthreads - 1) : 0;
	pause_point = leaf ? 1 + (unsigned)rnd_below(5) : (unsigned)rnd_below(3);
	pause_writes = leaf;
	pause_ops = leaf ? 1 + (unsigned)rnd_below(2) : 2 + (unsigned)rnd_below(3);
	bool observer = rnd_below(3) == 0;
	for (unsigned t = 0; t < nthreads; t++)
		for (unsigned i = 0; i < OPS; i++) {
			struct op *o = &ops[t][i];
			*o = (struct op){ 0 };
			o->cookie = splitmix(&seed) | 1;
			o->kind = OP_LOOKUP;
			o->addr = hot[rnd_below(4)];
			if (t == 0 && (i == 0 || rnd_below(4) == 0)) {
				o->kind = OP_ALLOC;
				o->pol = CAIRN_FIT_FIRST;
				o->size = i == 0 ? s : (rnd_below(4) + 1) * Q;
			} else if (leaf && (i == 0 || rnd_below(4) == 0)) {
				aimed_writer(o, r, nr, t == pause_thread && i == 0);
			} else if (leaf) {
				continue;
			} else if (t == 1 && i == 0 && !is_free(&m[xi])) {
				o->kind = OP_FREE;
				o->addr = m[xi].start;
				o->size = m[xi].len;
			} else if (t == 1) { /* after the free: T, then X */
				o->addr = hot[i == 1 ? 0 : 1];
			} else if (t == 2 && observer) { /* X, X, T */
				o->addr = hot[i == 2 ? 0 : 1];
			} else if (t >= 2 && (i == 0 || rnd_below(4) == 0)) {
				aimed_writer(o, r, nr, false);
			}
		}
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 2000;
	nthreads = argc > 2 ? (unsigned)atoi(argv[2]) : 3;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	REQUIRE(nthreads >= 2 && nthreads <= MAXT);
	Q = 16;

	env_init(nthreads + 1, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	uint64_t frames0 = env_free_frames();
	pthread_barrier_init(&start, NULL, nthreads + 1);
	pthread_barrier_init(&done, NULL, nthreads + 1);
	pthread_t th[MAXT];
	for (unsigned t = 0; t < nthreads; t++)
		REQUIRE(pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)t) == 0);

	unsigned bad = 0;
	uint64_t orders = 0, overlaps = 0;
	for (unsigned round = 0; round < rounds && bad < 3; round++) {
		/* odd rounds are aimed (make_aimed): at the fit race on
		 * leaves of 4 or 8, or at writers meeting in a leaf of 8 */
		bool aimed = round & 1, leaf = round & 2;
		unsigned fanout = aimed && (leaf || rnd_below(2)) ? 8 : 4;
		struct cairn_arena_config cfg = { .quantum = Q, .fanout = fanout };
		REQUIRE(cairn_arena_create(&arena, env_frames, 0, SPAN, &cfg) == 0);
		nm = 0;
		REQUIRE(m_add(0, SPAN) == 0);
		/* a random initial state over several leaves */
		unsigned n = 8 + (unsigned)rnd_below(24);
		for (unsigned i = 0; i < n; i++)
			both_alloc((rnd_below(4) + 1) * Q, splitmix(&seed) | 1);
		for (unsigned i = 0; i < n / 3; i++) {
			const struct mext *e = &m[rnd_below(nm)];
			if (is_free(e))
				continue;
			uint64_t a = e->start, s = e->len;
			REQUIRE(cairn_arena_free(&arena, a, s) == m_free(a, s));
		}
		REQUIRE(tree_equals_model());

		nflat = 0;
		atomic_store(&finished[0], 0);
		atomic_store(&finished[1], 0);
		pause_thread = MAXT;
		if (aimed)
			make_aimed(leaf);
		for (unsigned t = 0; t < nthreads; t++)
			for (unsigned i = 0; i < OPS; i++) {
				if (!aimed)
					make_op(&ops[t][i], t);
				flat[nflat++] = &ops[t][i];
			}
		/* keep only allocated extents as free targets from the model */
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&done);

		CHECK_EQ(cairn_arena_validate(&arena), 0);
		if (!search(0)) {
			bad++;
			fprintf(stderr, "round %u: no linearization\n", round);
			dump_history();
		}
		orders++;
		for (unsigned i = 0; i < nflat; i++)
			for (unsigned j = 0; j < nflat; j++)
				if (i / OPS != j / OPS && flat[i]->inv < flat[j]->inv &&
				    flat[j]->inv < flat[i]->resp)
					overlaps++;
		cairn_arena_destroy(&arena);
	}
	atomic_store(&stop, true);
	pthread_barrier_wait(&start);
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	CHECK_EQ(bad, 0);
	CHECK_EQ(env_free_frames(), frames0);
	printf("arena_lin: %llu histories of %u threads x %u ops linearizable, "
	       "%llu overlapping pairs of operations\n",
	       (unsigned long long)orders, nthreads, OPS,
	       (unsigned long long)overlaps);
	CHECK(overlaps > orders); /* the threads did run at once */
	return check_done("arena_lin");
}
