# SPDX-License-Identifier: Apache-2.0
"""What the staff page needs from the API, against a real demsd: the evidence
list (GET /v1/evidence: order, pagination, parameters, roles) and the session
cookie (POST /v1/auth/login {"cookie": true}): it authorises GET and HEAD
only, with the bearer token's checks (expiry, revocation), the bearer header
wins over it, logout clears it, and malformed cookies are a 401, not a crash."""
import base64
import hashlib
import os
import urllib.parse

from harness import Server, raw_tls, read_response, run_tests


class Ctx:
    pass


def b64(s):
    return base64.b64encode(s.encode()).decode()


def upload(c, token, data, filename, content_type="application/octet-stream", **extra):
    meta = f"filename {b64(filename)},filetype {b64(content_type)}"
    for k, v in extra.items():
        meta += f",{k} {b64(v)}"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta,
        "Content-Type": "application/offset+octet-stream"})
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def cookie_login(c, user, password):
    st, doc, r = c.srv.request("POST", "/v1/auth/login",
                               {"username": user, "password": password, "cookie": True})
    assert st == 200, doc
    set_cookie = r.getheader("Set-Cookie")
    return doc["token"], set_cookie


def setup():
    c = Ctx()
    # No workers: preview jobs stay queued, so the list's job state is known.
    c.srv = Server({"workers": 0}).start()
    c.admin = c.srv.admin_token()
    for name, pw, role in (("off1", "officer-one", "officer"), ("pros", "prosecutor1", "prosecutor")):
        st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                                   {"username": name, "password": pw, "role": role}, token=c.admin)
        assert st == 201, doc
    c.off = c.srv.login("off1", "officer-one")[1]["token"]
    c.pros = c.srv.login("pros", "prosecutor1")[1]["token"]
    c.ids = []
    for i in range(5):
        data = os.urandom(1000 + i) if i != 4 else os.urandom(300_000)
        c.ids.append(upload(c, c.off if i % 2 else c.admin, data, f"file-{i}.bin"))
    return c


def teardown(c):
    assert c.srv.stop() == 0


def get(c, path, token=None, headers=None):
    # The administrator sees every upload (officers only their own: test_access).
    return c.srv.request("GET", path, token=token or c.admin, headers=headers)


# ---- GET /v1/evidence ----

def test_list_newest_first_with_fields(c):
    st, doc, r = get(c, "/v1/evidence")
    assert st == 200 and r.getheader("Cache-Control") == "no-store"
    assert [e["id"] for e in doc["evidence"]] == c.ids[::-1]
    assert doc["next_cursor"] is None and r.getheader("Link") is None
    e = doc["evidence"][0]
    assert set(e) == {"id", "filename", "content_type", "size", "created_at", "uploaded_by",
                      "preview_job", "has_preview", "preview", "metadata"}, e
    assert e["preview"] == "pending" and e["metadata"]["filename"] == "file-4.bin", e
    assert e["filename"] == "file-4.bin" and e["content_type"] == "application/octet-stream"
    assert e["size"] == 300_000 and e["uploaded_by"] == "admin"
    assert e["preview_job"] == "queued" and e["has_preview"] is False
    assert doc["evidence"][1]["uploaded_by"] == "off1"
    assert e["created_at"].endswith("Z") and e["created_at"][10] == "T"


