# SPDX-License-Identifier: Apache-2.0
"""Retention policies, legal holds and disposal by batch (issue 15;
docs/operations.md, "Retention, holds and disposal"), against a real demsd,
PostgreSQL and worker: policies by category counted from ingestion or from
case closure; a held artefact survives; an approved batch soft-deletes
(410 evidence_deleted, recoverable within the window), then crypto-erases
(the blob unreadable even with the master key, 410 evidence_disposed with
the DISPOSED entry's index); every step is ledgered and the ledger still
verifies; bad requests get clear errors."""
import hashlib
import os
import shutil
import subprocess
import time

from harness import Server, ledger_entries, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "verify",
                                     "dems-verify"))
SETTINGS = {"housekeeping_interval": 1, "job_backoff_base": 1, "job_backoff_max": 2,
            "refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000}


class Ctx:
    pass


def sha(data):
    return hashlib.sha256(data).hexdigest()


def req(c, method, path, body=None, token=None):
    st, doc, r = c.srv.request(method, path, body, token=token or c.admin)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc, r


def upload(c, token, data, name):
    import base64
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta,
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def wait(what, fn, timeout=60):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what}: not in time ({got})")


def entries_of(c, kind):
    return [e["body"] for e in ledger_entries(c.srv, c.admin) if e["body"]["type"] == kind]


def blob_path(c, ev):
    return os.path.join(c.srv.data, "blobs", ev[:2], ev)


def decrypt(c, path):
    return subprocess.run([os.environ.get("DEMSD", "demsd"), "admin", "decrypt-blob", "--data",
                           c.srv.data, "--file", path], capture_output=True, timeout=60)


def backdate(c, ev, days):
    """Ingested `days` ago: retention counts from there."""
    st, out, err = c.srv.psql(f"UPDATE artefacts SET created_at = now() - interval '{days} days'"
                              f" WHERE id = '{ev}'")
    assert st == 0, err


def batch(c):
    st, doc, _ = req(c, "POST", "/v1/admin/disposal/batches")
    assert st == 202 and doc["state"] == "listing", doc
    bid = doc["id"]

    def listed():
        st, d, _ = req(c, "GET", f"/v1/admin/disposal/batches/{bid}")
        return d if d["state"] != "listing" else None
    return wait("listing", listed)


def items(c, bid):
    st, doc, _ = req(c, "GET", f"/v1/admin/disposal/batches/{bid}/items?limit=200")
    assert st == 200, doc
    return {i["evidence"]: i for i in doc["items"]}


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    st, doc, _ = req(c, "POST", "/v1/admin/users",
                     {"username": "rofficer", "password": "correct horse", "role": "officer"})
    assert st == 201, doc
    c.off = c.srv.login("rofficer", "correct horse")[1]["token"]
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "R/1", "title": "Shop theft"}, c.off)
    assert st == 201, doc
    c.case, c.case_ref = doc["id"], "R/1"
    c.data = {k: f"RETENTION-{k}-".encode() + os.urandom(50_000)
              for k in ("nfa", "keep", "held", "case1", "recover", "nopolicy")}
    c.ev = {k: upload(c, c.off, v, f"{k}.bin") for k, v in c.data.items()}
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/exhibits",
                     {"evidence": c.ev["case1"], "reference": "EX1"}, c.off)
    assert st == 201, doc
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_policies_are_created_and_set_by_admins_only(c):
    st, doc, _ = req(c, "POST", "/v1/admin/retention/policies",
                     {"name": "No further action", "period_days": 30,
                      "counted_from": "ingestion", "description": "NFA: 30 days"})
    assert st == 201 and doc["period_days"] == 30 and doc["id"] > 0, doc
    c.nfa = doc["id"]
    st, doc, _ = req(c, "POST", "/v1/admin/retention/policies",
                     {"name": "Charged", "period_days": 10, "counted_from": "case_closure"})
    assert st == 201, doc
    c.charged = doc["id"]
    st, doc, _ = req(c, "POST", "/v1/admin/retention/policies",
                     {"name": "no FURTHER action", "period_days": 3, "counted_from": "ingestion"})
    assert st == 409 and doc["code"] == "policy_exists", doc
    for bad, field in (({"name": "x", "period_days": 0, "counted_from": "ingestion"},
                        "period_days"),
                       ({"name": "x", "period_days": 5, "counted_from": "closure"},
                        "counted_from"),
                       ({"period_days": 5, "counted_from": "ingestion"}, "name"),
                       ({"name": "x", "period_days": "5", "counted_from": "ingestion"},
                        "period_days")):
        st, doc, _ = req(c, "POST", "/v1/admin/retention/policies", bad)
        assert st == 400 and f'"{field}"' in doc["detail"], (bad, doc)
    st, doc, _ = req(c, "POST", "/v1/admin/retention/policies",
                     {"name": "y", "period_days": 5, "counted_from": "ingestion"}, c.off)
    assert st == 403, doc
    st, doc, _ = req(c, "GET", "/v1/admin/retention/policies")
    assert [p["name"] for p in doc["policies"]] == ["No further action", "Charged"], doc
    for k in ("nfa", "keep", "held", "recover"):
        st, doc, _ = req(c, "PUT", f"/v1/admin/evidence/{c.ev[k]}/retention", {"policy": c.nfa})
        assert st == 200 and doc["policy_name"] == "No further action" and doc["seq"] > 0, doc
    st, doc, _ = req(c, "PUT", f"/v1/admin/cases/{c.case}/retention", {"policy": c.charged})
    assert st == 200 and doc["case"] == c.case, doc
    st, doc, _ = req(c, "PUT", f"/v1/admin/evidence/{c.ev['keep']}/retention", {"policy": 99999})
    assert st == 400 and '"policy"' in doc["detail"], doc
    st, doc, _ = req(c, "PUT", f"/v1/admin/evidence/{'0' * 64}/retention", {"policy": c.nfa})
    assert st == 404, doc
    st, doc, _ = req(c, "PUT", f"/v1/admin/cases/{c.case}/retention", {})
    assert st == 400 and '"policy"' in doc["detail"], doc
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.ev['nfa']}")
    assert doc["retention_policy"] == c.nfa, doc
    sets = entries_of(c, "RETENTION_SET")
    assert len(sets) == 5 and sets[-1]["case"] == c.case_ref, sets[-1]
    assert len(entries_of(c, "RETENTION_POLICY_CREATED")) == 2


