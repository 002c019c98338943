// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for util/error: set returns its code and resets the registry fields, set_http
 * records them, prefix keeps them, long messages are cut (not overrun), and every call takes
 * a NULL carrier. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/error.h"

static void test_set_returns_code(void **state)
{
	struct util_error e = UTIL_ERROR_INIT;

	(void)state;
	assert_false(util_err_has_msg(&e));
	assert_int_equal(util_err_set(&e, -EIO, "reading %s at %d", "x", 7), -EIO);
	assert_int_equal(e.code, -EIO);
	assert_string_equal(e.message, "reading x at 7");
	assert_true(util_err_has_msg(&e));
	assert_int_equal(e.http_status, 0);
	assert_string_equal(e.registry_code, "");
}

static void test_http_and_prefix(void **state)
{
	struct util_error e = UTIL_ERROR_INIT;

	(void)state;
	assert_int_equal(util_err_set_http(&e, -ENOENT, 404, "MANIFEST_UNKNOWN", "HTTP %d", 404),
			 -ENOENT);
	assert_int_equal(e.http_status, 404);
	assert_string_equal(e.registry_code, "MANIFEST_UNKNOWN");
	util_err_prefix(&e, "resolving '%s'", "r/x:1");
	assert_string_equal(e.message, "resolving 'r/x:1': HTTP 404");
	assert_int_equal(e.code, -ENOENT);
	assert_int_equal(e.http_status, 404);
	assert_string_equal(e.registry_code, "MANIFEST_UNKNOWN");
	/* A plain set forgets the registry's answer. */
	util_err_set(&e, -EINVAL, "bad");
	assert_int_equal(e.http_status, 0);
	assert_string_equal(e.registry_code, "");
	util_err_set_http(&e, -EAGAIN, 503, NULL, "busy");
	assert_string_equal(e.registry_code, "");
	util_err_clear(&e);
	assert_int_equal(e.code, 0);
	assert_false(util_err_has_msg(&e));
}

static void test_truncation(void **state)
{
	struct util_error e = UTIL_ERROR_INIT;
	char big[3000], code[200];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	memset(code, 'C', sizeof(code) - 1);
	code[sizeof(code) - 1] = 0;
	util_err_set_http(&e, -EBADMSG, 400, code, "%s", big);
	assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
	assert_int_equal(strlen(e.registry_code), sizeof(e.registry_code) - 1);
	util_err_prefix(&e, "%s", big);
	assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
	util_err_set(&e, -EIO, "short");
	util_err_prefix(&e, "%s", big);
	assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
}

static void test_null_carrier(void **state)
{
	(void)state;
	util_err_clear(NULL);
	assert_int_equal(util_err_set(NULL, -EACCES, "x %d", 1), -EACCES);
	assert_int_equal(util_err_set_http(NULL, -EAGAIN, 429, "TOOMANYREQUESTS", "y"), -EAGAIN);
	util_err_prefix(NULL, "z");
	assert_false(util_err_has_msg(NULL));
	assert_string_equal(util_err_msg(NULL, -ENOENT), strerror(ENOENT));
}

static void test_msg_falls_back(void **state)
{
	struct util_error e = UTIL_ERROR_INIT;

	(void)state;
	assert_string_equal(util_err_msg(&e, -EPERM), strerror(EPERM));
	util_err_set(&e, -EPERM, "not yours");
	assert_string_equal(util_err_msg(&e, -EPERM), "not yours");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_set_returns_code), cmocka_unit_test(test_http_and_prefix),
	    cmocka_unit_test(test_truncation),	     cmocka_unit_test(test_null_carrier),
	    cmocka_unit_test(test_msg_falls_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
