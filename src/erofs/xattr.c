// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Extended attributes: the inline ibody (12-byte header, shared ids, entries), shared
 * entries in the shared xattr area (image or metabox), long name prefixes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "erofs/internal.h"

static const char *const short_prefixes[] = {
	NULL,
	"user.",
	"system.posix_acl_access",
	"system.posix_acl_default",
	"trusted.",
	"lustre.",
	"security.",
};

/* Build the full name of an entry; returns its length or <0. name must hold 2 * 256 bytes. */
static int entry_name(struct erofs_ctx *ctx, uint64_t nid, uint8_t index, const uint8_t *suffix,
		      unsigned int suffix_len, char *name)
{
	const char *pfx = NULL, *infix = "";
	unsigned int infix_len = 0;
	size_t plen;

	if (index & EROFS_XATTR_LONG_PREFIX) {
		unsigned int i = index & EROFS_XATTR_LONG_PREFIX_MASK;
		int r = erofs_prefixes_load(ctx);

		if (r < 0)
			return r;
		if (i >= ctx->xattr_prefix_count)
			return erofs_corrupt(ctx, "inode %llu: xattr uses long prefix %u of %u",
					     (unsigned long long)nid, i, ctx->xattr_prefix_count);
		index = ctx->prefixes[i].base_index;
		infix = ctx->prefixes[i].infix;
		infix_len = ctx->prefixes[i].infix_len;
	}
	if (index < ARRAY_SIZE(short_prefixes))
		pfx = short_prefixes[index];
	if (!pfx)
		return 0; /* unknown prefix: the kernel hides such entries */
	plen = strlen(pfx);
	memcpy(name, pfx, plen);
	memcpy(name + plen, infix, infix_len);
	memcpy(name + plen + infix_len, suffix, suffix_len);
	name[plen + infix_len + suffix_len] = 0;
	return (int)(plen + infix_len + suffix_len);
}

/* One entry at buf (avail bytes); returns its aligned size or <0. */
static int parse_entry(struct erofs_ctx *ctx, uint64_t nid, const uint8_t *buf, size_t avail,
		       erofs_xattr_cb cb, void *opaque)
{
	const struct erofs_disk_xattr_entry *e = (const void *)buf;
	size_t need, vsize;
	char name[2 * 256 + 32];
	int n, r;

	if (avail < sizeof(*e))
		return erofs_corrupt(ctx, "inode %llu: xattr entry truncated",
				     (unsigned long long)nid);
	vsize = erofs_le16(e->e_value_size);
	need = ROUND_UP(sizeof(*e) + e->e_name_len + vsize, 4);
	if (need > avail)
		return erofs_corrupt(ctx, "inode %llu: xattr entry of %zu bytes beyond its area "
				     "(%zu bytes left)",
				     (unsigned long long)nid, need, avail);
	if (e->e_name_index & EROFS_XATTR_LONG_PREFIX) {
		/* validate the long prefix reference even without a callback */
		n = entry_name(ctx, nid, e->e_name_index, buf + 4, e->e_name_len, name);
		if (n < 0)
			return n;
	} else if (cb) {
		n = entry_name(ctx, nid, e->e_name_index, buf + 4, e->e_name_len, name);
		if (n < 0)
			return n;
	} else {
		n = 0;
	}
	if (cb && n > 0) {
		r = cb(opaque, name, (size_t)n, buf + 4 + e->e_name_len, vsize);
		if (r < 0)
			return r;
	}
	return (int)need;
}

