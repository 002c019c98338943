/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Internals of the fetch daemon, shared by its files:
 *   holder.c   fork/detach, the holder's setup (signals, cgroup, limits, fds, the mark)
 *   guard.c    holder and worker watch each other (pidfds); the survivor replaces the other
 *   worker.c   the worker process: its threads, its lifetime and its exit
 *   dispatch.c event dispatch: read, journal, fast path, the one exit path of every event
 *   transfer.c the transfer engine: scheduler jobs become HTTP requests (libcurl multi)
 *   verify.c   housekeeping (deadlines, bitmap persistence, tampering) and verification
 *   takeover.c a replacement worker serves the events its predecessor left unanswered
 *   control.c  the control socket, mount bookkeeping, lifetime decisions
 *   status.c   the status reply
 *   metrics.c  the event latency histogram and the kinds of failed fetches
 *   client.c   the public API (runs in the caller)
 *   proto.c    line-delimited JSON over a unix socket, fd passing
 *
 * Process layout: the holder opens the pre-mark write and read fds, creates the fanotify group
 * and marks the data file, creates the inotify fd and the listening sockets, maps
 * `struct fetch_shared`, and forks the worker. The holder only watches the worker and starts
 * a replacement when it dies; its copies of the fds keep the group alive, so no reader ever
 * gets zeros (fact 6). The worker watches the holder the same way and forks a new holder
 * when the holder dies (guard.c): only both dying at once fails open.
 */
#ifndef LAZYEROFS_FETCH_INTERNAL_H
#define LAZYEROFS_FETCH_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "fetch/fetch.h"
#include "fetch/record.h"
#include "fetch/sched.h"
#include "util/json.h"
#include "util/macro.h"

#define FETCH_DISPATCHERS	2
#define FETCH_PREDICT_QUEUE	16 /* readers queued for predict.c (more: dropped) */
#define FETCH_READ_BATCH	64 /* events per read() of the group */
/* Events read and not yet answered that wait for a fetch: reading pauses only beyond this.
 * The slots above it are the dispatchers' read batches, so a read of present data is read
 * and answered at once however many reads wait for the registry. Each pending event holds
 * an fd: RLIMIT_NOFILE is raised to FETCH_NOFILE. */
#define FETCH_MAX_PENDING	16384
#define FETCH_MAX_EVENTS	(FETCH_MAX_PENDING + FETCH_DISPATCHERS * FETCH_READ_BATCH)
#define FETCH_NOFILE		(FETCH_MAX_EVENTS + 4096) /* + sockets, connections, files */
/* The control protocol's version, in every hello and hold and its answer. A daemon started by
 * another version of lazyerofs (a package upgrade while it runs) is refused, never misread:
 * 2 = leaving daemons refuse holds, probes, "proto" itself (1: no "proto"). */
#define FETCH_PROTO_VERSION	3
#define FETCH_MAX_ENSURE	64	   /* ensure requests waiting at once */
#define FETCH_STAGES		8	   /* jobs whose bytes are written in stages at once */
#define FETCH_STAGE_BYTES	(256u << 10) /* ... in writes of this much, aligned */
/* Superblocks tracked. The table lives in anonymous shared memory, whose pages are only
 * backed once touched: it grows with use up to this bound (~4 MiB). */
#define FETCH_MAX_MOUNTS	4096
#define FETCH_STATE_TEXT_MAX	16384	   /* a mount's state file kept by the daemon (STATE_MAX) */
#define FETCH_MAX_CONNS		64	   /* control connections */
#define FETCH_LINE_MAX		(8u << 20) /* a control request line */
#define FETCH_REPLY_MAX		(1u << 20)
#define FETCH_ENSURE_MAX_RANGES 200000
#define FETCH_GRACE_MS		30000 /* exit if nobody ever used a started daemon */
#define FETCH_REPLACEMENT_STAY_MS 10000 /* ($LAZYEROFS_REPLACEMENT_STAY_MS for tests) */
#define FETCH_FLUSH_MS		300   /* bitmap persistence period once fetching pauses */
#define FETCH_FLUSH_BUSY_MS	5000  /* ... and while it streams */
#define FETCH_TICK_MS		100   /* deadline checks */

