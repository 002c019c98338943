// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The Prometheus exposition of cache entries and their mounts: what `status --prometheus`
 * prints for every mount, and what each daemon writes for its own entry into the metrics
 * directory (textfile.c). One daemon serves every mount of a cache entry, so its numbers are
 * the entry's: they carry the entry's labels alone (digest, and entry, its key in the cache
 * directory -- one digest can have two entries, one filled over TLS and one over plain
 * HTTP). Each mount is a lazyerofs_mount_info series naming its entry, and
 * lazyerofs_daemon_up says whether a daemon answers for it (0: lost, unmount it).
 *
 * Every family's HELP and TYPE are the same wherever they are written, and every series
 * carries its entry: the files of several daemons merge (node_exporter's textfile collector)
 * without a conflict.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "fetch/fetch.h"
#include "util/macro.h"
#include "util/prom.h"

struct family {
	const char *name, *type, *help;
};

/* Numbers of struct fetch_status, one family each, for entries whose daemon answered. */
static const struct number {
	struct family fam;
	size_t off; /* of a uint64_t in struct fetch_status */
} numbers[] = {
    {{"lazyerofs_present_bytes", "gauge", "Bytes of the blob present in the cache entry."},
     offsetof(struct fetch_status, present_bytes)},
    {{"lazyerofs_fetched_bytes_total", "counter",
      "Bytes fetched from the registry since the entry's daemon started."},
     offsetof(struct fetch_status, fetched_bytes)},
    {{"lazyerofs_http_requests_total", "counter",
      "HTTP range requests sent since the entry's daemon started."},
     offsetof(struct fetch_status, requests)},
    {{"lazyerofs_http_retries_total", "counter",
      "HTTP range requests sent again after a failed one (reset, timeout, 429 or 5xx, short "
      "reply)."},
     offsetof(struct fetch_status, retries)},
    {{"lazyerofs_events_total", "counter",
      "Read events (fanotify pre-content) the daemon took from the kernel."},
     offsetof(struct fetch_status, events)},
    {{"lazyerofs_fast_answers_total", "counter",
      "Read events answered at once because their bytes were present."},
     offsetof(struct fetch_status, fast_answers)},
    {{"lazyerofs_pending_events", "gauge",
      "Read events and mount-time ensure batches waiting for a fetch now."},
     offsetof(struct fetch_status, pending)},
    {{"lazyerofs_profile_ranges", "gauge", "Ranges of the startup profile being replayed."},
     offsetof(struct fetch_status, profile_ranges)},
    {{"lazyerofs_profile_ranges_done", "gauge",
      "Ranges of the startup profile the replay has gone through."},
     offsetof(struct fetch_status, profile_ranges_done)},
    {{"lazyerofs_profile_bytes", "gauge", "Bytes the startup profile's ranges cover."},
     offsetof(struct fetch_status, profile_bytes)},
    {{"lazyerofs_profile_fetched_bytes_total", "counter",
      "Bytes the startup profile's replay fetched."},
     offsetof(struct fetch_status, profile_fetched_bytes)},
    {{"lazyerofs_profile_reads_served_total", "counter",
      "Read events answered with bytes the startup profile's replay had fetched."},
     offsetof(struct fetch_status, profile_served)},
    {{"lazyerofs_trimmed_bytes_total", "counter",
      "Bytes of the entry given back while it was in use (cold blocks, cache-max), to be "
      "fetched again when read."},
     offsetof(struct fetch_status, trimmed_bytes)},
};

static uint64_t number_of(const struct fetch_status *s, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)s + off, sizeof(v));
	return v;
}

/* A state set: one series a possible value, 1 for the current one, 0 for the others. */
struct state_set {
	struct family fam;
	const char *label;
	const char *const *values;
	size_t nvalues;
	const char *(*current)(const struct fetch_prom_entry *e);
	bool live_only; /* only for entries whose daemon answered */
};

static const char *entry_state(const struct fetch_prom_entry *e)
{
	return e->state;
}

static const char *entry_integrity(const struct fetch_prom_entry *e)
{
	return e->integrity;
}

