// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for startup profiles: the text round trip, each of the parser's refusals with the
 * line it names, the caps, the formatter refusing what the parser would refuse, and reading
 * and writing profile files (atomic, mode, clear errors naming the path). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fetch/profile.h"
#include "util/buf.h"
#include "util/macro.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEAD   "lazyerofs-profile 1\nblob " DIGEST " 8192\n"

/* Parse the bytes of s from a buffer of exactly their length (no NUL after them), so that
 * the sanitizers catch a read past len. */
static int parse_n(const char *s, size_t len, struct profile *p, struct util_error *err)
{
	char *copy = malloc(len ? len : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, s, len);
	*err = UTIL_ERROR_INIT;
	r = profile_parse(copy, len, p, err);
	free(copy);
	if (r < 0) {
		assert_int_equal(err->code, r);
		assert_true(err->message[0] != 0);
		assert_null(p->v);
		assert_int_equal(p->n, 0);
	}
	return r;
}

static int parse(const char *s, struct profile *p, struct util_error *err)
{
	return parse_n(s, strlen(s), p, err);
}

static void assert_same(const struct profile *a, const struct profile *b)
{
	assert_string_equal(a->digest, b->digest);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->v[i].t_ms, b->v[i].t_ms);
		assert_int_equal(a->v[i].offset, b->v[i].offset);
		assert_int_equal(a->v[i].length, b->v[i].length);
	}
}

static struct profile_range ranges[] = {
    {.offset = 4096, .length = 4096, .t_ms = 0},
    {.offset = 0, .length = 8192, .t_ms = 0}, /* overlaps the first: allowed */
    {.offset = 8191, .length = 1, .t_ms = UINT32_MAX},
};

static struct profile sample(void)
{
	struct profile p = {.size = 8192, .v = ranges, .n = 3};

	memcpy(p.digest, DIGEST, sizeof(DIGEST));
	return p;
}

static void test_roundtrip(void **state)
{
	struct profile p = sample(), q;
	struct util_error err;
	char *text;
	size_t len;

	(void)state;
	assert_int_equal(profile_format(&p, &text, &len), 0);
	assert_string_equal(text, HEAD "0 4096 4096\n0 0 8192\n4294967295 8191 1\n");
	assert_int_equal(len, strlen(text));
	if (parse(text, &q, &err) < 0)
		fail_msg("parse: %s", err.message);
	assert_same(&p, &q);
	assert_int_equal(profile_bytes(&q), 4096 + 8192 + 1);
	profile_free(&q);
	assert_null(q.v);
	profile_free(&q); /* twice, and NULL: both fine */
	profile_free(NULL);
	free(text);

	/* no ranges: an empty profile, which round-trips too */
	p.n = 0;
	assert_int_equal(profile_format(&p, &text, &len), 0);
	assert_string_equal(text, HEAD);
	assert_int_equal(parse(text, &q, &err), 0);
	assert_same(&p, &q);
	assert_int_equal(profile_bytes(&q), 0);
	profile_free(&q);
	free(text);
}

/* What the parser passes over, and a last line without "\n". */
static void test_lenient(void **state)
{
	struct profile p = sample(), q;
	struct util_error err;
	const char *text = "lazyerofs-profile 1\n"
			   "# recorded by a test\n"
			   "workload python3 -c 'import torch'\n"
			   "blob " DIGEST " 8192\n"
			   "x \xff\xfe not UTF-8 either, never looked at\n"
			   "0 4096 4096\n"
			   "# a comment between ranges\n"
			   "0 0 8192\n"
			   "4294967295 0008191 1";

	(void)state;
	if (parse(text, &q, &err) < 0)
		fail_msg("parse: %s", err.message);
	assert_same(&p, &q);
	profile_free(&q);
	/* only the first len bytes count */
	assert_int_equal(parse_n(HEAD "0 0 4096\n0 0 40", strlen(HEAD) + 9, &q, &err), 0);
	assert_int_equal(q.n, 1);
	assert_int_equal(q.v[0].length, 4096);
	profile_free(&q);
}

