/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* The mount table of a process, /proc/PID/mountinfo (proc(5)): one parser for its lines. */
#ifndef LAZYEROFS_UTIL_MOUNTINFO_H
#define LAZYEROFS_UTIL_MOUNTINFO_H

#include <stdint.h>

/* One line's fields, unescaped (mountinfo writes a space as \040, ...); the strings point
 * into the line, which the parse changes. */
struct util_mountinfo {
	uint64_t id;		/* the mount's id (statx STATX_MNT_ID; reused once it is gone) */
	unsigned major, minor;	/* the superblock's device */
	const char *root;	/* the mount's root within its filesystem */
	const char *mountpoint; /* as the reading process sees it */
	const char *fstype;
	const char *source; /* as the filesystem shows it ("none" or empty when it has none) */
	const char *super_opts; /* the superblock's options, as shown (octal escapes kept) */
};

/* Parse one line (no newline) in place: 0, or -EINVAL when it is not a mountinfo line. */
int util_mountinfo_parse(char *line, struct util_mountinfo *ret);

/* Call fn for each line of the mountinfo file at path, in order, until fn returns non-zero,
 * which is then returned; lines that do not parse are skipped. 0 after the last line;
 * -errno when the file cannot be read. */
int util_mountinfo_each(const char *path, int (*fn)(const struct util_mountinfo *m, void *ud),
			void *ud);

#endif
