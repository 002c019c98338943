// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The worker's main loop: the control socket (root only, line-delimited JSON: hello, hold,
 * status, ensure, data_fd, attach, detach, files, profile_get, profile_replay, fill, pin,
 * trim) and the decision to leave: the daemon leaves when no superblock (mounts.c), no
 * holding connection, no waiting request and no trim uses the entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/files.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/extents.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

/* ---- connections -------------------------------------------------------------------------- */

struct conn {
	struct fetch_daemon *d;
	int fd;
	bool holding;
	bool filling; /* asked for the background fill: it lasts while the connection does */
};

/* The data file is gone from the cache directory (removed, or replaced by a new entry):
 * this daemon keeps serving the superblocks that use its inode, but a new mount must not
 * join it (it would open the name and find nothing, or another file). */
static bool entry_removed(struct fetch_daemon *d)
{
	struct stat a, b;

	if (fstat(d->entry->data_fd, &a) < 0)
		return false;
	if (a.st_nlink == 0)
		return true;
	if (stat(d->entry->data_path, &b) < 0)
		return errno == ENOENT;
	return !util_same_file(&a, &b);
}

static int reply_hello(struct conn *c)
{
	struct fetch_daemon *d = c->d;
	_cleanup_json_ json_t *o = json_pack(
	    "{s:b,s:i,s:i,s:i,s:s,s:s,s:s,s:I,s:b}", "ok", 1, "proto", FETCH_PROTO_VERSION, "pid",
	    (int)SH_LOAD(d->sh->holder_pid), "worker_pid", (int)getpid(), "data_path",
	    d->entry->data_path, "socket", d->sock2_path, "state",
	    fetch_state_name(__atomic_load_n(&d->sh->state, __ATOMIC_ACQUIRE)), "timeout_ms",
	    (json_int_t)d->pol.timeout_ms, "prefetch_all", d->pol.prefetch_all);
	char net[OCI_OPTIONS_NET_ID_LEN + 1];
	unsigned others;

	if (o && SH_LOAD(d->sh->timeout_chosen_ms))
		json_object_set_new(o, "timeout_chosen", json_true());
	/* The blob's size as its entry has it: a mount whose manifest says another must not join */
	if (o)
		json_object_set_new(o, "size", json_integer((json_int_t)d->cfg.blob.size));
	/* Its users besides this connection: none, and it is about to leave. */
	pthread_mutex_lock(&d->lock);
	others = d->holds - (c->holding ? 1 : 0) + fetch_rec_count(d);
	pthread_mutex_unlock(&d->lock);
	if (o)
		json_object_set_new(o, "others", json_integer(others));
	/* How it reaches the registry: a mount with other settings must not join silently. */
	if (o && oci_options_net_id(&d->oopts, net) == 0)
		json_object_set_new(o, "net", json_string(net));

	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}

/* One decimal number of a range list at *p (before end), and the single space after it when
 * more follows: false when there is no number there, it overflows, or the space is not one. */
static bool range_number(const char **p, const char *end, uint64_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;

	for (; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(**p - '0');
	}
	if (*p == s)
		return false;
	if (*p < end) {
		if (**p != ' ' || *p + 1 == end)
			return false;
		(*p)++;
	}
	*ret = v;
	return true;
}

/* A range list within the blob, "OFF LEN OFF LEN ..." (client.c: ranges_json), appended to
 * ext; -errno with a reply sent. op: the request, key: its member, for the messages. */
static int parse_ranges(struct conn *c, const char *op, json_t *list, const char *key,
			struct util_extents *ext)
{
	struct fetch_daemon *d = c->d;
	const char *p, *end;

