// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Compressed inodes: the map header, legacy (full) lcluster indexes, compacted 2B/4B index
 * packs and extent records, mapped to pclusters the way the kernel's z_erofs_map_blocks does
 * (logical extent -> physical pcluster, ztailpacking tail, fragment in the packed inode).
 */
#include <errno.h>
#include <string.h>

#include "erofs/internal.h"

/* Index loads per walk; hostile lookback chains cost one load per step. */
#define ZMAP_MAX_LOADS (1u << 24)

struct zrec {
	struct erofs_inode *vi;
	uint64_t lcn;
	uint8_t type, headtype;
	uint32_t clusterofs;
	uint32_t delta[2];
	uint64_t pblk, compressedblks;
	uint64_t nextpackoff;
	bool partialref;
	uint64_t la; /* head's logical start, set by the lookback */
};

static uint64_t zbase(const struct erofs_inode *vi)
{
	return ROUND_UP(vi->iloc + vi->isize + vi->xattr_isize, 8);
}

static int load_budget(struct erofs_ctx *ctx, struct erofs_inode *vi)
{
	if (++ctx->zloads > ZMAP_MAX_LOADS)
		return erofs_corrupt(ctx, "inode %llu: too many compression index lookups",
				     (unsigned long long)vi->nid);
	return 0;
}

static int load_full(struct erofs_ctx *ctx, struct zrec *m, uint64_t lcn)
{
	struct erofs_inode *vi = m->vi;
	uint64_t nlc = ((vi->size - 1) >> vi->z_lclusterbits) + 1;
	uint64_t pos = zbase(vi) + 16 + lcn * 8;
	struct z_erofs_disk_lcluster_index di;
	uint16_t advise;
	int r;

	if (lcn >= nlc)
		return erofs_corrupt(ctx, "inode %llu: lcluster %llu beyond the index array",
				     (unsigned long long)vi->nid, (unsigned long long)lcn);
	r = load_budget(ctx, vi);
	if (r >= 0)
		r = erofs_meta_read(ctx, vi->in_mbox, &di, sizeof(di), pos);
	if (r < 0)
		return r;
	m->lcn = lcn;
	m->nextpackoff = pos + sizeof(di);
	advise = erofs_le16(di.di_advise);
	m->type = advise & Z_EROFS_LI_LCLUSTER_TYPE_MASK;
	if (m->type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		uint32_t u = erofs_le32(di.di_u);

		m->clusterofs = 1u << vi->z_lclusterbits;
		m->delta[0] = u & 0xffff;
		if (m->delta[0] & Z_EROFS_LI_D0_CBLKCNT) {
			if (!(vi->z_advise &
			      (Z_EROFS_ADVISE_BIG_PCLUSTER_1 | Z_EROFS_ADVISE_BIG_PCLUSTER_2)))
				return erofs_corrupt(ctx, "inode %llu: lcluster %llu has a block "
						     "count without big pclusters",
						     (unsigned long long)vi->nid,
						     (unsigned long long)lcn);
			m->compressedblks = m->delta[0] & ~Z_EROFS_LI_D0_CBLKCNT;
			m->delta[0] = 1;
		}
		m->delta[1] = u >> 16;
	} else {
		m->partialref = advise & Z_EROFS_LI_PARTIAL_REF;
		m->clusterofs = erofs_le16(di.di_clusterofs);
		m->pblk = erofs_le32(di.di_u);
	}
	return 0;
}

static unsigned int decode_bits(unsigned int lobits, const uint8_t *in, unsigned int pos,
				uint8_t *type)
{
	uint32_t v = erofs_get_le32(in + pos / 8) >> (pos & 7);

	*type = (v >> lobits) & 3;
	return v & ((1u << lobits) - 1);
}

uint64_t erofs_compact_pack_end(const struct erofs_ctx *ctx, const struct erofs_inode *vi,
				uint64_t lcn, unsigned int *ret_shift, uint64_t *ret_pos)
{
	uint64_t ebase = zbase(vi) + 8;
	uint64_t totalidx = vi->size ? ((vi->size - 1) >> ctx->blkbits) + 1 : 0;
	uint64_t initial = ((32 - ebase % 32) / 4) & 7, c2b = 0, pos = ebase;
	unsigned int shift = 2, vcnt;

	if ((vi->z_advise & Z_EROFS_ADVISE_COMPACTED_2B) && initial < totalidx)
		c2b = ROUND_DOWN(totalidx - initial, 16);
	if (lcn >= initial) {
		pos += initial * 4;
		lcn -= initial;
		if (lcn < c2b) {
			shift = 1;
		} else {
			pos += c2b * 2;
			lcn -= c2b;
		}
	}
	pos += lcn << shift;
	vcnt = shift == 2 ? 2 : 16;
	if (ret_shift)
		*ret_shift = shift;
	if (ret_pos)
		*ret_pos = pos;
	return ROUND_DOWN(pos, (uint64_t)vcnt << shift) + ((uint64_t)vcnt << shift);
}

