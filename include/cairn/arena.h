/* SPDX-License-Identifier: MIT */
/*
 * cairn arenas: vmem-style allocators of integer ranges on the B+-tree.
 *
 * An arena hands out ranges of an integer space (virtual addresses, device
 * windows, IDs) in multiples of its quantum. Its spans are added explicitly
 * or imported from a source (another arena, or frames mapped by the port)
 * in an import quantum when a request does not fit, and imported spans go
 * back to the source when they become entirely free (and those a request
 * imported but did not use, when it returns).
 *
 * The tree stores every span as a tiling of extents, free and allocated,
 * free neighbours coalesced; an allocated extent carries its owner cookie,
 * which lookup returns (the resource tree: address -> owner). Lookups are
 * lock-free; alloc/free lock only the tree nodes they change.
 *
 * Context: a reader or writer that meets a node locked by a writer retries
 * until the writer is done, so a writer must not be interrupted by a call on
 * the same arena on its own CPU: in a kernel, either no interrupt handler
 * uses the arena, or every call on it runs with interrupts off (in a
 * CPU-local section, as the objects layer and the quantum cache's refills
 * do). A source's import and release run inside the call that needs them.
 *
 * Errors (a rejected call changes nothing):
 *   CAIRN_EINVAL  zero size, bad policy or nocross, bad create arguments
 *   CAIRN_EALIGN  address/size not a multiple of the quantum; alignment
 *                 not a power of two; phase not below the alignment
 *   CAIRN_ERANGE  outside every span, or minaddr/maxaddr empty
 *   CAIRN_EEXIST  add: the span overlaps an existing one
 *   CAIRN_EBUSY   reserve: addr is allocated, or the range runs from its
 *                 free extent into the next extent (allocated or another
 *                 span); CAIRN_ERANGE if it runs into a gap instead
 *   CAIRN_EFREE   free: addr is not the start of an allocated range
 *   CAIRN_EORDER  free: the size is not the allocated size
 *   CAIRN_ENOMEM  nothing fits and the source (if any) is exhausted:
 *                 it refused with CAIRN_ENOMEM, or its span serves
 *                 nothing (see struct cairn_arena_source); or no tree
 *                 node
 *   CAIRN_ECORRUPT alloc/xalloc: the source lent a span it must not
 *                 have (see struct cairn_arena_source); reported, and
 *                 given back
 *   CAIRN_ENOSPC  an insert needs a root split beyond the tree's depth
 *                 limit (CAIRN_BTREE_DEPTH_MAX; only small fanouts get
 *                 there), the add of an imported span's included (the
 *                 span goes back): frees still succeed
 *   other         alloc/xalloc: the error of a source's import that is
 *                 not CAIRN_ENOMEM, as the source returned it (an arena
 *                 source: its parent's alloc error; a frames source:
 *                 cairn_frames_alloc's, the VA arena's, cairn_port_map's)
 */
#ifndef CAIRN_ARENA_H
#define CAIRN_ARENA_H

#include <stdatomic.h>
#include <stdint.h>

#include <cairn/btree.h>
#include <cairn/error.h>
#include <cairn/frames.h>

enum cairn_fit {
	CAIRN_FIT_FIRST = 0, /* lowest address, O(log n) */
	CAIRN_FIT_HIGH = 1,  /* highest address, O(log n) */
	CAIRN_FIT_BEST = 2,  /* shortest free extent that fits, lowest on a tie */
};

/* Where an arena imports from. import returns 0 and the base of a new
 * range of exactly `size` bytes, aligned to `align`, or an error:
 * CAIRN_ENOMEM for exhaustion (the arena may ask for less, and otherwise
 * fails the request with it), any other error to fail the request with
 * that error. A range that breaks this contract (off the alignment asked,
 * which is at least the arena's quantum, running past 2^64, or
 * overlapping the arena's spans) is reported (cairn_port_report),
 * released at once, and fails the request with CAIRN_ECORRUPT. A range
 * ending exactly at 2^64 is released at once too and serves nothing
 * (CAIRN_ENOMEM): no extent can end there. release gives one back.
 * could_lend (optional) says whether an import of `size` bytes aligned
 * to `align` could ever succeed: false only if every import of at least
 * that size at that alignment or more fails with CAIRN_ENOMEM however
 * much is given back to the source, for as long as the arena lives (a
 * source that can grow answers for what it may grow to). It is asked only
 * by cairn_arena_could_hold, on slow paths; NULL: anything may be lent. */
