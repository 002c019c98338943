// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Startup profiles in the daemon: every event's blocks go to the record of first accesses
 * (record.h), "profile_get" hands the record out as a profile (a sealed memfd), and
 * "profile_replay" takes a profile (a sealed memfd, parsed as untrusted input), checks that
 * it is for this blob and starts replaying it (replay.c). One replay at a time: a mount of
 * the same blob while one is under way finds it busy and its profile is not taken; once it is
 * done (or failed), the next mount's profile replaces it.
 *
 * The record's ranges live in memory shared with the holder: a worker that replaces a crashed
 * one goes on with the record. The profile being replayed is kept there too (kept.c), and
 * the replacement replays it again; what the first replay brought is present and is not
 * fetched twice.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch/internal.h"
#include "fetch/profile.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/time.h"

int fetch_profile_init(struct fetch_daemon *d)
{
	return fetch_record_init(&d->record, d->cfg.blob.size, d->record_store);
}

void fetch_profile_note(struct fetch_daemon *d, uint64_t first, uint64_t nblk)
{
	fetch_record_note(&d->record, first, nblk, util_now_ms());
}

void fetch_profile_answered(struct fetch_daemon *d, const struct fetch_req *r)
{
	struct cache_bitmap *mine = __atomic_load_n(&d->replay_mine, __ATOMIC_ACQUIRE);
	uint64_t first, n;

	if (!mine || r->result != 0 ||
	    !cache_blocks_of(r->one.offset, r->one.length, d->cfg.blob.size, &first, &n))
		return;
	if (cache_bitmap_find(mine, first, first + n, true) < first + n)
		SH_ADD(d->sh->profile_served, 1);
}

void fetch_profile_drop(struct fetch_daemon *d)
{
	pthread_mutex_lock(&d->lock);
	d->sched.replay = NULL;
	free(d->replay_v);
	d->replay_v = NULL;
	pthread_mutex_unlock(&d->lock);
}

int fetch_profile_get_request(struct fetch_daemon *d, int cfd)
{
	_cleanup_json_ json_t *o = NULL;
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int fd = -1;
	struct profile p;
	size_t len, n = 0;
	bool truncated;
	int r;

	if (!d->cfg.blob.digest[0])
		return fetch_reply_error(cfd, ENODATA,
					 "the image has no digest (an http(s) source without "
					 "digest=sha256:...), and a profile names its blob by digest");
	r = fetch_record_profile(&d->record, d->cfg.blob.digest, &p);
	if (r >= 0) {
		n = p.n;
		r = profile_format(&p, &text, &len);
		profile_free(&p);
	}
	if (r >= 0)
		r = fetch_sealed_new("lazyerofs-profile", text, len, &fd);
	if (r < 0)
		return fetch_reply_error(cfd, r, "profile: %s", strerror(-r));
	(void)fetch_record_count(&d->record, &truncated);
	o = json_pack("{s:b,s:I,s:b}", "ok", 1, "ranges", (json_int_t)n, "truncated",
		      truncated);
	return o ? fetch_proto_send(cfd, o, fd) : -ENOMEM;
}

/* The profile's ranges as whole blocks within the blob, in its order. */
static struct util_extent *replay_ranges(const struct profile *p, uint64_t size,
					 uint64_t *ret_bytes)
{
	struct util_extent *v = malloc((p->n ? p->n : 1) * sizeof(*v));

	*ret_bytes = 0;
	if (!v)
		return NULL;
	for (size_t i = 0; i < p->n; i++) {
		uint64_t lo = p->v[i].offset / CACHE_BLOCK_SIZE * CACHE_BLOCK_SIZE;
		uint64_t hi = MIN(ROUND_UP(p->v[i].offset + p->v[i].length, CACHE_BLOCK_SIZE), size);

		v[i] = (struct util_extent){.offset = lo, .length = hi - lo};
		*ret_bytes += hi - lo;
	}
	return v;
}

/* Is a replay under way: ranges left, or jobs of it in flight (d->lock held)? */
static bool replay_busy(const struct fetch_daemon *d)
{
	return d->replay_v && (fetch_replay_active(&d->replay) || d->replay.in_flight > 0);
}

