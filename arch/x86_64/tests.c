/* SPDX-License-Identifier: MIT */
/*
 * The tests the kernel runs on every test CPU at once.
 *
 *   frames   the shared stress suite (stress/, the same code the host stress
 *            runs on threads): mixed operations with block swaps between
 *            CPUs under its ownership oracle, exhaustion phases, and a final
 *            check that every frame is free and validate() passes.
 *   kframes  random mixes of orders, areas, alignments, zeroing and bulk
 *            calls on every CPU at once, under an ownership oracle: one
 *            atomic owner word per physical frame, claimed with a CAS from
 *            0 on allocation and released on free. A frame handed to two
 *            holders at once fails the CAS. Each block also carries a stamp
 *            at both ends, checked before it is freed.
 *   irq      cairn frames from an interrupt handler, which frames.h allows:
 *            every CPU allocates and frees order-0 frames (the parking
 *            fast paths) under the kframes oracle and now and then sends
 *            every other CPU a wake-up IPI, whose handler takes a frame or
 *            gives back the one it took, under the same oracle: handlers
 *            land in the middle of their CPU's own frames calls.
 *   exhaust  every CPU allocates (order 9, then 4, then 0) until cairn says
 *            ENOMEM, checking each block against the firmware map (RAM,
 *            no other kind of range, no hole); then nothing may be free
 *            anywhere; then all is freed and the free count must be back
 *            where it started.
 *   objects  the shared objects stress (stress/objects_stress.c) on a cairn
 *            objects instance over all RAM, hardened: every size class,
 *            large blocks, objects handed between CPUs (remote frees),
 *            a hand-off in each round (every CPU allocates for another
 *            while freeing what a third allocated for it: tens of
 *            thousands of remote frees a run, every CPU posting and
 *            collecting; the messages posted must all be collected),
 *            CPUs going offline and online in the middle, an ownership
 *            oracle of one bit per 16 bytes; at the end every CPU goes
 *            offline, nothing may be left, and destroying the instance
 *            must give every frame back. Large objects come from a range
 *            arena of mapped address space (2 MiB spans of frames mapped
 *            by cairn_port_map), or for seeds = 2 (mod 5) from buddy
 *            blocks.
 *   percpu   the per-CPU frame cache stress (stress/percpu_stress.c): cached
 *            and passed-through orders through a cairn_fcache, frees on
 *            foreign CPUs, CPUs going offline, drains, exhaustion phases,
 *            under its ownership oracle; every frame free at the end.
 *   port     what include/cairn/port.h promises, on every test CPU: the CPU
 *            index is this CPU's own (its APIC id is the one the index was
 *            started as, whatever the ids are) and no other CPU's; sections
 *            turn interrupts off, nest, and restore the state they found;
 *            an interrupt sent inside a section waits for its end, then
 *            comes, even when the section shoots TLBs down and waits long
 *            for the other CPUs' acknowledgements; CPUs spinning in
 *            cairn_port_pause() with interrupts off acknowledge the
 *            shootdowns of the others.
 *   map      cairn_port_map/unmap: frames mapped into a per-CPU window,
 *            written there and read through the identity map, error paths,
 *            and a cross-CPU check that an unmapped page faults on a CPU
 *            that had just used it.
 * After each test CPU 0 checks the free count and cairn_frames_validate.
 */
#include <cairn/arena.h>

#include "kernel.h"

#include "objects_stress.h"
#include "frames_stress.h"
#include "percpu_stress.h"

uint64_t expected_reports;

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t rng_seed(unsigned idx, uint64_t salt)
{
	uint64_t s = (opt.seed + 1) * 0x9e3779b97f4a7c15ull ^ (idx + 1) * 0xbf58476d1ce4e5b9ull ^ salt;
	return s ? s : 1;
}

static uint64_t free_frames(void)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(frames, &st);
	uint64_t n = 0;
	for (int a = 0; a < CAIRN_AREAS; a++)
		n += st.free_frames[a];
	return n;
}

static unsigned order_for(uint64_t bytes)
{
	unsigned o = 0;
	while ((PAGE_SIZE << o) < bytes)
		o++;
	return o;
}

static uint64_t baseline_free;

static void take_baseline(void)
{
	baseline_free = free_frames();
}

static void check_quiescent(const char *name)
{
	uint64_t now = free_frames();
	if (now != baseline_free)
		fail("%s: %lu frames free after the test, %lu before", name, now,
		     baseline_free);
	int err = cairn_frames_validate(frames);
	if (err)
		fail("%s: cairn_frames_validate: %s", name, cairn_strerror(err));
}

/* ---- port: the port's promises on every test CPU ---- */

static _Atomic uint64_t port_seen; /* bit i: a CPU said it is index i */
static _Atomic unsigned port_holding; /* CPUs holding interrupts off for CPU 0 */
static _Atomic uint64_t port_gen;     /* shootdown requests before CPU 0's */
static _Atomic unsigned port_inside;  /* CPUs in the section of port_shootdown_turns */
static _Atomic unsigned port_turn;    /* the CPU whose unmap is next */
static _Atomic unsigned port_go;      /* port_unmap_race: the round under way */
static _Atomic unsigned port_won;     /* port_unmap_race: unmaps that said 0 */

static void port_setup(void)
{
	atomic_store(&port_seen, 0);
	atomic_store(&port_holding, 0);
	atomic_store(&port_inside, 0);
	atomic_store(&port_turn, 0);
	atomic_store(&port_go, 0);
}

static void port_index(unsigned idx)
{
	unsigned me = cairn_port_cpu(), n = cairn_port_cpu_count();
	if (me != idx || me >= n) {
		fail("port: cairn_port_cpu() is %u on test CPU %u (count %u)", me, idx, n);
		return;
	}
	if (atomic_fetch_or(&port_seen, 1ull << me) & (1ull << me))
		fail("port: two CPUs say they are CPU %u", me);
	if (lapic_id() != percpu[me].apic_id)
		fail("port: CPU %u runs as APIC id %u, but was started as APIC id %u", me,
		     lapic_id(), percpu[me].apic_id);
}

/* Sections entered with interrupts on: a wake-up IPI sent to ourselves in
 * the inner one is held off (its handler counts it) until the outer one
 * ends, and is taken then. Entered with them off: they stay off. */
