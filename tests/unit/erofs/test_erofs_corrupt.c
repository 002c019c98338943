// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Hostile images: truncation, bad magic, bad checksum, unknown feature bits, dirent name
 * offsets out of range, directory cycles, huge inode counts, indexes and block addresses
 * past the end, random byte flips in the metadata. Each must give -EUCLEAN / -EOPNOTSUPP
 * (or -EFBIG for a cap) with a reason, never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "erofs_test.h"

static void fix_csum(uint8_t *img)
{
	unsigned int bs = 1u << img[EROFS_SB_OFFSET + 12];
	unsigned int clen = bs > EROFS_SB_OFFSET ? bs - EROFS_SB_OFFSET : bs;
	uint32_t crc;

	memset(img + EROFS_SB_OFFSET + 4, 0, 4);
	crc = erofs_crc32c(~0u, img + EROFS_SB_OFFSET, clen);
	for (int i = 0; i < 4; i++)
		img[EROFS_SB_OFFSET + 4 + i] = (uint8_t)(crc >> (8 * i));
}

static int walk_err(const struct erofs_io *io, struct util_error *err)
{
	struct erofs_walk_opts opts = { .merge_gap = 4096 };
	struct util_extents ext;
	int r;

	util_extents_init(&ext);
	util_err_clear(err);
	r = erofs_walk(io, &opts, &ext, NULL, err);
	if (r < 0)
		assert_int_equal(ext.n, 0);
	util_extents_free(&ext);
	return r;
}

static void expect(struct timage *t, int code, const char *needle)
{
	struct util_error err = UTIL_ERROR_INIT;
	int r;

	/* the superblock checksum covers the rest of block 0 (inodes, inline data) too */
	if (!needle || strcmp(needle, "checksum"))
		fix_csum(t->buf);
	r = walk_err(&t->io, &err);
	if (r != code || (needle && !strstr(err.message, needle)))
		fail_msg("expected %d with '%s', got %d: '%s'", code, needle ? needle : "", r,
			 err.message);
	assert_true(err.message[0] != 0);
}

static void test_truncated(void **state)
{
	static const char *const names[] = { "plain", "lz4hc", "fragments", "metacompress",
					     "chunked", "bs1k" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct timage t;
		struct util_extents ext;
		size_t full, last;

		assert_int_equal(timage_load_fixture(&t, names[i]), 0);
		full = t.len;
		util_extents_init(&ext);
		assert_int_equal(
		    erofs_walk(&t.io, &(struct erofs_walk_opts){.align = 1}, &ext, NULL, NULL), 0);
		last = ext.v[ext.n - 1].offset + ext.v[ext.n - 1].length;
		util_extents_free(&ext);
		for (size_t cut = 0; cut < full; cut = cut < 4096 ? cut + 500 : cut * 3 / 2) {
			struct erofs_io io;
			struct util_error err = UTIL_ERROR_INIT;

			/* as cut, and with a block count that agrees (so reads run off the end) */
			erofs_io_from_memory(&io, t.buf, cut);
			assert_true(walk_err(&io, &err) == -EUCLEAN);
			assert_true(err.message[0] != 0);
			/* past the last metadata byte only file data is missing: not our business */
			if (cut > 4096 && cut < last) {
				uint8_t *copy = malloc(cut);
				unsigned int bs = 1u << t.buf[EROFS_SB_OFFSET + 12];
				uint32_t blocks = (uint32_t)(cut / bs);
				int r;

				memcpy(copy, t.buf, cut);
				memcpy(copy + EROFS_SB_OFFSET + 36, &blocks, 4);
				fix_csum(copy);
				erofs_io_from_memory(&io, copy, cut);
				r = walk_err(&io, &err);
				if (r != -EUCLEAN)
					fail_msg("%s cut at %zu: %d %s", names[i], cut, r,
						 err.message);
				free(copy);
			}
		}
		timage_free(&t);
	}
}

