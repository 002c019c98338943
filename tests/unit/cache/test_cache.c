// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the cache entry: bitmap, header, persistence order, rebuild, bad entries. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cache/cache.h"
#include "cache_test.h"
#include "util/fs.h"
#include "util/macro.h"

static const char key1[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char dig1[] =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ---- bitmap ------------------------------------------------------------------------- */

static void test_bitmap_set_test(void **state)
{
	struct cache_bitmap b;

	assert_int_equal(cache_bitmap_init(&b, 200, false), 0);
	assert_false(cache_bitmap_test(&b, 0));
	cache_bitmap_set_range(&b, 3, 70); /* crosses a word boundary */
	assert_false(cache_bitmap_test(&b, 2));
	assert_true(cache_bitmap_test(&b, 3));
	assert_true(cache_bitmap_test(&b, 72));
	assert_false(cache_bitmap_test(&b, 73));
	assert_true(cache_bitmap_test_range(&b, 3, 70));
	assert_false(cache_bitmap_test_range(&b, 2, 70));
	assert_false(cache_bitmap_test_range(&b, 3, 71));
	assert_true(cache_bitmap_test_range(&b, 10, 0));
	assert_false(cache_bitmap_test_range(&b, 150, 51)); /* past the end */
	assert_false(cache_bitmap_test(&b, 5000));
	assert_int_equal(cache_bitmap_count(&b), 70);
	cache_bitmap_set_range(&b, 190, 1000); /* clamped */
	assert_int_equal(cache_bitmap_count(&b), 80);
	assert_true(cache_bitmap_test(&b, 199));
	cache_bitmap_set_range(&b, UINT64_MAX - 1, 5); /* no overflow, nothing set */
	assert_int_equal(cache_bitmap_count(&b), 80);
	cache_bitmap_destroy(&b);
}

static void test_bitmap_runs(void **state)
{
	struct cache_bitmap b;
	uint64_t s, n;

	assert_int_equal(cache_bitmap_init(&b, 300, false), 0);
	cache_bitmap_set_range(&b, 10, 5);
	cache_bitmap_set_range(&b, 64, 64);
	cache_bitmap_set_range(&b, 299, 1);
	assert_true(cache_bitmap_next_run(&b, 0, 300, false, &s, &n));
	assert_int_equal(s, 0);
	assert_int_equal(n, 10);
	assert_true(cache_bitmap_next_run(&b, 10, 300, false, &s, &n));
	assert_int_equal(s, 15);
	assert_int_equal(n, 49);
	assert_true(cache_bitmap_next_run(&b, 0, 300, true, &s, &n));
	assert_int_equal(s, 10);
	assert_int_equal(n, 5);
	assert_true(cache_bitmap_next_run(&b, 15, 300, true, &s, &n));
	assert_int_equal(s, 64);
	assert_int_equal(n, 64);
	assert_true(cache_bitmap_next_run(&b, 128, 300, false, &s, &n));
	assert_int_equal(s, 128);
	assert_int_equal(n, 171);
	assert_true(cache_bitmap_next_run(&b, 128, 200, false, &s, &n));
	assert_int_equal(n, 72); /* limited */
	assert_false(cache_bitmap_next_run(&b, 299, 300, false, &s, &n));
	assert_int_equal(cache_bitmap_find(&b, 0, 300, true), 10);
	assert_int_equal(cache_bitmap_find(&b, 299, 300, false), 300);
	cache_bitmap_destroy(&b);
}

static void test_bitmap_shared_survives_fork(void **state)
{
	struct cache_bitmap b;
	pid_t pid;
	int st;

	assert_int_equal(cache_bitmap_init(&b, 1000, true), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		cache_bitmap_set_range(&b, 500, 10);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(cache_bitmap_test_range(&b, 500, 10));
	assert_int_equal(cache_bitmap_count(&b), 10);
	cache_bitmap_destroy(&b);
}

static void test_blocks_of(void **state)
{
	uint64_t f, n;

	assert_true(cache_blocks_of(0, 1, 10000, &f, &n));
	assert_int_equal(f, 0);
	assert_int_equal(n, 1);
	assert_true(cache_blocks_of(4095, 2, 10000, &f, &n));
	assert_int_equal(f, 0);
	assert_int_equal(n, 2);
	assert_true(cache_blocks_of(8192, 100000, 10000, &f, &n)); /* clamped to the file */
	assert_int_equal(f, 2);
	assert_int_equal(n, 1);
	assert_false(cache_blocks_of(10000, 5, 10000, &f, &n));
	assert_false(cache_blocks_of(0, 0, 10000, &f, &n));
	assert_true(cache_blocks_of(4096, UINT64_MAX, 10000, &f, &n));
	assert_int_equal(n, 2);
}

/* Any block of byte ranges with a value: the blocks a range touches (partial ones too),
 * nothing past the file. */
static void test_bitmap_any_of(void **state)
{
	static const struct util_extent v[] = {{100, 10}, {3 * 4096 + 5, 4096}, {9 * 4096, 100}};
	uint64_t size = 8 * 4096;
	struct cache_bitmap b;

	assert_int_equal(cache_bitmap_init(&b, 8, false), 0);
	assert_false(cache_bitmap_any_of(&b, v, 3, size, true));
	assert_true(cache_bitmap_any_of(&b, v, 3, size, false));
	cache_bitmap_set_range(&b, 4, 1); /* the second range's second block */
	assert_true(cache_bitmap_any_of(&b, v, 3, size, true));
	assert_false(cache_bitmap_any_of(&b, v + 2, 1, size, false)); /* past the file */
	cache_bitmap_set_range(&b, 0, 8);
	assert_false(cache_bitmap_any_of(&b, v, 3, size, false));
	assert_false(cache_bitmap_any_of(&b, v, 0, size, true));
	cache_bitmap_destroy(&b);
}

/* ---- header --------------------------------------------------------------------------- */

static struct cache_header sample_header(void)
{
	struct cache_header h = {
	    .version = CACHE_FORMAT_VERSION,
	    .block_size = CACHE_BLOCK_SIZE,
	    .flags = CACHE_FLAG_COMPLETE,
	    .size = 10000,
	    .nblocks = 3,
	};

	memcpy(h.key, key1, sizeof(key1));
	memcpy(h.digest, dig1, sizeof(dig1));
	return h;
}

static void test_header_roundtrip(void **state)
{
	struct cache_header h = sample_header(), d;
	uint8_t raw[CACHE_HEADER_SIZE];

	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), 0);
	assert_int_equal(d.size, 10000);
	assert_int_equal(d.nblocks, 3);
	assert_int_equal(d.flags, CACHE_FLAG_COMPLETE);
	assert_string_equal(d.key, key1);
	assert_string_equal(d.digest, dig1);

	h.digest[0] = 0; /* URL source without a digest */
	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), 0);
	assert_string_equal(d.digest, "");
}

