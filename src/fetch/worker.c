// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The worker process and its lifetime: start the threads (event dispatch in dispatch.c, the
 * transfer engine in transfer.c, housekeeping and verification in verify.c, the holder's
 * guard in guard.c), run the control loop (control.c) while any mount uses the entry, then
 * leave: every pending event answered, the bitmap persisted, a complete entry verified.
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
#include "util/time.h"

#define DISPATCHERS FETCH_DISPATCHERS

/* Set by the handler in whichever thread takes the signal, read by the others: atomic (a
 * lock-free int), not only sig_atomic_t. */
static int term_requested;

static void on_term(int sig)
{
	(void)sig;
	__atomic_store_n(&term_requested, 1, __ATOMIC_RELAXED);
}

bool fetch_term_requested(void)
{
	return __atomic_load_n(&term_requested, __ATOMIC_RELAXED) != 0;
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
	d->reader = NULL;
	/* A replay in memory is the forking worker's; the kept profile is replayed again
	 * (fetch_profile_restore). */
	free(d->replay_v);
	d->replay_v = NULL;
	d->replay = (struct fetch_replay){0};
	if (d->replay_mine) {
		cache_bitmap_destroy(d->replay_mine);
		free(d->replay_mine);
		d->replay_mine = NULL;
	}
	d->nensure = d->holds = d->conns = d->fills = 0;
	if (SH_LOAD(d->sh->prefetch_all))
		d->pol.prefetch_all = true;
	if (SH_LOAD(d->sh->timeout_chosen_ms)) /* and the registry client's, made below */
		d->pol.timeout_ms = d->oopts.timeout_ms = SH_LOAD(d->sh->timeout_chosen_ms);
	d->last_errno = 0;
	d->last_error[0] = 0;
	d->leaving = d->stopping = d->unlocked = false;
	d->verify_started = false;
	d->stop_efd = -1;
	for (unsigned i = 0; i < DISPATCHERS; i++)
		d->disp_epfd[i] = -1;
	memset(d->rescan_at, 0, sizeof(d->rescan_at));
	memset(d->openers, 0, sizeof(d->openers));
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->flush_mutex, NULL);
	/* Forked by a holder that was forked by a worker: its locks as that worker's threads
	 * held them then (a flush in fdatasync, a store). */
	cache_entry_locks_init(d->entry);
	{
		pthread_rwlockattr_t a;

		/* The trimmer must get its turn however many events keep arriving. */
		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&d->answer_gate, &a);
		pthread_rwlockattr_destroy(&a);
	}
	d->trimming = false;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->kick_cond, &ca);
	pthread_cond_init(&d->done_cond, &ca);
	pthread_cond_init(&d->predict_cond, &ca);
	d->predict_n = 0;
	d->foreign_threads = 0;
	pthread_condattr_destroy(&ca);
}

/* A complete entry is verified before leaving, so the next mount needs no mark. The entry lock
 * is given up first: hashing a large image takes seconds, and a mount arriving meanwhile must
 * be able to start a new daemon (the result is recorded only if the entry is still ours). */
