// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Receiving range replies: classify a reply by its status and headers (one range, multipart,
 * the whole blob with 200, an error), check it belongs to the version resolved, and hand
 * each payload byte to the sink exactly once, in order within its range, counting what each
 * range has received so that a retry asks only for the rest.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "oci/reader.h"
#include "util/strutil.h"

/* ---- receiving ------------------------------------------------------------------------------ */

static void fail_cb(struct rreq *q, int r, bool retryable, const char *fmt, ...) _printf_(4, 5);
static void fail_cb(struct rreq *q, int r, bool retryable, const char *fmt, ...)
{
	va_list ap;

	q->fail = r;
	q->fail_retryable = retryable;
	va_start(ap, fmt);
	vsnprintf(q->fail_msg, sizeof(q->fail_msg), fmt, ap);
	va_end(ap);
}

/* Hand the part of [off, off + len) that each range expects next to the sink. */
static int deliver(struct rreq *q, uint64_t off, const uint8_t *data, size_t len)
{
	uint64_t end = off + len;

	for (size_t i = 0; i < q->n; i++) {
		struct rrange *g = &q->rg[i];
		uint64_t exp = g->off + g->done, stop;
		int k;

		if (g->done == g->len || exp < off || exp >= end)
			continue;
		stop = MIN(end, g->off + g->len);
		k = q->k->sink(q->k->ctx, exp, data + (exp - off), (size_t)(stop - exp));
		if (k < 0) {
			fail_cb(q, k, false, "the receiver of the data failed: %s", strerror(-k));
			q->sink_failed = true;
			return k;
		}
		g->done += stop - exp;
		q->progressed = true;
	}
	return 0;
}

static int part_cb(void *ctx, uint64_t offset, const uint8_t *data, size_t len)
{
	struct rreq *q = ctx;

	q->r->bytes += len;
	return deliver(q, offset, data, len);
}

/* URL sources: a reply for another version of the object. */
static bool stale_reply(struct rreq *q, uint64_t total)
{
	struct oci_client *c = q->r->c;
	const char *v = c->blob.validator;

	if (!c->ref->is_url)
		return false;
	if (total != UINT64_MAX && total != c->blob.size)
		return true;
	if (q->resp.etag[0] && (v[0] == '"' || util_startswith(v, "W/")) && strcmp(q->resp.etag, v))
		return true;
	if (q->resp.last_modified[0] && v[0] != '"' && !util_startswith(v, "W/") &&
	    strcmp(q->resp.last_modified, v))
		return true;
	return false;
}