enum fetch_state {
	FETCH_STATE_RUNNING = 0,
	FETCH_STATE_COMPLETE = 1,
	FETCH_STATE_VERIFIED = 2,
	FETCH_STATE_BAD = 3,
};

const char *fetch_state_name(uint32_t state);

/* An event read from the group and not yet answered, in shared memory: if the worker dies,
 * its replacement answers it with the same fd number (fact 6). */
struct fetch_journal_slot {
	uint32_t state; /* SLOT_FREE / SLOT_ACTIVE, atomic */
	int32_t fd;
	uint64_t off, len;
	uint64_t deadline_ms; /* absolute (CLOCK_MONOTONIC): a takeover does not extend it */
	uint64_t read_us;     /* when it was read (CLOCK_MONOTONIC), for its answer's latency */
};

enum { SLOT_FREE = 0, SLOT_ACTIVE = 1 };

/* A superblock using the data file: an attached mount, or one found in mountinfo. */
struct fetch_mount_rec {
	uint32_t used;
	int32_t wd;	 /* inotify watch on its root: IN_UNMOUNT when the superblock dies */
	uint64_t mnt_id; /* STATX_MNT_ID_UNIQUE of the attached mount, 0 if discovered */
	uint64_t dev;	 /* st_dev of the root: one per superblock */
	char mountpoint[PATH_MAX]; /* (whole: a label of the metrics file) */
	char source[PATH_MAX];
	char state[24]; /* the mount's state file in the run directory ("" if none) */
	/* ... and its text, to write it again when the run directory was emptied under us
	 * (fetch_run_dir_heal); "" when the mount sent none or it was longer */
	char state_text[FETCH_STATE_TEXT_MAX];
};

/* Fields of struct fetch_shared that several threads or processes touch: read and written
 * whole, atomically (the counters use atomic adds). */
#define SH_LOAD(field)	      __atomic_load_n(&(field), __ATOMIC_ACQUIRE)
#define SH_STORE(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELEASE)
#define SH_ADD(field, value)   __atomic_fetch_add(&(field), (value), __ATOMIC_RELAXED)
/* How many mounts[] slots to look at (see mounts_hi). */
#define FETCH_MOUNTS_USED(sh) MIN(SH_LOAD((sh)->mounts_hi), (uint32_t)FETCH_MAX_MOUNTS)
/* How many journal[] slots to look at (see journal_hi). */
#define FETCH_JOURNAL_USED(sh) MIN(SH_LOAD((sh)->journal_hi), (uint32_t)FETCH_MAX_EVENTS)

/* Shared between the holder and successive workers (MAP_SHARED, made before fork). Fields
 * written by the worker only; counters are updated with atomics. */
struct fetch_shared {
	pid_t holder_pid; /* the current holder (a replacement has a new pid) */
	/* The discovery socket was given up (a bad or removed entry, a daemon leaving): new
	 * mounts start a fresh daemon; no process of this one binds it again. */
	uint32_t discovery_gone;
	pid_t worker_pid;
	uint32_t ready; /* the first worker reported readiness */
	uint32_t restarts;	  /* workers replaced */
	uint32_t holder_restarts; /* holders replaced (by the worker) */
	uint32_t worker_done;	  /* the worker left normally (set just before its exit) */
	int32_t fd_limit;	  /* RLIMIT_NOFILE of every worker: event fds are below it */
	uint32_t state;	    /* enum fetch_state */
	uint32_t had_user;  /* a hold, attach or superblock was ever seen */
	uint32_t marked;    /* the pre-content mark is in place */
	uint32_t exiting;   /* the worker decided to exit: do not replace it */
	uint32_t mark_dropped; /* the pre-content mark was removed once: never trim (trim.c) */
	uint32_t pinned;       /* a mount sent the image's metadata map (trim.c) */
	uint32_t prefetch_all; /* a mount that joined asked for prefetch=all (control.c) */
	/* The per-read deadline a mount asked for (timeout=), 0 while none did (control.c). */
	uint64_t timeout_chosen_ms;
	uint64_t trimmed_bytes, trims; /* what trims evicted */
	int32_t hiwater_fd; /* highest event fd number ever read */
	uint64_t started_ms;
	uint64_t events, answers, fast, denied, requests, fetched_bytes, errors;
	/* Bytes startup profiles' replays fetched; reads answered with such bytes. */
	uint64_t profile_fetched_bytes, profile_served;
	/* HTTP requests sent again after a failure; failed fetches by kind; answered events
	 * by latency bucket and the sum of their latencies (metrics.c). */
	uint64_t retries;
	uint64_t failures[FETCH_FAIL_KINDS];
	uint64_t latency[FETCH_LATENCY_BUCKETS];
	uint64_t latency_sum_us;
	/* Slots [0, mounts_hi) of mounts[] have been used: loops stop there, so the table's
	 * pages are only backed (and counted in the daemon's memory) once used. */
	uint32_t mounts_hi;				 /* guarded by fetch_daemon.lock */
	struct fetch_mount_rec mounts[FETCH_MAX_MOUNTS]; /* guarded by fetch_daemon.lock */
	/* Slots [0, journal_hi) of journal[] have been handed out, lowest first (dispatch.c):
	 * the slots above are free without a look, so a worker's start and a takeover never
	 * touch (and back) the journal's pages beyond the most events ever pending at once. */
	uint32_t journal_hi; /* guarded by fetch_daemon.lock */
	struct fetch_journal_slot journal[FETCH_MAX_EVENTS];
};

