// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Starting the daemon and its holder process. fetch_spawn() forks twice (setsid in between)
 * so the daemon is detached from the caller, and waits on a pipe until the daemon reports
 * readiness or an error. The holder opens the cache entry (its O_RDWR data fd is opened
 * before the mark: fact 4), creates the fanotify group and marks the data file (fact 3: before
 * any mount), then forks the worker and waits for it; when a worker dies, the holder starts a
 * replacement that inherits every fd and takes over the events the dead one had read (fact 6).
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fetch/fanotify.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/strutil.h"

uint64_t fetch_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	uint64_t v;

	if (s && util_parse_u64(s, &v) == 0 && v > 0)
		return v;
	return dflt;
}

static void policy_from(const struct fetch_config *cfg, struct fetch_policy *p, unsigned *nfetch)
{
	fetch_policy_default(p);
	p->chunk_size =
	    cfg->chunk_size ? cfg->chunk_size : env_u64("LAZYEROFS_CHUNK_SIZE", p->chunk_size);
	p->ra_max =
	    cfg->readahead_max ? cfg->readahead_max : env_u64("LAZYEROFS_READAHEAD_MAX", p->ra_max);
	p->max_job_bytes = env_u64("LAZYEROFS_MAX_JOB", p->max_job_bytes);
	p->ra_initial = env_u64("LAZYEROFS_READAHEAD_INITIAL", p->ra_initial);
	p->max_side_jobs = (unsigned)env_u64("LAZYEROFS_SIDE_JOBS", p->max_side_jobs);
	p->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 60000;
	p->prefetch_all = cfg->prefetch_all;
	fetch_policy_fix(p);
	*nfetch = cfg->fetch_threads ? cfg->fetch_threads
				     : (unsigned)env_u64("LAZYEROFS_FETCH_THREADS", 4);
	*nfetch = MAX(1u, MIN(*nfetch, 16u));
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
	if (d->ready_fd >= 0)
		dprintf(d->ready_fd, "ERR %d %s\n", err < 0 ? -err : err, msg);
	_exit(2);
}

/* Close everything inherited from the caller but what the daemon needs: a mount helper's
 * other fds (a pipe of `$(lazyerofs mount ...)`, registry connections) must not leak. */
static void close_all_but(const int *keep, size_t n)
{
	int sorted[16];
	unsigned lo = 0;

	memcpy(sorted, keep, n * sizeof(int));
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			int t = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		if (sorted[i] < 0)
			continue;
		if ((unsigned)sorted[i] > lo)
			close_range(lo, (unsigned)sorted[i] - 1, 0);
		lo = (unsigned)sorted[i] + 1;
	}
	close_range(lo, ~0u, 0);
}

static int bind_socket(struct fetch_daemon *d, const char *name, int *ret_fd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;
	int n;

	/* Through the run directory's fd: short enough for sun_path whatever its depth. */
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", d->run_dirfd, name);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* We hold the entry lock: a socket by this name is a dead daemon's leftover. */
	(void)unlinkat(d->run_dirfd, name, 0);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	if (fchmodat(d->run_dirfd, name, 0600, 0) < 0)
		return -errno;
	if (listen(fd, 64) < 0)
		return -errno;
	*ret_fd = TAKE_FD(fd);
	return 0;
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
		fetch_fatal(d, err,
			     "fanotify_init(FAN_CLASS_PRE_CONTENT): %s; this kernel lacks fanotify "
			     "pre-content events (Linux 6.14 or later is needed)",
			     strerror(err));
	}
	if (fanotify_mark(d->fan_fd, FAN_MARK_ADD, FAN_PRE_ACCESS, e->data_fd, NULL) < 0) {
		int err = errno;

		cache_fs_name(e->data_fd, fs, sizeof(fs));
		if (err == EOPNOTSUPP || err == EINVAL || err == EXDEV)
			fetch_fatal(d, EOPNOTSUPP,
				     "cache directory '%s' is on %s, which refuses fanotify "
				     "pre-content marks; use cache=DIR (or LAZYEROFS_CACHE_DIR) on "
				     "ext4, xfs or btrfs",
				     d->cfg.cache_dir, fs);
		fetch_fatal(d, err, "fanotify_mark of the cache file '%s': %s", e->data_path,
			     strerror(err));
	}
	d->sh->marked = 1;
}

