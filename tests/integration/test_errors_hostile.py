# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Odd and hostile command lines, as a new user might type them: every failure is one line on
stderr naming what failed and why, with DESIGN.md's exit status, within a bounded time;
nothing outside the arguments' own files is touched (a device or FIFO named as an output is
never replaced); no mount and no daemon stay behind."""

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from common import BIN, FIXTURES, wait_until
from registry import CRED_ENV, MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

PLAIN = os.path.join(FIXTURES, "plain.erofs")


@pytest.fixture(scope="module")
def images(registry):
    registry.client.push_image("rev/plain", "v1", [(PLAIN, MT_EROFS)])
    d = tempfile.mkdtemp(prefix="lazyerofs-rev-cli-", dir="/var/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def env_of(lazy, **extra):
    env = {k: v for k, v in lazy.env.items() if k not in CRED_ENV}
    env.update(extra)
    return env


def run(lazy, args, timeout=60, **kw):
    """lazy.run with undecodable bytes tolerated (non-UTF-8 paths echo back)."""
    kw.setdefault("env", env_of(lazy))
    return lazy.run(args, timeout=timeout, errors="replace", **kw)


def one_line(r, code):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert r.returncode == code, (r.returncode, lines[0])
    assert lines[0].startswith("lazyerofs: "), lines[0]
    return lines[0]


# -- 1. profile save renames its temporary file over whatever FILE is: a device node (here a
#       private copy of /dev/null; `profile save MP /dev/null` or `/dev/stdout` replaces the
#       system's own), a FIFO. (src/fetch/profile.c profile_write_file ->
#       util_write_file_atomic's renameat)

@pytest.mark.parametrize("kind", ["chardev", "fifo"])
def test_profile_save_never_replaces_a_special_file(lazy, registry, images, kind):
    mp = lazy.mount(registry.ref("rev/plain", "v1"))
    with open(os.path.join(mp, "random.bin"), "rb") as f:
        f.read(4096)
    target = os.path.join(lazy.root, "target")
    if kind == "chardev":
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a null device
        is_kind = stat.S_ISCHR
    else:
        os.mkfifo(target, 0o600)
        is_kind = stat.S_ISFIFO
    r = run(lazy, ["profile", "save", mp, target], timeout=20)
    mode = os.lstat(target).st_mode
    assert is_kind(mode), (f"profile save replaced the {kind} {target} with a "
                           f"{stat.filemode(mode)} file (exit {r.returncode}: {r.stderr!r})")
    if r.returncode != 0:
        one_line(r, 2)
    lazy.umount(mp)
    lazy.assert_nothing_left()


# -- 2. a FIFO given as an input file blocks forever in open(2) before the "not a regular
#       file" check (inspect already refuses /dev/null that way)

FIFO_CASES = [
    ("inspect", lambda c: ["inspect", c.fifo], 2),
    ("push", lambda c: ["push", "-o", "insecure", c.fifo, c.reg.ref("rev/fifo", "v1")], 2),
    ("profile-push", lambda c: ["profile", "push", "-o", "insecure", c.fifo, c.plain], 2),
    ("mount-profile", lambda c: ["mount", "-o", f"insecure,profile={c.fifo}", c.plain, c.mp],
     None),
]


class Ctx:
    def __init__(self, lazy, reg):
        self.lazy, self.reg = lazy, reg
        self.plain = reg.ref("rev/plain", "v1")
        self.mp = lazy.mountpoint()
        self.fifo = os.path.join(lazy.root, "fifo")
        os.mkfifo(self.fifo, 0o600)


@pytest.mark.parametrize("name,argv,code", FIFO_CASES, ids=[x[0] for x in FIFO_CASES])
def test_fifo_input_does_not_hang(lazy, registry, images, name, argv, code):
    c = Ctx(lazy, registry)
    try:
        r = run(lazy, argv(c), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"lazyerofs {' '.join(argv(c))} still blocked on the FIFO after 20 s")
    finally:
        for mp, _ in lazy.our_mounts():
            lazy.umount(mp, check=False)
    if code is not None:
        assert c.fifo in one_line(r, code)
    lazy.assert_nothing_left()


# -- 3. an unknown short option inside a cluster is reported under the name of the argument
#       before it: `mount -xv` -> "unknown option 'mount'", `mount -o insecure -Zv` ->
#       "unknown option 'insecure'" (src/cli/common.c cli_option_error prints
#       argv[optind - 1], but getopt does not advance optind inside a cluster)

@pytest.mark.parametrize("argv,said", [
    (["status", "--json=1"], "'--json' takes no value"),
    (["gc", "--dry-run=yes"], "'--dry-run' takes no value"),
    (["umount", "--lazy=1", "/x"], "'--lazy' takes no value"),
    (["mount", "--bogus=3", "a", "b"], "unknown option '--bogus'"),
    (["mount", "--verbose", "-xv", "a", "b"], "unknown option '-x'"),
])
def test_option_errors_name_what_was_typed(lazy, argv, said):
    assert said in one_line(run(lazy, argv), 1)


@pytest.mark.parametrize("argv,bad", [
    (["mount", "-xv", "a", "b"], "x"),
    (["mount", "-o", "insecure", "-Zv", "a", "b"], "Z"),
    (["umount", "-xl", "/nonexistent"], "x"),
    (["status", "-xv"], "x"),
    (["gc", "-xn"], "x"),
    (["fetch", "-xv", "a"], "x"),
])
def test_unknown_option_in_a_cluster_is_named(lazy, argv, bad):
    line = one_line(run(lazy, argv), 1)
    assert f"-{bad}" in line or f"'{bad}'" in line, line
    for other in argv[1:]:
        if not other.startswith("-"):
            assert f"'{other}'" not in line, line


def test_mount_helper_help(lazy):
    """`mount.erofs.lazy --help` (every command takes --help) says "unknown option
    '<its own path>'"; `mount.erofs.lazy SRC DIR --help` blames 'DIR'."""
    d = tempfile.mkdtemp(prefix="lzhelper", dir=lazy.root)
    helper = os.path.join(d, "mount.erofs.lazy")
    os.symlink(BIN, helper)
    r = subprocess.run([helper, "--help"], capture_output=True, text=True, timeout=20,
                       env=env_of(lazy))
    assert r.returncode == 0 and "Usage:" in r.stdout, (r.returncode, r.stderr)
    r = subprocess.run([helper, "src", "dir", "--bogus"], capture_output=True, text=True,
                       timeout=20, env=env_of(lazy))
    line = one_line(r, 1)
    assert "'dir'" not in line and helper not in line, line


