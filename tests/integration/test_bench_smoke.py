# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""bench/link-bench --smoke (issue 10's benchmark in a seconds-long version) runs against the
binary under test and prints every row of its table with a measured value, so the benchmark
never rots between the runs that matter. Its numbers are not checked: small sizes and short
RTTs say nothing about the goals."""

import os
import subprocess

import pytest

from common import BIN, ROOT, fs_type

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the benchmark mounts and needs root")

LINK_BENCH = os.path.join(ROOT, "bench", "link-bench")
ROWS = ["readers", "wait", "present", "seq-loop", "seq-link", "warm-seq", "warm-rand",
        "mount-loop", "mount-link", "programs", "rss"]


def test_link_bench_smoke():
    out_dir = os.path.join(ROOT, "bench", "out")
    os.makedirs(out_dir, exist_ok=True)
    if fs_type(out_dir) not in ("ext2/ext3", "ext4", "xfs", "btrfs"):
        pytest.skip(f"bench/out is on {fs_type(out_dir)}: no pre-content marks there")
    r = subprocess.run(["/usr/bin/python3", LINK_BENCH, "--smoke"], capture_output=True,
                       text=True, timeout=240, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, LAZYEROFS_BIN=BIN))
    assert r.returncode == 0, \
        f"link-bench --smoke exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    lines = r.stdout.splitlines()
    head = [i for i, l in enumerate(lines) if l.startswith("row ") and "measure" in l]
    assert head, f"no table in the output:\n{r.stdout[-3000:]}"
    table = {l.split()[0]: l for l in lines[head[0] + 2:] if l.strip()}
    for name in ROWS:
        assert name in table, f"row {name} missing from the table:\n{r.stdout[-3000:]}"
        assert "FAILED" not in table[name] and "not run" not in table[name], table[name]
        assert " yes " in table[name] or " no " in table[name], table[name]
    assert "delay-proxy check" in r.stdout
