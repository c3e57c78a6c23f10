# SPDX-License-Identifier: Apache-2.0
"""Cases, exhibits, members and shares with prosecutors, against a real
demsd and PostgreSQL over TLS.

An officer sees evidence they (or their docks) uploaded and the exhibits of
the cases they are a member of; a prosecutor sees only what a live share
gives them, views or downloads as the share says, and after revocation or
expiry is refused 403 share_ended on every route, each refusal ledgered.
Every change is a ledger entry naming the case (its reference), the
artefact where there is one, and the actor. The relation matrix at the end
calls every case route as every relation to the case."""
import base64
import os
import time

from harness import Server, ledger_entries, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
LATER = "2099-01-01T00:00:00Z"


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


def setup():
    c = Ctx()
    c.srv = Server({"workers": 0, "refusal_max_per_principal": 1000000,
                    "refusal_max_per_address": 1000000,
                    "case_reference_pattern": "^[0-9]{2}/[0-9]{6}/[0-9]{2}$"}).start()
    c.admin = c.srv.admin_token()
    c.lead = make_user(c, "clead", "officer")
    c.inv = make_user(c, "cinvest", "officer")
    c.viewer = make_user(c, "cviewer", "officer")
    c.outsider = make_user(c, "coutsider", "officer")
    c.pros = make_user(c, "cpros", "prosecutor")
    c.pros2 = make_user(c, "cpros2", "prosecutor")
    c.ev1 = upload(c, c.lead, os.urandom(3000), "front door.mp4")
    c.ev2 = upload(c, c.lead, os.urandom(4000), "garage.jpg")
    c.ev_out = upload(c, c.outsider, os.urandom(1000), "outsider.mp4")
    return c


def teardown(c):
    assert c.srv.stop() == 0


def req(c, method, path, body=None, token=None):
    st, doc, _ = c.srv.request(method, path, body, token=token)
    if st >= 400:
        assert doc["status"] == st and doc["code"], doc
    return st, doc


def new_case(c, ref, token=None, **kw):
    st, doc = req(c, "POST", "/v1/cases", dict({"reference": ref, "title": "Burglary"}, **kw),
                  token or c.lead)
    assert st == 201, doc
    return doc


def test_create_and_read_case(c):
    st, doc = req(c, "POST", "/v1/cases", {"reference": "not a ref", "title": "x"}, c.lead)
    assert st == 400 and doc["code"] == "invalid_reference", doc
    case = new_case(c, "01/000001/26", offence="Burglary dwelling")
    assert case["reference"] == "01/000001/26" and case["status"] == "open"
    assert case["my_role"] == "lead" and case["members"] == 1 and case["exhibits"] == 0
    assert case["created_by"] == "clead" and case["offence"] == "Burglary dwelling"
    st, doc = req(c, "POST", "/v1/cases", {"reference": "01/000001/26", "title": "again"}, c.inv)
    assert st == 409 and doc["code"] == "reference_taken", doc
    st, doc = req(c, "POST", "/v1/cases", {"reference": "01/000002/26", "title": "x",
                                           "officer_in_case": "cpros"}, c.lead)
    assert st == 400, doc  # only an officer can be the officer in the case
    # Seen by its lead and admins; hidden (404, as unknown) from others.
    assert req(c, "GET", f"/v1/cases/{case['id']}", token=c.lead)[0] == 200
    st, doc = req(c, "GET", f"/v1/cases/{case['id']}", token=c.admin)
    assert st == 200 and doc["my_role"] == "admin"
    for tok in (c.outsider, c.pros):
        st, doc = req(c, "GET", f"/v1/cases/{case['id']}", token=tok)
        assert st == 404 and doc["code"] == "case_not_found", doc
    assert req(c, "GET", "/v1/cases/999999", token=c.lead)[1]["code"] == "case_not_found"
    # The entry names the case and the actor.
    e = [x for x in ledger_entries(c.srv, c.admin) if x["body"]["type"] == "CASE_CREATED"][-1]["body"]
    assert e["case"] == "01/000001/26" and e["actor"]["id"] == "clead", e
    assert e["payload"]["title"] == "Burglary"


