// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The record of an unfinished upload (lazyerofs push resuming across processes): which blob,
 * to which registry and repository, and the registry's URL of the session. Formatting, and
 * a pure parser that treats the record as untrusted (size-capped, every field checked).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "oci/parse.h"
#include "util/json.h"
#include "util/sha256.h"

#define RECORD_VERSION 1

int oci_upload_record_format(const struct oci_upload_record *rec, char **ret)
{
	_cleanup_json_ json_t *o = NULL;

	o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:s}", "version", RECORD_VERSION, "registry",
		      rec->registry, "repository", rec->repository, "digest", rec->digest, "size",
		      (json_int_t)rec->size, "offset", (json_int_t)rec->offset, "url", rec->url);
	if (!o)
		return -ENOMEM;
	*ret = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	return *ret ? 0 : -ENOMEM;
}

/* A string member that fits out (NUL included) and holds no control character. */
static int get_field(json_t *o, const char *key, char *out, size_t outlen)
{
	json_t *v = json_object_get(o, key);
	const char *s = json_string_value(v);
	size_t n = s ? json_string_length(v) : 0;

	/* an embedded NUL ("\u0000") would make the C string shorter than the JSON one */
	if (!s || n == 0 || n >= outlen || strlen(s) != n)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return -EBADMSG;
	memcpy(out, s, n + 1);
	return 0;
}

int oci_upload_record_parse(const void *buf, size_t len, struct oci_upload_record *ret)
{
	_cleanup_json_ json_t *o = NULL;
	struct oci_upload_record rec;
	uint64_t version;
	int r;

	memset(&rec, 0, sizeof(rec));
	r = util_json_parse(buf, len, OCI_UPLOAD_RECORD_MAX, &o);
	if (r < 0)
		return r == -EFBIG ? r : -EBADMSG;
	if (!json_is_object(o) || util_json_get_u64(o, "version", &version) < 0 ||
	    version != RECORD_VERSION)
		return -EBADMSG;
	if (get_field(o, "registry", rec.registry, sizeof(rec.registry)) < 0 ||
	    get_field(o, "repository", rec.repository, sizeof(rec.repository)) < 0 ||
	    get_field(o, "digest", rec.digest, sizeof(rec.digest)) < 0 ||
	    get_field(o, "url", rec.url, sizeof(rec.url)) < 0 ||
	    util_json_get_u64(o, "size", &rec.size) < 0 ||
	    util_json_get_u64(o, "offset", &rec.offset) < 0)
		return -EBADMSG;
	if (!util_digest_valid(rec.digest) || !oci_repository_valid(rec.repository) ||
	    rec.offset > rec.size ||
	    (strncmp(rec.url, "http://", 7) != 0 && strncmp(rec.url, "https://", 8) != 0))
		return -EBADMSG;
	*ret = rec;
	return 0;
}
