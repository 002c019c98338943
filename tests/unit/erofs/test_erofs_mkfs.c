// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The erofs reader on images this test builds itself with Debian's mkfs.erofs (1.5) from a
 * tree it creates: xattrs (user.*, trusted.*, one value shared by many files), hardlinks,
 * short and 200+ byte symlinks, device nodes, fifos, a 10,000-entry directory, deep nesting
 * and a multi-megabyte file; uncompressed, -zlz4hc, --chunksize=4096 and -x1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "erofs_test.h"

#define MKFS "/usr/bin/mkfs.erofs"
#define BIGDIR_ENTRIES 10000
#define DEPTH 40

static char tmpdir[256];
static char tree[300];
static bool is_root;

static void put_file(const char *path, size_t size, unsigned int seed)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;

	/* pseudo-random bytes: neither compressible nor deduplicable */
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		fputc((int)(x & 0xff), f);
	}
	assert_int_equal(fclose(f), 0);
}

static int make_tree(void **state)
{
	char p[4096], lnk[400];

	is_root = geteuid() == 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/lazyerofs-test-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(tree, sizeof(tree), "%s/tree", tmpdir);
	if (mkdir(tree, 0755) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/big", tree);
	mkdir(p, 0755);
	for (unsigned int i = 0; i < BIGDIR_ENTRIES; i++) {
		int fd;

		snprintf(p, sizeof(p), "%s/big/file-%05u", tree, i);
		fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			return -1;
		if (i % 100 == 0 && write(fd, "x", 1) != 1)
			return -1;
		close(fd);
		if (i < 300)
			setxattr(p, "user.shared", "one-value-for-many", 18, 0);
	}
	snprintf(p, sizeof(p), "%s/deep", tree);
	mkdir(p, 0755);
	for (unsigned int i = 0; i < DEPTH; i++) {
		size_t n = strlen(p);

		snprintf(p + n, sizeof(p) - n, "/d%u", i);
		if (mkdir(p, 0750) < 0)
			return -1;
	}
	strcat(p, "/bottom");
	put_file(p, 3, 1);
	snprintf(p, sizeof(p), "%s/multi.bin", tree);
	put_file(p, 3u << 20, 7);
	snprintf(p, sizeof(p), "%s/file.txt", tree);
	{
		FILE *f = fopen(p, "w");

		/* compressible: -zlz4hc stores it compressed, with indexes */
		assert_non_null(f);
		for (unsigned int i = 0; i < 250; i++)
			fprintf(f, "line %05u of text\n", i);
		assert_int_equal(fclose(f), 0);
	}
	setxattr(p, "user.note", "inline value", 12, 0);
	if (is_root)
		setxattr(p, "trusted.secret", "t-value", 7, 0);
	snprintf(lnk, sizeof(lnk), "%s/hard", tree);
	if (link(p, lnk) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/short", tree);
	if (symlink("file.txt", p) < 0)
		return -1;
	memset(lnk, 'z', 230);
	lnk[0] = '/';
	lnk[230] = 0;
	snprintf(p, sizeof(p), "%s/long", tree);
	if (symlink(lnk, p) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/fifo", tree);
	if (mkfifo(p, 0600) < 0)
		return -1;
	if (is_root) {
		snprintf(p, sizeof(p), "%s/null", tree);
		if (mknod(p, S_IFCHR | 0666, makedev(1, 3)) < 0)
			return -1;
		snprintf(p, sizeof(p), "%s/disk", tree);
		if (mknod(p, S_IFBLK | 0660, makedev(259, 70000 & 0xfffff)) < 0)
			return -1;
	}
	return 0;
}

static int remove_tree(void **state)
{
	char cmd[600];

	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

static void build(const char *name, const char *opts, struct timage *t)
{
	char cmd[1024], img[512];

	if (access(MKFS, X_OK) != 0)
		skip();
	snprintf(img, sizeof(img), "%s/%s.erofs", tmpdir, name);
	snprintf(cmd, sizeof(cmd), MKFS " --quiet %s '%s' '%s' >/dev/null 2>&1", opts, img, tree);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(timage_load_path(t, img), 0);
}

static void check_image(const char *name, struct timage *t)
{
	struct erofs_walk_opts opts = { .merge_gap = EROFS_DEFAULT_MERGE_GAP };
	struct erofs_walk_stats st;
	struct util_extents ext;
	struct erofs_ctx ctx;
	struct erofs_inode vi, vi2;
	struct timage sparse;
	struct xfind x = { .name = "user.shared" };
	struct util_error err = UTIL_ERROR_INIT;
	char target[4097], path[512], *full = NULL, *part = NULL;
	unsigned int n = 0;

	util_extents_init(&ext);
	if (erofs_walk(&t->io, &opts, &ext, &st, &err) < 0)
		fail_msg("%s: walk failed: %s", name, err.message);
	assert_int_equal(st.dirs, 2 + DEPTH + 1);
	assert_int_equal(st.symlinks, 2);
	assert_int_equal(st.special, is_root ? 3 : 1);
	assert_int_equal(st.regular, BIGDIR_ENTRIES + 3); /* + file.txt, multi.bin, bottom */
	assert_int_equal(st.dirents, st.inodes - 1 + 1); /* plus the hardlink's second name */
	assert_int_equal(st.levels, DEPTH + 3);
	/* the multi-megabyte file's data is not metadata */
	assert_true(st.meta_bytes < t->len - (3u << 20) / 2);
	print_message("  %-10s %zu extents, %" PRIu64 " of %zu bytes (%.1f%%)\n", name, ext.n,
		      st.meta_bytes, t->len, 100.0 * (double)st.meta_bytes / (double)t->len);

	assert_int_equal(erofs_ctx_init(&ctx, &t->io, &err), 0);
	assert_int_equal(erofs_lookup_path(&ctx, "/big", &vi), 0);
	assert_int_equal(erofs_readdir(&ctx, &vi, count_cb, &n), 0);
	assert_int_equal(n, BIGDIR_ENTRIES + 2);
	assert_int_equal(erofs_lookup_path(&ctx, "/big/file-09999", &vi), 0);
	assert_int_equal(erofs_lookup_path(&ctx, "/big/file-00100", &vi), 0);
	assert_int_equal(vi.size, 1);
	assert_int_equal(erofs_listxattr(&ctx, &vi, xfind_cb, &x), 0);
	assert_int_equal(x.found, 1);
	assert_memory_equal(x.value, "one-value-for-many", 18);
	assert_int_equal(erofs_lookup_path(&ctx, "/file.txt", &vi), 0);
	if (!strcmp(name, "lz4hc"))
		assert_true(erofs_inode_is_compressed(&vi));
	assert_int_equal(erofs_lookup_path(&ctx, "/hard", &vi2), 0);
	assert_int_equal(vi.nid, vi2.nid);
	assert_int_equal(vi.nlink, 2);
	assert_int_equal(vi.size, 250 * 19);
	x = (struct xfind){ .name = "user.note" };
	assert_int_equal(erofs_listxattr(&ctx, &vi, xfind_cb, &x), 0);
	assert_int_equal(x.found, 1);
	assert_memory_equal(x.value, "inline value", 12);
	if (is_root) {
		x = (struct xfind){ .name = "trusted.secret" };
		assert_int_equal(erofs_listxattr(&ctx, &vi, xfind_cb, &x), 0);
		assert_int_equal(x.found, 1);
		assert_memory_equal(x.value, "t-value", 7);
		assert_int_equal(erofs_lookup_path(&ctx, "/null", &vi), 0);
		assert_true(S_ISCHR(vi.mode));
		assert_int_equal(erofs_rdev_major(vi.rdev), 1);
		assert_int_equal(erofs_rdev_minor(vi.rdev), 3);
		assert_int_equal(erofs_lookup_path(&ctx, "/disk", &vi), 0);
		assert_true(S_ISBLK(vi.mode));
		assert_int_equal(erofs_rdev_major(vi.rdev), 259);
		assert_int_equal(erofs_rdev_minor(vi.rdev), 70000 & 0xfffff);
	}
	assert_int_equal(erofs_lookup_path(&ctx, "/fifo", &vi), 0);
	assert_true(S_ISFIFO(vi.mode));
	assert_int_equal(erofs_lookup_path(&ctx, "/short", &vi), 0);
	assert_int_equal(erofs_read_symlink(&ctx, &vi, target, sizeof(target)), 8);
	assert_string_equal(target, "file.txt");
	assert_int_equal(erofs_lookup_path(&ctx, "/long", &vi), 0);
	assert_int_equal(erofs_read_symlink(&ctx, &vi, target, sizeof(target)), 230);
	assert_int_equal(target[229], 'z');
	strcpy(path, "/deep");
	for (unsigned int i = 0; i < DEPTH; i++)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "/d%u", i);
	strcat(path, "/bottom");
	assert_int_equal(erofs_lookup_path(&ctx, path, &vi), 0);
	assert_int_equal(vi.size, 3);
	assert_int_equal(erofs_lookup_path(&ctx, "/multi.bin", &vi), 0);
	assert_int_equal(vi.size, 3u << 20);
	erofs_ctx_done(&ctx);

	/* a copy holding only the extents reads as the same tree */
	assert_int_equal(tdump_image(&t->io, &full, &err), 0);
	timage_sparse(t, &ext, &sparse);
	if (tdump_image(&sparse.io, &part, &err) < 0)
		fail_msg("%s: sparse copy unreadable: %s", name, err.message);
	assert_string_equal(full, part);
	free(full);
	free(part);
	timage_free(&sparse);
	util_extents_free(&ext);
}

static void run(const char *name, const char *opts)
{
	struct timage t;

	build(name, opts, &t);
	check_image(name, &t);
	timage_free(&t);
}

static void test_plain(void **state)
{
	run("plain", "");
}

static void test_lz4hc(void **state)
{
	struct erofs_info info;
	struct timage t;
	struct util_error err = UTIL_ERROR_INIT;

	build("lz4hc", "-zlz4hc", &t);
	assert_int_equal(erofs_probe(&t.io, &info, &err), 0);
	assert_true(strstr(info.features, "lz4") != NULL);
	check_image("lz4hc", &t);
	timage_free(&t);
}

static void test_chunked(void **state)
{
	struct erofs_ctx ctx;
	struct erofs_inode vi;
	struct timage t;
	struct util_error err = UTIL_ERROR_INIT;

	build("chunked", "--chunksize=4096", &t);
	assert_int_equal(erofs_ctx_init(&ctx, &t.io, &err), 0);
	assert_int_equal(erofs_lookup_path(&ctx, "/multi.bin", &vi), 0);
	assert_int_equal(vi.layout, EROFS_LAYOUT_CHUNK_BASED);
	assert_int_equal(erofs_inode_meta_extent(&ctx, &vi), 0);
	/* 768 chunks of 4 KiB: a 4-byte block map of 3 KiB, all of it metadata */
	assert_true(vi.meta_end - vi.iloc >= 768 * 4);
	erofs_ctx_done(&ctx);
	check_image("chunked", &t);
	timage_free(&t);
}

static void test_x1(void **state)
{
	run("x1", "-x1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_lz4hc),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_x1),
	};

	return cmocka_run_group_tests(tests, make_tree, remove_tree);
}
