# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The decisive test of the metadata walker (issue 2): for every image, a sparse copy that
holds only the ranges `lazyerofs inspect --extents` lists must mount (file-backed, no daemon)
and show exactly the source tree to a full metadata walk — types, modes, owners, sizes, link
targets, device numbers, link counts, directory names, xattrs — without reading file data.
Also: those ranges are metadata, not a copy of the image; and `inspect` itself (summary,
extents format, bad input)."""

import collections
import os
import shutil
import struct
import subprocess
import tempfile

import pytest

from common import BIN, run, assert_one_line_error, FIXTURES, FIXTURE_IMAGES
from trees import (ALL_IMAGES, MKFS_IMAGES, KITCHEN_BIGFILE_SIZE, snapshot, diff_snapshots,
                   format_diff, getfattr_dump, diff_getfattr, parse_extents, sparse_copy,
                   record_share, mount_source, EventFiller, markable_dir,
                   file_digests_in_subprocess)

EROFS_MAGIC = 0xE0F5E1E2
SB_OFFSET = 1024


class WalkContext:
    """Per-session caches: each source tree is snapshotted once, each image inspected once."""

    def __init__(self, trees):
        self.trees = trees
        self._sources = {}
        self._extents = {}
        self._digests = {}

    def digests(self, tree):
        if tree not in self._digests:
            self._digests[tree] = file_digests_in_subprocess(tree)
        return self._digests[tree]

    def source(self, tree):
        if tree not in self._sources:
            snap = snapshot(tree)
            attrs, rc, err = getfattr_dump(tree)
            assert rc == 0 and not err.strip(), f"getfattr on the source tree: {err}"
            self._sources[tree] = (snap, attrs)
        return self._sources[tree]

    def extents(self, img, gap=None):
        """The image's ranges as `inspect --extents` gives them (gap=None: its default merge
        gap, which is what a mount prefetches; gap=0: only adjacent ranges merged)."""
        key = (img.name, gap)
        if key not in self._extents:
            args = ["inspect", "--extents", *([] if gap is None else [f"--gap={gap}"]),
                    img.path]
            r = run(args)
            assert r.returncode == 0, \
                f"lazyerofs {' '.join(args)} exited {r.returncode}: {r.stderr}"
            self._extents[key] = parse_extents(r.stdout)
        return self._extents[key]


@pytest.fixture(scope="session")
def walk(trees):
    return WalkContext(trees)


@pytest.fixture
def scratch(trees_workdir):
    d = tempfile.mkdtemp(prefix="scratch-", dir=trees_workdir)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _assert_same_tree(src_tree, mp, walk, what):
    expected, expected_attrs = walk.source(src_tree)
    actual = snapshot(mp)
    assert len(actual) > 1 or len(expected) == 1, f"{what}: the mount looks empty"
    d = diff_snapshots(expected, actual)
    if d:
        pytest.fail(format_diff(d, title=f"differences between the source tree and {what}"),
                    pytrace=False)
    attrs, rc, err = getfattr_dump(mp)
    gd = diff_getfattr(expected_attrs, attrs)
    assert rc == 0 and not err.strip(), f"getfattr -R on {what} failed ({rc}): {err[:2000]}"
    if gd:
        pytest.fail(format_diff(gd, title=f"getfattr differences on {what}"), pytrace=False)


def _blocks(extents, bs=4096):
    blocks = set()
    for off, length in extents:
        blocks.update(range(off // bs, (off + length + bs - 1) // bs))
    return blocks


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_full_image_mount_matches_source(name, trees, walk, file_mounts):
    """Control: the complete image shows the source tree, and every file's bytes. If this
    fails the image builder or mkfs.erofs (or the kernel) is at fault, not the walker: an
    image that reads wrong bytes even whole would otherwise be blamed on the walk by
    test_data_reads_with_only_extents_prefetched."""
    img = trees.image(name)
    mp = file_mounts.mount(img.path)
    _assert_same_tree(img.tree, mp, walk, f"the full image {name}")
    got, want = file_digests_in_subprocess(mp), walk.digests(img.tree)
    bad = sorted(p for p in want.keys() | got.keys() if got.get(p) != want.get(p))
    assert not bad, f"files of the full image {name} read wrongly: {bad[:10]}"


@pytest.mark.parametrize("gap", [None, 0], ids=["default-gap", "gap0"])
@pytest.mark.parametrize("name", ALL_IMAGES)
def test_sparse_copy_of_extents_mounts_as_source(name, gap, trees, walk, file_mounts, scratch):
    """The decisive test: only the walk's ranges present, everything else a hole. With the
    default merge gap (what a mount prefetches) and with --gap=0, where bridged gaps cannot
    hide a structure the walk missed."""
    img = trees.image(name)
    extents = walk.extents(img, gap)
    size = img.size
    if gap is None:
        record_share(name, size, extents)
    sparse = os.path.join(scratch, "sparse.erofs")
    sparse_copy(img.path, extents, sparse)
    st = os.stat(sparse)
    assert st.st_size == size
    # The copy really is sparse: nothing is allocated beyond the listed ranges' blocks
    # (plus a little room for the filesystem's own extent tree blocks).
    assert st.st_blocks * 512 <= len(_blocks(extents)) * 4096 + 64 * 1024, \
        "the sparse copy holds more than the listed ranges"

    mp = file_mounts.mount(sparse)
    src = mount_source(mp)
    assert src == ("erofs", sparse), f"not a file-backed mount of the sparse copy: {src}"
    _assert_same_tree(img.tree, mp, walk, f"the sparse copy of {name} (only --extents present)")


@pytest.fixture
def markable_scratch():
    d = tempfile.mkdtemp(prefix="lazyerofs-walk-", dir=markable_dir())
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_data_reads_with_only_extents_prefetched(name, trees, walk, file_mounts,
                                                 markable_scratch):
    """Beyond the tree walk, the ranges must hold everything the kernel reads WITHOUT a
    pre-content event (kernel fact 2): compression indexes, chunk indexes, inline and
    compressed tails, the packed inode's metadata. A stand-in for the daemon answers the
    events by copying the requested range from the image; then reading every file must give
    the source's bytes. A metadata block the walk missed stays a hole and shows up as wrong
    data or EIO."""
    img = trees.image(name)
    extents = walk.extents(img, 0)
    sparse = os.path.join(markable_scratch, "sparse.erofs")
    sparse_copy(img.path, extents, sparse)
    filler = EventFiller(sparse, img.path)
    try:
        mp = file_mounts.mount(sparse)
        got = file_digests_in_subprocess(mp)
        file_mounts.cleanup()
    finally:
        filler.close()
    assert not filler.errors, filler.errors
    want = walk.digests(img.tree)
    bad = [f"{p!r}: " + ("missing" if p not in got else
                         got[p] if got[p].startswith("<") else "wrong data")
           for p in sorted(want) if got.get(p) != want[p]]
    bad += [f"{p!r}: unexpected" for p in sorted(got.keys() - want.keys())]
    if bad:
        pytest.fail(format_diff(bad, title=f"files of {name} read wrongly with only the "
                                            f"extents prefetched ({filler.events} events)"),
                    pytrace=False)
    # The data really came through events, not from the extents.
    assert filler.events > 0 and filler.filled > 0


def _find_block(path, needle):
    with open(path, "rb") as f:
        data = f.read()
    return data.find(needle)


@pytest.mark.parametrize("name", [f"mkfs/{n}" for n in MKFS_IMAGES])
def test_extents_are_metadata_not_a_copy(name, trees, walk):
    """Images with a 6 MiB random file: the ranges are a small share of the image, and none
    of them covers that file's data."""
    img = trees.image(name)
    extents = walk.extents(img)
    total = sum(length for _, length in extents)
    size = img.size
    record_share(name, size, extents)
    print(f"{name}: {len(extents)} extents, {total} of {size} bytes "
          f"({100.0 * total / size:.2f}%)")
    assert total * 4 < size, f"{name}: metadata is {total} of {size} bytes: not 'well below'"

    # Where the random file's blocks sit in the image (uncompressed and chunked layouts keep
    # them verbatim; lz4hc stores incompressible data raw as well): no extent may cover one.
    big = os.path.join(img.tree, "big", "random.bin")
    with open(big, "rb") as f:
        data = f.read()
    assert len(data) == KITCHEN_BIGFILE_SIZE
    with open(img.path, "rb") as f:
        image = f.read()
    found = covered = 0
    for off in range(0, len(data) - 4096 + 1, 4096 * 64):
        pos = image.find(data[off:off + 4096])
        if pos < 0:
            continue
        found += 1
        if any(o < pos + 4096 and pos < o + n for o, n in extents):
            covered += 1
    if found == 0:
        pytest.skip(f"{name}: the random file's blocks are not stored verbatim")
    assert covered == 0, f"{name}: {covered} of {found} sampled data blocks of " \
                         f"big/random.bin lie inside the metadata extents"


