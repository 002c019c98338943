# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A holder forked by the worker while one of the worker's threads holds a lock of the cache
entry (the housekeeper's bitmap flush, in fdatasync) gets a copy of that lock, held for ever.
The worker that holder forks after the first worker dies must not inherit it: it re-creates
the entry's locks, and answers reads (it blocked in cache_entry_reload before serving one
event: reads, status and umount hung). Timing-bound (the holder is killed while the flush
of ~160 MiB of fetched data is in fdatasync), so it lives here, not in `make check`."""

import os
import signal
import subprocess
import time

import pytest

from common import child_read, pid_alive, wait_until
from lazymount import build_big_image
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20
FDATASYNC = "75"


@pytest.fixture(scope="module")
def big(registry, tmp_path_factory):
    image, tree = build_big_image(str(tmp_path_factory.mktemp("forklocks")), files=2, mib=160)
    registry.client.push_image("stress/fork", "v1", [(image, MT_EROFS)])
    return registry.ref("stress/fork", "v1"), tree


def thread_of(pid, name):
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    return int(tid)
        except OSError:
            pass
    return None


def syscall_of(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return None


@pytest.mark.parametrize("round_", range(3))
def test_a_holder_forked_during_a_flush_leaves_its_worker_no_held_lock(lazy, big, round_):
    ref, tree = big
    mp = lazy.mount(ref, opts="insecure,timeout=20")
    st0 = lazy.status_of(mp)
    holder, worker = st0["pid"], st0["worker_pid"]
    house = thread_of(worker, "lzfetch-house")
    assert house, "no housekeeper thread"
    reader = subprocess.Popen(["dd", f"if={mp}/data/r0.bin", "of=/dev/null", "bs=1M"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = False
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if syscall_of(worker, house) == FDATASYNC:
            os.kill(holder, signal.SIGKILL)
            caught = True
            break
    reader.wait(timeout=120)
    if not caught:
        pytest.skip("the housekeeper was never caught in fdatasync")
    st1 = wait_until(lambda: (lambda s: s if s["pid"] != holder and pid_alive(s["pid"])
                              else None)(lazy.status_of(mp)), 30)
    assert st1, "no new holder"
    os.kill(worker, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(worker), 30)
    # The replacement worker answers a cold read with the right bytes, within timeout=.
    got = child_read(mp + "/data/r1.bin", 0, MiB, timeout=40)
    with open(tree + "/data/r1.bin", "rb") as f:
        assert got == f.read(MiB)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)
