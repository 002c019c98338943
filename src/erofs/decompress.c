// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Decompression of one pcluster with the real libraries: lz4, MicroLZMA (liblzma), raw
 * deflate (zlib), zstd; plus the stored forms (shifted, interlaced). Compressed data sits at
 * the end of its pcluster after zero padding. We always decode a prefix of `outlen` bytes
 * (partial decoding), which is what reading the start of an extent needs.
 */
#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "erofs/internal.h"

#define LZMA_MAX_DICT (8u * Z_EROFS_PCLUSTER_MAX_SIZE)

static size_t skip_padding(const uint8_t *in, size_t inlen)
{
	size_t m = 0;

	while (m < inlen && !in[m])
		m++;
	return m;
}

static int do_lz4(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	int n;

	if (inlen > INT32_MAX || outlen > INT32_MAX)
		return -EUCLEAN;
	n = LZ4_decompress_safe_partial((const char *)in, (char *)out, (int)inlen, (int)outlen,
					(int)outlen);
	return n == (int)outlen ? 0 : -EUCLEAN;
}

static int do_lzma(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	lzma_stream strm = LZMA_STREAM_INIT;
	lzma_ret lr;
	int r = 0;

	if (inlen > UINT32_MAX || outlen > UINT32_MAX)
		return -EUCLEAN;
	strm.next_in = in;
	strm.avail_in = inlen;
	strm.next_out = out;
	strm.avail_out = outlen;
	lr = lzma_microlzma_decoder(&strm, inlen, outlen, false, LZMA_MAX_DICT);
	if (lr != LZMA_OK)
		return lr == LZMA_MEM_ERROR ? -ENOMEM : -EUCLEAN;
	lr = lzma_code(&strm, LZMA_FINISH);
	if (lr != LZMA_STREAM_END || strm.avail_out != 0)
		r = -EUCLEAN;
	lzma_end(&strm);
	return r;
}

static int do_deflate(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	z_stream strm = { 0 };
	int zr, r = 0;

	if (inlen > UINT32_MAX || outlen > UINT32_MAX)
		return -EUCLEAN;
	if (inflateInit2(&strm, -15) != Z_OK)
		return -ENOMEM;
	strm.next_in = (Bytef *)(uintptr_t)in;
	strm.avail_in = (uInt)inlen;
	strm.next_out = out;
	strm.avail_out = (uInt)outlen;
	zr = inflate(&strm, Z_SYNC_FLUSH);
	if ((zr != Z_OK && zr != Z_STREAM_END) || strm.total_out != outlen)
		r = -EUCLEAN;
	inflateEnd(&strm);
	return r;
}

static int do_zstd(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	ZSTD_inBuffer ib = { .src = in, .size = inlen };
	ZSTD_outBuffer ob = { .dst = out, .size = outlen };
	int r = 0;

	if (!ds)
		return -ENOMEM;
	ZSTD_DCtx_setParameter(ds, ZSTD_d_windowLogMax, 27);
	while (ob.pos < ob.size) {
		size_t zr = ZSTD_decompressStream(ds, &ob, &ib);

		if (ZSTD_isError(zr)) {
			r = -EUCLEAN;
			break;
		}
		if (zr == 0 || (ib.pos == ib.size && ob.pos < ob.size)) {
			/* frame finished or input exhausted before the prefix was complete */
			if (ob.pos < ob.size)
				r = -EUCLEAN;
			break;
		}
	}
	ZSTD_freeDStream(ds);
	return r;
}

int erofs_decompress(struct erofs_ctx *ctx, unsigned int alg, const uint8_t *in, size_t inlen,
		     uint8_t *out, size_t outlen, bool partial, uint64_t interlaced_off)
{
	size_t margin;

	(void)partial;
	if (outlen == 0)
		return 0;
	switch (alg) {
	case Z_EROFS_ALG_SHIFTED:
		if (outlen > inlen)
			return -EUCLEAN;
		memcpy(out, in, outlen);
		return 0;
	case Z_EROFS_ALG_INTERLACED: {
		size_t skip, right;

		if (outlen > inlen || inlen > ctx->bs)
			return -EUCLEAN;
		skip = interlaced_off & (ctx->bs - 1);
		right = MIN(ctx->bs - skip, outlen);
		if (skip + right > inlen)
			return -EUCLEAN;
		memcpy(out, in + skip, right);
		memcpy(out + right, in, outlen - right);
		return 0;
	}
	default:
		break;
	}
	margin = skip_padding(in, inlen);
	if (margin >= inlen)
		return -EUCLEAN;
	in += margin;
	inlen -= margin;
	switch (alg) {
	case Z_EROFS_ALG_LZ4:
		return do_lz4(in, inlen, out, outlen);
	case Z_EROFS_ALG_LZMA:
		return do_lzma(in, inlen, out, outlen);
	case Z_EROFS_ALG_DEFLATE:
		return do_deflate(in, inlen, out, outlen);
	case Z_EROFS_ALG_ZSTD:
		return do_zstd(in, inlen, out, outlen);
	default:
		return -EOPNOTSUPP;
	}
}