def test_edit_close_reopen(c):
    case = new_case(c, "01/000010/26")
    cid = case["id"]
    st, doc = req(c, "PATCH", f"/v1/cases/{cid}", {"title": "Aggravated burglary",
                                                   "officer_in_case": "cinvest"}, c.lead)
    assert st == 200 and doc["title"] == "Aggravated burglary", doc
    assert doc["officer_in_case"] == "cinvest"
    st, doc = req(c, "PATCH", f"/v1/cases/{cid}", {}, c.lead)
    assert st == 400, doc
    st, doc = req(c, "POST", f"/v1/cases/{cid}/close", {"reason": "NFA"}, c.lead)
    assert st == 200 and doc["status"] == "closed" and doc["closed_at"], doc
    st, doc = req(c, "POST", f"/v1/cases/{cid}/close", {}, c.lead)
    assert st == 409 and doc["code"] == "case_closed", doc
    st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                  {"evidence": c.ev1, "reference": "JS/1"}, c.lead)
    assert st == 409 and doc["code"] == "case_closed", doc
    st, doc = req(c, "POST", f"/v1/cases/{cid}/reopen", {}, c.lead)
    assert st == 200 and doc["status"] == "open" and doc["closed_at"] is None, doc
    types = [(x["body"]["type"], x["body"]["payload"].get("status")) for x in
             ledger_entries(c.srv, c.admin) if x["body"].get("case") == "01/000010/26"]
    assert types == [("CASE_CREATED", None), ("CASE_UPDATED", None), ("CASE_UPDATED", "closed"),
                     ("CASE_UPDATED", "open")], types


