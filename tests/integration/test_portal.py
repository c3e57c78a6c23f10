# SPDX-License-Identifier: Apache-2.0
"""The public submission portal's API (docs/api.md, "Public submissions"),
end to end over HTTPS against a real demsd and PostgreSQL: an officer makes
a request link and an appeal link for a case; a member of the public opens
one (token in the body), gives a statement, gets a submission token and
sends files with tus as that bearer; the first bytes of each file are
sniffed (a program or text is refused, 415, and the upload ended); the
link's limits (files, bytes, uploads in flight, submissions) hold; a
revoked or expired link answers 410 and stops uploads in flight; finishing
is ledgered (SUBMITTED) as each file was (INGESTED by the actor
submission/<id>, naming the submission and the link); bad input of every
kind is a 4xx with a stable code; and nothing here sets a cookie."""
import base64
import copy
import hashlib
import io
import json
import os
import subprocess
import time
import zipfile

from harness import Server, eventually, ledger_entries, raw_tls, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY", "build/plain/server/verify/dems-verify")
SETTINGS = {"refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000,
            "public_rate_per_minute": 600, "public_rate_burst": 600,
            "portal_link_rate_per_minute": 6, "portal_link_burst": 8, "housekeeping_interval": 1}
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


class Ctx:
    pass


def iso_in(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def req(c, method, path, body=None, token=None, headers=None):
    st, doc, r = c.srv.request(method, path, body, token=token, headers=headers)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    assert r.getheader("Set-Cookie") is None, (path, r.getheader("Set-Cookie"))
    return st, doc, r


def make_user(c, name, role):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": "correct horse", "role": role},
                               token=c.admin)
    assert st == 201, doc
    return c.srv.login(name, "correct horse")[1]["token"]


def meta(**kv):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def create(c, token, length, **kv):
    """A tus creation (no body); returns status, problem or upload path."""
    kv.setdefault("filename", "clip.mp4")
    st, doc, r = req(c, "POST", "/v1/uploads", token=token, headers=dict(
        TUS, **{"Upload-Length": str(length), "Upload-Metadata": meta(**kv)}))
    return st, doc, r.getheader("Location")


def patch(c, token, loc, offset, data):
    return req(c, "PATCH", loc, data, token=token, headers=dict(
        TUS, **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}))


def send(c, token, data, name="clip.mp4", declare=True):
    kv = {"filename": name}
    if declare:
        kv["sha256"] = hashlib.sha256(data).hexdigest()
    st, doc, loc = create(c, token, len(data), **kv)
    assert st == 201, (st, doc)
    st, doc, r = patch(c, token, loc, 0, data)
    return st, doc, r, loc


def video(n):
    return MP4_HEAD + os.urandom(n - len(MP4_HEAD))


def new_link(c, **body):
    body.setdefault("kind", "request")
    body.setdefault("title", "Shop CCTV, High St")
    return req(c, "POST", f"/v1/cases/{c.case}/submission-links", body, c.officer)


def statement(token, **kv):
    body = {"token": token, "description": "the car park camera at 21:00",
            "location": "12 High St", "declaration": True}
    body.update(kv)
    return body


