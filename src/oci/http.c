// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The HTTP layer over libcurl shared by resolve, tokens and push: easy-handle setup (TLS
 * verified, CA file, timeouts derived from a deadline, http/https only), response headers,
 * error messages, and one control exchange with bounded retries and backoff, Retry-After,
 * redirects followed by hand so that credentials never reach another origin, and the 401
 * round trip through the auth code.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

uint64_t oci_jitter_ms(uint64_t ms)
{
	return ms * (util_now_us() % 1000) / 1000;
}

uint64_t oci_backoff_ms(int attempt)
{
	uint64_t ms = OCI_BACKOFF_MIN_MS;

	for (int i = 0; i < attempt && ms < OCI_BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > OCI_BACKOFF_MAX_MS)
		ms = OCI_BACKOFF_MAX_MS;
	/* up to 25 % jitter so that parallel readers do not retry in lockstep */
	return ms - oci_jitter_ms(ms / 4);
}

void oci_resp_reset(struct oci_resp *r)
{
	memset(r, 0, sizeof(*r));
}

static void set_field(char *field, size_t size, const char *v, size_t n, bool *overflow)
{
	if (n + 1 > size) {
		*overflow = true;
		n = size - 1;
	}
	memcpy(field, v, n);
	field[n] = 0;
}

/* Repeated headers are one comma-separated list. */
static void append_field(char *field, size_t size, const char *v, size_t n, bool *overflow)
{
	size_t used = strlen(field);

	if (used && used + 2 < size) {
		memcpy(field + used, ", ", 3);
		used += 2;
	}
	set_field(field + used, size - used, v, n, overflow);
}