static void port_sections(unsigned idx)
{
	_Atomic uint64_t *wakes = &this_cpu()->wakes;
	if (!irq_enabled()) {
		fail("port: test CPU %u runs with interrupts off", idx);
		return;
	}
	uint64_t w0 = atomic_load(wakes);
	unsigned long outer = cairn_port_local_enter();
	bool on1 = irq_enabled();
	unsigned long inner = cairn_port_local_enter();
	bool on2 = irq_enabled();
	wake_self();
	udelay(1000);
	cairn_port_local_leave(inner);
	bool on3 = irq_enabled();
	udelay(1000);
	uint64_t w1 = atomic_load(wakes);
	cairn_port_local_leave(outer);
	bool on4 = irq_enabled();
	for (unsigned i = 0; i < 1000 && atomic_load(wakes) == w0; i++)
		udelay(10);
	if (on1 || on2 || on3 || !on4)
		fail("port: interrupts %d, %d nested, %d after the inner leave, %d after the "
		     "outer (want 0, 0, 0, 1)", on1, on2, on3, on4);
	if (w1 != w0)
		fail("port: an interrupt was taken inside a CPU-local section");
	if (atomic_load(wakes) == w0)
		fail("port: the interrupt a CPU-local section held off never came");

	__asm__ volatile("cli" : : : "memory");
	unsigned long s = cairn_port_local_enter();
	cairn_port_local_leave(s);
	bool on5 = irq_enabled();
	__asm__ volatile("sti" : : : "memory");
	if (on5)
		fail("port: a section entered with interrupts off turned them on");
}

/* A TLB shootdown inside a section (an arena's unmap under the objects
 * layer): while CPU 0 waits for the acknowledgements, every other CPU holds
 * interrupts off from before CPU 0's request until 2 ms after it, so the
 * wait is long. A wake-up CPU 0 sent itself inside the section must still
 * be held off until the section ends: no interrupt, whatever the port does
 * while it waits. */
#define PORT_VA ((uintptr_t)0xffffa00000000000)

static void port_shootdown_hold(unsigned n)
{
	unsigned long f = irq_save();
	atomic_fetch_add(&port_holding, 1);
	while (atomic_load(&port_holding) < n) /* CPU 0 has read the count */
		cpu_relax();
	/* Until CPU 0 requests (a map that failed requests none: its check
	 * fails it, and we go on after 10 s rather than hang the run). */
	uint64_t end = rdtsc() + 10 * tsc_hz;
	while (tlb_requests() == atomic_load(&port_gen) && rdtsc() < end)
		cpu_relax();
	udelay(2000);
	irq_restore(f);
}

static void port_shootdown(unsigned idx, unsigned n)
{
	barrier_wait();
	if (idx != 0) {
		port_shootdown_hold(n);
		barrier_wait();
		return;
	}
	cairn_phys_t p;
	if (cairn_frames_alloc(frames, 0, CAIRN_F_ZERO, &p))
		panic("port: no frame");
	atomic_store(&port_gen, tlb_requests());
	while (atomic_load(&port_holding) < n - 1)
		cpu_relax();
	_Atomic uint64_t *wakes = &this_cpu()->wakes;
	unsigned long s = cairn_port_local_enter();
	atomic_fetch_add(&port_holding, 1); /* the others may wait for us now */
	uint64_t w0 = atomic_load(wakes);
	wake_self();
	int e1 = cairn_port_map(PORT_VA, p, PAGE_SIZE);
	*(volatile uint64_t *)PORT_VA = 1; /* in this CPU's TLB */
	int e2 = cairn_port_unmap(PORT_VA, PAGE_SIZE);
	uint64_t w1 = atomic_load(wakes);
	cairn_port_local_leave(s);
	for (unsigned i = 0; i < 1000 && atomic_load(wakes) == w0; i++)
		udelay(10);
	if (e1 || e2)
		fail("port: map %d, unmap %d in a section", e1, e2);
	if (w1 != w0)
		fail("port: an interrupt was taken inside a CPU-local section, during a TLB "
		     "shootdown");
	if (atomic_load(wakes) == w0)
		fail("port: the interrupt held off over a shootdown never came");
	cairn_frames_free(frames, p, 0);
	barrier_wait();
}

/* Spin as cairn's own loops do (cairn_heap_online, a drain's wait, a tree
 * node's lock), interrupts off, until *word reaches `want`; false at `end`
 * (PORT_TURNS_S after the start). */
static bool port_spin_until(_Atomic unsigned *word, unsigned want, uint64_t end)
{
	while (atomic_load(word) < want)
		if (rdtsc() > end)
			return false;
		else
			cairn_port_pause();
	return true;
}

/* Every CPU inside a section, interrupts off, unmaps a page in turn, and
 * waits there in cairn_port_pause() for the others' turns: every shootdown
 * needs the acknowledgement of CPUs that spin in a cairn wait loop and take
 * no IPI. A port that serves shootdowns only from its IPI handler, or only
 * while shooting down itself, deadlocks here (the spinners give up after
 * PORT_TURNS_S and fail the test). The bound only tells that deadlock from
 * a slow run: under TCG the TSC follows the host's clock, and every turn
 * needs every vCPU to run, 8 of them time-sliced on a loaded host's 2
 * cores; the runner's own timeout is far above it. */
#define PORT_TURNS_S 60u

static void port_shootdown_turns(unsigned idx, unsigned n)
{
	uintptr_t va = PORT_VA + (1 + idx) * PAGE_SIZE;
	cairn_phys_t p;
	bool ok;
	if (cairn_frames_alloc(frames, 0, CAIRN_F_ZERO, &p))
		panic("port: no frame");
	int e1 = cairn_port_map(va, p, PAGE_SIZE);
	*(volatile uint64_t *)va = 1;
	barrier_wait();
	unsigned long s = cairn_port_local_enter();
	uint64_t end = rdtsc() + PORT_TURNS_S * tsc_hz;
	atomic_fetch_add(&port_inside, 1);
	bool in = port_spin_until(&port_inside, n, end);
	bool turn = in && port_spin_until(&port_turn, idx, end);
	int e2 = cairn_port_unmap(va, PAGE_SIZE);
	atomic_fetch_add(&port_turn, 1);
	bool all = port_spin_until(&port_turn, n, end);
	cairn_port_local_leave(s);
	if (!in || !turn || !all)
		fail("port: cpu %u waited %u s in cairn_port_pause, interrupts off, for the "
		     "others' shootdowns (%s)", idx, PORT_TURNS_S,
		     !in ? "to meet" : !turn ? "for its turn" : "after it");
	if (e1 || e2)
		fail("port: map %d, unmap %d in a section, in turn", e1, e2);
	if (probe_read((void *)va, &ok), ok)
		fail("port: %#lx readable after its unmap", va);
	cairn_frames_free(frames, p, 0);
	barrier_wait();
}

/* Every CPU unmaps one 2 MiB range at once, from a spin start: of unmaps
 * racing for a page one wins, and the others are ERANGE (a second unmap of
 * a range is a bug the port must refuse, or the range's frames are freed
 * twice). An unmap that checks every page and then clears them lets all of
 * them through while their checks overlap. */
