/* SPDX-License-Identifier: MIT */
/*
 * CPU threads that run steps on command and park once at a hook point:
 * the scaffolding of the per-CPU layer's fixed-order tests, against the
 * library built with the hook points (CAIRN_PERCPU_TEST_HOOK). The test
 * names its own fields of struct cpu_thread before it includes this
 * header:
 *
 *	#define CPU_THREAD_OWN uint64_t hand[N]; unsigned nhand;
 *	#include "cpu_thread.h"
 *
 * A thread bound to its CPU waits for a step (run), runs it and says so
 * (done). Armed (run_parked), it parks the first time the step reaches
 * the hook point `at` (of `obj`, unless NULL) and waits for let_go. A
 * drainer's first look that finds an answer missing posts `event` once
 * (noted).
 */
#ifndef CAIRN_TEST_CPU_THREAD_H
#define CAIRN_TEST_CPU_THREAD_H

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cairn/host.h>

#include "../check.h"
#include "../../percpu/hook.h"

#ifndef CPU_THREAD_OWN
#error "define CPU_THREAD_OWN, the test's own fields, before including cpu_thread.h"
#endif

struct cpu_thread {
	pthread_t t;
	unsigned cpu;
	sem_t cmd, done, parked, go, event;
	void (*fn)(struct cpu_thread *);
	bool quit;
	bool arm;            /* park at the next matching point of the next step */
	enum cairn_percpu_hook_point at;
	void *obj;
	bool noted;          /* a drainer found an answer missing */
	atomic_bool drained; /* a drainer's step returned (the test sets it) */
	bool unbound;        /* never registered: runs as CPU 0 (cpu_start_unbound) */
	CPU_THREAD_OWN
};

static _Thread_local struct cpu_thread *me;
static _Thread_local bool armed;

void cairn_percpu_test_hook(enum cairn_percpu_hook_point at, void *obj)
{
	if (!me)
		return;
	if (at == CAIRN_HOOK_DRAIN_WAITING && !me->noted) {
		me->noted = true;
		sem_post(&me->event);
	}
	if (!armed || me->at != at || (me->obj && me->obj != obj))
		return;
	armed = false; /* once */
	sem_post(&me->parked);
	sem_wait(&me->go);
}

static void *cpu_main(void *arg)
{
	struct cpu_thread *ct = arg;
	me = ct;
	if (!ct->unbound)
		REQUIRE(cairn_host_cpu_bind(ct->cpu) == 0);
	for (;;) {
		sem_wait(&ct->cmd);
		if (ct->quit)
			break;
		armed = ct->arm;
		ct->arm = false;
		ct->fn(ct);
		armed = false;
		sem_post(&ct->done);
	}
	cairn_host_cpu_unregister(); /* the slot is free for the next thread */
	return NULL;
}

/* A thread for CPU `cpu` (bound to it, unless `unbound`: a thread that
 * never registers, which the port runs as CPU 0), everything else zero. */
static inline void cpu_start_as(struct cpu_thread *ct, unsigned cpu, bool unbound)
{
	*ct = (struct cpu_thread){ .cpu = cpu, .unbound = unbound };
	atomic_init(&ct->drained, false);
	REQUIRE(sem_init(&ct->cmd, 0, 0) == 0 && sem_init(&ct->done, 0, 0) == 0);
	REQUIRE(sem_init(&ct->parked, 0, 0) == 0 && sem_init(&ct->go, 0, 0) == 0);
	REQUIRE(sem_init(&ct->event, 0, 0) == 0);
	REQUIRE(pthread_create(&ct->t, NULL, cpu_main, ct) == 0);
}

static inline void cpu_start(struct cpu_thread *ct, unsigned cpu)
{
	cpu_start_as(ct, cpu, false);
}

static inline void cpu_stop(struct cpu_thread *ct)
{
	ct->quit = true;
	sem_post(&ct->cmd);
	pthread_join(ct->t, NULL);
	sem_destroy(&ct->cmd);
	sem_destroy(&ct->done);
	sem_destroy(&ct->parked);
	sem_destroy(&ct->go);
	sem_destroy(&ct->event);
}

/* A step, park or event that does not come within 10 s never comes (a
 * point never reached, an answer never given). */
static inline void wait_for(sem_t *sem, const struct cpu_thread *ct, const char *what)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += 10;
	while (sem_timedwait(sem, &t))
		if (errno != EINTR) {
			fprintf(stderr, "CPU %u: %s never came\n", ct->cpu, what);
			exit(1);
		}
}

static inline void run(struct cpu_thread *ct, void (*fn)(struct cpu_thread *))
{
	ct->fn = fn;
	sem_post(&ct->cmd);
}

static inline void wait_done(struct cpu_thread *ct)
{
	wait_for(&ct->done, ct, "the end of a step");
}

static inline void run_wait(struct cpu_thread *ct, void (*fn)(struct cpu_thread *))
{
	run(ct, fn);
	wait_done(ct);
}

/* Run fn until it parks at `at` (of obj, unless NULL). */
static inline void run_parked(struct cpu_thread *ct, void (*fn)(struct cpu_thread *),
			      enum cairn_percpu_hook_point at, void *obj)
{
	ct->at = at;
	ct->obj = obj;
	ct->arm = true;
	run(ct, fn);
	wait_for(&ct->parked, ct, "the park at a hook point");
}

static inline void let_go(struct cpu_thread *ct)
{
	sem_post(&ct->go);
}

#endif /* CAIRN_TEST_CPU_THREAD_H */
