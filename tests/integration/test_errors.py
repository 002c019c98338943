# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Errors a person can act on (issue 12, point 7): every failure of every subcommand is one
line on stderr naming the object (reference, host, mountpoint, cache path, file), the cause
(HTTP status and the registry's error code, errno text, the parser's line) and, where it is
obvious, the fix; the exit status is DESIGN.md's (1 usage, 32 other mount/umount failures, 2
other failures); no mount and no daemon stay behind.

One table of cases over a plain registry, a TLS registry with a login, and one lazy
environment (cache and run directories) per case."""

import contextlib
import os
import shutil
import tempfile

import pytest

from common import FIXTURES, assert_one_line_error
from registry import CRED_ENV, MT_EROFS, closed_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

PLAIN = os.path.join(FIXTURES, "plain.erofs")
LZ4 = os.path.join(FIXTURES, "lz4hc.erofs")
ZERO = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def images(registry, tls_registry):
    """What the cases refer to: a one-layer EROFS image, one of two layers, one whose layer is
    a tar, one whose layer is not an EROFS image, and the EROFS image behind a login."""
    junk = os.urandom(100000)
    c = registry.client
    c.push_image("err/plain", "v1", [(PLAIN, MT_EROFS)])
    c.push_image("err/two", "v1", [(PLAIN, MT_EROFS), (LZ4, MT_EROFS)])
    c.push_image("err/tar", "v1", [(b"x" * 1000, "application/vnd.oci.image.layer.v1.tar+gzip")])
    c.push_image("err/junk", "v1", [(junk, MT_EROFS)])
    tls_registry.client.push_image("err/plain", "v1", [(PLAIN, MT_EROFS)])
    d = tempfile.mkdtemp(prefix="lazyerofs-errors-", dir="/var/tmp")
    try:
        with open(os.path.join(d, "junk.bin"), "wb") as f:
            f.write(junk)
        with open(os.path.join(d, "wrong-password"), "w") as f:
            f.write("not-" + tls_registry.password + "\n")
        with open(os.path.join(d, "a-file"), "w") as f:
            f.write("not a directory\n")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Case:
    """Everything a case may name: the registries, files and this test's directories."""

    def __init__(self, lazy, registry, tls, files):
        self.lazy, self.reg, self.tls, self.files = lazy, registry, tls, files
        self.mp = lazy.mountpoint()
        self.plain = registry.ref("err/plain", "v1")
        self.secure = tls.ref("err/plain", "v1")
        self.junk = os.path.join(files, "junk.bin")
        self.afile = os.path.join(files, "a-file")
        self.badpw = os.path.join(files, "wrong-password")
        self.missing = os.path.join(lazy.root, "no-such-thing")
        self.port = None
        self.shm = None

    def login(self, pwfile=None):
        return (f"ca={self.tls.ca},username={self.tls.username},"
                f"password-file={pwfile or self.tls.password_file}")


def mount(*args):
    return lambda c: ["mount", *args[:-2], args[-2](c), args[-1](c)]


def mp(c):
    return c.mp


def ref(repo, tag=None, digest=None, tls=False):
    return lambda c: (c.tls if tls else c.reg).ref(repo, tag, digest)


def opt(s):
    return lambda c: s


def tmpfs_cache(c):
    c.shm = tempfile.mkdtemp(prefix="lzerr", dir="/dev/shm")
    return f"insecure,cache={c.shm}"


def open_cache(c):
    d = os.path.join(c.lazy.root, "open")
    os.makedirs(d, mode=0o755)
    os.chmod(d, 0o755)
    return f"insecure,cache={d}"


def link_cache(c, slash=""):
    real = os.path.join(c.lazy.root, "realcache")
    os.makedirs(real, mode=0o700, exist_ok=True)
    link = os.path.join(c.lazy.root, "linkcache")
    if not os.path.islink(link):
        os.symlink(real, link)
    return link + slash


def bad_config(c):
    c.lazy.write_config('cache-max = "1G"\n[registry\n')
    return "insecure"


def bad_hosts(c):
    d = os.path.join(c.lazy.certs_d, c.reg.host)
    os.makedirs(d)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write(f'server = "http://{c.reg.host}"\n[host."http://{c.reg.host}"\n')
    return "insecure"


