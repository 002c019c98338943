// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The client of one reference: creation, and resolving a registry reference to one blob
 * (manifest or index by tag or digest, platform, layer, range-readable media type). A
 * manifest fetched by digest is verified against it. An explicit platform= is checked against
 * the config of a single image manifest, the one blob resolution may read whole. No /v2/ ping
 * on the way: a registry that needs no login answers the manifest at once (one round trip),
 * one that does answers 401 with the challenge the ping would have given. The ping is only
 * made to explain a 404.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/strutil.h"
#include "util/time.h"

#define MANIFEST_ACCEPT                                                             \
	OCI_MT_OCI_MANIFEST ", " OCI_MT_OCI_INDEX ", " OCI_MT_DOCKER_MANIFEST ", " \
	OCI_MT_DOCKER_LIST
#define INDEX_DEPTH_MAX 3

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init_once(void)
{
	/* No OpenSSL clean-up at exit: freeing its tables one by one costs a short-lived
	 * command ~10 ms of its wall time, and the kernel frees them at once anyway. */
	if (!OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL))
		log_debug("OpenSSL initialisation without its exit handler failed");
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int oci_global_init(void)
{
	pthread_once(&global_once, global_init_once);
	return global_rc == CURLE_OK ? 0 : -EIO;
}

static struct oci_ref *ref_copy(const struct oci_ref *r)
{
	struct oci_ref *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->is_url = r->is_url;
#define DUP(f)                                         \
	if (r->f && !(n->f = strdup(r->f))) {          \
		oci_ref_free(n);                       \
		return NULL;                           \
	}
	DUP(url);
	DUP(registry);
	DUP(repository);
	DUP(tag);
	DUP(digest);
#undef DUP
	return n;
}

void oci_client_free(struct oci_client *c)
{
	if (!c)
		return;
	oci_hosts_free(c);
	if (c->ctl)
		curl_easy_cleanup(c->ctl);
	oci_share_free(c);
	pthread_mutex_destroy(&c->ctl_lock);
	pthread_mutex_destroy(&c->auth_lock);
	pthread_mutex_destroy(&c->spare_lock);
	oci_ref_free(c->ref);
	oci_options_free(&c->opts);
	free(c->cond_match);
	free(c->cond_range);
	free(c->metamap);
	free(c);
}

const char *oci_client_metamap(const struct oci_client *c)
{
	return c->metamap;
}

uint64_t oci_client_reply_us(struct oci_client *c)
{
	return atomic_load(&c->ctl_reply_us);
}

DEFINE_CLEANUP_FUNC(struct oci_client, oci_client_free);

int oci_client_new(const struct oci_ref *ref, const struct oci_options *opts,
		   struct oci_client **ret)
{
	_cleanup_(oci_client_freep) struct oci_client *c = NULL;
	int r;

	r = oci_global_init();
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->ctl_lock, NULL);
	pthread_mutex_init(&c->auth_lock, NULL);
	pthread_mutex_init(&c->spare_lock, NULL);
	r = oci_share_init(c);
	if (r < 0)
		return r;
	c->ref = ref_copy(ref);
	if (!c->ref)
		return -ENOMEM;
	r = oci_options_copy(&c->opts, opts);
	if (r < 0)
		return r;
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : OCI_DEFAULT_TIMEOUT_MS;
	c->data_http2 = getenv("LAZYEROFS_HTTP2") && !strcmp(getenv("LAZYEROFS_HTTP2"), "1");
	if (ref->is_url)
		oci_url_redact(ref->url, c->shown, sizeof(c->shown));
	else
		oci_fmt(c->shown, sizeof(c->shown), "%s", ref->registry);
	r = oci_hosts_init(c);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

static int set_blob_url(struct oci_client *c, const char *digest)
{
	for (size_t i = 0; i < c->nhosts; i++) {
		struct oci_host *h = &c->hosts[i];

		free(h->blob_url);
		h->blob_url = c->ref->is_url ? strdup(c->ref->url)
					     : oci_host_url(c, h, "blobs", digest);
		if (!h->blob_url)
			return -ENOMEM;
	}
	return 0;
}

