// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The walk's rounds, over an io that counts prefetch calls and checks every read: each
 * byte the walk reads must have been prefetched before (on a real mount an unprefetched
 * metadata read raises pre-content events one by one), all of the exact result (without the
 * gaps its merge bridges) is prefetched when it returns, and the walk takes at most one round per directory level plus two (the
 * superblock, and the last one for what was listed but not read). Also: the result does not
 * depend on prefetching, a failing prefetch fails the walk, and so does a prefetch that
 * "succeeds" but leaves something out. Presence is the io's record (io->present), here the
 * checker's own.
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

#define GRAN 512u

struct counting {
	const struct timage *t;
	uint8_t *present; /* per 512 bytes */
	uint64_t rounds, ranges, bytes;
	uint64_t reads, unprefetched; /* reads; those touching bytes never prefetched */
	uint64_t refetched;           /* 512-byte units prefetched a second time */
	uint64_t runs;                /* runs of units not present before: what a fetcher that
				       * skips present data asks its source for */
	int fail_after;               /* prefetch call that fails (0 = none) */
	int drop_last;                /* "succeed" without making the last range present */
	bool verbose;
	/* Partial arrival: a prefetch makes present a random part (at least one run) of all
	 * that is outstanding, in random order, as a pipelined io may; the rest later. */
	bool partial;
	bool stingy;       /* ... one piece per prefetch, however much is outstanding */
	uint32_t *asked;   /* per unit: the prefetch that first listed it (0: none) */
	bool partial_left;
	uint64_t rng;      /* xorshift state */
	uint64_t partial_returns; /* prefetches that returned with something outstanding */
};

static uint64_t c_rand(struct counting *c)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return c->rng;
}

static int c_read(void *opaque, void *buf, uint64_t len, uint64_t off)
{
	struct counting *c = opaque;

	assert_true(off + len <= c->t->len);
	c->reads++;
	for (uint64_t g = off / GRAN; g * GRAN < off + len; g++)
		if (!c->present[g]) {
			c->unprefetched++;
			break;
		}
	memcpy(buf, c->t->buf + off, len);
	return 0;
}

static bool c_present(void *opaque, uint64_t off, uint64_t len)
{
	struct counting *c = opaque;

	assert_true(off + len <= c->t->len);
	for (uint64_t g = off / GRAN; g * GRAN < off + len; g++)
		if (!c->present[g])
			return false;
	return true;
}

/* Make present a random part of what is outstanding, at least one piece: the outstanding runs
 * cut in pieces of 1..8 times 4 KiB (whole blocks: what was listed is block-aligned),
 * shuffled; 1..all of them arrive (stingy: one). As on a link, what this call lists for the
 * first time is still on its way while older requests are outstanding: those arrive first. */
static void c_arrive(struct counting *c, const struct util_extent *v, size_t n)
{
	uint64_t units = c->t->len / GRAN + 1, npieces = 0, nold = 0, (*pieces)[2];
	uint8_t *listed = calloc(units, 1);
	uint32_t call = (uint32_t)c->rounds;

	assert_non_null(listed);
	for (size_t i = 0; i < n; i++)
		for (uint64_t g = v[i].offset / GRAN; g * GRAN < v[i].offset + v[i].length; g++) {
			listed[g] = 1;
			if (!c->asked[g])
				c->asked[g] = call;
		}
	pieces = calloc(units, sizeof(*pieces));
	assert_non_null(pieces);
	for (uint64_t g = 0; g < units;) {
		uint64_t len = 0, max = (1 + c_rand(c) % 8) * (4096 / GRAN);
		bool old;

		if (!c->asked[g] || c->present[g]) {
			g++;
			continue;
		}
		old = c->asked[g] < call;
		/* the walk lists again what it asked for before and did not get yet */
		while (g + len < units && len < max && c->asked[g + len] && !c->present[g + len] &&
		       (c->asked[g + len] < call) == old) {
			if (!listed[g + len])
				fail_msg("unit %" PRIu64 " outstanding but not listed again",
					 g + len);
			len++;
		}
		/* the old pieces first */
		if (old) {
			pieces[npieces][0] = pieces[nold][0];
			pieces[npieces][1] = pieces[nold][1];
			pieces[nold][0] = g;
			pieces[nold++][1] = len;
		} else {
			pieces[npieces][0] = g;
			pieces[npieces][1] = len;
		}
		npieces++;
		g += len;
	}
	if (nold)
		npieces = nold;
	for (uint64_t i = npieces; i > 1; i--) {
		uint64_t j = c_rand(c) % i, t0 = pieces[i - 1][0], t1 = pieces[i - 1][1];

		pieces[i - 1][0] = pieces[j][0];
		pieces[i - 1][1] = pieces[j][1];
		pieces[j][0] = t0;
		pieces[j][1] = t1;
	}
	if (npieces) {
		uint64_t k = c->stingy		   ? 1
			     : c_rand(c) % 8 == 0 ? npieces
						  : 1 + c_rand(c) % npieces;

		for (uint64_t i = 0; i < k; i++)
			memset(c->present + pieces[i][0], 1, pieces[i][1]);
	}
	for (uint64_t g = 0; g < units && !c->partial_left; g++)
		c->partial_left = c->asked[g] && !c->present[g];
	if (c->partial_left)
		c->partial_returns++;
	c->partial_left = false;
	free(pieces);
	free(listed);
}

