/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* The one monotonic clock (CLOCK_MONOTONIC: never jumps, not the wall time), and the wall
 * time as the timestamp logs and records carry. */
#ifndef LAZYEROFS_UTIL_TIME_H
#define LAZYEROFS_UTIL_TIME_H

#include <stdint.h>
#include <time.h>

uint64_t util_now_ms(void);
uint64_t util_now_us(void);
/* Sleep ms milliseconds, whatever signals arrive meanwhile. */
void util_sleep_ms(uint64_t ms);
/* The CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait on a condition variable
 * whose clock is CLOCK_MONOTONIC. */
void util_deadline_ts(struct timespec *ts, uint64_t ms_from_now);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and its NUL. */
#define UTIL_TIMESTAMP_LEN 25
/* The wall time now (CLOCK_REALTIME), UTC, as an RFC 3339 timestamp with milliseconds. */
void util_timestamp_now(char out[UTIL_TIMESTAMP_LEN]);

#endif
