// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Registry credentials: -o username/password-file, containers' auth.json, Docker's
 * config.json (auths, credsStore, credHelpers) and docker-credential-* helpers, which get
 * the server name on stdin and answer on stdout (never a secret on a command line). The
 * file parsing is pure (fuzzed); secrets are wiped when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "oci/internal.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/strutil.h"
#include "util/time.h"

#define HELPER_REPLY_MAX (64 * 1024)
#define HELPER_TIMEOUT_MS 30000

extern char **environ;

void oci_creds_free(struct oci_creds *c)
{
	if (!c)
		return;
	free(c->username);
	util_free_secret(&c->password);
	util_free_secret(&c->identity_token);
	free(c->helper);
	memset(c, 0, sizeof(*c));
}

/* ---- base64 (RFC 4648, with padding) -------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *oci_base64_encode(const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t out_len = (len + 2) / 3 * 4, j = 0;
	char *out;

	if (len > SIZE_MAX / 2)
		return NULL;
	out = malloc(out_len + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[j++] = b64chars[(v >> 18) & 63];
		out[j++] = b64chars[(v >> 12) & 63];
		out[j++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		out[j++] = i + 2 < len ? b64chars[v & 63] : '=';
	}
	out[j] = 0;
	return out;
}

static int b64val(char c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;

	return p ? (int)(p - b64chars) : -1;
}

int oci_base64_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_len)
{
	uint8_t *out;
	size_t j = 0, n = 0;
	uint32_t acc = 0;
	size_t pad = 0;

	out = malloc(len / 4 * 3 + 3);
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		int v;

		if (s[i] == '=') {
			pad++;
			continue;
		}
		v = b64val(s[i]);
		if (v < 0 || pad) {
			explicit_bzero(out, j);
			free(out);
			return -EBADMSG;
		}
		acc = acc << 6 | (uint32_t)v;
		if (++n == 4) {
			out[j++] = (uint8_t)(acc >> 16);
			out[j++] = (uint8_t)(acc >> 8);
			out[j++] = (uint8_t)acc;
			n = 0;
			acc = 0;
		}
	}
	if (n == 1 || pad > 2) {
		explicit_bzero(out, j);
		free(out);
		return -EBADMSG;
	}
	if (n == 2) {
		out[j++] = (uint8_t)(acc >> 4);
	} else if (n == 3) {
		out[j++] = (uint8_t)(acc >> 10);
		out[j++] = (uint8_t)(acc >> 2);
	}
	*ret = out;
	*ret_len = j;
	return 0;
}

/* ---- matching config keys to a registry ---------------------------------------------------- */

static bool is_docker_hub(const char *host, size_t n)
{
	return oci_span_eq(host, n, "docker.io") || oci_span_eq(host, n, "index.docker.io") ||
	       oci_span_eq(host, n, "registry-1.docker.io");
}

const char *oci_creds_server_name(const char *registry)
{
	return is_docker_hub(registry, strlen(registry)) ? "https://index.docker.io/v1/" : registry;
}

/* How well a config key ("https://host/v1/", "host", "host/ns/repo") names registry/repository:
 * -1 no match, else the length of the matched repository prefix (0 for a host-wide key). */
static int key_match(const char *key, const char *registry, const char *repository)
{
	const char *k = key, *path;
	size_t hl, pl;

	if (!strncasecmp(k, "https://", 8))
		k += 8;
	else if (!strncasecmp(k, "http://", 7))
		k += 7;
	hl = strcspn(k, "/");
	path = k + hl;
	/* the host */
	if (!(oci_span_eq(k, hl, registry) ||
	      (is_docker_hub(k, hl) && is_docker_hub(registry, strlen(registry)))))
		return -1;
	/* Docker's legacy "/v1/" and "/v2/" suffixes name the whole registry. */
	if (!*path || !strcmp(path, "/") || !strcmp(path, "/v1/") || !strcmp(path, "/v2/") ||
	    !strcmp(path, "/v1") || !strcmp(path, "/v2"))
		return 0;
	path++;
	pl = strlen(path);
	while (pl && path[pl - 1] == '/')
		pl--;
	/* a repository namespace prefix, component-wise */
	if (pl && !strncmp(repository, path, pl) && (repository[pl] == 0 || repository[pl] == '/'))
		return (int)MIN(pl, (size_t)INT32_MAX);
	return -1;
}

