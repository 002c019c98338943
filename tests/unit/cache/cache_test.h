/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Helpers shared by the cache unit tests (static, header-only): a private cache directory
 * under $LAZYEROFS_TEST_TMP (default /var/tmp) for each test, removed afterwards.
 */
#ifndef LAZYEROFS_TESTS_CACHE_TEST_H
#define LAZYEROFS_TESTS_CACHE_TEST_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cache/cache.h"

struct cache_test_dir {
	char root[256];
	char cache[PATH_MAX];
	int dirfd; /* <cache>/sha256 */
};

/* 0, or -1 when the directory cannot be made (the test errors). name: part of its path. */
static inline int cache_test_dir_make(const char *name, struct cache_test_dir **ret)
{
	struct cache_test_dir *f = calloc(1, sizeof(*f));
	const char *base = getenv("LAZYEROFS_TEST_TMP") ? getenv("LAZYEROFS_TEST_TMP") : "/var/tmp";

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/lazyerofs-%s-test-XXXXXX", base, name);
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->cache, sizeof(f->cache), "%s/cache", f->root);
	if (cache_dir_open(f->cache, &f->dirfd) < 0) {
		free(f);
		return -1;
	}
	*ret = f;
	return 0;
}

static inline int cache_test_dir_remove(struct cache_test_dir *f)
{
	char cmd[PATH_MAX + 16];

	close(f->dirfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

#endif
