/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Pure parsers of the oci module: functions over (buf, len) with no network and no global
 * state, so that unit tests and fuzz targets reach them directly. Everything a registry,
 * a token server, a credential file or a web server sends passes through one of these.
 */
#ifndef LAZYEROFS_OCI_PARSE_H
#define LAZYEROFS_OCI_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "oci/oci.h"
#include "util/cleanup.h"
#include "util/macro.h"

/* ---- errors (error.c) -------------------------------------------------------------------- */

/* snprintf that may truncate by design (messages): no truncation warning at call sites. */
void oci_fmt(char *buf, size_t len, const char *fmt, ...) _printf_(3, 4);
/* Registry error body {"errors":[{"code","message","detail"}]}: first code and a message
 * made of "CODE: message" entries. -EBADMSG when the body is not one. */
int oci_registry_error_parse(const void *buf, size_t len, char *code, size_t codelen, char *msg,
			     size_t msglen);
/* Copy a URL for display: without user info and without query string (presigned URLs carry
 * signatures in the query). */
void oci_url_redact(const char *url, char *out, size_t outlen);
/* Map an HTTP status to the module's errno vocabulary (STYLE.md). */
int oci_errno_from_status(long status);

/* ---- references (ref.c) ---------------------------------------------------------------------- */

#define OCI_REF_MAX 4096
#define OCI_NAME_MAX 255
#define OCI_TAG_MAX 128

bool oci_tag_valid(const char *s);
bool oci_repository_valid(const char *s);

/* ---- HTTP pieces (httpparse.c) ------------------------------------------------------------- */

/* "bytes FIRST-LAST/TOTAL" (TOTAL may be "*", then *total = UINT64_MAX). Upload replies'
 * "Range: 0-N" is not this. -EBADMSG when malformed or FIRST > LAST or LAST >= TOTAL. */
int oci_content_range_parse(const char *s, size_t len, uint64_t *first, uint64_t *last,
			    uint64_t *total);
/* Retry-After: delta-seconds or an HTTP-date (relative to now); milliseconds to wait,
 * capped at one day. -EBADMSG when neither. */
int oci_retry_after_parse(const char *s, size_t len, time_t now, uint64_t *ret_ms);
/* RFC 7231 IMF-fixdate (plus the two obsolete forms) -> time_t. -EBADMSG otherwise. */
int oci_http_date_parse(const char *s, size_t len, time_t *ret);
/* RFC 3339 timestamp (as in a token reply's issued_at) -> time_t. */
int oci_rfc3339_parse(const char *s, size_t len, time_t *ret);
/* The same with the fraction of a second, in nanoseconds (digits past the ninth ignored). */
int oci_rfc3339_parse_ns(const char *s, size_t len, time_t *ret, uint32_t *ret_ns);
/* Content-Type "multipart/byteranges; boundary=..." -> boundary (unquoted).
 * -ENOENT when the type is not multipart/byteranges, -EBADMSG when the boundary is
 * missing or longer than outlen - 1 (or 200). */
int oci_content_type_boundary(const char *s, size_t len, char *out, size_t outlen);
/* True when the media type (Content-Type value, parameters ignored) equals type. */
bool oci_media_type_is(const char *value, const char *type);
/* One header line "Name: value\r\n" -> name and value (trimmed, not NUL-terminated: spans
 * into line). -EBADMSG when there is no colon or the name is empty. */
int oci_header_split(const char *line, size_t len, const char **name, size_t *name_len,
		     const char **value, size_t *value_len);
/* Upload progress "Range: 0-N" (distribution spec) -> N + 1 bytes received. */
int oci_upload_range_parse(const char *s, size_t len, uint64_t *ret_received);
/* Link header value(s) (RFC 8288, several joined by commas) -> the target of the first link
 * whose rel lists "next" (a paginated list's next page; relative or absolute). -ENOENT when
 * there is none, -EBADMSG when malformed, -EFBIG when it does not fit outlen. */
int oci_link_next(const char *s, size_t len, char *out, size_t outlen);

/* ---- multipart/byteranges (multipart.c) --------------------------------------------------- */

#define OCI_MULTIPART_LINE_MAX 1024
#define OCI_MULTIPART_HEADERS_MAX 8192
#define OCI_MULTIPART_PREAMBLE_MAX 4096
#define OCI_BOUNDARY_MAX 200

/* Receives each part's payload at its blob offset as the body streams past. */
typedef int (*oci_part_fn)(void *ctx, uint64_t offset, const uint8_t *data, size_t len);

