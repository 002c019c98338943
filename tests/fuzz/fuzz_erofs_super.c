// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the superblock decoder: erofs_probe over the input as a whole image, with and without
 * a repaired checksum (so mutations get past the crc32c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "erofs/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct erofs_info info;
	struct erofs_io io;
	struct util_error err = UTIL_ERROR_INIT;
	uint8_t *copy;

	erofs_io_from_memory(&io, data, size);
	(void)erofs_probe(&io, &info, &err);
	if (size < EROFS_SB_OFFSET + EROFS_SB_BASE_SIZE || size > (1u << 20))
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	{
		unsigned int bits = copy[EROFS_SB_OFFSET + 12];
		size_t bs = bits >= 9 && bits <= 12 ? (size_t)1 << bits : 4096;
		size_t clen = bs > EROFS_SB_OFFSET ? bs - EROFS_SB_OFFSET : bs;
		uint32_t crc;

		if (EROFS_SB_OFFSET + clen <= size) {
			memset(copy + EROFS_SB_OFFSET + 4, 0, 4);
			crc = erofs_crc32c(~0u, copy + EROFS_SB_OFFSET, clen);
			memcpy(copy + EROFS_SB_OFFSET + 4, &crc, 4);
		}
	}
	erofs_io_from_memory(&io, copy, size);
	(void)erofs_probe(&io, &info, &err);
	free(copy);
	return 0;
}
