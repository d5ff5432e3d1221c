/* SPDX-License-Identifier: MIT */
/*
 * A large cache's give-back against a later give-back of the same range,
 * in a fixed order, against the library built with the hook points.
 *
 * Heap G gives a cached range p back (G going offline, on a CPU of its
 * own): p's entry RETIRING, the range freed into the arena, and G parked
 * before the CAS that clears the entry (CAIRN_HOOK_GIVE_BACK). Meanwhile
 * heap H takes p again as a large object with an entry (LIVE, of p's
 * length), frees it into its cache and gives it back in turn (H going
 * offline). In the embedder's gate of H's give-back, p RETIRING again and
 * still allocated in the arena, G goes on and makes its CAS. Then a caller
 * frees p a second time, and another heap allocates a range of p's length.
 * The second free must be refused at the entry (CAIRN_EFREE, one report):
 * had it reached the arena, the tree would have freed p under H's
 * give-back, the new range would have been p, and H's give-back would have
 * freed it under its owner. After H's give-back, p serves again, and no
 * two live objects may overlap.
 *
 * What p serves in G's window, before H takes it:
 *   direct     nothing;
 *   entryless  an object without an entry (5 MiB, at p: it clears G's
 *              RETIRING), allocated and freed;
 *   slab       slab frames: the arena's span went back to the frames
 *              with p, a slab of 64 KiB objects takes them (its entry
 *              over G's RETIRING) and releases them, and the arena
 *              imports the span again.
 *   aligned    an object aligned above a page (an entry: LIVE over G's
 *              RETIRING), its interior pointers refused, shrunk in place
 *              and grown by a move, which caches p in C's cache;
 *   interior   an object with an entry that starts a page before p (a
 *              one-page object there, freed in the window), so that p is
 *              its second page: a free of p refused as an interior
 *              pointer (EALIGN) before G's CAS and after, a realloc of
 *              p refused, the object's own calls untouched.
 * G as a reclaimer (`reclaim`): the arena full, G's allocation takes H's
 * caches back and gives p back from H's cache; H, doing without its
 * caches meanwhile, takes p and gives it back at its free. And G's CAS
 * while p is still held: by a 5 MiB object (`entryless_held`) or a slab
 * (`slab_held`), whose free, usable size and entries it must leave alone.
 * Hardened and not.
 */
#include <pthread.h>
#include <string.h>

#include <cairn/error.h>

#include "../check.h"
#include "objtest.h"
#include "park.h"

#define LC_SIZE (17u * 4096)   /* the shortest range a large cache keeps */
#define BIG_SIZE (5u << 20)    /* above OBJ_LC_MAX_PAGES: no entry */
#define SLAB_OBJ (64u << 10)   /* the largest class: 256 KiB slabs */

enum variant { DIRECT, ENTRYLESS, SLAB, RECLAIM, ENTRYLESS_HELD, SLAB_HELD, ALIGNED, INTERIOR };
static const char *const variant_name[] = { "direct", "entryless", "slab", "reclaim",
					    "entryless_held", "slab_held", "aligned", "interior" };
static enum variant var;

static struct cairn_objects *o;
static struct cairn_heap *heap_h, *heap_g, *heap_c; /* heaps 0, 1, 2 */
static struct cairn_arena *arena;
static uintptr_t p;

/* G's thread: its first give-back parks before the clear. */
static _Thread_local bool giver_thread;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	if (giver_thread)
		park_once(at, obj, CAIRN_HOOK_GIVE_BACK, obj);
}

/* ---- ownership: live objects never overlap, and keep their stamps ---- */

/* Each hand-out's own stamp (a serial: two holders of one address differ)
 * at both ends of the object. */
static struct {
	uintptr_t start;
	size_t len;
	unsigned char stamp;
} live[64];
static unsigned nlive;
static unsigned char serial;

static void own(void *q, size_t len)
{
	REQUIRE(q && nlive < 64);
	uintptr_t a = (uintptr_t)q;
	for (unsigned i = 0; i < nlive; i++)
		CHECK(a + len <= live[i].start || live[i].start + live[i].len <= a);
	unsigned char st = ++serial ? serial : ++serial;
	memset(q, st, 64);
	memset((char *)q + len - 64, st, 64);
	live[nlive].start = a;
	live[nlive].len = len;
	live[nlive++].stamp = st;
}

