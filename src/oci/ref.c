// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Image references: [oci://]REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST] with Docker Hub's
 * defaults (docker.io -> registry-1.docker.io, single names under library/), ports,
 * bracketed IPv6 hosts and nested repository paths, following the distribution project's
 * grammar; or an http(s):// URL of an image file. Errors name the part that is wrong.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "oci/parse.h"
#include "util/cleanup.h"
#include "util/sha256.h"
#include "util/strutil.h"

#define DOCKER_HUB "registry-1.docker.io"

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+ */
static bool component_valid(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return false;
	while (i < len) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		/* a separator run, then an alphanumeric */
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < len && s[i] == '_')
				i++;
		} else if (s[i] == '-') {
			while (i < len && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i >= len || !is_lower_alnum(s[i]))
			return false;
	}
	return true;
}

bool oci_repository_valid(const char *s)
{
	size_t len = strlen(s);
	const char *p = s;

	if (len == 0 || len > OCI_NAME_MAX)
		return false;
	for (;;) {
		size_t n = strcspn(p, "/");

		if (!component_valid(p, n))
			return false;
		if (!p[n])
			return true;
		p += n + 1;
	}
}

bool oci_tag_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > OCI_TAG_MAX)
		return false;
	if (!(is_alnum(s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!(is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

/* host[:port]: DNS labels (letters, digits, inner hyphens) separated by dots, or a bracketed
 * IPv6 address; an optional decimal port 1..65535. */
static bool domain_valid(const char *s, size_t len, const char **why)
{
	size_t hostlen = len;
	const char *colon;

	if (len == 0) {
		*why = "empty registry host";
		return false;
	}
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close || close - s < 3) {
			*why = "bad IPv6 address (use [ADDR]:PORT)";
			return false;
		}
		for (const char *p = s + 1; p < close; p++)
			if (!(is_alnum(*p) || *p == ':' || *p == '.')) {
				*why = "bad IPv6 address (use [ADDR]:PORT)";
				return false;
			}
		hostlen = (size_t)(close - s) + 1;
		if (hostlen < len && s[hostlen] != ':') {
			*why = "unexpected text after the IPv6 address";
			return false;
		}
	} else {
		colon = memchr(s, ':', len);
		if (colon)
			hostlen = (size_t)(colon - s);
		if (hostlen == 0) {
			*why = "empty registry host";
			return false;
		}
		for (size_t i = 0; i < hostlen; i++) {
			char c = s[i];
			bool edge = i == 0 || i + 1 == hostlen || s[i - 1] == '.' || s[i + 1] == '.';

			if (is_alnum(c))
				continue;
			if (c == '-' && !edge)
				continue;
			if (c == '.' && i > 0 && i + 1 < hostlen && s[i - 1] != '.')
				continue;
			*why = "registry host may contain only letters, digits, '-' and '.'";
			return false;
		}
	}
	if (hostlen < len) {
		const char *port = s + hostlen + 1;
		size_t plen = len - hostlen - 1;
		unsigned long v = 0;

		if (plen == 0 || plen > 5) {
			*why = "bad port";
			return false;
		}
		for (size_t i = 0; i < plen; i++) {
			if (port[i] < '0' || port[i] > '9') {
				*why = "port must be a number";
				return false;
			}
			v = v * 10 + (unsigned long)(port[i] - '0');
		}
		if (v == 0 || v > 65535) {
			*why = "port out of range 1..65535";
			return false;
		}
	}
	return true;
}

void oci_ref_free(struct oci_ref *r)
{
	if (!r)
		return;
	free(r->url);
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	free(r);
}

DEFINE_CLEANUP_FUNC(struct oci_ref, oci_ref_free);

static int parse_url(const char *s, struct oci_ref *ref, struct util_error *err)
{
	const char *host = strstr(s, "://") + 3;
	size_t hostlen = strcspn(host, "/?#");
	char shown[256];

	oci_url_redact(s, shown, sizeof(shown));
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			return util_err_set(
			    err, -EINVAL,
			    "invalid URL '%s': spaces and control characters must be "
			    "percent-encoded",
			    shown);
		}
	if (hostlen == 0) {
		return util_err_set(err, -EINVAL, "invalid URL '%s': no host", shown);
	}
	/* The rest of the syntax as libcurl will take it (a port past 65535, a bracket not
	 * closed): a usage error now, not a failure to connect later. */
	{
		CURLU *u = curl_url();
		CURLUcode rc;

		if (!u)
			return -ENOMEM;
		char *port = NULL;
		bool port0;

		rc = curl_url_set(u, CURLUPART_URL, s, 0);
		port0 = rc == CURLUE_OK && curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK &&
			strtoul(port, NULL, 10) == 0;
		curl_free(port);
		curl_url_cleanup(u);
		if (rc == CURLUE_OUT_OF_MEMORY)
			return -ENOMEM;
		if (rc != CURLUE_OK || port0)
			return util_err_set(err, -EINVAL, "invalid URL '%s': %s", shown,
					    port0 ? "port out of range 1..65535"
						  : curl_url_strerror(rc));
	}
	ref->is_url = true;
	ref->url = strdup(s);
	return ref->url ? 0 : -ENOMEM;
}

int oci_ref_parse(const char *s, struct oci_ref **ret, struct util_error *err)
{
	_cleanup_(oci_ref_freep) struct oci_ref *ref = NULL;
	_cleanup_free_ char *copy = NULL;
	char *name, *at, *slash, *colon, *first_end, shown[256];
	const char *why = NULL;
	size_t len;
	int r;

	util_err_clear(err);
	if (!s || !*s) {
		return util_err_set(err, -EINVAL, "empty image reference");
	}
	len = strlen(s);
	if (len > OCI_REF_MAX) {
		return util_err_set(err, -EINVAL,
				    "image reference is too long (%zu bytes, at most %d)", len,
				    OCI_REF_MAX);
	}
	/* What messages quote: the input up to 200 bytes, control characters shown as '?'. */
	oci_fmt(shown, sizeof(shown), "%.200s", s);
	for (char *p = shown; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	ref = calloc(1, sizeof(*ref));
	if (!ref)
		return -ENOMEM;
	if (util_startswith(s, "http://") || util_startswith(s, "https://")) {
		r = parse_url(s, ref, err);
		if (r < 0)
			return r;
		*ret = TAKE_PTR(ref);
		return 0;
	}
	if (util_startswith(s, "oci://"))
		s += strlen("oci://");
	else if (strstr(s, "://")) {
		return util_err_set(
		    err, -EINVAL,
		    "invalid reference '%s': unsupported scheme (use oci://, http:// or "
		    "https://, or none)",
		    shown);
	}
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			return util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': contains a space or control character", shown);
		}
	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	name = copy;

	at = strchr(name, '@');
	if (at) {
		*at = 0;
		if (!util_startswith(at + 1, "sha256:")) {
			return util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': digest '%.100s' is not sha256:<64 hex "
			    "digits> (only sha256 digests are supported)",
			    shown, at + 1);
		}
		if (!util_digest_valid(at + 1)) {
			return util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': digest '%.100s' must be sha256: "
			    "followed by 64 lowercase hex digits",
			    shown, at + 1);
		}
		ref->digest = strdup(at + 1);
		if (!ref->digest)
			return -ENOMEM;
	}

	/* A tag follows the last ':' only when no '/' comes after it (else it is a port). */
	slash = strrchr(name, '/');
	colon = strrchr(name, ':');
	if (colon && (!slash || colon > slash)) {
		*colon = 0;
		if (!oci_tag_valid(colon + 1)) {
			return util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': tag '%.150s' is not valid (1-128 of "
			    "letters, digits, '_', '.', '-'; not starting with '.' or '-')",
			    shown, colon + 1);
		}
		ref->tag = strdup(colon + 1);
		if (!ref->tag)
			return -ENOMEM;
	}
	if (!*name) {
		return util_err_set(err, -EINVAL, "invalid reference '%s': no repository name",
				    shown);
	}

	/* The first component is a registry when it has a '.' or ':', starts with '[' or is
	 * "localhost"; otherwise the name is on Docker Hub. */
	first_end = strchr(name, '/');
	if (first_end) {
		size_t n = (size_t)(first_end - name);
		bool is_domain = memchr(name, '.', n) || memchr(name, ':', n) || name[0] == '[' ||
				 (n == 9 && memcmp(name, "localhost", 9) == 0);

		if (is_domain) {
			if (!domain_valid(name, n, &why)) {
				return util_err_set(err, -EINVAL,
						    "invalid reference '%s': registry '%.*s': %s",
						    shown, (int)MIN(n, (size_t)200), name, why);
			}
			ref->registry = strndup(name, n);
			name = first_end + 1;
		}
	}
	if (!ref->registry || strcmp(ref->registry, "docker.io") == 0 ||
	    strcmp(ref->registry, "index.docker.io") == 0) {
		free(ref->registry);
		ref->registry = strdup(DOCKER_HUB);
		if (!ref->registry)
			return -ENOMEM;
		if (!strchr(name, '/')) {
			if (asprintf(&ref->repository, "library/%s", name) < 0)
				return -ENOMEM;
		}
	}
	if (!ref->registry)
		return -ENOMEM;
	if (!ref->repository) {
		ref->repository = strdup(name);
		if (!ref->repository)
			return -ENOMEM;
	}
	if (!oci_repository_valid(ref->repository)) {
		const char *p = ref->repository;
		bool upper = false;

		for (; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				upper = true;
		if (!*name)
			util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': no repository name after the registry", shown);
		else if (upper)
			util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': repository '%.200s' must be lowercase", shown,
			    ref->repository);
		else if (strlen(ref->repository) > OCI_NAME_MAX)
			util_err_set(err, -EINVAL,
				     "invalid reference '%s': repository name is longer than %d "
				     "characters",
				     shown, OCI_NAME_MAX);
		else
			util_err_set(
			    err, -EINVAL,
			    "invalid reference '%s': repository '%.200s' is not valid "
			    "(path components of a-z, 0-9 joined by '.', '_', '__' or '-', "
			    "separated by '/')",
			    shown, ref->repository);
		return -EINVAL;
	}
	*ret = TAKE_PTR(ref);
	return 0;
}

char *oci_ref_format(const struct oci_ref *r)
{
	char *s = NULL;

	if (r->is_url)
		return strdup(r->url);
	if (asprintf(&s, "%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
		     r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "") < 0)
		return NULL;
	return s;
}