def test_members_and_exhibits(c):
    case = new_case(c, "01/000020/26")
    cid = case["id"]
    # The outsider cannot see the lead's evidence; neither can the investigator yet.
    assert req(c, "GET", f"/v1/evidence/{c.ev1}", token=c.inv)[0] == 404
    for name, role in (("cinvest", "investigator"), ("cviewer", "viewer")):
        st, doc = req(c, "PUT", f"/v1/cases/{cid}/members/{name}", {"role": role}, c.lead)
        assert st == 200 and doc["role"] == role, doc
    st, doc = req(c, "PUT", f"/v1/cases/{cid}/members/cpros", {"role": "viewer"}, c.lead)
    assert st == 400 and doc["code"] == "not_an_officer", doc
    st, doc = req(c, "PUT", f"/v1/cases/{cid}/members/cviewer", {"role": "lead"}, c.inv)
    assert st == 403 and doc["code"] == "forbidden", doc
    st, doc = req(c, "DELETE", f"/v1/cases/{cid}/members/clead", None, c.lead)
    assert st == 409 and doc["code"] == "last_lead", doc
    # Exhibits: the lead adds evidence they see.
    st, x1 = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                 {"evidence": c.ev1, "reference": "JS/1", "description": "front door camera",
                  "tags": ["doorbell", "night"]}, c.lead)
    assert st == 201 and x1["reference"] == "JS/1" and x1["evidence"]["id"] == c.ev1, x1
    assert x1["tags"] == ["doorbell", "night"] and x1["evidence"]["filename"] == "front door.mp4"
    st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                  {"evidence": c.ev2, "reference": "js/1"}, c.lead)
    assert st == 409 and doc["code"] == "exhibit_reference_taken", doc
    st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                  {"evidence": c.ev1, "reference": "JS/9"}, c.lead)
    assert st == 409 and doc["code"] == "already_exhibit", doc
    # Evidence the caller cannot see is refused as unknown.
    st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                  {"evidence": c.ev_out, "reference": "JS/2"}, c.lead)
    assert st == 404 and doc["code"] == "evidence_not_found", doc
    st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                  {"evidence": c.ev2, "reference": "JS/2"}, c.viewer)
    assert st == 403, doc
    st, x2 = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                 {"evidence": c.ev2, "reference": "JS/2", "tags": ["garage"]}, c.lead)
    assert st == 201, x2
    # Membership widens what members see.
    for tok in (c.inv, c.viewer):
        assert req(c, "GET", f"/v1/evidence/{c.ev1}", token=tok)[0] == 200
        assert c.srv.request("GET", f"/v1/evidence/{c.ev1}/content", token=tok)[0] == 200
    assert req(c, "GET", f"/v1/evidence/{c.ev1}", token=c.outsider)[0] == 404
    # Search and filter, paged.
    st, doc = req(c, "GET", f"/v1/cases/{cid}/exhibits?tag=night", token=c.viewer)
    assert st == 200 and [x["reference"] for x in doc["exhibits"]] == ["JS/1"], doc
    st, doc = req(c, "GET", f"/v1/cases/{cid}/exhibits?q=GARAGE", token=c.viewer)
    assert [x["reference"] for x in doc["exhibits"]] == ["JS/2"], doc
    st, doc = req(c, "GET", f"/v1/cases/{cid}/exhibits?limit=1", token=c.viewer)
    assert len(doc["exhibits"]) == 1 and doc["next_cursor"], doc
    st, doc2 = req(c, "GET", f"/v1/cases/{cid}/exhibits?limit=1&cursor={doc['next_cursor']}",
                   token=c.viewer)
    assert [x["reference"] for x in doc2["exhibits"]] == ["JS/2"] and doc2["next_cursor"] is None
    st, doc = req(c, "GET", "/v1/exhibits?uploader=clead&tag=garage", token=c.inv)
    assert [x["case_reference"] for x in doc["exhibits"]] == ["01/000020/26"], doc
    assert req(c, "GET", "/v1/exhibits?tag=garage", token=c.outsider)[1]["exhibits"] == []
    st, doc = req(c, "GET", "/v1/cases?tag=night", token=c.inv)
    assert st == 200, doc
    assert [x["reference"] for x in doc["cases"]] == ["01/000020/26"], doc
    st, doc = req(c, "GET", "/v1/cases?member=cviewer&q=burglary", token=c.admin)
    assert [x["reference"] for x in doc["cases"]] == ["01/000020/26"], doc
    assert req(c, "GET", "/v1/cases?status=bogus", token=c.admin)[1]["code"] == \
        "invalid_parameter"
    # Edit and remove an exhibit; removal hides it from the viewer again.
    st, doc = req(c, "PATCH", f"/v1/cases/{cid}/exhibits/{x2['id']}",
                  {"description": "side garage", "tags": []}, c.inv)
    assert st == 200 and doc["description"] == "side garage" and doc["tags"] == [], doc
    st, doc = req(c, "DELETE", f"/v1/cases/{cid}/exhibits/{x2['id']}", None, c.inv)
    assert st == 403, doc  # investigators add and edit; leads remove
    st, doc = req(c, "DELETE", f"/v1/cases/{cid}/exhibits/{x2['id']}", None, c.lead)
    assert st == 200 and doc["removed"] is True, doc
    assert req(c, "GET", f"/v1/evidence/{c.ev2}", token=c.viewer)[0] == 404
    st, doc = req(c, "DELETE", f"/v1/cases/{cid}/exhibits/{x2['id']}", None, c.lead)
    assert st == 404, doc
    # Removing a member takes their view away.
    st, doc = req(c, "DELETE", f"/v1/cases/{cid}/members/cviewer", None, c.lead)
    assert st == 200, doc
    assert req(c, "GET", f"/v1/evidence/{c.ev1}", token=c.viewer)[0] == 404
    assert req(c, "GET", f"/v1/cases/{cid}", token=c.viewer)[0] == 404
    st, doc = req(c, "GET", f"/v1/cases/{cid}/members", token=c.inv)
    assert sorted(m["username"] for m in doc["members"]) == ["cinvest", "clead"], doc
    # The ledger holds each change with case, artefact and actor.
    ents = [x["body"] for x in ledger_entries(c.srv, c.admin)
            if x["body"].get("case") == "01/000020/26"]
    kinds = [e["type"] for e in ents]
    assert kinds.count("MEMBER_ADDED") == 2 and kinds.count("MEMBER_REMOVED") == 1, kinds
    added = [e for e in ents if e["type"] == "EXHIBIT_ADDED"]
    assert [e["artefact"] for e in added] == [c.ev1, c.ev2], added
    assert added[0]["payload"]["exhibit"] == "JS/1" and added[0]["actor"]["id"] == "clead"
    removed = [e for e in ents if e["type"] == "EXHIBIT_REMOVED"]
    assert len(removed) == 1 and removed[0]["artefact"] == c.ev2
    c.case20 = cid


