/* SPDX-License-Identifier: MIT */
/*
 * The x86-64 test kernel: cairn embedded in a small SMP unikernel.
 *
 * Boot order (main.c): serial console -> IDT -> Multiboot info and command
 * line -> CPUs from the ACPI MADT -> cairn frames over the RAM below 4 GiB
 * (metadata carved from that memory) -> the final identity map built from
 * cairn frames -> RAM above 4 GiB handed to cairn at run time -> the APs,
 * whose stacks come from cairn -> the tests on the chosen CPUs at once ->
 * per-CPU counts, throughput and a verdict -> exit through isa-debug-exit.
 *
 * Physical == virtual everywhere the kernel touches RAM (stacks excepted:
 * they are mapped with guard pages). Interrupts stay enabled outside
 * CPU-local sections, but the only vectors that ever fire are two IPIs, TLB
 * shootdown and wake-up (the 8259 is masked, no timer is programmed).
 */
#ifndef KERNEL_H
#define KERNEL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cairn/frames.h>

#define MAX_CPUS 64
#define PAGE_SIZE ((uint64_t)4096)

/* isa-debug-exit values; QEMU exits with (value << 1) | 1, so the runner
 * sees 33 for success and 35/37/39 for failures. A triple fault under
 * -no-reboot exits 0, which is why no exit status of ours can be 0. */
#define EXIT_PASS 0x10
#define EXIT_FAIL 0x11  /* a check failed (verdict FAIL) */
#define EXIT_TRAP 0x12  /* an unexpected exception */
#define EXIT_BOOT 0x13  /* boot could not proceed (no long mode, no memory) */

/* ---- port I/O and MSRs ---- */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void)
{
	__builtin_ia32_pause();
}
static inline unsigned long irq_save(void)
{
	unsigned long flags;
	__asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
	return flags;
}
static inline void irq_restore(unsigned long flags)
{
	if (flags & (1ul << 9))
		__asm__ volatile("sti" : : : "memory");
}
static inline bool irq_enabled(void)
{
	unsigned long flags;
	__asm__ volatile("pushfq; popq %0" : "=r"(flags));
	return flags & (1ul << 9);
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* ---- per-CPU state; GS base points at the CPU's own entry ---- */
struct percpu {
	struct percpu *self;  /* %gs:0 */
	unsigned idx;         /* %gs:8: cairn's CPU index */
	unsigned apic_id;     /* the MADT's id this CPU was started as */
	uintptr_t stack_top;
	_Atomic uint64_t tlb_acks;  /* shootdown IPIs this CPU has handled */
	_Atomic uint64_t wakes;     /* wake-up IPIs this CPU has taken */
	_Atomic int started;  /* checked in from the trampoline */
	_Atomic int online;   /* takes part in shootdowns (interrupts on) */
	/* test results, written by the CPU itself, read by CPU 0 after a barrier */
	uint64_t ops;
	uint64_t cycles;
	uint64_t errors;
	/* irq test: the wake-up handler takes and gives back frames while
	 * set; only this CPU writes these, with interrupts off */
	volatile int irq_frames;
	uint64_t irq_frame;  /* the frame its handler holds, or 0 */
	uint64_t irq_allocs; /* frames its handler took */
};

extern struct percpu percpu[MAX_CPUS];
extern unsigned ncpus;  /* CPUs found and brought up (index 0..ncpus-1) */

static inline struct percpu *this_cpu(void)
{
	struct percpu *p;
	__asm__ volatile("mov %%gs:0, %0" : "=r"(p));
	return p;
}

/* ---- console.c ---- */
void serial_init(void);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvsnprintf(char *buf, size_t len, const char *fmt, va_list ap);
void ksnprintf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
_Noreturn void qemu_exit(unsigned code);
_Noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- lib.c ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
/* Parse an unsigned number (decimal or 0x hex, optional K/M/G suffix);
 * returns the character after it, or NULL (and *out untouched) if there is
 * no digit or the value does not fit in 64 bits. */
const char *parse_u64(const char *s, uint64_t *out);

/* ---- cpu.c ---- */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};
void idt_init(void);
void cpu_local_init(unsigned idx);  /* IDT, GS base, LAPIC for this CPU */
void cpu_tss_init(unsigned idx, uintptr_t df_stack_top); /* its GDT entry */
void cpu_tss_load(unsigned idx);
unsigned cpus_discover(void);       /* MADT / fw_cfg; fills percpu[].apic_id */
void smp_boot(unsigned want);       /* start APs 1..want-1 */
void tsc_calibrate(void);
extern uint64_t tsc_hz;
void udelay(unsigned us);
void tlb_shootdown(void);           /* every online CPU flushes its TLB */
uint64_t tlb_requests(void);        /* shootdowns requested so far */
void tlb_poll(void);                /* serve pending shootdowns (interrupts off) */
unsigned lapic_id(void);            /* this CPU's local APIC id, read now */
void wake_self(void);               /* a wake-up IPI to this CPU */
void wake_all(void);                /* end every other CPU's wait_while */
void wait_while(_Atomic uint64_t *word, uint64_t value); /* interrupts on */
uint64_t probe_read(const void *addr, bool *ok); /* a load that may fault */

