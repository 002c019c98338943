// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Manifests and indexes (OCI image manifest and index, Docker schema 2 manifest and manifest
 * list), platform selection in an index, layer selection in a manifest and the check that a
 * layer's media type can be read by byte ranges. Pure functions over the reply bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "oci/parse.h"
#include "util/cleanup.h"
#include "util/json.h"
#include "util/sha256.h"
#include "util/strutil.h"

void oci_manifest_free(struct oci_manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; m->items && i < m->n; i++)
		free(m->items[i].metamap);
	free(m->items);
	free(m);
}

static bool is_index_type(const char *t)
{
	return !strcmp(t, OCI_MT_OCI_INDEX) || !strcmp(t, OCI_MT_DOCKER_LIST);
}

static bool is_manifest_type(const char *t)
{
	return !strcmp(t, OCI_MT_OCI_MANIFEST) || !strcmp(t, OCI_MT_DOCKER_MANIFEST);
}

static void normalize_arch(char *arch, size_t size)
{
	if (!strcmp(arch, "x86_64") || !strcmp(arch, "x86-64"))
		oci_fmt(arch, size, "amd64");
	else if (!strcmp(arch, "aarch64"))
		oci_fmt(arch, size, "arm64");
	else if (!strcmp(arch, "i386") || !strcmp(arch, "i686"))
		oci_fmt(arch, size, "386");
}

/* Variant as containerd compares it: arm64 means v8, arm v7 and amd64 v1 when unset. */
static const char *effective_variant(const struct oci_platform *p)
{
	if (p->variant[0])
		return !strcmp(p->arch, "arm64") && !strcmp(p->variant, "8") ? "v8" : p->variant;
	if (!strcmp(p->arch, "arm64"))
		return "v8";
	if (!strcmp(p->arch, "arm"))
		return "v7";
	if (!strcmp(p->arch, "amd64"))
		return "v1";
	return "";
}

static int copy_str(char *dst, size_t size, const char *s)
{
	size_t n = strlen(s);

	if (n + 1 > size)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -EBADMSG;
	memcpy(dst, s, n + 1);
	return 0;
}

/* An optional string member that is informative only: absent, or too long or unprintable to
 * be a value we look for, leaves "" (another tool's entry must not make a whole list
 * unreadable); present but not a string is -EBADMSG. */
static int copy_optional(json_t *o, const char *key, char *dst, size_t size)
{
	const char *v = NULL;
	int r = util_json_get_string(o, key, &v);

	dst[0] = 0;
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return -EBADMSG;
	if (copy_str(dst, size, v) < 0)
		dst[0] = 0;
	return 0;
}

/* The layer annotations (OCI_ANNOTATION_LAYER_*): all three readable, or none (a hint is
 * only ever an optimisation: anything odd in it means there is none). */
static void parse_layer_hint(json_t *ann, struct oci_layer_hint *h)
{
	const char *mt = NULL, *digest = NULL, *size = NULL;
	char *end = NULL;
	unsigned long long v;

	memset(h, 0, sizeof(*h));
	if (util_json_get_string(ann, OCI_ANNOTATION_LAYER_TYPE, &mt) < 0 ||
	    util_json_get_string(ann, OCI_ANNOTATION_LAYER_DIGEST, &digest) < 0 ||
	    util_json_get_string(ann, OCI_ANNOTATION_LAYER_SIZE, &size) < 0 ||
	    !util_digest_valid(digest) || size[0] < '0' || size[0] > '9')
		return;
	errno = 0;
	v = strtoull(size, &end, 10);
	if (errno || *end || v > (unsigned long long)INT64_MAX ||
	    copy_str(h->media_type, sizeof(h->media_type), mt) < 0) {
		memset(h, 0, sizeof(*h));
		return;
	}
	memcpy(h->digest, digest, UTIL_DIGEST_STR_LEN);
	h->size = v;
}

/* artifactType, the created annotation and the layer annotations of a descriptor or a
 * manifest. */
static int parse_artifact_fields(json_t *o, char *artifact_type, size_t atlen, char *created,
				 size_t crlen, struct oci_layer_hint *layer, char *subject_blob)
{
	json_t *ann = json_object_get(o, "annotations");

	if (copy_optional(o, "artifactType", artifact_type, atlen) < 0)
		return -EBADMSG;
	if (created)
		created[0] = 0;
	if (layer)
		memset(layer, 0, sizeof(*layer));
	if (!ann)
		return 0;
	if (!json_is_object(ann))
		return -EBADMSG;
	if (layer)
		parse_layer_hint(ann, layer);
	if (subject_blob) {
		const char *sb = NULL;

		subject_blob[0] = 0;
		if (util_json_get_string(ann, OCI_ANNOTATION_SUBJECT_BLOB, &sb) == 0 &&
		    util_digest_valid(sb))
			memcpy(subject_blob, sb, UTIL_DIGEST_STR_LEN);
	}
	return created ? copy_optional(ann, OCI_ANNOTATION_CREATED, created, crlen) : 0;
}

