/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* The mount's file index (internal to the mount module): built from the metadata walk's
 * per-file ranges (erofs_walk_opts.on_file) and handed to the daemon. Best effort: a failure
 * is a log line, never a failed mount. */
#ifndef LAZYEROFS_MOUNT_FILES_H
#define LAZYEROFS_MOUNT_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "erofs/erofs.h"
#include "fetch/fetch.h"

struct mount_files;

/* NULL (logged) when even that fails: the walk then runs without on_file. */
struct mount_files *mount_files_new(uint64_t blob_size);
void mount_files_free(struct mount_files *mf);
/* Set opts->on_file to collect into mf (nothing when mf is NULL). */
void mount_files_hook(struct mount_files *mf, struct erofs_walk_opts *opts);
/* Encode the index and send it to the daemon; logs what happened. */
void mount_files_send(struct mount_files *mf, struct fetch_handle *h);

#endif
