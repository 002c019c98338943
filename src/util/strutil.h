/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Small string helpers: strict number and size parsing, prefix tests. */
#ifndef LAZYEROFS_UTIL_STRUTIL_H
#define LAZYEROFS_UTIL_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal only, whole string, no sign, no overflow; -EINVAL / -ERANGE otherwise. */
int util_parse_u64(const char *s, uint64_t *ret);
bool util_startswith(const char *s, const char *prefix);
/* A SIZE (DESIGN "cache-max"): an integer with an optional K, M, G or T suffix (powers of
 * 1024), or a percentage "1%".."100%" (of the cache filesystem, for the caller to apply). */
struct util_size {
	uint64_t bytes;	  /* when percent is 0 */
	unsigned percent; /* 1..100, or 0 */
};
/* -EINVAL for anything else, -ERANGE for a size past 2^64 or a percentage past 100. */
int util_parse_size(const char *s, struct util_size *ret);
/* Format a byte count for humans ("1.5 MiB") into buf. */
const char *util_format_bytes(uint64_t n, char *buf, size_t len);

#endif
