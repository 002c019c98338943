// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Live status of every lazyerofs mount: the state files of the run directory (all-digit
 * names), each daemon asked over its socket. A state file whose mount is gone (plain
 * umount(8), umount -l elsewhere) is stale: the daemon is told and the file removed.
 */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "mount/mount.h"
#include "mount/resolve.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/strutil.h"

DEFINE_CLEANUP_FUNC(struct fetch_handle, fetch_handle_free);

/* How long status waits for a daemon's answer. */
#define MOUNT_STATUS_ANSWER_MS 10000

/* A run dir holds a few files per mount; beyond this many (16 images mounted as often as one
 * may be), the rest are not listed, with a warning. */
#define STATUS_MAX_MOUNTS 65536

void mount_status_free(struct mount_status_entry *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		mount_state_done(&v[i].st);
	free(v);
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* What each daemon answered, by socket: one listing asks each once, not once for each of its
 * mounts (its answer lists them all: asked for each of 1,500 mounts, status took 15 s), and
 * all at once (ask_all): a mute one costs the listing one wait, not one wait each. */
struct daemon_answer {
	char *socket;
	int r; /* fetch_status's, or the connection's failure (-EAGAIN: mute) */
	struct fetch_status fs;
};

struct daemon_answers {
	struct daemon_answer *v;
	size_t n, alloc;
	size_t next; /* the next one to ask (ask_thread) */
};

static struct daemon_answer *answer_of(struct daemon_answers *a, const char *socket)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->v[i].socket, socket))
			return &a->v[i];
	return NULL;
}

static void daemon_answers_free(struct daemon_answers *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i].socket);
	free(a->v);
}

/* Threads asking daemons at once (three stopped daemons, asked one after the other: 30 s). */
#define STATUS_ASKERS 16

static void *ask_thread(void *arg)
{
	struct daemon_answers *a = arg;
	size_t i;

	while ((i = __atomic_fetch_add(&a->next, 1, __ATOMIC_RELAXED)) < a->n) {
		_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;
		struct daemon_answer *x = &a->v[i];

		x->r = fetch_connect_timeout(x->socket,
					     mount_env_answer_wait_ms(MOUNT_STATUS_ANSWER_MS), &h);
		if (x->r >= 0)
			x->r = fetch_status(h, &x->fs);
	}
	return NULL;
}

static void ask_all(struct daemon_answers *a)
{
	pthread_t t[STATUS_ASKERS];
	size_t nt = 0;

	a->next = 0;
	while (nt < MIN(a->n, (size_t)STATUS_ASKERS) &&
	       pthread_create(&t[nt], NULL, ask_thread, a) == 0)
		nt++;
	if (!nt)
		(void)ask_thread(a); /* no thread to be had: one after the other */
	for (size_t i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
}

/* A mount whose daemon does not answer: what its entry's files say. */
static void peek_entry(struct mount_status_entry *e)
{
	_cleanup_free_ char *dir = e->st.cache ? strdup(e->st.cache) : NULL;
	_cleanup_close_ int dfd = -1;
	struct cache_header hdr;
	char *key = dir ? strrchr(dir, '/') : NULL;

	if (!key || key == dir)
		return;
	*key++ = 0;
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || cache_entry_peek_present(dfd, key, &hdr, &e->disk_present) < 0)
		return;
	e->on_disk = true;
	e->disk_verified = hdr.flags & CACHE_FLAG_VERIFIED;
}

/* Ask the daemons of v[0..n) (each once, all at once), fill each entry from its daemon's
 * answer, and drop the entries whose mount is gone (plain umount(8), umount -l elsewhere):
 * their daemon is told and their state file removed. Returns how many stay in v. */
static size_t probe_all(int run_fd, struct mount_status_entry *v, size_t n)
{
	_cleanup_(daemon_answers_free) struct daemon_answers answers = {.n = 0};
	_cleanup_free_ bool *gone = calloc(n ? n : 1, sizeof(*gone));
	size_t keep = 0;

	for (size_t i = 0; i < n; i++) {
		const char *sock = v[i].st.socket;

		if (gone)
			gone[i] = mount_id_exists(v[i].st.mnt_id, v[i].st.mountpoint) == 0;
		if (sock && !answer_of(&answers, sock) &&
		    UTIL_ARRAY_RESERVE(answers.v, answers.alloc, answers.n, 8) >= 0 &&
		    (answers.v[answers.n].socket = strdup(sock)))
			answers.v[answers.n++].r = -ENOTCONN;
	}
	ask_all(&answers);
	for (size_t i = 0; i < n; i++) {
		struct mount_status_entry *e = &v[i];
		const struct daemon_answer *x =
		    e->st.socket ? answer_of(&answers, e->st.socket) : NULL;
		int r = x ? x->r : -ENOTCONN;

		if (gone && gone[i]) {
			_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;

			/* A daemon that cannot answer is as good as gone for its mounts. */
			if (r >= 0 &&
			    fetch_connect_timeout(e->st.socket,
						  mount_env_answer_wait_ms(MOUNT_STATUS_ANSWER_MS),
						  &h) >= 0)
				(void)fetch_detach(h, e->st.mnt_id);
			(void)mount_state_remove(run_fd, e->st.mnt_id);
			mount_state_done(&e->st);
			continue;
		}
		if (r >= 0)
			e->fs = x->fs;
		e->daemon_alive = r >= 0;
		e->daemon_mute = r == -EAGAIN;
		e->daemon_foreign = r == -EPROTO;
		if (!e->daemon_alive)
			peek_entry(e);
		v[keep++] = *e;
	}
	return keep;
}

