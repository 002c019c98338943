// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * The kernel side of a mount: a file-backed EROFS mount made with the new mount API
 * (fsopen/fsconfig/fsmount/move_mount) so that the kernel's own error strings reach the
 * user, and unique mount ids (STATX_MNT_ID_UNIQUE, statmount(2)) that key the state files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mount/mount.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/mountinfo.h"

#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif
#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif
#ifndef SYS_statmount
#define SYS_statmount 457
#endif
#ifndef STATMOUNT_SB_BASIC
#define STATMOUNT_SB_BASIC 0x00000001U
#endif

/* struct mnt_id_req of <linux/mount.h> (6.8), version 0. */
struct kmount_id_req {
	uint32_t size;
	uint32_t spare;
	uint64_t mnt_id;
	uint64_t param;
};

/* struct fs_sysfs_path and FS_IOC_GETFSSYSFSPATH of <linux/fs.h> (6.9). */
struct kmount_sysfs_path {
	uint8_t len;
	uint8_t name[128];
};
#define KMOUNT_GETFSSYSFSPATH _IOR(0x15, 1, struct kmount_sysfs_path)

/* The mount's id: with STATX_MNT_ID_UNIQUE the unique one (never reused), with STATX_MNT_ID
 * the one mountinfo shows (reused once the mount is gone). */
static int statx_mnt(int dirfd, const char *path, int flags, unsigned mask, uint64_t *ret_id,
		     bool *ret_root)
{
	struct statx stx;

	if (statx(dirfd, path, flags | AT_NO_AUTOMOUNT, mask, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & mask))
		return -EOPNOTSUPP; /* the unique one: kernel before 6.8 */
	*ret_id = stx.stx_mnt_id;
	if (ret_root)
		*ret_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
			    (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	return 0;
}

int mount_path_mnt_id(const char *path, uint64_t *ret)
{
	bool root = false;
	uint64_t id = 0;
	int r;

	r = statx_mnt(AT_FDCWD, path, 0, STATX_MNT_ID_UNIQUE, &id, &root);
	if (r < 0)
		return r;
	if (!root)
		return -ENOTCONN;
	*ret = id;
	return 0;
}

int mount_id_exists(uint64_t mnt_id, const char *mountpoint)
{
	struct kmount_id_req req = { .size = sizeof(req), .mnt_id = mnt_id,
				     .param = STATMOUNT_SB_BASIC };
	uint64_t buf[64];
	uint64_t id = 0;

	if (syscall(SYS_statmount, &req, buf, sizeof(buf), 0) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	if (errno != ENOSYS)
		return -errno;
	/* No statmount(2): the mountpoint still shows this very mount or it is gone. */
	if (!mountpoint || statx_mnt(AT_FDCWD, mountpoint, 0, STATX_MNT_ID_UNIQUE, &id, NULL) < 0)
		return 0;
	return id == mnt_id;
}

struct entry_mount {
	uint64_t id; /* STATX_MNT_ID, as mountinfo gives it */
	int ours;
};

/* Is this the mount, and its source the data file of a cache entry? */
static int entry_mount_one(const struct util_mountinfo *m, void *ud)
{
	struct entry_mount *e = ud;

	if (m->id != e->id)
		return 0;
	e->ours = strcmp(m->fstype, "erofs") == 0 && cache_entry_is_data_path(m->source);
	return 1;
}

int mount_is_entry_mount(const char *mountpoint)
{
	struct entry_mount e = {0};
	int r;

	r = statx_mnt(AT_FDCWD, mountpoint, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &e.id, NULL);
	if (r < 0)
		return r;
	r = util_mountinfo_each("/proc/self/mountinfo", entry_mount_one, &e);
	return r < 0 ? r : e.ours;
}

/* The fs context fd speaks "e msg" / "w msg" / "i msg" lines after a failure. */
static void read_fs_messages(int fsfd, char *out, size_t len)
{
	size_t off = strlen(out);

	for (int i = 0; i < 8; i++) {
		char msg[512];
		ssize_t n = read(fsfd, msg, sizeof(msg) - 1);

		if (n <= 0)
			break;
		msg[n] = 0;
		while (n > 0 && msg[n - 1] == '\n')
			msg[--n] = 0;
		if (n < 2 || msg[1] != ' ')
			continue;
		if (off < len)
			off += (size_t)snprintf(out + off, len - off, "%s%s", off ? "; " : "",
						msg + 2);
	}
}

/*
 * Set the read-ahead of a new mount (DESIGN fact 17). A file-backed EROFS superblock has a
 * backing device info of its own, named as the superblock is in sysfs ("erofs/erofs-N" gives
 * /sys/class/bdi/erofs-N). Best effort: a kernel without the ioctl keeps its default.
 */
static void set_readahead(int mfd, unsigned kb)
{
	struct kmount_sysfs_path p = {0};
	_cleanup_close_ int root = -1, fd = -1;
	const char *name;
	char path[256], val[16];
	int n;

	/* The mount's fd is O_PATH, which takes no ioctl: its root, opened (no data read). */
	root = openat(mfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0 || ioctl(root, KMOUNT_GETFSSYSFSPATH, &p) < 0) {
		log_debug("the mount's read-ahead stays the kernel's: no sysfs name (%m)");
		return;
	}
	p.name[MIN(p.len, sizeof(p.name) - 1)] = 0;
	name = strrchr((const char *)p.name, '/');
	name = name ? name + 1 : (const char *)p.name;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", name);
	n = snprintf(val, sizeof(val), "%u", kb);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, (size_t)n) != n)
		log_debug("the mount's read-ahead stays the kernel's: %s: %m", path);
	else
		log_debug("read-ahead of the mount: %u KiB (%s)", kb, path);
}

