# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The life of a mount among other mount namespaces and odd hands: status run from another
namespace (a container, a service with PrivateMounts=) neither lists nor drops the state of
mounts it cannot see; status and umount with a daemon that does not answer return in their
own time; a damaged state file and a symlinked mountpoint do not stop umount."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from common import BIN, child_read, child_sha256, control_call, mountinfo, pid_alive, wait_until
from lazymount import build_big_image, is_mounted
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")


@pytest.fixture(scope="module")
def big(registry, tmp_path_factory):
    image, tree = build_big_image(str(tmp_path_factory.mktemp("mountlife")))
    registry.client.push_image("life/big", "v1", [(image, MT_EROFS)])
    return registry.ref("life/big", "v1"), tree


class Ns:
    """A private mount namespace kept alive by a sleeping process; commands run inside it
    through nsenter. Their daemons look at the namespace every NS_LOOK_MS (5 s by default)."""
    NS_LOOK_MS = 1000

    def __init__(self):
        self.p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "600"])
        assert wait_until(lambda: os.readlink(f"/proc/{self.p.pid}/ns/mnt")
                          != os.readlink("/proc/self/ns/mnt"), 10)

    def run(self, lazy, args, **kw):
        kw.setdefault("env", dict(lazy.env, LAZYEROFS_NS_LOOK_MS=str(self.NS_LOOK_MS)))
        return subprocess.run(["nsenter", "-t", str(self.p.pid), "-m", "--", BIN, *args],
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, **kw)

    def mount(self, lazy, ref, name):
        """`lazyerofs mount` of ref at a new mountpoint, from inside the namespace."""
        mp = lazy.mountpoint(name)
        r = self.run(lazy, ["mount", "-o", "insecure", ref, mp])
        assert r.returncode == 0, r.stderr
        return mp

    def close(self):
        self.p.kill()
        self.p.wait()


def test_status_on_the_host_keeps_a_containers_mount(lazy, big):
    ref, tree = big
    ns = Ns()
    try:
        mp = ns.mount(lazy, ref, "nsmnt")
        assert len(lazy.state_files()) == 1
        # inside the namespace, status lists the mount
        r = ns.run(lazy, ["status", "--json"])
        assert len(json.loads(r.stdout)["mounts"]) == 1, r.stdout
        # status from the host (the run dir is shared)
        r = lazy.run(["status", "--json"])
        host_view = r.stdout
        files_after = lazy.state_files()
        r = ns.run(lazy, ["status", "--json"])
        ns_view = json.loads(r.stdout)["mounts"]
        # the mount is still alive in the namespace and readable
        inside = f"/proc/{ns.p.pid}/root{mp}/etc"
        assert os.listdir(inside)
        assert files_after != [] and len(ns_view) == 1, (
            f"host status removed the state of a live mount: host said {host_view!r}, "
            f"state files now {files_after}, namespace status now {ns_view}")
    finally:
        ns.run(lazy, ["umount", mp])
        ns.close()


def test_status_in_a_container_keeps_the_hosts_mount(lazy, big):
    """`lazyerofs status` run from another mount namespace saw the host's unique mount ids
    as gone and deleted their state files."""
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("hostmnt"))
    assert len(lazy.state_files()) == 1
    ns = Ns()
    try:
        # the namespace has a copy of the host's mount (same superblock, another mnt_id)
        r = ns.run(lazy, ["status", "--json"])
        ns_view = r.stdout
    finally:
        ns.close()
    files = lazy.state_files()
    host = lazy.status()
    r = lazy.umount(mp, check=False)
    assert files and len(host) == 1, (
        f"status in another namespace said {ns_view!r} and removed the host mount's state: "
        f"state files {files}, host status {host}; umount then said rc={r.returncode} {r.stderr!r}")


