/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Public interface of the EROFS on-disk format reader: probe an image and
 * walk it to list the byte ranges that must be present before a mount (the
 * structures the kernel reads without a pre-content event, plus directory
 * blocks and symlink targets so that a plain tree walk never waits).
 *
 * All reads go through struct erofs_io, so the same code runs over a local
 * file, a memory buffer (tests, fuzzing) or the lazily-filled cache.
 */
#ifndef LAZYEROFS_EROFS_EROFS_H
#define LAZYEROFS_EROFS_EROFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extents.h"

struct erofs_io {
	void *ctx;
	uint64_t size; /* image size in bytes */
	/* Read exactly len bytes at off; 0 or -errno. */
	int (*read)(void *ctx, void *buf, uint64_t len, uint64_t off);
	/* Optional (NULL: every byte counts present, the walk never prefetches): whether all of
	 * [off, off + len) is present. The walk reads nothing else; it asks again after a round,
	 * so this is the one record of presence. */
	bool (*present)(void *ctx, uint64_t off, uint64_t len);
	/* With present: make these ranges present (sorted, disjoint, aligned to the image's
	 * block size or clamped to its end). The walk goes in rounds: it processes whatever is
	 * present, then lists everything its blocked work needs in one call, with whatever
	 * earlier calls listed that is still absent. It lists only what it needs, exactly; how
	 * the ranges become requests (merging, bridging gaps, fetching in the background) is
	 * the io's business.
	 * A call may return before all of it is present, so that the walk goes on with what
	 * arrived while the rest is on its way: but only once something listed became present
	 * (or everything did), since the walk then calls again with the rest. A call that
	 * succeeds with nothing listed made present fails the walk (-EIO). Every listed byte
	 * is present when the walk returns successfully: it calls until they are. Presence
	 * changes only within a call (the walk is single-threaded; so is present()). */
	int (*prefetch)(void *ctx, const struct util_extent *v, size_t n);
};

/* An io over a memory buffer (not copied) / a local file descriptor (not owned). */
void erofs_io_from_memory(struct erofs_io *io, const void *buf, uint64_t size);
int erofs_io_from_fd(struct erofs_io *io, int fd);

struct erofs_info {
	uint32_t block_size;
	uint32_t feature_compat;
	uint32_t feature_incompat;
	uint64_t blocks;          /* superblock block count */
	uint64_t inodes;          /* superblock inode count */
	uint16_t extra_devices;   /* device table entries (mount needs -o device=) */
	uint64_t meta_offset;     /* where the inode records start (meta_blkaddr); past 0 with a
				   * metadata zone (mkfs.erofs --MZ), which lies from there to the
				   * image's end */
	bool has_checksum;        /* superblock crc32c present and verified */
	char features[256];       /* human-readable feature list, e.g. "lz4 ztailpacking" */
	char volume_name[17];
	uint8_t uuid[16];
};

/* Read and validate the superblock. -EUCLEAN (with the reason in err) on corruption,
 * -EOPNOTSUPP for features this reader does not understand. */
int erofs_probe(const struct erofs_io *io, struct erofs_info *ret, struct util_error *err);

struct erofs_walk_opts {
	uint64_t merge_gap;  /* bridge gaps of the result up to this many bytes (0 = exact) */
	uint64_t max_inodes; /* 0 = default bound (16M); more inodes: -EFBIG */
	uint64_t align;      /* align ranges outward to this power of two; 0 = 4096, 1 = exact */
	/* Optional: called once for each regular file the walk visits (a hardlinked file once),
	 * with the byte ranges of the image that hold its data, in file order, adjacent ones
	 * merged: flat blocks, chunks (holes left out), the pclusters of compressed files and,
	 * for a fragment, the ranges of the packed inode that hold it. Inline tails (plain or
	 * ztailpacking) are left out: they sit in the inode's metadata block, which the walk
	 * makes present anyway. n may be 0 (empty, inline-only or sparse files). Costs no reads
	 * beyond the walk's own ranges; a file whose index bytes are not present yet is reported
	 * after the last round. Returning < 0 stops the walk with that error. Files beyond
	 * EROFS_FILES_MAX_MAPS extent mappings, or on extra devices, are not reported. */
	int (*on_file)(void *ctx, uint64_t nid, uint64_t size, const struct util_extent *v,
		       size_t n);
	void *file_ctx;
};

/* Extent mappings (erofs_map_blocks calls) spent on on_file's ranges in one walk. Each costs
 * a few index reads from memory; a file whose worst case (one mapping per lcluster or chunk)
 * exceeds what is left is skipped, so the largest files go first when an image is huge. */
#define EROFS_FILES_MAX_MAPS (1ull << 21)

/* A merge gap for the result that keeps its range count low without much in between. */
#define EROFS_DEFAULT_MERGE_GAP (16u * 1024u)

struct erofs_walk_stats {
	uint64_t inodes;      /* distinct inodes visited */
	uint64_t dirs, regular, symlinks, special;
	uint64_t dirents;
	unsigned int levels;  /* depth of the breadth-first walk */
	uint64_t meta_bytes;  /* total of the returned extents */
	uint64_t reads;       /* calls to io->read */
	uint64_t prefetches;  /* calls to io->prefetch (rounds) */
	uint64_t files;         /* regular files reported to on_file */
	uint64_t files_skipped; /* regular files not reported (budget, extra device) */
};

/* Walk the whole image from the root; on success *ret holds the sorted, merged ranges.
 * -EUCLEAN with a precise reason in err on corruption. ret must be initialised. */
int erofs_walk(const struct erofs_io *io, const struct erofs_walk_opts *opts,
	       struct util_extents *ret, struct erofs_walk_stats *stats, struct util_error *err);

#endif
