// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the walker's I/O over the cache file: the same walk result as a plain file
 * read on every fixture layout, with every wave ensured before it is loaded, and correct with
 * a memory cap small enough to force evictions, and with waves loaded through a pre-mark fd
 * that never reads what was not ensured. fetch_ensure_needed is replaced here by a
 * recorder (the real one talks to a daemon). */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mount/walkio.h"
#include "util/extents.h"

/* The fake daemon: the cache file starts as holes (plus the superblock block, which the
 * walker reads before its first wave; the real daemon serves that through an event) and
 * ensure copies the asked ranges, block-aligned, from the image. Anything the walk reads
 * that was not ensured reads zeros and breaks the comparison. */
static int image_fd = -1, cache_fd = -1;
static uint64_t image_size;
static unsigned ensure_calls;
static unsigned ensure_running, ensure_overlap; /* batches in the fake now; most at once */
static uint64_t link_us_per_kib; /* a slow fake link: each batch sleeps this per KiB ... */
static uint64_t link_fixed_us;   /* ... and this much */
static unsigned fail_call;       /* the ensure call that fails (0: none) */
static uint64_t ensure_ranges, ensure_bytes;
static uint64_t group_gap, group_budget; /* the grouping walk_cached sets */

static void copy_range(uint64_t off, uint64_t len)
{
	uint64_t start = off & ~4095ULL, end = (off + len + 4095) & ~4095ULL;
	static char buf[1 << 16];

	if (end > image_size)
		end = image_size;
	while (start < end) {
		size_t n = end - start < sizeof(buf) ? (size_t)(end - start) : sizeof(buf);

		assert_int_equal(pread(image_fd, buf, n, (off_t)start), (ssize_t)n);
		assert_int_equal(pwrite(cache_fd, buf, n, (off_t)start), (ssize_t)n);
		start += n;
	}
}

/* The walk I/O calls it from its workers. */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;

int fetch_ensure_needed(struct fetch_handle *h, const struct util_extent *v, size_t n,
			const struct util_extent *need, size_t nneed, struct util_error *err)
{
	uint64_t kib = 0;

	for (size_t i = 0; i < n; i++)
		kib += v[i].length >> 10;
	if (link_us_per_kib) {
		pthread_mutex_lock(&fake_lock);
		ensure_running++;
		if (ensure_running > ensure_overlap)
			ensure_overlap = ensure_running;
		pthread_mutex_unlock(&fake_lock);
		usleep((useconds_t)(link_fixed_us + kib * link_us_per_kib));
		pthread_mutex_lock(&fake_lock);
		ensure_running--;
		pthread_mutex_unlock(&fake_lock);
	}
	pthread_mutex_lock(&fake_lock);
	ensure_calls++;
	if (fail_call && ensure_calls == fail_call) {
		pthread_mutex_unlock(&fake_lock);
		return util_err_set(err, -EACCES, "the registry said no (batch %u)", fail_call);
	}
	ensure_ranges += n;
	for (size_t i = 0; i < n; i++) {
		if (i) /* sorted, disjoint */
			assert_true(v[i - 1].offset + v[i - 1].length < v[i].offset);
		ensure_bytes += v[i].length;
		copy_range(v[i].offset, v[i].length);
	}
	pthread_mutex_unlock(&fake_lock);
	return 0;
}

/* Without a daemon (a NULL handle) the walk I/O's workers connect to nothing. */
int fetch_connect(const char *socket_path, struct fetch_handle **ret)
{
	(void)socket_path;
	*ret = NULL;
	return -ENOSYS;
}

void fetch_handle_free(struct fetch_handle *h)
{
	assert_null(h);
}

/* The daemon's counters, as the walk I/O reads them to tell the link's rate: everything an
 * ensure asked for counts as fetched, unless `cached` (a cache entry filled before). */
static bool cached;

