// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Publishing: the one-layer OCI image that carries an EROFS blob (config and manifest built
 * deterministically, so pushing the same image twice gives the same digests), blob existence
 * checks, uploads (one PUT for small blobs, PATCH chunks with Content-Range for big ones; after
 * a failure the registry is asked how much of the session it holds and the upload goes on
 * from there, or starts over when the session is gone, a bounded number of times without
 * progress; a session an earlier process left is continued the same way) and the manifest
 * PUT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/json.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/sha256.h"
#include "util/time.h"

#define MONOLITHIC_MAX (32ULL << 20)
#define PATCH_CHUNK    (16ULL << 20)

int oci_image_build(const char *layer_digest, uint64_t layer_size, const char *platform,
		    const char *metamap, char **ret_config, char **ret_manifest)
{
	_cleanup_json_ json_t *config = NULL, *manifest = NULL;
	_cleanup_free_ char *cfg = NULL;
	char cfg_digest[UTIL_DIGEST_STR_LEN];
	uint8_t d[UTIL_SHA256_LEN];
	struct oci_platform p;
	int r;

	if (!util_digest_valid(layer_digest))
		return -EINVAL;
	if (platform)
		r = oci_platform_parse(platform, &p);
	else
		r = oci_platform_host(&p);
	if (r < 0)
		return r;
	config = json_pack("{s:s, s:s, s:{s:s, s:[s]}, s:{}}", "architecture", p.arch, "os", p.os,
			   "rootfs", "type", "layers", "diff_ids", layer_digest, "config");
	if (!config)
		return -ENOMEM;
	if (p.variant[0] && json_object_set_new(config, "variant", json_string(p.variant)) < 0)
		return -ENOMEM;
	cfg = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
	if (!cfg)
		return -ENOMEM;
	util_sha256_buf(cfg, strlen(cfg), d);
	util_digest_format(d, cfg_digest);
	manifest = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2,
			     "mediaType", OCI_MT_OCI_MANIFEST, "config", "mediaType",
			     OCI_MT_OCI_CONFIG, "digest", cfg_digest, "size", (json_int_t)strlen(cfg),
			     "layers", "mediaType", OCI_MT_EROFS_LAYER, "digest", layer_digest,
			     "size", (json_int_t)layer_size);
	if (!manifest)
		return -ENOMEM;
	if (metamap) {
		json_t *layer = json_array_get(json_object_get(manifest, "layers"), 0);

		if (json_object_set_new(layer, "annotations",
					json_pack("{s:s}", OCI_ANNOTATION_METADATA, metamap)) < 0)
			return -ENOMEM;
	}
	*ret_manifest = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
	if (!*ret_manifest)
		return -ENOMEM;
	*ret_config = TAKE_PTR(cfg);
	return 0;
}

/* HEAD of the blob: 1 with its size when the registry has it (size 0 when it does not say),
 * 0 when it does not. */
static int blob_head(struct oci_client *c, const char *digest, uint64_t *ret_size,
		     struct util_error *err)
{
	struct oci_req q = { .method = "HEAD", .body_fd = -1, .registry_auth = true, .push = true,
			     .follow = true };
	_cleanup_free_ char *url = NULL;
	struct oci_resp resp;
	struct util_error local;
	char what[400];
	int r;

	if (!err)
		err = &local;
	if (asprintf(&url, "%s/%s/blobs/%s", c->up->api, c->ref->repository, digest) < 0)
		return -ENOMEM;
	q.url = url;
	r = oci_request(c, &q, util_now_ms() + c->timeout_ms, &resp, NULL, err);
	if (r < 0)
		return r;
	*ret_size = resp.has_content_length ? resp.content_length : 0;
	if (resp.status == 200)
		return 1;
	if (resp.status == 404)
		return 0;
	oci_fmt(what, sizeof(what), "registry %s: checking blob %s in %s", c->shown, digest,
		c->ref->repository);
	return oci_status_error(c, &resp, NULL, what, err);
}

