// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs mount`: resolve the source, start or join the cache entry's daemon, make the
 * metadata present by walking the image through the cache (DESIGN fact 2), mount the cache
 * file, record the mount in its state file and attach it to the daemon. Any failure after
 * the daemon is involved is undone here: no mount, no state file, no attachment is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mount/files.h"
#include "mount/mount.h"
#include "mount/profile.h"
#include "mount/resolve.h"
#include "mount/walkio.h"
#include "util/cleanup.h"
#include "util/config.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

DEFINE_CLEANUP_FUNC(struct oci_ref, oci_ref_free);
DEFINE_CLEANUP_FUNC(struct fetch_handle, fetch_handle_free);
DEFINE_CLEANUP_FUNC(struct mount_walkio, mount_walkio_free);
DEFINE_CLEANUP_FUNC(struct mount_files, mount_files_free);
DEFINE_CLEANUP_FUNC(struct mount_profile, mount_profile_free);

/* How the walk's rounds become requests (mount/rounds.c). A round goes out as one multi-range
 * request, and a registry's cost grows with the ranges, whatever their size: docker-registry
 * reopens the blob and fills a 4 MiB buffer per range (here ~0.3 ms per range on loopback,
 * measured with curl: 150 ranges of 4 KiB took 44 ms more than one, about what 1 range of
 * 40 MiB costs more than one of 4 KiB). So gaps up to WALK_MERGE_GAP are always bridged, and
 * larger ones (smallest first, up to WALK_BRIDGE_MAX_GAP) while fetching them takes less
 * time than a range costs at the link's rate measured by the rounds so far (on loopback
 * ~100 KiB, on 100 Mbit/s ~4 KiB: nothing more), and the bytes added stay within
 * 1/WALK_BRIDGE_DIVISOR of the image. An uncompressed image scatters its metadata most (a
 * Debian minbase: 1,277 ranges over 190 MiB): on loopback a tenth left ~1,000 ranges and
 * took 372-385 ms, a quarter leaves ~260 and takes 228-239 ms (53 MiB fetched, not 27). */
#define WALK_MERGE_GAP (4ULL << 10)
#define WALK_BRIDGE_MAX_GAP (1ULL << 20)
#define WALK_BRIDGE_DIVISOR 4
#define WALK_RANGE_COST_US 300
/* The block of the superblock. */
#define WALK_SB_BYTES 4096ULL
/* The walk's first round: the superblock and the metadata mkfs puts after it. */
#define WALK_HEAD_BYTES (256ULL << 10)
/* Read-ahead of a mount whose entry is mostly present (readahead_kb()). */
#define MOUNT_WARM_READAHEAD_KB 2048U
/* Memory for the metadata loaded during the walk (a Debian minbase has 8-16 MiB). */
#define WALK_MEMORY_CAP (256ULL << 20)
/* A metadata map may list up to half the image, or this much of a small one. */
#define WALK_MAP_MIN (8ULL << 20)
/* A map of up to this many ranges goes out before the first round (see prefetch_metadata),
 * over a link whose replies take at least WALK_MAP_QUICK_US (the lz4hc minbase's: 524); one
 * of up to WALK_MAP_SPREAD after it (bridged where gaps are worth it) in parts. */
#define WALK_MAP_AT_ONCE  1024
#define WALK_MAP_QUICK_US 10000
#define WALK_MAP_SPREAD	  512

/* Tell the daemon what the kernel reads without events (the walk's extents, the superblock's
 * block and a metadata zone fetched whole): it never trims those while mounts use the entry.
 * The daemon may trim the entry once some of them arrived, so a pin that failed part-way
 * fails the mount: its metadata could otherwise be trimmed from under it (zeros). */
