// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs status --prometheus`: every mount in the Prometheus text exposition format
 * (fetch/prom.c writes it; a daemon writes the same for its entry into the metrics
 * directory). Mounts are grouped by cache entry, so that a blob mounted twice is counted
 * once, with the numbers of a mount whose daemon answered, if any.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/status.h"
#include "util/cleanup.h"

static const char *entry_key(const struct mount_status_entry *e)
{
	const char *c = e->st.cache ? e->st.cache : "", *slash = strrchr(c, '/');

	return slash ? slash + 1 : c;
}

/* A cache entry and the mount that speaks for it: one whose daemon answered, if any. */
static size_t group_entries(const struct mount_status_entry *v, size_t n,
			    const struct mount_status_entry **out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		size_t j = 0;

		while (j < k && strcmp(entry_key(out[j]), entry_key(&v[i])))
			j++;
		if (j == k)
			out[k++] = &v[i];
		else if (!out[j]->daemon_alive && v[i].daemon_alive)
			out[j] = &v[i];
	}
	return k;
}

int cli_status_prometheus(FILE *f, const struct mount_status_entry *v, size_t n)
{
	_cleanup_free_ const struct mount_status_entry **speaker =
	    calloc(n ? n : 1, sizeof(*speaker));
	_cleanup_free_ struct fetch_prom_mount *mounts = calloc(n ? n : 1, sizeof(*mounts));
	_cleanup_free_ struct fetch_prom_entry *ents = calloc(n ? n : 1, sizeof(*ents));
	size_t ne;

	if (!speaker || !mounts || !ents)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		mounts[i] = (struct fetch_prom_mount){.digest = cli_status_digest(&v[i]),
						      .entry = entry_key(&v[i]),
						      .mountpoint = v[i].st.mountpoint,
						      .source = v[i].st.source,
						      .up = v[i].daemon_alive || v[i].daemon_foreign,
						      .mute = v[i].daemon_mute};
	ne = group_entries(v, n, speaker);
	for (size_t i = 0; i < ne; i++) {
		const struct mount_status_entry *m = speaker[i];

		ents[i] = (struct fetch_prom_entry){
		    .digest = cli_status_digest(m),
		    .entry = entry_key(m),
		    .fs = m->daemon_alive ? &m->fs : NULL,
		    .size = m->daemon_alive ? m->fs.size : m->st.size,
		    .state = cli_status_state(m),
		    .integrity = cli_status_integrity(m),
		};
	}
	return fetch_prom_write(f, mounts, n, ents, ne);
}
