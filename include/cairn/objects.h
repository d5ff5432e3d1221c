/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: the small-object front end (snmalloc-style).
 *
 * Requests of 1 B .. 64 KiB are served from size classes (16 B, then four
 * per power of two) out of slabs: blocks of 2^k frames owned by one per-CPU
 * heap. The owner allocates from and frees into its slabs without any atomic
 * read-modify-write. A free on another CPU is batched by destination and
 * posted to the owner's message queue (one atomic exchange per batch); the
 * owner collects its messages on its slow path. Larger requests go to the
 * page layer: with a range arena configured (large_arena below), an arena
 * allocation of the size rounded to pages, recorded in the arena's tree
 * with the instance as owner; without one, a buddy block of 2^k frames,
 * its order recorded in the pagemap.
 *
 * The owner of any pointer is found in O(1) through a two-level pagemap
 * indexed by physical frame, over the physical range given at creation.
 * Objects live in the identity map (cairn_port_phys_to_virt).
 *
 * Every call runs on the calling CPU's heap inside a CPU-local section. A
 * heap starts online. A CPU that goes away calls cairn_objects_cpu_offline:
 * its heap posts what it holds for others, collects its messages and gives
 * its empty slabs back; from then on, whoever posts a message to an offline
 * heap collects it on the heap's behalf, so slabs still holding objects
 * that are freed later go back too. Nothing leaks.
 *
 * Several instances may coexist; an instance lives in frames it took from
 * its frame allocator and has no global state.
 */
#ifndef CAIRN_OBJECTS_H
#define CAIRN_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cairn/error.h>
#include <cairn/frames.h>

#define CAIRN_OBJ_MIN 16u                /* smallest class, and min alignment */
#define CAIRN_OBJ_SMALL_MAX (64u << 10)  /* largest size class */
#define CAIRN_OBJ_CLASSES 44             /* 16, 32, 48, 64, then 4 per doubling */

/* Hardening: checks on every free (double free, foreign, interior or
 * misaligned pointer) and on free-list links, which are then encoded with
 * a per-heap key: a decoded link that is not an object of its slab is
 * reported and the rest of the list dropped. With the checks off, links
 * are plain pointers. */
enum cairn_obj_harden {
	CAIRN_OBJ_HARDEN_BUILD = 0, /* on in debug builds (CAIRN_DEBUG), else off */
	CAIRN_OBJ_HARDEN_OFF = 1,
	CAIRN_OBJ_HARDEN_ON = 2,
};

struct cairn_fcache;
struct cairn_arena;
struct cairn_qcache;

