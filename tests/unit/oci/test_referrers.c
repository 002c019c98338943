// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for oci's OCI 1.1 pieces: the artifact manifest a profile push builds, reading
 * referrers lists (the referrers API's answer, the fallback tag's index), choosing the newest,
 * adding an artifact to a fallback index without losing what others put there, the tag of
 * the referrers tag schema, Link pagination and RFC 3339 fractions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oci/parse.h"
#include "util/json.h"
#include "util/sha256.h"

#define HA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DA "sha256:" HA
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define DD "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
#define TYPE "application/vnd.lazyerofs.profile.v1"
#define OTHER "application/vnd.example.sbom.v1"

static struct oci_descriptor desc(const char *mt, const char *digest, uint64_t size,
				  const char *artifact_type, const char *created)
{
	struct oci_descriptor d;

	memset(&d, 0, sizeof(d));
	snprintf(d.media_type, sizeof(d.media_type), "%s", mt);
	snprintf(d.digest, sizeof(d.digest), "%s", digest);
	d.size = size;
	snprintf(d.artifact_type, sizeof(d.artifact_type), "%s", artifact_type ? artifact_type : "");
	snprintf(d.created, sizeof(d.created), "%s", created ? created : "");
	return d;
}

/* Parse a referrers list that must parse; the entries of type (NULL: all). */
static struct oci_referrer *referrers(const char *s, const char *ct, const char *type, size_t *n)
{
	struct oci_referrer *v = NULL;
	char why[512] = "";
	int r = oci_referrers_parse(s, strlen(s), ct, type, &v, n, why, sizeof(why));

	if (r != 0)
		fail_msg("oci_referrers_parse: %d: %s", r, why);
	return v;
}

static void expect_not_referrers(const char *s, const char *ct)
{
	struct oci_referrer *v = NULL;
	char why[512] = "";
	size_t n = 0;

	assert_int_equal(oci_referrers_parse(s, strlen(s), ct, NULL, &v, &n, why, sizeof(why)),
			 -EBADMSG);
	assert_null(v);
	assert_true(why[0]);
}

static void test_tag(void **state)
{
	char tag[OCI_REFERRERS_TAG_LEN];

	assert_int_equal(oci_referrers_tag(DA, tag, sizeof(tag)), 0);
	assert_string_equal(tag, "sha256-" HA);
	assert_int_equal(oci_referrers_tag(DA, tag, sizeof(tag) - 1), -EINVAL);
	assert_int_equal(oci_referrers_tag("sha256:abc", tag, sizeof(tag)), -EINVAL);
	assert_int_equal(oci_referrers_tag("sha512:" HA HA, tag, sizeof(tag)), -EINVAL);
}

