# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The cache entry's life ("Fits the user's world", point 4): `lazyerofs fetch` fills and
verifies an entry ahead of time (then a mount by digest works with the registry gone), and
`lazyerofs gc` / the LAZYEROFS_CACHE_MAX budget evict the least recently used entries that no
mount uses, never one a mount uses or is opening. Runs as root, against the real registry."""

import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import pytest

from common import BIN, assert_one_line_error, child_read, pid_alive, wait_until
from lazymount import build_big_image
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20
BLOCK = 4096
BITMAP_OFFSET = 4096
FLAG_COMPLETE, FLAG_VERIFIED, FLAG_BAD = 1, 2, 4


# --- module fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="lazyerofs-life-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_image(workdir, name, mib):
    """An uncompressed image of one random file data/f.bin of `mib` MiB (and etc/name):
    dict(path, tree, blob)."""
    tree = os.path.join(workdir, name + "-tree")
    os.makedirs(os.path.join(tree, "data"), exist_ok=True)
    os.makedirs(os.path.join(tree, "etc"), exist_ok=True)
    with open(os.path.join(tree, "etc", "name"), "w") as f:
        f.write(name + "\n")
    with open(os.path.join(tree, "data", "f.bin"), "wb") as f:
        f.write(os.urandom(mib * MiB))
    path = os.path.join(workdir, name + ".erofs")
    subprocess.run(["mkfs.erofs", "-T0", path, tree], check=True, capture_output=True)
    with open(path, "rb") as f:
        blob = f.read()
    return {"path": path, "tree": tree, "blob": blob}


def push(reg, repo, image):
    """Push image as repo:v1; the image dict plus ref, digest (the layer's), size, manifest."""
    im = reg.client.push_image(repo, "v1", [(image["path"], MT_EROFS)])
    layer = im["layers"][0]
    return dict(image, ref=reg.ref(repo, "v1"), by_digest=reg.ref(repo, digest=im["digest"]),
                digest=layer["digest"], size=layer["size"], manifest=im["digest"])


@pytest.fixture(scope="module")
def images(workdir):
    """Three images of different sizes (not pushed: each test pushes to its registry)."""
    return {"a": make_image(workdir, "a", 6), "b": make_image(workdir, "b", 3),
            "c": make_image(workdir, "c", 2)}


# --- the entry's files as the tests see them -------------------------------------------------

def entry_key(digest, insecure=True):
    """The cache key of a blob fetched with `insecure` (as the tests do): bytes that came
    without TLS have an entry of their own, sha256("insecure\\n" + the digest's hex)."""
    hexd = digest.split(":", 1)[1]
    return hashlib.sha256(b"insecure\n" + hexd.encode()).hexdigest() if insecure else hexd


def entry_paths(cache, digest):
    key = entry_key(digest)
    base = os.path.join(cache, "sha256", key)
    return base, base + ".bitmap"


def header_flags(cache, digest):
    _, bitmap = entry_paths(cache, digest)
    with open(bitmap, "rb") as f:
        raw = f.read(64)
    assert raw[:8] == b"LZEROFSC", raw[:8]
    # magic (8), version, header size, block size, flags: little-endian u32 each
    return struct.unpack_from("<I", raw, 20)[0]


def claimed_blocks(cache, digest, size):
    _, bitmap = entry_paths(cache, digest)
    with open(bitmap, "rb") as f:
        bits = f.read()[BITMAP_OFFSET:]
    nblocks = (size + BLOCK - 1) // BLOCK
    return [b for b in range(nblocks) if bits[b // 8] >> (b % 8) & 1]


def check_claims(cache, image):
    """Every block the persisted bitmap claims holds the blob's bytes (read with no daemon:
    no mark); returns how many blocks it claims."""
    data, _ = entry_paths(cache, image["digest"])
    claims = claimed_blocks(cache, image["digest"], image["size"])
    blob = image["blob"]
    with open(data, "rb") as f:
        for b in claims:
            f.seek(b * BLOCK)
            assert f.read(BLOCK) == blob[b * BLOCK:(b + 1) * BLOCK], f"block {b} is wrong"
    return len(claims)


def expected(image, rel):
    with open(image["tree"] + rel, "rb") as f:
        return f.read()


# --- fetch -----------------------------------------------------------------------------------

def fetch(lazy, source, opts="insecure", check=True, timeout=120, extra=()):
    args = ["fetch", *extra] + (["-o", opts] if opts else []) + [source]
    r = lazy.run(args, timeout=timeout)
    if check:
        assert r.returncode == 0, f"fetch {source} failed ({r.returncode}): {r.stderr}"
    return r


def test_fetch_then_offline_mount_by_digest(lazy, private_registry, images):
    """fetch by tag fills and verifies the whole entry (progress lines on stderr without a
    terminal), leaves no daemon; then, with the registry stopped, a mount by digest is local
    and reads the right bytes."""
    im = push(private_registry, "life/a", images["a"])
    r = fetch(lazy, im["ref"])
    assert f"{im['digest']} fetched" in r.stdout and "verified" in r.stdout, r.stdout
    assert re.search(r"^fetching sha256:[0-9a-f]{12}: 100% ", r.stderr, re.M), r.stderr
    assert "verifying" in r.stderr, r.stderr
    lazy.assert_nothing_left()
    flags = header_flags(lazy.cache, im["digest"])
    assert flags & FLAG_COMPLETE and flags & FLAG_VERIFIED and not flags & FLAG_BAD, flags
    assert check_claims(lazy.cache, im) == (im["size"] + BLOCK - 1) // BLOCK
    data, _ = entry_paths(lazy.cache, im["digest"])
    with open(data, "rb") as f:
        assert f.read() == im["blob"]

    private_registry.stop()
    mp = lazy.mount(im["by_digest"])
    assert child_read(mp + "/data/f.bin") == expected(im, "/data/f.bin")
    st = lazy.status_of(mp)
    assert st["state"] == "verified" and st["fetched_bytes"] == 0 and st["errors"] == 0, st
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_fetch_of_complete_entry_says_so(lazy, private_registry, images):
    """A second fetch finds the entry complete and verified: it says so, exits 0, fetches
    nothing, starts no daemon; by digest it needs no registry either."""
    im = push(private_registry, "life/b", images["b"])
    fetch(lazy, im["by_digest"])
    r = fetch(lazy, im["ref"])
    assert "already in the cache, complete and verified" in r.stdout, r.stdout
    assert r.stderr == "", r.stderr
    private_registry.stop()
    r = fetch(lazy, im["by_digest"])
    assert "already in the cache" in r.stdout, r.stdout
    lazy.assert_nothing_left()


def test_fetch_joins_a_mounts_daemon(lazy, private_registry, images):
    """A mount uses the entry: fetch joins its daemon (one daemon, one lock), fills and
    verifies the entry under the mount, which keeps reading the right bytes; the daemon
    stays for the mount."""
    im = push(private_registry, "life/c", images["c"])
    mp = lazy.mount(im["ref"])
    pid = lazy.status_of(mp)["pid"]
    assert child_read(mp + "/etc/name") == b"c\n"
    fetch(lazy, im["ref"])
    st = lazy.status_of(mp)
    assert st["state"] == "verified" and st["present_bytes"] == st["size"], st
    assert st["pid"] == pid and pid_alive(pid)
    assert child_read(mp + "/data/f.bin") == expected(im, "/data/f.bin")
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_fetch_interrupted_leaves_consistent_entry(lazy, faultproxy, registry, images):
    """SIGINT during a slow fill: one line, exit 2, no daemon left, the persisted bitmap claims
    only right bytes; a second fetch goes on from there and completes."""
    im = push(registry, "life/slow", images["a"])
    # 256 KiB requests, each held 0.2 s by the proxy: the fill takes several seconds.
    lazy.env["LAZYEROFS_MAX_JOB"] = str(256 * 1024)
    faultproxy.add("delay", path=r"/blobs/", method="GET", count=10000, seconds=0.2)
    ref = faultproxy.ref("life/slow", "v1")
    p = subprocess.Popen([BIN, "fetch", "-o", "insecure", ref], env=lazy.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        _, bitmap = entry_paths(lazy.cache, im["digest"])
        assert wait_until(lambda: os.path.exists(bitmap) and
                          claimed_blocks(lazy.cache, im["digest"], im["size"]), 60, step=0.1)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 2, (p.returncode, err)
    lines = [l for l in err.splitlines() if l.startswith("lazyerofs:")]
    assert len(lines) == 1 and "interrupted" in lines[0], err
    lazy.assert_nothing_left()
    claimed = check_claims(lazy.cache, im)
    assert 0 < claimed < (im["size"] + BLOCK - 1) // BLOCK, claimed
    faultproxy.clear()
    r = fetch(lazy, ref)
    assert "verified" in r.stdout, r.stdout
    lazy.assert_nothing_left()
    assert check_claims(lazy.cache, im) == (im["size"] + BLOCK - 1) // BLOCK


def test_fetch_bad_input(lazy, registry, images):
    """Usage errors exit 1, other failures 2: one line each, no daemon, no entry."""
    im = push(registry, "life/bad", images["c"])
    assert_one_line_error(lazy.run(["fetch"]), 1)
    assert_one_line_error(lazy.run(["fetch", im["ref"], "extra"]), 1)
    assert_one_line_error(lazy.run(["fetch", "-x", im["ref"]]), 1)
    r = lazy.run(["fetch", "-o", "insecure,nosuid", im["ref"]])
    assert_one_line_error(r, 1)
    assert "applies to mounts" in r.stderr, r.stderr
    assert_one_line_error(lazy.run(["fetch", "-o", "insecure,bogus=1", im["ref"]]), 1)
    assert_one_line_error(lazy.run(["fetch", "-o", "timeout=0", im["ref"]]), 1)
    assert_one_line_error(lazy.run(["fetch", "-o", "insecure", "Bad Ref!!"]), 1)
    r = lazy.run(["fetch", "-o", "insecure", registry.ref("life/none", "v1")])
    assert_one_line_error(r, 2)
    r = lazy.run(["fetch", "-o", "insecure,timeout=3", "127.0.0.1:1/x/y:v1"])
    assert_one_line_error(r, 2)
    r = lazy.run(["fetch", "--help"])
    assert r.returncode == 0 and "Usage: lazyerofs fetch" in r.stdout
    lazy.assert_nothing_left()
    assert not [n for n in os.listdir(os.path.join(lazy.cache, "sha256"))
                if not n.endswith(".lock")] if os.path.isdir(
                    os.path.join(lazy.cache, "sha256")) else True
