// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The daemon's lifetime, as seen from the superblocks that use the data file (DESIGN fact
 * 13): records of attached and discovered superblocks (in shared memory), each watched with
 * inotify on its root (IN_UNMOUNT when the superblock is shut down), /proc/<pid>/mountinfo
 * rescans when someone opens the data file, and the opens the event threads report.
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
#include <dirent.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/extents.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/mountinfo.h"
#include "util/time.h"
#include "util/u64map.h"
/* ---- superblock records (all under d->lock) ------------------------------------------------ */

struct fetch_mount_rec *fetch_rec_by_dev(struct fetch_daemon *d, uint64_t dev)
{
	for (size_t i = 0; i < FETCH_MOUNTS_USED(d->sh); i++)
		if (d->sh->mounts[i].used && d->sh->mounts[i].dev == dev)
			return &d->sh->mounts[i];
	return NULL;
}

struct fetch_mount_rec *fetch_rec_new(struct fetch_daemon *d)
{
	uint32_t hi = FETCH_MOUNTS_USED(d->sh);

	for (size_t i = 0; i <= hi && i < FETCH_MAX_MOUNTS; i++)
		if (i == hi || !d->sh->mounts[i].used) {
			struct fetch_mount_rec *m = &d->sh->mounts[i];

			/* Field by field: the strings' unused pages stay untouched (not backed). */
			m->used = 1;
			m->wd = -1;
			m->mnt_id = m->dev = 0;
			m->mountpoint[0] = m->source[0] = m->state[0] = m->state_text[0] = 0;
			if (i == hi)
				SH_STORE(d->sh->mounts_hi, hi + 1);
			return &d->sh->mounts[i];
		}
	return NULL;
}

unsigned fetch_rec_count(struct fetch_daemon *d)
{
	unsigned n = 0;

	for (size_t i = 0; i < FETCH_MOUNTS_USED(d->sh); i++)
		n += d->sh->mounts[i].used ? 1 : 0;
	return n;
}

/* Watch the superblock whose root is `path` (a mountpoint, or /proc/self/fd/N). */
int fetch_watch_root(struct fetch_daemon *d, const char *path, int *ret_wd)
{
	/* IN_UNMOUNT and IN_IGNORED come with any mask; IN_DELETE_SELF never fires on a
	 * read-only filesystem. */
	int wd = inotify_add_watch(d->ino_fd, path, IN_DELETE_SELF | IN_ONLYDIR);

	if (wd < 0)
		return -errno;
	*ret_wd = wd;
	return 0;
}

