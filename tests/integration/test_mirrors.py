# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Mirrors (issue "Fits the user's world", point 2): pulls through a mirror first, then the
registry, per request, with two real distribution registries -- the upstream, and a second one
configured as its pull-through cache (`proxy: remoteurl:`) -- and, where a test needs to count
or to lie, the fault proxy in front of them.

The reference always names the upstream through a fault proxy, so that the requests lazyerofs
itself sends to the registry are counted; the pull-through cache talks to the upstream
directly."""

import os
import shutil
import subprocess
import time

import pytest

from common import BIN, assert_one_line_error, child_read, wait_until
from faultproxy import FaultProxy
from lazymount import build_big_image
from registry import MT_EROFS, Registry, RegistryClient, clean_env, closed_port, push

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

REPO = "mirrored/big"


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image(workdir):
    """An 8 MiB image (two random 4 MiB files): (path, tree)."""
    return build_big_image(workdir, files=2, mib=4)


@pytest.fixture(scope="module")
def pushed(registry, image):
    """The image in the module's (upstream) registry only: the push_image dict."""
    return registry.client.push_image(REPO, "v1", [(image[0], MT_EROFS)])


def _registry(**kw):
    reg = Registry(**kw)
    try:
        reg.start()
    except BaseException:
        reg.cleanup()
        raise
    return reg


@pytest.fixture
def pullthrough(registry):
    """A fresh registry configured as a pull-through cache of the upstream (empty storage:
    it answers a blob it has not cached yet with 200 and the whole blob, Range or not)."""
    reg = _registry(proxy={"remoteurl": registry.url})
    try:
        yield reg
    finally:
        reg.cleanup()


@pytest.fixture
def empty_registry():
    """A plain second registry without the image: a mirror that answers 404."""
    reg = _registry()
    try:
        yield reg
    finally:
        reg.cleanup()


@pytest.fixture
def upstream(registry):
    """The upstream as lazyerofs sees it: a fault proxy in front of the module's registry,
    counting what reaches the registry itself."""
    p = FaultProxy("127.0.0.1", registry.port).start()
    try:
        yield p
    finally:
        p.stop()


def check_reads(mp, tree):
    """Every data file of the mount reads back as the tree's."""
    for rel in ("etc/motd", "data/r0.bin", "data/r1.bin"):
        with open(os.path.join(tree, rel), "rb") as f:
            want = f.read()
        assert child_read(os.path.join(mp, rel)) == want, rel


def assert_integrity(st, want):
    """The mount's integrity is `want`, or "verified" once the whole blob was read and checked
    against its digest (reading every file of a small image can complete the entry, and the
    check can end before the status is asked for, or after) -- unless that digest is only
    the mirror's word: "mirror" stays."""
    verified = st["state"] == "verified" and want != "mirror"
    assert st["integrity"] == ("verified" if verified else want), st


def blob_gets(proxy, digest):
    return proxy.count(method="GET", path="/blobs/" + digest)


# --- -o mirror= ------------------------------------------------------------------------------

def test_mount_through_pull_through_cache(lazy, image, pushed, upstream, pullthrough):
    layer = pushed["layers"][0]["digest"]
    mp = lazy.mount(upstream.ref(REPO, "v1"), opts=f"insecure,mirror=http://{pullthrough.host}")
    check_reads(mp, image[1])
    # The registry named the tag's digest (a HEAD); the manifest and every byte came from the
    # mirror, which answered the first ranges of a blob it had not cached with 200 and the
    # whole blob. (The startup-profile lookup, which resolves, asks the registry.)
    assert upstream.count(method="HEAD", path="/manifests/v1") == 1, upstream.seen()
    assert upstream.count(method="GET", path="/manifests/(v1|sha256:)") == 0, upstream.seen()
    assert upstream.count(path="/blobs/") == 0, upstream.seen()
    assert "/blobs/" + layer in pullthrough.log_tail(10 ** 7)
    # The mirror keeps what it passed on.
    assert wait_until(lambda: pullthrough.has_blob(layer), 30)
    assert_integrity(lazy.status_of(mp), "insecure")  # a plain-HTTP mirror (and registry)


