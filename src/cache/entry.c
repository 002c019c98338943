// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Cache entry files: create, validate, rebuild, lock, persist the bitmap after the data is
 * durable, flags, and setting a bad entry aside. Paths are opened relative to the private
 * <cache-dir>/sha256 directory without following symlinks.
 */
#include "cache/internal.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/shared.h"

bool cache_key_valid(const char *key)
{
	return key && util_sha256_hex_valid(key, strlen(key));
}

int cache_dir_open(const char *cache_dir, int *ret_fd)
{
	char path[PATH_MAX];
	_cleanup_close_ int root = -1;
	int r;

	if (!cache_dir || cache_dir[0] != '/')
		return -EINVAL;
	r = util_open_private_dir(cache_dir, &root);
	if (r < 0)
		return r;
	if (snprintf(path, sizeof(path), "%s/sha256", cache_dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return util_open_private_dir(path, ret_fd);
}

int cache_entry_lock(int dirfd, const char *key, bool wait, int *ret_fd)
{
	char name[CACHE_KEY_LEN + 8];

	if (!cache_key_valid(key))
		return -EINVAL;
	snprintf(name, sizeof(name), "%s.lock", key);
	/* The holder of a bad entry renames its lock file aside: util_lock_at checks it locked
	 * the file that has the name. */
	return util_lock_at(dirfd, name, wait, ret_fd);
}

/* (O_NONBLOCK: a FIFO by that name must not block the open; regular files ignore it.) */
static int open_regular(int dirfd, const char *name, int flags, int *ret_fd, struct stat *st)
{
	_cleanup_close_ int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode) || st->st_uid != 0 || (st->st_mode & 0077))
		return -EUCLEAN;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int write_header(struct cache_entry *e)
{
	uint8_t raw[CACHE_HEADER_SIZE];
	int r;

	cache_header_encode(&e->hdr, raw);
	r = cache_io_pwrite_full(e->bitmap_fd, raw, sizeof(raw), 0);
	if (r < 0)
		return r;
	return cache_io_fsync(e->bitmap_fd);
}

/* Bits entry_load had put into memory before it failed. */
static void entry_drop_bits(struct cache_entry *e)
{
	cache_bitmap_clear_all(&e->present);
	memset(e->persisted, 0, e->present.nwords * 8);
}

/* Take the data file's open-file lock. Every process of a daemon shares it (their fds on the
 * file are one open file, forked), and the kernel drops it only as the last of them is
 * closed, after that close was reported to notification marks. The processes of a killed
 * daemon close their files as they exit, possibly after the entry's lock file is free: a
 * daemon started at once waits here for that close, which its own mark would otherwise report
 * as another process writing the file (and set the entry aside as bad). At most 2 s, and only
 * a hint: the lock file is what keeps daemons apart. */
static bool hold_data_file(int fd)
{
	struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET};

	for (int i = 0; i < 200; i++) {
		if (fcntl(fd, F_OFD_SETLK, &l) == 0 ||
		    (errno != EAGAIN && errno != EACCES && errno != EINTR))
			return true;
		usleep(10000);
	}
	return false;
}

/* Whether process pid's fd `name` (in /proc/PID/fd, dirfd fds) is file st open for writing. */
static bool writes_file(int fds, int pid, const char *name, const struct stat *st)
{
	_cleanup_free_ char *info = NULL;
	struct stat fst;
	const char *flags;
	char path[320];
	size_t len;

	if (fstatat(fds, name, &fst, 0) < 0 || !util_same_file(&fst, st))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, name);
	if (util_read_file(AT_FDCWD, path, 4096, 0, &info, &len) < 0 || !info)
		return false;
	flags = strstr(info, "flags:");
	return flags && (strtoul(flags + 6, NULL, 8) & O_ACCMODE) != O_RDONLY;
}

/* The data file is still held by a daemon before this one (hold_data_file gave up: one that
 * verifies the image on its way out, for longer than the wait). Its processes are noted:
 * their last close of the file is theirs, not another process writing it (fetch_read_opens). */
static void note_prior_writers(struct cache_entry *e)
{
	_cleanup_(util_closedirp) DIR *procs = opendir("/proc");
	struct dirent *de;
	struct stat st;

	if (!procs || fstat(e->data_fd, &st) < 0)
		return;
	while ((de = readdir(procs)) && e->nprior < ARRAY_SIZE(e->prior_writers)) {
		int pid = atoi(de->d_name);
		_cleanup_(util_closedirp) DIR *fds = NULL;
		char path[64];
		struct dirent *f;

		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", pid);
		if (!(fds = opendir(path)))
			continue;
		while ((f = readdir(fds)))
			if (f->d_name[0] != '.' && writes_file(dirfd(fds), pid, f->d_name, &st)) {
				e->prior_writers[e->nprior++] = pid;
				break;
			}
	}
}

bool cache_entry_prior_writer(const struct cache_entry *e, int pid)
{
	for (unsigned i = 0; i < e->nprior; i++)
		if (e->prior_writers[i] == pid)
			return true;
	return false;
}

