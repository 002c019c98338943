// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the compression indexes: the input's first byte picks the index form (legacy full,
 * compacted, extent records) and the rest is a metadata area with a compressed inode at
 * offset 0 whose header and indexes follow; every lcluster is mapped, the data read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_erofs_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct erofs_ctx ctx;
	struct erofs_inode vi;
	struct erofs_io io;
	struct util_error err = UTIL_ERROR_INIT;
	uint8_t *img;

	if (size < 1 + 32 + 8 || size > (1u << 20))
		return 0;
	img = malloc(size - 1);
	if (!img)
		return 0;
	memcpy(img, data + 1, size - 1);
	/* force a compact regular-file inode with a compressed layout */
	img[0] = (uint8_t)(((data[0] & 1) ? 1 : 3) << 1);
	img[1] = 0;
	img[4] = 0x80 | (img[4] & 0x7f);
	img[5] = 0x81;
	fuzz_ctx(&ctx, &io, img, size - 1, &err);
	if (data[0] & 2)
		ctx.blkbits = 12, ctx.bs = 4096;
	if (erofs_inode_load(&ctx, 0, &vi) >= 0 && vi.size <= (1u << 20)) {
		uint64_t step = (uint64_t)1 << vi.z_lclusterbits;
		uint8_t *buf = malloc(vi.size ? vi.size : 1);

		for (uint64_t la = 0; la < vi.size && la / step < 512; la += step) {
			struct erofs_map map;

			if (erofs_map_blocks(&ctx, &vi, la, &map) < 0)
				break;
		}
		if (buf)
			(void)erofs_read_data(&ctx, &vi, buf, vi.size, 0);
		free(buf);
	}
	erofs_ctx_done(&ctx);
	free(img);
	return 0;
}
