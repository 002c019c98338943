/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Shared by the cache module's files: the I/O table in use (io.c) and its helpers.
 */
#ifndef LAZYEROFS_CACHE_INTERNAL_H
#define LAZYEROFS_CACHE_INTERNAL_H

#include "cache/cache.h"

extern const struct cache_io_ops *cache_io;

/* pwrite all of buf through cache_io: 0 or -errno (a short write that makes no progress is
 * -EIO). */
int cache_io_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Each: 0 or -errno. */
int cache_io_fdatasync(int fd);
int cache_io_fsync(int fd);
int cache_io_ftruncate(int fd, uint64_t len);
int cache_io_fallocate(int fd, int mode, uint64_t off, uint64_t len);
int cache_io_renameat(int dirfd, const char *from, const char *to);

#endif