/* An ensure batch waiting in the scheduler. */
struct fetch_ensure {
	struct fetch_req req;
	bool done; /* guarded by fetch_daemon.lock */
};

struct fetch_daemon {
	/* ---- set up by the holder, inherited by every worker ---- */
	struct fetch_config cfg;
	struct oci_options oopts; /* cfg->opts with the request timeout bounded by ours */
	struct fetch_policy pol;
	struct cache_entry *entry;
	int fan_fd;	/* pre-content group; -1 when the entry needed no mark */
	int rd_fd;	/* O_RDONLY data fd opened before the mark: handed to mount helpers
			 * for reading what an ensure made present, without events */
	int ino_fd;	/* inotify: superblock lifetime */
	int listen_fd;	/* daemon-<key>.sock: how new mounts find the daemon */
	int listen2_fd; /* daemon-<key>-<pid>.sock: stable for this daemon's whole life */
	int heal_efd;	/* the worker made the sockets again: the holder takes them now */
	int run_dirfd;
	int devnull_fd;
	int log_fd;   /* the daemon's log file (or devnull_fd) */
	int ready_fd; /* readiness pipe to fetch_daemon_ensure; first worker only */
	/* A pipe whose other end the process that started the daemon keeps until it exits
	 * (fetch_spawn), -1 once it hung up: a daemon nobody used leaves when its starter is gone
	 * (a mount interrupted before it asked anything), not after FETCH_GRACE_MS. The first
	 * worker's only (the holder closes it once that one is forked). */
	int starter_fd;
	uint64_t sock_ino; /* inode of the discovery socket we bound (unlink only our own) */
	uint64_t sock2_ino;  /* ... and of the stable one */
	uint64_t heal_at_ms; /* the next look at both (fetch_run_dir_heal) */
	uint64_t ns_look_at_ms; /* the next look at our mount namespace (fetch_ns_abandoned) */
	int ns_private;		/* 1: not init's mount namespace, 0: init's, -1: not known yet */
	char sock_name[128], sock2_name[128];
	char sock2_path[PATH_MAX];
	char log_path[PATH_MAX];
	struct fetch_shared *sh;
	/* Trimming (trim.c), made by the holder and shared by every worker (MAP_SHARED): */
	uint64_t trim_unit, trim_nunits; /* the blob in units of trim_unit bytes */
	uint64_t *last_read;		 /* per unit: ms of its last allowed read (atomic) */
	struct cache_bitmap pinned;	 /* per unit: holds metadata, never trimmed */
	/* cache-max (util_cache_max, read with those): kept while reads fill the cache */
	struct util_size budget;
	bool have_budget;
	uint64_t budget_fetched, budget_at_ms, budget_trim_ms; /* the housekeeper's */

