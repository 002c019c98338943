// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The entry's durability and integrity: the housekeeping thread (deadlines, bitmap
 * persistence, tamper checks), the verification of a complete entry against its digest, and
 * what follows from it (the mark removed, or the entry set aside as bad).
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

/* ---- housekeeping and verification
 * --------------------------------------------------------------- */

int fetch_remove_mark(struct fetch_daemon *d)
{
	if (d->fan_fd < 0 || !SH_LOAD(d->sh->marked))
		return 0;
	/* Whatever happens next, this entry is never trimmed again: a superblock that opens the
	 * file from now on does so unmarked, and never raises events (fact 3). */
	SH_STORE(d->sh->mark_dropped, 1);
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
	if (!SH_LOAD(d->sh->discovery_gone)) {
		fetch_unlink_discovery(d);
		SH_STORE(d->sh->discovery_gone, 1);
	}
	__atomic_store_n(&d->sh->state, FETCH_STATE_BAD, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->lock);
}

/* Bitmap flushes come from the housekeeper, the verifier and the exit path: one at a time
 * (d->flush_mutex). Once the entry lock was given up (leaving), the entry may be a new
 * daemon's: no writes. */
int fetch_entry_flush(struct fetch_daemon *d, bool full)
{
	int r = 0;

	pthread_mutex_lock(&d->flush_mutex);
	if (!__atomic_load_n(&d->unlocked, __ATOMIC_ACQUIRE))
		r = cache_entry_flush(d->entry, full);
	pthread_mutex_unlock(&d->flush_mutex);
	return r;
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
	if (!util_fd_is_at(e->lock_fd, e->dirfd, lock_name) ||
	    !util_fd_is_at(e->data_fd, e->dirfd, d->cfg.blob.cache_key)) {
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
	uint64_t t0 = util_now_ms();
	int r;

	prctl(PR_SET_NAME, "lzfetch-verify", 0, 0, 0);
	r = fetch_entry_flush(d, true);
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
	pthread_mutex_lock(&d->flush_mutex);
	if (!entry_owned(d)) {
		pthread_mutex_unlock(&d->flush_mutex);
		log_info("verification done (%s), but a new daemon owns the entry now: it records "
			 "its own",
			 strcmp(got, d->cfg.blob.digest) == 0 ? "right" : "MISMATCH");
		__atomic_store_n(&d->verify_started, false, __ATOMIC_RELEASE);
		return NULL;
	}
	if (strcmp(got, d->cfg.blob.digest) == 0) {
		r = cache_entry_set_flags(e, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED, 0);
		pthread_mutex_unlock(&d->flush_mutex);
		if (r < 0)
			log_error("recording the verified entry: %s", strerror(-r));
		__atomic_store_n(&d->sh->state, FETCH_STATE_VERIFIED, __ATOMIC_RELEASE);
		r = fetch_remove_mark(d);
		log_info("verified %s in %" PRIu64 " ms%s", got, util_now_ms() - t0,
			 r >= 0 ? "; fanotify mark removed" : "");
		return NULL;
	}
	/* Which bytes are wrong is not known: none of them is served any more. */
	log_error("digest mismatch for the cache entry: expected %s, got %s; reads of its mounts "
		  "now fail with EIO unless the kernel holds them in its page cache already (unmount "
		  "them: what they read may be wrong); the entry is set aside as bad, new mounts "
		  "fetch a fresh copy",
		  d->cfg.blob.digest, got);
	set_bad(d, true);
	pthread_mutex_unlock(&d->flush_mutex);
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

/* A complete entry not verified yet, and no trim under way (it would punch holes under the
 * hash): mark the verification started. */
static bool start_verifying(struct fetch_daemon *d)
{
	bool go;

	pthread_mutex_lock(&d->lock);
	go = !__atomic_load_n(&d->verify_started, __ATOMIC_ACQUIRE) && !d->trimming &&
	     __atomic_load_n(&d->sh->state, __ATOMIC_ACQUIRE) == FETCH_STATE_RUNNING &&
	     cache_entry_complete(d->entry);
	if (go)
		__atomic_store_n(&d->verify_started, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->lock);
	return go;
}

/* When to persist the bitmap: within FETCH_FLUSH_MS of the last write once fetching pauses,
 * and at least every FETCH_FLUSH_BUSY_MS while it streams. Each flush is an fdatasync of the
 * data written so far, i.e. synchronous disk writes; every 300 ms during a 1 GiB stream they
 * halve the reader's throughput (measured: 330-430 vs 580-650 MB/s), while the page cache
 * already serves every byte. A crash loses at most the bits of the last few seconds. */
void *fetch_housekeeper_thread(void *arg)
{
	struct fetch_daemon *d = arg;
	uint64_t last_flush = util_now_ms(), last_err = 0, period = FETCH_FLUSH_MS;
	uint64_t busy_period = FETCH_FLUSH_BUSY_MS, last_fetched = 0, last_change = 0;
	uint64_t test_period = util_env_u64("LAZYEROFS_FLUSH_MS", 0); /* both, for tests */

	prctl(PR_SET_NAME, "lzfetch-house", 0, 0, 0);
	if (test_period)
		period = busy_period = test_period;
	for (;;) {
		struct pollfd pfd = {.fd = d->stop_efd, .events = POLLIN};
		uint64_t now, fetched;
		bool streaming;

		const char *why;

		if (poll(&pfd, 1, FETCH_TICK_MS) > 0)
			break;
		fetch_settle(d); /* deadlines */
		fetch_budget_keep(d, util_now_ms());
		if (!cache_entry_broken(d->entry) && cache_entry_check(d->entry, &why) == -ESTALE)
			fetch_entry_tampered(d, why);
		now = util_now_ms();
		fetched = SH_LOAD(d->sh->fetched_bytes);
		if (fetched != last_fetched) {
			last_fetched = fetched;
			last_change = now;
		}
		streaming = now - last_change < period;
		if (now - last_flush >= (streaming ? busy_period : period)) {
			int r = fetch_entry_flush(d, false);

			last_flush = now;
			if (r < 0 && now - last_err > 10000) {
				last_err = now;
				log_error("persisting the presence bitmap: %s", strerror(-r));
			}
		}
		if (start_verifying(d)) {
			pthread_t t;

			if (pthread_create(&t, NULL, verifier, d) == 0)
				pthread_detach(t);
			else
				__atomic_store_n(&d->verify_started, false, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

void fetch_exit_verify(struct fetch_daemon *d)
{
	struct fetch_shared *sh = d->sh;

	if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != FETCH_STATE_RUNNING ||
	    !cache_entry_complete(d->entry) || !d->cfg.blob.digest[0])
		return;
	pthread_mutex_lock(&d->flush_mutex);
	if (flock(d->entry->lock_fd, LOCK_UN) == 0)
		__atomic_store_n(&d->unlocked, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&d->flush_mutex);
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