static void test_header_damage(void **state)
{
	struct cache_header h = sample_header(), d;
	uint8_t raw[CACHE_HEADER_SIZE], bad[CACHE_HEADER_SIZE];

	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw) - 1, &d), -EUCLEAN);
	/* Any single flipped bit anywhere is detected (checksum or field checks). */
	for (size_t i = 0; i < sizeof(raw); i += 7) {
		memcpy(bad, raw, sizeof(raw));
		bad[i] ^= 0x10;
		assert_int_equal(cache_header_decode(bad, sizeof(bad), &d), -EUCLEAN);
	}
	/* Well-checksummed but inconsistent fields are refused too. */
	h.nblocks = 4;
	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), -EUCLEAN);
	h = sample_header();
	h.flags = 0x80;
	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), -EUCLEAN);
	h = sample_header();
	h.version = 2;
	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), -EPROTO);
	/* Another version is refused before its checksum is even looked at. */
	raw[100] ^= 1;
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), -EPROTO);
	h = sample_header();
	h.key[3] = 'X';
	cache_header_encode(&h, raw);
	assert_int_equal(cache_header_decode(raw, sizeof(raw), &d), -EUCLEAN);
	assert_int_equal(cache_bitmap_bytes(10000), 8);
	assert_int_equal(cache_bitmap_bytes(4096 * 64), 8);
	assert_int_equal(cache_bitmap_bytes(4096 * 64 + 1), 16);
}

/* ---- entries --------------------------------------------------------------------------- */

#define fixture cache_test_dir

static int setup_dir(void **state)
{
	return cache_test_dir_make("cache", (struct cache_test_dir **)state);
}

static int teardown_dir(void **state)
{
	return cache_test_dir_remove(*state);
}

static struct cache_entry *open_entry(struct fixture *f, const char *digest, uint64_t size)
{
	struct cache_open_params p = {
	    .key = key1, .digest = digest, .size = size, .preallocate = true};
	struct cache_entry *e = NULL;
	int lock = -1;

