// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the whole metadata walk over a memory image (checksum repaired so mutations of the
 * first block get through), exact and aligned, with a prefetch hook that checks its ranges
 * and a read hook that checks every read was prefetched first (whatever the image); presence
 * is the harness's own record, as on a mount; every regular file's data ranges (on_file)
 * must lie in the image, non-empty and merged. A walk whose prefetch makes only the first
 * listed range present per call (as a pipelined io may return early) ends as the other. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "erofs/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t image_size;
static uint8_t *present; /* per 512 bytes: prefetched */
static bool partial;     /* make only the first listed range present */

static int check_prefetch(void *ctx, const struct util_extent *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!v[i].length || v[i].offset + v[i].length > image_size)
			abort();
		if (partial && i > 0)
			continue;
		for (uint64_t g = v[i].offset >> 9; g << 9 < v[i].offset + v[i].length; g++)
			present[g] = 1;
	}
	return 0;
}

static bool is_present(void *ctx, uint64_t off, uint64_t len)
{
	if (off + len > image_size || off + len < off)
		abort(); /* the walker never asks about bytes outside the image */
	for (uint64_t g = off >> 9; g << 9 < off + len; g++)
		if (!present[g])
			return false;
	return true;
}

static int read_mem(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	if (off + len > image_size || off + len < off)
		abort(); /* the walker must never read outside the image */
	for (uint64_t g = off >> 9; g << 9 < off + len; g++)
		if (!present[g])
			abort(); /* nor anything it did not prefetch first */
	memcpy(buf, (const uint8_t *)ctx + off, len);
	return 0;
}

static int check_file(void *ctx, uint64_t nid, uint64_t size, const struct util_extent *v,
		      size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!v[i].length || v[i].offset + v[i].length > image_size ||
		    v[i].offset + v[i].length < v[i].offset)
			abort();
		if (i && v[i].offset == v[i - 1].offset + v[i - 1].length)
			abort(); /* adjacent ranges are merged */
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct erofs_walk_opts opts = { .merge_gap = 4096, .max_inodes = 100000,
					.on_file = check_file };
	struct erofs_walk_stats st;
	struct util_extents ext, pext;
	struct erofs_io io;
	int r, pr;
	struct util_error err = UTIL_ERROR_INIT;
	uint8_t *img;

	if (size > (4u << 20))
		return 0;
	img = malloc(size ? size : 1);
	present = calloc(size / 512 + 1, 1);
	if (!img || !present) {
		free(img);
		free(present);
		return 0;
	}
	memcpy(img, data, size);
	if (size >= EROFS_SB_OFFSET + EROFS_SB_BASE_SIZE) {
		unsigned int bits = img[EROFS_SB_OFFSET + 12];
		size_t bs = bits >= 9 && bits <= 12 ? (size_t)1 << bits : 4096;
		size_t clen = bs > EROFS_SB_OFFSET ? bs - EROFS_SB_OFFSET : bs;
		uint32_t crc;

		if (EROFS_SB_OFFSET + clen <= size) {
			memset(img + EROFS_SB_OFFSET + 4, 0, 4);
			crc = erofs_crc32c(~0u, img + EROFS_SB_OFFSET, clen);
			memcpy(img + EROFS_SB_OFFSET + 4, &crc, 4);
		}
	}
	image_size = size;
	io = (struct erofs_io){ .ctx = img, .size = size, .read = read_mem,
				.present = is_present, .prefetch = check_prefetch };
	util_extents_init(&ext);
	util_extents_init(&pext);
	r = erofs_walk(&io, &opts, &ext, &st, &err);
	if (r == 0) {
		for (size_t i = 0; i < ext.n; i++)
			if (ext.v[i].offset + ext.v[i].length > size)
				abort();
	}
	memset(present, 0, size / 512 + 1);
	partial = true;
	pr = erofs_walk(&io, &opts, &pext, &st, &err);
	partial = false;
	/* the same items are processed in another order: both fail, or both give one result */
	if ((r == 0) != (pr == 0))
		abort();
	if (r == 0 && (ext.n != pext.n || memcmp(ext.v, pext.v, ext.n * sizeof(*ext.v))))
		abort();
	util_extents_free(&pext);
	util_extents_free(&ext);
	opts.align = 1;
	opts.merge_gap = 0;
	memset(present, 0, size / 512 + 1);
	(void)erofs_walk(&io, &opts, &ext, &st, &err);
	util_extents_free(&ext);
	free(present);
	free(img);
	return 0;
}
