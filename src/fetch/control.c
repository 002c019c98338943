// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The worker's main loop: the control socket (root only, line-delimited JSON: hello, hold,
 * status, ensure, data_fd, attach, detach, files), the superblocks that use the data file,
 * and the decision to leave.
 *
 * Lifetime (DESIGN fact 13): the daemon must outlive every EROFS superblock that reads the
 * data file. A count of FAN_OPEN/FAN_CLOSE_NOWRITE notifications cannot tell that reliably:
 * fanotify merges events of one process on one file while they wait in the queue (five
 * opens and three closes read back as one event with both bits). Instead each superblock is
 * watched with inotify on its root directory: IN_UNMOUNT arrives exactly when the superblock
 * is shut down — at umount, or after `umount -l` only once the last open file is closed —
 * and the watch does not keep the mount busy. Superblocks come from `attach` (an O_PATH fd of
 * the mountpoint, so any mount namespace works) and from /proc/self/mountinfo, rescanned
 * whenever a FAN_OPEN notification says someone opened the data file. Connections that
 * "hold" (a mount helper between ensure and attach) and waiting requests count as users too.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

static inline uint64_t get64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* ---- superblock records (all under d->lock) ------------------------------------------------ */

static struct fetch_mount_rec *rec_by_dev(struct fetch_daemon *d, uint64_t dev)
{
	for (size_t i = 0; i < FETCH_MAX_MOUNTS; i++)
		if (d->sh->mounts[i].used && d->sh->mounts[i].dev == dev)
			return &d->sh->mounts[i];
	return NULL;
}

static struct fetch_mount_rec *rec_new(struct fetch_daemon *d)
{
	for (size_t i = 0; i < FETCH_MAX_MOUNTS; i++)
		if (!d->sh->mounts[i].used) {
			d->sh->mounts[i] = (struct fetch_mount_rec){.used = 1, .wd = -1};
			return &d->sh->mounts[i];
		}
	return NULL;
}

static unsigned rec_count(struct fetch_daemon *d)
{
	unsigned n = 0;

	for (size_t i = 0; i < FETCH_MAX_MOUNTS; i++)
		n += d->sh->mounts[i].used ? 1 : 0;
	return n;
}

/* Watch the superblock whose root is `path` (a mountpoint, or /proc/self/fd/N). */
static int watch_root(struct fetch_daemon *d, const char *path, int *ret_wd)
{
	/* IN_UNMOUNT and IN_IGNORED come with any mask; IN_DELETE_SELF never fires on a
	 * read-only filesystem. */
	int wd = inotify_add_watch(d->ino_fd, path, IN_DELETE_SELF | IN_ONLYDIR);

	if (wd < 0)
		return -errno;
	*ret_wd = wd;
	return 0;
}

static void set_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* ---- mountinfo --------------------------------------------------------------------------- */

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* Look for erofs mounts of the data file in the mountinfo of `pid` (0: our own), and watch
 * the superblocks not known yet. Another namespace's paths are reached via /proc/PID/root. */