def test_list_pages_with_cursor(c):
    seen, cursor, pages = [], None, 0
    while True:
        q = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        st, doc, r = get(c, "/v1/evidence" + q)
        assert st == 200, doc
        pages += 1
        assert len(doc["evidence"]) <= 2
        seen += [e["id"] for e in doc["evidence"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            assert r.getheader("Link") is None
            break
        # The next page's link: the same query with the next cursor.
        assert r.getheader("Link") == f'</v1/evidence?limit=2&cursor={cursor}>; rel="next"'
    assert seen == c.ids[::-1] and pages == 3
    # A full last page says so: exactly limit items and no more.
    st, doc, _ = get(c, "/v1/evidence?limit=5")
    assert len(doc["evidence"]) == 5 and doc["next_cursor"] is None
    st, doc, _ = get(c, "/v1/evidence?limit=4")
    assert len(doc["evidence"]) == 4 and doc["next_cursor"] == c.ids[1]
    # Upper-case hex is the same cursor.
    st, doc, _ = get(c, f"/v1/evidence?cursor={c.ids[1].upper()}")
    assert st == 200 and [e["id"] for e in doc["evidence"]] == [c.ids[0]]
    # Filters stay in the next page's link (re-encoded); an old cursor is
    # replaced, however it was spelt.
    for q in (f"before=2099-01-01T00:00:00Z&cursor={c.ids[4]}&limit=1",
              f"before=2099-01-01T00%3A00%3A00Z&cur%73or={c.ids[4]}&limit=1"):
        st, doc, r = get(c, "/v1/evidence?" + q)
        assert st == 200, doc
        assert r.getheader("Link") == ("</v1/evidence?before=2099-01-01T00%3A00%3A00Z&limit=1"
                                       f"&cursor={c.ids[3]}>; rel=\"next\""), r.getheader("Link")


def test_list_before_a_time(c):
    st, doc, _ = get(c, "/v1/evidence?before=2099-01-01T00:00:00Z")
    assert st == 200 and len(doc["evidence"]) == 5
    st, doc, _ = get(c, "/v1/evidence?before=2001-01-01T00:00:00Z")
    assert st == 200 and doc["evidence"] == [] and doc["next_cursor"] is None
    # Percent-encoded, with an offset, as URLSearchParams would send it.
    q = urllib.parse.quote("2099-01-01T01:00:00.5+01:00", safe="")
    st, doc, _ = get(c, f"/v1/evidence?before={q}")
    assert st == 200 and len(doc["evidence"]) == 5, doc


def test_list_bad_parameters_name_the_parameter(c):
    for q, name in (("limit=0", "limit"), ("limit=201", "limit"), ("limit=abc", "limit"),
                    ("limit=-1", "limit"), ("limit=", "limit"), ("before=xyz", "before"),
                    ("cursor=" + "0" * 64, "cursor"), ("cursor=" + "g" * 64, "cursor"),
                    ("cursor=xyz", "cursor"), ("cursor=%3Cscript%3E", "cursor"),
                    ("before=" + c.ids[0], "before"),
                    ("before=2026-13-01T00:00:00Z", "before"),
                    ("before=%27%20OR%201%3D1%20--", "before"), ("before=%zz", "before")):
        st, doc, _ = get(c, "/v1/evidence?" + q)
        assert st == 400 and doc["code"] == "invalid_parameter", (q, st, doc)
        assert f'"{name}"' in doc["detail"], (q, doc)
    st, doc, _ = get(c, "/v1/evidence?limit=200")
    assert st == 200


def test_list_roles(c):
    st, doc, _ = c.srv.request("GET", "/v1/evidence")
    assert st == 401
    # A prosecutor reads evidence only through shares: nothing is shared here.
    st, doc, _ = get(c, "/v1/evidence", token=c.pros)
    assert st == 200 and doc["evidence"] == [], doc
    st, doc, _ = get(c, f"/v1/evidence/{c.ids[0]}", token=c.pros)
    assert st == 404 and doc["code"] == "not_found", doc
    st, doc, _ = get(c, "/v1/evidence", token=c.admin)
    assert st == 200 and len(doc["evidence"]) == 5


# ---- the session cookie ----

def test_login_sets_cookie_only_when_asked(c):
    tok, sc = cookie_login(c, "off1", "officer-one")
    assert sc == (f"dems_session={tok}; Path=/v1/; Secure; HttpOnly; SameSite=Strict; "
                  f"Max-Age=43200"), sc
    st, doc, r = c.srv.request("POST", "/v1/auth/login",
                               {"username": "off1", "password": "officer-one"})
    assert st == 200 and r.getheader("Set-Cookie") is None
    st, doc, r = c.srv.request("POST", "/v1/auth/login",
                               {"username": "off1", "password": "officer-one", "cookie": False})
    assert st == 200 and r.getheader("Set-Cookie") is None
    for bad in ("yes", 1, None, {}):
        st, doc, r = c.srv.request("POST", "/v1/auth/login",
                                   {"username": "off1", "password": "officer-one", "cookie": bad})
        assert st == 400 and doc["code"] == "invalid_field", (bad, doc)
        assert '"cookie"' in doc["detail"]
    # A failed login sets nothing.
    st, doc, r = c.srv.request("POST", "/v1/auth/login",
                               {"username": "off1", "password": "wrong-pass", "cookie": True})
    assert st == 401 and r.getheader("Set-Cookie") is None


def test_cookie_authorises_get_and_head(c):
    tok, sc = cookie_login(c, "off1", "officer-one")
    ck = {"Cookie": f"theme=dark; dems_session={tok}; other=1"}
    st, doc, _ = c.srv.request("GET", "/v1/me", headers=ck)
    assert st == 200 and doc["username"] == "off1" and doc["token_kind"] == "session"
    st, body, r = c.srv.request("HEAD", "/v1/me", headers=ck)
    assert st == 200 and not body
    st, doc, _ = c.srv.request("GET", "/v1/evidence?limit=1", headers=ck)
    assert st == 200 and len(doc["evidence"]) == 1
    # A media element's range request, as <video src> sends it.
    st, body, r = c.srv.request("GET", f"/v1/evidence/{c.ids[3]}/content",
                                headers=dict(ck, Range="bytes=100-199"))
    assert st == 206 and len(body) == 100
    # Cookie headers split in two (as HTTP/2 proxies may forward them).
    s = raw_tls(c.srv)
    s.sendall(b"GET /v1/me HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n"
              b"Cookie: dems_session=" + tok.encode() + b"\r\nConnection: close\r\n\r\n")
    st, head, body, _ = read_response(s)
    s.close()
    assert st == 200 and b'"off1"' in body, head
    # Roles and relations still apply: a prosecutor's cookie is not an
    # administrator and sees no evidence that was not shared with them.
    ptok, _ = cookie_login(c, "pros", "prosecutor1")
    pck = {"Cookie": f"dems_session={ptok}"}
    st, doc, _ = c.srv.request("GET", "/v1/admin/users", headers=pck)
    assert st == 403 and doc["code"] == "forbidden", doc
    st, doc, _ = c.srv.request("GET", "/v1/evidence", headers=pck)
    assert st == 200 and doc["evidence"] == [], doc


def test_cookie_never_authorises_state_changes(c):
    tok, _ = cookie_login(c, "off1", "officer-one")
    ck = {"Cookie": f"dems_session={tok}"}
    tus = {"Tus-Resumable": "1.0.0"}
    cases = [
        ("POST", "/v1/me/tokens", {"name": "csrf"}, {}),
        ("POST", "/v1/auth/logout", None, {}),
        ("POST", "/v1/admin/users", {"username": "x", "password": "xxxxxxxx", "role": "admin"}, {}),
        ("DELETE", "/v1/me/tokens/1", None, {}),
        ("PATCH", "/v1/uploads/" + "0" * 32, b"abc",
         dict(tus, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})),
        ("POST", "/v1/uploads", None, dict(tus, **{"Upload-Length": "10"})),
        ("DELETE", "/v1/uploads/" + "0" * 32, None, tus),
        # The override turns POST into GET for routing, but the request as
        # sent is a POST: still no cookie.
        ("POST", "/v1/me", None, {"X-HTTP-Method-Override": "GET"}),
    ]
    for method, path, body, extra in cases:
        st, doc, _ = c.srv.request(method, path, body=body, headers=dict(ck, **extra))
        assert st == 401 and doc["code"] == "unauthorized", (method, path, st, doc)
    # Nothing happened: the session is alive and no token was made.
    st, doc, _ = c.srv.request("GET", "/v1/me", headers=ck)
    assert st == 200
    st, doc, _ = c.srv.request("GET", "/v1/me/tokens", token=tok)
    assert doc["tokens"] == []


def test_cookie_with_csrf_token_may_change_state(c):
    st, login, r = c.srv.request("POST", "/v1/auth/login",
                                 {"username": "off1", "password": "officer-one", "cookie": True})
    assert st == 200, login
    tok, csrf = login["token"], login["csrf_token"]
    assert len(csrf) == 64 and int(csrf, 16) >= 0 and csrf != tok
    ck = {"Cookie": f"dems_session={tok}"}
    # After a reload the page has only the cookie: /v1/me gives the same CSRF token back.
    st, me, _ = c.srv.request("GET", "/v1/me", headers=ck)
    assert st == 200 and me["csrf_token"] == csrf, me
    # With it, the cookie authorises state changes: an API token made and revoked, an upload.
    ok = dict(ck, **{"X-CSRF-Token": csrf})
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "by cookie"}, headers=ok)
    assert st == 201, doc
    api_tok, api_id = doc["token"], doc["id"]
    st, me2, _ = c.srv.request("GET", "/v1/me", token=api_tok)
    assert st == 200 and "csrf_token" not in me2, me2  # API tokens have none
    st, doc, _ = c.srv.request("DELETE", f"/v1/me/tokens/{api_id}", headers=ok)
    assert st == 204, doc
    data = os.urandom(5000)
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, headers=dict(ok, **{
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
        "Content-Type": "application/offset+octet-stream"}))
    assert st == 201 and r.getheader("Evidence-Id") == hashlib.sha256(data).hexdigest(), doc
    c.by_cookie = r.getheader("Evidence-Id")
    # Without the right token, nothing: wrong, another session's, upper-cased, truncated,
    # or the header with no cookie.
    other_tok, _ = cookie_login(c, "off1", "officer-one")
    st, other, _ = c.srv.request("GET", "/v1/me", token=other_tok)
    for hdrs in (dict(ck, **{"X-CSRF-Token": "0" * 64}),
                 dict(ck, **{"X-CSRF-Token": other["csrf_token"]}),
                 dict(ck, **{"X-CSRF-Token": csrf.upper()}),
                 dict(ck, **{"X-CSRF-Token": csrf[:63]}),
                 dict(ck, **{"X-CSRF-Token": ""}),
                 {"X-CSRF-Token": csrf},
                 {"Cookie": "dems_session=garbage!", "X-CSRF-Token": csrf}):
        st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "no"}, headers=hdrs)
        assert st == 401 and doc["code"] == "unauthorized", (hdrs, doc)
    st, doc, _ = c.srv.request("GET", "/v1/me/tokens", token=tok)
    assert doc["tokens"] == [], doc
    # An API token is never a cookie, CSRF token or not.
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "x"}, token=tok)
    api2 = doc["token"]
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "no"}, headers={
        "Cookie": f"dems_session={api2}", "X-CSRF-Token": "0" * 64})
    assert st == 401, doc
    # Logout by cookie ends the session; its CSRF token dies with it.
    st, doc, _ = c.srv.request("POST", "/v1/auth/logout", headers=ok)
    assert st == 204, doc
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "late"}, headers=ok)
    assert st == 401, doc


