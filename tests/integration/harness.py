# SPDX-License-Identifier: Apache-2.0
"""Integration test harness: a real demsd (with its embedded PostgreSQL) on a
free loopback port, spoken to over real TLS with Python's standard library.

Each test file builds one or more Server objects; every check is a function
named test_*; run_tests() runs them in order, prints one line per check and
exits non-zero if any failed.

Secrets never reach a log: the harness remembers every secret it handles
(the first administrator's password, passwords in request bodies, bearer
tokens and cookies, TOTP secrets, and at check time the master key and every
PEM private key under the server's directory) and, when a Server stops and
again when the run ends, searches that server's whole log (demsd's stdout and
stderr, and the embedded PostgreSQL's log) for each of them; one found fails
the check and the run.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

import contract

DEMSD = os.environ.get("DEMSD", "build/plain/server/demsd")
PG_BIN = "/usr/lib/postgresql/15/bin"


SECRETS = {}  # secret -> what it is (never printed in full)
_SERVERS = []  # every Server built, for the end-of-run secrets check
_LEAKS = []  # (log path, what, line number) found so far
SECRET_KEYS = ("token", "secret", "totp_secret")  # JSON members holding secrets


def remember_secret(value, what="secret"):
    """Records a secret (str or bytes) that must never appear in any log.
    Too short or low-entropy values (all digits, 1-2 distinct characters)
    are skipped: they would match unrelated log text."""
    if value is None:
        return
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    value = str(value)
    if len(value) < 8 or value.isdigit() or len(set(value)) < 3:
        return
    SECRETS.setdefault(value, what)


def remember_json_secrets(doc, where):
    """Remembers passwords, tokens and secrets found in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, str) and ("password" in k or k in SECRET_KEYS):
                remember_secret(v, f"{where} {k}")
            elif isinstance(v, (dict, list)):
                remember_json_secrets(v, where)
    elif isinstance(doc, list):
        for v in doc:
            remember_json_secrets(v, where)


def remember_key_bytes(raw, what):
    """A binary key: its hex and base64 spellings."""
    remember_secret(raw.hex(), what + " (hex)")
    remember_secret(raw.hex().upper(), what + " (HEX)")
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        b = enc(raw).decode()
        remember_secret(b, what + " (base64)")
        remember_secret(b.rstrip("="), what + " (base64)")