static void test_artifact_build(void **state)
{
	struct oci_descriptor subject = desc(OCI_MT_OCI_MANIFEST, DA, 555, NULL, NULL);
	struct oci_descriptor layer = desc(TYPE "+text", DB, 42, NULL, NULL);
	struct oci_manifest *m = NULL;
	char *s = NULL, *s2 = NULL, why[512] = "";
	json_t *j = NULL;
	const char *created = NULL;
	uint8_t d[UTIL_SHA256_LEN];

	assert_int_equal(
	    oci_artifact_build(TYPE, &subject, &layer, "2026-01-02T03:04:05.678Z", NULL, &s), 0);
	/* read back through the parser every manifest goes through */
	assert_int_equal(oci_manifest_parse(s, strlen(s), NULL, &m, why, sizeof(why)), 0);
	assert_int_equal(m->kind, OCI_KIND_MANIFEST);
	assert_string_equal(m->media_type, OCI_MT_OCI_MANIFEST);
	assert_string_equal(m->artifact_type, TYPE);
	assert_true(m->has_subject);
	assert_string_equal(m->subject.media_type, OCI_MT_OCI_MANIFEST);
	assert_string_equal(m->subject.digest, DA);
	assert_int_equal(m->subject.size, 555);
	assert_string_equal(m->config.media_type, OCI_MT_OCI_EMPTY);
	assert_string_equal(m->config.digest, OCI_EMPTY_DIGEST);
	assert_int_equal(m->config.size, 2);
	assert_int_equal(m->n, 1);
	assert_string_equal(m->items[0].media_type, TYPE "+text");
	assert_string_equal(m->items[0].digest, DB);
	assert_int_equal(m->items[0].size, 42);
	oci_manifest_free(m);
	/* the empty config's digest is the one of "{}" */
	util_sha256_buf(OCI_EMPTY_JSON, 2, d);
	{
		char e[UTIL_DIGEST_STR_LEN];

		util_digest_format(d, e);
		assert_string_equal(e, OCI_EMPTY_DIGEST);
	}
	/* the created annotation, and a top-level mediaType (the registry needs it) */
	assert_int_equal(util_json_parse(s, strlen(s), 1 << 20, &j), 0);
	assert_int_equal(util_json_get_string(json_object_get(j, "annotations"),
					      OCI_ANNOTATION_CREATED, &created),
			 0);
	assert_string_equal(created, "2026-01-02T03:04:05.678Z");
	json_decref(j);
	/* deterministic */
	assert_int_equal(
	    oci_artifact_build(TYPE, &subject, &layer, "2026-01-02T03:04:05.678Z", NULL, &s2), 0);
	assert_string_equal(s, s2);
	free(s);
	free(s2);
	/* refused */
	subject.digest[10] = 0;
	assert_int_equal(oci_artifact_build(TYPE, &subject, &layer, "x", NULL, &s), -EINVAL);
	subject = desc(OCI_MT_OCI_MANIFEST, DA, 555, NULL, NULL);
	assert_int_equal(oci_artifact_build("", &subject, &layer, "x", NULL, &s), -EINVAL);
	assert_int_equal(oci_artifact_build(TYPE, &subject, &layer, "", NULL, &s), -EINVAL);
	layer.media_type[0] = 0;
	assert_int_equal(oci_artifact_build(TYPE, &subject, &layer, "x", NULL, &s), -EINVAL);
}