static int stored_size_error(struct oci_client *c, const char *digest, uint64_t stored,
			     uint64_t size, struct util_error *err)
{
	return util_err_set(err, -EBADMSG,
			    "registry %s: blob %s was stored with %llu bytes, not %llu: the "
			    "registry lost part of the upload and did not check the digest; "
			    "delete the blob there and push again",
			    c->shown, digest, (unsigned long long)stored, (unsigned long long)size);
}

int oci_blob_exists(struct oci_client *c, const char *digest, uint64_t size, struct util_error *err)
{
	uint64_t stored = 0;
	int r = blob_head(c, digest, &stored, err);

	/* (a registry that does not say the size: nothing to hold against it) */
	if (r > 0 && size && stored && stored != size)
		return stored_size_error(c, digest, stored, size, err);
	return r;
}

static int stored_size_check(struct oci_client *c, const char *digest, uint64_t size,
			     struct util_error *err)
{
	struct util_error ignored = UTIL_ERROR_INIT;
	uint64_t stored = 0;

	/* Not there yet (an eventually consistent registry), not said, or not asked (a failed
	 * HEAD): nothing to hold against the push. */
	if (blob_head(c, digest, &stored, &ignored) <= 0 || !stored || stored == size)
		return 0;
	return stored_size_error(c, digest, stored, size, err);
}

/* Location of an upload reply, made absolute against the URL it answered. */
static int upload_location(const char *base, const struct oci_resp *resp, char **ret)
{
	return resp->location[0] ? oci_url_join(base, resp->location, ret) : -EBADMSG;
}

/* One upload of a blob: the session it goes through and how far the registry has it. */
struct upload {
	struct oci_client *c;
	int fd;
	const void *mem;
	uint64_t size;
	const char *digest;
	const struct oci_upload_opts *o;
	uint64_t last_progress_ms; /* bytes last moved then (or the start) */
	uint64_t high;		   /* the furthest byte of the blob sent so far */
	bool fresh_again;	   /* a new session was opened after a refused final PUT */
	char what[400];
	char *loc;    /* the session's URL (its latest Location); NULL: no session open */
	uint64_t off; /* bytes of the blob the registry holds */
	bool resumed; /* the session was continued from where the registry had it */
	uint64_t base; /* the body of the request in flight starts here (progress) */
};

static void on_progress(void *ctx, uint64_t sent)
{
	struct upload *u = ctx;

	if (u->base + sent > u->high) { /* bytes are moving (the callback also comes without) */
		u->high = u->base + sent;
		u->last_progress_ms = util_now_ms();
	}
	if (u->o && u->o->progress)
		u->o->progress(u->o->progress_ctx, u->base + sent, u->size);
}

static bool chunked(const struct upload *u)
{
	return u->size > MONOLITHIC_MAX;
}

/* The session moved to loc with off bytes: remember it, and tell whoever keeps records. */
/* Each request gets timeout= (the man page: "deadline for each request"), and time for its
 * body at 64 KiB/s at least: a slow link uploads, a stalled one is caught sooner by the
 * transfer's low-speed limit. */
static uint64_t step_deadline(const struct upload *u, uint64_t body_len)
{
	return util_now_ms() + u->c->timeout_ms + body_len / 64;
}

static void session_moved(struct upload *u, char *loc, uint64_t off)
{
	if (off > u->off)
		u->last_progress_ms = util_now_ms();
	free(u->loc);
	u->loc = loc;
	u->off = off;
	if (u->o && u->o->session && chunked(u))
		u->o->session(u->o->session_ctx, loc, off);
}

static void session_drop(struct upload *u)
{
	free(u->loc);
	u->loc = NULL;
	u->off = 0;
	u->resumed = false;
}

/* One step of an upload session (the POST that opens it, or a PATCH): the registry answers
 * 202 Accepted with the Location of the next step, resolved against `base`. (Its Range is
 * not taken for what it holds: some registries report it late. A lost chunk shows in the
 * final PUT's digest check, or in the stored size: see upload.) */
