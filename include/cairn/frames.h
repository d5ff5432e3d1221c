/* SPDX-License-Identifier: MIT */
/*
 * cairn frames: a lock-free bitmap buddy allocator of physical frames.
 *
 * Blocks of 2^order frames (order 0..18: 4 KiB..1 GiB), naturally aligned,
 * optionally aligned further. Every update is a compare-and-swap on a
 * metadata word; nothing in alloc/free takes a lock. See docs/design.md.
 *
 * Addresses are physical and in bytes. An instance lives in its metadata
 * memory; several instances can coexist (no global state).
 *
 * Every call may run on any CPU at any time, also with interrupts off and,
 * in a kernel, from an interrupt handler: nothing waits for another CPU
 * (add_region, remove_region and reclaim_region excepted: they take a spin
 * lock on the region table, and are not for interrupt handlers).
 *
 * Errors (a rejected call changes nothing; the bulk frees, which stop at
 * the first bad block with those before it freed, and reserve/unreserve
 * see there):
 *   CAIRN_EINVAL  order or align_order above CAIRN_MAX_ORDER, align_order
 *                 below order, a flag not defined here; init: an empty map
 *                 (no whole frame in it), a range whose end (base + size)
 *                 is not below 2^64, ncpus 0 or above 65534,
 *                 cfg->meta_size too small; add_region: a range of no
 *                 whole frame (whatever it overlaps), a range that
 *                 straddles an area boundary (add each part), meta_size too
 *                 small; reserve/unreserve: size 0 or a wrapping range
 *   CAIRN_EALIGN  an address not aligned to its block (or not to a frame)
 *   CAIRN_ERANGE  a block or range not inside the regions (a removed
 *                 region's too); remove_region: no region starts at base;
 *                 reclaim_region: no removed region starts at base
 *   CAIRN_ENOMEM  alloc: nothing free fits; init/add_region: no range large
 *                 enough to carve the metadata from
 *   CAIRN_EFREE   free of a block that is free
 *   CAIRN_EORDER  free with another order than the block was allocated with
 *   CAIRN_EBUSY   alloc_at/reserve over a frame in use (carved metadata
 *                 too); remove_region of a region with a frame in use or
 *                 with its metadata carved from it
 *   CAIRN_EMETA   free (any order, the bulk frees too) of a block that holds
 *                 a frame of carved metadata and lies inside the range its
 *                 region was given (one reaching into the next region too
 *                 is ERANGE), unreserve of a range that holds such a
 *                 frame: no caller was given those frames
 *   CAIRN_EEXIST  init: ranges overlap (by a byte too); add_region:
 *                 shares a byte with the range an active region was
 *                 given (its carved metadata and its partial frames
 *                 too: judged as init judges its map; touching passes).
 *                 A map entry of no whole frame is in no region: init
 *                 judges it, a later add does not
 *   CAIRN_ENOSPC  more than CAIRN_MAX_REGIONS regions (after the split at
 *                 the area boundaries; a removed region keeps its slot
 *                 until reclaimed: cairn_frames_reclaim_region)
 * A bad free (EALIGN, ERANGE, EFREE, EORDER, EMETA) is also reported
 * through cairn_port_report.
 */
#ifndef CAIRN_FRAMES_H
#define CAIRN_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cairn/error.h>
#include <cairn/port.h>

#define CAIRN_FRAME_SHIFT 12
#define CAIRN_FRAME_SIZE (1ull << CAIRN_FRAME_SHIFT)
#define CAIRN_HUGE_ORDER 9  /* 2 MiB: one chunk */
#define CAIRN_MAX_ORDER 18  /* 1 GiB */
#define CAIRN_MAX_REGIONS 64

/* Memory areas, by physical address. A region never straddles a boundary. */
enum cairn_area {
	CAIRN_AREA_LOW16M = 0, /* below 16 MiB (ISA DMA) */
	CAIRN_AREA_LOW4G = 1,  /* below 4 GiB (32-bit DMA) */
	CAIRN_AREA_HIGH = 2,   /* everything above */
	CAIRN_AREAS = 3
};

/* Request flags: which areas are acceptable (any mix), and options.
 * Allocation tries the accepted areas from the highest down, so scarce low
 * memory is used only by requests that accept nothing else, or when the
 * higher areas are exhausted. No area bit at all means "any". */
#define CAIRN_F_LOW16M (1u << CAIRN_AREA_LOW16M)
#define CAIRN_F_LOW4G (1u << CAIRN_AREA_LOW4G)
#define CAIRN_F_HIGH (1u << CAIRN_AREA_HIGH)
#define CAIRN_F_ANY (CAIRN_F_LOW16M | CAIRN_F_LOW4G | CAIRN_F_HIGH)
#define CAIRN_F_ZERO (1u << 8) /* zero the block through the identity map */

/* A usable physical range from the firmware memory map (bytes). */
struct cairn_mem_range {
	cairn_phys_t base;
	uint64_t size;
};

