/* SPDX-License-Identifier: MIT */
/*
 * The test kernel's entry, command line and test driver.
 *
 * Command line (Multiboot cmdline, QEMU -append), space-separated:
 *   test=NAME     a test from tests[] or "all" (default all)
 *   seed=N        random seed (default 1)
 *   ops=N         operations per CPU (default 20000)
 *   cpus=N        run the tests on CPUs 0..N-1 (default: every CPU); the
 *                 others are brought up, then parked
 *   plant=double  free a block behind the oracle's back and take it again:
 *                 the ownership oracle must catch it (the run must FAIL)
 *   plant=pagefault  touch an unmapped address on the last test CPU: the
 *                 trap handler must report it (the run must FAIL)
 *   plant=stackoverflow  recurse on the last test CPU until its stack
 *                 hits the guard page: the #DF (on its own stack) must be
 *                 reported (the run must FAIL)
 *   plant=stuck   the last test CPU stops for good (interrupts off) while
 *                 the others finish: the run must hang, never pass
 *   plant=panic   the last test CPU panics: the run must FAIL
 *   plant=triple, plant=hang  a triple fault, a hang: for the runner's
 *                 own tests (it must tell them apart from a failure)
 *   holes=A-B,... take [A, B) out of the memory map (hex or K/M/G)
 *   memmap=T:A-B,...  add [A, B) of Multiboot type T to the firmware map,
 *                 as if the firmware had listed it there (overlapping,
 *                 unsorted and duplicated entries, reserved ranges inside
 *                 RAM: maps real firmware gives and QEMU's does not)
 *   handoff=N     objects test: objects each CPU hands to its neighbour
 *                 per round (default 16384 / cpus: 32768 a run)
 *   verbose       more output
 *
 * Output ends with one line per CPU ("cpu N: ops M ..."), a total with the
 * throughput, and "verdict: PASS" or "verdict: FAIL (...)"; QEMU exits with
 * EXIT_PASS only after "verdict: PASS".
 */
#include "kernel.h"

struct options opt = { .test = "all", .seed = 1, .ops = 20000, .handoff = ~0ull };
_Atomic uint64_t failures;

static char cmdline[512];

/* ---- command line ---- */

static bool key(const char *tok, const char *k, const char **val)
{
	size_t n = strlen(k);
	if (strncmp(tok, k, n) || tok[n] != '=')
		return false;
	*val = tok + n + 1;
	return true;
}

/* A number option's value: all of it a number, or the boot stops (a run
 * with a count it misread would test something else and could pass). */
static uint64_t opt_num(const char *v, const char *key)
{
	uint64_t n;
	const char *end = parse_u64(v, &n);
	if (!end || *end)
		panic("%s=: '%s' is not a number", key, v);
	return n;
}

/* A number of a holes= or memmap= list: one that cannot be read stops the
 * boot, since a range dropped or cut short would let cairn own memory the
 * command line keeps out of its hands. */
static const char *list_num(const char *s, uint64_t *v, const char *key, const char *list)
{
	const char *end = parse_u64(s, v);
	if (!end)
		panic("%s: no number, or one past 2^64, at '%s' in '%s'", key, s, list);
	return end;
}

static const char *list_range(const char *s, uint64_t *b, uint64_t *e, const char *key,
			      const char *list)
{
	s = list_num(s, b, key, list);
	if (*s != '-')
		panic("%s: expected A-B at '%s'", key, s);
	s = list_num(s + 1, e, key, list);
	if (*b >= *e)
		panic("%s: empty or inverted range %#lx-%#lx in '%s'", key, *b, *e, list);
	return s;
}

static const char *list_next(const char *s, const char *key)
{
	if (*s == ',')
		return s + 1;
	if (*s)
		panic("%s: junk at '%s'", key, s);
	return s;
}

static void parse_holes(const char *list)
{
	for (const char *s = list; *s;) {
		uint64_t b, e;
		s = list_range(s, &b, &e, "holes=", list);
		mm_add_hole(b, e);
		s = list_next(s, "holes=");
	}
}

static void parse_memmap(const char *list)
{
	for (const char *s = list; *s;) {
		uint64_t t, b, e;
		s = list_num(s, &t, "memmap=", list);
		/* A type cut to 32 bits could become 1, RAM. */
		if (t > UINT32_MAX)
			panic("memmap=: type %#lx is not a Multiboot type, in '%s'", t, list);
		if (*s != ':')
			panic("memmap=: expected T:A-B at '%s'", s);
		s = list_range(s + 1, &b, &e, "memmap=", list);
		mm_add_fw_range((uint32_t)t, b, e);
		s = list_next(s, "memmap=");
	}
}

