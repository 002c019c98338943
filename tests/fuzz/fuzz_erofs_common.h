/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* A reader context over a fuzz input, without a superblock: 512-byte blocks, inodes from
 * offset 0, every compression algorithm declared. */
#ifndef LAZYEROFS_FUZZ_EROFS_COMMON_H
#define LAZYEROFS_FUZZ_EROFS_COMMON_H

#include <string.h>

#include "erofs/internal.h"

static inline void fuzz_ctx(struct erofs_ctx *ctx, struct erofs_io *io, const uint8_t *data,
			    size_t size, struct util_error *err)
{
	erofs_io_from_memory(io, data, size);
	*ctx = (struct erofs_ctx){.io = io, .err = err};
	util_err_clear(err);
	ctx->blkbits = 9;
	ctx->bs = 512;
	ctx->info.block_size = 512;
	ctx->available_algs = (1u << Z_EROFS_ALG_MAX) - 1;
}

#endif
