# SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-or-later
"""The real CNCF distribution registry (Debian `docker-registry`) for integration tests.

Fixtures start it on 127.0.0.1 at a free port with a temporary storage directory, in three
flavours: plain HTTP and anonymous (`registry`), TLS with a CA made here plus htpasswd Basic
auth (`tls_registry`), and bearer tokens from the token server in tokenserver.py
(`token_registry`). `RegistryClient` pushes blobs, manifests and indexes with plain urllib so
that test setup never depends on the code under test. `oci_get()` runs the range-reading test
tool build/tests/tools/oci-get; `push()` and `push_ok()` run `lazyerofs push`."""

import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from common import BIN, ROOT

OCI_GET = os.environ.get("LAZYEROFS_OCI_GET", os.path.join(ROOT, "build", "tests", "tools", "oci-get"))
REGISTRY_BIN = "/usr/bin/docker-registry"

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_EROFS = "application/vnd.erofs.layer.v1"
MT_EROFS_ZSTD = "application/vnd.erofs.layer.v1+zstd"
MT_OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def pick_port():
    """A TCP port on 127.0.0.1 that nobody listens on at this moment (never 5000, which the
    package's own registry service may hold). Racy by nature: someone may bind it before the
    caller does, so a caller must retry with a fresh port on "address in use" (WebServer
    does). Servers that can bind port 0 do that instead (Registry, FaultProxy, TokenServer)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 5000:
            return port


@contextlib.contextmanager
def closed_port():
    """A port on 127.0.0.1 where a connection is refused for as long as the `with` lasts: we
    hold it bound without listening, so nobody else can start listening there meanwhile."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
    finally:
        s.close()


def listening_ports(pid):
    """Ports of the TCP sockets on 127.0.0.1 that process `pid` has open and listens on."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[len("socket:["):-1])
    except OSError:
        return set()
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            addr, _, port = local.partition(":")
            # 0A: LISTEN; 0100007F: 127.0.0.1 in the kernel's (little-endian) hex.
            if state == "0A" and addr == "0100007F" and inode in inodes:
                ports.add(int(port, 16))
    return ports


def wait_listening(proc, ports=(), timeout=15):
    """Wait until `proc` itself listens on 127.0.0.1 at every port of `ports` (at some port if
    empty): the set of ports it listens on, or None if it exited or the time ran out. Asking
    the kernel who owns the socket, not connecting, so a stranger on the port never counts."""
    want = set(ports)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        got = listening_ports(proc.pid)
        if got and want <= got:
            return got
        time.sleep(0.05)
    return None


def wait_port(port, proc=None, timeout=15, what="server", log=None):
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}: {_tail(log)}")


def _tail(log, n=2000):
    if log and os.path.exists(log):
        with open(log, errors="replace") as f:
            return f.read()[-n:]
    return ""


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Stop a process this module started (a test may have SIGSTOPped it); SIGKILL if it
    does not go."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# --- certificates -------------------------------------------------------------------------

class Pki:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost, made with openssl."""

    def __init__(self, workdir):
        self.dir = workdir
        self.ca = os.path.join(workdir, "ca.pem")
        self.ca_key = os.path.join(workdir, "ca.key")
        self.cert = os.path.join(workdir, "server.pem")
        self.key = os.path.join(workdir, "server.key")
        self.other_ca = os.path.join(workdir, "other-ca.pem")
        self._make()

    def _ssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    def _make(self):
        d = self.dir
        self._ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                  "-subj", "/CN=lazyerofs test CA", "-keyout", self.ca_key, "-out", self.ca,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = os.path.join(d, "server.csr")
        self._ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                  "-keyout", self.key, "-out", csr)
        ext = os.path.join(d, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "basicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n")
        self._ssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", self.cert)
        # An unrelated CA: trusting it instead of ours must fail verification.
        self._ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                  "-subj", "/CN=unrelated CA", "-keyout", os.path.join(d, "other-ca.key"),
                  "-out", self.other_ca)

    def context(self):
        return ssl.create_default_context(cafile=self.ca)


@pytest.fixture(scope="session")
def pki():
    d = tempfile.mkdtemp(prefix="lazyerofs-pki-")
    try:
        yield Pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- the registry process ---------------------------------------------------------------------

