// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
/*
 * Shared objects ahead of the dynamic loader. A program started from one of our mounts has
 * its loader open the objects it needs one after the other, each only once the one before
 * it is mapped: on a long link a round trip each (apt-config: fifteen libraries, 1.2 s at
 * 100 Mbit/s + RTT 50 ms). When a reader waits for the network, this thread looks at its
 * executable (/proc/PID/exe); if that lies on one of our mounts (or an overlay, a container's
 * root, shows it from one: file_of_ours), or in another layer of such a root, it reads the
 * executable's needed objects (elf.h), finds them as the loader would (run path, with $ORIGIN the
 * directory of the object that names it, then the system's library directories, inside the
 * reader's root), and fetches them all, a request each, whole, as the scheduler fetches a
 * file faulted in at several places (fetch_sched_whole_limit): larger first, and over a long
 * link one after the other at the link's rate (paced), so that each arrives as soon as it
 * can. It reads each object as soon as it is present, and what that one needs is on its way
 * while the others still arrive (apt-config: 1,252 -> 669-748 ms; paced 454-483).
 *
 * It reads only what is present (an object is read once its fetch has ended), through the
 * mount, so its own events take the fast path (dispatch.c answers the daemon's own reads of
 * present bytes and denies the others). It holds no fd on a mount while it waits for the
 * network: a umount right after the program exits finds the mount free. Objects of another
 * layer (another lazy mount, another daemon's) it has the kernel read ahead through the
 * reader's root, on threads of their own (foreign_fetch) that stop once the reader has
 * exited, and reads only where their pages are in the page cache (cached_pread): no read of
 * its own waits for another daemon, and a slow one delays no prediction for long
 * (foreign_give_up).
 */
#include <ctype.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cache/cache.h"
#include "erofs/format.h"
#include "fetch/elf.h"
#include "fetch/files.h"
#include "fetch/internal.h"
#include "util/cleanup.h"
#include "util/extents.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/time.h"

#ifndef AT_HANDLE_FID
#define AT_HANDLE_FID 0x200 /* Linux 6.5; glibc 2.36's headers lack it */
#endif

#define PREDICT_MAX_OBJECTS 128 /* objects looked at for one program */
#define PREDICT_IN_FLIGHT   16	/* their fetches under way at once */
#define PREDICT_RECENT	    32	/* programs and readers remembered as done */

struct object {
	struct util_file_id id;	      /* as the reader's root shows it */
	char path[ELF_DEPS_PATH_MAX]; /* inside the reader's root ("": not known) */
	struct util_extents ext;      /* its data in the blob */
	struct fetch_ensure en;	      /* its fetch, while `fetching` */
	bool fetching;
	/* Another lazy mount's (another layer of a container's root): brought by reading it
	 * (foreign_fetch: job, while `fetching`), its size for the order of fetches. */
	bool foreign;
	struct foreign_job *job;
	uint64_t size;
};

struct predictor {
	struct fetch_daemon *d;
	pid_t pid;
	uint8_t uuid[16]; /* the image's (image_uuid), once uuid_read */
	bool uuid_read;
	struct object obj[PREDICT_MAX_OBJECTS];
	size_t nobj;
	struct elf_deps deps; /* of the object being read (large: not on the stack) */
	/* recent readers and programs done (this thread only): a reader by its pid and the
	 * executable it ran then (its next execve is a program of its own) */
	struct {
		pid_t pid;
		struct util_file_id exe;
	} pids[PREDICT_RECENT];
	struct util_file_id exes[PREDICT_RECENT];
	/* roots seen lately: their loader fetched; their locale too once known (root_locale) */
	struct util_file_id roots[PREDICT_RECENT];
	bool root_locale[PREDICT_RECENT];
	unsigned npids, nexes, nroots;
	/* The loader this machine's programs name (our own executable's PT_INTERP, "" if
	 * none), and its machine. */
	char loader[ELF_DEPS_PATH_MAX];
	uint16_t machine;
	struct util_file_id own_root; /* this machine's root, whose programs are not ours to
				       * predict */
};

void fetch_predict_note(struct fetch_daemon *d, pid_t pid)
{
	if (pid <= 0)
		return;
	for (unsigned i = 0; i < d->predict_n; i++)
		if (d->predict_q[i] == pid)
			return;
	if (d->predict_n == FETCH_PREDICT_QUEUE)
		return; /* busy: this reader's next wait brings it back */
	d->predict_q[d->predict_n++] = pid;
	pthread_cond_signal(&d->predict_cond);
}

/* Our reads must stay within what is present: no read-ahead past them (the page cache would
 * ask for the next bytes, ours to deny). */
static void no_readahead(int fd)
{
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
}

/* Whether the file open at fd is on a filesystem of this type (OVERLAYFS_SUPER_MAGIC, ...). */
static bool on_fs(int fd, unsigned long magic)
{
	struct statfs sfs;

	return fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == magic;
}

static bool on_overlay(int fd)
{
	return on_fs(fd, OVERLAYFS_SUPER_MAGIC);
}

/* On another layer's filesystem: an EROFS mount, or an overlay that may show one. */
static bool on_layer(int fd)
{
	return on_fs(fd, EROFS_SUPER_MAGIC_V1) || on_overlay(fd);
}

/* The image's UUID (its superblock's, present before any mount), all zeros when it has none
 * or the blob is no image of its own (an extra device's). */
static void image_uuid(struct predictor *p)
{
	struct erofs_disk_super sb;

	p->uuid_read = true;
	if (pread(p->d->entry->data_fd, &sb, sizeof(sb), EROFS_SB_OFFSET) == (ssize_t)sizeof(sb) &&
	    erofs_le32(sb.magic) == EROFS_MAGIC)
		memcpy(p->uuid, sb.uuid, sizeof(p->uuid));
}