def test_a_trickling_mirror_passes_reads_on(lazy, image, pushed, upstream, registry):
    """A mirror that answers, but at 4 KiB/s (above libcurl's low-speed limit, far below what
    a read needs), has half of each read's time: then what it has not sent passes on to the
    registry, and the mount and its reads work (they failed at their deadline, the registry
    never asked)."""
    mirror = FaultProxy("127.0.0.1", registry.port).start()
    try:
        mirror.add("slow", path="/blobs/", count=None, rate=4096, piece=1024)
        mp = lazy.mount(upstream.ref(REPO, "v1"),
                        opts=f"insecure,timeout=4,mirror=http://{mirror.host}")
        check_reads(mp, image[1])
        assert upstream.count(path="/blobs/") > 0, upstream.seen()
    finally:
        mirror.stop()


def test_a_slow_mirror_of_an_unreachable_registry_keeps_serving(lazy, image, pushed,
                                                               registry):
    """The registry cannot be reached (an air-gapped node), the mirror is slow: a request
    passed on from it at half of its time comes back to it when the registry fails, and the
    mirror is not rested for being slow, so a read meanwhile still goes to it (it was rested
    for 30 s and every read failed)."""
    mirror = FaultProxy("127.0.0.1", registry.port).start()
    try:
        with closed_port() as dead:
            ref = f"127.0.0.1:{dead}/{REPO}@{pushed['digest']}"
            mp = lazy.mount(ref, opts=f"insecure,timeout=10,mirror=http://{mirror.host}")
            mirror.add("slow", path="/blobs/", count=None, rate=64 * 1024, piece=4096)
            t0 = time.monotonic()
            with open(os.path.join(image[1], "data/r0.bin"), "rb") as f:
                want0 = f.read()
            # (its start came with the mount's first request; what follows, at that rate,
            # takes a minute: the request is cut at 5 s)
            at = 512 * 1024
            assert child_read(mp + "/data/r0.bin", at, 4096, timeout=30) == \
                want0[at:at + 4096]
            time.sleep(max(0.0, 6.5 - (time.monotonic() - t0)))
            mirror.clear()
            with open(os.path.join(image[1], "data/r1.bin"), "rb") as f:
                want1 = f.read()
            t1 = time.monotonic()
            assert child_read(mp + "/data/r1.bin", 3 << 20, 4096, timeout=30) == \
                want1[3 << 20:(3 << 20) + 4096]
            assert time.monotonic() - t1 < 3
            lazy.umount(mp)
    finally:
        mirror.stop()


def test_dead_mirrors_fall_back(lazy, image, pushed, upstream, registry):
    """A stopped mirror and a closed port: every request passes on to the registry, and
    the dead hosts are not asked for each range again."""
    stopped = _registry(proxy={"remoteurl": registry.url})
    stopped.stop()
    try:
        with closed_port() as port:
            t0 = time.monotonic()
            mp = lazy.mount(upstream.ref(REPO, "v1"),
                            opts=f"insecure,mirror=http://{stopped.host},"
                                 f"mirror=http://127.0.0.1:{port}/cache")
            check_reads(mp, image[1])
            assert time.monotonic() - t0 < 30
    finally:
        stopped.cleanup()
    layer = pushed["layers"][0]["digest"]
    assert upstream.count(method="GET", path="/manifests/") >= 1
    assert blob_gets(upstream, layer) >= 1


def test_404_mirror_falls_back(lazy, image, pushed, upstream, empty_registry):
    mp = lazy.mount(upstream.ref(REPO, digest=pushed["digest"]),
                    opts=f"insecure,mirror=http://{empty_registry.host}")
    check_reads(mp, image[1])
    log = empty_registry.log_tail(10 ** 7)
    assert f"/v2/{REPO}/manifests/{pushed['digest']}" in log
    assert upstream.count(method="GET", path="/manifests/" + pushed["digest"]) == 1
    assert blob_gets(upstream, pushed["layers"][0]["digest"]) >= 1


def test_mirror_with_other_manifest_is_refused(lazy, image, pushed, upstream, registry):
    """A mirror whose manifest for a digest-pinned reference has other bytes is not believed:
    the manifest comes from the registry; the blob, content-addressed, still from the
    mirror."""
    liar = FaultProxy("127.0.0.1", registry.port).start()
    try:
        liar.add("corrupt", path="/manifests/", count=None, offsets=[0, 1])
        mp = lazy.mount(upstream.ref(REPO, digest=pushed["digest"]),
                        opts=f"insecure,mirror=http://{liar.host}")
        check_reads(mp, image[1])
        assert liar.count(method="GET", path="/manifests/" + pushed["digest"]) == 1
        assert upstream.count(method="GET", path="/manifests/" + pushed["digest"]) == 1
        layer = pushed["layers"][0]["digest"]
        assert blob_gets(liar, layer) >= 1
        assert blob_gets(upstream, layer) == 0
    finally:
        liar.stop()


