/* SPDX-License-Identifier: MIT */
/*
 * Host driver of the objects stress suite (stress/objects_stress.c).
 * usage: objects_stress threads waves ops seed [plant [fcache [large [harden]]]]
 * harden: 0 the build's default (on in debug builds), 1 off, 2 on; off in
 * the sanitizer builds runs the paths a release build ships under them.
 * large: where large objects come from: 0 buddy blocks, 1 a range arena
 * importing frames in place, 2 mapped at addresses of a VA arena, 3 the
 * arena in place behind a quantum cache (used when hardening is off), 4 in
 * place with the heaps' large caches and the instance's released blocks.
 * Each wave starts a new set of threads (1..threads of them, varying), each
 * registering as a CPU (recycled slots), bringing its heap online, running
 * a round, going offline and leaving: objects outlive the threads that
 * allocated them (the mailbox), so frees reach heaps whose CPU left, and
 * new threads inherit heaps with slabs in them. At the end nothing may be
 * left and every frame must be back with the frame allocator.
 */
#include <pthread.h>

#include "objtest.h"
#include "objects_stress.h"

#include <cairn/frame_cache.h>

#include "../../percpu/objects_layout.h" /* o->harden: the mode asked for is the one run */

static struct stress_objects s;
static struct cairn_fcache *fc;

/* Waiting at a barrier: answer the quantum cache's drain requests. */
static void idle(void *arg)
{
	cairn_qcache_poll(arg);
}

static void *thread_main(void *arg)
{
	(void)arg;
	int cpu = cairn_host_cpu_register();
	if (cpu < 0) {
		fprintf(stderr, "no CPU slot\n");
		exit(2);
	}
	cairn_objects_cpu_online(s.o);
	stress_objects_round(&s, (unsigned)cpu);
	cairn_objects_cpu_offline(s.o);
	if (fc)
		cairn_fcache_drain_cpu(fc, (unsigned)cpu);
	cairn_host_cpu_unregister();
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	unsigned waves = argc > 2 ? (unsigned)atoi(argv[2]) : 4;
	uint64_t ops = argc > 3 ? strtoull(argv[3], NULL, 0) : 20000;
	uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
	unsigned plant = argc > 5 ? (unsigned)atoi(argv[5]) : 0;
	bool use_fcache = argc > 6 && atoi(argv[6]);
	unsigned large = argc > 7 ? (unsigned)atoi(argv[7]) : 0;
	unsigned harden = argc > 8 ? (unsigned)atoi(argv[8]) : CAIRN_OBJ_HARDEN_BUILD;
	if (threads == 0 || threads > 64 || waves == 0 || large > OBJTEST_CACHES ||
	    harden > CAIRN_OBJ_HARDEN_ON)
		return 2;
	unsigned slots = threads + 2;
	objtest_init(slots, 256);
	uint64_t free0 = objtest_free_frames();
	objtest_large_init((enum objtest_large)large, 2 << 20);
	if (large == OBJTEST_MAPPED) {
		s.oracle_va_base = objtest_va_base;
		s.oracle_va_granules = OBJTEST_VA_SIZE / 16; /* the VA arena's window */
		s.oracle_va = calloc(s.oracle_va_granules / 64, sizeof(*s.oracle_va));
		if (!s.oracle_va)
			return 2;
	}
	if (use_fcache && cairn_fcache_create(&fc, objtest_frames, NULL))
		return 2;
	s.o = objtest_create_with((enum cairn_obj_harden)harden, fc);
	if (!s.o || (harden != CAIRN_OBJ_HARDEN_BUILD && s.o->harden != (harden == CAIRN_OBJ_HARDEN_ON))) {
		fprintf(stderr, "objects stress: not the hardening asked for\n");
		return 2;
	}
	s.frames = objtest_frames;
	s.oracle_base = (uintptr_t)cairn_port_phys_to_virt(0);
	s.oracle_granules = objtest_mem / 16;
	s.oracle = calloc(s.oracle_granules / 64, sizeof(*s.oracle));
	s.cpu = calloc(slots, sizeof(*s.cpu));
	s.ops = ops;
	s.seed = seed;
	s.offline_every = (unsigned)(ops / 3 + 1);
	s.handoff = ops / 4;
	s.plant = plant;
	if (objtest_qc) {
		s.idle = idle;
		s.idle_arg = objtest_qc;
	}
	if (!s.oracle || !s.cpu)
		return 2;
	if (plant)
		cairn_host_reports_quiet(1);
	stress_objects_init(&s);

	for (unsigned w = 0; w < waves; w++) {
		unsigned n = w == 0 ? threads : 1 + (unsigned)((seed + w * 7) % threads);
		s.ncpus = n;
		pthread_t t[64];
		for (unsigned i = 0; i < n; i++)
			pthread_create(&t[i], NULL, thread_main, NULL);
		for (unsigned i = 0; i < n; i++)
			pthread_join(t[i], NULL);
	}
	/* the main thread takes a slot to empty the mailbox, then leaves */
	if (cairn_host_cpu_register() < 0)
		return 2;
	cairn_objects_cpu_online(s.o);
	stress_objects_drain_inboxes(&s);
	cairn_objects_cpu_offline(s.o);
	cairn_host_cpu_unregister();
	uint64_t errors = stress_objects_check_empty(&s);

	struct cairn_objects_stats st;
	cairn_objects_stats(s.o, &st);
	uint64_t ops_total = 0, remote = 0, handed = 0, offl = 0, enomem = 0;
	for (unsigned i = 0; i < slots; i++) {
		ops_total += s.cpu[i].ops;
		remote += s.cpu[i].remote;
		handed += s.cpu[i].handed;
		offl += s.cpu[i].offlines;
		enomem += s.cpu[i].enomem;
	}
	cairn_objects_destroy(s.o);
	if (fc)
		cairn_fcache_destroy(fc);
	if (large && cairn_arena_validate(&objtest_arena))
		errors++;
	objtest_large_fini();
	if (!plant && cairn_host_reports()) {
		printf("%llu cairn reports in a run that provoked none\n",
		       (unsigned long long)cairn_host_reports());
		errors++;
	}
	if (objtest_free_frames() != free0) {
		printf("frames: %llu free after destroy, %llu before\n",
		       (unsigned long long)objtest_free_frames(), (unsigned long long)free0);
		errors++;
	}
	static const char *const large_name[] = { "", ", arena", ", mapped arena", ", arena+qcache",
						   ", arena+caches" };
	if (st.remote_posted != st.remote_collected + st.offline_collects) {
		printf("%llu messages posted, %llu collected\n", (unsigned long long)st.remote_posted,
		       (unsigned long long)(st.remote_collected + st.offline_collects));
		errors++;
	}
	printf("objects stress%s%s: %u threads, %u waves, seed %llu: %llu ops, %llu handed over, "
	       "%llu taken from other cpus, %llu NULLs, %llu offline cycles, %llu batches posted "
	       "(%llu objects), %llu collected by their heaps, %llu for offline heaps, "
	       "errors %llu%s\n",
	       fc ? " (frame cache)" : "", large_name[large], threads, waves, (unsigned long long)seed, (unsigned long long)ops_total,
	       (unsigned long long)handed, (unsigned long long)remote, (unsigned long long)enomem,
	       (unsigned long long)offl,
	       (unsigned long long)st.remote_posted, (unsigned long long)st.remote_objects,
	       (unsigned long long)st.remote_collected, (unsigned long long)st.offline_collects, (unsigned long long)errors,
	       plant ? " (planted fault: errors expected)" : "");
	if (plant)
		return errors ? 0 : 1;
	return errors ? 1 : 0;
}
