// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * OCI 1.1 artifacts and referrers lists, the pure half (no network): the artifact manifest
 * that attaches data to an image manifest, the referrers tag schema's tag, reading a
 * referrers list (the referrers API's answer or the fallback tag's index) through
 * oci_manifest_parse, choosing the newest referrer, and adding an artifact to a fallback
 * index without touching the entries other tools put there. referrers.c does the requests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/parse.h"
#include "util/cleanup.h"
#include "util/json.h"
#include "util/sha256.h"

int oci_referrers_tag(const char *digest, char *out, size_t outlen)
{
	const char *hex = digest + strlen("sha256:");

	if (!util_digest_valid(digest) || outlen < OCI_REFERRERS_TAG_LEN)
		return -EINVAL;
	oci_fmt(out, outlen, "sha256-%s", hex);
	return 0;
}

static json_t *descriptor_json(const struct oci_descriptor *d)
{
	return json_pack("{s:s, s:s, s:I}", "mediaType", d->media_type, "digest", d->digest, "size",
			 (json_int_t)d->size);
}

/* The annotations of an artifact or its index entry: created, the layer's and the subject
 * blob, those set (NULL: none). */
static int annotations_json(const char *created, const struct oci_layer_hint *layer,
			    const char *subject_blob, json_t **ret)
{
	_cleanup_json_ json_t *a = NULL;
	char size[24];

	*ret = NULL;
	if (!created[0] && !layer->digest[0] && !subject_blob[0])
		return 0;
	a = json_object();
	if (!a || (created[0] &&
		   json_object_set_new(a, OCI_ANNOTATION_CREATED, json_string(created)) < 0))
		return -ENOMEM;
	if (subject_blob[0] &&
	    json_object_set_new(a, OCI_ANNOTATION_SUBJECT_BLOB, json_string(subject_blob)) < 0)
		return -ENOMEM;
	if (layer->digest[0]) {
		snprintf(size, sizeof(size), "%llu", (unsigned long long)layer->size);
		if (json_object_set_new(a, OCI_ANNOTATION_LAYER_TYPE,
					json_string(layer->media_type)) < 0 ||
		    json_object_set_new(a, OCI_ANNOTATION_LAYER_DIGEST,
					json_string(layer->digest)) < 0 ||
		    json_object_set_new(a, OCI_ANNOTATION_LAYER_SIZE, json_string(size)) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(a);
	return 0;
}

/* d, plus its artifactType and annotations when it has them: an index entry. */
static json_t *entry_json(const struct oci_descriptor *d)
{
	json_t *e = descriptor_json(d), *a = NULL;

	if (!e)
		return NULL;
	if ((d->artifact_type[0] &&
	     json_object_set_new(e, "artifactType", json_string(d->artifact_type)) < 0) ||
	    annotations_json(d->created, &d->layer, d->subject_blob, &a) < 0 ||
	    (a && json_object_set_new(e, "annotations", a) < 0)) {
		json_decref(e);
		return NULL;
	}
	return e;
}

void oci_layer_hint_of(const struct oci_descriptor *layer, struct oci_layer_hint *ret)
{
	*ret = (struct oci_layer_hint){.size = layer->size};
	oci_fmt(ret->media_type, sizeof(ret->media_type), "%s", layer->media_type);
	memcpy(ret->digest, layer->digest, sizeof(ret->digest));
}

static bool valid_descriptor(const struct oci_descriptor *d)
{
	return d->media_type[0] && util_digest_valid(d->digest) && d->size <= (uint64_t)INT64_MAX;
}

int oci_artifact_build(const char *artifact_type, const struct oci_descriptor *subject,
		       const struct oci_descriptor *layer, const char *created,
		       const char *subject_blob, char **ret)
{
	_cleanup_json_ json_t *m = NULL;
	struct oci_descriptor empty = {.media_type = OCI_MT_OCI_EMPTY,
				       .digest = OCI_EMPTY_DIGEST,
				       .size = sizeof(OCI_EMPTY_JSON) - 1};
	struct oci_layer_hint hint;
	json_t *ann = NULL;

	if (!artifact_type[0] || !valid_descriptor(subject) || !valid_descriptor(layer) ||
	    !created[0] || (subject_blob && subject_blob[0] && !util_digest_valid(subject_blob)))
		return -EINVAL;
	oci_layer_hint_of(layer, &hint);
	if (annotations_json(created, &hint, subject_blob ? subject_blob : "", &ann) < 0)
		return -ENOMEM;
	m = json_pack("{s:i, s:s, s:s, s:o, s:[o], s:o, s:o}", "schemaVersion", 2, "mediaType",
		      OCI_MT_OCI_MANIFEST, "artifactType", artifact_type, "config",
		      descriptor_json(&empty), "layers", descriptor_json(layer), "subject",
		      descriptor_json(subject), "annotations", ann);
	if (!m)
		return -ENOMEM;
	*ret = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	return *ret ? 0 : -ENOMEM;
}

/* A referrers list must be an OCI image index (not a Docker manifest list, not a manifest). */
static int parse_index(const void *buf, size_t len, const char *content_type,
		       struct oci_manifest **ret, char *errbuf, size_t errlen)
{
	_cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
	int r;

	r = oci_manifest_parse(buf, len, content_type, &m, errbuf, errlen);
	if (r < 0)
		return r;
	if (m->kind != OCI_KIND_INDEX || strcmp(m->media_type, OCI_MT_OCI_INDEX) != 0) {
		const char *what = m->media_type;

		if (!what[0])
			what = m->kind == OCI_KIND_INDEX ? "an index without a media type"
							 : "a manifest without a media type";
		oci_fmt(errbuf, errlen, "%s, not an OCI image index", what);
		return -EBADMSG;
	}
	*ret = TAKE_PTR(m);
	return 0;
}

int oci_referrers_parse(const void *buf, size_t len, const char *content_type,
			const char *artifact_type, struct oci_referrer **ret, size_t *ret_n,
			char *errbuf, size_t errlen)
{
	_cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
	struct oci_referrer *v;
	size_t n = 0;
	int r;

	r = parse_index(buf, len, content_type, &m, errbuf, errlen);
	if (r < 0)
		return r;
	v = calloc(m->n ? m->n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		const struct oci_descriptor *d = &m->items[i];

		if (artifact_type && strcmp(d->artifact_type, artifact_type) != 0)
			continue;
		memcpy(v[n].digest, d->digest, sizeof(v[n].digest));
		v[n].size = d->size;
		oci_fmt(v[n].artifact_type, sizeof(v[n].artifact_type), "%s", d->artifact_type);
		oci_fmt(v[n].created, sizeof(v[n].created), "%s", d->created);
		v[n].layer = d->layer;
		memcpy(v[n].subject_blob, d->subject_blob, sizeof(v[n].subject_blob));
		n++;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Order of two created annotations: an unreadable or missing one is older than any other. */
static int created_cmp(const char *a, const char *b)
{
	time_t ta = 0, tb = 0;
	uint32_t na = 0, nb = 0;
	bool va = oci_rfc3339_parse_ns(a, strlen(a), &ta, &na) == 0;
	bool vb = oci_rfc3339_parse_ns(b, strlen(b), &tb, &nb) == 0;

	if (va != vb)
		return va ? 1 : -1;
	if (ta != tb)
		return ta < tb ? -1 : 1;
	return na == nb ? 0 : na < nb ? -1 : 1;
}

int oci_referrers_newest(const struct oci_referrer *v, size_t n, size_t *ret_idx)
{
	size_t best = 0;

	if (n == 0)
		return -ENOENT;
	for (size_t i = 1; i < n; i++)
		if (created_cmp(v[i].created, v[best].created) >= 0)
			best = i; /* a tie goes to the one listed later */
	*ret_idx = best;
	return 0;
}

/* Room in a full index: its oldest entry of the type being added goes, of the same image blob
 * when there is one (a newer one is what every lookup takes; another layer's only profile
 * stays); entries of other types stay. false: none to drop. */
static bool drop_oldest_of_type(struct oci_manifest *m, json_t *list,
				const struct oci_descriptor *d)
{
	size_t k = SIZE_MAX;

	for (int same = 1; same >= 0 && k == SIZE_MAX; same--)
		for (size_t i = 0; i < m->n; i++)
			if (!strcmp(m->items[i].artifact_type, d->artifact_type) &&
			    (!same || !strcmp(m->items[i].subject_blob, d->subject_blob)) &&
			    (k == SIZE_MAX ||
			     created_cmp(m->items[i].created, m->items[k].created) < 0))
				k = i;
	if (k == SIZE_MAX || json_array_remove(list, k) < 0)
		return false;
	free(m->items[k].metamap);
	memmove(&m->items[k], &m->items[k + 1], (m->n - k - 1) * sizeof(m->items[0]));
	m->n--;
	return true;
}

int oci_referrers_index_add(const void *old, size_t old_len, const char *content_type,
			    const struct oci_descriptor *d, char **ret, bool *ret_added,
			    char *errbuf, size_t errlen)
{
	_cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
	_cleanup_json_ json_t *j = NULL;
	json_t *list = NULL;
	int r;

	if (!valid_descriptor(d))
		return -EINVAL;
	*ret_added = false;
	if (old) {
		/* What is there must be an index we can read; anything else stays as it is. */
		r = parse_index(old, old_len, content_type, &m, errbuf, errlen);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return -EEXIST;
		for (size_t i = 0; i < m->n; i++)
			if (!strcmp(m->items[i].digest, d->digest))
				return 0;
		if (util_json_parse(old, old_len, OCI_MANIFEST_MAX, &j) < 0 ||
		    util_json_get_array(j, "manifests", &list) < 0 || json_array_size(list) != m->n)
			return -EBADMSG; /* parse_index read it: cannot happen */
		while (m->n >= OCI_MANIFEST_ITEMS_MAX)
			if (!drop_oldest_of_type(m, list, d)) {
				oci_fmt(errbuf, errlen,
					"the referrers index already lists %zu entries, none of "
					"them of type %s to make room",
					m->n, d->artifact_type);
				return -EFBIG;
			}
	} else {
		j = json_pack("{s:i, s:[]}", "schemaVersion", 2, "manifests");
		if (!j)
			return -ENOMEM;
		list = json_object_get(j, "manifests");
	}
	/* The registry stores what it is given: the media type must be in the body. */
	if (json_object_set_new(j, "mediaType", json_string(OCI_MT_OCI_INDEX)) < 0 ||
	    json_array_append_new(list, entry_json(d)) < 0)
		return -ENOMEM;
	for (;;) {
		*ret = json_dumps(j, JSON_COMPACT);
		if (!*ret)
			return -ENOMEM;
		if (strlen(*ret) <= OCI_MANIFEST_MAX)
			break;
		free(*ret);
		*ret = NULL;
		if (!m || !drop_oldest_of_type(m, list, d)) {
			oci_fmt(errbuf, errlen, "the referrers index would be larger than %d bytes",
				OCI_MANIFEST_MAX);
			return -EFBIG;
		}
	}
	*ret_added = true;
	return 0;
}
