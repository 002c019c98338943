// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Bearer tokens shared between processes (DESIGN.md, credentials): RUN_DIR/tokens/, a
 * root-owned 0700 directory of small root-only 0600 files, one per token. A file is named by
 * the sha256 of what the token is for -- the host, the token server (realm and service), the
 * scope and the identity of the credentials that obtained it (itself a hash, so that other
 * credentials, or none, never share a token) -- and holds the token with its absolute expiry
 * (its mtime is that expiry too, so a sweep needs no parsing). Never a password or a Basic
 * header. A file that is not ours (owner, mode, type), too big, malformed or for another key
 * is a miss, never an error: the caller asks the token server as it would without the cache.
 * Written atomically (temp file + rename); each write sweeps out the expired files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/macro.h"
#include "util/sha256.h"
#include "util/strutil.h"

#define TOKEN_DIR "tokens"
#define TOKEN_FILE_VERSION 1
#define TOKEN_FILES_MAX 256  /* files kept in the directory; more are swept out */
#define TOKEN_STALE_S 60     /* a file expired (or a temp file left) this long ago is swept */

int oci_token_file_parse(const void *buf, size_t len, const char *host, const char *scope,
			 char **ret_token, int64_t *ret_expires, uint64_t *ret_lifetime_s)
{
	_cleanup_json_ json_t *j = NULL;
	const char *t = NULL, *h = NULL, *s = NULL;
	json_t *v, *e, *l;
	int r;

	r = util_json_parse(buf, len, OCI_TOKEN_FILE_MAX, &j);
	if (r < 0)
		return r;
	if (!json_is_object(j))
		return -EBADMSG;
	v = json_object_get(j, "v");
	e = json_object_get(j, "expires");
	l = json_object_get(j, "lifetime");
	if (!json_is_integer(v) || json_integer_value(v) != TOKEN_FILE_VERSION ||
	    !json_is_integer(e) || json_integer_value(e) <= 0 || !json_is_integer(l) ||
	    json_integer_value(l) <= 0 ||
	    (uint64_t)json_integer_value(l) > OCI_TOKEN_LIFETIME_MAX)
		return -EBADMSG;
	if (util_json_get_string(j, "host", &h) < 0 || util_json_get_string(j, "scope", &s) < 0 ||
	    util_json_get_string(j, "token", &t) < 0)
		return -EBADMSG;
	/* Another key's file under this name: a hash collision, or a file put there by hand. */
	if (strcmp(h, host) != 0 || strcmp(s, scope) != 0)
		return -ESTALE;
	if (!*t || strlen(t) > OCI_TOKEN_MAX || !oci_token_chars_ok(t))
		return -EBADMSG;
	*ret_token = strdup(t);
	if (!*ret_token)
		return -ENOMEM;
	*ret_expires = (int64_t)json_integer_value(e);
	*ret_lifetime_s = (uint64_t)json_integer_value(l);
	return 0;
}

int oci_token_file_format(const char *host, const char *scope, const char *token, int64_t expires,
			  uint64_t lifetime_s, char **ret)
{
	_cleanup_json_ json_t *j = NULL;
	char *s;

	j = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I}", "v", TOKEN_FILE_VERSION, "host", host,
		      "scope", scope, "token", token, "expires", (json_int_t)expires, "lifetime",
		      (json_int_t)lifetime_s);
	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_COMPACT);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* The file name of a key: 64 hex characters of its sha256. */
static int key_name(const struct oci_token_key *k, char out[UTIL_SHA256_HEX_LEN + 1])
{
	const char *parts[] = { "lazyerofs-token-v1", k->host, k->realm, k->service, k->scope,
				k->identity };
	struct util_sha256 *s = NULL;
	uint8_t d[UTIL_SHA256_LEN];
	int r;

	r = util_sha256_new(&s);
	for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(parts); i++)
		r = util_sha256_update(s, parts[i], strlen(parts[i]) + 1); /* with its NUL */
	if (r >= 0)
		r = util_sha256_final(s, d);
	util_sha256_free(s);
	if (r < 0)
		return r;
	util_sha256_hex(d, out);
	return 0;
}

