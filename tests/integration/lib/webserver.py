# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A real web server (Debian nginx) serving image files for URL sources.

One nginx process (no daemon, no master, everything — config, pid, logs, temp paths — in a
temp dir) with two listeners on free 127.0.0.1 ports serving the same directory: `url()`
honours byte ranges (nginx's default, including multipart answers), `norange_url()` has them
disabled (`max_ranges 0`: every GET answers 200 with the whole file). `put()` adds a file,
`replace()` changes one in place the way an object store would (new bytes, new
Last-Modified, so a new ETag). The access log records each request's method, URI, Range
header, status and whether an Authorization header was sent, for `count()`."""

import os
import shutil
import tempfile
import time

import pytest

from registry import pick_port, stop_process, wait_listening

NGINX = "/usr/sbin/nginx"

CONF = """
user root;
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    map $http_authorization $has_auth {{ "" 0; default 1; }}
    log_format t '$server_port "$request_method" "$uri" "$http_range" "$http_if_range" $status $body_bytes_sent $has_auth';
    access_log {d}/access.log t;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
    server {{
        listen 127.0.0.1:{port2};
        root {root};
        max_ranges 0;
    }}
}}
"""


class WebServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lazyerofs-nginx-")
        self.root = os.path.join(self.dir, "www")
        os.makedirs(self.root)
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.port = self.port2 = None
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.access_log = os.path.join(self.dir, "access.log")
        self.proc = None

    def start(self, attempts=10):
        """nginx cannot listen on port 0, so its ports are picked first; a port someone else
        bound in between fails nginx's bind, and then it starts again on fresh ports."""
        import subprocess
        log = os.path.join(self.dir, "stderr.log")
        for _ in range(attempts):
            self.port = pick_port()
            self.port2 = pick_port()
            if self.port2 == self.port:
                continue
            with open(self.conf, "w") as f:
                f.write(CONF.format(d=self.dir, root=self.root, port=self.port, port2=self.port2))
            start = os.path.getsize(log) if os.path.exists(log) else 0
            with open(log, "ab") as logf:
                self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf,
                                              "-e", os.path.join(self.dir, "error.log")],
                                             stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                             start_new_session=True)
            if wait_listening(self.proc, [self.port, self.port2]):
                return self
            self.stop()
            with open(log, errors="replace") as f:
                f.seek(start)
                why = f.read()
            if "Address already in use" not in why:
                raise RuntimeError(f"nginx did not start: {why[-2000:]}")
        raise RuntimeError(f"nginx found no free pair of ports in {attempts} attempts")

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def norange_url(self, name):
        return f"http://127.0.0.1:{self.port2}/{name}"

    def path(self, name):
        return os.path.join(self.root, name)

    def put(self, name, data_or_path):
        """Serve bytes (or a copy of a file) as NAME."""
        dst = self.path(name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = dst + ".tmp"
        if isinstance(data_or_path, (bytes, bytearray)):
            with open(tmp, "wb") as f:
                f.write(data_or_path)
        else:
            shutil.copyfile(data_or_path, tmp)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dst)
        return self.url(name)

    def replace(self, name, data):
        """Change the object behind NAME: new bytes and a Last-Modified (so ETag) that
        differs from the old one even within the same second."""
        old = os.stat(self.path(name)).st_mtime
        self.put(name, data)
        t = max(time.time(), old + 5)
        os.utime(self.path(name), (t, t))

    def count(self, name=None, ranged=None, port=None, auth=None):
        """Requests in the access log, filtered by file name, Range header presence, port, and
        whether an Authorization header came along."""
        n = 0
        try:
            with open(self.access_log) as f:
                for line in f:
                    parts = line.split('"')
                    if len(parts) < 8:
                        continue
                    lport, uri, rng = parts[0].strip(), parts[3], parts[5]
                    if name is not None and uri != "/" + name:
                        continue
                    if ranged is not None and (rng not in ("", "-")) != ranged:
                        continue
                    if port is not None and lport != str(port):
                        continue
                    if auth is not None and (parts[8].split()[-1] == "1") != auth:
                        continue
                    n += 1
        except FileNotFoundError:
            pass
        return n


@pytest.fixture(scope="module")
def webserver():
    ws = WebServer()
    try:
        ws.start()
        yield ws
    finally:
        ws.cleanup()
