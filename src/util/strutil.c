// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Small string helpers. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/strutil.h"

int util_parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	}
	*ret = v;
	return 0;
}

int util_parse_size(const char *s, struct util_size *ret)
{
	static const char units[] = "KMGT";
	const char *p = s, *u;
	uint64_t v = 0, mul = 1;

	if (!s)
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	if (p == s)
		return -EINVAL;
	if (strcmp(p, "%") == 0) {
		if (v > 100)
			return -ERANGE;
		*ret = (struct util_size){ .percent = (unsigned)v, .is_percent = true };
		return 0;
	}
	if (*p) {
		u = strchr(units, toupper((unsigned char)p[0]));
		if (!u || (p[1] && strcmp(p + 1, "iB") != 0))
			return -EINVAL;
		mul = UINT64_C(1) << (10 * (u - units + 1));
	}
	if (__builtin_mul_overflow(v, mul, &v))
		return -ERANGE;
	*ret = (struct util_size){ .bytes = v };
	return 0;
}

bool util_startswith(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

const char *util_format_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

void util_free_secret(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

void util_free_secret_buf(void *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

void util_str_printable(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (p && *p) {
		unsigned char c = *p;
		size_t n = c < 0x80		? 1
			   : (c & 0xe0) == 0xc0 ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 0;
		uint32_t cp = n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
		size_t i;

		if (n == 1) {
			if (c < 0x20 || c == 0x7f)
				*p = '?';
			p++;
			continue;
		}
		for (i = 1; n && i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				break;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		/* Not UTF-8 (a stray byte, a cut or overlong sequence, a surrogate, past U+10FFFF):
		 * that byte goes; a C1 control goes whole. */
		if (!n || i < n || (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) {
			*p++ = '?';
			continue;
		}
		/* C1 controls, and the characters that reorder or break what is shown around
		 * them (bidirectional marks, embeddings, overrides and isolates, the line and
		 * paragraph separators): "txt.exe" can be written to look like "exe.txt". */
		if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x61c || cp == 0x200e || cp == 0x200f ||
		    (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
			memset(p, '?', n);
		p += n;
	}
}

void util_str_hide_userinfo(char *s)
{
	char *p = s;

	while (p && (p = strstr(p, "://"))) {
		char *u = p + 3, *end = u + strcspn(u, "/@ '\"?#");

		if (*end == '@' && end > u && !(end - u == 3 && !memcmp(u, "***", 3))) {
			memmove(u + 3, end, strlen(end) + 1);
			memcpy(u, "***", 3);
			end = u + 3;
		}
		p = end;
	}
}

uint64_t util_env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	uint64_t v;

	if (!s || !*s)
		return def;
	if (util_parse_u64(s, &v) == 0 && v > 0)
		return v;
	log_warning("%s='%.40s' is not a positive number; it is ignored", name, s);
	return def;
}