static int reply_replay(struct fetch_daemon *d, int cfd, bool started)
{
	_cleanup_json_ json_t *o = NULL;

	pthread_mutex_lock(&d->lock);
	o = json_pack("{s:b,s:b,s:b,s:I,s:I}", "ok", 1, "started", started, "busy",
		      !started && replay_busy(d), "ranges", (json_int_t)d->replay.n, "bytes",
		      (json_int_t)d->replay.bytes);
	pthread_mutex_unlock(&d->lock);
	return o ? fetch_proto_send(cfd, o, -1) : -ENOMEM;
}

/* Start replaying the profile text buf (untrusted) unless a replay is under way (*started
 * says which; -errno and err when the profile is refused); a replay done or failed is
 * replaced. Any thread. */
static int replay_start(struct fetch_daemon *d, const uint8_t *buf, size_t len, bool *started,
			struct util_error *err)
{
	_cleanup_free_ struct util_extent *v = NULL;
	struct cache_bitmap *mine = NULL;
	struct profile p = {0};
	uint64_t bytes;
	size_t n;
	bool busy;
	int r;

	*started = false;
	r = profile_parse(buf, len, &p, err);
	if (r < 0)
		return r;
	if (strcmp(p.digest, d->cfg.blob.digest) != 0 || p.size != d->cfg.blob.size) {
		r = util_err_set(err, -EILSEQ,
				 "the profile is for blob %s (%" PRIu64 " bytes), not this "
				 "image's %s (%" PRIu64 " bytes)",
				 p.digest, p.size,
				 d->cfg.blob.digest[0] ? d->cfg.blob.digest : "(no digest)",
				 d->cfg.blob.size);
		profile_free(&p);
		return r;
	}
	v = replay_ranges(&p, d->cfg.blob.size, &bytes);
	n = p.n;
	profile_free(&p);
	if (!v)
		return util_err_set(err, -ENOMEM, "profile: out of memory");
	/* The blocks replays fetched: made by the first, kept by the ones that replace it
	 * (read without the lock: fetch_profile_answered). */
	if (!__atomic_load_n(&d->replay_mine, __ATOMIC_ACQUIRE)) {
		mine = calloc(1, sizeof(*mine));
		if (!mine || cache_bitmap_init(mine, d->sched.nblocks, false) < 0) {
			free(mine);
			return util_err_set(err, -ENOMEM, "profile: out of memory");
		}
	}
	pthread_mutex_lock(&d->lock);
	busy = replay_busy(d);
	if (!busy) {
		if (!d->replay_mine)
			__atomic_store_n(&d->replay_mine, TAKE_PTR(mine), __ATOMIC_RELEASE);
		free(d->replay_v);
		d->replay =
		    (struct fetch_replay){.v = v, .n = n, .bytes = bytes, .mine = d->replay_mine};
		d->replay_v = TAKE_PTR(v);
		fetch_sched_replay(&d->sched, &d->replay, util_now_ms());
		fetch_kick(d);
	}
	pthread_mutex_unlock(&d->lock);
	if (mine) { /* made for nothing: another replay is under way, or made it first */
		cache_bitmap_destroy(mine);
		free(mine);
	}
	if (!busy) {
		/* Kept for a worker that replaces this one: it replays the profile again. */
		fetch_kept_put(d->profile_kept, buf, len, NULL);
		log_info("replaying a startup profile: %zu ranges, %" PRIu64 " KiB", n,
			 bytes >> 10);
	}
	*started = !busy;
	return 0;
}

int fetch_profile_replay_request(struct fetch_daemon *d, int cfd, int fd)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct util_error err = UTIL_ERROR_INIT;
	size_t len = 0;
	bool busy, started = false;
	int r;

	if (fd < 0)
		return fetch_reply_error(cfd, EINVAL, "profile: no memfd was passed");
	pthread_mutex_lock(&d->lock);
	busy = replay_busy(d);
	pthread_mutex_unlock(&d->lock);
	/* One replay at a time; a complete entry has nothing to fetch. */
	if (busy || cache_entry_complete(d->entry))
		return reply_replay(d, cfd, false);
	r = fetch_sealed_read(fd, PROFILE_MAX_BYTES, "profile", &buf, &len, &err);
	if (r >= 0)
		r = replay_start(d, buf, len, &started, &err);
	if (r < 0)
		return fetch_reply_error(cfd, r, "%s", util_err_msg(&err, r));
	return reply_replay(d, cfd, started);
}

