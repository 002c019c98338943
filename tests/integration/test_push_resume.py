# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""`lazyerofs push` continues an interrupted upload instead of starting it over: within one
push after a chunk failed (the registry is asked how much of the session it holds), and
across processes from the record a killed push left in <cache-dir>/uploads. A record the
registry no longer honours (its storage was wiped, or -- the distribution registry -- the
session's URL no longer matches the bytes it holds) or a broken one starts a fresh upload.

The real distribution registry sits behind the fault proxy, which never forwards a request
whose body was cut short (as nginx does not): what reaches the registry is whole chunks, so
its session URL stays valid. A chunk cut on its way into the registry itself makes that
registry refuse the session (404 BLOB_UPLOAD_INVALID); the stale-record test shows the fresh
upload that follows."""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

from common import BIN, FIXTURES
from faultproxy import FaultProxy
from lazymount import build_big_image
from registry import (Registry, RegistryClient, clean_env, file_digest, push, push_env, push_ok,
                      sha256_digest)

CHUNK = 16 << 20


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A ~64 MiB plain EROFS image (five PATCH chunks) and its tree."""
    d = str(tmp_path_factory.mktemp("pushresume"))
    image, tree = build_big_image(d, files=4, mib=16)
    return {"image": image, "tree": tree, "size": os.path.getsize(image),
            "digest": file_digest(image)}


@pytest.fixture
def cache_dir(tmp_path):
    """The pushes' own cache directory (push makes it, root-owned and 0700)."""
    return str(tmp_path / "cache")


def records(cache_dir):
    d = os.path.join(cache_dir, "uploads")
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".upload")) \
        if os.path.isdir(d) else []


def patches(proxy):
    """(first, last) of every PATCH the registry received (whole bodies only)."""
    out = []
    for s in proxy.seen():
        if s.method == "PATCH" and s.fault is None and s.status == 202:
            a, b = (int(x) for x in s.content_range.split("-"))
            out.append((a, b))
    return out


