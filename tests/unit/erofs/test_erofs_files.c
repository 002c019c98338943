// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for the walk's per-file data ranges (erofs_walk_opts.on_file): on every fixture
 * layout each regular file is reported once, its ranges lie in the image, are merged, and are
 * enough: the file's whole contents read back identical through an io that only serves the
 * walk's metadata and that file's ranges. The same files and ranges come out whether the walk
 * prefetches in rounds (deferring files whose indexes are absent) or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "erofs_test.h"
#include "util/macro.h"

static const char *const fixtures[] = {
	"plain",	"lz4hc",	"lzma",		"deflate",	   "zstd",
	"chunked",	"ztailpacking", "fragments",	"allfragments",	   "metazone",
	"metacompress", "bs1k",		"extended-inodes",
};

struct tfile {
	uint64_t nid, size;
	struct util_extent *v;
	size_t n;
};

struct tfiles {
	struct tfile *f;
	size_t n, alloc;
	int fail_at; /* on_file returns an error at this call (0: never) */
};

static int collect(void *opaque, uint64_t nid, uint64_t size, const struct util_extent *v,
		   size_t n)
{
	struct tfiles *t = opaque;
	struct tfile *f;

	if (t->fail_at && (int)t->n + 1 == t->fail_at)
		return -ECANCELED;
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? t->alloc * 2 : 64;
		t->f = realloc(t->f, t->alloc * sizeof(*t->f));
		assert_non_null(t->f);
	}
	f = &t->f[t->n++];
	f->nid = nid;
	f->size = size;
	f->n = n;
	f->v = malloc((n ? n : 1) * sizeof(*v));
	assert_non_null(f->v);
	memcpy(f->v, v, n * sizeof(*v));
	return 0;
}

static void tfiles_free(struct tfiles *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->f[i].v);
	free(t->f);
	memset(t, 0, sizeof(*t));
}

static int by_nid(const void *a, const void *b)
{
	const struct tfile *x = a, *y = b;

	return x->nid < y->nid ? -1 : x->nid > y->nid;
}

/* A memory io that prefetches in rounds and refuses reads of bytes not prefetched. */
struct pio {
	const struct timage *t;
	uint8_t *present; /* per 512 bytes */
};

static int pio_prefetch(void *ctx, const struct util_extent *v, size_t n)
{
	struct pio *p = ctx;

	for (size_t i = 0; i < n; i++)
		for (uint64_t g = v[i].offset >> 9; g << 9 < v[i].offset + v[i].length; g++)
			p->present[g] = 1;
	return 0;
}

static int pio_read(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	struct pio *p = ctx;

	for (uint64_t g = off >> 9; g << 9 < off + len; g++)
		if (!p->present[g])
			return -EIO;
	memcpy(buf, p->t->buf + off, len);
	return 0;
}

/* The io's presence record, which the walk asks (it keeps none of its own). */
static bool pio_present(void *ctx, uint64_t off, uint64_t len)
{
	struct pio *p = ctx;

	for (uint64_t g = off >> 9; g << 9 < off + len; g++)
		if (!p->present[g])
			return false;
	return true;
}

/* An io that serves only the bytes in a or b. */
struct rio {
	const struct timage *t;
	const struct util_extent *a, *b;
	size_t na, nb;
	bool open; /* everything (parsing the superblock reads more than the walk records) */
	uint64_t refused;
};

static bool covered(const struct rio *r, uint64_t off, uint64_t end)
{
	while (off < end) {
		uint64_t to = off;

		for (size_t i = 0; i < r->na; i++)
			if (r->a[i].offset <= off && off < r->a[i].offset + r->a[i].length)
				to = MAX(to, r->a[i].offset + r->a[i].length);
		for (size_t i = 0; i < r->nb; i++)
			if (r->b[i].offset <= off && off < r->b[i].offset + r->b[i].length)
				to = MAX(to, r->b[i].offset + r->b[i].length);
		if (to == off)
			return false;
		off = to;
	}
	return true;
}

static int rio_read(void *ctx, void *buf, uint64_t len, uint64_t off)
{
	struct rio *r = ctx;

	if (!r->open && !covered(r, off, off + len)) {
		r->refused++;
		return -EIO;
	}
	memcpy(buf, r->t->buf + off, len);
	return 0;
}

static void walk_files(const struct timage *t, bool rounds, struct tfiles *out,
		       struct util_extents *ext, struct erofs_walk_stats *st)
{
	struct pio p = { .t = t, .present = calloc(t->len / 512 + 1, 1) };
	struct erofs_io io = { .ctx = &p, .size = t->len, .read = pio_read,
			       .prefetch = rounds ? pio_prefetch : NULL, .present = pio_present };
	struct erofs_walk_opts opts = { .align = 1, .on_file = collect, .file_ctx = out };
	struct util_error err = UTIL_ERROR_INIT;