def start(c, link_token, **kv):
    st, doc, _ = req(c, "POST", "/v1/portal/submissions", statement(link_token, **kv))
    assert st == 201, (st, doc)
    assert doc["reference"].startswith("S-") and doc["submission_token"].startswith("dems_ps_")
    return doc


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.officer = make_user(c, "pofficer", "officer")
    c.other = make_user(c, "pother", "officer")
    c.pros = make_user(c, "ppros", "prosecutor")
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "PT/1", "title": "Burglary"}, c.officer)
    assert st == 201, doc
    c.case = doc["id"]
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_officer_makes_links_and_bad_input_is_refused(c):
    st, doc, _ = new_link(c, message="Please send the footage from 21:00 to 22:00",
                          submitter_name="A. Shopkeeper", contact_required=True)
    assert st == 201, doc
    assert doc["kind"] == "request" and doc["state"] == "live" and doc["token"].startswith("dems_sl_")
    assert doc["path"] == "/portal/#" + doc["token"]
    assert doc["limits"]["max_submissions"] == 1 and doc["limits"]["max_files"] == 200
    # Three days by default.
    left = time.mktime(time.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(
        time.gmtime())
    assert 3 * 86400 - 120 < left <= 3 * 86400 + 5, doc
    c.request = doc
    st, doc, _ = new_link(c, kind="appeal", title="Appeal: fire on Mill Lane",
                          max_files=3, max_bytes=300_000, max_concurrent=2,
                          expires_at=iso_in(86400))
    assert st == 201 and doc["limits"]["max_submissions"] == 1000, doc
    c.appeal = doc
    for body, code in (({"kind": "raffle"}, "invalid_field"),
                       ({"title": ""}, "invalid_field"),
                       ({"expires_at": iso_in(-60)}, "expiry_in_past"),
                       ({"expires_at": iso_in(31 * 86400)}, "expiry_too_far"),
                       ({"max_files": 0}, "invalid_field"),
                       ({"kind": "appeal", "submitter_name": "x"}, "invalid_field"),
                       ({"kind": "request", "max_submissions": 5}, "invalid_field"),
                       ({"contact_required": "yes"}, "invalid_field")):
        st, doc, _ = new_link(c, **body)
        assert st == 400 and doc["code"] == code, (body, doc)
    # Who: the case's officers; not a stranger (404, the case is hidden) nor a prosecutor.
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submission-links",
                     {"kind": "request", "title": "x"}, c.other)
    assert st == 404 and doc["code"] == "case_not_found", doc
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submission-links", token=c.pros)
    assert st == 403, doc
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submission-links?limit=1", token=c.officer)
    assert st == 200 and len(doc["links"]) == 1 and doc["next_cursor"], doc
    assert "token" not in doc["links"][0]
    kinds = {e["body"]["type"] for e in ledger_entries(c.srv, c.admin)}
    assert "SUBMISSION_REQUESTED" in kinds


def test_open_tells_what_the_link_asks_and_nothing_of_the_case(c):
    st, doc, _ = req(c, "POST", "/v1/portal/open", {"token": c.request["token"]})
    assert st == 200, doc
    assert doc["title"] == "Shop CCTV, High St" and doc["submitter_name"] == "A. Shopkeeper"
    assert doc["contact_required"] is True and doc["limits"]["max_files"] == 200
    assert doc["limits"]["max_file_size"] > 0 and doc["uploads"] == "/v1/uploads"
    text = repr(doc)
    assert "PT/1" not in text and "Burglary" not in text and "pofficer" not in text
    for tok in ("dems_sl_" + "A" * 43, "short", "../../etc", "dems_sl_" + "A" * 80):
        st, doc, _ = req(c, "POST", "/v1/portal/open", {"token": tok})
        assert st in (400, 404), (tok, doc)
        assert doc["code"] in ("link_not_found", "invalid_field"), doc
    for body in ({}, {"token": 5}, []):
        st, doc, _ = req(c, "POST", "/v1/portal/open", body)
        assert st == 400, doc


def test_the_portal_serves_only_its_own_files(c):
    st, body, r = c.srv.request("GET", "/portal/")
    assert st == 200 and b"Hand in footage" in body, st
    csp = r.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    assert r.getheader("Set-Cookie") is None
    for name in ("portal.js", "portal.css", "upload-kit.js", "licenses.txt"):
        assert c.srv.request("GET", "/portal/" + name)[0] == 200, name
    for name in ("app.js", "index.html", "cases.js", "..%2Fstaff%2Fapp.js", "portal.html"):
        st, doc, _ = c.srv.request("GET", "/portal/" + name)
        assert st in (400, 404), (name, st)
    lic = c.srv.request("GET", "/portal/licenses.txt")[1]
    assert b"tus-js-client" in lic and b"MIT" in lic, lic[:200]


