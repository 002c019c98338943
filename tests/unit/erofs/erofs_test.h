/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Helpers shared by the erofs unit tests (static, header-only): load images, make a sparse
 * copy holding only the walk's extents, and dump a whole tree through the reader (names,
 * modes, owners, sizes, link counts, devices, symlink targets, xattrs) as text.
 */
#ifndef LAZYEROFS_TESTS_EROFS_TEST_H
#define LAZYEROFS_TESTS_EROFS_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "erofs/erofs.h"
#include "erofs/internal.h"
#include "util/buf.h"
#include "util/extents.h"

/* Finds one xattr by full name through erofs_listxattr. */
struct xfind {
	const char *name;
	char value[4096];
	size_t len;
	int found;
};

static inline int xfind_cb(void *opaque, const char *name, size_t namelen, const void *value,
			   size_t valuelen)
{
	struct xfind *x = opaque;

	if (strlen(x->name) == namelen && !memcmp(x->name, name, namelen)) {
		x->found++;
		x->len = valuelen;
		memcpy(x->value, value, valuelen < sizeof(x->value) ? valuelen : sizeof(x->value));
	}
	return 0;
}

/* Counts directory entries through erofs_readdir. */
static inline int count_cb(void *opaque, const struct erofs_dirent_view *de)
{
	(*(unsigned int *)opaque)++;
	return 0;
}

struct timage {
	uint8_t *buf;
	size_t len;
	struct erofs_io io;
};

static inline const char *fixtures_dir(void)
{
	const char *d = getenv("LAZYEROFS_FIXTURES");

	return d && *d ? d : "tests/fixtures";
}

static inline int timage_load_path(struct timage *t, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	memset(t, 0, sizeof(*t));
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -errno;
	}
	t->len = (size_t)st.st_size;
	t->buf = malloc(t->len ? t->len : 1);
	n = t->buf ? pread(fd, t->buf, t->len, 0) : -1;
	close(fd);
	if (n != (ssize_t)t->len)
		return -EIO;
	erofs_io_from_memory(&t->io, t->buf, t->len);
	return 0;
}

static inline int timage_load_fixture(struct timage *t, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s.erofs", fixtures_dir(), name);
	return timage_load_path(t, path);
}

static inline void timage_free(struct timage *t)
{
	free(t->buf);
	memset(t, 0, sizeof(*t));
}

/* A copy of the same size that holds only the given ranges (zeros elsewhere). */
static inline void timage_sparse(const struct timage *src, const struct util_extents *e,
				 struct timage *ret)
{
	ret->len = src->len;
	ret->buf = calloc(1, src->len ? src->len : 1);
	for (size_t i = 0; i < e->n; i++)
		memcpy(ret->buf + e->v[i].offset, src->buf + e->v[i].offset, e->v[i].length);
	erofs_io_from_memory(&ret->io, ret->buf, ret->len);
}

struct tdump {
	struct erofs_ctx *ctx;
	struct util_buf *out;
	struct tname {
		char name[EROFS_NAME_LEN + 1];
		uint64_t nid;
	} *names;
	size_t n, alloc;
};

static inline int tdump_collect(void *opaque, const struct erofs_dirent_view *de)
{
	struct tdump *d = opaque;

	if ((de->namelen == 1 && de->name[0] == '.') ||
	    (de->namelen == 2 && !memcmp(de->name, "..", 2)))
		return 0;
	if (d->n == d->alloc) {
		d->alloc = d->alloc ? d->alloc * 2 : 64;
		d->names = realloc(d->names, d->alloc * sizeof(*d->names));
	}
	memcpy(d->names[d->n].name, de->name, de->namelen);
	d->names[d->n].name[de->namelen] = 0;
	d->names[d->n].nid = de->nid;
	d->n++;
	return 0;
}

static inline int tdump_xattr(void *opaque, const char *name, size_t namelen, const void *value,
			      size_t valuelen)
{
	struct util_buf *out = opaque;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < valuelen; i++)
		h = (h ^ ((const uint8_t *)value)[i]) * 16777619u;
	return util_buf_appendf(out, "  xattr %.*s len=%zu fnv=%08x\n", (int)namelen, name,
				valuelen, h);
}

static inline int tdump_dir(struct erofs_ctx *ctx, struct util_buf *out, const char *path,
			    struct erofs_inode *dir, unsigned int depth)
{
	struct tdump d = { .ctx = ctx, .out = out };
	int r;

	if (depth > 64)
		return -ELOOP;
	r = erofs_readdir(ctx, dir, tdump_collect, &d);
	for (size_t i = 0; r >= 0 && i < d.n; i++) {
		struct erofs_inode vi;
		char child[8192];

		snprintf(child, sizeof(child), "%s/%s", path, d.names[i].name);
		r = erofs_inode_read(ctx, d.names[i].nid, &vi);
		if (r < 0)
			break;
		r = util_buf_appendf(out, "%s mode=%o uid=%u gid=%u nlink=%u size=%" PRIu64
				     " rdev=%u:%u\n",
				     child, vi.mode, vi.uid, vi.gid, vi.nlink,
				     S_ISDIR(vi.mode) ? 0 : vi.size, erofs_rdev_major(vi.rdev),
				     erofs_rdev_minor(vi.rdev));
		if (r >= 0)
			r = erofs_listxattr(ctx, &vi, tdump_xattr, out);
		if (r >= 0 && S_ISLNK(vi.mode)) {
			char target[EROFS_MAX_SYMLINK + 1];

			r = erofs_read_symlink(ctx, &vi, target, sizeof(target));
			if (r >= 0)
				r = util_buf_appendf(out, "  -> %s\n", target);
		}
		if (r >= 0 && S_ISDIR(vi.mode))
			r = tdump_dir(ctx, out, child, &vi, depth + 1);
	}
	free(d.names);
	return r < 0 ? r : 0;
}

/* Dump the whole tree of an image into *ret (malloc'ed text). */
static inline int tdump_image(const struct erofs_io *io, char **ret, struct util_error *err)
{
	struct util_buf out = UTIL_BUF_INIT(256u << 20);
	struct erofs_ctx ctx;
	struct erofs_inode root;
	int r = erofs_ctx_init(&ctx, io, err);

	if (r >= 0)
		r = erofs_inode_read(&ctx, ctx.root_nid, &root);
	if (r >= 0)
		r = erofs_listxattr(&ctx, &root, tdump_xattr, &out);
	if (r >= 0)
		r = tdump_dir(&ctx, &out, "", &root, 0);
	erofs_ctx_done(&ctx);
	if (r >= 0)
		r = util_buf_steal(&out, ret);
	util_buf_free(&out);
	return r;
}

#endif