int erofs_xattr_ibody_parse(struct erofs_ctx *ctx, uint64_t nid, const uint8_t *buf, size_t len,
			    uint32_t *shared_ids, unsigned int *nshared, erofs_xattr_cb cb,
			    void *opaque)
{
	const struct erofs_disk_xattr_ibody_header *ih = (const void *)buf;
	size_t pos;

	if (nshared)
		*nshared = 0;
	if (len == 0)
		return 0;
	if (len < sizeof(*ih))
		return erofs_corrupt(ctx, "inode %llu: xattr area of %zu bytes",
				     (unsigned long long)nid, len);
	if (len == sizeof(*ih))
		return 0; /* reserved on-disk form: no xattrs */
	pos = sizeof(*ih) + 4u * ih->h_shared_count;
	if (pos > len)
		return erofs_corrupt(ctx, "inode %llu: %u shared xattrs beyond the xattr area",
				     (unsigned long long)nid, ih->h_shared_count);
	for (unsigned int i = 0; i < ih->h_shared_count; i++) {
		if (shared_ids)
			shared_ids[i] = erofs_get_le32(buf + sizeof(*ih) + 4 * i);
	}
	if (nshared)
		*nshared = ih->h_shared_count;
	while (pos < len) {
		int n = parse_entry(ctx, nid, buf + pos, len - pos, cb, opaque);

		if (n < 0)
			return n;
		pos += (size_t)n;
	}
	return 0;
}

static int shared_entry(struct erofs_ctx *ctx, uint32_t id, uint64_t *ret_off, uint8_t *hdr)
{
	uint64_t off = ctx->xattr_base + (uint64_t)id * 4;

	*ret_off = off;
	return erofs_meta_read(ctx, ctx->xattr_in_mbox, hdr, 4, off);
}

int erofs_shared_xattr_extent(struct erofs_ctx *ctx, uint32_t id, uint64_t *ret_off,
			      uint64_t *ret_len)
{
	uint8_t hdr[4];
	uint64_t off, len, space;
	int r = shared_entry(ctx, id, &off, hdr);

	if (r < 0)
		return r;
	len = ROUND_UP(4u + hdr[0] + erofs_get_le16(hdr + 2), 4);
	space = ctx->xattr_in_mbox ? ctx->mbox_size : ctx->io->size;
	if (!util_range_within(off, len, space))
		return erofs_corrupt(ctx, "shared xattr %u beyond the %s", id,
				     ctx->xattr_in_mbox ? "metabox" : "image");
	if (hdr[1] & EROFS_XATTR_LONG_PREFIX) {
		r = erofs_prefixes_load(ctx);
		if (r < 0)
			return r;
		if ((hdr[1] & EROFS_XATTR_LONG_PREFIX_MASK) >= ctx->xattr_prefix_count)
			return erofs_corrupt(ctx, "shared xattr %u uses an undefined long prefix",
					     id);
	}
	*ret_off = off;
	*ret_len = len;
	return 0;
}

static int list_shared(struct erofs_ctx *ctx, uint64_t nid, uint32_t id, erofs_xattr_cb cb,
		       void *opaque)
{
	uint8_t buf[4 + 255 + 65535 + 4];
	uint64_t off, len;
	int r = erofs_shared_xattr_extent(ctx, id, &off, &len);

	if (r < 0)
		return r;
	r = erofs_meta_read(ctx, ctx->xattr_in_mbox, buf, len, off);
	if (r < 0)
		return r;
	r = parse_entry(ctx, nid, buf, len, cb, opaque);
	return r < 0 ? r : 0;
}

int erofs_xattr_ibody_read(struct erofs_ctx *ctx, struct erofs_inode *vi, uint32_t *shared_ids,
			   unsigned int *nshared, erofs_xattr_cb cb, void *opaque)
{
	uint8_t *buf;
	int r;

	*nshared = 0;
	if (!vi->xattr_isize)
		return 0;
	buf = malloc(vi->xattr_isize);
	if (!buf)
		return -ENOMEM;
	r = erofs_meta_read(ctx, vi->in_mbox, buf, vi->xattr_isize, vi->iloc + vi->isize);
	if (r >= 0)
		r = erofs_xattr_ibody_parse(ctx, vi->nid, buf, vi->xattr_isize, shared_ids, nshared,
					    cb, opaque);
	free(buf);
	return r;
}

int erofs_listxattr(struct erofs_ctx *ctx, struct erofs_inode *vi, erofs_xattr_cb cb, void *opaque)
{
	uint32_t ids[256];
	unsigned int n = 0;
	int r;

	r = erofs_xattr_ibody_read(ctx, vi, ids, &n, cb, opaque);
	for (unsigned int i = 0; r >= 0 && i < n; i++)
		r = list_shared(ctx, vi->nid, ids[i], cb, opaque);
	return r;
}
