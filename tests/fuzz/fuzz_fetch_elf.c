// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the reader of what an ELF file needs (fetch/elf.c): it never reads outside the file
 * (every read is checked here, and ASan watches the exact-size copy), and what it returns is
 * within its bounds: NUL-terminated names, at most ELF_DEPS_MAX_NEEDED of them, none empty. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem {
	const uint8_t *p;
	size_t len;
};

static ssize_t mem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct mem *m = ctx;

	if (off > m->len || len > m->len - off)
		abort(); /* the parser checks bounds before it reads */
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_deps *d = malloc(sizeof(*d));
	struct mem m;
	uint8_t *copy = malloc(size ? size : 1);
	int r;

	if (!d || !copy) {
		free(d);
		free(copy);
		return 0;
	}
	memcpy(copy, data, size);
	m = (struct mem){.p = copy, .len = size};
	r = elf_deps_read(mem_pread, &m, size, d);
	if (r < 0 && r != -ENOEXEC && r != -ENOTSUP)
		abort();
	if (r == 0) {
		if (d->nneeded > ELF_DEPS_MAX_NEEDED ||
		    !memchr(d->interp, 0, sizeof(d->interp)) ||
		    !memchr(d->runpath, 0, sizeof(d->runpath)))
			abort();
		for (size_t i = 0; i < d->nneeded; i++)
			if (!memchr(d->needed[i], 0, ELF_DEPS_NAME_MAX) || !d->needed[i][0])
				abort();
	}
	free(copy);
	free(d);
	return 0;
}
