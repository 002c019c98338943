# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A mount (or fetch) of an image whose daemon another mount started joins that daemon, which
serves every mount of the image at once. Its options either apply or are refused in words:
prefetch=all is passed on; a cache directory or a timeout= other than the daemon's is
refused, naming the one in use. They used to be dropped without a word (a second mount with
timeout=60 got EIO after the first one's 2 s; cache=B was served from A)."""

import os
import subprocess
import time

import pytest

from common import BIN, child_read, child_sha256, wait_until
from lazymount import build_big_image
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")


@pytest.fixture(scope="module")
def big(registry, tmp_path_factory):
    image, tree = build_big_image(str(tmp_path_factory.mktemp("join")), files=1, mib=16)
    registry.client.push_image("join/big", "v1", [(image, MT_EROFS)])
    return registry.ref("join/big", "v1"), tree


def one_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_different_timeout_is_refused_in_words(lazy, big):
    ref, tree = big
    first = lazy.mount(ref, opts="insecure,timeout=2")
    mp2, r = lazy.mount(ref, opts="insecure,timeout=60", check=False)
    assert r.returncode == 32, r.stderr
    line = one_line(r.stderr)
    assert "timeout=2" in line and "unmount" in line, line
    assert not os.path.ismount(mp2)
    # the same timeout, or none asked for, joins
    mp3 = lazy.mount(ref, opts="insecure,timeout=2")
    mp4 = lazy.mount(ref)
    want = child_sha256(os.path.join(tree, "data/r0.bin"))
    assert child_sha256(os.path.join(mp4, "data/r0.bin"), timeout=60) == want
    for mp in (mp4, mp3, first):
        lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_a_daemon_on_its_way_out_does_not_refuse_the_next_mount(lazy, big):
    """umount, then at once a mount with another timeout=: the first one's daemon, still
    there for a moment without users, is waited for and a new one started (the mount was
    refused)."""
    ref, tree = big
    mp = lazy.mount(ref, opts="insecure,timeout=2")
    lazy.umount(mp)
    mp = lazy.mount(ref, opts="insecure,timeout=60")
    assert lazy.status_of(mp)["timeout_ms"] == 60000
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def background_fetch(lazy, ref, opts):
    """`lazyerofs fetch -o OPTS REF` running, once its daemon is there."""
    p = subprocess.Popen([BIN, "fetch", "-o", opts, ref], env=lazy.env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: lazy.daemon_pids(), 30)
    return p


def test_a_timeout_no_mount_chose_is_the_joining_mounts(lazy, big, faultproxy):
    """A daemon started by `lazyerofs fetch` (or a mount without timeout=) has the default
    deadline, which no mount chose: a mount with timeout= that joins it sets it (it was
    refused, told to unmount mounts that did not exist); a later, other one is refused."""
    ref, tree = big
    faultproxy.add("delay", path=r"/blobs/", method="GET", count=10000, seconds=0.5)
    fetch = background_fetch(lazy, faultproxy.ref("join/big", "v1"), "insecure")
    try:
        mp = lazy.mount(faultproxy.ref("join/big", "v1"), opts="insecure,timeout=30")
        assert lazy.status_of(mp)["timeout_ms"] == 30000
        mp2, r = lazy.mount(faultproxy.ref("join/big", "v1"), opts="insecure,timeout=20",
                            check=False)
        assert r.returncode == 32 and "timeout=30" in one_line(r.stderr), r.stderr
        mp3 = lazy.mount(faultproxy.ref("join/big", "v1"))  # none asked: joins
        assert lazy.status_of(mp3)["timeout_ms"] == 30000
    finally:
        fetch.kill()
        fetch.communicate()
    faultproxy.clear()
    for m in (mp3, mp):
        lazy.umount(m)
    lazy.assert_nothing_left(timeout=30)


def test_a_timeout_taken_over_reaches_the_registry_requests(lazy, big, faultproxy):
    """A mount's timeout=10 taken over by a daemon a `fetch -o timeout=1` started: a registry
    that answers in 3 s serves its reads (the requests kept the 1 s deadline, and the reads
    failed though the mount allowed 10 s)."""
    ref, tree = big
    # the fetch's fill gets nothing past the image's first MB: the data stays cold
    faultproxy.add("stall", path=r"/blobs/", method="GET", count=None, seconds=5,
                   range=r"bytes=\d{7,}-")
    fetch = background_fetch(lazy, faultproxy.ref("join/big", "v1"), "insecure,timeout=1")
    try:
        mp = lazy.mount(faultproxy.ref("join/big", "v1"), opts="insecure,timeout=10")
        assert lazy.status_of(mp)["timeout_ms"] == 10000
    finally:
        fetch.kill()
        fetch.communicate()
    faultproxy.clear()
    time.sleep(6)  # the stalls are over, and the failures' window
    faultproxy.add("delay", path=r"/blobs/", method="GET", count=None, seconds=3)
    with open(os.path.join(tree, "data/r0.bin"), "rb") as f:
        f.seek(9 << 20)
        want = f.read(65536)
    assert child_read(os.path.join(mp, "data/r0.bin"), 9 << 20, 65536, timeout=60) == want
    faultproxy.clear()
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_prefetch_all_of_a_joining_mount_fills_the_image(lazy, big):
    ref, tree = big
    first = lazy.mount(ref)
    mp2 = lazy.mount(ref, opts="insecure,prefetch=all")
    deadline = time.monotonic() + 60
    st = lazy.status_of(mp2)
    while st["state"] != "verified" and time.monotonic() < deadline:
        time.sleep(0.2)
        st = lazy.status_of(mp2)
    assert st["state"] == "verified", st
    assert st["present_bytes"] == st["size"], st
    lazy.umount(mp2)
    lazy.umount(first)
    lazy.assert_nothing_left(timeout=30)


def test_another_cache_directory_is_refused_in_words(lazy, big):
    ref, tree = big
    first = lazy.mount(ref)
    cache_a = os.path.dirname(os.path.dirname(lazy.status_of(first)["cache"]))
    other = os.path.join(lazy.root, "othercache")
    os.mkdir(other, 0o700)
    mp2, r = lazy.mount(ref, opts=f"insecure,cache={other}", check=False)
    assert r.returncode == 32, r.stderr
    line = one_line(r.stderr)
    assert cache_a in line, line
    assert not os.path.ismount(mp2)
    r = lazy.run(["fetch", "-o", f"insecure,cache={other}", ref], timeout=120)
    assert r.returncode == 2, r.stderr
    assert cache_a in one_line(r.stderr)
    assert not os.listdir(other) or not os.listdir(os.path.join(other, "sha256"))
    # the cache directory in use, named, is the same one
    mp3 = lazy.mount(ref, opts=f"insecure,cache={cache_a}/")
    lazy.umount(mp3)
    lazy.umount(first)
    lazy.assert_nothing_left(timeout=30)
