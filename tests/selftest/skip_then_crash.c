// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Deliberately broken (tests/run-check, LAZYEROFS_CHECK_SELFTEST=1): a cmocka program that
 * skips a test and then crashes without reporting a failure. The harness must count it as a
 * failure; it once counted it as passed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static void test_passes(void **state)
{
	(void)state;
}

static void test_skips(void **state)
{
	(void)state;
	skip();
}

static void test_crashes(void **state)
{
	(void)state;
	abort(); /* as an ASan report or a leak exit would end the program */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_passes),
	    cmocka_unit_test(test_skips),
	    cmocka_unit_test(test_crashes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
