// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * From a source to one blob and its cache entry, for `mount` and `fetch` alike: the cache
 * directory's filesystem checked, the reference resolved (offline when a complete entry
 * answers for a digest-pinned source), the choice remembered for later offline mounts, and
 * the entry named.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "erofs/format.h"
#include "mount/mount.h"
#include "mount/offline.h"
#include "mount/resolve.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/config.h"
#include "util/json.h"
#include "util/log.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif
#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

/* "what 'source': STATUS CODE: message" from what the registry client recorded in err; just
 * the message when it names the source or its registry already (the client's messages say
 * "registry HOST: manifest REPOSITORY:TAG: ..."), so that the line names the image once. */
static int registry_error(struct util_error *err, const char *what, const struct oci_ref *ref,
			  const char *source, int r)
{
	char status[96] = "";

	if (!err)
		return r;
	err->code = r;
	if (err->http_status > 0) {
		char num[16];

		snprintf(num, sizeof(num), "%d", err->http_status);
		/* Do not repeat what the registry client already put in its message. */
		if (!strstr(err->message, num)) {
			if (err->registry_code[0] && !strstr(err->message, err->registry_code))
				snprintf(status, sizeof(status), "%d %s", err->http_status,
					 err->registry_code);
			else
				snprintf(status, sizeof(status), "%d", err->http_status);
		}
	}
	if (!err->message[0])
		snprintf(err->message, sizeof(err->message), "%s", strerror(-r));
	if (status[0])
		util_err_prefix(err, "%s '%s': %s", what, source, status);
	else if (!strstr(err->message, source) &&
		 (ref->is_url || !strstr(err->message, ref->registry)))
		util_err_prefix(err, "%s '%s'", what, source);
	return r;
}

/* Fail early and clearly on filesystems that refuse pre-content marks (DESIGN fact 11); the
 * daemon's own mark attempt is the authoritative check for anything else. */
/* The directories are opened without following a last symbolic link (they must be root's,
 * 0700, and stay where they are): one, even named with a trailing slash, is refused in words. */
static int refuse_symlink(const char *what, const char *path, struct util_error *err)
{
	_cleanup_free_ char *bare = strdup(path), *target = NULL;
	size_t n;
	struct stat st;

	if (!bare)
		return util_err_set(err, -ENOMEM, "out of memory");
	for (n = strlen(bare); n > 1 && bare[n - 1] == '/'; n--)
		bare[n - 1] = 0;
	if (lstat(bare, &st) < 0 || !S_ISLNK(st.st_mode))
		return 0;
	target = realpath(bare, NULL);
	return util_err_set(
	    err, -ELOOP, "%s directory '%s' is a symbolic link%s%s%s; give the directory itself",
	    what, path, target ? " (to '" : "", target ? target : "", target ? "')" : "");
}

/* One of the two directories' paths (what: "cache" or "run"). */
static int check_dir_path(const char *what, const char *path, struct util_error *err)
{
	if (path[0] != '/')
		return util_err_set(err, -EINVAL,
				    "%s directory '%s' must be an absolute path (from "
				    "LAZYEROFS_%s_DIR?)",
				    what, path, strcmp(what, "run") ? "CACHE" : "RUN");
	if (!util_json_text_ok(path))
		return util_err_set(err, -EINVAL,
				    "%s directory '%s' is not valid UTF-8: it goes into state "
				    "files and control messages; choose another",
				    what, path);
	return refuse_symlink(what, path, err);
}

int mount_check_dir_paths(const char *cache_dir, const char *run_dir, struct util_error *err)
{
	int r = check_dir_path("cache", cache_dir, err);

	return r < 0 ? r : check_dir_path("run", run_dir, err);
}

int mount_find_run_dir(const char *run_dir, int flags, int *ret_fd, struct util_error *err)
{
	int r = check_dir_path("run", run_dir, err);

	if (r < 0)
		return r;
	r = util_open_existing_private_dir(run_dir, flags, ret_fd);
	if (r == -ENOENT)
		return 0; /* (no mount made one yet) */
	if (r < 0)
		return util_err_set(err, r, "run directory '%s': %s%s", run_dir,
				    r == -EPERM ? "must be owned by root with mode 0700"
						: strerror(-r),
				    r == -EACCES ? " (run as root)" : "");
	return 1;
}