static int c_prefetch(void *opaque, const struct util_extent *v, size_t n)
{
	struct counting *c = opaque;
	uint64_t bytes = 0;

	c->rounds++;
	if (c->fail_after && c->rounds == (uint64_t)c->fail_after)
		return -EIO;
	assert_true(n > 0);
	if (c->partial) {
		c_arrive(c, v, n);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		assert_true(v[i].length > 0);
		assert_true(v[i].offset + v[i].length <= c->t->len);
		if (i) /* sorted, merged */
			assert_true(v[i - 1].offset + v[i - 1].length < v[i].offset);
		bytes += v[i].length;
		for (uint64_t g = v[i].offset / GRAN; g * GRAN < v[i].offset + v[i].length; g++)
			if (!c->present[g] && (g * GRAN == v[i].offset || c->present[g - 1]))
				c->runs++;
		if (c->drop_last && i == n - 1)
			continue;
		for (uint64_t g = v[i].offset / GRAN; g * GRAN < v[i].offset + v[i].length; g++) {
			c->refetched += c->present[g];
			c->present[g] = 1;
		}
	}
	c->ranges += n;
	c->bytes += bytes;
	if (c->verbose)
		print_message("      round %" PRIu64 ": %zu ranges, %" PRIu64 " bytes\n", c->rounds,
			      n, bytes);
	return 0;
}

static int walk_counting(const struct timage *t, struct counting *c, uint64_t gap,
			 struct util_extents *ext, struct erofs_walk_stats *st,
			 struct util_error *err)
{
	struct erofs_io io = { .ctx = c, .size = t->len, .read = c_read, .present = c_present,
			       .prefetch = c_prefetch };
	struct erofs_walk_opts opts = { .merge_gap = gap };

	c->t = t;
	c->present = calloc(t->len / GRAN + 1, 1);
	assert_non_null(c->present);
	util_extents_init(ext);
	return erofs_walk(&io, &opts, ext, st, err);
}

static void check_rounds(const char *name, const struct timage *t, bool verbose,
			 struct counting *ret)
{
	struct counting c = { .verbose = verbose };
	struct erofs_walk_stats st, st2;
	struct util_extents ext, plain;
	struct util_error err = UTIL_ERROR_INIT;

	if (walk_counting(t, &c, EROFS_DEFAULT_MERGE_GAP, &ext, &st, &err) < 0)
		fail_msg("%s: walk failed: %s", name, err.message);
	print_message("  %-40s %u levels: %" PRIu64 " rounds, %" PRIu64
		      " ranges (%" PRIu64 " runs not present), %" PRIu64
		      " bytes prefetched; %zu extents, %" PRIu64 " bytes of metadata\n",
		      name, st.levels, c.rounds, c.ranges, c.runs, c.bytes, ext.n,
		      st.meta_bytes);
	assert_int_equal(c.unprefetched, 0);
	assert_true(c.reads > 0);
	/* and the whole exact result (the gaps its merge bridges aside: nothing reads them) was
	 * prefetched: the caller needs no batch of its own */
	{
		struct erofs_io io;

		erofs_io_from_memory(&io, t->buf, t->len);
		util_extents_init(&plain);
		assert_int_equal(
		    erofs_walk(&io, &(struct erofs_walk_opts){.merge_gap = 0}, &plain, &st2, &err),
		    0);
		for (size_t i = 0; i < plain.n; i++)
			for (uint64_t g = plain.v[i].offset / GRAN;
			     g * GRAN < plain.v[i].offset + plain.v[i].length; g++)
				if (!c.present[g])
					fail_msg("%s: result range %" PRIu64 "+%" PRIu64
						 " not prefetched",
						 name, plain.v[i].offset, plain.v[i].length);
		util_extents_free(&plain);
	}
	assert_int_equal(st.prefetches, c.rounds);
	assert_true(c.rounds >= 1);
	assert_true(c.rounds <= st.levels + 2);
	/* the same result as without any prefetching */
	{
		struct erofs_io io;

		erofs_io_from_memory(&io, t->buf, t->len);
		util_extents_init(&plain);
		assert_int_equal(
		    erofs_walk(&io, &(struct erofs_walk_opts){.merge_gap = EROFS_DEFAULT_MERGE_GAP},
			       &plain, &st2, &err),
		    0);
		assert_int_equal(st2.prefetches, 0);
		assert_int_equal(st2.levels, st.levels);
		assert_int_equal(st2.inodes, st.inodes);
		assert_int_equal(st2.dirents, st.dirents);
		assert_int_equal(ext.n, plain.n);
		assert_memory_equal(ext.v, plain.v, ext.n * sizeof(*ext.v));
		util_extents_free(&plain);
	}
	free(c.present);
	util_extents_free(&ext);
	if (ret)
		*ret = c;
}

