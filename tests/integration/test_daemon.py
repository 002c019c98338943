# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The fetch daemon on its own (no mount CLI), against the real registry: reads through a
fresh fd of the marked cache file raise fanotify events the daemon serves; correctness of the
bytes, exactly one answer per event, coalescing, deadlines (EIO, never zeros) and recovery,
a worker killed mid-read, prefetch=all with verification or a bad entry, the lifetime of the
daemon around real file-backed EROFS mounts (umount, umount -l with an open file), and a
cache directory on tmpfs.

Every read of the marked file or of a mount happens in another process (daemon-ctl, or
child_read/child_hashes) under a deadline: an event the daemon never answers blocks its
reader, and the test fails naming it instead of hanging the run. That is also the witness
from outside the daemon that each event got its answer; its own counters are compared only
once it settled (dctl.settled). The dctl fixture fails any test whose daemon logged a failed
answer or whose processes left a sanitizer report. Tests marked `san` run against the
SANITIZE=address,undefined build in `make check`."""

import ctypes
import errno
import hashlib
import os
import random
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common import BIN, FIXTURES, child_hashes, child_read, content_hashes, events_taken_over
from daemonctl import pid_alive, wait_until
from registry import MT_EROFS

MiB = 1 << 20
MS_RDONLY = 1
libc = ctypes.CDLL(None, use_errno=True)


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def blob(registry):
    """A random 24 MiB + 12345 byte blob as the EROFS layer of daemon/blob:v1."""
    data = os.urandom(24 * MiB + 12345)
    im = registry.client.push_image("daemon/blob", "v1", [(data, MT_EROFS)])
    digest = im["layers"][0]["digest"]
    return data, digest, f"{digest}:{len(data)}"


def status(dctl, ref, **kw):
    _, out, _ = dctl.ctl(ref, "status", **kw)
    assert out[0]["ok"], out
    return out[0]


def status_now(dctl, socket):
    """The daemon's status, or None while it does not answer (its worker being replaced)."""
    try:
        out = dctl.sock(socket, "status", check=False)
    except (subprocess.TimeoutExpired, ValueError):
        return None
    return out[0] if out and out[0].get("ok") else None


# What the daemon logs once it decided to leave (control.c).
LEAVING = "no superblock or client uses the entry any more"


def client_connections(worker):
    """How many client connections the daemon's worker still has open on its sockets: an
    accepted socket is listed in /proc/net/unix under its listener's name, connected (state
    03), until the worker closes it, also after its client is gone. The worker drops a
    client's hold before it closes the connection."""
    inodes = set()
    for fd in os.listdir(f"/proc/{worker}/fd"):
        try:
            link = os.readlink(f"/proc/{worker}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows
               if len(r) >= 8 and r[6] in inodes and r[5] == "03" and r[7].endswith(".sock"))


def release_holder(dctl, holder, socket):
    """End the background client that holds the daemon and wait until the daemon let go of
    its connection (and with it its hold). The client's end of its pipes must come: the
    daemon inherits none of them."""
    worker = dctl.sock(socket, "status")[0]["worker_pid"]
    try:
        dctl.finish(holder, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the holding client's pipes stayed open: inherited by the daemon?")
    assert wait_until(lambda: client_connections(worker) == 0, 60), \
        f"the daemon never closed the holding client's connection ({client_connections(worker)})"


@pytest.mark.san
def test_cold_reads_are_right_and_every_event_answered_once(dctl, registry, blob):
    data, digest, _ = blob
    ref = registry.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)
    ranges = [(0, 4096), (5 * MiB + 100, 70000), (len(data) - 1000, 1000), (3 * MiB, 10),
              (3 * MiB + 4096, 100), (len(data) - 10, 50)]
    cmds = []
    for o, l in ranges:
        cmds += ["read", o, l]
    _, out, _ = dctl.ctl(ref, *cmds)
    for (o, l), r in zip(ranges, out):
        assert r["ok"], r
        assert r["sha256"] == sha(data[o:o + l]), (o, l)
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] >= len(ranges) - 1
    assert st["denied"] == 0
    # Lazy: a few chunks (plus a read-ahead window: the reads at 3 MiB look sequential), not
    # the whole blob.
    assert 0 < st["fetched_bytes"] <= 12 * MiB
    assert st["present_bytes"] <= st["fetched_bytes"]
    assert st["digest"] == digest and st["size"] == len(data) and st["state"] == "running"
    _, out, _ = dctl.ctl(ref, "readall")
    ra = out[0]
    assert ra["ok"] and ra["sha256"] == sha(data) and ra["bytes"] == len(data)
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] and st["denied"] == 0
    # Never a present block fetched again: the fetched bytes add up to the blob exactly.
    assert st["fetched_bytes"] == len(data) == st["present_bytes"]
    dctl.finish(holder)

    # Nobody holds the daemon any more: it leaves at once, with its sockets.
    assert wait_until(lambda: not dctl.holders(), 10), dctl.holders()
    assert sorted(os.listdir(dctl.run_dir)) == [f"daemon-{digest[7:]}.log"]

    # The entry was verified on the way out: the next daemon needs no mark and no registry.
    _, out, _ = dctl.ctl(ref, "read", 5 * MiB, 4096, "status")
    assert out[0]["ok"] and out[0]["sha256"] == sha(data[5 * MiB:5 * MiB + 4096])
    st = out[1]
    assert st["state"] == "verified" and st["marked"] is False
    assert st["requests"] == 0 and st["fetched_bytes"] == 0 and st["events"] == 0


