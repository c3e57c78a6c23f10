# SPDX-License-Identifier: Apache-2.0
"""Disclosure links for the defence (docs/api.md, "Disclosure to the
defence"), end to end over HTTPS against a real demsd, PostgreSQL, worker
and FFmpeg: a case with a video exhibit (with a preview made by the worker)
and an opaque one, shared with a prosecutor who may download; the
prosecutor issues a link to chosen exhibits (with and without a passcode);
the holder opens it (token in the body, never the URL), gets the
dems_disclosure cookie, reads the exhibit list with hashes, views a poster
and downloads the link's court bundle, which `dems-verify bundle` accepts;
every step is a ledger entry by the actor {"kind": "link"}; wrong passcodes
count and lock the link; revoked and expired links answer 410 link_ended
(ledgered); who may issue, list and revoke; bad input; and the holder's
cookie opens nothing but /v1/disclosure."""
import base64
import hashlib
import json
import os
import subprocess
import time
import zipfile

from harness import Server, ledger_entries, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY", "build/plain/server/verify/dems-verify")
SETTINGS = {"job_poll_interval": 1, "job_backoff_base": 1, "job_backoff_max": 2,
            "job_max_attempts": 2, "refusal_max_per_principal": 1000000,
            "refusal_max_per_address": 1000000, "public_rate_per_minute": 12,
            "public_rate_burst": 40}


class Ctx:
    pass


def iso_in(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def upload(c, token, data, name):
    meta = "filename " + base64.b64encode(name.encode()).decode()
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Content-Type": "application/offset+octet-stream",
                "Upload-Metadata": meta}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def make_user(c, name, role):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": "correct horse", "role": role},
                               token=c.admin)
    assert st == 201, doc
    return c.srv.login(name, "correct horse")[1]["token"]


def req(c, method, path, body=None, token=None, headers=None):
    st, doc, r = c.srv.request(method, path, body, token=token, headers=headers)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc, r


def wait(c, what, token, path, key, states, timeout=240, headers=None):
    deadline = time.time() + timeout
    while True:
        st, doc, _ = req(c, "GET", path, token=token, headers=headers)
        assert st == 200, (st, doc)
        if doc.get(key) in states:
            return doc
        assert time.time() < deadline, f"{what} not done: {doc} {c.srv.tail()}"
        time.sleep(0.3)


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.lead = make_user(c, "dlead", "officer")
    c.viewer = make_user(c, "dviewer", "officer")
    c.pros = make_user(c, "dpros", "prosecutor")
    c.pros_view = make_user(c, "dprosview", "prosecutor")
    c.pros2 = make_user(c, "dpros2", "prosecutor")
    clip = os.path.join(c.srv.root, "clip.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=25", "-t", "2", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", clip], check=True, timeout=120)
    c.video = upload(c, c.lead, open(clip, "rb").read(), "door cam.mp4")
    c.blob = upload(c, c.lead, os.urandom(50_000), "statement.pdf")
    c.other = upload(c, c.lead, os.urandom(20_000), "unshared.bin")
    wait(c, "preview", c.lead, f"/v1/evidence/{c.video}", "preview_job", ("done",))
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "DC/1", "title": "R v Doe"}, c.lead)
    assert st == 201, doc
    c.case = doc["id"]
    c.ex = {}
    for ev, ref in ((c.video, "JD/1"), (c.blob, "JD/2"), (c.other, "JD/3")):
        st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/exhibits",
                         {"evidence": ev, "reference": ref, "description": f"exhibit {ref}"},
                         c.lead)
        assert st == 201, doc
        c.ex[ref] = doc["id"]
    st, doc, _ = req(c, "PUT", f"/v1/cases/{c.case}/members/dviewer", {"role": "viewer"}, c.lead)
    assert st in (200, 201), doc
    for who, dl in (("dpros", True), ("dprosview", False)):
        st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/shares",
                         {"prosecutor": who, "expires_at": iso_in(86400), "can_download": dl,
                          "exhibits": ["JD/1", "JD/2"]}, c.lead)
        assert st == 201, doc
    return c


def teardown(c):
    assert c.srv.stop() == 0


