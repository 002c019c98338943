/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * What the scheduler's files (sched.c, replay.c) share: block arithmetic, the in-flight
 * table and job slots. Not for the rest of the daemon: sched.h is its interface.
 */
#ifndef LAZYEROFS_FETCH_SCHED_INTERNAL_H
#define LAZYEROFS_FETCH_SCHED_INTERNAL_H

#include <stddef.h>
#include <string.h>

#include "fetch/sched.h"
#include "util/macro.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static inline uint64_t blk_lo(uint64_t off)
{
	return off >> CACHE_BLOCK_SHIFT;
}

static inline uint64_t blk_hi(uint64_t end)
{
	return DIV_ROUND_UP(end, CACHE_BLOCK_SIZE);
}

/* A free job again: every field but the runs, which nruns = 0 makes unused. */
static inline void sched_job_reset(struct fetch_job *job)
{
	memset(job, 0, offsetof(struct fetch_job, runs));
}

/* First block of [from, limit) that is missing and not being fetched; limit when none. */
uint64_t sched_next_needed(const struct fetch_sched *s, uint64_t from, uint64_t limit);
/* First block > b where a run in flight starts, or limit. */
uint64_t sched_inflight_next_start(const struct fetch_sched *s, uint64_t b, uint64_t limit);
/* A free job within the budget, or NULL. */
struct fetch_job *sched_job_slot(struct fetch_sched *s);
/* The job's runs go out: count it in flight. */
void sched_job_commit(struct fetch_sched *s, struct fetch_job *job, enum fetch_job_kind kind);

/* replay.c */
struct fetch_job *sched_pick_replay(struct fetch_sched *s, uint64_t now_ms, uint64_t *wake);
void sched_replay_job_done(struct fetch_sched *s, struct fetch_job *job, int err,
			   uint64_t now_ms);

#endif
