// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The cache's budget (cache-max): where it comes from (LAZYEROFS_CACHE_MAX, else the
 * configuration file's cache-max), the eviction `lazyerofs gc` runs (cache/gc.c: least
 * recently used unused entries first) with the trimming of entries in use through their
 * daemons (fetch/trim.c), and its application before a mount or a fetch makes a new entry.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/config.h"
#include "util/log.h"
#include "util/strutil.h"

struct gc_ctx {
	const char *run_dir;
	uint64_t cold_ms; /* 0: the daemon's default */
	uint64_t wait_ms; /* for a trim's answer (mount_env_answer_wait_ms(TRIM_WAIT_MS)) */
	void (*each)(void *ctx, const struct cache_gc_entry *e);
	void *ctx;
};

static void each_entry(void *arg, const struct cache_gc_entry *e)
{
	struct gc_ctx *g = arg;

	if (g->each)
		g->each(g->ctx, e);
}

#define TRIM_WAIT_MS 10000

/* Ask the daemon of an entry in use to give back `over` bytes of blocks nobody read lately. */
static void trim_entry(void *arg, const struct cache_gc_entry *e, uint64_t over)
{
	struct gc_ctx *g = arg;
	struct fetch_handle *h = NULL;
	struct util_error err = UTIL_ERROR_INIT;
	char why[160] = "";
	uint64_t freed = 0;
	int r;

	/* A trim punches holes and syncs the bitmap: seconds at most, never a reason to hang
	 * (a daemon that does not answer within TRIM_WAIT_MS is mute, as status says, and a
	 * mount of another image would wait for it). */
	r = fetch_connect_entry(g->run_dir, e->key, g->wait_ms, &h);
	if (r >= 0)
		r = fetch_trim(h, over, g->cold_ms, &freed, why, sizeof(why), &err);
	fetch_handle_free(h);
	if (r == -EAGAIN || r == -ETIMEDOUT) /* (the socket's timeout) */
		log_warning("cache-max: not trimming entry %s: its daemon does not answer "
			    "(%d s)",
			    e->key, (int)(g->wait_ms / 1000));
	else if (r < 0)
		log_info("not trimming entry %s: %s", e->key,
			 r == -ENOENT || r == -ECONNREFUSED ? "no daemon serves it"
							    : util_err_msg(&err, r));
	else if (why[0])
		log_info("entry %s: trimmed %" PRIu64 " bytes; %s", e->key, freed, why);
}

int mount_cache_gc(const char *cache_dir, const char *run_dir, const struct util_size *size,
		   bool dry_run, bool trim, void (*each)(void *ctx, const struct cache_gc_entry *e),
		   void *ctx, struct cache_gc_result *ret)
{
	struct gc_ctx g = {.run_dir = run_dir,
			   .wait_ms = mount_env_answer_wait_ms(TRIM_WAIT_MS),
			   .cold_ms = util_env_u64("LAZYEROFS_TRIM_COLD_MS", 0),
			   .each = each,
			   .ctx = ctx};
	struct cache_gc_hooks hooks = {
	    .each = each_entry, .trim = trim ? trim_entry : NULL, .ctx = &g};

	return cache_gc(cache_dir, size, dry_run, &hooks, ret);
}

bool mount_cache_max_apply(const char *cache_dir, const char *run_dir, const char *key,
			   uint64_t size)
{
	struct util_error err = UTIL_ERROR_INIT;
	struct cache_gc_result res;
	struct cache_header h;
	struct util_size max;
	_cleanup_close_ int dfd = -1;
	char a[32], b[32];
	int r;

	r = util_cache_max(&max, &err);
	if (r < 0)
		log_warning("ignoring the cache budget: %s", err.message);
	if (r <= 0)
		return true;
	/* Only before a new entry: an entry that exists already takes its room. */
	if (cache_dir_open(cache_dir, &dfd) < 0 || cache_entry_peek(dfd, key, &h) != -ENOENT)
		return true;
	r = mount_cache_gc(cache_dir, run_dir, &max, false, true, cache_gc_log_budget, NULL, &res);
	if (r < 0) {
		log_warning("cache-max: evicting unused entries of '%s': %s", cache_dir,
			    strerror(-r));
		return false;
	}
	if (res.failed)
		log_warning("cache-max: %zu cache entr%s could not be evicted (entry %s: %s)",
			    res.failed, res.failed == 1 ? "y" : "ies", res.failed_key,
			    strerror(-res.failed_err));
	if (res.total - res.freed > res.budget)
		log_info("cache-max: the cache holds %s, over its budget of %s: what is left is "
			 "in use",
			 util_format_bytes(res.total - res.freed, a, sizeof(a)),
			 util_format_bytes(res.budget, b, sizeof(b)));
	/* Allocated whole, an image larger than what the budget leaves would hold all its size
	 * on the disk while it is mounted (8 MiB held for 256 KiB read, budget 4 MiB), and no
	 * trim gives back blocks that hold nothing: sparse, it takes what is read. */
	return res.total - MIN(res.freed, res.total) + size <= res.budget;
}
