// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for eviction (cache/gc.c): the LRU order and the plan (pure), the budget of a
 * percentage, and cache_gc on real entries: least recently used first, entries whose lock is
 * held never, dry runs remove nothing, a removed entry's lock file goes last and a new lock is
 * a fresh one. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <cmocka.h>

#include "cache/cache.h"
#include "cache_test.h"
#include "util/macro.h"

/* ---- the plan (pure) -------------------------------------------------------------------- */

static struct cache_gc_entry ent(char c, int64_t last_use, uint64_t bytes, bool in_use)
{
	struct cache_gc_entry e = {.last_use = last_use, .bytes = bytes, .in_use = in_use};

	memset(e.key, c, CACHE_KEY_LEN);
	return e;
}

static void test_sort_lru(void **state)
{
	struct cache_gc_entry v[] = {
	    ent('a', 300, 10, false), ent('b', 100, 10, false), ent('c', 200, 5, false),
	    ent('d', 200, 50, false), ent('e', 100, 10, false),
	};

	cache_gc_sort(v, ARRAY_SIZE(v));
	/* Oldest first; same age: the larger first, then by key. */
	assert_int_equal(v[0].key[0], 'b');
	assert_int_equal(v[1].key[0], 'e');
	assert_int_equal(v[2].key[0], 'd');
	assert_int_equal(v[3].key[0], 'c');
	assert_int_equal(v[4].key[0], 'a');
	cache_gc_sort(v, 0);
}

static void test_plan(void **state)
{
	struct cache_gc_entry v[] = {
	    ent('a', 100, 40, false),				/* oldest */
	    ent('b', 200, 30, true),				/* in use: never */
	    ent('c', 300, 20, false), ent('d', 400, 10, false), /* newest */
	};
	size_t n = ARRAY_SIZE(v);

	/* Under the budget: nothing. */
	assert_int_equal(cache_gc_plan(v, n, 100), 100);
	for (size_t i = 0; i < n; i++)
		assert_false(v[i].evict);
	/* 100 -> 60 by the oldest alone. */
	assert_int_equal(cache_gc_plan(v, n, 60), 60);
	assert_true(v[0].evict);
	assert_false(v[1].evict || v[2].evict || v[3].evict);
	/* 50: the in-use one is skipped, the next oldest goes. */
	assert_int_equal(cache_gc_plan(v, n, 50), 40);
	assert_true(v[0].evict && v[2].evict);
	assert_false(v[1].evict || v[3].evict);
	/* 0: everything not in use; what is in use stays over the budget. */
	assert_int_equal(cache_gc_plan(v, n, 0), 30);
	assert_true(v[0].evict && v[2].evict && v[3].evict);
	assert_false(v[1].evict);
	/* Gone entries count for nothing and are not chosen again. */
	v[0].gone = true;
	assert_int_equal(cache_gc_plan(v, n, 60), 60);
	assert_false(v[0].evict);
	assert_false(v[1].evict || v[2].evict || v[3].evict);
	assert_int_equal(cache_gc_plan(v, n, 35), 30);
	assert_true(v[2].evict && v[3].evict);
	assert_int_equal(cache_gc_plan(NULL, 0, 0), 0);
}

/* ---- on real entries ------------------------------------------------------------------- */

#define fixture cache_test_dir

static int setup_dir(void **state)
{
	return cache_test_dir_make("gc", (struct cache_test_dir **)state);
}

static int teardown_dir(void **state)
{
	return cache_test_dir_remove(*state);
}

static void key_of(char c, char key[CACHE_KEY_LEN + 1])
{
	memset(key, c, CACHE_KEY_LEN);
	key[CACHE_KEY_LEN] = 0;
}

/* An entry of key cccc... with `blocks` blocks written and persisted, its last use at `when`
 * (seconds since the epoch). Returned open (its lock held) when keep, else closed. */