# -- 4. paths that are not UTF-8: the state file and the daemon's control messages are JSON
#       (jansson refuses invalid UTF-8)

def test_non_utf8_mountpoint(lazy, registry, images):
    """The kernel mount is made, then undone, and the line blames memory: "writing the state
    file in '...': Cannot allocate memory" (src/mount/state.c mount_state_write)."""
    mp = lazy.mountpoint(os.fsdecode(b"m\xffx"))
    r = run(lazy, ["mount", "-o", "insecure", registry.ref("rev/plain", "v1"), mp])
    if r.returncode == 0:
        lazy.umount(mp)
    else:
        line = one_line(r, 32)
        assert "Cannot allocate memory" not in line, line
        assert "UTF-8" in line, line
    lazy.assert_nothing_left()


def test_non_utf8_cache_dir(lazy, registry, images):
    """The CLI starts ~650 daemons in 30 s (each says ready, then leaves), then says "the
    daemon of cache entry ... did not answer within 30 s" (src/fetch/client.c
    fetch_daemon_ensure)."""
    cache = os.path.join(lazy.root, os.fsdecode(b"c\xff"))
    mp = lazy.mountpoint()
    t = time.monotonic()
    r = run(lazy, ["mount", "-o", f"insecure,cache={cache}", registry.ref("rev/plain", "v1"),
                   mp], timeout=90)
    took = time.monotonic() - t
    if r.returncode == 0:
        lazy.umount(mp)
    else:
        line = one_line(r, 32)
        assert "did not answer" not in line, line
    starts = lazy.log().count("info: starting: entry")
    assert starts <= 2, f"{starts} daemons started for one mount"
    assert took < 15, f"took {took:.0f} s"
    lazy.assert_nothing_left()


# -- 5. a relative LAZYEROFS_CACHE_DIR / LAZYEROFS_RUN_DIR: gc says "must be an absolute
#       path", mount and fetch resolve the image, create the relative directory in the
#       current directory, then say "starting the fetch daemon: invalid daemon configuration"
#       (src/fetch/client.c fetch_daemon_ensure's catch-all)

@pytest.mark.parametrize("var", ["LAZYEROFS_CACHE_DIR", "LAZYEROFS_RUN_DIR"])
@pytest.mark.parametrize("cmd,code", [("mount", 32), ("fetch", 2)])
def test_relative_directory_from_environment(lazy, registry, images, var, cmd, code):
    cwd = tempfile.mkdtemp(prefix="cwd", dir=lazy.root)
    args = ["mount", "-o", "insecure", registry.ref("rev/plain", "v1"), lazy.mountpoint()] \
        if cmd == "mount" else ["fetch", "-o", "insecure", registry.ref("rev/plain", "v1")]
    r = run(lazy, args, cwd=cwd, env=env_of(lazy, **{var: "reldir"}))
    line = one_line(r, code)
    assert "invalid daemon configuration" not in line, line
    assert "absolute" in line and "reldir" in line, line
    assert not os.path.exists(os.path.join(cwd, "reldir")), "the relative directory was made"
    lazy.assert_nothing_left()


