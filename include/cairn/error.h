/* SPDX-License-Identifier: MIT */
/*
 * Error codes shared by every cairn layer. Functions return 0 on success or
 * one of these (negative). A call that returns an error changed nothing.
 */
#ifndef CAIRN_ERROR_H
#define CAIRN_ERROR_H

enum cairn_error {
	CAIRN_OK = 0,
	CAIRN_ENOMEM = -1,   /* exhausted: nothing free that fits the request */
	CAIRN_EINVAL = -2,   /* malformed argument (order, flags, size 0, ...) */
	CAIRN_ERANGE = -3,   /* address outside every region / the arena */
	CAIRN_EALIGN = -4,   /* address not aligned to the block's order/quantum */
	CAIRN_EFREE = -5,    /* freeing something that is free (double free) */
	CAIRN_EORDER = -6,   /* freeing with the wrong order or size */
	CAIRN_EBUSY = -7,    /* reserve/alloc_at/remove over something in use */
	CAIRN_EEXIST = -8,   /* adding a region/span that overlaps an existing one */
	CAIRN_ENOSPC = -9,   /* a fixed-capacity table (regions, CPUs) is full */
	CAIRN_ECORRUPT = -10, /* a broken invariant: found by validate(), or met
			       * on the way (corrupted metadata, a range source
			       * that lent what it must not) */
	CAIRN_EMETA = -11     /* freeing the allocator's own metadata */
};

/* A constant, human-readable name for an error code. */
const char *cairn_strerror(int err);

#endif /* CAIRN_ERROR_H */