static int upload_step(struct upload *u, const struct oci_req *q, const char *base,
		       struct util_buf *body, const char *no_location, char **ret_loc,
		       struct util_error *err)
{
	struct oci_resp resp;
	int r;

	r = oci_request(u->c, q, step_deadline(u, q->body_len), &resp, body, err);
	if (r < 0)
		return r;
	if (resp.status != 202)
		return oci_status_error(u->c, &resp, body, u->what, err);
	r = upload_location(base, &resp, ret_loc);
	if (r < 0)
		util_err_set_http(err, r, (int)resp.status, NULL, "%s: %s", u->what, no_location);
	return r;
}

static int session_open(struct upload *u, struct util_buf *body, struct util_error *err)
{
	struct oci_req q = { .method = "POST", .body_fd = -1, .registry_auth = true,
			     .push = true };
	_cleanup_free_ char *start = NULL;
	char *loc = NULL;
	int r;

	if (asprintf(&start, "%s/%s/blobs/uploads/", u->c->up->api, u->c->ref->repository) < 0)
		return -ENOMEM;
	q.url = start;
	r = upload_step(u, &q, start, body, "upload started without a Location", &loc, err);
	if (r < 0)
		return r;
	session_moved(u, loc, 0);
	return 0;
}

/* Whether url is a session under the registry's API for the client's repository (a record
 * is untrusted: credentials must never go to another origin or path). */
