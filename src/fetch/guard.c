// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The daemon's two processes watch each other, each through a pidfd of the other (poll says
 * when it is gone, whether or not it is our child), and the survivor replaces the dead one:
 * the holder forks a new worker, which takes over the events its predecessor read (fact 6);
 * the worker forks a new holder. Both hold the fanotify group fd, the pre-mark data fds, the
 * sockets and the shared memory, so a new process of either role inherits all of them.
 *
 * The window where the kernel fails open: readers get zeros only once the last group fd is
 * closed (fact 6), i.e. when both processes are dead. After one dies, the survivor's guard
 * wakes (it blocks in poll on the pidfd, no periodic check) and forks at once, so both are
 * needed to die within that fork's latency (well under a millisecond on an idle machine,
 * a few milliseconds under load) -- e.g. one SIGKILL sent to both, a kill of their process
 * group or cgroup (they have their own: holder.c), or the machine running out of memory for
 * both at once. A third process would only narrow it further; nothing can close it while
 * the kernel fails open.
 *
 * A new holder is forked from the multithreaded worker: it only uses what a fork keeps
 * usable (its own fds, the shared memory, plain syscalls, the log file without syslog); the
 * worker it forks later re-initializes every worker-only structure and every lock (the
 * entry's too: worker_state_init).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/internal.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

int fetch_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int fetch_pidfd_wait(int pidfd, int wake_fd, int timeout_ms)
{
	uint64_t end = timeout_ms > 0 ? util_now_ms() + (uint64_t)timeout_ms : 0;

	for (;;) {
		struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN},
				      {.fd = wake_fd, .events = POLLIN}};
		int n = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
		uint64_t now;

		if (n > 0)
			return (p[0].revents ? FETCH_PID_GONE : 0) |
			       (wake_fd >= 0 && p[1].revents ? FETCH_PID_WOKEN : 0);
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return FETCH_PID_GONE; /* (nothing left to wait with) */
		if (timeout_ms > 0) {
			now = util_now_ms();
			if (now >= end)
				return 0;
			timeout_ms = (int)(end - now);
		}
	}
}

/* Wait until the process behind pidfd has exited (or stop_fd becomes readable: returns
 * false). Without a pidfd, poll for its pid. */
static bool wait_gone(int pidfd, pid_t pid, int stop_fd)
{
	struct pollfd p = {.fd = stop_fd, .events = POLLIN};

	if (pidfd >= 0)
		return !(fetch_pidfd_wait(pidfd, stop_fd, -1) & FETCH_PID_WOKEN);
	while (kill(pid, 0) == 0 || errno != ESRCH)
		if (poll(&p, stop_fd >= 0 ? 1 : 0, 100) > 0)
			return false;
	return true;
}

/* A pidfd of our parent `pid`, checked to be that process (it may have died before we
 * opened it: then -ESRCH, and it must be replaced at once). */
