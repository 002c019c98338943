/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * fanotify for the daemon: the pre-content constants glibc 2.36 lacks (DESIGN fact 12) and a
 * parser for the event buffers read from a group. Only src/fetch includes <sys/fanotify.h>.
 */
#ifndef LAZYEROFS_FETCH_FANOTIFY_H
#define LAZYEROFS_FETCH_FANOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/fanotify.h>
#include <sys/types.h>

#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_CLASS_PRE_CONTENT
#define FAN_CLASS_PRE_CONTENT 0x00000008
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
#ifndef FAN_DENY_ERRNO
#define FAN_DENY_ERRNO(err) (FAN_DENY | ((((uint32_t)(err)) & 0xff) << 24))
#endif

/* The range record of a pre-content event (our own name: newer headers define theirs). */
struct fetch_fan_range {
	struct fanotify_event_info_header hdr;
	uint32_t pad;
	uint64_t offset;
	uint64_t count;
};

struct fetch_event {
	uint64_t mask;
	int fd; /* -1 (FAN_NOFD) when none */
	pid_t pid;
	bool has_range;
	uint64_t offset, count;
};

/* Parse a buffer read from a fanotify group into events. Untrusted: stops at the first
 * malformed record. Returns the number of events stored (at most max); *ret_bad is set when
 * the buffer held a malformed record (its fd, if any, is still reported when it could be
 * read so the caller can answer it). */
size_t fetch_events_parse(const void *buf, size_t len, struct fetch_event *out, size_t max,
			  bool *ret_bad);

#endif