/* Whether the overlay file open at fd shows a file of our image: a container's root is an
 * overlay whose lower layers are our mounts, and its files have the overlay's device and
 * inode numbers, not the mount's (nor do /proc/PID/maps and map_files show the file under
 * it). The overlay's identifier of a file (name_to_handle_at with AT_HANDLE_FID; its layout
 * is the one overlayfs keeps on disk in its origin xattrs) names the filesystem the file it
 * shows is on by that filesystem's UUID: for an EROFS mount, the image's. */
static bool overlay_shows_ours(struct predictor *p, int fd)
{
	enum { OVL_FILEID_V0 = 0xfb, OVL_FILEID_V1 = 0xf8, OVL_FH_MAGIC = 0xfb };
	struct {
		struct file_handle fh;
		uint8_t bytes[MAX_HANDLE_SZ];
	} h = {.fh.handle_bytes = MAX_HANDLE_SZ};
	static const uint8_t zero[16];
	const uint8_t *fb;
	int mnt;

	if (!p->uuid_read)
		image_uuid(p);
	if (!memcmp(p->uuid, zero, sizeof(zero)) ||
	    name_to_handle_at(fd, "", &h.fh, &mnt, AT_EMPTY_PATH | AT_HANDLE_FID) < 0)
		return false;
	/* V1 is V0 after three bytes of padding: {version, magic, len, flags, type, uuid[16]} */
	if (h.fh.handle_type == OVL_FILEID_V0)
		fb = h.fh.f_handle;
	else if (h.fh.handle_type == OVL_FILEID_V1 && h.fh.handle_bytes >= 3)
		fb = h.fh.f_handle + 3;
	else
		return false;
	if ((size_t)(h.fh.f_handle + h.fh.handle_bytes - fb) < 5 + sizeof(p->uuid) ||
	    fb[1] != OVL_FH_MAGIC)
		return false;
	return !memcmp(fb + 5, p->uuid, sizeof(p->uuid));
}

/* Whether the regular file open at fd (status st) is one of our image's: on one of our
 * mounts, or shown by an overlay from one (overlay_shows_ours). */
static bool file_of_ours(struct predictor *p, int fd, const struct stat *st)
{
	struct fetch_daemon *d = p->d;
	bool r;

	if (on_overlay(fd))
		return overlay_shows_ours(p, fd);
	pthread_mutex_lock(&d->lock);
	r = fetch_rec_by_dev(d, (uint64_t)st->st_dev) != NULL;
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Look path up in root without opening it (O_PATH): an fd of it when it is a regular file,
 * its status in st; -ENOENT for anything else. */
static int lookup_regular(int root, const char *path, struct stat *st)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	_cleanup_close_ int pfd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));

	if (pfd < 0)
		return -errno;
	if (fstat(pfd, st) < 0)
		return -errno;
	return S_ISREG(st->st_mode) ? TAKE_FD(pfd) : -ENOENT;
}

