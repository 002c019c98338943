// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The record that lets a later `lazyerofs push` continue an interrupted upload: one file per
 * (registry, repository, blob) in <cache-dir>/uploads (root-only, like the rest of the cache
 * directory), written atomically 0600 each time the session moves, removed when the blob is
 * stored. It holds the registry's session URL and no credentials. A lock file per record
 * keeps two pushes of the same blob from driving one session at once. Records are a
 * convenience: when the directory cannot be used (not root, a bad directory), a push works
 * as before and an interruption starts it over.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/sha256.h"

#define UPLOADS_DIR "uploads"
#define RECORD_SUFFIX ".upload"
#define LOCK_SUFFIX ".lock"
#define NAME_LEN (UTIL_SHA256_HEX_LEN + 8)

/* The file names of a record and of its lock, from the hex of its key (the first
 * UTIL_SHA256_HEX_LEN characters of hex). */
static void file_names(const char *hex, char rec[NAME_LEN], char lock[NAME_LEN])
{
	if (rec)
		snprintf(rec, NAME_LEN, "%.*s" RECORD_SUFFIX, UTIL_SHA256_HEX_LEN, hex);
	if (lock)
		snprintf(lock, NAME_LEN, "%.*s" LOCK_SUFFIX, UTIL_SHA256_HEX_LEN, hex);
}

void cli_upload_record_init(struct cli_upload_record *u)
{
	memset(u, 0, sizeof(*u));
	u->dirfd = -1;
	u->lockfd = -1;
}

