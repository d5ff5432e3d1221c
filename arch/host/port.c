/* SPDX-License-Identifier: MIT */
/*
 * The hosted port. A thread registers as a CPU by claiming a slot with a CAS
 * (acquire), and gives it back with a release store, so everything the last
 * owner did with the slot's per-CPU data happens-before the next owner.
 */
#define _GNU_SOURCE
#include <cairn/error.h>
#include <cairn/host.h>

#include <errno.h>
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
static _Atomic unsigned char slot_taken[HOST_MAX_CPUS];
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

uint64_t cairn_host_va_window(uint64_t size, uint64_t align)
{
	if (!size || (size & 0xfff) || !align || (align & (align - 1)) ||
	    size + align < size)
		return 0;
	void *r = mmap(NULL, size + align, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return 0;
	/* Keep the aligned window, give back what lies around it. */
	uintptr_t lo = (uintptr_t)r, at = (lo + align - 1) & ~(uintptr_t)(align - 1);
	if (at > lo)
		munmap(r, at - lo);
	if (align > at - lo)
		munmap((void *)(at + size), align - (at - lo));
	return at;
}

int cairn_host_cpu_register(void)
{
	if (this_cpu >= 0)
		return this_cpu;
	for (unsigned i = 0; i < max_cpus; i++) {
		unsigned char expect = 0;
		/* a load first: a thread that finds every slot taken reads
		 * them, it does not take each line for a failing CAS */
		if (atomic_load_explicit(&slot_taken[i], memory_order_relaxed))
			continue;
		if (atomic_compare_exchange_strong_explicit(&slot_taken[i], &expect, 1,
							    memory_order_acquire,
							    memory_order_relaxed)) {
			this_cpu = (int)i;
			cpu_index = i;
			return (int)i;
		}
	}
	return CAIRN_ENOSPC;
}

int cairn_host_cpu_bind(unsigned cpu)
{
	unsigned char expect = 0;
	if (cpu >= max_cpus)
		return CAIRN_EINVAL;
	/* One slot per thread: moving on would leave the old one taken with
	 * no thread to answer its drains or unregister it. */
	if (this_cpu >= 0)
		return (unsigned)this_cpu == cpu ? 0 : CAIRN_EBUSY;
	if (!atomic_compare_exchange_strong_explicit(&slot_taken[cpu], &expect, 1,
						     memory_order_acquire,
						     memory_order_relaxed))
		return CAIRN_EBUSY;
	this_cpu = (int)cpu;
	cpu_index = cpu;
	return 0;
}

void cairn_host_cpu_unregister(void)
{
	if (this_cpu < 0)
		return;
	atomic_store_explicit(&slot_taken[this_cpu], 0, memory_order_release);
	this_cpu = -1;
	cpu_index = 0;
}

void cairn_host_cpu_release(unsigned cpu)
{
	if (cpu < max_cpus)
		atomic_store_explicit(&slot_taken[cpu], 0, memory_order_release);
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

int cairn_port_map(uintptr_t virt, cairn_phys_t phys, size_t len)
{
	/* Map the frames' pages of the shared mapping again at `virt`. */
	if ((virt | phys | len) & 0xfff || phys < mem_phys ||
	    phys + len > mem_phys + mem_size)
		return CAIRN_EINVAL;
	void *p = mremap(cairn_port_phys_to_virt(phys), 0, len,
			 MREMAP_MAYMOVE | MREMAP_FIXED, (void *)virt);
	return p == MAP_FAILED ? CAIRN_ENOMEM : 0;
}

int cairn_port_unmap(uintptr_t virt, size_t len)
{
	if ((virt | len) & 0xfff)
		return CAIRN_EINVAL;
	if (unmap_fails()) /* as the kernel's on a page it finds unmapped */
		return CAIRN_ERANGE;
	/* Leave the range reserved but inaccessible rather than unmapped, so
	 * nothing else in the process can land there. */
	void *p = mmap((void *)virt, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
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
