// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The worker process: dispatcher threads read permission events and answer present ranges at
 * once (fast path); the rest wait in the scheduler while fetcher threads fetch chunks and
 * write them through the pre-mark fd; a housekeeping thread enforces deadlines, persists the
 * bitmap and starts the verification. Every event leaves through fetch_answer_batch(), the
 * one exit path, exactly once.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"

#define DISPATCHERS   FETCH_DISPATCHERS
#define READ_BATCH    FETCH_READ_BATCH /* a read never returns more than we have slots for */
#define COLLECT_BATCH 256
#define WAKE_EVERY    (1u << 20) /* let waiting readers go every MiB of a job's progress */

static inline void add64(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline uint64_t get64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void abs_deadline(struct timespec *ts, uint64_t ms_from_now)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms_from_now / 1000);
	ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void fetch_kick(struct fetch_daemon *d)
{
	pthread_cond_broadcast(&d->fetch_cond);
}

/* ---- the one exit path of every request ------------------------------------------------- */

static uint32_t deny_errno(int result)
{
	/* Only some errnos may travel back (fact 5); everything else is EIO. */
	if (result == -ENOSPC || result == -EDQUOT)
		return (uint32_t)-result;
	return EIO;
}

void fetch_answer_batch(struct fetch_daemon *d, struct fetch_req **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct fetch_req *r = v[i];
		struct fanotify_response resp;
		bool answered;

		if (r->kind != FETCH_REQ_EVENT)
			continue; /* its waiter is woken below */
		resp.fd = r->fd;
		resp.response = r->result == 0 ? FAN_ALLOW : FAN_DENY_ERRNO(deny_errno(r->result));
		if (r->result != 0) {
			add64(&d->sh->denied, 1);
			add64(&d->sh->errors, 1);
		}
		/* Only a response the kernel took counts as an answer; a failed one is logged
		 * (tests fail on that line) and the event stays unanswered in the count. */
		answered = false;
		for (;;) {
			if (write(d->fan_fd, &resp, sizeof(resp)) == (ssize_t)sizeof(resp)) {
				answered = true;
				break;
			}
			if (errno == EINTR)
				continue;
			if (errno == ENOENT && r->taken_over) {
				/* The dead worker's answer reached the kernel, then it died before
				 * it could free the journal slot: answered once, by it. */
				log_info("event fd %d had been answered by the worker that died",
					 r->fd);
				answered = true;
				break;
			}
			log_error("answering event fd %d: %m", r->fd);
			break;
		}
		/* Journal slot first, fd second: a replacement worker then never sees a
		 * finished event whose fd number was already reused. The count comes after the
		 * slot: a worker that dies between the two is taken over without this event and
		 * leaves the count one short, never counts it twice. */
		__atomic_store_n(&d->sh->journal[r->slot].state, SLOT_FREE, __ATOMIC_RELEASE);
		if (answered)
			add64(&d->sh->answers, 1);
		close(r->fd);
	}
	if (n == 0)
		return;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < n; i++) {
		struct fetch_req *r = v[i];

		if (r->kind == FETCH_REQ_EVENT)
			d->free_slots[d->nfree++] = r->slot;
		else
			((struct fetch_ensure *)r->owner)->done = true;
	}
	pthread_cond_broadcast(&d->done_cond);
	pthread_mutex_unlock(&d->lock);
}

/* Collect and answer whatever is finished now. */
static void settle(struct fetch_daemon *d)
{
	struct fetch_req *out[COLLECT_BATCH];
	size_t n;

	do {
		pthread_mutex_lock(&d->lock);
		n = fetch_sched_collect(&d->sched, fetch_now_ms(), out, COLLECT_BATCH);
		pthread_mutex_unlock(&d->lock);
		fetch_answer_batch(d, out, n);
	} while (n == COLLECT_BATCH);
}

/* ---- dispatchers ---------------------------------------------------------------------------- */

static bool own_pid(struct fetch_daemon *d, pid_t pid)
{
	return pid == SH_LOAD(d->sh->holder_pid) || pid == getpid();
}

