/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Public interface of the fetch daemon: start or join the per-cache-entry daemon that
 * answers fanotify pre-content events on the cache data file, ask it to make ranges
 * present, tell it which mounts use it, and read its live status.
 *
 * The daemon is a detached process (setsid, no inherited stdio) that marks the cache data
 * file before any mount (DESIGN facts 3, 4, 6) and lives while any EROFS superblock uses
 * the file (fact 13). Callers talk to it over a unix socket in the run directory.
 */
#ifndef LAZYEROFS_FETCH_FETCH_H
#define LAZYEROFS_FETCH_FETCH_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "oci/oci.h"
#include "util/extents.h"

struct fetch_config {
	const char *cache_dir;           /* cache root (validated root-owned 0700 by the callee) */
	const char *run_dir;             /* run root (same rules) */
	const struct oci_ref *ref;       /* what to fetch from (the daemon re-creates its client) */
	const struct oci_options *opts;  /* secrets reach the daemon in memory, never via argv */
	struct oci_blob blob;            /* resolved blob: digest/cache key and size */
	bool prefetch_all;               /* prefetch=all */
	uint64_t timeout_ms;             /* per-read deadline before FAN_DENY_ERRNO(EIO) */
};

struct fetch_handle {
	pid_t pid;                       /* the daemon's pid (the holder process) */
	char data_path[PATH_MAX];        /* the cache data file: the mount source */
	char socket_path[PATH_MAX];      /* the daemon's control socket */
	int ctl_fd;                      /* connected control socket, O_CLOEXEC */
};

/* Start the daemon of cfg->blob's cache entry, or join the running one. Returns once the
 * data file is marked and events are served. -EOPNOTSUPP when the cache directory's
 * filesystem refuses pre-content marks (tmpfs, overlayfs), with the reason in errbuf. */
int fetch_daemon_ensure(const struct fetch_config *cfg, struct fetch_handle **ret, char *errbuf,
			size_t errlen);
void fetch_handle_free(struct fetch_handle *h);

/* Make the ranges present in the cache (one batch: several ranges per request, several
 * requests in flight); returns when all are present, or -errno. */
int fetch_ensure_ranges(struct fetch_handle *h, const struct util_extent *v, size_t n,
			char *errbuf, size_t errlen);

/* Register / unregister a mount of the entry (mnt_id from STATX_MNT_ID_UNIQUE). */
int fetch_attach(struct fetch_handle *h, uint64_t mnt_id, const char *mountpoint,
		 const char *source);
/* Connect to a daemon by its socket path (from a state file). */
int fetch_connect(const char *socket_path, struct fetch_handle **ret);
int fetch_detach(struct fetch_handle *h, uint64_t mnt_id);

/* Live status (DESIGN "status --json" keys). */
struct fetch_status {
	char digest[UTIL_DIGEST_STR_LEN];
	uint64_t size, present_bytes, fetched_bytes, requests, events, errors;
	pid_t pid;
	char state[16]; /* running | complete | verified | bad */
};
int fetch_status(struct fetch_handle *h, struct fetch_status *ret);

#endif