static void rescan_ns(struct fetch_daemon *d, pid_t pid)
{
	_cleanup_free_ char *text = NULL;
	char path[64], root[32] = "";
	char *save = NULL;
	size_t len;

	if (pid > 0) {
		snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
		snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	} else {
		snprintf(path, sizeof(path), "/proc/self/mountinfo");
	}
	if (util_read_file(AT_FDCWD, path, 16u << 20, 0, &text, &len) < 0)
		return;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[8], *sep, *after, *save2 = NULL;
		char where[PATH_MAX];
		unsigned maj, min, nf = 0;
		struct fetch_mount_rec *m;
		struct stat st;
		uint64_t dev;
		int wd = -1;

		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = 0;
		after = sep + 3;
		for (char *t = strtok_r(line, " ", &save2); t && nf < 6;
		     t = strtok_r(NULL, " ", &save2))
			f[nf++] = t;
		if (nf < 5 || sscanf(f[2], "%u:%u", &maj, &min) != 2)
			continue;
		save2 = NULL;
		f[6] = strtok_r(after, " ", &save2);		  /* fstype */
		f[7] = f[6] ? strtok_r(NULL, " ", &save2) : NULL; /* source */
		if (!f[6] || !f[7] || strcmp(f[6], "erofs") != 0)
			continue;
		unescape(f[7]);
		if (strcmp(f[7], d->entry->data_path) != 0)
			continue;
		dev = makedev(maj, min);
		pthread_mutex_lock(&d->lock);
		m = rec_by_dev(d, dev);
		pthread_mutex_unlock(&d->lock);
		if (m)
			continue;
		unescape(f[4]);
		if (snprintf(where, sizeof(where), "%s%s", root, f[4]) >= (int)sizeof(where))
			continue;
		/* Looking up the mountpoint reads no data (the root inode is in memory). */
		if (stat(where, &st) < 0 || st.st_dev != dev || watch_root(d, where, &wd) < 0)
			continue;
		pthread_mutex_lock(&d->lock);
		if (!rec_by_dev(d, dev) && (m = rec_new(d))) {
			m->wd = wd;
			m->dev = dev;
			set_str(m->mountpoint, sizeof(m->mountpoint), f[4]);
			SH_STORE(d->sh->had_user, 1);
			log_info("found a mount of the entry at '%s'%s", m->mountpoint,
				 pid > 0 ? " (in an opener's mount namespace)" : "");
		}
		pthread_mutex_unlock(&d->lock);
	}
}

void fetch_mounts_rescan(struct fetch_daemon *d)
{
	rescan_ns(d, 0);
	for (size_t i = 0; i < ARRAY_SIZE(d->openers); i++)
		if (d->openers[i] > 0) {
			if (kill(d->openers[i], 0) < 0 && errno == ESRCH)
				d->openers[i] = 0;
			else
				rescan_ns(d, d->openers[i]);
		}
}

static void read_inotify(struct fetch_daemon *d)
{
	uint64_t buf[512];

	for (;;) {
		ssize_t n = read(d->ino_fd, buf, sizeof(buf));
		size_t pos = 0;

		if (n <= 0)
			return;
		while ((size_t)n - pos >= sizeof(struct inotify_event)) {
			struct inotify_event ev;

			memcpy(&ev, (char *)buf + pos, sizeof(ev));
			if (ev.len > (size_t)n - pos - sizeof(ev))
				break;
			pos += sizeof(ev) + ev.len;
			if (!(ev.mask & (IN_UNMOUNT | IN_IGNORED)))
				continue;
			pthread_mutex_lock(&d->lock);
			for (size_t i = 0; i < FETCH_MAX_MOUNTS; i++) {
				struct fetch_mount_rec *m = &d->sh->mounts[i];

				if (!m->used || m->wd != ev.wd)
					continue;
				log_info("superblock of '%s' released", m->mountpoint);
				/* Its mount is gone, maybe by a plain umount(8): so is its state. */
				if (m->state[0] && unlinkat(d->run_dirfd, m->state, 0) == 0)
					log_info("removed the state file %s of '%s'", m->state,
						 m->mountpoint);
				m->used = 0;
			}
			pthread_mutex_unlock(&d->lock);
		}
	}
}

/* Opens of the data file the event threads saw (note_open in worker.c). */
static bool read_opens(struct fetch_daemon *d)
{
	struct fetch_open_note v[ARRAY_SIZE(d->opens)];
	uint64_t count;
	unsigned n;

	if (read(d->open_efd, &count, sizeof(count)) < 0)
		return false;
	pthread_mutex_lock(&d->lock);
	n = d->nopens;
	memcpy(v, d->opens, n * sizeof(v[0]));
	d->nopens = 0;
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < n; i++) {
		bool known = false;

		/* Only the daemon writes the data file, through fds it never closes. */
		if (v[i].mask & FAN_CLOSE_WRITE)
			fetch_entry_tampered(d, "opened for writing by another process");
		for (size_t j = 0; j < ARRAY_SIZE(d->openers); j++)
			known = known || d->openers[j] == v[i].pid;
		if (!known) {
			memmove(&d->openers[1], &d->openers[0],
				sizeof(d->openers) - sizeof(d->openers[0]));
			d->openers[0] = v[i].pid;
		}
	}
	return n > 0;
}

