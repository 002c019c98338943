// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The data path: reading byte ranges of the resolved blob. A reader is an event-driven
 * transfer engine: one libcurl multi handle (its own kept-alive connections), any number of
 * reads submitted, up to `parallel` requests in flight over all of them, driven by one thread
 * through oci_reader_perform(). Scattered ranges travel several to a request (multipart/byteranges,
 * at most 64 a request, or in batch mode as many as a Range header of OCI_RANGE_HEADER_MAX
 * takes); large ones one to a request, in parallel. Every range keeps a count
 * of the bytes already handed to the sink, so whatever the server does (one part instead of
 * several, parts coalesced or missing, the whole blob with 200, a reset mid-body) each byte
 * reaches the sink exactly once, in order within its range, and a retry asks only for what
 * is still missing. Redirects to blob storage are followed here, without the registry's
 * Authorization, and the storage location is remembered for a while. With mirrors, each
 * request goes to the first host that may pull and is not resting; a mirror that fails
 * (unreachable, 404, an error, a reply that does not fit the blob) passes the request on to
 * the next host at once, for the bytes still missing, so the registry is the last word.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <time.h>

#include "oci/reader.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

int oci_reader_new(struct oci_client *c, struct oci_reader **ret)
{
	struct oci_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->c = c;
	r->pending_tail = &r->pending;
	r->multi = curl_multi_init();
	if (!r->multi) {
		free(r);
		return -ENOMEM;
	}
	oci_reader_set_parallel(r, READER_DEFAULT_PARALLEL);
	*ret = r;
	return 0;
}

static void rreq_free(struct rreq *q);
static void read_end(struct oci_read *k, int result, bool call);

void oci_reader_free(struct oci_reader *r)
{
	if (!r)
		return;
	while (r->reads)
		read_end(r->reads, -ECANCELED, false);
	for (size_t i = 0; i < READER_MAX_PARALLEL; i++)
		if (r->easy[i])
			curl_easy_cleanup(r->easy[i]);
	curl_multi_cleanup(r->multi);
	free(r->loc_url);
	free(r);
}

void oci_reader_set_parallel(struct oci_reader *r, unsigned n)
{
	r->parallel = n < 1 ? 1 : n > READER_MAX_PARALLEL ? READER_MAX_PARALLEL : n;
	/* Keep a connection per request in flight alive between requests. */
	curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, (long)r->parallel * 2);
}

void oci_reader_set_host_connections(struct oci_reader *r, unsigned n)
{
	curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)n);
}

void oci_reader_set_round_cb(struct oci_reader *r, void (*fn)(void *ctx), void *ctx)
{
	r->round_cb = fn;
	r->round_ctx = ctx;
}

void oci_reader_wakeup(struct oci_reader *r)
{
	curl_multi_wakeup(r->multi);
}

unsigned oci_reader_reads(const struct oci_reader *r)
{
	return r->nreads;
}

