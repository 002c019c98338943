// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The metadata walk, in rounds: process locally until blocked, then fetch everything the
 * blocked work needs in one prefetch call, and repeat.
 *
 * The io knows which bytes are present (io->present: the one record of presence; everything
 * counts present without it). Every read goes through a checking wrapper: a read of bytes
 * that are not present fails (the work item is "blocked") and its missing blocks join the
 * next round's prefetch. Before reading, a work item also asks for what it knows it
 * will need (its inode record; a directory's or symlink's data ranges), so one round gets all
 * of them at once. A blocked item is simply tried again in the next round, from its last
 * completed step: the decoders have no side effects but the recorded ranges (a set) and a few
 * bounded counters, and a directory's entries are only parsed once all its data was read.
 *
 * Work items are small (nid, parent, depth, step); decoded inodes live only while one item
 * is processed, so a huge directory costs 24 bytes per pending entry, no more. Processing is
 * not level by level, so an inode's level is kept with it (the shallowest of its names).
 *
 * Everything read (or listed: an inode's indexes and tails) is recorded; the result is the
 * sorted, block-aligned, merged list of those ranges, the same whatever the order of
 * processing. What was listed but not read joins the next round, and a last round asks for
 * whatever of the exact result (before its merge bridges gaps) is still missing, so that all
 * of it was prefetched when the walk returns.
 *
 * A round lists exactly the missing blocks its work needs (aligned to the image's blocks,
 * merged only where they touch); how they become requests is the io's business. A prefetch
 * may return once part of a round arrived (the io fetches the rest meanwhile): what is still
 * absent stays pending and is listed again with the next round, and the work blocked on it
 * simply stays blocked; only the superblock's rounds and the last one wait for all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/files.h"
#include "erofs/internal.h"
#include "util/array.h"
#include "util/extents.h"
#include "util/u64map.h"

/* Bytes of an inode asked for before decoding it: the record itself (compact or extended);
 * what follows it (xattrs, map header) is nearly always in the same block. */
#define WALK_INODE_WANT 64u

/* Attempts at parsing the superblock (each may fetch more of the image's start). */
#define WALK_INIT_TRIES 8

/* visited map values: BFS depth (root = 1) and whether a dirent of type dir reached it */
#define DEPTH_MASK 0x7fffu
#define REACHED_AS_DIR 0x8000u

enum step {
	STEP_INODE, /* decode the record (count it) */
	STEP_XATTR, /* its xattr ibody: collect the shared xattrs */
	STEP_DATA,  /* directory entries / symlink target */
};

struct item {
	uint64_t nid;
	uint64_t parent; /* UINT64_MAX for the root */
	uint32_t depth;
	uint32_t step;
};

struct itemq {
	struct item *v;
	size_t head, n, alloc;
};

static int q_push(struct itemq *q, const struct item *it)
{
	if (q->n == q->alloc && q->head > q->n / 2) {
		memmove(q->v, q->v + q->head, (q->n - q->head) * sizeof(*q->v));
		q->n -= q->head;
		q->head = 0;
	}
	if (UTIL_ARRAY_RESERVE(q->v, q->alloc, q->n, 256) < 0)
		return -ENOMEM;
	q->v[q->n++] = *it;
	return 0;
}

struct walker {
	struct erofs_ctx *ctx;
	const struct erofs_io *io; /* the caller's */
	struct erofs_io wio;       /* the checking wrapper the decoders read through */
	const struct erofs_walk_opts *opts;
	struct erofs_walk_stats *st;
	uint64_t max_inodes;
	struct util_u64map visited; /* nid -> depth | REACHED_AS_DIR */
	struct util_u64map shared;  /* shared xattr ids seen */
	struct itemq ready, blocked;
	uint32_t *sids; /* shared xattrs still to note */
	size_t nsids, asids;
	unsigned int special; /* steps of the special inodes done */

	bool all_present;  /* no io->present: no rounds */
	unsigned int gbits; /* presence is asked per block of 1 << gbits bytes */

	struct util_extents round; /* what the blocked work needs */
	struct util_extents pending; /* asked for, still absent when the last prefetch returned */
	bool stuck;               /* the current attempt hit or asked for absent bytes */
	uint64_t blocked_reads;
	const struct item *cur;
	size_t rec_seen;      /* entries of the record already asked for */
	struct erofs_files *files; /* opts->on_file's state (files.c), or NULL */
};

static bool is_present(const struct walker *w, uint64_t off, uint64_t len)
{
	if (w->all_present || len == 0)
		return true;
	return w->io->present(w->io->ctx, off, len);
}

static bool gran_present(const struct walker *w, uint64_t g)
{
	uint64_t off = g << w->gbits;

	return is_present(w, off, MIN(UINT64_C(1) << w->gbits, w->io->size - off));
}

/* Ask for [off, off + len) (within the image): its absent blocks join the next round.
 * Returns 1 when all of it is present, 0 when not (the attempt is then blocked). */
static int want(struct walker *w, uint64_t off, uint64_t len)
{
	uint64_t g, last, run = UINT64_MAX;
	int r = 0;

	if (is_present(w, off, len))
		return 1;
	w->stuck = true;
	last = (off + len - 1) >> w->gbits;
	for (g = off >> w->gbits; g <= last && r >= 0; g++) {
		if (!gran_present(w, g)) {
			if (run == UINT64_MAX)
				run = g;
			continue;
		}
		if (run != UINT64_MAX)
			r = util_extents_add(&w->round, run << w->gbits,
					     MIN((g - run) << w->gbits, w->io->size - (run << w->gbits)));
		run = UINT64_MAX;
	}
	if (r >= 0 && run != UINT64_MAX)
		r = util_extents_add(&w->round, run << w->gbits,
				     MIN((last + 1 - run) << w->gbits, w->io->size - (run << w->gbits)));
	return r < 0 ? r : 0;
}

/* Ask for the first `len` bytes of inode nid's record (none for an inode in the metabox: the
 * metabox is loaded whole). Like want(): 1 present, 0 blocked, <0 error. */
static int want_inode(struct walker *w, uint64_t nid, uint64_t len)
{
	const struct erofs_ctx *ctx = w->ctx;
	uint64_t iloc = erofs_iloc(ctx, nid);

	if ((nid >> EROFS_DIRENT_NID_MBOX_BIT) || iloc >= ctx->io->size)
		return 1;
	return want(w, iloc, MIN(len, ctx->io->size - iloc));
}

static int want_cb(void *opaque, uint64_t off, uint64_t len)
{
	int r = want(opaque, off, len);

	return r < 0 ? r : 0;
}

/* io->read for the decoders: only bytes already present */
static int checked_read(void *opaque, void *buf, uint64_t len, uint64_t off)
{
	struct walker *w = opaque;
	int r;

	if (is_present(w, off, len))
		return w->io->read(w->io->ctx, buf, len, off);
	w->blocked_reads++;
	r = want(w, off, len);
	return r < 0 ? r : -EAGAIN;
}

/* Before an attempt; after a blocked one, forget the error text it left. */
static void attempt_begin(struct walker *w)
{
	w->stuck = false;
}

static bool attempt_blocked(struct walker *w)
{
	if (!w->stuck)
		return false;
	util_err_clear(w->ctx->err);
	return true;
}

/* Keep in w->pending the blocks of v that are still absent; whether any block of it is present
 * (progress: every block of v was absent when it was asked for). */
static int keep_absent(struct walker *w, const struct util_extents *v, bool *ret_progress)
{
	int r = 0;

	*ret_progress = false;
	w->pending.n = 0;
	for (size_t i = 0; i < v->n && r >= 0; i++) {
		const struct util_extent *e = &v->v[i];
		uint64_t g, last, run = UINT64_MAX;

		if (is_present(w, e->offset, e->length)) {
			*ret_progress = true;
			continue;
		}
		last = (e->offset + e->length - 1) >> w->gbits;
		for (g = e->offset >> w->gbits; g <= last + 1 && r >= 0; g++) {
			if (g <= last && !gran_present(w, g)) {
				if (run == UINT64_MAX)
					run = g;
				continue;
			}
			if (g <= last)
				*ret_progress = true;
			if (run != UINT64_MAX)
				r = util_extents_add(&w->pending, run << w->gbits,
						     MIN((g - run) << w->gbits,
							 w->io->size - (run << w->gbits)));
			run = UINT64_MAX;
		}
	}
	return r < 0 ? r : 0;
}

/* One round's prefetch: everything the blocked work asked for, with what earlier rounds asked
 * for and is still absent, block-aligned, merged where ranges touch (never across a gap:
 * grouping is the io's business). The io may return once part of it arrived (erofs.h); what
 * is still absent stays pending. With `all`, call again until nothing is pending: the walk's
 * start and end need every byte. */
static int flush(struct walker *w, bool all)
{
	const struct erofs_io *io = w->io;
	bool progress;
	int r;

	do {
		for (size_t i = 0; i < w->pending.n; i++) {
			r = util_extents_add(&w->round, w->pending.v[i].offset,
					     w->pending.v[i].length);
			if (r < 0)
				return r;
		}
		w->pending.n = 0;
		if (!w->round.n)
			return 0;
		util_extents_align(&w->round, UINT64_C(1) << w->gbits, io->size);
		util_extents_merge(&w->round, 0);
		w->st->prefetches++;
		r = io->prefetch(io->ctx, w->round.v, w->round.n);
		if (r < 0) {
			if (!util_err_has_msg(w->ctx->err))
				util_err_set(w->ctx->err, r, "prefetch of %zu ranges failed: %s",
					     w->round.n, strerror(-r));
			return r;
		}
		r = keep_absent(w, &w->round, &progress);
		if (r < 0)
			return r;
		/* A prefetch that made nothing present would come back forever. */
		if (!progress) {
			const struct util_extent *e = &w->pending.v[0];

			if (!util_err_has_msg(w->ctx->err))
				util_err_set(w->ctx->err, -EIO,
					     "prefetch left %llu+%llu absent (nothing arrived)",
					     (unsigned long long)e->offset,
					     (unsigned long long)e->length);
			return -EIO;
		}
		w->round.n = 0;
	} while (all && w->pending.n);
	return 0;
}

/* What was recorded since the last round (listed, not necessarily read: the rest of an
 * inode's record, indexes, tails) joins this round, since the caller needs all of the result
 * present; this catches up when the list was compacted meanwhile. */
static int want_recorded(struct walker *w)
{
	const struct util_extents *rec = w->ctx->record;
	size_t from;
	int r = 0;

	if (w->all_present || !rec)
		return 0;
	from = rec->n < w->rec_seen ? 0 : (w->rec_seen ? w->rec_seen - 1 : 0);
	for (size_t i = from; i < rec->n && r >= 0; i++) {
		uint64_t off = rec->v[i].offset, len = rec->v[i].length;

		if (off < w->io->size && len)
			r = want(w, off, MIN(len, w->io->size - off));
	}
	w->rec_seen = rec->n;
	return r < 0 ? r : 0;
}

/* Mark nid reached at `depth` by a dirent (as_dir: of type directory) or as the root. */
static int visit(struct walker *w, uint64_t nid, uint32_t depth, bool as_dir, bool *ret_new,
		 bool *ret_dir_conflict)
{
	uint64_t *val;
	int r = util_u64map_add(&w->visited, nid, ret_new, &val);

	if (r < 0)
		return r;
	*ret_dir_conflict = false;
	if (*ret_new) {
		if (w->visited.n > w->max_inodes) {
			if (!util_err_has_msg(w->ctx->err))
				util_err_set(w->ctx->err, -EFBIG, "more than %llu inodes (limit)",
					     (unsigned long long)w->max_inodes);
			return -EFBIG;
		}
		*val = MIN(depth, (uint32_t)DEPTH_MASK) | (as_dir ? REACHED_AS_DIR : 0);
		return 0;
	}
	/* reached again: a hardlink (its level is its shallowest), unless a directory */
	*ret_dir_conflict = as_dir || (*val & REACHED_AS_DIR);
	if (depth < (*val & DEPTH_MASK))
		*val = (*val & REACHED_AS_DIR) | depth;
	return 0;
}

static int child_cb(void *opaque, const struct erofs_dirent_view *de)
{
	struct walker *w = opaque;
	struct item it = { .nid = de->nid, .parent = w->cur->nid, .depth = w->cur->depth + 1 };
	bool fresh, conflict;
	int r;

	if ((de->namelen == 1 && de->name[0] == '.') ||
	    (de->namelen == 2 && de->name[0] == '.' && de->name[1] == '.'))
		return 0;
	w->st->dirents++;
	r = visit(w, de->nid, it.depth, de->file_type == EROFS_FT_DIR, &fresh, &conflict);
	if (r < 0)
		return r;
	if (conflict)
		return erofs_corrupt(w->ctx, "inode %llu: directory entry '%.*s' reaches "
				     "directory %llu a second time (cycle or hardlinked "
				     "directory)",
				     (unsigned long long)w->cur->nid, (int)de->namelen, de->name,
				     (unsigned long long)de->nid);
	if (!fresh)
		return 0; /* a hardlink: visited once */
	if (it.depth > EROFS_MAX_DEPTH)
		return erofs_corrupt(w->ctx, "directory tree deeper than %u levels",
				     EROFS_MAX_DEPTH);
	return q_push(&w->ready, &it);
}

static int add_shared(struct walker *w, const uint32_t *ids, unsigned int n)
{
	for (unsigned int k = 0; k < n; k++) {
		uint64_t *val;
		bool fresh;
		int r = util_u64map_add(&w->shared, ids[k], &fresh, &val);

		if (r < 0)
			return r;
		if (!fresh)
			continue;
		if (UTIL_ARRAY_RESERVE(w->sids, w->asids, w->nsids, 64) < 0)
			return -ENOMEM;
		w->sids[w->nsids++] = ids[k];
	}
	return 0;
}

static void count_mode(struct erofs_walk_stats *st, uint16_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		st->dirs++;
		break;
	case S_IFREG:
		st->regular++;
		break;
	case S_IFLNK:
		st->symlinks++;
		break;
	default:
		st->special++;
	}
}