def test_shares_with_prosecutors(c):
    case = new_case(c, "01/000030/26")
    cid = case["id"]
    st, x1 = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                 {"evidence": c.ev1, "reference": "AB/1"}, c.lead)
    assert st == 201
    st, x2 = req(c, "POST", f"/v1/cases/{cid}/exhibits",
                 {"evidence": c.ev2, "reference": "AB/2"}, c.lead)
    assert st == 201
    base = f"/v1/cases/{cid}/shares"
    # Bad input: each a clear 4xx, nothing made.
    for body, code in (({"prosecutor": "cinvest", "expires_at": iso_in(3600)},
                        "not_a_prosecutor"),
                       ({"prosecutor": "cpros", "expires_at": "2001-01-01T00:00:00Z"},
                        "expiry_in_past"),
                       ({"prosecutor": "cpros", "expires_at": LATER}, "expiry_too_far"),
                       ({"prosecutor": "cpros", "expires_at": iso_in(3600), "exhibits": []},
                        "empty_selection"),
                       ({"prosecutor": "cpros", "expires_at": iso_in(3600),
                         "exhibits": ["ZZ/9"]}, "unknown_exhibit")):
        st, doc = req(c, "POST", base, body, c.lead)
        assert st == 400 and doc["code"] == code, (body, doc)
    assert req(c, "GET", base, token=c.lead)[1]["shares"] == []
    # View only, one exhibit.
    st, s1 = req(c, "POST", base, {"prosecutor": "cpros", "expires_at": iso_in(3600),
                                   "exhibits": ["ab/1"]}, c.lead)
    assert st == 201 and s1["state"] == "live" and s1["exhibits"] == ["AB/1"], s1
    assert s1["can_download"] is False and s1["whole_case"] is False
    st, doc = req(c, "GET", f"/v1/cases/{cid}", token=c.pros)
    assert st == 200 and doc["my_role"] == "prosecutor", doc
    st, doc = req(c, "GET", f"/v1/cases/{cid}/exhibits", token=c.pros)
    assert [x["reference"] for x in doc["exhibits"]] == ["AB/1"], doc
    assert req(c, "GET", f"/v1/evidence/{c.ev1}", token=c.pros)[0] == 200
    assert req(c, "GET", f"/v1/evidence/{c.ev2}", token=c.pros)[0] == 404
    st, doc = req(c, "GET", f"/v1/evidence/{c.ev1}/content", token=c.pros)
    assert st == 403 and doc["code"] == "download_not_shared", doc
    st, doc = req(c, "GET", "/v1/me/shares", token=c.pros)
    assert [s["id"] for s in doc["shares"]] == [s1["id"]], doc
    assert req(c, "GET", "/v1/me/shares", token=c.pros2)[1]["shares"] == []
    # A prosecutor reads but never changes a case.
    st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits", {"evidence": c.ev1, "reference": "P/1"},
                  c.pros)
    assert st == 403, doc
    assert req(c, "GET", f"/v1/cases/{cid}", token=c.pros2)[0] == 404
    # Download rights, whole case.
    st, s2 = req(c, "POST", base, {"prosecutor": "cpros2", "expires_at": iso_in(3600),
                                   "can_download": True}, c.lead)
    assert st == 201 and s2["whole_case"] is True and s2["exhibits"] is None, s2
    st, doc, r = c.srv.request("GET", f"/v1/evidence/{c.ev2}/content", token=c.pros2)
    assert st == 200 and len(doc) == 4000
    # Revoked: every route answers 403 share_ended, and the refusal is ledgered.
    n0 = len(ledger_entries(c.srv, c.admin))
    st, doc = req(c, "POST", f"{base}/{s2['id']}/revoke", {"reason": "charged elsewhere"}, c.lead)
    assert st == 200 and doc["state"] == "revoked" and doc["revoked_by"] == "clead", doc
    assert req(c, "POST", f"{base}/{s2['id']}/revoke", {}, c.lead)[1]["code"] == "share_revoked"
    for path in (f"/v1/cases/{cid}", f"/v1/cases/{cid}/exhibits", f"/v1/evidence/{c.ev2}",
                 f"/v1/evidence/{c.ev2}/content", f"/v1/evidence/{c.ev2}/poster"):
        st, doc = req(c, "GET", path, token=c.pros2)
        assert st == 403 and doc["code"] == "share_ended", (path, doc)
    # Refusals are appended without the answer waiting for them: allow them a moment.
    deadline = time.time() + 10
    while True:
        ents = ledger_entries(c.srv, c.admin, start=n0)
        denied = [e for e in ents if e["body"]["type"] == "ACCESS_DENIED" and
                  e["body"]["actor"]["id"] == "cpros2"]
        if len(denied) >= 5 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert len(denied) == 5, [e["body"] for e in ents]
    revoked = [e["body"] for e in ents if e["body"]["type"] == "SHARE_REVOKED"]
    assert revoked[0]["case"] == "01/000030/26" and revoked[0]["payload"]["prosecutor"] == "cpros2"
    shared = [e["body"] for e in ledger_entries(c.srv, c.admin)
              if e["body"]["type"] == "SHARED" and e["body"].get("case") == "01/000030/26"]
    assert [s["payload"]["prosecutor"] for s in shared] == ["cpros", "cpros2"], shared
    # Expiry: a share that has run out is refused like a revoked one.
    st, s3 = req(c, "POST", base, {"prosecutor": "cpros2", "expires_at": iso_in(2),
                                   "exhibits": ["AB/1"], "can_download": True}, c.lead)
    assert st == 201, s3
    assert req(c, "GET", f"/v1/evidence/{c.ev1}/content", token=c.pros2)[0] == 200
    time.sleep(3)
    st, doc = req(c, "GET", f"/v1/evidence/{c.ev1}/content", token=c.pros2)
    assert st == 403 and doc["code"] == "share_ended", doc
    st, doc = req(c, "GET", "/v1/me/shares", token=c.pros2)
    assert sorted(s["state"] for s in doc["shares"]) == ["expired", "revoked"], doc


