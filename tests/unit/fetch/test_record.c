// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the record of first accesses (fetch/record.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "fetch/record.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static const char digest[] = "sha256:"
			     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_first_access_order(void **state)
{
	struct fetch_record rec;
	struct profile p;
	bool truncated;

	assert_int_equal(fetch_record_init(&rec, 10 * MiB + 100, NULL), 0);
	fetch_record_note(&rec, 100, 4, 1000);	/* blocks 100-103 */
	fetch_record_note(&rec, 104, 2, 1005);	/* follows it: the same range grows */
	fetch_record_note(&rec, 10, 1, 1010);	/* elsewhere: a new range */
	fetch_record_note(&rec, 99, 8, 1020);	/* 99 new, 100-105 seen, 106 new */
	fetch_record_note(&rec, 100, 6, 1030);	/* all seen: nothing */
	fetch_record_note(&rec, 2560, 5, 1040); /* the last, partial block, clamped */
	assert_int_equal(fetch_record_count(&rec, &truncated), 5);
	assert_false(truncated);
	assert_int_equal(fetch_record_profile(&rec, digest, &p), 0);
	assert_string_equal(p.digest, digest);
	assert_int_equal(p.size, 10 * MiB + 100);
	assert_int_equal(p.n, 5);
	assert_int_equal(p.v[0].offset, 100 * 4096);
	assert_int_equal(p.v[0].length, 6 * 4096);
	assert_int_equal(p.v[0].t_ms, 0);
	assert_int_equal(p.v[1].offset, 10 * 4096);
	assert_int_equal(p.v[1].t_ms, 10);
	assert_int_equal(p.v[2].offset, 99 * 4096);
	assert_int_equal(p.v[2].length, 4096);
	assert_int_equal(p.v[3].offset, 106 * 4096);
	assert_int_equal(p.v[3].t_ms, 20);
	assert_int_equal(p.v[4].offset, 10 * MiB);
	assert_int_equal(p.v[4].length, 100);
	profile_free(&p);
	fetch_record_destroy(&rec);
}

/* Notes whose times were taken before the record's lock, in another order than they took it
 * (two dispatchers at once): times never go down in the record, and it formats. */
static void test_notes_out_of_time_order(void **state)
{
	struct fetch_record rec;
	struct profile p;
	char *text = NULL;
	size_t len;

	assert_int_equal(fetch_record_init(&rec, 1 * MiB, NULL), 0);
	fetch_record_note(&rec, 0, 1, 100);
	fetch_record_note(&rec, 10, 1, 200);
	fetch_record_note(&rec, 20, 1, 150); /* its time taken before the one above */
	assert_int_equal(fetch_record_profile(&rec, digest, &p), 0);
	assert_int_equal(p.n, 3);
	assert_int_equal(p.v[1].t_ms, 100);
	assert_int_equal(p.v[2].t_ms, 100);
	assert_int_equal(profile_format(&p, &text, &len), 0);
	free(text);
	profile_free(&p);
	fetch_record_destroy(&rec);
}

/* A record in a store that outlives it (a worker replaced after a crash): the next record of
 * the store goes on from its ranges, their blocks seen; ranges not within the blob end what
 * is taken over. */
static void test_store_goes_on(void **state)
{
	struct fetch_record_store *st = fetch_record_store_new();
	struct fetch_record rec;
	struct profile p;
	bool truncated;

	assert_non_null(st);
	assert_int_equal(fetch_record_init(&rec, 10 * MiB, st), 0);
	fetch_record_note(&rec, 100, 4, 1000);
	fetch_record_note(&rec, 10, 1, 1010);
	/* the worker is killed here: its memory goes, the store stays */
	fetch_record_destroy(&rec);
	assert_int_equal(fetch_record_init(&rec, 10 * MiB, st), 0);
	assert_int_equal(fetch_record_count(&rec, &truncated), 2);
	fetch_record_note(&rec, 101, 2, 1020); /* seen before the crash: nothing */
	fetch_record_note(&rec, 104, 1, 1030); /* follows the first range: a new one (not last) */
	assert_int_equal(fetch_record_profile(&rec, digest, &p), 0);
	assert_int_equal(p.n, 3);
	assert_int_equal(p.v[0].offset, 100 * 4096);
	assert_int_equal(p.v[0].length, 4 * 4096);
	assert_int_equal(p.v[1].t_ms, 10);
	assert_int_equal(p.v[2].offset, 104 * 4096);
	assert_int_equal(p.v[2].t_ms, 30); /* the same clock origin */
	profile_free(&p);
	fetch_record_destroy(&rec);
	/* A store holding a range past a smaller blob: only what comes before it is taken. */
	assert_int_equal(fetch_record_init(&rec, 104 * 4096, st), 0);
	assert_int_equal(fetch_record_count(&rec, &truncated), 2);
	fetch_record_destroy(&rec);
	munmap(st, sizeof(*st));
}

static void test_cap(void **state)
{
	struct fetch_record rec;
	bool truncated;

	assert_int_equal(fetch_record_init(&rec, (uint64_t)FETCH_RECORD_MAX_RANGES * 2 * 4096 + 8192, NULL), 0);
	/* Every other block: no range can grow. */
	for (uint64_t i = 0; i <= FETCH_RECORD_MAX_RANGES; i++)
		fetch_record_note(&rec, 2 * i, 1, i);
	assert_int_equal(fetch_record_count(&rec, &truncated), FETCH_RECORD_MAX_RANGES);
	assert_true(truncated);
	/* Out of range and empty notes are ignored. */
	fetch_record_note(&rec, UINT64_MAX - 1, 5, 0);
	fetch_record_note(&rec, 0, 0, 0);
	fetch_record_destroy(&rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_access_order),
	    cmocka_unit_test(test_notes_out_of_time_order),
	    cmocka_unit_test(test_store_goes_on),
	    cmocka_unit_test(test_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
