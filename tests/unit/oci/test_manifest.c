// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Unit tests for oci: manifests and indexes, platform selection, layer selection, media
 * types that cannot be read by ranges, and the image push builds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "oci/oci.h"
#include "oci/parse.h"
#include "util/sha256.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define DD "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

static struct oci_manifest *parse(const char *s, const char *ct, int expect)
{
	struct oci_manifest *m = NULL;
	char why[512] = "";
	int r = oci_manifest_parse(s, strlen(s), ct, &m, why, sizeof(why));

	if (r != expect)
		fail_msg("parse returned %d (want %d): %s", r, expect, why);
	if (r < 0)
		assert_true(why[0]);
	return m;
}

static char *layers_manifest(const char *mt, const char *const *types, size_t n)
{
	static const char *const digests[] = { DA, DB, DC, DD };
	char *s = malloc(8192);
	size_t used;

	used = (size_t)snprintf(s, 8192,
				"{\"schemaVersion\":2,%s%s%s\"config\":{\"mediaType\":\"%s\","
				"\"digest\":\"" DD "\",\"size\":10},\"layers\":[",
				mt ? "\"mediaType\":\"" : "", mt ? mt : "", mt ? "\"," : "",
				OCI_MT_OCI_CONFIG);
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(s + used, 8192 - used,
					 "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}",
					 i ? "," : "", types[i], digests[i], 100 + i);
	snprintf(s + used, 8192 - used, "]}");
	return s;
}

static void test_manifest_kinds(void **state)
{
	static const char *const one[] = { OCI_MT_EROFS_LAYER };
	struct oci_manifest *m;
	char *s;

	s = layers_manifest(OCI_MT_OCI_MANIFEST, one, 1);
	m = parse(s, NULL, 0);
	assert_int_equal(m->kind, OCI_KIND_MANIFEST);
	assert_int_equal(m->n, 1);
	assert_string_equal(m->items[0].digest, DA);
	assert_int_equal(m->items[0].size, 100);
	assert_string_equal(m->items[0].media_type, OCI_MT_EROFS_LAYER);
	assert_string_equal(m->config.digest, DD);
	oci_manifest_free(m);
	free(s);
	/* Docker schema 2, media type only in the Content-Type */
	s = layers_manifest(NULL, one, 1);
	m = parse(s, OCI_MT_DOCKER_MANIFEST "; charset=utf-8", 0);
	assert_string_equal(m->media_type, OCI_MT_DOCKER_MANIFEST);
	assert_int_equal(m->kind, OCI_KIND_MANIFEST);
	oci_manifest_free(m);
	/* ... or from the shape */
	m = parse(s, NULL, 0);
	assert_int_equal(m->kind, OCI_KIND_MANIFEST);
	oci_manifest_free(m);
	free(s);

	m = parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_LIST "\",\"manifests\":["
		  "{\"mediaType\":\"" OCI_MT_DOCKER_MANIFEST "\",\"digest\":\"" DA "\",\"size\":5,"
		  "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}}]}",
		  NULL, 0);
	assert_int_equal(m->kind, OCI_KIND_INDEX);
	assert_true(m->items[0].has_platform);
	assert_string_equal(m->items[0].platform.arch, "arm");
	assert_string_equal(m->items[0].platform.variant, "v7");
	oci_manifest_free(m);

	/* refused */
	parse("{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"mediaType\":\"application/x-other\"}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"layers\":[],\"manifests\":[]}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\"}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"x\",\"digest\":\"sha512:ab\","
	      "\"size\":1}]}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\","
	      "\"size\":-1}]}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\"}]}",
	      NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"layers\":[5]}", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\","
	      "\"size\":1,\"platform\":{\"os\":\"linux\"}}]}", NULL, -EBADMSG);
	parse("[1,2]", NULL, -EBADMSG);
	parse("{\"schemaVersion\":2,\"layers\":[", NULL, -EBADMSG);
}

static void test_manifest_caps(void **state)
{
	size_t n = OCI_MANIFEST_ITEMS_MAX + 1, cap = n * 120 + 100, used = 0;
	char *s = malloc(cap);
	struct oci_manifest *m = NULL;
	char why[200];

	used += (size_t)snprintf(s, cap, "{\"schemaVersion\":2,\"layers\":[");
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(s + used, cap - used,
					 "%s{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1}",
					 i ? "," : "");
	snprintf(s + used, cap - used, "]}");
	assert_int_equal(oci_manifest_parse(s, strlen(s), NULL, &m, why, sizeof(why)), -EFBIG);
	free(s);
	s = malloc(OCI_MANIFEST_MAX + 10);
	memset(s, ' ', OCI_MANIFEST_MAX + 10);
	assert_int_equal(oci_manifest_parse(s, OCI_MANIFEST_MAX + 10, NULL, &m, why, sizeof(why)),
			 -EFBIG);
	free(s);
}