class Registry:
    """One docker-registry process with its own storage, config and log in a temp dir.

    host: "127.0.0.1:PORT" (for references), url: "http(s)://127.0.0.1:PORT", client: a
    RegistryClient with whatever credentials the flavour needs."""

    def __init__(self, auth=None, tls=None, port=None, proxy=None, env=None, client_tls=None):
        """proxy: the registry is a pull-through cache of another one, the distribution
        registry's `proxy:` section ({"remoteurl": URL} plus "username"/"password" when that
        one wants a login); it then refuses pushes. env: more environment for the process
        (SSL_CERT_FILE, to trust a test CA upstream). client_tls: (client CA, cert, key): the
        registry wants a client certificate that CA signed (`http.tls.clientcas`), and the
        readiness probe presents cert and key."""
        self.dir = tempfile.mkdtemp(prefix="lazyerofs-registry-")
        self.env = env
        self.client_tls = client_tls
        # None: the first start binds port 0 and learns the port the kernel gave it (no
        # pick-then-bind race); restarts keep that port, since references name it.
        self.port = port
        self.scheme = "https" if tls else "http"
        self.storage = os.path.join(self.dir, "storage")
        self.log = os.path.join(self.dir, "registry.log")
        self.proc = None
        cfg = {
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": self.storage},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": "", "secret": "lazyerofs-test-secret"},
        }
        if tls:
            cfg["http"]["tls"] = {"certificate": tls[0], "key": tls[1]}
            if client_tls:
                cfg["http"]["tls"]["clientcas"] = [client_tls[0]]
        if auth:
            cfg["auth"] = auth
        if proxy:
            cfg["proxy"] = proxy
        self._cfg = cfg
        self.config = os.path.join(self.dir, "config.yml")
        self._write_config()

    def _write_config(self):
        self._cfg["http"]["addr"] = f"127.0.0.1:{self.port or 0}"
        # JSON is YAML: the registry reads this file as its YAML config.
        with open(self.config, "w") as f:
            json.dump(self._cfg, f, indent=1)

    @property
    def host(self):
        assert self.port, "the registry has no port before its first start"
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"{self.scheme}://{self.host}"

    def start(self):
        logf = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, start_new_session=True,
                                         env=dict(os.environ, **self.env) if self.env else None)
        finally:
            logf.close()
        ports = wait_listening(self.proc, [self.port] if self.port else [])
        if not ports:
            self.stop()
            raise RuntimeError(f"docker-registry did not start on 127.0.0.1:{self.port or 0}: "
                               f"{self.log_tail(2000)}")
        if not self.port:
            assert len(ports) == 1, ports
            self.port = ports.pop()
            self._write_config()  # a restart (or a copy of this config) keeps the port
        self._wait_v2()
        return self

    def _wait_v2(self, timeout=15):
        ctx = ssl._create_unverified_context() if self.scheme == "https" else None
        if ctx and self.client_tls:
            ctx.load_cert_chain(self.client_tls[1], self.client_tls[2])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=2, context=ctx).close()
                return
            except urllib.error.HTTPError:
                return  # 401 from an auth-protected registry is an answer too
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry at {self.url} never answered /v2/: {self.log_tail()}")

    def log_tail(self, n=4000):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ref(self, repo, tag=None, digest=None):
        s = f"{self.host}/{repo}"
        if tag:
            s += f":{tag}"
        if digest:
            s += f"@{digest}"
        return s


    def has_blob(self, digest):
        """Whether the registry's storage holds the blob's bytes (a pull-through cache stores
        what it passed on, in the background)."""
        hexd = digest.split(":", 1)[1]
        return os.path.exists(os.path.join(self.storage, "docker", "registry", "v2", "blobs",
                                           "sha256", hexd[:2], hexd, "data"))


def _start(reg):
    try:
        return reg.start()
    except BaseException:
        reg.cleanup()
        raise


def _plain_registry():
    reg = _start(Registry())
    reg.client = RegistryClient(reg.url)
    try:
        yield reg
    finally:
        reg.cleanup()


@pytest.fixture
def private_registry():
    """A plain-HTTP registry of the test's own, which it may stop, stall or restart."""
    yield from _plain_registry()


@pytest.fixture(scope="module")
def registry():
    """Plain-HTTP, anonymous registry (clients need `-o insecure`)."""
    yield from _plain_registry()


