// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the grouping of a walk round into requests (mount/rounds.c): alignment and
 * clamping to the image, merging across small gaps, extending to present blocks, the budget
 * for bridging the smallest gaps (and its cap on a gap's size). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mount/rounds.h"

#define K 4096ULL

static void add(struct util_extents *v, uint64_t off, uint64_t len)
{
	assert_int_equal(util_extents_add(v, off, len), 0);
}

static void expect(const struct util_extents *v, size_t i, uint64_t off, uint64_t len)
{
	assert_true(i < v->n);
	assert_int_equal(v->v[i].offset, off);
	assert_int_equal(v->v[i].length, len);
}

static void test_align_merge(void **state)
{
	struct mount_grouping g = { .merge_gap = 16384 };
	struct util_extents v;

	(void)state;
	util_extents_init(&v);
	/* nothing to do */
	assert_int_equal(mount_group_round(&v, 100 * K, &g, NULL, NULL), 0);
	assert_int_equal(v.n, 0);
	/* unsorted; within 16 KiB of each other after alignment: one range */
	add(&v, 3 * K + 5, 10);
	add(&v, 100, 10);
	/* 5 blocks away from the first: stays apart */
	add(&v, 9 * K, 1);
	/* the image's partial last block: clamped to the image's end */
	add(&v, 20 * K + 10, 1);
	assert_int_equal(mount_group_round(&v, 20 * K + 100, &g, NULL, NULL), 0);
	/* blocks 0 and 3 (a gap of 8 KiB) merge; 9 and 20 are 20 and 40 KiB away */
	assert_int_equal(v.n, 3);
	expect(&v, 0, 0, 4 * K);
	expect(&v, 1, 9 * K, K);
	expect(&v, 2, 20 * K, 100);
	util_extents_free(&v);
}

/* *ctx: a mask of the present blocks among the first 64 */
static bool present_fn(void *ctx, uint64_t off, uint64_t len)
{
	const uint64_t *mask = ctx;

	for (uint64_t b = off / K; b * K < off + len; b++)
		if (b >= 64 || !(*mask & (1ULL << b)))
			return false;
	return true;
}

static void test_fill_to_present(void **state)
{
	uint64_t mask = 1ULL << 14 | 1ULL << 20;
	struct mount_grouping g = { .merge_gap = 3 * K };
	struct util_extents v;

	(void)state;
	util_extents_init(&v);
	/* block 11: block 14 is present 3 blocks on (within the gap): 11..13 */
	add(&v, 11 * K, K);
	/* block 24: block 20 present 4 blocks back (beyond the gap): alone */
	add(&v, 24 * K, 10);
	assert_int_equal(mount_group_round(&v, 64 * K, &g, present_fn, &mask), 0);
	assert_int_equal(v.n, 2);
	expect(&v, 0, 11 * K, 3 * K);
	expect(&v, 1, 24 * K, K);
	/* both ways: block 17, with block 14 present 3 back and block 20 3 on: 15..19 */
	v.n = 0;
	add(&v, 17 * K, K);
	assert_int_equal(mount_group_round(&v, 64 * K, &g, present_fn, &mask), 0);
	assert_int_equal(v.n, 1);
	expect(&v, 0, 15 * K, 5 * K);
	util_extents_free(&v);
}

static void test_budget(void **state)
{
	struct mount_grouping g = { .merge_gap = 0, .max_gap = 64 * K, .budget = 13 * K };
	struct util_extents v;

	(void)state;
	util_extents_init(&v);
	/* gaps of 8, 5, 7 and 20 blocks (the last one above the cap on a bridged gap) */
	add(&v, 0, K);
	add(&v, 9 * K, K);
	add(&v, 15 * K, K);
	add(&v, 23 * K, K);
	add(&v, 24 * K + (64 * K) + K, K);
	assert_int_equal(mount_group_round(&v, 1000 * K, &g, NULL, NULL), 0);
	/* smallest first: 5 (budget 13 -> 8), 7 (8 -> 1); 8 no longer fits */
	assert_int_equal(v.n, 3);
	expect(&v, 0, 0, K);
	expect(&v, 1, 9 * K, 15 * K);
	expect(&v, 2, 24 * K + (64 * K) + K, K);
	assert_int_equal(g.budget, K);
	/* the budget is spent across rounds: 1 block left bridges a gap of one block */
	v.n = 0;
	add(&v, 0, K);
	add(&v, 3 * K, K);
	add(&v, 5 * K, K);
	assert_int_equal(mount_group_round(&v, 1000 * K, &g, NULL, NULL), 0);
	assert_int_equal(v.n, 2);
	expect(&v, 1, 3 * K, 3 * K);
	assert_int_equal(g.budget, 0);
	/* a huge budget still never bridges a gap above the cap */
	g.budget = UINT64_MAX;
	v.n = 0;
	add(&v, 0, K);
	add(&v, 2 * K + (64 * K), K);
	assert_int_equal(mount_group_round(&v, 1000 * K, &g, NULL, NULL), 0);
	assert_int_equal(v.n, 2);
	util_extents_free(&v);
}

/* The gap worth bridging follows the link's rate: ~0.3 ms per range is ~120 KiB on a fast
 * link whose rounds are nearly all per-range cost, ~5 KiB at 100 Mbit/s with 50 ms RTT. */
static void test_worth_gap(void **state)
{
	const struct mount_round_cost none[] = { { 5000, 1, 8192 }, { 6000, 9, 68 << 10 } };
	const struct mount_round_cost fast[] = { { 5000, 1, 8192 }, { 46000, 146, 2288 << 10 },
						 { 22000, 58, 808 << 10 } };
	const struct mount_round_cost slow[] = { { 111000, 1, 8192 },
						 { 299000, 146, 2288 << 10 },
						 { 196000, 58, 808 << 10 } };
	const struct mount_round_cost odd[] = { { 0, 0, UINT64_MAX }, { UINT64_MAX, UINT64_MAX, 1 } };
	uint64_t g;

	(void)state;
	assert_int_equal(mount_round_worth_gap(NULL, 0, 300), 0);
	assert_int_equal(mount_round_worth_gap(none, 2, 300), 0); /* no round tells the rate */
	g = mount_round_worth_gap(fast, 3, 300);
	assert_true(g >= (64u << 10) && g <= (256u << 10));
	g = mount_round_worth_gap(slow, 3, 300);
	assert_true(g >= 2048 && g <= 8192);
	/* extreme numbers: no overflow, no division by zero */
	(void)mount_round_worth_gap(odd, 2, 300);
	(void)mount_round_worth_gap(odd, 2, UINT64_MAX);
	assert_int_equal(mount_round_worth_gap(fast, 3, 0), 0);
}

/* A metadata zone: from meta_offset (block-aligned down) to the end, when that is at most half
 * of the image; none at 0 (mkfs 1.5), past the end, or spanning most of the image. */
static void test_metadata_zone(void **state)
{
	struct util_extent z;

	(void)state;
	assert_false(mount_metadata_zone(0, 100 * K, &z));
	assert_false(mount_metadata_zone(100 * K, 100 * K, &z));
	assert_false(mount_metadata_zone(UINT64_MAX, 100 * K, &z));
	assert_false(mount_metadata_zone(10 * K, 100 * K, &z));
	assert_true(mount_metadata_zone(480 * K, 549 * K, &z));
	assert_int_equal(z.offset, 480 * K);
	assert_int_equal(z.length, 69 * K);
	assert_true(mount_metadata_zone(60 * K + 100, 100 * K + 5, &z));
	assert_int_equal(z.offset, 60 * K);
	assert_int_equal(z.length, 40 * K + 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_align_merge),
		cmocka_unit_test(test_fill_to_present),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_worth_gap),
		cmocka_unit_test(test_metadata_zone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
