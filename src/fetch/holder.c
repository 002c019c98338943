// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Starting the daemon and its holder process. fetch_spawn() forks twice (setsid in between)
 * so the daemon is detached from the caller, and waits on a pipe until the daemon reports
 * readiness or an error. The daemon first sheds what it inherited from its caller (signal
 * dispositions and mask, cgroup, fds: fact 15), then the holder opens the cache entry (its
 * O_RDWR data fd is opened before the mark: fact 4), creates the fanotify group and marks the
 * data file (fact 3: before any mount), and becomes the holder role of guard.c: it forks the
 * worker and replaces it whenever it dies, and the worker does the same for the holder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/files.h"
#include "fetch/internal.h"
#include "fetch/profile.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/mountinfo.h"
#include "util/proctitle.h"
#include "util/shared.h"
#include "util/strutil.h"
#include "util/time.h"

const char *fetch_state_name(uint32_t state)
{
	switch (state) {
	case FETCH_STATE_COMPLETE:
		return "complete";
	case FETCH_STATE_VERIFIED:
		return "verified";
	case FETCH_STATE_BAD:
		return "bad";
	default:
		return "running";
	}
}

static void policy_from(const struct fetch_config *cfg, struct fetch_policy *p)
{
	fetch_policy_default(p);
	p->chunk_size =
	    cfg->chunk_size ? cfg->chunk_size : util_env_u64("LAZYEROFS_CHUNK_SIZE", p->chunk_size);
	p->ra_max = cfg->readahead_max ? cfg->readahead_max
				       : util_env_u64("LAZYEROFS_READAHEAD_MAX", p->ra_max);
	p->max_job_bytes = util_env_u64("LAZYEROFS_MAX_JOB", p->max_job_bytes);
	p->ra_initial = util_env_u64("LAZYEROFS_READAHEAD_INITIAL", p->ra_initial);
	p->max_side_jobs = (unsigned)util_env_u64("LAZYEROFS_SIDE_JOBS", p->max_side_jobs);
	p->max_requests = cfg->max_requests
			      ? cfg->max_requests
			      : (unsigned)util_env_u64("LAZYEROFS_MAX_REQUESTS", p->max_requests);
	p->host_connections =
	    (unsigned)util_env_u64("LAZYEROFS_HOST_CONNECTIONS", p->host_connections);
	p->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 60000;
	p->prefetch_all = cfg->prefetch_all;
	fetch_policy_fix(p);
}

/* ---- the holder process ------------------------------------------------------------------ */

_Noreturn void fetch_fatal(struct fetch_daemon *d, int err, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s", msg);
	/* With the holder's pid: the caller returns once it is gone (it follows its worker). */
	if (d->ready_fd >= 0)
		dprintf(d->ready_fd, "ERR %d %d %s\n", err < 0 ? -err : err,
			d->sh ? (int)SH_LOAD(d->sh->holder_pid) : (int)getpid(), msg);
	_exit(2);
}

/* Close everything inherited from the caller but what the daemon needs: a mount helper's
 * other fds (a pipe of `$(lazyerofs mount ...)`, registry connections) must not leak. */
void fetch_close_all_but(const int *keep, size_t n)
{
	int sorted[32];
	unsigned lo = 0;

	n = MIN(n, ARRAY_SIZE(sorted));
	memcpy(sorted, keep, n * sizeof(int));
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			int t = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		if (sorted[i] < 0 || (unsigned)sorted[i] < lo)
			continue; /* unused, or a duplicate */
		if ((unsigned)sorted[i] > lo)
			close_range(lo, (unsigned)sorted[i] - 1, 0);
		lo = (unsigned)sorted[i] + 1;
	}
	close_range(lo, ~0u, 0);
}

/* Bind a listening socket at `name` in the run directory. It is bound under a temporary name
 * and renamed into place once it listens: whoever finds a socket by a daemon's name that
 * refuses connections knows that daemon is gone (fetch_remove_stale). */