static void test_platforms(void **state)
{
	struct oci_platform p, want;
	struct oci_manifest *idx;
	char why[512], shown[64];
	size_t i;

	assert_int_equal(oci_platform_from_machine("x86_64", &p), 0);
	oci_platform_format(&p, shown, sizeof(shown));
	assert_string_equal(shown, "linux/amd64");
	assert_int_equal(oci_platform_from_machine("aarch64", &p), 0);
	oci_platform_format(&p, shown, sizeof(shown));
	assert_string_equal(shown, "linux/arm64/v8");
	assert_int_equal(oci_platform_from_machine("armv7l", &p), 0);
	oci_platform_format(&p, shown, sizeof(shown));
	assert_string_equal(shown, "linux/arm/v7");
	assert_int_equal(oci_platform_from_machine("i686", &p), 0);
	assert_string_equal(p.arch, "386");
	assert_int_equal(oci_platform_from_machine("riscv64", &p), 0);
	assert_int_equal(oci_platform_from_machine("pdp11", &p), -ENOTSUP);
	assert_int_equal(oci_platform_host(&p), 0);
	assert_string_equal(p.os, "linux");

	assert_int_equal(oci_platform_parse("linux/x86_64", &p), 0);
	assert_string_equal(p.arch, "amd64");
	assert_int_equal(oci_platform_parse("linux/arm/v6", &p), 0);
	assert_string_equal(p.variant, "v6");
	assert_int_equal(oci_platform_parse("linux", &p), -EINVAL);
	assert_int_equal(oci_platform_parse("/amd64", &p), -EINVAL);
	assert_int_equal(oci_platform_parse("linux/arm/v7/x", &p), -EINVAL);

	idx = parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":["
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DA "\",\"size\":1,"
		    "\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}},"
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DB "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DC "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DD "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}}]}",
		    NULL, 0);
	/* the host mapping of aarch64 (arm64/v8) matches an arm64 entry without variant */
	oci_platform_from_machine("aarch64", &want);
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 2);
	oci_platform_from_machine("x86_64", &want);
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 1);
	oci_platform_parse("linux/arm", &want); /* any arm variant */
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 3);
	oci_platform_parse("linux/arm/v6", &want);
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "linux/arm/v6"));
	assert_non_null(strstr(why, "linux/amd64, linux/arm64, linux/arm/v7"));
	assert_null(strstr(why, "unknown"));
	oci_platform_parse("windows/amd64", &want);
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), -ENOENT);
	oci_manifest_free(idx);

	/* A tar image and an EROFS image of one platform: the one marked os.features erofs,
	 * wherever it is listed; other features do not count. */
	idx = parse("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":["
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DA "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DB "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\","
		    "\"os.features\":[\"win32k\"]}},"
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DC "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\","
		    "\"os.features\":[\"x\",\"erofs\"]}},"
		    "{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DD "\",\"size\":1,"
		    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
		    "\"os.features\":\"erofs\"}}]}",
		    NULL, 0);
	oci_platform_parse("linux/amd64", &want);
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 2);
	oci_platform_parse("linux/arm64", &want); /* a malformed os.features marks nothing */
	assert_int_equal(oci_platform_select(idx, &want, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 3);
	assert_false(idx->items[3].platform.erofs);
	oci_manifest_free(idx);
}

