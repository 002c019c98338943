// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Event dispatch: dispatcher threads read permission events from the fanotify group, journal
 * them, answer present ranges at once (the fast path: the bitmap, never the network) and hand
 * the rest to the scheduler. Every event leaves through fetch_answer_batch(), the one exit
 * path, exactly once.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

#define DISPATCHERS   FETCH_DISPATCHERS
#define READ_BATCH    FETCH_READ_BATCH /* a read never returns more than we have slots for */
#define COLLECT_BATCH 256

/* ---- journal slots ------------------------------------------------------------------------ */

void fetch_slots_init(struct fetch_daemon *d)
{
	d->nfree = 0;
	for (int i = (int)FETCH_JOURNAL_USED(d->sh) - 1; i >= 0; i--)
		if (__atomic_load_n(&d->sh->journal[i].state, __ATOMIC_ACQUIRE) != SLOT_ACTIVE)
			d->free_slots[d->nfree++] = i;
}

/* Slots that can be taken now (d->lock held). */
static size_t slots_free(const struct fetch_daemon *d)
{
	return d->nfree + (FETCH_MAX_EVENTS - FETCH_JOURNAL_USED(d->sh));
}

/* Take a slot (d->lock held, slots_free() > 0): a freed one, else the lowest never used. */
static int slot_take(struct fetch_daemon *d)
{
	uint32_t hi;

	if (d->nfree > 0)
		return d->free_slots[--d->nfree];
	hi = FETCH_JOURNAL_USED(d->sh);
	SH_STORE(d->sh->journal_hi, hi + 1);
	return (int)hi;
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
		/* Before the answer: a trim leaves units alone that were read this recently. */
		if (r->result == 0)
			fetch_trim_note(d, r->one.offset, r->one.length);
		resp.fd = r->fd;
		resp.response = r->result == 0 ? FAN_ALLOW : FAN_DENY_ERRNO(deny_errno(r->result));
		if (r->result != 0) {
			SH_ADD(d->sh->denied, 1);
			SH_ADD(d->sh->errors, 1);
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
		if (answered) {
			fetch_latency_observe(d->sh, r->read_us);
			SH_ADD(d->sh->answers, 1);
			fetch_profile_answered(d, r);
		}
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
void fetch_settle(struct fetch_daemon *d)
{
	struct fetch_req *out[COLLECT_BATCH];
	size_t n;

	do {
		/* From the test of the bits (collect) to the answer: no trim in between. */
		pthread_rwlock_rdlock(&d->answer_gate);
		pthread_mutex_lock(&d->lock);
		n = fetch_sched_collect(&d->sched, util_now_ms(), out, COLLECT_BATCH);
		pthread_mutex_unlock(&d->lock);
		fetch_answer_batch(d, out, n);
		pthread_rwlock_unlock(&d->answer_gate);
	} while (n == COLLECT_BATCH);
}

/* ---- dispatchers ---------------------------------------------------------------------------- */

static bool own_pid(struct fetch_daemon *d, pid_t pid)
{
	return pid == SH_LOAD(d->sh->holder_pid) || pid == getpid();
}

static void handle_event_gated(struct fetch_daemon *d, struct fetch_req *r,
			       const struct fetch_event *ev)
{
	uint64_t size = d->cfg.blob.size, off, len, first, nblk;
	bool ra, probe, held, own = own_pid(d, ev->pid);
	int q;

	off = ev->has_range ? ev->offset : 0;
	len = ev->has_range ? ev->count : size;
	if (!cache_blocks_of(off, len, size, &first, &nblk)) {
		r->result = 0; /* nothing inside the blob: the read sees EOF */
		fetch_answer_batch(d, &r, 1);
		return;
	}
	len = MIN(len, size - off);
	r->one = (struct util_extent){.offset = off, .length = len};
	/* The daemon's own reads (predict.c) are of pages the program's loader reads too, and
	 * find them in the page cache afterwards: a profile recorded now needs them (without
	 * them, the same programs replayed: 0.16 -> 0.20-0.24 of pull). */
	fetch_profile_note(d, first, nblk);
	if (cache_entry_broken(d->entry)) {
		r->result = -EIO; /* the file was changed behind our back: never its bytes */
		fetch_answer_batch(d, &r, 1);
		return;
	}
	if (own) {
		/* Our own read (predict.c reads only what is present): of missing bytes it would
		 * wait on itself, so it is refused loudly; else answered at once, no stream. */
		if (cache_bitmap_test_range(&d->entry->present, first, nblk)) {
			SH_ADD(d->sh->fast, 1);
			r->result = 0;
		} else {
			log_warning("event from the daemon itself (pid %d) for missing bytes; "
				    "denying",
				    (int)ev->pid);
			r->result = -EIO;
		}
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
		SH_ADD(d->sh->fast, 1);
		r->result = 0;
		fetch_answer_batch(d, &r, 1);
		return;
	}
	pthread_mutex_lock(&d->lock);
	q = fetch_sched_add(&d->sched, r, util_now_ms()); /* by the journaled deadline */
	/* A read of bytes that just failed to fetch starts no stream and no read-ahead towards
	 * a registry that is not answering: it probes, or waits for the probe under way. */
	probe = q == 0 && r->probe;
	held = q == 0 && r->held;
	if (q == 0 && !probe && !held)
		(void)fetch_sched_note_read(&d->sched, off, len);
	if (q == 0) {
		fetch_kick(d);
		fetch_predict_note(d, ev->pid);
	}
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

/* From the test of the bits to the answer: no trim in between (trim.c). */
static void handle_event(struct fetch_daemon *d, struct fetch_req *r, const struct fetch_event *ev)
{
	pthread_rwlock_rdlock(&d->answer_gate);
	handle_event_gated(d, r, ev);
	pthread_rwlock_unlock(&d->answer_gate);
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

/* Each dispatcher waits on an epoll instance of its own that holds the group exclusively
 * (EPOLLEXCLUSIVE): an event wakes one idle dispatcher, not all of them. Waiting in poll(2),
 * both woke for every event and one found nothing: on 2 CPUs that second wake-up took the
 * reader's CPU (random 4 KiB reads of present data, 10,000 a round, median of 5: 90 us a read
 * with two dispatchers polling, 74 with one, 65 for a responder that only allows). */
int fetch_dispatchers_prepare(struct fetch_daemon *d)
{
	for (unsigned i = 0; i < DISPATCHERS; i++) {
		struct epoll_event fan = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = d->fan_fd};
		struct epoll_event stop = {.events = EPOLLIN, .data.fd = d->stop_efd};
		int ep = epoll_create1(EPOLL_CLOEXEC);

		if (ep < 0)
			return -errno;
		d->disp_epfd[i] = ep;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, d->fan_fd, &fan) < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, d->stop_efd, &stop) < 0)
			return -errno;
	}
	d->disp_next = 0;
	return 0;
}

