# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Issue 12 point 6: bearer tokens cached across processes in RUN_DIR/tokens/ (root-only
0600 files with their expiry), against the real registry in token mode and the test's token
server, which counts every token request.

A mount's process and the daemon it starts share one token; a second mount of the same
repository asks the token server nothing. A cached token that expired (or is about to), that
the registry refuses, or whose file is not root's alone, malformed or too big, is not used: a
fresh one is fetched and written in its place. Other credentials (or none) never get the
token of another."""

import json
import os
import shutil
import stat
import time

import pytest

from common import FIXTURES, child_sha256
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

IMAGE = os.path.join(FIXTURES, "plain.erofs")


@pytest.fixture(scope="module")
def repos(token_registry):
    c = token_registry.client
    for repo in ("open/tc", "private/tc"):
        c.push_image(repo, "v1", [(IMAGE, MT_EROFS)])
    return {"open": token_registry.ref("open/tc", "v1"),
            "private": token_registry.ref("private/tc", "v1")}


def token_dir(lazy):
    return os.path.join(lazy.run_dir, "tokens")


def token_files(lazy):
    d = token_dir(lazy)
    return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []


def only_token_file(lazy):
    files = token_files(lazy)
    assert len(files) == 1, files
    return files[0]


def read_token_file(path):
    with open(path) as f:
        return json.load(f)


def some_file(mp):
    for root, _, files in os.walk(mp):
        for n in sorted(files):
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
                return p
    raise AssertionError(f"no regular file under {mp}")


def mount_read_umount(lazy, source, opts="insecure"):
    """Mount with an empty cache, read a file (the daemon fetches), unmount and wait for the
    daemon to leave, so that the next mount starts a new daemon with a new registry client
    that has bytes to fetch."""
    shutil.rmtree(lazy.cache, ignore_errors=True)
    mp = lazy.mount(source, opts=opts)
    child_sha256(some_file(mp))
    st = lazy.status_of(mp)
    assert st["fetched_bytes"] > 0 and st["errors"] == 0, st
    lazy.umount(mp)
    assert lazy.wait_daemon_gone(st["pid"]), "daemon still running after umount"


def assert_root_only(lazy, path, secret=None):
    d = os.stat(token_dir(lazy))
    assert d.st_uid == 0 and stat.S_IMODE(d.st_mode) == 0o700, oct(d.st_mode)
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0, st
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    with open(path, "rb") as f:
        raw = f.read()
    assert b"Basic" not in raw and b"password" not in raw.lower(), raw
    if secret:
        assert secret.encode() not in raw, "a password in the token cache"
    j = json.loads(raw)
    assert j["token"] and j["expires"] > time.time() + 200, j
    return j


def test_second_mount_costs_no_token_request(lazy, token_registry, repos):
    """One token for the first mount, its daemon included; none for the second."""
    ts = token_registry.tokens
    ts.reset()
    mount_read_umount(lazy, repos["open"])
    assert ts.count("repository:open/tc:pull") == 1, ts.hits
    j = assert_root_only(lazy, only_token_file(lazy))
    assert j["scope"] == "repository:open/tc:pull", j
    mount_read_umount(lazy, repos["open"])
    assert ts.count() == 1, f"the second mount asked the token server: {ts.hits}"
    assert read_token_file(only_token_file(lazy)) == j


def test_credentials_never_share_a_token(lazy, token_registry, repos, tmp_path):
    """Bob's token serves Bob's next mount, never an anonymous one nor a wrong password;
    the file holds his token, not his password."""
    reg, ts = token_registry, token_registry.tokens
    bob = f"insecure,username={reg.username},password-file={reg.password_file}"
    ts.reset()
    mount_read_umount(lazy, repos["private"], opts=bob)
    assert ts.count(user=reg.username) == 1 and ts.count() == 1, ts.hits
    assert_root_only(lazy, only_token_file(lazy), secret=reg.password)
    mount_read_umount(lazy, repos["private"], opts=bob)
    assert ts.count() == 1, ts.hits

    ts.reset()
    mp, r = lazy.mount(repos["private"], opts="insecure", check=False)
    assert r.returncode != 0 and "401" in r.stderr, r.stderr
    assert ts.count(user=None) >= 1, f"the anonymous mount took a cached token: {ts.hits}"
    bad = tmp_path / "pw"
    bad.write_text("wrong\n")
    ts.reset()
    mp, r = lazy.mount(repos["private"], opts=f"insecure,username={reg.username},password-file={bad}",
                       check=False)
    assert r.returncode != 0, "a wrong password mounted with a cached token"
    assert ts.count(user="!" + reg.username) >= 1, ts.hits
    # Bob's token and the anonymous one (which grants nothing here); none for the refusal.
    tokens = {read_token_file(p)["token"] for p in token_files(lazy)}
    assert len(tokens) == 2 and len(token_files(lazy)) == 2, token_files(lazy)


def rewrite(path, **changes):
    """Change the JSON in place (the file stays root's, 0600)."""
    j = read_token_file(path)
    j.update(changes)
    with open(path, "w") as f:
        json.dump(j, f)


def tamper(kind, path):
    now = int(time.time())
    if kind == "expired":
        rewrite(path, expires=now - 10)
    elif kind == "expiring":  # within the renewal margin (30 s of a 300 s life)
        rewrite(path, expires=now + 5)
    elif kind == "rejected":  # a token the registry refuses (revoked, or signed by another)
        rewrite(path, token="eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.revoked")
    elif kind == "garbage":
        with open(path, "wb") as f:
            f.write(b"\x00{not json" * 10)
    elif kind == "oversized":
        rewrite(path, pad="x" * (200 * 1024))
    elif kind == "other-scope":
        rewrite(path, scope="repository:private/tc:pull")
    elif kind == "foreign-owner":
        os.chown(path, 65534, 65534)
    elif kind == "group-readable":
        os.chmod(path, 0o640)
    elif kind == "symlink":
        target = path + ".real"
        os.rename(path, target)
        os.symlink(target, path)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["expired", "expiring", "rejected", "garbage", "oversized",
                                  "other-scope", "foreign-owner", "group-readable", "symlink"])
def test_unusable_cached_token_is_replaced(lazy, token_registry, repos, kind):
    """A cached token that is expired or about to, refused by the registry, or in a file
    that is not root's alone, malformed or too big: the mount still works, with one fresh
    token (the daemon takes that one from the cache), written in the file's place. Expired
    files of other keys are swept out when a token is written."""
    ts = token_registry.tokens
    mount_read_umount(lazy, repos["open"])
    path = only_token_file(lazy)
    old = read_token_file(path)
    tamper(kind, path)
    stale = os.path.join(token_dir(lazy), "0" * 64)
    with open(stale, "w") as f:
        f.write("{}")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    ts.reset()
    mount_read_umount(lazy, repos["open"])
    assert ts.count("repository:open/tc:pull") == 1, ts.hits
    assert not os.path.exists(stale), "an expired file was not swept"
    assert os.path.islink(path) is False
    j = assert_root_only(lazy, path)
    assert j["token"] != old["token"] and j["scope"] == old["scope"], j
