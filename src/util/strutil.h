/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Small string helpers: strict number and size parsing, prefix tests. */
#ifndef LAZYEROFS_UTIL_STRUTIL_H
#define LAZYEROFS_UTIL_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal only, whole string, no sign, no overflow; -EINVAL / -ERANGE otherwise. */
int util_parse_u64(const char *s, uint64_t *ret);
/* A setting tests or benchmarks change (a period in ms, a size): the environment variable
 * `name` when it holds a positive whole number, else def (with a warning when it holds
 * anything else). */
uint64_t util_env_u64(const char *name, uint64_t def);
/* A size as users write it (cache-max, gc --max-size): an integer of bytes with an optional
 * K, M, G or T suffix (powers of 1024; either case, "KiB" ... "TiB" too), or a percentage of
 * something ("10%", 0 to 100). */
struct util_size {
	uint64_t bytes;	  /* when !is_percent */
	unsigned percent; /* when is_percent */
	bool is_percent;
};
/* -EINVAL for anything else (empty, signs, spaces, fractions, other suffixes), -ERANGE past
 * 2^64-1 bytes or 100 %. */
int util_parse_size(const char *s, struct util_size *ret);
/* What util_parse_size takes, for messages. */
#define UTIL_SIZE_SYNTAX \
	"an integer with an optional K, M, G or T suffix (powers of 1024), or a percentage such " \
	"as 10%"

bool util_startswith(const char *s, const char *prefix);
/* Make s one line a terminal shows as it is, in place: control characters (C0, DEL, and C1
 * such as U+009B, which terminals take for an escape), the characters that reorder or break
 * the text around them (bidirectional controls such as U+202E, U+2028, U+2029) and bytes
 * that are not UTF-8 become '?'; other UTF-8 stays. For text a registry, an image or a user
 * chose. */
void util_str_printable(char *s);
/* Hide the user info of every URL in s, in place: "user:secret" between "scheme://" and
 * "@host" becomes three stars (a proxy's or a source's password, as libcurl's messages
 * quote them). */
void util_str_hide_userinfo(char *s);
/* Secrets (passwords, tokens, keys) are wiped before they are freed. util_free_secret takes
 * a NUL-terminated string, frees it and sets it to NULL (a _cleanup_ function too). */
void util_free_secret(char **p);
void util_free_secret_buf(void *p, size_t len);
/* Format a byte count for humans ("1.5 MiB") into buf. */
const char *util_format_bytes(uint64_t n, char *buf, size_t len);

#endif
