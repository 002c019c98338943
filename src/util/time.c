// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
#include "util/time.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

uint64_t util_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t util_now_ms(void)
{
	return util_now_us() / 1000;
}

void util_sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void util_deadline_ts(struct timespec *ts, uint64_t ms_from_now)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms_from_now / 1000);
	ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void util_timestamp_now(char out[UTIL_TIMESTAMP_LEN])
{
	struct timespec ts;
	struct tm tm;
	char s[UTIL_TIMESTAMP_LEN];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm) != 19 || tm.tm_year > 9999 - 1900) {
		snprintf(out, UTIL_TIMESTAMP_LEN, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(out, UTIL_TIMESTAMP_LEN, "%.19s.%03dZ", s, (int)(ts.tv_nsec / 1000000L));
}
