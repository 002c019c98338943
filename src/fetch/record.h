/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * The daemon's record of what its readers needed: each block of the blob the first time a
 * read (a pre-content event) asks for it, in that order, with the time since the first one.
 * One record per daemon, that is per cache entry, whichever mount the reads come through;
 * `lazyerofs profile save` turns it into a startup profile (profile.h).
 *
 * Memory: one bit per block (blocks seen) plus 16 bytes per recorded range, at most
 * FETCH_RECORD_MAX_RANGES ranges (4 MiB): a range extends the previous one when it follows
 * it in the blob, so a file read from start to end is one range. Past the cap the record
 * stops growing (`truncated`): a profile is for the start of a workload.
 * Threads: fetch_record_note may be called by any thread; a read of blocks already seen costs
 * a lock-free bitmap test.
 */
#ifndef LAZYEROFS_FETCH_RECORD_H
#define LAZYEROFS_FETCH_RECORD_H

#include <pthread.h>
#include <stdbool.h>

#include "cache/cache.h"
#include "fetch/profile.h"

#define FETCH_RECORD_MAX_RANGES (256u << 10)

struct fetch_record {
	pthread_mutex_t lock;
	struct cache_bitmap seen; /* blocks asked for so far */
	uint64_t size;
	struct profile_range *v; /* (lock) in first-access order */
	size_t n, alloc;	 /* (lock) */
	uint64_t t0_ms;		 /* (lock) when the first range was needed */
	bool truncated;		 /* (lock) the cap was reached */
};

int fetch_record_init(struct fetch_record *rec, uint64_t size);
void fetch_record_destroy(struct fetch_record *rec);
/* A read needs blocks [first, first + n) at now_ms. */
void fetch_record_note(struct fetch_record *rec, uint64_t first, uint64_t n, uint64_t now_ms);
/* A copy of the record as a profile of the blob `digest` (profile_free it). */
int fetch_record_profile(struct fetch_record *rec, const char *digest, struct profile *ret);
/* Ranges recorded so far, and whether the cap stopped the record. */
size_t fetch_record_count(struct fetch_record *rec, bool *ret_truncated);

#endif