static void disown(void *q)
{
	uintptr_t a = (uintptr_t)q;
	for (unsigned i = 0; i < nlive; i++)
		if (live[i].start == a) {
			const unsigned char *b = q, *e = b + live[i].len - 64;
			unsigned bad = 0;
			for (unsigned k = 0; k < 64; k++)
				bad += b[k] != live[i].stamp || e[k] != live[i].stamp;
			CHECK_EQ(bad, 0);
			live[i] = live[--nlive];
			return;
		}
	CHECK(!"disown: not a live object");
}

static size_t usable(const void *q)
{
	return cairn_objects_usable_size(o, q);
}

static void free_own(struct cairn_heap *h, void *q)
{
	disown(q);
	CHECK_EQ(cairn_heap_free(h, q), 0);
}

/* ---- the embedder's gate: an action at the next enter on this thread ---- */

static _Thread_local void (*gate_action)(void);
static bool gate_ran;

static void gate_enter(void)
{
	void (*f)(void) = gate_action;
	if (f) {
		gate_action = NULL;
		f();
		gate_ran = true;
	}
}

static void gate_leave(void) {}

/* ---- G ---- */

static void *giver(void *arg)
{
	(void)arg;
	REQUIRE(cairn_host_cpu_register() >= 0);
	giver_thread = true;
	if (var == RECLAIM) /* its arena full: it takes H's cache back */
		CHECK(cairn_heap_alloc(heap_g, 16u << 20) == NULL);
	else
		cairn_heap_offline(heap_g); /* gives p back */
	atomic_store(&stage, 3);
	cairn_host_cpu_unregister();
	return NULL;
}

/* Let G make its CAS and finish going offline. */
static void release_giver(void)
{
	atomic_store(&stage, 2);
	wait_stage(3);
}

/* ---- H's give-back window ---- */

static uint64_t reports_at_window;
static void *window_r;

/* In the gate of H's give-back of p: p RETIRING (H's), still allocated in
 * the arena under the instance's cookie. G's CAS comes now. */
static void h_window(void)
{
	uint64_t s, n, c;
	REQUIRE(cairn_arena_lookup(arena, p, &s, &n, &c) == 0);
	CHECK(s == p && n == LC_SIZE && c == (uintptr_t)o);
	release_giver();
	/* given back: no usable size (the arena's extent is still there) */
	CHECK_EQ(usable((void *)p), 0);
	/* a caller's second free of p: refused at the entry */
	reports_at_window = cairn_host_reports();
	cairn_host_reports_quiet(1);
	CHECK_EQ(cairn_heap_free(heap_c, (void *)p), CAIRN_EFREE);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), reports_at_window + 1);
	/* another owner: not p, which H's give-back still holds */
	window_r = cairn_heap_alloc(heap_c, LC_SIZE);
	REQUIRE(window_r);
	CHECK((uintptr_t)window_r != p);
	CHECK_EQ(usable(window_r), LC_SIZE);
	own(window_r, LC_SIZE);
}

/* H takes p (LIVE), frees it into its cache, gives it back (offline): in
 * that give-back's gate, G's CAS and the second free. With G reclaiming
 * H's caches, H does without them: its free gives p back at once. */
static void aba(void)
{
	void *q = cairn_heap_alloc(heap_h, LC_SIZE);
	CHECK_EQ((uintptr_t)q, p);
	CHECK_EQ(usable(q), LC_SIZE);
	own(q, LC_SIZE);
	gate_ran = false;
	if (var == RECLAIM) {
		gate_action = h_window;
		free_own(heap_h, q);
		CHECK(gate_ran);
	} else {
		free_own(heap_h, q);
		struct cairn_objects_stats st;
		cairn_objects_heap_stats(o, 0, &st);
		CHECK_EQ(st.large_cached_frames, LC_SIZE / 4096);
		gate_action = h_window;
		cairn_heap_offline(heap_h);
		CHECK(gate_ran);
		cairn_heap_online(heap_h);
	}

	/* p served again, once */
	void *s = cairn_heap_alloc(heap_c, LC_SIZE);
	CHECK_EQ((uintptr_t)s, p);
	CHECK_EQ(usable(s), LC_SIZE);
	own(s, LC_SIZE);
	CHECK_EQ(usable(window_r), LC_SIZE);
	free_own(heap_c, window_r);
	free_own(heap_c, s);
}

