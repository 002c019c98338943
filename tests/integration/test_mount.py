# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Lazy mounts end to end (issue 4): images pushed to the real distribution registry,
mounted with `lazyerofs mount`, read through the kernel (file-backed EROFS + fanotify
pre-content events), unmounted; plus the failure paths a user meets. Runs as root.

Every test gets private cache/run directories on ext4 (lazymount.LazyEnv) and leaves no
mount, daemon or state file behind, even when it fails."""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from common import (BIN, FIXTURE_IMAGES, FIXTURES, ROOT, assert_one_line_error, content_hashes,
                    sha256_file)
from lazymount import build_big_image, build_busybox_image, is_mounted, pid_alive, wait_until
from registry import MT_EROFS, Registry, free_port
from trees import diff_snapshots, format_diff, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

NUMBERS = os.path.join(ROOT, "build", "mount-numbers.txt")


# --- module fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="lazyerofs-mounttest-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def busybox_image(workdir):
    return build_busybox_image(workdir)


@pytest.fixture(scope="module")
def big_image(workdir):
    return build_big_image(workdir)


@pytest.fixture(scope="module")
def images(registry, busybox_image, big_image):
    """Every fixture image, the busybox image and the big image pushed to the module's
    registry: name -> dict(ref, digest (layer blob), size, manifest, path)."""
    out = {}
    paths = {n: os.path.join(FIXTURES, n + ".erofs") for n in FIXTURE_IMAGES}
    paths["busybox"] = busybox_image[0]
    paths["big"] = big_image[0]
    for name, path in paths.items():
        im = registry.client.push_image(f"lazy/{name}", "v1", [(path, MT_EROFS)])
        layer = im["layers"][0]
        out[name] = {"ref": registry.ref(f"lazy/{name}", "v1"), "digest": layer["digest"],
                     "size": layer["size"], "manifest": im["digest"], "path": path,
                     "repo": f"lazy/{name}"}
    return out


@pytest.fixture(scope="module")
def expected_tree(trees):
    """The fixture tree (tests/fixtures/tree.tar extracted): metadata snapshot and content
    hashes of every regular file."""
    root = trees.tree("fixture")
    return root, snapshot(root), content_hashes(root)


def big_file(tree_root, min_size=100 * 1024):
    """A regular file of the tree with at least min_size bytes: (relative path, bytes)."""
    best = None
    for dirpath, _, files in os.walk(tree_root):
        for n in sorted(files):
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                s = os.path.getsize(p)
                if s >= min_size and (best is None or s > best[1]):
                    best = (p, s)
    assert best, "the fixture tree has no big file"
    with open(best[0], "rb") as f:
        return "/" + os.path.relpath(best[0], tree_root), f.read()


def big_data(big_image, n=0):
    """(relative path, bytes) of the big image's n-th random file."""
    rel = f"/data/r{n}.bin"
    with open(big_image[1] + rel, "rb") as f:
        return rel, f.read()


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def compare_tree(mp, expected_tree):
    root, snap, hashes = expected_tree
    diff = diff_snapshots(snap, snapshot(mp))
    assert not diff, format_diff(diff)
    got = content_hashes(mp)
    bad = sorted(p for p in hashes if got.get(p) != hashes[p])
    assert not bad and set(got) == set(hashes), f"content differs: {bad[:10]}"


def record_numbers(line):
    os.makedirs(os.path.dirname(NUMBERS), exist_ok=True)
    with open(NUMBERS, "a") as f:
        f.write(line + "\n")
    print(line)


