// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The fetch API as seen by callers (mount helper, status, umount): find or start the entry's
 * daemon, and talk to it over its control socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fetch/internal.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/macro.h"
#include "util/time.h"

#define ENSURE_BATCH 50000 /* ranges per request line */

static int connect_unix(const char *path, int *ret_fd)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = -1, dfd = -1;
	int r;

	r = fetch_unix_addr(path, &sa, &dfd);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		return -errno;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

bool fetch_socket_is_stale(const char *path)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	/* A daemon's sockets are renamed into place only once they listen, and every process
	 * of a live daemon holds the listening fd: a refused connection means it is gone. */
	return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       connect_unix(path, &fd) == -ECONNREFUSED;
}

void fetch_handle_free(struct fetch_handle *h)
{
	if (!h)
		return;
	if (h->ctl_fd >= 0)
		close(h->ctl_fd);
	free(h);
}

DEFINE_CLEANUP_FUNC(struct fetch_handle, fetch_handle_free);

int fetch_proto_version(void)
{
	return FETCH_PROTO_VERSION;
}

/* Say hello (or hold) on a connected socket and build the handle from the answer. */
static int greet(int fd, bool hold, struct fetch_handle **ret, struct util_error *err)
{
	_cleanup_json_ json_t *req =
	    json_pack("{s:s,s:i}", "op", hold ? "hold" : "hello", "proto", FETCH_PROTO_VERSION);
	_cleanup_json_ json_t *reply = NULL;
	_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;
	const char *data = NULL, *sock = NULL;
	uint64_t pid = 0, proto = 1, timeout = 0;
	json_t *fill;
	int r;

	if (!req)
		return -ENOMEM;
	r = fetch_proto_call(fd, req, -1, &reply, NULL, err);
	if (r == -EPROTO || (r >= 0 && (util_json_get_u64(reply, "proto", &proto) < 0 ||
					proto != FETCH_PROTO_VERSION))) {
		/* A daemon of another version: it keeps serving its mounts; we never talk to it. */
		char theirs[32] = "unknown";
		const char *said =
		    err ? strstr(err->message, "speaks control protocol version ") : NULL;
		unsigned v;

		if (r != -EPROTO)
			snprintf(theirs, sizeof(theirs), "%llu", (unsigned long long)proto);
		else if (said && sscanf(said, "speaks control protocol version %u", &v) == 1)
			snprintf(theirs, sizeof(theirs), "%u", v); /* (its refusal names it) */
		return util_err_set(
		    err, -EPROTO,
		    "the running daemon of this image was started by another version of "
		    "lazyerofs (control protocol %s, this one speaks %d); unmount the image's "
		    "mounts so that it leaves, then mount again",
		    theirs, FETCH_PROTO_VERSION);
	}
	if (r < 0)
		return r;
	if (util_json_get_string(reply, "data_path", &data) < 0 ||
	    util_json_get_string(reply, "socket", &sock) < 0 ||
	    util_json_get_u64(reply, "pid", &pid) < 0)
		return -EBADMSG;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ctl_fd = fd;
	h->pid = (pid_t)pid;
	h->holding = hold;
	(void)util_json_get_u64(reply, "timeout_ms", &timeout);
	h->timeout_ms = timeout;
	(void)util_json_get_u64(reply, "size", &h->size);
	h->timeout_chosen = json_is_true(json_object_get(reply, "timeout_chosen"));
	{
		const char *net = "";
		json_t *others = json_object_get(reply, "others");

		(void)util_json_get_string(reply, "net", &net);
		snprintf(h->net, sizeof(h->net), "%s", net);
		h->others = json_is_integer(others) ? (int)json_integer_value(others) : -1;
	}
	fill = json_object_get(reply, "prefetch_all");
	h->prefetch_all = json_is_boolean(fill) ? json_is_true(fill) : -1;
	if (snprintf(h->data_path, sizeof(h->data_path), "%s", data) >= (int)sizeof(h->data_path) ||
	    snprintf(h->socket_path, sizeof(h->socket_path), "%s", sock) >=
		(int)sizeof(h->socket_path)) {
		h->ctl_fd = -1;
		return -ENAMETOOLONG;
	}
	*ret = TAKE_PTR(h);
	return 0;
}

static int call(struct fetch_handle *h, json_t *req, int pass_fd, json_t **ret,
		struct util_error *err);

