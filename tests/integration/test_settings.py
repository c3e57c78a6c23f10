# SPDX-License-Identifier: Apache-2.0
"""Settings that change at run time (issue 15; docs/configuration.md,
"Settings at run time"): stored in PostgreSQL with their history, changed by
API and ledgered, in force at once (and on other nodes within the
housekeeping interval), kept across a restart, refused when bad."""
import time

from harness import Server, ledger_entries, run_tests


class Ctx:
    pass


def req(c, method, path, body=None, token=None):
    st, doc, _ = c.srv.request(method, path, body, token=token or c.admin)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc


def settings(c):
    st, doc = req(c, "GET", "/v1/admin/settings")
    assert st == 200, doc
    return {s["key"]: s for s in doc["settings"]}


def search(c, basis, threshold=None):
    body = {"purpose": "find the suspect", "legal_basis": basis, "authorisation": "AUTH-1",
            "scope": "footage", "probe": {"track": 999999}}
    if threshold is not None:
        body["threshold"] = threshold
    return req(c, "POST", f"/v1/cases/{c.case}/face/searches", body, c.off)


def setup():
    c = Ctx()
    c.srv = Server({"housekeeping_interval": 1, "face_legal_bases": "Basis one|Basis two",
                    "refusal_max_per_principal": 1000000}).start()
    c.admin = c.srv.admin_token()
    st, doc = req(c, "POST", "/v1/admin/users",
                  {"username": "soff", "password": "correct horse", "role": "officer"})
    assert st == 201, doc
    st, _ = req(c, "PATCH", f"/v1/admin/users/{doc['id']}", {"face_search": True})
    assert st == 200
    c.off = c.srv.login("soff", "correct horse")[1]["token"]
    st, doc = req(c, "POST", "/v1/cases", {"reference": "S/1", "title": "Settings"}, c.off)
    assert st == 201, doc
    c.case = doc["id"]
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_listed_with_their_configured_values(c):
    s = settings(c)
    assert set(s) == {"face_legal_bases", "face_threshold", "disposal_recover_days",
                      "portal_reject_retention_days", "share_max_days",
                      "portal_link_max_days"}, s
    assert s["face_legal_bases"]["value"] == "Basis one|Basis two", s
    assert s["face_threshold"]["source"] == "configuration" and s["face_threshold"]["stored"] is None
    st, doc = req(c, "GET", "/v1/admin/settings", token=c.off)
    assert st == 403, doc


def test_a_change_is_in_force_at_once_and_ledgered(c):
    # Before: "Basis three" is unknown; a threshold of 0.55 is allowed.
    st, doc = search(c, "Basis three")
    assert st == 400 and '"legal_basis"' in doc["detail"], doc
    st, doc = req(c, "PUT", "/v1/admin/settings/face_legal_bases",
                  {"value": "Basis one|Basis three"})
    assert st == 200 and doc["value"] == "Basis one|Basis three" and doc["seq"] >= 0, doc
    st, doc = req(c, "PUT", "/v1/admin/settings/face_threshold", {"value": 0.6})
    assert st == 200 and doc["value"] == "0.6", doc
    st, doc = search(c, "Basis two")
    assert st == 400 and '"legal_basis"' in doc["detail"], doc
    st, doc = search(c, "Basis three", threshold=0.55)
    assert st == 400 and '"threshold"' in doc["detail"] and "0.6" in doc["detail"], doc
    st, doc = search(c, "Basis three", threshold=0.7)
    assert st != 400 or '"legal_basis"' not in doc["detail"], doc  # past the purpose checks
    st, doc = req(c, "GET", f"/v1/cases/{c.case}/face", token=c.off)
    assert doc["legal_bases"] == ["Basis one", "Basis three"] and doc["threshold"] == 0.6, doc
    changed = [e["body"]["payload"] for e in ledger_entries(c.srv, c.admin)
               if e["body"]["type"] == "SETTING_CHANGED"]
    assert changed == [{"key": "face_legal_bases", "from": None, "to": "Basis one|Basis three"},
                       {"key": "face_threshold", "from": None, "to": "0.6"}], changed
    # The same value again changes nothing and records nothing.
    st, doc = req(c, "PUT", "/v1/admin/settings/face_threshold", {"value": "0.6"})
    assert st == 200 and doc["seq"] is None, doc