static int pin_metadata(struct fetch_handle *h, struct util_extents *ext, uint64_t size,
			uint64_t zone_offset, struct util_error *err)
{
	struct util_error perr = UTIL_ERROR_INIT;
	struct util_extent zone;
	int r;

	r = util_extents_add(ext, 0, MIN(size, (uint64_t)8192));
	if (r >= 0 && zone_offset && mount_metadata_zone(zone_offset, size, &zone))
		r = util_extents_add(ext, zone.offset, zone.length);
	if (r >= 0) {
		util_extents_merge(ext, 0);
		r = fetch_pin(h, ext->v, ext->n, &perr);
	}
	if (r < 0)
		return util_err_set(err, r, "telling the fetch daemon the image's metadata: %s",
				    util_err_msg(&perr, r));
	return 0;
}

/* The image's metadata map (oci.h) into v, when there is one that can be used: a map that
 * cannot be read, or that lists more than the walk could ever need, is ignored (it is only a
 * hint: the walk finds everything without it, level by level). */
static bool map_read(const char *metamap, uint64_t size, struct util_extents *v)
{
	uint64_t total;
	int r;

	if (!metamap || getenv("LAZYEROFS_NO_METADATA_MAP"))
		return false;
	r = oci_metamap_decode(metamap, size, v);
	total = util_extents_total(v);
	if (r >= 0 && (total > MIN(WALK_MEMORY_CAP, MAX(size / 2, WALK_MAP_MIN)) || !v->n))
		r = -E2BIG;
	if (r < 0) {
		log_debug("not using the image's metadata map: %s",
			  r == -E2BIG ? "it lists more than an image's metadata, or nothing"
				      : strerror(-r));
		v->n = 0;
		return false;
	}
	return true;
}

/* Make every structure the kernel reads without an event present in the cache file. */
static int prefetch_metadata(struct fetch_handle *h, uint64_t size, const char *metamap,
			     struct mount_result *res, struct util_error *err)
{
	_cleanup_(mount_walkio_freep) struct mount_walkio *w = NULL;
	_cleanup_(mount_files_freep) struct mount_files *files = NULL;
	_cleanup_close_ int fd = -1, premark = -1;
	struct erofs_io io;
	struct erofs_walk_opts wopts = { .merge_gap = WALK_MERGE_GAP };
	const struct mount_grouping grouping = {.merge_gap = WALK_MERGE_GAP,
						.max_gap = WALK_BRIDGE_MAX_GAP,
						.budget = size / WALK_BRIDGE_DIVISOR,
						.range_cost_us = WALK_RANGE_COST_US};
	struct util_extents ext, map;
	struct fetch_status before = { 0 }, after = { 0 };
	struct erofs_info info;
	struct util_error werr = UTIL_ERROR_INIT, ferr = UTIL_ERROR_INIT;
	bool have_before;
	int r;

	fd = open(h->data_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		return util_err_set(err, r, "opening the cache file '%s': %s", h->data_path,
				    strerror(-r));
	}
	/* No kernel readahead on this fd: a window reaching past what was prefetched would
	 * make the daemon fetch file data around every metadata block. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	/* The daemon's pre-mark read fd loads what each batch made present without an event per
	 * read; a daemon that cannot give it leaves every read on the marked fd. */
	r = fetch_data_fd(h, &premark, &ferr);
	if (r < 0) {
		log_debug("no pre-mark read fd from the daemon (%s); loading rounds through events",
			  util_err_msg(&ferr, r));
		premark = -1;
		util_err_clear(&ferr);
	} else {
		(void)posix_fadvise(premark, 0, 0, POSIX_FADV_RANDOM);
	}
	r = mount_walkio_new(fd, premark, h, size, WALK_MEMORY_CAP, &ferr, &w);
	if (r < 0) {
		return util_err_set(err, r, "out of memory");
	}
	mount_walkio_io(w, &io);
	mount_walkio_set_grouping(w, &grouping);
	have_before = fetch_status(h, &before) >= 0;