/* What the bitmap file claims, into e->persisted. */
static int read_persisted(struct cache_entry *e)
{
	uint64_t bytes = cache_bitmap_bytes(e->hdr.size);
	int r = util_pread_full(e->bitmap_fd, e->persisted, bytes, CACHE_BITMAP_OFFSET);

	if (r < 0)
		return r;
	for (size_t i = 0; i < bytes / 8; i++) {
		uint64_t w = le64toh(e->persisted[i]);

		/* Bits past the last block mean nothing; drop them so counts stay exact. */
		if (i == e->present.nwords - 1 && e->present.nbits % 64)
			w &= (UINT64_C(1) << (e->present.nbits % 64)) - 1;
		e->persisted[i] = w;
	}
	return 0;
}

/* Load an existing entry; -EUCLEAN (or any error) means "rebuild". On failure the bits in
 * memory are zero again, as they were. */
static int entry_load(struct cache_entry *e, const struct cache_open_params *p, const char *key,
		      const char *bitmap_name)
{
	uint8_t raw[CACHE_HEADER_SIZE];
	struct cache_header h;
	struct stat st;
	uint64_t bytes = cache_bitmap_bytes(p->size);
	int r;

	r = open_regular(e->dirfd, bitmap_name, O_RDWR, &e->bitmap_fd, &st);
	if (r == -EUCLEAN)
		goto not_ours;
	if (r < 0)
		return r;
	if ((uint64_t)st.st_size < CACHE_BITMAP_OFFSET + bytes)
		return -EUCLEAN;
	r = util_pread_full(e->bitmap_fd, raw, sizeof(raw), 0);
	if (r < 0)
		return r == -EIO ? -EUCLEAN : r;
	r = cache_header_decode(raw, sizeof(raw), &h);
	if (r == -EPROTO) {
		uint32_t v;

		memcpy(&v, raw + 8, sizeof(v));
		snprintf(e->rebuild_reason, sizeof(e->rebuild_reason),
			 "its bitmap has format version %u, this lazyerofs reads version %u",
			 le32toh(v), CACHE_FORMAT_VERSION);
	}
	if (r < 0)
		return r;
	if (strcmp(h.key, key) != 0 || strcmp(h.digest, p->digest ? p->digest : "") != 0 ||
	    h.size != p->size)
		return -EUCLEAN;
	if (h.flags & CACHE_FLAG_BAD)
		return -EILSEQ;
	r = open_regular(e->dirfd, key, O_RDWR, &e->data_fd, &st);
	if (r == -EUCLEAN)
		goto not_ours;
	if (r < 0)
		return r;
	if (!hold_data_file(e->data_fd))
		note_prior_writers(e);
	if ((uint64_t)st.st_size != p->size)
		return -EUCLEAN;
	e->hdr = h;
	r = read_persisted(e);
	if (r < 0) {
		entry_drop_bits(e);
		return r == -EIO ? -EUCLEAN : r;
	}
	memcpy(e->present.words, e->persisted, e->present.nwords * 8);
	if ((e->hdr.flags & CACHE_FLAG_COMPLETE) && !cache_entry_complete(e)) {
		/* A header that claims more than the bits is not believed. */
		e->hdr.flags &= ~(uint32_t)(CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED);
		r = write_header(e);
		if (r < 0) {
			entry_drop_bits(e);
			return r;
		}
	}
	return 0;
not_ours:
	/* (a backup's chmod -R, a copy by hand: its files must be root's alone) */
	snprintf(e->rebuild_reason, sizeof(e->rebuild_reason),
		 "its files were no longer regular files of root's with mode 0600");
	return -EUCLEAN;
}

static int fsync_dir(int dirfd)
{
	_cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return cache_io_fsync(fd);
}

/* Free space of the filesystem of fd beyond CACHE_PREALLOC_RESERVE_PERCENT of it. */
static int fs_room(int fd, uint64_t *ret)
{
	struct statvfs sv;
	uint64_t total, avail, reserve;

	if (fstatvfs(fd, &sv) < 0)
		return -errno;
	if (util_mul_overflow_u64(sv.f_blocks, sv.f_frsize, &total) ||
	    util_mul_overflow_u64(sv.f_bavail, sv.f_frsize, &avail))
		return -EOVERFLOW;
	reserve = total / 100 * CACHE_PREALLOC_RESERVE_PERCENT;
	*ret = avail > reserve ? avail - reserve : 0;
	return 0;
}

int cache_entry_room(const struct cache_entry *e, uint64_t *ret)
{
	struct stat st;

	if (fstat(e->data_fd, &st) < 0)
		return -errno;
	/* Every block of the blob has its place already: writes take no more. */
	if ((uint64_t)st.st_blocks * 512 >= ROUND_UP(e->hdr.size, CACHE_BLOCK_SIZE)) {
		*ret = UINT64_MAX;
		return 0;
	}
	return fs_room(e->data_fd, ret);
}