static void test_superblock(void **state)
{
	struct timage t;
	uint32_t v;

	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	t.buf[EROFS_SB_OFFSET] ^= 0xff;
	expect(&t, -EUCLEAN, "magic");
	t.buf[EROFS_SB_OFFSET] ^= 0xff;

	t.buf[EROFS_SB_OFFSET + 64] ^= 0x01; /* volume name: only the checksum notices */
	expect(&t, -EUCLEAN, "checksum");
	t.buf[EROFS_SB_OFFSET + 64] ^= 0x01;

	memcpy(&v, t.buf + EROFS_SB_OFFSET + 80, 4);
	v |= 1u << 12;
	memcpy(t.buf + EROFS_SB_OFFSET + 80, &v, 4);
	fix_csum(t.buf);
	expect(&t, -EOPNOTSUPP, "bit 12");
	v &= ~(1u << 12);
	memcpy(t.buf + EROFS_SB_OFFSET + 80, &v, 4);

	t.buf[EROFS_SB_OFFSET + 12] = 20; /* block size 1 MiB */
	fix_csum(t.buf);
	assert_true(walk_err(&t.io, NULL) < 0);
	t.buf[EROFS_SB_OFFSET + 12] = 12;

	t.buf[EROFS_SB_OFFSET + 13] = 250; /* superblock extension slots */
	fix_csum(t.buf);
	expect(&t, -EUCLEAN, "extension");
	t.buf[EROFS_SB_OFFSET + 13] = 0;

	/* a huge inode count in the superblock changes nothing: the walk counts for itself */
	memset(t.buf + EROFS_SB_OFFSET + 16, 0xff, 7);
	fix_csum(t.buf);
	{
		struct erofs_walk_stats st;
		struct util_extents ext;
		struct util_error err = UTIL_ERROR_INIT;

		util_extents_init(&ext);
		assert_int_equal(erofs_walk(&t.io, NULL, &ext, &st, &err), 0);
		assert_int_equal(st.inodes, 2536);
		util_extents_free(&ext);

		/* and the walk's own cap holds */
		assert_int_equal(erofs_walk(&t.io, &(struct erofs_walk_opts){.max_inodes = 100},
					    &ext, &st, &err),
				 -EFBIG);
		assert_non_null(strstr(err.message, "100"));
		util_extents_free(&ext);
	}
	timage_free(&t);
}

/* Offset (in the image) of directory `path`'s first data block, or of its inline data. */
static uint64_t dir_data(struct timage *t, const char *path, uint64_t *ret_nid)
{
	struct erofs_ctx ctx;
	struct erofs_inode vi;
	struct erofs_map map;
	struct util_error err = UTIL_ERROR_INIT;

	fix_csum(t->buf);
	assert_int_equal(erofs_ctx_init(&ctx, &t->io, &err), 0);
	assert_int_equal(erofs_lookup_path(&ctx, path, &vi), 0);
	assert_int_equal(erofs_map_blocks(&ctx, &vi, 0, &map), 0);
	assert_true(map.flags & EROFS_MAP_MAPPED);
	assert_false(erofs_inode_is_compressed(&vi));
	if (ret_nid)
		*ret_nid = vi.nid;
	erofs_ctx_done(&ctx);
	return map.pa;
}

/* Find dirent `name` in the directory block at off; returns its offset. */
static uint64_t find_dirent(struct timage *t, uint64_t off, const char *name)
{
	const uint8_t *blk = t->buf + off;
	unsigned int n = erofs_get_le16(blk + 8) / 12;

	for (unsigned int i = 0; i < n; i++) {
		unsigned int no = erofs_get_le16(blk + 12 * i + 8);

		if (!strncmp((const char *)blk + no, name, strlen(name)) &&
		    (i + 1 == n ? blk[no + strlen(name)] == 0 || no + strlen(name) == 4096 :
				  erofs_get_le16(blk + 12 * (i + 1) + 8) == no + strlen(name)))
			return off + 12 * i;
	}
	fail_msg("no dirent %s", name);
	return 0;
}

static void test_dirents(void **state)
{
	struct timage t;
	uint64_t root_nid, deep_nid, off, de;
	uint8_t save[12];

	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	off = dir_data(&t, "/", &root_nid);

	/* the first name offset beyond the block */
	memcpy(save, t.buf + off, 12);
	t.buf[off + 8] = 0x28;
	t.buf[off + 9] = 0x23; /* 9000 */
	expect(&t, -EUCLEAN, "nameoff 9000 beyond block");
	memcpy(t.buf + off, save, 12);

	/* a later entry's name offset before the names */
	de = find_dirent(&t, off, "fifo");
	memcpy(save, t.buf + de, 12);
	t.buf[de + 8] = 2;
	t.buf[de + 9] = 0;
	expect(&t, -EUCLEAN, "nameoff");
	memcpy(t.buf + de, save, 12);

	/* names out of order */
	{
		uint8_t *blk = t.buf + off;
		unsigned int no = erofs_get_le16(blk + find_dirent(&t, off, "fifo") - off + 8);

		blk[no] = 'z';
		expect(&t, -EUCLEAN, "not sorted");
		blk[no] = 'f';
	}

	/* a cycle: /deep/level0 points back at /deep */
	off = dir_data(&t, "/deep", &deep_nid);
	off = dir_data(&t, "/deep/level0", NULL);
	de = find_dirent(&t, off, "level1");
	memcpy(save, t.buf + de, 12);
	memcpy(t.buf + de, &deep_nid, 8);
	expect(&t, -EUCLEAN, "cycle");
	/* and back at the root */
	memcpy(t.buf + de, &root_nid, 8);
	expect(&t, -EUCLEAN, "cycle");
	/* a nid far beyond the image */
	memset(t.buf + de, 0xee, 7);
	t.buf[de + 7] = 0;
	expect(&t, -EUCLEAN, "beyond");
	memcpy(t.buf + de, save, 12);

	/* the whole fixture still walks after the repairs */
	{
		struct util_error err = UTIL_ERROR_INIT;

		fix_csum(t.buf);
		if (walk_err(&t.io, &err) != 0)
			fail_msg("after repairs: %s", err.message);
	}
	timage_free(&t);
}

