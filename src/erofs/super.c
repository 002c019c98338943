// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Superblock: validation (magic, block size, feature bits, crc32c), compression
 * configurations, the device table; the reader context and its error reporting.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "erofs/internal.h"
#include "util/extents.h"

static int vreport(struct erofs_ctx *ctx, int code, const char *fmt, va_list ap) _printf_(3, 0);

static int vreport(struct erofs_ctx *ctx, int code, const char *fmt, va_list ap)
{
	/* the first reason is the precise one; later ones are consequences */
	if (ctx->err && !util_err_has_msg(ctx->err))
		util_err_vset(ctx->err, code, fmt, ap);
	return code;
}

int erofs_corrupt(struct erofs_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vreport(ctx, -EUCLEAN, fmt, ap);
	va_end(ap);
	return r;
}

int erofs_unsupported(struct erofs_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vreport(ctx, -EOPNOTSUPP, fmt, ap);
	va_end(ap);
	return r;
}

int erofs_note(struct erofs_ctx *ctx, uint64_t off, uint64_t len)
{
	int r;

	if (!ctx->record || len == 0)
		return 0;
	r = util_extents_add(ctx->record, off, len);
	if (r == -EFBIG)
		return erofs_corrupt(ctx, "too many metadata ranges");
	return r;
}

int erofs_ctx_read(struct erofs_ctx *ctx, void *buf, uint64_t len, uint64_t off)
{
	int r;

	if (!util_range_within(off, len, ctx->io->size))
		return erofs_corrupt(ctx, "read of %llu bytes at offset %llu beyond the end of the "
				     "image (%llu bytes)",
				     (unsigned long long)len, (unsigned long long)off,
				     (unsigned long long)ctx->io->size);
	if (len == 0)
		return 0;
	ctx->reads++;
	r = ctx->io->read(ctx->io->ctx, buf, len, off);
	if (r < 0) {
		if (ctx->err && !util_err_has_msg(ctx->err))
			util_err_set(ctx->err, r, "cannot read %llu bytes at offset %llu: %s",
				     (unsigned long long)len, (unsigned long long)off,
				     strerror(-r));
		return r;
	}
	return erofs_note(ctx, off, len);
}

int erofs_meta_read(struct erofs_ctx *ctx, bool in_mbox, void *buf, uint64_t len, uint64_t off)
{
	int r;

	if (!in_mbox)
		return erofs_ctx_read(ctx, buf, len, off);
	r = erofs_mbox_load(ctx);
	if (r < 0)
		return r;
	if (!util_range_within(off, len, ctx->mbox_size))
		return erofs_corrupt(ctx, "read of %llu bytes at offset %llu beyond the end of the "
				     "metabox (%llu bytes)",
				     (unsigned long long)len, (unsigned long long)off,
				     (unsigned long long)ctx->mbox_size);
	memcpy(buf, ctx->mbox + off, len);
	return 0;
}

static const char *const compat_names[] = {
	"sb_csum", "mtime", "xattr_filter", "shared_ea_in_metabox", "plain_xattr_pfx",
	"ishare_xattrs",
};
static const char *const incompat_names[] = {
	"lz4_0padding", "big_pcluster", "chunked_file", "device_table", "ztailpacking",
	"fragments",    "xattr_prefixes", "48bit",     "metabox",
};
static const char *const alg_names[] = { "lz4", "lzma", "deflate", "zstd" };

static void add_word(char *buf, size_t len, const char *w)
{
	size_t n = strlen(buf);

	if (n + 1 + strlen(w) + 1 > len)
		return;
	snprintf(buf + n, len - n, "%s%s", n ? " " : "", w);
}

static void describe_features(struct erofs_ctx *ctx)
{
	struct erofs_info *in = &ctx->info;

	in->features[0] = 0;
	for (unsigned int i = 0; i < ARRAY_SIZE(compat_names); i++)
		if (in->feature_compat & (1u << i))
			add_word(in->features, sizeof(in->features), compat_names[i]);
	for (unsigned int i = 0; i < ARRAY_SIZE(incompat_names); i++)
		if (in->feature_incompat & (1u << i))
			add_word(in->features, sizeof(in->features), incompat_names[i]);
	for (unsigned int i = 0; i < ARRAY_SIZE(alg_names); i++)
		if (ctx->available_algs & (1u << i))
			add_word(in->features, sizeof(in->features), alg_names[i]);
}