	assert_non_null(p.present);
	if (!rounds)
		memset(p.present, 1, t->len / 512 + 1);
	util_extents_init(ext);
	if (erofs_walk(&io, &opts, ext, st, &err) < 0)
		fail_msg("walk failed: %s", err.message);
	free(p.present);
	qsort(out->f, out->n, sizeof(*out->f), by_nid);
}

static void check_fixture(const char *name)
{
	struct timage t;
	struct tfiles a = { 0 }, b = { 0 };
	struct util_extents ext, ext2;
	struct erofs_walk_stats st, st2;
	struct erofs_ctx full;
	struct util_error err = UTIL_ERROR_INIT;
	uint64_t ranges = 0, bytes = 0;

	assert_int_equal(timage_load_fixture(&t, name), 0);
	walk_files(&t, true, &a, &ext, &st);
	walk_files(&t, false, &b, &ext2, &st2);
	/* every regular file once, hardlinks once, the same either way */
	assert_int_equal(a.n, st.regular);
	assert_int_equal(st.files, st.regular);
	assert_int_equal(st.files_skipped, 0);
	assert_int_equal(a.n, b.n);
	for (size_t i = 0; i < a.n; i++) {
		assert_int_equal(a.f[i].nid, b.f[i].nid);
		if (i)
			assert_true(a.f[i].nid != a.f[i - 1].nid);
		assert_int_equal(a.f[i].n, b.f[i].n);
		assert_memory_equal(a.f[i].v, b.f[i].v, a.f[i].n * sizeof(*a.f[i].v));
	}
	assert_int_equal(ext.n, ext2.n);
	assert_memory_equal(ext.v, ext2.v, ext.n * sizeof(*ext.v));

	assert_int_equal(erofs_ctx_init(&full, &t.io, &err), 0);
	for (size_t i = 0; i < a.n; i++) {
		const struct tfile *f = &a.f[i];
		struct rio r = { .t = &t, .a = ext.v, .na = ext.n, .b = f->v, .nb = f->n,
				 .open = true };
		struct erofs_io io = { .ctx = &r, .size = t.len, .read = rio_read };
		struct erofs_ctx ctx;
		struct erofs_inode vi, vf;
		uint8_t *want = malloc(f->size + 1), *got = malloc(f->size + 1);

		assert_non_null(want);
		assert_non_null(got);
		for (size_t k = 0; k < f->n; k++) {
			assert_true(f->v[k].length > 0);
			assert_true(f->v[k].offset + f->v[k].length <= t.len);
			if (k)
				assert_true(f->v[k].offset !=
					    f->v[k - 1].offset + f->v[k - 1].length);
		}
		ranges += f->n;
		for (size_t k = 0; k < f->n; k++)
			bytes += f->v[k].length;
		assert_int_equal(erofs_inode_load(&full, f->nid, &vf), 0);
		assert_int_equal(vf.size, f->size);
		assert_int_equal(erofs_read_data(&full, &vf, want, f->size, 0), 0);
		/* the walk's metadata plus this file's ranges are enough to read it */
		assert_int_equal(erofs_ctx_init(&ctx, &io, &err), 0);
		r.open = false;
		assert_int_equal(erofs_inode_load(&ctx, f->nid, &vi), 0);
		if (erofs_read_data(&ctx, &vi, got, f->size, 0) < 0)
			fail_msg("%s: nid %" PRIu64 " (%" PRIu64 " bytes, %zu ranges): read "
				 "needs more than its ranges",
				 name, f->nid, f->size, f->n);
		assert_memory_equal(want, got, f->size);
		assert_int_equal(r.refused, 0);
		erofs_ctx_done(&ctx);
		free(want);
		free(got);
	}
	erofs_ctx_done(&full);
	print_message("  %-16s %zu files, %" PRIu64 " ranges, %" PRIu64 " bytes of %zu\n", name,
		      a.n, ranges, bytes, t.len);
	tfiles_free(&a);
	tfiles_free(&b);
	util_extents_free(&ext);
	util_extents_free(&ext2);
	timage_free(&t);
}

static void test_files_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++)
		check_fixture(fixtures[i]);
}

/* Tail fragments: a fragment holds its extent's bytes from z_fragmentoff on (the reader once
 * added the extent's file offset too, and failed on these files): every layout reads the big
 * files as the plain image (flat blocks, nothing shared) does. */
