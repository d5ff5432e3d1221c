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
 * usage: bench-ranges-reclaim [--json] [--time SECONDS]
 */
#define _GNU_SOURCE
#include <cairn/arena.h>
#include <cairn/host.h>

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
static double run_time = 0.5;
static bool json;

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

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double run(unsigned threads)
{
	struct worker w[8];
	atomic_store(&go, false);
	atomic_store(&stop, false);
	atomic_store(&ready, 0);
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ .seed = 4242 * (i + 1) };
		pthread_create(&w[i].th, NULL, worker, &w[i]);
	}
	while (atomic_load(&ready) < threads)
		;
	double t0 = now();
	atomic_store_explicit(&go, true, memory_order_release);
	struct timespec ts = { (time_t)run_time,
			       (long)((run_time - (time_t)run_time) * 1e9) };
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	uint64_t ops = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].th, NULL);
		ops += w[i].ops;
		if (w[i].failed) {
			fprintf(stderr, "bench-ranges-reclaim: a worker failed\n");
			exit(1);
		}
	}
	double rate = ops / (now() - t0);
	if (mode == M_RCU) {
		urcu_memb_barrier();
		drain_done();
	}
	return rate;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--time") && i + 1 < argc)
			run_time = atof(argv[++i]);
		/* --quick: same runs (they are short) */
	}
	if (cairn_host_init(8, 0, 1024ull << 20))
		abort();
	struct cairn_mem_range map[] = { { 1 << 20, (1024ull << 20) - (1 << 20) } };
	struct cairn_frames_config fc = { .ncpus = 8 };
	if (cairn_frames_init(&frames, map, 1, &fc))
		abort();
	ck_epoch_init(&epoch);

	const unsigned nthreads[] = { 1, 2, 4 };
	if (!json)
		printf("%-6s %-6s %12s %12s %12s   peak node frames (1/2/4)\n",
		       "test", "impl", "1 thread", "2 threads", "4 threads");
	for (unsigned m = 0; m < 3; m++) {
		mode = (enum mode)m;
		double r[3];
		uint64_t pk[3];
		for (unsigned k = 0; k < 3; k++) {
			struct cairn_arena_config cfg = { .quantum = Q, .fanout = FANOUT };
			if (cairn_arena_create(&arena, frames, BASE, SPAN, &cfg))
				abort();
			atomic_store(&peak, 0);
			r[k] = run(nthreads[k]);
			pk[k] = atomic_load(&peak);
			if (json)
				printf("{\"suite\": \"ranges\", \"test\": \"churn\", "
				       "\"impl\": \"%s\", \"threads\": %u, "
				       "\"extents\": 0, \"ops_per_s\": %.0f, "
				       "\"peak_node_frames\": %llu}\n",
				       mode_name[m], nthreads[k], r[k],
				       (unsigned long long)pk[k]);
			cairn_arena_destroy(&arena);
		}
		if (!json)
			printf("%-6s %-6s %12.0f %12.0f %12.0f   %llu/%llu/%llu\n",
			       "churn", mode_name[m], r[0], r[1], r[2],
			       (unsigned long long)pk[0], (unsigned long long)pk[1],
			       (unsigned long long)pk[2]);
		fflush(stdout);
	}
	return 0;
}