/* os, architecture (normalised), variant and os.features of a descriptor's platform or of an
 * image config: -ENOENT when os or architecture is absent, -EBADMSG when one is not a string
 * we can keep. A variant that is not a string is ignored; one too long or unprintable is
 * -EBADMSG. */
static int platform_from_json(json_t *o, struct oci_platform *p)
{
	const char *os = NULL, *arch = NULL, *variant = NULL;
	json_t *features, *f;
	size_t k;
	int r;

	memset(p, 0, sizeof(*p));
	r = util_json_get_string(o, "os", &os);
	if (r == 0)
		r = util_json_get_string(o, "architecture", &arch);
	if (r < 0)
		return r == -ENOENT ? -ENOENT : -EBADMSG;
	if (copy_str(p->os, sizeof(p->os), os) < 0 || copy_str(p->arch, sizeof(p->arch), arch) < 0)
		return -EBADMSG;
	if (util_json_get_string(o, "variant", &variant) == 0 &&
	    copy_str(p->variant, sizeof(p->variant), variant) < 0)
		return -EBADMSG;
	normalize_arch(p->arch, sizeof(p->arch));
	features = json_object_get(o, "os.features");
	json_array_foreach(features, k, f)
		if (json_is_string(f) && !strcmp(json_string_value(f), "erofs"))
			p->erofs = true;
	return 0;
}

static int parse_descriptor(json_t *o, struct oci_descriptor *d, const char *what, size_t idx,
			    char *errbuf, size_t errlen)
{
	const char *mt = NULL, *digest = NULL;
	json_t *plat;
	uint64_t size;

	memset(d, 0, sizeof(*d));
	if (!json_is_object(o)) {
		oci_fmt(errbuf, errlen, "%s %zu is not an object", what, idx);
		return -EBADMSG;
	}
	if (util_json_get_string(o, "mediaType", &mt) < 0 ||
	    copy_str(d->media_type, sizeof(d->media_type), mt) < 0) {
		oci_fmt(errbuf, errlen, "%s %zu has no valid mediaType", what, idx);
		return -EBADMSG;
	}
	if (util_json_get_string(o, "digest", &digest) < 0) {
		oci_fmt(errbuf, errlen, "%s %zu has no digest", what, idx);
		return -EBADMSG;
	}
	if (!util_digest_valid(digest)) {
		oci_fmt(errbuf, errlen, "%s %zu has digest '%.80s': only sha256 digests are supported",
			what, idx, digest);
		return -EBADMSG;
	}
	memcpy(d->digest, digest, UTIL_DIGEST_STR_LEN);
	if (util_json_get_u64(o, "size", &size) < 0) {
		oci_fmt(errbuf, errlen, "%s %zu has no valid size", what, idx);
		return -EBADMSG;
	}
	d->size = size;
	if (parse_artifact_fields(o, d->artifact_type, sizeof(d->artifact_type), d->created,
				  sizeof(d->created), &d->layer, d->subject_blob) < 0) {
		oci_fmt(errbuf, errlen, "%s %zu has an invalid artifactType or annotations", what,
			idx);
		return -EBADMSG;
	}
	plat = json_object_get(o, "platform");
	if (plat) {
		if (!json_is_object(plat) || platform_from_json(plat, &d->platform) < 0) {
			oci_fmt(errbuf, errlen, "%s %zu has an invalid platform", what, idx);
			return -EBADMSG;
		}
		d->has_platform = true;
	}
	if (!strcmp(what, "layer")) {
		const char *map = NULL;

		/* A hint: one that is not a string, or too long, is none. */
		if (util_json_get_string(json_object_get(o, "annotations"), OCI_ANNOTATION_METADATA,
					 &map) == 0 &&
		    strnlen(map, OCI_METAMAP_MAX_TEXT + 1) <= OCI_METAMAP_MAX_TEXT &&
		    !(d->metamap = strdup(map)))
			return -ENOMEM;
	}
	return 0;
}

