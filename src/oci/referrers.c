// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * OCI 1.1 referrers of the image manifest a client resolved, over the network: attaching an
 * artifact (its blob, the empty config, its manifest with the image manifest as subject,
 * then, unless the registry answered with OCI-Subject, the referrers tag schema's index),
 * finding the newest referrer of a type (the referrers API, else the fallback tag), and
 * fetching an artifact's layer, digest-checked. The JSON work is in artifact.c.
 *
 * Lookups serve a mount that must not wait long for an optional profile: they run under
 * the caller's deadline and say nothing; "there is none" is -ENOENT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/sha256.h"
#include "util/time.h"

/* Pages of a paginated referrers list followed at the most (the artifactType filter keeps
 * ours to one page in practice). */
#define REFERRERS_PAGES_MAX 16

/* The descriptor of the image manifest the client resolved: the subject. */
static int subject_of(const struct oci_client *c, struct oci_descriptor *ret,
		      struct util_error *err)
{
	memset(ret, 0, sizeof(*ret));
	if (c->ref->is_url || !c->have_blob || !util_digest_valid(c->blob.manifest_digest))
		return util_err_set(err, -EINVAL, "%s: no image manifest was resolved to refer to",
				    c->shown);
	oci_fmt(ret->media_type, sizeof(ret->media_type), "%s",
		c->blob.manifest_media_type[0] ? c->blob.manifest_media_type : OCI_MT_OCI_MANIFEST);
	memcpy(ret->digest, c->blob.manifest_digest, sizeof(ret->digest));
	ret->size = c->blob.manifest_size;
	return 0;
}

static uint64_t deadline_of(const struct oci_client *c, uint64_t timeout_ms)
{
	return util_now_ms() + (timeout_ms ? timeout_ms : c->timeout_ms);
}

/* The artifact's two blobs: the profile (its digest into layer_digest) and the empty config
 * (config_digest). */
struct artifact_blobs {
	struct oci_client *c;
	const void *data;
	size_t len;
	char layer_digest[UTIL_DIGEST_STR_LEN];
	char config_digest[UTIL_DIGEST_STR_LEN];
};

static int blobs_ensure(void *ctx, struct util_error *err)
{
	struct artifact_blobs *b = ctx;
	int r = oci_blob_ensure(b->c, b->data, b->len, b->layer_digest, err);

	return r < 0 ? r
		     : oci_blob_ensure(b->c, OCI_EMPTY_JSON, strlen(OCI_EMPTY_JSON),
				       b->config_digest, err);
}

/* Rounds of read, add, write of the referrers tag at the most before a push gives up. */
#define TAG_ADD_ROUNDS 12

/* What the rounds of one push learn. */
struct tag_rounds {
	char refused[UTIL_DIGEST_STR_LEN]; /* the index a conditional write was refused on */
	bool unconditional; /* a refusal of an index nobody changed: the registry's ETag is not
			     * the digest, so If-Match cannot be used there */
};

/* One round of the referrers tag schema: read the index under the subject's tag, add the
 * artifact's descriptor, write it back unless it was there already (*wrote says which).
 * What is there and is not an index is left alone. The write is conditional on the index
 * read (If-Match: its digest, the distribution registry's ETag of a manifest): a registry
 * that honours it refuses (412, -ESTALE) when another client wrote in between. */
static int tag_index_round(struct oci_client *c, const char *tag,
			   const struct oci_descriptor *artifact, struct tag_rounds *tr,
			   bool *wrote, struct util_error *err)
{
	struct util_buf body = UTIL_BUF_INIT(OCI_MANIFEST_MAX);
	_cleanup_free_ char *index = NULL;
	char ctype[256] = "", digest[UTIL_DIGEST_STR_LEN], put_digest[UTIL_DIGEST_STR_LEN],
	     why[512] = "", if_match[UTIL_DIGEST_STR_LEN + 16];
	bool exists = true, added = false;
	struct oci_resp resp;
	int r;

	*wrote = false;
	r = oci_manifest_get(c, tag, NULL, util_now_ms() + c->timeout_ms, &body, ctype,
			     sizeof(ctype), digest, err);
	if (r == -ENOENT) {
		exists = false;
		util_err_clear(err);
	} else if (r < 0) {
		goto out;
	}
	r = oci_referrers_index_add(exists ? body.data : NULL, exists ? body.len : 0,
				    ctype[0] ? ctype : NULL, artifact, &index, &added, why,
				    sizeof(why));
	if (r == -EEXIST) {
		util_err_set(err, r,
			     "registry %s: the referrers tag %s:%s holds something other than a "
			     "referrers index (%s); it is left as it is (delete that tag if it is "
			     "not needed)",
			     c->shown, c->ref->repository, tag, why);
		goto out;
	}
	if (r < 0) {
		util_err_set(err, r, "registry %s: the referrers index %s:%s: %s", c->shown,
			     c->ref->repository, tag, why[0] ? why : strerror(-r));
		goto out;
	}
	if (!added)
		goto out;
	if (exists && !strcmp(digest, tr->refused))
		tr->unconditional = true;
	oci_fmt(if_match, sizeof(if_match), "\"%s\"", digest);
	r = oci_manifest_put_resp(c, tag, OCI_MT_OCI_INDEX, index, strlen(index),
				  exists && !tr->unconditional ? if_match : NULL, put_digest,
				  &resp, err);
	*wrote = r >= 0;
	if (r == -ESTALE)
		memcpy(tr->refused, digest, sizeof(tr->refused));
out:
	util_buf_free(&body);
	return r;
}

/* The referrers tag schema: add the artifact's descriptor to the index under the subject's
 * tag. The schema has no lock: two clients that read the index before either writes it back
 * would each write an index without the other's entry. So a push reads the index again
 * after its write, once twice the time its own read and write took has passed (another
 * client's read-to-write takes about as long), and adds its entry again if a concurrent
 * write dropped it; a registry that honours If-Match refuses such a write outright. A
 * registry with the referrers API has no such race. */
static int tag_index_add(struct oci_client *c, const struct oci_descriptor *subject,
			 const struct oci_descriptor *artifact, struct util_error *err)
{
	char tag[OCI_REFERRERS_TAG_LEN];
	uint64_t deadline = util_now_ms() + c->timeout_ms;
	struct tag_rounds tr = {.refused = ""};
	int r;

	r = oci_referrers_tag(subject->digest, tag, sizeof(tag));
	if (r < 0)
		return r;
	for (unsigned round = 1;; round++) {
		uint64_t t0 = util_now_ms(), took;
		bool wrote;

		r = tag_index_round(c, tag, artifact, &tr, &wrote, err);
		if (r >= 0 && !wrote)
			return 0; /* the index lists it */
		if (r < 0 && r != -ESTALE)
			return r;
		if (round == TAG_ADD_ROUNDS || util_now_ms() >= deadline)
			return util_err_set(err, -EAGAIN,
					    "registry %s: the referrers index %s:%s kept changing "
					    "under other pushes (%u rounds); push the profile "
					    "again",
					    c->shown, c->ref->repository, tag, round);
		util_err_clear(err);
		/* Wait, with up to as much again of jitter so that racing pushes spread out. */
		took = MAX(util_now_ms() - t0, (uint64_t)10);
		util_sleep_ms(MIN(2 * took + oci_jitter_ms(took), (uint64_t)OCI_BACKOFF_MAX_MS));
	}
}

int oci_referrer_push(struct oci_client *c, const char *artifact_type, const char *layer_media_type,
		      const void *data, size_t len, char ret_digest[UTIL_DIGEST_STR_LEN],
		      bool *ret_via_tag, struct util_error *err)
{
	struct oci_descriptor subject, layer = { 0 }, artifact = { 0 };
	struct artifact_blobs blobs = { .c = c, .data = data, .len = len };
	_cleanup_free_ char *manifest = NULL;
	struct util_error local;
	struct oci_resp resp;
	int r;

	if (!err)
		err = &local;
	util_err_clear(err);
	*ret_via_tag = false;
	r = subject_of(c, &subject, err);
	if (r < 0)
		return r;
	if (!subject.size) /* a blob handed over without its manifest's size */
		return util_err_set(err, -EINVAL, "%s: the image manifest's size is unknown",
				    c->shown);
	oci_fmt(layer.media_type, sizeof(layer.media_type), "%s", layer_media_type);
	layer.size = len;
	r = blobs_ensure(&blobs, err);
	if (r < 0)
		return r;
	memcpy(layer.digest, blobs.layer_digest, sizeof(layer.digest));
	oci_fmt(artifact.media_type, sizeof(artifact.media_type), "%s", OCI_MT_OCI_MANIFEST);
	oci_fmt(artifact.artifact_type, sizeof(artifact.artifact_type), "%s", artifact_type);
	/* with milliseconds, so that two pushes in one second stay ordered */
	util_timestamp_now(artifact.created);
	/* The fallback index's entry names the layer as the manifest does (the API's list
	 * copies the manifest's annotations itself). */
	oci_layer_hint_of(&layer, &artifact.layer);
	/* The image blob it is about: an image of several layers has a profile for each. */
	if (util_digest_valid(c->blob.digest))
		memcpy(artifact.subject_blob, c->blob.digest, sizeof(artifact.subject_blob));
	r = oci_artifact_build(artifact_type, &subject, &layer, artifact.created,
			       artifact.subject_blob, &manifest);
	if (r < 0)
		return util_err_set(err, r, "building the artifact manifest: %s", strerror(-r));
	artifact.size = strlen(manifest);
	/* Pushes at once upload the same empty config at once (seen: 400 DIGEST_INVALID /
	 * MANIFEST_BLOB_UNKNOWN with 8 profile pushes at once on a loaded machine). */
	r = oci_manifest_put_ensured(c, NULL, OCI_MT_OCI_MANIFEST, manifest, artifact.size,
				     blobs_ensure, &blobs, artifact.digest, &resp, err);
	if (r < 0)
		return r;
	memcpy(ret_digest, artifact.digest, UTIL_DIGEST_STR_LEN);
	if (resp.oci_subject[0] && !strcmp(resp.oci_subject, subject.digest)) {
		/* The registry lists it among the subject's referrers itself (an OCI-Subject
		 * naming another manifest says nothing of ours). */
		log_debug("oci: %s took the subject of %s (OCI-Subject: %s)", c->shown,
			  artifact.digest, resp.oci_subject);
		return 0;
	}
	r = tag_index_add(c, &subject, &artifact, err);
	if (r < 0)
		return r;
	*ret_via_tag = true;
	return 0;
}

/* A list's newest entry of its type goes into *best unless *best is newer (a tie goes to the
 * later list). Entries about another blob of the image than `blob` are not looked at (those
 * that do not say which stay). */
static void keep_newest(struct oci_referrer *best, bool *have, struct oci_referrer *v, size_t n,
			const char *blob)
{
	struct oci_referrer two[2];
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		if (!v[i].subject_blob[0] || !blob[0] || !strcmp(v[i].subject_blob, blob))
			v[k++] = v[i];
	n = k;
	if (oci_referrers_newest(v, n, &i) < 0)
		return;
	if (!*have) {
		*best = v[i];
		*have = true;
		return;
	}
	two[0] = *best;
	two[1] = v[i];
	if (oci_referrers_newest(two, 2, &i) == 0)
		*best = two[i];
}

/* One list (an API page or the tag's index) into *best. */
static int take_list(const struct util_buf *body, const char *ctype, const char *artifact_type,
		     const char *blob, const char *what, struct oci_referrer *best, bool *have,
		     struct util_error *err)
{
	struct oci_referrer *v = NULL;
	char why[512] = "";
	size_t n = 0;
	int r;

	r = oci_referrers_parse(body->data, body->len, ctype[0] ? ctype : NULL, artifact_type, &v,
				&n, why, sizeof(why));
	if (r < 0)
		return util_err_set_http(err, r, 200, NULL, "%s: %s", what, why);
	keep_newest(best, have, v, n, blob);
	free(v);
	return 0;
}

/* The referrers API, page after page. 1 when the registry has no such API (the spec's 404;
 * 400, 405 and 406 too, which an API never answers for a valid digest but an older registry
 * may for a path it does not know). */
static int api_newest(struct oci_client *c, const struct oci_descriptor *subject,
		      const char *artifact_type, uint64_t deadline, struct oci_referrer *best,
		      bool *have, struct util_error *err)
{
	struct oci_req q = {.method = "GET",
			    .body_fd = -1,
			    .accept = OCI_MT_OCI_INDEX,
			    .registry_auth = true,
			    .follow = true,
			    .max_body = OCI_MANIFEST_MAX};
	struct util_buf body = UTIL_BUF_INIT(OCI_MANIFEST_MAX);
	_cleanup_free_ char *url = NULL;
	char *esc, what[400], next[2048];
	struct oci_resp resp;
	int r = 0;

	esc = curl_easy_escape(NULL, artifact_type, 0);
	if (!esc)
		return -ENOMEM;
	/* ... and the registry's ?ns= when a server other than the registry answers for it */
	if (asprintf(&url, "%s/%s/referrers/%s?artifactType=%s%s%s", c->up->api, c->ref->repository,
		     subject->digest, esc, c->up->query[0] ? "&" : "",
		     c->up->query[0] ? c->up->query + 1 : "") < 0)
		url = NULL;
	curl_free(esc);
	if (!url)
		return -ENOMEM;
	oci_fmt(what, sizeof(what), "registry %s: referrers of %s@%s", c->shown, c->ref->repository,
		subject->digest);
	for (int page = 0; page < REFERRERS_PAGES_MAX; page++) {
		char *joined = NULL;

		q.url = url;
		r = oci_request(c, &q, deadline, &resp, &body, err);
		if (r < 0)
			break;
		if (page == 0 && (resp.status == 404 || resp.status == 400 || resp.status == 405 ||
				  resp.status == 406)) {
			log_debug("oci: %s has no referrers API (HTTP %ld)", c->shown, resp.status);
			r = 1;
			break;
		}
		if (resp.status != 200) {
			r = oci_status_error(c, &resp, &body, what, err);
			break;
		}
		r = take_list(&body, resp.content_type, artifact_type, c->blob.digest, what, best,
			      have, err);
		if (r < 0 || !resp.link[0])
			break;
		r = oci_link_next(resp.link, strlen(resp.link), next, sizeof(next));
		if (r == -ENOENT) {
			r = 0;
			break;
		}
		if (r == 0)
			r = oci_url_join(url, next, &joined);
		if (r < 0) {
			util_err_set_http(err, r, 200, NULL, "%s: unusable Link header", what);
			break;
		}
		free(url);
		url = joined;
		if (page + 1 == REFERRERS_PAGES_MAX)
			log_debug("oci: %s: more than %d pages of referrers, the rest unread", what,
				  REFERRERS_PAGES_MAX);
	}
	util_buf_free(&body);
	return r;
}

/* The referrers tag schema's index. A tag that holds something else lists nothing (as the
 * spec says to assume). */
static int tag_newest(struct oci_client *c, const struct oci_descriptor *subject,
		      const char *artifact_type, uint64_t deadline, struct oci_referrer *best,
		      bool *have, struct util_error *err)
{
	struct util_buf body = UTIL_BUF_INIT(OCI_MANIFEST_MAX);
	char tag[OCI_REFERRERS_TAG_LEN], ctype[256] = "", digest[UTIL_DIGEST_STR_LEN], what[400];
	int r;

	r = oci_referrers_tag(subject->digest, tag, sizeof(tag));
	if (r == 0)
		r = oci_manifest_get(c, tag, NULL, deadline, &body, ctype, sizeof(ctype), digest,
				     err);
	if (r == 0) {
		oci_fmt(what, sizeof(what), "registry %s: referrers tag %s:%s", c->shown,
			c->ref->repository, tag);
		r = take_list(&body, ctype, artifact_type, c->blob.digest, what, best, have, err);
		if (r == -EBADMSG)
			r = -ENOENT;
	}
	util_buf_free(&body);
	return r;
}

int oci_referrer_find(struct oci_client *c, const char *artifact_type, unsigned how,
		      uint64_t timeout_ms, struct oci_referrer *ret, struct util_error *err)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	struct oci_descriptor subject;
	struct oci_referrer best;
	struct util_error local;
	bool have = false;
	int r;

	if (!err)
		err = &local;
	util_err_clear(err);
	r = subject_of(c, &subject, err);
	if (r < 0)
		return r;
	r = 1; /* as if the registry had no API */
	if (how & OCI_REFERRERS_API)
		r = api_newest(c, &subject, artifact_type, deadline, &best, &have, err);
	if (r == 1 && !(how & OCI_REFERRERS_TAG))
		return 1; /* no API, and the caller looks at the tag itself */
	if (r == 1) {
		util_err_clear(err);
		r = tag_newest(c, &subject, artifact_type, deadline, &best, &have, err);
	}
	if (r < 0)
		return r;
	if (!have)
		return util_err_set(err, -ENOENT, "registry %s: %s@%s has no referrer of type %s",
				    c->shown, c->ref->repository, subject.digest, artifact_type);
	*ret = best;
	return 0;
}

