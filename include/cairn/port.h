/* SPDX-License-Identifier: MIT */
/*
 * The port: everything cairn needs from the system that embeds it.
 *
 * An embedder (a kernel, or arch/host on Linux) defines these functions; the
 * library calls nothing else: no libc, no threads, no allocator. They are
 * link-time symbols rather than a table of pointers because the hot ones
 * (cairn_port_cpu) sit on every fast path.
 *
 * Two implementations ship: arch/host (threads registered as CPUs, a shared
 * mapping standing in for physical memory) and arch/x86_64 (the test kernel).
 *
 * Every call runs on the caller's stack: an arena update may take about
 * 8.3 KiB of it (the test kernel measures each CPU's deepest), so an
 * embedder with arenas wants 16 KiB stacks, as the test kernel has.
 */
#ifndef CAIRN_PORT_H
#define CAIRN_PORT_H

#include <stddef.h>
#include <stdint.h>

typedef uint64_t cairn_phys_t;

/* Index of the CPU executing the caller, in [0, cairn_port_cpu_count()).
 * Stable for the caller while it is inside a CPU-local section. Called on
 * every fast path: make it one load. */
unsigned cairn_port_cpu(void);

/* Upper bound on CPU indices (CPUs that may ever come online, not those
 * online now); fixed before the first instance is created, which sizes its
 * per-CPU tables by it (a config's ncpus 0 means this value). */
unsigned cairn_port_cpu_count(void);

/* Lend CPU index `cpu` to the caller when nothing runs as it, so that a
 * drain can empty what it left in per-CPU caches: on the host a slot no
 * thread holds (its thread unregistered, or was given back after it
 * exited). 1 when lent: everything done as that CPU before it was given
 * up happens-before the caller's next access to its per-CPU data, nothing
 * runs as it until cairn_port_cpu_giveback(cpu), and what the caller did
 * meanwhile happens-before the CPU's next user. 0 when the CPU is in use,
 * or when the port does not lend it now (the host while another thread
 * prepares a fork), or when the port never lends (a kernel drains a CPU
 * as it goes offline). CAIRN_EBUSY when it is lent to another caller
 * right now: that one gives it back after one answer, waiting for nothing
 * meanwhile, so cairn_mag_drain_cpu waits for it. Never waits; called by
 * drains outside every CPU-local section, and inside the caller's section
 * for the CPU a drain empties as its own or as a departed one
 * (cairn_mag_drain_cpu, the first step of cairn_mag_drain_all). */
int cairn_port_cpu_borrow(unsigned cpu);
void cairn_port_cpu_giveback(unsigned cpu);

/* Enter/leave a CPU-local section: in a kernel, interrupts (or preemption)
 * off so that per-CPU data cannot be touched by another context on the same
 * CPU; on the host a registered thread owns its slot, so nothing to do.
 * Sections nest; enter returns the state that leave restores. */
unsigned long cairn_port_local_enter(void);
void cairn_port_local_leave(unsigned long state);

/* The identity-mapped (direct) region: every managed frame is reachable at
 * cairn_port_phys_to_virt(phys) for as long as it is managed (from
 * cairn_frames_init or cairn_frames_add_region on: metadata, tree nodes,
 * magazines and objects all live there). virt_to_phys is its inverse on
 * that region. */
void *cairn_port_phys_to_virt(cairn_phys_t phys);
cairn_phys_t cairn_port_virt_to_phys(const void *virt);

/* Map `len` bytes of frames starting at `phys` at virtual address `virt`
 * (both 4 KiB aligned), and undo it. Called only by arenas importing from
 * cairn_arena_source_frames with a `va` arena, possibly on every CPU at
 * once and with interrupts off; a port without such arenas may return
 * CAIRN_EINVAL. Return 0 or a negative cairn error code (map: nothing
 * mapped; the import then fails). A map never replaces a mapping: if any
 * page of the range is mapped already (by an earlier map not yet undone,
 * or as part of the direct region), it returns CAIRN_EEXIST and maps
 * nothing, so that two imports of one VA range (a bug) cannot silently
 * alias each other's frames; of maps racing for a page, one wins. Unmap
 * is all or nothing too: a page of the range that is not mapped makes it
 * CAIRN_ERANGE, nothing unmapped. Unmap must have removed the mapping from
 * every CPU's TLB when it returns: the frames are freed right after. An
 * unmap that fails is reported, and the frames and the VA range are kept
 * (never reused while the mapping may still reach them). */
int cairn_port_map(uintptr_t virt, cairn_phys_t phys, size_t len);
int cairn_port_unmap(uintptr_t virt, size_t len);

/* Misuse detected (double free, foreign pointer, corrupted metadata...).
 * `err` is a cairn error code, `what` a constant string, `a`/`b` the values
 * involved. The port decides whether to log, count or halt; if it returns,
 * the call that reported returns its error. May be called inside a
 * CPU-local section (interrupts off), on any CPU at once. */
void cairn_port_report(int err, const char *what, uint64_t a, uint64_t b);

/* A line of diagnostic text (no newline needed), from cairn_frames_dump.
 * The line's memory is reused when the call returns. */
void cairn_port_log(const char *line);

/* Spin-wait hint (pause on x86). Every cairn loop that waits for another
 * CPU calls it, possibly inside a CPU-local section (interrupts off): a
 * port whose unmap waits for the other CPUs (a TLB shootdown) must serve
 * their pending requests here too, or a CPU waiting in cairn for one that
 * is unmapping never acknowledges it, and neither moves (the test kernel
 * does). */
void cairn_port_pause(void);

#endif /* CAIRN_PORT_H */
