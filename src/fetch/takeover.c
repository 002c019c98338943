// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * A replacement worker takes over the events its dead predecessor read from the group: the
 * group outlived it (the holder keeps a copy), and an event read but not answered can be
 * answered by another process with the same fd number (fact 6). The journal in shared memory
 * names each event the dead worker read: its fd number, range and absolute deadline.
 *
 * Why fd numbers are safe to answer by, here:
 * - Every worker starts from the same fd table: the daemon's essential fds, at the same
 *   numbers in every process (anything else inherited is closed first). A pending event's
 *   number therefore never collides with one of them.
 * - A dead worker's pending events have distinct numbers (each was an open fd of that worker;
 *   a slot is freed before its fd is closed, so a journaled number is never reused while its
 *   slot is active), and no process but the worker reads events, so when the worker is dead
 *   every event in the group's "read, not answered" list is one of the dead worker's.
 * - The journaled numbers are occupied by placeholders before this process opens anything,
 *   so none of its own new events can get one of them while the old event is pending.
 * - Every other number the dead worker could have used (all below its RLIMIT_NOFILE, which
 *   the daemon sets) is answered EIO: that reaches exactly the events it read but had not
 *   journaled yet (never zeros), and an answer to a number with no pending event is refused
 *   by the kernel (ENOENT). Only then does this worker read events.
 * - An event the dead worker answered but had not yet freed in the journal is answered again
 *   with its number; its fd was still open in the dead worker, so no other event can hold
 *   that number, and the kernel refuses the second answer (ENOENT).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/internal.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

void fetch_takeover_prepare(struct fetch_daemon *d)
{
	struct fetch_shared *sh = d->sh;
	int keep[32], limit = sh->fd_limit > 0 ? sh->fd_limit : 1024;
	size_t nkeep = fetch_essential_fds(d, keep, ARRAY_SIZE(keep));
	unsigned known = 0, unknown = 0, dropped = 0;
	uint8_t *journaled;

	/* The process that forked us may have had fds of its own (a holder that was a worker
	 * before kept none, but be sure): start from the essential set alone. */
	fetch_close_all_but(keep, nkeep);
	limit = MAX(limit, sh->hiwater_fd + 1);
	journaled = calloc((size_t)limit, 1);
	if (!journaled)
		fetch_fatal(d, ENOMEM, "takeover: out of memory");
	for (size_t i = 0; i < nkeep; i++)
		if (keep[i] < limit)
			journaled[keep[i]] = 2; /* ours: never an event's number */
	for (size_t i = 0; i < FETCH_JOURNAL_USED(sh); i++) {
		struct fetch_journal_slot *s = &sh->journal[i];
		int fd = s->fd;

		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_ACTIVE)
			continue;
		/* Impossible by construction (see above); never answer through a number twice
		 * or through one of our own fds. */
		if (fd < 0 || fd >= limit || journaled[fd] || dup2(d->devnull_fd, fd) < 0) {
			__atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
			dropped++;
			continue;
		}
		journaled[fd] = 1;
		known++;
	}
	for (int fd = 0; fd < limit && d->fan_fd >= 0; fd++) {
		struct fanotify_response resp = {.fd = fd, .response = FAN_DENY_ERRNO(EIO)};

		if (journaled[fd] == 1)
			continue;
		/* A denied read is an error like any other; it stays out of the latency
		 * histogram (nobody noted when it was read). */
		if (write(d->fan_fd, &resp, sizeof(resp)) == (ssize_t)sizeof(resp)) {
			unknown++;
			SH_ADD(sh->events, 1);
			SH_ADD(sh->answers, 1);
			SH_ADD(sh->denied, 1);
			SH_ADD(sh->errors, 1);
		}
	}
	free(journaled);
	log_info("worker %d took over (restart %u): %u event(s) to serve again, %u unrecorded "
		 "one(s) denied%s",
		 (int)getpid(), SH_LOAD(sh->restarts), known, unknown,
		 dropped ? ", inconsistent journal slots dropped" : "");
}

void fetch_takeover_serve(struct fetch_daemon *d)
{
	struct fetch_shared *sh = d->sh;
	uint64_t now = util_now_ms();
	unsigned expired = 0;

	for (int i = (int)FETCH_JOURNAL_USED(sh) - 1; i >= 0; i--) {
		struct fetch_journal_slot *s = &sh->journal[i];
		struct fetch_req *req = &d->pool[i];
		int r;

		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != SLOT_ACTIVE)
			continue;
		/* An event the dead worker had read: serve it like a new one, by the deadline it
		 * got when it was first read -- a crash loop cannot make a reader wait forever. */
		*req = (struct fetch_req){.kind = FETCH_REQ_EVENT,
					  .fd = s->fd,
					  .slot = i,
					  .deadline_ms = s->deadline_ms ? s->deadline_ms : now,
					  .read_us = s->read_us, /* waiting since then */
					  .one = {.offset = s->off, .length = s->len},
					  .taken_over = true};
		if (s->off >= d->cfg.blob.size || s->len == 0) {
			req->result = 0; /* outside the blob: the read sees EOF */
			fetch_answer_batch(d, &req, 1);
			continue;
		}
		req->one.length = MIN(s->len, d->cfg.blob.size - s->off);
		if (now >= req->deadline_ms) {
			expired++;
			req->result = -EIO;
			fetch_answer_batch(d, &req, 1);
			continue;
		}
		pthread_mutex_lock(&d->lock);
		r = fetch_sched_add(&d->sched, req, now);
		pthread_mutex_unlock(&d->lock);
		if (r != 0) {
			req->result = r > 0 ? 0 : -EIO; /* present, or never zeros */
			fetch_answer_batch(d, &req, 1);
		}
	}
	if (expired)
		log_warning("takeover: %u event(s) past their deadline denied (EIO)", expired);
}
