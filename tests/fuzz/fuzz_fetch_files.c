// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the daemon's file index parser (fetch/files.c) with the blob size the input claims (so
 * that mutations get past that check), then check the lookups against the parsed ranges:
 * every range's first and last byte lead back to it, following a file never leaves it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_files *f = NULL;
	struct util_extent out[4];
	uint64_t blob = 0, total = 0;
	struct util_error err = UTIL_ERROR_INIT;

	if (size >= 16)
		for (int i = 0; i < 8; i++)
			blob |= (uint64_t)data[8 + i] << (8 * i);
	if (fetch_files_parse(data, size, blob, &f, &err) < 0)
		return 0;
	for (uint32_t file = 0; file < fetch_files_count(f); file++) {
		uint32_t n, got_file, got_range;
		const struct util_extent *v = fetch_files_ranges(f, file, &n);
		uint64_t bytes = 0;

		if (!v || n == 0)
			abort();
		for (uint32_t k = 0; k < n; k++) {
			uint64_t ends[2] = {v[k].offset, v[k].offset + v[k].length - 1};

			if (!v[k].length || v[k].offset + v[k].length > blob)
				abort();
			bytes += v[k].length;
			for (int e = 0; e < 2; e++) {
				int m;

				if (fetch_files_find(f, ends[e], &got_file, &got_range) < 0 ||
				    got_file != file || got_range != k)
					abort();
				m = fetch_files_follow(f, ends[e], UINT64_MAX, out, 4);
				if (m < 1 || m > 4 || out[0].offset != ends[e] ||
				    (uint32_t)m > n - k)
					abort();
			}
		}
		if (bytes != fetch_files_data_bytes(f, file) ||
		    fetch_files_data_end(f, file) != v[n - 1].offset + v[n - 1].length)
			abort();
		total += bytes;
	}
	if (total > blob)
		abort(); /* the ranges are disjoint */
	fetch_files_free(f);
	return 0;
}