	/* With the image's metadata map, the walk's rounds find what they ask for on its way
	 * already. Debian minbase lz4hc (then 375 ranges, 6.4 MiB): over 100 Mbit/s + RTT 50 ms
	 * 1,060 -> 770-780 ms (4 requests instead of ~50), on loopback 290 -> 230 ms. The map
	 * lists the metadata blocks exactly (push: 524 ranges, 5.8 MiB), and where gaps are
	 * worth bridging the mount bridges them. */
	util_extents_init(&map);
	if (map_read(metamap, size, &map)) {
		res->map_ranges = map.n;
		res->map_bytes = util_extents_total(&map);
	}
	/* Sent before any round has told the link's rate, the map goes exactly as listed: over
	 * a slow link a bridged gap costs its bytes. A registry that answers quickly (its own
	 * round trip and its time to answer, as resolving measured them: res->reply_us) is not
	 * worth sending it blind to: the first round costs little there and tells whether gaps
	 * are worth bridging. On loopback they are: the distribution registry reads 4 MiB ahead for
	 * each range it serves (two thirds of its time during a mount), and the lz4hc minbase's map
	 * of 375 ranges (a block's gaps bridged) took it 82-85 ms as listed, 44-57 ms with gaps of
	 * up to 16-256 KiB bridged. */
	if (map.n && map.n <= WALK_MAP_AT_ONCE &&
	    (!res->reply_us || res->reply_us >= WALK_MAP_QUICK_US)) {
		/* The whole map at once, superblock included, exactly as listed: no round has
		 * told the link's rate, so no gap is worth bridging yet (over a slow link a
		 * bridged gap costs its bytes; on loopback a range costs the registry ~0.3 ms,
		 * which a few hundred ranges afford). Then wait for the superblock alone. */
		struct util_extent sb = { 0, MIN(size, WALK_SB_BYTES) };

		res->map_blind = true;
		r = util_extents_add(&map, sb.offset, sb.length);
		if (r >= 0) {
			/* (not even a block's gap bridged: walkio, no round told the rate) */
			util_extents_merge(&map, 0);
			r = mount_walkio_prefetch_ahead(w, map.v, map.n, false);
		}
		if (r >= 0)
			r = io.prefetch(io.ctx, &sb, 1);
		map.n = 0;
	} else {
		/* The superblock as a batch of its own (a plain read would fetch a whole demand
		 * chunk around it), with what follows it to WALK_HEAD_BYTES: mkfs puts the root
		 * inode and the first inodes and directories there (a Debian minbase: its first
		 * 188 KiB are all metadata), which the walk's next two rounds would ask for. At
		 * 100 Mbit/s + RTT 50 ms the extra 248 KiB cost 20 ms and save two round trips
		 * (972-994 -> 899-913 ms); the round is also large enough to tell the link's
		 * rate at once (loopback, lz4hc: 197-208 -> 149-150 ms, 219 ranges instead of
		 * 329). */
		struct util_extent sb = { 0, MIN(size, WALK_HEAD_BYTES) };

		r = mount_walkio_prefetch_all(w, &sb, 1);
		/* A map of many ranges (Debian minbase uncompressed: 1,277), or any map from a
		 * registry that answers quickly, follows the first round, which tells the link's
		 * rate: over a fast link (loopback) a registry's cost per range is worth bridging
		 * gaps for. */
		if (r >= 0 && map.n) {
			util_extents_merge(&map, WALK_MERGE_GAP); /* as the rounds' are */
			r = mount_walkio_prefetch_ahead(w, map.v, map.n, map.n <= WALK_MAP_SPREAD);
			if (r < 0) {
				util_extents_free(&map);
				return util_err_set(err, r, "fetching the image's metadata map: %s",
						    util_err_msg(&ferr, r));
			}
		}
	}
	util_extents_free(&map);
	if (r < 0) {
		return util_err_set(err, r, "reading the image's superblock: %s",
				    util_err_msg(&ferr, r));
	}
	r = mount_probe_image(&io, &ferr, &info, err);
	if (r < 0)
		return r;
	if (info.extra_devices > 0) {
		return util_err_set(
		    err, -EOPNOTSUPP,
		    "the image uses %u extra device(s) (a device table); lazyerofs cannot "
		    "mount multi-device images yet",
		    (unsigned)info.extra_devices);
	}

