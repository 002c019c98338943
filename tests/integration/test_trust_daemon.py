# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Issue 9, the daemon's share: nothing a caller does, no single process death and no race
with a leaving daemon may make a reader see wrong bytes. Every read goes through a child
process (a hang is a named failure) and is compared byte for byte with the source: the right
bytes or an error, never zeros.

- a caller that ignores SIGCHLD (fact 15), then the worker dies;
- holder and worker killed one after the other (either order, SIGKILL or SIGABRT);
- umount; rm -rf the cache; mount at once, while the old daemon is still leaving;
- a worker killed again and again: each event keeps its first deadline, EIO at the end;
- the caller's cgroup killed (cgroup.kill): the daemon lives in a cgroup of its own;
- a dead daemon's sockets are removed by whoever finds them;
- more than 1,024 reads waiting for the registry: a read of present data still goes
  through at once, and a takeover with that many events answers each exactly once;
- 200 mounts of one image."""

import errno
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import time
import uuid

import pytest

from common import BIN, CHILD_READ_TIMEOUT, child_hashes, child_read, mountinfo, pid_alive, wait_until
from lazymount import build_big_image, is_mounted
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

MiB = 1 << 20


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def big(registry, tmp_path_factory):
    """The big image (3 random 16 MiB files) pushed as trust/big:v1: (repo, tree)."""
    image, tree = build_big_image(str(tmp_path_factory.mktemp("trust")))
    registry.client.push_image("trust/big", "v1", [(image, MT_EROFS)])
    return "trust/big", tree


@pytest.fixture(scope="module")
def blob(registry):
    """A random 24 MiB blob as the layer of trust/blob:v1 (for daemon-ctl)."""
    data = os.urandom(24 * MiB)
    registry.client.push_image("trust/blob", "v1", [(data, MT_EROFS)])
    return data


def source(tree, rel):
    with open(tree + rel, "rb") as f:
        return f.read()


def start_reader(path):
    """A background child reading the whole of `path`: finish_reader() gives its bytes' sha256
    and count of zero bytes, or the errno of the failed read."""
    code = ("import sys,hashlib\n"
            "try:\n"
            "    d=open(sys.argv[1],'rb').read()\n"
            "    print('ok', hashlib.sha256(d).hexdigest(), len(d))\n"
            "except OSError as e:\n"
            "    print('err', e.errno)\n")
    return subprocess.Popen(["/usr/bin/python3", "-c", code, path], stdout=subprocess.PIPE,
                            text=True)


def finish_reader(p, timeout=CHILD_READ_TIMEOUT):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"a reader hung for {timeout} s: an event was never answered")
    kind, *rest = out.split()
    return (kind, rest[0]) if kind == "ok" else (kind, int(rest[0]))


def assert_right_or_eio(res, data):
    kind, v = res
    if kind == "ok":
        assert v == sha(data), "wrong bytes (zeros?) from the lazy mount"
    else:
        assert v == errno.EIO, res


def daemon_status(lazy, mp):
    return wait_until(lambda: _try_status(lazy, mp), 30)


def _try_status(lazy, mp):
    r = lazy.status(mp, check=False)
    if r.returncode != 0:
        return None
    ms = [m for m in json.loads(r.stdout)["mounts"] if m["mountpoint"] == os.path.realpath(mp)]
    return ms[0] if ms and ms[0].get("state") != "lost" and ms[0].get("worker_pid") else None


def daemon_log(lazy):
    return "".join(open(os.path.join(lazy.run_dir, n)).read()
                   for n in os.listdir(lazy.run_dir) if n.endswith(".log"))


def proc_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None


# --- 1. a caller that ignores SIGCHLD ----------------------------------------------------------

@pytest.mark.san
def test_caller_ignoring_sigchld_does_not_leak_into_the_daemon(lazy, registry, big):
    repo, tree = big
    mp = lazy.mountpoint("m")

    def ignore_sigchld():
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})

    lazy.short_replacement_stay()
    r = lazy.run(["mount", "-o", "insecure", registry.ref(repo, "v1"), mp],
                 preexec_fn=ignore_sigchld)
    assert r.returncode == 0, r.stderr
    st = daemon_status(lazy, mp)
    for pid in (st["pid"], st["worker_pid"]):
        ign, blk = int(proc_field(pid, "SigIgn"), 16), int(proc_field(pid, "SigBlk"), 16)
        assert not ign & (1 << (signal.SIGCHLD - 1)), f"{pid} ignores SIGCHLD"
        assert not blk & (1 << (signal.SIGUSR1 - 1)), f"{pid} blocks SIGUSR1"
    # The worker dies: the holder notices and starts a replacement; reads stay right.
    os.kill(st["worker_pid"], signal.SIGKILL)
    assert wait_until(lambda: (daemon_status(lazy, mp) or {}).get("restarts", 0) >= 1, 30)
    for rel in ("/data/r0.bin", "/data/r2.bin"):
        assert sha(child_read(mp + rel)) == sha(source(tree, rel)), rel
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


# --- 2. holder and worker die one after the other -----------------------------------------------

# Under the sanitizers only the worker-first case: a holder that replaces a dead one is forked
# by the multi-threaded worker, and ThreadSanitizer cannot follow such a fork.
@pytest.mark.parametrize("first,sig", [("holder", signal.SIGKILL),
                                       pytest.param("worker", signal.SIGKILL,
                                                    marks=pytest.mark.san),
                                       ("holder", signal.SIGABRT)])
def test_holder_and_worker_die_in_turn_never_zeros(lazy, registry, faultproxy, big, first, sig):
    repo, tree = big
    lazy.short_replacement_stay()
    mp = lazy.mount(faultproxy.ref(repo, "v1"), opts="insecure,timeout=30")
    st0 = daemon_status(lazy, mp)
    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=1.0, count=None)
    rels = ["/data/r0.bin", "/data/r1.bin"]
    readers = [start_reader(mp + rel) for rel in rels]
    time.sleep(0.5)  # their events are read and their fetches are under way
    order = ["pid", "worker_pid"] if first == "holder" else ["worker_pid", "pid"]
    os.kill(st0[order[0]], sig)
    assert wait_until(lambda: not pid_alive(st0[order[0]]), 30)
    # The survivor replaced the dead one: both roles are served by live processes again.
    st1 = wait_until(lambda: (lambda s: s if s and pid_alive(s["pid"]) and
                              pid_alive(s["worker_pid"]) and s[order[0]] != st0[order[0]]
                              else None)(daemon_status(lazy, mp)), 30)
    assert st1, (daemon_status(lazy, mp), daemon_log(lazy)[-3000:])
    time.sleep(1)
    # Now the other original process dies (it may be the new one's parent or child).
    victim = st1[order[1]]
    os.kill(victim, sig)
    assert wait_until(lambda: not pid_alive(victim), 30)
    for rel, p in zip(rels, readers):
        assert_right_or_eio(finish_reader(p), source(tree, rel))
    faultproxy.clear()
    st2 = wait_until(lambda: (lambda s: s if s and pid_alive(s["pid"]) and
                              pid_alive(s["worker_pid"]) and s[order[1]] != victim
                              else None)(daemon_status(lazy, mp)), 30)
    assert st2 and st2["restarts"] >= 1, st2
    assert "replaces the dead holder" in daemon_log(lazy), daemon_log(lazy)[-3000:]
    # Service resumed: every file reads right (a cold one too).
    got = child_hashes(mp)
    for rel in ("/data/r0.bin", "/data/r1.bin", "/data/r2.bin", "/etc/motd"):
        assert got[rel] == sha(source(tree, rel)), rel
    st = daemon_status(lazy, mp)
    assert st["events"] == st["answers"], st
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


# --- 3. a mount while the entry's daemon is leaving --------------------------------------------

@pytest.mark.parametrize("prefetch", ["none", "all"])
def test_umount_rm_cache_mount_at_once(lazy, registry, big, prefetch):
    repo, tree = big
    ref = registry.ref(repo, "v1")
    want = sha(source(tree, "/data/r1.bin"))
    mp = lazy.mountpoint("m")
    for i in range(3):
        lazy.mount(ref, mp=mp, opts=f"insecure,prefetch={prefetch}")
        assert sha(child_read(mp + "/data/r1.bin")) == want
        if prefetch == "all" and i == 0:
            # Complete (the verification may still run, or run at exit).
            assert wait_until(lambda: daemon_status(lazy, mp)["present_bytes"] ==
                              daemon_status(lazy, mp)["size"], 60)
        lazy.umount(mp)
        if i != 1:
            subprocess.run(["rm", "-rf", lazy.cache], check=True)
        # At once: the old daemon may still be leaving (verifying, flushing).
        lazy.mount(ref, mp=mp, opts=f"insecure,prefetch={prefetch}")
        assert sha(child_read(mp + "/data/r1.bin")) == want
        assert sha(child_read(mp + "/data/r2.bin")) == sha(source(tree, "/data/r2.bin"))
        lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


# --- 5. deadlines are absolute across takeovers ------------------------------------------------

@pytest.mark.san
def test_worker_crash_loop_ends_in_eio_not_a_hang(lazy, registry, faultproxy, big):
    repo, tree = big
    mp = lazy.mount(faultproxy.ref(repo, "v1"), opts="insecure,timeout=4")
    # The registry stops answering data: only the deadline can end the read.
    faultproxy.add("stall", path="/blobs/", method="GET", range=".", seconds=600, count=None)
    reader = start_reader(mp + "/data/r2.bin")
    kills, deadline = 0, time.monotonic() + 150
    while reader.poll() is None and time.monotonic() < deadline:
        st = daemon_status(lazy, mp)
        if st and pid_alive(st["worker_pid"]):
            try:
                os.kill(st["worker_pid"], signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(0.7)  # shorter than the 4 s deadline: each worker dies before it
    assert reader.poll() is not None, f"the read outlived {kills} worker kills and 150 s"
    kind, v = finish_reader(reader)
    assert (kind, v) == ("err", errno.EIO), (kind, v)
    assert kills >= 3
    faultproxy.clear()
    st = wait_until(lambda: (lambda s: s if s and s["restarts"] >= kills - 1 else None)(
        daemon_status(lazy, mp)), 30)
    assert st, daemon_status(lazy, mp)  # status shows the restarts
    # The registry is back: the same bytes now read right.
    data = source(tree, "/data/r2.bin")
    assert wait_until(lambda: _read_ok(mp + "/data/r2.bin") == sha(data), 30, step=0.5)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def _read_ok(path):
    try:
        return sha(child_read(path))
    except OSError:
        return None


# --- 7. the caller's cgroup, session and process group -----------------------------------------

def cgroup2_root():
    for _, mp, fstype, _ in mountinfo():
        if fstype == "cgroup2":
            return mp
    return None


def oom_adj_settable():
    """Can a process lower its oom_score_adj here? (Some sandboxes refuse the write.)"""
    return subprocess.run(["/bin/sh", "-c", "echo -900 > /proc/self/oom_score_adj"],
                          capture_output=True).returncode == 0


def _child_cgroup(root, what):
    """A new cgroup below root (a hierarchy's mount point); the test is skipped without one."""
    if not root or not os.access(root, os.W_OK):
        pytest.skip(what)
    cg = os.path.join(root, f"lztest-{uuid.uuid4().hex[:8]}")
    os.mkdir(cg)
    return cg


def _mount_from_cgroup(lazy, ref, mp, procs):
    """A caller that mounts ref at mp from the cgroup whose cgroup.procs is procs and stays
    alive there (as a service's main process would); returned once it has mounted."""
    def enter():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    caller = subprocess.Popen(
        ["/bin/sh", "-c", '"$0" mount -o insecure "$1" "$2" && echo mounted && sleep 600',
         BIN, ref, mp], env=lazy.env, stdout=subprocess.PIPE, text=True, preexec_fn=enter)
    if caller.stdout.readline().strip() != "mounted":
        caller.kill()
        caller.wait()
        raise AssertionError(f"the mount from the cgroup failed ({caller.returncode})")
    return caller


def _survived(lazy, st, mp, tree):
    """The daemon of status st is alive after its caller's end and serves mp right."""
    assert pid_alive(st["pid"]) and pid_alive(st["worker_pid"])
    for rel in ("/data/r0.bin", "/data/r1.bin"):
        assert sha(child_read(mp + rel)) == sha(source(tree, rel)), rel
    lazy.umount(mp)
    lazy.assert_nothing_left()


def test_killing_the_callers_cgroup_spares_the_daemon(lazy, registry, big):
    repo, tree = big
    cg = _child_cgroup(cgroup2_root(), "no writable cgroup v2 hierarchy")
    try:
        if not os.path.exists(os.path.join(cg, "cgroup.kill")):
            pytest.skip("no cgroup.kill (Linux 5.14+)")
        mp = lazy.mountpoint("m")
        caller = _mount_from_cgroup(lazy, registry.ref(repo, "v1"), mp,
                                    os.path.join(cg, "cgroup.procs"))
        try:
            st = daemon_status(lazy, mp)
            for pid in (st["pid"], st["worker_pid"]):
                with open(f"/proc/{pid}/cgroup") as f:
                    assert os.path.basename(cg) not in f.read(), f"{pid} is in the caller's cgroup"
                assert os.getsid(pid) != os.getsid(caller.pid)
                assert os.getpgid(pid) != os.getpgid(caller.pid)
                if oom_adj_settable():
                    with open(f"/proc/{pid}/oom_score_adj") as f:
                        assert int(f.read()) == -900
            with open(os.path.join(cg, "cgroup.kill"), "w") as f:
                f.write("1")
            assert caller.wait(timeout=60) == -signal.SIGKILL
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
        assert wait_until(lambda: open(os.path.join(cg, "cgroup.procs")).read() == "", 30)
        _survived(lazy, st, mp, tree)
    finally:
        wait_until(lambda: _rmdir(cg), 10)


def cgroup1_hierarchy():
    """A cgroup v1 hierarchy's mount point (legacy and hybrid hosts): systemd's own
    (name=systemd, where it tracks a unit's processes there) if mounted, else the first."""
    found = [mp for _, mp, fstype, _ in mountinfo() if fstype == "cgroup"]
    return next((mp for mp in found if os.path.basename(mp) == "systemd"),
                found[0] if found else None)


def test_stopping_the_callers_unit_on_a_v1_hierarchy_spares_the_daemon(lazy, registry, big):
    """On a host with cgroup v1 hierarchies (legacy: systemd tracks and stops a unit by its
    cgroup in name=systemd; hybrid: the caller's memory cgroup) the daemon leaves the
    caller's cgroup there too. It stayed: stopping the caller's unit (every process of its
    cgroup killed) took the daemon, and reads got zeros."""
    repo, tree = big
    cg = _child_cgroup(cgroup1_hierarchy(), "no writable cgroup v1 hierarchy")
    procs = os.path.join(cg, "cgroup.procs")
    try:
        mp = lazy.mountpoint("m")
        caller = _mount_from_cgroup(lazy, registry.ref(repo, "v1"), mp, procs)
        try:
            st = daemon_status(lazy, mp)
            in_cg = [p for p in (st["pid"], st["worker_pid"])
                     if f":/{os.path.basename(cg)}" in open(f"/proc/{p}/cgroup").read()]
            # What a service manager does on a v1 hierarchy: kill what the cgroup holds.
            for _ in range(20):
                pids = [int(p) for p in open(procs).read().split()]
                if not pids:
                    break
                for p in pids:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
            assert caller.wait(timeout=60) == -signal.SIGKILL
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
        assert in_cg == [], f"daemon processes {in_cg} stayed in the caller's v1 cgroup"
        _survived(lazy, st, mp, tree)
    finally:
        wait_until(lambda: _rmdir(cg), 10)


def test_the_daemon_leaves_the_callers_cgroup_before_the_kernel_mount(lazy, registry, big):
    """A unit stopped while its mount command runs must not take the daemon with a mount
    already made (its reads would then get zeros): the daemon leaves the caller's cgroup
    before the kernel mounts the entry, not only before the mount command returns. With the
    entry complete the walk reads nothing from the registry, and the kernel mount follows
    the daemon's start within milliseconds, about when the move (an RCU grace period, 5-28
    ms) ends: a mount that does not wait for it was seen in about one round of three."""
    repo, tree = big
    ref = registry.ref(repo, "v1")
    r = lazy.run(["fetch", "-o", "insecure", ref])
    assert r.returncode == 0, r.stderr
    cg = _child_cgroup(cgroup2_root(), "no writable cgroup v2 hierarchy")
    mp = lazy.mountpoint("m")
    try:
        for rnd in range(10):
            lazy.assert_nothing_left(timeout=30)  # each round starts a daemon of its own
            seen = _in_cgroup_once_mounted(lazy, cg, ref, mp)
            assert not [c for c in seen if c.startswith("lazyerofs-")], \
                f"round {rnd}: daemon processes in the caller's cgroup under a mount: {seen}"
            lazy.umount(mp)
        assert wait_until(lambda: open(os.path.join(cg, "cgroup.procs")).read() == "", 30)
    finally:
        if is_mounted(mp):
            lazy.umount(mp, check=False)
        wait_until(lambda: _rmdir(cg), 10)
    lazy.assert_nothing_left()


def test_the_daemon_refuses_a_mount_of_a_file_not_its_own(lazy, registry, big):
    """Right before the kernel mount the mount command names the file it opened by path: the
    daemon answers only for its own data file, in an entry still good (one set aside and
    replaced meanwhile would be mounted without the metadata the walk made present)."""
    repo, _ = big
    mp = lazy.mount(registry.ref(repo, "v1"))
    st = next(s for s in lazy.states() if s["mountpoint"] == mp)  # its state file
    own = os.stat(st["cache"])

    def ask(extra):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(st["socket"])
            s.sendall(json.dumps({"op": "status", "before_mount": True, **extra}).encode()
                      + b"\n")
            return json.loads(s.makefile().readline())

    assert ask({"dev": own.st_dev, "ino": own.st_ino})["ok"] is True
    other = ask({"dev": own.st_dev, "ino": own.st_ino + 1})
    assert other["ok"] is False and other["errno"] == errno.ESTALE, other
    assert "not this daemon's" in other["error"], other
    assert ask({})["errno"] == errno.EBADMSG
    lazy.umount(mp)
    lazy.assert_nothing_left()


def _in_cgroup_once_mounted(lazy, cg, ref, mp):
    """Mount ref at mp from inside cgroup cg; the names of cg's processes at the moment the
    mount appears in the mount table."""
    def enter():
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    seen = None
    with open("/proc/self/mountinfo") as mi:
        watch = select.poll()
        watch.register(mi, select.POLLPRI | select.POLLERR)
        caller = subprocess.Popen([BIN, "mount", "-o", "insecure", ref, mp], env=lazy.env,
                                  stderr=subprocess.PIPE, text=True, preexec_fn=enter)
        try:
            deadline = time.monotonic() + 60
            while seen is None and time.monotonic() < deadline:
                watch.poll(20)  # the mount table changed (or 20 ms passed)
                mi.seek(0)
                if any(line.split()[4] == mp for line in mi.read().splitlines()):
                    with open(os.path.join(cg, "cgroup.procs")) as f:
                        seen = [_comm(int(p)) for p in f.read().split()]
            assert caller.wait(timeout=60) == 0, caller.stderr.read()
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
    assert seen is not None, "the mount never appeared"
    return seen


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "(gone)"


def _rmdir(p):
    try:
        os.rmdir(p)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


# --- 4. stale sockets -----------------------------------------------------------------------------

def test_a_dead_daemons_sockets_are_removed_by_whoever_finds_them(lazy, registry, big):
    repo, _ = big
    ref = registry.ref(repo, "v1")
    mp = lazy.mount(ref)
    st = daemon_status(lazy, mp)
    socks = sorted(n for n in os.listdir(lazy.run_dir) if n.endswith(".sock"))
    mine = [n for n in socks if n.endswith(f"-{st['pid']}.sock")]
    assert len(mine) == 1, socks
    # Both processes at the same instant: their process group (their own, since setsid).
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(st["pid"]) and not pid_alive(st["worker_pid"]), 10)
    assert os.path.exists(os.path.join(lazy.run_dir, mine[0]))
    # `status` finds it dead and removes it.
    lazy.run(["status", "--json"])
    assert not os.path.exists(os.path.join(lazy.run_dir, mine[0])), os.listdir(lazy.run_dir)
    lazy.umount(mp)
    # A new daemon's start removes any other dead one's socket of its entry.
    mp = lazy.mount(ref)
    st = daemon_status(lazy, mp)
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(st["pid"]) and not pid_alive(st["worker_pid"]), 10)
    dead = [n for n in os.listdir(lazy.run_dir) if n.endswith(f"-{st['pid']}.sock")]
    assert len(dead) == 1, os.listdir(lazy.run_dir)
    dead = dead[0]
    lazy.run(["umount", mp])
    mp2 = lazy.mount(ref, mp=lazy.mountpoint("m2"))
    assert not os.path.exists(os.path.join(lazy.run_dir, dead)), os.listdir(lazy.run_dir)
    lazy.umount(mp2)
    lazy.assert_nothing_left()


