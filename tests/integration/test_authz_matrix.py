# SPDX-License-Identifier: Apache-2.0
"""The authorisation matrix: every route the router knows (`demsd routes`)
called as every kind of caller, each status compared with the table below.

Callers: no credentials; an officer (session token); another officer with no
relation to the officer's objects; a prosecutor; an administrator; a revoked
session token; the officer's API token; the officer's session as a cookie
only; an enrolled dock (mutual TLS); the holder of a defence disclosure
link (its dems_disclosure session cookie); a member of the public with a
submission's bearer token (dems_ps_..., the portal). A route the router serves without a row
here fails the test, as does a row for a route that no longer exists.

Requests are chosen to show the authorisation decision without side effects
that would disturb later rows: bodies that fail validation (400 means "let
in, then refused the input"), ids that do not exist (404), or objects made
for the purpose. Per-object rows use the officer's own objects, so "other"
shows the relation check (404: hidden exactly as a missing id)."""
import base64
import json
import os
import time

from harness import Server, enrol_pinned_dock, run_tests

CALLERS = ("none", "officer", "other", "prosecutor", "admin", "revoked", "api", "cookie",
           "device", "link", "submitter")

# Statuses in CALLERS order. Shorthands for the common shapes:
PUB = lambda s: (s,) * 11                                            # noqa: E731
STAFF = lambda s: (401, s, s, s, s, 401, s, s, 403, 403, 403)             # noqa: E731
ADMIN = lambda s: (401, 403, 403, 403, s, 401, 403, 403, 403, 403, 403)   # noqa: E731
# A state change: the cookie never authorises one (401); API tokens may not
# mint tokens or enrol TOTP (403 session_required).
STAFF_POST = lambda s: (401, s, s, s, s, 401, s, 401, 403, 401, 403)      # noqa: E731
ADMIN_POST = lambda s: (401, 403, 403, 403, s, 401, 403, 401, 403, 401, 403)  # noqa: E731
SESSION_ONLY = lambda s: (401, s, s, s, s, 401, 403, 401, 403, 401, 403)  # noqa: E731
# Only a disclosure link's holder, by the dems_disclosure cookie.
HOLDER = lambda s: (401, 403, 403, 403, 403, 401, 403, 403, 403, s, 403)  # noqa: E731
# The defence page is built into demsd when its file is in the tree.
DISCLOSURE_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "server",
                               "web", "disclosure.html")