/* A regular file's data ranges for opts->on_file; one whose mapping would read absent index
 * bytes is mapped after the last round instead (files_finish), so on_file adds no round. */
static int file_step(struct walker *w, struct erofs_inode *vi)
{
	int r = erofs_files_map(w->ctx, w->files, vi);

	if (attempt_blocked(w))
		return erofs_files_defer(w->files, vi->nid) < 0 ? -ENOMEM : 1;
	if (r > 0)
		r = erofs_files_emit(w->files, vi);
	return r < 0 ? r : 1;
}

/* The deferred files, once everything recorded is present; nothing more is recorded. */
static int files_finish(struct walker *w)
{
	struct erofs_ctx *ctx = w->ctx;
	struct util_extents *record = ctx->record;
	int r = 0;

	ctx->record = NULL;
	for (size_t i = 0; i < w->files->ndef && r >= 0; i++) {
		struct erofs_inode vi;

		attempt_begin(w);
		r = erofs_inode_load(ctx, w->files->deferred[i], &vi);
		if (r >= 0)
			r = erofs_files_map(ctx, w->files, &vi);
		if (attempt_blocked(w)) {
			w->files->skipped++; /* cannot happen: the last round made it present */
			r = 0;
		} else if (r > 0) {
			r = erofs_files_emit(w->files, &vi);
		}
	}
	ctx->record = record;
	w->round.n = 0;
	return r;
}

