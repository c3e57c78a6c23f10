# SPDX-License-Identifier: Apache-2.0
"""Account administration (issue 15; docs/api.md, "Accounts (admin)"):
filtered lists with the last sign-in, role changes and disabling that revoke
sessions and API tokens at once, required TOTP (only the setup routes answer
until it is set up), password resets, an admin who cannot lock themselves
out, every change one USER_UPDATED entry, and bad bodies refused naming the
field."""
import base64
import hashlib
import hmac
import struct
import time

from harness import Server, ledger_entries, run_tests


class Ctx:
    pass


def totp(secret_b32, step_offset=0):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int(time.time() // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def req(c, method, path, body=None, token=None):
    st, doc, r = c.srv.request(method, path, body, token=token or c.admin)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc


def make_user(c, name, role="officer"):
    st, doc = req(c, "POST", "/v1/admin/users",
                  {"username": name, "password": "correct horse", "role": role})
    assert st == 201, doc
    return doc["id"]


def login(c, name, password="correct horse"):
    st, doc, _ = c.srv.login(name, password)
    return doc["token"] if st == 200 else None


def updates(c, username):
    return [e["body"]["payload"] for e in ledger_entries(c.srv, c.admin)
            if e["body"]["type"] == "USER_UPDATED" and e["body"]["payload"].get("username") == username]


def setup():
    c = Ctx()
    c.srv = Server({"login_max_failures": 50}).start()
    c.admin = c.srv.admin_token()
    st, me = req(c, "GET", "/v1/me")
    c.admin_id = me["id"]
    c.olly = make_user(c, "olly")
    c.paula = make_user(c, "paula", "prosecutor")
    c.tim = make_user(c, "tim")
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_creation_is_ledgered_and_names_are_unique(c):
    made = [(e["body"]["payload"]["username"], e["body"]["payload"]["role"],
             e["body"]["actor"]["id"]) for e in ledger_entries(c.srv, c.admin)
            if e["body"]["type"] == "USER_CREATED"]
    assert made == [("olly", "officer", "admin"), ("paula", "prosecutor", "admin"),
                    ("tim", "officer", "admin")], made
    st, doc = req(c, "POST", "/v1/admin/users",
                  {"username": "OLLY", "password": "correct horse", "role": "officer"})
    assert st == 409 and doc["code"] == "user_exists", doc
    assert len([e for e in ledger_entries(c.srv, c.admin)
                if e["body"]["type"] == "USER_CREATED"]) == 3


def test_list_filters_and_last_sign_in(c):
    st, doc = req(c, "GET", "/v1/admin/users?role=officer")
    assert [u["username"] for u in doc["users"]] == ["olly", "tim"], doc
    assert all(u["last_login_at"] is None for u in doc["users"]), doc
    assert login(c, "olly")
    st, doc = req(c, "GET", "/v1/admin/users?q=OL")
    assert [u["username"] for u in doc["users"]] == ["olly"], doc
    assert doc["users"][0]["last_login_at"] is not None and doc["users"][0]["totp_required"] is False
    st, doc = req(c, "GET", "/v1/admin/users?role=superuser")
    assert st == 400 and '"role"' in doc["detail"], doc
    st, doc = req(c, "GET", "/v1/admin/users?disabled=perhaps")
    assert st == 400 and '"disabled"' in doc["detail"], doc


def test_disable_revokes_at_once_and_enable_restores(c):
    tok = login(c, "olly")
    st, api = req(c, "POST", "/v1/me/tokens", {"name": "script"}, tok)
    assert st == 201, api
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.olly}", {"disabled": True})
    assert st == 200 and doc["disabled"] is True and doc["seq"] is not None, doc
    for t in (tok, api["token"]):
        assert c.srv.request("GET", "/v1/me", token=t)[0] == 401
    assert login(c, "olly") is None
    st, doc = req(c, "GET", "/v1/admin/users?disabled=true")
    assert [u["username"] for u in doc["users"]] == ["olly"], doc
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.olly}", {"disabled": False})
    assert st == 200 and doc["disabled"] is False, doc
    assert login(c, "olly")
    changes = [u["changes"] for u in updates(c, "olly")]
    assert changes[-2:] == [{"disabled": {"from": False, "to": True}},
                            {"disabled": {"from": True, "to": False}}], changes
    # Repeating a state changes nothing and records nothing.
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.olly}", {"disabled": False})
    assert st == 200 and doc["seq"] is None, doc
    assert len(updates(c, "olly")) == len(changes)


