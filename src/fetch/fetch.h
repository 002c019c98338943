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
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "oci/oci.h"
#include "util/error.h"
#include "util/extents.h"
#include "util/json.h"

/* The control protocol this binary's daemons and clients speak (a client refuses a daemon of
 * another, and the daemon it). */
int fetch_proto_version(void);

struct fetch_config {
	const char *cache_dir;		/* cache root (validated root-owned 0700 by the callee) */
	const char *run_dir;		/* run root (same rules) */
	const struct oci_ref *ref;	/* what to fetch from (the daemon re-creates its client) */
	const struct oci_options *opts; /* secrets reach the daemon in memory, never via argv */
	struct oci_blob blob;		/* resolved blob: digest/cache key and size */
	bool prefetch_all;		/* prefetch=all */
	bool sparse; /* a new cache entry is not allocated whole (the cache budget leaves less) */
	uint64_t timeout_ms;		/* per-read deadline before FAN_DENY_ERRNO(EIO) */
	bool timeout_given; /* ... asked for (timeout=): a running daemon must have it */
	/* Tunables; 0 = default (env LAZYEROFS_CHUNK_SIZE, LAZYEROFS_MAX_REQUESTS,
	 * LAZYEROFS_READAHEAD_MAX override the defaults, for benchmarks). */
	uint64_t chunk_size;	/* demand fetch unit of a read (power of two) */
	unsigned max_requests;	/* HTTP requests in flight at once */
	uint64_t readahead_max; /* largest read-ahead window of a sequential reader */
	/* How the entry's bytes came ("tls", "insecure" or "mirror", as the mount's state file
	 * says; NULL: "tls"), for the integrity its metrics show. */
	const char *transport;
	/* The configuration file's metrics-dir (absolute) or NULL: the daemon writes its
	 * entry's metrics there (textfile.c). */
	const char *metrics_dir;
};

struct fetch_handle {
	pid_t pid;		    /* the daemon's pid (the holder process) */
	char data_path[PATH_MAX];   /* the cache data file: the mount source */
	char socket_path[PATH_MAX]; /* the daemon's control socket */
	int ctl_fd;		    /* connected control socket, O_CLOEXEC */
	bool holding;		    /* this handle keeps the daemon alive */
	uint64_t timeout_ms;	    /* the daemon's per-read deadline (0: not said) */
	bool timeout_chosen;	    /* ... a mount asked for it (timeout=) */
	char net[17];		    /* oci_options_net_id of its options, "" when not said */
	int others;		    /* its users besides this handle (-1: not said) */
	int prefetch_all;	    /* its background fill: 1, 0, or -1 (not said) */
	uint64_t size;		    /* the blob's size it serves (0: not said) */
};

/* Start the daemon of cfg->blob's cache entry, or join the running one. Returns once the
 * data file is marked and events are served. -EOPNOTSUPP when the cache directory's
 * filesystem refuses pre-content marks (tmpfs, overlayfs), with the reason in err.
 *
 * The returned handle keeps the daemon alive (it "holds" it) until fetch_handle_free(), so a
 * mount helper can walk, mount and attach without the daemon leaving in between. The daemon
 * is forked from the caller (secrets stay in memory): call this while single-threaded.
 * A handle is not thread-safe; use one handle per thread (fetch_connect). */
int fetch_daemon_ensure(const struct fetch_config *cfg, struct fetch_handle **ret,
			struct util_error *err);
void fetch_handle_free(struct fetch_handle *h);
/* Free the handle; when it was the daemon's only user (no mount, no other client, nothing
 * waiting), wait up to wait_ms for the daemon to leave, so that whatever runs next (gc, a
 * test, a script) finds the entry unlocked and the daemon gone. */
void fetch_handle_release(struct fetch_handle *h, uint64_t wait_ms);

/* Make the ranges present in the cache (one batch: several ranges per request, several
 * requests in flight); returns when all are present, or -errno. */
int fetch_ensure_ranges(struct fetch_handle *h, const struct util_extent *v, size_t n,
			struct util_error *err);
/* The same, saying what of it the caller needs (the rest: gaps bridged to save requests), in
 * the order it needs it: the daemon's record of first accesses (startup profiles) takes
 * `need` (at most FETCH_NEED_MAX ranges) instead of v. */