#define PORT_RACE_VA (PORT_VA + ((uintptr_t)1 << 30))
#define PORT_RACE_ORDER 9
#define PORT_RACE_ROUNDS 32

static void port_unmap_race(unsigned idx, unsigned n)
{
	size_t len = PAGE_SIZE << PORT_RACE_ORDER;
	for (unsigned round = 1; round <= PORT_RACE_ROUNDS; round++) {
		cairn_phys_t p = 0;
		if (idx == 0) {
			if (cairn_frames_alloc(frames, PORT_RACE_ORDER, 0, &p))
				panic("port: no 2 MiB block");
			int err = cairn_port_map(PORT_RACE_VA, p, len);
			if (err)
				fail("port: map of the race range: %d", err);
			atomic_store(&port_won, 0);
		}
		barrier_wait();
		if (idx == 0)
			atomic_store(&port_go, round);
		while (atomic_load(&port_go) != round)
			cpu_relax();
		if (cairn_port_unmap(PORT_RACE_VA, len) == 0)
			atomic_fetch_add(&port_won, 1);
		barrier_wait();
		if (idx == 0) {
			unsigned won = atomic_load(&port_won);
			if (won != 1)
				fail("port: %u of %u unmaps of one range at once said 0, round %u",
				     won, n, round);
			/* Freed only if unmapped once: never twice. */
			if (won)
				cairn_frames_free(frames, p, PORT_RACE_ORDER);
		}
		barrier_wait();
	}
}

static void port_run(unsigned idx, unsigned n)
{
	port_index(idx);
	port_sections(idx);
	if (n > 1) {
		port_shootdown(idx, n);
		port_shootdown_turns(idx, n);
		port_unmap_race(idx, n);
	}
	this_cpu()->ops++;
}

static void port_check(void)
{
	char line[200];
	size_t at = 0;
	for (unsigned i = 0; i < opt.cpus && at + 12 < sizeof line; i++) {
		ksnprintf(line + at, sizeof line - at, " %u:%u", i, percpu[i].apic_id);
		at += strlen(line + at);
	}
	kprintf("port: cpu index:apic id%s\n", line);
	uint64_t want = opt.cpus >= 64 ? ~0ull : (1ull << opt.cpus) - 1;
	if (atomic_load(&port_seen) != want)
		fail("port: CPU indices seen %#lx, want %#lx", atomic_load(&port_seen), want);
}

/* ---- kframes: mixed operations under the ownership oracle ---- */

#define HELD_MAX 64
#define STAMP 0x5ca1ab1e0ddba11ull

struct block {
	uint64_t phys;
	unsigned order;
};

static _Atomic uint16_t *owner; /* per frame: 0 free, else holder cpu + 1 */
static uint64_t owner_frames;
static unsigned owner_order;

static void kframes_setup(void)
{
	take_baseline(); /* check() gives the oracle back before comparing */
	owner_frames = ram_top / PAGE_SIZE;
	owner_order = order_for(owner_frames * sizeof *owner);
	owner = alloc_pages(owner_order);
}

/* Claim every frame of the block for `me`; on a collision give back what
 * was claimed and name the other holder. */
static bool claim(uint64_t phys, unsigned order, unsigned me)
{
	uint64_t f0 = phys / PAGE_SIZE, n = 1ull << order;
	for (uint64_t i = 0; i < n; i++) {
		uint16_t expect = 0;
		if (f0 + i >= owner_frames ||
		    !atomic_compare_exchange_strong_explicit(&owner[f0 + i], &expect,
							     (uint16_t)(me + 1),
							     memory_order_acq_rel,
							     memory_order_acquire)) {
			fail("oracle: frame %#lx of block %#lx order %u handed to cpu %u "
			     "while cpu %d holds it (double allocation)",
			     (f0 + i) * PAGE_SIZE, phys, order, me, (int)expect - 1);
			while (i--)
				atomic_store_explicit(&owner[f0 + i], 0, memory_order_release);
			return false;
		}
	}
	return true;
}

static void unclaim(uint64_t phys, unsigned order, unsigned me)
{
	uint64_t f0 = phys / PAGE_SIZE, n = 1ull << order;
	for (uint64_t i = 0; i < n; i++) {
		uint16_t expect = (uint16_t)(me + 1);
		if (!atomic_compare_exchange_strong_explicit(&owner[f0 + i], &expect, 0,
							     memory_order_acq_rel,
							     memory_order_acquire))
			fail("oracle: cpu %u frees frame %#lx held by %d", me,
			     (f0 + i) * PAGE_SIZE, (int)expect - 1);
	}
}

static void stamp(uint64_t phys, unsigned order)
{
	volatile uint64_t *b = cairn_port_phys_to_virt(phys);
	size_t last = ((PAGE_SIZE << order) / 8) - 1;
	b[0] = phys ^ STAMP;
	b[last] = ~phys ^ STAMP;
}

static void check_stamp(uint64_t phys, unsigned order)
{
	volatile uint64_t *b = cairn_port_phys_to_virt(phys);
	size_t last = ((PAGE_SIZE << order) / 8) - 1;
	if (b[0] != (phys ^ STAMP) || b[last] != (~phys ^ STAMP))
		fail("block %#lx order %u overwritten while held", phys, order);
}

static void release(struct block *b, unsigned me)
{
	check_stamp(b->phys, b->order);
	unclaim(b->phys, b->order, me);
	int err = cairn_frames_free(frames, b->phys, b->order);
	if (err)
		fail("free %#lx order %u: %s", b->phys, b->order, cairn_strerror(err));
}

static bool area_ok(uint64_t phys, unsigned order, unsigned flags)
{
	uint64_t end = phys + (PAGE_SIZE << order);
	unsigned areas = flags & CAIRN_F_ANY;
	if (!areas || (areas & CAIRN_F_HIGH))
		return true;
	if (areas & CAIRN_F_LOW4G)
		return end <= (4ull << 30);
	return end <= (16ull << 20);
}

/* plant=double: give a held block back to cairn behind the oracle's back
 * and take it again. The oracle still has it as ours, so the second claim
 * must fail. The stale entry stays held and is freed normally later, so the
 * books balance and the oracle's report is the only failure. */
static void plant_double(struct block *b, unsigned me)
{
	kprintf("cpu %u: plant: freeing block %#lx order %u behind the oracle's back\n",
		me, b->phys, b->order);
	if (cairn_frames_free(frames, b->phys, b->order) ||
	    cairn_frames_alloc_at(frames, b->phys, b->order)) {
		fail("plant: could not re-allocate the block");
		return;
	}
	if (claim(b->phys, b->order, me))
		fail("plant: the oracle missed a double allocation");
}