static struct cache_entry *make(struct fixture *f, char c, uint64_t blocks, int64_t when, bool keep)
{
	char key[CACHE_KEY_LEN + 1], digest[UTIL_DIGEST_STR_LEN], name[CACHE_KEY_LEN + 16];
	struct cache_open_params p = {.key = key, .digest = digest, .size = 64 * 4096};
	struct timespec ts[2] = {{.tv_sec = when}, {.tv_sec = when}};
	struct cache_entry *e = NULL;
	uint8_t buf[4096];
	int lock = -1;

	key_of(c, key);
	snprintf(digest, sizeof(digest), "sha256:%s", key);
	assert_int_equal(cache_entry_lock(f->dirfd, key, false, &lock), 0);
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, lock, &e), 0);
	memset(buf, c, sizeof(buf));
	for (uint64_t b = 0; b < blocks; b++)
		assert_int_equal(cache_entry_store(e, buf, sizeof(buf), b * 4096, b, 1), 0);
	assert_true(cache_entry_flush(e, true) >= 0);
	snprintf(name, sizeof(name), "%s.bitmap", key);
	assert_int_equal(utimensat(f->dirfd, name, ts, 0), 0);
	if (keep)
		return e;
	cache_entry_free(e);
	return NULL;
}

static bool exists(struct fixture *f, char c, const char *suffix)
{
	char key[CACHE_KEY_LEN + 1], name[CACHE_KEY_LEN + 16];
	struct stat st;

	key_of(c, key);
	snprintf(name, sizeof(name), "%s%s", key, suffix);
	return fstatat(f->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

struct seen {
	char keys[8];
	size_t n;
	uint64_t bytes;
};

static void note(void *ctx, const struct cache_gc_entry *e)
{
	struct seen *s = ctx;

	assert_true(s->n < sizeof(s->keys));
	s->keys[s->n++] = e->key[0];
	s->bytes += e->bytes;
	assert_true(e->gone);
	assert_int_equal(e->freed, e->bytes);
	assert_int_equal(strncmp(e->digest, "sha256:", 7), 0);
	assert_int_equal(strcmp(e->digest + 7, e->key), 0);
}

static void test_gc_lru_and_in_use(void **state)
{
	struct fixture *f = *state;
	struct cache_gc_result res;
	struct util_size none = {.bytes = 0}, big = {.bytes = UINT64_MAX};
	struct seen seen = {0};
	struct cache_gc_hooks hn = {.each = note, .ctx = &seen};
	struct cache_entry *busy;

	/* a: oldest, b: in use (its lock held), c: middle, d: newest. */
	make(f, 'a', 32, 1000, false);
	busy = make(f, 'b', 32, 500, true);
	make(f, 'c', 16, 2000, false);
	make(f, 'd', 8, 3000, false);

	/* A budget nothing exceeds: nothing goes. */
	assert_int_equal(cache_gc(f->cache, &big, false, &hn, &res), 0);
	assert_int_equal(res.entries, 4);
	assert_int_equal(res.evicted, 0);
	assert_int_equal(res.in_use, 1);
	assert_true(res.total > (32 + 32 + 16 + 8) * 4096);

	/* Dry run with no budget: all but the busy one would go, oldest first; nothing is
	 * removed. */
	assert_int_equal(cache_gc(f->cache, &none, true, &hn, &res), 0);
	assert_int_equal(seen.n, 3);
	assert_memory_equal(seen.keys, "acd", 3);
	assert_int_equal(res.evicted, 3);
	assert_int_equal(res.freed, seen.bytes);
	for (const char *k = "abcd"; *k; k++)
		assert_true(exists(f, *k, "") && exists(f, *k, ".bitmap"));

	/* Just over the budget: the oldest unused entry goes, and that is enough. */
	{
		struct util_size fit = {.bytes = res.total - 1};

		seen = (struct seen){0};
		assert_int_equal(cache_gc(f->cache, &fit, false, &hn, &res), 0);
		assert_int_equal(seen.n, 1);
		assert_int_equal(seen.keys[0], 'a');
		assert_true(res.total - res.freed <= fit.bytes);
		assert_false(exists(f, 'a', "") || exists(f, 'a', ".bitmap") ||
			     exists(f, 'a', ".lock"));
		assert_true(exists(f, 'c', "") && exists(f, 'd', ""));
	}

	/* No budget: every unused entry goes; the busy one stays, whole. */
	seen = (struct seen){0};
	assert_int_equal(cache_gc(f->cache, &none, false, &hn, &res), 0);
	assert_int_equal(seen.n, 2);
	assert_memory_equal(seen.keys, "cd", 2);
	assert_int_equal(res.in_use, 1);
	assert_true(exists(f, 'b', "") && exists(f, 'b', ".bitmap") && exists(f, 'b', ".lock"));
	assert_false(exists(f, 'c', "") || exists(f, 'd', ""));

	/* Once let go, it goes too. */
	cache_entry_free(busy);
	seen = (struct seen){0};
	assert_int_equal(cache_gc(f->cache, &none, false, &hn, &res), 0);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.keys[0], 'b');
	assert_int_equal(res.entries, 1);
	assert_false(exists(f, 'b', "") || exists(f, 'b', ".lock"));
}

/* Over the budget with every unused entry gone: the trim hook is asked, least recently used
 * entry in use first, for what is over; what it gives back is measured on disk. Here the
 * hook trims the entry it holds open with cache_entry_evict (all its blocks). */
struct trim_fixture {
	struct cache_entry *busy;
	unsigned calls;
	uint64_t over;
	size_t trimmed_seen;
};

static int clear_all(void *ctx, uint64_t *cleared)
{
	struct cache_entry *e = ctx;

	for (size_t w = 0; w < e->present.nwords; w++)
		cleared[w] |= cache_bitmap_clear_word(&e->present, w, ~UINT64_C(0));
	return 0;
}

static void trim_hook(void *ctx, const struct cache_gc_entry *e, uint64_t over)
{
	struct trim_fixture *t = ctx;
	uint64_t blocks;

	t->calls++;
	t->over = over;
	assert_int_equal(e->key[0], 'b');
	assert_true(e->in_use);
	assert_int_equal(cache_entry_evict(t->busy, clear_all, t->busy, &blocks), 0);
	assert_int_equal(blocks, 32);
}

static void trim_each(void *ctx, const struct cache_gc_entry *e)
{
	struct trim_fixture *t = ctx;

	if (!e->gone) {
		assert_int_equal(e->key[0], 'b');
		assert_true(e->freed >= 32 * 4096);
		t->trimmed_seen++;
	}
}

static void test_gc_trims_in_use(void **state)
{
	struct fixture *f = *state;
	struct trim_fixture t = {0};
	struct cache_gc_hooks hooks = {.each = trim_each, .trim = trim_hook, .ctx = &t};
	struct util_size none = {.bytes = 0};
	struct cache_gc_result res;
	char key[CACHE_KEY_LEN + 1], name[CACHE_KEY_LEN + 16];
	uint64_t word;
	struct stat st;
	int fd;

	make(f, 'a', 8, 1000, false);
	t.busy = make(f, 'b', 32, 500, true);
	/* A dry run asks nobody to trim. */
	assert_int_equal(cache_gc(f->cache, &none, true, &hooks, &res), 0);
	assert_int_equal(t.calls, 0);
	assert_int_equal(cache_gc(f->cache, &none, false, &hooks, &res), 0);
	assert_int_equal(res.evicted, 1);
	assert_int_equal(t.calls, 1);
	assert_int_equal(res.trimmed, 1);
	assert_int_equal(t.trimmed_seen, 1);
	assert_true(t.over > 32 * 4096);
	assert_int_equal(res.in_use, 1);
	/* The persisted bitmap claims nothing, and the data is gone from the disk. */
	key_of('b', key);
	snprintf(name, sizeof(name), "%s.bitmap", key);
	fd = openat(f->dirfd, name, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &word, 8, 4096), 8);
	assert_int_equal(word, 0);
	close(fd);
	assert_int_equal(fstatat(f->dirfd, key, &st, 0), 0);
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(cache_entry_present_bytes(t.busy), 0);
	/* Stores after the trim are claimed again as usual. */
	{
		uint8_t buf[4096];

		memset(buf, 'b', sizeof(buf));
		assert_int_equal(cache_entry_store(t.busy, buf, sizeof(buf), 4096, 1, 1), 0);
		assert_int_equal(cache_entry_flush(t.busy, true), 1);
	}
	cache_entry_free(t.busy);
}

