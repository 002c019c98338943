# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""Shared objects ahead of the dynamic loader (issue 10, "fetch what programs will read"). A
program in the image needs six libraries of its own (each larger than a fetch chunk, so none
comes along with another as a neighbour) besides the C library. Its loader opens them one
after the other, each once the one before is mapped: without prediction, every library costs
a request of its own, one after another. The daemon reads the program's needed objects as soon
as it waits for the network, finds them inside the program's root (run path, then the system
directories) and asks for them together: several libraries' requests leave at once, not a
round trip apart. A second program finds the same libraries through a run path relative to
its own directory ($ORIGIN/../lib), as relocatable toolchains do. The program runs and prints what its libraries return, nothing is denied, and the
daemon never reads bytes that are not there."""

import hashlib
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from registry import MT_EROFS

pytestmark = [
    pytest.mark.san,  # the daemon reads ELF files and /proc links: also under the sanitizers
    pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root"),
    pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("gcc") is None,
                       reason="builds x86-64 programs with gcc"),
]

NLIBS = 6
PAD = 384 << 10  # random bytes in each library: more than a chunk (256 KiB)
LIBDIR = "/opt/p/lib"
DELAY = 0.15  # seconds the proxy holds each range request


def sh(*cmd, cwd=None):
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, cwd=cwd)


def build_libs(src, libdir, n, pad_bytes):
    """libp0.so .. libp{n-1}.so in libdir, each pN() holding pad_bytes random bytes."""
    rnd = random.Random(7)
    for i in range(n):
        pad = ",".join(str(b) for b in rnd.randbytes(pad_bytes))
        with open(os.path.join(src, f"p{i}.c"), "w") as f:
            f.write(f"__attribute__((used)) static const unsigned char pad[] = {{{pad}}};\n"
                    f"int p{i}(void) {{ return {i + 1} + (pad[{i}] & 0); }}\n")
        sh("gcc", "-O0", "-shared", "-fPIC", "-o", os.path.join(libdir, f"libp{i}.so"),
           f"p{i}.c", cwd=src)


def write_prog(src, name, pad=0):
    """src/name.c: a program that prints the sum of p0() .. p{NLIBS-1}(), with pad random
    bytes of data of its own."""
    data = ",".join(str(b) for b in random.Random(11).randbytes(pad))
    with open(os.path.join(src, name + ".c"), "w") as f:
        f.write("#include <stdio.h>\n"
                + (f"__attribute__((used)) static const unsigned char pad[] = {{{data}}};\n"
                   if pad else "")
                + "".join(f"int p{i}(void);\n" for i in range(NLIBS))
                + "int main(void) { printf(\"sum %d\\n\", "
                + " + ".join(f"p{i}()" for i in range(NLIBS)) + "); return 0; }\n")


def copy_real(src, tree, dest):
    """The file behind src (symlinks followed), at dest inside the tree."""
    out = os.path.join(tree, dest.lstrip("/"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    shutil.copy2(os.path.realpath(src), out)


@pytest.fixture(scope="module")
def image(workdir, registry):
    """/bin/prog needs libp0..libp5 (run path /opt/p/lib) and the C library, which with the
    loader comes from this machine; /opt/p/bin/oprog is the same program with the run path
    $ORIGIN/../lib. Each libpN.so holds PAD random bytes."""
    src, tree = os.path.join(workdir, "src"), os.path.join(workdir, "tree")
    os.makedirs(src)
    os.makedirs(os.path.join(tree, LIBDIR.lstrip("/")))
    os.makedirs(os.path.join(tree, "bin"))
    os.makedirs(os.path.join(tree, "opt/p/bin"))
    os.makedirs(os.path.join(tree, "proc"))  # the loader finds $ORIGIN in /proc/self/exe
    build_libs(src, os.path.join(tree, LIBDIR.lstrip("/")), NLIBS, PAD)
    write_prog(src, "prog")
    for out, rpath in (("bin/prog", LIBDIR), ("opt/p/bin/oprog", "$ORIGIN/../lib")):
        sh("gcc", "-O0", "-o", os.path.join(tree, out), "prog.c",
           f"-L{os.path.join(tree, LIBDIR.lstrip('/'))}", *[f"-lp{i}" for i in range(NLIBS)],
           f"-Wl,--enable-new-dtags,-rpath,{rpath}", cwd=src)
    interp = subprocess.run(["readelf", "-l", os.path.join(tree, "bin", "prog")], check=True,
                            capture_output=True, text=True).stdout
    interp = interp.split("[Requesting program interpreter: ", 1)[1].split("]", 1)[0]
    copy_real(interp, tree, interp)
    copy_real("/lib/x86_64-linux-gnu/libc.so.6", tree, "/lib/x86_64-linux-gnu/libc.so.6")
    path = os.path.join(workdir, "prog.erofs")
    sh("mkfs.erofs", "-T0", "-zlz4hc", path, tree)
    registry.client.push_image("predict/prog", "v1", [(path, MT_EROFS)])
    # Where each library's data begins in the blob (a local mount's FIEMAP).
    starts = {}
    mp = os.path.join(workdir, "local")
    os.makedirs(mp)
    sh("mount", "-t", "erofs", "-o", "loop,ro", path, mp)
    try:
        for i in range(NLIBS):
            out = subprocess.run(["filefrag", "-e", "-b1",
                                  os.path.join(mp, LIBDIR.lstrip("/"), f"libp{i}.so")],
                                 check=True, capture_output=True, text=True).stdout
            first = [l for l in out.splitlines() if l.strip().startswith("0:")][0]
            starts[i] = int(first.split(":")[2].split("..")[0])
    finally:
        sh("umount", mp)
    return {"path": path, "starts": starts, "tree": tree}


def ranges_of(header):
    """[(first, last)] of a Range header ("bytes=a-b,c-d")."""
    out = []
    for part in (header or "").split("=", 1)[-1].split(","):
        if "-" in part:
            a, b = part.strip().split("-", 1)
            out.append((int(a), int(b) if b else 1 << 62))
    return out


def run_in_root(lowers, tmp_path, prog, overlay):
    """Run prog in a chroot of lowers[0] (a mount) or, with overlay, of an overlay of the
    mounts lowers (the upper first), as a container's root: with /proc mounted there (the
    loader finds $ORIGIN in /proc/self/exe)."""
    root = lowers[0]
    if overlay:
        root = str(tmp_path / "root")
        for d in ("root", "upper", "work"):
            os.makedirs(tmp_path / d)
        sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={':'.join(lowers)},"
           f"upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}", root)
    try:
        sh("mount", "-t", "proc", "proc", os.path.join(root, "proc"))
        try:
            r = subprocess.run(["chroot", root, prog], capture_output=True, text=True,
                               timeout=120)
        finally:
            sh("umount", os.path.join(root, "proc"))
    finally:
        if overlay:
            sh("umount", root)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sum {sum(range(1, NLIBS + 1))}\n"


def assert_asked_together(faultproxy, starts, log, blob=""):
    """When each library's first bytes were asked for (in requests for blob): one after
    another, a delay apart, without prediction; together with it."""
    asked = {}
    for seen in faultproxy.seen():
        if blob not in (seen.path or ""):
            continue
        for i, start in starts.items():
            if i not in asked and any(a <= start <= b for a, b in ranges_of(seen.range)):
                asked[i] = seen.time
    assert len(asked) == NLIBS, asked
    times = sorted(asked.values())
    most = max(sum(1 for u in times if t <= u < t + DELAY / 2) for t in times)
    assert most >= 3, (f"at most {most} of the {NLIBS} libraries asked for within "
                       f"{DELAY / 2} s: {[round(t - times[0], 3) for t in times]}\n"
                       f"{log[-3000:]}")


@pytest.mark.parametrize("overlay", [False, True], ids=["direct", "overlay"])
@pytest.mark.parametrize("prog", ["/bin/prog", "/opt/p/bin/oprog"], ids=["runpath", "origin"])
def test_libraries_come_together(lazy, faultproxy, image, prog, overlay, tmp_path):
    """With overlay, the program runs in a container's root: an overlay whose lower layer is
    the lazy mount (its files have the overlay's device numbers, their mappings the
    mount's)."""
    # A round trip that the loader's one-after-another opens would each pay.
    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=DELAY, count=None)
    lazy.env["LAZYEROFS_DAEMON_DEBUG"] = "1"
    mp = lazy.mount(faultproxy.ref("predict/prog", "v1"))
    faultproxy.reset_counts()
    run_in_root([mp], tmp_path, prog, overlay)
    log = lazy.log()
    assert_asked_together(faultproxy, image["starts"], log)
    assert "program of pid" in log
    assert "event from the daemon itself" not in log
    lazy.umount(mp)


