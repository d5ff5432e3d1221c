/* SPDX-License-Identifier: MIT */
/*
 * The malloc shim's prefixed entry points: the C allocation API on cairn
 * objects, without replacing the system allocator (see shim.c).
 */
#ifndef CAIRN_SHIM_H
#define CAIRN_SHIM_H

#include <stddef.h>
#include <stdint.h>

void *cairn_malloc(size_t size);
void cairn_free(void *p);
void *cairn_calloc(size_t n, size_t size);
void *cairn_realloc(void *p, size_t size);
void *cairn_reallocarray(void *p, size_t n, size_t size);
int cairn_posix_memalign(void **out, size_t align, size_t size);
void *cairn_aligned_alloc(size_t align, size_t size);
void *cairn_memalign(size_t align, size_t size);
void *cairn_valloc(size_t size);
void *cairn_pvalloc(size_t size);
size_t cairn_malloc_usable_size(void *p);

struct cairn_objects;
/* The instance behind the shim (NULL before the first allocation). */
struct cairn_objects *cairn_shim_objects(void);
/* GiB of memory handed to the frame allocator so far; it grows a GiB at a
 * time when an allocation fails, up to CAIRN_MEMORY_GIB (1 for a memory
 * below a GiB, under an address-space limit: handed over whole). */
uint64_t cairn_shim_memory_gib(void);

#endif