# (id, argv builder, exit status, words the line must hold (callables get the Case), words it
#  must not hold, a word the line names exactly once)
CASES = [
    # -- options and references: usage errors
    ("mount-unknown-option", mount("-o", "insecure,bogus", lambda c: c.plain, mp), 1,
     ["'bogus'", "lazyerofs mount --help"], [], None),
    ("mount-bad-layer-value", mount("-o", "insecure,layer=x", lambda c: c.plain, mp), 1,
     ["'layer'", "'x'"], [], None),
    ("mount-ref-syntax", mount("-o", "insecure", opt("BAD REF!"), mp), 1,
     ["invalid reference", "'BAD REF!'", "space"], [], None),
    ("mount-ref-uppercase", mount("-o", "insecure", ref("Err/Plain", "v1"), mp), 1,
     ["'Err/Plain'", "lowercase"], [], None),
    ("mount-missing-password-file",
     mount("-o", None, lambda c: c.secure, mp), 1,
     [lambda c: c.missing, "password-file", "No such file or directory"], [], None),
    ("mount-missing-ca", mount("-o", None, lambda c: c.secure, mp), 1,
     [lambda c: c.missing, "ca=", "No such file or directory"], [], None),
    # (checked up front: they were blamed on the registry's certificate after a request)
    ("mount-ca-directory", mount("-o", "ca=/", lambda c: c.secure, mp), 1,
     ["ca='/'", "Is a directory"], [], None),
    ("mount-ca-not-pem", mount("-o", "ca=/dev/null", lambda c: c.secure, mp), 1,
     ["ca='/dev/null'", "not a PEM certificate file"], [], None),
    ("mount-username-alone",
     mount("-o", lambda c: f"ca={c.tls.ca},username={c.tls.username}", lambda c: c.secure, mp),
     1, ["'username'", "'password-file'"], [], None),
    ("mount-password-file-alone",
     mount("-o", lambda c: f"ca={c.tls.ca},password-file={c.tls.password_file}",
           lambda c: c.secure, mp), 1, ["'password-file'", "'username'"], [], None),
    ("mount-digest-on-registry-source",
     mount("-o", f"insecure,digest={ZERO}", lambda c: c.plain, mp), 1,
     ["'digest'", "URL source", "@sha256:", "blob=sha256:"], [], None),
    ("fetch-digest-on-registry-source",
     lambda c: ["fetch", "-o", f"insecure,digest={ZERO}", c.plain], 1,
     ["'digest'", "URL source"], [], None),
    ("mount-url-bad-port", mount(opt("http://127.0.0.1:99999/i.erofs"), mp), 1,
     ["invalid URL", "'http://127.0.0.1:99999/i.erofs'", "65535"], [], None),
    ("mount-layer-on-url-source",
     mount("-o", "layer=1", lambda c: f"http://127.0.0.1:{c.port}/i.erofs", mp), 1,
     ["'layer'", "URL source"], [], None),
    ("mount-platform-on-url-source",
     mount("-o", "platform=linux/s390x", lambda c: f"http://127.0.0.1:{c.port}/i.erofs", mp), 1,
     ["'platform'", "URL source"], [], None),
    # -- the registry's answers
    ("mount-unknown-tag", mount("-o", "insecure", ref("err/plain", "nosuch"), mp), 32,
     [lambda c: c.reg.host, "err/plain:nosuch", "HTTP 404", "MANIFEST_UNKNOWN"], [],
     "err/plain"),
    ("mount-unknown-repository", mount("-o", "insecure", ref("err/nosuch", "v1"), mp), 32,
     [lambda c: c.reg.host, "err/nosuch:v1", "HTTP 404", "_UNKNOWN"], [], "err/nosuch"),
    ("mount-unknown-digest", mount("-o", "insecure", ref("err/plain", digest=ZERO), mp), 32,
     [lambda c: c.reg.host, ZERO, "HTTP 404", "MANIFEST_UNKNOWN"], [], ZERO),
    ("mount-unknown-host", mount("-o", "insecure", opt("nosuchhost.invalid/err/plain:v1"), mp),
     32, ["nosuchhost.invalid", "resolve"], [], None),
    ("mount-connection-refused", mount("-o", "insecure", lambda c: f"127.0.0.1:{c.port}/err/p:v1",
                                       mp), 32,
     [lambda c: f"127.0.0.1:{c.port}", "Connection refused"], [], None),
    ("mount-tls-to-plain-http", mount("-o", "ro", lambda c: c.plain, mp), 32,
     [lambda c: c.reg.host, "TLS", "-o insecure"], [], None),
    ("mount-plain-http-to-tls", mount("-o", "insecure", lambda c: c.secure, mp), 32,
     [lambda c: c.tls.host, "HTTP 400", "HTTPS", "drop -o insecure"], [], None),
    ("mount-untrusted-certificate", mount("-o", "ro", lambda c: c.secure, mp), 32,
     [lambda c: c.tls.host, "not trusted", "ca=PATH"], [], None),
    ("mount-wrong-ca", mount("-o", lambda c: f"ca={c.tls_other_ca}", lambda c: c.secure, mp), 32,
     [lambda c: c.tls.host, "not trusted", lambda c: c.tls_other_ca], [], None),
    ("mount-401-no-login", mount("-o", lambda c: f"ca={c.tls.ca}", lambda c: c.secure, mp), 32,
     [lambda c: c.tls.host, "HTTP 401", "UNAUTHORIZED", "username=", "password-file="], [],
     None),
    ("mount-401-wrong-password", mount("-o", lambda c: c.login(c.badpw), lambda c: c.secure, mp),
     32, [lambda c: c.tls.host, "HTTP 401", "UNAUTHORIZED", "'alice'", "refused"], [], None),
    # -- what the image is
    ("mount-platform-mismatch",
     mount("-o", "insecure,platform=linux/s390x", lambda c: c.plain, mp), 32,
     [lambda c: c.plain, "linux/amd64", "linux/s390x"], ["resolving"], lambda c: c.plain),
    ("mount-layer-out-of-range", mount("-o", "insecure,layer=5", lambda c: c.plain, mp), 32,
     ["err/plain", "layer=5", "1 layer"], [], "err/plain"),
    ("mount-blob-not-in-image", mount("-o", f"insecure,blob={ZERO}", lambda c: c.plain, mp), 32,
     ["err/plain", ZERO, "not a layer"], [], "err/plain"),
    ("mount-two-layers", mount("-o", "insecure", ref("err/two", "v1"), mp), 32,
     ["err/two", "2 EROFS layers", "layer=N"], [], "err/two"),
    ("mount-tar-layer", mount("-o", "insecure", ref("err/tar", "v1"), mp), 32,
     ["err/tar", "tar", "not an EROFS image"], [], "err/tar"),
    ("mount-not-erofs", mount("-o", "insecure", ref("err/junk", "v1"), mp), 32,
     [lambda c: c.reg.ref("err/junk", "v1"), "not a usable EROFS image", "magic"], [], None),
    # -- the mountpoint, the cache and run directories, configuration files
    ("mount-missing-mountpoint", mount("-o", "insecure", lambda c: c.plain, lambda c: c.missing),
     32, [lambda c: c.missing, "does not exist", "create it"], [], None),
    ("mount-mountpoint-is-a-file", mount("-o", "insecure", lambda c: c.plain, lambda c: c.afile),
     32, [lambda c: c.afile, "not a directory"], [], None),
    ("mount-cache-on-tmpfs", mount("-o", tmpfs_cache, lambda c: c.plain, mp), 32,
     [lambda c: c.shm, "tmpfs", "ext4"], [], None),
    ("mount-cache-not-private", mount("-o", open_cache, lambda c: c.plain, mp), 32,
     [lambda c: os.path.join(c.lazy.root, "open"), "0700"], [], None),
    ("mount-cache-is-a-file", mount("-o", lambda c: f"insecure,cache={c.afile}",
                                    lambda c: c.plain, mp), 32,
     [lambda c: c.afile, "Not a directory"], [], None),
    ("mount-cache-is-a-symlink", mount("-o", lambda c: f"insecure,cache={link_cache(c)}",
                                       lambda c: c.plain, mp), 32,
     [lambda c: link_cache(c), "symbolic link", lambda c: c.lazy.root + "/realcache"], [], None),
    ("mount-cache-is-a-symlink-slash",
     mount("-o", lambda c: f"insecure,cache={link_cache(c, '/')}", lambda c: c.plain, mp), 32,
     ["symbolic link"], [], None),
    ("fetch-cache-is-a-symlink",
     lambda c: ["fetch", "-o", f"insecure,cache={link_cache(c)}", c.plain], 2,
     ["symbolic link"], [], None),
    ("mount-config-syntax", mount("-o", bad_config, lambda c: c.plain, mp), 32,
     [lambda c: c.lazy.config, "line 2", "']'"], [], None),
    ("mount-hosts-toml-syntax", mount("-o", bad_hosts, lambda c: c.plain, mp), 32,
     [lambda c: os.path.join(c.lazy.certs_d, c.reg.host, "hosts.toml"), "line 2", "']'"], [],
     None),
    # -- umount, status, profile save: not a (lazyerofs) mount
    ("umount-not-a-mount", lambda c: ["umount", c.mp], 32,
     [lambda c: c.mp, "not a mount point"], [], None),
    ("umount-other-filesystem", lambda c: ["umount", "/"], 32,
     ["'/'", "not a lazyerofs mount"], [], None),
    ("umount-missing", lambda c: ["umount", c.missing], 32,
     [lambda c: c.missing, "No such file or directory"], [], None),
    ("status-not-a-mount", lambda c: ["status", c.mp], 2,
     [lambda c: c.mp, "not a lazyerofs mount"], [], None),
    ("status-missing", lambda c: ["status", "--json", c.missing], 2,
     [lambda c: c.missing, "No such file or directory"], [], None),
    ("profile-save-not-a-mount", lambda c: ["profile", "save", c.mp, c.missing], 2,
     [lambda c: c.mp, "not a lazyerofs mount"], [], None),
    # -- push, profile push, inspect, fetch, gc
    ("push-missing-file", lambda c: ["push", "-o", "insecure", c.missing, c.plain], 2,
     [lambda c: c.missing, "No such file or directory"], [], None),
    ("push-not-erofs", lambda c: ["push", "-o", "insecure", c.junk, c.reg.ref("err/x", "v1")], 2,
     [lambda c: c.junk, "not an EROFS image"], [], None),
    ("push-to-digest", lambda c: ["push", "-o", "insecure", PLAIN,
                                  c.reg.ref("err/x", digest=ZERO)], 1,
     ["REGISTRY/REPOSITORY[:TAG]"], [], None),
    # (push asks with HEAD first: a reply without a body, so no registry error code)
    ("push-401", lambda c: ["push", "-o", f"ca={c.tls.ca}", PLAIN, c.tls.ref("err/x", "v1")], 2,
     [lambda c: c.tls.host, "HTTP 401", "username="], [], None),
    ("push-connection-refused",
     lambda c: ["push", "-o", "insecure", PLAIN, f"127.0.0.1:{c.port}/err/x:v1"], 2,
     [lambda c: f"127.0.0.1:{c.port}", "Connection refused"], [], None),
    ("profile-push-missing-file",
     lambda c: ["profile", "push", "-o", "insecure", c.missing, c.plain], 2,
     [lambda c: c.missing, "No such file or directory"], [], None),
    ("inspect-not-erofs", lambda c: ["inspect", c.junk], 2,
     [lambda c: c.junk, "corrupt image", "magic"], ["-EUCLEAN"], None),
    ("inspect-missing", lambda c: ["inspect", c.missing], 2,
     [lambda c: c.missing, "No such file or directory"], [], None),
    ("fetch-unknown-tag", lambda c: ["fetch", "-o", "insecure", c.reg.ref("err/plain", "nosuch")],
     2, [lambda c: c.reg.host, "HTTP 404", "MANIFEST_UNKNOWN"], [], "err/plain"),
    ("fetch-platform-mismatch",
     lambda c: ["fetch", "-o", "insecure,platform=linux/s390x", c.plain], 2,
     [lambda c: c.plain, "linux/s390x"], [], lambda c: c.plain),
    ("fetch-not-erofs", lambda c: ["fetch", "-o", "insecure", c.reg.ref("err/junk", "v1")], 2,
     [lambda c: c.reg.ref("err/junk", "v1"), "not a usable EROFS image", "magic"], [], None),
    ("gc-bad-size", lambda c: ["gc", "--max-size", "10X"], 1,
     ["'10X'", "not a size", "K, M, G or T"], [], None),
    # a broken configuration file fails every subcommand that reads it alike (not a usage error)
    ("gc-config-syntax", lambda c: (bad_config(c), ["gc"])[1], 2,
     [lambda c: c.lazy.config, "line 2", "']'"], [], None),
    ("fetch-config-syntax", lambda c: (bad_config(c), ["fetch", "-o", "insecure", c.plain])[1],
     2, [lambda c: c.lazy.config, "line 2", "']'"], [], None),
]