def test_a_limit_changed_is_enforced(c):
    st, doc = req(c, "POST", "/v1/admin/users",
                  {"username": "spros", "password": "correct horse", "role": "prosecutor"})
    assert st == 201, doc
    ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 20 * 86400))
    body = {"prosecutor": "spros", "expires_at": ahead}
    st, doc = req(c, "PUT", "/v1/admin/settings/share_max_days", {"value": 10})
    assert st == 200 and doc["value"] == "10", doc
    st, doc = req(c, "POST", f"/v1/cases/{c.case}/shares", body, c.off)
    assert st == 400 and doc["code"] == "expiry_too_far" and "share_max_days" in doc["detail"], doc
    st, doc = req(c, "PUT", "/v1/admin/settings/share_max_days", {"value": None})
    assert st == 200 and doc["value"] == "365", doc
    st, doc = req(c, "POST", f"/v1/cases/{c.case}/shares", body, c.off)
    assert st == 201, doc
    # A public link's default length never passes a lowered maximum.
    st, doc = req(c, "PUT", "/v1/admin/settings/portal_link_max_days", {"value": 1})
    assert st == 200, doc
    st, doc = req(c, "POST", f"/v1/cases/{c.case}/submission-links",
                  {"kind": "appeal", "title": "Witnesses to the theft"}, c.off)
    assert st == 201, doc
    left = time.mktime(time.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(
        time.gmtime())
    assert left <= 86400 + 60, doc


def test_bad_values_refused_and_nothing_changed(c):
    for key, value, code in (("face_threshold", 2, 400), ("face_threshold", "high", 400),
                             ("face_legal_bases", "A||B", 400), ("face_legal_bases", "", 400),
                             ("disposal_recover_days", -1, 400),
                             ("disposal_recover_days", True, 400),
                             ("listen", "0.0.0.0:80", 404), ("master_key_file", "/x", 404)):
        st, doc = req(c, "PUT", f"/v1/admin/settings/{key}", {"value": value})
        assert st == code, (key, value, doc)
        if code == 400:
            assert '"value"' in doc["detail"], doc
    st, doc = req(c, "PUT", "/v1/admin/settings/face_threshold", {})
    assert st == 400 and '"value"' in doc["detail"], doc
    st, doc = req(c, "PUT", "/v1/admin/settings/face_threshold", {"value": 0.9}, c.off)
    assert st == 403, doc
    assert settings(c)["face_threshold"]["value"] == "0.6"


def test_another_nodes_change_arrives_and_history_is_kept(c):
    # Another node (here: the database written directly) changes a setting.
    st, out, err = c.srv.psql("INSERT INTO settings (key, value, updated_by) VALUES"
                              " ('disposal_recover_days', '3', 1)")
    assert st == 0, err
    deadline = time.time() + 15
    while settings(c)["disposal_recover_days"]["value"] != "3":
        assert time.time() < deadline, settings(c)
        time.sleep(0.3)
    # Back to the configuration's value.
    st, doc = req(c, "PUT", "/v1/admin/settings/face_threshold", {"value": None})
    assert st == 200 and doc["value"] == "0.5" and doc["source"] == "configuration", doc
    st, doc = req(c, "GET", "/v1/admin/settings/face_threshold/history")
    assert [(h["from"], h["to"]) for h in doc["history"]] == [(None, "0.6"), ("0.6", None)], doc
    assert all(h["changed_by"] == "admin" and h["seq"] is not None for h in doc["history"])
    st, doc = req(c, "GET", "/v1/admin/settings/nope/history")
    assert st == 404 and doc["code"] == "setting_not_found", doc


def test_kept_across_a_restart(c):
    assert c.srv.stop() == 0
    c.srv.start()
    c.admin = c.srv.admin_token()
    s = settings(c)
    assert s["face_legal_bases"]["value"] == "Basis one|Basis three", s
    assert s["face_legal_bases"]["configured"] == "Basis one|Basis two", s
    assert s["face_threshold"]["value"] == "0.5", s


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
