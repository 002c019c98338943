// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the directory block parser: the input is one directory block (its valid bytes). */
#include <stdint.h>
#include <string.h>

#include "fuzz_erofs_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int touch(void *opaque, const struct erofs_dirent_view *de)
{
	unsigned int *sum = opaque;

	/* read every byte of the name so the sanitizer sees any overrun */
	for (unsigned int i = 0; i < de->namelen; i++)
		*sum += (unsigned char)de->name[i];
	*sum += de->file_type + (unsigned int)de->nid;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct erofs_ctx ctx;
	struct erofs_io io;
	unsigned int sum = 0;
	struct util_error err = UTIL_ERROR_INIT;

	if (size > 65536)
		return 0;
	fuzz_ctx(&ctx, &io, data, size, &err);
	(void)erofs_dir_block_parse(&ctx, 1, 0, data, size, touch, &sum);
	return (int)(sum & 0);
}