int fetch_status(struct fetch_handle *h, struct fetch_status *ret)
{
	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&fake_lock);
	ret->fetched_bytes = cached ? 0 : ensure_bytes;
	pthread_mutex_unlock(&fake_lock);
	return 0;
}

static const char *fixtures(void)
{
	const char *d = getenv("LAZYEROFS_FIXTURES");

	return d && *d ? d : "tests/fixtures";
}

static int open_fixture(const char *name, uint64_t *size)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s.erofs", fixtures(), name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	*size = (uint64_t)lseek(fd, 0, SEEK_END);
	return fd;
}

static void walk_plain(int fd, struct util_extents *ret, struct erofs_walk_stats *st)
{
	struct erofs_io io;
	struct erofs_walk_opts o = { .merge_gap = EROFS_DEFAULT_MERGE_GAP };
	struct util_error err = UTIL_ERROR_INIT;

	assert_int_equal(erofs_io_from_fd(&io, fd), 0);
	util_extents_init(ret);
	assert_int_equal(erofs_walk(&io, &o, ret, st, &err), 0);
}

static void walk_cached(int fd, int premark, uint64_t size, uint64_t cap,
			struct util_extents *ret, struct erofs_walk_stats *st,
			struct mount_walkio_stats *ws)
{
	struct mount_walkio *w = NULL;
	struct erofs_io io;
	struct erofs_walk_opts o = { .merge_gap = EROFS_DEFAULT_MERGE_GAP };
	struct util_error err = UTIL_ERROR_INIT;
	struct util_error ferr = UTIL_ERROR_INIT;

	assert_int_equal(mount_walkio_new(fd, premark, NULL, size, cap, &ferr, &w), 0);
	mount_walkio_io(w, &io);
	mount_walkio_set_grouping(w, &(struct mount_grouping){ .merge_gap = group_gap,
							       .max_gap = 64u << 10,
							       .budget = group_budget });
	util_extents_init(ret);
	assert_int_equal(erofs_walk(&io, &o, ret, st, &err), 0);
	*ws = *mount_walkio_stats(w);
	mount_walkio_free(w);
}

/* An empty cache file of the image's size (unlinked: it goes with its fd), in cache_fd. */
static void new_cache(char *path)
{
	cache_fd = mkstemp(path);
	assert_true(cache_fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(cache_fd, (off_t)image_size), 0);
}

/* premark: load waves through a second, read-only fd of the cache file (the daemon's pre-mark
 * fd), and read everything else through the image itself (the marked fd: the real daemon
 * fetches what such a read lacks). A load of anything not ensured through the pre-mark fd
 * reads zeros from holes and breaks the comparison. */
static void check_layout_with(const char *name, uint64_t cap, bool premark)
{
	struct util_extents a, b;
	struct erofs_walk_stats sa, sb;
	struct mount_walkio_stats ws;
	char path[] = "/tmp/lazyerofs-walkio-XXXXXX", proc[64];
	int rfd = -1;

	image_fd = open_fixture(name, &image_size);
	new_cache(path);
	copy_range(0, 4096);
	ensure_calls = 0;
	ensure_ranges = ensure_bytes = 0;

	if (premark) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", cache_fd);
		rfd = open(proc, O_RDONLY | O_CLOEXEC);
		assert_true(rfd >= 0);
	}

	walk_plain(image_fd, &a, &sa);
	if (premark)
		walk_cached(image_fd, rfd, image_size, cap, &b, &sb, &ws);
	else
		walk_cached(cache_fd, -1, image_size, cap, &b, &sb, &ws);
	/* Same ranges, same inodes: the cache served exactly the image's bytes. */
	assert_int_equal(a.n, b.n);
	for (size_t i = 0; i < a.n; i++) {
		assert_true(a.v[i].offset == b.v[i].offset);
		assert_true(a.v[i].length == b.v[i].length);
	}
	/* (Read counts differ: with prefetch the walk goes in rounds, without it in one.) */
	assert_true(sa.inodes == sb.inodes && sa.dirents == sb.dirents);
	/* Every wave went to the daemon first; most reads came from memory. */
	assert_true(ensure_calls == ws.batches && ws.batches > 0);
	/* The walk's own count may leave out a read of its own (the superblock). */
	assert_true(ws.cached_reads + ws.direct_reads >= sb.reads &&
		    ws.cached_reads + ws.direct_reads <= sb.reads + 2);
	assert_true(ws.loaded_bytes > 0);
	if (premark)
		assert_true(ws.premark_preads == ws.preads && ws.preads > 0);
	else
		assert_true(ws.premark_preads == 0);
	if (cap >= (64u << 20))
		assert_true(ws.cached_reads * 10 >= sb.reads * 9);
	else /* memory pressure: waves dropped, or too big to keep and read directly */
		assert_true(ws.evicted > 0 || ws.direct_reads > 0);
	util_extents_free(&a);
	util_extents_free(&b);
	if (rfd >= 0)
		close(rfd);
	close(cache_fd);
	close(image_fd);
}