static void handle_event(struct fetch_daemon *d, struct fetch_req *r, const struct fetch_event *ev)
{
	uint64_t size = d->cfg.blob.size, off, len, first, nblk;
	bool ra, probe, held;
	int q;

	if (own_pid(d, ev->pid)) {
		/* Our own read of the marked file would wait on itself: refuse it loudly. */
		log_error("event from the daemon itself (pid %d); denying", (int)ev->pid);
		r->result = -EIO;
		fetch_answer_batch(d, &r, 1);
		return;
	}
	off = ev->has_range ? ev->offset : 0;
	len = ev->has_range ? ev->count : size;
	if (!cache_blocks_of(off, len, size, &first, &nblk)) {
		r->result = 0; /* nothing inside the blob: the read sees EOF */
		fetch_answer_batch(d, &r, 1);
		return;
	}
	len = MIN(len, size - off);
	r->one = (struct util_extent){.offset = off, .length = len};
	if (cache_entry_broken(d->entry)) {
		r->result = -EIO; /* the file was changed behind our back: never its bytes */
		fetch_answer_batch(d, &r, 1);
		return;
	}
	if (cache_bitmap_test_range(&d->entry->present, first, nblk)) {
		/* Fast path: present in the bitmap, answer at once. */
		pthread_mutex_lock(&d->lock);
		ra = fetch_sched_note_hit(&d->sched, off, len);
		if (ra)
			fetch_kick(d);
		pthread_mutex_unlock(&d->lock);
		add64(&d->sh->fast, 1);
		r->result = 0;
		fetch_answer_batch(d, &r, 1);
		return;
	}
	pthread_mutex_lock(&d->lock);
	q = fetch_sched_add(&d->sched, r, fetch_now_ms()); /* by the journaled deadline */
	/* A read of bytes that just failed to fetch starts no stream and no read-ahead towards
	 * a registry that is not answering: it probes, or waits for the probe under way. */
	probe = q == 0 && r->probe;
	held = q == 0 && r->held;
	if (q == 0 && !probe && !held)
		(void)fetch_sched_note_read(&d->sched, off, len);
	if (q == 0)
		fetch_kick(d);
	pthread_mutex_unlock(&d->lock);
	if (probe || held)
		log_debug("read at %" PRIu64 " (%" PRIu64 " bytes): those bytes failed to fetch "
			  "moments ago; %s",
			  off, len, probe ? "probing the registry" : "waiting for the probe");
	if (q != 0) {
		r->result = q > 0 ? 0 : -EIO;
		fetch_answer_batch(d, &r, 1);
	}
}

/* Tell the control loop who opened the data file (the daemon's own opens aside). */
static void note_open(struct fetch_daemon *d, const struct fetch_event *ev)
{
	uint64_t one = 1;
	bool known = false;

	if (own_pid(d, ev->pid) || ev->pid <= 0)
		return;
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < d->nopens; i++)
		if (d->opens[i].pid == ev->pid) {
			d->opens[i].mask |= (uint32_t)ev->mask;
			known = true;
		}
	if (!known && d->nopens < ARRAY_SIZE(d->opens))
		d->opens[d->nopens++] = (struct fetch_open_note){ev->pid, (uint32_t)ev->mask};
	else if (!known) /* full: the newest replaces the oldest, the masks add up */
		d->opens[ARRAY_SIZE(d->opens) - 1] = (struct fetch_open_note){
		    ev->pid, (uint32_t)ev->mask | d->opens[ARRAY_SIZE(d->opens) - 1].mask};
	pthread_mutex_unlock(&d->lock);
	if (write(d->open_efd, &one, sizeof(one)) < 0)
		log_debug("eventfd write: %m");
}