def test_only_what_is_due_and_not_held_is_listed(c):
    # 40 days old under a 30-day policy: due; "keep" is 10 days old.
    for k in ("nfa", "held", "recover", "case1", "nopolicy"):
        backdate(c, c.ev[k], 40)
    backdate(c, c.ev["keep"], 10)
    st, doc, _ = req(c, "POST", "/v1/admin/holds",
                     {"evidence": c.ev["held"], "reason": "appeal pending"})
    assert st == 201 and doc["active"] is True and doc["placed_seq"] > 0, doc
    c.hold = doc["id"]
    st, doc, _ = req(c, "POST", "/v1/admin/holds", {"case": c.case, "reason": "x",
                                                   "evidence": c.ev["nfa"]})
    assert st == 400, doc
    st, doc, _ = req(c, "POST", "/v1/admin/holds", {"case": 99999, "reason": "x"})
    assert st == 404 and doc["code"] == "case_not_found", doc
    st, doc, _ = req(c, "POST", "/v1/admin/holds", {"case": c.case})
    assert st == 400 and '"reason"' in doc["detail"], doc
    st, doc, _ = req(c, "GET", "/v1/admin/disposal/due")
    due = {d["evidence"] for d in doc["due"]}
    # The case's policy counts from closure: the case is open, so case1 is kept;
    # nopolicy has no policy at all; held is held; keep is not old enough.
    assert due == {c.ev["nfa"], c.ev["recover"]}, doc


def test_approved_batch_soft_deletes_then_recovery_within_the_window(c):
    b = batch(c)
    assert b["state"] == "proposed" and b["items"]["proposed"] == 2, b
    c.batch1 = b["id"]
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/approve",
                     {"recover_days": 7})
    assert st == 400 and '"reason"' in doc["detail"], doc
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/approve",
                     {"reason": "NFA, retention ended", "recover_days": 7}, c.off)
    assert st == 403, doc
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/approve",
                     {"reason": "NFA, retention ended", "recover_days": 7})
    assert st == 202 and doc["state"] == "approved", doc
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/approve",
                     {"reason": "again"})
    assert st == 409 and doc["code"] == "batch_not_proposed", doc
    wait("soft deletion", lambda: req(c, "GET", f"/v1/admin/disposal/batches/{b['id']}")[1]
         ["state"] == "soft_deleted")
    for k in ("nfa", "recover"):
        st, doc, _ = req(c, "GET", f"/v1/evidence/{c.ev[k]}/content")
        assert st == 410 and doc["code"] == "evidence_deleted" and doc["recover_until"], doc
    approved = entries_of(c, "DISPOSAL_APPROVED")
    assert {e["artefact"] for e in approved} == {c.ev["nfa"], c.ev["recover"]}, approved
    assert approved[0]["actor"] == {"kind": "user", "id": "admin"}, approved[0]
    # Recovered within the window: the content is back, byte for byte.
    st, doc, _ = req(c, "POST", f"/v1/admin/evidence/{c.ev['recover']}/recover",
                     {"reason": "disposal was a mistake: charge pending"})
    assert st == 200 and doc["recovered"] is True, doc
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{c.ev['recover']}/content", token=c.admin)
    assert st == 200 and body == c.data["recover"]
    st, doc, _ = req(c, "POST", f"/v1/admin/evidence/{c.ev['recover']}/recover", {"reason": "x"})
    assert st == 409 and doc["code"] == "not_recoverable", doc
    assert [e["artefact"] for e in entries_of(c, "DISPOSAL_RECOVERED")] == [c.ev["recover"]]
    assert items(c, b["id"])[c.ev["recover"]]["state"] == "recovered"
    # Kept from now on: no policy (the charge is pending).
    st, doc, _ = req(c, "PUT", f"/v1/admin/evidence/{c.ev['recover']}/retention",
                     {"policy": None})
    assert st == 200 and doc["policy"] is None, doc


