/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Startup profiles: the blob ranges a workload needed, in the order it first needed them.
 * A daemon records one per cache entry (record.c); `lazyerofs profile save` writes it to a
 * file, `profile push` attaches it to the image as an OCI referrer, and a later cold mount
 * replays it (fetches its ranges, in order, ahead of the workload).
 *
 * File format, version 1: UTF-8 text, lines ending in "\n" (a last line without one is
 * read all the same; the formatter always ends one).
 *
 *   lazyerofs-profile 1
 *   blob sha256:<64 lowercase hex> <blob size in bytes>
 *   <t_ms> <offset> <length>
 *   ...
 *
 * - Line 1 is the magic and the version. A larger version is refused (-EPROTONOSUPPORT:
 *   written by a newer lazyerofs); so is anything else there (-EBADMSG).
 * - Then keyword lines, before the first range: "blob DIGEST SIZE" is required (once);
 *   other keyword lines (a lowercase word, a space, anything) are ignored, so later
 *   versions of this one may add information; lines starting with '#' are comments, here
 *   and between ranges (their bytes are not looked at). Any other line (an empty one too)
 *   is malformed; so is a NUL byte anywhere.
 * - Each range line: three unsigned decimals separated by one space. t_ms: milliseconds
 *   since the first range was needed (non-decreasing from line to line); offset and length
 *   in bytes, length > 0 and at most PROFILE_RANGE_MAX, offset + length within the blob.
 *   Ranges may overlap (a replay skips what is present). No ranges at all is a valid,
 *   empty profile.
 * - At most PROFILE_MAX_RANGES ranges and PROFILE_MAX_BYTES bytes in all.
 *
 * Every profile comes from outside (a file, a registry): the parser checks everything above
 * and has a fuzz target (tests/fuzz/fuzz_fetch_profile.c).
 */
#ifndef LAZYEROFS_FETCH_PROFILE_H
#define LAZYEROFS_FETCH_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/sha256.h"

#define PROFILE_MAGIC	    "lazyerofs-profile"
#define PROFILE_VERSION	    1
#define PROFILE_MAX_BYTES   (8u << 20)
#define PROFILE_MAX_RANGES  (256u << 10)
#define PROFILE_RANGE_MAX   (1u << 30)
/* The OCI artifact that carries a profile: its manifest's artifactType, and the media type
 * of its one layer (the profile file). */
#define PROFILE_ARTIFACT_TYPE "application/vnd.lazyerofs.profile.v1"
#define PROFILE_MEDIA_TYPE    "application/vnd.lazyerofs.profile.v1+text"

struct profile_range {
	uint64_t offset;
	uint32_t length;
	uint32_t t_ms;
};

struct profile {
	char digest[UTIL_DIGEST_STR_LEN]; /* the blob's, "sha256:<hex>" */
	uint64_t size;			  /* the blob's */
	struct profile_range *v;	  /* in first-access order */
	size_t n;
};

/* Parse untrusted bytes. -EBADMSG (malformed; err says which line and why),
 * -EPROTONOSUPPORT (a newer version), -EFBIG (over a cap), -ENOMEM. On failure *ret is
 * left empty (nothing to free). */
int profile_parse(const void *buf, size_t len, struct profile *ret, struct util_error *err);
/* The text of p (caller frees *ret; *ret_len excludes the NUL it ends with), which parses
 * back to p. -EBADMSG when p breaks a rule above (the parser would refuse it), -EFBIG when
 * the text would exceed PROFILE_MAX_BYTES, -ENOMEM. */
int profile_format(const struct profile *p, char **ret, size_t *ret_len);
/* Free p's ranges and leave it empty (p may be NULL). */
void profile_free(struct profile *p);
/* Sum of the lengths of p's ranges. */
uint64_t profile_bytes(const struct profile *p);

/* Read and parse a profile file (at most PROFILE_MAX_BYTES are read; a larger file is
 * -EFBIG), the errors of profile_parse and of open/read (-errno). err names the path; on
 * failure *ret is left empty. */
int profile_read_file(const char *path, struct profile *ret, struct util_error *err);
/* Write p to path atomically (a temporary file in the same directory, fsync, rename; the
 * temporary file is removed on failure), mode 0644 less the umask. err names the path. */
int profile_write_file(const char *path, const struct profile *p, struct util_error *err);

#endif
