/* SPDX-License-Identifier: MIT */
/* Free frames of a frame allocator, every area together: what a test
 * compares before and after, to see that everything came back. */
#ifndef CAIRN_TEST_FRAMES_TOTAL_H
#define CAIRN_TEST_FRAMES_TOTAL_H

#include <cairn/frames.h>

static inline uint64_t frames_free_total(struct cairn_frames *f)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(f, &st);
	uint64_t n = 0;
	for (unsigned a = 0; a < CAIRN_AREAS; a++)
		n += st.free_frames[a];
	return n;
}

#endif
