/* SPDX-License-Identifier: MIT */
/*
 * cairn frame cache: per-CPU magazines of frames in front of a frames
 * instance, for the orders Linux keeps per-CPU lists of (0..3) and the
 * huge order (9). Other orders, and requests restricted to particular areas,
 * pass straight through to the frame allocator.
 *
 * A cached frame is allocated as far as the frame allocator knows; it is
 * free for the cache's users. A frame may be freed on any CPU, whichever
 * allocated it: it simply joins the freeing CPU's magazine.
 *
 * Exhaustion: when the frame allocator has nothing for a request, every
 * magazine of every order (and every CPU that answers, see magazine.h) goes
 * back to the frame allocator and the request is tried again, so frames
 * sitting in caches are never why an allocation fails.
 */
#ifndef CAIRN_FRAME_CACHE_H
#define CAIRN_FRAME_CACHE_H

#include <cairn/frames.h>
#include <cairn/magazine.h>

#define CAIRN_FCACHE_ORDERS 5 /* orders 0, 1, 2, 3 and 9 */

struct cairn_fcache_config {
	unsigned ncpus;                          /* 0 = cairn_port_cpu_count() */
	unsigned mag_size[CAIRN_FCACHE_ORDERS];  /* per cached order; 0 = default
						    (63, 31, 15, 15, 8) */
	unsigned depot_full;                     /* per order; 0 = ncpus */
	unsigned depot_empty;                    /* per order; 0 = ncpus */
	unsigned drain_wait;                     /* see cairn_mag_config */
	bool trust_frees;  /* free checks alignment only, not the frame
			      allocator's record of the block: for embedders
			      that know their frees are good (the lookup costs
			      about as much as the rest of a cached free) */
	/* The drain group of the orders' caches (magazine.h): share one with
	 * the other caches of this memory (a quantum cache whose ranges it
	 * backs). NULL: a group of the cache's own. */
	struct cairn_mag_group *group;
};

struct cairn_fcache;

/* Create a cache in front of f (its memory comes from f). cfg may be NULL.
 * CAIRN_EINVAL for a bad configuration (a mag_size above CAIRN_MAG_MAX, a
 * magazine setting cairn_mag_create refuses), CAIRN_ENOMEM when its memory
 * cannot be had. */
int cairn_fcache_create(struct cairn_fcache **out, struct cairn_frames *f,
			const struct cairn_fcache_config *cfg);

/* Every cached frame back to the frame allocator; the cache's memory too.
 * No CPU may use the cache any more. */
void cairn_fcache_destroy(struct cairn_fcache *fc);

/* As cairn_frames_alloc. Cached: orders 0-3 and 9 with no area restriction
 * (no area bit, or all of them), CAIRN_F_ZERO allowed. */
int cairn_fcache_alloc(struct cairn_fcache *fc, unsigned order, unsigned flags,
		       cairn_phys_t *out);

/* As cairn_frames_free: a misaligned block, one outside every region, or
 * one not allocated with this order is rejected with the frame allocator's
 * error code and nothing changes (with trust_frees, only a misaligned one).
 * A block freed twice while its first free still sits in a magazine cannot
 * be told from a good one. */
int cairn_fcache_free(struct cairn_fcache *fc, cairn_phys_t phys, unsigned order);

/* See magazine.h: answer a drain request; drain the calling (or a departed)
 * CPU; drain everything. */
void cairn_fcache_poll(struct cairn_fcache *fc);
int cairn_fcache_drain_cpu(struct cairn_fcache *fc, unsigned cpu);
void cairn_fcache_drain_all(struct cairn_fcache *fc);

/* The magazine cache of a cached order (for statistics), or NULL. */
struct cairn_mag_cache *cairn_fcache_mags(struct cairn_fcache *fc, unsigned order);

/* Frames held in the caches of all orders (in 4 KiB frames). */
uint64_t cairn_fcache_cached_frames(struct cairn_fcache *fc);

#endif /* CAIRN_FRAME_CACHE_H */