static void *dispatcher(void *arg)
{
	struct fetch_daemon *d = arg;
	uint64_t buf[READ_BATCH * sizeof(struct fanotify_event_metadata) / 8];
	struct fetch_event evs[READ_BATCH];
	struct fetch_req *reqs[READ_BATCH];
	int slots[READ_BATCH];

	bool draining = false;

	prctl(PR_SET_NAME, "lzfetch-events", 0, 0, 0);
	for (;;) {
		struct pollfd pfd[2] = {{.fd = d->fan_fd, .events = POLLIN},
					{.fd = d->stop_efd, .events = POLLIN}};
		size_t n, k = 0;
		bool bad = false;
		ssize_t got;
		int maxfd = -1;
		uint64_t deadline;

		if (!draining && poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		/* Leaving: the mark is gone, so nothing new arrives; read what is queued until
		 * the group is empty (an event left unread would be allowed at exit: zeros). */
		if (pfd[1].revents)
			draining = true;
		if (!draining && !(pfd[0].revents & POLLIN))
			continue;
		/* Back-pressure: take the slots first, then read at most that many events
		 * (every event is at least a metadata record long). */
		pthread_mutex_lock(&d->lock);
		while (d->nfree < READ_BATCH && !d->stopping)
			pthread_cond_wait(&d->done_cond, &d->lock);
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		for (size_t i = 0; i < READ_BATCH; i++)
			slots[i] = d->free_slots[--d->nfree];
		pthread_mutex_unlock(&d->lock);
		got = read(d->fan_fd, buf, sizeof(buf));
		if (got < 0 && errno != EAGAIN && errno != EINTR) {
			/* EMFILE: the kernel denied that event (EPERM for its reader), no zeros. */
			log_error("reading fanotify events: %m");
			usleep(10000);
		}
		if (draining && got <= 0 && (got == 0 || errno != EINTR)) {
			pthread_mutex_lock(&d->lock);
			for (size_t i = 0; i < READ_BATCH; i++)
				d->free_slots[d->nfree++] = slots[i];
			pthread_cond_broadcast(&d->done_cond);
			pthread_mutex_unlock(&d->lock);
			break;
		}
		deadline = fetch_now_ms() + d->pol.timeout_ms;
		n = got > 0 ? fetch_events_parse(buf, (size_t)got, evs, READ_BATCH, &bad) : 0;
		if (got > 0 && bad)
			log_error("malformed fanotify event buffer (%zd bytes)", got);
		/* Journal every event before anything else: if this process dies from here on,
		 * the replacement worker finds and answers them. */
		for (size_t i = 0; i < n; i++) {
			struct fetch_req *r;
			int slot;

			if (evs[i].fd < 0)
				continue; /* not a permission event: nothing to answer */
			if (!(evs[i].mask & ~(uint64_t)FETCH_NOTIFY_EVENTS)) {
				note_open(d, &evs[i]); /* a notification: no answer */
				close(evs[i].fd);
				continue;
			}
			slot = slots[k];
			r = &d->pool[slot];
			*r = (struct fetch_req){.kind = FETCH_REQ_EVENT,
						.fd = evs[i].fd,
						.slot = slot,
						.deadline_ms = deadline};
			d->sh->journal[slot].fd = evs[i].fd;
			d->sh->journal[slot].off = evs[i].has_range ? evs[i].offset : 0;
			d->sh->journal[slot].len =
			    evs[i].has_range ? evs[i].count : d->cfg.blob.size;
			d->sh->journal[slot].deadline_ms = deadline;
			__atomic_store_n(&d->sh->journal[slot].state, SLOT_ACTIVE,
					 __ATOMIC_RELEASE);
			maxfd = MAX(maxfd, evs[i].fd);
			reqs[k] = r;
			evs[k] = evs[i];
			k++;
		}
		pthread_mutex_lock(&d->lock);
		for (size_t i = k; i < READ_BATCH; i++)
			d->free_slots[d->nfree++] = slots[i];
		if (k < READ_BATCH)
			pthread_cond_broadcast(&d->done_cond);
		pthread_mutex_unlock(&d->lock);
		if (maxfd > __atomic_load_n(&d->sh->hiwater_fd, __ATOMIC_RELAXED))
			__atomic_store_n(&d->sh->hiwater_fd, maxfd, __ATOMIC_RELAXED);
		add64(&d->sh->events, k);
		for (size_t i = 0; i < k; i++) {
			if (!(evs[i].mask & FAN_PRE_ACCESS))
				log_warning("unexpected permission event mask 0x%" PRIx64,
					    (uint64_t)evs[i].mask);
			handle_event(d, reqs[i], &evs[i]);
		}
	}
	return NULL;
}

/* ---- fetchers ----------------------------------------------------------------------------------
 */

struct sink_ctx {
	struct fetch_daemon *d;
	struct fetch_job *job;
	uint64_t written[FETCH_BATCH_RUNS];
	uint64_t since_wake;
};

static int job_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct sink_ctx *c = ctx;
	struct fetch_job *job = c->job;
	size_t lo = 0, hi = job->nruns;
	const struct util_extent *run;
	uint64_t done_end, first;
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
	if (offset != run->offset + c->written[lo] || len > run->length - c->written[lo])
		return -EBADMSG; /* not the bytes asked for, or not in order */
	/* Whole blocks written so far become present with this write: a reader waiting on the
	 * start of a large read-ahead job need not wait for its end. The page cache makes the
	 * bytes visible at once; durability is the flusher's business. */
	done_end = c->written[lo] + len == run->length
		       ? DIV_ROUND_UP(run->offset + run->length, CACHE_BLOCK_SIZE)
		       : (run->offset + c->written[lo] + len) / CACHE_BLOCK_SIZE;
	first = run->offset / CACHE_BLOCK_SIZE;
	r = cache_entry_store(c->d->entry, data, len, offset, first,
			      done_end > first ? done_end - first : 0);
	if (r < 0)
		return r;
	c->written[lo] += len;
	add64(&c->d->sh->fetched_bytes, len);
	c->since_wake += len;
	if (c->since_wake >= WAKE_EVERY) {
		c->since_wake = 0;
		settle(c->d);
	}
	return 0;
}