/* Whether `size` more bytes fit in the filesystem of fd beyond its reserve. */
static bool fits_with_reserve(int fd, uint64_t size)
{
	uint64_t room;

	return fs_room(fd, &room) == 0 && size <= room && room > 0;
}

/* Create the entry from scratch. The old files are unlinked, never truncated in place: a
 * mount left over from a dead daemon may still read the old inode. The bitmap goes first so
 * that no crash can leave an old bitmap describing new data. */
static int entry_create(struct cache_entry *e, const struct cache_open_params *p, const char *key,
			const char *bitmap_name)
{
	char tmp[CACHE_KEY_LEN + 32];
	uint8_t raw[CACHE_HEADER_SIZE];
	_cleanup_close_ int bfd = -1;
	bool removed = false;
	struct stat st;
	int r;

	if (e->data_fd >= 0) {
		close(e->data_fd);
		e->data_fd = -1;
	}
	if (e->bitmap_fd >= 0) {
		close(e->bitmap_fd);
		e->bitmap_fd = -1;
	}
	if (unlinkat(e->dirfd, bitmap_name, 0) == 0)
		removed = true;
	else if (errno != ENOENT)
		return -errno;
	if (unlinkat(e->dirfd, key, 0) == 0)
		removed = true;
	else if (errno != ENOENT)
		return -errno;
	/* Only a removal needs to be durable before the new files exist. */
	if (removed) {
		r = fsync_dir(e->dirfd);
		if (r < 0)
			return r;
	}

	e->data_fd =
	    openat(e->dirfd, key, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (e->data_fd < 0)
		return -errno;
	hold_data_file(e->data_fd);
	r = cache_io_ftruncate(e->data_fd, p->size);
	if (r < 0)
		return r;
	e->preallocated = false;
	if (p->preallocate && fits_with_reserve(e->data_fd, p->size)) {
		/* Allocated extents make the daemon's writes faster (DESIGN registry facts). A
		 * filesystem that cannot, or space taken meanwhile, gets a sparse file: a failed
		 * fallocate may keep what it allocated (ext4 does), so give every block back. */
		r = cache_io_fallocate(e->data_fd, 0, 0, p->size);
		if (r == 0)
			e->preallocated = true;
		else {
			log_debug("fallocate of cache entry %s: %s; keeping it sparse", key,
				  strerror(-r));
			r = cache_io_ftruncate(e->data_fd, 0);
			if (r >= 0)
				r = cache_io_ftruncate(e->data_fd, p->size);
			if (r < 0)
				return r;
		}
	}
	/* No fsync of the new data file here: the bitmap claims nothing yet, and every later
	 * bitmap flush is preceded by an fdatasync of the data file. */
	if (fstat(e->data_fd, &st) < 0)
		return -errno;

	e->hdr = (struct cache_header){
	    .version = CACHE_FORMAT_VERSION,
	    .block_size = CACHE_BLOCK_SIZE,
	    .flags = 0,
	    .size = p->size,
	    .nblocks = DIV_ROUND_UP(p->size, CACHE_BLOCK_SIZE),
	};
	memcpy(e->hdr.key, key, CACHE_KEY_LEN + 1);
	snprintf(e->hdr.digest, sizeof(e->hdr.digest), "%s", p->digest ? p->digest : "");

	snprintf(tmp, sizeof(tmp), ".%s.bitmap.%d.tmp", key, (int)getpid());
	bfd = openat(e->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (bfd < 0)
		return -errno;
	/* Header and empty bitmap. No fsync here (they would cost every cold mount ~5 ms): a
	 * new entry claims nothing, and whatever a crash leaves of it (no bitmap, an empty or
	 * headerless one, or one without the data file) fails to load and is rebuilt; bits set
	 * later only ever claim data an fdatasync made durable first. Only the removal of an
	 * old entry above must be durable before the new files exist. */
	cache_header_encode(&e->hdr, raw);
	r = cache_io_pwrite_full(bfd, raw, sizeof(raw), 0);
	if (r >= 0)
		r = cache_io_ftruncate(bfd, CACHE_BITMAP_OFFSET + cache_bitmap_bytes(p->size));
	/* The bits get their blocks now (a few KiB per GiB of blob), so that persisting them
	 * never fails for want of space while the data file fills the disk. Best effort. */
	if (r >= 0 &&
	    cache_io_fallocate(bfd, 0, 0, CACHE_BITMAP_OFFSET + cache_bitmap_bytes(p->size)) < 0)
		log_debug("fallocate of the bitmap of %s: %m", key);
	if (r >= 0)
		r = cache_io_renameat(e->dirfd, tmp, bitmap_name);
	if (r < 0) {
		unlinkat(e->dirfd, tmp, 0);
		return r;
	}
	e->bitmap_fd = TAKE_FD(bfd);
	/* The bits in memory are zero: fresh memory, which a failed entry_load leaves so.
	 * Clearing them again would back every page of both copies (a holder holding 640 KiB
	 * of zeros for a 10 GiB blob). */
	e->rebuilt = true;
	return 0;
}

/* Does a daemon still use the files set aside as "<group>", "<group>.bitmap", "<group>.lock"?
 * It holds the lock file's lock as long as it lives, whichever of its processes is left: the
 * pid in the name is only the first holder's (a replacement holder has another, and a pid may
 * be reused). */
static bool aside_in_use(int dirfd, const char *group, size_t len)
{
	char name[CACHE_KEY_LEN + 64];
	bool busy;
	int fd;

	if (snprintf(name, sizeof(name), "%.*s.lock", (int)len, group) >= (int)sizeof(name))
		return true;
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false; /* no lock file: nobody can hold it */
	busy = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return busy;
}

/* Remove the files a bad entry's daemon set aside ("<key>.bad-<pid>", ".bitmap", ".lock")
 * once no daemon holds their lock: it removes them itself when it leaves, but not when it was
 * killed. A mount still using such a data file keeps its inode. Called with the entry's lock
 * held. */
static void sweep_aside(int dirfd, const char *key)
{
	size_t klen = strlen(key);
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		const char *tail;
		char *end;
		long pid;

		if (strncmp(de->d_name, key, klen) != 0 || strncmp(de->d_name + klen, ".bad-", 5))
			continue;
		tail = de->d_name + klen + 5;
		errno = 0;
		pid = strtol(tail, &end, 10);
		if (errno || end == tail || pid <= 0 || pid > INT32_MAX ||
		    (*end && strcmp(end, ".bitmap") && strcmp(end, ".lock")))
			continue;
		if (aside_in_use(dirfd, de->d_name, (size_t)(end - de->d_name)))
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == 0)
			log_debug("removed '%s', left by a bad entry's daemon that is gone",
				  de->d_name);
	}
	closedir(d);
}