# -- 6. status / profile save of a directory or file inside a lazyerofs mount (or of a bind
#       mount of one) blame the run directory: "is a mount of a lazyerofs cache entry with no
#       state in RUN_DIR (mounted with another LAZYEROFS_RUN_DIR?)" -- umount of the same
#       path rightly says "is not a mount point" (src/mount/status.c:129,
#       mount_is_entry_mount looks at the mount that contains the path)

@pytest.mark.parametrize("argv", [
    lambda mp, root: ["status", os.path.join(mp, "bigdir")],
    lambda mp, root: ["status", "--json", os.path.join(mp, "random.bin")],
    lambda mp, root: ["profile", "save", os.path.join(mp, "bigdir"), os.path.join(root, "p")],
], ids=["status-subdir", "status-json-file", "profile-save-subdir"])
def test_path_inside_a_mount_is_not_blamed_on_the_run_dir(lazy, registry, images, argv):
    mp = lazy.mount(registry.ref("rev/plain", "v1"))
    line = one_line(run(lazy, argv(mp, lazy.root)), 2)
    assert "LAZYEROFS_RUN_DIR" not in line, line
    assert "not a lazyerofs mount" in line or "mount point" in line, line
    lazy.umount(mp)
    lazy.assert_nothing_left()


# -- 7. a mount on the cache's own sha256/ directory is mounted, then undone with "the cache
#       file '...' was replaced while it was mounted" (src/mount/mount.c:523): the mount hid
#       the entry; the line should say the mountpoint lies in the cache directory

def test_a_mount_over_the_cache_and_run_dirs(lazy, registry, images):
    """A mountpoint above the cache and run directories would hide both: refused up front
    (it mounted, then failed with "the cache file ... was replaced")."""
    mp, r = lazy.mount(registry.ref("rev/plain", "v1"), mp=lazy.root, check=False)
    lazy.points.remove(lazy.root)
    line = one_line(r, 32)
    assert "would hide" in line, line
    lazy.assert_nothing_left()


def test_mountpoint_inside_the_cache(lazy, registry, images):
    ref = registry.ref("rev/plain", "v1")
    lazy.mount(ref, mp=lazy.mountpoint("first"))
    lazy.umount(os.path.join(lazy.root, "first"))
    lazy.assert_nothing_left()
    inside = os.path.join(lazy.cache, "sha256")
    _, r = lazy.mount(ref, mp=inside, check=False)
    lazy.points.remove(inside)
    line = one_line(r, 32)
    assert "was replaced" not in line, line
    assert "cache" in line and inside in line, line
    lazy.assert_nothing_left()


# -- 8. inspect echoes its path raw: a newline in it makes the error two lines (mount,
#        status and umount print '?' for control characters); its line also lacks the
#        "inspect:" colon every other command has (src/cli/inspect.c)

def test_inspect_error_is_one_line(lazy):
    path = os.path.join(lazy.root, "x\ny\x1b[31m")
    r = run(lazy, ["inspect", path])
    line = one_line(r, 2)
    assert line.startswith("lazyerofs: inspect: "), line
    assert "\x1b" not in line, line


# -- 9. push: "timeout=0" is refused as "not a number of seconds between 0 and 86400"
#        (src/oci/options.c); pull-only options (blob=, layer=, digest=) are accepted and
#        ignored, while prefetch=/cache= are refused as unknown

def test_push_timeout_zero_message(lazy, registry, images):
    r = run(lazy, ["push", "-o", "insecure,timeout=0", PLAIN, registry.ref("rev/x", "v1")])
    line = one_line(r, 1)
    assert "between 0 and" not in line, line


@pytest.mark.parametrize("opt", ["blob=sha256:" + "0" * 64, "digest=sha256:" + "0" * 64,
                                 "layer=3"])
def test_push_refuses_pull_options(lazy, registry, images, opt):
    r = run(lazy, ["push", "-o", f"insecure,{opt}", PLAIN, registry.ref("rev/x", "v1")])
    line = one_line(r, 1)
    assert opt.split("=")[0] in line, line


