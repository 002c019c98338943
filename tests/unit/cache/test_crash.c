// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The cache entry under a simulated filesystem (cache_io_set): power loss at a random point of
 * a fill, a failing fdatasync, a full disk. The simulation keeps, per file, the bytes that are
 * durable (as of the last successful sync) and which 4 KiB pages were written since. A crash
 * keeps each of those pages or not, at random, as a disk may; a failed fdatasync marks its
 * pages clean without making them durable, as Linux does (it reports the error once). After a
 * "reboot" (the crash image written to the real files), every block the reloaded bitmap
 * claims must equal the source bytes.
 *
 * LAZYEROFS_CRASHES sets the number of simulated crashes (default 300), LAZYEROFS_SEED the
 * first seed (each failure prints its seed).
 */
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
#include <unistd.h>
#include <cmocka.h>

#include "cache/cache.h"
#include "cache_test.h"
#include "util/fs.h"
#include "util/macro.h"

static const char key1[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char dig1[] =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#define PAGE	  4096u
#define MAX_FILES 8

/* ---- the simulated filesystem ------------------------------------------------------------ */

struct simfile {
	dev_t dev;
	ino_t ino;
	uint64_t size;
	uint8_t *durable; /* size bytes: what survives a crash for sure */
	uint8_t *dirty;	  /* per page: written since the last sync */
	uint8_t *image;	  /* the crash image, once crashed */
};

static struct sim {
	struct simfile files[MAX_FILES];
	size_t nfiles;
	uint64_t rng;
	uint64_t ops, crash_at; /* crash when ops reaches crash_at (0: never) */
	bool crashed;
	unsigned fail_syncs;	/* the next n fdatasync/fsync fail with EIO */
	unsigned fail_pwrites;	/* the next n pwrites write half, then fail with ENOSPC */
	bool fail_fallocate;	/* fallocate allocates half the range, then fails with ENOSPC */
	bool enospc_next;
	uint64_t syncs_failed, pages_lost_to_crash, pages_kept_by_crash;
} sim;

static uint64_t rnd(void)
{
	/* xorshift64* */
	sim.rng ^= sim.rng >> 12;
	sim.rng ^= sim.rng << 25;
	sim.rng ^= sim.rng >> 27;
	return sim.rng * UINT64_C(2685821657736338717);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void read_real(int fd, uint8_t *buf, uint64_t off, uint64_t len)
{
	if (len == 0)
		return;
	memset(buf, 0, len);
	assert_true(pread(fd, buf, len, (off_t)off) >= 0);
}

static void grow(struct simfile *f, uint64_t size)
{
	uint64_t pages = DIV_ROUND_UP(size, PAGE), old = DIV_ROUND_UP(f->size, PAGE);

	if (size <= f->size)
		return;
	f->durable = realloc(f->durable, pages * PAGE);
	f->dirty = realloc(f->dirty, pages);
	assert_non_null(f->durable);
	assert_non_null(f->dirty);
	memset(f->durable + f->size, 0, pages * PAGE - f->size);
	memset(f->dirty + old, 0, pages - old);
	f->size = size;
}

static struct simfile *file_of(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	for (size_t i = 0; i < sim.nfiles; i++)
		if (sim.files[i].ino == st.st_ino && sim.files[i].dev == st.st_dev)
			return &sim.files[i];
	assert_true(sim.nfiles < MAX_FILES);
	/* First sight: what the file holds now counts as durable (it was made before the
	 * simulation, or is empty). */
	struct simfile *f = &sim.files[sim.nfiles++];

	*f = (struct simfile){.dev = st.st_dev, .ino = st.st_ino};
	grow(f, (uint64_t)st.st_size);
	read_real(fd, f->durable, 0, f->size);
	return f;
}

/* Power loss now: the durable bytes are kept; which of the pages written since their last
 * sync also survive is drawn at reboot() (nothing touches the files in between: every op
 * fails once crashed). */
static void crash_now(void)
{
	sim.crashed = true;
	for (size_t i = 0; i < sim.nfiles; i++) {
		struct simfile *f = &sim.files[i];

		f->image = malloc(f->size ? f->size : 1);
		assert_non_null(f->image);
		if (f->size)
			memcpy(f->image, f->durable, f->size);
	}
}

/* Every op counts; the crash happens when the count reaches crash_at. Returns true when the
 * op must not happen (crashed). */
static bool tick(void)
{
	if (sim.crashed)
		return true;
	sim.ops++;
	if (sim.crash_at && sim.ops >= sim.crash_at) {
		crash_now();
		return true;
	}
	return false;
}

static int dirfd_g = -1;

static void apply_survivors(void)
{
	static const char *const names[] = {"", ".bitmap"};

	for (size_t n = 0; n < ARRAY_SIZE(names); n++) {
		char name[128];
		struct stat st;
		int fd;

		snprintf(name, sizeof(name), "%s%s", key1, names[n]);
		fd = openat(dirfd_g, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		assert_int_equal(fstat(fd, &st), 0);
		for (size_t i = 0; i < sim.nfiles; i++) {
			struct simfile *f = &sim.files[i];
			uint8_t page[PAGE];

			if (f->ino != st.st_ino || f->dev != st.st_dev || !f->image)
				continue;
			for (uint64_t p = 0; p < DIV_ROUND_UP(f->size, PAGE); p++) {
				uint64_t off = p * PAGE, len = MIN((uint64_t)PAGE, f->size - off);

				if (!f->dirty[p])
					continue;
				if (rnd() & 1) {
					read_real(fd, page, off, len);
					memcpy(f->image + off, page, len);
					sim.pages_kept_by_crash++;
				} else {
					sim.pages_lost_to_crash++;
				}
			}
		}
		close(fd);
	}
}

static ssize_t sim_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	struct simfile *f;
	ssize_t n;

	if (tick()) {
		errno = EIO;
		return -1;
	}
	f = file_of(fd);
	if (sim.enospc_next) {
		sim.enospc_next = false;
		errno = ENOSPC;
		return -1;
	}
	if (sim.fail_pwrites && len > 1) {
		sim.fail_pwrites--;
		sim.enospc_next = true;
		len /= 2;
	}
	n = pwrite(fd, buf, len, off);
	if (n > 0) {
		grow(f, (uint64_t)off + (uint64_t)n);
		for (uint64_t p = (uint64_t)off / PAGE; p <= ((uint64_t)off + (uint64_t)n - 1) / PAGE;
		     p++)
			f->dirty[p] = 1;
	}
	return n;
}

static int sim_sync(int fd)
{
	struct simfile *f;

	if (tick()) {
		errno = EIO;
		return -1;
	}
	f = file_of(fd);
	if (sim.fail_syncs) {
		/* Linux: the error is reported once and the pages are marked clean; they never
		 * reach the disk unless written again. */
		sim.fail_syncs--;
		sim.syncs_failed++;
		memset(f->dirty, 0, DIV_ROUND_UP(f->size, PAGE));
		errno = EIO;
		return -1;
	}
	for (uint64_t p = 0; p < DIV_ROUND_UP(f->size, PAGE); p++)
		if (f->dirty[p]) {
			uint64_t off = p * PAGE;

			read_real(fd, f->durable + off, off, MIN((uint64_t)PAGE, f->size - off));
			f->dirty[p] = 0;
		}
	return 0;
}

static int sim_ftruncate(int fd, off_t len)
{
	struct simfile *f;

	if (tick()) {
		errno = EIO;
		return -1;
	}
	f = file_of(fd);
	if (ftruncate(fd, len) < 0)
		return -1;
	if ((uint64_t)len < f->size) {
		/* Shrinking: the cut bytes are gone (durable as zeros when it grows again). */
		memset(f->durable + len, 0, f->size - (uint64_t)len);
	} else {
		grow(f, (uint64_t)len);
	}
	return 0;
}

static int sim_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (tick()) {
		errno = EIO;
		return -1;
	}
	(void)file_of(fd);
	if (sim.fail_fallocate) {
		/* ext4 keeps what it allocated before running out of space. */
		(void)fallocate(fd, mode, off, len / 2);
		errno = ENOSPC;
		return -1;
	}
	return fallocate(fd, mode, off, len);
}

static int sim_renameat(int a, const char *from, int b, const char *to)
{
	if (tick()) {
		errno = EIO;
		return -1;
	}
	return renameat(a, from, b, to);
}

static const struct cache_io_ops sim_ops = {
    .pwrite = sim_pwrite,
    .fdatasync = sim_sync,
    .fsync = sim_sync,
    .ftruncate = sim_ftruncate,
    .fallocate = sim_fallocate,
    .renameat = sim_renameat,
};

static void sim_reset(uint64_t seed)
{
	for (size_t i = 0; i < sim.nfiles; i++) {
		free(sim.files[i].durable);
		free(sim.files[i].dirty);
		free(sim.files[i].image);
	}
	memset(&sim, 0, sizeof(sim));
	sim.rng = seed * 0x9E3779B97F4A7C15ull + 1;
}

/* Power comes back: the files hold their crash images (or, with no crash, all that was
 * written, which a clean shutdown leaves). */
static void reboot(void)
{
	static const char *const names[] = {"", ".bitmap"};

	if (!sim.crashed)
		return;
	apply_survivors();
	for (size_t n = 0; n < ARRAY_SIZE(names); n++) {
		char name[128];
		struct stat st;
		int fd;

		snprintf(name, sizeof(name), "%s%s", key1, names[n]);
		fd = openat(dirfd_g, name, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		assert_int_equal(fstat(fd, &st), 0);
		for (size_t i = 0; i < sim.nfiles; i++) {
			struct simfile *f = &sim.files[i];

			if (f->ino != st.st_ino || f->dev != st.st_dev || !f->image)
				continue;
			assert_int_equal(ftruncate(fd, 0), 0);
			assert_int_equal(util_pwrite_full(fd, f->image, f->size, 0), 0);
		}
		close(fd);
	}
}

/* ---- fixture ------------------------------------------------------------------------------ */

#define fixture cache_test_dir

static int setup_dir(void **state)
{
	if (cache_test_dir_make("crash", (struct cache_test_dir **)state) < 0)
		return -1;
	dirfd_g = ((struct cache_test_dir *)*state)->dirfd;
	return 0;
}

static int teardown_dir(void **state)
{
	cache_io_set(NULL);
	sim_reset(0);
	return cache_test_dir_remove(*state);
}

static struct cache_entry *open_entry(struct fixture *f, uint64_t size, bool prealloc)
{
	struct cache_open_params p = {
	    .key = key1, .digest = dig1, .size = size, .preallocate = prealloc};
	struct cache_entry *e = NULL;
	int lock = -1;

	assert_int_equal(cache_entry_lock(f->dirfd, key1, false, &lock), 0);
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, lock, &e), 0);
	return e;
}

