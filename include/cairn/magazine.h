/* SPDX-License-Identifier: MIT */
/*
 * cairn magazines: a per-CPU cache of 64-bit items (Bonwick & Adams,
 * "Magazines and Vmem", USENIX 2001) in front of any source of items.
 *
 * An item is an opaque 64-bit value the source hands out and takes back: a
 * frame's physical address, the start of a range. Each CPU owns a "loaded"
 * and a "previous" magazine (a frame holding up to mag_size items); a depot
 * keeps full and empty magazines on two lock-free stacks. A CPU allocates
 * from and frees to its loaded magazine inside a CPU-local section, with no
 * atomic read-modify-write and no lock; it exchanges whole magazines with
 * the depot, and only when the depot cannot help does it go to the source.
 *
 * Memory: magazines are frames of a cairn frames instance (reached through
 * cairn_port_phys_to_virt), and so is the cache itself unless the caller
 * gives memory. A cache holds at most (2 * ncpus + depot_full) * mag_size
 * items (cairn_mag_stats().bound).
 *
 * Draining: a CPU's magazines are touched only by that CPU. Anyone may ask a
 * CPU to give everything back (cairn_mag_drain_all); the CPU answers at its
 * next operation on the cache or at cairn_mag_poll. An online CPU must
 * therefore keep answering: a kernel calls cairn_mag_poll from its idle loop
 * (or timer tick), a host thread registered as a CPU does the same while it
 * waits for anything. A CPU that goes away (CPU offline, host thread exiting)
 * is emptied with cairn_mag_drain_cpu; one that went without it (a host
 * thread that left its slot's items to the slot's next thread) is emptied
 * by the next drain, if the port lends it (cairn_port_cpu_borrow). When
 * the source is exhausted,
 * cairn_mag_alloc drains every CPU and the depot back to the source and
 * tries again before it reports CAIRN_ENOMEM.
 *
 * On the host every thread that uses a cache must be registered as a CPU
 * (unregistered threads all run as CPU 0 and would share its slot). A CPU
 * index >= ncpus bypasses the cache and goes to the source directly.
 */
#ifndef CAIRN_MAGAZINE_H
#define CAIRN_MAGAZINE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cairn/error.h>
#include <cairn/frames.h>

#define CAIRN_MAG_MAX 510        /* items a magazine frame holds at most */
#define CAIRN_MAG_MAX_MAGS 65535 /* magazines per cache (ids are 16 bits) */

/* Where items come from and go back to. Both are called inside the
 * caller's CPU-local section (interrupts off in a kernel): they must not
 * sleep, and must not call back into this cache. */
struct cairn_mag_source {
	/* Take up to n items into items[]; return how many (0: exhausted). */
	size_t (*get)(void *ctx, uint64_t *items, size_t n);
	/* Take back n items, each one that get() returned. */
	void (*put)(void *ctx, const uint64_t *items, size_t n);
	void *ctx;
};

/* A drain group: caches whose drainers answer one another. A drainer
 * waiting for a CPU's answer answers, meanwhile, its own CPU's pending
 * requests in every cache of its group (alone, in its own cache only), so
 * two CPUs that drain two caches of one group at once, each holding what
 * the other asks for, do not wait each other out (a frame cache's orders,
 * a frame cache beside a quantum cache). The embedder owns it; zeroed
 * memory is an empty group. Caches join it at create and leave it at
 * destroy, which waits until no drainer of the group stands on the cache,
 * so a member may go while drains of the others run. No cache's source may
 * drain a cache of its group. */
struct cairn_mag_group {
	_Atomic(struct cairn_mag_cache *) head; /* members, newest first */
	_Atomic unsigned walkers;               /* drainers walking the members */
	_Atomic unsigned char lock;             /* serialises joins and leaves */
};

struct cairn_mag_config {
	struct cairn_mag_source source;
	struct cairn_frames *frames; /* magazine frames (required) */
	unsigned ncpus;       /* CPU slots; 0 = cairn_port_cpu_count() */
	unsigned mag_size;    /* items per magazine, 1..CAIRN_MAG_MAX; 0 = 63 */
	unsigned refill;      /* items asked of the source per miss, 1..mag_size;
				 0 = mag_size */
	unsigned depot_full;  /* full magazines the depot keeps; 0 = ncpus */
	unsigned depot_empty; /* empty magazines the depot keeps; 0 = ncpus */
	unsigned drain_wait;  /* pause hints a drainer waits for one CPU to
				 answer before it gives up on it; 0 = 2^22 */
	void *mem;            /* NULL: the cache's memory comes from frames */
	size_t mem_size;
	struct cairn_mag_group *group; /* NULL: none */
};

