// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the reply header callback (every registry and URL response's header lines go through
 * it, as libcurl hands them over: one line at a time, CRLF included): the input is split into
 * lines after each '\n'. Every field stays terminated inside its buffer, the callback either
 * takes the whole line or stops the transfer with overflow set, the status is < 1000. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TERMINATED(f) (strnlen((f), sizeof(f)) < sizeof(f))

static void check(const struct oci_resp *r)
{
	if (!TERMINATED(r->content_type) || !TERMINATED(r->content_range) ||
	    !TERMINATED(r->location) || !TERMINATED(r->www_auth) ||
	    !TERMINATED(r->retry_after) || !TERMINATED(r->etag) ||
	    !TERMINATED(r->last_modified) || !TERMINATED(r->docker_digest) ||
	    !TERMINATED(r->range) || !TERMINATED(r->accept_ranges))
		abort();
	if (r->status < 0 || r->status >= 10000)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_resp r;
	size_t pos = 0;

	if (size > (128u << 10))
		return 0;
	oci_resp_reset(&r);
	while (pos < size) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t len = nl ? (size_t)(nl - (data + pos)) + 1 : size - pos, got;
		/* an exact-size heap copy so ASan sees any read past the line */
		char *line = malloc(len);

		if (!line)
			return 0;
		memcpy(line, data + pos, len);
		got = oci_resp_header_cb(line, 1, len, &r);
		free(line);
		if (got != len && !(got == 0 && r.overflow))
			abort();
		check(&r);
		if (got != len)
			break; /* libcurl aborts the transfer */
		pos += len;
	}
	return 0;
}
