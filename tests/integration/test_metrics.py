# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""`lazyerofs status --prometheus`: the Prometheus text exposition format, checked by the
Prometheus project's own `promtool check metrics`, with the same numbers as `status --json`:
per cache entry (a blob mounted twice is counted once), one lazyerofs_mount_info series a
mount, the event latency histogram counting every answered event, fetch failures by kind
(registry 5xx, 4xx, no answer, timeout) and lazyerofs_daemon_up 0 for a mount whose daemon
was killed. Label values are escaped as the format says (a mountpoint with a double quote,
a backslash and a line feed reads back exactly)."""

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from common import assert_one_line_error, child_hashes, child_read, content_hashes, run, \
    wait_until
from lazymount import build_big_image, build_busybox_image
from registry import MT_EROFS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
ERROR_KINDS = {"denied", "timeout", "5xx", "4xx", "network", "write", "other"}


# --- the exposition, read back --------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


def parse_labels(s):
    out, i = {}, 0
    while i < len(s):
        m = LABEL.match(s, i)
        assert m, f"bad labels at {s[i:]!r}"
        i, val = m.end(), []
        while s[i] != '"':
            if s[i] == "\\":
                assert s[i + 1] in UNESCAPE, f"bad escape in {s!r}"
                val.append(UNESCAPE[s[i + 1]])
                i += 2
            else:
                val.append(s[i])
                i += 1
        out[m.group(1)] = "".join(val)
        i += 1
        if i < len(s):
            assert s[i] == ",", s
            i += 1
    return out


class Exposition:
    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, labels, value)
        self.types = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ")
                assert name not in self.types, f"family {name} twice"
                self.types[name] = typ
            elif line and not line.startswith("#"):
                m = SAMPLE.match(line)
                assert m, f"bad sample line {line!r}"
                self.samples.append((m[1], parse_labels(m[2] or ""), float(m[3])))

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == w for k, w in labels.items())]

    def value(self, name, **labels):
        found = self.find(name, **labels)
        assert len(found) == 1, (name, labels, found)
        return found[0][1]


def promtool_check(text):
    """`promtool check metrics`: the format and the Prometheus naming conventions."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool: {r.stdout}{r.stderr}\n{text}"


def prometheus(lazy, mp=None):
    r = lazy.run(["status", "--prometheus"] + ([mp] if mp else []))
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n"), r.stdout
    promtool_check(r.stdout)
    return Exposition(r.stdout)


def entry_labels(st):
    return {"digest": st["digest"], "entry": os.path.basename(st["cache"])}


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def busybox(tmp_path_factory, registry):
    path, tree = build_busybox_image(str(tmp_path_factory.mktemp("metrics")))
    registry.client.push_image("metrics/bb", "v1", [(path, MT_EROFS)])
    return registry.ref("metrics/bb", "v1"), tree


@pytest.fixture(scope="module")
def big(tmp_path_factory, registry):
    path, tree = build_big_image(str(tmp_path_factory.mktemp("metrics-big")), files=4, mib=2)
    registry.client.push_image("metrics/big", "v1", [(path, MT_EROFS)])
    return "metrics/big", tree


# --- tests -------------------------------------------------------------------------------------

def test_usage_and_help():
    r = run(["status", "--json", "--prometheus"])
    assert_one_line_error(r, 1)
    assert "--json" in r.stderr and "--prometheus" in r.stderr, r.stderr
    r = run(["status", "--help"])
    assert r.returncode == 0 and "--prometheus" in r.stdout, r.stdout


def test_no_mounts_is_valid_and_empty(lazy):
    exp = prometheus(lazy)
    assert exp.samples == [], exp.text
    assert exp.types["lazyerofs_event_latency_seconds"] == "histogram"


