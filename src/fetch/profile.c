// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Startup profiles (format in profile.h): the pure parser, which trusts nothing in the text
 * and says which line is wrong and why; the formatter, its exact inverse, which refuses a
 * profile the parser would refuse; and reading and writing profile files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/profile.h"
#include "util/array.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/strutil.h"

struct parser {
	struct profile p;
	size_t alloc; /* of p.v */
	unsigned int line;
	bool blob; /* the blob line was seen */
	struct util_error *err;
};

static int fail(struct util_error *err, int code, unsigned int line, const char *fmt, ...)
    _printf_(4, 5);

/* Record "line N: <why>" (or just <why> for line 0: the formatter's checks). */
static int fail(struct util_error *err, int code, unsigned int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_err_vset(err, code, fmt, ap);
	va_end(ap);
	if (line)
		util_err_prefix(err, "line %u", line);
	return code;
}

/* The rules for the blob and for one range after one whose t_ms was prev_t (0 for the first);
 * the parser and the formatter share them, so that what one accepts the other does too. */
static int check_blob(const char *digest, uint64_t size, unsigned int line, struct util_error *err)
{
	if (!util_digest_valid(digest))
		return fail(err, -EBADMSG, line, "blob digest is not sha256:<64 lowercase hex>");
	if (size == 0)
		return fail(err, -EBADMSG, line, "blob size 0");
	return 0;
}

static int check_range(uint64_t size, uint64_t prev_t, uint64_t t, uint64_t off, uint64_t len,
		       unsigned int line, struct util_error *err)
{
	if (t > UINT32_MAX)
		return fail(err, -EBADMSG, line, "t_ms %llu does not fit in 32 bits",
			    (unsigned long long)t);
	if (t < prev_t)
		return fail(err, -EBADMSG, line, "t_ms %llu is before the previous range's %llu",
			    (unsigned long long)t, (unsigned long long)prev_t);
	if (len == 0 || len > PROFILE_RANGE_MAX)
		return fail(err, -EBADMSG, line, "length %llu is not within 1..%u",
			    (unsigned long long)len, PROFILE_RANGE_MAX);
	if (!util_range_within(off, len, size))
		return fail(err, -EBADMSG, line,
			    "offset %llu + length %llu lies beyond the blob's %llu bytes",
			    (unsigned long long)off, (unsigned long long)len,
			    (unsigned long long)size);
	return 0;
}

/* Cut s at each ' ' into at most max fields (empty ones kept); the count, or max + 1 when
 * there are more. */
static size_t split(char *s, char **f, size_t max)
{
	size_t n = 0;

	for (;;) {
		char *sp = strchr(s, ' ');

		if (n == max)
			return max + 1;
		f[n++] = s;
		if (!sp)
			return n;
		*sp = 0;
		s = sp + 1;
	}
}

/* The fields as unsigned decimals; -EBADMSG with the reason when one is not. */
static int numbers(struct parser *ps, char **f, size_t n, uint64_t *v, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		int r = util_parse_u64(f[i], &v[i]);

		if (r == -ERANGE)
			return fail(ps->err, -EBADMSG, ps->line, "a number beyond 64 bits");
		if (r < 0)
			return fail(ps->err, -EBADMSG, ps->line, "not %s", what);
	}
	return 0;
}

static int parse_magic(struct parser *ps, char *s)
{
	char *f[2];
	size_t n = split(s, f, 2);
	uint64_t v;

	if (n < 2 || strcmp(f[0], PROFILE_MAGIC) != 0 || util_parse_u64(f[1], &v) < 0 || v == 0)
		return fail(ps->err, -EBADMSG, ps->line, "not a lazyerofs profile (no \"%s %d\")",
			    PROFILE_MAGIC, PROFILE_VERSION);
	if (v > PROFILE_VERSION)
		return fail(ps->err, -EPROTONOSUPPORT, ps->line,
			    "format version %llu: written by a newer lazyerofs (this one reads "
			    "version %d)",
			    (unsigned long long)v, PROFILE_VERSION);
	if (n > 2)
		return fail(ps->err, -EBADMSG, ps->line, "text after the version");
	return 0;
}