struct cairn_arena_source {
	int (*import)(void *ctx, uint64_t size, uint64_t align, uint64_t *addr);
	void (*release)(void *ctx, uint64_t addr, uint64_t size);
	void *ctx;
	bool (*could_lend)(void *ctx, uint64_t size, uint64_t align);
};

struct cairn_arena_config {
	uint64_t quantum;        /* power of two; 0 = 1 */
	const struct cairn_arena_source *source; /* NULL: none */
	/* Multiple of quantum; 0 = quantum. Imports are rounded up to it; a
	 * source that refuses one (ENOMEM) is asked for half, down to the
	 * request's size plus its phase (the span is aligned for the request;
	 * not a power of two: that size at once). */
	uint64_t import_quantum;
	unsigned fanout;         /* tree slots per node; 0 = full 4 KiB */
};

struct cairn_arena {
	struct cairn_btree tree;
	uint64_t quantum;
	uint64_t import_quantum;
	struct cairn_arena_source source;
	_Atomic uint64_t imports, releases;
	_Atomic uint64_t tags; /* the last tag an imported span was given */
	/* Of every span the arena has held (added or imported): the longest,
	 * and the largest alignment at which one had a quantum. */
	_Atomic uint64_t held_max, held_align;
};

/* Extent flags the arena keeps in the tree (beside CAIRN_EXT_FREE). A free
 * extent's cookie is 0, except an imported span's while it is the one free
 * extent its import added: a tag unique in the arena. */
#define CAIRN_ARENA_SPAN 0x100u     /* this extent starts a span */
#define CAIRN_ARENA_IMPORTED 0x200u /* ... an imported one */

/* Tree nodes come from `nodes`. [base, base + size) becomes the first span
 * unless size is 0. The caller owns the memory of `a` (it must stay put:
 * sources and quantum caches point to it); cfg may be NULL. CAIRN_EINVAL
 * for a bad config or a missing `a` or `nodes`, CAIRN_ENOMEM when the
 * root node cannot be had, or an error of cairn_arena_add. */
int cairn_arena_create(struct cairn_arena *a, struct cairn_frames *nodes,
		       uint64_t base, uint64_t size,
		       const struct cairn_arena_config *cfg);

/* Give imported spans back (allocated or not) and every tree node. */
void cairn_arena_destroy(struct cairn_arena *a);

/* Add [base, base + size) as a span (never released to a source). */
int cairn_arena_add(struct cairn_arena *a, uint64_t base, uint64_t size);

/* size rounded up to the quantum, first fit. */
int cairn_arena_alloc(struct cairn_arena *a, uint64_t size, uint64_t cookie,
		      uint64_t *addr);

/* The full request: addr = phase (mod align), [addr, addr + size) inside
 * [minaddr, maxaddr) (maxaddr 0 = no limit) and not crossing a multiple of
 * nocross (0 = no constraint). align 0 means the quantum. */
int cairn_arena_xalloc(struct cairn_arena *a, uint64_t size, uint64_t align,
		       uint64_t phase, uint64_t nocross, uint64_t minaddr,
		       uint64_t maxaddr, enum cairn_fit policy, uint64_t cookie,
		       uint64_t *addr);

/* Free an allocated range; it coalesces with free neighbours in its span.
 * An imported span that becomes entirely free goes back to the source. */
int cairn_arena_free(struct cairn_arena *a, uint64_t addr, uint64_t size);

/* cairn_arena_free, if the range's owner is `cookie`: the check and the
 * free are one update. CAIRN_EBUSY (nothing changed) when the allocated
 * range at addr has another owner; otherwise cairn_arena_free's errors.
 * For an owner that may hold a stale copy of a range it gave back (a
 * quantum cache's magazines after a double free): the range may have
 * gone to another owner since, whose allocation must stay. */
