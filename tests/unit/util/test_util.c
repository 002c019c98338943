// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for util: capped buffers, extents, digests, number parsing, JSON caps. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/array.h"
#include "util/buf.h"
#include "util/endian.h"
#include "util/extents.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/strutil.h"
#include "util/time.h"

static void test_buf_cap(void **state)
{
	struct util_buf b = UTIL_BUF_INIT(10);

	assert_int_equal(util_buf_append(&b, "hello", 5), 0);
	assert_int_equal(util_buf_appendf(&b, "%d", 1234), 0);
	assert_string_equal((char *)b.data, "hello1234");
	assert_int_equal(util_buf_append(&b, "xy", 2), -EFBIG);
	assert_int_equal(b.len, 9);
	assert_int_equal(util_buf_append(&b, "z", 1), 0);
	assert_int_equal(util_buf_appendf(&b, "q"), -EFBIG);
	util_buf_free(&b);
	/* without a cap (SIZE_MAX): it grows as needed */
	b = (struct util_buf)UTIL_BUF_INIT(SIZE_MAX);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(util_buf_appendf(&b, "%d ", i), 0);
	assert_int_equal(b.len, 3890);
	assert_true(b.alloc > b.len);
	util_buf_free(&b);
}

static void test_extents_merge(void **state)
{
	struct util_extents e;

	util_extents_init(&e);
	assert_int_equal(util_extents_add(&e, 100, 10), 0);
	assert_int_equal(util_extents_add(&e, 0, 10), 0);
	assert_int_equal(util_extents_add(&e, 5, 10), 0);
	assert_int_equal(util_extents_add(&e, 200, 0), 0);
	assert_int_equal(util_extents_add(&e, UINT64_MAX, 2), -EOVERFLOW);
	util_extents_merge(&e, 0);
	assert_int_equal(e.n, 2);
	assert_int_equal(e.v[0].offset, 0);
	assert_int_equal(e.v[0].length, 15);
	assert_int_equal(e.v[1].offset, 100);
	util_extents_merge(&e, 85);
	assert_int_equal(e.n, 1);
	assert_int_equal(e.v[0].length, 110);
	util_extents_align(&e, 4096, 5000);
	assert_int_equal(e.n, 1);
	assert_int_equal(e.v[0].offset, 0);
	assert_int_equal(e.v[0].length, 4096);
	assert_int_equal(util_extents_total(&e), 4096);
	util_extents_free(&e);
}