static void parse_cmdline(void)
{
	/* Split in place: every token becomes a NUL-terminated string. The
	 * loader puts the image's name first: skip it. */
	char *p = cmdline;
	while (*p && *p != ' ')
		p++;
	while (*p) {
		while (*p == ' ')
			*p++ = 0;
		if (!*p)
			break;
		char *tok = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = 0;

		const char *v;
		if (key(tok, "test", &v))
			opt.test = v;
		else if (key(tok, "seed", &v))
			opt.seed = opt_num(v, "seed");
		else if (key(tok, "ops", &v))
			opt.ops = opt_num(v, "ops");
		else if (key(tok, "handoff", &v))
			opt.handoff = opt_num(v, "handoff");
		else if (key(tok, "cpus", &v)) {
			uint64_t n = opt_num(v, "cpus");
			/* 0 and more than there are: every CPU (kmain). */
			opt.cpus = n > MAX_CPUS ? 0 : (unsigned)n;
		} else if (key(tok, "plant", &v))
			opt.plant = v;
		else if (key(tok, "holes", &v))
			parse_holes(v);
		else if (key(tok, "memmap", &v))
			parse_memmap(v);
		else if (!strncmp(tok, "verbose", 8))
			opt.verbose = true;
		else
			kprintf("cmdline: ignoring '%s'\n", tok);
	}
}

/* ---- failures ---- */

void fail(const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	atomic_fetch_add(&failures, 1);
	/* An interrupt handler may fail() too (the irq test's does), on this
	 * CPU, between the load and the store of an increment: interrupts off
	 * around it, so that neither count is lost. Only this CPU writes its
	 * count, so nothing more is needed. */
	unsigned long f = irq_save();
	this_cpu()->errors++;
	irq_restore(f);
	kprintf("cpu %u: FAIL: %s\n", this_cpu()->idx, buf);
}

/* ---- running a function on every test CPU at once ---- */

static const struct test *current;
static _Atomic uint64_t epoch;     /* bumped to start a test */
static _Atomic uint64_t finished;  /* CPUs done with the current epoch */
static _Atomic uint64_t bar_count, bar_gen;

void barrier_wait(void)
{
	/* Read the generation first: it cannot move before we arrive. */
	uint64_t g = atomic_load(&bar_gen);
	if (atomic_fetch_add(&bar_count, 1) + 1 == opt.cpus) {
		atomic_store(&bar_count, 0);
		atomic_fetch_add(&bar_gen, 1);
		wake_all();
	} else {
		wait_while(&bar_gen, g);
	}
}

static void run_here(unsigned idx)
{
	struct percpu *p = &percpu[idx];
	uint64_t ops0 = p->ops, t0 = rdtsc();
	current->run(idx, opt.cpus);
	p->cycles += rdtsc() - t0;
	if (opt.verbose)
		kprintf("cpu %u: %s: ops %lu\n", idx, current->name, p->ops - ops0);
}