@pytest.fixture(scope="module")
def tls_registry(pki):
    """TLS (certificate from the `pki` CA) with htpasswd Basic auth for one user."""
    d = tempfile.mkdtemp(prefix="lazyerofs-htpasswd-")
    try:
        username, password = "alice", "s3cret-" + os.urandom(6).hex()
        htpasswd = os.path.join(d, "htpasswd")
        # -i: password from stdin, never in argv.
        r = subprocess.run(["htpasswd", "-iBn", username], input=password, capture_output=True,
                           text=True, timeout=60, check=True)
        with open(htpasswd, "w") as f:
            f.write(r.stdout.strip() + "\n")
        pwfile = os.path.join(d, "password")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        os.chmod(pwfile, 0o600)
        reg = _start(Registry(auth={"htpasswd": {"realm": "lazyerofs-test", "path": htpasswd}},
                              tls=(pki.cert, pki.key)))
        reg.username, reg.password, reg.password_file, reg.ca = username, password, pwfile, pki.ca
        reg.client = RegistryClient(reg.url, context=pki.context(), username=username,
                                    password=password)
        try:
            yield reg
        finally:
            reg.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def token_registry():
    """Plain-HTTP registry that wants bearer tokens from a TokenServer (`.tokens`), which
    grants pull to anonymous clients and pull+push to `.username`/`.password`."""
    from tokenserver import TokenServer

    d = tempfile.mkdtemp(prefix="lazyerofs-token-")
    ts = None
    try:
        username, password = "bob", "t0ken-" + os.urandom(6).hex()
        pwfile = os.path.join(d, "password")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        ts = TokenServer(d, users={username: password}).start()
        reg = Registry(auth={"token": {"realm": ts.realm, "service": ts.service, "issuer": ts.issuer,
                                       "rootcertbundle": ts.root_cert}})
        _start(reg)
        reg.tokens = ts
        reg.username, reg.password, reg.password_file = username, password, pwfile
        reg.client = RegistryClient(reg.url, username=username, password=password)
        try:
            yield reg
        finally:
            reg.cleanup()
    finally:
        if ts:
            ts.stop()
        shutil.rmtree(d, ignore_errors=True)


# --- pushing without the code under test --------------------------------------------------

class RegistryError(Exception):
    def __init__(self, status, body, url):
        super().__init__(f"HTTP {status} for {url}: {body[:300]!r}")
        self.status = status
        self.body = body


def _parse_challenge(value):
    scheme, _, rest = value.partition(" ")
    params = {}
    for part in _split_params(rest):
        k, _, v = part.partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return scheme.lower(), params


def _split_params(s):
    out, cur, quoted = [], "", False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