	/* ---- worker only ---- */
	pthread_mutex_t lock;	   /* guards everything below marked (lock) and sh->mounts */
	pthread_mutex_t flush_mutex; /* one bitmap flush at a time (verify.c) */
	/* Held shared from the moment an event's bits are tested (or a request is collected) to
	 * its answer; the trimmer holds it exclusively while it clears bits (trim.c). Taken
	 * before d->lock, never while holding it. */
	pthread_rwlock_t answer_gate;
	pthread_cond_t kick_cond;    /* new work, when there is no reader to wake (lock) */
	pthread_cond_t done_cond;  /* dispatchers wait for free slots, ensure waiters (lock) */
	struct fetch_sched sched;  /* (lock) */
	struct fetch_req pool[FETCH_MAX_EVENTS]; /* index == journal slot */
	/* (lock) Free slots below sh->journal_hi, a stack: the lowest are handed out first
	 * (fetch_slots_init), and sh->journal_hi when it is empty. */
	int free_slots[FETCH_MAX_EVENTS];
	size_t nfree;				 /* (lock) */
	unsigned nensure;			 /* (lock) ensure requests waiting */
	unsigned holds;				 /* (lock) connections holding the daemon */
	unsigned fills;	/* (lock) connections that asked for the background fill ("fill") */
	int last_errno;	/* (lock) the last failed fetch: -errno (0: none yet) */
	char last_error[256]; /* (lock) ... and what the registry client said */
	unsigned conns;				 /* (lock) open control connections */
	bool leaving;	/* (lock) no more holds: the daemon is about to leave */
	bool stopping;	/* (lock) threads finish what is queued and end */
	bool unlocked;	/* (lock) the entry lock was given up for the exit verification */
	bool verify_started;	   /* set under lock (with trimming); read atomically */
	bool trimming;		   /* (lock) a trim is under way: no verification starts */
	int stop_efd;		   /* eventfd: wakes poll loops at exit */
	int disp_epfd[FETCH_DISPATCHERS]; /* each dispatcher's epoll (fetch_dispatchers_prepare) */
	unsigned disp_next;		  /* the next dispatcher to start takes that epoll */
	/* Opens of the data file seen by the event threads (FAN_OPEN, FAN_CLOSE_WRITE arrive on
	 * the pre-content group too: one fanotify group per daemon), for the control loop,
	 * which open_efd wakes. */
	struct fetch_open_note {
		pid_t pid;
		uint32_t mask;
	} opens[16];		   /* (lock) */
	unsigned nopens;	   /* (lock) */
	int open_efd;
	struct oci_client *client; /* NULL when the entry is complete (nothing to fetch) */
	struct oci_reader *reader; /* the transfer engine's; set before the threads start */
	/* The transfer engine's state of each scheduler job in flight (index == job index):
	 * transfer thread only. */
	struct fetch_xfer {
		struct fetch_daemon *d;
		struct fetch_job *job;
		uint64_t since_wake;
		uint64_t started_us, first_byte_us; /* request sent, first byte received */
		uint64_t fetched_at_first; /* sh->fetched_bytes just before that first byte */
		/* The first write of the job's bytes that failed: -errno (0: none). Nothing more of
		 * the job is written or made present after it (store()). */
		int write_err;
		/* Bytes received and not yet written (transfer.c, stage_*): a stage of the
		 * pool while the job has one, else NULL. */
		uint8_t *stage;
		uint64_t stage_off; /* where they go */
		size_t stage_len;
		size_t stage_run; /* the run they are of */
		/* Bytes of each run received; last, like the job's runs: only the entries of
		 * the runs a job has are touched (8 KiB each, mostly never backed). */
		uint64_t written[FETCH_BATCH_RUNS];
	} xfers[FETCH_MAX_JOBS];
	/* Stages for the large jobs' bytes (transfer.c): made when first needed, then kept, the
	 * free ones here (transfer thread only). */
	uint8_t *stage_pool[FETCH_STAGES];
	unsigned nstage_free, nstage_made;
	uint64_t room_ms;	   /* when the transfer thread last set sched.room (transfer.c) */
	struct fetch_files *files; /* (lock) the mount's file index (files.h), or NULL */
	struct fetch_record record;	 /* first accesses (record.h; its own lock) */
	struct fetch_record_store *record_store; /* its ranges, shared with the holder */
	struct fetch_replay replay;	 /* (lock) the startup profile replayed (sched.h) */
	struct util_extent *replay_v;	 /* (lock) its ranges */
	struct cache_bitmap *replay_mine; /* blocks the replay fetched (atomic bits); published
					   * once, with an atomic store, when a replay starts */
	uint8_t files_digest[32];  /* (lock) sha256 of its encoding */
	/* predict.c: readers waiting for the network whose program may be starting */
	pid_t predict_q[FETCH_PREDICT_QUEUE]; /* (lock) */
	unsigned predict_n;		       /* (lock) */
	/* (lock) threads reading another layer's objects ahead (predict.c), whether a
	 * prediction still waits for them or not */
	unsigned foreign_threads;
	pthread_cond_t predict_cond;	       /* with d->lock: predict_q has a pid */
	struct fetch_kept *files_kept;	 /* its encoding, shared with the holder, or NULL */
	struct fetch_kept *profile_kept; /* the profile replayed, shared with the holder, or NULL */
	uint64_t rescan_at[3];	   /* main loop only: mountinfo rescans due */
	pid_t openers[8];	   /* main loop only: recent openers of the data file (their
				    * mount namespace may not be ours) */
	pthread_t textfile;	   /* the metrics directory's writer (textfile.c), when */
	bool textfile_started;	   /* ... started: main thread only */
	bool leaving_cgroup;	   /* (lock) fetch_leave_caller_cgroup_start's thread runs */
};

