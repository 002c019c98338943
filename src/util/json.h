/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later */
/*
 * Thin wrapper over jansson: parsing untrusted bytes with a size cap, and
 * typed getters that fail with -EBADMSG instead of returning NULL silently.
 */
#ifndef LAZYEROFS_UTIL_JSON_H
#define LAZYEROFS_UTIL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/cleanup.h"

/* jansson provides json_decrefp. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Parse (buf, len) into a JSON value; -EFBIG over max bytes, -EBADMSG when malformed
 * or nested deeper than the wrapper's depth cap. */
int util_json_parse(const void *buf, size_t len, size_t max, json_t **ret);

/* Typed member access; `required` = 0 makes a missing key return -ENOENT quietly. */
int util_json_get_string(json_t *obj, const char *key, const char **ret);
int util_json_get_u64(json_t *obj, const char *key, uint64_t *ret);
int util_json_get_object(json_t *obj, const char *key, json_t **ret);
int util_json_get_array(json_t *obj, const char *key, json_t **ret);
/* Whether s can be a JSON string: valid UTF-8 (paths that go into state files and control
 * messages must be). */
bool util_json_text_ok(const char *s);

#endif