struct cairn_objects_config {
	struct cairn_frames *frames; /* page supply (required) */
	/* Optional: a per-CPU frame cache in front of `frames` (made on the
	 * same frames) that slabs, large blocks and metadata go through.
	 * Every CPU using the instance must then keep answering the cache's
	 * drain requests (see magazine.h). */
	struct cairn_fcache *fcache;
	/* Physical range the pagemap covers: every frame the frame allocator
	 * may hand out must lie in [phys_base, phys_limit). */
	cairn_phys_t phys_base;
	cairn_phys_t phys_limit;
	unsigned ncpus;              /* heaps, at least cairn_port_cpu_count()
					(more: explicit heaps); 0 = that */
	enum cairn_obj_harden harden;
	uint64_t seed;               /* free-list keys; 0 = derived from addresses */
	/* Blocks of released slabs each heap keeps for its next slabs (hot
	 * memory first); 0 = 1 MiB. Given back when the CPU goes offline or
	 * any heap meets exhaustion. */
	unsigned block_cache_kib;
	/* Optional: blocks of released slabs kept for every heap's next slabs
	 * beyond the heaps' own caches (a heap going offline puts its blocks
	 * here, and a new slab takes them before untouched frames): at most
	 * this much, in lock-free stacks in the instance. Given back to
	 * `frames` on exhaustion and at destroy. 0: none. */
	unsigned released_kib;
	/* Optional: the range arena large objects (> CAIRN_OBJ_SMALL_MAX, or
	 * aligned above it) come from; its quantum must be the frame size.
	 * A large object is one arena allocation of its size rounded to
	 * pages (65 KiB takes 68 KiB), aligned by the arena when asked (with
	 * large_cache_kib, a cached range of up to twice that: its usable
	 * size is the range's length),
	 * with the instance as its cookie; free and usable_size find it by
	 * cairn_arena_lookup. A natural arena: address space importing 2 MiB
	 * spans from `frames` through cairn_arena_source_frames (mapped by
	 * the port, or in the identity map with no va arena). The arena may
	 * serve others too (cookies tell owners apart); it must outlive the
	 * instance. NULL: large objects are buddy blocks (power-of-two
	 * sizes) with their order in the pagemap. */
	struct cairn_arena *large_arena;
	/* Optional, with large_arena: a quantum cache made on large_arena
	 * (per-CPU magazines of ranges) that unaligned large objects of up to
	 * its max_quanta pages go through first. A range in a magazine is
	 * still allocated in the arena, so the arena cannot see a second
	 * free of it: the cache is used only with hardening off and ignored
	 * otherwise. It runs on cairn_port_cpu(), so every caller must be in
	 * a CPU-local section or own its CPU slot, and CPUs answer its drain
	 * requests (cairn_qcache_poll) as for the frame cache. It should
	 * serve this instance alone. With fcache too, make the two caches
	 * with one drain group (their configs' `group`, magazine.h). */
	struct cairn_qcache *large_qcache;
	/* Optional, with large_arena: each heap keeps up to this much of the
	 * large objects freed on it (of up to 4 MiB, in its arena's share of
	 * the pagemap's range) and hands them out again, by bins of page
	 * count, without a tree update. A cached range stays allocated in the
	 * arena; its pagemap entry records its length and state, so a second
	 * free is refused there, hardened or not. Given back to the arena
	 * when the CPU goes offline or any heap meets exhaustion. 0: none. */
	unsigned large_cache_kib;
	/* Optional, with large_arena: the largest large object the arena can
	 * ever serve, counted as its size rounded to pages plus its alignment
	 * beyond a page (the slack that places it aligned anywhere in a
	 * span): e.g. its largest span. A request above it fails at once,
	 * nothing changed, as impossible requests do (alloc: NULL; realloc:
	 * CAIRN_ENOMEM, p untouched). 0 (unknown): a request the arena
	 * cannot serve is refused, nothing changed, when no span it has held
	 * or could import holds the request's pages at its alignment
	 * (cairn_arena_could_hold: beyond its spans and what its source says
	 * it could lend); otherwise (a source without could_lend, or spans
	 * of which one is long enough and another aligned enough) it runs
	 * the exhaustion path (every batch posted, every heap's caches
	 * taken back) before it fails. A request within it may still fail on
	 * exhaustion. */
	uint64_t large_max;
	/* Optional, with large_arena: called before and after every call
	 * into the arena (allocation, free, lookup; destroy excepted), around
	 * every post of remote frees to another CPU's message queue, and
	 * around every claim of an offline CPU's heap (a free that collects
	 * the messages of a heap whose CPU went offline), on the calling
	 * CPU. Calls nest (a claim gives the heap's cached large objects back
	 * to the arena). A host process that forks uses them to keep the fork
	 * from copying the arena's tree while another thread holds one of its
	 * node locks, a queue with a link another thread still owes, or a
	 * heap another thread claimed. Both or neither. */
	void (*arena_enter)(void);
	void (*arena_leave)(void);
};

struct cairn_objects;
struct cairn_heap;

/* Create an instance; its memory (instance, heaps, pagemap) comes from
 * cfg->frames (or cfg->fcache). CAIRN_EINVAL for a bad configuration
 * (frames missing, phys_base not page aligned or not below phys_limit,
 * ncpus below cairn_port_cpu_count(), an arena whose quantum is not
 * CAIRN_FRAME_SIZE, large_qcache, large_cache_kib or large_max without
 * large_arena,
 * one of arena_enter/arena_leave alone), CAIRN_ENOMEM when its memory
 * cannot be had. The arena, caches and frames given must outlive it. */