def test_statement_is_checked_before_anything_is_made(c):
    tok = c.request["token"]
    cases = ((statement(tok, declaration=False), "declaration_required"),
             (statement(tok, description=""), "invalid_field"),
             (statement(tok, location="x" * 501), "invalid_field"),
             (statement(tok, description="evil\u202egpj.exe"), "invalid_field"),
             (statement(tok, recorded_from="yesterday"), "invalid_field"),
             (statement(tok, recorded_from="2026-01-02T00:00:00Z",
                        recorded_to="2026-01-01T00:00:00Z"), "invalid_field"),
             (statement(tok, clock_offset_seconds=10 ** 9), "invalid_field"),
             (statement(tok, contact_email="not an address"), "invalid_field"),
             (statement(tok, contact_phone="call me"), "invalid_field"),
             (statement(tok), "contact_required"))
    for body, code in cases:
        st, doc, _ = req(c, "POST", "/v1/portal/submissions", body)
        assert st == 400 and doc["code"] == code, (body, doc)
    n = c.srv.psql("SELECT count(*) FROM submissions")[1].strip()
    assert n == "0", n


def test_a_request_takes_one_submission_and_its_files(c):
    doc = start(c, c.request["token"], contact_email="shop@example.org",
                recorded_from="2026-11-30T21:00:00Z", recorded_to="2026-11-30T22:00:00Z",
                clock_offset_seconds=-90)
    c.sub = doc["submission_token"]
    c.ref = doc["reference"]
    # One-time: the link is used now.
    st, doc, _ = req(c, "POST", "/v1/portal/open", {"token": c.request["token"]})
    assert st == 410 and doc["code"] == "link_used", doc
    st, doc, _ = req(c, "POST", "/v1/portal/submissions",
                     statement(c.request["token"], contact_email="x@example.org"))
    assert st == 410 and doc["code"] == "link_used", doc
    # Files by tus as the submission's bearer.
    c.clip = video(300_000)
    st, doc, r, _ = send(c, c.sub, c.clip, "front door.mp4")
    assert st == 204 and r.getheader("Upload-State") == "complete", (st, doc)
    c.clip_sha = r.getheader("Evidence-Id")
    assert c.clip_sha == hashlib.sha256(c.clip).hexdigest()
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(5000)
    st, doc, r, _ = send(c, c.sub, jpeg, "still.jpg")
    assert st == 204, doc
    st, doc, _ = req(c, "GET", "/v1/portal/submission", token=c.sub)
    assert st == 200 and doc["reference"] == c.ref and doc["state"] == "open", doc
    assert [f["filename"] for f in doc["files"]] == ["front door.mp4", "still.jpg"], doc
    assert doc["files"][0]["sha256"] == c.clip_sha and doc["files"][0]["size"] == 300_000
    assert doc["statement"]["clock_offset_seconds"] == -90
    assert doc["statement"]["recorded_from"] == "2026-11-30T21:00:00Z"
    # INGESTED by the submission, naming it and the link.
    ing = [e["body"] for e in ledger_entries(c.srv, c.admin)
           if e["body"]["type"] == "INGESTED" and e["body"].get("artefact") == c.clip_sha]
    assert len(ing) == 1, ing
    sid = c.srv.psql(f"SELECT id FROM submissions WHERE reference = '{c.ref}'")[1].strip()
    assert ing[0]["actor"] == {"kind": "link", "id": f"submission/{sid}"}, ing
    assert ing[0]["payload"]["submission_link"] == c.request["id"]