def remember_key_files(root):
    """The master key and every PEM private key under root (device keys the
    tests made, the TLS key, the device CA's key)."""
    skip = {"pg", "blobs", "staging", "work", "node_modules"}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in skip]
        for name in files:
            path = os.path.join(d, name)
            try:
                if os.path.getsize(path) > 65536:
                    continue
                raw = open(path, "rb").read()
            except OSError:
                continue
            if name == "master.key":
                remember_key_bytes(raw, "master key " + path)
            elif b"PRIVATE KEY-----" in raw:
                body = re.findall(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", raw, re.S)
                for b in body:
                    lines = b.split()
                    for line in lines:
                        remember_secret(line, "private key " + path)
                    try:
                        remember_key_bytes(base64.b64decode(b"".join(lines)), "private key " + path)
                    except ValueError:
                        pass


def find_secrets(paths):
    """[(path, what, line number)] for every remembered secret in the files."""
    found = []
    needles = []
    for secret, what in SECRETS.items():
        forms = {secret.encode(), json.dumps(secret)[1:-1].encode()}
        needles.append((what, forms))
    for path in paths:
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        for what, forms in needles:
            for form in forms:
                i = data.find(form)
                if i >= 0:
                    found.append((path, what, data.count(b"\n", 0, i) + 1))
                    break
    return found


def check_logs_for_secrets(servers):
    """Searches the logs of servers; returns the new leaks (also kept)."""
    paths = []
    for srv in servers:
        remember_key_files(srv.root)
        for p in srv.log_paths():
            if p not in paths:
                paths.append(p)
    new = [f for f in find_secrets(paths) if f not in _LEAKS]
    _LEAKS.extend(new)
    return new


def service_account():
    """(uid, gid) of the account demsd switches to when the tests run as
    root (user = dems), or None: for files a test prepares for demsd."""
    if os.geteuid() != 0:
        return None
    import pwd
    pw = pwd.getpwnam("dems")
    return pw.pw_uid, pw.pw_gid


def set_nofile_limit(pid, limit):
    """Sets a process's RLIMIT_NOFILE (soft and hard). A demsd started as
    root runs as dems: changing another account's limits needs
    CAP_SYS_RESOURCE, which a container's root may lack, so do it as dems."""
    if service_account() is None:
        import resource
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        return
    subprocess.run(["runuser", "-u", "dems", "--", "prlimit", f"--pid={pid}",
                    f"--nofile={limit}:{limit}"], check=True, capture_output=True, timeout=30)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ROOTS = []


def make_data_root():
    # The embedded cluster runs as 'postgres' when we are root: its parents
    # must be searchable, so use a short path under /tmp with mode 0711.
    d = tempfile.mkdtemp(prefix="dems-it-", dir="/tmp")
    os.chmod(d, 0o711)
    _ROOTS.append(d)
    return d


def remove_data_roots():
    """The data roots of a file whose tests all passed go (a failing one's
    stay, to be read; DEMS_KEEP_TEST_DATA=1 keeps them all): a whole run
    makes about 150 of them, each with a PostgreSQL cluster, some of several
    hundred MiB, and /tmp filling up fails later tests (min_free_space)."""
    if os.environ.get("DEMS_KEEP_TEST_DATA"):
        return
    if any(s.proc is not None and s.proc.poll() is None for s in _SERVERS):
        return  # something still runs there
    for d in _ROOTS:
        shutil.rmtree(d, ignore_errors=True)


class Server:
    def __init__(self, settings=None, data=None, env=None):
        self.root = data or make_data_root()
        # Extra environment (DEMS_<KEY> settings, e.g. an object store's),
        # on top of the test's own.
        self.env = dict(os.environ, **env) if env else None
        self.data = os.path.join(self.root, "data")
        self.port = None
        self.proc = None
        self.settings = dict(settings or {})
        self.admin_password = None
        self.log_path = os.path.join(self.root, "demsd.log")
        _SERVERS.append(self)

    def log_paths(self):
        """Every log this server writes: demsd's output and the embedded
        PostgreSQL's."""
        return [self.log_path, os.path.join(self.data, "postgresql.log")]

    def check_secrets(self):
        """Fails (AssertionError) if a remembered secret is in a log."""
        leaks = check_logs_for_secrets([self])
        assert not leaks, "secrets in the logs: " + "; ".join(
            f"{what} in {path} line {line}" for path, what, line in leaks)

    def start(self, extra_args=(), wait=True):
        self.port = free_port()
        args = [DEMSD, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
                "--threads", "2"]
        for k, v in self.settings.items():
            args += ["--set", f"{k}={v}"]
        args += list(extra_args)
        self.log = open(self.log_path, "ab")
        self.log_start = self.log.tell()
        # stdout too: under systemd both go to the journal.
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demsd exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                out = f.read()
            if b'"event":"listening"' in out:
                self.learn_admin_password(out)
                return
            time.sleep(0.05)
        raise RuntimeError("demsd did not start: " + self.tail())

    def learn_admin_password(self, log):
        """On a first start demsd writes the first administrator's password to
        DATA/initial-admin-password (never to the log) and logs admin_created."""
        if b'"event":"admin_created"' not in log:
            return
        with open(os.path.join(self.data, "initial-admin-password")) as f:
            self.admin_password = f.read().strip()
        remember_secret(self.admin_password, "first administrator's password")

    def tail(self, n=2000):
        try:
            return open(self.log_path, "rb").read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("demsd did not stop in time")
        self.check_secrets()
        return self.proc.returncode

    def context(self, **kw):
        ctx = ssl.create_default_context(cafile=os.path.join(self.data, "tls", "cert.pem"))
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def conn(self, timeout=30, ctx=None):
        # Each answer's status is checked against docs/openapi.yaml (contract.py).
        return contract.CheckedHTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=ctx or self.context())

    def request(self, method, path, body=None, token=None, headers=None, conn=None):
        c = conn or self.conn()
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
            remember_secret(token, "bearer token")
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h.setdefault("Content-Type", "application/json")
            remember_json_secrets(body, f"{method} {path}")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        if conn is None:
            c.close()
        # Every answer against docs/openapi.yaml (tests/integration/contract.py).
        contract.check(method, path, h, r.status, r.headers, raw)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw
        remember_json_secrets(doc, f"answer to {method} {path}")
        for v in r.headers.get_all("Set-Cookie") or ():
            remember_secret(v.split(";", 1)[0].partition("=")[2], "cookie")
        return r.status, doc, r

    def login(self, username, password, totp=None):
        body = {"username": username, "password": password}
        if totp is not None:
            body["totp"] = totp
        return self.request("POST", "/v1/auth/login", body)

    def admin_token(self):
        st, doc, _ = self.login("admin", self.admin_password)
        assert st == 200, (st, doc)
        return doc["token"]

    @property
    def pg_socket_dir(self):
        """The directory of the embedded cluster's Unix socket."""
        return os.path.join(self.data, "run")

    def as_service_account(self):
        """A command prefix that runs a program as the account demsd runs as
        (dems when the tests run as root): for tools that share the data
        directory with it."""
        return ["runuser", "-u", "dems", "--"] if os.geteuid() == 0 else []

    def conninfo(self, user="dems_app"):
        """libpq conninfo for a role of the embedded cluster."""
        return f"host={self.pg_socket_dir} dbname=dems user={user}"

    def psql(self, sql, user="dems_super"):
        """Runs SQL as a database role through the embedded cluster's socket."""
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            self.conninfo(user), "-c", sql],
                           capture_output=True, text=True)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    def demsd(self, *args, input=None):
        return subprocess.run([DEMSD, *args], capture_output=True, text=True, input=input,
                              timeout=120)