def test_bearer_wins_over_cookie(c):
    tok, _ = cookie_login(c, "off1", "officer-one")
    ck = {"Cookie": f"dems_session={tok}"}
    st, doc, _ = c.srv.request("GET", "/v1/me", token=c.admin, headers=ck)
    assert st == 200 and doc["username"] == "admin"
    st, doc, _ = c.srv.request("GET", "/v1/me", headers=dict(ck, Authorization="Bearer nope"))
    assert st == 401
    st, doc, _ = c.srv.request("GET", "/v1/me", headers=dict(ck, Authorization="Basic eDp5"))
    assert st == 401
    st, doc, _ = c.srv.request("GET", "/v1/me", token=c.off,
                               headers={"Cookie": "dems_session=garbage!"})
    assert st == 200 and doc["username"] == "off1"


def test_expired_and_revoked_cookies_are_refused(c):
    tok, _ = cookie_login(c, "off1", "officer-one")
    ck = {"Cookie": f"dems_session={tok}"}
    assert c.srv.request("GET", "/v1/me", headers=ck)[0] == 200
    digest = hashlib.sha256(tok.encode()).hexdigest()
    rc, out, err = c.srv.psql("UPDATE auth_tokens SET expires_at = now() - interval '1 second'"
                              f" WHERE token_hash = decode('{digest}', 'hex')")
    assert rc == 0, err
    st, doc, _ = c.srv.request("GET", "/v1/me", headers=ck)
    assert st == 401 and doc["code"] == "unauthorized"
    # Logout (with the bearer token) revokes it and clears the cookie.
    tok, _ = cookie_login(c, "off1", "officer-one")
    ck = {"Cookie": f"dems_session={tok}"}
    st, _, r = c.srv.request("POST", "/v1/auth/logout", token=tok, headers=ck)
    assert st == 204
    assert r.getheader("Set-Cookie") == ("dems_session=; Path=/v1/; Secure; HttpOnly; "
                                         "SameSite=Strict; Max-Age=0")
    assert c.srv.request("GET", "/v1/me", headers=ck)[0] == 401
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 401
    # A disabled account's cookie stops working too.
    tok, _ = cookie_login(c, "pros", "prosecutor1")
    rc, _, err = c.srv.psql("UPDATE users SET disabled = true WHERE username = 'pros'")
    assert rc == 0, err
    assert c.srv.request("GET", "/v1/me", headers={"Cookie": f"dems_session={tok}"})[0] == 401
    c.srv.psql("UPDATE users SET disabled = false WHERE username = 'pros'")