void oci_client_set_timeout(struct oci_client *c, uint64_t timeout_ms)
{
	if (c && timeout_ms)
		__atomic_store_n(&c->timeout_ms, timeout_ms, __ATOMIC_RELAXED);
}

int oci_client_set_blob(struct oci_client *c, const struct oci_blob *b)
{
	int r;

	if (!c->ref->is_url && !util_digest_valid(b->digest))
		return -EINVAL;
	c->blob = *b;
	r = set_blob_url(c, b->digest);
	if (r < 0)
		return r;
	if (c->ref->is_url) {
		r = oci_url_conditions(c, b);
		if (r < 0)
			return r;
	}
	c->have_blob = true;
	return 0;
}

/* A 404 that is not a registry's error reply: say whether this is a registry at all. */
static void explain_404(struct oci_client *c, uint64_t deadline, struct util_error *err)
{
	struct oci_req q = { .method = "GET", .body_fd = -1 };
	_cleanup_free_ char *url = NULL;
	struct oci_resp resp;
	struct util_error e2;

	if (asprintf(&url, "%s/", c->up->api) < 0)
		return;
	q.url = url;
	if (oci_request(c, &q, deadline, &resp, NULL, &e2) < 0)
		return;
	if (resp.status != 200 && resp.status != 401)
		util_err_prefix(err,
				"%s does not look like an OCI registry (GET /v2/ answered HTTP "
				"%ld)",
				c->shown, resp.status);
}

/* oci_manifest_get at one host. */
static int manifest_get_at(struct oci_client *c, struct oci_host *h, const char *reference,
			   const char *expect_digest, uint64_t deadline, struct util_buf *body,
			   char *ctype, size_t ctlen, char digest_out[UTIL_DIGEST_STR_LEN],
			   struct util_error *err)
{
	struct oci_req q = { .method = "GET", .body_fd = -1, .accept = MANIFEST_ACCEPT,
			     .registry_auth = true, .follow = true, .max_body = OCI_MANIFEST_MAX,
			     .host = h, .no_retry = h->mirror };
	_cleanup_free_ char *url = oci_host_url(c, h, "manifests", reference);
	uint8_t d[UTIL_SHA256_LEN];
	struct oci_resp resp;
	char what[600];
	int r;

	if (!url)
		return -ENOMEM;
	q.url = url;
	oci_fmt(what, sizeof(what), "registry %s: manifest %s%c%s", h->shown, c->ref->repository,
		util_startswith(reference, "sha256:") ? '@' : ':', reference);
	r = oci_request(c, &q, deadline, &resp, body, err);
	if (r < 0) {
		if (r == -EFBIG)
			util_err_set_http(err, r, 200, NULL, "%s: larger than %d bytes", what,
					  OCI_MANIFEST_MAX);
		else if (!strstr(err->message, h->shown))
			util_err_prefix(err, "registry %s", h->shown);
		return r;
	}
	if (resp.status != 200) {
		char code[64] = "", msg[8] = "";

		r = oci_status_error(c, &resp, body, what, err);
		if (resp.status == 404 && !h->mirror &&
		    oci_registry_error_parse(body->data, body->len, code, sizeof(code), msg,
					     sizeof(msg)) < 0)
			explain_404(c, deadline, err);
		return r;
	}
	util_sha256_buf(body->data, body->len, d);
	util_digest_format(d, digest_out);
	if (expect_digest && strcmp(digest_out, expect_digest) != 0) {
		return util_err_set_http(
		    err, -EILSEQ, 200, NULL,
		    "%s: digest mismatch: the registry sent a manifest whose sha256 is %s", what,
		    digest_out);
	}
	oci_fmt(ctype, ctlen, "%s", resp.content_type);
	return 0;
}

/* A mirror that failed once its share of the time was up stalled (oci_client_export_rests). */
static void note_stall(struct oci_host *h, int r, uint64_t until)
{
	if (r < 0 && h->mirror && util_now_ms() >= until)
		atomic_store(&h->stalled, true);
}

