// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Error detail of the oci module (carried in a struct util_error): registry error bodies, URL
 * redaction (no query strings or user info in messages) and the mapping of HTTP statuses to the
 * errno vocabulary of STYLE.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "oci/parse.h"
#include "util/json.h"
#include "util/strutil.h"

void oci_fmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

bool oci_span_eq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* Printable, single-line copy of untrusted text. */
static void copy_clean(char *out, size_t outlen, const char *s)
{
	size_t j = 0;

	if (!outlen)
		return;
	for (size_t i = 0; s[i] && j + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];

		out[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	out[j] = 0;
	util_str_printable(out); /* C1 controls, and a sequence the copy cut */
}

/* A token server's OAuth2 error (RFC 6749, 5.2: "error", "error_description"), which token
 * servers answer a refresh-token grant with instead of the registry's "errors" list. */
static int oauth_error(json_t *j, char *code, size_t codelen, char *msg, size_t msglen)
{
	const char *e = NULL, *desc = NULL;
	char cc[64], dd[200];

	if (util_json_get_string(j, "error", &e) < 0 || !e[0])
		return -EBADMSG;
	if (util_json_get_string(j, "error_description", &desc) < 0)
		desc = NULL;
	copy_clean(cc, sizeof(cc), e);
	copy_clean(dd, sizeof(dd), desc ? desc : "");
	oci_fmt(code, codelen, "%s", cc);
	oci_fmt(msg, msglen, "%s%s%s", cc, dd[0] ? ": " : "", dd);
	return 0;
}

int oci_registry_error_parse(const void *buf, size_t len, char *code, size_t codelen, char *msg,
			     size_t msglen)
{
	_cleanup_json_ json_t *j = NULL;
	json_t *errors, *e;
	size_t i, used = 0;
	int r;

	if (codelen)
		code[0] = 0;
	if (msglen)
		msg[0] = 0;
	r = util_json_parse(buf, len, 64 * 1024, &j);
	if (r < 0)
		return -EBADMSG;
	if (util_json_get_array(j, "errors", &errors) < 0 || json_array_size(errors) == 0)
		return oauth_error(j, code, codelen, msg, msglen);
	json_array_foreach(errors, i, e) {
		const char *c = NULL, *m = NULL;
		char one[256], cc[64], mm[200];

		if (util_json_get_string(e, "code", &c) < 0)
			c = NULL;
		if (util_json_get_string(e, "message", &m) < 0)
			m = NULL;
		if (!c && !m)
			continue;
		copy_clean(cc, sizeof(cc), c ? c : "");
		copy_clean(mm, sizeof(mm), m ? m : "");
		if (code[0] == 0 && c)
			oci_fmt(code, codelen, "%s", cc);
		oci_fmt(one, sizeof(one), "%s%s%s%s", used ? "; " : "", cc, c && m ? ": " : "", mm);
		/* (the same error for several blobs, as a registry lists them: said once) */
		if (used && strstr(msg, one + 2))
			continue;
		if (used + strlen(one) + 1 > msglen)
			break;
		memcpy(msg + used, one, strlen(one) + 1);
		used += strlen(one);
		if (i >= 3)
			break;
	}
	return code[0] || (msglen && msg[0]) ? 0 : -EBADMSG;
}

void oci_url_redact(const char *url, char *out, size_t outlen)
{
	const char *p = strstr(url, "://"), *host, *at, *end, *q;
	size_t n;

	if (!outlen)
		return;
	if (!p) {
		copy_clean(out, outlen, url);
		out[strcspn(out, "?#")] = 0;
		return;
	}
	host = p + 3;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(end - host));
	q = url + strcspn(url, "?#");
	/* scheme:// */
	n = (size_t)(host - url);
	oci_fmt(out, outlen, "%.*s", (int)MIN(n, (size_t)1024), url);
	if (at)
		host = at + 1;
	n = strlen(out);
	if (n < outlen)
		oci_fmt(out + n, outlen - n, "%.*s", (int)MIN((size_t)(q - host), (size_t)4096), host);
	copy_clean(out, outlen, out);
}

int oci_errno_from_status(long status)
{
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 404)
		return -ENOENT;
	if (status == 408 || status == 429 || status >= 500)
		return -EAGAIN;
	if (status == 412)
		return -ESTALE;
	return -EBADMSG;
}
