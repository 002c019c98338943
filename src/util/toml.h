/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * A parser of the TOML subset our configuration files use (/etc/lazyerofs/config,
 * containerd's hosts.toml): comments; key = value pairs with bare, quoted and dotted keys;
 * [table] headers (dotted, quoted); basic strings with escapes and literal strings; integers;
 * booleans; arrays (nested, over several lines). Other values (floats, dates) are kept as their
 * raw text (UTIL_TOML_OTHER) so that a key a reader ignores never makes a file unreadable;
 * multi-line strings, inline tables and arrays of tables are refused with a clear message.
 * A pure function over (buf, len); errors are "line N: what".
 */
#ifndef LAZYEROFS_UTIL_TOML_H
#define LAZYEROFS_UTIL_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/cleanup.h"
#include "util/error.h"

#define UTIL_TOML_MAX_SIZE (1u << 20) /* bytes of a file */
#define UTIL_TOML_MAX_DEPTH 32	      /* tables and arrays nested */
#define UTIL_TOML_MAX_VALUES 20000    /* values of a file, tables and arrays included */

enum util_toml_type {
	UTIL_TOML_TABLE,
	UTIL_TOML_STRING,
	UTIL_TOML_INTEGER,
	UTIL_TOML_BOOLEAN,
	UTIL_TOML_ARRAY,
	UTIL_TOML_OTHER, /* a float or a date: its text, not interpreted */
};

/* One value: a table (its members in the order they were defined), an array, or a scalar. */
struct util_toml {
	enum util_toml_type type;
	unsigned line;	/* where it was defined (a table: its header, or first use) */
	char *key;	/* its key in its table; NULL for the root and array items */
	char *str;	/* STRING (no NUL inside), OTHER */
	int64_t integer;
	bool boolean;
	struct util_toml **items; /* TABLE members, ARRAY items */
	size_t n;
	bool header; /* TABLE: defined by a [header] (not only implied by a dotted name) */
	bool sealed; /* TABLE: written inline ({...}): no [header] or dotted key adds to it */
};

/* Parse a document into its root table. -EBADMSG with "line N: ..." in err for anything else
 * than the subset, -EFBIG beyond UTIL_TOML_MAX_SIZE, -ENOMEM. */
int util_toml_parse(const char *buf, size_t len, struct util_toml **ret, struct util_error *err);
void util_toml_free(struct util_toml *t);
DEFINE_CLEANUP_FUNC(struct util_toml, util_toml_free);
/* The member `key` of a table, or NULL (also when t is not a table). */
const struct util_toml *util_toml_get(const struct util_toml *t, const char *key);
/* "PATH: line N: <formatted>" in err for the value v of the file at path, as one printable
 * line (what it quotes of the file may hold control characters); returns -EINVAL. */
int util_toml_error(struct util_error *err, const char *path, const struct util_toml *v,
		    const char *fmt, ...) _printf_(4, 5);
/* "a string", "an integer", ...: for messages. */
const char *util_toml_type_name(enum util_toml_type type);

#endif