# --- inspect ---------------------------------------------------------------------------------

def _superblock(path):
    with open(path, "rb") as f:
        f.seek(SB_OFFSET)
        sb = f.read(128)
    magic, _csum, _compat, blkszbits, _ext, _root, inos = struct.unpack_from("<IIIBBHQ", sb, 0)
    assert magic == EROFS_MAGIC
    return 1 << blkszbits, inos


def _tree_counts(snap):
    """What the summary's `tree:` line should say, counted on a snapshot of the source tree
    (independent of the binary): inodes by kind (hardlinks once), names below the root, and
    the depth in levels (the root is level 1)."""
    kinds = collections.Counter()
    for ent in snap.entries.values():
        t = ent.get("type")
        kinds["directories" if t == "dir" else "files" if t == "reg" else
              "symlinks" if t == "lnk" else "special"] += 1
    for group in snap.links:
        t = snap.entries[next(iter(group))]["type"]
        kinds["files" if t == "reg" else "symlinks" if t == "lnk" else "special"] -= \
            len(group) - 1
    kinds["entries"] = len(snap) - 1
    kinds["levels"] = max(p.count("/") for p in snap.entries if p != "/") + 1
    return kinds


def _numbers(line):
    cleaned = "".join(c if c.isalnum() else " " for c in line.replace(",", ""))
    return {w for w in cleaned.split() if w.isdigit()}


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_inspect_summary(name, trees, walk):
    img = trees.image(name)
    r = run(["inspect", img.path])
    assert r.returncode == 0, r.stderr
    assert not r.stderr.strip(), r.stderr
    block_size, inodes = _superblock(img.path)
    lines = r.stdout.lower().splitlines()
    assert any("block" in l and (str(block_size) in _numbers(l) or
                                 f"{block_size // 1024} kib" in l) for l in lines), \
        f"summary does not give the block size {block_size}:\n{r.stdout}"
    assert any("inode" in l and str(inodes) in _numbers(l) for l in lines), \
        f"summary does not give the inode count {inodes}:\n{r.stdout}"
    # The walk's counts against the source tree (the full-image mount test shows the image
    # holds exactly that tree): every inode reached, each kind, names and depth.
    want = _tree_counts(walk.source(img.tree)[0])
    # (The superblock's count may include the packed inode of fragment images: no name.)
    tree_inodes = sum(want[k] for k in ("directories", "files", "symlinks", "special"))
    inode_line = next((l for l in lines if l.startswith("inodes:")), "")
    assert f"{tree_inodes} reached" in inode_line, \
        f"the walk did not reach the tree's {tree_inodes} inodes:\n{r.stdout}"
    tree_line = next((l for l in lines if l.startswith("tree:")), None)
    assert tree_line, r.stdout
    got = {k: int(n) for n, k in
           (m.split() for m in tree_line[len("tree:"):].replace(",", " , ").split(" , "))}
    assert got == dict(want), f"summary {got} != source tree {dict(want)}"
    # Consistency of the two outputs (what the sparse-copy tests prove sufficient).
    total = sum(length for _, length in walk.extents(img))
    assert any(str(total) in _numbers(l) for l in lines), \
        f"summary does not give the metadata bytes ({total}, the --extents total):\n{r.stdout}"
    assert any(str(img.size) in _numbers(l) for l in lines), \
        f"summary does not give the image size ({img.size}):\n{r.stdout}"


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_inspect_extents_well_formed(name, trees):
    img = trees.image(name)
    r = run(["inspect", "--extents", img.path])
    assert r.returncode == 0, r.stderr
    assert not r.stderr.strip(), r.stderr
    ext = parse_extents(r.stdout)
    assert ext, "no extents"
    size = img.size
    for (o1, n1), (o2, n2) in zip(ext, ext[1:]):
        assert o1 + n1 <= o2, f"extents not sorted or overlapping: {o1}+{n1}, {o2}+{n2}"
    for o, n in ext:
        assert n > 0, f"empty extent at {o}"
        assert o + n <= size, f"extent {o}+{n} ends past the image size {size}"
    # The superblock is metadata.
    assert ext[0][0] <= SB_OFFSET and ext[0][0] + ext[0][1] >= SB_OFFSET + 128, ext[0]
    # Same image, same answer.
    assert run(["inspect", "--extents", img.path]).stdout == r.stdout