/* ---- status -----------------------------------------------------------------------------------
 */

void fetch_fill_status(struct fetch_daemon *d, json_t *o)
{
	struct fetch_shared *sh = d->sh;
	json_t *list = json_array();
	uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
	uint64_t pending, files, file_ranges;
	unsigned mounts = 0;

	/* Every byte present, the hash not checked yet: complete. */
	if (state == FETCH_STATE_RUNNING && cache_entry_complete(d->entry))
		state = FETCH_STATE_COMPLETE;
	pthread_mutex_lock(&d->lock);
	pending = d->sched.nreqs;
	files = fetch_files_count(d->files);
	file_ranges = fetch_files_nranges(d->files);
	for (size_t i = 0; i < FETCH_MAX_MOUNTS; i++) {
		struct fetch_mount_rec *m = &sh->mounts[i];

		if (!m->used)
			continue;
		mounts++;
		if (list)
			json_array_append_new(list, json_pack("{s:I,s:s,s:s}", "mnt_id",
							      (json_int_t)m->mnt_id, "mountpoint",
							      m->mountpoint, "source", m->source));
	}
	pthread_mutex_unlock(&d->lock);
	json_object_set_new(o, "digest", json_string(d->cfg.blob.digest));
	json_object_set_new(o, "size", json_integer((json_int_t)d->cfg.blob.size));
	json_object_set_new(o, "present_bytes",
			    json_integer((json_int_t)cache_entry_present_bytes(d->entry)));
	json_object_set_new(o, "fetched_bytes",
			    json_integer((json_int_t)get64(&sh->fetched_bytes)));
	json_object_set_new(o, "requests", json_integer((json_int_t)get64(&sh->requests)));
	json_object_set_new(o, "events", json_integer((json_int_t)get64(&sh->events)));
	json_object_set_new(o, "answers", json_integer((json_int_t)get64(&sh->answers)));
	json_object_set_new(o, "fast_answers", json_integer((json_int_t)get64(&sh->fast)));
	json_object_set_new(o, "denied", json_integer((json_int_t)get64(&sh->denied)));
	json_object_set_new(o, "errors", json_integer((json_int_t)get64(&sh->errors)));
	json_object_set_new(o, "pending", json_integer((json_int_t)pending));
	json_object_set_new(o, "pid", json_integer(SH_LOAD(sh->holder_pid)));
	json_object_set_new(o, "worker_pid", json_integer(getpid()));
	json_object_set_new(o, "restarts", json_integer(SH_LOAD(sh->restarts)));
	json_object_set_new(o, "holder_restarts", json_integer(SH_LOAD(sh->holder_restarts)));
	json_object_set_new(o, "state", json_string(fetch_state_name(state)));
	json_object_set_new(o, "marked", json_boolean(SH_LOAD(sh->marked)));
	json_object_set_new(o, "mounts", json_integer(mounts));
	json_object_set_new(o, "mount_list", list ? list : json_null());
	json_object_set_new(o, "chunk_size", json_integer((json_int_t)d->pol.chunk_size));
	json_object_set_new(o, "fetch_threads", json_integer(d->nfetchers));
	json_object_set_new(o, "timeout_ms", json_integer((json_int_t)d->pol.timeout_ms));
	json_object_set_new(o, "prefetch_all", json_boolean(d->pol.prefetch_all));
	json_object_set_new(o, "data_path", json_string(d->entry->data_path));
	json_object_set_new(o, "socket", json_string(d->sock2_path));
	json_object_set_new(o, "log", json_string(d->log_path));
	json_object_set_new(o, "files", json_integer((json_int_t)files));
	json_object_set_new(o, "file_ranges", json_integer((json_int_t)file_ranges));
}

/* ---- connections -------------------------------------------------------------------------- */

struct conn {
	struct fetch_daemon *d;
	int fd;
	bool holding;
};

