// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the record of an unfinished upload (read back by a later push): a record that parses
 * has terminated fields within their sizes, an http(s) URL and an offset within its size,
 * and formats into a record that parses to the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_upload_record a, b;
	char *s = NULL;

	if (oci_upload_record_parse(data, size, &a) < 0)
		return 0;
	if (strnlen(a.url, sizeof(a.url)) == sizeof(a.url) ||
	    strnlen(a.registry, sizeof(a.registry)) == sizeof(a.registry) ||
	    strnlen(a.repository, sizeof(a.repository)) == sizeof(a.repository) ||
	    a.offset > a.size || (strncmp(a.url, "http://", 7) && strncmp(a.url, "https://", 8)))
		abort();
	if (oci_upload_record_format(&a, &s) < 0)
		return 0;
	if (oci_upload_record_parse(s, strlen(s), &b) < 0 || memcmp(&a, &b, sizeof(a)) != 0)
		abort();
	free(s);
	return 0;
}
