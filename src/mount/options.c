// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `mount -o` parsing: the mount flags, our own keys (prefetch=, cache=, timeout=, profile=) and the
 * noise mount(8) and fstab pass to helpers; everything else belongs to the registry client
 * (oci_options_set), which says -ENOENT for keys it does not own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/strutil.h"

/* Longest accepted option string and single option: argv is untrusted. */
#define OPTS_MAX 8192
#define TIMEOUT_MAX_S 86400

const char *mount_env_cache_dir(void)
{
	const char *s = getenv("LAZYEROFS_CACHE_DIR");

	return s && *s ? s : MOUNT_DEFAULT_CACHE_DIR;
}

const char *mount_env_run_dir(void)
{
	const char *s = getenv("LAZYEROFS_RUN_DIR");

	return s && *s ? s : MOUNT_DEFAULT_RUN_DIR;
}

uint64_t mount_env_answer_wait_ms(uint64_t def)
{
	return util_env_u64("LAZYEROFS_ANSWER_WAIT_MS", def);
}

void mount_opts_init(struct mount_opts *m)
{
	memset(m, 0, sizeof(*m));
	m->timeout_ms = MOUNT_DEFAULT_TIMEOUT_MS;
	m->attr = MOUNT_ATTR_RDONLY;
}

void mount_opts_free(struct mount_opts *m)
{
	free(m->cache_dir);
	m->cache_dir = NULL;
	free(m->profile_path);
	m->profile_path = NULL;
}

struct flag_opt {
	const char *name;
	uint64_t set;   /* bits to set */
	uint64_t clear; /* bits to clear first */
};

/* Mount flags as fsmount(2) attributes. The atime modes share one field. */
static const struct flag_opt flag_opts[] = {
	{ "ro", MOUNT_ATTR_RDONLY, 0 },
	{ "nosuid", MOUNT_ATTR_NOSUID, 0 },
	{ "suid", 0, MOUNT_ATTR_NOSUID },
	{ "nodev", MOUNT_ATTR_NODEV, 0 },
	{ "dev", 0, MOUNT_ATTR_NODEV },
	{ "noexec", MOUNT_ATTR_NOEXEC, 0 },
	{ "exec", 0, MOUNT_ATTR_NOEXEC },
	{ "noatime", MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME },
	{ "relatime", MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME },
	{ "strictatime", MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME },
	{ "atime", 0, 0 },
	{ "nodiratime", MOUNT_ATTR_NODIRATIME, 0 },
	{ "diratime", 0, MOUNT_ATTR_NODIRATIME },
	/* defaults = rw,suid,dev,exec,auto,nouser,async; rw is moot for a read-only fs. */
	{ "defaults", 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC },
};

/* Userspace options of mount(8)/fstab that mean nothing to the filesystem. */
static const char *const ignored_opts[] = {
	"_netdev", "auto", "noauto", "nofail", "async", "sync", "user", "nouser", "silent", "loud",
};

/* Refused, with the reason. */
static const struct {
	const char *name;
	const char *why;
} refused_opts[] = {
	{ "rw", "EROFS is read-only; drop 'rw' or use 'ro'" },
	{ "loop", "lazyerofs mounts its cache file directly (a loop device would bypass the "
		  "on-demand fetching); drop 'loop'" },
	{ "users", "lazyerofs mounts need root; drop 'users'" },
	{ "remount", "remounting a lazyerofs mount is not supported; unmount and mount again" },
	{ "bind", "bind mounts are made with mount --bind on an existing lazyerofs mount" },
};

/* Keys that only mean something to a mount: flags, fstab noise and our mount-only keys. */
static bool mount_only_key(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(flag_opts); i++)
		if (strcmp(key, flag_opts[i].name) == 0)
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(refused_opts); i++)
		if (strcmp(key, refused_opts[i].name) == 0)
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(ignored_opts); i++)
		if (strcmp(key, ignored_opts[i]) == 0)
			return true;
	return util_startswith(key, "x-") || strcmp(key, "comment") == 0 ||
	       strcmp(key, "prefetch") == 0 || strcmp(key, "profile") == 0;
}

static int parse_one(char *key, char *value, struct mount_opts *m, struct oci_options *o,
		     struct util_error *err)
{
	struct util_error oerr = UTIL_ERROR_INIT;
	int r;

	if (m->fill_only && mount_only_key(key))
		return util_err_set(err, -EINVAL,
				    "option '%s' applies to mounts, not to 'lazyerofs fetch'; see "
				    "'lazyerofs fetch --help'",
				    key);