def issue(c, body, token=None):
    return req(c, "POST", f"/v1/cases/{c.case}/disclosures", body, token or c.pros)


def open_link(c, token, passcode=None):
    body = {"token": token}
    if passcode is not None:
        body["passcode"] = passcode
    st, doc, r = req(c, "POST", "/v1/disclosure/open", body)
    cookie = None
    sc = r.getheader("Set-Cookie")
    if sc:
        assert "HttpOnly" in sc and "Secure" in sc and "SameSite=Strict" in sc, sc
        assert "Path=/v1/disclosure;" in sc, sc  # also covers GET /v1/disclosure
        cookie = {"Cookie": sc.split(";")[0]}
    return st, doc, cookie


def entries(c):
    return [e["body"] for e in ledger_entries(c.srv, c.admin)]


def by_link(c, link, type_=None, count=None):
    """The entries by the holder of link (of type_); refusals are appended
    without waiting, so wait (bounded) until count of them are there."""
    deadline = time.time() + 10
    while True:
        got = [e for e in entries(c) if e["actor"] == {"kind": "link", "id": f"disclosure/{link}"}
               and type_ in (None, e["type"])]
        if count is None or len(got) >= count or time.time() > deadline:
            return got
        time.sleep(0.2)


def test_issue_open_view_and_bundle(c):
    st, doc, _ = issue(c, {"exhibits": ["JD/1", c.ex["JD/2"]], "expires_at": iso_in(7 * 86400),
                           "label": "Smith & Co, defence"})
    assert st == 201, doc
    link, token = doc["id"], doc["token"]
    assert doc["path"] == f"/disclosure/#{token}" and doc["state"] == "live", doc
    assert doc["exhibits"] == ["JD/1", "JD/2"] and doc["passcode_required"] is False, doc
    assert "passcode" not in doc and doc["bundle"], doc
    # Only the hash of the token is stored.
    st, out, _ = c.srv.psql(f"SELECT token_sha256 FROM disclosures WHERE id = {link}")
    assert st == 0 and token not in out and len(out.strip()) == 64, out
    made = [e for e in entries(c) if e["type"] == "DISCLOSED"]
    assert made and made[-1]["payload"]["disclosure"] == link, made
    assert made[-1]["case"] == "DC/1" and made[-1]["actor"] == {"kind": "user", "id": "dpros"}
    assert made[-1]["payload"]["exhibits"] == ["JD/1", "JD/2"], made[-1]
    assert token not in json.dumps(made[-1])

    # The holder opens it: a cookie, no token in any URL.
    st, doc, ck = open_link(c, token)
    assert st == 200 and ck, doc
    assert doc["disclosure"] == link and doc["case_reference"] == "DC/1", doc
    st, doc, _ = req(c, "GET", "/v1/disclosure", headers=ck)
    assert st == 200, doc
    assert doc["case_title"] == "R v Doe" and doc["label"] == "Smith & Co, defence", doc
    got = {x["reference"]: x for x in doc["exhibits"]}
    assert sorted(got) == ["JD/1", "JD/2"], doc  # JD/3 never shared, never disclosed
    assert got["JD/1"]["sha256"] == c.video and got["JD/2"]["sha256"] == c.blob
    assert got["JD/1"]["filename"] == "door cam.mp4" and "poster" in got["JD/1"]["previews"]
    assert got["JD/2"]["size"] == 50_000 and got["JD/1"]["ingested_seq"] is not None

    # A poster, once ledgered per kind; a range of the proxy video.
    st, body, r = req(c, "GET", f"/v1/disclosure/exhibits/{got['JD/1']['id']}/poster",
                      headers=ck)
    assert st == 200 and body[:3] == b"\xff\xd8\xff", (st, body[:50])
    st, body, _ = req(c, "GET", f"/v1/disclosure/exhibits/{got['JD/1']['id']}/poster",
                      headers=ck)
    assert st == 200
    st, body, _ = req(c, "GET", f"/v1/disclosure/exhibits/{got['JD/1']['id']}/preview",
                      headers=dict(ck, Range="bytes=0-99"))
    assert st == 206 and len(body) == 100, st
    # An exhibit of the case that is not in the link: nothing.
    st, doc, _ = req(c, "GET", f"/v1/disclosure/exhibits/{c.ex['JD/3']}/poster", headers=ck)
    assert st == 404, doc

    # The bundle: made by the worker, downloaded, verified offline.
    doc = wait(c, "bundle", None, "/v1/disclosure/bundle", "state", ("done", "failed"),
               headers=ck)
    assert doc["state"] == "done", doc
    st, zipdata, r = c.srv.request("GET", "/v1/disclosure/bundle/content", headers=ck)
    assert st == 200 and len(zipdata) == doc["size"], st
    assert hashlib.sha256(zipdata).hexdigest() == doc["sha256"]
    path = os.path.join(c.srv.root, "disclosed.zip")
    with open(path, "wb") as f:
        f.write(zipdata)
    v = subprocess.run([VERIFY, "bundle", path], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        custody = [json.loads(x) for x in z.read("custody.jsonl").decode().splitlines()]
    assert "manifest.json" in names and len([n for n in names if "statement.pdf" in n]) == 1, names
    # The custody holds the case's own entries (no artefact: found by the case index)
    # as well as the exhibits'.
    bodies = [e["entry"] if isinstance(e["entry"], dict)
              else json.loads(base64.b64decode(e["entry"])) for e in custody]
    types = {(b["type"], b.get("case"), "artefact" in b) for b in bodies}
    assert ("CASE_CREATED", "DC/1", False) in types and ("DISCLOSED", "DC/1", False) in types, types
    assert ("INGESTED", None, True) in types, types

    # Each step is on the record, by the link.
    kinds = [(e["type"], e["payload"].get("preview")) for e in by_link(c, link)]
    assert kinds == [("DISCLOSURE_OPENED", None), ("DISCLOSURE_VIEWED", None),
                     ("VIEWED", "poster"), ("VIEWED", "proxy"), ("DOWNLOADED", None)], kinds
    viewed = [e for e in by_link(c, link) if e["type"] == "VIEWED"]
    assert viewed[0]["case"] == "DC/1" and viewed[0]["artefact"] == c.video, viewed[0]
    c.link, c.token, c.cookie = link, token, ck


def test_holder_cookie_opens_nothing_else(c):
    ck = c.cookie
    for path in ("/v1/me", "/v1/evidence", f"/v1/evidence/{c.video}", f"/v1/cases/{c.case}",
                 f"/v1/cases/{c.case}/disclosures", "/v1/ledger/entries"):
        st, doc, _ = req(c, "GET", path, headers=ck)
        assert st in (401, 403), (path, st, doc)
    # State changes are never made by a cookie.
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/disclosures/{c.link}/revoke", {},
                     headers=ck)
    assert st == 401, doc
    # A forged or unknown session cookie is 401.
    st, doc, _ = req(c, "GET", "/v1/disclosure", headers={"Cookie": "dems_disclosure=dems_ds_x"})
    assert st == 401, doc
    st, doc, _ = req(c, "GET", "/v1/disclosure")
    assert st == 401, doc