class RegistryClient:
    """Minimal distribution-API client for test setup (uploads, manifests, raw GETs), with
    Basic and bearer-token auth. Independent of the code under test on purpose."""

    def __init__(self, url, context=None, username=None, password=None):
        self.url = url.rstrip("/")
        self.context = context
        self.username = username
        self.password = password
        self._tokens = {}  # scope -> token

    def _basic(self):
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _token(self, params, scope):
        if scope in self._tokens:
            return self._tokens[scope]
        q = {"service": params.get("service", "")}
        if scope:
            q["scope"] = scope
        req = urllib.request.Request(params["realm"] + "?" + urllib.parse.urlencode(q))
        if self.username:
            req.add_header("Authorization", self._basic())
        with urllib.request.urlopen(req, timeout=30, context=self.context) as r:
            body = json.load(r)
        tok = body.get("token") or body.get("access_token")
        self._tokens[scope] = tok
        return tok

    def _challenge(self):
        """Ping /v2/ once: the registry's auth challenge (scheme, params), or None."""
        if not hasattr(self, "_chal"):
            self._chal = None
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=30, context=self.context).close()
            except urllib.error.HTTPError as e:
                if e.code == 401 and "WWW-Authenticate" in e.headers:
                    self._chal = _parse_challenge(e.headers["WWW-Authenticate"])
        return self._chal

    def _auth(self, scope):
        chal = self._challenge()
        if chal is None:
            return None
        scheme, params = chal
        if scheme == "basic":
            return self._basic() if self.username else None
        return "Bearer " + self._token(params, scope)

    def request(self, method, path, data=None, headers=None, scope=None):
        """One request with auth handled (credentials are sent up front, so a body is never
        cut off by a 401); returns (status, headers, body). Raises RegistryError for HTTP
        errors."""
        url = path if path.startswith("http") else self.url + path
        auth = self._auth(scope)
        for attempt in range(2):
            h = dict(headers or {})
            if auth:
                h["Authorization"] = auth
            req = urllib.request.Request(url, data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(req, timeout=60, context=self.context) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                body = e.read()
                if e.code == 401 and attempt == 0 and "WWW-Authenticate" in e.headers:
                    scheme, params = _parse_challenge(e.headers["WWW-Authenticate"])
                    if scheme == "bearer" and params.get("scope"):
                        auth = "Bearer " + self._token(params, params["scope"])
                        continue
                raise RegistryError(e.code, body, url) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _scope(repo):
        return f"repository:{repo}:pull,push"

    def blob_exists(self, repo, digest):
        try:
            self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=self._scope(repo))
            return True
        except RegistryError as e:
            if e.status == 404:
                return False
            raise

    def push_blob(self, repo, data):
        """Monolithic upload (POST then PUT with the digest); returns the digest."""
        if isinstance(data, str):
            with open(data, "rb") as f:
                data = f.read()
        digest = sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        _, h, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/", data=b"",
                               scope=self._scope(repo))
        loc = urllib.parse.urljoin(self.url + "/", h["Location"])
        sep = "&" if "?" in loc else "?"
        self.request("PUT", f"{loc}{sep}digest={urllib.parse.quote(digest)}", data=data,
                     headers={"Content-Type": "application/octet-stream"},
                     scope=self._scope(repo))
        return digest

    def push_manifest(self, repo, ref, manifest, media_type):
        """PUT a manifest (dict or bytes) under a tag or digest; returns (digest, bytes)."""
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        digest = sha256_digest(body)
        self.request("PUT", f"/v2/{repo}/manifests/{ref or digest}", data=body,
                     headers={"Content-Type": media_type}, scope=self._scope(repo))
        return digest, body

    def get(self, path, headers=None, repo=None):
        return self.request("GET", path, headers=headers,
                            scope=f"repository:{repo}:pull" if repo else None)

    def get_manifest(self, repo, ref, accept=(MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST,
                                              MT_DOCKER_LIST)):
        status, h, body = self.get(f"/v2/{repo}/manifests/{ref}", repo=repo,
                                   headers={"Accept": ", ".join(accept)})
        return h.get("Content-Type"), body

    def push_image(self, repo, tag, layers, os_="linux", arch="amd64", variant=None,
                   docker=False, config_media_type=None):
        """Push an image with the given layers: a list of (bytes or path, media_type).
        docker=True makes a Docker schema-2 manifest instead of an OCI one. Returns a dict:
        digest, size, media_type, body (the manifest), layers [{digest,size,media_type}]."""
        descs = []
        diff_ids = []
        for data, mt in layers:
            if isinstance(data, str):
                with open(data, "rb") as f:
                    data = f.read()
            d = self.push_blob(repo, data)
            descs.append({"mediaType": mt, "digest": d, "size": len(data)})
            diff_ids.append(d)
        config = {"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "config": {}}
        if variant:
            config["variant"] = variant
        cbody = json.dumps(config).encode()
        cdigest = self.push_blob(repo, cbody)
        mt = MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST
        cmt = config_media_type or (MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": mt,
                    "config": {"mediaType": cmt, "digest": cdigest, "size": len(cbody)},
                    "layers": descs}
        digest, body = self.push_manifest(repo, tag, manifest, mt)
        return {"digest": digest, "size": len(body), "media_type": mt, "body": body,
                "layers": [{"digest": x["digest"], "size": x["size"], "media_type": x["mediaType"]}
                           for x in descs],
                "platform": {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}}

    def push_index(self, repo, tag, images, docker=False):
        """Push an OCI index (or Docker manifest list) over images returned by push_image
        (pushed first, by digest). Returns (digest, body)."""
        mt = MT_DOCKER_LIST if docker else MT_OCI_INDEX
        entries = [{"mediaType": im["media_type"], "digest": im["digest"], "size": im["size"],
                    "platform": im["platform"]} for im in images]
        return self.push_manifest(repo, tag, {"schemaVersion": 2, "mediaType": mt,
                                              "manifests": entries}, mt)


# --- the range-reading test tool ------------------------------------------------------------

class OciGetResult:
    def __init__(self, proc, elapsed):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.json = None
        if proc.returncode == 0:
            lines = [l for l in proc.stdout.splitlines() if l.strip()]
            assert len(lines) == 1, f"oci-get must print one JSON line, got: {proc.stdout!r}"
            self.json = json.loads(lines[0])

    def __repr__(self):
        return f"<oci-get rc={self.returncode} {self.elapsed:.2f}s out={self.stdout!r} err={self.stderr!r}>"


def oci_opts(**kw):
    """-o value from keyword options: oci_opts(insecure=True, layer=1) -> "insecure,layer=1"."""
    parts = []
    for k, v in kw.items():
        if v is None or v is False:
            continue
        k = k.replace("_", "-")
        parts.append(k if v is True else f"{k}={v}")
    return ",".join(parts)


CRED_ENV = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "http_proxy", "https_proxy",
            "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")
