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
import threading
import time

import pytest

from common import (BIN, FIXTURES, assert_one_line_error, child_read, drop_caches, pid_alive,
                    wait_until)
from lazymount import build_big_image
from registry import MT_EROFS
from trees import child_snapshot, compare_tree, diff_snapshots

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20
BLOCK = 4096
BITMAP_OFFSET = 4096
FLAG_COMPLETE, FLAG_VERIFIED, FLAG_BAD = 1, 2, 4


# --- module fixtures -------------------------------------------------------------------------

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
    """Four images of different sizes (not pushed: each test pushes to its registry)."""
    return {"a": make_image(workdir, "a", 6), "b": make_image(workdir, "b", 3),
            "c": make_image(workdir, "c", 2), "d": make_image(workdir, "d", 1)}


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


@pytest.mark.san
def test_fetch_then_offline_mount_by_digest(lazy, private_registry, images):
    """fetch by tag fills and verifies the whole entry (progress lines on stderr without a
    terminal, any verifying line after the last of them), leaves no daemon; then, with the registry stopped, a mount by digest is local
    and reads the right bytes."""
    im = push(private_registry, "life/a", images["a"])
    r = fetch(lazy, im["ref"])
    assert f"{im['digest']} fetched" in r.stdout and "verified" in r.stdout, r.stdout
    assert re.search(r"^fetching sha256:[0-9a-f]{12}: 100% ", r.stderr, re.M), r.stderr
    # The verifying line shows only when a look at the daemon finds the entry complete and not
    # yet verified: hashing 6 MiB can end between two looks (100 ms apart).
    if "verifying" in r.stderr:
        assert r.stderr.index("verifying") > r.stderr.index("100% "), r.stderr
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


def mount_readahead_kb(mp):
    """The read-ahead of the mount at mp: its superblock's backing device info, named as the
    superblock is in sysfs (FS_IOC_GETFSSYSFSPATH)."""
    import fcntl
    buf = bytearray(129)
    fd = os.open(mp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, (2 << 30) | (129 << 16) | (0x15 << 8) | 1, buf)
    finally:
        os.close(fd)
    name = bytes(buf[1:1 + buf[0]]).decode().split("/")[-1]
    with open(f"/sys/class/bdi/{name}/read_ahead_kb") as f:
        return int(f.read())


def test_mostly_present_entry_reads_ahead_more(lazy, private_registry, images):
    """A mount of a cold entry keeps the kernel's read-ahead (a larger read there waits for
    more bytes); once the entry is mostly present (here: fetched ahead), a mount reads ahead
    2 MiB, so reads of the marked file raise fewer events; the bytes are right either way."""
    im = push(private_registry, "life/ra", images["a"])
    mp = lazy.mount(im["ref"])
    cold = mount_readahead_kb(mp)
    assert cold < 2048, cold
    lazy.umount(mp)
    fetch(lazy, im["ref"])
    mp = lazy.mount(im["ref"])
    assert mount_readahead_kb(mp) == 2048
    assert child_read(mp + "/data/f.bin") == expected(im, "/data/f.bin")
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


def interrupted_fetch(lazy, ref, ready):
    """`lazyerofs fetch REF` sent SIGINT once ready() holds: (exit status, stderr)."""
    p = subprocess.Popen([BIN, "fetch", "-o", "insecure", ref], env=lazy.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert wait_until(ready, 60, step=0.1)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err


def test_fetch_interrupted_leaves_consistent_entry(lazy, faultproxy, registry, images):
    """SIGINT during a slow fill: one line, exit 2, no daemon left, the persisted bitmap claims
    only right bytes; a second fetch goes on from there and completes."""
    im = push(registry, "life/slow", images["a"])
    # 64 KiB requests, two at a time, each held 0.25 s by the proxy: the fill takes seconds.
    lazy.env.update(LAZYEROFS_MAX_JOB=str(64 * 1024), LAZYEROFS_CHUNK_SIZE=str(64 * 1024),
                    LAZYEROFS_SIDE_JOBS="2", LAZYEROFS_FLUSH_MS="100")
    faultproxy.add("delay", path=r"/blobs/", method="GET", count=10000, seconds=0.25)
    ref = faultproxy.ref("life/slow", "v1")
    _, bitmap = entry_paths(lazy.cache, im["digest"])
    code, err = interrupted_fetch(lazy, ref, lambda: os.path.exists(bitmap) and claimed_blocks(
        lazy.cache, im["digest"], im["size"]))
    assert code == 2, (code, err)
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


def test_fetch_interrupted_while_resolving_says_so(lazy, faultproxy, registry, images):
    """SIGINT before the daemon starts (the registry slow to answer the manifest): one line,
    exit 2, as any other interruption (it died of the signal without a word: 130)."""
    push(registry, "life/resolve", images["a"])
    faultproxy.add("delay", path=r"/manifests/", count=10000, seconds=30)
    code, err = interrupted_fetch(lazy, faultproxy.ref("life/resolve", "v1"),
                                  lambda: faultproxy.count(path="/manifests/") > 0)
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], err
    lazy.assert_nothing_left()


