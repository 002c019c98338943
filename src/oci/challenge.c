// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * WWW-Authenticate challenges (RFC 9110 11.6.1: scheme, then auth-params or a token68;
 * several challenges may share one header value, separated by commas) and the token
 * server's JSON reply of the distribution token flow.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "oci/parse.h"
#include "util/cleanup.h"
#include "util/json.h"

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ws(const char **p, const char *end)
{
	while (*p < end && (**p == ' ' || **p == '\t'))
		(*p)++;
}

/* Copy a parameter value (already unescaped) into a field; -EBADMSG when it does not fit or
 * has a control character (values end up in URLs and headers). */
static int store(char *field, size_t size, const char *v, size_t n)
{
	if (n + 1 > size)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return -EBADMSG;
	memcpy(field, v, n);
	field[n] = 0;
	return 0;
}

int oci_challenge_parse(const char *s, size_t len, struct oci_challenge *ret)
{
	struct oci_challenge bearer = { .scheme = OCI_AUTH_BEARER };
	struct oci_challenge basic = { .scheme = OCI_AUTH_BASIC };
	struct oci_challenge *cur = NULL;
	bool have_bearer = false, have_basic = false, in_challenge = false;
	const char *p = s, *end = s + len;
	char value[1024];

	while (p < end) {
		const char *tok, *q;
		size_t tl, vl = 0;

		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		if (p >= end)
			break;
		tok = p;
		while (p < end && is_tchar(*p))
			p++;
		tl = (size_t)(p - tok);
		if (tl == 0)
			return -EBADMSG;
		q = p;
		skip_ws(&q, end);
		if (in_challenge && q < end && *q == '=') {
			/* auth-param: name = token | quoted-string */
			p = q + 1;
			skip_ws(&p, end);
			if (p < end && *p == '"') {
				p++;
				while (p < end && *p != '"') {
					if (*p == '\\' && p + 1 < end)
						p++;
					if (vl + 1 >= sizeof(value))
						return -EBADMSG;
					value[vl++] = *p++;
				}
				if (p >= end)
					return -EBADMSG; /* unterminated quoted string */
				p++;
			} else {
				const char *v = p;

				/* a token, or a token68's '=' padding */
				while (p < end && (is_tchar(*p) || *p == '/' || *p == '='))
					p++;
				vl = (size_t)(p - v);
				if (vl + 1 > sizeof(value))
					return -EBADMSG;
				memcpy(value, v, vl);
			}
			skip_ws(&p, end);
			if (p < end && *p != ',')
				return -EBADMSG;
			if (!cur)
				continue;
			if (oci_span_eq(tok, tl, "realm")) {
				if (store(cur->realm, sizeof(cur->realm), value, vl) < 0)
					return -EBADMSG;
			} else if (oci_span_eq(tok, tl, "service")) {
				if (store(cur->service, sizeof(cur->service), value, vl) < 0)
					return -EBADMSG;
			} else if (oci_span_eq(tok, tl, "scope")) {
				if (store(cur->scope, sizeof(cur->scope), value, vl) < 0)
					return -EBADMSG;
			} else if (oci_span_eq(tok, tl, "error")) {
				if (store(cur->error, sizeof(cur->error), value, vl) < 0)
					return -EBADMSG;
			}
			continue;
		}
		/* a new challenge: auth-scheme */
		in_challenge = true;
		if (oci_span_eq(tok, tl, "Bearer")) {
			cur = have_bearer ? NULL : &bearer;
			have_bearer = true;
		} else if (oci_span_eq(tok, tl, "Basic")) {
			cur = have_basic ? NULL : &basic;
			have_basic = true;
		} else {
			cur = NULL;
		}
		p = q;
		/* An optional token68 right after the scheme (e.g. "Negotiate abc=="): a run of
		 * token68 characters ending the challenge. "name=value" is not one. */
		if (p < end && *p != ',') {
			const char *t = p, *u;

			while (t < end && (is_tchar(*t) || *t == '/'))
				t++;
			while (t < end && *t == '=')
				t++;
			u = t;
			skip_ws(&u, end);
			if (t > p && (u >= end || *u == ','))
				p = u;
		}
	}
	if (have_bearer) {
		if (!bearer.realm[0])
			return -EBADMSG; /* a bearer challenge is useless without its realm */
		*ret = bearer;
		return 0;
	}
	if (have_basic) {
		*ret = basic;
		return 0;
	}
	return -ENOENT;
}

/* Token strings go into an Authorization header: visible ASCII only. */
bool oci_token_chars_ok(const char *t)
{
	for (; *t; t++)
		if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e)
			return false;
	return true;
}

int oci_token_reply_parse(const void *buf, size_t len, time_t now, char **ret_token,
			  uint64_t *ret_lifetime_s, char **ret_refresh)
{
	_cleanup_json_ json_t *j = NULL;
	_cleanup_free_ char *tok = NULL, *refresh = NULL;
	const char *t = NULL, *issued = NULL, *rt = NULL;
	uint64_t expires = 60;
	json_t *e;
	int r;

	r = util_json_parse(buf, len, OCI_TOKEN_REPLY_MAX, &j);
	if (r < 0)
		return r;
	if (!json_is_object(j))
		return -EBADMSG;
	r = util_json_get_string(j, "token", &t);
	if (r == -ENOENT || (r == 0 && !*t))
		r = util_json_get_string(j, "access_token", &t);
	if (r < 0 || !*t)
		return -EBADMSG;
	if (strlen(t) > OCI_TOKEN_MAX)
		return -EFBIG;
	if (!oci_token_chars_ok(t))
		return -EBADMSG;
	e = json_object_get(j, "expires_in");
	if (e) {
		if (json_is_integer(e) && json_integer_value(e) >= 0)
			expires = (uint64_t)json_integer_value(e);
		else if (json_is_real(e) && json_real_value(e) >= 0 && json_real_value(e) < 1e12)
			expires = (uint64_t)json_real_value(e);
		else
			return -EBADMSG;
	}
	if (expires > OCI_TOKEN_LIFETIME_MAX)
		expires = OCI_TOKEN_LIFETIME_MAX;
	if (util_json_get_string(j, "issued_at", &issued) == 0) {
		time_t at;

		/* Only a plausible issue time shortens the life: a server clock ahead of ours,
		 * or far behind, must not make every token look expired. */
		if (oci_rfc3339_parse(issued, strlen(issued), &at) == 0 && at <= now &&
		    (uint64_t)(now - at) <= expires)
			expires -= (uint64_t)(now - at);
	}
	/* The token protocol's floor (a server should never give less to live); docker takes a
	 * shorter life as this too. A token that does end sooner gets a 401, which fetches a
	 * new one; taken at its word, a life of 0 would cost a token request per request. */
	expires = MAX(expires, OCI_TOKEN_LIFETIME_MIN);
	if (ret_refresh && util_json_get_string(j, "refresh_token", &rt) == 0 && *rt) {
		if (strlen(rt) > OCI_TOKEN_MAX || !oci_token_chars_ok(rt))
			return -EBADMSG;
		refresh = strdup(rt);
		if (!refresh)
			return -ENOMEM;
	}
	tok = strdup(t);
	if (!tok)
		return -ENOMEM;
	*ret_token = TAKE_PTR(tok);
	*ret_lifetime_s = expires;
	if (ret_refresh)
		*ret_refresh = TAKE_PTR(refresh);
	return 0;
}
