/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * From a source to one blob and its cache entry (internal to the mount module; `mount` and
 * `fetch` share it): the cache directory checked, the reference resolved (offline from a
 * complete entry when the source names a digest, else through the registry), the blob
 * remembered for later offline use, and the entry named (bytes without TLS get their own).
 */
#ifndef LAZYEROFS_MOUNT_RESOLVE_H
#define LAZYEROFS_MOUNT_RESOLVE_H

#include <stdbool.h>

#include "erofs/erofs.h"
#include "mount/mount.h"
#include "oci/oci.h"
#include "util/error.h"

struct mount_resolved {
	struct oci_blob blob;	   /* blob.cache_key names the entry to use */
	struct oci_client *client; /* the registry client; NULL when offline */
	bool offline;		   /* a complete entry answered: no registry was asked */
	bool weak;		   /* the entry holds bytes fetched without TLS */
};

/* The options of a pull: the given -o ones, then what lazyerofs's configuration file and
 * containerd's hosts.toml add for ref (mirrors in that order), and the run directory whose
 * tokens/ the registry clients share bearer tokens in (NULL: none); and from the same file,
 * the daemon's metrics-dir (*ret_metrics_dir, NULL when unset; free it). One line in err. */
int mount_pull_options(const struct oci_options *given, const struct oci_ref *ref,
		       const char *run_dir, struct oci_options *ret, char **ret_metrics_dir,
		       struct util_error *err);
/* The same for a push: the proxy, no-proxy list and the registry's own server (its CA,
 * headers, proxy) from those files, no mirror (a push goes to the registry). */
int mount_push_options(const struct oci_options *given, const struct oci_ref *ref,
		       const char *run_dir, struct oci_options *ret, struct util_error *err);

/* How the entry's bytes come, as the state file and the daemon's metrics say it: "mirror"
 * (the tag was resolved by a mirror alone), "insecure" (no verified TLS) or "tls". */
const char *mount_transport(const struct mount_resolved *r);

/* Resolve ref (source: the text to name in messages). -errno with one line in err. */
int mount_resolve(const struct oci_ref *ref, const struct oci_options *o, const char *cache_dir,
		  const char *source, struct mount_resolved *ret, struct util_error *err);
void mount_resolved_done(struct mount_resolved *r);

/* The cache and run directories must be absolute paths in UTF-8 (-EINVAL and why not), and
 * not symbolic links (-ELOOP). */
int mount_check_dir_paths(const char *cache_dir, const char *run_dir, struct util_error *err);
/* The run directory opened (util_open_existing_private_dir's flags) into *ret_fd: 1; 0 when
 * there is none (no mount made it yet); -errno with one line in err when it is no usable run
 * directory (not absolute, a symbolic link, a file, not root's 0700). */
int mount_find_run_dir(const char *run_dir, int flags, int *ret_fd, struct util_error *err);
/* The cache directory exists (or is created) root-owned 0700 on a filesystem that takes
 * pre-content marks: fail early and clearly on tmpfs, ramfs and overlayfs (DESIGN fact 11). */
int mount_check_cache_fs(const char *cache_dir, struct util_error *err);

/* The run directory, created or checked (root-owned, 0700); one line in err. */
int mount_open_run_dir(const char *run_dir, int *ret_fd, struct util_error *err);

/* The cache directory of a request: explicit (may be NULL), else cache=, else the
 * environment's. */
const char *mount_cache_dir_of(const char *explicit_dir, const struct mount_opts *o);

/* The reference parsed, and the text of it that is safe to show and record
 * (mount_public_source). One line in err; *ret_class MOUNT_FAIL_USAGE when it is no
 * reference or the options (o) do not fit it. */
int mount_parse_source(const char *source, const struct oci_options *o, struct oci_ref **ret_ref,
		       char **ret_public, int *ret_class, struct util_error *err);

/* Read and check the image's superblock through io, once fetching it is done (ferr: what
 * that said, or nothing). One line in err: why it could not be read, or why it is no usable
 * EROFS image. */
int mount_probe_image(const struct erofs_io *io, const struct util_error *ferr,
		      struct erofs_info *ret, struct util_error *err);
/* Name the image in err's message, which is about it: "'SOURCE' (blob DIGEST): ...". */
void mount_err_name_image(struct util_error *err, const char *source, const char *digest);

#endif
