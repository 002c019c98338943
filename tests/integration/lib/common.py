# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Basics every integration test uses: the binary under test, fixture images, running it."""

import os
import subprocess

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
