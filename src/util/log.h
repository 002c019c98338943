/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Logging. Library modules log at debug only; the boundary (cli, daemon loop)
 * reports failures. Messages go to stderr by default, or to a file and
 * syslog once the daemon detaches. Never log a secret.
 */
#ifndef LAZYEROFS_UTIL_LOG_H
#define LAZYEROFS_UTIL_LOG_H

#include "util/macro.h"

enum util_log_level {
	UTIL_LOG_ERROR = 0,
	UTIL_LOG_WARNING = 1,
	UTIL_LOG_INFO = 2,
	UTIL_LOG_DEBUG = 3,
};

/* Default UTIL_LOG_WARNING; each -v raises it by one. */
void util_log_set_level(int level);
int util_log_get_level(void);
/* Prefix for stderr lines, e.g. "lazyerofs". */
void util_log_set_prefix(const char *prefix);
/* Send messages to an already-open file descriptor (owned by the caller) instead of stderr,
 * and to syslog as well when use_syslog is set. fd < 0 restores stderr. */
void util_log_set_target(int fd, int use_syslog);

/* errno is preserved across these calls, so `%m` works. */
void util_log(int level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) util_log(UTIL_LOG_ERROR, __VA_ARGS__)
#define log_warning(...) util_log(UTIL_LOG_WARNING, __VA_ARGS__)
#define log_info(...) util_log(UTIL_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                              \
	do {                                                        \
		if (util_log_get_level() >= UTIL_LOG_DEBUG)         \
			util_log(UTIL_LOG_DEBUG, __VA_ARGS__);      \
	} while (0)

#endif