def test_program_off_the_mount_is_left_alone(lazy, faultproxy, image):
    """A program of this machine reading the mount (cat) is not ours to predict: nothing is
    fetched beyond what its reads ask for, and the mount stays free for umount."""
    lazy.env["LAZYEROFS_DAEMON_DEBUG"] = "1"
    mp = lazy.mount(faultproxy.ref("predict/prog", "v1"))
    r = subprocess.run(["cat", os.path.join(mp, LIBDIR.lstrip("/"), "libp3.so")],
                       capture_output=True, timeout=120)
    assert r.returncode == 0
    with open(os.path.join(image["tree"], LIBDIR.lstrip("/"), "libp3.so"), "rb") as f:
        assert r.stdout == f.read()
    assert "program of pid" not in lazy.log()
    lazy.umount(mp)


FIFO_NLIBS = 4
FIFO_PAD = 384 << 10


@pytest.fixture(scope="module")
def fifo_prog(workdir, registry):
    """A program whose needed objects are four libraries of the image and a FIFO in a
    root-only directory of the host, named by its absolute path."""
    workdir = os.path.join(workdir, "fifo")
    secret = os.path.join(workdir, "rootonly")
    os.makedirs(secret)
    os.chmod(secret, 0o700)
    fifo = os.path.join(secret, "fifo")
    os.mkfifo(fifo)
    src, tree = os.path.join(workdir, "src"), os.path.join(workdir, "tree")
    os.makedirs(src)
    os.makedirs(os.path.join(tree, "opt/p/lib"))
    os.makedirs(os.path.join(tree, "opt/p/bin"))
    build_libs(src, os.path.join(tree, "opt/p/lib"), FIFO_NLIBS, FIFO_PAD)
    with open(os.path.join(src, "x.c"), "w") as f:
        f.write("int x(void) { return 0; }\n")
    sh("gcc", "-shared", "-fPIC", f"-Wl,-soname,{fifo}", "-o", os.path.join(src, "libx.so"),
       "x.c", cwd=src)
    calls = " + ".join(f"p{i}()" for i in range(FIFO_NLIBS))
    with open(os.path.join(src, "prog.c"), "w") as f:
        f.write("#include <stdio.h>\nint x(void);\n"
                + "".join(f"int p{i}(void);\n" for i in range(FIFO_NLIBS))
                + f'int main(void) {{ printf("%d\\n", {calls} + x()); return 0; }}\n')
    sh("gcc", "-O0", "-o", os.path.join(tree, "opt/p/bin/oprog"), "prog.c",
       f"-L{os.path.join(tree, 'opt/p/lib')}", *[f"-lp{i}" for i in range(FIFO_NLIBS)],
       os.path.join(src, "libx.so"), "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib", cwd=src)
    path = os.path.join(workdir, "prog.erofs")
    sh("mkfs.erofs", "-T0", path, tree)
    registry.client.push_image("predict/fifo", "v1", [(path, MT_EROFS)])
    return fifo


