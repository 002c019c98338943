# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Long runs for `make stress` (minutes; not part of `make check`).

- SIGKILLs of the daemon's worker and holder, one process at a time, under parallel readers
  in child processes, while the fault proxy injects resets, 5xx, stalls and short bodies:
  every read gets the right bytes or EIO, never zeros; afterwards the whole image compares.
- Scale: 100 distinct images mounted at once with the host's default kernel limits, and 200
  mounts of one image.

Knobs: LAZYEROFS_STRESS_KILLS (default 100), LAZYEROFS_STRESS_IMAGES (100),
LAZYEROFS_STRESS_MOUNTS (200). Each test prints what it did (kills survived, faults
injected, reads checked)."""

import os
import random
import signal
import subprocess
import threading
import time

import pytest

from common import child_hashes, content_hashes, pid_alive, wait_until
from lazymount import build_big_image
from registry import MT_EROFS

MiB = 1 << 20
KILLS = int(os.environ.get("LAZYEROFS_STRESS_KILLS", "100"))
IMAGES = int(os.environ.get("LAZYEROFS_STRESS_IMAGES", "100"))
MOUNTS = int(os.environ.get("LAZYEROFS_STRESS_MOUNTS", "200"))

# A reader in a child process: random reads of the given files until the stop file exists,
# each compared with the source; EIO is allowed (a fault outlived the deadline), wrong bytes
# are not. Prints "ok N eio M", or "BAD ..." and exits 1 on wrong bytes.
READER = r"""
import os, random, sys
mp, src, stop, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
names = sorted(os.listdir(os.path.join(src, "data")))
ok = eio = 0
while not os.path.exists(stop):
    n = rnd.choice(names)
    size = os.path.getsize(os.path.join(src, "data", n))
    off = rnd.randrange(0, size)
    ln = rnd.choice([4096, 65536, 1 << 20])
    with open(os.path.join(src, "data", n), "rb") as f:
        f.seek(off)
        want = f.read(ln)
    try:
        fd = os.open(os.path.join(mp, "data", n), os.O_RDONLY)
        try:
            got = os.pread(fd, ln, off)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno != 5:
            print(f"BAD errno {e.errno} at {n}:{off}")
            sys.exit(1)
        eio += 1
        continue
    if got != want:
        zeros = got.count(0)
        print(f"BAD bytes at {n}:{off}+{ln}: {zeros} of {len(got)} zero")
        sys.exit(1)
    ok += 1
print(f"ok {ok} eio {eio}")
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return build_big_image(str(tmp_path_factory.mktemp("stress")), files=8, mib=32)


class FaultInjector(threading.Thread):
    """Adds one random fault every `period` seconds until stopped."""

    KINDS = ("reset", "status", "stall", "short", "drop")

    def __init__(self, proxy, period=0.3, seed=1):
        super().__init__(daemon=True)
        self.proxy, self.period, self.rnd = proxy, period, random.Random(seed)
        self.stop_ev = threading.Event()
        self.injected = {k: 0 for k in self.KINDS}

    def run(self):
        while not self.stop_ev.wait(self.period):
            kind = self.rnd.choice(self.KINDS)
            params = {}
            if kind == "reset" or kind == "short":
                params["after"] = self.rnd.choice([0, 1000, 100000])
            elif kind == "status":
                params["code"] = self.rnd.choice([500, 502, 503])
            elif kind == "stall":
                params["seconds"] = self.rnd.choice([0.5, 2])
            self.proxy.add(kind, path="/blobs/", count=1, **params)
            self.injected[kind] += 1

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.proxy.clear()


def daemon_pids(lazy, mp):
    st = lazy.status_of(mp)
    return st["pid"], st.get("worker_pid")


