// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for trimming an entry in use: the unit size, the choice of the least recently
 * read units (fetch/trim.h), and the bitmap word masks the trimmer clears with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cache/cache.h"
#include "fetch/trim.h"

static void test_unit_size(void **state)
{
	assert_int_equal(fetch_trim_unit(1), FETCH_TRIM_UNIT_MIN);
	assert_int_equal(fetch_trim_unit((uint64_t)FETCH_TRIM_UNIT_MIN * FETCH_TRIM_MAX_UNITS),
			 FETCH_TRIM_UNIT_MIN);
	assert_int_equal(fetch_trim_unit((uint64_t)FETCH_TRIM_UNIT_MIN * FETCH_TRIM_MAX_UNITS + 1),
			 2 * FETCH_TRIM_UNIT_MIN);
	assert_true((UINT64_C(1) << 50) / fetch_trim_unit(UINT64_C(1) << 50) <=
		    FETCH_TRIM_MAX_UNITS);
}

static void test_pick_oldest_first(void **state)
{
	struct fetch_trim_unit v[] = {
	    {.index = 0, .last_read = 500, .blocks = 32},
	    {.index = 1, .last_read = 0, .blocks = 10},	   /* never read: first */
	    {.index = 2, .last_read = 2000, .blocks = 32}, /* read after the cutoff: never */
	    {.index = 3, .last_read = 100, .blocks = 32},
	    {.index = 4, .last_read = 100, .blocks = 0}, /* nothing present: nothing to give */
	    {.index = 5, .last_read = 900, .blocks = 32},
	};
	size_t n;

	/* Enough for 40 blocks: unit 1 (10), then 3 (32). */
	n = fetch_trim_pick(v, 6, 1000, 40);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].index, 1);
	assert_int_equal(v[1].index, 3);
	/* Everything cold: 1, 3, 0, 5 -- never 2 (too recent) or 4 (empty). */
	n = fetch_trim_pick(v, 6, 1000, UINT64_MAX);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].index, 1);
	assert_int_equal(v[1].index, 3);
	assert_int_equal(v[2].index, 0);
	assert_int_equal(v[3].index, 5);
	/* Nothing wanted, or nothing cold. */
	assert_int_equal(fetch_trim_pick(v, 6, 1000, 0), 0);
	assert_int_equal(fetch_trim_pick(v, 6, 0, 100), 0);
	assert_int_equal(fetch_trim_pick(NULL, 0, 1000, 100), 0);
	/* Equal ages: by index. */
	{
		struct fetch_trim_unit w[] = {{.index = 9, .last_read = 7, .blocks = 1},
					      {.index = 4, .last_read = 7, .blocks = 1}};

		assert_int_equal(fetch_trim_pick(w, 2, 8, 2), 2);
		assert_int_equal(w[0].index, 4);
	}
}

static void test_word_mask(void **state)
{
	struct cache_bitmap b;

	assert_int_equal(cache_bitmap_word_mask(0, 64, 0), ~UINT64_C(0));
	assert_int_equal(cache_bitmap_word_mask(0, 64, 1), 0);
	assert_int_equal(cache_bitmap_word_mask(3, 2, 0), UINT64_C(0x18));
	assert_int_equal(cache_bitmap_word_mask(60, 8, 0), UINT64_C(0xf) << 60);
	assert_int_equal(cache_bitmap_word_mask(60, 8, 1), UINT64_C(0xf));
	assert_int_equal(cache_bitmap_word_mask(64, 128, 1), ~UINT64_C(0));
	assert_int_equal(cache_bitmap_word_mask(64, 128, 3), 0);
	assert_int_equal(cache_bitmap_word_mask(10, 0, 0), 0);
	assert_int_equal(cache_bitmap_word_mask(UINT64_MAX - 1, 5, 0), 0);
	/* Setting a word never sets bits past the end. */
	assert_int_equal(cache_bitmap_init(&b, 70, false), 0);
	cache_bitmap_set_word(&b, 1, ~UINT64_C(0));
	assert_int_equal(cache_bitmap_count(&b), 6);
	cache_bitmap_set_word(&b, 5, 1);
	assert_int_equal(cache_bitmap_clear_word(&b, 1, 0x3), 0x3);
	assert_int_equal(cache_bitmap_count(&b), 4);
	cache_bitmap_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unit_size),
	    cmocka_unit_test(test_pick_oldest_first),
	    cmocka_unit_test(test_word_mask),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
