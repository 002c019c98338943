// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The metrics directory (the configuration file's metrics-dir), for node_exporter's textfile
 * collector: every FETCH_TEXTFILE_MS the worker writes its entry's exposition -- what `status
 * --prometheus` shows of this entry and its mounts, from the numbers of its own status reply
 * (prom.c) -- into <dir>/lazyerofs-<first 16 hex digits of the entry key>.prom, atomically
 * (a temporary dot file renamed over it; the collector reads *.prom only), mode 0644 so
 * that an unprivileged collector can read it.
 *
 * A thread of its own does it, and nothing waits for it long: a directory that is missing,
 * read-only or on a hung filesystem costs the daemon nothing but this thread (one warning in
 * the log, then quiet until it works again). When the daemon leaves for good the file goes,
 * before the entry lock is given up, so that a successor's file is never the one removed. A
 * daemon killed outright leaves its file until the entry's next daemon replaces it
 * (node_exporter's node_textfile_mtime_seconds shows its age).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/strutil.h"

#define FETCH_TEXTFILE_MS      15000 /* how often ($LAZYEROFS_METRICS_MS overrides, for tests) */
#define FETCH_TEXTFILE_WAIT_MS 2000  /* how long a leaving daemon waits for the file's removal */

static void file_name(const struct fetch_daemon *d, char name[64])
{
	snprintf(name, 64, "lazyerofs-%.16s.prom", d->cfg.blob.cache_key);
}

/* The exposition of this entry and its mounts (the attached ones: those `status` lists, by
 * their state files), in a buffer. */
static int format_metrics(struct fetch_daemon *d, char **ret, size_t *ret_len)
{
	_cleanup_json_ json_t *o = json_object();
	_cleanup_free_ struct fetch_prom_mount *mounts = NULL;
	const char *slash = strrchr(d->entry->data_path, '/');
	struct fetch_prom_entry e;
	struct fetch_status st;
	json_t *list, *m;
	size_t nm = 0, i;
	FILE *f;
	int r;

	if (!o)
		return -ENOMEM;
	fetch_fill_status(d, o, true);
	fetch_status_parse(o, &st);
	list = json_object_get(o, "mount_list");
	mounts = calloc(json_array_size(list) + 1, sizeof(*mounts));
	if (!mounts)
		return -ENOMEM;
	e = (struct fetch_prom_entry){.digest = st.digest,
				      .entry = slash ? slash + 1 : d->entry->data_path,
				      .fs = &st,
				      .size = st.size,
				      .state = st.state,
				      .integrity = fetch_integrity(d->cfg.transport, st.state)};
	json_array_foreach(list, i, m) {
		const char *mp = NULL, *src = NULL;
		uint64_t mnt_id = 0;

		/* Superblocks found in other mount namespaces have no mnt_id and no state file. */
		if (util_json_get_u64(m, "mnt_id", &mnt_id) < 0 || !mnt_id ||
		    util_json_get_string(m, "mountpoint", &mp) < 0 ||
		    util_json_get_string(m, "source", &src) < 0)
			continue;
		mounts[nm++] = (struct fetch_prom_mount){.digest = e.digest,
							 .entry = e.entry,
							 .mountpoint = mp,
							 .source = src,
							 .up = true};
	}
	f = open_memstream(ret, ret_len);
	if (!f)
		return -errno;
	r = fetch_prom_write(f, mounts, nm, &e, 1);
	if (fclose(f) != 0 && r >= 0)
		r = -EIO;
	if (r < 0) {
		free(*ret);
		*ret = NULL;
	}
	return r;
}

static int write_metrics(struct fetch_daemon *d)
{
	_cleanup_close_ int dfd = -1;
	_cleanup_free_ char *text = NULL;
	char name[64];
	size_t len = 0;
	int r;

	r = format_metrics(d, &text, &len);
	if (r < 0)
		return r;
	dfd = open(d->cfg.metrics_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	file_name(d, name);
	/* Nothing to make durable: a crash loses numbers that are stale by then anyway. */
	return util_write_file_atomic_flags(dfd, name, text, len, 0644,
					    UTIL_WRITE_NO_SYNC | UTIL_WRITE_EXACT_MODE);
}

static void remove_metrics(struct fetch_daemon *d)
{
	_cleanup_close_ int dfd = open(d->cfg.metrics_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	char name[64];

	file_name(d, name);
	if (dfd >= 0 && unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		log_debug("removing '%s/%s': %m", d->cfg.metrics_dir, name);
}

static void *textfile_thread(void *arg)
{
	struct fetch_daemon *d = arg;
	int period = (int)MIN(util_env_u64("LAZYEROFS_METRICS_MS", FETCH_TEXTFILE_MS), INT_MAX);
	bool failing = false;

	prctl(PR_SET_NAME, "lzfetch-metrics", 0, 0, 0);
	for (;;) {
		struct pollfd pfd = {.fd = d->stop_efd, .events = POLLIN};
		int r = write_metrics(d);

		if (r < 0 && !failing)
			log_warning("metrics-dir '%s': %s; this daemon's metrics are not written "
				    "there until that works",
				    d->cfg.metrics_dir, strerror(-r));
		else if (r >= 0 && failing)
			log_info("metrics-dir '%s': writing this daemon's metrics again",
				 d->cfg.metrics_dir);
		failing = r < 0;
		if (poll(&pfd, 1, period) > 0)
			break;
	}
	remove_metrics(d);
	return NULL;
}

void fetch_textfile_start(struct fetch_daemon *d)
{
	d->textfile_started = false;
	if (!d->cfg.metrics_dir)
		return;
	if (pthread_create(&d->textfile, NULL, textfile_thread, d) != 0) {
		log_warning("metrics-dir '%s': no thread to write the metrics: %m",
			    d->cfg.metrics_dir);
		return;
	}
	d->textfile_started = true;
}

void fetch_textfile_stop(struct fetch_daemon *d)
{
	struct timespec ts;

	if (!d->textfile_started)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += FETCH_TEXTFILE_WAIT_MS / 1000;
	/* A thread stuck on a hung filesystem is left behind: the daemon leaves anyway. */
	if (pthread_timedjoin_np(d->textfile, NULL, &ts) != 0)
		log_warning("metrics-dir '%s': the metrics file could not be removed in time",
			    d->cfg.metrics_dir);
	d->textfile_started = false;
}
