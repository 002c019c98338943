// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/* Small string helpers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

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

int util_parse_size(const char *s, struct util_size *ret)
{
	static const char units[] = "KMGT";
	char num[24];
	size_t n = s ? strlen(s) : 0;
	uint64_t v, mul = 1;
	const char *u;
	int r;

	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n + 1);
	if (num[n - 1] == '%') {
		num[n - 1] = 0;
		r = util_parse_u64(num, &v);
		if (r < 0)
			return r;
		if (v == 0 || v > 100)
			return -ERANGE;
		ret->bytes = 0;
		ret->percent = (unsigned)v;
		return 0;
	}
	u = strchr(units, num[n - 1]);
	if (u && *u) {
		num[n - 1] = 0;
		mul = 1ULL << (10 * (u - units + 1));
	}
	r = util_parse_u64(num, &v);
	if (r < 0)
		return r;
	if (__builtin_mul_overflow(v, mul, &v))
		return -ERANGE;
	ret->bytes = v;
	ret->percent = 0;
	return 0;
}
