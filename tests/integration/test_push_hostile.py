# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""`lazyerofs push` against registries that lie (lib/fakeregistry.py) and over a slow link:
a chunk the registry says it lost is sent again, a blob stored under another digest is an
error, and a push that moves bytes is never cut by a deadline meant for one request."""

import os

import pytest

from common import FIXTURES
from fakeregistry import FakeRegistry
from faultproxy import TcpCounter
from lazymount import build_big_image
from registry import file_digest, push

SMALL = os.path.join(FIXTURES, "plain.erofs")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """~48 MiB: uploaded in chunks (three PATCHes and more)."""
    image, _ = build_big_image(str(tmp_path_factory.mktemp("liar")), files=3, mib=16)
    return image


def run(lies, image, tmp_path, opts="insecure,timeout=20"):
    f = FakeRegistry(lies)
    try:
        r = push(image, f.ref("liar/img", "v1"), opts=opts,
                 env={"LAZYEROFS_CACHE_DIR": str(tmp_path / "cache")})
        return f, r
    finally:
        f.stop()


def test_an_honest_fake_takes_the_push(big, tmp_path):
    f, r = run((), big, tmp_path)
    assert r.returncode == 0, r.stderr
    with open(big, "rb") as fh:
        assert f.blobs[file_digest(big)] == fh.read()


def test_a_blob_stored_under_another_digest_is_an_error(tmp_path):
    """201 with another Docker-Content-Digest (it exited 0, as if published)."""
    f, r = run({"put_other_digest"}, SMALL, tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "stored it as" in lines[0], r.stderr


def test_a_chunk_the_registry_lost_is_sent_again(big, tmp_path):
    """A PATCH answered 202 whose bytes the registry dropped: its final PUT refuses the
    digest, and the push sends the blob once more, in a new session (it failed). The Range
    of a PATCH's answer is not taken for what the registry holds: some registries report
    it late."""
    f, r = run({"lose_patch:2"}, big, tmp_path)
    assert r.returncode == 0, r.stderr
    with open(big, "rb") as fh:
        assert f.blobs[file_digest(big)] == fh.read()


def test_a_registry_that_lost_a_chunk_without_checking_is_named(big, tmp_path):
    """The same with a registry that takes the final PUT without checking the digest: the
    blob it stored is short, its size says so, and the push fails in one line (it exited 0
    with a corrupt blob published)."""
    f, r = run({"lose_patch:1", "put_no_verify"}, big, tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "stored with" in lines[0] and "push again" in lines[0], lines[0]


def test_a_retried_push_does_not_take_a_short_blob_for_there(big, tmp_path):
    """The push after that one (a CI retry): the registry holds the short blob under the
    digest, and its size says so; the push fails the same way (it took the blob as there,
    exited 0 and published the image over it)."""
    env = {"LAZYEROFS_CACHE_DIR": str(tmp_path / "cache")}
    f = FakeRegistry({"lose_patch:1", "put_no_verify"})
    try:
        ref = f.ref("liar/img", "v1")
        r1 = push(big, ref, opts="insecure,timeout=20", env=env)
        assert r1.returncode == 2 and "stored with" in r1.stderr, r1.stderr
        r2 = push(big, ref, opts="insecure,timeout=20", env=env)
        lines = r2.stderr.strip().splitlines()
        assert r2.returncode == 2 and len(lines) == 1 and "stored with" in lines[0], r2.stderr
        assert ("liar/img", "v1") not in f.manifests
    finally:
        f.stop()


def test_a_registry_unavailable_for_a_moment_is_waited_for(faultproxy, tmp_path):
    """Three 503s for the blob's upload (a registry restarting, a second's worth): the push
    waits with growing pauses within timeout= (it gave up after three, in 0.45 s)."""
    faultproxy.add("status", path=r"/blobs/uploads/", method="PUT", code=503, count=3,
                   headers={"Retry-After": "1"})
    r = push(SMALL, faultproxy.ref("liar/blip", "v1"), opts="insecure",
             env={"LAZYEROFS_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("image,rate", [(SMALL, 512 << 10), ("big", 6 << 20)],
                         ids=["whole", "chunks"])
def test_a_push_over_a_slow_link_is_not_cut_short(registry, big, tmp_path, image, rate):
    """timeout=1 is per request; a link slower than 10 MB/s used to fail the push halfway
    (one deadline for the whole upload: timeout + size / 10 MB/s)."""
    image = big if image == "big" else SMALL
    p = TcpCounter(registry.port, rate=rate)
    try:
        r = push(image, f"{p.host}/slow/link:v1", opts="insecure,timeout=1",
                 env={"LAZYEROFS_CACHE_DIR": str(tmp_path / "cache")})
    finally:
        p.stop()
    assert r.returncode == 0, r.stderr
