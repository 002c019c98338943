// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The metadata walk: breadth-first from the root, each directory level in two prefetch
 * waves (the inode blocks of the level; then the directory blocks, symlink targets and
 * shared xattrs they point to), visiting every inode once. Everything read is recorded;
 * the result is the sorted, block-aligned, merged list of those ranges.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"
#include "util/extents.h"

/* Inodes decoded per prefetch wave at most (a level larger than this takes several). */
#define WALK_SLICE 65536u

/* Open-addressing set of 64-bit keys. */
struct u64set {
	uint64_t *v; /* key + 1; 0 = empty */
	size_t cap, n;
};

static int set_add(struct u64set *s, uint64_t key, bool *ret_new)
{
	size_t mask, i;

	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		uint64_t *nv = calloc(ncap, sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		for (size_t k = 0; k < s->cap; k++) {
			if (!s->v[k])
				continue;
			i = (size_t)((s->v[k] * 0x9E3779B97F4A7C15ull) >> 20) & (ncap - 1);
			while (nv[i])
				i = (i + 1) & (ncap - 1);
			nv[i] = s->v[k];
		}
		free(s->v);
		s->v = nv;
		s->cap = ncap;
	}
	mask = s->cap - 1;
	key += 1;
	i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
	while (s->v[i]) {
		if (s->v[i] == key) {
			*ret_new = false;
			return 0;
		}
		i = (i + 1) & mask;
	}
	s->v[i] = key;
	s->n++;
	*ret_new = true;
	return 0;
}

struct pending {
	uint64_t nid;
	uint64_t parent;
};

struct vec {
	struct pending *v;
	size_t n, alloc;
};