/* holder.c */
/* The worker's thread that takes the daemon (holder and worker) out of its caller's cgroup,
 * so that stopping the caller's unit (or cgroup.kill) does not take it. Started before the
 * worker reports ready: a move into another cgroup waits for an RCU grace period (5-28 ms
 * here), which a mount then spends on its metadata instead of waiting. */
void fetch_leave_caller_cgroup_start(struct fetch_daemon *d);
/* Wait until it has: before the worker answers a mount's last question before the kernel
 * mount (control.c, before_mount: the daemon is out before anything is mounted) and before
 * it leaves. */
void fetch_left_caller_cgroup(struct fetch_daemon *d);
int fetch_spawn(const struct fetch_config *cfg, int cache_dirfd, int run_dirfd, int lock_fd,
		pid_t *ret_pid, struct util_error *err);
/* The fds every daemon process keeps (same numbers in all of them); returns how many. */
size_t fetch_essential_fds(const struct fetch_daemon *d, int *out, size_t max);
void fetch_close_all_but(const int *keep, size_t n);
/* Unlink the discovery socket if the name is still ours (a newer daemon may have it). */
void fetch_unlink_discovery(struct fetch_daemon *d);
/* Every FETCH_HEAL_MS: when our sockets left the run directory (emptied or removed under
 * us), bind them again and write the state files of our mounts that are gone. Control
 * thread only. */
#define FETCH_HEAL_MS 2000
void fetch_run_dir_heal(struct fetch_daemon *d, uint64_t now_ms);
/* The holder's part: its run directory fd and log made current (a replacement worker forked
 * from it then starts with them), no sockets. */
void fetch_run_dir_refresh(struct fetch_daemon *d);
/* The holder, every FETCH_HEAL_MS while its worker lives: the sockets the worker made again
 * taken from it (pidfd_getfd, same fd numbers), so that a replacement forked from the holder
 * listens where clients look, and those queue for it meanwhile. */
void fetch_holder_follow(struct fetch_daemon *d, int worker_pidfd);
/* Every FETCH_NS_LOOK_MS, in a mount namespace other than init's (a container's, a unit's
 * PrivateMounts=): when no process but the daemon's own is left in it, unmount everything in
 * it, as its end would have without the daemon in it (the daemon's membership alone kept it,
 * its mounts and their superblocks, so the daemon never left). Control thread only. */
#define FETCH_NS_LOOK_MS 5000 /* ($LAZYEROFS_NS_LOOK_MS for tests) */
void fetch_ns_abandoned(struct fetch_daemon *d, uint64_t now_ms);

