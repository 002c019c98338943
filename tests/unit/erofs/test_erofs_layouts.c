// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The reader on small images of layouts only newer mkfs.erofs makes (images/README.md):
 * compressed directories with every algorithm, ztailpacking, fragments, the metabox,
 * the metadata zone, 48-bit layout, long xattr prefixes, big pclusters, a device table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "erofs_test.h"

static const char *const images[] = {
	"zd",  "lzma", "deflate", "zstd", "frag",   "allfrag", "mbox",
	"mz",  "48",   "pfx",     "pfxplain", "ext", "bigpcl",  "filter",
};

static void load(struct timage *t, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "tests/unit/erofs/images/%s.erofs", name);
	assert_int_equal(timage_load_path(t, path), 0);
}

static void xattr_is(struct erofs_ctx *ctx, const char *path, const char *name,
		     const char *value, size_t len)
{
	struct xfind x = { .name = name };
	struct erofs_inode vi;

	assert_int_equal(erofs_lookup_path(ctx, path, &vi), 0);
	assert_int_equal(erofs_listxattr(ctx, &vi, xfind_cb, &x), 0);
	assert_int_equal(x.found, 1);
	assert_int_equal(x.len, len);
	assert_memory_equal(x.value, value, len);
}

static void test_layouts(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(images); i++) {
		const char *name = images[i];
		struct erofs_walk_stats st;
		struct util_extents ext;
		struct erofs_ctx ctx;
		struct erofs_inode vi;
		struct timage t, sparse;
		struct util_error err = UTIL_ERROR_INIT;
		char buf[2048], expect[2048], q[40], *full, *part;

		load(&t, name);
		util_extents_init(&ext);
		if (erofs_walk(&t.io, &(struct erofs_walk_opts){.align = 1}, &ext, &st, &err) < 0)
			fail_msg("%s: %s", name, err.message);
		assert_int_equal(st.inodes, 21);
		assert_int_equal(st.dirs, 3);
		assert_int_equal(st.regular, 14);
		assert_int_equal(st.symlinks, 2);
		assert_int_equal(st.special, 2);

		assert_int_equal(erofs_ctx_init(&ctx, &t.io, &err), 0);
		assert_int_equal(ctx.bs, 1024);
		assert_int_equal(erofs_lookup_path(&ctx, "/sub", &vi), 0);
		if (strstr("zd lzma deflate zstd frag bigpcl", name))
			assert_true(erofs_inode_is_compressed(&vi));
		if (!strcmp(name, "mbox"))
			assert_true(vi.in_mbox);
		/* file contents, decompressed (tails inline, in fragments, in the packed inode) */
		for (unsigned int f = 1; f < 12; f++) {
			char path[64], line[16];

			snprintf(path, sizeof(path), "/sub/f%02u", f);
			snprintf(line, sizeof(line), "data%u\n", f);
			assert_int_equal(erofs_lookup_path(&ctx, path, &vi), 0);
			assert_int_equal(vi.size, strlen(line) * 20 * f);
			assert_int_equal(erofs_read_data(&ctx, &vi, buf, vi.size, 0), 0);
			expect[0] = 0;
			for (unsigned int k = 0; k < 20 * f; k++)
				strcat(expect, line);
			assert_memory_equal(buf, expect, vi.size);
		}
		assert_int_equal(erofs_lookup_path(&ctx, "/ll", &vi), 0);
		assert_int_equal(erofs_read_symlink(&ctx, &vi, buf, sizeof(buf)), 221);
		assert_int_equal(erofs_lookup_path(&ctx, "/hl", &vi), 0);
		assert_int_equal(vi.nlink, 2);
		assert_int_equal(erofs_lookup_path(&ctx, "/cdev", &vi), 0);
		assert_int_equal(erofs_rdev_major(vi.rdev), 1);
		assert_int_equal(erofs_rdev_minor(vi.rdev), 3);
		xattr_is(&ctx, "/text", "user.a", "1", 1);
		xattr_is(&ctx, "/sub/f01", "user.shared", "same", 4);
		xattr_is(&ctx, "/sub/f02", "user.shared", "same", 4);
		memset(q, 'q', sizeof(q));
		xattr_is(&ctx, "/sub/f03", "trusted.overlay.x", q, sizeof(q));
		erofs_ctx_done(&ctx);

		/* closure: only the extents, and the tree reads the same */
		assert_int_equal(tdump_image(&t.io, &full, &err), 0);
		timage_sparse(&t, &ext, &sparse);
		if (tdump_image(&sparse.io, &part, &err) < 0)
			fail_msg("%s: sparse copy unreadable: %s", name, err.message);
		assert_string_equal(full, part);
		print_message("  %-9s %zu bytes, %zu exact extents, %" PRIu64 " bytes\n", name,
			      t.len, ext.n, st.meta_bytes);
		free(full);
		free(part);
		timage_free(&sparse);
		util_extents_free(&ext);
		timage_free(&t);
	}
}

static void test_device_table(void **state)
{
	struct erofs_info info;
	struct erofs_walk_stats st;
	struct util_extents ext;
	struct timage t;
	struct util_error err = UTIL_ERROR_INIT;

	load(&t, "devtable");
	assert_int_equal(erofs_probe(&t.io, &info, &err), 0);
	assert_int_equal(info.extra_devices, 1);
	assert_non_null(strstr(info.features, "device_table"));
	util_extents_init(&ext);
	assert_int_equal(erofs_walk(&t.io, NULL, &ext, &st, &err), 0);
	assert_int_equal(st.inodes, 21);
	util_extents_free(&ext);
	timage_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_device_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
