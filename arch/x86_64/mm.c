/* SPDX-License-Identifier: MIT */
/*
 * Memory: the firmware memory map, cairn frames, and the page tables.
 *
 * Bootstrap without a second allocator:
 *  1. boot.S maps 0..4 GiB with 2 MiB pages from tables inside the image.
 *  2. cairn frames is created over the usable RAM below 4 GiB (minus the
 *     first MiB, the kernel image and any holes= ranges); it carves its own
 *     metadata from that memory, all reachable through the boot map.
 *  3. The real identity map is built from cairn frames: every 1 GiB that
 *     is all RAM as one 1 GiB page when the CPU has them, the rest as 2 MiB
 *     pages, the first 2 MiB as 4 KiB pages with page 0 left out (a NULL
 *     guard), and the local APIC uncached. CR3 switches to it.
 *  4. RAM above 4 GiB, now mapped, is handed to cairn at run time with
 *     cairn_frames_add_region (metadata again carved from the region).
 * From then on every page-table page, stack and test buffer is a cairn frame.
 *
 * Page-table entries are C11 atomics: cairn_port_map may run on every CPU at
 * once. A missing intermediate table is installed with a CAS (the loser
 * gives its fresh frame back), a leaf goes from 0 to present with a CAS.
 * Intermediate tables are never freed, so a walk never meets a table that
 * is being torn down. Tables come from cairn frames but mapping them needs
 * nothing: they live in RAM, which is always identity-mapped.
 */
#include "kernel.h"

#include <cairn/error.h>

#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_PWT (1ull << 3)
#define PTE_PCD (1ull << 4)
#define PTE_PS (1ull << 7)
/* Software bit (ignored by the MMU): a leaf made by cairn_port_map. Only
 * those may be unmapped: the identity map's 4 KiB pages (the first 2 MiB,
 * the kernel image among them) are the direct region, which a map refuses
 * (EEXIST) and an unmap must too (ERANGE), as it does for large pages. */
#define PTE_PORT (1ull << 9)
#define PTE_ADDR 0x000ffffffffff000ull

#define MB_MAGIC 0x2badb002
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

struct mb_range fw_map[MAX_MAP];
unsigned fw_map_n;
struct cairn_frames *frames;
bool have_1g_pages;
uint64_t kernel_cr3;
_Atomic uint64_t pt_pages; /* page-table pages taken from cairn so far */

static struct { uint64_t base, end; } holes[16];
static unsigned nholes;
uint64_t ram_top;

extern char _kernel_start[], _kernel_end[];

void mm_read_multiboot(uint32_t magic, uint32_t info, char *cmdline, size_t len)
{
	const uint8_t *mbi = (const uint8_t *)(uintptr_t)info;
	uint32_t flags, a, n;

	if (magic != MB_MAGIC) {
		kprintf("boot: not started by a Multiboot loader (magic %#x)\n", magic);
		qemu_exit(EXIT_BOOT);
	}
	memcpy(&flags, mbi, 4);
	cmdline[0] = 0;
	if (flags & (1u << 2)) {
		memcpy(&a, mbi + 16, 4);
		const char *s = (const char *)(uintptr_t)a;
		size_t i = 0;
		for (; s[i] && i + 1 < len; i++)
			cmdline[i] = s[i];
		cmdline[i] = 0;
	}
	if (!(flags & (1u << 6))) {
		kprintf("boot: no memory map from the loader\n");
		qemu_exit(EXIT_BOOT);
	}
	memcpy(&n, mbi + 44, 4);
	memcpy(&a, mbi + 48, 4);
	/* Entries: size (not counting itself), base, length, type. */
	for (uint32_t off = 0; off < n;) {
		const uint8_t *e = (const uint8_t *)(uintptr_t)(a + off);
		/* A reserved entry left out would be handed out as RAM. */
		if (fw_map_n == MAX_MAP) {
			kprintf("boot: the memory map has more than %u entries\n", MAX_MAP);
			qemu_exit(EXIT_BOOT);
		}
		uint32_t size;
		memcpy(&size, e, 4);
		memcpy(&fw_map[fw_map_n].base, e + 4, 8);
		memcpy(&fw_map[fw_map_n].len, e + 12, 8);
		memcpy(&fw_map[fw_map_n].type, e + 20, 4);
		fw_map_n++;
		off += size + 4;
	}
}

