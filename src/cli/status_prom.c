// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs status --prometheus`: every mount in the Prometheus text exposition format.
 * One daemon serves every mount of a cache entry, so its numbers are the entry's: they carry
 * the entry's labels alone (digest, and entry, its key in the cache directory -- one digest
 * can have two entries, one filled over TLS and one over plain HTTP), and a blob mounted
 * twice is counted once. Each mount is a lazyerofs_mount_info series naming its entry, and
 * lazyerofs_daemon_up says whether a daemon answers for it (0: lost, unmount it).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/prom.h"
#include "cli/status.h"
#include "util/macro.h"

/* A cache entry and the mount that speaks for it: one whose daemon answered, if any. */
struct entry {
	const char *key;
	const struct mount_status_entry *m;
};

static const char *entry_key(const struct mount_status_entry *e)
{
	const char *c = e->st.cache ? e->st.cache : "", *slash = strrchr(c, '/');

	return slash ? slash + 1 : c;
}

static size_t group_entries(const struct mount_status_entry *v, size_t n, struct entry *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		const char *key = entry_key(&v[i]);
		size_t j = 0;

		while (j < k && strcmp(out[j].key, key))
			j++;
		if (j == k)
			out[k++] = (struct entry){key, &v[i]};
		else if (!out[j].m->daemon_alive && v[i].daemon_alive)
			out[j].m = &v[i];
	}
	return k;
}

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
};

static uint64_t number_of(const struct mount_status_entry *m, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)&m->fs + off, sizeof(v));
	return v;
}

/* A state set: one series a possible value, 1 for the current one, 0 for the others. */
struct state_set {
	struct family fam;
	const char *label;
	const char *const *values;
	size_t nvalues;
	const char *(*current)(const struct mount_status_entry *m);
	bool live_only; /* only for entries whose daemon answered */
};

static const char *replay_state(const struct mount_status_entry *m)
{
	return m->fs.profile_state;
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
     cli_status_state,
     false},
    {{"lazyerofs_entry_integrity", "gauge",
      "What the entry's bytes are checked against (1 for the current one): verified (the "
      "whole blob against its digest), tls (fetched over verified TLS), insecure (not), "
      "mirror (the tag was resolved by a mirror alone)."},
     "integrity",
     integrities,
     ARRAY_SIZE(integrities),
     cli_status_integrity,
     false},
    {{"lazyerofs_profile_replay_state", "gauge",
      "The startup profile replay's state (1 for the current one)."},
     "state",
     replay_states,
     ARRAY_SIZE(replay_states),
     replay_state,
     true},
};

static void family(FILE *f, const struct family *fam)
{
	util_prom_family(f, fam->name, fam->type, fam->help);
}

/* The labels of an entry's series, with room for one more. */
static size_t entry_labels(const struct entry *e, struct util_prom_label l[3])
{
	l[0] = (struct util_prom_label){"digest", cli_status_digest(e->m)};
	l[1] = (struct util_prom_label){"entry", e->key};
	return 2;
}

static void print_mounts(FILE *f, const struct mount_status_entry *v, size_t n)
{
	static const struct family info = {
	    "lazyerofs_mount_info", "gauge",
	    "A lazyerofs mount (always 1): its cache entry, mountpoint and source."};
	static const struct family up = {
	    "lazyerofs_daemon_up", "gauge",
	    "1 when the entry's daemon answers for the mount; 0 when the mount is lost (its "
	    "unread data would read as zeros: unmount it)."};

	family(f, &info);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[] = {{"digest", cli_status_digest(&v[i])},
					     {"entry", entry_key(&v[i])},
					     {"mountpoint", v[i].st.mountpoint},
					     {"source", v[i].st.source}};

		util_prom_sample(f, info.name, l, ARRAY_SIZE(l), 1);
	}
	family(f, &up);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[] = {{"digest", cli_status_digest(&v[i])},
					     {"entry", entry_key(&v[i])},
					     {"mountpoint", v[i].st.mountpoint}};

		util_prom_sample(f, up.name, l, ARRAY_SIZE(l), v[i].daemon_alive);
	}
}

static void print_state_set(FILE *f, const struct state_set *s, const struct entry *v, size_t n)
{
	family(f, &s->fam);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);
		const char *cur;

		if (s->live_only && !v[i].m->daemon_alive)
			continue;
		cur = s->current(v[i].m);
		for (size_t j = 0; j < s->nvalues; j++) {
			l[nl] = (struct util_prom_label){s->label, s->values[j]};
			util_prom_sample(f, s->fam.name, l, nl + 1, !strcmp(cur, s->values[j]));
		}
	}
}

