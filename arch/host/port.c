/* SPDX-License-Identifier: MIT */
/*
 * The hosted port. A thread registers as a CPU by claiming a slot with a CAS
 * (acquire), and gives it back with a release store, so everything the last
 * owner did with the slot's per-CPU data happens-before the next owner. A
 * drain borrows a free slot the same way (SLOT_LENT) to empty what its
 * last thread left; a thread that binds to the slot meanwhile waits for
 * it, one that registers takes another. No slot is lent across a fork:
 * the drain is a thread the child does not have (fork_prepare).
 */
#define _GNU_SOURCE
#include <cairn/error.h>
#include <cairn/host.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HOST_MAX_CPUS 256

static unsigned char *mem_base;
static cairn_phys_t mem_phys;
static uint64_t mem_size;
static unsigned max_cpus = 1;
enum { SLOT_FREE, SLOT_HELD, SLOT_LENT };
static _Atomic unsigned char slot_taken[HOST_MAX_CPUS];
/* Set while a fork is prepared: no slot is lent (cairn_port_cpu_borrow). */
static atomic_int lend_closed;
/* The slots lent to this thread (a drain may nest in a source's put), and
 * the fork handlers of this thread not yet matched (a fork handler may
 * fork again). */
static _Thread_local uint64_t lent_here[HOST_MAX_CPUS / 64];
static _Thread_local unsigned forking;
/* initial-exec: the static library is built position-independent, and the
 * default (general-dynamic) model makes every read of the CPU index look
 * like a call to the compiler, which then saves registers around it on
 * every fast path. The index is the port's per-CPU register stand-in. */
static __attribute__((tls_model("initial-exec"))) _Thread_local int this_cpu = -1;
/* What cairn_port_cpu returns: this_cpu, or 0 for a thread that is not
 * registered. Kept apart so that the fast paths read it with one load and
 * no test. */
static __attribute__((tls_model("initial-exec"))) _Thread_local unsigned cpu_index;
static atomic_uint_fast64_t report_count;
static atomic_int report_quiet;
static atomic_uint unmap_failures; /* unmaps still to fail (tests) */

/* The mapping is aligned to the largest block (1 GiB) so that a block's
 * natural alignment in physical addresses is also its virtual alignment.
 * A smaller memory holds no block above the smallest power of two not
 * below its size, and is aligned to that: the slack is reserved address
 * space too, which an address-space limit (ulimit -v) counts. */
#define HOST_ALIGN (1ull << 30)

