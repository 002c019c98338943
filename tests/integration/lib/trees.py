# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Source trees, the EROFS images made from them, file-backed mounts, and a metadata
snapshot of a mounted (or source) tree that two trees can be compared by.

- The shared fixture tree is tests/fixtures/tree.tar; the 13 tests/fixtures/*.erofs images
  are that tree made by mkfs.erofs 1.9.3.
- The "kitchen" tree is built here (every awkward thing at once: xattrs of every namespace
  with one value shared by many files, ACLs, capabilities, hardlinks of every type, short and
  long symlinks, char/block devices with large numbers, fifos, a socket, a 10,000-entry
  directory, 40 levels of nesting, a multi-megabyte random file, big uids) and made into
  images by Debian's /usr/bin/mkfs.erofs (1.5) with several layouts.

Trees and images are built once per session, lazily, in one temp dir removed at the end.
Mounts are file-backed (mount(2) with the regular file as source, no loop device; DESIGN.md
kernel fact 1) and are always unmounted by the fixture that made them."""

import ctypes
import errno
import os
import random
import select
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from common import ROOT, FIXTURES, FIXTURE_IMAGES, run_child

MKFS = "/usr/bin/mkfs.erofs"

# --- images -------------------------------------------------------------------------------

# name -> (tree, mkfs options). (The fixture tree cannot be rebuilt with mkfs 1.5: it has a
# 255-byte name, which 1.5 fails on.)
MKFS_IMAGES = {
    "kitchen-plain": ("kitchen", []),  # no -T0: per-file mtimes, compact + extended inodes
    "kitchen-lz4hc": ("kitchen", ["-T0", "-zlz4hc"]),
    "kitchen-lz4hc-C64k": ("kitchen", ["-T0", "-zlz4hc", "-C65536"]),
    "kitchen-legacy": ("kitchen", ["-T0", "-zlz4hc", "-Elegacy-compress"]),
    "kitchen-ztailpacking": ("kitchen", ["-T0", "-zlz4hc", "-Eztailpacking"]),
    "kitchen-chunked": ("kitchen", ["-T0", "--chunksize=4096"]),
    "kitchen-chunk-indexes": ("kitchen", ["-T0", "--chunksize=4096", "-Eforce-chunk-indexes"]),
    "kitchen-x1": ("kitchen", ["-T0", "-x1"]),
    "kitchen-noinline": ("kitchen", ["-T0", "-Enoinline_data"]),
    "kitchen-extended": ("kitchen", ["-T0", "-Eforce-inode-extended"]),
}

# Every image the walk tests run on: "fixture/NAME" (tests/fixtures) and "mkfs/NAME".
ALL_IMAGES = [f"fixture/{n}" for n in FIXTURE_IMAGES] + [f"mkfs/{n}" for n in MKFS_IMAGES]

KITCHEN_BIGFILE_SIZE = 6 * 1024 * 1024 + 1234


class Image:
    def __init__(self, name, path, tree, options):
        self.name = name        # "fixture/plain", "mkfs/kitchen-x1"
        self.path = path        # the image file
        self.tree = tree        # the source tree it was made from
        self.options = options  # mkfs options (None for committed fixtures)

    @property
    def size(self):
        return os.path.getsize(self.path)

    def __repr__(self):
        return f"Image({self.name})"


class Trees:
    """Builds source trees and images on demand, each once per session, under workdir."""

    def __init__(self, workdir):
        self.workdir = workdir
        self._trees = {}
        self._images = {}

    def tree(self, name):
        if name not in self._trees:
            path = os.path.join(self.workdir, "trees", name)
            os.makedirs(path)
            if name == "fixture":
                extract_fixture_tree(path)
            elif name == "kitchen":
                build_kitchen_tree(path)
            else:
                raise KeyError(name)
            self._trees[name] = path
        return self._trees[name]

    def image(self, name):
        if name in self._images:
            return self._images[name]
        kind, short = name.split("/", 1)
        if kind == "fixture":
            img = Image(name, os.path.join(FIXTURES, short + ".erofs"), self.tree("fixture"), None)
        elif kind == "mkfs":
            tree, opts = MKFS_IMAGES[short]
            src = self.tree(tree)
            path = os.path.join(self.workdir, "images", short + ".erofs")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            mkfs_erofs(path, src, opts)
            img = Image(name, path, src, opts)
        else:
            raise KeyError(name)
        self._images[name] = img
        return img


def mkfs_erofs(image, tree, options):
    r = subprocess.run([MKFS, "--quiet", *options, image, tree], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"mkfs.erofs {' '.join(options)} failed ({r.returncode}): "
                           f"{r.stderr.strip()}")


def extract_fixture_tree(dest):
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xf",
                    os.path.join(FIXTURES, "tree.tar"), "-C", dest], check=True)


def _posix_acl(entries):
    """system.posix_acl_* value: version 2, then (tag, perm, id) little-endian entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


ACL_UNDEFINED_ID = 0xFFFFFFFF


def build_kitchen_tree(root):
    """Every metadata shape an image can hold, at once. Deterministic (seeded)."""
    rnd = random.Random(20240611)
    j = lambda *p: os.path.join(root, *p)  # noqa: E731

    def write(path, data, mode=0o644):
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    os.chmod(root, 0o755)

    # Regular files around block boundaries, compressible text, random bytes.
    os.makedirs(j("files"))
    for n in (0, 1, 100, 2047, 4095, 4096, 4097, 8191, 8192, 12289, 65535, 65536, 200001):
        write(j("files", f"size-{n}"), rnd.randbytes(n))
    line = b"The quick brown fox jumps over the lazy EROFS image, line %06d.\n"
    write(j("files", "text.txt"), b"".join(line % i for i in range(40000)))  # ~2.6 MB
    write(j("files", "zeros.bin"), bytes(300000))
    os.makedirs(j("big"))
    write(j("big", "random.bin"), rnd.randbytes(KITCHEN_BIGFILE_SIZE))

    # A directory of 10,000 entries: files (mostly empty), subdirs, symlinks; names of many
    # lengths so the directory spans many blocks.
    os.makedirs(j("bigdir"))
    for i in range(10000):
        name = f"entry-{i:05d}-" + "x" * (i * 7 % 90)
        p = j("bigdir", name)
        if i % 250 == 0:
            os.mkdir(p)
        elif i % 97 == 0:
            os.symlink(f"entry-{(i + 1):05d}", p)
        else:
            write(p, b"%d\n" % i if i % 3 == 0 else b"")

    # 40 levels of nesting, a file every 10 levels and at the bottom.
    d = j("deep")
    for i in range(40):
        d = os.path.join(d, f"level-{i:02d}")
        os.makedirs(d)
        if i % 10 == 9:
            write(os.path.join(d, "file"), b"level %d\n" % i)
    write(os.path.join(d, "bottom"), b"bottom\n")
    os.setxattr(d, "user.depth", b"40")

    # Symlinks: short (inline), 200+ bytes, ~1000 and ~3900 bytes (beyond one block's tail),
    # dangling, to a directory, relative with unicode.
    os.makedirs(j("links"))
    os.symlink("../files/size-1", j("links", "short"))
    os.symlink("/" + "/".join(f"component-{i:02d}-abcdefgh" for i in range(10)),
               j("links", "long-230"))
    os.symlink("/" + "/".join(f"seg{i:03d}" for i in range(150)), j("links", "long-1050"))
    os.symlink("/" + "/".join(f"piece{i:04d}-yy" for i in range(300)), j("links", "long-3900"))
    os.symlink("does/not/exist", j("links", "dangling"))
    os.symlink("../deep", j("links", "to-dir"))
    os.symlink("n\u00e4me-\u540d\u524d", j("links", "unicode"))
    os.lchown(j("links", "short"), 1234, 4321)

    # Device nodes, fifos, a socket.
    os.makedirs(j("dev"))
    os.mknod(j("dev", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(j("dev", "loop0"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.mknod(j("dev", "chr-big"), 0o600 | stat.S_IFCHR, os.makedev(259, 70000))
    os.mknod(j("dev", "blk-big"), 0o640 | stat.S_IFBLK, os.makedev(4095, 1048575))
    os.mknod(j("dev", "chr-zero"), 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    os.mkfifo(j("dev", "fifo"), 0o644)
    os.mkfifo(j("dev", "fifo-private"), 0o600)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(j("dev", "socket"))
    finally:
        s.close()
    os.chown(j("dev", "loop0"), 0, 6)

    # Hardlinks: a regular file with 3 names in 3 directories, plus hardlinked fifo, device,
    # symlink and empty file.
    os.makedirs(j("hard", "sub"))
    write(j("hard", "a"), b"hardlinked\n" * 500)
    os.link(j("hard", "a"), j("hard", "b"))
    os.link(j("hard", "a"), j("hard", "sub", "c"))
    os.link(j("hard", "a"), j("hardlink-at-top"))
    write(j("hard", "empty"), b"")
    os.link(j("hard", "empty"), j("hard", "sub", "empty-2"))
    os.link(j("dev", "fifo"), j("hard", "fifo-link"))
    os.link(j("dev", "null"), j("hard", "null-link"))
    os.link(j("links", "short"), j("hard", "symlink-link"), follow_symlinks=False)

    # Modes and owners (uid > 65535 needs an extended inode).
    os.makedirs(j("modes"))
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2750), ("all", 0o7777), ("none", 0o000),
                       ("rw-only", 0o600), ("exec", 0o711)):
        write(j("modes", name), name.encode(), mode)
    os.mkdir(j("modes", "sticky-dir"))
    os.chmod(j("modes", "sticky-dir"), 0o1777)
    os.mkdir(j("modes", "closed-dir"))
    os.chmod(j("modes", "closed-dir"), 0o700)
    os.makedirs(j("owners"))
    for uid, gid in ((1000, 1000), (65534, 65534), (70000, 70001), (0, 100000), (4294967294, 5)):
        p = j("owners", f"u{uid}-g{gid}")
        write(p, b"owned\n")
        os.chown(p, uid, gid)
    os.mkdir(j("owners", "dir-1000"))
    os.chown(j("owners", "dir-1000"), 1000, 1000)

    # Xattrs: every namespace, several per file, binary and empty values, a large value,
    # on files, directories, symlinks and device nodes; one value shared by 60 files (the
    # image built with -x1 stores it in the shared xattr area); ACLs and a capability.
    os.makedirs(j("xattrs", "shared"))
    x = j("xattrs")
    write(j("xattrs", "one"), b"1")
    os.setxattr(j("xattrs", "one"), "user.comment", b"hello")
    write(j("xattrs", "many"), b"many")
    for i in range(12):
        os.setxattr(j("xattrs", "many"), f"user.attr-{i:02d}", b"v" * i)
    os.setxattr(j("xattrs", "many"), "trusted.secret", b"\x00\x01\x02binary\xff")
    os.setxattr(j("xattrs", "many"), "security.label", b"system_u:object_r:test_t:s0")
    os.setxattr(j("xattrs", "many"), "user.empty", b"")
    write(j("xattrs", "large-value"), b"L")
    os.setxattr(j("xattrs", "large-value"), "user.large", rnd.randbytes(1500))
    os.setxattr(j("xattrs", "large-value"), "trusted.large", b"t" * 900)
    write(j("xattrs", "capability"), b"#!/bin/true\n", 0o755)
    # VFS_CAP_REVISION_2 | effective; permitted = CAP_NET_BIND_SERVICE.
    os.setxattr(j("xattrs", "capability"), "security.capability",
                struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0))
    write(j("xattrs", "acl"), b"acl\n", 0o640)
    os.setxattr(j("xattrs", "acl"), "system.posix_acl_access", _posix_acl([
        (0x01, 6, ACL_UNDEFINED_ID), (0x02, 4, 1000), (0x04, 4, ACL_UNDEFINED_ID),
        (0x08, 4, 2000), (0x10, 4, ACL_UNDEFINED_ID), (0x20, 0, ACL_UNDEFINED_ID)]))
    os.mkdir(j("xattrs", "acl-default-dir"))
    os.setxattr(j("xattrs", "acl-default-dir"), "system.posix_acl_default", _posix_acl([
        (0x01, 7, ACL_UNDEFINED_ID), (0x04, 5, ACL_UNDEFINED_ID), (0x20, 5, ACL_UNDEFINED_ID)]))
    os.setxattr(x, "trusted.overlay.opaque", b"y")
    os.setxattr(x, "user.on-dir", b"directory value")
    os.symlink("one", j("xattrs", "symlink"))
    os.setxattr(j("xattrs", "symlink"), "trusted.on-symlink", b"symlink value",
                follow_symlinks=False)
    os.mknod(j("xattrs", "device"), 0o600 | stat.S_IFCHR, os.makedev(10, 200))
    os.setxattr(j("xattrs", "device"), "trusted.on-device", b"dev", follow_symlinks=False)
    os.setxattr(j("xattrs", "device"), "security.dev-label", b"devlabel",
                follow_symlinks=False)
    for i in range(60):
        p = j("xattrs", "shared", f"file-{i:02d}")
        write(p, b"")
        os.setxattr(p, "user.shared", b"one value shared by sixty files")
        os.setxattr(p, "trusted.shared", b"another shared value")
        if i % 2:
            os.setxattr(p, "user.half", b"every other file")
        os.setxattr(p, "user.own", b"own %d" % i)

    # Awkward names (the longest is 254 bytes: mkfs.erofs 1.5 fails on 255-byte names; the
    # fixtures, made by 1.9.3, have one).
    os.makedirs(j("names"))
    for name in ("n" * 254, "\u00fcn\u00efc\u00f8d\u00e9-\u540d\u524d", "with space",
                 "-leading-dash", "back\\slash", "new\nline", "tab\tname", ".hidden", "...",
                 "x"):
        write(j("names", name), name.encode())
    os.mkdir(j("empty-dir"))


# --- file-backed mounts ---------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MS_RDONLY = 1
MNT_DETACH = 2


def mount_file_backed(image, target, data=None):
    """mount(2) the regular file `image` on `target` as EROFS, read-only: a file-backed mount
    (mount(8) would set up a loop device instead)."""
    opts = data.encode() if data else None
    if _libc.mount(os.fsencode(image), os.fsencode(target), b"erofs", MS_RDONLY, opts) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {image} on {target}: {os.strerror(e)}")


def is_mountpoint(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def mount_source(path):
    """The source field of the mount at `path` (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape") == path:
                sep = fields.index("-")
                found = (fields[sep + 1], fields[sep + 2].encode().decode("unicode_escape"))
    return found


def unmount(target):
    """Unmount, retrying a busy mount briefly, then lazily (MNT_DETACH) as a last resort."""
    t = os.fsencode(target)
    for _ in range(20):
        if not is_mountpoint(target):
            return
        if _libc.umount2(t, 0) == 0:
            return
        e = ctypes.get_errno()
        if e not in (errno.EBUSY,):
            break
        time.sleep(0.1)
    if is_mountpoint(target):
        _libc.umount2(t, MNT_DETACH)


class Mounts:
    """Mounts made by one test; all unmounted (and their dirs removed) by the fixture."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.points = []

    def mount(self, image, data=None):
        mp = tempfile.mkdtemp(prefix="mnt-", dir=self.workdir)
        self.points.append(mp)
        mount_file_backed(image, mp, data)
        return mp

    def cleanup(self):
        for mp in reversed(self.points):
            try:
                unmount(mp)
            finally:
                if not is_mountpoint(mp):
                    os.rmdir(mp)
        self.points = []


# --- a stand-in for the fetch daemon -----------------------------------------------------------

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_PRE_CONTENT = 0x8
FAN_MARK_ADD = 0x1
FAN_PRE_ACCESS = 0x00100000
FAN_ALLOW = 0x1
FAN_DENY = 0x2
FAN_EVENT_INFO_TYPE_RANGE = 6
AT_FDCWD = -100
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_char_p]


class EventFiller:
    """Marks `path` (a sparse copy) for pre-content events and answers each read by first
    copying the requested range from `original`, as the fetch daemon will from a registry.
    Metadata reads raise no event (DESIGN.md kernel fact 2), so whatever metadata the sparse
    copy lacks stays a hole. Mark before mounting (fact 3); writes go through an fd opened
    before the mark (fact 4). Close it after unmounting."""

    def __init__(self, path, original):
        self.events = 0
        self.filled = 0
        self.errors = []
        self.ranges = []  # (offset, count) of every range record, in arrival order
        self.size = os.path.getsize(original)
        self.src = os.open(original, os.O_RDONLY | os.O_CLOEXEC)
        self.wfd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self.gfd = _libc.fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
                                       os.O_RDONLY | os.O_LARGEFILE)
        if self.gfd < 0:
            e = ctypes.get_errno()
            self._close_fds()
            raise OSError(e, f"fanotify_init: {os.strerror(e)}")
        if _libc.fanotify_mark(self.gfd, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD,
                               os.fsencode(path)) < 0:
            e = ctypes.get_errno()
            self._close_fds()
            raise OSError(e, f"fanotify_mark FAN_PRE_ACCESS {path}: {os.strerror(e)}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _fill(self, off, count):
        end = min(off + count, self.size)
        while off < end:
            chunk = os.pread(self.src, min(end - off, 1 << 20), off)
            if not chunk:
                break
            os.pwrite(self.wfd, chunk, off)
            off += len(chunk)
            self.filled += len(chunk)

    def _answer(self, buf, off):
        event_len, _vers, _res, meta_len, _mask, fd, _pid = struct.unpack_from("<IBBHQii", buf,
                                                                               off)
        p, answer = off + meta_len, FAN_ALLOW
        try:
            while p + 4 <= off + event_len:
                info_type, _pad, ilen = struct.unpack_from("<BBH", buf, p)
                if ilen < 4:
                    break
                if info_type == FAN_EVENT_INFO_TYPE_RANGE and ilen >= 24:
                    _pad2, roff, rcount = struct.unpack_from("<IQQ", buf, p + 4)
                    self.ranges.append((roff, rcount))
                    self._fill(roff, rcount)
                p += ilen
        except OSError as e:
            self.errors.append(repr(e))
            answer = FAN_DENY
        os.write(self.gfd, struct.pack("<iI", fd, answer))
        if fd >= 0:
            os.close(fd)
        self.events += 1
        return event_len

    def _loop(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.gfd], [], [], 0.1)
            if not ready:
                continue
            try:
                buf = os.read(self.gfd, 1 << 16)
            except BlockingIOError:
                continue
            off = 0
            while off + 24 <= len(buf):
                off += self._answer(buf, off)

    def _close_fds(self):
        for fd in (self.wfd, self.src):
            os.close(fd)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        os.close(self.gfd)  # any later event is allowed (fact 6): never a hang
        self._close_fds()


def markable_dir():
    """A directory on a filesystem that takes pre-content marks (ext4, xfs, btrfs; not
    tmpfs or overlayfs): /var/tmp, else the build directory."""
    for d in ("/var/tmp", os.path.join(ROOT, "build")):
        os.makedirs(d, exist_ok=True)
        t = subprocess.run(["stat", "-f", "-c", "%T", d], capture_output=True,
                           text=True).stdout.strip()
        if t in ("ext2/ext3", "ext4", "xfs", "btrfs"):
            return d
    raise RuntimeError("no directory on ext4/xfs/btrfs for pre-content marks")


def file_digests_in_subprocess(root, timeout=600):
    """sha256 of every regular file under root, read in a child process (so a reader stuck
    on the mount can be killed): {relative path: hexdigest or "<error: ...>"}."""
    code = r"""
import hashlib, json, os, stat, sys
root = sys.argv[1]
out = {}
for d, dirs, files in os.walk(root):
    for n in files:
        p = os.path.join(d, n)
        rel = p[len(root):]
        try:
            if not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
            out[rel] = h.hexdigest()
        except OSError as e:
            out[rel] = "<error: %s>" % os.strerror(e.errno)
json.dump(out, sys.stdout)
"""
    import json
    r = subprocess.run(["/usr/bin/python3", "-c", code, root], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"reading files under {root} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


# --- metadata snapshots ---------------------------------------------------------------------

_TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk", stat.S_IFCHR: "chr",
          stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock"}


class Snapshot:
    """What a metadata-only walk sees: per path (relative, "/" is the root) its type, mode,
    owner, size (not for directories), link target, device numbers, link count, directory
    names and xattrs; and which paths share an inode. File contents are never read."""

    def __init__(self):
        self.entries = {}
        self.links = set()  # frozensets of paths sharing one non-directory inode

    def __len__(self):
        return len(self.entries)


def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else repr(e)


def snapshot(root):
    snap = Snapshot()
    inodes = {}
    stack = ["/"]
    while stack:
        rel = stack.pop()
        path = root if rel == "/" else root + rel
        ent = {}
        snap.entries[rel] = ent
        try:
            st = os.lstat(path)
        except OSError as e:
            ent["error"] = f"lstat: {_err(e)}"
            continue
        fmt = stat.S_IFMT(st.st_mode)
        ent["type"] = _TYPES.get(fmt, oct(fmt))
        ent["mode"] = oct(stat.S_IMODE(st.st_mode))
        ent["uid"] = st.st_uid
        ent["gid"] = st.st_gid
        ent["nlink"] = st.st_nlink
        if fmt != stat.S_IFDIR:
            ent["size"] = st.st_size
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        if fmt in (stat.S_IFCHR, stat.S_IFBLK):
            ent["rdev"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        if fmt == stat.S_IFLNK:
            try:
                ent["target"] = os.readlink(path)
            except OSError as e:
                ent["target"] = f"<readlink: {_err(e)}>"
        try:
            ent["xattrs"] = {n: os.getxattr(path, n, follow_symlinks=False)
                             for n in sorted(os.listxattr(path, follow_symlinks=False))}
        except OSError as e:
            ent["xattrs"] = f"<xattrs: {_err(e)}>"
        if fmt == stat.S_IFDIR:
            try:
                names = sorted(os.listdir(path))
            except OSError as e:
                ent["names"] = f"<listdir: {_err(e)}>"
                continue
            ent["names"] = names
            base = "" if rel == "/" else rel
            stack.extend(f"{base}/{n}" for n in reversed(names))
    snap.links = {frozenset(p) for p in inodes.values() if len(p) > 1}
    return snap


_SNAPSHOT_CHILD = r"""
import os, pickle, sys
sys.path.insert(0, sys.argv[1])
from trees import snapshot
sys.stdout.buffer.write(pickle.dumps(snapshot(sys.argv[2])))
"""


def child_snapshot(root, timeout=300):
    """snapshot(root) taken in a child process under a deadline: on a lazy mount, directory
    blocks and symlink targets that are not inline are read through pre-content events, and
    an unanswered one would hang the pytest process (an AssertionError names it instead)."""
    import pickle
    rc, out, err = run_child(_SNAPSHOT_CHILD, [root], timeout, f"a metadata walk of {root}")
    if rc != 0:
        raise AssertionError(f"snapshot of {root} failed ({rc}): "
                             f"{err.decode(errors='replace')[-2000:]}")
    return pickle.loads(out)


def _short(v, width=100):
    s = repr(v)
    return s if len(s) <= width else s[:width] + f"...<{len(s)} chars>"


def _collapse(paths):
    """Paths with no ancestor in the set (each with the count of its descendants in it),
    grouped per parent directory when there are many."""
    tops = {}
    for p in sorted(paths):
        parent, top = p, None
        while parent not in ("/", ""):
            parent = parent.rsplit("/", 1)[0] or "/"
            if parent in paths:
                top = parent
        if top is None:
            tops.setdefault(p, 0)
        else:
            tops[top] = tops.get(top, 0) + 1
    by_parent = {}
    for p in sorted(tops):
        by_parent.setdefault(p.rsplit("/", 1)[0] or "/", []).append(p)
    out = []
    for parent, ps in sorted(by_parent.items()):
        if len(ps) > 3:
            below = sum(tops[p] for p in ps)
            out.append(f"{len(ps)} entries of {parent!r}" + (f" (and {below} below them)"
                                                           if below else "") +
                       f": {_short([p.rsplit('/', 1)[1] for p in ps[:3]])}...")
        else:
            out += [f"{p!r}" + (f" (and {tops[p]} entries below it)" if tops[p] else "")
                    for p in ps]
    return out


def diff_snapshots(expected, actual):
    """Human-readable differences, one line each, the most telling first (what differs on
    paths present in both, then hardlinks, then missing and unexpected paths collapsed to
    their topmost one); empty when the trees agree."""
    out = []
    exp, act = expected.entries, actual.entries
    for p in sorted(exp.keys() & act.keys()):
        e, a = exp[p], act[p]
        if "error" in a and "error" not in e:
            out.append(f"{p!r}: {a['error']} (expected a {e.get('type')})")
            continue
        for k in sorted(e.keys() | a.keys()):
            ev, av = e.get(k), a.get(k)
            if ev == av:
                continue
            if isinstance(av, str) and av.startswith("<") and not isinstance(ev, str):
                out.append(f"{p!r}: {k}: {av}")
            elif k == "names" and isinstance(ev, list) and isinstance(av, list):
                lost, extra = sorted(set(ev) - set(av)), sorted(set(av) - set(ev))
                out.append(f"{p!r}: names: {len(ev)} expected, {len(av)} found; missing "
                           f"{_short(lost[:5])}{'...' if len(lost) > 5 else ''}, unexpected "
                           f"{_short(extra[:5])}{'...' if len(extra) > 5 else ''}")
            elif k == "xattrs" and isinstance(ev, dict) and isinstance(av, dict):
                for n in sorted(ev.keys() | av.keys()):
                    if n not in av:
                        out.append(f"{p!r}: xattr {n} missing (expected {_short(ev[n], 60)})")
                    elif n not in ev:
                        out.append(f"{p!r}: xattr {n} unexpected ({_short(av[n], 60)})")
                    elif ev[n] != av[n]:
                        out.append(f"{p!r}: xattr {n}: expected {_short(ev[n], 60)}, "
                                   f"got {_short(av[n], 60)}")
            else:
                out.append(f"{p!r}: {k}: expected {_short(ev)}, got {_short(av)}")
    for g in sorted(expected.links - actual.links, key=sorted):
        out.append(f"hardlinks: {sorted(g)} should share one inode")
    for g in sorted(actual.links - expected.links, key=sorted):
        out.append(f"hardlinks: {sorted(g)} share an inode but should not")
    out += [f"missing: {p}" for p in _collapse(exp.keys() - act.keys())]
    out += [f"unexpected: {p}" for p in _collapse(act.keys() - exp.keys())]
    return out


def format_diff(lines, limit=60, title="differences"):
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{len(lines)} {title}:\n  " + "\n  ".join(lines[:limit]) + more


def getfattr_dump(root):
    """`getfattr -R -P -h -d -m - -e hex --absolute-names ROOT` parsed into
    {relative path: {name: hexvalue}}, plus its exit status and stderr."""
    r = subprocess.run(["getfattr", "-R", "-P", "-h", "-d", "-m", "-", "-e", "hex",
                        "--absolute-names", root], capture_output=True, text=True,
                       errors="surrogateescape", timeout=600)
    out, cur = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("# file: "):
            p = line[len("# file: "):]
            assert p.startswith(root), p
            cur = out.setdefault(p[len(root):] or "/", {})
        elif line.strip() and cur is not None:
            name, _, value = line.partition("=")
            cur[name] = value
    return out, r.returncode, r.stderr


def diff_getfattr(expected, actual):
    out = []
    for p in sorted(expected.keys() | actual.keys()):
        e, a = expected.get(p, {}), actual.get(p, {})
        for n in sorted(e.keys() | a.keys()):
            if e.get(n) != a.get(n):
                out.append(f"{p!r}: {n}: expected {_short(e.get(n), 60)}, "
                           f"got {_short(a.get(n), 60)}")
    return out


# --- extents -------------------------------------------------------------------------------

def parse_extents(text):
    """`OFFSET LENGTH` decimal pairs, one per line, into a list of (offset, length)."""
    ext = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or line != " ".join(parts):
            raise AssertionError(f"extents line {n} is not 'OFFSET LENGTH': {line!r}")
        ext.append((int(parts[0]), int(parts[1])))
    return ext


def sparse_copy(image, extents, dest):
    """A file of the image's size holding only `extents` of it; holes everywhere else."""
    size = os.path.getsize(image)
    src = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(dst, size)
            for off, length in extents:
                done = 0
                while done < length:
                    chunk = os.pread(src, min(length - done, 1 << 20), off + done)
                    if not chunk:
                        raise AssertionError(f"extent {off}+{length} reaches past the image end")
                    os.pwrite(dst, chunk, off + done)
                    done += len(chunk)
        finally:
            os.close(dst)
    finally:
        os.close(src)


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def trees_workdir():
    d = tempfile.mkdtemp(prefix="lazyerofs-trees-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def trees(trees_workdir):
    """The session's tree and image builder: trees.tree(name), trees.image(name)."""
    return Trees(trees_workdir)


@pytest.fixture(scope="module")
def expected_tree(trees):
    """The fixture tree (tests/fixtures/tree.tar extracted): its root, metadata snapshot and
    the content hash of every regular file, for compare_tree."""
    from hashing import content_hashes
    root = trees.tree("fixture")
    return root, snapshot(root), content_hashes(root)


def compare_tree(mp, expected_tree):
    """The tree at mp (a lazy mount: walked and read in child processes) is expected_tree:
    the same metadata and the same content."""
    from common import child_hashes
    root, snap, hashes = expected_tree
    diff = diff_snapshots(snap, child_snapshot(mp))
    assert not diff, format_diff(diff)
    got = child_hashes(mp)
    bad = sorted(p for p in hashes if got.get(p) != hashes[p])
    assert not bad and set(got) == set(hashes), f"content differs: {bad[:10]}"


@pytest.fixture
def file_mounts(trees_workdir):
    """mount = file_mounts.mount(image); everything is unmounted after the test."""
    m = Mounts(trees_workdir)
    yield m
    m.cleanup()


# Share of each image taken by its metadata extents, filled by the walk tests and printed
# at the end of the session (and written to build/walk-shares.txt).
WALK_SHARES = {}


def record_share(name, image_size, extents):
    total = sum(length for _, length in extents)
    WALK_SHARES[name] = (image_size, len(extents), total)


def _shares_table():
    rows = [f"{'image':34} {'image bytes':>12} {'extents':>8} {'meta bytes':>11} {'share':>7}"]
    for name in sorted(WALK_SHARES):
        size, n, total = WALK_SHARES[name]
        rows.append(f"{name:34} {size:>12} {n:>8} {total:>11} {100.0 * total / size:>6.2f}%")
    return rows


def pytest_terminal_summary(terminalreporter):
    if not WALK_SHARES:
        return
    rows = _shares_table()
    terminalreporter.section("metadata extents: share of each image")
    for r in rows:
        terminalreporter.write_line(r)
    try:
        os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
        with open(os.path.join(ROOT, "build", "walk-shares.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    except OSError:
        pass
