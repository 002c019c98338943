# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""`lazyerofs profile push`: a startup profile attached to its image as an OCI 1.1 artifact,
against the real distribution registry (docker-registry 2.8, which has no referrers API, so
the referrers tag schema's index `sha256-<hex>` carries the list), read back with curl and
skopeo; the referrers API path through a fault proxy that answers as a registry with the API
would; and the lookup a mount makes (oci_referrer_newest, then oci_artifact_fetch) through
the test tool `oci-get --referrer`."""

import json
import os
import re
import subprocess
import time

import pytest

from common import BIN, FIXTURES
from registry import MT_OCI_INDEX, MT_OCI_MANIFEST, clean_env, oci_get, push_ok, sha256_digest

PLAIN = os.path.join(FIXTURES, "plain.erofs")
CHUNKED = os.path.join(FIXTURES, "chunked.erofs")
ARTIFACT_TYPE = "application/vnd.lazyerofs.profile.v1"
MT_PROFILE = "application/vnd.lazyerofs.profile.v1+text"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
CREATED = "org.opencontainers.image.created"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)


class Image:
    """An image pushed with `lazyerofs push`: its reference, manifest and layer digests."""

    def __init__(self, registry, repo, path=PLAIN):
        self.registry = registry
        self.repo = repo
        self.ref = registry.ref(repo, "v1")
        self.manifest, self.layer, _ = push_ok(path, self.ref)
        self.size = os.path.getsize(path)
        self.tag = "sha256-" + self.manifest[len("sha256:"):]


def profile_text(digest, size, ranges=((0, 0, 4096), (3, 8192, 4096))):
    """A version-1 profile (fetch/profile.h) of the blob digest/size."""
    lines = ["lazyerofs-profile 1", f"blob {digest} {size}"]
    lines += [f"{t} {off} {n}" for t, off, n in ranges]
    return "\n".join(lines) + "\n"


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def profile_push(path, ref, opts="insecure"):
    args = [BIN, "profile", "push"] + (["-o", opts] if opts else []) + [path, ref]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=clean_env(),
                          stdin=subprocess.DEVNULL)


def pushed(r):
    """The lines of a successful `profile push`: {"profile", "subject", "referrers"}."""
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stderr.strip() == "", r.stderr
    out = dict(l.split(" ", 1) for l in r.stdout.splitlines())
    assert set(out) == {"profile", "subject", "referrers"}, r.stdout
    assert DIGEST.fullmatch(out["profile"]), r.stdout
    return out


def one_line_error(r, code, *words):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("lazyerofs: profile"), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert r.stdout == "", r.stdout
    return lines[0]


def curl(url, accept):
    """GET with curl: (HTTP status, body bytes)."""
    r = subprocess.run(["curl", "-sS", "-H", f"Accept: {accept}", "-w", "\n%{http_code}", url],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    body, _, status = r.stdout.rpartition(b"\n")
    return int(status), body


def get_index(image):
    status, body = curl(f"{image.registry.url}/v2/{image.repo}/manifests/{image.tag}", MT_OCI_INDEX)
    assert status == 200, body
    return json.loads(body), body


def get_manifest(image, digest):
    """The manifest digest of the image's repository, digest-checked: (parsed, bytes)."""
    status, body = curl(f"{image.registry.url}/v2/{image.repo}/manifests/{digest}", MT_OCI_MANIFEST)
    assert status == 200, body
    assert sha256_digest(body) == digest
    return json.loads(body), body


def get_blob(image, digest):
    status, body = curl(f"{image.registry.url}/v2/{image.repo}/blobs/{digest}", "*/*")
    assert status == 200, body
    return body


def lookup(image, timeout_ms=None, layer=True, ref=None, **kw):
    """oci-get --referrer: the newest profile of the image, as a mount finds it."""
    extra = ["--referrer", ARTIFACT_TYPE]
    if layer:
        extra += ["--layer-type", MT_PROFILE]
    if timeout_ms is not None:
        extra += ["--timeout", str(timeout_ms)]
    return oci_get(ref or image.ref, opts="insecure", extra=extra, **kw)


def test_push_through_the_fallback_tag(registry, tmp):
    img = Image(registry, "prof/fallback")
    # Nothing attached yet: the lookup finds nothing, quietly.
    r = lookup(img)
    assert r.returncode == 3, r
    # docker-registry 2.8 has no referrers API: a plain-text 404 on the route.
    status, body = curl(f"{registry.url}/v2/{img.repo}/referrers/{img.manifest}", MT_OCI_INDEX)
    assert status == 404, body

    text = profile_text(img.layer, img.size)
    out = pushed(profile_push(write(tmp, "a.prof", text), img.ref))
    assert out["subject"] == img.manifest
    assert out["referrers"] == "tag " + img.tag

    # The referrers index under the tag lists the artifact with its type and created time.
    index, raw = get_index(img)
    assert index["schemaVersion"] == 2 and index["mediaType"] == MT_OCI_INDEX, index
    assert len(index["manifests"]) == 1, index
    entry = index["manifests"][0]
    assert entry["mediaType"] == MT_OCI_MANIFEST
    assert entry["digest"] == out["profile"]
    assert entry["artifactType"] == ARTIFACT_TYPE
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry["annotations"][CREATED])

    # The artifact: subject = the image manifest's descriptor, the empty config, one layer
    # holding the file's very bytes.
    art, art_raw = get_manifest(img, out["profile"])
    assert entry["size"] == len(art_raw)
    _, image_manifest = get_manifest(img, img.manifest)
    assert art["subject"] == {"mediaType": MT_OCI_MANIFEST, "digest": img.manifest,
                              "size": len(image_manifest)}, art
    assert art["artifactType"] == ARTIFACT_TYPE
    assert art["mediaType"] == MT_OCI_MANIFEST
    assert art["config"]["mediaType"] == MT_EMPTY and art["config"]["size"] == 2
    assert get_blob(img, art["config"]["digest"]) == b"{}"
    assert art["annotations"][CREATED] == entry["annotations"][CREATED]
    assert len(art["layers"]) == 1 and art["layers"][0]["mediaType"] == MT_PROFILE
    assert art["layers"][0]["digest"] == sha256_digest(text.encode())
    assert art["layers"][0]["size"] == len(text.encode())
    assert get_blob(img, art["layers"][0]["digest"]) == text.encode()

    # skopeo reads the same index under the tag.
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{registry.host}/{img.repo}:{img.tag}"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == raw
    assert json.loads(r.stdout)["manifests"][0]["artifactType"] == ARTIFACT_TYPE

    # The lookup a mount makes finds it and its bytes.
    r = lookup(img)
    assert r.returncode == 0, r
    assert r.json["referrer"] == out["profile"] and r.json["artifact_type"] == ARTIFACT_TYPE
    assert r.json["layer"] == text and r.json["layer_sha256"] == sha256_digest(text.encode())


