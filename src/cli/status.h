/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/* `lazyerofs status`: what one mount shows in every output format (status.c), and the
 * Prometheus exposition of all of them (status_prom.c). */
#ifndef LAZYEROFS_CLI_STATUS_H
#define LAZYEROFS_CLI_STATUS_H

#include <stddef.h>
#include <stdio.h>

#include "mount/mount.h"

/* running, complete, verified, bad; lost when no daemon answers for the mount. */
const char *cli_status_state(const struct mount_status_entry *e);
/* verified, tls or insecure. */
const char *cli_status_integrity(const struct mount_status_entry *e);
/* sha256:<hex> of the blob ("" for a URL source without a digest). */
const char *cli_status_digest(const struct mount_status_entry *e);

/* Every mount of v in the Prometheus text format; -ENOMEM, or -EIO when writing failed. */
int cli_status_prometheus(FILE *f, const struct mount_status_entry *v, size_t n);

#endif
