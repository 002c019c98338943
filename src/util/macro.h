/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Small macros shared by every module: array sizes, min/max, checked arithmetic. */
#ifndef LAZYEROFS_UTIL_MACRO_H
#define LAZYEROFS_UTIL_MACRO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ROUND_UP(n, a) (DIV_ROUND_UP((n), (a)) * (a))
#define ROUND_DOWN(n, a) (((n) / (a)) * (a))

#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _warn_unused_ __attribute__((warn_unused_result))

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* Checked arithmetic: true when the result overflowed. */
static inline bool util_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	return __builtin_add_overflow(a, b, ret);
}

static inline bool util_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *ret)
{
	return __builtin_mul_overflow(a, b, ret);
}

/* True when [off, off + len) lies inside [0, size). */
static inline bool util_range_within(uint64_t off, uint64_t len, uint64_t size)
{
	uint64_t end;

	if (util_add_overflow_u64(off, len, &end))
		return false;
	return end <= size;
}

#endif