def test_tag_resolved_by_mirror_when_registry_is_down(lazy, image, private_registry):
    """The registry cannot confirm the tag: the mirror's answer is used, and status says the
    image is the mirror's word."""
    private_registry.client.push_image(REPO, "v1", [(image[0], MT_EROFS)])
    cache = _registry(proxy={"remoteurl": private_registry.url})
    try:
        ref = private_registry.ref(REPO, "v1")
        opts = f"insecure,mirror=http://{cache.host}"
        mp = lazy.mount(ref, opts=opts)
        check_reads(mp, image[1])
        # everything was read: verified against the digest the registry named
        assert lazy.status_of(mp)["integrity"] in ("insecure", "verified")
        lazy.umount(mp)
        # Some other client (containerd, say) pulled the tag through the mirror, which keeps
        # it; lazyerofs asked the mirror by digest only.
        RegistryClient(cache.url).get_manifest(REPO, "v1")
        private_registry.stop()
        mp = lazy.mount(ref, opts=opts)
        check_reads(mp, image[1])
        # the mirror is plain HTTP: that comes first (it said "mirror")
        assert_integrity(lazy.status_of(mp), "insecure")
    finally:
        cache.cleanup()


def test_bad_mirror_value_is_a_usage_error(lazy, upstream):
    mp = lazy.mountpoint()
    for bad in ("mirror=ftp://m1", "mirror=", "mirror=m1:99999", "mirror=https://u:p@m1"):
        r = lazy.run(["mount", "-o", f"insecure,{bad}", upstream.ref(REPO, "v1"), mp])
        assert_one_line_error(r, 1)
        assert "mirror" in r.stderr, r.stderr
    assert upstream.count() == 0


def test_push_refuses_mirrors(workdir, image, upstream):
    r = push(image[0], upstream.ref(REPO, "pushed"), opts="insecure,mirror=m1")
    assert_one_line_error(r, 1)
    assert "pulling" in r.stderr, r.stderr
    assert upstream.count() == 0


def test_plain_http_mirror_never_serves_a_tls_mount(lazy, image, tls_registry, pki):
    """Bytes that may come over plain HTTP (an http:// mirror) fill an entry of their own,
    which a mount that asked for TLS never uses; a TLS mirror's bytes are as good as the
    registry's (the same entry). The registry's credentials never go to a mirror."""
    tls_registry.client.push_image(REPO, "v1", [(image[0], MT_EROFS)])
    auth = {"remoteurl": tls_registry.url, "username": tls_registry.username,
            "password": tls_registry.password}
    env = {"SSL_CERT_FILE": pki.ca}
    plain = _registry(proxy=auth, env=env)
    tls = None
    try:
        tls = _registry(proxy=auth, env=env, tls=(pki.cert, pki.key))
        login = (f"ca={tls_registry.ca},username={tls_registry.username},"
                 f"password-file={tls_registry.password_file}")
        ref = tls_registry.ref(REPO, "v1")
        a = lazy.mount(ref, opts=f"{login},mirror=http://{plain.host}")
        assert child_read(os.path.join(a, "etc/motd")).startswith(b"hello")
        b = lazy.mount(ref, opts=f"{login},mirror=https://{tls.host}")
        c = lazy.mount(ref, opts=login)
        sa, sb, sc = (lazy.status_of(m) for m in (a, b, c))
        assert sa["integrity"] == "insecure", sa
        assert sb["integrity"] == "tls" and sc["integrity"] == "tls", (sb, sc)
        assert sa["cache"] != sb["cache"] and sb["cache"] == sc["cache"], (sa, sb, sc)
        for m in (c, a):
            check_reads(m, image[1])
        assert "/blobs/" in plain.log_tail(10 ** 7) and "/blobs/" in tls.log_tail(10 ** 7)
    finally:
        plain.cleanup()
        if tls:
            tls.cleanup()


# --- the configuration file --------------------------------------------------------------------