static void test_rounds_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct timage t;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		check_rounds(fixtures[i], &t, false, NULL);
		timage_free(&t);
	}
}

/* The Debian minbase images of the benchmark (mkfs.erofs 1.5: metadata spread over the whole
 * image), when they were built. */
static void test_rounds_bench(void **state)
{
	static const char *const names[] = {
		"bench/out/rootfs-bookworm-minbase-lz4hc.erofs",
		"bench/out/rootfs-bookworm-minbase-uncompressed.erofs",
	};
	int found = 0;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct timage t;

		if (timage_load_path(&t, names[i]) < 0)
			continue;
		found++;
		check_rounds(names[i], &t, true, NULL);
		timage_free(&t);
	}
	if (!found)
		skip();
}

/* A prefetch that does not make everything it was asked for present fails the walk (rather
 * than coming back forever); a prefetch error fails the walk with a message. */
static void test_broken_prefetch(void **state)
{
	struct erofs_walk_stats st;
	struct util_extents ext;
	struct timage t;
	struct util_error err = UTIL_ERROR_INIT;
	int r;

	(void)state;
	assert_int_equal(timage_load_fixture(&t, "plain"), 0);
	{
		struct counting c = { .drop_last = 1 };

		r = walk_counting(&t, &c, EROFS_DEFAULT_MERGE_GAP, &ext, &st, &err);
		assert_int_equal(r, -EIO);
		assert_non_null(strstr(err.message, "absent"));
		assert_int_equal(c.unprefetched, 0);
		free(c.present);
		util_extents_free(&ext);
	}
	for (int k = 1; k <= 3; k++) {
		struct counting c = { .fail_after = k };

		err.message[0] = 0;
		r = walk_counting(&t, &c, EROFS_DEFAULT_MERGE_GAP, &ext, &st, &err);
		assert_int_equal(r, -EIO);
		assert_non_null(strstr(err.message, "prefetch of"));
		assert_non_null(strstr(err.message, "failed"));
		assert_int_equal(c.rounds, (uint64_t)k);
		free(c.present);
		util_extents_free(&ext);
	}
	timage_free(&t);
}

/* Without merging (gap 0) every round asks only for blocks not asked for before. */
static void test_no_refetch(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct counting c = { 0 };
		struct erofs_walk_stats st;
		struct util_extents ext;
		struct timage t;
		struct util_error err = UTIL_ERROR_INIT;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		assert_int_equal(walk_counting(&t, &c, 0, &ext, &st, &err), 0);
		assert_int_equal(c.unprefetched, 0);
		assert_int_equal(c.refetched, 0);
		assert_true(c.bytes <= t.len);
		assert_true(c.rounds <= st.levels + 2);
		free(c.present);
		util_extents_free(&ext);
		timage_free(&t);
	}
}

/* The files and their ranges, folded into one number whatever their order: the same walk
 * reports the same files. */
static int fold_file(void *ctx, uint64_t nid, uint64_t size, const struct util_extent *v,
		     size_t n)
{
	uint64_t *sum = ctx, h = nid * 31 + size;

	for (size_t i = 0; i < n; i++)
		h = h * 1000003 + v[i].offset * 7 + v[i].length;
	*sum += h * 0x9e3779b97f4a7c15ull;
	return 0;
}

/* A walk over an io whose prefetch returns when only part of what it was asked for arrived
 * (in random order; the rest arrives in later calls), as the mount's pipelined io does: the
 * same result, the same files and counts as a walk over an io that prefetches whole rounds,
 * no read of an absent byte, and all of the exact result present when it returns. */