struct cairn_mag_cache;

/* Bytes of memory a cache with this configuration needs (for cfg->mem). */
size_t cairn_mag_mem_size(const struct cairn_mag_config *cfg);

/* Create a cache. CAIRN_EINVAL for a bad configuration, CAIRN_ENOMEM when
 * its memory cannot be had. */
int cairn_mag_create(struct cairn_mag_cache **out,
		     const struct cairn_mag_config *cfg);

/* Give every cached item back to the source and free the cache's memory.
 * No CPU may use the cache any more (and none may be inside it). */
void cairn_mag_destroy(struct cairn_mag_cache *mc);

/* Take an item: from this CPU's magazines, else a full magazine from the
 * depot, else the source. When the source is exhausted every CPU is asked
 * to drain and the allocation is tried once more: 0 or CAIRN_ENOMEM. */
int cairn_mag_alloc(struct cairn_mag_cache *mc, uint64_t *item);

/* The same without the drain: CAIRN_ENOMEM as soon as the source is empty
 * (for a caller that drains several caches itself). */
int cairn_mag_try_alloc(struct cairn_mag_cache *mc, uint64_t *item);

/* Give an item back (any item of the source, allocated on any CPU). The
 * cache cannot tell a duplicate: its caller checks the item. */
void cairn_mag_free(struct cairn_mag_cache *mc, uint64_t item);

/* Answer a pending drain request of the calling CPU, if any. Cheap when
 * there is none: call it from idle loops and wait loops. */
void cairn_mag_poll(struct cairn_mag_cache *mc);

/* Empty CPU `cpu`'s magazines into the source and free them. The caller is
 * that CPU, or the CPU runs no cache operation any more and everything it
 * did happens-before this call (it is offline; on the host the caller took
 * over its slot, or its thread was joined and no thread has taken the slot
 * since: a thread unregisters before it exits, and the next one to
 * register may get the slot and operate in it at once). A CPU nothing runs
 * as may be emptied by a drain at the same moment (the port lends it to
 * drains: cairn_port_cpu_borrow); the call borrows it too, and waits while
 * a drain has it. The slot is then ready for reuse. CAIRN_EINVAL for a
 * CPU outside the cache. */
int cairn_mag_drain_cpu(struct cairn_mag_cache *mc, unsigned cpu);

/* Empty the caller's CPU, the depot, and ask every other CPU holding
 * anything to drain, waiting (up to drain_wait for each) for its answer
 * while answering its own CPU's requests in the caches of the group. A
 * CPU that nothing runs as (the port lends it: on the host, a slot no
 * thread holds) is emptied by the drainer itself, before the asking or
 * while it waits for that CPU.
 * Callable from any thread or CPU, concurrently with everything.
 * Memory is short when anyone drains, so the cache then goes lean: a miss
 * that the depot cannot serve takes one item from the source instead of
 * refilling a magazine, for the next ncpus * refill such items, or until a
 * free finds the depot full (memory is plentiful again). */
void cairn_mag_drain_all(struct cairn_mag_cache *mc);

struct cairn_mag_cpu_stats {
	uint64_t hits;      /* served by the CPU's own magazines (a swap of
			       loaded and prev included) */
	uint64_t misses;    /* needed the depot or the source (after a swap
			       with prev, which counts as no miss) */
	uint64_t exchanges; /* magazines exchanged with the depot */
	uint64_t held;      /* items in the CPU's magazines now */
	uint64_t magazines; /* magazines the CPU holds now (0..2) */
};

struct cairn_mag_stats {
	uint64_t cpu_held;    /* items in all CPUs' magazines */
	uint64_t depot_full;  /* full magazines in the depot */
	uint64_t depot_empty; /* empty magazines in the depot */
	uint64_t depot_items; /* items in the depot */
	uint64_t magazines;   /* magazine frames in use */
	uint64_t bound;       /* items the cache can ever hold */
	uint64_t drains;      /* cairn_mag_drain_all calls */
	uint64_t lean_gets;   /* misses served by one item from the source
				 while the cache was lean (after a drain) */
	unsigned ncpus, mag_size;
};

/* Per-CPU counters (a snapshot; CAIRN_EINVAL for a CPU outside the cache). */
int cairn_mag_cpu_stats(struct cairn_mag_cache *mc, unsigned cpu,
			struct cairn_mag_cpu_stats *st);

/* Whole-cache figures; exact when no operation is in flight. */
void cairn_mag_stats(struct cairn_mag_cache *mc, struct cairn_mag_stats *st);

#endif /* CAIRN_MAGAZINE_H */
