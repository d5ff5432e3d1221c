/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: where slabs, large blocks and metadata come from.
 *
 * The whole page supply of the objects layer is these two calls: get and
 * put blocks of 2^order frames, through the per-CPU frame cache when the
 * instance has one (slabs of orders 2 and 3 and metadata frames then come
 * from the CPU's magazines), else straight from the frame allocator.
 * Blocks are naturally aligned (the buddy's guarantee), which the
 * alignment paths rely on.
 */
#ifndef CAIRN_OBJECTS_PAGES_H
#define CAIRN_OBJECTS_PAGES_H

#include "objects_layout.h"

#include <cairn/frame_cache.h>

static inline uintptr_t pages_get(struct cairn_objects *o, unsigned order, bool zero)
{
	cairn_phys_t p;
	unsigned flags = zero ? CAIRN_F_ZERO : 0;
	int err = o->fcache ? cairn_fcache_alloc(o->fcache, order, flags, &p)
			    : cairn_frames_alloc(o->frames, order, flags, &p);
	return err ? 0 : (uintptr_t)cairn_port_phys_to_virt(p);
}

static inline void pages_put(struct cairn_objects *o, uintptr_t v, unsigned order)
{
	cairn_phys_t p = cairn_port_virt_to_phys((void *)v);
	int err = o->fcache ? cairn_fcache_free(o->fcache, p, order)
			    : cairn_frames_free(o->frames, p, order);
	if (err)
		cairn__obj_report(err, "objects: frame allocator refused a block back", v, order);
}

#endif /* CAIRN_OBJECTS_PAGES_H */