/* ---- slab frames ---- */

/* Every free frame taken (so that the span the arena gives back is all a
 * slab or an import can get), largest blocks first. */
static struct {
	cairn_phys_t at;
	unsigned order;
} grabbed[4096];
static unsigned ngrabbed;

static void grab_all(void)
{
	for (int order = 9; order >= 0; order--) {
		cairn_phys_t at;
		while (cairn_frames_alloc(objtest_frames, (unsigned)order, 0, &at) == 0) {
			REQUIRE(ngrabbed < 4096);
			grabbed[ngrabbed].at = at;
			grabbed[ngrabbed++].order = (unsigned)order;
		}
	}
	CHECK_EQ(objtest_free_frames(), 0);
}

static void ungrab_all(void)
{
	while (ngrabbed) {
		ngrabbed--;
		CHECK_EQ(cairn_frames_free(objtest_frames, grabbed[ngrabbed].at,
					   grabbed[ngrabbed].order), 0);
	}
}

/* 64 KiB objects of heap C until one is p (the span's frames are all
 * there is: 8 slabs of 4 cover it); their number. */
static unsigned slab_take_p(void **v)
{
	unsigned n = 0;
	for (;;) {
		REQUIRE(n < 32);
		void *q = cairn_heap_alloc(heap_c, SLAB_OBJ);
		REQUIRE(q);
		CHECK_EQ(usable(q), SLAB_OBJ);
		own(q, SLAB_OBJ);
		v[n++] = q;
		if ((uintptr_t)q == p)
			return n;
	}
}

/* ---- refused calls: one report each, nothing changed ---- */

static int free_refused(struct cairn_heap *h, uintptr_t q)
{
	uint64_t r = cairn_host_reports();
	cairn_host_reports_quiet(1);
	int err = cairn_heap_free(h, (void *)q);
	cairn_host_reports_quiet(0);
	CHECK_EQ(cairn_host_reports(), r + 1);
	return err;
}

/* In G's window, C takes p aligned to 64 KiB (an entry of its own over
 * G's RETIRING), keeps it through a shrink and moves it on a grow, whose
 * free caches p in C's cache; G's CAS then, and p serves again. */
static unsigned aligned(void)
{
	void *k = cairn_heap_alloc_aligned(heap_c, LC_SIZE, 64u << 10);
	CHECK_EQ((uintptr_t)k, p);
	CHECK_EQ(usable(k), LC_SIZE);
	own(k, LC_SIZE);
	/* interior pointers: on its first page (the entry) and past it (the arena) */
	CHECK_EQ(free_refused(heap_c, p + 16), CAIRN_EALIGN);
	CHECK_EQ(free_refused(heap_c, p + 4096), CAIRN_EALIGN);
	CHECK_EQ(usable((void *)(p + 4096)), 0);
	disown(k);
	void *k2 = cairn_heap_realloc(heap_c, k, LC_SIZE - 4096);
	CHECK_EQ((uintptr_t)k2, p); /* kept: fits, not half wasted */
	CHECK_EQ(usable(k2), LC_SIZE);
	own(k2, LC_SIZE);
	unsigned char st = *(unsigned char *)k2;
	disown(k2);
	void *m = cairn_heap_realloc(heap_c, k2, 3 * LC_SIZE);
	REQUIRE(m);
	CHECK((uintptr_t)m != p);
	CHECK_EQ(*(unsigned char *)m, st); /* copied */
	CHECK_EQ(usable(m), 3 * LC_SIZE);
	own(m, 3 * LC_SIZE);
	struct cairn_objects_stats st2;
	cairn_objects_heap_stats(o, 2, &st2);
	CHECK_EQ(st2.large_cached_frames, LC_SIZE / 4096); /* p, in C's cache */
	CHECK_EQ(usable((void *)p), 0);
	release_giver(); /* its CAS finds C's CACHED: fails */
	CHECK_EQ(usable((void *)p), 0);
	CHECK_EQ(free_refused(heap_c, p), CAIRN_EFREE);
	void *s = cairn_heap_alloc(heap_c, LC_SIZE);
	CHECK_EQ((uintptr_t)s, p);
	CHECK_EQ(usable(s), LC_SIZE);
	own(s, LC_SIZE);
	free_own(heap_c, s);
	free_own(heap_c, m);
	return 3;
}