def test_second_push_adds_an_entry_and_is_the_newest(registry, tmp):
    img = Image(registry, "prof/twice")
    first = profile_text(img.layer, img.size)
    second = profile_text(img.layer, img.size, ranges=((0, 4096, 4096), (1, 0, 512)))
    a = pushed(profile_push(write(tmp, "1.prof", first), img.ref))
    b = pushed(profile_push(write(tmp, "2.prof", second), img.ref))
    assert a["profile"] != b["profile"]
    index, _ = get_index(img)
    assert [e["digest"] for e in index["manifests"]] == [a["profile"], b["profile"]], index
    assert all(e["artifactType"] == ARTIFACT_TYPE for e in index["manifests"])
    # both artifacts are kept
    for d in (a["profile"], b["profile"]):
        assert get_manifest(img, d)[0]["subject"]["digest"] == img.manifest
    r = lookup(img)
    assert r.returncode == 0, r
    assert r.json["referrer"] == b["profile"] and r.json["layer"] == second

    # The same file once more is a new artifact (its own created time), listed last.
    c = pushed(profile_push(write(tmp, "1again.prof", first), img.ref))
    index, _ = get_index(img)
    assert [e["digest"] for e in index["manifests"]] == [a["profile"], b["profile"], c["profile"]]
    r = lookup(img, layer=False)
    assert r.returncode == 0 and r.json["referrer"] == c["profile"], r