static size_t digits(uint64_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

size_t oci_range_spec_len(uint64_t off, uint64_t len)
{
	uint64_t last = len ? off + len - 1 : off;

	return digits(off) + 1 + digits(last) + 1; /* "a-b," */
}

void oci_reader_stats(const struct oci_reader *r, uint64_t *requests, uint64_t *bytes)
{
	if (requests)
		*requests = r->requests;
	if (bytes)
		*bytes = r->bytes;
}

static void rreq_free(struct rreq *q)
{
	if (!q)
		return;
	curl_slist_free_all(q->hdrs);
	util_buf_free(&q->errbody);
	free(q->url);
	free(q);
}

static struct rreq *rreq_new(struct oci_read *k, struct rrange *rg, size_t n)
{
	struct rreq *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->r = k->r;
	q->k = k;
	q->rg = rg;
	q->n = n;
	q->slot = -1;
	util_buf_init(&q->errbody, OCI_ERROR_BODY_MAX);
	return q;
}

size_t oci_rreq_remaining(const struct rreq *q)
{
	size_t k = 0;

	for (size_t i = 0; i < q->n; i++)
		k += q->rg[i].done < q->rg[i].len;
	return k;
}
/* ---- sending -------------------------------------------------------------------------------- */

static const char *blob_url_now(struct rreq *q)
{
	struct oci_reader *r = q->r;

	if (q->url)
		return q->url;
	if (r->loc_url && r->loc_host == q->host && util_now_ms() < r->loc_expires) {
		q->from_cache = true;
		q->storage = true;
		return r->loc_url;
	}
	q->from_cache = false;
	q->storage = r->c->ref->is_url;
	return r->c->hosts[q->host].blob_url;
}

static int start(struct rreq *q)
{
	struct oci_reader *r = q->r;
	struct oci_read *kr = q->k;
	struct util_error *err = &kr->err;
	struct oci_client *c = r->c;
	struct oci_host *h = &c->hosts[q->host];
	struct util_buf range = UTIL_BUF_INIT(64 * 1024);
	const char *url = blob_url_now(q);
	char *auth = NULL;
	CURL *e;
	int slot = -1, k;

	for (unsigned i = 0; i < r->parallel; i++)
		if (!r->busy[i]) {
			slot = (int)i;
			break;
		}
	if (slot < 0)
		return -EBUSY;
	if (!r->easy[slot] && !(r->easy[slot] = curl_easy_init()))
		return -ENOMEM;
	e = r->easy[slot];

	/* The ranges still missing; against a server known to ignore ranges, one span. */
	q->asked_multi = oci_rreq_remaining(q) > 1;
	if (atomic_load(&h->ranges_ignored) && q->asked_multi) {
		uint64_t lo = UINT64_MAX, hi = 0;

		for (size_t i = 0; i < q->n; i++)
			if (q->rg[i].done < q->rg[i].len) {
				lo = MIN(lo, q->rg[i].off + q->rg[i].done);
				hi = MAX(hi, q->rg[i].off + q->rg[i].len - 1);
			}
		k = util_buf_appendf(&range, "Range: bytes=%llu-%llu", (unsigned long long)lo,
				     (unsigned long long)hi);
	} else {
		k = util_buf_appendf(&range, "Range: bytes=");
		for (size_t i = 0, first = 1; i < q->n && k == 0; i++) {
			const struct rrange *g = &q->rg[i];

			if (g->done == g->len)
				continue;
			k = util_buf_appendf(&range, "%s%llu-%llu", first ? "" : ",",
					     (unsigned long long)(g->off + g->done),
					     (unsigned long long)(g->off + g->len - 1));
			first = 0;
		}
	}
	curl_slist_free_all(q->hdrs);
	q->hdrs = NULL;
	if (k < 0 || !oci_slist_add(&q->hdrs, "%s", (char *)range.data)) {
		util_buf_free(&range);
		return -ENOMEM;
	}
	util_buf_free(&range);
	if (!q->storage && !c->ref->is_url) {
		k = oci_auth_header(c, h, false, oci_host_deadline(h, kr->deadline), &auth, &q->gen,
				    err);
		if (k < 0)
			return k;
		if (auth) {
			bool ok = oci_slist_add(&q->hdrs, "%s", auth);

			explicit_bzero(auth, strlen(auth));
			free(auth);
			if (!ok)
				return -ENOMEM;
		}
		for (struct curl_slist *l = h->headers; l; l = l->next)
			if (!oci_slist_add(&q->hdrs, "%s", l->data))
				return -ENOMEM;
	}
	if ((c->cond_match && !oci_slist_add(&q->hdrs, "%s", c->cond_match)) ||
	    (c->cond_range && !oci_slist_add(&q->hdrs, "%s", c->cond_range)))
		return -ENOMEM;

	/* A handle goes to several hosts in its life (mirrors, the registry): nothing of the
	 * last one's (its proxy, its CA) may stay. */
	curl_easy_reset(e);
	oci_easy_setup(c, h, e, oci_host_deadline(h, kr->deadline));
	/* Blob bytes go over HTTP/1.1, one connection per transfer in flight: measured against
	 * the distribution registry over TLS on loopback, HTTP/2 (one TCP connection, 16 KiB
	 * frames, flow control) moved 16 MiB ranges at 220-280 MiB/s where HTTP/1.1 did 300-350,
	 * and multiplexing several ranges made it slower still. Control requests keep HTTP/2;
	 * LAZYEROFS_HTTP2=1 puts the data on HTTP/2 as well. */
	if (!c->data_http2)
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	/* Receive buffers stay within a fixed budget however many requests are in flight: the
	 * first few slots (a sequential reader's few large transfers land there: start() takes
	 * the lowest free slot) get a large buffer, fewer system calls per byte; the others a
	 * small one. 8 x 512 KiB + 248 x 64 KiB at most (and only while their transfers run:
	 * libcurl frees the buffer when a transfer ends). */
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE,
			 (long)(slot < READER_BIG_BUFFERS ? OCI_RECV_BUFFER : READER_SMALL_BUFFER));
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &q->resp);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, oci_rreq_body_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(e, CURLOPT_PRIVATE, q);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
	q->errbuf[0] = 0;
	oci_resp_reset(&q->resp);
	q->mode = BODY_UNKNOWN;
	q->pos = q->end = q->need_end = 0;
	q->whole_done = false;
	q->fail = 0;
	q->fail_retryable = false;
	q->fail_msg[0] = 0;
	q->progressed = false;
	util_buf_reset(&q->errbody);
	if (curl_multi_add_handle(r->multi, e) != CURLM_OK)
		return -ENOMEM;
	r->busy[slot] = q;
	q->slot = slot;
	r->requests++;
	r->active++;
	kr->stats.requests++;
	kr->active++;
	return 0;
}

