// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The cache's budget (cache-max): where it comes from (LAZYEROFS_CACHE_MAX, else the
 * configuration file's cache-max), and its application before a mount or a fetch makes a
 * new entry: the eviction of `lazyerofs gc` (cache/gc.c), least recently used unused entries
 * first, while the cache is over the budget.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/config.h"
#include "util/log.h"
#include "util/strutil.h"

int mount_cache_max(struct util_size *ret, struct util_error *err)
{
	const char *s = getenv("LAZYEROFS_CACHE_MAX");
	int r;

	if (!s || !*s) {
		struct util_config cfg;

		r = util_config_load(util_config_path(), &cfg, err);
		if (r < 0)
			return r;
		r = cfg.have_cache_max;
		*ret = cfg.cache_max;
		util_config_free(&cfg);
		return r;
	}
	r = util_parse_size(s, ret);
	if (r < 0)
		return util_err_set(err, -EINVAL, "LAZYEROFS_CACHE_MAX='%s': %s; it wants %s", s,
				    r == -ERANGE ? "out of range" : "not a size", UTIL_SIZE_SYNTAX);
	return 1;
}

static void log_evicted(void *ctx, const struct cache_gc_entry *e)
{
	char b[32];

	log_info("cache-max: evicted %s%s (%s), least recently used",
		 e->digest[0] ? e->digest : "entry ", e->digest[0] ? "" : e->key,
		 util_format_bytes(e->bytes, b, sizeof(b)));
}

void mount_cache_max_apply(const char *cache_dir, const char *key)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct cache_gc_result res;
	struct cache_header h;
	struct util_size max;
	_cleanup_close_ int dfd = -1;
	char a[32], b[32];
	int r;

	r = mount_cache_max(&max, &err);
	if (r < 0)
		log_warning("ignoring the cache budget: %s", err.message);
	if (r <= 0)
		return;
	/* Only before a new entry: an entry that exists already takes its room. */
	if (cache_dir_open(cache_dir, &dfd) < 0 || cache_entry_peek(dfd, key, &h) != -ENOENT)
		return;
	r = cache_gc(cache_dir, &max, false, log_evicted, NULL, &res);
	if (r < 0)
		log_warning("cache-max: evicting unused entries of '%s': %s", cache_dir,
			    strerror(-r));
	else if (res.total - res.freed > res.budget)
		log_info("cache-max: the cache holds %s, over its budget of %s: what is left is "
			 "in use",
			 util_format_bytes(res.total - res.freed, a, sizeof(a)),
			 util_format_bytes(res.budget, b, sizeof(b)));
}
