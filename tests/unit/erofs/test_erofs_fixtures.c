// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The erofs reader on the 13 fixture images (tests/fixtures/README.md): superblock,
 * inodes, directories, xattrs, symlinks, devices, hardlinks, compressed and chunked layouts,
 * and the walk: its counts, its extents, and that a copy holding only those extents still
 * reads as the same tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "erofs_test.h"

static const char *const fixtures[] = {
	"plain",    "lz4hc",        "lzma",   "deflate",     "zstd",
	"chunked",  "ztailpacking", "fragments", "allfragments", "metazone",
	"metacompress", "extended-inodes", "bs1k",
};

static void test_crc32c(void **state)
{
	const uint8_t magic_and_zero[8] = { 0xe2, 0xe1, 0xf5, 0xe0, 0, 0, 0, 0 };

	/* the standard check value, and the kernel's seed for "after magic and checksum" */
	assert_int_equal(erofs_crc32c(~0u, "123456789", 9) ^ ~0u, 0xE3069283u);
	assert_int_equal(erofs_crc32c(~0u, magic_and_zero, 8), 0x5045B54Au);
}

static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);

	for (const char *p = list; (p = strstr(p, w)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
			return true;
	return false;
}

static void test_probe(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct timage t;
		struct erofs_info info;
		struct util_error err = UTIL_ERROR_INIT;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		assert_int_equal(erofs_probe(&t.io, &info, &err), 0);
		assert_int_equal(info.block_size, strcmp(fixtures[i], "bs1k") ? 4096 : 1024);
		assert_true(info.has_checksum);
		assert_int_equal(info.inodes, strstr(fixtures[i], "fragments") ||
						      !strcmp(fixtures[i], "metacompress") ?
						      2537 :
						      2536);
		assert_int_equal(info.extra_devices, 0);
		if (!strcmp(fixtures[i], "chunked"))
			assert_true(has_word(info.features, "chunked_file"));
		if (!strcmp(fixtures[i], "ztailpacking"))
			assert_true(has_word(info.features, "ztailpacking"));
		if (strstr(fixtures[i], "fragments"))
			assert_true(has_word(info.features, "fragments"));
		if (!strcmp(fixtures[i], "metacompress")) {
			assert_true(has_word(info.features, "metabox"));
			assert_true(has_word(info.features, "48bit"));
		}
		if (!strcmp(fixtures[i], "zstd"))
			assert_true(has_word(info.features, "zstd"));
		if (!strcmp(fixtures[i], "lzma"))
			assert_true(has_word(info.features, "lzma"));
		if (!strcmp(fixtures[i], "deflate"))
			assert_true(has_word(info.features, "deflate"));
		if (!strcmp(fixtures[i], "plain"))
			assert_false(has_word(info.features, "lz4"));
		timage_free(&t);
	}
}

struct prefetch_log {
	uint64_t calls, ranges;
	struct util_extents fetched;
};

static int log_read(void *ctx, void *buf, uint64_t len, uint64_t off);
static struct timage *cur_image;
static struct prefetch_log *cur_log;

static int log_read(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	memcpy(buf, cur_image->buf + off, len);
	return 0;
}

static int log_prefetch(void *ctx, const struct util_extent *v, size_t n)
{
	cur_log->calls++;
	cur_log->ranges += n;
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i].length > 0);
		assert_true(v[i].offset + v[i].length <= cur_image->len);
		assert_int_equal(util_extents_add(&cur_log->fetched, v[i].offset, v[i].length), 0);
	}
	return 0;
}

static bool log_present(void *ctx, uint64_t off, uint64_t len)
{
	struct util_extents *f = &cur_log->fetched;

	util_extents_merge(f, 0);
	for (size_t i = 0; i < f->n; i++)
		if (off >= f->v[i].offset && off + len <= f->v[i].offset + f->v[i].length)
			return true;
	return false;
}

