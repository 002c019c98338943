// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Inode records (compact 32-byte and extended 64-byte) and the extent of everything stored
 * with a record: inline xattrs, inline (tail-packed) data, chunk indexes, the compression map
 * header with its indexes or extent records, and the ztailpacking tail.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"

bool erofs_inode_is_compressed(const struct erofs_inode *vi)
{
	return vi->layout == EROFS_LAYOUT_COMPRESSED_FULL ||
	       vi->layout == EROFS_LAYOUT_COMPRESSED_COMPACT;
}

uint64_t erofs_iloc(const struct erofs_ctx *ctx, uint64_t nid)
{
	uint64_t slot = nid & EROFS_NID_MASK;

	/* callers check the result against the space's size; saturate instead of wrapping */
	if (slot > (UINT64_MAX >> EROFS_ISLOT_BITS))
		return UINT64_MAX;
	slot <<= EROFS_ISLOT_BITS;
	if (nid >> EROFS_DIRENT_NID_MBOX_BIT)
		return slot;
	return slot > UINT64_MAX - ctx->meta_base ? UINT64_MAX : slot + ctx->meta_base;
}

int erofs_inode_decode(struct erofs_ctx *ctx, uint64_t nid, const uint8_t *buf, size_t len,
		       struct erofs_inode *ret)
{
	struct erofs_inode vi = { .nid = nid };
	uint32_t i_u, startblk_hi = 0;
	uint64_t addrmask = (UINT64_C(1) << 48) - 1;
	unsigned long long n = nid;

	vi.in_mbox = nid >> EROFS_DIRENT_NID_MBOX_BIT;
	vi.iloc = erofs_iloc(ctx, nid);
	if (len < sizeof(struct erofs_disk_inode_compact))
		return erofs_corrupt(ctx, "inode %llu: record truncated", n);
	vi.ifmt = erofs_get_le16(buf);
	if (vi.ifmt & ~EROFS_I_ALL)
		return erofs_unsupported(ctx, "inode %llu: unsupported i_format 0x%x", n, vi.ifmt);
	vi.layout = (vi.ifmt >> EROFS_I_DATALAYOUT_BIT) & EROFS_I_DATALAYOUT_MASK;
	if (vi.layout >= EROFS_LAYOUT_MAX)
		return erofs_unsupported(ctx, "inode %llu: unsupported data layout %u", n,
					 vi.layout);
	if (vi.ifmt & EROFS_I_VERSION_MASK) {
		const struct erofs_disk_inode_extended *die = (const void *)buf;

		if (len < sizeof(*die))
			return erofs_corrupt(ctx, "inode %llu: extended record truncated", n);
		vi.isize = sizeof(*die);
		vi.mode = erofs_le16(die->i_mode);
		vi.xattr_isize = erofs_le16(die->i_xattr_icount);
		vi.size = erofs_le64(die->i_size);
		i_u = erofs_le32(die->i_u);
		startblk_hi = erofs_le16(die->i_nb);
		vi.uid = erofs_le32(die->i_uid);
		vi.gid = erofs_le32(die->i_gid);
		vi.mtime = (int64_t)erofs_le64(die->i_mtime);
		vi.mtime_nsec = erofs_le32(die->i_mtime_nsec);
		vi.nlink = erofs_le32(die->i_nlink);
	} else {
		const struct erofs_disk_inode_compact *dic = (const void *)buf;

		vi.isize = sizeof(*dic);
		vi.mode = erofs_le16(dic->i_mode);
		vi.xattr_isize = erofs_le16(dic->i_xattr_icount);
		vi.size = erofs_le32(dic->i_size);
		i_u = erofs_le32(dic->i_u);
		vi.uid = erofs_le16(dic->i_uid);
		vi.gid = erofs_le16(dic->i_gid);
		if (!S_ISDIR(vi.mode) && (vi.ifmt >> EROFS_I_NLINK_1_BIT) & 1) {
			vi.nlink = 1;
			startblk_hi = erofs_le16(dic->i_nb);
		} else {
			vi.nlink = erofs_le16(dic->i_nb);
			addrmask = (UINT64_C(1) << 32) - 1;
		}
		vi.mtime = ctx->epoch + (int64_t)erofs_le32(dic->i_mtime);
		vi.mtime_nsec = ctx->fixed_nsec;
	}
	/* icount 0: no xattrs; else a 12-byte header plus (icount - 1) 4-byte slots */
	if (vi.xattr_isize)
		vi.xattr_isize = sizeof(struct erofs_disk_xattr_ibody_header) +
				 4u * (vi.xattr_isize - 1);

