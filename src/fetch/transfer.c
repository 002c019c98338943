// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The transfer engine: one thread turns the scheduler's jobs into HTTP range requests on one
 * libcurl multi handle (oci_reader), up to the policy's budget of requests in flight, and
 * writes what arrives through the pre-mark fd. Concurrency is bounded by requests, not by
 * threads: a reader waiting on a slow registry never holds up another reader's request, and
 * the dispatchers (dispatch.c) never wait on the network. Every job ends in
 * fetch_sched_job_done(), then the requests it served are answered (fetch_settle).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "fetch/internal.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

#define WAKE_EVERY (1u << 20) /* let waiting readers go every MiB of a job's progress */

void fetch_kick(struct fetch_daemon *d)
{
	if (d->reader)
		oci_reader_wakeup(d->reader);
	else
		pthread_cond_broadcast(&d->kick_cond);
}

/* A large job's bytes are written in stages of FETCH_STAGE_BYTES, aligned in the blob, not
 * in the pieces libcurl hands over (16 KiB each): a 512 MiB file cold on loopback took
 * 32,000 writes, and each piece of the cache file's page cache they made cost ext4 and the
 * kernel's read of it again (writing 544 MiB in 16 KiB pieces: 0.25 s, in 256 KiB ones: 0.09
 * s). A stage is written out whenever a reader waits for what it holds, when its run ends,
 * and at the end of each round of the engine (oci_reader_set_round_cb), before it waits:
 * over a slow link a round brings a few KiB, which go at once, as before. */
#define STAGE_MIN_JOB (1u << 20) /* jobs at least this large get a stage */

static void stage_take(struct fetch_daemon *d, struct fetch_xfer *x)
{
	x->stage = NULL;
	x->stage_len = 0;
	if (x->job->bytes < STAGE_MIN_JOB)
		return;
	if (d->nstage_free)
		x->stage = d->stage_pool[--d->nstage_free];
	else if (d->nstage_made < FETCH_STAGES && (x->stage = malloc(FETCH_STAGE_BYTES)))
		d->nstage_made++;
}

static void stage_give_back(struct fetch_daemon *d, struct fetch_xfer *x)
{
	if (x->stage)
		d->stage_pool[d->nstage_free++] = x->stage;
	x->stage = NULL;
}

/* Write bytes of run i at offset, and let the run's whole blocks up to their end count as
 * present: every byte of the run before them was written, unless a write failed, after which
 * nothing more of the job is written. A failed write between the job's pieces
 * (stage_flush_all) does not stop the transfer at once; had a later write then marked the run
 * from its start, the blocks that failed would count as present, holes read as zeros. */
static int store(struct fetch_xfer *x, size_t i, const void *data, size_t len, uint64_t offset)
{
	const struct util_extent *run = &x->job->runs[i];
	uint64_t end = offset + len, first = run->offset / CACHE_BLOCK_SIZE;
	uint64_t done_end = end == run->offset + run->length ? DIV_ROUND_UP(end, CACHE_BLOCK_SIZE)
							     : end / CACHE_BLOCK_SIZE;
	int r;

	if (x->write_err < 0)
		return x->write_err;
	r = cache_entry_store(x->d->entry, data, len, offset, first,
			      done_end > first ? done_end - first : 0);
	if (r < 0)
		x->write_err = r;
	return r;
}

static int stage_flush(struct fetch_xfer *x)
{
	size_t len = x->stage_len;

	if (!len)
		return 0;
	x->stage_len = 0;
	return store(x, x->stage_run, x->stage, len, x->stage_off);
}

static void stage_flush_all(void *ctx)
{
	struct fetch_daemon *d = ctx;

	for (size_t i = 0; i < FETCH_MAX_JOBS; i++)
		if (d->xfers[i].stage_len)
			(void)stage_flush(&d->xfers[i]); /* a failure stops the job (store) */
}

/* Bytes of run i arrive at offset (where the run's bytes so far end): into the stage, written
 * out as it reaches an aligned end or the run's. */
