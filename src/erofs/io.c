// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* The two stock erofs_io backends: a memory buffer and a local file descriptor. ctx holds
 * the buffer / the fd itself, so an erofs_io can be copied freely. Callers of io->read stay
 * within io->size (erofs_ctx_read checks every range first). */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/erofs.h"
#include "util/fs.h"

static int mem_read(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	memcpy(buf, (const uint8_t *)ctx + off, len);
	return 0;
}

void erofs_io_from_memory(struct erofs_io *io, const void *buf, uint64_t size)
{
	*io = (struct erofs_io){
		.ctx = (void *)(uintptr_t)buf,
		.size = size,
		.read = mem_read,
	};
}

static int fd_read(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	if (len > SIZE_MAX)
		return -EFBIG;
	return util_pread_full((int)(intptr_t)ctx, buf, (size_t)len, off);
}

int erofs_io_from_fd(struct erofs_io *io, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*io = (struct erofs_io){
		.ctx = (void *)(intptr_t)fd,
		.size = (uint64_t)st.st_size,
		.read = fd_read,
	};
	return 0;
}