static int bind_socket(struct fetch_daemon *d, const char *name, int *ret_fd, uint64_t *ret_ino)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = -1;
	char tmp[160];
	struct stat st;
	int r;

	static unsigned seq;

	/* Short: the final name alone nearly fills sun_path. */
	snprintf(tmp, sizeof(tmp), ".bind-%d-%u", (int)getpid(), seq++);
	/* Through the run directory's fd: short enough for sun_path whatever its depth. */
	r = fetch_unix_addr_at(d->run_dirfd, tmp, &sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	(void)unlinkat(d->run_dirfd, tmp, 0);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	if (fchmodat(d->run_dirfd, tmp, 0600, 0) < 0 || listen(fd, 64) < 0 ||
	    fstatat(d->run_dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;

		(void)unlinkat(d->run_dirfd, tmp, 0);
		return -err;
	}
	/* We hold the entry lock: a socket by this name is a dead daemon's leftover, or one
	 * that is leaving (it refuses new users and unlinked the name before leaving). */
	if (renameat(d->run_dirfd, tmp, d->run_dirfd, name) < 0) {
		int err = errno;

		(void)unlinkat(d->run_dirfd, tmp, 0);
		return -err;
	}
	if (ret_ino)
		*ret_ino = (uint64_t)st.st_ino;
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* Is `name` in the run directory the socket we bound (inode ino)? */
static bool socket_ours(struct fetch_daemon *d, const char *name, uint64_t ino)
{
	struct stat st;

	return fstatat(d->run_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       (uint64_t)st.st_ino == ino;
}

/* Bind name again (its old listening fd number takes the new socket). */
static int rebind(struct fetch_daemon *d, const char *name, int listen_fd, uint64_t *ino)
{
	int fd, r = bind_socket(d, name, &fd, ino);

	if (r < 0)
		return r;
	if (dup3(fd, listen_fd, O_CLOEXEC) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Is the run directory's path still the directory run_dirfd holds (not removed, renamed
 * away or mounted over)? */
static bool run_dir_same(struct fetch_daemon *d)
{
	struct stat a, b;

	return fstat(d->run_dirfd, &a) == 0 && a.st_nlink > 0 && lstat(d->cfg.run_dir, &b) == 0 &&
	       util_same_file(&a, &b);
}

/* The daemon's log in the run directory: its name, and opened for appending. */
static void log_name(const struct fetch_daemon *d, char name[static 96])
{
	snprintf(name, 96, "daemon-%s.log", d->cfg.blob.cache_key);
}

static int open_log(struct fetch_daemon *d, const char *name)
{
	return openat(d->run_dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
		      0600);
}

/* The run directory again (made anew when removed), where its path no longer leads to the
 * one run_dirfd holds; same fd number. */
static int reopen_run_dir(struct fetch_daemon *d)
{
	int fd, r = 0;

	if (run_dir_same(d))
		return 0;
	r = util_open_private_dir(d->cfg.run_dir, &fd);
	if (r < 0)
		return r;
	if (dup3(fd, d->run_dirfd, O_CLOEXEC) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* The log file again, where the run directory lost it. */
static void reopen_log(struct fetch_daemon *d);

/* Take the worker's fd number fd for ours when the name is not our socket. */
static void follow_socket(struct fetch_daemon *d, int pidfd, const char *name, int fd,
			  uint64_t *ino)
{
	struct stat st;
	int nfd;

	if (fstatat(d->run_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    (uint64_t)st.st_ino == *ino)
		return; /* gone (given up), or ours */
	nfd = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (nfd < 0) {
		log_debug("taking the worker's socket %s: %m", name);
		return;
	}
	if (dup3(nfd, fd, O_CLOEXEC) >= 0)
		*ino = (uint64_t)st.st_ino;
	close(nfd);
}

void fetch_holder_follow(struct fetch_daemon *d, int worker_pidfd)
{
	fetch_run_dir_refresh(d);
	follow_socket(d, worker_pidfd, d->sock2_name, d->listen2_fd, &d->sock2_ino);
	if (!SH_LOAD(d->sh->discovery_gone))
		follow_socket(d, worker_pidfd, d->sock_name, d->listen_fd, &d->sock_ino);
}

void fetch_run_dir_refresh(struct fetch_daemon *d)
{
	(void)reopen_run_dir(d);
	reopen_log(d);
}

static void reopen_log(struct fetch_daemon *d)
{
	char name[96];
	int fd;

	if (d->log_fd < 0 || d->log_fd == d->devnull_fd)
		return;
	log_name(d, name);
	if (util_fd_is_at(d->log_fd, d->run_dirfd, name))
		return; /* the run directory's log is ours */
	fd = open_log(d, name);
	if (fd >= 0) {
		(void)dup3(fd, d->log_fd, O_CLOEXEC);
		close(fd);
	}
}

struct state_copy {
	char name[24];
	char *text;
};

/* The state files of our mounts that the run directory lost, written again: their texts
 * copied under the lock, written outside it (the fast path takes it too). */
static unsigned restore_states(struct fetch_daemon *d)
{
	struct state_copy *v = NULL;
	size_t n = 0, cap = FETCH_MOUNTS_USED(d->sh);
	unsigned done = 0;
	struct stat st;

	v = cap ? calloc(cap, sizeof(*v)) : NULL;
	if (!v)
		return 0;
	pthread_mutex_lock(&d->lock);
	for (uint32_t i = 0; i < FETCH_MOUNTS_USED(d->sh) && n < cap; i++) {
		const struct fetch_mount_rec *m = &d->sh->mounts[i];

		/* (a detached mount, umount -l with files open, has a state no more) */
		if (!m->used || !m->mnt_id || !m->state[0] || !m->state_text[0])
			continue;
		v[n].text = strdup(m->state_text);
		if (!v[n].text)
			continue;
		memcpy(v[n].name, m->state, sizeof(v[n].name));
		n++;
	}
	pthread_mutex_unlock(&d->lock);
	for (size_t i = 0; i < n; i++) {
		if (fstatat(d->run_dirfd, v[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
		    errno == ENOENT &&
		    util_write_file_atomic(d->run_dirfd, v[i].name, v[i].text, strlen(v[i].text),
					   0600) >= 0)
			done++;
		free(v[i].text);
	}
	free(v);
	return done;
}

void fetch_run_dir_heal(struct fetch_daemon *d, uint64_t now_ms)
{
	uint64_t ino;
	bool discovery;
	unsigned states;
	int r;

	if (now_ms < d->heal_at_ms || d->leaving)
		return;
	d->heal_at_ms = now_ms + FETCH_HEAL_MS;
	/* The discovery name given up on purpose (a bad entry, a removed one: new mounts start
	 * a fresh daemon) stays given up. */
	discovery = !SH_LOAD(d->sh->discovery_gone);
	pthread_mutex_lock(&d->lock);
	ino = d->sock_ino;
	pthread_mutex_unlock(&d->lock);
	if (run_dir_same(d) && socket_ours(d, d->sock2_name, d->sock2_ino) &&
	    (!discovery || socket_ours(d, d->sock_name, ino))) {
		reopen_log(d);
		return;
	}
	/* Someone emptied the run directory, removed or renamed it under a live daemon: a
	 * mount of the image would wait for the entry lock we hold and fail, `status` would
	 * list none of our mounts, `umount` would not find us. Make our part of it again. */
	r = reopen_run_dir(d);
	if (r >= 0 && !socket_ours(d, d->sock2_name, d->sock2_ino))
		r = rebind(d, d->sock2_name, d->listen2_fd, &d->sock2_ino);
	if (r >= 0 && discovery && !socket_ours(d, d->sock_name, ino)) {
		r = rebind(d, d->sock_name, d->listen_fd, &ino);
		pthread_mutex_lock(&d->lock);
		if (r >= 0)
			d->sock_ino = ino;
		pthread_mutex_unlock(&d->lock);
	}
	reopen_log(d);
	if (r < 0) {
		log_warning("the run directory '%s' lost this daemon's sockets, and making them "
			    "again failed: %s",
			    d->cfg.run_dir, strerror(-r));
		return;
	}
	if (d->heal_efd >= 0 && eventfd_write(d->heal_efd, 1) < 0)
		log_debug("telling the holder about the sockets: %m");
	states = restore_states(d);
	log_warning("the run directory '%s' lost this daemon's sockets (emptied, removed or "
		    "renamed while it ran): made them again, and %u mount state file(s)",
		    d->cfg.run_dir, states);
}

void fetch_unlink_discovery(struct fetch_daemon *d)
{
	struct stat st;

	if (fstatat(d->run_dirfd, d->sock_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (uint64_t)st.st_ino == d->sock_ino)
		(void)unlinkat(d->run_dirfd, d->sock_name, 0);
}

/* Remove the stable sockets (daemon-<key>-<pid>.sock) of this entry's dead daemons: a socket
 * that refuses connections has no process listening (sockets are renamed into place only once
 * they listen, and every process of a live daemon holds the listening fd). */
static void remove_stale_sockets(struct fetch_daemon *d)
{
	_cleanup_close_ int dfd = openat(d->run_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char prefix[128];
	size_t plen;
	DIR *dir;
	struct dirent *de;

	if (dfd < 0)
		return;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "daemon-%s-", d->cfg.blob.cache_key);
	dir = fdopendir(dfd);
	if (!dir)
		return;
	dfd = -1; /* owned by dir */
	while ((de = readdir(dir))) {
		char path[PATH_MAX];

		size_t len = strlen(de->d_name);

		if (strncmp(de->d_name, prefix, plen) != 0 || len < 5 ||
		    strcmp(de->d_name + len - 5, ".sock") != 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", d->cfg.run_dir, de->d_name) >=
		    (int)sizeof(path))
			continue;
		if (fetch_socket_is_stale(path)) {
			log_info("removing the socket of a dead daemon: %s", de->d_name);
			(void)unlinkat(d->run_dirfd, de->d_name, 0);
		}
	}
	closedir(dir);
}

size_t fetch_essential_fds(const struct fetch_daemon *d, int *out, size_t max)
{
	const int v[] = {0,
			 1,
			 2,
			 d->devnull_fd,
			 d->log_fd,
			 d->run_dirfd,
			 d->fan_fd,
			 d->rd_fd,
			 d->ino_fd,
			 d->listen_fd,
			 d->listen2_fd,
			 d->heal_efd,
			 d->entry ? d->entry->dirfd : -1,
			 d->entry ? d->entry->data_fd : -1,
			 d->entry ? d->entry->bitmap_fd : -1,
			 d->entry ? d->entry->lock_fd : -1};
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(v) && n < max; i++)
		if (v[i] >= 0)
			out[n++] = v[i];
	return n;
}

/* fanotify_init and inotify_init1 fail with EMFILE when the per-user limit of groups or
 * instances is reached (or the fd table is full), ENFILE / ENOMEM on a system-wide shortage. */
static _Noreturn void init_failed(struct fetch_daemon *d, int err, const char *what,
				  const char *sysctl)
{
	if (err == EMFILE)
		fetch_fatal(d, err,
			    "%s: too many %s instances (%s); every daemon (one per mounted "
			    "image) takes one: raise it, e.g. sysctl -w %s=1024",
			    what, util_startswith(what, "fanotify") ? "fanotify" : "inotify", sysctl,
			    sysctl);
	if (err == ENFILE || err == ENOMEM)
		fetch_fatal(d, err, "%s: %s (the system is short of %s)", what, strerror(err),
			    err == ENFILE ? "open files (fs.file-max)" : "memory");
	fetch_fatal(d, err, "%s: %s", what, strerror(err));
}

static void setup_marks(struct fetch_daemon *d)
{
	struct cache_entry *e = d->entry;
	char fs[32];

	d->fan_fd =
	    fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
			  O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (d->fan_fd < 0) {
		int err = errno;

		if (err == EPERM)
			fetch_fatal(d, err,
				    "fanotify_init: permission denied; mounting needs root");
		if (err == EINVAL || err == ENOSYS)
			fetch_fatal(d, err,
				    "fanotify_init(FAN_CLASS_PRE_CONTENT): %s; this kernel lacks "
				    "fanotify pre-content events (Linux 6.14 or later is needed)",
				    strerror(err));
		init_failed(d, err, "fanotify_init(FAN_CLASS_PRE_CONTENT)",
			    "fs.fanotify.max_user_groups");
	}
	/* One group for everything: pre-content events, and opens of the data file (a hint to
	 * look for superblocks; a close after writing means someone else wrote it). A daemon
	 * takes one fanotify group of the per-user limit (fs.fanotify.max_user_groups). */
	if (fanotify_mark(d->fan_fd, FAN_MARK_ADD, FAN_PRE_ACCESS | FETCH_NOTIFY_EVENTS, e->data_fd,
			  NULL) < 0) {
		int err = errno;

		cache_fs_name(e->data_fd, fs, sizeof(fs));
		/* Nothing can be fetched into the entry on such a filesystem: one this open
		 * made (the whole blob's size allocated) goes again. */
		if ((err == EOPNOTSUPP || err == EINVAL || err == EXDEV) && e->rebuilt)
			(void)cache_entry_remove(e->dirfd, strrchr(e->data_path, '/') + 1,
						 e->lock_fd);
		if (err == EOPNOTSUPP || err == EINVAL || err == EXDEV)
			fetch_fatal(d, EOPNOTSUPP,
				    "cache directory '%s' is on %s, which refuses fanotify "
				    "pre-content marks; use cache=DIR (or LAZYEROFS_CACHE_DIR) on "
				    "ext4, xfs or btrfs",
				    d->cfg.cache_dir, fs);
		if (err == ENOSPC)
			fetch_fatal(d, err,
				    "fanotify_mark of the cache file '%s': too many marks; raise "
				    "fs.fanotify.max_user_marks",
				    e->data_path);
		fetch_fatal(d, err, "fanotify_mark of the cache file '%s': %s", e->data_path,
			    strerror(err));
	}
	SH_STORE(d->sh->marked, 1);
}

/* ---- what the daemon must not inherit from its caller (fact 15) -------------------------- */

/* Default dispositions and an empty mask: a caller that ignores SIGCHLD would otherwise make
 * every wait fail, one that blocks SIGTERM would make the daemon deaf to it. */
static void reset_signals(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t none;

	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL); /* EINVAL for libc's own signals */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

struct cgroup2_root {
	char *buf;
	size_t len;
};

static int cgroup2_one(const struct util_mountinfo *m, void *ud)
{
	struct cgroup2_root *c = ud;

	return strcmp(m->fstype, "cgroup2") == 0 &&
	       snprintf(c->buf, c->len, "%s", m->mountpoint) < (int)c->len;
}

/* The cgroup v2 hierarchy's mount point, or false when there is none. */
static bool cgroup2_root(char *buf, size_t len)
{
	struct cgroup2_root c = {buf, len};

	return util_mountinfo_each("/proc/self/mountinfo", cgroup2_one, &c) > 0;
}

/* Is pid in the cgroup at path (below the hierarchy's root)? */
static bool in_cgroup(pid_t pid, const char *path)
{
	char file[64], line[PATH_MAX + 8];
	bool in = false;
	FILE *f;

	snprintf(file, sizeof(file), "/proc/%d/cgroup", (int)pid);
	f = fopen(file, "re");
	if (!f)
		return false;
	while (!in && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		in = !strncmp(line, "0::", 3) && !strcmp(line + 3, path);
	}
	fclose(f);
	return in;
}

/* Is pid one of the processes listed in a cgroup.procs file? */
static bool listed_in(const char *procs, pid_t pid)
{
	char line[32];
	bool in = false;
	FILE *f = fopen(procs, "re");

	if (!f)
		return false;
	while (!in && fgets(line, sizeof(line), f))
		in = atoi(line) == (int)pid;
	fclose(f);
	return in;
}

/* Move pid into the cgroup whose cgroup.procs is at procs (named name below the v2 root;
 * NULL: a v1 hierarchy's root, where procs lists it when it is there), unless it is there
 * already: nothing to do, not a failure on a read-only cgroupfs. */
static int move_pid(pid_t pid, const char *procs, const char *name)
{
	int fd, r = 0;

	if (name ? in_cgroup(pid, name) : listed_in(procs, pid))
		return 0;
	fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (dprintf(fd, "%d\n", (int)pid) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Move this worker and the holder (with all its threads) into the cgroup whose cgroup.procs
 * is at procs (name: its path below the v2 hierarchy's root; NULL for a v1 hierarchy's
 * root). A holder
 * that replaced a dead one meanwhile was forked by this worker, still in the caller's
 * cgroup: it is moved too. */
static int move_daemon(struct fetch_daemon *d, const char *procs, const char *name)
{
	pid_t holder = 0;
	int r = move_pid(getpid(), procs, name);

	for (int i = 0; i < 4 && r >= 0 && holder != SH_LOAD(d->sh->holder_pid); i++) {
		holder = SH_LOAD(d->sh->holder_pid);
		r = move_pid(holder, procs, name);
		if (r == -ESRCH)
			r = 0; /* it died: its replacement, if any, is looked at next */
	}
	return r;
}

/* The v2 hierarchy: below its root, in a cgroup without controllers (no internal-process
 * conflict). */
static void leave_cgroup2(struct fetch_daemon *d)
{
	const char *name = "/lazyerofs.daemons";
	char root[PATH_MAX], path[PATH_MAX + 64];
	int r = 0;

	if (!cgroup2_root(root, sizeof(root)))
		return;
	snprintf(path, sizeof(path), "%s%s", root, name);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		r = -errno;
	snprintf(path, sizeof(path), "%s%s/cgroup.procs", root, name);
	if (r >= 0)
		r = move_daemon(d, path, name);
	if (r < 0)
		log_warning("the daemon stays in its caller's cgroup, whose end would take it: "
			    "moving into %s%s: %s",
			    root, name, strerror(-r));
}

struct cgroup1_moves {
	struct fetch_daemon *d;
	unsigned failed;
	int first_err;
	char first[PATH_MAX];
};

static int cgroup1_one(const struct util_mountinfo *m, void *ud)
{
	struct cgroup1_moves *c = ud;
	char path[PATH_MAX + 16];
	int r;

	/* (a bind mount of a cgroup below the root, maybe the caller's: not that one) */
	if (strcmp(m->fstype, "cgroup") != 0 || strcmp(m->root, "/") != 0)
		return 0;
	if (snprintf(path, sizeof(path), "%s/cgroup.procs", m->mountpoint) >= (int)sizeof(path))
		return 0;
	r = move_daemon(c->d, path, NULL);
	if (r < 0 && c->failed++ == 0) {
		c->first_err = r;
		snprintf(c->first, sizeof(c->first), "%s", m->mountpoint);
	}
	return 0;
}

/* Leave the caller's cgroups, so that stopping the caller's unit (or cgroup.kill) does not
 * take the daemon, which must outlive it while mounts use the entry, nor the caller's limits
 * (a memory cgroup's OOM kill) bind it: in the v2 hierarchy, and in every v1 one (legacy and
 * hybrid hosts: systemd tracks a unit's processes in name=systemd there, and the caller's
 * memory cgroup would hold the daemon too) into its root. Each process unless it is there
 * already (a worker that replaced a dead one, forked by a holder that left before); a failure
 * is logged. */
static void *leave_caller_cgroup(void *arg)
{
	struct fetch_daemon *d = arg;
	struct cgroup1_moves c = {.d = d};

	leave_cgroup2(d);
	(void)util_mountinfo_each("/proc/self/mountinfo", cgroup1_one, &c);
	if (c.failed)
		log_warning("the daemon stays in its caller's cgroup of %u cgroup v1 hierarchies, "
			    "whose end or limits would take it: moving into the root of %s: %s",
			    c.failed, c.first, strerror(-c.first_err));
	pthread_mutex_lock(&d->lock);
	d->leaving_cgroup = false;
	pthread_cond_broadcast(&d->done_cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

void fetch_leave_caller_cgroup_start(struct fetch_daemon *d)
{
	pthread_attr_t at;
	pthread_t t;
	int r;

	pthread_mutex_lock(&d->lock);
	d->leaving_cgroup = true;
	pthread_mutex_unlock(&d->lock);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &at, leave_caller_cgroup, d);
	pthread_attr_destroy(&at);
	if (r != 0)
		leave_caller_cgroup(d);
}

void fetch_left_caller_cgroup(struct fetch_daemon *d)
{
	pthread_mutex_lock(&d->lock);
	while (d->leaving_cgroup)
		pthread_cond_wait(&d->done_cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
}

/* The OOM killer picks the daemon last: killing it would turn reads into errors for every
 * mount of the image, and since one process survives the other's death (guard.c) even an
 * OOM kill is survived. Not -1000: that would exempt it entirely, and a daemon that grew
 * without bound would then have everything else on the host killed instead. */
static void set_oom_score(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (dprintf(fd, "-900\n") < 0)
		log_debug("oom_score_adj: %m");
	close(fd);
}

/* The daemon holds registry credentials and tokens in memory: a crash must not write them
 * into a core file, and no other user may read its memory through /proc (not dumpable:
 * /proc/PID files are root's, ptrace needs CAP_SYS_PTRACE). Forks inherit both. */
static void no_core_dumps(void)
{
	struct rlimit rl = {0, 0};

	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		log_debug("RLIMIT_CORE: %m");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		log_debug("PR_SET_DUMPABLE: %m");
}

/* Each unanswered event holds an fd: allow FETCH_NOFILE. Exactly that, not the hard limit: a
 * takeover answers every fd number below the limit the dead worker could have used. */
static void raise_nofile(struct fetch_daemon *d)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl = (struct rlimit){1024, 1024};
	if (rl.rlim_max < FETCH_NOFILE)
		rl.rlim_max = FETCH_NOFILE;
	rl.rlim_cur = FETCH_NOFILE;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		/* Not allowed to raise the hard limit: up to it, and say so. */
		(void)getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = MIN(rl.rlim_max, (rlim_t)FETCH_NOFILE);
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		log_warning("RLIMIT_NOFILE could not be raised to %d (%m): at most about %d "
			    "reads can wait for the registry at once",
			    FETCH_NOFILE, (int)rl.rlim_cur - 4096);
	}
	(void)getrlimit(RLIMIT_NOFILE, &rl);
	d->sh->fd_limit = (int32_t)MIN(rl.rlim_cur, (rlim_t)(1 << 24));
}

static _Noreturn void holder_main(struct fetch_daemon *d, int cache_dirfd, int lock_fd)
{
	struct cache_open_params p = {
	    .key = d->cfg.blob.cache_key,
	    .digest = d->cfg.blob.digest,
	    .size = d->cfg.blob.size,
	    .preallocate = !d->cfg.sparse && getenv("LAZYEROFS_NO_PREALLOCATE") == NULL,
	};
	char name[128];
	int keep[9] = {
	    d->devnull_fd, cache_dirfd, d->run_dirfd, lock_fd, d->ready_fd, d->starter_fd, 0, 1, 2};
	uint64_t held;
	int r;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	/* The daemon leaves by itself when no superblock uses the entry; a SIGTERM now would
	 * hand readers zeros (fact 6). The worker handles SIGTERM: it leaves only when idle. */
	signal(SIGTERM, SIG_IGN);
	umask(077);
	if (chdir("/") < 0)
		_exit(2);
	dup2(d->devnull_fd, 0);
	dup2(d->devnull_fd, 1);
	dup2(d->devnull_fd, 2);
	fetch_close_all_but(keep, ARRAY_SIZE(keep));
	prctl(PR_SET_NAME, "lazyerofs-hold", 0, 0, 0);
	/* Not the mount's arguments (a URL's password, oci.password=) for days in ps. */
	{
		char title[96];

		snprintf(title, sizeof(title), "lazyerofs daemon %.16s", d->cfg.blob.cache_key);
		util_proctitle_set(title);
	}

	log_name(d, name);
	d->log_fd = open_log(d, name);
	util_log_set_prefix("lazyerofs-daemon");
	if (util_log_get_level() < UTIL_LOG_INFO)
		util_log_set_level(UTIL_LOG_INFO);
	if (getenv("LAZYEROFS_DAEMON_DEBUG"))
		util_log_set_level(UTIL_LOG_DEBUG);
	if (d->log_fd < 0)
		d->log_fd = d->devnull_fd;
	util_log_set_target(d->log_fd, 1);
	log_info("starting: entry %s, %s, %" PRIu64 " bytes, chunk %" PRIu64 " KiB, %u requests in flight%s",
		 d->cfg.blob.cache_key, d->cfg.blob.digest[0] ? d->cfg.blob.digest : "no digest",
		 d->cfg.blob.size, d->pol.chunk_size >> 10, d->pol.max_requests,
		 d->pol.prefetch_all ? ", prefetch=all" : "");

	d->sh = util_shared_alloc(sizeof(*d->sh));
	if (!d->sh)
		fetch_fatal(d, errno, "mapping the daemon's shared state: %s", strerror(errno));
	/* Fresh anonymous memory is zero: only what is touched gets backed (the mount table). */
	SH_STORE(d->sh->holder_pid, getpid());
	d->sh->started_ms = util_now_ms();
	if (d->cfg.timeout_given) /* a mount's; a fetch's is only the default */
		SH_STORE(d->sh->timeout_chosen_ms, d->pol.timeout_ms);
	d->sh->hiwater_fd = -1;
	raise_nofile(d);

	if (cache_entry_verified_size(cache_dirfd, p.key, p.digest, &held) > 0 && held != p.size)
		fetch_fatal(d, -EBADMSG,
			    "the manifest gives blob %s as %llu bytes; the cache holds it verified "
			    "against its digest with %llu: the manifest is wrong (the cache entry "
			    "is kept)",
			    p.digest, (unsigned long long)p.size, (unsigned long long)held);
	r = cache_entry_open(cache_dirfd, d->cfg.cache_dir, &p, lock_fd, &d->entry);
	if (r < 0)
		fetch_fatal(d, r, "opening cache entry %s in '%s': %s", p.key, d->cfg.cache_dir,
			    strerror(-r));
	close(cache_dirfd);
	d->record_store = fetch_record_store_new();
	if (!d->record_store)
		log_warning("no shared record of first accesses (%s): a worker replaced after a "
			    "crash starts a new one",
			    strerror(errno));
	/* (Address space only: 40 KiB of index are backed for a Debian minbase.) */
	d->files_kept = fetch_kept_new(FETCH_FILES_MAX_BYTES);
	d->profile_kept = fetch_kept_new(PROFILE_MAX_BYTES);
	if (!d->files_kept || !d->profile_kept)
		log_warning("no shared copy of %s (%s): a worker replaced after a crash starts "
			    "without it",
			    !d->files_kept ? "the file index" : "the profile replayed",
			    strerror(errno));
	r = fetch_trim_init(d);
	if (r < 0)
		log_warning("no record of reads (%s): the entry cannot be trimmed while in use",
			    strerror(-r));
	if (d->entry->rebuilt)
		log_info("created cache entry %s (%s)%s%s", d->entry->data_path,
			 d->entry->preallocated ? "pre-allocated" : "sparse",
			 d->entry->rebuild_reason[0] ? "; the old one was discarded: " : "",
			 d->entry->rebuild_reason);
	if (d->entry->hdr.flags & CACHE_FLAG_VERIFIED)
		d->sh->state = FETCH_STATE_VERIFIED;
	else if ((d->entry->hdr.flags & CACHE_FLAG_COMPLETE) && !d->cfg.blob.digest[0])
		d->sh->state = FETCH_STATE_COMPLETE;

	/* A read-only fd opened before the mark raises no events either (fact 4): mount helpers
	 * get it (op data_fd) to load what an ensure batch made present without an event per
	 * read. Reopened through /proc so it is the very inode of data_fd. */
	{
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", d->entry->data_fd);
		d->rd_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (d->rd_fd < 0)
			log_warning("opening a read-only fd of '%s': %m; mount helpers read "
				    "through events",
				    d->entry->data_path);
	}

	/* Mark before any mount (fact 3). A verified (or complete, unpinned) entry has every
	 * byte: its mark goes at once, so reads cost nothing extra (fact 8); marking it first
	 * still checks the filesystem, so a bad cache directory fails the same way. */
	setup_marks(d);
	if (d->sh->state != FETCH_STATE_RUNNING &&
	    fanotify_mark(d->fan_fd, FAN_MARK_REMOVE, FAN_PRE_ACCESS, d->entry->data_fd, NULL) == 0) {
		SH_STORE(d->sh->marked, 0);
		SH_STORE(d->sh->mark_dropped, 1);
	}
	d->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->ino_fd < 0)
		init_failed(d, errno, "inotify_init1", "fs.inotify.max_user_instances");

	snprintf(d->sock_name, sizeof(d->sock_name), "daemon-%s.sock", d->cfg.blob.cache_key);
	snprintf(d->sock2_name, sizeof(d->sock2_name), "daemon-%s-%d.sock", d->cfg.blob.cache_key,
		 (int)getpid());
	snprintf(d->sock2_path, sizeof(d->sock2_path), "%s/%s", d->cfg.run_dir, d->sock2_name);
	remove_stale_sockets(d);
	r = bind_socket(d, d->sock2_name, &d->listen2_fd, &d->sock2_ino);
	if (r >= 0)
		r = bind_socket(d, d->sock_name, &d->listen_fd, &d->sock_ino);
	if (r < 0)
		fetch_fatal(d, r, "control socket in '%s': %s", d->cfg.run_dir, strerror(-r));
	d->heal_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	fetch_holder_loop(d, 0, -1);
}

/* ---- fetch_spawn ------------------------------------------------------------------------- */

int fetch_spawn(const struct fetch_config *cfg, int cache_dirfd, int run_dirfd, int lock_fd,
		pid_t *ret_pid, struct util_error *err)
{
	_cleanup_close_ int lock = lock_fd, rd = -1, starter_rd = -1, starter_wr = -1;
	char msg[1024];
	size_t len = 0;
	int p[2], s[2], st;
	pid_t pid;
	uint64_t deadline;

	if (pipe2(s, O_CLOEXEC) < 0)
		return -errno;
	starter_rd = s[0];
	starter_wr = s[1];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	rd = p[0];
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(p[1]);
		return util_err_set(err, -e, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		static struct fetch_daemon d;
		pid_t pid2;

		close(p[0]);
		close(starter_wr);
		reset_signals();
		/* Its own session and process group: nothing aimed at the caller's reaches it. */
		if (setsid() < 0)
			_exit(1);
		pid2 = fork();
		if (pid2 < 0) {
			dprintf(p[1], "ERR %d 0 fork: %s\n", errno, strerror(errno));
			_exit(1);
		}
		if (pid2 > 0)
			_exit(0);
		set_oom_score();
		no_core_dumps();
		d.cfg = *cfg;
		d.ready_fd = p[1];
		d.starter_fd = starter_rd;
		d.run_dirfd = run_dirfd;
		d.listen_fd = d.listen2_fd = d.ino_fd = d.fan_fd = d.rd_fd = d.heal_efd = -1;
		d.ns_private = -1;
		d.log_fd = -1;
		d.devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (d.devnull_fd < 0)
			_exit(1);
		policy_from(cfg, &d.pol);
		if (cfg->opts)
			d.oopts = *cfg->opts;
		else
			oci_options_init(&d.oopts);
		/* One request (with the client's own retries) must end within a read's deadline,
		 * so a reader never waits on a fetch that outlives it by much. */
		if (!d.oopts.timeout_ms || d.oopts.timeout_ms > d.pol.timeout_ms)
			d.oopts.timeout_ms = d.pol.timeout_ms;
		d.cfg.opts = &d.oopts;
		holder_main(&d, cache_dirfd, TAKE_FD(lock));
	}
	close(p[1]);
	/* Ours stays open until this process exits (close-on-exec: no program it runs keeps
	 * it): the daemon sees it hang up then. */
	(void)TAKE_FD(starter_wr);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	/* Wait for "OK <pid>" or "ERR <errno> <holder pid> <message>", or EOF if the daemon
	 * died. */
	deadline = util_now_ms() + 120000;
	for (;;) {
		struct pollfd pfd = {.fd = rd, .events = POLLIN};
		uint64_t now = util_now_ms();
		ssize_t n;

		if (now >= deadline) {
			return util_err_set(err, -ETIMEDOUT,
					    "the daemon did not report readiness within 120 s");
		}
		if (poll(&pfd, 1, (int)MIN(deadline - now, (uint64_t)1000)) <= 0)
			continue;
		n = read(rd, msg + len, sizeof(msg) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(msg) - 1 || memchr(msg, '\n', len))
			break;
	}
	msg[len] = 0;
	if (util_startswith(msg, "OK ")) {
		*ret_pid = (pid_t)atoi(msg + 3);
		return 0;
	}
	if (util_startswith(msg, "ERR ")) {
		char *end = NULL, *end2 = NULL;
		long e = strtol(msg + 4, &end, 10), holder = 0;
		char *nl = strchr(msg, '\n');

		if (nl)
			*nl = 0;
		if (end && *end == ' ')
			holder = strtol(end + 1, &end2, 10);
		if (end2 && *end2 == ' ')
			end = end2;
		/* A failed start leaves no daemon behind: return once the holder is gone. */
		if (holder > 0) {
			int pfd = fetch_pidfd_open((pid_t)holder);
			struct pollfd pp = {.fd = pfd, .events = POLLIN};

			if (pfd >= 0) {
				(void)poll(&pp, 1, 10000);
				close(pfd);
			}
		}
		return util_err_set(err, e > 0 && e < 4096 ? -(int)e : -EIO, "%s",
				    end && *end == ' ' ? end + 1 : msg);
	}
	return util_err_set(err, -EIO, "the daemon exited during startup; see %s/daemon-%s.log",
			    cfg->run_dir, cfg->blob.cache_key);
}
