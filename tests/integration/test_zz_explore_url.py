# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""http(s):// sources (a blob on a plain web server, as object stores serve them): a URL whose
bytes are no EROFS image fails the mount with one line and leaves nothing behind at once; a
URL's credentials (user info, a presigned query) reach no file of the cache or run directory
and no output of status."""

import os
import subprocess

from common import FIXTURES
from webserver import webserver  # noqa: F401 (a fixture)

PLAIN = os.path.join(FIXTURES, "plain.erofs")


def test_a_url_that_is_no_erofs_image_fails_in_one_line(lazy, webserver):
    for name, body in (("random.bin", os.urandom(1 << 20)),
                       ("page.html", b"<html>login</html>\n" * 100)):
        url = webserver.put("x/" + name, body)
        _, r = lazy.mount(url, opts="", check=False)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 32 and len(lines) == 1, r.stderr
        assert url in lines[0] and "not a usable EROFS image" in lines[0], lines[0]
        lazy.assert_nothing_left(timeout=0.8)


def test_a_urls_credentials_are_written_nowhere(lazy, webserver):
    secrets = ("s3cr3tpw", "topsecretsig")
    url = webserver.put("x/plain.erofs", PLAIN)
    shown = url
    url = url.replace("http://", f"http://alice:{secrets[0]}@") + f"?X-Amz-Signature={secrets[1]}"
    mp = lazy.mount(url, opts="")
    assert os.listdir(mp)
    r = lazy.run(["status"])
    assert r.returncode == 0 and shown in r.stdout, r.stdout
    for s in secrets:
        assert s not in r.stdout + r.stderr, r.stdout
    found = subprocess.run(["grep", "-r", "-l", "-a", "-e", secrets[0], "-e", secrets[1],
                            lazy.root], capture_output=True, text=True).stdout
    assert found == "", f"files holding a URL's credentials: {found}"
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)
