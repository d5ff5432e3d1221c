/* SPDX-License-Identifier: MIT */
/*
 * CPUs: the IDT and the trap handler, the local APIC, discovery of the CPUs
 * QEMU was given (ACPI MADT, cross-checked against fw_cfg), INIT-SIPI-SIPI
 * bring-up, a PIT-calibrated TSC, and TLB shootdown.
 *
 * Every CPU shares one GDT and one IDT. A CPU's GS base points at its entry
 * of percpu[], so its cairn index is one load from %gs:8.
 */
#include "kernel.h"

#define MSR_GS_BASE 0xc0000101

#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310

#define VEC_SHOOTDOWN 240
#define VEC_WAKE 241
#define VEC_SPURIOUS 255

#define TRAMP_BASE 0x8000ul

struct percpu percpu[MAX_CPUS];
unsigned ncpus = 1;
uint64_t tsc_hz;

static uintptr_t lapic_base = 0xfee00000;

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, attr;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256];

/* 64-bit TSS: only IST1 is used, a separate stack for #DF, so that a stack
 * overflow (a #PF that cannot be delivered on the overflowed stack) is
 * reported instead of ending in a triple fault. */
struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iomap;
} __attribute__((packed));

#define GDT_TSS 0x20
extern uint64_t gdt[];
static struct tss tss[MAX_CPUS];
static struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idt_ptr;

static uint32_t lapic_read(unsigned reg)
{
	return *(volatile uint32_t *)(lapic_base + reg);
}

static void lapic_write(unsigned reg, uint32_t v)
{
	*(volatile uint32_t *)(lapic_base + reg) = v;
}

/* ---- IDT and traps ---- */

#define ISRS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) \
	X(11) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21)  \
	X(22) X(23) X(24) X(25) X(26) X(27) X(28) X(29) X(30) X(31)        \
	X(240) X(241) X(255)
#define DECLARE(n) extern char isr##n[];
ISRS(DECLARE)

static void idt_set(unsigned vec, void *handler)
{
	uintptr_t a = (uintptr_t)handler;
	idt[vec] = (struct idt_entry){
		.off_lo = (uint16_t)a, .sel = 0x08, .ist = vec == 8, .attr = 0x8e,
		.off_mid = (uint16_t)(a >> 16), .off_hi = (uint32_t)(a >> 32),
	};
}

void idt_init(void)
{
#define SET(n) idt_set(n, isr##n);
	ISRS(SET)
	idt_ptr.limit = sizeof idt - 1;
	idt_ptr.base = (uintptr_t)idt;
}

static const char *const exc_name[32] = {
	"#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
	"#BR bound", "#UD invalid opcode", "#NM no FPU", "#DF double fault",
	"coprocessor overrun", "#TS invalid TSS", "#NP segment not present",
	"#SS stack fault", "#GP general protection", "#PF page fault",
	"reserved", "#MF x87", "#AC alignment check", "#MC machine check",
	"#XM SIMD", "#VE virtualization", "#CP control protection",
};

extern char probe_insn[], probe_fixup[];

static _Atomic uint64_t tlb_gen; /* bumped by every shootdown request */

/* Flush this CPU's TLB for every request made so far, and say so. The
 * generation is read before the flush: any request numbered up to g cleared
 * its entries before bumping to g, so the flush comes after all of them.
 * Called with interrupts off (the handler, or a waiting shootdown), so the
 * acknowledgements of one CPU only grow. */
static void tlb_flush_ack(void)
{
	uint64_t g = atomic_load(&tlb_gen);
	uint64_t cr3;
	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
	atomic_store(&this_cpu()->tlb_acks, g);
}

