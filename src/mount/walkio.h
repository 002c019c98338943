/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* The metadata walker's I/O over the cache file: the walk's record of presence, its rounds
 * grouped into ensure batches and loaded in large reads (internal to the mount module). */
#ifndef LAZYEROFS_MOUNT_WALKIO_H
#define LAZYEROFS_MOUNT_WALKIO_H

#include <stddef.h>
#include <stdint.h>

#include "erofs/erofs.h"
#include "fetch/fetch.h"
#include "mount/rounds.h"

struct mount_walkio_stats {
	uint64_t batches;      /* ensure batches sent to the daemon (a round: one or more) */
	uint64_t ensured_bytes; /* sum of the ranges they asked for */
	uint64_t ranges;	/* ... and their number */
	uint64_t bridge_gap;	/* the largest gap the last round could bridge */
	uint64_t preads;	 /* large reads that loaded rounds */
	uint64_t premark_preads; /* ... of them through the pre-mark fd: no event */
	uint64_t loaded_bytes; /* bytes loaded into memory */
	uint64_t cached_reads; /* walker reads served from memory */
	uint64_t direct_reads; /* walker reads that went to the file (one event each) */
	uint64_t evicted;      /* buffers dropped to stay under the cap */
	uint64_t lazy_loads;   /* present blocks loaded on a read (bridged, or dropped) */
	uint64_t rewaits;      /* batches that came back with nothing of the round asked */
	uint64_t ensure_us;    /* time the walk waited for ensure batches (not loading) */
	uint64_t load_us;      /* time loading rounds */
};

struct mount_walkio;

/* fd: the data file, opened for reading after the daemon marked it (reads raise events);
 * premark_fd: the daemon's pre-mark read fd (fetch_data_fd) or -1, used only for blocks an
 * ensure batch has just made present (no events); neither fd is owned.
 * cap: memory for loaded rounds. err receives the daemon's message when a batch fails. */
int mount_walkio_new(int fd, int premark_fd, struct fetch_handle *h, uint64_t size, uint64_t cap,
		     struct util_error *err, struct mount_walkio **ret);
void mount_walkio_free(struct mount_walkio *w);
void mount_walkio_io(struct mount_walkio *w, struct erofs_io *io);
/* How rounds become requests (mount/rounds.h); without a call, ranges are only aligned and
 * merged where they touch. */
void mount_walkio_set_grouping(struct mount_walkio *w, const struct mount_grouping *g);
const struct mount_walkio_stats *mount_walkio_stats(const struct mount_walkio *w);
/* Make v[0, n) present, as the walk's io does, and wait for every batch on its way (the
 * superblock, a metadata zone: read at once, not by the walk). */
int mount_walkio_prefetch_all(struct mount_walkio *w, const struct util_extent *v, size_t n);
/* Ask for v[0, n) -- what the walk will need, as the image's metadata map says -- without
 * waiting, in a few batches at once: the walk's rounds then wait for these instead of asking
 * level by level. Exactly as listed until a round has told the link's rate; then with the gaps
 * worth it bridged, and over a quick link in one batch, or spread over a few when `spread`
 * (few ranges: the registry's work is per range, and parts share it out over its CPUs). */
int mount_walkio_prefetch_ahead(struct mount_walkio *w, const struct util_extent *v, size_t n,
				bool spread);
/* Wait for the batches still on their way (their errors are the walk's), then tell the daemon
 * what the walk read since its last round without asking for it (blocks of
 * bridged gaps), for its record of what a start needs. */
int mount_walkio_flush(struct mount_walkio *w);

#endif
