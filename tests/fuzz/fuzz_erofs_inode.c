// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz inode decoding and everything stored with a record: the input is a metadata area with
 * the inode at offset 0; decode it, compute its metadata extent, map and read its data
 * (flat, inline, chunked, compressed with any index form, decompression included). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "fuzz_erofs_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct erofs_ctx ctx;
	struct erofs_inode vi;
	struct erofs_io io;
	struct util_error err = UTIL_ERROR_INIT;

	fuzz_ctx(&ctx, &io, data, size, &err);
	if (erofs_inode_load(&ctx, 0, &vi) >= 0) {
		for (uint64_t la = 0; la < vi.size && la < (64u << 10); la += 4096) {
			struct erofs_map map;

			if (erofs_map_blocks(&ctx, &vi, la, &map) < 0)
				break;
		}
		if (vi.size <= (256u << 10) && !S_ISCHR(vi.mode) && !S_ISBLK(vi.mode)) {
			uint8_t *buf = malloc(vi.size ? vi.size : 1);

			if (buf) {
				(void)erofs_read_data(&ctx, &vi, buf, vi.size, 0);
				free(buf);
			}
		}
	}
	erofs_ctx_done(&ctx);
	return 0;
}