/* Advance one item as far as the present bytes allow: 1 = done, 0 = blocked, <0 = error. */
static int item_step(struct walker *w, struct item *it)
{
	struct erofs_ctx *ctx = w->ctx;
	struct util_extents *record = ctx->record;
	struct erofs_inode vi;
	int r;

	if (it->step == STEP_INODE) {
		r = want_inode(w, it->nid, WALK_INODE_WANT);
		if (r <= 0)
			return r;
	}
	/* decoded (and recorded) before when past the first step: decode again, quietly */
	if (it->step != STEP_INODE)
		ctx->record = NULL;
	r = erofs_inode_load(ctx, it->nid, &vi);
	ctx->record = record;
	if (attempt_blocked(w))
		return 0;
	if (r == -EUCLEAN && it->parent != UINT64_MAX && ctx->err &&
	    strlen(ctx->err->message) + 40 < sizeof(ctx->err->message)) {
		size_t used = strlen(ctx->err->message);

		snprintf(ctx->err->message + used, sizeof(ctx->err->message) - used,
			 " (entry of directory %llu)", (unsigned long long)it->parent);
	}
	if (r < 0)
		return r;
	if (it->step == STEP_INODE) {
		if (it->parent == UINT64_MAX && !S_ISDIR(vi.mode))
			return erofs_corrupt(ctx, "root inode %llu is not a directory",
					     (unsigned long long)vi.nid);
		count_mode(w->st, vi.mode);
		it->step = STEP_XATTR;
	}
	if (it->step == STEP_XATTR) {
		uint32_t ids[256];
		unsigned int n = 0;

		r = erofs_xattr_ibody_read(ctx, &vi, ids, &n, NULL, NULL);
		if (attempt_blocked(w))
			return 0;
		if (r >= 0)
			r = add_shared(w, ids, n);
		if (r < 0)
			return r;
		it->step = STEP_DATA;
	}
	if (!S_ISDIR(vi.mode) && !S_ISLNK(vi.mode))
		return S_ISREG(vi.mode) && w->files ? file_step(w, &vi) : 1;

	/* all of the data first (mapping it may read indexes), then the entries, at once */
	r = erofs_data_ranges(ctx, &vi, vi.size, 0, want_cb, w);
	if (attempt_blocked(w))
		return 0;
	if (r < 0)
		return r;
	if (S_ISDIR(vi.mode)) {
		w->cur = it;
		r = erofs_readdir(ctx, &vi, child_cb, w);
	} else {
		char target[EROFS_MAX_SYMLINK + 1];

		r = erofs_read_symlink(ctx, &vi, target, sizeof(target));
		if (r == -ENAMETOOLONG)
			r = erofs_corrupt(ctx, "inode %llu: symlink too long",
					  (unsigned long long)vi.nid);
	}
	/* the entries are parsed only after all the data was read: nothing seen yet */
	if (attempt_blocked(w))
		return 0;
	return r < 0 ? r : 1;
}

