# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""An HTTP/1.1 proxy with programmable faults, placed in front of the real registry.

Each request's head is parsed, the request is forwarded to the upstream server with
http.client (one kept-alive upstream connection per client connection), and the answer is
streamed back unchanged — keep-alive, Content-Length or chunked bodies, Range requests and
their 206 / multipart answers pass through as they are. Nothing is rewritten unless a fault
rule says so. Rules match a regex on the request path (with query), optionally the method,
and/or a regex `range` on the Range header, and fire `count` times (None: always) after
skipping the first `skip` matches:

  status   answer `code` (500, 503, 429, ...) with optional `headers` (e.g. Retry-After)
  drop     close the connection without answering
  stall    send nothing for `seconds` (or, with `after=N`, stop mid-body after N bytes for
           `seconds`), then close
  delay    wait `seconds`, then forward normally (latency)
  slow     forward normally, the body at `rate` bytes a second (a slow link), in pieces of
           `piece` bytes (16 KiB)
  reset    send `after` bytes of the body, then reset the connection (RST)
  short    send `after` bytes of the body although Content-Length promised more, then close
  hook     call `fn(seen)` (a test's callback), then forward normally; with
           `before_body=True` the call comes before the request's body is read (a test may
           kill the client while it is still sending)
  corrupt  flip bytes of the blob payload: blob offsets in `offsets` and/or every multiple
           of `every`; works on 200, single-range 206 and multipart/byteranges answers;
           lengths and headers stay intact
  short_part  a multipart/byteranges answer whose part `part` (0) lacks the last `cut` bytes
           of its payload, its Content-Range unchanged (Content-Length follows): the framing
           after it sits where the announced payload ends; other answers pass unchanged

A forwarded answer (delay, hook) also carries the rule's `add_headers` (a dict), e.g. the
`OCI-Subject` of a registry that has the referrers API.

A request whose body ends before its Content-Length (the client went away) is never
forwarded, as a buffering proxy (nginx's default) does not; its fault is "truncated".

`requests` logs every request seen (method, path, range, Content-Range, If-Match, body bytes,
status, fault); count() filters it.
The `faultproxy` fixture puts a fresh proxy in front of the module's plain registry."""

import http.client
import io
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
              "expect"}
CHUNK = 64 * 1024


class Seen:
    __slots__ = ("method", "path", "range", "content_range", "body_len", "status", "fault",
                 "time", "if_match")

    def __init__(self, method, path, rng, content_range=None, if_match=None):
        self.method, self.path, self.range = method, path, rng
        self.content_range = content_range
        self.if_match = if_match
        self.body_len = 0
        self.status = None
        self.fault = None
        self.time = time.monotonic()

    def __repr__(self):
        cr = f" content-range={self.content_range}" if self.content_range else ""
        return (f"<{self.method} {self.path} range={self.range}{cr} -> {self.status} "
                f"fault={self.fault}>")


class Fault:
    def __init__(self, kind, path=".*", method=None, count=1, skip=0, **params):
        if kind not in ("status", "drop", "stall", "delay", "hook", "reset", "short", "corrupt",
                        "slow", "short_part"):
            raise ValueError(f"unknown fault kind {kind!r}")
        self.kind = kind
        self.path = re.compile(path)
        self.method = method
        rng = params.pop("range", None)
        self.range = re.compile(rng) if rng else None
        self.count = count
        self.skip = skip
        self.params = params
        self.fired = 0

    def take(self, method, path, rng):
        """Called under the proxy lock: does this rule fire for this request?"""
        if self.method and self.method != method:
            return False
        if self.range and not self.range.search(rng or ""):
            return False
        if not self.path.search(path):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        self.fired += 1
        return True

    def __repr__(self):
        return f"<Fault {self.kind} {self.path.pattern} fired={self.fired} {self.params}>"


class _Abort(Exception):
    """The fault ended the client connection."""


class _Truncated(Exception):
    """The client went away in the middle of the request's body."""


class FaultProxy:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, upstream_port)
        self.rules = []
        self.requests = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = None
        self.port = None
        self.host = None
        self.url = None

    # --- programming ---

    def add(self, kind, path=".*", method=None, count=1, skip=0, **params):
        f = Fault(kind, path, method, count, skip, **params)
        with self.lock:
            self.rules.append(f)
        return f

    def clear(self):
        with self.lock:
            self.rules.clear()
            self.requests.clear()

    def reset_counts(self):
        with self.lock:
            self.requests.clear()

    def count(self, method=None, path=None, ranged=None, status=None):
        """Requests seen, filtered by method, path regex, whether they had a Range header,
        and answered status."""
        rx = re.compile(path) if path else None
        with self.lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method)
                       and (rx is None or rx.search(r.path))
                       and (ranged is None or bool(r.range) == ranged)
                       and (status is None or r.status == status))

    def seen(self):
        with self.lock:
            return list(self.requests)

    def _match(self, method, path, rng):
        with self.lock:
            for f in self.rules:
                if f.take(method, path, rng):
                    return f
        return None

    def sleep(self, seconds):
        """Sleep that ends early when the proxy stops, so teardown never waits on a stall."""
        self.stopping.wait(seconds)

    # --- lifecycle ---

    def start(self):
        proxy = self

        class Handler(_ProxyHandler):
            pass

        Handler.proxy = proxy
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.port = self._httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def ref(self, repo, tag=None, digest=None):
        s = f"{self.host}/{repo}"
        if tag:
            s += f":{tag}"
        if digest:
            s += f"@{digest}"
        return s