static void kframes_run(unsigned idx, unsigned n)
{
	(void)n;
	struct block *held = alloc_pages(order_for(HELD_MAX * sizeof *held));
	unsigned nh = 0;
	uint64_t s = rng_seed(idx, 1), enomem = 0;
	bool plant = idx == 0 && opt.plant && !strncmp(opt.plant, "double", 7);

	for (uint64_t i = 0; i < opt.ops; i++) {
		uint64_t r = rng_next(&s);
		this_cpu()->ops++;

		if (plant && nh && i >= opt.ops / 2) {
			plant_double(&held[0], idx);
			plant = false;
		}
		if (nh == HELD_MAX || (nh && (r & 1))) {
			unsigned k = (unsigned)((r >> 8) % nh);
			release(&held[k], idx);
			held[k] = held[--nh];
			continue;
		}
		if ((r >> 4) % 16 == 0) {
			/* Bulk: a batch of order-0 frames, held for a moment. */
			cairn_phys_t batch[16];
			size_t want = 1 + (r >> 12) % 16, got, ok = 0;
			got = cairn_frames_alloc_bulk(frames, 0, batch, want);
			for (size_t j = 0; j < got; j++)
				if (claim(batch[j], 0, idx))
					batch[ok++] = batch[j];
			for (size_t j = 0; j < ok; j++)
				unclaim(batch[j], 0, idx);
			size_t done = 0;
			int err = cairn_frames_free_bulk(frames, batch, ok, &done);
			if (err)
				fail("free_bulk: %s after %lu", cairn_strerror(err), (uint64_t)done);
			if (!got)
				enomem++;
			continue;
		}

		unsigned p = (unsigned)((r >> 16) % 1000), order;
		if (p < 550)
			order = 0;
		else if (p < 800)
			order = 1 + (unsigned)(r >> 32) % 3;
		else if (p < 950)
			order = 4 + (unsigned)(r >> 32) % 5;
		else if (p < 995)
			order = 9;
		else
			order = 10 + (unsigned)(r >> 32) % 3;

		unsigned q = (unsigned)((r >> 40) % 100), flags = 0;
		if (q < 8)
			flags = CAIRN_F_LOW16M;
		else if (q < 16)
			flags = CAIRN_F_LOW16M | CAIRN_F_LOW4G;
		bool zero = (r >> 48) % 20 == 0;
		if (zero)
			flags |= CAIRN_F_ZERO;
		unsigned align = order;
		if ((r >> 52) % 10 == 0)
			align = order + 1 + (unsigned)(r >> 56) % 3;

		cairn_phys_t phys;
		int err = align > order
			? cairn_frames_alloc_aligned(frames, order, align, flags, &phys)
			: cairn_frames_alloc(frames, order, flags, &phys);
		if (err == CAIRN_ENOMEM) {
			enomem++;
			continue;
		}
		if (err) {
			fail("alloc order %u align %u flags %#x: %s", order, align, flags,
			     cairn_strerror(err));
			continue;
		}
		if (phys & ((PAGE_SIZE << align) - 1))
			fail("alloc order %u align %u: %#lx misaligned", order, align, phys);
		if (!area_ok(phys, order, flags))
			fail("alloc flags %#x: %#lx order %u outside the areas", flags, phys, order);
		if (!claim(phys, order, idx))
			continue;
		if (zero) {
			volatile uint64_t *b = cairn_port_phys_to_virt(phys);
			size_t words = (PAGE_SIZE << order) / 8;
			if (b[0] || b[words / 2] || b[words - 1])
				fail("CAIRN_F_ZERO block %#lx order %u not zeroed", phys, order);
		}
		stamp(phys, order);
		held[nh++] = (struct block){ phys, order };
	}
	while (nh)
		release(&held[--nh], idx);
	free_pages(held, order_for(HELD_MAX * sizeof *held));
	if (opt.verbose)
		kprintf("cpu %u: kframes: %lu allocations found memory exhausted\n", idx, enomem);
}

static void kframes_check(void)
{
	free_pages((void *)owner, owner_order);
	check_quiescent("kframes");
}

/* ---- irq: frames from an interrupt handler ---- */

/* Interrupts are off here (the handler), so the per-CPU fields are this
 * CPU's alone. The handler's blocks are held as CPU idx + MAX_CPUS. */
void irq_frames_tick(void)
{
	struct percpu *p = this_cpu();
	unsigned holder = p->idx + MAX_CPUS;
	if (p->irq_frame) {
		check_stamp(p->irq_frame, 0);
		unclaim(p->irq_frame, 0, holder);
		int err = cairn_frames_free(frames, p->irq_frame, 0);
		if (err)
			fail("irq: handler's free of %#lx: %s", p->irq_frame, cairn_strerror(err));
		p->irq_frame = 0;
		return;
	}
	cairn_phys_t f;
	if (cairn_frames_alloc(frames, 0, 0, &f) || !claim(f, 0, holder))
		return;
	stamp(f, 0);
	p->irq_frame = f;
	p->irq_allocs++;
}

/* Wake every other CPU, and give each armed one a moment (50 us) to take
 * it: IPIs sent while the target has one pending merge into one. */
static void irq_kick(unsigned me, unsigned n)
{
	uint64_t before[MAX_CPUS];
	for (unsigned i = 0; i < n; i++)
		before[i] = atomic_load(&percpu[i].wakes);
	wake_all();
	uint64_t end = rdtsc() + tsc_hz / 20000;
	for (unsigned i = 0; i < n; i++)
		while (i != me && percpu[i].irq_frames &&
		       atomic_load(&percpu[i].wakes) == before[i] && rdtsc() < end)
			cpu_relax();
}

static void irq_run(unsigned idx, unsigned n)
{
	struct percpu *p = this_cpu();
	cairn_phys_t held[HELD_MAX];
	unsigned nh = 0;
	uint64_t s = rng_seed(idx, 4);

	uint64_t w0 = atomic_load(&p->wakes), sent = 0;
	p->irq_allocs = 0;
	p->irq_frames = 1;
	barrier_wait(); /* every CPU armed, and all start at once */
	for (uint64_t i = 0; i < opt.ops / 2; i++) {
		uint64_t r = rng_next(&s);
		p->ops++;
		if (nh == HELD_MAX || (nh && (r & 1))) {
			unsigned k = (unsigned)((r >> 8) % nh);
			struct block b = { held[k], 0 };
			release(&b, idx);
			held[k] = held[--nh];
		} else {
			cairn_phys_t f;
			if (!cairn_frames_alloc(frames, 0, 0, &f) && claim(f, 0, idx)) {
				stamp(f, 0);
				held[nh++] = f;
			}
		}
		if (n > 1 && (r >> 24) % 16 == 0) {
			irq_kick(idx, n);
			sent++;
		}
	}
	unsigned long flags = irq_save();
	p->irq_frames = 0;
	if (p->irq_frame)
		irq_frames_tick(); /* gives it back */
	irq_restore(flags);
	while (nh)
		release(&(struct block){ held[--nh], 0 }, idx);
	if (opt.verbose)
		kprintf("cpu %u: irq: %lu wake-ups sent, %lu taken, %lu frames taken by its "
			"handler\n", idx, sent, atomic_load(&p->wakes) - w0, p->irq_allocs);
}