	switch (vi.mode & S_IFMT) {
	case S_IFDIR:
	case S_IFREG:
	case S_IFLNK:
		vi.blkaddr = i_u | (uint64_t)startblk_hi << 32;
		if (vi.layout == EROFS_LAYOUT_FLAT_PLAIN &&
		    !((vi.blkaddr ^ EROFS_NULL_ADDR) & addrmask))
			vi.blkaddr = EROFS_NULL_ADDR;
		break;
	case S_IFCHR:
	case S_IFBLK:
		vi.rdev = i_u;
		break;
	case S_IFIFO:
	case S_IFSOCK:
		break;
	default:
		return erofs_corrupt(ctx, "inode %llu: bogus mode 0%o", n, vi.mode);
	}
	if (vi.layout == EROFS_LAYOUT_CHUNK_BASED) {
		vi.chunkformat = (uint16_t)i_u;
		if (vi.chunkformat & ~EROFS_CHUNK_ALL)
			return erofs_unsupported(ctx, "inode %llu: unsupported chunk format 0x%x", n,
						 vi.chunkformat);
		vi.chunkbits = ctx->blkbits + (vi.chunkformat & EROFS_CHUNK_BLKBITS_MASK);
	}
	if ((S_ISCHR(vi.mode) || S_ISBLK(vi.mode) || S_ISFIFO(vi.mode) || S_ISSOCK(vi.mode)) &&
	    vi.layout != EROFS_LAYOUT_FLAT_PLAIN && vi.layout != EROFS_LAYOUT_FLAT_INLINE)
		return erofs_corrupt(ctx, "inode %llu: special file with data layout %u", n,
				     vi.layout);
	if (S_ISLNK(vi.mode) && vi.size >= EROFS_MAX_SYMLINK)
		return erofs_corrupt(ctx, "inode %llu: symlink of %llu bytes", n,
				     (unsigned long long)vi.size);
	*ret = vi;
	return 0;
}

int erofs_inode_read(struct erofs_ctx *ctx, uint64_t nid, struct erofs_inode *ret)
{
	uint8_t buf[sizeof(struct erofs_disk_inode_extended)];
	uint64_t iloc = erofs_iloc(ctx, nid);
	bool in_mbox = nid >> EROFS_DIRENT_NID_MBOX_BIT;
	uint64_t space;
	size_t want = sizeof(buf);
	int r;

	if (in_mbox) {
		r = erofs_mbox_load(ctx);
		if (r < 0)
			return r;
		space = ctx->mbox_size;
	} else {
		space = ctx->io->size;
	}
	if (!util_range_within(iloc, sizeof(struct erofs_disk_inode_compact), space))
		return erofs_corrupt(ctx, "inode %llu: location %llu beyond the %s",
				     (unsigned long long)nid, (unsigned long long)iloc,
				     in_mbox ? "metabox" : "image");
	if (!util_range_within(iloc, want, space))
		want = sizeof(struct erofs_disk_inode_compact);
	/* read the compact size first when the record might sit at the end of the space */
	memset(buf, 0, sizeof(buf));
	r = erofs_meta_read(ctx, in_mbox, buf, sizeof(struct erofs_disk_inode_compact), iloc);
	if (r < 0)
		return r;
	if ((erofs_get_le16(buf) & EROFS_I_VERSION_MASK)) {
		if (want < sizeof(buf))
			return erofs_corrupt(ctx, "inode %llu: extended record beyond the %s",
					     (unsigned long long)nid, in_mbox ? "metabox" : "image");
		r = erofs_meta_read(ctx, in_mbox, buf + 32, 32, iloc + 32);
		if (r < 0)
			return r;
	} else {
		want = sizeof(struct erofs_disk_inode_compact);
	}
	return erofs_inode_decode(ctx, nid, buf, want, ret);
}

static int check_end(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t end,
		     const char *what)
{
	uint64_t space = vi->in_mbox ? ctx->mbox_size : ctx->io->size;

	if (end > space || end < vi->iloc)
		return erofs_corrupt(ctx, "inode %llu: %s end beyond the %s",
				     (unsigned long long)vi->nid, what,
				     vi->in_mbox ? "metabox" : "image");
	if (end > vi->meta_end)
		vi->meta_end = end;
	return 0;
}

