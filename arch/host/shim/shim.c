/* SPDX-License-Identifier: MIT */
/*
 * The malloc shim: the C allocation API on one cairn objects instance.
 *
 * Built twice: as a static library with cairn_-prefixed entry points only
 * (tests that must not replace the system allocator), and as
 * libcairn-malloc.so, which also exports malloc, free, ... for LD_PRELOAD.
 *
 * Threads are CPUs: a thread takes a CPU slot of the host port on its first
 * call, brings that slot's heap online, and at exit (a pthread key
 * destructor) takes it offline and gives the slot back, so slots and their
 * heaps are recycled (the slot of a thread whose destructor never ran is
 * given back once the kernel says the thread is gone: slots_sweep). A
 * thread that finds every slot taken, or that calls in after its
 * destructor ran, uses one more heap shared under a spinlock.
 *
 * Before the instance exists (and while it is being made, e.g. when
 * pthread_atfork allocates), requests are served from a static buffer by
 * a bump pointer; such blocks are never reused.
 *
 * Huge requests, those no span of the memory holds (above 1 GiB, or so
 * aligned that the span is), get a private mapping each, with a header
 * in the page before the block; a pointer outside both the memory and
 * the bootstrap buffer is one of them.
 *
 * Large objects (above 64 KiB) come from a range arena whose spans are
 * 64 MiB blocks of frames used in place (the identity map of the private
 * mapping: no remapping, so a forked child's copy is whole). The arena's
 * tree locks the nodes a writer changes, and a fork while another thread
 * holds such a lock would leave the child's copy locked for ever; so every
 * call into the arena passes a gate (the instance's arena_enter/leave
 * hooks) that the fork handler closes, waiting for the threads inside to
 * leave. Small objects pass it only to post a batch of remote frees (a
 * child must not inherit a queue with a link owed by a thread it does not
 * have: a heap going offline waits for such a link) and to claim a
 * departed thread's heap to collect its messages (nor a heap claimed by
 * such a thread: its slot is free, so the child's next thread would wait
 * for ever to bring that heap online). So does a huge block's move by
 * realloc (nor an entry marked moving, which no free would find).
 */
#define _GNU_SOURCE
#include <cairn/arena.h>
#include <cairn/error.h>
#include <cairn/frames.h>
#include <cairn/host.h>
#include <cairn/objects.h>
#include <cairn/port.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hook.h"
#include "shim.h"

#define SHIM_SLOTS 255                 /* host CPU slots for threads */
#define SHIM_SHARED SHIM_SLOTS         /* the shared heap's index */
#define SHIM_DEFAULT_GIB 64            /* simulated physical memory (NORESERVE) */
#define SHIM_MIN_MEMORY (64ull << 20)  /* the least of it under a limit */
#define GIB (1ull << 30)
#define PAGE 4096ul
#define TLS __attribute__((tls_model("initial-exec"))) _Thread_local

enum { UNINIT, INITIALISING, READY, FAILED };

static _Atomic int state;
static struct cairn_objects *objs;
static struct cairn_frames *frames;
static uint64_t mem_size;              /* bytes: GiB, or a power of two below one */
/* The memory's addresses, [mem_lo, mem_lo + mem_span): written by the
 * instance's maker before its READY (release), read only by threads that
 * saw READY (acquire; a thread with a heap did). */
static uintptr_t mem_lo, mem_span;
static _Atomic uint64_t grown_gib;     /* GiB handed to the frame allocator */
static atomic_flag grow_lock = ATOMIC_FLAG_INIT;
static pthread_key_t exit_key;
static atomic_flag shared_lock = ATOMIC_FLAG_INIT;

static struct cairn_arena large_arena;
static struct cairn_frames_source large_fs;
static struct cairn_arena_source large_src;

/* The fork gate: a thread sets its slot's flag, then reads the gate; the
 * forking thread closes the gate, then reads every flag. Both sides are
 * seq_cst, so one of them sees the other (store-load, Dekker). */
static _Atomic int fork_gate;
static struct {
	_Alignas(64) _Atomic unsigned char in;
} in_large[SHIM_SLOTS]; /* a line each: set and cleared by one thread */

static TLS struct cairn_heap *my_heap;
static TLS unsigned my_slot;
static TLS int in_shim;     /* making the instance or registering: no recursion */
static TLS int thread_gone; /* the key destructor ran */
static TLS unsigned gate_depth; /* large_enter calls not yet left */
/* This thread closed the fork gate: its prepare handlers not yet matched
 * by a parent or child handler (a fork handler that runs inside the
 * shim's may fork again: the inner fork finds everything held). */
static TLS unsigned forking;
static TLS int swept;       /* this thread looked for slots of dead threads */
/* A thread without a slot looks for one again only after a slot was given
 * back since it last looked (slots_freed moved): otherwise every call of
 * such a thread would try all the slots. */
static _Atomic uint64_t slots_freed;
static TLS uint64_t slots_seen;
static TLS int looked;

/* Who holds each slot: (registration number << 32) | kernel thread id, or
 * 0 (free, or in a forked child, a slot of a thread of the parent). A
 * thread whose key destructor never runs keeps its slot after it exits:
 * glibc runs destructors for at most PTHREAD_DESTRUCTOR_ITERATIONS rounds,
 * and a first call in the last one (another key's destructor) or after
 * them (glibc frees other threads' stacks from an exiting detached thread)
 * sets the shim's key too late. A thread that finds every slot taken asks
 * the kernel which holders are gone and gives their slots back. */