def test_bitmap_survives_restart_and_nothing_is_fetched_twice(dctl, registry, blob):
    data, _, _ = blob
    ref = registry.ref("daemon/blob", "v1")
    _, out, _ = dctl.ctl(ref, "read", 7 * MiB, 8192, "status")
    first = out[1]["fetched_bytes"]
    assert out[0]["sha256"] == sha(data[7 * MiB:7 * MiB + 8192]) and first > 0
    assert wait_until(lambda: not dctl.holders(), 10)
    # A new daemon: the persisted bitmap says the chunk is there.
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)
    _, out, _ = dctl.ctl(ref, "read", 7 * MiB + 100, 8192)
    assert out[0]["sha256"] == sha(data[7 * MiB + 100:7 * MiB + 100 + 8192])
    st = dctl.settled(info["socket"])
    assert st["fetched_bytes"] == 0 and st["requests"] == 0
    # At least what the first had when asked: a read goes on once its own bytes are there,
    # and the rest of its request may still have been arriving.
    assert st["present_bytes"] >= first
    assert st["events"] == st["answers"] == st["fast_answers"] == 1
    dctl.finish(holder)


@pytest.mark.san
def test_two_readers_of_one_chunk_cause_one_request(dctl, faultproxy, blob):
    data, _, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=1.0, count=None)
    # 1 MiB chunks: the two reads, their kernel readahead and the read-ahead window their
    # closeness starts all stay inside one chunk.
    chunk = ("--chunk", str(MiB))
    holder = dctl.ctl_bg(ref, "info", "wait-stdin", extra=chunk)
    dctl.read_line(holder)
    faultproxy.reset_counts()
    a = dctl.ctl_bg(ref, "read", 9 * MiB + 4096, 4096, extra=chunk)
    b = dctl.ctl_bg(ref, "read", 9 * MiB + 300000, 5000, extra=chunk)
    _, ra, _ = dctl.finish(a)
    _, rb, _ = dctl.finish(b)
    assert ra[0]["ok"] and ra[0]["sha256"] == sha(data[9 * MiB + 4096:9 * MiB + 8192])
    assert rb[0]["ok"] and rb[0]["sha256"] == sha(data[9 * MiB + 300000:9 * MiB + 305000])
    assert faultproxy.count(method="GET", ranged=True) == 1, faultproxy.seen()
    dctl.finish(holder)