def parse_verbose(stderr):
    """Numbers from `lazyerofs -v mount`'s info lines."""
    out = {}
    m = re.search(r"on '.*': mnt_id \d+, daemon pid \d+, (\d+) ms", stderr)
    if m:
        out["total_ms"] = int(m.group(1))
    m = re.search(r"metadata walk: (\d+) inodes, (\d+) levels, (\d+) ranges \(([^)]*)\), "
                  r"(\d+) prefetch batches, (\d+) HTTP requests, (.*) fetched", stderr)
    if m:
        out.update(inodes=int(m.group(1)), levels=int(m.group(2)), ranges=int(m.group(3)),
                   meta=m.group(4), batches=int(m.group(5)), requests=int(m.group(6)),
                   fetched=m.group(7))
    m = re.search(r"timing: resolve (\d+) ms, daemon (\d+) ms, metadata (\d+) ms, "
                  r"kernel mount (\d+) ms", stderr)
    if m:
        out.update(resolve_ms=int(m.group(1)), daemon_ms=int(m.group(2)),
                   walk_ms=int(m.group(3)), kmount_ms=int(m.group(4)))
    return out


# --- the tree, through every layout ---------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURE_IMAGES)
def test_fixture_tree_cold(lazy, images, expected_tree, name):
    """A cold lazy mount of each fixture layout shows exactly tree.tar: contents, modes,
    owners, symlinks, hardlinks, xattrs, devices; then umount leaves nothing behind."""
    im = images[name]
    t0 = time.monotonic()
    mp, r = lazy.mount(im["ref"], extra=["-v"], check=False)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    n = parse_verbose(r.stderr)
    record_numbers(f"cold mount {name}: {elapsed * 1000:.0f} ms wall, {n}")
    compare_tree(mp, expected_tree)
    st = lazy.status_of(mp)
    assert st["digest"] == im["digest"]
    assert st["size"] == im["size"]
    assert st["errors"] == 0
    assert st["events"] > 0 and st["fetched_bytes"] > 0
    assert 0 < st["present_bytes"] <= st["size"]
    assert st["state"] in ("running", "complete", "verified"), st
    pid = st["pid"]
    lazy.umount(mp)
    assert not is_mounted(mp)
    assert lazy.wait_daemon_gone(pid), f"daemon {pid} still running after umount"
    lazy.assert_nothing_left()


