// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The file index (format and bounds in files.h): the mount's builder, which keeps its memory
 * bounded while the walk reports files, makes the ranges disjoint and encodes them; and the
 * daemon's pure parser, which trusts nothing in the bytes, with the lookups its scheduler
 * needs (binary searches over the ranges sorted by offset and over the files' first ranges).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/files.h"
#include "util/array.h"
#include "util/endian.h"
#include "util/macro.h"

/* Bytes before the ranges: the header and the per-file counts, padded to 8. */
static uint64_t ranges_at(uint64_t nfiles)
{
	return ROUND_UP(FETCH_FILES_HDR_SIZE + 4 * nfiles, 8);
}

/* ---- builder ---------------------------------------------------------------------------- */

struct bfile {
	uint64_t bytes;
	uint64_t first; /* into b->r */
	uint64_t n;
	uint64_t seq; /* order of addition: the file's number, before drops */
};

struct fetch_files_builder {
	uint64_t blob_size;
	size_t max_bytes;
	struct bfile *f;
	size_t nf, af;
	struct util_extent *r;
	size_t nr, ar;
	uint64_t threshold; /* files with more data bytes are left out (after a cap was hit) */
	uint64_t seq;
	uint64_t dropped, empty;
};

int fetch_files_builder_new(uint64_t blob_size, size_t max_bytes, struct fetch_files_builder **ret)
{
	struct fetch_files_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->blob_size = blob_size;
	b->max_bytes = max_bytes ? max_bytes : FETCH_FILES_MAX_BYTES;
	if (b->max_bytes < FETCH_FILES_HDR_SIZE)
		b->max_bytes = FETCH_FILES_HDR_SIZE;
	b->threshold = UINT64_MAX;
	*ret = b;
	return 0;
}

void fetch_files_builder_free(struct fetch_files_builder *b)
{
	if (!b)
		return;
	free(b->f);
	free(b->r);
	free(b);
}

static uint64_t encoded_size(size_t nf, size_t nr)
{
	return ranges_at(nf) + 16 * (uint64_t)nr;
}

static int by_bytes(const void *a, const void *b)
{
	const struct bfile *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int by_seq(const void *a, const void *b)
{
	const struct bfile *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Keep the smallest files whose encoding fits in `limit` bytes; later files larger than the
 * largest kept one are refused at once. */
static int cap(struct fetch_files_builder *b, uint64_t limit)
{
	struct bfile *s;
	struct util_extent *nr;
	size_t keep = 0, nranges = 0, out = 0;

	if (encoded_size(b->nf, b->nr) <= limit)
		return 0;
	s = malloc((b->nf ? b->nf : 1) * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(s, b->f, b->nf * sizeof(*s));
	qsort(s, b->nf, sizeof(*s), by_bytes);
	while (keep < b->nf && encoded_size(keep + 1, nranges + s[keep].n) <= limit) {
		nranges += s[keep].n;
		keep++;
	}
	b->dropped += b->nf - keep;
	/* a file as large as the first one left out is left out too, now and later */
	b->threshold = keep < b->nf ? s[keep].bytes - 1 : b->threshold;
	while (keep > 0 && s[keep - 1].bytes > b->threshold) {
		keep--;
		nranges -= s[keep].n;
		b->dropped++;
	}
	qsort(s, keep, sizeof(*s), by_seq);
	nr = malloc((nranges ? nranges : 1) * sizeof(*nr));
	if (!nr) {
		free(s);
		return -ENOMEM;
	}
	for (size_t i = 0; i < keep; i++) {
		memcpy(nr + out, b->r + s[i].first, s[i].n * sizeof(*nr));
		s[i].first = out;
		out += s[i].n;
	}
	free(b->f);
	free(b->r);
	b->f = s;
	b->nf = b->af = keep;
	b->r = nr;
	b->nr = b->ar = nranges;
	return 0;
}

int fetch_files_builder_add(struct fetch_files_builder *b, const struct util_extent *v, size_t n)
{
	uint64_t bytes = 0;
	int r;

	for (size_t i = 0; i < n; i++)
		if (!v[i].length || !util_range_within(v[i].offset, v[i].length, b->blob_size) ||
		    util_add_overflow_u64(bytes, v[i].length, &bytes))
			return -EINVAL;
	b->seq++;
	if (n == 0) {
		b->empty++;
		return 0;
	}
	if (bytes > b->threshold || encoded_size(1, n) > b->max_bytes) {
		b->dropped++;
		return 0;
	}
	if (UTIL_ARRAY_RESERVE(b->f, b->af, b->nf, 256) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (UTIL_ARRAY_RESERVE(b->r, b->ar, b->nr + i, 1024) < 0)
			return -ENOMEM;
		b->r[b->nr + i] = v[i];
	}
	b->f[b->nf++] = (struct bfile){.bytes = bytes, .first = b->nr, .n = n, .seq = b->seq};
	b->nr += n;
	/* memory: collect up to twice the cap, then keep the smallest files within it */
	if (encoded_size(b->nf, b->nr) > 2 * (uint64_t)b->max_bytes) {
		r = cap(b, b->max_bytes);
		if (r < 0)
			return r;
	}
	return 0;
}

static int by_offset(const void *a, const void *b, void *opaque)
{
	const struct util_extent *r = opaque;
	const uint32_t *x = a, *y = b;

	if (r[*x].offset != r[*y].offset)
		return r[*x].offset < r[*y].offset ? -1 : 1;
	return *x < *y ? -1 : *x > *y;
}

/* Make the ranges disjoint: a byte held by several files' ranges stays with the first of them
 * (in offset order, then file order); a range that loses its start keeps the rest. */
static int trim(struct fetch_files_builder *b, struct fetch_files_build_stats *st)
{
	uint32_t *o = malloc((b->nr ? b->nr : 1) * sizeof(*o));
	uint64_t covered = 0;
	size_t nf = 0, nr = 0;

	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < b->nr; i++)
		o[i] = (uint32_t)i;
	qsort_r(o, b->nr, sizeof(*o), by_offset, b->r);
	for (size_t k = 0; k < b->nr; k++) {
		struct util_extent *e = &b->r[o[k]];
		uint64_t end = e->offset + e->length;

		if (k && e->offset < covered) {
			uint64_t cut = MIN(end, covered) - e->offset;

			st->trimmed_bytes += cut;
			e->offset += cut;
			e->length -= cut;
		}
		covered = k ? MAX(covered, end) : end;
	}
	free(o);
	/* then each file's ranges again: without the empty ones, adjacent ones merged */
	for (size_t i = 0; i < b->nf; i++) {
		struct bfile f = b->f[i];
		size_t first = nr;

		f.bytes = 0;
		for (size_t k = f.first; k < f.first + f.n; k++) {
			struct util_extent e = b->r[k];

			if (!e.length)
				continue;
			f.bytes += e.length;
			if (nr > first && b->r[nr - 1].offset + b->r[nr - 1].length == e.offset)
				b->r[nr - 1].length += e.length;
			else
				b->r[nr++] = e;
		}
		if (nr == first) {
			b->empty++;
			continue;
		}
		f.first = first;
		f.n = nr - first;
		b->f[nf++] = f;
	}
	b->nf = nf;
	b->nr = nr;
	return 0;
}

int fetch_files_builder_finish(struct fetch_files_builder *b, uint8_t **ret_buf, size_t *ret_len,
			       struct fetch_files_build_stats *ret_stats)
{
	struct fetch_files_build_stats st = {0};
	uint64_t len, at;
	uint8_t *buf;
	int r;

	if (b->nr > UINT32_MAX || b->nf > UINT32_MAX)
		return -EFBIG;
	r = trim(b, &st);
	if (r >= 0)
		r = cap(b, b->max_bytes);
	if (r < 0)
		return r;
	len = encoded_size(b->nf, b->nr);
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	util_put_le(buf, FETCH_FILES_MAGIC, 4);
	util_put_le(buf + 4, FETCH_FILES_VERSION, 2);
	util_put_le(buf + 6, FETCH_FILES_HDR_SIZE, 2);
	util_put_le(buf + 8, b->blob_size, 8);
	util_put_le(buf + 16, b->nf, 4);
	util_put_le(buf + 20, b->nr, 4);
	for (size_t i = 0; i < b->nf; i++)
		util_put_le(buf + FETCH_FILES_HDR_SIZE + 4 * i, b->f[i].n, 4);
	at = ranges_at(b->nf);
	for (size_t i = 0; i < b->nf; i++)
		for (size_t k = b->f[i].first; k < b->f[i].first + b->f[i].n; k++) {
			util_put_le(buf + at, b->r[k].offset, 8);
			util_put_le(buf + at + 8, b->r[k].length, 8);
			at += 16;
		}
	st.files = b->nf;
	st.ranges = b->nr;
	st.dropped_files = b->dropped;
	st.empty_files = b->empty;
	if (ret_stats)
		*ret_stats = st;
	*ret_buf = buf;
	*ret_len = (size_t)len;
	return 0;
}

/* ---- parser and queries ------------------------------------------------------------------ */

struct fetch_files {
	uint32_t nfiles, nranges;
	uint32_t *first;       /* nfiles + 1: file i has ranges [first[i], first[i + 1]) */
	struct util_extent *r; /* every file's ranges, file 0's first, each in file order */
	uint64_t *cum;	       /* nranges + 1: data bytes in the ranges before r[k] */
	uint32_t *order;       /* indexes of r by offset */
};

void fetch_files_free(struct fetch_files *f)
{
	if (!f)
		return;
	free(f->first);
	free(f->r);
	free(f->cum);
	free(f->order);
	free(f);
}

static int bad(struct util_error *err, const char *fmt, ...) _printf_(2, 3);

static int bad(struct util_error *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	util_err_vset(err, -EBADMSG, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

int fetch_files_parse(const void *buf, size_t len, uint64_t blob_size, struct fetch_files **ret,
		      struct util_error *err)
{
	const uint8_t *p = buf;
	struct fetch_files *f;
	uint64_t nfiles, nranges, at, sum = 0;
	int r = 0;

	if (len > FETCH_FILES_MAX_BYTES) {
		return util_err_set(err, -EFBIG, "file index of %zu bytes (limit %u)", len,
				    FETCH_FILES_MAX_BYTES);
	}
	if (len < FETCH_FILES_HDR_SIZE || util_get_le(p, 4) != FETCH_FILES_MAGIC)
		return bad(err, "not a file index (no magic)");
	if (util_get_le(p + 4, 2) != FETCH_FILES_VERSION || util_get_le(p + 6, 2) != FETCH_FILES_HDR_SIZE ||
	    util_get_le(p + 24, 8) != 0)
		return bad(err, "file index version %u (header %u) not understood",
			   (unsigned)util_get_le(p + 4, 2), (unsigned)util_get_le(p + 6, 2));
	if (util_get_le(p + 8, 8) != blob_size)
		return bad(err, "file index of a blob of %llu bytes, not %llu",
			   (unsigned long long)util_get_le(p + 8, 8), (unsigned long long)blob_size);
	nfiles = util_get_le(p + 16, 4);
	nranges = util_get_le(p + 20, 4);
	/* both at most a few hundred thousands here, so none of this can overflow */
	if (nfiles > nranges || encoded_size(nfiles, nranges) != len)
		return bad(err, "file index of %llu files and %llu ranges has %zu bytes, not %llu",
			   (unsigned long long)nfiles, (unsigned long long)nranges, len,
			   (unsigned long long)encoded_size(nfiles, nranges));
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->nfiles = (uint32_t)nfiles;
	f->nranges = (uint32_t)nranges;
	f->first = malloc((nfiles + 1) * sizeof(*f->first));
	f->r = malloc((nranges ? nranges : 1) * sizeof(*f->r));
	f->cum = malloc((nranges + 1) * sizeof(*f->cum));
	f->order = malloc((nranges ? nranges : 1) * sizeof(*f->order));
	if (!f->first || !f->r || !f->cum || !f->order) {
		fetch_files_free(f);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nfiles && r >= 0; i++) {
		uint64_t n = util_get_le(p + FETCH_FILES_HDR_SIZE + 4 * i, 4);

		f->first[i] = (uint32_t)sum;
		if (n == 0 || n > nranges - sum)
			r = bad(err, "file %llu of the index has %llu ranges",
				(unsigned long long)i, (unsigned long long)n);
		sum += n;
	}
	if (r >= 0 && sum != nranges)
		r = bad(err, "the index's files have %llu ranges, not %llu",
			(unsigned long long)sum, (unsigned long long)nranges);
	for (at = FETCH_FILES_HDR_SIZE + 4 * nfiles; r >= 0 && at < ranges_at(nfiles); at++)
		if (p[at])
			r = bad(err, "file index padding not zero");
	f->first[nfiles] = (uint32_t)nranges;
	at = ranges_at(nfiles);
	f->cum[0] = 0;
	for (uint64_t k = 0; k < nranges && r >= 0; k++, at += 16) {
		f->r[k].offset = util_get_le(p + at, 8);
		f->r[k].length = util_get_le(p + at + 8, 8);
		f->order[k] = (uint32_t)k;
		if (!f->r[k].length ||
		    !util_range_within(f->r[k].offset, f->r[k].length, blob_size))
			r = bad(err,
				"file index range %llu (%llu+%llu) is empty or outside the blob",
				(unsigned long long)k, (unsigned long long)f->r[k].offset,
				(unsigned long long)f->r[k].length);
	}
	if (r >= 0)
		qsort_r(f->order, nranges, sizeof(*f->order), by_offset, f->r);
	for (uint64_t k = 1; k < nranges && r >= 0; k++) {
		const struct util_extent *a = &f->r[f->order[k - 1]], *b = &f->r[f->order[k]];

		if (a->offset + a->length > b->offset)
			r = bad(err, "file index ranges overlap at blob offset %llu",
				(unsigned long long)b->offset);
	}
	/* disjoint and within the blob: the sums stay within the blob size */
	for (uint64_t k = 0; k < nranges && r >= 0; k++)
		f->cum[k + 1] = f->cum[k] + f->r[k].length;
	if (r < 0) {
		fetch_files_free(f);
		return r;
	}
	*ret = f;
	return 0;
}

uint32_t fetch_files_count(const struct fetch_files *f)
{
	return f ? f->nfiles : 0;
}

uint32_t fetch_files_nranges(const struct fetch_files *f)
{
	return f ? f->nranges : 0;
}

/* The file that range k belongs to: the last i with first[i] <= k. */
static uint32_t file_of(const struct fetch_files *f, uint32_t k)
{
	uint32_t lo = 0, hi = f->nfiles; /* first[lo] <= k < first[hi] */

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (f->first[mid] <= k)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* The range (index into r) holding off, or UINT32_MAX. */
static uint32_t range_at(const struct fetch_files *f, uint64_t off)
{
	uint32_t lo = 0, hi = f->nranges; /* the answer is below hi */
	const struct util_extent *e;

	if (!f->nranges || f->r[f->order[0]].offset > off)
		return UINT32_MAX;
	while (hi - lo > 1) { /* r[order[lo]].offset <= off */
		uint32_t mid = lo + (hi - lo) / 2;

		if (f->r[f->order[mid]].offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	e = &f->r[f->order[lo]];
	return off - e->offset < e->length ? f->order[lo] : UINT32_MAX;
}

int fetch_files_beside(const struct fetch_files *f, uint64_t off, bool after,
		       uint32_t *ret_file, const struct util_extent **ret_range)
{
	uint32_t lo = 0, hi = f ? f->nranges : 0, k;

	if (!f || !f->nranges)
		return -ENOENT;
	while (lo < hi) { /* the first range in offset order that starts at or after off */
		uint32_t mid = lo + (hi - lo) / 2;

		if (f->r[f->order[mid]].offset < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (after) {
		if (lo == f->nranges)
			return -ENOENT;
		k = f->order[lo];
	} else {
		if (lo == 0)
			return -ENOENT;
		k = f->order[lo - 1];
		if (f->r[k].offset + f->r[k].length > off)
			return -ENOENT; /* off is inside it */
	}
	*ret_file = file_of(f, k);
	*ret_range = &f->r[k];
	return 0;
}

int fetch_files_find(const struct fetch_files *f, uint64_t off, uint32_t *ret_file,
		     uint32_t *ret_range)
{
	uint32_t k = f ? range_at(f, off) : UINT32_MAX, file;

	if (k == UINT32_MAX)
		return -ENOENT;
	file = file_of(f, k);
	if (ret_file)
		*ret_file = file;
	if (ret_range)
		*ret_range = k - f->first[file];
	return 0;
}

const struct util_extent *fetch_files_ranges(const struct fetch_files *f, uint32_t file,
					     uint32_t *ret_n)
{
	if (!f || file >= f->nfiles) {
		*ret_n = 0;
		return NULL;
	}
	*ret_n = f->first[file + 1] - f->first[file];
	return f->r + f->first[file];
}

uint64_t fetch_files_data_bytes(const struct fetch_files *f, uint32_t file)
{
	if (!f || file >= f->nfiles)
		return 0;
	return f->cum[f->first[file + 1]] - f->cum[f->first[file]];
}

uint64_t fetch_files_data_end(const struct fetch_files *f, uint32_t file)
{
	const struct util_extent *e;

	if (!f || file >= f->nfiles)
		return 0;
	e = &f->r[f->first[file + 1] - 1];
	return e->offset + e->length;
}

int fetch_files_follow(const struct fetch_files *f, uint64_t off, uint64_t max_bytes,
		       struct util_extent *out, size_t max_out)
{
	uint32_t k = f ? range_at(f, off) : UINT32_MAX, last;
	uint64_t left = max_bytes;
	size_t n = 0;

	if (k == UINT32_MAX)
		return -ENOENT;
	last = f->first[file_of(f, k) + 1];
	for (; k < last && n < max_out && left > 0; k++) {
		uint64_t from = n ? f->r[k].offset : off;
		uint64_t len = MIN(f->r[k].offset + f->r[k].length - from, left);

		out[n++] = (struct util_extent){from, len};
		left -= len;
	}
	return (int)n;
}
