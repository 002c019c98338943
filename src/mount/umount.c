// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * `lazyerofs umount`: the mountpoint's unique mnt_id names its state file (no directory
 * scan); unmount, tell the daemon which mount left, remove the state file. A daemon that is
 * already gone (stale state) is not an error: the state is cleaned up all the same. A mount
 * of a cache entry without state (made with another LAZYEROFS_RUN_DIR, or its state file
 * removed) is unmounted all the same: its daemon sees the superblock go, as after umount(8).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount/mount.h"
#include "mount/resolve.h"
#include "util/cleanup.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/mountinfo.h"

DEFINE_CLEANUP_FUNC(struct fetch_handle, fetch_handle_free);

/* How long umount waits for the daemon to take note that a mount left. */
#define UMOUNT_DETACH_ANSWER_MS 5000

struct overlay_user {
	const char *layer;
	char overlay[PATH_MAX];
};

/* Does this overlay name the layer among its lower directories (lowerdir=A:B, lowerdir+=A)? */
static int overlay_one(const struct util_mountinfo *m, void *ud)
{
	struct overlay_user *u = ud;
	size_t n = strlen(u->layer);

	if (strcmp(m->fstype, "overlay") != 0)
		return 0;
	for (const char *o = m->super_opts; *o;) {
		size_t len = strcspn(o, ",");
		const char *v = NULL;

		if (!strncmp(o, "lowerdir=", 9))
			v = o + 9;
		else if (!strncmp(o, "lowerdir+=", 10))
			v = o + 10;
		/* its directories, ':' between them, up to the option's end */
		for (; v && v <= o + len; v += strcspn(v, ":,") + 1) {
			if (strcspn(v, ":,") == n && !strncmp(v, u->layer, n)) {
				snprintf(u->overlay, sizeof(u->overlay), "%s", m->mountpoint);
				return 1;
			}
		}
		o += len + (o[len] == ',');
	}
	return 0;
}

/* An overlay keeps its own copy of each lower layer's mount: unmounting the layer succeeds
 * and the image stays in use, served by its daemon, out of `status`. Say so. */
static void warn_overlay_users(const char *mountpoint)
{
	struct overlay_user u = {.layer = mountpoint};

	if (util_mountinfo_each("/proc/self/mountinfo", overlay_one, &u) > 0)
		log_warning("'%s' is a lower layer of the overlay at '%s': the image stays in use "
			    "there (its daemon serves it until that overlay is unmounted), and "
			    "`lazyerofs status` no longer lists it",
			    mountpoint, u.overlay);
}

static int umount_failed(const char *mountpoint, int r, struct util_error *err)
{
	if (r == -EBUSY)
		return util_err_set(err, r,
				    "'%s' is busy (files or directories in it are in use); close "
				    "them, or use 'lazyerofs umount --lazy' to detach it now and "
				    "finish later",
				    mountpoint);
	return util_err_set(err, r, "unmounting '%s': %s", mountpoint, strerror(-r));
}

static int do_umount(const char *run_dir, const char *mountpoint, bool lazy, struct util_error *err)
{
	_cleanup_close_ int run_fd = -1;
	_cleanup_(fetch_handle_freep) struct fetch_handle *h = NULL;
	struct mount_state st = { 0 };
	_cleanup_free_ char *real = realpath(mountpoint, NULL);
	uint64_t mnt_id;
	int r;

	/* The mount, not a symbolic link to it (umount2 follows none). */
	if (real)
		mountpoint = real;
	r = mount_path_mnt_id(mountpoint, &mnt_id);
	if (r == -ENOTCONN) {
		return util_err_set(err, r, "'%s' is not a mount point", mountpoint);
	}
	if (r < 0) {
		return util_err_set(err, r, "'%s': %s", mountpoint, strerror(-r));
	}
	r = mount_find_run_dir(run_dir, O_PATH, &run_fd, err);
	if (r < 0)
		return r;
	r = r ? mount_state_read(run_fd, mnt_id, &st) : -ENOENT;
	if (r == -EBADMSG) {
		/* A damaged state file tells nothing: as without one, and it goes. */
		log_warning("the state file of '%s' in '%s' is damaged; removing it", mountpoint,
			    run_dir);
		(void)mount_state_remove(run_fd, mnt_id);
		r = -ENOENT;
	}
	if (r == -ENOENT) {
		/* No state here: a mount of a cache entry all the same? */
		int ours = mount_is_entry_mount(mountpoint);

		if (ours < 0)
			return util_err_set(err, ours, "reading the mount table for '%s': %s",
					    mountpoint, strerror(-ours));
		if (ours) {
			if (umount2(mountpoint, (lazy ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW) < 0)
				return umount_failed(mountpoint, -errno, err);
			log_warning(
			    "'%s' had no state in '%s' (a bind mount of a lazyerofs "
			    "mount, mounted with another LAZYEROFS_RUN_DIR, or its state file "
			    "removed); unmounted it all the same: its daemon leaves once "
			    "nothing uses the image",
			    mountpoint, run_dir);
			return 0;
		}
	}
	if (r == -ENOENT || r == -EPERM) {
		return util_err_set(err, -ENOTCONN,
				    "'%s' is not a lazyerofs mount (no state in '%s')", mountpoint,
				    run_dir);
	}
	if (r < 0) {
		return util_err_set(err, r, "reading the state of '%s' in '%s': %s", mountpoint,
				    run_dir, strerror(-r));
	}

	if (umount2(mountpoint, (lazy ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW) < 0) {
		r = umount_failed(mountpoint, -errno, err);
		mount_state_done(&st);
		return r;
	}
	warn_overlay_users(mountpoint);

	/* The mount is gone; from here on nothing may fail the command, nor wait long for a
	 * daemon that does not answer (the daemon sees the superblock go by itself). */
	if (fetch_connect_timeout(st.socket, mount_env_answer_wait_ms(UMOUNT_DETACH_ANSWER_MS),
				  &h) >= 0) {
		r = fetch_detach(h, mnt_id);
		if (r < 0)
			log_debug("telling the daemon (pid %d) that mount %llu left: %s", (int)st.pid,
				  (unsigned long long)mnt_id, strerror(-r));
	} else {
		log_debug("daemon of '%s' (pid %d) is gone; cleaning up its state", mountpoint,
			  (int)st.pid);
	}
	r = mount_state_remove(run_fd, mnt_id);
	if (r < 0)
		log_warning("removing the state file of mount %llu: %s", (unsigned long long)mnt_id,
			    strerror(-r));
	mount_state_done(&st);
	return 0;
}

int mount_umount(const char *run_dir, const char *mountpoint, bool lazy, struct util_error *err)
{
	int r = do_umount(run_dir, mountpoint, lazy, err);

	if (r < 0)
		mount_sanitize_line(err ? err->message : NULL);
	return r;
}