static void check_walk(const char *name, struct timage *t)
{
	struct erofs_walk_opts opts = { .merge_gap = EROFS_DEFAULT_MERGE_GAP };
	struct prefetch_log log = { 0 };
	struct erofs_io io = { .ctx = NULL, .size = t->len, .read = log_read,
			       .present = log_present, .prefetch = log_prefetch };
	struct erofs_walk_stats st;
	struct util_extents ext, exact;
	struct timage sparse;
	struct util_error err = UTIL_ERROR_INIT;
	char *full = NULL, *part = NULL;

	util_extents_init(&ext);
	util_extents_init(&exact);
	util_extents_init(&log.fetched);
	cur_image = t;
	cur_log = &log;
	assert_int_equal(erofs_walk(&io, &opts, &ext, &st, &err), 0);
	/* the tree of tree.tar: 17 dirs, 2514 files, 2 symlinks, fifo + 2 devices */
	assert_int_equal(st.inodes, 2536);
	assert_int_equal(st.dirs, 17);
	assert_int_equal(st.regular, 2514);
	assert_int_equal(st.symlinks, 2);
	assert_int_equal(st.special, 3);
	assert_int_equal(st.dirents, 2536); /* 2535 inodes below the root + 1 hardlink */
	assert_int_equal(st.levels, 15);
	/* few rounds: at most one per directory level, plus the superblock's and one more
	 * (test_erofs_walk.c checks the rounds in detail) */
	assert_true(st.prefetches >= 1);
	assert_true(st.prefetches <= st.levels + 2);
	assert_int_equal(log.calls, st.prefetches);
	/* extents: sorted, disjoint, inside the image, superblock first, aligned */
	assert_true(ext.n > 0);
	assert_int_equal(ext.v[0].offset, 0);
	assert_true(ext.v[0].length >= 4096);
	for (size_t i = 0; i < ext.n; i++) {
		assert_true(ext.v[i].length > 0);
		assert_true(ext.v[i].offset + ext.v[i].length <= t->len);
		assert_int_equal(ext.v[i].offset % 4096, 0);
		if (i)
			assert_true(ext.v[i - 1].offset + ext.v[i - 1].length < ext.v[i].offset);
	}
	assert_int_equal(util_extents_total(&ext), st.meta_bytes);
	assert_true(st.meta_bytes < t->len);
	print_message("  %-16s %zu extents, %" PRIu64 " bytes (%.1f%% of %zu), %" PRIu64
		      " reads, %" PRIu64 " prefetches\n",
		      name, ext.n, st.meta_bytes, 100.0 * (double)st.meta_bytes / (double)t->len,
		      t->len, st.reads, st.prefetches);

	/* exact ranges (no alignment, no gap) are a subset, and also suffice for our reader */
	opts = (struct erofs_walk_opts){ .align = 1 };
	io.prefetch = NULL;
	assert_int_equal(erofs_walk(&io, &opts, &exact, &st, &err), 0);
	assert_true(util_extents_total(&exact) <= util_extents_total(&ext));

	/* the closure property: a copy with only the extents reads as the same tree */
	assert_int_equal(tdump_image(&t->io, &full, &err), 0);
	timage_sparse(t, &exact, &sparse);
	if (tdump_image(&sparse.io, &part, &err) < 0)
		fail_msg("%s: sparse copy unreadable: %s", name, err.message);
	assert_string_equal(full, part);
	assert_true(strlen(full) > 100000);
	free(part);
	timage_free(&sparse);

	/* and without the range that holds the root directory's inode, it does not */
	{
		struct util_extents fewer;
		struct erofs_ctx ctx;
		uint64_t iloc;

		assert_int_equal(erofs_ctx_init(&ctx, &t->io, &err), 0);
		iloc = erofs_iloc(&ctx, ctx.root_nid);
		if (ctx.root_nid >> EROFS_DIRENT_NID_MBOX_BIT) /* in the metabox: drop its inode */
			iloc = erofs_iloc(&ctx, ctx.metabox_nid);
		erofs_ctx_done(&ctx);
		util_extents_init(&fewer);
		for (size_t i = 0; i < exact.n; i++)
			if (iloc < exact.v[i].offset || iloc >= exact.v[i].offset + exact.v[i].length)
				assert_int_equal(util_extents_add(&fewer, exact.v[i].offset,
								  exact.v[i].length), 0);
		assert_int_equal(fewer.n + 1, exact.n);
		timage_sparse(t, &fewer, &sparse);
		part = NULL;
		if (tdump_image(&sparse.io, &part, &err) == 0)
			assert_string_not_equal(full, part);
		free(part);
		timage_free(&sparse);
		util_extents_free(&fewer);
	}
	free(full);
	util_extents_free(&ext);
	util_extents_free(&exact);
	util_extents_free(&log.fetched);
}