int cairn_objects_create(struct cairn_objects **out,
			 const struct cairn_objects_config *cfg);

/* Give every frame back: slabs (live objects or not), large blocks, the
 * pagemap and the instance. No CPU may use the instance any more. Live
 * large objects in the arena are freed (a walk of its tree: no one may
 * change the arena meanwhile), and the quantum cache is emptied first. */
void cairn_objects_destroy(struct cairn_objects *o);

/* malloc-like calls on the calling CPU's heap. alloc(0) returns a minimal
 * object. NULL on exhaustion (after collecting and releasing what the heap
 * holds, and taking back every heap's caches) and for impossible requests
 * (EINVAL-like: align not a power of two, calloc overflow; ENOMEM-like: a
 * large object above what the page layer can ever serve: the largest
 * buddy block, a block no region of the frames holds, the config's
 * large_max, or with large_max 0 a size no span of the arena could ever
 * hold, see large_max); nothing changes then. */
void *cairn_objects_alloc(struct cairn_objects *o, size_t size);
void *cairn_objects_alloc_aligned(struct cairn_objects *o, size_t size,
				  size_t align);
void *cairn_objects_calloc(struct cairn_objects *o, size_t n, size_t size);
/* As realloc: NULL p allocates; on failure NULL and p is untouched. Size 0
 * with a non-NULL p frees p and returns NULL. */
void *cairn_objects_realloc(struct cairn_objects *o, void *p, size_t size);

/* Free an object of this instance (NULL is fine). Returns 0, or the error
 * that was also reported through cairn_port_report: CAIRN_ERANGE (not an
 * object of this instance), CAIRN_EALIGN (interior or misaligned pointer),
 * CAIRN_EFREE (already free). A large buddy block of 2 MiB or more (no
 * large_arena) has only its first page in the pagemap: a pointer into a
 * later page of it is CAIRN_ERANGE. With hardening off only ERANGE is checked
 * for small objects; large objects are always checked, except ranges of
 * the quantum cache. Hardened, a small object's second free is EFREE on
 * any CPU until it is handed out again: its owner holds it free, or a
 * free of it on another CPU has not been collected yet (after it is
 * handed out again, a second free frees the new holder's object: no
 * allocator can tell). A large object's second free is EFREE while its
 * arena span is still there, ERANGE once the span went back to the
 * source. */
int cairn_objects_free(struct cairn_objects *o, void *p);

/* Bytes usable at p (>= the size asked for); 0 for a foreign pointer. */
size_t cairn_objects_usable_size(struct cairn_objects *o, const void *p);

/* The calling CPU: post every pending remote free and collect messages. */
void cairn_objects_flush(struct cairn_objects *o);

/* The calling CPU goes away / comes back (see above). After offline the CPU
 * must not call the instance until it is online again. */
void cairn_objects_cpu_offline(struct cairn_objects *o);
void cairn_objects_cpu_online(struct cairn_objects *o);

/* ---- explicit heaps ----
 * For embedders that know the caller owns a CPU slot for its whole run
 * (a host thread registered as a CPU): no CPU-local section per call, so
 * not for a heap an interrupt handler may use too. Each call behaves, and
 * fails, as the cairn_objects_* call of the same name; cairn_objects_heap
 * returns NULL for cpu >= ncpus. */
struct cairn_heap *cairn_objects_heap(struct cairn_objects *o, unsigned cpu);
void *cairn_heap_alloc(struct cairn_heap *h, size_t size);
/* The allocation fast path alone: an object from the class's current slab
 * if it has one at hand and the heap is unhardened, else NULL (then call
 * cairn_heap_alloc_slow). Touches only the heap's table, its current
 * slab's first line and the object: nothing another CPU writes. */
