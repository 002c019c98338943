// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Memory shared with forked processes (util/shared.h). */
#include <sys/mman.h>

#include "util/shared.h"

void *util_shared_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void util_shared_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}