void mm_add_hole(uint64_t base, uint64_t end)
{
	/* A hole dropped for want of room would be memory handed out. */
	if (nholes == sizeof holes / sizeof holes[0])
		panic("holes=: more than %lu ranges", (uint64_t)(sizeof holes / sizeof holes[0]));
	if (base < end) {
		holes[nholes].base = base;
		holes[nholes].end = end;
		nholes++;
	}
}

void mm_add_fw_range(uint32_t type, uint64_t base, uint64_t end)
{
	if (fw_map_n == MAX_MAP)
		panic("memmap=: the firmware map is full (%u entries)", MAX_MAP);
	if (base < end)
		fw_map[fw_map_n++] = (struct mb_range){ base, end - base, type };
}

bool mm_may_own(uint64_t b, uint64_t e)
{
	if (b < MiB || (b < (uintptr_t)_kernel_end && e > (uintptr_t)_kernel_start))
		return false;
	for (unsigned h = 0; h < nholes; h++)
		if (b < holes[h].end && e > holes[h].base)
			return false;
	/* Every byte RAM in some entry (entries may overlap or abut), and no
	 * byte in an entry of another type: such an overlap is not RAM. */
	for (unsigned i = 0; i < fw_map_n; i++)
		if (fw_map[i].type != 1 && b < fw_map[i].base + fw_map[i].len &&
		    e > fw_map[i].base)
			return false;
	for (uint64_t a = b; a < e;) {
		uint64_t next = a;
		for (unsigned i = 0; i < fw_map_n; i++)
			if (fw_map[i].type == 1 && fw_map[i].base <= a &&
			    a < fw_map[i].base + fw_map[i].len &&
			    fw_map[i].base + fw_map[i].len > next)
				next = fw_map[i].base + fw_map[i].len;
		if (next == a)
			return false;
		a = next;
	}
	return true;
}

/* ---- the usable list: RAM minus everything cairn must not hand out ---- */

static struct cairn_mem_range usable[2 * MAX_MAP + 32];
static size_t nusable;

static void usable_add(uint64_t b, uint64_t e)
{
	b = (b + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	e &= ~(PAGE_SIZE - 1);
	if (b < e && nusable < sizeof usable / sizeof usable[0])
		usable[nusable++] = (struct cairn_mem_range){ b, e - b };
}

/* Add [b, e), split at 4 GiB: the part above is added at run time. */
static void usable_add_split(uint64_t b, uint64_t e)
{
	if (b < 4 * GiB && e > 4 * GiB) {
		usable_add(b, 4 * GiB);
		usable_add(4 * GiB, e);
	} else {
		usable_add(b, e);
	}
}

/* Sort [base, end) pairs by base: insertion sort, a few dozen entries. */
static void sort_ranges(uint64_t (*r)[2], unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		uint64_t b = r[i][0], e = r[i][1];
		unsigned j = i;
		for (; j > 0 && r[j - 1][0] > b; j--) {
			r[j][0] = r[j - 1][0];
			r[j][1] = r[j - 1][1];
		}
		r[j][0] = b;
		r[j][1] = e;
	}
}

static uint64_t fw_end(const struct mb_range *m)
{
	uint64_t e = m->base + m->len;
	return e < m->base ? ~(uint64_t)0 : e; /* a length that wraps: to the end */
}

/* RAM is what the firmware lists as RAM (type 1) and as nothing else.
 * Firmware maps need not be sorted, and entries may overlap: RAM entries
 * are merged, and a range listed both as RAM and as another type (reserved,
 * ACPI, NVS, bad) is not RAM, the rule Linux's e820 sanitizer follows.
 * Those ranges, rounded out to whole pages, are taken out with the first
 * MiB, the kernel image and the holes= ranges. */