void *cairn_heap_alloc_fast(struct cairn_heap *h, size_t size);
/* cairn_heap_alloc without its fast path: what to call when
 * cairn_heap_alloc_fast returned NULL (refills; hardened pops). */
void *cairn_heap_alloc_slow(struct cairn_heap *h, size_t size);
void *cairn_heap_alloc_aligned(struct cairn_heap *h, size_t size, size_t align);
void *cairn_heap_calloc(struct cairn_heap *h, size_t n, size_t size);
void *cairn_heap_realloc(struct cairn_heap *h, void *p, size_t size);
/* As cairn_heap_realloc, with what happened in *err: 0, CAIRN_ENOMEM (no
 * memory for the new object; p untouched, nothing reported: an embedder
 * that can add memory retries), or the error reported for p (refused,
 * p untouched: CAIRN_ERANGE, not the start of an object of this instance,
 * or CAIRN_EFREE, hardened, a freed small object of any heap: its owner
 * holds it free, or a free of it has not been collected yet). Size 0
 * frees: NULL, and *err is the free's. */
void *cairn_heap_realloc_err(struct cairn_heap *h, void *p, size_t size, int *err);
int cairn_heap_free(struct cairn_heap *h, void *p);
/* Whether p lies in the instance's memory [phys_base, phys_limit), for an
 * embedder with other allocators beside it: what lies outside is none of
 * the instance's (cairn_heap_free would refuse it, and report it). The
 * free looks the same fields up, so with the two inlined together (LTO)
 * the range is tested once. */
bool cairn_heap_covers(const struct cairn_heap *h, const void *p);
void cairn_heap_flush(struct cairn_heap *h);
void cairn_heap_offline(struct cairn_heap *h);
void cairn_heap_online(struct cairn_heap *h);
struct cairn_objects *cairn_heap_objects(struct cairn_heap *h);

/* ---- size classes ---- */
unsigned cairn_obj_class(size_t size);       /* size <= CAIRN_OBJ_SMALL_MAX */
size_t cairn_obj_class_size(unsigned cls);
unsigned cairn_obj_class_order(struct cairn_objects *o, unsigned cls);

struct cairn_objects_stats {
	uint64_t slabs;          /* slabs held by heaps */
	uint64_t slab_frames;    /* their frames */
	uint64_t objects;        /* objects handed out (not counting posted frees) */
	uint64_t large;          /* large blocks */
	uint64_t large_frames;   /* their pages (arena: rounded to pages only) */
	uint64_t meta_frames;    /* pagemap, slab descriptors, instance */
	uint64_t cached_frames;  /* released slab blocks the heaps keep for reuse */
	uint64_t released_frames; /* released slab blocks the instance keeps */
	uint64_t large_cached_frames; /* freed large objects the heaps keep */
	uint64_t remote_posted;  /* messages (batches) posted, all heaps */
	uint64_t remote_objects; /* objects freed remotely */
	uint64_t remote_collected; /* messages collected by their heap's own CPU */
	uint64_t offline_collects; /* messages collected on an offline heap's behalf */
};

/* A snapshot, callable from any CPU at any time (each figure a sum of
 * values its counters held while the call ran, not one instant's); exact
 * when no CPU is inside the instance. Every message posted is collected
 * once: with every CPU offline and nothing in flight,
 * remote_posted == remote_collected + offline_collects. */
void cairn_objects_stats(struct cairn_objects *o, struct cairn_objects_stats *st);
/* The same for heap `cpu` alone (what its CPU posted and collected, and
 * what was collected on its behalf); all zero for a heap never made or
 * cpu >= ncpus. meta_frames and released_frames belong to the instance
 * and stay zero here. */
void cairn_objects_heap_stats(struct cairn_objects *o, unsigned cpu,
			      struct cairn_objects_stats *st);

/* Check slab and heap invariants (quiescent instance): 0 or CAIRN_ECORRUPT
 * with the first violation reported. */
int cairn_objects_validate(struct cairn_objects *o);

#endif /* CAIRN_OBJECTS_H */