def test_fetch_digest_mismatch_sets_entry_aside(lazy, faultproxy, registry, images):
    """Bytes that do not hash to the digest (the proxy flips one): fetch fails with one line
    naming the digest, exit 2, no daemon left, no verified entry under the blob's name; with
    honest bytes a second fetch starts afresh and verifies."""
    im = push(registry, "life/corrupt", images["c"])
    faultproxy.add("corrupt", path="/blobs/sha256:", method="GET", range=".", count=None,
                   offsets=[im["size"] // 2 + 7])
    ref = faultproxy.ref("life/corrupt", "v1")
    r = fetch(lazy, ref, check=False)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("lazyerofs:")]
    assert len(lines) == 1, r.stderr
    assert "do not match its digest" in lines[0] and im["digest"] in lines[0], r.stderr
    lazy.assert_nothing_left()
    data, bitmap = entry_paths(lazy.cache, im["digest"])
    assert not os.path.exists(bitmap) or not header_flags(lazy.cache, im["digest"]) & FLAG_VERIFIED
    faultproxy.clear()
    r = fetch(lazy, ref)
    assert "verified" in r.stdout, r.stdout
    with open(data, "rb") as f:
        assert f.read() == im["blob"]
    lazy.assert_nothing_left()


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


# --- gc and the cache-max budget -------------------------------------------------------------

def entry_bytes(cache, digest):
    """Disk space of an entry's files, as gc counts it (allocated blocks)."""
    data, bitmap = entry_paths(cache, digest)
    total = 0
    for p in (data, bitmap, data + ".lock"):
        try:
            total += os.stat(p).st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def present(cache, im):
    data, bitmap = entry_paths(cache, im["digest"])
    return os.path.exists(data) or os.path.exists(bitmap)


def stamp(cache, im, when):
    """Set an entry's last use (its bitmap file's times) to `when`."""
    _, bitmap = entry_paths(cache, im["digest"])
    os.utime(bitmap, (when, when))


def gc(lazy, *args, check=True, env=None):
    r = lazy.run(["gc", *args], env=env or lazy.env)
    if check:
        assert r.returncode == 0, f"gc {args} failed ({r.returncode}): {r.stderr}"
    return r


def evicted(out, dry=False):
    """The digests gc says it evicted (or would), in its order."""
    word = "would evict" if dry else "evicted"
    return [m[1] for m in re.finditer(rf"^{word} (sha256:[0-9a-f]{{64}}) \(", out, re.M)]


@pytest.fixture
def three(lazy, private_registry, images):
    """a (6 MiB), b (3 MiB), c (2 MiB) pushed and fetched into the cache, last used in that
    order (a oldest)."""
    out = {}
    now = time.time()
    for i, name in enumerate("abc"):
        out[name] = push(private_registry, f"gc/{name}", images[name])
        fetch(lazy, out[name]["ref"])
        stamp(lazy.cache, out[name], now - 3000 + 1000 * i)
    return out


def test_gc_removes_old_upload_records(lazy):
    """Records of pushes interrupted long ago (the registry has forgotten their sessions) go
    with gc; a recent one, one a push holds (its lock taken), and anything else in the
    directory stay; --dry-run lists and keeps; a lock left without a record goes."""
    import fcntl
    up = os.path.join(lazy.cache, "uploads")
    os.makedirs(up, mode=0o700, exist_ok=True)
    os.chmod(lazy.cache, 0o700)
    old = time.time() - 8 * 86400
    names = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("old", "new", "held", "orphan")}
    for k, h in names.items():
        if k != "orphan":
            with open(os.path.join(up, h + ".upload"), "w") as f:
                f.write("{}")
            if k != "new":
                os.utime(os.path.join(up, h + ".upload"), (old, old))
    for k in ("held", "orphan"):
        open(os.path.join(up, names[k] + ".lock"), "w").close()
    with open(os.path.join(up, "README"), "w") as f:
        f.write("not ours")
    held = os.open(os.path.join(up, names["held"] + ".lock"), os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = gc(lazy, "--dry-run")
        assert re.search(rf"^would remove the upload record \S+/{names['old']}\.upload", r.stdout,
                         re.M), r.stdout
        before = sorted(os.listdir(up))
        assert len(before) == 6, before
        r = gc(lazy)
        assert re.search(rf"^removed the upload record \S+/{names['old']}\.upload \(an "
                         rf"interrupted push, last moved 8 days ago\)", r.stdout, re.M), r.stdout
        assert names["held"] not in r.stdout and names["new"] not in r.stdout, r.stdout
        assert sorted(os.listdir(up)) == sorted([names["new"] + ".upload",
                                                 names["held"] + ".upload",
                                                 names["held"] + ".lock", "README"])
    finally:
        os.close(held)
    gc(lazy)
    assert sorted(os.listdir(up)) == sorted([names["new"] + ".upload", "README"])


def test_gc_of_a_cache_not_made_yet_says_its_percentage_budget(lazy):
    """A percentage is of the filesystem the cache directory will be made on: gc of a cache
    no mount has made yet says that budget (it said 0 B), and makes nothing (it made the
    cache directory)."""
    cache = os.path.join(lazy.root, "not-yet", "cache")
    r = gc(lazy, "--max-size", "10%", env=dict(lazy.env, LAZYEROFS_CACHE_DIR=cache))
    assert not os.path.exists(os.path.dirname(cache)), os.listdir(os.path.dirname(cache))
    m = re.search(r"\(budget ([0-9.]+) ([KMGT]?i?B)\)", r.stdout)
    assert m and float(m.group(1)) > 0, r.stdout
    st = os.statvfs(lazy.root)
    tenth = st.f_blocks * st.f_frsize / 10
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    assert abs(float(m.group(1)) * units[m.group(2)] - tenth) < tenth / 50, (r.stdout, tenth)


def test_gc_dry_run_lists_and_removes_nothing(lazy, three):
    before = {n: entry_bytes(lazy.cache, im["digest"]) for n, im in three.items()}
    r = gc(lazy, "--dry-run")
    assert evicted(r.stdout, dry=True) == [three[n]["digest"] for n in "abc"], r.stdout
    assert re.search(r"^would evict 3 of 3 entries", r.stdout, re.M), r.stdout
    assert r.stderr == ""
    r = gc(lazy, "-n", "--max-size", "0")
    assert len(evicted(r.stdout, dry=True)) == 3
    for n, im in three.items():
        assert present(lazy.cache, im) and entry_bytes(lazy.cache, im["digest"]) == before[n]
    # A budget everything fits: nothing would go.
    r = gc(lazy, "--dry-run", "--max-size", "100%")
    assert evicted(r.stdout, dry=True) == [], r.stdout
    lazy.assert_nothing_left()


def test_gc_max_size_evicts_lru_unused_never_mounted(lazy, three):
    """b is mounted and the least recently used: gc skips it and evicts the oldest unused
    entries, only as many as the budget needs; --max-size 0 leaves only b (and says it is
    over budget); once b is unmounted it goes too. The mount reads the right bytes all
    along."""
    a, b, c = three["a"], three["b"], three["c"]
    mp = lazy.mount(b["ref"])
    stamp(lazy.cache, b, time.time() - 10000)
    total = sum(entry_bytes(lazy.cache, im["digest"]) for im in three.values())
    # Just over the budget: a (the oldest unused) goes, and that is enough.
    r = gc(lazy, "--max-size", str(total - 1))
    assert evicted(r.stdout) == [a["digest"]], r.stdout
    assert not present(lazy.cache, a) and present(lazy.cache, b) and present(lazy.cache, c)
    assert not os.path.exists(entry_paths(lazy.cache, a["digest"])[0] + ".lock")
    assert child_read(mp + "/data/f.bin") == expected(b, "/data/f.bin")
    # Nothing fits: everything unused goes; b stays, and gc says why the cache is over.
    r = gc(lazy, "--max-size", "0")
    assert evicted(r.stdout) == [c["digest"]], r.stdout
    assert "over budget: 1 entry in use" in r.stdout, r.stdout
    assert present(lazy.cache, b)
    assert child_read(mp + "/data/f.bin") == expected(b, "/data/f.bin")
    st = lazy.status_of(mp)
    assert st["errors"] == 0, st
    lazy.umount(mp)
    assert wait_until(lambda: not lazy.daemon_pids(), 10)
    r = gc(lazy, "--max-size", "0K")
    assert evicted(r.stdout) == [b["digest"]], r.stdout
    assert os.listdir(os.path.join(lazy.cache, "sha256")) == []
    # An evicted image mounts again from the registry, into a fresh entry.
    mp = lazy.mount(a["ref"])
    assert child_read(mp + "/data/f.bin") == expected(a, "/data/f.bin")
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_gc_keeps_the_entry_of_a_mount_whose_daemon_is_gone(lazy, three):
    """b is mounted and its daemon killed (the mount is lost): the mount still holds b's data
    file, so gc leaves b alone (it removed it and said it freed its space, which came back only
    at the umount); after the umount b goes."""
    b = three["b"]
    mp = lazy.mount(b["ref"])
    st = lazy.status_of(mp)
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    assert wait_until(lambda: lazy.status_of(mp)["state"] == "lost", 30)
    r = gc(lazy, "--max-size", "0")
    assert b["digest"] not in evicted(r.stdout) and present(lazy.cache, b), r.stdout
    assert "over budget: 1 entry in use" in r.stdout, r.stdout
    lazy.umount(mp)
    r = gc(lazy, "--max-size", "0")
    assert evicted(r.stdout) == [b["digest"]], r.stdout
    lazy.assert_nothing_left()


@pytest.mark.san
def test_gc_racing_mounts_of_the_same_blob(lazy, private_registry, images):
    """gc runs over and over (budget 0) while the same blob is mounted, read and unmounted:
    every mount succeeds and reads the right bytes, every gc exits 0; each gc either evicts
    the unused entry or skips it, never one a mount is opening or using."""
    im = push(private_registry, "gc/race", images["b"])
    want = expected(im, "/data/f.bin")
    fetch(lazy, im["ref"])
    stop = time.monotonic() + 600
    results = []
    done = threading.Event()

    def loop():
        while not done.is_set() and time.monotonic() < stop:
            r = lazy.run(["gc", "--max-size", "0"])
            results.append((r.returncode, r.stdout, r.stderr))
            time.sleep(0.005)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        for i in range(8):
            mp = lazy.mount(im["ref"], mp=lazy.mountpoint(f"race{i}"))
            assert child_read(mp + "/data/f.bin") == want, f"round {i}: wrong bytes"
            assert child_read(mp + "/etc/name") == b"b\n"
            assert lazy.status_of(mp)["errors"] == 0
            lazy.umount(mp)
            # The daemon leaves, the entry is unused: the next mount races gc's eviction.
            assert wait_until(lambda: not lazy.daemon_pids(), 10)
            time.sleep(0.05 * (i % 3))
    finally:
        done.set()
        t.join(120)
    assert results and all(rc == 0 for rc, _, _ in results), \
        [x for x in results if x[0] != 0][:3]
    assert any(evicted(out) for _, out, _ in results), "gc never evicted the unused entry"
    lazy.assert_nothing_left()


def test_cache_max_applied_at_mount(lazy, private_registry, images, three):
    """LAZYEROFS_CACHE_MAX: a mount that makes a new entry first evicts unused entries, least
    recently used first, while the cache is over the budget -- never one that is mounted; a
    mount of an existing entry evicts nothing; its reads filling the cache past the budget
    evict more; a bad value is a warning, not a failed mount."""
    a, b, c = three["a"], three["b"], three["c"]
    d = push(private_registry, "gc/d", images["d"])
    lazy.env["LAZYEROFS_CACHE_MAX"] = "0"
    mp_c = lazy.mount(c["ref"])  # an existing entry: nothing is evicted
    assert all(present(lazy.cache, im) for im in three.values())
    stamp(lazy.cache, c, time.time() - 10000)  # the least recently used, but mounted
    budget = entry_bytes(lazy.cache, b["digest"]) + entry_bytes(lazy.cache, c["digest"])
    lazy.env["LAZYEROFS_CACHE_MAX"] = str(budget)
    mp_d = lazy.mount(d["ref"])  # a new entry: a (the oldest unused) makes room
    assert not present(lazy.cache, a)
    assert present(lazy.cache, b) and present(lazy.cache, c) and present(lazy.cache, d)
    # A budget in percent of the cache filesystem, all of it: nothing goes.
    lazy.env["LAZYEROFS_CACHE_MAX"] = "100%"
    mp_a = lazy.mount(a["ref"])
    assert present(lazy.cache, b)
    lazy.umount(mp_a)
    # d's reads fill the cache past its budget: the unused entries go (b, a), not c
    assert child_read(mp_c + "/data/f.bin") == expected(c, "/data/f.bin")
    assert child_read(mp_d + "/data/f.bin") == expected(d, "/data/f.bin")
    assert wait_until(lambda: not present(lazy.cache, b), 10)
    assert present(lazy.cache, c) and present(lazy.cache, d)
    # Not a size: the mount goes on, with a warning.
    lazy.env["LAZYEROFS_CACHE_MAX"] = "lots"
    lazy.run(["gc", "--max-size", "0"], env=dict(lazy.env, LAZYEROFS_CACHE_MAX="1G"))
    mp_a, r = lazy.mount(a["ref"], check=False)
    assert r.returncode == 0, r.stderr
    assert "LAZYEROFS_CACHE_MAX='lots'" in r.stderr and "warning" in r.stderr, r.stderr
    assert child_read(mp_a + "/etc/name") == b"a\n"
    for mp in (mp_a, mp_c, mp_d):
        lazy.umount(mp)
    lazy.assert_nothing_left()


def test_gc_bad_input(lazy, three):
    """Bad usage: one line, exit 1, nothing evicted."""
    for args in (["--max-size", "1.5G"], ["--max-size", "101%"], ["--max-size", "-1"],
                 ["--max-size", ""], ["--max-size"], ["--bogus"], ["extra"]):
        r = lazy.run(["gc", *args])
        assert_one_line_error(r, 1)
    r = lazy.run(["gc"], env=dict(lazy.env, LAZYEROFS_CACHE_MAX="ten gigs"))
    assert_one_line_error(r, 1)
    assert "LAZYEROFS_CACHE_MAX" in r.stderr
    bad = os.path.join(lazy.root, "open")
    os.makedirs(bad, mode=0o755)
    os.chmod(bad, 0o755)
    r = lazy.run(["gc"], env=dict(lazy.env, LAZYEROFS_CACHE_DIR=bad))
    assert_one_line_error(r, 2)
    assert all(present(lazy.cache, im) for im in three.values())
    r = lazy.run(["gc", "--help"])
    assert r.returncode == 0 and "Usage: lazyerofs gc" in r.stdout


# --- trimming entries in use -----------------------------------------------------------------


COLD_MS = 1000  # LAZYEROFS_TRIM_COLD_MS: blocks unread for 1 s may be trimmed (default 60 s)
UNIT_BLOCKS = 128 * 1024 // BLOCK  # blocks are trimmed in units of 128 KiB


@pytest.fixture(scope="module")
def big(workdir):
    """An uncompressed 32 MiB image (data/r0.bin .. r3.bin, 8 MiB of random bytes each)."""
    os.makedirs(os.path.join(workdir, "big"), exist_ok=True)
    path, tree = build_big_image(os.path.join(workdir, "big"), files=4, mib=8)
    with open(path, "rb") as f:
        blob = f.read()
    return {"path": path, "tree": tree, "blob": blob}


def file_blocks(im, rel):
    """The blob's blocks that hold the data of file rel (uncompressed image: found by
    content)."""
    data = expected(im, rel)
    off = im["blob"].find(data)
    assert off >= 0 and off % BLOCK == 0, off
    return range(off // BLOCK, (off + len(data) + BLOCK - 1) // BLOCK)


def trim_env(lazy):
    """Trim what was unread for COLD_MS; small read-ahead, so that reading some files does
    not fetch the whole image (a complete entry is verified and loses its mark: never
    trimmed)."""
    lazy.env.update(LAZYEROFS_TRIM_COLD_MS=str(COLD_MS), LAZYEROFS_CHUNK_SIZE="65536",
                    LAZYEROFS_READAHEAD_INITIAL="65536", LAZYEROFS_READAHEAD_MAX="262144")


@pytest.mark.san
def test_gc_trims_cold_blocks_of_a_mounted_entry(lazy, private_registry, big):
    """The only entry is mounted and over the budget: gc asks its daemon to trim; the blocks
    read longest ago go (holes, bits cleared, on disk too), blocks read just now stay; every
    read afterwards, from cold caches, returns the right bytes (fetched again), and the
    metadata is untouched."""
    im = push(private_registry, "trim/big", big)
    trim_env(lazy)
    mp = lazy.mount(im["ref"])
    names = [f"/data/r{i}.bin" for i in range(4)]
    for n in names[:3]:
        assert child_read(mp + n) == expected(im, n)
    assert child_read(mp + names[3], 0, MiB) == expected(im, names[3])[:MiB]
    snap = child_snapshot(mp)
    st = lazy.status_of(mp)
    assert st["state"] == "running" and st["trimmable"] is True, (st["trim_blocked"], st)
    time.sleep(COLD_MS / 1000 + 0.5)
    drop_caches(1)
    assert child_read(mp + names[2]) == expected(im, names[2])  # read again: hot
    before = entry_bytes(lazy.cache, im["digest"])
    r = gc(lazy, "--max-size", str(before - 8 * MiB))
    assert re.search(rf"^trimmed {im['digest']} \(", r.stdout, re.M), r.stdout
    assert "trimmed 1 in use" in r.stdout, r.stdout
    after = entry_bytes(lazy.cache, im["digest"])
    assert after <= before - 8 * MiB, (before, after)
    st = lazy.status_of(mp)
    assert st["trimmed_bytes"] >= 8 * MiB and st["present_bytes"] < st["size"], st
    # ... and the metrics say as much.
    r = lazy.run(["status", "--prometheus"])
    assert r.returncode == 0, r.stderr
    trimmed = [float(l.rsplit(None, 1)[1]) for l in r.stdout.splitlines()
               if l.startswith("lazyerofs_trimmed_bytes_total{")]
    assert trimmed == [st["trimmed_bytes"]], (trimmed, st["trimmed_bytes"])
    # The least recently read went first; the one read just now stayed.
    claims = set(claimed_blocks(lazy.cache, im["digest"], im["size"]))
    assert set(file_blocks(im, names[2])) <= claims
    # (all of it but the units it shares with metadata or with the file read after it)
    assert len(set(file_blocks(im, names[0])) & claims) <= 2 * UNIT_BLOCKS
    # Cold caches: every byte comes from the cache file or the registry, right.
    fetched = st["fetched_bytes"]
    drop_caches(1)
    assert not diff_snapshots(snap, child_snapshot(mp))
    for n in names:
        assert child_read(mp + n) == expected(im, n), n
    st = lazy.status_of(mp)
    assert st["fetched_bytes"] >= fetched + 8 * MiB and st["errors"] == 0, st
    lazy.umount(mp)
    lazy.assert_nothing_left()
    assert check_claims(lazy.cache, im) > 0


def test_an_image_larger_than_the_budget_takes_what_is_read(lazy, private_registry, big):
    """LAZYEROFS_CACHE_MAX below the image's size: its new entry is not allocated whole (it
    held all 32 MiB for one file read, and no trim gives back blocks that hold nothing), and a
    gc then brings the cache within the budget; with room in the budget it is, as without
    one."""
    im = push(private_registry, "trim/budget", big)
    trim_env(lazy)
    lazy.env["LAZYEROFS_CACHE_MAX"] = str(12 * MiB)
    mp = lazy.mount(im["ref"])
    assert child_read(mp + "/data/r0.bin") == expected(im, "/data/r0.bin")
    held = entry_bytes(lazy.cache, im["digest"])
    assert held < 12 * MiB, held
    assert child_read(mp + "/data/r1.bin") == expected(im, "/data/r1.bin")
    time.sleep(COLD_MS / 1000 + 0.5)
    r = gc(lazy)
    assert entry_bytes(lazy.cache, im["digest"]) <= 12 * MiB, r.stdout
    lazy.umount(mp)
    lazy.assert_nothing_left()
    shutil.rmtree(os.path.join(lazy.cache, "sha256"))
    lazy.env["LAZYEROFS_CACHE_MAX"] = str(64 * MiB)
    mp = lazy.mount(im["ref"])
    assert entry_bytes(lazy.cache, im["digest"]) >= im["size"]
    lazy.umount(mp)
    lazy.assert_nothing_left()


@pytest.mark.parametrize("name", ["lz4hc", "ztailpacking", "fragments", "chunked", "metazone",
                                  "bs1k", "metacompress", "allfragments", "deflate", "lzma",
                                  "zstd", "extended-inodes", "plain"])
def test_trim_keeps_metadata(lazy, private_registry, name, expected_tree):
    """Everything cold trimmed away (budget 0), block by block, from a mounted fixture image of
    which some files were read: with cold caches the tree (names, modes, xattrs, inline data) and every
    file's content are still right."""
    path = os.path.join(FIXTURES, name + ".erofs")
    with open(path, "rb") as f:
        blob = f.read()
    im = push(private_registry, f"trim/{name}", {"path": path, "blob": blob, "tree": None})
    trim_env(lazy)
    lazy.env["LAZYEROFS_TRIM_UNIT"] = str(BLOCK)  # trim right up to the metadata
    mp = lazy.mount(im["ref"])
    root, snap, hashes = expected_tree
    assert not diff_snapshots(snap, child_snapshot(mp))
    # A few files, read whole: the largest (their data has blocks of its own) -- not so much
    # that the entry is complete (then it is verified, and loses its mark).
    paths = sorted(hashes, key=lambda p: -os.path.getsize(os.path.join(root, p.lstrip("/"))))
    for p in paths[:3]:
        child_read(os.path.join(mp, p.lstrip("/")))
    time.sleep(COLD_MS / 1000 + 0.5)
    r = gc(lazy, "-v", "--max-size", "0")
    st = lazy.status_of(mp)
    assert st["state"] == "running" and st["trimmed_bytes"] > 0, (r.stdout, r.stderr, st)
    drop_caches(1)
    compare_tree(mp, expected_tree)
    assert lazy.status_of(mp)["errors"] == 0
    lazy.umount(mp)
    lazy.assert_nothing_left()
    assert check_claims(lazy.cache, im) > 0


def test_verified_entry_is_never_trimmed(lazy, private_registry, images):
    """prefetch=all verified the entry and dropped its mark: gc leaves it whole (a hole would
    be read as zeros), says the cache is over budget, and the mount reads right."""
    im = push(private_registry, "trim/verified", images["c"])
    trim_env(lazy)
    mp = lazy.mount(im["ref"], opts="insecure,prefetch=all")
    assert wait_until(lambda: lazy.status_of(mp)["state"] == "verified", 60)
    time.sleep(COLD_MS / 1000 + 0.5)
    before = entry_bytes(lazy.cache, im["digest"])
    r = gc(lazy, "--max-size", "0")
    assert "trimmed" not in r.stdout and "over budget: 1 entry in use" in r.stdout, r.stdout
    assert entry_bytes(lazy.cache, im["digest"]) == before
    st = lazy.status_of(mp)
    assert st["trimmable"] is False and "mark" in st["trim_blocked"], st
    drop_caches(1)
    assert child_read(mp + "/data/f.bin") == expected(im, "/data/f.bin")
    lazy.umount(mp)
    lazy.assert_nothing_left()


READER = r"""
import os, random, sys, time
mp, tree, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
names = [f"/data/r{i}.bin" for i in range(3)]  # r3 unread: the entry stays incomplete
want = {n: open(tree + n, "rb").read() for n in names}
end, reads, rng = time.monotonic() + seconds, 0, random.Random(os.getpid())
while time.monotonic() < end:
    n = rng.choice(names)
    off = rng.randrange(0, len(want[n]) // 4096) * 4096
    ln = rng.choice([4096, 65536, 1 << 20])
    fd = os.open(mp + n, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # from the cache file, not RAM
        got = os.pread(fd, ln, off)
    finally:
        os.close(fd)
    if got != want[n][off:off + ln]:
        zeros = got.count(0) == len(got)
        print(f"WRONG {n} at {off}+{ln}{' (zeros)' if zeros else ''}", flush=True)
        sys.exit(1)
    reads += 1
    time.sleep(0.01)  # units go cold between reads, and are trimmed under the readers
print(reads)
"""


@pytest.mark.san
def test_trim_racing_readers(lazy, private_registry, big):
    """Readers read random ranges from cold caches while gc trims the mounted entry over and
    over: every read returns the right bytes (never zeros), every answer is given."""
    im = push(private_registry, "trim/race", big)
    trim_env(lazy)
    mp = lazy.mount(im["ref"])
    for i in range(3):
        assert child_read(mp + f"/data/r{i}.bin", 0, 4096)
    readers = [subprocess.Popen(["/usr/bin/python3", "-c", READER, mp, big["tree"], "12"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    trims = 0
    try:
        end = time.monotonic() + 12
        while time.monotonic() < end:
            r = gc(lazy, "--max-size", "0")
            trims += "trimmed" in r.stdout
            time.sleep(0.1)
        outs = [p.communicate(timeout=120) for p in readers]
    finally:
        for p in readers:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(readers, outs):
        assert p.returncode == 0, out + err
    st = lazy.status_of(mp)
    assert trims >= 10 and st["trimmed_bytes"] > MiB, (trims, st)
    assert st["errors"] == 0 and st["answers"] == st["events"], st
    lazy.umount(mp)
    lazy.assert_nothing_left()
    assert check_claims(lazy.cache, im) > 0


def test_gc_goes_on_past_an_entry_it_cannot_remove(lazy, three, tmp_path):
    """A lock file replaced by a symlink (planted, or a backup tool's doing): that entry is
    kept and named in one line, exit 2; the others go (it ended the run at the first)."""
    a, b, c = three["a"], three["b"], three["c"]  # a least recently used
    sha = os.path.join(lazy.cache, "sha256")
    lock = os.path.join(sha, entry_key(a["digest"]) + ".lock")
    if os.path.lexists(lock):
        os.unlink(lock)
    target = tmp_path / "elsewhere"
    target.write_text("")
    os.symlink(target, lock)
    try:
        r = gc(lazy, "--max-size", "0", check=False)
        assert not present(lazy.cache, b) and not present(lazy.cache, c), (r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert entry_key(a["digest"]) in lines[0], lines[0]
    finally:
        os.unlink(lock)


def test_gc_keeps_a_lost_mounts_entry_whatever_the_cache_dirs_spelling(lazy, three):
    """A mount made with the cache directory spelled otherwise ("c/": its mountinfo source
    says "c//sha256/KEY") whose daemon is gone still holds its entry."""
    b = three["b"]
    mp = lazy.mountpoint("slash")
    r = lazy.run(["mount", "-o", "insecure", b["ref"], mp],
                 env=dict(lazy.env, LAZYEROFS_CACHE_DIR=lazy.cache + "/"))
    assert r.returncode == 0, r.stderr
    st = lazy.status_of(mp)
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    assert wait_until(lambda: lazy.status_of(mp)["state"] == "lost", 30)
    r = gc(lazy, "--max-size", "0")
    assert b["digest"] not in evicted(r.stdout) and present(lazy.cache, b), r.stdout
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_gc_frees_what_a_killed_bad_entrys_daemon_set_aside(lazy, private_registry, images):
    """A bad entry's files set aside (KEY.bad-PID*) by a daemon killed before it could remove
    them: gc frees them (it never looked at them; only a mount of that image again did)."""
    im = push(private_registry, "life/aside", images["a"])
    mp = lazy.mount(im["ref"])
    assert child_read(mp + "/etc/name") == b"a\n"
    st = lazy.status_of(mp)
    data = os.path.join(lazy.cache, "sha256", entry_key(im["digest"]))
    # Another process writes the cache file: the daemon sets the entry aside as bad.
    subprocess.run(["dd", "if=/dev/zero", f"of={data}", "bs=4096", "count=1", "seek=100",
                    "conv=notrunc", "status=none"], check=True, timeout=60)
    assert wait_until(lambda: lazy.status_of(mp)["state"] == "bad", 20)
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    assert wait_until(lambda: not lazy.daemon_pids(), 10)
    lazy.umount(mp)
    sha = os.path.join(lazy.cache, "sha256")
    assert [n for n in os.listdir(sha) if ".bad-" in n], os.listdir(sha)
    r = gc(lazy, "--max-size", "0")
    assert [n for n in os.listdir(sha) if ".bad-" in n] == [], r.stdout
    lazy.assert_nothing_left()


def test_a_mute_daemon_does_not_hold_up_another_images_mount(lazy, private_registry, images):
    """cache-max asks the daemons of entries in use to trim: one that does not answer (stopped
    here) is passed over after 10 s (2 s here) with a warning (a mount of another image
    waited 120 s)."""
    a = push(private_registry, "life/mutea", images["a"])
    b = push(private_registry, "life/muteb", images["b"])
    mpa = lazy.mount(a["ref"])
    child_read(mpa + "/data/f.bin")
    pids = lazy.daemon_pids()
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        lazy.env["LAZYEROFS_CACHE_MAX"] = "1M"
        lazy.env["LAZYEROFS_ANSWER_WAIT_MS"] = "2000"
        t = time.monotonic()
        mpb, r = lazy.mount(b["ref"], check=False, timeout=300)
        took = time.monotonic() - t
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    assert r.returncode == 0, r.stderr
    assert took < 15 and "does not answer (2 s)" in r.stderr, (took, r.stderr)
    lazy.umount(mpb)
    lazy.umount(mpa)
    lazy.assert_nothing_left()


def test_gc_of_a_cache_without_entries_says_its_budget(lazy):
    """A percentage budget of a cache with no entry yet is what the filesystem gives (it said
    "budget 0 B" until the first entry made sha256/)."""
    os.makedirs(lazy.cache, mode=0o700, exist_ok=True)
    r = gc(lazy, "--max-size", "50%")
    assert "(budget 0 B)" not in r.stdout and "budget" in r.stdout, r.stdout


def test_an_entry_whose_files_a_chmod_opened_is_rebuilt_saying_why(lazy, three):
    """A backup's chmod -R made an entry's files group-readable: the entry is not trusted and
    is made again, and the daemon's log says why (it said "damaged or did not match")."""
    a = three["a"]
    data = os.path.join(lazy.cache, "sha256", entry_key(a["digest"]))
    os.chmod(data, 0o644)
    mp = lazy.mount(a["ref"])
    assert child_read(mp + "/etc/name") == b"a\n"
    assert "no longer regular files of root's with mode 0600" in lazy.log()
    lazy.umount(mp)
    lazy.assert_nothing_left()