def test_entries_of_other_tools_are_kept(registry, tmp):
    """An index someone else started (an SBOM, unknown fields) gains our entry; nothing of
    theirs is lost, and the lookup picks ours by type although theirs is newer."""
    img = Image(registry, "prof/shared")
    sbom = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom.v1",
            "config": {"mediaType": MT_EMPTY, "digest": registry.client.push_blob(img.repo, b"{}"),
                       "size": 2},
            "layers": [{"mediaType": "application/json",
                        "digest": registry.client.push_blob(img.repo, b"[]"), "size": 2}],
            "subject": {"mediaType": MT_OCI_MANIFEST, "digest": img.manifest, "size": 1}}
    sd, sbody = registry.client.push_manifest(img.repo, None, sbom, MT_OCI_MANIFEST)
    theirs = {"mediaType": MT_OCI_MANIFEST, "digest": sd, "size": len(sbody),
              "artifactType": "application/vnd.example.sbom.v1",
              "annotations": {CREATED: "2999-01-01T00:00:00Z", "com.example": "x"}}
    registry.client.push_manifest(img.repo, img.tag, {"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                                                      "annotations": {"k": "v"},
                                                      "manifests": [theirs]}, MT_OCI_INDEX)
    out = pushed(profile_push(write(tmp, "a.prof", profile_text(img.layer, img.size)), img.ref))
    index, _ = get_index(img)
    assert index["annotations"] == {"k": "v"}
    assert index["manifests"][0] == theirs
    assert [e["digest"] for e in index["manifests"]] == [sd, out["profile"]]
    r = lookup(img, layer=False)
    assert r.returncode == 0 and r.json["referrer"] == out["profile"], r


def test_a_tag_that_is_not_an_index_is_left_alone(registry, tmp):
    img = Image(registry, "prof/occupied")
    # Something else (here the image manifest itself) already sits under the referrers tag.
    _, manifest = get_manifest(img, img.manifest)
    registry.client.push_manifest(img.repo, img.tag, manifest, MT_OCI_MANIFEST)
    r = profile_push(write(tmp, "a.prof", profile_text(img.layer, img.size)), img.ref)
    one_line_error(r, 2, img.tag, "left as it is")
    status, body = curl(f"{registry.url}/v2/{img.repo}/manifests/{img.tag}", MT_OCI_MANIFEST)
    assert status == 200 and body == manifest
    # ... and a lookup sees no referrers there (the spec's rule), quietly.
    r = lookup(img)
    assert r.returncode == 3, r


def test_refused_profiles(registry, tmp):
    img = Image(registry, "prof/refused")
    other = Image(registry, "prof/other", CHUNKED)
    # A profile of another blob: one line naming both digests, exit 2, nothing pushed.
    r = profile_push(write(tmp, "other.prof", profile_text(other.layer, other.size)), img.ref)
    line = one_line_error(r, 2, other.layer, img.layer, "-o blob=")
    assert "profile of blob" in line
    # The right digest with another size is refused all the same.
    r = profile_push(write(tmp, "size.prof", profile_text(img.layer, img.size + 4096)), img.ref)
    one_line_error(r, 2, img.layer)
    # Malformed files: the parser's reason, naming the file.
    for name, text in (("junk.prof", "\x7fELF not a profile\n"),
                       ("beyond.prof", f"lazyerofs-profile 1\nblob {img.layer} {img.size}\n"
                                       f"0 {img.size - 10} 4096\n"),
                       ("newer.prof", f"lazyerofs-profile 9\nblob {img.layer} {img.size}\n")):
        path = write(tmp, name, text)
        one_line_error(profile_push(path, img.ref), 2, name)
    # A missing file.
    one_line_error(profile_push(os.path.join(tmp, "missing.prof"), img.ref), 2, "missing.prof")
    status, _ = curl(f"{registry.url}/v2/{img.repo}/manifests/{img.tag}", MT_OCI_INDEX)
    assert status == 404
    # A reference that does not resolve: exit 2, the registry's word.
    r = profile_push(write(tmp, "ok.prof", profile_text(img.layer, img.size)),
                     registry.ref(img.repo, "nosuchtag"))
    one_line_error(r, 2, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("args,words", [
    (["profile"], ["expected a command", "lazyerofs profile --help"]),
    (["profile", "frobnicate"], ["unknown command 'frobnicate'", "lazyerofs profile --help"]),
    (["profile", "--bogus"], ["unknown option '--bogus'", "lazyerofs profile --help"]),
    (["profile", "push"], ["expected FILE and REFERENCE", "lazyerofs profile push --help"]),
    (["profile", "push", "x.prof"], ["expected FILE and REFERENCE"]),
    (["profile", "push", "x.prof", "r/a", "extra"], ["expected FILE and REFERENCE"]),
    (["profile", "push", "-o", "bogus", "x.prof", "127.0.0.1:1/a"],
     ["unknown option 'bogus'", "lazyerofs profile push --help"]),
    (["profile", "push", "-o", "layer=x", "x.prof", "127.0.0.1:1/a"], ["layer"]),
    (["profile", "push", "-o"], ["needs a value"]),
    (["profile", "push", "--bogus", "x.prof", "127.0.0.1:1/a"],
     ["unknown option '--bogus'", "lazyerofs profile push --help"]),
    (["profile", "push", "x.prof", "https://example.com/image.erofs"], ["URL"]),
    (["profile", "push", "x.prof", "127.0.0.1:1/UPPER"], ["UPPER"]),
    (["profile", "save", "/mnt"], ["expected MOUNTPOINT and FILE", "lazyerofs profile save --help"]),
    (["profile", "save", "--bogus", "/mnt", "f"],
     ["unknown option '--bogus'", "lazyerofs profile save --help"]),
])
def test_usage_errors(args, words):
    """Bad usage: exit 1 (DESIGN.md) and one line saying what was wrong, before any file is
    read or any registry is asked (x.prof does not exist, 127.0.0.1:1 answers nothing)."""
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, env=clean_env())
    one_line_error(r, 1, *words)


