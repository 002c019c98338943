// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the cache bitmap file's header (read back from disk, so untrusted): the input as is,
 * then with its sha256 repaired so mutations reach the field checks. A header that decodes
 * encodes back to exactly the same 512 bytes (nothing unchecked survives a decode). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "util/sha256.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *buf, size_t size)
{
	struct cache_header h;
	uint8_t out[CACHE_HEADER_SIZE];

	if (cache_header_decode(buf, size, &h) != 0)
		return;
	if (size < CACHE_HEADER_SIZE || h.key[CACHE_KEY_LEN] || strlen(h.key) != CACHE_KEY_LEN ||
	    !memchr(h.digest, 0, sizeof(h.digest)) || h.size == 0)
		abort();
	cache_header_encode(&h, out);
	if (memcmp(out, buf, CACHE_HEADER_SIZE) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (size > 2 * CACHE_HEADER_SIZE)
		return 0;
	/* an exact-size heap copy so ASan sees any read past the end */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	check(copy, size);
	if (size >= CACHE_HEADER_SIZE) {
		(void)util_sha256_buf(copy, CACHE_HEADER_SIZE - UTIL_SHA256_LEN,
				      copy + CACHE_HEADER_SIZE - UTIL_SHA256_LEN);
		check(copy, size);
	}
	free(copy);
	return 0;
}