/* client.c */
/* A socket path nobody listens on any more (connect: ECONNREFUSED). */
bool fetch_socket_is_stale(const char *path);
/* The status reply's keys (status.c: fetch_fill_status) read back: what fetch_status() gives a
 * client, and the daemon's own metrics file. */
void fetch_status_parse(json_t *reply, struct fetch_status *ret);

/* guard.c */
int fetch_pidfd_open(pid_t pid);
/* Wait up to timeout_ms (-1: without limit; 0: only look) for the process behind pidfd to
 * exit, or for wake_fd (-1: none) to become readable (it is not read): FETCH_PID_GONE and/or
 * FETCH_PID_WOKEN, or 0 when the time ran out. A poll that fails counts as gone (nothing is
 * left to wait with); an interrupted one waits again for the time left. */
#define FETCH_PID_GONE	1
#define FETCH_PID_WOKEN 2
int fetch_pidfd_wait(int pidfd, int wake_fd, int timeout_ms);
/* The holder role: watch the worker (pid, pidfd; 0/-1: start one) and replace it when it
 * dies; returns when the worker left normally. */
_Noreturn void fetch_holder_loop(struct fetch_daemon *d, pid_t worker, int pidfd);
/* The worker's thread that watches the holder and forks a new one when it dies. */
void *fetch_guard_thread(void *arg);

/* takeover.c */
void fetch_takeover_prepare(struct fetch_daemon *d);
/* Serve the journaled events again (called once the scheduler exists). */
void fetch_takeover_serve(struct fetch_daemon *d);

/* worker.c */
_Noreturn void fetch_worker_main(struct fetch_daemon *d, bool takeover);
bool fetch_term_requested(void); /* SIGTERM received */

/* dispatch.c */
/* The free journal slots of a starting worker: those below sh->journal_hi that no event holds
 * (a dead predecessor's events keep theirs). */
void fetch_slots_init(struct fetch_daemon *d);
/* Each dispatcher's epoll instance (after stop_efd): -errno. */
int fetch_dispatchers_prepare(struct fetch_daemon *d);
void *fetch_dispatcher_thread(void *arg);
/* The one exit path of every request: answer events (exactly once), wake ensure waiters. */
void fetch_answer_batch(struct fetch_daemon *d, struct fetch_req **v, size_t n);
/* Collect from the scheduler and answer whatever is finished now. */
void fetch_settle(struct fetch_daemon *d);
/* Events of the group that are notifications (open, close after writing): no answer. */
#define FETCH_NOTIFY_EVENTS (FAN_OPEN | FAN_CLOSE_WRITE)

/* transfer.c */
void *fetch_transfer_thread(void *arg);
void *fetch_token_thread(void *arg);
void fetch_kick(struct fetch_daemon *d); /* new work for the transfer engine (any thread) */

/* textfile.c: the entry's metrics in the metrics directory (cfg.metrics_dir), written by a
 * thread of their own until stop_efd is written; stop waits a little for the file's removal. */
void fetch_textfile_start(struct fetch_daemon *d);
void fetch_textfile_stop(struct fetch_daemon *d);

/* verify.c */
void *fetch_housekeeper_thread(void *arg);
int fetch_entry_flush(struct fetch_daemon *d, bool full);
/* A complete entry is verified before the daemon leaves (the entry lock given up first). */
void fetch_exit_verify(struct fetch_daemon *d);
int fetch_remove_mark(struct fetch_daemon *d);
/* Someone else changed the cache files (`why`): deny every read with EIO from now on, set the
 * entry aside as bad, and let new mounts start a fresh one. */
void fetch_entry_tampered(struct fetch_daemon *d, const char *why);
/* A daemon process (holder or worker) cannot go on: log why, tell whoever waits for readiness
 * ("ERR <errno> <message>" on the ready pipe) and exit. */
_Noreturn void fetch_fatal(struct fetch_daemon *d, int err, const char *fmt, ...) _printf_(3, 4);