static int host_init(unsigned cpus, cairn_phys_t phys_base, uint64_t size, int share)
{
	if (cpus == 0 || cpus > HOST_MAX_CPUS || size == 0 ||
	    (phys_base | size) & 0xfff)
		return CAIRN_EINVAL;
	if (mem_base)
		return CAIRN_EEXIST;
	uint64_t align = HOST_ALIGN;
	while (align / 2 >= size)
		align /= 2;
	void *r = mmap(NULL, size + align, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return CAIRN_ENOMEM;
	uintptr_t lo = (uintptr_t)r, hi = lo + size + align;
	uintptr_t at = ((lo + align - 1) & ~(align - 1)) + (phys_base & (align - 1));
	if (at - align >= lo)
		at -= align;
	void *p = mmap((void *)at, size, PROT_READ | PROT_WRITE,
		       share | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED) {
		munmap(r, size + align);
		return CAIRN_ENOMEM;
	}
	if (at > lo)
		munmap(r, at - lo);
	if (at + size < hi)
		munmap((void *)(at + size), hi - (at + size));
	mem_base = p;
	mem_phys = phys_base;
	mem_size = size;
	max_cpus = cpus;
	return 0;
}

int cairn_host_init(unsigned cpus, cairn_phys_t phys_base, uint64_t size)
{
	return host_init(cpus, phys_base, size, MAP_SHARED);
}

int cairn_host_init_private(unsigned cpus, cairn_phys_t phys_base, uint64_t size)
{
	return host_init(cpus, phys_base, size, MAP_PRIVATE);
}

int cairn_host_hole(cairn_phys_t phys, uint64_t size)
{
	if (phys < mem_phys || phys + size > mem_phys + mem_size ||
	    (phys | size) & 0xfff)
		return CAIRN_ERANGE;
	return mprotect(mem_base + (phys - mem_phys), size, PROT_NONE) ? CAIRN_EINVAL : 0;
}

/* ---- VA windows: where cairn_port_map may map, page by page ----
 *
 * A window's bitmap has two bits per page, MAPPED and BUSY: 00 free, 11
 * being mapped or unmapped, 10 mapped. A map takes its pages from 00 to
 * 11 and an unmap from 10 to 11, a CAS per bitmap word (acquire), all or
 * none, before either touches the pages; so of maps racing for a page
 * one wins, and of unmaps racing for a range one wins: the others find a
 * page taken and say EEXIST or ERANGE. A page stays taken while it is
 * remapped or made inaccessible: a map never lands on a page an unmap is
 * still tearing down, and an unmap never tears down a page whose map has
 * not finished. The owner then lets the pages go (release): the map to
 * 10, the unmap to 00. A window is published by its base (release) after
 * its size and bitmap; slots are taken for good. */
#define HOST_MAX_WINDOWS 64

static struct {
	_Atomic uintptr_t base; /* 0 until published */
	uint64_t size;
	_Atomic uint64_t *bits;
} windows[HOST_MAX_WINDOWS];
static atomic_uint nwindows;

uint64_t cairn_host_va_window(uint64_t size, uint64_t align)
{
	if (!size || (size & 0xfff) || !align || (align & (align - 1)) ||
	    size + align < size)
		return 0;
	unsigned w = atomic_fetch_add_explicit(&nwindows, 1, memory_order_relaxed);
	if (w >= HOST_MAX_WINDOWS)
		return 0;
	size_t bytes = (size / 4096 + 31) / 32 * sizeof(uint64_t);
	void *bits = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	void *r = mmap(NULL, size + align, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (bits == MAP_FAILED || r == MAP_FAILED) {
		if (bits != MAP_FAILED)
			munmap(bits, bytes);
		if (r != MAP_FAILED)
			munmap(r, size + align);
		return 0; /* (the slot stays unused) */
	}
	/* Keep the aligned window, give back what lies around it. */
	uintptr_t lo = (uintptr_t)r, at = (lo + align - 1) & ~(uintptr_t)(align - 1);
	if (at > lo)
		munmap(r, at - lo);
	if (align > at - lo)
		munmap((void *)(at + size), align - (at - lo));
	windows[w].size = size;
	windows[w].bits = bits;
	atomic_store_explicit(&windows[w].base, at, memory_order_release);
	return at;
}

/* Take slot i for this thread unless a thread holds it. A slot lent to a
 * drain is back when the drain has emptied one cache's part of it: bind
 * (a thread that wants this very slot) waits for it, register takes
 * another (any slot will do). No slot is lent across a fork but to the
 * forking thread (fork_prepare), so in a child the wait ends too. Loads
 * first: a thread that finds every slot taken reads them, it does not
 * take each line for a failing CAS. */
static bool slot_take(unsigned i, bool wait_lent)
{
	for (;;) {
		unsigned char v = atomic_load_explicit(&slot_taken[i], memory_order_relaxed);
		if (v == SLOT_HELD || (v == SLOT_LENT && !wait_lent))
			return false;
		if (v == SLOT_LENT) {
			cairn_port_pause();
			continue;
		}
		if (atomic_compare_exchange_strong_explicit(&slot_taken[i], &v, SLOT_HELD,
							    memory_order_acquire,
							    memory_order_relaxed))
			return true;
	}
}

int cairn_host_cpu_register(void)
{
	if (this_cpu >= 0)
		return this_cpu;
	for (unsigned i = 0; i < max_cpus; i++) {
		if (slot_take(i, false)) {
			this_cpu = (int)i;
			cpu_index = i;
			return (int)i;
		}
	}
	return CAIRN_ENOSPC;
}

int cairn_host_cpu_bind(unsigned cpu)
{
	if (cpu >= max_cpus)
		return CAIRN_EINVAL;
	/* One slot per thread: moving on would leave the old one taken with
	 * no thread to answer its drains or unregister it. */
	if (this_cpu >= 0)
		return (unsigned)this_cpu == cpu ? 0 : CAIRN_EBUSY;
	if (!slot_take(cpu, true))
		return CAIRN_EBUSY;
	this_cpu = (int)cpu;
	cpu_index = cpu;
	return 0;
}

static bool lent_to_me(unsigned cpu)
{
	return lent_here[cpu / 64] >> cpu % 64 & 1;
}

/* A slot no thread holds, to a drain (cairn_port_cpu_borrow): acquire,
 * as a thread's claim, so what the slot's last thread did happens-before
 * the drain; the giveback is a release store, as an unregister. A slot
 * lent already is CAIRN_EBUSY, not 0: its borrower is emptying it, and a
 * joiner's drain_cpu must wait for that, not empty it too. A load first,
 * as in slot_take.
 *
 * Not while a fork is prepared (but to the forking thread): the CAS and
 * the load of lend_closed after it are seq_cst, as are fork_prepare's
 * store of lend_closed and its loads of the slots after it (store-load,
 * Dekker). So either fork_prepare sees the slot lent and waits for the
 * giveback, or this borrow sees lending closed and undoes its CAS, having
 * touched nothing of the slot's per-CPU data; the fork may copy the slot
 * lent in that window, and the child frees it (fork_child). */
int cairn_port_cpu_borrow(unsigned cpu)
{
	if (cpu >= max_cpus)
		return 0;
	unsigned char v = atomic_load_explicit(&slot_taken[cpu], memory_order_relaxed);
	for (;;) {
		if (v == SLOT_HELD)
			return 0;
		if (v == SLOT_LENT)
			return CAIRN_EBUSY;
		if (atomic_compare_exchange_weak_explicit(&slot_taken[cpu], &v, SLOT_LENT,
							  memory_order_seq_cst,
							  memory_order_relaxed))
			break;
	}
	if (atomic_load_explicit(&lend_closed, memory_order_seq_cst) && !forking) {
		atomic_store_explicit(&slot_taken[cpu], SLOT_FREE, memory_order_release);
		return 0;
	}
	lent_here[cpu / 64] |= 1ull << cpu % 64;
	return 1;
}

void cairn_port_cpu_giveback(unsigned cpu)
{
	lent_here[cpu / 64] &= ~(1ull << cpu % 64);
	atomic_store_explicit(&slot_taken[cpu], SLOT_FREE, memory_order_release);
}

/* A fork copies memory, not threads: a slot lent to a drain of another
 * thread would stay lent in the child, where no giveback comes (a bind
 * to it waited for ever), and what the drain had emptied of it when the
 * fork copied it is half done (an answer takes the magazines out of the
 * slot before it flushes them and publishes the empty slot), so the
 * child could not just free it either. So the fork closes lending and
 * waits for every slot lent to another thread to come back (acquire: its
 * drain is whole before the fork copies it). A drain's work on a lent
 * slot waits for nothing a fork holds: its puts go to the cache's source
 * and its magazines' frames to the frame allocator. The forking thread's
 * own lent slots (a fork from inside a drain: a source's put, a signal
 * handler) stay lent to it, in the child too, where its drain goes on and
 * gives them back. */
static void fork_prepare(void)
{
	if (forking++)
		return; /* the outer fork closed lending and waited */
	atomic_store_explicit(&lend_closed, 1, memory_order_seq_cst);
	for (unsigned i = 0; i < max_cpus; i++)
		while (!lent_to_me(i) &&
		       atomic_load_explicit(&slot_taken[i], memory_order_seq_cst) == SLOT_LENT)
			sched_yield();
}

static void fork_parent(void)
{
	if (--forking)
		return;
	atomic_store_explicit(&lend_closed, 0, memory_order_release);
}

/* A slot lent to another thread here was taken by a borrow after the
 * prepare looked at it, which then finds lending closed and undoes it,
 * having done nothing with the slot: in the child, where it does not run,
 * the slot is free (in a child of a nested fork too: no other thread is
 * here). Slots held by the parent's other threads stay held: a thread may
 * have been half way through an operation on its slot's per-CPU data,
 * which no one may then use. */
static void fork_child(void)
{
	for (unsigned i = 0; i < max_cpus; i++)
		if (!lent_to_me(i) &&
		    atomic_load_explicit(&slot_taken[i], memory_order_relaxed) == SLOT_LENT)
			atomic_store_explicit(&slot_taken[i], SLOT_FREE, memory_order_relaxed);
	fork_parent(); /* (inside an outer fork: its handlers go on here) */
}

/* At load, not in cairn_host_init: as malloc (the shim), the instance,
 * and with it the port, may be made inside pthread_atfork, which holds
 * glibc's handler list's lock. */
__attribute__((constructor)) static void port_load(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void cairn_host_cpu_unregister(void)
{
	if (this_cpu < 0)
		return;
	atomic_store_explicit(&slot_taken[this_cpu], SLOT_FREE, memory_order_release);
	this_cpu = -1;
	cpu_index = 0;
}

void cairn_host_cpu_release(unsigned cpu)
{
	/* Only a held slot: a free one may be lent to a drain right now. */
	unsigned char expect = SLOT_HELD;
	if (cpu < max_cpus)
		atomic_compare_exchange_strong_explicit(&slot_taken[cpu], &expect, SLOT_FREE,
							memory_order_release,
							memory_order_relaxed);
}

uint64_t cairn_host_reports(void)
{
	return atomic_load(&report_count);
}

void cairn_host_reports_quiet(int quiet)
{
	atomic_store(&report_quiet, quiet);
}

void cairn_host_fail_unmaps(unsigned n)
{
	atomic_store(&unmap_failures, n);
}

/* Take one planted failure, if any is left. */
static bool unmap_fails(void)
{
	unsigned n = atomic_load(&unmap_failures);
	while (n && !atomic_compare_exchange_weak(&unmap_failures, &n, n - 1))
		;
	return n != 0;
}

/* ---- the port ---- */

unsigned cairn_port_cpu(void)
{
	return cpu_index;
}

unsigned cairn_port_cpu_count(void)
{
	return max_cpus;
}

unsigned long cairn_port_local_enter(void)
{
	return 0;
}

void cairn_port_local_leave(unsigned long state)
{
	(void)state;
}

void *cairn_port_phys_to_virt(cairn_phys_t phys)
{
	return mem_base + (phys - mem_phys);
}

cairn_phys_t cairn_port_virt_to_phys(const void *virt)
{
	return mem_phys + (cairn_phys_t)((const unsigned char *)virt - mem_base);
}

/* The bitmap of the window that holds [virt, virt + len), and in *first
 * the range's first page there; NULL if no window holds it whole. */
static _Atomic uint64_t *window_pages(uintptr_t virt, size_t len, uint64_t *first)
{
	unsigned n = atomic_load_explicit(&nwindows, memory_order_relaxed);
	for (unsigned w = 0; w < n && w < HOST_MAX_WINDOWS; w++) {
		uintptr_t base = atomic_load_explicit(&windows[w].base, memory_order_acquire);
		if (base && virt >= base && virt - base <= windows[w].size &&
		    len <= windows[w].size - (virt - base)) {
			*first = (virt - base) / 4096;
			return windows[w].bits;
		}
	}
	return NULL;
}

/* Two bits a page, 32 pages a word: page p's MAPPED bit is bit 2 * (p %
 * 32) of word p / 32, its BUSY bit the one above. */
#define PAGES_PER_WORD 32
#define MAPPED_BITS 0x5555555555555555ull

/* The MAPPED bits of pages [first, first + n) that lie in word `i` (their
 * BUSY bits are this shifted left by one). */
static uint64_t page_mask(uint64_t first, uint64_t n, uint64_t i)
{
	uint64_t w0 = i * PAGES_PER_WORD, w1 = w0 + PAGES_PER_WORD;
	uint64_t lo = first > w0 ? first - w0 : 0;
	uint64_t hi = first + n < w1 ? first + n - w0 : PAGES_PER_WORD;
	uint64_t span = 2 * (hi - lo);
	return (span == 64 ? ~0ull : ((1ull << span) - 1)) << 2 * lo & MAPPED_BITS;
}

static uint64_t word_first(uint64_t first)
{
	return first / PAGES_PER_WORD;
}

static uint64_t word_last(uint64_t first, uint64_t n)
{
	return (first + n - 1) / PAGES_PER_WORD;
}

/* Let taken pages [first, first + n) go: still mapped (MAPPED kept, BUSY
 * cleared) or not (both cleared). Release: what the caller did to them
 * comes before whatever the next to take them does. */
static void pages_let_go(_Atomic uint64_t *bits, uint64_t first, uint64_t n, bool mapped)
{
	for (uint64_t i = word_first(first); i <= word_last(first, n); i++) {
		uint64_t m = page_mask(first, n, i);
		atomic_fetch_and_explicit(&bits[i], ~(m << 1 | (mapped ? 0 : m)),
					  memory_order_release);
	}
}

/* Take pages [first, first + n), all or none: each from MAPPED `mapped`,
 * BUSY clear, to both set. False if a page was in another state; the
 * words taken before it are put back as they were, and the call then
 * changed nothing. Acquire: what the pages' last owner did to them (its
 * mremap or mmap) comes before what the caller does next. */
static bool pages_take(_Atomic uint64_t *bits, uint64_t first, uint64_t n, bool mapped)
{
	for (uint64_t i = word_first(first); i <= word_last(first, n); i++) {
		uint64_t m = page_mask(first, n, i), all = m | m << 1;
		uint64_t want = mapped ? m : 0;
		uint64_t v = atomic_load_explicit(&bits[i], memory_order_relaxed);
		do {
			if ((v & all) != want) {
				/* Let the pages of the words taken go as they
				 * were: only this call set their bits meanwhile
				 * (a page taken is touched by its taker alone). */
				if (i > word_first(first))
					pages_let_go(bits, first, i * PAGES_PER_WORD - first, mapped);
				return false;
			}
		} while (!atomic_compare_exchange_weak_explicit(&bits[i], &v, v | all,
							       memory_order_acquire,
							       memory_order_relaxed));
	}
	return true;
}

/* The kernel's contract (port.h): a page already mapped, by an earlier
 * map or as the identity map, makes the map CAIRN_EEXIST, nothing mapped.
 * The host maps only into its VA windows, where it knows which pages are
 * mapped: anywhere else something of the process may be (mremap with
 * MREMAP_FIXED would replace it), so that is CAIRN_EINVAL. */
int cairn_port_map(uintptr_t virt, cairn_phys_t phys, size_t len)
{
	/* Map the frames' pages of the shared mapping again at `virt`. */
	if ((virt | phys | len) & 0xfff || !len || phys < mem_phys ||
	    phys + len > mem_phys + mem_size)
		return CAIRN_EINVAL;
	uintptr_t ident = (uintptr_t)mem_base;
	if (virt < ident + mem_size && virt + len > ident)
		return CAIRN_EEXIST;
	uint64_t first;
	_Atomic uint64_t *bits = window_pages(virt, len, &first);
	if (!bits)
		return CAIRN_EINVAL;
	if (!pages_take(bits, first, len / 4096, false))
		return CAIRN_EEXIST;
	void *p = mremap(cairn_port_phys_to_virt(phys), 0, len,
			 MREMAP_MAYMOVE | MREMAP_FIXED, (void *)virt);
	pages_let_go(bits, first, len / 4096, p != MAP_FAILED);
	return p == MAP_FAILED ? CAIRN_ENOMEM : 0;
}

/* All or nothing, as the kernel's: a page of the range not mapped by
 * cairn_port_map is CAIRN_ERANGE, nothing unmapped. The host maps only
 * into its windows, so a page outside them (of the identity map, or
 * anything else of the process) is one it did not map. Of unmaps racing
 * for a range, the one that takes its pages wins; the others say ERANGE. */
int cairn_port_unmap(uintptr_t virt, size_t len)
{
	if ((virt | len) & 0xfff || !len || virt + len - 1 < virt)
		return CAIRN_EINVAL;
	uint64_t first;
	_Atomic uint64_t *bits = window_pages(virt, len, &first);
	if (!bits)
		return CAIRN_ERANGE;
	if (unmap_fails() || !pages_take(bits, first, len / 4096, true))
		return CAIRN_ERANGE; /* (planted: as the kernel's on a page it finds unmapped) */
	/* Leave the range reserved but inaccessible rather than unmapped, so
	 * nothing else in the process can land there. */
	void *p = mmap((void *)virt, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	/* Failed: the pages count as mapped still, so that nothing maps
	 * over what may still reach the frames. */
	pages_let_go(bits, first, len / 4096, p == MAP_FAILED);
	return p == MAP_FAILED ? CAIRN_EINVAL : 0;
}

void cairn_port_report(int err, const char *what, uint64_t a, uint64_t b)
{
	atomic_fetch_add(&report_count, 1);
	if (!atomic_load(&report_quiet))
		fprintf(stderr, "cairn: %s (%s) %#llx %#llx\n", what,
			cairn_strerror(err), (unsigned long long)a,
			(unsigned long long)b);
}

void cairn_port_log(const char *line)
{
	fprintf(stderr, "%s\n", line);
}

void cairn_port_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	sched_yield();
#endif
}
