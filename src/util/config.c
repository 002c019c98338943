// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The configuration file (config.h): read it, parse it with the TOML subset parser, check
 * the kind of each key we know and keep what it says; ignore the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/config.h"
#include "util/fs.h"
#include "util/toml.h"

#define CONFIG_STRING_MAX 4096

const char *util_config_path(void)
{
	const char *s = getenv("LAZYEROFS_CONFIG");

	return s && *s ? s : UTIL_CONFIG_PATH;
}

static void registry_free(struct util_config_registry *r)
{
	for (size_t i = 0; i < r->n_mirrors; i++)
		free(r->mirrors[i]);
	free(r->mirrors);
	free(r->lines);
	free(r->name);
}

void util_config_free(struct util_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_registries; i++)
		registry_free(&c->registries[i]);
	free(c->registries);
	free(c->path);
	free(c->proxy);
	free(c->no_proxy);
	free(c->metrics_dir);
	memset(c, 0, sizeof(*c));
}

const struct util_config_registry *util_config_registry(const struct util_config *c,
							const char *name)
{
	for (size_t i = 0; i < c->n_registries; i++)
		if (!strcmp(c->registries[i].name, name))
			return &c->registries[i];
	return NULL;
}

struct ctx {
	const char *path;
	struct util_error *err;
};

/* A string of printable characters (no control character, no space), as a proxy URL or a
 * path must be. */