static void remove_entry(struct fixture *f)
{
	char name[128];

	unlinkat(f->dirfd, key1, 0);
	snprintf(name, sizeof(name), "%s.bitmap", key1);
	unlinkat(f->dirfd, name, 0);
}

/* Every block the entry claims equals the source; returns how many it claims. */
static uint64_t check_claims(struct cache_entry *e, const uint8_t *src, uint64_t size,
			     uint64_t seed)
{
	uint8_t buf[CACHE_BLOCK_SIZE];
	uint64_t n = 0;

	for (uint64_t b = 0; b < e->present.nbits; b++) {
		uint64_t off = b * CACHE_BLOCK_SIZE, len = MIN((uint64_t)CACHE_BLOCK_SIZE, size - off);

		if (!cache_bitmap_test(&e->present, b))
			continue;
		n++;
		assert_int_equal(util_pread_full(e->data_fd, buf, len, off), 0);
		if (memcmp(buf, src + off, len) != 0) {
			fprintf(stderr, "seed %llu: block %llu is claimed present but differs\n",
				(unsigned long long)seed, (unsigned long long)b);
			fail();
		}
	}
	return n;
}

/* Store [off, off + len) of src in random pieces, as the fetcher does: each piece marks the
 * blocks it completes. Stops at the first error. */