static const char *replay_state(const struct fetch_prom_entry *e)
{
	return e->fs->profile_state;
}

static const char *const entry_states[] = {"running", "complete", "verified", "bad", "lost"};
static const char *const integrities[] = {"verified", "tls", "insecure", "mirror"};
static const char *const replay_states[] = {"none", "replaying", "done", "failed"};

static const struct state_set state_sets[] = {
    {{"lazyerofs_entry_state", "gauge",
      "The cache entry's state (1 for the current one): running, complete (every byte present), "
      "verified (checked against its digest), bad (digest mismatch), lost (no daemon answers)."},
     "state",
     entry_states,
     ARRAY_SIZE(entry_states),
     entry_state,
     false},
    {{"lazyerofs_entry_integrity", "gauge",
      "What the entry's bytes are checked against (1 for the current one): verified (the "
      "whole blob against its digest), tls (fetched over verified TLS), insecure (not), "
      "mirror (the tag was resolved by a mirror alone)."},
     "integrity",
     integrities,
     ARRAY_SIZE(integrities),
     entry_integrity,
     false},
    {{"lazyerofs_profile_replay_state", "gauge",
      "The startup profile replay's state (1 for the current one)."},
     "state",
     replay_states,
     ARRAY_SIZE(replay_states),
     replay_state,
     true},
};

const char *fetch_integrity(const char *transport, const char *state)
{
	const char *t = transport ? transport : "";

	/* A tag only a mirror resolved: the image is that mirror's word, verified or not. */
	if (!strcmp(t, "mirror"))
		return "mirror";
	if (state && !strcmp(state, "verified"))
		return "verified";
	return !strcmp(t, "insecure") ? "insecure" : "tls";
}

static void family(FILE *f, const struct family *fam)
{
	util_prom_family(f, fam->name, fam->type, fam->help);
}

/* The labels of an entry's series, with room for one more. */
static size_t entry_labels(const struct fetch_prom_entry *e, struct util_prom_label l[3])
{
	l[0] = (struct util_prom_label){"digest", e->digest};
	l[1] = (struct util_prom_label){"entry", e->entry};
	return 2;
}

/* A gauge of each mount: the bool at offset off of its record. */
static void mount_gauge(FILE *f, const struct family *fam, const struct fetch_prom_mount *v,
			size_t n, size_t off)
{
	family(f, fam);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[] = {{"digest", v[i].digest},
					      {"entry", v[i].entry},
					      {"mountpoint", v[i].mountpoint}};
		bool on;

		memcpy(&on, (const char *)&v[i] + off, sizeof(on));
		util_prom_sample(f, fam->name, l, ARRAY_SIZE(l), on);
	}
}

static void print_mounts(FILE *f, const struct fetch_prom_mount *v, size_t n)
{
	static const struct family info = {
	    "lazyerofs_mount_info", "gauge",
	    "A lazyerofs mount (always 1): its cache entry, mountpoint and source."};
	static const struct family up = {
	    "lazyerofs_daemon_up", "gauge",
	    "1 when the entry's daemon answers for the mount (one of another lazyerofs version "
	    "too: it serves the mount, without its counters here); 0 when the mount is lost: its "
	    "daemon is gone (unread data would read as zeros) or does not answer "
	    "(lazyerofs_daemon_mute 1: reads wait); unmount it."};
	static const struct family mute = {
	    "lazyerofs_daemon_mute", "gauge",
	    "1 when the mount's daemon is there (its socket takes calls) but does not answer in "
	    "time (stopped or stalled: reads of missing data wait), else 0."};

	family(f, &info);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[] = {{"digest", v[i].digest},
					      {"entry", v[i].entry},
					      {"mountpoint", v[i].mountpoint},
					      {"source", v[i].source}};

		util_prom_sample(f, info.name, l, ARRAY_SIZE(l), 1);
	}
	mount_gauge(f, &up, v, n, offsetof(struct fetch_prom_mount, up));
	mount_gauge(f, &mute, v, n, offsetof(struct fetch_prom_mount, mute));
}