@pytest.mark.parametrize("overlay", [False, True], ids=["plain", "overlay"])
def test_a_daemon_ends_with_the_namespace_it_was_started_in(lazy, big, overlay):
    """`lazyerofs mount` in a private mount namespace (a container's, a unit's
    PrivateMounts=), with or without an overlay on the lazy mount (a container runtime's
    layers), then every process of that namespace gone: the daemon's membership alone kept
    the namespace, its mounts and their superblocks alive, and it never left (one fanotify
    group and one inotify instance held per container, the entry locked against gc). It now
    unmounts what is left there, as the namespace's end would have, and leaves."""
    ref, tree = big
    ns = Ns()
    try:
        mp = ns.mount(lazy, ref, "inns")
        path = mp
        if overlay:
            for d in ("u", "w", "o"):
                os.makedirs(os.path.join(lazy.root, d))
            path = os.path.join(lazy.root, "o")
            r = subprocess.run(["nsenter", "-t", str(ns.p.pid), "-m", "--", "mount", "-t",
                                "overlay", "overlay", "-o",
                                f"lowerdir={mp},upperdir={lazy.root}/u,workdir={lazy.root}/w",
                                path], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        r = subprocess.run(["nsenter", "-t", str(ns.p.pid), "-m", "--", "sha256sum",
                            os.path.join(path, "data", "r0.bin")], capture_output=True,
                           text=True, timeout=60)
        assert r.stdout.split()[0] == child_sha256(os.path.join(tree, "data", "r0.bin")), r
        daemons = lazy.daemon_pids()
        assert daemons
    finally:
        ns.close()
    assert wait_until(lambda: not any(pid_alive(p) for p in daemons), 30), \
        {p: os.readlink(f"/proc/{p}/ns/mnt") for p in daemons if pid_alive(p)}
    assert "has no process left" in lazy.log(), lazy.log()[-2000:]
    lazy.assert_nothing_left()


def test_umount_of_an_overlays_lower_layer_says_the_image_stays_in_use(lazy, big):
    """A container runtime's layout: a lazy mount as an overlay's lower layer. Unmounting the
    layer succeeds (the overlay keeps its own copy of the mount) and the image stays in use,
    served by its daemon, out of `status`: the command says so (it said nothing)."""
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("low"))
    for d in ("u", "w", "o"):
        os.makedirs(os.path.join(lazy.root, d))
    over = os.path.join(lazy.root, "o")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={mp},upperdir={lazy.root}/u,workdir={lazy.root}/w", over],
                   check=True, timeout=60)
    try:
        r = lazy.umount(mp)
        assert f"lower layer of the overlay at '{over}'" in r.stderr, r.stderr
        f = os.path.join("data", "r2.bin")
        assert child_sha256(os.path.join(over, f)) == child_sha256(os.path.join(tree, f))
    finally:
        subprocess.run(["umount", over], check=True, timeout=60)
    lazy.assert_nothing_left(timeout=20)


def test_a_namespace_kept_open_keeps_its_mounts(lazy, big):
    """A namespace none of whose processes is left but that someone keeps (an open nsfs
    file, as container runtimes keep namespaces): its mounts stay, the daemon serves them
    (the daemon emptied it, and a later nsenter found nothing)."""
    ref, tree = big
    ns = Ns()
    try:
        mp = ns.mount(lazy, ref, "kept")
        keeper = subprocess.Popen(["sleep", "600"],
                                  stdin=open(f"/proc/{ns.p.pid}/ns/mnt", "rb"))
    finally:
        ns.close()
    try:
        # longer than the daemon's look at its namespace (then, found kept, thrice as long)
        time.sleep(3.5 * Ns.NS_LOOK_MS / 1000)
        r = subprocess.run(["nsenter", f"--mount=/proc/{keeper.pid}/fd/0", "--", "sha256sum",
                            os.path.join(mp, "data", "r0.bin")], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == child_sha256(os.path.join(tree, "data", "r0.bin"))
        assert "has no process left" not in lazy.log()
    finally:
        keeper.kill()
        keeper.wait()
    lazy.assert_nothing_left(timeout=30)


def test_status_and_umount_with_a_stopped_daemon(lazy, big):
    """A daemon that does not answer (stopped: a frozen cgroup, SIGSTOP): status and umount
    return within their own time (both hung), the mount is gone and so is its state."""
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("stp"))
    pids = sorted(lazy.daemon_pids())
    lazy.env["LAZYEROFS_ANSWER_WAIT_MS"] = "2000"  # (status's 10 s, umount's 5 s)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        res = {}
        for what, args in (("status", ["status"]), ("umount", ["umount", mp])):
            t = time.monotonic()
            try:
                r = lazy.run(args, timeout=20)
                res[what] = (r.returncode, r.stderr.strip(), round(time.monotonic() - t, 1))
            except subprocess.TimeoutExpired:
                res[what] = "hung for 20 s"
        res["mounted after umount"] = is_mounted(mp)
        res["state files"] = lazy.state_files()
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    assert "hung for 20 s" not in (res["status"], res["umount"]), res
    assert res["umount"][0] == 0 and not res["mounted after umount"], res
    assert res["state files"] == [], res
    lazy.assert_nothing_left(timeout=30)


