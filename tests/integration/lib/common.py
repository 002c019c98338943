# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Basics every integration test uses: the binary under test, fixture images, running it."""

import hashlib
import os
import stat
import subprocess
import time

import pytest

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
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            dec = lambda s: s.encode().decode("unicode_escape")  # noqa: E731
            out.append((int(fields[0]), dec(fields[4]), fields[sep + 1], dec(fields[sep + 2])))
    return out


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def pid_alive(pid):
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie has exited; only its parent's wait is missing.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_all(pids, sig):
    """Send sig to each of pids that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hashes(root):
    """sha256 of every regular file under root, by relative path (reads every byte)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(files):
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                out["/" + os.path.relpath(p, root)] = sha256_file(p)
    return out