int mount_check_cache_fs(const char *cache_dir, struct util_error *err)
{
	_cleanup_free_ char *up = strdup(cache_dir);
	_cleanup_close_ int fd = -1;
	struct statfs sfs;
	const char *name = NULL;
	char *slash;
	int r;

	/* The filesystem it is (or would be made) on, before making it: a refused cache
	 * directory is not left behind. */
	while (up && statfs(up, &sfs) < 0 && errno == ENOENT && (slash = strrchr(up, '/'))) {
		if (slash == up)
			up[1] = 0; /* "/" */
		else
			*slash = 0;
	}
	if (up && statfs(up, &sfs) == 0 &&
	    ((unsigned long)sfs.f_type == (unsigned long)TMPFS_MAGIC ||
	     (unsigned long)sfs.f_type == (unsigned long)RAMFS_MAGIC ||
	     (unsigned long)sfs.f_type == (unsigned long)OVERLAYFS_SUPER_MAGIC))
		goto named;
	r = util_open_private_dir(cache_dir, &fd);
	if (r < 0) {
		if (r == -EPERM)
			util_err_set(err, r,
				     "cache directory '%s' must be owned by root with mode 0700",
				     cache_dir);
		else
			util_err_set(err, r, "cache directory '%s': %s", cache_dir, strerror(-r));
		return r;
	}
	if (fstatfs(fd, &sfs) < 0) {
		r = -errno;
		return util_err_set(err, r, "cache directory '%s': %s", cache_dir, strerror(-r));
	}
named:
	if ((unsigned long)sfs.f_type == (unsigned long)TMPFS_MAGIC)
		name = "tmpfs";
	else if ((unsigned long)sfs.f_type == (unsigned long)RAMFS_MAGIC)
		name = "ramfs";
	else if ((unsigned long)sfs.f_type == (unsigned long)OVERLAYFS_SUPER_MAGIC)
		name = "overlayfs";
	if (name) {
		return util_err_set(
		    err, -EOPNOTSUPP,
		    "cache directory '%s' is on %s, which refuses fanotify pre-content marks; "
		    "use cache=DIR (or LAZYEROFS_CACHE_DIR) on ext4, xfs or btrfs",
		    cache_dir, name);
	}
	return 0;
}

int mount_open_run_dir(const char *run_dir, int *ret_fd, struct util_error *err)
{
	int r = util_open_private_dir(run_dir, ret_fd);

	if (r < 0)
		return util_err_set(err, r, "run directory '%s': %s", run_dir,
				    r == -EPERM ? "must be owned by root with mode 0700"
						: strerror(-r));
	return 0;
}

const char *mount_cache_dir_of(const char *explicit_dir, const struct mount_opts *o)
{
	return explicit_dir ? explicit_dir : o->cache_dir ? o->cache_dir : mount_env_cache_dir();
}

int mount_parse_source(const char *source, const struct oci_options *o, struct oci_ref **ret_ref,
		       char **ret_public, int *ret_class, struct util_error *err)
{
	struct oci_ref *ref = NULL;
	int r;

	util_err_clear(err);
	r = oci_ref_parse(source, &ref, err);
	if (r < 0) {
		if (r != -ENOMEM)
			*ret_class = MOUNT_FAIL_USAGE;
		/* The reference parser names the source and its bad part itself. */
		if (!util_err_has_msg(err))
			util_err_set(err, r, "invalid source '%s': %s", source, strerror(-r));
		return r;
	}
	if (o && oci_options_check_source(o, ref->is_url, err) < 0) {
		*ret_class = MOUNT_FAIL_USAGE;
		oci_ref_free(ref);
		return -EINVAL;
	}
	*ret_public = mount_public_source(source, ref->is_url);
	if (!*ret_public) {
		oci_ref_free(ref);
		return util_err_set(err, -ENOMEM, "out of memory");
	}
	*ret_ref = ref;
	return 0;
}

void mount_resolved_done(struct mount_resolved *r)
{
	oci_client_free(r->client);
	r->client = NULL;
}

