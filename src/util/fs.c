// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* File helpers shared by cache, mount and cli. */
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/time.h"

static int mkdir_parents(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int util_open_existing_private_dir(const char *path, int flags, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	fd = open(path, flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != 0 || (st.st_mode & 0077))
		return -EPERM;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int util_open_private_dir(const char *path, int *ret_fd)
{
	int r = mkdir_parents(path);

	if (r < 0)
		return r;
	return util_open_existing_private_dir(path, O_PATH, ret_fd);
}

int util_pwrite_full_with(util_pwrite_fn pw, int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pw(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	return util_pwrite_full_with(pwrite, fd, buf, len, off);
}

int util_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

bool util_fd_is_at(int fd, int dirfd, const char *name)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       util_same_file(&a, &b);
}

int util_lock_at(int dirfd, const char *name, bool wait, int *ret_fd)
{
	for (;;) {
		_cleanup_close_ int fd =
		    openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		struct stat st;

		if (fd < 0)
			return -errno;
		while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
		}
		if (fstat(fd, &st) < 0)
			return -errno;
		/* (renamed away or replaced while we waited: take the new one) */
		if (util_fd_is_at(fd, dirfd, name)) {
			*ret_fd = TAKE_FD(fd);
			return 0;
		}
	}
}

int util_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
	return util_write_file_atomic_flags(dirfd, name, data, len, mode, 0);
}

int util_write_file_atomic_flags(int dirfd, const char *name, const void *data, size_t len,
				 mode_t mode, unsigned flags)
{
	bool sync = !(flags & UTIL_WRITE_NO_SYNC);
	char tmp[NAME_MAX + 1];
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	/* A path the user named: only a file is replaced, never a device, a FIFO, a symlink or
	 * a directory (in our own directories, whatever is in the way goes). */
	if ((flags & UTIL_WRITE_ONLY_OVER_FILE) &&
	    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -EEXIST;
	/* A fresh file of ours under a name nobody can take first (in a directory others may
	 * write to, say /tmp, a file made there in advance would be written and renamed into
	 * place with its owner's rights over it). */
	for (int tries = 0; fd < 0; tries++) {
		uint32_t rnd = 0;

		if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			rnd = (uint32_t)util_now_us() ^ (uint32_t)tries;
		if (snprintf(tmp, sizeof(tmp), ".%s.%08x.tmp", name, rnd) >= (int)sizeof(tmp))
			return -ENAMETOOLONG;
		fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && (errno != EEXIST || tries >= 16))
			return -errno;
	}
	r = (flags & UTIL_WRITE_EXACT_MODE) && fchmod(fd, mode) < 0 ? -errno : 0;
	if (r >= 0)
		r = util_pwrite_full(fd, data, len, 0);
	if (r >= 0 && sync && fsync(fd) < 0)
		r = -errno;
	if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		r = -errno;
	if (r < 0) {
		unlinkat(dirfd, tmp, 0);
		return r;
	}
	/* Make the rename itself durable; a failure here does not undo the write. */
	if (sync) {
		_cleanup_close_ int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0)
			(void)fsync(dfd);
	}
	return 0;
}

int util_read_fd(int fd, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, alloc = 0;

	for (;;) {
		ssize_t n;

		if (len + 1 >= alloc) {
			size_t na = alloc ? alloc * 2 : 4096;
			char *p;

			if (na > max + 2)
				na = max + 2;
			if (na <= len + 1)
				return -EFBIG;
			p = realloc(buf, na);
			if (!p)
				return -ENOMEM;
			buf = p;
			alloc = na;
		}
		n = read(fd, buf + len, alloc - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max)
			return -EFBIG;
	}
	if (!buf) {
		buf = malloc(1);
		if (!buf)
			return -ENOMEM;
	}
	buf[len] = 0;
	*ret = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

int util_open_read(int dirfd, const char *path, int flags)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags), fl;

	/* A file under a lease (an NFS delegation, a Samba oplock): wait for its break. */
	if (fd < 0 && errno == EWOULDBLOCK)
		fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

int util_read_file(int dirfd, const char *path, size_t max, int nofollow, char **ret,
		   size_t *ret_len)
{
	_cleanup_close_ int fd = util_open_read(dirfd, path, nofollow ? O_NOFOLLOW : 0);

	if (fd < 0)
		return fd;
	return util_read_fd(fd, max, ret, ret_len);
}