/* A manifest from the first host with all of caps that has it (mirrors in order, then the
 * registry). *ret_host: the host that answered. With resolvers_only, only the hosts.toml hosts
 * that resolve a tag before the registry (containerd asks them first: an air-gapped node's
 * registry may not even answer), not the registry: -ENOENT when there is none, else the last
 * one's error when none had it. */
static int manifest_get_any(struct oci_client *c, unsigned caps, bool resolvers_only,
			    const char *reference, const char *expect_digest, uint64_t deadline,
			    struct util_buf *body, char *ctype, size_t ctlen,
			    char digest_out[UTIL_DIGEST_STR_LEN], struct oci_host **ret_host,
			    struct util_error *err)
{
	int r = -ENOENT;

	for (size_t i = oci_host_next(c, 0, caps);; i = oci_host_next(c, i + 1, caps)) {
		struct oci_host *h = &c->hosts[i];
		uint64_t until;

		if (resolvers_only && !h->resolve_first) {
			if (i + 1 == c->nhosts)
				return r;
			continue;
		}
		until = oci_host_deadline(h, deadline);
		util_err_clear(err);
		r = manifest_get_at(c, h, reference, expect_digest, until, body, ctype, ctlen,
				    digest_out, err);
		note_stall(h, r, until);
		if (r >= 0 && ret_host)
			*ret_host = h;
		if (r >= 0 || !oci_host_failed(c, h, r, util_err_msg(err, r)))
			return r;
	}
}

int oci_manifest_get(struct oci_client *c, const char *reference, const char *expect_digest,
		     uint64_t deadline, struct util_buf *body, char *ctype, size_t ctlen,
		     char digest_out[UTIL_DIGEST_STR_LEN], struct util_error *err)
{
	if (!expect_digest)
		return manifest_get_at(c, c->up, reference, NULL, deadline, body, ctype, ctlen,
				       digest_out, err);
	return manifest_get_any(c, OCI_CAP_PULL, false, reference, expect_digest, deadline, body,
				ctype, ctlen, digest_out, NULL, err);
}

/* GET a blob of known size and digest, whole, into *ret (NUL-terminated), from host h. */
static int blob_get_at(struct oci_client *c, struct oci_host *h, const struct oci_descriptor *d,
		       uint64_t deadline, void **ret, size_t *ret_len, struct util_error *err)
{
	struct oci_req q = {.method = "GET",
			    .body_fd = -1,
			    .registry_auth = true,
			    .follow = true,
			    .max_body = d->size,
			    .host = h,
			    .no_retry = h->mirror};
	struct util_buf body = UTIL_BUF_INIT(MAX(d->size, OCI_ERROR_BODY_MAX));
	_cleanup_free_ char *url = oci_host_url(c, h, "blobs", d->digest);
	uint8_t sum[UTIL_SHA256_LEN];
	char got[UTIL_DIGEST_STR_LEN], what[400];
	struct oci_resp resp;
	char *data = NULL;
	int r;

	if (!url)
		return -ENOMEM;
	oci_fmt(what, sizeof(what), "registry %s: blob %s@%s", h->shown, c->ref->repository,
		d->digest);
	q.url = url;
	r = oci_request(c, &q, deadline, &resp, &body, err);
	if (r < 0)
		goto out;
	if (resp.status != 200) {
		r = oci_status_error(c, &resp, &body, what, err);
		goto out;
	}
	util_sha256_buf(body.data, body.len, sum);
	util_digest_format(sum, got);
	if (body.len != d->size || strcmp(got, d->digest) != 0) {
		r = util_err_set_http(err, -EILSEQ, 200, NULL,
				      "%s: the registry sent %zu bytes whose sha256 is %s", what,
				      body.len, got);
		goto out;
	}
	r = util_buf_steal(&body, &data);
	if (r < 0)
		goto out;
	*ret = data;
	*ret_len = (size_t)d->size;
out:
	util_buf_free(&body);
	return r;
}

