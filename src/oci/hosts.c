// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The hosts a client talks to: the mirrors its options name (`-o mirror=`, the configuration
 * file, hosts.toml), in order, then the registry itself. A request goes to the first host
 * that may serve it (capabilities) and is not resting after a failed connection; a mirror
 * that fails passes the request on to the next host, so the registry is always the last
 * word. Also the mirror URL grammar and the mirror descriptions' ownership.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

#define MIRROR_URL_MAX 1024

void oci_mirror_free(struct oci_mirror *m)
{
	if (!m)
		return;
	free(m->url);
	free(m->ca_pem);
	for (size_t i = 0; i < m->nclients; i++) {
		free(m->clients[i].cert);
		util_free_secret_buf(m->clients[i].key, m->clients[i].key_len);
	}
	free(m->clients);
	for (char **h = m->headers; h && *h; h++)
		free(*h);
	free(m->headers);
	free(m->proxy);
	free(m->from);
	memset(m, 0, sizeof(*m));
}

/* A copy of len bytes of text and a NUL; *ret NULL for NULL. */
static int dup_text(const char *text, size_t len, char **ret)
{
	*ret = NULL;
	if (!text)
		return 0;
	*ret = malloc(len + 1);
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, text, len);
	(*ret)[len] = 0;
	return 0;
}

int oci_mirror_copy(struct oci_mirror *dst, const struct oci_mirror *src)
{
	size_t n = 0;

	*dst = *src;
	dst->url = dst->ca_pem = dst->proxy = dst->from = NULL;
	dst->headers = NULL;
	dst->clients = NULL;
	dst->nclients = 0;
	if ((src->url && !(dst->url = strdup(src->url))) ||
	    (src->proxy && !(dst->proxy = strdup(src->proxy))) ||
	    (src->from && !(dst->from = strdup(src->from))))
		goto oom;
	if (dup_text(src->ca_pem, src->ca_pem_len, &dst->ca_pem) < 0)
		goto oom;
	if (src->nclients) {
		dst->clients = calloc(src->nclients, sizeof(*dst->clients));
		if (!dst->clients)
			goto oom;
		for (; dst->nclients < src->nclients; dst->nclients++) {
			const struct oci_client_cert *a = &src->clients[dst->nclients];
			struct oci_client_cert *b = &dst->clients[dst->nclients];

			if (dup_text(a->cert, a->cert_len, &b->cert) < 0 ||
			    dup_text(a->key, a->key_len, &b->key) < 0) {
				free(b->cert);
				goto oom;
			}
			b->cert_len = a->cert_len;
			b->key_len = a->key_len;
		}
	}
	while (src->headers && src->headers[n])
		n++;
	if (src->headers) {
		dst->headers = calloc(n + 1, sizeof(char *));
		if (!dst->headers)
			goto oom;
		for (size_t i = 0; i < n; i++)
			if (!(dst->headers[i] = strdup(src->headers[i])))
				goto oom;
	}
	return 0;
oom:
	oci_mirror_free(dst);
	return -ENOMEM;
}

bool oci_mirror_weak(const struct oci_mirror *m)
{
	return m->skip_verify || (m->url && strncasecmp(m->url, "https://", 8) != 0);
}

bool oci_options_weak(const struct oci_options *o)
{
	if (o->insecure || (o->server && oci_mirror_weak(o->server)))
		return true;
	for (size_t i = 0; i < o->n_mirrors; i++)
		if (oci_mirror_weak(&o->mirrors[i]))
			return true;
	return false;
}

