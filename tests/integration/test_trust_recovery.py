# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A read started after the registry recovers succeeds. After a failed fetch, the kernel's
follow-up reads of the same bytes fail fast, but the first of them probes the registry with
one fetch attempt (the others wait for its outcome): once the registry answers again, reads
succeed at once, with no window to wait out. Every read gets the right bytes or EIO, never
zeros; reads run in child processes so a hang is a named failure."""

import errno
import os
import signal

import pytest

from common import child_read, wait_until
from lazymount import build_big_image
from registry import MT_EROFS

MiB = 1 << 20


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    image, tree = build_big_image(str(tmp_path_factory.mktemp("recovery")), files=2, mib=16)
    with open(os.path.join(tree, "data", "r0.bin"), "rb") as f:
        return image, f.read()


def assert_eio(path, off, data, timeout):
    """A cold read with the registry unavailable: EIO, never bytes that are not the file's."""
    try:
        got = child_read(path, off, 4096, timeout=timeout)
    except OSError as e:
        assert e.errno == errno.EIO, e
        return
    assert got == data[off:off + 4096], "wrong bytes (zeros?) while the registry was down"
    pytest.fail("a cold read succeeded with the registry down")


def settled(lazy, mp):
    st = wait_until(lambda: (lambda s: s if s["pending"] == 0 and s["answers"] == s["events"]
                             else None)(lazy.status_of(mp)), 30)
    assert st, lazy.status_of(mp)
    return st


@pytest.mark.parametrize("outage", ["stopped", "restarted"])
def test_a_read_right_after_recovery_succeeds(lazy, private_registry, big, outage):
    reg = private_registry
    image, data = big
    reg.client.push_image("rec/big", "v1", [(image, MT_EROFS)])
    mp = lazy.mount(reg.ref("rec/big", "v1"), opts="insecure,timeout=3")
    path = mp + "/data/r0.bin"
    if outage == "stopped":
        os.killpg(reg.proc.pid, signal.SIGSTOP)  # stalls: connections hang
    else:
        reg.stop()  # refused
    # A cold read fails (the deadline, or the refusals), and so do the kernel's follow-ups
    # and a second read of the same bytes right after.
    assert_eio(path, 8 * MiB, data, 60)
    assert_eio(path, 8 * MiB + 4096, data, 60)
    assert lazy.status_of(mp)["errors"] > 0
    if outage == "stopped":
        os.killpg(reg.proc.pid, signal.SIGCONT)
    else:
        reg.start()
    # At once, inside what used to be the fail-fast window: the right bytes.
    assert child_read(path, 8 * MiB, 4096, timeout=60) == data[8 * MiB:8 * MiB + 4096]
    assert child_read(path, timeout=120) == data
    settled(lazy, mp)
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_reads_during_an_outage_fail_fast_and_never_give_zeros(lazy, private_registry, big):
    reg = private_registry
    """With the registry refusing connections, a cold sequential read fails with EIO, never
    zeros; the kernel's retries of the failed pages each cost one probe (a single refused
    attempt) instead of a deadline each. Once the registry is back the file reads right."""
    image, data = big
    reg.client.push_image("rec/seq", "v1", [(image, MT_EROFS)])
    mp = lazy.mount(reg.ref("rec/seq", "v1"), opts="insecure,timeout=3")
    reg.stop()
    with pytest.raises(OSError) as e:
        child_read(mp + "/data/r0.bin", timeout=60)
    assert e.value.errno == errno.EIO
    st = settled(lazy, mp)
    assert st["errors"] > 0 and st["denied"] > 0
    reg.start()
    assert child_read(mp + "/data/r0.bin", timeout=120) == data
    lazy.umount(mp)
    lazy.assert_nothing_left()