static void test_refusals(void **state)
{
	static const struct {
		const char *text;
		int code;
		const char *msg; /* the whole message */
	} cases[] = {
	    {"", -EBADMSG, "empty, not a lazyerofs profile"},
	    {"lazyerofs-profile 1", -EBADMSG, "no blob line"},
	    {"lazyerofs-profil 1\n", -EBADMSG,
	     "line 1: not a lazyerofs profile (no \"lazyerofs-profile 1\")"},
	    {"lazyerofs-profile 0\n", -EBADMSG,
	     "line 1: not a lazyerofs profile (no \"lazyerofs-profile 1\")"},
	    {"lazyerofs-profile  1\n", -EBADMSG,
	     "line 1: not a lazyerofs profile (no \"lazyerofs-profile 1\")"},
	    {"lazyerofs-profile 1 more\n", -EBADMSG, "line 1: text after the version"},
	    {"lazyerofs-profile 2\nblob whatever\n", -EPROTONOSUPPORT,
	     "line 1: format version 2: written by a newer lazyerofs (this one reads version 1)"},
	    {"lazyerofs-profile 99999999999999999999\n", -EBADMSG,
	     "line 1: not a lazyerofs profile (no \"lazyerofs-profile 1\")"},
	    {"# a comment first\nlazyerofs-profile 1\n", -EBADMSG,
	     "line 1: not a lazyerofs profile (no \"lazyerofs-profile 1\")"},
	    {HEAD "blob " DIGEST " 8192\n", -EBADMSG, "line 3: a second blob line"},
	    {HEAD "0 0 1\nblob " DIGEST " 8192\n", -EBADMSG,
	     "line 4: a keyword line after the first range"},
	    {HEAD "0 0 1\nworkload x\n", -EBADMSG, "line 4: a keyword line after the first range"},
	    {"lazyerofs-profile 1\n0 0 1\nblob " DIGEST " 8192\n", -EBADMSG,
	     "line 2: a range before the blob line"},
	    {"lazyerofs-profile 1\nblob " DIGEST "\n", -EBADMSG,
	     "line 2: not \"blob <digest> <size>\""},
	    {"lazyerofs-profile 1\nblob " DIGEST " 1 2\n", -EBADMSG,
	     "line 2: not \"blob <digest> <size>\""},
	    {"lazyerofs-profile 1\nblob sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
	     "0123456789abcdef 8192\n",
	     -EBADMSG, "line 2: blob digest is not sha256:<64 lowercase hex>"},
	    {"lazyerofs-profile 1\nblob sha256:0123 8192\n", -EBADMSG,
	     "line 2: blob digest is not sha256:<64 lowercase hex>"},
	    {"lazyerofs-profile 1\nblob sha512:0123456789abcdef0123456789abcdef0123456789abcdef"
	     "0123456789abcdef 8192\n",
	     -EBADMSG, "line 2: blob digest is not sha256:<64 lowercase hex>"},
	    {"lazyerofs-profile 1\nblob " DIGEST " 0\n", -EBADMSG, "line 2: blob size 0"},
	    {"lazyerofs-profile 1\nblob " DIGEST " -1\n", -EBADMSG, "line 2: not a blob size"},
	    {"lazyerofs-profile 1\nblob " DIGEST " 18446744073709551616\n", -EBADMSG,
	     "line 2: a number beyond 64 bits"},
	    {HEAD "0 1\n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD "0 0 1 2\n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD "0  0 1\n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD "0 0 1 \n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD " 0 0 1\n", -EBADMSG, "line 3: neither a range, a keyword line nor a comment"},
	    {HEAD "0 0x10 1\n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD "0 +1 1\n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD "0 0 1\r\n", -EBADMSG, "line 3: not \"<t_ms> <offset> <length>\""},
	    {HEAD "0 18446744073709551616 1\n", -EBADMSG, "line 3: a number beyond 64 bits"},
	    {HEAD "4294967296 0 1\n", -EBADMSG, "line 3: t_ms 4294967296 does not fit in 32 bits"},
	    {HEAD "5 0 1\n4 0 1\n", -EBADMSG, "line 4: t_ms 4 is before the previous range's 5"},
	    {HEAD "0 0 0\n", -EBADMSG, "line 3: length 0 is not within 1..1073741824"},
	    {"lazyerofs-profile 1\nblob " DIGEST " 4294967296\n0 0 1073741825\n", -EBADMSG,
	     "line 3: length 1073741825 is not within 1..1073741824"},
	    {HEAD "0 123 8070\n", -EBADMSG,
	     "line 3: offset 123 + length 8070 lies beyond the blob's 8192 bytes"},
	    {HEAD "0 18446744073709551615 1\n", -EBADMSG,
	     "line 3: offset 18446744073709551615 + length 1 lies beyond the blob's 8192 bytes"},
	    {HEAD "\n0 0 1\n", -EBADMSG, "line 3: neither a range, a keyword line nor a comment"},
	    {"lazyerofs-profile 1\nBlob " DIGEST " 8192\n", -EBADMSG,
	     "line 2: neither a range, a keyword line nor a comment"},
	    {"lazyerofs-profile 1\nblob\n", -EBADMSG,
	     "line 2: neither a range, a keyword line nor a comment"},
	};
	struct profile q;
	struct util_error err;
	char msg[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = parse(cases[i].text, &q, &err);

		if (r != cases[i].code || strcmp(err.message, cases[i].msg) != 0)
			fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, r, err.message,
				 cases[i].code, cases[i].msg);
	}
	/* limits that are just met pass */
	assert_int_equal(parse("lazyerofs-profile 1\nblob " DIGEST " 18446744073709551615\n"
			       "4294967295 18446744072635809791 1073741824\n",
			       &q, &err),
			 0);
	profile_free(&q);
	/* a NUL byte, though the line looks fine up to it */
	assert_int_equal(parse_n(HEAD "0 0 1\0 junk\n", strlen(HEAD) + 12, &q, &err), -EBADMSG);
	snprintf(msg, sizeof(msg), "a NUL byte at offset %zu", strlen(HEAD) + 5);
	assert_string_equal(err.message, msg);
}

