/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* The one way to have memory shared with the processes forked after it (the daemon's holder
 * and its workers): anonymous and MAP_SHARED, zero-filled, address space only until written
 * (MAP_NORESERVE: a large table costs what is used of it). */
#ifndef LAZYEROFS_UTIL_SHARED_H
#define LAZYEROFS_UTIL_SHARED_H

#include <stddef.h>

/* bytes > 0. NULL with errno set when the mapping fails. */
void *util_shared_alloc(size_t bytes);
/* p from util_shared_alloc(bytes), or NULL. */
void util_shared_free(void *p, size_t bytes);

#endif
