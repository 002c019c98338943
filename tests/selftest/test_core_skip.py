# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Deliberately broken (tests/run-check, LAZYEROFS_CHECK_SELFTEST=1): a core module whose
tests all skip, as the mount tests do without root. pytest exits 0; the harness must count
it as a failure unless LAZYEROFS_ALLOW_SKIP=1."""

import pytest

pytestmark = pytest.mark.skipif(True, reason="stands for 'lazy mounts need root'")


def test_skipped_core():
    pass
