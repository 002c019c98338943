// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Inode data: mapping of flat and chunk-based inodes, and reading (or only listing the
 * physical ranges of) any inode's data, compressed ones included: pclusters are
 * decompressed, inline tails come from the metadata space, fragments from the packed inode.
 * Also the two special inodes that hold metadata: the packed inode and the metabox.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "erofs/internal.h"

int erofs_inode_load(struct erofs_ctx *ctx, uint64_t nid, struct erofs_inode *ret)
{
	int r = erofs_inode_read(ctx, nid, ret);

	if (r >= 0)
		r = erofs_inode_meta_extent(ctx, ret);
	if (r >= 0 && !ret->in_mbox)
		r = erofs_note(ctx, ret->iloc, ret->meta_end - ret->iloc);
	return r;
}

static int map_flat(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		    struct erofs_map *map)
{
	bool inl = vi->layout == EROFS_LAYOUT_FLAT_INLINE;
	uint64_t nblocks, pos;

	if (!inl && vi->blkaddr == EROFS_NULL_ADDR) {
		map->llen = vi->size - la;
		return 0;
	}
	nblocks = (vi->size >> ctx->blkbits) + !!(vi->size & (ctx->bs - 1));
	pos = (nblocks - inl) << ctx->blkbits;
	map->flags = EROFS_MAP_MAPPED;
	if (la < pos) {
		if (vi->blkaddr > (UINT64_MAX >> ctx->blkbits) ||
		    (vi->blkaddr << ctx->blkbits) > UINT64_MAX - pos)
			return erofs_corrupt(ctx, "inode %llu: block address overflow",
					     (unsigned long long)vi->nid);
		map->pa = (vi->blkaddr << ctx->blkbits) + la;
		map->llen = pos - la;
	} else {
		map->pa = vi->iloc + vi->isize + vi->xattr_isize + (la & (ctx->bs - 1));
		map->llen = vi->size - la;
		map->flags |= EROFS_MAP_META;
		if ((map->pa & (ctx->bs - 1)) + map->llen > ctx->bs)
			return erofs_corrupt(ctx, "inode %llu: inline data crosses a block boundary",
					     (unsigned long long)vi->nid);
	}
	return 0;
}

static int map_chunk(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		     struct erofs_map *map)
{
	bool indexes = vi->chunkformat & EROFS_CHUNK_INDEXES;
	unsigned int unit = indexes ? 8 : 4;
	uint64_t chunknr = la >> vi->chunkbits;
	uint64_t pos = ROUND_UP(vi->iloc + vi->isize + vi->xattr_isize, unit) + unit * chunknr;
	uint8_t idx[8];
	uint64_t startblk;
	int r;

	r = erofs_meta_read(ctx, vi->in_mbox, idx, unit, pos);
	if (r < 0)
		return r;
	map->la = chunknr << vi->chunkbits;
	map->llen = MIN(UINT64_C(1) << vi->chunkbits, vi->size - map->la);
	if (indexes) {
		uint64_t mask = vi->chunkformat & EROFS_CHUNK_48BIT ? (UINT64_C(1) << 48) - 1 :
								      (UINT64_C(1) << 32) - 1;

		startblk = ((uint64_t)erofs_get_le16(idx) << 32 | erofs_get_le32(idx + 4)) & mask;
		if ((startblk ^ EROFS_NULL_ADDR) & mask) {
			map->device = erofs_get_le16(idx + 2) & ctx->device_id_mask;
			map->pa = startblk << ctx->blkbits;
			map->flags = EROFS_MAP_MAPPED;
		}
	} else {
		startblk = erofs_get_le32(idx);
		if (startblk != UINT32_MAX) {
			map->pa = startblk << ctx->blkbits;
			map->flags = EROFS_MAP_MAPPED;
		}
	}
	return 0;
}

int erofs_map_blocks(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		     struct erofs_map *map)
{
	*map = (struct erofs_map){ .la = la };
	if (erofs_inode_is_compressed(vi))
		return erofs_zmap_blocks(ctx, vi, la, map);
	if (la >= vi->size)
		return 0;
	if (vi->layout == EROFS_LAYOUT_CHUNK_BASED)
		return map_chunk(ctx, vi, la, map);
	return map_flat(ctx, vi, la, map);
}