def test_an_ensure_batch_is_one_request_until_the_range_header_is_full(dctl, faultproxy, blob):
    """An ensure batch of scattered ranges (the mount's metadata waves) goes out as ONE
    multi-range request: a registry's cost is per range, more requests only add round
    trips. Beyond ~7,000 bytes of Range header (nginx refuses lines over 8 KiB) it splits."""
    data, _, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)
    # 200 blocks, 100 KiB apart: no two share a demand chunk, a job or a read-ahead window.
    offs = [i * 100 * 1024 + 512 for i in range(200)]
    faultproxy.reset_counts()
    out = dctl.sock(info["socket"], "ensure", ",".join(f"{o}:3000" for o in offs))
    assert out[0]["ok"], out
    gets = [r for r in faultproxy.seen() if r.method == "GET" and r.range]
    assert len(gets) == 1, [(r.range or "")[:80] for r in gets]
    assert gets[0].range.count(",") == 199, gets[0].range[:200]
    st = dctl.sock(info["socket"], "status")[0]
    assert st["requests"] == 1 and st["present_bytes"] == 200 * 4096, st
    assert st["events"] == 0
    # The bytes are right (read through a fresh fd: events, answered from the bitmap).
    out = dctl.sock(info["socket"], "read", offs[123], 3000)
    assert out[0]["ok"] and out[0]["sha256"] == sha(data[offs[123]:offs[123] + 3000])

    # 1,500 more scattered blocks: ~18 characters of header each, at most ~388 a request.
    offs2 = [i * 16 * 1024 + 8192 for i in range(1500)]
    faultproxy.reset_counts()
    out = dctl.sock(info["socket"], "ensure", ",".join(f"{o}:100" for o in offs2))
    assert out[0]["ok"], out
    gets = [r for r in faultproxy.seen() if r.method == "GET" and r.range]
    assert all(len("Range: " + r.range) <= 7100 for r in gets), [len(r.range) for r in gets]
    assert 4 <= len(gets) <= 5, [len(r.range) for r in gets]
    assert sum(r.range.count(",") + 1 for r in gets) == 1500 - sum(
        1 for o in offs2 if any(a <= o < a + 4096 for a in (x - 512 for x in offs)))
    out = dctl.sock(info["socket"], "read", offs2[777], 100)
    assert out[0]["ok"] and out[0]["sha256"] == sha(data[offs2[777]:offs2[777] + 100])
    dctl.finish(holder)


def test_an_ensure_batch_through_nginx_splits_before_its_header_limit(dctl, webserver):
    """nginx refuses header lines over 8 KiB (large_client_header_buffers): an ensure batch
    of 3,000 scattered ranges goes out in a few requests whose Range headers it accepts,
    as multi-range requests (not one per range), and every byte is right."""
    data = os.urandom(48 * MiB)
    url = webserver.put("daemon/batch.erofs", data)
    holder = dctl.ctl_bg(url, "info", "wait-stdin", opts="")
    info = dctl.read_line(holder)
    offs = [i * 16 * 1024 + 777 for i in range(3000)]
    out = dctl.sock(info["socket"], "ensure", ",".join(f"{o}:200" for o in offs))
    assert out[0]["ok"], out
    st = dctl.sock(info["socket"], "status")[0]
    # ~19 characters of header a range: 8 or 9 requests of ~370 ranges.
    assert 8 <= st["requests"] <= 10 and st["errors"] == 0, (st, dctl.log()[-3000:])
    assert webserver.count(name="daemon/batch.erofs", ranged=True) == st["requests"]
    assert st["present_bytes"] == 3000 * 4096
    for i in (0, 1234, 2999):
        out = dctl.sock(info["socket"], "read", offs[i], 200)
        assert out[0]["ok"] and out[0]["sha256"] == sha(data[offs[i]:offs[i] + 200]), out
    dctl.finish(holder)


def test_data_fd_is_a_read_only_pre_mark_fd(dctl, registry, blob):
    """op data_fd passes a read-only fd of the data file opened before the mark: reads
    through it raise no event (and read zeros where nothing was fetched: only for what an
    ensure made present)."""
    import json
    import socket
    data, _, _ = blob
    ref = registry.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)
    dirfd = os.open(os.path.dirname(info["socket"]), os.O_PATH)
    short = f"/proc/self/fd/{dirfd}/{os.path.basename(info['socket'])}"
    out = dctl.sock(info["socket"], "ensure", f"{5 * MiB}:8192")
    assert out[0]["ok"], out
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(short)
        s.sendall(b'{"op":"data_fd"}\n')
        msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
    os.close(dirfd)
    assert json.loads(msg)["ok"] is True and len(fds) == 1
    fd = fds[0]
    try:
        assert os.fstat(fd).st_ino == os.stat(info["data_path"]).st_ino
        with pytest.raises(OSError):
            os.pwrite(fd, b"x", 0)
        assert os.pread(fd, 8192, 5 * MiB) == data[5 * MiB:5 * MiB + 8192]
        assert os.pread(fd, 4096, 20 * MiB) == bytes(4096)  # absent: a hole, no fetch
    finally:
        os.close(fd)
    st = dctl.sock(info["socket"], "status")[0]
    assert st["events"] == 0 and st["present_bytes"] == 8192, st
    dctl.finish(holder)


