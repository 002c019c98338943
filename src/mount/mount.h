/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Mount orchestration: parse mount options, resolve the source, start (or join) the
 * entry's daemon, make the image's metadata present, mount the cache file (file-backed
 * EROFS, new mount API), and keep one state file per mount keyed by its unique mnt_id.
 * Also the reverse (umount) and the collection of live status for every mount.
 */
#ifndef LAZYEROFS_MOUNT_MOUNT_H
#define LAZYEROFS_MOUNT_MOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "erofs/erofs.h"
#include "fetch/fetch.h"
#include "mount/walkio.h"
#include "cache/cache.h"
#include "oci/oci.h"
#include "util/strutil.h"

#define MOUNT_DEFAULT_CACHE_DIR "/var/cache/lazyerofs"
#define MOUNT_DEFAULT_RUN_DIR "/run/lazyerofs"
#define MOUNT_DEFAULT_TIMEOUT_MS 60000

/* Room for one clear error line. */
#define MOUNT_ERR_LEN 1024

/* $LAZYEROFS_CACHE_DIR / $LAZYEROFS_RUN_DIR or the defaults above. */
const char *mount_env_cache_dir(void);
const char *mount_env_run_dir(void);
/* How long status, umount and cache-max's trim wait for a daemon's answer before they call it
 * mute: each its own (def: 10 s, 5 s, 10 s); tests shorten them all with
 * $LAZYEROFS_ANSWER_WAIT_MS. */
uint64_t mount_env_answer_wait_ms(uint64_t def);

/* `lazyerofs gc`: cache_gc(); with `trim`, entries in use are then trimmed through their
 * daemons in run_dir (their least recently read blocks; $LAZYEROFS_TRIM_COLD_MS: how long
 * unread, for tests). each (may be NULL) sees every entry evicted (e->gone) or trimmed. */
int mount_cache_gc(const char *cache_dir, const char *run_dir, const struct util_size *size,
		   bool dry_run, bool trim, void (*each)(void *ctx, const struct cache_gc_entry *e),
		   void *ctx, struct cache_gc_result *ret);
/* Before a new entry is made for key (size bytes): when the cache is over its budget, evict
 * entries no mount uses, least recently used first, then trim entries in use
 * (mount_cache_gc). Logged; never fails (a bad budget is a warning). True when the new entry
 * may be allocated whole at once: no budget, or the blob fits in what the budget leaves. */
bool mount_cache_max_apply(const char *cache_dir, const char *run_dir, const char *key,
			   uint64_t size);

/* Options of `mount -o` that are not the registry client's. */
struct mount_opts {
	bool prefetch_all;   /* prefetch=all */
	char *cache_dir;     /* cache=DIR; NULL when not given */
	uint64_t timeout_ms; /* timeout=SECONDS; MOUNT_DEFAULT_TIMEOUT_MS when not given */
	bool timeout_given;
	uint64_t attr;       /* MOUNT_ATTR_* for fsmount(2); always has MOUNT_ATTR_RDONLY */
	bool sloppy;         /* mount(8) -s: ignore options nobody knows */
	bool helper;         /* run as mount.erofs.lazy: "rw" (mount(8)'s default) is accepted */
	int profile;         /* profile=: MOUNT_PROFILE_AUTO (default), _NONE or _PATH */
	bool fill_only;      /* parsing for `lazyerofs fetch`: mount flags and mount-only keys
			      * (prefetch=, profile=) are refused */
	char *profile_path;  /* profile=PATH */
};

enum { MOUNT_PROFILE_AUTO = 0, MOUNT_PROFILE_NONE, MOUNT_PROFILE_PATH };

void mount_opts_init(struct mount_opts *m);
void mount_opts_free(struct mount_opts *m);

/* Parse one comma-separated option string (may be called once per -o). Mount flags and the
 * keys above land in m; everything else goes to oci_options_set(). -EINVAL with one line in
 * err for an unknown option, a refused one (rw, loop) or a bad value. */
int mount_opts_parse(const char *s, struct mount_opts *m, struct oci_options *o,
		     struct util_error *err);

/* Error lines quote what the user typed: replace control characters so that each stays one
 * printable line. */
void mount_sanitize_line(char *s);

/* Render the mount flags in m->attr as mount(8)-style text ("ro,nosuid,noatime"). */
const char *mount_attr_format(uint64_t attr, char *buf, size_t len);

struct mount_request {
	const char *source;               /* SOURCE as the user wrote it */
	const char *mountpoint;           /* DIR */
	const struct mount_opts *opts;
	const struct oci_options *oci;
	const char *cache_dir;            /* NULL: opts->cache_dir, else the environment */
	const char *run_dir;              /* NULL: the environment */
};

