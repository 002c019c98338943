# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""pytest plugin (loaded by tests/run-check with -p results_log): one line per test appended
to $LAZYEROFS_TEST_LOG as it happens, "start NODEID" and then "passed|failed|skipped NODEID",
so the run's count never depends on pytest finishing (a killed or crashed pytest still leaves
what ran, and the test it was in)."""

import os

_outcomes = {}


def _write(line):
    path = os.environ.get("LAZYEROFS_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def pytest_runtest_logstart(nodeid, location):
    _outcomes[nodeid] = "passed"
    _write(f"start {nodeid}")


def pytest_runtest_logreport(report):
    # A failure or error in any phase (setup, call, teardown) fails the test; a skip in setup
    # or call skips it.
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and _outcomes.get(report.nodeid) != "failed":
        _outcomes[report.nodeid] = "skipped"


def pytest_runtest_logfinish(nodeid, location):
    _write(f"{_outcomes.pop(nodeid, 'failed')} {nodeid}")