int cli_upload_record_open(struct cli_upload_record *u, const char *registry,
			   const char *repository, const char *digest, uint64_t size)
{
	char path[PATH_MAX], hex[UTIL_SHA256_HEX_LEN + 1], lockname[NAME_LEN];
	_cleanup_free_ char *key = NULL, *data = NULL;
	_cleanup_close_ int dirfd = -1;
	struct oci_upload_record rec;
	const char *cache_dir = mount_env_cache_dir();
	size_t len;
	int r;

	if (snprintf(u->rec.registry, sizeof(u->rec.registry), "%s", registry) >=
		(int)sizeof(u->rec.registry) ||
	    snprintf(u->rec.repository, sizeof(u->rec.repository), "%s", repository) >=
		(int)sizeof(u->rec.repository))
		return -ENAMETOOLONG;
	memcpy(u->rec.digest, digest, sizeof(u->rec.digest));
	u->rec.size = size;
	if (asprintf(&key, "%s\n%s\n%s", registry, repository, digest) < 0)
		return -ENOMEM;
	r = util_sha256_buf_hex(key, strlen(key), hex);
	if (r < 0)
		return r;
	file_names(hex, u->name, lockname);
	if (snprintf(path, sizeof(path), "%s/" UPLOADS_DIR, cache_dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if (cache_dir[0] != '/')
		return -EINVAL;
	r = util_open_private_dir(cache_dir, &dirfd);
	if (r >= 0) {
		close(dirfd);
		dirfd = -1;
		r = util_open_private_dir(path, &dirfd);
	}
	if (r < 0) {
		if (geteuid() == 0)
			log_warning(
			    "push: cannot keep an upload record in '%s': %s; an interrupted "
			    "push will start over",
			    path, strerror(-r));
		else
			log_debug("push: no upload record (%s: %s)", path, strerror(-r));
		return 0;
	}
	/* the lock goes with the record when the blob is stored: util_lock_at copes */
	r = util_lock_at(dirfd, lockname, false, &u->lockfd);
	if (r == -EWOULDBLOCK) {
		log_info("push: another push of %s to %s is running; this one keeps no record",
			 digest, repository);
		return 0;
	}
	if (r < 0) {
		log_warning("push: cannot lock the upload record in '%s': %s", path, strerror(-r));
		return 0;
	}
	u->dirfd = TAKE_FD(dirfd);
	r = util_read_file(u->dirfd, u->name, OCI_UPLOAD_RECORD_MAX, 1, &data, &len);
	if (r == -ENOENT)
		return 0;
	if (r >= 0)
		r = oci_upload_record_parse(data, len, &rec);
	if (r >= 0 &&
	    (strcmp(rec.registry, u->rec.registry) || strcmp(rec.repository, repository) ||
	     strcmp(rec.digest, digest) || rec.size != size))
		r = -ESTALE;
	if (r < 0) {
		log_warning("push: ignoring the upload record '%s/%s': %s", path, u->name,
			    r == -ESTALE ? "it is of another upload" : strerror(-r));
		return 0;
	}
	u->rec = rec;
	u->have = true;
	return 0;
}

const char *cli_upload_record_url(const struct cli_upload_record *u)
{
	return u->have ? u->rec.url : NULL;
}

void cli_upload_record_save(void *ctx, const char *url, uint64_t offset)
{
	struct cli_upload_record *u = ctx;
	_cleanup_free_ char *data = NULL;
	int r;

	if (u->dirfd < 0)
		return;
	if (strlen(url) >= sizeof(u->rec.url)) {
		log_debug("push: the session URL is too long to record");
		return;
	}
	snprintf(u->rec.url, sizeof(u->rec.url), "%s", url);
	u->rec.offset = offset;
	r = oci_upload_record_format(&u->rec, &data);
	if (r >= 0)
		r = util_write_file_atomic(u->dirfd, u->name, data, strlen(data), 0600);
	if (r < 0)
		log_debug("push: writing the upload record: %s", strerror(-r));
}

void cli_upload_record_done(struct cli_upload_record *u)
{
	char lockname[NAME_LEN];

	if (u->dirfd < 0)
		return;
	if (unlinkat(u->dirfd, u->name, 0) < 0 && errno != ENOENT)
		log_debug("push: removing the upload record: %m");
	/* the lock goes too, while held (util_lock_at checks it locked the file that is there) */
	file_names(u->name, NULL, lockname);
	(void)unlinkat(u->dirfd, lockname, 0);
}

void cli_upload_record_close(struct cli_upload_record *u)
{
	if (u->lockfd >= 0)
		close(u->lockfd);
	if (u->dirfd >= 0)
		close(u->dirfd);
	u->lockfd = u->dirfd = -1;
}

/* One stale record (or a lock left without one) of the uploads directory, if no push holds
 * its lock: removed, lock last (util_lock_at copes with a lock that goes while held). */
static bool sweep_one(int dirfd, const char *hex, bool has_record, bool dry_run)
{
	char rec[NAME_LEN], lock[NAME_LEN];
	_cleanup_close_ int fd = -1;

	file_names(hex, rec, lock);
	if (dry_run)
		return has_record; /* (unless a push holds it now) */
	if (util_lock_at(dirfd, lock, false, &fd) < 0)
		return false; /* a push is on it (or the lock cannot be made: leave it) */
	if (has_record && unlinkat(dirfd, rec, 0) < 0 && errno != ENOENT)
		return false;
	(void)unlinkat(dirfd, lock, 0);
	return has_record;
}

int cli_upload_records_sweep(const char *cache_dir, bool dry_run, size_t *ret_n)
{
	char path[PATH_MAX];
	_cleanup_close_ int root = -1;
	int dirfd = -1, r;
	time_t now = time(NULL);
	struct dirent *de;
	DIR *dir;

	*ret_n = 0;
	/* (checked as a mount would make it; not made: nothing to sweep in a cache not made) */
	r = util_open_existing_private_dir(cache_dir, O_PATH, &root);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	if (snprintf(path, sizeof(path), "%s/" UPLOADS_DIR, cache_dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	r = util_open_existing_private_dir(path, O_RDONLY, &dirfd);
	if (r < 0)
		return r == -ENOENT ? 0 : r;
	dir = fdopendir(dirfd);
	if (!dir) {
		r = -errno;
		close(dirfd);
		return r;
	}
	while ((de = readdir(dir))) {
		char hex[UTIL_SHA256_HEX_LEN + 1], other[NAME_LEN];
		size_t len = strlen(de->d_name);
		bool ours = len > UTIL_SHA256_HEX_LEN;
		bool record = ours && !strcmp(de->d_name + UTIL_SHA256_HEX_LEN, RECORD_SUFFIX);
		bool lock = ours && !strcmp(de->d_name + UTIL_SHA256_HEX_LEN, LOCK_SUFFIX);
		struct stat st;

		if ((!record && !lock) || fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		snprintf(hex, sizeof(hex), "%.*s", UTIL_SHA256_HEX_LEN, de->d_name);
		if (lock) {
			/* a lock whose record is gone (a push that ended without one) */
			file_names(hex, other, NULL);
			if (faccessat(dirfd, other, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
				(void)sweep_one(dirfd, hex, false, dry_run);
			continue;
		}
		if (st.st_mtime > now - CLI_UPLOAD_RECORD_MAX_AGE_S)
			continue;
		if (sweep_one(dirfd, hex, true, dry_run)) {
			(*ret_n)++;
			printf("%s the upload record %s/%s (an interrupted push, last moved %lld "
			       "days ago)\n",
			       dry_run ? "would remove" : "removed", path, de->d_name,
			       (long long)((now - st.st_mtime) / 86400));
		}
	}
	closedir(dir);
	return 0;
}