static void check_partial(const char *name, const struct timage *t, uint64_t seed, bool stingy)
{
	struct counting c = { .partial = true, .stingy = stingy, .rng = seed }, s = { 0 };
	struct erofs_walk_stats st, sst;
	struct util_extents ext, sext, plain;
	struct util_error err = UTIL_ERROR_INIT;
	uint64_t fh = 0, sfh = 0;
	struct erofs_io io = { .ctx = &c, .size = t->len, .read = c_read, .present = c_present,
			       .prefetch = c_prefetch };
	struct erofs_walk_opts opts = { .merge_gap = EROFS_DEFAULT_MERGE_GAP,
					.on_file = fold_file, .file_ctx = &fh };

	c.t = s.t = t;
	c.present = calloc(t->len / GRAN + 1, 1);
	c.asked = calloc(t->len / GRAN + 1, sizeof(*c.asked));
	s.present = calloc(t->len / GRAN + 1, 1);
	assert_non_null(c.present);
	assert_non_null(c.asked);
	assert_non_null(s.present);
	util_extents_init(&ext);
	util_extents_init(&sext);
	if (erofs_walk(&io, &opts, &ext, &st, &err) < 0)
		fail_msg("%s (seed %" PRIu64 "): walk failed: %s", name, seed, err.message);
	io.ctx = &s;
	opts.file_ctx = &sfh;
	assert_int_equal(erofs_walk(&io, &opts, &sext, &sst, &err), 0);
	assert_int_equal(c.unprefetched, 0);
	assert_int_equal(ext.n, sext.n);
	assert_memory_equal(ext.v, sext.v, ext.n * sizeof(*ext.v));
	assert_int_equal(st.inodes, sst.inodes);
	assert_int_equal(st.dirs, sst.dirs);
	assert_int_equal(st.regular, sst.regular);
	assert_int_equal(st.symlinks, sst.symlinks);
	assert_int_equal(st.dirents, sst.dirents);
	assert_int_equal(st.levels, sst.levels);
	assert_int_equal(st.files, sst.files);
	assert_int_equal(st.files_skipped, sst.files_skipped);
	assert_int_equal(st.meta_bytes, sst.meta_bytes);
	assert_true(fh == sfh);
	assert_int_equal(st.prefetches, c.rounds);
	/* everything of the exact result arrived before the walk returned */
	erofs_io_from_memory(&io, t->buf, t->len);
	util_extents_init(&plain);
	assert_int_equal(erofs_walk(&io, &(struct erofs_walk_opts){ .merge_gap = 0 }, &plain,
				    NULL, &err), 0);
	for (size_t i = 0; i < plain.n; i++)
		for (uint64_t g = plain.v[i].offset / GRAN;
		     g * GRAN < plain.v[i].offset + plain.v[i].length; g++)
			if (!c.present[g])
				fail_msg("%s (seed %" PRIu64 "): result range %" PRIu64 "+%" PRIu64
					 " absent when the walk returned",
					 name, seed, plain.v[i].offset, plain.v[i].length);
	for (uint64_t g = 0; g <= t->len / GRAN; g++)
		if (c.asked[g] && !c.present[g])
			fail_msg("%s (seed %" PRIu64 "): unit %" PRIu64
				 " listed but absent when the walk returned", name, seed, g);
	print_message("  %-40s seed %" PRIu64 ": %" PRIu64 " prefetches (%" PRIu64
		      " returned early) vs %" PRIu64 "\n",
		      name, seed, c.rounds, c.partial_returns, s.rounds);
	util_extents_free(&plain);
	util_extents_free(&ext);
	util_extents_free(&sext);
	free(c.present);
	free(c.asked);
	free(s.present);
}

static void test_partial_arrival(void **state)
{
	static const char *const bench[] = {
		"bench/out/rootfs-bookworm-minbase-lz4hc.erofs",
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		struct timage t;

		assert_int_equal(timage_load_fixture(&t, fixtures[i]), 0);
		for (uint64_t seed = 1; seed <= 6; seed++)
			check_partial(fixtures[i], &t, seed * 0x9e3779b97f4a7c15ull, seed % 2);
		timage_free(&t);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bench); i++) {
		struct timage t;

		if (timage_load_path(&t, bench[i]) < 0)
			continue;
		check_partial(bench[i], &t, 0x2545f4914f6cdd1dull, false);
		check_partial(bench[i], &t, 0x2545f4914f6cdd1dull, true);
		timage_free(&t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rounds_fixtures),
		cmocka_unit_test(test_rounds_bench),
		cmocka_unit_test(test_broken_prefetch),
		cmocka_unit_test(test_no_refetch),
		cmocka_unit_test(test_partial_arrival),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