def test_a_slow_range_does_not_block_other_readers(dctl, faultproxy, blob):
    """A fetch that does not come back (held at the proxy until the end) blocks only its own
    reader: a read of another range is served meanwhile."""
    data, _, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    held, gate = threading.Event(), threading.Event()

    def hold(seen):
        held.set()
        gate.wait(120)

    faultproxy.add("hook", path="/blobs/", method="GET", range=r"^bytes=16777216-",
                   count=None, fn=hold)
    try:
        holder = dctl.ctl_bg(ref, "info", "wait-stdin")
        dctl.read_line(holder)
        slow = dctl.ctl_bg(ref, "read", 16 * MiB + 5, 100)
        # The slow reader's fetch is at the proxy, and stays there.
        assert held.wait(60), ("the slow range was never fetched", faultproxy.seen())
        _, out, _ = dctl.ctl(ref, "read", 2 * MiB + 7, 100)
        assert out[0]["ok"] and out[0]["sha256"] == sha(data[2 * MiB + 7:2 * MiB + 107])
        assert slow.poll() is None  # still waiting for its held range
    finally:
        gate.set()
    _, out, _ = dctl.finish(slow)
    assert out[0]["ok"] and out[0]["sha256"] == sha(data[16 * MiB + 5:16 * MiB + 105])
    dctl.finish(holder)


def test_registry_down_gives_eio_within_deadline_then_recovers(dctl, registry, blob):
    data, _, spec = blob
    ref = registry.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin", timeout=3)
    info = dctl.read_line(holder)
    registry.stop()
    try:
        _, out, _ = dctl.ctl(ref, "read", 12 * MiB, 4096, "read", 12 * MiB, 4096,
                             extra=["--blob", spec])
        for r in out[:2]:
            # EIO, not zeros and not a hang
            assert not r["ok"] and r["errno"] == errno.EIO, r
        # The first read tries until its 3 s deadline. How fast the same bytes asked again
        # fail (one probe, tests/unit/fetch/test_sched.c) is measured by bench/fail-bench.
        assert out[0]["ms"] >= 2500, out[0]
        st = dctl.settled(info["socket"])
        assert st["denied"] >= 2 and st["events"] == st["answers"]
    finally:
        registry.start()
    # At once, inside what used to be a fail-fast window: the probe finds the registry back.
    _, out, _ = dctl.ctl(ref, "read", 12 * MiB, 4096)
    assert out[0]["ok"] and out[0]["sha256"] == sha(data[12 * MiB:12 * MiB + 4096])
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"]
    dctl.finish(holder)


@pytest.mark.san
def test_worker_killed_mid_read_is_taken_over_and_never_gives_zeros(dctl, faultproxy, blob):
    """The worker is killed while readers' events are surely in it (their fetches are held
    at the proxy until the kill is done): a replacement takes them over and every reader gets
    its bytes, never zeros."""
    data, _, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    gate = threading.Event()
    faultproxy.add("hook", path="/blobs/", method="GET", range=".", count=None,
                   fn=lambda seen: gate.wait(120))
    try:
        holder = dctl.ctl_bg(ref, "info", "status", "wait-stdin")
        info = dctl.read_line(holder)
        before = dctl.read_line(holder)
        assert before["restarts"] == 0, before
        wanted = [(4 * MiB + 123, 300000), (11 * MiB, 4096), (17 * MiB + 5000, 2 * MiB)]
        readers = [dctl.ctl_bg(ref, "read", o, l) for o, l in wanted]
        busy = wait_until(lambda: (lambda s: s if s and s["pending"] >= 1 else None)(
            status_now(dctl, info["socket"])), 60)
        assert busy, ("no event reached the worker", status_now(dctl, info["socket"]))
        os.kill(before["worker_pid"], signal.SIGKILL)
        after = wait_until(lambda: (lambda s: s if s and s["restarts"] >= 1 else None)(
            status_now(dctl, info["socket"])), 60)
        assert after, ("no replacement worker", status_now(dctl, info["socket"]), dctl.log())
    finally:
        gate.set()
    for (off, length), reader in zip(wanted, readers):
        _, out, err = dctl.finish(reader)
        assert out[0]["ok"], (out, err, dctl.log())
        assert out[0]["sha256"] != sha(bytes(length)), "zeros after the worker died"
        assert out[0]["sha256"] == sha(data[off:off + length]), "wrong bytes after the worker died"
    st = dctl.settled(info["socket"])
    assert st["restarts"] >= 1 and st["worker_pid"] != before["worker_pid"]
    assert st["pid"] == before["pid"]
    # The replacement says it took over the event(s) the dead worker held.
    took, events = events_taken_over(dctl.log())
    assert took and events >= 1, (took, dctl.log())
    # And the replacement serves new reads.
    _, out, _ = dctl.ctl(ref, "read", 20 * MiB, 4096)
    assert out[0]["sha256"] == sha(data[20 * MiB:20 * MiB + 4096])
    dctl.finish(holder)


