# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A tiny in-memory OCI registry that can lie in chosen ways (for push tests): what the
real registry never does, a registry somewhere might."""

import hashlib
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class FakeRegistry:
    """lies: set of
      post_no_location    POST answers 202 without Location
      put_other_digest    final blob PUT answers 201 with another Docker-Content-Digest
      put_no_verify       final blob PUT stores the bytes under the digest asked, unchecked
      lose_patch:N        the N-th PATCH (0-based) answers 202 but its bytes are dropped
      patch_range_lie     PATCH answers Range claiming the bytes sent, even if lost
      location_other_host POST/PATCH Location on http://localhost:PORT (not 127.0.0.1)
      no_referrers        (default: this fake has no referrers API; 404)
    """

    def __init__(self, lies=()):
        self.lies = set(lies)
        self.blobs = {}
        self.manifests = {}  # (repo, ref) -> (ctype, bytes)
        self.uploads = {}
        self.log = []
        self.patches = 0
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, headers=None, body=b""):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def handle_one(self):
                fake.log.append((self.command, self.path, dict(self.headers)))
                p = self.path
                if p == "/v2/" or p == "/v2":
                    return self._send(200)
                m = re.match(r"/v2/(.+)/blobs/uploads/?([^?]*)(\?.*)?$", p)
                if m:
                    return fake.upload(self, m.group(1), m.group(2), m.group(3) or "")
                m = re.match(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$", p)
                if m:
                    b = fake.blobs.get(m.group(2))
                    if b is None:
                        return self._send(404, {}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                    return self._send(200, {"Docker-Content-Digest": m.group(2),
                                            "Content-Type": "application/octet-stream"}, b)
                m = re.match(r"/v2/(.+)/manifests/([^/?]+)$", p)
                if m:
                    repo, ref = m.group(1), m.group(2)
                    if self.command == "PUT":
                        body = self._body()
                        ct = self.headers.get("Content-Type")
                        d = sha(body)
                        fake.manifests[(repo, ref)] = (ct, body)
                        fake.manifests[(repo, d)] = (ct, body)
                        return self._send(201, {"Docker-Content-Digest": d,
                                                "Location": f"/v2/{repo}/manifests/{d}"})
                    got = fake.manifests.get((repo, ref))
                    if not got:
                        return self._send(404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                    return self._send(200, {"Content-Type": got[0],
                                            "Docker-Content-Digest": sha(got[1])}, got[1])
                return self._send(404)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def ref(self, repo, tag):
        return f"127.0.0.1:{self.port}/{repo}:{tag}"

    def _loc(self, repo, uid):
        host = f"localhost:{self.port}" if "location_other_host" in self.lies else \
            f"127.0.0.1:{self.port}"
        return f"http://{host}/v2/{repo}/blobs/uploads/{uid}"

    def upload(self, h, repo, uid, query):
        if h.command == "POST":
            h._body()
            uid = str(uuid.uuid4())
            self.uploads[uid] = bytearray()
            hd = {"Range": "0-0", "Docker-Upload-UUID": uid}
            if "post_no_location" not in self.lies:
                hd["Location"] = self._loc(repo, uid)
            return h._send(202, hd)
        buf = self.uploads.get(uid)
        if buf is None:
            h._body()
            return h._send(404, {}, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}')
        if h.command == "GET":
            return h._send(204, {"Range": f"0-{max(len(buf) - 1, 0)}",
                                 "Location": self._loc(repo, uid)})
        if h.command == "PATCH":
            data = h._body()
            n = self.patches
            self.patches += 1
            claimed = len(buf) + len(data)
            if f"lose_patch:{n}" not in self.lies:
                buf += data
            end = claimed if "patch_range_lie" in self.lies else len(buf)
            return h._send(202, {"Range": f"0-{max(end - 1, 0)}", "Location": self._loc(repo, uid)})
        if h.command == "PUT":
            data = h._body()
            buf += data
            m = re.search(r"digest=([^&]+)", query)
            want = m.group(1).replace("%3A", ":").replace("%3a", ":")
            real = sha(bytes(buf))
            if real != want and "put_no_verify" not in self.lies:
                return h._send(400, {}, b'{"errors":[{"code":"DIGEST_INVALID","message":'
                                        b'"provided digest did not match uploaded content"}]}')
            stored = want if "put_no_verify" in self.lies else real
            self.blobs[stored] = bytes(buf)
            del self.uploads[uid]
            said = stored
            if "put_other_digest" in self.lies:
                said = "sha256:" + "0" * 64
            return h._send(201, {"Docker-Content-Digest": said,
                                 "Location": f"/v2/{repo}/blobs/{said}"})
        return h._send(405)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
