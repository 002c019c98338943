// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the daemon's measurements (fetch/metrics.c): the latency histogram's buckets
 * ("less or equal" bounds, then +Inf), the kind of a failed fetch, the recording into the
 * shared counters, and the status reply's keys read back as they were written. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fetch/internal.h"
#include "util/time.h"

static void test_latency_buckets(void **state)
{
	static const struct {
		uint64_t us;
		size_t bucket;
	} cases[] = {
	    {0, 0},	      {1, 0},	     {100, 0},	    {101, 1},	   {1000, 1},
	    {1001, 2},	      {10000, 2},    {10001, 3},    {50000, 3},	   {99999, 4},
	    {100000, 4},      {500000, 5},   {500001, 6},   {1000000, 6},  {4999999, 7},
	    {5000000, 7},     {30000000, 8}, {30000001, 9}, {60000000, 9}, {60000001, 10},
	    {UINT64_MAX, 10},
	};

	for (size_t i = 1; i < FETCH_LATENCY_BOUNDS; i++)
		assert_true(fetch_latency_bounds_us[i - 1] < fetch_latency_bounds_us[i]);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (fetch_latency_bucket(cases[i].us) != cases[i].bucket)
			fail_msg("%llu us: bucket %zu, expected %zu",
				 (unsigned long long)cases[i].us, fetch_latency_bucket(cases[i].us),
				 cases[i].bucket);
	}
	/* Every bound is the last value of its own bucket. */
	for (size_t i = 0; i < FETCH_LATENCY_BOUNDS; i++) {
		assert_int_equal(fetch_latency_bucket(fetch_latency_bounds_us[i]), i);
		assert_int_equal(fetch_latency_bucket(fetch_latency_bounds_us[i] + 1), i + 1);
	}
}

static void test_fail_kinds(void **state)
{
	static const struct {
		int err, status;
		bool write, timeout;
		enum fetch_fail_kind kind;
	} cases[] = {
	    {-EIO, 206, true, true, FETCH_FAIL_WRITE}, /* our own write first */
	    {-ENOSPC, 0, true, false, FETCH_FAIL_WRITE},
	    {-EAGAIN, 503, false, true, FETCH_FAIL_TIMEOUT}, /* then our own deadline */
	    {-EAGAIN, 0, false, true, FETCH_FAIL_TIMEOUT},
	    {-EAGAIN, 500, false, false, FETCH_FAIL_5XX},
	    {-EAGAIN, 503, false, false, FETCH_FAIL_5XX},
	    {-EAGAIN, 429, false, false, FETCH_FAIL_5XX},
	    {-EAGAIN, 408, false, false, FETCH_FAIL_5XX},
	    {-ENOENT, 404, false, false, FETCH_FAIL_4XX},
	    {-EACCES, 401, false, false, FETCH_FAIL_4XX},
	    {-EACCES, 403, false, false, FETCH_FAIL_4XX},
	    {-ESTALE, 412, false, false, FETCH_FAIL_4XX},
	    {-EBADMSG, 416, false, false, FETCH_FAIL_4XX},
	    {-EACCES, 0, false, false, FETCH_FAIL_4XX}, /* a token refused */
	    {-ESTALE, 0, false, false, FETCH_FAIL_4XX},
	    {-EAGAIN, 0, false, false, FETCH_FAIL_NETWORK},
	    {-EPROTO, 0, false, false, FETCH_FAIL_NETWORK},
	    {-EBADMSG, 206, false, false, FETCH_FAIL_OTHER}, /* a malformed reply */
	    {-EBADMSG, 0, false, false, FETCH_FAIL_OTHER},
	    {-ENOMEM, 0, false, false, FETCH_FAIL_OTHER},
	    {-EIO, 0, false, false, FETCH_FAIL_OTHER}, /* no registry client */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum fetch_fail_kind k = fetch_fail_kind_of(cases[i].err, cases[i].status,
							    cases[i].write, cases[i].timeout);

		if (k != cases[i].kind)
			fail_msg("case %zu (%d, HTTP %d): %s, expected %s", i, cases[i].err,
				 cases[i].status, fetch_fail_kind_name(k),
				 fetch_fail_kind_name(cases[i].kind));
	}
}