void *fetch_dispatcher_thread(void *arg)
{
	struct fetch_daemon *d = arg;
	uint64_t buf[READ_BATCH * sizeof(struct fanotify_event_metadata) / 8];
	struct fetch_event evs[READ_BATCH];
	struct fetch_req *reqs[READ_BATCH];
	int slots[READ_BATCH];
	int ep = d->disp_epfd[__atomic_fetch_add(&d->disp_next, 1, __ATOMIC_RELAXED)];
	bool draining = false;

	prctl(PR_SET_NAME, "lzfetch-events", 0, 0, 0);
	for (;;) {
		struct epoll_event woke[2];
		size_t n, k = 0;
		bool bad = false, ready = false;
		ssize_t got;
		int maxfd = -1, nwoke = 0;
		uint64_t deadline, read_us;

		if (!draining) {
			nwoke = epoll_wait(ep, woke, ARRAY_SIZE(woke), -1);
			if (nwoke < 0 && errno != EINTR)
				break;
		}
		/* Leaving: the mark is gone, so nothing new arrives; read what is queued until
		 * the group is empty (an event left unread would be allowed at exit: zeros). */
		for (int i = 0; i < nwoke; i++) {
			if (woke[i].data.fd == d->stop_efd)
				draining = true;
			else
				ready = true;
		}
		if (!draining && !ready)
			continue;
		/* Back-pressure: take the slots first, then read at most that many events
		 * (every event is at least a metadata record long). */
		pthread_mutex_lock(&d->lock);
		while (slots_free(d) < READ_BATCH && !d->stopping)
			pthread_cond_wait(&d->done_cond, &d->lock);
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		for (size_t i = 0; i < READ_BATCH; i++)
			slots[i] = slot_take(d);
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
		read_us = util_now_us();
		deadline = read_us / 1000 + d->pol.timeout_ms;
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
						.pid = evs[i].pid,
						.slot = slot,
						.deadline_ms = deadline,
						.read_us = read_us};
			d->sh->journal[slot].fd = evs[i].fd;
			d->sh->journal[slot].off = evs[i].has_range ? evs[i].offset : 0;
			d->sh->journal[slot].len =
			    evs[i].has_range ? evs[i].count : d->cfg.blob.size;
			d->sh->journal[slot].deadline_ms = deadline;
			d->sh->journal[slot].read_us = read_us;
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
		SH_ADD(d->sh->events, k);
		for (size_t i = 0; i < k; i++) {
			if (!(evs[i].mask & FAN_PRE_ACCESS))
				log_warning("unexpected permission event mask 0x%" PRIx64,
					    (uint64_t)evs[i].mask);
			handle_event(d, reqs[i], &evs[i]);
		}
	}
	return NULL;
}