# -- 10. the mount command interrupted (Ctrl-C) while the metadata prefetch waits on the
#        registry: the CLI dies at once, and its daemon -- attached to no mount, its only
#        client gone -- leaves at once (it stayed until the stalled fetch gave up: 58 s with
#        the default timeout=60)

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_mount_leaves_no_daemon(lazy, registry, images, faultproxy, sig):
    faultproxy.add("stall", path="/blobs/", method="GET", count=None, seconds=120)
    mp = lazy.mountpoint()
    # As a terminal's Ctrl-C finds it: the signal's default action (a run started in the
    # background, `make check &`, passes SIGINT on ignored, and the mount rightly keeps that).
    p = subprocess.Popen([BIN, "mount", "-o", "insecure", faultproxy.ref("rev/plain", "v1"), mp],
                         env=env_of(lazy), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    try:
        assert wait_until(lambda: lazy.daemon_pids() - {p.pid}, 20), "no daemon started"
        time.sleep(0.5)
        p.send_signal(sig)
        p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    gone = wait_until(lambda: not lazy.daemon_pids(), 10)
    faultproxy.clear()
    assert gone, f"daemons still running 10 s after the mount was interrupted: " \
                 f"{lazy.daemon_pids()}"
    lazy.assert_nothing_left()


def test_a_mount_killed_before_it_reached_its_daemon_leaves_no_daemon(lazy, registry, images):
    """The mount killed after it started the daemon and before it asked it anything (its
    connect held up 3 s by strace here; Ctrl-C at that moment under load): the daemon, used
    by nobody and its starter gone, leaves at once (it stayed 30 s, the grace a daemon gets to
    be asked)."""
    mp = lazy.mountpoint()
    p = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-e", "trace=connect",
                          "-e", "inject=connect:delay_enter=3s", BIN, "mount", "-o", "insecure",
                          registry.ref("rev/plain", "v1"), mp],
                         env=env_of(lazy), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        cli = wait_until(lambda: subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                                text=True).stdout.split(), 10)
        assert cli, "strace did not start the mount"
        cli = int(cli[0])
        assert wait_until(lambda: lazy.daemon_pids() - {cli}, 30), "no daemon started"
        time.sleep(1)  # ready by now; the mount's connect to it waits
        os.kill(cli, signal.SIGKILL)
        p.wait(timeout=20)
        t0 = time.monotonic()
        gone = wait_until(lambda: not lazy.daemon_pids(), 20)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert gone, f"daemons still running 20 s after their mount was killed: {lazy.daemon_pids()}"
    assert took < 5, took
    lazy.assert_nothing_left()


def test_a_registrys_words_never_reach_the_terminal_as_controls(lazy, registry, images,
                                                               faultproxy):
    """A registry's error message carrying terminal controls -- ESC (C0) and U+009B, the
    one-character CSI of C1 that xterm and VTE obey -- is shown with each as '?' (C1 passed
    through)."""
    msg = "\u009b31mRED\u001b[2J\u0085\u00e9t\u00e9"
    faultproxy.add("status", path=r"/manifests/", count=None, code=403,
                   body='{"errors":[{"code":"DENIED","message":"%s"}]}' %
                   msg.encode("unicode_escape").decode().replace("\\x", "\\u00"))
    mp = lazy.mountpoint()
    r = lazy.run(["mount", "-o", "insecure", faultproxy.ref("hostile/x", "v1"), mp])
    assert r.returncode == 32, r.stderr
    raw = r.stderr.encode()
    assert b"\xc2\x9b" not in raw and b"\x1b" not in raw and b"\xc2\x85" not in raw, raw
    assert "31mRED" in r.stderr and "\u00e9t\u00e9" in r.stderr, r.stderr  # the rest, as sent
    lazy.assert_nothing_left()


def test_a_server_that_compresses_the_image_is_refused_at_once(lazy):
    """A web server that gzips every answer (Content-Encoding: gzip): its bytes are not the
    image's at the offsets asked for. The mount says so in one line, without retrying for
    seconds (it took 8 s and 9 requests)."""
    import gzip
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    with open(os.path.join(FIXTURES, "plain.erofs"), "rb") as f:
        body = gzip.compress(f.read())
    asked = []

    class Gzip(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_HEAD(self):
            self.answer(False)

        def do_GET(self):
            self.answer(True)

        def answer(self, with_body):
            asked.append(self.command)
            self.send_response(200)
            for k, v in (("ETag", '"v1"'), ("Content-Encoding", "gzip"),
                         ("Content-Length", str(len(body)))):
                self.send_header(k, v)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Gzip)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        mp, r = lazy.mount(f"http://127.0.0.1:{srv.server_address[1]}/i.erofs", opts="",
                           check=False)
        took = time.monotonic() - t0
        one_line(r, 32)
        assert "Content-Encoding" in r.stderr, r.stderr
        assert took < 4 and len(asked) < 6, (took, asked)
        lazy.assert_nothing_left(timeout=30)
    finally:
        srv.shutdown()
        srv.server_close()
