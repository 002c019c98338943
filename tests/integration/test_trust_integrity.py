# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Bytes of different trust stay apart. A blob fetched over plain HTTP (`insecure`) fills a
cache entry of its own; a later mount of the same digest over TLS never reads it, and
`status` says what each mount's bytes are checked against (`integrity`: verified, tls or
insecure), with `state` `lost` once no daemon answers for a mount. A multipart answer whose part
is shorter than its Content-Range says (the framing after it where the announced bytes end)
costs a retry, never wrong bytes in the cache: not for a file's data, not for the metadata a
mount fetches. One digest has one size: a manifest that gives the blob another never has a
verified entry rebuilt at its size (the image's bytes thrown away), nor joins the daemon of
a live mount of it."""

import concurrent.futures
import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import time

import pytest

from common import child_read, child_hashes, content_hashes, drop_caches, wait_until
from lazymount import build_busybox_image
from registry import MT_EROFS, MT_OCI_MANIFEST, Registry, RegistryClient
from webserver import WebServer


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_busybox_image(str(tmp_path_factory.mktemp("integrity")))


def entries(lazy):
    d = os.path.join(lazy.cache, "sha256")
    return sorted(n for n in os.listdir(d) if len(n) == 64) if os.path.isdir(d) else []


def test_insecure_bytes_never_serve_a_tls_mount(lazy, registry, tls_registry, image):
    path, tree = image
    im = registry.client.push_image("trust/bb", "v1", [(path, MT_EROFS)])
    tls_registry.client.push_image("trust/bb", "v1", [(path, MT_EROFS)])
    digest = im["layers"][0]["digest"]

    weak = lazy.mount(registry.ref("trust/bb", "v1"), opts="insecure")
    st = lazy.status_of(weak)
    assert st["integrity"] == "insecure" and st["state"] == "running", st
    assert child_hashes(weak) == content_hashes(tree)
    assert st["digest"] == digest
    assert len(entries(lazy)) == 1 and entries(lazy)[0] != digest[7:]

    opts = (f"ca={tls_registry.ca},username={tls_registry.username},"
            f"password-file={tls_registry.password_file}")
    strong = lazy.mount(tls_registry.ref("trust/bb", "v1"), opts=opts)
    st2 = lazy.status_of(strong)
    assert st2["integrity"] == "tls", st2
    assert st2["pid"] != st["pid"], "a TLS mount joined the daemon of the insecure entry"
    # Its entry is the digest's own, filled over TLS: it fetches what it reads.
    assert digest[7:] in entries(lazy) and len(entries(lazy)) == 2
    before = st2["fetched_bytes"]
    assert child_read(strong + "/etc/big.txt") == open(tree + "/etc/big.txt", "rb").read()
    assert lazy.status_of(strong)["fetched_bytes"] > before
    lazy.umount(strong)
    lazy.umount(weak)
    lazy.assert_nothing_left()


def test_a_tls_registry_never_sends_a_tls_mount_to_plain_http(lazy, pki, image):
    """A TLS registry whose blob storage answers on plain HTTP (the registry's own `redirect`
    middleware, as with object storage behind an http:// base URL): a mount that asked for TLS
    refuses that redirect with one line, and nothing of the blob comes over plain HTTP (its
    bytes were fetched that way, counted as "tls" and kept in the TLS entry). With the
    registry's hosts.toml saying skip_verify the same mount works, its bytes insecure."""
    path, tree = image
    web = WebServer().start()
    reg = Registry(tls=(pki.cert, pki.key))
    try:
        reg.start()
        reg.client = RegistryClient(reg.url, context=pki.context())
        layer = reg.client.push_image("trust/redir", "v1", [(path, MT_EROFS)])["layers"][0]
        os.rmdir(web.root)
        os.symlink(reg.storage, web.root)
        reg._cfg["middleware"] = {"storage": [{"name": "redirect", "options": {
            "baseurl": f"http://127.0.0.1:{web.port}/"}}]}
        reg._write_config()
        reg.restart()
        ref = reg.ref("trust/redir", "v1")

        def plain_gets():
            with open(web.access_log) as f:
                return [l for l in f if layer["digest"][7:] in l]

        mp, r = lazy.mount(ref, opts=f"ca={pki.ca}", check=False)
        assert r.returncode != 0, r
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and "redirect from https" in lines[0], r.stderr
        assert plain_gets() == []

        # containerd's way to accept weaker bytes from a registry: skip_verify.
        d = os.path.join(lazy.certs_d, reg.host.replace(":", "_") + "_")
        os.makedirs(d)
        with open(os.path.join(d, "hosts.toml"), "w") as f:
            f.write(f'server = "https://{reg.host}"\nskip_verify = true\n')
        mp = lazy.mount(ref, opts=None)
        assert child_read(mp + "/etc/big.txt") == open(tree + "/etc/big.txt", "rb").read()
        assert lazy.status_of(mp)["integrity"] == "insecure"
        assert plain_gets() != []
        lazy.umount(mp)
        lazy.assert_nothing_left()
    finally:
        reg.cleanup()
        web.cleanup()


def test_verified_entry_says_verified(lazy, registry, image):
    path, tree = image
    registry.client.push_image("trust/ver", "v1", [(path, MT_EROFS)])
    mp = lazy.mount(registry.ref("trust/ver", "v1"), opts="insecure,prefetch=all")
    st = wait_until(lambda: (lambda s: s if s["state"] == "verified" else None)(
        lazy.status_of(mp)), 60)
    assert st and st["integrity"] == "verified", lazy.status_of(mp)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_a_digest_mismatch_fails_the_reads_of_live_mounts(lazy, registry, faultproxy,
                                                          tmp_path):
    """The whole image arrived and does not hash to its digest (the proxy flips one byte of a
    file): which bytes are wrong is not known, so no read of the live mount is served any more
    (EIO), and the log says so; a new mount fetches a fresh copy."""
    tree = tmp_path / "tree"
    tree.mkdir()
    data = os.urandom(256 * 1024)
    (tree / "f.bin").write_bytes(data)
    path = str(tmp_path / "m.erofs")
    subprocess.run(["mkfs.erofs", "-T0", path, str(tree)], check=True, capture_output=True)
    registry.client.push_image("trust/mismatch", "v1", [(path, MT_EROFS)])
    at = open(path, "rb").read().find(data[:4096])
    assert at > 0, "the file's bytes in the image (stored plain)"
    faultproxy.add("corrupt", path="/blobs/sha256:", method="GET", range=".", count=None,
                   offsets=[at + 100])
    mp = lazy.mount(faultproxy.ref("trust/mismatch", "v1"), opts="insecure,prefetch=all")
    st = wait_until(lambda: (lambda s: s if s["state"] == "bad" else None)(
        lazy.status_of(mp)), 60)
    assert st, lazy.status_of(mp)
    try:
        got = child_read(mp + "/f.bin")
    except OSError as e:
        assert e.errno == errno.EIO, e
    else:
        raise AssertionError("a read of a mount whose image failed its digest was served "
                             f"({'wrong' if got != data else 'right'} bytes)")
    assert "digest mismatch" in lazy.log() and "fail with EIO" in lazy.log()
    faultproxy.clear()
    mp2 = lazy.mount(registry.ref("trust/mismatch", "v1"), mp=lazy.mountpoint("m2"),
                     opts="insecure")
    assert child_read(mp2 + "/f.bin") == data
    lazy.umount(mp2)
    lazy.umount(mp)
    lazy.assert_nothing_left()


@pytest.mark.parametrize("prefetch", ["none", "all"])
def test_a_mount_without_its_daemon_is_lost(lazy, registry, image, prefetch):
    """Both daemon processes killed: the mount is lost, and status says what the entry's
    files hold (it said 0 bytes present, and insecure for a verified entry)."""
    path, tree = image
    registry.client.push_image("trust/lost", "v1", [(path, MT_EROFS)])
    mp = lazy.mount(registry.ref("trust/lost", "v1"), opts=f"insecure,prefetch={prefetch}")
    if prefetch == "all":
        assert wait_until(lambda: lazy.status_of(mp)["state"] == "verified", 60)
    before = lazy.settled_status_of(mp)
    time.sleep(2)  # the bitmap persisted (a flush a second at most)
    # Both processes at once (one alone is replaced by the other): their process group.
    os.killpg(os.getpgid(before["pid"]), signal.SIGKILL)
    st = wait_until(lambda: (lambda s: s if s["state"] == "lost" else None)(lazy.status_of(mp)),
                    30)
    assert st, lazy.status_of(mp)
    assert "daemon" in st["problem"], st
    assert st["present_bytes"] == before["present_bytes"] > 0, (before, st)
    assert st["integrity"] == ("verified" if prefetch == "all" else "insecure"), st
    table = lazy.run(["status", mp]).stdout
    assert "(0%)" not in table
    # no process to show for a daemon gone (its pid may be another process's by now)
    row = next(l for l in table.splitlines() if l.startswith(mp))
    assert row.split()[-1] == "-", table
    assert st["pid"] is None, st  # (--json: null)
    lazy.umount(mp)


def test_status_never_waits_for_a_daemon_that_does_not_answer(lazy, registry, image):
    """A daemon whose worker does not answer (stopped here; wedged, in a bug) costs `status`
    its wait (10 s; 3 s here), not for ever, and once for all its mounts (it was that for
    each): the mounts show as lost, then running again once it answers."""
    path, tree = image
    registry.client.push_image("trust/mute", "v1", [(path, MT_EROFS)])
    mps = [lazy.mount(registry.ref("trust/mute", "v1"), opts="insecure") for _ in range(3)]
    worker = lazy.status_of(mps[0])["worker_pid"]
    lazy.env["LAZYEROFS_ANSWER_WAIT_MS"] = "3000"
    os.kill(worker, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = lazy.run(["status", "--json", mps[0]], timeout=60)
        took = time.monotonic() - t0
        t0 = time.monotonic()
        every = lazy.run(["status", "--json"], timeout=90)
        took_every = time.monotonic() - t0
    finally:
        os.kill(worker, signal.SIGCONT)
    assert took < 6 and took_every < 6, (took, took_every)
    assert r.returncode == 0 and every.returncode == 0, (r.stderr, every.stderr)
    st = json.loads(r.stdout)["mounts"][0]
    assert st["state"] == "lost" and "does not answer" in st["problem"], st
    listed = json.loads(every.stdout)["mounts"]
    assert len(listed) == 3 and all(m["state"] == "lost" for m in listed), listed
    for mp in mps:
        assert lazy.status_of(mp)["state"] == "running"
        lazy.umount(mp)


def test_the_daemon_never_dumps_core(lazy, registry, image):
    """The daemon holds credentials and tokens in memory: no core file, whatever kills it."""
    path, tree = image
    registry.client.push_image("trust/core", "v1", [(path, MT_EROFS)])
    mp = lazy.mount(registry.ref("trust/core", "v1"), opts="insecure")
    st = lazy.status_of(mp)
    for pid in (st["pid"], st["worker_pid"]):
        with open(f"/proc/{pid}/limits") as f:
            core = [line.split() for line in f if line.startswith("Max core file size")]
        assert core and core[0][4:6] == ["0", "0"], core
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_no_secret_in_the_daemons_command_line(lazy, registry, image, webserver):
    """The daemon is forked from `lazyerofs mount` and lives as long as the mount: its
    command line (readable by every user, ps) must not keep the mount's arguments -- a URL
    source's user info and signed query, oci.password= (they stayed there for days)."""
    path, tree = image
    registry.client.push_image("trust/argv", "v1", [(path, MT_EROFS)])
    url = webserver.put("trust/argv.erofs", path).replace("http://", "http://al:UrlPassw0rd@", 1)
    mps = [lazy.mount(url + "?X-Amz-Signature=PresignSECRET", opts="insecure"),
           lazy.mount(registry.ref("trust/argv", "v1"),
                      opts="insecure,username=bob,oci.password=TopSecret99")]
    daemons = lazy.daemon_pids()
    assert len(daemons) >= 4, daemons  # two holders, two workers
    for pid in daemons:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            line = f.read()
        for secret in (b"UrlPassw0rd", b"PresignSECRET", b"TopSecret99"):
            assert secret not in line, (pid, line)
        assert line.startswith(b"lazyerofs daemon "), line
    for mp in mps:  # and the daemons still serve
        assert child_hashes(mp) == content_hashes(tree)
        lazy.umount(mp)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """An image of 300 files of 5-60 KB in 10 directories, and each file's sha256."""
    d = str(tmp_path_factory.mktemp("shortpart"))
    rnd, want = random.Random(28), {}
    for i in range(300):
        data = rnd.randbytes(rnd.randint(5000, 60000))
        rel = f"d{i % 10}/f{i}.bin"
        os.makedirs(os.path.join(d, "tree", f"d{i % 10}"), exist_ok=True)
        with open(os.path.join(d, "tree", rel), "wb") as f:
            f.write(data)
        want[rel] = hashlib.sha256(data).hexdigest()
    img = os.path.join(d, "small.erofs")
    subprocess.run(["mkfs.erofs", img, os.path.join(d, "tree")], capture_output=True,
                   check=True)
    return img, want


def read_files(mp, want):
    """Every file read by 32 readers at once: the names read wrong, and those that failed."""
    def one(rel):
        try:
            return rel, hashlib.sha256(child_read(os.path.join(mp, rel), timeout=60)).hexdigest()
        except OSError as e:
            return rel, e.errno
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        got = dict(ex.map(one, sorted(want)))
    return ([r for r, h in got.items() if isinstance(h, str) and h != want[r]],
            [r for r, h in got.items() if not isinstance(h, str)])


@pytest.mark.parametrize("cut", [3, 100, 5000])
def test_a_short_multipart_part_costs_a_retry_not_the_cache(lazy, registry, faultproxy,
                                                            small_files, cut):
    img, want = small_files
    registry.client.push_image("trust/shortpart", "v1", [(img, MT_EROFS)])
    lazy.env["LAZYEROFS_MAX_REQUESTS"] = "1"  # reads wait together: multi-range requests
    mp = lazy.mount(faultproxy.ref("trust/shortpart", "v1"), opts="insecure,timeout=10")
    f = faultproxy.add("short_part", path="/blobs/sha256:", method="GET", range=",", count=3,
                       cut=cut)
    wrong, failed = read_files(mp, want)
    assert f.fired >= 1, "no multi-range answer was cut short: nothing tested"
    assert not wrong, f"wrong bytes read: {wrong[:5]}"
    faultproxy.clear()
    drop_caches()
    wrong, failed = read_files(mp, want)
    assert not wrong and not failed, (wrong[:5], failed[:5])
    st = lazy.status_of(mp)
    assert st["state"] != "bad", st  # (what the cache kept is the blob's)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_a_short_multipart_part_during_the_mount_costs_a_retry(lazy, registry, faultproxy,
                                                               small_files):
    img, want = small_files
    registry.client.push_image("trust/shortpart", "v2", [(img, MT_EROFS)])
    f = faultproxy.add("short_part", path="/blobs/sha256:", method="GET", range=",", count=1,
                       cut=1000)
    mp = lazy.mount(faultproxy.ref("trust/shortpart", "v2"), opts="insecure,timeout=10")
    assert f.fired == 1, "the mount's metadata came in no multi-range answer: nothing tested"
    names = sorted(os.path.relpath(os.path.join(r, n), mp)
                   for r, _, files in os.walk(mp) for n in files)
    assert names == sorted(want)
    wrong, failed = read_files(mp, want)
    assert not wrong and not failed, (wrong[:5], failed[:5])
    lazy.umount(mp)
    lazy.assert_nothing_left()


def push_with_size(registry, repo, tag, path, size):
    """An image of the blob at path whose manifest gives its layer `size` bytes."""
    with open(path, "rb") as f:
        layer = registry.client.push_blob(repo, f.read())
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": registry.client.push_blob(repo, config),
                           "size": len(config)},
                "layers": [{"mediaType": MT_EROFS, "digest": layer, "size": size}]}
    registry.client.push_manifest(repo, tag, manifest, MT_OCI_MANIFEST)
    return registry.ref(repo, tag)


