# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The command line's global contract: --help, --version, -v, exit codes for bad usage."""

import pytest

from common import run, assert_one_line_error

SUBCOMMANDS = ["mount", "umount", "status", "push", "inspect"]


def test_version():
    r = run(["--version"])
    assert r.returncode == 0
    assert r.stdout.startswith("lazyerofs ")


def test_help_lists_every_command():
    r = run(["--help"])
    assert r.returncode == 0
    for c in SUBCOMMANDS:
        assert f"  {c} " in r.stdout


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help(cmd):
    r = run([cmd, "--help"])
    assert r.returncode == 0, r.stderr
    assert "Usage: lazyerofs " + cmd in r.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["--bogus"]])
def test_usage_errors(args):
    assert_one_line_error(run(args), 1)


@pytest.mark.parametrize("cmd,code", [("mount", 1), ("umount", 1), ("push", 1), ("inspect", 1)])
def test_subcommand_unknown_option(cmd, code):
    assert_one_line_error(run([cmd, "--no-such-option"]), code)