void fetch_set_str(char *dst, size_t len, const char *src)
{
	size_t n;

	if (!len)
		return;
	src = src ? src : "";
	n = strlen(src);
	if (n >= len) {
		/* cut where a character starts, never inside one */
		n = len - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = 0;
}

/* ---- mountinfo --------------------------------------------------------------------------- */

struct rescan {
	struct fetch_daemon *d;
	pid_t pid;
	char root[32]; /* "/proc/PID/root" for another namespace's paths, else "" */
};

/* One mount of the table: watch it when it is an erofs mount of the data file not known yet. */
static int rescan_one(const struct util_mountinfo *mi, void *ud)
{
	struct rescan *rs = ud;
	struct fetch_daemon *d = rs->d;
	uint64_t dev = makedev(mi->major, mi->minor);
	char where[PATH_MAX];
	struct fetch_mount_rec *m;
	struct stat st;
	int wd = -1;

	if (strcmp(mi->fstype, "erofs") != 0 || strcmp(mi->source, d->entry->data_path) != 0)
		return 0;
	pthread_mutex_lock(&d->lock);
	m = fetch_rec_by_dev(d, dev);
	pthread_mutex_unlock(&d->lock);
	if (m)
		return 0;
	if (snprintf(where, sizeof(where), "%s%s", rs->root, mi->mountpoint) >= (int)sizeof(where))
		return 0;
	/* Looking up the mountpoint reads no data (the root inode is in memory). */
	if (stat(where, &st) < 0 || st.st_dev != dev || fetch_watch_root(d, where, &wd) < 0)
		return 0;
	pthread_mutex_lock(&d->lock);
	if (!fetch_rec_by_dev(d, dev) && (m = fetch_rec_new(d))) {
		m->wd = wd;
		m->dev = dev;
		fetch_set_str(m->mountpoint, sizeof(m->mountpoint), mi->mountpoint);
		SH_STORE(d->sh->had_user, 1);
		log_info("found a mount of the entry at '%s'%s", m->mountpoint,
			 rs->pid > 0 ? " (in an opener's mount namespace)" : "");
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Look for erofs mounts of the data file in the mountinfo of `pid` (0: our own), and watch
 * the superblocks not known yet. Another namespace's paths are reached via /proc/PID/root. */
static void rescan_ns(struct fetch_daemon *d, pid_t pid)
{
	struct rescan rs = {.d = d, .pid = pid};
	char path[64];

	if (pid > 0) {
		snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
		snprintf(rs.root, sizeof(rs.root), "/proc/%d/root", (int)pid);
	} else {
		snprintf(path, sizeof(path), "/proc/self/mountinfo");
	}
	(void)util_mountinfo_each(path, rescan_one, &rs);
}

/* (openers that have exited forgotten) */
bool fetch_mount_may_come(struct fetch_daemon *d)
{
	bool any = false;

	for (size_t i = 0; i < ARRAY_SIZE(d->openers); i++)
		if (d->openers[i] > 0) {
			if (kill(d->openers[i], 0) < 0 && errno == ESRCH)
				d->openers[i] = 0;
			else
				any = true;
		}
	return any;
}

void fetch_mounts_rescan(struct fetch_daemon *d)
{
	rescan_ns(d, 0);
	(void)fetch_mount_may_come(d);
	for (size_t i = 0; i < ARRAY_SIZE(d->openers); i++)
		if (d->openers[i] > 0)
			rescan_ns(d, d->openers[i]);
}

void fetch_read_inotify(struct fetch_daemon *d)
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
			for (size_t i = 0; i < FETCH_MOUNTS_USED(d->sh); i++) {
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
bool fetch_read_opens(struct fetch_daemon *d)
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

		/* Only the daemon writes the data file, through fds it never closes (and the
		 * daemon before it may still close its own). */
		if ((v[i].mask & FAN_CLOSE_WRITE) &&
		    !cache_entry_prior_writer(d->entry, v[i].pid)) {
			_cleanup_free_ char *comm = NULL;
			char why[160], path[64];
			size_t len = 0;

			snprintf(path, sizeof(path), "/proc/%d/comm", (int)v[i].pid);
			if (util_read_file(AT_FDCWD, path, 64, 0, &comm, &len) >= 0 && comm)
				comm[strcspn(comm, "\n")] = 0;
			snprintf(why, sizeof(why), "opened for writing by another process (%d, %s)",
				 (int)v[i].pid, comm && comm[0] ? comm : "?");
			fetch_entry_tampered(d, why);
		}
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

/* ---- a mount namespace nobody else uses ---------------------------------------------------- */

#define INIT_MNT_NS_INO 0xEFFFFFF8u
#define INIT_PID_NS_INO 0xEFFFFFFCu /* PROC_PID_INIT_INO: fixed in every kernel */

static int ns_ino(const char *path, uint64_t *ret)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*ret = (uint64_t)st.st_ino;
	return 0;
}

static pid_t parent_of(pid_t pid)
{
	char path[64], line[128];
	pid_t ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "PPid: %d", &ppid) == 1)
			break;
	fclose(f);
	return ppid;
}

/* Does any thread of pid live in namespace ns? 1 yes, 0 no, -1 not known (unreadable). */
static int tasks_in(pid_t pid, uint64_t ns)
{
	char path[96];
	_cleanup_(util_closedirp) DIR *dir = NULL;
	struct dirent *de;
	uint64_t ino = 0;
	int r;
	bool read_one = false;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	r = ns_ino(path, &ino);
	if (r == 0)
		return ino == ns;
	/* A leader gone (a zombie) while its threads live, or a process we may not look at:
	 * its threads, one by one. */
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return errno == ENOENT || errno == ESRCH ? 0 : -1;
	while ((de = readdir(dir))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.20s/ns/mnt", (int)pid, de->d_name);
		if (ns_ino(path, &ino) < 0)
			continue;
		read_one = true;
		if (ino == ns)
			return 1;
	}
	return read_one || r == -ENOENT || r == -ESRCH ? 0 : -1;
}

/* Does pid hold namespace ns open (an nsfs file descriptor, as runtimes keep namespaces)? */
static bool fds_hold(pid_t pid, const char *want)
{
	char path[96], link[64];
	_cleanup_(util_closedirp) DIR *dir = NULL;
	struct dirent *de;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while ((de = readdir(dir))) {
		ssize_t n;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd/%.20s", (int)pid, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = 0;
			if (!strcmp(link, want))
				return true;
		}
	}
	return false;
}

/* A bind mount of the namespace's nsfs file (`unshare --mount=FILE`: kept on purpose)? ud:
 * the file's name, "mnt:[INODE]". */
static int nsfs_one(const struct util_mountinfo *m, void *ud)
{
	return strcmp(m->fstype, "nsfs") == 0 && strcmp(m->root, ud) == 0;
}

/* Does anything but the daemon keep namespace ns: a thread in it (in any process but the
 * daemon's own and their children, credential helpers), an open nsfs file of it, a bind mount
 * of it (in any namespace)? Only asked where /proc shows every process (the daemon in the
 * initial pid namespace); whatever cannot be read counts as a yes. *ret_by_task: a thread. */
