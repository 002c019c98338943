/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Growing arrays: room for one more element, doubling the allocation when it is full. */
#ifndef LAZYEROFS_UTIL_ARRAY_H
#define LAZYEROFS_UTIL_ARRAY_H

#include <stddef.h>

/* Make *v (of *alloc elements of `size` bytes, `n` in use) hold at least n + 1: the first
 * allocation takes `first` elements, later ones double. -ENOMEM (v unchanged) on failure or
 * overflow. */
int util_array_reserve(void **v, size_t *alloc, size_t n, size_t size, size_t first);

/* Typed form: UTIL_ARRAY_RESERVE(q->v, q->alloc, q->n, 256). */
#define UTIL_ARRAY_RESERVE(v, alloc, n, first)                                                 \
	util_array_reserve((void **)&(v), &(alloc), (n), sizeof(*(v)), (first))

#endif