/* A mount or fetch that joins a running daemon gets that daemon's settings (it serves every
 * mount of the image at once): another cache directory, way to the registry, or timeout= than
 * one a mount chose is refused, in words; a timeout= no mount chose becomes ours;
 * prefetch=all is passed on. */
static int check_joined(const struct fetch_config *cfg, int cache_dirfd, struct fetch_handle *h,
			struct util_error *err)
{
	_cleanup_json_ json_t *req = NULL, *reply = NULL;
	char root[PATH_MAX], net[OCI_OPTIONS_NET_ID_LEN + 1], *slash;
	struct stat ours, theirs;
	bool other;
	int r;

	/* <cache>/sha256/<key>: its directory against ours (cache_dirfd: <cache>/sha256) */
	snprintf(root, sizeof(root), "%s", h->data_path);
	slash = strrchr(root, '/');
	if (slash)
		*slash = 0;
	other = slash && root[0] == '/' && fstat(cache_dirfd, &ours) == 0 &&
		stat(root, &theirs) == 0 && !util_same_file(&ours, &theirs);
	slash = strrchr(root, '/');
	if (other && slash && slash != root) {
		*slash = 0;
		return util_err_set(
		    err, -EBUSY,
		    "the image is being served from the cache directory '%s' (for its mounts "
		    "there); use cache=%s too, or unmount them first",
		    root, root);
	}
	if (h->size && h->size != cfg->blob.size) {
		/* One digest, one size: a manifest that says otherwise is wrong (it mounted, the
		 * daemon's size serving it, while another mount kept the daemon; refused
		 * without one). A URL source's object changed under its daemon. */
		if (cfg->blob.digest[0])
			return util_err_set(
			    err, -EBADMSG,
			    "the manifest gives blob %s as %llu bytes; its running daemon (for "
			    "other mounts) serves it with %llu: the manifest is wrong",
			    cfg->blob.digest, (unsigned long long)cfg->blob.size,
			    (unsigned long long)h->size);
		return util_err_set(err, -EBADMSG,
				    "the object now has %llu bytes; its running daemon (for other "
				    "mounts) serves it with %llu: unmount them first",
				    (unsigned long long)cfg->blob.size,
				    (unsigned long long)h->size);
	}
	if (h->net[0] && cfg->opts && oci_options_net_id(cfg->opts, net) == 0 &&
	    strcmp(net, h->net) != 0) {
		return util_err_set(
		    err, -EBUSY,
		    "the image's running daemon reaches the registry with other settings (proxy, "
		    "no-proxy, CA, user name or hosts.toml's server: the configuration changed "
		    "since its first mount, or this one's -o options differ); unmount its mounts "
		    "first, or mount with the same settings");
	}
	if (cfg->timeout_given && h->timeout_ms && h->timeout_ms != cfg->timeout_ms &&
	    h->timeout_chosen) {
		return util_err_set(
		    err, -EBUSY,
		    "the image's running daemon has timeout=%llu, as a mount of it asked (it "
		    "serves all its mounts); mount with that timeout, or unmount them first",
		    (unsigned long long)((h->timeout_ms + 999) / 1000));
	}
	/* No mount chose one (the default, or a `lazyerofs fetch`'s): ours it is. */
	if (cfg->timeout_given && h->timeout_ms && !h->timeout_chosen) {
		_cleanup_json_ json_t *treq = NULL, *trep = NULL;

		treq = json_pack("{s:s,s:I}", "op", "timeout", "timeout_ms",
				 (json_int_t)cfg->timeout_ms);
		if (!treq)
			return -ENOMEM;
		r = call(h, treq, -1, &trep, err);
		if (r < 0)
			return r;
		h->timeout_ms = cfg->timeout_ms;
		h->timeout_chosen = true;
	}
	if (!cfg->prefetch_all || h->prefetch_all != 0)
		return 0;
	req = json_pack("{s:s}", "op", "prefetch_all");
	if (!req)
		return -ENOMEM;
	r = call(h, req, -1, &reply, err);
	if (r >= 0)
		h->prefetch_all = 1;
	return r;
}

static int dir_error(const char *what, const char *path, int r, struct util_error *err)
{
	if (r == -EPERM)
		return util_err_set(
		    err, r, "%s '%s' must be a directory owned by root with mode 0700", what, path);
	return util_err_set(err, r, "%s '%s': %s", what, path, strerror(-r));
}

/* How long a daemon of another version is waited for to leave before a mount gives up. */
#define OTHER_VERSION_WAIT_MS 5000