/* In G's window, the page before p freed and an object of one page more
 * than p's range taken there: p is its second page, still RETIRING (G's).
 * Frees and reallocs of p are refused and change nothing; the object's own
 * calls are not affected. */
static void *interior_pad;

static unsigned interior(void)
{
	uintptr_t x0 = p - 4096;
	CHECK_EQ((uintptr_t)interior_pad, x0);
	free_own(heap_c, interior_pad);
	void *x = cairn_heap_alloc(heap_c, LC_SIZE + 4096);
	CHECK_EQ((uintptr_t)x, x0);
	CHECK_EQ(usable(x), LC_SIZE + 4096);
	own(x, LC_SIZE + 4096);
	/* p's entry is G's RETIRING, but p is an interior pointer of x:
	 * refused as one (EALIGN), as it is once the mark is cleared */
	CHECK_EQ(free_refused(heap_c, p), CAIRN_EALIGN);
	CHECK_EQ(usable((void *)p), 0);
	uint64_t r = cairn_host_reports();
	cairn_host_reports_quiet(1);
	int rerr;
	CHECK(cairn_heap_realloc_err(heap_c, (void *)p, 2 * LC_SIZE, &rerr) == NULL);
	cairn_host_reports_quiet(0);
	CHECK_EQ(rerr, CAIRN_ERANGE);
	CHECK_EQ(cairn_host_reports(), r + 1);
	CHECK_EQ(usable(x), LC_SIZE + 4096);
	release_giver(); /* its CAS clears p's entry: x's second page */
	CHECK_EQ(free_refused(heap_c, p), CAIRN_EALIGN);
	CHECK_EQ(usable((void *)p), 0);
	CHECK_EQ(usable(x), LC_SIZE + 4096);
	/* nothing else took x's pages meanwhile */
	void *y = cairn_heap_alloc(heap_c, LC_SIZE);
	REQUIRE(y);
	own(y, LC_SIZE);
	free_own(heap_c, y);
	free_own(heap_c, x);
	return 3;
}

/* ---- one run ---- */

