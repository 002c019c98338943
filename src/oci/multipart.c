// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Streaming parser of a multipart/byteranges body (RFC 9110 14.6 / RFC 2046): the answer to
 * a request with several ranges. The body arrives in pieces split anywhere; part payloads are
 * counted by each part's Content-Range and passed to the callback straight from the input (no
 * copy) but for the last few bytes received, held until the next piece. A payload is searched
 * for the delimiter all the same: a part shorter than its Content-Range says has it inside,
 * and what follows (the next part's headers and bytes) would be passed on as this part's --
 * wrong bytes in the cache for good, where a failed request costs a retry. Framing lines are
 * bounded; anything unexpected is -EBADMSG.
 */
#include <errno.h>
#include <string.h>

#include "oci/parse.h"

enum {
	MP_PREAMBLE,
	MP_HEADERS,
	MP_DATA,
	MP_DATA_END, /* the CRLF that ends a payload */
	MP_AFTER_DATA,
	MP_END,
	MP_FAILED,
};

#define AFTER_DATA_MAX 256 /* blank framing bytes tolerated between a payload and a boundary */

int oci_multipart_init(struct oci_multipart *m, const char *boundary)
{
	size_t n = boundary ? strlen(boundary) : 0;

	memset(m, 0, sizeof(*m));
	if (n == 0 || n > OCI_BOUNDARY_MAX)
		return -EINVAL;
	m->boundary[0] = '-';
	m->boundary[1] = '-';
	memcpy(m->boundary + 2, boundary, n + 1);
	m->blen = n + 2;
	m->delim[0] = '\r';
	m->delim[1] = '\n';
	memcpy(m->delim + 2, m->boundary, m->blen + 1);
	m->dlen = m->blen + 2;
	m->state = MP_PREAMBLE;
	m->blob_total = UINT64_MAX;
	return 0;
}

/* 1: the delimiter line, 2: the close delimiter, 0: something else. Transport padding
 * (trailing spaces/tabs) is allowed after a delimiter. */
static int delimiter_kind(const struct oci_multipart *m, const char *l, size_t n)
{
	while (n && (l[n - 1] == ' ' || l[n - 1] == '\t'))
		n--;
	if (n < m->blen || memcmp(l, m->boundary, m->blen) != 0)
		return 0;
	if (n == m->blen)
		return 1;
	if (n == m->blen + 2 && l[m->blen] == '-' && l[m->blen + 1] == '-')
		return 2;
	return 0;
}

static int fail(struct oci_multipart *m)
{
	m->state = MP_FAILED;
	return -EBADMSG;
}

static int process_line(struct oci_multipart *m, const char *l, size_t n)
{
	const char *name, *value;
	size_t nl, vl;
	int k;

	switch (m->state) {
	case MP_PREAMBLE:
		k = delimiter_kind(m, l, n);
		if (k == 1) {
			m->state = MP_HEADERS;
			m->have_range = false;
			m->header_bytes = 0;
		} else if (k == 2) {
			m->state = MP_END;
		} else {
			m->preamble_bytes += n + 1;
			if (m->preamble_bytes > OCI_MULTIPART_PREAMBLE_MAX)
				return fail(m);
		}
		return 0;
	case MP_HEADERS:
		m->header_bytes += n + 1;
		if (m->header_bytes > OCI_MULTIPART_HEADERS_MAX)
			return fail(m);
		if (n == 0) {
			if (!m->have_range)
				return fail(m);
			m->offset = m->first;
			m->remaining = m->last - m->first + 1;
			m->parts++;
			m->state = MP_DATA;
			return 0;
		}
		if (oci_header_split(l, n, &name, &nl, &value, &vl) < 0)
			return fail(m);
		if (oci_span_eq(name, nl, "Content-Range")) {
			uint64_t f, la, t;

			if (m->have_range || oci_content_range_parse(value, vl, &f, &la, &t) < 0)
				return fail(m);
			/* Every part describes the same representation. */
			if (m->parts == 0 && m->blob_total == UINT64_MAX)
				m->blob_total = t;
			else if (t != m->blob_total)
				return fail(m);
			m->first = f;
			m->last = la;
			m->total = t;
			m->have_range = true;
		}
		return 0;
	case MP_AFTER_DATA:
		k = delimiter_kind(m, l, n);
		if (k == 1) {
			m->state = MP_HEADERS;
			m->have_range = false;
			m->header_bytes = 0;
			return 0;
		}
		if (k == 2) {
			m->state = MP_END;
			return 0;
		}
		/* Only the CRLF that ends a payload (and padding) may come before a delimiter. */
		for (size_t i = 0; i < n; i++)
			if (l[i] != ' ' && l[i] != '\t')
				return fail(m);
		m->header_bytes += n + 1;
		if (m->header_bytes > AFTER_DATA_MAX)
			return fail(m);
		return 0;
	default:
		return fail(m);
	}
}

/* The next n payload bytes of the current part (n <= remaining): -EBADMSG when the delimiter
 * is among them, or begins in the held bytes and ends among them; else all but the last
 * dlen - 1 bytes received so far are passed on, those held. */
static int payload(struct oci_multipart *m, const uint8_t *buf, size_t n, oci_part_fn fn, void *ctx)
{
	size_t keep = m->dlen - 1, head = n < keep ? n : keep, pass, from_hold;
	uint64_t at = m->offset - m->nhold; /* the first held byte's offset */
	uint8_t seam[2 * sizeof(m->hold)];
	int r;

	memcpy(seam, m->hold, m->nhold);
	memcpy(seam + m->nhold, buf, head);
	if (memmem(seam, m->nhold + head, m->delim, m->dlen) || memmem(buf, n, m->delim, m->dlen))
		return -EBADMSG;
	m->offset += n;
	m->remaining -= n;
	pass = m->nhold + n > keep ? m->nhold + n - keep : 0;
	from_hold = pass < m->nhold ? pass : m->nhold;
	if (from_hold) {
		r = fn(ctx, at, m->hold, from_hold);
		if (r < 0)
			return r;
		memmove(m->hold, m->hold + from_hold, m->nhold - from_hold);
		m->nhold -= from_hold;
		pass -= from_hold;
	}
	if (pass) {
		r = fn(ctx, at + from_hold, buf, pass);
		if (r < 0)
			return r;
	}
	memcpy(m->hold + m->nhold, buf + pass, n - pass);
	m->nhold += n - pass;
	return 0;
}

int oci_multipart_feed(struct oci_multipart *m, const uint8_t *buf, size_t len, oci_part_fn fn,
		       void *ctx)
{
	int r;

	while (len) {
		const uint8_t *nl;
		size_t take;
		bool cr;

		switch (m->state) {
		case MP_FAILED:
			return -EBADMSG;
		case MP_END:
			return 0; /* the epilogue is ignored */
		case MP_DATA:
			take = len < m->remaining ? len : (size_t)m->remaining;
			r = payload(m, buf, take, fn, ctx);
			if (r < 0) {
				m->state = MP_FAILED;
				return r;
			}
			buf += take;
			len -= take;
			if (m->remaining == 0)
				m->state = MP_DATA_END;
			continue;
		default:
			break;
		}
		nl = memchr(buf, '\n', len);
		take = nl ? (size_t)(nl - buf) : len;
		if (m->line_len + take > sizeof(m->line))
			return fail(m);
		memcpy(m->line + m->line_len, buf, take);
		m->line_len += take;
		if (!nl)
			return 0;
		buf += take + 1;
		len -= take + 1;
		take = m->line_len;
		m->line_len = 0;
		cr = take && m->line[take - 1] == '\r';
		if (cr)
			take--;
		if (m->state == MP_DATA_END) {
			/* exactly the CRLF that ends a payload: then its last bytes are right */
			if (take || !cr)
				return fail(m);
			r = m->nhold ? fn(ctx, m->offset - m->nhold, m->hold, m->nhold) : 0;
			m->nhold = 0;
			if (r < 0) {
				m->state = MP_FAILED;
				return r;
			}
			m->state = MP_AFTER_DATA;
			m->header_bytes = 0;
			continue;
		}
		r = process_line(m, m->line, take);
		if (r < 0)
			return r;
	}
	return 0;
}

int oci_multipart_finish(const struct oci_multipart *m)
{
	return m->state == MP_END ? 0 : -EBADMSG;
}