int oci_blob_get(struct oci_client *c, const struct oci_descriptor *d, uint64_t deadline,
		 void **ret, size_t *ret_len, struct util_error *err)
{
	if (d->size == 0) {
		/* No bytes have one digest: nothing to ask for (and a request would have no
		 * cap on what it receives: a max_body of 0 discards the body). */
		uint8_t sum[UTIL_SHA256_LEN];
		char none[UTIL_DIGEST_STR_LEN];

		util_sha256_buf("", 0, sum);
		util_digest_format(sum, none);
		if (strcmp(none, d->digest) != 0)
			return util_err_set(err, -EILSEQ,
					    "blob %s: its descriptor says 0 bytes, and that is not "
					    "the digest of no bytes",
					    d->digest);
		*ret = calloc(1, 1);
		*ret_len = 0;
		return *ret ? 0 : -ENOMEM;
	}
	for (size_t i = oci_host_next(c, 0, OCI_CAP_PULL);;
	     i = oci_host_next(c, i + 1, OCI_CAP_PULL)) {
		uint64_t until = oci_host_deadline(&c->hosts[i], deadline);
		int r;

		util_err_clear(err);
		r = blob_get_at(c, &c->hosts[i], d, until, ret, ret_len, err);
		note_stall(&c->hosts[i], r, until);
		if (r >= 0 || !oci_host_failed(c, &c->hosts[i], r, util_err_msg(err, r)))
			return r;
	}
}

enum { TAG_DIGEST, TAG_VIA_MIRRORS, TAG_VIA_REGISTRY, TAG_GOT };

/* Which manifest a tag names, when mirrors may serve it: the registry's word (a HEAD, which
 * Docker Hub does not count as a pull), so that the manifest itself can come by digest from
 * a mirror. TAG_DIGEST with ret_digest; TAG_VIA_MIRRORS when the registry cannot be reached
 * (the hosts that may resolve tags are asked); TAG_VIA_REGISTRY when it answered without a
 * digest or refused (its GET says why, with the registry's own error). */
static int tag_digest(struct oci_client *c, const char *tag, uint64_t deadline,
		      char ret_digest[UTIL_DIGEST_STR_LEN])
{
	struct oci_req q = { .method = "HEAD", .body_fd = -1, .accept = MANIFEST_ACCEPT,
			     .registry_auth = true, .follow = true, .no_retry = true };
	_cleanup_free_ char *url = oci_host_url(c, c->up, "manifests", tag);
	struct util_error e = UTIL_ERROR_INIT;
	struct oci_resp resp;
	int r;

	if (!url)
		return -ENOMEM;
	q.url = url;
	r = oci_request(c, &q, deadline, &resp, NULL, &e);
	if (r == -ENOMEM)
		return r;
	if (r == -EAGAIN || r == -EPROTO ||
	    (r >= 0 && (resp.status == 429 || resp.status >= 500))) {
		log_debug("oci: registry %s cannot confirm the tag %s (%s); a mirror resolves it",
			  c->shown, tag, r < 0 ? e.message : "busy");
		return TAG_VIA_MIRRORS;
	}
	if (r >= 0 && resp.status == 200 && util_digest_valid(resp.docker_digest)) {
		memcpy(ret_digest, resp.docker_digest, UTIL_DIGEST_STR_LEN);
		return TAG_DIGEST;
	}
	return TAG_VIA_REGISTRY;
}

/* platform= given and the reference named an image manifest, not an index: the platform its
 * config records must be the one asked for (one small blob more; without platform= nothing is
 * asked, so a mount stays one manifest GET). A config of another type (an artifact's) or one
 * recording no os and architecture says nothing about a platform: accepted. */
static int check_config_platform(struct oci_client *c, const struct oci_manifest *m,
				 const struct oci_platform *want, uint64_t deadline,
				 struct util_error *err)
{
	_cleanup_free_ void *buf = NULL;
	_cleanup_free_ char *shown = NULL;
	struct oci_platform have;
	char has[100], wanted[100];
	size_t len;
	int r;