	if (!json_is_string(list)) {
		fetch_reply_error(
		    c->fd, EINVAL,
		    "%s: '%s' must be a string of offsets and lengths, \"OFF LEN ...\"", op, key);
		return -EINVAL;
	}
	p = json_string_value(list);
	end = p + json_string_length(list);
	for (size_t i = 0; p < end; i++) {
		uint64_t off, len;

		if (!range_number(&p, end, &off) || p >= end || !range_number(&p, end, &len)) {
			fetch_reply_error(c->fd, EINVAL,
					  "%s: '%s' is malformed at range %zu (\"OFF LEN ...\", "
					  "decimal, one space apart)",
					  op, key, i);
			return -EINVAL;
		}
		if (i >= FETCH_ENSURE_MAX_RANGES) {
			fetch_reply_error(c->fd, EINVAL, "%s: '%s' has more than %u ranges", op,
					  key, FETCH_ENSURE_MAX_RANGES);
			return -EINVAL;
		}
		if (!util_range_within(off, len, d->cfg.blob.size)) {
			fetch_reply_error(c->fd, EINVAL, "%s: %s %zu is outside the blob", op, key,
					  i);
			return -EINVAL;
		}
		if (util_extents_add(ext, off, len) < 0) {
			fetch_reply_error(c->fd, ENOMEM, "%s: too many ranges", op);
			return -ENOMEM;
		}
	}
	return 0;
}

/* Note ranges in the record of first accesses, in their order. */
static void record_ranges(struct fetch_daemon *d, const struct util_extent *v, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		uint64_t first, nblk;

		if (cache_blocks_of(v[k].offset, v[k].length, d->cfg.blob.size, &first, &nblk))
			fetch_profile_note(d, first, nblk);
	}
}

int fetch_ensure_start(struct fetch_daemon *d, struct fetch_ensure *en, const struct util_extent *v,
		       size_t n, bool paced)
{
	int q;

	*en = (struct fetch_ensure){.req = {.kind = FETCH_REQ_ENSURE,
					    .fd = -1,
					    .slot = -1,
					    .v = v,
					    .n = n,
					    .paced = paced,
					    .owner = en}};
	if (n == 0)
		return 1;
	while (d->nensure >= FETCH_MAX_ENSURE && !d->stopping && !d->leaving)
		pthread_cond_wait(&d->done_cond, &d->lock);
	q = fetch_sched_add(&d->sched, &en->req, util_now_ms());
	if (q != 0)
		return q;
	d->nensure++;
	fetch_kick(d);
	return 0;
}

int fetch_ensure_end(struct fetch_daemon *d, struct fetch_ensure *en)
{
	d->nensure--;
	pthread_cond_broadcast(&d->done_cond);
	return en->req.result;
}

/* Has the peer of a control connection gone (closed, or killed)? */
static bool peer_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

int fetch_ensure_for(struct fetch_daemon *d, const struct util_extent *v, size_t n, int peer_fd)
{
	struct fetch_ensure en;
	int r;

	pthread_mutex_lock(&d->lock);
	r = fetch_ensure_start(d, &en, v, n, false);
	if (r == 0) {
		while (!en.done) {
			struct timespec ts;

			util_deadline_ts(&ts, 200);
			pthread_cond_timedwait(&d->done_cond, &d->lock, &ts);
			/* Asked for by a client that is gone (a mount interrupted): its request
			 * ends now, as at its deadline, not when the fetch gives up. */
			if (!en.done && peer_fd >= 0 && en.req.deadline_ms > 1 &&
			    peer_gone(peer_fd)) {
				en.req.deadline_ms = 1;
				fetch_kick(d);
			}
		}
		r = fetch_ensure_end(d, &en);
	}
	pthread_mutex_unlock(&d->lock);
	return MIN(r, 0);
}

int fetch_ensure(struct fetch_daemon *d, const struct util_extent *v, size_t n)
{
	return fetch_ensure_for(d, v, n, -1);
}

