# exploratory (not a repro)
import hashlib, json, os, subprocess, threading, time, glob
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from common import FIXTURES
from webserver import webserver  # noqa

PLAIN = os.path.join(FIXTURES, "plain.erofs")

def test_not_erofs(lazy, webserver):
    url = webserver.put("x/random.bin", os.urandom(1 << 20))
    mp, r = lazy.mount(url, opts="", check=False)
    print("RC", r.returncode, "ERR", r.stderr)
    url = webserver.put("x/page.html", b"<html>login</html>\n" * 100)
    mp, r = lazy.mount(url, opts="", check=False)
    print("RC", r.returncode, "ERR", r.stderr)
    print(subprocess.run(["pgrep", "-fa", "lazyerofs"], capture_output=True, text=True).stdout)
    lazy.assert_nothing_left()

def test_creds_in_url(lazy, webserver):
    url = webserver.put("x/plain.erofs", PLAIN)
    url = url.replace("http://", "http://alice:s3cr3tpw@") + "?X-Amz-Signature=topsecretsig"
    mp = lazy.mount(url, opts="")
    os.listdir(mp)
    out = subprocess.run(["grep", "-r", "-l", "-a", "-e", "s3cr3tpw", "-e", "topsecretsig", lazy.root],
                         capture_output=True, text=True).stdout
    print("FILES WITH SECRET:", out)
    print("STATUS", lazy.status())
    r = lazy.run(["status"])
    print(r.stdout)
    lazy.umount(mp)
    lazy.assert_nothing_left(timeout=30)
