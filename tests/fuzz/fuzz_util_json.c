// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Fuzz the JSON wrapper every untrusted JSON goes through (registry and token replies,
 * credential files, state files, the daemon's control-socket request lines and replies):
 * what it accepts is nested at most 64 deep (its raw-byte depth check agrees with jansson),
 * and the typed getters the control socket uses ("op", "mnt_id", "ranges") never misreport
 * a type. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned depth(json_t *j)
{
	unsigned d = 0, x;
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach(j, k, v)
			if ((x = depth(v)) > d)
				d = x;
		return d + 1;
	}
	if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			if ((x = depth(v)) > d)
				d = x;
		return d + 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = NULL, *o;
	const char *s;
	uint64_t u;
	uint8_t *copy;

	if (size > (64u << 10))
		return 0;
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (util_json_parse(copy, size, 32u << 10, &j) == 0) {
		if (size > (32u << 10) || depth(j) > 64)
			abort();
		if (util_json_get_string(j, "op", &s) == 0 && !json_is_string(json_object_get(j, "op")))
			abort();
		if (util_json_get_u64(j, "mnt_id", &u) == 0 &&
		    json_integer_value(json_object_get(j, "mnt_id")) < 0)
			abort();
		if (util_json_get_array(j, "ranges", &o) == 0 && !json_is_array(o))
			abort();
		if (util_json_get_object(j, "platform", &o) == 0 && !json_is_object(o))
			abort();
		json_decref(j);
	}
	free(copy);
	return 0;
}
