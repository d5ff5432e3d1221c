/* SPDX-License-Identifier: MIT */
/*
 * Serial console (COM1, polled) and the exit device.
 *
 * Lines are formatted into a stack buffer first and written under one
 * spinlock, so output from many CPUs interleaves by whole lines. The lock is
 * held with interrupts off and records its owner: a CPU that faults while it
 * holds the lock (an exception inside kprintf) prints anyway instead of
 * deadlocking against itself.
 */
#include "kernel.h"

#define COM1 0x3f8

static _Atomic unsigned console_owner = ~0u; /* idx of the holder, ~0 = free */

void serial_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts */
	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0xc7); /* FIFO on, cleared */
	outb(COM1 + 4, 0x03); /* DTR, RTS */
}

static void serial_putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		cpu_relax();
	outb(COM1, (uint8_t)c);
}

static unsigned my_idx(void)
{
	/* GS base is 0 until cpu_local_init; treat that CPU as the BSP. */
	uint64_t gs = rdmsr(0xc0000101);
	return gs ? this_cpu()->idx : 0;
}

static void console_write(const char *s)
{
	unsigned long flags = irq_save();
	unsigned me = my_idx();
	bool nested = atomic_load_explicit(&console_owner, memory_order_relaxed) == me;

	if (!nested) {
		unsigned free = ~0u;
		while (!atomic_compare_exchange_weak_explicit(&console_owner, &free, me,
							      memory_order_acquire,
							      memory_order_relaxed)) {
			free = ~0u;
			cpu_relax();
		}
	}
	for (; *s; s++) {
		if (*s == '\n')
			serial_putc('\r');
		serial_putc(*s);
	}
	if (!nested)
		atomic_store_explicit(&console_owner, ~0u, memory_order_release);
	irq_restore(flags);
}

/* ---- a small vsnprintf: %d %u %x %p %s %c, l/ll/z, width, flags 0 and # ---- */

struct out {
	char *buf;
	size_t len, pos;
};

static void put(struct out *o, char c)
{
	if (o->pos + 1 < o->len)
		o->buf[o->pos] = c;
	o->pos++;
}

static void put_num(struct out *o, uint64_t v, unsigned base, bool neg,
		    unsigned width, char pad)
{
	char tmp[24];
	unsigned n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (width > n) {
		put(o, pad);
		width--;
	}
	while (n)
		put(o, tmp[--n]);
}

void kvsnprintf(char *buf, size_t len, const char *fmt, va_list ap)
{
	struct out o = { buf, len, 0 };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		unsigned width = 0, lng = 0;
		bool alt = false;
		for (;; fmt++) {
			if (*fmt == '0')
				pad = '0';
			else if (*fmt == '#')
				alt = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			put_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			if (alt && *fmt == 'x') {
				put(&o, '0');
				put(&o, 'x');
				width = width > 2 ? width - 2 : 0;
			}
			put_num(&o, v, *fmt == 'x' ? 16 : 10, false, width, pad);
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, width, pad);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			while (*s)
				put(&o, *s++);
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case '%':
			put(&o, '%');
			break;
		default:
			put(&o, '%');
			if (!*fmt)
				fmt--;
			else
				put(&o, *fmt);
		}
	}
	if (len)
		buf[o.pos < len ? o.pos : len - 1] = 0;
}

void ksnprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

void kprintf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	console_write(buf);
}

_Noreturn void qemu_exit(unsigned code)
{
	outl(0xf4, code);
	/* Only reached without the exit device: stop here. */
	for (;;)
		__asm__ volatile("cli; hlt");
}

_Noreturn void panic(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	kprintf("cpu %u: PANIC: %s\n", my_idx(), buf);
	kprintf("verdict: FAIL (panic)\n");
	qemu_exit(EXIT_FAIL);
}
