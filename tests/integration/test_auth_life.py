# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Registry authentication over a mount's life: a mirror whose token server fails once the
mount's token has expired (reads go on from the registry, which is fine), a mirror whose API
root carries a namespace (its token's scope is its own name for the repository), a
credential helper that hangs once (reads fail within timeout=, not the helper's own limit,
and the next lookup asks it again), and a token server that gives tokens no life (not one
token request per range request)."""

import datetime
import json
import os
import shutil
import tempfile
import time

import pytest

from common import child_read
from faultproxy import FaultProxy
from lazymount import build_big_image
from registry import MT_EROFS, Registry, RegistryClient, closed_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20
REPO = "open/authlife"
PREFIX = "dockerhub"


@pytest.fixture(scope="module")
def treg():
    """A registry in token mode whose token server sits behind a fault proxy (.tproxy)."""
    from tokenserver import TokenServer

    d = tempfile.mkdtemp(prefix="lazyerofs-authlife-")
    ts = TokenServer(d, users={"bob": "pw"}).start()
    tproxy = FaultProxy("127.0.0.1", ts.port).start()
    reg = Registry(auth={"token": {"realm": f"{tproxy.url}/token", "service": ts.service,
                                   "issuer": ts.issuer, "rootcertbundle": ts.root_cert}})
    try:
        reg.start()
        reg.tokens, reg.tproxy = ts, tproxy
        reg.client = RegistryClient(reg.url, username="bob", password="pw")
        yield reg
    finally:
        reg.cleanup()
        tproxy.stop()
        ts.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory, registry, treg):
    """The same 16 MiB image in the open registry and, as REPO and PREFIX/REPO, in treg."""
    path, tree = build_big_image(str(tmp_path_factory.mktemp("authlife")), files=2, mib=8)
    registry.client.push_image(REPO, "v1", [(path, MT_EROFS)])
    treg.client.push_image(REPO, "v1", [(path, MT_EROFS)])
    im = treg.client.push_image(f"{PREFIX}/{REPO}", "v1", [(path, MT_EROFS)])
    with open(os.path.join(tree, "data", "r0.bin"), "rb") as f:
        return im, f.read(), path


@pytest.mark.parametrize("fault", ["503", "refused", "hang"])
def test_a_mirrors_token_server_failing_sends_reads_to_the_registry(lazy, registry, treg,
                                                                   image, fault):
    """The mirror's token is refused by the mirror once expired; getting another fails: the
    mirror is passed over (and rested), within its share of timeout=, as one that is down."""
    ts, tp = treg.tokens, treg.tproxy
    data = image[1]
    ts.expiry = 2
    try:
        mp = lazy.mount(registry.ref(REPO, "v1"),
                        opts=f"insecure,timeout=6,mirror=http://{treg.host}")
        path = mp + "/data/r0.bin"
        assert child_read(path, 0, 8192) == data[:8192]
        if fault == "503":
            tp.add("status", path="/token", count=None, code=503)
        elif fault == "refused":
            tp.add("status", path="/token", count=None, code=401,
                   body='{"errors":[{"code":"UNAUTHORIZED","message":"nope"}]}')
        else:
            tp.add("stall", path="/token", count=None, seconds=60)
        time.sleep(2.5)  # the mirror's token has expired
        for off in (2 * MiB, 5 * MiB):
            assert child_read(path, off, 8192, timeout=60) == data[off:off + 8192], off
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        ts.expiry = 300
        tp.clear()


def test_a_token_mirror_with_a_namespace_in_its_path(lazy, treg, image):
    """hosts.toml's override_path with a namespace (a Harbor proxy-cache project,
    "/v2/dockerhub"): the mirror's repository is PREFIX/REPO and its challenge asks for that
    scope; a token for REPO grants nothing there. An air-gapped node (the registry's port
    closed) mounts from the mirror."""
    im, data, _ = image
    treg.tokens.reset()
    with closed_port() as dead:
        d = os.path.join(lazy.certs_d, f"127.0.0.1_{dead}_")
        os.makedirs(d)
        with open(os.path.join(d, "hosts.toml"), "w") as f:
            f.write(f'[host."http://{treg.host}/v2/{PREFIX}"]\n'
                    f'  capabilities = ["pull"]\n  override_path = true\n')
        mp, r = lazy.mount(f"127.0.0.1:{dead}/{REPO}@{im['digest']}", opts="insecure,timeout=10",
                           check=False)
        assert r.returncode == 0, (r.stderr, treg.tokens.hits)
        assert child_read(mp + "/data/r0.bin", 0, 8192) == data[:8192]
        lazy.umount(mp)
        lazy.assert_nothing_left()


def test_a_credential_helper_hanging_once(lazy, token_registry, image):
    """The password is rotated and the helper's next run hangs (a cloud API's hiccup): the
    read that needed it fails within timeout= (the helper has no more than that), and the
    next read asks the helper again at once and gets the new password."""
    reg = token_registry
    data = image[1]
    reg.client.push_image("private/authlife", "v1", [(image[2], MT_EROFS)])
    flag, secret = os.path.join(lazy.root, "hang-once"), os.path.join(lazy.root, "secret")
    ts = reg.tokens
    ts.users["dave"] = "first"
    with open(secret, "w") as f:
        f.write("first")
    lazy.credential_helper(reg.host, "flaky",
                           f"if [ -e {flag} ]; then rm -f {flag}; exec sleep 28; fi\n"
                           "printf '{\"Username\":\"dave\","
                           f"\"Secret\":\"%s\"}}' \"$(cat {secret})\"\n")
    ts.expiry = 3
    try:
        mp = lazy.mount(reg.ref("private/authlife", "v1"), opts="insecure,timeout=5")
        path = mp + "/data/r0.bin"
        assert child_read(path, 0, 8192) == data[:8192]
        ts.users["dave"] = "second"  # rotated: the helper answers with it from now on...
        with open(secret, "w") as f:
            f.write("second")
        open(flag, "w").close()  # ... but its next run hangs (once)
        time.sleep(4)  # the daemon's token has expired at the registry
        t0 = time.monotonic()
        try:
            child_read(path, 1 * MiB, 8192, timeout=60)
        except OSError:
            pass  # while the helper hangs: EIO after timeout= is fair
        assert time.monotonic() - t0 < 8
        assert not os.path.exists(flag)
        t1 = time.monotonic()
        assert child_read(path, 4 * MiB, 8192, timeout=60) == data[4 * MiB:4 * MiB + 8192]
        assert time.monotonic() - t1 < 5
        assert "did not answer within" in lazy.log()
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        ts.expiry = 300
        ts.users.pop("dave", None)


@pytest.mark.parametrize("kind", ["expires_in-0", "issued-long-ago"])
def test_a_token_without_life_is_not_fetched_per_request(lazy, treg, image, kind):
    """expires_in 0, or an issue time a lifetime behind our clock: the token protocol's
    floor is 60 s (docker's too). Taken at its word, every range request of a 16 MiB read
    would first ask the token server for a token."""
    ts, tp = treg.tokens, treg.tproxy
    data = image[1]
    orig = ts.issue

    def issue(scopes, user):
        j = orig(scopes, user)  # the JWT itself stays valid at the registry
        if kind == "expires_in-0":
            j["expires_in"] = 0
        else:
            j["expires_in"] = 60
            j["issued_at"] = (datetime.datetime.now(datetime.timezone.utc) -
                              datetime.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return j

    ts.issue = issue
    try:
        tp.reset_counts()
        mp = lazy.mount(treg.ref(REPO, "v1"), opts="insecure,timeout=20")
        before = tp.count(path="/token")
        assert child_read(mp + "/data/r0.bin") == data
        st = lazy.status_of(mp)
        assert tp.count(path="/token") - before <= 2, st["requests"]
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        ts.issue = orig
        tp.clear()



def test_a_slow_token_server_holds_up_no_read(lazy, treg, image):
    """A token is renewed ahead of its expiry on a thread of the daemon's own: a token server
    that takes seconds to answer then holds up no read, which goes on with the token still
    good at the server (it took the transfer thread, and every read, for as long as the
    token server took). Tokens live 60 s at least (the protocol's floor): renewed from 45 s
    on (a quarter of the life before the end), good until 55."""
    ts, tp = treg.tokens, treg.tproxy
    data = image[1]
    ts.expiry = 60  # refused by the registry 60 s after it was issued
    try:
        t0 = time.monotonic()
        mp = lazy.mount(treg.ref(REPO, "v1"), opts="insecure,timeout=30")
        mounted = time.monotonic()  # the token was issued between t0 and now
        assert mounted - t0 < 3, "the mount took too long for the window below"
        assert child_read(mp + "/data/r0.bin", 0, 4096) == data[:4096]
        time.sleep(max(0.0, mounted + 45.5 - time.monotonic()))
        tp.reset_counts()
        tp.add("delay", path="/token", seconds=8, count=None)
        worst, reads = 0.0, 0
        for off in range(1 * MiB, len(data) - 4096, 256 << 10):  # a cold chunk each
            if time.monotonic() > mounted + 51.5:
                break
            t = time.monotonic()
            assert child_read(mp + "/data/r0.bin", off, 4096) == data[off:off + 4096]
            worst, reads = max(worst, time.monotonic() - t), reads + 1
            time.sleep(0.2)
        assert tp.count(path="/token") >= 1, "no token was asked for: nothing tested"
        assert worst < 3, f"a read waited {worst:.1f} s for a token request"
        assert reads >= 15, reads
        tp.clear()
        assert child_read(mp + "/data/r0.bin") == data
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        ts.expiry = 300
        tp.clear()


def test_a_credential_helper_gets_no_connection_of_ours(lazy, token_registry, image):
    """The daemon's and the mount's connections to registries (libcurl's sockets, not
    close-on-exec) stay out of a credential helper: it sees its pipes and /dev/null."""
    reg = token_registry
    reg.client.push_image("private/authlife", "v1", [(image[2], MT_EROFS)])
    seen = os.path.join(lazy.root, "fds")
    reg.tokens.users["erin"] = "pw"
    lazy.credential_helper(reg.host, "lister", f"ls -l /proc/$$/fd >> {seen}\n"
                           "printf '{\"Username\":\"erin\",\"Secret\":\"pw\"}'\n")
    try:
        mp = lazy.mount(reg.ref("private/authlife", "v1"), opts="insecure")
        assert child_read(mp + "/data/r0.bin", 1 * MiB, 8192) == image[1][MiB:MiB + 8192]
        lazy.umount(mp)
        with open(seen) as f:
            listing = f.read()
        assert "/dev/null" in listing
        assert "socket:" not in listing, listing
    finally:
        reg.tokens.users.pop("erin", None)