@pytest.mark.san
def test_prometheus_agrees_with_json(lazy, busybox):
    """Two mounts of one blob: one entry's numbers (not counted twice), two mount_info
    series; every number the same as status --json says; the latency histogram counts each
    answered event once."""
    ref, tree = busybox
    one, two = lazy.mount(ref), lazy.mount(ref)
    want = content_hashes(tree)
    assert child_hashes(one) == want
    assert child_read(two + "/etc/motd") == b"hello from a lazy mount\n"
    st = lazy.settled_status_of(one)
    assert st["events"] > 0 and st["requests"] > 0 and st["fetched_bytes"] > 0, st
    exp = prometheus(lazy)
    assert lazy.status_of(one) == st, "the daemon was not idle"

    labels = entry_labels(st)
    for mp in (one, two):
        m = exp.find("lazyerofs_mount_info", mountpoint=os.path.realpath(mp))
        assert m == [(dict(labels, mountpoint=os.path.realpath(mp), source=st["source"]), 1)], m
        assert exp.value("lazyerofs_daemon_up", mountpoint=os.path.realpath(mp)) == 1
    # One entry: each of its series once, labelled by the entry alone.
    for name, key in (("lazyerofs_fetched_bytes_total", "fetched_bytes"),
                      ("lazyerofs_http_requests_total", "requests"),
                      ("lazyerofs_http_retries_total", "retries"),
                      ("lazyerofs_events_total", "events"),
                      ("lazyerofs_fast_answers_total", "fast_answers"),
                      ("lazyerofs_pending_events", "pending"),
                      ("lazyerofs_present_bytes", "present_bytes"),
                      ("lazyerofs_blob_size_bytes", "size"),
                      ("lazyerofs_profile_ranges", "profile_ranges"),
                      ("lazyerofs_profile_reads_served_total", "profile_served"),
                      ("lazyerofs_trimmed_bytes_total", "trimmed_bytes")):
        assert exp.find(name) == [(labels, st[key])], (name, exp.find(name), st[key])
    assert exp.value("lazyerofs_entry_state", state=st["state"], **labels) == 1
    assert sum(v for _, v in exp.find("lazyerofs_entry_state", **labels)) == 1
    assert exp.value("lazyerofs_entry_integrity", integrity=st["integrity"]) == 1
    assert exp.value("lazyerofs_profile_replay_state", state=st["profile_state"]) == 1
    assert exp.value("lazyerofs_daemon_restarts_total", process="worker") == st["restarts"]
    # Errors by kind add up to "errors"; the JSON has the same kinds.
    kinds = {l["kind"]: v for l, v in exp.find("lazyerofs_errors_total", **labels)}
    assert set(kinds) == ERROR_KINDS, kinds
    assert sum(kinds.values()) == st["errors"], (kinds, st)
    assert kinds["denied"] == st["denied"]
    assert {k: kinds[k] for k in st["failures"]} == st["failures"], (kinds, st["failures"])

    # The histogram: cumulative buckets up to +Inf == count == events answered.
    buckets = exp.find("lazyerofs_event_latency_seconds_bucket", **labels)
    les = [l["le"] for l, _ in buckets]
    assert les == ["0.0001", "0.001", "0.01", "0.05", "0.1", "0.5", "1", "5", "30", "60",
                   "+Inf"], les
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), counts
    count = exp.value("lazyerofs_event_latency_seconds_count", **labels)
    assert counts[-1] == count == st["answers"] == st["events"], (counts, st)
    assert 0 < exp.value("lazyerofs_event_latency_seconds_sum", **labels) < 60 * count
    # ... and the JSON's histogram is the same one, not cumulative.
    assert st["latency_bounds_us"][:2] == [100, 1000], st
    assert sum(st["latency_buckets"]) == st["answers"], st
    assert abs(st["latency_sum_us"] / 1e6
               - exp.value("lazyerofs_event_latency_seconds_sum", **labels)) < 1e-6

    # Just one mount: its series and its entry's.
    exp1 = prometheus(lazy, two)
    assert [l["mountpoint"] for l, _ in exp1.find("lazyerofs_mount_info")] == \
        [os.path.realpath(two)]
    assert exp1.value("lazyerofs_events_total", **labels) == st["events"]
    lazy.umount(one)
    lazy.umount(two)
    lazy.assert_nothing_left()