/* trim.c (and trim.h) */
int fetch_trim_init(struct fetch_daemon *d); /* the holder, once the entry is open */
/* An allowed read of [off, off + len): stamps its units (under answer_gate). */
void fetch_trim_note(struct fetch_daemon *d, uint64_t off, uint64_t len);
/* The image's metadata: never trimmed. */
void fetch_trim_pin(struct fetch_daemon *d, const struct util_extent *v, size_t n);
int fetch_trim_request(struct fetch_daemon *d, int cfd, json_t *req);
/* The housekeeper, each tick: the cache within cache-max while reads fill it. */
void fetch_budget_keep(struct fetch_daemon *d, uint64_t now_ms);
void fetch_trim_status(struct fetch_daemon *d, json_t *o);

/* status.c */
/* The status reply's keys into o; with mounts, "mount_list" too (each mount's id, mountpoint and
 * source: up to 4,096 of them, for the metrics file; not in replies, which would outgrow
 * FETCH_REPLY_MAX with long paths). */
void fetch_fill_status(struct fetch_daemon *d, json_t *o, bool mounts);

/* metrics.c: the latency histogram and the failure kinds, recorded in struct fetch_shared
 * (atomics), reported in the status reply and read back from it by the client. */
/* An event read at read_us (util_now_us) was answered now. */
void fetch_latency_observe(struct fetch_shared *sh, uint64_t read_us);
void fetch_failure_count(struct fetch_shared *sh, enum fetch_fail_kind k);
/* fetch_metrics_json's keys from the shared counters into o; and read back from a reply. */
void fetch_metrics_status(struct fetch_shared *sh, json_t *o);
void fetch_metrics_parse(json_t *reply, struct fetch_status *ret);

/* mounts.c (all under d->lock unless said otherwise) */
struct fetch_mount_rec *fetch_rec_by_dev(struct fetch_daemon *d, uint64_t dev);
struct fetch_mount_rec *fetch_rec_new(struct fetch_daemon *d);
unsigned fetch_rec_count(struct fetch_daemon *d);
/* An inotify watch on a superblock's root (path: the mountpoint or /proc/self/fd/N). */
int fetch_watch_root(struct fetch_daemon *d, const char *path, int *ret_wd);
void fetch_set_str(char *dst, size_t len, const char *src);
/* Rescan the mount namespaces of recent openers for superblocks of the data file. */
void fetch_mounts_rescan(struct fetch_daemon *d);
/* Whether a recent opener of the data file is still there (its mount may be under way): one
 * that exited either made its mount (a rescan lists it) or never will (a mount that failed). */
bool fetch_mount_may_come(struct fetch_daemon *d);
/* Main loop only (they take d->lock themselves): superblocks released, opens reported. */
void fetch_read_inotify(struct fetch_daemon *d);
bool fetch_read_opens(struct fetch_daemon *d);

/* control.c */
void fetch_control_loop(struct fetch_daemon *d);
/* Fetch what of v[0..n) is missing and wait until it is present (or failed: -errno), like a
 * mount's "ensure" request; its bytes do not go into the record. */
int fetch_ensure(struct fetch_daemon *d, const struct util_extent *v, size_t n);
/* The same for a control connection's client (peer_fd): a client that goes away ends its
 * wait (-ETIMEDOUT) instead of the fetch's own deadline. */
int fetch_ensure_for(struct fetch_daemon *d, const struct util_extent *v, size_t n, int peer_fd);
/* The same in two steps, d->lock held: start (1: nothing to fetch; 0: queued, v stays valid
 * and en in place until en->done, then fetch_ensure_end gives the result; -errno; paced:
 * bytes fetched ahead of need, see fetch_req.paced) ... */
int fetch_ensure_start(struct fetch_daemon *d, struct fetch_ensure *en, const struct util_extent *v,
		       size_t n, bool paced);
int fetch_ensure_end(struct fetch_daemon *d, struct fetch_ensure *en);

/* predict.c: a program started from one of our mounts gets its shared objects fetched ahead
 * of its dynamic loader, all at once, and theirs as each arrives. */
/* A read by pid is waiting for the network (d->lock held). */
void fetch_predict_note(struct fetch_daemon *d, pid_t pid);
void *fetch_predict_thread(void *arg);