def test_bad_input_changes_nothing(c):
    st, doc = req(c, "POST", "/v1/cases", {"reference": "01/000040/26"}, c.lead)
    assert st == 400 and doc["code"] == "invalid_field", doc
    st, doc = req(c, "POST", "/v1/cases", "{not json", c.lead)
    assert st == 400, doc
    case = new_case(c, "01/000040/26")
    cid = case["id"]
    for body in ({"evidence": "zz", "reference": "A/1"},
                 {"evidence": c.ev1, "reference": "bad ref!"},
                 {"evidence": c.ev1, "reference": "A/1", "tags": ["a", "a"]},
                 {"evidence": c.ev1, "reference": "A/1", "tags": ["x" * 65]},
                 {"evidence": c.ev1, "reference": "A/1", "tags": "night"}):
        st, doc = req(c, "POST", f"/v1/cases/{cid}/exhibits", body, c.lead)
        assert st == 400, (body, doc)
    st, doc = req(c, "GET", f"/v1/cases/{cid}/exhibits", token=c.lead)
    assert doc["exhibits"] == []
    assert req(c, "GET", f"/v1/cases/{cid}", token=c.lead)[1]["exhibits"] == 0
    st, doc = req(c, "PUT", f"/v1/cases/{cid}/members/nobody", {"role": "boss"}, c.lead)
    assert st == 400, doc
    assert req(c, "GET", "/v1/cases/abc", token=c.lead)[0] == 404


