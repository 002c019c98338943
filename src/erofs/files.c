// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Regular files' data ranges for erofs_walk_opts.on_file: which bytes of the image hold a
 * file's data, in file order. Flat and chunk-based files are mapped forwards, one mapping per
 * run or chunk; compressed files backwards, one mapping per extent (each lands on its head
 * lcluster at once, as the kernel's reads do), then reversed. A fragment maps to the ranges
 * of the packed inode that hold its bytes. Inline data (plain tails, ztailpacking tails) is
 * left out: it lives in the inode's metadata block, which the walk makes present anyway, and
 * it would only split a file's ranges with a piece that never needs fetching.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/files.h"
#include "util/array.h"

struct erofs_files_ext {
	uint64_t off, len; /* pcluster in the image, or fragment bytes in the packed inode */
	bool fragment;
};

void erofs_files_init(struct erofs_files *f, const struct erofs_walk_opts *opts)
{
	*f = (struct erofs_files){ .maps_left = EROFS_FILES_MAX_MAPS };
	if (opts) {
		f->on_file = opts->on_file;
		f->opaque = opts->file_ctx;
	}
}

void erofs_files_done(struct erofs_files *f)
{
	free(f->v);
	free(f->tmp);
	free(f->deferred);
	f->v = NULL;
	f->tmp = NULL;
	f->deferred = NULL;
}

/* Append a range in file order: merged with the previous one when adjacent or inside it. */
static int add(struct erofs_files *f, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	if (f->n) {
		struct util_extent *l = &f->v[f->n - 1];

		if (off == l->offset + l->length) {
			l->length += len;
			return 0;
		}
		if (off >= l->offset && off + len <= l->offset + l->length)
			return 0;
	}
	if (UTIL_ARRAY_RESERVE(f->v, f->alloc, f->n, 16) < 0)
		return -ENOMEM;
	f->v[f->n++] = (struct util_extent){ off, len };
	return 0;
}

/* Mappings a file may need at most: one per lcluster or chunk, two for a flat layout. */
static uint64_t worst_maps(const struct erofs_inode *vi)
{
	if (!vi->size)
		return 0;
	if (erofs_inode_is_compressed(vi))
		return ((vi->size - 1) >> vi->z_lclusterbits) + 1;
	if (vi->layout == EROFS_LAYOUT_CHUNK_BASED)
		return ((vi->size - 1) >> vi->chunkbits) + 1;
	return 2;
}

/* One mapping out of the walk's budget; -ENOSPC when it is spent (the file is skipped). */
static int spend(struct erofs_files *f)
{
	if (f->maps_left == 0)
		return -ENOSPC;
	f->maps_left--;
	return 0;
}

static int map_range(struct erofs_ctx *ctx, struct erofs_files *f, struct erofs_inode *vi,
		     uint64_t off, uint64_t end);

static int map_fragment(struct erofs_ctx *ctx, struct erofs_files *f, struct erofs_inode *vi,
			uint64_t pos, uint64_t n)
{
	struct erofs_inode *packed;
	uint64_t at;
	int r = erofs_fragment_locate(ctx, vi, pos, n, &packed, &at);

	if (r < 0)
		return r;
	return map_range(ctx, f, packed, at, at + n);
}

static int map_compressed(struct erofs_ctx *ctx, struct erofs_files *f, struct erofs_inode *vi,
			  uint64_t off, uint64_t end)
{
	size_t base = f->ntmp;
	uint64_t e = end;
	int r = 0;

	/* backwards, extent by extent, into tmp[base..) */
	while (e > off) {
		struct erofs_map map;
		struct erofs_files_ext x = { 0 };

		r = spend(f);
		if (r >= 0)
			r = erofs_map_blocks(ctx, vi, e - 1, &map);
		if (r < 0)
			goto out;
		if (map.llen == 0 || map.la >= e) {
			r = erofs_corrupt(ctx, "inode %llu: cannot map offset %llu",
					  (unsigned long long)vi->nid, (unsigned long long)(e - 1));
			goto out;
		}
		if (map.flags & EROFS_MAP_FRAGMENT) {
			/* the fragment holds the extent's bytes from z_fragmentoff on */
			x = (struct erofs_files_ext){ MAX(map.la, off) - map.la,
						      e - MAX(map.la, off), true };
		} else if ((map.flags & EROFS_MAP_MAPPED) && !(map.flags & EROFS_MAP_META)) {
			if (!util_range_within(map.pa, map.plen, ctx->io->size)) {
				r = erofs_corrupt(ctx, "inode %llu: pcluster at %llu beyond the image",
						  (unsigned long long)vi->nid,
						  (unsigned long long)map.pa);
				goto out;
			}
			x = (struct erofs_files_ext){ map.pa, map.plen, false };
		}
		if (x.len) {
			if (UTIL_ARRAY_RESERVE(f->tmp, f->atmp, f->ntmp, 16) < 0) {
				r = -ENOMEM;
				goto out;
			}
			f->tmp[f->ntmp++] = x;
		}
		e = MAX(map.la, off);
	}
	/* then in file order (a fragment's own mapping may use tmp beyond what we read) */
	for (size_t i = f->ntmp; i > base && r >= 0; i--) {
		struct erofs_files_ext x = f->tmp[i - 1];

		r = x.fragment ? map_fragment(ctx, f, vi, x.off, x.len) :
				 add(f, x.off, x.len);
	}
out:
	f->ntmp = base;
	return r;
}

static int map_range(struct erofs_ctx *ctx, struct erofs_files *f, struct erofs_inode *vi,
		     uint64_t off, uint64_t end)
{
	uint64_t la = off;
	int r;

	if (end > vi->size)
		return erofs_corrupt(ctx, "inode %llu: read beyond its size",
				     (unsigned long long)vi->nid);
	if (erofs_inode_is_compressed(vi))
		return map_compressed(ctx, f, vi, off, end);
	while (la < end) {
		struct erofs_map map;
		uint64_t n, skip;

		r = spend(f);
		if (r >= 0)
			r = erofs_map_at(ctx, vi, la, &map);
		if (r < 0)
			return r;
		n = MIN(end, map.la + map.llen) - la;
		skip = la - map.la;
		if ((map.flags & EROFS_MAP_MAPPED) && !(map.flags & EROFS_MAP_META)) {
			if (map.device)
				return erofs_unsupported(ctx, "inode %llu: data on extra device %u",
							 (unsigned long long)vi->nid, map.device);
			if (map.pa > UINT64_MAX - skip ||
			    !util_range_within(map.pa + skip, n, ctx->io->size))
				return erofs_corrupt(ctx, "inode %llu: data at %llu beyond the image",
						     (unsigned long long)vi->nid,
						     (unsigned long long)map.pa);
			r = add(f, map.pa + skip, n);
			if (r < 0)
				return r;
		}
		la += n;
	}
	return 0;
}

int erofs_files_map(struct erofs_ctx *ctx, struct erofs_files *f, struct erofs_inode *vi)
{
	int r;

	f->n = 0;
	f->ntmp = 0;
	if (!S_ISREG(vi->mode))
		return 0;
	/* every loop advances by a whole extent (at most one per lcluster or chunk), so this
	 * bounds the file's own mappings; a fragment's come out of what is left */
	if (worst_maps(vi) > f->maps_left) {
		f->skipped++;
		return 0;
	}
	r = map_range(ctx, f, vi, 0, vi->size);
	if (r == -EOPNOTSUPP || r == -ENOSPC) {
		/* the kernel may still read it: the index is best effort */
		util_err_clear(ctx->err);
		f->n = 0;
		f->skipped++;
		return 0;
	}
	return r < 0 ? r : 1;
}

int erofs_files_emit(struct erofs_files *f, const struct erofs_inode *vi)
{
	f->reported++;
	return f->on_file(f->opaque, vi->nid, vi->size, f->v, f->n);
}

int erofs_files_defer(struct erofs_files *f, uint64_t nid)
{
	if (UTIL_ARRAY_RESERVE(f->deferred, f->adef, f->ndef, 64) < 0)
		return -ENOMEM;
	f->deferred[f->ndef++] = nid;
	return 0;
}
