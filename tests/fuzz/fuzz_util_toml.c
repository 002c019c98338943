// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the TOML subset parser behind /etc/lazyerofs/config and containerd's hosts.toml, and
 * the configuration file on top of it: whatever the bytes, a parse either fails with a
 * "line N: ..." message or gives a tree whose every value has a line within the input, whose
 * strings hold no NUL, whose table members have keys (array items none), and whose nesting
 * stays within the cap. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/config.h"
#include "util/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct util_toml *t, unsigned lines, unsigned depth)
{
	if (t->line < 1 || t->line > lines || depth > 2 * UTIL_TOML_MAX_DEPTH + 2)
		abort();
	if ((t->type == UTIL_TOML_STRING || t->type == UTIL_TOML_OTHER) && !t->str)
		abort();
	if (t->type != UTIL_TOML_TABLE && t->type != UTIL_TOML_ARRAY && t->n)
		abort();
	for (size_t i = 0; i < t->n; i++) {
		const struct util_toml *c = t->items[i];

		if ((t->type == UTIL_TOML_TABLE) != (c->key != NULL))
			abort();
		if (t->type == UTIL_TOML_TABLE && util_toml_get(t, c->key) != c)
			abort(); /* keys of a table are unique */
		check(c, lines, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct util_toml *t = NULL;
	struct util_config c;
	unsigned lines = 1;
	int r;

	if (size > (64u << 10))
		return 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	r = util_toml_parse((const char *)data, size, &t, &err);
	if (r < 0) {
		/* Refused: nothing handed back, one line saying where (a NUL byte: anywhere). */
		if (t || (r != -EBADMSG && r != -ENOMEM) || strchr(err.message, '\n'))
			abort();
		if (r == -EBADMSG && !memchr(data, 0, size) && strncmp(err.message, "line ", 5))
			abort();
	} else {
		if (t->type != UTIL_TOML_TABLE || t->key)
			abort();
		check(t, lines, 0);
		util_toml_free(t);
	}
	if (util_config_parse((const char *)data, size, "config", &c, &err) == 0) {
		for (size_t i = 0; i < c.n_registries; i++)
			for (size_t j = 0; j < c.registries[i].n_mirrors; j++) {
				unsigned l = c.registries[i].lines[j];

				if (l < 1 || l > lines)
					abort();
			}
		util_config_free(&c);
	}
	return 0;
}