def test_a_manifest_with_another_size_never_rebuilds_a_verified_entry(lazy, registry, image):
    path, tree = image
    size = os.path.getsize(path)
    honest = push_with_size(registry, "trust/sized", "v1", path, size)
    liar = push_with_size(registry, "trust/sized", "liar", path, size + 4096)
    r = lazy.run(["fetch", "-o", "insecure", honest])
    assert r.returncode == 0, r.stderr
    _, r = lazy.mount(liar, check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 32 and len(lines) == 1, r.stderr
    assert "manifest is wrong" in lines[0] and str(size) in lines[0], lines[0]
    lazy.assert_nothing_left()
    mp = lazy.mount(honest)  # the entry as it was: verified, nothing to fetch
    st = lazy.status_of(mp)
    assert st["state"] == "verified" and st["fetched_bytes"] == 0, st
    assert child_hashes(mp) == content_hashes(tree)
    lazy.umount(mp)


def test_a_manifest_with_another_size_does_not_join_a_live_daemon(lazy, registry, image):
    path, tree = image
    size = os.path.getsize(path)
    honest = push_with_size(registry, "trust/sized", "v2", path, size)
    liar = push_with_size(registry, "trust/sized", "liar2", path, size + 4096)
    mp = lazy.mount(honest)
    _, r = lazy.mount(liar, check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 32 and len(lines) == 1, r.stderr
    assert "manifest is wrong" in lines[0] and str(size + 4096) in lines[0], lines[0]
    assert child_hashes(mp) == content_hashes(tree)
    assert len(lazy.status()) == 1
    lazy.umount(mp)
    lazy.assert_nothing_left()