def test_fetch_failures_by_kind(lazy, registry, faultproxy, big):
    """A registry answering 503, then 404, then closing connections without an answer, then
    answering nothing at all: each failed read is a denied read, each failed fetch counts
    under its kind, and JSON and Prometheus agree."""
    repo, tree = big
    # The deadline leaves the 503s' retries room to end first: a job that outlasts it counts
    # as a timeout, whatever the registry said (2 s was short on a loaded machine).
    mp = lazy.mount(faultproxy.ref(repo, "v1"), opts="insecure,timeout=5")
    st = lazy.settled_status_of(mp)
    labels = entry_labels(st)

    def kinds():
        return {l["kind"]: v for l, v in
                prometheus(lazy, mp).find("lazyerofs_errors_total", **labels)}

    before = kinds()
    assert all(v == 0 for v in before.values()), before
    phases = [("5xx", dict(kind="status", code=503)), ("4xx", dict(kind="status", code=404)),
              ("network", dict(kind="drop")), ("timeout", dict(kind="stall", seconds=30))]
    for i, (kind, fault) in enumerate(phases):
        faultproxy.clear()
        faultproxy.add(path="/blobs/sha256:", method="GET", count=None, **fault)
        with pytest.raises(OSError) as e:
            child_read(f"{mp}/data/r{i}.bin", 1 << 20, 4096, timeout=60)
        assert e.value.errno == errno.EIO, (kind, e.value)
        now = wait_until(lambda: (lambda k: k if k[kind] > before[kind] else None)(kinds()), 30)
        assert now, (kind, kinds())
        assert now["denied"] > before["denied"], (kind, now)
        before = now
    faultproxy.clear()
    st = lazy.settled_status_of(mp, quiet=1)
    exp = prometheus(lazy, mp)
    got = {l["kind"]: v for l, v in exp.find("lazyerofs_errors_total", **labels)}
    assert sum(got.values()) == st["errors"], (got, st)
    assert got["denied"] == st["denied"] and got["write"] == 0, got
    assert {k: got[k] for k in st["failures"]} == st["failures"], (got, st)
    # 503 and dropped connections were retried.
    assert exp.value("lazyerofs_http_retries_total", **labels) == st["retries"] > 0, st
    assert exp.value("lazyerofs_event_latency_seconds_count", **labels) == st["answers"]
    # The slow denials are in the histogram's upper buckets.
    assert exp.value("lazyerofs_event_latency_seconds_bucket", le="1", **labels) < st["answers"]
    # No assert_nothing_left(): over this test's half minute, a private mount namespace made
    # elsewhere on the machine (unshare -m) copies the mount and keeps its superblock, and
    # with it the daemon, alive past the umount. The fixture's teardown still checks the log.
    lazy.umount(mp)


def test_lost_mount_is_down(lazy, busybox):
    """A mount whose daemon was killed (holder and worker at once): daemon_up 0, its entry
    lost, no counters (nobody has them); the format stays valid."""
    ref, _ = busybox
    mp = lazy.mount(ref)
    st = lazy.status_of(mp)
    os.killpg(os.getpgid(st["pid"]), signal.SIGKILL)
    assert wait_until(lambda: lazy.status_of(mp)["state"] == "lost", 30), lazy.status_of(mp)
    exp = prometheus(lazy)
    labels = entry_labels(st)
    assert exp.value("lazyerofs_daemon_up", mountpoint=os.path.realpath(mp), **labels) == 0
    assert exp.value("lazyerofs_mount_info", mountpoint=os.path.realpath(mp)) == 1
    assert exp.value("lazyerofs_entry_state", state="lost", **labels) == 1
    assert exp.value("lazyerofs_entry_state", state="running", **labels) == 0
    assert exp.value("lazyerofs_blob_size_bytes", **labels) == st["size"]
    assert exp.find("lazyerofs_fetched_bytes_total") == []
    assert exp.find("lazyerofs_event_latency_seconds_count") == []
    lazy.umount(mp)


def small_images(registry, d, n):
    """n images of one small file each, pushed: their references."""
    refs = []
    for i in range(n):
        tree = os.path.join(d, f"t{i}")
        os.makedirs(tree)
        with open(os.path.join(tree, "f"), "w") as f:
            f.write(f"image {i}\n" * 1000)
        img = os.path.join(d, f"i{i}.erofs")
        subprocess.run(["mkfs.erofs", "-T0", img, tree], check=True, capture_output=True)
        registry.client.push_image(f"mute/i{i}", "v1", [(img, MT_EROFS)])
        refs.append(registry.ref(f"mute/i{i}", "v1"))
    return refs