/* A user arriving after the eviction gets a fresh entry, never the removed one's bits. */
static void test_gc_then_fresh_entry(void **state)
{
	struct fixture *f = *state;
	struct util_size none = {.bytes = 0};
	struct cache_gc_result res;
	struct cache_entry *e;

	make(f, 'e', 64, 1000, false);
	assert_int_equal(cache_gc(f->cache, &none, false, NULL, &res), 0);
	assert_int_equal(res.evicted, 1);
	e = make(f, 'e', 0, 2000, true);
	assert_true(e->rebuilt);
	assert_int_equal(cache_entry_present_bytes(e), 0);
	cache_entry_free(e);
}

/* A lock file alone (a mount that took the lock and failed before creating anything) is no
 * entry to report, and goes with the next run. */
static void test_gc_lone_lock(void **state)
{
	struct fixture *f = *state;
	struct util_size none = {.bytes = 0};
	struct cache_gc_result res;
	struct seen seen = {0};
	struct cache_gc_hooks hn = {.each = note, .ctx = &seen};
	char key[CACHE_KEY_LEN + 1];
	int lock = -1;

	key_of('f', key);
	assert_int_equal(cache_entry_lock(f->dirfd, key, false, &lock), 0);
	close(lock);
	assert_int_equal(cache_gc(f->cache, &none, false, &hn, &res), 0);
	assert_int_equal(seen.n, 0);
	assert_int_equal(res.evicted, 0);
	assert_false(exists(f, 'f', ".lock"));
}

