// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the metadata map of a layer (the annotation a manifest carries): the first 8 bytes are
 * the blob's size, the rest the annotation's text. A map that decodes lists ranges within
 * the blob, each aligned to the unit but the one reaching its end, sorted and disjoint;
 * encoded again, it decodes to the same ranges. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct util_extents a, b;
	uint64_t blob = 0;
	char *text, *again = NULL;

	if (size < sizeof(blob))
		return 0;
	memcpy(&blob, data, sizeof(blob));
	text = strndup((const char *)data + sizeof(blob), size - sizeof(blob));
	if (!text)
		return 0;
	util_extents_init(&a);
	util_extents_init(&b);
	if (oci_metamap_decode(text, blob, &a) < 0)
		goto out;
	for (size_t i = 0; i < a.n; i++) {
		const struct util_extent *e = &a.v[i];

		if (!e->length || e->offset % OCI_METAMAP_UNIT || e->offset > blob ||
		    e->length > blob - e->offset ||
		    (e->length % OCI_METAMAP_UNIT && e->offset + e->length != blob) ||
		    (i && e->offset < a.v[i - 1].offset + a.v[i - 1].length))
			abort();
	}
	util_extents_merge(&a, 0);
	if (oci_metamap_encode(a.v, a.n, blob, &again) < 0)
		goto out;
	if (oci_metamap_decode(again, blob, &b) < 0)
		abort();
	util_extents_merge(&b, 0);
	if (a.n != b.n || (a.n && memcmp(a.v, b.v, a.n * sizeof(*a.v)) != 0))
		abort();
out:
	free(again);
	free(text);
	util_extents_free(&a);
	util_extents_free(&b);
	return 0;
}
