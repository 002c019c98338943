# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Trust in the cache entry (issue 9): a cache filesystem too small for the image (sparse data
file, a full disk fails reads with EIO/ENOSPC and recovers once space is freed), SIGKILL of
the daemon during fills (every block the persisted bitmap claims equals the registry's bytes),
the cache file deleted, truncated or written by another process under a live mount (EIO, never
zeros; a new mount gets a fresh entry), and a bitmap header of another format version.

The kill test runs LAZYEROFS_KILLS rounds (default 10; `LAZYEROFS_KILLS=100` for a stress
run). Reads of lazy mounts go through child processes under a deadline (common.child_*)."""

import ctypes
import errno
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from common import BIN, child_hashes, child_read, drop_caches, kill_all, pid_alive, wait_until
from lazymount import build_big_image
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20
BLOCK = 4096
BITMAP_OFFSET = 4096
HEADER_SIZE = 512
KILLS = int(os.environ.get("LAZYEROFS_KILLS", "10"))


# --- module fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big(registry, workdir):
    """A 64 MiB image (four 16 MiB random files) pushed to the registry: dict(ref, digest,
    size, path, tree, blob)."""
    image, tree = build_big_image(workdir, files=4, mib=16)
    im = registry.client.push_image("trust/big", "v1", [(image, MT_EROFS)])
    layer = im["layers"][0]
    with open(image, "rb") as f:
        blob = f.read()
    return {"ref": registry.ref("trust/big", "v1"), "digest": layer["digest"],
            "size": layer["size"], "path": image, "tree": tree, "blob": blob}


@pytest.fixture(scope="module")
def small(registry, workdir):
    """A 1 MiB image (one random file) pushed to the registry."""
    tree = os.path.join(workdir, "smalltree")
    os.makedirs(tree, exist_ok=True)
    with open(os.path.join(tree, "f.bin"), "wb") as f:
        f.write(os.urandom(MiB))
    image = os.path.join(workdir, "small.erofs")
    subprocess.run(["mkfs.erofs", "-T0", image, tree], check=True, capture_output=True)
    im = registry.client.push_image("trust/small", "v1", [(image, MT_EROFS)])
    return {"ref": registry.ref("trust/small", "v1"), "digest": im["layers"][0]["digest"],
            "size": im["layers"][0]["size"], "tree": tree}


def expected(tree, rel):
    with open(tree + rel, "rb") as f:
        return f.read()


# --- a small ext4 for the cache --------------------------------------------------------------

class SmallFs:
    """An ext4 filesystem of `mib` MiB on a loop device (no reserved blocks), mounted at
    self.mp; the test's cache directory (root-owned, 0700) lives on it."""

    def __init__(self, mib, options=None):
        self.dir = tempfile.mkdtemp(prefix="lzfs", dir="/var/tmp")
        self.img = os.path.join(self.dir, "fs.img")
        self.mp = os.path.join(self.dir, "m")
        os.makedirs(self.mp)
        with open(self.img, "wb") as f:
            f.truncate(mib * MiB)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", self.img], check=True)
        subprocess.run(["mount", "-o", "loop" + (f",{options}" if options else ""), self.img,
                        self.mp], check=True)
        self.cache = os.path.join(self.mp, "c")
        os.makedirs(self.cache, mode=0o700)
        os.chmod(self.cache, 0o700)
        self.filler_path = os.path.join(self.mp, "filler")

    def free(self):
        st = os.statvfs(self.mp)
        return st.f_bavail * st.f_frsize

    def fill(self):
        """Take every free block (a big fallocate, then smaller ones, then single blocks)."""
        fd = os.open(self.filler_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            off = os.fstat(fd).st_size
            step = max(self.free(), BLOCK)
            while step >= BLOCK:
                try:
                    os.posix_fallocate(fd, off, step)
                    off += step
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    step //= 2
            os.fsync(fd)
        finally:
            os.close(fd)
        assert self.free() < 64 * 1024, self.free()

    def unfill(self):
        os.unlink(self.filler_path)
        os.sync()

    def cleanup(self):
        for _ in range(50):
            if subprocess.run(["umount", self.mp], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", self.mp], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def small_cache(lazy):
    """`lazy` with its cache directory on a 48 MiB ext4 (loop device). The lazy mounts and
    daemons go first at teardown, then the loop mount, even when the test fails."""
    fs = SmallFs(48)
    try:
        lazy.cache = fs.cache
        lazy.env["LAZYEROFS_CACHE_DIR"] = fs.cache
        yield lazy, fs
    finally:
        lazy.cleanup()
        fs.cleanup()


def entry_key(digest):
    """The cache key of a blob mounted with `insecure` (as every test here does): bytes that
    came without TLS have an entry of their own, sha256("insecure\\n" + the digest's hex)."""
    return hashlib.sha256(b"insecure\n" + digest.split(":", 1)[1].encode()).hexdigest()


def entry_files(cache, digest):
    key = entry_key(digest)
    return os.path.join(cache, "sha256", key), os.path.join(cache, "sha256", key + ".bitmap")


def read_expect_error(path, off, n):
    try:
        got = child_read(path, off, n)
    except OSError as e:
        return e.errno
    raise AssertionError(f"read of {path} at {off} succeeded ({len(got)} bytes, "
                         f"{'all zeros' if not any(got) else 'data'}) on a full cache disk")


# --- A: a cache filesystem smaller than the image ----------------------------------------------

def test_image_larger_than_cache_fs_full_disk_fails_reads_then_recovers(small_cache, big, small):
    """64 MiB image, 48 MiB ext4 cache: the mount works (sparse data file), reads are right;
    with the disk full a read of missing data fails with EIO or ENOSPC (never zeros, never
    wrong bytes); once space is freed the same read returns the right bytes. A small image
    that fits with room to spare is pre-allocated."""
    lazy, fs = small_cache
    # A small blob fits with room to spare: pre-allocated.
    mp = lazy.mount(small["ref"], opts="insecure")
    data_path, _ = entry_files(fs.cache, small["digest"])
    assert os.stat(data_path).st_blocks * 512 >= small["size"]
    assert child_read(mp + "/f.bin") == expected(small["tree"], "/f.bin")
    lazy.umount(mp)

    free0 = fs.free()
    mp = lazy.mount(big["ref"], opts="insecure,timeout=20")
    data_path, _ = entry_files(fs.cache, big["digest"])
    st = os.stat(data_path)
    assert st.st_size == big["size"]
    assert st.st_blocks * 512 < 8 * MiB, "a blob larger than the free space was pre-allocated"
    assert fs.free() > free0 - 16 * MiB

    r0 = expected(big["tree"], "/data/r0.bin")
    assert child_read(mp + "/data/r0.bin", 0, 2 * MiB) == r0[:2 * MiB]

    fs.fill()
    r3 = expected(big["tree"], "/data/r3.bin")
    off = 8 * MiB
    for _ in range(3):
        err = read_expect_error(mp + "/data/r3.bin", off, 256 * 1024)
        assert err in (errno.EIO, errno.ENOSPC), err
    st = lazy.status_of(mp)
    assert st["errors"] > 0, st

    fs.unfill()
    got = wait_until(lambda: _try_read(mp + "/data/r3.bin", off, 256 * 1024), 30, step=0.5)
    assert got == r3[off:off + 256 * 1024], "wrong bytes after the disk had space again"
    # Everything read so far, and the whole of two files, is right.
    assert child_read(mp + "/data/r3.bin") == r3
    assert child_read(mp + "/data/r0.bin") == r0
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_nothing_fetched_ahead_of_need_fills_a_small_cache_disk(small_cache, big, workdir):
    """64 MiB image, 48 MiB ext4 cache, and a startup profile that lists the whole blob (a
    hostile one, or one recorded from a workload that read everything), beside a reader
    that streams a file (read-ahead): what goes ahead of need stops at the disk's reserve
    (10 %), so that the reads that come afterwards still find room and get right bytes.
    Without the reserve the replay filled the disk and those reads failed with EIO."""
    lazy, fs = small_cache
    prof = os.path.join(workdir, "whole-blob.prof")
    with open(prof, "w") as f:
        f.write(f"lazyerofs-profile 1\nblob {big['digest']} {big['size']}\n0 0 {big['size']}\n")
    total = os.statvfs(fs.mp).f_blocks * os.statvfs(fs.mp).f_frsize
    mp = lazy.mount(big["ref"], opts=f"insecure,timeout=20,profile={prof}")
    r0 = expected(big["tree"], "/data/r0.bin")
    assert child_read(mp + "/data/r0.bin", 0, 8 * MiB) == r0[:8 * MiB]
    st = lazy.settled_status_of(mp, timeout=120)
    # What went ahead of need left the reserve (less what arrived within 10 ms) free, and
    # status says why the rest waits.
    assert fs.free() >= total // 20, (fs.free(), st)
    assert st["cache_disk_low"] is True, st
    for i in range(4):
        want = expected(big["tree"], f"/data/r{i}.bin")
        assert child_read(mp + f"/data/r{i}.bin", 12 * MiB, 4 * MiB) == \
            want[12 * MiB:16 * MiB], f"r{i}.bin"
    st = lazy.status_of(mp)
    assert st["errors"] == 0, st
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_fetch_on_a_small_cache_disk_names_the_disk(small_cache, big):
    """`lazyerofs fetch` of a 64 MiB blob onto a 48 MiB cache disk stops at the disk's
    reserve and says so at once (it waited out timeout= and then blamed the network: "no
    byte arrived")."""
    lazy, fs = small_cache
    t0 = time.monotonic()
    r = lazy.run(["fetch", "-o", "insecure,timeout=20", big["ref"]], timeout=120)
    took = time.monotonic() - t0
    errors = [l for l in r.stderr.splitlines() if l.startswith("lazyerofs:")]
    assert r.returncode == 2 and len(errors) == 1, r.stderr
    assert "cache disk" in errors[0] and "reserve" in errors[0], errors[0]
    assert took < 15, took
    lazy.assert_nothing_left()


def test_a_write_refused_mid_transfer_is_never_claimed(small_cache, big, faultproxy):
    """The cache disk is full for a moment while a job's bytes arrive slowly, and has room
    again before the job ends: what the disk refused between the job's pieces must not count
    as present once later pieces are written (those blocks are holes: zeros). The read gets
    the right bytes or an error, a read afterwards is right, and every block the persisted
    bitmap claims holds the registry's bytes."""
    lazy, fs = small_cache
    faultproxy.add("slow", path=r"/blobs/", count=None, rate=256 * 1024)
    mp = lazy.mount(faultproxy.ref("trust/big", "v1"), opts="insecure,timeout=60")
    r2 = expected(big["tree"], "/data/r2.bin")
    got = []

    def read():
        try:
            got.append(child_read(mp + "/data/r2.bin", 0, 2 * MiB))
        except OSError as e:
            got.append(e.errno)

    reader = threading.Thread(target=read)
    reader.start()
    # The file's first window (1 MiB) arrives over 4 s, written 16 KiB at a time (a stage of
    # up to 256 KiB, written out at each round of the engine): the disk is full for a moment
    # inside the second stage, then has room again.
    time.sleep(1.5)
    fs.fill()
    time.sleep(0.3)
    fs.unfill()
    reader.join(120)
    assert not reader.is_alive()
    assert got[0] in (errno.EIO, errno.ENOSPC) or got[0] == r2[:2 * MiB], \
        "wrong bytes from a read while the disk was full"
    faultproxy.clear()
    assert child_read(mp + "/data/r2.bin") == r2
    lazy.umount(mp)
    lazy.assert_nothing_left()
    assert check_claims(fs.cache, big["digest"], big["blob"]) > 0


def _try_read(path, off, n):
    try:
        return child_read(path, off, n)
    except OSError:
        return None


# --- the entry's files as the tests see them -------------------------------------------------

def read_claims(cache, digest, size):
    """The blocks the persisted bitmap claims present (header checked: ours, version 1)."""
    _, bitmap_path = entry_files(cache, digest)
    with open(bitmap_path, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"LZEROFSC", raw[:8]
    version, = struct.unpack_from("<I", raw, 8)
    assert version == 1, version
    nblocks = (size + BLOCK - 1) // BLOCK
    bits = raw[BITMAP_OFFSET:]
    return [b for b in range(nblocks) if bits[b // 8] >> (b % 8) & 1]


def check_claims(cache, digest, blob):
    """Every block the bitmap claims equals the blob's bytes; returns how many it claims.
    Only while no daemon has the file marked (a read through a new fd would raise events)."""
    data_path, _ = entry_files(cache, digest)
    claims = read_claims(cache, digest, len(blob))
    with open(data_path, "rb") as f:
        for b in claims:
            f.seek(b * BLOCK)
            got = f.read(BLOCK)
            assert got == blob[b * BLOCK:(b + 1) * BLOCK], \
                f"block {b} is claimed present but differs from the registry's bytes"
    return len(claims)


def daemon_log(lazy, digest):
    try:
        with open(os.path.join(lazy.run_dir, f"daemon-{entry_key(digest)}.log")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


# --- E: the cache file changed under a live mount --------------------------------------------

@pytest.mark.parametrize("how", ["delete", "truncate", "overwrite"])
def test_cache_file_changed_under_a_live_mount(lazy, big, how):
    """Someone deletes, truncates or writes the cache data file while it is mounted: the
    daemon notices, reads then fail with EIO (never zeros, never the foreign bytes), status
    shows the entry bad, and a new mount of the image gets a fresh entry with right bytes."""
    r0 = expected(big["tree"], "/data/r0.bin")
    r1 = expected(big["tree"], "/data/r1.bin")
    mp = lazy.mount(big["ref"], opts="insecure,timeout=20")
    assert child_read(mp + "/data/r0.bin", 0, MiB) == r0[:MiB]
    old_pid = lazy.status_of(mp)["pid"]
    data_path, _ = entry_files(lazy.cache, big["digest"])
    where = big["blob"].find(r0[:4096])
    assert where > 0
    if how == "delete":
        os.unlink(data_path)
    elif how == "truncate":
        os.truncate(data_path, 4096)
    else:
        # Through a child: its write raises a pre-content event the daemon answers.
        subprocess.run(["dd", "if=/dev/zero", f"of={data_path}", "bs=4096", "count=16",
                        f"seek={where // 4096}", "conv=notrunc", "status=none"],
                       check=True, timeout=60)
    st = wait_until(lambda: (lambda s: s if s["state"] == "bad" else None)(lazy.status_of(mp)),
                    20)
    assert st, lazy.status_of(mp)
    assert "was " in daemon_log(lazy, big["digest"])
    drop_caches()
    for rel, data, off in (("/data/r0.bin", r0, 0), ("/data/r1.bin", r1, 5 * MiB)):
        try:
            got = child_read(mp + rel, off, 256 * 1024)
        except OSError as e:
            assert e.errno == errno.EIO, e
        else:
            raise AssertionError(f"read of {rel} after the cache file was {how}d returned "
                                 f"{'zeros' if not any(got) else 'bytes'} instead of EIO")
    # A new mount gets a fresh entry (and a new daemon) and right bytes.
    mp2 = lazy.mount(big["ref"], opts="insecure,timeout=20")
    st2 = lazy.status_of(mp2)
    assert st2["pid"] != old_pid and st2["state"] != "bad", st2
    assert child_read(mp2 + "/data/r0.bin") == r0
    assert child_read(mp2 + "/data/r1.bin", 5 * MiB, MiB) == r1[5 * MiB:6 * MiB]
    lazy.umount(mp)
    lazy.umount(mp2)
    lazy.assert_nothing_left(timeout=20)
    left = [n for n in os.listdir(os.path.join(lazy.cache, "sha256")) if ".bad-" in n]
    assert left == [], left


def test_a_page_sent_with_200_for_a_range_is_never_taken_for_the_blob(lazy, big, faultproxy):
    """A server (a web UI behind a mirror's address, a login page) answers blob ranges with
    200 and a page of its own: not the whole blob, so its bytes must not be written as the
    blob's first bytes (the superblock). The mount fails and says why; once the server
    answers right, a mount works and every block the bitmap claims holds the registry's
    bytes."""
    faultproxy.add("status", path=r"/blobs/", method="GET", count=None, code=200,
                   body="<html><body>Sign in</body></html>" * 300)
    mp, r = lazy.mount(faultproxy.ref("trust/big", "v1"), opts="insecure,timeout=10",
                       check=False)
    assert r.returncode != 0, r.stderr
    assert "not the whole blob" in lazy.log()
    lazy.assert_nothing_left()
    faultproxy.clear()
    mp = lazy.mount(faultproxy.ref("trust/big", "v1"), opts="insecure")
    assert child_read(mp + "/data/r1.bin") == expected(big["tree"], "/data/r1.bin")
    lazy.umount(mp)
    lazy.assert_nothing_left()
    assert check_claims(lazy.cache, big["digest"], big["blob"]) > 0


def _pidfd_getfd(pid, fd):
    """A dup of process pid's fd (pidfd_getfd(2): the same open file)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd
        if got < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return got
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("hold", [0.5, 3.5])
def test_a_mount_right_after_its_daemon_was_killed_is_not_taken_for_tampering(lazy, big, hold):
    """The processes of a killed daemon close their write fd on the data file as they exit,
    possibly after the entry's lock file is free: a daemon started at once must not take that
    close for another process writing the file (it would set the entry aside as bad and fail
    every read). Here the test holds a dup of the killed daemon's own fd on the data file
    (the same open file, as a process still exiting would) and closes it while the next
    mount starts: the next mount waits for that close (0.5 s), then reads right. Held for
    longer than that wait (3.5 s: a daemon that verifies a large image on its way out), the
    holders of that file are noted as the daemon before, and their close is theirs too."""
    mp = lazy.mount(big["ref"], opts="insecure")
    r0 = expected(big["tree"], "/data/r0.bin")
    assert child_read(mp + "/data/r0.bin", 0, MiB) == r0[:MiB]
    st = lazy.status_of(mp)
    holder, data = st["pid"], os.path.realpath(st["cache"])
    fdnum = None
    for fd in os.listdir(f"/proc/{holder}/fd"):
        try:
            if os.readlink(f"/proc/{holder}/fd/{fd}") != data:
                continue
            with open(f"/proc/{holder}/fdinfo/{fd}") as f:
                flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        except OSError:
            continue
        if flags & os.O_ACCMODE == os.O_RDWR:
            fdnum = int(fd)
    assert fdnum is not None, "the daemon's write fd on its data file"
    stolen = _pidfd_getfd(holder, fdnum)
    try:
        pids = [st["pid"], st["worker_pid"]]
        for p in pids:
            os.kill(p, signal.SIGKILL)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids) and
                          not kill_all(lazy.daemon_pids(), signal.SIGKILL) and
                          not lazy.daemon_pids(), 10), lazy.daemon_pids()
        # The mount would now read zeros (fact 6): never read it, take it away.
        if lazy.umount(mp, check=False).returncode != 0:
            subprocess.run(["umount", "-l", mp], check=True)
        mp2 = lazy.mountpoint("m2")
        mounting = subprocess.Popen([BIN, "mount", "-o", "insecure", big["ref"], mp2],
                                    env=lazy.env, stderr=subprocess.PIPE, text=True)
        time.sleep(hold)
    finally:
        os.close(stolen)
    assert mounting.wait(timeout=60) == 0, mounting.stderr.read()
    assert child_read(mp2 + "/data/r0.bin") == r0
    st2 = lazy.status_of(mp2)
    assert st2["state"] != "bad", st2
    assert "tamper" not in lazy.log() and "opened for writing" not in lazy.log()
    lazy.umount(mp2)
    lazy.assert_nothing_left()


# --- D: SIGKILL of the daemon during fills ---------------------------------------------------

def test_kill9_during_fills_never_leaves_a_wrong_claim(lazy, big):
    """LAZYEROFS_KILLS times: mount with prefetch=all (a fill), SIGKILL holder and worker at a
    random moment, then (no daemon, no mark) compare every block the persisted bitmap claims
    with the registry's bytes. The bitmap is persisted every 20 ms here, so kills land in and
    around flushes. Finally a new mount of the same cache reads every file right."""
    blob = big["blob"]
    lazy.env["LAZYEROFS_FLUSH_MS"] = "20"
    rng = random.Random(int(os.environ.get("LAZYEROFS_SEED", "0")) or None)
    claimed_total, partial = 0, 0
    for i in range(KILLS):
        mp, r = lazy.mount(big["ref"], opts="insecure,prefetch=all", check=False)
        assert r.returncode == 0, (r.stderr, daemon_log(lazy, big["digest"])[-3000:])
        st = lazy.status_of(mp)
        pids = [st["pid"]] + ([st["worker_pid"]] if st.get("worker_pid") else [])
        time.sleep(rng.uniform(0, 0.3))
        for p in rng.sample(pids, len(pids)):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # A worker replaced by a holder that was still alive is killed too: no process of
        # the daemon survives to flush.
        assert wait_until(lambda: not any(pid_alive(p) for p in pids) and
                          not kill_all(lazy.daemon_pids(), signal.SIGKILL) and
                          not lazy.daemon_pids(), 10), lazy.daemon_pids()
        # The mount would now read zeros (fact 6): never read it, take it away (with its
        # state file).
        if lazy.umount(mp, check=False).returncode != 0:
            subprocess.run(["umount", "-l", mp], check=True)
        assert wait_until(lambda: not lazy.daemon_pids(), 10), lazy.daemon_pids()
        if not os.path.exists(entry_files(lazy.cache, big["digest"])[1]):
            pytest.fail(f"round {i}: no bitmap; daemon log: {daemon_log(lazy, big['digest'])[-3000:]}"
                        f"; files: {os.listdir(os.path.join(lazy.cache, 'sha256'))}")
        n = check_claims(lazy.cache, big["digest"], blob)
        claimed_total += n
        if n < (len(blob) + BLOCK - 1) // BLOCK:
            partial += 1
        else:
            # Complete: start the next fill from scratch.
            for name in os.listdir(os.path.join(lazy.cache, "sha256")):
                os.unlink(os.path.join(lazy.cache, "sha256", name))
    print(f"{KILLS} kill -9 during fills: {claimed_total} claimed blocks checked, all right; "
          f"{partial} kills left a partial entry")
    assert claimed_total > 0
    mp = lazy.mount(big["ref"], opts="insecure")
    want = {"/data/r%d.bin" % i: hashlib.sha256(expected(big["tree"], "/data/r%d.bin" % i))
            .hexdigest() for i in range(4)}
    got = child_hashes(mp)
    assert {k: got.get(k) for k in want} == want
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=20)


# --- F: a bitmap of another format version ---------------------------------------------------

def test_bitmap_of_another_version_is_rebuilt_not_read(lazy, small):
    """An entry whose bitmap header says another format version (an older or newer
    lazyerofs wrote it) is never interpreted: the next mount rebuilds it, says why in the
    daemon's log, and reads right bytes."""
    want = expected(small["tree"], "/f.bin")
    mp = lazy.mount(small["ref"], opts="insecure,prefetch=all")
    assert child_read(mp + "/f.bin") == want
    lazy.umount(mp)
    assert wait_until(lambda: not lazy.daemon_pids(), 15)
    _, bitmap_path = entry_files(lazy.cache, small["digest"])
    with open(bitmap_path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 7))
    mp = lazy.mount(small["ref"], opts="insecure")
    st = lazy.status_of(mp)
    assert st["state"] == "running" and st["present_bytes"] < small["size"], st
    assert "format version 7" in daemon_log(lazy, small["digest"])
    assert child_read(mp + "/f.bin") == want
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_a_cache_disk_gone_read_only_fails_reads_at_once(lazy, big):
    """The cache filesystem turns read-only under a live mount (an error on its disk, ext4's
    errors=remount-ro): reads of present bytes go on, reads of missing ones fail with EIO at
    once. They used to fetch again and again, each read ~5 s and ~10 MiB, as if the failure
    to write were the network's."""
    fs = SmallFs(96, options="errors=remount-ro")
    try:
        lazy.cache = fs.cache
        lazy.env["LAZYEROFS_CACHE_DIR"] = fs.cache
        mp = lazy.mount(big["ref"], opts="insecure,timeout=30")
        r0 = expected(big["tree"], "/data/r0.bin")
        assert child_read(mp + "/data/r0.bin", 0, MiB) == r0[:MiB]
        dev = os.path.basename(os.path.realpath(subprocess.run(
            ["findmnt", "-no", "SOURCE", fs.mp], capture_output=True, text=True,
            check=True).stdout.strip()))
        with open(f"/sys/fs/ext4/{dev}/trigger_fs_error", "w") as f:
            f.write("test\n")
        # (this kernel shows it as "emergency_ro")
        assert wait_until(lambda: {"ro", "emergency_ro"} & set(subprocess.run(
            ["findmnt", "-no", "OPTIONS", fs.mp], capture_output=True,
            text=True).stdout.strip().split(",")), 10)
        fetched = lazy.status_of(mp)["fetched_bytes"]
        for i, off in enumerate((4 * MiB, 9 * MiB, 13 * MiB)):
            t0 = time.monotonic()
            assert read_expect_error(mp + f"/data/r{i + 1}.bin", off, 64 * 1024) == errno.EIO
            took = time.monotonic() - t0
            assert took < 2, f"a read on a read-only cache disk took {took:.1f} s to fail"
        assert child_read(mp + "/data/r0.bin", 0, MiB) == r0[:MiB]  # present: still read
        more = lazy.status_of(mp)["fetched_bytes"] - fetched
        assert more < 16 * MiB, f"{more >> 20} MiB fetched for three failed reads"
        lazy.umount(mp)
        lazy.assert_nothing_left(timeout=30)
    finally:
        lazy.cleanup()
        fs.cleanup()


def test_a_cache_filesystem_without_pre_content_marks_is_left_as_it_was(lazy, big):
    """A cache directory on a filesystem that refuses pre-content marks and is not known by
    name (ext4 through FUSE here): the mount is refused in one line, and the entry it made
    goes again (it used to stay, the whole blob's size allocated, until a gc)."""
    d = tempfile.mkdtemp(prefix="lzfuse", dir="/var/tmp")
    img, mp0 = os.path.join(d, "fs.img"), os.path.join(d, "m")
    os.makedirs(mp0)
    with open(img, "wb") as f:
        f.truncate(256 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["fuse2fs", img, mp0, "-o", "rw"], check=True, capture_output=True)
    try:
        cache = os.path.join(mp0, "c")
        os.makedirs(cache, mode=0o700)
        os.chmod(cache, 0o700)
        mp, r = lazy.mount(big["ref"], opts=f"insecure,cache={cache}", check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 32 and len(lines) == 1, r.stderr
        assert "fuse" in lines[0] and "pre-content" in lines[0], lines[0]
        lazy.assert_nothing_left(timeout=30)
        sub = os.path.join(cache, "sha256")
        held = {n: os.stat(os.path.join(sub, n)).st_blocks * 512
                for n in (os.listdir(sub) if os.path.isdir(sub) else [])}
        assert sum(held.values()) < MiB, held
    finally:
        lazy.cleanup()
        for _ in range(50):
            if subprocess.run(["umount", mp0], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        shutil.rmtree(d, ignore_errors=True)


def test_reads_within_the_budget_evict_unused_entries_first(small_cache, big, registry, workdir):
    """cache-max while reads fill the cache (it was applied only before a mount made a new
    entry): an unused, verified 20 MiB entry and a mounted 64 MiB image on a 48 MiB disk with
    a budget of 32 MiB. Reading 24 MiB of the image, within the budget alone, evicts the
    unused entry instead of failing on the disk it filled (EIO at 18 MiB)."""
    from test_cache_lifecycle import entry_key, fetch, make_image, push
    lazy, fs = small_cache
    a = push(registry, "trust/unused20", make_image(workdir, "unused20", 20))
    fetch(lazy, a["ref"])
    lazy.env["LAZYEROFS_CACHE_MAX"] = "32M"
    mp = lazy.mount(big["ref"], opts="insecure,timeout=10")
    for rel, n in (("/data/r0.bin", 16 * MiB), ("/data/r1.bin", 8 * MiB)):
        want = expected(big["tree"], rel)
        for off in range(0, n, MiB):
            assert child_read(mp + rel, off, MiB) == want[off:off + MiB], (rel, off)
    assert not os.path.exists(os.path.join(lazy.cache, "sha256", entry_key(a["digest"])))
    assert "cache-max: evicted" in lazy.log()
    lazy.umount(mp)
    lazy.assert_nothing_left()
