# SPDX-License-Identifier: Apache-2.0
"""Audit reports from the ledger (issue 15; docs/api.md, "Audit reports"):
an artefact's and a case's custody with inclusion proofs that dems-verify
checks against the signed checkpoint, a printable HTML page with everything
escaped, and a user's activity over a period as CSV; bad requests refused."""
import base64
import csv
import io
import os
import subprocess
import time

from harness import Server, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "verify",
                                     "dems-verify"))


class Ctx:
    pass


def req(c, method, path, body=None, token=None):
    st, doc, r = c.srv.request(method, path, body, token=token or c.admin)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc, r


def upload(c, token, data, name):
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta,
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def verify(*args):
    return subprocess.run([VERIFY, *args], capture_output=True, text=True, timeout=60)


def wait_covered(c, size):
    deadline = time.time() + 20
    while time.time() < deadline:
        st, note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
        if int(note.decode().split("\n")[1]) >= size:
            return
        time.sleep(0.3)
    raise AssertionError(f"no checkpoint covering {size} entries")


def check_report(c, rep, root):
    """Every proven entry verifies with dems-verify against the report's
    checkpoint, whose signature verifies with the report's key."""
    note = os.path.join(c.srv.root, "report-checkpoint.txt")
    open(note, "w").write(rep["checkpoint"])
    r = verify("checkpoint", note, "--key", rep["vkey"])
    assert r.returncode == 0, r.stdout + r.stderr
    root_hex = base64.b64decode(rep["checkpoint"].split("\n")[2]).hex()
    proven = 0
    for e in rep["entries"]:
        if e["proof"] is None:
            assert e["index"] >= rep["checkpoint_size"], e
            continue
        path = os.path.join(c.srv.root, f"entry-{e['index']}.json")
        open(path, "wb").write(base64.b64decode(e["entry"]))
        proof = ",".join(base64.b64decode(h).hex() for h in e["proof"])
        args = ["inclusion", "--entry", path, "--index", str(e["index"]), "--size",
                str(rep["checkpoint_size"]), "--root", root_hex]
        if proof:
            args += ["--proof", proof]
        r = verify(*args)
        assert r.returncode == 0, (e["index"], r.stdout + r.stderr)
        proven += 1
        # A proof for another entry's bytes fails: the check is real.
        if proven == 1 and len(rep["entries"]) > 1:
            other = rep["entries"][1]
            open(path, "wb").write(base64.b64decode(other["entry"]))
            assert verify(*args).returncode == 1
    return proven


def setup():
    c = Ctx()
    c.srv = Server({"refusal_max_per_principal": 1000000}).start()
    c.admin = c.srv.admin_token()
    st, doc, _ = req(c, "POST", "/v1/admin/users",
                     {"username": "aofficer", "password": "correct horse", "role": "officer"})
    assert st == 201, doc
    c.off = c.srv.login("aofficer", "correct horse")[1]["token"]
    c.start = time.time() - 5
    c.data = b"AUDIT " + os.urandom(30_000)
    c.ev = upload(c, c.off, c.data, 'clip.bin')
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "A/1", "title": "Audit & <b>co</b>"},
                     c.off)
    assert st == 201, doc
    c.case = doc["id"]
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/exhibits",
                     {"evidence": c.ev, "reference": "EX1",
                      "description": "<script>alert(1)</script> see CCTV"}, c.off)
    assert st == 201, doc
    for _ in range(2):
        st, body, _ = c.srv.request("GET", f"/v1/evidence/{c.ev}/content", token=c.off)
        assert st == 200 and body == c.data
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_evidence_custody_report_proves_every_entry(c):
    st, ents, _ = req(c, "GET", f"/v1/evidence/{c.ev}/custody?limit=200")
    n = max(e["seq"] for e in ents["entries"]) + 1
    wait_covered(c, n)
    st, rep, _ = req(c, "GET", f"/v1/admin/audit/evidence/{c.ev}")
    assert st == 200 and rep["evidence"] == c.ev and rep["dems_audit_report"] == 1, rep
    types = [e["body"]["type"] for e in rep["entries"]]
    assert types[0] == "INGESTED" and "EXHIBIT_ADDED" in types, types
    assert types.count("DOWNLOADED") == 2, types
    assert [e["index"] for e in rep["entries"]] == [e["seq"] for e in ents["entries"]]
    assert check_report(c, rep, None) == len(rep["entries"])


