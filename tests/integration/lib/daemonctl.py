# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The fetch daemon driven without the mount CLI, through <build>/tests/tools/daemon-ctl.

`DaemonEnv` owns a private cache and run directory on a filesystem that takes pre-content
marks (ext4 under /var/tmp), runs daemon-ctl (one JSON line per command), and on teardown
unmounts whatever is mounted from its cache and kills every process that still holds a file
under its directory (daemons, background daemon-ctl runs) — even when the test failed.

The tool comes from the same build as the binary under test (LAZYEROFS_BIN's directory:
build/ or build-san/), so the sanitizer run drives a sanitized daemon. Every process a test
starts gets ASAN_OPTIONS/UBSAN_OPTIONS that write any sanitizer report to `<test dir>/san.PID`
(the daemon's stderr is /dev/null), and the teardown fails the test on such a report or on a
daemon log line saying an event could not be answered (`daemon_problems`)."""

import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from common import (BIN, ROOT, daemon_problems, fs_type, kill_all, mountinfo,  # noqa: F401
                    pid_alive, sanitizer_env, wait_until)


def _tool_build_dir():
    """The build directory of the binary under test when it is one of this tree's builds
    (build/, build-san/), else build/ (an installed binary: the tools are not installed)."""
    d = os.path.dirname(os.path.realpath(BIN))
    return d if os.path.isdir(os.path.join(d, "tests")) else os.path.join(ROOT, "build")


DAEMON_CTL = os.environ.get("LAZYEROFS_DAEMON_CTL",
                            os.path.join(_tool_build_dir(), "tests", "tools", "daemon-ctl"))
MARKABLE = {"ext2/ext3", "ext4", "xfs", "btrfs"}


def mounts_of(prefix):
    return [mp for _, mp, _, src in mountinfo() if mp.startswith(prefix) or src.startswith(prefix)]


class DaemonEnv:
    def __init__(self, base=None):
        base = base or "/var/tmp"
        if not os.access(DAEMON_CTL, os.X_OK):
            pytest.fail(f"{DAEMON_CTL} is missing: `make tools-build` (with the SANITIZE= of "
                        f"{BIN})")
        if fs_type(base) not in MARKABLE:
            pytest.skip(f"{base} is not on ext4/xfs/btrfs")
        self.root = tempfile.mkdtemp(prefix="lzd-", dir=base)
        os.chmod(self.root, 0o700)
        self.cache = os.path.join(self.root, "cache")
        self.run_dir = os.path.join(self.root, "run")
        self.procs = []
        self.env = sanitizer_env(os.environ, self.root)

    def args(self, source, cmds, opts="insecure", timeout=None, extra=(), cache=None):
        a = [DAEMON_CTL]
        if opts:
            a += ["-o", opts]
        a += ["--cache", cache or self.cache, "--run", self.run_dir]
        if timeout:
            a += ["--timeout", str(timeout)]
        a += list(extra)
        return a + [source] + [str(c) for c in cmds]

    def ctl(self, source, *cmds, check=True, proc_timeout=180, **kw):
        """Run daemon-ctl; returns (returncode, [json lines], stderr)."""
        r = subprocess.run(self.args(source, cmds, **kw), capture_output=True, text=True,
                           timeout=proc_timeout, stdin=subprocess.DEVNULL, env=self.env)
        out = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        if check:
            assert r.returncode == 0, f"daemon-ctl failed ({r.returncode}): {r.stderr}"
        return r.returncode, out, r.stderr

    def sock(self, socket, *cmds, check=True):
        """daemon-ctl --socket: commands to a running daemon, without holding it."""
        r = subprocess.run([DAEMON_CTL, "--socket", socket, *[str(c) for c in cmds]],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env=self.env)
        if check:
            assert r.returncode == 0, r.stderr
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def ctl_bg(self, source, *cmds, **kw):
        """Start daemon-ctl in the background; stdin is a pipe (for wait-stdin)."""
        p = subprocess.Popen(self.args(source, cmds, **kw), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.env)
        self.procs.append(p)
        return p

    @staticmethod
    def finish(p, timeout=120):
        """Close a background run's stdin and collect (returncode, [json lines], stderr)."""
        out, err = p.communicate(timeout=timeout)  # closes stdin first
        return p.returncode, [json.loads(l) for l in out.splitlines() if l.strip()], err

    @staticmethod
    def read_line(p, timeout=60):
        """Next JSON line of a background run (readline in a thread: a select() on the pipe
        would miss lines already in the file object's buffer)."""
        import threading
        box = []
        t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        assert box, "daemon-ctl printed nothing in time"
        assert box[0], f"daemon-ctl ended: {p.stderr.read()}"
        return json.loads(box[0])

    def log(self):
        try:
            return "".join(open(os.path.join(self.run_dir, n)).read()
                           for n in os.listdir(self.run_dir) if n.endswith(".log"))
        except OSError:
            return ""

    def holders(self):
        """Processes (other than us) holding a file under our directory: the daemons."""
        found = set()
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                for fd in os.listdir(f"/proc/{d}/fd"):
                    try:
                        if os.readlink(f"/proc/{d}/fd/{fd}").startswith(self.root + "/"):
                            found.add(int(d))
                            break
                    except OSError:
                        pass
            except OSError:
                pass
        return {p for p in found if pid_alive(p)}

    def settled(self, socket, timeout=60):
        """The daemon's status once it is idle: nothing pending and every event it counted
        answered (an answer is counted after the kernel took it, so a reader may see its
        bytes a moment before). Fails, showing the status, if that never happens."""
        last = []

        def idle():
            last[:] = self.sock(socket, "status", check=False)
            st = last[0] if last and last[0].get("ok") else None
            return st if st and st["pending"] == 0 and st["events"] == st["answers"] else None

        st = wait_until(idle, timeout)
        assert st, f"the daemon did not settle (an event left unanswered?): {last}"
        return st

    def cleanup(self):
        """Tear everything down; the problems daemon_problems() finds (a failed answer, a
        sanitizer report), for the fixture to fail the test with."""
        for mp in reversed(mounts_of(self.root + "/")):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        pids = self.holders()
        kill_all(pids, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 5)
        problems = daemon_problems(self.run_dir, self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


@pytest.fixture
def dctl():
    e = DaemonEnv()
    try:
        yield e
    finally:
        problems = e.cleanup()
    # A teardown failure is an error of the test: it fails the run even when the test passed.
    assert not problems, "\n".join(problems)