	/* A metadata zone comes whole, in one round, rather than level by level. */
	{
		struct util_extent zone;

		if (mount_metadata_zone(info.meta_offset, size, &zone)) {
			r = mount_walkio_prefetch_all(w, &zone, 1);
			if (r < 0) {
				return util_err_set(err, r,
						    "fetching the image's metadata zone: %s",
						    util_err_msg(&ferr, r));
			}
			res->zone_bytes = zone.length;
		}
	}

	util_extents_init(&ext);
	/* The walk also lists each file's data ranges, for the daemon (issue 10). */
	files = mount_files_new(size);
	mount_files_hook(files, &wopts);
	/* When the walk succeeds, it has made present all it read or listed (its last round);
	 * the gaps its result's merge bridges are not needed. */
	r = erofs_walk(&io, &wopts, &ext, &res->walk, &werr);
	if (r == -EUCLEAN && files) {
		/* Maybe only a file's data map is corrupt: that costs the index, not the mount
		 * (the kernel fails that file's reads). Everything is present now. */
		log_debug("walking without the file index (%s)", werr.message);
		mount_files_free(TAKE_PTR(files));
		wopts.on_file = NULL;
		util_err_clear(&werr);
		util_extents_free(&ext);
		r = erofs_walk(&io, &wopts, &ext, &res->walk, &werr);
	}
	if (r >= 0) {
		res->walk_ranges = ext.n;
		r = pin_metadata(h, &ext, size, res->zone_bytes ? info.meta_offset : 0, err);
		if (r < 0) {
			util_extents_free(&ext);
			return r;
		}
	}
	util_extents_free(&ext);
	if (r < 0) {
		if (util_err_has_msg(&ferr))
			util_err_set(err, r, "fetching the image's metadata: %s", ferr.message);
		else if (r == -EUCLEAN)
			util_err_set(err, r, "the image is corrupt: %s", util_err_msg(&werr, r));
		else
			util_err_set(err, r, "walking the image's metadata: %s%s%s", strerror(-r),
				     werr.message[0] ? ": " : "", werr.message);
		return r;
	}
	r = mount_walkio_flush(w);
	if (r < 0)
		log_debug("telling the daemon what the walk read last: %s", util_err_msg(&ferr, r));
	res->io = *mount_walkio_stats(w);
	mount_files_send(files, h);
	if (have_before && fetch_status(h, &after) >= 0) {
		res->walk_requests = after.requests - before.requests;
		res->walk_fetched = after.fetched_bytes - before.fetched_bytes;
		res->walk_events = after.events - before.events;
		res->walk_fast = after.fast_answers - before.fast_answers;
	}
	return 0;
}

/* A lazyerofs mount already on the directory: a second one would hide it under itself. */
/* A lazyerofs mount on the mountpoint already: -EBUSY, or 1 for mount(8)'s helper when it is
 * of the same source (`mount -a` run again: mount(8) cannot tell, as the kernel shows the
 * cache file as the mount's source; nothing to do, as for any mounted line of fstab). */
static int refuse_mounted(const char *mnt_abs, const char *mountpoint, const char *source,
			  bool helper, int run_fd, struct util_error *err)
{
	struct mount_state st = { 0 };
	uint64_t mnt_id;

	if (mount_path_mnt_id(mnt_abs, &mnt_id) < 0 || mount_state_read(run_fd, mnt_id, &st) < 0)
		return 0;
	if (helper && st.source && !strcmp(st.source, source)) {
		mount_state_done(&st);
		return 1;
	}
	util_err_set(err, -EBUSY,
		     "mountpoint '%s' is already a lazyerofs mount of '%s'; unmount it first "
		     "('lazyerofs umount %s')",
		     mountpoint, st.source ? st.source : "?", mountpoint);
	mount_state_done(&st);
	return -EBUSY;
}

/* Where the mountpoint is now: a directory renamed while the walk ran (seconds on a slow
 * link) gets the mount where it went, and the state file and the daemon get its new path. */
