// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * http(s):// URL sources: size and validator from a HEAD (or, where HEAD is refused, as with
 * presigned GET-only URLs, a one-byte range GET), the cache key, and the conditional headers
 * (If-Match / If-Unmodified-Since plus If-Range) that make every later range read fail with
 * -ESTALE instead of mixing two versions of a changed object.
 */
#include <errno.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/sha256.h"
#include "util/strutil.h"
#include "util/time.h"

static bool strong_etag(const char *v)
{
	size_t n = strlen(v);

	return n >= 2 && v[0] == '"' && v[n - 1] == '"';
}

int oci_url_conditions(struct oci_client *c, const struct oci_blob *b)
{
	const char *v = b->validator;

	free(c->cond_match);
	free(c->cond_range);
	c->cond_match = c->cond_range = NULL;
	if (!v[0] || util_startswith(v, "W/"))
		return 0; /* weak ETags cannot be used for ranges; replies are still compared */
	if (strong_etag(v)) {
		if (asprintf(&c->cond_match, "If-Match: %s", v) < 0)
			c->cond_match = NULL;
	} else if (asprintf(&c->cond_match, "If-Unmodified-Since: %s", v) < 0) {
		c->cond_match = NULL;
	}
	if (asprintf(&c->cond_range, "If-Range: %s", v) < 0)
		c->cond_range = NULL;
	return c->cond_match && c->cond_range ? 0 : -ENOMEM;
}

static bool header_value_ok(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

int oci_url_resolve(struct oci_client *c, struct oci_blob *ret, struct util_error *err)
{
	struct oci_req q = { .method = "HEAD", .url = c->ref->url, .body_fd = -1, .follow = true };
	struct curl_slist *probe = NULL;
	uint64_t deadline = util_now_ms() + c->timeout_ms, size = 0, f, l, t;
	bool have_size = false, ranges = true;
	struct oci_resp resp;
	_cleanup_free_ char *keysrc = NULL;
	int r;

	r = oci_request(c, &q, deadline, &resp, NULL, err);
	if (r < 0)
		return r;
	if (resp.status == 200 && resp.has_content_length) {
		size = resp.content_length;
		have_size = true;
		ranges = !resp.accept_ranges[0] || !strcasecmp(resp.accept_ranges, "bytes");
	} else if (resp.status == 404 || resp.status == 410) {
		return oci_status_error(c, &resp, NULL, c->shown, err);
	}
	if (!have_size) {
		/* HEAD refused (presigned URLs are often GET-only) or no length: ask for one byte. */
		if (!oci_slist_add(&probe, "Range: bytes=0-0"))
			return -ENOMEM;
		q.method = "GET";
		q.extra = probe;
		q.headers_only = true;
		r = oci_request(c, &q, deadline, &resp, NULL, err);
		curl_slist_free_all(probe);
		if (r < 0)
			return r;
		if (resp.status == 206 &&
		    oci_content_range_parse(resp.content_range, strlen(resp.content_range), &f, &l,
					    &t) == 0 && t != UINT64_MAX) {
			size = t;
		} else if (resp.status == 200 && resp.has_content_length) {
			size = resp.content_length;
			ranges = false;
		} else if (resp.status == 200 || resp.status == 206) {
			return util_err_set_http(
			    err, -EBADMSG, (int)resp.status, NULL,
			    "%s: the server does not tell the size of the object", c->shown);
		} else {
			return oci_status_error(c, &resp, NULL, c->shown, err);
		}
	}
	if (!ranges) {
		atomic_store(&c->up->ranges_ignored, true);
		if (size > OCI_WHOLE_BODY_MAX) {
			return util_err_set_http(
			    err, -EMEDIUMTYPE, (int)resp.status, NULL,
			    "%s: the server does not support byte ranges, which lazy reading "
			    "of a %llu-byte image needs",
			    c->shown, (unsigned long long)size);
		}
	}
	memset(ret, 0, sizeof(*ret));
	ret->size = size;
	oci_fmt(ret->media_type, sizeof(ret->media_type), "%.*s",
		(int)strcspn(resp.content_type, "; \t"), resp.content_type);
	if (resp.etag[0] && header_value_ok(resp.etag))
		oci_fmt(ret->validator, sizeof(ret->validator), "%s", resp.etag);
	else if (resp.last_modified[0] && header_value_ok(resp.last_modified))
		oci_fmt(ret->validator, sizeof(ret->validator), "%s", resp.last_modified);
	if (c->opts.digest) {
		/* The entry is this URL's content of that digest: digest= is the user's word,
		 * checked once every byte is here. Under the digest's own key, a server's other
		 * image (padded to the size) would be what a registry mount of that digest reads
		 * meanwhile, and after. */
		oci_fmt(ret->digest, sizeof(ret->digest), "%s", c->opts.digest);
		if (asprintf(&keysrc, "%s\n%s", c->ref->url, c->opts.digest) < 0)
			return -ENOMEM;
		util_sha256_buf_hex(keysrc, strlen(keysrc), ret->cache_key);
		return 0;
	}
	if (!ret->validator[0]) {
		return util_err_set_http(
		    err, -EMEDIUMTYPE, (int)resp.status, NULL,
		    "%s: the server gives neither ETag nor Last-Modified, so a changed object "
		    "could not be detected; pin the content with -o digest=sha256:...",
		    c->shown);
	}
	/* The entry is this URL in this version: ETag, or Last-Modified and size. */
	if (asprintf(&keysrc, "%s\n%s", c->ref->url, ret->validator) < 0)
		return -ENOMEM;
	if (!strong_etag(ret->validator) && !util_startswith(ret->validator, "W/")) {
		char *k2 = NULL;

		if (asprintf(&k2, "%s\n%llu", keysrc, (unsigned long long)size) < 0)
			return -ENOMEM;
		free(keysrc);
		keysrc = k2;
	}
	util_sha256_buf_hex(keysrc, strlen(keysrc), ret->cache_key);
	return 0;
}