_EMPTY_HOME = None


def clean_env(extra=None):
    """The environment for a client run: no credential sources of the machine (Docker or
    containers config, a HOME with ~/.docker), no proxy settings and no token cache, unless
    the test passes them in `extra`."""
    global _EMPTY_HOME
    if _EMPTY_HOME is None or not os.path.isdir(_EMPTY_HOME):
        _EMPTY_HOME = tempfile.mkdtemp(prefix="lazyerofs-home-")
        atexit.register(shutil.rmtree, _EMPTY_HOME, True)
    env = {k: v for k, v in os.environ.items() if k not in CRED_ENV}
    env["HOME"] = _EMPTY_HOME
    # A run directory that does not exist: push shares no bearer tokens with the machine's
    # /run/lazyerofs/tokens (test_token_cache tests that cache with private run directories).
    env["LAZYEROFS_RUN_DIR"] = os.path.join(_EMPTY_HOME, "run")
    # Nor the machine's configuration file and hosts.toml (a push reads them, as pulls do).
    env["LAZYEROFS_CONFIG"] = os.path.join(_EMPTY_HOME, "no-config")
    env["LAZYEROFS_CERTS_D"] = os.path.join(_EMPTY_HOME, "no-certs.d")
    if extra:
        env.update(extra)
    return env


def oci_get(source, *ranges, opts=None, extra=(), env=None, timeout=120):
    """Run build/tests/tools/oci-get; returns OciGetResult (.json parsed on success).
    opts: a string or dict for -o; ranges: "OFFSET:LENGTH" strings or (offset, length)."""
    args = [OCI_GET]
    if isinstance(opts, dict):
        opts = oci_opts(**opts)
    if opts:
        args += ["-o", opts]
    args += list(extra)
    args.append(source)
    args += [r if isinstance(r, str) else f"{r[0]}:{r[1]}" for r in ranges]
    full_env = clean_env(env)
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env,
                       stdin=subprocess.DEVNULL)
    return OciGetResult(p, time.monotonic() - t0)


# --- lazyerofs push ---------------------------------------------------------------------------

_PUSH_CACHE = None


def push_cache_dir():
    """The cache directory pushes keep their upload records in (<dir>/uploads) unless a test
    gives its own LAZYEROFS_CACHE_DIR: a private one of the session, not the machine's."""
    global _PUSH_CACHE
    if _PUSH_CACHE is None or not os.path.isdir(_PUSH_CACHE):
        _PUSH_CACHE = tempfile.mkdtemp(prefix="lazyerofs-push-")
        atexit.register(shutil.rmtree, _PUSH_CACHE, True)
    return _PUSH_CACHE


def push_env(env=None):
    return dict({"LAZYEROFS_CACHE_DIR": push_cache_dir()}, **(env or {}))


def push(image, ref, opts="insecure", env=None, extra=()):
    """Run `lazyerofs push [-o opts] [extra...] image ref` with a clean environment (.elapsed:
    seconds)."""
    env = push_env(env)
    args = [BIN, "push"]
    if opts:
        args += ["-o", opts]
    args += list(extra)
    args += [image, ref]
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=clean_env(env),
                       stdin=subprocess.DEVNULL)
    r.elapsed = time.monotonic() - t0
    return r


def push_ok(image, ref, opts="insecure", env=None, extra=()):
    """push() that must succeed: (manifest digest, layer digest, CompletedProcess)."""
    r = push(image, ref, opts, env, extra)
    assert r.returncode == 0, (r.returncode, r.stderr)
    got = dict(l.split(None, 1) for l in r.stdout.splitlines() if l.startswith(("manifest ", "layer ")))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", got.get("manifest", "")), r.stdout
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", got.get("layer", "")), r.stdout
    return got["manifest"], got["layer"], r
