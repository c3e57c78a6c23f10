# SPDX-License-Identifier: Apache-2.0
"""Accounts and authorisation against a real demsd: login, sessions, logout,
expiry, TOTP enrolment and login, throttling per account and per address,
API tokens, role checks (401/403) and the admin user endpoints."""
import base64
import hashlib
import hmac
import json
import struct
import time

from harness import Server, run_tests


def totp(secret_b32, t=None, step_offset=0):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((t or time.time()) // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server({"login_max_failures": 3, "login_max_failures_per_address": 8,
                    "login_window": 60}).start()
    c.admin = c.srv.admin_token()
    return c


def teardown(c):
    assert c.srv.stop() == 0


def make_user(c, name, role, password="correct horse"):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": password, "role": role},
                               token=c.admin)
    assert st == 201 and doc["username"] == name and doc["role"] == role, (st, doc)
    return doc


def test_login_and_me(c):
    make_user(c, "olivia", "officer")
    st, doc, _ = c.srv.login("olivia", "correct horse")
    assert st == 200 and doc["token"].startswith("dems_s_") and doc["expires_at"].endswith("Z")
    st, me, _ = c.srv.request("GET", "/v1/me", token=doc["token"])
    assert st == 200 and me["username"] == "olivia" and me["role"] == "officer"
    assert me["totp_enabled"] is False


def test_token_stored_only_as_hash(c):
    st, doc, _ = c.srv.login("olivia", "correct horse")
    rc, out, _ = c.srv.psql("SELECT count(*) FROM auth_tokens WHERE token_hash = "
                            f"sha256('{doc['token']}'::bytea)")
    assert rc == 0 and out == "1"
    rc, out, _ = c.srv.psql("SELECT count(*) FROM auth_tokens WHERE encode(token_hash, 'escape') "
                            f"LIKE '%{doc['token'][7:20]}%'")
    assert out == "0"


def test_wrong_password_and_unknown_user(c):
    st, doc, _ = c.srv.login("olivia", "wrong password")
    assert st == 401 and doc["code"] == "invalid_credentials"
    st, doc, _ = c.srv.login("nobody-here", "whatever1")
    assert st == 401 and doc["code"] == "invalid_credentials"


def test_no_token_401_and_bad_token_401(c):
    st, doc, _ = c.srv.request("GET", "/v1/me")
    assert st == 401 and doc["code"] == "unauthorized"
    st, doc, _ = c.srv.request("GET", "/v1/me", token="dems_s_forged")
    assert st == 401
    st, doc, _ = c.srv.request("GET", "/v1/me", headers={"Authorization": "Basic YTpi"})
    assert st == 401


def test_wrong_role_403(c):
    st, doc, _ = c.srv.login("olivia", "correct horse")
    st, doc, _ = c.srv.request("GET", "/v1/admin/users", token=doc["token"])
    assert st == 403 and doc["code"] == "forbidden"
    make_user(c, "pat", "prosecutor")
    st, doc, _ = c.srv.login("pat", "correct horse")
    st, doc2, _ = c.srv.request("POST", "/v1/admin/users",
                                {"username": "x", "password": "12345678", "role": "admin"},
                                token=doc["token"])
    assert st == 403


def test_logout_revokes(c):
    st, doc, _ = c.srv.login("olivia", "correct horse")
    tok = doc["token"]
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 200
    assert c.srv.request("POST", "/v1/auth/logout", token=tok)[0] == 204
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 401


def test_expired_token_refused(c):
    st, doc, _ = c.srv.login("olivia", "correct horse")
    tok = doc["token"]
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 200
    rc, _, err = c.srv.psql("UPDATE auth_tokens SET expires_at = now() - interval '1 second' "
                            f"WHERE token_hash = sha256('{tok}'::bytea)")
    assert rc == 0, err
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 401


def test_admin_user_validation(c):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": "olivia", "password": "12345678", "role": "officer"},
                               token=c.admin)
    assert st == 409 and doc["code"] == "user_exists"
    for bad in ({"username": "bad name", "password": "12345678", "role": "officer"},
                {"username": "ok", "password": "short", "role": "officer"},
                {"username": "ok", "password": "12345678", "role": "king"},
                {"username": "ok", "password": "12345678"}):
        st, doc, _ = c.srv.request("POST", "/v1/admin/users", bad, token=c.admin)
        assert st == 400 and doc["code"] == "invalid_field", (bad, doc)
    st, doc, _ = c.srv.request("GET", "/v1/admin/users", token=c.admin)
    names = [u["username"] for u in doc["users"]]
    assert "admin" in names and "olivia" in names and "ok" not in names