def test_config_file_mirrors_after_option_mirrors(lazy, image, pushed, upstream, pullthrough,
                                                  empty_registry):
    """-o mirrors first, then the file's: the 404ing one from -o is asked first, then the
    pull-through cache from the file serves; the registry sends no bytes."""
    lazy.write_config(f"""# mirrors for the test's registry
[registry."{upstream.host}"]
mirrors = [
  "http://{pullthrough.host}",   # the pull-through cache
]
[registry."docker.io"]
mirrors = ["https://mirror.gcr.io"]
""")
    mp = lazy.mount(upstream.ref(REPO, "v1"), opts=f"insecure,mirror=http://{empty_registry.host}")
    check_reads(mp, image[1])
    layer = pushed["layers"][0]["digest"]
    assert f"/v2/{REPO}/manifests/{pushed['digest']}" in empty_registry.log_tail(10 ** 7)
    assert "/blobs/" + layer in pullthrough.log_tail(10 ** 7)
    assert upstream.count(path="/blobs/") == 0, upstream.seen()


def test_config_file_proxy(lazy, image, pushed, registry):
    """Mounts from fstab at boot have no environment: the file's proxy carries every request
    of the mount and of its daemon."""
    from connectproxy import ConnectProxy

    proxy = ConnectProxy().start()
    try:
        lazy.write_config(f'proxy = "{proxy.url}"\n')
        mp = lazy.mount(registry.ref(REPO, "v1"), opts="insecure")
        check_reads(mp, image[1])
        assert proxy.count("HEAD", f"{registry.host}/v2/{REPO}/manifests/v1") == 0
        assert proxy.count("GET", f"http://{registry.host}/v2/{REPO}/manifests/v1") == 1
        assert proxy.count("GET", f"http://{registry.host}/v2/{REPO}/blobs/") >= 1
    finally:
        proxy.stop()


def test_config_file_proxy_tunnels_tls(lazy, image, tls_registry):
    """https:// goes through the proxy's CONNECT tunnel; no-proxy names hosts reached
    directly."""
    from connectproxy import ConnectProxy

    tls_registry.client.push_image(REPO, "tunnel", [(image[0], MT_EROFS)])
    login = (f"ca={tls_registry.ca},username={tls_registry.username},"
             f"password-file={tls_registry.password_file}")
    proxy = ConnectProxy().start()
    try:
        lazy.write_config(f'proxy = "{proxy.url}"\n')
        mp = lazy.mount(tls_registry.ref(REPO, "tunnel"), opts=login)
        check_reads(mp, image[1])
        assert proxy.count("CONNECT", tls_registry.host) >= 1, proxy.seen
        assert all(m == "CONNECT" for m, _ in proxy.seen), proxy.seen
        lazy.umount(mp)
        n = len(proxy.seen)
        lazy.write_config(f'proxy = "{proxy.url}"\nno-proxy = "127.0.0.1"\n')
        mp = lazy.mount(tls_registry.ref(REPO, "tunnel"), opts=login)
        assert len(proxy.seen) == n
    finally:
        proxy.stop()


@pytest.mark.parametrize("text,line,why", [
    ('[registry."{host}"]\nmirrors = ["http://m1"\n', 3, "closing ']'"),
    ('\n[registry."{host}"]\nmirrors = ["ftp://m1"]\n', 3, "scheme"),
    ('[registry."quay.io"]\nmirrors = ["https://"]\n', 2, "host name"),
    ('proxy = 3128\n', 1, "'proxy' must be a string"),
    ('cache-max = "lots"\n', 1, "'cache-max' must be a size"),
    ('mirrors = m1\n', 1, "needs quotes"),
])
def test_bad_config_file(lazy, upstream, text, line, why):
    lazy.write_config(text.replace("{host}", upstream.host))
    mount_refused_by(lazy, upstream, lazy.config, line, why)


def mount_refused_by(lazy, upstream, path, line, why):
    """A broken file: one line naming it and the line, exit 32, nothing asked of the
    registry."""
    mp = lazy.mountpoint()
    r = lazy.run(["mount", "-o", "insecure", upstream.ref(REPO, "v1"), mp])
    assert_one_line_error(r, 32)
    assert f"{path}: line {line}: " in r.stderr and why in r.stderr, r.stderr
    assert upstream.count() == 0


# --- containerd's hosts.toml -------------------------------------------------------------------

def write_hosts(lazy, namespace, text):
    d = os.path.join(lazy.certs_d, namespace)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write(text)


def namespace_of(host):
    """containerd's first directory name for host:port."""
    h, _, port = host.rpartition(":")
    return f"{h}_{port}_"