def test_kills_under_faults_never_give_wrong_bytes(lazy, registry, faultproxy, big, tmp_path):
    image, tree = big
    stop = str(tmp_path / "stop")
    registry.client.push_image("stress/kill", "v1", [(image, MT_EROFS)])
    mp = lazy.mount(faultproxy.ref("stress/kill", "v1"), opts="insecure,timeout=10")
    faults = FaultInjector(faultproxy)
    faults.start()
    readers = [subprocess.Popen(["/usr/bin/python3", "-c", READER, mp, tree, stop, str(i)],
                                stdout=subprocess.PIPE, text=True) for i in range(6)]
    rnd = random.Random(7)
    kills = {"worker": 0, "holder": 0}
    try:
        for i in range(KILLS):
            which = rnd.choice(["worker", "holder"])
            holder, worker = daemon_pids(lazy, mp)
            victim = worker if which == "worker" else holder
            assert victim and pid_alive(victim), lazy.status_of(mp)
            os.kill(victim, signal.SIGKILL)
            kills[which] += 1
            # Service resumes by itself: a live holder and worker, neither the victim.
            ok = wait_until(lambda: (lambda h, w: h and w and victim not in (h, w) and
                                     pid_alive(h) and pid_alive(w))(*daemon_pids(lazy, mp)), 30)
            assert ok, f"kill {i + 1} ({which} {victim}): no service: {lazy.status_of(mp)}"
            for r in readers:
                assert r.poll() is None, f"a reader stopped: {r.communicate()[0]}"
            time.sleep(rnd.uniform(0.05, 0.5))  # pacing, not synchronisation
    finally:
        faults.stop()
        open(stop, "w").close()
    outs = []
    for r in readers:
        out, _ = r.communicate(timeout=120)
        outs.append(out.strip())
    bad = [o for o in outs if not o.startswith("ok")]
    assert not bad, bad
    # With the faults gone, every byte of the image compares.
    assert child_hashes(mp, timeout=600) == content_hashes(tree)
    st = lazy.settled_status_of(mp)
    print(f"\nstress: {sum(kills.values())} kills survived ({kills}), faults injected "
          f"{faults.injected}, readers {outs}, restarts {st['restarts']}, errors {st['errors']}")
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=60)


def _tiny_images(workdir, n):
    out = []
    for i in range(n):
        tree = os.path.join(workdir, f"t{i}")
        os.makedirs(tree, exist_ok=True)
        with open(os.path.join(tree, "id"), "w") as f:
            f.write(f"image {i}\n" * (1000 + i))
        img = os.path.join(workdir, f"i{i}.erofs")
        subprocess.run(["mkfs.erofs", "-T0", img, tree], check=True, capture_output=True,
                       timeout=60)
        out.append((img, tree))
    return out


def test_many_distinct_images_at_once(lazy, registry, tmp_path):
    images = _tiny_images(str(tmp_path), IMAGES)
    mps = []
    for i, (img, tree) in enumerate(images):
        registry.client.push_image(f"stress/many{i}", "v1", [(img, MT_EROFS)])
        mps.append(lazy.mount(registry.ref(f"stress/many{i}", "v1"), opts="insecure"))
    for mp, (img, tree) in zip(mps, images):
        assert child_hashes(mp) == content_hashes(tree)
    print(f"\nstress: {len(mps)} distinct images mounted at once")
    for mp in mps:
        lazy.umount(mp)
    lazy.assert_nothing_left(timeout=120)


def test_many_mounts_of_one_image(lazy, registry, big):
    image, tree = big
    registry.client.push_image("stress/one", "v1", [(image, MT_EROFS)])
    mps = [lazy.mount(registry.ref("stress/one", "v1"), opts="insecure")
           for _ in range(MOUNTS)]
    pids = {lazy.status_of(mp)["pid"] for mp in (mps[0], mps[-1])}
    assert len(pids) == 1, pids
    want = content_hashes(os.path.join(tree, "etc"))
    for mp in mps[::20] + [mps[-1]]:
        assert child_hashes(os.path.join(mp, "etc")) == want
    print(f"\nstress: {len(mps)} mounts of one image, one daemon")
    for mp in mps:
        lazy.umount(mp)
    lazy.assert_nothing_left(timeout=120)