def raw_tls(server, timeout=10):
    """A TLS socket to the server for hand-written requests."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return server.context().wrap_socket(s, server_hostname="127.0.0.1")


def read_response(sock, limit=1 << 20):
    """Reads one HTTP response (head + Content-Length body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    head, _, rest = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length: (\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head.decode(errors="replace"), rest[:n], rest[n:]


def postgres_processes(data_dir):
    """PIDs of postgres processes whose command line names data_dir."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in cmd and data_dir in cmd:
            pids.append(int(p))
    return pids


def run_tests(module_globals, setup=None, teardown=None):
    tests = [(n, f) for n, f in module_globals.items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    ctx = setup() if setup else None
    try:
        for name, fn in tests:
            t0 = time.time()
            try:
                fn(ctx) if ctx is not None else fn()
                passed += 1
                print(f"ok   {name} ({time.time() - t0:.2f}s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {name}", flush=True)
                traceback.print_exc()
    finally:
        if teardown:
            teardown(ctx)
    # Servers a test killed or never stopped, and anything logged since.
    check_logs_for_secrets(_SERVERS)
    if _LEAKS:
        failed += 1
        print("FAIL no secret in any log", flush=True)
        for path, what, line in _LEAKS:
            print(f"  {what} in {path} line {line}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    if not failed:
        remove_data_roots()
    sys.exit(1 if failed else 0)


def eventually(fn, timeout=10, interval=0.1):
    """fn()'s first true result within timeout seconds, else its last one.
    Refusals are ledgered without the refused answer waiting for the append
    (server/auth/auth.c), so a test reading them back allows a moment."""
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got or time.time() > deadline:
            return got
        time.sleep(interval)


def ledger_entries(server, token, start=0, end=None):
    """Ledger entries from sequence start (up to end, exclusive, when given),
    each with its canonical bytes decoded under "body", walking the list's
    pages by their Link headers."""
    out, url = [], f"/v1/ledger/entries?start={start}&limit=200"
    while url:
        st, doc, r = server.request("GET", url, token=token)
        assert st == 200, doc
        for e in doc["entries"]:
            if end is not None and e["seq"] >= end:
                return out
            out.append(dict(e, body=json.loads(base64.b64decode(e["bytes"]))))
        link = r.getheader("Link")
        url = link[1:link.index(">")] if link else None
    return out


def enrol_pinned_dock(server, admin_token, serial):
    """Makes a self-signed client certificate (P-256, clientAuth) for a dock,
    enrols it as a pinned certificate and returns (cert path, key path,
    device id)."""
    key = os.path.join(server.root, serial + ".key")
    cert = os.path.join(server.root, serial + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", f"/CN={serial}", "-days", "30",
                    "-addext", "extendedKeyUsage=clientAuth",
                    "-addext", "keyUsage=critical,digitalSignature"],
                   check=True, capture_output=True)
    st, doc, _ = server.request("POST", "/v1/admin/devices",
                                {"name": "Dock " + serial, "serial": serial,
                                 "certificate": open(cert).read()}, token=admin_token)
    assert st == 201, doc
    st, doc, _ = server.request("GET", "/v1/admin/devices?limit=200", token=admin_token)
    return cert, key, [d["id"] for d in doc["devices"] if d["serial"] == serial][0]


BROWSER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "browser")


def browser_journey(server, script, journey, cfg, timeout=120):
    """Runs tests/browser/<script> JOURNEY CONFIG.json (headless Debian
    chromium through playwright-core) with cfg, and returns its one-line
    JSON summary once it says the journey ran to its end; asserts that
    chromium, node and the pinned npm packages are there and that demsd
    outlived the journey."""
    missing = [p for p in ("/usr/bin/chromium", shutil.which("node") or "/nonexistent/node")
               if not os.path.exists(p)]
    for pkg in ("playwright-core", "axe-core"):
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", pkg)):
            missing.append(f"tests/browser/node_modules/{pkg}")
    assert not missing, "cannot run the browser test; missing: " + ", ".join(missing)
    path = os.path.join(server.root, f"{journey}.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    t0 = time.time()
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, script), journey, path],
                       capture_output=True, text=True, timeout=timeout)
    took = time.time() - t0
    assert server.proc.poll() is None, \
        f"demsd died during the {journey} journey: {server.tail(3000)}"
    lines = r.stdout.strip().splitlines()
    assert lines, f"no summary from the browser (exit {r.returncode}): {r.stderr[-2000:]}"
    s = json.loads(lines[-1])
    print(f"     {journey}: {took:.1f} s, summary {json.dumps(s)[:1500]}")
    assert r.returncode == 0 and s["ok"], s
    return s