/* Open for reading the regular file that pfd (lookup_regular's) was looked up as. */
static int reopen_regular(int pfd)
{
	char self[64];
	int fd;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
	fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* Open path (a name an image's program gives: untrusted) in the reader's root for reading,
 * only when it is a regular file of our image (file_of_ours), its status in st: it is looked
 * up without being opened first (O_PATH), so that no device, FIFO or other filesystem's file
 * is ever opened by us. -EXDEV: a regular file, not ours (a bind mount of something else).
 * With ret_foreign, a regular file of another EROFS mount or shown by an overlay (another
 * layer of a container's root, which another daemon serves) is opened too, *ret_foreign
 * set. */
static int open_in_root(struct predictor *p, int root, const char *path, struct stat *st,
			bool *ret_foreign)
{
	_cleanup_close_ int pfd = lookup_regular(root, path, st);
	int fd;

	if (ret_foreign)
		*ret_foreign = false;
	if (pfd < 0)
		return pfd;
	if (!file_of_ours(p, pfd, st)) {
		if (!ret_foreign || !on_layer(pfd))
			return -EXDEV;
		*ret_foreign = true;
	}
	fd = reopen_regular(pfd);
	if (fd >= 0)
		no_readahead(fd);
	return fd;
}

static int open_root(pid_t pid)
{
	char p[64];
	int fd;

	snprintf(p, sizeof(p), "/proc/%d/root", (int)pid);
	fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static ssize_t fd_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	do
		n = pread(*(int *)ctx, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* A file of another mount, read only where its pages are in the page cache (mincore on a
 * mapping of it), and through that mapping with read-ahead off (MADV_RANDOM: a read() of a
 * cached page may start the kernel's read-ahead of the next ones, which would wait for the
 * other daemon): a read of ours must never wait for another daemon's fetch. */
struct cached_file {
	void *map;
	uint64_t size;
};

static ssize_t cached_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct cached_file *c = ctx;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char vec[64];
	uint64_t first, end;

	if (!c->map || off >= c->size)
		return c->map ? 0 : -EAGAIN;
	len = (size_t)MIN((uint64_t)len, c->size - off);
	first = ROUND_DOWN(off, page);
	end = off + len;
	for (uint64_t at = first; at < end; at += sizeof(vec) * page) {
		size_t n = (size_t)MIN(end - at, (uint64_t)sizeof(vec) * page);

		if (mincore((uint8_t *)c->map + at, n, vec) < 0)
			return -errno;
		for (size_t k = 0; k < DIV_ROUND_UP(n, page); k++)
			if (!(vec[k] & 1))
				return -EAGAIN;
	}
	memcpy(buf, (const uint8_t *)c->map + off, len);
	return (ssize_t)len;
}

static void cached_close(struct cached_file *c)
{
	if (c->map)
		munmap(c->map, (size_t)c->size);
	c->map = NULL;
}

static void cached_open(struct cached_file *c, int fd, uint64_t size)
{
	*c = (struct cached_file){.size = size};
	if (size > 0 && size <= SIZE_MAX) {
		c->map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
		if (c->map == MAP_FAILED)
			c->map = NULL;
		else if (madvise(c->map, (size_t)size, MADV_RANDOM) < 0)
			cached_close(c);
	}
}

/* The needed objects of the ELF file open at fd (of another mount when foreign) into
 * p->deps: 0, or -errno. */
static int object_deps(struct predictor *p, int fd, uint64_t size, bool foreign)
{
	struct cached_file c;
	int r;

	if (!foreign)
		return elf_deps_read(fd_pread, &fd, size, &p->deps);
	cached_open(&c, fd, size);
	r = elf_deps_read(cached_pread, &c, size, &p->deps);
	cached_close(&c);
	return r;
}

/* The blob offset of the file's first data byte (its first extent), or -errno. */
static int first_physical(int fd, uint64_t *ret)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent fe[1];
	} m = {.fm = {.fm_start = 0, .fm_length = FIEMAP_MAX_OFFSET, .fm_extent_count = 1}};

	if (ioctl(fd, FS_IOC_FIEMAP, &m) < 0)
		return -errno;
	if (m.fm.fm_mapped_extents < 1)
		return -ENODATA;
	*ret = m.fe[0].fe_physical;
	return 0;
}

/* Add the data ranges of the file open at fd to ext when the file index knows it and it is
 * small enough to fetch whole; false when it is not to be read (not indexed, too large). */
static bool object_ranges(struct predictor *p, int fd, struct util_extents *ext)
{
	struct fetch_daemon *d = p->d;
	const struct util_extent *v;
	uint32_t file, range, n;
	uint64_t phys = 0;
	bool ok = false;

	if (first_physical(fd, &phys) < 0)
		return false;
	pthread_mutex_lock(&d->lock);
	if (d->files && fetch_files_find(d->files, phys, &file, &range) == 0 &&
	    fetch_files_data_bytes(d->files, file) <= fetch_sched_whole_limit(&d->sched)) {
		v = fetch_files_ranges(d->files, file, &n);
		ok = true;
		for (uint32_t i = 0; i < n && ok; i++)
			ok = util_extents_add(ext, v[i].offset, v[i].length) >= 0;
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* Whether another layer's object of size bytes is small enough to read ahead whole: by the
 * rule of our own (fetch_sched_whole_limit, in its bytes before they are compressed). */
static bool foreign_small(struct predictor *p, uint64_t size)
{
	bool r;

	pthread_mutex_lock(&p->d->lock);
	r = size <= fetch_sched_whole_limit(&p->d->sched);
	pthread_mutex_unlock(&p->d->lock);
	return r;
}

/* Open path inside the reader's root: a regular file on the mount, not seen before, becomes
 * an object to fetch and read. */
static void add_object(struct predictor *p, int root, const char *path, bool *ret_found)
{
	_cleanup_close_ int fd = -1;
	struct object *o;
	struct stat st;
	bool foreign;

	*ret_found = false;
	if (p->nobj == PREDICT_MAX_OBJECTS || strlen(path) >= sizeof(o->path))
		return;
	fd = open_in_root(p, root, path, &st, &foreign);
	*ret_found = fd >= 0 || fd == -EXDEV; /* the loader takes it, ours or not */
	if (fd < 0)
		return;
	for (size_t i = 0; i < p->nobj; i++)
		if (util_file_id_eq(p->obj[i].id, util_file_id_of(&st)))
			return;
	o = &p->obj[p->nobj];
	*o = (struct object){
	    .id = util_file_id_of(&st), .foreign = foreign, .size = (uint64_t)st.st_size};
	snprintf(o->path, sizeof(o->path), "%s", path);
	util_extents_init(&o->ext);
	if (foreign ? foreign_small(p, o->size) : object_ranges(p, fd, &o->ext))
		p->nobj++;
	else
		util_extents_free(&o->ext);
}

/* The directories the loader searches for a needed object without a slash, after the run
 * path: the multiarch ones of the machine (Debian's triplets), then the classic ones. */
static const char *multiarch(uint16_t machine)
{
	static const struct {
		uint16_t machine;
		const char *triplet;
	} arch[] = {
	    {EM_X86_64, "x86_64-linux-gnu"},	  {EM_AARCH64, "aarch64-linux-gnu"},
	    {EM_386, "i386-linux-gnu"},		  {EM_ARM, "arm-linux-gnueabihf"},
	    {EM_RISCV, "riscv64-linux-gnu"},	  {EM_PPC64, "powerpc64le-linux-gnu"},
	    {EM_S390, "s390x-linux-gnu"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(arch); i++)
		if (arch[i].machine == machine)
			return arch[i].triplet;
	return NULL;
}

/* A run path entry with $ORIGIN (or ${ORIGIN}) replaced by origin, the directory of the
 * object it belongs to inside the reader's root; false when it names another dynamic string
 * token ($LIB, $PLATFORM: the loader's own choices), when origin is unknown (NULL) or the
 * result is too long. */
static bool expand_origin(const char *dir, const char *origin, char *out, size_t outlen)
{
	size_t o = 0;

	while (*dir) {
		size_t skip = 0, olen;

		if (dir[0] != '$') {
			if (o + 1 >= outlen)
				return false;
			out[o++] = *dir++;
			continue;
		}
		if (!strncmp(dir, "$ORIGIN", 7) && !(isalnum((unsigned char)dir[7]) || dir[7] == '_'))
			skip = 7;
		else if (!strncmp(dir, "${ORIGIN}", 9))
			skip = 9;
		if (!skip || !origin)
			return false;
		olen = strlen(origin);
		if (o + olen >= outlen)
			return false;
		memcpy(out + o, origin, olen);
		o += olen;
		dir += skip;
	}
	out[o] = 0;
	return out[0] == '/';
}

/* Find a needed object as the loader would: a name with a slash as it is (when absolute);
 * else in the run path of the object that needs it (origin: that object's directory inside
 * the reader's root, or NULL), the multiarch directories, the classic ones. */
static void resolve(struct predictor *p, int root, const struct elf_deps *deps,
		    const char *name, const char *origin)
{
	static const char *const classic[] = {"/lib64", "/usr/lib64", "/lib", "/usr/lib",
					      "/usr/local/lib"};
	const char *arch = multiarch(deps->machine);
	char path[ELF_DEPS_PATH_MAX], rp[ELF_DEPS_PATH_MAX], ex[ELF_DEPS_PATH_MAX];
	char *save = NULL;
	bool found = false;

	if (strchr(name, '/')) {
		if (name[0] == '/')
			add_object(p, root, name, &found);
		return; /* (a relative one is relative to the program's directory of work) */
	}
	snprintf(rp, sizeof(rp), "%s", deps->runpath);
	for (char *dir = strtok_r(rp, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save))
		if (expand_origin(dir, origin, ex, sizeof(ex)) &&
		    (size_t)snprintf(path, sizeof(path), "%s/%s", ex, name) < sizeof(path))
			add_object(p, root, path, &found);
	for (int i = 0; arch && i < 2 && !found; i++)
		if ((size_t)snprintf(path, sizeof(path), "%s/%s/%s", i ? "/usr/lib" : "/lib", arch,
				     name) < sizeof(path))
			add_object(p, root, path, &found);
	for (size_t i = deps->class == 2 ? 0 : 2; i < ARRAY_SIZE(classic) && !found; i++)
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", classic[i], name) < sizeof(path))
			add_object(p, root, path, &found);
}

/* Object i is present: read what it needs and add that to the objects. fd: open on it, or
 * -1 to open its path inside the reader's root. */
static void read_object(struct predictor *p, size_t i, int fd)
{
	_cleanup_close_ int root = open_root(p->pid), own = -1;
	char origin[ELF_DEPS_PATH_MAX];
	struct stat st;
	bool found;
	int r;

	if (root < 0)
		return; /* the reader has exited */
	if (fd < 0) {
		bool foreign;

		fd = own = open_in_root(p, root, p->obj[i].path, &st, &foreign);
		if (fd < 0 || foreign != p->obj[i].foreign)
			return;
	}
	if (fstat(fd, &st) < 0 || !util_file_id_eq(util_file_id_of(&st), p->obj[i].id))
		return;
	r = object_deps(p, fd, (uint64_t)st.st_size, p->obj[i].foreign);
	if (r < 0)
		return;
	if (p->deps.interp[0])
		add_object(p, root, p->deps.interp, &found);
	/* $ORIGIN: the object's directory inside the reader's root, when its path is known */
	if (p->obj[i].path[0] == '/') {
		char *slash;

		snprintf(origin, sizeof(origin), "%s", p->obj[i].path);
		slash = strrchr(origin, '/');
		slash[slash == origin] = 0;
	} else {
		origin[0] = 0;
	}
	for (size_t k = 0; k < p->deps.nneeded; k++)
		resolve(p, root, &p->deps, p->deps.needed[k], origin[0] ? origin : NULL);
}

/* An object a startup profile's replay brought some of was in the profile: what the programs
 * read of it came with the replay, and fetching all of it would only add bytes (same
 * programs: 0.16 -> 0.21 of pull). Only objects the replay brought nothing of are fetched
 * then (the programs the profile did not see), by the scheduler's own rule. d->lock held. */
static bool left_to_profile(struct fetch_daemon *d, const struct util_extents *ext)
{
	return fetch_sched_replay_brought(&d->sched, ext->v, ext->n);
}

static uint64_t object_bytes(const struct object *o)
{
	return o->foreign ? o->size : util_extents_total(&o->ext);
}

/* The objects to fetch, larger first: their fetches are paced (fetch_req.paced) and arrive one
 * after the other, and a larger object, the last to arrive otherwise, is the likelier to need
 * others (libapt-pkg: eleven; libz, liblz4: none), which then go out while the smaller ones
 * still arrive (apt-config over 100 Mbit/s + RTT 50 ms, 6 runs each, interleaved: 454-483 ms
 * against 502-530 in the order the objects are named; all at once: 543-569). */
static int cmp_larger_first(const void *a, const void *b)
{
	uint64_t x = object_bytes(a), y = object_bytes(b);

	return x > y ? -1 : x < y;
}

/* A foreign object is read ahead in steps of this (posix_fadvise reads one read-ahead window
 * a call). */
#define PREDICT_FOREIGN_STEP (128u << 10)
/* How long another reader waiting for its prediction lets us wait for a foreign object (a
 * slow layer's daemon must not stall the predictions of this one's readers). */
#define PREDICT_FOREIGN_PATIENCE_MS 500

/* A foreign object's read-ahead: its thread's and, while it waits for it, the predictor's
 * (refs, done: d->lock). The predictor may stop waiting (its daemon leaving, another reader
 * waiting: foreign_give_up); the thread goes on alone until the object is read ahead or its
 * reader has exited. */
struct foreign_job {
	struct fetch_daemon *d;
	unsigned refs;
	bool done;
	uint64_t started_ms;
	int pidfd; /* the reader's */
	pid_t pid;
	struct util_file_id id;
	uint64_t size;
	char path[ELF_DEPS_PATH_MAX];
};

/* d->lock held */
static void foreign_put(struct foreign_job *j)
{
	if (--j->refs > 0)
		return;
	if (j->pidfd >= 0)
		close(j->pidfd);
	free(j);
}

/* Bring a foreign object (another lazy mount's file, shown in the reader's root) into the
 * page cache by reading it there: the kernel's read-ahead of all of it (POSIX_FADV_WILLNEED,
 * on the file the root shows, which an overlay passes to the layer's) waits for that mount's
 * daemon, which fetches it. It is opened as open_in_root does (looked up first, a regular
 * file, the same one the predictor saw), and reported done however that went (its needs
 * are read only where its pages are here: object_deps). Read a window at a time, and no
 * more once the reader has exited: our fd on that mount, held while its daemon fetches,
 * would keep it busy (a container's layers are unmounted right after its programs exit). */
static void *foreign_fetch(void *arg)
{
	struct foreign_job *j = arg;
	int root = open_root(j->pid), pfd = -1, fd = -1;
	struct stat st;

	if (root >= 0)
		pfd = lookup_regular(root, j->path, &st);
	if (pfd >= 0 && util_file_id_eq(util_file_id_of(&st), j->id))
		fd = reopen_regular(pfd);
	if (pfd >= 0)
		close(pfd);
	if (root >= 0)
		close(root);
	/* The kernel reads ahead at most its read-ahead window a call (128 KiB on a
	 * file-backed EROFS mount): all of it, a window at a time. */
	for (uint64_t off = 0; fd >= 0 && off < j->size && !fetch_pidfd_wait(j->pidfd, -1, 0);
	     off += PREDICT_FOREIGN_STEP)
		(void)posix_fadvise(fd, (off_t)off, (off_t)MIN(PREDICT_FOREIGN_STEP, j->size - off),
				    POSIX_FADV_WILLNEED);
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&j->d->lock);
	j->done = true;
	j->d->foreign_threads--;
	pthread_cond_broadcast(&j->d->done_cond);
	foreign_put(j);
	pthread_mutex_unlock(&j->d->lock);
	return NULL;
}

/* Start a foreign object's fetch on a thread of its own (d->lock held), at most
 * PREDICT_IN_FLIGHT of them at once in the daemon (those a prediction gave up on included:
 * a stalled layer's daemon keeps them). 0, or -errno. */
static int foreign_start(struct predictor *p, struct object *o)
{
	struct foreign_job *j;
	pthread_attr_t at;
	pthread_t t;
	int r;

	if (p->d->foreign_threads >= PREDICT_IN_FLIGHT)
		return -EBUSY;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct foreign_job){.d = p->d,
				  .refs = 2,
				  .started_ms = util_now_ms(),
				  .pidfd = fetch_pidfd_open(p->pid),
				  .pid = p->pid,
				  .id = o->id,
				  .size = o->size};
	if (j->pidfd < 0) {
		r = j->pidfd; /* (-ESRCH: the reader has exited) */
		free(j);
		return r;
	}
	snprintf(j->path, sizeof(j->path), "%s", o->path);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &at, foreign_fetch, j);
	pthread_attr_destroy(&at);
	if (r != 0) {
		close(j->pidfd);
		free(j);
		return -r;
	}
	p->d->foreign_threads++;
	o->job = j;
	return 0;
}

/* Whether another reader waits for its prediction (d->lock held). */
static bool other_waits(struct predictor *p)
{
	for (unsigned i = 0; i < p->d->predict_n; i++)
		if (p->d->predict_q[i] != p->pid)
			return true;
	return false;
}

/* Stop waiting for the foreign objects among [from, to) that the daemon cannot wait for any
 * more: it is leaving, or another reader waits and they have taken long (d->lock held).
 * Their threads go on alone; their needs are not looked at. The number given up; *gave_up
 * set when some were, for another reader (then no more are started for this one). */
static size_t foreign_give_up(struct predictor *p, size_t from, size_t to, bool *gave_up)
{
	struct fetch_daemon *d = p->d;
	bool all = d->stopping || d->leaving, other = !all && other_waits(p);
	uint64_t now = util_now_ms();
	size_t n = 0;

	for (size_t i = from; i < to && (all || other); i++) {
		struct object *o = &p->obj[i];

		if (!o->fetching || !o->foreign ||
		    (!all && now - o->job->started_ms < PREDICT_FOREIGN_PATIENCE_MS))
			continue;
		foreign_put(o->job);
		o->job = NULL;
		o->fetching = false;
		n++;
	}
	*gave_up = *gave_up || (n && other);
	return n;
}

/* Fetch objects [from, nobj) and read each as it arrives, which may add more: at most
 * PREDICT_IN_FLIGHT fetches under way at once, each a request of its own, larger first;
 * paced (fetch_req.paced) or at once. */
static void fetch_objects(struct predictor *p, size_t from, bool paced)
{
	struct fetch_daemon *d = p->d;
	size_t next = from, busy = 0, foreign = 0;
	bool gave_up = false;

	pthread_mutex_lock(&d->lock);
	while (next < p->nobj || busy > 0) {
		size_t done = SIZE_MAX;

		/* (those not started yet: no fetch refers to them) */
		qsort(p->obj + next, p->nobj - next, sizeof(p->obj[0]), cmp_larger_first);
		while (next < p->nobj && busy < PREDICT_IN_FLIGHT && !d->stopping && !d->leaving) {
			struct object *o = &p->obj[next];
			int r;

			util_extents_merge(&o->ext, 0);
			/* Left to the profile, or to the reads themselves on a cache disk that
			 * is nearly full (fetch_sched.room); another mount's, to its daemon. */
			if (o->foreign ? gave_up
				       : left_to_profile(d, &o->ext) ||
					     fetch_sched_room_short(&d->sched)) {
				next++;
				continue;
			}
			if (o->foreign)
				r = foreign_start(p, o);
			else
				r = fetch_ensure_start(d, &o->en, o->ext.v, o->ext.n, paced);
			if (r == 0) {
				o->fetching = true;
				busy++;
				foreign += o->foreign;
			} else if (r > 0) {
				done = next; /* present already */
			}
			next++;
			if (done != SIZE_MAX)
				break;
		}
		for (size_t i = from; done == SIZE_MAX && i < next; i++) {
			struct object *o = &p->obj[i];

			if (!o->fetching || !(o->foreign ? o->job->done : o->en.done))
				continue;
			o->fetching = false;
			busy--;
			if (o->foreign) {
				foreign--;
				foreign_put(o->job);
				o->job = NULL;
				done = i;
			} else if (fetch_ensure_end(d, &o->en) == 0) {
				done = i;
			}
		}
		if (done == SIZE_MAX && foreign > 0) {
			size_t n = foreign_give_up(p, from, next, &gave_up);

			busy -= n;
			foreign -= n;
		}
		if (done == SIZE_MAX) {
			if (busy == 0 && (next >= p->nobj || d->stopping || d->leaving))
				break;
			if (foreign > 0) {
				struct timespec ts;

				/* (another reader's note signals predict_cond, not this) */
				util_deadline_ts(&ts, 100);
				pthread_cond_timedwait(&d->done_cond, &d->lock, &ts);
			} else if (busy > 0) {
				pthread_cond_wait(&d->done_cond, &d->lock);
			}
			continue;
		}
		pthread_mutex_unlock(&d->lock);
		log_debug("program of pid %d: %s %s (%zu of %zu objects)", (int)p->pid,
			  p->obj[done].path,
			  p->obj[done].foreign ? "read ahead in its layer" : "present", done + 1,
			  p->nobj);
		read_object(p, done, -1);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
}

/* The executable's path inside the reader's root (for its $ORIGIN): /proc/PID/exe as we see
 * it, less the reader's root as we see it, when that path inside the root is the same file;
 * "" otherwise (a root in another mount namespace, a replaced file). */
static void exe_in_root(struct predictor *p, const struct stat *exe, char *out, size_t outlen)
{
	pid_t pid = p->pid;
	char link[64], rootp[PATH_MAX], exep[PATH_MAX];
	_cleanup_close_ int root = -1, fd = -1;
	const char *in = NULL;
	struct stat st;
	bool foreign;
	ssize_t n, m;
	size_t rl;

	out[0] = 0;
	snprintf(link, sizeof(link), "/proc/%d/root", (int)pid);
	n = readlink(link, rootp, sizeof(rootp) - 1);
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	m = readlink(link, exep, sizeof(exep) - 1);
	if (n <= 0 || m <= 0)
		return;
	rootp[n] = exep[m] = 0;
	rl = (size_t)n;
	if (!strcmp(rootp, "/"))
		in = exep;
	else if (!strncmp(exep, rootp, rl) && exep[rl] == '/')
		in = exep + rl;
	if (!in || in[0] != '/' || strlen(in) >= outlen)
		return;
	root = open_root(pid);
	if (root < 0)
		return;
	fd = open_in_root(p, root, in, &st, &foreign);
	if (fd >= 0 && util_same_file(&st, exe))
		snprintf(out, outlen, "%s", in);
}

static void objects_free(struct predictor *p)
{
	for (size_t i = 0; i < p->nobj; i++)
		util_extents_free(&p->obj[i].ext);
	p->nobj = 0;
}

/* The locale a program of this reader's will load its character set from (glibc's order
 * for LC_CTYPE: LC_ALL, LC_CTYPE, LANG) into out: 1; 0 for C or POSIX or none; -1 when its
 * environment cannot be read or is empty (a process between two programs: execve). */
static int reader_locale(pid_t pid, char *out, size_t outlen)
{
	static const char *const vars[] = {"LC_ALL=", "LC_CTYPE=", "LANG="};
	char path[64], buf[16384];
	const char *found[ARRAY_SIZE(vars)] = {NULL};
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (n = read(fd, buf, sizeof(buf) - 1)) <= 0)
		return -1;
	buf[n] = 0;
	for (char *e = buf; e < buf + n; e += strlen(e) + 1)
		for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
			if (!found[i] && !strncmp(e, vars[i], strlen(vars[i])))
				found[i] = e + strlen(vars[i]);
	for (size_t i = 0; i < ARRAY_SIZE(vars); i++) {
		const char *v = found[i];

		if (!v || !v[0])
			continue;
		if (!strcmp(v, "C") || !strcmp(v, "POSIX") || strchr(v, '/') || v[0] == '.' ||
		    strlen(v) >= outlen)
			return 0;
		snprintf(out, outlen, "%s", v);
		return 1;
	}
	return 0;
}

/* A locale's name with its codeset as glibc looks for it first: lower case letters and
 * digits only ("C.UTF-8" -> "C.utf8"). */
static void locale_normalized(const char *name, char *out, size_t outlen)
{
	const char *dot = strchr(name, '.'), *at = strchr(name, '@');
	size_t o = 0;

	if (!dot || (at && at < dot)) {
		snprintf(out, outlen, "%s", name);
		return;
	}
	for (const char *c = name; c <= dot && o + 1 < outlen; c++)
		out[o++] = *c;
	for (const char *c = dot + 1; *c && *c != '@' && o + 1 < outlen; c++)
		if (isalnum((unsigned char)*c))
			out[o++] = (char)tolower((unsigned char)*c);
	snprintf(out + o, outlen - o, "%s", at ? at : "");
}

/* The files of the locale the reader's environment names (setlocale loads every category's)
 * and the character set conversions' cache, as objects: 1; 0 when it names none; -1 when
 * its environment is not there to read. */
static int add_locale(struct predictor *p, int root)
{
	static const char *const cats[] = {
	    "LC_CTYPE",	    "LC_NUMERIC",     "LC_TIME",
	    "LC_COLLATE",   "LC_MONETARY",    "LC_MESSAGES/SYS_LC_MESSAGES",
	    "LC_PAPER",	    "LC_NAME",	      "LC_ADDRESS",
	    "LC_TELEPHONE", "LC_MEASUREMENT", "LC_IDENTIFICATION"};
	static const char *const gconv[] = {"/usr/lib64/gconv/gconv-modules.cache",
					    "/usr/lib/gconv/gconv-modules.cache"};
	const char *arch = multiarch(p->machine), *dir = NULL;
	char given[96], name[96], path[ELF_DEPS_PATH_MAX];
	int r = reader_locale(p->pid, given, sizeof(given));
	bool found = false;

	if (r <= 0)
		return r;
	/* its directory: the name as the C library looks for it first, else as given */
	locale_normalized(given, name, sizeof(name));
	for (int k = 0; k < 2 && !dir; k++) {
		snprintf(path, sizeof(path), "/usr/lib/locale/%s/%s", k ? given : name, cats[0]);
		add_object(p, root, path, &found);
		dir = found ? (k ? given : name) : NULL;
	}
	for (size_t i = 1; dir && i < ARRAY_SIZE(cats); i++) {
		snprintf(path, sizeof(path), "/usr/lib/locale/%s/%s", dir, cats[i]);
		add_object(p, root, path, &found);
	}
	/* the character set conversions' cache, where the C library of this machine's kind
	 * keeps it */
	found = false;
	if (arch && (size_t)snprintf(path, sizeof(path), "/usr/lib/%s/gconv/gconv-modules.cache",
				     arch) < sizeof(path))
		add_object(p, root, path, &found);
	for (size_t i = 0; i < ARRAY_SIZE(gconv) && !found; i++)
		add_object(p, root, gconv[i], &found);
	return 1;
}

/* Whether id is among the *n last of ring v (PREDICT_RECENT long); if not, it is added (the
 * oldest gives way). Its slot in *ret_i. */
static bool recent_seen(struct util_file_id *v, unsigned *n, struct util_file_id id,
			unsigned *ret_i)
{
	for (unsigned i = 0; i < MIN(*n, (unsigned)PREDICT_RECENT); i++)
		if (util_file_id_eq(v[i], id)) {
			*ret_i = i;
			return true;
		}
	*ret_i = (*n)++ % PREDICT_RECENT;
	v[*ret_i] = id;
	return false;
}

/* Whether a reader's root (its status) is this machine's, as ours is. */
static bool machine_root(const struct predictor *p, const struct stat *root)
{
	return util_file_id_eq(util_file_id_of(root), p->own_root);
}

/* A reader in a root not seen lately (a container's, a chroot's): what the first program
 * started there reads before its own bytes can say so -- the loader, and the locale its
 * environment names with the character set conversions' cache (the C library's setlocale)
 * -- fetched at the reader's first wait (its execve reading the program's first page), at
 * once. The program's own objects follow once its executable is here (predict). Perl with
 * its modules in a chroot of the minbase image, LANG=C.UTF-8, over 100 Mbit/s + RTT 50 ms
 * (4 runs each, interleaved): 720-770 ms against 819-870 (the locale's two files had come a
 * round trip each, one after the other, after its libraries). The loader's cache of library
 * paths is left to the loader's own read: fetched ahead it came no sooner (that start waits
 * on the link's bytes, not on round trips), and its read no longer brought the small files
 * beside it (the first programs of /usr/bin there: apt-config then waited a round trip
 * more). Returns whether the reader's root is another than this machine's. */
static bool root_startup(struct predictor *p)
{
	_cleanup_close_ int root = open_root(p->pid);
	struct stat st, exe;
	char path[64], in[ELF_DEPS_PATH_MAX];
	unsigned i;
	bool found;

	if (root < 0 || fstat(root, &st) < 0 || machine_root(p, &st))
		return false;
	if (!recent_seen(p->roots, &p->nroots, util_file_id_of(&st), &i)) {
		p->root_locale[i] = false;
		if (p->loader[0] == '/')
			add_object(p, root, p->loader, &found);
	}
	/* The environment of a reader in execve may still be the one before it (a container
	 * runtime's, whose process becomes the container's first program): a root's locale
	 * is settled by one that names a locale, or by a program of the root's own that
	 * names none. */
	if (!p->root_locale[i]) {
		int r = add_locale(p, root);

		in[0] = 0;
		snprintf(path, sizeof(path), "/proc/%d/exe", (int)p->pid);
		if (r == 0 && stat(path, &exe) == 0)
			exe_in_root(p, &exe, in, sizeof(in)); /* "" when not the root's */
		p->root_locale[i] = r > 0 || (r == 0 && in[0]);
	}
	if (p->nobj)
		log_debug("reader of pid %d: its root's loader and locale, %zu object(s)",
			  (int)p->pid, p->nobj);
	/* (the root is not held while they are waited for: a umount after the reader's end
	 * would find the mount busy) */
	close(TAKE_FD(root));
	fetch_objects(p, 0, false);
	objects_free(p);
	return true;
}

static bool recent_pid(struct predictor *p, const struct stat *exe)
{
	for (unsigned i = 0; i < MIN(p->npids, (unsigned)PREDICT_RECENT); i++)
		if (p->pids[i].pid == p->pid &&
		    util_file_id_eq(p->pids[i].exe, util_file_id_of(exe)))
			return true;
	return false;
}

/* Whether the executable open at fd is a program of another layer of the reader's root: on
 * another EROFS mount or shown by an overlay, in a root of its own (a container's, a
 * chroot's (own_root, as root_startup found it); not this machine's, whose programs are not
 * ours to predict). Its objects may be ours, or another layer's. */
static bool other_layer(int fd, bool own_root)
{
	return own_root && on_layer(fd);
}

/* A program of ours, or of another layer of a root of ours, that was not seen lately: its
 * objects, and theirs. */
static void predict(struct predictor *p)
{
	struct fetch_daemon *d = p->d;
	char exe[64];
	struct stat st;
	bool replaying, ours, own_root;
	unsigned slot;
	int fd;

	/* While a startup profile is replayed, what it has not brought yet may still come
	 * with it: no guessing (its next wait asks again). */
	pthread_mutex_lock(&d->lock);
	replaying = d->replay.started_ms && !d->replay.done_ms && !d->replay.failed;
	pthread_mutex_unlock(&d->lock);
	if (replaying)
		return;
	own_root = root_startup(p);
	snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)p->pid);
	fd = open(exe, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	no_readahead(fd);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || recent_pid(p, &st) ||
	    (!(ours = file_of_ours(p, fd, &st)) && !other_layer(fd, own_root))) {
		/* Another program's (or one still in execve: its next wait asks again). */
		close(fd);
		return;
	}
	p->pids[p->npids % PREDICT_RECENT].pid = p->pid;
	p->pids[p->npids++ % PREDICT_RECENT].exe = util_file_id_of(&st);
	if (recent_seen(p->exes, &p->nexes, util_file_id_of(&st), &slot)) {
		close(fd);
		return; /* started lately: its objects came then */
	}
	p->obj[0] = (struct object){
	    .id = util_file_id_of(&st), .foreign = !ours, .size = (uint64_t)st.st_size};
	exe_in_root(p, &st, p->obj[0].path, sizeof(p->obj[0].path));
	util_extents_init(&p->obj[0].ext);
	/* (another layer's executable is not fetched: the kernel read what it needs of it) */
	p->nobj = !ours || object_ranges(p, fd, &p->obj[0].ext) ? 1 : 0;
	if (p->nobj && ours) {
		pthread_mutex_lock(&d->lock);
		if (left_to_profile(d, &p->obj[0].ext))
			p->nobj = 0;
		pthread_mutex_unlock(&d->lock);
	}
	if (!p->nobj)
		util_extents_free(&p->obj[0].ext);
	/* The executable is read (through /proc/PID/exe, another layer's; ours opened again by
	 * its path once present: no file of the mount is held while its bytes are waited for,
	 * or a umount right after the program was killed finds the mount busy for as long as
	 * the registry takes); then each object as soon as it is present, so that what it
	 * needs is on its way while the others still arrive. */
	if (p->nobj && !ours)
		read_object(p, 0, fd);
	close(fd);
	if (p->nobj && ours && fetch_ensure(d, p->obj[0].ext.v, p->obj[0].ext.n) == 0)
		read_object(p, 0, -1);
	fetch_objects(p, 1, true);
	objects_free(p);
}

