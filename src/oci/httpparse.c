// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Small HTTP grammar pieces as pure functions: header lines, Content-Range, Retry-After and
 * HTTP dates, RFC 3339 timestamps, the multipart boundary of a Content-Type, the upload
 * Range reply of the distribution spec.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "oci/parse.h"

static bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len)
{
	while (*len && (is_ws(**s) || **s == '\r' || **s == '\n')) {
		(*s)++;
		(*len)--;
	}
	while (*len && (is_ws((*s)[*len - 1]) || (*s)[*len - 1] == '\r' || (*s)[*len - 1] == '\n'))
		(*len)--;
}

int oci_header_split(const char *line, size_t len, const char **name, size_t *name_len,
		     const char **value, size_t *value_len)
{
	const char *colon = memchr(line, ':', len);
	const char *n = line, *v;
	size_t nl, vl;

	if (!colon)
		return -EBADMSG;
	nl = (size_t)(colon - line);
	trim(&n, &nl);
	if (nl == 0)
		return -EBADMSG;
	for (size_t i = 0; i < nl; i++)
		if (is_ws(n[i]))
			return -EBADMSG;
	v = colon + 1;
	vl = (size_t)(line + len - v);
	trim(&v, &vl);
	*name = n;
	*name_len = nl;
	*value = v;
	*value_len = vl;
	return 0;
}

/* Decimal digits [*p, end) -> u64; at least one digit, no overflow. */
static int parse_dec(const char **p, const char *end, uint64_t *ret)
{
	uint64_t v = 0;
	int n = 0;

	while (*p < end && **p >= '0' && **p <= '9') {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(**p - '0'), &v))
			return -EBADMSG;
		n++;
		(*p)++;
	}
	if (n == 0)
		return -EBADMSG;
	*ret = v;
	return 0;
}

int oci_content_range_parse(const char *s, size_t len, uint64_t *first, uint64_t *last,
			    uint64_t *total)
{
	const char *p, *end;
	uint64_t f, l, t = UINT64_MAX;

	trim(&s, &len);
	end = s + len;
	if (len < 6 || strncasecmp(s, "bytes", 5) != 0)
		return -EBADMSG;
	p = s + 5;
	if (p >= end || !(is_ws(*p) || *p == '='))
		return -EBADMSG;
	while (p < end && (is_ws(*p) || *p == '='))
		p++;
	if (parse_dec(&p, end, &f) < 0 || p >= end || *p != '-')
		return -EBADMSG;
	p++;
	if (parse_dec(&p, end, &l) < 0 || p >= end || *p != '/')
		return -EBADMSG;
	p++;
	if (p < end && *p == '*')
		p++;
	else if (parse_dec(&p, end, &t) < 0)
		return -EBADMSG;
	if (p != end || f > l || (t != UINT64_MAX && l >= t))
		return -EBADMSG;
	*first = f;
	*last = l;
	*total = t;
	return 0;
}

int oci_upload_range_parse(const char *s, size_t len, uint64_t *ret_received)
{
	const char *p, *end;
	uint64_t f, l;

	trim(&s, &len);
	end = s + len;
	p = s;
	if (len > 6 && strncasecmp(s, "bytes=", 6) == 0)
		p += 6;
	if (parse_dec(&p, end, &f) < 0 || p >= end || *p != '-')
		return -EBADMSG;
	p++;
	if (parse_dec(&p, end, &l) < 0 || p != end || f != 0 || l == UINT64_MAX)
		return -EBADMSG;
	*ret_received = l + 1;
	return 0;
}

/* Whether a rel value (space-separated relation types) lists want. */
static bool rel_lists(const char *v, size_t len, const char *want)
{
	size_t i = 0;

	while (i < len) {
		size_t n = 0;

		while (i < len && is_ws(v[i]))
			i++;
		while (i + n < len && !is_ws(v[i + n]))
			n++;
		if (n && oci_span_eq(v + i, n, want))
			return true;
		i += n;
	}
	return false;
}

static void skip_ws(const char **p, const char *end)
{
	while (*p < end && is_ws(**p))
		(*p)++;
}