static _Atomic uint64_t slot_owner[SHIM_SLOTS];
static _Atomic uint32_t owner_seq;

/* ---- bootstrap: a static bump allocator ---- */

#define BOOT_SIZE (1ul << 20)
static _Alignas(4096) unsigned char boot[BOOT_SIZE];
static _Atomic size_t boot_used;

/* One compare (unsigned: below the buffer wraps high). A bootstrap
 * block is freed by threads that have a heap, and the heap would report
 * it as never handed out: free's fast path takes only addresses in the
 * memory (cairn_heap_covers), which the buffer is not. */
static inline bool is_boot(const void *p)
{
	return (uintptr_t)p - (uintptr_t)boot < BOOT_SIZE;
}

/* A block with its size in the 16 bytes before it. The alignment is the
 * address's: the buffer itself is aligned to a page only. */
static void *boot_alloc(size_t size, size_t align)
{
	if (align < 16)
		align = 16;
	if (size > BOOT_SIZE || align > BOOT_SIZE) /* (before the rounding, which would wrap) */
		return NULL;
	size = (size + 15) & ~(size_t)15;
	uintptr_t base = (uintptr_t)boot;
	size_t old = atomic_load_explicit(&boot_used, memory_order_relaxed), at;
	do {
		at = ((base + old + 16 + align - 1) & ~(uintptr_t)(align - 1)) - base;
		if (at + size > BOOT_SIZE)
			return NULL;
	} while (!atomic_compare_exchange_weak_explicit(&boot_used, &old, at + size,
							memory_order_relaxed,
							memory_order_relaxed));
	*(size_t *)(boot + at - 16) = size;
	return boot + at;
}

static size_t boot_size(const void *p)
{
	return *(const size_t *)((const unsigned char *)p - 16);
}

/* ---- huge blocks: a mapping each ---- */

/* Where the mapping is, in the page before the block. */
struct huge_hdr {
	uintptr_t base;
	size_t len;
};

/* The live huge blocks' addresses, 0 for none: a pointer outside the
 * memory is one only if found here (a foreign one is reported, never
 * followed), and of two frees of one block only one takes it out (CAS).
 * Open addressing from a hash of the address; a slot emptied leaves a
 * hole, so a search goes round the whole table before it gives up, which
 * only a pointer that is not a huge block makes it do. Full: ENOMEM. */
#define HUGE_SLOTS 4096
static _Atomic uintptr_t huge_live[HUGE_SLOTS];

/* A slot's value while a realloc moves its block: the old address
 * marked (a huge block is page aligned). No search matches it, so a free
 * or usable size of the old address meanwhile (the caller's bug) is
 * reported, not followed; and no register takes the slot, which is not
 * empty: the moved block always has it to go back to. */
#define HUGE_MOVING 1u

static unsigned huge_hash(uintptr_t p)
{
	return (unsigned)(((p >> 12) * 0x9e3779b97f4a7c15ull) >> 52) & (HUGE_SLOTS - 1);
}

/* Release: the header written before is seen by whoever finds p. */
static bool huge_register(uintptr_t p)
{
	unsigned h = huge_hash(p);
	for (unsigned i = 0; i < HUGE_SLOTS; i++) {
		_Atomic uintptr_t *s = &huge_live[(h + i) & (HUGE_SLOTS - 1)];
		uintptr_t empty = 0;
		if (!atomic_load_explicit(s, memory_order_relaxed) &&
		    atomic_compare_exchange_strong_explicit(s, &empty, p, memory_order_release,
							    memory_order_relaxed))
			return true;
	}
	return false;
}

/* (A huge block is page aligned: no other address is one, nor matches a
 * slot marked HUGE_MOVING.) */
static _Atomic uintptr_t *huge_find(uintptr_t p)
{
	if (p & (PAGE - 1))
		return NULL;
	unsigned h = huge_hash(p);
	for (unsigned i = 0; i < HUGE_SLOTS; i++) {
		_Atomic uintptr_t *s = &huge_live[(h + i) & (HUGE_SLOTS - 1)];
		if (atomic_load_explicit(s, memory_order_acquire) == p)
			return s;
	}
	return NULL;
}

static inline bool in_memory(const void *p)
{
	return (uintptr_t)p - mem_lo < mem_span;
}

/* p (not NULL, not a boot block) is a huge block: before the instance is
 * READY nothing else can exist, after it everything else is in the
 * memory. */
static bool is_huge(const void *p)
{
	return atomic_load_explicit(&state, memory_order_acquire) != READY || !in_memory(p);
}

static struct huge_hdr *huge_hdr(const void *p)
{
	return (struct huge_hdr *)p - 1;
}

/* Could a span of the memory's arena hold this request? One is a buddy
 * block: the object's pages plus its alignment beyond a page, rounded up
 * to a power of two, at most 1 GiB. What none holds is a huge block. */
static bool span_fits(size_t size, size_t align)
{
	if (size > GIB || align > GIB)
		return false;
	size_t pages = (size + PAGE - 1) & ~(PAGE - 1); /* no overflow: size <= 1 GiB */
	return pages + (align > PAGE ? align - PAGE : 0) <= GIB;
}