/* *reqp is freed once read: not held while the fetch runs. */
static int do_ensure(struct conn *c, json_t **reqp)
{
	struct fetch_daemon *d = c->d;
	struct util_extents ext;
	json_t *req = *reqp, *need = json_object_get(req, "need");
	bool had_need = need;
	size_t n;
	int r = 0;

	util_extents_init(&ext);
	r = parse_ranges(c, "ensure", json_object_get(req, "ranges"), "ranges", &ext);
	if (r < 0) {
		util_extents_free(&ext);
		return 0; /* answered */
	}
	/* What a mount's metadata walk needs goes into the record too: a profile that starts
	 * with it lets the replay bring the metadata a later mount walks in one stream, ahead
	 * of the walk's rounds. The walk says what it needs ("need", in its order) apart from
	 * what it fetches (gaps bridged for the link it was on, which another link may not
	 * want). */
	if (need) {
		struct util_extents nv;

		util_extents_init(&nv);
		r = parse_ranges(c, "ensure", need, "need", &nv);
		if (r >= 0)
			record_ranges(d, nv.v, nv.n);
		util_extents_free(&nv);
		if (r < 0) {
			util_extents_free(&ext);
			return 0;
		}
	}
	json_decref(req);
	*reqp = NULL;
	util_extents_merge(&ext, 0);
	if (!had_need)
		record_ranges(d, ext.v, ext.n);
	if (ext.n == 0) {
		util_extents_free(&ext);
		goto ok;
	}
	n = ext.n;
	r = fetch_ensure_for(d, ext.v, n, c->fd);
	util_extents_free(&ext);
	if (r < 0) {
		char why[sizeof(d->last_error)];

		/* What the registry client said of the last failed fetch, when it failed so. */
		pthread_mutex_lock(&d->lock);
		snprintf(why, sizeof(why), "%s",
			 d->last_errno == r && d->last_error[0] ? d->last_error : strerror(-r));
		pthread_mutex_unlock(&d->lock);
		return fetch_reply_error(c->fd, r, "fetching %zu range(s) failed: %s (see %s)", n,
					 why, d->log_path);
	}
ok : {
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}
}

/* A mount's map of the image's metadata: never trimmed (trim.c). */
static int do_pin(struct conn *c, json_t *req)
{
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);
	struct util_extents ext;
	int r;

	util_extents_init(&ext);
	r = parse_ranges(c, "pin", json_object_get(req, "ranges"), "ranges", &ext);
	if (r < 0) {
		util_extents_free(&ext);
		return 0; /* answered */
	}
	util_extents_merge(&ext, 0);
	fetch_trim_pin(c->d, ext.v, ext.n);
	util_extents_free(&ext);
	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}

/* The pre-mark read-only data fd (root clients only, like every request): the client reads
 * through it only what an ensure confirmed present. */
static int do_data_fd(struct conn *c)
{
	_cleanup_json_ json_t *o = NULL;

	if (c->d->rd_fd < 0)
		return fetch_reply_error(c->fd, EBADF, "data_fd: the daemon has no pre-mark read fd");
	o = json_pack("{s:b}", "ok", 1);
	return o ? fetch_proto_send(c->fd, o, c->d->rd_fd) : -ENOMEM;
}

/* The background fill (prefetch=all) runs while the daemon was started with it or any
 * connection asks for it. Under d->lock. */
static void fill_update(struct fetch_daemon *d)
{
	bool want = d->pol.prefetch_all || d->fills > 0;

	if (d->sched.pol.prefetch_all != want) {
		d->sched.pol.prefetch_all = want;
		log_info("background fill %s", want ? "started" : "stopped");
		fetch_kick(d);
	}
}

/* A mount with prefetch=all that joined this daemon: the background fill runs from now on,
 * as if the daemon had been started with it (a replacement worker too). */
static int do_prefetch_all(struct conn *c)
{
	struct fetch_daemon *d = c->d;
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

	SH_STORE(d->sh->prefetch_all, 1);
	pthread_mutex_lock(&d->lock);
	d->pol.prefetch_all = true;
	fill_update(d);
	pthread_mutex_unlock(&d->lock);
	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}

/* A mount with timeout= that joined a daemon whose deadline no mount chose (the default, or
 * a `lazyerofs fetch`'s): from now on every read gets this one. */