	if (!m->config.digest[0] || !oci_config_is_image(m->config.media_type))
		return 0;
	if (m->config.size > OCI_CONFIG_MAX)
		return util_err_set(err, -EFBIG,
				    "registry %s: the config of %s has %llu bytes, more than %d: "
				    "its platform cannot be checked (platform=%s)",
				    c->shown, c->ref->repository,
				    (unsigned long long)m->config.size, OCI_CONFIG_MAX,
				    c->opts.platform);
	r = oci_blob_get(c, &m->config, deadline, &buf, &len, err);
	if (r < 0)
		return r;
	r = oci_config_platform(buf, len, &have);
	if (r == -ENOENT) {
		log_debug("oci: the config of %s records no platform", c->ref->repository);
		return 0;
	}
	if (r < 0)
		return util_err_set_http(err, r, 200, NULL,
					 "registry %s: config %s of %s is not a valid image config",
					 c->shown, m->config.digest, c->ref->repository);
	if (oci_platform_match(&have, want))
		return 0;
	shown = oci_ref_format(c->ref);
	oci_platform_format(&have, has, sizeof(has));
	oci_platform_format(want, wanted, sizeof(wanted));
	return util_err_set(err, -ENOENT, "'%s' is an image for %s, not %s (platform=%s)",
			    shown ? shown : c->ref->repository, has, wanted, c->opts.platform);
}