def test_what_is_not_media_is_refused_at_its_first_bytes(c):
    for data, fmt in ((b"MZ\x90\x00" + os.urandom(4000), "windows-program"),
                      (b"hello, this is just text\n" * 100, "unknown"),
                      (b"%PDF-1.7\n" + os.urandom(100), "pdf")):
        st, doc, r, loc = send(c, c.sub, data, "player.mp4")
        assert st == 415 and doc["code"] == "type_not_allowed", doc
        assert fmt in doc["detail"], doc
        # The upload is ended (just after the answer): its bytes gone, its state terminated.
        assert eventually(lambda: req(c, "HEAD", loc, token=c.sub, headers=TUS)[0] == 404)
    # The head is judged on its first 512 bytes, never less: a first request
    # that brings fewer (of a larger file) keeps nothing.
    data = video(4000)
    one = start(c, c.appeal["token"])["submission_token"]
    st, doc, loc = create(c, one, len(data))
    assert st == 201
    st, doc, r = patch(c, one, loc, 0, data[:100])
    assert st == 400 and doc["code"] == "first_chunk_too_small", doc
    assert r.getheader("Upload-Offset") == "0"
    st, doc, r = patch(c, one, loc, 0, data)
    assert st == 204 and r.getheader("Evidence-Id"), doc
    # A name or a claimed type changes nothing; a tiny file is judged whole.
    st, doc, r, _ = send(c, c.sub, b"MZ", "clip.mp4")
    assert st == 415, doc
    # Staff-only metadata keys are refused from the public.
    st, doc, _ = create(c, c.sub, 100, device_serial="CAM1")
    assert st == 400 and doc["code"] == "invalid_metadata", doc
    assert c.srv.request("GET", "/healthz")[0] == 200


def test_limits_of_a_link_hold(c):
    doc = start(c, c.appeal["token"])
    sub = doc["submission_token"]
    # max_bytes 300_000 per submission, max_files 3.
    st, doc, _ = create(c, sub, 300_001)
    assert st == 413 and doc["code"] == "submission_too_large", doc
    # max_concurrent 2: two in flight, the third waits.
    locs = []
    for _ in range(2):
        st, doc, loc = create(c, sub, 1000)
        assert st == 201, doc
        locs.append(loc)
    st, doc, r = create(c, sub, 1000)
    assert st == 429 and doc["code"] == "too_many_uploads", doc
    for loc in locs:
        st, _, _ = patch(c, sub, loc, 0, video(1000))
        assert st == 204
    st, doc, r, _ = send(c, sub, video(1000))
    assert st == 204, doc
    st, doc, _ = create(c, sub, 1000)
    assert st == 409 and doc["code"] == "file_limit_reached", doc
    # A corrupted transfer (declared hash differs) is refused and kept nowhere.
    sub2 = start(c, c.appeal["token"])["submission_token"]
    data = video(2000)
    st, doc, loc = create(c, sub2, len(data), sha256=hashlib.sha256(b"other").hexdigest())
    assert st == 201
    st, doc, _ = patch(c, sub2, loc, 0, data)
    assert st == 422 and doc["code"] == "sha256_mismatch", doc


def test_one_submitter_sees_only_their_own(c):
    other = start(c, c.appeal["token"])["submission_token"]
    st, doc, r, loc = send(c, c.sub, video(1000))
    assert st == 204
    # Another submitter's upload is unknown to them; staff routes are closed to both.
    st, doc, _ = req(c, "HEAD", loc, token=other, headers=TUS)
    assert st == 404
    st, doc, _ = patch(c, other, loc, 1000, b"")
    assert st == 404
    for path in ("/v1/evidence", f"/v1/cases/{c.case}", "/v1/me", "/v1/ledger/entries"):
        st, doc, _ = req(c, "GET", path, token=other)
        assert st in (401, 403), (path, st)
    st, doc, _ = req(c, "GET", "/v1/portal/submission", token="dems_ps_" + "B" * 43)
    assert st == 401, doc
    st, doc, _ = req(c, "GET", "/v1/portal/submission", token=c.officer)
    assert st == 403, doc


def test_a_connection_lost_mid_file_resumes_where_it_stopped(c):
    """The submitter's browser closes in the middle of a PATCH: what arrived
    is kept, a HEAD gives the offset, and the rest completes the file."""
    data = video(3_000_000)
    st, doc, loc = create(c, c.sub, len(data), sha256=hashlib.sha256(data).hexdigest(),
                          filename="dropped.mp4")
    assert st == 201, doc
    t = raw_tls(c.srv, timeout=30)
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer {c.sub}\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    t.sendall(head + data[:1_200_000])
    time.sleep(0.5)
    t.close()  # gone, mid-body

    def offset():
        st, _, r = req(c, "HEAD", loc, token=c.sub, headers=TUS)
        return int(r.getheader("Upload-Offset")) if st == 200 else None
    assert eventually(lambda: (offset() or 0) > 0, timeout=10), offset()
    off = offset()
    assert 0 < off <= 1_200_000, off
    st, doc, r = patch(c, c.sub, loc, off, data[off:])
    assert st == 204 and r.getheader("Evidence-Id") == hashlib.sha256(data).hexdigest(), doc


