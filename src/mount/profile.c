// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Startup profiles on the mount's side (fetch/profile.h): find the profile to replay
 * (`profile=auto`: the newest one attached to the image in the registry, looked up by a
 * thread while the metadata walk runs; `profile=PATH`: a file), check it, and hand it to the
 * daemon; and `lazyerofs profile save`. A profile only ever makes a mount faster: whatever
 * is wrong with it (another blob's, malformed, an artifact of another type, a registry that
 * refuses the lookup) costs one warning line, or nothing when there simply is none, never
 * the mount.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/profile.h"
#include "fetch/record.h"
#include "mount/mount.h"
#include "mount/profile.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/time.h"

DEFINE_CLEANUP_FUNC(struct fetch_handle, fetch_handle_free);

/* The whole lookup (referrers, the artifact's manifest, the profile blob) must fit in this,
 * however slow the registry: it overlaps the metadata walk, and the mount waits for what
 * is left of it after the walk. */
#define LOOKUP_MAX_MS 3000

/* The fallback tag, asked in a thread of its own while the lookup asks the referrers API. */
struct tag_query {
	pthread_t thread;
	struct oci_client *client;
	uint64_t timeout_ms;
	int result;
	struct util_error err;
	struct oci_referrer ref;
};

struct mount_profile {
	pthread_t thread;
	bool running;
	struct oci_client *client;
	struct oci_client *tag_client; /* NULL: no parallel tag query */
	char socket[PATH_MAX]; /* the daemon's: the thread talks to it on its own connection */
	struct oci_blob blob;
	uint64_t started_ms;
	/* What the thread found and did (read once it is joined): */
	struct mount_result out; /* only the profile_* fields */
};

/* Hand a parsed profile to the daemon, when it is this blob's; what keeps it from being
 * replayed becomes the warning (a profile the user named, kept out by a replay under way,
 * too: a registry's is the same for every mount of the image). */
static void replay(struct fetch_handle *h, const struct profile *p, const char *from, bool named,
		   const struct oci_blob *blob, struct mount_result *res)
{
	struct util_error err = UTIL_ERROR_INIT;
	_cleanup_free_ char *text = NULL;
	bool started = false, busy = false;
	size_t len;
	int r;

	if (strcmp(p->digest, blob->digest) != 0 || p->size != blob->size) {
		snprintf(res->profile_warning, sizeof(res->profile_warning),
			 "ignoring the startup profile %s: it was recorded for blob %s, and this "
			 "image is %s",
			 from, p->digest, blob->digest[0] ? blob->digest : "an http(s) source");
		return;
	}
	r = profile_format(p, &text, &len);
	if (r >= 0)
		r = fetch_profile_replay(h, text, len, &started, &busy, &err);
	if (r < 0) {
		snprintf(res->profile_warning, sizeof(res->profile_warning),
			 "the fetch daemon refused the startup profile %s: %s", from,
			 util_err_msg(&err, r));
		return;
	}
	if (busy && named) {
		snprintf(res->profile_warning, sizeof(res->profile_warning),
			 "the startup profile %s was not replayed: another one is being replayed "
			 "for this image (one at a time); mount again once it is done",
			 from);
		return;
	}
	if (!started) {
		log_debug("profile %s: %s", from,
			  busy ? "another replay is under way" : "the image is here whole");
		return;
	}
	res->profile_ranges = p->n;
	res->profile_bytes = profile_bytes(p);
	snprintf(res->profile_from, sizeof(res->profile_from), "%s", from);
}

static void *tag_thread(void *arg)
{
	struct tag_query *t = arg;

	t->result = oci_referrer_find(t->client, PROFILE_ARTIFACT_TYPE, OCI_REFERRERS_TAG,
				      t->timeout_ms, &t->ref, &t->err);
	return NULL;
}

/* The newest profile attached to the image: the referrers API and, at the same time, the
 * fallback tag (a registry without the API, like the distribution registry 2.8, then costs
 * no extra round trip); the API's answer wins when there is one. */