def test_mute_daemons_are_asked_at_once_and_shown_mute(lazy, registry, workdir):
    """Three daemons stopped (SIGSTOP): `status` waits for them once, not once each (each
    waited its 10 s, 3 s here, in turn: 30 s); they show daemon_up 0 and daemon_mute 1
    (their reads wait: not gone), and once they go on, 1 and 0 again."""
    mps = [lazy.mount(r) for r in small_images(registry, workdir, 3)]
    workers = [lazy.status_of(m)["worker_pid"] for m in mps]
    lazy.env["LAZYEROFS_ANSWER_WAIT_MS"] = "3000"
    try:
        for w in workers:
            os.kill(w, signal.SIGSTOP)
        t0 = time.monotonic()
        exp = prometheus(lazy)
        took = time.monotonic() - t0
        assert took < 6, took
        for m in mps:
            assert exp.value("lazyerofs_daemon_up", mountpoint=os.path.realpath(m)) == 0
            assert exp.value("lazyerofs_daemon_mute", mountpoint=os.path.realpath(m)) == 1
    finally:
        for w in workers:
            os.kill(w, signal.SIGCONT)
    exp = prometheus(lazy)
    for m in mps:
        assert exp.value("lazyerofs_daemon_up", mountpoint=os.path.realpath(m)) == 1
        assert exp.value("lazyerofs_daemon_mute", mountpoint=os.path.realpath(m)) == 0
    for m in mps:
        lazy.umount(m)
    lazy.assert_nothing_left(timeout=30)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory, registry):
    """A 48 MiB image for profiles to replay: (reference, digest, size)."""
    d = str(tmp_path_factory.mktemp("metrics-profiled"))
    path, _ = build_big_image(d, files=3, mib=16)
    registry.client.push_image("metrics/profiled", "v1", [(path, MT_EROFS)])
    with open(path, "rb") as f:
        digest = "sha256:" + hashlib.sha256(f.read()).hexdigest()
    return registry.ref("metrics/profiled", "v1"), digest, os.path.getsize(path)


def test_profile_counters_only_grow(lazy, profiled, workdir):
    """The startup profile's counters are the daemon's, as the others: a worker taken over
    and a second profile replayed do not take them back (they did: 8 MiB fetched, then 0
    after the takeover, 4 MiB after the second replay)."""
    ref, digest, size = profiled

    def profile(name, start, count):
        p = os.path.join(workdir, name)
        with open(p, "w") as f:
            f.write(f"lazyerofs-profile 1\nblob {digest} {size}\n")
            f.writelines(f"{i} {start + i * 65536} 65536\n" for i in range(count))
        return p

    def replayed(mp):
        return wait_until(lambda: (lambda s: s if s["profile_state"] == "done" else None)(
            lazy.settled_status_of(mp)), 60)

    lazy.short_replacement_stay()
    mp = lazy.mount(ref, opts=f"insecure,profile={profile('a.prof', 0, 128)}")
    st = replayed(mp)
    assert st and st["profile_fetched_bytes"] >= 8 << 20, st
    child_read(mp + "/data/r0.bin", 0, 4 << 20)
    st = lazy.settled_status_of(mp)
    fetched, served = st["profile_fetched_bytes"], st["profile_served"]
    assert served > 0, st
    os.kill(st["worker_pid"], signal.SIGKILL)
    lazy.wait_worker_replaced(mp, st["worker_pid"])
    st = lazy.settled_status_of(mp)
    assert st["profile_fetched_bytes"] >= fetched and st["profile_served"] >= served, st
    mp2 = lazy.mount(ref, opts=f"insecure,profile={profile('b.prof', 24 << 20, 64)}")
    st = replayed(mp2)
    assert st and st["profile_fetched_bytes"] >= fetched + (4 << 20), st
    exp = prometheus(lazy, mp)
    assert exp.value("lazyerofs_profile_fetched_bytes_total", **entry_labels(st)) == \
        st["profile_fetched_bytes"]
    lazy.umount(mp2)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)


def test_label_values_are_escaped(lazy, busybox):
    """A mountpoint with a double quote, a backslash and a line feed in its name: promtool
    takes the output, and the label reads back as the very name."""
    ref, _ = busybox
    mp = lazy.mount(ref, mp=lazy.mountpoint('we"ird\\na\nme'))
    exp = prometheus(lazy)
    got = [l["mountpoint"] for l, _ in exp.find("lazyerofs_mount_info")]
    assert got == [os.path.realpath(mp)], got
    assert exp.value("lazyerofs_daemon_up", mountpoint=os.path.realpath(mp)) == 1
    lazy.umount(mp)
    lazy.assert_nothing_left()


# --- the metrics directory (node_exporter's textfile collector) --------------------------------

METRICS_MS = 300  # LAZYEROFS_METRICS_MS: the daemons write every 0.3 s instead of 15 s