def test_api_tokens_are_not_accepted_as_cookies(c):
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "script"}, token=c.off)
    assert st == 201, doc
    api = doc["token"]
    assert c.srv.request("GET", "/v1/me", token=api)[0] == 200
    st, doc, _ = c.srv.request("GET", "/v1/me", headers={"Cookie": f"dems_session={api}"})
    assert st == 401


def test_malformed_cookies_are_401_not_a_crash(c):
    tok, _ = cookie_login(c, "off1", "officer-one")
    bad = [
        "dems_session=",
        "dems_session",
        "dems_session=abc$def",
        'dems_session="' + tok + '"',
        "dems_session=" + "A" * 64,
        "dems_session=" + "A" * 5000,
        f"dems_session={tok}; dems_session={tok}",  # two: cannot tell which
        ";;;  ; =; ==; =x",
        "dems_session=" + tok[:-1],  # unknown token
        "DEMS_SESSION=" + tok,  # names are case-sensitive
        "dems_session =" + "%00",
    ]
    for v in bad:
        st, doc, _ = c.srv.request("GET", "/v1/me", headers={"Cookie": v})
        assert st == 401 and doc["code"] == "unauthorized", (v, st, doc)
    # Bytes no client library would send: control characters, high bytes.
    for raw in (b"dems_session=\x01\x02\x03", b"dems_session=\xff\xfe" + tok.encode(),
                b"dems_session=" + tok.encode() + b"\x00"):
        s = raw_tls(c.srv)
        s.sendall(b"GET /v1/me HTTP/1.1\r\nHost: x\r\nCookie: " + raw +
                  b"\r\nConnection: close\r\n\r\n")
        st, head, body, _ = read_response(s)
        s.close()
        assert st in (400, 401), (raw, head)
    assert c.srv.request("GET", "/healthz")[0] == 200
    assert c.srv.request("GET", "/v1/me", headers={"Cookie": f"dems_session={tok}"})[0] == 200