/* A mapping of the header's page, the block's pages and the alignment's
 * slack, trimmed to the aligned block. errno is left as it was (the
 * caller says ENOMEM, or for posix_memalign returns it). */
static void *huge_alloc(size_t size, size_t align)
{
	size_t a = align > PAGE ? align : PAGE;
	if (size > (SIZE_MAX >> 2) || a > (SIZE_MAX >> 2))
		return NULL; /* (below that, nothing that follows overflows) */
	size_t pages = (size + PAGE - 1) & ~(PAGE - 1);
	size_t len = PAGE + pages + (a - PAGE);
	int saved = errno;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	errno = saved;
	if (m == MAP_FAILED)
		return NULL;
	uintptr_t base = (uintptr_t)m, end = base + len;
	uintptr_t p = (base + PAGE + a - 1) & ~(uintptr_t)(a - 1);
	if (p - PAGE > base)
		munmap((void *)base, p - PAGE - base);
	if (p + pages < end)
		munmap((void *)(p + pages), end - (p + pages));
	struct huge_hdr *h = huge_hdr((void *)p);
	h->base = p - PAGE;
	h->len = PAGE + pages;
	if (!huge_register(p)) {
		munmap((void *)h->base, h->len);
		errno = saved;
		return NULL;
	}
	errno = saved;
	return (void *)p;
}

/* p outside the memory: one of the huge blocks, or reported. */
static bool huge_valid(const void *p)
{
	if (huge_find((uintptr_t)p))
		return true;
	cairn_port_report(CAIRN_EINVAL, "shim: not a block it handed out", (uintptr_t)p, 0);
	return false;
}

static void huge_free(void *p)
{
	_Atomic uintptr_t *s = huge_find((uintptr_t)p);
	uintptr_t v = (uintptr_t)p;
	if (!s || !atomic_compare_exchange_strong_explicit(s, &v, 0, memory_order_acquire,
							   memory_order_relaxed)) {
		cairn_port_report(CAIRN_EINVAL, "shim: not a block it handed out", (uintptr_t)p, 0);
		return;
	}
	struct huge_hdr *h = huge_hdr(p);
	int saved = errno;
	munmap((void *)h->base, h->len);
	errno = saved;
}

static size_t huge_usable(const void *p)
{
	const struct huge_hdr *h = huge_hdr(p);
	return h->base + h->len - (uintptr_t)p;
}

/* ---- the instance ---- */

static void thread_exit(void *arg);

static void slot_own(unsigned slot)
{
	uint32_t seq = atomic_fetch_add_explicit(&owner_seq, 1, memory_order_relaxed) + 1;
	atomic_store_explicit(&slot_owner[slot], (uint64_t)seq << 32 | (uint32_t)gettid(),
			      memory_order_relaxed);
}

/* Give back the slots of threads that are gone (tgkill: ESRCH) while they
 * held one. The registration number keeps a slot given back and taken
 * again meanwhile, even by a thread with the dead one's id, from being
 * given back twice. The dead thread's heap stays ONLINE, as it left it,
 * for the slot's next thread. (Its stores to the heap precede its exit,
 * which precedes the ESRCH: the kernel orders them, not C11.) */
static bool slots_sweep(void)
{
	int saved = errno;
	pid_t pid = getpid();
	bool freed = false;
	for (unsigned i = 0; i < SHIM_SLOTS; i++) {
		uint64_t v = atomic_load_explicit(&slot_owner[i], memory_order_relaxed);
		if (!v || syscall(SYS_tgkill, pid, (pid_t)(uint32_t)v, 0) == 0 || errno != ESRCH)
			continue;
		if (atomic_compare_exchange_strong_explicit(&slot_owner[i], &v, 0,
							    memory_order_acquire,
							    memory_order_relaxed)) {
			cairn_host_cpu_release(i);
			atomic_fetch_add_explicit(&slots_freed, 1, memory_order_relaxed);
			freed = true;
		}
	}
	errno = saved;
	return freed;
}

static bool ready(void);

static void atfork_prepare(void)
{
	if (forking) { /* a fork from a fork handler run inside ours */
		forking++;
		return;
	}
	/* No fork copies the instance half made: a child would wait for
	 * its maker, a thread it does not have, for ever. Waiting for a
	 * maker seen at work is not enough, as a thread may start making it
	 * just after the look; so the fork makes it, or waits for the thread
	 * making it (it takes none of the locks a fork holds, and forks
	 * nowhere). (in_shim: this thread is inside the shim, forking from
	 * a signal handler; it must not wait for itself. Beyond that, such a
	 * fork is not provided for: fork is not async-signal-safe, and one
	 * that interrupts a call may wait for what that call holds, as it
	 * would in glibc's malloc.) */
	if (!in_shim)
		(void)ready();
	while (atomic_flag_test_and_set_explicit(&grow_lock, memory_order_acquire))
		cairn_port_pause();
	while (atomic_flag_test_and_set_explicit(&shared_lock, memory_order_acquire))
		cairn_port_pause();
	forking = 1;
	atomic_store_explicit(&fork_gate, 1, memory_order_seq_cst);
	for (unsigned i = 0; i < SHIM_SLOTS; i++)
		while (atomic_load_explicit(&in_large[i].in, memory_order_seq_cst)) {
			CAIRN_SHIM_HOOK(CAIRN_SHIM_HOOK_GATE_WAIT, &in_large[i]);
			cairn_port_pause();
		}
}

