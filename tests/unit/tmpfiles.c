// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit-test helper: files in a test's temporary directory (tmpfiles.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "tmpfiles.h"

void tmp_write_file(const char *dir, const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	if (strchr(rel, '/')) {
		char parent[256];

		snprintf(parent, sizeof(parent), "%s", path);
		*strrchr(parent, '/') = 0;
		mkdir(parent, 0700);
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}