# ---- QR codes for the page to draw ----

def test_qr_matrix_is_the_librarys(c):
    import subprocess
    for text in ("otpauth://totp/dems:off1?secret=JBSWY3DPEHPK3PXP&issuer=dems",
                 "https://dems.example/disclosure/#dems_dl_" + "A" * 43, "caf\u00e9 \u8b66\u5bdf",
                 "x" * 1024):
        st, doc, _ = c.srv.request("POST", "/v1/qr", {"text": text}, token=c.off)
        assert st == 200 and doc["ecc"] == "M" and doc["quiet_zone"] == 4, doc
        n = doc["size"]
        assert n == 17 + 4 * doc["version"] and len(doc["rows"]) == n, doc
        assert all(len(r) == n and set(r) <= {"0", "1"} for r in doc["rows"])
        # The qrencode command (the same library) draws the same matrix.
        out = subprocess.run(["qrencode", "-t", "ASCII", "-l", "M", "-m", "0", "-8", text],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        want = ["".join("1" if line[i] == "#" else "0" for i in range(0, len(line), 2))
                for line in out if line]
        assert doc["rows"] == want, text
    for body in ({}, {"text": ""}, {"text": 5}, {"text": "x" * 1025}):
        st, doc, _ = c.srv.request("POST", "/v1/qr", body, token=c.off)
        assert st == 400 and doc["code"] == "invalid_field", (body, doc)
    st, doc, _ = c.srv.request("POST", "/v1/qr", {"text": "x"})
    assert st == 401


# ---- custody history of one artefact ----

def test_custody_history(c):
    ev = c.ids[1]  # off1's
    st, doc, r = get(c, f"/v1/evidence/{ev}/custody", token=c.off)
    assert st == 200, doc
    first = doc["entries"][0]
    assert first["entry"]["type"] == "INGESTED" and first["entry"]["artefact"] == ev, first
    assert first["seq"] == first["entry"]["seq"]
    n = len(doc["entries"])
    st, body, _ = get(c, f"/v1/evidence/{ev}/content", token=c.off)
    assert st == 200
    st, doc, _ = get(c, f"/v1/evidence/{ev.upper()}/custody", token=c.off)
    assert len(doc["entries"]) == n + 1, doc
    last = doc["entries"][-1]["entry"]
    assert last["type"] == "DOWNLOADED" and last["actor"] == {"kind": "user", "id": "off1"}, last
    seqs = [e["seq"] for e in doc["entries"]]
    assert seqs == sorted(seqs) and all(e["entry"]["artefact"] == ev for e in doc["entries"])
    # Paged like every list.
    st, page, r = get(c, f"/v1/evidence/{ev}/custody?limit=1", token=c.off)
    assert len(page["entries"]) == 1 and page["next_cursor"] == str(seqs[0]), page
    st, page, _ = get(c, f"/v1/evidence/{ev}/custody?limit=1&cursor={page['next_cursor']}",
                      token=c.off)
    assert [e["seq"] for e in page["entries"]] == [seqs[1]], page
    # Hidden from those who may not see the evidence, exactly like unknown evidence.
    st, doc, _ = get(c, f"/v1/evidence/{ev}/custody", token=c.pros)
    st2, doc2, _ = get(c, f"/v1/evidence/{'0' * 64}/custody", token=c.pros)
    assert st == st2 == 404 and doc["detail"] == doc2["detail"], (doc, doc2)
    st, doc, _ = get(c, "/v1/evidence/xyz/custody", token=c.off)
    assert st == 404
    st, doc, _ = get(c, f"/v1/evidence/{ev}/custody?cursor=abc", token=c.off)
    assert st == 400 and doc["code"] == "invalid_parameter", doc


# ---- filters (last: it adds evidence) ----

def test_list_filters(c):
    import time
    time.sleep(1.1)  # ingest times to the second: these are after the first five
    t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    a = upload(c, c.off, os.urandom(2001), "front door.mp4", "video/mp4",
               description="Blue van at the gate", device_serial="BWC-0042",
               recording_start="2026-03-01T10:00:00Z", recording_end="2026-03-01T10:05:00Z")
    b = upload(c, c.off, os.urandom(2002), "statement.jpg", "image/jpeg",
               recording_start="2026-06-01T10:00:00Z")

    def ids(q, token=None):
        st, doc, _ = get(c, "/v1/evidence?" + q, token=token)
        assert st == 200, (q, doc)
        return [e["id"] for e in doc["evidence"]]
    assert ids("q=BLUE%20VAN") == [a]               # the description, any case
    assert ids("q=statement") == [b]                # the filename
    assert set(ids("q=file-")) == set(c.ids)
    assert ids("q=nothing-like-this") == []
    before = [c.by_cookie] + c.ids[::-1]  # everything uploaded before this test, newest first
    assert set(ids("uploader=off1")) == {a, b, c.ids[1], c.ids[3], c.by_cookie}
    assert set(ids("uploader=OFF1")) == {a, b, c.ids[1], c.ids[3], c.by_cookie}
    assert ids("device=BWC-0042") == [a]
    assert ids("content_type=video/") == [a] and ids("content_type=image/jpeg") == [b]
    assert set(ids("preview=pending")) == set(before) | {a, b}  # no worker runs here
    assert ids("preview=ready") == [] and ids("preview=failed") == []
    assert ids(f"from={t0}") == [b, a]
    assert ids(f"to={t0}") == before
    assert ids("recorded_from=2026-02-01T00:00:00Z&recorded_to=2026-04-01T00:00:00Z") == [a]
    assert ids("recorded_from=2026-02-01T00:00:00Z") == [b, a]
    # Filters combine, and an officer's filters never widen what they see.
    assert ids("q=van&device=BWC-0042&content_type=video") == [a]
    assert ids("uploader=admin", token=c.off) == []
    # Oldest first, paged with the same cursor style.
    st, doc, _ = get(c, "/v1/evidence?sort=oldest&limit=3")
    assert [e["id"] for e in doc["evidence"]] == c.ids[:3], doc
    st, doc, _ = get(c, f"/v1/evidence?sort=oldest&limit=3&cursor={doc['next_cursor']}")
    assert [e["id"] for e in doc["evidence"]] == c.ids[3:] + [c.by_cookie], doc
    st, doc, _ = get(c, f"/v1/evidence?sort=oldest&limit=3&cursor={doc['next_cursor']}")
    assert [e["id"] for e in doc["evidence"]] == [a, b] and doc["next_cursor"] is None, doc
    # Metadata given at upload is in the list.
    st, doc, _ = get(c, "/v1/evidence?device=BWC-0042")
    m = doc["evidence"][0]["metadata"]
    assert m["description"] == "Blue van at the gate" and m["device_serial"] == "BWC-0042", m
    assert m["recording_start"] == "2026-03-01T10:00:00Z", m
    for q, name in (("preview=maybe", "preview"), ("sort=size", "sort"), ("from=soon", "from"),
                    ("recorded_to=2026-13-01T00:00:00Z", "recorded_to"), ("q=" + "x" * 201, "q"),
                    ("q=", "q"), ("uploader=" + "u" * 80, "uploader")):
        st, doc, _ = get(c, "/v1/evidence?" + q)
        assert st == 400 and doc["code"] == "invalid_parameter" and f'"{name}"' in doc["detail"], (
            q, doc)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