int erofs_map_at(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la, struct erofs_map *map)
{
	int r = erofs_map_blocks(ctx, vi, la, map);

	if (r < 0)
		return r;
	if (map->llen == 0 || map->la > la || map->la + map->llen <= la)
		return erofs_corrupt(ctx, "inode %llu: cannot map offset %llu",
				     (unsigned long long)vi->nid, (unsigned long long)la);
	return 0;
}

int erofs_packed_inode(struct erofs_ctx *ctx, struct erofs_inode **ret)
{
	struct erofs_inode *vi;
	int r;

	if (ctx->packed) {
		*ret = ctx->packed;
		return 0;
	}
	if (!ctx->packed_nid)
		return erofs_corrupt(ctx, "fragment data but no packed inode");
	vi = calloc(1, sizeof(*vi));
	if (!vi)
		return -ENOMEM;
	r = erofs_inode_load(ctx, ctx->packed_nid, vi);
	if (r < 0) {
		free(vi);
		return r;
	}
	ctx->packed = vi;
	*ret = vi;
	return 0;
}

struct sink {
	uint8_t *buf;      /* read into buf (buf[0] is the byte at `off`), or */
	erofs_range_cb cb; /* list the physical ranges */
	void *opaque;
	uint64_t off;
};

static int data_walk(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t off, uint64_t len,
		     struct sink *s);

int erofs_fragment_locate(struct erofs_ctx *ctx, const struct erofs_inode *vi, uint64_t rel,
			  uint64_t n, struct erofs_inode **ret_packed, uint64_t *ret_at)
{
	struct erofs_inode *packed;
	uint64_t at;
	int r;

	if (vi->nid == ctx->packed_nid)
		return erofs_corrupt(ctx, "the packed inode has fragments itself");
	r = erofs_packed_inode(ctx, &packed);
	if (r < 0)
		return r;
	if (util_add_overflow_u64(vi->z_fragmentoff, rel, &at) ||
	    !util_range_within(at, n, packed->size))
		return erofs_corrupt(ctx, "inode %llu: fragment at %llu beyond the packed inode "
				     "(%llu bytes)",
				     (unsigned long long)vi->nid, (unsigned long long)at,
				     (unsigned long long)packed->size);
	*ret_packed = packed;
	*ret_at = at;
	return 0;
}

/* File bytes [pos, pos + n) of the fragment extent that starts at file offset la: the
 * fragment holds that extent's bytes from z_fragmentoff on (as the kernel reads it). */
static int fragment_part(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
			 uint64_t pos, uint64_t n, struct sink *s)
{
	struct erofs_inode *packed;
	struct sink sub = *s;
	uint64_t at;
	int r;

	r = erofs_fragment_locate(ctx, vi, pos - la, n, &packed, &at);
	if (r < 0)
		return r;
	if (sub.buf)
		sub.buf += pos - s->off;
	sub.off = at;
	return data_walk(ctx, packed, at, n, &sub);
}

static int flat_walk(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t off, uint64_t end,
		     struct sink *s)
{
	uint64_t ptr = off;

	while (ptr < end) {
		struct erofs_map map;
		uint64_t n, skip;
		int r = erofs_map_at(ctx, vi, ptr, &map);

		if (r < 0)
			return r;
		n = MIN(end, map.la + map.llen) - ptr;
		skip = ptr - map.la;
		if (map.flags & EROFS_MAP_META) {
			if (s->buf)
				r = erofs_meta_read(ctx, vi->in_mbox, s->buf + (ptr - s->off), n,
						    map.pa + skip);
			else if (!vi->in_mbox)
				r = s->cb(s->opaque, map.pa + skip, n);
		} else if (map.flags & EROFS_MAP_MAPPED) {
			if (map.device)
				return erofs_unsupported(ctx, "inode %llu: data on extra device %u",
							 (unsigned long long)vi->nid, map.device);
			if (map.pa > UINT64_MAX - skip)
				return erofs_corrupt(ctx, "inode %llu: address overflow",
						     (unsigned long long)vi->nid);
			if (s->buf)
				r = erofs_ctx_read(ctx, s->buf + (ptr - s->off), n, map.pa + skip);
			else if (!util_range_within(map.pa + skip, n, ctx->io->size))
				r = erofs_corrupt(ctx, "inode %llu: data at %llu beyond the image",
						  (unsigned long long)vi->nid,
						  (unsigned long long)(map.pa + skip));
			else
				r = s->cb(s->opaque, map.pa + skip, n);
		} else if (s->buf) {
			memset(s->buf + (ptr - s->off), 0, n);
		}
		if (r < 0)
			return r;
		ptr += n;
	}
	return 0;
}