static int find_newest(struct mount_profile *l, struct oci_referrer *ref, struct util_error *err)
{
	struct tag_query t = {.client = l->tag_client, .timeout_ms = LOOKUP_MAX_MS};
	bool started = false;
	int r;

	if (t.client)
		started = pthread_create(&t.thread, NULL, tag_thread, &t) == 0;
	r = oci_referrer_find(l->client, PROFILE_ARTIFACT_TYPE,
			      OCI_REFERRERS_API | (started ? 0 : OCI_REFERRERS_TAG), LOOKUP_MAX_MS,
			      ref, err);
	if (started) {
		pthread_join(t.thread, NULL);
		if (r == 1) {
			r = t.result;
			*ref = t.ref;
			*err = t.err;
		}
	}
	return r;
}

/* Find the newest profile attached to the image, fetch it, hand it to the daemon: all while
 * the mount walks the metadata, so that the replay starts as early as it can. */
static void *lookup_thread(void *arg)
{
	struct mount_profile *l = arg;
	_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;
	struct util_error err = UTIL_ERROR_INIT;
	_cleanup_free_ void *buf = NULL;
	struct oci_referrer ref;
	struct profile p;
	char from[128];
	size_t len = 0;
	uint64_t used;
	int r;

	r = find_newest(l, &ref, &err);
	used = util_now_ms() - l->started_ms;
	if (r >= 0 && used >= LOOKUP_MAX_MS)
		r = util_err_set(&err, -ETIMEDOUT, "the lookup took longer than %d ms",
				 LOOKUP_MAX_MS);
	if (r >= 0) {
		r = oci_artifact_fetch(l->client, &ref, PROFILE_MEDIA_TYPE, PROFILE_MAX_BYTES,
				       LOOKUP_MAX_MS - used, &buf, &len, &err);
		if (r == -ENOENT)
			r = util_err_set(&err, -EMEDIUMTYPE,
					 "the artifact %s holds no layer of type %s", ref.digest,
					 PROFILE_MEDIA_TYPE);
	}
	l->out.profile_lookup_ms = util_now_ms() - l->started_ms;
	if (r == -ENOENT) {
		log_debug("no startup profile is attached to the image");
		return NULL;
	}
	if (r < 0) {
		/* A registry that refuses or cannot answer the lookup is no reason to speak up:
		 * the mount works without a profile; -v tells why. An artifact of our type that
		 * holds something else is worth a warning. */
		if (r == -EMEDIUMTYPE || r == -EFBIG || r == -EILSEQ)
			snprintf(l->out.profile_warning, sizeof(l->out.profile_warning),
				 "ignoring the startup profile attached to the image: %s",
				 util_err_msg(&err, r));
		else
			log_debug("looking up a startup profile: %s", util_err_msg(&err, r));
		return NULL;
	}
	r = fetch_connect(l->socket, &h);
	if (r < 0) {
		snprintf(l->out.profile_warning, sizeof(l->out.profile_warning),
			 "the startup profile was not replayed: connecting to the fetch daemon: %s",
			 strerror(-r));
		return NULL;
	}
	snprintf(from, sizeof(from), "%.110s (registry)", ref.digest);
	r = profile_parse(buf, len, &p, &err);
	if (r < 0) {
		snprintf(l->out.profile_warning, sizeof(l->out.profile_warning),
			 "ignoring the startup profile %s: %s", from, util_err_msg(&err, r));
		return NULL;
	}
	replay(h, &p, from, false, &l->blob, &l->out);
	profile_free(&p);
	return NULL;
}

int mount_profile_start(struct fetch_handle *h, const struct mount_opts *opts,
			const struct oci_ref *ref, const struct oci_options *oci,
			const struct oci_blob *blob, bool lookup, struct mount_result *res,
			struct mount_profile **ret)
{
	struct mount_profile *l;
	int r;

