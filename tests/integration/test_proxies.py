# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Proxies as README's "Precedence" orders them: a host's own proxy (hosts.toml) over every
no-proxy list, the configuration file's proxy over the environment's no_proxy; `push` goes
through the configuration file's proxy as pulls do; a proxy's password never shows."""

import os
import socket
import threading

import pytest

from connectproxy import ConnectProxy, read_head
from lazymount import build_big_image
from registry import MT_EROFS, closed_port, push

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

REPO = "proxies/img"


@pytest.fixture(scope="module")
def image(workdir):
    return build_big_image(workdir, files=1, mib=4)


@pytest.fixture(scope="module")
def pushed(registry, image):
    return registry.client.push_image(REPO, "v1", [(image[0], MT_EROFS)])


@pytest.fixture
def proxy():
    p = ConnectProxy().start()
    yield p
    p.stop()


def fetch(lazy, ref, env=None):
    return lazy.run(["fetch", "-o", "insecure,timeout=5", ref], env=dict(lazy.env, **(env or {})),
                    timeout=120)


def blob_gets(p):
    return p.count("GET", "/blobs/sha256:")


def write_hosts(lazy, registry, text):
    h, _, port = registry.host.rpartition(":")
    d = os.path.join(lazy.certs_d, f"{h}_{port}_")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write(text)


@pytest.mark.parametrize("bypass", ["config", "env"])
def test_a_hosts_own_proxy_is_never_passed_by(lazy, pushed, registry, proxy, bypass):
    """(a no-proxy list, the file's or the environment's, sent it direct)"""
    write_hosts(lazy, registry, f'server = "http://{registry.host}"\nproxy = "{proxy.url}"\n')
    env = {}
    if bypass == "config":
        lazy.write_config('no-proxy = "127.0.0.1"\n')
    else:
        env = {"no_proxy": "*"}
    r = fetch(lazy, registry.ref(REPO, "v1"), env=env)
    assert r.returncode == 0, r.stderr
    assert blob_gets(proxy) >= 1, proxy.seen


def test_the_files_proxy_beats_the_environments_no_proxy(lazy, pushed, registry, proxy):
    lazy.write_config(f'proxy = "{proxy.url}"\n')
    r = fetch(lazy, registry.ref(REPO, "v1"), env={"no_proxy": "127.0.0.1"})
    assert r.returncode == 0, r.stderr
    assert blob_gets(proxy) >= 1, proxy.seen
    # its own no-proxy list does pass it by
    lazy.write_config(f'proxy = "{proxy.url}"\nno-proxy = "127.0.0.1"\n')
    before = blob_gets(proxy)
    lazy.run(["gc", "--max-size", "0"])
    r = fetch(lazy, registry.ref(REPO, "v1"))
    assert r.returncode == 0, r.stderr
    assert blob_gets(proxy) == before


def test_push_goes_through_the_files_proxy(lazy, image, registry, proxy):
    """(push read only its -o options: a site whose registry is behind the proxy could not
    push, and one that requires the proxy was passed by)"""
    lazy.write_config(f'proxy = "{proxy.url}"\n')
    r = push(image[0], registry.ref("proxies/pushed", "v1"),
             env={"LAZYEROFS_CONFIG": lazy.config, "LAZYEROFS_CACHE_DIR": lazy.cache})
    assert r.returncode == 0, r.stderr
    assert proxy.count("PUT", "/manifests/") >= 1, proxy.seen


def test_a_mount_with_other_registry_settings_does_not_join_silently(lazy, pushed, registry,
                                                                     proxy):
    """The configuration names another proxy since the image's first mount: a second mount
    would have its reads go the first one's way (they did, silently); it is refused in one
    line, and joins with the same settings."""
    lazy.write_config(f'proxy = "{proxy.url}"\n')
    first = lazy.mount(registry.ref(REPO, "v1"))
    lazy.write_config("")
    mp, r = lazy.mount(registry.ref(REPO, "v1"), check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 32 and len(lines) == 1 and "other settings" in lines[0], r.stderr
    r = fetch(lazy, registry.ref(REPO, "v1"))
    assert r.returncode == 2 and "other settings" in r.stderr, r.stderr
    lazy.write_config(f'proxy = "{proxy.url}"\n')
    second = lazy.mount(registry.ref(REPO, "v1"))
    for m in (second, first):
        lazy.umount(m)
    lazy.assert_nothing_left(timeout=30)


class StatusProxy:
    """A proxy that answers every request (CONNECT or absolute-form) with one status."""

    def __init__(self, status, reason):
        self.status, self.reason = status, reason
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                try:
                    read_head(c)  # (whatever it asks: the same answer)
                    body = b"<html>no</html>"
                    auth = b"Proxy-Authenticate: Basic realm=p\r\n" if self.status == 407 else b""
                    c.sendall(b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nConnection: close\r\n"
                              b"\r\n%s" % (self.status, self.reason.encode(), auth, len(body),
                                           body))
                except OSError:
                    pass

    def stop(self):
        try:  # wakes the thread in accept(): a closed socket it waits on stays listening
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.mark.parametrize("status,reason,words", [(407, "Proxy Authentication Required", "login"),
                                                 (502, "Bad Gateway", "could not reach")])
def test_a_proxys_answer_is_named_as_the_proxys(lazy, pushed, registry, status, reason, words):
    """(a 407 read "HTTP 407" of the registry, a 401-like advice even)"""
    p = StatusProxy(status, reason)
    try:
        lazy.write_config(f'proxy = "{p.url}"\n')
        r = fetch(lazy, registry.ref(REPO, "v1"))
    finally:
        p.stop()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "proxy" in lines[0] and p.url in lines[0] and words in lines[0], lines[0]


def test_a_proxy_that_is_down_is_named(lazy, pushed, registry):
    with closed_port() as port:
        lazy.write_config(f'proxy = "http://127.0.0.1:{port}"\n')
        r = fetch(lazy, registry.ref(REPO, "v1"))
    assert r.returncode == 2 and f"proxy http://127.0.0.1:{port}" in r.stderr, r.stderr


def test_a_no_proxy_entry_that_would_never_match_is_refused(lazy, pushed, registry):
    """(an entry with a port, as Go's lists allow, was taken and never matched)"""
    lazy.write_config(f'no-proxy = "{registry.host}"\n')
    r = fetch(lazy, registry.ref(REPO, "v1"))
    assert r.returncode == 2 and f"entry '{registry.host}' would never match" in r.stderr, \
        r.stderr
