/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Startup profiles at mount time (profile.c): the lookup of a profile attached to the image
 * (a thread, started once the daemon exists, that overlaps the metadata walk), and handing
 * the profile found, or the one profile=PATH names, to the daemon at once.
 */
#ifndef LAZYEROFS_MOUNT_PROFILE_H
#define LAZYEROFS_MOUNT_PROFILE_H

#include "mount/mount.h"

struct mount_profile;

/* Start the startup profile's replay as early as possible, once the daemon exists: for
 * profile=PATH now (the file is read, checked for this blob and handed to the daemon); for
 * profile=auto with `lookup` set, a thread looks up the newest profile attached to the image
 * (its own registry client and daemon connection) and hands it over while the caller walks
 * the metadata (*ret: join it with mount_profile_finish). A profile that cannot be used
 * leaves a warning in res->profile_warning (or the thread's, copied by finish), never a
 * failure. -errno only when the thread cannot start. */
int mount_profile_start(struct fetch_handle *h, const struct mount_opts *opts,
			const struct oci_ref *ref, const struct oci_options *oci,
			const struct oci_blob *blob, bool lookup, struct mount_result *res,
			struct mount_profile **ret);
/* Wait for the lookup (bounded by its own deadline) and copy what it did into res. */
void mount_profile_finish(struct mount_profile *l, struct mount_result *res);
void mount_profile_free(struct mount_profile *l);

#endif