static void irq_check(void)
{
	/* Per CPU it may come to nothing (all its IPIs merged while it was
	 * descheduled); over every CPU, not under TCG or on hardware. */
	uint64_t allocs = 0;
	for (unsigned i = 0; i < opt.cpus; i++)
		allocs += percpu[i].irq_allocs;
	if (opt.cpus > 1 && !allocs)
		fail("irq: no wake-up handler took a frame");
	kframes_check();
}

/* ---- exhaust ---- */

static _Atomic uint64_t exhaust_held;

static void exhaust_setup(void)
{
	atomic_store(&exhaust_held, 0);
	take_baseline();
}

static void exhaust_run(unsigned idx, unsigned n)
{
	(void)n;
	static const unsigned orders[] = { 9, 4, 0 };
	uint64_t list = 0, frames_held = 0; /* blocks linked through word 0 */

	barrier_wait();
	for (unsigned k = 0; k < 3; k++) {
		cairn_phys_t p;
		while (!cairn_frames_alloc(frames, orders[k], 0, &p)) {
			if (!mm_may_own(p, p + (PAGE_SIZE << orders[k])))
				fail("exhaust: cairn handed out %#lx order %u, which is not "
				     "free RAM by the firmware map", p, orders[k]);
			uint64_t *b = cairn_port_phys_to_virt(p);
			b[0] = list;
			b[1] = orders[k];
			list = p;
			frames_held += 1ull << orders[k];
			this_cpu()->ops++;
		}
	}
	atomic_fetch_add(&exhaust_held, frames_held);
	barrier_wait();
	/* Everyone has seen ENOMEM at order 0 with nothing freed since. */
	cairn_phys_t p;
	if (!cairn_frames_alloc(frames, 0, 0, &p))
		fail("exhaust: order 0 allocated %#lx after every CPU saw ENOMEM", p);
	if (idx == 0) {
		uint64_t left = free_frames();
		if (left)
			fail("exhaust: %lu frames still free when exhausted", left);
		kprintf("exhaust: %lu frames allocated, %lu free\n",
			atomic_load(&exhaust_held), left);
	}
	barrier_wait();
	while (list) {
		uint64_t *b = cairn_port_phys_to_virt(list);
		uint64_t next = b[0];
		unsigned order = (unsigned)b[1];
		int err = cairn_frames_free(frames, list, order);
		if (err)
			fail("exhaust: free %#lx order %u: %s", list, order, cairn_strerror(err));
		list = next;
		this_cpu()->ops++;
	}
}

static void exhaust_check(void)
{
	if (atomic_load(&exhaust_held) != baseline_free)
		fail("exhaust: held %lu frames at the peak, %lu were free",
		     atomic_load(&exhaust_held), baseline_free);
	check_quiescent("exhaust");
}

/* ---- map ---- */

#define WINDOW_BASE ((uintptr_t)0xffff800000000000)
#define WINDOW_SIZE ((uintptr_t)64 << 20)
#define MAP_PAGES 8

static uintptr_t window(unsigned idx)
{
	return WINDOW_BASE + idx * WINDOW_SIZE;
}

static uint64_t pt_pages_before;
static _Atomic uint64_t cross_seen[MAX_CPUS], cross_done[MAX_CPUS];
static _Atomic uint64_t cross_mapped, cross_unmapped; /* the round the owner is at */

static void map_setup(void)
{
	take_baseline();
	pt_pages_before = atomic_load(&pt_pages);
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		atomic_store(&cross_seen[i], 0);
		atomic_store(&cross_done[i], 0);
	}
	atomic_store(&cross_mapped, 0);
	atomic_store(&cross_unmapped, 0);
}

/* Wait until every CPU but `owner` has stored `round` in flags[]. */
static void cross_wait_readers(_Atomic uint64_t *flags, unsigned owner, uint64_t round,
			       unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		while (i != owner && atomic_load(&flags[i]) != round)
			cpu_relax();
}

static void cross_owner_round(uintptr_t slot, uint64_t round, unsigned n)
{
	unsigned me = this_cpu()->idx;
	cairn_phys_t f;
	if (cairn_frames_alloc(frames, 0, CAIRN_F_ZERO, &f))
		panic("map: no frame");
	if (cairn_port_map(slot, f, PAGE_SIZE))
		fail("map: cross slot busy");
	*(volatile uint64_t *)slot = f;
	atomic_store(&cross_mapped, round);
	cross_wait_readers(cross_seen, me, round, n);
	if (cairn_port_unmap(slot, PAGE_SIZE))
		fail("map: unmap of the cross slot failed");
	atomic_store(&cross_unmapped, round);
	cross_wait_readers(cross_done, me, round, n);
	cairn_frames_free(frames, f, 0);
	this_cpu()->ops += 2;
}

static void cross_reader_round(uintptr_t theirs, unsigned owner, uint64_t round, unsigned me)
{
	bool ok;
	while (atomic_load(&cross_mapped) != round)
		cpu_relax();
	uint64_t got = probe_read((void *)theirs, &ok);
	if (!ok || !got)
		fail("map: cpu %u's page at %#lx is not readable", owner, theirs);
	atomic_store(&cross_seen[me], round);
	while (atomic_load(&cross_unmapped) != round)
		cpu_relax();
	probe_read((void *)theirs, &ok);
	if (ok)
		fail("map: stale TLB entry: cpu %u's unmapped page at %#lx is still readable",
		     owner, theirs);
	atomic_store(&cross_done[me], round);
	this_cpu()->ops++;
}

/* The identity map is no mapping of the port's: as a map over it is
 * EEXIST, an unmap of it is ERANGE and leaves it mapped, whether it lies in
 * 4 KiB pages (the first 2 MiB: below the AP trampoline, or the kernel's
 * own image at 1 MiB) or in large ones. */
static void map_unmap_direct(void)
{
	static const uintptr_t direct[] = { 0x7000, 0x400000 };
	bool ok;
	for (unsigned i = 0; i < sizeof direct / sizeof direct[0]; i++) {
		uintptr_t v = direct[i];
		int err = cairn_port_unmap(v, PAGE_SIZE);
		if (err != CAIRN_ERANGE)
			fail("unmap of %#lx, in the identity map, said %d, not ERANGE", v, err);
		if (probe_read((void *)v, &ok), !ok) {
			fail("map: %#lx, in the identity map, unmapped by the port", v);
			cairn_port_map(v, v, PAGE_SIZE); /* the run goes on */
		}
	}
}

