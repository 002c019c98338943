# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Deliberately broken (tests/run-check, LAZYEROFS_CHECK_SELFTEST=1): tests that never end.
The harness must report each as a failure by name and go on with the other tests."""

import signal
import time


def test_hangs():
    # Interruptible: pytest-timeout's alarm ends it.
    time.sleep(10 ** 6)


def test_hangs_blocked():
    # Like a read stuck in a wait only a fatal signal ends: the alarm cannot interrupt it,
    # the harness's watchdog kills pytest and runs what is left.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(10 ** 6)


def test_after_the_hangs():
    pass