def prom_files(d):
    """{name: text} of the *.prom files in d (what node_exporter reads)."""
    out = {}
    for n in os.listdir(d):
        if n.endswith(".prom"):
            try:
                with open(os.path.join(d, n)) as f:
                    out[n] = f.read()
            except FileNotFoundError:
                pass
    return out


def merged(texts):
    """The files merged as node_exporter's textfile collector merges them: a family's samples
    from every file under one HELP and TYPE, which must be the same in each file, and no
    series twice."""
    fams, order, seen = {}, [], set()
    for text in texts:
        name = None
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, help_ = line[7:].split(" ", 1)
                if name not in fams:
                    fams[name] = {"help": help_, "type": None, "samples": []}
                    order.append(name)
                assert fams[name]["help"] == help_, f"{name}: HELP differs between files"
            elif line.startswith("# TYPE "):
                _, _, tname, typ = line.split(" ")
                assert tname == name, line
                assert fams[name]["type"] in (None, typ), f"{name}: TYPE differs between files"
                fams[name]["type"] = typ
            elif line:
                series = line.rsplit(" ", 1)[0]
                assert series not in seen, f"{series} in two files"
                seen.add(series)
                fams[name]["samples"].append(line)
    return "".join(f"# HELP {n} {fams[n]['help']}\n# TYPE {n} {fams[n]['type']}\n"
                   + "".join(s + "\n" for s in fams[n]["samples"]) for n in order)


def series(exp):
    return {(n, tuple(sorted(l.items()))): v for n, l, v in exp.samples}


@pytest.fixture
def metrics_dir(lazy):
    """A metrics directory named by the test's configuration file, written every METRICS_MS."""
    d = os.path.join(lazy.root, "textfile")
    os.mkdir(d)
    lazy.write_config(f'metrics-dir = "{d}"\n')
    lazy.env["LAZYEROFS_METRICS_MS"] = str(METRICS_MS)
    return d


@pytest.mark.san
def test_metrics_dir_files(lazy, registry, busybox, big, metrics_dir):
    """Each daemon writes its entry's exposition into the configuration file's metrics-dir:
    a lazyerofs-<entry>.prom file, readable by all, that promtool accepts, with the series
    `status --prometheus` shows for that entry and its mount; its numbers follow the reads;
    the files of two daemons merge without a conflict; a daemon's file goes when it exits."""
    ref, tree = busybox
    mp = lazy.mount(ref)
    st = lazy.status_of(mp)
    labels = entry_labels(st)
    name = f"lazyerofs-{labels['entry'][:16]}.prom"
    assert wait_until(lambda: name in prom_files(metrics_dir), 10), os.listdir(metrics_dir)
    assert os.stat(os.path.join(metrics_dir, name)).st_mode & 0o777 == 0o644
    text = prom_files(metrics_dir)[name]
    promtool_check(text)
    before = Exposition(text).value("lazyerofs_fetched_bytes_total", **labels)

    # Reads: the file's numbers grow with the daemon's, and once it is idle they are the
    # very series and values `status --prometheus` shows.
    assert child_hashes(mp) == content_hashes(tree)
    st = lazy.settled_status_of(mp)
    assert st["fetched_bytes"] > before, (st, before)

    def agrees():
        files = prom_files(metrics_dir)
        if name not in files:
            return None
        mine, theirs = Exposition(files[name]), prometheus(lazy, mp)
        return (mine, theirs) if series(mine) == series(theirs) else None

    got = wait_until(agrees, 10)
    assert got, (prom_files(metrics_dir), prometheus(lazy, mp).text)
    mine, _ = got
    promtool_check(mine.text)
    assert mine.value("lazyerofs_fetched_bytes_total", **labels) == st["fetched_bytes"]
    assert mine.value("lazyerofs_events_total", **labels) == st["events"] > 0
    assert mine.find("lazyerofs_mount_info") == \
        [(dict(labels, mountpoint=os.path.realpath(mp), source=st["source"]), 1)]

    # A second daemon (another blob): a file of its own; the two merge cleanly.
    repo, _ = big
    mp2 = lazy.mount(registry.ref(repo, "v1"))
    st2 = lazy.status_of(mp2)
    name2 = f"lazyerofs-{entry_labels(st2)['entry'][:16]}.prom"
    assert wait_until(lambda: name2 in prom_files(metrics_dir), 10), os.listdir(metrics_dir)
    files = prom_files(metrics_dir)
    assert set(files) == {name, name2}, files
    promtool_check(merged(files.values()))
    assert not [n for n in os.listdir(metrics_dir) if n not in files], os.listdir(metrics_dir)

    # Leaving for good: the file goes with the daemon; the other daemon's stays.
    lazy.umount(mp)
    assert lazy.wait_daemon_gone(st["pid"], 30)
    assert wait_until(lambda: name not in prom_files(metrics_dir), 5), os.listdir(metrics_dir)
    assert name2 in prom_files(metrics_dir)
    lazy.umount(mp2)
    lazy.assert_nothing_left(timeout=30)
    assert os.listdir(metrics_dir) == [], os.listdir(metrics_dir)