struct mount_result {
	bool already;			  /* mount(8)'s helper: that source is mounted there */
	uint64_t mnt_id;                  /* STATX_MNT_ID_UNIQUE of the new mount */
	pid_t daemon_pid;
	char digest[UTIL_DIGEST_STR_LEN];
	uint64_t size;                    /* blob size */
	bool offline;                     /* complete cache entry used without the registry */
	struct erofs_walk_stats walk;     /* the metadata walk */
	uint64_t walk_ranges;             /* ranges the walk listed */
	uint64_t zone_bytes;              /* a metadata zone fetched whole before the walk */
	uint64_t map_ranges, map_bytes;   /* the manifest's metadata map, asked for at once */
	bool map_blind;			  /* ... as listed, before the first round */
	uint64_t reply_us;		  /* the quickest reply resolving got (0: none) */
	uint64_t walk_requests;           /* HTTP requests the daemon made during the walk */
	uint64_t walk_fetched;            /* bytes the daemon fetched during the walk */
	uint64_t walk_events;             /* pre-content events the walk's reads raised */
	uint64_t walk_fast;               /* ... of which were answered from the bitmap at once */
	struct mount_walkio_stats io;     /* how the walker's reads were served */
	uint64_t resolve_ms, daemon_ms, walk_ms, kmount_ms, total_ms;
	/* The startup profile: where it came from ("" none; "registry sha256:..." or the path),
	 * its ranges and bytes when replay started, how long the lookup took, and a warning
	 * line when one was found but not used (for the caller to print). */
	char profile_from[128];
	uint64_t profile_ranges, profile_bytes, profile_lookup_ms;
	char profile_warning[512];
};

/* Exit-code classes of a failed mount_do(): usage errors (bad reference) are
 * MOUNT_FAIL_USAGE, everything else MOUNT_FAIL_OTHER. */
enum { MOUNT_FAIL_OTHER = 0, MOUNT_FAIL_USAGE = 1 };

/* Mount req->source on req->mountpoint. On failure: -errno, one line in err (without the
 * "lazyerofs: mount: " prefix), *ret_class set, and nothing left behind (no mount, no state
 * file, no attachment to the daemon). */
int mount_do(const struct mount_request *req, struct mount_result *ret, int *ret_class,
	     struct util_error *err);

/* `lazyerofs fetch`: fill a cache entry ahead of time and have it verified, so that a later
 * mount of the source (by digest: offline) needs no registry. */
struct mount_fill_request {
	const char *source;
	const struct mount_opts *opts; /* cache=, timeout= (no progress for that long: fail) */
	const struct oci_options *oci;
	const char *cache_dir;	       /* NULL: opts->cache_dir, else the environment */
	const char *run_dir;	       /* NULL: the environment */
	void (*progress)(void *ctx, const struct fetch_status *st); /* may be NULL */
	void *ctx;
	/* Cancelling: *cancel, set by a signal handler, stops the fill (-EINTR) and releases the
	 * daemon. *daemon_started (may be NULL) is set just before the daemon is started or
	 * joined: until then nothing needs undoing, and the caller may let a signal kill it. */
	const volatile sig_atomic_t *cancel;
	volatile sig_atomic_t *daemon_started;
};

struct mount_fill_result {
	char digest[UTIL_DIGEST_STR_LEN]; /* "" for an unpinned URL source */
	char cache_key[UTIL_SHA256_HEX_LEN + 1];
	uint64_t size;
	bool already;		/* complete (and verified) before: nothing was done */
	bool verified;		/* checked against the digest (false: nothing to check) */
	bool offline;		/* resolved from the cache: no registry was asked */
	uint64_t fetched_bytes; /* what the daemon fetched meanwhile */
	uint64_t present_bytes; /* in the entry at the end (also after a failure) */
	uint64_t ms;
};

/* 0 once the entry is complete and verified. On failure -errno, one line in err, *ret_class
 * (MOUNT_FAIL_USAGE for a bad source), and the entry left as the daemon persisted it (its
 * bitmap claims only durable data); the daemon leaves when nothing else uses it (waited
 * for, briefly). */
int mount_fill(const struct mount_fill_request *req, struct mount_fill_result *ret,
	       int *ret_class, struct util_error *err);

/* Unmount a lazyerofs mount found through its state file (no directory scan): umount2(),
 * tell the daemon, remove the state file. lazy: MNT_DETACH. -EBUSY when files are open,
 * -ENOTCONN when mountpoint is not a lazyerofs mount (one line in err either way). */
int mount_umount(const char *run_dir, const char *mountpoint, bool lazy, struct util_error *err);

