// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz xattrs: the input is both an inode's xattr ibody (at offset 0, size from the first
 * two bytes) and the shared xattr area; with long name prefixes stored plainly at its end. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_erofs_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int touch(void *opaque, const char *name, size_t namelen, const void *value,
		 size_t valuelen)
{
	unsigned int *sum = opaque;

	for (size_t i = 0; i < namelen; i++)
		*sum += (unsigned char)name[i];
	for (size_t i = 0; i < valuelen; i++)
		*sum += ((const uint8_t *)value)[i];
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct erofs_ctx ctx;
	struct erofs_inode vi = { 0 };
	struct erofs_io io;
	unsigned int sum = 0, icount;
	struct util_error err = UTIL_ERROR_INIT;

	if (size < 4 || size > (1u << 20))
		return 0;
	fuzz_ctx(&ctx, &io, data, size, &err);
	icount = data[0] | (data[1] & 0x3) << 8;
	vi.mode = S_IFREG | 0644;
	vi.iloc = 4;
	vi.isize = 0;
	vi.xattr_isize = icount ? 12 + 4 * (icount - 1) : 0;
	if (vi.iloc + vi.xattr_isize > size)
		return 0;
	ctx.xattr_base = 0;
	if (data[2] & 0x80) {
		ctx.xattr_prefix_count = data[2] & 0x7f;
		ctx.xattr_prefix_start = (uint32_t)(size / 8);
		ctx.info.feature_compat |= EROFS_COMPAT_PLAIN_XATTR_PFX;
	}
	(void)erofs_listxattr(&ctx, &vi, touch, &sum);
	erofs_ctx_done(&ctx);
	return (int)(sum & 0);
}