static int do_timeout(struct conn *c, json_t *req)
{
	struct fetch_daemon *d = c->d;
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);
	uint64_t ms = 0, was;

	if (util_json_get_u64(req, "timeout_ms", &ms) < 0 || ms < 1000 || ms > 86400000)
		return fetch_reply_error(c->fd, EINVAL,
					 "timeout: 'timeout_ms' must be 1000..86400000");
	pthread_mutex_lock(&d->lock);
	was = SH_LOAD(d->sh->timeout_chosen_ms);
	if (!was || was == ms) {
		SH_STORE(d->sh->timeout_chosen_ms, ms);
		d->pol.timeout_ms = d->oopts.timeout_ms = ms;
		fetch_sched_set_timeout(&d->sched, ms);
		oci_client_set_timeout(d->client, ms); /* one request ends within a read's time */
	}
	pthread_mutex_unlock(&d->lock);
	if (was && was != ms)
		return fetch_reply_error(c->fd, EBUSY, "timeout: a mount chose %" PRIu64 " ms",
					 was);
	log_info("per-read deadline: %" PRIu64 " ms (a mount's timeout=)", ms);
	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}

/* `lazyerofs fetch`: fetch every missing block in the background for as long as this
 * connection lasts; the housekeeper verifies the entry once it is complete. */
static int do_fill(struct conn *c)
{
	struct fetch_daemon *d = c->d;
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

	pthread_mutex_lock(&d->lock);
	if (!c->filling) {
		c->filling = true;
		d->fills++;
	}
	fill_update(d);
	pthread_mutex_unlock(&d->lock);
	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}

