# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A small forward proxy, as a site's squid would be: `CONNECT host:port` opens a tunnel (what
a client does for https:// URLs), and a request in absolute form (`GET http://host/path`,
what a client sends for http:// URLs) is passed on to that host with `Connection: close` and
its answer streamed back, one request per client connection. Every request is logged
(`seen`: (method, target)) so that a test can tell the traffic went through it.

`ConnectProxy().start()`; `.url` is "http://127.0.0.1:PORT"; `.stop()`."""

import select
import socket
import socketserver
import threading

HEAD_MAX = 64 * 1024


def read_head(sock):
    """The request head (bytes up to and with the blank line) and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > HEAD_MAX:
            return None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _pipe(a, b):
    """Copy both ways until either side closes."""
    socks = [a, b]
    while True:
        r, _, x = select.select(socks, [], socks, 120)
        if x or not r:
            return
        for s in r:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        proxy = self.server.owner
        head, rest = read_head(self.request)
        if head is None:
            return
        line, _, headers = head.partition(b"\r\n")
        try:
            method, target, version = line.decode("latin-1").split(" ")
        except ValueError:
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        with proxy.lock:
            proxy.seen.append((method, target))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except (OSError, ValueError):
                self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with up:
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    up.sendall(rest)
                _pipe(self.request, up)
            return
        if not target.startswith("http://"):
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        hostport, _, path = target[len("http://"):].partition("/")
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
        try:
            up = socket.create_connection((host, int(port)), timeout=10)
        except (OSError, ValueError):
            self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        kept = [h for h in headers.split(b"\r\n")
                if h and not h.lower().startswith((b"connection:", b"proxy-connection:",
                                                   b"keep-alive:"))]
        out = f"{method} /{path} {version}\r\n".encode() + b"\r\n".join(kept)
        out += b"\r\nConnection: close\r\n\r\n" + rest
        length = 0
        for h in kept:
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":", 1)[1])
        with up:
            up.sendall(out)
            # The rest of the request's body (a push's PATCH, PUT), as it comes.
            left = length - len(rest)
            while left > 0:
                chunk = self.request.recv(min(left, 65536))
                if not chunk:
                    break
                up.sendall(chunk)
                left -= len(chunk)
            # The answer, with Connection: close added to its head, then the rest as it is.
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = up.recv(65536)
                if not chunk:
                    break
                data += chunk
            rhead, sep, body = data.partition(b"\r\n\r\n")
            rlines = [h for h in rhead.split(b"\r\n") if not h.lower().startswith(b"connection:")]
            self.request.sendall(b"\r\n".join(rlines) + b"\r\nConnection: close" + sep + body)
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                self.request.sendall(chunk)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ConnectProxy:
    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()
        self._srv = None
        self.url = None

    def start(self):
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.owner = self
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._srv:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    def count(self, method=None, contains=""):
        with self.lock:
            return sum(1 for m, t in self.seen if (method is None or m == method) and contains in t)