def test_role_change_revokes_and_takes_effect(c):
    tok = login(c, "tim")
    assert c.srv.request("GET", "/v1/cases", token=tok)[0] == 200
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.tim}", {"role": "prosecutor"})
    assert st == 200 and doc["role"] == "prosecutor", doc
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 401
    tok = login(c, "tim")
    st, doc, _ = c.srv.request("POST", "/v1/cases", {"reference": "X/1", "title": "x"}, token=tok)
    assert st == 403, doc
    last = updates(c, "tim")[-1]
    assert last["changes"] == {"role": {"from": "officer", "to": "prosecutor"}}, last
    assert last["tokens_revoked"] is True


def test_totp_required_allows_only_its_setup(c):
    tok = login(c, "paula")
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.paula}", {"totp_required": True})
    assert st == 200 and doc["totp_required"] is True, doc
    st, doc, _ = c.srv.request("GET", "/v1/me/shares", token=tok)
    assert st == 403 and doc["code"] == "totp_setup_required", doc
    st, me, _ = c.srv.request("GET", "/v1/me", token=tok)
    assert st == 200 and me["totp_required"] is True and me["totp_enabled"] is False, me
    st, en, _ = c.srv.request("POST", "/v1/me/totp", token=tok)
    assert st == 200, en
    st, doc, _ = c.srv.request("POST", "/v1/me/totp/confirm",
                               {"code": totp(en["secret"], step_offset=-1)}, token=tok)
    assert st == 200 and doc["totp_enabled"] is True, doc
    st, doc, _ = c.srv.request("GET", "/v1/me/shares", token=tok)
    assert st == 200, doc


def test_password_reset_revokes_and_replaces(c):
    tok = login(c, "olly")
    st, doc = req(c, "POST", f"/v1/admin/users/{c.olly}/password", {"password": "short"})
    assert st == 400 and '"password"' in doc["detail"], doc
    st, doc = req(c, "POST", f"/v1/admin/users/{c.olly}/password",
                  {"password": "a new long passphrase"})
    assert st == 200 and doc["username"] == "olly" and doc["seq"] > 0, doc
    assert c.srv.request("GET", "/v1/me", token=tok)[0] == 401
    assert login(c, "olly") is None
    st, doc, _ = c.srv.login("olly", "a new long passphrase")
    assert st == 200, doc
    last = updates(c, "olly")[-1]
    assert last["changes"] == {"password": "reset"}, last
    assert "a new long passphrase" not in str(last)
    st, doc = req(c, "POST", "/v1/admin/users/99999/password", {"password": "long enough pw"})
    assert st == 404 and doc["code"] == "user_not_found", doc


def test_bad_bodies_and_self_lockout(c):
    for body, field in (({"role": "superuser"}, "role"), ({"disabled": "yes"}, "disabled"),
                        ({"totp_required": 1}, "totp_required"), ({"password": "x"}, "password"),
                        ({}, "role")):
        st, doc = req(c, "PATCH", f"/v1/admin/users/{c.olly}", body)
        assert st == 400 and field in doc["detail"], (body, doc)
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.paula}", {"face_search": True})
    assert st == 400 and "face_search" in doc["detail"], doc
    for body in ({"disabled": True}, {"role": "officer"}):
        st, doc = req(c, "PATCH", f"/v1/admin/users/{c.admin_id}", body)
        assert st == 409 and doc["code"] == "cannot_change_self", doc
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.admin_id}", {"totp_required": False})
    assert st == 200, doc
    st, doc = req(c, "PATCH", "/v1/admin/users/99999", {"disabled": True})
    assert st == 404, doc
    tok = login(c, "olly", "a new long passphrase")
    assert tok
    st, doc = req(c, "PATCH", f"/v1/admin/users/{c.paula}", {"disabled": True}, tok)
    assert st == 403, doc
    assert c.srv.request("GET", "/healthz")[0] == 200


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
