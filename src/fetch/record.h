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
 * The ranges live in a store of their own (address space for the cap, backed as they are
 * written). The daemon maps one shared before it forks its processes, so that a worker that
 * replaces a crashed one goes on with the record (fetch_record_init rebuilds the blocks seen
 * from the store); a range becomes part of it only once it is whole (the count is raised
 * after the range is written).
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

struct fetch_record_store {
	uint64_t n;	    /* (atomic) ranges recorded */
	uint64_t t0_ms;	    /* when the first range was needed (CLOCK_MONOTONIC: any process) */
	uint32_t truncated; /* the cap was reached */
	uint32_t reserved;
	struct profile_range v[FETCH_RECORD_MAX_RANGES]; /* in first-access order */
};

struct fetch_record {
	pthread_mutex_t lock;
	struct cache_bitmap seen; /* blocks asked for so far */
	uint64_t size;
	struct fetch_record_store *st; /* (lock) */
	bool own_store;		       /* allocated by fetch_record_init: freed by destroy */
};

/* A store shared with the processes this one forks from now on (NULL with errno). */
struct fetch_record_store *fetch_record_store_new(void);
/* A record of a blob of `size` bytes in store `st` (NULL: a private one of its own), going on
 * from what the store holds (ranges not within the blob are dropped). */
int fetch_record_init(struct fetch_record *rec, uint64_t size, struct fetch_record_store *st);
void fetch_record_destroy(struct fetch_record *rec);
/* A read needs blocks [first, first + n) at now_ms. */
void fetch_record_note(struct fetch_record *rec, uint64_t first, uint64_t n, uint64_t now_ms);
/* A copy of the record as a profile of the blob `digest` (profile_free it). */
int fetch_record_profile(struct fetch_record *rec, const char *digest, struct profile *ret);
/* Ranges recorded so far, and whether the cap stopped the record. */
size_t fetch_record_count(struct fetch_record *rec, bool *ret_truncated);

#endif
