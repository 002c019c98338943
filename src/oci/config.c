// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * What the configuration files add to a pull's options: lazyerofs's own file (util/config.h:
 * the proxy, the mirrors of each registry), then containerd's host directory of the registry:
 * its hosts.toml (its server, and its [host."..."] mirrors with their capabilities, CA, client
 * certificates, skip_verify, headers, override_path, proxy and dial_timeout), or without one
 * Docker's certificate files for the server. Options given with -o come first: their mirrors
 * are tried before the file's, the file's before hosts.toml's, and a setting given earlier is
 * not replaced.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/config.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/strutil.h"
#include "util/toml.h"

/* The names a registry may be configured under: Docker Hub has three. */
static size_t registry_names(const char *registry, const char *names[3])
{
	if (!strcmp(registry, "registry-1.docker.io") || !strcmp(registry, "docker.io") ||
	    !strcmp(registry, "index.docker.io")) {
		names[0] = "docker.io";
		names[1] = "index.docker.io";
		names[2] = "registry-1.docker.io";
		return 3;
	}
	names[0] = registry;
	return 1;
}

static int set_if_unset(char **field, const char *value)
{
	if (*field || !value)
		return 0;
	*field = strdup(value);
	return *field ? 0 : -ENOMEM;
}

static bool is_one_of(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(name, names[i])) /* host names know no case */
			return true;
	return false;
}