def test_finishing_is_ledgered_once(c):
    empty = start(c, c.appeal["token"])["submission_token"]
    st, doc, _ = req(c, "POST", "/v1/portal/submission/finish", {}, empty)
    assert st == 409 and doc["code"] == "no_files", doc
    st, doc, loc = create(c, c.sub, 5000)
    assert st == 201
    st, doc, _ = req(c, "POST", "/v1/portal/submission/finish", {}, c.sub)
    assert st == 409 and doc["code"] == "uploads_in_progress", doc
    st, doc, _ = req(c, "DELETE", loc, token=c.sub, headers=TUS)
    assert st == 204
    st, doc, _ = req(c, "POST", "/v1/portal/submission/finish", {}, c.sub)
    assert st == 200 and doc["state"] == "submitted" and doc["submitted_at"], doc
    st, doc, _ = req(c, "POST", "/v1/portal/submission/finish", {}, c.sub)
    assert st == 409 and doc["code"] == "submission_closed", doc
    st, doc, _ = create(c, c.sub, 1000)
    assert st == 409 and doc["code"] == "submission_closed", doc
    sub = [e["body"] for e in ledger_entries(c.srv, c.admin) if e["body"]["type"] == "SUBMITTED"]
    assert len(sub) == 1 and sub[0]["case"] == "PT/1", sub
    assert sub[0]["payload"]["reference"] == c.ref and sub[0]["payload"]["files"] == 4, sub


def verify(c, doc, *extra):
    path = os.path.join(c.srv.root, "receipt.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return subprocess.run([VERIFY, "receipt", path, *extra], capture_output=True, text=True,
                          timeout=60)