/* Both ends canonical, not every byte between them: page 0 (the NULL
 * guard) after the last page of the address space, the hole between the
 * halves, or all of it once round. EINVAL, and nothing mapped. */
static void map_bad_ranges(cairn_phys_t f)
{
	static const struct { uintptr_t virt; size_t len; } bad[] = {
		{ (uintptr_t)0 - PAGE_SIZE, 2 * PAGE_SIZE },
		{ (uintptr_t)0x00007ffffffff000, (uintptr_t)0xffff800000001000 - 0x00007ffffffff000 },
		{ (uintptr_t)0 - 2 * PAGE_SIZE, (size_t)0 - PAGE_SIZE }, /* round, to below itself */
	};
	bool ok;
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int err = cairn_port_map(bad[i].virt, f, bad[i].len);
		if (err != CAIRN_EINVAL)
			fail("map of %#lx + %#lx, which wraps, said %d, not EINVAL", bad[i].virt,
			     (uint64_t)bad[i].len, err);
		if (probe_read((void *)bad[i].virt, &ok), ok)
			fail("map: %#lx mapped by a map that wraps", bad[i].virt);
		if (probe_read((void *)0, &ok), ok)
			fail("map: page 0 (the NULL guard) mapped by a map that wraps");
		err = cairn_port_unmap(bad[i].virt, bad[i].len);
		if (err != CAIRN_EINVAL)
			fail("unmap of %#lx + %#lx, which wraps, said %d, not EINVAL", bad[i].virt,
			     (uint64_t)bad[i].len, err);
	}
	/* Page 0 is the NULL guard: no map may fill it (the second range's
	 * other pages are the identity map's). */
	static const struct { uintptr_t virt; size_t len; } guard[] = {
		{ 0, PAGE_SIZE }, { 0, 3 * PAGE_SIZE },
	};
	for (unsigned i = 0; i < sizeof guard / sizeof guard[0]; i++) {
		int err = cairn_port_map(guard[i].virt, f, guard[i].len);
		if (err != CAIRN_EINVAL)
			fail("map of %#lx + %#lx, over the NULL guard, said %d, not EINVAL",
			     guard[i].virt, (uint64_t)guard[i].len, err);
		if (probe_read((void *)0, &ok), ok)
			fail("map: page 0 (the NULL guard) mapped by a map at 0");
	}
	map_unmap_direct();
}

static void map_run(unsigned idx, unsigned n)
{
	uint64_t s = rng_seed(idx, 3);
	unsigned rounds = (unsigned)(opt.ops / 256) + 4;
	cairn_phys_t pg[MAP_PAGES];
	uintptr_t w = window(idx);
	bool ok;

	for (unsigned round = 0; round < rounds; round++) {
		unsigned k = 1 + (unsigned)(rng_next(&s) % MAP_PAGES);
		/* From the window's second page: the page below v is ours too. */
		uintptr_t v = w + (1 + rng_next(&s) % (WINDOW_SIZE / PAGE_SIZE - MAP_PAGES - 1)) *
				      PAGE_SIZE;

		/* Frames need not be contiguous: map them one by one. */
		for (unsigned i = 0; i < k; i++) {
			if (cairn_frames_alloc(frames, 0, 0, &pg[i]))
				panic("map: no frame");
			int err = cairn_port_map(v + i * PAGE_SIZE, pg[i], PAGE_SIZE);
			if (err)
				fail("map %#lx: %s", v + i * PAGE_SIZE, cairn_strerror(err));
			this_cpu()->ops++;
		}
		for (unsigned i = 0; i < k; i++) {
			volatile uint64_t *virt = (volatile uint64_t *)(v + i * PAGE_SIZE);
			virt[i] = pg[i] ^ round;
			if (*(volatile uint64_t *)cairn_port_phys_to_virt(pg[i] + i * 8) !=
			    (pg[i] ^ round))
				fail("map: %#lx does not show frame %#lx", v + i * PAGE_SIZE, pg[i]);
		}
		/* Error paths change nothing. */
		if (cairn_port_map(v, pg[0], PAGE_SIZE) != CAIRN_EEXIST)
			fail("map over a mapping did not say EEXIST");
		if (cairn_port_map(0x200000, pg[0], PAGE_SIZE) != CAIRN_EEXIST)
			fail("map over the identity map did not say EEXIST");
		if (cairn_port_unmap(v + k * PAGE_SIZE, 2 * PAGE_SIZE) != CAIRN_ERANGE)
			fail("unmap of a range not all mapped did not say ERANGE");
		/* All or nothing: a map whose second page is taken leaves its
		 * first unmapped; an unmap whose second page is not mapped
		 * leaves its first mapped. */
		if (cairn_port_map(v - PAGE_SIZE, pg[0], 2 * PAGE_SIZE) != CAIRN_EEXIST)
			fail("map of a range whose second page is mapped did not say EEXIST");
		if (probe_read((void *)(v - PAGE_SIZE), &ok), ok)
			fail("map: a failed map left %#lx mapped", v - PAGE_SIZE);
		uintptr_t last = v + (k - 1) * PAGE_SIZE;
		if (cairn_port_unmap(last, 2 * PAGE_SIZE) != CAIRN_ERANGE)
			fail("unmap of a range whose second page is unmapped did not say ERANGE");
		if (probe_read((void *)last, &ok), !ok)
			fail("map: a failed unmap unmapped %#lx", last);
		if (probe_read((void *)v, &ok) != (pg[0] ^ round) || !ok)
			fail("map: a failed call changed the mapping at %#lx", v);
		/* A range that wraps past 2^64, or runs from the lower half
		 * of the address space into the upper one, is not a range. */
		if (round == 0 && idx == 0)
			map_bad_ranges(pg[0]);

		int err = cairn_port_unmap(v, k * PAGE_SIZE);
		if (err)
			fail("unmap %#lx: %s", v, cairn_strerror(err));
		if (probe_read((void *)v, &ok), ok)
			fail("map: %#lx still readable after unmap", v);
		for (unsigned i = 0; i < k; i++)
			cairn_frames_free(frames, pg[i], 0);
	}
	/* The cross-CPU part. In each round one CPU (the owner) maps a page
	 * in its slot; every other CPU reads it there (its TLB may now hold
	 * the entry); the owner unmaps it, and every reader must fault on its
	 * next read. Readers change no mapping in the round: their own unmap
	 * would reload CR3, flush their whole TLB and hide a missing
	 * shootdown (it did: with every CPU both owner and reader, a
	 * shootdown without its IPI passed). The hand-offs spin rather than
	 * sleep. */
	if (n > 1) {
		uintptr_t slot = w + WINDOW_SIZE - PAGE_SIZE;
		for (uint64_t round = 1; round <= 2 * n; round++) {
			unsigned owner = (unsigned)(round % n);
			uintptr_t theirs = window(owner) + WINDOW_SIZE - PAGE_SIZE;
			if (idx == owner)
				cross_owner_round(slot, round, n);
			else
				cross_reader_round(theirs, owner, round, idx);
		}
	}
}