/* A keyword line: a lowercase word and a space. Only "blob" means anything in version 1. */
static int parse_keyword(struct parser *ps, char *s)
{
	char *f[3];
	uint64_t size;
	int r;

	if (ps->p.n)
		return fail(ps->err, -EBADMSG, ps->line, "a keyword line after the first range");
	if (!util_startswith(s, "blob "))
		return 0;
	if (ps->blob)
		return fail(ps->err, -EBADMSG, ps->line, "a second blob line");
	if (split(s, f, 3) != 3)
		return fail(ps->err, -EBADMSG, ps->line, "not \"blob <digest> <size>\"");
	r = numbers(ps, f + 2, 1, &size, "a blob size");
	if (r >= 0)
		r = check_blob(f[1], size, ps->line, ps->err);
	if (r < 0)
		return r;
	memcpy(ps->p.digest, f[1], UTIL_DIGEST_STR_LEN);
	ps->p.size = size;
	ps->blob = true;
	return 0;
}

static int parse_range(struct parser *ps, char *s)
{
	struct profile *p = &ps->p;
	char *f[3];
	uint64_t v[3]; /* t_ms, offset, length */
	int r;

	if (split(s, f, 3) != 3)
		return fail(ps->err, -EBADMSG, ps->line, "not \"<t_ms> <offset> <length>\"");
	r = numbers(ps, f, 3, v, "\"<t_ms> <offset> <length>\"");
	if (r < 0)
		return r;
	if (!ps->blob)
		return fail(ps->err, -EBADMSG, ps->line, "a range before the blob line");
	if (p->n == PROFILE_MAX_RANGES)
		return fail(ps->err, -EFBIG, ps->line, "more than %u ranges", PROFILE_MAX_RANGES);
	r = check_range(p->size, p->n ? p->v[p->n - 1].t_ms : 0, v[0], v[1], v[2], ps->line,
			ps->err);
	if (r < 0)
		return r;
	if (UTIL_ARRAY_RESERVE(p->v, ps->alloc, p->n, 1024) < 0)
		return fail(ps->err, -ENOMEM, 0, "out of memory");
	p->v[p->n++] = (struct profile_range){
	    .offset = v[1], .length = (uint32_t)v[2], .t_ms = (uint32_t)v[0]};
	return 0;
}

static int parse_line(struct parser *ps, char *s)
{
	size_t word;

	if (ps->line == 1)
		return parse_magic(ps, s);
	if (s[0] == '#')
		return 0;
	if (s[0] >= '0' && s[0] <= '9')
		return parse_range(ps, s);
	word = strspn(s, "abcdefghijklmnopqrstuvwxyz");
	if (word > 0 && s[word] == ' ')
		return parse_keyword(ps, s);
	return fail(ps->err, -EBADMSG, ps->line, "neither a range, a keyword line nor a comment");
}

int profile_parse(const void *buf, size_t len, struct profile *ret, struct util_error *err)
{
	struct parser ps = {.err = err};
	_cleanup_free_ char *text = NULL;
	const char *nul;
	int r = 0;

	*ret = (struct profile){0};
	if (len > PROFILE_MAX_BYTES)
		return util_err_set(err, -EFBIG, "profile of %zu bytes (limit %u)", len,
				    PROFILE_MAX_BYTES);
	/* A NUL-terminated copy, for the string helpers; a NUL inside would cut lines short. */
	nul = memchr(buf, 0, len);
	if (nul)
		return util_err_set(err, -EBADMSG, "a NUL byte at offset %zu",
				    (size_t)(nul - (const char *)buf));
	text = malloc(len + 1);
	if (!text)
		return util_err_set(err, -ENOMEM, "out of memory");
	memcpy(text, buf, len);
	text[len] = 0;
	/* Each "\n" ends a line; text after the last one is a final line too. */
	for (char *s = text, *end = text + len; s < end && r >= 0;) {
		char *nl = memchr(s, '\n', (size_t)(end - s));

		if (nl)
			*nl = 0;
		ps.line++;
		r = parse_line(&ps, s);
		s = nl ? nl + 1 : end;
	}
	if (r >= 0 && ps.line == 0)
		r = util_err_set(err, -EBADMSG, "empty, not a lazyerofs profile");
	else if (r >= 0 && !ps.blob)
		r = util_err_set(err, -EBADMSG, "no blob line");
	if (r < 0) {
		profile_free(&ps.p);
		return r;
	}
	*ret = ps.p;
	return 0;
}