static long page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? p : 4096;
}

int erofs_super_decode(struct erofs_ctx *ctx, const uint8_t *buf, size_t len)
{
	const struct erofs_disk_super *dsb;
	struct erofs_disk_super sb = { 0 };
	uint32_t incompat, unknown;
	uint64_t blocks;

	if (len < EROFS_SB_OFFSET + EROFS_SB_BASE_SIZE)
		return erofs_corrupt(ctx, "image too small for a superblock (%zu bytes)", len);
	dsb = (const struct erofs_disk_super *)(buf + EROFS_SB_OFFSET);
	memcpy(&sb, dsb, MIN(sizeof(sb), len - EROFS_SB_OFFSET));
	if (erofs_le32(sb.magic) != EROFS_MAGIC)
		return erofs_corrupt(ctx, "bad superblock magic 0x%08x (not an EROFS image)",
				     erofs_le32(sb.magic));
	if (sb.blkszbits < 9 || sb.blkszbits > 16)
		return erofs_corrupt(ctx, "superblock block size 2^%u out of range", sb.blkszbits);
	ctx->blkbits = sb.blkszbits;
	ctx->bs = 1u << sb.blkszbits;
	if ((long)ctx->bs > page_size())
		return erofs_unsupported(ctx, "block size %u larger than the page size %ld",
					 ctx->bs, page_size());
	ctx->sb_size = EROFS_SB_BASE_SIZE + sb.sb_extslots * EROFS_SB_SLOT_SIZE;
	if (EROFS_SB_OFFSET + ctx->sb_size > 4096 || EROFS_SB_OFFSET + ctx->sb_size > len)
		return erofs_corrupt(ctx, "superblock extension slots %u out of range",
				     sb.sb_extslots);
	/* fields past the superblock's declared size read as zero */
	memset(&sb, 0, sizeof(sb));
	memcpy(&sb, dsb, MIN(sizeof(sb), ctx->sb_size));

	ctx->info.block_size = ctx->bs;
	ctx->info.feature_compat = erofs_le32(sb.feature_compat);
	ctx->info.feature_incompat = incompat = erofs_le32(sb.feature_incompat);
	unknown = incompat & ~EROFS_INCOMPAT_KNOWN;
	if (unknown) {
		unsigned int bit = (unsigned int)__builtin_ctz(unknown);

		return erofs_unsupported(ctx, "unknown incompatible feature bit %u (0x%x)", bit,
					 1u << bit);
	}
	if (ctx->info.feature_compat & EROFS_COMPAT_SB_CHKSUM) {
		/* crc32c (seed ~0, no final xor) of the superblock block from byte 1024 with the
		 * checksum field zeroed: block size - 1024 bytes, or the whole block when the
		 * block is 1 KiB or smaller. */
		uint32_t clen = ctx->bs > EROFS_SB_OFFSET ? ctx->bs - EROFS_SB_OFFSET : ctx->bs;
		uint32_t crc, zero = 0;

		if (EROFS_SB_OFFSET + (size_t)clen > len)
			return erofs_corrupt(ctx, "image too small for the superblock checksum");
		crc = erofs_crc32c(~0u, buf + EROFS_SB_OFFSET, 4);
		crc = erofs_crc32c(crc, &zero, 4);
		crc = erofs_crc32c(crc, buf + EROFS_SB_OFFSET + 8, clen - 8);
		if (crc != erofs_le32(sb.checksum))
			return erofs_corrupt(ctx, "superblock checksum mismatch (stored 0x%08x, "
					     "computed 0x%08x)",
					     erofs_le32(sb.checksum), crc);
		ctx->info.has_checksum = true;
	}
	if (sb.dirblkbits)
		return erofs_unsupported(ctx, "directory block size bits %u", sb.dirblkbits);

	blocks = erofs_le32(sb.blocks_lo);
	ctx->root_nid = erofs_le16(sb.rootnid_2b);
	if ((incompat & EROFS_INCOMPAT_48BIT) && erofs_le64(sb.rootnid_8b)) {
		ctx->root_nid = erofs_le64(sb.rootnid_8b);
		blocks |= (uint64_t)erofs_le16(sb.rootnid_2b) << 32;
	}
	ctx->primary_blocks = blocks;
	ctx->info.blocks = blocks;
	ctx->info.inodes = erofs_le64(sb.inos);
	ctx->epoch = (int64_t)erofs_le64(sb.epoch);
	ctx->fixed_nsec = erofs_le32(sb.fixed_nsec);
	ctx->meta_base = (uint64_t)erofs_le32(sb.meta_blkaddr) << ctx->blkbits;
	ctx->info.meta_offset = ctx->meta_base;
	ctx->xattr_base = (uint64_t)erofs_le32(sb.xattr_blkaddr) << ctx->blkbits;
	ctx->packed_nid = erofs_le64(sb.packed_nid);
	if (ctx->packed_nid >> EROFS_DIRENT_NID_MBOX_BIT)
		return erofs_corrupt(ctx, "packed inode nid %llu has the metabox bit",
				     (unsigned long long)ctx->packed_nid);
	if (incompat & EROFS_INCOMPAT_METABOX) {
		if (ctx->sb_size <= __builtin_offsetof(struct erofs_disk_super, metabox_nid))
			return erofs_corrupt(ctx, "metabox feature without a superblock extension");
		ctx->has_metabox = true;
		ctx->metabox_nid = erofs_le64(sb.metabox_nid);
		if (ctx->metabox_nid >> EROFS_DIRENT_NID_MBOX_BIT)
			return erofs_corrupt(ctx, "metabox nid %llu refers to itself",
					     (unsigned long long)ctx->metabox_nid);
		if (ctx->info.feature_compat & EROFS_COMPAT_SHARED_EA_IN_METABOX)
			ctx->xattr_in_mbox = true;
	}
	if ((ctx->root_nid >> EROFS_DIRENT_NID_MBOX_BIT) && !ctx->has_metabox)
		return erofs_corrupt(ctx, "root nid in a metabox, but the image has none");
	ctx->xattr_prefix_count = sb.xattr_prefix_count;
	ctx->xattr_prefix_start = erofs_le32(sb.xattr_prefix_start);
	if (ctx->xattr_prefix_count > EROFS_XATTR_LONG_PREFIX_MASK + 1)
		return erofs_corrupt(ctx, "%u long xattr prefixes", ctx->xattr_prefix_count);
	memcpy(ctx->info.uuid, sb.uuid, sizeof(sb.uuid));
	memcpy(ctx->info.volume_name, sb.volume_name, sizeof(sb.volume_name));
	ctx->info.volume_name[16] = 0;

	if (incompat & EROFS_INCOMPAT_COMPR_CFGS) {
		ctx->available_algs = erofs_le16(sb.u1);
		if (ctx->available_algs & ~((1u << Z_EROFS_ALG_MAX) - 1))
			return erofs_unsupported(ctx, "unknown compression algorithms 0x%x",
						 ctx->available_algs);
	} else if (incompat & EROFS_INCOMPAT_LZ4_0PADDING || erofs_le16(sb.u1)) {
		ctx->available_algs = 1u << Z_EROFS_ALG_LZ4;
	}
	if (incompat & EROFS_INCOMPAT_DEVICE_TABLE)
		ctx->info.extra_devices = erofs_le16(sb.extra_devices);
	ctx->device_id_mask = 0;
	if (ctx->info.extra_devices) {
		uint32_t n = (uint32_t)ctx->info.extra_devices + 1, p = 1;

		while (p < n)
			p <<= 1;
		ctx->device_id_mask = (uint16_t)(p - 1);
	}
	describe_features(ctx);
	return 0;
}

