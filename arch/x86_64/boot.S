/* SPDX-License-Identifier: MIT */
/*
 * Boot path of the test kernel: Multiboot v1 entry, 32-bit stub into long
 * mode, the AP trampoline and the interrupt entry stubs.
 *
 * QEMU's -kernel loads Multiboot v1 images and refuses 64-bit ELF files, so
 * the kernel is an ordinary 64-bit ELF linked at 1 MiB whose container is
 * rewritten to elf32-i386 after linking (the code inside stays 64-bit). The
 * loader enters _start32 in 32-bit protected mode, paging off, with
 * EAX = Multiboot magic and EBX = the physical address of the info block.
 *
 * The stub identity-maps the first 4 GiB with 2 MiB pages from tables in
 * .bss. That boot map only has to carry the kernel until cairn frames are up;
 * mm.c then builds the real identity map (from the firmware memory map, out
 * of cairn frames) and switches to it.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, give us the memory map */

#define EXIT_PORT 0xf4
#define EXIT_NO_LONG_MODE 0x13 /* see kernel.h: EXIT_* */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text.boot, "ax"
	.code32
	.globl _start32
_start32:
	cli
	cld
	/* Keep magic and info pointer out of the registers rep stosb uses. */
	mov %eax, %ebp
	mov %ebx, %edx

	/* Zero .bss ourselves rather than trusting the loader to. */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	xor %eax, %eax
	rep stosb
	mov %ebp, mb_magic
	mov %edx, mb_info

	mov $boot_stack_top, %esp

	/* Long mode present? (CPUID 0x80000001 EDX bit 29) */
	mov $0x80000000, %eax
	cpuid
	cmp $0x80000001, %eax
	jb no_long_mode
	mov $0x80000001, %eax
	cpuid
	bt $29, %edx
	jnc no_long_mode

	/* PML4[0] -> PDPT; PDPT[0..3] -> the four PDs; PDs map 0..4 GiB. */
	mov $boot_pdpt, %eax
	or $0x3, %eax
	mov %eax, boot_pml4
	mov $boot_pd, %eax
	or $0x3, %eax
	xor %ecx, %ecx
1:	mov %eax, boot_pdpt(,%ecx,8)
	add $0x1000, %eax
	inc %ecx
	cmp $4, %ecx
	jne 1b
	mov $0x83, %eax /* present | writable | 2 MiB page */
	xor %ecx, %ecx
2:	mov %eax, boot_pd(,%ecx,8)
	add $0x200000, %eax
	inc %ecx
	cmp $2048, %ecx
	jne 2b

	lgdt gdt_ptr
	mov %cr4, %eax
	or $0x20, %eax /* PAE */
	mov %eax, %cr4
	mov $boot_pml4, %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx /* EFER */
	rdmsr
	or $0x100, %eax /* LME */
	wrmsr
	mov %cr0, %eax
	or $0x80010001, %eax /* PG | WP | PE */
	mov %eax, %cr0
	ljmp $0x08, $start64

no_long_mode:
	mov $EXIT_NO_LONG_MODE, %eax
	outl %eax, $EXIT_PORT
3:	hlt
	jmp 3b

	.code64
start64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	xor %eax, %eax
	mov %ax, %fs
	mov %ax, %gs
	mov $boot_stack_top, %rsp
	xor %ebp, %ebp
	call kmain
4:	cli
	hlt
	jmp 4b

/*
 * The GDT, shared by every CPU. 0x18 is a 32-bit code segment: the AP
 * trampoline passes through protected mode on its way to long mode. From
 * GDT_TSS on, one 16-byte TSS descriptor per CPU (filled in by cpu.c): the
 * TSS gives each CPU a separate stack for double faults.
 */
#define GDT_TSS 0x20
#define MAX_CPUS 64 /* kernel.h */
	.section .data
	.align 16
	.globl gdt
gdt:
	.quad 0
	.quad 0x00AF9A000000FFFF /* 0x08: 64-bit code */
	.quad 0x00CF92000000FFFF /* 0x10: data */
	.quad 0x00CF9A000000FFFF /* 0x18: 32-bit code */
	.fill 2 * MAX_CPUS, 8, 0 /* GDT_TSS + 16 * cpu: TSS descriptors */