void cache_entry_locks_init(struct cache_entry *e)
{
	pthread_rwlockattr_t a;

	/* A failed flush must not wait behind an endless stream of stores. */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&e->store_lock, &a);
	pthread_rwlockattr_destroy(&a);
	pthread_mutex_init(&e->flush_lock, NULL);
}

int cache_entry_verified_size(int dirfd, const char *key, const char *digest, uint64_t *ret)
{
	char name[CACHE_KEY_LEN + 16];
	uint8_t raw[CACHE_HEADER_SIZE];
	_cleanup_close_ int fd = -1;
	struct cache_header h;
	struct stat st;

	if (!digest || !digest[0] || !cache_key_valid(key))
		return 0;
	snprintf(name, sizeof(name), "%s.bitmap", key);
	if (open_regular(dirfd, name, O_RDONLY, &fd, &st) < 0 ||
	    util_pread_full(fd, raw, sizeof(raw), 0) < 0 ||
	    cache_header_decode(raw, sizeof(raw), &h) < 0)
		return 0; /* (none, or one a mount rebuilds anyway) */
	if (strcmp(h.key, key) != 0 || strcmp(h.digest, digest) != 0 ||
	    (h.flags & (CACHE_FLAG_VERIFIED | CACHE_FLAG_BAD)) != CACHE_FLAG_VERIFIED)
		return 0;
	*ret = h.size;
	return 1;
}

int cache_entry_open(int dirfd, const char *cache_dir, const struct cache_open_params *p,
		     int lock_fd, struct cache_entry **ret)
{
	_cleanup_close_ int lock = lock_fd;
	struct cache_entry *e = NULL;
	char bitmap_name[CACHE_KEY_LEN + 16];
	int r;

	if (!cache_key_valid(p->key) || p->size == 0 ||
	    (p->digest && p->digest[0] && !util_digest_valid(p->digest)))
		return -EINVAL;
	if (p->size > (UINT64_C(1) << 50))
		return -EFBIG; /* 1 PiB: far beyond any image, keeps arithmetic safe */
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->data_fd = e->bitmap_fd = e->lock_fd = -1;
	e->lock_fd = TAKE_FD(lock);
	cache_entry_locks_init(e);
	e->sh = util_shared_alloc(sizeof(*e->sh));
	if (!e->sh) {
		r = -errno;
		goto fail;
	}
	e->owner_pid = (int)getpid();
	e->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (e->dirfd < 0) {
		r = -errno;
		goto fail;
	}
	if (snprintf(e->data_path, sizeof(e->data_path), "%s/sha256/%s", cache_dir, p->key) >=
	    (int)sizeof(e->data_path)) {
		r = -ENAMETOOLONG;
		goto fail;
	}
	r = cache_bitmap_init(&e->present, DIV_ROUND_UP(p->size, CACHE_BLOCK_SIZE), true);
	if (r < 0)
		goto fail;
	e->persisted = calloc(e->present.nwords, 8);
	if (!e->persisted) {
		r = -ENOMEM;
		goto fail;
	}
	snprintf(bitmap_name, sizeof(bitmap_name), "%s.bitmap", p->key);
	sweep_aside(e->dirfd, p->key);
	r = entry_load(e, p, p->key, bitmap_name);
	if (r < 0) {
		if (r == -EILSEQ)
			log_debug("cache entry %s was marked bad; starting a fresh one", p->key);
		else if (r != -ENOENT)
			log_debug("cache entry %s is damaged or stale (%s); rebuilding", p->key,
				  strerror(-r));
		if (r != -ENOENT && !e->rebuild_reason[0])
			snprintf(e->rebuild_reason, sizeof(e->rebuild_reason), "%s",
				 r == -EILSEQ ? "it was marked bad"
					      : "it was damaged or did not match the blob");
		r = entry_create(e, p, p->key, bitmap_name);
		if (r < 0)
			goto fail;
	}
	cache_entry_touch(e);
	*ret = e;
	return 0;
fail:
	cache_entry_free(e);
	return r;
}