static int stage_put(struct fetch_xfer *x, size_t i, const uint8_t *data, size_t len,
		     uint64_t offset)
{
	const struct util_extent *run = &x->job->runs[i];
	int r;

	if (x->stage_len && (x->stage_run != i || x->stage_off + x->stage_len != offset)) {
		r = stage_flush(x);
		if (r < 0)
			return r;
	}
	while (len) {
		uint64_t at, stop;
		size_t n;

		if (!x->stage_len) {
			x->stage_off = offset;
			x->stage_run = i;
		}
		at = x->stage_off + x->stage_len;
		stop = MIN(ROUND_DOWN(x->stage_off, FETCH_STAGE_BYTES) + FETCH_STAGE_BYTES,
			   run->offset + run->length);
		n = (size_t)MIN((uint64_t)len, stop - at);
		memcpy(x->stage + x->stage_len, data, n);
		x->stage_len += n;
		data += n;
		offset += n;
		len -= n;
		if (at + n == stop) {
			r = stage_flush(x);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Bytes of a job arrive: write them (or stage them), and let whole blocks count as present
 * once written. */
static int job_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct fetch_xfer *x = ctx;
	struct fetch_job *job = x->job;
	size_t lo = 0, hi = job->nruns;
	const struct util_extent *run;
	bool answered = false;
	int r;

	/* The run holding `offset` (runs are sorted and disjoint). */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (job->runs[mid].offset <= offset)
			lo = mid;
		else
			hi = mid;
	}
	run = &job->runs[lo];
	if (offset != run->offset + x->written[lo] || len > run->length - x->written[lo])
		return -EBADMSG; /* not the bytes asked for, or not in order */
	if (x->write_err < 0)
		return x->write_err; /* the cache file refused some: the job fails */
	/* Whole blocks written so far become present with this write: a reader waiting on the
	 * start of a large read-ahead job need not wait for its end. The page cache makes the
	 * bytes visible at once; durability is the flusher's business. */
	r = x->stage ? stage_put(x, lo, data, len, offset) : store(x, lo, data, len, offset);
	if (r < 0)
		return r;
	if (!x->first_byte_us) {
		x->first_byte_us = util_now_us();
		x->fetched_at_first = SH_LOAD(x->d->sh->fetched_bytes); /* only job_sink adds */
	}
	x->written[lo] += len;
	job->received += len;
	SH_ADD(x->d->sh->fetched_bytes, len);
	x->since_wake += len;
	/* A read the job was made for, or one that came for bytes it brings, has them (runs
	 * arrive in order): let it go now, not after the rest of the job. */
	while (job->answered < job->nanswer && job->answer_at[job->answered] <= offset + len) {
		job->answered++;
		answered = true;
	}
	if (answered || x->since_wake >= WAKE_EVERY) {
		x->since_wake = 0;
		r = stage_flush(x);
		if (r < 0)
			return r;
		fetch_settle(x->d);
	}
	return 0;
}

static const char *job_kind(const struct fetch_job *job)
{
	if (job->batch)
		return "ensure";
	switch (job->kind) {
	case FETCH_JOB_DEMAND:
		return "demand";
	case FETCH_JOB_READAHEAD:
		return "readahead";
	case FETCH_JOB_REPLAY:
		return "replay";
	default:
		return "background";
	}
}

/* A job is over: account for it, tell the scheduler, answer whom it served. */
static void job_end(struct fetch_daemon *d, struct fetch_xfer *x, int r,
		    const struct util_error *err, const struct oci_read_stats *stats)
{
	struct fetch_job *job = x->job;
	/* what was received is good whatever ended the job: written out, it counts */
	int w = stage_flush(x);

	stage_give_back(d, x);
	if (r >= 0 && (w < 0 || x->write_err < 0))
		r = w < 0 ? w : x->write_err;
	if (r >= 0)
		for (size_t i = 0; i < job->nruns; i++)
			if (x->written[i] != job->runs[i].length)
				r = -EIO; /* the client promised every byte */
	if (r >= 0 && job->kind == FETCH_JOB_REPLAY)
		SH_ADD(d->sh->profile_fetched_bytes, job->bytes);
	log_debug("job %s: %zu run(s) from %" PRIu64 ", %" PRIu64 " KiB, started at %" PRIu64
		  " ms, %" PRIu64 " ms: %d",
		  job_kind(job), job->nruns, job->runs[0].offset, job->bytes >> 10,
		  x->started_us / 1000, (util_now_us() - x->started_us) / 1000, r);
	if (r < 0) {
		static uint64_t last_log; /* transfer thread only */
		uint64_t now = util_now_ms();
		/* The registry client gives up at the latest when its deadline (our timeout)
		 * has passed since the submit (to the millisecond). */
		bool timed_out = util_now_us() - x->started_us + 1000 >= d->oopts.timeout_ms * 1000;

		SH_ADD(d->sh->errors, 1);
		fetch_failure_count(d->sh, fetch_fail_kind_of(r, err ? err->http_status : 0,
							      x->write_err < 0, timed_out));
		/* Rate-limited: a dead registry fails every retry of every reader. */
		if (now - last_log > 5000) {
			last_log = now;
			log_warning("fetching %zu range(s) at offset %" PRIu64 " (%" PRIu64
				    " bytes) failed: %s%s%s",
				    job->nruns, job->runs[0].offset, job->bytes, strerror(-r),
				    err && err->message[0] ? ": " : "", err ? err->message : "");
		}
	}
	pthread_mutex_lock(&d->lock);
	if (r < 0) {
		d->last_errno = r;
		fetch_set_str(d->last_error, sizeof(d->last_error),
			      err && err->message[0] ? err->message : strerror(-r));
	}
	if (r >= 0 && stats && stats->requests == 1 && x->first_byte_us) {
		uint64_t now = util_now_us();

		fetch_sched_link_sample(&d->sched, x->first_byte_us - x->started_us,
					now - x->first_byte_us, job->bytes,
					SH_LOAD(d->sh->fetched_bytes) - x->fetched_at_first);
	}
	fetch_sched_job_done(&d->sched, job, r, util_now_ms());
	pthread_mutex_unlock(&d->lock);
	x->job = NULL;
	fetch_settle(d);
}

static void job_done_cb(void *ctx, int result, const struct util_error *err,
			const struct oci_read_stats *stats)
{
	struct fetch_xfer *x = ctx;

	SH_ADD(x->d->sh->requests, stats->requests);
	SH_ADD(x->d->sh->retries, stats->retries);
	job_end(x->d, x, result, err, stats);
}

/* Hand a job picked under d->lock to the engine. Returns false if it could not be sent (then
 * it is ended with the error once the lock is dropped: *ret_err). */
static bool job_submit(struct fetch_daemon *d, struct fetch_job *job, int *ret_err)
{
	struct fetch_xfer *x = &d->xfers[job - d->sched.jobs];
	struct util_error oerr = {0};
	int r;

	memset(x->written, 0, job->nruns * sizeof(x->written[0]));
	x->d = d;
	x->job = job;
	x->since_wake = 0;
	x->started_us = util_now_us();
	x->first_byte_us = 0;
	x->write_err = 0;
	stage_take(d, x);
	if (!d->reader) {
		*ret_err = -EIO; /* no registry client: nothing can be fetched */
		return false;
	}
	r = oci_reader_submit(d->reader, job->runs, job->nruns,
			      (job->batch ? OCI_READ_BATCH : 0) | (job->probe ? OCI_READ_ONCE : 0),
			      job_sink, job_done_cb, x, &oerr);
	if (r < 0) {
		log_error("starting a fetch: %s", oerr.message[0] ? oerr.message : strerror(-r));
		*ret_err = r;
		return false;
	}
	return true;
}

/* How often the transfer thread reads the cache disk's free space (fetch_sched.room): what
 * arrives meanwhile (at most 10 ms of the link) comes out of the disk's reserve. */
#define ROOM_EVERY_MS 10

/* Tell the scheduler how much the cache disk may still take (d->lock held). */
static void room_refresh(struct fetch_daemon *d, uint64_t now_ms)
{
	bool was_short = fetch_sched_room_short(&d->sched);
	uint64_t room;
	int r;

	if (now_ms < d->room_ms + ROOM_EVERY_MS)
		return;
	d->room_ms = now_ms;
	r = cache_entry_room(d->entry, &room);
	if (r < 0) {
		log_debug("the cache disk's free space: %s", strerror(-r));
		return;
	}
	d->sched.room = room;
	if (fetch_sched_room_short(&d->sched) != was_short)
		log_info(was_short ? "the cache disk has room again: fetching ahead of reads"
				   : "the cache disk is nearly full (%u %% of it is kept free): "
				     "fetching only what reads wait for",
			 CACHE_PREALLOC_RESERVE_PERCENT);
}

void *fetch_transfer_thread(void *arg)
{
	struct fetch_daemon *d = arg;

	prctl(PR_SET_NAME, "lzfetch-xfer", 0, 0, 0);
	if (d->reader) {
		oci_reader_set_parallel(d->reader, d->pol.max_requests);
		oci_reader_set_host_connections(d->reader, d->pol.host_connections);
		oci_reader_set_round_cb(d->reader, stage_flush_all, d);
	}
	for (;;) {
		struct fetch_job *failed[FETCH_MAX_JOBS];
		int errs[FETCH_MAX_JOBS];
		size_t nfailed = 0;
		uint64_t wake = UINT64_MAX, now, timeout;
		struct fetch_job *job;

		pthread_mutex_lock(&d->lock);
		if (d->stopping && d->sched.nreqs == 0) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		now = util_now_ms();
		room_refresh(d, now);
		while ((job = fetch_sched_pick(&d->sched, now, &wake)))
			if (!job_submit(d, job, &errs[nfailed]))
				failed[nfailed++] = job;
		if (!d->reader && nfailed == 0) {
			struct timespec ts;

			util_deadline_ts(&ts, wake > now ? MIN(wake - now, (uint64_t)1000) : 0);
			pthread_cond_timedwait(&d->kick_cond, &d->lock, &ts);
		}
		pthread_mutex_unlock(&d->lock);
		for (size_t i = 0; i < nfailed; i++)
			job_end(d, &d->xfers[failed[i] - d->sched.jobs], errs[i], NULL, NULL);
		if (!d->reader || nfailed)
			continue;
		timeout = wake > now ? MIN(wake - now, (uint64_t)1000) : 0;
		oci_reader_perform(d->reader, (int)timeout);
	}
	for (size_t i = 0; i < FETCH_MAX_JOBS; i++)
		stage_give_back(d, &d->xfers[i]);
	while (d->nstage_free)
		free(d->stage_pool[--d->nstage_free]);
	d->nstage_made = 0;
	return NULL;
}

/* How often the token thread looks for tokens to renew. */
#define FETCH_TOKEN_TICK_MS 500

/* Bearer tokens renewed ahead of their expiry on a thread of their own (oci.h,
 * oci_client_refresh_tokens): a token server (or credential helper) that takes seconds to
 * answer holds up no transfer, as it did when the transfer thread asked it itself (every
 * transfer in flight stood still meanwhile). */
void *fetch_token_thread(void *arg)
{
	struct fetch_daemon *d = arg;

	prctl(PR_SET_NAME, "lzfetch-token", 0, 0, 0);
	for (;;) {
		struct pollfd pfd = {.fd = d->stop_efd, .events = POLLIN};

		if (poll(&pfd, 1, FETCH_TOKEN_TICK_MS) > 0)
			break;
		(void)oci_client_refresh_tokens(d->client);
	}
	return NULL;
}
