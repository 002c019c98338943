// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * mountinfo lines: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
 * SUPEROPTIONS", fields separated by single spaces, spaces and other bytes inside a field
 * written as three octal digits after a backslash.
 */
#include "util/mountinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/fs.h"
#include "util/strutil.h"

/* The whole table of a process with many mounts (a container host) stays far below this. */
#define MOUNTINFO_MAX (16u << 20)

/* Undo the octal escapes in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* The next space-separated field of *s (NULL when there is none), cut off in place. */
static char *field(char **s)
{
	char *f = *s, *end;

	if (!f || !*f)
		return NULL;
	end = strchr(f, ' ');
	if (end) {
		*end = 0;
		*s = end + 1;
	} else {
		*s = NULL;
	}
	return f;
}

int util_mountinfo_parse(char *line, struct util_mountinfo *ret)
{
	char *sep = strstr(line, " - "), *s = line, *f[5], *after, *colon;
	uint64_t id, maj, min;

	if (!sep)
		return -EINVAL;
	*sep = 0;
	after = sep + 3;
	for (int i = 0; i < 5; i++)
		if (!(f[i] = field(&s)))
			return -EINVAL;
	colon = strchr(f[2], ':'); /* MAJ:MIN */
	if (!colon)
		return -EINVAL;
	*colon = 0;
	if (util_parse_u64(f[0], &id) < 0 || util_parse_u64(f[2], &maj) < 0 ||
	    util_parse_u64(colon + 1, &min) < 0 || maj > 0xfffffff || min > 0xfffffff)
		return -EINVAL;
	ret->id = id;
	ret->major = (unsigned)maj;
	ret->minor = (unsigned)min;
	ret->root = f[3];
	ret->mountpoint = f[4];
	ret->fstype = field(&after);
	ret->source = field(&after);
	if (!ret->fstype || !ret->source)
		return -EINVAL;
	ret->super_opts = field(&after);
	if (!ret->super_opts)
		ret->super_opts = "";
	unescape(f[3]);
	unescape(f[4]);
	unescape((char *)ret->fstype);
	unescape((char *)ret->source);
	return 0;
}

int util_mountinfo_each(const char *path, int (*fn)(const struct util_mountinfo *m, void *ud),
			void *ud)
{
	_cleanup_free_ char *text = NULL;
	char *save = NULL;
	size_t len;
	int r;

	r = util_read_file(AT_FDCWD, path, MOUNTINFO_MAX, 0, &text, &len);
	if (r < 0)
		return r;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct util_mountinfo m;

		if (util_mountinfo_parse(line, &m) < 0)
			continue;
		r = fn(&m, ud);
		if (r)
			return r;
	}
	return 0;
}