/* ---- reads and their requests ---------------------------------------------------------- */

/* Queue a request of read k: at the front (a retry or a continuation goes before what was
 * queued after it) or at the back. */
static void push_pending(struct oci_read *k, struct rreq *q)
{
	struct oci_reader *r = k->r;

	q->next = r->pending;
	r->pending = q;
	if (r->pending_tail == &r->pending)
		r->pending_tail = &q->next;
	k->waiting++;
}

static void append_pending(struct oci_read *k, struct rreq *q)
{
	struct oci_reader *r = k->r;

	q->next = NULL;
	*r->pending_tail = q;
	r->pending_tail = &q->next;
	k->waiting++;
}

/* Take q out of the waiting list (pp points at the link to it). */
static void unlink_pending(struct oci_reader *r, struct rreq **pp)
{
	struct rreq *q = *pp;

	*pp = q->next;
	if (r->pending_tail == &q->next)
		r->pending_tail = pp;
	q->next = NULL;
	q->k->waiting--;
}

/* Read k is over: stop its requests (in flight: curl closes those connections mid-body),
 * unlink it, tell its owner (unless call is false: the reader is being freed), free it. */
static void read_end(struct oci_read *k, int result, bool call)
{
	struct oci_reader *r = k->r;

	for (unsigned s = 0; s < READER_MAX_PARALLEL && k->active; s++)
		if (r->busy[s] && r->busy[s]->k == k) {
			curl_multi_remove_handle(r->multi, r->easy[s]);
			curl_easy_setopt(r->easy[s], CURLOPT_HTTPHEADER, NULL);
			rreq_free(r->busy[s]);
			r->busy[s] = NULL;
			r->active--;
			k->active--;
		}
	for (struct rreq **pp = &r->pending; *pp && k->waiting;) {
		if ((*pp)->k == k) {
			struct rreq *q = *pp;

			unlink_pending(r, pp);
			rreq_free(q);
		} else {
			pp = &(*pp)->next;
		}
	}
	for (struct oci_read **pk = &r->reads; *pk; pk = &(*pk)->next)
		if (*pk == k) {
			*pk = k->next;
			r->nreads--;
			break;
		}
	if (call && k->done) {
		r->ended++;
		k->done(k->ctx, result, result < 0 ? &k->err : NULL, &k->stats);
	}
	free(k->rg);
	free(k);
}

enum outcome { DONE, AGAIN, FATAL };

/* q failed at a mirror with code (why: its words): pass q on to the next host that may pull,
 * at once, for the ranges still missing. False when q's host is the registry itself. */
/* Send q to host i afresh. */
/* The request's next attempt goes to its host's blob URL, not where it was sent. */
static void to_host(struct rreq *q)
{
	free(q->url);
	q->url = NULL;
	q->storage = q->from_cache = false;
	q->hops = 0;
}

static void requeue_at(struct oci_read *k, struct rreq *q, size_t i)
{
	q->host = i;
	to_host(q);
	q->auth_rounds = 0;
	q->failures = q->no_progress = 0;
	q->not_before = 0;
	push_pending(k, q);
}

