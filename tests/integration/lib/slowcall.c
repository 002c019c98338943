// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * LD_PRELOAD shim for tests: widens the windows of `lazyerofs mount` between its steps.
 * SLOWCALL=NAME and SLOWCALL_MS=N make that call sleep N ms: fsopen(2) and move_mount(2)
 * before they run, renameat(2) onto an all-digit name (a state file) after it ran.
 * SLOWCALL_MARK=PATH gets the call's name appended when its sleep starts. Only the process
 * that loaded the shim sleeps, not the daemon it forks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pid_t loaded_by;

__attribute__((constructor)) static void slowcall_init(void)
{
	loaded_by = getpid();
}

static void slowcall_sleep(const char *name)
{
	const char *ms = getenv("SLOWCALL_MS"), *mark = getenv("SLOWCALL_MARK");
	const char *which = getenv("SLOWCALL");
	struct timespec ts;
	long v;

	if (!ms || !which || strcmp(which, name) || getpid() != loaded_by)
		return;
	if (mark) {
		int fd = open(mark, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			(void)!write(fd, name, strlen(name));
			(void)!write(fd, "\n", 1);
			close(fd);
		}
	}
	v = atol(ms);
	ts = (struct timespec){v / 1000, (v % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

int renameat(int od, const char *o, int nd, const char *n)
{
	int (*real)(int, const char *, int, const char *) = dlsym(RTLD_NEXT, "renameat");
	int r = real(od, o, nd, n);

	if (r == 0 && n[0] && strspn(n, "0123456789") == strlen(n))
		slowcall_sleep("renameat");
	return r;
}

int fsopen(const char *fs, unsigned int flags)
{
	int (*real)(const char *, unsigned int) = dlsym(RTLD_NEXT, "fsopen");

	slowcall_sleep("fsopen");
	return real(fs, flags);
}

int move_mount(int fd, const char *from, int tfd, const char *to, unsigned int flags)
{
	int (*real)(int, const char *, int, const char *, unsigned int) =
	    dlsym(RTLD_NEXT, "move_mount");

	slowcall_sleep("move_mount");
	return real(fd, from, tfd, to, flags);
}
