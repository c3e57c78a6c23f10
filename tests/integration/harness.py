# SPDX-License-Identifier: Apache-2.0
"""Integration test harness: a real demsd (with its embedded PostgreSQL) on a
free loopback port, spoken to over real TLS with Python's standard library.

Each test file builds one or more Server objects; every check is a function
named test_*; run_tests() runs them in order, prints one line per check and
exits non-zero if any failed.
"""
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

DEMSD = os.environ.get("DEMSD", "build/plain/server/demsd")
PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_data_root():
    # The embedded cluster runs as 'postgres' when we are root: its parents
    # must be searchable, so use a short path under /tmp with mode 0711.
    d = tempfile.mkdtemp(prefix="dems-it-", dir="/tmp")
    os.chmod(d, 0o711)
    return d


class Server:
    def __init__(self, settings=None, data=None):
        self.root = data or make_data_root()
        self.data = os.path.join(self.root, "data")
        self.port = None
        self.proc = None
        self.settings = dict(settings or {})
        self.admin_password = None
        self.log_path = os.path.join(self.root, "demsd.log")

    def start(self, extra_args=(), wait=True):
        self.port = free_port()
        args = [DEMSD, "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.port}",
                "--threads", "2"]
        for k, v in self.settings.items():
            args += ["--set", f"{k}={v}"]
        args += list(extra_args)
        self.log = open(self.log_path, "ab")
        self.log_start = self.log.tell()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        out = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        while time.time() < deadline:
            chunk = self.proc.stdout.read() or b""
            out += chunk
            m = re.search(rb"password: (\S+)", out)
            if m:
                self.admin_password = m.group(1).decode()
            if self.proc.poll() is not None:
                raise RuntimeError(f"demsd exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                if b'"event":"listening"' in f.read():
                    return
            time.sleep(0.05)
        raise RuntimeError("demsd did not start: " + self.tail())

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
        return self.proc.returncode

    def context(self, **kw):
        ctx = ssl.create_default_context(cafile=os.path.join(self.data, "tls", "cert.pem"))
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx

    def conn(self, timeout=30, ctx=None):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=ctx or self.context())

    def request(self, method, path, body=None, token=None, headers=None, conn=None):
        c = conn or self.conn()
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        if conn is None:
            c.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw
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

    def psql(self, sql, user="dems_super"):
        """Runs SQL as a database role through the embedded cluster's socket."""
        pg = os.path.join(self.data, "pg")
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            f"host={pg} dbname=dems user={user}", "-c", sql],
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
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
