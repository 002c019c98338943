// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The I/O table under the cache entry's persistence: the real syscalls in production, a
 * simulated filesystem (power loss, failing fdatasync) in unit tests.
 */
#include "cache/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "util/fs.h"

static ssize_t real_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

static int real_fallocate(int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len);
}

const struct cache_io_ops cache_io_real = {
    .pwrite = real_pwrite,
    .fdatasync = fdatasync,
    .fsync = fsync,
    .ftruncate = ftruncate,
    .fallocate = real_fallocate,
    .renameat = renameat,
};

const struct cache_io_ops *cache_io = &cache_io_real;

void cache_io_set(const struct cache_io_ops *ops)
{
	cache_io = ops ? ops : &cache_io_real;
}

int cache_io_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	return util_pwrite_full_with(cache_io->pwrite, fd, buf, len, off);
}

static int ret_errno(int r)
{
	return r < 0 ? -errno : 0;
}

int cache_io_fdatasync(int fd)
{
	return ret_errno(cache_io->fdatasync(fd));
}

int cache_io_fsync(int fd)
{
	return ret_errno(cache_io->fsync(fd));
}

int cache_io_ftruncate(int fd, uint64_t len)
{
	return ret_errno(cache_io->ftruncate(fd, (off_t)len));
}

int cache_io_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	return ret_errno(cache_io->fallocate(fd, mode, (off_t)off, (off_t)len));
}

int cache_io_renameat(int dirfd, const char *from, const char *to)
{
	return ret_errno(cache_io->renameat(dirfd, from, dirfd, to));
}