static void test_walk_all(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct timage t;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		check_walk(fixtures[i], &t);
		timage_free(&t);
	}
}

static void get_xattr(struct erofs_ctx *ctx, const char *path, const char *name,
		      struct xfind *x)
{
	struct erofs_inode vi;

	memset(x, 0, sizeof(*x));
	x->name = name;
	assert_int_equal(erofs_lookup_path(ctx, path, &vi), 0);
	assert_int_equal(erofs_listxattr(ctx, &vi, xfind_cb, x), 0);
}

static void test_tree_contents(void **state)
{
	char longname[300] = "/names/";

	memset(longname + 7, 'L', 255);
	longname[7 + 255] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct erofs_ctx ctx;
		struct erofs_inode vi, vi2;
		struct timage t;
		struct xfind x;
		struct util_error err = UTIL_ERROR_INIT;
		char target[4097];
		unsigned int n = 0;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		assert_int_equal(erofs_ctx_init(&ctx, &t.io, &err), 0);

		/* the 2,500-entry directory (plus . and ..), in many blocks */
		assert_int_equal(erofs_lookup_path(&ctx, "/bigdir", &vi), 0);
		assert_true(S_ISDIR(vi.mode));
		assert_true(vi.size > 16 * ctx.bs);
		assert_int_equal(erofs_readdir(&ctx, &vi, count_cb, &n), 0);
		assert_int_equal(n, 2502);
		assert_int_equal(erofs_lookup_path(&ctx, "/bigdir/entry-02499-nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", &vi), -ENOENT);

		/* the 255-byte name and the unicode name */
		assert_int_equal(erofs_lookup_path(&ctx, longname, &vi), 0);
		assert_int_equal(vi.size, 10);
		assert_int_equal(erofs_lookup_path(&ctx, "/names/ünïcödé-名前.txt", &vi), 0);
		assert_int_equal(vi.size, 8);
		assert_int_equal(erofs_lookup_path(&ctx, "/names", &vi), 0);
		assert_int_equal(vi.mode, S_IFDIR | 01777);

		/* symlinks, short (inline) and long */
		assert_int_equal(erofs_lookup_path(&ctx, "/short-link", &vi), 0);
		assert_int_equal(erofs_read_symlink(&ctx, &vi, target, sizeof(target)), 8);
		assert_string_equal(target, "text.txt");
		assert_int_equal(erofs_lookup_path(&ctx, "/long-link", &vi), 0);
		assert_int_equal(erofs_read_symlink(&ctx, &vi, target, sizeof(target)), 315);
		assert_memory_equal(target, "/very-long-symlink-target-component/very-long", 45);

		/* devices, fifo, modes, owners */
		assert_int_equal(erofs_lookup_path(&ctx, "/chardev", &vi), 0);
		assert_true(S_ISCHR(vi.mode));
		assert_int_equal(erofs_rdev_major(vi.rdev), 1);
		assert_int_equal(erofs_rdev_minor(vi.rdev), 3);
		assert_int_equal(erofs_lookup_path(&ctx, "/blockdev", &vi), 0);
		assert_true(S_ISBLK(vi.mode));
		assert_int_equal(erofs_rdev_major(vi.rdev), 7);
		assert_int_equal(erofs_rdev_minor(vi.rdev), 0);
		assert_int_equal(erofs_lookup_path(&ctx, "/fifo", &vi), 0);
		assert_true(S_ISFIFO(vi.mode));
		assert_int_equal(erofs_lookup_path(&ctx, "/sizes/f100", &vi), 0);
		assert_int_equal(vi.mode, S_IFREG | 04755);
		assert_int_equal(erofs_lookup_path(&ctx, "/sizes/f4096", &vi), 0);
		assert_int_equal(vi.uid, 1000);
		assert_int_equal(vi.gid, 100);
		assert_int_equal(vi.size, 4096);

		/* the hardlink: one inode, two names */
		assert_int_equal(erofs_lookup_path(&ctx, "/text.txt", &vi), 0);
		assert_int_equal(erofs_lookup_path(&ctx, "/hardlink-to-text", &vi2), 0);
		assert_int_equal(vi.nid, vi2.nid);
		assert_int_equal(vi.nlink, 2);
		assert_int_equal(vi.size, 322890);

		/* the deep path */
		assert_int_equal(erofs_lookup_path(&ctx, "/deep/level0/level1/level2/level3/level4/level5/level6/level7/level8/level9/level10/level11/leaf.txt", &vi), 0);
		assert_int_equal(vi.size, 10);

		/* xattrs: the shared value on 50 files, inline ones, a long value */
		get_xattr(&ctx, "/bigdir/entry-00040-", "user.shared", &x);
		assert_int_equal(x.found, 1);
		assert_int_equal(x.len, strlen("same-value-everywhere"));
		assert_memory_equal(x.value, "same-value-everywhere", x.len);
		get_xattr(&ctx, "/text.txt", "user.comment", &x);
		assert_int_equal(x.found, 1);
		assert_memory_equal(x.value, "hello", 5);
		get_xattr(&ctx, "/random.bin", "trusted.big", &x);
		assert_int_equal(x.found, 1);
		assert_int_equal(x.len, 900);
		assert_int_equal(x.value[0], 'v');
		assert_int_equal(x.value[899], 'v');
		get_xattr(&ctx, "/sizes/f1", "security.capability", &x);
		assert_int_equal(x.found, 1);
		assert_int_equal(x.len, 20);

		erofs_ctx_done(&ctx);
		timage_free(&t);
	}
}

