// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the metadata map of a layer (oci/metamap.c): a map decodes to the ranges it
 * was made of (aligned to its unit, clamped to the blob); an image whose exact map is too long
 * gets a coarser one that still covers every range; anything malformed -- another version,
 * bad base64, a number cut short or past 64 bits, an empty range, a range past the blob, text
 * over the cap -- is refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oci/internal.h"

#define U OCI_METAMAP_UNIT

/* "1:" and the base64 of bin[0, len). */
static char *map_of(const uint8_t *bin, size_t len)
{
	char *b64 = oci_base64_encode(bin, len), *s = NULL;

	assert_non_null(b64);
	assert_true(asprintf(&s, "1:%s", b64) > 0);
	free(b64);
	return s;
}

static int decode(const char *s, uint64_t size, struct util_extents *v)
{
	util_extents_init(v);
	return oci_metamap_decode(s, size, v);
}

static void test_round_trip(void **state)
{
	const struct util_extent in[] = {
		{ 0, 1 }, { 1024, 100 }, { 3 * U + 5, U }, { 40 * U, 7 * U }, { 47 * U, 1 },
		{ 1000 * U, 3 }, { (1ULL << 40), U }, { (1ULL << 40) + 3 * U, 10 },
	};
	const uint64_t size = (1ULL << 40) + 3 * U + 100; /* not a multiple of the unit */
	const struct util_extent want[] = {
		{ 0, U }, { 3 * U, 2 * U }, { 40 * U, 8 * U }, { 1000 * U, U },
		{ 1ULL << 40, U }, { (1ULL << 40) + 3 * U, 100 },
	};
	struct util_extents v;
	char *s = NULL;

	assert_int_equal(oci_metamap_encode(in, sizeof(in) / sizeof(in[0]), size, &s), 0);
	assert_int_equal(strncmp(s, "1:", 2), 0);
	assert_int_equal(decode(s, size, &v), 0);
	util_extents_merge(&v, 0);
	assert_int_equal(v.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < v.n; i++) {
		assert_int_equal(v.v[i].offset, want[i].offset);
		assert_int_equal(v.v[i].length, want[i].length);
	}
	util_extents_free(&v);
	free(s);

	/* nothing listed: an empty map */
	assert_int_equal(oci_metamap_encode(NULL, 0, size, &s), 0);
	assert_string_equal(s, "1:");
	assert_int_equal(decode(s, size, &v), 0);
	assert_int_equal(v.n, 0);
	util_extents_free(&v);
	free(s);

	/* not sorted, or overlapping */
	assert_int_equal(oci_metamap_encode((struct util_extent[]){ { 2 * U, 1 }, { 0, 1 } }, 2,
					    size, &s), -EINVAL);
	assert_int_equal(oci_metamap_encode((struct util_extent[]){ { 0, 2 * U }, { U, 1 } }, 2,
					    size, &s), -EINVAL);
}

/* 400,000 ranges a unit apart do not fit exactly: the map bridges gaps, and still covers
 * every range within the cap. */
static void test_coarse(void **state)
{
	const size_t n = 400000;
	const uint64_t size = (uint64_t)n * 4 * U;
	struct util_extent *in = calloc(n, sizeof(*in));
	struct util_extents v;
	char *s = NULL;
	size_t j = 0;

	assert_non_null(in);
	for (size_t i = 0; i < n; i++)
		in[i] = (struct util_extent){ (uint64_t)i * 4 * U, U };
	assert_int_equal(oci_metamap_encode(in, n, size, &s), 0);
	assert_true(strlen(s) <= OCI_METAMAP_MAX_TEXT);
	assert_int_equal(decode(s, size, &v), 0);
	assert_true(v.n < n);
	for (size_t i = 0; i < n; i++) {
		while (j < v.n && v.v[j].offset + v.v[j].length <= in[i].offset)
			j++;
		assert_true(j < v.n && v.v[j].offset <= in[i].offset &&
			    v.v[j].offset + v.v[j].length >= in[i].offset + in[i].length);
	}
	util_extents_free(&v);
	free(s);
	free(in);
}

static void test_malformed(void **state)
{
	const uint64_t size = 100 * U;
	struct util_extents v;
	char *s, *big;

	assert_int_equal(decode("2:AQI=", size, &v), -EPROTONOSUPPORT);
	assert_int_equal(decode("AQI=", size, &v), -EPROTONOSUPPORT);
	assert_int_equal(decode("1:AQI", size, &v), -EBADMSG);  /* not a base64 length */
	assert_int_equal(decode("1:AQ!=", size, &v), -EBADMSG); /* not base64 */
	util_extents_free(&v);

	/* gap 1, length 2 units: [U, 3U) */
	assert_int_equal(decode("1:AQI=", size, &v), 0);
	assert_int_equal(v.n, 1);
	assert_int_equal(v.v[0].offset, U);
	assert_int_equal(v.v[0].length, 2 * U);
	util_extents_free(&v);

	s = map_of((const uint8_t[]){ 1, 0 }, 2); /* an empty range */
	assert_int_equal(decode(s, size, &v), -EBADMSG);
	free(s);
	s = map_of((const uint8_t[]){ 99, 2 }, 2); /* past the blob's 100 units */
	assert_int_equal(decode(s, size, &v), -EBADMSG);
	free(s);
	s = map_of((const uint8_t[]){ 98, 2 }, 2); /* up to its end: fine */
	assert_int_equal(decode(s, size, &v), 0);
	assert_int_equal(v.v[v.n - 1].offset + v.v[v.n - 1].length, size);
	util_extents_free(&v);
	free(s);
	s = map_of((const uint8_t[]){ 1, 0x80 }, 2); /* cut short */
	assert_int_equal(decode(s, size, &v), -EBADMSG);
	free(s);
	s = map_of((const uint8_t[]){ 1 }, 1); /* a gap without a length */
	assert_int_equal(decode(s, size, &v), -EBADMSG);
	free(s);
	/* eleven bytes: past 64 bits */
	s = map_of((const uint8_t[]){ 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
				      0x01, 1 },
		   12);
	assert_int_equal(decode(s, size, &v), -EBADMSG);
	free(s);
	/* the largest gap there is: past any blob, without wrapping around */
	s = map_of((const uint8_t[]){ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
				      1 },
		   11);
	assert_int_equal(decode(s, UINT64_MAX - U, &v), -EBADMSG);
	free(s);
	/* two ranges, the second reaching past the end by its length alone */
	s = map_of((const uint8_t[]){ 0, 50, 0, 51 }, 4);
	assert_int_equal(decode(s, size, &v), -EBADMSG);
	free(s);
	util_extents_free(&v);

	big = malloc(OCI_METAMAP_MAX_TEXT + 8);
	assert_non_null(big);
	memcpy(big, "1:", 2);
	memset(big + 2, 'A', OCI_METAMAP_MAX_TEXT + 2);
	big[OCI_METAMAP_MAX_TEXT + 4] = 0;
	assert_int_equal(decode(big, size, &v), -EFBIG);
	util_extents_free(&v);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_coarse),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