static int get_la_distance(unsigned int lobits, unsigned int encodebits, unsigned int vcnt,
			   const uint8_t *in, int i)
{
	unsigned int lo = 0, d1 = 0;
	uint8_t type;

	do {
		lo = decode_bits(lobits, in, encodebits * (unsigned int)i, &type);
		if (type != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
			return (int)d1;
		++d1;
	} while (++i < (int)vcnt);
	/* the last NONHEAD of a pack stores delta[1] */
	if (!(lo & Z_EROFS_LI_D0_CBLKCNT))
		d1 += lo - 1;
	return (int)d1;
}

static int load_compact(struct erofs_ctx *ctx, struct zrec *m, uint64_t lcn, bool lookahead)
{
	struct erofs_inode *vi = m->vi;
	unsigned int lclusterbits = vi->z_lclusterbits, shift, vcnt, lobits, encodebits, lo;
	uint64_t totalidx = ((vi->size - 1) >> ctx->blkbits) + 1, pos, packstart, nblk;
	bool big = vi->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1;
	uint8_t pack[32 + 4] = { 0 }, type;
	unsigned int packsize;
	int i, r;

	if (lcn >= totalidx)
		return erofs_corrupt(ctx, "inode %llu: lcluster %llu beyond the index array",
				     (unsigned long long)vi->nid, (unsigned long long)lcn);
	if (lclusterbits > 14)
		return erofs_unsupported(ctx, "inode %llu: compact indexes with 2^%u lclusters",
					 (unsigned long long)vi->nid, lclusterbits);
	m->lcn = lcn;
	m->nextpackoff = erofs_compact_pack_end(ctx, vi, lcn, &shift, &pos);
	if (shift == 2)
		vcnt = 2;
	else if (lclusterbits <= 12)
		vcnt = 16;
	else
		return erofs_unsupported(ctx, "inode %llu: 2B compact indexes with 2^%u lclusters",
					 (unsigned long long)vi->nid, lclusterbits);
	packsize = vcnt << shift;
	packstart = ROUND_DOWN(pos, packsize);
	r = load_budget(ctx, vi);
	if (r >= 0)
		r = erofs_meta_read(ctx, vi->in_mbox, pack, packsize, packstart);
	if (r < 0)
		return r;
	lobits = MAX(lclusterbits, 12u);
	encodebits = ((packsize - 4) * 8) / vcnt;
	i = (int)((pos - packstart) >> shift);

	lo = decode_bits(lobits, pack, encodebits * (unsigned int)i, &type);
	m->type = type;
	if (type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		m->clusterofs = 1u << lclusterbits;
		if (lookahead)
			m->delta[1] = (uint32_t)get_la_distance(lobits, encodebits, vcnt, pack, i);
		if (lo & Z_EROFS_LI_D0_CBLKCNT) {
			if (!big)
				return erofs_corrupt(ctx, "inode %llu: lcluster %llu has a block "
						     "count without big pclusters",
						     (unsigned long long)vi->nid,
						     (unsigned long long)lcn);
			m->compressedblks = lo & ~Z_EROFS_LI_D0_CBLKCNT;
			m->delta[0] = 1;
			return 0;
		} else if (i + 1 != (int)vcnt) {
			m->delta[0] = lo;
			return 0;
		}
		/* the last lcluster of a pack keeps delta[1]: delta[0] comes from the previous */
		lo = decode_bits(lobits, pack, encodebits * (unsigned int)(i - 1), &type);
		if (type != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
			lo = 0;
		else if (lo & Z_EROFS_LI_D0_CBLKCNT)
			lo = 1;
		m->delta[0] = lo + 1;
		return 0;
	}
	m->clusterofs = lo;
	m->delta[0] = 0;
	/* a head's block address: the pack's base address plus the blocks before it */
	if (!big) {
		nblk = 1;
		while (i > 0) {
			--i;
			lo = decode_bits(lobits, pack, encodebits * (unsigned int)i, &type);
			if (type == Z_EROFS_LCLUSTER_TYPE_NONHEAD)
				i -= (int)lo;
			if (i >= 0)
				++nblk;
		}
	} else {
		nblk = 0;
		while (i > 0) {
			--i;
			lo = decode_bits(lobits, pack, encodebits * (unsigned int)i, &type);
			if (type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
				if (lo & Z_EROFS_LI_D0_CBLKCNT) {
					--i;
					nblk += lo & ~Z_EROFS_LI_D0_CBLKCNT;
					continue;
				}
				if (lo <= 1)
					return erofs_corrupt(ctx, "inode %llu: bogus compact index "
							     "delta at lcluster %llu",
							     (unsigned long long)vi->nid,
							     (unsigned long long)lcn);
				i -= (int)lo - 2;
				continue;
			}
			++nblk;
		}
	}
	m->pblk = erofs_get_le32(pack + packsize - 4) + nblk;
	return 0;
}

static int load_lcluster(struct erofs_ctx *ctx, struct zrec *m, uint64_t lcn, bool lookahead)
{
	struct erofs_inode *vi = m->vi;
	int r;

	if (vi->layout == EROFS_LAYOUT_COMPRESSED_COMPACT)
		r = load_compact(ctx, m, lcn, lookahead);
	else
		r = load_full(ctx, m, lcn);
	if (r < 0)
		return r;
	if (m->type != Z_EROFS_LCLUSTER_TYPE_NONHEAD &&
	    m->clusterofs >= (1u << vi->z_lclusterbits))
		return erofs_corrupt(ctx, "inode %llu: lcluster %llu offset %u beyond the lcluster",
				     (unsigned long long)vi->nid, (unsigned long long)lcn,
				     m->clusterofs);
	return 0;
}

static int lookback(struct erofs_ctx *ctx, struct zrec *m, uint64_t distance)
{
	struct erofs_inode *vi = m->vi;

	while (distance && m->lcn >= distance) {
		uint64_t lcn = m->lcn - distance;
		int r = load_lcluster(ctx, m, lcn, false);

		if (r < 0)
			return r;
		if (m->type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			distance = m->delta[0];
			continue;
		}
		m->headtype = m->type;
		m->la = (lcn << vi->z_lclusterbits) | m->clusterofs;
		return 0;
	}
	return erofs_corrupt(ctx, "inode %llu: bogus lookback distance %llu at lcluster %llu",
			     (unsigned long long)vi->nid, (unsigned long long)distance,
			     (unsigned long long)m->lcn);
}

static int compressed_len(struct erofs_ctx *ctx, struct zrec *m, struct erofs_map *map)
{
	struct erofs_inode *vi = m->vi;
	bool big1 = vi->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1;
	bool big2 = vi->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2;
	uint64_t lcn = m->lcn + 1;
	int r;

	if ((m->headtype == Z_EROFS_LCLUSTER_TYPE_HEAD1 && !big1) ||
	    ((m->headtype == Z_EROFS_LCLUSTER_TYPE_PLAIN ||
	      m->headtype == Z_EROFS_LCLUSTER_TYPE_HEAD2) &&
	     !big2) ||
	    (lcn << vi->z_lclusterbits) >= vi->size)
		m->compressedblks = 1;
	if (!m->compressedblks) {
		r = load_lcluster(ctx, m, lcn, false);
		if (r < 0)
			return r;
		if (m->type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			if (m->delta[0] != 1 || !m->compressedblks)
				return erofs_corrupt(ctx, "inode %llu: no pcluster block count at "
						     "lcluster %llu",
						     (unsigned long long)vi->nid,
						     (unsigned long long)lcn);
		} else {
			m->compressedblks = 1;
		}
	}
	if (m->compressedblks > (Z_EROFS_PCLUSTER_MAX_SIZE >> ctx->blkbits))
		return erofs_unsupported(ctx, "inode %llu: pcluster of %llu blocks",
					 (unsigned long long)vi->nid,
					 (unsigned long long)m->compressedblks);
	map->plen = m->compressedblks << ctx->blkbits;
	return 0;
}

static int map_fo(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la, bool findtail,
		  struct erofs_map *map)
{
	bool fragment = vi->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER;
	bool ztail = vi->z_idata_size;
	unsigned int bits = vi->z_lclusterbits;
	struct zrec m = { .vi = vi };
	uint64_t ofs, end, initial_lcn, endoff;
	int r;

	ofs = findtail ? vi->size - 1 : la;
	if (fragment && !findtail && !vi->z_tailextent_headlcn) {
		*map = (struct erofs_map){ .la = 0, .llen = vi->size, .flags = EROFS_MAP_FRAGMENT };
		return 0;
	}
	initial_lcn = ofs >> bits;
	endoff = ofs & ((UINT64_C(1) << bits) - 1);
	r = load_lcluster(ctx, &m, initial_lcn, false);
	if (r < 0)
		return r;
	if (findtail && ztail)
		vi->z_idataoff = m.nextpackoff;
	*map = (struct erofs_map){ .flags = EROFS_MAP_MAPPED | EROFS_MAP_ENCODED };
	end = (m.lcn + 1) << bits;
	if (m.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		if (endoff >= m.clusterofs) {
			m.headtype = m.type;
			m.la = (m.lcn << bits) | m.clusterofs;
			if (ztail && end > vi->size)
				end = vi->size;
		} else {
			if (!m.lcn)
				return erofs_corrupt(ctx, "inode %llu: invalid logical cluster 0",
						     (unsigned long long)vi->nid);
			end = (m.lcn << bits) | m.clusterofs;
			map->flags |= EROFS_MAP_FULL;
			r = lookback(ctx, &m, 1);
			if (r < 0)
				return r;
		}
	} else {
		r = lookback(ctx, &m, m.delta[0]);
		if (r < 0)
			return r;
	}
	map->la = m.la;
	if (m.partialref)
		map->flags |= EROFS_MAP_PARTIAL;
	if (end < m.la)
		return erofs_corrupt(ctx, "inode %llu: extent ends before it starts",
				     (unsigned long long)vi->nid);
	map->llen = end - m.la;
	if (findtail) {
		vi->z_tailextent_headlcn = m.lcn;
		if (fragment && vi->layout == EROFS_LAYOUT_COMPRESSED_FULL)
			vi->z_fragmentoff |= m.pblk << 32;
	}
	if (ztail && m.lcn == vi->z_tailextent_headlcn) {
		map->flags |= EROFS_MAP_META;
		map->pa = vi->z_idataoff;
		map->plen = vi->z_idata_size;
		if ((map->pa & (ctx->bs - 1)) + map->plen > ctx->bs)
			return erofs_corrupt(ctx, "inode %llu: inline compressed tail of %llu bytes "
					     "crosses a block boundary",
					     (unsigned long long)vi->nid,
					     (unsigned long long)map->plen);
	} else if (fragment && m.lcn == vi->z_tailextent_headlcn) {
		map->flags = EROFS_MAP_FRAGMENT;
	} else {
		if (m.pblk > (UINT64_MAX >> ctx->blkbits))
			return erofs_corrupt(ctx, "inode %llu: pcluster address overflow",
					     (unsigned long long)vi->nid);
		map->pa = m.pblk << ctx->blkbits;
		r = compressed_len(ctx, &m, map);
		if (r < 0)
			return r;
	}
	if (m.headtype == Z_EROFS_LCLUSTER_TYPE_PLAIN) {
		if (map->llen > map->plen && !(map->flags & EROFS_MAP_FRAGMENT))
			return erofs_corrupt(ctx, "inode %llu: stored extent longer than its "
					     "pcluster",
					     (unsigned long long)vi->nid);
		map->alg = vi->z_advise & Z_EROFS_ADVISE_INTERLACED_PCLUSTER ?
				   Z_EROFS_ALG_INTERLACED :
				   Z_EROFS_ALG_SHIFTED;
	} else if (m.headtype == Z_EROFS_LCLUSTER_TYPE_HEAD2) {
		map->alg = vi->z_algs[1];
	} else {
		map->alg = vi->z_algs[0];
	}
	return 0;
}

static int map_ext(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		   struct erofs_map *map)
{
	unsigned int recsz = 4u << ((vi->z_advise >> Z_EROFS_ADVISE_EXTRECSZ_BIT) &
				    Z_EROFS_ADVISE_EXTRECSZ_MASK);
	uint64_t pos = ROUND_UP(zbase(vi) + 8, recsz);
	uint64_t lend = vi->size, lstart, pa, l, r_, mid;
	uint64_t lcsize = UINT64_C(1) << vi->z_lclusterbits;
	struct z_erofs_disk_extent ext;
	bool last;
	int r;

	*map = (struct erofs_map){ 0 };
	if (recsz <= 8) {
		uint64_t steps = 0;

		memset(&ext, 0, sizeof(ext));
		if (recsz <= 4) {
			uint8_t b[8];

			r = erofs_meta_read(ctx, vi->in_mbox, b, 8, pos);
			if (r < 0)
				return r;
			pa = erofs_get_le64(b);
			pos += 8;
			lstart = 0;
		} else {
			lstart = ROUND_DOWN(la, lcsize);
			pos += (lstart >> vi->z_lclusterbits) * recsz;
			pa = EROFS_NULL_ADDR;
		}
		for (; lstart <= la; lstart += lcsize) {
			r = load_budget(ctx, vi);
			if (r >= 0)
				r = erofs_meta_read(ctx, vi->in_mbox, &ext, recsz, pos);
			if (r < 0)
				return r;
			map->plen = erofs_le32(ext.plen);
			if (pa != EROFS_NULL_ADDR) {
				map->pa = pa;
				pa += map->plen & Z_EROFS_EXTENT_PLEN_MASK;
			} else {
				map->pa = erofs_le32(ext.pstart_lo);
			}
			pos += recsz;
			if (++steps > (UINT64_C(1) << 32))
				break;
		}
		last = lstart >= ROUND_UP(lend, lcsize);
		lend = MIN(lstart, lend);
		lstart -= lcsize;
	} else {
		lstart = lend;
		for (l = 0, r_ = vi->z_extents; l < r_;) {
			uint64_t ela;

			mid = l + (r_ - l) / 2;
			r = load_budget(ctx, vi);
			if (r >= 0)
				r = erofs_meta_read(ctx, vi->in_mbox, &ext, recsz, pos + mid * recsz);
			if (r < 0)
				return r;
			ela = erofs_le32(ext.lstart_lo);
			pa = erofs_le32(ext.pstart_lo) | (uint64_t)erofs_le32(ext.pstart_hi) << 32;
			if (recsz > __builtin_offsetof(struct z_erofs_disk_extent, lstart_hi))
				ela |= (uint64_t)erofs_le32(ext.lstart_hi) << 32;
			if (ela > la) {
				r_ = mid;
				if (ela > lend)
					return erofs_corrupt(ctx, "inode %llu: extent records out of "
							     "order",
							     (unsigned long long)vi->nid);
				lend = ela;
			} else {
				l = mid + 1;
				if (la == ela)
					r_ = MIN(l + 1, r_);
				lstart = ela;
				map->plen = erofs_le32(ext.plen);
				map->pa = pa;
			}
		}
		last = l >= vi->z_extents;
	}
	if (lstart < lend) {
		map->la = lstart;
		if (last && (vi->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)) {
			map->flags = EROFS_MAP_FRAGMENT;
			vi->z_fragmentoff = map->plen;
			if (recsz > __builtin_offsetof(struct z_erofs_disk_extent, pstart_lo))
				vi->z_fragmentoff |= map->pa << 32;
		} else if (map->plen & Z_EROFS_EXTENT_PLEN_MASK) {
			unsigned int fmt = map->plen >> Z_EROFS_EXTENT_PLEN_FMT_BIT;

			map->flags |= EROFS_MAP_MAPPED | EROFS_MAP_FULL | EROFS_MAP_ENCODED;
			if (map->plen & Z_EROFS_EXTENT_PLEN_PARTIAL)
				map->flags |= EROFS_MAP_PARTIAL;
			map->plen &= Z_EROFS_EXTENT_PLEN_MASK;
			if (fmt)
				map->alg = fmt - 1;
			else if ((vi->z_advise & Z_EROFS_ADVISE_INTERLACED_PCLUSTER) &&
				 !((map->pa | map->plen) & (ctx->bs - 1)))
				map->alg = Z_EROFS_ALG_INTERLACED;
			else
				map->alg = Z_EROFS_ALG_SHIFTED;
		}
	} else {
		map->la = la;
		lend = la;
	}
	map->llen = lend - map->la;
	return 0;
}

int erofs_zmap_init(struct erofs_ctx *ctx, struct erofs_inode *vi)
{
	struct z_erofs_disk_map_header h;
	uint8_t raw[8];
	unsigned long long n = vi->nid;
	int r;

	if (vi->z_inited)
		return 0;
	r = erofs_meta_read(ctx, vi->in_mbox, raw, 8, zbase(vi));
	if (r < 0)
		return r;
	memcpy(&h, raw, sizeof(h));
	if (h.h_clusterbits >> Z_EROFS_FRAGMENT_INODE_BIT) {
		vi->z_advise = Z_EROFS_ADVISE_FRAGMENT_PCLUSTER;
		vi->z_whole_fragment = true;
		vi->z_fragmentoff = erofs_get_le64(raw) ^ (UINT64_C(1) << 63);
		vi->z_tailextent_headlcn = 0;
		vi->z_lclusterbits = ctx->blkbits;
		vi->z_inited = true;
		return 0;
	}
	vi->z_advise = erofs_le16(h.h_advise);
	vi->z_lclusterbits = ctx->blkbits + (h.h_clusterbits & 15);
	if (vi->z_lclusterbits > 24)
		return erofs_unsupported(ctx, "inode %llu: logical clusters of 2^%u bytes", n,
					 vi->z_lclusterbits);
	if (vi->layout == EROFS_LAYOUT_COMPRESSED_FULL &&
	    (vi->z_advise & Z_EROFS_ADVISE_EXTENTS)) {
		vi->z_extents = erofs_get_le32(raw) | (uint64_t)erofs_get_le16(raw + 6) << 32;
		vi->z_inited = true;
		return 0;
	}
	vi->z_algs[0] = h.h_algorithmtype & 15;
	vi->z_algs[1] = h.h_algorithmtype >> 4;
	if (vi->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)
		vi->z_fragmentoff = erofs_get_le32(raw);
	else if (vi->z_advise & Z_EROFS_ADVISE_INLINE_PCLUSTER)
		vi->z_idata_size = erofs_le16(h.h_idata_size);
	if (vi->layout == EROFS_LAYOUT_COMPRESSED_COMPACT &&
	    !(vi->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1) !=
		    !(vi->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2))
		return erofs_corrupt(ctx, "inode %llu: inconsistent big pcluster flags", n);
	vi->z_inited = true;
	if (vi->size && (vi->z_idata_size || (vi->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER))) {
		struct erofs_map map;

		r = map_fo(ctx, vi, 0, true, &map);
		if (r < 0) {
			vi->z_inited = false;
			return r;
		}
	}
	return 0;
}

int erofs_zmap_blocks(struct erofs_ctx *ctx, struct erofs_inode *vi, uint64_t la,
		      struct erofs_map *map)
{
	int r;

	if (la >= vi->size) {
		*map = (struct erofs_map){ .la = la };
		return 0;
	}
	r = erofs_zmap_init(ctx, vi);
	if (r < 0)
		return r;
	if (vi->z_whole_fragment) {
		*map = (struct erofs_map){ .la = 0, .llen = vi->size, .flags = EROFS_MAP_FRAGMENT };
		return 0;
	}
	if (vi->layout == EROFS_LAYOUT_COMPRESSED_FULL && (vi->z_advise & Z_EROFS_ADVISE_EXTENTS))
		r = map_ext(ctx, vi, la, map);
	else
		r = map_fo(ctx, vi, la, false, map);
	if (r < 0)
		return r;
	if (map->flags & EROFS_MAP_ENCODED) {
		if (map->alg > Z_EROFS_ALG_INTERLACED)
			return erofs_unsupported(ctx, "inode %llu: unknown compression algorithm %u",
						 (unsigned long long)vi->nid, map->alg);
		if (map->alg < Z_EROFS_ALG_MAX && !(ctx->available_algs & (1u << map->alg)))
			return erofs_corrupt(ctx, "inode %llu: compression algorithm %u not "
					     "declared by the superblock",
					     (unsigned long long)vi->nid, map->alg);
		if (map->plen > Z_EROFS_PCLUSTER_MAX_SIZE || map->plen == 0)
			return erofs_corrupt(ctx, "inode %llu: pcluster of %llu bytes",
					     (unsigned long long)vi->nid,
					     (unsigned long long)map->plen);
	}
	if (map->llen > Z_EROFS_PCLUSTER_MAX_DSIZE && !(map->flags & EROFS_MAP_FRAGMENT))
		return erofs_unsupported(ctx, "inode %llu: extent of %llu bytes",
					 (unsigned long long)vi->nid,
					 (unsigned long long)map->llen);
	return 0;
}
