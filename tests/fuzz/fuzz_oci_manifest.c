// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz manifest and index parsing, then platform and layer selection on what parsed; and the
 * same bytes as an image config (its platform). The first line of the input is used as the
 * Content-Type. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
	char ct[256] = "", why[1024];
	struct oci_manifest *m = NULL;
	struct oci_platform want;
	size_t idx;

	if (nl) {
		memcpy(ct, data, (size_t)(nl - data));
		size -= (size_t)(nl - data) + 1;
		data = nl + 1;
	}
	if (oci_config_platform(data, size, &want) == 0 && (!want.os[0] || !want.arch[0]))
		abort();
	if (oci_manifest_parse(data, size, ct[0] ? ct : NULL, &m, why, sizeof(why)) < 0)
		return 0;
	if (m->kind == OCI_KIND_INDEX) {
		static const char *const plats[] = { "linux/amd64", "linux/arm64/v8", "linux/arm",
						     "windows/amd64" };

		for (size_t i = 0; i < sizeof(plats) / sizeof(plats[0]); i++) {
			if (oci_platform_parse(plats[i], &want) < 0)
				abort();
			if (oci_platform_select(m, &want, &idx, why, sizeof(why)) == 0 && idx >= m->n)
				abort();
		}
	} else {
		for (long layer = -1; layer < 3; layer++) {
			if (oci_layer_select(m, NULL, layer, &idx, why, sizeof(why)) == 0) {
				if (idx >= m->n)
					abort();
				oci_layer_check_media_type(m->items[idx].media_type, why, sizeof(why));
			}
		}
		if (m->n && oci_layer_select(m, m->items[m->n - 1].digest, -1, &idx, why,
					     sizeof(why)) != 0)
			abort();
	}
	oci_manifest_free(m);
	return 0;
}