def test_totp_enrolment_and_login(c):
    make_user(c, "tom", "officer")
    st, doc, _ = c.srv.login("tom", "correct horse")
    tok = doc["token"]
    st, en, _ = c.srv.request("POST", "/v1/me/totp", token=tok)
    assert st == 200 and en["otpauth_uri"].startswith("otpauth://totp/dems:tom?secret=")
    secret = en["secret"]
    st, doc, _ = c.srv.request("POST", "/v1/me/totp/confirm", {"code": "000000"}, token=tok)
    if totp(secret) != "000000":
        assert st == 400 and doc["code"] == "invalid_totp"
    # The previous step's code is accepted (clock skew) and enables TOTP.
    st, doc, _ = c.srv.request("POST", "/v1/me/totp/confirm", {"code": totp(secret, step_offset=-1)},
                               token=tok)
    assert st == 200 and doc["totp_enabled"] is True, doc
    # Now a password alone is not enough.
    st, doc, _ = c.srv.login("tom", "correct horse")
    assert st == 401 and doc["code"] == "totp_required"
    st, doc, _ = c.srv.login("tom", "correct horse", totp="123456" if totp(secret) != "123456" else "654321")
    assert st == 401 and doc["code"] == "invalid_totp"
    code = totp(secret)
    st, doc, _ = c.srv.login("tom", "correct horse", totp=code)
    assert st == 200, doc
    # The same code cannot be used twice (replay), nor an older step's.
    st, doc, _ = c.srv.login("tom", "correct horse", totp=code)
    assert st == 401 and doc["code"] == "invalid_totp"
    st, doc, _ = c.srv.request("GET", "/v1/me", token=c.srv.login("olivia", "correct horse")[1]["token"])
    assert doc["totp_enabled"] is False


def test_account_throttled_after_failures(c):
    make_user(c, "tina", "officer")
    for _ in range(3):
        st, _, _ = c.srv.login("tina", "wrong password")
        assert st == 401
    st, doc, r = c.srv.login("tina", "correct horse")  # right password, but throttled
    assert st == 429 and doc["code"] == "too_many_attempts"
    assert int(r.getheader("Retry-After")) > 0
    # Other accounts are unaffected.
    assert c.srv.login("olivia", "correct horse")[0] == 200


def test_address_throttled(c):
    # Failures against many accounts from one address add up (limit 8 here;
    # earlier tests already spent some). Clear, then count exactly.
    c.srv.psql("DELETE FROM login_throttle")
    for i in range(8):
        assert c.srv.login(f"ghost{i}", "wrong password")[0] == 401
    st, doc, _ = c.srv.login("olivia", "correct horse")
    assert st == 429, doc
    c.srv.psql("DELETE FROM login_throttle")
    assert c.srv.login("olivia", "correct horse")[0] == 200


def entry(c, seq):
    """The ledger entry at seq, decoded from its canonical bytes."""
    st, out, err = c.srv.psql(f"SELECT convert_from(bytes, 'UTF8') FROM ledger_entries WHERE seq = {seq}")
    assert st == 0, err
    return json.loads(out)


def lock_out(c, name):
    for _ in range(3):
        assert c.srv.login(name, "wrong password")[0] == 401


def test_lockout_says_when_to_retry(c):
    c.srv.psql("DELETE FROM login_throttle")
    make_user(c, "rita", "officer")
    lock_out(c, "rita")
    st, doc, r = c.srv.login("rita", "correct horse")
    wait = int(r.getheader("Retry-After"))
    assert st == 429 and 55 <= wait <= 60, (st, wait)
    assert f"try again in {wait} seconds" in doc["detail"], doc
    # 50 s of the 60 s window have passed: the answer says so.
    c.srv.psql("UPDATE login_throttle SET window_start = now() - interval '50 seconds'"
               " WHERE key = 'u:rita'")
    st, doc, r = c.srv.login("rita", "correct horse")
    assert st == 429 and 1 <= int(r.getheader("Retry-After")) <= 10, r.getheader("Retry-After")
    c.srv.psql("DELETE FROM login_throttle")