struct oci_multipart {
	char boundary[OCI_BOUNDARY_MAX + 3]; /* "--" + boundary */
	size_t blen;
	int state;
	char line[OCI_MULTIPART_LINE_MAX];
	size_t line_len;
	size_t header_bytes;   /* of the current part, capped */
	size_t preamble_bytes; /* capped */
	bool have_range;
	uint64_t first, last, total; /* current part's Content-Range */
	uint64_t offset;             /* next payload byte's blob offset */
	uint64_t remaining;          /* payload bytes left in the current part */
	uint64_t blob_total;         /* first part's total, UINT64_MAX until known or "*" */
	uint64_t parts;
	/* The delimiter (CRLF "--" boundary), which no part holds (RFC 2046 5.1.1): a part
	 * shorter than its Content-Range says has it inside the announced span, and the framing
	 * after it would otherwise pass for payload. */
	char delim[OCI_BOUNDARY_MAX + 5];
	size_t dlen;
	/* The last dlen - 1 payload bytes received, passed on once what follows them shows that
	 * no delimiter begins there (the CRLF after a part's last ones). */
	uint8_t hold[OCI_BOUNDARY_MAX + 4];
	size_t nhold; /* (they end at offset) */
};

/* boundary as from oci_content_type_boundary(); -EINVAL when empty or too long. */
int oci_multipart_init(struct oci_multipart *m, const char *boundary);
/* Feed the next piece of the body (any split). -EBADMSG on malformed framing; a callback's
 * negative return is passed through. */
int oci_multipart_feed(struct oci_multipart *m, const uint8_t *buf, size_t len, oci_part_fn fn,
		       void *ctx);
/* After the last byte: -EBADMSG unless the closing boundary was seen. */
int oci_multipart_finish(const struct oci_multipart *m);

/* ---- WWW-Authenticate and token replies (challenge.c) -------------------------------------- */

enum oci_auth_scheme {
	OCI_AUTH_UNKNOWN = 0, /* not learned yet */
	OCI_AUTH_NONE,        /* the registry let us in without credentials */
	OCI_AUTH_BASIC,
	OCI_AUTH_BEARER,
};

struct oci_challenge {
	enum oci_auth_scheme scheme;
	char realm[1024];
	char service[256];
	char scope[512];
	char error[64]; /* e.g. "insufficient_scope", "invalid_token" */
};

/* Parse a WWW-Authenticate value (several challenges may be joined by commas, as HTTP allows
 * for repeated headers). Picks Bearer when offered, else Basic. -ENOENT when neither is
 * offered, -EBADMSG when malformed or a parameter does not fit. */
int oci_challenge_parse(const char *s, size_t len, struct oci_challenge *ret);

#define OCI_TOKEN_MAX (64 * 1024)       /* one token string */
#define OCI_TOKEN_REPLY_MAX (256 * 1024) /* the whole reply */
#define OCI_TOKEN_LIFETIME_MAX (365ULL * 86400) /* a longer expires_in is cut to this */
#define OCI_TOKEN_LIFETIME_MIN 60ULL /* a shorter life (expires_in, issued_at) is taken as this */

/* Token server reply {"token"|"access_token", "expires_in", "issued_at", "refresh_token"}.
 * *ret_lifetime_s: seconds the token stays valid from now (expires_in, default 60, less the
 * time since a plausible issued_at; at least OCI_TOKEN_LIFETIME_MIN). ret_refresh may be NULL.
 * -EBADMSG when malformed, -EFBIG over the caps. */
int oci_token_reply_parse(const void *buf, size_t len, time_t now, char **ret_token,
			  uint64_t *ret_lifetime_s, char **ret_refresh);
/* Whether a token is fit for an Authorization header: visible ASCII only. */
bool oci_token_chars_ok(const char *t);

/* A token cache file (tokencache.c): {"v":1,"host","scope","token","expires" (Unix time, s),
 * "lifetime" (s)}. Parsed only when it is for host and scope (-ESTALE for another's), the
 * token a valid one and the lifetime at most OCI_TOKEN_LIFETIME_MAX; -EBADMSG otherwise. The
 * expiry is the caller's to judge. */
#define OCI_TOKEN_FILE_MAX (OCI_TOKEN_MAX + 4096)
int oci_token_file_parse(const void *buf, size_t len, const char *host, const char *scope,
			 char **ret_token, int64_t *ret_expires, uint64_t *ret_lifetime_s);
int oci_token_file_format(const char *host, const char *scope, const char *token, int64_t expires,
			  uint64_t lifetime_s, char **ret);

/* ---- manifests and indexes (manifest.c) --------------------------------------------------- */

#define OCI_MANIFEST_MAX (4 * 1024 * 1024) /* distribution's own limit */
#define OCI_MANIFEST_ITEMS_MAX 4096

#define OCI_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define OCI_MT_EROFS_LAYER "application/vnd.erofs.layer.v1"
#define OCI_MT_EROFS_PREFIX "application/vnd.erofs.layer"

struct oci_platform {
	char os[32];
	char arch[32];
	char variant[32];
	bool erofs; /* os.features lists "erofs": containerd's mark of a native EROFS image */
};