/* The host after a slow mirror failed too: back to the mirror, which was sending bytes, with
 * the time left (an air-gapped node whose registry cannot be reached). */
static bool back_to_mirror(struct oci_read *k, struct rreq *q)
{
	size_t i = q->back;

	if (!i || util_now_ms() >= k->deadline)
		return false;
	q->back = 0;
	log_debug("oci: %s: back to %s, the slow mirror", k->what, k->r->c->hosts[i - 1].shown);
	requeue_at(k, q, i - 1);
	return true;
}

static bool next_host(struct oci_read *k, struct rreq *q, int code, const char *why)
{
	struct oci_client *c = k->r->c;
	struct oci_host *h = &c->hosts[q->host];

	if (!h->mirror)
		return back_to_mirror(k, q);
	if (!oci_host_failed(c, h, code, why))
		return false;
	oci_fmt(k->last_error, sizeof(k->last_error), "%s: %s", h->shown, why);
	requeue_at(k, q, oci_host_next(c, q->host + 1, OCI_CAP_PULL));
	return true;
}

/* Decide what a finished transfer means: DONE (every range complete), AGAIN (q is queued to
 * continue, possibly split, or passed on to the next host) or FATAL (err filled, returned in
 * *ret). */
static enum outcome finish(struct oci_read *k, struct rreq *q, CURLcode rc, int *ret)
{
	struct oci_reader *r = k->r;
	struct oci_client *c = r->c;
	struct oci_host *h = &c->hosts[q->host];
	CURL *e = r->easy[q->slot];
	long st = q->resp.status;
	uint64_t wait = 0, ra;
	char range_shown[64];
	size_t left;

	curl_multi_remove_handle(r->multi, e);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	r->busy[q->slot] = NULL;
	q->slot = -1;
	k->active--;
	r->active--;
	left = oci_rreq_remaining(q);
	oci_fmt(range_shown, sizeof(range_shown), "%zu range%s from offset %llu", left,
		left == 1 ? "" : "s", (unsigned long long)q->rg[0].off);