static void atfork_parent(void)
{
	if (--forking)
		return; /* the outer fork's handlers release them */
	atomic_store_explicit(&fork_gate, 0, memory_order_release);
	atomic_flag_clear_explicit(&shared_lock, memory_order_release);
	atomic_flag_clear_explicit(&grow_lock, memory_order_release);
}

static void atfork_child(void)
{
	/* Only this thread exists now. The memory is a private mapping, so
	 * the child has its own copy of everything; other threads' slots stay
	 * taken (their heaps may have been mid-operation, never the arena).
	 * Their gate flags are cleared: a thread that arrived after the
	 * prepare handler had looked at its flag may have set it, for the few
	 * instructions before it saw the gate closed, just as the fork copied
	 * it, and the child's own next fork would wait for it for ever. */
	for (unsigned i = 0; i < SHIM_SLOTS; i++)
		atomic_store_explicit(&in_large[i].in, 0, memory_order_relaxed);
	/* The other threads' slots stay taken for good: they are not here,
	 * and a thread that was in a call left its heap half written. This
	 * one holds its slot under its new thread id. */
	for (unsigned i = 0; i < SHIM_SLOTS; i++)
		atomic_store_explicit(&slot_owner[i], 0, memory_order_relaxed);
	if (my_heap)
		slot_own(my_slot);
	atfork_parent(); /* (inside an outer fork: its handlers go on here) */
}

/* Around every call into the arena, every post of remote frees and
 * every claim of an offline heap (the instance's hooks). A thread without a slot gets there only on the
 * shared heap, under shared_lock, which the fork handler takes. The calls
 * nest (a claim gives the heap's cached large objects back to the arena):
 * only the outermost sets and clears the flag, so an inner one never
 * clears it, or waits at the gate, in the middle of an outer one. The
 * thread that closed the gate passes it (fork handlers registered before
 * the shim's run after it and may free): what it does there is done
 * before it forks, and the others are kept out. */
static void large_enter(void)
{
	if (!my_heap || gate_depth++ || forking)
		return;
	for (;;) {
		atomic_store_explicit(&in_large[my_slot].in, 1, memory_order_seq_cst);
		if (!atomic_load_explicit(&fork_gate, memory_order_seq_cst))
			return;
		atomic_store_explicit(&in_large[my_slot].in, 0, memory_order_release);
		while (atomic_load_explicit(&fork_gate, memory_order_acquire))
			sched_yield();
	}
}

static void large_leave(void)
{
	if (my_heap && !--gate_depth && !forking)
		atomic_store_explicit(&in_large[my_slot].in, 0, memory_order_release);
}

static uint64_t env_gib(void)
{
	const char *s = getenv("CAIRN_MEMORY_GIB");
	uint64_t v = 0;
	while (s && *s >= '0' && *s <= '9')
		v = v * 10 + (uint64_t)(*s++ - '0');
	return v && v <= 4096 ? v : SHIM_DEFAULT_GIB;
}

/* The simulated memory: CAIRN_MEMORY_GIB, or under an address-space
 * limit (ulimit -v: the NORESERVE mapping counts against it) that refuses
 * it, half as much (whole GiB down to one, then powers of two), and so on
 * down to SHIM_MIN_MEMORY. Without that fallback no instance was made and
 * everything came from the 1 MiB bootstrap buffer. The reservation is
 * the memory and its alignment (cairn_host_init: 1 GiB, or a smaller
 * memory's own size), so with 1 GiB the least, it took 2 GiB of address
 * space: under `ulimit -v 1500000` python3 and sort failed as if there
 * were no fallback. (A failed reservation leaves nothing mapped.) */
static bool reserve_memory(void)
{
	for (mem_size = env_gib() * GIB;;
	     mem_size = mem_size > GIB ? mem_size / GIB / 2 * GIB : mem_size / 2) {
		if (!cairn_host_init_private(SHIM_SLOTS, 0, mem_size))
			return true;
		if (mem_size <= SHIM_MIN_MEMORY)
			return false;
	}
}

/* The frame allocator starts with the first GiB (all of a smaller memory)
 * and is handed one more GiB (a run-time region, its metadata mapped
 * apart: add_gib) whenever an allocation fails, up to mem_size: start-up
 * cost and metadata stay proportional to what a program uses. */