static uint64_t inode_at(struct timage *t, const char *path)
{
	struct erofs_ctx ctx;
	struct erofs_inode vi;
	struct util_error err = UTIL_ERROR_INIT;
	uint64_t iloc;

	fix_csum(t->buf);
	assert_int_equal(erofs_ctx_init(&ctx, &t->io, &err), 0);
	assert_int_equal(erofs_lookup_path(&ctx, path, &vi), 0);
	assert_false(vi.in_mbox);
	iloc = vi.iloc;
	erofs_ctx_done(&ctx);
	return iloc;
}

static void test_inodes(void **state)
{
	struct timage t;
	uint8_t save[64];
	uint64_t at;

	/* a compressed file whose index array would run past the end */
	assert_int_equal(timage_load_fixture(&t, "lz4hc"), 0);
	at = inode_at(&t, "/text.txt");
	memcpy(save, t.buf + at, 64);
	memset(t.buf + at + 8, 0xff, 4); /* i_size 4 GiB - 1 */
	expect(&t, -EUCLEAN, "beyond the image");
	memcpy(t.buf + at, save, 64);
	timage_free(&t);

	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	/* a directory whose blocks lie past the end */
	at = inode_at(&t, "/bigdir");
	memcpy(save, t.buf + at, 64);
	memset(t.buf + at + 16, 0x7f, 4);
	expect(&t, -EUCLEAN, "beyond");
	memcpy(t.buf + at, save, 64);
	/* a bogus mode */
	at = inode_at(&t, "/fifo");
	memcpy(save, t.buf + at, 64);
	t.buf[at + 4] = 0;
	t.buf[at + 5] = 0;
	expect(&t, -EUCLEAN, "mode");
	/* an unknown data layout */
	t.buf[at + 4] = save[4];
	t.buf[at + 5] = save[5];
	t.buf[at] = 7 << 1;
	expect(&t, -EOPNOTSUPP, "layout");
	/* xattr count that runs past the record's block */
	memcpy(t.buf + at, save, 64);
	at = inode_at(&t, "/text.txt");
	memcpy(save, t.buf + at, 64);
	t.buf[at + 2] = 0xff;
	t.buf[at + 3] = 0xff;
	fix_csum(t.buf);
	assert_true(walk_err(&t.io, NULL) == -EUCLEAN);
	memcpy(t.buf + at, save, 64);
	/* a symlink longer than a page */
	at = inode_at(&t, "/long-link");
	memcpy(save, t.buf + at, 64);
	t.buf[at + 9] = 0x20;
	expect(&t, -EUCLEAN, "symlink");
	memcpy(t.buf + at, save, 64);
	timage_free(&t);
}

static void test_random_flips(void **state)
{
	static const char *const names[] = { "plain", "lz4hc", "ztailpacking", "fragments",
					     "metacompress", "chunked", "zstd", "lzma" };
	uint64_t seed = 0x1234567;
	unsigned int ok = 0, bad = 0;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct timage t;
		struct util_extents ext;
		struct util_error err = UTIL_ERROR_INIT;
		uint8_t *copy;

		assert_int_equal(timage_load_fixture(&t, names[i]), 0);
		util_extents_init(&ext);
		assert_int_equal(
		    erofs_walk(&t.io, &(struct erofs_walk_opts){.align = 1}, &ext, NULL, &err), 0);
		copy = malloc(t.len);
		for (unsigned int it = 0; it < 60; it++) {
			struct erofs_io io;
			int r;

			memcpy(copy, t.buf, t.len);
			for (unsigned int k = 0; k < 1 + it % 6; k++) {
				struct util_extent *e;

				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				e = &ext.v[(seed >> 33) % ext.n];
				copy[e->offset + (seed >> 7) % e->length] ^= (uint8_t)(1u << (seed % 8));
			}
			if (it % 2)
				fix_csum(copy);
			erofs_io_from_memory(&io, copy, t.len);
			r = walk_err(&io, &err);
			if (r == 0) {
				ok++;
			} else {
				if (r != -EUCLEAN && r != -EOPNOTSUPP && r != -EFBIG)
					fail_msg("%s: flip %u: %d %s", names[i], it, r,
						 err.message);
				assert_true(err.message[0] != 0);
				bad++;
			}
		}
		free(copy);
		util_extents_free(&ext);
		timage_free(&t);
	}
	print_message("  %u walks succeeded, %u refused\n", ok, bad);
	assert_true(bad > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_superblock),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_dirents),
		cmocka_unit_test(test_inodes),
		cmocka_unit_test(test_random_flips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
