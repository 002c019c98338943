# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Lazy mounts for integration tests: a private cache and run directory per test (on a
filesystem that takes pre-content marks: ext4 here, never tmpfs), `lazyerofs mount / umount /
status` driven through the binary, and a teardown that leaves no mount, no daemon and no state
file behind even when the test fails.

Daemons are found three ways, so that none escapes: the pids in state files, processes of
our binary whose environment names this test's run directory, and processes holding files
under this test's directory open.

The binary runs with sanitizer options that write any report (of the CLI or of the daemon it
forks, whose stderr is /dev/null) to `<test dir>/san.PID`; the teardown fails the test on such
a report or on a daemon log line saying an event could not be answered (common's
sanitizer_env and daemon_problems, which daemonctl shares)."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from common import (ROOT, daemon_problems, fs_type, kill_all, mountinfo,  # noqa: F401
                    pid_alive, run, sanitizer_env, wait_until)

# /var/tmp (or the build dir): ext4/xfs/btrfs, never tmpfs.
BASE_DIRS = ["/var/tmp", os.path.join(ROOT, "build")]
MARKABLE_FS = {"ext2/ext3", "ext4", "xfs", "btrfs"}

def markable_base():
    for d in BASE_DIRS:
        os.makedirs(d, exist_ok=True)
        if fs_type(d) in MARKABLE_FS:
            return d
    pytest.skip(f"no directory on ext4/xfs/btrfs among {BASE_DIRS}")


