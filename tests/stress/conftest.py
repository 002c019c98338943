# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""`make stress`: long runs, not part of `make check`. They use the integration tests'
fixtures (real registry, fault proxy, real lazy mounts) from tests/integration/lib."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration", "lib"))

pytest_plugins = [
    "common",
    "registry",
    "faultproxy",
    "webserver",
    "trees",
    "lazymount",
    "daemonctl",
]
