/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Small string helpers: strict number parsing, prefix tests. */
#ifndef LAZYEROFS_UTIL_STRUTIL_H
#define LAZYEROFS_UTIL_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal only, whole string, no sign, no overflow; -EINVAL / -ERANGE otherwise. */
int util_parse_u64(const char *s, uint64_t *ret);
bool util_startswith(const char *s, const char *prefix);
/* Format a byte count for humans ("1.5 MiB") into buf. */
const char *util_format_bytes(uint64_t n, char *buf, size_t len);

#endif