def is_mounted(path):
    path = os.path.realpath(path)
    return any(mp == path for _, mp, _, _ in mountinfo())


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class LazyEnv:
    """One test's cache and run directories, and everything started with them."""

    def __init__(self, base):
        # Short names: the daemon's socket path (run dir + ~80 bytes) must fit sun_path.
        self.root = tempfile.mkdtemp(prefix="lz", dir=base)
        os.chmod(self.root, 0o700)
        self.cache = os.path.join(self.root, "c")
        self.run_dir = os.path.join(self.root, "r")
        # The machine's own configuration (/etc/lazyerofs/config, containerd's certs.d) stays
        # out of tests: these paths exist only when a test writes them.
        self.config = os.path.join(self.root, "config")
        self.certs_d = os.path.join(self.root, "certs.d")
        self.env = sanitizer_env(dict(os.environ, LAZYEROFS_CACHE_DIR=self.cache,
                                      LAZYEROFS_RUN_DIR=self.run_dir,
                                      LAZYEROFS_CONFIG=self.config,
                                      LAZYEROFS_CERTS_D=self.certs_d), self.root)
        self.points = []
        self.pids = set()

    def write_config(self, text):
        """Write the configuration file this test's commands read."""
        with open(self.config, "w") as f:
            f.write(text)

    def credential_helper(self, host, name, body):
        """docker-credential-NAME, the credential helper of host for this test's commands (in
        their DOCKER_CONFIG and PATH): a shell script whose body runs once it has read the
        server's name."""
        bindir, dc = os.path.join(self.root, "bin"), os.path.join(self.root, "docker")
        os.makedirs(bindir, exist_ok=True)
        os.makedirs(dc, exist_ok=True)
        helper = os.path.join(bindir, f"docker-credential-{name}")
        with open(helper, "w") as f:
            f.write("#!/bin/sh\nread server\n" + body)
        os.chmod(helper, 0o755)
        with open(os.path.join(dc, "config.json"), "w") as f:
            json.dump({"credHelpers": {host: name}}, f)
        self.env["DOCKER_CONFIG"] = dc
        if not self.env["PATH"].startswith(bindir + ":"):
            self.env["PATH"] = bindir + ":" + self.env["PATH"]

    # --- driving the binary ---

    def run(self, args, **kw):
        kw.setdefault("env", self.env)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return run(args, **kw)

    def mountpoint(self, name="mnt"):
        p = os.path.join(self.root, name)
        os.makedirs(p, exist_ok=True)
        self.points.append(p)
        return p

    def mount(self, source, mp=None, opts="insecure", extra=(), check=True, timeout=120):
        mp = mp or self.mountpoint(f"mnt{len(self.points)}")
        if mp not in self.points:
            self.points.append(mp)
        args = ["mount", *extra]
        if opts:
            args += ["-o", opts]
        r = self.run([*args, source, mp], timeout=timeout)
        if check:
            assert r.returncode == 0, f"mount {source} failed ({r.returncode}): {r.stderr}"
            self.pids.update(self.daemon_pids())
        return (mp, r) if not check else mp

    def umount(self, mp, extra=(), check=True):
        r = self.run(["umount", *extra, mp])
        if check:
            assert r.returncode == 0, f"umount {mp} failed ({r.returncode}): {r.stderr}"
        return r

    def status(self, mp=None, check=True):
        r = self.run(["status", "--json"] + ([mp] if mp else []))
        if check:
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)["mounts"]
        return r

    def status_of(self, mp):
        ms = [m for m in self.status() if m["mountpoint"] == os.path.realpath(mp)]
        assert len(ms) == 1, self.status()
        return ms[0]

    def settled_status_of(self, mp, quiet=0.5, timeout=60):
        """Status once the daemon is idle: nothing pending, every event it counted answered
        (an answer is counted once the kernel took it, a moment after the reader may have
        its bytes) and no bytes or requests added for `quiet` seconds (read-ahead a read
        started may still run after the read returned)."""
        last, since = None, time.monotonic()
        deadline = since + timeout
        while True:
            st = self.status_of(mp)
            key = (st["fetched_bytes"], st["requests"], st["pending"], st["events"], st["answers"])
            if key != last:
                last, since = key, time.monotonic()
            elif (st["pending"] == 0 and st["answers"] == st["events"]
                  and time.monotonic() - since >= quiet):
                return st
            assert time.monotonic() < deadline, f"the daemon did not settle: {st}"
            time.sleep(0.05)

    def log(self):
        """The text of every daemon log in the run directory."""
        out = []
        for n in sorted(os.listdir(self.run_dir)) if os.path.isdir(self.run_dir) else []:
            if n.endswith(".log"):
                try:
                    with open(os.path.join(self.run_dir, n), errors="replace") as f:
                        out.append(f.read())
                except OSError:
                    pass
        return "".join(out)

    # --- what exists ---

    def state_files(self):
        try:
            return sorted(n for n in os.listdir(self.run_dir) if n.isdigit())
        except FileNotFoundError:
            return []

    def states(self):
        out = []
        for n in self.state_files():
            try:
                with open(os.path.join(self.run_dir, n)) as f:
                    out.append(json.load(f))
            except (OSError, ValueError):
                pass
        return out

    def our_mounts(self):
        """Mounts on our mountpoints or of files in our cache."""
        return [(mp, src) for _, mp, fstype, src in mountinfo()
                if mp.startswith(self.root + "/") or src.startswith(self.cache + "/")]

    def daemon_pids(self):
        """Live processes of lazyerofs that belong to this test's directories."""
        found = set()
        for st in self.states():
            if pid_alive(st.get("pid")):
                found.add(st["pid"])
        want_env = f"LAZYEROFS_RUN_DIR={self.run_dir}".encode()
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            pid = int(d)
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if os.path.basename(exe.replace(" (deleted)", "")) != "lazyerofs":
                continue
            mine = False
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    mine = want_env in f.read().split(b"\0")
            except OSError:
                pass
            if not mine:
                try:
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        try:
                            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(self.root + "/"):
                                mine = True
                                break
                        except OSError:
                            pass
                except OSError:
                    pass
            if mine and pid_alive(pid):
                found.add(pid)
        return found

    def daemon_roots(self):
        """The daemons' top processes (their helpers and workers are their children)."""
        pids = self.daemon_pids()
        return {p for p in pids if ppid(p) not in pids}

    def wait_worker_replaced(self, mp, old_pid, timeout=60):
        """The status of mp once a worker other than old_pid (killed) answers for it."""
        def replaced():
            try:
                st = self.status_of(mp)
            except AssertionError:
                return None  # no worker answers for a moment
            return st if st["restarts"] >= 1 and st["worker_pid"] != old_pid else None

        st = wait_until(replaced, timeout)
        assert st, ("no replacement worker", self.log())
        return st

    def short_replacement_stay(self):
        """An unused replacement worker stays 10 s (the clients of the one that died connect
        again): 1 s for the daemons started from now on, for tests that replace a worker and
        then wait for the daemon to leave."""
        self.env["LAZYEROFS_REPLACEMENT_STAY_MS"] = "1000"

    def assert_nothing_left(self, timeout=10):
        """No mount, no daemon, no state file of this test (daemons get `timeout` to exit)."""
        assert self.our_mounts() == [], self.our_mounts()
        left = wait_until(lambda: not self.daemon_pids(), timeout)
        assert left, f"daemons still running: {self.daemon_pids()}"
        assert self.state_files() == [], self.state_files()

    def wait_daemon_gone(self, pid, timeout=10):
        return wait_until(lambda: not pid_alive(pid), timeout)

    # --- teardown ---

    def cleanup(self):
        """Tear everything down; the problems daemon_problems() finds (a failed answer, a
        sanitizer report), for the fixture to fail the test with."""
        for mp, _ in reversed(self.our_mounts()):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        pids = self.daemon_pids() | {p for p in self.pids if pid_alive(p)}
        kill_all(pids, signal.SIGTERM)
        if not wait_until(lambda: not any(pid_alive(p) for p in pids), 5):
            kill_all(pids, signal.SIGKILL)
            wait_until(lambda: not any(pid_alive(p) for p in pids), 5)
        for mp, _ in reversed(self.our_mounts()):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        problems = daemon_problems(self.run_dir, self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


@pytest.fixture
def lazy():
    """A LazyEnv: private cache/run dirs on ext4; everything torn down afterwards, and the
    test fails if a daemon could not answer an event or a sanitizer reported anything."""
    e = LazyEnv(markable_base())
    try:
        yield e
    finally:
        problems = e.cleanup()
    assert not problems, "\n".join(problems)


def build_busybox_image(dest_dir):
    """An EROFS image (Debian's mkfs.erofs) with a static busybox and a few text files."""
    tree = os.path.join(dest_dir, "bbtree")
    os.makedirs(os.path.join(tree, "bin"), exist_ok=True)
    os.makedirs(os.path.join(tree, "etc"), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(tree, "bin", "busybox"))
    os.chmod(os.path.join(tree, "bin", "busybox"), 0o755)
    for applet in ("sh", "ls", "cat", "echo", "sha256sum"):
        os.symlink("busybox", os.path.join(tree, "bin", applet))
    with open(os.path.join(tree, "etc", "motd"), "w") as f:
        f.write("hello from a lazy mount\n")
    with open(os.path.join(tree, "etc", "big.txt"), "w") as f:
        for i in range(100000):
            f.write(f"line {i} of a big text file\n")
    image = os.path.join(dest_dir, "busybox.erofs")
    subprocess.run(["mkfs.erofs", "-T0", "-zlz4hc", image, tree], check=True, capture_output=True,
                   timeout=300)
    return image, tree


def build_big_image(dest_dir, files=3, mib=16):
    """An uncompressed EROFS image much larger than the daemon's fetch chunks: a few text
    files and `files` random files of `mib` MiB each (data/rN.bin), so that a cold mount holds
    little of it and each read has to fetch. Returns (image, tree)."""
    tree = os.path.join(dest_dir, "bigtree")
    os.makedirs(os.path.join(tree, "data"), exist_ok=True)
    os.makedirs(os.path.join(tree, "etc"), exist_ok=True)
    with open(os.path.join(tree, "etc", "motd"), "w") as f:
        f.write("hello from a big lazy image\n")
    for i in range(files):
        with open(os.path.join(tree, "data", f"r{i}.bin"), "wb") as f:
            f.write(os.urandom(mib << 20))
    image = os.path.join(dest_dir, "big.erofs")
    subprocess.run(["mkfs.erofs", "-T0", image, tree], check=True, capture_output=True,
                   timeout=300)
    return image, tree


def push_big_image(dest_dir, client, repo, files=2, mib=8):
    """build_big_image, pushed as repo:v1 with client; the bytes of its data/r0.bin."""
    from registry import MT_EROFS

    path, tree = build_big_image(dest_dir, files=files, mib=mib)
    client.push_image(repo, "v1", [(path, MT_EROFS)])
    with open(os.path.join(tree, "data", "r0.bin"), "rb") as f:
        return f.read()