def test_receipt_proves_each_file_offline(c):
    other = start(c, c.appeal["token"])["submission_token"]
    st, doc, _ = req(c, "GET", "/v1/portal/receipt", token=other)
    assert st == 409 and doc["code"] == "submission_open", doc

    def ready():
        st, doc, r = req(c, "GET", "/v1/portal/receipt", token=c.sub)
        assert st in (200, 202), (st, doc)
        if st == 202:
            assert doc["state"] == "pending" and r.getheader("Retry-After"), doc
        return doc if st == 200 else None
    rc = eventually(ready, timeout=60, interval=0.5)
    assert rc and rc["reference"] == c.ref and len(rc["files"]) == 4, rc
    assert rc["files"][0]["name"] == "front door.mp4" and rc["files"][0]["sha256"] == c.clip_sha
    key = c.srv.request("GET", "/v1/ledger/key")[1].decode().strip()
    r = verify(c, rc, "--key", key)
    assert r.returncode == 0 and "OK: receipt " + c.ref in r.stdout, r.stdout + r.stderr
    r = verify(c, rc)  # the receipt's own key: valid, with a warning to compare it
    assert r.returncode == 0 and "compare it" in r.stdout, r.stdout + r.stderr
    # Later: a new checkpoint and the consistency proof, both public.
    size = int(rc["checkpoint"].split("\n")[1])
    assert new_link(c, kind="appeal", title="a later entry")[0] == 201

    def grown():
        st, note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
        note = note.decode() if isinstance(note, bytes) else note
        return note if int(note.split("\n")[1]) > size else None
    later = eventually(grown, timeout=60, interval=0.5)
    assert later, "no later checkpoint"
    new = int(later.split("\n")[1])
    st, proof, _ = req(c, "GET", f"/v1/ledger/proof/consistency?old={size}&new={new}")
    assert st == 200, proof
    lp, pp = os.path.join(c.srv.root, "later.txt"), os.path.join(c.srv.root, "cons.json")
    open(lp, "w").write(later)
    open(pp, "w").write(json.dumps(proof))
    r = verify(c, rc, "--key", key, "--checkpoint", lp, "--consistency", pp)
    assert r.returncode == 0 and f"later checkpoint of size {new}" in r.stdout, r.stdout + r.stderr
    # Each kind of tampering is caught, with its code.
    bad = copy.deepcopy(rc)
    bad["files"][0]["sha256"] = hashlib.sha256(b"other").hexdigest()
    r = verify(c, bad, "--key", key)
    assert r.returncode == 1 and "file_mismatch" in r.stdout + r.stderr, r.stdout + r.stderr
    bad = copy.deepcopy(rc)
    raw = bytearray(base64.b64decode(bad["entries"][0]["entry"]))
    raw[raw.index(b'"size":') + 7] ^= 1
    bad["entries"][0]["entry"] = base64.b64encode(bytes(raw)).decode()
    r = verify(c, bad, "--key", key)
    assert r.returncode == 1 and "proof_invalid" in r.stdout + r.stderr, r.stdout + r.stderr
    bad = copy.deepcopy(rc)
    bad["submitted_index"] = bad["files"][0]["ledger_index"]
    r = verify(c, bad, "--key", key)
    assert r.returncode == 1 and "submitted_mismatch" in r.stdout + r.stderr
    # Pinned to another key (the log's next one): the checkpoint is not signed by it.
    st, rot, _ = req(c, "POST", "/v1/admin/ledger/rotate-key", {"reason": "receipt test"},
                     c.admin)
    assert st == 201, rot
    r = verify(c, rc, "--key", rot["vkey"])
    assert r.returncode == 1 and "checkpoint_invalid" in r.stdout + r.stderr, r.stdout + r.stderr
    r = verify(c, rc, "--key", "not a key")
    assert r.returncode == 1 and "key_malformed" in r.stdout + r.stderr, r.stdout + r.stderr
    bad_proof = dict(proof, proof=[("0" * 64) for _ in proof["proof"]] or ["0" * 64])
    open(pp, "w").write(json.dumps(bad_proof))
    r = verify(c, rc, "--key", key, "--checkpoint", lp, "--consistency", pp)
    assert r.returncode == 1 and "consistency_" in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run([VERIFY, "receipt", "/nonexistent.json"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    open(pp, "w").write("not json")
    r = verify(c, {"dems_receipt": 7})
    assert r.returncode == 1 and "not a dems receipt" in r.stdout + r.stderr


def test_triage_accepts_into_the_case_and_rejects_with_a_reason(c):
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submissions", token=c.officer)
    assert st == 200, doc
    queue = {s["reference"]: s for s in doc["submissions"]}
    assert set(s["state"] for s in doc["submissions"]) == {"submitted"}, doc
    sub = queue[c.ref]
    assert [f["filename"] for f in sub["files"]][:2] == ["front door.mp4", "still.jpg"], sub
    assert sub["statement"]["contact_email"] == "shop@example.org" and sub["link"]["kind"] == \
        "request", sub
    assert all(f["exhibit"] is None for f in sub["files"]), sub
    # The case's officers see the material before it is an exhibit; others do not.
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.clip_sha}", token=c.officer)
    assert st == 200, doc
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.clip_sha}", token=c.other)
    assert st == 404, doc
    for who, want in ((c.other, 404), (c.pros, 403)):
        st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submissions", token=who)
        assert st == want, doc
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submissions?state=bogus", token=c.officer)
    assert st == 400 and doc["code"] == "invalid_parameter", doc
    # An open submission is not for triage yet.
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submissions?state=open", token=c.officer)
    open_id = doc["submissions"][0]["id"]
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{open_id}/accept", {},
                     c.officer)
    assert st == 409 and doc["code"] == "submission_not_pending", doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{sub['id']}/accept",
                     {"reference_prefix": "bad prefix!"}, c.officer)
    assert st == 400, doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{sub['id']}/accept",
                     {"reference_prefix": "SHOP", "description": "High St CCTV"}, c.officer)
    assert st == 200 and doc["state"] == "accepted" and doc["decided_by"] == "pofficer", doc
    assert [x["reference"] for x in doc["exhibits_added"]] == ["SHOP/1", "SHOP/2", "SHOP/3",
                                                               "SHOP/4"], doc
    assert all(f["exhibit"] for f in doc["files"]), doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{sub['id']}/accept", {},
                     c.officer)
    assert st == 409 and doc["code"] == "submission_not_pending", doc
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/exhibits", token=c.officer)
    refs = {x["reference"] for x in doc["exhibits"]}
    assert {"SHOP/1", "SHOP/2", "SHOP/3", "SHOP/4"} <= refs, doc
    ents = [e["body"] for e in ledger_entries(c.srv, c.admin)]
    added = [e for e in ents if e["type"] == "EXHIBIT_ADDED" and e["payload"].get("submission")]
    assert len(added) == 4 and added[0]["artefact"] == c.clip_sha, added
    acc = [e for e in ents if e["type"] == "SUBMISSION_ACCEPTED"]
    assert len(acc) == 1 and acc[0]["case"] == "PT/1" and acc[0]["payload"]["reference"] == \
        c.ref, acc
    # Reject another, with a reason (required). One of its files was also
    # uploaded by an officer: disposal must leave that one alone.
    other = start(c, c.appeal["token"])["submission_token"]
    mine = video(1500)
    st, doc, r, _ = send(c, other, mine)
    assert st == 204, (st, doc)
    c.disposable = r.getheader("Evidence-Id")
    shared = video(1600)
    st, doc, r, _ = send(c, c.officer, shared)
    assert st == 204, (st, doc)
    st, doc, r, _ = send(c, other, shared)
    assert st == 204, (st, doc)
    c.kept = r.getheader("Evidence-Id")
    # And a ZIP export: what is extracted from it goes with it.
    buf = io.BytesIO()
    member = video(2500)
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("export/cam1.mp4", member)
    st, doc, r, _ = send(c, other, buf.getvalue(), "export.zip")
    assert st == 204, (st, doc)
    c.archive = r.getheader("Evidence-Id")
    c.member = hashlib.sha256(member).hexdigest()

    def unpacked():
        st, doc, _ = req(c, "GET", f"/v1/evidence/{c.archive}", token=c.admin)
        return (doc.get("archive") or {}).get("state") == "done"
    assert eventually(unpacked, timeout=120), c.srv.tail()
    st, doc, _ = req(c, "POST", "/v1/portal/submission/finish", {}, other)
    assert st == 200, doc
    rid = c.srv.psql("SELECT id FROM submissions WHERE state = 'submitted'")[1].strip()
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{rid}/reject", {}, c.officer)
    assert st == 400, doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{rid}/reject",
                     {"reason": "not the incident"}, c.officer)
    assert st == 200 and doc["state"] == "rejected" and doc["reason"] == "not the incident", doc
    assert doc["dispose_after"], doc
    rej = [e["body"] for e in ledger_entries(c.srv, c.admin)
           if e["body"]["type"] == "SUBMISSION_REJECTED"]
    assert len(rej) == 1 and rej[0]["payload"]["reason"] == "not the incident", rej
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/999999/reject",
                     {"reason": "x"}, c.officer)
    assert st == 404 and doc["code"] == "submission_not_found", doc
    c.rejected = rid
    c.rejected_token = other