	if (rc == CURLE_WRITE_ERROR && q->whole_done)
		rc = CURLE_OK; /* (a whole object sent for a range: we stopped it) */
	if (q->from_cache && !q->progressed && !q->sink_failed &&
	    !(rc == CURLE_OK && (st == 206 || st == 200) && left == 0)) {
		/* The remembered storage location failed without a byte (refused, 5xx, timed
		 * out): forgotten, so that this request's retry and the next reads ask the host,
		 * which may send them elsewhere now. Kept, a storage host gone or a signed URL
		 * refused with a 500 failed every read for LOCATION_TTL_MS (5 minutes) with the
		 * registry up. */
		free(r->loc_url);
		r->loc_url = NULL;
		q->hops = 0;
	}
	if (q->fail && !q->fail_retryable) {
		if (!q->sink_failed && next_host(k, q, q->fail, q->fail_msg))
			return AGAIN;
		util_err_set_http(&k->err, q->fail, (int)st, NULL, "%s: %s", k->what, q->fail_msg);
		*ret = q->fail;
		return FATAL;
	}
	if (q->fail) {
		oci_fmt(k->last_error, sizeof(k->last_error), "%s", q->fail_msg);
	} else if (rc != CURLE_OK) {
		if (q->resp.overflow) {
			if (next_host(k, q, -EBADMSG, "reply headers too large"))
				return AGAIN;
			util_err_set_http(&k->err, -EBADMSG, (int)st, NULL,
					  "%s: reply headers too large", k->what);
			*ret = -EBADMSG;
			return FATAL;
		}
		if (h->mirror && util_now_ms() < k->deadline &&
		    (!q->progressed || !oci_curl_retryable(rc, q->errbuf) ||
		     rc == CURLE_OPERATION_TIMEDOUT)) {
			struct util_error me = UTIL_ERROR_INIT;
			int code = oci_curl_error(c, rc, q->errbuf, h->shown, &me);
			/* Slow, not failing: passed over without being rested, and come back
			 * to should the next host fail. */
			bool slow = rc == CURLE_OPERATION_TIMEDOUT && q->progressed;
			size_t at = q->host;

			if (next_host(k, q, slow ? -ETIMEDOUT : code, me.message)) {
				if (slow)
					q->back = at + 1;
				return AGAIN;
			}
		}
		if (!h->mirror && back_to_mirror(k, q))
			return AGAIN;
		if (!oci_curl_retryable(rc, q->errbuf) || util_now_ms() >= k->deadline) {
			*ret = oci_curl_error(c, rc, q->errbuf, k->what, &k->err);
			if (k->last_error[0] && rc == CURLE_OPERATION_TIMEDOUT)
				util_err_prefix(&k->err, "after: %s;", k->last_error);
			return FATAL;
		}
		oci_fmt(k->last_error, sizeof(k->last_error), "%s",
			q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
	} else if (st == 206 || st == 200) {
		if (q->mode == BODY_MULTI && oci_multipart_finish(&q->mp) < 0 && left)
			oci_fmt(k->last_error, sizeof(k->last_error), "truncated multipart reply");
		if (left == 0) {
			if (q->url && !q->from_cache && !c->ref->is_url) {
				/* Remember where the host sent us, to skip the redirect. */
				free(r->loc_url);
				r->loc_url = TAKE_PTR(q->url);
				r->loc_host = q->host;
				r->loc_expires = util_now_ms() + LOCATION_TTL_MS;
			}
			return DONE;
		}
		if (q->mode == BODY_SINGLE && q->asked_multi) {
			/* One part for several ranges: this server (or storage) does not do
			 * multipart/byteranges. Ask for the rest one range a request. */
			atomic_store(&h->no_multirange, true);
			log_debug("oci: %s answers one range at a time", k->what);
		}
		if (!q->progressed)
			oci_fmt(k->last_error, sizeof(k->last_error),
				"HTTP %ld without the requested bytes", st);
		else
			oci_fmt(k->last_error, sizeof(k->last_error), "short reply");
	} else if (st >= 300 && st < 400 && st != 304) {
		char *next = NULL;

		char *cur = NULL;
		const char *why = NULL;
		int code = -EBADMSG;

		curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &next);
		curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &cur);
		if (!next || ++q->hops > OCI_MAX_REDIRECTS)
			why = next ? "too many redirects" : "redirect without a Location";
		else if ((why = oci_redirect_refused(c, cur, next)))
			code = -EPROTO;
		if (why) {
			if (next_host(k, q, code, why))
				return AGAIN;
			util_err_set_http(&k->err, code, (int)st, NULL, "%s: %s", k->what, why);
			*ret = code;
			return FATAL;
		}
		/* Blob storage elsewhere gets no registry credentials. */
		q->storage = q->storage || !oci_same_origin(next, h->blob_url);
		free(q->url);
		q->url = strdup(next);
		if (!q->url) {
			*ret = -ENOMEM;
			return FATAL;
		}
		push_pending(k, q);
		return AGAIN;
	} else if (q->from_cache && st >= 400 && st < 500) {
		/* The remembered storage URL expired (forgotten above): back to the host now. */
		to_host(q);
		push_pending(k, q);
		return AGAIN;
	} else if (st == 401 && !q->storage && !c->ref->is_url) {
		int a = oci_auth_challenged(c, h, q->resp.www_auth, false, q->gen, ++q->auth_rounds,
					    oci_host_deadline(h, k->deadline), &k->err);

		if (a < 0) {
			/* (a mirror that refuses us, or whose token server fails: rested) */
			if (a != -ENOMEM && next_host(k, q, -EAGAIN, k->err.message)) {
				util_err_clear(&k->err);
				return AGAIN;
			}
			util_err_prefix(&k->err, "%s", k->what);
			*ret = a;
			return FATAL;
		}
		push_pending(k, q);
		return AGAIN;
	} else if (st == 429 || st == 408 || st >= 500) {
		oci_status_error(c, &q->resp, &q->errbody, k->what, &k->err);
		oci_fmt(k->last_error, sizeof(k->last_error), "%s", k->err.message);
		if (q->resp.retry_after[0] &&
		    oci_retry_after_parse(q->resp.retry_after, strlen(q->resp.retry_after), time(NULL),
					  &ra) == 0) {
			if (util_now_ms() + ra >= k->deadline && !h->mirror) {
				util_err_prefix(&k->err,
						"gave up (the server asks to retry after %llu s, "
						"past the deadline)",
						(unsigned long long)(ra / 1000));
				*ret = -EAGAIN;
				return FATAL;
			}
			wait = ra;
		}
	} else {
		if (st == 412 || (st == 416 && c->ref->is_url)) {
			util_err_set_http(
			    &k->err, -ESTALE, (int)st, NULL,
			    "%s: the object changed on the server since it was resolved "
			    "(HTTP %ld)",
			    k->what, st);
			*ret = -ESTALE;
			return FATAL;
		}
		*ret = oci_status_error(c, &q->resp, &q->errbody, k->what, &k->err);
		if (st == 416)
			*ret = -EBADMSG;
		if (next_host(k, q, *ret, k->err.message)) {
			util_err_clear(&k->err);
			return AGAIN;
		}
		return FATAL;
	}

	/* A failure to retry: at a mirror, the next host is the retry unless this one is
	 * making progress. */
	q->failures++;
	if (q->progressed)
		q->no_progress = 0;
	else
		q->no_progress++;
	if ((h->mirror || q->back) && (!q->progressed || q->failures >= MAX_FAILURES) &&
	    next_host(k, q, st >= 500 || st == 429 || st == 408 || !st ? -EAGAIN : -EBADMSG,
		      k->last_error))
		return AGAIN;
	if (q->no_progress >= OCI_MAX_ATTEMPTS || q->failures >= MAX_FAILURES || k->single_attempt) {
		char code[sizeof(k->err.registry_code)];

		const char *last = k->last_error;
		size_t wl = strlen(k->what);

		/* The last error may already name what failed; say it once. */
		if (strncmp(last, k->what, wl) == 0 && strncmp(last + wl, ": ", 2) == 0)
			last += wl + 2;
		oci_fmt(code, sizeof(code), "%s", k->err.registry_code);
		util_err_set_http(&k->err, -EAGAIN, (int)st, code,
				  "%s: gave up after %d attempts: %s", k->what, q->failures, last);
		*ret = -EAGAIN;
		return FATAL;
	}
	if (!q->progressed)
		wait = MAX(wait, oci_backoff_ms(q->no_progress - 1));
	q->not_before = util_now_ms() + wait;
	/* A retry after no byte came asks the host again, not the storage it redirected to:
	 * that may be where the failure is, and the host may send it elsewhere now. (Storage
	 * that was sending bytes when it was cut gets the retry itself.) */
	if (!q->progressed)
		to_host(q);
	k->stats.retries++;
	log_debug("oci: %s: %s; retrying %s in %llu ms", k->what, k->last_error, range_shown,
		  (unsigned long long)wait);

	if (atomic_load(&h->no_multirange) && oci_rreq_remaining(q) > 1) {
		/* Split what is left into single-range requests. */
		for (size_t i = 0; i < q->n; i++) {
			struct rreq *s;

			if (q->rg[i].done == q->rg[i].len)
				continue;
			s = rreq_new(k, &q->rg[i], 1);
			if (!s) {
				*ret = -ENOMEM;
				return FATAL;
			}
			s->host = q->host;
			s->back = q->back;
			s->not_before = q->not_before;
			s->failures = q->failures;
			s->no_progress = q->no_progress;
			push_pending(k, s);
		}
		rreq_free(q);
		return AGAIN;
	}
	push_pending(k, q);
	return AGAIN;
}