/* The loader our own executable names: the one this machine's programs name. */
static void own_loader(struct predictor *p)
{
	_cleanup_close_ int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	struct stat st;

	p->loader[0] = 0;
	if (fd >= 0 && fstat(fd, &st) == 0 &&
	    elf_deps_read(fd_pread, &fd, (uint64_t)st.st_size, &p->deps) == 0) {
		snprintf(p->loader, sizeof(p->loader), "%s", p->deps.interp);
		p->machine = p->deps.machine;
	}
}

void *fetch_predict_thread(void *arg)
{
	struct fetch_daemon *d = arg;
	struct predictor *p = calloc(1, sizeof(*p));

	prctl(PR_SET_NAME, "lzfetch-predict", 0, 0, 0);
	if (!p)
		return NULL;
	p->d = d;
	own_loader(p);
	{
		struct stat st;

		if (stat("/", &st) == 0)
			p->own_root = util_file_id_of(&st);
	}
	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (d->predict_n == 0 && !d->stopping && !d->leaving)
			pthread_cond_wait(&d->predict_cond, &d->lock);
		if (d->stopping || d->leaving)
			break;
		p->pid = d->predict_q[0];
		memmove(&d->predict_q[0], &d->predict_q[1],
			(--d->predict_n) * sizeof(d->predict_q[0]));
		pthread_mutex_unlock(&d->lock);
		predict(p);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	free(p);
	return NULL;
}