void trap(struct trap_frame *tf)
{
	if (tf->vector == VEC_SPURIOUS)
		return;
	if (tf->vector == VEC_WAKE) {
		/* Nothing to do: the point was to end someone's hlt. Counted,
		 * so the port test can see when an interrupt was taken. */
		atomic_fetch_add_explicit(&this_cpu()->wakes, 1, memory_order_relaxed);
		if (this_cpu()->irq_frames)
			irq_frames_tick();
		lapic_write(LAPIC_EOI, 0);
		return;
	}
	if (tf->vector == 14 && tf->rip == (uintptr_t)probe_insn) {
		/* probe_read() touched an unmapped page: make it return false. */
		tf->rip = (uintptr_t)probe_fixup;
		return;
	}
	if (tf->vector == VEC_SHOOTDOWN) {
		tlb_flush_ack();
		lapic_write(LAPIC_EOI, 0);
		return;
	}

	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	unsigned idx = rdmsr(MSR_GS_BASE) ? this_cpu()->idx : 0;
	const char *name = tf->vector < 32 && exc_name[tf->vector] ? exc_name[tf->vector]
								    : "unexpected vector";
	kprintf("cpu %u: TRAP vector %lu (%s) error %#lx\n", idx, tf->vector, name,
		tf->error);
	kprintf("cpu %u:   rip %#lx cr2 %#lx rsp %#lx rflags %#lx\n", idx, tf->rip,
		cr2, tf->rsp, tf->rflags);
	kprintf("cpu %u:   rax %#lx rbx %#lx rcx %#lx rdx %#lx rsi %#lx rdi %#lx\n",
		idx, tf->rax, tf->rbx, tf->rcx, tf->rdx, tf->rsi, tf->rdi);
	uintptr_t top = percpu[idx].stack_top, base = top - (PAGE_SIZE << STACK_ORDER);
	if ((tf->vector == 8 || tf->vector == 14) && top && cr2 < base && cr2 >= top - STACK_SLOT)
		kprintf("cpu %u:   cr2 is in the guard below this CPU's stack: stack overflow\n",
			idx);
	kprintf("verdict: FAIL (trap %lu on cpu %u)\n", tf->vector, idx);
	qemu_exit(EXIT_TRAP);
}

void cpu_local_init(unsigned idx)
{
	struct percpu *p = &percpu[idx];

	p->self = p;
	p->idx = idx;
	wrmsr(MSR_GS_BASE, (uintptr_t)p);
	__asm__ volatile("lidt %0" : : "m"(idt_ptr));
	if (idx == 0) {
		/* The BIOS leaves the 8259 delivering the PIT on vector 8,
		 * which would look like a double fault: mask every line. */
		outb(0x21, 0xff);
		outb(0xa1, 0xff);
	}
	/* And keep the 8259 away from the CPU altogether (LINT0, ExtINT).
	 * Software-enable the local APIC; spurious interrupts go to 255. */
	lapic_write(LAPIC_LVT_LINT0, 1u << 16);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	/* The BSP learns its id here; an AP must be the CPU the BSP started
	 * under this index (the port test relies on the pairing). */
	if (idx == 0)
		p->apic_id = lapic_id();
	else if (lapic_id() != p->apic_id)
		panic("cpu %u: started as APIC id %u, runs as APIC id %u", idx, p->apic_id,
		      lapic_id());
}

unsigned lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void cpu_tss_init(unsigned idx, uintptr_t df_stack_top)
{
	/* The descriptor is written before the CPU loads it: by the CPU
	 * itself (the BSP), or by the BSP before it starts the AP. */
	uintptr_t base = (uintptr_t)&tss[idx];
	uint64_t limit = sizeof tss[idx] - 1;

	tss[idx].ist[0] = df_stack_top;
	tss[idx].iomap = sizeof tss[idx];
	gdt[GDT_TSS / 8 + 2 * idx] = (limit & 0xffff) | (base & 0xffffff) << 16 |
				      0x89ull << 40 /* present, 64-bit TSS */ |
				      ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[GDT_TSS / 8 + 2 * idx + 1] = base >> 32;
}

void cpu_tss_load(unsigned idx)
{
	uint16_t sel = (uint16_t)(GDT_TSS + 16 * idx);
	__asm__ volatile("ltr %0" : : "r"(sel));
}

/* ---- time: the PIT (channel 2, polled) calibrates the TSC ---- */

static void pit_wait(unsigned ticks) /* 1193182 Hz, ticks < 65536 */
{
	outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01)); /* gate on, speaker off */
	outb(0x43, 0xb0); /* channel 2, lo/hi byte, mode 0 */
	outb(0x42, (uint8_t)ticks);
	outb(0x42, (uint8_t)(ticks >> 8));
	while (!(inb(0x61) & 0x20))
		cpu_relax();
}

void tsc_calibrate(void)
{
	uint64_t t0 = rdtsc();
	pit_wait(59659); /* 50 ms */
	tsc_hz = (rdtsc() - t0) * 20;
	if (tsc_hz == 0)
		tsc_hz = 1;
}

void udelay(unsigned us)
{
	uint64_t end = rdtsc() + tsc_hz / 1000000 * us;
	while (rdtsc() < end)
		cpu_relax();
}

/* ---- CPU discovery ---- */

static bool checksum_ok(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum = (uint8_t)(sum + b[i]);
	return sum == 0;
}

