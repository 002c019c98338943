// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the file index: building (disjoint ranges, the size cap keeps the smallest
 * files, bounded memory while collecting), the parser's refusals of malformed or hostile
 * indexes, and the lookups (which file holds an offset, its bytes, its end, following it). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fetch/files.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static struct fetch_files *build_parse(struct fetch_files_builder *b, uint64_t blob,
				       struct fetch_files_build_stats *st)
{
	struct fetch_files *f = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	struct util_error err = UTIL_ERROR_INIT;

	assert_int_equal(fetch_files_builder_finish(b, &buf, &len, st), 0);
	if (fetch_files_parse(buf, len, blob, &f, &err) < 0)
		fail_msg("parse: %s", err.message);
	free(buf);
	fetch_files_builder_free(b);
	return f;
}

static void add(struct fetch_files_builder *b, const struct util_extent *v, size_t n)
{
	assert_int_equal(fetch_files_builder_add(b, v, n), 0);
}

static void test_roundtrip_and_lookups(void **state)
{
	struct fetch_files_builder *b;
	struct fetch_files_build_stats st;
	struct fetch_files *f;
	struct util_extent out[8];
	const struct util_extent *v;
	uint32_t file, range, n;

	(void)state;
	assert_int_equal(fetch_files_builder_new(100 * MiB, 0, &b), 0);
	/* file 0: two ranges, the second before the first in the blob */
	add(b, (struct util_extent[]){{40 * MiB, 8 * KiB}, {10 * MiB, 4 * KiB}}, 2);
	/* an empty / inline-only file: no number */
	add(b, NULL, 0);
	/* file 1: one range, adjacent to file 0's first one (not merged across files) */
	add(b, (struct util_extent[]){{40 * MiB + 8 * KiB, 4 * KiB}}, 1);
	/* file 2: three ranges */
	add(b, (struct util_extent[]){{1 * MiB, 1 * MiB}, {5 * MiB, 1 * MiB}, {3 * MiB, 100}}, 3);
	f = build_parse(b, 100 * MiB, &st);
	assert_int_equal(st.files, 3);
	assert_int_equal(st.ranges, 6);
	assert_int_equal(st.empty_files, 1);
	assert_int_equal(st.dropped_files, 0);
	assert_int_equal(fetch_files_count(f), 3);
	assert_int_equal(fetch_files_nranges(f), 6);

	assert_int_equal(fetch_files_find(f, 40 * MiB + 5, &file, &range), 0);
	assert_int_equal(file, 0);
	assert_int_equal(range, 0);
	assert_int_equal(fetch_files_find(f, 10 * MiB + 4 * KiB - 1, &file, &range), 0);
	assert_int_equal(file, 0);
	assert_int_equal(range, 1);
	assert_int_equal(fetch_files_find(f, 40 * MiB + 8 * KiB, &file, &range), 0);
	assert_int_equal(file, 1);
	assert_int_equal(range, 0);
	assert_int_equal(fetch_files_find(f, 3 * MiB + 99, &file, &range), 0);
	assert_int_equal(file, 2);
	assert_int_equal(range, 2);
	/* gaps, before the first, after the last */
	assert_int_equal(fetch_files_find(f, 3 * MiB + 100, &file, &range), -ENOENT);
	assert_int_equal(fetch_files_find(f, 0, &file, &range), -ENOENT);
	assert_int_equal(fetch_files_find(f, 99 * MiB, &file, &range), -ENOENT);
	assert_int_equal(fetch_files_find(f, 10 * MiB + 4 * KiB, &file, &range), -ENOENT);

	assert_int_equal(fetch_files_data_bytes(f, 0), 12 * KiB);
	assert_int_equal(fetch_files_data_bytes(f, 2), 2 * MiB + 100);
	assert_int_equal(fetch_files_data_end(f, 0), 10 * MiB + 4 * KiB);
	assert_int_equal(fetch_files_data_end(f, 2), 3 * MiB + 100);
	v = fetch_files_ranges(f, 2, &n);
	assert_int_equal(n, 3);
	assert_int_equal(v[1].offset, 5 * MiB);
	assert_null(fetch_files_ranges(f, 3, &n));
	assert_int_equal(n, 0);

	/* follow from the middle of file 2's first range: its rest, then the next ones */
	assert_int_equal(fetch_files_follow(f, 1 * MiB + 512 * KiB, 100 * MiB, out, 8), 3);
	assert_int_equal(out[0].offset, 1 * MiB + 512 * KiB);
	assert_int_equal(out[0].length, 512 * KiB);
	assert_int_equal(out[1].offset, 5 * MiB);
	assert_int_equal(out[2].offset, 3 * MiB);
	assert_int_equal(out[2].length, 100);
	/* a byte cap cuts the last one; a range cap stops early */
	assert_int_equal(fetch_files_follow(f, 1 * MiB, 1 * MiB + 4 * KiB, out, 8), 2);
	assert_int_equal(out[1].length, 4 * KiB);
	assert_int_equal(fetch_files_follow(f, 1 * MiB, 100 * MiB, out, 1), 1);
	assert_int_equal(fetch_files_follow(f, 7 * MiB, 100 * MiB, out, 8), -ENOENT);
	/* the last range of file 0 ends the file: following stops there */
	assert_int_equal(fetch_files_follow(f, 10 * MiB, 100 * MiB, out, 8), 1);
	fetch_files_free(f);
}