static int run_job(struct fetch_daemon *d, struct oci_reader *reader, struct fetch_job *job)
{
	struct sink_ctx ctx = {.d = d, .job = job};
	struct oci_error oerr = {0};
	uint64_t req0 = 0, req1 = 0, b0, b1, t0 = fetch_now_ms();
	int r;

	if (!reader)
		return -EIO;
	oci_reader_stats(reader, &req0, &b0);
	oci_reader_set_batch(reader, job->batch); /* an ensure batch: one request */
	oci_reader_set_single_attempt(reader, job->probe);
	r = oci_read_ranges(reader, job->runs, job->nruns, job_sink, &ctx, &oerr);
	oci_reader_stats(reader, &req1, &b1);
	log_debug("job %s: %zu run(s) from %" PRIu64 ", %" PRIu64 " KiB, %" PRIu64 " ms: %d",
		  job->batch			     ? "ensure"
		  : job->kind == FETCH_JOB_DEMAND    ? "demand"
		  : job->kind == FETCH_JOB_READAHEAD ? "readahead"
						     : "background",
		  job->nruns, job->runs[0].offset, job->bytes >> 10, fetch_now_ms() - t0, r);
	add64(&d->sh->requests, req1 - req0);
	if (r >= 0) {
		for (size_t i = 0; i < job->nruns; i++)
			if (ctx.written[i] != job->runs[i].length)
				r = -EIO; /* the client promised every byte */
	}
	if (r < 0) {
		static uint64_t last_log;
		uint64_t now = fetch_now_ms();

		/* Rate-limited: a dead registry fails every retry of every reader. */
		if (now - __atomic_load_n(&last_log, __ATOMIC_RELAXED) > 5000) {
			__atomic_store_n(&last_log, now, __ATOMIC_RELAXED);
			log_warning("fetching %zu range(s) at offset %" PRIu64 " (%" PRIu64
				    " bytes) failed: %s%s%s",
				    job->nruns, job->runs[0].offset, job->bytes, strerror(-r),
				    oerr.message[0] ? ": " : "", oerr.message);
		}
	}
	return r;
}

/*
 * A fetcher whose reader has not made a request yet has no connection: its first request
 * pays a connection set-up (a round trip, two or three with TLS). So while a fetcher that
 * made one waits idle, the others leave the work to it; when none is idle, anyone takes it.
 * One request at a time (the mount's metadata rounds, a reader's misses one by one) keeps
 * going over one warm connection, and parallel work still spreads over all fetchers.
 */
static void *fetcher(void *arg)
{
	struct fetch_daemon *d = arg;
	struct oci_reader *reader = NULL;
	bool warm = false;

	prctl(PR_SET_NAME, "lzfetch-fetch", 0, 0, 0);
	if (d->client && oci_reader_new(d->client, &reader) < 0)
		log_error("creating a registry reader: %m");
	for (;;) {
		struct fetch_job *job = NULL;
		int err;

		pthread_mutex_lock(&d->lock);
		for (;;) {
			uint64_t wake = UINT64_MAX, now = fetch_now_ms();
			struct timespec ts;

			if (d->stopping && d->sched.nreqs == 0)
				break;
			if (warm || d->warm_idle == 0) {
				job = fetch_sched_pick(&d->sched, now, &wake);
				if (job)
					break;
			}
			abs_deadline(&ts, wake > now ? MIN(wake - now, (uint64_t)1000) : 1000);
			d->warm_idle += warm;
			pthread_cond_timedwait(&d->fetch_cond, &d->lock, &ts);
			d->warm_idle -= warm;
		}
		pthread_mutex_unlock(&d->lock);
		if (!job)
			break;
		err = run_job(d, reader, job);
		if (!warm && reader) {
			uint64_t requests = 0;

			oci_reader_stats(reader, &requests, NULL);
			warm = requests > 0;
		}
		if (err < 0)
			add64(&d->sh->errors, 1);
		pthread_mutex_lock(&d->lock);
		fetch_sched_job_done(&d->sched, job, err, fetch_now_ms());
		fetch_kick(d);
		pthread_mutex_unlock(&d->lock);
		settle(d);
	}
	oci_reader_free(reader);
	return NULL;
}