/* A worker that replaces a crashed one replays the profile its predecessor was replaying
 * (or had replayed): the ranges already present are not fetched again, the rest is. */
void fetch_profile_restore(struct fetch_daemon *d)
{
	struct util_error err = UTIL_ERROR_INIT;
	size_t len = fetch_kept_len(d->profile_kept);
	bool started;
	int r;

	if (!len || cache_entry_complete(d->entry))
		return;
	r = replay_start(d, d->profile_kept->buf, len, &started, &err);
	if (r < 0)
		log_warning("the startup profile kept from the previous worker is unusable: %s",
			    util_err_msg(&err, r));
	else if (started)
		log_info("the previous worker was replaying a startup profile: replaying it again");
}

void fetch_profile_status(struct fetch_daemon *d, json_t *o)
{
	const char *state = "none";
	struct fetch_replay rp;
	uint64_t now = util_now_ms();
	bool truncated;
	size_t recorded = fetch_record_count(&d->record, &truncated);

	pthread_mutex_lock(&d->lock);
	rp = d->replay;
	pthread_mutex_unlock(&d->lock);
	if (rp.failed)
		state = "failed";
	else if (rp.done_ms)
		state = "done";
	else if (rp.started_ms)
		state = "replaying";
	json_object_set_new(o, "profile_state", json_string(state));
	json_object_set_new(o, "profile_ranges", json_integer((json_int_t)rp.n));
	json_object_set_new(o, "profile_ranges_done", json_integer((json_int_t)rp.cursor));
	json_object_set_new(o, "profile_bytes", json_integer((json_int_t)rp.bytes));
	/* (the daemon's totals, as the other counters: replays and workers come and go) */
	json_object_set_new(o, "profile_fetched_bytes",
			    json_integer((json_int_t)SH_LOAD(d->sh->profile_fetched_bytes)));
	json_object_set_new(o, "profile_requests", json_integer((json_int_t)rp.requests));
	json_object_set_new(o, "profile_in_flight", json_integer(rp.in_flight));
	json_object_set_new(o, "profile_served",
			    json_integer((json_int_t)SH_LOAD(d->sh->profile_served)));
	json_object_set_new(o, "profile_ms",
			    json_integer(rp.started_ms ? (json_int_t)((rp.done_ms ? rp.done_ms : now) -
								     rp.started_ms)
						       : 0));
	json_object_set_new(o, "recorded_ranges", json_integer((json_int_t)recorded));
	json_object_set_new(o, "record_truncated", json_boolean(truncated));
}

/* ---- the client's side ---- */

int fetch_profile_get(struct fetch_handle *h, struct profile *ret, bool *ret_truncated,
		      struct util_error *err)
{
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", "profile_get"), *rep = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = -1;
	size_t len = 0;
	int r;

	if (!req)
		return -ENOMEM;
	r = fetch_proto_call(h->ctl_fd, req, -1, &rep, &fd, err);
	if (r < 0)
		return r;
	if (fd < 0)
		return util_err_set(err, -EBADMSG, "the daemon passed no profile");
	r = fetch_sealed_read(fd, PROFILE_MAX_BYTES, "the daemon's profile", &buf, &len, err);
	if (r < 0)
		return r;
	*ret_truncated = json_is_true(json_object_get(rep, "truncated"));
	return profile_parse(buf, len, ret, err);
}

int fetch_profile_replay(struct fetch_handle *h, const void *buf, size_t len, bool *ret_started,
			 bool *ret_busy, struct util_error *err)
{
	_cleanup_json_ json_t *rep = NULL;
	int r = fetch_proto_call_sealed(h->ctl_fd, "profile_replay", buf, len, &rep, err);

	if (r < 0)
		return r;
	*ret_started = json_is_true(json_object_get(rep, "started"));
	*ret_busy = json_is_true(json_object_get(rep, "busy"));
	return 0;
}