# --- 9 and 6. many reads waiting; takeover with many events ------------------------------------

_MANY = r"""
import os, sys, threading, hashlib
path, n, stride = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
threading.stack_size(256 << 10)
res = [None] * n
def one(i):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # one page, one event
        res[i] = hashlib.sha256(os.pread(fd, 4096, i * stride)).hexdigest()
    except OSError as e:
        res[i] = e.errno
    finally:
        os.close(fd)
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
print("started", flush=True)
for t in ts: t.join()
import json; print(json.dumps(res))
"""


def many_readers(path, n, stride):
    p = subprocess.Popen(["/usr/bin/python3", "-c", _MANY, path, str(n), str(stride)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    return p


def finish_many(p, data, n, stride, timeout=300):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("readers hung: events never answered")
    res = json.loads(out)
    wrong = [i for i in range(n) if res[i] != sha(data[i * stride:i * stride + 4096])
             and res[i] != errno.EIO]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {[res[i] for i in wrong[:3]]}"
    return sum(1 for r in res if r == errno.EIO)


N_MANY, STRIDE = 1500, 12 * 1024


@pytest.mark.san
@pytest.mark.parametrize("kill_worker", [False, True])
def test_many_waiting_reads_never_block_present_data(dctl, faultproxy, blob, kill_worker):
    data = blob
    ref = faultproxy.ref("trust/blob", "v1")
    holder = dctl.ctl_bg(ref, "ensure", f"{20 * MiB}:{1 * MiB}", "info", "wait-stdin",
                         timeout=240)
    assert dctl.read_line(holder)["ok"]
    info = dctl.read_line(holder)
    # Every fetch stalls at the proxy until the faults are cleared (10 s a try, under the
    # client's low-speed limit): the reads of missing chunks all wait.
    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=10, count=None)
    readers = many_readers(info["data_path"], N_MANY, STRIDE)
    try:
        def pending():
            st = dctl.sock(info["socket"], "status")[0]
            return st if st["pending"] >= N_MANY - 50 else None

        st = wait_until(pending, 120, step=0.5)
        assert st, dctl.sock(info["socket"], "status")[0]
        # Present data is read and answered at once, past the waiting reads.
        out = dctl.sock(info["socket"], "read", 20 * MiB + 5000, 100000)
        assert out[0]["ok"] and out[0]["sha256"] == sha(data[20 * MiB + 5000:20 * MiB + 105000])
        st = dctl.sock(info["socket"], "status")[0]
        assert st["pending"] >= N_MANY - 50, st  # they were still waiting all along
        if kill_worker:
            os.kill(st["worker_pid"], signal.SIGKILL)
    except BaseException:
        readers.kill()
        raise
    finally:
        faultproxy.clear()
    eio = finish_many(readers, data, N_MANY, STRIDE)
    st = wait_until(lambda: (lambda s: s if s["pending"] == 0 and s["events"] == s["answers"]
                             else None)(dctl.sock(info["socket"], "status")[0]), 60)
    assert st, dctl.sock(info["socket"], "status")[0]
    if not kill_worker:
        assert eio == 0
    else:
        assert st["restarts"] == 1
        assert "took over" in dctl.log() and "answering event fd" not in dctl.log()
    dctl.finish(holder)


# --- 8. many mounts of one image ---------------------------------------------------------------

def test_200_mounts_of_one_image(lazy, registry, big):
    repo, tree = big
    ref = registry.ref(repo, "v1")
    mps = []
    for i in range(200):
        mps.append(lazy.mount(ref, mp=lazy.mountpoint(f"m{i}")))
    st = daemon_status(lazy, mps[-1])
    assert st["mounts"] == 200, st
    assert sha(child_read(mps[-1] + "/data/r0.bin")) == sha(source(tree, "/data/r0.bin"))
    assert child_read(mps[70] + "/etc/motd") == source(tree, "/etc/motd")
    for mp in mps:
        lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_a_read_only_cgroupfs_warns_only_of_the_hierarchies_left(lazy, registry, big):
    """cgroup v1 hierarchies read-only (a container's /sys/fs/cgroup): the daemon cannot move,
    and says so for those where its caller is not at the root already, not for every one."""
    repo, tree = big
    v1 = [l.split()[4] for l in open("/proc/self/mountinfo")
          if " - cgroup " in l and l.split()[3] == "/"]
    if not v1:
        pytest.skip("no cgroup v1 hierarchy")
    below = [l for l in open("/proc/self/cgroup")
             if l.split(":")[1] not in ("",) and l.rstrip("\n").split(":", 2)[2] != "/"]
    lazy.env["LAZYEROFS_DAEMON_DEBUG"] = "1"
    mp = lazy.mountpoint("m")
    script = "".join(f"mount -o remount,bind,ro {m} && " for m in v1)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                        script + '"$0" mount -o insecure "$1" "$2" && cat "$2/data/r0.bin" '
                        '>/dev/null', BIN, registry.ref(repo, "v1"), mp],
                       env=lazy.env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # The namespace ends with the script: the daemon unmounts its mount there and leaves.
    lazy.assert_nothing_left(timeout=30)
    warned = [l for l in lazy.log().splitlines() if "cgroup v1 hierarch" in l]
    if below:
        assert len(warned) == 1 and f"of {len(below)} cgroup v1" in warned[0], warned
    else:
        assert not warned, warned