static bool session_url_ok(struct oci_client *c, const char *url)
{
	_cleanup_free_ char *want = NULL;
	CURLU *a = curl_url(), *b = curl_url();
	char *pa = NULL, *pb = NULL;
	bool ok = false;

	if (asprintf(&want, "%s/%s/blobs/uploads/", c->up->api, c->ref->repository) < 0)
		want = NULL;
	if (want && a && b && oci_same_origin(url, want) &&
	    curl_url_set(a, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_set(b, CURLUPART_URL, want, 0) == CURLUE_OK &&
	    curl_url_get(a, CURLUPART_PATH, &pa, 0) == CURLUE_OK &&
	    curl_url_get(b, CURLUPART_PATH, &pb, 0) == CURLUE_OK)
		ok = strncmp(pa, pb, strlen(pb)) == 0 && pa[strlen(pb)] &&
		     !strchr(pa + strlen(pb), '/');
	curl_free(pa);
	curl_free(pb);
	curl_url_cleanup(a);
	curl_url_cleanup(b);
	return ok;
}

/* Ask the registry where the session at url stands (GET: 204 with "Range: 0-N" and the
 * Location to go on with) and continue it from there. -ENOENT when the registry no longer
 * knows it (404: expired, cancelled, or -- the distribution registry -- its URL's state no
 * longer matches the bytes it holds); -EBADMSG when the reply makes no sense for this blob. */
static int session_status(struct upload *u, const char *url, struct util_buf *body,
			  struct util_error *err)
{
	struct oci_req q = { .method = "GET", .url = url, .body_fd = -1, .registry_auth = true,
			     .push = true };
	struct oci_resp resp;
	char *loc = NULL;
	uint64_t have;
	int r;

	r = oci_request(u->c, &q, step_deadline(u, 0), &resp, body, err);
	if (r < 0)
		return r;
	if (resp.status != 204 && resp.status != 200)
		return oci_status_error(u->c, &resp, body, u->what, err);
	if (!resp.range[0] || oci_upload_range_parse(resp.range, strlen(resp.range), &have) < 0)
		return util_err_set_http(err, -EBADMSG, (int)resp.status, NULL,
					 "%s: session status without a usable Range (\"%.60s\")",
					 u->what, resp.range);
	/* "0-0" is also how the distribution registry says it holds nothing: read it so. One byte
	 * too few is sent again; one too many would not match the digest. */
	if (have == 1)
		have = 0;
	if (have > u->size)
		return util_err_set_http(err, -EBADMSG, (int)resp.status, NULL,
					 "%s: the registry holds %llu bytes of a %llu-byte blob",
					 u->what, (unsigned long long)have,
					 (unsigned long long)u->size);
	r = resp.location[0] ? upload_location(url, &resp, &loc) : 0;
	if (r < 0)
		return util_err_set_http(err, r, (int)resp.status, NULL, "%s: bad Location",
					 u->what);
	if (!loc && !(loc = strdup(url)))
		return -ENOMEM;
	session_moved(u, loc, have);
	u->resumed = true;
	return 0;
}

/* PATCH the rest of the blob in chunks with Content-Range; each reply gives the next
 * Location. */
static int send_chunks(struct upload *u, struct util_buf *body, struct util_error *err)
{
	while (u->off < u->size) {
		uint64_t n = MIN(u->size - u->off, PATCH_CHUNK);
		struct curl_slist *extra = NULL;
		struct oci_req q;
		char *next = NULL;
		int r;

		if (!oci_slist_add(&extra, "Content-Range: %llu-%llu", (unsigned long long)u->off,
				   (unsigned long long)(u->off + n - 1)))
			return -ENOMEM;
		q = (struct oci_req){ .method = "PATCH", .url = u->loc, .body_fd = u->fd,
				      .body_off = u->off, .body_len = n,
				      .content_type = "application/octet-stream",
				      .registry_auth = true, .push = true, .no_retry = true,
				      .extra = extra, .progress = on_progress, .progress_ctx = u };
		if (u->mem) {
			q.body = (const uint8_t *)u->mem + u->off;
			q.body_fd = -1;
		}
		u->base = u->off;
		r = upload_step(u, &q, u->loc, body, "chunk accepted without a Location", &next,
				err);
		curl_slist_free_all(extra);
		if (r < 0)
			return r;
		session_moved(u, next, u->off + n);
	}
	return 0;
}

/* The final PUT with the digest: the rest of the body (small blobs), or nothing after the
 * chunks. */
static int finish(struct upload *u, struct util_buf *body, struct util_error *err)
{
	struct oci_req q = { .method = "PUT", .body_fd = -1, .registry_auth = true, .push = true,
			     .no_retry = true, .content_type = "application/octet-stream" };
	_cleanup_free_ char *put = NULL, *esc = NULL;
	struct oci_resp resp;
	int r;

	esc = curl_easy_escape(NULL, u->digest, 0);
	if (!esc ||
	    asprintf(&put, "%s%cdigest=%s", u->loc, strchr(u->loc, '?') ? '&' : '?', esc) < 0)
		return -ENOMEM;
	q.url = put;
	if (u->off < u->size) {
		q.body = u->mem ? (const uint8_t *)u->mem + u->off : NULL;
		q.body_fd = u->mem ? -1 : u->fd;
		q.body_off = u->off;
		q.body_len = u->size - u->off;
		q.progress = on_progress;
		q.progress_ctx = u;
		u->base = u->off;
	}
	r = oci_request(u->c, &q, step_deadline(u, q.body_len), &resp, body, err);
	if (r < 0)
		return r;
	if (resp.status != 201 && resp.status != 204)
		return oci_status_error(u->c, &resp, body, u->what, err);
	if (resp.docker_digest[0] && strcmp(resp.docker_digest, u->digest) != 0)
		return util_err_set_http(err, -EBADMSG, (int)resp.status, NULL,
					 "%s: the registry stored it as %.80s, not %s", u->what,
					 resp.docker_digest, u->digest);
	return 0;
}

/* A step failed with r: whether the session may still hold what was sent before it. A reset,
 * a timeout or a 5xx leave the registry with some of the body or none; a 416 says the offset
 * was not the registry's. */
static bool ask_session(int r, const struct util_error *err)
{
	return r == -EAGAIN || (err->http_status == 416);
}

static int upload(struct oci_client *c, int fd, const void *mem, uint64_t size, const char *digest,
		  struct oci_upload_opts *o, struct util_error *err)
{
	/* Each request has its own deadline (step_deadline); the upload goes on while the
	 * registry takes bytes, and gives up once it took none for timeout=. */
	struct upload u = {.c = c,
			   .fd = fd,
			   .mem = mem,
			   .size = size,
			   .digest = digest,
			   .o = o,
			   .last_progress_ms = util_now_ms()};
	struct util_buf body = UTIL_BUF_INIT(OCI_ERROR_BODY_MAX);
	struct util_error local;
	uint64_t progress_mark = 0;
	int failures = 0, r;

	if (!err)
		err = &local;
	oci_fmt(u.what, sizeof(u.what), "registry %s: uploading blob %s to %s", c->shown, digest,
		c->ref->repository);
	if (o && o->resume_url) {
		if (!session_url_ok(c, o->resume_url)) {
			log_debug("oci: the recorded upload session is not under %s/%s: a new one",
				  c->up->api, c->ref->repository);
		} else if ((r = session_status(&u, o->resume_url, &body, err)) < 0) {
			log_debug("oci: the recorded upload session is gone (%s): a new one",
				  util_err_msg(err, r));
			util_err_clear(err);
			session_drop(&u);
		} else {
			log_debug("oci: continuing the recorded upload of %s at byte %llu", digest,
				  (unsigned long long)u.off);
			o->resumed = true;
			o->resumed_at = u.off;
		}
	}
	progress_mark = u.off;
	for (;;) {
		r = u.loc ? 0 : session_open(&u, &body, err);
		if (r >= 0 && chunked(&u))
			r = send_chunks(&u, &body, err);
		if (r >= 0)
			r = finish(&u, &body, err);
		if (r >= 0)
			break;
		if (r == -ENOMEM)
			goto out;
		if (u.off > progress_mark) {
			failures = 0;
			progress_mark = u.off;
		}
		/* A registry down for a moment (503s, a restart) is waited for, with growing
		 * pauses, until timeout= passed without a byte taken; what is no such failure
		 * ends the upload below (ask_session). */
		failures++;
		if (util_now_ms() >= u.last_progress_ms + c->timeout_ms)
			goto out;
		if (u.loc && (u.resumed || !u.fresh_again) && !ask_session(r, err) &&
		    err->http_status == 400) {
			/* Bytes that do not add up to the digest: a continued session whose
			 * registry misreported its offset, or a chunk the registry lost. Once more
			 * from the start. */
			log_debug("oci: the upload was refused (%s): a new one",
				  util_err_msg(err, r));
			u.fresh_again = u.fresh_again || !u.resumed;
			session_drop(&u);
			u.high = 0;
			continue;
		}
		if (!ask_session(r, err))
			goto out;
		util_sleep_ms(oci_backoff_ms(failures - 1));
		if (u.loc) {
			_cleanup_free_ char *at = strdup(u.loc);
			struct util_error why = UTIL_ERROR_INIT;
			int k = at ? session_status(&u, at, &body, &why) : -ENOMEM;

			if (k == -ENOMEM) {
				r = k;
				goto out;
			}
			if (k == -ENOENT && u.off == size &&
			    oci_blob_exists(c, digest, size, NULL) > 0) {
				/* the final PUT went through, only its answer was lost */
				break;
			} else if (k < 0) {
				log_debug("oci: the upload session is gone (%s): a new one",
					  util_err_msg(&why, k));
				session_drop(&u);
			} else {
				log_debug("oci: the registry holds %llu bytes of %s: going on from "
					  "there",
					  (unsigned long long)u.off, digest);
			}
		}
		util_err_clear(err);
	}
	/* A registry that lost bytes and took the blob without checking its digest keeps a
	 * short one under that digest: its size tells. */
	r = stored_size_check(c, digest, size, err);
	if (r < 0)
		goto out;
	if (o && o->progress)
		o->progress(o->progress_ctx, size, size);
	r = 0;
out:
	free(u.loc);
	util_buf_free(&body);
	return r;
}

int oci_blob_upload_fd(struct oci_client *c, int fd, uint64_t size, const char *digest,
		       struct oci_upload_opts *o, struct util_error *err)
{
	util_err_clear(err);
	return upload(c, fd, NULL, size, digest, o, err);
}

int oci_blob_upload_buf(struct oci_client *c, const void *data, size_t len, const char *digest,
			struct util_error *err)
{
	util_err_clear(err);
	return upload(c, -1, data, len, digest, NULL, err);
}

int oci_blob_ensure(struct oci_client *c, const void *data, size_t len,
		    char digest[UTIL_DIGEST_STR_LEN], struct util_error *err)
{
	uint8_t d[UTIL_SHA256_LEN];
	int r;

	util_sha256_buf(data, len, d);
	util_digest_format(d, digest);
	r = oci_blob_exists(c, digest, len, err);
	if (r == 0)
		r = oci_blob_upload_buf(c, data, len, digest, err);
	return r < 0 ? r : 0;
}

int oci_manifest_put_ensured(struct oci_client *c, const char *reference, const char *media_type,
			     const void *data, size_t len,
			     int (*ensure)(void *ctx, struct util_error *err), void *ctx,
			     char ret_digest[UTIL_DIGEST_STR_LEN], struct oci_resp *ret_resp,
			     struct util_error *err)
{
	struct oci_resp resp;
	struct util_error local;
	int r;

	if (!err)
		err = &local;
	for (int attempt = 0;; attempt++) {
		r = oci_manifest_put_resp(c, reference, media_type, data, len, NULL, ret_digest,
					  ret_resp ? ret_resp : &resp, err);
		if (r >= 0 || err->http_status != 400 || attempt == OCI_MANIFEST_PUT_ATTEMPTS - 1)
			return r;
		log_debug("oci: %s refused the manifest (%s); making sure of its blobs again",
			  c->shown, err->message);
		util_sleep_ms(oci_backoff_ms(attempt));
		util_err_clear(err);
		r = ensure(ctx, err);
		if (r < 0)
			return r;
	}
}

int oci_manifest_put_resp(struct oci_client *c, const char *reference, const char *media_type,
			  const void *data, size_t len, const char *if_match,
			  char ret_digest[UTIL_DIGEST_STR_LEN], struct oci_resp *ret_resp,
			  struct util_error *err)
{
	struct oci_req q = { .method = "PUT", .body = data, .body_len = len, .body_fd = -1,
			     .content_type = media_type, .registry_auth = true, .push = true };
	struct util_buf body = UTIL_BUF_INIT(OCI_ERROR_BODY_MAX);
	_cleanup_free_ char *url = NULL;
	struct curl_slist *extra = NULL;
	uint8_t d[UTIL_SHA256_LEN];
	struct oci_resp resp;
	struct util_error local;
	char what[400];
	int r;

	if (!err)
		err = &local;
	util_err_clear(err);
	util_sha256_buf(data, len, d);
	util_digest_format(d, ret_digest);
	if (asprintf(&url, "%s/%s/manifests/%s", c->up->api, c->ref->repository,
		     reference ? reference : ret_digest) < 0)
		return -ENOMEM;
	q.url = url;
	if (if_match) {
		if (!oci_slist_add(&extra, "If-Match: %s", if_match))
			return -ENOMEM;
		q.extra = extra;
	}
	oci_fmt(what, sizeof(what), "registry %s: storing the manifest as %s%c%s", c->shown,
		c->ref->repository, reference ? ':' : '@', reference ? reference : ret_digest);
	r = oci_request(c, &q, util_now_ms() + c->timeout_ms, &resp, &body, err);
	if (r < 0)
		goto out;
	if (resp.status != 201 && resp.status != 200 && resp.status != 204) {
		r = oci_status_error(c, &resp, &body, what, err);
		goto out;
	}
	if (resp.docker_digest[0] && strcmp(resp.docker_digest, ret_digest) != 0) {
		util_err_set_http(err, -EILSEQ, (int)resp.status, NULL,
				  "%s: the registry stored it as %.80s, not %s", what,
				  resp.docker_digest, ret_digest);
		r = -EILSEQ;
		goto out;
	}
	*ret_resp = resp;
	r = 0;
out:
	curl_slist_free_all(extra);
	util_buf_free(&body);
	return r;
}