int oci_link_next(const char *s, size_t len, char *out, size_t outlen)
{
	const char *p = s, *end = s + len;

	for (;;) {
		const char *url, *url_end;
		bool next = false;

		while (p < end && (is_ws(*p) || *p == ','))
			p++;
		if (p == end)
			return -ENOENT;
		if (*p != '<')
			return -EBADMSG;
		url = ++p;
		url_end = memchr(p, '>', (size_t)(end - p));
		if (!url_end)
			return -EBADMSG;
		p = url_end + 1;
		/* parameters: ; name [= token | "quoted"] ... up to the comma that ends the link */
		for (;;) {
			const char *name, *name_end, *v = NULL, *v_end = NULL;

			skip_ws(&p, end);
			if (p == end || *p == ',')
				break;
			if (*p != ';')
				return -EBADMSG;
			p++;
			skip_ws(&p, end);
			name = p;
			while (p < end && *p != '=' && *p != ';' && *p != ',' && !is_ws(*p))
				p++;
			name_end = p;
			skip_ws(&p, end);
			if (p < end && *p == '=') {
				p++;
				skip_ws(&p, end);
				if (p < end && *p == '"') {
					v = ++p;
					while (p < end && *p != '"')
						p += (*p == '\\' && p + 1 < end) ? 2 : 1;
					if (p >= end)
						return -EBADMSG;
					v_end = p++;
				} else {
					v = p;
					while (p < end && *p != ';' && *p != ',' && !is_ws(*p))
						p++;
					v_end = p;
				}
			}
			if (v && oci_span_eq(name, (size_t)(name_end - name), "rel") &&
			    rel_lists(v, (size_t)(v_end - v), "next"))
				next = true;
		}
		if (!next)
			continue;
		if ((size_t)(url_end - url) + 1 > outlen)
			return -EFBIG;
		for (const char *c = url; c < url_end; c++)
			if ((unsigned char)*c <= 0x20 || *c == 0x7f)
				return -EBADMSG;
		if (url_end == url)
			return -EBADMSG;
		memcpy(out, url, (size_t)(url_end - url));
		out[url_end - url] = 0;
		return 0;
	}
}

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
				      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), as in Howard Hinnant's algorithm. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int make_time(int64_t y, int mon, int d, int h, int mi, int sec, time_t *ret)
{
	if (y < 1970 || y > 9999 || mon < 1 || mon > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return -EBADMSG;
	*ret = (time_t)(days_from_civil(y, (unsigned)mon, (unsigned)d) * 86400 + h * 3600 +
			mi * 60 + sec);
	return 0;
}

/* Fixed-width field of n digits. */
static int num(const char *s, size_t len, size_t at, size_t n, int *ret)
{
	int v = 0;

	if (at + n > len)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (s[at + i] < '0' || s[at + i] > '9')
			return -EBADMSG;
		v = v * 10 + (s[at + i] - '0');
	}
	*ret = v;
	return 0;
}

static int month_of(const char *s, size_t len, size_t at)
{
	if (at + 3 > len)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(s + at, months[i], 3) == 0)
			return i + 1;
	return -1;
}

static int hms(const char *s, size_t len, size_t at, int *h, int *m, int *sec)
{
	if (num(s, len, at, 2, h) < 0 || at + 2 >= len || s[at + 2] != ':' ||
	    num(s, len, at + 3, 2, m) < 0 || at + 5 >= len || s[at + 5] != ':' ||
	    num(s, len, at + 6, 2, sec) < 0)
		return -EBADMSG;
	return 0;
}

int oci_http_date_parse(const char *s, size_t len, time_t *ret)
{
	const char *comma;
	int d, mon, y, h, mi, sec;
	size_t at;

	trim(&s, &len);
	comma = memchr(s, ',', len);
	if (comma) {
		at = (size_t)(comma - s) + 1;
		while (at < len && s[at] == ' ')
			at++;
		if (num(s, len, at, 2, &d) < 0)
			return -EBADMSG;
		if (at + 2 < len && s[at + 2] == ' ') {
			/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
			mon = month_of(s, len, at + 3);
			if (mon < 0 || at + 6 >= len || s[at + 6] != ' ' ||
			    num(s, len, at + 7, 4, &y) < 0 || at + 11 >= len || s[at + 11] != ' ' ||
			    hms(s, len, at + 12, &h, &mi, &sec) < 0)
				return -EBADMSG;
			at += 20;
		} else if (at + 2 < len && s[at + 2] == '-') {
			/* rfc850: Sunday, 06-Nov-94 08:49:37 GMT */
			mon = month_of(s, len, at + 3);
			if (mon < 0 || at + 6 >= len || s[at + 6] != '-' ||
			    num(s, len, at + 7, 2, &y) < 0 || at + 9 >= len || s[at + 9] != ' ' ||
			    hms(s, len, at + 10, &h, &mi, &sec) < 0)
				return -EBADMSG;
			y += y < 70 ? 2000 : 1900;
			at += 18;
		} else {
			return -EBADMSG;
		}
		while (at < len && s[at] == ' ')
			at++;
		if (len - at != 3 || strncasecmp(s + at, "GMT", 3) != 0)
			return -EBADMSG;
	} else {
		/* asctime: Sun Nov  6 08:49:37 1994 */
		if (len != 24)
			return -EBADMSG;
		mon = month_of(s, len, 4);
		if (mon < 0 || s[7] != ' ')
			return -EBADMSG;
		if (s[8] == ' ') {
			if (num(s, len, 9, 1, &d) < 0)
				return -EBADMSG;
		} else if (num(s, len, 8, 2, &d) < 0) {
			return -EBADMSG;
		}
		if (s[10] != ' ' || hms(s, len, 11, &h, &mi, &sec) < 0 || s[19] != ' ' ||
		    num(s, len, 20, 4, &y) < 0)
			return -EBADMSG;
	}
	return make_time(y, mon, d, h, mi, sec, ret);
}

int oci_rfc3339_parse(const char *s, size_t len, time_t *ret)
{
	uint32_t ns;

	return oci_rfc3339_parse_ns(s, len, ret, &ns);
}

