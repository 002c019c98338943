# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Shared pytest fixtures. Each area keeps its fixtures in tests/integration/lib/<area>.py
and is registered here, so fixtures own every registry, proxy, mount and daemon they start
and tear them down even when a test fails."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))

pytest_plugins = [
    "common",
    "registry",
    "faultproxy",
    "webserver",
    "trees",
    "lazymount",
    "daemonctl",
]


def pytest_configure(config):
    # `make check` runs the tests marked `san` against the SANITIZE=address,undefined build
    # (daemon included), the others against the plain one.
    config.addinivalue_line("markers", "san: run against the sanitizer build in make check")