gdt_end:
	/* lgdt reads a 32-bit base in protected mode and a 64-bit one in long
	 * mode; the GDT sits below 4 GiB, so one pointer serves both. */
	.align 8
	.globl gdt_ptr
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .bss
	.align 4096
	.globl boot_pml4
boot_pml4:
	.skip 4096
boot_pdpt:
	.skip 4096
boot_pd:
	.skip 4 * 4096
	.align 16
	.skip 16384
	.globl boot_stack_top
boot_stack_top:
	.globl mb_magic, mb_info
mb_magic:
	.skip 4
mb_info:
	.skip 4

/*
 * AP trampoline. Copied to TRAMP_BASE (0x8000, SIPI vector 0x08) and entered
 * in real mode at CS:IP = 0800:0000. Position-dependent addresses are
 * computed as TRAMP_BASE + (label - tramp_start). The BSP fills in CR3 (the
 * kernel PML4, below 4 GiB: it is loaded from 32-bit code), the stack top and
 * the argument, starts one AP at a time, and waits for it to check in before
 * reusing the slots.
 */
#define TRAMP_BASE 0x8000
#define T(x) (TRAMP_BASE + ((x) - tramp_start))

	.section .rodata
	.code16
	.globl tramp_start, tramp_end, tramp_cr3, tramp_stack, tramp_arg
tramp_start:
	cli
	cld
	xor %ax, %ax
	mov %ax, %ds
	lgdtl T(tramp_gdt_ptr)
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x18, $T(tramp32)

	.code32
tramp32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %cr4, %eax
	or $0x20, %eax
	mov %eax, %cr4
	mov T(tramp_cr3), %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80010001, %eax
	mov %eax, %cr0
	ljmp $0x08, $T(tramp64)

	.code64
tramp64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	xor %eax, %eax
	mov %ax, %fs
	mov %ax, %gs
	mov T(tramp_stack), %rsp
	mov T(tramp_arg), %rdi
	xor %ebp, %ebp
	movabs $ap_entry, %rax
	call *%rax
5:	cli
	hlt
	jmp 5b

	.align 8
tramp_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
	.align 8
tramp_cr3:
	.quad 0
tramp_stack:
	.quad 0
tramp_arg:
	.quad 0
tramp_end:

/*
 * Interrupt entry. Every stub leaves the same frame (struct trap_frame in
 * kernel.h): vector and error code (0 where the CPU pushes none) under the
 * CPU's frame, then the general registers. 15 saved registers plus 7 words
 * keep the stack 16-byte aligned at the call.
 */
	.text
	.code64
.macro ISR_NOERR n
	.globl isr\n
isr\n:
	push $0
	push $\n
	jmp isr_common
.endm
.macro ISR_ERR n
	.globl isr\n
isr\n:
	push $\n
	jmp isr_common
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR 8
ISR_NOERR 9
ISR_ERR 10
ISR_ERR 11
ISR_ERR 12
ISR_ERR 13
ISR_ERR 14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR 17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR 21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR 29
ISR_ERR 30
ISR_NOERR 31
ISR_NOERR 240
ISR_NOERR 241
ISR_NOERR 255

isr_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	cld
	call trap
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp
	iretq

/*
 * void call_on_stack(uintptr_t top, void (*fn)(void)): continue on another
 * stack, for good (the boot stack is left behind once the BSP has a guarded
 * one).
 */
	.globl call_on_stack
call_on_stack:
	mov %rdi, %rsp
	xor %ebp, %ebp
	call *%rsi
	ud2

/*
 * uint64_t probe_read(const void *addr, bool *ok): a load that may fault.
 * The trap handler resumes a #PF at probe_insn at probe_fixup, so tests can
 * check that an address is not mapped (on this CPU, after a shootdown).
 */
	.globl probe_read, probe_insn, probe_fixup
probe_read:
	movb $1, (%rsi)
probe_insn:
	mov (%rdi), %rax
	ret
probe_fixup:
	movb $0, (%rsi)
	xor %eax, %eax
	ret

	.section .note.GNU-stack, "", @progbits