/* ---- housekeeping and verification
 * --------------------------------------------------------------- */

int fetch_remove_mark(struct fetch_daemon *d)
{
	if (d->fan_fd < 0 || !SH_LOAD(d->sh->marked))
		return 0;
	if (fanotify_mark(d->fan_fd, FAN_MARK_REMOVE, FAN_PRE_ACCESS, d->entry->data_fd, NULL) < 0)
		return -errno;
	SH_STORE(d->sh->marked, 0);
	return 0;
}

/* Mark the entry bad (broken: changed by someone else), set it aside, and let new mounts
 * find no daemon so that they start a fresh entry. */
static void set_bad(struct fetch_daemon *d, bool broken)
{
	int r;

	pthread_mutex_lock(&d->lock);
	r = broken ? cache_entry_mark_broken(d->entry) : cache_entry_mark_bad(d->entry);
	if (r < 0)
		log_error("marking the entry bad: %s", strerror(-r));
	if (!d->well_known_gone) {
		fetch_unlink_discovery(d);
		d->well_known_gone = true;
	}
	__atomic_store_n(&d->sh->state, FETCH_STATE_BAD, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->lock);
}

/* Bitmap flushes come from the housekeeper, the verifier and the exit path: one at a time.
 * Once the entry lock was given up (leaving), the entry may be a new daemon's: no writes. */
static pthread_mutex_t flush_mutex = PTHREAD_MUTEX_INITIALIZER;

static int entry_flush(struct fetch_daemon *d, bool full)
{
	int r = 0;

	pthread_mutex_lock(&flush_mutex);
	if (!__atomic_load_n(&d->unlocked, __ATOMIC_ACQUIRE))
		r = cache_entry_flush(d->entry, full);
	pthread_mutex_unlock(&flush_mutex);
	return r;
}

