/* SPDX-License-Identifier: MIT */
/*
 * A line buffer for diagnostics: the library has no printf. Output is cut,
 * never overrun, when a line is longer than the buffer.
 */
#ifndef CAIRN_FMT_H
#define CAIRN_FMT_H

#include <stdint.h>

struct fmt_line {
	char s[160];
	unsigned n;
};

static inline void fmt_str(struct fmt_line *l, const char *s)
{
	while (*s && l->n < sizeof(l->s) - 1)
		l->s[l->n++] = *s++;
	l->s[l->n] = 0;
}

static inline void fmt_uint(struct fmt_line *l, uint64_t v, unsigned base)
{
	char tmp[24];
	unsigned i = 0;
	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (base == 16)
		fmt_str(l, "0x");
	while (i && l->n < sizeof(l->s) - 1)
		l->s[l->n++] = tmp[--i];
	l->s[l->n] = 0;
}

static inline void fmt_dec(struct fmt_line *l, uint64_t v) { fmt_uint(l, v, 10); }
static inline void fmt_hex(struct fmt_line *l, uint64_t v) { fmt_uint(l, v, 16); }

#endif /* CAIRN_FMT_H */