@pytest.mark.parametrize("args,first", [
    (["profile", "--help"], "Usage: lazyerofs profile save"),
    (["profile", "push", "--help"], "Usage: lazyerofs profile push"),
    (["profile", "save", "--help"], "Usage: lazyerofs profile save"),
])
def test_help(args, first):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(first) and r.stderr == "", r


def test_resolve_reports_the_subject(registry):
    """The image manifest a reference resolves to (the subject of its referrers) comes with
    its size and media type."""
    img = Image(registry, "prof/resolve")
    r = oci_get(img.ref, opts="insecure")
    assert r.returncode == 0, r
    _, raw = get_manifest(img, img.manifest)
    assert r.json["manifest_digest"] == img.manifest
    assert r.json["manifest_size"] == len(raw)
    assert r.json["manifest_media_type"] == MT_OCI_MANIFEST


def api_index(entries):
    return json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries})


def test_referrers_api_registry(registry, faultproxy, tmp):
    """A registry with the referrers API (played by the fault proxy in front of the real one):
    a manifest PUT answered with OCI-Subject needs no fallback tag, and lookups read the API,
    following its pages."""
    img = Image(registry, "prof/api")
    ref = faultproxy.ref(img.repo, "v1")
    text = profile_text(img.layer, img.size)
    faultproxy.add("delay", path=r"/manifests/sha256:", method="PUT", seconds=0,
                   add_headers={"OCI-Subject": img.manifest})
    out = pushed(profile_push(write(tmp, "a.prof", text), ref))
    assert out["referrers"] == "api"
    status, _ = curl(f"{registry.url}/v2/{img.repo}/manifests/{img.tag}", MT_OCI_INDEX)
    assert status == 404  # no fallback tag was written
    assert faultproxy.count(path="/manifests/sha256-") == 0

    # Lookups: two pages (the Link header), the newest of our type on the first, another
    # type newer still on the second; the tag is never asked for.
    art, _ = get_manifest(img, out["profile"])
    ours = {"mediaType": MT_OCI_MANIFEST, "digest": out["profile"], "size": 1,
            "artifactType": ARTIFACT_TYPE, "annotations": {CREATED: art["annotations"][CREATED]}}
    older = dict(ours, digest="sha256:" + "1" * 64, annotations={CREATED: "2001-01-01T00:00:00Z"})
    other = dict(ours, digest="sha256:" + "2" * 64, artifactType="application/x",
                 annotations={CREATED: "2999-01-01T00:00:00Z"})
    page2 = f"/v2/{img.repo}/referrers/{img.manifest}?page=2"
    faultproxy.clear()
    faultproxy.add("status", path=r"/referrers/.*page=2", code=200, body=api_index([other, older]),
                   headers={"Content-Type": MT_OCI_INDEX})
    faultproxy.add("status", path=r"/referrers/.*artifactType=application%2Fvnd\.lazyerofs",
                   code=200, body=api_index([ours]),
                   headers={"Content-Type": MT_OCI_INDEX, "Link": f'<{page2}>; rel="next"'})
    r = lookup(img, ref=ref)
    assert r.returncode == 0, r
    assert r.json["referrer"] == out["profile"] and r.json["layer"] == text
    assert faultproxy.count(path="/referrers/") == 2
    assert faultproxy.count(path="/manifests/sha256-") == 0

    # An API that lists nothing of our type: none, and no fallback to the tag.
    faultproxy.clear()
    faultproxy.add("status", path=r"/referrers/", code=200, body=api_index([other]),
                   headers={"Content-Type": MT_OCI_INDEX})
    r = lookup(img, ref=ref)
    assert r.returncode == 3, r
    assert faultproxy.count(path="/manifests/sha256-") == 0

    # A refusal other than 404 is an error, not "none".
    faultproxy.clear()
    faultproxy.add("status", path=r"/referrers/", code=403, count=None,
                   body='{"errors":[{"code":"DENIED","message":"no"}]}')
    r = lookup(img, ref=ref)
    assert r.returncode == 2 and "DENIED" in r.stderr, r


