/* SPDX-License-Identifier: MIT */
/*
 * The sequential specification of an arena, written naively: a sorted
 * array of extents, fits found by trying every admissible address of every
 * free extent in order. Used by the model-based test and as the reference
 * of the linearizability check.
 */
#ifndef CAIRN_TEST_BTREE_MODEL_H
#define CAIRN_TEST_BTREE_MODEL_H

#include <cairn/arena.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../check.h"

#define MAXEXT 8192

static uint64_t Q;

struct mext {
	uint64_t start, len, cookie;
	uint32_t flags;
};
static struct mext m[MAXEXT];
static unsigned nm;

static uint64_t end_of(const struct mext *e)
{
	return e->start + e->len;
}

static bool is_free(const struct mext *e)
{
	return e->flags & CAIRN_EXT_FREE;
}

static void m_insert(unsigned at, struct mext e)
{
	REQUIRE(nm < MAXEXT);
	memmove(&m[at + 1], &m[at], (nm - at) * sizeof(m[0]));
	m[at] = e;
	nm++;
}

static void m_remove(unsigned at)
{
	memmove(&m[at], &m[at + 1], (nm - at - 1) * sizeof(m[0]));
	nm--;
}

/* index of the extent containing x, or -1 */
static int m_find(uint64_t x)
{
	for (unsigned i = 0; i < nm; i++)
		if (x >= m[i].start && x < end_of(&m[i]))
			return (int)i;
	return -1;
}

static int m_add(uint64_t base, uint64_t size)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if ((base | size) & (Q - 1))
		return CAIRN_EALIGN;
	if (base + size <= base)
		return CAIRN_ERANGE;
	unsigned at = 0;
	while (at < nm && m[at].start < base)
		at++;
	if ((at > 0 && end_of(&m[at - 1]) > base) ||
	    (at < nm && m[at].start < base + size))
		return CAIRN_EEXIST;
	m_insert(at, (struct mext){ base, size, 0,
				    CAIRN_EXT_FREE | CAIRN_ARENA_SPAN });
	return 0;
}

/* Carve [a, a+size) out of free extent i. */
static void m_carve(unsigned i, uint64_t a, uint64_t size, uint64_t cookie)
{
	struct mext f = m[i];
	uint64_t end = end_of(&f);
	if (a == f.start) {
		m[i].len = size;
		m[i].cookie = cookie;
		m[i].flags &= ~CAIRN_EXT_FREE;
	} else {
		m[i].len = a - f.start;
		m_insert(++i, (struct mext){ a, size, cookie, 0 });
	}
	if (a + size < end)
		m_insert(i + 1, (struct mext){ a + size, end - a - size, 0,
					       CAIRN_EXT_FREE });
}

static bool ok_at(uint64_t a, uint64_t size, uint64_t nocross)
{
	return !nocross || a / nocross == (a + size - 1) / nocross;
}

static int m_xalloc(uint64_t size, uint64_t align, uint64_t phase,
		    uint64_t nocross, uint64_t lo, uint64_t hi, int policy,
		    uint64_t cookie, uint64_t *out)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if (align == 0)
		align = Q;
	if ((align & (align - 1)) || phase >= align || phase % Q)
		return CAIRN_EALIGN;
	if (align < Q)
		align = Q;
	if (size > UINT64_MAX - (Q - 1)) /* rounds to 2^64 */
		return CAIRN_ENOMEM;
	size = (size + Q - 1) / Q * Q;
	if (policy < 0 || policy > 2 ||
	    (nocross && ((nocross & (nocross - 1)) || nocross < size)))
		return CAIRN_EINVAL;
	if (hi == 0)
		hi = UINT64_MAX;
	if (lo >= hi)
		return CAIRN_ERANGE;

	int best = -1;
	uint64_t best_a = 0;
	for (unsigned i = 0; i < nm; i++) {
		if (!is_free(&m[i]))
			continue;
		uint64_t l = m[i].start > lo ? m[i].start : lo;
		uint64_t h = end_of(&m[i]) < hi ? end_of(&m[i]) : hi;
		if (h <= l)
			continue;
		/* overflow-safe near 2^64: a past h, or a step that wraps,
		 * ends the search */
		uint64_t a = phase;
		if (l > phase) {
			uint64_t k = (l - phase) / align +
				     ((l - phase) % align != 0);
			if (k > (UINT64_MAX - phase) / align)
				continue;
			a = k * align + phase;
		}
		bool found = false;
		uint64_t fa = 0;
		for (; a <= h && h - a >= size; a += align) {
			if (ok_at(a, size, nocross)) {
				fa = a;
				found = true;
				if (policy != CAIRN_FIT_HIGH)
					break;
			}
			if (a > UINT64_MAX - align)
				break;
		}
		if (!found)
			continue;
		if (policy == CAIRN_FIT_FIRST) {
			best = (int)i, best_a = fa;
			break;
		}
		if (policy == CAIRN_FIT_HIGH)
			best = (int)i, best_a = fa;
		if (policy == CAIRN_FIT_BEST &&
		    (best < 0 || m[i].len < m[best].len))
			best = (int)i, best_a = fa;
	}
	if (best < 0)
		return CAIRN_ENOMEM;
	m_carve((unsigned)best, best_a, size, cookie);
	*out = best_a;
	return 0;
}