static bool make_instance(void)
{
	if (!reserve_memory())
		return false;
	uint64_t first = mem_size < GIB ? mem_size : GIB;
	struct cairn_mem_range map[] = { { 2ull << 20, first - (2ull << 20) } };
	struct cairn_frames_config fcfg = { .ncpus = SHIM_SLOTS };
	if (cairn_frames_init(&frames, map, 1, &fcfg))
		return false;
	atomic_store(&grown_gib, 1);
	/* Large objects: 64 MiB blocks of frames, in place, cut to pages.
	 * Spans that large are seldom entirely free, so they seldom go back
	 * (a new span is fresh memory the process must fault in), and first
	 * fit reuses the lowest, hottest free pages. A memory below 256 MiB
	 * (under a limit) imports a quarter of itself at a time: 64 MiB
	 * blocks would be none, or one. */
	large_fs = (struct cairn_frames_source){ .frames = frames };
	cairn_arena_source_frames(&large_src, &large_fs);
	struct cairn_arena_config acfg = { .quantum = PAGE, .source = &large_src,
					   .import_quantum = first / 4 < (64ull << 20)
								     ? first / 4 : 64ull << 20,
					   /* few extents: small nodes are cheaper to
					    * snapshot and copy on every update */
					   .fanout = 32 };
	if (cairn_arena_create(&large_arena, frames, 0, 0, &acfg))
		return false;
	/* CAIRN_HARDEN=1 turns the checks on in a release build, =0 off */
	const char *hv = getenv("CAIRN_HARDEN");
	/* Caches in proportion to the memory: every heap's together stay
	 * below a fifth of it (the sizes below from 32 GiB up; under a
	 * limit, 512 KiB and 256 KiB per heap of 1 GiB). A heap that runs
	 * out takes them all back, but only once the memory ran out. */
	uint64_t heap_kib = (mem_size >> 10) / 2048;
	struct cairn_objects_config ocfg = {
		.frames = frames, .phys_base = 0, .phys_limit = mem_size,
		.ncpus = SHIM_SLOTS + 1,
		/* freed frames stay resident here anyway */
		.block_cache_kib = heap_kib < (16 << 10) ? (unsigned)heap_kib : 16 << 10,
		/* what departing threads give back, for the next ones' slabs */
		.released_kib = 256 << 10,
		.harden = !hv ? CAIRN_OBJ_HARDEN_BUILD
			: *hv == '1' ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF,
		/* No quantum cache: its drain requests need every CPU to keep
		 * answering, and a thread may sleep for ever. */
		.large_arena = &large_arena,
		/* freed large objects reused without the arena's tree: 8 MiB
		 * per heap (16 MiB: 10% less CPU on `big`, 20% more RSS) */
		.large_cache_kib = heap_kib / 2 < (8 << 10) ? (unsigned)(heap_kib / 2) : 8 << 10,
		/* No span is above a GiB (span_fits): a request beyond it,
		 * slack counted, fails at once instead of emptying every
		 * cache first (a realloc asks the heap before it goes huge). */
		.large_max = GIB,
		.arena_enter = large_enter,
		.arena_leave = large_leave,
	};
	if (cairn_objects_create(&objs, &ocfg))
		return false;
	if (pthread_key_create(&exit_key, thread_exit))
		return false;
	mem_lo = (uintptr_t)cairn_port_phys_to_virt(0);
	mem_span = mem_size;
	return true;
}

/* Fork handlers are registered at load, before the instance exists (the
 * handlers need none), never at the first call:
 *  - as malloc, the instance may be made inside pthread_atfork (glibc
 *    grows its handler list while it holds the list's lock): registering
 *    there would wait for that lock for ever;
 *  - glibc runs the prepare handlers with that lock dropped around each,
 *    and only those registered when the fork began: a fork racing the
 *    registration runs none of ours, and copied the instance half made
 *    (so the prepare handler makes it, or waits for its maker).
 * So the prepare handler runs after every later-registered one's. */
