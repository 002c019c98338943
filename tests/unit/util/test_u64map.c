// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for util/u64map: insert, find, replace, remove (with the runs it shifts back),
 * growth, the key UINT64_MAX, iteration, clear; and a long random run against a plain array. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/u64map.h"

static void test_basic(void **state)
{
	struct util_u64map m = UTIL_U64MAP_INIT;
	uint64_t *v;
	bool fresh;

	(void)state;
	assert_null(util_u64map_find(&m, 0));
	assert_false(util_u64map_remove(&m, 7));
	assert_int_equal(util_u64map_add(&m, 7, &fresh, &v), 0);
	assert_true(fresh);
	assert_int_equal(*v, 0);
	*v = 70;
	assert_int_equal(util_u64map_add(&m, 7, &fresh, &v), 0);
	assert_false(fresh);
	assert_int_equal(*v, 70);
	assert_int_equal(util_u64map_put(&m, 0, 1), 0);
	assert_int_equal(util_u64map_put(&m, UINT64_MAX, 2), 0);
	assert_int_equal(util_u64map_put(&m, UINT64_MAX - 1, 3), 0);
	assert_int_equal(m.n, 4);
	assert_int_equal(*util_u64map_find(&m, 0), 1);
	assert_int_equal(*util_u64map_find(&m, UINT64_MAX), 2);
	assert_int_equal(*util_u64map_find(&m, UINT64_MAX - 1), 3);
	assert_null(util_u64map_find(&m, 8));
	/* put replaces */
	assert_int_equal(util_u64map_put(&m, UINT64_MAX, 5), 0);
	assert_int_equal(*util_u64map_find(&m, UINT64_MAX), 5);
	assert_int_equal(m.n, 4);
	assert_true(util_u64map_remove(&m, UINT64_MAX));
	assert_false(util_u64map_remove(&m, UINT64_MAX));
	assert_null(util_u64map_find(&m, UINT64_MAX));
	assert_true(util_u64map_remove(&m, 7));
	assert_null(util_u64map_find(&m, 7));
	assert_int_equal(m.n, 2);
	util_u64map_clear(&m);
	assert_int_equal(m.n, 0);
	assert_null(util_u64map_find(&m, 0));
	util_u64map_free(&m);
	util_u64map_free(&m); /* twice: harmless */
	util_u64map_free(NULL);
}

/* Pointers as values, growth across many resizes, iteration sees each key once. */
static void test_growth_iterate(void **state)
{
	struct util_u64map m = UTIL_U64MAP_INIT;
	static char things[5000];
	size_t it = 0, seen = 0;
	uint64_t k, val, sum = 0;

	(void)state;
	for (uint64_t i = 0; i < 5000; i++)
		assert_int_equal(util_u64map_put(&m, i * 4096, (uintptr_t)&things[i]), 0);
	assert_int_equal(util_u64map_put(&m, UINT64_MAX, (uintptr_t)things), 0);
	assert_int_equal(m.n, 5001);
	assert_true(m.cap >= 2 * 5000);
	for (uint64_t i = 0; i < 5000; i++)
		assert_ptr_equal((char *)(uintptr_t)*util_u64map_find(&m, i * 4096), &things[i]);
	while (util_u64map_next(&m, &it, &k, &val)) {
		seen++;
		if (k != UINT64_MAX) {
			assert_int_equal(k % 4096, 0);
			assert_ptr_equal((char *)(uintptr_t)val, &things[k / 4096]);
			sum += k / 4096;
		}
	}
	assert_int_equal(seen, 5001);
	assert_int_equal(sum, 4999ull * 5000 / 2);
	/* reserve ahead: no growth afterwards */
	util_u64map_free(&m);
	assert_int_equal(util_u64map_reserve(&m, 1000), 0);
	{
		size_t cap = m.cap;

		for (uint64_t i = 0; i < 1000; i++)
			assert_int_equal(util_u64map_put(&m, i, i), 0);
		assert_int_equal(m.cap, cap);
	}
	assert_int_equal(util_u64map_reserve(&m, SIZE_MAX / 2), -ENOMEM);
	util_u64map_free(&m);
}

/* Removal inside colliding runs, wrapping around the table's end: random operations against
 * a plain array of the truth. */
static void test_random_ops(void **state)
{
	enum { KEYS = 3000 };
	struct util_u64map m = UTIL_U64MAP_INIT;
	static uint64_t truth[KEYS];
	static bool has[KEYS];
	size_t n = 0;
	uint64_t seed = 12345;

	(void)state;
	for (int step = 0; step < 200000; step++) {
		uint64_t x, *p;
		size_t k;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		x = seed >> 33;
		k = (size_t)(x % KEYS);
		/* keys that collide a lot: multiples of a large power of two */
		uint64_t key = (uint64_t)k << 40;

		switch ((x >> 16) % 3) {
		case 0:
			assert_int_equal(util_u64map_put(&m, key, x), 0);
			n += !has[k];
			has[k] = true;
			truth[k] = x;
			break;
		case 1:
			assert_int_equal(util_u64map_remove(&m, key), has[k]);
			n -= has[k];
			has[k] = false;
			break;
		default:
			p = util_u64map_find(&m, key);
			if (has[k])
				assert_true(p && *p == truth[k]);
			else
				assert_null(p);
		}
		assert_int_equal(m.n, n);
	}
	for (size_t k = 0; k < KEYS; k++) {
		uint64_t *p = util_u64map_find(&m, (uint64_t)k << 40);

		assert_true(has[k] ? p && *p == truth[k] : !p);
	}
	util_u64map_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_growth_iterate),
		cmocka_unit_test(test_random_ops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