def test_passcode_counts_and_locks(c):
    st, doc, _ = issue(c, {"exhibits": ["JD/2"], "expires_at": iso_in(3600), "passcode": True})
    assert st == 201 and doc["passcode_required"] is True, doc
    code, token, link = doc["passcode"], doc["token"], doc["id"]
    assert len(code) == 10 and code.isdigit(), code
    st, out, _ = c.srv.psql(f"SELECT passcode_hash FROM disclosures WHERE id = {link}")
    assert out.startswith("$argon2id$") and code not in out, out
    st, doc, ck = open_link(c, token)
    assert st == 401 and doc["code"] == "passcode_required" and ck is None, doc
    wrong = "0000000000" if code != "0000000000" else "1111111111"
    st, doc, ck = open_link(c, token, wrong)
    assert st == 401 and doc["code"] == "passcode_wrong" and ck is None, doc
    assert "4 attempts" in doc["detail"], doc
    st, doc, ck = open_link(c, token, code)
    assert st == 200 and ck, doc
    denied = by_link(c, link, "ACCESS_DENIED", 1)
    assert len(denied) == 1 and "passcode" in denied[0]["payload"]["reason"], denied
    for _ in range(4):
        st, doc, _ = open_link(c, token, wrong)
    assert st == 410 and doc["code"] == "link_ended" and "locked" in doc["detail"], doc
    # Locked for good: the right passcode no longer opens it, nor does the session.
    st, doc, _ = open_link(c, token, code)
    assert st == 410 and doc["code"] == "link_ended", doc
    st, doc, _ = req(c, "GET", "/v1/disclosure", headers=ck)
    assert st == 410 and doc["code"] == "link_ended", doc
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/disclosures", token=c.pros)
    states = {d["id"]: d["state"] for d in doc["disclosures"]}
    assert states[link] == "locked", states


