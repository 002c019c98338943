# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A mount (or fetch) of an image whose daemon another mount started joins that daemon, which
serves every mount of the image at once. Its options either apply or are refused in words:
prefetch=all is passed on; a cache directory or a timeout= other than the daemon's is
refused, naming the one in use. They used to be dropped without a word (a second mount with
timeout=60 got EIO after the first one's 2 s; cache=B was served from A)."""

import os
import time

import pytest

from common import child_sha256
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