def test_case_report_holds_case_and_exhibit_entries(c):
    st, rep, _ = req(c, "GET", f"/v1/admin/audit/cases/{c.case}")
    assert st == 200 and rep["case"] == c.case, rep
    types = {e["body"]["type"] for e in rep["entries"]}
    assert {"CASE_CREATED", "EXHIBIT_ADDED", "INGESTED", "DOWNLOADED"} <= types, types
    assert check_report(c, rep, None) >= 1
    st, doc, _ = req(c, "GET", "/v1/admin/audit/cases/99999")
    assert st == 404 and doc["code"] == "case_not_found", doc


def test_printable_page_escapes_everything(c):
    st, html, r = req(c, "GET", f"/v1/admin/audit/evidence/{c.ev}?format=html")
    assert st == 200 and r.getheader("Content-Type").startswith("text/html"), st
    text = html.decode()
    assert "<script>" not in text and "&lt;script&gt;" in text, text[:2000]
    assert "INGESTED" in text and "DOWNLOADED" in text and "Signed checkpoint" in text
    st, html, _ = req(c, "GET", f"/v1/admin/audit/cases/{c.case}?format=html")
    assert st == 200 and "A/1" in html.decode() and "<b>co</b>" not in html.decode()
    st, doc, _ = req(c, "GET", f"/v1/admin/audit/evidence/{c.ev}?format=pdf")
    assert st == 400 and doc["code"] == "invalid_parameter", doc


def test_user_activity_as_csv(c):
    frm = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.start))
    to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    st, body, r = req(c, "GET", f"/v1/admin/audit/users/aofficer?from={frm}&to={to}")
    assert st == 200 and r.getheader("Content-Type").startswith("text/csv"), (st, body)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    kinds = [row["type"] for row in rows]
    assert kinds.count("DOWNLOADED") == 2 and "CASE_CREATED" in kinds, kinds
    assert all(row["evidence"] in ("", c.ev) for row in rows), rows
    added = [row for row in rows if row["type"] == "EXHIBIT_ADDED"]
    assert added and "see CCTV" in added[0]["details"] and added[0]["case"] == "A/1", added
    # Nobody else's entries: the admin's user creation is not there.
    assert "USER_CREATED" not in kinds
    early = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.start - 3600))
    st, body, _ = req(c, "GET", f"/v1/admin/audit/users/aofficer?from={early}&to={frm}")
    assert st == 200 and len(list(csv.DictReader(io.StringIO(body.decode())))) == 0
    for q, name in ((f"from={frm}", "to"), (f"to={to}", "from"), (f"from=yesterday&to={to}",
                                                                   "from"),
                    (f"from={to}&to={frm}", "to"),
                    ("from=2025-01-01T00:00:00Z&to=2026-12-31T00:00:00Z", "to")):
        st, doc, _ = req(c, "GET", f"/v1/admin/audit/users/aofficer?{q}")
        assert st == 400 and f'"{name}"' in doc["detail"], (q, doc)
    st, doc, _ = req(c, "GET", f"/v1/admin/audit/users/aofficer?from={frm}&to={to}", token=c.off)
    assert st == 403, doc


def test_missing_evidence_and_server_alive(c):
    st, doc, _ = req(c, "GET", f"/v1/admin/audit/evidence/{'a' * 64}")
    assert st == 404 and doc["code"] == "not_found", doc
    st, doc, _ = req(c, "GET", "/v1/admin/audit/evidence/xyz")
    assert st == 404, doc
    assert c.srv.request("GET", "/healthz")[0] == 200


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
