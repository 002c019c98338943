/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Little-endian integers of n bytes (1..8) at unaligned places: formats of our own (the file
 * index, the cache header) and of others (ELF headers, EROFS). Unrolled, a constant n
 * compiles to one load or store (gcc -O2 on x86-64: a single mov). */
#ifndef LAZYEROFS_UTIL_ENDIAN_H
#define LAZYEROFS_UTIL_ENDIAN_H

#include <stdint.h>

static inline uint64_t util_get_le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

#pragma GCC unroll 8
	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void util_put_le(uint8_t *p, uint64_t v, unsigned int n)
{
#pragma GCC unroll 8
	for (unsigned int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
