# SPDX-License-Identifier: Apache-2.0
"""Who sees which evidence: an officer sees what they or a dock assigned to
them uploaded (any upload of the same content counts), administrators see
everything, and a read of someone else's evidence is refused exactly as an
unknown id is (404), with an ACCESS_DENIED entry on the record. Docks are
assigned to officers by administrators (a DEVICE_ASSIGNED entry). Downloads
present the uploader's name and type safely (RFC 6266 filename*, no control
or bidirectional characters, an allow-listed Content-Type)."""
import base64
import hashlib
import json
import os

from harness import Server, enrol_pinned_dock, eventually, run_tests

TUS = {"Tus-Resumable": "1.0.0"}


class Ctx:
    pass


def upload(c, token, data, name, filetype=None):
    meta = "filename " + base64.b64encode(name.encode()).decode()
    if filetype:
        meta += ",filetype " + base64.b64encode(filetype.encode()).decode()
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Content-Type": "application/offset+octet-stream",
                "Upload-Metadata": meta}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def dock_upload(c, data):
    ctx = c.srv.context()
    ctx.load_cert_chain(c.dock_cert, c.dock_key)
    conn = c.srv.conn(ctx=ctx)
    conn.request("POST", "/v1/uploads", body=data, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Content-Type": "application/offset+octet-stream",
                "Upload-Metadata": "device_serial " + base64.b64encode(b"DOCK-A").decode()}))
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 201, r.status
    return r.getheader("Evidence-Id")


def make_user(c, name, role):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": "correct horse", "role": role},
                               token=c.admin)
    assert st == 201, doc
    return c.srv.login(name, "correct horse")[1]["token"]


def setup():
    c = Ctx()
    c.srv = Server({"workers": 0}).start()
    c.admin = c.srv.admin_token()
    c.offa = make_user(c, "offa", "officer")
    c.offb = make_user(c, "offb", "officer")
    c.pros = make_user(c, "prosa", "prosecutor")
    c.x = upload(c, c.offa, os.urandom(3000), "a-only.bin")
    c.y = upload(c, c.offb, os.urandom(3000), "b-only.bin")
    shared = os.urandom(3000)
    c.z = upload(c, c.offa, shared, "both-a.bin")
    assert upload(c, c.offb, shared, "both-b.bin") == c.z
    c.mine = upload(c, c.admin, os.urandom(3000), "admin.bin")
    # A dock with a pinned certificate, for assignment.
    c.dock_cert, c.dock_key, c.dock_id = enrol_pinned_dock(c.srv, c.admin, "DOCK-A")
    c.w = dock_upload(c, os.urandom(4000))
    return c


def teardown(c):
    assert c.srv.stop() == 0


def listed(c, token):
    st, doc, _ = c.srv.request("GET", "/v1/evidence?limit=200", token=token)
    assert st == 200, doc
    return {e["id"] for e in doc["evidence"]}


def last_entries(c, n=5):
    st, out, err = c.srv.psql("SELECT convert_from(bytes, 'UTF8') FROM ledger_entries"
                              f" ORDER BY seq DESC LIMIT {n}")
    assert st == 0, err
    return [json.loads(x) for x in out.splitlines()]


def test_officers_list_only_their_evidence(c):
    assert listed(c, c.offa) == {c.x, c.z}
    assert listed(c, c.offb) == {c.y, c.z}
    assert listed(c, c.admin) == {c.x, c.y, c.z, c.mine, c.w}


def test_reading_another_officers_evidence_is_refused_and_recorded(c):
    for path in ("", "/content", "/preview", "/poster", "/thumbnails", "/sprite.jpg"):
        st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.x}{path}", token=c.offb)
        # Refused exactly as an unknown id would be: nothing to probe.
        st2, doc2, _ = c.srv.request("GET", f"/v1/evidence/{'0' * 64}{path}", token=c.offb)
        assert st == 404 and st2 == 404 and doc["code"] == doc2["code"], (path, doc, doc2)
        assert doc["detail"] == doc2["detail"]
        e = eventually(lambda: [x for x in last_entries(c, 1) if x["type"] == "ACCESS_DENIED"
                                and c.x + path in x["payload"]["path"]])[0]
        assert e["type"] == "ACCESS_DENIED" and e["actor"]["id"] == "offb", e
        assert c.x in e["payload"]["path"] and e["artefact"] == c.x, e
    # No DOWNLOADED entry was written for any of those refusals.
    st, out, _ = c.srv.psql("SELECT count(*) FROM ledger_entries WHERE type = 'DOWNLOADED'"
                            f" AND artefact = '{c.x}'")
    assert out == "0", out
    # The owner still reads it, and the shared file is readable by both.
    for tok, ev in ((c.offa, c.x), (c.offa, c.z), (c.offb, c.z), (c.admin, c.x)):
        st, doc, _ = c.srv.request("GET", f"/v1/evidence/{ev}/content", token=tok)
        assert st == 200, (ev, st)


