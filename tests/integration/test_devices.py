# SPDX-License-Identifier: Apache-2.0
"""Docks: enrolment by CSR (signed by the internal device CA) or by a pinned
certificate, mutual TLS, uploads owned by the device and ledgered with it as
the actor, revocation refusing the next request with 403 and an
ACCESS_DENIED ledger entry."""
import base64
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time

from harness import Server, run_tests

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
    return http.client.HTTPSConnection("127.0.0.1", c.srv.port, context=ctx, timeout=30)


def dev_request(c, cert, key, method, path, body=None, headers=None):
    conn = device_conn(c, cert, key)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, (json.loads(raw) if raw and raw[:1] == b"{" else raw), r


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
    st, doc, _ = c.srv.request("GET", "/v1/ledger/entries?start=0&end=100", token=c.tok)
    bodies = [json.loads(base64.b64decode(e["bytes"])) for e in doc["entries"]]
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
    assert [d["serial"] for d in doc["devices"]] == ["DOCK-1", "GW-7"]
    officer = c.srv.request("POST", "/v1/admin/users",
                            {"username": "pc", "password": "password12", "role": "officer"},
                            token=c.tok)
    tok = c.srv.login("pc", "password12")[1]["token"]
    assert c.srv.request("GET", "/v1/admin/devices", token=tok)[0] == 403
    del officer


def test_revoked_device_gets_403_and_is_ledgered(c):
    cert, key = c.dock
    st, doc, _ = c.srv.request("GET", "/v1/admin/devices", token=c.tok)
    dev = [d for d in doc["devices"] if d["serial"] == "DOCK-1"][0]
    assert c.srv.request("POST", f"/v1/admin/devices/{dev['id']}/revoke", token=c.tok)[0] == 204
    assert c.srv.request("POST", f"/v1/admin/devices/{dev['id']}/revoke", token=c.tok)[0] == 409
    assert c.srv.request("POST", "/v1/admin/devices/999/revoke", token=c.tok)[0] == 404
    st, doc, _ = upload_as(c, cert, key, b"after revocation")
    assert st == 403 and doc["code"] == "forbidden"
    # The refusal's entry is appended without holding up the 403: poll.
    for _ in range(50):
        st, doc, _ = c.srv.request("GET", "/v1/ledger/entries?start=0&end=100", token=c.tok)
        bodies = [json.loads(base64.b64decode(e["bytes"])) for e in doc["entries"]]
        denied = [b for b in bodies if b["type"] == "ACCESS_DENIED"]
        if any(b["payload"]["reason"] == "device revoked" for b in denied):
            break
        time.sleep(0.1)
    assert any(b["type"] == "DEVICE_REVOKED" and b["payload"]["serial"] == "DOCK-1"
               for b in bodies)
    assert any(b["actor"] == {"id": "DOCK-1", "kind": "device"}
               and b["payload"]["reason"] == "device revoked"
               and b["payload"]["path"] == "/v1/uploads" for b in denied), denied
    # Staff without a client certificate are unaffected.
    assert c.srv.request("GET", "/v1/me", token=c.tok)[0] == 200


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