static void map_check(void)
{
	for (unsigned i = 0; i < opt.cpus; i++)
		if (mm_is_mapped(window(i)))
			fail("map: window of cpu %u still mapped", i);
	/* Page-table pages stay with the tables once created. */
	baseline_free -= atomic_load(&pt_pages) - pt_pages_before;
	check_quiescent("map");
}

/* ---- frames: the shared stress suite ---- */

/* The ownership oracle of a frames or percpu stress run covers every frame
 * from the first managed one to the end of RAM; returns the order of the
 * pages it took. */
static unsigned oracle_setup(struct stress_blocks *b)
{
	b->oracle_first = (1ull << 20) / PAGE_SIZE;
	b->oracle_frames = ram_top / PAGE_SIZE - b->oracle_first;
	unsigned order = order_for(b->oracle_frames * sizeof *b->owner);
	b->owner = alloc_pages(order);
	return order;
}

static struct stress_frames *sf;
static unsigned sf_order, sf_cpu_order, sf_owner_order;

static void frames_setup(void)
{
	take_baseline();
	sf_order = order_for(sizeof *sf);
	sf = alloc_pages(sf_order);
	sf_cpu_order = order_for(opt.cpus * sizeof *sf->cpu);
	sf->cpu = alloc_pages(sf_cpu_order);
	sf_owner_order = oracle_setup(&sf->blocks);
	sf->f = frames;
	sf->ncpus = opt.cpus;
	sf->ops = opt.ops;
	sf->seed = opt.seed;
	sf->phases = 2;
	sf->plant = opt.plant && !strncmp(opt.plant, "double", 7) ? STRESS_PLANT_DOUBLE
								 : STRESS_PLANT_NONE;
	stress_frames_init(sf);
}

static void frames_run(unsigned idx, unsigned n)
{
	(void)n;
	uint64_t errors = stress_frames_cpu(sf, idx);
	struct stress_cpu *c = &sf->cpu[idx];
	this_cpu()->ops += c->ops + c->exhaust_frames;
	if (opt.verbose)
		kprintf("cpu %u: frames: mixed %lu allocs %lu frees %lu enomem %lu swaps %lu "
			"exhaust %lu\n", idx, c->ops, c->allocs, c->frees, c->enomem, c->swaps,
			c->exhaust_frames);
	if (idx == 0 && errors)
		fail("frames: the stress suite saw %lu errors", errors);
}

static void frames_check(void)
{
	free_pages((void *)sf->blocks.owner, sf_owner_order);
	free_pages(sf->cpu, sf_cpu_order);
	free_pages(sf, sf_order);
	check_quiescent("frames");
}

/* ---- objects: the shared objects stress ---- */

static struct cairn_objects *ko;
static struct cairn_fcache *kfc;
static struct stress_objects *so;
static unsigned so_order, so_cpu_order, so_oracle_order, so_va_oracle_order;

/* Large objects: an arena of address space above the map test's windows,
 * twice the RAM, whose 2 MiB spans are frames mapped there. */
#define LARGE_VA_BASE ((uintptr_t)0xffff900000000000)
static struct cairn_arena large_va, large_arena;
static struct cairn_frames_source large_fs;
static struct cairn_arena_source large_src;
static bool large_on;
static uint64_t large_pt_before;

