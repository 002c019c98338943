// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The daemon's scheduler: which bytes to fetch next, which requests wait for which fetch, and
 * when a request is done or has failed. Pure logic over the presence bitmap; every call is
 * made under the daemon's scheduler mutex. Works in 4 KiB blocks; jobs carry byte ranges.
 */
#include "fetch/sched.h"
#include "fetch/sched_internal.h"

#include "fetch/files.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"


/* A read counts as continuing a stream when it starts this close to where one left off
 * (readers and the kernel's readahead do not always issue reads in exact order). */
#define STREAM_BEHIND (256 * KiB)
#define STREAM_AHEAD  (64 * KiB)
/* A speculative request (a read's neighbours, a paced ensure) goes this long after the bytes
 * sent before it would have passed the link (above the registry's time to answer a small
 * range here, 1-3 ms), ... */
#define SPECULATIVE_MARGIN_MS 2
/* ... and waits at most this many round trips for that (the estimate runs late when the link
 * is faster than measured). */
#define SPECULATIVE_MAX_WAIT_RTTS 4

void fetch_policy_default(struct fetch_policy *p)
{
	*p = (struct fetch_policy){
	    /* Small demand chunks and a small first read-ahead window keep random reads
	     * (exec, dpkg) cheap; a sequential stream still ramps up to ra_max windows in
	     * max_job_bytes jobs (cold 1 GiB read: same speed as with 1 MiB / 4 MiB, while
	     * mount + dpkg -l of a minbase fetched 10.5 % of the image instead of 17.8 %). */
	    .chunk_size = 256 * KiB,
	    .max_job_bytes = 16 * MiB,
	    .ra_initial = 256 * KiB,
	    .ra_max = 32 * MiB,
	    /* Requests in flight are cheap (one libcurl multi handle); what limits them is the
	     * registry's patience with parallel connections. 64 requests, each on a connection
	     * of its own: a request queued behind another on one HTTP/1.1 connection waits a
	     * whole round trip (1,019 waiting reads at RTT 1 s: 11.2 s with 32 connections,
	     * 6.7 s with 64). */
	    .max_requests = 64,
	    .host_connections = 64,
	    .max_side_jobs = 16,
	    .timeout_ms = 60000,
	    .prefetch_all = false,
	};
}

static uint64_t pow2_floor(uint64_t v)
{
	return v ? UINT64_C(1) << (63 - __builtin_clzll(v)) : 0;
}

void fetch_policy_fix(struct fetch_policy *p)
{
	struct fetch_policy d;

	fetch_policy_default(&d);
	if (!p->chunk_size)
		p->chunk_size = d.chunk_size;
	p->chunk_size = pow2_floor(p->chunk_size);
	p->chunk_size = MAX(p->chunk_size, (uint64_t)CACHE_BLOCK_SIZE);
	p->chunk_size = MIN(p->chunk_size, 64 * MiB);
	if (!p->max_job_bytes)
		p->max_job_bytes = d.max_job_bytes;
	p->max_job_bytes = ROUND_DOWN(p->max_job_bytes, CACHE_BLOCK_SIZE);
	p->max_job_bytes = MAX(p->max_job_bytes, p->chunk_size);
	p->max_job_bytes = MIN(p->max_job_bytes, 256 * MiB);
	if (!p->ra_initial)
		p->ra_initial = d.ra_initial;
	if (!p->ra_max)
		p->ra_max = d.ra_max;
	p->ra_initial = MAX(p->ra_initial, (uint64_t)CACHE_BLOCK_SIZE);
	p->ra_max = MAX(p->ra_max, p->ra_initial);
	p->ra_max = MIN(p->ra_max, 1024 * MiB);
	if (!p->max_requests)
		p->max_requests = d.max_requests;
	p->max_requests = MIN(p->max_requests, (unsigned)FETCH_MAX_JOBS);
	if (!p->host_connections)
		p->host_connections = d.host_connections;
	p->host_connections = MIN(p->host_connections, p->max_requests);
	if (!p->max_side_jobs)
		p->max_side_jobs = d.max_side_jobs;
	/* Read-ahead and background fill never take more than half the budget: demand reads
	 * always find a free request. */
	p->max_side_jobs = MAX(1u, MIN(p->max_side_jobs, p->max_requests / 2));
	if (!p->timeout_ms)
		p->timeout_ms = d.timeout_ms;
}

uint64_t fetch_backoff_ms(unsigned attempt)
{
	uint64_t ms = 100;

	while (attempt-- > 1 && ms < 2000)
		ms *= 2;
	return MIN(ms, (uint64_t)2000);
}

bool fetch_error_permanent(int err)
{
	/* -EROFS: the cache file's filesystem went read-only (an error on its disk): fetching
	 * the same bytes again cannot help either. */
	return err == -ENOENT || err == -EACCES || err == -ESTALE || err == -EMEDIUMTYPE ||
	       err == -EPERM || err == -EINVAL || err == -EROFS;
}

void fetch_chunk_window(uint64_t off, uint64_t chunk, uint64_t size, uint64_t *ret_start,
			uint64_t *ret_end)
{
	uint64_t start = off & ~(chunk - 1), end;

	if (util_add_overflow_u64(start, chunk, &end) || end > size)
		end = size;
	*ret_start = start;
	*ret_end = end;
}

void fetch_sched_set_timeout(struct fetch_sched *s, uint64_t ms)
{
	s->pol.timeout_ms = ms;
	s->fail_window_ms = MIN((uint64_t)FETCH_FAIL_WINDOW_MS, ms);
}

int fetch_sched_init(struct fetch_sched *s, struct cache_bitmap *bm, uint64_t size,
		     const struct fetch_policy *pol, size_t max_reqs)
{
	*s = (struct fetch_sched){0};
	s->reqs = calloc(max_reqs ? max_reqs : 1, sizeof(*s->reqs));
	s->jobs = calloc(FETCH_MAX_JOBS, sizeof(*s->jobs));
	if (!s->reqs || !s->jobs) {
		fetch_sched_destroy(s);
		return -ENOMEM;
	}
	s->bm = bm;
	s->size = size;
	s->nblocks = DIV_ROUND_UP(size, CACHE_BLOCK_SIZE);
	s->max_reqs = max_reqs;
	s->room = UINT64_MAX;
	s->pol = *pol;
	fetch_policy_fix(&s->pol);
	/* How long a failed range is answered EIO without a new fetch. The kernel asks again
	 * for the bytes of a failed read at once: the rest of its readahead, piece by piece,
	 * then a single-page read of the first page (measured: each within 1 ms of the deny,
	 * and each would otherwise wait a whole deadline). 2 s covers those follow-ups even on
	 * a loaded machine, yet a registry that comes back is used again within 2 s. Never
	 * longer than the timeout: a reader is never refused for longer than the last one was
	 * made to try. */
	fetch_sched_set_timeout(s, s->pol.timeout_ms);
	return 0;
}

void fetch_sched_destroy(struct fetch_sched *s)
{
	util_u64map_free(&s->failed);
	util_u64map_free(&s->failed_by);
	util_u64map_free(&s->failed_next);
	free(s->reqs);
	s->reqs = NULL;
	free(s->jobs);
	s->jobs = NULL;
}

/* ---- in-flight table ------------------------------------------------------------------ */