#define FETCH_NEED_MAX 100000
int fetch_ensure_needed(struct fetch_handle *h, const struct util_extent *v, size_t n,
			const struct util_extent *need, size_t nneed, struct util_error *err);

/* The image's metadata map (what a mount's walk made present: the kernel reads it without
 * events), for the daemon never to trim. -EINVAL from a daemon that predates the request. */
int fetch_pin(struct fetch_handle *h, const struct util_extent *v, size_t n,
	      struct util_error *err);
/* Ask the daemon of an entry in use to evict about `bytes` of its least recently read blocks
 * (not read for cold_ms, 0: the default, FETCH_TRIM_COLD_MS in fetch/trim.h); *ret_freed
 * what it evicted, why (may be "") what kept it from more. */
int fetch_trim(struct fetch_handle *h, uint64_t bytes, uint64_t cold_ms, uint64_t *ret_freed,
	       char *why, size_t why_len, struct util_error *err);
/* Connect (without holding it) to the daemon of cache entry key, found in run_dir, each
 * request answered within timeout_ms (0: no limit; fetch_connect_timeout). -ENOENT or
 * -ECONNREFUSED when there is none. */
int fetch_connect_entry(const char *run_dir, const char *key, uint64_t timeout_ms,
			struct fetch_handle **ret);

/* A read-only fd of the data file that the daemon opened BEFORE it marked the file: reads
 * through it raise no fanotify events, so they never wait for the daemon -- and read zeros
 * from holes where a block is absent. Use it only for ranges fetch_ensure_ranges() has just
 * confirmed present; read anything else through an fd of your own (h->data_path), whose
 * reads make the daemon fetch. Root only (like every request). -EINVAL from a daemon that
 * predates the request (the caller falls back to its own fd). */
int fetch_data_fd(struct fetch_handle *h, int *ret_fd, struct util_error *err);

/* Register / unregister a mount of the entry (mnt_id from STATX_MNT_ID_UNIQUE). attach passes
 * root_fd (the mount's root, O_PATH: the fsmount(2) fd of a mount not yet placed, or a
 * mountpoint opened in any mount namespace) to the daemon, which watches that superblock:
 * the daemon lives until the superblock is released (after umount, after umount -l once the
 * last open file closes, or when a mount never placed loses its fd), detach or not.
 * mountpoint is what status shows. state_file names the mount's state file in the run
 * directory (digits only, or NULL): when the superblock is released -- also after a plain
 * umount(8) that no lazyerofs command saw -- the daemon removes it; state_text is its
 * content (or NULL), which the daemon writes again if the run directory loses it. */
int fetch_attach(struct fetch_handle *h, uint64_t mnt_id, int root_fd, const char *mountpoint,
		 const char *source, const char *state_file, const char *state_text);
/* Connect to a daemon by its socket path (from a state file). */
int fetch_connect(const char *socket_path, struct fetch_handle **ret);
/* The same, each request of the connection answered within timeout_ms or failed (-EAGAIN):
 * for questions a live daemon answers at once (status), never for fetches. */
int fetch_connect_timeout(const char *socket_path, uint64_t timeout_ms, struct fetch_handle **ret);
int fetch_detach(struct fetch_handle *h, uint64_t mnt_id);

/* Hand the daemon the image's file index (fetch/files.h encoding) in a sealed memfd.
 * -EINVAL from a daemon that predates the request; -EBADMSG if it refused the bytes. */
int fetch_send_files(struct fetch_handle *h, const void *buf, size_t len, struct util_error *err);

/* Startup profiles (profile.h). The daemon's record of first accesses as a profile
 * (profile_free it); *ret_truncated: the record reached its cap. -ENODATA when the blob has
 * no digest. */
struct profile;
int fetch_profile_get(struct fetch_handle *h, struct profile *ret, bool *ret_truncated,
		      struct util_error *err);
/* Hand the daemon a profile's text to replay (it replaces a replay done or failed).
 * *ret_started is false when another replay is under way (*ret_busy) or when the entry is
 * complete. -EILSEQ: another blob's; -EBADMSG and the like: the daemon refused the bytes
 * (err says why). */