static int dup_field(json_t *o, const char *key, char **ret)
{
	const char *s;
	int r = util_json_get_string(o, key, &s);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (!*s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

static bool helper_name_ok(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static int parse_auth_entry(json_t *e, struct oci_creds *ret)
{
	struct oci_creds c = { 0 };
	const char *auth = NULL;
	int r;

	if (!json_is_object(e))
		return -EBADMSG;
	r = util_json_get_string(e, "auth", &auth);
	if (r == -EBADMSG)
		return r;
	if (r == 0 && *auth) {
		uint8_t *dec = NULL;
		size_t dl = 0;
		char *colon;

		r = oci_base64_decode(auth, strlen(auth), &dec, &dl);
		if (r < 0)
			return r;
		colon = memchr(dec, ':', dl);
		if (!colon || memchr(dec, 0, dl)) {
			explicit_bzero(dec, dl);
			free(dec);
			return -EBADMSG;
		}
		c.username = strndup((char *)dec, (size_t)(colon - (char *)dec));
		c.password = strndup(colon + 1, dl - (size_t)(colon - (char *)dec) - 1);
		explicit_bzero(dec, dl);
		free(dec);
		if (!c.username || !c.password) {
			oci_creds_free(&c);
			return -ENOMEM;
		}
	} else {
		if ((r = dup_field(e, "username", &c.username)) < 0 ||
		    (r = dup_field(e, "password", &c.password)) < 0) {
			oci_creds_free(&c);
			return r;
		}
	}
	if ((r = dup_field(e, "identitytoken", &c.identity_token)) < 0) {
		oci_creds_free(&c);
		return r;
	}
	if (c.identity_token) {
		/* Docker stores "<token>" as the user of an identity token; the token wins. */
		util_free_secret(&c.password);
	}
	if (!(c.username && c.password) && !c.identity_token) {
		oci_creds_free(&c);
		return -ENOENT; /* an empty placeholder, as with credsStore */
	}
	*ret = c;
	return 0;
}

int oci_creds_lookup(const void *buf, size_t len, const char *registry, const char *repository,
		     struct oci_creds *ret)
{
	_cleanup_json_ json_t *j = NULL;
	json_t *helpers, *auths, *v, *best = NULL;
	const char *key, *store = NULL;
	int r, best_score = -1;

	memset(ret, 0, sizeof(*ret));
	r = util_json_parse(buf, len, OCI_CREDS_FILE_MAX, &j);
	if (r < 0)
		return r == -EFBIG ? r : -EBADMSG;
	if (!json_is_object(j))
		return -EBADMSG;
	/* credHelpers: per registry host */
	r = util_json_get_object(j, "credHelpers", &helpers);
	if (r == -EBADMSG)
		return r;
	if (r == 0) {
		json_object_foreach(helpers, key, v) {
			if (key_match(key, registry, "") != 0)
				continue;
			if (!json_is_string(v) || !helper_name_ok(json_string_value(v)))
				return -EBADMSG;
			ret->helper = strdup(json_string_value(v));
			return ret->helper ? 0 : -ENOMEM;
		}
	}
	/* auths: the most specific key wins */
	r = util_json_get_object(j, "auths", &auths);
	if (r == -EBADMSG)
		return r;
	if (r == 0) {
		json_object_foreach(auths, key, v) {
			int score = key_match(key, registry, repository ? repository : "");

			if (score > best_score) {
				best_score = score;
				best = v;
			}
		}
	}
	if (best) {
		r = parse_auth_entry(best, ret);
		if (r != -ENOENT)
			return r;
	}
	/* credsStore: the default helper for everything else */
	r = util_json_get_string(j, "credsStore", &store);
	if (r == -EBADMSG)
		return r;
	if (r == 0 && *store) {
		if (!helper_name_ok(store))
			return -EBADMSG;
		ret->helper = strdup(store);
		return ret->helper ? 0 : -ENOMEM;
	}
	return -ENOENT;
}

int oci_creds_helper_reply_parse(const void *buf, size_t len, struct oci_creds *ret)
{
	_cleanup_json_ json_t *j = NULL;
	struct oci_creds c = { 0 };
	int r;

	memset(ret, 0, sizeof(*ret));
	r = util_json_parse(buf, len, HELPER_REPLY_MAX, &j);
	if (r < 0)
		return r == -EFBIG ? r : -EBADMSG;
	if (!json_is_object(j))
		return -EBADMSG;
	if ((r = dup_field(j, "Username", &c.username)) < 0 ||
	    (r = dup_field(j, "Secret", &c.password)) < 0) {
		oci_creds_free(&c);
		return r;
	}
	if (!c.password) {
		oci_creds_free(&c);
		return -EBADMSG;
	}
	if (!c.username || !strcmp(c.username, "<token>")) {
		c.identity_token = TAKE_PTR(c.password);
		free(c.username);
		c.username = NULL;
	}
	*ret = c;
	return 0;
}

/* ---- looking in the files and asking helpers ----------------------------------------------- */

/* write(2) to a pipe whose reader may be gone, without SIGPIPE killing the caller (a helper
 * that exits without reading its stdin): EPIPE instead. A library leaves the process's
 * dispositions alone: SIGPIPE is blocked for this thread and a pending one taken back. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len)
{
	sigset_t pipe_set, old;
	ssize_t k;
	int err;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	k = write(fd, buf, len);
	err = errno;
	if (k < 0 && err == EPIPE && !sigismember(&old, SIGPIPE)) {
		struct timespec zero = {0, 0};

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return k;
}

/* Run docker-credential-HELPER get for server, until deadline_ms at most (the request's that
 * needs the credentials) and HELPER_TIMEOUT_MS. */
static int run_helper(const char *helper, const char *server, uint64_t deadline_ms,
		      struct oci_creds *ret, char *errbuf, size_t errlen)
{
	_cleanup_close_ int in_r = -1, in_w = -1, out_r = -1, out_w = -1, devnull = -1;
	struct util_buf reply = UTIL_BUF_INIT(HELPER_REPLY_MAX);
	posix_spawn_file_actions_t fa;
	char prog[128], *argv[3];
	uint64_t start = util_now_ms(), deadline = MIN(start + HELPER_TIMEOUT_MS, deadline_ms);
	int fds[2], status = 0, r;
	size_t written = 0, slen = strlen(server);
	pid_t pid;

	oci_fmt(prog, sizeof(prog), "docker-credential-%s", helper);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	in_r = fds[0];
	in_w = fds[1];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	out_r = fds[0];
	out_w = fds[1];
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0)
		return -errno;
	argv[0] = prog;
	argv[1] = (char *)"get";
	argv[2] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in_r, 0);
	posix_spawn_file_actions_adddup2(&fa, out_w, 1);
	posix_spawn_file_actions_adddup2(&fa, devnull, 2);
	/* Nothing else of ours: libcurl's connections to registries are not close-on-exec. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	r = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0) {
		oci_fmt(errbuf, errlen, "cannot run credential helper %s: %s", prog, strerror(r));
		return -r;
	}
	util_closep(&in_r);
	in_r = -1;
	util_closep(&out_w);
	out_w = -1;
	fcntl(in_w, F_SETFL, O_NONBLOCK);
	/* Write the server name, read the reply, both bounded in time. */
	for (;;) {
		struct pollfd p[2] = { { .fd = out_r, .events = POLLIN }, { .fd = in_w, .events = POLLOUT } };
		uint64_t now = util_now_ms();
		char buf[4096];
		ssize_t k;
		int n;

		if (now >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			util_buf_free(&reply);
			oci_fmt(errbuf, errlen, "credential helper %s did not answer within %.1f s",
				prog, (double)(now - start) / 1000);
			return -ETIMEDOUT;
		}
		n = poll(p, in_w >= 0 ? 2 : 1, (int)MIN(deadline - now, 1000ULL));
		if (n < 0 && errno != EINTR)
			break;
		if (in_w >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			k = write_nosigpipe(in_w, server + written, slen - written);
			if (k > 0)
				written += (size_t)k;
			if (k < 0 || written == slen) {
				close(in_w);
				in_w = -1;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			k = read(out_r, buf, sizeof(buf));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			if (util_buf_append(&reply, buf, (size_t)k) < 0) {
				explicit_bzero(buf, sizeof(buf));
				break;
			}
			explicit_bzero(buf, sizeof(buf));
		}
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	r = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* "credentials not found in native keychain" and the like */
		oci_fmt(errbuf, errlen, "credential helper %s has no credentials for %s", prog, server);
		r = -ENOENT;
	} else if (oci_creds_helper_reply_parse(reply.data, reply.len, ret) < 0) {
		oci_fmt(errbuf, errlen, "credential helper %s gave a malformed reply", prog);
		r = -EBADMSG;
	}
	if (reply.data)
		explicit_bzero(reply.data, reply.len);
	util_buf_free(&reply);
	return r;
}

static int try_file(const char *path, const struct oci_client *c, const char *registry,
		    uint64_t deadline_ms, struct oci_creds *ret, char **ret_source, char *errbuf,
		    size_t errlen)
{
	_cleanup_free_ char *buf = NULL;
	struct oci_creds found = { 0 };
	size_t len = 0;
	int r;

	r = util_read_file(AT_FDCWD, path, OCI_CREDS_FILE_MAX, 0, &buf, &len);
	if (r < 0)
		return -ENOENT;
	r = oci_creds_lookup(buf, len, registry, c->ref->repository, &found);
	explicit_bzero(buf, len);
	if (r == -ENOENT)
		return r;
	if (r < 0) {
		log_debug("oci: ignoring malformed credentials file %s", path);
		return -ENOENT;
	}
	if (found.helper) {
		struct oci_creds h = { 0 };
		const char *server = oci_creds_server_name(registry);

		r = run_helper(found.helper, server, deadline_ms, &h, errbuf, errlen);
		if (r == 0) {
			h.helper = found.helper; /* (which gave them) */
			found.helper = NULL;
		}
		oci_creds_free(&found);
		if (r < 0)
			return r;
		found = h;
		if (asprintf(ret_source, "credential helper via %s", path) < 0) {
			oci_creds_free(&found);
			return -ENOMEM;
		}
	} else if (!(*ret_source = strdup(path))) {
		oci_creds_free(&found);
		return -ENOMEM;
	}
	*ret = found;
	return 0;
}

int oci_creds_find(const struct oci_client *c, const struct oci_host *h, uint64_t deadline_ms,
		   struct oci_creds *ret, char **ret_source, char *errbuf, size_t errlen)
{
	const char *e, *home = getenv("HOME");
	char path[4096];
	int r, first_error = 0;

	memset(ret, 0, sizeof(*ret));
	/* The credentials given on the command line are the registry's: never a mirror's. */
	if (!h->mirror && c->opts.username && c->opts.password) {
		struct util_error perr = UTIL_ERROR_INIT;

		ret->username = strdup(c->opts.username);
		/* The file as it is now (a password rotated since the mount), or what it held. */
		if (!c->opts.password_file ||
		    oci_password_file_read(c->opts.password_file, &ret->password, &perr) < 0)
			ret->password = strdup(c->opts.password);
		*ret_source = strdup("-o username/password-file");
		if (!ret->username || !ret->password || !*ret_source) {
			oci_creds_free(ret);
			return -ENOMEM;
		}
		return 0;
	}
	if (!h->name[0])
		return -ENOENT;
	/* containers-auth.json(5) order, then Docker's */
	for (int i = 0; i < 5; i++) {
		path[0] = 0;
		if (i == 0 && (e = getenv("REGISTRY_AUTH_FILE")) && *e)
			oci_fmt(path, sizeof(path), "%s", e);
		else if (i == 1 && (e = getenv("XDG_RUNTIME_DIR")) && *e)
			oci_fmt(path, sizeof(path), "%s/containers/auth.json", e);
		else if (i == 2 && home && *home)
			oci_fmt(path, sizeof(path), "%s/.config/containers/auth.json", home);
		else if (i == 3 && (e = getenv("DOCKER_CONFIG")) && *e)
			oci_fmt(path, sizeof(path), "%s/config.json", e);
		else if (i == 4 && home && *home && !(getenv("DOCKER_CONFIG") && *getenv("DOCKER_CONFIG")))
			oci_fmt(path, sizeof(path), "%s/.docker/config.json", home);
		if (!path[0])
			continue;
		r = try_file(path, c, h->name, deadline_ms, ret, ret_source, errbuf, errlen);
		if (r == 0)
			return 0;
		if (r != -ENOENT && !first_error)
			first_error = r;
		else if (r == -ENOENT && errbuf[0] && !first_error)
			first_error = -ENOENT; /* a helper without an answer: keep its message */
	}
	return first_error ? first_error : -ENOENT;
}