static int reply_error(int fd, int err, const char *fmt, ...) _printf_(3, 4);

static int reply_error(int fd, int err, const char *fmt, ...)
{
	_cleanup_json_ json_t *o = NULL;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:b,s:i,s:s}", "ok", 0, "errno", err < 0 ? -err : err, "error", msg);
	return o ? fetch_proto_send(fd, o, -1) : -ENOMEM;
}

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
	return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

static int reply_hello(struct conn *c)
{
	struct fetch_daemon *d = c->d;
	_cleanup_json_ json_t *o = json_pack(
	    "{s:b,s:i,s:i,s:i,s:s,s:s,s:s}", "ok", 1, "proto", FETCH_PROTO_VERSION, "pid",
	    (int)SH_LOAD(d->sh->holder_pid), "worker_pid",
	    (int)getpid(), "data_path", d->entry->data_path, "socket", d->sock2_path, "state",
	    fetch_state_name(__atomic_load_n(&d->sh->state, __ATOMIC_ACQUIRE)));

	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}

static int do_ensure(struct conn *c, json_t *req)
{
	struct fetch_daemon *d = c->d;
	struct util_extents ext;
	struct fetch_ensure en = {0};
	json_t *arr = json_object_get(req, "ranges"), *it;
	size_t i;
	int q, r = 0;

	if (!json_is_array(arr) || json_array_size(arr) > FETCH_ENSURE_MAX_RANGES)
		return reply_error(c->fd, EINVAL,
				   "ensure: 'ranges' must be an array of at most %u "
				   "[offset, length] pairs",
				   FETCH_ENSURE_MAX_RANGES);
	util_extents_init(&ext);
	json_array_foreach(arr, i, it)
	{
		json_t *o = json_array_get(it, 0), *l = json_array_get(it, 1);

		if (!json_is_integer(o) || !json_is_integer(l) || json_integer_value(o) < 0 ||
		    json_integer_value(l) < 0 ||
		    !util_range_within((uint64_t)json_integer_value(o),
				       (uint64_t)json_integer_value(l), d->cfg.blob.size)) {
			util_extents_free(&ext);
			return reply_error(c->fd, EINVAL, "ensure: range %zu is outside the blob",
					   i);
		}
		if (util_extents_add(&ext, (uint64_t)json_integer_value(o),
				     (uint64_t)json_integer_value(l)) < 0) {
			util_extents_free(&ext);
			return reply_error(c->fd, ENOMEM, "ensure: too many ranges");
		}
	}
	util_extents_merge(&ext, 0);
	if (ext.n == 0) {
		util_extents_free(&ext);
		goto ok;
	}
	en.req = (struct fetch_req){
	    .kind = FETCH_REQ_ENSURE, .fd = -1, .slot = -1, .v = ext.v, .n = ext.n, .owner = &en};
	pthread_mutex_lock(&d->lock);
	while (d->nensure >= FETCH_MAX_ENSURE && !d->stopping && !d->leaving)
		pthread_cond_wait(&d->done_cond, &d->lock);
	q = fetch_sched_add(&d->sched, &en.req, fetch_now_ms());
	if (q == 0) {
		d->nensure++;
		fetch_kick(d);
		while (!en.done)
			pthread_cond_wait(&d->done_cond, &d->lock);
		d->nensure--;
		pthread_cond_broadcast(&d->done_cond);
		r = en.req.result;
	} else if (q < 0) {
		r = q;
	}
	pthread_mutex_unlock(&d->lock);
	util_extents_free(&ext);
	if (r < 0)
		return reply_error(c->fd, r,
				   "fetching %zu range(s) from the registry failed: %s (see %s)",
				   en.req.n, strerror(-r), d->log_path);
ok : {
	_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

	return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
}
}

/* The pre-mark read-only data fd (root clients only, like every request): the client reads
 * through it only what an ensure confirmed present. */