def test_revoked_and_expired_links_end(c):
    st, doc, _ = issue(c, {"exhibits": ["JD/1"], "expires_at": iso_in(3600)})
    link, token = doc["id"], doc["token"]
    st, doc, ck = open_link(c, token)
    assert st == 200
    # Another prosecutor cannot revoke it; a case viewer cannot either.
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/disclosures/{link}/revoke", {},
                     token=c.viewer)
    assert st == 403, doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/disclosures/{link}/revoke",
                     {"reason": "sent to the wrong firm"}, token=c.pros)
    assert st == 200 and doc["state"] == "revoked" and doc["revoked_by"] == "dpros", doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/disclosures/{link}/revoke", {},
                     token=c.lead)
    assert st == 409 and doc["code"] == "disclosure_revoked", doc
    for path in ("/v1/disclosure", "/v1/disclosure/bundle", "/v1/disclosure/bundle/content",
                 f"/v1/disclosure/exhibits/{c.ex['JD/1']}/poster"):
        st, doc, _ = req(c, "GET", path, headers=ck)
        assert st == 410 and doc["code"] == "link_ended" and "revoked" in doc["detail"], (path,
                                                                                          doc)
    st, doc, _ = open_link(c, token)
    assert st == 410 and doc["code"] == "link_ended", doc
    ended = by_link(c, link, "ACCESS_DENIED", 5)
    assert len(ended) == 5 and all("ended" in e["payload"]["reason"] for e in ended), ended
    rev = [e for e in entries(c) if e["type"] == "DISCLOSURE_REVOKED"]
    assert rev[-1]["payload"]["disclosure"] == link and rev[-1]["case"] == "DC/1", rev
    assert rev[-1]["payload"]["reason"] == "sent to the wrong firm"

    # Expiry: a link that lapses ends the same way.
    st, out, _ = c.srv.psql("SELECT 1")
    st, doc, _ = issue(c, {"exhibits": ["JD/1"], "expires_at": iso_in(3)})
    assert st == 201, doc
    token2 = doc["token"]
    st, doc, ck2 = open_link(c, token2)
    assert st == 200
    time.sleep(4)
    st, doc, _ = req(c, "GET", "/v1/disclosure", headers=ck2)
    assert st in (401, 410), doc  # the session lasts no longer than its link
    st, doc, _ = open_link(c, token2)
    assert st == 410 and "expired" in doc["detail"], doc


def test_who_may_issue_and_list(c):
    body = {"exhibits": ["JD/1"], "expires_at": iso_in(3600)}
    # A view-only share may not disclose; officers, even the lead, do not issue links.
    st, doc, _ = issue(c, body, c.pros_view)
    assert st == 403 and doc["code"] == "forbidden", doc
    st, doc, _ = issue(c, body, c.lead)
    assert st == 403, doc
    st, doc, _ = issue(c, body, c.admin)
    assert st == 403, doc
    # A prosecutor with no share sees no case.
    st, doc, _ = issue(c, body, c.pros2)
    assert st == 404 and doc["code"] == "case_not_found", doc
    # Lists: the issuing prosecutor their own; the lead and admin all; no tokens in lists.
    st, mine, _ = req(c, "GET", f"/v1/cases/{c.case}/disclosures", token=c.pros)
    assert st == 200 and mine["disclosures"], mine
    st, all_, _ = req(c, "GET", f"/v1/cases/{c.case}/disclosures?limit=1", token=c.lead)
    assert st == 200 and len(all_["disclosures"]) == 1 and all_["next_cursor"], all_
    assert "token" not in json.dumps(mine) and "passcode\"" not in json.dumps(mine)
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/disclosures", token=c.pros_view)
    assert st == 200 and doc["disclosures"] == [], doc
    # The lead may revoke any link of the case.
    first = mine["disclosures"][0]["id"]
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/disclosures/{first}/revoke", {},
                     token=c.lead)
    assert st in (200, 409), doc


