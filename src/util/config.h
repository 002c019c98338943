/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * lazyerofs's configuration file, /etc/lazyerofs/config ($LAZYEROFS_CONFIG), in TOML:
 *
 *   proxy = "http://proxy:3128"         # every registry request (else libcurl's environment)
 *   no-proxy = "localhost,.internal"    # hosts reached directly
 *   cache-max = "10G"                   # the cache directory's budget (SIZE, for gc)
 *   metrics-dir = "/var/lib/prometheus/node-exporter"   # each daemon's metrics
 *
 *   [registry."docker.io"]
 *   mirrors = ["https://m1", "http://m2:5000/path"]
 *
 * Unknown keys are ignored (a newer file works with an older lazyerofs); a known key with a
 * value of the wrong kind is an error naming the file and line. The meaning of a mirror's
 * text is the registry client's (oci); this file only keeps it with its line.
 */
#ifndef LAZYEROFS_UTIL_CONFIG_H
#define LAZYEROFS_UTIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"
#include "util/strutil.h"

#define UTIL_CONFIG_PATH "/etc/lazyerofs/config"

struct util_config_registry {
	char *name;	  /* as written in [registry."NAME"] */
	char **mirrors;	  /* n_mirrors strings, in order */
	unsigned *lines;  /* the line of each */
	size_t n_mirrors;
};

struct util_config {
	char *path;	     /* where it was read from; NULL when there was no file */
	char *proxy;	     /* NULL: not set */
	unsigned proxy_line;
	char *no_proxy;
	bool have_cache_max;
	struct util_size cache_max;
	char *metrics_dir;   /* an absolute path, or NULL */
	struct util_config_registry *registries;
	size_t n_registries;
};

/* $LAZYEROFS_CONFIG, else UTIL_CONFIG_PATH. */
const char *util_config_path(void);
/* Read and parse the file at path. A missing file is an empty configuration (0, path NULL).
 * Errors: -errno with one line "PATH: line N: what" (or "PATH: why") in err. */
int util_config_load(const char *path, struct util_config *ret, struct util_error *err);
/* Parse a document (path for messages only). */
int util_config_parse(const char *buf, size_t len, const char *path, struct util_config *ret,
		      struct util_error *err);
void util_config_free(struct util_config *c);
/* cache-max, the budget of the whole cache directory: from $LAZYEROFS_CACHE_MAX, else the
 * configuration file's cache-max. 1 and *ret when one is set, 0 when none, -EINVAL with one
 * line in err when it is not a SIZE (util_parse_size) or the file is broken. */
int util_cache_max(struct util_size *ret, struct util_error *err);
/* The [registry."name"] table, or NULL. */
const struct util_config_registry *util_config_registry(const struct util_config *c,
							const char *name);

#endif