static void print_state_set(FILE *f, const struct state_set *s, const struct fetch_prom_entry *v,
			    size_t n)
{
	family(f, &s->fam);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);
		const char *cur;

		if (s->live_only && !v[i].fs)
			continue;
		cur = s->current(&v[i]);
		for (size_t j = 0; j < s->nvalues; j++) {
			l[nl] = (struct util_prom_label){s->label, s->values[j]};
			util_prom_sample(f, s->fam.name, l, nl + 1, !strcmp(cur, s->values[j]));
		}
	}
}

/* Errors by kind: reads denied, and fetches failed by why (errors = their sum). */
static void print_errors(FILE *f, const struct fetch_prom_entry *v, size_t n)
{
	static const struct family fam = {
	    "lazyerofs_errors_total", "counter",
	    "Errors by kind: denied (a read answered with an error), or a fetch that failed: "
	    "timeout (its deadline passed), 5xx (the registry kept answering 5xx, 429 or 408), "
	    "4xx (refused for good: 401, 403, 404, 412, 416), network (no HTTP answer), write "
	    "(the cache file refused the bytes), other."};

	family(f, &fam);
	for (size_t i = 0; i < n; i++) {
		const struct fetch_status *s = v[i].fs;
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		if (!s)
			continue;
		l[nl] = (struct util_prom_label){"kind", "denied"};
		util_prom_sample(f, fam.name, l, nl + 1, s->denied);
		for (size_t k = 0; k < FETCH_FAIL_KINDS; k++) {
			l[nl].value = fetch_fail_kind_name(k);
			util_prom_sample(f, fam.name, l, nl + 1, s->failures[k]);
		}
	}
}

static void print_restarts(FILE *f, const struct fetch_prom_entry *v, size_t n)
{
	static const struct family fam = {
	    "lazyerofs_daemon_restarts_total", "counter",
	    "Daemon processes replaced after they died: the worker that serves events, or the "
	    "holder that keeps the fanotify group."};

	family(f, &fam);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		if (!v[i].fs)
			continue;
		l[nl] = (struct util_prom_label){"process", "worker"};
		util_prom_sample(f, fam.name, l, nl + 1, v[i].fs->restarts);
		l[nl].value = "holder";
		util_prom_sample(f, fam.name, l, nl + 1, v[i].fs->holder_restarts);
	}
}

static void print_latency(FILE *f, const struct fetch_prom_entry *v, size_t n)
{
	static const struct family fam = {
	    "lazyerofs_event_latency_seconds", "histogram",
	    "Time from reading a read event to answering it (its count is the events answered)."};

	family(f, &fam);
	for (size_t i = 0; i < n; i++) {
		const struct fetch_status *s = v[i].fs;
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		if (s && s->has_latency)
			util_prom_histogram(f, fam.name, l, nl, fetch_latency_bounds_us, s->latency,
					    FETCH_LATENCY_BOUNDS, s->latency_sum_us);
	}
}

int fetch_prom_write(FILE *f, const struct fetch_prom_mount *m, size_t nm,
		     const struct fetch_prom_entry *v, size_t n)
{
	static const struct family size = {"lazyerofs_blob_size_bytes", "gauge",
					   "Size of the image blob of the cache entry."};

	print_mounts(f, m, nm);
	family(f, &size);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		util_prom_sample(f, size.name, l, nl, v[i].size);
	}
	for (size_t s = 0; s < ARRAY_SIZE(state_sets); s++)
		print_state_set(f, &state_sets[s], v, n);
	for (size_t k = 0; k < ARRAY_SIZE(numbers); k++) {
		family(f, &numbers[k].fam);
		for (size_t i = 0; i < n; i++) {
			struct util_prom_label l[3];
			size_t nl = entry_labels(&v[i], l);

			if (v[i].fs)
				util_prom_sample(f, numbers[k].fam.name, l, nl,
						 number_of(v[i].fs, numbers[k].off));
		}
	}
	print_errors(f, v, n);
	print_restarts(f, v, n);
	print_latency(f, v, n);
	return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}