static bool ns_kept(struct fetch_daemon *d, uint64_t ns, bool *ret_by_task)
{
	pid_t holder = SH_LOAD(d->sh->holder_pid), me = getpid();
	_cleanup_(util_closedirp) DIR *dir = opendir("/proc");
	_cleanup_(util_u64map_free) struct util_u64map read = UTIL_U64MAP_INIT;
	char want[48], path[64];
	struct dirent *de;

	*ret_by_task = true;
	if (!dir)
		return true;
	snprintf(want, sizeof(want), "mnt:[%" PRIu64 "]", ns);
	while ((de = readdir(dir))) {
		pid_t pid, pp;
		int in;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid == me || pid == holder)
			continue;
		in = tasks_in(pid, ns);
		/* (pid 1 of the initial pid namespace lives in the initial mount namespace; some
		 * sandboxes hide it) */
		if (in < 0 && pid != 1)
			return true;
		if (in > 0 && (pp = parent_of(pid)) != me && pp != holder)
			return true;
	}
	*ret_by_task = false;
	rewinddir(dir);
	while ((de = readdir(dir))) {
		uint64_t pns = 0, *val;
		bool unread = true;
		pid_t pid;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid != me && pid != holder && fds_hold(pid, want))
			return true;
		/* The mount table of each namespace once (that of a process whose namespace
		 * cannot be told, always). */
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
		if (ns_ino(path, &pns) == 0 && util_u64map_add(&read, pns, &unread, &val) < 0)
			unread = true;
		snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
		if (unread && util_mountinfo_each(path, nsfs_one, want) > 0)
			return true;
	}
	return false;
}

struct ns_mounts {
	char **v;
	size_t n;
};

/* Every mount but the root and /proc (the daemon reads its own there), deepest first. */
static int ns_collect(const struct util_mountinfo *m, void *ud)
{
	struct ns_mounts *c = ud;
	char **v, *p;

	if (!strcmp(m->mountpoint, "/") || !strcmp(m->mountpoint, "/proc") ||
	    !strncmp(m->mountpoint, "/proc/", 6))
		return 0;
	v = realloc(c->v, (c->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->v = v;
	p = strdup(m->mountpoint);
	if (!p)
		return -ENOMEM;
	c->v[c->n++] = p;
	return 0;
}

static int by_depth(const void *a, const void *b)
{
	size_t x = strlen(*(char *const *)a), y = strlen(*(char *const *)b);

	return x < y ? 1 : x > y ? -1 : 0;
}

void fetch_ns_abandoned(struct fetch_daemon *d, uint64_t now_ms)
{
	struct ns_mounts c = {0};
	uint64_t ns = 0, init_ns = 0, pid_ns = 0, look_ms;
	bool by_task;
	unsigned done = 0;
	int r;

	if (d->ns_private == 0 || now_ms < d->ns_look_at_ms || d->leaving)
		return;
	look_ms = util_env_u64("LAZYEROFS_NS_LOOK_MS", FETCH_NS_LOOK_MS);
	d->ns_look_at_ms = now_ms + look_ms;
	if (ns_ino("/proc/self/ns/mnt", &ns) < 0)
		return;
	/* init's, or where init's cannot be read (a sandbox's init), the initial namespace's
	 * fixed inode number (0xEFFFFFF8 on Linux 6.18, the init namespaces' range) */
	if (ns_ino("/proc/1/ns/mnt", &init_ns) < 0)
		init_ns = INIT_MNT_NS_INO;
	d->ns_private = ns != init_ns;
	if (!d->ns_private)
		return;
	/* Only where /proc shows every process and every open file: else nothing can tell that
	 * nobody uses the namespace (the daemon in a container's pid namespace dies with it). */
	if (ns_ino("/proc/self/ns/pid", &pid_ns) < 0 || pid_ns != INIT_PID_NS_INO) {
		d->ns_private = 0;
		return;
	}
	if (ns_kept(d, ns, &by_task)) {
		if (!by_task) /* held open or bound: look again, less often (whole /proc) */
			d->ns_look_at_ms = now_ms + 3 * look_ms;
		return;
	}
	/* Private first: an unmount here must never reach a peer in another namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		log_warning("the mount namespace the daemon was started in has no other process "
			    "left, but making its mounts private failed: %m; they stay");
		d->ns_private = 0;
		return;
	}
	r = util_mountinfo_each("/proc/self/mountinfo", ns_collect, &c);
	if (r >= 0) {
		qsort(c.v, c.n, sizeof(*c.v), by_depth);
		for (size_t i = 0; i < c.n; i++)
			done += umount2(c.v[i], MNT_DETACH) == 0;
	}
	for (size_t i = 0; i < c.n; i++)
		free(c.v[i]);
	free(c.v);
	log_warning("the mount namespace the daemon was started in has no process left but the "
		    "daemon's: unmounted its %u mount(s), as its end would have, so that the "
		    "daemon can leave once nothing uses the image",
		    done);
	d->ns_private = 0; /* once */
}