@pytest.mark.san
def test_many_concurrent_readers_each_get_their_bytes(dctl, faultproxy, blob):
    """The witness from outside the daemon: 64 readers of distinct cold ranges and 16 more of
    ranges already asked for, each its own process reading the marked file at once (held at
    the proxy until all have started). An event never answered would leave its reader
    blocked in the kernel: it fails by its deadline, with the range named."""
    data, _, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    gate = threading.Event()
    faultproxy.add("hook", path="/blobs/", method="GET", range=".", count=None,
                   fn=lambda seen: gate.wait(120))
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)
    rnd = random.Random(64)
    span = len(data) // 64
    ranges = []
    for i in range(64):
        n = rnd.randrange(1, 100000)
        ranges.append((i * span + rnd.randrange(span - n), n))
    ranges += rnd.sample(ranges, 16)
    try:
        with ThreadPoolExecutor(len(ranges)) as ex:
            futs = [ex.submit(child_read, info["data_path"], o, n, 180) for o, n in ranges]
            # Every distinct range has an event waiting in the daemon before any fetch may
            # complete: all of them are answered while many are outstanding at once.
            waiting = wait_until(lambda: (lambda s: s and s["pending"] >= 64)(
                status_now(dctl, info["socket"])), 120)
            assert waiting, status_now(dctl, info["socket"])
            gate.set()
            results = []
            for (o, n), f in zip(ranges, futs):
                try:
                    results.append((o, n, f.result()))
                except (AssertionError, OSError) as e:
                    results.append((o, n, e))
    finally:
        gate.set()
    failed = [f"[{o}, +{n}): {r}" for o, n, r in results if not isinstance(r, bytes)]
    assert not failed, f"{len(failed)} of {len(ranges)} readers failed:\n" + "\n".join(failed)
    wrong = [(o, n) for o, n, r in results if r != data[o:o + n]]
    assert not wrong, f"wrong bytes for {wrong}"
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] >= 64 and st["denied"] == 0, st
    dctl.finish(holder)


@pytest.mark.san
def test_large_jobs_land_every_byte_in_its_place(dctl, faultproxy, blob):
    """A large job's bytes are written in stages aligned in the blob, not in the pieces
    libcurl hands over. With a few blocks present already, a long read's jobs start and
    break off where no stage boundary is (the pieces straddle them) and go as multi-range
    requests (parts of odd lengths); one of them loses its connection at an odd byte and its
    retry goes on where the stage was. Every read gets exactly its bytes, and what the daemon
    claims present is what the blob holds there."""
    data, _, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)
    present = [(5 * MiB, 3 * 4096), (7 * MiB + 4096, 2 * 4096), (9 * MiB + 25 * 4096, 4096),
               (14 * MiB + 7 * 4096, 4096)]
    _, out, _ = dctl.ctl(ref, "ensure", ",".join(f"{o}:{n}" for o, n in present))
    assert out[0]["ok"], out
    reset = faultproxy.add("reset", path="/blobs/", method="GET", range=".",
                           after=3 * MiB + 4567, count=1)
    ranges = [(5 * MiB, 12 * MiB + 777), (MiB + 5 * 4096, 3 * MiB + 1),
              (len(data) - 3 * MiB - 3 * 4096, 3 * MiB + 3 * 4096)]
    cmds = []
    for o, n in ranges:
        cmds += ["read", o, n]
    _, out, _ = dctl.ctl(ref, *cmds)
    for (o, n), r in zip(ranges, out):
        assert r["ok"] and r["sha256"] == sha(data[o:o + n]), (o, n, r)
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] and st["denied"] == 0, st
    assert reset.fired == 1, reset  # a job broke off mid-way
    dctl.finish(holder)
    _, out, _ = dctl.ctl(ref, "readall")
    assert out[0]["ok"] and out[0]["sha256"] == sha(data), out[0]


@pytest.mark.san
def test_prefetch_all_verifies_and_drops_the_mark(dctl, registry, blob):
    data, digest, _ = blob
    ref = registry.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin", extra=["--prefetch-all"])
    info = dctl.read_line(holder)
    st = wait_until(lambda: (lambda s: s if s["state"] == "verified" else None)(status(dctl, ref)),
                    60, step=0.2)
    assert st, status(dctl, ref)
    assert st["marked"] is False and st["present_bytes"] == len(data)
    assert st["fetched_bytes"] == len(data)
    st = dctl.settled(info["socket"])
    events = st["events"]
    assert events == st["answers"]
    # Without the mark, reads raise no events at all.
    _, out, _ = dctl.ctl(ref, "read", 0, 1 << 20)
    assert out[0]["sha256"] == sha(data[:1 << 20])
    st = dctl.settled(info["socket"])
    assert st["events"] == events == st["answers"]
    dctl.finish(holder)