	for (size_t i = 0; i < ARRAY_SIZE(flag_opts); i++) {
		if (strcmp(key, flag_opts[i].name) != 0)
			continue;
		if (value) {
			return util_err_set(err, -EINVAL, "option '%s' takes no value", key);
		}
		m->attr &= ~flag_opts[i].clear;
		m->attr |= flag_opts[i].set | MOUNT_ATTR_RDONLY;
		return 0;
	}
	/* mount(8) hands its helpers "rw" whenever the user did not say "ro": as a helper, take
	 * it to mean the default (EROFS mounts read-only anyway). */
	if (m->helper && strcmp(key, "rw") == 0 && !value)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(refused_opts); i++)
		if (strcmp(key, refused_opts[i].name) == 0) {
			return util_err_set(err, -EINVAL, "option '%s' refused: %s", key,
					    refused_opts[i].why);
		}
	for (size_t i = 0; i < ARRAY_SIZE(ignored_opts); i++)
		if (strcmp(key, ignored_opts[i]) == 0)
			return 0;
	if (util_startswith(key, "x-") || strcmp(key, "comment") == 0)
		return 0;

	if (strcmp(key, "prefetch") == 0) {
		if (value && strcmp(value, "all") == 0)
			m->prefetch_all = true;
		else if (value && strcmp(value, "none") == 0)
			m->prefetch_all = false;
		else {
			return util_err_set(err, -EINVAL,
					    "option 'prefetch' wants 'none' or 'all', not '%s'",
					    value ? value : "");
		}
		return 0;
	}
	if (strcmp(key, "profile") == 0) {
		if (!value || !value[0]) {
			return util_err_set(err, -EINVAL,
					    "option 'profile' wants 'auto', 'none' or a file path");
		}
		free(m->profile_path);
		m->profile_path = NULL;
		if (strcmp(value, "auto") == 0) {
			m->profile = MOUNT_PROFILE_AUTO;
		} else if (strcmp(value, "none") == 0) {
			m->profile = MOUNT_PROFILE_NONE;
		} else {
			m->profile = MOUNT_PROFILE_PATH;
			m->profile_path = strdup(value);
			if (!m->profile_path)
				return util_err_set(err, -ENOMEM, "out of memory");
		}
		return 0;
	}
	if (strcmp(key, "timeout") == 0) {
		uint64_t s;

		if (!value || util_parse_u64(value, &s) < 0 || s == 0 || s > TIMEOUT_MAX_S) {
			return util_err_set(
			    err, -EINVAL,
			    "option 'timeout' wants whole seconds between 1 and %d, not '%s'",
			    TIMEOUT_MAX_S, value ? value : "");
		}
		m->timeout_ms = s * 1000;
		m->timeout_given = true;
		return 0;
	}
	if (strcmp(key, "cache") == 0) {
		if (!value || value[0] != '/') {
			return util_err_set(
			    err, -EINVAL,
			    "option 'cache' wants an absolute directory path, not '%s'",
			    value ? value : "");
		}
		free(m->cache_dir);
		m->cache_dir = strdup(value);
		if (!m->cache_dir) {
			return util_err_set(err, -ENOMEM, "out of memory");
		}
		return 0;
	}

	r = oci_options_set(o, key, value, &oerr);
	if (r == -ENOENT) {
		if (m->sloppy)
			return 0;
		return util_err_set(err, -EINVAL, "unknown option '%s'; see 'lazyerofs %s --help'",
				    key, m->fill_only ? "fetch" : "mount");
	}
	if (r < 0) {
		r = r == -ENOMEM ? r : -EINVAL;
		if (!util_err_has_msg(&oerr))
			util_err_set(&oerr, r, "option '%s': %s", key, strerror(-r));
		oerr.code = r;
		if (err)
			*err = oerr; /* the oci module's words, as they are */
		return r;
	}
	if (r > 0 && util_err_has_msg(&oerr))
		log_warning("%s", oerr.message);
	return 0;
}

void mount_sanitize_line(char *s)
{
	util_str_printable(s);
}

static int parse_all(const char *s, struct mount_opts *m, struct oci_options *o,
		     struct util_error *err)
{
	_cleanup_free_ char *copy = NULL;
	char *save = NULL;
	int r;

	if (!s)
		return 0;
	if (strlen(s) > OPTS_MAX) {
		return util_err_set(err, -EINVAL, "mount options longer than %d bytes", OPTS_MAX);
	}
	copy = strdup(s);
	if (!copy) {
		return util_err_set(err, -ENOMEM, "out of memory");
	}
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (eq)
			*eq = 0;
		if (!*tok) {
			return util_err_set(err, -EINVAL, "empty option name in '%s'", s);
		}
		r = parse_one(tok, eq ? eq + 1 : NULL, m, o, err);
		if (r < 0)
			return r;
	}
	/* The registry client's own deadline follows timeout= as well. */
	o->timeout_ms = m->timeout_ms;
	return 0;
}

int mount_opts_parse(const char *s, struct mount_opts *m, struct oci_options *o,
		     struct util_error *err)
{
	int r = parse_all(s, m, o, err);

	if (r < 0)
		mount_sanitize_line(err ? err->message : NULL);
	return r;
}

const char *mount_attr_format(uint64_t attr, char *buf, size_t len)
{
	size_t off = 0;
	static const struct {
		uint64_t bit;
		const char *name;
	} names[] = {
		{ MOUNT_ATTR_NOSUID, "nosuid" },
		{ MOUNT_ATTR_NODEV, "nodev" },
		{ MOUNT_ATTR_NOEXEC, "noexec" },
		{ MOUNT_ATTR_NODIRATIME, "nodiratime" },
	};

	if (len == 0)
		return buf;
	off += (size_t)snprintf(buf, len, "%s", (attr & MOUNT_ATTR_RDONLY) ? "ro" : "rw");
	for (size_t i = 0; i < ARRAY_SIZE(names) && off < len; i++)
		if (attr & names[i].bit)
			off += (size_t)snprintf(buf + off, len - off, ",%s", names[i].name);
	if (off < len) {
		uint64_t at = attr & MOUNT_ATTR__ATIME;

		if (at == MOUNT_ATTR_NOATIME)
			snprintf(buf + off, len - off, ",noatime");
		else if (at == MOUNT_ATTR_STRICTATIME)
			snprintf(buf + off, len - off, ",strictatime");
		else
			snprintf(buf + off, len - off, ",relatime");
	}
	return buf;
}
