# SPDX-License-Identifier: Apache-2.0
"""Docks: enrolment by CSR (signed by the internal device CA) or by a pinned
certificate, mutual TLS, uploads owned by the device and ledgered with it as
the actor; certificates outside their validity window or not made for TLS
client authentication refused at enrolment, at the handshake and per request;
revocation refusing the device at the handshake without ledger work."""
import base64
import datetime
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time

from harness import Server, run_tests, ledger_entries

TUS = {"Tus-Resumable": "1.0.0"}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server().start()
    c.tok = c.srv.admin_token()
    c.dir = c.srv.root
    return c


def teardown(c):
    assert c.srv.stop() == 0


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_key_and_csr(c, name, serial):
    key = os.path.join(c.dir, name + ".key")
    csr = os.path.join(c.dir, name + ".csr")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={serial}")
    return key, open(csr).read()


def device_conn(c, cert_path, key_path):
    ctx = c.srv.context()
    ctx.load_cert_chain(cert_path, key_path)
    return c.srv.conn(ctx=ctx)


def dev_request(c, cert, key, method, path, body=None, headers=None):
    conn = device_conn(c, cert, key)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, (json.loads(raw) if raw and raw[:1] == b"{" else raw), r


class TestCA:
    """A throwaway CA driven by `openssl ca`, the one openssl command that sets
    arbitrary validity dates (-startdate/-enddate) and extensions."""

    def __init__(self, root):
        self.dir = os.path.join(root, "testca")
        os.makedirs(os.path.join(self.dir, "newcerts"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        open(os.path.join(self.dir, "serial"), "w").write("1000\n")
        self.cnf = os.path.join(self.dir, "ca.cnf")
        open(self.cnf, "w").write(
            "[ca]\ndefault_ca = tca\n[tca]\n"
            f"database = {self.dir}/index.txt\nnew_certs_dir = {self.dir}/newcerts\n"
            f"serial = {self.dir}/serial\ndefault_md = sha256\npolicy = pol\n"
            "unique_subject = no\ncopy_extensions = none\n[pol]\ncommonName = supplied\n")
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-subj", "/CN=test CA", "-days", "30")

    def issue(self, name, start, end, ext):
        """A key and a certificate valid from start to end (seconds from now)
        with the extensions in ext (openssl extension-file lines)."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        extf = os.path.join(self.dir, name + ".ext")
        open(extf, "w").write(ext)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        now = datetime.datetime.now(datetime.timezone.utc)

        def stamp(s):
            return (now + datetime.timedelta(seconds=s)).strftime("%Y%m%d%H%M%SZ")

        openssl("ca", "-batch", "-config", self.cnf, "-cert", self.cert, "-keyfile", self.key,
                "-startdate", stamp(start), "-enddate", stamp(end), "-extfile", extf,
                "-in", csr, "-out", cert, "-notext")
        return cert, key


CLIENT_EXT = "keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n"
DAY = 86400


def handshake_refusal(c, cert, key, timeout=3):
    """Connects with cert; returns the TLS alert that ended the connection.
    Fails when the server took the certificate. In TLS 1.3 the server judges
    the client's certificate after the client has finished its side of the
    handshake, so the alert arrives on the first read. (Nothing is sent: a
    request the server never reads makes its close a reset, which can
    overtake the alert.)"""
    ctx = c.srv.context()
    ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection(("127.0.0.1", c.srv.port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                data = s.recv(4096)
    except ssl.SSLError as e:
        return str(e)
    except TimeoutError:
        raise AssertionError("the handshake was not refused (the connection stayed open)")
    raise AssertionError(f"the handshake was not refused: {data[:200]!r}")


def enrol_pinned(c, name, serial, cert):
    return c.srv.request("POST", "/v1/admin/devices",
                         {"name": name, "serial": serial, "certificate": open(cert).read()},
                         token=c.tok)


def ledger_size(c):
    rc, out, err = c.srv.psql("SELECT count(*) FROM ledger_entries")
    assert rc == 0, err
    return int(out)


def ledger_bodies(c):
    rc, out, err = c.srv.psql("SELECT convert_from(bytes, 'UTF8') FROM ledger_entries ORDER BY seq")
    assert rc == 0, err
    return [json.loads(line) for line in out.splitlines()]


def settled_ledger_size(c):
    """The ledger's size once refusals still being appended have landed."""
    n = ledger_size(c)
    for _ in range(20):
        time.sleep(0.25)
        m = ledger_size(c)
        if m == n:
            return n
        n = m
    return n


def enrol_csr(c, name, serial):
    key, csr = make_key_and_csr(c, name, serial)
    st, doc, _ = c.srv.request("POST", "/v1/admin/devices",
                               {"name": name, "serial": serial, "csr": csr}, token=c.tok)
    assert st == 201, doc
    cert = os.path.join(c.dir, name + ".pem")
    open(cert, "w").write(doc["certificate"])
    return cert, key


def device_id(c, serial):
    st, doc, _ = c.srv.request("GET", "/v1/admin/devices", token=c.tok)
    return [d for d in doc["devices"] if d["serial"] == serial][0]["id"]


def get_on(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    raw = r.read()
    return r.status, (json.loads(raw) if raw[:1] == b"{" else raw)


def hammer(c, cert, key, seconds, threads=4):
    """Threads connecting with cert and sending an upload as fast as they can
    for a bounded time, while an administrator keeps using the server. Returns
    (refused, answered, the administrator's slowest answer in seconds)."""
    stop = time.time() + seconds
    counts = {"refused": 0, "answered": 0}
    lock = threading.Lock()
    body = b"x" * 100
    req = (b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
           b"Upload-Length: 100\r\nContent-Type: application/offset+octet-stream\r\n"
           b"Content-Length: 100\r\n\r\n" + body)

    def run():
        ctx = c.srv.context()
        ctx.load_cert_chain(cert, key)
        while time.time() < stop:
            try:
                with socket.create_connection(("127.0.0.1", c.srv.port), timeout=10) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        tls.sendall(req)
                        data = tls.recv(4096)
                what = "answered" if data else "refused"
            except (ssl.SSLError, ConnectionError):
                what = "refused"
            with lock:
                counts[what] += 1

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    slowest = 0.0
    while time.time() < stop:
        t0 = time.time()
        assert c.srv.request("GET", "/v1/me", token=c.tok)[0] == 200
        slowest = max(slowest, time.time() - t0)
        time.sleep(0.1)
    for t in ts:
        t.join()
    return counts["refused"], counts["answered"], slowest


def upload_as(c, cert, key, data):
    h = dict(TUS, **{"Upload-Length": str(len(data)),
                     "Content-Type": "application/offset+octet-stream",
                     "Upload-Metadata": "device_serial " + base64.b64encode(b"DOCK-1").decode()})
    return dev_request(c, cert, key, "POST", "/v1/uploads", body=data, headers=h)


def test_enrol_with_csr_and_upload_over_mtls(c):
    key, csr = make_key_and_csr(c, "dock1", "DOCK-1")
    st, doc, _ = c.srv.request("POST", "/v1/admin/devices",
                               {"name": "Dock 1", "serial": "DOCK-1", "csr": csr}, token=c.tok)
    assert st == 201 and doc["issued"] is True, doc
    cert = os.path.join(c.dir, "dock1.pem")
    open(cert, "w").write(doc["certificate"])
    ca = os.path.join(c.dir, "ca.pem")
    open(ca, "w").write(doc["ca_certificate"])
    # The certificate really is signed by the device CA.
    r = subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    data = os.urandom(5000)
    st, _, r = upload_as(c, cert, key, data)
    assert st == 201, st
    sha = hashlib.sha256(data).hexdigest()
    assert r.getheader("Evidence-Id") == sha
    st, ev, _ = c.srv.request("GET", f"/v1/evidence/{sha}", token=c.tok)
    assert ev["uploaded_by"] == "device:DOCK-1"
    bodies = [e["body"] for e in ledger_entries(c.srv, c.tok)]
    assert any(b["type"] == "DEVICE_ENROLLED" and b["payload"]["serial"] == "DOCK-1"
               for b in bodies)
    ing = [b for b in bodies if b["type"] == "INGESTED"]
    assert ing[-1]["actor"] == {"id": "DOCK-1", "kind": "device"}
    # A device may upload, but not read evidence or act as staff.
    st, _, _ = dev_request(c, cert, key, "GET", f"/v1/evidence/{sha}")
    assert st == 403
    st, _, _ = dev_request(c, cert, key, "GET", "/v1/me")
    assert st == 403
    c.dock = (cert, key)


def test_rename_reenrol_and_the_ca(c):
    cert, key = enrol_csr(c, "dock9", "DOCK-9")
    did = device_id(c, "DOCK-9")
    st, doc, _ = c.srv.request("PATCH", f"/v1/admin/devices/{did}", {"name": "Dock 9 (custody)"},
                               token=c.tok)
    assert st == 200 and doc["name"] == "Dock 9 (custody)" and doc["seq"] > 0, doc
    st, doc, _ = c.srv.request("PATCH", f"/v1/admin/devices/{did}", {"name": ""}, token=c.tok)
    assert st == 400 and '"name"' in doc["detail"], doc
    # The CA's certificate, as served, verifies the device's certificate.
    st, pem, r = c.srv.request("GET", "/v1/admin/devices/ca", token=c.tok)
    assert st == 200 and r.getheader("Content-Type") == "application/x-pem-file", st
    ca = os.path.join(c.dir, "served-ca.pem")
    open(ca, "wb").write(pem)
    r = subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # Re-enrolment: a new key and certificate under the same serial; the old
    # certificate no longer authenticates, the new one does.
    key2, csr2 = make_key_and_csr(c, "dock9b", "DOCK-9")
    st, doc, _ = c.srv.request("POST", f"/v1/admin/devices/{did}/reenrol", {"csr": csr2},
                               token=c.tok)
    assert st == 200 and doc["serial"] == "DOCK-9" and doc["id"] == did, doc
    cert2 = os.path.join(c.dir, "dock9b.pem")
    open(cert2, "w").write(doc["certificate"])
    st, doc, _ = dev_request(c, cert, key, "GET", "/v1/uploads/none")
    assert st == 401, (st, doc)
    st, doc, _ = dev_request(c, cert2, key2, "GET", "/v1/uploads/none")
    assert st == 404, (st, doc)
    bodies = [e["body"] for e in ledger_entries(c.srv, c.tok)]
    re = [b["payload"] for b in bodies if b["type"] == "DEVICE_ENROLLED"
          and b["payload"].get("reenrolled")]
    assert re and re[-1]["serial"] == "DOCK-9" and re[-1]["previous_cert_sha256"], re
    upd = [b["payload"] for b in bodies if b["type"] == "DEVICE_UPDATED"]
    assert upd[-1]["changes"]["name"] == {"from": "dock9", "to": "Dock 9 (custody)"}, upd
    for body in ({}, {"csr": csr2, "certificate": "x"}, {"csr": "not a csr"}):
        st, doc, _ = c.srv.request("POST", f"/v1/admin/devices/{did}/reenrol", body, token=c.tok)
        assert st == 400, (body, doc)
    st, doc, _ = c.srv.request("POST", "/v1/admin/devices/99999/reenrol", {"csr": csr2},
                               token=c.tok)
    assert st == 404, doc


def test_unknown_certificate_is_refused(c):
    key = os.path.join(c.dir, "stranger.key")
    cert = os.path.join(c.dir, "stranger.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-subj", "/CN=stranger", "-days", "30")
    st, doc, _ = upload_as(c, cert, key, b"x")
    assert st == 401 and doc["code"] == "unauthorized"
    c.stranger = (cert, key)


def test_pinned_certificate(c):
    cert, key = c.stranger
    st, doc, _ = c.srv.request("POST", "/v1/admin/devices",
                               {"name": "CCTV gateway", "serial": "GW-7",
                                "certificate": open(cert).read()}, token=c.tok)
    assert st == 201 and doc["issued"] is False
    st, _, _ = upload_as(c, cert, key, b"pinned upload")
    assert st == 201
    # The same certificate or serial cannot be enrolled twice.
    st, doc, _ = c.srv.request("POST", "/v1/admin/devices",
                               {"name": "again", "serial": "GW-8",
                                "certificate": open(cert).read()}, token=c.tok)
    assert st == 409


def test_enrolment_validation(c):
    for bad in ({"name": "x", "serial": "bad serial!", "csr": "x"},
                {"name": "x", "serial": "S1"},
                {"name": "x", "serial": "S1", "csr": "not a csr"},
                {"name": "x", "serial": "S1", "certificate": "-----BEGIN CERTIFICATE-----\nAA\n"}):
        st, doc, _ = c.srv.request("POST", "/v1/admin/devices", bad, token=c.tok)
        assert st == 400, (bad, doc)
    st, doc, _ = c.srv.request("GET", "/v1/admin/devices", token=c.tok)
    assert [d["serial"] for d in doc["devices"]] == ["DOCK-1", "DOCK-9", "GW-7"]
    officer = c.srv.request("POST", "/v1/admin/users",
                            {"username": "pc", "password": "password12", "role": "officer"},
                            token=c.tok)
    tok = c.srv.login("pc", "password12")[1]["token"]
    assert c.srv.request("GET", "/v1/admin/devices", token=tok)[0] == 403
    del officer


def test_enrolment_refuses_unfit_certificates(c):
    c.ca = TestCA(c.dir)
    bad = [("expired", -30 * DAY, -DAY, CLIENT_EXT, "certificate_expired"),
           ("future", DAY, 30 * DAY, CLIENT_EXT, "certificate_not_yet_valid"),
           ("serverauth", -DAY, 30 * DAY, "extendedKeyUsage = serverAuth\n",
            "certificate_not_for_client_auth"),
           ("keyagreement", -DAY, 30 * DAY,
            "keyUsage = critical, keyAgreement\nextendedKeyUsage = clientAuth\n",
            "certificate_not_for_client_auth")]
    for name, start, end, ext, code in bad:
        cert, _ = c.ca.issue(name, start, end, ext)
        st, doc, _ = enrol_pinned(c, name, "BAD-" + name, cert)
        assert st == 400 and doc["code"] == code, (name, st, doc)
    # A certificate fit for client authentication, valid now, is pinned.
    cert, key = c.ca.issue("good", -DAY, 30 * DAY, CLIENT_EXT)
    st, doc, _ = enrol_pinned(c, "good", "GOOD-1", cert)
    assert st == 201, doc
    assert upload_as(c, cert, key, b"from a good certificate")[0] == 201
    st, doc, _ = c.srv.request("GET", "/v1/admin/devices", token=c.tok)
    assert not [d for d in doc["devices"] if d["serial"].startswith("BAD-")], doc


def test_handshake_refuses_unfit_enrolled_certificates(c):
    # Rows enrolled before enrolment checked anything: the handshake refuses
    # them all the same.
    for name, start, end, ext, alert in (
            ("legacy-expired", -30 * DAY, -DAY, CLIENT_EXT, "CERTIFICATE_EXPIRED"),
            ("legacy-server", -DAY, 30 * DAY, "extendedKeyUsage = serverAuth\n",
             "UNSUPPORTED_CERTIFICATE")):
        cert, key = c.ca.issue(name, start, end, ext)
        pem = open(cert).read()
        sha = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint",
                              "-sha256"], capture_output=True, text=True, check=True)
        sha = sha.stdout.strip().split("=")[1].replace(":", "").lower()
        rc, out, err = c.srv.psql(
            "INSERT INTO devices (name, serial, cert_sha256, certificate, issued, enrolled_by)"
            f" VALUES ('{name}', '{name}', '{sha}', '{pem}', false,"
            " (SELECT id FROM users WHERE username = 'admin'))")
        assert rc == 0, err
        refusal = handshake_refusal(c, cert, key)
        assert alert in refusal.upper().replace(" ", "_"), refusal


def test_certificate_expiring_after_enrolment(c):
    # Valid for a few seconds: enrolled and used while valid, refused after.
    cert, key = c.ca.issue("shortlived", -DAY, 6, CLIENT_EXT)
    not_after = time.time() + 6
    st, doc, _ = enrol_pinned(c, "short-lived", "SHORT-1", cert)
    assert st == 201, doc
    conn = device_conn(c, cert, key)
    h = dict(TUS, **{"Upload-Length": "5", "Content-Type": "application/offset+octet-stream"})
    conn.request("POST", "/v1/uploads", body=b"early", headers=h)
    r = conn.getresponse()
    r.read()
    assert r.status == 201, r.status
    assert time.time() < not_after, "too slow to test the window: enrolment took 6 s"
    time.sleep(max(0.0, not_after - time.time()) + 1.5)
    # The connection made while the certificate was valid: refused per request.
    conn.request("POST", "/v1/uploads", body=b"late!", headers=h)
    r = conn.getresponse()
    doc = json.loads(r.read())
    conn.close()
    assert r.status == 401 and doc["code"] == "certificate_expired", (r.status, doc)
    # A new connection: refused at the handshake.
    refusal = handshake_refusal(c, cert, key)
    assert "CERTIFICATE_EXPIRED" in refusal.upper().replace(" ", "_"), refusal


def test_revoked_device_is_refused_at_the_handshake(c):
    cert, key = c.dock
    # A connection made before the revocation, kept open.
    old = device_conn(c, cert, key)
    assert get_on(old, "/v1/uploads/none")[0] == 404
    before = settled_ledger_size(c)
    dev = device_id(c, "DOCK-1")
    assert c.srv.request("POST", f"/v1/admin/devices/{dev}/revoke", token=c.tok)[0] == 204
    assert c.srv.request("POST", f"/v1/admin/devices/{dev}/revoke", token=c.tok)[0] == 409
    assert c.srv.request("POST", "/v1/admin/devices/999/revoke", token=c.tok)[0] == 404
    # That connection's requests are refused without ledger work ...
    for _ in range(20):
        st, doc = get_on(old, "/v1/uploads/none")
        assert st == 403 and doc["code"] == "device_revoked", (st, doc)
    old.close()
    # ... and new connections at the handshake.
    refusal = handshake_refusal(c, cert, key)
    assert "CERTIFICATE_REVOKED" in refusal.upper().replace(" ", "_"), refusal
    # The revocation is the one entry: accountable, and bounded.
    assert settled_ledger_size(c) == before + 1
    last = ledger_bodies(c)[-1]
    assert last["type"] == "DEVICE_REVOKED" and last["payload"]["serial"] == "DOCK-1", last
    # The refusals are logged, rate-limited.
    log = open(c.srv.log_path).read()
    assert '"reason":"certificate_revoked"' in log and '"serial":"DOCK-1"' in log
    # Staff without a client certificate are unaffected.
    assert c.srv.request("GET", "/v1/me", token=c.tok)[0] == 200


def test_revoked_device_hammering_adds_nothing_to_the_ledger(c):
    cert, key = c.dock
    before = settled_ledger_size(c)
    refused, answered, slowest = hammer(c, cert, key, 5)
    print(f"    revoked dock: {refused} attempts refused in 5 s, {answered} answered;"
          f" slowest staff answer meanwhile {slowest * 1000:.0f} ms")
    assert answered == 0 and refused >= 20, (refused, answered)
    assert slowest < 2.0, slowest
    assert settled_ledger_size(c) == before
    # One log line for the lot (at most one a minute per device).
    log = open(c.srv.log_path).read()
    assert log.count('"serial":"DOCK-1","peer"') <= 2, log.count('"serial":"DOCK-1","peer"')


def test_revocation_by_another_server_is_learnt(c):
    # Another demsd on the same database revokes the device: this one learns
    # it at the device's next request (one ACCESS_DENIED entry) and refuses
    # it at the handshake from then on.
    cert, key = enrol_csr(c, "dock2", "DOCK-2")
    conn = device_conn(c, cert, key)
    assert get_on(conn, "/v1/uploads/none")[0] == 404
    before = settled_ledger_size(c)
    rc, _, err = c.srv.psql("UPDATE devices SET revoked_at = now() WHERE serial = 'DOCK-2'")
    assert rc == 0, err
    for _ in range(20):
        st, doc = get_on(conn, "/v1/uploads/none")
        assert st == 403 and doc["code"] == "device_revoked", (st, doc)
    conn.close()
    refusal = handshake_refusal(c, cert, key)
    assert "CERTIFICATE_REVOKED" in refusal.upper().replace(" ", "_"), refusal
    refused, answered, _ = hammer(c, cert, key, 2, threads=2)
    assert answered == 0, answered
    assert settled_ledger_size(c) == before + 1
    last = ledger_bodies(c)[-1]
    assert last["type"] == "ACCESS_DENIED" and last["actor"] == {"id": "DOCK-2", "kind": "device"}
    assert last["payload"]["reason"] == "device revoked", last


def test_revocations_loaded_at_start(c):
    # Revoked before the restart: refused at once (housekeeping, which also
    # refreshes the set, is a minute away).
    assert c.srv.stop() == 0
    c.srv.start()
    before = ledger_size(c)
    refusal = handshake_refusal(c, *c.dock)
    assert "CERTIFICATE_REVOKED" in refusal.upper().replace(" ", "_"), refusal
    assert settled_ledger_size(c) == before


def test_revocations_refreshed(c):
    assert c.srv.stop() == 0
    c.srv.settings["housekeeping_interval"] = 1
    c.srv.start()
    before = settled_ledger_size(c)
    # Revoked in the database behind this server's back, and the device makes
    # no request: the next housekeeping pass (1 s here) has it refused.
    cert, key = enrol_csr(c, "dock3", "DOCK-3")
    rc, _, err = c.srv.psql("UPDATE devices SET revoked_at = now() WHERE serial = 'DOCK-3'")
    assert rc == 0, err
    t0 = time.time()
    refusal = None
    while refusal is None and time.time() < t0 + 10:
        try:
            refusal = handshake_refusal(c, cert, key, timeout=0.5)
        except AssertionError:
            pass
    assert refusal is not None and "CERTIFICATE_REVOKED" in refusal.upper().replace(" ", "_")
    print(f"    refused at the handshake {time.time() - t0:.1f} s after the revocation")
    # Only DOCK-3's enrolment was ledgered: no refusal reached the ledger.
    assert settled_ledger_size(c) == before + 1


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
