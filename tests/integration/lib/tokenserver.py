# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""A small bearer-token server for the distribution registry's `auth: token:` mode.

It issues RS256 JWTs signed with a key made here; the JWT header carries the signing
certificate as `x5c`, and the registry verifies that chain against `rootcertbundle` (this
self-signed certificate). Granted actions honour the requested scope: anonymous clients get
`anonymous_actions` (pull by default), known users get pull and push, a wrong password gets
401. Repositories under `private_prefixes` get nothing anonymously. `hits` records every request
(scopes, user; "!user" for a refused password) so tests can count token round trips.

Expiry: the registry accepts a token up to 60 s after its `exp` (clock-skew leeway), so the
server writes `exp = now + expiry - 60`: the registry then refuses the token `expiry` seconds
after it was issued, which makes short-expiry tests possible."""

import base64
import datetime
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REGISTRY_LEEWAY = 60


def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, workdir, users=None, service="lazyerofs-test-registry",
                 issuer="lazyerofs-test-issuer", expiry=300, anonymous_actions=("pull",),
                 private_prefixes=("private/",)):
        self.dir = workdir
        self.users = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.expiry = expiry
        self.anonymous_actions = tuple(anonymous_actions)
        self.private_prefixes = tuple(private_prefixes)
        self.hits = []
        self.lock = threading.Lock()
        # OAuth2 (POST) refresh-token grants: refresh token -> user
        self.refresh_tokens = {}
        # False: no OAuth2 endpoint (POST answers 404); a refresh token is taken as the
        # password of a GET without a user, as containerd sends it then
        self.post = True
        self.root_cert = os.path.join(workdir, "token-root.pem")
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lazyerofs test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        with open(self.root_cert, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._httpd = None
        self._thread = None
        self.port = None
        self.realm = None

    # --- tokens ---

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._x5c}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        sig = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def grant(self, scopes, user):
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if user:
                allowed = ("pull", "push")
            elif name.startswith(self.private_prefixes):
                allowed = ()
            else:
                allowed = self.anonymous_actions
            got = [a for a in actions if a in allowed or (a == "*" and user)]
            if got:
                access.append({"type": typ, "name": name, "actions": got})
        return access

    def issue(self, scopes, user):
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service,
                  "exp": now + self.expiry - REGISTRY_LEEWAY, "nbf": now - 1, "iat": now,
                  "jti": os.urandom(8).hex(), "access": self.grant(scopes, user)}
        tok = self.sign(claims)
        return {"token": tok, "access_token": tok, "expires_in": self.expiry,
                "issued_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%SZ")}

    # --- counters ---

    def count(self, scope=None, user=Ellipsis):
        """Token requests seen, for a scope and/or a user (None: anonymous; default: any)."""
        with self.lock:
            return sum(1 for s, u in self.hits
                       if (scope is None or scope in s) and (user is Ellipsis or u == user))

    def reset(self):
        with self.lock:
            self.hits.clear()

    # --- server ---

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _reply(self, code, obj, extra=None):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path != "/token":
                    return self._reply(404, {"error": "not found"})
                q = urllib.parse.parse_qs(u.query)
                scopes = []
                for s in q.get("scope", []):
                    scopes += s.split()
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("basic "):
                    try:
                        user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
                    except (ValueError, UnicodeDecodeError):
                        user, pw = "", None
                    if user == "" and pw in server.refresh_tokens:
                        user = "get-refresh:" + server.refresh_tokens[pw]
                    elif server.users.get(user) != pw:
                        with server.lock:
                            server.hits.append((tuple(scopes), "!" + user))
                        return self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                             "message": "bad credentials"}]},
                                           {"WWW-Authenticate": 'Basic realm="token"'})
                with server.lock:
                    server.hits.append((tuple(scopes), user))
                if q.get("service", [""])[0] != server.service:
                    return self._reply(400, {"errors": [{"code": "DENIED", "message": "bad service"}]})
                self._reply(200, server.issue(scopes, user))

            def do_POST(self):
                """The OAuth2 token endpoint, refresh-token grant only (distribution's
                spec/auth/oauth): client_id and service required, the scopes in one
                parameter."""
                if urllib.parse.urlsplit(self.path).path != "/token" or not server.post:
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    return self._reply(404, {"error": "not found"})
                n = int(self.headers.get("Content-Length") or 0)
                q = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
                bad = None
                if self.headers.get("Content-Type", "").split(";")[0].strip() != \
                        "application/x-www-form-urlencoded":
                    bad = "not a form"
                elif q.get("grant_type") != ["refresh_token"]:
                    bad = "unsupported grant_type"
                elif len(q.get("client_id", [])) != 1 or q.get("service") != [server.service]:
                    bad = "client_id or service missing"
                elif len(q.get("scope", [])) > 1:
                    bad = "scope given more than once"
                if bad:
                    return self._reply(400, {"error": "invalid_request",
                                             "error_description": bad})
                scopes = q.get("scope", [""])[0].split()
                sent = q.get("refresh_token", [""])[0]
                with server.lock:
                    user = server.refresh_tokens.get(sent)
                    server.hits.append((tuple(scopes), "refresh:" + (user or "!")))
                if not user:  # (RFC 6749, 5.2)
                    return self._reply(400, {"error": "invalid_grant",
                                             "error_description": "unknown refresh token"})
                reply = server.issue(scopes, user)
                reply["refresh_token"] = sent  # the same one (the spec's refresh grant)
                self._reply(200, reply)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