int oci_options_apply_config(struct oci_options *o, const struct oci_ref *ref,
			     const struct util_config *cfg, struct util_error *err)
{
	const char *names[3];
	size_t n = 0;
	int r;

	util_err_clear(err);
	if (set_if_unset(&o->proxy, cfg->proxy) < 0 ||
	    set_if_unset(&o->no_proxy, cfg->no_proxy) < 0)
		return -ENOMEM;
	if (!ref->is_url)
		n = registry_names(ref->registry, names);
	/* Every mirror of the file is checked, so that a mistake shows on the first mount and
	 * not only on the first of that registry's. */
	for (size_t i = 0; i < cfg->n_registries; i++) {
		const struct util_config_registry *reg = &cfg->registries[i];
		bool ours = is_one_of(reg->name, names, n);

		for (size_t j = 0; j < reg->n_mirrors; j++) {
			struct oci_mirror m = { .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE };
			struct util_error e = UTIL_ERROR_INIT;

			r = oci_mirror_url_parse(reg->mirrors[j], &m.url, &e);
			if (r < 0) {
				r = util_err_set(err, r == -ENOMEM ? r : -EINVAL,
						 "%s: line %u: a mirror of %s: %s", cfg->path,
						 reg->lines[j], reg->name, e.message);
				util_err_printable(err);
				return r;
			}
			r = 0;
			if (ours && asprintf(&m.from, "%s line %u", cfg->path, reg->lines[j]) < 0)
				r = -ENOMEM;
			if (ours && r == 0)
				r = oci_options_add_mirror(o, &m);
			oci_mirror_free(&m);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* ---- containerd's hosts.toml ---------------------------------------------------------------- */

#define CERTS_D_PATH "/etc/containerd/certs.d"
#define CA_FILE_MAX (1u << 20)
#define HEADER_LINE_MAX 8192

const char *oci_certs_d_path(void)
{
	const char *s = getenv("LAZYEROFS_CERTS_D");

	return s && *s ? s : CERTS_D_PATH;
}

struct hosts_file {
	const char *path; /* the hosts.toml, for messages */
	char dir[PATH_MAX]; /* its directory: relative CA paths start here */
	struct util_error *err;
};

/* A Go duration as containerd writes dial_timeout: "1s", "500ms", "1m30s", "1.5s". */
static int parse_duration_ms(const char *s, uint64_t *ret)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = { { "ms", 1 }, { "us", 0.001 }, { "ns", 0.000001 },
		      { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
	double total = 0;

	if (!*s)
		return -EINVAL;
	while (*s) {
		char *end;
		double v = strtod(s, &end);
		size_t i;

		if (!isdigit((unsigned char)*s) || end == s || !(v >= 0 && v <= 3600000))
			return -EINVAL;
		for (const char *q = s; q < end; q++)
			if (!isdigit((unsigned char)*q) && *q != '.')
				return -EINVAL; /* no exponents, hex or the like */
		s = end;
		for (i = 0; i < ARRAY_SIZE(units); i++)
			if (util_startswith(s, units[i].unit))
				break;
		if (i == ARRAY_SIZE(units))
			return -EINVAL;
		total += v * units[i].ms;
		s += strlen(units[i].unit);
	}
	if (total < 1 || total > 3600000)
		return -ERANGE;
	*ret = (uint64_t)total;
	return 0;
}

/* A path hosts.toml names: relative ones start in the file's directory (containerd's). */
static int file_path(struct hosts_file *f, const char *p, char **ret)
{
	bool abs = p[0] == '/';

	if (asprintf(ret, "%s%s%s", abs ? "" : f->dir, abs ? "" : "/", p) < 0) {
		*ret = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* ca = "file" or ["file", ...]: the files' PEM text, one after the other. */
static int read_cas(struct hosts_file *f, const struct util_toml *v, struct oci_mirror *m)
{
	struct util_buf pem = UTIL_BUF_INIT(4 * CA_FILE_MAX);
	size_t n = v->type == UTIL_TOML_ARRAY ? v->n : 1;
	int r = 0;

	if (v->type != UTIL_TOML_STRING && v->type != UTIL_TOML_ARRAY)
		return util_toml_error(f->err, f->path, v,
				       "'ca' must be a path or an array of paths");
	for (size_t i = 0; i < n && r >= 0; i++) {
		const struct util_toml *p = v->type == UTIL_TOML_ARRAY ? v->items[i] : v;
		struct util_error e = UTIL_ERROR_INIT;
		_cleanup_free_ char *path = NULL;

		if (p->type != UTIL_TOML_STRING || !p->str[0])
			r = util_toml_error(f->err, f->path, p,
					    "'ca' must be a path or an array of paths");
		else
			r = file_path(f, p->str, &path);
		if (r >= 0)
			r = oci_ca_file_append(path, &pem, &e);
		if (r < 0 && r != -ENOMEM && e.code)
			r = util_toml_error(f->err, f->path, p, "%s", e.message);
	}
	if (r >= 0) {
		m->ca_pem_len = pem.len;
		r = util_buf_steal(&pem, &m->ca_pem);
	}
	util_buf_free(&pem);
	return r;
}

#define CLIENT_TYPES "'client' must be a path, or an array of paths and [\"cert\", \"key\"] pairs"

/* One client certificate: "file" (its key inside) or ["cert", "key"]. */
static int read_client(struct hosts_file *f, const struct util_toml *v, struct oci_mirror *m)
{
	const struct util_toml *cert = v, *key = NULL;
	_cleanup_free_ char *cert_path = NULL, *key_path = NULL;
	struct util_error e = UTIL_ERROR_INIT;
	int r;

	if (v->type == UTIL_TOML_ARRAY) {
		if (v->n != 2)
			return util_toml_error(f->err, f->path, v,
					       "a 'client' pair must be [\"cert\", \"key\"], two "
					       "paths (it has %zu)",
					       v->n);
		cert = v->items[0];
		key = v->items[1];
	}
	if (cert->type != UTIL_TOML_STRING || !cert->str[0] ||
	    (key && (key->type != UTIL_TOML_STRING || !key->str[0])))
		return util_toml_error(f->err, f->path, v, CLIENT_TYPES);
	r = file_path(f, cert->str, &cert_path);
	if (r >= 0 && key)
		r = file_path(f, key->str, &key_path);
	if (r >= 0)
		r = oci_client_pair_load(cert_path, key_path, m, &e);
	if (r < 0 && r != -ENOMEM && e.code)
		r = util_toml_error(f->err, f->path, v, "%s", e.message);
	return r;
}

/* client = "file", ["file", ...], [["cert", "key"], ...] or a mix of the two: containerd's
 * forms. */
static int read_clients(struct hosts_file *f, const struct util_toml *v, struct oci_mirror *m)
{
	int r = 0;

	if (v->type == UTIL_TOML_STRING)
		return read_client(f, v, m);
	if (v->type != UTIL_TOML_ARRAY)
		return util_toml_error(f->err, f->path, v, CLIENT_TYPES);
	for (size_t i = 0; i < v->n && r >= 0; i++) {
		const struct util_toml *c = v->items[i];

		if (c->type != UTIL_TOML_STRING && c->type != UTIL_TOML_ARRAY)
			r = util_toml_error(f->err, f->path, c, CLIENT_TYPES);
		else
			r = read_client(f, c, m);
	}
	return r;
}

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

static bool header_value_ok(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
}

/* [header] name = "value" or ["value", ...]: one "Name: value" line each. */
static int read_headers(struct hosts_file *f, const struct util_toml *t, struct oci_mirror *m)
{
	size_t lines = 0;

	if (t->type != UTIL_TOML_TABLE)
		return util_toml_error(f->err, f->path, t,
				       "'header' must be a table of names and values");
	for (size_t i = 0; i < t->n; i++)
		lines += t->items[i]->type == UTIL_TOML_ARRAY ? t->items[i]->n : 1;
	m->headers = calloc(lines + 1, sizeof(char *));
	if (!m->headers)
		return -ENOMEM;
	lines = 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct util_toml *h = t->items[i];
		size_t n = h->type == UTIL_TOML_ARRAY ? h->n : 1;

		if (!header_name_ok(h->key))
			return util_toml_error(f->err, f->path, h, "'%s' is not a header name",
					       h->key);
		for (size_t j = 0; j < n; j++) {
			const struct util_toml *v = h->type == UTIL_TOML_ARRAY ? h->items[j] : h;

			if (v->type != UTIL_TOML_STRING || !header_value_ok(v->str) ||
			    strlen(v->str) > HEADER_LINE_MAX)
				return util_toml_error(
				    f->err, f->path, v,
				    "header '%s': a value must be a string of one line", h->key);
			if (asprintf(&m->headers[lines], "%s: %s", h->key, v->str) < 0) {
				m->headers[lines] = NULL;
				return -ENOMEM;
			}
			lines++;
		}
	}
	return 0;
}

static int get_bool(struct hosts_file *f, const struct util_toml *t, const char *key, bool *ret)
{
	const struct util_toml *v = util_toml_get(t, key);

	if (!v)
		return 0;
	if (v->type != UTIL_TOML_BOOLEAN)
		return util_toml_error(f->err, f->path, v, "'%s' must be true or false", key);
	*ret = v->boolean;
	return 0;
}

/* What a [host."..."] table (or the file's top level, for the server) says. */
static int read_host(struct hosts_file *f, const struct util_toml *t, struct oci_mirror *m)
{
	const struct util_toml *v;
	int r;

	r = get_bool(f, t, "skip_verify", &m->skip_verify);
	if (r >= 0)
		r = get_bool(f, t, "override_path", &m->override_path);
	if (r >= 0 && (v = util_toml_get(t, "ca")))
		r = read_cas(f, v, m);
	if (r >= 0 && (v = util_toml_get(t, "client")))
		r = read_clients(f, v, m);
	if (r >= 0 && (v = util_toml_get(t, "header")))
		r = read_headers(f, v, m);
	if (r >= 0 && (v = util_toml_get(t, "proxy"))) {
		if (v->type != UTIL_TOML_STRING || !v->str[0] || !header_value_ok(v->str))
			r = util_toml_error(f->err, f->path, v, "'proxy' must be a URL");
		else if (!(m->proxy = strdup(v->str)))
			r = -ENOMEM;
	}
	if (r >= 0 && (v = util_toml_get(t, "dial_timeout")) &&
	    (v->type != UTIL_TOML_STRING || parse_duration_ms(v->str, &m->dial_timeout_ms) < 0))
		r = util_toml_error(
		    f->err, f->path, v,
		    "'dial_timeout' must be a duration from 1ms to 1h, e.g. \"2s\"");
	if (r >= 0 && (v = util_toml_get(t, "capabilities"))) {
		if (v->type != UTIL_TOML_ARRAY)
			return util_toml_error(
			    f->err, f->path, v,
			    "'capabilities' must be an array, e.g. [\"pull\", \"resolve\"]");
		if (v->n > 0) /* none listed: all, as containerd reads it */
			m->caps = 0;
		for (size_t i = 0; i < v->n; i++) {
			const struct util_toml *c = v->items[i];

			if (c->type != UTIL_TOML_STRING)
				return util_toml_error(
				    f->err, f->path, c,
				    "'capabilities' must be an array of strings");
			if (!strcasecmp(c->str, "pull")) /* containerd: any case */
				m->caps |= OCI_CAP_PULL;
			else if (!strcasecmp(c->str, "resolve"))
				m->caps |= OCI_CAP_RESOLVE;
			else if (strcasecmp(c->str, "push"))
				return util_toml_error(
				    f->err, f->path, c,
				    "unknown capability '%.40s' (pull, resolve, push)", c->str);
		}
	}
	return r;
}

/* containerd: a host's URL whose path ends in /v2 is the API root already (no second "/v2"). */
static void api_root_given(struct oci_mirror *m)
{
	const char *host = m->url ? strstr(m->url, "://") : NULL, *path;
	size_t n;

	if (!host || m->override_path || !(path = strchr(host + 3, '/')))
		return;
	n = strlen(path);
	m->override_path = n >= 3 && !strcmp(path + n - 3, "/v2");
}

/* A URL as hosts.toml writes one (server, a [host."URL"] key), through the mirror grammar. */
static int host_url(struct hosts_file *f, const struct util_toml *at, const char *text,
		    char **ret)
{
	struct util_error e = UTIL_ERROR_INIT;
	int r = oci_mirror_url_parse(text, ret, &e);

	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return util_toml_error(f->err, f->path, at, "%s", e.message);
	return 0;
}

/* The registry's own server becomes what *server says (moved out of it), unless o has one
 * already or *server says nothing. */
static int take_server(struct oci_options *o, struct oci_mirror *server)
{
	if (o->server || !(server->url || server->ca_pem || server->nclients ||
			   server->headers || server->skip_verify || server->proxy ||
			   server->dial_timeout_ms || server->override_path))
		return 0;
	o->server = calloc(1, sizeof(*o->server));
	if (!o->server)
		return -ENOMEM;
	*o->server = *server;
	memset(server, 0, sizeof(*server));
	return 0;
}

int oci_options_apply_hosts_toml(struct oci_options *o, const char *buf, size_t len,
				 const char *path, struct util_error *err)
{
	_cleanup_(util_toml_freep) struct util_toml *root = NULL;
	struct hosts_file f = { .path = path, .err = err };
	struct oci_mirror server = { .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE };
	const struct util_toml *hosts, *v;
	const char *slash = strrchr(path, '/');
	int r;

	util_err_clear(err);
	oci_fmt(f.dir, sizeof(f.dir), "%.*s", slash ? (int)(slash - path) : 1,
		slash ? path : ".");
	r = util_toml_parse(buf, len, &root, err);
	if (r < 0) {
		util_err_prefix(err, "%s", path);
		return r;
	}
	/* The top level describes the registry's own server. */
	r = read_host(&f, root, &server);
	if (r >= 0 && (v = util_toml_get(root, "server"))) {
		if (v->type != UTIL_TOML_STRING)
			r = util_toml_error(f.err, f.path, v, "'server' must be a URL");
		else
			r = host_url(&f, v, v->str, &server.url);
		/* containerd's name for Docker Hub's namespace is not its API host */
		if (r >= 0 && (!strcmp(server.url, "https://docker.io") ||
			       !strcmp(server.url, "https://index.docker.io"))) {
			free(server.url);
			server.url = strdup("https://registry-1.docker.io");
			r = server.url ? 0 : -ENOMEM;
		}
	}
	if (r >= 0) {
		api_root_given(&server);
		r = take_server(o, &server);
	}
	oci_mirror_free(&server);
	if (r < 0)
		return r;
	hosts = util_toml_get(root, "host");
	if (!hosts)
		return 0;
	if (hosts->type != UTIL_TOML_TABLE)
		return util_toml_error(f.err, f.path, hosts,
				       "'host' must be tables, e.g. [host.\"https://mirror\"]");
	for (size_t i = 0; i < hosts->n; i++) {
		const struct util_toml *t = hosts->items[i];
		struct oci_mirror m = { .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE };

		if (t->type != UTIL_TOML_TABLE)
			return util_toml_error(f.err, f.path, t,
					       "'host.%s' must be a table [host.\"URL\"]", t->key);
		r = host_url(&f, t, t->key, &m.url);
		if (r >= 0)
			r = read_host(&f, t, &m);
		if (r >= 0)
			api_root_given(&m);
		m.resolve_first = true;
		if (r >= 0 && asprintf(&m.from, "%s line %u", path, t->line) < 0) {
			m.from = NULL;
			r = -ENOMEM;
		}
		/* push-only hosts serve nothing here */
		if (r >= 0 && (m.caps & (OCI_CAP_PULL | OCI_CAP_RESOLVE)))
			r = oci_options_add_mirror(o, &m);
		oci_mirror_free(&m);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- Docker's layout: a host directory without hosts.toml ------------------------------- */

#define CERT_FILES_MAX 64

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n > k && !strcmp(s + n - k, suffix);
}

static int cert_file_filter(const struct dirent *d)
{
	return d->d_type != DT_DIR &&
	       (ends_with(d->d_name, ".crt") || ends_with(d->d_name, ".cert"));
}

/* Go's os.ReadDir order: bytes, not the locale's collation. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* What containerd reads from a host directory without hosts.toml, for the registry's own
 * server: NAME.crt files are CAs, NAME.cert files client certificates with NAME.key their key
 * when there is one (else in the .cert file itself). */
static int apply_cert_files(struct oci_options *o, const char *dir, struct util_error *err)
{
	struct util_buf pem = UTIL_BUF_INIT(4 * CA_FILE_MAX);
	struct oci_mirror server = { .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE };
	struct dirent **names = NULL;
	int n, r = 0;

	n = scandir(dir, &names, cert_file_filter, by_name);
	if (n < 0) {
		r = -errno;
		return util_err_set(err, r, "%s: %s", dir, strerror(-r));
	}
	if (n > CERT_FILES_MAX)
		r = util_err_set(err, -EFBIG, "%s: more than %d certificate files", dir,
				 CERT_FILES_MAX);
	for (int i = 0; i < n && r >= 0; i++) {
		const char *name = names[i]->d_name;
		_cleanup_free_ char *path = NULL, *key = NULL;
		struct stat st;

		if (asprintf(&path, "%s/%s", dir, name) < 0) {
			path = NULL;
			r = -ENOMEM;
		} else if (ends_with(name, ".crt")) {
			r = oci_ca_file_append(path, &pem, err);
		} else if (asprintf(&key, "%s/%.*s.key", dir, (int)(strlen(name) - 5), name) < 0) {
			key = NULL;
			r = -ENOMEM;
		} else {
			if (stat(key, &st) < 0) {
				r = -errno;
				if (r == -ENOENT) {
					free(key);
					key = NULL;
					r = 0;
				} else {
					util_err_set(err, r, "client key '%s': %s", key,
						     strerror(-r));
				}
			}
			if (r >= 0)
				r = oci_client_pair_load(path, key, &server, err);
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (r >= 0 && pem.len) {
		server.ca_pem_len = pem.len;
		r = util_buf_steal(&pem, &server.ca_pem);
	}
	util_buf_free(&pem);
	if (r >= 0)
		r = take_server(o, &server);
	oci_mirror_free(&server);
	return r;
}

int oci_options_apply_hosts(struct oci_options *o, const struct oci_ref *ref, const char *certs_d,
			    struct util_error *err)
{
	char names[3][300], dir[PATH_MAX], path[PATH_MAX];
	size_t n = 0;
	const char *colon;

	util_err_clear(err);
	if (ref->is_url)
		return 0;
	/* containerd's order: host_port_ (no ':' in a file name), host:port, then _default */
	colon = strrchr(ref->registry, ':');
	if (colon && !strchr(colon, ']')) /* a port, not a colon of "[::1]" */
		oci_fmt(names[n++], sizeof(names[0]), "%.*s_%s_", (int)(colon - ref->registry),
			ref->registry, colon + 1);
	oci_fmt(names[n++], sizeof(names[0]), "%s",
		!strcmp(ref->registry, "registry-1.docker.io") ? "docker.io" : ref->registry);
	oci_fmt(names[n++], sizeof(names[0]), "_default");
	/* The first of those directories there is holds the whole configuration (containerd's
	 * HostDirFromRoot): its hosts.toml, else (none, or an empty one) its certificate files;
	 * the next names are not looked at. */
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *buf = NULL;
		struct stat st;
		size_t len = 0;
		int r;

		oci_fmt(dir, sizeof(dir), "%s/%s", certs_d, names[i]);
		if (stat(dir, &st) < 0) {
			r = -errno;
			if (r == -ENOENT || r == -ENOTDIR)
				continue;
			return util_err_set(err, r, "%s: %s", dir, strerror(-r));
		}
		if (!S_ISDIR(st.st_mode))
			continue;
		oci_fmt(path, sizeof(path), "%s/hosts.toml", dir);
		r = util_read_file(AT_FDCWD, path, UTIL_TOML_MAX_SIZE, 0, &buf, &len);
		if (r < 0 && r != -ENOENT)
			return util_err_set(err, r, "%s: %s", path,
					    r == -EFBIG ? "too large" : strerror(-r));
		if (r < 0 || len == 0)
			return apply_cert_files(o, dir, err);
		return oci_options_apply_hosts_toml(o, buf, len, path, err);
	}
	return 0;
}