def test_the_predictor_never_opens_what_is_not_a_file_of_the_image(lazy, faultproxy, fifo_prog):
    """The daemon (root) reads the programs' needed objects ahead of their loader: an object
    that is a FIFO (or a device) in a root-only directory, named by the image, is never
    opened (it was: a writer blocked on that FIFO went on), only looked up."""
    fifo = fifo_prog
    opened = threading.Event()

    def writer():
        fd = os.open(fifo, os.O_WRONLY)  # blocks until someone opens the read side
        opened.set()
        os.close(fd)

    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=0.3, count=None)
    mp = lazy.mount(faultproxy.ref("predict/fifo", "v1"), opts="insecure")
    d = os.path.dirname(mp)  # the test's own private directories: let nobody pass
    while d not in ("/", "/var/tmp", "/tmp", "/var"):
        os.chmod(d, os.stat(d).st_mode | 0o011)
        d = os.path.dirname(d)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            mp + "/opt/p/bin/oprog"], capture_output=True, text=True,
                           timeout=120)
        got = opened.wait(10)
        assert not got, ("the daemon (root) opened a FIFO in a root-only directory that an "
                         "image's program named as a needed object")
    finally:
        if not opened.is_set():
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # release the writer
            time.sleep(0.2)
            os.close(fd)
        faultproxy.clear()
        lazy.umount(mp)