	assert_int_equal(cache_entry_lock(f->dirfd, key1, false, &lock), 0);
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, lock, &e), 0);
	return e;
}

static void test_entry_create_and_persist(void **state)
{
	struct fixture *f = *state;
	struct cache_entry *e = open_entry(f, dig1, 1000000);
	struct stat st;
	uint8_t buf[4096];
	int lock2 = -1;

	assert_true(e->rebuilt);
	assert_int_equal(fstat(e->data_fd, &st), 0);
	assert_int_equal(st.st_size, 1000000);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(cache_entry_present_bytes(e), 0);
	/* The lock is exclusive while the entry is open. */
	assert_int_equal(cache_entry_lock(f->dirfd, key1, false, &lock2), -EWOULDBLOCK);

	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(util_pwrite_full(e->data_fd, buf, sizeof(buf), 8192), 0);
	cache_bitmap_set_range(&e->present, 2, 1);
	assert_int_equal(cache_entry_flush(e, false), 1);
	assert_int_equal(cache_entry_flush(e, false), 0); /* nothing new */
	/* Bits set but never flushed (a crash right now) must not be claimed after reopen. */
	cache_bitmap_set_range(&e->present, 5, 3);
	/* The last block is short: 1000000 = 244 * 4096 + 576. */
	cache_bitmap_set_range(&e->present, 244, 1);
	assert_int_equal(cache_entry_present_bytes(e), 4 * 4096 + 576);
	cache_entry_free(e);

	e = open_entry(f, dig1, 1000000);
	assert_false(e->rebuilt);
	assert_true(cache_bitmap_test(&e->present, 2));
	assert_false(cache_bitmap_test(&e->present, 5));
	assert_false(cache_bitmap_test(&e->present, 244));
	assert_int_equal(cache_entry_present_bytes(e), 4096);
	assert_int_equal(util_pread_full(e->data_fd, buf, sizeof(buf), 8192), 0);
	assert_int_equal(buf[100], 0xab);

	/* Fill everything, flush, mark complete: reopen sees a complete entry. */
	cache_bitmap_set_range(&e->present, 0, e->present.nbits);
	assert_true(cache_entry_complete(e));
	assert_true(cache_entry_flush(e, true) > 0);
	assert_int_equal(cache_entry_set_flags(e, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED, 0), 0);
	cache_entry_free(e);
	e = open_entry(f, dig1, 1000000);
	assert_true(cache_entry_complete(e));
	assert_int_equal(e->hdr.flags, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED);
	assert_int_equal(cache_entry_present_bytes(e), 1000000);
	cache_entry_free(e);
}

/* What an entry's files claim, without its lock (status of a mount whose daemon is gone):
 * the flushed bits only, a short last block at its length, all of a complete entry. */
static void test_entry_peek_present(void **state)
{
	struct fixture *f = *state;
	struct cache_entry *e = open_entry(f, dig1, 1000000);
	struct cache_header h;
	uint64_t bytes = 1;

	assert_int_equal(cache_entry_peek_present(f->dirfd, key1, &h, &bytes), 0);
	assert_int_equal(bytes, 0);
	cache_bitmap_set_range(&e->present, 2, 1);
	cache_bitmap_set_range(&e->present, 63, 2); /* across a word */
	assert_int_equal(cache_entry_flush(e, false), 3);
	cache_bitmap_set_range(&e->present, 244, 1); /* 1000000 = 244 * 4096 + 576 */
	assert_int_equal(cache_entry_peek_present(f->dirfd, key1, &h, &bytes), 0);
	assert_int_equal(bytes, 3 * 4096);
	assert_int_equal(cache_entry_flush(e, false), 1);
	assert_int_equal(cache_entry_peek_present(f->dirfd, key1, &h, &bytes), 0);
	assert_int_equal(bytes, 3 * 4096 + 576);
	cache_bitmap_set_range(&e->present, 0, e->present.nbits);
	assert_true(cache_entry_flush(e, true) > 0);
	assert_int_equal(cache_entry_set_flags(e, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED, 0), 0);
	assert_int_equal(cache_entry_peek_present(f->dirfd, key1, &h, &bytes), 0);
	assert_int_equal(bytes, 1000000);
	assert_int_equal(h.flags, CACHE_FLAG_COMPLETE | CACHE_FLAG_VERIFIED);
	cache_entry_free(e);
	assert_int_equal(cache_entry_peek_present(
			     f->dirfd,
			     "0123456789012345678901234567890123456789012345678901234567890123", &h,
			     &bytes),
			 -ENOENT);
}

