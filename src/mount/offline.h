/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* Offline mounts of sources that name a digest (internal to the mount module). */
#ifndef LAZYEROFS_MOUNT_OFFLINE_H
#define LAZYEROFS_MOUNT_OFFLINE_H

#include "oci/oci.h"

/* Whether a source's bytes may travel without verified TLS (`insecure`, an http:// URL, a
 * plain-HTTP or skip_verify mirror or server: oci_options_weak). Such bytes
 * fill an entry of their own (mount_weak_key): a mount that asked for TLS is never served
 * bytes that came over a weaker connection, until an entry is verified against its digest. */
bool mount_source_weak(const struct oci_ref *ref, const struct oci_options *o);
/* The cache key of a weak source's entry: sha256("insecure\n" + key), 64 hex characters. */
int mount_weak_key(const char *key, char out[65]);

/* 1 and *ret filled when the source's blob is known and its cache entry is complete (not
 * bad): mount it without the registry. A weak source may use the TLS entry too. 0 otherwise
 * (never an error: go online). */
int mount_offline_lookup(const char *cache_dir, const struct oci_ref *ref,
			 const struct oci_options *o, struct oci_blob *ret);
/* Remember which blob a source resolved to, under the digest it names and under the image
 * manifest it led to (a source by tag is found later by that manifest's digest). */
int mount_offline_record(const char *cache_dir, const struct oci_ref *ref,
			 const struct oci_options *o, const struct oci_blob *blob);

#endif
