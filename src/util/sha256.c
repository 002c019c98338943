// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* sha256 wrapper over libcrypto's EVP interface. */
#include "util/sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cleanup.h"

struct util_sha256 {
	EVP_MD_CTX *ctx;
};

int util_sha256_new(struct util_sha256 **ret)
{
	struct util_sha256 *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->ctx = EVP_MD_CTX_new();
	if (!s->ctx || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
		util_sha256_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

int util_sha256_update(struct util_sha256 *s, const void *data, size_t len)
{
	return EVP_DigestUpdate(s->ctx, data, len) == 1 ? 0 : -EIO;
}

int util_sha256_final(struct util_sha256 *s, uint8_t out[UTIL_SHA256_LEN])
{
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(s->ctx, out, &n) != 1 || n != UTIL_SHA256_LEN)
		return -EIO;
	return 0;
}

void util_sha256_free(struct util_sha256 *s)
{
	if (!s)
		return;
	EVP_MD_CTX_free(s->ctx);
	free(s);
}

DEFINE_CLEANUP_FUNC(struct util_sha256, util_sha256_free);

int util_sha256_buf(const void *data, size_t len, uint8_t out[UTIL_SHA256_LEN])
{
	_cleanup_(util_sha256_freep) struct util_sha256 *s = NULL;
	int r;

	r = util_sha256_new(&s);
	if (r < 0)
		return r;
	r = util_sha256_update(s, data, len);
	if (r < 0)
		return r;
	return util_sha256_final(s, out);
}

int util_sha256_fd(int fd, uint64_t size, uint8_t out[UTIL_SHA256_LEN])
{
	_cleanup_(util_sha256_freep) struct util_sha256 *s = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	const size_t bufsz = 1 << 20;
	uint64_t off = 0;
	int r;

	r = util_sha256_new(&s);
	if (r < 0)
		return r;
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	while (off < size) {
		size_t want = size - off < bufsz ? (size_t)(size - off) : bufsz;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* file shorter than expected */
		r = util_sha256_update(s, buf, (size_t)n);
		if (r < 0)
			return r;
		off += (uint64_t)n;
	}
	return util_sha256_final(s, out);
}

void util_sha256_hex(const uint8_t d[UTIL_SHA256_LEN], char out[UTIL_SHA256_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < UTIL_SHA256_LEN; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[UTIL_SHA256_HEX_LEN] = 0;
}

int util_sha256_buf_hex(const void *data, size_t len, char out[UTIL_SHA256_HEX_LEN + 1])
{
	uint8_t d[UTIL_SHA256_LEN];
	int r = util_sha256_buf(data, len, d);

	if (r < 0)
		return r;
	util_sha256_hex(d, out);
	return 0;
}

void util_digest_format(const uint8_t d[UTIL_SHA256_LEN], char out[UTIL_DIGEST_STR_LEN])
{
	memcpy(out, "sha256:", 7);
	util_sha256_hex(d, out + 7);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool util_sha256_hex_valid(const char *s, size_t len)
{
	if (!s || len != UTIL_SHA256_HEX_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (hexval(s[i]) < 0)
			return false;
	return true;
}

int util_digest_parse(const char *s, uint8_t out[UTIL_SHA256_LEN])
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != UTIL_DIGEST_STR_LEN - 1)
		return -EINVAL;
	for (size_t i = 0; i < UTIL_SHA256_LEN; i++) {
		int hi = hexval(s[7 + 2 * i]), lo = hexval(s[7 + 2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

bool util_digest_valid(const char *s)
{
	uint8_t d[UTIL_SHA256_LEN];

	return util_digest_parse(s, d) == 0;
}