static void check_layout(const char *name, uint64_t cap)
{
	check_layout_with(name, cap, false);
	check_layout_with(name, cap, true);
}

static const char *const layouts[] = {
	"plain", "lz4hc", "lzma", "deflate", "zstd", "chunked", "ztailpacking", "fragments",
	"allfragments", "metazone", "metacompress", "extended-inodes", "bs1k",
};

static void test_layouts(void **state)
{
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
		print_message("layout %s\n", layouts[i]);
		check_layout(layouts[i], 256u << 20);
	}
}

static void test_tiny_cap_evicts(void **state)
{
	check_layout("plain", 16384);
	check_layout("lz4hc", 16384);
}

/* The mount's grouping of rounds (mount/rounds.c) changes how many ranges go to the daemon,
 * never the walk's result: merging and bridging gaps asks for fewer ranges, a few more bytes. */
static void test_grouping(void **state)
{
	static const char *const names[] = { "plain", "lz4hc", "bs1k", "metazone" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uint64_t ranges0, bytes0;

		group_gap = group_budget = 0;
		check_layout_with(names[i], 256u << 20, true);
		ranges0 = ensure_ranges;
		bytes0 = ensure_bytes;
		group_gap = 16384;
		group_budget = image_size / 10;
		check_layout_with(names[i], 256u << 20, true);
		print_message("%-10s exact: %llu ranges, %llu bytes; grouped: %llu ranges, %llu bytes\n",
			      names[i], (unsigned long long)ranges0, (unsigned long long)bytes0,
			      (unsigned long long)ensure_ranges, (unsigned long long)ensure_bytes);
		assert_true(ensure_ranges <= ranges0);
		assert_true(ensure_bytes >= bytes0 || ensure_ranges < ranges0);
	}
	group_gap = group_budget = 0;
}

/* The gap worth bridging follows what rounds fetched: with every block in the cache already,
 * fast rounds tell nothing of the link and nothing is bridged beyond the merge gap; fetched,
 * the same rounds tell a fast link. On the Debian minbase image of bench/walk-bench (its
 * rounds are large enough to tell a rate), when it was built. */
