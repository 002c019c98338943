// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * State files: `<run-dir>/<mnt_id>` (decimal unique mount id), one small JSON object per
 * mount, written atomically, holding no secret. `umount` finds its file from the mountpoint's
 * mnt_id without scanning; `status` scans the directory for all-digit names.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/json.h"

#define STATE_MAX 16384
#define STATE_VERSION 1

uint64_t mount_ns_id(void)
{
	struct stat st;

	return stat("/proc/self/ns/mnt", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

void mount_state_done(struct mount_state *s)
{
	if (!s)
		return;
	free(s->mountpoint);
	free(s->source);
	free(s->digest);
	free(s->cache);
	free(s->socket);
	free(s->options);
	free(s->transport);
	memset(s, 0, sizeof(*s));
}

static int set_str(json_t *o, const char *key, const char *v)
{
	return json_object_set_new(o, key, v ? json_string(v) : json_null()) < 0 ? -ENOMEM : 0;
}

int mount_state_to_json(const struct mount_state *s, char **ret)
{
	_cleanup_json_ json_t *o = json_object();
	char *text;
	int r = 0;

	if (!o)
		return -ENOMEM;
	if (json_object_set_new(o, "version", json_integer(STATE_VERSION)) < 0 ||
	    json_object_set_new(o, "mnt_id", json_integer((json_int_t)s->mnt_id)) < 0 ||
	    json_object_set_new(o, "pid", json_integer(s->pid)) < 0 ||
	    json_object_set_new(o, "mounted_by", json_integer(s->mounted_by)) < 0 ||
	    json_object_set_new(o, "mnt_ns", json_integer((json_int_t)s->mnt_ns)) < 0 ||
	    json_object_set_new(o, "size", json_integer((json_int_t)s->size)) < 0)
		return -ENOMEM;
	r = set_str(o, "mountpoint", s->mountpoint);
	if (r >= 0)
		r = set_str(o, "source", s->source);
	if (r >= 0)
		r = set_str(o, "digest", s->digest);
	if (r >= 0)
		r = set_str(o, "cache", s->cache);
	if (r >= 0)
		r = set_str(o, "socket", s->socket);
	if (r >= 0)
		r = set_str(o, "options", s->options);
	if (r >= 0)
		r = set_str(o, "transport", s->transport);
	if (r < 0)
		return r;
	text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}

static int dup_member(json_t *o, const char *key, bool required, char **ret)
{
	const char *v;
	int r;

	if (!required && json_is_null(json_object_get(o, key)))
		return 0;
	r = util_json_get_string(o, key, &v);
	if (r == -ENOENT && !required)
		return 0;
	if (r < 0)
		return -EBADMSG;
	*ret = strdup(v);
	return *ret ? 0 : -ENOMEM;
}

int mount_state_from_json(const char *buf, size_t len, struct mount_state *ret)
{
	_cleanup_json_ json_t *o = NULL;
	struct mount_state s = { 0 };
	uint64_t v;
	int r;

	r = util_json_parse(buf, len, STATE_MAX, &o);
	if (r < 0)
		return -EBADMSG;
	if (!json_is_object(o))
		return -EBADMSG;
	if (util_json_get_u64(o, "mnt_id", &s.mnt_id) < 0)
		return -EBADMSG;
	if (util_json_get_u64(o, "pid", &v) < 0 || v > INT32_MAX)
		return -EBADMSG;
	s.pid = (pid_t)v;
	if (util_json_get_u64(o, "mounted_by", &v) == 0 && v <= INT32_MAX)
		s.mounted_by = (pid_t)v;
	if (util_json_get_u64(o, "size", &s.size) < 0)
		s.size = 0;
	if (util_json_get_u64(o, "mnt_ns", &s.mnt_ns) < 0)
		s.mnt_ns = 0;
	r = dup_member(o, "mountpoint", true, &s.mountpoint);
	if (r >= 0)
		r = dup_member(o, "source", true, &s.source);
	if (r >= 0)
		r = dup_member(o, "digest", false, &s.digest);
	if (r >= 0)
		r = dup_member(o, "cache", false, &s.cache);
	if (r >= 0)
		r = dup_member(o, "socket", true, &s.socket);
	if (r >= 0)
		r = dup_member(o, "options", false, &s.options);
	if (r >= 0)
		r = dup_member(o, "transport", false, &s.transport);
	if (r < 0) {
		mount_state_done(&s);
		return r;
	}
	*ret = s;
	return 0;
}

/* The reference text for the state file and status: as the user wrote it, except that a
 * URL loses user info and query string (presigned URLs carry their credentials there). */
char *mount_public_source(const char *source, bool is_url)
{
	const char *scheme_end, *host, *at, *slash;
	char *out;

	if (!is_url)
		return strdup(source);
	scheme_end = strstr(source, "://");
	if (!scheme_end)
		return strdup(source);
	host = scheme_end + 3;
	slash = host + strcspn(host, "/?#");
	at = memrchr(host, '@', (size_t)(slash - host));
	out = malloc(strlen(source) + 1);
	if (!out)
		return NULL;
	memcpy(out, source, (size_t)(host - source));
	out[host - source] = 0;
	strncat(out, at ? at + 1 : host, (size_t)(slash - (at ? at + 1 : host)));
	strncat(out, slash, strcspn(slash, "?#"));
	return out;
}

void mount_state_name(uint64_t mnt_id, char name[32])
{
	snprintf(name, 32, "%" PRIu64, mnt_id);
}

int mount_state_write(int run_dirfd, const struct mount_state *s)
{
	_cleanup_free_ char *text = NULL;
	char name[32];
	int r;

	r = mount_state_to_json(s, &text);
	if (r < 0)
		return r;
	mount_state_name(s->mnt_id, name);
	return util_write_file_atomic(run_dirfd, name, text, strlen(text), 0600);
}

int mount_state_read(int run_dirfd, uint64_t mnt_id, struct mount_state *ret)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	char name[32];
	int r;

	mount_state_name(mnt_id, name);
	r = util_read_file(run_dirfd, name, STATE_MAX, 1, &text, &len);
	if (r < 0)
		return r == -ELOOP ? -EBADMSG : r;
	r = mount_state_from_json(text, len, ret);
	if (r < 0)
		return r;
	if (ret->mnt_id != mnt_id) {
		mount_state_done(ret);
		return -EBADMSG;
	}
	return 0;
}

int mount_state_remove(int run_dirfd, uint64_t mnt_id)
{
	char name[32];

	mount_state_name(mnt_id, name);
	if (unlinkat(run_dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