static const uint8_t *find_rsdp(void)
{
	/* The EBDA's first KiB, then the BIOS area 0xe0000-0xfffff. */
	volatile uint16_t *volatile bda_ebda = (volatile uint16_t *)0x40e;
	uintptr_t ebda = (uintptr_t)*bda_ebda << 4;
	uintptr_t ranges[2][2] = { { ebda, ebda + 1024 }, { 0xe0000, 0x100000 } };

	for (int r = 0; r < 2; r++) {
		if (!ranges[r][0])
			continue;
		for (uintptr_t a = ranges[r][0]; a < ranges[r][1]; a += 16) {
			const uint8_t *p = (const uint8_t *)a;
			if (!memcmp(p, "RSD PTR ", 8) && checksum_ok(p, 20))
				return p;
		}
	}
	return NULL;
}

static unsigned madt_apic_ids(unsigned *ids, unsigned max)
{
	const uint8_t *rsdp = find_rsdp();
	if (!rsdp)
		return 0;
	uint32_t rsdt_addr;
	memcpy(&rsdt_addr, rsdp + 16, 4);
	const uint8_t *rsdt = (const uint8_t *)(uintptr_t)rsdt_addr;
	uint32_t len;
	memcpy(&len, rsdt + 4, 4);
	for (uint32_t off = 36; off + 4 <= len; off += 4) {
		uint32_t t;
		memcpy(&t, rsdt + off, 4);
		const uint8_t *tab = (const uint8_t *)(uintptr_t)t;
		if (memcmp(tab, "APIC", 4))
			continue;
		uint32_t tlen, lapic;
		memcpy(&tlen, tab + 4, 4);
		memcpy(&lapic, tab + 36, 4);
		lapic_base = lapic;
		unsigned n = 0;
		for (uint32_t e = 44; e + 2 <= tlen && tab[e + 1] >= 2; e += tab[e + 1]) {
			uint32_t flags;
			if (tab[e] != 0) /* processor local APIC */
				continue;
			memcpy(&flags, tab + e + 4, 4);
			if ((flags & 1) && n < max)
				ids[n++] = tab[e + 3];
		}
		return n;
	}
	return 0;
}

static unsigned fw_cfg_cpus(void)
{
	char sig[4];
	outw(0x510, 0x0000); /* signature */
	for (int i = 0; i < 4; i++)
		sig[i] = (char)inb(0x511);
	if (memcmp(sig, "QEMU", 4))
		return 0;
	outw(0x510, 0x0005); /* FW_CFG_NB_CPUS, 16 bits little endian */
	unsigned lo = inb(0x511), hi = inb(0x511);
	return lo | hi << 8;
}

unsigned cpus_discover(void)
{
	unsigned ids[MAX_CPUS];
	unsigned n = madt_apic_ids(ids, MAX_CPUS);
	unsigned fw = fw_cfg_cpus();
	unsigned bsp = percpu[0].apic_id;

	if (n == 0) {
		/* No MADT: trust fw_cfg and QEMU's dense APIC ids. */
		n = fw ? fw : 1;
		if (n > MAX_CPUS)
			n = MAX_CPUS;
		for (unsigned i = 0; i < n; i++)
			ids[i] = i;
	}
	kprintf("cpus: %u in the MADT, %u from fw_cfg, bsp apic id %u\n", n, fw, bsp);
	/* A CPU lost between the two would make an -smp N run test fewer
	 * CPUs and still pass. */
	if (fw && n != (fw < MAX_CPUS ? fw : MAX_CPUS))
		panic("cpus: the MADT lists %u CPUs, fw_cfg says %u", n, fw);
	/* The BSP is index 0; the others follow in MADT order. */
	unsigned k = 1;
	for (unsigned i = 0; i < n && k < MAX_CPUS; i++)
		if (ids[i] != bsp)
			percpu[k++].apic_id = ids[i];
	return k;
}

/* ---- bring-up ---- */

extern char tramp_start[], tramp_end[], tramp_cr3[], tramp_stack[], tramp_arg[];

static volatile uint64_t *tramp_slot(char *sym)
{
	return (volatile uint64_t *)(TRAMP_BASE + (uintptr_t)(sym - tramp_start));
}

static void ipi(unsigned apic_id, uint32_t lo)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, lo);
	while (lapic_read(LAPIC_ICR_LO) & (1u << 12)) /* delivery pending */
		cpu_relax();
}

void ap_main(unsigned idx);

