// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the multipart/byteranges parser, fed in pieces whose sizes come from the input, plus
 * the other HTTP header parsers (line split, dates, ranges, boundary) on the same bytes. The
 * callback checks that every byte it gets lies inside the part that announced it, and that no
 * delimiter is passed on as payload. Input: 1 byte boundary length, boundary, 1 byte split
 * seed, body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int part(void *ctx, uint64_t off, const uint8_t *d, size_t len)
{
	struct oci_multipart *m = ctx;

	if (!len || off < m->first || off + len - 1 > m->last || off + len - 1 < off ||
	    memmem(d, len, m->delim, m->dlen))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_multipart m;
	char boundary[OCI_BOUNDARY_MAX + 1];
	const char *name, *value;
	uint64_t a, b, c;
	time_t t;
	size_t bl, pos, nl, vl;
	uint8_t seed;

	/* the header parsers, on the raw input */
	if (oci_header_split((const char *)data, size, &name, &nl, &value, &vl) == 0 &&
	    (!nl || name < (const char *)data || name + nl > (const char *)data + size ||
	     value < (const char *)data || value + vl > (const char *)data + size))
		abort();
	oci_http_date_parse((const char *)data, size, &t);
	oci_content_range_parse((const char *)data, size, &a, &b, &c);
	oci_retry_after_parse((const char *)data, size, 1700000000, &a);
	oci_rfc3339_parse((const char *)data, size, &t);
	oci_upload_range_parse((const char *)data, size, &a);
	if (oci_content_type_boundary((const char *)data, size, boundary, sizeof(boundary)) == 0 &&
	    strlen(boundary) > OCI_BOUNDARY_MAX)
		abort();

	if (size < 2)
		return 0;
	bl = data[0] % 40 + 1;
	if (size < 2 + bl)
		return 0;
	memcpy(boundary, data + 1, bl);
	boundary[bl] = 0;
	if (strlen(boundary) == 0)
		return 0;
	seed = data[1 + bl];
	pos = 2 + bl;
	if (oci_multipart_init(&m, boundary) < 0)
		abort();
	while (pos < size) {
		size_t n = (size_t)(seed % 17) + 1;

		seed = (uint8_t)(seed * 37 + 11);
		if (n > size - pos)
			n = size - pos;
		if (oci_multipart_feed(&m, data + pos, n, part, &m) < 0)
			break;
		pos += n;
	}
	oci_multipart_finish(&m);
	return 0;
}