int mount_kernel_erofs(const char *source, uint64_t attr, unsigned readahead_kb, int *ret_mfd,
		       uint64_t *ret_mnt_id, struct util_error *err)
{
	_cleanup_close_ int fsfd = -1, mfd = -1;
	char kmsg[512] = "";
	const char *step;
	uint64_t id = 0;
	int r;

	fsfd = fsopen("erofs", FSOPEN_CLOEXEC);
	if (fsfd < 0) {
		r = -errno;
		return util_err_set(
		    err, r, "cannot create an EROFS mount: %s%s", strerror(-r),
		    r == -ENODEV ? " (is the erofs module available? try 'modprobe erofs')" : "");
	}
	step = "source";
	if (fsconfig(fsfd, FSCONFIG_SET_STRING, "source", source, 0) < 0)
		goto fail;
	step = "ro";
	if (fsconfig(fsfd, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0)
		goto fail;
	step = "create";
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		goto fail;
	step = "fsmount";
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned int)attr);
	if (mfd < 0)
		goto fail;
	/* The id of this very mount, which move_mount(2) keeps. */
	r = statx_mnt(mfd, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE, &id, NULL);
	if (r < 0) {
		return util_err_set(err, r,
				    "cannot read the new mount's id: %s (needs Linux 6.8 or later)",
				    strerror(-r));
	}
	if (readahead_kb)
		set_readahead(mfd, readahead_kb);
	*ret_mfd = TAKE_FD(mfd);
	*ret_mnt_id = id;
	return 0;
fail:
	r = -errno;
	read_fs_messages(fsfd, kmsg, sizeof(kmsg));
	return util_err_set(err, r, "the kernel refused the EROFS mount (%s): %s%s%s", step,
			    strerror(-r), kmsg[0] ? ": " : "", kmsg);
}

int mount_kernel_place(int mfd, int target_fd, struct util_error *err)
{
	int r;

	if (move_mount(mfd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) ==
	    0)
		return 0;
	r = -errno;
	return util_err_set(err, r, "the kernel refused the EROFS mount (move_mount): %s",
			    strerror(-r));
}