static int validate(struct oci_reader *r, const struct util_extent *v, size_t n,
		    struct util_error *err)
{
	uint64_t prev_end = 0;

	if (!r->c->have_blob) {
		return util_err_set(err, -EINVAL, "no blob resolved yet");
	}
	for (size_t i = 0; i < n; i++) {
		if (!v[i].length)
			continue;
		if (!util_range_within(v[i].offset, v[i].length, r->c->blob.size)) {
			return util_err_set(
			    err, -EINVAL,
			    "range %llu+%llu is beyond the end of the blob (%llu bytes)",
			    (unsigned long long)v[i].offset, (unsigned long long)v[i].length,
			    (unsigned long long)r->c->blob.size);
		}
		if (v[i].offset < prev_end) {
			return util_err_set(err, -EINVAL,
					    "ranges must be sorted and must not overlap");
		}
		prev_end = v[i].offset + v[i].length;
	}
	return 0;
}

int oci_reader_submit(struct oci_reader *r, const struct util_extent *v, size_t n, unsigned flags,
		      oci_sink_fn sink, oci_done_fn done, void *ctx, struct util_error *err)
{
	struct oci_client *c = r->c;
	size_t first = oci_host_next(c, 0, OCI_CAP_PULL);
	struct oci_host *h = &c->hosts[first];
	struct oci_read *k;
	size_t m = 0, i;
	uint64_t total = 0, target;
	struct util_error local;
	int ret;

	if (!err)
		err = &local;
	util_err_clear(err);
	ret = validate(r, v, n, err);
	if (ret < 0)
		return ret;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->rg = calloc(n ? n : 1, sizeof(*k->rg));
	if (!k->rg) {
		free(k);
		return -ENOMEM;
	}
	k->r = r;
	k->sink = sink;
	k->done = done;
	k->ctx = ctx;
	k->batch = flags & OCI_READ_BATCH;
	k->single_attempt = flags & OCI_READ_ONCE;
	k->deadline = util_now_ms() + __atomic_load_n(&c->timeout_ms, __ATOMIC_RELAXED);
	for (i = 0; i < n; i++)
		if (v[i].length) {
			k->rg[m].off = v[i].offset;
			k->rg[m].len = v[i].length;
			total += v[i].length;
			m++;
		}
	k->m = m;
	if (c->ref->is_url)
		oci_fmt(k->what, sizeof(k->what), "%s", c->shown);
	else
		oci_fmt(k->what, sizeof(k->what), "registry %s: blob %s", c->shown, c->blob.digest);
	k->next = r->reads;
	r->reads = k;
	r->nreads++;

	/* Group neighbouring ranges: at most 64 a request, about total/parallel bytes each (at
	 * least 1 MiB, at most 16 MiB) so that the work spreads over the requests in flight;
	 * a large range is a request of its own. In batch mode as many as the Range header
	 * takes, whatever their size. Either way the header stays under OCI_RANGE_HEADER_MAX. */
	target = MIN(MAX(total / r->parallel, GROUP_MIN_BYTES), GROUP_MAX_BYTES);
	for (i = 0; i < m;) {
		size_t j = i + 1;
		size_t hdr = strlen("bytes=") + oci_range_spec_len(k->rg[i].off, k->rg[i].len);
		uint64_t bytes = k->rg[i].len;
		struct rreq *q;

		if (atomic_load(&h->ranges_ignored)) {
			j = m;
		} else if (!atomic_load(&h->no_multirange)) {
			while (j < m) {
				size_t spec = oci_range_spec_len(k->rg[j].off, k->rg[j].len);

				if (hdr + spec > OCI_RANGE_HEADER_MAX ||
				    (!k->batch && (j - i >= RANGES_PER_REQUEST ||
						   bytes + k->rg[j].len > target)))
					break;
				hdr += spec;
				bytes += k->rg[j].len;
				j++;
			}
		}
		q = rreq_new(k, &k->rg[i], j - i);
		if (!q) {
			read_end(k, -ENOMEM, false);
			return util_err_set(err, -ENOMEM, "out of memory");
		}
		q->host = first;
		append_pending(k, q);
		i = j;
	}
	if (m == 0) {
		/* Nothing to read: done at the next perform (never from inside submit). */
		k->deadline = 0;
	}
	return 0;
}