def test_admin_lifts_a_lockout(c):
    c.srv.psql("DELETE FROM login_throttle")
    make_user(c, "lara", "officer")
    lock_out(c, "lara")
    assert c.srv.login("lara", "correct horse")[0] == 429
    st, doc, _ = c.srv.request("GET", "/v1/admin/lockouts", token=c.admin)
    assert st == 200 and doc["next_cursor"] is None, doc
    mine = [x for x in doc["lockouts"] if x.get("username") == "lara"]
    assert len(mine) == 1 and mine[0]["locked"] is True and mine[0]["failures"] == 3, doc
    assert mine[0]["kind"] == "user" and mine[0]["until"] > mine[0]["since"]
    # Only administrators see or lift lockouts.
    officer = c.srv.login("olivia", "correct horse")[1]["token"]
    assert c.srv.request("GET", "/v1/admin/lockouts", token=officer)[0] == 403
    assert c.srv.request("POST", "/v1/admin/lockouts/lift", {"username": "lara"},
                         token=officer)[0] == 403
    for bad in ({}, {"username": "lara", "address": "127.0.0.1"}, {"username": "no spaces"}):
        st, doc, _ = c.srv.request("POST", "/v1/admin/lockouts/lift", bad, token=c.admin)
        assert st == 400 and doc["code"] == "invalid_field", (bad, doc)
    st, doc, _ = c.srv.request("POST", "/v1/admin/lockouts/lift", {"username": "LARA"},
                               token=c.admin)
    assert st == 200 and doc["lifted"] is True and doc["failures_cleared"] == 3, doc
    e = entry(c, doc["seq"])
    assert e["type"] == "LOCKOUT_LIFTED" and e["actor"] == {"kind": "user", "id": "admin"}, e
    assert e["payload"] == {"username": "lara", "failures": 3}, e
    assert c.srv.login("lara", "correct horse")[0] == 200
    st, doc, _ = c.srv.request("POST", "/v1/admin/lockouts/lift", {"username": "lara"},
                               token=c.admin)
    assert st == 200 and doc == {"lifted": False, "failures_cleared": 0}, doc
    # An address locked by guesses at many names is lifted the same way.
    for i in range(8):
        c.srv.login(f"ghost{i}", "wrong password")
    assert c.srv.login("olivia", "correct horse")[0] == 429
    st, doc, _ = c.srv.request("POST", "/v1/admin/lockouts/lift", {"address": "127.0.0.1"},
                               token=c.admin)
    assert st == 200 and doc["lifted"] is True and doc["failures_cleared"] >= 8, doc
    assert entry(c, doc["seq"])["payload"]["address"] == "127.0.0.1"
    assert c.srv.login("olivia", "correct horse")[0] == 200
    c.srv.psql("DELETE FROM login_throttle")


def test_usernames_are_case_folded(c):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": "OfficerCase", "password": "correct horse",
                                "role": "officer"}, token=c.admin)
    assert st == 201 and doc["username"] == "officercase", doc
    for name in ("officercase", "OFFICERCASE", "officerCASE"):
        st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                                   {"username": name, "password": "correct horse",
                                    "role": "admin"}, token=c.admin)
        assert st == 409 and doc["code"] == "user_exists", (name, doc)
    for name in ("officercase", "OFFICERCASE", "OfficerCase"):
        st, doc, _ = c.srv.login(name, "correct horse")
        assert st == 200, (name, doc)
        assert c.srv.request("GET", "/v1/me", token=doc["token"])[1]["username"] == "officercase"
    # Failures count against the one account however the name is written.
    for name in ("OFFICERCASE", "officercase", "OfficerCase"):
        assert c.srv.login(name, "wrong password")[0] == 401
    assert c.srv.login("officercase", "correct horse")[0] == 429
    c.srv.psql("DELETE FROM login_throttle")
    # The database refuses an unfolded name whoever writes it.
    st, _, err = c.srv.psql("INSERT INTO users (username, role, password_hash)"
                            " VALUES ('Shouty', 'officer', 'x')")
    assert st != 0 and "users_username_folded" in err, err
    r = c.srv.demsd("admin", "create-user", "--data", c.srv.data, "--username", "OfficerCase",
                    "--role", "officer", input="correct horse\ncorrect horse\n")
    assert r.returncode != 0 and "already exists" in (r.stdout + r.stderr), r