static int parent_pidfd(pid_t pid)
{
	int fd = fetch_pidfd_open(pid);

	if (fd < 0)
		return errno == ESRCH ? -ESRCH : -1;
	if (getppid() != pid) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

/* Has the process behind pidfd exited within timeout_ms (false as soon as efd, an eventfd,
 * is written to: it is read)? */
static bool exited_within(int pidfd, int efd, int timeout_ms)
{
	int r = fetch_pidfd_wait(pidfd, efd, timeout_ms);
	eventfd_t v;

	if (r & FETCH_PID_WOKEN)
		(void)eventfd_read(efd, &v);
	return r & FETCH_PID_GONE;
}

_Noreturn void fetch_holder_loop(struct fetch_daemon *d, pid_t worker, int pidfd)
{
	uint64_t window_start = 0;
	unsigned window_restarts = 0;

	for (;;) {
		int st = 0;
		bool have_status;

		if (worker <= 0) {
			bool takeover = __atomic_load_n(&d->sh->ready, __ATOMIC_ACQUIRE) != 0;
			pid_t pid = fork();

			if (pid < 0) {
				if (!SH_LOAD(d->sh->ready))
					fetch_fatal(d, errno, "fork: %s", strerror(errno));
				log_error("fork of a replacement worker: %m; retrying");
				sleep(1);
				continue;
			}
			if (pid == 0)
				fetch_worker_main(d, takeover);
			if (d->ready_fd >= 0) {
				/* The worker reports readiness; the caller sees EOF if it dies
				 * first. */
				close(d->ready_fd);
				d->ready_fd = -1;
			}
			if (d->starter_fd >= 0) {
				/* The first worker's alone: its number must be free here, where the
				 * worker's sockets are taken at their own numbers (a replacement
				 * once took the listening socket for it, and closed it). */
				close(d->starter_fd);
				d->starter_fd = -1;
			}
			worker = pid;
			pidfd = fetch_pidfd_open(pid); /* our child: its pid stays until we reap */
		}
		/* Reap it if it is our child (a worker that replaced a holder is not): once the
		 * pidfd says it exited, or at once without a pidfd (our child) or ECHILD. */
		if (pidfd >= 0)
			while (!exited_within(pidfd, d->heal_efd, FETCH_HEAL_MS))
				fetch_holder_follow(d, pidfd);
		for (;;) {
			pid_t r = waitpid(worker, &st, 0);

			if (r < 0 && errno == EINTR)
				continue;
			have_status = r == worker;
			break;
		}
		if (!have_status && pidfd < 0)
			(void)wait_gone(-1, worker, -1);
		if (pidfd >= 0)
			close(pidfd);
		pidfd = -1;
		if (__atomic_load_n(&d->sh->worker_done, __ATOMIC_ACQUIRE))
			break;
		if (!SH_LOAD(d->sh->ready)) {
			log_error("the worker failed to start (status 0x%x)", st);
			_exit(2);
		}
		if (SH_LOAD(d->sh->exiting)) {
			log_warning("the worker died while leaving (status 0x%x)", st);
			break;
		}
		fetch_run_dir_refresh(d);
		if (have_status && WIFSIGNALED(st))
			log_error("worker %d killed by signal %d; starting a replacement",
				  (int)worker, WTERMSIG(st));
		else if (have_status && WIFEXITED(st))
			log_error("worker %d exited with status %d; starting a replacement",
				  (int)worker, WEXITSTATUS(st));
		else
			log_error("worker %d died; starting a replacement", (int)worker);
		worker = 0;
		__atomic_fetch_add(&d->sh->restarts, 1, __ATOMIC_RELAXED);
		/* Crash loops must not spin, but the holder never gives up: without a worker the
		 * events would wait (each until its own deadline, which a replacement honours),
		 * and without the holder readers would get zeros. */
		if (util_now_ms() - window_start > 10000) {
			window_start = util_now_ms();
			window_restarts = 0;
		}
		if (++window_restarts > 5)
			usleep(200000);
	}
	log_info("holder exiting");
	_exit(0);
}

/* In the child the worker forked: become the holder. */
static _Noreturn void become_holder(struct fetch_daemon *d, pid_t worker)
{
	int keep[32];
	size_t n = fetch_essential_fds(d, keep, ARRAY_SIZE(keep));
	int pidfd;

	/* Only this thread exists here; drop every fd but the daemon's own (event fds, client
	 * connections and registry sockets are the worker's). */
	fetch_close_all_but(keep, n);
	signal(SIGTERM, SIG_IGN);
	prctl(PR_SET_NAME, "lazyerofs-hold", 0, 0, 0);
	util_log_set_target(d->log_fd, 0); /* syslog's lock may be held by a worker thread */
	__atomic_store_n(&d->sh->holder_pid, getpid(), __ATOMIC_RELEASE);
	pidfd = parent_pidfd(worker);
	if (pidfd == -ESRCH)
		worker = 0; /* the worker died too: start one now */
	else if (pidfd < 0)
		pidfd = -1;
	log_info("holder %d replaces the dead holder (worker %d)", (int)getpid(), (int)worker);
	fetch_holder_loop(d, worker, pidfd);
}

void *fetch_guard_thread(void *arg)
{
	struct fetch_daemon *d = arg;
	pid_t holder = __atomic_load_n(&d->sh->holder_pid, __ATOMIC_ACQUIRE);
	int pidfd = parent_pidfd(holder);

	prctl(PR_SET_NAME, "lzfetch-guard", 0, 0, 0);
	for (;;) {
		pid_t pid, me = getpid();

		if (pidfd != -ESRCH && !wait_gone(pidfd, holder, d->stop_efd))
			break; /* the worker is leaving */
		if (pidfd >= 0)
			close(pidfd);
		if (__atomic_load_n(&d->sh->exiting, __ATOMIC_ACQUIRE))
			break; /* leaving anyway: the worker answers everything before it exits */
		(void)waitpid(holder, NULL, WNOHANG); /* a holder we forked is our child */
		pid = fork();
		if (pid < 0) {
			log_error("fork of a replacement holder: %m; retrying");
			usleep(100000);
			pidfd = -ESRCH;
			continue;
		}
		if (pid == 0)
			become_holder(d, me);
		__atomic_fetch_add(&d->sh->holder_restarts, 1, __ATOMIC_RELAXED);
		log_error("holder %d died; started holder %d", (int)holder, (int)pid);
		holder = pid;
		pidfd = fetch_pidfd_open(pid);
		if (pidfd < 0)
			pidfd = -1;
	}
	if (pidfd >= 0)
		close(pidfd);
	return NULL;
}