int erofs_inode_meta_extent(struct erofs_ctx *ctx, struct erofs_inode *vi)
{
	uint64_t base = vi->iloc + vi->isize + vi->xattr_isize;
	unsigned long long n = vi->nid;
	int r;

	vi->meta_end = vi->iloc;
	r = check_end(ctx, vi, base, "record");
	if (r < 0)
		return r;
	switch (vi->layout) {
	case EROFS_LAYOUT_FLAT_PLAIN:
		return 0;
	case EROFS_LAYOUT_FLAT_INLINE: {
		uint64_t nblocks, tail;

		if (vi->size == 0)
			return 0;
		nblocks = (vi->size >> ctx->blkbits) + !!(vi->size & (ctx->bs - 1));
		tail = vi->size - ((nblocks - 1) << ctx->blkbits);
		if ((base & (ctx->bs - 1)) + tail > ctx->bs)
			return erofs_corrupt(ctx, "inode %llu: inline data of %llu bytes at offset "
					     "%llu crosses a block boundary",
					     n, (unsigned long long)tail, (unsigned long long)base);
		return check_end(ctx, vi, base + tail, "inline data");
	}
	case EROFS_LAYOUT_CHUNK_BASED: {
		unsigned int unit = vi->chunkformat & EROFS_CHUNK_INDEXES ? 8 : 4;
		uint64_t nchunks, end;

		if (vi->chunkbits >= 64)
			return erofs_corrupt(ctx, "inode %llu: chunk size 2^%u", n, vi->chunkbits);
		nchunks = (vi->size >> vi->chunkbits) +
			  !!(vi->size & ((UINT64_C(1) << vi->chunkbits) - 1));
		if (util_mul_overflow_u64(nchunks, unit, &end) ||
		    util_add_overflow_u64(ROUND_UP(base, unit), end, &end))
			return erofs_corrupt(ctx, "inode %llu: chunk indexes overflow", n);
		return check_end(ctx, vi, end, "chunk index array");
	}
	default:
		break;
	}

	/* compressed: map header, then indexes (or extent records), then a ztailpacking tail */
	r = erofs_zmap_init(ctx, vi);
	if (r < 0)
		return r;
	{
		uint64_t hpos = ROUND_UP(base, 8), end, nlc, tmp;

		r = check_end(ctx, vi, hpos + 8, "compression map header");
		if (r < 0 || vi->z_whole_fragment)
			return r;
		if (vi->size == 0)
			return 0;
		nlc = ((vi->size - 1) >> vi->z_lclusterbits) + 1;
		if (vi->layout == EROFS_LAYOUT_COMPRESSED_FULL &&
		    (vi->z_advise & Z_EROFS_ADVISE_EXTENTS)) {
			unsigned int recsz = 4u << ((vi->z_advise >> Z_EROFS_ADVISE_EXTRECSZ_BIT) &
						    Z_EROFS_ADVISE_EXTRECSZ_MASK);
			uint64_t pos = ROUND_UP(hpos + 8, recsz), cnt;

			if (recsz <= 4) {
				pos += 8;
				cnt = nlc;
			} else if (recsz <= 8) {
				cnt = nlc;
			} else {
				cnt = vi->z_extents;
			}
			if (util_mul_overflow_u64(cnt, recsz, &tmp) ||
			    util_add_overflow_u64(pos, tmp, &end))
				return erofs_corrupt(ctx, "inode %llu: extent records overflow", n);
		} else if (vi->layout == EROFS_LAYOUT_COMPRESSED_FULL) {
			if (util_mul_overflow_u64(nlc, 8, &tmp) ||
			    util_add_overflow_u64(hpos + 16, tmp, &end))
				return erofs_corrupt(ctx, "inode %llu: index array overflow", n);
		} else {
			uint64_t totalidx = ((vi->size - 1) >> ctx->blkbits) + 1;

			if (totalidx > (UINT64_C(1) << 40))
				return erofs_corrupt(ctx, "inode %llu: index array overflow", n);
			end = erofs_compact_pack_end(ctx, vi, MAX(totalidx, nlc) - 1, NULL, NULL);
		}
		r = check_end(ctx, vi, end, "compression indexes");
		if (r < 0)
			return r;
		if (vi->z_idata_size) {
			if (util_add_overflow_u64(vi->z_idataoff, vi->z_idata_size, &end))
				return erofs_corrupt(ctx, "inode %llu: tail overflow", n);
			r = check_end(ctx, vi, end, "inline compressed tail");
		}
	}
	return r;
}