static void classify(struct rreq *q)
{
	struct oci_client *c = q->r->c;
	struct oci_host *h = &c->hosts[q->host];
	long st = q->resp.status;

	/* Bytes a proxy compressed on the way (no Accept-Encoding is sent, but a hosts.toml
	 * header may ask for one) are not the blob's at the offsets they are labelled with; a
	 * server that does so does it again (-EMEDIUMTYPE: not retried for seconds). */
	if ((st == 200 || st == 206) && q->resp.content_encoding[0] &&
	    strcasecmp(q->resp.content_encoding, "identity") != 0) {
		fail_cb(q, -EMEDIUMTYPE, false,
			"the server sent the blob's bytes encoded (Content-Encoding: %.40s); "
			"they cannot be used",
			q->resp.content_encoding);
		return;
	}
	if (st == 206) {
		/* Ranges honoured (again: a pull-through cache that answered 200 while it had
		 * not cached the blob answers 206 once it has). */
		atomic_store(&h->ranges_ignored, false);
		char boundary[OCI_BOUNDARY_MAX + 1];
		uint64_t f, l, t;
		int k;

		k = oci_content_type_boundary(q->resp.content_type, strlen(q->resp.content_type),
					      boundary, sizeof(boundary));
		if (k == 0) {
			if (stale_reply(q, UINT64_MAX)) {
				fail_cb(q, -ESTALE, false, "the object changed on the server");
				return;
			}
			oci_multipart_init(&q->mp, boundary);
			if (c->blob.size)
				q->mp.blob_total = c->blob.size; /* each part's total must say so */
			q->mode = BODY_MULTI;
			return;
		}
		if (k != -ENOENT) {
			fail_cb(q, -EBADMSG, true, "multipart reply without a usable boundary");
			return;
		}
		if (oci_content_range_parse(q->resp.content_range, strlen(q->resp.content_range), &f,
					    &l, &t) < 0) {
			fail_cb(q, -EBADMSG, true, "HTTP 206 with a bad Content-Range '%.100s'",
				q->resp.content_range);
			return;
		}
		if (stale_reply(q, t)) {
			if (t != UINT64_MAX && t != c->blob.size)
				fail_cb(q, -ESTALE, false,
					"the object changed on the server (now %llu bytes)",
					(unsigned long long)t);
			else
				fail_cb(q, -ESTALE, false, "the object changed on the server");
			return;
		}
		if (t != UINT64_MAX && c->blob.size && t != c->blob.size) {
			fail_cb(q, -EBADMSG, false,
				"the server says the blob has %llu bytes, the manifest %llu",
				(unsigned long long)t, (unsigned long long)c->blob.size);
			return;
		}
		if (q->resp.has_content_length && q->resp.content_length != l - f + 1) {
			fail_cb(q, -EBADMSG, true,
				"HTTP 206 of %llu bytes for the Content-Range '%.100s'",
				(unsigned long long)q->resp.content_length, q->resp.content_range);
			return;
		}
		q->mode = BODY_SINGLE;
		q->pos = f;
		q->end = l + 1;
		return;
	}
	if (st == 200) {
		if (stale_reply(q, q->resp.has_content_length ? q->resp.content_length : UINT64_MAX)) {
			fail_cb(q, -ESTALE, false, "the object changed on the server");
			return;
		}
		/* Taken as the whole blob from its first byte only when it says it is: a login
		 * or error page sent with 200, or a slice without 206, would otherwise be
		 * written over the blob's first bytes. */
		if (!q->resp.has_content_length || q->resp.content_range[0] ||
		    (c->blob.size && q->resp.content_length != c->blob.size)) {
			fail_cb(
			    q, -EBADMSG, false,
			    "HTTP 200 to a range request that is not the whole blob (%s%llu bytes, "
			    "the blob %llu)",
			    q->resp.has_content_length ? "" : "no length; ",
			    (unsigned long long)q->resp.content_length,
			    (unsigned long long)c->blob.size);
			return;
		}
		atomic_store(&h->ranges_ignored, true);
		q->need_end = 0;
		for (size_t i = 0; i < q->n; i++)
			if (q->rg[i].done < q->rg[i].len)
				q->need_end = MAX(q->need_end, q->rg[i].off + q->rg[i].len);
		if (q->need_end > OCI_WHOLE_BODY_MAX) {
			fail_cb(q, -EMEDIUMTYPE, false,
				"the server ignores byte ranges (HTTP 200 with the whole blob): reading "
				"up to offset %llu would download that much for every read",
				(unsigned long long)q->need_end);
			return;
		}
		q->mode = BODY_WHOLE;
		q->pos = 0;
		return;
	}
	if ((st >= 300 && st < 400) || st == 401)
		q->mode = BODY_DISCARD;
	else
		q->mode = BODY_ERROR;
}

size_t oci_rreq_body_cb(char *p, size_t size, size_t nm, void *ud)
{
	struct rreq *q = ud;
	size_t len = size * nm;
	const uint8_t *data = (const uint8_t *)p;
	int k;

	if (q->mode == BODY_UNKNOWN)
		classify(q);
	if (q->fail)
		return 0;
	switch (q->mode) {
	case BODY_SINGLE:
		if (len > q->end - q->pos) {
			fail_cb(q, -EBADMSG, true, "more bytes than the Content-Range announced");
			return 0;
		}
		q->r->bytes += len;
		if (deliver(q, q->pos, data, len) < 0)
			return 0;
		q->pos += len;
		return len;
	case BODY_MULTI:
		k = oci_multipart_feed(&q->mp, data, len, part_cb, q);
		if (k < 0 && !q->fail)
			fail_cb(q, k, k == -EBADMSG, "malformed multipart/byteranges reply");
		return q->fail ? 0 : len;
	case BODY_WHOLE:
		q->r->bytes += len;
		if (deliver(q, q->pos, data, len) < 0)
			return 0;
		q->pos += len;
		if (q->pos >= q->need_end) {
			q->whole_done = true; /* the rest of the blob is not wanted */
			return 0;
		}
		return len;
	case BODY_ERROR:
		if (q->errbody.len < OCI_ERROR_BODY_MAX)
			util_buf_append(&q->errbody, p, MIN(len, OCI_ERROR_BODY_MAX - q->errbody.len));
		return len;
	default:
		return len;
	}
}
