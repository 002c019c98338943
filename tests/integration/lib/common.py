# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Basics every integration test uses: the binary under test, fixture images, running it,
waiting on conditions, reads in child processes under deadlines, and what fails any test
that ran the daemon (sanitizer options for it and every process it forks; its log lines
and sanitizer reports: daemon_problems)."""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from hashing import content_hashes, sha256_file  # noqa: F401 (the tests import them from here)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BIN = os.environ.get("LAZYEROFS_BIN", os.path.join(ROOT, "build", "lazyerofs"))

FIXTURE_IMAGES = sorted(f[:-len(".erofs")] for f in os.listdir(FIXTURES) if f.endswith(".erofs"))


def run(args, check=False, timeout=120, **kw):
    """Run lazyerofs with args; returns CompletedProcess with text output."""
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"lazyerofs {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def assert_one_line_error(r, code):
    """Bad input: the documented exit code and exactly one clear line on stderr."""
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("lazyerofs: "), lines[0]


@pytest.fixture
def lazyerofs():
    return run


@pytest.fixture(scope="module")
def workdir(request):
    """A scratch directory under /var/tmp for one test module (images, trees, local mounts),
    named after the module, removed after its last test."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    d = tempfile.mkdtemp(prefix=f"lazyerofs-{name}-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES


def wait_until(pred, timeout, step=0.05):
    """pred()'s first true value, or its last value once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def mountinfo():
    """(mount id, mountpoint, fstype, source) of every mount in our namespace."""
    out = []

    def dec(b):  # the kernel's octal escapes (\040 for a space ...); the rest UTF-8 as it is
        b = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), b)
        return b.decode("utf-8", "surrogateescape")

    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            sep = fields.index(b"-")
            out.append((int(fields[0]), dec(fields[4]), fields[sep + 1].decode(),
                        dec(fields[sep + 2])))
    return out


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def control_call(path, msg, timeout=30):
    """One request line to a daemon's control socket; its answer as a dict."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(msg) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "the daemon closed the connection without an answer"
            buf += chunk
    return json.loads(buf)