def _lose_run_dir(lazy, how):
    """The run directory emptied (rm -rf /run/lazyerofs/*), removed, or renamed away."""
    if how == "removed":
        shutil.rmtree(lazy.run_dir)
    elif how == "renamed":
        os.rename(lazy.run_dir, lazy.run_dir + ".old")
    else:
        for name in os.listdir(lazy.run_dir):
            os.unlink(os.path.join(lazy.run_dir, name))


@pytest.mark.san
@pytest.mark.parametrize("how", ["emptied", "removed", "renamed"])
def test_a_run_directory_emptied_under_a_mount_is_made_again(lazy, big, how):
    """The run directory emptied, removed or renamed while a mount lives: its daemon binds
    its sockets again and writes the mount's state file, so `status` lists the mount and a
    second mount of the image joins the daemon (it waited 30 s for the entry lock the daemon
    holds and failed, and status said "No lazyerofs mounts")."""
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("rd1"))
    before = lazy.status()
    _lose_run_dir(lazy, how)
    back = wait_until(lambda: [m["mountpoint"] for m in lazy.status()] == [mp], 10)
    assert back, (os.listdir(lazy.run_dir) if os.path.isdir(lazy.run_dir) else "no dir",
                  lazy.run(["status"]).stdout)
    st = lazy.status()[0]
    assert st["state"] != "lost" and st["pid"] == before[0]["pid"], st
    t = time.monotonic()
    mp2 = lazy.mount(ref, lazy.mountpoint("rd2"), timeout=60)
    took = time.monotonic() - t
    assert took < 10, took
    assert len(lazy.daemon_roots()) == 1, lazy.daemon_roots()
    f = os.path.join("data", "r0.bin")
    assert child_sha256(os.path.join(mp2, f)) == child_sha256(os.path.join(tree, f))
    assert "lost this daemon's sockets" in lazy.log(), lazy.log()[-2000:]
    lazy.umount(mp2)
    lazy.umount(mp)
    lazy.assert_nothing_left()
    shutil.rmtree(lazy.run_dir + ".old", ignore_errors=True)


def _answers(path):
    """The holder pid of the daemon that answers on a control socket, or None."""
    try:
        return control_call(path, {"op": "hello", "proto": 3}, timeout=3)["pid"]
    except (OSError, ValueError, KeyError, AssertionError):
        return None


def test_a_bad_entrys_daemon_leaves_the_discovery_socket_given_up(lazy, big):
    """A bad entry's daemon gives its discovery socket up (new mounts start a fresh daemon);
    its run directory checks must not take it back: it did within 2 s, then the old and the
    fresh daemon took the name from each other every second."""
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("rd6"), opts="insecure,timeout=20")
    old = lazy.status_of(mp)["pid"]
    st = next(s for s in lazy.states() if s["mountpoint"] == mp)
    disc = os.path.join(lazy.run_dir, "daemon-" + os.path.basename(st["cache"]) + ".sock")
    os.unlink(st["cache"])  # the entry's data file deleted: the entry is bad
    assert wait_until(lambda: lazy.status_of(mp)["state"] == "bad", 20), lazy.status_of(mp)
    time.sleep(2.5)  # a look of the daemon's at the run directory
    assert _answers(disc) != old
    mp2 = lazy.mount(ref, lazy.mountpoint("rd7"), opts="insecure,timeout=20")
    fresh = lazy.status_of(mp2)["pid"]
    owners = set()
    for _ in range(30):
        owners.add(_answers(disc))
        time.sleep(0.1)
    assert owners == {fresh}, (old, fresh, owners)
    lazy.umount(mp2)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=20)


def test_a_worker_replaced_after_the_run_directory_was_made_again(lazy, big):
    """A worker killed after its run directory was made again: the replacement, forked from
    the holder (which still had the old sockets, directory and log), answers at once and the
    holder's line about the kill is in the log. status said the mount was lost meanwhile."""
    ref, tree = big
    lazy.short_replacement_stay()
    mp = lazy.mount(ref, lazy.mountpoint("rd3"))
    worker = lazy.status_of(mp)["worker_pid"]
    _lose_run_dir(lazy, "emptied")
    assert wait_until(lambda: [m["mountpoint"] for m in lazy.status()] == [mp], 10)
    os.kill(worker, signal.SIGKILL)
    states = []
    for _ in range(200):
        st = lazy.status()
        states.append(st[0]["state"] if st else "missing")
        if st and st[0].get("worker_pid") not in (None, worker):
            break
        time.sleep(0.02)
    assert "lost" not in states and "missing" not in states, states
    assert wait_until(lambda: "killed by signal 9" in lazy.log(), 10), lazy.log()[-2000:]
    assert child_sha256(os.path.join(mp, "data", "r1.bin")) == \
        child_sha256(os.path.join(tree, "data", "r1.bin"))
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=20)