@pytest.fixture(scope="module")
def layers(workdir, registry):
    """Two images for the two lower layers of a container's root: the base holds six
    libraries (each larger than a chunk), the loader and the C library; the app holds only
    /bin/prog, which needs the six (run path /opt/p/lib), and /bin/bigprog, the same with
    more than a chunk of data of its own."""
    workdir = os.path.join(workdir, "layers")
    src = os.path.join(workdir, "src")
    base, app = os.path.join(workdir, "base"), os.path.join(workdir, "app")
    os.makedirs(src)
    os.makedirs(os.path.join(base, LIBDIR.lstrip("/")))
    os.makedirs(os.path.join(app, "bin"))
    os.makedirs(os.path.join(app, "proc"))
    build_libs(src, os.path.join(base, LIBDIR.lstrip("/")), NLIBS, PAD)
    write_prog(src, "prog")
    write_prog(src, "bigprog", PAD)
    for prog in ("prog", "bigprog"):
        sh("gcc", "-O0", "-o", os.path.join(app, "bin", prog), prog + ".c",
           f"-L{os.path.join(base, LIBDIR.lstrip('/'))}", *[f"-lp{i}" for i in range(NLIBS)],
           f"-Wl,--enable-new-dtags,-rpath,{LIBDIR}", cwd=src)
    interp = subprocess.run(["readelf", "-l", os.path.join(app, "bin/prog")], check=True,
                            capture_output=True, text=True).stdout
    interp = interp.split("[Requesting program interpreter: ", 1)[1].split("]", 1)[0]
    copy_real(interp, base, interp)
    copy_real("/lib/x86_64-linux-gnu/libc.so.6", base, "/lib/x86_64-linux-gnu/libc.so.6")
    out = {}
    for name, tree in (("base", base), ("app", app)):
        path = os.path.join(workdir, name + ".erofs")
        sh("mkfs.erofs", "-T0", "-zlz4hc", path, tree)
        registry.client.push_image(f"predict/{name}", "v1", [(path, MT_EROFS)])
        with open(path, "rb") as f:
            out[name + "_digest"] = "sha256:" + hashlib.sha256(f.read()).hexdigest()
        if name == "base":
            out["starts"] = blob_starts(path, workdir, [f"{LIBDIR}/libp{i}.so"
                                                        for i in range(NLIBS)])
    return out


