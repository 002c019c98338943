// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the reference grammar (and the -o keys): never crash; an accepted reference formats to
 * a canonical form that parses back to itself; errors are one line. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_line(const struct util_error *err)
{
	if (memchr(err->message, '\n', sizeof(err->message)) ||
	    !memchr(err->message, 0, sizeof(err->message)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct util_error err;
	struct oci_ref *r = NULL, *r2 = NULL;
	char *s, *f, *f2;

	if (size > 8192)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	if (size && data[0] == '!') {
		/* -o KEY=VALUE, without the keys that read files */
		struct oci_options o;
		char *eq = strchr(s + 1, '=');

		if (eq)
			*eq = 0;
		oci_options_init(&o);
		if (strcmp(s + 1, "password-file") && strcmp(s + 1, "ca")) {
			int k = oci_options_set(&o, s + 1, eq ? eq + 1 : NULL, &err);

			if (k < 0 && k != -ENOENT)
				one_line(&err);
		}
		oci_options_free(&o);
		free(s);
		return 0;
	}
	if (oci_ref_parse(s, &r, &err) < 0) {
		one_line(&err);
		free(s);
		return 0;
	}
	f = oci_ref_format(r);
	if (!f)
		abort();
	if (!r->is_url) {
		if (oci_ref_parse(f, &r2, &err) < 0)
			abort(); /* the canonical form must parse */
		f2 = oci_ref_format(r2);
		if (!f2 || strcmp(f, f2))
			abort();
		free(f2);
		oci_ref_free(r2);
	}
	free(f);
	oci_ref_free(r);
	free(s);
	return 0;
}
