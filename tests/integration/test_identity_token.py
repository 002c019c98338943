# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""An identity token (what `docker login` stores instead of a password for single sign-on
accounts: auth.json's "identitytoken") is traded at the token server with the OAuth2
refresh-token grant, a POST (distribution's spec/auth/oauth: client_id and service given, the
scopes in one parameter), never sent as a password. The mount and the daemon both get their
tokens that way, the daemon again when the registry refuses an expired one, and a cold read
after that goes on. A token server refuses an expired or revoked identity token with 400
invalid_grant (RFC 6749): a mount fails with one line that names where the token came from
and says to log in again, leaving nothing behind; a mounted image whose user logged in again
(a new identity token in auth.json) reads on once the old one is refused. A token server
without the OAuth2 endpoint (POST answers 404, as containerd found GCR's) gets the identity
token as a GET's password instead, with no user, as containerd sends it."""

import base64
import json
import os
import time

import pytest

from common import child_read
from lazymount import push_big_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20


@pytest.fixture(scope="module")
def image(tmp_path_factory, token_registry):
    return push_big_image(str(tmp_path_factory.mktemp("identity")), token_registry.client,
                          "private/identity")


def write_auth(lazy, reg, identity_token):
    """auth.json as `docker login` leaves it for an identity token."""
    path = os.path.join(lazy.root, "auth.json")
    with open(path, "w") as f:
        json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"<token>:").decode(),
                                        "identitytoken": identity_token}}}, f)
    lazy.env["REGISTRY_AUTH_FILE"] = path
    return path


@pytest.mark.parametrize("oauth", [True, False], ids=["oauth", "get"])
def test_an_identity_token_mounts_and_reads_after_its_token_expired(lazy, token_registry,
                                                                     image, oauth):
    """oauth: traded by the refresh-token grant, never sent as a password; get: the token
    server has no OAuth2 endpoint, the token goes as a GET's password (and one it refuses
    fails a mount in one line, to log in again)."""
    reg, ts = token_registry, token_registry.tokens
    rt = "rt-" + os.urandom(12).hex()
    ts.refresh_tokens[rt] = "bob"
    write_auth(lazy, reg, rt)
    ts.reset()
    ts.post = oauth
    ts.expiry = 3
    who = "refresh:bob" if oauth else "get-refresh:bob"
    try:
        mp = lazy.mount(reg.ref("private/identity", "v1"), opts="insecure,timeout=10")
        path = mp + "/data/r0.bin"
        assert child_read(path, 0, 8192) == image[:8192]
        before = ts.count(user=who)
        assert before >= 1, ts.hits
        time.sleep(4)  # the daemon's token has expired: the registry refuses it
        for off in (2 * MiB, 4 * MiB):
            assert child_read(path, off, 8192) == image[off:off + 8192], off
        assert ts.count(user=who) > before, ts.hits
        # by the grant: never as a password (GET with Basic), never refused
        assert not oauth or ts.count() == ts.count(user=who), ts.hits
        assert all(s == ("repository:private/identity:pull",) for s, _ in ts.hits), ts.hits
        lazy.umount(mp)
        lazy.assert_nothing_left()
        if oauth:
            return
        auth = write_auth(lazy, reg, "rt-revoked-" + os.urandom(6).hex())
        _, r = lazy.mount(reg.ref("private/identity", "v1"), opts="insecure,timeout=10",
                          check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1, r.stderr
        assert "identity token" in lines[0] and auth in lines[0], lines[0]
        assert "log in to the registry again" in lines[0], lines[0]
        lazy.assert_nothing_left()
    finally:
        ts.post = True
        ts.expiry = 300
        ts.refresh_tokens.pop(rt, None)


def test_an_unknown_identity_token_fails_the_mount_in_one_line(lazy, token_registry, image):
    reg, ts = token_registry, token_registry.tokens
    auth = write_auth(lazy, reg, "rt-revoked-" + os.urandom(6).hex())
    mp, r = lazy.mount(reg.ref("private/identity", "v1"), opts="insecure,timeout=10",
                       check=False)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "identity token" in lines[0] and auth in lines[0], lines[0]
    assert "invalid_grant" in lines[0] and "log in to the registry again" in lines[0], lines[0]
    assert ts.count(user="refresh:!") >= 1, ts.hits
    lazy.assert_nothing_left()


def test_a_new_identity_token_is_taken_once_the_old_one_is_refused(lazy, token_registry, image):
    reg, ts = token_registry, token_registry.tokens
    old, new = ("rt-" + os.urandom(12).hex() for _ in range(2))
    ts.refresh_tokens[old] = "bob"
    write_auth(lazy, reg, old)
    ts.expiry = 3
    try:
        mp = lazy.mount(reg.ref("private/identity", "v1"), opts="insecure,timeout=10")
        path = mp + "/data/r0.bin"
        assert child_read(path, 0, 8192) == image[:8192]
        # logged in again: a new identity token, the old one revoked
        ts.refresh_tokens[new] = "bob"
        del ts.refresh_tokens[old]
        write_auth(lazy, reg, new)
        ts.reset()
        time.sleep(4)  # the daemon's token has expired: the registry refuses it
        for off in (2 * MiB, 4 * MiB):
            assert child_read(path, off, 8192) == image[off:off + 8192], off
        assert ts.count(user="refresh:!") >= 1, ts.hits  # the old one, refused
        assert ts.count(user="refresh:bob") >= 1, ts.hits  # then the new one
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        ts.expiry = 300
        ts.refresh_tokens.pop(old, None)
        ts.refresh_tokens.pop(new, None)


def test_a_password_replaced_by_an_identity_token_goes_by_get_too(lazy, token_registry, image):
    """The daemon's password refused, the credentials looked up again hold an identity token
    now (the user logged in again), and the token server has no OAuth2 endpoint: that token
    goes by GET as well (the retry after the lookup POSTed, got 404, and failed the read)."""
    reg, ts = token_registry, token_registry.tokens
    rt = "rt-" + os.urandom(12).hex()
    ts.users["carol"] = "pw-carol"
    path = os.path.join(lazy.root, "auth.json")
    with open(path, "w") as f:
        json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"carol:pw-carol").decode()}}},
                  f)
    lazy.env["REGISTRY_AUTH_FILE"] = path
    ts.post = False
    ts.expiry = 3
    try:
        mp = lazy.mount(reg.ref("private/identity", "v1"), opts="insecure,timeout=10")
        data = mp + "/data/r0.bin"
        assert child_read(data, 0, 8192) == image[:8192]
        ts.refresh_tokens[rt] = "carol"
        write_auth(lazy, reg, rt)
        del ts.users["carol"]  # the password revoked
        ts.reset()
        time.sleep(4)  # the daemon's token has expired: its password is refused
        assert child_read(data, 2 * MiB, 8192) == image[2 * MiB:2 * MiB + 8192]
        assert ts.count(user="!carol") >= 1, ts.hits  # the password, refused
        assert ts.count(user="get-refresh:carol") >= 1, ts.hits  # then the identity token
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        ts.post = True
        ts.expiry = 300
        ts.users.pop("carol", None)
        ts.refresh_tokens.pop(rt, None)