/* kept.c: bytes a worker accepted that a replacement takes up again, in memory shared with
 * the holder (allocated before the first fork). */
struct fetch_kept {
	uint64_t len; /* (atomic) 0: none (or being replaced) */
	uint64_t max;
	uint8_t digest[32]; /* of buf, when the writer gave one */
	uint8_t buf[];	    /* max bytes, backed only as far as written */
};
struct fetch_kept *fetch_kept_new(size_t max);
void fetch_kept_put(struct fetch_kept *k, const void *buf, size_t len, const uint8_t *digest);
size_t fetch_kept_len(const struct fetch_kept *k);

/* files_ctl.c: the "files" request (fd: the sealed memfd passed with it), and freeing the
 * index at exit. The encoding the worker accepted last is kept (d->files_kept), and a
 * replacement worker parses it again (fetch_files_restore). */
struct fetch_files;
int fetch_files_request(struct fetch_daemon *d, int cfd, int fd);
void fetch_files_restore(struct fetch_daemon *d);
void fetch_files_drop(struct fetch_daemon *d);

/* profile_ctl.c: the record of first accesses and the replay of a startup profile (control
 * requests "profile_get" and "profile_replay" with a sealed memfd), their status keys. The
 * profile being replayed is kept (d->profile_kept), and a replacement worker replays it
 * again (fetch_profile_restore: what is present is not fetched twice). */
int fetch_profile_init(struct fetch_daemon *d);
void fetch_profile_restore(struct fetch_daemon *d);
void fetch_profile_note(struct fetch_daemon *d, uint64_t first, uint64_t nblk);
/* An event answered well: count it when replay brought some of its bytes. */
void fetch_profile_answered(struct fetch_daemon *d, const struct fetch_req *r);
int fetch_profile_get_request(struct fetch_daemon *d, int cfd);
int fetch_profile_replay_request(struct fetch_daemon *d, int cfd, int fd);
void fetch_profile_status(struct fetch_daemon *d, json_t *o);
void fetch_profile_drop(struct fetch_daemon *d);

/* proto.c */
struct sockaddr_un;
/* A unix socket address for path; paths longer than sun_path go through /proc/self/fd of an
 * opened parent directory (*ret_dirfd, to close after bind/connect). */
int fetch_unix_addr(const char *path, struct sockaddr_un *sa, int *ret_dirfd);
/* The address of `name` in the directory dirfd, through /proc/self/fd (-ENAMETOOLONG when
 * even that does not fit sun_path). */
int fetch_unix_addr_at(int dirfd, const char *name, struct sockaddr_un *sa);
int fetch_proto_send(int fd, json_t *msg, int pass_fd);
/* An error reply {"ok":false,"errno":err,"error":message}. */
int fetch_reply_error(int fd, int err, const char *fmt, ...) _printf_(3, 4);
/* Data handed over in a memfd sealed against writes and resizing: made by the sender... */
int fetch_sealed_new(const char *name, const void *buf, size_t len, int *ret_fd);
/* A request {"op": op} with buf in a sealed memfd; its reply. */
int fetch_proto_call_sealed(int fd, const char *op, const void *buf, size_t len,
			    json_t **ret_reply, struct util_error *err);
/* ... and read by the receiver, which checks the seals and a size cap (what: for messages). */
int fetch_sealed_read(int fd, size_t max, const char *what, uint8_t **ret_buf, size_t *ret_len,
		      struct util_error *err);
/* Read one line (without the newline) up to max bytes; *ret_fd receives an fd passed with
 * it (or -1). -ECONNRESET on EOF. */
struct fetch_linebuf {
	char *buf;
	size_t len, alloc;
};
int fetch_proto_recv_line(int fd, struct fetch_linebuf *lb, size_t max, char **ret_line,
			  size_t *ret_len, int *ret_fd);
void fetch_linebuf_free(struct fetch_linebuf *lb);
/* Send a request (with pass_fd unless -1) and read its reply; an fd passed with the reply goes
 * to *ret_fd (-1 if none), or is closed when ret_fd is NULL. */
int fetch_proto_call(int fd, json_t *req, int pass_fd, json_t **ret_reply, int *ret_fd,
		     struct util_error *err);

#endif
