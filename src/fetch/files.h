/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * The file index: for each regular file of the image, the byte ranges of the blob that hold
 * its data, in file order. The mount builds it from its metadata walk and hands it to the
 * daemon (control request "files", a sealed memfd); the daemon parses it as untrusted input
 * and asks it which file a read falls in, so that it can fetch a small file whole, let
 * read-ahead follow a file's ranges and stop at its end, and group small files' ranges.
 *
 * Wire format, version 1, little-endian:
 *
 *   0  u32 magic FETCH_FILES_MAGIC ("LZFI")
 *   4  u16 version (1)
 *   6  u16 header size (32)
 *   8  u64 blob size (must equal the daemon's blob)
 *  16  u32 files
 *  20  u32 ranges
 *  24  u64 reserved (0)
 *  32  u32 ranges of file i, for each file (>= 1 each, summing to `ranges`)
 *      zero padding to a multiple of 8
 *      then each range: u64 offset, u64 length (> 0), file 0's first, in file order
 *
 * Files are numbered 0.. in that order. The ranges of all files are disjoint (a blob byte
 * belongs to one file at most) and lie within the blob; the parser checks every one of these.
 *
 * Memory: the encoded index is at most FETCH_FILES_MAX_BYTES (4 bytes per file, 16 per
 * range); the builder keeps the smallest files (by data bytes, the ones a whole-file fetch
 * is for) when an image has more. The daemon's parsed copy takes 4 bytes per file and 28 per
 * range: at most 1.75 times the encoded size, ~14 MiB.
 */
#ifndef LAZYEROFS_FETCH_FILES_H
#define LAZYEROFS_FETCH_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/extents.h"

#define FETCH_FILES_MAGIC     0x49465a4cu /* "LZFI" */
#define FETCH_FILES_VERSION   1
#define FETCH_FILES_HDR_SIZE  32
#define FETCH_FILES_MAX_BYTES (8u << 20)

/* ---- building (the mount) ---- */

struct fetch_files_builder;

struct fetch_files_build_stats {
	uint64_t files, ranges; /* in the encoded index */
	uint64_t dropped_files; /* left out to stay within the size cap (largest first) */
	uint64_t empty_files;	/* no range of their own (inline, empty, or bytes that an
				 * earlier file's range holds: shared fragments, dedupe) */
	uint64_t trimmed_bytes; /* range bytes given to the file that had them first */
};

/* max_bytes: cap of the encoded index (0: FETCH_FILES_MAX_BYTES; at least the header). The
 * builder collects up to twice that (in encoded bytes) before it drops the largest files, so
 * its memory stays below about five times the cap (array slack, the copy while dropping):
 * ~40 MiB at the default cap, whatever the image. */
int fetch_files_builder_new(uint64_t blob_size, size_t max_bytes, struct fetch_files_builder **ret);
void fetch_files_builder_free(struct fetch_files_builder *b);
/* One file's ranges in file order (within the blob, else -EINVAL; may be empty). */
int fetch_files_builder_add(struct fetch_files_builder *b, const struct util_extent *v, size_t n);
/* Encode: overlapping ranges are trimmed (the lowest-numbered file that holds a byte keeps
 * it), files left without ranges dropped, then the cap applied. *ret_buf is malloc'ed. */
int fetch_files_builder_finish(struct fetch_files_builder *b, uint8_t **ret_buf, size_t *ret_len,
			       struct fetch_files_build_stats *ret_stats);

/* ---- parsing and queries (the daemon) ---- */

struct fetch_files;

/* Parse and check an encoded index of a blob of blob_size bytes. -EBADMSG (the reason in
 * err) on anything malformed, -EFBIG over FETCH_FILES_MAX_BYTES. Pure. */
int fetch_files_parse(const void *buf, size_t len, uint64_t blob_size, struct fetch_files **ret,
		      struct util_error *err);
void fetch_files_free(struct fetch_files *f);

uint32_t fetch_files_count(const struct fetch_files *f);
uint32_t fetch_files_nranges(const struct fetch_files *f);

/* Which file, and which of its ranges (0-based, file order), hold the blob byte at off.
 * 0, or -ENOENT when no file's data holds it. O(log n). */
int fetch_files_find(const struct fetch_files *f, uint64_t off, uint32_t *ret_file,
		     uint32_t *ret_range);
/* The range nearest to off in blob order: the first one starting at or after it (after), or
 * the last one ending at or before it; its file. -ENOENT when there is none. O(log n). */
int fetch_files_beside(const struct fetch_files *f, uint64_t off, bool after,
		       uint32_t *ret_file, const struct util_extent **ret_range);
/* A file's ranges in file order (points into f). */
const struct util_extent *fetch_files_ranges(const struct fetch_files *f, uint32_t file,
					     uint32_t *ret_n);
/* Bytes of the blob holding the file's data (the sum of its ranges). O(1). */
uint64_t fetch_files_data_bytes(const struct fetch_files *f, uint32_t file);
/* The blob offset where the file's data ends: the end of its last range in file order. */
uint64_t fetch_files_data_end(const struct fetch_files *f, uint32_t file);
/* From blob offset off, the file's data that follows in file order: the rest of the range
 * holding off, then its next ranges, up to max_bytes in all (the last one cut) and max_out
 * ranges, into out. Returns how many ranges, or -ENOENT when no file holds off. O(log n + k). */
int fetch_files_follow(const struct fetch_files *f, uint64_t off, uint64_t max_bytes,
		       struct util_extent *out, size_t max_out);

#endif