LAYER_TYPE = "dev.lazyerofs.layer.mediaType"
LAYER_DIGEST = "dev.lazyerofs.layer.digest"
LAYER_SIZE = "dev.lazyerofs.layer.size"


def test_lookup_takes_the_layer_the_list_names(registry, faultproxy, tmp):
    """The artifact names its layer in its annotations, and the fallback index's entry copies
    them (as the referrers API copies a manifest's): a lookup fetches the profile at once,
    without the artifact's manifest (one round trip less for a mount). A hint that does not
    hold (a blob the registry lacks) costs the manifest's way, never the profile."""
    img = Image(registry, "prof/hint")
    ref = faultproxy.ref(img.repo, "v1")
    text = profile_text(img.layer, img.size)
    out = pushed(profile_push(write(tmp, "a.prof", text), ref))
    art, _ = get_manifest(img, out["profile"])
    layer = art["layers"][0]
    want = {LAYER_TYPE: MT_PROFILE, LAYER_DIGEST: layer["digest"], LAYER_SIZE: str(layer["size"])}
    assert {k: art["annotations"].get(k) for k in want} == want, art
    index, _ = get_index(img)
    entry = index["manifests"][0]
    assert {k: entry["annotations"].get(k) for k in want} == want, entry

    faultproxy.reset_counts()
    r = lookup(img, ref=ref)
    assert r.returncode == 0, r
    assert r.json["referrer"] == out["profile"] and r.json["layer"] == text
    assert faultproxy.count(method="GET", path="/manifests/" + out["profile"]) == 0
    assert faultproxy.count(method="GET", path="/blobs/" + layer["digest"]) == 1

    def lookup_with_hint(**hint):
        """The lookup, with the list's entry naming another layer: the manifest's way."""
        lying = dict(entry, annotations=dict(entry["annotations"], **hint))
        faultproxy.clear()
        faultproxy.add("status", path=r"/manifests/" + img.tag, code=200, count=None,
                       body=json.dumps(dict(index, manifests=[lying])),
                       headers={"Content-Type": MT_OCI_INDEX})
        faultproxy.reset_counts()
        r = lookup(img, ref=ref)
        assert r.returncode == 0, r
        assert r.json["layer"] == text
        assert faultproxy.count(method="GET", path="/manifests/" + out["profile"]) == 1

    # The list names a blob the registry does not have: the manifest says which it is.
    lookup_with_hint(**{LAYER_DIGEST: "sha256:" + "3" * 64})
    assert faultproxy.count(method="GET", path="/blobs/sha256:" + "3" * 64) >= 1
    # A hint of 0 bytes naming the image's own blob: nothing is asked of that blob (a GET of
    # it would have had no cap: it streamed the whole image until the lookup's deadline).
    lookup_with_hint(**{LAYER_DIGEST: img.layer, LAYER_SIZE: "0"})
    assert faultproxy.count(method="GET", path="/blobs/" + img.layer) == 0


def test_lookup_keeps_its_deadline(registry, faultproxy, tmp):
    """The lookup a mount makes is capped: a registry that stalls costs the timeout given,
    not the client's 60 s."""
    img = Image(registry, "prof/slow")
    pushed(profile_push(write(tmp, "a.prof", profile_text(img.layer, img.size)), img.ref))
    ref = faultproxy.ref(img.repo, "v1")
    r = lookup(img, ref=ref, timeout_ms=20000)
    assert r.returncode == 0, r
    for path in (r"/referrers/", r"/manifests/sha256-", r"/blobs/"):
        faultproxy.clear()
        faultproxy.add("stall", path=path, seconds=30, count=None)
        t0 = time.monotonic()
        r = lookup(img, ref=ref, timeout_ms=1500)
        took = time.monotonic() - t0
        assert r.returncode == 2, (path, r)
        assert len([l for l in r.stderr.splitlines() if l.strip()]) == 1, r.stderr
        # (oci-get's start and its resolve, before the lookup's clock starts, take a few ms)
        assert took < 1.5 + 1.5, (path, took, r)