def test_rejected_material_is_disposed_of_after_its_retention(c):
    # Kept until dispose_after: nothing happens while it is ahead.
    time.sleep(2)
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.disposable}", token=c.admin)
    assert st == 200 and doc["disposed_at"] is None, doc
    blob = os.path.join(c.srv.data, "blobs", c.disposable[:2], c.disposable)
    assert os.path.exists(blob)
    c.srv.psql(f"UPDATE submissions SET dispose_after = now() WHERE id = {c.rejected}")

    def disposed():
        return c.srv.psql(f"SELECT state FROM submissions WHERE id = {c.rejected}")[1] == \
            "disposed"
    assert eventually(disposed, timeout=30), c.srv.tail()
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.disposable}", token=c.admin)
    assert st == 200 and doc["disposed_at"], doc
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.disposable}/content", token=c.admin)
    assert st == 410 and doc["code"] == "evidence_disposed", doc
    assert not os.path.exists(blob)
    # The file an officer also uploaded is untouched, bytes and all.
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.kept}", token=c.officer)
    assert st == 200 and doc["disposed_at"] is None, doc
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{c.kept}/content", token=c.officer)
    assert st == 200 and hashlib.sha256(body).hexdigest() == c.kept
    ents = [e["body"] for e in ledger_entries(c.srv, c.admin) if e["body"]["type"] == "DISPOSED"]
    assert {e["artefact"] for e in ents} == {c.disposable, c.archive, c.member}, ents
    for gone in (c.archive, c.member):
        st, doc, _ = req(c, "GET", f"/v1/evidence/{gone}/content", token=c.admin)
        assert st == 410 and doc["code"] == "evidence_disposed", doc
        assert not os.path.exists(os.path.join(c.srv.data, "blobs", gone[:2], gone))
    assert all(e["actor"] == {"kind": "system", "id": "retention"} and e["case"] == "PT/1"
               for e in ents), ents
    # The case's officers no longer see it; its submitter's token opens nothing.
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.disposable}", token=c.officer)
    assert st == 404, doc
    st, doc, _ = req(c, "GET", "/v1/portal/submission", token=c.rejected_token)
    assert st == 401, doc