/* Errors by kind: reads denied, and fetches failed by why (errors = their sum). */
static void print_errors(FILE *f, const struct entry *v, size_t n)
{
	static const struct family fam = {
	    "lazyerofs_errors_total", "counter",
	    "Errors by kind: denied (a read answered with an error), or a fetch that failed: "
	    "timeout (its deadline passed), 5xx (the registry kept answering 5xx, 429 or 408), "
	    "4xx (refused for good: 401, 403, 404, 412, 416), network (no HTTP answer), write "
	    "(the cache file refused the bytes), other."};

	family(f, &fam);
	for (size_t i = 0; i < n; i++) {
		const struct fetch_status *s = &v[i].m->fs;
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		if (!v[i].m->daemon_alive)
			continue;
		l[nl] = (struct util_prom_label){"kind", "denied"};
		util_prom_sample(f, fam.name, l, nl + 1, s->denied);
		for (size_t k = 0; k < FETCH_FAIL_KINDS; k++) {
			l[nl].value = fetch_fail_kind_name(k);
			util_prom_sample(f, fam.name, l, nl + 1, s->failures[k]);
		}
	}
}

static void print_restarts(FILE *f, const struct entry *v, size_t n)
{
	static const struct family fam = {
	    "lazyerofs_daemon_restarts_total", "counter",
	    "Daemon processes replaced after they died: the worker that serves events, or the "
	    "holder that keeps the fanotify group."};

	family(f, &fam);
	for (size_t i = 0; i < n; i++) {
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		if (!v[i].m->daemon_alive)
			continue;
		l[nl] = (struct util_prom_label){"process", "worker"};
		util_prom_sample(f, fam.name, l, nl + 1, v[i].m->fs.restarts);
		l[nl].value = "holder";
		util_prom_sample(f, fam.name, l, nl + 1, v[i].m->fs.holder_restarts);
	}
}

static void print_latency(FILE *f, const struct entry *v, size_t n)
{
	static const struct family fam = {
	    "lazyerofs_event_latency_seconds", "histogram",
	    "Time from reading a read event to answering it (its count is the events answered)."};

	family(f, &fam);
	for (size_t i = 0; i < n; i++) {
		const struct fetch_status *s = &v[i].m->fs;
		struct util_prom_label l[3];
		size_t nl = entry_labels(&v[i], l);

		if (v[i].m->daemon_alive && s->has_latency)
			util_prom_histogram(f, fam.name, l, nl, fetch_latency_bounds_us, s->latency,
					   FETCH_LATENCY_BOUNDS, s->latency_sum_us);
	}
}

int cli_status_prometheus(FILE *f, const struct mount_status_entry *v, size_t n)
{
	static const struct family size = {"lazyerofs_blob_size_bytes", "gauge",
					   "Size of the image blob of the cache entry."};
	struct entry *ents = calloc(n ? n : 1, sizeof(*ents));
	size_t ne;

	if (!ents)
		return -ENOMEM;
	ne = group_entries(v, n, ents);
	print_mounts(f, v, n);
	family(f, &size);
	for (size_t i = 0; i < ne; i++) {
		const struct mount_status_entry *m = ents[i].m;
		struct util_prom_label l[3];
		size_t nl = entry_labels(&ents[i], l);

		util_prom_sample(f, size.name, l, nl, m->daemon_alive ? m->fs.size : m->st.size);
	}
	for (size_t s = 0; s < ARRAY_SIZE(state_sets); s++)
		print_state_set(f, &state_sets[s], ents, ne);
	for (size_t k = 0; k < ARRAY_SIZE(numbers); k++) {
		family(f, &numbers[k].fam);
		for (size_t i = 0; i < ne; i++) {
			struct util_prom_label l[3];
			size_t nl = entry_labels(&ents[i], l);

			if (ents[i].m->daemon_alive)
				util_prom_sample(f, numbers[k].fam.name, l, nl,
						number_of(ents[i].m, numbers[k].off));
		}
	}
	print_errors(f, ents, ne);
	print_restarts(f, ents, ne);
	print_latency(f, ents, ne);
	free(ents);
	return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}