void cache_entry_free(struct cache_entry *e)
{
	if (!e)
		return;
	if (e->data_fd >= 0)
		close(e->data_fd);
	if (e->bitmap_fd >= 0)
		close(e->bitmap_fd);
	if (e->lock_fd >= 0)
		close(e->lock_fd);
	if (e->dirfd >= 0)
		close(e->dirfd);
	cache_bitmap_destroy(&e->present);
	free(e->persisted);
	util_shared_free(e->sh, sizeof(*e->sh));
	pthread_rwlock_destroy(&e->store_lock);
	pthread_mutex_destroy(&e->flush_lock);
	free(e);
}

int cache_entry_store(struct cache_entry *e, const void *buf, size_t len, uint64_t off,
		      uint64_t first, uint64_t n)
{
	int r;

	pthread_rwlock_rdlock(&e->store_lock);
	r = cache_io_pwrite_full(e->data_fd, buf, len, off);
	/* Blocks only become present once every byte of them is written: a write that failed
	 * part-way (a full disk) claims nothing. */
	if (r >= 0 && n > 0)
		cache_bitmap_set_range(&e->present, first, n);
	pthread_rwlock_unlock(&e->store_lock);
	return r;
}

/* A flush of the data file failed. The kernel has reported its writeback error to us once
 * and will not again: a later fdatasync succeeds whether or not the pages reached the disk,
 * and the failed pages may sit in the page cache, clean, until they are evicted. So every
 * block not yet persisted is now of unknown durability: drop it from the in-memory bitmap so
 * that it is fetched (and written, and synced) again, and never claimed on that basis. Stores
 * in progress finish first (exclusive lock): a store that wrote before the failed sync has its
 * bits set by then, and is dropped with the rest. */
static void drop_unpersisted(struct cache_entry *e)
{
	uint64_t lost = 0;

	pthread_rwlock_wrlock(&e->store_lock);
	for (size_t i = 0; i < e->present.nwords; i++) {
		uint64_t w = __atomic_load_n(&e->present.words[i], __ATOMIC_ACQUIRE);
		uint64_t m = w & ~e->persisted[i];

		if (m)
			lost += (uint64_t)__builtin_popcountll(
			    cache_bitmap_clear_word(&e->present, i, m));
	}
	pthread_rwlock_unlock(&e->store_lock);
	__atomic_fetch_add(&e->sh->lost_blocks, lost, __ATOMIC_RELAXED);
	__atomic_fetch_add(&e->sh->sync_errors, 1, __ATOMIC_RELAXED);
}

static int flush_locked(struct cache_entry *e, bool final)
{
	size_t n = e->present.nwords;
	_cleanup_free_ uint64_t *snap = NULL;
	uint64_t fresh = 0;
	bool dirty = false;
	int r;

	snap = malloc(n * 8);
	if (!snap)
		return -ENOMEM;
	/* Snapshot the bits first: every bit in it was set after its data was written, so the
	 * sync below covers that data. Bits set after this point wait for the next flush. */
	for (size_t i = 0; i < n; i++) {
		snap[i] = __atomic_load_n(&e->present.words[i], __ATOMIC_ACQUIRE);
		if (snap[i] != e->persisted[i])
			dirty = true;
	}
	if (!dirty && !final)
		return 0;
	if (cache_entry_broken(e))
		return -ESTALE; /* someone else changed the files: claim nothing more */
	if (dirty) {
		r = cache_io_fdatasync(e->data_fd);
		if (r < 0) {
			drop_unpersisted(e);
			return r;
		}
	}
	for (size_t i = 0; i < n;) {
		uint64_t buf[512];
		size_t j = i, k = 0;

		if (snap[i] == e->persisted[i]) {
			i++;
			continue;
		}
		while (j < n && k < ARRAY_SIZE(buf) && snap[j] != e->persisted[j]) {
			buf[k++] = htole64(snap[j] | e->persisted[j]);
			j++;
		}
		r = cache_io_pwrite_full(e->bitmap_fd, buf, k * 8,
				     CACHE_BITMAP_OFFSET + (uint64_t)i * 8);
		if (r < 0)
			return r;
		for (size_t x = i; x < j; x++) {
			fresh += (uint64_t)__builtin_popcountll(snap[x] & ~e->persisted[x]);
			e->persisted[x] |= snap[x];
		}
		i = j;
	}
	if (final) {
		r = cache_io_fsync(e->bitmap_fd);
		if (r < 0)
			return r;
	}
	return fresh > INT32_MAX ? INT32_MAX : (int)fresh;
}