size_t oci_resp_header_cb(char *buf, size_t size, size_t n, void *userdata)
{
	struct oci_resp *r = userdata;
	size_t len = size * n, nl, vl;
	const char *name, *value;
	bool ov = false;

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a 1xx or on a new hop): start over. */
		const char *sp = memchr(buf, ' ', len);
		long status = 0;

		oci_resp_reset(r);
		if (sp) {
			for (const char *p = sp + 1; p < buf + len && *p >= '0' && *p <= '9'; p++)
				if (status < 1000)
					status = status * 10 + (*p - '0');
		}
		r->status = status;
		r->header_bytes = len;
		return len;
	}
	r->header_bytes += len;
	if (r->header_bytes > OCI_HEADERS_MAX) {
		r->overflow = true;
		return 0;
	}
	if (oci_header_split(buf, len, &name, &nl, &value, &vl) < 0)
		return len; /* the blank line ending the headers, or junk we ignore */
	if (oci_span_eq(name, nl, "Content-Type"))
		set_field(r->content_type, sizeof(r->content_type), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Content-Range"))
		set_field(r->content_range, sizeof(r->content_range), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Location"))
		set_field(r->location, sizeof(r->location), value, vl, &ov);
	else if (oci_span_eq(name, nl, "WWW-Authenticate"))
		append_field(r->www_auth, sizeof(r->www_auth), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Link"))
		append_field(r->link, sizeof(r->link), value, vl, &ov);
	else if (oci_span_eq(name, nl, "OCI-Subject"))
		set_field(r->oci_subject, sizeof(r->oci_subject), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Retry-After"))
		set_field(r->retry_after, sizeof(r->retry_after), value, vl, &ov);
	else if (oci_span_eq(name, nl, "ETag"))
		set_field(r->etag, sizeof(r->etag), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Last-Modified"))
		set_field(r->last_modified, sizeof(r->last_modified), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Docker-Content-Digest"))
		set_field(r->docker_digest, sizeof(r->docker_digest), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Range"))
		set_field(r->range, sizeof(r->range), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Accept-Ranges"))
		set_field(r->accept_ranges, sizeof(r->accept_ranges), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Content-Encoding"))
		set_field(r->content_encoding, sizeof(r->content_encoding), value, vl, &ov);
	else if (oci_span_eq(name, nl, "Content-Length")) {
		uint64_t v = 0;
		size_t i;

		for (i = 0; i < vl && value[i] >= '0' && value[i] <= '9' && v < UINT64_MAX / 10; i++)
			v = v * 10 + (uint64_t)(value[i] - '0');
		if (i == vl && vl) {
			r->content_length = v;
			r->has_content_length = true;
		}
	}
	if (ov) {
		r->overflow = true;
		return 0;
	}
	return len;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	struct oci_client *c = ud;

	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
	struct oci_client *c = ud;

	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

int oci_share_init(struct oci_client *c)
{
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	c->share = curl_share_init();
	if (!c->share)
		return -ENOMEM;
	/* DNS answers and TLS sessions are shared by all handles of a client, in any thread;
	 * connections are not (libcurl does not support that across threads). */
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	return 0;
}

void oci_share_free(struct oci_client *c)
{
	if (c->share)
		curl_share_cleanup(c->share);
	c->share = NULL;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
}

void oci_easy_setup(struct oci_client *c, const struct oci_host *h, CURL *easy,
		    uint64_t deadline_ms)
{
	uint64_t now = util_now_ms();
	long remaining = deadline_ms > now ? (long)MIN(deadline_ms - now, (uint64_t)LONG_MAX) : 1;

	if (!h)
		h = c->up;
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "lazyerofs/" LAZYEROFS_VERSION);
	curl_easy_setopt(easy, CURLOPT_SHARE, c->share);
	/* hosts.toml's skip_verify: that host's bytes count as insecure (oci_options_weak). */
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, h->skip_verify ? 0L : 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, h->skip_verify ? 0L : 2L);
	/* A CA of the host's own, else ca=; the system's CA directory stays trusted either way
	 * (libcurl's CAPATH). */
	if (h->ca_blob.data)
		curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &h->ca_blob);
	else if (h->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, h->ca_file);
	/* hosts.toml's client (or Docker's NAME.cert and NAME.key): presented when the server
	 * asks for a certificate. Several: the handshake chooses (OpenSSL; a libcurl built
	 * with another TLS library presents the first). A handle goes to several hosts in its
	 * life: each sets or clears all of it. */
	bool chosen = h->choice && curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION,
						    oci_tls_choice_ctx) == CURLE_OK;

	if (!chosen)
		curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, NULL);
	curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, chosen ? h->choice : NULL);
	curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB,
			 !chosen && h->cert_blob.data ? &h->cert_blob : NULL);
	curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB,
			 !chosen && h->cert_blob.data ? &h->key_blob : NULL);
	/* The more specific wins (README "Precedence"): a host's own proxy is used whatever a
	 * no-proxy list says; the configuration file's is passed by for its own no-proxy list
	 * alone, not the environment's; without either, libcurl's http_proxy/https_proxy/
	 * no_proxy apply (NULL: its default). Set every time: the handle serves other hosts. */
	curl_easy_setopt(easy, CURLOPT_PROXY, h->proxy);
	curl_easy_setopt(easy, CURLOPT_NOPROXY,
			 h->own_proxy ? ""
			 : h->proxy   ? (c->opts.no_proxy ? c->opts.no_proxy : "")
				      : c->opts.no_proxy);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, MIN(remaining, h->connect_timeout_ms));
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, remaining);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, OCI_LOW_SPEED_LIMIT);
	/* A stalled connection is given up in time for another try within the deadline
	 * (timeout=10: a connection stalled once held its read to the deadline, then EIO). */
	curl_easy_setopt(
	    easy, CURLOPT_LOW_SPEED_TIME,
	    MIN(OCI_LOW_SPEED_TIME_S, MAX(OCI_LOW_SPEED_TIME_MIN_S, remaining / 3000)));
	curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, (long)OCI_RECV_BUFFER);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, oci_resp_header_cb);
}

int oci_url_join(const char *base, const char *ref, char **ret)
{
	CURLU *u = curl_url();
	char *s = NULL;
	int r = -EBADMSG;

	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
		*ret = strdup(s);
		r = *ret ? 0 : -ENOMEM;
	}
	curl_free(s);
	curl_url_cleanup(u);
	return r;
}