static int store_run(struct cache_entry *e, const uint8_t *src, uint64_t size, uint64_t off,
		     uint64_t len)
{
	uint64_t done = 0, first = off / CACHE_BLOCK_SIZE;

	while (done < len) {
		uint64_t piece = MIN(len - done, 1 + rnd_below(3 * CACHE_BLOCK_SIZE));
		uint64_t end = done + piece == len ? DIV_ROUND_UP(off + len, CACHE_BLOCK_SIZE)
						   : (off + done + piece) / CACHE_BLOCK_SIZE;
		int r = cache_entry_store(e, src + off + done, piece, off + done, first,
					  end > first ? end - first : 0);

		if (r < 0)
			return r;
		done += piece;
	}
	(void)size;
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_crashes_during_fills(void **state)
{
	struct fixture *f = *state;
	const char *env = getenv("LAZYEROFS_CRASHES");
	const char *senv = getenv("LAZYEROFS_SEED");
	unsigned crashes = env ? (unsigned)atoi(env) : 300;
	uint64_t seed0 = senv ? strtoull(senv, NULL, 10) : 1;
	uint64_t claimed = 0, failed_syncs = 0, mid_flush = 0, size_max = 600 * 4096 + 777;
	uint8_t *src = malloc(size_max);

	assert_non_null(src);
	for (unsigned it = 0; it < crashes; it++) {
		uint64_t seed = seed0 + it, size, writes = 0;
		struct cache_entry *e;
		bool failed_once = false;

		sim_reset(seed);
		size = 1 + rnd_below(size_max);
		for (uint64_t i = 0; i < size; i++)
			src[i] = (uint8_t)(rnd() >> 32) | 1; /* never zero: a hole shows */
		remove_entry(f);
		/* A few fills, each reopening what the previous crash left. */
		for (int round = 0; round < 3; round++) {
			cache_io_set(&sim_ops);
			e = open_entry(f, size, rnd() & 1);
			sim.crash_at = sim.ops + 1 + rnd_below(400);
			while (!sim.crashed) {
				uint64_t b = rnd_below(e->present.nbits), n = 1 + rnd_below(24);
				uint64_t off = b * CACHE_BLOCK_SIZE, len;
				int r;

				if (off >= size)
					continue;
				len = MIN(n * CACHE_BLOCK_SIZE, size - off);
				if (rnd_below(8) == 0)
					sim.fail_syncs = 1;
				r = store_run(e, src, size, off, len);
				writes++;
				if (r < 0)
					break;
				if (rnd_below(3) == 0) {
					uint64_t before = sim.syncs_failed;

					r = cache_entry_flush(e, rnd_below(4) == 0);
					if (sim.crashed)
						mid_flush++;
					if (sim.syncs_failed > before && !sim.crashed) {
						/* A failed sync of the data: nothing unpersisted is
						 * believed any longer. */
						failed_once = true;
						failed_syncs++;
						assert_true(r < 0);
						for (size_t w = 0; w < e->present.nwords; w++)
							assert_int_equal(e->present.words[w] &
									     ~e->persisted[w],
									 0);
					}
				}
				sim.fail_syncs = 0;
			}
			cache_entry_free(e);
			cache_io_set(NULL);
			reboot();
			e = open_entry(f, size, false);
			claimed += check_claims(e, src, size, seed);
			cache_entry_free(e);
			sim_reset(seed * 7 + (uint64_t)round + 1000);
		}
		(void)failed_once;
	}
	fprintf(stderr,
		"%u seeds x 3 simulated crashes; %llu blocks claimed after reboot, all right; %llu "
		"failed fdatasyncs; %llu crashes inside a flush\n",
		crashes, (unsigned long long)claimed, (unsigned long long)failed_syncs,
		(unsigned long long)mid_flush);
	assert_true(claimed > 0);
	assert_true(failed_syncs > 0);
	free(src);
}

/* The scenario of issue 9, step by step: a failed fdatasync, then a retry that "succeeds". */
static void test_failed_sync_is_not_retried_into_a_claim(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 64 * CACHE_BLOCK_SIZE;
	uint8_t *src = malloc(size);
	struct cache_entry *e;

	assert_non_null(src);
	memset(src, 0x5a, size);
	sim_reset(42);
	cache_io_set(&sim_ops);
	e = open_entry(f, size, false);
	assert_int_equal(cache_entry_store(e, src, 8 * CACHE_BLOCK_SIZE, 0, 0, 8), 0);
	assert_int_equal(cache_entry_flush(e, false), 8);
	assert_int_equal(cache_entry_store(e, src + 8 * CACHE_BLOCK_SIZE, 8 * CACHE_BLOCK_SIZE,
					   8 * CACHE_BLOCK_SIZE, 8, 8),
			 0);
	sim.fail_syncs = 1;
	assert_int_equal(cache_entry_flush(e, false), -EIO);
	/* The blocks of the failed sync are missing again (fetched again on the next read); the
	 * persisted ones stay. */
	assert_int_equal(cache_bitmap_count(&e->present), 8);
	assert_false(cache_bitmap_test(&e->present, 8));
	assert_int_equal(e->sh->lost_blocks, 8);
	assert_int_equal(e->sh->sync_errors, 1);
	/* The retry syncs nothing new and claims nothing. */
	assert_int_equal(cache_entry_flush(e, true), 0);
	/* Completeness (and so verification) is never recorded over unpersisted bits. */
	cache_bitmap_set_range(&e->present, 0, 64);
	assert_int_equal(cache_entry_set_flags(e, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED, 0),
			 -EAGAIN);
	/* Power loss with nothing more synced: only the first 8 blocks are claimed, and right. */
	sim.crash_at = sim.ops + 1;
	(void)cache_entry_flush(e, false);
	assert_true(sim.crashed);
	cache_entry_free(e);
	cache_io_set(NULL);
	reboot();
	e = open_entry(f, size, false);
	assert_int_equal(check_claims(e, src, size, 42), 8);
	cache_entry_free(e);
	free(src);
}

/* A full disk: a store that fails part-way claims nothing; once there is room it works. */
static void test_full_disk_claims_nothing(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 16 * CACHE_BLOCK_SIZE;
	uint8_t src[4 * CACHE_BLOCK_SIZE];
	struct cache_entry *e;

	memset(src, 0x77, sizeof(src));
	sim_reset(7);
	cache_io_set(&sim_ops);
	e = open_entry(f, size, false);
	sim.fail_pwrites = 1;
	assert_int_equal(cache_entry_store(e, src, sizeof(src), 0, 0, 4), -ENOSPC);
	assert_int_equal(cache_bitmap_count(&e->present), 0);
	assert_int_equal(cache_entry_store(e, src, sizeof(src), 0, 0, 4), 0);
	assert_int_equal(cache_entry_flush(e, true), 4);
	cache_entry_free(e);
	cache_io_set(NULL);
	e = open_entry(f, size, false);
	assert_int_equal(check_claims(e, src, size, 7), 4);
	cache_entry_free(e);
}

/* A fallocate that runs out of space part-way leaves no allocation behind. */
static void test_failed_preallocation_gives_space_back(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 4 << 20;
	struct cache_entry *e;
	struct stat st;

	sim_reset(9);
	sim.fail_fallocate = true;
	cache_io_set(&sim_ops);
	e = open_entry(f, size, true);
	assert_false(e->preallocated);
	assert_int_equal(fstat(e->data_fd, &st), 0);
	assert_int_equal(st.st_size, size);
	assert_int_equal(st.st_blocks, 0);
	cache_entry_free(e);
	cache_io_set(NULL);
	remove_entry(f);
	/* Without the failure it is pre-allocated (the test directory has room for 4 MiB). */
	e = open_entry(f, size, true);
	assert_true(e->preallocated);
	assert_int_equal(fstat(e->data_fd, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 >= size);
	cache_entry_free(e);
}

/* The files changed by someone else are noticed; the entry is set aside and a new open gets
 * a fresh one. */
static void test_tampering_detected(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 16 * CACHE_BLOCK_SIZE;
	const char *why = NULL;
	struct cache_entry *e;
	char name[128];

	for (int how = 0; how < 3; how++) {
		remove_entry(f);
		e = open_entry(f, size, false);
		cache_bitmap_set_range(&e->present, 0, 4);
		assert_int_equal(cache_entry_check(e, &why), 0);
		if (how == 0) {
			assert_int_equal(unlinkat(f->dirfd, key1, 0), 0);
		} else if (how == 1) {
			assert_int_equal(ftruncate(e->data_fd, 4096), 0);
		} else {
			snprintf(name, sizeof(name), "%s.other", key1);
			int fd = openat(f->dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

			assert_true(fd >= 0);
			assert_int_equal(ftruncate(fd, (off_t)size), 0);
			close(fd);
			assert_int_equal(renameat(f->dirfd, name, f->dirfd, key1), 0);
		}
		assert_int_equal(cache_entry_check(e, &why), -ESTALE);
		assert_non_null(why);
		assert_false(cache_entry_broken(e));
		assert_int_equal(cache_entry_mark_broken(e), 0);
		assert_true(cache_entry_broken(e));
		assert_int_equal(cache_entry_flush(e, true), -ESTALE);
		cache_entry_remove_aside(e);
		cache_entry_free(e);
		e = open_entry(f, size, false);
		assert_true(e->rebuilt);
		assert_int_equal(cache_bitmap_count(&e->present), 0);
		assert_int_equal(cache_entry_check(e, &why), 0);
		cache_entry_free(e);
	}
}

/* A bitmap of another format version is never read: the entry is rebuilt, saying why. */
static void test_other_version_is_rebuilt(void **state)
{
	struct fixture *f = *state;
	uint64_t size = 16 * CACHE_BLOCK_SIZE;
	uint8_t raw[CACHE_HEADER_SIZE];
	struct cache_header h;
	struct cache_entry *e;

	e = open_entry(f, size, false);
	cache_bitmap_set_range(&e->present, 0, 4);
	assert_int_equal(cache_entry_flush(e, true), 4);
	h = e->hdr;
	h.version = CACHE_FORMAT_VERSION + 1;
	cache_header_encode(&h, raw);
	assert_int_equal(util_pwrite_full(e->bitmap_fd, raw, sizeof(raw), 0), 0);
	cache_entry_free(e);
	assert_int_equal(cache_entry_peek(f->dirfd, key1, &h), -EPROTO);
	e = open_entry(f, size, false);
	assert_true(e->rebuilt);
	assert_int_equal(cache_bitmap_count(&e->present), 0);
	assert_non_null(strstr(e->rebuild_reason, "format version 2"));
	cache_entry_free(e);
	assert_int_equal(cache_entry_peek(f->dirfd, key1, &h), 0);
	assert_int_equal(h.version, CACHE_FORMAT_VERSION);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_failed_sync_is_not_retried_into_a_claim, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_full_disk_claims_nothing, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_failed_preallocation_gives_space_back, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_tampering_detected, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_other_version_is_rebuilt, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_crashes_during_fills, setup_dir, teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
