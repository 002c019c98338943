/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Trimming an entry in use (trim.c): the daemon evicts the least recently read blocks of its
 * entry -- never the image's metadata, which the kernel reads without events (DESIGN fact 2),
 * and never of an entry whose fanotify mark was ever removed -- so that a cache over its
 * budget shrinks while mounts go on; a later read fetches those blocks again. The choice is
 * pure and lives here for the unit tests.
 */
#ifndef LAZYEROFS_FETCH_TRIM_H
#define LAZYEROFS_FETCH_TRIM_H

#include <stddef.h>
#include <stdint.h>

#define FETCH_TRIM_UNIT_MIN  (128u << 10) /* blocks are chosen in units of at least this */
#define FETCH_TRIM_MAX_UNITS (1u << 20)	  /* ... and at most this many units a blob */
/* How long a unit must have gone unread before it may go, by default and at the least. A
 * read the daemon allowed reads the file right after the answer: the least is far beyond
 * that, so no allowed read can find a hole. */
#define FETCH_TRIM_COLD_MS     (60u * 1000)
#define FETCH_TRIM_COLD_MIN_MS 1000u

/* The unit size for a blob: FETCH_TRIM_UNIT_MIN, doubled until the units fit the cap. */
uint64_t fetch_trim_unit(uint64_t size);

struct fetch_trim_unit {
	uint64_t index;	    /* unit number */
	uint64_t last_read; /* ms (CLOCK_MONOTONIC) of its last allowed read; 0: never */
	uint64_t blocks;    /* present blocks in it */
};

/* Of candidates v (each unpinned, with present blocks), choose those last read before
 * cutoff, least recently read first (then by index), until their blocks reach want_blocks.
 * Sorts v so that the chosen come first; returns how many. */
size_t fetch_trim_pick(struct fetch_trim_unit *v, size_t n, uint64_t cutoff, uint64_t want_blocks);

#endif
