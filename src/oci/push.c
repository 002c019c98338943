// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Publishing: the one-layer OCI image that carries an EROFS blob (config and manifest built
 * deterministically, so pushing the same image twice gives the same digests), blob existence
 * checks, uploads (one PUT for small blobs, PATCH chunks with Content-Range for big ones; a
 * failed upload is started over a bounded number of times) and the manifest PUT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/time.h"

#define MONOLITHIC_MAX (32ULL << 20)
#define PATCH_CHUNK (16ULL << 20)
#define UPLOAD_TRIES 3

int oci_image_build(const char *layer_digest, uint64_t layer_size, const char *platform,
		    char **ret_config, char **ret_manifest)
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
	*ret_manifest = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
	if (!*ret_manifest)
		return -ENOMEM;
	*ret_config = TAKE_PTR(cfg);
	return 0;
}

int oci_blob_exists(struct oci_client *c, const char *digest, struct util_error *err)
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
	if (resp.status == 200)
		return 1;
	if (resp.status == 404)
		return 0;
	oci_fmt(what, sizeof(what), "registry %s: checking blob %s in %s", c->shown, digest,
		c->ref->repository);
	return oci_status_error(c, &resp, NULL, what, err);
}

/* Location of an upload reply, made absolute against the URL it answered. */
static int upload_location(const char *base, const struct oci_resp *resp, char **ret)
{
	return resp->location[0] ? oci_url_join(base, resp->location, ret) : -EBADMSG;
}

struct upload_progress {
	oci_progress_fn fn;
	void *ctx;
	uint64_t base, total;
};

static void on_progress(void *ctx, uint64_t sent)
{
	struct upload_progress *p = ctx;

	if (p->fn)
		p->fn(p->ctx, p->base + sent, p->total);
}

/* One step of an upload session (the POST that opens it, or a PATCH): the registry answers
 * 202 Accepted with the Location of the next step, resolved against `base`. */
static int upload_step(struct oci_client *c, const struct oci_req *q, uint64_t deadline,
		       const char *base, struct util_buf *body, const char *what,
		       const char *no_location, char **ret_loc, struct util_error *err)
{
	struct oci_resp resp;
	int r;

	r = oci_request(c, q, deadline, &resp, body, err);
	if (r < 0)
		return r;
	if (resp.status != 202)
		return oci_status_error(c, &resp, body, what, err);
	r = upload_location(base, &resp, ret_loc);
	if (r < 0)
		util_err_set_http(err, r, (int)resp.status, NULL, "%s: %s", what, no_location);
	return r;
}

static int upload_once(struct oci_client *c, int fd, const void *mem, uint64_t size,
		       const char *digest, struct upload_progress *prog, uint64_t deadline,
		       struct util_error *err)
{
	struct oci_req q = { .body_fd = -1, .registry_auth = true, .push = true };
	struct util_buf body = UTIL_BUF_INIT(OCI_ERROR_BODY_MAX);
	_cleanup_free_ char *start = NULL, *loc = NULL, *put = NULL, *esc = NULL;
	struct curl_slist *extra = NULL;
	struct oci_resp resp;
	char what[400];
	uint64_t off = 0;
	int r;

