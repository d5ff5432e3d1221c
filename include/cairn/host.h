/* SPDX-License-Identifier: MIT */
/*
 * The hosted port (arch/host): Linux threads stand in for CPUs and one
 * anonymous shared mapping stands in for physical memory.
 *
 * Physical address p lives at virtual host_base + (p - phys_base), with
 * host_base aligned so that virtual and physical addresses agree modulo
 * 1 GiB, or for a smaller memory modulo the smallest power of two not
 * below its size (aligned blocks stay aligned). Holes in a
 * simulated memory map are made inaccessible (PROT_NONE) so that touching
 * memory the allocator does not manage faults at once.
 */
#ifndef CAIRN_HOST_H
#define CAIRN_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <cairn/port.h>

/* Create the simulated physical memory [phys_base, phys_base + size) and
 * allow up to max_cpus CPU slots. Call once, before any allocator. */
int cairn_host_init(unsigned max_cpus, cairn_phys_t phys_base, uint64_t size);

/* The same with a private mapping: a forked child gets its own copy of the
 * memory (what a malloc shim needs), but cairn_port_map cannot alias it. */
int cairn_host_init_private(unsigned max_cpus, cairn_phys_t phys_base, uint64_t size);

/* Make [phys, phys + size) inaccessible (a hole in the memory map). */
int cairn_host_hole(cairn_phys_t phys, uint64_t size);

/* Reserve `size` bytes of address space (inaccessible until mapped),
 * aligned to `align` (a power of two), for cairn_port_map to map frames
 * into: a VA arena's span. The address, or 0 when none can be had. The
 * process's own allocator, or a sanitizer's, never lands there. The host's
 * cairn_port_map maps only into such windows (elsewhere it cannot tell
 * what of the process is mapped there: CAIRN_EINVAL), at most 64 of them
 * per process. */
uint64_t cairn_host_va_window(uint64_t size, uint64_t align);

/* Bind the calling thread to a free CPU slot (returns its index, or a
 * negative error when every slot is taken) and release it again. A thread
 * that never registered runs as CPU 0, so it must not use per-CPU caches
 * while another thread holds slot 0 (its drain of slot 0 waits while a
 * drain has borrowed the free slot). A thread unregisters before it exits
 * (after draining its slot from caches, or leaving what it holds to the
 * slot's next thread, or to any drain meanwhile, which borrows the free
 * slot and empties it): the port cannot see a thread go, and its slot
 * stays taken otherwise. The malloc shim does this in a thread-exit key
 * destructor. */
int cairn_host_cpu_register(void);
void cairn_host_cpu_unregister(void);

/* Give back slot `cpu` of a thread that exited without unregistering: the
 * caller knows the thread is gone (the malloc shim asks the kernel), and
 * the slot's next thread takes its per-CPU data as that thread left it. */
void cairn_host_cpu_release(unsigned cpu);

/* Bind the calling thread to slot `cpu` (tests that need a fixed mapping).
 * CAIRN_EBUSY when the slot is taken, or when the thread holds another
 * one (unregister first); 0 when it holds this one already. A slot a
 * drain has borrowed (cairn_port_cpu_borrow) is waited for, as
 * cairn_mag_drain_cpu of it waits; register takes another slot instead. */
int cairn_host_cpu_bind(unsigned cpu);

/* Misuse reports: count them, and optionally stay quiet (tests that plant
 * bad input). Returns the number of reports so far. */
uint64_t cairn_host_reports(void);
void cairn_host_reports_quiet(int quiet);

/* Make the next n calls of cairn_port_unmap fail with CAIRN_ERANGE and
 * unmap nothing (tests of what a failed unmap leaves behind). */
void cairn_host_fail_unmaps(unsigned n);

#endif /* CAIRN_HOST_H */