/* The distribution spec's example answer of the referrers API, and a filter on it. */
#define SPEC_EXAMPLE                                                                              \
	"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":["                \
	"{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1234,\"digest\":\"" DA "\","            \
	"\"artifactType\":\"" OTHER "\",\"annotations\":{\"" OCI_ANNOTATION_CREATED "\":"            \
	"\"2022-01-01T14:42:55Z\",\"org.example.sbom.format\":\"json\"}},"                          \
	"{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1235,\"digest\":\"" DB "\","            \
	"\"artifactType\":\"" TYPE "\",\"annotations\":{\"" OCI_ANNOTATION_CREATED "\":"             \
	"\"2022-01-01T07:21:33Z\"}},"                                                                \
	"{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"size\":1236,\"digest\":\"" DC "\","               \
	"\"annotations\":{\"" OCI_ANNOTATION_CREATED "\":\"2023-01-01T07:21:33Z\"}}]}"

static void test_referrers_parse(void **state)
{
	struct oci_referrer *v;
	size_t n;

	v = referrers(SPEC_EXAMPLE, OCI_MT_OCI_INDEX, NULL, &n);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].digest, DA);
	assert_int_equal(v[0].size, 1234);
	assert_string_equal(v[0].artifact_type, OTHER);
	assert_string_equal(v[0].created, "2022-01-01T14:42:55Z");
	assert_string_equal(v[2].artifact_type, "");
	assert_string_equal(v[2].created, "2023-01-01T07:21:33Z");
	free(v);
	/* filtered: a registry without the filter, or the fallback tag, lists every type */
	v = referrers(SPEC_EXAMPLE, NULL, TYPE, &n);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].digest, DB);
	assert_int_equal(v[0].size, 1235);
	free(v);
	v = referrers(SPEC_EXAMPLE, NULL, "application/none", &n);
	assert_int_equal(n, 0);
	free(v);
	/* an empty list; the media type only in the Content-Type */
	v = referrers("{\"schemaVersion\":2,\"manifests\":[]}", OCI_MT_OCI_INDEX "; charset=utf-8",
		      TYPE, &n);
	assert_int_equal(n, 0);
	free(v);
	/* another tool's entry with a type too long to be ours, or a created too long to read,
	 * does not make the list unreadable */
	{
		char long_type[300], *s;

		memset(long_type, 'x', sizeof(long_type) - 1);
		long_type[sizeof(long_type) - 1] = 0;
		assert_true(asprintf(&s,
				     "{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":["
				     "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1,"
				     "\"digest\":\"" DA "\",\"artifactType\":\"%s\","
				     "\"annotations\":{\"" OCI_ANNOTATION_CREATED "\":\"%s\"}},"
				     "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":2,"
				     "\"digest\":\"" DB "\",\"artifactType\":\"" TYPE "\"}]}",
				     long_type, long_type) > 0);
		v = referrers(s, NULL, NULL, &n);
		assert_int_equal(n, 2);
		assert_string_equal(v[0].artifact_type, "");
		assert_string_equal(v[0].created, "");
		assert_string_equal(v[1].artifact_type, TYPE);
		assert_string_equal(v[1].created, "");
		free(v);
		free(s);
	}
	/* not a referrers list */
	expect_not_referrers("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
			     "\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DA "\",\"size\":1},"
			     "\"layers\":[]}",
			     NULL);
	expect_not_referrers("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_LIST "\","
			     "\"manifests\":[]}",
			     NULL);
	expect_not_referrers("{\"schemaVersion\":2,\"manifests\":[]}", NULL); /* no media type */
	expect_not_referrers("404 page not found\n", "text/plain; charset=utf-8");
	expect_not_referrers("", NULL);
	expect_not_referrers("{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":[{"
			     "\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1,\"digest\":\"" DA
			     "\",\"artifactType\":7}]}",
			     NULL);
	expect_not_referrers("{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":[{"
			     "\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1,\"digest\":\"" DA
			     "\",\"annotations\":[]}]}",
			     NULL);
	expect_not_referrers("{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":[{"
			     "\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":-1,\"digest\":\"" DA
			     "\"}]}",
			     NULL);
}

static size_t newest(const struct oci_referrer *v, size_t n)
{
	size_t i = 99;

	assert_int_equal(oci_referrers_newest(v, n, &i), 0);
	assert_true(i < n);
	return i;
}

static void test_newest(void **state)
{
	static const struct {
		const char *created[3];
		size_t want;
	} cases[] = {
		/* the latest created wins wherever it is listed */
		{ { "2024-05-01T10:00:00Z", "2024-06-01T10:00:00Z", "2024-04-01T10:00:00Z" }, 1 },
		/* time zones are compared as instants: 12:00+03:00 is 09:00Z */
		{ { "2024-05-01T10:00:00Z", "2024-05-01T12:00:00+03:00", "2024-04-01T10:00:00Z" }, 0 },
		/* fractions of a second count */
		{ { "2024-05-01T10:00:00.25Z", "2024-05-01T10:00:00.125Z", "2024-05-01T10:00:00.2Z" },
		  0 },
		/* equal times: the one listed last */
		{ { "2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z" }, 2 },
		/* no created (or one that does not parse) is older than any with one */
		{ { "", "1970-01-01T00:00:01Z", "yesterday" }, 1 },
		/* none has one: the last listed */
		{ { "", "", "" }, 2 },
	};
	struct oci_referrer v[3] = { 0 };
	size_t i;

	assert_int_equal(oci_referrers_newest(v, 0, &i), -ENOENT);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		memset(v, 0, sizeof(v));
		for (size_t j = 0; j < 3; j++)
			snprintf(v[j].created, sizeof(v[j].created), "%s", cases[k].created[j]);
		if (newest(v, 3) != cases[k].want)
			fail_msg("case %zu: the newest is not entry %zu", k, cases[k].want);
	}
	assert_int_equal(newest(v, 1), 0);
}

/* The index's entries as referrers, all types. */
static struct oci_referrer *index_entries(const char *s, size_t *n)
{
	return referrers(s, NULL, NULL, n);
}

static void test_index_add(void **state)
{
	struct oci_descriptor a = desc(OCI_MT_OCI_MANIFEST, DA, 700, TYPE, "2026-01-01T00:00:00.001Z");
	struct oci_descriptor b = desc(OCI_MT_OCI_MANIFEST, DB, 701, TYPE, "2026-01-01T00:00:00.002Z");
	char *idx = NULL, *idx2 = NULL, *out = NULL, why[512] = "";
	struct oci_referrer *v;
	bool added = false;
	json_t *j = NULL, *e;
	size_t n;

	/* no tag yet: a new index with our entry */
	assert_int_equal(oci_referrers_index_add(NULL, 0, NULL, &a, &idx, &added, why, sizeof(why)),
			 0);
	assert_true(added);
	v = index_entries(idx, &n);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].digest, DA);
	assert_int_equal(v[0].size, 700);
	assert_string_equal(v[0].artifact_type, TYPE);
	assert_string_equal(v[0].created, "2026-01-01T00:00:00.001Z");
	free(v);
	/* a second artifact is added after it: both kept, in push order */
	assert_int_equal(oci_referrers_index_add(idx, strlen(idx), OCI_MT_OCI_INDEX, &b, &idx2,
						 &added, why, sizeof(why)),
			 0);
	assert_true(added);
	v = index_entries(idx2, &n);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].digest, DA);
	assert_string_equal(v[1].digest, DB);
	assert_int_equal(newest(v, n), 1);
	free(v);
	/* pushing the same artifact again adds nothing */
	out = (char *)"untouched";
	assert_int_equal(oci_referrers_index_add(idx2, strlen(idx2), NULL, &a, &out, &added, why,
						 sizeof(why)),
			 0);
	assert_false(added);
	assert_string_equal(out, "untouched");
	free(idx);
	free(idx2);

	/* what another tool listed stays as it was, unknown fields included */
	idx = (char *)"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\","
		      "\"annotations\":{\"k\":\"v\"},\"manifests\":[{\"mediaType\":\"" OCI_MT_OCI_MANIFEST
		      "\",\"digest\":\"" DC "\",\"size\":9,\"artifactType\":\"" OTHER "\","
		      "\"annotations\":{\"x\":\"y\"},\"data\":\"e30=\"}]}";
	assert_int_equal(oci_referrers_index_add(idx, strlen(idx), NULL, &a, &out, &added, why,
						 sizeof(why)),
			 0);
	assert_true(added);
	assert_int_equal(util_json_parse(out, strlen(out), 1 << 20, &j), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "annotations"), "k")),
			    "v");
	e = json_array_get(json_object_get(j, "manifests"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "data")), "e30=");
	assert_string_equal(json_string_value(json_object_get(json_object_get(e, "annotations"), "x")),
			    "y");
	assert_string_equal(json_string_value(json_object_get(e, "artifactType")), OTHER);
	e = json_array_get(json_object_get(j, "manifests"), 1);
	assert_string_equal(json_string_value(json_object_get(e, "digest")), DA);
	json_decref(j);
	free(out);
	/* an index with its media type only in the Content-Type gets it in the body */
	idx = (char *)"{\"schemaVersion\":2,\"manifests\":[]}";
	assert_int_equal(oci_referrers_index_add(idx, strlen(idx), OCI_MT_OCI_INDEX, &a, &out, &added,
						 why, sizeof(why)),
			 0);
	assert_non_null(strstr(out, "\"mediaType\":\"" OCI_MT_OCI_INDEX "\""));
	free(out);

	/* something else under the tag is never overwritten */
	{
		static const char *const others[] = {
			"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
			"\"config\":{\"mediaType\":\"a/b\",\"digest\":\"" DD "\",\"size\":1},"
			"\"layers\":[]}",
			"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_LIST "\",\"manifests\":[]}",
			"{\"schemaVersion\":2,\"manifests\":[]}",
			"not json",
		};

		for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
			why[0] = 0;
			out = NULL;
			assert_int_equal(oci_referrers_index_add(others[i], strlen(others[i]), NULL,
								 &a, &out, &added, why, sizeof(why)),
					 -EEXIST);
			assert_null(out);
			assert_true(why[0]);
		}
	}
	/* a bad descriptor */
	a.digest[8] = 0;
	assert_int_equal(oci_referrers_index_add(NULL, 0, NULL, &a, &out, &added, why, sizeof(why)),
			 -EINVAL);
}