static void test_entry_flags_not_believed_without_bits(void **state)
{
	struct fixture *f = *state;
	struct cache_entry *e = open_entry(f, dig1, 50000);
	struct cache_header h;

	uint8_t raw[CACHE_HEADER_SIZE];

	cache_bitmap_set_range(&e->present, 0, 3);
	assert_int_equal(cache_entry_flush(e, true), 3);
	/* Completeness is never recorded over a partial bitmap... */
	assert_int_equal(cache_entry_set_flags(e, CACHE_FLAG_COMPLETE, 0), -EAGAIN);
	/* ... and a header claiming it anyway (written by hand) is corrected on open. */
	h = e->hdr;
	h.flags |= CACHE_FLAG_COMPLETE;
	cache_header_encode(&h, raw);
	assert_int_equal(util_pwrite_full(e->bitmap_fd, raw, sizeof(raw), 0), 0);
	cache_entry_free(e);
	e = open_entry(f, dig1, 50000);
	assert_int_equal(e->hdr.flags & CACHE_FLAG_COMPLETE, 0);
	assert_int_equal(cache_bitmap_count(&e->present), 3);
	assert_int_equal(cache_entry_peek(f->dirfd, key1, &h), 0);
	assert_int_equal(h.flags & CACHE_FLAG_COMPLETE, 0);
	cache_entry_free(e);
}

static void corrupt_file(struct fixture *f, const char *suffix, off_t off, const char *bytes)
{
	char name[128];
	int fd;

	snprintf(name, sizeof(name), "%s%s", key1, suffix);
	fd = openat(f->dirfd, name, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, strlen(bytes), off), (ssize_t)strlen(bytes));
	close(fd);
}

static void test_entry_rebuild_on_damage(void **state)
{
	struct fixture *f = *state;
	struct cache_entry *e = open_entry(f, dig1, 100000);
	struct cache_header h;

	cache_bitmap_set_range(&e->present, 0, 10);
	assert_int_equal(cache_entry_flush(e, true), 10);
	cache_entry_free(e);

	/* A corrupted header (one byte of the size field) means the bits describe nothing. */
	corrupt_file(f, ".bitmap", 25, "\x7f");
	assert_int_equal(cache_entry_peek(f->dirfd, key1, &h), -EUCLEAN);
	e = open_entry(f, dig1, 100000);
	assert_true(e->rebuilt);
	assert_int_equal(cache_bitmap_count(&e->present), 0);
	cache_bitmap_set_range(&e->present, 0, 10);
	assert_int_equal(cache_entry_flush(e, true), 10);
	cache_entry_free(e);

	/* Same key, other size or digest: a mismatched header is rebuilt as well. */
	e = open_entry(f, dig1, 200000);
	assert_true(e->rebuilt);
	assert_int_equal(cache_bitmap_count(&e->present), 0);
	cache_entry_free(e);
	e = open_entry(f, NULL, 200000);
	assert_true(e->rebuilt);
	cache_entry_free(e);
	e = open_entry(f, NULL, 200000);
	assert_false(e->rebuilt);
	cache_entry_free(e);

	/* A truncated bitmap file, or a data file of the wrong size. */
	{
		char name[128];

		int fd;

		snprintf(name, sizeof(name), "%s.bitmap", key1);
		fd = openat(f->dirfd, name, O_WRONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 100), 0);
		close(fd);
	}
	e = open_entry(f, NULL, 200000);
	assert_true(e->rebuilt);
	cache_entry_free(e);
	{
		int fd = openat(f->dirfd, key1, O_WRONLY | O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 5), 0);
		close(fd);
	}
	e = open_entry(f, NULL, 200000);
	assert_true(e->rebuilt);
	cache_entry_free(e);
}

/* Files a killed daemon set aside are removed by the next open of the entry; those whose lock
 * a daemon still holds stay, whatever the pid in their name (a replacement holder's daemon is
 * named after the first, dead one), as do another key's and unrelated names. */
