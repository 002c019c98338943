// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Logging to stderr, or to a daemon's log file plus syslog. */
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_level = UTIL_LOG_WARNING;
static const char *log_prefix = "lazyerofs";
static int log_fd = -1;
static int log_syslog;

void util_log_set_level(int level)
{
	log_level = level;
}

int util_log_get_level(void)
{
	return log_level;
}

void util_log_set_prefix(const char *prefix)
{
	log_prefix = prefix;
}

void util_log_set_target(int fd, int use_syslog)
{
	log_fd = fd;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog(log_prefix, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static const char *const level_names[] = { "error", "warning", "info", "debug" };
static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

void util_log(int level, const char *fmt, ...)
{
	int saved = errno;
	char msg[1024];
	va_list ap;

	if (level > log_level) {
		errno = saved;
		return;
	}
	if (level < 0)
		level = 0;
	if (level > UTIL_LOG_DEBUG)
		level = UTIL_LOG_DEBUG;

	va_start(ap, fmt);
	errno = saved;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages quote registries, images and command lines: one line, nothing a terminal
	 * would obey. */
	util_str_printable(msg);
	util_str_hide_userinfo(msg);

	if (log_fd >= 0) {
		char stamp[UTIL_TIMESTAMP_LEN];

		util_timestamp_now(stamp);
		dprintf(log_fd, "%s [%d] %s: %s\n", stamp, (int)getpid(), level_names[level], msg);
		if (log_syslog)
			syslog(syslog_prio[level], "%s", msg);
	} else if (level == UTIL_LOG_ERROR) {
		fprintf(stderr, "%s: %s\n", log_prefix, msg);
	} else {
		fprintf(stderr, "%s: %s: %s\n", log_prefix, level_names[level], msg);
	}
	errno = saved;
}
