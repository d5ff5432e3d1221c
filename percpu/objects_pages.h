/* SPDX-License-Identifier: MIT */
/*
 * cairn objects: where slabs, large blocks and metadata come from.
 *
 * The whole page supply of the objects layer is these three calls: get and
 * put blocks of 2^order frames. They sit directly on the frame allocator
 * today; when the per-CPU frame cache is in front of it, only this file
 * changes. Blocks are naturally aligned (the buddy's guarantee), which the
 * alignment paths rely on.
 */
#ifndef CAIRN_OBJECTS_PAGES_H
#define CAIRN_OBJECTS_PAGES_H

#include "objects_layout.h"

static inline uintptr_t pages_get(struct cairn_objects *o, unsigned order, bool zero)
{
	cairn_phys_t p;
	if (cairn_frames_alloc(o->frames, order, zero ? CAIRN_F_ZERO : 0, &p))
		return 0;
	return (uintptr_t)cairn_port_phys_to_virt(p);
}

static inline void pages_put(struct cairn_objects *o, uintptr_t v, unsigned order)
{
	int err = cairn_frames_free(o->frames, cairn_port_virt_to_phys((void *)v), order);
	if (err)
		obj_report(err, "objects: frame allocator refused a block back", v, order);
}

#endif /* CAIRN_OBJECTS_PAGES_H */
