// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * allow-all: the cheapest pre-content responder there is, for the link benchmark's warm rows
 * (bench/link-bench): it marks FILE with FAN_PRE_ACCESS and allows every event at once,
 * without looking at it. A file-backed mount of a file so marked costs what any daemon must
 * pay for an event on this machine and kernel; the daemon's own cost is what it adds to that.
 *
 *   allow-all FILE
 *
 * Prints "ready" on stdout once the mark is in place; runs until killed (the mark goes with
 * the group when it exits).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fetch/fanotify.h"

int main(int argc, char **argv)
{
	uint64_t buf[4096];
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: allow-all FILE\n");
		return 2;
	}
	fd = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
	if (fd < 0) {
		fprintf(stderr,
			"allow-all: fanotify_init(FAN_CLASS_PRE_CONTENT): %s (needs root "
			"and a kernel with pre-content events)\n",
			strerror(errno));
		return 1;
	}
	if (fanotify_mark(fd, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD, argv[1]) < 0) {
		fprintf(stderr, "allow-all: marking %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		ssize_t len = read(fd, buf, sizeof(buf));
		struct fanotify_event_metadata *m = (void *)buf;

		if (len < 0 && errno == EINTR)
			continue;
		if (len <= 0) {
			fprintf(stderr, "allow-all: reading events: %s\n",
				len < 0 ? strerror(errno) : "end of file");
			return 1;
		}
		for (; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
			struct fanotify_response r = {.fd = m->fd, .response = FAN_ALLOW};

			if (m->fd < 0)
				continue;
			if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
				fprintf(stderr, "allow-all: answering fd %d: %s\n", m->fd,
					strerror(errno));
			close(m->fd);
		}
	}
}