static int vec_push(struct vec *q, uint64_t nid, uint64_t parent)
{
	if (q->n == q->alloc) {
		size_t na = q->alloc ? q->alloc * 2 : 256;
		struct pending *nv = realloc(q->v, na * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		q->v = nv;
		q->alloc = na;
	}
	q->v[q->n++] = (struct pending){ nid, parent };
	return 0;
}

struct walker {
	struct erofs_ctx *ctx;
	const struct erofs_walk_opts *opts;
	struct erofs_walk_stats *st;
	uint64_t max_inodes;
	struct u64set visited;
	struct u64set shared;
	struct vec next;
	uint64_t cur_dir;
	struct util_extents wave;
};

static int wave_add(void *opaque, uint64_t off, uint64_t len)
{
	struct walker *w = opaque;

	return util_extents_add(&w->wave, off, len) == -EOVERFLOW ? -EUCLEAN : 0;
}

static int wave_flush(struct walker *w)
{
	const struct erofs_io *io = w->ctx->io;
	int r = 0;

	if (w->wave.n && io->prefetch) {
		util_extents_align(&w->wave, w->ctx->bs, io->size);
		util_extents_merge(&w->wave, w->opts ? w->opts->merge_gap : 0);
		w->st->prefetches++;
		r = io->prefetch(io->ctx, w->wave.v, w->wave.n);
		if (r < 0 && w->ctx->err && w->ctx->errlen && !w->ctx->err[0])
			snprintf(w->ctx->err, w->ctx->errlen, "prefetch of %zu ranges failed: %s",
				 w->wave.n, strerror(-r));
	}
	w->wave.n = 0;
	return r;
}

static int visit(struct walker *w, uint64_t nid, bool *ret_new)
{
	int r = set_add(&w->visited, nid, ret_new);

	if (r < 0)
		return r;
	if (*ret_new && w->visited.n > w->max_inodes) {
		if (w->ctx->err && w->ctx->errlen && !w->ctx->err[0])
			snprintf(w->ctx->err, w->ctx->errlen, "more than %llu inodes (limit)",
				 (unsigned long long)w->max_inodes);
		return -EFBIG;
	}
	return 0;
}

static int child_cb(void *opaque, const struct erofs_dirent_view *de)
{
	struct walker *w = opaque;
	bool fresh;
	int r;

	if ((de->namelen == 1 && de->name[0] == '.') ||
	    (de->namelen == 2 && de->name[0] == '.' && de->name[1] == '.'))
		return 0;
	w->st->dirents++;
	r = visit(w, de->nid, &fresh);
	if (r < 0)
		return r;
	if (!fresh) {
		if (de->file_type == EROFS_FT_DIR)
			return erofs_corrupt(w->ctx, "inode %llu: directory entry '%.*s' reaches "
					     "directory %llu a second time (cycle or hardlinked "
					     "directory)",
					     (unsigned long long)w->cur_dir, (int)de->namelen,
					     de->name, (unsigned long long)de->nid);
		return 0; /* a hardlink: visited once */
	}
	return vec_push(&w->next, de->nid, w->cur_dir);
}

static int do_level(struct walker *w, struct pending *lv, size_t count)
{
	struct erofs_ctx *ctx = w->ctx;
	struct erofs_inode *inodes;
	uint32_t *sids = NULL;
	size_t nsids = 0, asids = 0;
	int r = 0;

	inodes = calloc(count ? count : 1, sizeof(*inodes));
	if (!inodes)
		return -ENOMEM;

	/* wave 1: the blocks holding this level's inode records */
	for (size_t i = 0; i < count && r >= 0; i++) {
		uint64_t iloc = erofs_iloc(ctx, lv[i].nid);

		if (!(lv[i].nid >> EROFS_DIRENT_NID_MBOX_BIT) && iloc < ctx->io->size)
			r = wave_add(w, iloc, MIN((uint64_t)ctx->bs, ctx->io->size - iloc));
	}
	if (r >= 0)
		r = wave_flush(w);

	/* decode the inodes; note their metadata; collect shared xattrs */
	for (size_t i = 0; i < count && r >= 0; i++) {
		struct erofs_inode *vi = &inodes[i];
		uint32_t ids[256];
		unsigned int n;

		r = erofs_inode_load(ctx, lv[i].nid, vi);
		if (r == -EUCLEAN && lv[i].parent != UINT64_MAX && ctx->err &&
		    strlen(ctx->err) + 40 < ctx->errlen)
			snprintf(ctx->err + strlen(ctx->err), ctx->errlen - strlen(ctx->err),
				 " (entry of directory %llu)", (unsigned long long)lv[i].parent);
		if (r < 0)
			break;
		if (lv[i].parent == UINT64_MAX && !S_ISDIR(vi->mode)) {
			r = erofs_corrupt(ctx, "root inode %llu is not a directory",
					  (unsigned long long)vi->nid);
			break;
		}
		switch (vi->mode & S_IFMT) {
		case S_IFDIR:
			w->st->dirs++;
			break;
		case S_IFREG:
			w->st->regular++;
			break;
		case S_IFLNK:
			w->st->symlinks++;
			break;
		default:
			w->st->special++;
		}
		r = erofs_xattr_ibody_read(w->ctx, vi, ids, &n, NULL, NULL);
		for (unsigned int k = 0; k < n && r >= 0; k++) {
			bool fresh;

			r = set_add(&w->shared, ids[k], &fresh);
			if (r < 0 || !fresh)
				continue;
			if (nsids == asids) {
				size_t na = asids ? asids * 2 : 64;
				uint32_t *nv = realloc(sids, na * sizeof(*nv));

				if (!nv) {
					r = -ENOMEM;
					break;
				}
				sids = nv;
				asids = na;
			}
			sids[nsids++] = ids[k];
		}
		if (r >= 0 && (S_ISDIR(vi->mode) || S_ISLNK(vi->mode)))
			r = erofs_data_ranges(ctx, vi, vi->size, 0, wave_add, w);
	}

	/* wave 2: directory blocks, symlink targets, shared xattr entries */
	for (size_t i = 0; i < nsids && r >= 0; i++) {
		uint64_t off = ctx->xattr_base + (uint64_t)sids[i] * 4;

		if (!ctx->xattr_in_mbox && off < ctx->io->size)
			r = wave_add(w, off, MIN((uint64_t)ctx->bs, ctx->io->size - off));
	}
	if (r >= 0)
		r = wave_flush(w);
	for (size_t i = 0; i < nsids && r >= 0; i++) {
		uint64_t off, len;

		r = erofs_shared_xattr_extent(ctx, sids[i], &off, &len);
		if (r >= 0 && !ctx->xattr_in_mbox)
			r = erofs_note(ctx, off, len);
	}
	for (size_t i = 0; i < count && r >= 0; i++) {
		struct erofs_inode *vi = &inodes[i];

		if (S_ISDIR(vi->mode)) {
			w->cur_dir = vi->nid;
			r = erofs_readdir(ctx, vi, child_cb, w);
		} else if (S_ISLNK(vi->mode)) {
			char target[EROFS_MAX_SYMLINK + 1];

			r = erofs_read_symlink(ctx, vi, target, sizeof(target));
			if (r == -ENAMETOOLONG)
				r = erofs_corrupt(ctx, "inode %llu: symlink too long",
						  (unsigned long long)vi->nid);
		}
	}
	free(sids);
	free(inodes);
	return r < 0 ? r : 0;
}

static int walk_special(struct walker *w)
{
	struct erofs_ctx *ctx = w->ctx;
	struct erofs_inode *packed;
	int r = 0;

	if (ctx->has_metabox) {
		struct erofs_inode vi;

		/* the metabox inode, then everything it holds (all of it is metadata) */
		uint64_t iloc = erofs_iloc(ctx, ctx->metabox_nid);

		if (iloc < ctx->io->size)
			r = wave_add(w, iloc, MIN((uint64_t)ctx->bs, ctx->io->size - iloc));
		if (r >= 0)
			r = wave_flush(w);
		if (r >= 0)
			r = erofs_inode_read(ctx, ctx->metabox_nid, &vi);
		if (r >= 0)
			r = erofs_inode_meta_extent(ctx, &vi);
		if (r >= 0 && vi.size <= EROFS_MAX_MBOX_SIZE)
			r = erofs_data_ranges(ctx, &vi, vi.size, 0, wave_add, w);
		if (r >= 0)
			r = wave_flush(w);
		if (r >= 0)
			r = erofs_mbox_load(ctx);
	}
	if (r >= 0 && ctx->packed_nid) {
		uint64_t iloc = erofs_iloc(ctx, ctx->packed_nid);

		if (iloc < ctx->io->size)
			r = wave_add(w, iloc, MIN((uint64_t)ctx->bs, ctx->io->size - iloc));
		if (r >= 0)
			r = wave_flush(w);
		if (r >= 0)
			r = erofs_packed_inode(ctx, &packed);
	}
	if (r >= 0)
		r = erofs_prefixes_load(ctx);
	return r;
}

int erofs_walk(const struct erofs_io *io, const struct erofs_walk_opts *opts,
	       struct util_extents *ret, struct erofs_walk_stats *stats, char *errbuf,
	       size_t errlen)
{
	struct erofs_walk_stats dummy;
	struct erofs_ctx ctx;
	struct walker w = { .ctx = &ctx, .opts = opts };
	struct util_extents rec;
	struct vec cur = { 0 };
	uint64_t align;
	bool fresh;
	int r;

	if (!stats)
		stats = &dummy;
	*stats = (struct erofs_walk_stats){ 0 };
	w.st = stats;
	w.max_inodes = opts && opts->max_inodes ? opts->max_inodes : EROFS_DEFAULT_MAX_INODES;
	util_extents_init(&rec);
	util_extents_init(&w.wave);

	r = erofs_ctx_init(&ctx, io, errbuf, errlen);
	ctx.record = &rec;
	if (r >= 0)
		r = erofs_ctx_note_super(&ctx);
	if (r >= 0)
		r = walk_special(&w);
	if (r >= 0)
		r = visit(&w, ctx.root_nid, &fresh);
	if (r >= 0)
		r = vec_push(&w.next, ctx.root_nid, UINT64_MAX);
	while (r >= 0 && w.next.n) {
		struct vec t = cur;

		if (++stats->levels > EROFS_MAX_DEPTH) {
			r = erofs_corrupt(&ctx, "directory tree deeper than %u levels",
					  EROFS_MAX_DEPTH);
			break;
		}
		cur = w.next;
		w.next = t;
		w.next.n = 0;
		/* a huge level goes in slices, so decoded inodes take bounded memory */
		for (size_t k = 0; r >= 0 && k < cur.n; k += WALK_SLICE)
			r = do_level(&w, cur.v + k, MIN(cur.n - k, (size_t)WALK_SLICE));
	}
	stats->inodes = w.visited.n;
	stats->reads = ctx.reads;
	if (r >= 0) {
		align = opts && opts->align ? opts->align : 4096;
		if (align & (align - 1))
			align = 4096;
		util_extents_align(&rec, align, io->size);
		util_extents_merge(&rec, opts ? opts->merge_gap : 0);
		stats->meta_bytes = util_extents_total(&rec);
		util_extents_free(ret);
		*ret = rec;
		util_extents_init(&rec);
	}
	util_extents_free(&rec);
	util_extents_free(&w.wave);
	free(w.visited.v);
	free(w.shared.v);
	free(w.next.v);
	free(cur.v);
	erofs_ctx_done(&ctx);
	return r < 0 ? r : 0;
}