int oci_referrer_newest(struct oci_client *c, const char *artifact_type, uint64_t timeout_ms,
			struct oci_referrer *ret, struct util_error *err)
{
	return oci_referrer_find(c, artifact_type, OCI_REFERRERS_API | OCI_REFERRERS_TAG,
				 timeout_ms, ret, err);
}

int oci_artifact_fetch(struct oci_client *c, const struct oci_referrer *ref,
		       const char *media_type, size_t max, uint64_t timeout_ms, void **ret,
		       size_t *ret_len, struct util_error *err)
{
	uint64_t deadline = deadline_of(c, timeout_ms);
	struct util_buf body = UTIL_BUF_INIT(OCI_MANIFEST_MAX);
	_cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
	char ctype[256] = "", digest[UTIL_DIGEST_STR_LEN], why[512] = "";
	const char *manifest_digest = ref->digest;
	const struct oci_descriptor *layer = NULL;
	struct util_error local;
	int r;

	if (!err)
		err = &local;
	util_err_clear(err);
	if (c->ref->is_url || !util_digest_valid(manifest_digest))
		return util_err_set(err, -EINVAL, "%s: '%.80s' is not an artifact of a registry",
				    c->shown, manifest_digest);
	/* The layer the list named: one round trip less. The blob is checked against the digest
	 * the list gave, as the manifest's would be; a registry that does not have it, or a
	 * hint that does not hold, costs the manifest's way after all (which has the last word
	 * on the size too). */
	if (ref->layer.digest[0] && !strcmp(ref->layer.media_type, media_type) &&
	    ref->layer.size <= max) {
		struct oci_descriptor d = {.size = ref->layer.size};

		memcpy(d.media_type, ref->layer.media_type, sizeof(d.media_type));
		memcpy(d.digest, ref->layer.digest, sizeof(d.digest));
		r = oci_blob_get(c, &d, deadline, ret, ret_len, err);
		if (r >= 0 || r == -ENOMEM || util_now_ms() >= deadline)
			return r;
		log_debug("%s: the layer %s the referrers list named: %s; asking the artifact",
			  c->shown, d.digest, util_err_msg(err, r));
		util_err_clear(err);
	}
	r = oci_manifest_get(c, manifest_digest, manifest_digest, deadline, &body, ctype,
			     sizeof(ctype), digest, err);
	if (r < 0)
		goto out;
	r = oci_manifest_parse(body.data, body.len, ctype[0] ? ctype : NULL, &m, why, sizeof(why));
	if (r == 0 && m->kind != OCI_KIND_MANIFEST) {
		oci_fmt(why, sizeof(why), "an index, not an artifact manifest");
		r = -EBADMSG;
	}
	if (r < 0) {
		util_err_set_http(err, r, 200, NULL, "registry %s: artifact %s@%s: %s", c->shown,
				  c->ref->repository, manifest_digest, why);
		goto out;
	}
	for (size_t i = 0; i < m->n && !layer; i++)
		if (!strcmp(m->items[i].media_type, media_type))
			layer = &m->items[i];
	if (!layer) {
		r = util_err_set(err, -ENOENT,
				 "registry %s: artifact %s@%s has no layer of type %s", c->shown,
				 c->ref->repository, manifest_digest, media_type);
		goto out;
	}
	if (layer->size > max) {
		r = util_err_set(err, -EFBIG,
				 "registry %s: artifact %s@%s: its %s layer has %llu bytes, more "
				 "than %zu",
				 c->shown, c->ref->repository, manifest_digest, media_type,
				 (unsigned long long)layer->size, max);
		goto out;
	}
	r = oci_blob_get(c, layer, deadline, ret, ret_len, err);
out:
	util_buf_free(&body);
	return r;
}