/* The metabox, the packed inode, the long xattr prefixes: 1 = done, 0 = blocked. */
static int special_step(struct walker *w)
{
	struct erofs_ctx *ctx = w->ctx;
	int r = 0;

	if (w->special == 0) {
		if (ctx->has_metabox && !ctx->mbox_loaded) {
			struct erofs_inode vi;

			/* its inode, then all of its data at once, then decompress it */
			r = want_inode(w, ctx->metabox_nid, ctx->bs);
			if (r <= 0)
				return r;
			r = erofs_inode_read(ctx, ctx->metabox_nid, &vi);
			if (r >= 0)
				r = erofs_inode_meta_extent(ctx, &vi);
			if (r >= 0 && vi.size <= EROFS_MAX_MBOX_SIZE)
				r = erofs_data_ranges(ctx, &vi, vi.size, 0, want_cb, w);
			if (!w->stuck && r >= 0)
				r = erofs_mbox_load(ctx);
			if (attempt_blocked(w))
				return 0;
			if (r < 0)
				return r;
		}
		w->special = 1;
	}
	if (w->special == 1) {
		if (ctx->packed_nid) {
			struct erofs_inode *packed;

			r = want_inode(w, ctx->packed_nid, WALK_INODE_WANT);
			if (r <= 0)
				return r;
			r = erofs_packed_inode(ctx, &packed);
			if (attempt_blocked(w))
				return 0;
			if (r < 0)
				return r;
		}
		w->special = 2;
	}
	if (w->special == 2) {
		r = erofs_prefixes_load(ctx);
		if (attempt_blocked(w))
			return 0;
		if (r < 0)
			return r;
		w->special = 3;
	}
	return 1;
}

