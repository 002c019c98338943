# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The metadata map (issue 10, "mount in fewer round trips"): `lazyerofs push` puts the byte
ranges that hold an image's metadata on its layer's descriptor (annotation
dev.lazyerofs.metadata), and a cold mount asks for all of them at once instead of walking the
image level by level. A map is only a hint: one that lists too little, too much, or garbage
costs bytes or nothing, never a wrong byte, and images pushed by other tools (no map) mount as
before."""

import base64
import json
import os
import struct

import pytest

from common import FIXTURE_IMAGES, FIXTURES, child_read, run
from registry import MT_EROFS, MT_OCI_MANIFEST
from test_files_index import crc32c
from test_mount import parse_verbose
from trees import compare_tree, parse_extents

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lazy mounts need root")

ANNOTATION = "dev.lazyerofs.metadata"
UNIT = 4096


def leb(v):
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def encode(ranges):
    """A map of (offset, length) pairs in units (sorted, disjoint), as push writes one."""
    out, prev = bytearray(), 0
    for start, length in ranges:
        out += leb(start - prev) + leb(length)
        prev = start + length
    return "1:" + base64.b64encode(bytes(out)).decode()


def decode(text, size):
    """A map's ranges in bytes, checked as strictly as the mount reads them."""
    assert text.startswith("1:"), text[:20]
    raw, pos, i, out = base64.b64decode(text[2:], validate=True), 0, 0, []

    def number():
        nonlocal i
        v = shift = 0
        while True:
            b = raw[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while i < len(raw):
        gap, length = number(), number()
        assert length > 0
        pos += gap
        out.append((pos * UNIT, min((pos + length) * UNIT, size) - pos * UNIT))
        pos += length
    assert pos * UNIT < size + UNIT, "the map reaches past the blob"
    return out


def layer_descriptor(registry, repo, tag):
    _, body = registry.client.get_manifest(repo, tag)
    return json.loads(body)["layers"][0]


def push(registry, path, repo, tag="v1"):
    r = run(["push", "-o", "insecure", path, registry.ref(repo, tag)])
    assert r.returncode == 0, r.stderr
    return registry.ref(repo, tag)


def covered(ranges, off, length):
    return any(o <= off and off + length <= o + n for o, n in ranges)


@pytest.mark.parametrize("name", FIXTURE_IMAGES)
def test_push_maps_the_metadata(registry, name):
    """The map push writes lists exactly the 4 KiB units that hold what a mount's walk needs
    (inspect --extents, not merged): no gap bridged, not even a unit of a small file's data
    between two metadata blocks (a slow link pays for those in bytes; a mount bridges what is
    worth it for its own link)."""
    path = os.path.join(FIXTURES, name + ".erofs")
    size = os.path.getsize(path)
    push(registry, path, f"map/{name}")
    desc = layer_descriptor(registry, f"map/{name}", "v1")
    assert desc["mediaType"] == MT_EROFS
    ranges = decode(desc["annotations"][ANNOTATION], size)
    # the same text as inspect prints for other tools to set
    r = run(["inspect", "--metadata-map", path])
    assert r.returncode == 0 and r.stdout == desc["annotations"][ANNOTATION] + "\n", r
    r = run(["inspect", "--extents", "--gap=0", path])
    assert r.returncode == 0, r.stderr
    exact = parse_extents(r.stdout)
    for off, length in exact:
        assert covered(ranges, off, length), f"{name}: {off}+{length} is not in the map"
    units = {u for o, n in exact for u in range(o // UNIT, -(-(o + n) // UNIT))}
    mapped = {u for o, n in ranges for u in range(o // UNIT, -(-(o + n) // UNIT))}
    assert mapped == units, (name, len(mapped - units), "units mapped that hold no metadata")
    # pushing again gives the same manifest (the map is made from the image alone)
    before = registry.client.get_manifest(f"map/{name}", "v1")[1]
    push(registry, path, f"map/{name}")
    assert registry.client.get_manifest(f"map/{name}", "v1")[1] == before


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.san)
                                  if n in ("plain", "lz4hc") else n for n in FIXTURE_IMAGES])
def test_cold_mount_asks_for_the_map_at_once(lazy, registry, expected_tree, name):
    """With a map, the mount's walk goes out as the map's few batches (no round per level)
    and the tree is exactly the source's. (Without one, as pushed by another tool, every
    layout is test_mount.py's test_fixture_tree_cold.) The registry on loopback answers
    quickly: the map follows a first round, which tells whether gaps are worth bridging."""
    path = os.path.join(FIXTURES, name + ".erofs")
    ref = push(registry, path, f"map/{name}")
    mp, r = lazy.mount(ref, extra=["-v"], check=False)
    assert r.returncode == 0, r.stderr
    assert "metadata map:" in r.stderr, r.stderr
    assert "after the first round" in r.stderr, r.stderr
    n = parse_verbose(r.stderr)
    compare_tree(mp, expected_tree)
    batches = int(r.stderr.split("metadata batches: ")[1].split(",")[0])
    assert batches <= 5, f"{name}: {batches} batches with a map of {n.get('meta')}: {r.stderr}"
    lazy.umount(mp)


def test_a_registry_slow_to_answer_gets_the_map_as_listed(lazy, registry, faultproxy,
                                                          expected_tree):
    """A registry whose replies take a while (here 30 ms more each, as over a long link) gets
    the whole map before any round, exactly as listed: no round trip waits for a rate, and no
    gap is bridged that a slow link would pay for in bytes."""
    push(registry, os.path.join(FIXTURES, "lz4hc.erofs"), "map/slow")
    faultproxy.add("delay", path=".", seconds=0.03, count=None)
    mp, r = lazy.mount(faultproxy.ref("map/slow", "v1"), extra=["-v"], check=False)
    assert r.returncode == 0, r.stderr
    assert "as listed, before the first round" in r.stderr, r.stderr
    compare_tree(mp, expected_tree)
    batches = int(r.stderr.split("metadata batches: ")[1].split(",")[0])
    assert batches <= 4, r.stderr
    lazy.umount(mp)



def small_files_image(workdir):
    """An lz4hc image whose metadata blocks lie a block apart in many places: 72 files of 3-9
    KB, each compressed into one block that mkfs puts between two of inodes and names."""
    import random
    import subprocess
    tree, path = os.path.join(workdir, "smallfiles"), os.path.join(workdir, "smallfiles.erofs")
    if not os.path.exists(path):
        rnd = random.Random(3)
        for d in range(3):
            os.makedirs(os.path.join(tree, f"d{d}"))
            for i in range(24):
                with open(os.path.join(tree, f"d{d}", f"file-with-a-longer-name-{i}.txt"),
                          "wb") as f:
                    f.write(bytes(rnd.choice(b"abcdefghij \n")
                                  for _ in range(rnd.randint(3000, 9000))))
        subprocess.run(["mkfs.erofs", "-zlz4hc", path, tree], check=True,
                       capture_output=True, timeout=120)
    return path, tree


def test_the_map_leaves_out_small_files_between_metadata(lazy, registry, faultproxy, workdir):
    """Where a small file's data lies between two metadata blocks, the map leaves it out, and
    a mount from a registry slow to answer (a long link, which pays for every byte) fetches
    the metadata alone: no such block (a Debian minbase has 149, 0.6 of its 6.4 MiB). The
    files read right all the same."""
    path, tree = small_files_image(workdir)
    size = os.path.getsize(path)
    r = run(["inspect", "--extents", "--gap=0", path])
    assert r.returncode == 0, r.stderr
    units = {u for o, n in parse_extents(r.stdout) for u in range(o // UNIT, -(-(o + n) // UNIT))}
    gaps = [u for u in range(min(units), max(units)) if u not in units and u - 1 in units
            and u + 1 in units]
    assert len(gaps) >= 5, "the image has no metadata blocks a block apart: nothing to test"
    push(registry, path, "map/smallfiles")
    mapped = {u for o, n in decode(layer_descriptor(registry, "map/smallfiles", "v1")
                                   ["annotations"][ANNOTATION], size)
              for u in range(o // UNIT, -(-(o + n) // UNIT))}
    assert mapped == units, f"{len(mapped - units)} unit(s) mapped that hold no metadata"
    faultproxy.add("delay", path=".", seconds=0.03, count=None)
    mp, r = lazy.mount(faultproxy.ref("map/smallfiles", "v1"), extra=["-v"], check=False)
    assert r.returncode == 0, r.stderr
    assert "as listed, before the first round" in r.stderr, r.stderr
    st = lazy.status_of(mp)
    assert st["fetched_bytes"] <= (len(units | {0})) * UNIT, (st["fetched_bytes"], len(units))
    for d in sorted(os.listdir(tree)):
        for name in sorted(os.listdir(os.path.join(tree, d))):
            with open(os.path.join(tree, d, name), "rb") as f:
                assert child_read(os.path.join(mp, d, name)) == f.read(), name
    faultproxy.clear()
    lazy.umount(mp)

def test_a_mount_told_to_ignore_the_map_walks(lazy, registry, expected_tree):
    """LAZYEROFS_NO_METADATA_MAP: the mount walks level by level, as for an image without a
    map, and shows the same tree."""
    ref = push(registry, os.path.join(FIXTURES, "lz4hc.erofs"), "map/lz4hc")
    env = dict(lazy.env, LAZYEROFS_NO_METADATA_MAP="1")
    mp = lazy.mountpoint("nomap")
    r = lazy.run(["mount", "-v", "-o", "insecure", ref, mp], env=env)
    assert r.returncode == 0, r.stderr
    assert "metadata map:" not in r.stderr, r.stderr
    compare_tree(mp, expected_tree)
    r = lazy.run(["umount", mp], env=env)
    assert r.returncode == 0, r.stderr


def push_with_map(registry, repo, path, text):
    """The image as push would make it, but with the map `text` (None: no annotation)."""
    with open(path, "rb") as f:
        data = f.read()
    layer = registry.client.push_blob(repo, data)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
    cdigest = registry.client.push_blob(repo, config)
    desc = {"mediaType": MT_EROFS, "digest": layer, "size": len(data)}
    if text is not None:
        desc["annotations"] = {ANNOTATION: text}
    manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cdigest, "size": len(config)},
                "layers": [desc]}
    registry.client.push_manifest(repo, "v1", manifest, MT_OCI_MANIFEST)
    return registry.ref(repo, "v1")


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.san)
                                  if k in ("too-little", "garbage") else k
                                  for k in ("too-little", "elsewhere", "whole-blob", "garbage",
                                            "other-version", "past-the-end", "too-long")])
def test_a_wrong_map_never_changes_a_byte(lazy, registry, expected_tree, kind):
    """A map that lists too little (the walk asks for the rest), the wrong ranges or the whole
    (small) blob (bytes wasted, nothing more), or that is not a map at all: the mount works,
    silently, and shows exactly the source tree."""
    path = os.path.join(FIXTURES, "lz4hc.erofs")
    size = os.path.getsize(path)
    units = -(-size // UNIT)
    text = {
        "too-little": encode([(0, 1)]),
        "elsewhere": encode([(units - 2, 2)]),
        "whole-blob": encode([(0, units)]),
        "garbage": "1:!!!!",
        "other-version": "2:" + base64.b64encode(b"\x00\x01").decode(),
        "past-the-end": encode([(units, 1)]),
        "too-long": "1:" + "AAAA" * (160 << 10),
    }[kind]
    ref = push_with_map(registry, f"badmap/{kind}", path, text)
    mp, r = lazy.mount(ref, extra=["-v"], check=False)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr and "error" not in r.stderr, r.stderr
    if kind in ("garbage", "other-version", "past-the-end", "too-long"):
        assert "metadata map:" not in r.stderr, r.stderr
    else:
        assert "metadata map:" in r.stderr, r.stderr
    compare_tree(mp, expected_tree)
    st = lazy.status_of(mp)
    assert st["errors"] == 0, st
    lazy.umount(mp)


def test_a_map_larger_than_metadata_can_be_is_ignored(lazy, registry, workdir):
    """A map of a whole 48 MiB image (metadata is never more than half an image, or 8 MiB of a
    small one) is not followed: the mount fetches its metadata, not the image."""
    from lazymount import build_big_image
    path, tree = build_big_image(workdir)
    size = os.path.getsize(path)
    ref = push_with_map(registry, "badmap/big", path, encode([(0, -(-size // UNIT))]))
    mp, r = lazy.mount(ref, extra=["-v"], check=False)
    assert r.returncode == 0, r.stderr
    assert "metadata map:" not in r.stderr, r.stderr
    st = lazy.status_of(mp)
    assert st["fetched_bytes"] < size // 4, st
    with open(os.path.join(tree, "etc", "motd"), "rb") as f:
        assert child_read(os.path.join(mp, "etc", "motd")) == f.read()
    lazy.umount(mp)


def test_push_of_an_image_it_cannot_walk_has_no_map(registry, workdir):
    """An image whose superblock is sound but whose metadata cannot be walked (the root
    inode's data layout is one EROFS does not have) is pushed all the same, without a map,
    with one warning that says why."""
    path = os.path.join(FIXTURES, "lz4hc.erofs")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    root = struct.unpack_from("<H", data, 1024 + 14)[0]
    meta = struct.unpack_from("<I", data, 1024 + 40)[0]
    at = meta * 4096 + root * 32
    struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | 0xE)
    if at < 4096:
        data[1024 + 4:1024 + 8] = b"\0" * 4
        data[1024 + 4:1024 + 8] = struct.pack("<I", crc32c(bytes(data[1024:4096])))
    bad = os.path.join(workdir, "badroot.erofs")
    with open(bad, "wb") as f:
        f.write(data)
    r = run(["push", "-o", "insecure", bad, registry.ref("map/badroot", "v1")])
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if "metadata map" in l]
    assert len(warnings) == 1 and "data layout" in warnings[0], r.stderr
    desc = layer_descriptor(registry, "map/badroot", "v1")
    assert ANNOTATION not in desc.get("annotations", {}), desc


def test_inspect_metadata_map_bad_input(workdir):
    """inspect --metadata-map: one line and a non-zero exit for what it cannot map."""
    r = run(["inspect", "--metadata-map", "--extents", os.path.join(FIXTURES, "lz4hc.erofs")])
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r
    bad = os.path.join(workdir, "notafs.bin")
    with open(bad, "wb") as f:
        f.write(b"\0" * 8192)
    r = run(["inspect", "--metadata-map", bad])
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r
