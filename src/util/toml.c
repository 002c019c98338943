// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The TOML subset parser (toml.h): a recursive descent over (buf, len), one line counter, a
 * tree of values with the line each was defined on. Bounded: file size, nesting depth and
 * the number of values are capped, so untrusted input costs at most a known amount.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/toml.h"

struct parser {
	const char *p, *end;
	unsigned line;
	size_t values;
	struct util_error *err;
};

static int fail(struct parser *ps, const char *fmt, ...) _printf_(2, 3);
static int fail(struct parser *ps, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_err_vset(ps->err, -EBADMSG, fmt, ap);
	va_end(ap);
	util_err_prefix(ps->err, "line %u", ps->line);
	util_err_printable(ps->err);
	return -EBADMSG;
}

int util_toml_error(struct util_error *err, const char *path, const struct util_toml *v,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_err_vset(err, -EINVAL, fmt, ap);
	va_end(ap);
	util_err_prefix(err, "%s: line %u", path, v->line);
	util_err_printable(err);
	return -EINVAL;
}

const char *util_toml_type_name(enum util_toml_type type)
{
	switch (type) {
	case UTIL_TOML_TABLE:
		return "a table";
	case UTIL_TOML_STRING:
		return "a string";
	case UTIL_TOML_INTEGER:
		return "an integer";
	case UTIL_TOML_BOOLEAN:
		return "a boolean";
	case UTIL_TOML_ARRAY:
		return "an array";
	default:
		return "a float or a date";
	}
}

void util_toml_free(struct util_toml *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		util_toml_free(t->items[i]);
	free(t->items);
	free(t->key);
	free(t->str);
	free(t);
}

const struct util_toml *util_toml_get(const struct util_toml *t, const char *key)
{
	if (!t || t->type != UTIL_TOML_TABLE)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->items[i]->key, key))
			return t->items[i];
	return NULL;
}

static int node_new(struct parser *ps, enum util_toml_type type, struct util_toml **ret)
{
	struct util_toml *t;

	if (++ps->values > UTIL_TOML_MAX_VALUES)
		return fail(ps, "more than %d values", UTIL_TOML_MAX_VALUES);
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->type = type;
	t->line = ps->line;
	*ret = t;
	return 0;
}

/* Add child (owned from now on, freed on failure) to a table or an array. */
static int node_add(struct util_toml *parent, struct util_toml *child)
{
	struct util_toml **v = realloc(parent->items, (parent->n + 1) * sizeof(*v));

	if (!v) {
		util_toml_free(child);
		return -ENOMEM;
	}
	parent->items = v;
	v[parent->n++] = child;
	return 0;
}

/* ---- lexing ------------------------------------------------------------------------------- */

static bool at(struct parser *ps, char ch)
{
	return ps->p < ps->end && *ps->p == ch;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
		ps->p++;
}

/* A comment runs to the end of the line. */
static int skip_comment(struct parser *ps)
{
	if (!at(ps, '#'))
		return 0;
	for (; ps->p < ps->end && *ps->p != '\n'; ps->p++) {
		unsigned char ch = (unsigned char)*ps->p;

		if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f)
			return fail(ps, "a control character in a comment");
	}
	return 0;
}

/* The end of a line: "\n", "\r\n" or the end of the input. 1 when one was taken. */
static int take_newline(struct parser *ps)
{
	if (at(ps, '\r')) {
		if (ps->p + 1 >= ps->end || ps->p[1] != '\n')
			return fail(ps, "a carriage return without a line feed");
		ps->p++;
	}
	if (at(ps, '\n')) {
		ps->p++;
		ps->line++;
		return 1;
	}
	return 0;
}

/* Blank lines, comments and line ends inside an array. */
static int skip_array_space(struct parser *ps)
{
	for (;;) {
		int r;

		skip_ws(ps);
		r = skip_comment(ps);
		if (r < 0)
			return r;
		r = take_newline(ps);
		if (r < 0)
			return r;
		if (r == 0)
			return 0;
	}
}

static int put_utf8(struct util_buf *b, uint32_t cp)
{
	uint8_t u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | (cp >> 6));
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | (cp >> 12));
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | (cp >> 18));
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return util_buf_append(b, u, n);
}

/* \uXXXX or \UXXXXXXXX: ndigits hex digits at ps->p. */
static int escape_unicode(struct parser *ps, int ndigits, struct util_buf *b)
{
	uint32_t cp = 0;

	if (ps->end - ps->p < ndigits)
		return fail(ps, "an unfinished \\u escape");
	for (int i = 0; i < ndigits; i++) {
		char ch = *ps->p++;
		int v = ch >= '0' && ch <= '9'	 ? ch - '0'
			: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
						 : -1;

		if (v < 0)
			return fail(ps, "a bad \\u escape");
		cp = cp << 4 | (uint32_t)v;
	}
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return fail(ps, "the \\u escape U+%04X is not allowed here", cp);
	return put_utf8(b, cp);
}

