/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: the in-memory layout shared by the objects*.c files.
 *
 * Ownership. Everything in a heap and in the descriptors of its slabs is
 * touched by one context at a time, with no atomics: the heap's CPU while
 * the heap is ONLINE, or the one CPU that claimed it (CLAIMED) while it is
 * offline. The claim is a CAS with acquire and ends with a release store,
 * so the heap's plain fields pass from holder to holder like a lock's data.
 * The only words other CPUs write are the heap's state and inbox (message
 * queue) and the pagemap; all are atomics.
 *
 * A slab is a naturally aligned block of 2^order frames cut into objects
 * of one size class, with its descriptor out of band (so a stray write into
 * an object cannot reach the metadata). Its objects are in exactly one of:
 *   - not yet carved (index >= capacity: the slab grows its free list lazily
 *     one page at a time, so untouched memory stays untouched),
 *   - on `free` (the list allocation pops from, and the owner's frees
 *     push onto: last in, first out, so the object freed last, still hot,
 *     is the next one out, and `free` runs dry only when the slab has no
 *     free object left but collected ones),
 *   - on `local_free` (collected remote frees; it becomes `free` when
 *     `free` runs dry),
 *   - handed out, counted by `used` (this includes objects freed on another
 *     CPU whose message the owner has not collected yet).
 * So: free + local_free + used + (nobjs - capacity) == nobjs, always.
 *
 * Free-list links live in the first word of free objects; with hardening
 * on they are encoded as next ^ key ^ rol(address of the word): an
 * overwrite with a plausible pointer decodes to garbage, which the
 * hardened checks catch (obj_encode).
 */
#ifndef CAIRN_OBJECTS_LAYOUT_H
#define CAIRN_OBJECTS_LAYOUT_H

#include <cairn/arena.h>
#include <cairn/objects.h>
#include <cairn/quantum_cache.h>

#include <stdatomic.h>

#define OBJ_PAGE_SHIFT CAIRN_FRAME_SHIFT
#define OBJ_PAGE ((uintptr_t)1 << OBJ_PAGE_SHIFT)
/* Pagemap leaves of 2048 entries (16 KiB, 8 MiB of frames each): the top
 * level, made and zeroed at creation, is 8 bytes per 8 MiB. */
#define OBJ_LEAF_SHIFT 11
#define OBJ_LEAF_SPAN_SHIFT (OBJ_PAGE_SHIFT + OBJ_LEAF_SHIFT)
#define OBJ_LEAF_ORDER (OBJ_LEAF_SHIFT + 3 - OBJ_PAGE_SHIFT) /* frames of a leaf, log2 */
#define OBJ_MAX_OBJS 1024               /* per slab; the live bitmap's size */
#define OBJ_OUT_SLOTS 16                /* remote-free batches kept per heap */
#define OBJ_BATCH_MAX 64                /* objects per batch, then it is posted */
#define OBJ_OUT_BYTES_MAX (1u << 20)    /* bytes freed remotely since the last
					 * flush (posted ones too), then all
					 * batches are posted */