static int m_free(uint64_t addr, uint64_t size)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if (addr % Q)
		return CAIRN_EALIGN;
	if (size > UINT64_MAX - (Q - 1)) /* rounds to 2^64: no such range */
		return CAIRN_EORDER;
	size = (size + Q - 1) / Q * Q;
	int i = m_find(addr);
	if (i < 0)
		return CAIRN_ERANGE;
	if (is_free(&m[i]) || m[i].start != addr)
		return CAIRN_EFREE;
	if (m[i].len != size)
		return CAIRN_EORDER;
	m[i].flags |= CAIRN_EXT_FREE;
	m[i].cookie = 0;
	unsigned u = (unsigned)i;
	if (u + 1 < nm && is_free(&m[u + 1]) &&
	    !(m[u + 1].flags & CAIRN_ARENA_SPAN) && m[u + 1].start == end_of(&m[u])) {
		m[u].len += m[u + 1].len;
		m_remove(u + 1);
	}
	if (u > 0 && is_free(&m[u - 1]) && !(m[u].flags & CAIRN_ARENA_SPAN) &&
	    end_of(&m[u - 1]) == m[u].start) {
		m[u - 1].len += m[u].len;
		m_remove(u);
	}
	return 0;
}

/* Free the allocated range at addr if its cookie is `cookie`, whatever
 * its size (*size). */
static __attribute__((unused)) int m_free_owned(uint64_t addr, uint64_t cookie,
						 uint64_t *size)
{
	int i = m_find(addr);
	if (i < 0)
		return CAIRN_ERANGE;
	if (is_free(&m[i]))
		return CAIRN_EFREE;
	if (m[i].start != addr)
		return CAIRN_EALIGN;
	if (m[i].cookie != cookie)
		return CAIRN_EBUSY;
	*size = m[i].len;
	return m_free(addr, m[i].len);
}

/* Free exactly [addr, addr + size) if its cookie is `cookie`: the
 * argument checks first, then another owner of the allocated range that
 * starts at addr, then m_free's errors. */
static __attribute__((unused)) int m_free_as(uint64_t addr, uint64_t size,
					      uint64_t cookie)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if (addr % Q)
		return CAIRN_EALIGN;
	if (size > UINT64_MAX - (Q - 1))
		return CAIRN_EORDER;
	int i = m_find(addr);
	if (i >= 0 && !is_free(&m[i]) && m[i].start == addr &&
	    m[i].cookie != cookie)
		return CAIRN_EBUSY;
	return m_free(addr, size);
}

static int m_reserve(uint64_t addr, uint64_t size, uint64_t cookie)
{
	if (size == 0)
		return CAIRN_EINVAL;
	if ((addr | size) % Q)
		return CAIRN_EALIGN;
	if (addr + size <= addr)
		return CAIRN_ERANGE;
	int i = m_find(addr);
	if (i < 0)
		return CAIRN_ERANGE;
	if (!is_free(&m[i]))
		return CAIRN_EBUSY;
	if (addr + size > end_of(&m[i]))
		return (unsigned)i + 1 < nm && m[i + 1].start == end_of(&m[i])
			       ? CAIRN_EBUSY : CAIRN_ERANGE;
	m_carve((unsigned)i, addr, size, cookie);
	return 0;
}

/* ---- the tree against the reference ---- */

struct m_cmp {
	unsigned i;
	bool bad, verbose;
};

static int m_cmp_visit(const struct cairn_ext *e, void *arg)
{
	struct m_cmp *c = arg;
	if (c->i < nm && e->start == m[c->i].start && e->len == m[c->i].len &&
	    e->cookie == m[c->i].cookie && e->flags == m[c->i].flags) {
		c->i++;
		return 0;
	}
	if (c->verbose) {
		fprintf(stderr, "mismatch at extent %u: tree %#llx+%#llx c%llu f%x", c->i,
			(unsigned long long)e->start, (unsigned long long)e->len,
			(unsigned long long)e->cookie, e->flags);
		if (c->i < nm)
			fprintf(stderr, ", model %#llx+%#llx c%llu f%x",
				(unsigned long long)m[c->i].start, (unsigned long long)m[c->i].len,
				(unsigned long long)m[c->i].cookie, m[c->i].flags);
		fprintf(stderr, "\n");
	}
	c->bad = true;
	return 1;
}

/* The tree's extents are exactly m[] (verbose: the first difference on
 * stderr). */
static __attribute__((unused)) bool m_same(struct cairn_btree *t, bool verbose)
{
	struct m_cmp c = { 0, false, verbose };
	cairn_btree_walk(t, m_cmp_visit, &c);
	if (!c.bad && c.i != nm) {
		if (verbose)
			fprintf(stderr, "tree has %u extents, model %u\n", c.i, nm);
		c.bad = true;
	}
	return !c.bad;
}

#endif