int cache_entry_flush(struct cache_entry *e, bool final)
{
	int r;

	pthread_mutex_lock(&e->flush_lock);
	r = flush_locked(e, final);
	pthread_mutex_unlock(&e->flush_lock);
	return r;
}

/* Every block persisted (the flush that wrote the last bits synced their data first). */
static bool all_persisted(const struct cache_entry *e)
{
	uint64_t nbits = e->present.nbits;

	for (size_t i = 0; i < e->present.nwords; i++) {
		uint64_t want = (i == e->present.nwords - 1 && nbits % 64)
				    ? (UINT64_C(1) << (nbits % 64)) - 1
				    : ~UINT64_C(0);

		if ((e->persisted[i] & want) != want)
			return false;
	}
	return true;
}

int cache_entry_set_flags(struct cache_entry *e, uint32_t set, uint32_t clear)
{
	uint32_t old;
	int r = 0;

	pthread_mutex_lock(&e->flush_lock);
	old = e->hdr.flags;
	/* "complete" and "verified" speak of what is on disk: never on the basis of bytes that
	 * may only live in the page cache. */
	if ((set & (CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED)) && !all_persisted(e)) {
		r = -EAGAIN;
	} else {
		e->hdr.flags = (old | set) & ~clear;
		if (e->hdr.flags != old && (r = write_header(e)) < 0)
			e->hdr.flags = old;
	}
	pthread_mutex_unlock(&e->flush_lock);
	return r;
}

/* Write the words of the persisted bitmap that `cleared` changes (persisted &= ~cleared),
 * then sync them. Under flush_lock. */
static int unpersist(struct cache_entry *e, const uint64_t *cleared)
{
	size_t n = e->present.nwords;
	bool wrote = false;
	int r;

	for (size_t i = 0; i < n;) {
		uint64_t buf[512];
		size_t j = i, k = 0;

		if (!(e->persisted[i] & cleared[i])) {
			i++;
			continue;
		}
		while (j < n && k < ARRAY_SIZE(buf) && (e->persisted[j] & cleared[j])) {
			buf[k++] = htole64(e->persisted[j] & ~cleared[j]);
			j++;
		}
		r = cache_io_pwrite_full(e->bitmap_fd, buf, k * 8,
					 CACHE_BITMAP_OFFSET + (uint64_t)i * 8);
		if (r < 0)
			return r;
		for (size_t x = i; x < j; x++)
			e->persisted[x] &= ~cleared[x];
		wrote = true;
		i = j;
	}
	return wrote ? cache_io_fdatasync(e->bitmap_fd) : 0;
}

int cache_entry_evict(struct cache_entry *e, int (*clear)(void *ctx, uint64_t *cleared), void *ctx,
		      uint64_t *ret_blocks)
{
	_cleanup_free_ uint64_t *cleared = calloc(e->present.nwords, 8);
	uint64_t blocks = 0, run = 0, start = 0;
	int r;

	*ret_blocks = 0;
	if (!cleared)
		return -ENOMEM;
	/* flush_lock before store_lock, as a flush that drops unpersisted bits takes them. */
	pthread_mutex_lock(&e->flush_lock);
	pthread_rwlock_wrlock(&e->store_lock);
	r = cache_entry_broken(e) ? -ESTALE : clear(ctx, cleared);
	if (r >= 0)
		r = unpersist(e, cleared);
	/* Only now the data: a crash before this leaves data the bitmap does not claim. */
	for (uint64_t b = 0; r >= 0 && b <= e->present.nbits; b++) {
		bool gone = b < e->present.nbits && (cleared[b / 64] >> (b % 64) & 1);

		if (!run && b % 64 == 0 && b < e->present.nbits && !cleared[b / 64]) {
			b += 63; /* a word with nothing cleared */
			continue;
		}

		if (gone) {
			if (!run)
				start = b;
			run++;
			blocks++;
			continue;
		}
		if (!run)
			continue;
		/* A failed punch keeps the data: harmless, the bits are gone either way. */
		if (cache_io_fallocate(e->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       start * CACHE_BLOCK_SIZE,
				       MIN(run * CACHE_BLOCK_SIZE,
					   e->hdr.size - start * CACHE_BLOCK_SIZE)) < 0)
			log_debug("punching blocks %" PRIu64 "+%" PRIu64 " of %s: %m", start, run,
				  e->hdr.key);
		run = 0;
	}
	if (r >= 0 && blocks && (e->hdr.flags & (CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED))) {
		uint32_t old = e->hdr.flags;

		e->hdr.flags &= ~(uint32_t)(CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED);
		r = write_header(e);
		if (r < 0)
			e->hdr.flags = old;
	}
	pthread_rwlock_unlock(&e->store_lock);
	pthread_mutex_unlock(&e->flush_lock);
	*ret_blocks = blocks;
	return r;
}

