// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Capped growing buffer. */
#include "util/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void util_buf_init(struct util_buf *b, size_t max)
{
	*b = (struct util_buf)UTIL_BUF_INIT(max);
}

static int buf_reserve(struct util_buf *b, size_t extra)
{
	size_t need, alloc;
	uint8_t *p;

	if (__builtin_add_overflow(b->len, extra, &need) || need > b->max)
		return -EFBIG;
	if (need + 1 <= b->alloc)
		return 0;
	alloc = b->alloc ? b->alloc : 256;
	while (alloc < need + 1)
		alloc = alloc > SIZE_MAX / 2 ? need + 1 : alloc * 2;
	if (b->max < SIZE_MAX && alloc > b->max + 1)
		alloc = b->max + 1; /* (SIZE_MAX + 1 is 0: a buffer without a cap has none) */
	p = realloc(b->data, alloc);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->alloc = alloc;
	return 0;
}

int util_buf_append(struct util_buf *b, const void *data, size_t len)
{
	int r = buf_reserve(b, len);

	if (r < 0)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

int util_buf_appendf(struct util_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void util_buf_reset(struct util_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

void util_buf_free(struct util_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
}

int util_buf_steal(struct util_buf *b, char **ret)
{
	int r = buf_reserve(b, 0);

	if (r < 0)
		return r;
	b->data[b->len] = 0;
	*ret = (char *)b->data;
	b->data = NULL;
	b->len = b->alloc = 0;
	return 0;
}