#define OCI_ANNOTATION_CREATED "org.opencontainers.image.created"
/* The layer of an artifact we push, named by its manifest (struct oci_layer_hint). */
#define OCI_ANNOTATION_LAYER_TYPE   "dev.lazyerofs.layer.mediaType"
#define OCI_ANNOTATION_LAYER_DIGEST "dev.lazyerofs.layer.digest"
#define OCI_ANNOTATION_LAYER_SIZE   "dev.lazyerofs.layer.size"
/* The blob of the subject image an artifact we push is about (a profile is recorded for one
 * layer of an image that may have several). */
#define OCI_ANNOTATION_SUBJECT_BLOB "dev.lazyerofs.subject.blob"

struct oci_descriptor {
	char media_type[128];
	char digest[UTIL_DIGEST_STR_LEN];
	uint64_t size;
	bool has_platform;
	struct oci_platform platform;
	/* OCI 1.1: an index entry's artifactType and its annotation OCI_ANNOTATION_CREATED;
	 * "" when absent, or when too long to be one we look for */
	char artifact_type[128];
	char created[64];
	struct oci_layer_hint layer; /* OCI_ANNOTATION_LAYER_*, of an artifact or its entry */
	char subject_blob[UTIL_DIGEST_STR_LEN]; /* OCI_ANNOTATION_SUBJECT_BLOB, or "" */
	/* A manifest's layer: its annotation OCI_ANNOTATION_METADATA, at most
	 * OCI_METAMAP_MAX_TEXT bytes (NULL when absent or longer); freed with the manifest */
	char *metamap;
};

enum oci_manifest_kind {
	OCI_KIND_MANIFEST,
	OCI_KIND_INDEX,
};

struct oci_manifest {
	enum oci_manifest_kind kind;
	char media_type[128];
	struct oci_descriptor config; /* manifests only */
	struct oci_descriptor *items; /* layers of a manifest, manifests of an index */
	size_t n;
	/* OCI 1.1 artifacts: artifactType ("" when absent or too long) and the manifest this
	 * one refers to */
	char artifact_type[128];
	bool has_subject;
	struct oci_descriptor subject;
};

/* Parse a manifest or index. The kind comes from the top-level mediaType, else from the
 * Content-Type (may be NULL), else from the shape. -EBADMSG with a reason in errbuf. */
int oci_manifest_parse(const void *buf, size_t len, const char *content_type,
		       struct oci_manifest **ret, char *errbuf, size_t errlen);
void oci_manifest_free(struct oci_manifest *m);
DEFINE_CLEANUP_FUNC(struct oci_manifest, oci_manifest_free);

/* "os/arch[/variant]" -> platform (normalised: x86_64 -> amd64, aarch64 -> arm64). */
int oci_platform_parse(const char *s, struct oci_platform *ret);
/* uname machine -> Go's GOOS/GOARCH/variant, e.g. "aarch64" -> linux/arm64/v8. -ENOTSUP for
 * a machine name we do not know. */
int oci_platform_from_machine(const char *machine, struct oci_platform *ret);
int oci_platform_host(struct oci_platform *ret);
void oci_platform_format(const struct oci_platform *p, char *out, size_t outlen);
/* Whether an image for have runs where want is asked: same os and architecture and, when
 * want names a variant, the same variant as containerd compares them (arm64 without one is
 * v8, arm v7, amd64 v1). */
bool oci_platform_match(const struct oci_platform *have, const struct oci_platform *want);
/* First manifest of the index matching want. -ENOENT listing the platforms it has. */
int oci_platform_select(const struct oci_manifest *index, const struct oci_platform *want,
			size_t *ret_idx, char *errbuf, size_t errlen);
/* An image config blob (OCI's or Docker's; any other config type is an artifact's, which
 * records no platform). Configs are read whole, up to OCI_CONFIG_MAX bytes. */
#define OCI_CONFIG_MAX (1024 * 1024)
bool oci_config_is_image(const char *media_type);
/* The platform an image config records (os, architecture, variant). -ENOENT when it records
 * none (os or architecture absent or empty), -EBADMSG when it is not a JSON object or those
 * members are not short printable strings, -EFBIG over OCI_CONFIG_MAX. */
int oci_config_platform(const void *buf, size_t len, struct oci_platform *ret);
/* Layer choice: blob (digest or NULL), else layer (>= 0, or -1), else the single layer whose
 * type starts with application/vnd.erofs.layer, else the only layer. -ENOENT when the asked
 * layer is not there, -ENOTUNIQ when the choice is ambiguous (errbuf lists candidates). */
int oci_layer_select(const struct oci_manifest *m, const char *blob, long layer,
		     size_t *ret_idx, char *errbuf, size_t errlen);