static int do_attach(struct conn *c, json_t *req, int fd)
{
	struct fetch_daemon *d = c->d;
	const char *mp = "", *src = "", *state = "", *text = "";
	struct fetch_mount_rec *m;
	uint64_t mnt_id = 0;
	char path[64];
	struct stat st;
	int wd = -1, r;

	(void)util_json_get_u64(req, "mnt_id", &mnt_id);
	(void)util_json_get_string(req, "mountpoint", &mp);
	(void)util_json_get_string(req, "source", &src);
	(void)util_json_get_string(req, "state", &state);
	(void)util_json_get_string(req, "state_text", &text);
	if (strlen(state) >= sizeof(m->state) || strspn(state, "0123456789") != strlen(state))
		return fetch_reply_error(c->fd, EINVAL, "attach: 'state' must be a state file's name");
	if (fd < 0)
		return fetch_reply_error(c->fd, EINVAL, "attach: the mountpoint's fd was not passed");
	if (fstat(fd, &st) < 0)
		return fetch_reply_error(c->fd, errno, "attach: %s", strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = fetch_watch_root(d, path, &wd);
	if (r < 0)
		return fetch_reply_error(c->fd, r, "attach: watching the mount: %s", strerror(-r));
	pthread_mutex_lock(&d->lock);
	m = fetch_rec_by_dev(d, (uint64_t)st.st_dev);
	if (!m)
		m = fetch_rec_new(d);
	if (m) {
		m->wd = wd;
		m->dev = (uint64_t)st.st_dev;
		m->mnt_id = mnt_id;
		fetch_set_str(m->mountpoint, sizeof(m->mountpoint), mp);
		fetch_set_str(m->source, sizeof(m->source), src);
		fetch_set_str(m->state, sizeof(m->state), state);
		/* Whole or not at all: a cut text is no state file. */
		if (strlen(text) < sizeof(m->state_text))
			memcpy(m->state_text, text, strlen(text) + 1);
		else
			m->state_text[0] = 0;
		SH_STORE(d->sh->had_user, 1);
	}
	pthread_mutex_unlock(&d->lock);
	if (!m)
		return fetch_reply_error(c->fd, ENOSPC, "attach: too many mounts of one entry (%d)",
				   FETCH_MAX_MOUNTS);
	log_info("attached mount %" PRIu64 " at '%s'", mnt_id, mp);
	{
		_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

		return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
	}
}

static int reply_status(struct conn *c)
{
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

	if (!o)
		return -ENOMEM;
	fetch_fill_status(c->d, o, false);
	return fetch_proto_send(c->fd, o, -1);
}

/* A mount asks its status with before_mount right before the kernel mounts the entry, naming
 * the file it is about to mount (dev, ino). The daemon must be out of its caller's cgroup by
 * then, or a stop of the caller's unit in between would kill it under a live mount, whose reads
 * then get zeros (DESIGN fact 6); and the file must be this daemon's, still good: one set aside
 * meanwhile (bad) and a fresh entry made under its name would be mounted without the metadata
 * the walk made present. Returns 0 to go on, > 0 when refused (answered), < 0 on failure. */
static int before_mount(struct conn *c, json_t *req)
{
	struct fetch_daemon *d = c->d;
	uint64_t dev = 0, ino = 0;
	struct stat st;
	int r;

	if (!json_is_true(json_object_get(req, "before_mount")))
		return 0;
	fetch_left_caller_cgroup(d);
	if (util_json_get_u64(req, "dev", &dev) < 0 || util_json_get_u64(req, "ino", &ino) < 0)
		r = fetch_reply_error(c->fd, EBADMSG, "status before a mount: no dev and ino");
	else if (fstat(d->entry->data_fd, &st) < 0 || (uint64_t)st.st_dev != dev ||
		 (uint64_t)st.st_ino != ino)
		r = fetch_reply_error(c->fd, ESTALE,
				      "the cache file to mount is not this daemon's any more "
				      "(set aside or replaced meanwhile)");
	else if (SH_LOAD(d->sh->state) == FETCH_STATE_BAD || cache_entry_broken(d->entry))
		r = fetch_reply_error(c->fd, ESTALE, "the cache entry was set aside as bad");
	else
		return 0;
	return r < 0 ? r : 1;
}

static int do_detach(struct conn *c, json_t *req)
{
	struct fetch_daemon *d = c->d;
	uint64_t mnt_id = 0;
	bool found = false;

	(void)util_json_get_u64(req, "mnt_id", &mnt_id);
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < FETCH_MOUNTS_USED(d->sh) && mnt_id; i++) {
		struct fetch_mount_rec *m = &d->sh->mounts[i];

		/* The superblock's own end (IN_UNMOUNT) removes the record; a detached
		 * mount may still be in use (umount -l with open files). */
		if (m->used && m->mnt_id == mnt_id) {
			m->mnt_id = 0;
			m->state_text[0] = 0; /* its state file is gone with the command */
			found = true;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (found)
		log_info("detached mount %" PRIu64, mnt_id);
	{
		_cleanup_json_ json_t *o = json_pack("{s:b,s:b}", "ok", 1, "found", found);

		return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
	}
}

/* A request line this long gives its memory back once answered (conn_thread). */
#define CONTROL_TRIM_LINE (256u << 10)

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct fetch_daemon *d = c->d;
	struct fetch_linebuf lb = {0};
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	bool trim = false;

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || cred.uid != 0) {
		fetch_reply_error(c->fd, EPERM, "only root may talk to the daemon");
		goto out;
	}
	for (;;) {
		_cleanup_free_ char *line = NULL;
		_cleanup_json_ json_t *req = NULL;
		_cleanup_close_ int pfd = -1;
		const char *op = NULL;
		uint64_t proto = 0;
		size_t len;
		int r;

		/* A large request (a mount's metadata ranges) or a file index freed megabytes in
		 * this thread's malloc arena, under what lives on: given back to the system, not
		 * kept resident (a mount of 500,000 inodes left the worker 47 MiB, 22 after). */
		if (trim) {
			malloc_trim(0);
			trim = false;
		}
		r = fetch_proto_recv_line(c->fd, &lb, FETCH_LINE_MAX, &line, &len, &pfd);
		if (r < 0)
			break;
		trim = len >= CONTROL_TRIM_LINE;
		r = util_json_parse(line, len, FETCH_LINE_MAX, &req);
		free(line); /* (the tree holds what it said) */
		line = NULL;
		if (r < 0 || util_json_get_string(req, "op", &op) < 0) {
			r = fetch_reply_error(c->fd, EBADMSG, "malformed request");
		} else if ((!strcmp(op, "hello") || !strcmp(op, "hold")) &&
			   (util_json_get_u64(req, "proto", &proto) < 0 ||
			    proto != FETCH_PROTO_VERSION)) {
			r = fetch_reply_error(c->fd, EPROTO,
					"this daemon speaks control protocol version %d: it was "
					"started by another version of lazyerofs",
					FETCH_PROTO_VERSION);
		} else if (!strcmp(op, "hello")) {
			r = reply_hello(c);
		} else if (!strcmp(op, "hold")) {
			bool removed = entry_removed(d);

			pthread_mutex_lock(&d->lock);
			if (removed && !SH_LOAD(d->sh->discovery_gone)) {
				/* New mounts must start a new daemon with a new entry. */
				log_info("the cache entry's data file was removed; new mounts get "
					 "a new daemon");
				fetch_unlink_discovery(d);
				SH_STORE(d->sh->discovery_gone, 1);
			}
			if (d->leaving || removed) {
				pthread_mutex_unlock(&d->lock);
				r = fetch_reply_error(c->fd, ESHUTDOWN,
						removed ? "the daemon's cache entry was removed"
							: "the daemon is leaving");
				break;
			}
			if (!c->holding)
				d->holds++;
			c->holding = true;
			SH_STORE(d->sh->had_user, 1);
			pthread_mutex_unlock(&d->lock);
			r = reply_hello(c);
		} else if (!strcmp(op, "status")) {
			r = before_mount(c, req);
			if (r == 0)
				r = reply_status(c);
		} else if (!strcmp(op, "ensure")) {
			r = do_ensure(c, &req);
		} else if (!strcmp(op, "data_fd")) {
			r = do_data_fd(c);
		} else if (!strcmp(op, "attach")) {
			r = do_attach(c, req, pfd);
		} else if (!strcmp(op, "prefetch_all")) {
			r = do_prefetch_all(c);
		} else if (!strcmp(op, "timeout")) {
			r = do_timeout(c, req);
		} else if (!strcmp(op, "detach")) {
			r = do_detach(c, req);
		} else if (!strcmp(op, "files")) {
			r = fetch_files_request(d, c->fd, pfd);
			trim = true;
		} else if (!strcmp(op, "profile_get")) {
			r = fetch_profile_get_request(d, c->fd);
		} else if (!strcmp(op, "profile_replay")) {
			r = fetch_profile_replay_request(d, c->fd, pfd);
		} else if (!strcmp(op, "fill")) {
			r = do_fill(c);
		} else if (!strcmp(op, "pin")) {
			r = do_pin(c, req);
		} else if (!strcmp(op, "trim")) {
			r = fetch_trim_request(d, c->fd, req);
		} else {
			r = fetch_reply_error(c->fd, EINVAL, "unknown request '%s'", op);
		}
		if (r < 0)
			break;
	}
out:
	fetch_linebuf_free(&lb);
	if (trim)
		malloc_trim(0);
	pthread_mutex_lock(&d->lock);
	if (c->holding)
		d->holds--;
	if (c->filling) {
		d->fills--;
		fill_update(d);
	}
	d->conns--;
	pthread_mutex_unlock(&d->lock);
	close(c->fd);
	free(c);
	return NULL;
}

