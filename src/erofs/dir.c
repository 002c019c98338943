// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Directories (blocks of 12-byte dirents followed by their names, sorted byte-wise),
 * path lookup and symlink targets.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"

int erofs_dir_block_parse(struct erofs_ctx *ctx, uint64_t nid, uint64_t blk, const uint8_t *buf,
			  size_t len, erofs_dirent_cb cb, void *opaque)
{
	unsigned long long n = nid, b = blk;
	unsigned int nameoff0, count;

	if (len < sizeof(struct erofs_disk_dirent))
		return erofs_corrupt(ctx, "inode %llu directory block %llu: only %zu bytes", n, b,
				     len);
	nameoff0 = erofs_get_le16(buf + 8);
	if (nameoff0 < sizeof(struct erofs_disk_dirent) || nameoff0 >= len)
		return erofs_corrupt(ctx, "inode %llu directory block %llu nameoff %u beyond block",
				     n, b, nameoff0);
	count = nameoff0 / sizeof(struct erofs_disk_dirent);
	for (unsigned int i = 0; i < count; i++) {
		const uint8_t *de = buf + i * sizeof(struct erofs_disk_dirent);
		struct erofs_dirent_view v;
		unsigned int nameoff = erofs_get_le16(de + 8), namelen;

		if (nameoff < nameoff0 || nameoff >= len)
			return erofs_corrupt(ctx, "inode %llu directory block %llu nameoff %u beyond "
					     "block",
					     n, b, nameoff);
		if (i + 1 < count) {
			unsigned int next = erofs_get_le16(de + 12 + 8);

			if (next < nameoff || next > len)
				return erofs_corrupt(ctx, "inode %llu directory block %llu nameoff %u "
						     "beyond block",
						     n, b, next);
			namelen = next - nameoff;
		} else {
			const uint8_t *z = memchr(buf + nameoff, 0, len - nameoff);

			namelen = z ? (unsigned int)(z - (buf + nameoff)) :
				      (unsigned int)(len - nameoff);
		}
		if (namelen == 0 || namelen > EROFS_NAME_LEN)
			return erofs_corrupt(ctx, "inode %llu directory block %llu entry %u: name "
					     "of %u bytes",
					     n, b, i, namelen);
		v.nid = erofs_get_le64(de);
		v.file_type = de[10];
		v.name = (const char *)buf + nameoff;
		v.namelen = namelen;
		if (cb) {
			int r = cb(opaque, &v);

			if (r)
				return r;
		}
	}
	return 0;
}

struct sorted_check {
	struct erofs_ctx *ctx;
	uint64_t nid, blk;
	erofs_dirent_cb cb;
	void *opaque;
	char prev[EROFS_NAME_LEN + 1];
	unsigned int prevlen;
	bool have_prev;
};

static int name_cmp(const char *a, unsigned int alen, const char *b, unsigned int blen)
{
	int c = memcmp(a, b, MIN(alen, blen));

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int sorted_cb(void *opaque, const struct erofs_dirent_view *de)
{
	struct sorted_check *s = opaque;

	if (s->have_prev && name_cmp(s->prev, s->prevlen, de->name, de->namelen) >= 0)
		return erofs_corrupt(s->ctx, "inode %llu directory block %llu: entries not sorted",
				     (unsigned long long)s->nid, (unsigned long long)s->blk);
	memcpy(s->prev, de->name, de->namelen);
	s->prevlen = de->namelen;
	s->have_prev = true;
	return s->cb ? s->cb(s->opaque, de) : 0;
}

int erofs_readdir(struct erofs_ctx *ctx, struct erofs_inode *dir, erofs_dirent_cb cb,
		  void *opaque)
{
	struct sorted_check s = { .ctx = ctx, .nid = dir->nid, .cb = cb, .opaque = opaque };
	uint8_t *buf;
	int r;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	if (dir->size > EROFS_MAX_DIR_SIZE)
		return erofs_unsupported(ctx, "inode %llu: directory of %llu bytes",
					 (unsigned long long)dir->nid,
					 (unsigned long long)dir->size);
	if (dir->size == 0)
		return 0;
	if (dir->size > ctx->io->size * 64 + (UINT64_C(1) << 20))
		return erofs_corrupt(ctx, "inode %llu: directory of %llu bytes in a %llu-byte image",
				     (unsigned long long)dir->nid, (unsigned long long)dir->size,
				     (unsigned long long)ctx->io->size);
	buf = malloc(dir->size);
	if (!buf)
		return -ENOMEM;
	r = erofs_read_data(ctx, dir, buf, dir->size, 0);
	for (uint64_t off = 0; r == 0 && off < dir->size; off += ctx->bs) {
		s.blk = off >> ctx->blkbits;
		r = erofs_dir_block_parse(ctx, dir->nid, s.blk, buf + off,
					  (size_t)MIN((uint64_t)ctx->bs, dir->size - off), sorted_cb,
					  &s);
	}
	free(buf);
	return r < 0 ? r : 0;
}

struct lookup {
	const char *name;
	size_t len;
	uint64_t nid;
	bool found;
};

static int lookup_cb(void *opaque, const struct erofs_dirent_view *de)
{
	struct lookup *l = opaque;

	if (de->namelen == l->len && !memcmp(de->name, l->name, l->len)) {
		l->nid = de->nid;
		l->found = true;
		return 1;
	}
	return 0;
}

int erofs_lookup_path(struct erofs_ctx *ctx, const char *path, struct erofs_inode *ret)
{
	struct erofs_inode cur;
	int r = erofs_inode_read(ctx, ctx->root_nid, &cur);

	while (r >= 0 && *path) {
		struct lookup l = { 0 };

		while (*path == '/')
			path++;
		if (!*path)
			break;
		l.name = path;
		l.len = strcspn(path, "/");
		path += l.len;
		r = erofs_readdir(ctx, &cur, lookup_cb, &l);
		if (r < 0)
			return r;
		if (!l.found)
			return -ENOENT;
		r = erofs_inode_read(ctx, l.nid, &cur);
	}
	if (r >= 0)
		*ret = cur;
	return r < 0 ? r : 0;
}

int erofs_read_symlink(struct erofs_ctx *ctx, struct erofs_inode *vi, char *buf, size_t len)
{
	int r;

	if (!S_ISLNK(vi->mode))
		return -EINVAL;
	if (vi->size >= len || vi->size >= EROFS_MAX_SYMLINK)
		return -ENAMETOOLONG;
	r = erofs_read_data(ctx, vi, buf, vi->size, 0);
	if (r < 0)
		return r;
	buf[vi->size] = 0;
	return (int)vi->size;
}