@pytest.mark.parametrize("prog", ["/bin/prog", "/bin/bigprog"], ids=["present", "fetched"])
def test_libraries_in_another_layer_come_together(lazy, faultproxy, layers, tmp_path, prog):
    """A container's root: an overlay of two lazy mounts, the program in the upper one, its
    libraries in the lower one (another image, another daemon). Whichever daemon sees the
    program wait finds them in the root as the loader would: the libraries' own (the
    program here when the mount brought it) fetches them, the program's (a program with
    data of its own to fetch) has them read there, which their daemon fetches. Either way
    their requests leave together, not one after the other as the loader opens them."""
    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=DELAY, count=None)
    lazy.env["LAZYEROFS_DAEMON_DEBUG"] = "1"
    base = lazy.mount(faultproxy.ref("predict/base", "v1"))
    app = lazy.mount(faultproxy.ref("predict/app", "v1"))
    faultproxy.reset_counts()
    run_in_root([app, base], tmp_path, prog, True)
    log = lazy.log()
    if prog == "/bin/bigprog":
        # the program's daemon (the app image's) had the libraries read
        holder = lazy.status_of(app)["pid"]
        worker = re.search(rf"ready: pid {holder} \(worker (\d+)\)", log).group(1)
        assert re.search(rf"\[{worker}\] debug: program of pid \d+: {LIBDIR}/libp\d\.so "
                         "read ahead in its layer", log), log[-3000:]
    assert_asked_together(faultproxy, layers["starts"], log, layers["base_digest"])
    assert "event from the daemon itself" not in log
    lazy.umount(app)
    lazy.umount(base)


LOCALE_DIR = "/usr/lib/locale/C.utf8"
GCONV_CACHE = "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache"


def blob_starts(path, workdir, files):
    """Where each file's data begins in the image (a local mount's FIEMAP), by name."""
    starts = {}
    mp = os.path.join(workdir, "local")
    os.makedirs(mp, exist_ok=True)
    sh("mount", "-t", "erofs", "-o", "loop,ro", path, mp)
    try:
        for name in files:
            out = subprocess.run(["filefrag", "-e", "-b1", os.path.join(mp, name.lstrip("/"))],
                                 check=True, capture_output=True, text=True).stdout
            first = [l for l in out.splitlines() if l.strip().startswith("0:")][0]
            starts[name] = int(first.split(":")[2].split("..")[0])
    finally:
        sh("umount", mp)
    return starts