int fetch_daemon_ensure(const struct fetch_config *cfg, struct fetch_handle **ret,
			struct util_error *err)
{
	_cleanup_close_ int cache_dirfd = -1, run_dirfd = -1;
	char sock[PATH_MAX];
	uint64_t deadline;
	bool spawned = false;
	int r;

	util_err_clear(err);
	if (!cfg->cache_dir || !cfg->run_dir || cfg->cache_dir[0] != '/' ||
	    cfg->run_dir[0] != '/' || !cache_key_valid(cfg->blob.cache_key) || cfg->blob.size == 0 ||
	    !cfg->ref) {
		return util_err_set(err, -EINVAL, "invalid daemon configuration");
	}
	r = cache_dir_open(cfg->cache_dir, &cache_dirfd);
	if (r < 0)
		return dir_error("cache directory", cfg->cache_dir, r, err);
	r = util_open_private_dir(cfg->run_dir, &run_dirfd);
	if (r < 0)
		return dir_error("run directory", cfg->run_dir, r, err);
	if (snprintf(sock, sizeof(sock), "%s/daemon-%s.sock", cfg->run_dir, cfg->blob.cache_key) >=
	    (int)sizeof(sock)) {
		return util_err_set(err, -ENAMETOOLONG,
				    "run directory path '%s' is too long for a unix socket",
				    cfg->run_dir);
	}

	deadline = util_now_ms() + 30000;
	for (uint64_t other_since = 0;;) {
		_cleanup_close_ int fd = -1, lock = -1;
		pid_t pid;

		r = connect_unix(sock, &fd);
		if (r >= 0) {
			r = greet(fd, true, ret, err);
			if (r >= 0) {
				fd = -1; /* now owned by the handle */
				r = check_joined(cfg, cache_dirfd, *ret, err);
				if (r == -EBUSY && (*ret)->others == 0 &&
				    util_now_ms() < deadline) {
					/* A daemon no mount uses any more, on its way out (a umount
					 * right before): a new one of ours once it is gone. */
					fetch_handle_free(*ret);
					*ret = NULL;
					util_err_clear(err);
					util_sleep_ms(50);
					continue;
				}
				if (r < 0) {
					fetch_handle_free(*ret);
					*ret = NULL;
				}
				return r;
			}
			if (r == -EPROTO) {
				/* A daemon of another version. One whose last mount was just
				 * unmounted (the remedy the message gives) leaves within a second
				 * or so: waited for, a while, before the refusal stands. */
				if (!other_since)
					other_since = util_now_ms();
				if (util_now_ms() - other_since >= OTHER_VERSION_WAIT_MS)
					return r;
				util_err_clear(err);
				util_sleep_ms(100);
				continue;
			}
			/* The daemon is leaving (it stopped taking holds) or its worker is being
			 * replaced: try again shortly. */
		} else if (r != -ENOENT && r != -ECONNREFUSED) {
			return util_err_set(err, r, "connecting to the daemon at '%s': %s", sock,
					    strerror(-r));
		}
		if (util_now_ms() > deadline) {
			return util_err_set(
			    err, -ETIMEDOUT,
			    "the daemon of cache entry %s did not answer within 30 s; see "
			    "%s/daemon-%s.log",
			    cfg->blob.cache_key, cfg->run_dir, cfg->blob.cache_key);
		}
		if (r < 0 && !spawned) {
			r = cache_entry_lock(cache_dirfd, cfg->blob.cache_key, false, &lock);
			if (r == 0) {
				/* Nobody serves the entry and nobody is starting to: start it. */
				r = fetch_spawn(cfg, cache_dirfd, run_dirfd, TAKE_FD(lock), &pid,
						err);
				if (r < 0)
					return r;
				spawned = true;
				continue;
			}
			if (r != -EWOULDBLOCK) {
				return util_err_set(err, r, "locking cache entry %s: %s",
						    cfg->blob.cache_key, strerror(-r));
			}
		}
		spawned = false; /* a daemon we started and cannot reach may have left: retry */
		util_sleep_ms(20);
	}
}

int fetch_connect(const char *socket_path, struct fetch_handle **ret)
{
	return fetch_connect_timeout(socket_path, 0, ret);
}