static void run(bool harden)
{
	bool slab = var == SLAB || var == SLAB_HELD;
	uint64_t free0 = objtest_free_frames(), reports0 = cairn_host_reports();
	cairn_phys_t base = 0;
	struct cairn_arena own_arena, *ar = &own_arena;
	if (slab) {
		/* spans of 2 MiB imported from the frames, given back whole */
		objtest_large_init(OBJTEST_DIRECT, 2 << 20);
		ar = &objtest_arena;
	} else {
		/* an arena of its own: first fit from a known base */
		REQUIRE(cairn_frames_alloc(objtest_frames, 12, 0, &base) == 0); /* 16 MiB */
		struct cairn_arena_config ac = { .quantum = 4096 };
		REQUIRE(cairn_arena_create(ar, objtest_frames,
					   (uintptr_t)cairn_port_phys_to_virt(base), 16u << 20,
					   &ac) == 0);
	}
	struct cairn_objects_config cfg = {
		.frames = objtest_frames, .phys_limit = objtest_mem, .seed = 11,
		.harden = harden ? CAIRN_OBJ_HARDEN_ON : CAIRN_OBJ_HARDEN_OFF,
		.large_arena = ar, .large_cache_kib = 512,
		.arena_enter = gate_enter, .arena_leave = gate_leave,
	};
	REQUIRE(cairn_objects_create(&o, &cfg) == 0);
	arena = ar;
	heap_h = cairn_objects_heap(o, 0);
	heap_g = cairn_objects_heap(o, 1);
	heap_c = cairn_objects_heap(o, 2);
	atomic_store(&stage, 0);
	nlive = 0;

	void *v[32];
	if (slab) {
		/* spare descriptors for the slabs to come (a descriptor frame
		 * taken then would come from the span), their blocks back to
		 * the frames */
		for (unsigned i = 0; i < 32; i++)
			REQUIRE((v[i] = cairn_heap_alloc(heap_c, SLAB_OBJ)) != NULL);
		for (unsigned i = 0; i < 32; i++)
			CHECK_EQ(cairn_heap_free(heap_c, v[i]), 0);
		cairn_heap_offline(heap_c);
		cairn_heap_online(heap_c);
	}

	/* interior: a page of its own before p (one page, aligned above a
	 * page: never cached) */
	if (var == INTERIOR) {
		interior_pad = cairn_heap_alloc_aligned(heap_c, 100, 128u << 10);
		CHECK_EQ((uintptr_t)interior_pad, (uintptr_t)cairn_port_phys_to_virt(base));
		own(interior_pad, 100);
	}

	/* G caches p (H, which G reclaims) */
	struct cairn_heap *cacher = var == RECLAIM ? heap_h : heap_g;
	void *q = cairn_heap_alloc(cacher, LC_SIZE);
	REQUIRE(q);
	p = (uintptr_t)q;
	if (!slab) /* first fit */
		CHECK_EQ(p, (uintptr_t)cairn_port_phys_to_virt(base) + (var == INTERIOR ? 4096 : 0));
	CHECK_EQ(usable(q), LC_SIZE);
	CHECK_EQ(cairn_heap_free(cacher, q), 0);
	struct cairn_objects_stats st;
	cairn_objects_heap_stats(o, var == RECLAIM ? 0 : 1, &st);
	CHECK_EQ(st.large_cached_frames, LC_SIZE / 4096);
	if (slab)
		grab_all();

	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, giver, NULL) == 0);
	wait_stage(1); /* p in the arena, G's RETIRING not cleared */
	CHECK_EQ(usable((void *)p), 0);
	if (slab)
		CHECK_EQ(objtest_free_frames(), 512); /* the span, back whole */

	void *k;
	unsigned nv, more = 0;
	switch (var) {
	case ALIGNED:
		more = aligned();
		break;
	case INTERIOR:
		more = interior();
		break;
	case DIRECT:
	case RECLAIM:
		aba();
		break;
	case ENTRYLESS:
	case ENTRYLESS_HELD:
		k = cairn_heap_alloc(heap_c, BIG_SIZE);
		CHECK_EQ((uintptr_t)k, p);
		CHECK_EQ(usable(k), BIG_SIZE);
		own(k, BIG_SIZE);
		if (var == ENTRYLESS_HELD)
			release_giver();
		CHECK_EQ(usable(k), BIG_SIZE);
		free_own(heap_c, k);
		if (var == ENTRYLESS)
			aba();
		break;
	case SLAB:
	case SLAB_HELD:
		nv = slab_take_p(v);
		if (var == SLAB_HELD)
			release_giver();
		CHECK_EQ(usable((void *)p), SLAB_OBJ);
		while (nv)
			free_own(heap_c, v[--nv]);
		/* the slabs' blocks back to the frames: the span whole again */
		cairn_heap_offline(heap_c);
		cairn_heap_online(heap_c);
		if (var == SLAB) {
			CHECK_EQ(objtest_free_frames(), 512);
			aba();
		}
		break;
	}
	pthread_join(t, NULL);
	if (slab)
		ungrab_all();
	if (var != RECLAIM)
		cairn_heap_online(heap_g);
	CHECK_EQ(nlive, 0);
	cairn_objects_stats(o, &st);
	CHECK_EQ(st.large, 0);
	CHECK_EQ(cairn_objects_validate(o), 0);
	bool refused = var == DIRECT || var == ENTRYLESS || var == SLAB || var == RECLAIM;
	CHECK_EQ(cairn_host_reports(), reports0 + refused + more);
	cairn_objects_destroy(o);
	if (slab) {
		objtest_large_fini();
	} else {
		cairn_arena_destroy(ar);
		CHECK_EQ(cairn_frames_free(objtest_frames, base, 12), 0);
	}
	CHECK_EQ(objtest_free_frames(), free0);
	printf("%s%s: done\n", variant_name[var], harden ? " (hardened)" : "");
}

int main(void)
{
	objtest_init(3, 64);
	REQUIRE(cairn_host_cpu_register() >= 0);
	for (int harden = 0; harden < 2; harden++)
		for (var = DIRECT; var <= INTERIOR; var++)
			run(harden);
	return check_done("objects_retiring_order");
}