/* A blob byte in several files' ranges (shared fragments, deduplicated extents) stays with
 * the first file; the others keep the rest of their ranges or lose their number. */
static void test_overlaps_trimmed(void **state)
{
	struct fetch_files_builder *b;
	struct fetch_files_build_stats st;
	struct fetch_files *f;
	const struct util_extent *v;
	uint32_t file, n;

	(void)state;
	assert_int_equal(fetch_files_builder_new(1 * MiB, 0, &b), 0);
	add(b, (struct util_extent[]){{0, 8 * KiB}}, 1);
	add(b, (struct util_extent[]){{4 * KiB, 8 * KiB}}, 1);		      /* keeps 8-12K */
	add(b, (struct util_extent[]){{1 * KiB, 2 * KiB}}, 1);		      /* inside file 0 */
	add(b, (struct util_extent[]){{64 * KiB, 4 * KiB}, {0, 4 * KiB}}, 2); /* one left */
	f = build_parse(b, 1 * MiB, &st);
	assert_int_equal(st.files, 3);
	assert_int_equal(st.empty_files, 1);
	assert_int_equal(st.trimmed_bytes, 4 * KiB + 2 * KiB + 4 * KiB);
	v = fetch_files_ranges(f, 1, &n);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].offset, 8 * KiB);
	assert_int_equal(v[0].length, 4 * KiB);
	assert_int_equal(fetch_files_find(f, 2 * KiB, &file, NULL), 0);
	assert_int_equal(file, 0);
	assert_int_equal(fetch_files_data_bytes(f, 2), 4 * KiB);
	fetch_files_free(f);
}

/* Over the cap, the smallest files stay (the ones whole-file fetches are for), in their
 * order; collecting never holds much more than twice the cap. */
static void test_cap_keeps_smallest(void **state)
{
	struct fetch_files_builder *b;
	struct fetch_files_build_stats st;
	struct fetch_files *f;
	const size_t cap = 32 + 4 * 100 + 16 * 100; /* 100 one-range files */

	(void)state;
	assert_int_equal(fetch_files_builder_new(1ull << 40, cap, &b), 0);
	for (uint64_t i = 0; i < 10000; i++) {
		/* sizes 1..10000 blocks, in a scrambled order */
		uint64_t size = ((i * 7919) % 10000 + 1) * 4 * KiB;

		add(b, (struct util_extent[]){{i << 26, size}}, 1);
	}
	f = build_parse(b, 1ull << 40, &st);
	assert_int_equal(st.files, 100);
	assert_int_equal(st.dropped_files, 9900);
	for (uint32_t i = 0; i < 100; i++) {
		assert_true(fetch_files_data_bytes(f, i) <= 100 * 4 * KiB);
		if (i)
			assert_true(fetch_files_ranges(f, i, &(uint32_t){0})->offset >
				    fetch_files_ranges(f, i - 1, &(uint32_t){0})->offset);
	}
	fetch_files_free(f);
}

static void test_builder_refuses_outside(void **state)
{
	struct fetch_files_builder *b;

	(void)state;
	assert_int_equal(fetch_files_builder_new(1 * MiB, 0, &b), 0);
	assert_int_equal(fetch_files_builder_add(b, (struct util_extent[]){{MiB - 1, 2}}, 1),
			 -EINVAL);
	assert_int_equal(fetch_files_builder_add(b, (struct util_extent[]){{0, 0}}, 1), -EINVAL);
	assert_int_equal(fetch_files_builder_add(b, (struct util_extent[]){{UINT64_MAX - 1, 4}}, 1),
			 -EINVAL);
	fetch_files_builder_free(b);
}