static void note_aside(struct cache_entry *e)
{
	char *slash = strrchr(e->data_path, '/');

	e->aside = true;
	if (slash)
		snprintf(slash + 1, sizeof(e->data_path) - (size_t)(slash + 1 - e->data_path), "%s",
			 e->aside_name);
}

int cache_entry_mark_bad(struct cache_entry *e)
{
	static const char *const suffix[] = {"", ".bitmap", ".lock"};
	const char *key = e->hdr.key;
	char from[CACHE_KEY_LEN + 48], to[CACHE_KEY_LEN + 48];
	int r;

	r = cache_entry_set_flags(e, CACHE_FLAG_BAD, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED);
	if (r < 0)
		return r;
	if (e->aside)
		return 0;
	snprintf(e->aside_name, sizeof(e->aside_name), "%s.bad-%d", key, e->owner_pid);
	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		snprintf(from, sizeof(from), "%s%s", key, suffix[i]);
		snprintf(to, sizeof(to), "%s%s", e->aside_name, suffix[i]);
		r = cache_io_renameat(e->dirfd, from, to);
		if (r < 0 && r != -ENOENT)
			return r;
	}
	note_aside(e);
	return fsync_dir(e->dirfd);
}

int cache_entry_reload(struct cache_entry *e)
{
	uint8_t raw[CACHE_HEADER_SIZE];
	struct cache_header h;
	int r;

	r = util_pread_full(e->bitmap_fd, raw, sizeof(raw), 0);
	if (r < 0)
		return r;
	r = cache_header_decode(raw, sizeof(raw), &h);
	if (r < 0)
		return r;
	if (strcmp(h.key, e->hdr.key) != 0 || h.size != e->hdr.size)
		return -EUCLEAN;
	e->hdr.flags = h.flags;
	if ((h.flags & CACHE_FLAG_BAD) && !e->aside) {
		snprintf(e->aside_name, sizeof(e->aside_name), "%s.bad-%d", e->hdr.key,
			 e->owner_pid);
		note_aside(e);
	}
	/* What the file claims now: the process that changed the entry flushed bits and
	 * trimmed some away; a copy from before (the holder's, forked into a new worker) would
	 * have the next flush write trimmed bits back (claims of punched holes). */
	pthread_mutex_lock(&e->flush_lock);
	r = read_persisted(e);
	pthread_mutex_unlock(&e->flush_lock);
	return r;
}

void cache_entry_remove_aside(struct cache_entry *e)
{
	static const char *const suffix[] = {"", ".bitmap", ".lock"};
	char name[CACHE_KEY_LEN + 48];

	if (!e->aside)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		snprintf(name, sizeof(name), "%s%s", e->aside_name, suffix[i]);
		(void)unlinkat(e->dirfd, name, 0);
	}
}

int cache_entry_check(struct cache_entry *e, const char **ret_why)
{
	const char *name = e->aside ? e->aside_name : e->hdr.key;
	struct stat st, named;

	*ret_why = NULL;
	if (fstat(e->data_fd, &st) < 0)
		return -errno;
	if (st.st_nlink == 0)
		*ret_why = "deleted";
	else if ((uint64_t)st.st_size != e->hdr.size)
		*ret_why = "truncated or extended";
	else if (fstatat(e->dirfd, name, &named, AT_SYMLINK_NOFOLLOW) < 0 ||
		 !util_same_file(&named, &st))
		*ret_why = "renamed or replaced";
	else if (fstat(e->bitmap_fd, &st) < 0 || st.st_nlink == 0)
		*ret_why = "left without its bitmap (deleted)";
	return *ret_why ? -ESTALE : 0;
}

int cache_entry_mark_broken(struct cache_entry *e)
{
	__atomic_store_n(&e->sh->broken, 1, __ATOMIC_RELEASE);
	return cache_entry_mark_bad(e);
}

bool cache_entry_broken(const struct cache_entry *e)
{
	return __atomic_load_n(&e->sh->broken, __ATOMIC_ACQUIRE) != 0;
}

bool cache_entry_complete(const struct cache_entry *e)
{
	return cache_bitmap_count(&e->present) == e->present.nbits;
}

uint64_t cache_entry_present_bytes(const struct cache_entry *e)
{
	uint64_t n = cache_bitmap_count(&e->present);
	uint64_t bytes = n * CACHE_BLOCK_SIZE;

	/* The last block is short unless the size is block-aligned. */
	if (e->present.nbits && cache_bitmap_test(&e->present, e->present.nbits - 1))
		bytes -= e->present.nbits * CACHE_BLOCK_SIZE - e->hdr.size;
	return bytes;
}

void cache_entry_touch(struct cache_entry *e)
{
	if (futimens(e->bitmap_fd, NULL) < 0)
		log_debug("stamping the use of cache entry %s: %m", e->hdr.key);
}