#define OBJ_DESC_SIZE 256u              /* slab descriptor, 16 per frame */
#define OBJ_SLAB_ORDERS 9               /* arrays by slab order; orders are 2..6 (classes_init) */
#define OBJ_SLAB_MIN_ORDER 4            /* 64 KiB slabs unless that is over OBJ_MAX_OBJS */
#define OBJ_BLOCK_CACHE_FRAMES 256      /* default per heap: 1 MiB of released slab blocks */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Pagemap entries. 0: not ours. A slab descriptor (64-byte aligned, so the
 * low bits are free): tag 0. The first frame of a large block: its order
 * and tag 1. Other frames of a large block below 2 MiB: tag 2 (interior).
 * Tag 3, with a kind in bits 2-3 and a value from bit 8: the first page of
 * an arena large object handed out (value: its pages) or in its heap's
 * large cache (pages), or the first frame of a block on the instance's
 * released-block stack (value: the next block's index + 1, the link). */
#define PM_TAG_MASK ((uintptr_t)3)
#define PM_LARGE ((uintptr_t)1)
#define PM_LARGE_TAIL ((uintptr_t)2)
#define PM_LARGE_ENTRY(order) (((uintptr_t)(order) << 8) | PM_LARGE)
#define PM_LARGE_ORDER(e) ((unsigned)((e) >> 8))
#define PM_X ((uintptr_t)3)
#define PM_X_LIVE ((uintptr_t)0)
#define PM_X_CACHED ((uintptr_t)1)
#define PM_X_STACKED ((uintptr_t)2)
#define PM_X_RETIRING ((uintptr_t)3) /* cached, on its way back to the arena */
#define PM_X_ENTRY(kind, v) (((uintptr_t)(v) << 8) | (kind) << 2 | PM_X)
#define PM_X_KIND(e) (((e) >> 2) & 3)
#define PM_X_VALUE(e) ((e) >> 8)
/* RETIRING's value: the range's pages, and above them the index of the
 * heap whose holder gives the range back (its own cache's, or another
 * heap's as a reclaimer), so that the CAS which ends a give-back clears
 * only the mark it stored (arena_give_back). */
#define PM_RETIRING_BY_SHIFT 11
#define PM_RETIRING(pages, by) \
	PM_X_ENTRY(PM_X_RETIRING, (pages) | (uintptr_t)(by) << PM_RETIRING_BY_SHIFT)

/* The per-heap cache of freed arena large objects: ranges of up to
 * OBJ_LC_MAX_PAGES pages in bins of four per power of two of their
 * page count (OBJ_LC_BINS of them up to 1024 pages). */
#define OBJ_LC_MAX_PAGES 1024u
_Static_assert(OBJ_LC_MAX_PAGES < (1u << PM_RETIRING_BY_SHIFT), "RETIRING's pages");
#define OBJ_LC_BINS 36u
/* The shortest range a request can take: a request that looks in the
 * cache (aligned to a page at most) is larger than the largest class.
 * Shorter large objects (a small size aligned above a page) are never
 * cached: no request could take them back, and in a full cache they
 * would evict ranges that serve. */
#define OBJ_LC_MIN_PAGES ((CAIRN_OBJ_SMALL_MAX >> OBJ_PAGE_SHIFT) + 1)
/* An allocation takes a range of its own bin or of the next OBJ_LC_ABOVE:
 * at most twice its length from OBJ_LC_MIN_PAGES (17: every request that
 * looks in the cache) up, and
 * with three, big's cache served 87% of its allocations against 65% with
 * one (see "Large caches: more bins, and what goes back" in the design). */
#define OBJ_LC_ABOVE 3u

enum slab_state {
	SLAB_UNUSED = 0,  /* descriptor on the heap's spare list */
	SLAB_CUR = 1,     /* the class's allocation slab (h->cur[cls]) */
	SLAB_AVAIL = 2,   /* on the class's avail list: has free objects (either list) */
	SLAB_FULL = 3,    /* every object handed out: on no list */
};

struct cairn_heap;

struct slab {
	/* Line 0, the owner's alone: what its fast paths write. */
	uintptr_t free;
	uintptr_t local_free;
	_Atomic uint32_t used;    /* slab_used, slab_used_set: read by stats */
	uint32_t capacity;        /* objects carved so far */
	uint8_t state;
	uint8_t damaged;          /* a corrupted link made us drop objects */
	uint8_t misplaced;        /* on a line desc_get rules out: no frame was left */
	struct slab *next, *prev; /* avail list, or the spare list */
	struct slab *frame_next;  /* first descriptor of a frame: the next frame */
	/* Line 1: what a remote free reads, written only when the slab is
	 * made and when its state changes. Kept off line 0 so that a CPU
	 * freeing into a slab its owner is allocating from does not take
	 * the owner's line away on every free (and back on every alloc). */
	/* The owner while a free by the owner is a plain push (state CUR or
	 * AVAIL, hardening off), else NULL: the free fast path's one test.
	 * Only the owner writes it; any CPU may read it (relaxed), and reads
	 * either the owner or NULL, never its own heap unless it owns s. */
	_Alignas(64) _Atomic(struct cairn_heap *) fast_owner;
	struct cairn_heap *owner; /* fixed for the slab's life */
	uint32_t size;            /* object size */
	uint32_t recip;           /* ceil(2^32 / size): index = off * recip >> 32 */
	uintptr_t base;           /* first object (virtual) */
	uintptr_t end;            /* base + nobjs * size */
	uint32_t nobjs;
	uint8_t cls, order;
	/* Lines 2-3: hardened, the objects handed out. Written by the
	 * owner (or claimer) alone, with relaxed loads and stores; read by a
	 * remote freer too (live_test), which for a valid free reads its
	 * object's bit set: the allocation that set it happened before the
	 * free, and the owner's later stores to the word keep that bit. */
	_Alignas(64) _Atomic uint64_t live[OBJ_MAX_OBJS / 64];
};

_Static_assert(sizeof(struct slab) <= OBJ_DESC_SIZE, "slab descriptor too big");
_Static_assert(__builtin_offsetof(struct slab, fast_owner) == 64, "line 1 of a slab");

/* One pending batch of remote frees, all for `dest`: objects linked
 * through their first word (encoded with dest's key when hardened), from
 * the newest (head) to the oldest (tail). Posted, the tail is the message:
 * its first word then names the head, flagged MSG_ONE_SLAB when every
 * object is of one slab, and the head's second word holds the count (when
 * head != tail), so the owner splices such a batch whole without walking
 * it (objects_remote.c). */
struct obj_out {
	struct cairn_heap *dest;
	uintptr_t head, tail;
	struct slab *slab; /* every object's slab so far, or NULL: several */
	uint32_t n;
};

#define MSG_ONE_SLAB ((uintptr_t)1) /* objects are 16-aligned: a low bit */

enum heap_state { HEAP_ONLINE = 0, HEAP_OFFLINE = 1, HEAP_CLAIMED = 2 };

/* Written by the heap's holder only (stat_add: no RMW), read by
 * anyone. A large object may be freed on another heap than the one that
 * allocated it, so one heap's large counts may wrap below zero; their sum
 * over all heaps is exact (mod 2^64) when no CPU is inside the instance. */
struct heap_stats {
	_Atomic uint64_t posted, remote_objects, collected, offline_collects;
	_Atomic uint64_t large, large_frames;
	_Atomic uint64_t slabs, slab_frames; /* slabs held, and their frames */
};

/*
 * Fields the statistics read while other CPUs may write them: a slab's
 * `used`, a heap's block_frames and lcache_pages, its heap_stats. Each
 * has one writer at a time (the slab's owner or claimer; the holder of
 * the heap's caches; the heap's holder), so a relaxed load and a relaxed
 * store make its update, never a read-modify-write: on the owner's fast path the same load and store a
 * plain increment makes, no lock (GCC spells them two instructions
 * longer). Relaxed is enough for the reader: stats is a snapshot, each
 * term a value its field held, no term ordered against another; exact
 * once every writer is quiet and the reader ordered after them.
 */
static inline uint32_t slab_used(const struct slab *s)
{
	return atomic_load_explicit(&s->used, memory_order_relaxed);
}

static inline void slab_used_set(struct slab *s, uint32_t n)
{
	atomic_store_explicit(&s->used, n, memory_order_relaxed);
}

/* The update and the read of any of them but `used` (32 or 64 bits, the
 * sum wrapping at the field's width): its one writer's relaxed load and
 * store, and anyone's relaxed load. */
#define stat_add(c, n)                                                             \
	do {                                                                       \
		__typeof__(c) stat_c_ = (c);                                       \
		atomic_store_explicit(stat_c_,                                     \
				      atomic_load_explicit(stat_c_, memory_order_relaxed) + (n), \
				      memory_order_relaxed);                       \
	} while (0)
#define stat_get(c) atomic_load_explicit((c), memory_order_relaxed)

/* Sizes up to OBJ_CLASS_TABLE_MAX go by 16-byte steps: (size + 15) >> 4. */
#define OBJ_CLASS_TABLE_MAX 1024u
#define OBJ_FAST_SLOTS (OBJ_CLASS_TABLE_MAX / 16 + 1)

struct cairn_heap {
	/* Set at creation, then only read (also by CPUs freeing remotely,
	 * so nothing written shares the line): the fast paths' constants. */
	uintptr_t key;
	bool harden;
	unsigned cpu;
	struct cairn_objects *o;
	/* copies of the instance's pagemap geometry (one line fewer per free) */
	uintptr_t pm_vbase, pm_span;
	_Atomic(_Atomic uintptr_t *) *pagemap;
	/* owner (or claimer) only */
	/* The allocation fast path's table, by 16-byte step of the size:
	 * fast[(size + 15) >> 4] == cur[obj_class(size)] unhardened, and
	 * &o->empty always when hardened (so a hardened heap's pop finds no
	 * object there and goes out of line: no harden test on the fast
	 * path). Written only through heap_set_cur, with cur. */
	_Alignas(64) struct slab *fast[OBJ_FAST_SLOTS];
	struct slab *cur[CAIRN_OBJ_CLASSES]; /* never NULL: &o->empty when none */
	/* Slabs with free objects besides the current one, doubly linked
	 * through next/prev, first in first out: a slab joins at the tail
	 * (its first free since it went FULL) and a refill takes the head,
	 * the one that has gathered frees the longest (objects_slab.c). */
	struct slab *avail[CAIRN_OBJ_CLASSES];
	struct slab *avail_tail[CAIRN_OBJ_CLASSES]; /* the last, or NULL */
	struct slab *spare;        /* unused descriptors */
	/* The two caches below are the holder's, and an exhausted heap's
	 * (caches_try): whoever holds caches_busy. */
	_Atomic unsigned caches_busy;
	/* Blocks of released slabs, by order, last in first out, linked
	 * through their first word: a new slab reuses memory that is still
	 * hot (and, on a host, already resident) before it asks for more. */
	uintptr_t blocks[OBJ_SLAB_ORDERS];
	_Atomic unsigned block_frames; /* read by stats: stat_add */
	/* Freed large objects of the arena, by bin of page count, last in
	 * first out, linked through their first word; their pagemap entries
	 * say CACHED (a second free of one is refused there). */
	uintptr_t lcache[OBJ_LC_BINS];
	unsigned lcache_n[OBJ_LC_BINS]; /* ranges in each bin */
	_Atomic unsigned lcache_pages; /* read by stats: stat_add */
	/* Ranges dropped with a corrupted link: still CACHED in the pagemap
	 * and allocated in the arena, on no list (leaked knowingly; a free of
	 * one is refused at its entry). validate counts them as listed. */
	unsigned lcache_lost;
	/* Descriptor frames, linked by frame_next: a frame is pushed with
	 * release (its zeroed descriptors and link before it), never taken
	 * off before destroy, so stats may walk the list (acquire) while
	 * the holder works. */
	_Atomic(struct slab *) desc_frames;
	struct obj_out out[OBJ_OUT_SLOTS];
	size_t out_bytes;          /* pushed since the last flush (OBJ_OUT_BYTES_MAX) */
	uintptr_t in_tail;         /* message queue: the consumer's end */
	struct heap_stats st;
	/* shared */
	_Alignas(64) _Atomic unsigned state;
	_Atomic uintptr_t in_head; /* message queue: producers exchange here */
	uintptr_t stub[2];         /* the queue's stub node (a fake object) */
} __attribute__((aligned(64)));

struct cairn_objects {
	struct cairn_frames *frames;
	struct cairn_fcache *fcache; /* NULL: straight to frames */
	uintptr_t vbase;           /* virtual address of phys_base */
	uintptr_t span;            /* bytes covered by the pagemap */
	cairn_phys_t phys_base;
	_Atomic(_Atomic uintptr_t *) *pagemap; /* one leaf pointer per 8 MiB */
	_Atomic uintptr_t *zero_leaf; /* where the leaf is not made: all 0, never written */
	unsigned pagemap_order;
	unsigned self_order;       /* frames of this instance and its heaps */
	unsigned ncpus;
	unsigned block_cache_frames; /* per heap */
	unsigned large_cache_pages;  /* per heap; 0: no large cache */
	unsigned released_max;       /* frames on the released stacks; 0: none */
	bool harden;
	uint8_t cls_order[CAIRN_OBJ_CLASSES];
	uint16_t cls_nobjs[CAIRN_OBJ_CLASSES];
	struct slab empty;         /* the slab of a class with none: never written */
	_Atomic uint64_t meta_frames;
	/* Large objects from a range arena (NULL: buddy blocks in the
	 * pagemap), optionally through a quantum cache (only unhardened). */
	struct cairn_arena *arena;
	struct cairn_qcache *qc;
	/* The largest pages + alignment slack the arena can serve (the
	 * config's large_max; unknown: UINT64_MAX, nothing refused). */
	uint64_t large_max;
	void (*arena_enter)(void), (*arena_leave)(void); /* NULL: no gate */
	/* Heaps are made on first use (a heap is 2.9 KiB, and most of a
	 * host's 256 slots are never used: their memory stays untouched).
	 * heap_made[i] goes UNMADE -> MAKING -> MADE once; MADE is stored
	 * with release after the heap is written, and read with acquire. */
	_Atomic uint8_t *heap_made; /* ncpus bytes, after this structure */
	struct cairn_heap *heaps;  /* ncpus of them, after heap_made */
	uint64_t seed;             /* free-list keys */
	/* Blocks of released slabs shared by every heap, one lock-free stack
	 * per order (objects_slab.c): what a departing heap gives back is
	 * what the next slab takes, before untouched frames. */
	_Alignas(64) _Atomic uint64_t released[OBJ_SLAB_ORDERS];
	_Alignas(64) _Atomic uint64_t released_frames;
};

enum { HEAP_UNMADE = 0, HEAP_MAKING = 1, HEAP_MADE = 2 };

static inline bool heap_is_made(struct cairn_objects *o, unsigned i)
{
	return atomic_load_explicit(&o->heap_made[i], memory_order_acquire) == HEAP_MADE;
}

struct cairn_heap *cairn__heap_make(struct cairn_objects *o, unsigned i);

/* Heap i, made first if need be. */
static inline struct cairn_heap *heap_get(struct cairn_objects *o, unsigned i)
{
	if (likely(heap_is_made(o, i)))
		return &o->heaps[i];
	return cairn__heap_make(o, i);
}

/* ---- size classes ---- */

/* Sizes up to OBJ_CLASS_TABLE_MAX: the class by 16-byte steps (every class
 * size is a multiple of 16), one load instead of the arithmetic below. */
extern const uint8_t cairn__obj_class_by16[OBJ_CLASS_TABLE_MAX / 16 + 1];

static inline unsigned obj_class(size_t size)
{
	if (size <= OBJ_CLASS_TABLE_MAX)
		return cairn__obj_class_by16[(size + 15) >> 4];
	size_t s = size - 1;
	unsigned e = 63u - (unsigned)__builtin_clzll(s);
	return 4 + (e - 6) * 4 + (unsigned)((s >> (e - 2)) & 3);
}

static inline size_t obj_class_size(unsigned c)
{
	if (c < 4)
		return (size_t)(c + 1) << 4;
	unsigned e = 6 + (c - 4) / 4, m = (c - 4) % 4;
	return ((size_t)1 << e) + ((size_t)(m + 1) << (e - 2));
}

/* Classes served through heap->fast: 0 .. obj_class(OBJ_CLASS_TABLE_MAX). */
#define OBJ_FAST_CLASSES 20u
_Static_assert(((OBJ_FAST_CLASSES - 4) % 4 == 0) &&
		       ((size_t)1 << (6 + (OBJ_FAST_CLASSES - 5) / 4)) +
				       ((size_t)4 << (6 + (OBJ_FAST_CLASSES - 5) / 4 - 2)) ==
			       OBJ_CLASS_TABLE_MAX,
	       "the last fast class ends at OBJ_CLASS_TABLE_MAX");

/* The class's allocation slab: cur, and (unhardened) the fast-path slots
 * of every size step the class serves: (size + 15) >> 4 for the sizes
 * above the class below it, up to its own. */
static inline void heap_set_cur(struct cairn_heap *h, unsigned cls, struct slab *s)
{
	h->cur[cls] = s;
	if (cls < OBJ_FAST_CLASSES && !h->harden)
		for (size_t i = cls ? obj_class_size(cls - 1) / 16 + 1 : 0;
		     i <= obj_class_size(cls) / 16; i++)
			h->fast[i] = s;
}

/* ---- free-list link encoding ---- */

static inline uintptr_t obj_rol(uintptr_t x)
{
	return x << 17 | x >> (sizeof(uintptr_t) * 8 - 17);
}

/* Hardened, a link is next ^ key ^ rol(address of the word): a write
 * after free with a plausible pointer decodes to garbage, which the
 * hardened pop catches. Unhardened, nothing would check a decoded link,
 * so links are plain pointers (two instructions fewer per operation). */
static inline uintptr_t obj_encode(const struct cairn_heap *h, uintptr_t slot, uintptr_t next)
{
	return h->harden ? next ^ h->key ^ obj_rol(slot) : next;
}

#define obj_decode obj_encode /* an involution */

/* A message's head info (its tail's first word) is encoded apart from
 * links: hardened, also xored with MSG_SALT, the top bit, which no address
 * of the objects' memory shares with its xor (a range of canonical
 * addresses lies in one half), nor 0. So an info decoded as a link, or a
 * link as an info, names no object: the owner tells a message's word from
 * a free-list link written over it (objects_remote.c, collect_free_again). */
#define MSG_SALT ((uintptr_t)1 << (sizeof(uintptr_t) * 8 - 1))

static inline uintptr_t msg_encode(const struct cairn_heap *h, uintptr_t m, uintptr_t info)
{
	return h->harden ? info ^ h->key ^ obj_rol(m) ^ MSG_SALT : info;
}

#define msg_decode msg_encode

static inline uintptr_t obj_word(uintptr_t p)
{
	return *(uintptr_t *)p;
}

static inline void obj_set_word(uintptr_t p, uintptr_t v)
{
	*(uintptr_t *)p = v;
}

/* The second word of an object in a message: the queue's link. */
static inline _Atomic uintptr_t *obj_qnext(uintptr_t p)
{
	return (_Atomic uintptr_t *)(p + sizeof(uintptr_t));
}

/* ---- slab geometry ---- */

static inline uint32_t slab_index(const struct slab *s, uintptr_t p)
{
	return (uint32_t)(((uint64_t)(p - s->base) * s->recip) >> 32);
}

/* Hardened, for a reader that does not own s (a remote free, a realloc
 * on another heap): p's index in s's bitmaps, or -1 when it is past s's
 * objects. Such a reader's reads of s's layout are not one snapshot: for
 * a freed p (a double free), s may be given back and its descriptor made
 * into a slab of another class between the reads that found p an object
 * of s and the ones here (descriptors are type-stable, not their
 * layout), and an index from the new base and size with p, an object of
 * neither, lies anywhere, past the bitmaps too. The count bounds it,
 * read after the index: every slab's is at most OBJ_MAX_OBJS (the
 * bitmaps' size; classes_init caps it, o->empty's is 0); the constant
 * keeps the bitmaps' bound free of any argument about what a racing
 * read returns. A valid p's slab cannot change (p holds it): its index
 * always passes. */
static inline int64_t slab_index_bounded(const struct slab *s, uintptr_t p)
{
	uint32_t i = slab_index(s, p);
	return i < s->nobjs && i < OBJ_MAX_OBJS ? (int64_t)i : -1;
}

/* Is p the start of an object of s? */
static inline bool slab_is_object(const struct slab *s, uintptr_t p)
{
	if (p - s->base >= s->end - s->base)
		return false;
	return (uintptr_t)slab_index(s, p) * s->size == p - s->base;
}

static inline bool live_test(const struct slab *s, uint32_t i)
{
	return atomic_load_explicit(&s->live[i / 64], memory_order_relaxed) >> (i % 64) & 1;
}

/* The owner (or claimer) only: a load and a store, no read-modify-write. */
static inline void live_flip(struct slab *s, uint32_t i)
{
	uint64_t w = atomic_load_explicit(&s->live[i / 64], memory_order_relaxed);
	atomic_store_explicit(&s->live[i / 64], w ^ (uint64_t)1 << (i % 64), memory_order_relaxed);
}

/* Hardened: the objects freed on another CPU whose message the owner has
 * not collected, one bit per object, in the frame after the descriptor's
 * (a hardened heap's descriptor frames are pairs: descriptors, then their
 * pending bitmaps), at the live bitmap's offset in its slot: on the lines
 * of its page the live bitmap is on in its own, so loading it after the
 * live bitmap waits for no store a load of the live bitmap does not wait
 * for (4 KiB aliasing, below). Set by the remote free with a
 * fetch-or, which refuses the free if the bit was set already (the object
 * is on its way to its owner: a second free); cleared by the owner's
 * collection with a fetch-and, before the object can be handed out again,
 * so the next valid remote free of it, which happens after that
 * allocation, finds it clear (both read-modify-write one word: the
 * modification order of the word, not a fence, orders them). The owner's
 * own free reads it (relaxed) and refuses an object whose remote free is
 * still on its way. Only read-modify-writes and loads touch it besides
 * the zeroing of a new slab's. */
_Static_assert(__builtin_offsetof(struct slab, live) + OBJ_MAX_OBJS / 8 <= OBJ_DESC_SIZE,
	       "a pending bitmap fits its descriptor's slot of the next frame");

static inline _Atomic uint64_t *slab_pending(const struct slab *s, uint32_t i)
{
	return (_Atomic uint64_t *)((uintptr_t)s->live + OBJ_PAGE) + i / 64;
}

static inline bool pending_test(const struct slab *s, uint32_t i)
{
	return atomic_load_explicit(slab_pending(s, i), memory_order_relaxed) >> (i % 64) & 1;
}

/* Frames of one block of descriptors: 1, hardened 2 (the pending bitmaps). */
static inline unsigned desc_frame_order(const struct cairn_heap *h)
{
	return h->harden ? 1 : 0;
}

/* ---- pagemap ---- */

static inline uintptr_t pm_lookup_in(_Atomic(_Atomic uintptr_t *) *pagemap, uintptr_t vbase,
				     uintptr_t span, uintptr_t p)
{
	uintptr_t off = p - vbase;
	if (unlikely(off >= span))
		return 0;
	_Atomic uintptr_t *leaf = atomic_load_explicit(&pagemap[off >> OBJ_LEAF_SPAN_SHIFT],
						       memory_order_acquire);
	return atomic_load_explicit(&leaf[(off >> OBJ_PAGE_SHIFT) & ((1u << OBJ_LEAF_SHIFT) - 1)],
				    memory_order_relaxed);
}

static inline uintptr_t pm_lookup(const struct cairn_objects *o, uintptr_t p)
{
	return pm_lookup_in(o->pagemap, o->vbase, o->span, p);
}

/* The entry of page p whose leaf exists (p is in a slab or a large
 * object with an entry). */
static inline _Atomic uintptr_t *pm_slot(const struct cairn_objects *o, uintptr_t p)
{
	uintptr_t off = p - o->vbase;
	_Atomic uintptr_t *leaf = atomic_load_explicit(&o->pagemap[off >> OBJ_LEAF_SPAN_SHIFT],
						       memory_order_acquire);
	return &leaf[(off >> OBJ_PAGE_SHIFT) & ((1u << OBJ_LEAF_SHIFT) - 1)];
}

/* The large cache's bin of a range of 1..OBJ_LC_MAX_PAGES pages: 1-4
 * alone, then four per power of two (bin b holds lengths above the
 * lengths of bin b - 1), so any range of bin b + 1 fits a request of b. */
static inline unsigned lc_bin(uint64_t pages)
{
	if (pages <= 4)
		return (unsigned)pages - 1;
	uint64_t s = pages - 1;
	unsigned e = 63u - (unsigned)__builtin_clzll(s);
	return 4 + (e - 2) * 4 + (unsigned)((s >> (e - 2)) & 3);
}

/* Is r (a link of a large cache) a cached range's start? */
static inline bool lc_is_cached(const struct cairn_objects *o, uintptr_t r)
{
	uintptr_t e = (r & (OBJ_PAGE - 1)) ? 0 : pm_lookup(o, r);
	return (e & PM_TAG_MASK) == PM_X && PM_X_KIND(e) == PM_X_CACHED;
}

/* The same through the heap's copies of the geometry (the free fast path). */
static inline uintptr_t heap_pm_lookup(const struct cairn_heap *h, uintptr_t p)
{
	return pm_lookup_in(h->pagemap, h->pm_vbase, h->pm_span, p);
}

/* Slab descriptors and the pagemap: 4 KiB aliasing.
 *
 * The free fast path starts with two loads whose addresses depend only on
 * the pointer: the top-array entry and the leaf entry of its page. An
 * out-of-order core issues them as soon as the pointer is known, while the
 * stores of the allocation before (`free` and `used` in the descriptor's
 * first line) still wait to retire behind whatever the caller did with the
 * object. A load is matched against older stores on its address bits below
 * 4 KiB first (the physical page is known later), so a load whose offset in
 * its page lands where such a store's does waits for that store: the free
 * then starts only when the caller's work has retired, instead of beside
 * it. cache-scratch (malloc(8), 64 byte writes, free, in a loop) ran at
 * 41.5 ns an iteration with its slab's descriptor first in its frame (line
 * 0, which holds the top entries of the first 64 MiB, and here also the
 * leaf entry of the first page of its 16 KiB slab) and at 32 ns with it
 * anywhere else. So a slab's descriptor is chosen (desc_get) with its first
 * line on another line of its page than the top entry and every leaf entry
 * of the slab's frames, and hardened also its live bitmap's lines (2-3:
 * the hardened pop stores there, the hardened free loads the same entries
 * first); validate checks it. The match is coarser than the bytes (a store
 * at offset 0x28 held a load at 0x20), hence whole lines. Placement is a
 * preference, never a reason to fail: with no frame left for a fresh
 * descriptor frame, any spare is taken and marked `misplaced`.
 *
 * The period is the CPU's (address bits 11:0), not the frame size; a
 * descriptor frame is one period, so its slot k starts on line 4k. */
#define OBJ_ALIAS_PERIOD 4096u
_Static_assert(OBJ_PAGE == OBJ_ALIAS_PERIOD, "a descriptor frame is one aliasing period");
_Static_assert(OBJ_DESC_SIZE % 64 == 0 && OBJ_ALIAS_PERIOD / 64 == 64,
	       "descriptors start on lines; a period's lines fit a 64-bit mask");

static inline unsigned page_line(uintptr_t a)
{
	return (unsigned)(a >> 6) & (OBJ_ALIAS_PERIOD / 64 - 1);
}

/* The lines of a period a descriptor can start on (every OBJ_DESC_SIZE). */
#define DESC_LINE_STARTS (~(uint64_t)0 / ((1u << (OBJ_DESC_SIZE / 64)) - 1))

/* The lines a descriptor for a slab on the block at b (2^order frames, its
 * leaf made) must not start on, as a mask of the 64 lines of a period:
 * bit L set rules out a descriptor whose first line is line L. The top
 * entry's line and the leaf entries' lines (8 << order bytes, aligned to
 * their size, so within one page); hardened, also the two and three lines
 * before each of those (a descriptor starting there has its live bitmap,
 * its lines 2-3, on it).
 * One acquire load of the leaf pointer, as pm_slot. */
static inline uint64_t desc_ruled_out(const struct cairn_objects *o, uintptr_t b, unsigned order,
				      bool harden)
{
	uintptr_t off = b - o->vbase;
	_Atomic(_Atomic uintptr_t *) *top = &o->pagemap[off >> OBJ_LEAF_SPAN_SHIFT];
	_Atomic uintptr_t *leaf = atomic_load_explicit(top, memory_order_acquire);
	uintptr_t first = (uintptr_t)&leaf[(off >> OBJ_PAGE_SHIFT) & ((1u << OBJ_LEAF_SHIFT) - 1)];
	unsigned n = (unsigned)(((sizeof(uintptr_t) << order) + 63) >> 6); /* <= 32 */
	uint64_t lines = (uint64_t)1 << page_line((uintptr_t)top);
	lines |= (((uint64_t)1 << n) - 1) << page_line(first);
	return harden ? lines | lines >> 2 | lines >> 3 : lines;
}

/* Does a descriptor at d start on a line of `ruled_out`? */
static inline bool desc_line_ruled_out(uint64_t ruled_out, const struct slab *d)
{
	return ruled_out >> page_line((uintptr_t)d) & 1;
}

/* A frame of descriptors always has a slot off every ruled-out line. A
 * slot is 4 lines, and a ruled-out line rules out the one slot it is in
 * (hardened too: a descriptor's lines 0, 2 and 3 are its own slot's). The
 * bound is for the largest order the arrays by order admit
 * (OBJ_SLAB_ORDERS - 1), not the largest classes_init computes (6: 512 B
 * of leaf entries, two slots): 1 +: the top entry's slot; then the leaf
 * entries' slots; the last + 1: a leaf range smaller than a slot still
 * rules one out. */
_Static_assert(1 + (sizeof(uintptr_t) << (OBJ_SLAB_ORDERS - 1)) / OBJ_DESC_SIZE + 1 <
		       OBJ_PAGE / OBJ_DESC_SIZE,
	       "a descriptor frame has a slot off every pagemap entry of its slab");

/* The entry of page p, creating its leaf; NULL when no frame is left. */
_Atomic uintptr_t *cairn__pm_entry(struct cairn_objects *o, uintptr_t p);
/* Set the entries of npages pages from p (leaves must exist: cairn__pm_entry). */
void cairn__pm_set(struct cairn_objects *o, uintptr_t p, uintptr_t npages, uintptr_t v);
int cairn__pm_create(struct cairn_objects *o);
void cairn__pm_destroy(struct cairn_objects *o);

/* ---- slabs (objects_slab.c) ---- */
/* Every change of a slab's state goes through here (fast_owner follows). */
static inline void slab_set_state(struct cairn_heap *h, struct slab *s, enum slab_state st)
{
	s->state = st;
	bool plain_push = (st == SLAB_CUR || st == SLAB_AVAIL) && !h->harden;
	atomic_store_explicit(&s->fast_owner, plain_push ? h : NULL, memory_order_relaxed);
}

/* ---- a heap's caches, and taking them back ----
 *
 * A heap's block cache and large cache are filled and used by its holder,
 * but a heap that meets exhaustion empties every other heap's too
 * (cairn__caches_reclaim): memory cached for one CPU must not be why
 * another CPU's allocation fails. The two sides exclude each other with
 * one word per heap that each side only ever tries to take, with one
 * exchange: a holder that finds it taken does without its caches for that
 * call (a block goes to the released stacks or the frames, a freed large
 * range to the arena, an allocation to the next source, a flush has
 * nothing to do), and a reclaimer skips a heap whose word is taken. A
 * reclaimer holds the word across both caches' flushes, so a holder whose
 * flush finds it taken leaves nothing behind: what it cached before is on
 * the lists being emptied, and what it releases meanwhile goes away.
 * Nobody waits for anybody, so neither side can be stalled by the other
 * being preempted. The exchange acquires
 * and the store that gives the word back releases, so each holder of the
 * word sees the lists, counts and links the previous holder left (the
 * links are in the cached memory itself, plain words). A reclaimer never
 * touches slabs: a kept empty slab (cairn__slab_after_free) stays its
 * heap's. Cost to the holder: one exchange and one store per slab made or
 * released and per large object through its cache, none on the object
 * paths. */
static inline bool caches_try(struct cairn_heap *h)
{
	return !atomic_exchange_explicit(&h->caches_busy, 1, memory_order_acquire);
}

static inline void caches_done(struct cairn_heap *h)
{
	atomic_store_explicit(&h->caches_busy, 0, memory_order_release);
}

void cairn__caches_reclaim(struct cairn_heap *self);

struct slab *cairn__slab_new(struct cairn_heap *h, unsigned cls);
void cairn__slab_release(struct cairn_heap *h, struct slab *s);
void cairn__slab_extend(struct cairn_heap *h, struct slab *s);
void cairn__avail_remove(struct cairn_heap *h, struct slab *s);
void cairn__avail_push(struct cairn_heap *h, struct slab *s);
void cairn__heap_release_empty(struct cairn_heap *h);
void cairn__heap_flush_blocks(struct cairn_heap *h);
void cairn__heap_destroy_slabs(struct cairn_heap *h);
void cairn__released_drain(struct cairn_objects *o);
/* The heap's cached large objects back to the arena (objects.c): by its
 * holder; or with the caches held already, by the holder of `by` (h, or a
 * reclaimer's own heap: the giver its RETIRING entries name). */
void cairn__large_cache_flush(struct cairn_heap *h);
void cairn__large_cache_flush_held(struct cairn_heap *h, struct cairn_heap *by);

/* The embedder's gate, if any: around every call into the arena, every
 * post's push and every claim of an offline heap (objects_remote.c).
 * Calls nest (a claim gives the heap's cached large objects back to the
 * arena). */
static inline void arena_enter(const struct cairn_objects *o)
{
	if (o->arena_enter)
		o->arena_enter();
}

static inline void arena_leave(const struct cairn_objects *o)
{
	if (o->arena_leave)
		o->arena_leave();
}

/* ---- remote frees and messages (objects_remote.c) ---- */
void cairn__remote_post(struct cairn_heap *h, struct obj_out *b);
void cairn__remote_flush(struct cairn_heap *h);
bool cairn__heap_inbox_pending(struct cairn_heap *h);
void cairn__heap_collect(struct cairn_heap *h, bool offline);
void cairn__heap_queue_init(struct cairn_heap *h);

/* ---- the common free of an object into its owner's slab (objects.c) ---- */
/* 0, or the error reported (p was left alone). */
int cairn__slab_free_owned(struct cairn_heap *h, struct slab *s, uintptr_t p, bool offline);
/* Hardened: the same for an object collected from a message. */
int cairn__slab_free_collected(struct cairn_heap *h, struct slab *s, uintptr_t p, bool offline);
/* After a free into s (its owner's, or a collected one): FULL -> AVAIL, or
 * an empty slab back. */
void cairn__slab_after_free(struct cairn_heap *h, struct slab *s, bool offline);

/* The free of p by h when s->fast_owner == h (unhardened: a plain link),
 * onto `free`, where the next allocation from s takes it.
 * False when p was the last object out: then cairn__slab_after_free. */
static inline bool slab_push_plain(struct slab *s, uintptr_t p)
{
	obj_set_word(p, s->free);
	s->free = p;
	uint32_t used = slab_used(s) - 1;
	slab_used_set(s, used);
	return used != 0;
}
void cairn__obj_report(int err, const char *what, uintptr_t a, uintptr_t b);

#endif /* CAIRN_OBJECTS_LAYOUT_H */
