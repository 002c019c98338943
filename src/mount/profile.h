/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Startup profiles at mount time (profile.c): the lookup of a profile attached to the image
 * (a thread, started once the daemon exists, that overlaps the metadata walk), and handing
 * the profile found, or the one profile=PATH names, to the daemon.
 */
#ifndef LAZYEROFS_MOUNT_PROFILE_H
#define LAZYEROFS_MOUNT_PROFILE_H

#include "mount/mount.h"

struct mount_profile_lookup;

/* Start looking up the newest profile attached to the image blob->manifest_digest names
 * (its own registry client: the caller's may be in use meanwhile). */
int mount_profile_lookup_start(const struct oci_ref *ref, const struct oci_options *opts,
			       const struct oci_blob *blob, struct mount_profile_lookup **ret);
/* Waits for the lookup thread (bounded by its own deadline) and frees. NULL: nothing. */
void mount_profile_lookup_free(struct mount_profile_lookup *l);

/* Replay the profile opts names (profile=PATH), or the one the lookup l found (waiting for
 * it): checked for this blob, then handed to the daemon. Fills res->profile_*; a profile
 * that cannot be used leaves a warning in res->profile_warning, never a failure. */
void mount_profile_apply(struct fetch_handle *h, const struct mount_opts *opts,
			 struct mount_profile_lookup *l, const struct oci_blob *blob,
			 struct mount_result *res);

#endif