/* A basic ("...") or literal ('...') string on one line; ps->p at the opening quote. */
static int parse_string(struct parser *ps, char **ret)
{
	struct util_buf b = UTIL_BUF_INIT(UTIL_TOML_MAX_SIZE);
	char quote = *ps->p++;
	char *s = NULL;
	int r = 0;

	if (ps->end - ps->p >= 2 && ps->p[0] == quote && ps->p[1] == quote)
		return fail(ps, "multi-line strings are not supported");
	for (;;) {
		unsigned char ch;

		if (ps->p >= ps->end || *ps->p == '\n' || *ps->p == '\r') {
			r = fail(ps, "a string without its closing %c", quote);
			break;
		}
		ch = (unsigned char)*ps->p++;
		if (ch == (unsigned char)quote)
			break;
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			r = fail(ps, "a control character in a string");
			break;
		}
		if (ch != '\\' || quote == '\'') {
			r = util_buf_append(&b, &ch, 1);
		} else if (ps->p >= ps->end) {
			r = fail(ps, "a string without its closing %c", quote);
		} else {
			char e = *ps->p++;
			const char *from = "btnfr\"\\", *to = "\b\t\n\f\r\"\\";
			const char *k = strchr(from, e);

			if (e == 'u' || e == 'U')
				r = escape_unicode(ps, e == 'u' ? 4 : 8, &b);
			else if (e && k)
				r = util_buf_append(&b, &to[k - from], 1);
			else
				r = fail(ps, "an unknown escape \\%c in a string",
					 e > 0x20 && e < 0x7f ? e : '?');
		}
		if (r == -EFBIG)
			r = fail(ps, "a string longer than the file may be");
		if (r < 0)
			break;
	}
	if (r >= 0)
		r = util_buf_steal(&b, &s);
	util_buf_free(&b);
	if (r < 0)
		return r;
	*ret = s;
	return 0;
}

static bool bare_key_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-';
}

struct key {
	char *part[UTIL_TOML_MAX_DEPTH];
	size_t n;
};

static void key_free(struct key *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->part[i]);
	k->n = 0;
}

/* A key: simple keys joined by dots (spaces around the dots allowed). */
static int parse_key(struct parser *ps, struct key *k)
{
	for (;;) {
		char *part;
		int r;

		skip_ws(ps);
		if (k->n == UTIL_TOML_MAX_DEPTH)
			return fail(ps, "a key of more than %d parts", UTIL_TOML_MAX_DEPTH);
		if (at(ps, '"') || at(ps, '\'')) {
			r = parse_string(ps, &part);
			if (r < 0)
				return r;
		} else {
			const char *s = ps->p;

			while (ps->p < ps->end && bare_key_char(*ps->p))
				ps->p++;
			if (ps->p == s && ps->p < ps->end && *ps->p > 0x20 && *ps->p < 0x7f)
				return fail(ps, "a key cannot start with '%c'", *ps->p);
			if (ps->p == s)
				return fail(ps, "a key is missing");
			part = strndup(s, (size_t)(ps->p - s));
			if (!part)
				return -ENOMEM;
		}
		k->part[k->n++] = part;
		skip_ws(ps);
		if (!at(ps, '.'))
			return 0;
		ps->p++;
	}
}

/* ---- values ------------------------------------------------------------------------------- */

/* A decimal integer with optional sign and single underscores between digits (no leading
 * zero). 1 when s[0..n) is one (*ret set, -ERANGE on overflow), 0 when it is not. */
