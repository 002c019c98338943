/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* sha256 through OpenSSL's libcrypto, plus "sha256:<hex>" digest strings. */
#ifndef LAZYEROFS_UTIL_SHA256_H
#define LAZYEROFS_UTIL_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTIL_SHA256_LEN 32
#define UTIL_SHA256_HEX_LEN 64
/* "sha256:" + 64 hex + NUL */
#define UTIL_DIGEST_STR_LEN (7 + UTIL_SHA256_HEX_LEN + 1)

struct util_sha256;

int util_sha256_new(struct util_sha256 **ret);
int util_sha256_update(struct util_sha256 *s, const void *data, size_t len);
int util_sha256_final(struct util_sha256 *s, uint8_t out[UTIL_SHA256_LEN]);
void util_sha256_free(struct util_sha256 *s);

int util_sha256_buf(const void *data, size_t len, uint8_t out[UTIL_SHA256_LEN]);
/* Hash a whole file descriptor from offset 0 with pread. */
int util_sha256_fd(int fd, uint64_t size, uint8_t out[UTIL_SHA256_LEN]);

/* "sha256:<64 lowercase hex>" */
/* The sha256 of data as 64 lowercase hex characters and a NUL. */
int util_sha256_buf_hex(const void *data, size_t len, char out[UTIL_SHA256_HEX_LEN + 1]);
/* 64 lowercase hex characters and a NUL. */
void util_sha256_hex(const uint8_t d[UTIL_SHA256_LEN], char out[UTIL_SHA256_HEX_LEN + 1]);
void util_digest_format(const uint8_t d[UTIL_SHA256_LEN], char out[UTIL_DIGEST_STR_LEN]);
/* Are the len bytes at s 64 lowercase hex characters (a digest's hex, a cache key)? */
bool util_sha256_hex_valid(const char *s, size_t len);
/* Parse "sha256:<64 hex>" (lowercase only, as the OCI spec requires). -EINVAL otherwise. */
int util_digest_parse(const char *s, uint8_t out[UTIL_SHA256_LEN]);
bool util_digest_valid(const char *s);

#endif
