/* SPDX-License-Identifier: MIT */
/* Host set-up shared by the objects tests: simulated memory, frames, objects. */
#ifndef CAIRN_TEST_OBJTEST_H
#define CAIRN_TEST_OBJTEST_H

#include <cairn/frames.h>
#include <cairn/host.h>
#include <cairn/objects.h>

#include <stdio.h>
#include <stdlib.h>

#define MiB (1024ull * 1024)

static struct cairn_frames *objtest_frames;
static uint64_t objtest_mem;

/* Memory [0, mib MiB), frames over [1 MiB, mib MiB), ncpus CPU slots. */
static inline void objtest_init(unsigned ncpus, uint64_t mib)
{
	objtest_mem = mib * MiB;
	if (cairn_host_init(ncpus, 0, objtest_mem)) {
		fprintf(stderr, "cairn_host_init failed\n");
		exit(2);
	}
	struct cairn_mem_range map[] = { { 1 * MiB, (mib - 1) * MiB } };
	struct cairn_frames_config cfg = { .ncpus = ncpus };
	if (cairn_frames_init(&objtest_frames, map, 1, &cfg)) {
		fprintf(stderr, "cairn_frames_init failed\n");
		exit(2);
	}
}

static inline struct cairn_objects *objtest_create_with(enum cairn_obj_harden harden,
							struct cairn_fcache *fc)
{
	struct cairn_objects *o;
	struct cairn_objects_config cfg = {
		.frames = objtest_frames, .fcache = fc, .phys_base = 0, .phys_limit = objtest_mem,
		.harden = harden, .seed = 42,
	};
	if (cairn_objects_create(&o, &cfg)) {
		fprintf(stderr, "cairn_objects_create failed\n");
		exit(2);
	}
	return o;
}

static inline struct cairn_objects *objtest_create(enum cairn_obj_harden harden)
{
	return objtest_create_with(harden, NULL);
}

static inline uint64_t objtest_free_frames(void)
{
	struct cairn_frames_stats st;
	cairn_frames_stats(objtest_frames, &st);
	return st.free_frames[0] + st.free_frames[1] + st.free_frames[2];
}

#endif