static bool plain_text(const char *s)
{
	if (!*s || strlen(s) > CONFIG_STRING_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	return true;
}

static int get_text(struct ctx *x, const struct util_toml *v, const char *key, char **ret,
		    unsigned *ret_line)
{
	if (!v)
		return 0;
	if (v->type != UTIL_TOML_STRING)
		return util_toml_error(x->err, x->path, v, "'%s' must be a string", key);
	if (!plain_text(v->str))
		return util_toml_error(
		    x->err, x->path, v,
		    "'%s' must be non-empty, without spaces or control characters", key);
	free(*ret);
	*ret = strdup(v->str);
	if (!*ret)
		return -ENOMEM;
	if (ret_line)
		*ret_line = v->line;
	return 0;
}

static int get_registry(struct ctx *x, const struct util_toml *t, struct util_config *c)
{
	const struct util_toml *mirrors = util_toml_get(t, "mirrors");
	struct util_config_registry *reg, *v;

	if (t->type != UTIL_TOML_TABLE)
		return util_toml_error(
		    x->err, x->path, t,
		    "'registry.%s' must be a table, e.g. [registry.\"docker.io\"]", t->key);
	if (!*t->key || !plain_text(t->key))
		return util_toml_error(x->err, x->path, t,
				       "[registry.\"%s\"]: not a registry's name", t->key);
	v = realloc(c->registries, (c->n_registries + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->registries = v;
	reg = &v[c->n_registries++];
	memset(reg, 0, sizeof(*reg));
	reg->name = strdup(t->key);
	if (!reg->name)
		return -ENOMEM;
	if (!mirrors)
		return 0;
	if (mirrors->type != UTIL_TOML_ARRAY)
		return util_toml_error(x->err, x->path, mirrors,
				       "'mirrors' must be an array of strings, e.g. [\"%s\"]",
				       "https://mirror.example.com");
	reg->mirrors = calloc(mirrors->n ? mirrors->n : 1, sizeof(char *));
	reg->lines = calloc(mirrors->n ? mirrors->n : 1, sizeof(unsigned));
	if (!reg->mirrors || !reg->lines)
		return -ENOMEM;
	for (size_t i = 0; i < mirrors->n; i++) {
		const struct util_toml *m = mirrors->items[i];

		if (m->type != UTIL_TOML_STRING)
			return util_toml_error(x->err, x->path, m,
					       "'mirrors' must be an array of strings, not of %s",
					       util_toml_type_name(m->type));
		reg->mirrors[i] = strdup(m->str);
		if (!reg->mirrors[i])
			return -ENOMEM;
		reg->lines[i] = m->line;
		reg->n_mirrors++;
	}
	return 0;
}

static int get_cache_max(struct ctx *x, const struct util_toml *v, struct util_config *c)
{
	if (!v)
		return 0;
	if (v->type == UTIL_TOML_INTEGER && v->integer > 0) {
		c->cache_max.bytes = (uint64_t)v->integer;
		c->cache_max.is_percent = false;
	} else if (v->type != UTIL_TOML_STRING || util_parse_size(v->str, &c->cache_max) < 0 ||
		   (c->cache_max.is_percent ? !c->cache_max.percent : !c->cache_max.bytes)) {
		return util_toml_error(
		    x->err, x->path, v,
		    "'%s' must be a size: a number with an optional K, M, G or T suffix, or a "
		    "percentage (\"10G\", \"50%%\")", "cache-max");
	}
	c->have_cache_max = true;
	return 0;
}

/* libcurl matches a no-proxy entry as a host name, an IP address or a CIDR block: one with a
 * port or brackets (as Go's lists may have them) would never match, silently. */
static int check_no_proxy(struct ctx *x, const struct util_toml *v, const char *list)
{
	const char *p = list;

	while (p && *p) {
		size_t n = strcspn(p, ",");
		const char *colon = memchr(p, ':', n);
		bool bracket = memchr(p, '[', n) || memchr(p, ']', n);

		/* an IPv6 address has two colons or more; a name or IPv4 with one has a port */
		if (bracket || (colon && !memchr(colon + 1, ':', n - (size_t)(colon + 1 - p))))
			return util_toml_error(
			    x->err, x->path, v,
			    "'no-proxy' entry '%.*s' would never match: give a host name, an "
			    "address or a CIDR block, without a port or brackets",
			    (int)MIN(n, (size_t)80), p);
		p += n + (p[n] == ',');
	}
	return 0;
}

static int get_all(struct ctx *x, const struct util_toml *root, struct util_config *c)
{
	const struct util_toml *regs = util_toml_get(root, "registry");
	const struct util_toml *md = util_toml_get(root, "metrics-dir");
	int r;

	r = get_text(x, util_toml_get(root, "proxy"), "proxy", &c->proxy, &c->proxy_line);
	if (r >= 0)
		r = get_text(x, util_toml_get(root, "no-proxy"), "no-proxy", &c->no_proxy, NULL);
	if (r >= 0)
		r = check_no_proxy(x, util_toml_get(root, "no-proxy"), c->no_proxy);
	if (r >= 0)
		r = get_cache_max(x, util_toml_get(root, "cache-max"), c);
	if (r >= 0)
		r = get_text(x, md, "metrics-dir", &c->metrics_dir, NULL);
	if (r >= 0 && c->metrics_dir && c->metrics_dir[0] != '/')
		r = util_toml_error(x->err, x->path, md, "'%s' must be an absolute directory path",
				    "metrics-dir");
	if (r < 0 || !regs)
		return r;
	if (regs->type != UTIL_TOML_TABLE)
		return util_toml_error(
		    x->err, x->path, regs,
		    "'%s' must be a table of registries, e.g. [registry.\"docker.io\"]",
		    "registry");
	for (size_t i = 0; i < regs->n && r >= 0; i++)
		r = get_registry(x, regs->items[i], c);
	return r;
}

int util_config_parse(const char *buf, size_t len, const char *path, struct util_config *ret,
		      struct util_error *err)
{
	_cleanup_(util_toml_freep) struct util_toml *root = NULL;
	struct ctx x = { .path = path, .err = err };
	struct util_config c = { 0 };
	int r;

	util_err_clear(err);
	r = util_toml_parse(buf, len, &root, err);
	if (r < 0) {
		util_err_prefix(err, "%s", path);
		return r;
	}
	c.path = strdup(path);
	r = c.path ? get_all(&x, root, &c) : -ENOMEM;
	if (r < 0) {
		util_config_free(&c);
		if (r == -ENOMEM)
			util_err_set(err, r, "%s: out of memory", path);
		return r;
	}
	*ret = c;
	return 0;
}

int util_config_load(const char *path, struct util_config *ret, struct util_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	util_err_clear(err);
	r = util_read_file(AT_FDCWD, path, UTIL_TOML_MAX_SIZE, 0, &buf, &len);
	if (r == -ENOENT)
		return 0;
	if (r == -EFBIG)
		return util_err_set(err, r, "%s: larger than %u bytes", path, UTIL_TOML_MAX_SIZE);
	if (r < 0)
		return util_err_set(err, r, "%s: %s", path, strerror(-r));
	return util_config_parse(buf, len, path, ret, err);
}

int util_cache_max(struct util_size *ret, struct util_error *err)
{
	const char *s = getenv("LAZYEROFS_CACHE_MAX");
	int r;

	if (!s || !*s) {
		struct util_config cfg;

		r = util_config_load(util_config_path(), &cfg, err);
		if (r < 0)
			return r;
		r = cfg.have_cache_max;
		*ret = cfg.cache_max;
		util_config_free(&cfg);
		return r;
	}
	r = util_parse_size(s, ret);
	if (r < 0)
		return util_err_set(err, -EINVAL, "LAZYEROFS_CACHE_MAX='%s': %s; it wants %s", s,
				    r == -ERANGE ? "out of range" : "not a size", UTIL_SIZE_SYNTAX);
	return 1;
}