int fetch_connect_timeout(const char *socket_path, uint64_t timeout_ms, struct fetch_handle **ret)
{
	_cleanup_close_ int fd = -1;
	int r;

	r = connect_unix(socket_path, &fd);
	if (r >= 0 && timeout_ms) {
		struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
				     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};

		if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return -errno;
	}
	if (r == -ECONNREFUSED && fetch_socket_is_stale(socket_path)) {
		/* Whoever finds a dead daemon's socket removes it. */
		(void)unlink(socket_path);
		return r;
	}
	if (r < 0)
		return r;
	r = greet(fd, false, ret, NULL);
	if (r < 0)
		return r;
	fd = -1;
	return 0;
}

/* The worker serving a handle's connection can be replaced after a crash: reconnect to the
 * daemon's stable socket (and hold it again if the handle did). */
static int reconnect(struct fetch_handle *h)
{
	struct fetch_handle *n = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	for (int i = 0; i < 100; i++) {
		r = connect_unix(h->socket_path, &fd);
		if (r >= 0)
			break;
		util_sleep_ms(50);
	}
	if (r < 0)
		return r;
	r = greet(fd, h->holding, &n, NULL);
	if (r < 0)
		return r;
	fd = -1;
	close(h->ctl_fd);
	h->ctl_fd = n->ctl_fd;
	n->ctl_fd = -1;
	fetch_handle_free(n);
	return 0;
}

static bool conn_lost(int r)
{
	return r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN;
}

static int call_fd(struct fetch_handle *h, json_t *req, int pass_fd, json_t **ret, int *ret_fd,
		   struct util_error *err)
{
	int r = fetch_proto_call(h->ctl_fd, req, pass_fd, ret, ret_fd, err);

	for (int i = 0; i < 3 && conn_lost(r); i++) {
		if (reconnect(h) < 0)
			break;
		r = fetch_proto_call(h->ctl_fd, req, pass_fd, ret, ret_fd, err);
	}
	if (conn_lost(r))
		util_err_set(err, r, "the daemon (pid %d) went away", (int)h->pid);
	return r;
}

static int call(struct fetch_handle *h, json_t *req, int pass_fd, json_t **ret,
		struct util_error *err)
{
	return call_fd(h, req, pass_fd, ret, NULL, err);
}

/* A list of ranges as the daemon takes it: one string, "OFF LEN OFF LEN ..." (decimal). As
 * an array of [offset, length] pairs, a mount's 100,000 ranges made the daemon a JSON tree of
 * 20 MB, most of its memory (control.c: parse_ranges). */
static json_t *ranges_json(const struct util_extent *v, size_t n)
{
	struct util_buf b = UTIL_BUF_INIT(FETCH_LINE_MAX);
	json_t *s = NULL;

	for (size_t i = 0; i < n; i++)
		if (util_buf_appendf(&b, "%s%" PRIu64 " %" PRIu64, i ? " " : "", v[i].offset,
				     v[i].length) < 0)
			goto out;
	s = json_stringn(b.data ? (const char *)b.data : "", b.len);
out:
	util_buf_free(&b);
	return s;
}

/* A request carrying ranges (ensure, pin), in lines of at most ENSURE_BATCH of them; what is
 * needed (ensure only) goes with the first line, whole. */
static int send_ranges(struct fetch_handle *h, const char *op, const struct util_extent *v,
		       size_t n, const struct util_extent *need, size_t nneed,
		       struct util_error *err)
{
	size_t at = 0;

	if (!n && !(need && nneed))
		return 0;
	do { /* (nothing to fetch but a need to tell: one request without ranges) */
		size_t m = MIN(n - at, (size_t)ENSURE_BATCH);
		_cleanup_json_ json_t *req = json_pack("{s:s}", "op", op), *reply = NULL;
		int r;

		if (!req ||
		    json_object_set_new(req, "ranges", ranges_json(v ? v + at : NULL, m)) < 0)
			return -ENOMEM;
		if (at == 0 && need &&
		    json_object_set_new(req, "need",
					ranges_json(need, MIN(nneed, (size_t)FETCH_NEED_MAX))) < 0)
			return -ENOMEM;
		r = call(h, req, -1, &reply, err);
		if (r < 0)
			return r;
		at += m;
	} while (at < n);
	return 0;
}

int fetch_ensure_needed(struct fetch_handle *h, const struct util_extent *v, size_t n,
			const struct util_extent *need, size_t nneed, struct util_error *err)
{
	return send_ranges(h, "ensure", v, n, need, nneed, err);
}

int fetch_ensure_ranges(struct fetch_handle *h, const struct util_extent *v, size_t n,
			struct util_error *err)
{
	return fetch_ensure_needed(h, v, n, NULL, 0, err);
}