def test_after_the_window_the_blob_is_crypto_erased(c):
    path = blob_path(c, c.ev["nfa"])
    # Another name for the same file (as a snapshot or a forgotten copy on the
    # same inode would be): readable with the master key before erasure.
    link = os.path.join(c.srv.root, "nfa-link.blob")
    os.link(path, link)
    r = decrypt(c, link)
    assert r.returncode == 0 and r.stdout == c.data["nfa"], r.stderr
    # The window passes: housekeeping queues the erasure.
    st, out, err = c.srv.psql("UPDATE disposal_batches SET recover_until = now()"
                              f" - interval '1 second' WHERE id = {c.batch1}")
    assert st == 0, err
    wait("erasure", lambda: req(c, "GET", f"/v1/admin/disposal/batches/{c.batch1}")[1]
         ["state"] == "done")
    assert not os.path.exists(path)
    r = decrypt(c, link)
    assert r.returncode == 1 and b"cannot decrypt" in r.stderr and r.stdout == b"", r
    assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    disposed = [e for e in entries_of(c, "DISPOSED") if e["artefact"] == c.ev["nfa"]]
    assert len(disposed) == 1 and disposed[0]["payload"]["method"] == "crypto-erasure", disposed
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.ev['nfa']}/content")
    assert st == 410 and doc["code"] == "evidence_disposed", doc
    it = items(c, c.batch1)[c.ev["nfa"]]
    assert it["state"] == "destroyed" and doc["disposal_seq"] == it["disposed_seq"], (doc, it)
    # The tombstone: its hash and custody remain.
    st, ev, _ = req(c, "GET", f"/v1/evidence/{c.ev['nfa']}")
    assert st == 200 and ev["sha256"] == c.ev["nfa"] and ev["disposal_seq"] == it["disposed_seq"]
    st, doc, _ = req(c, "POST", f"/v1/admin/evidence/{c.ev['nfa']}/recover", {"reason": "late"})
    assert st == 410 and doc["code"] == "evidence_disposed", doc


def test_held_artefact_survives_and_released_hold_lets_it_go(c):
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.ev['held']}/content")
    assert st == 200, doc
    st, doc, _ = req(c, "POST", f"/v1/admin/holds/{c.hold}/release",
                     {"reason": "appeal decided"})
    assert st == 200 and doc["active"] is False and doc["released_by"] == "admin", doc
    st, doc, _ = req(c, "POST", f"/v1/admin/holds/{c.hold}/release", {"reason": "again"})
    assert st == 409 and doc["code"] == "hold_released", doc
    # A hold placed after approval on a case it is an exhibit of (a case
    # with no policy of its own) stops the erasure: recovered instead.
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "R/2", "title": "Appeal"}, c.off)
    assert st == 201, doc
    c.case2 = doc["id"]
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case2}/exhibits",
                     {"evidence": c.ev["held"], "reference": "EX1"}, c.off)
    assert st == 201, doc
    b = batch(c)
    assert set(items(c, b["id"])) == {c.ev["held"]}, items(c, b["id"])
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/approve",
                     {"reason": "appeal over", "recover_days": 1})
    assert st == 202, doc
    wait("soft deletion", lambda: req(c, "GET", f"/v1/admin/disposal/batches/{b['id']}")[1]
         ["state"] == "soft_deleted")
    st, doc, _ = req(c, "POST", "/v1/admin/holds",
                     {"case": c.case2, "reason": "new appeal lodged"})
    assert st == 201 and doc["case_reference"] == "R/2", doc
    c.case_hold = doc["id"]
    st, out, err = c.srv.psql("UPDATE disposal_batches SET recover_until = now()"
                              f" - interval '1 second' WHERE id = {b['id']}")
    assert st == 0, err
    wait("batch done", lambda: req(c, "GET", f"/v1/admin/disposal/batches/{b['id']}")[1]
         ["state"] == "done")
    assert items(c, b["id"])[c.ev["held"]]["state"] == "recovered"
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{c.ev['held']}/content", token=c.admin)
    assert st == 200 and body == c.data["held"]
    rec = [e for e in entries_of(c, "DISPOSAL_RECOVERED") if e["artefact"] == c.ev["held"]]
    assert rec and rec[0]["actor"] == {"kind": "system", "id": "hold"}, rec
    st, doc, _ = req(c, "GET", "/v1/admin/holds?active=true")
    assert [h["id"] for h in doc["holds"]] == [c.case_hold], doc
    st, doc, _ = req(c, "GET", "/v1/admin/holds?active=maybe")
    assert st == 400, doc


