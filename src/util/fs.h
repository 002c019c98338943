/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* File helpers: private directories, atomic writes, capped reads, full pread/pwrite. */
#ifndef LAZYEROFS_UTIL_FS_H
#define LAZYEROFS_UTIL_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* A file's identity: its device and inode number (st_ino alone is not: layers, mounts and
 * filesystems share inode numbers). */
struct util_file_id {
	dev_t dev;
	ino_t ino;
};

static inline struct util_file_id util_file_id_of(const struct stat *st)
{
	return (struct util_file_id){.dev = st->st_dev, .ino = st->st_ino};
}

static inline bool util_file_id_eq(struct util_file_id a, struct util_file_id b)
{
	return a.dev == b.dev && a.ino == b.ino;
}

static inline bool util_same_file(const struct stat *a, const struct stat *b)
{
	return util_file_id_eq(util_file_id_of(a), util_file_id_of(b));
}

/* Whether fd is the file dirfd/name names now (a final symlink not followed): not renamed
 * away, replaced or removed since it was opened. */
bool util_fd_is_at(int fd, int dirfd, const char *name);

/* Create `path` (and missing parents, mode 0700) if needed; then require a real directory
 * (not a symlink), owned by root (uid 0) and not accessible by group/other. Returns an
 * O_PATH|O_DIRECTORY fd on success; -EPERM when ownership or mode is wrong, -ENOTDIR when
 * it is not a directory (or is a symlink). */
int util_open_private_dir(const char *path, int *ret_fd);
/* The same checks on a directory that must already exist, opened with `flags` (O_PATH to hold
 * it, O_RDONLY to list it); -ENOENT when it does not exist. */
int util_open_existing_private_dir(const char *path, int flags, int *ret_fd);

/* Create (0600) and flock dirfd/name exclusively: waiting when wait, else -EWOULDBLOCK when
 * another holds it. A lock won on a file that lost the name meanwhile (its holder renamed or
 * removed it) guards nothing: then the file the name leads to now is locked instead. */
int util_lock_at(int dirfd, const char *name, bool wait, int *ret_fd);

/* Write data to dirfd/name atomically: temp file, fsync, rename, fsync dir. mode e.g. 0600
 * (less the umask). */
int util_write_file_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
/* The same with flags: UTIL_WRITE_NO_SYNC skips both fsyncs (for what a crash may lose: the
 * rename stays atomic), UTIL_WRITE_EXACT_MODE gives the file mode whatever the umask,
 * UTIL_WRITE_ONLY_OVER_FILE (for a path the user named) replaces only a regular file:
 * -EISDIR or -EEXIST when name is something else. */
#define UTIL_WRITE_NO_SYNC        (1u << 0)
#define UTIL_WRITE_EXACT_MODE     (1u << 1)
#define UTIL_WRITE_ONLY_OVER_FILE (1u << 2)
int util_write_file_atomic_flags(int dirfd, const char *name, const void *data, size_t len,
				 mode_t mode, unsigned flags);

/* Open path for reading (O_CLOEXEC | flags) without blocking in open(2): a FIFO without a
 * writer reads as empty instead of waiting for one. Returns the fd or -errno. */
int util_open_read(int dirfd, const char *path, int flags);
/* Read a whole file (not following a final symlink when nofollow) up to max bytes, NUL-terminated.
 * -EFBIG when larger. */
int util_read_file(int dirfd, const char *path, size_t max, int nofollow, char **ret, size_t *ret_len);
/* The same from an open fd (read from its current offset to EOF). */
int util_read_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* pread/pwrite the full length, retrying on EINTR and short transfers. pread returns -EIO at EOF. */
int util_pread_full(int fd, void *buf, size_t len, uint64_t off);
int util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* The same through another pwrite (a test's I/O layer): every byte, retrying short writes. */
typedef ssize_t (*util_pwrite_fn)(int fd, const void *buf, size_t len, off_t off);
int util_pwrite_full_with(util_pwrite_fn pw, int fd, const void *buf, size_t len, uint64_t off);

#endif
