// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The -o keys the oci module owns (DESIGN.md "Command-line contract"), with erofs-utils'
 * oci.* spellings as aliases. `mirror=` adds up; any other key given twice: the last wins.
 * Keys oci does not own answer -ENOENT so that a mount option parser can route them
 * elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "oci/internal.h"
#include "oci/parse.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/sha256.h"
#include "util/strutil.h"

#define PASSWORD_MAX 4096
#define TIMEOUT_MAX_MS (24ULL * 3600 * 1000)

void oci_options_init(struct oci_options *o)
{
	memset(o, 0, sizeof(*o));
	o->layer = -1;
}

void oci_options_free(struct oci_options *o)
{
	if (!o)
		return;
	free(o->ca_file);
	free(o->blob);
	free(o->platform);
	free(o->username);
	util_free_secret(&o->password);
	free(o->password_file);
	free(o->digest);
	for (size_t i = 0; i < o->n_mirrors; i++)
		oci_mirror_free(&o->mirrors[i]);
	free(o->mirrors);
	oci_mirror_free(o->server);
	free(o->server);
	free(o->proxy);
	free(o->no_proxy);
	free(o->run_dir);
	oci_options_init(o);
}

int oci_options_copy(struct oci_options *dst, const struct oci_options *src)
{
	oci_options_init(dst);
	dst->insecure = src->insecure;
	dst->layer = src->layer;
	dst->timeout_ms = src->timeout_ms;
#define DUP(f)                                          \
	do {                                            \
		if (src->f && !(dst->f = strdup(src->f))) { \
			oci_options_free(dst);          \
			return -ENOMEM;                 \
		}                                       \
	} while (0)
	DUP(ca_file);
	DUP(blob);
	DUP(platform);
	DUP(username);
	DUP(password);
	DUP(password_file);
	DUP(digest);
	DUP(proxy);
	DUP(no_proxy);
	DUP(run_dir);
#undef DUP
	for (size_t i = 0; i < src->n_mirrors; i++)
		if (oci_options_add_mirror(dst, &src->mirrors[i]) < 0) {
			oci_options_free(dst);
			return -ENOMEM;
		}
	if (src->server) {
		dst->server = calloc(1, sizeof(*dst->server));
		if (!dst->server || oci_mirror_copy(dst->server, src->server) < 0) {
			free(dst->server);
			dst->server = NULL;
			oci_options_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

static int set_string(char **field, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

static int parse_bool(const char *v, bool *ret)
{
	if (!v || !*v || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true") ||
	    !strcmp(v, "on")) {
		*ret = true;
		return 0;
	}
	if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off")) {
		*ret = false;
		return 0;
	}
	return -EINVAL;
}

/* SECONDS with an optional fraction ("2", "0.5"); > 0 and at most a day. */
static int parse_timeout(const char *v, uint64_t *ret_ms)
{
	uint64_t whole = 0, frac = 0, scale = 1000;
	const char *dot;
	char buf[32];
	size_t n;

	if (!v || !*v || strlen(v) >= sizeof(buf))
		return -EINVAL;
	dot = strchr(v, '.');
	n = dot ? (size_t)(dot - v) : strlen(v);
	memcpy(buf, v, n);
	buf[n] = 0;
	if (n == 0 ? !dot : util_parse_u64(buf, &whole) < 0)
		return -EINVAL;
	if (whole > TIMEOUT_MAX_MS / 1000)
		return -ERANGE;
	if (dot) {
		const char *f = dot + 1;

		if (!*f)
			return -EINVAL;
		for (; *f; f++) {
			if (*f < '0' || *f > '9')
				return -EINVAL;
			scale /= 10;
			frac += (uint64_t)(*f - '0') * scale;
		}
	}
	*ret_ms = whole * 1000 + frac;
	if (*ret_ms == 0)
		return -EINVAL;
	return 0;
}

/* path made absolute, its symbolic links kept: a secret mounted as a link that is swapped
 * when the secret rotates (Kubernetes' "..data") is read through the link again. NULL when
 * out of memory or the working directory is unknown. */
static char *absolute_path(const char *path)
{
	_cleanup_free_ char *cwd = NULL;
	char *out = NULL;

	if (path[0] == '/')
		return strdup(path);
	cwd = getcwd(NULL, 0);
	if (!cwd || asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

int oci_password_file_read(const char *path, char **ret, struct util_error *err)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = util_read_file(AT_FDCWD, path, PASSWORD_MAX, 0, &buf, &len);
	if (r == -EFBIG) {
		return util_err_set(err, -EINVAL, "password-file '%s' is larger than %d bytes",
				    path, PASSWORD_MAX);
	}
	if (r < 0) {
		util_err_set(err, r, "cannot read password-file '%s': %s", path, strerror(-r));
		return r;
	}
	/* One trailing newline (as `echo` writes) is not part of the password. */
	if (len && buf[len - 1] == '\n') {
		buf[--len] = 0;
		if (len && buf[len - 1] == '\r')
			buf[--len] = 0;
	}
	if (len == 0 || strlen(buf) != len) {
		explicit_bzero(buf, len);
		return util_err_set(err, -EINVAL,
				    "password-file '%s' is empty or contains a NUL byte", path);
	}
	*ret = TAKE_PTR(buf);
	return 0;
}

static bool platform_text_valid(const char *v)
{
	int slashes = 0;
	size_t n = strlen(v);

	if (n == 0 || n > 95 || v[0] == '/' || v[n - 1] == '/' || strstr(v, "//"))
		return false;
	for (const char *p = v; *p; p++) {
		if (*p == '/')
			slashes++;
		else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	}
	return slashes == 1 || slashes == 2;
}

int oci_options_set(struct oci_options *o, const char *key, const char *value,
		    struct util_error *err)
{
	bool b;
	int r;

	util_err_clear(err);
	if (!key)
		return -EINVAL;
	for (const char *p = key; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -ENOENT; /* no key of ours */
	for (const char *p = value ? value : ""; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			return util_err_set(err, -EINVAL,
					    "option '%s': the value contains a control character",
					    key);
		}
	/* erofs-utils spellings */
	if (util_startswith(key, "oci.")) {
		const char *k = key + 4;

		if (!strcmp(k, "blob") || !strcmp(k, "layer") || !strcmp(k, "platform") ||
		    !strcmp(k, "username") || !strcmp(k, "insecure"))
			key = k;
		else if (!strcmp(k, "password")) {
			if (!value || !*value) {
				return util_err_set(err, -EINVAL,
						    "option 'oci.password' needs a value");
			}
			util_free_secret(&o->password);
			free(o->password_file);
			o->password_file = NULL;
			o->password = strdup(value);
			if (!o->password)
				return -ENOMEM;
			util_err_set(
			    err, 0, /* a warning: accepted */
			    "option 'oci.password=' puts the password on the command line, "
			    "where other users can see it; use 'password-file=PATH' instead");
			return 1;
		} else
			return -ENOENT;
	}

#define NEED_VALUE()                                                                               \
	do {                                                                                       \
		if (!value || !*value) {                                                           \
			util_err_set(err, -EINVAL, "option '%s' needs a value (%s=...)", key,      \
				     key);                                                         \
			return -EINVAL;                                                            \
		}                                                                                  \
	} while (0)

	if (!strcmp(key, "insecure")) {
		if (parse_bool(value, &b) < 0) {
			return util_err_set(err, -EINVAL,
					    "option 'insecure' takes no value or yes/no");
		}
		o->insecure = b;
		return 0;
	}
	if (!strcmp(key, "ca")) {
		NEED_VALUE();
		/* Checked now, not by the first TLS handshake (a directory, an empty file
		 * or /dev/null was blamed on the registry's certificate) */
		if (oci_ca_file_check(value, err) < 0)
			return -EINVAL;
		return set_string(&o->ca_file, value);
	}
	if (!strcmp(key, "blob") || !strcmp(key, "digest")) {
		NEED_VALUE();
		if (!util_digest_valid(value)) {
			return util_err_set(
			    err, -EINVAL,
			    "option '%s': '%.100s' is not sha256: followed by 64 lowercase "
			    "hex digits",
			    key, value);
		}
		return set_string(!strcmp(key, "blob") ? &o->blob : &o->digest, value);
	}
	if (!strcmp(key, "layer")) {
		uint64_t v;

		NEED_VALUE();
		if (util_parse_u64(value, &v) < 0 || v > 1000000) {
			return util_err_set(
			    err, -EINVAL, "option 'layer': '%.50s' is not a layer number (0-based)",
			    value);
		}
		o->layer = (long)v;
		return 0;
	}
	if (!strcmp(key, "platform")) {
		NEED_VALUE();
		if (!platform_text_valid(value)) {
			return util_err_set(
			    err, -EINVAL,
			    "option 'platform': '%.100s' is not OS/ARCH[/VARIANT], e.g. "
			    "linux/arm64/v8",
			    value);
		}
		return set_string(&o->platform, value);
	}
	if (!strcmp(key, "username")) {
		NEED_VALUE();
		if (strchr(value, ':') || strlen(value) > 256) {
			return util_err_set(err, -EINVAL,
					    "option 'username': must not contain ':' and be "
					    "at most 256 characters");
		}
		return set_string(&o->username, value);
	}
	if (!strcmp(key, "password-file")) {
		char *pw = NULL;

		NEED_VALUE();
		r = oci_password_file_read(value, &pw, err);
		if (r < 0)
			return r == -ENOMEM ? r : -EINVAL;
		util_free_secret(&o->password);
		o->password = pw;
		free(o->password_file);
		o->password_file = absolute_path(value);
		return 0;
	}
	if (!strcmp(key, "mirror")) {
		struct oci_mirror m = { .caps = OCI_CAP_PULL | OCI_CAP_RESOLVE };
		struct util_error e = UTIL_ERROR_INIT;

		NEED_VALUE();
		r = oci_mirror_url_parse(value, &m.url, &e);
		if (r < 0) {
			if (r == -ENOMEM)
				return r;
			return util_err_set(
			    err, -EINVAL,
			    "option 'mirror': %s (want [http(s)://]HOST[:PORT][/PATH])", e.message);
		}
		m.from = strdup("-o mirror");
		r = m.from ? oci_options_add_mirror(o, &m) : -ENOMEM;
		oci_mirror_free(&m);
		return r < 0 ? r : 0;
	}
	if (!strcmp(key, "timeout")) {
		uint64_t ms;

		NEED_VALUE();
		if (parse_timeout(value, &ms) < 0) {
			return util_err_set(
			    err, -EINVAL,
			    "option 'timeout': '%.50s' is not a number of seconds above 0 and "
			    "at most 86400 (e.g. 30 or 2.5)",
			    value);
		}
		o->timeout_ms = ms;
		return 0;
	}
#undef NEED_VALUE
	return -ENOENT;
}

int oci_options_set_list(struct oci_options *o, const char *list,
			 void (*warn)(void *ctx, const char *message), void *ctx,
			 struct util_error *err)
{
	_cleanup_free_ char *copy = strdup(list);
	char *save = NULL;
	int ret = 0;

	util_err_clear(err);
	if (!copy)
		return -ENOMEM;
	for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		struct util_error e = UTIL_ERROR_INIT;
		char *eq = strchr(kv, '=');
		int r;

		if (eq)
			*eq = 0;
		r = oci_options_set(o, kv, eq ? eq + 1 : NULL, &e);
		if (r == -ENOENT)
			return util_err_set(err, r, "unknown option '%s'", kv);
		if (r < 0) {
			if (err)
				*err = e;
			return r;
		}
		if (r > 0) {
			if (warn)
				warn(ctx, e.message);
			ret = 1;
		}
	}
	return ret;
}

int oci_options_check_source(const struct oci_options *o, bool is_url, struct util_error *err)
{
	const char *registry_only = o->blob	    ? "blob"
				    : o->layer >= 0 ? "layer"
				    : o->platform   ? "platform"
				    : o->n_mirrors  ? "mirror"
						    : NULL;

	if (!o->username != !o->password) {
		/* (the password as typed: password-file= or oci.password=) */
		return util_err_set(err, -EINVAL, "option '%s' needs '%s' too",
				    o->username	       ? "username"
				    : o->password_file ? "password-file"
						       : "oci.password",
				    o->username ? "password-file" : "username");
	}
	if (is_url && registry_only) {
		return util_err_set(err, -EINVAL,
				    "option '%s' is for images in a registry, not for a URL source",
				    registry_only);
	}
	if (!is_url && o->digest) {
		return util_err_set(err, -EINVAL,
				    "option 'digest' pins a URL source; for an image in a registry "
				    "give REFERENCE@sha256:... (its manifest) or blob=sha256:...");
	}
	return 0;
}

static int hash_str(struct util_sha256 *h, const char *s, size_t len)
{
	uint64_t n = s ? len : UINT64_MAX; /* NULL and "" differ */

	if (util_sha256_update(h, &n, sizeof(n)) < 0)
		return -ENOMEM;
	return s && len ? util_sha256_update(h, s, len) : 0;
}

static int hash_mirror(struct util_sha256 *h, const struct oci_mirror *m)
{
	uint64_t flags = m->caps | (uint64_t)m->override_path << 8 | (uint64_t)m->skip_verify << 9;
	int r = util_sha256_update(h, &flags, sizeof(flags));

	if (r >= 0)
		r = hash_str(h, m->url, m->url ? strlen(m->url) : 0);
	if (r >= 0)
		r = hash_str(h, m->ca_pem, m->ca_pem_len);
	if (r >= 0)
		r = hash_str(h, m->proxy, m->proxy ? strlen(m->proxy) : 0);
	for (size_t i = 0; r >= 0 && i < m->nclients; i++) {
		r = hash_str(h, m->clients[i].cert, m->clients[i].cert_len);
		if (r >= 0)
			r = hash_str(h, m->clients[i].key, m->clients[i].key_len);
	}
	for (char **l = m->headers; r >= 0 && l && *l; l++)
		r = hash_str(h, *l, strlen(*l));
	return r;
}

int oci_options_net_id(const struct oci_options *o, char out[OCI_OPTIONS_NET_ID_LEN + 1])
{
	struct util_sha256 *h = NULL;
	uint8_t d[UTIL_SHA256_LEN];
	char hex[UTIL_SHA256_HEX_LEN + 1];
	uint64_t flags = o->insecure;
	int r = util_sha256_new(&h);

	if (r < 0)
		return r;
	r = util_sha256_update(h, &flags, sizeof(flags));
	if (r >= 0)
		r = hash_str(h, o->ca_file, o->ca_file ? strlen(o->ca_file) : 0);
	if (r >= 0)
		r = hash_str(h, o->username, o->username ? strlen(o->username) : 0);
	if (r >= 0)
		r = hash_str(h, o->proxy, o->proxy ? strlen(o->proxy) : 0);
	if (r >= 0)
		r = hash_str(h, o->no_proxy, o->no_proxy ? strlen(o->no_proxy) : 0);
	/* Not the mirrors: each is only a faster way to the same bytes (a plain-HTTP one makes
	 * an entry of its own), and a mount may name others. */
	if (r >= 0 && o->server)
		r = hash_mirror(h, o->server);
	if (r >= 0)
		r = util_sha256_final(h, d);
	util_sha256_free(h);
	if (r < 0)
		return r;
	util_sha256_hex(d, hex);
	memcpy(out, hex, OCI_OPTIONS_NET_ID_LEN);
	out[OCI_OPTIONS_NET_ID_LEN] = 0;
	return 0;
}
