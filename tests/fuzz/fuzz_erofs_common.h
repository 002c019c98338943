/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* A reader context over a fuzz input, without a superblock: 512-byte blocks, inodes from
 * offset 0, every compression algorithm declared. */
#ifndef LAZYEROFS_FUZZ_EROFS_COMMON_H
#define LAZYEROFS_FUZZ_EROFS_COMMON_H

#include <string.h>

#include "erofs/internal.h"

static inline void fuzz_ctx(struct erofs_ctx *ctx, struct erofs_io *io, const uint8_t *data,
			    size_t size, char *err, size_t errlen)
{
	erofs_io_from_memory(io, data, size);
	*ctx = (struct erofs_ctx){ .io = io, .err = err, .errlen = errlen };
	err[0] = 0;
	ctx->blkbits = 9;
	ctx->bs = 512;
	ctx->info.block_size = 512;
	ctx->available_algs = (1u << Z_EROFS_ALG_MAX) - 1;
}

#endif
