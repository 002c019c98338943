# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The command line's global contract: --help, --version, -v, exit codes for bad usage."""

import os
import subprocess

import pytest

from common import FIXTURES, assert_one_line_error, run

SUBCOMMANDS = ["mount", "umount", "status", "push", "inspect", "profile"]


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


@pytest.mark.parametrize("args,words", [([], ["no command"]),
                                        (["frobnicate"], ["unknown command", "'frobnicate'"]),
                                        (["--bogus"], ["unknown option", "'--bogus'"])])
def test_usage_errors(args, words):
    """Exit 1 (DESIGN.md: usage error) and one line that says what was wrong and where to
    look."""
    r = run(args)
    assert_one_line_error(r, 1)
    for w in words + ["--help"]:
        assert w in r.stderr, (w, r.stderr)


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_unknown_option(cmd):
    """Every subcommand: an unknown option is a usage error (exit 1) naming the subcommand,
    the option and the subcommand's --help."""
    r = run([cmd, "--no-such-option"])
    assert_one_line_error(r, 1)
    line = r.stderr.strip()
    assert line.startswith(f"lazyerofs: {cmd}: "), line
    assert "unknown option '--no-such-option'" in line, line
    assert f"lazyerofs {cmd} --help" in line, line


@pytest.mark.parametrize("cmd", ["umount", "status", "inspect", "fetch", "push"])
def test_every_subcommand_takes_v(cmd):
    """DESIGN.md: -v raises verbosity, after the subcommand's name too (inspect refused it).
    With nothing else given, each fails for what is missing, not for -v."""
    r = run([cmd, "-v"])
    assert "'-v'" not in r.stderr and "unknown option" not in r.stderr, r.stderr


def test_status_with_a_relative_run_dir(lazy):
    """Refused, as mount refuses it (it said "No lazyerofs mounts.", exit 0)."""
    r = lazy.run(["status"], env=dict(lazy.env, LAZYEROFS_RUN_DIR="relative/run"))
    assert_one_line_error(r, 2)
    assert "'relative/run'" in r.stderr and "absolute" in r.stderr, r.stderr


@pytest.mark.parametrize("kind,said", [("link", "symbolic link"), ("file", "Not a directory")])
def test_status_and_umount_with_a_run_dir_mount_refuses(lazy, tmp_path, kind, said):
    """A symbolic link to the run directory, or a file: refused in words, as mount refuses
    them (status said "No lazyerofs mounts.", exit 0, beside live mounts)."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    path = tmp_path / kind
    if kind == "link":
        path.symlink_to(real)
    else:
        path.write_text("")
    env = dict(lazy.env, LAZYEROFS_RUN_DIR=str(path))
    for argv in (["status"], ["status", "--json"]):
        r = lazy.run(argv, env=env)
        assert_one_line_error(r, 2)
        assert f"'{path}'" in r.stderr and said in r.stderr, r.stderr
    mnt = tmp_path / "mnt"  # a mount point (not ours): umount looks at the run directory
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], check=True)
    try:
        r = lazy.run(["umount", str(mnt)], env=env)
        assert_one_line_error(r, 32)
        assert f"'{path}'" in r.stderr and said in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_inspect_takes_its_options_as_the_other_commands_do():
    """--gap BYTES as well as --gap=BYTES, options after the image too (getopt_long, as every
    other subcommand parses them; --gap 100 was an unknown option)."""
    image = os.path.join(FIXTURES, "lz4hc.erofs")
    want = run(["inspect", "--extents", "--gap=8192", image])
    assert want.returncode == 0, want.stderr
    for argv in (["--extents", "--gap", "8192", image], [image, "--gap", "8192", "--extents"]):
        r = run(["inspect", *argv])
        assert (r.returncode, r.stdout) == (0, want.stdout), (argv, r.stderr)
    r = run(["inspect", image, "--gap"])
    assert_one_line_error(r, 1)
    assert "'--gap' needs a value" in r.stderr, r.stderr


def test_mount_takes_its_options_after_the_operands(lazy, registry, tmp_path):
    """`lazyerofs mount SOURCE DIR -o OPTS`, as mount.erofs.lazy takes it (it said "expected
    SOURCE and MOUNTPOINT", both given)."""
    from lazymount import build_busybox_image
    from registry import MT_EROFS
    path, _ = build_busybox_image(str(tmp_path))
    registry.client.push_image("cli/after", "v1", [(path, MT_EROFS)])
    ref = registry.ref("cli/after", "v1")
    mp = lazy.mountpoint("after")
    r = lazy.run(["mount", ref, mp, "-o", "insecure"])
    assert r.returncode == 0, r.stderr
    lazy.umount(mp)
    lazy.assert_nothing_left()