static void test_rate_from_fetched(void **state)
{
	const char *name = "bench/out/rootfs-bookworm-minbase-lz4hc.erofs";
	uint64_t gap[2];

	image_fd = open(name, O_RDONLY | O_CLOEXEC);
	if (image_fd < 0)
		skip(); /* the benchmark's image, when it was built */
	image_size = (uint64_t)lseek(image_fd, 0, SEEK_END);
	for (int c = 0; c < 2; c++) {
		struct util_error err = UTIL_ERROR_INIT, ferr = UTIL_ERROR_INIT;
		char path[] = "/tmp/lazyerofs-walkio-XXXXXX";
		struct mount_walkio *w = NULL;
		struct erofs_walk_stats st;
		struct util_extents ext;
		struct erofs_io io;

		cached = c;
		new_cache(path);
		copy_range(0, 4096);
		assert_int_equal(
		    mount_walkio_new(cache_fd, -1, NULL, image_size, 256u << 20, &ferr, &w), 0);
		mount_walkio_io(w, &io);
		mount_walkio_set_grouping(w, &(struct mount_grouping){ .merge_gap = 16384,
								       .max_gap = 1u << 20,
								       .budget = image_size / 10,
								       .range_cost_us = 300 });
		util_extents_init(&ext);
		assert_int_equal(erofs_walk(&io, &(struct erofs_walk_opts){0}, &ext, &st, &err), 0);
		gap[c] = mount_walkio_stats(w)->bridge_gap;
		util_extents_free(&ext);
		mount_walkio_free(w);
		close(cache_fd);
	}
	close(image_fd);
	cached = false;
	print_message("gap worth bridging: %llu fetched, %llu cached\n", (unsigned long long)gap[0],
		      (unsigned long long)gap[1]);
	assert_true(gap[0] > 16384 && gap[0] <= (1u << 20));
	assert_int_equal(gap[1], 0);
}

/* A bridged gap is present but not loaded: a read of it loads it then (through the pre-mark
 * fd: no event), and later reads of it come from memory. */
static void test_bridged_lazy_load(void **state)
{
	char path[] = "/tmp/lazyerofs-walkio-XXXXXX", proc[64];
	struct util_extent want[2] = { { 0, 4096 }, { 5 * 4096, 4096 } };
	const struct mount_walkio_stats *ws;
	struct mount_walkio *w = NULL;
	struct util_error ferr = UTIL_ERROR_INIT;
	char a[100], b[100];
	struct erofs_io io;
	int rfd;

	image_fd = open_fixture("plain", &image_size);
	new_cache(path);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", cache_fd);
	rfd = open(proc, O_RDONLY | O_CLOEXEC);
	assert_true(rfd >= 0);
	ensure_ranges = ensure_bytes = 0;
	/* the marked fd is the image itself, as in check_layout_with(): a direct read would
	 * still see the right bytes, so count them instead */
	assert_int_equal(mount_walkio_new(image_fd, rfd, NULL, image_size, 256u << 20, &ferr, &w),
			 0);
	mount_walkio_io(w, &io);
	mount_walkio_set_grouping(w, &(struct mount_grouping){ .merge_gap = 16384 });
	assert_false(io.present(io.ctx, 2 * 4096, 10));
	assert_int_equal(io.prefetch(io.ctx, want, 2), 0);
	/* one range went out, the gap bridged: blocks 0-5 present, 6 not */
	assert_int_equal(ensure_ranges, 1);
	assert_int_equal(ensure_bytes, 6 * 4096);
	assert_true(io.present(io.ctx, 2 * 4096, 10));
	assert_false(io.present(io.ctx, 6 * 4096, 10));
	assert_false(io.present(io.ctx, image_size - 1, 2)); /* beyond the end */
	ws = mount_walkio_stats(w);
	assert_int_equal(ws->loaded_bytes, 2 * 4096); /* only what was asked for */
	for (int k = 0; k < 2; k++) {
		assert_int_equal(io.read(io.ctx, a, sizeof(a), 2 * 4096 + 50), 0);
		assert_int_equal(pread(image_fd, b, sizeof(b), 2 * 4096 + 50), (ssize_t)sizeof(b));
		assert_memory_equal(a, b, sizeof(a));
	}
	assert_int_equal(ws->lazy_loads, 1);
	assert_int_equal(ws->direct_reads, 0);
	assert_int_equal(ws->cached_reads, 2);
	assert_true(ws->premark_preads == ws->preads);
	mount_walkio_free(w);
	close(rfd);
	close(cache_fd);
	close(image_fd);
}