/* Note the shared xattr entries whose headers are present; keep the others for later. */
static int shared_step(struct walker *w)
{
	struct erofs_ctx *ctx = w->ctx;
	size_t keep = 0;
	int r = 0;

	for (size_t i = 0; i < w->nsids && r >= 0; i++) {
		uint64_t off, len;

		attempt_begin(w);
		r = erofs_shared_xattr_extent(ctx, w->sids[i], &off, &len);
		if (attempt_blocked(w)) {
			w->sids[keep++] = w->sids[i];
			r = 0;
			continue;
		}
		if (r >= 0 && !ctx->xattr_in_mbox)
			r = erofs_note(ctx, off, len);
	}
	w->nsids = keep;
	return r;
}

/* Process locally until everything left is blocked (its needs are then in w->round). */
static int process(struct walker *w)
{
	int r;

	if (w->special < 3) {
		attempt_begin(w);
		r = special_step(w);
		if (r < 0)
			return r;
	}
	while (w->ready.head < w->ready.n) {
		struct item it = w->ready.v[w->ready.head++];

		attempt_begin(w);
		r = item_step(w, &it);
		if (r < 0)
			return r;
		if (r == 0) {
			r = q_push(&w->blocked, &it);
			if (r < 0)
				return r;
		}
	}
	w->ready.head = w->ready.n = 0;
	return shared_step(w);
}

