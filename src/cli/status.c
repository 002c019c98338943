// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs status [--json | --prometheus] [MOUNTPOINT]`: every mount's live numbers from
 * its daemon, as the JSON keys of DESIGN.md ("status --json"), as the Prometheus text format
 * (status_prom.c) or as a table for people.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/status.h"
#include "mount/mount.h"
#include "util/json.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/strutil.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: lazyerofs status [-v] [--json | --prometheus] [MOUNTPOINT]\n"
		   "\n"
		   "Show every lazyerofs mount (or just MOUNTPOINT): source, digest, how much of\n"
		   "the image is present in the cache, what was fetched, request/event/error\n"
		   "counts and the daemon's state (running, complete, verified, bad; lost when\n"
		   "no daemon answers for the mount: unmount it).\n"
		   "\n"
		   "  --json        one JSON object: {\"mounts\":[{\"mountpoint\",\"source\",\n"
		   "                \"digest\",\"size\",\"present_bytes\",\"fetched_bytes\",\n"
		   "                \"requests\",\"events\",\"errors\",\"pid\",\"state\",\n"
		   "                \"integrity\",...}]}\n"
		   "  --prometheus  the Prometheus text exposition format (for node_exporter's\n"
		   "                textfile collector, say): lazyerofs_* metrics of each cache\n"
		   "                entry labelled digest and entry (a blob mounted twice counts\n"
		   "                once), one lazyerofs_mount_info series a mount, and\n"
		   "                lazyerofs_daemon_up 0 for a mount whose daemon is gone\n"
		   "\n"
		   "Environment: LAZYEROFS_RUN_DIR (default " MOUNT_DEFAULT_RUN_DIR ").\n");
}

/* A mount whose daemon does not answer is lost (DESIGN "status --json"): nothing serves its
 * missing bytes any more; it is shown with the reason. */
/* A daemon of another version (a package upgraded while it runs) answers for its mounts and
 * serves them: running, though this binary cannot ask it for more. "lost" tells a monitor to
 * unmount a mount that works. */
const char *cli_status_state(const struct mount_status_entry *e)
{
	return e->daemon_alive ? e->fs.state : e->daemon_foreign ? "running" : "lost";
}

const char *cli_status_integrity(const struct mount_status_entry *e)
{
	const char *state = e->daemon_alive ? e->fs.state : e->disk_verified ? "verified" : NULL;

	return fetch_integrity(e->st.transport, state);
}

const char *cli_status_digest(const struct mount_status_entry *e)
{
	if (e->daemon_alive && e->fs.digest[0])
		return e->fs.digest;
	return e->st.digest ? e->st.digest : "";
}

/* Move the keys of more (consumed) into o; on failure o is released too. */
static int add_keys(json_t *o, json_t *more)
{
	int r = more ? json_object_update(o, more) : -1;

	json_decref(more);
	if (r < 0)
		json_decref(o);
	return r;
}

