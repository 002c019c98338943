/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * The daemon's scheduler, pure logic without threads or I/O: requests waiting for byte ranges
 * (fanotify events, ensure batches), fetch jobs in flight (the coalescing table, at most the
 * policy's budget of requests), the choice of the next job (demand first, waiting reads
 * sharing requests when they outnumber the free ones; then read-ahead; then background
 * fill), what a read fetches (by file with the mount's file index, else by chunk),
 * sequential-stream detection, read-ahead sized by the measured link, retries with backoff
 * and deadlines. The caller serializes every call with one mutex and does the fetching, the
 * writing and the answering itself.
 */
#ifndef LAZYEROFS_FETCH_SCHED_H
#define LAZYEROFS_FETCH_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "oci/oci.h"
#include "util/extents.h"
#include "util/u64map.h"

#define FETCH_MAX_RUNS	   64	/* ranges in a demand, read-ahead or background job */
#define FETCH_BATCH_RUNS   1024 /* ranges in an ensure job: one request, as many ranges as
				 * its Range header takes (OCI_RANGE_HEADER_MAX) */
#define FETCH_MAX_JOBS	   128 /* jobs in flight, at most (the policy's budget is lower) */
#define FETCH_MAX_STREAMS  64  /* sequential readers tracked */
#define FETCH_RA_QUEUE	   64  /* read-ahead windows waiting for a request */
#define FETCH_MAX_ATTEMPTS 8   /* fetch attempts for one request before it fails */

/* How long, at most, a range that failed to fetch is denied without a new fetch (the window is
 * the smaller of this and the timeout; the reasoning is in fetch_sched_init). */
#define FETCH_FAIL_WINDOW_MS 2000
/* A read that arrives while another read's request has just left waits this long at most for
 * company (pick_demand). */
#define FETCH_GATHER_MS 2

struct fetch_policy {
	uint64_t chunk_size;	/* demand unit for reads: power of two, >= 4 KiB */
	uint64_t max_job_bytes; /* payload cap of one job (read-ahead, background, ensure) */
	uint64_t ra_initial;	/* first read-ahead window of a sequential stream */
	uint64_t ra_max;	/* largest read-ahead window */
	unsigned max_requests;	   /* jobs (HTTP requests) in flight at once: the budget */
	unsigned host_connections; /* connections to the registry at once (0: max_requests) */
	unsigned max_side_jobs;	   /* read-ahead + background jobs in flight at once */
	uint64_t timeout_ms;	/* per-request deadline */
	bool prefetch_all;	/* background fill */
};

void fetch_policy_default(struct fetch_policy *p);
/* Round and clamp a policy to sane values (tests and env overrides feed it anything). */
void fetch_policy_fix(struct fetch_policy *p);

enum fetch_req_kind {
	FETCH_REQ_EVENT,  /* a fanotify permission event: one range */
	FETCH_REQ_ENSURE, /* an ensure batch from the control socket: many ranges */
};

struct fetch_req {
	enum fetch_req_kind kind;
	int fd;			     /* event fd to answer (events) */
	int pid;		     /* events: the reader's process (0: not known) */
	int slot;		     /* caller's slot index (journal / pool) */
	const struct util_extent *v; /* byte ranges, sorted, within the blob */
	size_t n;
	struct util_extent one; /* storage for a single range */
	size_t cursor;		/* v[0..cursor) are known present */
	uint64_t deadline_ms;
	uint64_t read_us; /* events: when the event was read (util_now_us), for its latency */
	uint64_t next_try_ms;
	unsigned attempts;
	int error;   /* last fetch error, -errno */
	int result;  /* set when leaving the scheduler: 0 present, -errno failed */
	bool probe;  /* an event for bytes that failed moments ago: one fetch attempt tells
		      * whether the registry answers again */
	bool held;   /* such an event while a probe is under way: waits for its outcome */
	bool probe_sent; /* the probe's fetch went out */
	bool taken_over; /* read by a worker that died: it may have answered it already */
	/* An ensure of bytes fetched ahead of need (the shared objects ahead of a loader): over
	 * a long link it leaves once what readers wait on and such ensures before it would
	 * have passed the link, so that they arrive one after the other, each as soon as it
	 * can, instead of all at the end together (fetch_sched.link_free_ms). */
	bool paced;
	uint64_t added_ms; /* when fetch_sched_add took it */
	void *owner; /* caller's cookie */
};

enum fetch_job_kind {
	FETCH_JOB_DEMAND,
	FETCH_JOB_READAHEAD,
	FETCH_JOB_BACKGROUND,
	FETCH_JOB_REPLAY, /* a startup profile's ranges, ahead of the workload (replay.c) */
};

struct fetch_job {
	bool busy;
	enum fetch_job_kind kind;
	bool batch; /* one request (OCI_READ_BATCH): an ensure batch, or reads gathered */
	bool full;  /* its Range header has no room for another range */
	bool probe; /* fetched for a probe: one attempt, no retries */
	size_t nruns;
	uint64_t bytes;
	size_t header; /* characters of its Range header value ("bytes=" and the ranges) */
	uint64_t received; /* payload bytes arrived so far (the transfer thread's) */
	size_t replay_from; /* a replay job: the profile range it started at */
	/* Where each read it was made for (a demand job), or that came later for bytes it
	 * brings (fetch_sched_pick), has all its bytes: the end of the read's range in the job,
	 * sorted, so that the transfer lets it go then, not at the job's end; [0, answered)
	 * passed. The transfer thread's (picks run there too). */
	uint64_t answer_at[FETCH_MAX_RUNS];
	size_t nanswer, answered;
	/* Byte ranges, sorted, block aligned, clamped to size. Last, and never cleared beyond
	 * nruns: a job of a few ranges keeps one page of its 16 KiB in memory. */
	struct util_extent runs[FETCH_BATCH_RUNS];
};

/* A startup profile being replayed (replay.c): its ranges are fetched in their order (the
 * order a workload first needed them), in multi-range jobs, keeping about one
 * bandwidth-delay product of them in flight, behind demand reads and read-ahead. */
struct fetch_replay {
	const struct util_extent *v; /* block-aligned byte ranges, in first-access order; the
				      * caller's (kept until the daemon exits) */
	size_t n;
	size_t cursor;		   /* the next range to look at */
	uint64_t pos;		   /* ... and the block within it */
	struct cache_bitmap *mine; /* blocks replay fetched (for "reads served"); the caller's */
	uint64_t bytes;		   /* sum of the ranges' lengths */
	uint64_t fetched_bytes;	   /* fetched by replay jobs */
	uint64_t requests;	   /* replay jobs that ended well */
	unsigned in_flight;	   /* replay jobs in flight */
	unsigned attempts;	   /* failures in a row */
	uint64_t next_try_ms;
	uint64_t started_ms, done_ms; /* done_ms: 0 while under way */
	bool failed;		      /* gave up after FETCH_REPLAY_ATTEMPTS failures in a row */
};

#define FETCH_REPLAY_ATTEMPTS 4

struct fetch_stream {
	bool used;
	uint64_t next;	 /* where the next sequential read is expected */
	uint64_t window; /* current read-ahead window, 0 until the stream is sequential */
	uint64_t ra_end; /* how far read-ahead has been asked for */
	unsigned hits;
	uint64_t stamp; /* LRU */
};

struct fetch_sched {
	struct cache_bitmap *bm; /* present blocks (bits set by the caller as data lands) */
	uint64_t size, nblocks;
	struct fetch_policy pol;
	struct fetch_req **reqs; /* waiting requests, in arrival order */
	size_t nreqs, max_reqs;
	/* FETCH_MAX_JOBS jobs (2 MiB), allocated apart and never cleared whole: its pages are
	 * only backed once used, and the lowest free job is always taken, so the jobs in flight
	 * at once (the policy's budget) are all that ever is. */
	struct fetch_job *jobs;
	unsigned njobs, nside, nbackground;
	struct util_extent ra[FETCH_RA_QUEUE]; /* read-ahead byte windows, oldest first */
	size_t nra;
	struct fetch_stream streams[FETCH_MAX_STREAMS];
	uint64_t clock;
	uint64_t bg_cursor; /* next block the background fill looks at */
	uint64_t bg_next_try_ms;
	unsigned bg_attempts;
	/* Reads that failed for readers (after the bounded retries, or their time ran out):
	 * the chunks their fetches asked for (chunk index -> when_ms << 12 | errno), and which
	 * process failed in which of them (pid << 42 | chunk -> when_ms). Every failure, however
	 * many readers failed at once: each one forgotten would make its reader's next ask wait
	 * a whole timeout again (400 readers, timeout=6 s, a stalled registry: EIO after up to
	 * 14 s with 16 remembered). Entries live fail_window_ms; pruned as the maps grow, all
	 * forgotten when a fetch succeeds. The kernel asks for a failed read's rest in pieces,
	 * each once the one before is answered: where a process's failed read ended, so that
	 * the next piece is known for one of the same read(2) in whichever chunk it lies
	 * (pid << 42 | block after the read -> when_ms << 12 | errno). */
	struct util_u64map failed, failed_by, failed_next;
	size_t failed_prune_at, failed_by_prune_at, failed_next_prune_at; /* (fail_put) */
	uint64_t fail_window_ms; /* MIN(FETCH_FAIL_WINDOW_MS, timeout) */
	struct fetch_req *probe; /* the probe under way, or NULL */
	/* The link as measured by the jobs that ended (fetch_sched_link_sample): round trip
	 * (the smallest time from request to first byte) and throughput (what all requests
	 * received while one's body arrived, smoothed); 0 = unknown. */
	uint64_t link_rtt_us;
	uint64_t link_bytes_per_s;
	uint64_t demand_sent_ms; /* when the last demand job went out */
	/* When the link will have carried the bytes of the demand jobs sent so far, each from
	 * a round trip after it went out, at link_bytes_per_s (0: not known): what a
	 * speculative request waits for, so that it does not share the link's queue with what
	 * readers wait on (note_link_use). */
	uint64_t link_free_ms;
	/* Over a long link, the small files beside the one a read fetches travel in a request
	 * of their own, sent with the read's (pick_neighbours): the read has its bytes after a
	 * round trip and its own, not after theirs too. Byte ranges, waiting for that request. */
	struct util_extent nb[FETCH_MAX_RUNS];
	size_t nnb;
	uint64_t nb_due_ms;	 /* ... sent from then, and once the link is free (link_free_ms) */
	bool gathering;		 /* this pick: a read waits for company, and the reads after it
				  * and read-ahead wait with it */
	/* The mount's file index (files.h), or NULL: a read fetches its file's data, not the
	 * blob bytes that happen to sit next to it. Owned by the caller. */
	const struct fetch_files *files;
	/* A startup profile replayed, or NULL (the caller's, set by fetch_sched_replay). */
	struct fetch_replay *replay;
	/* Bytes the cache disk may still take beyond its reserve (cache_entry_room, set by the
	 * caller; UINT64_MAX: no limit). What is fetched ahead of need -- read-ahead, a file's
	 * rest, its neighbours, a replay, the background fill -- stays within it, less what the
	 * jobs in flight will still write: a small cache disk is left to what readers wait for. */
	uint64_t room;
};

/* A new per-read deadline for the requests added from now on. */
void fetch_sched_set_timeout(struct fetch_sched *s, uint64_t ms);
int fetch_sched_init(struct fetch_sched *s, struct cache_bitmap *bm, uint64_t size,
		     const struct fetch_policy *pol, size_t max_reqs);
void fetch_sched_destroy(struct fetch_sched *s);

/* Is every byte of req present? Advances req->cursor. */
bool fetch_req_satisfied(struct fetch_sched *s, struct fetch_req *req);

/* Queue a request. 1: already satisfied (not queued; answer it now); 0 queued; -ENOSPC full;
 * for an event only, -EIO (req->result set; not queued, no fetch: deny it now) when one of its
 * missing blocks failed to fetch less than fail_window_ms ago (see fetch_sched_collect). */
int fetch_sched_add(struct fetch_sched *s, struct fetch_req *req, uint64_t now_ms);

/* Choose the next job for a free request and mark its ranges in flight; NULL when there is
 * nothing to do now (then *ret_wake_ms says when a retry becomes due, or UINT64_MAX). */
struct fetch_job *fetch_sched_pick(struct fetch_sched *s, uint64_t now_ms, uint64_t *ret_wake_ms);

/* A job ended: err 0 (all its ranges were written and their bits set) or -errno. Requests
 * touching a failed job back off and retry, or fail at once on a permanent error. */
void fetch_sched_job_done(struct fetch_sched *s, struct fetch_job *job, int err, uint64_t now_ms);

/* Remove up to max requests that are now satisfied (result 0) or have failed (result < 0:
 * permanent error, too many attempts, or deadline passed). Returns how many. A failed event
 * whose fetches failed (not one that merely ran out of time while its fetch was under way) is
 * remembered for fail_window_ms: the chunk windows its reads fetch. A job that succeeds
 * forgets every remembered failure (the registry answers again). */
size_t fetch_sched_collect(struct fetch_sched *s, uint64_t now_ms, struct fetch_req **out,
			   size_t max);

/* Remove every waiting request (shutdown), result -EIO. */
size_t fetch_sched_drain(struct fetch_sched *s, struct fetch_req **out, size_t max);

/* Record a read at [off, off + len): detects sequential streams and queues read-ahead.
 * Returns true when read-ahead was queued (kick the transfer engine). */
bool fetch_sched_note_read(struct fetch_sched *s, uint64_t off, uint64_t len);
/* Record a read that was answered from present blocks (fast path): it only advances a stream
 * whose read-ahead a missing read already started, and never creates or starts one. Returns
 * true when read-ahead was queued. */
bool fetch_sched_note_hit(struct fetch_sched *s, uint64_t off, uint64_t len);

/* A job of `bytes` ended well: it took ttfb_us from its request to its first byte, then
 * body_us for its bytes, while all jobs together received link_bytes (its own among them).
 * Feeds the link estimate that sizes read-ahead: windows of at least two bandwidth-delay
 * products, so that a sequential reader on a long link never waits a round trip, split into
 * requests that keep several connections busy. */
void fetch_sched_link_sample(struct fetch_sched *s, uint64_t ttfb_us, uint64_t body_us,
			     uint64_t bytes, uint64_t link_bytes);
/* Bytes in flight that keep the link busy for one round trip (0 while unknown). */
uint64_t fetch_sched_bdp(const struct fetch_sched *s);
/* Bytes the jobs of this kind in flight asked for and have not received yet. */
uint64_t fetch_sched_unreceived(const struct fetch_sched *s, enum fetch_job_kind kind);
/* Is the cache disk too full for anything fetched ahead of need (fetch_sched.room)? */
bool fetch_sched_room_short(const struct fetch_sched *s);
/* The largest file fetched whole once a program reads it in several places (four
 * bandwidth-delay products, at least 4 MiB, at most the read-ahead limit). */
uint64_t fetch_sched_whole_limit(const struct fetch_sched *s);
/* Whether a startup profile's replay fetched some of these byte ranges (s->replay->mine). */
bool fetch_sched_replay_brought(const struct fetch_sched *s, const struct util_extent *v,
				size_t n);

/* Start replaying rp->v[0..n) (replay.c; rp->mine, v, n and bytes set by the caller). */
void fetch_sched_replay(struct fetch_sched *s, struct fetch_replay *rp, uint64_t now_ms);
/* 1 while a replay is under way, 0 when there is none or it is over. */
bool fetch_replay_active(const struct fetch_replay *rp);

/* Is [first, first + n) (blocks) covered by jobs in flight? */
bool fetch_sched_in_flight(const struct fetch_sched *s, uint64_t first_block, uint64_t n);
/* Does any job in flight touch a block of [first, first + n)? */
bool fetch_sched_overlaps_flight(const struct fetch_sched *s, uint64_t first_block, uint64_t n);

/* The chunk-aligned window [start, end) holding byte `off`, clamped to size. */
void fetch_chunk_window(uint64_t off, uint64_t chunk, uint64_t size, uint64_t *ret_start,
			uint64_t *ret_end);

/* Backoff before retry number `attempt` (1-based), in ms. */
uint64_t fetch_backoff_ms(unsigned attempt);
/* Errors that no retry can cure (404, 401/403, changed URL object, bad media type). */
bool fetch_error_permanent(int err);

#endif