static _Noreturn void worker_leave(struct fetch_daemon *d, pthread_t *disp, unsigned ndisp,
				   pthread_t guard)
{
	struct fetch_shared *sh = d->sh;
	uint64_t one = 1;
	int r;

	__atomic_store_n(&sh->exiting, 1, __ATOMIC_RELEASE);
	fetch_left_caller_cgroup(d);
	r = fetch_remove_mark(d);
	if (r < 0)
		log_warning("removing the fanotify mark: %s", strerror(-r));
	if (write(d->stop_efd, &one, sizeof(one)) < 0)
		log_debug("eventfd write: %m");
	for (unsigned i = 0; i < ndisp; i++)
		pthread_join(disp[i], NULL);
	pthread_join(guard, NULL);
	/* Before the entry lock is given up (fetch_exit_verify): the file is ours alone. */
	fetch_textfile_stop(d);
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->done_cond);
	pthread_cond_broadcast(&d->predict_cond);
	fetch_kick(d);
	pthread_mutex_unlock(&d->lock);
	fetch_settle(d);
	pthread_mutex_lock(&d->lock);
	while (d->sched.nreqs > 0) {
		struct timespec ts;

		util_deadline_ts(&ts, 200);
		pthread_mutex_unlock(&d->lock);
		fetch_settle(d);
		pthread_mutex_lock(&d->lock);
		pthread_cond_timedwait(&d->done_cond, &d->lock, &ts);
	}
	pthread_mutex_unlock(&d->lock);
	r = fetch_entry_flush(d, true);
	if (r < 0)
		log_error("persisting the presence bitmap at exit: %s", strerror(-r));
	else if (cache_entry_complete(d->entry) && SH_LOAD(sh->state) != FETCH_STATE_BAD)
		(void)cache_entry_set_flags(d->entry, CACHE_FLAG_COMPLETE, 0);
	/* The last user left now: gc evicts least recently used entries first. */
	cache_entry_touch(d->entry);
	fetch_exit_verify(d);
	if (SH_LOAD(sh->state) == FETCH_STATE_BAD)
		cache_entry_remove_aside(d->entry);
	log_info("exiting: %" PRIu64 " events, %" PRIu64 " answers (%" PRIu64 " fast, %" PRIu64
		 " denied), %" PRIu64 " requests, %" PRIu64 " bytes fetched, %" PRIu64
		 " of %" PRIu64 " bytes present",
		 SH_LOAD(sh->events), SH_LOAD(sh->answers), SH_LOAD(sh->fast), SH_LOAD(sh->denied),
		 SH_LOAD(sh->requests), SH_LOAD(sh->fetched_bytes),
		 cache_entry_present_bytes(d->entry), d->cfg.blob.size);
	__atomic_store_n(&sh->worker_done, 1, __ATOMIC_RELEASE);
	_exit(0);
}

_Noreturn void fetch_worker_main(struct fetch_daemon *d, bool takeover)
{
	struct fetch_shared *sh = d->sh;
	pthread_t disp[DISPATCHERS], house, guard, xfer;
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
		SH_STORE(sh->discovery_gone, 1); /* the name may belong to a fresh daemon now */
	/* A predecessor that made the run directory's sockets again took them with it: ours
	 * (the holder's) are the old ones, unreachable until this. */
	fetch_run_dir_heal(d, util_now_ms());

	r = fetch_sched_init(&d->sched, &d->entry->present, d->cfg.blob.size, &d->pol,
			     FETCH_MAX_EVENTS + FETCH_MAX_ENSURE);
	if (r < 0)
		fetch_fatal(d, r, "scheduler: %s", strerror(-r));
	fetch_files_restore(d);
	r = fetch_profile_init(d);
	if (r < 0)
		fetch_fatal(d, r, "record of first accesses: %s", strerror(-r));
	fetch_profile_restore(d);
	fetch_slots_init(d);
	if (takeover)
		fetch_takeover_serve(d);

	if (!cache_entry_complete(d->entry)) {
		r = oci_global_init();
		if (r >= 0)
			r = oci_client_new(d->cfg.ref, d->cfg.opts, &d->client);
		if (r >= 0)
			r = oci_client_set_blob(d->client, &d->cfg.blob);
		if (r >= 0)
			r = oci_reader_new(d->client, &d->reader);
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

	start_thread(d, fetch_transfer_thread, &xfer);
	if (d->client && d->reader) {
		pthread_t token;

		oci_client_set_refresh_ahead(d->client, true);
		start_thread(d, fetch_token_thread, &token);
		pthread_detach(token); /* it ends when the worker stops */
	}
	if (d->fan_fd >= 0) {
		pthread_t predict;

		r = fetch_dispatchers_prepare(d);
		if (r < 0)
			fetch_fatal(d, r, "epoll for the event threads: %s", strerror(-r));
		for (; ndisp < DISPATCHERS; ndisp++)
			start_thread(d, fetch_dispatcher_thread, &disp[ndisp]);
		start_thread(d, fetch_predict_thread, &predict);
		pthread_detach(predict); /* it ends when the worker stops */
	}
	start_thread(d, fetch_housekeeper_thread, &house);
	start_thread(d, fetch_guard_thread, &guard);
	fetch_textfile_start(d);

	fetch_leave_caller_cgroup_start(d);
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