int cairn_arena_free_as(struct cairn_arena *a, uint64_t addr, uint64_t size,
			uint64_t cookie);

/* Free the allocated range that starts at addr, whatever its size, if its
 * cookie is `cookie`: the check and the free are one atomic update. 0 and
 * the range's size in *size (may be NULL), or (nothing changed)
 * CAIRN_ERANGE outside every span, CAIRN_EFREE in a free extent,
 * CAIRN_EALIGN inside an allocated range but not at its start,
 * CAIRN_EBUSY the range has another owner. */
int cairn_arena_free_owned(struct cairn_arena *a, uint64_t addr, uint64_t cookie,
			   uint64_t *size);

/* Allocate exactly [addr, addr + size), all or nothing. */
int cairn_arena_reserve(struct cairn_arena *a, uint64_t addr, uint64_t size,
			uint64_t cookie);

/* The allocated range containing addr and its cookie (lock-free):
 * 0, CAIRN_EFREE if addr is free, CAIRN_ERANGE outside every span. */
int cairn_arena_lookup(struct cairn_arena *a, uint64_t addr,
		       uint64_t *start, uint64_t *size, uint64_t *cookie);

/* Could an allocation of size bytes at this alignment (0: the quantum;
 * phase 0) ever succeed? False when no span the arena has held (added,
 * or imported) was that long and had a multiple of the alignment, and its
 * source could not lend a span for the request (could_lend of what an
 * import asks at least: the size rounded to the quantum, and to a power
 * of two with a power-of-two import quantum, at the alignment): then
 * alloc and xalloc of it fail with CAIRN_ENOMEM however much is freed,
 * here or in the source, until a span, or a region of the source's
 * frames, is added (or an import for another request brings in a span
 * that holds it). So a cache in front of the arena need not give
 * anything back for it. The frames source answers by
 * cairn_frames_could_hold (and its VA arena's answer), the arena source
 * by the parent's answer; a source without could_lend may lend anything:
 * true. True does not promise success. False for an alignment that is
 * not a power of two. Lock-free: no tree node is read. */
bool cairn_arena_could_hold(struct cairn_arena *a, uint64_t size, uint64_t align);

/* Quiescent checks: the tree's invariants, spans tiled by extents, free
 * neighbours coalesced. */
int cairn_arena_validate(struct cairn_arena *a);

/* Sources. An arena as the source of another: imports are xallocs in the
 * parent with the parent's own address as cookie (the import callback is
 * not told which arena imports: a lookup in the parent names no child),
 * releases are frees that check, in the same update, that the parent
 * still lends the span (allocated there with that cookie and size); a
 * span it does not is reported (cairn_port_report) and left alone. */
void cairn_arena_source_arena(struct cairn_arena_source *s,
			      struct cairn_arena *parent);

/* Frames mapped by the port: each import takes a naturally aligned block
 * of 2^k frames (an arena created with this source rounds its import
 * quantum up to a power of two of at least 4 KiB, so every import size is
 * one; CAIRN_EINVAL if that power of two would be 2^64) and maps it at an
 * address allocated from `va`, whose cookie keeps the physical address;
 * release unmaps and frees both. An unmap that fails is reported
 * (cairn_port_report), and the frames and the VA range stay taken: the
 * mapping may still reach them. With `va` NULL the block is used where the
 * identity map has it (cairn_port_phys_to_virt): no mapping, and nothing
 * but the frames to give back. */
struct cairn_frames_source {
	struct cairn_frames *frames;
	struct cairn_arena *va; /* NULL: the identity map */
	unsigned flags; /* frame request flags (areas) */
};
/* s->ctx points to fs (and cairn_arena_source_arena's to the parent): it
 * must outlive every arena made with s; the arena copies s itself. */
void cairn_arena_source_frames(struct cairn_arena_source *s,
			       struct cairn_frames_source *fs);

#endif /* CAIRN_ARENA_H */