int oci_rfc3339_parse_ns(const char *s, size_t len, time_t *ret, uint32_t *ret_ns)
{
	int y, mon, d, h, mi, sec, oh = 0, om = 0;
	uint32_t ns = 0, scale = 100000000;
	size_t at = 19;
	time_t t;

	trim(&s, &len);
	if (num(s, len, 0, 4, &y) < 0 || len < 20 || s[4] != '-' || num(s, len, 5, 2, &mon) < 0 ||
	    s[7] != '-' || num(s, len, 8, 2, &d) < 0 || (s[10] != 'T' && s[10] != 't' &&
							   s[10] != ' ') ||
	    hms(s, len, 11, &h, &mi, &sec) < 0)
		return -EBADMSG;
	if (s[at] == '.') {
		at++;
		if (at >= len || s[at] < '0' || s[at] > '9')
			return -EBADMSG;
		for (; at < len && s[at] >= '0' && s[at] <= '9'; at++, scale /= 10)
			ns += (uint32_t)(s[at] - '0') * scale; /* digits past the 9th add 0 */
	}
	if (at < len && (s[at] == 'Z' || s[at] == 'z')) {
		at++;
	} else if (at < len && (s[at] == '+' || s[at] == '-')) {
		int sign = s[at] == '-' ? -1 : 1;

		if (num(s, len, at + 1, 2, &oh) < 0 || at + 3 >= len || s[at + 3] != ':' ||
		    num(s, len, at + 4, 2, &om) < 0 || oh > 23 || om > 59)
			return -EBADMSG;
		oh *= sign;
		om *= sign;
		at += 6;
	} else {
		return -EBADMSG;
	}
	if (at != len || make_time(y, mon, d, h, mi, sec, &t) < 0)
		return -EBADMSG;
	*ret = t - (time_t)(oh * 3600 + om * 60);
	*ret_ns = ns;
	return 0;
}

#define RETRY_AFTER_MAX_MS (24ULL * 3600 * 1000)

int oci_retry_after_parse(const char *s, size_t len, time_t now, uint64_t *ret_ms)
{
	const char *p, *end;
	uint64_t v;
	time_t t;

	trim(&s, &len);
	p = s;
	end = s + len;
	if (len && s[0] >= '0' && s[0] <= '9') {
		if (parse_dec(&p, end, &v) < 0 || p != end)
			return -EBADMSG;
		*ret_ms = v > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : v * 1000;
		return 0;
	}
	if (oci_http_date_parse(s, len, &t) < 0)
		return -EBADMSG;
	if (t <= now)
		*ret_ms = 0;
	else
		*ret_ms = (uint64_t)(t - now) > RETRY_AFTER_MAX_MS / 1000 ?
				  RETRY_AFTER_MAX_MS :
				  (uint64_t)(t - now) * 1000;
	return 0;
}

bool oci_media_type_is(const char *value, const char *type)
{
	size_t n = strcspn(value, ";");
	const char *v = value;

	trim(&v, &n);
	return oci_span_eq(v, n, type);
}

int oci_content_type_boundary(const char *s, size_t len, char *out, size_t outlen)
{
	const char *semi = memchr(s, ';', len), *p, *end = s + len, *t = s;
	size_t tl = semi ? (size_t)(semi - s) : len;

	trim(&t, &tl);
	if (!oci_span_eq(t, tl, "multipart/byteranges"))
		return -ENOENT;
	p = semi;
	while (p && p < end) {
		const char *name, *val;
		size_t nl, vl = 0;

		p++; /* past ';' */
		while (p < end && is_ws(*p))
			p++;
		name = p;
		while (p < end && *p != '=' && *p != ';')
			p++;
		nl = (size_t)(p - name);
		while (nl && is_ws(name[nl - 1]))
			nl--;
		if (p >= end || *p == ';')
			continue;
		p++; /* past '=' */
		while (p < end && is_ws(*p))
			p++;
		if (p < end && *p == '"') {
			size_t j = 0;

			p++;
			/* quoted-string with backslash escapes, unescaped into out */
			while (p < end && *p != '"') {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (oci_span_eq(name, nl, "boundary")) {
					if (j + 1 >= outlen || j >= OCI_BOUNDARY_MAX)
						return -EBADMSG;
					out[j++] = *p;
				}
				p++;
			}
			if (p >= end)
				return -EBADMSG;
			p++;
			if (oci_span_eq(name, nl, "boundary")) {
				out[j] = 0;
				return j ? 0 : -EBADMSG;
			}
			while (p < end && *p != ';')
				p++;
			continue;
		}
		val = p;
		while (p < end && *p != ';')
			p++;
		vl = (size_t)(p - val);
		while (vl && is_ws(val[vl - 1]))
			vl--;
		if (oci_span_eq(name, nl, "boundary")) {
			if (vl == 0 || vl + 1 > outlen || vl > OCI_BOUNDARY_MAX)
				return -EBADMSG;
			for (size_t i = 0; i < vl; i++)
				if ((unsigned char)val[i] <= 0x20 || val[i] == 0x7f)
					return -EBADMSG;
			memcpy(out, val, vl);
			out[vl] = 0;
			return 0;
		}
	}
	return -EBADMSG;
}
