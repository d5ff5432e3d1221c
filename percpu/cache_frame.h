/* SPDX-License-Identifier: MIT */
/*
 * Where a cache built on magazines (frame_cache.c, quantum_cache.c) puts
 * its own structure, which its fast paths read, in the frame it lives in.
 */
#ifndef CAIRN_PERCPU_CACHE_FRAME_H
#define CAIRN_PERCPU_CACHE_FRAME_H

#include <cairn/frames.h>
#include <cairn/port.h>

/* At the end of the frame, not the start. A magazine's count sits at the
 * start of its frame and is stored by every hit; a load on the same path
 * from the same offset of another frame can be predicted to depend on that
 * store (CPUs match loads to earlier stores by low address bits) and then
 * waits for it, on whichever CPU's magazine happens to alias the cache's
 * frame. The structure must fit in the frame. */
static inline void *cache_frame_place(cairn_phys_t frame, size_t size)
{
	return (char *)cairn_port_phys_to_virt(frame) +
	       ((CAIRN_FRAME_SIZE - size) & ~(size_t)63);
}

#endif /* CAIRN_PERCPU_CACHE_FRAME_H */