def test_api_tokens(c):
    st, doc, _ = c.srv.login("olivia", "correct horse")
    session = doc["token"]
    st, t, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "nightly export", "ttl_days": 7},
                             token=session)
    assert st == 201 and t["token"].startswith("dems_api_") and t["name"] == "nightly export"
    api = t["token"]
    st, me, _ = c.srv.request("GET", "/v1/me", token=api)
    assert st == 200 and me["token_kind"] == "api"
    # An API token cannot mint more tokens.
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "x"}, token=api)
    assert st == 403 and doc["code"] == "session_required"
    st, lst, _ = c.srv.request("GET", "/v1/me/tokens", token=session)
    assert [x["id"] for x in lst["tokens"]] == [t["id"]]
    assert "token" not in lst["tokens"][0]
    st, doc, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "x", "ttl_days": 9999},
                               token=session)
    assert st == 400
    assert c.srv.request("DELETE", f"/v1/me/tokens/{t['id']}", token=session)[0] == 204
    assert c.srv.request("GET", "/v1/me", token=api)[0] == 401
    assert c.srv.request("DELETE", f"/v1/me/tokens/{t['id']}", token=session)[0] == 404
    assert c.srv.request("DELETE", "/v1/me/tokens/abc", token=session)[0] == 404


def walk(c, path, key, token, limit=2):
    """Every item of a list, page by page, following the Link header."""
    items, url, pages = [], f"{path}?limit={limit}", 0
    while url:
        st, doc, r = c.srv.request("GET", url, token=token)
        assert st == 200 and len(doc[key]) <= limit, (url, doc)
        items += doc[key]
        pages += 1
        link = r.getheader("Link")
        assert (link is None) == (doc["next_cursor"] is None), (link, doc)
        url = link[1:link.index(">")] if link else None
    return items, pages


def test_lists_page_with_cursor_and_link(c):
    for i in range(3):
        make_user(c, f"pager{i}", "officer")
    st, doc, _ = c.srv.request("GET", "/v1/admin/users?limit=200", token=c.admin)
    everyone = [u["id"] for u in doc["users"]]
    got, pages = walk(c, "/v1/admin/users", "users", c.admin)
    assert [u["id"] for u in got] == everyone and pages == (len(everyone) + 1) // 2
    session = c.srv.login("pager0", "correct horse")[1]["token"]
    made = [c.srv.request("POST", "/v1/me/tokens", {"name": f"t{i}"}, token=session)[1]["id"]
            for i in range(5)]
    got, pages = walk(c, "/v1/me/tokens", "tokens", session)
    assert [t["id"] for t in got] == made and pages == 3
    for path in ("/v1/admin/users", "/v1/me/tokens", "/v1/admin/lockouts"):
        for q, name in (("limit=0", "limit"), ("limit=201", "limit"), ("cursor=%3Cx%3E", "cursor"),
                        ("cursor=", "cursor")):
            st, doc, _ = c.srv.request("GET", f"{path}?{q}", token=session if "me" in path
                                       else c.admin)
            assert st == 400 and doc["code"] == "invalid_parameter", (path, q, doc)
            assert f'"{name}"' in doc["detail"], (path, q, doc)


def test_cannot_revoke_others_tokens(c):
    st, doc, _ = c.srv.login("olivia", "correct horse")
    st, t, _ = c.srv.request("POST", "/v1/me/tokens", {"name": "mine"}, token=doc["token"])
    other = c.srv.login("pat", "correct horse")[1]["token"]
    assert c.srv.request("DELETE", f"/v1/me/tokens/{t['id']}", token=other)[0] == 404
    assert c.srv.request("GET", "/v1/me", token=t["token"])[0] == 200


def test_disabled_user_cannot_log_in(c):
    make_user(c, "dora", "officer")
    tok = c.srv.login("dora", "correct horse")[1]["token"]
    c.srv.psql("UPDATE users SET disabled = true WHERE username = 'dora'")
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 401
    assert c.srv.login("dora", "correct horse")[0] == 401


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