def test_recover_days_zero_erases_at_once_and_cancel(c):
    # Case closed 20 days ago under "Charged" (10 days from closure): case1 is due.
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/close", {"reason": "charged"}, c.off)
    assert st == 200, doc
    st, out, err = c.srv.psql("UPDATE cases SET closed_at = now() - interval '20 days'"
                              f" WHERE id = {c.case}")
    assert st == 0, err
    b = batch(c)
    assert set(items(c, b["id"])) == {c.ev["case1"]}, items(c, b["id"])
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/cancel",
                     {"reason": "review the list first"})
    assert st == 200 and doc["state"] == "cancelled", doc
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{c.ev['case1']}/content", token=c.admin)
    assert st == 200 and body == c.data["case1"]
    b = batch(c)
    # The same bytes are also a gallery's image (blobs are content-addressed):
    # disposing of the artefact must not destroy the gallery's record.
    ev = c.ev["case1"]
    st, out, err = c.srv.psql(
        "WITH g AS (INSERT INTO face_galleries (name, created_by) VALUES ('custody', 1)"
        " RETURNING id) INSERT INTO face_subjects (gallery_id, reference, image_sha256,"
        f" image_blob, enrolled_by) SELECT g.id, 'C/1', '{ev}', '{ev}', 1 FROM g")
    assert st == 0, err
    st, doc, _ = req(c, "POST", f"/v1/admin/disposal/batches/{b['id']}/approve",
                     {"reason": "charged, retention ended", "recover_days": 0})
    assert st == 202, doc
    wait("batch done", lambda: req(c, "GET", f"/v1/admin/disposal/batches/{b['id']}")[1]
         ["state"] == "done")
    r = decrypt(c, blob_path(c, ev))
    assert r.returncode == 0 and r.stdout == c.data["case1"], r.stderr
    assert items(c, b["id"])[ev]["state"] == "destroyed"
    st, doc, _ = req(c, "GET", f"/v1/evidence/{c.ev['case1']}/content")
    assert st == 410 and doc["code"] == "evidence_disposed", doc
    for bad in ("/v1/admin/disposal/batches/99999", "/v1/admin/disposal/batches/abc"):
        st, doc, _ = req(c, "GET", bad)
        assert st == 404 and doc["code"] == "batch_not_found", doc


def test_everything_else_unharmed_and_the_ledger_verifies(c):
    for k in ("keep", "held", "recover", "nopolicy"):
        st, body, _ = c.srv.request("GET", f"/v1/evidence/{c.ev[k]}/content", token=c.admin)
        assert st == 200 and sha(body) == c.ev[k], k
    st, doc, _ = req(c, "GET", "/healthz")
    assert st == 200
    r = c.srv.demsd("admin", "verify-blobs", "--data", c.srv.data)
    assert r.returncode == 0 and " 0 bad, 0 orphans" in r.stdout, r.stdout + r.stderr
    size = len(ledger_entries(c.srv, c.admin))
    deadline = time.time() + 15
    while time.time() < deadline:
        st, note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
        if int(note.decode().split("\n")[1]) >= size:
            break
        time.sleep(0.3)
    st, vkey, _ = c.srv.request("GET", "/v1/ledger/key")
    st, body, _ = c.srv.request("GET", "/v1/ledger/export", token=c.admin)
    assert st == 200
    path = os.path.join(c.srv.root, "export.jsonl")
    with open(path, "wb") as f:
        f.write(body)
    if not shutil.which(VERIFY) and not os.path.exists(VERIFY):
        raise AssertionError(f"dems-verify not found at {VERIFY}")
    r = subprocess.run([VERIFY, "ledger", path, "--key", vkey.decode().strip()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