/* Compression configurations follow the superblock: per algorithm present, a le16 length and
 * that many bytes, each record 4-byte aligned. */
static int read_compr_cfgs(struct erofs_ctx *ctx)
{
	uint64_t off = EROFS_SB_OFFSET + ctx->sb_size;

	if (!(ctx->info.feature_incompat & EROFS_INCOMPAT_COMPR_CFGS))
		return 0;
	for (unsigned int alg = 0; alg < Z_EROFS_ALG_MAX; alg++) {
		uint8_t lenbuf[2];
		uint16_t clen;
		int r;

		if (!(ctx->available_algs & (1u << alg)))
			continue;
		off = ROUND_UP(off, 4);
		r = erofs_ctx_read(ctx, lenbuf, 2, off);
		if (r < 0)
			return r;
		clen = erofs_get_le16(lenbuf);
		if (clen == 0 || clen > 256)
			return erofs_corrupt(ctx, "compression configuration of %s has length %u",
					     alg_names[alg], clen);
		r = erofs_note(ctx, off, 2u + clen);
		if (r < 0)
			return r;
		if (!util_range_within(off, 2u + clen, ctx->io->size))
			return erofs_corrupt(ctx, "compression configuration beyond the image");
		off += 2u + clen;
	}
	return 0;
}