static void test_entry_sweeps_aside_of_dead_holder(void **state)
{
	static const char key2[] =
	    "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	struct fixture *f = *state;
	char dead[CACHE_KEY_LEN + 48], alive[CACHE_KEY_LEN + 48], other[CACHE_KEY_LEN + 48];
	char name[CACHE_KEY_LEN + 64], alive_files[3][CACHE_KEY_LEN + 64];
	const char *const keep[] = {alive_files[0], alive_files[1], alive_files[2], other, name};
	const char *const sfx[] = {"", ".bitmap", ".lock"};
	struct cache_entry *e;
	struct stat st;
	int held;
	pid_t pid = fork(), pid2;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	pid2 = fork();
	assert_true(pid2 >= 0);
	if (pid2 == 0)
		_exit(0);
	assert_int_equal(waitpid(pid2, NULL, 0), pid2);
	snprintf(dead, sizeof(dead), "%s.bad-%d", key1, (int)pid);
	snprintf(alive, sizeof(alive), "%s.bad-%d", key1, (int)pid2); /* dead pid, lock held */
	snprintf(other, sizeof(other), "%s.bad-%d", key2, (int)pid);
	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
		snprintf(name, sizeof(name), "%s%s", dead, sfx[i]);
		close(openat(f->dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
		snprintf(alive_files[i], sizeof(alive_files[i]), "%s%s", alive, sfx[i]);
		close(openat(f->dirfd, alive_files[i], O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	}
	held = openat(f->dirfd, alive_files[2], O_RDONLY | O_CLOEXEC);
	assert_true(held >= 0);
	assert_int_equal(flock(held, LOCK_EX | LOCK_NB), 0);
	close(openat(f->dirfd, other, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	snprintf(name, sizeof(name), "%s.bad-%d.old", key1, (int)pid);
	close(openat(f->dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));

	e = open_entry(f, NULL, 100000);
	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
		char gone[CACHE_KEY_LEN + 64];

		snprintf(gone, sizeof(gone), "%s%s", dead, sfx[i]);
		assert_int_equal(fstatat(f->dirfd, gone, &st, 0), -1);
	}
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
		assert_int_equal(fstatat(f->dirfd, keep[i], &st, 0), 0);
	cache_entry_free(e);
	/* Its daemon gone (the lock dropped), the next open removes them too. */
	close(held);
	e = open_entry(f, NULL, 100000);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(fstatat(f->dirfd, alive_files[i], &st, 0), -1);
	cache_entry_free(e);
}

static void test_entry_bad_never_reused(void **state)
{
	struct fixture *f = *state;
	struct cache_entry *e = open_entry(f, dig1, 100000), *e2;
	struct cache_open_params p = {.key = key1, .digest = dig1, .size = 100000};
	struct stat a, b;
	char bad_data[128];
	int lock = -1;

	cache_bitmap_set_range(&e->present, 0, e->present.nbits);
	assert_true(cache_entry_flush(e, true) > 0);
	assert_int_equal(fstat(e->data_fd, &a), 0);
	assert_int_equal(cache_entry_mark_bad(e), 0);
	assert_true(e->aside);
	snprintf(bad_data, sizeof(bad_data), "%s.bad-%d", key1, (int)getpid());
	assert_non_null(strstr(e->data_path, bad_data));
	assert_int_equal(fstatat(f->dirfd, bad_data, &b, 0), 0);
	assert_int_equal(a.st_ino, b.st_ino);

	/* While the bad entry's owner still lives, a new mount gets a fresh entry and lock. */
	assert_int_equal(cache_entry_lock(f->dirfd, key1, false, &lock), 0);
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, lock, &e2), 0);
	assert_true(e2->rebuilt);
	assert_int_equal(cache_bitmap_count(&e2->present), 0);
	assert_int_equal(fstat(e2->data_fd, &b), 0);
	assert_true(a.st_ino != b.st_ino);
	/* A process holding a stale copy of the entry (a forked sibling of the one that marked
	 * it) catches up from the header. */
	{
		bool was = e->aside;
		char path[PATH_MAX];

		memcpy(path, e->data_path, sizeof(path));
		e->aside = false;
		e->hdr.flags = 0;
		assert_int_equal(cache_entry_reload(e), 0);
		assert_true(e->aside && was);
		assert_int_equal(e->hdr.flags & CACHE_FLAG_BAD, CACHE_FLAG_BAD);
		assert_string_equal(e->data_path, path);
	}
	cache_entry_remove_aside(e);
	assert_int_equal(fstatat(f->dirfd, bad_data, &b, 0), -1);
	cache_entry_free(e);

	/* A header flagged bad on disk (owner crashed before renaming) is never reused. */
	cache_bitmap_set_range(&e2->present, 0, e2->present.nbits);
	assert_true(cache_entry_flush(e2, true) > 0);
	assert_int_equal(cache_entry_set_flags(e2, CACHE_FLAG_BAD, 0), 0);
	cache_entry_free(e2);
	e2 = open_entry(f, dig1, 100000);
	assert_true(e2->rebuilt);
	assert_int_equal(cache_bitmap_count(&e2->present), 0);
	assert_int_equal(e2->hdr.flags, 0);
	cache_entry_free(e2);
}

static int clear_every_block(void *ctx, uint64_t *cleared)
{
	struct cache_entry *e = ctx;

	for (size_t w = 0; w < e->present.nwords; w++)
		cleared[w] |= cache_bitmap_clear_word(&e->present, w, ~UINT64_C(0));
	return 0;
}

/* A new worker starts from the holder's copy of what the bitmap file claims, taken before its
 * dead predecessor trimmed blocks away (and punched them): reloaded, its next flush claims
 * only what is present, not the trimmed blocks again. */
static void test_reload_forgets_what_a_sibling_trimmed(void **state)
{
	struct fixture *f = *state;
	struct cache_entry *e = open_entry(f, dig1, 100000);
	size_t words = e->present.nwords;
	uint64_t stale[4], disk[4], blocks;

	assert_true(words <= ARRAY_SIZE(stale));
	cache_bitmap_set_range(&e->present, 0, e->present.nbits);
	assert_true(cache_entry_flush(e, true) > 0);
	memcpy(stale, e->persisted, words * 8); /* the holder's copy */
	assert_int_equal(cache_entry_evict(e, clear_every_block, e, &blocks), 0);
	assert_int_equal(blocks, e->present.nbits);
	memcpy(e->persisted, stale, words * 8); /* the new worker's, forked from the holder */
	assert_int_equal(cache_entry_reload(e), 0);
	cache_bitmap_set_range(&e->present, 3, 1); /* fetched again */
	assert_true(cache_entry_flush(e, true) >= 0);
	assert_int_equal(pread(e->bitmap_fd, disk, words * 8, CACHE_BITMAP_OFFSET),
			 (ssize_t)(words * 8));
	assert_int_equal(le64toh(disk[0]), UINT64_C(1) << 3);
	for (size_t w = 1; w < words; w++)
		assert_int_equal(disk[w], 0);
	cache_entry_free(e);
}

static void test_entry_refuses_bad_input(void **state)
{
	struct fixture *f = *state;
	struct cache_open_params p = {.key = "../etc", .size = 100};
	struct cache_entry *e = NULL;
	int lock = -1, dfd = -1;
	char path[PATH_MAX];

	assert_int_equal(cache_entry_lock(f->dirfd, "../etc", false, &lock), -EINVAL);
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, -1, &e), -EINVAL);
	p.key = key1;
	p.size = 0;
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, -1, &e), -EINVAL);
	p.size = 100;
	p.digest = "sha256:XYZ";
	assert_int_equal(cache_entry_open(f->dirfd, f->cache, &p, -1, &e), -EINVAL);

	/* A data file replaced by a symlink is not followed: the entry is rebuilt. */
	assert_int_equal(symlinkat("/etc/passwd", f->dirfd, key1), 0);
	e = open_entry(f, NULL, 100);
	assert_true(e->rebuilt);
	cache_entry_free(e);

	/* A cache directory with a group/other-accessible mode is refused. */
	snprintf(path, sizeof(path), "%s/open", f->root);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(cache_dir_open(path, &dfd), -EPERM);
	assert_int_equal(cache_dir_open("relative/path", &dfd), -EINVAL);
}

static void test_fs_name(void **state)
{
	struct fixture *f = *state;
	char buf[32];
	int fd = open("/proc", O_PATH | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_string_equal(cache_fs_name(fd, buf, sizeof(buf)), "0x9fa0");
	close(fd);
	cache_fs_name(f->dirfd, buf, sizeof(buf));
	assert_true(strlen(buf) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bitmap_set_test),
	    cmocka_unit_test(test_bitmap_runs),
	    cmocka_unit_test(test_bitmap_shared_survives_fork),
	    cmocka_unit_test(test_blocks_of),
	    cmocka_unit_test(test_bitmap_any_of),
	    cmocka_unit_test(test_header_roundtrip),
	    cmocka_unit_test(test_header_damage),
	    cmocka_unit_test_setup_teardown(test_entry_create_and_persist, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_entry_peek_present, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_entry_flags_not_believed_without_bits, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_entry_rebuild_on_damage, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_entry_bad_never_reused, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_entry_sweeps_aside_of_dead_holder, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_reload_forgets_what_a_sibling_trimmed, setup_dir,
					    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_entry_refuses_bad_input, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_fs_name, setup_dir, teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