static void build_usable(void)
{
	static uint64_t ram[MAX_MAP][2], ex[2 + 16 + MAX_MAP][2];
	unsigned nram = 0, nex = 0;

	/* The first MiB: real-mode IVT, BIOS data, Multiboot info, the AP
	 * trampoline at 0x8000, VGA and BIOS ROMs. */
	ex[nex][0] = 0;
	ex[nex++][1] = MiB;
	ex[nex][0] = (uintptr_t)_kernel_start;
	ex[nex++][1] = (uintptr_t)_kernel_end;
	for (unsigned i = 0; i < nholes; i++) {
		ex[nex][0] = holes[i].base;
		ex[nex++][1] = holes[i].end;
	}
	for (unsigned i = 0; i < fw_map_n; i++) {
		uint64_t b = fw_map[i].base, e = fw_end(&fw_map[i]);
		if (b >= e)
			continue;
		if (fw_map[i].type == 1) {
			ram[nram][0] = b;
			ram[nram++][1] = e;
		} else {
			ex[nex][0] = b & ~(PAGE_SIZE - 1);
			ex[nex++][1] = e > ~(PAGE_SIZE - 1) ? ~(uint64_t)0
							   : (e + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		}
	}
	sort_ranges(ram, nram);
	sort_ranges(ex, nex);

	for (unsigned i = 0; i < nram;) {
		/* One run of overlapping or abutting RAM entries. */
		uint64_t b = ram[i][0], e = ram[i][1];
		for (i++; i < nram && ram[i][0] <= e; i++)
			if (ram[i][1] > e)
				e = ram[i][1];
		if (e > ram_top)
			ram_top = e;
		/* Minus the exclusions, which are sorted by base and may
		 * overlap one another. */
		uint64_t cur = b;
		for (unsigned x = 0; x < nex && cur < e; x++) {
			if (ex[x][1] <= cur)
				continue;
			if (ex[x][0] >= e)
				break;
			if (ex[x][0] > cur)
				usable_add_split(cur, ex[x][0]);
			cur = ex[x][1];
		}
		if (cur < e)
			usable_add_split(cur, e);
	}
}

/* ---- page tables ---- */

static uint64_t table_alloc(unsigned flags)
{
	cairn_phys_t p;
	if (cairn_frames_alloc(frames, 0, flags | CAIRN_F_ZERO, &p))
		return 0;
	return p;
}

/* The entry for `virt` at `level` (4: PML4 ... 1: PT), creating missing
 * tables above it. NULL if a table cannot be allocated (*err = ENOMEM) or a
 * large page covers virt above that level (*err = EEXIST). */
static _Atomic uint64_t *pt_slot(uint64_t cr3, uint64_t virt, int level, bool create,
				 int *err)
{
	_Atomic uint64_t *table = (_Atomic uint64_t *)(uintptr_t)cr3;

	for (int l = 4; l > level; l--) {
		_Atomic uint64_t *e = &table[(virt >> (12 + 9 * (l - 1))) & 511];
		uint64_t v = atomic_load_explicit(e, memory_order_acquire);
		if (!(v & PTE_P)) {
			if (!create) {
				*err = CAIRN_ERANGE;
				return NULL;
			}
			uint64_t t = table_alloc(0);
			if (!t) {
				*err = CAIRN_ENOMEM;
				return NULL;
			}
			/* Release: the zeroed table is visible before the
			 * entry that publishes it. */
			uint64_t nv = t | PTE_P | PTE_W;
			if (atomic_compare_exchange_strong_explicit(e, &v, nv,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				v = nv;
				atomic_fetch_add_explicit(&pt_pages, 1, memory_order_relaxed);
			}
			else
				cairn_frames_free(frames, t, 0);
		}
		if (v & PTE_PS) {
			*err = CAIRN_EEXIST;
			return NULL;
		}
		table = (_Atomic uint64_t *)(uintptr_t)(v & PTE_ADDR);
	}
	return &table[(virt >> (12 + 9 * (level - 1))) & 511];
}

static void map_one(uint64_t cr3, uint64_t addr, int level, uint64_t attr)
{
	int err = 0;
	_Atomic uint64_t *e = pt_slot(cr3, addr, level, true, &err);
	if (!e && err == CAIRN_EEXIST)
		return; /* inside a larger identity page already */
	if (!e)
		panic("identity map: %s at %#lx", cairn_strerror(err), addr);
	uint64_t ps = level > 1 ? PTE_PS : 0;
	atomic_store_explicit(e, addr | PTE_P | PTE_W | ps | attr, memory_order_relaxed);
}

static unsigned pages_1g, pages_2m; /* in the identity map, for the log */

/* Does a page table already map part of the GiB at b in 2 MiB pages (an
 * earlier firmware entry that overlaps this one)? A 1 GiB page stored over
 * it would leak the table and map whatever that entry left out. */
static bool gib_has_table(uint64_t cr3, uint64_t b)
{
	int err = 0;
	_Atomic uint64_t *e = pt_slot(cr3, b, 3, false, &err);
	uint64_t v = e ? atomic_load(e) : 0;
	return (v & PTE_P) && !(v & PTE_PS);
}

/* Identity-map [b, e), both 2 MiB aligned, with the largest pages that fit. */
static void map_identity(uint64_t cr3, uint64_t b, uint64_t e, uint64_t attr)
{
	while (b < e) {
		if (have_1g_pages && !(b & (GiB - 1)) && e - b >= GiB && !gib_has_table(cr3, b)) {
			map_one(cr3, b, 3, attr);
			b += GiB;
			pages_1g++;
		} else {
			map_one(cr3, b, 2, attr);
			b += 2 * MiB;
			pages_2m++;
		}
	}
}

static bool mapped_in(uint64_t cr3, uint64_t virt)
{
	_Atomic uint64_t *table = (_Atomic uint64_t *)(uintptr_t)cr3;
	for (int l = 4; l >= 1; l--) {
		uint64_t v = atomic_load(&table[(virt >> (12 + 9 * (l - 1))) & 511]);
		if (!(v & PTE_P))
			return false;
		if (l == 1 || (v & PTE_PS))
			return true;
		table = (_Atomic uint64_t *)(uintptr_t)(v & PTE_ADDR);
	}
	return false;
}

bool mm_is_mapped(uint64_t virt)
{
	return mapped_in(kernel_cr3, virt);
}

/* The tables reachable from the table at `t` (level 4: a PML4), itself
 * included: every table allocated is linked for good (none is ever freed),
 * so after the identity map is built this must equal pt_pages. */
static unsigned tables_under(uint64_t t, int level)
{
	unsigned n = 1;
	_Atomic uint64_t *table = (_Atomic uint64_t *)(uintptr_t)t;
	for (unsigned i = 0; level > 1 && i < 512; i++) {
		uint64_t v = atomic_load(&table[i]);
		if ((v & PTE_P) && !(v & PTE_PS))
			n += tables_under(v & PTE_ADDR, level - 1);
	}
	return n;
}

static bool in_hole(uint64_t b, uint64_t e)
{
	for (unsigned h = 0; h < nholes; h++)
		if (holes[h].base <= b && e <= holes[h].end)
			return true;
	return false;
}

static void build_identity_map(void)
{
	uint32_t r[4];
	cpuid(0x80000001, 0, r);
	have_1g_pages = r[3] & (1u << 26);

	/* The PML4 is loaded by APs in 32-bit code: keep it below 4 GiB. */
	uint64_t cr3 = table_alloc(CAIRN_F_LOW16M | CAIRN_F_LOW4G);
	if (!cr3)
		panic("no frame for the PML4");
	atomic_fetch_add(&pt_pages, 1);

	/* RAM and ACPI tables, widened to 2 MiB, minus the 2 MiB pages that
	 * lie wholly inside a holes= range. Overlapping firmware entries are
	 * harmless: the same entry is written twice with the same value, and
	 * no 1 GiB page replaces a table an earlier entry made. */
	for (unsigned i = 0; i < fw_map_n; i++) {
		uint32_t t = fw_map[i].type;
		if (t != 1 && t != 3 && t != 4)
			continue;
		uint64_t b = fw_map[i].base & ~(2 * MiB - 1);
		uint64_t e = (fw_map[i].base + fw_map[i].len + 2 * MiB - 1) & ~(2 * MiB - 1);
		if (b < 2 * MiB)
			b = 2 * MiB; /* the first 2 MiB are mapped below */
		uint64_t run = b;
		for (uint64_t a = b; a < e; a += 2 * MiB) {
			if (in_hole(a, a + 2 * MiB)) {
				map_identity(cr3, run, a, 0);
				run = a + 2 * MiB;
			}
		}
		map_identity(cr3, run, e, 0);
	}
	for (uint64_t a = PAGE_SIZE; a < 2 * MiB; a += PAGE_SIZE)
		map_one(cr3, a, 1, 0);
	map_identity(cr3, 0xfee00000, 0xfee00000 + 2 * MiB, PTE_PCD | PTE_PWT);

	kernel_cr3 = cr3;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
	unsigned reached = tables_under(cr3, 4);
	if (reached != atomic_load(&pt_pages))
		panic("identity map: %u page-table pages allocated, %u in the tables",
		      (unsigned)atomic_load(&pt_pages), reached);
}

/* ---- bring-up ---- */

void mm_init(void)
{
	build_usable();

	struct cairn_mem_range low[sizeof usable / sizeof usable[0]];
	size_t nlow = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < nusable; i++) {
		kprintf("mem: usable %#014lx-%#014lx (%lu KiB)%s\n", usable[i].base,
			usable[i].base + usable[i].size, usable[i].size >> 10,
			usable[i].base >= 4 * GiB ? " [added at run time]" : "");
		total += usable[i].size;
		if (usable[i].base < 4 * GiB)
			low[nlow++] = usable[i];
	}
	struct cairn_frames_config cfg = { .ncpus = 0, .meta = NULL, .meta_size = 0 };
	int err = cairn_frames_init(&frames, low, nlow, &cfg);
	if (err) {
		kprintf("mem: cairn_frames_init: %s\n", cairn_strerror(err));
		qemu_exit(EXIT_BOOT);
	}

	build_identity_map();

	for (size_t i = 0; i < nusable; i++) {
		if (usable[i].base < 4 * GiB)
			continue;
		err = cairn_frames_add_region(frames, usable[i].base, usable[i].size, NULL, 0);
		if (err)
			panic("cairn_frames_add_region %#lx: %s", usable[i].base,
			      cairn_strerror(err));
	}

	struct cairn_frames_stats st;
	cairn_frames_stats(frames, &st);
	uint64_t free = st.free_frames[0] + st.free_frames[1] + st.free_frames[2];
	kprintf("mem: %lu MiB usable, %lu regions, metadata %lu KiB, %lu MiB free\n",
		total >> 20, (uint64_t)st.regions, st.meta_bytes >> 10, free >> 8);
	if (st.boot_skipped_bytes)
		kprintf("mem: %lu bytes of the map outside whole frames (%lu entries of none)\n",
			st.boot_skipped_bytes, st.boot_skipped_entries);
	kprintf("mem: identity map: %u x 1 GiB, %u x 2 MiB, 511 x 4 KiB pages (1 GiB pages %s)\n",
		pages_1g, pages_2m, have_1g_pages ? "available" : "not available");
}

uint64_t mm_unmapped_probe(void)
{
	/* Past the end of RAM, well clear of anything 2 MiB mappings cover. */
	uint64_t a = ((ram_top + GiB - 1) & ~(GiB - 1)) + 0x1234000;
	while (mm_is_mapped(a))
		a += GiB;
	return a;
}

void *alloc_pages(unsigned order)
{
	cairn_phys_t p;
	int err = cairn_frames_alloc(frames, order, CAIRN_F_ZERO, &p);
	if (err)
		panic("alloc_pages(%u): %s", order, cairn_strerror(err));
	return cairn_port_phys_to_virt(p);
}

void free_pages(void *p, unsigned order)
{
	int err = cairn_frames_free(frames, cairn_port_virt_to_phys(p), order);
	if (err)
		panic("free_pages(%p, %u): %s", p, order, cairn_strerror(err));
}

/* Kernel stacks of the APs: STACK_PAGES cairn frames mapped (through the
 * port's own map) into a window, one slot per CPU, with the page below each
 * stack left unmapped. An overflow faults on that guard page; the #DF that
 * follows runs on the CPU's IST stack and reports it. */
#define STACK_WINDOW ((uintptr_t)0xffffc00000000000)

uintptr_t stack_alloc(unsigned idx)
{
	uintptr_t top = STACK_WINDOW + (idx + 1) * STACK_SLOT;
	uintptr_t base = top - (PAGE_SIZE << STACK_ORDER);
	cairn_phys_t p;
	int err = cairn_frames_alloc(frames, STACK_ORDER, CAIRN_F_ZERO, &p);
	if (!err)
		err = cairn_port_map(base, p, PAGE_SIZE << STACK_ORDER);
	if (err)
		panic("stack for cpu %u: %s", idx, cairn_strerror(err));
	return top;
}

/* How deep this CPU's stack has been: it was zeroed when it was allocated,
 * so the lowest non-zero word is the deepest store. A lower bound (a frame
 * whose lowest words only ever held zeros hides below it), which is what a
 * headroom check wants. */
size_t stack_used(unsigned idx)
{
	uintptr_t top = percpu[idx].stack_top;
	const volatile uint64_t *w =
		(const volatile uint64_t *)(top - (PAGE_SIZE << STACK_ORDER));
	while ((uintptr_t)w < top && !*w)
		w++;
	return top - (uintptr_t)w;
}

/* ---- the port's map/unmap ---- */

static bool canonical(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

/* [virt, virt + len): page aligned, not empty, clear of page 0 (the NULL
 * guard, which nothing maps), and every page of it canonical: both ends
 * canonical, no wrap past 2^64 (onto page 0 again) and both ends in the
 * same half (the non-canonical addresses between the halves would index
 * the upper half's tables). */
static bool range_ok(uint64_t virt, uint64_t len)
{
	uint64_t last = virt + len - 1;
	return !((virt | len) & (PAGE_SIZE - 1)) && len && virt && last > virt &&
	       canonical(virt) && canonical(last) && !((virt ^ last) >> 47);
}

int cairn_port_map(uintptr_t virt, cairn_phys_t phys, size_t len)
{
	if (!range_ok(virt, len) || (phys & (PAGE_SIZE - 1)))
		return CAIRN_EINVAL;
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		int err = 0;
		_Atomic uint64_t *e = pt_slot(kernel_cr3, virt + off, 1, true, &err);
		uint64_t expect = 0;
		if (!e || !atomic_compare_exchange_strong(e, &expect,
							  (phys + off) | PTE_P | PTE_W | PTE_PORT)) {
			/* Undo our own entries; they may already be cached. */
			for (size_t u = 0; u < off; u += PAGE_SIZE)
				atomic_store(pt_slot(kernel_cr3, virt + u, 1, false, &err), 0);
			if (off)
				tlb_shootdown();
			return e ? CAIRN_EEXIST : err;
		}
	}
	return 0;
}

static _Atomic uint64_t *leaf(uintptr_t virt)
{
	int err = 0;
	return pt_slot(kernel_cr3, virt, 1, false, &err);
}

/* Take the page at virt from present to not present, keeping the rest of
 * its leaf (the frame, PTE_PORT): true if it was a present leaf of ours. A
 * CAS, not an AND: a leaf that is not ours is left as it is. */
static bool unmap_take(uintptr_t virt)
{
	_Atomic uint64_t *e = leaf(virt);
	uint64_t v = e ? atomic_load(e) : 0;
	do {
		if ((v & (PTE_P | PTE_PORT)) != (PTE_P | PTE_PORT))
			return false;
	} while (!atomic_compare_exchange_weak(e, &v, v & ~PTE_P));
	return true;
}

int cairn_port_unmap(uintptr_t virt, size_t len)
{
	if (!range_ok(virt, len))
		return CAIRN_EINVAL;
	/* All or nothing: every page must be a 4 KiB mapping of ours. A look
	 * first, so that a plain bad unmap changes nothing even for a moment
	 * (the takes below would clear and restore present bits). */
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		_Atomic uint64_t *e = leaf(virt + off);
		if (!e || (atomic_load(e) & (PTE_P | PTE_PORT)) != (PTE_P | PTE_PORT))
			return CAIRN_ERANGE;
	}
	/* Then take every page, present to not present with a CAS: of unmaps
	 * racing for a page (a second unmap of a range, a bug) the one that
	 * takes it wins. One that finds a page taken loses: it sets the
	 * present bit again on the pages it took, which nothing else touches
	 * meanwhile (a map wants an empty leaf, an unmap a present one), and
	 * says ERANGE. They come back as they were, so a translation another
	 * CPU kept cached meanwhile is still right: no shootdown. Only the
	 * winner empties the leaves (for later maps) and shoots down. */
	for (size_t off = 0; off < len; off += PAGE_SIZE) {
		if (!unmap_take(virt + off)) {
			for (size_t u = 0; u < off; u += PAGE_SIZE)
				atomic_fetch_or(leaf(virt + u), PTE_P);
			return CAIRN_ERANGE;
		}
	}
	for (size_t off = 0; off < len; off += PAGE_SIZE)
		atomic_store(leaf(virt + off), 0);
	tlb_shootdown();
	return 0;
}