/* RUN_DIR/tokens, made if missing; only root's, only when we are root. -errno otherwise. */
static int open_dir(const char *run_dir, int *ret_fd)
{
	_cleanup_close_ int run_fd = -1;
	_cleanup_free_ char *path = NULL;
	int r;

	if (!run_dir || run_dir[0] != '/' || geteuid() != 0)
		return -ENOENT;
	r = util_open_existing_private_dir(run_dir, O_PATH, &run_fd);
	if (r < 0)
		return r;
	if (mkdirat(run_fd, TOKEN_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (asprintf(&path, "%s/" TOKEN_DIR, run_dir) < 0)
		return -ENOMEM;
	return util_open_existing_private_dir(path, O_RDONLY, ret_fd);
}

/* The directory and the name of k's file in it. */
static int open_key(const char *run_dir, const struct oci_token_key *k, int *ret_dfd,
		    char name[UTIL_SHA256_HEX_LEN + 1])
{
	int r = key_name(k, name);

	return r < 0 ? r : open_dir(run_dir, ret_dfd);
}

int oci_token_cache_load(const char *run_dir, const struct oci_token_key *k, time_t now,
			 char **ret_token, uint64_t *ret_remaining_s, uint64_t *ret_lifetime_s)
{
	_cleanup_close_ int dfd = -1, fd = -1;
	char name[UTIL_SHA256_HEX_LEN + 1];
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int64_t expires;
	int r;

	r = open_key(run_dir, k, &dfd, name);
	if (r < 0)
		return r;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	/* Only a file root wrote for root alone is trusted to hold a token. */
	if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0077) || st.st_nlink != 1)
		return -EPERM;
	if ((uint64_t)st.st_size > OCI_TOKEN_FILE_MAX)
		return -EFBIG;
	r = util_read_fd(fd, OCI_TOKEN_FILE_MAX, &buf, &len);
	if (r < 0)
		return r;
	r = oci_token_file_parse(buf, len, k->host, k->scope, ret_token, &expires, ret_lifetime_s);
	util_free_secret_buf(buf, len);
	if (r < 0)
		return r;
	/* Expired, or further away than the token lived: the clock went back, or a forgery. */
	if (expires <= (int64_t)now || (uint64_t)(expires - now) > *ret_lifetime_s) {
		util_free_secret_buf(*ret_token, strlen(*ret_token));
		*ret_token = NULL;
		return -ESTALE;
	}
	*ret_remaining_s = (uint64_t)(expires - now);
	return 0;
}

/* Remove the files that expired TOKEN_STALE_S ago (their mtime is their expiry), temp files
 * left as long, and any beyond TOKEN_FILES_MAX but the one just written. */
static void sweep(int dfd, const char *keep, time_t now)
{
	_cleanup_close_ int fd = -1;
	DIR *d;
	size_t kept = 0;

	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd)))
		return;
	fd = -1; /* owned by d */
	for (struct dirent *de; (de = readdir(d));) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    S_ISDIR(st.st_mode) || !strcmp(de->d_name, keep))
			continue;
		if (st.st_mtime + TOKEN_STALE_S < now || ++kept > TOKEN_FILES_MAX)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

int oci_token_cache_store(const char *run_dir, const struct oci_token_key *k, const char *token,
			  time_t now, uint64_t lifetime_s)
{
	_cleanup_close_ int dfd = -1;
	char name[UTIL_SHA256_HEX_LEN + 1];
	char *text = NULL;
	time_t expires = now + (time_t)lifetime_s;
	int r;

	if (lifetime_s == 0 || lifetime_s > OCI_TOKEN_LIFETIME_MAX)
		return -EINVAL;
	r = open_key(run_dir, k, &dfd, name);
	if (r < 0)
		return r;
	r = oci_token_file_format(k->host, k->scope, token, expires, lifetime_s, &text);
	if (r < 0)
		return r;
	r = util_write_file_atomic(dfd, name, text, strlen(text), 0600);
	util_free_secret_buf(text, strlen(text));
	if (r < 0)
		return r;
	{
		const struct timespec ts[2] = { { .tv_sec = now }, { .tv_sec = expires } };

		/* Without it the file just looks older to the sweep: removed sooner, no harm. */
		(void)utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
	}
	sweep(dfd, name, now);
	return 0;
}

void oci_token_cache_drop(const char *run_dir, const struct oci_token_key *k)
{
	_cleanup_close_ int dfd = -1;
	char name[UTIL_SHA256_HEX_LEN + 1];

	if (open_key(run_dir, k, &dfd, name) < 0)
		return;
	(void)unlinkat(dfd, name, 0);
}