static int parse_integer(const char *s, size_t n, int64_t *ret)
{
	bool neg = false;
	uint64_t v = 0, limit;
	size_t i = 0;

	if (n && (s[0] == '+' || s[0] == '-')) {
		neg = s[0] == '-';
		i++;
	}
	if (i == n || s[i] < '0' || s[i] > '9' || (s[i] == '0' && i + 1 < n))
		return 0;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		if (s[i] == '_') {
			if (i + 1 >= n || s[i + 1] < '0' || s[i + 1] > '9' || s[i - 1] < '0' ||
			    s[i - 1] > '9')
				return 0;
			continue;
		}
		if (s[i] < '0' || s[i] > '9')
			return 0;
		if (v > (limit - (uint64_t)(s[i] - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 1;
}

static bool raw_char(char ch)
{
	return bare_key_char(ch) || ch == '+' || ch == '.' || ch == ':';
}

static int parse_value(struct parser *ps, int depth, struct util_toml **ret);
static int parse_keyval(struct parser *ps, struct util_toml *t, int depth);

/* { key = value, ... } on one line: a table complete in itself (no [header] or dotted key
 * adds to it later). depth: its own nesting (tables and arrays above it). */
static int parse_inline_table(struct parser *ps, int depth, struct util_toml **ret)
{
	_cleanup_(util_toml_freep) struct util_toml *t = NULL;
	int r;

	if (depth >= UTIL_TOML_MAX_DEPTH)
		return fail(ps, "tables nested more than %d deep", UTIL_TOML_MAX_DEPTH);
	r = node_new(ps, UTIL_TOML_TABLE, &t);
	if (r < 0)
		return r;
	t->header = t->sealed = true;
	ps->p++; /* { */
	skip_ws(ps);
	while (!at(ps, '}')) {
		r = parse_keyval(ps, t, depth);
		if (r < 0)
			return r;
		skip_ws(ps);
		if (at(ps, ',')) {
			ps->p++;
			skip_ws(ps);
			if (at(ps, '}'))
				return fail(ps, "a ',' before the '}' of an inline table");
		} else if (!at(ps, '}')) {
			return fail(ps, "expected ',' or '}' in an inline table (on one line)");
		}
	}
	ps->p++; /* } */
	*ret = TAKE_PTR(t);
	return 0;
}

static int parse_array(struct parser *ps, int depth, struct util_toml **ret)
{
	_cleanup_(util_toml_freep) struct util_toml *a = NULL;
	int r;

	if (depth >= UTIL_TOML_MAX_DEPTH)
		return fail(ps, "arrays nested more than %d deep", UTIL_TOML_MAX_DEPTH);
	r = node_new(ps, UTIL_TOML_ARRAY, &a);
	if (r < 0)
		return r;
	ps->p++; /* [ */
	for (;;) {
		struct util_toml *item = NULL;

		r = skip_array_space(ps);
		if (r < 0)
			return r;
		if (at(ps, ']'))
			break;
		if (ps->p >= ps->end)
			return fail(ps, "an array without its closing ']'");
		r = parse_value(ps, depth + 1, &item);
		if (r < 0)
			return r;
		r = node_add(a, item);
		if (r < 0)
			return r;
		r = skip_array_space(ps);
		if (r < 0)
			return r;
		if (at(ps, ','))
			ps->p++;
		else if (!at(ps, ']'))
			return fail(ps, ps->p < ps->end ? "expected ',' or ']' in an array"
							: "an array without its closing ']'");
	}
	ps->p++; /* ] */
	*ret = TAKE_PTR(a);
	return 0;
}

static int parse_value(struct parser *ps, int depth, struct util_toml **ret)
{
	_cleanup_(util_toml_freep) struct util_toml *v = NULL;
	const char *s = ps->p;
	size_t n;
	int r;

	if (ps->p >= ps->end || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '#')
		return fail(ps, "a value is missing");
	if (*ps->p == '[')
		return parse_array(ps, depth, ret);
	if (*ps->p == '{')
		return parse_inline_table(ps, depth, ret);
	if (*ps->p == '"' || *ps->p == '\'') {
		r = node_new(ps, UTIL_TOML_STRING, &v);
		if (r < 0)
			return r;
		r = parse_string(ps, &v->str);
		if (r < 0)
			return r;
		*ret = TAKE_PTR(v);
		return 0;
	}
	while (ps->p < ps->end && raw_char(*ps->p))
		ps->p++;
	n = (size_t)(ps->p - s);
	if (n == 0)
		return fail(ps, "'%c' cannot start a value", *s > 0x20 && *s < 0x7f ? *s : '?');
	if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5))) {
		r = node_new(ps, UTIL_TOML_BOOLEAN, &v);
		if (r < 0)
			return r;
		v->boolean = n == 4;
	} else {
		int64_t i = 0;
		int k = parse_integer(s, n, &i);

		if (k < 0)
			return fail(ps, "the integer %.*s is out of range", (int)MIN(n, (size_t)40),
				    s);
		if (k == 0 && !(*s == '+' || *s == '-' || (*s >= '0' && *s <= '9') ||
				(n == 3 && (!memcmp(s, "inf", 3) || !memcmp(s, "nan", 3)))))
			return fail(ps, "'%.*s' is not a value (a string needs quotes)",
				    (int)MIN(n, (size_t)40), s);
		r = node_new(ps, k ? UTIL_TOML_INTEGER : UTIL_TOML_OTHER, &v);
		if (r < 0)
			return r;
		v->integer = i;
		if (!k && !(v->str = strndup(s, n)))
			return -ENOMEM;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

/* ---- tables ------------------------------------------------------------------------------- */

static struct util_toml *member(struct util_toml *t, const char *key)
{
	return (struct util_toml *)util_toml_get(t, key);
}

/* The table named by the first n parts of k under t, made (implicitly) where missing. */
static int walk_tables(struct parser *ps, struct util_toml *t, const struct key *k, size_t n,
		       struct util_toml **ret)
{
	for (size_t i = 0; i < n; i++) {
		struct util_toml *m = member(t, k->part[i]);
		int r;

		if (!m) {
			r = node_new(ps, UTIL_TOML_TABLE, &m);
			if (r < 0)
				return r;
			m->key = strdup(k->part[i]);
			if (!m->key) {
				util_toml_free(m);
				return -ENOMEM;
			}
			r = node_add(t, m);
			if (r < 0)
				return r;
		} else if (m->type != UTIL_TOML_TABLE) {
			return fail(ps, "'%s' is %s (line %u), not a table", k->part[i],
				    util_toml_type_name(m->type), m->line);
		} else if (m->sealed) {
			return fail(ps,
				    "'%s' is an inline table (line %u): nothing can be added to it",
				    k->part[i], m->line);
		}
		t = m;
	}
	*ret = t;
	return 0;
}

/* [a.b."c"]: the table that the key/value lines after it go to, and its depth. */
static int parse_header(struct parser *ps, struct util_toml *root, struct util_toml **ret,
			int *ret_depth)
{
	struct key k = { .n = 0 };
	struct util_toml *t;
	int r;

	ps->p++; /* [ */
	if (at(ps, '['))
		return fail(ps, "arrays of tables ([[...]]) are not supported");
	r = parse_key(ps, &k);
	if (r >= 0 && !at(ps, ']'))
		r = fail(ps, "expected ']' after the table name");
	if (r >= 0) {
		ps->p++;
		r = walk_tables(ps, root, &k, k.n, &t);
	}
	if (r >= 0 && t->header)
		r = fail(ps, "the table [%s] is defined twice (first on line %u)",
			 k.part[k.n - 1], t->line);
	if (r >= 0) {
		t->header = true;
		t->line = ps->line;
		*ret = t;
		*ret_depth = (int)k.n;
	}
	key_free(&k);
	return r;
}

/* key = value, into table t (depth: t's own nesting; a dotted key's parts nest the value
 * further, so that inline tables and arrays under it stay within the cap). */
static int parse_keyval(struct parser *ps, struct util_toml *t, int depth)
{
	struct key k = { .n = 0 };
	struct util_toml *parent, *v = NULL;
	int r;

	r = parse_key(ps, &k);
	if (r >= 0 && !at(ps, '='))
		r = fail(ps, "expected '=' after the key '%s'", k.part[k.n - 1]);
	if (r >= 0) {
		ps->p++;
		r = walk_tables(ps, t, &k, k.n - 1, &parent);
	}
	if (r >= 0 && member(parent, k.part[k.n - 1]))
		r = fail(ps, "the key '%s' is defined twice (first on line %u)", k.part[k.n - 1],
			 member(parent, k.part[k.n - 1])->line);
	if (r >= 0) {
		skip_ws(ps);
		r = parse_value(ps, depth + (int)k.n, &v);
	}
	if (r >= 0) {
		v->key = TAKE_PTR(k.part[k.n - 1]);
		k.n--;
		r = node_add(parent, v);
	}
	key_free(&k);
	return r;
}

int util_toml_parse(const char *buf, size_t len, struct util_toml **ret, struct util_error *err)
{
	_cleanup_(util_toml_freep) struct util_toml *root = NULL;
	struct parser ps = { .p = buf, .end = buf + len, .line = 1, .err = err };
	struct util_toml *cur;
	int r, depth = 0;

	util_err_clear(err);
	if (len > UTIL_TOML_MAX_SIZE)
		return util_err_set(err, -EFBIG, "larger than %u bytes", UTIL_TOML_MAX_SIZE);
	if (memchr(buf, 0, len))
		return util_err_set(err, -EBADMSG, "a NUL byte: not a text file");
	/* A UTF-8 byte order mark is not part of the text. */
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		ps.p += 3;
	r = node_new(&ps, UTIL_TOML_TABLE, &root);
	if (r < 0)
		return r;
	cur = root;
	while (ps.p < ps.end) {
		skip_ws(&ps);
		if (at(&ps, '['))
			r = parse_header(&ps, root, &cur, &depth);
		else if (ps.p < ps.end && *ps.p != '#' && *ps.p != '\n' && *ps.p != '\r')
			r = parse_keyval(&ps, cur, depth);
		if (r < 0)
			return r;
		skip_ws(&ps);
		r = skip_comment(&ps);
		if (r < 0)
			return r;
		r = take_newline(&ps);
		if (r < 0)
			return r;
		if (r == 0 && ps.p < ps.end)
			return fail(&ps, "expected the end of the line, found '%c'",
				    *ps.p > 0x20 && *ps.p < 0x7f ? *ps.p : '?');
	}
	*ret = TAKE_PTR(root);
	return 0;
}