/* Send what may be sent now; returns when the next waiting request becomes due. */
static uint64_t start_ready(struct oci_reader *r, uint64_t now)
{
	uint64_t next_ready = UINT64_MAX;

	for (struct rreq **pp = &r->pending; *pp && r->active < r->parallel;) {
		struct rreq *q = *pp;
		struct oci_read *k = q->k;
		int ret;

		if (q->not_before > now) {
			next_ready = MIN(next_ready, q->not_before);
			pp = &q->next;
			continue;
		}
		unlink_pending(r, pp);
		ret = start(q);
		if (ret < 0 && ret != -ENOMEM && ret != -EBUSY &&
		    next_host(k, q, -EAGAIN, k->err.message[0] ? k->err.message : strerror(-ret))) {
			/* A mirror whose credentials or token server failed: rested like one
			 * that is down, and the next host asked (the registry may be fine). */
			util_err_clear(&k->err);
			pp = &r->pending;
			continue;
		}
		if (ret < 0) {
			if (!k->err.message[0] || ret == -ENOMEM || ret == -EBUSY)
				util_err_set(&k->err, ret, "%s: cannot start a request: %s",
					     k->what, strerror(-ret));
			rreq_free(q);
			read_end(k, ret, true);
			pp = &r->pending; /* the list changed under us */
		}
	}
	return next_ready;
}