struct cairn_frames_config {
	unsigned ncpus;  /* CPU slots; 0 = cairn_port_cpu_count() */
	void *meta;      /* NULL: carve the metadata from the managed memory */
	size_t meta_size;
};

struct cairn_frames;

/* Bytes of metadata cairn_frames_init needs for this map (cfg->meta_size);
 * 0 for a map cairn_frames_init would reject. ncpus 0 =
 * cairn_port_cpu_count(). */
size_t cairn_frames_meta_size(const struct cairn_mem_range *map, size_t n,
			      unsigned ncpus);

/* Create an instance over the usable ranges of `map` (need not be sorted or
 * aligned; partial frames are dropped, an entry of no whole frame skipped,
 * both counted in the statistics' boot_skipped_*, neighbours merged, ranges split at
 * area boundaries; any number of entries, only the regions left count
 * against CAIRN_MAX_REGIONS; linear in n for a map listed by base, as
 * firmware lists it, else n log n up to 256 entries and n / 256 passes
 * of n log 256 beyond: the map is only read, sorted 256 indices at a
 * time on the stack). The same holds for cairn_frames_meta_size. Entries may
 * touch but not overlap: a byte in two entries is EEXIST, whole frames or
 * not.
 * With cfg->meta == NULL the metadata is carved from the top of the highest
 * range that holds it, through cairn_port_phys_to_virt (so the identity map
 * must already cover it), and those frames are in use for the life of the
 * instance: no caller's block (a free of one is CAIRN_EMETA,
 * cairn_frames_is_allocated says false), counted in total_frames, never
 * free; otherwise the caller's cfg->meta holds it and must outlive
 * the instance. cfg may be NULL. There is no destroy: an instance lives as
 * long as its memory. Call it before any other cairn function that takes
 * this instance; cairn_port_cpu_count() must be final by then. */
int cairn_frames_init(struct cairn_frames **out,
		      const struct cairn_mem_range *map, size_t n,
		      const struct cairn_frames_config *cfg);

/* Allocate a block of 2^order frames, naturally aligned: 0 and *out, or
 * CAIRN_ENOMEM / CAIRN_EINVAL. The block's contents are undefined unless
 * CAIRN_F_ZERO. */
int cairn_frames_alloc(struct cairn_frames *f, unsigned order, unsigned flags,
		       cairn_phys_t *out);

/* Does some region of the areas in flags hold a block of 2^order frames,
 * naturally aligned, free or not? False: cairn_frames_alloc of that order
 * and flags fails however much is freed (until a region is added), so a
 * cache in front of the allocator need not drain anything for it. */
bool cairn_frames_could_hold(struct cairn_frames *f, unsigned order, unsigned flags);

/* Allocate 2^order frames aligned to 2^align_order frames (align_order >=
 * order); only 2^order frames are taken, nothing around the block is lost. */
int cairn_frames_alloc_aligned(struct cairn_frames *f, unsigned order,
			       unsigned align_order, unsigned flags,
			       cairn_phys_t *out);

/* Allocate exactly the block at `phys` (aligned to its order): EBUSY if any
 * of its frames is in use. */
int cairn_frames_alloc_at(struct cairn_frames *f, cairn_phys_t phys,
			  unsigned order);

/* Free a block; the order must be the one it was allocated with. An
 * order-0 free may park the frame for this CPU's next order-0 allocation
 * (one CAS back, no count): it is free all the same, counted free by the
 * statistics, and unparked by any allocation that would otherwise fail,
 * and by alloc_at, reserve and region removal over it (docs/design.md). */
int cairn_frames_free(struct cairn_frames *f, cairn_phys_t phys,
		      unsigned order);

/* Order-0 bulk operations. alloc_bulk returns how many frames it stored in
 * out[] (0 when nothing is free). free_bulk frees all or, on the first bad
 * frame, stops and returns its error; frames before it are freed and
 * *done (if not NULL) says how many. */
size_t cairn_frames_alloc_bulk(struct cairn_frames *f, unsigned flags,
			       cairn_phys_t *out, size_t n);
int cairn_frames_free_bulk(struct cairn_frames *f, const cairn_phys_t *frames,
			   size_t n, size_t *done);

/* The same for huge blocks (order CAIRN_HUGE_ORDER, 2 MiB): alloc returns
 * how many blocks it stored in out[] (0 when none is free); free frees all
 * or stops at the first bad block with its error (*done: blocks freed). */
size_t cairn_frames_alloc_bulk_huge(struct cairn_frames *f, unsigned flags,
				    cairn_phys_t *out, size_t n);
int cairn_frames_free_bulk_huge(struct cairn_frames *f, const cairn_phys_t *blocks,
				size_t n, size_t *done);

/* Reserve every frame of [phys, phys+size) (frame aligned), all or nothing:
 * EBUSY and no change if any frame is in use. Reserved frames are order-0
 * allocations; unreserve frees them, again all or nothing, but for a free
 * of the same frames racing with it (two unreserves of one range): that
 * double free stops the call with EFREE, the frames before it freed.
 * A reserve that fails holds the frames before the busy one for a moment,
 * as order-0 allocations: a free of one of them then (of a frame nobody
 * was given) returns 0, since telling such a hold from an allocation
 * would cost every free (docs/design.md, "A free of a reserve's
 * frames"). The reserve's undo reports it through cairn_port_report
 * (EFREE) when it finds the frame freed; if the frame was allocated again
 * before the undo, the undo frees that allocation, as a double free of a
 * block given out again does. The counts stay right. */