/* An encoded two-file index to damage. */
static size_t good(uint8_t **ret)
{
	struct fetch_files_builder *b;
	size_t len;

	assert_int_equal(fetch_files_builder_new(1 * MiB, 0, &b), 0);
	add(b, (struct util_extent[]){{0, 4 * KiB}, {16 * KiB, 4 * KiB}}, 2);
	add(b, (struct util_extent[]){{8 * KiB, 4 * KiB}}, 1);
	assert_int_equal(fetch_files_builder_finish(b, ret, &len, NULL), 0);
	fetch_files_builder_free(b);
	assert_int_equal(len, 32 + 8 + 48);
	return len;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int parse(const uint8_t *buf, size_t len)
{
	struct fetch_files *f = NULL;
	struct util_error err = UTIL_ERROR_INIT;
	int r = fetch_files_parse(buf, len, 1 * MiB, &f, &err);

	if (r < 0)
		assert_true(err.message[0] != 0);
	fetch_files_free(f);
	return r;
}

static void test_parser_refuses(void **state)
{
	uint8_t *g, *x;
	size_t len = good(&g);

	(void)state;
	x = malloc(FETCH_FILES_MAX_BYTES + 16);
	assert_non_null(x);
#define MUT(stmt, want)                                                                            \
	do {                                                                                       \
		memcpy(x, g, len);                                                                 \
		stmt;                                                                              \
		assert_int_equal(parse(x, len), want);                                             \
	} while (0)
	MUT((void)0, 0);
	MUT(x[0] ^= 1, -EBADMSG);			/* magic */
	MUT(x[4] = 2, -EBADMSG);			/* version */
	MUT(x[6] = 40, -EBADMSG);			/* header size */
	MUT(x[24] = 1, -EBADMSG);			/* reserved */
	MUT(put64(x + 8, 2 * MiB), -EBADMSG);		/* another blob */
	MUT(put32(x + 16, 3), -EBADMSG);		/* more files than the bytes hold */
	MUT(put32(x + 20, 0xffffffffu), -EBADMSG);	/* a huge count */
	MUT(put32(x + 32, 0), -EBADMSG);		/* a file without ranges */
	MUT(put32(x + 32, 3), -EBADMSG);		/* counts beyond the ranges */
	MUT(put32(x + 36, 0xffffffffu), -EBADMSG);	/* a count that would wrap a sum */
	MUT(put64(x + 40 + 8, 0), -EBADMSG);		/* an empty range */
	MUT(put64(x + 40, MiB - 1), -EBADMSG);		/* a range past the blob's end */
	MUT(put64(x + 40, UINT64_MAX - 100), -EBADMSG); /* ... wrapping */
	MUT(put64(x + 72, 2 * KiB), -EBADMSG);		/* file 1 overlaps file 0 */
	MUT(put64(x + 56, 2 * KiB), -EBADMSG);		/* file 0 overlaps itself */
	assert_int_equal(parse(g, len - 1), -EBADMSG);	/* truncated */
	assert_int_equal(parse(g, 31), -EBADMSG);
	assert_int_equal(parse(g, 0), -EBADMSG);
	memset(x, 0, FETCH_FILES_MAX_BYTES + 16);
	assert_int_equal(parse(x, FETCH_FILES_MAX_BYTES + 8), -EFBIG);
	/* one file of 2 ranges with padding not zero */
	{
		uint8_t one[32 + 8 + 32] = {0};
		struct fetch_files *f = NULL;

		put32(one, FETCH_FILES_MAGIC);
		one[4] = 1;
		one[6] = 32;
		put64(one + 8, 1 * MiB);
		put32(one + 16, 1);
		put32(one + 20, 2);
		put32(one + 32, 2);
		put64(one + 40, 0);
		put64(one + 48, 4096);
		put64(one + 56, 8192);
		put64(one + 64, 4096);
		assert_int_equal(fetch_files_parse(one, sizeof(one), 1 * MiB, &f, NULL), 0);
		assert_int_equal(fetch_files_count(f), 1);
		fetch_files_free(f);
		one[36] = 1;
		assert_int_equal(parse(one, sizeof(one)), -EBADMSG);
	}
	/* an empty index is fine */
	{
		uint8_t zero[32] = {0};
		struct fetch_files *f = NULL;

		put32(zero, FETCH_FILES_MAGIC);
		zero[4] = 1;
		zero[6] = 32;
		put64(zero + 8, 1 * MiB);
		assert_int_equal(fetch_files_parse(zero, sizeof(zero), 1 * MiB, &f, NULL), 0);
		assert_int_equal(fetch_files_count(f), 0);
		assert_int_equal(fetch_files_find(f, 0, NULL, NULL), -ENOENT);
		fetch_files_free(f);
	}
#undef MUT
	free(x);
	free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_and_lookups),
	    cmocka_unit_test(test_overlaps_trimmed),
	    cmocka_unit_test(test_cap_keeps_smallest),
	    cmocka_unit_test(test_builder_refuses_outside),
	    cmocka_unit_test(test_parser_refuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
