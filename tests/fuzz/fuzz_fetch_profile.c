// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the startup profile parser (fetch/profile.c): a refusal says why and leaves nothing
 * behind; what it accepts obeys the format's rules, formats (the text no longer than the
 * input and its missing last "\n") and parses back to the same profile, whose text is the
 * same again. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const struct profile *a, const struct profile *b)
{
	if (strcmp(a->digest, b->digest) != 0 || a->size != b->size || a->n != b->n)
		abort();
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].t_ms != b->v[i].t_ms || a->v[i].offset != b->v[i].offset ||
		    a->v[i].length != b->v[i].length)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct profile p, q;
	struct util_error err = UTIL_ERROR_INIT;
	char *text, *again;
	size_t len, len2;
	int r = profile_parse(data, size, &p, &err);

	if (r < 0) {
		if (err.code != r || !err.message[0] || p.v || p.n ||
		    (r != -EBADMSG && r != -EPROTONOSUPPORT && r != -EFBIG && r != -ENOMEM))
			abort();
		return 0;
	}
	if (!util_digest_valid(p.digest) || p.size == 0 || p.n > PROFILE_MAX_RANGES)
		abort();
	for (size_t i = 0; i < p.n; i++)
		if (!p.v[i].length || p.v[i].length > PROFILE_RANGE_MAX ||
		    p.v[i].offset + p.v[i].length > p.size || p.v[i].offset >= p.size ||
		    (i && p.v[i].t_ms < p.v[i - 1].t_ms))
			abort();
	r = profile_format(&p, &text, &len);
	if (r == -EFBIG && size == PROFILE_MAX_BYTES)
		goto out; /* an input of the largest size, its last "\n" missing */
	if (r < 0 || len != strlen(text) || len > size + 1)
		abort();
	if (profile_parse(text, len, &q, &err) < 0)
		abort();
	check_same(&p, &q);
	if (profile_bytes(&p) != profile_bytes(&q))
		abort();
	if (profile_format(&q, &again, &len2) < 0 || len2 != len || memcmp(text, again, len) != 0)
		abort();
	free(again);
	free(text);
	profile_free(&q);
out:
	profile_free(&p);
	return 0;
}