/* A walk of the benchmark's minbase image (skips without it) behind the fake's slow link,
 * beside the plain walk's result to compare with. */
struct slow_walk {
	char path[32]; /* its cache file */
	struct util_extents a, b; /* the plain walk's result; this walk's */
	struct erofs_walk_stats sa, sb;
	struct mount_walkio *w;
	struct erofs_io io;
	struct erofs_walk_opts o;
	struct util_error err, ferr; /* the walk's; the walk I/O's */
};

/* The fake's link at fixed_us a batch and us_per_kib a KiB, a fresh cache file, the plain
 * walk's result in t->a and t->sa, and a walk I/O over the cache that groups as a mount does;
 * t->b empty for the walk. */
static void slow_walk_start(struct slow_walk *t, uint64_t fixed_us, uint64_t us_per_kib)
{
	*t = (struct slow_walk){ .path = "/tmp/lazyerofs-walkio-XXXXXX",
				 .o = { .merge_gap = EROFS_DEFAULT_MERGE_GAP } };
	image_fd = open("bench/out/rootfs-bookworm-minbase-lz4hc.erofs", O_RDONLY | O_CLOEXEC);
	if (image_fd < 0)
		skip(); /* the benchmark's image, when it was built */
	image_size = (uint64_t)lseek(image_fd, 0, SEEK_END);
	new_cache(t->path);
	copy_range(0, 4096);
	ensure_calls = 0;
	ensure_ranges = ensure_bytes = 0;
	ensure_overlap = 0;
	cached = false;
	link_us_per_kib = us_per_kib;
	link_fixed_us = fixed_us;
	walk_plain(image_fd, &t->a, &t->sa);
	assert_int_equal(mount_walkio_new(cache_fd, -1, NULL, image_size, 256u << 20, &t->ferr,
					  &t->w),
			 0);
	mount_walkio_io(t->w, &t->io);
	mount_walkio_set_grouping(t->w, &(struct mount_grouping){ .merge_gap = 4096,
								  .max_gap = 1u << 20,
								  .budget = image_size / 10,
								  .range_cost_us = 300 });
	util_extents_init(&t->b);
}

/* The end of a slow walk: its batches still out waited for, everything closed. */
static void slow_walk_done(struct slow_walk *t)
{
	mount_walkio_free(t->w); /* waits for the batches still on their way */
	fail_call = 0;
	link_us_per_kib = 0;
	util_extents_free(&t->a);
	util_extents_free(&t->b);
	close(cache_fd);
	close(image_fd);
}

/* Over a slow link (the fake sleeps per KiB, and 50 ms per batch) the rounds of a large image
 * go out in parts, run by several workers at once, and the walk goes on as they come back: the
 * same result. Where a round trip is quick (1 ms: loopback), or as slow as a loaded registry
 * on loopback answers on its own (25 ms: under walkio.c's WIO_SPLIT_RTT_US, 35 ms), a round
 * stays one batch. */
static void check_pipelined(uint64_t fixed_us, uint64_t us_per_kib, unsigned fail)
{
	struct slow_walk t;
	const struct mount_walkio_stats *ws;

	slow_walk_start(&t, fixed_us, us_per_kib);
	fail_call = fail;
	if (fail) {
		/* a batch fails while others are on their way: the walk fails with its words */
		char want[64];

		assert_int_equal(erofs_walk(&t.io, &t.o, &t.b, &t.sb, &t.err), -EACCES);
		snprintf(want, sizeof(want), "the registry said no (batch %u)", fail);
		assert_string_equal(t.ferr.message, want);
		print_message("pipelined, batch %u failing: %u batches sent\n", fail, ensure_calls);
		slow_walk_done(&t);
		return;
	}
	assert_int_equal(erofs_walk(&t.io, &t.o, &t.b, &t.sb, &t.err), 0);
	assert_int_equal(mount_walkio_flush(t.w), 0);
	ws = mount_walkio_stats(t.w);
	print_message("pipelined: %u batches for %llu walk rounds, at most %u at once, %llu "
		      "rewaits\n",
		      ensure_calls, (unsigned long long)t.sb.prefetches, ensure_overlap,
		      (unsigned long long)ws->rewaits);
	assert_int_equal(t.a.n, t.b.n);
	assert_memory_equal(t.a.v, t.b.v, t.a.n * sizeof(*t.a.v));
	assert_true(t.sa.inodes == t.sb.inodes && t.sa.dirents == t.sb.dirents);
	assert_true(ensure_calls == ws->batches);
	if (fixed_us >= 35000) {
		/* split, in flight together, and the walk went on before a round was all back */
		assert_true(ensure_overlap > 1);
		assert_true(t.sb.prefetches > 9);
	} else {
		assert_int_equal(ensure_overlap, 1);
		assert_true(ensure_calls == t.sb.prefetches);
	}
	slow_walk_done(&t);
}