int cache_entry_remove(int dirfd, const char *key, int lock_fd)
{
	static const char *const suffix[] = { ".bitmap", "", ".lock" };
	char name[CACHE_KEY_LEN + 16];

	if (!cache_key_valid(key))
		return -EINVAL;
	/* The lock must be the one the name has (cache_entry_lock checked it, and nobody
	 * renames a lock file it does not hold). */
	snprintf(name, sizeof(name), "%s.lock", key);
	if (!util_fd_is_at(lock_fd, dirfd, name))
		return -ESTALE;
	sweep_aside(dirfd, key);
	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		snprintf(name, sizeof(name), "%s%s", key, suffix[i]);
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			return -errno;
	}
	return fsync_dir(dirfd);
}

bool cache_entry_is_data_path(const char *path)
{
	static const char sub[] = "/sha256"; /* as cache_dir_open and cache_entry_open make it */
	const char *key = strrchr(path, '/');
	size_t dlen = key ? (size_t)(key - path) : 0;
	_cleanup_close_ int dfd = -1;
	struct cache_header hdr;
	char dir[PATH_MAX];

	if (dlen < strlen(sub) || dlen >= sizeof(dir) ||
	    memcmp(key - strlen(sub), sub, strlen(sub)) != 0)
		return false;
	memcpy(dir, path, dlen);
	dir[dlen] = 0;
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return dfd >= 0 && cache_entry_peek(dfd, key + 1, &hdr) == 0;
}

int cache_entry_peek(int dirfd, const char *key, struct cache_header *ret)
{
	char name[CACHE_KEY_LEN + 16];
	uint8_t raw[CACHE_HEADER_SIZE];
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	if (!cache_key_valid(key))
		return -EINVAL;
	snprintf(name, sizeof(name), "%s.bitmap", key);
	r = open_regular(dirfd, name, O_RDONLY, &fd, &st);
	if (r < 0)
		return r;
	r = util_pread_full(fd, raw, sizeof(raw), 0);
	if (r < 0)
		return r == -EIO ? -EUCLEAN : r;
	r = cache_header_decode(raw, sizeof(raw), ret);
	if (r < 0)
		return r;
	if (strcmp(ret->key, key) != 0)
		return -EUCLEAN;
	return 0;
}

int cache_entry_peek_present(int dirfd, const char *key, struct cache_header *hdr,
			     uint64_t *ret_bytes)
{
	char name[CACHE_KEY_LEN + 16];
	_cleanup_close_ int fd = -1;
	uint64_t words, blocks = 0, last, i = 0;
	bool last_present = false;
	uint64_t buf[1024];
	struct stat st;
	int r;

	r = cache_entry_peek(dirfd, key, hdr);
	if (r < 0)
		return r;
	if ((hdr->flags & CACHE_FLAG_COMPLETE) || !hdr->nblocks) {
		*ret_bytes = hdr->flags & CACHE_FLAG_COMPLETE ? hdr->size : 0;
		return 0;
	}
	snprintf(name, sizeof(name), "%s.bitmap", key);
	r = open_regular(dirfd, name, O_RDONLY, &fd, &st);
	if (r < 0)
		return r;
	words = cache_bitmap_bytes(hdr->size) / 8;
	last = hdr->nblocks - 1;
	while (i < words) {
		size_t n = (size_t)MIN(words - i, (uint64_t)ARRAY_SIZE(buf));

		r = util_pread_full(fd, buf, n * 8, CACHE_BITMAP_OFFSET + i * 8);
		if (r < 0)
			return r == -EIO ? -EUCLEAN : r;
		for (size_t k = 0; k < n; k++) {
			uint64_t w = buf[k];

			if (i + k == last / 64) {
				last_present = (w >> (last % 64)) & 1;
				w &= last % 64 == 63 ? ~0ULL : (2ULL << (last % 64)) - 1;
			} else if (i + k > last / 64) {
				w = 0; /* bits past the blob's end mean nothing */
			}
			blocks += (uint64_t)__builtin_popcountll(w);
		}
		i += n;
	}
	/* The last block may be short: counted at its length. */
	*ret_bytes = blocks * CACHE_BLOCK_SIZE;
	if (last_present)
		*ret_bytes -= hdr->nblocks * (uint64_t)CACHE_BLOCK_SIZE - hdr->size;
	return 0;
}

const char *cache_fs_name(int fd, char *buf, size_t len)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} names[] = {
	    {0xEF53, "ext4"},	   {0x58465342, "xfs"},	      {0x9123683E, "btrfs"},
	    {0x01021994, "tmpfs"}, {0x794c7630, "overlayfs"}, {0x858458f6, "ramfs"},
	    {0x6969, "nfs"},	   {0x65735546, "fuse"},      {0x2fc12fc1, "zfs"},
	    {0xF2F52010, "f2fs"},  {0x73717368, "squashfs"},  {0xE0F5E1E2, "erofs"},
	    {0xFF534D42, "cifs"},  {0x01021997, "9p"},
	};
	struct statfs sfs;

	if (fstatfs(fd, &sfs) < 0) {
		snprintf(buf, len, "unknown");
		return buf;
	}
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if ((unsigned long)sfs.f_type == names[i].magic) {
			snprintf(buf, len, "%s", names[i].name);
			return buf;
		}
	snprintf(buf, len, "0x%lx", (unsigned long)sfs.f_type);
	return buf;
}