static json_t *entry_json(const struct mount_status_entry *e)
{
	const struct fetch_status *s = &e->fs;
	bool a = e->daemon_alive;
	json_t *o;

	/* No digest (a URL source without digest=): null, not a string that is no digest. A
	 * daemon gone has no pid either (null, as the table's "-": it may be another's by now). */
	bool gone = !a && !e->daemon_mute && !e->daemon_foreign;

	o = json_pack(
	    "{s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:s, s:s, s:I, s:s, s:s}",
	    "mountpoint", e->st.mountpoint, "source", e->st.source, "digest",
	    cli_status_digest(e)[0] ? cli_status_digest(e) : NULL, "size",
	    (json_int_t)(a ? s->size : e->st.size), "present_bytes",
	    (json_int_t)(a ? s->present_bytes : e->disk_present), "fetched_bytes",
	    (json_int_t)(a ? s->fetched_bytes : 0), "requests", (json_int_t)(a ? s->requests : 0),
	    "events", (json_int_t)(a ? s->events : 0), "errors", (json_int_t)(a ? s->errors : 0),
	    "pid", gone ? json_null() : json_integer(a && s->pid ? s->pid : e->st.pid), "state",
	    cli_status_state(e), "integrity", cli_status_integrity(e), "mnt_id",
	    (json_int_t)e->st.mnt_id, "cache", e->st.cache ? e->st.cache : "", "options",
	    e->st.options ? e->st.options : "");
	if (o && a) {
		json_t *more = json_pack(
		    "{s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:I, s:b, s:I, s:I, s:I, s:I}", "answers",
		    (json_int_t)s->answers, "fast_answers", (json_int_t)s->fast_answers, "denied",
		    (json_int_t)s->denied, "pending", (json_int_t)s->pending, "worker_pid",
		    (int)s->worker_pid, "restarts", (int)s->restarts, "mounts", (int)s->mounts,
		    "chunk_size", (json_int_t)s->chunk_size, "marked", (int)s->marked, "files",
		    (json_int_t)s->files, "file_ranges", (json_int_t)s->file_ranges, "link_rtt_us",
		    (json_int_t)s->link_rtt_us, "link_bytes_per_s",
		    (json_int_t)s->link_bytes_per_s);

		if (add_keys(o, more) < 0)
			return NULL;
	}
	if (o && a) {
		json_t *prof = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
					 "profile_state", s->profile_state, "profile_ranges",
					 (json_int_t)s->profile_ranges, "profile_ranges_done",
					 (json_int_t)s->profile_ranges_done, "profile_bytes",
					 (json_int_t)s->profile_bytes, "profile_fetched_bytes",
					 (json_int_t)s->profile_fetched_bytes, "profile_requests",
					 (json_int_t)s->profile_requests, "profile_served",
					 (json_int_t)s->profile_served, "profile_ms",
					 (json_int_t)s->profile_ms, "recorded_ranges",
					 (json_int_t)s->recorded_ranges);

		if (add_keys(o, prof) < 0)
			return NULL;
	}
	if (o && a) {
		json_t *more = fetch_metrics_json(s);

		if (more)
			json_object_set_new(more, "holder_restarts",
					    json_integer((json_int_t)s->holder_restarts));
		if (add_keys(o, more) < 0)
			return NULL;
	}
	if (o && a) {
		json_t *trim = json_pack(
		    "{s:I, s:I, s:b, s:s, s:b, s:I}", "trimmed_bytes", (json_int_t)s->trimmed_bytes,
		    "pinned_units", (json_int_t)s->pinned_units, "trimmable", (int)s->trimmable,
		    "trim_blocked", s->trim_blocked, "cache_disk_low", (int)s->cache_disk_low,
		    "timeout_ms", (json_int_t)s->timeout_ms);

		if (add_keys(o, trim) < 0)
			return NULL;
	}
	if (o && !a)
		json_object_set_new(
		    o, "problem",
		    json_string(
			e->daemon_mute
			    ? "the fetch daemon does not answer: reads of missing data "
			      "wait for it; see its log, or unmount with 'lazyerofs umount'"
			: e->daemon_foreign
			    ? "the fetch daemon was started by another version of lazyerofs: "
			      "it serves the mount, but this version cannot ask it; unmount "
			      "and mount again to use this version's"
			    : "the fetch daemon is not running; unmount with "
			      "'lazyerofs umount'"));
	return o;
}

