// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/array.h"

int util_array_reserve(void **v, size_t *alloc, size_t n, size_t size, size_t first)
{
	size_t na;
	void *nv;

	if (n < *alloc)
		return 0;
	na = *alloc ? *alloc * 2 : (first ? first : 1);
	if (na <= n || na > SIZE_MAX / size)
		return -ENOMEM;
	nv = realloc(*v, na * size);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*alloc = na;
	return 0;
}