__attribute__((constructor)) static void shim_load(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* GiB g to the frame allocator, whole: its metadata (68 KiB) is mapped
 * apart, so the GiB is one free 1 GiB block, which the largest spans
 * need. Carved from the GiB itself, as it is when the mapping fails, the
 * metadata leaves no 1 GiB block: a span above 512 MiB would never be
 * had (and every request for one grew the memory to its limit). */
static bool add_gib(uint64_t g)
{
	int saved = errno;
	size_t size = cairn_frames_region_meta_size(g * GIB, GIB);
	void *meta = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok = meta != MAP_FAILED && !cairn_frames_add_region(frames, g * GIB, GIB, meta, size);
	if (!ok && meta != MAP_FAILED)
		munmap(meta, size);
	ok = ok || !cairn_frames_add_region(frames, g * GIB, GIB, NULL, 0);
	errno = saved;
	return ok;
}

/* After a failed allocation: was memory added (or by someone else since
 * `seen`)? Then the caller retries. */
static bool grow(uint64_t seen)
{
	/* The forking thread holds the lock already (see shared_enter). */
	while (!forking && atomic_flag_test_and_set_explicit(&grow_lock, memory_order_acquire))
		cairn_port_pause();
	uint64_t g = atomic_load_explicit(&grown_gib, memory_order_relaxed);
	bool more = g != seen;
	if (!more && g < mem_size / GIB && add_gib(g)) {
		atomic_store_explicit(&grown_gib, g + 1, memory_order_release);
		more = true;
	}
	if (!forking)
		atomic_flag_clear_explicit(&grow_lock, memory_order_release);
	return more;
}

static bool ready(void)
{
	int s = atomic_load_explicit(&state, memory_order_acquire);
	if (s == READY)
		return true;
	if (s == UNINIT && atomic_compare_exchange_strong_explicit(&state, &s, INITIALISING,
								   memory_order_acq_rel,
								   memory_order_acquire)) {
		/* what it refuses on the way (reservations under a limit)
		 * is no error of the call that made it */
		int saved = errno;
		in_shim = 1;
		bool ok = make_instance();
		in_shim = 0;
		errno = saved;
		atomic_store_explicit(&state, ok ? READY : FAILED, memory_order_release);
		return ok;
	}
	while ((s = atomic_load_explicit(&state, memory_order_acquire)) == INITIALISING)
		sched_yield();
	return s == READY;
}

/* The calling thread's heap, or NULL: use the shared heap (locked) or, while
 * the instance is being made, the bootstrap buffer. */
static struct cairn_heap *heap_slow(void)
{
	if (in_shim || thread_gone || !ready())
		return NULL;
	in_shim = 1;
	/* Relaxed: a slot freed just before this load is found next time
	 * (the count moves after the slot is free). */
	uint64_t freed = atomic_load_explicit(&slots_freed, memory_order_relaxed);
	int cpu = CAIRN_ENOSPC;
	if (!looked || freed != slots_seen) {
		looked = 1;
		slots_seen = freed;
		cpu = cairn_host_cpu_register();
	}
	if (cpu < 0 && !swept) { /* once per thread: a system call per slot */
		swept = 1;
		if (slots_sweep())
			cpu = cairn_host_cpu_register();
	}
	if (cpu >= 0) {
		struct cairn_heap *h = cairn_objects_heap(objs, (unsigned)cpu);
		cairn_heap_online(h); /* (a dead thread's: ONLINE already) */
		slot_own((unsigned)cpu);
		my_slot = (unsigned)cpu;
		my_heap = h;
		pthread_setspecific(exit_key, h);
	}
	in_shim = 0;
	return my_heap;
}

static inline struct cairn_heap *heap(void)
{
	struct cairn_heap *h = my_heap;
	return __builtin_expect(h != NULL, 1) ? h : heap_slow();
}

/* The key's value is this thread's heap, or a stale one: glibc keeps a
 * thread's descriptor, key values included, with its stack for a later
 * thread, and a value set after the destructor rounds (a first call from
 * glibc's own stack reaping: slots_sweep) is not cleared. The later
 * thread, which may never have called the shim, must not take that heap
 * offline: its slot's next thread may be using it. */
static void thread_exit(void *arg)
{
	struct cairn_heap *h = arg;
	if (h != my_heap)
		return;
	thread_gone = 1;
	/* my_heap stays set through the offline, which may return large
	 * ranges to the arena: large_enter must still close the fork gate. */
	cairn_heap_offline(h);
	my_heap = NULL;
	atomic_store_explicit(&slot_owner[my_slot], 0, memory_order_relaxed);
	cairn_host_cpu_unregister();
	atomic_fetch_add_explicit(&slots_freed, 1, memory_order_relaxed);
}

/* The shared heap, for threads without a slot. The forking thread holds
 * shared_lock (and grow_lock) from the prepare handler on, and fork
 * handlers registered before the shim's run after it on that thread and
 * may allocate: it takes neither lock again, and it alone is in there. */
static struct cairn_heap *shared_enter(void)
{
	while (!forking && atomic_flag_test_and_set_explicit(&shared_lock, memory_order_acquire))
		cairn_port_pause();
	return cairn_objects_heap(objs, SHIM_SHARED);
}

static void shared_leave(void)
{
	if (!forking)
		atomic_flag_clear_explicit(&shared_lock, memory_order_release);
}

/* ---- the entry points ---- */

/* Could more memory serve this alignment? Only if some address of the
 * memory as it may grow (up to mem_size) is a multiple of it: else its
 * failure is not exhaustion, and growing (a GiB of frame metadata at a
 * time, resident for good) would go all the way to the limit for
 * nothing. (The mapping's base is below 2^47: no overflow.) */
static bool align_may_fit(size_t align)
{
	uintptr_t lo = (uintptr_t)cairn_port_phys_to_virt(0);
	uintptr_t first = (lo + align - 1) & ~(uintptr_t)(align - 1);
	return first - lo < mem_size;
}

/* Could more memory serve this request at all? A large object (above
 * 64 KiB, or aligned above it) is carved from a span of the arena, one
 * buddy block: its pages, plus its alignment beyond a page, rounded up
 * to a power of two, which is at most 1 GiB. A request no such span
 * holds fails for good, however much memory is added. */
static bool may_fit(size_t size, size_t align)
{
	if (!align_may_fit(align))
		return false;
	if (size <= CAIRN_OBJ_SMALL_MAX && align <= CAIRN_OBJ_SMALL_MAX)
		return true;
	return span_fits(size, align);
}

static void *alloc_aligned(size_t size, size_t align)
{
	if (!span_fits(size, align))
		return huge_alloc(size, align);
	struct cairn_heap *h = heap();
	void *p;
	if (!h && atomic_load_explicit(&state, memory_order_acquire) != READY)
		return boot_alloc(size, align);
	for (;;) {
		uint64_t seen = atomic_load_explicit(&grown_gib, memory_order_acquire);
		if (h) {
			p = cairn_heap_alloc_aligned(h, size, align);
		} else {
			struct cairn_heap *sh = shared_enter();
			p = cairn_heap_alloc_aligned(sh, size, align);
			shared_leave();
		}
		if (p || !may_fit(size, align) || !grow(seen))
			return p;
	}
}

static void *__attribute__((noinline)) malloc_slow(size_t size)
{
	void *p = alloc_aligned(size, 16);
	if (!p)
		errno = ENOMEM;
	return p;
}

/* The thread's heap had nothing at hand: refill (and grow if need be). */
static void *__attribute__((noinline)) malloc_refill(struct cairn_heap *h, size_t size)
{
	if (size > GIB) /* a huge block: no use asking the heap (nor emptying caches) */
		return malloc_slow(size);
	void *p = cairn_heap_alloc_slow(h, size);
	return __builtin_expect(p != NULL, 1) ? p : malloc_slow(size);
}

void *cairn_malloc(size_t size)
{
	struct cairn_heap *h = my_heap;
	if (__builtin_expect(h != NULL, 1)) {
		/* The pop alone: every other way out is a tail call, so once
		 * the pop is inlined (the release build's LTO) the fast path
		 * needs no stack frame. */
		void *p = cairn_heap_alloc_fast(h, size);
		if (__builtin_expect(p != NULL, 1))
			return p;
		return malloc_refill(h, size);
	}
	return malloc_slow(size);
}

static void __attribute__((noinline)) free_slow(void *p)
{
	if (!p || is_boot(p))
		return;
	if (is_huge(p)) {
		huge_free(p);
		return;
	}
	struct cairn_heap *h = heap();
	if (h) {
		cairn_heap_free(h, p);
		return;
	}
	h = shared_enter();
	cairn_heap_free(h, p);
	shared_leave();
}

void cairn_free(void *p)
{
	struct cairn_heap *h = my_heap;
	/* (a heap: the instance is READY; its memory is the shim's, so
	 * what it passes back is a boot or huge block, NULL or foreign) */
	if (__builtin_expect(h != NULL && cairn_heap_covers(h, p), 1))
		cairn_heap_free(h, p);
	else
		free_slow(p);
}

size_t cairn_malloc_usable_size(void *p)
{
	if (!p)
		return 0;
	if (is_boot(p))
		return boot_size(p);
	if (is_huge(p))
		return huge_valid(p) ? huge_usable(p) : 0;
	return cairn_objects_usable_size(objs, p);
}

void *cairn_calloc(size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	if (!span_fits(bytes, 16)) { /* a fresh mapping: zero */
		void *h = huge_alloc(bytes, 16);
		if (!h)
			errno = ENOMEM;
		return h;
	}
	void *p = cairn_malloc(bytes);
	if (p && !is_boot(p)) /* the boot buffer is zero and never reused */
		memset(p, 0, bytes);
	return p;
}

/* p's `have` bytes (or the first `size` of them) to a new block, p freed;
 * a failure keeps p, and so does one to a smaller size that p holds. */
static void *realloc_move(void *p, size_t have, size_t size)
{
	void *q = cairn_malloc(size);
	if (!q)
		return size <= have ? p : NULL; /* (errno: ENOMEM, from malloc) */
	memcpy(q, p, have < size ? have : size);
	cairn_free(p);
	return q;
}

/* Around a huge block's move, the fork gate: a child forked between the
 * entry's mark and the moved block's entry had the entry marked for ever,
 * the block found by no free (the mapping leaked there, and a free of the
 * block as the child has it reported as never handed out). A thread
 * without a heap has no gate flag: it takes shared_lock, which the
 * forking thread holds from its prepare handler on (and passes, as it
 * passes its own gate). True when the caller took shared_lock. */
static bool huge_gate_enter(void)
{
	if (my_heap) {
		large_enter();
		return false;
	}
	while (!forking && atomic_flag_test_and_set_explicit(&shared_lock, memory_order_acquire))
		cairn_port_pause();
	return true;
}

static void huge_gate_leave(bool locked)
{
	if (!locked)
		large_leave();
	else if (!forking)
		atomic_flag_clear_explicit(&shared_lock, memory_order_release);
}

/* p's mapping moved and resized by the kernel to hold `size` bytes, no
 * copy; its entry s, marked moving, names the moved block after. NULL
 * when mremap fails (p and its entry as they were). */
static void *huge_move(void *p, _Atomic uintptr_t *s, size_t size)
{
	CAIRN_SHIM_HOOK(CAIRN_SHIM_HOOK_HUGE_MOVING, p);
	struct huge_hdr *h = huge_hdr(p);
	size_t off = (uintptr_t)p - h->base;
	size_t len = off + ((size + PAGE - 1) & ~(PAGE - 1));
	void *m = mremap((void *)h->base, h->len, len, MREMAP_MAYMOVE);
	if (m == MAP_FAILED) {
		atomic_store_explicit(s, (uintptr_t)p, memory_order_release);
		return NULL;
	}
	uintptr_t q = (uintptr_t)m + off;
	h = huge_hdr((void *)q);
	h->base = (uintptr_t)m;
	h->len = len;
	/* q in its own hash's slot if one is free (then p's slot emptied),
	 * else in p's, kept for it by the mark (found there too: a search
	 * goes round the table). Release: q's header, as huge_register. */
	if (huge_register(q))
		atomic_store_explicit(s, 0, memory_order_release);
	else
		atomic_store_explicit(s, q, memory_order_release);
	return (void *)q;
}

/* A huge block to another huge block (huge_move, inside the fork gate),
 * or out to the memory. */
static void *huge_realloc(void *p, size_t size)
{
	if (!huge_valid(p)) {
		errno = EINVAL;
		return NULL;
	}
	if (span_fits(size, 16))
		return realloc_move(p, huge_usable(p), size);
	if (size > (SIZE_MAX >> 2)) {
		errno = ENOMEM;
		return NULL;
	}
	bool locked = huge_gate_enter();
	/* p's entry marked moving (acquire: as huge_find, p's header); a
	 * free of p that took it out first makes the realloc's p a freed one */
	_Atomic uintptr_t *s = huge_find((uintptr_t)p);
	uintptr_t v = (uintptr_t)p;
	bool marked = s && atomic_compare_exchange_strong_explicit(s, &v, v | HUGE_MOVING,
								   memory_order_acquire,
								   memory_order_relaxed);
	void *q = marked ? huge_move(p, s, size) : NULL;
	huge_gate_leave(locked);
	if (!marked) {
		cairn_port_report(CAIRN_EINVAL, "shim: not a block it handed out", (uintptr_t)p, 0);
		errno = EINVAL;
	} else if (!q) {
		errno = ENOMEM;
	}
	return q;
}

/* Through cairn_heap_realloc_err, so that what it refuses (hardened: a
 * freed object) stays refused: only a failed allocation falls back, to
 * a huge block for a size no span holds, to growing the memory and
 * trying again, or to keeping p when it fits. */
void *cairn_realloc(void *p, size_t size)
{
	if (!p)
		return cairn_malloc(size);
	if (!size) {
		cairn_free(p);
		return NULL;
	}
	if (is_boot(p)) { /* a bootstrap block is copied out, never freed */
		size_t have = boot_size(p);
		void *q = cairn_malloc(size);
		if (q)
			memcpy(q, p, have < size ? have : size);
		return q;
	}
	if (is_huge(p))
		return huge_realloc(p, size);
	for (;;) {
		uint64_t seen = atomic_load_explicit(&grown_gib, memory_order_acquire);
		struct cairn_heap *h = heap();
		void *q;
		int err;
		if (h) {
			q = cairn_heap_realloc_err(h, p, size, &err);
		} else if (atomic_load_explicit(&state, memory_order_acquire) != READY) {
			return NULL; /* nothing but boot blocks can exist yet */
		} else {
			struct cairn_heap *sh = shared_enter();
			q = cairn_heap_realloc_err(sh, p, size, &err);
			shared_leave();
		}
		if (q)
			return q;
		if (err != CAIRN_ENOMEM) {
			/* refused and reported: not a live object, which
			 * more memory would not change */
			errno = EINVAL;
			return NULL;
		}
		/* p found live (the heap refuses a freed one first, so
		 * that no size moves it): into a huge block */
		if (!span_fits(size, 16))
			return realloc_move(p, cairn_malloc_usable_size(p), size);
		if (!may_fit(size, 16) || !grow(seen)) {
			if (size <= cairn_malloc_usable_size(p))
				return p; /* a shrink that found no smaller block */
			errno = ENOMEM;
			return NULL;
		}
	}
}

void *cairn_reallocarray(void *p, size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return cairn_realloc(p, bytes);
}

int cairn_posix_memalign(void **out, size_t align, size_t size)
{
	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	void *p = alloc_aligned(size, align);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *cairn_aligned_alloc(size_t align, size_t size)
{
	if (!align || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	void *p = alloc_aligned(size, align);
	if (!p)
		errno = ENOMEM;
	return p;
}

/* glibc's memalign, which programs written for it rely on: an alignment
 * up to 16 is malloc's, one that is not a power of two is rounded up to
 * the next; only one above 2^63, where there is none, is EINVAL. (C's
 * aligned_alloc refuses a non-power of two; posix_memalign too.) */
void *cairn_memalign(size_t align, size_t size)
{
	if (align > ((size_t)1 << 63)) {
		errno = EINVAL;
		return NULL;
	}
	if (align <= 16)
		return cairn_malloc(size);
	if (align & (align - 1))
		align = (size_t)1 << (64 - __builtin_clzll(align));
	return cairn_aligned_alloc(align, size);
}

void *cairn_valloc(size_t size)
{
	return cairn_aligned_alloc(PAGE, size);
}

void *cairn_pvalloc(size_t size)
{
	size_t rounded = (size + PAGE - 1) & ~(PAGE - 1);
	if (rounded < size) {
		errno = ENOMEM;
		return NULL;
	}
	return cairn_aligned_alloc(PAGE, rounded ? rounded : PAGE);
}

#ifdef CAIRN_SHIM_EXPORT
#define EXPORT(name, target) \
	__typeof__(target) name __attribute__((alias(#target), visibility("default")))
EXPORT(malloc, cairn_malloc);
EXPORT(free, cairn_free);
EXPORT(calloc, cairn_calloc);
EXPORT(realloc, cairn_realloc);
EXPORT(reallocarray, cairn_reallocarray);
EXPORT(posix_memalign, cairn_posix_memalign);
EXPORT(aligned_alloc, cairn_aligned_alloc);
EXPORT(memalign, cairn_memalign);
EXPORT(valloc, cairn_valloc);
EXPORT(pvalloc, cairn_pvalloc);
EXPORT(malloc_usable_size, cairn_malloc_usable_size);
#endif

/* The instance (tests and statistics); NULL before the first allocation. */
struct cairn_objects *cairn_shim_objects(void)
{
	return atomic_load_explicit(&state, memory_order_acquire) == READY ? objs : NULL;
}

/* GiB of memory handed to the frame allocator so far (tests). */
uint64_t cairn_shim_memory_gib(void)
{
	return atomic_load_explicit(&grown_gib, memory_order_relaxed);
}