/* A walk stopped by its file hook while its batches are on their way (mount.c walks again
 * without the hook when a file's data map is corrupt): the next walk on the same I/O finds
 * blocks the first one asked for still out, and ends with the same result as a plain walk.
 * (It prints how often a batch came back with nothing of a round: 0 so far, so this does not
 * exercise walkio.c's wait for the next batch.) */
static unsigned hook_calls, hook_fail_at;

static int failing_hook(void *ctx, uint64_t nid, uint64_t size, const struct util_extent *v,
			size_t n)
{
	(void)ctx, (void)nid, (void)size, (void)v, (void)n;
	return ++hook_calls == hook_fail_at ? -EUCLEAN : 0;
}

static void check_walk_again(unsigned fail_at)
{
	struct slow_walk t;

	slow_walk_start(&t, 50000, 20);
	hook_calls = 0;
	hook_fail_at = fail_at;
	t.o.on_file = failing_hook;
	assert_int_equal(erofs_walk(&t.io, &t.o, &t.b, &t.sb, &t.err), -EUCLEAN);
	print_message("stopped after %u files, %u batches sent, %u running\n", hook_calls,
		      ensure_calls, ensure_running);
	util_extents_free(&t.b);
	util_extents_init(&t.b);
	util_err_clear(&t.err);
	t.o.on_file = NULL;
	if (erofs_walk(&t.io, &t.o, &t.b, &t.sb, &t.err) != 0)
		fail_msg("the second walk: %s / %s", t.err.message, t.ferr.message);
	assert_int_equal(mount_walkio_flush(t.w), 0);
	print_message("walked again: %llu batch(es) came back with nothing of the round\n",
		      (unsigned long long)mount_walkio_stats(t.w)->rewaits);
	assert_int_equal(t.a.n, t.b.n);
	assert_memory_equal(t.a.v, t.b.v, t.a.n * sizeof(*t.a.v));
	slow_walk_done(&t);
}

static void test_walk_again_with_batches_out(void **state)
{
	(void)state;
	for (unsigned at = 1000; at <= 3000; at += 1000)
		check_walk_again(at);
}

static void test_pipelined(void **state)
{
	(void)state;
	check_pipelined(50000, 20, 0); /* ~50 MB/s */
	check_pipelined(25000, 20, 0);
	check_pipelined(1000, 20, 0);
	check_pipelined(50000, 20, 12);
	/* A long, slow link: parts of 64 KiB, more than WIO_MAX_JOBS of them out at once, so a
	 * round's fresh ranges wait for a free slot; the walk must not take a batch of an
	 * earlier round for its own (it did: "prefetch left ... absent (nothing arrived)"). */
	check_pipelined(150000, 200, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_walk_again_with_batches_out),
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_tiny_cap_evicts),
		cmocka_unit_test(test_grouping),
		cmocka_unit_test(test_bridged_lazy_load),
		cmocka_unit_test(test_rate_from_fetched),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