bool oci_same_origin(const char *a, const char *b)
{
	CURLU *ua = curl_url(), *ub = curl_url();
	bool same = false;

	if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
	    curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK) {
		static const CURLUPart parts[] = { CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT };

		same = true;
		for (size_t i = 0; i < ARRAY_SIZE(parts) && same; i++) {
			char *x = NULL, *y = NULL;

			curl_url_get(ua, parts[i], &x, CURLU_DEFAULT_PORT);
			curl_url_get(ub, parts[i], &y, CURLU_DEFAULT_PORT);
			same = x && y && strcasecmp(x, y) == 0;
			curl_free(x);
			curl_free(y);
		}
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

const char *oci_redirect_refused(const struct oci_client *c, const char *from, const char *to)
{
	if (oci_options_weak(&c->opts) || !from || strncasecmp(from, "https://", 8) != 0 ||
	    strncasecmp(to, "https://", 8) == 0)
		return NULL;
	return "a redirect from https to plain http is refused: the mount asked for TLS "
	       "(skip_verify = true in the registry's hosts.toml accepts weaker bytes)";
}

/* The registry's error code for a reply whose status the message already gives: recorded,
 * and "HTTP 401" in the message becomes "HTTP 401 UNAUTHORIZED". */
static void add_registry_code(struct util_error *err, int status, const char *code)
{
	char num[16], *at, rest[sizeof(err->message)];
	size_t n;

	err->http_status = status;
	oci_fmt(err->registry_code, sizeof(err->registry_code), "%s", code);
	n = (size_t)snprintf(num, sizeof(num), "HTTP %d", status);
	at = strstr(err->message, num);
	if (!at || strstr(err->message, code))
		return;
	at += n;
	oci_fmt(rest, sizeof(rest), "%s", at);
	oci_fmt(at, sizeof(err->message) - (size_t)(at - err->message), " %s%s", code, rest);
}

void oci_curl_explain(CURL *easy, CURLcode rc, char *errbuf, size_t len)
{
	static const char vague[] = ": Couldn't connect to server";
	char why[CURL_ERROR_SIZE];
	long os_errno = 0;
	size_t n;

	if (rc != CURLE_COULDNT_CONNECT ||
	    curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK || os_errno <= 0)
		return;
	oci_fmt(why, sizeof(why), "%s", strerror((int)os_errno));
	if (strstr(errbuf, why))
		return;
	n = strlen(errbuf);
	if (n >= sizeof(vague) - 1 && !strcmp(errbuf + n - (sizeof(vague) - 1), vague))
		errbuf[n - (sizeof(vague) - 1)] = 0;
	n = strlen(errbuf);
	if (n < len)
		oci_fmt(errbuf + n, len - n, "%s%s", n ? ": " : "", why);
}

/* A TLS handshake answered by a plain-HTTP server: permanent, whatever the retries. */
static bool tls_protocol_mismatch(const char *why)
{
	return why && (strstr(why, "wrong version number") || strstr(why, "packet length too long") ||
		       strstr(why, "record layer failure"));
}

/* The server's TLS alert about the certificate we presented, or the lack of one (OpenSSL's
 * words; with TLS 1.3 it comes on the first read, after the handshake): permanent too. */
static bool client_cert_refused(const char *why)
{
	static const char *const alerts[] = {
		"alert certificate required",
		"alert bad certificate",
		"alert unknown ca",
		"alert certificate unknown",
		"alert certificate expired",
		"alert certificate revoked",
		"alert unsupported certificate",
	};

	for (size_t i = 0; why && i < ARRAY_SIZE(alerts); i++)
		if (strstr(why, alerts[i]))
			return true;
	return false;
}

bool oci_curl_retryable(CURLcode rc, const char *errbuf)
{
	if (rc == CURLE_SSL_CONNECT_ERROR && tls_protocol_mismatch(errbuf))
		return false;
	if (client_cert_refused(errbuf))
		return false;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_WEIRD_SERVER_REPLY:
		return true;
	default:
		return false;
	}
}

int oci_curl_error(struct oci_client *c, CURLcode rc, const char *errbuf, const char *what,
		   struct util_error *err)
{
	const char *why = errbuf && *errbuf ? errbuf : curl_easy_strerror(rc);
	const char *hint = "";