static uint64_t large_va_size(void)
{
	return (2 * ram_top + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
}

static void large_setup(struct cairn_objects_config *cfg)
{
	large_on = opt.seed % 5 != 2;
	if (!large_on)
		return;
	large_pt_before = atomic_load(&pt_pages);
	struct cairn_arena_config vc = { .quantum = PAGE_SIZE };
	int err = cairn_arena_create(&large_va, frames, LARGE_VA_BASE, large_va_size(), &vc);
	if (err)
		panic("objects: va arena: %s", cairn_strerror(err));
	large_fs = (struct cairn_frames_source){ .frames = frames, .va = &large_va };
	cairn_arena_source_frames(&large_src, &large_fs);
	struct cairn_arena_config ac = { .quantum = PAGE_SIZE, .source = &large_src,
					 .import_quantum = 2u << 20 };
	if ((err = cairn_arena_create(&large_arena, frames, 0, 0, &ac)))
		panic("objects: large arena: %s", cairn_strerror(err));
	cfg->large_arena = &large_arena;
}

static void objects_setup(void)
{
	take_baseline();
	/* odd seeds put the per-CPU frame cache under the slabs */
	if (opt.seed & 1) {
		int e = cairn_fcache_create(&kfc, frames, NULL);
		if (e)
			panic("objects: cairn_fcache_create: %s", cairn_strerror(e));
	}
	struct cairn_objects_config cfg = {
		.frames = frames, .fcache = kfc, .phys_base = 0, .phys_limit = ram_top,
		.harden = CAIRN_OBJ_HARDEN_ON, .seed = opt.seed,
	};
	large_setup(&cfg);
	int err = cairn_objects_create(&ko, &cfg);
	if (err)
		panic("objects: cairn_objects_create: %s", cairn_strerror(err));
	so_order = order_for(sizeof *so);
	so = alloc_pages(so_order);
	so_cpu_order = order_for(opt.cpus * sizeof *so->cpu);
	so->cpu = alloc_pages(so_cpu_order);
	so->oracle_base = (uintptr_t)cairn_port_phys_to_virt(0);
	so->oracle_granules = ram_top / 16;
	so_oracle_order = order_for(so->oracle_granules / 8);
	so->oracle = alloc_pages(so_oracle_order);
	if (large_on) {
		so->oracle_va_base = LARGE_VA_BASE;
		so->oracle_va_granules = large_va_size() / 16;
		so_va_oracle_order = order_for(so->oracle_va_granules / 8);
		so->oracle_va = alloc_pages(so_va_oracle_order);
	}
	so->o = ko;
	so->frames = frames;
	so->ncpus = opt.cpus;
	so->ops = opt.ops / 8 + 1000;
	so->seed = opt.seed;
	so->offline_every = (unsigned)(so->ops / 3 + 1);
	/* The hand-off makes most of the run's remote frees: 32768 objects
	 * over its two rounds whatever ops= and the CPU count say (QEMU runs
	 * the vCPUs on a few host cores: the cost follows the total). */
	so->handoff = opt.handoff != ~0ull ? opt.handoff : (1u << 14) / opt.cpus;
	so->plant = opt.plant && !strncmp(opt.plant, "double", 7) ? STRESS_OBJ_PLANT_DOUBLE
								  : STRESS_OBJ_PLANT_NONE;
	stress_objects_init(so);
}

static void objects_run(unsigned idx, unsigned n)
{
	(void)n;
	struct stress_obj_cpu *c = &so->cpu[idx];
	for (unsigned round = 0; round < 2; round++)
		stress_objects_round(so, idx);
	barrier_wait();
	if (idx == 0)
		stress_objects_drain_inboxes(so);
	barrier_wait();
	cairn_objects_cpu_offline(ko);
	this_cpu()->ops += c->ops;
	if (opt.verbose)
		kprintf("cpu %u: objects: ops %lu allocs %lu frees %lu from other cpus %lu "
			"handed over %lu reallocs %lu large %lu aligned %lu offline cycles %lu "
			"NULLs %lu\n", idx, c->ops, c->allocs, c->frees, c->remote, c->handed,
			c->reallocs, c->large, c->aligned, c->offlines, c->enomem);
}

static void objects_check(void)
{
	uint64_t errors = stress_objects_check_empty(so);
	struct cairn_objects_stats st;
	cairn_objects_stats(ko, &st);
	uint64_t taken = 0, min_posted = UINT64_MAX, min_collected = UINT64_MAX;
	for (unsigned i = 0; i < opt.cpus; i++) {
		struct cairn_objects_stats h;
		cairn_objects_heap_stats(ko, i, &h);
		min_posted = h.remote_posted < min_posted ? h.remote_posted : min_posted;
		min_collected = h.remote_collected < min_collected ? h.remote_collected
								   : min_collected;
		taken += so->cpu[i].remote;
	}
	kprintf("objects: %lu objects taken from other cpus; %lu remote frees posted in %lu "
		"messages, %lu collected by their heaps, %lu for offline heaps; fewest by a cpu: "
		"%lu posted, %lu collected\n", taken, st.remote_objects, st.remote_posted,
		st.remote_collected, st.offline_collects, min_posted, min_collected);
	/* Every CPU is offline and nothing is in flight: each message was
	 * collected exactly once, and with a hand-off every CPU posted to its
	 * neighbour and collected its own objects freed by another. */
	if (st.remote_posted != st.remote_collected + st.offline_collects)
		fail("objects: %lu messages posted, %lu collected", st.remote_posted,
		     st.remote_collected + st.offline_collects);
	if (opt.cpus > 1 && so->handoff && (!min_posted || !min_collected))
		fail("objects: a cpu posted no remote frees or collected no messages");
	if (errors)
		fail("objects: the stress suite saw %lu errors", errors);
	cairn_objects_destroy(ko);
	if (kfc)
		cairn_fcache_destroy(kfc);
	kfc = NULL;
	if (large_on) {
		if (cairn_arena_validate(&large_arena))
			fail("objects: the large objects' arena is corrupt");
		kprintf("objects: large arena: %lu spans imported, %lu released\n",
			atomic_load(&large_arena.imports), atomic_load(&large_arena.releases));
		cairn_arena_destroy(&large_arena);
		uint64_t all; /* every span went back: the window is one free range */
		if (cairn_arena_alloc(&large_va, large_va_size(), 1, &all) ||
		    cairn_arena_free(&large_va, all, large_va_size()))
			fail("objects: address space of large objects still in use");
		cairn_arena_destroy(&large_va);
		free_pages((void *)so->oracle_va, so_va_oracle_order);
		/* Page-table pages stay with the tables once created. */
		baseline_free -= atomic_load(&pt_pages) - large_pt_before;
	}
	free_pages((void *)so->oracle, so_oracle_order);
	free_pages(so->cpu, so_cpu_order);
	free_pages(so, so_order);
	check_quiescent("objects");
}

/* ---- percpu: the per-CPU frame cache stress ---- */

static struct stress_percpu *sp;
static unsigned sp_order, sp_cpu_order, sp_owner_order;

static void percpu_setup(void)
{
	take_baseline();
	sp_order = order_for(sizeof *sp);
	sp = alloc_pages(sp_order);
	sp_cpu_order = order_for(opt.cpus * sizeof *sp->cpu);
	sp->cpu = alloc_pages(sp_cpu_order);
	sp_owner_order = oracle_setup(&sp->blocks);
	int err = cairn_fcache_create(&sp->fc, frames, NULL);
	if (err)
		fail("percpu: cairn_fcache_create: %d", err);
	sp->f = frames;
	sp->ncpus = opt.cpus;
	sp->ops = opt.ops;
	sp->seed = opt.seed;
	sp->phases = 2;
	sp->plant = opt.plant && !strncmp(opt.plant, "double", 7) ? STRESS_PLANT_DOUBLE
								  : STRESS_PLANT_NONE;
	stress_percpu_init(sp);
}

static void percpu_run(unsigned idx, unsigned n)
{
	(void)n;
	uint64_t errors = stress_percpu_cpu(sp, idx);
	struct stress_cpu *c = &sp->cpu[idx];
	this_cpu()->ops += c->ops + c->exhaust_frames;
	if (opt.verbose)
		kprintf("cpu %u: percpu: mixed %lu allocs %lu frees %lu enomem %lu swaps %lu "
			"offline %lu exhaust %lu\n", idx, c->ops, c->allocs, c->frees, c->enomem,
			c->swaps, c->offline, c->exhaust_frames);
	if (idx == 0 && errors)
		fail("percpu: the stress suite saw %lu errors", errors);
}

static void percpu_check(void)
{
	cairn_fcache_destroy(sp->fc);
	free_pages((void *)sp->blocks.owner, sp_owner_order);
	free_pages(sp->cpu, sp_cpu_order);
	free_pages(sp, sp_order);
	check_quiescent("percpu");
}

const struct test tests[] = {
	{ "port", port_setup, port_run, port_check },
	{ "frames", frames_setup, frames_run, frames_check },
	{ "objects", objects_setup, objects_run, objects_check },
	{ "percpu", percpu_setup, percpu_run, percpu_check },
	{ "kframes", kframes_setup, kframes_run, kframes_check },
	{ "irq", kframes_setup, irq_run, irq_check },
	{ "map", map_setup, map_run, map_check },
	{ "exhaust", exhaust_setup, exhaust_run, exhaust_check },
};
const unsigned ntests = sizeof tests / sizeof tests[0];