int fetch_profile_replay(struct fetch_handle *h, const void *buf, size_t len, bool *ret_started,
			 bool *ret_busy, struct util_error *err);

/* The event latency histogram: how long a read event waited from being read to being
 * answered. Fixed upper bounds (microseconds, "less or equal"), then +Inf: bucket i counts
 * latencies in (bound[i-1], bound[i]]. */
#define FETCH_LATENCY_BOUNDS  10
#define FETCH_LATENCY_BUCKETS (FETCH_LATENCY_BOUNDS + 1)
extern const uint64_t fetch_latency_bounds_us[FETCH_LATENCY_BOUNDS];
/* The bucket of a latency of us microseconds (FETCH_LATENCY_BOUNDS: +Inf). */
size_t fetch_latency_bucket(uint64_t us);

/* Why a fetch (one scheduler job: one read of one or more ranges, retries included) failed. */
enum fetch_fail_kind {
	FETCH_FAIL_TIMEOUT, /* it ran out of its request deadline */
	FETCH_FAIL_5XX,	    /* the registry kept answering 5xx, 429 or 408 */
	FETCH_FAIL_4XX,	    /* the registry refused it for good (401, 403, 404, 412, 416...) */
	FETCH_FAIL_NETWORK, /* no HTTP answer: connect, reset, DNS or TLS errors */
	FETCH_FAIL_WRITE,   /* the cache file refused the bytes (ENOSPC, EIO) */
	FETCH_FAIL_OTHER,   /* anything else (a malformed reply, out of memory) */
	FETCH_FAIL_KINDS,
};
/* "timeout", "5xx", "4xx", "network", "write", "other". */
const char *fetch_fail_kind_name(enum fetch_fail_kind k);
/* The kind of a failure: err (-errno) and the HTTP status of the last answer (0: none) as the
 * registry client reported them; write_failed: the cache file refused bytes; timed_out: the
 * fetch ran until its deadline. */
enum fetch_fail_kind fetch_fail_kind_of(int err, int http_status, bool write_failed,
					bool timed_out);

/* Ask the daemon to fetch every missing block in the background (as prefetch=all does,
 * yielding to readers) for as long as this handle's connection lasts; the daemon verifies the
 * entry once it is complete. Asking again is harmless. -EINVAL from a daemon that predates
 * the request. */
int fetch_fill(struct fetch_handle *h, struct util_error *err);

/* Watching a fill (fill.c). */
struct fetch_status;
struct fetch_fill_watch {
	uint64_t stall_ms; /* give up when no byte arrives for this long */
	void (*progress)(void *ctx, const struct fetch_status *st); /* each poll; may be NULL */
	void *ctx;
	const volatile sig_atomic_t *cancel; /* stop when it becomes non-zero (a signal handler's flag) */
};
/* Fill the entry (fetch_fill) and wait until it is verified against its digest (or, for an
 * unpinned URL source, complete). 0 then; -EILSEQ when its bytes do not match the digest (the
 * daemon set the entry aside as bad); -EINTR when *cancel was set; -ETIMEDOUT after stall_ms
 * without progress; a permanent fetch error (401/403, 404, a changed URL object) at once.
 * One line in err; *ret_st: the last status seen. */
int fetch_fill_wait(struct fetch_handle *h, const struct fetch_fill_watch *w,
		    struct fetch_status *ret_st, struct util_error *err);

