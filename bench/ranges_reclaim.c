/* SPDX-License-Identifier: MIT */
/*
 * bench-ranges-reclaim: how should the tree reclaim nodes?
 *
 * The same tree (built with CAIRN_BTREE_RECLAIM_HOOK) under heavy split and
 * merge churn (small nodes; every thread allocates a batch of ranges at
 * random places, then frees them) with three ways of retiring an emptied
 * node:
 *   cairn  the tree-local free list (what ships): nodes are reused at
 *          once, their version words keep stale readers out;
 *   rcu    liburcu (membarrier flavour): every operation is a read-side
 *          critical section, a retired node goes to call_rcu and its frame
 *          back to the frame allocator after a grace period;
 *   epoch  Concurrency Kit's ck_epoch: every operation is an epoch section,
 *          retired nodes go to ck_epoch_call, polled after each batch.
 * Reported: operations per second and the peak number of node frames held.
 *
 * usage: bench-ranges-reclaim [harness options] [--time MS]
 */
#define _GNU_SOURCE
#include <cairn/arena.h>
#include <cairn/host.h>

#include "harness.h"

#include <ck_epoch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/urcu-memb.h>

#define Q 4096ull
#define BASE (1ull << 40)
#define SPAN (1ull << 32)
#define BATCH 64
#define FANOUT 8

enum mode { M_CAIRN, M_RCU, M_EPOCH };
static const char *mode_name[] = { "cairn", "rcu", "epoch" };

static enum mode mode;
static struct cairn_frames *frames;
static struct cairn_arena arena;
static atomic_bool go, stop;
static atomic_uint ready;
static _Atomic uint64_t peak;
static double run_ms = 300;
static struct bench_opts opts;

/* ---- retiring through RCU: call_rcu's thread is no cairn CPU, so the
 * frames it hands back are freed by the workers (on their own CPU) ---- */

struct rnode {
	struct rcu_head head;
	void *node;
	struct rnode *next;
};
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rnode *done_list;

static void rcu_done(struct rcu_head *h)
{
	struct rnode *r = caa_container_of(h, struct rnode, head);
	pthread_mutex_lock(&done_lock);
	r->next = done_list;
	done_list = r;
	pthread_mutex_unlock(&done_lock);
}

static void give_back(void *node)
{
	cairn_frames_free(frames, cairn_port_virt_to_phys(node), 0);
	atomic_fetch_sub_explicit(&arena.tree.nodes, 1, memory_order_relaxed);
}

static void drain_done(void)
{
	pthread_mutex_lock(&done_lock);
	struct rnode *r = done_list;
	done_list = NULL;
	pthread_mutex_unlock(&done_lock);
	while (r) {
		struct rnode *next = r->next;
		give_back(r->node);
		free(r);
		r = next;
	}
}

/* ---- retiring through epochs ---- */

static ck_epoch_t epoch;
static _Thread_local ck_epoch_record_t *my_record;

struct enode {
	ck_epoch_entry_t entry;
	void *node;
};
CK_EPOCH_CONTAINER(struct enode, entry, enode_of)

static void epoch_done(ck_epoch_entry_t *e)
{
	struct enode *x = enode_of(e);
	give_back(x->node);
	free(x);
}

bool cairn_btree_reclaim_hook(struct cairn_btree *t, void *node);
bool cairn_btree_reclaim_hook(struct cairn_btree *t, void *node)
{
	(void)t;
	if (mode == M_RCU) {
		struct rnode *r = malloc(sizeof(*r));
		r->node = node;
		urcu_memb_call_rcu(&r->head, rcu_done);
		return true;
	}
	if (mode == M_EPOCH) {
		struct enode *x = malloc(sizeof(*x));
		x->node = node;
		ck_epoch_call(my_record, &x->entry, epoch_done);
		return true;
	}
	return false;
}

/* ---- the workload ---- */

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct section {
	ck_epoch_section_t es;
};

static void enter(struct section *s)
{
	if (mode == M_RCU)
		urcu_memb_read_lock();
	else if (mode == M_EPOCH)
		ck_epoch_begin(my_record, &s->es);
}

static void leave(struct section *s)
{
	if (mode == M_RCU)
		urcu_memb_read_unlock();
	else if (mode == M_EPOCH)
		ck_epoch_end(my_record, &s->es);
}

struct worker {
	pthread_t th;
	uint64_t seed, ops;
	bool failed;
};

static void note_peak(void)
{
	uint64_t n = atomic_load_explicit(&arena.tree.nodes, memory_order_relaxed);
	uint64_t p = atomic_load(&peak);
	while (n > p && !atomic_compare_exchange_weak(&peak, &p, n))
		;
}