static void test_contents_as_plain(void **state)
{
	static const char *const paths[] = { "/text.txt", "/text-copy.txt", "/random.bin",
					     "/holes.bin", "/sizes/f65659" };
	struct timage plain;
	struct erofs_ctx pc;
	struct util_error err = UTIL_ERROR_INIT;

	(void)state;
	assert_int_equal(timage_load_fixture(&plain, "plain"), 0);
	assert_int_equal(erofs_ctx_init(&pc, &plain.io, &err), 0);
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct timage t;
		struct erofs_ctx ctx;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		assert_int_equal(erofs_ctx_init(&ctx, &t.io, &err), 0);
		for (size_t k = 0; k < ARRAY_SIZE(paths); k++) {
			struct erofs_inode a, b;
			uint8_t *x, *y;
			int r;

			assert_int_equal(erofs_lookup_path(&pc, paths[k], &a), 0);
			assert_int_equal(erofs_lookup_path(&ctx, paths[k], &b), 0);
			assert_int_equal(a.size, b.size);
			x = malloc(a.size);
			y = malloc(a.size);
			assert_int_equal(erofs_read_data(&pc, &a, x, a.size, 0), 0);
			r = erofs_read_data(&ctx, &b, y, b.size, 0);
			if (r < 0)
				fail_msg("%s %s: %s", fixtures[i], paths[k], err.message);
			assert_memory_equal(x, y, a.size);
			free(x);
			free(y);
		}
		erofs_ctx_done(&ctx);
		timage_free(&t);
	}
	erofs_ctx_done(&pc);
	timage_free(&plain);
}

/* A plain image's big flat files are one range each: their blocks are contiguous. */
static void test_files_plain_contiguous(void **state)
{
	struct timage t;
	struct tfiles a = { 0 };
	struct util_extents ext;
	struct erofs_walk_stats st;
	size_t big = 0;

	(void)state;
	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	walk_files(&t, true, &a, &ext, &st);
	for (size_t i = 0; i < a.n; i++) {
		if (a.f[i].size < 65536)
			continue;
		big++;
		assert_int_equal(a.f[i].n, 1);
		/* the inline tail is left out: whole blocks only */
		assert_int_equal(a.f[i].v[0].length, a.f[i].size & ~UINT64_C(4095));
	}
	assert_true(big >= 2);
	tfiles_free(&a);
	util_extents_free(&ext);
	timage_free(&t);
}

/* A file whose data map is corrupt (its blocks beyond the image) fails the walk with
 * EUCLEAN only when the walk maps files' data: the metadata walk alone does not look. */
static void test_files_corrupt_map(void **state)
{
	struct timage t;
	struct tfiles a = { 0 };
	struct util_extents ext;
	struct erofs_walk_opts opts = { .on_file = collect, .file_ctx = &a };
	struct erofs_ctx ctx;
	struct erofs_inode vi;
	struct util_error err = UTIL_ERROR_INIT;

	(void)state;
	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	assert_int_equal(erofs_ctx_init(&ctx, &t.io, &err), 0);
	assert_int_equal(erofs_lookup_path(&ctx, "/random.bin", &vi), 0);
	assert_int_equal(vi.layout, EROFS_LAYOUT_FLAT_PLAIN);
	erofs_ctx_done(&ctx);
	memcpy(t.buf + vi.iloc + 16, "\xf0\xff\xff\x0f", 4); /* i_u: the first block */
	if (vi.iloc < 4096) { /* in the superblock's block: repair its checksum */
		uint32_t crc;

		memset(t.buf + EROFS_SB_OFFSET + 4, 0, 4);
		crc = erofs_crc32c(~0u, t.buf + EROFS_SB_OFFSET, 4096 - EROFS_SB_OFFSET);
		memcpy(t.buf + EROFS_SB_OFFSET + 4, &crc, 4);
	}
	util_extents_init(&ext);
	if (erofs_walk(&t.io, NULL, &ext, NULL, &err) < 0)
		fail_msg("metadata walk: %s", err.message);
	assert_int_equal(erofs_walk(&t.io, &opts, &ext, NULL, &err), -EUCLEAN);
	assert_non_null(strstr(err.message, "beyond the image"));
	tfiles_free(&a);
	util_extents_free(&ext);
	timage_free(&t);
}

/* An error from on_file stops the walk with that error. */
static void test_files_callback_error(void **state)
{
	struct timage t;
	struct tfiles a = { .fail_at = 3 };
	struct util_extents ext;
	struct erofs_walk_opts opts = { .on_file = collect, .file_ctx = &a };
	struct util_error err = UTIL_ERROR_INIT;

	(void)state;
	assert_int_equal(timage_load_fixture(&t, "lz4hc"), 0);
	util_extents_init(&ext);
	assert_int_equal(erofs_walk(&t.io, &opts, &ext, NULL, &err), -ECANCELED);
	assert_int_equal(a.n, 2);
	tfiles_free(&a);
	util_extents_free(&ext);
	timage_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files_fixtures),
		cmocka_unit_test(test_contents_as_plain),
		cmocka_unit_test(test_files_plain_contiguous),
		cmocka_unit_test(test_files_corrupt_map),
		cmocka_unit_test(test_files_callback_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
