// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Eviction of whole cache entries (`lazyerofs gc`, the cache-max budget): list the entries of
 * <cache-dir>/sha256, order them least recently used first (the bitmap file's times, stamped
 * when a daemon opens the entry and when its last user leaves), and remove those no mount
 * uses until the cache fits its budget. An entry is in use while its lock is held: a daemon
 * holds it from before it opens the entry until it leaves, and a mount takes it (or joins the
 * daemon that holds it) before it opens anything, so an entry whose lock we win is not used
 * and cannot be until we let go -- and by then its files are gone, and the next user creates
 * a fresh entry.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cache/internal.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/mountinfo.h"
#include "util/strutil.h"

/* Entries looked at in one run, at most (a cache of 64 Ki images is far beyond any use). */
#define GC_MAX_ENTRIES 65536

static int cmp_lru(const void *a, const void *b)
{
	const struct cache_gc_entry *x = a, *y = b;

	if (x->last_use != y->last_use)
		return x->last_use < y->last_use ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return strcmp(x->key, y->key);
}

void cache_gc_sort(struct cache_gc_entry *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_lru);
}

uint64_t cache_gc_plan(struct cache_gc_entry *v, size_t n, uint64_t budget)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n; i++) {
		v[i].evict = false;
		if (!v[i].gone)
			total += v[i].bytes;
	}
	for (size_t i = 0; i < n && total > budget; i++) {
		if (v[i].gone || v[i].in_use)
			continue;
		v[i].evict = true;
		total -= v[i].bytes;
	}
	return total;
}