static void test_shared_xattr_found_on_its_files(void **state)
{
	/* 50 files carry user.shared (a shared xattr): listxattr finds it on each of them and on
	 * no other. That its block is fetched once, not once per file, is checked by
	 * test_walk_mount.py against a marked copy of an image. */
	struct timage t;
	struct erofs_ctx ctx;
	struct erofs_inode dir;
	struct util_error err = UTIL_ERROR_INIT;
	unsigned int sharers = 0;

	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	assert_int_equal(erofs_ctx_init(&ctx, &t.io, &err), 0);
	assert_int_equal(erofs_lookup_path(&ctx, "/bigdir", &dir), 0);
	for (unsigned int i = 0; i < 2500; i++) {
		char name[128];
		struct xfind x;
		struct erofs_inode vi;
		int r;

		snprintf(name, sizeof(name), "/bigdir/entry-%05u-", i);
		memset(name + strlen(name), 'n', i % 40);
		name[strlen("/bigdir/entry-00000-") + i % 40] = 0;
		r = erofs_lookup_path(&ctx, name, &vi);
		if (r < 0 || i > 120)
			continue;
		memset(&x, 0, sizeof(x));
		x.name = "user.shared";
		assert_int_equal(erofs_listxattr(&ctx, &vi, xfind_cb, &x), 0);
		sharers += x.found;
	}
	assert_int_equal(sharers, 50);
	erofs_ctx_done(&ctx);
	timage_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_tree_contents),
		cmocka_unit_test(test_shared_xattr_found_on_its_files),
		cmocka_unit_test(test_walk_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