static void accept_conn(struct fetch_daemon *d, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		struct conn *c;
		pthread_attr_t at;
		pthread_t t;
		bool full;

		if (fd < 0)
			return;
		pthread_mutex_lock(&d->lock);
		full = d->conns >= FETCH_MAX_CONNS;
		if (!full)
			d->conns++;
		pthread_mutex_unlock(&d->lock);
		c = full ? NULL : calloc(1, sizeof(*c));
		if (!c) {
			if (!full) {
				pthread_mutex_lock(&d->lock);
				d->conns--;
				pthread_mutex_unlock(&d->lock);
			}
			close(fd);
			continue;
		}
		c->d = d;
		c->fd = fd;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 256 << 10);
		if (pthread_create(&t, &at, conn_thread, c) != 0) {
			pthread_mutex_lock(&d->lock);
			d->conns--;
			pthread_mutex_unlock(&d->lock);
			close(fd);
			free(c);
		}
		pthread_attr_destroy(&at);
	}
}

/* ---- the loop ------------------------------------------------------------------------------- */

void fetch_control_loop(struct fetch_daemon *d)
{
	/* A replacement worker stays a while even unused: the clients of the one that died (a
	 * mount being made) connect again. */
	uint64_t not_before = util_now_ms() + (SH_LOAD(d->sh->restarts)
						   ? util_env_u64("LAZYEROFS_REPLACEMENT_STAY_MS",
								  FETCH_REPLACEMENT_STAY_MS)
						   : 0);
	bool term_logged = false;

	/* Superblocks that already use the file (a replacement worker, or a daemon restarted
	 * under live mounts). */
	fetch_mounts_rescan(d);
	for (;;) {
		struct pollfd pfd[5];
		unsigned np = 0, users;
		uint64_t now = util_now_ms(), wait = 200;
		bool rescan_soon = false;

		pfd[np++] = (struct pollfd){.fd = d->listen_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->listen2_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->ino_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->open_efd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->starter_fd, .events = POLLIN};
		for (size_t i = 0; i < ARRAY_SIZE(d->rescan_at); i++)
			if (d->rescan_at[i])
				wait = MIN(wait, d->rescan_at[i] > now ? d->rescan_at[i] - now : 0);
		if (poll(pfd, np, (int)wait) < 0 && errno != EINTR)
			log_error("poll: %m");
		now = util_now_ms();
		if (pfd[0].revents & POLLIN)
			accept_conn(d, d->listen_fd);
		if (pfd[1].revents & POLLIN)
			accept_conn(d, d->listen2_fd);
		if (pfd[2].revents & POLLIN)
			fetch_read_inotify(d);
		if (pfd[4].revents) { /* hung up (nothing is ever written) */
			close(d->starter_fd);
			d->starter_fd = -1;
		}
		fetch_run_dir_heal(d, now);
		fetch_ns_abandoned(d, now);
		if ((pfd[3].revents & POLLIN) && fetch_read_opens(d)) {
			/* Someone opened the data file: maybe a mount that never attaches. The
			 * mount appears in mountinfo only once mount(2) returns. */
			d->rescan_at[0] = now + 100;
			d->rescan_at[1] = now + 1000;
			d->rescan_at[2] = now + 5000;
		}
		for (size_t i = 0; i < ARRAY_SIZE(d->rescan_at); i++)
			if (d->rescan_at[i] && now >= d->rescan_at[i]) {
				d->rescan_at[i] = 0;
				fetch_mounts_rescan(d);
			}
		/* Someone opened the file within the last second and its mount may not be
		 * listed yet: do not leave before looking again -- unless whoever opened it has
		 * exited since (a mount that failed: a non-EROFS blob left its daemon 1-2 s). */
		rescan_soon = (d->rescan_at[0] || d->rescan_at[1]) && fetch_mount_may_come(d);

		pthread_mutex_lock(&d->lock);
		users = d->holds + fetch_rec_count(d) + (unsigned)d->sched.nreqs + d->nensure +
			d->trimming;
		pthread_mutex_unlock(&d->lock);
		if (fetch_term_requested() && users > 0 && !term_logged) {
			log_warning("SIGTERM: still used by %u superblock(s) or client(s); leaving "
				    "only when they are gone (readers would get zeros otherwise)",
				    users);
			term_logged = true;
		}
		if (users > 0 || now < not_before || rescan_soon)
			continue;
		if (!SH_LOAD(d->sh->had_user) && now - d->sh->started_ms < FETCH_GRACE_MS &&
		    d->starter_fd >= 0 && !fetch_term_requested())
			continue;
		/* A last look for a mount that is just being made; then stop taking holds, and
		 * unlink the discovery socket at once: a mount arriving from now on starts a new
		 * daemon (once we give the entry lock up) instead of joining one that leaves. */
		fetch_mounts_rescan(d);
		pthread_mutex_lock(&d->lock);
		users = d->holds + fetch_rec_count(d) + (unsigned)d->sched.nreqs + d->nensure +
			d->trimming;
		if (users == 0) {
			d->leaving = true;
			if (!SH_LOAD(d->sh->discovery_gone))
				fetch_unlink_discovery(d);
			SH_STORE(d->sh->discovery_gone, 1);
		}
		pthread_mutex_unlock(&d->lock);
		if (users == 0)
			break;
	}
	log_info("no superblock or client uses the entry any more");
	fetch_files_drop(d);
	fetch_profile_drop(d);
	(void)unlinkat(d->run_dirfd, d->sock2_name, 0);
	close(d->listen_fd);
	close(d->listen2_fd);
}