static _Noreturn void holder_main(struct fetch_daemon *d, int cache_dirfd, int lock_fd)
{
	struct cache_open_params p = {
	    .key = d->cfg.blob.cache_key,
	    .digest = d->cfg.blob.digest,
	    .size = d->cfg.blob.size,
	    .preallocate = getenv("LAZYEROFS_NO_PREALLOCATE") == NULL,
	};
	char name[128];
	int keep[8] = {d->devnull_fd, cache_dirfd, d->run_dirfd, lock_fd, d->ready_fd, 0, 1, 2};
	int logfd, r;
	uint64_t window_start = 0;
	unsigned window_restarts = 0;

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
	close_all_but(keep, ARRAY_SIZE(keep));
	prctl(PR_SET_NAME, "lazyerofs-hold", 0, 0, 0);

	snprintf(name, sizeof(name), "daemon-%s.log", d->cfg.blob.cache_key);
	logfd = openat(d->run_dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
		       0600);
	util_log_set_prefix("lazyerofs-daemon");
	if (util_log_get_level() < UTIL_LOG_INFO)
		util_log_set_level(UTIL_LOG_INFO);
	if (getenv("LAZYEROFS_DAEMON_DEBUG"))
		util_log_set_level(UTIL_LOG_DEBUG);
	util_log_set_target(logfd >= 0 ? logfd : d->devnull_fd, 1);
	log_info("starting: entry %s, %s, %" PRIu64 " bytes, chunk %" PRIu64 " KiB, %u fetchers%s",
		 d->cfg.blob.cache_key, d->cfg.blob.digest[0] ? d->cfg.blob.digest : "no digest",
		 d->cfg.blob.size, d->pol.chunk_size >> 10, d->nfetchers,
		 d->pol.prefetch_all ? ", prefetch=all" : "");

	d->sh =
	    mmap(NULL, sizeof(*d->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (d->sh == MAP_FAILED)
		fetch_fatal(d, errno, "mapping the daemon's shared state: %s", strerror(errno));
	memset(d->sh, 0, sizeof(*d->sh));
	d->sh->holder_pid = getpid();
	d->sh->started_ms = fetch_now_ms();
	d->sh->hiwater_fd = -1;

	r = cache_entry_open(cache_dirfd, d->cfg.cache_dir, &p, lock_fd, &d->entry);
	if (r < 0)
		fetch_fatal(d, r, "opening cache entry %s in '%s': %s", p.key, d->cfg.cache_dir,
			     strerror(-r));
	close(cache_dirfd);
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
	    fanotify_mark(d->fan_fd, FAN_MARK_REMOVE, FAN_PRE_ACCESS, d->entry->data_fd, NULL) == 0)
		d->sh->marked = 0;
	d->notif_fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK,
				    O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (d->notif_fd >= 0 &&
	    fanotify_mark(d->notif_fd, FAN_MARK_ADD, FAN_OPEN | FAN_CLOSE_WRITE, d->entry->data_fd,
			  NULL) < 0) {
		log_warning("fanotify notification mark: %m; relying on attach alone");
		close(d->notif_fd);
		d->notif_fd = -1;
	}
	d->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->ino_fd < 0)
		fetch_fatal(d, errno, "inotify_init1: %s", strerror(errno));

	snprintf(d->sock_name, sizeof(d->sock_name), "daemon-%s.sock", d->cfg.blob.cache_key);
	snprintf(d->sock2_name, sizeof(d->sock2_name), "daemon-%s-%d.sock", d->cfg.blob.cache_key,
		 (int)getpid());
	snprintf(d->sock2_path, sizeof(d->sock2_path), "%s/%s", d->cfg.run_dir, d->sock2_name);
	r = bind_socket(d, d->sock2_name, &d->listen2_fd);
	if (r >= 0)
		r = bind_socket(d, d->sock_name, &d->listen_fd);
	if (r < 0)
		fetch_fatal(d, r, "control socket in '%s': %s", d->cfg.run_dir, strerror(-r));

	for (;;) {
		bool takeover = d->sh->restarts > 0;
		pid_t pid;
		int st;

		pid = fork();
		if (pid < 0) {
			if (!d->sh->ready)
				fetch_fatal(d, errno, "fork: %s", strerror(errno));
			log_error("fork of a replacement worker: %m; retrying");
			sleep(1);
			continue;
		}
		if (pid == 0)
			fetch_worker_main(d, takeover);
		if (d->ready_fd >= 0) {
			/* The worker reports readiness; the caller sees EOF if it dies first. */
			close(d->ready_fd);
			d->ready_fd = -1;
		}
		while (waitpid(pid, &st, 0) < 0)
			if (errno != EINTR)
				_exit(3);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			break;
		if (!d->sh->ready) {
			log_error("the worker failed to start (status 0x%x)", st);
			_exit(2);
		}
		if (d->sh->exiting) {
			log_warning("the worker died while leaving (status 0x%x)", st);
			break;
		}
		if (WIFSIGNALED(st))
			log_error("worker %d killed by signal %d; starting a replacement", (int)pid,
				  WTERMSIG(st));
		else
			log_error("worker %d exited with status %d; starting a replacement",
				  (int)pid, WEXITSTATUS(st));
		__atomic_fetch_add(&d->sh->restarts, 1, __ATOMIC_RELAXED);
		/* Crash loops must not spin, but the holder never gives up: without a worker the
		 * events would wait, and without the holder readers would get zeros. */
		if (fetch_now_ms() - window_start > 10000) {
			window_start = fetch_now_ms();
			window_restarts = 0;
		}
		if (++window_restarts > 5)
			sleep(1);
	}
	log_info("holder exiting");
	_exit(0);
}

