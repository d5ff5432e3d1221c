/* SPDX-License-Identifier: MIT */
/*
 * The cairn port for the test kernel (see include/cairn/port.h).
 * cairn_port_map/unmap live in mm.c, next to the page tables they edit.
 *
 * - CPU index: %gs:8, the idx field of this CPU's percpu entry (one load,
 *   no atomics: the GS base never changes after bring-up).
 * - CPU-local sections: interrupts off. Enter saves RFLAGS and clears IF;
 *   leave sets IF again only if it was set, so sections nest.
 * - phys<->virt: the identity map, virt == phys.
 * - report/log: serial console; reports are also counted, so a test can
 *   tell expected reports (planted bad input) from unexpected ones.
 * - pause: serves TLB shootdowns pending for this CPU, then pause: a cairn
 *   wait loop with interrupts off still acknowledges them.
 */
#include "kernel.h"

unsigned cpu_slots = 1;
_Atomic uint64_t cairn_reports;
_Atomic int cairn_reports_quiet;

unsigned cairn_port_cpu(void)
{
	unsigned idx;
	__asm__ volatile("movl %%gs:8, %0" : "=r"(idx));
	return idx;
}

unsigned cairn_port_cpu_count(void)
{
	return cpu_slots;
}

/* A CPU of the test kernel that stops drains its own caches first: none
 * is ever lent (0, never CAIRN_EBUSY). */
int cairn_port_cpu_borrow(unsigned cpu)
{
	(void)cpu;
	return 0;
}

void cairn_port_cpu_giveback(unsigned cpu)
{
	(void)cpu;
}

unsigned long cairn_port_local_enter(void)
{
	return irq_save();
}

void cairn_port_local_leave(unsigned long state)
{
	irq_restore(state);
}

void *cairn_port_phys_to_virt(cairn_phys_t phys)
{
	return (void *)(uintptr_t)phys;
}

cairn_phys_t cairn_port_virt_to_phys(const void *virt)
{
	return (cairn_phys_t)(uintptr_t)virt;
}

void cairn_port_report(int err, const char *what, uint64_t a, uint64_t b)
{
	atomic_fetch_add(&cairn_reports, 1);
	if (!atomic_load(&cairn_reports_quiet))
		kprintf("cpu %u: cairn report: %s (%s) %#lx %#lx\n", cairn_port_cpu(), what,
			cairn_strerror(err), a, b);
}

void cairn_port_log(const char *line)
{
	kprintf("%s\n", line);
}

void cairn_port_pause(void)
{
	/* cairn spins here, maybe with interrupts off, waiting for another
	 * CPU that may be waiting for our TLB shootdown acknowledgement. */
	tlb_poll();
	cpu_relax();
}