void ap_entry(unsigned idx)
{
	cpu_local_init(idx);
	cpu_tss_load(idx);
	/* Release: everything this CPU set up is visible to whoever sees it
	 * started; the BSP then reuses the trampoline slots. */
	atomic_store_explicit(&percpu[idx].online, 1, memory_order_relaxed);
	atomic_store_explicit(&percpu[idx].started, 1, memory_order_release);
	ap_main(idx);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void smp_boot(unsigned want)
{
	size_t tlen = (size_t)(tramp_end - tramp_start);
	if (tlen > 0x1000)
		panic("the AP trampoline (%lu bytes) would overlap the Multiboot info", tlen);
	/* 0x8000 is below the Multiboot info QEMU leaves at 0x9000; a volatile
	 * pointer keeps gcc from reasoning about a constant address. */
	void *volatile dst = (void *)TRAMP_BASE;
	memcpy(dst, tramp_start, tlen);
	*tramp_slot(tramp_cr3) = kernel_cr3;

	for (unsigned i = 1; i < want; i++) {
		percpu[i].stack_top = stack_alloc(i);
		cpu_tss_init(i, (uintptr_t)alloc_pages(0) + PAGE_SIZE);
		*tramp_slot(tramp_stack) = percpu[i].stack_top;
		*tramp_slot(tramp_arg) = i;
		atomic_thread_fence(memory_order_seq_cst);

		unsigned id = percpu[i].apic_id;
		ipi(id, 0x4500); /* INIT, level assert */
		udelay(10000);
		for (int sipi = 0; sipi < 2; sipi++) {
			ipi(id, 0x4600 | (TRAMP_BASE >> 12)); /* STARTUP */
			for (int t = 0; t < 2000; t++) {
				if (atomic_load_explicit(&percpu[i].started, memory_order_acquire))
					break;
				udelay(100);
			}
			if (atomic_load_explicit(&percpu[i].started, memory_order_acquire))
				break;
		}
		if (!atomic_load_explicit(&percpu[i].started, memory_order_acquire))
			panic("cpu %u (apic id %u) did not start", i, id);
	}
	ncpus = want;
}

/* ---- TLB shootdown ---- */

void tlb_shootdown(void)
{
	/* The caller has already changed the page tables (atomically); the
	 * increment below orders those changes before every flush that
	 * reads a generation >= g. */
	unsigned long flags = irq_save();
	struct percpu *self = this_cpu();
	uint64_t g = atomic_fetch_add(&tlb_gen, 1) + 1;

	tlb_flush_ack(); /* our own flush, after our request */
	if (ncpus > 1)
		ipi(0, (3u << 18) | VEC_SHOOTDOWN); /* all excluding self, fixed */
	for (unsigned i = 0; i < ncpus; i++) {
		if (i == self->idx)
			continue;
		while (atomic_load(&percpu[i].online) &&
		       atomic_load(&percpu[i].tlb_acks) < g) {
			/* Two CPUs may shoot down at once, each with interrupts
			 * off, each waiting for the other: serve the requests
			 * made since our last flush here. Interrupts stay off:
			 * opening them, even for one instruction, would let any
			 * pending interrupt (a wake-up whose handler uses cairn)
			 * into the CPU-local section we may be in. */
			if (atomic_load(&self->tlb_acks) < atomic_load(&tlb_gen))
				tlb_flush_ack();
			cpu_relax();
		}
	}
	irq_restore(flags);
}

/* A CPU that spins with interrupts off (in a CPU-local section, in one of
 * cairn's wait loops: a heap coming online while a claimer holds it, a
 * drain, a tree node's lock) takes no shootdown IPI; if the CPU it waits
 * for is waiting for its acknowledgement, neither moves. Every such loop
 * calls cairn_port_pause, which calls this: requests made since this CPU's
 * last flush are served here. Interrupts off around it, so that the IPI
 * handler cannot store a newer acknowledgement between our read and our
 * store (one CPU's acknowledgements only grow). */
void tlb_poll(void)
{
	unsigned long flags = irq_save();
	if (atomic_load_explicit(&this_cpu()->tlb_acks, memory_order_relaxed) <
	    atomic_load_explicit(&tlb_gen, memory_order_relaxed))
		tlb_flush_ack();
	irq_restore(flags);
}

uint64_t tlb_requests(void)
{
	return atomic_load(&tlb_gen);
}

/* ---- sleeping until something changes ---- */

void wake_all(void)
{
	if (ncpus > 1)
		ipi(0, (3u << 18) | VEC_WAKE);
}

void wake_self(void)
{
	ipi(0, (1u << 18) | VEC_WAKE); /* shorthand self, fixed */
}

void wait_while(_Atomic uint64_t *word, uint64_t value)
{
	/* cli, test, then sti;hlt: sti holds interrupts off for one more
	 * instruction, so a wake IPI that lands after the test is taken by
	 * the hlt instead of being lost before it. */
	for (;;) {
		__asm__ volatile("cli" : : : "memory");
		if (atomic_load(word) != value)
			break;
		__asm__ volatile("sti; hlt" : : : "memory");
	}
	__asm__ volatile("sti" : : : "memory");
}