/* ---- fetch_spawn ------------------------------------------------------------------------- */

int fetch_spawn(const struct fetch_config *cfg, int cache_dirfd, int run_dirfd, int lock_fd,
		pid_t *ret_pid, char *errbuf, size_t errlen)
{
	_cleanup_close_ int lock = lock_fd, rd = -1;
	char msg[1024];
	size_t len = 0;
	int p[2], st;
	pid_t pid;
	uint64_t deadline;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	rd = p[0];
	pid = fork();
	if (pid < 0) {
		int err = errno;

		close(p[1]);
		snprintf(errbuf, errlen, "fork: %s", strerror(err));
		return -err;
	}
	if (pid == 0) {
		static struct fetch_daemon d;
		pid_t pid2;

		close(p[0]);
		if (setsid() < 0)
			_exit(1);
		pid2 = fork();
		if (pid2 < 0) {
			dprintf(p[1], "ERR %d fork: %s\n", errno, strerror(errno));
			_exit(1);
		}
		if (pid2 > 0)
			_exit(0);
		d.cfg = *cfg;
		d.ready_fd = p[1];
		d.run_dirfd = run_dirfd;
		d.listen_fd = d.listen2_fd = d.notif_fd = d.ino_fd = d.fan_fd = d.rd_fd = -1;
		d.devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (d.devnull_fd < 0)
			_exit(1);
		policy_from(cfg, &d.pol, &d.nfetchers);
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
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	/* Wait for "OK <pid>" or "ERR <errno> <message>", or EOF if the daemon died. */
	deadline = fetch_now_ms() + 120000;
	for (;;) {
		struct pollfd pfd = {.fd = rd, .events = POLLIN};
		uint64_t now = fetch_now_ms();
		ssize_t n;

		if (now >= deadline) {
			snprintf(errbuf, errlen,
				 "the daemon did not report readiness within 120 s");
			return -ETIMEDOUT;
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
		char *end = NULL;
		long e = strtol(msg + 4, &end, 10);
		char *nl = strchr(msg, '\n');

		if (nl)
			*nl = 0;
		snprintf(errbuf, errlen, "%s", end && *end == ' ' ? end + 1 : msg);
		return e > 0 && e < 4096 ? -(int)e : -EIO;
	}
	snprintf(errbuf, errlen, "the daemon exited during startup; see %s/daemon-%s.log",
		 cfg->run_dir, cfg->blob.cache_key);
	return -EIO;
}
