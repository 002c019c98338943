# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""File-aware fetching, the index (issue 10): a mount hands its daemon the blob ranges of
every regular file, found by the metadata walk. For a plain and an lz4hc image of a tree with
many small files and a few big ones, the daemon's status counts exactly the tree's files with
data (hardlinks once, empty files not at all) and one range each (mkfs.erofs writes a file's
blocks or pclusters one after another; `-Enoinline_data` keeps every tail out of the inode
block, so even a tiny file has a block of its own). An index sent by hand that is malformed,
hostile or not sealed is refused with an error reply, and the daemon keeps its index and keeps
serving reads."""

import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess

import pytest

from common import BIN, child_read, pid_alive
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MAGIC = 0x49465A4C
SMALL = 400
BIG = {"big/random1.bin": 6 << 20, "big/text.txt": 8 << 20, "big/random2.bin": 5 << 20}


@pytest.fixture(scope="module")
def tree(workdir):
    """Many small files (1-6 blocks, text or random) in a few directories, three big files,
    a hardlink and empty files."""
    root = os.path.join(workdir, "tree")
    rnd = random.Random(10)
    for i in range(SMALL):
        d = os.path.join(root, f"d{i % 7}")
        os.makedirs(d, exist_ok=True)
        size = rnd.randint(1, 6) * 4096
        data = (rnd.randbytes(size) if i % 2 else
                (f"line {i} of a small text file\n" * (size // 20 + 1)).encode()[:size])
        with open(os.path.join(d, f"f{i:04d}"), "wb") as f:
            f.write(data)
    for name, size in BIG.items():
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            if "text" in name:
                line = b"a big text file, compressible, line after line\n"
                f.write((line * (size // len(line) + 1))[:size])
            else:
                f.write(rnd.randbytes(size))
    os.link(os.path.join(root, "d0", "f0000"), os.path.join(root, "hardlink"))
    for n in ("empty1", "d3/empty2"):
        open(os.path.join(root, n), "wb").close()
    return root


def expected_counts(root):
    """Regular files with data, each inode once (what `find -type f -size +0` lists, less
    the extra names of hardlinked files)."""
    out = subprocess.run(["find", root, "-type", "f", "-size", "+0", "-printf", "%i\\n"],
                         check=True, capture_output=True, text=True).stdout.split()
    return len(set(out)), len(out)


@pytest.fixture(scope="module")
def images(workdir, tree, registry):
    out = {}
    for name, opts in (("plain", []), ("lz4hc", ["-zlz4hc"])):
        path = os.path.join(workdir, f"{name}.erofs")
        subprocess.run(["mkfs.erofs", "-T0", "-Enoinline_data", *opts, path, tree], check=True,
                       capture_output=True, timeout=300)
        registry.client.push_image(f"files/{name}", "v1", [(path, MT_EROFS)])
        out[name] = {"ref": registry.ref(f"files/{name}", "v1"), "path": path,
                     "size": os.path.getsize(path)}
    return out


def crc32c(data, crc=0xFFFFFFFF):
    """As EROFS's superblock checksum: no final inversion."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc


def corrupt_data_map(path, tree, rel):
    """Point the flat file `rel`'s block address (i_u) past the image's end: the metadata
    stays sound (the kernel fails only that file's reads). The inode is the record whose
    i_size (offset 8) is the file's size and whose i_u (offset 16) is the block holding the
    file's first bytes."""
    with open(os.path.join(tree, rel), "rb") as f:
        head = f.read(4096)
    size = os.path.getsize(os.path.join(tree, rel))
    img = bytearray(open(path, "rb").read())
    blk = img.find(head)
    assert blk > 0 and blk % 4096 == 0
    pat = struct.pack("<I", size)
    at = [p for p in range(0, len(img) - 20, 32) if img[p + 8:p + 12] == pat
          and img[p + 16:p + 20] == struct.pack("<I", blk // 4096)]
    assert len(at) == 1, at
    img[at[0] + 16:at[0] + 20] = struct.pack("<I", 0x0FFFFFF0)
    if at[0] < 4096:
        img[1024 + 4:1024 + 8] = b"\0" * 4
        img[1024 + 4:1024 + 8] = struct.pack("<I", crc32c(bytes(img[1024:4096])))
    with open(path, "wb") as f:
        f.write(img)


def daemon_call(sock_path, req, fd=None):
    """One control request (with an fd passed alongside), its reply as a dict."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sock_path)
        data = (json.dumps(req) + "\n").encode()
        if fd is None:
            s.sendall(data)
        else:
            socket.send_fds(s, [data], [fd])
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, f"the daemon closed the connection on {req}"
            buf += chunk
    return json.loads(buf)


def memfd(data, seal=True):
    fd = os.memfd_create("test-index", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seal:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd


def encode(blob, files, magic=MAGIC, version=1):
    """The index format of src/fetch/files.h (no checks: tests make hostile ones too)."""
    b = struct.pack("<IHHQIIQ", magic, version, 32, blob, len(files),
                    sum(len(x) for x in files), 0)
    b += b"".join(struct.pack("<I", len(x)) for x in files)
    b += b"\0" * (-len(b) % 8)
    for x in files:
        for off, length in x:
            b += struct.pack("<QQ", off, length)
    return b


def send_index(sock_path, data, seal=True):
    fd = memfd(data, seal)
    try:
        return daemon_call(sock_path, {"op": "files"}, fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["plain", "lz4hc"])
def test_index_counts_match_tree(lazy, images, tree, name):
    """After a cold mount the daemon holds one index entry per file with data, one range
    each, and the mount reads the same as the tree."""
    im = images[name]
    files, names = expected_counts(tree)
    assert files == SMALL + len(BIG) and names == files + 1  # the hardlink
    mp = lazy.mount(im["ref"])
    st = lazy.status_of(mp)
    assert st["files"] == files, st
    assert st["file_ranges"] == files, st
    for rel in ("d0/f0000", "big/text.txt", "d5/f0012"):
        data = child_read(os.path.join(mp, rel))
        with open(os.path.join(tree, rel), "rb") as f:
            assert hashlib.sha256(data).digest() == hashlib.sha256(f.read()).digest(), rel
    # a second mount of the same blob sends the same index: kept, not parsed again
    mp2 = lazy.mount(im["ref"])
    st2 = lazy.status_of(mp2)
    assert (st2["files"], st2["file_ranges"]) == (files, files)
    assert "replacing" not in lazy.log()
    lazy.umount(mp2)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_index_outlives_a_worker_crash(lazy, images, tree):
    """A worker killed outright is replaced; the replacement parses the index kept in memory
    shared with the holder instead of starting without one (and fetching blind chunks until
    the next mount): the same counts, the same reads."""
    im = images["lz4hc"]
    files, _ = expected_counts(tree)
    lazy.short_replacement_stay()
    mp = lazy.mount(im["ref"])
    before = lazy.status_of(mp)
    assert (before["files"], before["restarts"]) == (files, 0), before
    os.kill(before["worker_pid"], signal.SIGKILL)
    st = lazy.wait_worker_replaced(mp, before["worker_pid"])
    assert (st["files"], st["file_ranges"]) == (files, files), st
    assert f"file index kept from the previous worker: {files} files" in lazy.log()
    for rel in ("d1/f0001", "big/random2.bin", "d6/f0020"):
        with open(os.path.join(tree, rel), "rb") as f:
            assert child_read(os.path.join(mp, rel)) == f.read(), rel
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_corrupt_file_map_still_mounts(lazy, workdir, tree, registry):
    """An image whose metadata is sound but one file's blocks lie past its end mounts as it
    did before the index existed (the kernel fails that file's reads); no index is sent."""
    path = os.path.join(workdir, "corrupt.erofs")
    subprocess.run(["mkfs.erofs", "-T0", "-Enoinline_data", path, tree], check=True,
                   capture_output=True, timeout=300)
    corrupt_data_map(path, tree, "big/random1.bin")
    r = subprocess.run([BIN, "inspect", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    registry.client.push_image("files/corrupt", "v1", [(path, MT_EROFS)])
    mp, r = lazy.mount(registry.ref("files/corrupt", "v1"), extra=["-vv"], check=False)
    lazy.pids.update(lazy.daemon_pids())
    assert r.returncode == 0, r.stderr
    assert "walking without the file index" in r.stderr and "beyond the image" in r.stderr
    st = lazy.status_of(mp)
    assert (st["files"], st["file_ranges"]) == (0, 0), st
    with open(os.path.join(tree, "d1/f0001"), "rb") as f:
        assert child_read(os.path.join(mp, "d1/f0001")) == f.read()
    with pytest.raises(OSError):
        child_read(os.path.join(mp, "big/random1.bin"))
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_hostile_index_refused(lazy, images, tree):
    """Malformed, hostile and unsealed indexes get an error reply; the daemon keeps running
    with the index it had, serves reads, and takes a valid replacement."""
    im = images["plain"]
    files, _ = expected_counts(tree)
    mp = lazy.mount(im["ref"])
    (state,) = lazy.states()
    sock, pid = state["socket"], lazy.status_of(mp)["pid"]
    blob = im["size"]

    bad = {
        "no fd": None,
        "unsealed": ("unsealed", encode(blob, [[(0, 4096)]])),
        "empty": (True, b""),
        "bad magic": (True, encode(blob, [[(0, 4096)]], magic=0x12345678)),
        "version 2": (True, encode(blob, [[(0, 4096)]], version=2)),
        "another blob": (True, encode(blob + 4096, [[(0, 4096)]])),
        "truncated": (True, encode(blob, [[(0, 4096)], [(8192, 4096)]])[:-1]),
        "beyond the blob": (True, encode(blob, [[(blob - 4096, 8192)]])),
        "wrapping": (True, encode(blob, [[(2**64 - 4096, 8192)]])),
        "empty range": (True, encode(blob, [[(0, 0)]])),
        "overlap": (True, encode(blob, [[(0, 8192)], [(4096, 8192)]])),
        "file without ranges": (True, struct.pack("<IHHQIIQ", MAGIC, 1, 32, blob, 1, 0, 0)
                                + b"\0" * 8),
        "huge counts": (True, struct.pack("<IHHQIIQ", MAGIC, 1, 32, blob, 2**32 - 1,
                                          2**32 - 1, 0)),
        "over the size cap": (True, b"\0" * ((8 << 20) + 8)),
    }
    for what, how in bad.items():
        if how is None:
            rep = daemon_call(sock, {"op": "files"})
        else:
            rep = send_index(sock, how[1], seal=how[0] is True)
        assert rep.get("ok") is False and rep.get("error"), (what, rep)
        assert rep.get("errno", 0) > 0, (what, rep)
        assert pid_alive(pid), f"the daemon died on an index that is {what}"
    st = lazy.status_of(mp)
    assert (st["files"], st["file_ranges"]) == (files, files), st
    data = child_read(os.path.join(mp, "big/random2.bin"))
    with open(os.path.join(tree, "big/random2.bin"), "rb") as f:
        assert data == f.read()
    # a valid one replaces it
    rep = send_index(sock, encode(blob, [[(4096, 4096), (0, 4096)], [(blob - 4096, 4096)]]))
    assert rep.get("ok") is True and rep["files"] == 2 and rep["file_ranges"] == 3, rep
    st = lazy.status_of(mp)
    assert (st["files"], st["file_ranges"]) == (2, 3), st
    assert "refused a file index" in lazy.log()
    lazy.umount(mp)
    lazy.assert_nothing_left()