int oci_manifest_parse(const void *buf, size_t len, const char *content_type,
		       struct oci_manifest **ret, char *errbuf, size_t errlen)
{
	_cleanup_(oci_manifest_freep) struct oci_manifest *m = NULL;
	_cleanup_json_ json_t *j = NULL;
	const char *mt = NULL;
	json_t *items = NULL, *cfg, *e;
	uint64_t schema;
	size_t i;
	int r;

	r = util_json_parse(buf, len, OCI_MANIFEST_MAX, &j);
	if (r == -EFBIG) {
		oci_fmt(errbuf, errlen, "manifest is larger than %d bytes", OCI_MANIFEST_MAX);
		return r;
	}
	if (r < 0 || !json_is_object(j)) {
		oci_fmt(errbuf, errlen, "manifest is not valid JSON");
		return -EBADMSG;
	}
	if (util_json_get_u64(j, "schemaVersion", &schema) == 0 && schema != 2) {
		oci_fmt(errbuf, errlen, "manifest schemaVersion %llu is not supported (only 2)",
			(unsigned long long)schema);
		return -EBADMSG;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	r = util_json_get_string(j, "mediaType", &mt);
	if (r == -EBADMSG || (r == 0 && copy_str(m->media_type, sizeof(m->media_type), mt) < 0)) {
		oci_fmt(errbuf, errlen, "manifest has an invalid mediaType");
		return -EBADMSG;
	}
	if (!m->media_type[0] && content_type) {
		size_t n = strcspn(content_type, "; \t");

		if (n < sizeof(m->media_type)) {
			memcpy(m->media_type, content_type, n);
			m->media_type[n] = 0;
		}
	}
	if (is_index_type(m->media_type))
		m->kind = OCI_KIND_INDEX;
	else if (is_manifest_type(m->media_type))
		m->kind = OCI_KIND_MANIFEST;
	else if (json_object_get(j, "manifests") && !json_object_get(j, "layers"))
		m->kind = OCI_KIND_INDEX;
	else if (json_object_get(j, "layers") && !json_object_get(j, "manifests"))
		m->kind = OCI_KIND_MANIFEST;
	else {
		oci_fmt(errbuf, errlen, "unsupported manifest type '%.100s'",
			m->media_type[0] ? m->media_type : "(none)");
		return -EBADMSG;
	}
	r = util_json_get_array(j, m->kind == OCI_KIND_INDEX ? "manifests" : "layers", &items);
	if (r < 0) {
		oci_fmt(errbuf, errlen, "%s has no '%s' array",
			m->kind == OCI_KIND_INDEX ? "index" : "manifest",
			m->kind == OCI_KIND_INDEX ? "manifests" : "layers");
		return -EBADMSG;
	}
	if (json_array_size(items) > OCI_MANIFEST_ITEMS_MAX) {
		oci_fmt(errbuf, errlen, "manifest lists %zu entries, more than %d",
			json_array_size(items), OCI_MANIFEST_ITEMS_MAX);
		return -EFBIG;
	}
	if (m->kind == OCI_KIND_MANIFEST) {
		cfg = json_object_get(j, "config");
		if (cfg) {
			r = parse_descriptor(cfg, &m->config, "config", 0, errbuf, errlen);
			if (r < 0)
				return r;
		}
	}
	if (parse_artifact_fields(j, m->artifact_type, sizeof(m->artifact_type), NULL, 0, NULL,
				  NULL) < 0) {
		oci_fmt(errbuf, errlen, "manifest has an invalid artifactType or annotations");
		return -EBADMSG;
	}
	e = json_object_get(j, "subject");
	if (e) {
		r = parse_descriptor(e, &m->subject, "subject", 0, errbuf, errlen);
		if (r < 0)
			return r;
		m->has_subject = true;
	}
	m->items = calloc(json_array_size(items) ? json_array_size(items) : 1, sizeof(*m->items));
	if (!m->items)
		return -ENOMEM;
	json_array_foreach(items, i, e) {
		r = parse_descriptor(e, &m->items[i], m->kind == OCI_KIND_INDEX ? "manifest" : "layer",
				     i, errbuf, errlen);
		if (r < 0)
			return r;
		m->n++;
	}
	*ret = TAKE_PTR(m);
	return 0;
}

int oci_platform_parse(const char *s, struct oci_platform *ret)
{
	const char *a, *v;
	size_t n;

	memset(ret, 0, sizeof(*ret));
	a = strchr(s, '/');
	if (!a || a == s)
		return -EINVAL;
	n = (size_t)(a - s);
	if (n >= sizeof(ret->os))
		return -EINVAL;
	memcpy(ret->os, s, n);
	a++;
	v = strchr(a, '/');
	n = v ? (size_t)(v - a) : strlen(a);
	if (n == 0 || n >= sizeof(ret->arch))
		return -EINVAL;
	memcpy(ret->arch, a, n);
	if (v) {
		v++;
		n = strlen(v);
		if (n == 0 || n >= sizeof(ret->variant) || strchr(v, '/'))
			return -EINVAL;
		memcpy(ret->variant, v, n);
	}
	normalize_arch(ret->arch, sizeof(ret->arch));
	return 0;
}

int oci_platform_from_machine(const char *machine, struct oci_platform *ret)
{
	static const struct {
		const char *machine, *arch, *variant;
	} map[] = {
		{ "x86_64", "amd64", "" },    { "amd64", "amd64", "" },
		{ "aarch64", "arm64", "v8" }, { "arm64", "arm64", "v8" },
		{ "armv8l", "arm", "v8" },    { "armv7l", "arm", "v7" },
		{ "armv7", "arm", "v7" },     { "armv6l", "arm", "v6" },
		{ "armv5tel", "arm", "v5" },  { "i386", "386", "" },
		{ "i486", "386", "" },        { "i586", "386", "" },
		{ "i686", "386", "" },        { "ppc64le", "ppc64le", "" },
		{ "ppc64", "ppc64", "" },     { "s390x", "s390x", "" },
		{ "riscv64", "riscv64", "" }, { "loongarch64", "loong64", "" },
		{ "mips64", "mips64", "" },   { "mips", "mips", "" },
		{ "mips64el", "mips64le", "" }, { "mipsel", "mipsle", "" },
	};

	memset(ret, 0, sizeof(*ret));
	oci_fmt(ret->os, sizeof(ret->os), "linux");
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (!strcmp(machine, map[i].machine)) {
			oci_fmt(ret->arch, sizeof(ret->arch), "%s", map[i].arch);
			oci_fmt(ret->variant, sizeof(ret->variant), "%s", map[i].variant);
			return 0;
		}
	return -ENOTSUP;
}

int oci_platform_host(struct oci_platform *ret)
{
	struct utsname u;

	if (uname(&u) < 0)
		return -errno;
	if (oci_platform_from_machine(u.machine, ret) < 0) {
		/* Unknown machine: its own name is the best guess. */
		oci_fmt(ret->arch, sizeof(ret->arch), "%s", u.machine);
	}
	return 0;
}

void oci_platform_format(const struct oci_platform *p, char *out, size_t outlen)
{
	oci_fmt(out, outlen, "%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "", p->variant);
}

bool oci_platform_match(const struct oci_platform *have, const struct oci_platform *want)
{
	if (strcmp(have->os, want->os) || strcmp(have->arch, want->arch))
		return false;
	if (!want->variant[0])
		return true;
	return !strcmp(effective_variant(have), effective_variant(want));
}

int oci_platform_select(const struct oci_manifest *index, const struct oci_platform *want,
			size_t *ret_idx, char *errbuf, size_t errlen)
{
	char wanted[100];
	size_t used;

	size_t found = SIZE_MAX;

	/* The first entry for the platform; an index carrying the same image as a tar image and
	 * as an EROFS image marks the latter with os.features ["erofs"] (containerd's convention):
	 * that one. */
	for (size_t i = 0; i < index->n; i++) {
		const struct oci_descriptor *d = &index->items[i];

		if (d->has_platform && oci_platform_match(&d->platform, want) &&
		    (is_manifest_type(d->media_type) || is_index_type(d->media_type)) &&
		    (found == SIZE_MAX || (d->platform.erofs && !index->items[found].platform.erofs)))
			found = i;
	}
	if (found != SIZE_MAX) {
		*ret_idx = found;
		return 0;
	}
	oci_platform_format(want, wanted, sizeof(wanted));
	oci_fmt(errbuf, errlen, "no image for platform %s in the index (use -o platform=); it has:",
		wanted);
	used = strlen(errbuf);
	for (size_t i = 0, shown = 0; i < index->n && used + 1 < errlen; i++) {
		const struct oci_descriptor *d = &index->items[i];
		char p[100];

		if (!d->has_platform)
			continue;
		oci_platform_format(&d->platform, p, sizeof(p));
		if (!strcmp(d->platform.os, "unknown"))
			continue; /* attestations */
		oci_fmt(errbuf + used, errlen - used, "%s %s", shown++ ? "," : "", p);
		used = strlen(errbuf);
	}
	if (used + 1 < errlen && errbuf[used - 1] == ':')
		oci_fmt(errbuf + used, errlen - used, " no platform entries");
	return -ENOENT;
}

bool oci_config_is_image(const char *media_type)
{
	return !strcmp(media_type, OCI_MT_OCI_CONFIG) || !strcmp(media_type, OCI_MT_DOCKER_CONFIG);
}

int oci_config_platform(const void *buf, size_t len, struct oci_platform *ret)
{
	_cleanup_json_ json_t *j = NULL;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = util_json_parse(buf, len, OCI_CONFIG_MAX, &j);
	if (r == -EFBIG)
		return r;
	if (r < 0 || !json_is_object(j))
		return -EBADMSG;
	r = platform_from_json(j, ret);
	if (r < 0)
		return r;
	/* Some tools write the members empty: no platform recorded either. */
	return ret->os[0] && ret->arch[0] ? 0 : -ENOENT;
}

static void list_layers(const struct oci_manifest *m, char *errbuf, size_t errlen)
{
	size_t used = strlen(errbuf);

	for (size_t i = 0; i < m->n && used + 1 < errlen; i++) {
		oci_fmt(errbuf + used, errlen - used, "%s layer=%zu %s (%s)", i ? ";" : "", i,
			m->items[i].digest, m->items[i].media_type);
		used = strlen(errbuf);
	}
}

int oci_layer_select(const struct oci_manifest *m, const char *blob, long layer,
		     size_t *ret_idx, char *errbuf, size_t errlen)
{
	size_t found = SIZE_MAX, count = 0;

	if (m->kind != OCI_KIND_MANIFEST) {
		oci_fmt(errbuf, errlen, "not an image manifest");
		return -EBADMSG;
	}
	if (blob) {
		for (size_t i = 0; i < m->n; i++)
			if (!strcmp(m->items[i].digest, blob)) {
				found = i;
				break;
			}
		if (found == SIZE_MAX) {
			oci_fmt(errbuf, errlen, "blob %s is not a layer of this image; layers:", blob);
			list_layers(m, errbuf, errlen);
			return -ENOENT;
		}
		if (layer >= 0 && (size_t)layer != found) {
			oci_fmt(errbuf, errlen, "blob= names layer %zu but layer=%ld was given", found,
				layer);
			return -EINVAL;
		}
		*ret_idx = found;
		return 0;
	}
	if (layer >= 0) {
		if ((size_t)layer >= m->n) {
			oci_fmt(errbuf, errlen, "layer=%ld asked, but the image has %zu layer%s", layer,
				m->n, m->n == 1 ? "" : "s");
			return -ENOENT;
		}
		*ret_idx = (size_t)layer;
		return 0;
	}
	if (m->n == 0) {
		oci_fmt(errbuf, errlen, "the image has no layers");
		return -ENOENT;
	}
	for (size_t i = 0; i < m->n; i++)
		if (util_startswith(m->items[i].media_type, OCI_MT_EROFS_PREFIX)) {
			found = i;
			count++;
		}
	if (count == 1) {
		*ret_idx = found;
		return 0;
	}
	if (count == 0 && m->n == 1) {
		*ret_idx = 0;
		return 0;
	}
	oci_fmt(errbuf, errlen, "the image has %zu %slayers; choose one with -o layer=N or -o blob=:",
		count ? count : m->n, count ? "EROFS " : "");
	list_layers(m, errbuf, errlen);
	return -ENOTUNIQ;
}

int oci_layer_check_media_type(const char *mt, char *errbuf, size_t errlen)
{
	static const char *const compressed[] = { "+zstd", "+gzip", "+zst", "+lz4", "+xz",
						   "+bzip2", ".gzip", ".zstd" };
	const char *why = NULL;
	size_t n = strlen(mt);

	if (strstr(mt, ".tar") || strstr(mt, "+tar") || strstr(mt, "/tar"))
		why = strchr(mt, '+') ? "is a compressed tar layer, not an EROFS image: it cannot be "
					"mounted or read by byte ranges"
				      : "is a tar layer, not an EROFS image: it cannot be mounted or read "
					"by byte ranges";
	for (size_t i = 0; i < ARRAY_SIZE(compressed) && !why; i++) {
		size_t k = strlen(compressed[i]);

		if (n >= k && !strcmp(mt + n - k, compressed[i]))
			why = "is compressed as a whole, so its bytes cannot be read by ranges; push "
			      "the uncompressed EROFS image (" OCI_MT_EROFS_LAYER ")";
	}
	if (!why && strstr(mt, "+encrypted"))
		why = "is encrypted, so its bytes cannot be read by ranges";
	if (!why)
		return 0;
	oci_fmt(errbuf, errlen, "layer media type '%.100s' %s", mt, why);
	return -EMEDIUMTYPE;
}