static int do_data_fd(struct conn *c)
{
	_cleanup_json_ json_t *o = NULL;

	if (c->d->rd_fd < 0)
		return reply_error(c->fd, EBADF, "data_fd: the daemon has no pre-mark read fd");
	o = json_pack("{s:b}", "ok", 1);
	return o ? fetch_proto_send(c->fd, o, c->d->rd_fd) : -ENOMEM;
}

static int do_attach(struct conn *c, json_t *req, int fd)
{
	struct fetch_daemon *d = c->d;
	const char *mp = "", *src = "", *state = "";
	struct fetch_mount_rec *m;
	uint64_t mnt_id = 0;
	char path[64];
	struct stat st;
	int wd = -1, r;

	(void)util_json_get_u64(req, "mnt_id", &mnt_id);
	(void)util_json_get_string(req, "mountpoint", &mp);
	(void)util_json_get_string(req, "source", &src);
	(void)util_json_get_string(req, "state", &state);
	if (strlen(state) >= sizeof(m->state) || strspn(state, "0123456789") != strlen(state))
		return reply_error(c->fd, EINVAL, "attach: 'state' must be a state file's name");
	if (fd < 0)
		return reply_error(c->fd, EINVAL, "attach: the mountpoint's fd was not passed");
	if (fstat(fd, &st) < 0)
		return reply_error(c->fd, errno, "attach: %s", strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = watch_root(d, path, &wd);
	if (r < 0)
		return reply_error(c->fd, r, "attach: watching the mount: %s", strerror(-r));
	pthread_mutex_lock(&d->lock);
	m = rec_by_dev(d, (uint64_t)st.st_dev);
	if (!m)
		m = rec_new(d);
	if (m) {
		m->wd = wd;
		m->dev = (uint64_t)st.st_dev;
		m->mnt_id = mnt_id;
		set_str(m->mountpoint, sizeof(m->mountpoint), mp);
		set_str(m->source, sizeof(m->source), src);
		set_str(m->state, sizeof(m->state), state);
		SH_STORE(d->sh->had_user, 1);
	}
	pthread_mutex_unlock(&d->lock);
	if (!m)
		return reply_error(c->fd, ENOSPC, "attach: too many mounts of one entry (%d)",
				   FETCH_MAX_MOUNTS);
	log_info("attached mount %" PRIu64 " at '%s'", mnt_id, mp);
	{
		_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

		return o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
	}
}

static int do_detach(struct conn *c, json_t *req)
{
	struct fetch_daemon *d = c->d;
	uint64_t mnt_id = 0;
	bool found = false;

	(void)util_json_get_u64(req, "mnt_id", &mnt_id);
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < FETCH_MAX_MOUNTS && mnt_id; i++) {
		struct fetch_mount_rec *m = &d->sh->mounts[i];

		/* The superblock's own end (IN_UNMOUNT) removes the record; a detached
		 * mount may still be in use (umount -l with open files). */
		if (m->used && m->mnt_id == mnt_id) {
			m->mnt_id = 0;
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

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct fetch_daemon *d = c->d;
	struct fetch_linebuf lb = {0};
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || cred.uid != 0) {
		reply_error(c->fd, EPERM, "only root may talk to the daemon");
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

		r = fetch_proto_recv_line(c->fd, &lb, FETCH_LINE_MAX, &line, &len, &pfd);
		if (r < 0)
			break;
		if (util_json_parse(line, len, FETCH_LINE_MAX, &req) < 0 ||
		    util_json_get_string(req, "op", &op) < 0) {
			r = reply_error(c->fd, EBADMSG, "malformed request");
		} else if ((!strcmp(op, "hello") || !strcmp(op, "hold")) &&
			   (util_json_get_u64(req, "proto", &proto) < 0 ||
			    proto != FETCH_PROTO_VERSION)) {
			r = reply_error(c->fd, EPROTO,
					"this daemon speaks control protocol version %d: it was "
					"started by another version of lazyerofs",
					FETCH_PROTO_VERSION);
		} else if (!strcmp(op, "hello")) {
			r = reply_hello(c);
		} else if (!strcmp(op, "hold")) {
			bool removed = entry_removed(d);

			pthread_mutex_lock(&d->lock);
			if (removed && !d->well_known_gone) {
				/* New mounts must start a new daemon with a new entry. */
				log_info("the cache entry's data file was removed; new mounts get "
					 "a new daemon");
				fetch_unlink_discovery(d);
				d->well_known_gone = true;
			}
			if (d->leaving || removed) {
				pthread_mutex_unlock(&d->lock);
				r = reply_error(c->fd, ESHUTDOWN,
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
			_cleanup_json_ json_t *o = json_pack("{s:b}", "ok", 1);

			if (o)
				fetch_fill_status(d, o);
			r = o ? fetch_proto_send(c->fd, o, -1) : -ENOMEM;
		} else if (!strcmp(op, "ensure")) {
			r = do_ensure(c, req);
		} else if (!strcmp(op, "data_fd")) {
			r = do_data_fd(c);
		} else if (!strcmp(op, "attach")) {
			r = do_attach(c, req, pfd);
		} else if (!strcmp(op, "detach")) {
			r = do_detach(c, req);
		} else if (!strcmp(op, "files")) {
			r = fetch_files_request(d, c->fd, pfd);
		} else {
			r = reply_error(c->fd, EINVAL, "unknown request '%s'", op);
		}
		if (r < 0)
			break;
	}
out:
	fetch_linebuf_free(&lb);
	pthread_mutex_lock(&d->lock);
	if (c->holding)
		d->holds--;
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
	uint64_t not_before = fetch_now_ms() + (SH_LOAD(d->sh->restarts) ? 10000 : 0);
	bool term_logged = false;

	/* Superblocks that already use the file (a replacement worker, or a daemon restarted
	 * under live mounts). */
	fetch_mounts_rescan(d);
	for (;;) {
		struct pollfd pfd[4];
		unsigned np = 0, users;
		uint64_t now = fetch_now_ms(), wait = 200;
		bool rescan_soon = false;

		pfd[np++] = (struct pollfd){.fd = d->listen_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->listen2_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->ino_fd, .events = POLLIN};
		pfd[np++] = (struct pollfd){.fd = d->open_efd, .events = POLLIN};
		for (size_t i = 0; i < ARRAY_SIZE(d->rescan_at); i++)
			if (d->rescan_at[i])
				wait = MIN(wait, d->rescan_at[i] > now ? d->rescan_at[i] - now : 0);
		if (poll(pfd, np, (int)wait) < 0 && errno != EINTR)
			log_error("poll: %m");
		now = fetch_now_ms();
		if (pfd[0].revents & POLLIN)
			accept_conn(d, d->listen_fd);
		if (pfd[1].revents & POLLIN)
			accept_conn(d, d->listen2_fd);
		if (pfd[2].revents & POLLIN)
			read_inotify(d);
		if ((pfd[3].revents & POLLIN) && read_opens(d)) {
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
		 * listed yet: do not leave before looking again. */
		rescan_soon = d->rescan_at[0] || d->rescan_at[1];

		pthread_mutex_lock(&d->lock);
		users = d->holds + rec_count(d) + (unsigned)d->sched.nreqs + d->nensure;
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
		    !fetch_term_requested())
			continue;
		/* A last look for a mount that is just being made; then stop taking holds, and
		 * unlink the discovery socket at once: a mount arriving from now on starts a new
		 * daemon (once we give the entry lock up) instead of joining one that leaves. */
		fetch_mounts_rescan(d);
		pthread_mutex_lock(&d->lock);
		users = d->holds + rec_count(d) + (unsigned)d->sched.nreqs + d->nensure;
		if (users == 0) {
			d->leaving = true;
			if (!d->well_known_gone)
				fetch_unlink_discovery(d);
			d->well_known_gone = true;
		}
		pthread_mutex_unlock(&d->lock);
		if (users == 0)
			break;
	}
	log_info("no superblock or client uses the entry any more");
	fetch_files_drop(d);
	(void)unlinkat(d->run_dirfd, d->sock2_name, 0);
	close(d->listen_fd);
	close(d->listen2_fd);
}
