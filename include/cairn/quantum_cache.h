/* SPDX-License-Identifier: MIT */
/*
 * Quantum caches (Bonwick & Adams 2001, vmem): per-CPU magazine caches in
 * front of a range arena, one per size of 1..N quanta. The common alloc and
 * free of a small range touch only the CPU's own magazines; the arena's tree
 * is visited once per magazine refill or flush.
 *
 * Ranges handed out through the cache are allocated in the arena with the
 * cache's own cookie (cairn_qcache_cookie), so a lookup of such an address
 * names the cache as owner, as in vmem. Sizes above N quanta pass through to
 * the arena.
 */
#ifndef CAIRN_QUANTUM_CACHE_H
#define CAIRN_QUANTUM_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include <cairn/arena.h>
#include <cairn/magazine.h>

#define CAIRN_QCACHE_MAX 64 /* sizes cached at most (quanta) */

struct cairn_qcache_config {
	unsigned max_quanta;  /* sizes 1..max_quanta are cached; 0 = 16 */
	unsigned ncpus;       /* 0 = cairn_port_cpu_count() */
	unsigned mag_size;    /* items per magazine; 0 = 15 */
	unsigned depot_full;  /* per size; 0 = ncpus */
	unsigned depot_empty; /* per size; 0 = ncpus */
	unsigned drain_wait;  /* see cairn_mag_config */
	bool trust_frees;     /* skip the lookup that checks each free */
	/* The drain group of the sizes' caches (magazine.h), as in
	 * cairn_fcache_config. NULL: a group of the cache's own. */
	struct cairn_mag_group *group;
};

struct cairn_qcache;

/* The cache's own memory and magazines come from frames `f`; the arena
 * must outlive the cache. cfg may be NULL. CAIRN_EINVAL for a bad
 * configuration (max_quanta above CAIRN_QCACHE_MAX, a magazine setting
 * cairn_mag_create refuses), CAIRN_ENOMEM when its memory cannot be had. */
int cairn_qcache_create(struct cairn_qcache **out, struct cairn_arena *a,
			struct cairn_frames *f, const struct cairn_qcache_config *cfg);

/* Every cached range goes back to the arena, then the cache's frames.
 * Ranges still handed out stay allocated in the arena under the cache's
 * cookie (no cache to free them to): cairn_arena_free takes them. */
void cairn_qcache_destroy(struct cairn_qcache *qc);

/* size rounded up to the quantum. CAIRN_ENOMEM only after every CPU's
 * cached ranges went back to the arena and the arena still had no room,
 * or at once (nothing drained) for a size no span of the arena could
 * ever hold (cairn_arena_could_hold; one that rounds past 2^64). "Every
 * CPU" is every CPU that answers a drain (magazine.h): an online one at
 * its next operation or poll, one that went away once it was emptied
 * with cairn_qcache_drain_cpu, or once the port lent it to the drain (a
 * host thread that unregistered without draining). A slot left holding
 * ranges with no one to answer and not lent (a host thread that exited
 * still registered, its slot not given back) keeps them after
 * drain_wait, and the allocation may fail. */
int cairn_qcache_alloc(struct cairn_qcache *qc, uint64_t size, uint64_t *addr);

/* Free a range of this size allocated from the cache. Unless trust_frees,
 * anything that is not such a range is handed to cairn_arena_free, which
 * returns its exact error and changes nothing. A range freed twice while
 * its first free still sits in a magazine cannot be told from a good one
 * (it is still allocated in the arena); when the copies go back, each
 * is freed only if the arena still has the range allocated to the cache
 * at this size (cairn_arena_free_as), so a range the arena gave another
 * owner meanwhile stays theirs, and the stale copy is reported. */
int cairn_qcache_free(struct cairn_qcache *qc, uint64_t addr, uint64_t size);

void cairn_qcache_poll(struct cairn_qcache *qc);
int cairn_qcache_drain_cpu(struct cairn_qcache *qc, unsigned cpu);
void cairn_qcache_drain_all(struct cairn_qcache *qc);

/* The cookie of the cache's ranges in the arena. */
uint64_t cairn_qcache_cookie(const struct cairn_qcache *qc);

/* Quanta held in all magazines and depots (a snapshot). */
uint64_t cairn_qcache_cached_quanta(struct cairn_qcache *qc);

/* The magazine cache of `quanta`-sized ranges (statistics), or NULL. */
struct cairn_mag_cache *cairn_qcache_mags(struct cairn_qcache *qc, unsigned quanta);

#endif /* CAIRN_QUANTUM_CACHE_H */