/* ---- mm.c ---- */
struct mb_range {
	uint64_t base, len;
	uint32_t type;
};
#define MAX_MAP 64
extern struct mb_range fw_map[MAX_MAP];
extern unsigned fw_map_n;
extern struct cairn_frames *frames;
extern bool have_1g_pages;
extern uint64_t kernel_cr3;
extern uint64_t ram_top;            /* end of the highest RAM range */
extern _Atomic uint64_t pt_pages;   /* page-table pages taken from cairn */
void mm_read_multiboot(uint32_t magic, uint32_t info, char *cmdline, size_t len);
void mm_add_hole(uint64_t base, uint64_t end);
void mm_add_fw_range(uint32_t type, uint64_t base, uint64_t end); /* memmap= */
/* Whether cairn may own [b, e): RAM by the firmware map, in no other kind of
 * firmware range, no holes= range, not the first MiB nor the kernel image.
 * Decided from the raw map, independently of the list cairn was given. */
bool mm_may_own(uint64_t b, uint64_t e);
void mm_init(void);                 /* frames, identity map, high regions */
bool mm_is_mapped(uint64_t virt);
uint64_t mm_unmapped_probe(void);   /* some address that is surely unmapped */
void *alloc_pages(unsigned order);  /* zeroed, from cairn frames; panics on failure */
uintptr_t stack_alloc(unsigned idx); /* a guarded kernel stack; returns its top */
#define STACK_ORDER 2                /* 16 KiB stacks */
#define STACK_LIMIT ((PAGE_SIZE << STACK_ORDER) * 3 / 4) /* a run that used more fails */
size_t stack_used(unsigned idx);     /* the deepest the stack has been, bytes */
#define STACK_SLOT ((uintptr_t)64 << 10) /* of which the rest is unmapped */
void free_pages(void *p, unsigned order);

/* ---- main.c ---- */
struct options {
	const char *test;
	uint64_t seed;
	uint64_t ops;
	uint64_t handoff; /* objects test: objects per CPU per hand-off; ~0 = from ops */
	unsigned cpus;
	const char *plant;
	bool verbose;
};
extern struct options opt;
void barrier_wait(void);            /* all test CPUs meet */
void ap_main(unsigned idx);

/* A test: setup and check run on CPU 0 alone, run on every test CPU at
 * once (idx in 0..n-1). run counts its operations in percpu[idx].ops and
 * reports failed checks with fail(). */
struct test {
	const char *name;
	void (*setup)(void);
	void (*run)(unsigned idx, unsigned n);
	void (*check)(void);
};
extern const struct test tests[];
extern const unsigned ntests;
extern uint64_t expected_reports;   /* cairn reports the tests provoked */
void irq_frames_tick(void);         /* from the wake-up IPI handler */

/* ---- port.c ---- */
extern unsigned cpu_slots;          /* cairn_port_cpu_count() */
extern _Atomic uint64_t cairn_reports;
extern _Atomic int cairn_reports_quiet;
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern _Atomic uint64_t failures;

#endif /* KERNEL_H */