/* Reads whose time is up with nothing in flight, and reads with nothing left. */
static void sweep(struct oci_reader *r, uint64_t now)
{
	for (struct oci_read *k = r->reads, *next; k; k = next) {
		next = k->next;
		if (!k->active && !k->waiting) {
			read_end(k, 0, true);
			next = r->reads; /* a callback may have submitted: start over */
			continue;
		}
		if (now >= k->deadline && !k->active) {
			if (k->last_error[0])
				util_err_set(&k->err, -EAGAIN, "%s: timed out after %llu ms: %s",
					     k->what,
					     (unsigned long long)__atomic_load_n(&r->c->timeout_ms,
										 __ATOMIC_RELAXED),
					     k->last_error);
			else
				util_err_set(&k->err, -EAGAIN, "%s: timed out after %llu ms",
					     k->what,
					     (unsigned long long)__atomic_load_n(&r->c->timeout_ms,
										 __ATOMIC_RELAXED));
			read_end(k, -EAGAIN, true);
			next = r->reads;
		}
	}
}

void oci_reader_perform(struct oci_reader *r, int timeout_ms)
{
	uint64_t now = util_now_ms(), next_ready, wake, ended = r->ended;
	CURLMsg *msg;
	int running, left;

	next_ready = start_ready(r, now);
	curl_multi_perform(r->multi, &running);
	if (r->round_cb)
		r->round_cb(r->round_ctx);
	while ((msg = curl_multi_info_read(r->multi, &left))) {
		struct rreq *q = NULL;
		struct oci_read *k;
		enum outcome o;
		int ret = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
		k = q->k;
		oci_curl_explain(msg->easy_handle, msg->data.result, q->errbuf, sizeof(q->errbuf));
		o = finish(k, q, msg->data.result, &ret);
		if (o == DONE) {
			rreq_free(q);
			if (!k->active && !k->waiting)
				read_end(k, 0, true);
		} else if (o == FATAL) {
			rreq_free(q);
			read_end(k, ret, true);
		}
	}
	now = util_now_ms();
	sweep(r, now);
	next_ready = MIN(next_ready, start_ready(r, now));
	for (struct rreq *q = r->pending; q; q = q->next)
		next_ready = MIN(next_ready, q->not_before);
	/* A read that ended may free the way for the caller's next one (its next job): no
	 * waiting then, the caller decides. */
	wake = timeout_ms < 0 || r->ended != ended ? 0 : now + (uint64_t)timeout_ms;
	if (next_ready != UINT64_MAX && r->active < r->parallel)
		wake = MIN(wake, next_ready);
	for (struct oci_read *k = r->reads; k; k = k->next)
		if (!k->active)
			wake = MIN(wake, k->deadline);
	if (wake > now)
		curl_multi_poll(r->multi, NULL, 0, (int)MIN(wake - now, (uint64_t)INT_MAX), NULL);
}

struct one_read {
	bool done;
	int result;
	struct util_error *err;
	oci_sink_fn sink;
	void *ctx;
};

static int one_sink(void *ctx, uint64_t offset, const void *data, size_t len)
{
	struct one_read *o = ctx;

	return o->sink(o->ctx, offset, data, len);
}

static void one_done(void *ctx, int result, const struct util_error *err,
		     const struct oci_read_stats *stats)
{
	struct one_read *o = ctx;

	o->done = true;
	o->result = result;
	if (err && o->err)
		*o->err = *err;
}

int oci_read_ranges(struct oci_reader *r, const struct util_extent *v, size_t n, oci_sink_fn sink,
		    void *ctx, struct util_error *err)
{
	struct util_error local;
	struct one_read o = {.err = err ? err : &local, .sink = sink, .ctx = ctx};
	int ret;

	ret = oci_reader_submit(r, v, n, 0, one_sink, one_done, &o, o.err);
	if (ret < 0)
		return ret;
	/* Other reads submitted to this reader go on meanwhile (their callbacks run here). */
	while (!o.done)
		oci_reader_perform(r, 1000);
	return o.result;
}