def test_prefetch_all_through_a_corrupting_proxy_marks_the_entry_bad(dctl, registry, faultproxy,
                                                                      blob):
    data, digest, _ = blob
    ref = faultproxy.ref("daemon/blob", "v1")
    faultproxy.add("corrupt", path="/blobs/", method="GET", range=".", offsets=[5 * MiB + 17],
                   count=None)
    holder = dctl.ctl_bg(ref, "info", "wait-stdin", extra=["--prefetch-all"])
    info = dctl.read_line(holder)

    def bad():
        st = dctl.sock(info["socket"], "status")[0]
        return st if st["state"] == "bad" else None

    # The bad daemon stays reachable by its own socket for its users.
    st = wait_until(bad, 60, step=0.2)
    assert st, (dctl.sock(info["socket"], "status"), dctl.log())
    assert st["present_bytes"] == len(data)
    assert "digest mismatch" in dctl.log()
    key = digest[7:]
    names = os.listdir(os.path.join(dctl.cache, "sha256"))
    assert key not in names and any(n.startswith(key + ".bad-") for n in names), names
    # A new user never gets the bad entry: a fresh daemon and entry, right bytes.
    _, out, _ = dctl.ctl(registry.ref("daemon/blob", "v1"), "status", "read", 5 * MiB, 4096)
    assert out[0]["pid"] != info["pid"] and out[0]["state"] == "running"
    assert out[0]["present_bytes"] == 0
    assert out[1]["sha256"] == sha(data[5 * MiB:5 * MiB + 4096])
    dctl.finish(holder)
    # The bad copy is removed when its daemon leaves.
    assert wait_until(lambda: not any(".bad-" in n for n in os.listdir(
        os.path.join(dctl.cache, "sha256"))), 15)


def test_cache_on_tmpfs_is_refused_clearly(dctl, registry, blob):
    d = tempfile.mkdtemp(prefix="lzd-", dir="/dev/shm")
    try:
        os.chmod(d, 0o700)
        assert subprocess.run(["stat", "-f", "-c", "%T", d], capture_output=True,
                              text=True).stdout.strip() == "tmpfs"
        rc, out, err = dctl.ctl(registry.ref("daemon/blob", "v1"), "info", check=False,
                                cache=os.path.join(d, "cache"))
        assert rc == 2, err
        assert "tmpfs" in err and "cache=DIR" in err and "pre-content" in err, err
        assert len(err.strip().splitlines()) == 1
        assert not dctl.holders()
        assert not [n for n in os.listdir(dctl.run_dir) if n.endswith(".sock")]
    finally:
        subprocess.run(["rm", "-rf", d])


# ---- real file-backed EROFS mounts of the cache file ------------------------------------------

@pytest.fixture(scope="module")
def plain_image(registry):
    """tests/fixtures/plain.erofs pushed as a layer, with its metadata extents."""
    path = os.path.join(FIXTURES, "plain.erofs")
    with open(path, "rb") as f:
        data = f.read()
    registry.client.push_image("daemon/plain", "v1", [(data, MT_EROFS)])
    r = subprocess.run([BIN, "inspect", "--extents", path], capture_output=True, text=True,
                       check=True)
    spec = ",".join(f"{o}:{l}" for o, l in (line.split() for line in r.stdout.splitlines()))
    return path, registry.ref("daemon/plain", "v1"), spec