def test_precedence_option_config_hosts_toml(lazy, image, pushed, upstream, pullthrough,
                                             empty_registry):
    """-o mirrors, then the configuration file's, then hosts.toml's, then the registry: the
    404ing one (-o) and the dead one (file) pass every request on to the pull-through cache
    (hosts.toml), which serves it. The tag itself goes to hosts.toml's resolving host first
    (as containerd asks it), not to the registry."""
    with closed_port() as dead:
        lazy.write_config(f'[registry."{upstream.host}"]\nmirrors = ["http://127.0.0.1:{dead}"]\n')
        write_hosts(lazy, namespace_of(upstream.host), f"""server = "http://{upstream.host}"
[host."http://{pullthrough.host}"]
  capabilities = ["pull", "resolve"]
""")
        mp = lazy.mount(upstream.ref(REPO, "v1"), opts=f"insecure,mirror=http://{empty_registry.host}")
        check_reads(mp, image[1])
    layer = pushed["layers"][0]["digest"]
    assert f"/v2/{REPO}/blobs/{layer}?ns={upstream.host}" in empty_registry.log_tail(10 ** 7)
    assert f"/v2/{REPO}/manifests/v1?ns={upstream.host}" in pullthrough.log_tail(10 ** 7)
    assert "/blobs/" + layer in pullthrough.log_tail(10 ** 7)
    assert upstream.count(path="/blobs/") == 0, upstream.seen()
    assert upstream.count(path="/manifests/v1") == 0, upstream.seen()


def test_hosts_toml_server_is_plain_http(lazy, image, pushed, upstream):
    """containerd's way to name a plain-HTTP registry: `server = "http://..."` (no -o
    insecure); its bytes are insecure."""
    write_hosts(lazy, namespace_of(upstream.host), f'server = "http://{upstream.host}"\n')
    mp = lazy.mount(upstream.ref(REPO, "v1"), opts=None)
    check_reads(mp, image[1])
    assert_integrity(lazy.status_of(mp), "insecure")


def test_hosts_toml_capabilities(lazy, image, private_registry):
    """A host with "pull" only is never asked to resolve a tag: with the registry down, the
    tag cannot be resolved; with "resolve" too it can (and status says the image is the
    mirror's word)."""
    im = private_registry.client.push_image(REPO, "v1", [(image[0], MT_EROFS)])
    cache = _registry(proxy={"remoteurl": private_registry.url})
    try:
        ns = namespace_of(private_registry.host)
        ref = private_registry.ref(REPO, "v1")
        # Other clients pulled the image through the mirror: it has the tag and the blob.
        mc = RegistryClient(cache.url)
        mc.get_manifest(REPO, "v1")
        layer = im["layers"][0]["digest"]
        mc.get(f"/v2/{REPO}/blobs/{layer}")
        assert wait_until(lambda: cache.has_blob(layer), 30)
        private_registry.stop()
        write_hosts(lazy, ns, f'[host."http://{cache.host}"]\ncapabilities = ["pull"]\n')
        mp = lazy.mountpoint()
        r = lazy.run(["mount", "-o", "insecure", ref, mp])
        assert_one_line_error(r, 32)
        assert f"{private_registry.host}/v2/{REPO}/manifests/v1" in r.stderr, r.stderr
        write_hosts(lazy, ns, f'[host."http://{cache.host}"]\n'
                              f'capabilities = ["pull", "resolve"]\n')
        mp = lazy.mount(ref, mp=mp, opts="insecure")
        check_reads(mp, image[1])
        assert_integrity(lazy.status_of(mp), "insecure")
    finally:
        cache.cleanup()


@pytest.fixture
def mirror(registry):
    """A second way to the module's registry, as a mirror that has the image: a fault proxy
    counting what it is asked."""
    p = FaultProxy("127.0.0.1", registry.port).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.parametrize("fault,option_mirror", [("stall", False), ("404", False),
                                                  ("stall", True)])
def test_hosts_toml_resolve_hosts_come_before_the_registry(lazy, image, pushed, upstream, mirror,
                                                          registry, fault, option_mirror):
    """As containerd reads hosts.toml, a host with pull and resolve is asked for a tag before
    the registry: an air-gapped node whose registry never answers (or refuses the tag, the
    mirror holding the credentials) mounts through the mirror at once -- with an -o mirror=
    too, which still never resolves a tag before the registry would. The registry was asked
    first: the mount waited for it until timeout= and failed, or failed at its 404."""
    if fault == "stall":
        upstream.add("stall", count=None, seconds=60)
    else:
        upstream.add("status", path="/manifests/", count=None, code=404)
    write_hosts(lazy, namespace_of(upstream.host), f'[host."http://{mirror.host}"]\n'
                                                   f'  capabilities = ["pull", "resolve"]\n')
    other = FaultProxy("127.0.0.1", registry.port).start()
    try:
        opts = "insecure,timeout=10" + (f",mirror=http://{other.host}" if option_mirror else "")
        t = time.monotonic()
        mp = lazy.mount(upstream.ref(REPO, "v1"), opts=opts)
        took = time.monotonic() - t
        check_reads(mp, image[1])
        assert other.count(path="/manifests/v1") == 0, other.seen()
    finally:
        other.stop()
    assert took < 5, took
    assert upstream.count(path="/manifests/v1") == 0, upstream.seen()
    assert mirror.count(method="GET", path="/manifests/v1") == 1, mirror.seen()
    assert_integrity(lazy.status_of(mp), "insecure")  # plain HTTP first; else "mirror"