static void follow_mountpoint(int target_fd, char **abs)
{
	char link[64], buf[PATH_MAX];
	ssize_t n;
	char *now;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", target_fd);
	n = readlink(link, buf, sizeof(buf) - 1);
	if (n <= 0 || (size_t)n >= sizeof(buf) - 1 || buf[0] != '/')
		return;
	buf[n] = 0;
	if (!strcmp(buf, *abs) || !util_json_text_ok(buf) || !(now = strdup(buf)))
		return;
	log_info("the mountpoint '%s' moved to '%s' during the mount", *abs, now);
	free(*abs);
	*abs = now;
}

static int open_mountpoint(const char *mountpoint, int *ret_fd, char **ret_abs,
			   struct util_error *err)
{
	_cleanup_close_ int fd = -1;
	char *abs;
	int r;

	fd = open(mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			util_err_set(err, r, "mountpoint '%s' does not exist; create it first",
				     mountpoint);
		else if (r == -ENOTDIR)
			util_err_set(err, r, "mountpoint '%s' is not a directory", mountpoint);
		else
			util_err_set(err, r, "mountpoint '%s': %s", mountpoint, strerror(-r));
		return r;
	}
	abs = realpath(mountpoint, NULL);
	if (!abs) {
		r = -errno;
		return util_err_set(err, r, "mountpoint '%s': %s", mountpoint, strerror(-r));
	}
	if (!util_json_text_ok(abs)) {
		free(abs);
		return util_err_set(err, -EINVAL,
				    "mountpoint '%s' is not valid UTF-8: it goes into the mount's "
				    "state file; choose another",
				    mountpoint);
	}
	*ret_fd = TAKE_FD(fd);
	*ret_abs = abs;
	return 0;
}

/* One mount at a time onto a mountpoint: from the check that nothing is mounted there to
 * the state file, a lock in the run directory named by the directory's dev and inode. */
struct mountpoint_lock {
	int dirfd, fd;
	char name[64];
};

static void mountpoint_unlock(struct mountpoint_lock *l)
{
	if (l->fd < 0)
		return;
	(void)unlinkat(l->dirfd, l->name, 0); /* a mount waiting takes a new one */
	close(l->fd);
	l->fd = -1;
}