/* Live status (DESIGN "status --json" keys, then more). */
struct fetch_status {
	char digest[UTIL_DIGEST_STR_LEN];
	uint64_t size, present_bytes, fetched_bytes, requests, events, errors;
	pid_t pid;
	char state[16]; /* running | complete | verified | bad */
	/* more */
	uint64_t answers;      /* events answered (== events once idle: exactly once each) */
	uint64_t fast_answers; /* answered from the bitmap at once */
	uint64_t denied;       /* answered FAN_DENY_ERRNO (fetch failed within the deadline) */
	uint64_t pending;      /* events and ensure requests waiting now */
	pid_t worker_pid;      /* the process serving events now */
	unsigned restarts;     /* workers replaced after a crash */
	unsigned mounts;       /* superblocks using the entry */
	uint64_t chunk_size;
	bool marked; /* the fanotify mark is in place (dropped once verified) */
	uint64_t files, file_ranges; /* the file index the daemon holds (0, 0: none) */
	uint64_t link_rtt_us,
	    link_bytes_per_s; /* the link as the daemon measured it (0: not yet) */
	/* The startup profile replayed: state "none", "replaying", "done" or "failed". */
	char profile_state[16];
	uint64_t profile_ranges, profile_ranges_done, profile_bytes, profile_fetched_bytes;
	uint64_t profile_requests, profile_served, profile_ms;
	uint64_t recorded_ranges; /* the record of first accesses */
	unsigned holder_restarts; /* holders replaced after a crash */
	uint64_t retries;	  /* HTTP requests sent again after a failed one */
	/* Failed fetches by kind (errors = denied + these). */
	uint64_t failures[FETCH_FAIL_KINDS];
	/* Answered events by latency bucket (not cumulative) and the sum of their latencies;
	 * has_latency: the daemon reported a histogram with our bounds. */
	bool has_latency;
	uint64_t latency[FETCH_LATENCY_BUCKETS];
	uint64_t latency_sum_us;

	unsigned holds;		  /* connections holding the daemon (a mount being made, a fill) */
	bool filling;		  /* the background fill runs */
	bool cache_disk_low;	  /* nothing goes ahead of need: the cache disk is at its reserve */
	uint64_t timeout_ms;	  /* the per-read deadline every mount of the entry gets */
	int last_errno;		  /* the last failed fetch: -errno (0: none) */
	char last_error[256];	  /* ... and what the registry client said */
	uint64_t trimmed_bytes;	  /* evicted by trims while in use (trim.c) */
	uint64_t pinned_units;	  /* units holding metadata, never trimmed */
	bool trimmable;		  /* a trim may evict something now ... */
	char trim_blocked[160];	  /* ... else why not */
};
int fetch_status(struct fetch_handle *h, struct fetch_status *ret);
/* The same, asked right before the kernel mounts the entry, whose data file is open at data_fd
 * (-1: a plain status): the reply comes once the daemon is ready to serve a mount (out of its
 * caller's cgroup), and is an error (err says why) unless data_fd is the daemon's own data
 * file, in an entry still good. */
int fetch_status_before_mount(struct fetch_handle *h, struct fetch_status *ret, int data_fd,
			      struct util_error *err);
/* The keys of s's measurements (retries, failures by kind and, with has_latency, the latency
 * histogram) as the status reply carries them: "retries", "failures" {kind: count},
 * "latency_bounds_us" [...], "latency_buckets" [...] (not cumulative) and "latency_sum_us".
 * NULL when out of memory. */
json_t *fetch_metrics_json(const struct fetch_status *s);

/* The Prometheus exposition (prom.c): mounts and cache entries, as `status --prometheus`
 * prints them and each daemon writes its own entry into the metrics directory. */
struct fetch_prom_mount {
	const char *digest, *entry; /* sha256:<hex> ("" for a URL source without one); cache key */
	const char *mountpoint, *source;
	bool up;   /* a daemon answers for the mount */
	bool mute; /* ... or one is there (its socket takes calls) but does not answer */
};
struct fetch_prom_entry {
	const char *digest, *entry;
	const struct fetch_status *fs; /* its daemon's numbers; NULL when none answers */
	uint64_t size;
	const char *state;     /* running, complete, verified, bad or lost */
	const char *integrity; /* fetch_integrity() */
};
/* Every family with its HELP and TYPE, then the samples of m[0..nm) and v[0..n) (an entry
 * once, however many mounts it has). -EIO when writing failed. */
int fetch_prom_write(FILE *f, const struct fetch_prom_mount *m, size_t nm,
		     const struct fetch_prom_entry *v, size_t n);
/* What an entry's bytes are checked against: "mirror" when a mirror alone resolved the tag
 * (transport "mirror"), else "verified" (state "verified": the whole blob against its
 * digest), else the connection they came over: "insecure" or "tls". */
const char *fetch_integrity(const char *transport, const char *state);

#endif
