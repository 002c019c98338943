# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A registry that redirects blob GETs (307) to storage with signed, expiring URLs, under a
long-lived mount: the daemon remembers where it was sent (one round trip less a read), and
forgets it as soon as that storage fails in any way, asking the registry again. Remembered, a
storage host gone, or a signed URL refused with a 500, failed every read for the location's
lifetime (5 minutes) while the registry would have sent the reads elsewhere."""

import os

import pytest

from common import child_read
from faultproxy import FaultProxy
from lazymount import build_big_image
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20
BLOB = r"/blobs/sha256:"


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    image, tree = build_big_image(str(tmp_path_factory.mktemp("redirects")), files=2, mib=8)
    with open(os.path.join(tree, "data", "r0.bin"), "rb") as f:
        return image, f.read()


class Location:
    """A Location header made anew for each redirect."""

    def __init__(self, fn):
        self.fn = fn

    def items(self):
        return [("Location", self.fn())]


class Storage:
    """The registry behind a front that redirects every blob GET to one of two storage hosts
    (fault proxies before one web server), with a signature of generation `gen`."""

    def __init__(self, registry, webserver, image):
        im = registry.client.push_image("redir/img", "v1", [(image, MT_EROFS)])
        self.name = "blobs/" + im["layers"][0]["digest"].split(":")[1]
        webserver.put(self.name, image)
        self.hosts = [FaultProxy("127.0.0.1", webserver.port).start() for _ in range(2)]
        self.front = FaultProxy("127.0.0.1", registry.port).start()
        self.gen, self.use = 1, 0
        self.front.add("status", path=BLOB, method="GET", count=None, code=307,
                       headers=Location(self.location))

    def location(self):
        return (f"{self.hosts[self.use].url}/{self.name}"
                f"?X-Amz-Expires=900&X-Amz-Signature=sig{self.gen}")

    def stop(self):
        for p in self.hosts + [self.front]:
            p.stop()


@pytest.fixture
def storage(registry, webserver, big):
    s = Storage(registry, webserver, big[0])
    try:
        yield s
    finally:
        s.stop()


def reads_after(lazy, storage, data, change):
    """Mount, read once (the location is remembered), change() the storage, then read three
    cold places: each must get its bytes."""
    mp = lazy.mount(storage.front.ref("redir/img", "v1"), opts="insecure,timeout=5")
    path = mp + "/data/r0.bin"
    assert child_read(path, 0, 8192) == data[:8192]
    change()
    for off in (2 * MiB, 3 * MiB + 4096, 5 * MiB):
        assert child_read(path, off, 8192) == data[off:off + 8192], off
    lazy.umount(mp)
    lazy.assert_nothing_left()


@pytest.mark.parametrize("code", [403, 500])
def test_an_expired_signature_is_signed_again(lazy, storage, big, code):
    """The signed URL expires and its storage answers 403 (S3) or 500: the registry is
    asked again and signs a new one."""
    def expire():
        storage.hosts[0].add("status", path="sig1", count=None, code=code,
                             body="<Error><Code>AccessDenied</Code></Error>")
        storage.gen = 2
    reads_after(lazy, storage, big[1], expire)


def test_a_storage_host_gone_is_left_for_the_registrys_next_one(lazy, storage, big):
    """The storage host goes away (kept-alive connections dropped, new ones refused); the
    registry now redirects to another one: the reads follow it."""
    def gone():
        storage.hosts[0].add("drop", count=None)
        storage.hosts[0].stop()
        storage.use, storage.gen = 1, 2
    reads_after(lazy, storage, big[1], gone)
    assert storage.hosts[1].count(method="GET") >= 1