int fetch_pin(struct fetch_handle *h, const struct util_extent *v, size_t n, struct util_error *err)
{
	return send_ranges(h, "pin", v, n, NULL, 0, err);
}

int fetch_connect_entry(const char *run_dir, const char *key, uint64_t timeout_ms,
			struct fetch_handle **ret)
{
	char path[PATH_MAX];

	if (!cache_key_valid(key) ||
	    snprintf(path, sizeof(path), "%s/daemon-%s.sock", run_dir, key) >= (int)sizeof(path))
		return -EINVAL;
	return fetch_connect_timeout(path, timeout_ms, ret);
}

int fetch_data_fd(struct fetch_handle *h, int *ret_fd, struct util_error *err)
{
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", "data_fd"), *reply = NULL;
	_cleanup_close_ int fd = -1;
	struct stat a, b;
	int r;

	if (!req)
		return -ENOMEM;
	r = call_fd(h, req, -1, &reply, &fd, err);
	if (r < 0)
		return r;
	/* It must be the entry's data file, for reading only: anything else is a daemon bug. */
	if (fd < 0 || fstat(fd, &a) < 0 || stat(h->data_path, &b) < 0 || !S_ISREG(a.st_mode) ||
	    !util_same_file(&a, &b) || (fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY) {
		return util_err_set(err, -EBADMSG, "the daemon passed no read-only fd of '%s'",
				    h->data_path);
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int fetch_attach(struct fetch_handle *h, uint64_t mnt_id, int root_fd, const char *mountpoint,
		 const char *source, const char *state_file, const char *state_text)
{
	_cleanup_json_ json_t *req = NULL, *reply = NULL;

	req = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s}", "op", "attach", "mnt_id", (json_int_t)mnt_id,
			"mountpoint", mountpoint, "source", source ? source : "", "state",
			state_file ? state_file : "", "state_text", state_text ? state_text : "");
	if (!req)
		return -ENOMEM;
	return call(h, req, root_fd, &reply, NULL);
}

int fetch_detach(struct fetch_handle *h, uint64_t mnt_id)
{
	_cleanup_json_ json_t *req = NULL, *reply = NULL;

	req = json_pack("{s:s,s:I}", "op", "detach", "mnt_id", (json_int_t)mnt_id);
	if (!req)
		return -ENOMEM;
	return call(h, req, -1, &reply, NULL);
}

static uint64_t getu(json_t *o, const char *k)
{
	uint64_t v = 0;

	(void)util_json_get_u64(o, k, &v);
	return v;
}

void fetch_status_parse(json_t *reply, struct fetch_status *ret)
{
	const char *digest = "", *state = "running";

	*ret = (struct fetch_status){0};
	(void)util_json_get_string(reply, "digest", &digest);
	(void)util_json_get_string(reply, "state", &state);
	snprintf(ret->digest, sizeof(ret->digest), "%s", digest);
	snprintf(ret->state, sizeof(ret->state), "%s", state);
	ret->size = getu(reply, "size");
	ret->present_bytes = getu(reply, "present_bytes");
	ret->fetched_bytes = getu(reply, "fetched_bytes");
	ret->requests = getu(reply, "requests");
	ret->events = getu(reply, "events");
	ret->errors = getu(reply, "errors");
	ret->pid = (pid_t)getu(reply, "pid");
	ret->answers = getu(reply, "answers");
	ret->fast_answers = getu(reply, "fast_answers");
	ret->denied = getu(reply, "denied");
	ret->pending = getu(reply, "pending");
	ret->worker_pid = (pid_t)getu(reply, "worker_pid");
	ret->restarts = (unsigned)getu(reply, "restarts");
	ret->holder_restarts = (unsigned)getu(reply, "holder_restarts");
	ret->mounts = (unsigned)getu(reply, "mounts");
	ret->chunk_size = getu(reply, "chunk_size");
	ret->marked = json_is_true(json_object_get(reply, "marked"));
	ret->files = getu(reply, "files");
	ret->file_ranges = getu(reply, "file_ranges");
	ret->link_rtt_us = getu(reply, "link_rtt_us");
	ret->link_bytes_per_s = getu(reply, "link_bytes_per_s");
	snprintf(ret->profile_state, sizeof(ret->profile_state), "%s",
		 util_json_get_string(reply, "profile_state", &state) >= 0 ? state : "none");
	ret->profile_ranges = getu(reply, "profile_ranges");
	ret->profile_ranges_done = getu(reply, "profile_ranges_done");
	ret->profile_bytes = getu(reply, "profile_bytes");
	ret->profile_fetched_bytes = getu(reply, "profile_fetched_bytes");
	ret->profile_requests = getu(reply, "profile_requests");
	ret->profile_served = getu(reply, "profile_served");
	ret->profile_ms = getu(reply, "profile_ms");
	ret->recorded_ranges = getu(reply, "recorded_ranges");
	fetch_metrics_parse(reply, ret);
	ret->holds = (unsigned)getu(reply, "holds");
	ret->filling = json_is_true(json_object_get(reply, "filling"));
	ret->cache_disk_low = json_is_true(json_object_get(reply, "cache_disk_low"));
	ret->timeout_ms = getu(reply, "timeout_ms");
	ret->last_errno = -(int)MIN(getu(reply, "last_errno"), (uint64_t)4095);
	if (util_json_get_string(reply, "last_error", &state) >= 0)
		snprintf(ret->last_error, sizeof(ret->last_error), "%s", state);
	ret->trimmed_bytes = getu(reply, "trimmed_bytes");
	ret->pinned_units = getu(reply, "pinned_units");
	ret->trimmable = json_is_true(json_object_get(reply, "trimmable"));
	if (util_json_get_string(reply, "trim_blocked", &state) >= 0)
		snprintf(ret->trim_blocked, sizeof(ret->trim_blocked), "%s", state);
}

int fetch_status(struct fetch_handle *h, struct fetch_status *ret)
{
	return fetch_status_before_mount(h, ret, -1, NULL);
}

int fetch_status_before_mount(struct fetch_handle *h, struct fetch_status *ret, int data_fd,
			      struct util_error *err)
{
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", "status"), *reply = NULL;
	struct stat st;
	int r;

	if (!req)
		return -ENOMEM;
	if (data_fd >= 0) {
		if (fstat(data_fd, &st) < 0)
			return -errno;
		if (json_object_set_new(req, "before_mount", json_true()) < 0 ||
		    json_object_set_new(req, "dev", json_integer((json_int_t)st.st_dev)) < 0 ||
		    json_object_set_new(req, "ino", json_integer((json_int_t)st.st_ino)) < 0)
			return -ENOMEM;
	}
	r = call(h, req, -1, &reply, err);
	if (r < 0)
		return r;
	fetch_status_parse(reply, ret);
	return 0;
}

int fetch_trim(struct fetch_handle *h, uint64_t bytes, uint64_t cold_ms, uint64_t *ret_freed,
	       char *why, size_t why_len, struct util_error *err)
{
	_cleanup_json_ json_t *req = NULL, *reply = NULL;
	const char *w = NULL;
	int r;

	req = json_pack("{s:s,s:I}", "op", "trim", "bytes",
			(json_int_t)MIN(bytes, (uint64_t)INT64_MAX));
	if (!req ||
	    (cold_ms && json_object_set_new(req, "cold_ms", json_integer((json_int_t)cold_ms)) < 0))
		return -ENOMEM;
	r = call(h, req, -1, &reply, err);
	if (r < 0)
		return r;
	*ret_freed = getu(reply, "freed");
	if (why_len)
		snprintf(why, why_len, "%s", util_json_get_string(reply, "why", &w) >= 0 ? w : "");
	return 0;
}

int fetch_fill(struct fetch_handle *h, struct util_error *err)
{
	_cleanup_json_ json_t *req = json_pack("{s:s}", "op", "fill"), *reply = NULL;

	if (!req)
		return -ENOMEM;
	return call(h, req, -1, &reply, err);
}

void fetch_handle_release(struct fetch_handle *h, uint64_t wait_ms)
{
	struct fetch_status st;
	uint64_t deadline = util_now_ms() + wait_ms, now;
	int pidfd = -1;

	if (!h)
		return;
	if (wait_ms && fetch_status(h, &st) >= 0 && st.mounts == 0 && st.pending == 0 &&
	    st.holds <= (h->holding ? 1u : 0u))
		pidfd = fetch_pidfd_open(h->pid);
	fetch_handle_free(h);
	if (pidfd < 0)
		return;
	now = util_now_ms();
	if (now < deadline)
		(void)fetch_pidfd_wait(pidfd, -1, (int)MIN(deadline - now, (uint64_t)INT_MAX));
	close(pidfd);
}