def _parse_content_range(v):
    m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", v or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


class _Corrupter:
    """Flips bytes at blob offsets in a streamed body (200, single 206 or multipart)."""

    def __init__(self, fault, status, headers):
        self.offsets = set(fault.params.get("offsets", ()))
        self.every = fault.params.get("every")
        ctype = headers.get("Content-Type", "")
        self.multipart = ctype.startswith("multipart/byteranges")
        self.base = 0
        if status == 206 and not self.multipart:
            cr = _parse_content_range(headers.get("Content-Range"))
            self.base = cr[0] if cr else 0
        self.pos = 0
        self.pending = b""

    def _hit(self, off):
        return off in self.offsets or (self.every and off % self.every == 0)

    def _flip(self, data, blob_start):
        b = bytearray(data)
        for i in range(len(b)):
            if self._hit(blob_start + i):
                b[i] ^= 0xFF
        return bytes(b)

    def feed(self, data):
        if self.multipart:
            self.pending += data
            return b""
        out = self._flip(data, self.base + self.pos)
        self.pos += len(data)
        return out

    def finish(self):
        """Multipart bodies are buffered whole and their part payloads corrupted here."""
        if not self.multipart:
            return b""
        body = bytearray(self.pending)
        for m in re.finditer(rb"Content-Range: bytes (\d+)-(\d+)/\S+\r\n(?:[^\r\n]*\r\n)*?\r\n", body):
            start, end = int(m.group(1)), int(m.group(2))
            p = m.end()
            body[p:p + end - start + 1] = self._flip(body[p:p + end - start + 1], start)
        return bytes(body)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy = None
    timeout = 120

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        self.upconn = None

    def finish(self):
        try:
            super().finish()
        finally:
            if self.upconn:
                self.upconn.close()

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.forward
        raise AttributeError(name)

    # --- request body ---

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        if not n:
            return None
        data = self.rfile.read(n)
        if len(data) < n:
            raise _Truncated()
        return data

    # --- faults that end the connection ---

    def _close(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass

    def _reset(self):
        """Abort with RST: linger 0, then really close the fd (drop the makefile refs)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        self.connection.close()
        # The base class still flushes and closes these after the request: give it dummies.
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()
        self.close_connection = True

    # --- forwarding ---

    def _upstream(self, method, body, headers):
        for attempt in range(2):
            if self.upconn is None:
                self.upconn = http.client.HTTPConnection(*self.proxy.upstream, timeout=120)
            try:
                self.upconn.request(method, self.path, body=body, headers=headers)
                return self.upconn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive upstream connection the server had closed: retry once on a
                # fresh one (never after other errors: the request may have gone through).
                self.upconn.close()
                self.upconn = None
                if attempt == 1:
                    raise
            except (http.client.HTTPException, OSError):
                self.upconn.close()
                self.upconn = None
                raise
        raise AssertionError("unreachable")

    def _send(self, data):
        self.wfile.write(data)

    def forward(self):
        p = self.proxy
        method = self.command
        seen = Seen(method, self.path, self.headers.get("Range"), self.headers.get("Content-Range"),
                    self.headers.get("If-Match"))
        with p.lock:
            p.requests.append(seen)
        fault = p._match(method, self.path, seen.range)
        if fault:
            seen.fault = fault.kind
        if fault and fault.kind == "hook" and fault.params.get("before_body"):
            fault.params["fn"](seen)
            fault = None
        try:
            body = self._read_body()
        except (_Truncated, OSError):
            seen.fault = "truncated"
            self.close_connection = True
            return
        seen.body_len = len(body or b"")
        try:
            if fault and fault.kind in ("status", "drop", "stall", "delay", "hook"):
                if self._pre_fault(fault, seen):
                    return
            self._relay(method, body, fault, seen)
        except _Abort:
            pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _pre_fault(self, fault, seen):
        """Faults decided before talking to upstream; True when the request is done."""
        k = fault.kind
        p = self.proxy
        if k == "delay":
            p.sleep(fault.params.get("seconds", 1.0))
            return False
        if k == "hook":
            fault.params["fn"](seen)
            return False
        if k == "drop":
            self._reset() if fault.params.get("rst") else self._close()
            return True
        if k == "stall" and "after" not in fault.params:
            p.sleep(fault.params.get("seconds", 30.0))
            self._close()
            return True
        if k == "status":
            code = fault.params.get("code", 503)
            payload = fault.params.get("body")
            if payload is None:
                payload = ('{"errors":[{"code":"UNAVAILABLE","message":"injected fault %d"}]}' % code)
            payload = payload.encode() if isinstance(payload, str) else payload
            seen.status = code
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            for h, v in fault.params.get("headers", {}).items():
                self.send_header(h, str(v))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self._send(payload)
            return True
        return False

    def _relay(self, method, body, fault, seen):
        headers = {}
        for k, v in self.headers.items():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                headers[k] = v
        if body is not None:
            headers["Content-Length"] = str(len(body))
        try:
            resp = self._upstream(method, body, headers)
        except (http.client.HTTPException, OSError) as e:
            msg = f"upstream unreachable: {e}".encode()
            seen.status = 502
            self.send_response(502)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self._send(msg)
            return
        seen.status = resp.status
        if fault and fault.kind == "short_part":
            return self._short_part(fault, resp)
        no_body = method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        length = resp.getheader("Content-Length")
        chunked_out = not no_body and length is None
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        for k, v in (fault.params.get("add_headers", {}) if fault else {}).items():
            self.send_header(k, str(v))
        if chunked_out:
            self.send_header("Transfer-Encoding", "chunked")
        if resp.will_close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if no_body:
            resp.read()
            return

        kind = fault.kind if fault else None
        after = fault.params.get("after", 0) if fault else 0
        piece = fault.params.get("piece", 16 * 1024) if kind == "slow" else CHUNK
        corrupter = _Corrupter(fault, resp.status, resp.headers) if kind == "corrupt" else None
        sent = 0
        complete = False
        try:
            while True:
                data = resp.read1(piece) if hasattr(resp, "read1") else resp.read(piece)
                if not data:
                    resp.read()  # marks the response done so the connection can be reused
                    complete = True
                    break
                if kind in ("reset", "short", "stall") and sent + len(data) >= after:
                    data = data[:after - sent]
                    if data:
                        self._out(data, chunked_out)
                        sent += len(data)
                    self._body_fault(fault)
                    raise _Abort()
                if corrupter:
                    data = corrupter.feed(data)
                if data:
                    self._out(data, chunked_out)
                    sent += len(data)
                    if kind == "slow":
                        self.wfile.flush()
                        self.proxy.sleep(len(data) / fault.params["rate"])
            if corrupter:
                tail = corrupter.finish()
                if tail:
                    self._out(tail, chunked_out)
            if chunked_out:
                self._send(b"0\r\n\r\n")
        finally:
            if not complete:
                self.upconn.close()
                self.upconn = None

    def _short_part(self, fault, resp):
        """The whole answer read, then sent with one part's payload cut short (short_part)."""
        body = resp.read()
        ctype = resp.getheader("Content-Type") or ""
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if resp.status == 206 and "multipart/byteranges" in ctype and m:
            delim = b"--" + m.group(1).encode()
            at, k = 0, fault.params.get("part", 0)
            for _ in range(k + 1):
                at = body.index(delim, at) + len(delim)
            start = body.index(b"\r\n\r\n", at) + 4
            end = body.index(b"\r\n" + delim, start)  # the payload as the registry sent it
            body = body[:max(start, end - fault.params["cut"])] + body[end:]
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send(body)

    def _out(self, data, chunked):
        if chunked:
            self._send(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            self._send(data)

    def _body_fault(self, fault):
        k = fault.kind
        if k == "reset":
            self._reset()
        elif k == "short":
            self._close()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif k == "stall":
            self.wfile.flush()
            self.proxy.sleep(fault.params.get("seconds", 30.0))
            self._close()


@pytest.fixture
def faultproxy(registry):
    """A fresh FaultProxy in front of the module's plain registry."""
    p = FaultProxy("127.0.0.1", registry.port).start()
    try:
        yield p
    finally:
        p.stop()


class TcpCounter:
    """A byte-for-byte TCP forwarder to 127.0.0.1:upstream_port that counts the connections
    made to it (`connections`): what the HTTP proxy cannot see, e.g. a client retrying a TLS
    handshake that the plain-HTTP server in front of it can never answer. With `rate`, the
    client's bytes go upstream at that many a second (a slow uplink)."""

    def __init__(self, upstream_port, rate=None):
        self.upstream_port = upstream_port
        self.rate = rate
        self.connections = 0
        self.lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                c.close()
                continue
            for a, b, rate in ((c, u, self.rate), (u, c, None)):
                threading.Thread(target=self._pipe, args=(a, b, rate), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, rate):
        try:
            while True:
                b = src.recv(16384 if rate else 65536)
                if not b:
                    break
                dst.sendall(b)
                if rate:
                    time.sleep(len(b) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self):
        with self.lock:
            return self.connections

    def ref(self, repo, tag=None):
        return f"{self.host}/{repo}" + (f":{tag}" if tag else "")

    def stop(self):
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