def test_revoked_link_ends_uploads_in_flight(c):
    st, doc, _ = new_link(c, kind="appeal", title="to revoke")
    assert st == 201
    link = doc
    sub = start(c, link["token"])["submission_token"]
    st, doc, loc = create(c, sub, 4000)
    assert st == 201
    st, _, _ = patch(c, sub, loc, 0, video(4000)[:2000])
    assert st == 204
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submission-links/{link['id']}/revoke",
                     {"reason": "enough footage"}, c.officer)
    assert st == 200 and doc["state"] == "revoked" and doc["revoked_by"] == "pofficer", doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submission-links/{link['id']}/revoke",
                     {}, c.officer)
    assert st == 409 and doc["code"] == "link_revoked", doc
    st, doc, _ = patch(c, sub, loc, 2000, video(4000)[2000:])
    assert st == 410 and doc["code"] == "link_ended", doc
    st, doc, _ = create(c, sub, 10)
    assert st == 410 and doc["code"] == "link_ended", doc
    st, doc, _ = req(c, "POST", "/v1/portal/open", {"token": link["token"]})
    assert st == 410 and doc["code"] == "link_ended", doc
    # The submission stays readable by its submitter.
    st, doc, _ = req(c, "GET", "/v1/portal/submission", token=sub)
    assert st == 200 and doc["link_ended"] is True, doc
    st, doc, _ = req(c, "POST", "/v1/cases/999999/submission-links/1/revoke", {}, c.officer)
    assert st == 404
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submission-links/99999/revoke", {},
                     c.officer)
    assert st == 404 and doc["code"] == "link_not_found", doc
    # Expired: the same 410.
    c.srv.psql(f"UPDATE submission_links SET expires_at = now() WHERE id = {c.appeal['id']}")
    st, doc, _ = req(c, "POST", "/v1/portal/open", {"token": c.appeal["token"]})
    assert st == 410 and doc["code"] == "link_ended", doc
    c.srv.psql(f"UPDATE submission_links SET expires_at = now() + interval '1 day'"
               f" WHERE id = {c.appeal['id']}")


def test_a_link_starts_submissions_at_a_bounded_rate(c):
    st, doc, _ = new_link(c, kind="appeal", title="rate")
    tok = doc["token"]
    codes = [req(c, "POST", "/v1/portal/submissions", statement(tok))[0] for _ in range(12)]
    assert codes.count(201) >= 8 and 429 in codes, codes
    st, doc, r = req(c, "POST", "/v1/portal/submissions", statement(tok))
    assert st == 429 and doc["code"] == "too_many_requests" and r.getheader("Retry-After"), doc
    assert "link" in doc["detail"], doc
    log = "".join(open(p, errors="replace").read() for p in c.srv.log_paths())
    assert '"refusal":"type_not_allowed"' in log and '"refusal":"link_used"' in log


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
