/* SPDX-License-Identifier: MIT */
/*
 * A trivially correct source of items for the magazine tests: N distinct
 * item values, each either in the source or out of it, behind a mutex. It
 * counts every misuse: an item given back that is not out (a duplicate, or
 * an item that never came from here).
 */
#ifndef CAIRN_TEST_REF_SOURCE_H
#define CAIRN_TEST_REF_SOURCE_H

#include <cairn/magazine.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct ref_source {
	pthread_mutex_t lock;
	uint64_t n;          /* items in all */
	unsigned char *out;  /* per item: 1 while out of the source */
	uint64_t *stack;     /* items in the source */
	uint64_t nfree;
	uint64_t errors;
};

static inline uint64_t ref_item(uint64_t i) { return 0x5a000000000ull + i * 24; }

static inline int64_t ref_index(const struct ref_source *s, uint64_t item)
{
	if (item < ref_item(0) || (item - ref_item(0)) % 24)
		return -1;
	uint64_t i = (item - ref_item(0)) / 24;
	return i < s->n ? (int64_t)i : -1;
}

static inline void ref_init(struct ref_source *s, uint64_t n)
{
	pthread_mutex_init(&s->lock, NULL);
	s->n = n;
	s->out = calloc(n, 1);
	s->stack = calloc(n, sizeof(*s->stack));
	for (uint64_t i = 0; i < n; i++)
		s->stack[i] = ref_item(n - 1 - i);
	s->nfree = n;
	s->errors = 0;
}

static size_t ref_get(void *ctx, uint64_t *items, size_t n)
{
	struct ref_source *s = ctx;
	size_t got = 0;
	pthread_mutex_lock(&s->lock);
	while (got < n && s->nfree) {
		uint64_t it = s->stack[--s->nfree];
		s->out[ref_index(s, it)] = 1;
		items[got++] = it;
	}
	pthread_mutex_unlock(&s->lock);
	return got;
}

static void ref_put(void *ctx, const uint64_t *items, size_t n)
{
	struct ref_source *s = ctx;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		int64_t k = ref_index(s, items[i]);
		if (k < 0 || !s->out[k]) {
			fprintf(stderr, "ref source: bad put of %#llx\n", (unsigned long long)items[i]);
			s->errors++;
			continue;
		}
		s->out[k] = 0;
		s->stack[s->nfree++] = items[i];
	}
	pthread_mutex_unlock(&s->lock);
}

static inline uint64_t ref_free(struct ref_source *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t n = s->nfree;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static inline struct cairn_mag_source ref_as_source(struct ref_source *s)
{
	return (struct cairn_mag_source){ ref_get, ref_put, s };
}

#endif
