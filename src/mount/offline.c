// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Offline mounts: a source that names a digest resolves to the same blob forever (the
 * manifest is content-addressed), so after one online mount we remember which blob it chose
 * (<cache-dir>/refs/<hash of manifest digest + selection options>) and, when that blob's
 * cache entry is complete and not bad, later mounts skip the registry entirely. `blob=`
 * names the entry directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "mount/mount.h"
#include "mount/offline.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/sha256.h"

#define REFS_DIR "refs"
#define REF_RECORD_MAX 4096

/* The record's name: what decides the blob (manifest digest, platform, layer). */
static int record_name(const struct oci_ref *ref, const char *digest, const struct oci_options *o,
		       char out[65])
{
	_cleanup_free_ char *text = NULL;
	int n;

	n = asprintf(&text, "v1\n%s\n%s\n%s\n%ld\n", ref->registry ? ref->registry : "", digest,
		     o->platform ? o->platform : "", o->layer);
	if (n < 0)
		return -ENOMEM;
	return util_sha256_buf_hex(text, (size_t)n, out);
}

bool mount_source_weak(const struct oci_ref *ref, const struct oci_options *o)
{
	if (ref->is_url)
		return strncasecmp(ref->url, "https://", 8) != 0;
	return oci_options_weak(o);
}

int mount_weak_key(const char *key, char out[65])
{
	_cleanup_free_ char *text = NULL;
	int n = asprintf(&text, "insecure\n%s", key);

	if (n < 0)
		return -ENOMEM;
	return util_sha256_buf_hex(text, (size_t)n, out);
}

/* Is the entry `key` of `digest` complete and usable? Fills blob on success. */
static int entry_ready(int dfd, const char *key, const char *digest, struct oci_blob *blob)
{
	struct cache_header hdr;

	if (cache_entry_peek(dfd, key, &hdr) < 0)
		return 0;
	if (!(hdr.flags & CACHE_FLAG_COMPLETE) || (hdr.flags & CACHE_FLAG_BAD))
		return 0;
	if (strcmp(hdr.digest, digest) != 0 || hdr.size == 0)
		return 0;
	memset(blob, 0, sizeof(*blob));
	snprintf(blob->digest, sizeof(blob->digest), "%s", digest);
	snprintf(blob->cache_key, sizeof(blob->cache_key), "%s", key);
	blob->size = hdr.size;
	return 1;
}

/* The TLS entry of `digest`, or for a weak source its own entry. */
static int digest_ready(const char *cache_dir, const char *digest, bool weak,
			struct oci_blob *blob)
{
	_cleanup_close_ int dfd = -1;
	char key[65];

	if (!util_digest_valid(digest) || cache_dir_open(cache_dir, &dfd) < 0)
		return 0;
	if (entry_ready(dfd, digest + 7, digest, blob))
		return 1;
	if (!weak || mount_weak_key(digest + 7, key) < 0)
		return 0;
	return entry_ready(dfd, key, digest, blob);
}

int mount_offline_lookup(const char *cache_dir, const struct oci_ref *ref,
			 const struct oci_options *o, struct oci_blob *ret)
{
	_cleanup_close_ int dfd = -1, rfd = -1;
	_cleanup_free_ char *text = NULL;
	_cleanup_json_ json_t *j = NULL;
	char name[65];
	const char *digest, *mt;
	size_t len;
	int r;

	if (ref->is_url)
		return 0;
	if (o->blob)
		return digest_ready(cache_dir, o->blob, mount_source_weak(ref, o), ret);
	if (!ref->digest)
		return 0;
	if (record_name(ref, ref->digest, o, name) < 0)
		return 0;
	r = util_open_private_dir(cache_dir, &dfd);
	if (r < 0)
		return 0;
	rfd = openat(dfd, REFS_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rfd < 0)
		return 0;
	if (util_read_file(rfd, name, REF_RECORD_MAX, 1, &text, &len) < 0)
		return 0;
	if (util_json_parse(text, len, REF_RECORD_MAX, &j) < 0)
		return 0;
	if (util_json_get_string(j, "digest", &digest) < 0)
		return 0;
	r = digest_ready(cache_dir, digest, mount_source_weak(ref, o), ret);
	if (r > 0 && util_json_get_string(j, "media_type", &mt) == 0)
		snprintf(ret->media_type, sizeof(ret->media_type), "%s", mt);
	return r;
}

/* Write the record of `digest` (a manifest's) naming blob. */
static int record_write(int rfd, const struct oci_ref *ref, const char *digest,
			const struct oci_options *o, const struct oci_blob *blob)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_json_ json_t *j = NULL;
	char name[65];
	int r;

	r = record_name(ref, digest, o, name);
	if (r < 0)
		return r;
	j = json_pack("{s:s, s:I, s:s}", "digest", blob->digest, "size", (json_int_t)blob->size,
		      "media_type", blob->media_type);
	if (!j)
		return -ENOMEM;
	text = json_dumps(j, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	return util_write_file_atomic(rfd, name, text, strlen(text), 0600);
}

int mount_offline_record(const char *cache_dir, const struct oci_ref *ref,
			 const struct oci_options *o, const struct oci_blob *blob)
{
	_cleanup_close_ int dfd = -1, rfd = -1;
	const char *image = blob->manifest_digest;
	int r;

	/* The source's digest, and the image manifest it led to (through an index, or by a
	 * tag): a later source naming either finds the blob. */
	if (ref->is_url || !util_digest_valid(blob->digest))
		return 0;
	if (!ref->digest && !util_digest_valid(image))
		return 0;
	r = util_open_private_dir(cache_dir, &dfd);
	if (r < 0)
		return r;
	if (mkdirat(dfd, REFS_DIR, 0700) < 0 && errno != EEXIST)
		return -errno;
	rfd = openat(dfd, REFS_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	if (ref->digest) {
		r = record_write(rfd, ref, ref->digest, o, blob);
		if (r < 0)
			return r;
	}
	if (util_digest_valid(image) && (!ref->digest || strcmp(image, ref->digest) != 0))
		r = record_write(rfd, ref, image, o, blob);
	return r;
}