def test_relation_matrix(c):
    """Every case route x every relation to the case."""
    case = new_case(c, "01/000050/26")
    cid = case["id"]
    ev = upload(c, c.lead, os.urandom(2500), "matrix.mp4")
    assert req(c, "PUT", f"/v1/cases/{cid}/members/cinvest", {"role": "investigator"},
               c.lead)[0] == 200
    assert req(c, "PUT", f"/v1/cases/{cid}/members/cviewer", {"role": "viewer"}, c.lead)[0] == 200
    st, x = req(c, "POST", f"/v1/cases/{cid}/exhibits", {"evidence": ev, "reference": "M/1"},
                c.lead)
    assert st == 201
    st, s = req(c, "POST", f"/v1/cases/{cid}/shares", {"prosecutor": "cpros",
                                                        "expires_at": iso_in(3600)}, c.lead)
    assert st == 201
    who = {"lead": c.lead, "investigator": c.inv, "viewer": c.viewer, "outsider": c.outsider,
           "prosecutor": c.pros, "other_prosecutor": c.pros2, "admin": c.admin}
    order = ("lead", "investigator", "viewer", "outsider", "prosecutor", "other_prosecutor",
             "admin")
    # Requests chosen so a let-in caller gets a validation answer (400) or a
    # read (200), never a change that would disturb later rows.
    rows = [
        ("GET", f"/v1/cases/{cid}", None, (200, 200, 200, 404, 200, 404, 200)),
        ("PATCH", f"/v1/cases/{cid}", {}, (400, 403, 403, 404, 403, 403, 400)),
        ("POST", f"/v1/cases/{cid}/close", {"reason": 5}, (400, 403, 403, 404, 403, 403, 400)),
        ("POST", f"/v1/cases/{cid}/reopen", {}, (409, 403, 403, 404, 403, 403, 409)),
        ("GET", f"/v1/cases/{cid}/exhibits", None, (200, 200, 200, 404, 200, 404, 200)),
        ("POST", f"/v1/cases/{cid}/exhibits", {}, (400, 400, 403, 404, 403, 403, 400)),
        ("PATCH", f"/v1/cases/{cid}/exhibits/{x['id']}", {},
         (400, 400, 403, 404, 403, 403, 400)),
        ("DELETE", f"/v1/cases/{cid}/exhibits/{x['id']}", {"reason": 5},
         (400, 403, 403, 404, 403, 403, 400)),
        ("GET", f"/v1/cases/{cid}/members", None, (200, 200, 200, 404, 403, 404, 200)),
        ("PUT", f"/v1/cases/{cid}/members/cviewer", {"role": "x"},
         (400, 400, 400, 400, 403, 403, 400)),
        ("DELETE", f"/v1/cases/{cid}/members/nobody", None, (404, 403, 403, 404, 403, 403, 404)),
        ("GET", f"/v1/cases/{cid}/shares", None, (200, 200, 200, 404, 403, 404, 200)),
        ("POST", f"/v1/cases/{cid}/shares", {}, (400, 403, 403, 404, 403, 403, 400)),
        ("POST", f"/v1/cases/{cid}/shares/{s['id']}/revoke", {"reason": 5},
         (400, 403, 403, 404, 403, 403, 400)),
        ("GET", f"/v1/evidence/{ev}", None, (200, 200, 200, 404, 200, 404, 200)),
        ("GET", f"/v1/evidence/{ev}/content", None, (200, 200, 200, 404, 403, 404, 200)),
    ]
    wrong = []
    for method, path, body, want in rows:
        for name, expected in zip(order, want):
            st, doc, _ = c.srv.request(method, path, body, token=who[name])
            if st != expected:
                wrong.append(f"{method} {path} as {name}: {st} {doc if st >= 400 else ''},"
                             f" expected {expected}")
    assert not wrong, "\n".join(wrong)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