static void *worker(void *arg)
{
	struct worker *w = arg;
	if (cairn_host_cpu_register() < 0)
		w->failed = true;
	if (mode == M_RCU)
		urcu_memb_register_thread();
	if (mode == M_EPOCH) {
		my_record = malloc(sizeof(*my_record));
		ck_epoch_register(&epoch, my_record, NULL);
	}
	atomic_fetch_add(&ready, 1);
	while (!atomic_load_explicit(&go, memory_order_acquire))
		;
	uint64_t ops = 0, addr[BATCH], size[BATCH];
	struct section s;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned n = 0;
		for (unsigned k = 0; k < BATCH; k++) {
			uint64_t r = rng(&w->seed);
			size[n] = (r % 4 + 1) * Q;
			uint64_t lo = BASE + ((r >> 8) % (SPAN / Q)) * Q;
			enter(&s);
			int e = cairn_arena_xalloc(&arena, size[n], 0, 0, 0, lo, 0,
						   CAIRN_FIT_FIRST, r, &addr[n]);
			leave(&s);
			n += e == 0;
		}
		for (unsigned k = 0; k < n; k++) {
			enter(&s);
			if (cairn_arena_free(&arena, addr[k], size[k]))
				w->failed = true;
			leave(&s);
		}
		ops += BATCH + n;
		note_peak();
		if (mode == M_RCU)
			drain_done();
		else if (mode == M_EPOCH)
			ck_epoch_poll(my_record);
	}
	w->ops = ops;
	if (mode == M_RCU)
		urcu_memb_unregister_thread();
	if (mode == M_EPOCH)
		ck_epoch_barrier(my_record);
	cairn_host_cpu_unregister();
	return NULL;
}

static double run(unsigned threads)
{
	struct worker w[BENCH_MAX_THREADS];
	atomic_store(&go, false);
	atomic_store(&stop, false);
	atomic_store(&ready, 0);
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ .seed = 4242 * (i + 1) };
		pthread_create(&w[i].th, NULL, worker, &w[i]);
	}
	while (atomic_load(&ready) < threads)
		;
	uint64_t t0 = bench_now_ns();
	atomic_store_explicit(&go, true, memory_order_release);
	while (bench_now_ns() - t0 < (uint64_t)(run_ms * 1e6))
		;
	atomic_store(&stop, true);
	uint64_t ops = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].th, NULL);
		ops += w[i].ops;
		BENCH_CHECK(!w[i].failed, "a worker failed");
	}
	double rate = ops / ((bench_now_ns() - t0) * 1e-9);
	if (mode == M_RCU) {
		urcu_memb_barrier();
		drain_done();
	}
	return rate;
}

static bool set_time(const char *v)
{
	run_ms = atof(v);
	return run_ms > 0;
}

int main(int argc, char **argv)
{
	static const struct bench_option extra[] = {
		{ "time", true, "milliseconds per run (default 300)", set_time },
		{ 0 }
	};
	bench_parse(&opts, argc, argv, extra);
	if (opts.quick)
		run_ms = 20;
	unsigned maxt = 1;
	for (unsigned i = 0; i < opts.nthreads; i++)
		maxt = opts.threads[i] > maxt ? opts.threads[i] : maxt;
	BENCH_CHECK(cairn_host_init(maxt + 1, 0, 1024ull << 20) == 0, "host init");
	struct cairn_mem_range map[] = { { 1 << 20, (1024ull << 20) - (1 << 20) } };
	struct cairn_frames_config fc = { .ncpus = maxt + 1 };
	BENCH_CHECK(cairn_frames_init(&frames, map, 1, &fc) == 0, "frames init");
	ck_epoch_init(&epoch);

	bench_header(&opts, "bench-ranges-reclaim: tree node reclamation under "
		     "split/merge churn (fanout 8)",
		     "ops/s of all threads together, median of the runs; peak "
		     "node frames held (largest of the runs)");
	if (!opts.json) {
		printf("%-6s %-6s", "test", "impl");
		for (unsigned k = 0; k < opts.nthreads; k++)
			printf(" %10u thr", opts.threads[k]);
		printf("   peak node frames\n");
	}
	for (unsigned m = 0; m < 3; m++) {
		mode = (enum mode)m;
		if (!bench_selected(opts.impls, mode_name[m]))
			continue;
		if (!opts.json)
			printf("%-6s %-6s", "churn", mode_name[m]);
		uint64_t pk[BENCH_MAX_LIST];
		for (unsigned k = 0; k < opts.nthreads; k++) {
			struct bench_samples sm = { .n = 0 };
			pk[k] = 0;
			for (unsigned r = 0; r < opts.runs; r++) {
				struct cairn_arena_config cfg = { .quantum = Q,
								  .fanout = FANOUT };
				BENCH_CHECK(cairn_arena_create(&arena, frames, BASE,
							       SPAN, &cfg) == 0,
					    "arena create");
				atomic_store(&peak, 0);
				bench_sample(&sm, run(opts.threads[k]));
				if (atomic_load(&peak) > pk[k])
					pk[k] = atomic_load(&peak);
				BENCH_CHECK(cairn_arena_validate(&arena) == 0,
					    "arena invalid");
				cairn_arena_destroy(&arena);
			}
			double med = bench_median(&sm);
			if (opts.json)
				printf("{\"suite\": \"ranges\", \"test\": \"churn\", "
				       "\"impl\": \"%s\", \"threads\": %u, "
				       "\"extents\": 0, \"ops_per_s\": %.0f, "
				       "\"peak_node_frames\": %llu}\n",
				       mode_name[m], opts.threads[k], med,
				       (unsigned long long)pk[k]);
			else
				printf(" %14.0f", med);
			fflush(stdout);
		}
		if (!opts.json) {
			printf("   ");
			for (unsigned k = 0; k < opts.nthreads; k++)
				printf("%s%llu", k ? "/" : "", (unsigned long long)pk[k]);
			printf("\n");
		}
	}
	return 0;
}