# Bad input: one line on stderr, exit 2, and never a partial extents list on stdout.

def _bad(scratch, kind):
    p = os.path.join(scratch, f"{kind}.img")
    plain = os.path.join(FIXTURES, "plain.erofs")
    if kind == "missing":
        return os.path.join(scratch, "no-such-image.erofs")
    if kind == "directory":
        return scratch
    if kind == "passwd":
        shutil.copyfile("/etc/passwd", p)
    elif kind == "empty":
        open(p, "wb").close()
    elif kind == "zeros":
        with open(p, "wb") as f:
            f.truncate(1 << 20)
    elif kind == "truncated-sb":
        with open(plain, "rb") as f:
            data = f.read(SB_OFFSET + 60)
        with open(p, "wb") as f:
            f.write(data)
    elif kind == "flipped-magic":
        shutil.copyfile(plain, p)
        with open(p, "r+b") as f:
            f.seek(SB_OFFSET)
            b = f.read(1)
            f.seek(SB_OFFSET)
            f.write(bytes([b[0] ^ 0xFF]))
    else:
        raise KeyError(kind)
    return p


BAD_KINDS = ["missing", "directory", "passwd", "empty", "zeros", "truncated-sb",
             "flipped-magic"]


@pytest.mark.parametrize("extents", [False, True], ids=["summary", "extents"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_inspect_bad_input(kind, extents, scratch):
    path = _bad(scratch, kind)
    r = run(["inspect", *(["--extents"] if extents else []), path])
    assert_one_line_error(r, 2)
    assert r.stdout == "" or not extents, f"partial output on failure: {r.stdout[:500]}"


@pytest.mark.parametrize("extents", [False, True], ids=["summary", "extents"])
@pytest.mark.parametrize("cut", ["in-metadata", "half", "last-byte"])
@pytest.mark.parametrize("name", FIXTURE_IMAGES)
def test_inspect_truncated_fixture(name, cut, extents, trees, walk, scratch):
    """A truncated image is refused: cut inside its last metadata range (the last block of
    it, which holds metadata), at half its size, or by one byte."""
    img = trees.image(f"fixture/{name}")
    last_off, last_len = walk.extents(img)[-1]
    at = {"in-metadata": last_off + last_len - min(last_len, 4096),
          "half": img.size // 2, "last-byte": img.size - 1}[cut]
    assert SB_OFFSET + 128 < at < img.size
    p = os.path.join(scratch, "truncated.erofs")
    with open(img.path, "rb") as f, open(p, "wb") as out:
        out.write(f.read(at))
    r = run(["inspect", *(["--extents"] if extents else []), p])
    assert_one_line_error(r, 2)
    assert r.stdout == "" or not extents, f"partial output on failure: {r.stdout[:500]}"


@pytest.mark.parametrize("args", [["--no-such-option", "x.erofs"], ["--extents"], [],
                                  ["a.erofs", "b.erofs"], ["-x"]])
def test_inspect_usage_errors(args):
    assert_one_line_error(run(["inspect", *args]), 1)



def test_shared_xattrs_read_once(markable_scratch):
    """A shared xattr entry is read once by the walk, not once per inode that points at it.
    Counted from outside the binary: a copy of the image marked for pre-content events raises
    one event per pread() of `lazyerofs inspect`, with its range. The image: 36 values of 300
    bytes, each carried by 20 files, stored in the shared xattr area (mkfs.erofs -x1), which
    then fills whole blocks that hold nothing else (the inodes come after it)."""
    tree = os.path.join(markable_scratch, "tree")
    os.makedirs(tree)
    sharers, entries = 20, []
    for g in range(3):  # 12 values per file: ext4 keeps one block of xattrs per inode
        for i in range(sharers):
            p = os.path.join(tree, f"f{g}-{i:02d}")
            open(p, "w").close()
            for k in range(12 * g, 12 * g + 12):
                os.setxattr(p, f"user.s{k:02d}", b"%02d" % k * 150)
    img = os.path.join(markable_scratch, "x.erofs")
    subprocess.run(["mkfs.erofs", "-x1", img, tree], check=True, capture_output=True,
                   timeout=120)
    with open(img, "rb") as f:
        data = f.read()
    bs = 1 << data[SB_OFFSET + 12]
    xattr_start = struct.unpack_from("<I", data, SB_OFFSET + 44)[0] * bs
    for k in range(36):
        e = bytes([3, 1]) + struct.pack("<H", 300) + b"s%02d" % k + b"%02d" % k * 150
        assert data.count(e) == 1 and data.find(e) >= xattr_start, f"user.s{k:02d} not shared"
        entries.append((data.find(e), len(e)))
    end = max(o + n for o, n in entries)
    pure = [b for b in range(1, end // bs) if b * bs >= min(o for o, _ in entries)]
    assert pure, f"the shared area ({entries[0][0]}..{end}) fills no block of its own"
    copy = os.path.join(markable_scratch, "copy.erofs")
    shutil.copyfile(img, copy)
    watcher = EventFiller(copy, img)
    try:
        r = subprocess.run([BIN, "inspect", copy], capture_output=True, text=True, timeout=120)
    finally:
        watcher.close()
    assert r.returncode == 0 and not watcher.errors, (r.stderr, watcher.errors)
    for b in pure:
        held = sum(1 for o, n in entries if o < (b + 1) * bs and b * bs < o + n)
        reads = sum(1 for o, n in watcher.ranges if o < (b + 1) * bs and b * bs < o + n)
        # Once per entry at most (the walker reads a block per entry); per sharer would be
        # sharers x held.
        assert 1 <= reads <= held, \
            f"block {b} (shared xattrs only, {held} entries) was read {reads} times"