# Cases whose -o value is made here (None in the option's place).
OPTS = {
    "mount-missing-password-file": lambda c: c.login(c.missing),
    "mount-missing-ca": lambda c: f"ca={c.missing}",
}


def value(c, w):
    return w(c) if callable(w) else w


@pytest.mark.parametrize("name,argv,code,words,absent,once", CASES, ids=[x[0] for x in CASES])
def test_one_line_error(lazy, registry, tls_registry, pki, images, name, argv, code, words,
                        absent, once):
    c = Case(lazy, registry, tls_registry, images)
    c.tls_other_ca = pki.other_ca
    home = os.path.join(lazy.root, "home")
    os.makedirs(home)
    # No credentials or proxies of the machine: the cases say what they give.
    env = {k: v for k, v in lazy.env.items() if k not in CRED_ENV}
    env["HOME"] = home
    with contextlib.ExitStack() as stack:
        c.port = stack.enter_context(closed_port())
        args = argv(c)
        if name in OPTS:
            args[args.index(None)] = OPTS[name](c)
        args = [a if isinstance(a, str) else a(c) for a in args]
        try:
            r = lazy.run(args, env=env, timeout=60)
        finally:
            if c.shm:
                shutil.rmtree(c.shm, ignore_errors=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert r.returncode == code, (r.returncode, line)
    assert line.startswith(f"lazyerofs: {args[0]}"), line
    for w in words:
        assert value(c, w) in line, (value(c, w), line)
    for w in absent:
        assert w not in line, (w, line)
    if once:
        assert line.count(value(c, once)) == 1, (value(c, once), line)
    # nothing left behind, at once: a daemon a failed mount started leaves with it (the
    # daemon of a non-EROFS blob stayed a second, waiting for a mount that could not come)
    lazy.assert_nothing_left(timeout=0.8)


def test_mount_on_a_lazyerofs_mount(lazy, registry, images):
    """A second mount on a directory that holds one is refused, naming the directory and what
    is mounted there; umount then leaves it, and a second umount says it is not a mount."""
    ref = registry.ref("err/plain", "v1")
    mp = lazy.mount(ref)
    _, r = lazy.mount(ref, mp=mp, check=False)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 32 and len(lines) == 1, r.stderr
    for w in (mp, "already a lazyerofs mount", ref, "lazyerofs umount"):
        assert w in lines[0], (w, lines[0])
    assert len(lazy.our_mounts()) == 1, lazy.our_mounts()
    lazy.umount(mp)
    r = lazy.umount(mp, check=False)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 32 and len(lines) == 1, r.stderr
    assert mp in lines[0] and "not a mount point" in lines[0], lines[0]
    lazy.assert_nothing_left()


def test_gc_of_a_symlinked_cache_directory(lazy):
    """gc names a symlinked cache directory as such (it said "Not a directory")."""
    real = os.path.join(lazy.root, "realcache")
    os.makedirs(real, mode=0o700)
    link = os.path.join(lazy.root, "linkcache")
    os.symlink(real, link)
    r = lazy.run(["gc"], env=dict(lazy.env, LAZYEROFS_CACHE_DIR=link))
    assert_one_line_error(r, 2)
    assert "symbolic link" in r.stderr and real in r.stderr, r.stderr


def test_a_refused_cache_directory_is_not_made(lazy, registry):
    """A cache directory to be made on tmpfs is refused before it is made (it was made, then
    refused)."""
    base = tempfile.mkdtemp(prefix="lzerr", dir="/dev/shm")
    try:
        cache = os.path.join(base, "not", "yet")
        r = lazy.run(["mount", "-o", f"insecure,cache={cache}", registry.ref("err/plain", "v1"),
                      lazy.mountpoint()])
        assert_one_line_error(r, 32)
        assert "tmpfs" in r.stderr and not os.path.exists(os.path.join(base, "not")), r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("proxy", ["htp://alice:SECRET@127.0.0.1:3128",
                                   "http://alice:SECRET@127.0.0.1:3128:99"])
def test_a_proxys_password_never_shows(lazy, registry, proxy):
    """libcurl quotes a proxy's URL whole in its messages: the password must not reach the
    terminal (nor a journal, for mounts at boot)."""
    lazy.write_config(f'proxy = "{proxy}"\n')
    for args in (["mount", "-o", "insecure", registry.ref("err/plain", "v1"), lazy.mountpoint()],
                 ["fetch", "-o", "insecure", registry.ref("err/plain", "v1")]):
        r = lazy.run(args)
        assert r.returncode != 0 and "SECRET" not in r.stderr + r.stdout, r.stderr
        assert "proxy" in r.stderr.lower(), r.stderr
    lazy.assert_nothing_left()