def mount_file(src, mp):
    if libc.mount(src.encode(), mp.encode(), b"erofs", MS_RDONLY, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {src} on {mp}: {os.strerror(e)}")


@pytest.fixture
def reference_tree(plain_image, tmp_path):
    """The fixture image mounted directly (no daemon) for comparison."""
    mp = str(tmp_path / "ref")
    os.mkdir(mp)
    mount_file(plain_image[0], mp)
    try:
        yield mp
    finally:
        subprocess.run(["umount", "-l", mp])


def held_daemon(dctl, plain_image):
    """A daemon for the plain image, held by a background client that has ensured the whole
    image: (ref, mountpoint to use, the holding client, the daemon's info)."""
    _, ref, spec = plain_image
    mp = os.path.join(dctl.root, "mnt")
    os.mkdir(mp)
    holder = dctl.ctl_bg(ref, "ensure", spec, "info", "wait-stdin")
    assert dctl.read_line(holder)["ok"]
    return ref, mp, holder, dctl.read_line(holder)


@pytest.mark.san
def test_daemon_lives_as_long_as_an_attached_mount(dctl, plain_image, reference_tree):
    ref, mp, holder, info = held_daemon(dctl, plain_image)
    mount_file(info["data_path"], mp)
    _, out, _ = dctl.ctl(ref, "attach", mp)
    assert out[0]["ok"], out
    # The caller's pipes are not inherited by the daemon: this returns while it lives on.
    release_holder(dctl, holder, info["socket"])
    assert pid_alive(info["pid"])
    # Every file reads right through the lazily filled cache file: the daemon serves them.
    assert child_hashes(mp) == content_hashes(reference_tree)
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] > 0 and st["mounts"] == 1
    assert pid_alive(info["pid"]) and LEAVING not in dctl.log(), dctl.log()
    # umount(8) without any detach: the superblock's end ends the daemon.
    subprocess.run(["umount", mp], check=True)
    assert wait_until(lambda: not pid_alive(info["pid"]), 60), dctl.log()
    assert not [n for n in os.listdir(dctl.run_dir) if n.endswith(".sock")]


@pytest.mark.san
def test_lazy_umount_with_an_open_file_keeps_serving_it(dctl, plain_image, reference_tree):
    ref, mp, holder, info = held_daemon(dctl, plain_image)
    mount_file(info["data_path"], mp)
    _, out, _ = dctl.ctl(ref, "attach", mp)
    assert out[0]["ok"], out
    want = content_hashes(reference_tree)
    big = max(want, key=lambda p: os.path.getsize(reference_tree + p))  # keys start with "/"
    fd = os.open(mp + big, os.O_RDONLY)
    release_holder(dctl, holder, info["socket"])
    subprocess.run(["umount", "-l", mp], check=True)
    assert pid_alive(info["pid"]), dctl.log()
    # The file is still served, with its data fetched now (it was never read before): read
    # in a child through our open file (/proc/PID/fd reopens it on the detached mount).
    assert sha(child_read(f"/proc/{os.getpid()}/fd/{fd}")) == want[big]
    st = dctl.settled(info["socket"])
    assert st["fetched_bytes"] > 0 and st["events"] == st["answers"]
    assert pid_alive(info["pid"]) and LEAVING not in dctl.log(), dctl.log()
    os.close(fd)
    # The last close releases the superblock, and the daemon goes.
    assert wait_until(lambda: not pid_alive(info["pid"]), 60), dctl.log()


def test_a_mount_never_attached_is_found_and_kept_alive(dctl, plain_image, reference_tree):
    """A mount made without telling the daemon (e.g. its helper died after mount(2)) is
    found in mountinfo when the kernel opens the cache file, and keeps the daemon."""
    ref, mp, holder, info = held_daemon(dctl, plain_image)
    mount_file(info["data_path"], mp)
    assert wait_until(lambda: dctl.sock(info["socket"], "status")[0]["mounts"] == 1, 60)
    release_holder(dctl, holder, info["socket"])
    assert pid_alive(info["pid"]), dctl.log()
    assert child_hashes(mp) == content_hashes(reference_tree)
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] > 0 and st["mounts"] == 1, st
    assert pid_alive(info["pid"]) and LEAVING not in dctl.log(), dctl.log()
    subprocess.run(["umount", mp], check=True)
    assert wait_until(lambda: not pid_alive(info["pid"]), 60), dctl.log()


@pytest.mark.san
def test_concurrent_starts_share_one_daemon_and_many_readers_get_right_bytes(dctl, registry, blob):
    data, _, _ = blob
    ref = registry.ref("daemon/blob", "v1")
    rnd = __import__("random").Random(4)
    procs = []
    for i in range(6):
        cmds = ["info"]
        for _ in range(25):
            o = rnd.randrange(len(data))
            cmds += ["read", o, rnd.randrange(1, 300000)]
        procs.append((dctl.ctl_bg(ref, *cmds, "wait-stdin"), cmds))
    pids = set()
    for p, cmds in procs:
        info = dctl.read_line(p)
        pids.add(info["pid"])
        for k in range(25):
            o, l = cmds[2 + 3 * k], cmds[3 + 3 * k]
            r = dctl.read_line(p)
            assert r["ok"], r
            assert r["sha256"] == sha(data[o:o + l]), (o, l)
    assert len(pids) == 1  # six simultaneous starts, one daemon
    st = dctl.settled(info["socket"])
    assert st["events"] == st["answers"] and st["denied"] == 0
    assert st["present_bytes"] <= st["fetched_bytes"] <= len(data)  # read-ahead may be in flight
    for p, _ in procs:
        assert dctl.finish(p)[0] == 0


