/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * A growing byte buffer with a hard cap (manifests, tokens, headers, replies):
 * appending past the cap fails with -EFBIG instead of growing without bound.
 * Always NUL-terminated after the data so text can be parsed in place.
 */
#ifndef LAZYEROFS_UTIL_BUF_H
#define LAZYEROFS_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct util_buf {
	uint8_t *data;
	size_t len;
	size_t alloc;
	size_t max; /* hard cap on len */
};

#define UTIL_BUF_INIT(cap) { .data = NULL, .len = 0, .alloc = 0, .max = (cap) }

void util_buf_init(struct util_buf *b, size_t max);
int util_buf_append(struct util_buf *b, const void *data, size_t len);
int util_buf_appendf(struct util_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void util_buf_reset(struct util_buf *b);
void util_buf_free(struct util_buf *b);
/* Hand the data over (NUL-terminated, never NULL on success); the buffer is left empty. */
int util_buf_steal(struct util_buf *b, char **ret);

#endif