static int z_walk(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t off, uint64_t end,
		  struct sink *s)
{
	uint64_t e = end;

	while (e > off) {
		struct erofs_map map;
		uint64_t length, start;
		int r = erofs_map_blocks(ctx, vi, e - 1, &map);

		if (r < 0)
			return r;
		if (map.llen == 0 || map.la >= e)
			return erofs_corrupt(ctx, "inode %llu: cannot map offset %llu",
					     (unsigned long long)vi->nid,
					     (unsigned long long)(e - 1));
		length = MIN(e, map.la + map.llen) - map.la;
		start = MAX(map.la, off);
		if (map.flags & EROFS_MAP_FRAGMENT) {
			r = fragment_part(ctx, vi, map.la, start, e - start, s);
		} else if (!(map.flags & EROFS_MAP_MAPPED)) {
			if (s->buf)
				memset(s->buf + (start - s->off), 0, e - start);
		} else if (!s->buf) {
			if (!(map.flags & EROFS_MAP_META))
				r = util_range_within(map.pa, map.plen, ctx->io->size) ?
					    s->cb(s->opaque, map.pa, map.plen) :
					    erofs_corrupt(ctx, "inode %llu: pcluster at %llu beyond "
							  "the image",
							  (unsigned long long)vi->nid,
							  (unsigned long long)map.pa);
			else if (!vi->in_mbox)
				r = s->cb(s->opaque, map.pa, map.plen);
		} else {
			uint8_t *in = malloc(map.plen), *out = malloc(length);

			if (!in || !out) {
				r = -ENOMEM;
			} else {
				if (map.flags & EROFS_MAP_META)
					r = erofs_meta_read(ctx, vi->in_mbox, in, map.plen, map.pa);
				else
					r = erofs_ctx_read(ctx, in, map.plen, map.pa);
				if (r >= 0) {
					r = erofs_decompress(ctx, map.alg, in, map.plen, out, length,
							     true, map.la);
					if (r == -EUCLEAN)
						r = erofs_corrupt(ctx, "inode %llu: pcluster at %llu "
								  "(%llu bytes) does not decompress "
								  "to %llu bytes",
								  (unsigned long long)vi->nid,
								  (unsigned long long)map.pa,
								  (unsigned long long)map.plen,
								  (unsigned long long)length);
					else if (r == -EOPNOTSUPP)
						r = erofs_unsupported(ctx, "inode %llu: compression "
								      "algorithm %u",
								      (unsigned long long)vi->nid,
								      map.alg);
				}
				if (r >= 0)
					memcpy(s->buf + (start - s->off), out + (start - map.la),
					       e - start);
			}
			free(in);
			free(out);
		}
		if (r < 0)
			return r;
		e = start;
	}
	return 0;
}

static int data_walk(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t off, uint64_t len,
		     struct sink *s)
{
	uint64_t end;
	int r;

	if (util_add_overflow_u64(off, len, &end) || end > vi->size)
		return erofs_corrupt(ctx, "inode %llu: read beyond its size",
				     (unsigned long long)vi->nid);
	if (ctx->depth >= 4)
		return erofs_corrupt(ctx, "inode %llu: data nested too deeply",
				     (unsigned long long)vi->nid);
	if (s->buf) {
		/* real images hold at most a few times their size in directories and symlinks
		 * (directories cannot share blocks); hostile ones could make us decode the same
		 * blocks again and again */
		uint64_t limit = MIN(EROFS_MAX_DATA_WORK,
				     MAX(UINT64_C(1) << 20, ctx->io->size * 32));

		ctx->data_work += len;
		if (ctx->data_work > limit)
			return erofs_corrupt(ctx, "more than %llu bytes of directories and symlinks",
					     (unsigned long long)limit);
	}
	ctx->depth++;
	if (erofs_inode_is_compressed(vi))
		r = z_walk(ctx, vi, off, end, s);
	else
		r = flat_walk(ctx, vi, off, end, s);
	ctx->depth--;
	return r;
}

int erofs_read_data(struct erofs_ctx *ctx, struct erofs_inode *vi, void *buf, uint64_t len,
		    uint64_t off)
{
	struct sink s = { .buf = buf, .off = off };

	return data_walk(ctx, vi, off, len, &s);
}