static int walk_init(struct walker *w, struct erofs_ctx *ctx, struct util_error *err)
{
	int r = 0;

	/* the superblock (and what follows it) is read before the block size is known */
	for (unsigned int tries = 0;; tries++) {
		attempt_begin(w);
		r = erofs_ctx_init(ctx, &w->wio, err);
		if (!attempt_blocked(w))
			break;
		erofs_ctx_done(ctx);
		if (tries == WALK_INIT_TRIES) {
			r = erofs_corrupt(ctx, "superblock area not prefetched after %u rounds",
					  WALK_INIT_TRIES);
			break;
		}
		r = flush(w, true);
		if (r < 0)
			break;
	}
	w->blocked_reads = 0; /* ctx->reads counts the last attempt only */
	/* the superblock is known: from now on, ask per image block */
	if (r >= 0)
		w->gbits = ctx->blkbits;
	return r;
}

int erofs_walk(const struct erofs_io *io, const struct erofs_walk_opts *opts,
	       struct util_extents *ret, struct erofs_walk_stats *stats, struct util_error *err)
{
	struct erofs_walk_stats dummy;
	struct erofs_ctx ctx = {.io = io, .err = err};
	struct walker w = { .ctx = &ctx, .io = io, .opts = opts };
	struct util_extents rec;
	struct erofs_files files;
	uint64_t align;
	bool fresh, conflict;
	int r;

	if (!stats)
		stats = &dummy;
	*stats = (struct erofs_walk_stats){ 0 };
	w.st = stats;
	w.max_inodes = opts && opts->max_inodes ? opts->max_inodes : EROFS_DEFAULT_MAX_INODES;
	erofs_files_init(&files, opts);
	w.files = files.on_file ? &files : NULL;
	util_extents_init(&rec);
	util_extents_init(&w.round);
	util_extents_init(&w.pending);
	if (!io || !io->read)
		return -EINVAL;
	w.all_present = !io->present || !io->prefetch;
	w.gbits = 12; /* before the superblock is known */
	w.wio = (struct erofs_io){ .ctx = &w, .size = io->size, .read = checked_read };

	r = walk_init(&w, &ctx, err);
	ctx.record = &rec;
	if (r >= 0)
		r = erofs_ctx_note_super(&ctx);
	if (r >= 0)
		r = visit(&w, ctx.root_nid, 1, false, &fresh, &conflict);
	if (r >= 0)
		r = q_push(&w.ready, &(struct item){ .nid = ctx.root_nid, .parent = UINT64_MAX,
						      .depth = 1 });
	while (r >= 0) {
		struct itemq t;

		r = process(&w);
		if (r < 0 || (w.special == 3 && !w.blocked.n && !w.nsids))
			break;
		if (!w.round.n) {
			r = erofs_corrupt(&ctx, "metadata walk stalled with %zu items left",
					  w.blocked.n + w.nsids);
			break;
		}
		r = want_recorded(&w);
		if (r >= 0)
			r = flush(&w, false);
		t = w.ready;
		w.ready = w.blocked;
		w.blocked = t;
	}
	stats->inodes = w.visited.n;
	stats->reads = ctx.reads - w.blocked_reads;
	{
		uint64_t nid, val;
		size_t it = 0;

		while (util_u64map_next(&w.visited, &it, &nid, &val))
			stats->levels = MAX(stats->levels, (unsigned int)(val & DEPTH_MASK));
	}
	if (r >= 0) {
		align = opts && opts->align ? opts->align : 4096;
		if (align & (align - 1))
			align = 4096;
		util_extents_align(&rec, align, io->size);
		util_extents_merge(&rec, 0);
		/* a last round for what the rounds left out (listed, not read); not for the gaps
		 * the merge below bridges: nothing reads those */
		for (size_t i = 0; i < rec.n && r >= 0 && !w.all_present; i++)
			r = want(&w, rec.v[i].offset, rec.v[i].length);
		/* and the end waits for everything: nothing may be mounted with metadata absent */
		if (r >= 0)
			r = flush(&w, true);
		if (r >= 0 && w.files)
			r = files_finish(&w);
		stats->files = files.reported;
		stats->files_skipped = files.skipped;
		util_extents_merge(&rec, opts ? opts->merge_gap : 0);
		stats->meta_bytes = util_extents_total(&rec);
	}
	if (r >= 0) {
		util_extents_free(ret);
		*ret = rec;
		util_extents_init(&rec);
	}
	util_extents_free(&rec);
	util_extents_free(&w.round);
	util_extents_free(&w.pending);
	util_u64map_free(&w.visited);
	util_u64map_free(&w.shared);
	free(w.ready.v);
	free(w.blocked.v);
	free(w.sids);
	erofs_files_done(&files);
	erofs_ctx_done(&ctx);
	return r < 0 ? r : 0;
}