int oci_resolve(struct oci_client *c, struct oci_blob *ret, struct util_error *err)
{
	struct util_buf body = UTIL_BUF_INIT(OCI_MANIFEST_MAX);
	_cleanup_free_ char *reference = NULL, *expect = NULL;
	struct oci_manifest *m = NULL;
	struct oci_platform want;
	char ctype[256], digest[UTIL_DIGEST_STR_LEN], why[1024], platform_shown[100] = "";
	uint64_t deadline = util_now_ms() + c->timeout_ms;
	const struct oci_descriptor *layer;
	struct util_error local;
	size_t idx;
	int r, tag_how = TAG_VIA_REGISTRY;

	if (!err)
		err = &local;
	util_err_clear(err);
	memset(ret, 0, sizeof(*ret));
	if (c->ref->is_url) {
		r = oci_url_resolve(c, ret, err);
		if (r < 0)
			return r;
		return oci_client_set_blob(c, ret);
	}
	if (c->opts.platform) {
		if (oci_platform_parse(c->opts.platform, &want) < 0) {
			return util_err_set(err, -EINVAL, "platform '%s' is not OS/ARCH[/VARIANT]",
					    c->opts.platform);
		}
	} else {
		r = oci_platform_host(&want);
		if (r < 0)
			return r;
	}
	reference = strdup(c->ref->digest ? c->ref->digest : c->ref->tag ? c->ref->tag : "latest");
	expect = c->ref->digest ? strdup(c->ref->digest) : NULL;
	if (!reference || (c->ref->digest && !expect))
		return -ENOMEM;
	if (!expect && c->nhosts > 1) {
		/* hosts.toml: its hosts resolve a tag first, in order; if none can, as without
		 * them. */
		r = manifest_get_any(c, OCI_CAP_PULL | OCI_CAP_RESOLVE, true, reference, NULL,
				     deadline, &body, ctype, sizeof(ctype), digest, NULL, err);
		if (r >= 0) {
			tag_how = TAG_GOT;
			ret->resolved_by_mirror = true;
		} else if (r == -ENOMEM) {
			return r;
		}
		util_err_clear(err);
	}
	if (tag_how != TAG_GOT && !expect && c->nhosts > 1) {
		/* Mirrors: the registry names the tag's digest, a mirror may send the bytes. */
		tag_how = tag_digest(c, reference, deadline, digest);
		if (tag_how < 0)
			return tag_how;
		if (tag_how == TAG_DIGEST) {
			free(reference);
			reference = strdup(digest);
			expect = strdup(digest);
			if (!reference || !expect)
				return -ENOMEM;
		}
	}
	for (int depth = 0;; depth++) {
		if (depth == 0 && tag_how == TAG_GOT) {
			r = 0; /* in body already */
		} else if (depth == 0 && tag_how == TAG_VIA_MIRRORS) {
			struct oci_host *from = NULL;

			r = manifest_get_any(c, OCI_CAP_PULL | OCI_CAP_RESOLVE, false, reference,
					     NULL, deadline, &body, ctype, sizeof(ctype), digest,
					     &from, err);
			ret->resolved_by_mirror = r >= 0 && from->mirror;
		} else {
			r = oci_manifest_get(c, reference, expect, deadline, &body, ctype,
					     sizeof(ctype), digest, err);
		}
		if (r < 0)
			goto out;
		oci_manifest_free(m);
		m = NULL;
		why[0] = 0;
		r = oci_manifest_parse(body.data, body.len, ctype[0] ? ctype : NULL, &m, why,
				       sizeof(why));
		if (r < 0) {
			util_err_set_http(err, r, 200, NULL, "registry %s: manifest %s of %s: %s",
					  c->shown, reference, c->ref->repository, why);
			goto out;
		}
		if (m->kind == OCI_KIND_MANIFEST) {
			if (depth == 0 && c->opts.platform)
				r = check_config_platform(c, m, &want, deadline, err);
			if (r < 0)
				goto out;
			break;
		}
		if (depth + 1 >= INDEX_DEPTH_MAX) {
			util_err_set_http(err, -EBADMSG, 200, NULL,
					  "registry %s: indexes nested too deeply in %s", c->shown,
					  c->ref->repository);
			r = -EBADMSG;
			goto out;
		}
		r = oci_platform_select(m, &want, &idx, why, sizeof(why));
		if (r < 0) {
			util_err_set(err, r, "%s/%s: %s", c->shown, c->ref->repository, why);
			goto out;
		}
		oci_platform_format(&m->items[idx].platform, platform_shown, sizeof(platform_shown));
		free(reference);
		free(expect);
		reference = strdup(m->items[idx].digest);
		expect = strdup(m->items[idx].digest);
		if (!reference || !expect) {
			r = -ENOMEM;
			goto out;
		}
	}
	r = oci_layer_select(m, c->opts.blob, c->opts.layer, &idx, why, sizeof(why));
	if (r < 0) {
		util_err_set(err, r, "%s/%s: %s", c->shown, c->ref->repository, why);
		goto out;
	}
	layer = &m->items[idx];
	r = oci_layer_check_media_type(layer->media_type, why, sizeof(why));
	if (r < 0) {
		util_err_set(err, r, "%s/%s: layer %zu (%s): %s", c->shown, c->ref->repository, idx,
			     layer->digest, why);
		goto out;
	}
	memcpy(ret->digest, layer->digest, sizeof(ret->digest));
	ret->size = layer->size;
	oci_fmt(ret->media_type, sizeof(ret->media_type), "%s", layer->media_type);
	oci_fmt(ret->cache_key, sizeof(ret->cache_key), "%s", layer->digest + strlen("sha256:"));
	memcpy(ret->manifest_digest, digest, sizeof(ret->manifest_digest));
	/* The image manifest picked is the subject of its referrers (profiles): their
	 * descriptor of it needs its size and media type too. */
	ret->manifest_size = body.len;
	oci_fmt(ret->manifest_media_type, sizeof(ret->manifest_media_type), "%s",
		m->media_type[0] ? m->media_type : OCI_MT_OCI_MANIFEST);
	log_debug("oci: %s resolved to layer %zu %s (%llu bytes)%s%s%s", c->shown, idx,
		  layer->digest, (unsigned long long)layer->size, platform_shown[0] ? " for " : "",
		  platform_shown, ret->resolved_by_mirror ? ", the tag by a mirror alone" : "");
	free(c->metamap);
	c->metamap = m->items[idx].metamap; /* taken */
	m->items[idx].metamap = NULL;
	r = oci_client_set_blob(c, ret);
out:
	oci_manifest_free(m);
	util_buf_free(&body);
	return r;
}

void oci_client_stats(const struct oci_client *c, uint64_t *requests)
{
	*requests = atomic_load(&c->ctl_requests) + atomic_load(&c->auth_requests);
}
