// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* The daemon's status reply (DESIGN `status --json` keys, then more). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/files.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/extents.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"
/* ---- status -----------------------------------------------------------------------------------
 */

void fetch_fill_status(struct fetch_daemon *d, json_t *o, bool with_mounts)
{
	struct fetch_shared *sh = d->sh;
	json_t *list = with_mounts ? json_array() : NULL;
	uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
	uint64_t pending, files, file_ranges;
	unsigned mounts = 0, in_flight;
	uint64_t rtt_us, rate;
	unsigned holds;
	bool filling, disk_low;
	int last_errno;
	char last_error[sizeof(d->last_error)];

	/* Every byte present, the hash not checked yet: complete. */
	if (state == FETCH_STATE_RUNNING && cache_entry_complete(d->entry))
		state = FETCH_STATE_COMPLETE;
	pthread_mutex_lock(&d->lock);
	pending = d->sched.nreqs;
	files = fetch_files_count(d->files);
	file_ranges = fetch_files_nranges(d->files);
	in_flight = d->sched.njobs;
	rtt_us = d->sched.link_rtt_us;
	rate = d->sched.link_bytes_per_s;
	holds = d->holds;
	filling = d->sched.pol.prefetch_all;
	disk_low = fetch_sched_room_short(&d->sched);
	last_errno = d->last_errno;
	memcpy(last_error, d->last_error, sizeof(last_error));
	for (size_t i = 0; i < FETCH_MOUNTS_USED(d->sh); i++) {
		struct fetch_mount_rec *m = &sh->mounts[i];

		if (!m->used)
			continue;
		mounts++;
		if (list) {
			json_t *one = json_pack("{s:I,s:s,s:s}", "mnt_id", (json_int_t)m->mnt_id,
						"mountpoint", m->mountpoint, "source", m->source);

			/* (a mount found in mountinfo, not attached by lazyerofs mount, may have
			 * a path that is not UTF-8: no label can name it) */
			if (!one)
				log_debug("mount %" PRIu64 " left out of the metrics: its path is "
					  "not UTF-8",
					  m->mnt_id);
			else
				json_array_append_new(list, one);
		}
	}
	pthread_mutex_unlock(&d->lock);
	json_object_set_new(o, "digest", json_string(d->cfg.blob.digest));
	json_object_set_new(o, "size", json_integer((json_int_t)d->cfg.blob.size));
	json_object_set_new(o, "present_bytes",
			    json_integer((json_int_t)cache_entry_present_bytes(d->entry)));
	json_object_set_new(o, "fetched_bytes",
			    json_integer((json_int_t)SH_LOAD(sh->fetched_bytes)));
	json_object_set_new(o, "requests", json_integer((json_int_t)SH_LOAD(sh->requests)));
	json_object_set_new(o, "events", json_integer((json_int_t)SH_LOAD(sh->events)));
	json_object_set_new(o, "answers", json_integer((json_int_t)SH_LOAD(sh->answers)));
	json_object_set_new(o, "fast_answers", json_integer((json_int_t)SH_LOAD(sh->fast)));
	json_object_set_new(o, "denied", json_integer((json_int_t)SH_LOAD(sh->denied)));
	json_object_set_new(o, "errors", json_integer((json_int_t)SH_LOAD(sh->errors)));
	json_object_set_new(o, "pending", json_integer((json_int_t)pending));
	json_object_set_new(o, "pid", json_integer(SH_LOAD(sh->holder_pid)));
	json_object_set_new(o, "worker_pid", json_integer(getpid()));
	json_object_set_new(o, "restarts", json_integer(SH_LOAD(sh->restarts)));
	json_object_set_new(o, "holder_restarts", json_integer(SH_LOAD(sh->holder_restarts)));
	json_object_set_new(o, "state", json_string(fetch_state_name(state)));
	json_object_set_new(o, "marked", json_boolean(SH_LOAD(sh->marked)));
	json_object_set_new(o, "mounts", json_integer(mounts));
	if (list)
		json_object_set_new(o, "mount_list", list);
	json_object_set_new(o, "chunk_size", json_integer((json_int_t)d->pol.chunk_size));
	json_object_set_new(o, "max_requests", json_integer(d->pol.max_requests));
	json_object_set_new(o, "host_connections", json_integer(d->pol.host_connections));
	json_object_set_new(o, "in_flight", json_integer(in_flight));
	/* The link as the transfers measured it (0 until known). */
	json_object_set_new(o, "link_rtt_us", json_integer((json_int_t)rtt_us));
	json_object_set_new(o, "link_bytes_per_s", json_integer((json_int_t)rate));
	json_object_set_new(o, "timeout_ms", json_integer((json_int_t)d->pol.timeout_ms));
	json_object_set_new(o, "prefetch_all", json_boolean(d->pol.prefetch_all));
	/* The background fill runs now (prefetch=all, or a `lazyerofs fetch` asked for it). */
	json_object_set_new(o, "filling", json_boolean(filling));
	/* Nothing is fetched ahead of need now: the cache disk is down to its reserve. */
	json_object_set_new(o, "cache_disk_low", json_boolean(disk_low));
	json_object_set_new(o, "holds", json_integer(holds));
	if (last_errno) {
		json_object_set_new(o, "last_errno", json_integer(-last_errno));
		json_object_set_new(o, "last_error", json_string(last_error));
	}
	json_object_set_new(o, "data_path", json_string(d->entry->data_path));
	json_object_set_new(o, "socket", json_string(d->sock2_path));
	json_object_set_new(o, "log", json_string(d->log_path));
	json_object_set_new(o, "files", json_integer((json_int_t)files));
	json_object_set_new(o, "file_ranges", json_integer((json_int_t)file_ranges));
	fetch_metrics_status(sh, o);
	fetch_profile_status(d, o);
	fetch_trim_status(d, o);
}