static void test_fail_kind_names(void **state)
{
	for (size_t a = 0; a < FETCH_FAIL_KINDS; a++) {
		assert_non_null(fetch_fail_kind_name(a));
		for (size_t b = 0; b < a; b++)
			assert_string_not_equal(fetch_fail_kind_name(a), fetch_fail_kind_name(b));
	}
	assert_string_equal(fetch_fail_kind_name(FETCH_FAIL_5XX), "5xx");
	assert_string_equal(fetch_fail_kind_name(FETCH_FAIL_KINDS), "other");
}

static void test_recording(void **state)
{
	struct fetch_shared *sh = calloc(1, sizeof(*sh));
	uint64_t now = util_now_us(), total = 0;

	assert_non_null(sh);
	if (now < 100 * 1000000ull) {
		free(sh);
		skip(); /* the monotonic clock starts at boot: read times must not wrap */
	}
	fetch_latency_observe(sh, now - 40 * 1000000ull); /* (30 s, 60 s] */
	fetch_latency_observe(sh, now - 61 * 1000000ull); /* beyond every bound */
	fetch_latency_observe(sh, now + 1000000);	  /* a clock oddity: 0, never huge */
	assert_int_equal(sh->latency[9], 1);
	assert_int_equal(sh->latency[FETCH_LATENCY_BOUNDS], 1);
	assert_int_equal(sh->latency[0], 1);
	for (size_t i = 0; i < FETCH_LATENCY_BUCKETS; i++)
		total += sh->latency[i];
	assert_int_equal(total, 3);
	assert_true(sh->latency_sum_us >= 101 * 1000000ull);
	assert_true(sh->latency_sum_us < 102 * 1000000ull);
	fetch_failure_count(sh, FETCH_FAIL_5XX);
	fetch_failure_count(sh, FETCH_FAIL_5XX);
	fetch_failure_count(sh, FETCH_FAIL_KINDS); /* out of range: other */
	assert_int_equal(sh->failures[FETCH_FAIL_5XX], 2);
	assert_int_equal(sh->failures[FETCH_FAIL_OTHER], 1);
	free(sh);
}

static void test_status_keys_round_trip(void **state)
{
	struct fetch_shared *sh = calloc(1, sizeof(*sh));
	_cleanup_json_ json_t *o = json_object();
	struct fetch_status st = {0};

	assert_non_null(sh);
	for (size_t i = 0; i < FETCH_LATENCY_BUCKETS; i++)
		sh->latency[i] = 10 + i;
	for (size_t k = 0; k < FETCH_FAIL_KINDS; k++)
		sh->failures[k] = 100 + k;
	sh->latency_sum_us = 123456789;
	sh->retries = 7;
	fetch_metrics_status(sh, o);
	free(sh);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "failures"), "4xx")),
			 100 + FETCH_FAIL_4XX);
	fetch_metrics_parse(o, &st);
	assert_true(st.has_latency);
	assert_int_equal(st.retries, 7);
	assert_int_equal(st.latency_sum_us, 123456789);
	for (size_t i = 0; i < FETCH_LATENCY_BUCKETS; i++)
		assert_int_equal(st.latency[i], 10 + i);
	for (size_t k = 0; k < FETCH_FAIL_KINDS; k++)
		assert_int_equal(st.failures[k], 100 + k);

	/* Counted against other bounds: no histogram rather than a wrong one. */
	json_array_set_new(json_object_get(o, "latency_bounds_us"), 3, json_integer(77777));
	memset(&st, 0, sizeof(st));
	fetch_metrics_parse(o, &st);
	assert_false(st.has_latency);
	assert_int_equal(st.latency[0], 0);
	assert_int_equal(st.retries, 7);
	/* A reply without the keys (an older daemon): zeros. */
	memset(&st, 0xff, sizeof(st));
	st.has_latency = true;
	fetch_metrics_parse(json_object_get(o, "failures"), &st);
	assert_false(st.has_latency);
	assert_int_equal(st.latency_sum_us, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_latency_buckets),	   cmocka_unit_test(test_fail_kinds),
	    cmocka_unit_test(test_fail_kind_names),	   cmocka_unit_test(test_recording),
	    cmocka_unit_test(test_status_keys_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