static int read_device_table(struct erofs_ctx *ctx, uint64_t slotoff)
{
	uint64_t pos = slotoff * EROFS_DEVSLOT_SIZE;

	for (unsigned int i = 0; i < ctx->info.extra_devices; i++) {
		struct erofs_disk_devslot slot;
		int r = erofs_ctx_read(ctx, &slot, sizeof(slot), pos + i * EROFS_DEVSLOT_SIZE);

		if (r < 0)
			return r;
	}
	return 0;
}

int erofs_ctx_init(struct erofs_ctx *ctx, const struct erofs_io *io, struct util_error *err)
{
	uint8_t *head;
	size_t hlen;
	int r;

	*ctx = (struct erofs_ctx){.io = io, .err = err};
	util_err_clear(err);
	if (!io || !io->read)
		return -EINVAL;
	hlen = (size_t)MIN(io->size, (uint64_t)4096);
	if (hlen < EROFS_SB_OFFSET + EROFS_SB_BASE_SIZE)
		return erofs_corrupt(ctx, "image too small for a superblock (%llu bytes)",
				     (unsigned long long)io->size);
	head = malloc(hlen);
	if (!head)
		return -ENOMEM;
	r = erofs_ctx_read(ctx, head, hlen, 0);
	if (r >= 0)
		r = erofs_super_decode(ctx, head, hlen);
	if (r >= 0 && ctx->bs > hlen && io->size >= ctx->bs) {
		/* a block larger than 4 KiB: decode again over the whole first block */
		uint8_t *blk = realloc(head, ctx->bs);

		if (!blk) {
			r = -ENOMEM;
		} else {
			head = blk;
			r = erofs_ctx_read(ctx, head, ctx->bs, 0);
			if (r >= 0)
				r = erofs_super_decode(ctx, head, ctx->bs);
		}
	}
	if (r >= 0) {
		ctx->devt_slotoff = erofs_get_le16(head + EROFS_SB_OFFSET +
						   __builtin_offsetof(struct erofs_disk_super,
								      devt_slotoff));
		if (ctx->primary_blocks > (io->size >> ctx->blkbits))
			r = erofs_corrupt(ctx, "image truncated: %llu bytes, the superblock says "
					  "%llu blocks of %u bytes",
					  (unsigned long long)io->size,
					  (unsigned long long)ctx->primary_blocks, ctx->bs);
		if (r >= 0)
			r = erofs_ctx_note_super(ctx);
	}
	free(head);
	return r;
}

int erofs_ctx_note_super(struct erofs_ctx *ctx)
{
	int r = erofs_note(ctx, 0, MAX((uint64_t)ctx->bs, (uint64_t)EROFS_SB_OFFSET + ctx->sb_size));

	if (r >= 0)
		r = read_compr_cfgs(ctx);
	if (r >= 0)
		r = read_device_table(ctx, ctx->devt_slotoff);
	return r;
}

void erofs_ctx_done(struct erofs_ctx *ctx)
{
	free(ctx->mbox);
	free(ctx->prefixes);
	free(ctx->packed);
	ctx->mbox = NULL;
	ctx->prefixes = NULL;
	ctx->packed = NULL;
}

int erofs_probe(const struct erofs_io *io, struct erofs_info *ret, struct util_error *err)
{
	struct erofs_ctx ctx;
	int r;

	r = erofs_ctx_init(&ctx, io, err);
	if (r >= 0 && ret)
		*ret = ctx.info;
	erofs_ctx_done(&ctx);
	return r < 0 ? r : 0;
}