void ap_main(unsigned idx)
{
	if (idx >= opt.cpus) {
		/* Not a test CPU: out of shootdowns and barriers for good. */
		atomic_store(&percpu[idx].online, 0);
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	uint64_t seen = 0;
	for (;;) {
		wait_while(&epoch, seen);
		seen = atomic_load(&epoch);
		run_here(idx);
		atomic_fetch_add(&finished, 1);
		wake_all();
	}
}

static void run_on_all(const struct test *t)
{
	current = t;
	atomic_store(&finished, 0);
	atomic_fetch_add(&epoch, 1); /* seq_cst: publishes `current` */
	wake_all();
	run_here(0);
	atomic_fetch_add(&finished, 1);
	uint64_t f;
	while ((f = atomic_load(&finished)) < opt.cpus)
		wait_while(&finished, f);
}

/* ---- plant=pagefault ---- */

static void plant_pagefault_run(unsigned idx, unsigned n)
{
	if (idx == n - 1) {
		volatile uint64_t *p = (volatile uint64_t *)mm_unmapped_probe();
		kprintf("cpu %u: plant: reading unmapped address %p\n", idx, (void *)p);
		(void)*p;
		fail("plant: the read of an unmapped address did not fault");
	}
}

static const struct test plant_pagefault = { "plant-pagefault", NULL, plant_pagefault_run, NULL };

/* ---- plant=stackoverflow ---- */

static volatile unsigned recurse_limit = ~0u;

static unsigned recurse(unsigned depth)
{
	volatile char frame[256];
	frame[0] = (char)depth;
	if (depth >= recurse_limit)
		return 0;
	return recurse(depth + 1) + (unsigned)frame[0];
}

static void plant_stack_run(unsigned idx, unsigned n)
{
	if (idx == n - 1) {
		kprintf("cpu %u: plant: recursing until the stack overflows\n", idx);
		recurse(0);
		fail("plant: the stack overflow was not caught");
	}
}

static const struct test plant_stack = { "plant-stack", NULL, plant_stack_run, NULL };

/* ---- plant=stuck, plant=panic: a CPU that never finishes, or panics ---- */

static void plant_stuck_run(unsigned idx, unsigned n)
{
	if (idx == n - 1) {
		kprintf("cpu %u: plant: stuck for good, interrupts off\n", idx);
		for (;;)
			__asm__ volatile("cli; hlt");
	}
}

static const struct test plant_stuck = { "plant-stuck", NULL, plant_stuck_run, NULL };

static void plant_panic_run(unsigned idx, unsigned n)
{
	if (idx == n - 1)
		panic("plant: a panic on cpu %u", idx);
}

static const struct test plant_panic = { "plant-panic", NULL, plant_panic_run, NULL };

/* ---- entry ---- */

extern uint32_t mb_magic, mb_info;
_Noreturn void call_on_stack(uintptr_t top, void (*fn)(void));
static _Noreturn void kmain_smp(void);

void kmain(void)
{
	serial_init();
	idt_init();
	cpu_local_init(0);
	atomic_store(&percpu[0].online, 1);
	kprintf("\ncairn test kernel\n");

	mm_read_multiboot(mb_magic, mb_info, cmdline, sizeof cmdline);
	kprintf("cmdline: %s\n", cmdline);
	parse_cmdline();
	tsc_calibrate();

	cpu_slots = cpus_discover();
	if (opt.cpus == 0 || opt.cpus > cpu_slots)
		opt.cpus = cpu_slots;
	mm_init();
	cpu_tss_init(0, (uintptr_t)alloc_pages(0) + PAGE_SIZE);
	cpu_tss_load(0);
	/* Leave the boot stack for a guarded one, like the APs'. */
	percpu[0].stack_top = stack_alloc(0);
	call_on_stack(percpu[0].stack_top, kmain_smp);
}

static _Noreturn void kmain_smp(void)
{
	smp_boot(cpu_slots);
	kprintf("smp: %u CPUs up, tests on %u, TSC %lu MHz\n", ncpus, opt.cpus,
		tsc_hz / 1000000);
	__asm__ volatile("sti");

	if (opt.plant && !strncmp(opt.plant, "pagefault", 10))
		run_on_all(&plant_pagefault);
	if (opt.plant && !strncmp(opt.plant, "stackoverflow", 14))
		run_on_all(&plant_stack);
	if (opt.plant && !strncmp(opt.plant, "stuck", 6))
		run_on_all(&plant_stuck);
	if (opt.plant && !strncmp(opt.plant, "panic", 6))
		run_on_all(&plant_panic);
	if (opt.plant && !strncmp(opt.plant, "triple", 7)) {
		/* An empty IDT: the breakpoint cannot be delivered, nor the
		 * #GP that follows, nor the #DF: the CPU resets. */
		static const struct { uint16_t limit; uint64_t base; }
			__attribute__((packed)) none = { 0, 0 };
		kprintf("cpu 0: plant: breakpoint with an empty IDT (triple fault)\n");
		__asm__ volatile("lidt %0; int3" : : "m"(none));
	}
	if (opt.plant && !strncmp(opt.plant, "hang", 5)) {
		kprintf("cpu 0: plant: hanging with interrupts off\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}

	bool all = !strncmp(opt.test, "all", 4), found = false;
	uint64_t t_start = rdtsc();
	for (unsigned i = 0; i < ntests; i++) {
		const struct test *t = &tests[i];
		if (!all && strncmp(opt.test, t->name, 64))
			continue;
		found = true;
		uint64_t before = atomic_load(&failures);
		kprintf("test %s: %u CPUs, seed %lu, ops %lu\n", t->name, opt.cpus, opt.seed,
			opt.ops);
		if (t->setup)
			t->setup();
		run_on_all(t);
		if (t->check)
			t->check();
		kprintf("test %s: %s\n", t->name,
			atomic_load(&failures) == before ? "ok" : "FAILED");
	}
	uint64_t elapsed = rdtsc() - t_start;
	if (!found)
		fail("no test named '%s'", opt.test);

	uint64_t total = 0, reports = atomic_load(&cairn_reports);
	for (unsigned i = 0; i < opt.cpus; i++) {
		struct percpu *p = &percpu[i];
		kprintf("cpu %u: ops %lu errors %lu busy %lu ms stack %lu bytes\n", i, p->ops,
			p->errors, p->cycles / (tsc_hz / 1000 ? tsc_hz / 1000 : 1),
			(uint64_t)stack_used(i));
		total += p->ops;
		/* Interrupts arrive on this stack, on top of the deepest
		 * library path: keep a quarter of it for them. */
		if (stack_used(i) > STACK_LIMIT)
			fail("cpu %u: %lu bytes of its %lu-byte stack used, more than %lu", i,
			     (uint64_t)stack_used(i), PAGE_SIZE << STACK_ORDER,
			     (uint64_t)STACK_LIMIT);
	}
	uint64_t ms = elapsed / (tsc_hz / 1000 ? tsc_hz / 1000 : 1);
	kprintf("total: cpus %u ops %lu in %lu ms, %lu ops/s\n", opt.cpus, total, ms,
		ms ? total * 1000 / ms : 0);
	if (reports != expected_reports)
		fail("%lu cairn reports, %lu expected", reports, expected_reports);

	uint64_t nfail = atomic_load(&failures);
	kprintf("errors: %lu\n", nfail);
	if (nfail) {
		kprintf("verdict: FAIL (%lu failed checks)\n", nfail);
		qemu_exit(EXIT_FAIL);
	}
	kprintf("verdict: PASS\n");
	qemu_exit(EXIT_PASS);
}