	*ret = NULL;
	if (opts->profile == MOUNT_PROFILE_PATH) {
		struct util_error err = UTIL_ERROR_INIT;
		struct profile p;

		r = profile_read_file(opts->profile_path, &p, &err);
		if (r < 0) {
			snprintf(res->profile_warning, sizeof(res->profile_warning),
				 "ignoring the startup profile: %s", util_err_msg(&err, r));
			return 0;
		}
		replay(h, &p, opts->profile_path, true, blob, res);
		profile_free(&p);
		return 0;
	}
	if (opts->profile != MOUNT_PROFILE_AUTO || !lookup)
		return 0;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->started_ms = util_now_ms();
	l->blob = *blob;
	snprintf(l->socket, sizeof(l->socket), "%s", h->socket_path);
	r = oci_client_new(ref, oci, &l->client);
	if (r >= 0)
		r = oci_client_set_blob(l->client, blob);
	/* A second client (its own connection) for the fallback tag; without it, one after the
	 * other. */
	if (r >= 0 && (oci_client_new(ref, oci, &l->tag_client) < 0 ||
		       oci_client_set_blob(l->tag_client, blob) < 0)) {
		oci_client_free(l->tag_client);
		l->tag_client = NULL;
	}
	if (r >= 0) {
		r = -pthread_create(&l->thread, NULL, lookup_thread, l);
		l->running = r == 0;
	}
	if (r < 0) {
		mount_profile_free(l);
		return r;
	}
	*ret = l;
	return 0;
}

void mount_profile_finish(struct mount_profile *l, struct mount_result *res)
{
	if (!l)
		return;
	if (l->running) {
		pthread_join(l->thread, NULL);
		l->running = false;
	}
	memcpy(res->profile_from, l->out.profile_from, sizeof(res->profile_from));
	memcpy(res->profile_warning, l->out.profile_warning, sizeof(res->profile_warning));
	res->profile_ranges = l->out.profile_ranges;
	res->profile_bytes = l->out.profile_bytes;
	res->profile_lookup_ms = l->out.profile_lookup_ms;
}

void mount_profile_free(struct mount_profile *l)
{
	if (!l)
		return;
	if (l->running)
		pthread_join(l->thread, NULL);
	oci_client_free(l->client);
	oci_client_free(l->tag_client);
	free(l);
}

int mount_profile_save(const char *run_dir, const char *mountpoint, const char *path,
		       struct util_error *err)
{
	struct mount_status_entry *v = NULL;
	_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;
	struct profile p = {0};
	bool truncated = false;
	size_t n = 0;
	int r;

	r = mount_status_collect(run_dir, mountpoint, &v, &n, err);
	if (r < 0)
		return r;
	if (!v[0].daemon_alive) {
		r = util_err_set(err, -ENOTCONN,
				 "the fetch daemon of '%s' is not running; nothing was recorded",
				 mountpoint);
		goto out;
	}
	r = fetch_connect_timeout(v[0].st.socket, 30000, &h);
	if (r < 0) {
		util_err_set(err, r, "connecting to the fetch daemon of '%s': %s", mountpoint,
			     strerror(-r));
		goto out;
	}
	r = fetch_profile_get(h, &p, &truncated, err);
	if (r < 0) {
		util_err_prefix(err, "the fetch daemon of '%s'", mountpoint);
		goto out;
	}
	if (p.n == 0) {
		r = util_err_set(err, -ENODATA,
				 "nothing was read from '%s' (or from other mounts of its image) "
				 "since its daemon started; run the workload first",
				 mountpoint);
		goto out;
	}
	if (truncated)
		log_warning("the record of '%s' reached its cap of %u ranges; the profile holds "
			    "the first ones",
			    mountpoint, FETCH_RECORD_MAX_RANGES);
	r = profile_write_file(path, &p, err);
out:
	profile_free(&p);
	mount_status_free(v, n);
	if (r < 0)
		mount_sanitize_line(err ? err->message : NULL);
	return r;
}