def test_bad_input_changes_nothing(c):
    st, before, _ = c.srv.psql("SELECT count(*) FROM disclosures")
    for body, code in (({"expires_at": iso_in(60), "exhibits": []}, "empty_selection"),
                       ({"expires_at": iso_in(60), "exhibits": ["JD/3"]}, "exhibit_not_in_case"),
                       ({"expires_at": iso_in(60), "exhibits": ["NOPE"]}, "exhibit_not_in_case"),
                       ({"expires_at": iso_in(60), "exhibits": [{}]}, "invalid_field"),
                       ({"expires_at": "2001-01-01T00:00:00Z"}, "expiry_in_past"),
                       ({"expires_at": iso_in(400 * 86400)}, "expiry_too_far"),
                       ({"expires_at": "tomorrow"}, "invalid_field"),
                       ({}, "invalid_field"),
                       ({"expires_at": iso_in(60), "passcode": "yes"}, "invalid_field"),
                       ({"expires_at": iso_in(60), "label": "x" * 201}, "invalid_field")):
        st, doc, _ = issue(c, body)
        assert st == 400 and doc["code"] == code, (body, doc)
    st, doc, _ = req(c, "POST", "/v1/cases/999999/disclosures",
                     {"expires_at": iso_in(60)}, c.pros)
    assert st == 404, doc
    for body in ({"token": "dems_dl_" + "A" * 43}, {"token": "x"}, {"token": "../../etc"},
                 {}, {"token": 5}, {"token": "dems_dl_" + "A" * 43, "passcode": 12}):
        st, doc, _ = req(c, "POST", "/v1/disclosure/open", body)
        assert st in (400, 404), (body, doc)
        assert doc["code"] in ("invalid_field", "link_not_found"), doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/disclosures/999999/revoke", {}, c.lead)
    assert st == 404 and doc["code"] == "disclosure_not_found", doc
    st, after, _ = c.srv.psql("SELECT count(*) FROM disclosures")
    assert before == after, (before, after)
    assert c.srv.request("GET", "/healthz")[0] == 200


def test_opening_is_rate_limited_per_address(c):
    # Last: it empties this address's bucket. 40 at once, then one per 5 s;
    # the bucket starts full (the tests above took from it).
    assert c.srv.psql("DELETE FROM rate_buckets")[0] == 0
    statuses, retry = [], None
    for _ in range(60):
        st, doc, r = c.srv.request("POST", "/v1/disclosure/open", {"token": "dems_dl_" + "B" * 43})
        statuses.append(st)
        if st == 429:
            assert doc["code"] == "too_many_requests" and "seconds" in doc["detail"], doc
            retry = int(r.getheader("Retry-After"))
    assert statuses[0] == 404 and 429 in statuses, statuses
    granted = statuses.count(404)
    assert 40 <= granted <= 42, statuses  # the burst, plus the refill while we asked
    assert 1 <= retry <= 5, retry
    # A real token is held back the same way (nothing leaks by timing the limit)...
    st, doc, r = c.srv.request("POST", "/v1/disclosure/open", {"token": c.token})
    assert st == 429, doc
    retry = int(r.getheader("Retry-After"))
    # The bucket lives in PostgreSQL, where every demsd node would find it.
    st, out, _ = c.srv.psql("SELECT key, granted FROM rate_buckets"
                            " WHERE key = 'disclosure-open:127.0.0.1'")
    assert st == 0 and out.strip() == "disclosure-open:127.0.0.1|f", out
    # ... and after Retry-After the address may ask again.
    time.sleep(retry + 0.2)
    st, doc, _ = c.srv.request("POST", "/v1/disclosure/open", {"token": "dems_dl_" + "B" * 43})
    assert st == 404 and doc["code"] == "link_not_found", doc
    assert c.srv.request("GET", "/healthz")[0] == 200


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