int erofs_data_ranges(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t len, uint64_t off,
		      erofs_range_cb cb, void *opaque)
{
	struct sink s = { .cb = cb, .opaque = opaque, .off = off };

	return data_walk(ctx, vi, off, len, &s);
}

int erofs_mbox_load(struct erofs_ctx *ctx)
{
	struct erofs_inode vi;
	int r;

	if (ctx->mbox_loaded)
		return 0;
	if (!ctx->has_metabox)
		return erofs_corrupt(ctx, "metabox nid used, but the image has no metabox");
	if (ctx->mbox_loading)
		return erofs_corrupt(ctx, "the metabox refers to itself");
	ctx->mbox_loading = true;
	r = erofs_inode_load(ctx, ctx->metabox_nid, &vi);
	if (r >= 0 && vi.size > EROFS_MAX_MBOX_SIZE)
		r = erofs_unsupported(ctx, "metabox of %llu bytes", (unsigned long long)vi.size);
	if (r >= 0 && vi.size > ctx->io->size * 64 + (1u << 20))
		r = erofs_corrupt(ctx, "metabox of %llu bytes in a %llu-byte image",
				  (unsigned long long)vi.size, (unsigned long long)ctx->io->size);
	if (r >= 0) {
		ctx->mbox = malloc(vi.size ? vi.size : 1);
		if (!ctx->mbox)
			r = -ENOMEM;
	}
	if (r >= 0)
		r = erofs_read_data(ctx, &vi, ctx->mbox, vi.size, 0);
	ctx->mbox_loading = false;
	if (r < 0) {
		free(ctx->mbox);
		ctx->mbox = NULL;
		return r;
	}
	ctx->mbox_size = vi.size;
	ctx->mbox_loaded = true;
	return 0;
}

/* Long xattr name prefixes: `count` records of le16 length + (base index, infix), each
 * 4-byte aligned, at xattr_prefix_start * 4 in the metabox, the packed inode, or (plain) the
 * image itself. */
int erofs_prefixes_load(struct erofs_ctx *ctx)
{
	bool plain = ctx->info.feature_compat & EROFS_COMPAT_PLAIN_XATTR_PFX;
	struct erofs_inode *src = NULL;
	uint64_t pos = (uint64_t)ctx->xattr_prefix_start << 2, limit;
	int r;

	if (ctx->prefixes_loaded || !ctx->xattr_prefix_count) {
		ctx->prefixes_loaded = true;
		return 0;
	}
	free(ctx->prefixes); /* an earlier attempt may have stopped half-way */
	ctx->prefixes = calloc(ctx->xattr_prefix_count, sizeof(*ctx->prefixes));
	if (!ctx->prefixes)
		return -ENOMEM;
	if (!plain && ctx->has_metabox) {
		r = erofs_mbox_load(ctx);
		if (r < 0)
			return r;
		limit = ctx->mbox_size;
	} else if (!plain && ctx->packed_nid) {
		r = erofs_packed_inode(ctx, &src);
		if (r < 0)
			return r;
		limit = src->size;
	} else {
		plain = true;
		limit = ctx->io->size;
	}
	for (unsigned int i = 0; i < ctx->xattr_prefix_count; i++) {
		uint8_t rec[2 + 1 + EROFS_NAME_LEN];
		unsigned int n;

		pos = ROUND_UP(pos, 4);
		if (!util_range_within(pos, 2, limit))
			return erofs_corrupt(ctx, "long xattr prefix %u beyond its area", i);
		if (src)
			r = erofs_read_data(ctx, src, rec, 2, pos);
		else
			r = erofs_meta_read(ctx, !plain, rec, 2, pos);
		if (r < 0)
			return r;
		n = erofs_get_le16(rec);
		if (n < 1 || n > 1 + EROFS_NAME_LEN || !util_range_within(pos + 2, n, limit))
			return erofs_corrupt(ctx, "long xattr prefix %u has length %u", i, n);
		if (src)
			r = erofs_read_data(ctx, src, rec + 2, n, pos + 2);
		else
			r = erofs_meta_read(ctx, !plain, rec + 2, n, pos + 2);
		if (r < 0)
			return r;
		ctx->prefixes[i].base_index = rec[2];
		ctx->prefixes[i].infix_len = (uint8_t)(n - 1);
		memcpy(ctx->prefixes[i].infix, rec + 3, n - 1);
		ctx->prefixes[i].infix[n - 1] = 0;
		pos += 2 + n;
	}
	ctx->prefixes_loaded = true;
	return 0;
}
