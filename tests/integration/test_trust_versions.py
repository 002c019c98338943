# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A package upgrade while daemons run: the control protocol is versioned. A daemon refuses a
client of another version, and a mount that finds a daemon of another version fails with one
clear line instead of talking to it; the old daemon goes on serving its mounts. (A worker is
always a fork of its holder, never a newer binary: journal and shared memory need no version;
the bitmap header's is tested in test_trust_cache.py.)"""

import hashlib
import json
import os
import re
import socket
import threading

from common import child_hashes, child_read, content_hashes, control_call
from lazymount import build_busybox_image
from registry import MT_EROFS


def daemon_socket(lazy, im):
    """Where the daemon of an insecure mount of pushed image im listens (the run directory
    made): the entry of an insecure mount has a key of its own (see test_trust_integrity.py)."""
    key = im["layers"][0]["digest"].split(":", 1)[1]
    key = hashlib.sha256(b"insecure\n" + key.encode()).hexdigest()
    os.makedirs(lazy.run_dir, mode=0o700, exist_ok=True)
    return os.path.join(lazy.run_dir, f"daemon-{key}.sock")


def old_daemon(path, reply, seen):
    """A daemon of another version at socket path: it answers every request line (kept in
    seen) with reply. Returns (its socket, its thread): stop_daemon() ends both."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                seen.append(json.loads(c.makefile().readline()))
                c.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def stop_daemon(srv, t):
    """End old_daemon's (a shutdown wakes its accept(2); a close alone leaves it blocked)."""
    srv.shutdown(socket.SHUT_RDWR)
    srv.close()
    t.join(10)
    assert not t.is_alive()


def test_a_client_of_another_version_is_refused(lazy, registry, tmp_path):
    image, tree = build_busybox_image(str(tmp_path))
    registry.client.push_image("ver/a", "v1", [(image, MT_EROFS)])
    mp = lazy.mount(registry.ref("ver/a", "v1"), opts="insecure")
    sock = lazy.states()[0]["socket"]
    for hello in ({"op": "hello"}, {"op": "hold", "proto": 2}, {"op": "hello", "proto": 99}):
        r = control_call(sock, hello)
        assert not r.get("ok") and "protocol version" in r.get("error", ""), (hello, r)
    r = control_call(sock, {"op": "hello", "proto": 3})
    assert r.get("ok") and r.get("proto") == 3, r
    # It goes on serving.
    assert child_hashes(mp) == content_hashes(tree)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_a_mount_never_talks_to_a_daemon_of_another_version(lazy, registry, tmp_path):
    """A daemon of the previous version holds the entry: it answers without "proto". The
    mount fails with one line naming the cause and the fix, and leaves nothing behind."""
    image, tree = build_busybox_image(str(tmp_path))
    im = registry.client.push_image("ver/b", "v1", [(image, MT_EROFS)])
    path = daemon_socket(lazy, im)
    seen = []
    srv, t = old_daemon(path, b'{"ok":true,"pid":1,"worker_pid":1,"data_path":"/nonexistent",'
                              b'"socket":"/nonexistent","state":"running"}\n', seen)
    try:
        mp, r = lazy.mount(registry.ref("ver/b", "v1"), opts="insecure", check=False)
    finally:
        stop_daemon(srv, t)
    assert r.returncode == 32, r
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "another version of lazyerofs" in lines[0], r.stderr
    assert "unmount" in lines[0]
    assert seen and seen[0].get("proto") == 3, seen
    os.unlink(path)
    lazy.assert_nothing_left()


def test_status_names_a_daemon_of_another_version(lazy, registry, tmp_path):
    """A mount whose daemon speaks another version's protocol (a package upgraded while it
    runs): `status` says so, not that the daemon is gone and reads would get zeros; the
    mount is running (`status --json`, `lazyerofs_daemon_up`), not lost: a monitor that
    unmounts lost mounts must leave it alone."""
    image, tree = build_busybox_image(str(tmp_path))
    registry.client.push_image("ver/c", "v1", [(image, MT_EROFS)])
    mp = lazy.mount(registry.ref("ver/c", "v1"), opts="insecure")
    # The mount's state names the other version's socket (the daemon's own stays: it would
    # bind it again, as it does when the run directory loses it).
    (name,) = lazy.state_files()
    path = os.path.join(lazy.run_dir, name)
    with open(path) as f:
        saved = f.read()
    sock = os.path.join(lazy.run_dir, "old.sock")
    with open(path, "w") as f:
        f.write(json.dumps(dict(json.loads(saved), socket=sock)))
    srv, t = old_daemon(sock, b'{"ok":true,"proto":2,"pid":1,"worker_pid":1,"data_path":"/x",'
                              b'"socket":"/x","state":"running"}\n', [])
    try:
        st = lazy.status()[0]
        text = lazy.run(["status"]).stdout
        prom = lazy.run(["status", "--prometheus"]).stdout
    finally:
        stop_daemon(srv, t)
        os.unlink(sock)
        with open(path, "w") as f:
            f.write(saved)
    assert "another version" in st.get("problem", ""), st
    assert st["state"] == "running", st
    assert "another version" in text and "zeros" not in text and "lost" not in text, text
    up = [l for l in prom.splitlines() if l.startswith("lazyerofs_daemon_up{")]
    assert up and all(l.endswith(" 1") for l in up), prom
    assert child_hashes(mp) == content_hashes(tree)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_a_mount_right_after_the_old_daemons_last_umount_waits_for_it(lazy, registry, tmp_path):
    """The remedy the refusal gives (unmount the image's mounts, then mount again), followed at
    once: the old daemon takes a moment to leave, and the mount waits for that instead of
    failing again."""
    image, tree = build_busybox_image(str(tmp_path))
    im = registry.client.push_image("ver/d", "v1", [(image, MT_EROFS)])
    path = daemon_socket(lazy, im)
    srv, t = old_daemon(path, b'{"ok":false,"errno":71,"error":"protocol version"}\n', [])

    def leave():
        stop_daemon(srv, t)
        if os.path.lexists(path):
            os.unlink(path)
    timer = threading.Timer(1.5, leave)
    timer.start()
    mp = lazy.mount(registry.ref("ver/d", "v1"), opts="insecure")
    timer.join(15)
    assert child_hashes(mp) == content_hashes(tree)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_fetch_refused_by_a_daemon_of_another_version_says_what_the_cache_holds(lazy, registry,
                                                                              tmp_path):
    """`lazyerofs fetch` of an image whose daemon is of another version: one line, exit 2, and
    what the entry holds as its files say (it said 0 B)."""
    image, tree = build_busybox_image(str(tmp_path))
    im = registry.client.push_image("ver/e", "v1", [(image, MT_EROFS)])
    sock = daemon_socket(lazy, im)
    mp = lazy.mount(registry.ref("ver/e", "v1"), opts="insecure")
    with open(os.path.join(tree, "etc", "motd"), "rb") as f:
        assert child_read(mp + "/etc/motd") == f.read()  # some of it, not all
    lazy.umount(mp)
    lazy.assert_nothing_left()
    srv, t = old_daemon(sock, b'{"ok":false,"errno":71,"error":"this daemon speaks control '
                              b'protocol version 2: it was started by another version"}\n', [])
    try:
        r = lazy.run(["fetch", "-o", "insecure", registry.ref("ver/e", "v1")], timeout=60)
    finally:
        stop_daemon(srv, t)
        os.unlink(sock)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "another version" in lines[0] and "protocol 2" in lines[0], lines[0]
    assert not re.search(r"\(0 B of", lines[0]), lines[0]