/* The layer an artifact carries, named by its annotations: built into the manifest, kept in
 * the fallback index's entry, read back from a referrers list; anything odd in it is no hint
 * at all, never an error. */
static void test_layer_hint(void **state)
{
	struct oci_descriptor subject = desc(OCI_MT_OCI_MANIFEST, DA, 555, NULL, NULL);
	struct oci_descriptor layer = desc(TYPE "+text", DB, 42, NULL, NULL);
	struct oci_descriptor entry = desc(OCI_MT_OCI_MANIFEST, DA, 700, TYPE, "2026-01-01T00:00:00Z");
	struct oci_manifest *m = NULL;
	struct oci_referrer *v;
	char *s = NULL, *idx = NULL, why[512] = "";
	bool added;
	size_t n;
	static const char *const odd[] = {
		/* size not a number, negative, too large; digest not sha256; a key missing */
		"\"" OCI_ANNOTATION_LAYER_SIZE "\":\"4x\"",
		"\"" OCI_ANNOTATION_LAYER_SIZE "\":\"-1\"",
		"\"" OCI_ANNOTATION_LAYER_SIZE "\":\"99999999999999999999\"",
		"\"" OCI_ANNOTATION_LAYER_DIGEST "\":\"md5:00\"",
		"\"" OCI_ANNOTATION_LAYER_TYPE "\":7",
	};

	(void)state;
	assert_int_equal(oci_artifact_build(TYPE, &subject, &layer, "2026-01-02T03:04:05Z", DB, &s),
			 0);
	/* the image blob it is about (a profile of one layer of several) */
	assert_non_null(strstr(s, "\"" OCI_ANNOTATION_SUBJECT_BLOB "\":\"" DB "\""));
	assert_int_equal(oci_manifest_parse(s, strlen(s), NULL, &m, why, sizeof(why)), 0);
	free(s);
	assert_int_equal(
	    oci_artifact_build(TYPE, &subject, &layer, "2026-01-02T03:04:05Z", "md5:00", &s),
	    -EINVAL);
	/* (a manifest's own annotations are not kept by the parser: its layers say it all) */
	oci_manifest_free(m);
	/* the fallback index's entry carries it, and a list read back gives it */
	memcpy(entry.layer.media_type, layer.media_type, sizeof(entry.layer.media_type));
	memcpy(entry.layer.digest, layer.digest, sizeof(entry.layer.digest));
	entry.layer.size = 42;
	memcpy(entry.subject_blob, DB, sizeof(DB));
	assert_int_equal(oci_referrers_index_add(NULL, 0, NULL, &entry, &idx, &added, why,
						 sizeof(why)),
			 0);
	assert_non_null(strstr(idx, "\"" OCI_ANNOTATION_LAYER_SIZE "\":\"42\""));
	v = index_entries(idx, &n);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].layer.media_type, TYPE "+text");
	assert_string_equal(v[0].layer.digest, DB);
	assert_int_equal(v[0].layer.size, 42);
	assert_string_equal(v[0].created, "2026-01-01T00:00:00Z");
	assert_string_equal(v[0].subject_blob, DB);
	free(v);
	free(idx);
	/* an entry without it, or with anything odd in it: no hint */
	for (size_t i = 0; i <= sizeof(odd) / sizeof(odd[0]); i++) {
		char list[2048];
		const char *good_size = "\"" OCI_ANNOTATION_LAYER_SIZE "\":\"42\"";
		const char *good_digest = "\"" OCI_ANNOTATION_LAYER_DIGEST "\":\"" DB "\"";
		const char *good_type = "\"" OCI_ANNOTATION_LAYER_TYPE "\":\"t\"";
		const char *bad = i < sizeof(odd) / sizeof(odd[0]) ? odd[i] : NULL;

		snprintf(list, sizeof(list),
			 "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\","
			 "\"manifests\":[{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1,"
			 "\"digest\":\"" DA "\",\"annotations\":{%s%s%s%s%s}}]}",
			 bad && strstr(bad, "size") ? bad : good_size, ",",
			 bad && strstr(bad, "digest") ? bad : good_digest, bad ? "," : "",
			 bad ? (strstr(bad, "mediaType") ? bad : good_type) : "");
		v = index_entries(list, &n);
		assert_int_equal(n, 1);
		assert_string_equal(v[0].layer.digest, "");
		free(v);
	}
}

