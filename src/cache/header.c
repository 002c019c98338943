// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The bitmap file's header: a fixed 512-byte record (little-endian fields, sha256 checksum at
 * the end) saying which blob the bits describe. Decoding treats the bytes as untrusted: any
 * damage is -EUCLEAN and the caller rebuilds the entry.
 */
#include "cache/cache.h"

#include <errno.h>
#include <string.h>

#include "util/endian.h"
#include "util/macro.h"

static const char header_magic[8] = {'L', 'Z', 'E', 'R', 'O', 'F', 'S', 'C'};

enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 8,
	OFF_HEADER_SIZE = 12,
	OFF_BLOCK_SIZE = 16,
	OFF_FLAGS = 20,
	OFF_SIZE = 24,
	OFF_NBLOCKS = 32,
	OFF_BITMAP_OFFSET = 40,
	OFF_KEY = 48,			      /* 64 bytes */
	OFF_DIGEST = OFF_KEY + CACHE_KEY_LEN, /* 72 bytes, NUL padded */
	OFF_RESERVED = OFF_DIGEST + UTIL_DIGEST_STR_LEN,
	OFF_CHECKSUM = CACHE_HEADER_SIZE - UTIL_SHA256_LEN,
};

_Static_assert(OFF_RESERVED <= OFF_CHECKSUM, "header fields overflow the header");
_Static_assert(CACHE_HEADER_SIZE <= CACHE_BITMAP_OFFSET, "header overlaps the bits");

uint64_t cache_bitmap_bytes(uint64_t size)
{
	return DIV_ROUND_UP(DIV_ROUND_UP(size, CACHE_BLOCK_SIZE), 64) * 8;
}

void cache_header_encode(const struct cache_header *h, uint8_t out[CACHE_HEADER_SIZE])
{
	memset(out, 0, CACHE_HEADER_SIZE);
	memcpy(out + OFF_MAGIC, header_magic, sizeof(header_magic));
	util_put_le(out + OFF_VERSION, h->version, 4);
	util_put_le(out + OFF_HEADER_SIZE, CACHE_HEADER_SIZE, 4);
	util_put_le(out + OFF_BLOCK_SIZE, h->block_size, 4);
	util_put_le(out + OFF_FLAGS, h->flags, 4);
	util_put_le(out + OFF_SIZE, h->size, 8);
	util_put_le(out + OFF_NBLOCKS, h->nblocks, 8);
	util_put_le(out + OFF_BITMAP_OFFSET, CACHE_BITMAP_OFFSET, 8);
	memcpy(out + OFF_KEY, h->key, CACHE_KEY_LEN);
	memcpy(out + OFF_DIGEST, h->digest, strnlen(h->digest, UTIL_DIGEST_STR_LEN - 1));
	/* sha256 cannot fail on a buffer short of allocation failure; a zero checksum then
	 * simply makes the header invalid, which leads to a rebuild, never to trust. */
	if (util_sha256_buf(out, OFF_CHECKSUM, out + OFF_CHECKSUM) < 0)
		memset(out + OFF_CHECKSUM, 0, UTIL_SHA256_LEN);
}

int cache_header_decode(const void *buf, size_t len, struct cache_header *ret)
{
	const uint8_t *p = buf;
	uint8_t sum[UTIL_SHA256_LEN];
	struct cache_header h = {0};
	const char *digest;
	size_t dlen;

	if (len < CACHE_HEADER_SIZE)
		return -EUCLEAN;
	if (memcmp(p + OFF_MAGIC, header_magic, sizeof(header_magic)) != 0)
		return -EUCLEAN;
	/* The version comes before anything else: another format may place its checksum and
	 * fields elsewhere, so nothing more of it is read. */
	if (util_get_le(p + OFF_VERSION, 4) != CACHE_FORMAT_VERSION)
		return -EPROTO;
	if (util_sha256_buf(p, OFF_CHECKSUM, sum) < 0)
		return -ENOMEM;
	if (memcmp(sum, p + OFF_CHECKSUM, UTIL_SHA256_LEN) != 0)
		return -EUCLEAN;
	h.version = (uint32_t)util_get_le(p + OFF_VERSION, 4);
	h.block_size = (uint32_t)util_get_le(p + OFF_BLOCK_SIZE, 4);
	h.flags = (uint32_t)util_get_le(p + OFF_FLAGS, 4);
	h.size = util_get_le(p + OFF_SIZE, 8);
	h.nblocks = util_get_le(p + OFF_NBLOCKS, 8);
	if (util_get_le(p + OFF_HEADER_SIZE, 4) != CACHE_HEADER_SIZE)
		return -EUCLEAN;
	if (h.block_size != CACHE_BLOCK_SIZE || (h.flags & ~(uint32_t)CACHE_FLAGS_KNOWN))
		return -EUCLEAN;
	if (h.size == 0 || h.nblocks != DIV_ROUND_UP(h.size, CACHE_BLOCK_SIZE))
		return -EUCLEAN;
	if (util_get_le(p + OFF_BITMAP_OFFSET, 8) != CACHE_BITMAP_OFFSET)
		return -EUCLEAN;
	if (!util_sha256_hex_valid((const char *)p + OFF_KEY, CACHE_KEY_LEN))
		return -EUCLEAN;
	memcpy(h.key, p + OFF_KEY, CACHE_KEY_LEN);
	digest = (const char *)p + OFF_DIGEST;
	dlen = strnlen(digest, UTIL_DIGEST_STR_LEN);
	if (dlen == UTIL_DIGEST_STR_LEN)
		return -EUCLEAN;
	for (size_t i = dlen; i < UTIL_DIGEST_STR_LEN; i++)
		if (digest[i])
			return -EUCLEAN;
	memcpy(h.digest, digest, dlen);
	if (dlen && !util_digest_valid(h.digest))
		return -EUCLEAN;
	for (size_t i = OFF_RESERVED; i < OFF_CHECKSUM; i++)
		if (p[i])
			return -EUCLEAN;
	*ret = h;
	return 0;
}
