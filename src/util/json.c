// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* jansson wrapper with caps for untrusted input. */
#include "util/json.h"

#include <errno.h>

#define JSON_MAX_DEPTH 64

/* jansson's own nesting limit is compile-time (2048); ours is far lower and checked
 * on the raw bytes before parsing so a hostile reply cannot make us recurse deeply. */
static int json_depth_ok(const char *s, size_t len)
{
	int depth = 0, in_str = 0, esc = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (in_str) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"')
			in_str = 1;
		else if (c == '{' || c == '[') {
			if (++depth > JSON_MAX_DEPTH)
				return 0;
		} else if (c == '}' || c == ']')
			depth--;
	}
	return 1;
}

int util_json_parse(const void *buf, size_t len, size_t max, json_t **ret)
{
	json_error_t err;
	json_t *j;

	if (len > max)
		return -EFBIG;
	if (!json_depth_ok(buf, len))
		return -EBADMSG;
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return -EBADMSG;
	*ret = j;
	return 0;
}

int util_json_get_string(json_t *obj, const char *key, const char **ret)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (!v)
		return -ENOENT;
	if (!json_is_string(v))
		return -EBADMSG;
	*ret = json_string_value(v);
	return 0;
}

int util_json_get_u64(json_t *obj, const char *key, uint64_t *ret)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (!v)
		return -ENOENT;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EBADMSG;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

int util_json_get_object(json_t *obj, const char *key, json_t **ret)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (!v)
		return -ENOENT;
	if (!json_is_object(v))
		return -EBADMSG;
	*ret = v;
	return 0;
}

int util_json_get_array(json_t *obj, const char *key, json_t **ret)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	if (!v)
		return -ENOENT;
	if (!json_is_array(v))
		return -EBADMSG;
	*ret = v;
	return 0;
}

bool util_json_text_ok(const char *s)
{
	_cleanup_json_ json_t *j = json_string(s);

	return j != NULL;
}