	oci_fmt(what, sizeof(what), "registry %s: uploading blob %s to %s", c->shown, digest,
		c->ref->repository);
	if (asprintf(&start, "%s/%s/blobs/uploads/", c->up->api, c->ref->repository) < 0)
		return -ENOMEM;
	q.method = "POST";
	q.url = start;
	r = upload_step(c, &q, deadline, start, &body, what, "upload started without a Location",
			&loc, err);
	if (r < 0)
		goto out;
	if (size > MONOLITHIC_MAX) {
		/* chunked: PATCH with Content-Range, each reply gives the next Location */
		while (off < size) {
			uint64_t n = size - off < PATCH_CHUNK ? size - off : PATCH_CHUNK;
			char *next = NULL;

			extra = NULL;
			if (!oci_slist_add(&extra, "Content-Range: %llu-%llu", (unsigned long long)off,
					   (unsigned long long)(off + n - 1))) {
				r = -ENOMEM;
				goto out;
			}
			q = (struct oci_req){ .method = "PATCH", .url = loc, .body_fd = fd,
					      .body_off = off, .body_len = n, .body = NULL,
					      .content_type = "application/octet-stream",
					      .registry_auth = true, .push = true, .no_retry = true,
					      .extra = extra, .progress = on_progress,
					      .progress_ctx = prog };
			if (mem) {
				q.body = (const uint8_t *)mem + off;
				q.body_fd = -1;
			}
			prog->base = off;
			r = upload_step(c, &q, deadline, loc, &body, what,
					"chunk accepted without a Location", &next, err);
			curl_slist_free_all(extra);
			extra = NULL;
			if (r < 0)
				goto out;
			free(loc);
			loc = next;
			off += n;
		}
	}
	/* the final PUT: the whole body when small, nothing after chunks */
	esc = curl_easy_escape(NULL, digest, 0);
	if (!esc || asprintf(&put, "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', esc) < 0) {
		r = -ENOMEM;
		goto out;
	}
	q = (struct oci_req){ .method = "PUT", .url = put, .body_fd = -1, .registry_auth = true,
			      .push = true, .no_retry = true,
			      .content_type = "application/octet-stream" };
	if (off < size) {
		q.body = mem;
		q.body_fd = mem ? -1 : fd;
		q.body_len = size;
		q.progress = on_progress;
		q.progress_ctx = prog;
		prog->base = 0;
	}
	r = oci_request(c, &q, deadline, &resp, &body, err);
	if (r < 0)
		goto out;
	if (resp.status != 201 && resp.status != 204) {
		r = oci_status_error(c, &resp, &body, what, err);
		goto out;
	}
	if (prog->fn)
		prog->fn(prog->ctx, size, size);
	r = 0;
out:
	curl_slist_free_all(extra);
	util_buf_free(&body);
	return r;
}

static int upload(struct oci_client *c, int fd, const void *mem, uint64_t size, const char *digest,
		  oci_progress_fn fn, void *ctx, struct util_error *err)
{
	struct upload_progress prog = { .fn = fn, .ctx = ctx, .total = size };
	/* A big upload gets time in proportion to its size (at least 10 MB/s), on top of the
	 * timeout for one request. */
	uint64_t deadline = util_now_ms() + c->timeout_ms + size / 10000;
	struct util_error local;
	int r = 0;

	if (!err)
		err = &local;
	for (int i = 0; i < UPLOAD_TRIES; i++) {
		r = upload_once(c, fd, mem, size, digest, &prog, deadline, err);
		if (r != -EAGAIN || util_now_ms() >= deadline)
			return r;
		util_sleep_ms(oci_backoff_ms(i));
	}
	return r;
}

int oci_blob_upload_fd(struct oci_client *c, int fd, uint64_t size, const char *digest,
		       oci_progress_fn fn, void *ctx, struct util_error *err)
{
	util_err_clear(err);
	return upload(c, fd, NULL, size, digest, fn, ctx, err);
}

int oci_blob_upload_buf(struct oci_client *c, const void *data, size_t len, const char *digest,
			struct util_error *err)
{
	util_err_clear(err);
	return upload(c, -1, data, len, digest, NULL, NULL, err);
}

int oci_manifest_put(struct oci_client *c, const char *reference, const char *media_type,
		     const void *data, size_t len, char ret_digest[UTIL_DIGEST_STR_LEN],
		     struct util_error *err)
{
	struct oci_resp resp;

	return oci_manifest_put_resp(c, reference, media_type, data, len, ret_digest, &resp, err);
}

int oci_manifest_put_resp(struct oci_client *c, const char *reference, const char *media_type,
			  const void *data, size_t len, char ret_digest[UTIL_DIGEST_STR_LEN],
			  struct oci_resp *ret_resp, struct util_error *err)
{
	struct oci_req q = { .method = "PUT", .body = data, .body_len = len, .body_fd = -1,
			     .content_type = media_type, .registry_auth = true, .push = true };
	struct util_buf body = UTIL_BUF_INIT(OCI_ERROR_BODY_MAX);
	_cleanup_free_ char *url = NULL;
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
	util_buf_free(&body);
	return r;
}