int cache_gc_budget(const char *cache_dir, const struct util_size *size, uint64_t *ret)
{
	char path[PATH_MAX];
	struct statvfs sv;
	uint64_t total;
	char *slash;

	if (!size->is_percent) {
		*ret = size->bytes;
		return 0;
	}
	/* the cache's filesystem: its directory's, or while that is not made yet, the one it
	 * will be made on (its nearest ancestor's) */
	if (snprintf(path, sizeof(path), "%s", cache_dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	while (statvfs(path, &sv) < 0) {
		if (errno != ENOENT || !(slash = strrchr(path, '/')) || !strcmp(path, "/"))
			return -errno;
		slash[slash == path] = 0; /* (the root directory keeps its slash) */
	}
	if (util_mul_overflow_u64(sv.f_blocks, sv.f_frsize, &total))
		total = UINT64_MAX;
	*ret = total / 100 * size->percent + total % 100 * size->percent / 100;
	return 0;
}

/* The key a file of an entry belongs to ("<key>", "<key>.bitmap", "<key>.lock"), or NULL. */
static bool entry_file_key(const char *name, char key[CACHE_KEY_LEN + 1])
{
	const char *dot = strchr(name, '.');
	size_t len = dot ? (size_t)(dot - name) : strlen(name);

	/* (and the files a bad entry's daemon set aside, "<key>.bad-<pid>[.bitmap|.lock]": one
	 * killed left them, and only its key's eviction sweeps them, cache_entry_remove) */
	if (!util_sha256_hex_valid(name, len) ||
	    (dot && strcmp(dot, ".bitmap") && strcmp(dot, ".lock") && strncmp(dot, ".bad-", 5)))
		return false;
	memcpy(key, name, CACHE_KEY_LEN);
	key[CACHE_KEY_LEN] = 0;
	return true;
}

/* Size and last use of an entry from its files' metadata; its digest from its header. False
 * when it has neither data nor bitmap file (only a lock file, or nothing any more). */
static bool entry_stat(int dirfd, struct cache_gc_entry *e)
{
	static const char *const suffix[] = {"", ".bitmap", ".lock"};
	char name[CACHE_KEY_LEN + 16];
	struct cache_header h;
	bool stamped = false, files = false;

	e->bytes = 0;
	e->last_use = 0;
	for (size_t i = 0; i < ARRAY_SIZE(suffix); i++) {
		struct stat st;

		snprintf(name, sizeof(name), "%s%s", e->key, suffix[i]);
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		e->bytes += (uint64_t)st.st_blocks * 512;
		files = files || i < 2;
		/* The bitmap's times are the stamp; a lone data or lock file (a broken or
		 * half-made entry) goes by its own. */
		if (i == 1) {
			e->last_use = st.st_mtim.tv_sec;
			stamped = true;
		} else if (!stamped) {
			e->last_use = MAX(e->last_use, (int64_t)st.st_mtim.tv_sec);
		}
	}
	e->digest[0] = 0;
	if (cache_entry_peek(dirfd, e->key, &h) == 0)
		memcpy(e->digest, h.digest, sizeof(e->digest));
	return files;
}

/* The entries of the directory, one per key. */
static int list_entries(int dirfd, struct cache_gc_entry **ret, size_t *ret_n)
{
	_cleanup_free_ struct cache_gc_entry *v = NULL;
	size_t n = 0, alloc = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	while ((de = readdir(d))) {
		char key[CACHE_KEY_LEN + 1];
		bool seen = false;

		if (!entry_file_key(de->d_name, key))
			continue;
		/* A directory lists an entry's files in no particular order: look back. */
		for (size_t i = 0; i < n && !seen; i++)
			seen = strcmp(v[i].key, key) == 0;
		if (seen)
			continue;
		if (n == GC_MAX_ENTRIES) {
			closedir(d);
			return -E2BIG;
		}
		if (n == alloc) {
			size_t na = alloc ? alloc * 2 : 64;
			struct cache_gc_entry *nv = reallocarray(v, na, sizeof(*v));

			if (!nv) {
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			alloc = na;
		}
		v[n] = (struct cache_gc_entry){0};
		memcpy(v[n].key, key, sizeof(key));
		n++;
	}
	closedir(d);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* The keys of entries of the cache whose data file is mounted here (mountinfo's source):
 * a mount whose daemon is gone holds its entry as much as a daemon does (its files, removed,
 * would keep their space until the umount, and gc would say it freed it). */
struct mounted_keys {
	/* "<cache>/sha256", as mountinfo's sources may spell it ("c//sha256", a symlink): the
	 * directory they name */
	struct util_file_id dir;
	char **keys;
	size_t n, alloc;
};

static int note_mounted(const struct util_mountinfo *m, void *ud)
{
	struct mounted_keys *k = ud;
	const char *slash = strrchr(m->source, '/');
	char dir[PATH_MAX];
	struct stat st;

	if (strcmp(m->fstype, "erofs") || !slash || strlen(slash + 1) != CACHE_KEY_LEN ||
	    (size_t)(slash - m->source) >= sizeof(dir))
		return 0;
	memcpy(dir, m->source, (size_t)(slash - m->source));
	dir[slash - m->source] = 0;
	if (stat(dir[0] ? dir : "/", &st) < 0 || !util_file_id_eq(util_file_id_of(&st), k->dir))
		return 0;
	if (UTIL_ARRAY_RESERVE(k->keys, k->alloc, k->n, 8) < 0 ||
	    !(k->keys[k->n] = strdup(slash + 1)))
		return -ENOMEM;
	k->n++;
	return 0;
}

static bool key_mounted(const struct mounted_keys *k, const char *key)
{
	for (size_t i = 0; i < k->n; i++)
		if (!strcmp(k->keys[i], key))
			return true;
	return false;
}

static void mounted_keys_free(struct mounted_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->keys[i]);
	free(k->keys);
}

/* Whether someone holds the entry's lock now (a peek: the lock is let go at once). */
static bool entry_locked(int dirfd, const char *key)
{
	_cleanup_close_ int lock = -1;

	return cache_entry_lock(dirfd, key, false, &lock) == -EWOULDBLOCK;
}

/* Evict one entry: 1 when it was, 0 when it had gone meanwhile (another gc), -EWOULDBLOCK
 * when it is in use. Its size is taken again under the lock (it may have changed since). */
static int evict(int dirfd, struct cache_gc_entry *e)
{
	_cleanup_close_ int lock = -1;
	bool files;
	int r;

	r = cache_entry_lock(dirfd, e->key, false, &lock);
	if (r < 0)
		return r;
	files = entry_stat(dirfd, e);
	r = cache_entry_remove(dirfd, e->key, lock);
	return r < 0 ? r : files;
}

/* Still over the budget with every unused entry gone: trim entries in use, least recently
 * used first, measuring what each gave back on disk. */
static void trim_in_use(int dirfd, struct cache_gc_entry *v, size_t n,
			const struct cache_gc_hooks *hooks, struct cache_gc_result *ret)
{
	uint64_t left = ret->total - ret->freed;

	for (size_t i = 0; i < n && left > ret->budget; i++) {
		uint64_t before = v[i].bytes;

		if (v[i].gone || !v[i].in_use)
			continue;
		hooks->trim(hooks->ctx, &v[i], left - ret->budget);
		(void)entry_stat(dirfd, &v[i]);
		if (v[i].bytes >= before)
			continue;
		v[i].freed = before - v[i].bytes;
		left -= v[i].freed;
		ret->freed += v[i].freed;
		ret->trimmed++;
		if (hooks->each)
			hooks->each(hooks->ctx, &v[i]);
	}
}

void cache_gc_log_budget(void *ctx, const struct cache_gc_entry *e)
{
	char b[32];

	(void)ctx;
	log_info("cache-max: %s %s%s (%s), least recently used", e->gone ? "evicted" : "trimmed",
		 e->digest[0] ? e->digest : "entry ", e->digest[0] ? "" : e->key,
		 util_format_bytes(e->freed, b, sizeof(b)));
}

int cache_gc(const char *cache_dir, const struct util_size *size, bool dry_run,
	     const struct cache_gc_hooks *hooks, struct cache_gc_result *ret)
{
	_cleanup_close_ int root = -1, dirfd = -1;
	_cleanup_free_ struct cache_gc_entry *v = NULL;
	_cleanup_(mounted_keys_free) struct mounted_keys mounted = {0};
	char path[PATH_MAX];
	struct stat st;
	size_t n = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (!cache_dir || cache_dir[0] != '/')
		return -EINVAL;
	ret->budget = size->is_percent ? 0 : size->bytes;
	if (snprintf(path, sizeof(path), "%s/sha256", cache_dir) >= (int)sizeof(path) - 1)
		return -ENAMETOOLONG;
	/* Both must be private already: gc creates nothing. (The budget is said even for a
	 * cache without entries yet.) */
	r = util_open_existing_private_dir(cache_dir, O_PATH, &root);
	if (r >= 0 || r == -ENOENT) {
		int b = cache_gc_budget(cache_dir, size, &ret->budget);

		r = b < 0 ? b : r;
	}
	if (r >= 0)
		r = util_open_existing_private_dir(path, O_PATH, &dirfd);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = list_entries(dirfd, &v, &n);
	if (r < 0)
		return r;
	if (fstat(dirfd, &st) < 0)
		return -errno;
	mounted.dir = util_file_id_of(&st);
	if (util_mountinfo_each("/proc/self/mountinfo", note_mounted, &mounted) == -ENOMEM)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		bool files = entry_stat(dirfd, &v[i]);

		v[i].in_use = entry_locked(dirfd, v[i].key) || key_mounted(&mounted, v[i].key);
		if (!files && !v[i].in_use) {
			/* A lock file alone (a start that failed before creating the entry):
			 * no entry to count or report, but no reason to keep it. */
			if (!dry_run)
				(void)evict(dirfd, &v[i]);
			v[i].gone = true;
			continue;
		}
		ret->entries++;
		ret->total += v[i].bytes;
	}
	cache_gc_sort(v, n);
	for (;;) {
		size_t i = 0;

		cache_gc_plan(v, n, ret->budget);
		while (i < n && !v[i].evict)
			i++;
		if (i == n)
			break;
		if (!dry_run) {
			r = evict(dirfd, &v[i]);
			if (r == -EWOULDBLOCK) {
				/* A mount took it since we looked: keep it, choose again. */
				v[i].in_use = true;
				continue;
			}
			if (r < 0) {
				/* One entry gc cannot take (a lock or bitmap replaced by a
				 * symlink or a directory): kept, and the run goes on. */
				if (ret->failed++ == 0) {
					memcpy(ret->failed_key, v[i].key, sizeof(v[i].key));
					ret->failed_err = r;
				}
				v[i].in_use = true;
				r = 0;
				continue;
			}
			v[i].gone = true;
			if (r == 0)
				continue;
		}
		v[i].gone = true;
		v[i].freed = v[i].bytes;
		ret->evicted++;
		ret->freed += v[i].bytes;
		if (hooks && hooks->each)
			hooks->each(hooks->ctx, &v[i]);
	}
	if (r == -EWOULDBLOCK || r > 0)
		r = 0; /* the last entry looked at was kept, or evicted */
	if (!dry_run && hooks && hooks->trim && r == 0)
		trim_in_use(dirfd, v, n, hooks, ret);
	for (size_t i = 0; i < n; i++)
		if (v[i].in_use && !v[i].gone) {
			ret->in_use++;
			ret->in_use_bytes += v[i].bytes;
		}
	return r;
}