/* The state of mnt_id appended to v (not when it is another mount namespace's): 1 appended,
 * 0 not, -errno. */
static int read_one(int run_fd, uint64_t mnt_id, uint64_t own_ns, struct mount_status_entry **v,
		    size_t *n, size_t *alloc)
{
	struct mount_status_entry e = {0};
	int r;

	r = mount_state_read(run_fd, mnt_id, &e.st);
	if (r < 0)
		return r;
	/* A mount of another mount namespace (a container's, or the host's seen from one) is
	 * neither seen nor checked from here: its id means nothing in ours. */
	if (e.st.mnt_ns && e.st.mnt_ns != own_ns) {
		mount_state_done(&e.st);
		return 0;
	}
	if (UTIL_ARRAY_RESERVE(*v, *alloc, *n, 16) < 0) {
		mount_state_done(&e.st);
		return -ENOMEM;
	}
	(*v)[(*n)++] = e;
	return 1;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct mount_status_entry *x = a, *y = b;

	return strcmp(x->st.mountpoint, y->st.mountpoint);
}

static int collect(const char *run_dir, const char *only_mountpoint,
		   struct mount_status_entry **ret, size_t *ret_n, struct util_error *err)
{
	_cleanup_close_ int run_fd = -1;
	uint64_t own_ns = mount_ns_id(); /* once, not for every state file */
	struct mount_status_entry *v = NULL;
	size_t n = 0, alloc = 0;
	DIR *d;
	int r;

	*ret = NULL;
	*ret_n = 0;
	r = mount_find_run_dir(run_dir, O_RDONLY, &run_fd, err);
	if (r < 0)
		return r;

	if (only_mountpoint) {
		uint64_t id;
		bool root;

		r = mount_path_mnt_id(only_mountpoint, &id);
		if (r < 0 && r != -ENOTCONN) {
			return util_err_set(err, r, "'%s': %s", only_mountpoint, strerror(-r));
		}
		root = r != -ENOTCONN;
		if (r >= 0 && run_fd >= 0) {
			r = read_one(run_fd, id, own_ns, &v, &n, &alloc);
			if (r > 0)
				n = probe_all(run_fd, v, n);
		}
		if (r < 0 && r != -ENOENT && r != -ENOTCONN) {
			util_err_set(err, r, "reading the state of '%s': %s", only_mountpoint,
				     strerror(-r));
			mount_status_free(v, n);
			return r;
		}
		if (n == 0 && !root) {
			return util_err_set(
			    err, -ENOTCONN,
			    "'%s' is not a lazyerofs mount: not a mount point (give "
			    "the directory an image is mounted on)",
			    only_mountpoint);
		}
		if (n == 0 && mount_is_entry_mount(only_mountpoint) > 0) {
			return util_err_set(err, -ENOTCONN,
					    "'%s' is a mount of a lazyerofs cache entry with no "
					    "state in '%s' (a bind mount of a lazyerofs mount, or "
					    "mounted with another LAZYEROFS_RUN_DIR?)",
					    only_mountpoint, run_dir);
		}
		if (n == 0) {
			return util_err_set(err, -ENOTCONN, "'%s' is not a lazyerofs mount",
					    only_mountpoint);
		}
		*ret = v;
		*ret_n = n;
		return 0;
	}
	if (run_fd < 0)
		return 0; /* no run dir: nothing was ever mounted */

	d = fdopendir(fcntl(run_fd, F_DUPFD_CLOEXEC, 3));
	if (!d) {
		r = -errno;
		return util_err_set(err, r, "reading run directory '%s': %s", run_dir,
				    strerror(-r));
	}
	for (struct dirent *de; (de = readdir(d));) {
		uint64_t id;

		if (!all_digits(de->d_name) || util_parse_u64(de->d_name, &id) < 0)
			continue;
		if (n >= STATUS_MAX_MOUNTS) {
			log_warning("more than %d mounts in '%s': listing the first %d",
				    STATUS_MAX_MOUNTS, run_dir, STATUS_MAX_MOUNTS);
			break;
		}
		r = read_one(run_fd, id, own_ns, &v, &n, &alloc);
		if (r == -ENOMEM) {
			closedir(d);
			mount_status_free(v, n);
			return util_err_set(err, r, "out of memory");
		}
		if (r < 0 && r != -ENOENT)
			log_warning("skipping damaged state file '%s/%s': %s", run_dir, de->d_name,
				    strerror(-r));
	}
	closedir(d);
	n = probe_all(run_fd, v, n);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_entry);
	*ret = v;
	*ret_n = n;
	return 0;
}

int mount_status_collect(const char *run_dir, const char *only_mountpoint,
			 struct mount_status_entry **ret, size_t *ret_n, struct util_error *err)
{
	int r = collect(run_dir, only_mountpoint, ret, ret_n, err);

	if (r < 0)
		mount_sanitize_line(err ? err->message : NULL);
	return r;
}