	if (client_cert_refused(why))
		return util_err_set(err, -EPROTO,
				    "%s: TLS: the server wants a client certificate it trusts: %s "
				    "(hosts.toml's client, or NAME.cert and NAME.key beside it)",
				    what, why);
	switch (rc) {
	case CURLE_SSL_CONNECT_ERROR:
		if (!c->opts.insecure && tls_protocol_mismatch(why))
			hint = " (the server may speak plain HTTP: use -o insecure if you trust the "
			       "network)";
		return util_err_set(err, -EPROTO, "%s: TLS handshake failed: %s%s", what, why,
				    hint);
	case CURLE_SSL_CERTPROBLEM:
		return util_err_set(err, -EPROTO, "%s: TLS client certificate: %s", what, why);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		if (c->opts.ca_file)
			return util_err_set(err, -EPROTO,
					    "%s: TLS certificate not trusted: %s (ca=%s is not the "
					    "CA that signed the registry's certificate)",
					    what, why, c->opts.ca_file);
		return util_err_set(
		    err, -EPROTO,
		    "%s: TLS certificate not trusted: %s (give the registry's CA with -o "
		    "ca=PATH)",
		    what, why);
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
		if (c->opts.insecure)
			hint = " (the server may need HTTPS: drop -o insecure)";
		return util_err_set(err, -EPROTO, "%s: unexpected reply: %s%s", what, why, hint);
	case CURLE_URL_MALFORMAT:
		return util_err_set(err, -EINVAL, "%s: bad URL: %s", what, why);
	case CURLE_OPERATION_TIMEDOUT:
		return util_err_set(err, -EAGAIN, "%s: timed out: %s%s%s%s", what, why,
				    c->opts.proxy ? " (through the proxy " : "",
				    c->opts.proxy ? c->opts.proxy : "", c->opts.proxy ? ")" : "");
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		/* curl's own text already says "Could not resolve host: NAME". */
		return util_err_set(
		    err, -EAGAIN, "%s: %s%s", what,
		    util_startswith(why, "Could not resolve") ? "" : "cannot resolve host: ", why);
	case CURLE_COULDNT_CONNECT:
		return util_err_set(err, -EAGAIN, "%s: cannot connect: %s%s%s%s", what, why,
				    c->opts.proxy ? " (through the proxy " : "",
				    c->opts.proxy ? c->opts.proxy : "", c->opts.proxy ? ")" : "");
	case CURLE_OUT_OF_MEMORY:
		return util_err_set(err, -ENOMEM, "%s: out of memory", what);
	default:
		return util_err_set(err, -EAGAIN, "%s: %s", what, why);
	}
}

int oci_status_error(struct oci_client *c, const struct oci_resp *resp, const struct util_buf *body,
		     const char *what, struct util_error *err)
{
	char code[64] = "", msg[300] = "";
	int r = oci_errno_from_status(resp->status);

	/* A proxy's own answers: its login, or its failure to reach the registry. */
	if (resp->status == 407)
		return util_err_set_http(
		    err, -EACCES, 407, NULL,
		    "%s: HTTP 407: the proxy %s wants a login: put USER:PASSWORD@ "
		    "before its host in its URL",
		    what, c->opts.proxy ? c->opts.proxy : "in use");
	if (c->opts.proxy && (resp->status == 502 || resp->status == 504) &&
	    !(body && body->len &&
	      oci_registry_error_parse(body->data, body->len, code, sizeof(code), msg,
				       sizeof(msg)) == 0))
		return util_err_set_http(err, r, (int)resp->status, NULL,
					 "%s: HTTP %ld from the proxy %s: it could not reach the "
					 "registry",
					 what, resp->status, c->opts.proxy);
	if (body && body->len &&
	    oci_registry_error_parse(body->data, body->len, code, sizeof(code), msg, sizeof(msg)) == 0)
		util_err_set_http(err, r, (int)resp->status, code, "%s: HTTP %ld %s", what,
				  resp->status, msg);
	else
		/* A plain-HTTP request to an HTTPS port gets a bare 400 (Go's servers, nginx). */
		util_err_set_http(err, r, (int)resp->status, NULL, "%s: HTTP %ld%s", what,
				  resp->status,
				  resp->status == 400 && c->opts.insecure
					  ? " (the server may need HTTPS: drop -o insecure)"
					  : "");
	return r;
}

