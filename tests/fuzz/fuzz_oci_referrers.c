// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz reading a referrers list (a registry's referrers API answer, or whatever a fallback tag
 * holds) and adding an artifact to it. The first line of the input is the Content-Type. What
 * parses: every entry passes the artifactType filter, the newest is one of them; an add either
 * refuses (the tag is left alone) or gives an index that parses, still lists every entry it
 * had, in order, and lists the new one last. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TYPE "application/vnd.lazyerofs.profile.v1"
#define NEW_DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void check_add(const uint8_t *data, size_t size, const char *ct)
{
	struct oci_descriptor d = { .media_type = OCI_MT_OCI_MANIFEST,
				    .digest = NEW_DIGEST,
				    .size = 777,
				    .artifact_type = TYPE,
				    .created = "2026-01-01T00:00:00.000Z" };
	struct oci_referrer *before = NULL, *after = NULL;
	size_t nb = 0, na = 0;
	char why[512], *out = NULL;
	bool added = false, listed = false;
	int r;

	r = oci_referrers_index_add(data, size, ct, &d, &out, &added, why, sizeof(why));
	if (r < 0) {
		if (out || added)
			abort();
		return;
	}
	if (oci_referrers_parse(data, size, ct, NULL, &before, &nb, why, sizeof(why)) < 0)
		abort(); /* the add accepted what the reader refuses */
	for (size_t i = 0; i < nb; i++)
		listed |= !strcmp(before[i].digest, NEW_DIGEST);
	if (added == listed)
		abort();
	if (added) {
		if (oci_referrers_parse(out, strlen(out), NULL, NULL, &after, &na, why,
					sizeof(why)) < 0 ||
		    na != nb + 1 || strcmp(after[nb].digest, NEW_DIGEST) ||
		    strcmp(after[nb].artifact_type, TYPE) || after[nb].size != 777)
			abort();
		for (size_t i = 0; i < nb; i++)
			if (strcmp(before[i].digest, after[i].digest) ||
			    before[i].size != after[i].size ||
			    strcmp(before[i].artifact_type, after[i].artifact_type) ||
			    strcmp(before[i].created, after[i].created))
				abort();
		free(out);
	}
	free(before);
	free(after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const filters[] = { NULL, TYPE };
	const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
	char ct[256] = "", why[512];

	if (nl) {
		memcpy(ct, data, (size_t)(nl - data));
		size -= (size_t)(nl - data) + 1;
		data = nl + 1;
	}
	for (size_t f = 0; f < sizeof(filters) / sizeof(filters[0]); f++) {
		struct oci_referrer *v = NULL;
		size_t n = 0, idx = SIZE_MAX;

		if (oci_referrers_parse(data, size, ct[0] ? ct : NULL, filters[f], &v, &n, why,
					sizeof(why)) < 0) {
			if (v)
				abort();
			continue;
		}
		for (size_t i = 0; i < n; i++)
			if (filters[f] && strcmp(v[i].artifact_type, filters[f]))
				abort();
		if (oci_referrers_newest(v, n, &idx) == 0 ? idx >= n : n != 0)
			abort();
		free(v);
	}
	check_add(data, size, ct[0] ? ct : NULL);
	return 0;
}
