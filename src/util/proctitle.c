// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The process's command line (proctitle.h): the kernel shows the bytes between the first
 * argument's start and the last one's end, which main's argv strings occupy (contiguous).
 */
#include <string.h>

#include "util/proctitle.h"

static char *area;
static size_t room;

void util_proctitle_init(int argc, char **argv)
{
	char *end;

	if (argc < 1 || !argv[0])
		return;
	end = argv[0];
	for (int i = 0; i < argc; i++) {
		if (!argv[i] || argv[i] != end)
			break; /* not one contiguous block: leave it */
		end = argv[i] + strlen(argv[i]) + 1;
	}
	area = argv[0];
	room = (size_t)(end - argv[0]);
}

void util_proctitle_set(const char *title)
{
	size_t n;

	if (!area || room == 0)
		return;
	n = strnlen(title, room - 1);
	memset(area, 0, room);
	memcpy(area, title, n);
}