bool oci_slist_add(struct curl_slist **l, const char *fmt, ...)
{
	struct curl_slist *n;
	char *s = NULL;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (k < 0)
		return false;
	n = curl_slist_append(*l, s);
	explicit_bzero(s, (size_t)k); /* may be an Authorization header */
	free(s);
	if (!n)
		return false;
	*l = n;
	return true;
}

/* ---- one control exchange ------------------------------------------------------------------ */

struct body_sink {
	struct oci_resp *resp;
	struct util_buf *body;
	size_t max;
	bool overflow;
	bool headers_only;
	bool stopped;
};

static size_t body_cb(char *p, size_t size, size_t n, void *ud)
{
	struct body_sink *s = ud;
	size_t len = size * n;

	if (s->headers_only && s->resp->status >= 200 && s->resp->status < 300) {
		s->stopped = true;
		return 0;
	}
	if (!s->body)
		return len;
	if (s->resp->status < 200 || s->resp->status >= 300) {
		/* Keep the start of an error reply for its message. */
		size_t room = s->body->len < OCI_ERROR_BODY_MAX ? OCI_ERROR_BODY_MAX - s->body->len : 0;

		if (room && util_buf_append(s->body, p, MIN(room, len)) < 0)
			return len;
		return len;
	}
	if (s->max == 0)
		return len;
	if (s->body->len + len > s->max || util_buf_append(s->body, p, len) < 0) {
		s->overflow = true;
		return 0;
	}
	return len;
}

struct body_src {
	const uint8_t *mem;
	int fd;
	uint64_t off, len, pos;
	int error;
	void (*progress)(void *ctx, uint64_t sent);
	void *progress_ctx;
};

static size_t read_cb(char *p, size_t size, size_t n, void *ud)
{
	struct body_src *s = ud;
	size_t want = size * n;
	uint64_t left = s->len - s->pos;

	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (s->mem) {
		memcpy(p, s->mem + s->pos, want);
	} else {
		ssize_t k = pread(s->fd, p, want, (off_t)(s->off + s->pos));

		if (k <= 0) {
			s->error = k < 0 ? -errno : -EIO;
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)k;
	}
	s->pos += want;
	return want;
}

static int seek_cb(void *ud, curl_off_t offset, int origin)
{
	struct body_src *s = ud;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > s->len)
		return CURL_SEEKFUNC_FAIL;
	s->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int xfer_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		   curl_off_t ulnow)
{
	struct body_src *s = ud;

	if (s->progress && ulnow > 0)
		s->progress(s->progress_ctx, (uint64_t)ulnow);
	return 0;
}

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Keep the quickest reply of the control handle (oci_client_reply_us). */
static void note_reply_time(struct oci_client *c, CURL *easy)
{
	curl_off_t sent = 0, first = 0;
	unsigned long long us, old;

	if (curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &sent) != CURLE_OK ||
	    curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &first) != CURLE_OK ||
	    first <= 0 || first < sent)
		return;
	us = (unsigned long long)MAX(first - sent, (curl_off_t)1);
	old = atomic_load(&c->ctl_reply_us);
	while ((old == 0 || us < old) && !atomic_compare_exchange_weak(&c->ctl_reply_us, &old, us))
		;
}

int oci_request_easy(struct oci_client *c, CURL *easy, const struct oci_req *q,
		     uint64_t deadline_ms, struct oci_resp *resp, struct util_buf *body,
		     struct util_error *err, atomic_ullong *counter)
{
	_cleanup_free_ char *url = strdup(q->url);
	struct oci_host *host = q->host ? q->host : c->up;
	char shown[300], errbuf[CURL_ERROR_SIZE];
	int attempts = 0, auth_rounds = 0, hops = 0;
	CURLcode last_rc = CURLE_OK;
	const char *method = q->method, *why;
	int r;