/* Index of the first run of job whose end block is > b (runs are sorted and disjoint). */
static size_t run_after(const struct fetch_job *job, uint64_t b)
{
	size_t lo = 0, hi = job->nruns;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (blk_hi(job->runs[mid].offset + job->runs[mid].length) <= b)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The job in flight whose run *ret_run holds block b, or NULL. */
static struct fetch_job *job_at(const struct fetch_sched *s, uint64_t b, size_t *ret_run)
{
	for (size_t j = 0; j < FETCH_MAX_JOBS; j++) {
		struct fetch_job *job = &s->jobs[j];
		size_t k;

		if (!job->busy)
			continue;
		k = run_after(job, b);
		if (k < job->nruns && blk_lo(job->runs[k].offset) <= b) {
			*ret_run = k;
			return job;
		}
	}
	return NULL;
}

/* If block b is inside a run in flight, the end block of that run. */
static bool inflight_at(const struct fetch_sched *s, uint64_t b, uint64_t *ret_end)
{
	size_t k;
	const struct fetch_job *job = job_at(s, b, &k);

	if (job)
		*ret_end = blk_hi(job->runs[k].offset + job->runs[k].length);
	return job != NULL;
}

/* First block > b where a run in flight starts, or limit. */
uint64_t sched_inflight_next_start(const struct fetch_sched *s, uint64_t b, uint64_t limit)
{
	uint64_t best = limit;

	for (size_t j = 0; j < FETCH_MAX_JOBS; j++) {
		const struct fetch_job *job = &s->jobs[j];

		if (!job->busy)
			continue;
		for (size_t k = run_after(job, b); k < job->nruns; k++) {
			uint64_t lo = blk_lo(job->runs[k].offset);

			if (lo > b) {
				best = MIN(best, lo);
				break;
			}
		}
	}
	return best;
}

bool fetch_sched_in_flight(const struct fetch_sched *s, uint64_t first_block, uint64_t n)
{
	uint64_t b = first_block, end = first_block + n;

	while (b < end) {
		uint64_t e;

		if (!inflight_at(s, b, &e))
			return false;
		b = e;
	}
	return true;
}

bool fetch_sched_overlaps_flight(const struct fetch_sched *s, uint64_t first_block, uint64_t n)
{
	uint64_t b = first_block, end = first_block + n, e;

	while (b < end) {
		if (inflight_at(s, b, &e))
			return true;
		b = sched_inflight_next_start(s, b, end);
	}
	return false;
}

/* First block of [from, limit) that is missing and not being fetched; limit when none. */
uint64_t sched_next_needed(const struct fetch_sched *s, uint64_t from, uint64_t limit)
{
	while (from < limit) {
		uint64_t m = cache_bitmap_find(s->bm, from, limit, false), e;

		if (m >= limit)
			return limit;
		if (!inflight_at(s, m, &e))
			return m;
		from = e;
	}
	return limit;
}

/* Append the needed runs of blocks [from, limit) to job, up to max_bytes in all, and
 * FETCH_MAX_RUNS runs (a batch job: FETCH_BATCH_RUNS runs and a Range header within
 * OCI_RANGE_HEADER_MAX, after which it is full). Returns the block where it stopped. */
static uint64_t job_add_runs(const struct fetch_sched *s, struct fetch_job *job, uint64_t from,
			     uint64_t limit, uint64_t max_bytes)
{
	size_t max_runs = job->batch ? FETCH_BATCH_RUNS : FETCH_MAX_RUNS;

	if (!job->header)
		job->header = strlen("bytes=");
	limit = MIN(limit, s->nblocks);
	while (from < limit && job->nruns < max_runs && job->bytes < max_bytes && !job->full) {
		uint64_t b = sched_next_needed(s, from, limit), e, room, off, end;
		struct util_extent *last = job->nruns ? &job->runs[job->nruns - 1] : NULL;
		bool adjacent;
		size_t header;

		if (b >= limit)
			return limit;
		e = cache_bitmap_find(s->bm, b, limit, true);
		e = MIN(e, sched_inflight_next_start(s, b, limit));
		room = (max_bytes - job->bytes) / CACHE_BLOCK_SIZE;
		if (room == 0)
			return b;
		e = MIN(e, b + room);
		off = b * CACHE_BLOCK_SIZE;
		end = MIN(e * CACHE_BLOCK_SIZE, s->size);
		adjacent = last && last->offset + last->length == off; /* then one range */
		if (adjacent)
			header = job->header - oci_range_spec_len(last->offset, last->length) +
				 oci_range_spec_len(last->offset, end - last->offset);
		else
			header = job->header + oci_range_spec_len(off, end - off);
		if (header > OCI_RANGE_HEADER_MAX) {
			job->full = true;
			return b;
		}
		job->header = header;
		if (adjacent)
			last->length += end - off;
		else
			job->runs[job->nruns++] =
			    (struct util_extent){.offset = off, .length = end - off};
		job->bytes += end - off;
		from = e;
	}
	return from;
}

struct fetch_job *sched_job_slot(struct fetch_sched *s)
{
	if (s->njobs >= s->pol.max_requests)
		return NULL;
	for (size_t j = 0; j < FETCH_MAX_JOBS; j++)
		if (!s->jobs[j].busy)
			return &s->jobs[j];
	return NULL;
}

void sched_job_commit(struct fetch_sched *s, struct fetch_job *job, enum fetch_job_kind kind)
{
	job->busy = true;
	job->kind = kind;
	s->njobs++;
	if (kind != FETCH_JOB_DEMAND)
		s->nside++;
	if (kind == FETCH_JOB_BACKGROUND)
		s->nbackground++;
	if (kind == FETCH_JOB_REPLAY)
		s->replay->in_flight++;
}

/* ---- requests ---------------------------------------------------------------------------- */

bool fetch_req_satisfied(struct fetch_sched *s, struct fetch_req *req)
{
	while (req->cursor < req->n) {
		const struct util_extent *x = &req->v[req->cursor];
		uint64_t f, n;

		if (cache_blocks_of(x->offset, x->length, s->size, &f, &n) &&
		    !cache_bitmap_test_range(s->bm, f, n))
			return false;
		req->cursor++;
	}
	return true;
}

/* ---- recently failed ranges ------------------------------------------------------------- */

/* A failure map this large is pruned of what the window has forgotten (and then not before it
 * has doubled: all still in the window, a prune at each failure took 5.6 s for 16,384 reads
 * failing together). */
#define FAIL_PRUNE_AT 4096
/* Chunks of one failed read remembered at most (a read spans a few). */
#define FAIL_MAX_CHUNKS 64

static uint64_t chunk_blocks(const struct fetch_sched *s)
{
	return s->pol.chunk_size / CACHE_BLOCK_SIZE;
}

/* A map's entries still inside the window (values: when_ms << shift, and the rest below). */
static void fail_prune(struct util_u64map *m, unsigned shift, uint64_t now_ms, uint64_t window)
{
	struct util_u64map live = UTIL_U64MAP_INIT;
	uint64_t key, val;
	size_t it = 0;

	while (util_u64map_next(m, &it, &key, &val)) {
		if (now_ms - MIN(now_ms, val >> shift) < window &&
		    util_u64map_put(&live, key, val) < 0) {
			util_u64map_free(&live); /* out of memory: keep what there was */
			return;
		}
	}
	util_u64map_free(m);
	*m = live;
}

static void fail_put(struct util_u64map *m, size_t *prune_at, unsigned shift, uint64_t key,
		     uint64_t val, uint64_t now_ms, uint64_t window)
{
	if (m->n >= MAX(*prune_at, (size_t)FAIL_PRUNE_AT)) {
		fail_prune(m, shift, now_ms, window);
		*prune_at = 2 * m->n;
	}
	(void)util_u64map_put(m, key, val); /* best effort: out of memory, it is fetched again */
}

/* The key of a process's failure in a chunk (pids < 2^22, chunks < 2^42). */
static uint64_t pid_chunk(int pid, uint64_t chunk)
{
	return (uint64_t)pid << 42 | (chunk & ((UINT64_C(1) << 42) - 1));
}

/* Remember a failed event, failed at at_ms with err (-errno): the chunks its missing bytes lie
 * in, that its process failed there, and where the read ended (the kernel's next piece of the
 * same read(2) starts there). */
static void fail_record(struct fetch_sched *s, const struct fetch_req *r, int err_in,
			uint64_t at_ms, uint64_t now_ms)
{
	const struct util_extent *a, *z;
	uint64_t first, last, next, cb = chunk_blocks(s);
	unsigned err = (unsigned)-(err_in < 0 ? err_in : -EIO);

	if (r->cursor >= r->n || s->size == 0)
		return;
	a = &r->v[r->cursor];
	z = &r->v[r->n - 1];
	if (a->offset >= s->size || z->length == 0)
		return;
	next = blk_hi(MIN(z->offset + z->length, s->size));
	first = blk_lo(a->offset) / cb;
	last = (next - 1) / cb;
	for (uint64_t c = first; c <= last && c < first + FAIL_MAX_CHUNKS; c++) {
		fail_put(&s->failed, &s->failed_prune_at, 12, c, at_ms << 12 | (err & 0xfff),
			 now_ms, s->fail_window_ms);
		if (r->pid > 0)
			fail_put(&s->failed_by, &s->failed_by_prune_at, 0, pid_chunk(r->pid, c),
				 at_ms, now_ms, s->fail_window_ms);
	}
	if (r->pid > 0)
		fail_put(&s->failed_next, &s->failed_next_prune_at, 12, pid_chunk(r->pid, next),
			 at_ms << 12 | (err & 0xfff), now_ms, s->fail_window_ms);
}

/* The probe is over: events waiting for it go on (err 0) or fail with it. */
static void probe_end(struct fetch_sched *s, int err)
{
	for (size_t i = 0; i < s->nreqs; i++) {
		struct fetch_req *r = s->reqs[i];

		if (!r->held)
			continue;
		r->held = false;
		if (err < 0) {
			r->error = err;
			r->attempts = FETCH_MAX_ATTEMPTS;
		}
	}
	if (s->probe)
		s->probe->probe = false;
	s->probe = NULL;
}

/* A failure map emptied (what a crowd of failures made large given back). */
static void fail_map_forget(struct util_u64map *m, size_t *prune_at)
{
	if (m->cap > 2 * FAIL_PRUNE_AT)
		util_u64map_free(m);
	else
		util_u64map_clear(m);
	*prune_at = 0;
}

static void fail_forget(struct fetch_sched *s)
{
	fail_map_forget(&s->failed, &s->failed_prune_at);
	fail_map_forget(&s->failed_by, &s->failed_by_prune_at);
	fail_map_forget(&s->failed_next, &s->failed_next_prune_at);
	probe_end(s, 0);
}

/* The kernel asks again for the rest of a failed read within a millisecond of the answer
 * (measured; more on a loaded machine), in the reader's process: an ask of that process in a
 * chunk where its read failed this soon is taken for one of the same read(2) and fails at
 * once, so that a read(2) fails after the timeout, not the timeout and a probe. Any other
 * read (another process, another chunk, or later: the registry may be back) probes. */
#define FOLLOWUP_MS 1000

/* Does a missing block of the event lie in a chunk that failed less than the window ago? The
 * event is answered as a whole: if part of it could not be had moments ago, it fails (unless
 * the registry came back since: the window is short, and any success forgets). Returns the
 * remembered error (-errno) or 0; *ret_when_ms the newest such failure, *ret_followup whether
 * the event's process had a read fail in such a chunk, or end where the event starts (the
 * kernel's next piece of a readahead, in a chunk of its own), less than FOLLOWUP_MS ago. */
static int fail_recent(const struct fetch_sched *s, const struct fetch_req *req, uint64_t now_ms,
		       uint64_t *ret_when_ms, bool *ret_followup)
{
	uint64_t cb = chunk_blocks(s), when = 0;
	uint64_t followup_ms = MIN((uint64_t)FOLLOWUP_MS, s->fail_window_ms);
	bool followup = false;
	int err = 0;

	if (!s->failed.n)
		return 0;
	if (req->pid > 0 && req->cursor < req->n) {
		const uint64_t *v = util_u64map_find(
		    &s->failed_next, pid_chunk(req->pid, blk_lo(req->v[req->cursor].offset)));

		if (v && now_ms >= *v >> 12 && now_ms - (*v >> 12) < followup_ms) {
			followup = true;
			when = *v >> 12;
			err = -(int)(*v & 0xfff);
		}
	}
	for (size_t k = req->cursor; k < req->n; k++) {
		uint64_t b, n;

		if (!cache_blocks_of(req->v[k].offset, req->v[k].length, s->size, &b, &n))
			continue;
		for (uint64_t c = b / cb, looked = 0; c * cb < b + n && looked < FAIL_MAX_CHUNKS;
		     c++, looked++) {
			const uint64_t *v = util_u64map_find(&s->failed, c);
			uint64_t at, lo = MAX(b, c * cb), hi = MIN(b + n, (c + 1) * cb);

			if (!v)
				continue;
			at = *v >> 12;
			if (now_ms < at || now_ms - at >= s->fail_window_ms ||
			    cache_bitmap_find(s->bm, lo, hi, false) >= hi)
				continue;
			if (req->pid > 0 && !followup) {
				const uint64_t *p =
				    util_u64map_find(&s->failed_by, pid_chunk(req->pid, c));

				followup = p && now_ms >= *p && now_ms - *p < followup_ms;
			}
			if (err && at < when)
				continue;
			when = at;
			err = -(int)(*v & 0xfff);
		}
	}
	if (!err)
		return 0;
	*ret_when_ms = when;
	*ret_followup = followup;
	return err;
}

/* The least time a probe is given. */
#define PROBE_MIN_MS 500

int fetch_sched_add(struct fetch_sched *s, struct fetch_req *req, uint64_t now_ms)
{
	uint64_t failed_ms = 0;
	bool followup = false;
	int err;

	if (req->kind == FETCH_REQ_EVENT || !req->v) {
		req->v = &req->one;
		req->n = 1;
	}
	req->cursor = 0;
	req->attempts = 0;
	req->error = 0;
	req->result = 0;
	req->next_try_ms = 0;
	req->probe = req->held = req->probe_sent = false;
	req->added_ms = now_ms;
	if (fetch_req_satisfied(s, req))
		return 1;
	if (s->nreqs >= s->max_reqs)
		return -ENOSPC;
	/* Bytes that failed moments ago (only events: an ensure batch, the mount's metadata
	 * walk, always fetches). The kernel asks again at once for the rest of a failed read,
	 * piece by piece, in the reader's process: those asks fail at once (FOLLOWUP_MS).
	 * Other reads of those bytes get one probe, a single fetch attempt, for all of them:
	 * while it runs the others wait for its outcome; if it fails they fail with it, and if
	 * the registry answers again every read goes on. */
	if (req->kind == FETCH_REQ_EVENT &&
	    (err = fail_recent(s, req, now_ms, &failed_ms, &followup)) < 0) {
		/* The kernel's next ask of the same read(2) fails at once, not after a probe of
		 * its own (FOLLOWUP_MS), and as of the failure it follows: the piece after it
		 * is one of the same read(2) too, but not a read of minutes of retries. */
		if (followup) {
			fail_record(s, req, err, failed_ms, now_ms);
			return err;
		}
		req->error = err;
		if (s->probe) {
			req->held = true;
		} else {
			req->probe = true;
			s->probe = req;
			/* The probe has what is left of the failure window (at least
			 * PROBE_MIN_MS), not a whole deadline more: against a registry that
			 * stalls, one read(2) and its follow-ups then cost one deadline and
			 * that, not a deadline each (timeout=3 s: a read failed after 9 s). */
			req->deadline_ms =
			    MIN(now_ms + s->pol.timeout_ms,
				MAX(failed_ms + s->fail_window_ms, now_ms + PROBE_MIN_MS));
		}
	}
	if (!req->deadline_ms)
		req->deadline_ms = now_ms + s->pol.timeout_ms;
	s->reqs[s->nreqs++] = req;
	return 0;
}

/* The first needed block of a request, or false. */
static bool req_first_needed(const struct fetch_sched *s, const struct fetch_req *req,
			     size_t *ret_idx, uint64_t *ret_block)
{
	for (size_t k = req->cursor; k < req->n; k++) {
		uint64_t f, n, b;

		if (!cache_blocks_of(req->v[k].offset, req->v[k].length, s->size, &f, &n))
			continue;
		b = sched_next_needed(s, f, f + n);
		if (b < f + n) {
			*ret_idx = k;
			*ret_block = b;
			return true;
		}
	}
	return false;
}

/* A probe's job: the missing part of its own range, whether or not a fetch of it is under
 * way. Such a fetch started before the failure and may still be retrying against the
 * registry; a probe answers at once, so it does not wait for it (the same bytes land twice
 * at most). False when nothing is missing. */
static bool probe_run(const struct fetch_sched *s, const struct fetch_req *r, struct fetch_job *job)
{
	for (size_t k = r->cursor; k < r->n; k++) {
		uint64_t f, n, m, off, end;

		if (!cache_blocks_of(r->v[k].offset, r->v[k].length, s->size, &f, &n))
			continue;
		m = cache_bitmap_find(s->bm, f, f + n, false);
		if (m >= f + n)
			continue;
		off = m * CACHE_BLOCK_SIZE;
		end = MIN((f + n) * CACHE_BLOCK_SIZE, s->size);
		job->runs[0] = (struct util_extent){.offset = off, .length = end - off};
		job->nruns = 1;
		job->bytes = end - off;
		job->header = strlen("bytes=") + oci_range_spec_len(off, end - off);
		return true;
	}
	return false;
}

/* The byte window a read's fetch asks for without a file index: the whole chunk holding its
 * first missing block (neighbouring reads are likely), reaching into the further chunks the
 * read spans (the kernel's readahead): one request, not one per chunk. */
static struct util_extent event_window(const struct fetch_sched *s, const struct fetch_req *r,
				       size_t k, uint64_t b)
{
	uint64_t ws, we, xs, xe, cap = MAX(s->pol.chunk_size, s->pol.max_job_bytes);

	fetch_chunk_window(b * CACHE_BLOCK_SIZE, s->pol.chunk_size, s->size, &ws, &we);
	fetch_chunk_window(r->v[k].offset + r->v[k].length - 1, s->pol.chunk_size, s->size, &xs,
			   &xe);
	we = MIN(MAX(we, xe), ws + cap);
	return (struct util_extent){.offset = ws, .length = we - ws};
}

/* Neighbours of a small file worth fetching with it: small files of one range whose data
 * lies within this distance of what is taken or passed over so far, ... */
#define NEIGHBOUR_GAP (64 * KiB)
/* ... within this many times the bytes they may take of the file (what larger files between
 * them hold is passed over, not fetched). */
#define NEIGHBOUR_SPAN 4

/* A small file's ranges, and those of the small files whose data lies beside it in the blob,
 * both ways, whole files only, a chunk or one bandwidth-delay product in all. mkfs lays files out
 * by directory, so those are mostly its siblings, which programs read together and in their own
 * order (dpkg's lists, an interpreter's modules): several small files share one request, and no
 * file is fetched in part. A larger file among them is passed over, not the end of the search:
 * perl's modules lie around the 384 KiB of re.so, and three of them cost a round trip each,
 * behind it (perl with its modules over 100 Mbit/s + RTT 50 ms, 4 runs each, interleaved:
 * 800-840 ms against 883-911). Returns how many ranges (0: the file alone does not fit in
 * max), the file's own first (*ret_own of them). */
static size_t small_files(const struct fetch_sched *s, uint32_t file, struct util_extent *out,
			  size_t max, size_t *ret_own)
{
	uint32_t nr;
	const struct util_extent *v = fetch_files_ranges(s->files, file, &nr);
	uint64_t total = fetch_files_data_bytes(s->files, file), lo = UINT64_MAX, hi = 0;
	/* As much as one round trip of the link carries (at least a chunk): on a long link the
	 * neighbours come nearly free, and each one read later would cost a round trip. */
	uint64_t budget = MAX(s->pol.chunk_size, fetch_sched_bdp(s));
	bool dir_open[2] = {true, true}; /* [0] before, [1] after */
	size_t n = 0, looked = 0;

	if (nr == 0 || nr > max)
		return 0;
	*ret_own = nr;
	for (uint32_t i = 0; i < nr; i++) {
		out[n++] = v[i];
		lo = MIN(lo, v[i].offset);
		hi = MAX(hi, v[i].offset + v[i].length);
	}
	while ((dir_open[0] || dir_open[1]) && n < max && looked++ < 2 * max) {
		for (int after = 0; after < 2 && n < max; after++) {
			const struct util_extent *g;
			uint32_t gf, gn;
			uint64_t bytes, gap;

			if (!dir_open[after])
				continue;
			dir_open[after] = false;
			if (fetch_files_beside(s->files, after ? hi : lo, after, &gf, &g) < 0)
				continue;
			(void)fetch_files_ranges(s->files, gf, &gn);
			bytes = fetch_files_data_bytes(s->files, gf);
			gap = after ? g->offset - hi : lo - (g->offset + g->length);
			if (gap > NEIGHBOUR_GAP ||
			    MAX(hi, g->offset + g->length) - MIN(lo, g->offset) >
				NEIGHBOUR_SPAN * budget)
				continue;
			if (gn == 1 && bytes <= s->pol.chunk_size) {
				if (total + bytes > budget)
					continue;
				out[n++] = *g;
				total += bytes;
			}
			lo = MIN(lo, g->offset);
			hi = MAX(hi, g->offset + g->length);
			dir_open[after] = true;
		}
	}
	return n;
}

static bool file_start(const struct fetch_sched *s, uint64_t off);
static bool replay_brings_file(const struct fetch_sched *s, uint32_t file);
static uint64_t first_window(const struct fetch_sched *s);
static uint64_t ra_limit(const struct fetch_sched *s);
static bool long_link(const struct fetch_sched *s);

uint64_t fetch_sched_whole_limit(const struct fetch_sched *s)
{
	return MIN(ra_limit(s), MAX(4 * MiB, 4 * fetch_sched_bdp(s)));
}

/* Did a startup profile's replay bring some of these ranges? What the recorded programs read
 * of such a file came with it; a read of it that misses is most likely another page fault of
 * the same programs (the kernel's read-around differs from run to run), not a program that
 * needs all of it, and gets a chunk; the predictor leaves such objects alone too. Fetched
 * whole, the libraries apt-config maps (libgcrypt, libsystemd, libhogweed, libidn2, ...) were
 * 1.66 of the 16.4 MB a replay of the same programs fetched; now 15.9 MB. */
bool fetch_sched_replay_brought(const struct fetch_sched *s, const struct util_extent *v,
				size_t n)
{
	const struct fetch_replay *rp = s->replay;

	return rp && rp->started_ms && !rp->failed && rp->mine &&
	       cache_bitmap_any_of(rp->mine, v, n, s->size, true);
}

/* A file read at a second place, away from its start, once some of it is here: programs map
 * executables and libraries and fault their pages in at random, a round trip each (perl's
 * 2 MiB binary: ten requests after its first window). When its data is not large (up to
 * fetch_sched_whole_limit), such a read fetches the rest of the file. */
static bool file_faulted_in(const struct fetch_sched *s, uint32_t file)
{
	uint32_t nr;
	const struct util_extent *v = fetch_files_ranges(s->files, file, &nr);

	if (fetch_files_data_bytes(s->files, file) > fetch_sched_whole_limit(s))
		return false;
	return !fetch_sched_replay_brought(s, v, nr) &&
	       cache_bitmap_any_of(s->bm, v, nr, s->size, true);
}

/* A read that misses in a file a startup profile's replay brings, while the replay runs:
 * the read's own bytes and the profile's ranges of the same file that the replay has not
 * asked for yet (what the recorded programs read of it), up to a chunk or one bandwidth-delay
 * product, instead of a chunk of the file from the read on, most of which nobody read. Same
 * programs over 100 Mbit/s + RTT 50 ms, 14 runs each, interleaved: 1,577 against 1,607 ms
 * (median); the benchmark's row fetched 14.7 MiB instead of 15.5. Returns how many windows
 * it wrote, the read's own first; 1 when the profile lists nothing more of the file: the read
 * then goes as any other (a sequential reader past what the profile knows gets a chunk). */
#define REPLAY_LOOK_AHEAD 512 /* ranges of the profile past its cursor looked at (a lock held) */

static size_t replay_file_windows(const struct fetch_sched *s, uint32_t file,
				  const struct fetch_req *r, size_t k, uint64_t off,
				  struct util_extent *out, size_t max)
{
	const struct fetch_replay *rp = s->replay;
	uint64_t budget = MAX(s->pol.chunk_size, fetch_sched_bdp(s)), total;
	size_t n = 0, last = MIN(rp->n, rp->cursor + REPLAY_LOOK_AHEAD);

	total = r->v[k].offset + r->v[k].length - off;
	out[n++] = (struct util_extent){.offset = off, .length = total};
	for (size_t i = rp->cursor; i < last && n < max && total < budget; i++) {
		uint64_t lo = rp->v[i].offset, hi = lo + rp->v[i].length;
		uint32_t f, range;

		if (i == rp->cursor)
			lo = MAX(lo, rp->pos * CACHE_BLOCK_SIZE);
		if (lo >= hi || fetch_files_find(s->files, lo, &f, &range) < 0 || f != file ||
		    sched_next_needed(s, blk_lo(lo), blk_hi(hi)) >= blk_hi(hi))
			continue; /* another file's, or here or on its way already */
		hi = MIN(hi, lo + (budget - total));
		out[n++] = (struct util_extent){.offset = lo, .length = hi - lo};
		total += hi - lo;
	}
	return n;
}

/* Payload bytes the jobs in flight (of one kind, or all) have still to receive. */
static uint64_t unreceived(const struct fetch_sched *s, bool all, enum fetch_job_kind kind)
{
	uint64_t sum = 0;

	for (size_t j = 0; j < FETCH_MAX_JOBS; j++) {
		const struct fetch_job *job = &s->jobs[j];

		if (job->busy && (all || job->kind == kind) && job->bytes > job->received)
			sum += job->bytes - job->received;
	}
	return sum;
}

uint64_t fetch_sched_unreceived(const struct fetch_sched *s, enum fetch_job_kind kind)
{
	return unreceived(s, false, kind);
}

/* What may still be fetched ahead of need (fetch_sched.room, less what the jobs in flight
 * will still write). */
static uint64_t ahead_room(const struct fetch_sched *s)
{
	uint64_t coming;

	if (s->room == UINT64_MAX)
		return UINT64_MAX;
	coming = unreceived(s, true, FETCH_JOB_DEMAND);
	return s->room > coming ? s->room - coming : 0;
}

/* May anything be fetched ahead of need now? Only while the largest job there is fits. */
static bool ahead_ok(const struct fetch_sched *s)
{
	return ahead_room(s) >= MAX(s->pol.chunk_size, s->pol.max_job_bytes);
}

bool fetch_sched_room_short(const struct fetch_sched *s)
{
	return !ahead_ok(s);
}

/* With a file index, what a read fetches follows the file it falls in: a small file (at most
 * a chunk of data) whole, with the small files after it (small_files); in a larger one, a
 * chunk's worth of its data from the first missing block on (as much as the read spans, if
 * more; from the file's first byte, the first read-ahead window of note_read with it: one
 * request a demand, so that many readers starting files at once do not queue behind the
 * side jobs' cap), in file order, never past the file's end; when the file is partly here
 * already and not large, all it lacks (file_faulted_in); while a replay brings the file and
 * lists more of it, that (replay_file_windows). Bytes outside every file (metadata)
 * fall back to the chunk window. Returns how many windows it wrote to out (max at least 1),
 * the read's own file's first: *ret_own of them (the rest are small_files' neighbours). */
static size_t event_windows(const struct fetch_sched *s, const struct fetch_req *r, size_t k,
			    uint64_t b, struct util_extent *out, size_t max, size_t *ret_own)
{
	/* The read's own offset when the block holds it (a block may hold several files of a
	 * 1 KiB-block image, or metadata and then a file). */
	uint64_t off = MAX(b * CACHE_BLOCK_SIZE, r->v[k].offset), want;
	uint64_t cap = MAX(s->pol.chunk_size, s->pol.max_job_bytes);
	uint32_t file, range;
	bool whole = false, brought;
	int n;

	*ret_own = 1;
	if (!ahead_ok(s)) {
		/* The cache disk is nearly full: the read's own blocks, nothing beside them. */
		uint64_t end =
		    MIN(blk_hi(r->v[k].offset + r->v[k].length) * CACHE_BLOCK_SIZE, s->size);

		out[0] = (struct util_extent){.offset = b * CACHE_BLOCK_SIZE,
					      .length = end - b * CACHE_BLOCK_SIZE};
		return 1;
	}
	if (!s->files || fetch_files_find(s->files, off, &file, &range) < 0) {
		out[0] = event_window(s, r, k, b);
		return 1;
	}
	if (fetch_files_data_bytes(s->files, file) <= s->pol.chunk_size) {
		size_t got = small_files(s, file, out, max, ret_own);

		if (got)
			return got;
	}
	brought = replay_brings_file(s, file);
	if (brought) {
		size_t got = replay_file_windows(s, file, r, k, off, out, max);

		if (got > 1) {
			*ret_own = got;
			return got;
		}
	}
	want = MAX(s->pol.chunk_size, r->v[k].offset + r->v[k].length - off);
	if (file_start(s, off) && !brought)
		want = MAX(want, first_window(s));
	else if ((whole = file_faulted_in(s, file)))
		want = fetch_files_data_bytes(s->files, file);
	n = fetch_files_follow(s->files, off, MIN(want, cap), out, max);
	if (n <= 0) {
		out[0] = event_window(s, r, k, b);
		return 1;
	}
	*ret_own = (size_t)n;
	if (whole && (size_t)n < max) {
		/* ... and the part before the read (what overlaps is merged away), over a long
		 * link in a request of its own beside the read's (as neighbours): in one, sorted,
		 * it would come first, and a loader's read of a library's data segment (its
		 * end) wait for all of it. */
		const struct util_extent *v = fetch_files_ranges(s->files, file, &range);
		int m = fetch_files_follow(s->files, v[0].offset, want, out + n, max - (size_t)n);

		n += MAX(m, 0);
	}
	return (size_t)n;
}

/* Can this waiting event get a fetch now (not held, not a probe, not backing off)? */
static bool event_ready(const struct fetch_req *r, uint64_t now_ms)
{
	return r->kind == FETCH_REQ_EVENT && !r->held && !r->probe && r->next_try_ms <= now_ms;
}

/* How many more waiting reads (after reqs[i]) the job for reqs[i] should carry: when more
 * reads wait than requests are free, they share requests (several ranges each) so that all
 * of them are on their way within one round trip instead of queueing behind each other. */
static size_t demand_share(const struct fetch_sched *s, size_t i, uint64_t now_ms)
{
	size_t free_after = s->pol.max_requests - s->njobs - 1, count = 0, per;

	if (s->nreqs - i - 1 <= free_after)
		return 0; /* a request each */
	for (size_t j = i + 1; j < s->nreqs && count < FETCH_MAX_RUNS * (free_after + 1); j++) {
		size_t k;
		uint64_t b;

		if (event_ready(s->reqs[j], now_ms) && req_first_needed(s, s->reqs[j], &k, &b))
			count++;
	}
	per = DIV_ROUND_UP(count + 1, free_after + 1);
	return MIN(per, (size_t)FETCH_MAX_RUNS) - 1;
}

static int cmp_extent(const void *a, const void *b)
{
	const struct util_extent *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Where a read's range k ends, in whole blocks: its bytes are all there once a job has
 * written up to it. */
static uint64_t read_end(const struct fetch_sched *s, const struct fetch_req *r, size_t k)
{
	return MIN(blk_hi(r->v[k].offset + r->v[k].length) * CACHE_BLOCK_SIZE, s->size);
}

/* What reads that arrive together share of one request: what the link carries in 5 ms (4 MiB
 * while its rate is unknown), from a chunk to a job's cap. A registry's cost is per request
 * (docker-registry: ~3 ms of CPU for 4 KiB or 1 MiB alike; 32 reads of 1 MiB cost it 100-130
 * ms as 32 requests, 20-30 as one), and on a slow link a few milliseconds of bytes delay the
 * reads behind them little. */
static uint64_t gather_bytes(const struct fetch_sched *s)
{
	if (!s->link_bytes_per_s)
		return MIN(4 * MiB, s->pol.max_job_bytes);
	return MIN(MAX(s->link_bytes_per_s / 200, s->pol.chunk_size), s->pol.max_job_bytes);
}

/* A read that arrives while another read's request has just left (and is still out) waits
 * FETCH_GATHER_MS at most for the reads that come with it: threads of one program, a parallel
 * loader. Then they leave together, sharing requests. A read that follows an answered one (a
 * program's next file) never waits. */
static bool gather_wait(struct fetch_sched *s, const struct fetch_req *r, uint64_t now_ms,
			uint64_t *wake)
{
	uint64_t until = r->read_us / 1000 + FETCH_GATHER_MS;

	if (r->kind != FETCH_REQ_EVENT || s->njobs == s->nside ||
	    now_ms >= s->demand_sent_ms + FETCH_GATHER_MS || now_ms >= until)
		return false;
	*wake = MIN(*wake, until);
	s->gathering = true;
	return true;
}

/* Add byte windows (any order; w is reordered) to a job: in whole blocks, since two files'
 * windows may share a block (1 KiB-block images) and a job lists each block once; sorted and
 * merged, what is missing and not on its way already. */
static void add_windows(const struct fetch_sched *s, struct fetch_job *job, struct util_extent *w,
			size_t nw)
{
	size_t m = 0;

	for (size_t j = 0; j < nw; j++) {
		uint64_t lo = blk_lo(w[j].offset) * CACHE_BLOCK_SIZE;
		uint64_t hi = MIN(blk_hi(w[j].offset + w[j].length) * CACHE_BLOCK_SIZE, s->size);

		w[j] = (struct util_extent){.offset = lo, .length = hi - lo};
	}
	if (nw > 1) {
		qsort(w, nw, sizeof(w[0]), cmp_extent);
		for (size_t j = 1; j < nw; j++) {
			struct util_extent *last = &w[m];

			if (w[j].offset <= last->offset + last->length) {
				uint64_t end = MAX(last->offset + last->length,
						   w[j].offset + w[j].length);

				last->length = end - last->offset;
			} else {
				w[++m] = w[j];
			}
		}
		nw = m + 1;
	}
	for (size_t j = 0; j < nw && !job->full; j++)
		job_add_runs(s, job, blk_lo(w[j].offset), blk_hi(w[j].offset + w[j].length),
			     s->pol.max_job_bytes);
}

/* A job that readers wait on (a read's, an ensure's: the mount's metadata, the libraries
 * ahead of a loader) went out now: the link carries its bytes from a round trip on, after
 * those of such jobs before it. Speculative jobs are not counted: the neighbours of a
 * program's next file would otherwise wait behind those of its last one. Sent together, a
 * read's response and a speculative one meet in the link's queue (a bottleneck's FIFO: here
 * tbf with 50 ms of buffer): a module of 4-16 KiB took 56-86 ms instead of a round trip
 * behind its 300-700 KiB of neighbours, and the libraries perl maps (2 MiB, what it waits
 * for) arrived ~50 ms later beside the 616 KiB of the neighbours of ld.so.cache (perl over
 * 100 Mbit/s + RTT 50 ms, 4 runs each, interleaved: 739-800 ms against 795-840). */
static void note_link_use(struct fetch_sched *s, uint64_t now_ms, const struct fetch_job *job)
{
	uint64_t rtt_ms = s->link_rtt_us / 1000;

	if (!s->link_bytes_per_s)
		return;
	s->link_free_ms = MAX(now_ms + rtt_ms, s->link_free_ms) +
			  DIV_ROUND_UP(job->bytes * 1000, s->link_bytes_per_s);
}

/* A job readers waited on ended: the link is free once what such jobs still in flight have
 * not received has passed it, not later. note_link_use only adds: a rate measured low at
 * first (a request still in TCP's slow start), or a job that ended early (failed), would
 * otherwise hold speculative and paced requests back by seconds, each until its cap. */
static void link_use_settle(struct fetch_sched *s, uint64_t now_ms)
{
	uint64_t left;

	if (!s->link_bytes_per_s)
		return;
	left = fetch_sched_unreceived(s, FETCH_JOB_DEMAND);
	s->link_free_ms = MIN(s->link_free_ms, now_ms + (left ? s->link_rtt_us / 1000 : 0) +
						   DIV_ROUND_UP(left * 1000, s->link_bytes_per_s));
}

/* When a speculative request that may go from since_ms on goes: once what went before it
 * would have passed the link (its response then follows, a round trip after it goes), at
 * most a few round trips later. */
static uint64_t speculative_due_ms(const struct fetch_sched *s, uint64_t since_ms)
{
	uint64_t rtt_ms = s->link_rtt_us / 1000, due = s->link_free_ms + SPECULATIVE_MARGIN_MS;

	due = due > rtt_ms ? due - rtt_ms : 0;
	return MAX(since_ms, MIN(due, since_ms + SPECULATIVE_MAX_WAIT_RTTS * rtt_ms));
}

/* Does a paced ensure (fetch_req.paced) wait for the link now? */
static bool paced_wait(const struct fetch_sched *s, const struct fetch_req *r, uint64_t now_ms,
		       uint64_t *wake)
{
	uint64_t due;

	if (!r->paced || !long_link(s))
		return false;
	due = speculative_due_ms(s, r->added_ms);
	if (due <= now_ms)
		return false;
	*wake = MIN(*wake, due);
	return true;
}

/* Waiting reads a job may gather (ready, with bytes to fetch), looked at per job. */
#define GATHER_CANDIDATES 256

struct gather_cand {
	size_t j, k; /* reqs[j], its range k ... */
	uint64_t b;  /* ... and first needed block */
	bool taken;
};

/* A job's reads and windows as they are gathered (demand_event_job). */
struct gather {
	struct util_extent w[FETCH_MAX_RUNS];
	size_t nw, reads, extra;
	uint64_t bytes, limit;
};

static int cmp_cand_block(const void *a, const void *b)
{
	const struct gather_cand *x = a, *y = b;

	return x->b < y->b ? -1 : x->b > y->b;
}

static int cmp_cand_index(const void *a, const void *b)
{
	const struct gather_cand *x = a, *y = b;

	return x->j < y->j ? -1 : x->j > y->j;
}

/* The smallest extent holding v[0..n), in whole blocks. */
static struct util_extent hull(const struct util_extent *v, size_t n)
{
	uint64_t lo = UINT64_MAX, hi = 0;

	for (size_t i = 0; i < n; i++) {
		lo = MIN(lo, v[i].offset);
		hi = MAX(hi, v[i].offset + v[i].length);
	}
	lo = blk_lo(lo) * CACHE_BLOCK_SIZE;
	hi = blk_hi(hi) * CACHE_BLOCK_SIZE;
	return (struct util_extent){.offset = lo, .length = hi - lo};
}

/* Gather waiting read c into job (windows in g) when it fits: 1 when it joined; 0 when touch
 * is given and its windows do not touch that extent (it stays for another job); -1 when the
 * job is full (its share of reads taken and its bytes reached, or its windows). A read whose
 * windows lie within touch (the hull of the job's windows) counts no bytes: a read of a part
 * of a file already on the job costs nothing more (one in a gap of the hull is not counted
 * either; the job's cap, max_job_bytes, still bounds it). */
static int gather_read(struct fetch_sched *s, struct fetch_job *job, struct gather *g,
		       struct gather_cand *c, const struct util_extent *touch)
{
	size_t own, got;
	uint64_t more = 0;
	struct util_extent h;

	if (g->nw >= FETCH_MAX_RUNS)
		return -1;
	got =
	    event_windows(s, s->reqs[c->j], c->k, c->b, g->w + g->nw, FETCH_MAX_RUNS - g->nw, &own);
	h = hull(g->w + g->nw, got);
	if (touch &&
	    (h.offset > touch->offset + touch->length || h.offset + h.length < touch->offset))
		return 0;
	for (size_t m = g->nw; m < g->nw + got; m++)
		more += g->w[m].length;
	if (touch && h.offset >= touch->offset &&
	    h.offset + h.length <= touch->offset + touch->length)
		more = 0;
	if (g->reads >= 1 + g->extra && g->bytes + more > g->limit)
		return -1; /* the next request's */
	g->nw += got;
	g->bytes += more;
	g->reads++;
	c->taken = true;
	job->answer_at[job->nanswer++] = read_end(s, s->reqs[c->j], c->k);
	return 1;
}

static bool gather_full(const struct gather *g)
{
	return g->nw >= FETCH_MAX_RUNS || (g->reads >= 1 + g->extra && g->bytes >= g->limit);
}

/* Reads that leave together share requests best when their bytes lie side by side in the
 * blob: one range then, not one part each of a multipart answer, which the registry pays for
 * per part (docker-registry, 8 requests of 4 x 1 MiB through a proxy with a 50 ms round
 * trip: 91-95 ms as 4 ranges apart, 75-84 ms as 4 MiB in one). So the job takes first the
 * waiting reads whose windows touch what it has (nearest in the blob, both ways), then the
 * others in arrival order. c: the candidates, in arrival order; on return, too. */
static void gather_neighbours(struct fetch_sched *s, struct fetch_job *job, struct gather *g,
			      struct gather_cand *c, size_t nc)
{
	struct util_extent have = hull(g->w, g->nw);
	size_t hi, lo;

	qsort(c, nc, sizeof(c[0]), cmp_cand_block);
	for (hi = 0; hi < nc && c[hi].b * CACHE_BLOCK_SIZE < have.offset; hi++)
		;
	lo = hi;
	while (!gather_full(g)) {
		int r;

		/* what starts within it or right after it, then what ends right before it */
		if (hi < nc && c[hi].b * CACHE_BLOCK_SIZE <= have.offset + have.length) {
			r = gather_read(s, job, g, &c[hi++], &have);
		} else if (lo > 0) {
			r = gather_read(s, job, g, &c[--lo], &have);
			if (r == 0)
				lo = 0; /* the nearest before it does not touch it: none does */
		} else {
			break;
		}
		if (r < 0)
			break;
		if (r > 0)
			have = hull(g->w, g->nw);
	}
	qsort(c, nc, sizeof(c[0]), cmp_cand_index);
}

/* The job of a read (reqs[i], first needed block b in its range k) and of more waiting reads:
 * `extra` of them when the budget is short, else as many as gather_bytes() takes, neighbours
 * in the blob first (gather_neighbours: 32 readers of 32 files of 1 MiB over a 50 ms round
 * trip, median of 6 side by side: 1.77 of one reader's time instead of 2.03). Their windows,
 * sorted and merged, are the runs of one request. A read alone over a long link leaves its
 * small file's neighbours to pick_neighbours: a request of their own beside it (over
 * 100 Mbit/s + RTT 50 ms, a Python program importing modules of several packages waited
 * ~105 ms for each package: a round trip and ~700 KiB, of which 8-140 KiB its own file's; it
 * started in 2.36-2.50 s instead of 2.59-2.72, the benchmark's minbase programs in 2.77-2.84 s
 * instead of 2.89-3.08). */
static void demand_event_job(struct fetch_sched *s, struct fetch_job *job, size_t i, size_t k,
			     uint64_t b, uint64_t now_ms)
{
	struct util_extent nb[FETCH_MAX_RUNS];
	struct gather_cand c[GATHER_CANDIDATES];
	struct gather g = {
	    .extra = demand_share(s, i, now_ms), .reads = 1, .limit = gather_bytes(s)};
	size_t nnb = 0, own, nc = 0;

	g.nw = event_windows(s, s->reqs[i], k, b, g.w, FETCH_MAX_RUNS, &own);
	if (long_link(s) && own < g.nw) {
		/* its neighbours: a request of their own, unless other reads join this one */
		nnb = g.nw - own;
		memcpy(nb, g.w + own, nnb * sizeof(nb[0]));
		g.nw = own;
	}
	for (size_t j = 0; j < g.nw; j++)
		g.bytes += g.w[j].length;
	/* (a read has a window at least: reads <= windows <= FETCH_MAX_RUNS) */
	job->answer_at[job->nanswer++] = read_end(s, s->reqs[i], k);
	for (size_t j = i + 1; j < s->nreqs && nc < GATHER_CANDIDATES; j++) {
		struct gather_cand *x = &c[nc];

		*x = (struct gather_cand){.j = j};
		if (event_ready(s->reqs[j], now_ms) &&
		    req_first_needed(s, s->reqs[j], &x->k, &x->b))
			nc++;
	}
	if (nc && !gather_full(&g))
		gather_neighbours(s, job, &g, c, nc);
	for (size_t j = 0; j < nc && !gather_full(&g); j++)
		if (!c[j].taken && gather_read(s, job, &g, &c[j], NULL) < 0)
			break;
	qsort(job->answer_at, job->nanswer, sizeof(job->answer_at[0]), cmp_u64);
	/* Gathered reads travel in one request, not split again for parallel connections. */
	job->batch = g.reads > 1;
	if (g.reads == 1) {
		nnb = MIN(nnb, FETCH_MAX_RUNS - s->nnb);
		memcpy(s->nb + s->nnb, nb, nnb * sizeof(nb[0]));
		s->nnb += nnb;
		if (nnb && s->nnb == nnb) /* the wait counts from the first ones waiting */
			s->nb_due_ms = now_ms + SPECULATIVE_MARGIN_MS;
	} else {
		nnb = MIN(nnb, FETCH_MAX_RUNS - g.nw);
		memcpy(g.w + g.nw, nb, nnb * sizeof(nb[0]));
		g.nw += nnb;
	}
	add_windows(s, job, g.w, g.nw);
}

/* The small files waiting to go beside the reads that fetched their neighbours (see
 * fetch_sched.nb): one request, at once, ahead of read-ahead. */
static struct fetch_job *pick_neighbours(struct fetch_sched *s, uint64_t now_ms, uint64_t *wake)
{
	struct fetch_job *job;
	uint64_t due;

	if (!s->nnb)
		return NULL;
	if (!ahead_ok(s)) {
		s->nnb = 0; /* the cache disk is nearly full */
		return NULL;
	}
	due = speculative_due_ms(s, s->nb_due_ms);
	if (due > now_ms) {
		*wake = MIN(*wake, due);
		return NULL;
	}
	if (!(job = sched_job_slot(s)))
		return NULL;
	sched_job_reset(job);
	add_windows(s, job, s->nb, s->nnb);
	s->nnb = 0;
	if (job->nruns == 0)
		return NULL;
	sched_job_commit(s, job, FETCH_JOB_READAHEAD);
	return job;
}

/* A read whose missing bytes are all on their way, in jobs made before it came (another
 * read's, the shared objects ahead of a loader, read-ahead): it goes once the first of them
 * holding its next missing block has brought what it needs of that run (its answer_at), not
 * at that job's end or its next MiB (the loader's read of a library's first page waited for
 * 1.2 MiB of it: ~90 ms at 100 Mbit/s). Each pick looks again (the rest may lie in another
 * job). Transfer thread, as the sinks that pass the answer_at marks. */
static void wake_on_arrival(struct fetch_sched *s, const struct fetch_req *r)
{
	for (size_t k = r->cursor; k < r->n; k++) {
		uint64_t f, n, m, at;
		struct fetch_job *job;
		size_t run, i;

		if (!cache_blocks_of(r->v[k].offset, r->v[k].length, s->size, &f, &n))
			continue;
		m = cache_bitmap_find(s->bm, f, f + n, false);
		if (m >= f + n)
			continue;
		job = job_at(s, m, &run);
		if (!job)
			return;
		at = MIN(read_end(s, r, k), job->runs[run].offset + job->runs[run].length);
		for (i = job->answered; i < job->nanswer && job->answer_at[i] < at; i++)
			;
		if ((i < job->nanswer && job->answer_at[i] == at) || job->nanswer == FETCH_MAX_RUNS)
			return;
		memmove(&job->answer_at[i + 1], &job->answer_at[i],
			(job->nanswer - i) * sizeof(job->answer_at[0]));
		job->answer_at[i] = at;
		job->nanswer++;
		return;
	}
}

static struct fetch_job *pick_demand(struct fetch_sched *s, uint64_t now_ms, uint64_t *wake)
{
	if (s->njobs >= s->pol.max_requests)
		return NULL; /* the budget is spent: the next job to end frees a request */
	for (size_t i = 0; i < s->nreqs; i++) {
		struct fetch_req *r = s->reqs[i];
		struct fetch_job *job;
		size_t k;
		uint64_t b;

		if (r->held || (s->gathering && r->kind == FETCH_REQ_EVENT))
			continue; /* the probe's outcome decides; arrived after a read that waits */
		if (r->next_try_ms > now_ms) {
			*wake = MIN(*wake, r->next_try_ms);
			continue;
		}
		if (r->probe) {
			if (r->probe_sent)
				continue;
			job = sched_job_slot(s);
			if (!job)
				return NULL;
			sched_job_reset(job);
			if (!probe_run(s, r, job))
				continue; /* present now: collect answers it */
			r->probe_sent = true;
			job->probe = true;
			sched_job_commit(s, job, FETCH_JOB_DEMAND);
			return job;
		}
		if (!req_first_needed(s, r, &k, &b)) {
			/* everything it lacks is already on its way */
			if (r->kind == FETCH_REQ_EVENT)
				wake_on_arrival(s, r);
			continue;
		}
		if (paced_wait(s, r, now_ms, wake))
			continue;
		if (gather_wait(s, r, now_ms, wake))
			continue; /* reads are in arrival order: all later ones wait too */
		job = sched_job_slot(s);
		if (!job)
			return NULL;
		sched_job_reset(job);
		if (r->kind == FETCH_REQ_EVENT) {
			demand_event_job(s, job, i, k, b, now_ms);
		} else {
			/* An ensure batch (metadata) fetches exactly what it lists: one request
			 * with as many ranges as its Range header takes (a registry's cost is per
			 * range, not per request: splitting only adds requests). */
			uint64_t from = b;

			job->batch = true;
			/* Two ranges may share a block: never list a block twice (the runs of a
			 * job are sorted and disjoint). */
			for (; k < r->n && job->nruns < FETCH_BATCH_RUNS && !job->full &&
			       job->bytes < s->pol.max_job_bytes;
			     k++) {
				uint64_t f, n;

				if (!cache_blocks_of(r->v[k].offset, r->v[k].length, s->size, &f,
						     &n) ||
				    f + n <= from)
					continue;
				from =
				    job_add_runs(s, job, MAX(f, from), f + n, s->pol.max_job_bytes);
			}
		}
		if (job->nruns == 0)
			continue;
		job->probe = r->probe;
		s->demand_sent_ms = now_ms;
		sched_job_commit(s, job, FETCH_JOB_DEMAND);
		return job;
	}
	return NULL;
}

void fetch_sched_link_sample(struct fetch_sched *s, uint64_t ttfb_us, uint64_t body_us,
			     uint64_t bytes, uint64_t link_bytes)
{
	/* The round trip is the smallest time to first byte seen: a request that waited for a
	 * connection, or for a busy registry, says nothing about the link (and a smoothed
	 * average of such samples made read-ahead windows of 100 MiB on loopback: a 10 GiB
	 * image read at random fetched 4.6 times what was read). */
	s->link_rtt_us = s->link_rtt_us ? MIN(s->link_rtt_us, ttfb_us) : ttfb_us;
	/* Throughput only from requests long enough to tell (a small one is all latency): from
	 * 512 KiB, so that a file's first read-ahead window (1 MiB less the read's own chunk)
	 * counts, and the stream's next window is sized by the link one round trip sooner. The
	 * link's, not the request's: what all requests received meanwhile (the pieces of a
	 * read-ahead window share the link; one piece's own rate made a 1 Gbit/s link look like
	 * 12 MB/s, and the next windows' pieces and windows that small). */
	if (bytes >= MiB / 2 && body_us >= 1000) {
		uint64_t rate = MAX(bytes, link_bytes) * 1000000 / body_us;

		s->link_bytes_per_s =
		    s->link_bytes_per_s ? (3 * s->link_bytes_per_s + rate) / 4 : rate;
	}
}

uint64_t fetch_sched_bdp(const struct fetch_sched *s)
{
	if (!s->link_rtt_us || !s->link_bytes_per_s)
		return 0;
	return s->link_bytes_per_s / 1000 * s->link_rtt_us / 1000;
}

/* A link whose round trip is worth splitting windows for (its rate known). */
static bool long_link(const struct fetch_sched *s)
{
	return fetch_sched_bdp(s) && s->link_rtt_us >= 5000;
}

/* The largest read-ahead window: the policy's, or more on a link whose bandwidth-delay
 * product needs it (at most 256 MiB). */
static uint64_t ra_limit(const struct fetch_sched *s)
{
	return MAX(s->pol.ra_max, MIN(4 * fetch_sched_bdp(s), 256 * MiB));
}

/* The read-ahead of a file read from its first byte: four chunks (1 MiB) or as much as the
 * link needs. */
static uint64_t first_window(const struct fetch_sched *s)
{
	return MIN(MAX(4 * s->pol.chunk_size, 2 * fetch_sched_bdp(s)), ra_limit(s));
}

/* Bytes of one read-ahead request: large on a fast, short link (fewer requests, less
 * per-request cost), four bandwidth-delay products on a long one, so that a window travels
 * over a few connections at once instead of one slowly opening TCP window, and not over so
 * many that they crowd each other (1 Gbit/s + RTT 50 ms, windows of 32 MiB: pieces of one
 * product 0.93 of curl, of two 0.95-0.99, of four 1.00). */
static uint64_t ra_piece(const struct fetch_sched *s)
{
	uint64_t bdp = fetch_sched_bdp(s);

	if (!long_link(s))
		return s->pol.max_job_bytes;
	return ROUND_UP(MAX(MIN(4 * bdp, s->pol.max_job_bytes), s->pol.chunk_size),
			CACHE_BLOCK_SIZE);
}

static struct fetch_job *pick_readahead(struct fetch_sched *s)
{
	if (s->gathering)
		return NULL; /* it would run ahead of the reads it follows, a request each */
	while (s->nra > 0) {
		struct util_extent *w = &s->ra[0];
		struct fetch_job *job = sched_job_slot(s);
		uint64_t stop, lo, hi;

		if (!job)
			return NULL;
		sched_job_reset(job);
		lo = blk_lo(w->offset);
		hi = blk_hi(w->offset + w->length);
		stop = job_add_runs(s, job, lo, hi, ra_piece(s));
		if (job->nruns > 0 && stop < hi) {
			/* The rest of the window stays queued for the next request. */
			uint64_t off = stop * CACHE_BLOCK_SIZE;

			w->length = w->offset + w->length - off;
			w->offset = off;
		} else {
			memmove(&s->ra[0], &s->ra[1], (s->nra - 1) * sizeof(s->ra[0]));
			s->nra--;
		}
		if (job->nruns > 0) {
			sched_job_commit(s, job, FETCH_JOB_READAHEAD);
			return job;
		}
	}
	return NULL;
}

static struct fetch_job *pick_background(struct fetch_sched *s, uint64_t now_ms, uint64_t *wake)
{
	struct fetch_job *job;
	uint64_t b, span;

	if (!s->pol.prefetch_all)
		return NULL;
	/* Yield to readers: while any request waits, at most one background fetch. */
	if (s->nreqs > 0 && s->nbackground > 0)
		return NULL;
	if (s->bg_next_try_ms > now_ms) {
		*wake = MIN(*wake, s->bg_next_try_ms);
		return NULL;
	}
	b = sched_next_needed(s, s->bg_cursor, s->nblocks);
	if (b >= s->nblocks && s->bg_cursor > 0)
		b = sched_next_needed(s, 0, s->nblocks); /* wrap: pick up what failed earlier */
	if (b >= s->nblocks)
		return NULL;
	job = sched_job_slot(s);
	if (!job)
		return NULL;
	sched_job_reset(job);
	span = s->pol.max_job_bytes / CACHE_BLOCK_SIZE;
	s->bg_cursor = job_add_runs(s, job, b, MIN(s->nblocks, b + span), s->pol.max_job_bytes);
	if (job->nruns == 0)
		return NULL;
	sched_job_commit(s, job, FETCH_JOB_BACKGROUND);
	return job;
}

struct fetch_job *fetch_sched_pick(struct fetch_sched *s, uint64_t now_ms, uint64_t *ret_wake_ms)
{
	struct fetch_job *job;
	uint64_t wake = UINT64_MAX;

	s->gathering = false;
	job = pick_demand(s, now_ms, &wake);
	if (!job) /* the demand's own neighbours: not behind the side jobs' cap */
		job = pick_neighbours(s, now_ms, &wake);
	if (!job && s->nside < s->pol.max_side_jobs && ahead_ok(s)) {
		job = pick_readahead(s);
		if (!job)
			job = sched_pick_replay(s, now_ms, &wake);
		if (!job)
			job = pick_background(s, now_ms, &wake);
	}
	if (job && job->kind == FETCH_JOB_DEMAND)
		note_link_use(s, now_ms, job);
	if (ret_wake_ms)
		*ret_wake_ms = wake;
	return job;
}

/* Does the request still need anything inside the job's runs? Both lists are sorted. */
static bool req_overlaps_job(const struct fetch_req *r, const struct fetch_job *job)
{
	size_t k = r->cursor, j = 0;

	while (k < r->n && j < job->nruns) {
		uint64_t a0 = r->v[k].offset, a1 = a0 + r->v[k].length;
		uint64_t b0 = job->runs[j].offset, b1 = b0 + job->runs[j].length;

		/* Compare at block granularity: a request's partial block needs the whole. */
		a0 = blk_lo(a0) * CACHE_BLOCK_SIZE;
		a1 = blk_hi(a1) * CACHE_BLOCK_SIZE;
		b1 = blk_hi(b1) * CACHE_BLOCK_SIZE;
		if (a1 <= b0)
			k++;
		else if (b1 <= a0)
			j++;
		else
			return true;
	}
	return false;
}

void fetch_sched_job_done(struct fetch_sched *s, struct fetch_job *job, int err, uint64_t now_ms)
{
	if (err < 0) {
		bool permanent = fetch_error_permanent(err);

		for (size_t i = 0; i < s->nreqs; i++) {
			struct fetch_req *r = s->reqs[i];

			if (!req_overlaps_job(r, job))
				continue;
			r->error = err;
			if (permanent || r->probe) {
				r->attempts = FETCH_MAX_ATTEMPTS;
			} else {
				r->attempts++;
				r->next_try_ms = now_ms + fetch_backoff_ms(r->attempts);
			}
		}
		if (job->kind == FETCH_JOB_BACKGROUND) {
			s->bg_attempts++;
			s->bg_next_try_ms =
			    now_ms + (permanent ? 60000 : fetch_backoff_ms(s->bg_attempts));
			if (job->nruns)
				s->bg_cursor = MIN(s->bg_cursor, blk_lo(job->runs[0].offset));
		}
	} else {
		if (job->kind == FETCH_JOB_BACKGROUND)
			s->bg_attempts = 0;
		if (job->nruns > 0)
			fail_forget(s); /* the registry answers again */
	}
	if (job->kind == FETCH_JOB_REPLAY && job->busy)
		sched_replay_job_done(s, job, err, now_ms);
	if (job->busy) {
		s->njobs--;
		if (job->kind != FETCH_JOB_DEMAND)
			s->nside--;
		if (job->kind == FETCH_JOB_BACKGROUND)
			s->nbackground--;
	}
	job->busy = false;
	if (job->kind == FETCH_JOB_DEMAND)
		link_use_settle(s, now_ms);
	job->nruns = 0;
	job->bytes = 0;
	job->header = 0;
	job->received = 0;
	job->batch = job->full = job->probe = false;
}

size_t fetch_sched_collect(struct fetch_sched *s, uint64_t now_ms, struct fetch_req **out,
			   size_t max)
{
	size_t n = 0, keep = 0;

	if (s->probe) {
		struct fetch_req *p = s->probe;

		if (fetch_req_satisfied(s, p))
			probe_end(s, 0);
		else if (p->attempts >= FETCH_MAX_ATTEMPTS || now_ms >= p->deadline_ms)
			probe_end(s, p->error < 0 ? p->error : -ETIMEDOUT);
	}
	for (size_t i = 0; i < s->nreqs; i++) {
		struct fetch_req *r = s->reqs[i];
		bool leave = false;

		if (n < max) {
			if (fetch_req_satisfied(s, r)) {
				r->result = 0;
				leave = true;
			} else if (r->attempts >= FETCH_MAX_ATTEMPTS) {
				r->result = r->error < 0 ? r->error : -EIO;
				leave = true;
			} else if (now_ms >= r->deadline_ms) {
				r->result = r->error < 0 ? r->error : -ETIMEDOUT;
				leave = true;
			}
			/* Remember it when fetches did fail, or when its time ran out (a registry
			 * that stalls: the kernel's follow-ups fail at once, other reads of those
			 * bytes probe, instead of each waiting a whole deadline on the same
			 * stalled fetch). */
			if (leave && r->result < 0 && r->kind == FETCH_REQ_EVENT &&
			    (r->error < 0 || r->result == -ETIMEDOUT))
				fail_record(s, r, r->result, now_ms, now_ms);
		}
		if (leave)
			out[n++] = r;
		else
			s->reqs[keep++] = r;
	}
	s->nreqs = keep;
	return n;
}

size_t fetch_sched_drain(struct fetch_sched *s, struct fetch_req **out, size_t max)
{
	size_t n = MIN(max, s->nreqs);

	for (size_t i = 0; i < n; i++) {
		out[i] = s->reqs[i];
		out[i]->result = fetch_req_satisfied(s, out[i]) ? 0 : -EIO;
		if (out[i] == s->probe)
			probe_end(s, -EIO);
	}
	memmove(s->reqs, s->reqs + n, (s->nreqs - n) * sizeof(*s->reqs));
	s->nreqs -= n;
	return n;
}

/* ---- sequential streams and read-ahead ------------------------------------------------------ */

static void ra_queue(struct fetch_sched *s, uint64_t off, uint64_t end)
{
	struct util_extent *last;

	if (end > s->size)
		end = s->size;
	if (off >= end)
		return;
	last = s->nra ? &s->ra[s->nra - 1] : NULL;
	if (last && off <= last->offset + last->length && end >= last->offset) {
		uint64_t lo = MIN(last->offset, off), hi = MAX(last->offset + last->length, end);

		*last = (struct util_extent){.offset = lo, .length = hi - lo};
		return;
	}
	if (s->nra == FETCH_RA_QUEUE) {
		/* The oldest window is the least useful: its reader has moved on. */
		memmove(&s->ra[0], &s->ra[1], (FETCH_RA_QUEUE - 1) * sizeof(s->ra[0]));
		s->nra--;
	}
	s->ra[s->nra++] = (struct util_extent){.offset = off, .length = end - off};
}

#define FILE_START_PRESENT (4 * MiB)

/* Is off (a missing read) the start of a file's data? */
static bool file_start(const struct fetch_sched *s, uint64_t off)
{
	uint32_t file, range, n;
	const struct util_extent *v;

	if (!s->files || fetch_files_find(s->files, off, &file, &range) < 0 || range != 0)
		return false;
	v = fetch_files_ranges(s->files, file, &n);
	if (n == 0 || fetch_files_data_bytes(s->files, file) <= s->pol.chunk_size)
		return false; /* fetched whole */
	if (off < v[0].offset + CACHE_BLOCK_SIZE)
		return true;
	/* ... or its first missing byte, near its start: what comes before it arrived with
	 * something else (the mount's first round takes the blob's first 256 KiB, where a
	 * file may begin), and the reader that came along it from its first byte met no miss
	 * until here (1 Gbit/s + RTT 50 ms: read-ahead that started small lost 2-3 %). */
	return off < v[0].offset + FILE_START_PRESENT &&
	       cache_bitmap_find(s->bm, blk_lo(v[0].offset), blk_lo(off), false) >= blk_lo(off);
}

/* Queue the stream's next `bytes` of read-ahead. With a file index, a stream inside a file
 * follows that file's data and stops at its end: the blob bytes after it belong to another
 * file (or to none), which nobody asked for. */
static bool ra_window(struct fetch_sched *s, struct fetch_stream *st, uint64_t end, uint64_t bytes)
{
	struct util_extent v[8];
	uint32_t file, f2, range;
	int n;

	if (!s->files || fetch_files_find(s->files, end - 1, &file, &range) < 0) {
		ra_queue(s, st->ra_end, st->ra_end + bytes);
		st->ra_end = MIN(st->ra_end + bytes, s->size);
		return true;
	}
	if (fetch_files_find(s->files, st->ra_end, &f2, &range) < 0 || f2 != file) {
		/* The file ends here: no read-ahead past it. The stream starts over if the
		 * reader goes on into the next file. */
		st->window = 0;
		return false;
	}
	n = fetch_files_follow(s->files, st->ra_end, bytes, v, ARRAY_SIZE(v));
	for (int i = 0; i < n; i++)
		ra_queue(s, v[i].offset, v[i].offset + v[i].length);
	if (n <= 0)
		return false;
	st->ra_end = v[n - 1].offset + v[n - 1].length;
	return true;
}

/* While a startup profile is replayed, does it bring some of this file? Then a read of the
 * file that misses starts no read-ahead stream, nor a file's first window: what
 * the recorded programs read of it is on its way, and the miss is most likely another of their
 * page faults in a different order (fetch_sched_replay_brought). Same programs over 100
 * Mbit/s + RTT 50 ms: read-ahead after such a fault fetched 1.75 MiB of perl's executable
 * that nobody read, 140 ms of the link in the middle of the replay. A stream that began before
 * goes on; once the replay is over, streams start as always. */
static bool replay_brings_file(const struct fetch_sched *s, uint32_t file)
{
	const struct util_extent *v;
	uint32_t n;

	if (!fetch_replay_active(s->replay))
		return false;
	v = fetch_files_ranges(s->files, file, &n);
	return fetch_sched_replay_brought(s, v, n);
}

/* Stream detection. Only missing reads create streams and start read-ahead; a fast-path hit
 * follows an existing stream and feeds one whose read-ahead has started -- loads of bytes
 * that an ensure batch just fetched (the mount's metadata walk) look sequential but need no
 * read-ahead. */
static bool note_read(struct fetch_sched *s, uint64_t off, uint64_t len, bool hit)
{
	struct fetch_stream *st = NULL, *lru = NULL;
	uint64_t end;

	if (len == 0 || off >= s->size)
		return false;
	end = util_add_overflow_u64(off, len, &end) ? s->size : MIN(end, s->size);
	s->clock++;
	for (size_t i = 0; i < FETCH_MAX_STREAMS; i++) {
		struct fetch_stream *c = &s->streams[i];

		if (!c->used) {
			if (!lru || lru->used)
				lru = c;
			continue;
		}
		if (!lru || (lru->used && c->stamp < lru->stamp))
			lru = c;
		if (off + STREAM_BEHIND >= c->next && off <= c->next + STREAM_AHEAD) {
			st = c;
			break;
		}
	}
	if (!st) {
		uint32_t file, range;

		if (hit || (fetch_replay_active(s->replay) && s->files &&
			    fetch_files_find(s->files, off, &file, &range) == 0 &&
			    replay_brings_file(s, file)))
			return false;
		*lru = (struct fetch_stream){.used = true, .next = end, .stamp = s->clock};
		if (!file_start(s, off))
			return false;
		/* A file read from its first byte is most likely read on: its first read-ahead
		 * window (first_window: four chunks, 1 MiB, or as much as the link needs, never
		 * past the file's end) goes with the read's own fetch (event_windows), and the
		 * stream asks for the next one as the reader nears its end. Programs that only
		 * map a library's header and fault in pages cost at most those four chunks. */
		st = lru;
		st->ra_end = end;
		st->hits = 1;
		st->window = first_window(s);
		return ra_window(s, st, end, st->window);
	}
	st->stamp = s->clock;
	st->next = MAX(st->next, end);
	if (hit && st->window == 0)
		return false; /* follow the reader; the next miss starts the read-ahead */
	st->hits++;
	if (st->ra_end < end)
		st->ra_end = end; /* the reader overtook what was asked for */
	if (st->ra_end >= s->size)
		return false;
	/* Like the kernel's async readahead: once the reader comes within half a window of
	 * what has been asked for, ask for the next window, twice as large. On a long link, a
	 * piece (ra_piece) at a time whenever less than a window is asked for ahead of the
	 * reader: a whole window's pieces travel at once and arrive together, and the link sat
	 * idle a round trip per window while the next one's first bytes came (1 Gbit/s + RTT
	 * 50 ms: 0.90-0.93 of curl); pieces asked for as the reader moves end one by one. */
	if (st->window == 0)
		st->window = s->pol.ra_initial;
	else if (st->ra_end - end > (long_link(s) ? st->window : st->window / 2))
		return false;
	else /* on a long link at least two bandwidth-delay products once it is established;
	      * on a short one the product says little (a registry's own latency), and windows
	      * of twice it overshot every random 1 MiB read by megabytes */
		st->window = MIN(MAX(st->window * 2, long_link(s) ? 2 * fetch_sched_bdp(s) : 0),
				 ra_limit(s));
	return ra_window(s, st, end, long_link(s) ? MIN(st->window, ra_piece(s)) : st->window);
}

bool fetch_sched_note_read(struct fetch_sched *s, uint64_t off, uint64_t len)
{
	return note_read(s, off, len, false);
}

bool fetch_sched_note_hit(struct fetch_sched *s, uint64_t off, uint64_t len)
{
	return note_read(s, off, len, true);
}