static bool same_file(int dirfd, const char *name, int fd)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Before writing the entry's header: is the entry still ours? A leaving daemon gives its lock
 * up while it verifies (exit_verify); it may write the result only if it gets the lock back
 * and its files still have their names (not removed, not replaced by a new daemon's). */
static bool entry_owned(struct fetch_daemon *d)
{
	struct cache_entry *e = d->entry;
	char lock_name[CACHE_KEY_LEN + 8];

	if (!__atomic_load_n(&d->unlocked, __ATOMIC_ACQUIRE))
		return true;
	snprintf(lock_name, sizeof(lock_name), "%s.lock", d->cfg.blob.cache_key);
	if (flock(e->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return false;
	if (!same_file(e->dirfd, lock_name, e->lock_fd) ||
	    !same_file(e->dirfd, d->cfg.blob.cache_key, e->data_fd)) {
		(void)flock(e->lock_fd, LOCK_UN);
		return false;
	}
	__atomic_store_n(&d->unlocked, false, __ATOMIC_RELEASE);
	return true;
}

static void *verifier(void *arg)
{
	struct fetch_daemon *d = arg;
	struct cache_entry *e = d->entry;
	uint8_t sum[UTIL_SHA256_LEN];
	char got[UTIL_DIGEST_STR_LEN];
	uint64_t t0 = fetch_now_ms();
	int r;

	prctl(PR_SET_NAME, "lzfetch-verify", 0, 0, 0);
	r = entry_flush(d, true);
	if (r < 0) {
		log_error("persisting the bitmap before verification: %s", strerror(-r));
		__atomic_store_n(&d->verify_started, false, __ATOMIC_RELEASE);
		return NULL;
	}
	if (!d->cfg.blob.digest[0]) {
		/* An unpinned URL source: complete is as good as it gets. */
		if (entry_owned(d))
			r = cache_entry_set_flags(e, CACHE_FLAG_COMPLETE, 0);
		__atomic_store_n(&d->sh->state, FETCH_STATE_COMPLETE, __ATOMIC_RELEASE);
		if (fetch_remove_mark(d) >= 0)
			log_info("entry complete (no digest to verify); fanotify mark removed");
		return NULL;
	}
	/* Hash through the pre-mark fd: its reads raise no events. */
	r = util_sha256_fd(e->data_fd, e->hdr.size, sum);
	if (r < 0) {
		log_error("hashing the cache file: %s", strerror(-r));
		__atomic_store_n(&d->verify_started, false, __ATOMIC_RELEASE);
		return NULL;
	}
	util_digest_format(sum, got);
	pthread_mutex_lock(&flush_mutex);
	if (!entry_owned(d)) {
		pthread_mutex_unlock(&flush_mutex);
		log_info("verification done (%s), but a new daemon owns the entry now: it records "
			 "its own",
			 strcmp(got, d->cfg.blob.digest) == 0 ? "right" : "MISMATCH");
		__atomic_store_n(&d->verify_started, false, __ATOMIC_RELEASE);
		return NULL;
	}
	if (strcmp(got, d->cfg.blob.digest) == 0) {
		r = cache_entry_set_flags(e, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED, 0);
		pthread_mutex_unlock(&flush_mutex);
		if (r < 0)
			log_error("recording the verified entry: %s", strerror(-r));
		__atomic_store_n(&d->sh->state, FETCH_STATE_VERIFIED, __ATOMIC_RELEASE);
		r = fetch_remove_mark(d);
		log_info("verified %s in %" PRIu64 " ms%s", got, fetch_now_ms() - t0,
			 r >= 0 ? "; fanotify mark removed" : "");
		return NULL;
	}
	log_error("digest mismatch for the cache entry: expected %s, got %s; the entry is marked "
		  "bad and set aside, new mounts fetch a fresh copy",
		  d->cfg.blob.digest, got);
	set_bad(d, false);
	pthread_mutex_unlock(&flush_mutex);
	return NULL;
}

void fetch_entry_tampered(struct fetch_daemon *d, const char *why)
{
	if (cache_entry_broken(d->entry))
		return;
	log_error("the cache file %s was %s: reads of missing or present data now fail with "
		  "EIO; the entry is set aside as bad, new mounts fetch a fresh copy",
		  d->entry->data_path, why);
	set_bad(d, true);
}

/* When to persist the bitmap: within FETCH_FLUSH_MS of the last write once fetching pauses,
 * and at least every FETCH_FLUSH_BUSY_MS while it streams. Each flush is an fdatasync of the
 * data written so far, i.e. synchronous disk writes; every 300 ms during a 1 GiB stream they
 * halve the reader's throughput (measured: 330-430 vs 580-650 MB/s), while the page cache
 * already serves every byte. A crash loses at most the bits of the last few seconds. */
static void *housekeeper(void *arg)
{
	struct fetch_daemon *d = arg;
	uint64_t last_flush = fetch_now_ms(), last_err = 0, period = FETCH_FLUSH_MS;
	uint64_t busy_period = FETCH_FLUSH_BUSY_MS, last_fetched = 0, last_change = 0;
	const char *env = getenv("LAZYEROFS_FLUSH_MS");

	prctl(PR_SET_NAME, "lzfetch-house", 0, 0, 0);
	if (env && atoi(env) > 0)
		period = busy_period = (uint64_t)atoi(env);
	for (;;) {
		struct pollfd pfd = {.fd = d->stop_efd, .events = POLLIN};
		uint64_t now, fetched;
		bool streaming;

		const char *why;

		if (poll(&pfd, 1, FETCH_TICK_MS) > 0)
			break;
		settle(d); /* deadlines */
		if (!cache_entry_broken(d->entry) && cache_entry_check(d->entry, &why) == -ESTALE)
			fetch_entry_tampered(d, why);
		now = fetch_now_ms();
		fetched = get64(&d->sh->fetched_bytes);
		if (fetched != last_fetched) {
			last_fetched = fetched;
			last_change = now;
		}
		streaming = now - last_change < period;
		if (now - last_flush >= (streaming ? busy_period : period)) {
			int r = entry_flush(d, false);

			last_flush = now;
			if (r < 0 && now - last_err > 10000) {
				last_err = now;
				log_error("persisting the presence bitmap: %s", strerror(-r));
			}
		}
		if (!__atomic_load_n(&d->verify_started, __ATOMIC_ACQUIRE) &&
		    __atomic_load_n(&d->sh->state, __ATOMIC_ACQUIRE) == FETCH_STATE_RUNNING &&
		    cache_entry_complete(d->entry)) {
			pthread_t t;

			__atomic_store_n(&d->verify_started, true, __ATOMIC_RELEASE);
			if (pthread_create(&t, NULL, verifier, d) == 0)
				pthread_detach(t);
			else
				__atomic_store_n(&d->verify_started, false, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

/* ---- the worker
 * ----------------------------------------------------------------------------------- */

static volatile sig_atomic_t term_requested;

static void on_term(int sig)
{
	(void)sig;
	term_requested = 1;
}

bool fetch_term_requested(void)
{
	return term_requested != 0;
}

static void start_thread(struct fetch_daemon *d, void *(*fn)(void *), pthread_t *ret)
{
	int r = pthread_create(ret, NULL, fn, d);

	if (r != 0)
		fetch_fatal(d, r, "starting a daemon thread: %s", strerror(r));
}

/* Reset what a worker owns: the process that forked us may have been a worker itself (a
 * holder started by a worker after the old holder died), with its state in memory. */
static void worker_state_init(struct fetch_daemon *d)
{
	pthread_condattr_t ca;

	d->client = NULL;
	d->nensure = d->holds = d->conns = d->warm_idle = 0;
	d->leaving = d->stopping = d->unlocked = false;
	d->well_known_gone = false;
	d->verify_started = false;
	d->stop_efd = -1;
	memset(d->rescan_at, 0, sizeof(d->rescan_at));
	memset(d->openers, 0, sizeof(d->openers));
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&flush_mutex, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->fetch_cond, &ca);
	pthread_cond_init(&d->done_cond, &ca);
	pthread_condattr_destroy(&ca);
}

/* A complete entry is verified before leaving, so the next mount needs no mark. The entry lock
 * is given up first: hashing a large image takes seconds, and a mount arriving meanwhile must
 * be able to start a new daemon (the result is recorded only if the entry is still ours). */
static void exit_verify(struct fetch_daemon *d)
{
	struct fetch_shared *sh = d->sh;

	if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != FETCH_STATE_RUNNING ||
	    !cache_entry_complete(d->entry) || !d->cfg.blob.digest[0])
		return;
	pthread_mutex_lock(&flush_mutex);
	if (flock(d->entry->lock_fd, LOCK_UN) == 0)
		__atomic_store_n(&d->unlocked, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&flush_mutex);
	if (!__atomic_exchange_n(&d->verify_started, true, __ATOMIC_ACQ_REL))
		(void)verifier(d);
	/* Or the housekeeper's verifier is under way: let it finish (it needs no lock). */
	for (int i = 0; i < 1200 && __atomic_load_n(&d->verify_started, __ATOMIC_ACQUIRE) &&
			__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) == FETCH_STATE_RUNNING;
	     i++)
		usleep(50000);
}

/* Leave: no user is left. Remove the mark (nothing new can arrive, and a new daemon's
 * mounts of this file will not wait on us), read and answer what is queued, persist. */
static _Noreturn void worker_leave(struct fetch_daemon *d, pthread_t *disp, unsigned ndisp,
				   pthread_t guard)
{
	struct fetch_shared *sh = d->sh;
	uint64_t one = 1;
	int r;

	__atomic_store_n(&sh->exiting, 1, __ATOMIC_RELEASE);
	r = fetch_remove_mark(d);
	if (r < 0)
		log_warning("removing the fanotify mark: %s", strerror(-r));
	if (write(d->stop_efd, &one, sizeof(one)) < 0)
		log_debug("eventfd write: %m");
	for (unsigned i = 0; i < ndisp; i++)
		pthread_join(disp[i], NULL);
	pthread_join(guard, NULL);
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->done_cond);
	fetch_kick(d);
	pthread_mutex_unlock(&d->lock);
	settle(d);
	pthread_mutex_lock(&d->lock);
	while (d->sched.nreqs > 0) {
		struct timespec ts;

		abs_deadline(&ts, 200);
		pthread_mutex_unlock(&d->lock);
		settle(d);
		pthread_mutex_lock(&d->lock);
		pthread_cond_timedwait(&d->done_cond, &d->lock, &ts);
	}
	pthread_mutex_unlock(&d->lock);
	r = entry_flush(d, true);
	if (r < 0)
		log_error("persisting the presence bitmap at exit: %s", strerror(-r));
	else if (cache_entry_complete(d->entry) && sh->state != FETCH_STATE_BAD)
		(void)cache_entry_set_flags(d->entry, CACHE_FLAG_COMPLETE, 0);
	exit_verify(d);
	if (sh->state == FETCH_STATE_BAD)
		cache_entry_remove_aside(d->entry);
	log_info("exiting: %" PRIu64 " events, %" PRIu64 " answers (%" PRIu64 " fast, %" PRIu64
		 " denied), %" PRIu64 " requests, %" PRIu64 " bytes fetched, %" PRIu64
		 " of %" PRIu64 " bytes present",
		 get64(&sh->events), get64(&sh->answers), get64(&sh->fast), get64(&sh->denied),
		 get64(&sh->requests), get64(&sh->fetched_bytes),
		 cache_entry_present_bytes(d->entry), d->cfg.blob.size);
	__atomic_store_n(&sh->worker_done, 1, __ATOMIC_RELEASE);
	_exit(0);
}

_Noreturn void fetch_worker_main(struct fetch_daemon *d, bool takeover)
{
	struct fetch_shared *sh = d->sh;
	pthread_t disp[DISPATCHERS], house, guard, *fetchers;
	struct sigaction sa = {.sa_handler = on_term};
	unsigned ndisp = 0;
	int r;

	__atomic_store_n(&sh->worker_pid, getpid(), __ATOMIC_RELEASE);
	prctl(PR_SET_NAME, "lazyerofs-fetch", 0, 0, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	if (takeover)
		fetch_takeover_prepare(d);
	worker_state_init(d);
	/* A dead predecessor may have changed the entry (verified, bad and set aside). */
	r = cache_entry_reload(d->entry);
	if (r < 0)
		log_warning("re-reading the cache entry's header: %s", strerror(-r));
	if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) == FETCH_STATE_BAD)
		d->well_known_gone = true; /* the name may belong to a fresh daemon now */

	r = fetch_sched_init(&d->sched, &d->entry->present, d->cfg.blob.size, &d->pol,
			     FETCH_MAX_EVENTS + FETCH_MAX_ENSURE);
	if (r < 0)
		fetch_fatal(d, r, "scheduler: %s", strerror(-r));
	d->nfree = 0;
	for (int i = FETCH_MAX_EVENTS - 1; i >= 0; i--)
		if (__atomic_load_n(&sh->journal[i].state, __ATOMIC_ACQUIRE) != SLOT_ACTIVE)
			d->free_slots[d->nfree++] = i;
	if (takeover)
		fetch_takeover_serve(d);

	if (!cache_entry_complete(d->entry)) {
		r = oci_global_init();
		if (r >= 0)
			r = oci_client_new(d->cfg.ref, d->cfg.opts, &d->client);
		if (r >= 0)
			r = oci_client_set_blob(d->client, &d->cfg.blob);
		if (r < 0) {
			if (!takeover)
				fetch_fatal(d, r, "registry client: %s", strerror(-r));
			log_error("registry client: %s; reads of missing data will fail",
				  strerror(-r));
		}
	}
	d->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->open_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop_efd < 0 || d->open_efd < 0)
		fetch_fatal(d, errno, "eventfd: %s", strerror(errno));
	snprintf(d->log_path, sizeof(d->log_path), "%s/daemon-%s.log", d->cfg.run_dir,
		 d->cfg.blob.cache_key);

	fetchers = calloc(d->nfetchers, sizeof(*fetchers));
	if (!fetchers)
		fetch_fatal(d, ENOMEM, "out of memory");
	for (unsigned i = 0; i < d->nfetchers; i++)
		start_thread(d, fetcher, &fetchers[i]);
	if (d->fan_fd >= 0)
		for (; ndisp < DISPATCHERS; ndisp++)
			start_thread(d, dispatcher, &disp[ndisp]);
	start_thread(d, housekeeper, &house);
	start_thread(d, fetch_guard_thread, &guard);

	SH_STORE(sh->ready, 1);
	if (d->ready_fd >= 0) {
		dprintf(d->ready_fd, "OK %d\n", (int)SH_LOAD(sh->holder_pid));
		close(d->ready_fd);
		d->ready_fd = -1;
	}
	if (!takeover)
		log_info("ready: pid %d (worker %d), data %s", (int)SH_LOAD(sh->holder_pid), (int)getpid(),
			 d->entry->data_path);

	fetch_control_loop(d); /* returns when no superblock or client uses the entry */
	worker_leave(d, disp, ndisp, guard);
}