int mount_resolve(const struct oci_ref *ref, const struct oci_options *o, const char *cache_dir,
		  const char *source, struct mount_resolved *ret, struct util_error *err)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	r = oci_global_init();
	if (r < 0)
		return util_err_set(err, r, "initialising the HTTP client: %s", strerror(-r));
	/* A digest-pinned source whose entry is complete needs no registry at all. */
	ret->offline = mount_offline_lookup(cache_dir, ref, o, &ret->blob) > 0;
	if (ret->offline) {
		/* An offline weak source may be served from the TLS entry of its digest. */
		ret->weak = strcmp(ret->blob.cache_key, ret->blob.digest + 7) != 0;
		return 0;
	}
	r = oci_client_new(ref, o, &ret->client);
	if (r < 0)
		return util_err_set(err, r, "setting up the registry client for '%s': %s", source,
				    strerror(-r));
	util_err_clear(err);
	r = oci_resolve(ret->client, &ret->blob, err);
	if (r < 0) {
		mount_resolved_done(ret);
		return registry_error(err, "resolving", ref, source, r);
	}
	/* (an empty object, a placeholder: said here, not as a daemon that cannot start) */
	if (ret->blob.size < EROFS_SB_OFFSET + EROFS_SB_BASE_SIZE) {
		mount_resolved_done(ret);
		return util_err_set(err, -EMEDIUMTYPE,
				    "'%s' is not an EROFS image: %llu bytes, too small for a "
				    "superblock",
				    source, (unsigned long long)ret->blob.size);
	}
	r = mount_offline_record(cache_dir, ref, o, &ret->blob);
	if (r < 0)
		log_debug("remembering the blob of '%s': %s", source, strerror(-r));
	/* Bytes fetched without TLS go to an entry of their own. */
	ret->weak = mount_source_weak(ref, o);
	if (ret->weak) {
		r = mount_weak_key(ret->blob.cache_key, ret->blob.cache_key);
		if (r < 0) {
			mount_resolved_done(ret);
			return util_err_set(err, r, "naming the cache entry: %s", strerror(-r));
		}
	}
	return 0;
}

const char *mount_transport(const struct mount_resolved *r)
{
	/* Bytes without verified TLS say so first. Over TLS, a tag only a mirror could resolve:
	 * the image is that mirror's word, even once its blob matches the digest the mirror
	 * named. */
	return r->weak ? "insecure" : r->blob.resolved_by_mirror ? "mirror" : "tls";
}

int mount_pull_options(const struct oci_options *given, const struct oci_ref *ref,
		       const char *run_dir, struct oci_options *ret, char **ret_metrics_dir,
		       struct util_error *err)
{
	struct util_config cfg;
	int r;

	r = oci_options_copy(ret, given);
	if (r < 0)
		return util_err_set(err, r, "out of memory");
	if (run_dir && !ret->run_dir && !(ret->run_dir = strdup(run_dir)))
		return util_err_set(err, -ENOMEM, "out of memory");
	r = util_config_load(util_config_path(), &cfg, err);
	if (r < 0)
		return r;
	r = oci_options_apply_config(ret, ref, &cfg, err);
	if (r >= 0 && ret_metrics_dir) {
		*ret_metrics_dir = cfg.metrics_dir; /* taken */
		cfg.metrics_dir = NULL;
	}
	util_config_free(&cfg);
	if (r < 0)
		return r;
	return oci_options_apply_hosts(ret, ref, oci_certs_d_path(), err);
}

int mount_push_options(const struct oci_options *given, const struct oci_ref *ref,
		       const char *run_dir, struct oci_options *ret, struct util_error *err)
{
	int r = mount_pull_options(given, ref, run_dir, ret, NULL, err);

	if (r < 0)
		return r;
	for (size_t i = 0; i < ret->n_mirrors; i++)
		oci_mirror_free(&ret->mirrors[i]);
	free(ret->mirrors);
	ret->mirrors = NULL;
	ret->n_mirrors = 0;
	return 0;
}

int mount_probe_image(const struct erofs_io *io, const struct util_error *ferr,
		      struct erofs_info *ret, struct util_error *err)
{
	struct util_error werr = UTIL_ERROR_INIT;
	int r = erofs_probe(io, ret, &werr);

	if (r >= 0)
		return 0;
	if (ferr && util_err_has_msg(ferr))
		return util_err_set(err, r, "reading the image's superblock: %s", ferr->message);
	if (r == -EIO || r == -EAGAIN)
		return util_err_set(err, r, "reading the image's superblock: %s%s%s", strerror(-r),
				    werr.message[0] ? ": " : "", werr.message);
	return util_err_set(err, r, "not a usable EROFS image: %s", util_err_msg(&werr, r));
}

void mount_err_name_image(struct util_error *err, const char *source, const char *digest)
{
	if (digest && digest[0])
		util_err_prefix(err, "'%s' (blob %s)", source, digest);
	else
		util_err_prefix(err, "'%s'", source);
}