TABLE = {
    ("GET", "/healthz"): PUB(200),
    ("GET", "/readyz"): PUB(200),
    ("GET", "/v1/openapi.json"): PUB(200),
    ("GET", "/"): PUB(302),
    ("GET", "/staff"): PUB(302),
    ("GET", "/staff/"): PUB(200),
    ("GET", "/staff/{file}"): PUB(200),
    ("POST", "/v1/auth/login"): PUB(400),
    ("POST", "/v1/auth/logout"): STAFF_POST(204),
    ("GET", "/v1/me"): STAFF(200),
    ("POST", "/v1/me/totp"): SESSION_ONLY(200),
    ("POST", "/v1/me/totp/confirm"): SESSION_ONLY(400),
    ("GET", "/v1/me/tokens"): STAFF(200),
    ("POST", "/v1/me/tokens"): SESSION_ONLY(400),
    ("DELETE", "/v1/me/tokens/{id}"): STAFF_POST(404),
    ("GET", "/v1/admin/users"): ADMIN(200),
    ("POST", "/v1/admin/users"): ADMIN_POST(400),
    ("GET", "/v1/admin/lockouts"): ADMIN(200),
    ("POST", "/v1/admin/lockouts/lift"): ADMIN_POST(400),
    ("GET", "/v1/ledger/key"): PUB(200),
    ("GET", "/v1/ledger/keys"): PUB(200),
    ("POST", "/v1/admin/ledger/rotate-key"): ADMIN_POST(400),
    ("GET", "/v1/ledger/checkpoint"): PUB(200),
    # The witness role (this server is one: witness_name is set). POST
    # /add-checkpoint is C2SP tlog-witness: no credentials, plain-text
    # answers; an empty body is a bad request for everyone.
    ("GET", "/v1/ledger/witness/key"): PUB(200),
    ("POST", "/add-checkpoint"): PUB(400),
    ("GET", "/v1/ledger/timestamps"): PUB(404),
    ("GET", "/v1/ledger/entries"): STAFF(200),
    ("GET", "/v1/ledger/proof/inclusion"): STAFF(200),
    ("GET", "/v1/ledger/proof/consistency"): PUB(200),
    ("GET", "/v1/ledger/export"): STAFF(200),
    # The log as tlog tiles: hash tiles and checkpoint public, entry bundles
    # as the entries (staff).
    ("GET", "/v1/ledger/tlog/checkpoint"): PUB(200),
    ("GET", "/v1/ledger/tlog/tile/{tile*}"): PUB(200),
    ("GET", "/v1/ledger/tlog/tile/entries/{bundle*}"): STAFF(200),
    # Evidence: officers, prosecutors and administrators; another officer
    # and a prosecutor with no share see none of the officer's evidence.
    ("GET", "/v1/evidence"): (401, 200, 200, 200, 200, 401, 200, 200, 403, 403, 403),
    ("GET", "/v1/evidence/{id}"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("GET", "/v1/evidence/{id}/content"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("GET", "/v1/evidence/{id}/custody"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    # No worker runs here, so no preview exists: 404 for everyone let in.
    ("GET", "/v1/evidence/{id}/preview"): (401, 404, 404, 404, 404, 401, 404, 404, 403, 403, 403),
    ("GET", "/v1/evidence/{id}/poster"): (401, 404, 404, 404, 404, 401, 404, 404, 403, 403, 403),
    ("GET", "/v1/evidence/{id}/thumbnails"): (401, 404, 404, 404, 404, 401, 404, 404, 403, 403, 403),
    ("GET", "/v1/evidence/{id}/sprite.jpg"): (401, 404, 404, 404, 404, 401, 404, 404, 403, 403, 403),
    ("GET", "/v1/admin/devices"): ADMIN(200),
    ("POST", "/v1/admin/devices"): ADMIN_POST(400),
    ("POST", "/v1/admin/devices/{id}/revoke"): ADMIN_POST(404),
    ("POST", "/v1/admin/devices/{id}/assign"): ADMIN_POST(400),
    ("GET", "/v1/admin/jobs"): ADMIN(200),
    ("POST", "/v1/admin/jobs"): ADMIN_POST(400),
    ("GET", "/v1/admin/jobs/{id}"): ADMIN(200),
    ("POST", "/v1/admin/jobs/{id}/retry"): ADMIN_POST(409),
    ("OPTIONS", "/v1/uploads"): PUB(204),
    # Uploads: officers, administrators and docks; an upload is its owner's
    # (the officer's here): others get 404 as for a missing one, except that
    # administrators see any upload's state. Only the owner writes bytes.
    ("POST", "/v1/uploads"): (401, 400, 400, 403, 400, 401, 400, 401, 400, 401, 400),
    ("PATCH", "/v1/uploads/{id}"): (401, 409, 404, 403, 404, 401, 409, 401, 404, 401, 404),
    ("GET", "/v1/uploads/{id}"): (401, 200, 404, 403, 200, 401, 200, 200, 404, 403, 404),
    # The administrator's own unfinished upload: only its owner ends it.
    ("DELETE", "/v1/uploads/{id}"): (401, 404, 404, 403, 204, 401, 404, 401, 404, 401, 404),
    # Cases: the officer leads MATRIX-1; the other officer and the prosecutor
    # (no share) have no relation to it, so it is hidden from them (404).
    # Prosecutors never change a case (403 by role). Bodies fail validation
    # once let in (400), ids that do not exist give 404; test_cases.py walks
    # every case route by case role and relation.
    ("POST", "/v1/cases"): (401, 400, 400, 403, 400, 401, 400, 401, 403, 401, 403),
    ("GET", "/v1/cases"): STAFF(200),
    ("GET", "/v1/cases/{id}"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("PATCH", "/v1/cases/{id}"): (401, 400, 404, 403, 400, 401, 400, 401, 403, 401, 403),
    ("POST", "/v1/cases/{id}/close"): (401, 400, 404, 403, 400, 401, 400, 401, 403, 401, 403),
    ("POST", "/v1/cases/{id}/reopen"): (401, 409, 404, 403, 409, 401, 409, 401, 403, 401, 403),
    ("GET", "/v1/exhibits"): STAFF(200),
    ("GET", "/v1/cases/{id}/exhibits"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("POST", "/v1/cases/{id}/exhibits"): (401, 400, 404, 403, 400, 401, 400, 401, 403, 401, 403),
    ("PATCH", "/v1/cases/{id}/exhibits/{xid}"): (401, 400, 404, 403, 400, 401, 400, 401, 403, 401, 403),
    ("DELETE", "/v1/cases/{id}/exhibits/{xid}"): (401, 404, 404, 403, 404, 401, 404, 401, 403, 401, 403),
    ("GET", "/v1/cases/{id}/members"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("PUT", "/v1/cases/{id}/members/{username}"): (401, 400, 400, 403, 400, 401, 400, 401, 403, 401, 403),
    ("DELETE", "/v1/cases/{id}/members/{username}"): (401, 404, 404, 403, 404, 401, 404, 401, 403, 401, 403),
    ("GET", "/v1/cases/{id}/shares"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("POST", "/v1/cases/{id}/shares"): (401, 400, 404, 403, 400, 401, 400, 401, 403, 401, 403),
    ("POST", "/v1/cases/{id}/shares/{sid}/revoke"): (401, 400, 404, 403, 400, 401, 400, 401, 403, 401, 403),
    ("GET", "/v1/me/shares"): STAFF(200),
    ("POST", "/v1/qr"): STAFF_POST(400),
    # Bundles of a case the officer leads (the prosecutor holds no share of
    # it): others see no case (404). The POST names an exhibit the case does
    # not have (400 once let in); no worker runs, so the bundle stays queued
    # and its content is not ready (409).
    ("POST", "/v1/cases/{id}/bundles"): (401, 400, 404, 404, 400, 401, 400, 401, 403, 401, 403),
    ("GET", "/v1/cases/{id}/bundles"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("GET", "/v1/cases/{id}/bundles/{bid}"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("GET", "/v1/cases/{id}/bundles/{bid}/content"): (401, 409, 404, 404, 409, 401, 409, 409,
                                                      403, 403, 403),
    # Disclosure links: only a prosecutor with a download share issues one
    # (the lead and admin 403 by case role); the case's people list them;
    # the lead or the issuer revokes (a body that fails validation: 400).
    ("POST", "/v1/cases/{id}/disclosures"): (401, 403, 404, 404, 403, 401, 403, 401, 403, 401, 403),
    ("GET", "/v1/cases/{id}/disclosures"): (401, 200, 404, 404, 200, 401, 200, 200, 403, 403, 403),
    ("POST", "/v1/cases/{id}/disclosures/{did}/revoke"): (401, 400, 404, 404, 400, 401, 400, 401,
                                                          403, 401, 403),
    # The holder's side: the page and the opening are public (an empty body
    # is 400); the rest take only the holder's dems_disclosure cookie. No
    # worker runs, so the link's bundle is queued (content 409) and no
    # preview exists (404).
    ("GET", "/disclosure/"): PUB(200 if os.path.exists(DISCLOSURE_PAGE) else 404),
    ("POST", "/v1/disclosure/open"): PUB(400),
    ("GET", "/v1/disclosure"): HOLDER(200),
    ("GET", "/v1/disclosure/bundle"): HOLDER(200),
    ("GET", "/v1/disclosure/bundle/content"): HOLDER(409),
    ("GET", "/v1/disclosure/exhibits/{xid}/preview"): HOLDER(404),
    ("GET", "/v1/disclosure/exhibits/{xid}/poster"): HOLDER(404),
    ("GET", "/v1/disclosure/exhibits/{xid}/thumbnails"): HOLDER(404),
    ("GET", "/v1/disclosure/exhibits/{xid}/sprite.jpg"): HOLDER(404),
    # Public submissions: the case's officers make and revoke links
    # (prosecutors: 403 by role); the portal's two public routes take a link
    # token in the body (400 without); the rest only a submission's bearer
    # token (finishing one without files: 409).
    ("POST", "/v1/cases/{id}/submission-links"): (401, 400, 404, 403, 400, 401, 400, 401, 403,
                                                  401, 403),
    ("GET", "/v1/cases/{id}/submission-links"): (401, 200, 404, 403, 200, 401, 200, 200, 403,
                                                 403, 403),
    ("POST", "/v1/cases/{id}/submission-links/{lid}/revoke"): (401, 400, 404, 403, 400, 401, 400,
                                                               401, 403, 401, 403),
    # Triage: the case's officers (an unknown submission: 404; a reject
    # without its reason: 400).
    ("GET", "/v1/cases/{id}/submissions"): (401, 200, 404, 403, 200, 401, 200, 200, 403, 403,
                                            403),
    ("POST", "/v1/cases/{id}/submissions/{sid}/accept"): (401, 404, 404, 403, 404, 401, 404, 401,
                                                          403, 401, 403),
    ("POST", "/v1/cases/{id}/submissions/{sid}/reject"): (401, 400, 404, 403, 400, 401, 400, 401,
                                                          403, 401, 403),
    ("GET", "/portal/"): PUB(200),
    ("GET", "/portal/{file}"): PUB(200),
    ("POST", "/v1/portal/open"): PUB(400),
    ("POST", "/v1/portal/submissions"): PUB(400),
    ("GET", "/v1/portal/submission"): (401, 403, 403, 403, 403, 401, 403, 403, 403, 403, 200),
    ("POST", "/v1/portal/submission/finish"): (401, 403, 403, 403, 403, 401, 403, 401, 403, 401,
                                               409),
    # The submission is open: no receipt yet.
    ("GET", "/v1/portal/receipt"): (401, 403, 403, 403, 403, 401, 403, 403, 403, 403, 409),
    # Face search: the officer holds the face-search permission (granted in
    # setup); the other officer and the administrator do not (403, ledgered),
    # except on the admin routes and the galleries list, which admins manage.
    ("PATCH", "/v1/admin/users/{id}"): ADMIN_POST(404),
    ("GET", "/v1/cases/{id}/face"): (401, 200, 404, 403, 200, 401, 200, 200, 403, 403, 403),
    ("POST", "/v1/cases/{id}/face/indexing"): (401, 400, 400, 403, 400, 401, 400, 401, 403, 401,
                                               403),
    ("GET", "/v1/cases/{id}/face/tracks"): (401, 200, 403, 403, 403, 401, 200, 200, 403, 403, 403),
    ("GET", "/v1/face/tracks/{id}/crop"): (401, 404, 403, 403, 403, 401, 404, 404, 403, 403, 403),
    ("POST", "/v1/cases/{id}/face/searches"): (401, 400, 403, 403, 403, 401, 400, 401, 403, 401,
                                               403),
    ("GET", "/v1/cases/{id}/face/searches"): (401, 200, 403, 403, 403, 401, 200, 200, 403, 403,
                                              403),
    ("GET", "/v1/cases/{id}/face/searches/{sid}"): (401, 404, 403, 403, 403, 401, 404, 404, 403,
                                                    403, 403),
    ("GET", "/v1/admin/face/searches"): ADMIN(200),
    ("GET", "/v1/face/galleries"): (401, 200, 403, 403, 200, 401, 200, 200, 403, 403, 403),
    ("POST", "/v1/admin/face/galleries"): ADMIN_POST(400),
    ("PUT", "/v1/admin/face/galleries/{id}/users/{username}"): ADMIN_POST(404),
    ("DELETE", "/v1/admin/face/galleries/{id}/users/{username}"): ADMIN_POST(404),
    ("GET", "/v1/admin/face/galleries/{id}/subjects"): ADMIN(404),
    ("POST", "/v1/admin/face/galleries/{id}/subjects"): ADMIN_POST(404),
    ("DELETE", "/v1/admin/face/galleries/{id}/subjects/{sid}"): ADMIN_POST(404),
    ("GET", "/v1/face/subjects/{id}/crop"): (401, 404, 403, 403, 404, 401, 404, 404, 403, 403,
                                             403),
    ("POST", "/v1/admin/users/{id}/password"): ADMIN_POST(404),
    ("GET", "/v1/admin/devices/ca"): ADMIN(200),
    ("PATCH", "/v1/admin/devices/{id}"): ADMIN_POST(404),
    ("POST", "/v1/admin/devices/{id}/reenrol"): ADMIN_POST(404),
    ("GET", "/v1/admin/settings"): ADMIN(200),
    ("PUT", "/v1/admin/settings/{key}"): ADMIN_POST(404),
    ("GET", "/v1/admin/settings/{key}/history"): ADMIN(404),
    ("GET", "/metrics"): ADMIN(200),
    # Audit reports: admins only ({id} unparsable: 404; no period: 400).
    ("GET", "/v1/admin/audit/evidence/{id}"): ADMIN(404),
    ("GET", "/v1/admin/audit/cases/{id}"): ADMIN(404),
    ("GET", "/v1/admin/audit/users/{username}"): ADMIN(400),
    # Retention, holds and disposal: admins only ({id} stays unparsable: 404).
    ("GET", "/v1/admin/retention/policies"): ADMIN(200),
    ("POST", "/v1/admin/retention/policies"): ADMIN_POST(400),
    ("PUT", "/v1/admin/cases/{id}/retention"): ADMIN_POST(404),
    ("PUT", "/v1/admin/evidence/{id}/retention"): ADMIN_POST(404),
    ("GET", "/v1/admin/holds"): ADMIN(200),
    ("POST", "/v1/admin/holds"): ADMIN_POST(400),
    ("POST", "/v1/admin/holds/{id}/release"): ADMIN_POST(404),
    ("GET", "/v1/admin/disposal/due"): ADMIN(200),
    ("POST", "/v1/admin/disposal/batches"): ADMIN_POST(202),
    ("GET", "/v1/admin/disposal/batches"): ADMIN(200),
    ("GET", "/v1/admin/disposal/batches/{id}"): ADMIN(404),
    ("GET", "/v1/admin/disposal/batches/{id}/items"): ADMIN(404),
    ("POST", "/v1/admin/disposal/batches/{id}/approve"): ADMIN_POST(404),
    ("POST", "/v1/admin/disposal/batches/{id}/cancel"): ADMIN_POST(404),
    ("POST", "/v1/admin/evidence/{id}/recover"): ADMIN_POST(404),
    ("POST", "/v1/admin/face/galleries/{id}/imports"): ADMIN_POST(404),
    ("GET", "/v1/admin/face/galleries/{id}/imports"): ADMIN(404),
    ("GET", "/v1/admin/face/galleries/{id}/imports/{iid}"): ADMIN(404),
}

TUS = {"Tus-Resumable": "1.0.0"}


class Ctx:
    pass


def user(c, name, role):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": "correct horse", "role": role},
                               token=c.admin)
    assert st == 201, doc


def session(c, name):
    st, doc, _ = c.srv.login(name, "correct horse")
    assert st == 200, doc
    return doc["token"]


def setup():
    c = Ctx()
    # Every refusal ledgered one by one: the matrix refuses more requests a
    # minute, from one address, than the default refusal bounds let through.
    c.srv = Server({"workers": 0, "refusal_max_per_principal": 1000000,
                    "refusal_max_per_address": 1000000,
                    "witness_name": "witness.test/matrix"}).start()
    c.admin = c.srv.admin_token()
    user(c, "mofficer", "officer")
    user(c, "mother", "officer")
    # The officer may search faces (an admin's grant); nobody else here may.
    st, out, err = c.srv.psql("UPDATE users SET face_search = true WHERE username = 'mofficer'")
    assert st == 0, err
    user(c, "mprosecutor", "prosecutor")
    c.off = session(c, "mofficer")
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "matrix"}, token=c.off)
    assert st == 201, doc
    c.api = doc["token"]
    # The officer's evidence and unfinished upload; the admin's upload.
    data = os.urandom(2000)
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.off, headers=dict(
        TUS, **{"Upload-Length": str(len(data)),
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, doc
    c.evidence = r.getheader("Evidence-Id")
    c.upload = upload_id(c, c.off)
    c.admin_upload = upload_id(c, c.admin)
    st, doc, _ = c.srv.request("GET", "/v1/admin/jobs?limit=1", token=c.admin)
    c.job = doc["jobs"][0]["id"]
    # A case the officer leads, with the evidence as an exhibit, and a bundle of it.
    st, out, err = c.srv.psql(
        "WITH u AS (SELECT id FROM users WHERE username = 'mofficer'),"
        " k AS (INSERT INTO cases (reference, title, created_by) SELECT 'MATRIX-1', 'matrix',"
        " u.id FROM u RETURNING id),"
        " m AS (INSERT INTO case_members (case_id, user_id, role, added_by)"
        " SELECT k.id, u.id, 'lead', u.id FROM k, u)"
        " INSERT INTO exhibits (case_id, artefact, reference, added_by)"
        f" SELECT k.id, '{c.evidence}', 'EX1', u.id FROM k, u RETURNING case_id")
    assert st == 0, err
    c.case = int(out)
    st, doc, _ = c.srv.request("POST", f"/v1/cases/{c.case}/bundles", {}, token=c.off)
    assert st == 202, doc
    c.bundle = doc["id"]
    # A disclosure link to the defence, issued by a prosecutor holding a
    # download share of a second case (so mprosecutor stays unrelated to
    # MATRIX-1), and its holder's session cookie.
    user(c, "mlinkpros", "prosecutor")
    st, out, err = c.srv.psql(
        "WITH u AS (SELECT id FROM users WHERE username = 'mofficer'),"
        " p AS (SELECT id FROM users WHERE username = 'mlinkpros'),"
        " k AS (INSERT INTO cases (reference, title, created_by) SELECT 'MATRIX-2', 'link',"
        " u.id FROM u RETURNING id),"
        " x AS (INSERT INTO exhibits (case_id, artefact, reference, added_by)"
        f" SELECT k.id, '{c.evidence}', 'EX1', u.id FROM k, u)"
        " INSERT INTO shares (case_id, prosecutor, whole_case, can_download, expires_at,"
        " created_by) SELECT k.id, p.id, true, true, now() + interval '1 day', u.id"
        " FROM k, p, u RETURNING case_id")
    assert st == 0, err
    st, doc, _ = c.srv.request("POST", f"/v1/cases/{int(out)}/disclosures",
                               {"expires_at": time.strftime(
                                   "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))},
                               token=session(c, "mlinkpros"))
    assert st == 201, doc
    st, doc, r = c.srv.request("POST", "/v1/disclosure/open", {"token": doc["token"]})
    assert st == 200, doc
    c.link_cookie = r.getheader("Set-Cookie").split(";")[0]
    # A member of the public's submission through an appeal link of MATRIX-1.
    st, doc, _ = c.srv.request("POST", f"/v1/cases/{c.case}/submission-links",
                               {"kind": "appeal", "title": "matrix appeal"}, token=c.off)
    assert st == 201, doc
    st, doc, _ = c.srv.request("POST", "/v1/portal/submissions",
                               {"token": doc["token"], "description": "d", "location": "l",
                                "declaration": True})
    assert st == 201, doc
    c.submitter = doc["submission_token"]
    # A dock with a pinned certificate.
    c.dock_cert, c.dock_key, c.device = enrol_pinned_dock(c.srv, c.admin, "MDOCK")
    return c


def upload_id(c, token):
    st, doc, r = c.srv.request("POST", "/v1/uploads", token=token,
                               headers=dict(TUS, **{"Upload-Length": "100"}))
    assert st == 201, doc
    return r.getheader("Location").rsplit("/", 1)[1]


def teardown(c):
    assert c.srv.stop() == 0


def credentials(c, who, fresh):
    """(headers, use the dock's certificate) for a caller; fresh tokens for
    requests that end the session presented (logout)."""
    if who == "none":
        return {}, False
    if who == "device":
        return {}, True
    if who == "link":
        return {"Cookie": c.link_cookie}, False
    if who == "submitter":
        return {"Authorization": f"Bearer {c.submitter}"}, False
    if who == "revoked":
        tok = session(c, "mother")
        assert c.srv.request("POST", "/v1/auth/logout", token=tok)[0] == 204
        return {"Authorization": f"Bearer {tok}"}, False
    if who == "api":
        if fresh:
            st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "fresh"}, token=c.off)
            return {"Authorization": f"Bearer {doc['token']}"}, False
        return {"Authorization": f"Bearer {c.api}"}, False
    name = {"officer": "mofficer", "other": "mother", "prosecutor": "mprosecutor",
            "admin": "admin", "cookie": "mofficer"}[who]
    if fresh:  # used once, never kept
        tok = session(c, name) if name != "admin" else c.srv.admin_token()
    elif name == "admin":
        tok = c.admin
    else:
        if not hasattr(c, "tok_" + name):
            setattr(c, "tok_" + name, session(c, name))
        tok = getattr(c, "tok_" + name)
    if who == "cookie":
        return {"Cookie": f"dems_session={tok}"}, False
    return {"Authorization": f"Bearer {tok}"}, False


def concrete(c, method, pattern):
    """The request for a route: (path with query, body, extra headers)."""
    ids = {
        "/staff/{file}": "/staff/app.js",
        "/portal/{file}": "/portal/portal.js",
        "/v1/me/tokens/{id}": "/v1/me/tokens/999999",
        "/v1/admin/devices/{id}/revoke": "/v1/admin/devices/999999/revoke",
        "/v1/admin/devices/{id}/assign": f"/v1/admin/devices/{c.device}/assign",
        "/v1/admin/jobs/{id}": f"/v1/admin/jobs/{c.job}",
        "/v1/admin/jobs/{id}/retry": f"/v1/admin/jobs/{c.job}/retry",
        "/v1/ledger/tlog/tile/{tile*}": "/v1/ledger/tlog/tile/0/000.p/1",
        "/v1/ledger/tlog/tile/entries/{bundle*}": "/v1/ledger/tlog/tile/entries/000.p/1",
    }
    path = ids.get(pattern, pattern).replace("/v1/evidence/{id}", f"/v1/evidence/{c.evidence}")
    path = path.replace("/v1/cases/{id}", f"/v1/cases/{c.case}").replace("{bid}", str(c.bundle))
    path = path.replace("{xid}", "999999").replace("{sid}", "999999").replace("{did}", "999999")
    path = path.replace("{lid}", "999999").replace("{iid}", "999999")
    path = path.replace("{username}", "nobody")
    if pattern == "/v1/uploads/{id}":
        path = f"/v1/uploads/{c.admin_upload if method == 'DELETE' else c.upload}"
    query = {"/v1/ledger/entries": "?start=0&limit=1",
             "/v1/ledger/proof/inclusion": "?index=0&size=1",
             "/v1/ledger/proof/consistency": "?old=1&new=2"}.get(pattern, "")
    body, headers = None, {}
    bodies = {
        "/v1/auth/login": {},
        "/v1/me/totp/confirm": {},
        "/v1/me/tokens": {"name": ""},
        "/v1/admin/users": {},
        "/v1/admin/lockouts/lift": {},
        "/v1/admin/ledger/rotate-key": {"reason": 5},
        "/v1/admin/devices": {},
        "/v1/admin/devices/{id}/assign": {},
        "/v1/admin/jobs": {},
        "/v1/cases/{id}/bundles": {"exhibits": ["NO-SUCH-EXHIBIT"]},
        "/v1/cases/{id}/close": {"reason": 5},
        "/v1/cases/{id}/shares/{sid}/revoke": {"reason": 5},
        "/v1/cases/{id}/disclosures/{did}/revoke": {"reason": 5},
        "/v1/disclosure/open": {},
        "/v1/portal/open": {},
        "/v1/cases/{id}/submissions/{sid}/accept": {},
        "/v1/cases/{id}/submissions/{sid}/reject": {},
        "/v1/portal/submissions": {},
        "/v1/portal/submission/finish": {},
        "/v1/cases/{id}/submission-links": {},
        "/v1/cases/{id}/submission-links/{lid}/revoke": {"reason": 5},
        "/v1/qr": {},
        "/v1/cases/{id}/face/indexing": {},
        "/v1/cases/{id}/face/searches": {},
        "/v1/admin/face/galleries": {},
        "/v1/admin/face/galleries/{id}/subjects": {},
        "/v1/admin/face/galleries/{id}/imports": {},
        "/v1/admin/retention/policies": {},
        "/v1/admin/holds": {},
    }
    if method == "POST" and pattern in bodies:
        body = json.dumps(bodies[pattern])
        headers["Content-Type"] = "application/json"
    if "/v1/uploads" in pattern:
        headers.update(TUS)
    if method == "PATCH" and "/v1/uploads" in pattern:
        body = b"x"
        headers.update({"Upload-Offset": "5", "Content-Type": "application/offset+octet-stream"})
    return path + query, body, headers


def call(c, who, method, pattern):
    path, body, headers = concrete(c, method, pattern)
    extra, use_cert = credentials(c, who, fresh=pattern == "/v1/auth/logout")
    headers.update(extra)
    ctx = c.srv.context()
    if use_cert:
        ctx.load_cert_chain(c.dock_cert, c.dock_key)
    conn = c.srv.conn(ctx=ctx)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    if r.status >= 400 and pattern != "/add-checkpoint":
        # Every refusal is a problem details body with a stable code (but
        # the C2SP tlog-witness protocol's, which answers in plain text).
        doc = json.loads(raw)
        assert doc["status"] == r.status and doc["code"], (method, path, who, doc)
    if r.status == 401:
        assert r.getheader("WWW-Authenticate", "").startswith("Bearer"), (method, path, who)
    return r.status


def test_every_route_has_a_row(c):
    r = c.srv.demsd("routes")
    assert r.returncode == 0, r.stderr
    served = {(x["method"], x["path"]) for x in map(json.loads, r.stdout.splitlines())}
    assert served - set(TABLE) == set(), f"routes with no row in the matrix: {served - set(TABLE)}"
    assert set(TABLE) - served == set(), f"rows for routes that do not exist: {set(TABLE) - served}"
    for row in TABLE.values():
        assert len(row) == len(CALLERS)


def test_matrix(c):
    wrong = []
    for (method, pattern), want in TABLE.items():
        for who, expected in zip(CALLERS, want):
            got = call(c, who, method, pattern)
            if got != expected:
                wrong.append(f"{method} {pattern} as {who}: {got}, table says {expected}")
    assert not wrong, "\n".join(wrong)


def test_refusals_are_on_the_record(c):
    # Each 403 above is an ACCESS_DENIED entry; a prosecutor calling an
    # evidence route is one of them.
    st, out, err = c.srv.psql("SELECT count(*) FROM ledger_entries WHERE type = 'ACCESS_DENIED'"
                              " AND convert_from(bytes, 'UTF8') LIKE '%mprosecutor%'")
    assert st == 0 and int(out) > 0, (out, err)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