int oci_options_add_mirror(struct oci_options *o, const struct oci_mirror *m)
{
	struct oci_mirror *v;

	for (size_t i = 0; i < o->n_mirrors; i++) {
		struct oci_mirror settings;

		if (strcmp(o->mirrors[i].url, m->url) != 0)
			continue;
		/* Named by -o mirror= or the configuration file (a URL alone) and by hosts.toml:
		 * its place stays, its settings are hosts.toml's (ca, client, header,
		 * capabilities), as containerd would use them; they were dropped. */
		if (!m->resolve_first || o->mirrors[i].resolve_first)
			return 0;
		if (oci_mirror_copy(&settings, m) < 0)
			return -ENOMEM;
		oci_mirror_free(&o->mirrors[i]);
		o->mirrors[i] = settings;
		return 0;
	}
	v = realloc(o->mirrors, (o->n_mirrors + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	o->mirrors = v;
	if (oci_mirror_copy(&v[o->n_mirrors], m) < 0)
		return -ENOMEM;
	o->n_mirrors++;
	return 1;
}

static bool host_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '.' || ch == '-' || ch == '_';
}

/* Characters of a path segment we pass on as they are (RFC 3986 pchar without ',' -- the
 * -o list separator -- and without '?' and '#'). */
static bool path_char(char ch)
{
	return isalnum((unsigned char)ch) || strchr("/-._~%!$&'()*+;=:@", ch);
}

int oci_mirror_url_parse(const char *text, char **ret_url, struct util_error *err)
{
	const char *p = text, *host, *end;
	_cleanup_free_ char *url = NULL;
	bool tls = true;
	size_t hl, pl;
	uint64_t port = 0;
	char portbuf[8];

	if (!text || !*text)
		return util_err_set(err, -EINVAL, "an empty mirror");
	if (strlen(text) > MIRROR_URL_MAX)
		return util_err_set(err, -EINVAL, "longer than %d characters", MIRROR_URL_MAX);
	if (!strncasecmp(p, "https://", 8)) {
		p += 8;
	} else if (!strncasecmp(p, "http://", 7)) {
		p += 7;
		tls = false;
	} else if (strstr(p, "://")) {
		return util_err_set(err, -EINVAL,
				    "'%.100s': the scheme must be http:// or https://", text);
	}
	host = p;
	end = p + strcspn(p, "/");
	if (memchr(host, '@', (size_t)(end - host)))
		return util_err_set(err, -EINVAL,
				    "'%.100s': credentials do not belong in a mirror's URL", text);
	if (*host == '[') {
		/* [IPv6] */
		const char *rb = memchr(host, ']', (size_t)(end - host));

		if (!rb || rb == host + 1)
			return util_err_set(err, -EINVAL, "'%.100s': a bad IPv6 address", text);
		for (const char *q = host + 1; q < rb; q++)
			if (!isxdigit((unsigned char)*q) && *q != ':' && *q != '.')
				return util_err_set(err, -EINVAL, "'%.100s': a bad IPv6 address",
						    text);
		p = rb + 1;
	} else {
		while (p < end && host_char(*p))
			p++;
		if (p == host || host[0] == '.' || host[0] == '-' || p[-1] == '.')
			return util_err_set(err, -EINVAL, "'%.100s': no valid host name", text);
	}
	hl = (size_t)(p - host);
	if (hl > 255)
		return util_err_set(err, -EINVAL, "'%.100s': the host name is too long", text);
	if (p < end && *p == ':') {
		size_t n = (size_t)(end - p - 1);

		if (n == 0 || n >= sizeof(portbuf))
			return util_err_set(err, -EINVAL, "'%.100s': a bad port", text);
		memcpy(portbuf, p + 1, n);
		portbuf[n] = 0;
		if (util_parse_u64(portbuf, &port) < 0 || port == 0 || port > 65535)
			return util_err_set(err, -EINVAL, "'%.100s': a bad port", text);
		p = end;
	}
	if (p != end)
		return util_err_set(err, -EINVAL, "'%.100s': no valid host name", text);
	for (const char *q = end; *q; q++)
		if (!path_char(*q))
			return util_err_set(err, -EINVAL,
					    "'%.100s': the path may not contain '%c' (no query or "
					    "fragment)",
					    text, isprint((unsigned char)*q) ? *q : '?');
	pl = strlen(end);
	while (pl && end[pl - 1] == '/')
		pl--;
	if (asprintf(&url, "%s://%.*s%s%s%.*s", tls ? "https" : "http", (int)hl, host,
		     port ? ":" : "", port ? portbuf : "", (int)pl, end) < 0)
		return -ENOMEM;
	/* Host names are case-insensitive: one spelling, so that duplicates are found. */
	for (char *q = url + (tls ? 8 : 7); *q && *q != '/' && *q != ':'; q++)
		*q = (char)tolower((unsigned char)*q);
	*ret_url = TAKE_PTR(url);
	return 0;
}

/* ---- the client's hosts --------------------------------------------------------------------- */

/* origin and name of an "http(s)://host[:port][/path]" URL. */
static int split_url(const char *url, char **ret_origin, char *name, size_t namelen)
{
	const char *authority = strstr(url, "://");
	size_t n;

	if (!authority)
		return -EINVAL;
	authority += 3;
	n = strcspn(authority, "/");
	oci_fmt(name, namelen, "%.*s", (int)n, authority);
	*ret_origin = strndup(url, (size_t)(authority - url) + n);
	return *ret_origin ? 0 : -ENOMEM;
}

/* Docker Hub's namespace is docker.io, whatever name its API host has. */
static const char *namespace_of(const char *registry)
{
	return !strcmp(registry, "registry-1.docker.io") ? "docker.io" : registry;
}

static int host_from(struct oci_client *c, struct oci_host *h, const struct oci_mirror *m)
{
	int r;

	h->caps = m->caps;
	h->resolve_first = m->resolve_first;
	h->skip_verify = m->skip_verify;
	if (m->ca_pem) {
		h->ca_blob.data = m->ca_pem;
		h->ca_blob.len = m->ca_pem_len;
		h->ca_blob.flags = CURL_BLOB_NOCOPY;
	}
	if (m->nclients) {
		/* The first for libcurl; with several, the handshake chooses (oci_tls_choice). */
		h->cert_blob = (struct curl_blob){ .data = m->clients[0].cert,
						   .len = m->clients[0].cert_len,
						   .flags = CURL_BLOB_NOCOPY };
		h->key_blob = (struct curl_blob){ .data = m->clients[0].key,
						  .len = m->clients[0].key_len,
						  .flags = CURL_BLOB_NOCOPY };
	}
	if (m->nclients > 1) {
		r = oci_tls_choice_new(m->clients, m->nclients, &h->choice);
		if (r < 0)
			return r;
	}
	if (m->proxy) {
		h->proxy = m->proxy;
		h->own_proxy = true;
	}
	if (m->dial_timeout_ms)
		h->connect_timeout_ms = (long)MIN(m->dial_timeout_ms, (uint64_t)LONG_MAX);
	for (char **l = m->headers; l && *l; l++) {
		struct curl_slist *n = curl_slist_append(h->headers, *l);

		if (!n)
			return -ENOMEM;
		h->headers = n;
	}
	if (!m->url)
		return 0;
	free(h->api);
	free(h->origin);
	h->api = h->origin = NULL;
	r = split_url(m->url, &h->origin, h->name, sizeof(h->name));
	if (r < 0)
		return r;
	if (m->override_path)
		h->api = strdup(m->url);
	else if (asprintf(&h->api, "%s/v2", m->url) < 0)
		h->api = NULL;
	return h->api ? 0 : -ENOMEM;
}

int oci_hosts_init(struct oci_client *c)
{
	const struct oci_options *o = &c->opts;
	struct oci_host *up;
	size_t n = 0;
	int r;

	c->hosts = calloc(o->n_mirrors + 1, sizeof(*c->hosts));
	if (!c->hosts)
		return -ENOMEM;
	if (!c->ref->is_url) {
		for (size_t i = 0; i < o->n_mirrors; i++) {
			struct oci_host *h = &c->hosts[n];
			const struct oci_mirror *m = &o->mirrors[i];

			if (!m->url || !(m->caps & (OCI_CAP_PULL | OCI_CAP_RESOLVE)))
				continue;
			h->mirror = true;
			h->mirror_index = i;
			atomic_store(&h->down_until, m->rest_until_ms);
			h->ca_file = o->ca_file;
			h->proxy = o->proxy;
			h->connect_timeout_ms = OCI_MIRROR_CONNECT_TIMEOUT_MS;
			c->nhosts = ++n;
			r = host_from(c, h, m);
			if (r < 0)
				return r;
			oci_fmt(h->shown, sizeof(h->shown), "mirror %s", m->url);
			oci_fmt(h->query, sizeof(h->query), "?ns=%s",
				namespace_of(c->ref->registry));
		}
	}
	up = &c->hosts[n];
	c->nhosts = ++n;
	c->up = up;
	up->caps = OCI_CAP_PULL | OCI_CAP_RESOLVE;
	up->ca_file = o->ca_file;
	up->proxy = o->proxy;
	up->connect_timeout_ms = OCI_CONNECT_TIMEOUT_MS;
	oci_fmt(up->shown, sizeof(up->shown), "%s", c->shown);
	if (c->ref->is_url)
		return 0;
	oci_fmt(up->name, sizeof(up->name), "%s", c->ref->registry);
	if (asprintf(&up->origin, "%s://%s", o->insecure ? "http" : "https",
		     c->ref->registry) < 0 ||
	    asprintf(&up->api, "%s/v2", up->origin) < 0)
		return -ENOMEM;
	if (o->server) {
		r = host_from(c, up, o->server);
		if (r < 0)
			return r;
		up->caps = OCI_CAP_PULL | OCI_CAP_RESOLVE;
		if (o->server->url)
			oci_fmt(up->shown, sizeof(up->shown), "%s (server %s)", c->ref->registry,
				o->server->url);
		/* A server other than the registry is a proxy of it: told which registry, as
		 * containerd tells every such host. */
		if (o->server->url && strcmp(up->name, c->ref->registry) != 0)
			oci_fmt(up->query, sizeof(up->query), "?ns=%s",
				namespace_of(c->ref->registry));
	}
	return 0;
}

void oci_client_export_rests(const struct oci_client *c, struct oci_options *o)
{
	for (size_t i = 0; i < c->nhosts; i++) {
		const struct oci_host *h = &c->hosts[i];

		/* (only a mirror that stalled: one that answered with an error may serve the
		 * next request, a blob, well) */
		if (h->mirror && h->mirror_index < o->n_mirrors && atomic_load(&h->stalled))
			o->mirrors[h->mirror_index].rest_until_ms = atomic_load(&h->down_until);
	}
}

void oci_hosts_free(struct oci_client *c)
{
	for (size_t i = 0; i < c->nhosts; i++) {
		struct oci_host *h = &c->hosts[i];

		oci_auth_free(&h->auth);
		free(h->api);
		free(h->origin);
		free(h->blob_url);
		curl_slist_free_all(h->headers);
		oci_tls_choice_free(h->choice);
	}
	free(c->hosts);
	c->hosts = NULL;
	c->nhosts = 0;
	c->up = NULL;
}

size_t oci_host_next(struct oci_client *c, size_t i, unsigned caps)
{
	uint64_t now = util_now_ms();

	for (; i + 1 < c->nhosts; i++) {
		struct oci_host *h = &c->hosts[i];

		if ((h->caps & caps) == caps && atomic_load(&h->down_until) <= now)
			return i;
	}
	return c->nhosts - 1;
}

/* A mirror has half of what is left until a request's deadline: one that stalls or trickles
 * its bytes (too fast for the low-speed limit, too slow for the read) leaves the next host
 * (at last the registry) time to answer. The last MIRROR_LAST_MS are all its own: a read that
 * comes back to it (a slow mirror, when the next host failed too) ends there, at its
 * deadline, not in slices too short to receive a byte. */
#define MIRROR_LAST_MS 2000

uint64_t oci_host_deadline(const struct oci_host *h, uint64_t deadline)
{
	uint64_t now = util_now_ms();

	if (!h->mirror || deadline <= now + MIRROR_LAST_MS)
		return deadline;
	return now + (deadline - now) / 2;
}

bool oci_host_failed(struct oci_client *c, struct oci_host *h, int r, const char *why)
{
	if (!h->mirror || r == -ENOMEM)
		return false;
	if (r == -EAGAIN || r == -EPROTO) {
		atomic_store(&h->down_until, util_now_ms() + OCI_MIRROR_DOWN_MS);
		log_debug("oci: %s: %s; not asked again for %llu s", h->shown, why,
			  OCI_MIRROR_DOWN_MS / 1000);
	} else {
		log_debug("oci: %s: %s; asking the next host", h->shown, why);
	}
	return true;
}

char *oci_host_url(const struct oci_client *c, const struct oci_host *h, const char *kind,
		   const char *reference)
{
	char *url;

	if (asprintf(&url, "%s/%s/%s/%s%s", h->api, c->ref->repository, kind, reference,
		     h->query) < 0)
		return NULL;
	return url;
}