def test_concurrent_pushes_keep_every_entry(registry, tmp):
    """Pushes that update the referrers tag at once (two CI jobs of one image): each checks
    that its entry made it into the index and adds it again if another push's write replaced
    the index it had read, so no entry is lost."""
    img = Image(registry, "prof/together")
    n = 8
    paths = [write(tmp, f"{i}.prof", profile_text(img.layer, img.size,
                                                  ranges=((0, 4096 * i, 4096),)))
             for i in range(n)]
    procs = [subprocess.Popen([BIN, "profile", "push", "-o", "insecure", p, img.ref],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=clean_env(), stdin=subprocess.DEVNULL) for p in paths]
    digests = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        digests.append(pushed(r)["profile"])
    index, _ = get_index(img)
    listed = [e["digest"] for e in index["manifests"]]
    assert sorted(listed) == sorted(digests), (listed, digests)


def test_a_refused_conditional_write_goes_round_again(registry, faultproxy, tmp):
    """A registry that honours If-Match (played by the fault proxy) answers 412 when the
    index changed between the push's read and its write: the push reads it again and writes
    again; a tag that keeps changing ends in one line, not a loop."""
    img = Image(registry, "prof/ifmatch")
    ref = faultproxy.ref(img.repo, "v1")
    first = pushed(profile_push(write(tmp, "a.prof", profile_text(img.layer, img.size)), ref))
    _, index_before = get_index(img)
    faultproxy.reset_counts()
    faultproxy.add("status", path=r"/manifests/sha256-", method="PUT", code=412,
                   body='{"errors":[{"code":"UNKNOWN","message":"precondition failed"}]}')
    text = profile_text(img.layer, img.size, ranges=((0, 8192, 4096),))
    second = pushed(profile_push(write(tmp, "b.prof", text), ref))
    puts = [q for q in faultproxy.seen() if q.method == "PUT" and "/manifests/sha256-" in q.path]
    assert len(puts) == 2, puts
    # The first write was conditional on the index it read (its digest, the registry's
    # ETag); the index was the same when read again, so the 412 was not about a change: the
    # second write goes without If-Match.
    assert puts[0].if_match == f'"{sha256_digest(index_before)}"', puts[0].if_match
    assert puts[1].if_match is None
    index, _ = get_index(img)
    assert [e["digest"] for e in index["manifests"]] == [first["profile"], second["profile"]]

    faultproxy.clear()
    faultproxy.add("status", path=r"/manifests/sha256-", method="PUT", code=412, count=None,
                   body='{"errors":[{"code":"UNKNOWN","message":"precondition failed"}]}')
    text = profile_text(img.layer, img.size, ranges=((0, 12288, 4096),))
    r = profile_push(write(tmp, "c.prof", text), ref)
    one_line_error(r, 2, "kept changing", "push the profile again")
    index, _ = get_index(img)
    assert len(index["manifests"]) == 2


def test_each_layer_of_an_image_finds_its_own_profile(registry, lazy, tmp):
    """An image of two EROFS layers with a profile pushed for each: a mount of layer 0 finds
    layer 0's, though layer 1's is newer (the newest of the image was taken whatever layer
    it was for, and then set aside: no profile at all)."""
    from registry import MT_EROFS
    img = registry.client.push_image("prof/twolayer", "v1",
                                     [(os.path.join(FIXTURES, "plain.erofs"), MT_EROFS),
                                      (os.path.join(FIXTURES, "chunked.erofs"), MT_EROFS)])
    ref = registry.ref("prof/twolayer", "v1")
    for i, layer in enumerate(img["layers"]):
        path = os.path.join(tmp, f"l{i}.prof")
        with open(path, "w") as f:
            f.write(f"lazyerofs-profile 1\nblob {layer['digest']} {layer['size']}\n0 0 4096\n")
        r = subprocess.run([BIN, "profile", "push", "-o", f"insecure,layer={i}", path, ref],
                           capture_output=True, text=True, env=clean_env(), timeout=60)
        assert r.returncode == 0, r.stderr
    for i in (0, 1):
        mp, r = lazy.mount(ref, opts=f"insecure,layer={i}", check=False)
        assert r.returncode == 0 and "ignoring" not in r.stderr, r.stderr
        st = lazy.settled_status_of(mp)
        assert st["profile_state"] == "done" and st["profile_ranges"] == 1, st
        lazy.umount(mp)