def test_a_mount_in_another_mount_namespace_is_found(dctl, plain_image, reference_tree):
    """A never-attached mount made in a private mount namespace (a container) is found
    through its opener's /proc/PID/mountinfo; the daemon leaves when that namespace dies."""
    ref, mp, holder, info = held_daemon(dctl, plain_image)
    code = ("import ctypes,sys\n"
            "l=ctypes.CDLL(None,use_errno=True)\n"
            f"r=l.mount({info['data_path']!r}.encode(),{mp!r}.encode(),b'erofs',1,None)\n"
            "print('mounted' if r==0 else 'failed %d' % ctypes.get_errno(),flush=True)\n"
            "sys.stdin.read()\n")
    ns = subprocess.Popen(["unshare", "-m", "--propagation", "private", "/usr/bin/python3", "-c",
                           code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    dctl.procs.append(ns)
    try:
        assert ns.stdout.readline().strip() == "mounted"
        assert not os.path.ismount(mp)  # not in our namespace
        assert wait_until(lambda: dctl.sock(info["socket"], "status")[0]["mounts"] == 1, 60), \
            dctl.log()
        release_holder(dctl, holder, info["socket"])
        assert pid_alive(info["pid"])
        inside = f"/proc/{ns.pid}/root{mp}"
        assert child_hashes(inside) == content_hashes(reference_tree)
        st = dctl.settled(info["socket"])
        assert st["events"] == st["answers"] > 0 and st["mounts"] == 1, st
        assert pid_alive(info["pid"]) and LEAVING not in dctl.log(), dctl.log()
    finally:
        ns.communicate(timeout=60)  # the namespace goes, and its mount with it
    assert wait_until(lambda: not pid_alive(info["pid"]), 60), dctl.log()


def test_control_socket_rejects_bad_requests_and_stays_up(dctl, registry, blob):
    import json
    import socket
    data, _, _ = blob
    ref = registry.ref("daemon/blob", "v1")
    holder = dctl.ctl_bg(ref, "info", "wait-stdin")
    info = dctl.read_line(holder)

    dirfd = os.open(os.path.dirname(info["socket"]), os.O_PATH)
    short = f"/proc/self/fd/{dirfd}/{os.path.basename(info['socket'])}"  # sun_path is short

    def ask(payload):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(short)
            s.sendall(payload)
            buf = b""
            while not buf.endswith(b"\n"):
                b = s.recv(65536)
                if not b:
                    break
                buf += b
            return json.loads(buf) if buf else None

    r = ask(b"this is not json\n")
    assert r["ok"] is False and r["errno"] == errno.EBADMSG
    r = ask(b'{"op":"launch-missiles"}\n')
    assert r["ok"] is False and r["errno"] == errno.EINVAL
    r = ask(json.dumps({"op": "ensure", "ranges": f"{len(data) - 10} 11"}).encode() + b"\n")
    assert r["ok"] is False and r["errno"] == errno.EINVAL and "outside" in r["error"]
    for bad in ("0 x", "0", "0 1 ", " 0 1", "0  1", "-1 5", "0 1 2", [[0, 1]],
                "99999999999999999999999 1"):
        r = ask(json.dumps({"op": "ensure", "ranges": bad}).encode() + b"\n")
        assert r["ok"] is False and r["errno"] == errno.EINVAL, (bad, r)
    r = ask(json.dumps({"op": "attach", "mnt_id": 5}).encode() + b"\n")  # no fd passed
    assert r["ok"] is False and r["errno"] == errno.EINVAL
    # An over-long line is cut off, not buffered without bound.
    try:
        assert ask(b"{" + b" " * (9 << 20)) is None
    except (BrokenPipeError, ConnectionResetError):
        pass
    # Still serving.
    r = ask(json.dumps({"op": "ensure", "ranges": "100 10 0 50"}).encode() + b"\n")
    assert r["ok"] is True
    st = dctl.sock(info["socket"], "status")[0]
    assert st["present_bytes"] == 4096 and st["pid"] == info["pid"]
    os.close(dirfd)
    dctl.finish(holder)
