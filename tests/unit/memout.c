// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit-test helper: output collected in memory (memout.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memout.h"

void out_open(struct out *o)
{
	o->buf = NULL;
	o->len = 0;
	o->f = open_memstream(&o->buf, &o->len);
	assert_non_null(o->f);
}

char *out_close(struct out *o)
{
	assert_int_equal(fclose(o->f), 0);
	return o->buf;
}