def test_hosts_toml_capabilities_as_containerd_reads_them(lazy, image, pushed, upstream,
                                                          mirror):
    """`capabilities = []` is every capability (containerd's reading; the host was skipped),
    and a host without pull is never asked for a tag (containerd needs pull and resolve)."""
    ns = namespace_of(upstream.host)
    write_hosts(lazy, ns, f'[host."http://{mirror.host}"]\n  capabilities = []\n')
    mp = lazy.mount(upstream.ref(REPO, "v1"), opts="insecure")
    check_reads(mp, image[1])
    assert mirror.count(method="GET", path="/manifests/v1") == 1, mirror.seen()
    assert upstream.count(path="/manifests/v1") == 0, upstream.seen()
    lazy.umount(mp)
    assert lazy.run(["gc", "--max-size", "0"]).returncode == 0
    mirror.reset_counts()
    upstream.reset_counts()
    write_hosts(lazy, ns, f'[host."http://{mirror.host}"]\n  capabilities = ["resolve"]\n')
    mp = lazy.mount(upstream.ref(REPO, "v1"), opts="insecure")
    check_reads(mp, image[1])
    assert mirror.count(path="/manifests/v1") == 0, mirror.seen()
    assert upstream.count(path="/manifests/v1") == 1, upstream.seen()


def test_a_stalled_mirror_leaves_the_registry_time(lazy, image, pushed, upstream, mirror):
    """A mirror that takes the connection and never answers gets half of what is left of
    timeout=, then the registry answers: the mount of a digest succeeds. It had all of it,
    and the mount failed at timeout= with the registry never asked. (The daemon learns of
    the stall from the mount: its first read does not wait for the mirror again, as it did.)"""
    mirror.add("stall", count=None, seconds=60)
    write_hosts(lazy, namespace_of(upstream.host), f'[host."http://{mirror.host}"]\n'
                                                   f'  capabilities = ["pull"]\n')
    t = time.monotonic()
    mp = lazy.mount(upstream.ref(REPO, digest=pushed["digest"]), opts="insecure,timeout=10",
                    timeout=60)
    check_reads(mp, image[1])
    assert time.monotonic() - t < 8.5  # 5 s for the mirror once, not twice
    assert upstream.count(method="GET", path="/manifests/sha256:") == 1, upstream.seen()


def test_hosts_toml_server_other_than_the_registry_is_told_its_namespace(lazy, image, pushed,
                                                                         mirror):
    """A `server` that is not the registry itself (a _default pointing at a pull-through
    cache) is asked with ?ns=REGISTRY, as containerd asks every such host."""
    write_hosts(lazy, "_default", f'server = "http://{mirror.host}"\n')
    ref = f"registry.example.invalid:5000/{REPO}:v1"
    mp = lazy.mount(ref, opts=None)
    check_reads(mp, image[1])
    paths = [r.path for r in mirror.seen()]
    assert paths and all("ns=registry.example.invalid:5000" in p for p in paths), \
        [p for p in paths if "ns=" not in p]