@pytest.mark.parametrize("name", ["busybox", "big"])
def test_cold_mount_metadata_raises_no_events(lazy, images, big_image, name):
    """Loading the metadata walk's waves raises no fanotify events: they are read through the
    daemon's pre-mark fd once an ensure batch made them present (each event costs a round
    trip through the daemon). Right after a cold mount, before anything reads the mount, the
    daemon has seen no event at all; the mount still shows the right bytes afterwards."""
    im = images[name]
    mp, r = lazy.mount(im["ref"], extra=["-v"], check=False)
    assert r.returncode == 0, r.stderr
    lazy.pids.update(lazy.daemon_pids())
    # The walk's own count (status "events" before and after it), then the daemon's total.
    m = re.search(r"metadata reads: \d+ \(\d+ from .* loaded in (\d+) reads, (\d+) direct\), "
                  r"raising (\d+) events", r.stderr)
    assert m, r.stderr
    loads, direct, walk_events = (int(g) for g in m.groups())
    assert loads > 0, r.stderr
    assert walk_events == 0, f"the metadata walk raised {walk_events} events: {r.stderr}"
    st = lazy.status_of(mp)
    assert st["events"] == 0, st
    assert st["fetched_bytes"] > 0 and st["errors"] == 0, st
    assert st["present_bytes"] < st["size"], "the walk should not have fetched everything"
    if name == "big":
        rel, data = big_data(big_image)
        assert read_file(mp + rel) == data
    else:
        r2 = subprocess.run([os.path.join(mp, "bin", "busybox"), "echo", "ok"],
                            capture_output=True, text=True, timeout=60)
        assert r2.returncode == 0 and r2.stdout == "ok\n", (r2.returncode, r2.stderr)
    assert lazy.status_of(mp)["events"] > 0
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_busybox_runs_from_mount(lazy, images):
    """A static binary executes straight from the lazy mount (exec and page faults)."""
    mp = lazy.mount(images["busybox"]["ref"])
    r = subprocess.run([os.path.join(mp, "bin", "busybox"), "echo", "hello"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "hello\n", (r.returncode, r.stdout, r.stderr)
    r = subprocess.run([os.path.join(mp, "bin", "sh"), "-c",
                        f"cat {mp}/etc/motd; {mp}/bin/sha256sum {mp}/etc/big.txt"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("hello from a lazy mount\n")
    assert sha256_file(os.path.join(mp, "etc", "big.txt")) in r.stdout
    assert lazy.status_of(mp)["errors"] == 0
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_status_numbers_follow_reads(lazy, images, big_image):
    """status: present/fetched bytes and events grow by what a read needed; human form."""
    rel, data = big_data(big_image)
    mp = lazy.mount(images["big"]["ref"])
    before = lazy.status_of(mp)
    assert before["state"] == "running" and before["errors"] == 0
    assert before["pid"] > 0 and pid_alive(before["pid"])
    assert before["present_bytes"] < before["size"], "a cold mount should not hold everything"
    got = read_file(mp + rel)
    assert got == data
    after = lazy.status_of(mp)
    # A plain image stores the file's bytes as they are: all of them had to come in.
    assert after["present_bytes"] >= before["present_bytes"] + len(data) - 4096, (before, after)
    assert after["fetched_bytes"] >= before["fetched_bytes"] + len(data) - 4096, (before, after)
    assert after["events"] > before["events"]
    assert after["requests"] > before["requests"]
    assert after["errors"] == 0 and after["state"] == "running"
    # Every event answered exactly once (once idle).
    idle = wait_until(lambda: (lambda m: m if m["pending"] == 0 else None)(lazy.status_of(mp)), 10)
    assert idle and idle["answers"] == idle["events"], idle
    for k in ("mountpoint", "source", "digest", "size", "present_bytes", "fetched_bytes",
              "requests", "events", "errors", "pid", "state"):
        assert k in after
    assert after["source"] == images["big"]["ref"]
    assert after["digest"].startswith("sha256:") and len(after["digest"]) == 71
    # Reading the same bytes again fetches nothing (once the read-ahead it started is done).
    settled = lazy.settled_status_of(mp)
    assert read_file(mp + rel) == data
    again = lazy.settled_status_of(mp)
    assert again["fetched_bytes"] == settled["fetched_bytes"], (settled, again)
    # Human form: a table with the mountpoint, human sizes and a percentage.
    r = lazy.run(["status"])
    assert r.returncode == 0, r.stderr
    assert "MOUNTPOINT" in r.stdout and os.path.realpath(mp) in r.stdout
    assert re.search(r"\d+(\.\d)? (KiB|MiB) \(\d+%\)", r.stdout), r.stdout
    assert "running" in r.stdout
    # status DIR: just that mount; a directory that is not a lazyerofs mount: exit 2.
    one = lazy.status(mp)
    assert len(one) == 1 and one[0]["mountpoint"] == os.path.realpath(mp)
    assert_one_line_error(lazy.run(["status", lazy.root]), 2)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_mount_returns_without_holding_stdout(lazy, images):
    """A caller's `$(lazyerofs mount ...)` returns: the daemon keeps no inherited fd."""
    mp = lazy.mountpoint()
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "mount", "-o", "insecure", images["plain"]["ref"], mp],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=lazy.env)
    try:
        out, err = p.communicate(timeout=30)  # reads until EOF on both pipes
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("lazyerofs mount's stdout/stderr stayed open (inherited by the daemon?)")
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 30
    pid = lazy.status_of(mp)["pid"]
    assert pid_alive(pid)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        assert not target.startswith("pipe:"), f"daemon holds a pipe: fd {fd} -> {target}"
    lazy.umount(mp)
    lazy.assert_nothing_left()


# --- sharing and lifetime ----------------------------------------------------------------------

def test_remount_fetches_nothing_present(lazy, images, faultproxy, expected_tree):
    """After umount, a new mount of the same image reuses the cache entry: reading the
    whole tree again sends no blob request at all."""
    ref = faultproxy.ref(images["plain"]["repo"], "v1")
    mp = lazy.mount(ref)
    compare_tree(mp, expected_tree)
    first = lazy.status_of(mp)
    lazy.umount(mp)
    assert lazy.wait_daemon_gone(first["pid"])
    faultproxy.reset_counts()
    mp = lazy.mount(ref, mp=mp)
    compare_tree(mp, expected_tree)
    st = lazy.status_of(mp)
    assert faultproxy.count(path="/blobs/sha256:") == 0, faultproxy.seen()
    assert st["fetched_bytes"] == 0, st
    assert st["present_bytes"] >= first["present_bytes"]
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_two_mounts_share_one_daemon(lazy, images, expected_tree):
    rel, data = big_file(expected_tree[0])
    a = lazy.mount(images["plain"]["ref"])
    b = lazy.mount(images["plain"]["ref"])
    sa, sb = lazy.status_of(a), lazy.status_of(b)
    assert sa["pid"] == sb["pid"], (sa, sb)
    assert lazy.daemon_roots() == {sa["pid"]}
    assert read_file(a + rel) == data
    fetched = lazy.settled_status_of(b)["fetched_bytes"]
    assert read_file(b + rel) == data
    # present already: nothing fetched
    assert lazy.settled_status_of(b)["fetched_bytes"] == fetched
    lazy.umount(a)
    assert pid_alive(sa["pid"]), "the daemon left while another mount still uses it"
    compare_tree(b, expected_tree)
    lazy.umount(b)
    assert lazy.wait_daemon_gone(sa["pid"])
    lazy.assert_nothing_left()


def test_plain_umount8_ends_daemon(lazy, images):
    mp = lazy.mount(images["lz4hc"]["ref"])
    pid = lazy.status_of(mp)["pid"]
    r = subprocess.run(["umount", mp], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    assert lazy.wait_daemon_gone(pid, timeout=10), "daemon outlived its only mount"
    record_numbers(f"daemon exit after umount(8): {(time.monotonic() - t0) * 1000:.0f} ms")
    # The state file is stale now; status notices and removes it.
    assert lazy.status() == []
    lazy.assert_nothing_left()


@pytest.mark.parametrize("how", ["lazyerofs", "umount8"])
def test_umount_busy_and_lazy(lazy, images, big_image, how):
    """A busy mount is refused with a clear line; a lazy unmount (`lazyerofs umount --lazy`
    or `umount -l`) detaches it, the open file keeps reading real bytes from the
    still-running daemon, and the daemon exits once it closes."""
    rel, data = big_data(big_image)
    mp = lazy.mount(images["big"]["ref"])
    pid = lazy.status_of(mp)["pid"]
    f = open(mp + rel, "rb")
    try:
        r = lazy.umount(mp, check=False)
        assert_one_line_error(r, 32)
        assert "busy" in r.stderr
        assert is_mounted(mp)
        if how == "lazyerofs":
            lazy.umount(mp, extra=["--lazy"])
        else:
            subprocess.run(["umount", "-l", mp], check=True, capture_output=True)
        assert not is_mounted(mp)
        time.sleep(0.5)
        assert pid_alive(pid), "daemon exited while a file of the detached mount is open"
        assert f.read() == data  # cold data: fetched after the detach
        assert pid_alive(pid)
    finally:
        f.close()
    assert lazy.wait_daemon_gone(pid, timeout=10), "daemon outlived the last open file"
    assert lazy.status() == []  # umount(8) left a stale state file: status removed it
    lazy.assert_nothing_left()


def test_concurrent_mounts_of_one_image(lazy, images, expected_tree):
    """Two mounts of one cold image started at the same time: both work, one daemon."""
    mps = [lazy.mountpoint(f"c{i}") for i in range(2)]
    procs = [subprocess.Popen([BIN, "mount", "-o", "insecure", images["lz4hc"]["ref"], mp],
                              env=lazy.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for mp in mps]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    pids = {lazy.status_of(mp)["pid"] for mp in mps}
    assert len(pids) == 1, lazy.status()
    for mp in mps:
        compare_tree(mp, expected_tree)
    for mp in mps:
        lazy.umount(mp)
    lazy.assert_nothing_left()


def test_stale_state_after_daemon_death(lazy, images):
    """A daemon killed outright (all its processes) leaves a mount that would read zeros:
    status says so (state bad, pid, the reason); `lazyerofs umount` still unmounts and cleans
    the state file."""
    mp = lazy.mount(images["big"]["ref"])
    pids = lazy.daemon_pids()
    for p in pids:
        os.kill(p, signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 10)
    st = lazy.status_of(mp)
    assert st["state"] == "bad" and "daemon" in st.get("problem", ""), st
    r = lazy.run(["status"])
    assert r.returncode == 0 and "not running" in r.stdout, r.stdout
    lazy.umount(mp)
    lazy.assert_nothing_left()


@pytest.fixture
def mount_helper_link():
    link = "/sbin/mount.erofs.lazy"
    if os.path.lexists(link):
        if os.path.realpath(link) != os.path.realpath(BIN):
            pytest.skip(f"{link} exists and is not this build's binary")
        yield link
        return
    os.symlink(os.path.realpath(BIN), link)
    try:
        yield link
    finally:
        os.unlink(link)


def test_mount_t_erofs_lazy(lazy, images, expected_tree, mount_helper_link):
    """mount(8) runs /sbin/mount.erofs.lazy with its helper argument convention."""
    mp = lazy.mountpoint()
    r = subprocess.run(["mount", "-t", "erofs.lazy", "-o", "insecure,nodev,nosuid",
                        images["plain"]["ref"], mp], capture_output=True, text=True,
                       env=lazy.env, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    compare_tree(mp, expected_tree)
    with open("/proc/self/mountinfo") as f:
        opts = next(l for l in f if l.split()[4] == os.path.realpath(mp)).split()[5].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(opts), opts
    st = lazy.status_of(mp)
    assert st["state"] in ("running", "complete", "verified") and st["errors"] == 0
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_mount_flags_applied(lazy, images):
    mp = lazy.mount(images["busybox"]["ref"], opts="insecure,noexec,nodev,noatime")
    with open("/proc/self/mountinfo") as f:
        opts = next(l for l in f if l.split()[4] == os.path.realpath(mp)).split()[5].split(",")
    assert {"ro", "noexec", "nodev", "noatime"} <= set(opts), opts
    with pytest.raises(PermissionError):  # noexec
        subprocess.run([os.path.join(mp, "bin", "busybox"), "true"], capture_output=True)
    assert read_file(os.path.join(mp, "etc", "motd")) == b"hello from a lazy mount\n"
    lazy.umount(mp)
    lazy.assert_nothing_left()


# --- offline ---------------------------------------------------------------------------------

@pytest.fixture
def private_registry():
    reg = Registry().start()
    from registry import RegistryClient
    reg.client = RegistryClient(reg.url)
    try:
        yield reg
    finally:
        reg.cleanup()


def test_prefetch_all_then_offline_by_digest(lazy, private_registry, expected_tree):
    """prefetch=all completes and verifies the entry; then a digest-pinned source mounts
    with the registry gone."""
    reg = private_registry
    im = reg.client.push_image("off/plain", "v1", [(os.path.join(FIXTURES, "plain.erofs"),
                                                    MT_EROFS)])
    ref = reg.ref("off/plain", digest=im["digest"])
    mp = lazy.mount(ref, opts="insecure,prefetch=all")
    st = wait_until(lambda: (lambda s: s if s["state"] == "verified" else None)(lazy.status_of(mp)),
                    60)
    assert st, lazy.status_of(mp)
    assert st["present_bytes"] == st["size"]
    lazy.umount(mp)
    assert lazy.wait_daemon_gone(st["pid"])
    reg.stop()
    mp = lazy.mount(ref, mp=mp)
    compare_tree(mp, expected_tree)
    assert lazy.status_of(mp)["errors"] == 0
    lazy.umount(mp)
    lazy.assert_nothing_left()


# --- failures ----------------------------------------------------------------------------------

def test_registry_stopped_gives_eio_not_zeros(lazy, private_registry, big_image):
    """Registry gone during a cold read: EIO within the timeout= deadline, never zeros; once
    the registry is back, the same read succeeds."""
    reg = private_registry
    rel, data = big_data(big_image)
    reg.client.push_image("fail/big", "v1", [(big_image[0], MT_EROFS)])
    mp = lazy.mount(reg.ref("fail/big", "v1"), opts="insecure,timeout=3")
    reg.stop()
    fd = os.open(mp + rel, os.O_RDONLY)
    try:
        # One cold page: EIO, never zeros or a hang.
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            got = os.pread(fd, 4096, 8 << 20)
            pytest.fail(f"read succeeded with the registry down: {got.count(0)} of "
                        f"{len(got)} bytes are zeros (expected {data[8 << 20:][:4096].count(0)})")
        elapsed = time.monotonic() - t0
        assert e.value.errno == errno.EIO, e.value
        record_numbers(f"registry down: EIO for a 4 KiB read after {elapsed:.2f} s (timeout=3)")
        # The kernel retries a failed readahead page synchronously: the daemon denies that
        # retry at once (the bytes failed moments ago) instead of waiting one more deadline.
        assert elapsed < 3 + 2, elapsed
        # The whole file from the start: whatever comes back is the real bytes (what the
        # read-ahead already fetched), and the first missing part fails with EIO.
        off, t0 = 0, time.monotonic()
        with pytest.raises(OSError) as e:
            while off < len(data):
                got = os.pread(fd, 1 << 20, off)
                assert got, f"EOF at {off} of {len(data)}"
                assert got == data[off:off + len(got)], f"wrong bytes at {off}"
                off += len(got)
        assert e.value.errno == errno.EIO, e.value
        record_numbers(f"registry down: sequential read: {off} real bytes, then EIO after "
                       f"{time.monotonic() - t0:.2f} s")
    finally:
        os.close(fd)
    st = lazy.status_of(mp)
    assert st["errors"] > 0
    reg.start()
    # Bytes that failed to fetch are denied without a new fetch for up to 2 s (the kernel's
    # own follow-up reads); after that the same read fetches again.
    time.sleep(2.5)
    assert read_file(mp + rel) == data
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_registry_stopped_cold_cat_fails_within_one_deadline(lazy, private_registry, big_image):
    """A cold `cat` with the registry gone gets EIO within about one timeout= deadline: the
    kernel's retry of the failed readahead (a single-page read of the same bytes) is denied at
    once instead of waiting a second deadline. Never zeros; every event answered once; once
    the registry is back, the file reads back right."""
    reg = private_registry
    timeout = 2
    rel, data = big_data(big_image, 1)
    reg.client.push_image("fail/cat", "v1", [(big_image[0], MT_EROFS)])
    mp = lazy.mount(reg.ref("fail/cat", "v1"), opts=f"insecure,timeout={timeout}")
    reg.stop()
    t0 = time.monotonic()
    r = subprocess.run(["cat", mp + rel], capture_output=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode != 0, f"cat succeeded with the registry down ({len(r.stdout)} bytes)"
    assert b"Input/output error" in r.stderr, r.stderr
    assert r.stdout == data[:len(r.stdout)], "cat printed bytes that are not the file's"
    record_numbers(f"registry down: cold cat: EIO after {elapsed:.2f} s (timeout={timeout})")
    # Before: one deadline for the readahead, one more for the kernel's single-page retry.
    assert elapsed < 2 * timeout + 1, elapsed
    st = wait_until(lambda: (lambda s: s if s["answers"] == s["events"] else None)(
        lazy.status_of(mp)), 10)
    assert st, lazy.status_of(mp)
    assert st["denied"] >= 1, st
    reg.start()
    # Past the short window (the smaller of 2 s and timeout=) in which a just-failed range is
    # denied without a new fetch.
    time.sleep(min(2, timeout) + 0.5)
    assert read_file(mp + rel) == data
    st = lazy.status_of(mp)
    assert st["answers"] == st["events"], st
    lazy.umount(mp)
    lazy.assert_nothing_left()


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def test_worker_killed_never_zeros(lazy, images, faultproxy, big_image):
    """SIGKILL to the daemon's worker while a reader waits: the reader gets the right bytes
    (a new worker takes over) or EIO, never zeros, and never hangs."""
    rel, data = big_data(big_image)
    mp = lazy.mount(faultproxy.ref(images["big"]["repo"], "v1"), opts="insecure,timeout=10")
    holder = lazy.status_of(mp)["pid"]
    workers = _children(holder)
    assert workers, f"daemon {holder} has no worker process to kill"
    faultproxy.add("delay", path="/blobs/sha256:", count=None, seconds=2)
    reader = subprocess.Popen(
        ["/usr/bin/python3", "-c",
         "import sys,hashlib\n"
         "try:\n"
         "    d=open(sys.argv[1],'rb').read(); print('ok', hashlib.sha256(d).hexdigest(), d.count(0))\n"
         "except OSError as e:\n"
         "    print('err', e.errno)\n", mp + rel],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.7)
    for w in workers:
        os.kill(w, signal.SIGKILL)
    try:
        out, _ = reader.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        reader.kill()
        reader.communicate()
        pytest.fail("reader hung after the worker was killed")
    faultproxy.clear()
    kind, *rest = out.split()
    if kind == "ok":
        assert rest[0] == hashlib.sha256(data).hexdigest(), "wrong bytes after a worker crash"
    else:
        assert int(rest[0]) == errno.EIO, out
    # The mount keeps working (a replacement worker) and never serves zeros.
    assert wait_until(lambda: read_file(mp + rel) == data, 20, step=0.5)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_corrupting_proxy_marks_entry_bad(lazy, images, faultproxy, big_image):
    """prefetch=all through a proxy that flips a byte of file data: the sha256 check fails
    and status shows the entry bad."""
    rel, data = big_data(big_image, 1)
    with open(images["big"]["path"], "rb") as f:
        blob = f.read()
    where = blob.find(data[:4096])
    assert where > 0
    faultproxy.add("corrupt", path="/blobs/sha256:", count=None, offsets=[where + 1234])
    mp = lazy.mount(faultproxy.ref(images["big"]["repo"], "v1"),
                    opts="insecure,prefetch=all")
    st = wait_until(lambda: (lambda s: s if s["state"] == "bad" else None)(lazy.status_of(mp)), 60)
    assert st, lazy.status_of(mp)
    r = lazy.run(["status"])
    assert "bad" in r.stdout
    lazy.umount(mp)
    assert lazy.wait_daemon_gone(st["pid"])
    # A bad entry is never used again: a new mount (no proxy) gets a fresh one and verifies.
    faultproxy.clear()
    mp = lazy.mount(images["big"]["ref"], mp=mp, opts="insecure,prefetch=all")
    st = wait_until(lambda: (lambda s: s if s["state"] == "verified" else None)(lazy.status_of(mp)),
                    60)
    assert st, lazy.status_of(mp)
    assert read_file(mp + rel) == data
    lazy.umount(mp)
    lazy.assert_nothing_left()


# --- bad input: one line, the documented exit code, nothing left -------------------------------

def test_bad_reference(lazy):
    mp = lazy.mountpoint()
    assert_one_line_error(lazy.run(["mount", "-o", "insecure", "Bad Ref::x", mp]), 1)
    lazy.assert_nothing_left()


def test_unknown_tag(lazy, images, registry):
    mp = lazy.mountpoint()
    r = lazy.run(["mount", "-o", "insecure", registry.ref("lazy/plain", "nope"), mp])
    assert_one_line_error(r, 32)
    assert "404" in r.stderr and "MANIFEST_UNKNOWN" in r.stderr, r.stderr
    assert "lazy/plain:nope" in r.stderr
    lazy.assert_nothing_left()


def test_unreachable_registry(lazy):
    mp = lazy.mountpoint()
    t0 = time.monotonic()
    r = lazy.run(["mount", "-o", "insecure,timeout=3", f"127.0.0.1:{free_port()}/x/y:z", mp])
    assert_one_line_error(r, 32)
    assert time.monotonic() - t0 < 20
    lazy.assert_nothing_left()


@pytest.mark.parametrize("opts,word", [("insecure,frobnicate", "frobnicate"),
                                        ("insecure,rw", "rw"),
                                        ("insecure,loop", "loop"),
                                        ("insecure,prefetch=most", "prefetch"),
                                        ("insecure,timeout=soon", "timeout")])
def test_bad_options(lazy, images, opts, word):
    mp = lazy.mountpoint()
    r = lazy.run(["mount", "-o", opts, images["plain"]["ref"], mp])
    assert_one_line_error(r, 1)
    assert word in r.stderr
    lazy.assert_nothing_left()


def test_missing_mountpoint(lazy, images):
    r = lazy.run(["mount", "-o", "insecure", images["plain"]["ref"],
                  os.path.join(lazy.root, "does-not-exist")])
    assert_one_line_error(r, 32)
    assert "does-not-exist" in r.stderr
    lazy.assert_nothing_left()


def test_cache_on_tmpfs_refused(lazy, images):
    t = os.path.join(lazy.root, "tmpfs")
    os.makedirs(t)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", t], check=True)
    try:
        mp = lazy.mountpoint()
        r = lazy.run(["mount", "-o", f"insecure,cache={t}/cache", images["plain"]["ref"], mp])
        assert_one_line_error(r, 32)
        assert "tmpfs" in r.stderr
        assert not is_mounted(mp)
    finally:
        subprocess.run(["umount", "-l", t], check=True)
    lazy.assert_nothing_left()


def test_multi_device_image_refused(lazy, registry, workdir):
    tree = os.path.join(workdir, "mdtree")
    os.makedirs(tree, exist_ok=True)
    with open(os.path.join(tree, "f"), "wb") as f:
        f.write(os.urandom(64 * 1024))
    img, blobdev = os.path.join(workdir, "md.erofs"), os.path.join(workdir, "md.blob")
    subprocess.run(["mkfs.erofs", "--chunksize=4096", f"--blobdev={blobdev}", img, tree],
                   check=True, capture_output=True)
    registry.client.push_image("lazy/multidev", "v1", [(img, MT_EROFS)])
    mp = lazy.mountpoint()
    r = lazy.run(["mount", "-o", "insecure", registry.ref("lazy/multidev", "v1"), mp])
    assert_one_line_error(r, 32)
    assert "device" in r.stderr
    lazy.assert_nothing_left()


def test_not_an_erofs_blob(lazy, registry):
    registry.client.push_image("lazy/notfs", "v1",
                               [(os.path.join(FIXTURES, "tree.tar"), MT_EROFS)])
    mp = lazy.mountpoint()
    r = lazy.run(["mount", "-o", "insecure", registry.ref("lazy/notfs", "v1"), mp])
    assert_one_line_error(r, 32)
    assert "EROFS" in r.stderr or "erofs" in r.stderr
    lazy.assert_nothing_left()


def test_umount_not_lazyerofs(lazy):
    assert_one_line_error(lazy.run(["umount", lazy.root]), 32)
    assert_one_line_error(lazy.run(["umount", os.path.join(lazy.root, "nope")]), 32)
    assert_one_line_error(lazy.run(["umount"]), 1)
