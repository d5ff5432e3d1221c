/* SPDX-License-Identifier: MIT */
#include <cairn/error.h>

const char *cairn_strerror(int err)
{
	switch (err) {
	case CAIRN_OK: return "ok";
	case CAIRN_ENOMEM: return "out of memory";
	case CAIRN_EINVAL: return "invalid argument";
	case CAIRN_ERANGE: return "outside every region";
	case CAIRN_EALIGN: return "misaligned address";
	case CAIRN_EFREE: return "not allocated (double free)";
	case CAIRN_EORDER: return "wrong order or size";
	case CAIRN_EBUSY: return "in use";
	case CAIRN_EEXIST: return "overlaps an existing region";
	case CAIRN_ENOSPC: return "table full";
	case CAIRN_ECORRUPT: return "invariant broken";
	case CAIRN_EMETA: return "the allocator's own metadata";
	}
	return "unknown error";
}