/* HEAD and then n ranges "0 0 1", in a buffer of PROFILE_MAX_BYTES + 1 bytes at least. */
static char *many(size_t n, size_t *ret_len)
{
	struct util_buf b = UTIL_BUF_INIT(PROFILE_MAX_BYTES + 1);
	char *s;

	assert_int_equal(util_buf_append(&b, HEAD, strlen(HEAD)), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(util_buf_append(&b, "0 0 1\n", 6), 0);
	*ret_len = b.len;
	assert_int_equal(util_buf_steal(&b, &s), 0);
	return s;
}

static void test_caps(void **state)
{
	struct profile q;
	struct util_error err;
	char *s, *text, *big;
	size_t len;

	(void)state;
	s = many(PROFILE_MAX_RANGES, &len);
	assert_int_equal(parse_n(s, len, &q, &err), 0);
	assert_int_equal(q.n, PROFILE_MAX_RANGES);
	profile_free(&q);
	free(s);
	s = many(PROFILE_MAX_RANGES + 1, &len);
	assert_int_equal(parse_n(s, len, &q, &err), -EFBIG);
	assert_string_equal(err.message, "line 262147: more than 262144 ranges");
	free(s);

	/* PROFILE_MAX_BYTES bytes are fine (comments pad them), one more is not */
	big = malloc(PROFILE_MAX_BYTES + 1);
	assert_non_null(big);
	memset(big, '#', PROFILE_MAX_BYTES + 1);
	memcpy(big, HEAD "#", strlen(HEAD) + 1);
	big[PROFILE_MAX_BYTES - 1] = '\n';
	assert_int_equal(parse_n(big, PROFILE_MAX_BYTES, &q, &err), 0);
	profile_free(&q);
	assert_int_equal(parse_n(big, PROFILE_MAX_BYTES + 1, &q, &err), -EFBIG);
	assert_string_equal(err.message, "profile of 8388609 bytes (limit 8388608)");

	/* the formatter refuses what the parser would: too many ranges, too long a text */
	q = sample();
	q.size = UINT64_MAX;
	q.n = PROFILE_MAX_RANGES + 1;
	q.v = calloc(q.n, sizeof(*q.v));
	assert_non_null(q.v);
	for (size_t i = 0; i < q.n; i++)
		q.v[i] =
		    (struct profile_range){UINT64_MAX - UINT32_MAX, UINT32_MAX >> 2, UINT32_MAX};
	assert_int_equal(profile_format(&q, &text, &len), -EFBIG);
	q.n = PROFILE_MAX_RANGES; /* ~43 bytes each: 11 MiB */
	assert_int_equal(profile_format(&q, &text, &len), -EFBIG);
	free(q.v);
	free(big);
}

static void test_format_refuses(void **state)
{
	struct profile_range v[2];
	struct profile p;
	char *text = NULL;
	size_t len;

	(void)state;
#define REFUSED(stmt)                                                                              \
	do {                                                                                       \
		p = sample();                                                                      \
		memcpy(v, ranges, sizeof(v));                                                      \
		p.v = v;                                                                           \
		p.n = 2;                                                                           \
		stmt;                                                                              \
		assert_int_equal(profile_format(&p, &text, &len), -EBADMSG);                       \
		assert_null(text);                                                                 \
	} while (0)
	REFUSED(p.digest[7] = 'A');
	REFUSED(memset(p.digest, 'a', sizeof(p.digest)));
	REFUSED(p.size = 0);
	REFUSED(v[1].t_ms = 0; v[0].t_ms = 1);
	REFUSED(v[0].length = 0);
	REFUSED(v[0].length = PROFILE_RANGE_MAX + 1; p.size = UINT64_MAX);
	REFUSED(v[1].offset = 1);
#undef REFUSED
}

static char dir[] = "/tmp/test_profile.XXXXXX";

static size_t entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static void test_files(void **state)
{
	struct profile p = sample(), q;
	struct util_error err = UTIL_ERROR_INIT;
	char path[256], missing[256], msg[1024];
	struct stat st;
	mode_t old;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/x.prof", dir);
	old = umask(022);
	assert_int_equal(profile_write_file(path, &p, &err), 0);
	umask(old);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(entries(dir), 1); /* no temporary file left */
	if (profile_read_file(path, &q, &err) < 0)
		fail_msg("read: %s", err.message);
	assert_same(&p, &q);
	profile_free(&q);
	/* a second write replaces the first */
	p.n = 1;
	assert_int_equal(profile_write_file(path, &p, &err), 0);
	assert_int_equal(profile_read_file(path, &q, &err), 0);
	assert_same(&p, &q);
	profile_free(&q);

	/* the directory is missing: nothing written, the path and the reason said */
	snprintf(missing, sizeof(missing), "%s/nodir/x.prof", dir);
	assert_int_equal(profile_write_file(missing, &p, &err), -ENOENT);
	snprintf(msg, sizeof(msg), "cannot write profile '%s': No such file or directory", missing);
	assert_string_equal(err.message, msg);
	/* the path is a directory: the rename fails and the temporary file goes */
	snprintf(missing, sizeof(missing), "%s/sub", dir);
	assert_int_equal(mkdir(missing, 0755), 0);
	assert_int_equal(profile_write_file(missing, &p, &err), -EISDIR);
	assert_int_equal(entries(dir), 2);
	assert_int_equal(rmdir(missing), 0);
	snprintf(missing, sizeof(missing), "%s/", dir);
	assert_int_equal(profile_write_file(missing, &p, &err), -EISDIR);
	snprintf(msg, sizeof(msg), "cannot write profile '%s': not a file name", missing);
	assert_string_equal(err.message, msg);
	/* a profile that breaks the rules is not written */
	p.size = 0;
	assert_int_equal(profile_write_file(path, &p, &err), -EBADMSG);
	snprintf(msg, sizeof(msg), "cannot write profile '%s': blob size 0", path);
	assert_string_equal(err.message, msg);

	/* reading: a missing file, a malformed one, a newer one, a too large one */
	snprintf(missing, sizeof(missing), "%s/none.prof", dir);
	assert_int_equal(profile_read_file(missing, &q, &err), -ENOENT);
	snprintf(msg, sizeof(msg), "cannot read profile '%s': No such file or directory", missing);
	assert_string_equal(err.message, msg);
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, HEAD "0 0 9000\n", strlen(HEAD) + 9), strlen(HEAD) + 9);
	assert_int_equal(profile_read_file(path, &q, &err), -EBADMSG);
	snprintf(msg, sizeof(msg),
		 "profile '%s': line 3: offset 0 + length 9000 lies beyond the blob's 8192 bytes",
		 path);
	assert_string_equal(err.message, msg);
	assert_int_equal(pwrite(fd, "lazyerofs-profile 2\n", 20, 0), 20);
	assert_int_equal(profile_read_file(path, &q, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.message, "written by a newer lazyerofs"));
	assert_int_equal(ftruncate(fd, PROFILE_MAX_BYTES + 1), 0);
	assert_int_equal(profile_read_file(path, &q, &err), -EFBIG);
	snprintf(msg, sizeof(msg), "profile '%s': larger than 8388608 bytes", path);
	assert_string_equal(err.message, msg);
	close(fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_lenient),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_format_refuses),
	    cmocka_unit_test(test_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
