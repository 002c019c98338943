// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Filling an entry ahead of time, as a client of its daemon (`lazyerofs fetch`): ask for the
 * background fill, watch the entry fill up and get verified, and give up on a permanent fetch
 * error, on a fill that makes no progress, or when the caller cancels. The fetching, the
 * durability of the bitmap and the verification are the daemon's (sched.c, verify.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "cache/cache.h"
#include "fetch/internal.h"
#include "util/macro.h"
#include "util/time.h"

#define FILL_POLL_MS 100
/* Hashing is local: allow the verification this rate at the least, beyond stall_ms. */
#define FILL_VERIFY_MIN_RATE (20ULL << 20)

static bool cancelled(const struct fetch_fill_watch *w)
{
	return w->cancel && *w->cancel;
}

int fetch_fill_wait(struct fetch_handle *h, const struct fetch_fill_watch *w,
		    struct fetch_status *st, struct util_error *err)
{
	uint64_t last_present = UINT64_MAX, since = util_now_ms(), errors0 = 0;
	bool first = true;
	int r;

	for (;;) {
		uint64_t now, limit;

		if (cancelled(w))
			return util_err_set(err, -EINTR, "interrupted");
		/* Every time: a worker replaced after a crash starts without the request. */
		r = fetch_fill(h, err);
		if (r == -EINVAL)
			return util_err_set(err, r,
					    "the daemon of this entry (pid %d) cannot fill it (it "
					    "predates 'lazyerofs fetch'); unmount its mounts first",
					    (int)h->pid);
		if (r >= 0)
			r = fetch_status(h, st);
		if (r < 0) {
			if (cancelled(w))
				return util_err_set(err, -EINTR, "interrupted");
			return util_err_set(err, r, "the daemon (pid %d) stopped answering: %s",
					    (int)h->pid, util_err_msg(err, r));
		}
		if (first)
			errors0 = st->errors;
		first = false;
		if (w->progress)
			w->progress(w->ctx, st);
		if (strcmp(st->state, "verified") == 0)
			return 0;
		if (strcmp(st->state, "complete") == 0 && !st->digest[0])
			return 0; /* an unpinned URL source: nothing to verify against */
		if (strcmp(st->state, "bad") == 0)
			return util_err_set(
			    err, -EILSEQ,
			    "the blob's bytes do not match its digest %s; the entry "
			    "was set aside as bad (a new fetch starts afresh)",
			    st->digest);
		if (st->cache_disk_low && strcmp(st->state, "complete") != 0)
			return util_err_set(
			    err, -ENOSPC,
			    "the cache disk is down to its reserve (%u %% of it is "
			    "kept free for reads); free space, or use cache=DIR on a "
			    "larger disk",
			    CACHE_PREALLOC_RESERVE_PERCENT);
		if (st->errors > errors0 && st->last_errno < 0 &&
		    fetch_error_permanent(st->last_errno))
			return util_err_set(err, st->last_errno, "fetching from the registry: %s",
					    st->last_error[0] ? st->last_error
							      : strerror(-st->last_errno));
		now = util_now_ms();
		if (st->present_bytes != last_present) {
			last_present = st->present_bytes;
			since = now;
		}
		limit = w->stall_ms;
		if (strcmp(st->state, "complete") == 0)
			limit += st->size / FILL_VERIFY_MIN_RATE * 1000;
		if (now - since >= limit) {
			if (strcmp(st->state, "complete") == 0)
				return util_err_set(err, -ETIMEDOUT,
						    "the daemon did not finish verifying the entry "
						    "within %" PRIu64 " s",
						    limit / 1000);
			return util_err_set(
			    err, -ETIMEDOUT, "no byte arrived for %" PRIu64 " s%s%s", limit / 1000,
			    st->errors > errors0 ? "; the last fetch failed: " : "",
			    st->errors > errors0
				? (st->last_error[0] ? st->last_error : strerror(-st->last_errno))
				: "");
		}
		/* A signal ends the wait early (poll is never restarted). */
		(void)poll(NULL, 0, FILL_POLL_MS);
	}
}