def killed_push(proxy, image, ref, cache_dir, nth_patch=2, before_body=True):
    """Start a push through proxy and SIGKILL it at its nth_patch-th PATCH (0-based): before
    the proxy reads that chunk (so it is cut short and never forwarded), or after (so the
    registry gets the whole chunk and the killed push never learns it)."""
    proc = subprocess.Popen([BIN, "push", "-o", "insecure", image, ref],
                            env=clean_env(push_env({"LAZYEROFS_CACHE_DIR": cache_dir})),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def kill(seen):
        proc.kill()
        proc.wait(timeout=30)

    proxy.add("hook", path=r"/blobs/uploads/", method="PATCH", skip=nth_patch, fn=kill,
              before_body=before_body)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
    proxy.clear()


def check_pushed(registry, big, layer, lazy, repo):
    """The registry holds the right bytes and a lazy mount reads the tree back."""
    assert layer == big["digest"]
    _, _, body = registry.client.get(f"/v2/{repo}/blobs/{layer}")
    assert sha256_digest(body) == big["digest"]
    mp = lazy.mount(registry.ref(repo, "v1"))
    for rel in ("etc/motd", "data/r0.bin", "data/r3.bin"):
        with open(os.path.join(big["tree"], rel), "rb") as f, open(os.path.join(mp, rel), "rb") as g:
            assert f.read() == g.read(), rel
    lazy.umount(mp)


@pytest.mark.parametrize("fault", ["drop", "503", "416"])
def test_failed_chunk_continues_from_the_registrys_offset(registry, faultproxy, big, fault,
                                                          lazy):
    """A chunk lost on the way (connection cut, 503, 416): the push asks the session where it
    stands and sends only what the registry lacks -- no new session, no chunk sent twice."""
    repo = f"resume/inproc-{fault}"
    if fault == "drop":
        # twice: libcurl itself resends once a request whose reused connection closed at once
        faultproxy.add("drop", path=r"/blobs/uploads/", method="PATCH", skip=2, count=2)
    else:
        faultproxy.add("status", path=r"/blobs/uploads/", method="PATCH", skip=2,
                       code=int(fault))
    manifest, layer, r = push_ok(big["image"], faultproxy.ref(repo, "v1"))
    got = patches(faultproxy)
    # the layer's five chunks, each once, in order; the failed one went again from its start
    assert got == [(o, min(o + CHUNK, big["size"]) - 1) for o in range(0, big["size"], CHUNK)], \
        faultproxy.seen()
    assert faultproxy.count(method="GET", path=r"/blobs/uploads/") == 1, faultproxy.seen()
    # one session for the layer, one for the config
    assert faultproxy.count(method="POST", path=r"/blobs/uploads/") == 2, faultproxy.seen()
    check_pushed(registry, big, layer, lazy, repo)


def test_killed_push_continues_in_the_next_one(registry, faultproxy, big, cache_dir, lazy):
    """SIGKILL in the middle of the third chunk: the record holds the session (0600, no
    secrets); the next push of the same file to the same repository sends only the rest."""
    ref = faultproxy.ref("resume/killed", "v1")
    killed_push(faultproxy, big["image"], ref, cache_dir)
    recs = records(cache_dir)
    assert len(recs) == 1, recs
    st = os.stat(recs[0])
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(os.stat(os.path.dirname(recs[0])).st_mode) == 0o700
    with open(recs[0]) as f:
        rec = json.load(f)
    assert rec["digest"] == big["digest"] and rec["size"] == big["size"]
    assert rec["offset"] == 2 * CHUNK and rec["repository"] == "resume/killed"
    assert rec["url"].startswith(faultproxy.url + "/v2/resume/killed/blobs/uploads/")
    assert not re.search(r"(?i)authorization|password|bearer", json.dumps(rec))

    _, layer, r = push_ok(big["image"], ref, env={"LAZYEROFS_CACHE_DIR": cache_dir},
                          extra=["-v"])
    got = patches(faultproxy)
    assert got and got[0][0] == 2 * CHUNK, faultproxy.seen()
    assert sum(b - a + 1 for a, b in got) == big["size"] - 2 * CHUNK, faultproxy.seen()
    # the config's session only: the layer's was the recorded one
    assert faultproxy.count(method="POST", path=r"/blobs/uploads/") == 1, faultproxy.seen()
    assert f"continued the interrupted upload of {layer} from byte {2 * CHUNK} of " \
        f"{big['size']}" in r.stderr, r.stderr
    assert records(cache_dir) == []
    check_pushed(registry, big, layer, lazy, "resume/killed")


def test_stale_record_falls_back_to_a_fresh_upload(big, cache_dir, lazy):
    """The registry's storage was wiped after the kill (404 BLOB_UPLOAD_UNKNOWN), or a chunk
    reached it after its URL was recorded (404 BLOB_UPLOAD_INVALID): a new session, every
    byte again, and the push succeeds."""
    reg = Registry().start()
    proxy = FaultProxy("127.0.0.1", reg.port).start()
    try:
        reg.client = RegistryClient(reg.url)
        ref = proxy.ref("resume/stale", "v1")
        # 1: wiped storage
        killed_push(proxy, big["image"], ref, cache_dir)
        assert len(records(cache_dir)) == 1
        reg.stop()
        shutil.rmtree(reg.storage)
        reg.start()
        _, layer, r = push_ok(big["image"], ref, env={"LAZYEROFS_CACHE_DIR": cache_dir},
                              extra=["-v"])
        assert "could not be continued" in r.stderr, r.stderr
        assert [s.status for s in proxy.seen()
                if s.method == "GET" and "/blobs/uploads/" in s.path] == [404]
        assert patches(proxy)[0][0] == 0
        assert sum(b - a + 1 for a, b in patches(proxy)) == big["size"]
        assert records(cache_dir) == []
        check_pushed(reg, big, layer, lazy, "resume/stale")

        # 2: the killed push's chunk reached the registry whole; its URL is then stale
        proxy.clear()
        ref2 = proxy.ref("resume/stale2", "v1")
        killed_push(proxy, big["image"], ref2, cache_dir, before_body=False)
        assert len(records(cache_dir)) == 1
        _, layer, r = push_ok(big["image"], ref2, env={"LAZYEROFS_CACHE_DIR": cache_dir})
        assert [s.status for s in proxy.seen()
                if s.method == "GET" and "/blobs/uploads/" in s.path] == [404]
        assert sum(b - a + 1 for a, b in patches(proxy)) == big["size"]
        assert records(cache_dir) == []
        assert layer == big["digest"]
    finally:
        proxy.stop()
        reg.cleanup()


def test_broken_or_foreign_record_is_ignored(registry, faultproxy, big, cache_dir):
    """A record that does not parse, or names a session on another origin: one warning line,
    the other origin is never contacted (no credentials leave), a fresh upload succeeds."""
    other = FaultProxy("127.0.0.1", registry.port).start()
    try:
        ref = faultproxy.ref("resume/foreign", "v1")
        killed_push(faultproxy, big["image"], ref, cache_dir)
        (path,) = records(cache_dir)
        with open(path) as f:
            rec = json.load(f)
        rec["url"] = rec["url"].replace(faultproxy.url, other.url)
        with open(path, "w") as f:
            json.dump(rec, f)
        _, layer, r = push_ok(big["image"], ref, env={"LAZYEROFS_CACHE_DIR": cache_dir})
        assert other.seen() == []
        assert patches(faultproxy)[0][0] == 0 and layer == big["digest"]
        assert records(cache_dir) == []

        faultproxy.clear()
        killed_push(faultproxy, big["image"], faultproxy.ref("resume/broken", "v1"), cache_dir)
        (path,) = records(cache_dir)
        with open(path, "w") as f:
            f.write('{"version":1,"url":"http://x\\u0000"}' + " " * 100)
        r = push(big["image"], faultproxy.ref("resume/broken", "v1"),
                 env={"LAZYEROFS_CACHE_DIR": cache_dir})
        assert r.returncode == 0, r.stderr
        warn = [l for l in r.stderr.splitlines() if "upload record" in l]
        assert len(warn) == 1 and path in warn[0], r.stderr
        assert patches(faultproxy)[0][0] == 0
    finally:
        other.stop()


BLOB_UNKNOWN = ('{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to '
                'registry"}]}')


def test_manifest_refused_for_an_unknown_blob_goes_again(registry, faultproxy):
    """The distribution registry may refuse a manifest whose blob another push of the same
    image is uploading at that moment (400 MANIFEST_BLOB_UNKNOWN, played by the fault proxy):
    the push makes sure of its blobs again and stores the manifest; a registry that keeps
    refusing gets 4 tries, then one line."""
    image = os.path.join(FIXTURES, "lz4hc.erofs")
    ref = faultproxy.ref("resume/blobunknown", "v1")
    faultproxy.add("status", path=r"/manifests/v1", method="PUT", code=400, body=BLOB_UNKNOWN)
    manifest, _, _ = push_ok(image, ref)
    puts = faultproxy.count(method="PUT", path=r"/manifests/v1")
    assert puts == 2, faultproxy.seen()
    _, body = registry.client.get_manifest("resume/blobunknown", "v1")
    assert sha256_digest(body) == manifest

    faultproxy.clear()
    faultproxy.reset_counts()
    faultproxy.add("status", path=r"/manifests/v2", method="PUT", code=400, count=None,
                   body=BLOB_UNKNOWN)
    r = push(image, faultproxy.ref("resume/blobunknown", "v2"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "400" in lines[0] and "MANIFEST_BLOB_UNKNOWN" in lines[0], lines
    assert faultproxy.count(method="PUT", path=r"/manifests/v2") == 4, faultproxy.seen()