@pytest.fixture(scope="module")
def locale_image(workdir, registry):
    """/usr/bin/lprog (after the loader in the blob, beyond what the mount fetches) sets its
    locale from the environment and prints the character set's name and MB_CUR_MAX; the
    image holds this machine's loader, C library, C.UTF-8 locale and character set
    conversions' cache."""
    if not os.path.exists(os.path.join(LOCALE_DIR, "LC_CTYPE")) or \
       not os.path.exists(GCONV_CACHE):
        pytest.skip("this machine has no C.UTF-8 locale files to copy")
    workdir = os.path.join(workdir, "locale")
    src, tree = os.path.join(workdir, "src"), os.path.join(workdir, "tree")
    os.makedirs(src)
    os.makedirs(os.path.join(tree, "usr/bin"))
    pad = ",".join(str(b) for b in random.Random(9).randbytes(PAD))
    with open(os.path.join(src, "lprog.c"), "w") as f:
        # (random bytes: more than a chunk, so that its first read brings no neighbours)
        f.write("#include <langinfo.h>\n#include <locale.h>\n#include <stdio.h>\n"
                "#include <stdlib.h>\n"
                f"__attribute__((used)) static const unsigned char pad[] = {{{pad}}};\n"
                "int main(void) { setlocale(LC_ALL, \"\");\n"
                " printf(\"%s %d\\n\", nl_langinfo(CODESET), (int)MB_CUR_MAX); return 0; }\n")
    sh("gcc", "-O0", "-o", os.path.join(tree, "usr/bin/lprog"), "lprog.c", cwd=src)
    interp = subprocess.run(["readelf", "-l", os.path.join(tree, "usr/bin/lprog")], check=True,
                            capture_output=True, text=True).stdout
    interp = interp.split("[Requesting program interpreter: ", 1)[1].split("]", 1)[0]
    copy_real(interp, tree, interp)
    copy_real("/lib/x86_64-linux-gnu/libc.so.6", tree, "/lib/x86_64-linux-gnu/libc.so.6")
    shutil.copytree(LOCALE_DIR, os.path.join(tree, LOCALE_DIR.lstrip("/")))
    copy_real(GCONV_CACHE, tree, GCONV_CACHE)
    path = os.path.join(workdir, "lprog.erofs")
    sh("mkfs.erofs", "-T0", "-zlz4hc", path, tree)
    registry.client.push_image("predict/locale", "v1", [(path, MT_EROFS)])
    files = ["/usr/bin/lprog", interp, LOCALE_DIR + "/LC_CTYPE"]
    return {"starts": blob_starts(path, workdir, files), "interp": interp}


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
def test_a_programs_loader_and_locale_come_with_its_first_page(lazy, faultproxy, locale_image,
                                                              lang):
    """A program's loader and the locale its environment names are known before its own
    bytes are: the first program started in the mount's root has them asked for with its
    own first page (its execve's read), not a round trip or more after (the loader once the
    program's header is here, the locale once the C library runs setlocale). A locale the
    environment does not name (C) is not fetched at all."""
    faultproxy.add("delay", path="/blobs/", method="GET", range=".", seconds=DELAY, count=None)
    lazy.env["LAZYEROFS_DAEMON_DEBUG"] = "1"
    mp = lazy.mount(faultproxy.ref("predict/locale", "v1"))
    faultproxy.reset_counts()
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "LANG": lang}
    r = subprocess.run(["chroot", mp, "/usr/bin/lprog"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("UTF-8 6\n" if lang != "C" else "ANSI_X3.4-1968 1\n")
    asked = {}
    for seen in faultproxy.seen():
        for name, start in locale_image["starts"].items():
            if name not in asked and any(a <= start <= b for a, b in ranges_of(seen.range)):
                asked[name] = seen.time
    log = lazy.log()
    first = asked.get("/usr/bin/lprog")
    assert first is not None, f"the program's first page never asked for: {asked}\n{log[-3000:]}"
    after = {n: round(t - first, 3) for n, t in asked.items()}
    assert after.get(locale_image["interp"], 1e9) < DELAY / 2, (after, log[-3000:])
    if lang == "C":
        assert LOCALE_DIR + "/LC_CTYPE" not in asked, after
    else:
        assert after.get(LOCALE_DIR + "/LC_CTYPE", 1e9) < DELAY / 2, (after, log[-3000:])
    assert "event from the daemon itself" not in log
    lazy.umount(mp)


def test_a_umount_right_after_a_killed_program_finds_the_mount_free(lazy, faultproxy, image):
    """A program started in a chroot of the mount, its registry stalled: killed, and the mount
    unmounted at once. The predictor held the reader's root (and an executable of the mount)
    while it waited for their bytes: the umount was refused as busy until the fetch gave
    up (timeout=25)."""
    mp = lazy.mount(faultproxy.ref("predict/prog", "v1"), opts="insecure,timeout=25")
    faultproxy.add("stall", path="/blobs/", method="GET", seconds=40, count=None)
    p = subprocess.Popen(["chroot", mp, "/bin/prog"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(3)  # waiting for its bytes, and the predictor for its loader and locale
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    r = lazy.umount(mp, check=False)
    faultproxy.clear()
    if r.returncode != 0:
        time.sleep(25)  # (the fetch gives up: then it goes)
        lazy.umount(mp)
    assert r.returncode == 0, r.stderr
    lazy.assert_nothing_left()