def test_metrics_dir_missing(lazy, busybox):
    """A metrics-dir that does not exist costs the mount nothing: reads work, the daemon says
    so once in its log, and writes its file as soon as the directory appears."""
    ref, tree = busybox
    d = os.path.join(lazy.root, "no-such-dir")
    lazy.write_config(f'metrics-dir = "{d}"\n')
    lazy.env["LAZYEROFS_METRICS_MS"] = str(METRICS_MS)
    mp = lazy.mount(ref)
    assert child_hashes(mp) == content_hashes(tree)
    time.sleep(5 * METRICS_MS / 1000)
    warned = [l for l in lazy.log().splitlines() if "metrics-dir" in l]
    assert len(warned) == 1 and d in warned[0], warned
    os.mkdir(d)
    assert wait_until(lambda: prom_files(d), 10), os.listdir(d)
    promtool_check(next(iter(prom_files(d).values())))
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)
    assert os.listdir(d) == [], os.listdir(d)


def test_metrics_dir_long_mountpoints(lazy, busybox, metrics_dir):
    """Mountpoints longer than 511 bytes, one with a character across byte 511: the metrics
    file names each whole, as `status --prometheus` does (it had them cut at 511 bytes: two
    mounts then one series twice, and the one cut inside a character left out)."""
    ref, _ = busybox
    pad = 510 - len(os.path.realpath(lazy.root).encode()) - 1 - 200 - 1 - 200 - 1
    mps = [lazy.mount(ref, mp=lazy.mountpoint(p)) for p in (
        "L" * 200 + "/" + "M" * 200 + "/" + "N" * 150 + "/one",
        "L" * 200 + "/" + "M" * 200 + "/" + "N" * 150 + "/two",
        "a" * pad + "/" + "c" * 200 + "/" + "b" * 199 + "\u4e2dz")]
    want = sorted(os.path.realpath(m) for m in mps)
    assert all(len(w.encode()) > 511 for w in want)

    def written():
        files = prom_files(metrics_dir)
        if len(files) != 1:
            return None
        exp = Exposition(next(iter(files.values())))
        got = sorted(l["mountpoint"] for l, _ in exp.find("lazyerofs_mount_info"))
        return exp if got == want else None

    exp = wait_until(written, 10)
    assert exp, (prom_files(metrics_dir), want)
    promtool_check(exp.text)
    for m in mps:
        lazy.umount(m)
    lazy.assert_nothing_left(timeout=30)


def man_json_keys():
    """The keys the man page's `status --json` paragraph names."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "doc", "lazyerofs.8")) as f:
        page = f.read()
    para = page[page.index(".B \\-\\-json\n"):page.index(".B \\-\\-prometheus\n")]
    keys = set(re.findall(r"\\\(dq([a-z_]+)\\\(dq", para)) - {"mounts"}
    keys |= set(re.findall(r"^\.(?:RB \(|BR) (?:\\%)?([a-z_]+) ", para, re.M))
    return keys


def test_status_json_has_every_key_the_man_page_names(lazy, busybox):
    ref, tree = busybox
    mp = lazy.mount(ref)
    assert child_hashes(mp) == content_hashes(tree)
    st = lazy.settled_status_of(mp)
    keys = man_json_keys()
    assert {"mountpoint", "link_rtt_us", "file_ranges", "profile_served"} <= keys, keys
    assert not keys - set(st), f"named by the man page, not in status --json: {keys - set(st)}"
    # (0 until a transfer large enough told them)
    assert isinstance(st["link_rtt_us"], int) and isinstance(st["link_bytes_per_s"], int), st
    lazy.umount(mp)