static void test_layer_select(void **state)
{
	static const char *const three[] = { OCI_MT_OCI_MANIFEST, OCI_MT_EROFS_LAYER,
					     OCI_MT_EROFS_LAYER };
	static const char *const mixed[] = { "application/vnd.oci.image.layer.v1.tar",
					     OCI_MT_EROFS_LAYER };
	static const char *const other[] = { "application/octet-stream" };
	static const char *const two_other[] = { "application/octet-stream", "application/x-y" };
	struct oci_manifest *m;
	char why[1024], *s;
	size_t i;

	s = layers_manifest(OCI_MT_OCI_MANIFEST, three, 3);
	m = parse(s, NULL, 0);
	free(s);
	assert_int_equal(oci_layer_select(m, NULL, -1, &i, why, sizeof(why)), -ENOTUNIQ);
	assert_non_null(strstr(why, "layer=1 " DB));
	assert_non_null(strstr(why, "layer=2 " DC));
	assert_int_equal(oci_layer_select(m, NULL, 2, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 2);
	assert_int_equal(oci_layer_select(m, DB, -1, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 1);
	assert_int_equal(oci_layer_select(m, DB, 1, &i, why, sizeof(why)), 0);
	assert_int_equal(oci_layer_select(m, DB, 2, &i, why, sizeof(why)), -EINVAL);
	assert_int_equal(oci_layer_select(m, NULL, 3, &i, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "3 layers"));
	assert_int_equal(oci_layer_select(m, DD, -1, &i, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, DD));
	oci_manifest_free(m);

	s = layers_manifest(NULL, mixed, 2);
	m = parse(s, NULL, 0);
	free(s);
	assert_int_equal(oci_layer_select(m, NULL, -1, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 1);
	oci_manifest_free(m);

	s = layers_manifest(NULL, other, 1);
	m = parse(s, NULL, 0);
	free(s);
	assert_int_equal(oci_layer_select(m, NULL, -1, &i, why, sizeof(why)), 0);
	assert_int_equal(i, 0);
	oci_manifest_free(m);

	s = layers_manifest(NULL, two_other, 2);
	m = parse(s, NULL, 0);
	free(s);
	assert_int_equal(oci_layer_select(m, NULL, -1, &i, why, sizeof(why)), -ENOTUNIQ);
	assert_non_null(strstr(why, DA));
	assert_non_null(strstr(why, DB));
	oci_manifest_free(m);

	s = layers_manifest(NULL, NULL, 0);
	m = parse(s, NULL, 0);
	free(s);
	assert_int_equal(oci_layer_select(m, NULL, -1, &i, why, sizeof(why)), -ENOENT);
	oci_manifest_free(m);
}

static void test_media_types(void **state)
{
	char why[512];

	assert_int_equal(oci_layer_check_media_type(OCI_MT_EROFS_LAYER, why, sizeof(why)), 0);
	assert_int_equal(oci_layer_check_media_type("application/octet-stream", why, sizeof(why)), 0);
	assert_int_equal(oci_layer_check_media_type("application/vnd.erofs.layer.v1+zstd", why,
						    sizeof(why)), -EMEDIUMTYPE);
	assert_non_null(strstr(why, "ranges"));
	assert_int_equal(oci_layer_check_media_type("application/vnd.oci.image.layer.v1.tar", why,
						    sizeof(why)), -EMEDIUMTYPE);
	assert_non_null(strstr(why, "tar"));
	assert_int_equal(oci_layer_check_media_type("application/vnd.oci.image.layer.v1.tar+gzip",
						    why, sizeof(why)), -EMEDIUMTYPE);
	assert_non_null(strstr(why, "compressed tar"));
	assert_int_equal(oci_layer_check_media_type(
				 "application/vnd.docker.image.rootfs.diff.tar.gzip", why, sizeof(why)),
			 -EMEDIUMTYPE);
	assert_int_equal(oci_layer_check_media_type("application/vnd.erofs.layer.v1+encrypted", why,
						    sizeof(why)), -EMEDIUMTYPE);
}

static void test_image_build(void **state)
{
	char *cfg = NULL, *man = NULL, *cfg2 = NULL, *man2 = NULL, why[256], cd[UTIL_DIGEST_STR_LEN];
	struct oci_manifest *m = NULL;
	uint8_t d[UTIL_SHA256_LEN];

	assert_int_equal(oci_image_build(DA, 12345, "linux/arm64/v8", NULL, &cfg, &man), 0);
	assert_non_null(strstr(cfg, "\"architecture\":\"arm64\""));
	assert_non_null(strstr(cfg, "\"os\":\"linux\""));
	assert_non_null(strstr(cfg, "\"variant\":\"v8\""));
	assert_non_null(strstr(cfg, "\"diff_ids\":[\"" DA "\"]"));
	assert_non_null(strstr(cfg, "\"type\":\"layers\""));
	assert_int_equal(oci_manifest_parse(man, strlen(man), NULL, &m, why, sizeof(why)), 0);
	assert_string_equal(m->media_type, OCI_MT_OCI_MANIFEST);
	assert_string_equal(m->config.media_type, OCI_MT_OCI_CONFIG);
	util_sha256_buf(cfg, strlen(cfg), d);
	util_digest_format(d, cd);
	assert_string_equal(m->config.digest, cd);
	assert_int_equal(m->config.size, strlen(cfg));
	assert_int_equal(m->n, 1);
	assert_string_equal(m->items[0].media_type, OCI_MT_EROFS_LAYER);
	assert_string_equal(m->items[0].digest, DA);
	assert_int_equal(m->items[0].size, 12345);
	oci_manifest_free(m);
	/* deterministic: the same image gives the same digests */
	assert_int_equal(oci_image_build(DA, 12345, "linux/arm64/v8", NULL, &cfg2, &man2), 0);
	assert_string_equal(cfg, cfg2);
	assert_string_equal(man, man2);
	free(cfg);
	free(man);
	free(cfg2);
	free(man2);
	assert_int_equal(oci_image_build("sha256:12", 1, NULL, NULL, &cfg, &man), -EINVAL);
}

/* A metadata map rides on the layer's descriptor and comes back from the manifest as it went;
 * a layer without one, or with one that is not a string, has none. */
static void test_image_build_metamap(void **state)
{
	char *cfg = NULL, *man = NULL, why[256];
	struct oci_manifest *m = NULL;
	const char *other = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
			    "\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG "\",\"digest\":"
			    "\"" DA "\",\"size\":2},\"layers\":[{\"mediaType\":\""
			    OCI_MT_EROFS_LAYER "\",\"digest\":\"" DA "\",\"size\":3,"
			    "\"annotations\":{\"" OCI_ANNOTATION_METADATA "\":7}}]}";

	assert_int_equal(oci_image_build(DA, 12345, NULL, "1:AQI=", &cfg, &man), 0);
	assert_non_null(strstr(man, "\"annotations\":{\"" OCI_ANNOTATION_METADATA "\":\"1:AQI=\"}"));
	assert_int_equal(oci_manifest_parse(man, strlen(man), NULL, &m, why, sizeof(why)), 0);
	assert_string_equal(m->items[0].metamap, "1:AQI=");
	assert_null(m->config.metamap);
	oci_manifest_free(m);
	free(cfg);
	free(man);
	assert_int_equal(oci_manifest_parse(other, strlen(other), NULL, &m, why, sizeof(why)), 0);
	assert_null(m->items[0].metamap);
	oci_manifest_free(m);
}

/* The platform an image config records (a single manifest's, checked for platform=). */
static void test_config_platform(void **state)
{
	struct oci_platform have, want;
	char big[OCI_CONFIG_MAX + 16];
	const char *s;

	(void)state;
	s = "{\"architecture\":\"arm64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), 0);
	assert_string_equal(have.os, "linux");
	assert_string_equal(have.arch, "arm64");
	assert_string_equal(have.variant, "");
	oci_platform_parse("linux/arm64/v8", &want);
	assert_true(oci_platform_match(&have, &want)); /* arm64 without a variant is v8 */
	oci_platform_parse("linux/arm64", &want);
	assert_true(oci_platform_match(&have, &want));
	oci_platform_parse("linux/amd64", &want);
	assert_false(oci_platform_match(&have, &want));
	oci_platform_parse("windows/arm64", &want);
	assert_false(oci_platform_match(&have, &want));

	/* Docker's spelling of the architecture, a variant. */
	s = "{\"architecture\":\"x86_64\",\"os\":\"linux\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), 0);
	oci_platform_parse("linux/amd64", &want);
	assert_true(oci_platform_match(&have, &want));
	s = "{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), 0);
	assert_string_equal(have.variant, "v6");
	oci_platform_parse("linux/arm/v7", &want);
	assert_false(oci_platform_match(&have, &want));
	oci_platform_parse("linux/arm", &want); /* any variant */
	assert_true(oci_platform_match(&have, &want));

	/* No platform recorded: an artifact's empty config, empty members. */
	assert_int_equal(oci_config_platform("{}", 2, &have), -ENOENT);
	s = "{\"os\":\"linux\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), -ENOENT);
	s = "{\"architecture\":\"\",\"os\":\"\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), -ENOENT);

	/* Not a config. */
	assert_int_equal(oci_config_platform("[]", 2, &have), -EBADMSG);
	assert_int_equal(oci_config_platform("{", 1, &have), -EBADMSG);
	s = "{\"architecture\":64,\"os\":\"linux\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), -EBADMSG);
	s = "{\"architecture\":\"amd64\",\"os\":\"li\\nnux\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), -EBADMSG);
	s = "{\"architecture\":\"amd64amd64amd64amd64amd64amd64amd64\",\"os\":\"linux\"}";
	assert_int_equal(oci_config_platform(s, strlen(s), &have), -EBADMSG);
	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[sizeof(big) - 1] = '}';
	assert_int_equal(oci_config_platform(big, sizeof(big), &have), -EFBIG);

	assert_true(oci_config_is_image(OCI_MT_OCI_CONFIG));
	assert_true(oci_config_is_image(OCI_MT_DOCKER_CONFIG));
	assert_false(oci_config_is_image(OCI_MT_OCI_EMPTY));
	assert_false(oci_config_is_image("application/vnd.cncf.helm.config.v1+json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_kinds), cmocka_unit_test(test_manifest_caps),
		cmocka_unit_test(test_platforms), cmocka_unit_test(test_config_platform),      cmocka_unit_test(test_layer_select),
		cmocka_unit_test(test_media_types),    cmocka_unit_test(test_image_build),
		cmocka_unit_test(test_image_build_metamap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