int cairn_frames_reserve(struct cairn_frames *f, cairn_phys_t phys,
			 uint64_t size);
int cairn_frames_unreserve(struct cairn_frames *f, cairn_phys_t phys,
			   uint64_t size);

/* Hand over more memory at run time (e.g. a 2 MiB or 1 GiB chunk from a
 * hypervisor); it must be reachable through cairn_port_phys_to_virt first.
 * meta == NULL carves the region's metadata from the region's top, as
 * cairn_frames_init does (in use for good, CAIRN_EMETA to free); such a
 * region can never be removed. Otherwise meta (meta_size at least
 * cairn_frames_region_meta_size(), which is 0 for a range with no whole
 * frame) must outlive the region. */
size_t cairn_frames_region_meta_size(cairn_phys_t base, uint64_t size);
int cairn_frames_add_region(struct cairn_frames *f, cairn_phys_t base,
			    uint64_t size, void *meta, size_t meta_size);

/* Take a region back; EBUSY unless every frame of it is free. Its metadata
 * memory may be reused once no CPU can still be inside the allocator: once
 * every call into this instance that began before the removal returned
 * (a grace period). Until then frees of its frames are ERANGE, and calls
 * in flight may still read its metadata. base (here and for the reclaim)
 * is the address of the region's first whole frame (of an added region,
 * the base it was given rounded up to a frame).
 *
 * The removal takes the region's chunks one by one as if allocating them
 * whole, and gives them back if one is busy: an allocation, alloc_at or
 * reserve there meanwhile finds them in use, as if another CPU held them
 * (another region serves it, or ENOMEM, EBUSY), however the removal ends.
 *
 * The removed region keeps its slot of the CAIRN_MAX_REGIONS table until
 * the caller reclaims it: cairn_frames_reclaim_region(f, base) says that
 * grace period has passed, so the slot may be filled again by a later
 * add_region. A caller that never reclaims loses nothing but the slot. A
 * reclaim before the grace period is the same error as reusing the
 * metadata early. With several removed regions at base, the oldest removal
 * is reclaimed. ERANGE (and nothing changes) if no removed, unreclaimed
 * region starts at base. Not for interrupt handlers (the table's lock). */
int cairn_frames_remove_region(struct cairn_frames *f, cairn_phys_t base);
int cairn_frames_reclaim_region(struct cairn_frames *f, cairn_phys_t base);

struct cairn_frames_stats {
	uint64_t total_frames[CAIRN_AREAS];
	uint64_t free_frames[CAIRN_AREAS];
	/* free memory as maximal naturally aligned free blocks, per order */
	uint64_t free_blocks[CAIRN_AREAS][CAIRN_MAX_ORDER + 1];
	uint64_t meta_bytes; /* metadata of instance and regions */
	unsigned regions;
	/* What cairn_frames_init's map listed that no region holds, fixed at
	 * init (regions added later do not change it): the entries of no
	 * whole frame (empty ones not counted), skipped, and the bytes of
	 * the map outside its entries' whole frames (those entries' and the
	 * partial frames at the ends of every other). For a kernel to print,
	 * as the memory listed but not used: the map's bytes are these plus
	 * the frames the map's regions hold (total_frames at init, carved
	 * metadata too). */
	uint64_t boot_skipped_entries;
	uint64_t boot_skipped_bytes;
};

/* A snapshot; exact only when no operation is in flight. */
void cairn_frames_stats(struct cairn_frames *f, struct cairn_frames_stats *st);

/* Check every invariant (quiescent instance). 0 or CAIRN_ECORRUPT, with the
 * first violation reported through cairn_port_report. */
int cairn_frames_validate(struct cairn_frames *f);

/* Print regions, chunk states and counters through cairn_port_log. */
void cairn_frames_dump(struct cairn_frames *f);

/* Is [phys, phys + 2^order frames) allocated as one block of this order?
 * False for anything malformed or outside the regions. */
bool cairn_frames_is_allocated(struct cairn_frames *f, cairn_phys_t phys,
			       unsigned order);

/* For a frame cache: mark an allocated order-9 block as held in a
 * magazine (true), or refuse (false: not an allocated order-9 block, or
 * held already, i.e. freed twice). A held block is still allocated
 * (cairn_frames_is_allocated says so), but no free accepts it (EFREE)
 * until unhold clears the mark (a no-op on a block not held). Only the
 * block's holder calls them. */
bool cairn_frames_huge_hold(struct cairn_frames *f, cairn_phys_t phys);
void cairn_frames_huge_unhold(struct cairn_frames *f, cairn_phys_t phys);

#endif /* CAIRN_FRAMES_H */