	if (!url)
		return -ENOMEM;
	for (;;) {
		struct body_sink sink = { .resp = resp, .body = body, .max = q->max_body,
					  .headers_only = q->headers_only };
		struct body_src src = { .mem = q->body, .fd = q->body_fd, .off = q->body_off,
					.len = q->body_len, .progress = q->progress,
					.progress_ctx = q->progress_ctx };
		struct curl_slist *hdrs = NULL;
		char *auth = NULL;
		uint64_t gen = 0, wait;
		bool at_host = hops == 0 && host->origin && oci_same_origin(url, host->origin);
		bool use_auth = q->registry_auth && at_host;
		CURLcode rc;
		long status;

		oci_url_redact(url, shown, sizeof(shown));
		if (util_now_ms() >= deadline_ms) {
			if (last_rc != CURLE_OK)
				return oci_curl_error(c, last_rc, errbuf, shown, err);
			if (resp->status)
				return oci_status_error(c, resp, body, shown, err);
			return util_err_set(err, -EAGAIN, "%s %s: timed out", method, shown);
		}
		if (use_auth) {
			r = oci_auth_header(c, host, q->push, deadline_ms, &auth, &gen, err);
			if (r < 0)
				return r;
		}
		if ((q->accept && !oci_slist_add(&hdrs, "Accept: %s", q->accept)) ||
		    (q->content_type && !oci_slist_add(&hdrs, "Content-Type: %s", q->content_type)) ||
		    (auth && !oci_slist_add(&hdrs, "%s", auth)) || !oci_slist_add(&hdrs, "Expect:") ||
		    (q->origin_auth && (hops == 0 || oci_same_origin(url, q->url)) &&
		     !oci_slist_add(&hdrs, "%s", q->origin_auth))) {
			curl_slist_free_all(hdrs);
			free(auth);
			return -ENOMEM;
		}
		if (auth) {
			explicit_bzero(auth, strlen(auth));
			free(auth);
		}
		for (struct curl_slist *e = q->extra; e; e = e->next)
			if (!oci_slist_add(&hdrs, "%s", e->data)) {
				curl_slist_free_all(hdrs);
				return -ENOMEM;
			}
		for (struct curl_slist *e = at_host ? host->headers : NULL; e; e = e->next)
			if (!oci_slist_add(&hdrs, "%s", e->data)) {
				curl_slist_free_all(hdrs);
				return -ENOMEM;
			}

		curl_easy_reset(easy);
		oci_easy_setup(c, host, easy, deadline_ms);
		curl_easy_setopt(easy, CURLOPT_URL, url);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, resp);
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, body_cb);
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
		curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
		errbuf[0] = 0;
		if (!strcmp(method, "HEAD")) {
			curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
		} else if (!strcmp(method, "GET")) {
			curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
		} else if (!strcmp(method, "POST") && !q->body && q->body_fd < 0) {
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
			curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
		} else if (!strcmp(method, "POST")) {
			curl_easy_setopt(easy, CURLOPT_POST, 1L);
			curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_cb);
			curl_easy_setopt(easy, CURLOPT_READDATA, &src);
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
		} else {
			/* PUT, PATCH: an upload of body_len bytes (possibly none) */
			curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_cb);
			curl_easy_setopt(easy, CURLOPT_READDATA, &src);
			curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
			if (strcmp(method, "PUT"))
				curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
		}
		if (q->body || q->body_fd >= 0) {
			curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, seek_cb);
			curl_easy_setopt(easy, CURLOPT_SEEKDATA, &src);
		}
		if (q->progress) {
			curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
			curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, xfer_cb);
			curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &src);
		}
		oci_resp_reset(resp);
		if (body)
			util_buf_reset(body);
		log_debug("oci: %s %s", method, shown);
		rc = curl_easy_perform(easy);
		oci_curl_explain(easy, rc, errbuf, sizeof(errbuf));
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
		curl_slist_free_all(hdrs);
		if (counter)
			atomic_fetch_add(counter, 1);
		if (rc == CURLE_OK && easy == c->ctl)
			note_reply_time(c, easy);
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		if (status && !resp->status)
			resp->status = status;
		if (rc == CURLE_WRITE_ERROR && sink.stopped)
			rc = CURLE_OK;
		if (rc != CURLE_OK) {
			if (resp->overflow) {
				return util_err_set(err, -EBADMSG, "%s %s: reply headers too large",
						    method, shown);
			}
			if (sink.overflow) {
				return util_err_set_http(err, -EFBIG, (int)resp->status, NULL,
							 "%s %s: reply larger than %zu bytes",
							 method, shown, q->max_body);
			}
			if (src.error) {
				util_err_set(err, src.error, "%s %s: reading the upload: %s",
					     method, shown, strerror(-src.error));
				return src.error;
			}
			if (oci_curl_retryable(rc, errbuf) && !q->no_retry && attempts + 1 < OCI_MAX_ATTEMPTS) {
				last_rc = rc;
				wait = oci_backoff_ms(attempts++);
				if (util_now_ms() + wait < deadline_ms) {
					log_debug("oci: %s %s failed (%s), retrying", method, shown,
						  curl_easy_strerror(rc));
					util_sleep_ms(wait);
					continue;
				}
			}
			return oci_curl_error(c, rc, errbuf, shown, err);
		}
		last_rc = CURLE_OK;
		if (resp->status == 401 && use_auth && auth_rounds < 3) {
			auth_rounds++;
			r = oci_auth_challenged(c, host, resp->www_auth, q->push, gen, auth_rounds,
						deadline_ms, err);
			if (r == -EACCES && err && !err->registry_code[0]) {
				/* The registry's own words, e.g. UNAUTHORIZED, when it has them. */
				char code[64] = "", msg[300] = "";

				if (body && body->len &&
				    oci_registry_error_parse(body->data, body->len, code, sizeof(code),
							     msg, sizeof(msg)) == 0 && code[0])
					add_registry_code(err, 401, code);
			}
			if (r < 0)
				return r;
			continue;
		}
		if (q->follow && is_redirect(resp->status)) {
			char *next = NULL;

			curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &next);
			if (!next || ++hops > OCI_MAX_REDIRECTS) {
				return util_err_set_http(err, -EBADMSG, (int)resp->status, NULL,
							 "%s %s: %s", method, shown,
							 next ? "too many redirects"
							      : "redirect without a Location");
			}
			if ((why = oci_redirect_refused(c, url, next)))
				return util_err_set_http(err, -EPROTO, (int)resp->status, NULL,
							 "%s %s: %s", method, shown, why);
			free(url);
			url = strdup(next);
			if (!url)
				return -ENOMEM;
			if (resp->status == 303)
				method = "GET";
			continue;
		}
		if ((resp->status == 429 || resp->status == 408 || resp->status >= 500) &&
		    !q->no_retry && attempts + 1 < OCI_MAX_ATTEMPTS) {
			uint64_t ra;

			wait = oci_backoff_ms(attempts);
			if (resp->retry_after[0] &&
			    oci_retry_after_parse(resp->retry_after, strlen(resp->retry_after),
						  time(NULL), &ra) == 0)
				wait = MAX(ra, wait);
			if (util_now_ms() + wait < deadline_ms) {
				attempts++;
				log_debug("oci: %s %s: HTTP %ld, retrying in %llu ms", method, shown,
					  resp->status, (unsigned long long)wait);
				util_sleep_ms(wait);
				continue;
			}
		}
		return 0;
	}
}

int oci_request(struct oci_client *c, const struct oci_req *q, uint64_t deadline_ms,
		struct oci_resp *resp, struct util_buf *body, struct util_error *err)
{
	int r;

	pthread_mutex_lock(&c->ctl_lock);
	if (!c->ctl)
		c->ctl = curl_easy_init();
	r = c->ctl ? oci_request_easy(c, c->ctl, q, deadline_ms, resp, body, err, &c->ctl_requests)
		   : -ENOMEM;
	pthread_mutex_unlock(&c->ctl_lock);
	return r;
}