def test_the_run_directory_made_again_has_no_state_of_a_detached_mount(lazy, big):
    """`umount --lazy` of a mount still in use, then the run directory emptied: the state
    file of the detached mount is not written back (status would list a ghost)."""
    ref, tree = big
    keep = lazy.mount(ref, lazy.mountpoint("rd4"))
    mp = lazy.mount(ref, lazy.mountpoint("rd5"))
    with open(os.path.join(mp, "data", "r0.bin"), "rb") as f:
        lazy.umount(mp, extra=["--lazy"])
        after = lazy.state_files()
        _lose_run_dir(lazy, "emptied")
        assert wait_until(lambda: len(lazy.state_files()) >= 1, 10)
        time.sleep(2.5)  # another look of the daemon's
        assert sorted(lazy.state_files()) == sorted(after), (after, lazy.state_files())
    lazy.umount(keep)
    lazy.assert_nothing_left(timeout=20)


def test_umount_with_a_damaged_state_file(lazy, big):
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("dmg"))
    (name,) = lazy.state_files()
    with open(os.path.join(lazy.run_dir, name), "w") as f:
        f.write("{garbage")
    r = lazy.umount(mp, check=False)
    still = is_mounted(mp)
    assert r.returncode == 0 and not still, (r.returncode, r.stderr, still)
    assert lazy.state_files() == []
    lazy.assert_nothing_left()


def test_umount_through_a_symlink(lazy, big):
    ref, tree = big
    mp = lazy.mount(ref, lazy.mountpoint("sl"))
    link = os.path.join(lazy.root, "link")
    os.symlink(mp, link)
    r = lazy.umount(link, check=False)
    assert r.returncode == 0 and not is_mounted(mp), r.stderr
    lazy.assert_nothing_left()


