/* SPDX-License-Identifier: MIT */
/*
 * The node pool of one tree: frames from the frame allocator, and a free
 * list of retired nodes local to the tree.
 *
 * Type stability. A node that leaves the tree stays a node of the same tree
 * for the tree's whole life: it is retired (version word marked obsolete),
 * pushed here, and later reused for another node of this tree. A reader
 * that still holds a pointer to it therefore always reads a node-shaped
 * frame whose fields are atomics, and fails validation because the version
 * word only ever grows. Frames go back to the frame allocator only in
 * cairn_btree_destroy, when no reader can exist.
 *
 * The free list is a Treiber stack. Its head is a (node, tag) pair swapped
 * with one 16-byte CAS (cmpxchg16b, inline with -mcx16; gcc would call
 * libatomic for the __atomic form, so the __sync form is used). The tag
 * grows on every change, so a pop that read node N and N->next cannot
 * succeed after N was popped and pushed back with another successor (ABA).
 * The __sync builtins are full barriers: everything a pusher wrote to the
 * node happens before the popper's use of it. N->next is an atomic because
 * a popper may read it while another thread pushes N again.
 */
#include "node.h"

#include <cairn/port.h>

typedef unsigned __int128 u128;

static inline u128 fl_pack(struct bt_node *n, uint64_t tag)
{
	return (u128)(uintptr_t)n | ((u128)tag << 64);
}

static inline struct bt_node *fl_node(u128 h)
{
	return (struct bt_node *)(uintptr_t)(uint64_t)h;
}

static inline uint64_t fl_tag(u128 h)
{
	return (uint64_t)(h >> 64);
}

/* An atomic 16-byte read: a CAS that writes back what is there. */
static inline u128 fl_load(struct cairn_btree *t)
{
	return __sync_val_compare_and_swap(&t->free_head, (u128)0, (u128)0);
}

static void fl_push(struct cairn_btree *t, struct bt_node *n)
{
	u128 old = fl_load(t);
	for (;;) {
		wr(n->next, (uint64_t)(uintptr_t)fl_node(old));
		u128 new = fl_pack(n, fl_tag(old) + 1);
		u128 seen = __sync_val_compare_and_swap(&t->free_head, old, new);
		if (seen == old)
			return;
		old = seen;
	}
}

static struct bt_node *fl_pop(struct cairn_btree *t)
{
	u128 old = fl_load(t);
	for (;;) {
		struct bt_node *n = fl_node(old);
		if (!n)
			return NULL;
		CAIRN_BTREE_YIELD();
		struct bt_node *next = (struct bt_node *)(uintptr_t)rd(n->next);
		u128 new = fl_pack(next, fl_tag(old) + 1);
		u128 seen = __sync_val_compare_and_swap(&t->free_head, old, new);
		if (seen == old)
			return n;
		old = seen;
	}
}

struct bt_node *cairn__bt_freelist_peek(struct cairn_btree *t)
{
	return fl_node(fl_load(t));
}

/*
 * A node for a split: reused from the free list or a fresh frame. It comes
 * back retired (obsolete, unlocked) and unreachable; cairn__bt_node_prepare makes
 * it writable and cairn__bt_node_publish makes it a live node.
 */
struct bt_node *cairn__bt_node_alloc(struct cairn_btree *t)
{
	struct bt_node *n = fl_pop(t);
	if (n)
		return n;

	cairn_phys_t phys;
	if (cairn_frames_alloc(t->frames, 0, 0, &phys) != 0)
		return NULL;
	n = cairn_port_phys_to_virt(phys);
	/* A fresh frame: no reader can hold a pointer to it yet. */
	atomic_store_explicit(&n->version, OLC_OBSOLETE, memory_order_relaxed);
	wr(n->next, 0);
	wr(n->count, 0);
	wr(n->level, 0);
	wr(n->first, 0);
	atomic_fetch_add_explicit(&t->nodes, 1, memory_order_relaxed);
	return n;
}

/*
 * Lock a retired node before rewriting it. It stays obsolete, so a stale
 * reader that loads the word now restarts at once; one that loaded it
 * before retirement fails its validation. The release fence orders the
 * lock before the field stores, as in olc_upgrade.
 */
void cairn__bt_node_prepare(struct bt_node *n, unsigned level)
{
	uint64_t w = atomic_load_explicit(&n->version, memory_order_relaxed);
	atomic_store_explicit(&n->version, w | OLC_LOCKED | OLC_OBSOLETE,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	CAIRN_BTREE_YIELD();
	wr(n->count, 0);
	wr(n->level, level);
	wr(n->first, 0);
}

/* Make a prepared node live at a version no reader has ever seen. It
 * becomes reachable only through a parent written under that parent's
 * lock, whose release-unlock publishes both. */
void cairn__bt_node_publish(struct bt_node *n)
{
	uint64_t w = atomic_load_explicit(&n->version, memory_order_relaxed);
	atomic_store_explicit(&n->version,
			      (w & ~(OLC_LOCKED | OLC_OBSOLETE)) + OLC_STEP,
			      memory_order_release);
}

#ifdef CAIRN_BTREE_RECLAIM_HOOK
/*
 * Benchmark builds only: offer a retired node to another reclamation
 * scheme (RCU, epochs), which returns it to the frame allocator after a
 * grace period. Shipped builds always recycle through the free list.
 */
bool cairn_btree_reclaim_hook(struct cairn_btree *t, void *node);
#endif

/* A node the caller unlinked and unlocked obsolete: recycle it. */
void cairn__bt_node_retire(struct cairn_btree *t, struct bt_node *n)
{
	CAIRN_BTREE_YIELD();
#ifdef CAIRN_BTREE_RECLAIM_HOOK
	if (cairn_btree_reclaim_hook(t, n))
		return;
#endif
	fl_push(t, n);
}

/* A node taken for a split that did not happen (never published). */
void cairn__bt_node_release_unused(struct cairn_btree *t, struct bt_node *n)
{
	uint64_t w = atomic_load_explicit(&n->version, memory_order_relaxed);
	atomic_store_explicit(&n->version,
			      (w & ~OLC_LOCKED) | OLC_OBSOLETE,
			      memory_order_release);
	fl_push(t, n);
}

/* ---- destroy ---- */

static void give_back(struct cairn_btree *t, struct bt_node *n)
{
	cairn_frames_free(t->frames, cairn_port_virt_to_phys(n), 0);
}

static void free_subtree(struct cairn_btree *t, struct bt_node *n,
			 unsigned depth)
{
	if (rd(n->level) != 0 && depth < CAIRN_BTREE_DEPTH_MAX) {
		unsigned f, cnt = bt_shape(t, n, &f);
		for (unsigned s = f; s < f + cnt; s++)
			free_subtree(t, bt_child(n, s), depth + 1);
	}
	give_back(t, n);
}

void cairn_btree_destroy(struct cairn_btree *t)
{
	if (!t->root)
		return;
	free_subtree(t, bt_root(t), 0);
	struct bt_node *n;
	while ((n = fl_pop(t)) != NULL)
		give_back(t, n);
	t->root = NULL;
	atomic_store_explicit(&t->nodes, 0, memory_order_relaxed);
}