/* The text of p; -EBADMSG (the reason in err) when the parser would refuse it. */
static int format(const struct profile *p, char **ret, size_t *ret_len, struct util_error *err)
{
	struct util_buf b = UTIL_BUF_INIT(PROFILE_MAX_BYTES);
	size_t len;
	int r;

	if (p->n > PROFILE_MAX_RANGES)
		return util_err_set(err, -EFBIG, "more than %u ranges", PROFILE_MAX_RANGES);
	if (!memchr(p->digest, 0, sizeof(p->digest)))
		return util_err_set(err, -EBADMSG, "blob digest not NUL-terminated");
	r = check_blob(p->digest, p->size, 0, err);
	for (size_t i = 0; i < p->n && r >= 0; i++)
		r = check_range(p->size, i ? p->v[i - 1].t_ms : 0, p->v[i].t_ms, p->v[i].offset,
				p->v[i].length, 0, err);
	if (r < 0)
		return r;
	r = util_buf_appendf(&b, "%s %d\nblob %s %llu\n", PROFILE_MAGIC, PROFILE_VERSION, p->digest,
			     (unsigned long long)p->size);
	for (size_t i = 0; i < p->n && r >= 0; i++)
		r = util_buf_appendf(&b, "%u %llu %u\n", p->v[i].t_ms,
				     (unsigned long long)p->v[i].offset, p->v[i].length);
	len = b.len;
	if (r >= 0)
		r = util_buf_steal(&b, ret);
	util_buf_free(&b);
	if (r == -EFBIG)
		return util_err_set(err, r, "longer than %u bytes as text", PROFILE_MAX_BYTES);
	if (r < 0)
		return util_err_set(err, r, "out of memory");
	*ret_len = len;
	return 0;
}

int profile_format(const struct profile *p, char **ret, size_t *ret_len)
{
	return format(p, ret, ret_len, NULL);
}

void profile_free(struct profile *p)
{
	if (!p)
		return;
	free(p->v);
	*p = (struct profile){0};
}

uint64_t profile_bytes(const struct profile *p)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < p->n; i++)
		sum += p->v[i].length;
	return sum;
}

int profile_read_file(const char *path, struct profile *ret, struct util_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	*ret = (struct profile){0};
	r = util_read_file(AT_FDCWD, path, PROFILE_MAX_BYTES, 0, &text, &len);
	if (r == -EFBIG)
		return util_err_set(err, r, "profile '%s': larger than %u bytes", path,
				    PROFILE_MAX_BYTES);
	if (r < 0)
		return util_err_set(err, r, "cannot read profile '%s': %s", path, strerror(-r));
	r = profile_parse(text, len, ret, err);
	if (r < 0)
		util_err_prefix(err, "profile '%s'", path);
	return r;
}

int profile_write_file(const char *path, const struct profile *p, struct util_error *err)
{
	_cleanup_free_ char *text = NULL, *dir = NULL;
	_cleanup_close_ int dfd = -1;
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	size_t len;
	int r;

	r = format(p, &text, &len, err);
	if (r < 0) {
		util_err_prefix(err, "cannot write profile '%s'", path);
		return r;
	}
	if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return util_err_set(err, -EISDIR, "cannot write profile '%s': not a file name",
				    path);
	dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (!dir)
		return util_err_set(err, -ENOMEM, "cannot write profile '%s': out of memory", path);
	dfd = open(*dir ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		r = -errno;
	else
		r = util_write_file_atomic_flags(dfd, name, text, len, 0644,
						 UTIL_WRITE_ONLY_OVER_FILE);
	if (r == -EEXIST)
		return util_err_set(
		    err, r,
		    "cannot write profile '%s': it is not a regular file (a device, "
		    "FIFO or symlink), and only a file is replaced",
		    path);
	if (r < 0)
		return util_err_set(err, r, "cannot write profile '%s': %s", path, strerror(-r));
	return 0;
}
