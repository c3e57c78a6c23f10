# SPDX-License-Identifier: Apache-2.0
"""Object-store emulators for the tests (docs/testing.md): Azurite (Azure
Blob) and s3rver (S3), both from tests/node/node_modules (pinned by
tests/node/package-lock.json, installed by deploy/install-test.d/
test-clients), each on a port of its own on 127.0.0.1 with a data directory
of its own; and FaultProxy, a loopback HTTP proxy put between dems and an
emulator to make the store fail on demand (500, 503, 429, dropped
connections) and to count the requests.

    with Azurite(tmp) as az, az.fault_proxy() as fp:
        env = az.env(via=fp)        # DEMS_STORE=azure, DEMS_STORE_ENDPOINT=proxy ...
        fp.fail(2, "503")           # the next two requests answer 503

s3rver 3.7.1 does not check Signature Version 4 signatures, cannot abort a
multipart upload and gets some ranges wrong, so S3rver puts S3Gate in front of
it: a small Python proxy that verifies every request's SigV4 Authorization
header with the expected secret and does what s3rver lacks (each workaround
is described at S3Gate and in docs/testing.md). dems speaks to the gate, never
to s3rver directly.

Standard library only.
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import http.server
import os
import re
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

NODE_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "node"))
NODE_MODULES = os.path.join(NODE_DIR, "node_modules")
AZURITE_MAIN = os.path.join(NODE_MODULES, "azurite", "dist", "src", "blob", "main.js")
S3RVER_MAIN = os.path.join(NODE_MODULES, "s3rver", "bin", "s3rver.js")
INSTALL_HINT = "(deploy/install-test.d/test-clients installs it)"


def _node():
    node = shutil.which("node")
    assert node, "node is missing (apt-get install nodejs)"
    return node


class _Emulator:
    """A node process that prints the port it listens on; stopped by stop()
    or at the end of a with block."""

    name = "emulator"
    ready_re = None

    def _spawn(self, args, logname, timeout=30):
        assert os.path.exists(args[0]), f"{args[0]} is missing {INSTALL_HINT}"
        self.log_path = os.path.join(self.dir, logname)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([_node(), *args], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.tail()}")
            m = re.search(self.ready_re, open(self.log_path, "rb").read())
            if m:
                port = int(m.group(1))
                if self._answers(port):
                    return port
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.tail()}")

    @staticmethod
    def _answers(port):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/")
            c.getresponse().read()
            c.close()
            return True
        except OSError:
            return False

    def tail(self, n=2000):
        try:
            return open(self.log_path, "rb").read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if getattr(self, "_front", None) is not None:
            self._front.stop()
            self._front = None
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def fault_proxy(self, tls=None):
        """A FaultProxy in front of this store (started); tls=(cert, key)
        makes it answer HTTPS with that pair (make_tls_pair)."""
        return FaultProxy("127.0.0.1", self.port, flavor=self.kind, tls=tls)

    def _endpoint_via(self, via):
        if via is None:
            return self.endpoint
        u = urllib.parse.urlsplit(self.endpoint)
        return urllib.parse.urlunsplit((via.scheme, f"127.0.0.1:{via.port}", u.path, "", ""))

    @staticmethod
    def _common_env(retries, timeout, block_size):
        return {"DEMS_STORE_RETRIES": str(retries), "DEMS_STORE_TIMEOUT": str(timeout),
                "DEMS_STORE_BLOCK_SIZE": str(block_size)}


def make_tls_pair(directory):
    """A self-signed certificate for 127.0.0.1 and its key, made with the
    openssl command line: (cert path, key path). The cert is also the CA a
    client is given (store_ca_file)."""
    cert, key = os.path.join(directory, "store-cert.pem"), os.path.join(directory, "store-key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return cert, key


# ---------------------------------------------------------------------------
# Azurite

class Azurite(_Emulator):
    """azurite-blob 3.37.0 on 127.0.0.1 (a free port), data in tmpdir/azurite,
    path-style URLs: .endpoint is http://127.0.0.1:PORT/devstoreaccount1.
    Azurite checks SharedKey and SAS signatures itself."""

    name = "azurite"
    kind = "azure"
    ready_re = rb"successfully listens on http://127\.0\.0\.1:(\d+)"
    # The emulator's well-known development account (Azurite's README).
    ACCOUNT = "devstoreaccount1"
    KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    def __init__(self, tmpdir, container="dems"):
        self.dir = os.path.join(tmpdir, "azurite")
        os.makedirs(self.dir, exist_ok=True)
        self.container = container
        self.account, self.key = self.ACCOUNT, self.KEY
        # --loose: ignore headers Azurite does not implement;
        # --skipApiVersionCheck: accept whatever x-ms-version the client sends;
        # --disableProductStyleUrl: the account is always the path's first
        # segment (127.0.0.1 is never taken for ACCOUNT.blob.HOST);
        # --disableTelemetry: otherwise Azurite tries to send usage data out
        # and installs its SIGTERM handler only once that is done.
        self.port = self._spawn([AZURITE_MAIN, "--blobHost", "127.0.0.1", "--blobPort", "0",
                                 "--location", self.dir, "--loose", "--skipApiVersionCheck",
                                 "--disableProductStyleUrl", "--disableTelemetry", "--silent"],
                                "azurite.log")
        self.endpoint = f"http://127.0.0.1:{self.port}/{self.ACCOUNT}"

    def account_sas(self, permissions="rwdlacup", services="b", resource_types="sco",
                    expiry=None, start=None, version="2021-08-06", protocol="https,http"):
        """An account SAS token (query string without '?') signed with the
        account key, as
        https://learn.microsoft.com/rest/api/storageservices/create-account-sas
        describes for versions 2020-12-06 and later: HMAC-SHA256 over
        account, sp, ss, srt, st, se, sip, spr, sv, ses, each followed by a
        newline."""
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        now = datetime.datetime.now(datetime.timezone.utc)
        se = (expiry or now + datetime.timedelta(hours=1)).strftime(fmt)
        st = start.strftime(fmt) if start else ""
        sts = "\n".join([self.account, permissions, services, resource_types, st, se, "",
                         protocol, version, "", ""])
        sig = base64.b64encode(hmac.new(base64.b64decode(self.key), sts.encode(),
                                        hashlib.sha256).digest()).decode()
        q = {"sv": version, "ss": services, "srt": resource_types, "sp": permissions,
             "se": se, "spr": protocol, "sig": sig}
        if st:
            q["st"] = st
        return urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="")

    def env(self, via=None, container=None, sas=None, key=None, retries=2, timeout=10,
            block_size=1 << 20):
        """The environment for the driver or demsd: SharedKey with the
        account key (or key=), or sas= instead of a key."""
        e = {"DEMS_STORE": "azure", "DEMS_STORE_ENDPOINT": self._endpoint_via(via),
             "DEMS_STORE_CONTAINER": container or self.container,
             "DEMS_STORE_ACCOUNT": self.account,
             "DEMS_STORE_KEY": "" if sas else (key or self.key),
             "DEMS_STORE_ACCESS_KEY": "", "DEMS_STORE_SAS": sas or "",
             "DEMS_STORE_REGION": "", "DEMS_STORE_ADDRESSING": "path"}
        e.update(self._common_env(retries, timeout, block_size))
        return e

    def request(self, method, path, body=b"", headers=None, query=None, via=None, sas=None):
        """One SharedKey-signed request to Azurite (for a test's own look
        behind dems's back: path is "/container/blob"), or through the
        FaultProxy via, or with the SAS token sas instead of the key.
        (status, headers, body)."""
        q = dict(query or {})
        h = {"x-ms-date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
             "x-ms-version": "2021-08-06"}
        h.update(headers or {})
        if method in ("PUT", "POST"):
            h["Content-Length"] = str(len(body))
        rpath = f"/{self.account}{path}"
        canon_h = "".join(f"{k.lower()}:{v}\n" for k, v in sorted(h.items(), key=lambda kv:
                                                                    kv[0].lower())
                          if k.lower().startswith("x-ms-"))
        canon_r = f"/{self.account}{rpath}" + "".join(
            f"\n{k.lower()}:{v}" for k, v in sorted(q.items()))
        get = {k.lower(): v for k, v in h.items()}.get
        cl = get("content-length", "")
        sts = "\n".join([method, get("content-encoding", ""), get("content-language", ""),
                         "" if cl == "0" else cl, get("content-md5", ""),
                         get("content-type", ""), "", get("if-modified-since", ""),
                         get("if-match", ""), get("if-none-match", ""),
                         get("if-unmodified-since", ""), get("range", "")]) + "\n" + canon_h + \
            canon_r
        sig = base64.b64encode(hmac.new(base64.b64decode(self.key), sts.encode(),
                                        hashlib.sha256).digest()).decode()
        if not sas:
            h["Authorization"] = f"SharedKey {self.account}:{sig}"
        qs = "&".join(x for x in (urllib.parse.urlencode(q), sas) if x)
        url = urllib.parse.quote(rpath) + ("?" + qs if qs else "")
        c = http.client.HTTPConnection("127.0.0.1", via.port if via else self.port, timeout=30)
        try:
            c.request(method, url, body=body if method in ("PUT", "POST") else None, headers=h)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def delete_blob(self, key, container=None):
        """Deletes a blob behind dems's back; True when it was there."""
        st, _, body = self.request("DELETE", f"/{container or self.container}/{key}")
        assert st in (202, 404), (st, body)
        return st == 202


# ---------------------------------------------------------------------------
# s3rver, behind S3Gate

def sigv4_signing_key(secret, date, region, service="s3"):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def _aws_quote(s, safe="~"):
    # RFC 3986 unreserved characters stay; everything else is %XX (upper case).
    return urllib.parse.quote(s, safe=safe)


def sigv4_canonical_query(raw_query):
    pairs = []
    for item in raw_query.split("&") if raw_query else ():
        k, _, v = item.partition("=")
        pairs.append((_aws_quote(urllib.parse.unquote(k)), _aws_quote(urllib.parse.unquote(v))))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def sigv4_canonical_request(method, raw_path, raw_query, headers, signed, payload_hash):
    """headers: [(name, value)] as received; signed: lower-case names."""
    uri = _aws_quote(urllib.parse.unquote(raw_path), safe="/~")
    values = {}
    for k, v in headers:
        values.setdefault(k.lower(), []).append(re.sub(r"\s+", " ", v.strip()))
    canon_h = "".join(f"{n}:{','.join(values.get(n, []))}\n" for n in signed)
    return "\n".join([method, uri, sigv4_canonical_query(raw_query), canon_h, ";".join(signed),
                      payload_hash])


def sigv4_sign(method, url_path, raw_query, headers, body, access_key, secret, region,
               when=None):
    """Headers (a dict to send) for a SigV4-signed S3 request: for a test's own
    requests and the gate's self-test."""
    t = when or datetime.datetime.now(datetime.timezone.utc)
    amzdate, date = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
    h = dict(headers)
    h["x-amz-date"] = amzdate
    h["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    signed = sorted(k.lower() for k in h)
    creq = sigv4_canonical_request(method, url_path, raw_query, list(h.items()), signed,
                                   h["x-amz-content-sha256"])
    scope = f"{date}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac.new(sigv4_signing_key(secret, date, region), sts.encode(),
                   hashlib.sha256).hexdigest()
    h["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                          f"SignedHeaders={';'.join(signed)}, Signature={sig}")
    return h


class S3rver(_Emulator):
    """s3rver 3.7.1 on 127.0.0.1 (a free port), data in tmpdir/s3rver, with
    S3Gate in front: .endpoint (http://127.0.0.1:GATE) and .port are the
    gate's, .s3rver_port s3rver's own. Credentials are s3rver's built-in
    account (models/account.js): access key S3RVER, secret S3RVER; the gate
    refuses any other. bucket: created at start (--configure-bucket) when
    given, otherwise dems's prepare creates it."""

    name = "s3rver"
    kind = "s3"
    ready_re = rb"S3rver listening on 127\.0\.0\.1:(\d+)"
    ACCESS_KEY = "S3RVER"
    SECRET = "S3RVER"

    def __init__(self, tmpdir, bucket=None, region="us-east-1", part_min=5 << 20):
        self.dir = os.path.join(tmpdir, "s3rver")
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.bucket = bucket or "dems"
        self.region = region
        self.access_key, self.secret = self.ACCESS_KEY, self.SECRET
        args = [S3RVER_MAIN, "-d", self.data, "-a", "127.0.0.1", "-p", "0", "--silent",
                "--no-vhost-buckets"]
        if bucket:
            args += ["--configure-bucket", bucket]
        self.s3rver_port = self._spawn(args, "s3rver.log")
        self._front = S3Gate("127.0.0.1", self.s3rver_port, self.data, self.access_key,
                             self.secret, region, part_min=part_min)
        self.port = self._front.port
        self.gate = self._front
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def env(self, via=None, bucket=None, access_key=None, secret=None, retries=2, timeout=10,
            block_size=1 << 20):
        e = {"DEMS_STORE": "s3", "DEMS_STORE_ENDPOINT": self._endpoint_via(via),
             "DEMS_STORE_CONTAINER": bucket or self.bucket, "DEMS_STORE_ACCOUNT": "",
             "DEMS_STORE_KEY": secret or self.secret,
             "DEMS_STORE_ACCESS_KEY": access_key or self.access_key, "DEMS_STORE_SAS": "",
             "DEMS_STORE_REGION": self.region, "DEMS_STORE_ADDRESSING": "path"}
        e.update(self._common_env(retries, timeout, block_size))
        return e

    def request(self, method, path, body=b"", query="", headers=None, secret=None,
                access_key=None, via=None):
        """One SigV4-signed request through the gate (path: "/bucket/key",
        query: a raw query string), or through the FaultProxy via.
        (status, headers, body)."""
        port = via.port if via else self.port
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        url = _aws_quote(path, safe="/~")
        h = sigv4_sign(method, url, query, dict(headers or {}, Host=f"127.0.0.1:{port}"),
                       body, access_key or self.access_key, secret or self.secret, self.region)
        try:
            c.request(method, url + ("?" + query if query else ""), body=body or None,
                      headers=h)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def delete_object(self, key, bucket=None):
        """Deletes an object behind dems's back; True when it was there."""
        b = bucket or self.bucket
        there = os.path.exists(os.path.join(self.data, b, key + "._S3rver_object"))
        st, _, body = self.request("DELETE", f"/{b}/{key}")
        assert st == 204, (st, body)
        return there

    def pending_uploads(self, bucket=None):
        """Upload ids of multipart uploads begun and neither completed nor
        aborted (s3rver keeps them under BUCKET/._S3rver_uploads/ID)."""
        d = os.path.join(self.data, bucket or self.bucket, "._S3rver_uploads")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


# ---------------------------------------------------------------------------
# The proxies

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "expect"}


def error_xml(code, message, **extra):
    more = "".join(f"<{k}>{_xml_escape(str(v))}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{_xml_escape(message)}</Message>{more}</Error>").encode()


def _xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Answer:
    """What a relay does with a request instead of forwarding it as is."""

    def __init__(self, status, body=b"", headers=None):
        self.status, self.body = status, body
        h = headers or []
        self.headers = list(h.items()) if isinstance(h, dict) else list(h)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive (curl reuses connections)
    server_version = "dems-test-relay"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        self.upstream = None
        with self.server.relay.lock:
            self.server.relay.handlers.add(self)

    def _dispatch(self):
        relay = self.server.relay
        raw_path, _, raw_query = self.path.partition("?")
        req = _Request(self.command, raw_path, raw_query, self.headers)
        relay.note(req)
        action = relay.decide(req)
        kind = action if isinstance(action, str) else None
        if kind == "drop-body" and req.has_body():
            # The connection dies half way through the request's body.
            self._read_body(req, half=True)
            return self._drop()
        body = self._read_body(req)
        if body is None:
            return self._drop()
        req.body = body
        if isinstance(action, _Answer):
            return self._answer(action)
        if kind == "drop-body" and self.command != "GET":
            return self._drop()
        try:
            ans = relay.handle(req, self)
        except (OSError, http.client.HTTPException) as e:
            ans = _Answer(502, error_xml("BadGateway", f"relay: {e}"))
        if kind == "drop-response":
            # The store has the request; its answer never reaches the client.
            return self._drop()
        if kind == "drop-body":
            # A GET: the answer's head and half its body, then the connection dies.
            self._answer(ans, truncate=True)
            return self._drop()
        self._answer(ans)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _dispatch

    def _read_body(self, req, half=False):
        te = (req.header("Transfer-Encoding") or "").lower()
        try:
            if "chunked" in te:
                out = b""
                while True:
                    line = self.rfile.readline(65537)
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    chunk = self.rfile.read(size)
                    self.rfile.readline(65537)
                    out += chunk
                    if half and out:
                        return out
            n = int(req.header("Content-Length") or "0")
            return self.rfile.read(n // 2 if half else n)
        except (OSError, ValueError):
            return None

    def _answer(self, ans, truncate=False):
        body = ans.body if self.command != "HEAD" else b""
        self.send_response_only(ans.status)
        have_len = False
        for k, v in ans.headers:
            if k.lower() in HOP_BY_HOP:
                continue
            if k.lower() == "content-length":
                have_len = True
                if self.command != "HEAD":
                    v = str(len(ans.body))
            self.send_header(k, v)
        if not have_len and ans.status not in (204, 304) and not 100 <= ans.status < 200:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body[:len(body) // 2] if truncate else body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _drop(self):
        # An abortive close (RST): the client sees its connection die.
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        self.server.relay.dropped += 1

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.relay.lock:
                self.server.relay.handlers.discard(self)
            if self.upstream is not None:
                self.upstream.close()


class _Request:
    def __init__(self, method, raw_path, raw_query, headers):
        self.method, self.raw_path, self.raw_query = method, raw_path, raw_query
        self.headers = headers  # email.message.Message: as received
        self.body = b""

    @property
    def path(self):
        return self.raw_path + ("?" + self.raw_query if self.raw_query else "")

    def header(self, name):
        return self.headers.get(name)

    def query(self):
        return dict(urllib.parse.parse_qsl(self.raw_query, keep_blank_values=True))

    def has_body(self):
        return int(self.header("Content-Length") or "0") > 0 or \
            "chunked" in (self.header("Transfer-Encoding") or "").lower()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _Relay:
    """A threaded loopback HTTP/1.1 proxy: each client connection gets its own
    upstream connection (kept alive too). Subclasses decide per request."""

    def __init__(self, upstream_host, upstream_port, tls=None):
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.lock = threading.Lock()
        self.dropped = 0
        self.handlers = set()  # open client connections
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if tls:  # the client's side only: upstream stays plain HTTP
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.httpd.relay = self
        self.port = self.httpd.server_address[1]
        self.host = "127.0.0.1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()

    def note(self, req):
        pass

    def decide(self, req):
        """None (forward), an _Answer, or a drop kind."""
        return None

    def handle(self, req, h):
        return self.forward(req, h)

    def forward(self, req, h, headers=None, path=None, method=None):
        """Sends req upstream on the handler's connection; an _Answer with the
        whole upstream answer (body read)."""
        hdrs = []
        for k, v in (headers if headers is not None else req.headers.items()):
            if k.lower() in HOP_BY_HOP or k.lower() == "content-length":
                continue
            hdrs.append((k, v))
        body = req.body
        m = method or req.method
        for attempt in (0, 1):
            if h.upstream is None:
                h.upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                                        timeout=60)
            c = h.upstream
            try:
                c.putrequest(m, path or req.path, skip_host=True, skip_accept_encoding=True)
                for k, v in hdrs:
                    c.putheader(k, v)
                if body or m in ("PUT", "POST"):
                    c.putheader("Content-Length", str(len(body)))
                c.endheaders(body if body else None)
                r = c.getresponse()
                data = r.read()
                if r.will_close:
                    c.close()
                    h.upstream = None
                return _Answer(r.status, data, r.getheaders())
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive upstream connection the emulator had closed.
                c.close()
                h.upstream = None
                if attempt:
                    raise

    def stop(self):
        """Stops listening and closes every open connection (so the
        emulator behind has no client left either)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            open_ = list(self.handlers)
        for h in open_:
            for s in (h.connection, getattr(h.upstream, "sock", None)):
                try:
                    if s is not None:
                        s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


FAULT_KINDS = ("500", "503", "429", "drop-body", "drop-response")


class FaultProxy(_Relay):
    """Between dems and a store: forwards every request as it is (Host
    header included, so signatures still match) unless told to fail.

    fail(n, kind, method=None, path_contains=None, retry_after=None): the
    next n requests matching method (e.g. "PUT") and path_contains (a
    substring of the path with its query, e.g. "comp=block" or
    "partNumber=2") get the fault:
      "500"           500 InternalError (the request is read, not forwarded)
      "503"           503 ServerBusy (Azure) / SlowDown (S3)
      "429"           429 TooManyRequests with Retry-After: 1
      "drop-body"     the connection dies: half way through the request's
                      body (nothing forwarded); a GET is forwarded and
                      the connection dies half way through the answer's body;
                      other requests without a body: dies before answering,
                      nothing forwarded
      "drop-response" the request is forwarded (the store acts on it),
                      then the connection dies before the answer
    Several fail() calls queue rules; the first matching rule with faults
    left applies. .count is the number of requests seen, .seen their
    (method, path) in order, .faults the faults injected, .dropped the
    connections dropped; reset() clears rules and counters."""

    def __init__(self, upstream_host, upstream_port, flavor="s3", tls=None):
        self.flavor = flavor
        self.rules = []
        self.count = 0
        self.seen = []
        self.faults = []
        super().__init__(upstream_host, upstream_port, tls=tls)

    def fail(self, n, kind, method=None, path_contains=None, retry_after=None):
        assert kind in FAULT_KINDS, kind
        with self.lock:
            self.rules.append({"n": n, "kind": kind, "method": method,
                               "path": path_contains, "retry_after": retry_after})
        return self

    def reset(self):
        with self.lock:
            self.rules.clear()
            self.seen.clear()
            self.faults.clear()
            self.count = 0
            self.dropped = 0

    def pending(self):
        """Faults queued and not yet injected."""
        with self.lock:
            return sum(r["n"] for r in self.rules)

    def note(self, req):
        with self.lock:
            self.count += 1
            self.seen.append((req.method, req.path))

    def decide(self, req):
        with self.lock:
            for r in self.rules:
                if r["n"] <= 0:
                    continue
                if r["method"] and r["method"] != req.method:
                    continue
                if r["path"] and r["path"] not in req.path:
                    continue
                r["n"] -= 1
                self.faults.append((r["kind"], req.method, req.path))
                break
            else:
                return None
        kind = r["kind"]
        if kind.startswith("drop"):
            return kind
        status = int(kind)
        code, msg = {500: ("InternalError", "We encountered an internal error. Please try "
                           "again."),
                     503: (("ServerBusy", "The server is currently unable to receive "
                            "requests. Please retry your request.") if self.flavor == "azure"
                           else ("SlowDown", "Please reduce your request rate.")),
                     429: ("TooManyRequests", "Too many requests.")}[status]
        headers = {"Content-Type": "application/xml", "x-ms-error-code": code}
        ra = r["retry_after"] if r["retry_after"] is not None else (1 if status == 429 else None)
        if ra is not None:
            headers["Retry-After"] = str(ra)
        return _Answer(status, error_xml(code, msg), headers)


class S3Gate(_Relay):
    """In front of s3rver 3.7.1, doing what it does not (docs/testing.md):

    1. Signatures. s3rver accepts any well-formed SigV4 Authorization header
       whose access key it knows ("Signature version 4 calculation is
       unimplemented", lib/middleware/authentication.js) and any request
       without one. The gate recomputes each signature with the expected
       secret over the canonical request (method, URI, sorted query, the
       signed headers, the x-amz-content-sha256 value) and answers 403
       SignatureDoesNotMatch (with the StringToSign and CanonicalRequest it
       expected, as S3 does), InvalidAccessKeyId, AccessDenied (no
       signature), RequestTimeTooSkewed, 400 AuthorizationHeaderMalformed
       (another region) or XAmzContentSHA256Mismatch (the body's hash is not
       the one signed).
    2. AbortMultipartUpload (DELETE ?uploadId=) answers 405 MethodNotAllowed
       in s3rver: the gate removes the upload's directory itself and answers
       204 (404 NoSuchUpload when there is none).
    3. UploadPart and CompleteMultipartUpload for an unknown (aborted or
       completed) upload id: s3rver creates it anew, or fails with 500; the
       gate answers 404 NoSuchUpload as S3 does.
    4. CompleteMultipartUpload: s3rver checks neither the parts' ETags nor
       their sizes; the gate answers 400 InvalidPart (a part missing or its
       ETag wrong), InvalidPartOrder, or EntityTooSmall (a part but the last
       under part_min, 5 MiB as S3).
    5. Ranges: s3rver reads "bytes=0-0" as the whole object, "bytes=-N" as
       the first N+1 bytes, and announces a length it does not send for a
       range of an empty object. The gate asks for the size (HEAD), answers
       416 InvalidRange for a range starting at or past the end (as S3), and
       otherwise cuts the right bytes from an open-ended range s3rver gets
       right.
    """

    def __init__(self, upstream_host, upstream_port, data_dir, access_key, secret, region,
                 part_min=5 << 20):
        self.data_dir, self.access_key, self.secret = data_dir, access_key, secret
        self.region, self.part_min = region, part_min
        self.refused = []  # (code, method, path) of requests the gate refused
        super().__init__(upstream_host, upstream_port)

    def _refuse(self, req, status, code, message, **extra):
        with self.lock:
            self.refused.append((code, req.method, req.path))
        return _Answer(status, error_xml(code, message, **extra),
                       {"Content-Type": "application/xml"})

    def check_signature(self, req):
        """None when the request is signed with the expected credentials,
        else the refusal."""
        auth = req.header("Authorization")
        if not auth:
            return self._refuse(req, 403, "AccessDenied", "Access Denied (no signature)")
        m = re.fullmatch(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*"
                         r"SignedHeaders=([^,\s]+)\s*,\s*Signature=([0-9a-f]{64})\s*", auth)
        if not m:
            return self._refuse(req, 400, "AuthorizationHeaderMalformed",
                                "The authorization header is malformed.")
        cred, signed, given = m.groups()
        parts = cred.split("/")
        if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
            return self._refuse(req, 400, "AuthorizationHeaderMalformed",
                                f"The authorization header is malformed; bad Credential "
                                f"scope {cred!r}.")
        ak, date, region = parts[0], parts[1], parts[2]
        if ak != self.access_key:
            return self._refuse(req, 403, "InvalidAccessKeyId",
                                "The AWS Access Key Id you provided does not exist in our "
                                "records.", AWSAccessKeyId=ak)
        if region != self.region:
            return self._refuse(req, 400, "AuthorizationHeaderMalformed",
                                f"The authorization header is malformed; the region "
                                f"'{region}' is wrong; expecting '{self.region}'",
                                Region=self.region)
        amzdate = req.header("x-amz-date") or ""
        try:
            t = datetime.datetime.strptime(amzdate, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            return self._refuse(req, 403, "AccessDenied",
                                "AWS authentication requires a valid Date or x-amz-date "
                                "header")
        if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 900 or \
                not amzdate.startswith(date):
            return self._refuse(req, 403, "RequestTimeTooSkewed",
                                "The difference between the request time and the current "
                                "time is too large.")
        payload = req.header("x-amz-content-sha256")
        if not payload:
            return self._refuse(req, 400, "InvalidRequest",
                                "Missing required header for this request: "
                                "x-amz-content-sha256")
        names = signed.split(";")
        if "host" not in names or names != sorted(names):
            return self._refuse(req, 403, "SignatureDoesNotMatch",
                                "SignedHeaders must be sorted and include host.")
        creq = sigv4_canonical_request(req.method, req.raw_path, req.raw_query,
                                       list(req.headers.items()), names, payload)
        scope = f"{date}/{region}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
        want = hmac.new(sigv4_signing_key(self.secret, date, region), sts.encode(),
                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, given):
            return self._refuse(req, 403, "SignatureDoesNotMatch",
                                "The request signature we calculated does not match the "
                                "signature you provided. Check your key and signing method.",
                                AWSAccessKeyId=ak, StringToSign=sts, CanonicalRequest=creq)
        if re.fullmatch(r"[0-9a-fA-F]{64}", payload) and \
                hashlib.sha256(req.body).hexdigest() != payload.lower():
            return self._refuse(req, 400, "XAmzContentSHA256Mismatch",
                                "The provided 'x-amz-content-sha256' header does not match "
                                "what was computed.")
        return None

    def _upload_dir(self, req):
        bucket = urllib.parse.unquote(req.raw_path).lstrip("/").split("/", 1)[0]
        uid = req.query().get("uploadId", "")
        if not re.fullmatch(r"[0-9a-f]{1,64}", uid) or not bucket or "/" in bucket or \
                bucket.startswith("."):
            return None
        return os.path.join(self.data_dir, bucket, "._S3rver_uploads", uid)

    def handle(self, req, h):
        refusal = self.check_signature(req)
        if refusal is not None:
            return refusal
        q = req.query()
        if "uploadId" in q:
            d = self._upload_dir(req)
            if d is None or not os.path.isdir(d):
                return self._refuse(req, 404, "NoSuchUpload",
                                    "The specified upload does not exist. The upload ID may "
                                    "be invalid, or the upload may have been aborted or "
                                    "completed.", UploadId=q.get("uploadId", ""))
            if req.method == "DELETE":  # AbortMultipartUpload (s3rver: 405)
                shutil.rmtree(d, ignore_errors=True)
                return _Answer(204)
            if req.method == "POST":
                bad = self._check_complete(req, d)
                if bad is not None:
                    return bad
        if req.method == "GET" and req.header("Range") and "uploadId" not in q:
            return self._ranged_get(req, h)
        return self.forward(req, h)

    def _check_complete(self, req, d):
        try:
            root = ET.fromstring(req.body)
        except ET.ParseError:
            return self._refuse(req, 400, "MalformedXML", "The XML you provided was not "
                                "well-formed or did not validate against our published schema.")
        parts = []
        for p in root.iter():
            if p.tag.split("}")[-1] != "Part":
                continue
            f = {c.tag.split("}")[-1]: (c.text or "").strip() for c in p}
            try:
                parts.append((int(f.get("PartNumber", "")), f.get("ETag", "").replace('"', "")))
            except ValueError:
                return self._refuse(req, 400, "MalformedXML", "bad PartNumber")
        if not parts:
            return self._refuse(req, 400, "MalformedXML", "no Part")
        nums = [n for n, _ in parts]
        if nums != sorted(set(nums)):
            return self._refuse(req, 400, "InvalidPartOrder",
                                "The list of parts was not in ascending order.")
        for i, (n, etag) in enumerate(parts):
            path = os.path.join(d, str(n))
            try:
                md5 = open(path + ".md5").read().strip()
                size = os.path.getsize(path)
            except OSError:
                return self._refuse(req, 400, "InvalidPart", "One or more of the specified "
                                    "parts could not be found.", PartNumber=n)
            if md5 != etag:
                return self._refuse(req, 400, "InvalidPart", "One or more of the specified "
                                    "parts' ETag does not match.", PartNumber=n, ETag=etag)
            if i < len(parts) - 1 and size < self.part_min:
                return self._refuse(req, 400, "EntityTooSmall", "Your proposed upload is "
                                    "smaller than the minimum allowed size", PartNumber=n,
                                    ProposedSize=size, MinSizeAllowed=self.part_min)
        return None

    def _ranged_get(self, req, h):
        rng = req.header("Range").strip()
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng)
        if not m or (m.group(1) == "" and m.group(2) == ""):
            return self.forward(req, h)  # not a single range: s3rver's way
        other = [(k, v) for k, v in req.headers.items() if k.lower() != "range"]
        head = self.forward(req, h, headers=other, method="HEAD")
        if head.status != 200:
            return self.forward(req, h)  # NoSuchKey and the like, as s3rver says
        size = int(dict((k.lower(), v) for k, v in head.headers).get("content-length", "0"))
        a, b = m.groups()
        if a == "":
            n = int(b)
            start, end = max(0, size - n), size - 1
            if n == 0:
                start = size
        else:
            start = int(a)
            end = min(int(b), size - 1) if b != "" else size - 1
            if b != "" and int(b) < start:
                return self.forward(req, h, headers=other)  # invalid: whole object (RFC 9110)
        if start >= size:
            return self._refuse(req, 416, "InvalidRange", "The requested range is not "
                                "satisfiable", RangeRequested=rng, ActualObjectSize=size)
        # s3rver serves "bytes=A-B" right when B >= 1 (it takes an end of 0
        # for no end): ask for just the range then, so a small read of a big
        # object does not pull all of it through here.
        fwd = f"bytes={start}-{end}" if end >= 1 else f"bytes={start}-"
        ans = self.forward(req, h, headers=other + [("Range", fwd)])
        if ans.status != 206:
            return ans
        hdrs = [(k, v) for k, v in ans.headers if k.lower() not in ("content-range",
                                                                     "content-length")]
        hdrs += [("Content-Range", f"bytes {start}-{end}/{size}"),
                 ("Content-Length", str(end - start + 1))]
        return _Answer(206, ans.body[:end - start + 1], hdrs)
