// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the mountinfo line parser (the daemon reads other processes' mount tables): whatever
 * the bytes, a line is refused or gives fields that lie within the line and are no longer
 * than what they were read from (unescaped, a field may hold any byte but NUL: "\012" is a
 * newline in a path). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/mountinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void within(const char *f, const char *line, size_t len)
{
	if (!f || f < line || f > line + len || strlen(f) > len - (size_t)(f - line))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct util_mountinfo m;
	char *line;

	if (size > (16u << 10))
		return 0;
	line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = 0;
	for (size_t i = 0; i < size; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	if (util_mountinfo_parse(line, &m) == 0) {
		size_t len = size;

		within(m.root, line, len);
		within(m.mountpoint, line, len);
		within(m.fstype, line, len);
		within(m.source, line, len);
		if (m.major > 0xfffffff || m.minor > 0xfffffff)
			abort();
	}
	free(line);
	return 0;
}