/* The state file of one mount: `<run-dir>/<mnt_id>`, JSON, no secrets. */
struct mount_state {
	uint64_t mnt_id;
	pid_t pid;          /* the daemon's */
	char *mountpoint;
	char *source;       /* the reference text, credentials stripped */
	char *digest;
	char *cache;        /* the cache data file */
	char *socket;       /* the daemon's control socket */
	char *options;      /* mount flags, e.g. "ro,nosuid" */
	char *transport;    /* how the entry's bytes came: "tls", "insecure" (no verified TLS)
			     * or "mirror" (the tag was resolved by a mirror alone) */
	uint64_t size;
	pid_t mounted_by;   /* the mount command's pid */
	uint64_t mnt_ns;    /* the mount namespace it was made in (mount_ns_id), 0: unknown */
};

/* The calling process's mount namespace, as an id (the inode of /proc/self/ns/mnt), or 0. */
uint64_t mount_ns_id(void);

/* The source text safe to record and show: a URL loses user info and query string. */
char *mount_public_source(const char *source, bool is_url);

void mount_state_done(struct mount_state *s);
int mount_state_write(int run_dirfd, const struct mount_state *s);
/* -ENOENT when there is no state file for mnt_id; -EBADMSG when it is damaged. */
int mount_state_read(int run_dirfd, uint64_t mnt_id, struct mount_state *ret);
int mount_state_remove(int run_dirfd, uint64_t mnt_id);
/* The state file's name in the run directory: the decimal mnt_id. */
void mount_state_name(uint64_t mnt_id, char name[32]);
/* Serialise / parse (pure; used by the above and the unit tests). */
int mount_state_to_json(const struct mount_state *s, char **ret);
int mount_state_from_json(const char *buf, size_t len, struct mount_state *ret);

/* Kernel side. */
/* The unique mount id of the mount at path (must be the root of a mount: -ENOTCONN
 * otherwise; -ENOENT / -ENOTDIR as the path gives). */
int mount_path_mnt_id(const char *path, uint64_t *ret);
/* 1 when a mount with this unique id exists in our mount namespace, 0 when not. */
int mount_id_exists(uint64_t mnt_id, const char *mountpoint);
/* Is the mount at mountpoint an EROFS mount of a cache entry's data file (<dir>/sha256/<key>
 * with the entry's header beside it), whatever a run directory says of it? 1 or 0, or -errno
 * when the mount table cannot be read. */
int mount_is_entry_mount(const char *mountpoint);
/* Make a detached EROFS mount of the regular file `source` (fsmount(2): in no mount table
 * yet, gone with its fd), with the MOUNT_ATTR_* flags and, unless 0, that read-ahead in KiB;
 * the kernel's own messages land in err. Returns its O_PATH fd and its unique id, which stays
 * the same once it is placed. */
int mount_kernel_erofs(const char *source, uint64_t attr, unsigned readahead_kb, int *ret_mfd,
		       uint64_t *ret_mnt_id, struct util_error *err);
/* Place the detached mount `mfd` on the directory `target_fd` refers to (O_PATH). */
int mount_kernel_place(int mfd, int target_fd, struct util_error *err);

/* One mount as `status` shows it. */
struct mount_status_entry {
	struct mount_state st;
	bool daemon_alive;        /* the daemon answered */
	bool daemon_mute;	  /* ... or its socket took the call, and no answer came in time */
	bool daemon_foreign;	  /* ... or it answered in another version's protocol (it serves
				   * its mounts; this binary cannot ask it) */
	struct fetch_status fs;   /* valid when daemon_alive */
	/* Without an answer: what the entry's files say (on_disk): the bytes its bitmap claims
	 * present, and whether its header says verified. */
	bool on_disk, disk_verified;
	uint64_t disk_present;
};

/* Collect every mount of the run dir (only_mountpoint: just that one, -ENOTCONN when it is
 * not a lazyerofs mount). State files whose mount is gone are cleaned up (the daemon is told)
 * on the way. An absent run dir means no mounts. */
int mount_status_collect(const char *run_dir, const char *only_mountpoint,
			 struct mount_status_entry **ret, size_t *ret_n, struct util_error *err);
void mount_status_free(struct mount_status_entry *v, size_t n);

/* `lazyerofs profile save`: ask the daemon of the lazyerofs mount at mountpoint for what its
 * cache entry's readers have needed so far, in first-access order (fetch/profile.h), and
 * write it to path. -ENOTCONN when mountpoint is not a lazyerofs mount; -ENODATA when
 * nothing was recorded yet. One line in err. */
int mount_profile_save(const char *run_dir, const char *mountpoint, const char *path,
		       struct util_error *err);

#endif