static int mountpoint_lock(struct mountpoint_lock *l, int run_fd, int target_fd,
			   const char *mountpoint, struct util_error *err)
{
	struct stat st;
	int r;

	if (fstat(target_fd, &st) < 0)
		return util_err_set(err, -errno, "mountpoint '%s': %s", mountpoint,
				    strerror(errno));
	snprintf(l->name, sizeof(l->name), "mountpoint-%llx-%llx.lock",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	l->dirfd = run_fd;
	r = util_lock_at(run_fd, l->name, true, &l->fd);
	if (r < 0)
		return util_err_set(err, r, "locking mountpoint '%s' in the run directory: %s",
				    mountpoint, strerror(-r));
	return 0;
}

/* Is path a, or anything under it, b? (Both absolute and resolved.) */
static bool path_under(const char *b, const char *a)
{
	size_t n = strlen(a);

	return !strncmp(b, a, n) && (b[n] == 0 || b[n] == '/' || (n == 1 && a[0] == '/'));
}

/* A mount on the cache or run directory, inside one or over one (on a directory above it),
 * would hide what the daemon and later commands find there. */
static int refuse_inside(const char *mnt_abs, const char *mountpoint, const char *cache_dir,
			 const char *run_dir, struct util_error *err)
{
	const char *what[2] = {"cache", "run"}, *dirs[2] = {cache_dir, run_dir};

	for (int i = 0; i < 2; i++) {
		_cleanup_free_ char *d = realpath(dirs[i], NULL);

		if (d && path_under(mnt_abs, d))
			return util_err_set(
			    err, -EINVAL,
			    "mountpoint '%s' is inside the %s directory '%s'; mount "
			    "somewhere else",
			    mountpoint, what[i], dirs[i]);
		if (d && path_under(d, mnt_abs))
			return util_err_set(
			    err, -EINVAL,
			    "a mount on '%s' would hide the %s directory '%s' under "
			    "it; mount somewhere else",
			    mountpoint, what[i], dirs[i]);
	}
	return 0;
}

/* The cache data file the daemon serves, opened once (no symlink) and checked: a regular
 * file of root's that nobody else may write. */
static int open_data_file(const char *path, int *ret_fd, struct util_error *err)
{
	_cleanup_close_ int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;

	if (fd < 0 || fstat(fd, &sb) < 0) {
		int e = errno;

		return util_err_set(err, -e, "opening the cache file '%s': %s", path, strerror(e));
	}
	if (!S_ISREG(sb.st_mode) || sb.st_uid != 0 || (sb.st_mode & 022) || sb.st_nlink == 0) {
		return util_err_set(
		    err, -EPERM,
		    "the cache file '%s' is not a regular file of root's that only root may "
		    "write; remove it and mount again",
		    path);
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int same_file(const char *path, int fd)
{
	struct stat a, b;

	if (lstat(path, &a) < 0 || fstat(fd, &b) < 0)
		return -errno;
	return util_same_file(&a, &b) ? 0 : -ESTALE;
}

/*
 * The read-ahead of the mount: 2 MiB once at least half of the entry is present, else the
 * kernel's (128 KiB). Every read of a marked file raises an event, even of bytes that are
 * present (DESIGN fact 8); larger reads make fewer of them (a warm sequential read of a
 * half-present image: 0.8 of a local mount's speed with 128 KiB, 1.0 with 2 MiB). On a mostly
 * missing entry a larger read would wait for more bytes to arrive, and fault-around of a
 * program's pages would fetch more of them.
 */
static unsigned readahead_kb(const struct fetch_status *s)
{
	if (s->size == 0 || s->present_bytes < s->size / 2)
		return 0;
	return MOUNT_WARM_READAHEAD_KB;
}

static int do_mount(const struct mount_request *req, struct mount_result *res, int *ret_class,
		    struct util_error *err)
{
	_cleanup_(oci_options_free) struct oci_options oo = { .layer = -1 };
	_cleanup_(oci_ref_freep) struct oci_ref *ref = NULL;
	_cleanup_(mount_resolved_done) struct mount_resolved rs = { 0 };
	_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;
	_cleanup_(mount_profile_freep) struct mount_profile *profile = NULL;
	_cleanup_close_ int target_fd = -1, run_fd = -1, data_fd = -1, mfd = -1;
	_cleanup_(mountpoint_unlock) struct mountpoint_lock mp_lock = {.fd = -1};
	_cleanup_free_ char *mnt_abs = NULL, *pub_source = NULL, *metrics_dir = NULL;
	_cleanup_free_ char *state_text = NULL;
	struct fetch_config cfg = { 0 };
	struct mount_state st = { 0 };
	struct fetch_status ready;
	char optbuf[128], state_file[32];
	const char *cache_dir, *run_dir;
	bool mounted = false;
	uint64_t t0 = util_now_ms(), t;
	int r;

	memset(res, 0, sizeof(*res));
	*ret_class = MOUNT_FAIL_OTHER;
	cache_dir = mount_cache_dir_of(req->cache_dir, req->opts);
	run_dir = req->run_dir ? req->run_dir : mount_env_run_dir();
	r = mount_check_dir_paths(cache_dir, run_dir, err);
	if (r < 0)
		return r;
	r = mount_parse_source(req->source, req->oci, &ref, &pub_source, ret_class, err);
	if (r < 0)
		return r;
	r = mount_pull_options(req->oci, ref, run_dir, &oo, &metrics_dir, err);
	if (r < 0)
		return r;

	r = open_mountpoint(req->mountpoint, &target_fd, &mnt_abs, err);
	if (r < 0)
		return r;
	r = mount_check_cache_fs(cache_dir, err);
	if (r < 0)
		return r;
	r = mount_open_run_dir(run_dir, &run_fd, err);
	if (r < 0)
		return r;
	r = refuse_inside(mnt_abs, req->mountpoint, cache_dir, run_dir, err);
	if (r < 0)
		return r;
	r = mountpoint_lock(&mp_lock, run_fd, target_fd, req->mountpoint, err);
	if (r < 0)
		return r;
	r = refuse_mounted(mnt_abs, req->mountpoint, pub_source, req->opts->helper, run_fd, err);
	if (r < 0)
		return r;
	if (r > 0) {
		res->already = true;
		return 0;
	}

	/* Resolve the reference to one blob. */
	t = util_now_ms();
	r = mount_resolve(ref, &oo, cache_dir, pub_source, &rs, err);
	if (r < 0)
		return r;
	cfg.blob = rs.blob;
	res->offline = rs.offline;
	res->resolve_ms = util_now_ms() - t;
	snprintf(res->digest, sizeof(res->digest), "%s", cfg.blob.digest);
	res->size = cfg.blob.size;

	cfg.sparse = !mount_cache_max_apply(cache_dir, run_dir, rs.blob.cache_key, rs.blob.size);
	/* Start or join the entry's daemon: the data file is marked before anything mounts it. */
	t = util_now_ms();
	cfg.cache_dir = cache_dir;
	cfg.run_dir = run_dir;
	cfg.ref = ref;
	if (rs.client)
		oci_client_export_rests(rs.client, &oo);
	cfg.opts = &oo;
	cfg.prefetch_all = req->opts->prefetch_all;
	cfg.timeout_ms = req->opts->timeout_ms;
	cfg.timeout_given = req->opts->timeout_given;
	cfg.transport = mount_transport(&rs);
	cfg.metrics_dir = metrics_dir;
	{
		struct util_error ferr = UTIL_ERROR_INIT;

		r = fetch_daemon_ensure(&cfg, &h, &ferr);
		if (r < 0) {
			return util_err_set(err, r, "starting the fetch daemon: %s",
					    util_err_msg(&ferr, r));
		}
	}
	res->daemon_pid = h->pid;
	res->daemon_ms = util_now_ms() - t;

	/* From here on the daemon exists: every failure path below undoes what it made.
	 * A startup profile's replay starts now, while the walk runs: a profile=PATH at once, one
	 * attached to the image as soon as a lookup thread finds it (no lookup for an entry that
	 * is complete or used offline: nothing would be fetched). */
	if (req->opts->profile != MOUNT_PROFILE_NONE) {
		struct fetch_status fst;
		bool lookup = rs.client && !ref->is_url &&
			      (fetch_status(h, &fst) < 0 || fst.present_bytes < fst.size);

		r = mount_profile_start(h, req->opts, ref, &oo, &cfg.blob, lookup, res,
					&profile);
		if (r < 0)
			log_debug("not looking up a startup profile: %s", strerror(-r));
	}
	t = util_now_ms();
	res->reply_us = rs.client ? oci_client_reply_us(rs.client) : 0;
	r = prefetch_metadata(h, cfg.blob.size, rs.client ? oci_client_metamap(rs.client) : NULL,
			      res, err);
	if (r < 0) {
		/* Its messages are about the image: name it. */
		mount_err_name_image(err, pub_source, cfg.blob.digest);
		goto undo;
	}
	res->walk_ms = util_now_ms() - t;
	mount_profile_finish(profile, res);

	t = util_now_ms();
	r = open_data_file(h->data_path, &data_fd, err);
	if (r < 0)
		goto undo;
	/* The daemon must be ready for a mount (out of this command's cgroup), and the file
	 * opened the daemon's own, before the kernel mounts it. */
	{
		struct util_error serr = UTIL_ERROR_INIT;

		r = fetch_status_before_mount(h, &ready, data_fd, &serr);
		if (r < 0) {
			util_err_set(err, r, "the fetch daemon refused the mount: %s; mount again",
				     util_err_msg(&serr, r));
			goto undo;
		}
	}
	/* By path: mountinfo shows it, and the daemon finds its superblocks by it. The path
	 * must still name the file checked above once the kernel has opened it. */
	r = mount_kernel_erofs(h->data_path, req->opts->attr, readahead_kb(&ready), &mfd,
			       &res->mnt_id, err);
	if (r < 0)
		goto undo;
	r = same_file(h->data_path, data_fd);
	if (r < 0) {
		util_err_set(err, r, "the cache file '%s' was replaced while it was mounted",
			     h->data_path);
		goto undo;
	}
	/* Attached before it is placed: from the moment anyone can read through the mount,
	 * the daemon stays for it, even if this command is killed right after placing it (in a
	 * container's mount namespace the daemon could not find it later). Killed before, the
	 * mount goes with its fd and the daemon sees its superblock go. */
	follow_mountpoint(target_fd, &mnt_abs);
	mount_state_name(res->mnt_id, state_file);
	st.mnt_id = res->mnt_id;
	st.pid = h->pid;
	st.mounted_by = getpid();
	st.mnt_ns = mount_ns_id();
	st.mountpoint = mnt_abs;
	st.source = pub_source;
	st.digest = cfg.blob.digest[0] ? cfg.blob.digest : NULL;
	st.cache = h->data_path;
	st.socket = h->socket_path;
	st.options = (char *)mount_attr_format(req->opts->attr, optbuf, sizeof(optbuf));
	st.size = cfg.blob.size;
	st.transport = (char *)cfg.transport;
	/* The daemon keeps the state file's text too: it writes it again should the run
	 * directory lose it while the mount lives. */
	if (mount_state_to_json(&st, &state_text) < 0)
		state_text = NULL;
	r = fetch_attach(h, res->mnt_id, mfd, mnt_abs, pub_source, state_file, state_text);
	if (r < 0) {
		util_err_set(err, r, "registering the mount with the fetch daemon: %s",
			     strerror(-r));
		goto undo;
	}
	r = mount_kernel_place(mfd, target_fd, err);
	if (r < 0)
		goto undo;
	mounted = true;
	/* Placed, its fd would only keep it busy (an umount, ours below too, gets EBUSY). */
	close(TAKE_FD(mfd));
	/* The daemon that took the attach must still be there now that readers can come: one
	 * killed in between took its mark with it, and reads would get zeros. */
	{
		struct fetch_status alive;

		r = fetch_status(h, &alive);
		if (r < 0) {
			util_err_set(err, r,
				     "the fetch daemon went away while the image was being mounted "
				     "(%s); see %s/daemon-%s.log, and mount again",
				     strerror(-r), run_dir, cfg.blob.cache_key);
			goto undo;
		}
	}
	res->kmount_ms = util_now_ms() - t;

	/* Written once the mount is in the table: `status` drops a state file whose mount it
	 * cannot find. */
	r = mount_state_write(run_fd, &st);
	if (r < 0) {
		util_err_set(err, r, "writing the state file in '%s': %s", run_dir, strerror(-r));
		goto undo;
	}
	res->total_ms = util_now_ms() - t0;
	return 0;

undo:
	/* A mount never placed goes with its fd. A placed one: not a lazy unmount: someone who
	 * entered the mount meanwhile would keep its superblock alive out of every mount table,
	 * where the daemon cannot find it, and it would leave with the reads through it getting
	 * zeros. A busy mount stays, in the mount table, where the daemon finds it (and
	 * `lazyerofs umount` takes it away). */
	if (mounted && umount2(mnt_abs, UMOUNT_NOFOLLOW) < 0) {
		if (errno == EBUSY)
			log_warning(
			    "the failed mount at '%s' is in use and stays mounted; unmount it "
			    "with 'lazyerofs umount' once it is free",
			    mnt_abs);
		else
			log_debug("undo: unmounting '%s': %m", mnt_abs);
	}
	/* The daemon notices the superblock's release (DESIGN fact 13) and, with no mount
	 * attached, exits on its own once our handle goes. */
	return r;
}

int mount_do(const struct mount_request *req, struct mount_result *res, int *ret_class,
	     struct util_error *err)
{
	int r = do_mount(req, res, ret_class, err);

	if (r < 0)
		mount_sanitize_line(err ? err->message : NULL);
	return r;
}