static void test_digest(void **state)
{
	uint8_t d[UTIL_SHA256_LEN], p[UTIL_SHA256_LEN];
	char s[UTIL_DIGEST_STR_LEN];

	assert_int_equal(util_sha256_buf("abc", 3, d), 0);
	util_digest_format(d, s);
	assert_string_equal(s, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(util_digest_parse(s, p), 0);
	assert_memory_equal(d, p, sizeof(d));
	assert_false(util_digest_valid("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	assert_false(util_digest_valid("sha256:ba78"));
	assert_false(util_digest_valid("sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	/* the hex alone, as cache keys are */
	assert_true(util_sha256_hex_valid(s + 7, UTIL_SHA256_HEX_LEN));
	assert_false(util_sha256_hex_valid(s + 7, UTIL_SHA256_HEX_LEN - 1));
	assert_false(util_sha256_hex_valid(s + 6, UTIL_SHA256_HEX_LEN)); /* ':' */
	assert_false(util_sha256_hex_valid(NULL, UTIL_SHA256_HEX_LEN));
	s[7] = 'B';
	assert_false(util_sha256_hex_valid(s + 7, UTIL_SHA256_HEX_LEN));
}

static void test_parse_u64(void **state)
{
	uint64_t v;

	assert_int_equal(util_parse_u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(util_parse_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(util_parse_u64("-1", &v), -EINVAL);
	assert_int_equal(util_parse_u64("", &v), -EINVAL);
	assert_int_equal(util_parse_u64("12a", &v), -EINVAL);
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		int r;
		uint64_t bytes;
		int percent; /* -1: a byte count */
	} cases[] = {
		{ "0", 0, 0, -1 },
		{ "4096", 0, 4096, -1 },
		{ "1K", 0, 1024, -1 },
		{ "1k", 0, 1024, -1 },
		{ "3M", 0, 3ULL << 20, -1 },
		{ "10G", 0, 10ULL << 30, -1 },
		{ "2T", 0, 2ULL << 40, -1 },
		{ "5MiB", 0, 5ULL << 20, -1 },
		{ "7giB", 0, 7ULL << 30, -1 },
		{ "18446744073709551615", 0, UINT64_MAX, -1 },
		{ "16777215T", 0, 16777215ULL << 40, -1 },
		{ "0%", 0, 0, 0 },
		{ "10%", 0, 0, 10 },
		{ "100%", 0, 0, 100 },
		{ "101%", -ERANGE, 0, 0 },
		{ "18446744073709551616", -ERANGE, 0, 0 },
		{ "16777216T", -ERANGE, 0, 0 },
		{ "99999999999999999999%", -ERANGE, 0, 0 },
		{ "", -EINVAL, 0, 0 },
		{ "G", -EINVAL, 0, 0 },
		{ "%", -EINVAL, 0, 0 },
		{ "-1", -EINVAL, 0, 0 },
		{ "+1", -EINVAL, 0, 0 },
		{ " 1", -EINVAL, 0, 0 },
		{ "1 ", -EINVAL, 0, 0 },
		{ "1 G", -EINVAL, 0, 0 },
		{ "1.5G", -EINVAL, 0, 0 },
		{ "1P", -EINVAL, 0, 0 },
		{ "1GB", -EINVAL, 0, 0 },
		{ "1Gi", -EINVAL, 0, 0 },
		{ "1GiBx", -EINVAL, 0, 0 },
		{ "1B", -EINVAL, 0, 0 },
		{ "10%%", -EINVAL, 0, 0 },
		{ "10 %", -EINVAL, 0, 0 },
		{ "0x10", -EINVAL, 0, 0 },
		{ "1K%", -EINVAL, 0, 0 },
	};
	struct util_size sz;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = util_parse_size(cases[i].s, &sz);

		if (r != cases[i].r)
			fail_msg("'%s': %d, expected %d", cases[i].s, r, cases[i].r);
		if (r < 0)
			continue;
		assert_int_equal(sz.is_percent, cases[i].percent >= 0);
		if (cases[i].percent >= 0)
			assert_int_equal(sz.percent, cases[i].percent);
		else
			assert_int_equal(sz.bytes, cases[i].bytes);
	}
	assert_int_equal(util_parse_size(NULL, &sz), -EINVAL);
}

static void test_array_reserve(void **state)
{
	uint64_t *v = NULL;
	size_t n = 0, alloc = 0;
	void *big = NULL;
	size_t balloc = SIZE_MAX / 2 + 1;

	(void)state;
	for (uint64_t i = 0; i < 1000; i++) {
		assert_int_equal(UTIL_ARRAY_RESERVE(v, alloc, n, 8), 0);
		assert_true(alloc > n);
		v[n++] = i;
	}
	assert_int_equal(alloc, 1024); /* 8, doubled */
	for (uint64_t i = 0; i < 1000; i++)
		assert_int_equal(v[i], i);
	free(v);
	/* doubling past SIZE_MAX fails cleanly, the array untouched */
	assert_int_equal(util_array_reserve(&big, &balloc, balloc, 1, 8), -ENOMEM);
	assert_null(big);
	assert_int_equal(balloc, SIZE_MAX / 2 + 1);
}

static void test_json_caps(void **state)
{
	char deep[400];
	json_t *j = NULL;
	const char *s;
	uint64_t n;

	memset(deep, '[', 200);
	memset(deep + 200, ']', 200);
	assert_int_equal(util_json_parse(deep, sizeof(deep), 1 << 20, &j), -EBADMSG);
	assert_int_equal(util_json_parse("{\"a\":1}", 7, 3, &j), -EFBIG);
	assert_int_equal(util_json_parse("{\"a\":1,\"a\":2}", 13, 100, &j), -EBADMSG);
	assert_int_equal(util_json_parse("{\"a\":\"[[[\",\"n\":5}", 17, 100, &j), 0);
	assert_int_equal(util_json_get_string(j, "a", &s), 0);
	assert_string_equal(s, "[[[");
	assert_int_equal(util_json_get_u64(j, "n", &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(util_json_get_u64(j, "a", &n), -EBADMSG);
	assert_int_equal(util_json_get_u64(j, "zz", &n), -ENOENT);
	json_decref(j);
}

/* The wall-clock stamp of logs and records: RFC 3339, UTC, milliseconds, and now. */
static void test_timestamp(void **state)
{
	char s[UTIL_TIMESTAMP_LEN];
	struct tm tm = { 0 };
	struct timespec before, after;
	time_t t;

	/* (the clock util_timestamp_now reads: time(2) reads a coarser one, which may still be
	 * in the second before) */
	clock_gettime(CLOCK_REALTIME, &before);
	util_timestamp_now(s);
	clock_gettime(CLOCK_REALTIME, &after);
	assert_int_equal(strlen(s), UTIL_TIMESTAMP_LEN - 1);
	for (size_t i = 0; i < strlen(s); i++) {
		const char want = "0000-00-00T00:00:00.000Z"[i];

		if (want == '0')
			assert_true(s[i] >= '0' && s[i] <= '9');
		else
			assert_int_equal(s[i], want);
	}
	assert_non_null(strptime(s, "%Y-%m-%dT%H:%M:%S", &tm));
	t = timegm(&tm);
	assert_true(t >= before.tv_sec && t <= after.tv_sec);
}

/* The atomic write: the whole text or the old one, no temporary left; the mode less the
 * umask, or exactly (a metrics file must be readable by an unprivileged collector). */
static void test_write_atomic(void **state)
{
	char dir[] = "/tmp/lazyerofs-test-XXXXXX", *text = NULL;
	size_t len = 0;
	struct stat st;
	mode_t old = umask(077);
	int dfd;

	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	assert_int_equal(util_write_file_atomic(dfd, "a.prom", "one\n", 4, 0644), 0);
	assert_int_equal(fstatat(dfd, "a.prom", &st, 0), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(util_write_file_atomic_flags(dfd, "a.prom", "two\n", 4, 0644,
						      UTIL_WRITE_NO_SYNC | UTIL_WRITE_EXACT_MODE),
			 0);
	assert_int_equal(fstatat(dfd, "a.prom", &st, 0), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(util_read_file(dfd, "a.prom", 100, 1, &text, &len), 0);
	assert_string_equal(text, "two\n");
	free(text);
	assert_int_equal(unlinkat(dfd, "a.prom", 0), 0);
	/* Someone else's file under the name a temporary one had (in /tmp, made in advance):
	 * never written, nor renamed into place with its owner's rights over it. */
	{
		char name[64];
		int fd;

		snprintf(name, sizeof(name), ".b.prof.%d.tmp", (int)getpid());
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
		assert_true(fd >= 0);
		if (geteuid() == 0)
			assert_int_equal(fchown(fd, 65534, 65534), 0);
		close(fd);
		assert_int_equal(util_write_file_atomic(dfd, "b.prof", "mine\n", 5, 0644), 0);
		assert_int_equal(fstatat(dfd, "b.prof", &st, AT_SYMLINK_NOFOLLOW), 0);
		assert_int_equal(st.st_uid, geteuid());
		assert_int_equal(fstatat(dfd, name, &st, 0), 0);
		assert_int_equal(st.st_size, 0); /* untouched */
		assert_int_equal(unlinkat(dfd, name, 0), 0);
		assert_int_equal(unlinkat(dfd, "b.prof", 0), 0);
	}
	close(dfd);
	assert_int_equal(rmdir(dir), 0); /* empty: no temporary file was left */
	umask(old);
}

/* One printable line: C0, DEL and C1 controls and non-UTF-8 bytes go, other UTF-8 stays. */
static void test_printable(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"plain text", "plain text"},
	    {"tab\there\nnew\x1b[31m\x7f", "tab?here?new?[31m?"},
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
	    {"csi \xc2\x9b"
	     "31m nel \xc2\x85 nbsp \xc2\xa0",
	     "csi ??31m nel ?? nbsp \xc2\xa0"},
	    {"raw \x9b"
	     "31m",
	     "raw ?31m"},
	    {"cut \xe2\x82", "cut ??"},
	    {"overlong \xc0\xaf surrogate \xed\xa0\x80", "overlong ?? surrogate ???"},
	    {"big \xf4\x90\x80\x80 \xff", "big ???? ?"},
	    {"bidi \xe2\x80\xaetxt.exe \xe2\x81\xa6x\xe2\x81\xa9 \xe2\x80\x8f ls\xe2\x80\xa8x "
	     "\xd8\x9c",
	     "bidi ???txt.exe ???x??? ??? ls???x ??"},
	    {"kept \xe2\x80\x94 \xe2\x80\x8d \xe2\x81\xb0",
	     "kept \xe2\x80\x94 \xe2\x80\x8d \xe2\x81\xb0"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[128];

		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		util_str_printable(buf);
		assert_string_equal(buf, cases[i].out);
	}
	util_str_printable(NULL);
}

/* A URL's user info never shows: libcurl's messages quote a proxy's URL whole. */
static void test_hide_userinfo(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"Unsupported proxy scheme for 'htp://alice:SECRET@127.0.0.1:3128'",
	     "Unsupported proxy scheme for 'htp://***@127.0.0.1:3128'"},
	    {"a http://u:p@h/x and https://v@h2:1/y?q=a@b",
	     "a http://***@h/x and https://***@h2:1/y?q=a@b"},
	    {"no url here, a@b", "no url here, a@b"},
	    {"http://host/path@x https://***@h", "http://host/path@x https://***@h"},
	    {"http://@h", "http://@h"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[160];

		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		util_str_hide_userinfo(buf);
		assert_string_equal(buf, cases[i].out);
	}
}

/* Little-endian integers: byte order, every width, no bytes touched beyond n. */
static void test_le(void **state)
{
	uint8_t b[10] = {0};

	util_put_le(b + 1, 0x0807060504030201ULL, 8);
	assert_int_equal(b[0], 0);
	assert_int_equal(b[1], 1);
	assert_int_equal(b[8], 8);
	assert_int_equal(b[9], 0);
	assert_true(util_get_le(b + 1, 8) == 0x0807060504030201ULL);
	assert_int_equal(util_get_le(b + 1, 2), 0x0201);
	assert_int_equal(util_get_le(b + 1, 4), 0x04030201);
	util_put_le(b, 0xfffe, 2);
	assert_int_equal(b[2], 2); /* left alone */
	assert_int_equal(util_get_le(b, 2), 0xfffe);
	assert_int_equal(util_get_le(b, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buf_cap),	  cmocka_unit_test(test_le),
	    cmocka_unit_test(test_extents_merge), cmocka_unit_test(test_digest),
	    cmocka_unit_test(test_parse_u64),	  cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_json_caps),	  cmocka_unit_test(test_array_reserve),
	    cmocka_unit_test(test_timestamp),	  cmocka_unit_test(test_write_atomic),
	    cmocka_unit_test(test_printable),
	    cmocka_unit_test(test_hide_userinfo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
