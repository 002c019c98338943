// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the Prometheus text format (util/prom.c): escaping of label values and HELP
 * texts, exact decimal seconds, cumulative histogram buckets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/prom.h"
#include "memout.h"

static void test_escape(void **state)
{
	static const struct {
		const char *in, *label, *help;
	} cases[] = {
	    {"plain /mnt/a b", "plain /mnt/a b", "plain /mnt/a b"},
	    {"a\\b", "a\\\\b", "a\\\\b"},
	    {"say \"hi\"", "say \\\"hi\\\"", "say \"hi\""},
	    {"two\nlines", "two\\nlines", "two\\nlines"},
	    {"\\n\"\n", "\\\\n\\\"\\n", "\\\\n\"\\n"},
	    {"tab\there, UTF-8 \xc3\xa9", "tab\there, UTF-8 \xc3\xa9", "tab\there, UTF-8 \xc3\xa9"},
	    {"", "", ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct out o;
		char *s;

		out_open(&o);
		util_prom_escape(o.f, cases[i].in, false);
		s = out_close(&o);
		assert_string_equal(s, cases[i].label);
		free(s);
		out_open(&o);
		util_prom_escape(o.f, cases[i].in, true);
		s = out_close(&o);
		assert_string_equal(s, cases[i].help);
		free(s);
	}
}

static void test_family_and_samples(void **state)
{
	struct util_prom_label l[] = {{"digest", "sha256:ab"}, {"mountpoint", "/m\"x\\\n"}};
	struct out o;
	char *s;

	out_open(&o);
	util_prom_family(o.f, "x_bytes", "gauge", "Bytes \"of\" a\\b\nc.");
	util_prom_sample(o.f, "x_bytes", NULL, 0, 0);
	util_prom_sample(o.f, "x_bytes", l, 1, UINT64_MAX);
	util_prom_sample(o.f, "x_bytes", l, 2, 42);
	s = out_close(&o);
	assert_string_equal(s, "# HELP x_bytes Bytes \"of\" a\\\\b\\nc.\n"
			       "# TYPE x_bytes gauge\n"
			       "x_bytes 0\n"
			       "x_bytes{digest=\"sha256:ab\"} 18446744073709551615\n"
			       "x_bytes{digest=\"sha256:ab\",mountpoint=\"/m\\\"x\\\\\\n\"} 42\n");
	free(s);
}

static void test_seconds(void **state)
{
	static const struct {
		uint64_t us;
		const char *text;
	} cases[] = {
	    {0, "0"},
	    {1, "0.000001"},
	    {100, "0.0001"},
	    {1000, "0.001"},
	    {50000, "0.05"},
	    {100000, "0.1"},
	    {1000000, "1"},
	    {1500000, "1.5"},
	    {30000000, "30"},
	    {1234567, "1.234567"},
	    {60000010, "60.00001"},
	    {UINT64_MAX, "18446744073709.551615"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[UTIL_PROM_SECONDS_LEN];

		util_prom_seconds(buf, cases[i].us);
		assert_string_equal(buf, cases[i].text);
	}
}

static void test_histogram_is_cumulative(void **state)
{
	static const uint64_t bounds[] = {100, 50000, 2000000};
	static const uint64_t counts[] = {3, 0, 5, 2};
	struct util_prom_label l[] = {{"digest", "sha256:ab"}};
	struct out o;
	char *s;

	out_open(&o);
	util_prom_histogram(o.f, "lat_seconds", l, 1, bounds, counts, 3, 7250000);
	s = out_close(&o);
	assert_string_equal(s, "lat_seconds_bucket{digest=\"sha256:ab\",le=\"0.0001\"} 3\n"
			       "lat_seconds_bucket{digest=\"sha256:ab\",le=\"0.05\"} 3\n"
			       "lat_seconds_bucket{digest=\"sha256:ab\",le=\"2\"} 8\n"
			       "lat_seconds_bucket{digest=\"sha256:ab\",le=\"+Inf\"} 10\n"
			       "lat_seconds_sum{digest=\"sha256:ab\"} 7.25\n"
			       "lat_seconds_count{digest=\"sha256:ab\"} 10\n");
	free(s);
	/* No labels but le; nothing observed. */
	out_open(&o);
	util_prom_histogram(o.f, "h", NULL, 0, bounds, (const uint64_t[]){0, 0, 0, 0}, 3, 0);
	s = out_close(&o);
	assert_string_equal(s,
			    "h_bucket{le=\"0.0001\"} 0\nh_bucket{le=\"0.05\"} 0\n"
			    "h_bucket{le=\"2\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_family_and_samples),
	    cmocka_unit_test(test_seconds),
	    cmocka_unit_test(test_histogram_is_cumulative),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
