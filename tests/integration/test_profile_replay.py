# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Startup profiles, recorded and replayed (issue 11). A workload reads some files of a lazy
mount; `profile save` writes what the daemon saw it need, in first-access order; on a fresh
cache, a mount replays it -- from `profile=PATH`, or (`profile=auto`, the default) from the
registry after `profile push` attached it to the image -- and the same workload then finds its
bytes present (status: the replay's progress and the reads it served). A profile of another
blob, a malformed or hostile one: one warning line, and a mount without replay."""

import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess

import pytest

from common import run
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

FILES = 120


def make_tree(root, seed):
    rnd = random.Random(seed)
    for i in range(FILES):
        d = os.path.join(root, f"d{i % 6}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:03d}"), "wb") as f:
            f.write(rnd.randbytes(rnd.randint(1, 40) * 1024))
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(rnd.randbytes(8 << 20))


@pytest.fixture(scope="module")
def images(workdir, registry):
    out = {}
    for name, seed in (("a", 1), ("b", 2)):
        tree = os.path.join(workdir, f"tree-{name}")
        make_tree(tree, seed)
        path = os.path.join(workdir, f"{name}.erofs")
        subprocess.run(["mkfs.erofs", "-T0", path, tree], check=True, capture_output=True,
                       timeout=300)
        registry.client.push_image(f"prof/{name}", "v1", [(path, MT_EROFS)])
        out[name] = {"ref": registry.ref(f"prof/{name}", "v1"), "path": path}
    return out


def workload(mp, start=0, stop=FILES):
    """Reads every third small file, whole: a program's start, in miniature."""
    for i in range(start, stop, 3):
        with open(os.path.join(mp, f"d{i % 6}", f"f{i:03d}"), "rb") as f:
            f.read()


def record(lazy, ref, workdir, name):
    mp = lazy.mount(ref, opts="insecure,profile=none")
    workload(mp)
    path = os.path.join(workdir, name)
    r = lazy.run(["profile", "save", mp, path])
    assert r.returncode == 0, r.stderr
    lazy.umount(mp)
    return path


def parse(path):
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "lazyerofs-profile 1"
    blob = [l.split() for l in lines if l.startswith("blob ")]
    assert len(blob) == 1
    ranges = [tuple(map(int, l.split())) for l in lines if l[:1].isdigit()]
    return blob[0][1], int(blob[0][2]), ranges


def daemon_status(env):
    """The daemon's own status reply (more keys than `status --json`), for a failure's
    message."""
    with socket.socket(socket.AF_UNIX) as so:
        so.settimeout(10)
        so.connect(env.states()[0]["socket"])
        so.sendall(b'{"op":"status"}\n')
        return so.makefile().readline()


def warnings(r):
    return [l for l in r.stderr.splitlines() if l.strip()]


def test_record_and_replay_from_file(lazy, images, workdir):
    path = record(lazy, images["a"]["ref"], workdir, "a.prof")
    digest, size, ranges = parse(path)
    st = lazy.status()  # nothing mounted any more
    assert st == []
    assert digest.startswith("sha256:") and size == os.path.getsize(images["a"]["path"])
    # Every file read is in it: at least one range per file, in first-access order (times
    # never go down).
    assert len(ranges) >= FILES // 3 // 2, len(ranges)
    assert [t for t, _, _ in ranges] == sorted(t for t, _, _ in ranges)

    # A fresh cache: the profile is replayed, and the workload's reads find their bytes.
    fresh = type(lazy)(os.path.dirname(lazy.root))
    try:
        mp, r = fresh.mount(images["a"]["ref"], opts=f"insecure,profile={path}", check=False)
        assert r.returncode == 0, r.stderr
        assert warnings(r) == [], r.stderr
        st = fresh.settled_status_of(mp)
        assert st["profile_state"] == "done", st
        assert st["profile_ranges"] == len(ranges)
        assert st["profile_ranges_done"] == len(ranges)
        assert st["profile_fetched_bytes"] > 0
        before = st["requests"]
        workload(mp)
        st = fresh.settled_status_of(mp)
        assert st["profile_served"] >= FILES // 3 // 2, st
        # The workload needed (almost) nothing more from the registry.
        assert st["requests"] - before <= 2, (before, st)
        fresh.umount(mp)
    finally:
        problems = fresh.cleanup()
    assert not problems, problems


def test_record_outlives_a_worker_crash(lazy, images, workdir):
    """The record of first accesses lives in memory shared with the holder: a worker killed
    outright is replaced, the replacement goes on with the record, and a profile saved
    afterwards holds the reads from before the crash too, at their times."""
    lazy.short_replacement_stay()
    mp = lazy.mount(images["a"]["ref"], opts="insecure,profile=none")
    workload(mp, stop=FILES // 2)
    before_path = os.path.join(workdir, "before-crash.prof")
    r = lazy.run(["profile", "save", mp, before_path])
    assert r.returncode == 0, r.stderr
    _, _, before = parse(before_path)
    st0 = lazy.status_of(mp)
    os.kill(st0["worker_pid"], signal.SIGKILL)
    lazy.wait_worker_replaced(mp, st0["worker_pid"])
    workload(mp, start=FILES // 2)
    after_path = os.path.join(workdir, "after-crash.prof")
    r = lazy.run(["profile", "save", mp, after_path])
    assert r.returncode == 0, r.stderr
    _, _, after = parse(after_path)
    assert len(after) > len(before), (len(before), len(after))
    # The same ranges, in the same order, at the same times (the last one may have grown).
    assert after[:len(before) - 1] == before[:-1]
    assert after[len(before) - 1][:2] == before[-1][:2]
    assert [t for t, _, _ in after] == sorted(t for t, _, _ in after)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_replay_outlives_a_worker_crash(lazy, images, workdir, faultproxy):
    """The profile being replayed is kept in memory shared with the holder: a worker killed
    in the middle of a replay (every blob request takes 0.3 s here) is replaced, the
    replacement replays the profile again (what is present is not fetched twice), and the
    workload then finds its bytes present."""
    mp = lazy.mount(images["a"]["ref"], opts="insecure,profile=none")
    workload(mp)
    with open(os.path.join(mp, "big.bin"), "rb") as f:
        f.read()  # 8 MiB more: a replay of many requests
    path = os.path.join(workdir, "a-crash.prof")
    r = lazy.run(["profile", "save", mp, path])
    assert r.returncode == 0, r.stderr
    lazy.umount(mp)
    _, _, ranges = parse(path)
    fresh = type(lazy)(os.path.dirname(lazy.root))
    try:
        ref = faultproxy.ref("prof/a", "v1")
        faultproxy.add("delay", path=r"/blobs/", method="GET", seconds=0.3, count=None)
        fresh.short_replacement_stay()
        mp, r = fresh.mount(ref, opts=f"insecure,profile={path}", check=False)
        assert r.returncode == 0, r.stderr
        st0 = fresh.status_of(mp)
        assert st0["profile_state"] == "replaying", st0
        os.kill(st0["worker_pid"], signal.SIGKILL)
        fresh.wait_worker_replaced(mp, st0["worker_pid"])
        faultproxy.clear()
        st = fresh.settled_status_of(mp)
        assert st["profile_state"] == "done", st
        assert st["profile_ranges"] == len(ranges)
        assert st["profile_ranges_done"] == len(ranges)
        before = st["requests"]
        workload(mp)
        st = fresh.settled_status_of(mp)
        assert st["requests"] - before <= 2, (before, st)
        fresh.umount(mp)
        fresh.assert_nothing_left(timeout=30)
    finally:
        problems = fresh.cleanup()
    assert not problems, problems


def test_a_named_profile_replaces_a_finished_replay(lazy, images, workdir, faultproxy):
    """One replay at a time per image: a mount that names a profile while another is being
    replayed says so in one warning line; once that replay is done, a mount that names a
    profile has it replayed (it was dropped without a word: the first replay stayed)."""
    path = images["a"]["path"]
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        digest = "sha256:" + hashlib.sha256(f.read()).hexdigest()
    whole = os.path.join(workdir, "whole.prof")
    few = os.path.join(workdir, "few.prof")
    with open(whole, "w") as f:
        f.write(f"lazyerofs-profile 1\nblob {digest} {size}\n")
        f.writelines(f"{i} {off} 65536\n" for i, off in enumerate(range(0, size - 65536, 65536)))
    with open(few, "w") as f:
        f.write(f"lazyerofs-profile 1\nblob {digest} {size}\n0 0 4096\n1 8192 4096\n")
    ref = faultproxy.ref("prof/a", "v1")
    faultproxy.add("slow", path=r"/blobs/", method="GET", count=None, rate=1 << 20,
                   piece=16 << 10)
    mp1, r = lazy.mount(ref, opts=f"insecure,profile={whole}", check=False)
    assert r.returncode == 0 and warnings(r) == [], r.stderr
    assert lazy.status_of(mp1)["profile_state"] == "replaying"
    mp2, r = lazy.mount(ref, opts=f"insecure,profile={few}", check=False)
    assert r.returncode == 0, r.stderr
    lines = warnings(r)
    assert len(lines) == 1 and "not replayed" in lines[0] and few in lines[0], r.stderr
    faultproxy.clear()
    st = lazy.settled_status_of(mp1)
    assert st["profile_state"] == "done" and st["profile_ranges"] > 100, st
    mp3, r = lazy.mount(ref, opts=f"insecure,profile={few}", check=False)
    assert r.returncode == 0 and warnings(r) == [], r.stderr
    st = lazy.settled_status_of(mp3)
    assert st["profile_state"] == "done" and st["profile_ranges"] == 2, st
    for mp in (mp3, mp2, mp1):
        lazy.umount(mp)


def test_wrong_blob_and_bad_profiles_warn(lazy, images, workdir):
    path = record(lazy, images["a"]["ref"], workdir, "a2.prof")
    bad = os.path.join(workdir, "bad.prof")
    hostile = os.path.join(workdir, "hostile.prof")
    with open(bad, "wb") as f:
        f.write(b"\x7fELF not a profile at all\n")
    digest, size, _ = parse(path)
    with open(hostile, "w") as f:
        f.write(f"lazyerofs-profile 1\nblob {digest} {size}\n0 {size - 4096} 999999999\n")
    for prof, what in ((path, "recorded for blob"), (bad, "line 1"), (hostile, "line 3"),
                       ("/nonexistent/x.prof", "No such file")):
        ref = images["b"]["ref"] if prof == path else images["a"]["ref"]
        mp, r = lazy.mount(ref, opts=f"insecure,profile={prof}", check=False)
        assert r.returncode == 0, r.stderr
        lines = warnings(r)
        assert len(lines) == 1 and "profile" in lines[0] and what in lines[0], r.stderr
        st = lazy.status_of(mp)
        assert st["profile_state"] == "none", st
        with open(os.path.join(mp, "d0", "f000"), "rb") as f:
            f.read()
        lazy.umount(mp)


def test_profile_auto_from_the_registry(lazy, images, workdir):
    ref = images["a"]["ref"]
    # Nothing attached yet: auto is quiet.
    mp, r = lazy.mount(ref, check=False)
    assert r.returncode == 0 and warnings(r) == [], r.stderr
    assert lazy.status_of(mp)["profile_state"] == "none"
    workload(mp)
    path = os.path.join(workdir, "auto.prof")
    r = lazy.run(["profile", "save", mp, path])
    assert r.returncode == 0, r.stderr
    lazy.umount(mp)
    r = lazy.run(["profile", "push", "-o", "insecure", path, ref])
    assert r.returncode == 0, r.stderr
    _, _, ranges = parse(path)

    fresh = type(lazy)(os.path.dirname(lazy.root))
    try:
        mp, r = fresh.mount(ref, check=False)
        assert r.returncode == 0 and warnings(r) == [], r.stderr
        st = fresh.settled_status_of(mp)
        assert st["profile_state"] == "done" and st["profile_ranges"] == len(ranges), \
            daemon_status(fresh)
        # profile=none: no lookup, no replay.
        fresh.umount(mp)
    finally:
        problems = fresh.cleanup()
    assert not problems, problems
    mp = lazy.mount(ref, opts="insecure,profile=none")
    assert lazy.status_of(mp)["profile_state"] == "none"
    lazy.umount(mp)


def test_profile_save_errors(lazy, images, workdir):
    r = lazy.run(["profile", "save", workdir, os.path.join(workdir, "x.prof")])
    assert r.returncode == 2 and len(warnings(r)) == 1, r.stderr
    # A mount records what its metadata walk asks for: the profile of a mount where nothing
    # was read yet starts with the superblock's block and holds the walk's ranges.
    mp = lazy.mount(images["b"]["ref"], opts="insecure,profile=none")
    out = os.path.join(workdir, "meta.prof")
    r = lazy.run(["profile", "save", mp, out])
    assert r.returncode == 0, r.stderr
    _, _, meta = parse(out)
    assert meta[0][1] == 0 and len(meta) > 1, meta
    r = lazy.run(["profile", "save", mp])
    assert r.returncode == 1, r.stderr
    lazy.umount(mp)
    assert run(["profile", "--help"]).returncode == 0


def test_record_holds_all_the_walk_read(lazy, registry, workdir):
    """A recording mount's walk bridges gaps (on loopback, up to its rate's worth) and reads
    the blocks it bridged later without asking for them: they are in the record all the same,
    so a replay brings all the metadata a mount walks (here: a profile without a workload is
    the walk's, and it covers every metadata block of the image)."""
    tree = os.path.join(workdir, "tree-meta")
    rnd = random.Random(5)

    def fill(d, depth):
        os.makedirs(d, exist_ok=True)
        for i in range(rnd.randint(5, 40)):
            n = rnd.choice([rnd.randint(10, 3000), rnd.randint(4096, 30000),
                            rnd.randint(30000, 100000)])
            with open(os.path.join(d, f"f{i:03d}-" + "x" * rnd.randint(1, 30)), "wb") as f:
                f.write(rnd.randbytes(200) * (n // 200 + 1))
        if depth < 4:
            for k in range(rnd.randint(1, 5)):
                fill(os.path.join(d, f"d{k}"), depth + 1)

    fill(tree, 0)
    # (compressed: its cluster indexes give the walk gaps to bridge)
    path = os.path.join(workdir, "meta.erofs")
    subprocess.run(["mkfs.erofs", "-T0", "-zlz4hc", path, tree], check=True,
                   capture_output=True, timeout=300)
    shutil.rmtree(tree)
    registry.client.push_image("prof/meta", "v1", [(path, MT_EROFS)])
    r = run(["inspect", "--extents", "--gap=0", path])
    assert r.returncode == 0, r.stderr
    meta = set()
    for line in r.stdout.splitlines():
        off, length = map(int, line.split())
        meta.update(range(off // 4096, (off + length + 4095) // 4096))
    prof = record_walk(lazy, registry.ref("prof/meta", "v1"), workdir, "meta.prof")
    got = set()
    for _, off, length in parse(prof)[2]:
        got.update(range(off // 4096, (off + length + 4095) // 4096))
    missing = sorted(meta - got)
    assert not missing, f"{len(missing)} of {len(meta)} metadata blocks not recorded: {missing[:8]}"


def record_walk(lazy, ref, workdir, name):
    """A mount's record with no workload: what its walk needed."""
    mp = lazy.mount(ref, opts="insecure,profile=none")
    path = os.path.join(workdir, name)
    r = lazy.run(["profile", "save", mp, path])
    assert r.returncode == 0, r.stderr
    lazy.umount(mp)
    return path