/* An index at the entry cap takes no more. */
static void test_index_full(void **state)
{
	size_t cap = OCI_MANIFEST_ITEMS_MAX, len = 0, alloc = cap * 320 + 200;
	char *s = malloc(alloc), *out = NULL, why[256] = "";
	struct oci_descriptor a = desc(OCI_MT_OCI_MANIFEST, DA, 1, TYPE, "");
	bool added = true;

	assert_non_null(s);
	len += (size_t)snprintf(s + len, alloc - len,
				"{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":[");
	for (size_t i = 0; i < cap; i++)
		len += (size_t)snprintf(s + len, alloc - len,
					"%s{\"mediaType\":\"a/b\",\"digest\":\"sha256:%064zx\","
					"\"size\":1}",
					i ? "," : "", i);
	len += (size_t)snprintf(s + len, alloc - len, "]}");
	assert_int_equal(oci_referrers_index_add(s, len, NULL, &a, &out, &added, why, sizeof(why)),
			 -EFBIG);
	assert_false(added);
	assert_true(why[0]);

	/* Full, with entries of the type added among them: the oldest of that type makes room
	 * (a newer one is what every lookup takes); the others all stay. */
	len = (size_t)snprintf(s, alloc, "{\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":[");
	for (size_t i = 0; i < cap; i++)
		len += (size_t)snprintf(
		    s + len, alloc - len,
		    "%s{\"mediaType\":\"a/b\",\"digest\":\"sha256:%064zx\",\"size\":1%s%s%s}",
		    i ? "," : "", i, i % 2 ? ",\"artifactType\":\"" TYPE "\"" : "",
		    i % 2 ? ",\"annotations\":{\"" OCI_ANNOTATION_CREATED "\":" : "",
		    i % 2 ? (i == 7 ? "\"2020-01-01T00:00:00Z\"}" : "\"2026-01-01T00:00:00Z\"}")
			  : "");
	len += (size_t)snprintf(s + len, alloc - len, "]}");
	assert_int_equal(oci_referrers_index_add(s, len, NULL, &a, &out, &added, why, sizeof(why)),
			 0);
	assert_true(added);
	{
		char seven[80];
		size_t n;
		struct oci_referrer *v = index_entries(out, &n);

		assert_int_equal(n, cap);
		snprintf(seven, sizeof(seven), "sha256:%064zx", (size_t)7);
		assert_null(strstr(out, seven));
		assert_non_null(strstr(
		    out,
		    "sha256:0000000000000000000000000000000000000000000000000000000000000006"));
		assert_string_equal(v[n - 1].digest, DA);
		free(v);
	}
	free(out);
	free(s);
}

static void test_manifest_artifact_fields(void **state)
{
	struct oci_manifest *m = NULL;
	char why[512] = "";
	const char *bad_subject =
		"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"layers\":[],"
		"\"subject\":{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"size\":1}}";
	const char *image = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
			    "\"layers\":[{\"mediaType\":\"" OCI_MT_EROFS_LAYER "\",\"digest\":\"" DA
			    "\",\"size\":3,\"annotations\":{\"a\":\"b\"}}]}";

	/* a plain image: no subject, no artifact type */
	assert_int_equal(oci_manifest_parse(image, strlen(image), NULL, &m, why, sizeof(why)), 0);
	assert_false(m->has_subject);
	assert_string_equal(m->artifact_type, "");
	assert_string_equal(m->items[0].created, "");
	oci_manifest_free(m);
	m = NULL;
	/* a subject must be a whole descriptor */
	assert_int_equal(oci_manifest_parse(bad_subject, strlen(bad_subject), NULL, &m, why,
					    sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "subject"));
}

static void link_ok(const char *s, const char *want)
{
	char out[256] = "";

	if (oci_link_next(s, strlen(s), out, sizeof(out)) != 0)
		fail_msg("no next link in '%s'", s);
	assert_string_equal(out, want);
}

static void test_link_next(void **state)
{
	char out[16];

	link_ok("</v2/r/referrers/" DA "?n=2&last=x>; rel=\"next\"",
		"/v2/r/referrers/" DA "?n=2&last=x");
	link_ok("<https://h/a?x=1>;rel=next", "https://h/a?x=1");
	link_ok("<https://h/prev>; rel=\"prev\", <https://h/next>; title=\"a, b; c\"; rel=\"next\"",
		"https://h/next");
	link_ok("<a>; rel=\"prev next\"", "a");
	link_ok("<a>; REL=NEXT", "a");
	assert_int_equal(oci_link_next("<a>; rel=prev", 13, out, sizeof(out)), -ENOENT);
	assert_int_equal(oci_link_next("", 0, out, sizeof(out)), -ENOENT);
	assert_int_equal(oci_link_next("<a>; rel=nextpage", 17, out, sizeof(out)), -ENOENT);
	assert_int_equal(oci_link_next("a; rel=next", 11, out, sizeof(out)), -EBADMSG);
	assert_int_equal(oci_link_next("<a; rel=next", 12, out, sizeof(out)), -EBADMSG);
	assert_int_equal(oci_link_next("<a>; rel=\"next", 14, out, sizeof(out)), -EBADMSG);
	assert_int_equal(oci_link_next("<a>; x", 6, out, sizeof(out)), -ENOENT);
	assert_int_equal(oci_link_next("<a>x; rel=next", 14, out, sizeof(out)), -EBADMSG);
	assert_int_equal(oci_link_next("<a b>; rel=next", 15, out, sizeof(out)), -EBADMSG);
	assert_int_equal(oci_link_next("<>; rel=next", 12, out, sizeof(out)), -EBADMSG);
	assert_int_equal(oci_link_next("<aaaaaaaaaaaaaaaaaaaa>; rel=next", 32, out, sizeof(out)),
			 -EFBIG);
}

static void test_rfc3339_fraction(void **state)
{
	time_t t;
	uint32_t ns;

	assert_int_equal(oci_rfc3339_parse_ns("2024-01-01T00:00:00Z", 20, &t, &ns), 0);
	assert_int_equal(t, 1704067200);
	assert_int_equal(ns, 0);
	assert_int_equal(oci_rfc3339_parse_ns("2024-01-01T00:00:00.5Z", 22, &t, &ns), 0);
	assert_int_equal(ns, 500000000);
	assert_int_equal(oci_rfc3339_parse_ns("2024-01-01T00:00:00.123456789123Z", 33, &t, &ns), 0);
	assert_int_equal(ns, 123456789);
	assert_int_equal(oci_rfc3339_parse_ns("2024-01-01T00:00:00.Z", 21, &t, &ns), -EBADMSG);
	assert_int_equal(oci_rfc3339_parse("2024-01-01T00:00:00.999+01:00", 29, &t), 0);
	assert_int_equal(t, 1704067200 - 3600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tag),
		cmocka_unit_test(test_artifact_build),
		cmocka_unit_test(test_layer_hint),
		cmocka_unit_test(test_referrers_parse),
		cmocka_unit_test(test_newest),
		cmocka_unit_test(test_index_add),
		cmocka_unit_test(test_index_full),
		cmocka_unit_test(test_manifest_artifact_fields),
		cmocka_unit_test(test_link_next),
		cmocka_unit_test(test_rfc3339_fraction),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