def test_a_foreign_cursor_reveals_nothing(c):
    st, doc, _ = c.srv.request("GET", f"/v1/evidence?cursor={c.x}", token=c.offb)
    assert st == 400 and doc["code"] == "invalid_parameter" and '"cursor"' in doc["detail"]
    st, doc, _ = c.srv.request("GET", f"/v1/evidence?cursor={c.z}", token=c.offb)
    assert st == 200


def test_prosecutors_see_only_what_is_shared(c):
    # No share: an empty list, and evidence hidden as unknown (test_cases.py
    # covers shares).
    st, doc, _ = c.srv.request("GET", "/v1/evidence", token=c.pros)
    assert st == 200 and doc["evidence"] == [], doc
    st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.z}", token=c.pros)
    assert st == 404 and doc["code"] == "not_found", doc


def test_assigning_a_dock_shows_its_evidence(c):
    assert c.w not in listed(c, c.offb)
    st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.w}", token=c.offb)
    assert st == 404
    # Only administrators assign; only to an enabled officer.
    path = f"/v1/admin/devices/{c.dock_id}/assign"
    assert c.srv.request("POST", path, {"username": "offb"}, token=c.offb)[0] == 403
    for bad in ({}, {"username": "prosa"}, {"username": "admin"}, {"username": "nobody"},
                {"username": 7}, {"username": "bad name"}):
        st, doc, _ = c.srv.request("POST", path, bad, token=c.admin)
        assert st == 400 and doc["code"] == "invalid_field", (bad, doc)
    st, doc, _ = c.srv.request("POST", "/v1/admin/devices/999999/assign", {"username": "offb"},
                               token=c.admin)
    assert st == 404
    st, doc, _ = c.srv.request("POST", path, {"username": "OFFB"}, token=c.admin)
    assert st == 200 and doc["assigned_to"] == "offb", doc
    e = last_entries(c, 1)[0]
    assert e["type"] == "DEVICE_ASSIGNED" and e["seq"] == doc["seq"], e
    assert e["payload"] == {"serial": "DOCK-A", "assigned_to": "offb", "previous": None}, e
    # What the dock uploaded before the assignment, and after it.
    later = dock_upload(c, os.urandom(4100))
    assert {c.w, later} <= listed(c, c.offb)
    assert c.w not in listed(c, c.offa)
    st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.w}/content", token=c.offb)
    assert st == 200
    # Taken back: gone again.
    st, doc, _ = c.srv.request("POST", path, {"username": None}, token=c.admin)
    assert st == 200 and doc["assigned_to"] is None, doc
    assert last_entries(c, 1)[0]["payload"] == {"serial": "DOCK-A", "assigned_to": None,
                                                 "previous": "offb"}
    assert c.w not in listed(c, c.offb)
    assert c.srv.request("GET", f"/v1/evidence/{c.w}", token=c.offb)[0] == 404
    # A revoked dock cannot be assigned.
    assert c.srv.request("POST", f"/v1/admin/devices/{c.dock_id}/revoke", token=c.admin)[0] == 204
    st, doc, _ = c.srv.request("POST", path, {"username": "offb"}, token=c.admin)
    assert st == 409 and doc["code"] == "device_revoked"


def download_headers(c, ev):
    st, body, r = c.srv.request("GET", f"/v1/evidence/{ev}/content", token=c.admin)
    assert st == 200, st
    return r.getheader("Content-Disposition"), r.getheader("Content-Type")


def test_downloads_present_names_and_types_safely(c):
    ev = upload(c, c.offa, os.urandom(2000), "caméra 1.mp4", "video/mp4")
    disp, ctype = download_headers(c, ev)
    assert disp == ("attachment; filename=\"cam_ra 1.mp4\"; "
                    "filename*=UTF-8''cam%C3%A9ra%201.mp4"), disp
    assert ctype == "video/mp4"
    # A declared type off the allow-list is not echoed.
    ev = upload(c, c.offa, os.urandom(2001), "page.html", "text/html")
    disp, ctype = download_headers(c, ev)
    assert ctype == "application/octet-stream" and disp == 'attachment; filename="page.html"'
    # A name stored before uploads refused them: a right-to-left override and
    # a quote never reach the header as such.
    c.srv.psql("UPDATE artefacts SET filename = E'invoice\\u202Efdp\".exe'"
               f" WHERE id = '{ev}'")
    disp, _ = download_headers(c, ev)
    assert disp == ("attachment; filename=\"invoicefdp_.exe\"; "
                    "filename*=UTF-8''invoicefdp%22.exe"), disp


def test_evidence_ids_are_content_hashes(c):
    # The list's ids are what the tests think they are (a sanity check of setup).
    st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.x}/content", token=c.offa)
    assert hashlib.sha256(doc if isinstance(doc, bytes) else b"").hexdigest() == c.x


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