def pid_alive(pid):
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has exited; only its parent's wait is missing. But a thread-group
            # leader turns zombie as soon as its own thread exits, while the process's other
            # threads may still be exiting -- and its files (sockets, the data file) are
            # released only when the last one has: still alive until then.
            if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def kill_all(pids, sig):
    """Send sig to each of pids that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# --- what fails any test that ran the daemon ----------------------------------------------

# The daemon's log lines that fail any test: an event it could not answer (worker.c), and a
# worker that died other than by the SIGKILL a takeover test sends (holder.c): a crash, or a
# sanitizer's abort.
ANSWER_ERROR = "answering event"
WORKER_DEATH = re.compile(r"worker \d+ killed by signal (\d+)|worker \d+ exited with status (\d+)"
                          r"|the worker died while leaving \(status (0x[0-9a-f]+)\)")
# A replacement worker's account of the events its dead predecessor held (worker.c): a
# takeover test requires one with at least one event.
TAKEOVER = re.compile(r"worker (\d+) took over(?: \(restart \d+\))?: (\d+) event\(s\) to serve again, "
                      r"(\d+) unrecorded one\(s\) denied")


def events_taken_over(log):
    """The events that replacement workers took over, by the daemon log text `log`: the
    'took over' lines and their total (served again and denied)."""
    took = [m[0] for m in TAKEOVER.finditer(log)]
    return took, sum(int(m[2]) + int(m[3]) for m in TAKEOVER.finditer(log))


def sanitizer_env(env, san_dir):
    """env plus sanitizer options for a sanitized binary and every process it forks (the
    daemon, its workers): ASan writes its report to san_dir/san.PID (the daemon's stderr is
    /dev/null). GCC's UBSan beside ASan ignores log_path (it writes to stderr): it aborts
    instead, and the holder logs the worker's SIGABRT. No leak check: the daemon leaves
    through _exit(), and what a forked child still holds then is no leak."""
    env = dict(env)
    path = os.path.join(san_dir, "san")
    for var, opts in (("ASAN_OPTIONS", f"log_path={path}:abort_on_error=1:detect_leaks=0"),
                      ("UBSAN_OPTIONS", f"log_path={path}:halt_on_error=1:abort_on_error=1:"
                                        "print_stacktrace=1"),
                      # `make tsan`: every report is a finding (written, then the run goes on).
                      # (threads still running at the daemon's _exit are no finding)
                      ("TSAN_OPTIONS", f"log_path={path}:report_thread_leaks=0")):
        env[var] = ":".join(o for o in (env.get(var), opts) if o)  # ours win: they come last
    return env


def _bad_death(m):
    if m[1]:
        return int(m[1]) != signal.SIGKILL
    if m[2]:
        return True
    st = int(m[3], 16)
    return (st & 0x7f) not in (0, signal.SIGKILL) or (st & 0x7f == 0 and st >> 8 != 0)


def daemon_problems(run_dir, san_dir):
    """What must fail a test whatever it asserted: a daemon log line saying an event could
    not be answered or a worker crashed, and any sanitizer report. A list of messages (empty:
    all well)."""
    out = []
    for log in sorted(glob.glob(os.path.join(run_dir, "*.log"))):
        try:
            with open(log, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        bad = [line for line in lines if ANSWER_ERROR in line]
        if bad:
            out.append(f"{os.path.basename(log)}: an event was not answered:\n  "
                       + "\n  ".join(bad[:20]))
        bad = [line for line in lines
               if any(_bad_death(m) for m in WORKER_DEATH.finditer(line))]
        if bad:
            out.append(f"{os.path.basename(log)}: a worker crashed (a sanitizer abort is "
                       "SIGABRT, 6):\n  " + "\n  ".join(bad[:20]))
    for rep in sorted(glob.glob(os.path.join(san_dir, "san.*"))):
        try:
            with open(rep, errors="replace") as f:
                text = f.read()
        except OSError as e:
            text = f"(unreadable: {e})"
        out.append(f"sanitizer report {os.path.basename(rep)}:\n{text[-8000:]}")
    return out


# --- reads that could hang run in a child process -------------------------------------------
#
# A read of a lazy mount waits for the daemon's answer to a fanotify permission event. If an
# event were never answered, a read inside the pytest process would hang the whole run; in a
# child it is killed at its deadline (permission waits are killable) and the test fails by
# name. The child is also the witness from outside the daemon that every event got an answer.

_READER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from hashing import content_hashes, sha256_file
op, path = sys.argv[2], sys.argv[3]
try:
    if op == "read":
        off, n = int(sys.argv[4]), int(sys.argv[5])
        fd = os.open(path, os.O_RDONLY)
        out, pos = [], off
        while n < 0 or pos - off < n:
            b = os.pread(fd, (1 << 20) if n < 0 else min(1 << 20, off + n - pos), pos)
            if not b:
                break
            out.append(b)
            pos += len(b)
        sys.stdout.buffer.write(b"".join(out))
    elif op == "sha256":
        sys.stdout.write(sha256_file(path))
    else:
        sys.stdout.write(json.dumps(content_hashes(path)))
except OSError as e:
    sys.stderr.write(f"{e.errno} {e.strerror}: {e.filename}\n")
    sys.exit(3)
"""

CHILD_READ_TIMEOUT = 120


def run_child(script, args, timeout, what):
    """Run a Python script (given this directory as argv[1], then args) in a child process
    under a deadline; (returncode, stdout, stderr). A child that outlives it is killed and
    the test fails naming `what`: an event was never answered."""
    lib = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.Popen(["/usr/bin/python3", "-c", script, lib, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"{what} hung for {timeout} s: an event was never answered") \
            from None
    return p.returncode, out, err


def _child(args, timeout):
    timeout = timeout or CHILD_READ_TIMEOUT
    rc, out, err = run_child(_READER, args, timeout, f"a read of {args[1]} ({args[0]})")
    if rc == 3:
        no, _, msg = err.decode(errors="replace").strip().partition(" ")
        raise OSError(int(no), msg)
    if rc != 0:
        raise AssertionError(f"reader of {args[1]} exited {rc}: {err.decode()!r}")
    return out


def drop_caches(what=3):
    """Written back, then dropped: 1 the page cache, 3 dentries and inodes as well."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(f"{what}\n")


def child_read(path, offset=0, length=-1, timeout=None):
    """The bytes of path at [offset, offset+length) (to EOF if length < 0), read in a child
    process under a deadline; OSError with the reader's errno on a failed read."""
    return _child(["read", path, str(offset), str(length)], timeout)


def child_sha256(path, timeout=None):
    return _child(["sha256", path], timeout).decode()


def child_hashes(root, timeout=None):
    """content_hashes(root), computed in a child process under a deadline."""
    import json
    return json.loads(_child(["tree", root], timeout))