static int print_json(const struct mount_status_entry *v, size_t n)
{
	_cleanup_json_ json_t *root = json_object();
	json_t *arr = json_array();
	char *text;

	if (!root || !arr || json_object_set_new(root, "mounts", arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *o = entry_json(&v[i]);

		if (!o || json_array_append_new(arr, o) < 0)
			return -ENOMEM;
	}
	text = json_dumps(root, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	puts(text);
	free(text);
	return 0;
}

enum { COL_MNT, COL_SRC, COL_DIGEST, COL_SIZE, COL_PRESENT, COL_FETCHED, COL_REQ, COL_EV,
       COL_ERR, COL_STATE, COL_PID, NCOLS };

static const char *const headers[NCOLS] = { "MOUNTPOINT", "SOURCE", "DIGEST", "SIZE",
					    "PRESENT", "FETCHED", "REQUESTS", "EVENTS",
					    "ERRORS", "STATE", "PID" };

#define CELL 160

static void fill_row(const struct mount_status_entry *e, char cells[NCOLS][CELL])
{
	const struct fetch_status *s = &e->fs;
	uint64_t size = e->daemon_alive ? s->size : e->st.size;
	const char *dg = cli_status_digest(e);
	char b[32];

	snprintf(cells[COL_MNT], CELL, "%s", e->st.mountpoint);
	snprintf(cells[COL_SRC], CELL, "%s", e->st.source);
	/* sha256: plus 12 hex digits is enough to tell blobs apart at a glance. */
	snprintf(cells[COL_DIGEST], CELL, "%.19s", dg[0] ? dg : "-");
	snprintf(cells[COL_SIZE], CELL, "%s", util_format_bytes(size, b, sizeof(b)));
	if (!e->daemon_alive) {
		for (int c = COL_PRESENT; c <= COL_ERR; c++)
			snprintf(cells[c], CELL, "-");
		if (e->on_disk)
			snprintf(cells[COL_PRESENT], CELL, "%s (%.0f%%)",
				 util_format_bytes(e->disk_present, b, sizeof(b)),
				 size ? 100.0 * (double)e->disk_present / (double)size : 100.0);
		snprintf(cells[COL_STATE], CELL,
			 e->daemon_mute	     ? "lost (daemon mute)"
			 : e->daemon_foreign ? "running (daemon of another version)"
					     : "lost (daemon gone)");
		/* (a daemon gone has no process to show: its pid may be another's by now) */
		if (e->daemon_mute || e->daemon_foreign)
			snprintf(cells[COL_PID], CELL, "%d", (int)e->st.pid);
		else
			snprintf(cells[COL_PID], CELL, "-");
		return;
	}
	snprintf(cells[COL_PRESENT], CELL, "%s (%.0f%%)",
		 util_format_bytes(s->present_bytes, b, sizeof(b)),
		 size ? 100.0 * (double)s->present_bytes / (double)size : 100.0);
	snprintf(cells[COL_FETCHED], CELL, "%s", util_format_bytes(s->fetched_bytes, b, sizeof(b)));
	snprintf(cells[COL_REQ], CELL, "%llu", (unsigned long long)s->requests);
	snprintf(cells[COL_EV], CELL, "%llu", (unsigned long long)s->events);
	snprintf(cells[COL_ERR], CELL, "%llu", (unsigned long long)s->errors);
	snprintf(cells[COL_STATE], CELL, "%s", s->state);
	snprintf(cells[COL_PID], CELL, "%d", (int)s->pid);
}

static int print_table(const struct mount_status_entry *v, size_t n)
{
	static char cells[64][NCOLS][CELL];
	int width[NCOLS];
	size_t done = 0;

	if (n == 0) {
		printf("No lazyerofs mounts.\n");
		return 0;
	}
	/* In pages of 64 rows, each page aligned on its own. */
	while (done < n) {
		size_t rows = MIN(n - done, ARRAY_SIZE(cells));

		for (int c = 0; c < NCOLS; c++)
			width[c] = (int)strlen(headers[c]);
		for (size_t i = 0; i < rows; i++) {
			fill_row(&v[done + i], cells[i]);
			for (int c = 0; c < NCOLS; c++)
				width[c] = MAX(width[c], (int)strlen(cells[i][c]));
		}
		for (int c = 0; c < NCOLS; c++)
			printf("%-*s%s", c == NCOLS - 1 ? 0 : width[c], headers[c],
			       c == NCOLS - 1 ? "\n" : "  ");
		for (size_t i = 0; i < rows; i++)
			for (int c = 0; c < NCOLS; c++) {
				bool num = c >= COL_SIZE && c <= COL_ERR;

				printf(num ? "%*s%s" : "%-*s%s", c == NCOLS - 1 ? 0 : width[c],
				       cells[i][c], c == NCOLS - 1 ? "\n" : "  ");
			}
		done += rows;
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].daemon_mute)
			printf("\n%s: the fetch daemon does not answer, so reads of missing data "
			       "wait for it; see its log, or unmount with 'lazyerofs umount %s'\n",
			       v[i].st.mountpoint, v[i].st.mountpoint);
		else if (v[i].daemon_foreign)
			printf(
			    "\n%s: the fetch daemon was started by another version of lazyerofs; "
			    "it serves the mount, but this version cannot ask it: unmount with "
			    "'lazyerofs umount %s' and mount again to use this version's\n",
			    v[i].st.mountpoint, v[i].st.mountpoint);
		else if (!v[i].daemon_alive)
			printf("\n%s: the fetch daemon is not running, so unread data would come back "
			       "as zeros; unmount it with 'lazyerofs umount %s'\n",
			       v[i].st.mountpoint, v[i].st.mountpoint);
	return 0;
}

int cli_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct mount_status_entry *v = NULL;
	struct util_error err = UTIL_ERROR_INIT;
	bool json = false, prom = false;
	size_t n = 0;
	int c, r;

	opterr = 0;
	optind = 0; /* (glibc starts over, permuting: options after the operands too) */
	while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'j':
			json = true;
			break;
		case 'p':
			prom = true;
			break;
		case 'v':
			cli_verbose_inc();
			break;
		default:
			return cli_option_error("status", "hv", argv);
		}
	}
	if (json && prom) {
		log_error("status: --json and --prometheus exclude each other; see 'lazyerofs "
			  "status --help'");
		return CLI_EXIT_USAGE;
	}
	if (argc - optind > 1) {
		log_error("status: expected at most one MOUNTPOINT; see 'lazyerofs status --help'");
		return CLI_EXIT_USAGE;
	}
	r = mount_status_collect(mount_env_run_dir(), argc - optind == 1 ? argv[optind] : NULL, &v,
				 &n, &err);
	if (r < 0) {
		log_error("status: %s", err.message);
		return CLI_EXIT_FAILURE;
	}
	r = json   ? print_json(v, n)
	    : prom ? cli_status_prometheus(stdout, v, n)
		   : print_table(v, n);
	mount_status_free(v, n);
	if (r < 0) {
		log_error("status: %s", strerror(-r));
		return CLI_EXIT_FAILURE;
	}
	return CLI_EXIT_OK;
}