/* -EMEDIUMTYPE with the reason when a layer of this type cannot be read by byte ranges. */
int oci_layer_check_media_type(const char *media_type, char *errbuf, size_t errlen);

/* ---- OCI 1.1 artifacts and referrers lists (artifact.c) ------------------------------------ */

#define OCI_MT_OCI_EMPTY "application/vnd.oci.empty.v1+json"
/* The empty config of an artifact: the blob "{}" and its digest. */
#define OCI_EMPTY_JSON "{}"
#define OCI_EMPTY_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
#define OCI_REFERRERS_TAG_LEN (7 + UTIL_SHA256_HEX_LEN + 1)

/* The referrers tag schema's tag of a manifest digest: "sha256-<hex>". -EINVAL unless digest
 * is a sha256 digest and out holds OCI_REFERRERS_TAG_LEN. */
int oci_referrers_tag(const char *digest, char *out, size_t outlen);
/* The hint that names layer (struct oci_layer_hint), as an artifact's annotations carry it. */
void oci_layer_hint_of(const struct oci_descriptor *layer, struct oci_layer_hint *ret);
/* The manifest (compact JSON, keys sorted) of an artifact of artifact_type carrying one
 * layer, referring to subject: the empty config, annotations OCI_ANNOTATION_CREATED =
 * created, OCI_ANNOTATION_LAYER_* naming the layer and, unless NULL or "",
 * OCI_ANNOTATION_SUBJECT_BLOB = subject_blob. Caller frees *ret. -EINVAL for an empty type
 * or created, or a descriptor or subject_blob without media type or sha256 digest. */
int oci_artifact_build(const char *artifact_type, const struct oci_descriptor *subject,
		       const struct oci_descriptor *layer, const char *created,
		       const char *subject_blob, char **ret);
/* A referrers list (the referrers API's answer or the fallback tag's content): an OCI image
 * index, whose entries of artifact_type (NULL: all) come back in list order. content_type
 * (may be NULL) as for oci_manifest_parse. Caller frees *ret. -EBADMSG with the reason in
 * errbuf when it is not an OCI image index or is malformed; -EFBIG over the caps. */
int oci_referrers_parse(const void *buf, size_t len, const char *content_type,
			const char *artifact_type, struct oci_referrer **ret, size_t *ret_n,
			char *errbuf, size_t errlen);
/* The newest of v: the latest created (RFC 3339; a missing or unreadable one is older than
 * any other), of equals the one listed last. -ENOENT when n is 0. */
int oci_referrers_newest(const struct oci_referrer *v, size_t n, size_t *ret_idx);
/* A fallback tag's index with d (mediaType, digest, size, artifactType, created and the layer
 * annotations when set)
 * appended: old is the tag's content (NULL: the tag does not exist, start an empty index).
 * Entries already there are kept as they are. *ret_added false (and *ret untouched) when d's
 * digest is listed already. -EEXIST when old is not an OCI image index (errbuf says what it
 * is): it must not be overwritten. -EFBIG when the index is full. Caller frees *ret. */
int oci_referrers_index_add(const void *old, size_t old_len, const char *content_type,
			    const struct oci_descriptor *d, char **ret, bool *ret_added,
			    char *errbuf, size_t errlen);

/* ---- credentials (creds.c) ----------------------------------------------------------------- */

#define OCI_CREDS_FILE_MAX (1024 * 1024)

struct oci_creds {
	char *username;
	char *password;       /* secret */
	char *identity_token; /* secret: an OAuth2 refresh token for the token server */
	char *helper; /* docker-credential-<helper> to ask, when that is a lookup's answer; in
		       * oci_creds_find's answer, the helper that gave the credentials */
};

void oci_creds_free(struct oci_creds *c); /* wipes secrets */
/* Find the entry for registry (host[:port]) / repository in a containers auth.json or Docker
 * config.json: credHelpers, then credsStore, then auths (keys may carry a scheme, a /v1/
 * suffix, or a repository path prefix: the most specific wins; Docker Hub's aliases are
 * equal). -ENOENT when nothing applies, -EBADMSG when malformed. */
int oci_creds_lookup(const void *buf, size_t len, const char *registry, const char *repository,
		     struct oci_creds *ret);
/* A credential helper's "get" reply {"Username","Secret"} ("<token>" user = identity token). */
int oci_creds_helper_reply_parse(const void *buf, size_t len, struct oci_creds *ret);
/* The server name Docker uses for a registry in credential stores ("https://index.docker.io/v1/"
 * for Docker Hub, else the host). */
const char *oci_creds_server_name(const char *registry);

/* ---- helpers -------------------------------------------------------------------------------- */

/* Case-insensitive compare of a (ptr, len) span with a C string. */
bool oci_span_eq(const char *s, size_t len, const char *lit);

#endif