def test_hosts_toml_ca(lazy, image, pushed, upstream, registry, pki):
    """A TLS mirror whose CA only hosts.toml names (relative to the file; a [header] table
    beside it): used; without the CA it fails verification and every request passes on."""
    tls = _registry(proxy={"remoteurl": registry.url}, tls=(pki.cert, pki.key))
    try:
        ns = namespace_of(upstream.host)
        write_hosts(lazy, ns, f'[host."https://{tls.host}"]\n')
        mp = lazy.mount(upstream.ref(REPO, "v1"), opts="insecure")
        check_reads(mp, image[1])
        assert "/blobs/" not in tls.log_tail(10 ** 7)
        assert upstream.count(path="/blobs/") >= 1
        lazy.umount(mp)
        # Those reads may have completed the entry, and a complete entry answers a digest
        # offline: empty the cache so the next mount asks a registry.
        lazy.assert_nothing_left()
        lazy.run(["gc", "--max-size", "0"])
        shutil.copy(pki.ca, os.path.join(lazy.certs_d, ns, "mirror-ca.pem"))
        write_hosts(lazy, ns, f"""[host."https://{tls.host}"]
  ca = "mirror-ca.pem"
  [host."https://{tls.host}".header]
    x-lazyerofs-test = "1"
""")
        upstream.reset_counts()
        # (by digest: the manifest comes from a mirror, not the tag's HEAD from the registry)
        mp = lazy.mount(upstream.ref(REPO, "v1", pushed["digest"]), opts="insecure")
        check_reads(mp, image[1])
        assert f"/v2/{REPO}/manifests/{pushed['digest']}" in tls.log_tail(10 ** 7)
        # (the startup profile's lookup may still ask the upstream for its fallback tag)
        assert upstream.count(path="/manifests/" + pushed["digest"]) == 0
    finally:
        tls.cleanup()


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def client_pki(workdir):
    """A client CA with a client certificate it signed ("client.cert", "client.key"), and a
    self-signed certificate it did not ("stranger.cert", "stranger.key"), under one dir."""
    d = os.path.join(workdir, "client-pki")
    os.makedirs(d, exist_ok=True)
    p = lambda name: os.path.join(d, name)  # noqa: E731
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=lazyerofs test client CA", "-keyout", p("client-ca.key"),
             "-out", p("client-ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=lazyerofs node",
             "-keyout", p("client.key"), "-out", p("client.csr"))
    with open(p("client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", p("client.csr"), "-CA", p("client-ca.pem"),
             "-CAkey", p("client-ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", p("client.ext"), "-out", p("client.cert"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=stranger", "-keyout", p("stranger.key"), "-out", p("stranger.cert"))
    return d


@pytest.fixture(scope="module")
def mtls_registry(image, pki, client_pki):
    """A TLS registry (the `pki` CA's certificate) that wants a client certificate signed by
    the client CA (distribution's http.tls.clientcas), holding the image."""
    c = lambda name: os.path.join(client_pki, name)  # noqa: E731
    reg = _registry(tls=(pki.cert, pki.key),
                    client_tls=(c("client-ca.pem"), c("client.cert"), c("client.key")))
    try:
        ctx = pki.context()
        ctx.load_cert_chain(c("client.cert"), c("client.key"))
        reg.client = RegistryClient(reg.url, context=ctx)
        reg.pushed = reg.client.push_image(REPO, "v1", [(image[0], MT_EROFS)])
        yield reg
    finally:
        reg.cleanup()


# the server's CA and every client file, under their own names
ALL_CLIENT_FILES = {"ca.pem": "ca", "client.cert": "client.cert", "client.key": "client.key",
                    "stranger.cert": "stranger.cert", "stranger.key": "stranger.key"}


def put_files(lazy, ns, client_pki, pki, names):
    """Copy files into the host directory: {name there: name in client_pki, or "ca"}."""
    d = os.path.join(lazy.certs_d, ns)
    os.makedirs(d, exist_ok=True)
    for dst, src in names.items():
        shutil.copy(pki.ca if src == "ca" else os.path.join(client_pki, src),
                    os.path.join(d, dst))


def forget_image(lazy, mp):
    """Unmount and empty the cache, so that the next mount reads from the registry again."""
    lazy.umount(mp)
    lazy.assert_nothing_left()
    lazy.run(["gc", "--max-size", "0"])


def test_hosts_toml_client_certificate(lazy, image, mtls_registry, pki, client_pki):
    """A registry that wants a client certificate: without one, or with one its CA did not
    sign, the mount fails with one line saying so (and leaves no daemon); hosts.toml's
    `client` (paths relative to the file) lets it through, as its [cert, key] pair form and
    as one file holding both."""
    ns = namespace_of(mtls_registry.host)
    ref = mtls_registry.ref(REPO, "v1")
    put_files(lazy, ns, client_pki, pki, ALL_CLIENT_FILES)
    for client in ("", 'client = [["stranger.cert", "stranger.key"]]\n'):
        write_hosts(lazy, ns, 'ca = "ca.pem"\n' + client)
        mp = lazy.mountpoint()
        r = lazy.run(["mount", ref, mp], timeout=120)
        assert_one_line_error(r, 32)
        assert "the server wants a client certificate it trusts" in r.stderr, r.stderr
        assert "hosts.toml's client" in r.stderr, r.stderr
        lazy.assert_nothing_left()

    write_hosts(lazy, ns, 'ca = "ca.pem"\nclient = [["client.cert", "client.key"]]\n')
    mp = lazy.mount(ref, opts=None)
    check_reads(mp, image[1])
    assert_integrity(lazy.status_of(mp), "tls")
    forget_image(lazy, mp)

    with open(os.path.join(lazy.certs_d, ns, "both.pem"), "w") as f:
        for name in ("client.key", "client.cert"):
            with open(os.path.join(client_pki, name)) as src:
                f.write(src.read())
    write_hosts(lazy, ns, 'ca = "ca.pem"\nclient = "both.pem"\n')
    mp = lazy.mount(ref, opts=None)
    check_reads(mp, image[1])
    forget_image(lazy, mp)


def test_hosts_toml_several_client_certificates(lazy, image, mtls_registry, pki, client_pki):
    """Several client certificates for one host (a node enrolled with two CAs): a handshake
    presents the first one the server accepts (its list of acceptable CAs names the issuer),
    as containerd does, not just the first configured; none it accepts: one line."""
    ns = namespace_of(mtls_registry.host)
    ref = mtls_registry.ref(REPO, "v1")
    put_files(lazy, ns, client_pki, pki, ALL_CLIENT_FILES)
    write_hosts(lazy, ns, 'ca = "ca.pem"\nclient = [["stranger.cert", "stranger.key"],\n'
                          '  ["client.cert", "client.key"]]\n')
    mp = lazy.mount(ref, opts=None)
    check_reads(mp, image[1])
    forget_image(lazy, mp)

    write_hosts(lazy, ns, 'ca = "ca.pem"\nclient = [["stranger.cert", "stranger.key"],\n'
                          '  ["stranger.cert", "stranger.key"]]\n')
    r = lazy.run(["mount", ref, lazy.mountpoint()], timeout=120)
    assert_one_line_error(r, 32)
    assert "the server wants a client certificate it trusts" in r.stderr, r.stderr
    lazy.assert_nothing_left()


def test_docker_certs_layout(lazy, image, mtls_registry, pki, client_pki):
    """A host directory without hosts.toml: NAME.crt is a CA, NAME.cert with NAME.key a client
    certificate (Docker's layout, which containerd reads then): the mount goes through. A
    .key of another certificate: one line naming both files, nothing mounted."""
    ns = namespace_of(mtls_registry.host)
    put_files(lazy, ns, client_pki, pki, {"ca.crt": "ca", "node.cert": "client.cert",
                                          "node.key": "client.key"})
    mp = lazy.mount(mtls_registry.ref(REPO, "v1"), opts=None)
    check_reads(mp, image[1])
    forget_image(lazy, mp)

    put_files(lazy, ns, client_pki, pki, {"node.key": "stranger.key"})
    d = os.path.join(lazy.certs_d, ns)
    r = lazy.run(["mount", mtls_registry.ref(REPO, "v1"), lazy.mountpoint()])
    assert_one_line_error(r, 32)
    assert (f"client key '{d}/node.key' does not belong to the certificate '{d}/node.cert'"
            in r.stderr), r.stderr
    lazy.assert_nothing_left()


@pytest.mark.parametrize("text,line,why", [
    ('[host."http://m1"]\ncapabilities = ["pull", "fetch"]\n', 2, "unknown capability"),
    ('[host."https://m1"]\nca = "missing.pem"\n', 2, "missing.pem"),
    ('\nclient = [["missing.cert", "missing.key"]]\n', 2,
     "client certificate '{dir}/missing.cert': No such file"),
    ('[host."https://m1"]\nclient = [["a.cert"]]\n', 2, "[\"cert\", \"key\"]"),
    ('client = 5\n', 1, "'client' must be a path"),
    ('server = "ftp://x"\n', 1, "scheme"),
    ('[host."https://m1"\n', 1, "expected ']'"),
])
def test_bad_hosts_toml(lazy, upstream, text, line, why):
    write_hosts(lazy, namespace_of(upstream.host), text)
    why = why.replace("{dir}", os.path.join(lazy.certs_d, namespace_of(upstream.host)))
    mount_refused_by(lazy, upstream,
                     os.path.join(lazy.certs_d, namespace_of(upstream.host), "hosts.toml"),
                     line, why)
