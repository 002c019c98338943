/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Internal to the erofs module: the regular files' data ranges that the walk hands to
 * erofs_walk_opts.on_file (files.c). The walk calls erofs_files_map() on each regular file
 * it decodes; a file whose mapping needs index bytes that are not present yet is deferred
 * and mapped once the walk's last round made every recorded range present.
 */
#ifndef LAZYEROFS_EROFS_FILES_H
#define LAZYEROFS_EROFS_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "erofs/internal.h"

struct erofs_files_ext; /* a compressed extent seen while walking backwards (files.c) */

struct erofs_files {
	int (*on_file)(void *opaque, uint64_t nid, uint64_t size, const struct util_extent *v,
		       size_t n);
	void *opaque;
	struct util_extent *v; /* the current file's ranges, in file order */
	size_t n, alloc;
	struct erofs_files_ext *tmp;
	size_t ntmp, atmp;
	uint64_t maps_left;
	uint64_t *deferred; /* nids to map after the last round */
	size_t ndef, adef;
	uint64_t reported, skipped;
};

void erofs_files_init(struct erofs_files *f, const struct erofs_walk_opts *opts);
void erofs_files_done(struct erofs_files *f);
/* Map vi's data into f->v. 1: mapped; 0: skipped (over the budget, unsupported: the index
 * is best effort); <0: error (-EUCLEAN: corrupt). Reads through ctx: the caller checks
 * whether a read was blocked. */
int erofs_files_map(struct erofs_ctx *ctx, struct erofs_files *f, struct erofs_inode *vi);
/* Hand the mapped ranges to on_file. */
int erofs_files_emit(struct erofs_files *f, const struct erofs_inode *vi);
int erofs_files_defer(struct erofs_files *f, uint64_t nid);

#endif
