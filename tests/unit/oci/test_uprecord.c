// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the record of an unfinished upload (push resuming across processes): a
 * formatted record parses back the same; anything else -- wrong types, missing or empty
 * fields, embedded NULs, control characters, an offset past the size, a URL that is not
 * http(s), an oversized record -- is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oci/parse.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int parse(const char *s, struct oci_upload_record *rec)
{
	return oci_upload_record_parse(s, strlen(s), rec);
}

static void test_round_trip(void **state)
{
	struct oci_upload_record a = { .registry = "127.0.0.1:5000", .repository = "lib/img",
				       .digest = DIGEST, .size = 67112960, .offset = 33554432,
				       .url = "http://127.0.0.1:5000/v2/lib/img/blobs/uploads/u?_state=x%3D" };
	struct oci_upload_record b;
	char *s = NULL;

	assert_int_equal(oci_upload_record_format(&a, &s), 0);
	assert_int_equal(parse(s, &b), 0);
	assert_string_equal(b.registry, a.registry);
	assert_string_equal(b.repository, a.repository);
	assert_string_equal(b.digest, a.digest);
	assert_string_equal(b.url, a.url);
	assert_true(b.size == a.size && b.offset == a.offset);
	free(s);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{}",
		"not json",
		/* version */
		"{\"version\":2,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":0,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		/* offset past the size */
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":11,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		/* not http(s) */
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":0,\"url\":\"file:///etc/shadow\"}",
		/* embedded NUL, control character */
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":0,\"url\":\"http://r/\\u0000x\"}",
		"{\"version\":1,\"registry\":\"r\\n\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":0,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		/* bad digest, bad repository, negative size, string size, missing url */
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"sha256:00\","
		"\"size\":10,\"offset\":0,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"A B\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":0,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":-1,\"offset\":0,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":\"10\",\"offset\":0,\"url\":\"http://r/v2/a/blobs/uploads/u\"}",
		"{\"version\":1,\"registry\":\"r\",\"repository\":\"a\",\"digest\":\"" DIGEST
		"\",\"size\":10,\"offset\":0}",
	};
	struct oci_upload_record rec;
	char *big;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &rec), -EBADMSG);
	/* a URL longer than the record's field */
	big = malloc(OCI_UPLOAD_RECORD_MAX + 100);
	assert_non_null(big);
	snprintf(big, OCI_UPLOAD_RECORD_MAX, "{\"version\":1,\"url\":\"http://r/%*s\"}", 5000, "x");
	assert_int_equal(parse(big, &rec), -EBADMSG);
	memset(big, ' ', OCI_UPLOAD_RECORD_MAX + 99);
	big[OCI_UPLOAD_RECORD_MAX + 99] = 0;
	assert_int_equal(parse(big, &rec), -EFBIG);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