def test_two_mounts_onto_one_mountpoint_at_once(lazy, big):
    """Two mount commands for one mountpoint at the same moment: one mounts, the other says
    the mountpoint is taken (both mounted, stacked, with two state files)."""
    ref, tree = big
    mp = lazy.mountpoint("same")
    ps = [subprocess.Popen([BIN, "mount", "-o", "insecure", ref, mp], env=lazy.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]
    rs = sorted((p.wait(60), p.stderr.read()) for p in ps)
    n = sum(1 for _, m, _, _ in mountinfo() if m == mp)
    for _ in range(n):
        lazy.umount(mp, check=False)
    lazy.assert_nothing_left(timeout=15)
    assert n == 1 and rs[0][0] == 0 and rs[1][0] == 32, (rs, n)
    assert "already" in rs[1][1], rs
    assert not [f for f in os.listdir(lazy.run_dir) if f.startswith("mountpoint-")]


@pytest.fixture(scope="module")
def slowcall(tmp_path_factory):
    """lib/slowcall.c built as an LD_PRELOAD shim."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib", "slowcall.c")
    so = str(tmp_path_factory.mktemp("slowcall") / "slowcall.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", so, src, "-ldl"],
                   check=True)
    return so


def slow_mount(lazy, slowcall, argv, call, ms=10000):
    """Start a `lazyerofs mount` (argv: a prefix, the binary, its arguments) whose `call`
    sleeps `ms`; return it once the sleep starts."""
    mark = os.path.join(lazy.root, "slowcall.mark")
    env = dict(lazy.env, LD_PRELOAD=slowcall, SLOWCALL=call, SLOWCALL_MS=str(ms),
               SLOWCALL_MARK=mark)
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: os.path.exists(mark), 60, step=0.002)
    except AssertionError:
        p.kill()
        raise AssertionError(p.communicate())
    os.unlink(mark)
    return p


def mount_and_kill_in(lazy, slowcall, argv, call):
    """SIGKILL a `lazyerofs mount` while its `call` sleeps."""
    p = slow_mount(lazy, slowcall, argv, call)
    p.kill()
    p.communicate()


def test_a_containers_mount_killed_once_placed_keeps_its_daemon(lazy, big, slowcall):
    """The host mounts an image; a container (its own mount namespace) mounts it too and its
    `lazyerofs mount` is killed right after the kernel placed the mount. The daemon cannot
    find that mount in its own mount table later: it stayed only if the mount was attached
    before it was placed. It used to leave with the host's umount, and reads through the
    container's mount got zeros."""
    ref, tree = big
    mp = lazy.mountpoint("ctr")
    ns = Ns()  # before the host's mount: the namespace holds no copy of it
    try:
        hostmp = lazy.mount(ref, lazy.mountpoint("host"))
        mount_and_kill_in(lazy, slowcall, ["nsenter", "-t", str(ns.p.pid), "-m", "--", BIN,
                                           "mount", "-o", "insecure", ref, mp], "renameat")
        inside = f"/proc/{ns.p.pid}/root{mp}"
        assert os.path.ismount(inside)
        pids = lazy.daemon_roots()
        lazy.umount(hostmp)
        time.sleep(8)  # long enough for a daemon without users to leave
        with open(os.path.join(tree, "data/r1.bin"), "rb") as f:
            want = f.read()
        got = child_read(inside + "/data/r1.bin", timeout=60)
        assert got == want, (f"read through the container's mount: {len(got)} bytes, "
                             f"{got.count(0)} zero; daemon {pids} now {lazy.daemon_pids()}")
        assert lazy.daemon_roots() == pids
    finally:
        subprocess.run(["nsenter", "-t", str(ns.p.pid), "-m", "umount", mp], capture_output=True)
        ns.close()
    lazy.assert_nothing_left(timeout=30)


def test_a_mount_killed_before_it_is_placed_leaves_nothing(lazy, big, slowcall):
    """Killed between the daemon's attach and the kernel placing the mount: the detached
    mount goes with the command, and with it the daemon; no state file, nothing mounted."""
    ref, tree = big
    mp = lazy.mountpoint()
    mount_and_kill_in(lazy, slowcall, [BIN, "mount", "-o", "insecure", ref, mp], "move_mount")
    assert not is_mounted(mp)
    lazy.assert_nothing_left(timeout=30)
    # and the next mount of the image works
    lazy.mount(ref, mp)
    assert child_sha256(os.path.join(mp, "data/r1.bin"), timeout=60)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_a_mountpoint_renamed_during_the_mount_is_followed(lazy, big, slowcall):
    """The mountpoint's parent renamed while the mount ran (the walk takes seconds on a slow
    link; a container runtime moving its bundle): the mount lands where the directory went,
    and the state file, status and umount know it there."""
    ref, tree = big
    p = os.path.join(lazy.root, "p")
    os.makedirs(os.path.join(p, "mnt"))
    q = os.path.join(lazy.root, "q")
    proc = slow_mount(lazy, slowcall, [BIN, "mount", "-o", "insecure", ref,
                                       os.path.join(p, "mnt")], "fsopen", ms=1000)
    os.rename(p, q)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    moved = os.path.join(q, "mnt")
    assert is_mounted(moved)
    assert [s["mountpoint"] for s in lazy.states()] == [moved]
    st = json.loads(lazy.run(["status", "--json"]).stdout)["mounts"]
    assert [m["mountpoint"] for m in st] == [moved], st
    lazy.umount(moved)
    lazy.assert_nothing_left(timeout=30)


def test_a_daemon_killed_before_the_mount_is_placed_fails_the_mount(lazy, big, slowcall):
    """The image's daemon (holder and worker at once) dies after the attach, before the
    kernel places the mount: the mount fails and leaves nothing (it reported success for a
    mount nobody served, whose reads got zeros)."""
    ref, tree = big
    mp = lazy.mountpoint()
    p = slow_mount(lazy, slowcall, [BIN, "mount", "-o", "insecure", ref, mp], "move_mount",
                   ms=3000)
    daemons = lazy.daemon_pids() - {p.pid}
    assert daemons
    for pg in {os.getpgid(d) for d in daemons}:
        os.killpg(pg, signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert p.returncode == 32 and len(lines) == 1, err
    assert "went away" in lines[0], lines[0]
    assert not is_mounted(mp)
    lazy.assert_nothing_left(timeout=30)


def test_a_mount_just_placed_can_be_unmounted(lazy, big, slowcall):
    """Between the kernel placing the mount and its state file, the mount is not kept busy
    by the command: umount(8) takes it away, and the command still ends right."""
    ref, tree = big
    mp = lazy.mountpoint()
    p = slow_mount(lazy, slowcall, [BIN, "mount", "-o", "insecure", ref, mp], "renameat",
                   ms=3000)
    r = subprocess.run(["umount", mp], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    lazy.run(["status"])  # drops the state of the mount that is gone
    lazy.assert_nothing_left(timeout=30)
