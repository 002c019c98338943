/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Unit-test helper: a FILE * whose output is collected in memory (open_memstream), for the
 * tests of what writes to a stream. */
#ifndef LAZYEROFS_TESTS_MEMOUT_H
#define LAZYEROFS_TESTS_MEMOUT_H

#include <stddef.h>
#include <stdio.h>

struct out {
	char *buf;
	size_t len;
	FILE *f;
};

void out_open(struct out *o);
/* What was written to o->f, NUL-terminated (free it). */
char *out_close(struct out *o);

#endif