static void test_gc_budget(void **state)
{
	struct fixture *f = *state;
	struct util_size pct = {.percent = 50, .is_percent = true}, abs = {.bytes = 12345};
	struct statvfs sv;
	uint64_t b;

	assert_int_equal(cache_gc_budget(f->cache, &abs, &b), 0);
	assert_int_equal(b, 12345);
	assert_int_equal(statvfs(f->cache, &sv), 0);
	assert_int_equal(cache_gc_budget(f->cache, &pct, &b), 0);
	assert_int_equal(b, (uint64_t)sv.f_blocks * sv.f_frsize / 2);
	pct.percent = 0;
	assert_int_equal(cache_gc_budget(f->cache, &pct, &b), 0);
	assert_int_equal(b, 0);
}

static void test_gc_missing_or_bad_dir(void **state)
{
	struct fixture *f = *state;
	struct util_size none = {.bytes = 0};
	struct cache_gc_result res;
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/absent", f->root);
	assert_int_equal(cache_gc(path, &none, false, NULL, &res), 0);
	assert_int_equal(res.entries, 0);
	assert_int_equal(access(path, F_OK), -1); /* gc creates nothing */
	assert_int_equal(cache_gc("relative", &none, false, NULL, &res), -EINVAL);
	snprintf(path, sizeof(path), "%s/open", f->root);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(cache_gc(path, &none, false, NULL, &res), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sort_lru),
	    cmocka_unit_test(test_plan),
	    cmocka_unit_test_setup_teardown(test_gc_lru_and_in_use, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_gc_then_fresh_entry, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_gc_trims_in_use, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_gc_lone_lock, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_gc_budget, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_gc_missing_or_bad_dir, setup_dir, teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
