# SPDX-License-Identifier: Apache-2.0
"""The custody ledger and the evidence store against a real demsd: uploads
become encrypted, content-addressed evidence with an INGESTED entry; reads
are ledgered; checkpoints, proofs and the export verify with dems-verify
(offline); PostgreSQL itself refuses to change history; and a database
superuser who rewrites history anyway (triggers bypassed) is caught and the
bad entry named."""
import base64
import glob
import hashlib
import json
import os
import re
import subprocess
import threading
import time

from harness import Server, eventually, raw_tls, read_response, run_tests, ledger_entries

TUS = {"Tus-Resumable": "1.0.0"}
DRIVER = os.environ.get("DEMS_LEDGER_DRIVER",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "..", "tests",
                                     "integration", "dems-ledger-driver"))
VERIFY = os.environ.get("DEMS_VERIFY",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "verify",
                                     "dems-verify"))


# Housekeeping every second and an integrity sweep every 2 s, so the
# periodic blob check can be observed. Every refusal ledgered one by one (the
# bounds are test_refusals.py's subject): the long-path test needs many.
SETTINGS = {"housekeeping_interval": 1, "blob_verify_interval": 2,
            "refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.tok = c.srv.admin_token()
    return c


def teardown(c):
    assert c.srv.stop() == 0


def upload(c, data, filename="clip.mp4"):
    meta = "filename " + base64.b64encode(filename.encode()).decode()
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.tok,
                               headers=dict(TUS, **{"Upload-Length": str(len(data)),
                                                    "Upload-Metadata": meta,
                                                    "Content-Type":
                                                        "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id"), r.getheader("Location")


def entries(c, start=0, end=None):
    """Entries [start, end), or from start to the end of the log."""
    return ledger_entries(c.srv, c.tok, start, end)


def wait_checkpoint(c, size):
    deadline = time.time() + 10
    while time.time() < deadline:
        st, note, r = c.srv.request("GET", "/v1/ledger/checkpoint")
        lines = note.decode().split("\n")
        if int(lines[1]) >= size:
            return note.decode()
        time.sleep(0.2)
    raise AssertionError("no checkpoint covering %d entries" % size)


def export(c):
    st, body, r = c.srv.request("GET", "/v1/ledger/export", token=c.tok)
    assert st == 200 and r.getheader("Transfer-Encoding") == "chunked"
    path = os.path.join(c.srv.root, "export.jsonl")
    with open(path, "wb") as f:
        f.write(body if isinstance(body, bytes) else json.dumps(body).encode())
    return path


def verify(*args):
    return subprocess.run([VERIFY, *args], capture_output=True, text=True, timeout=60)


def test_upload_becomes_evidence_with_ingested_entry(c):
    data = b"EVIDENCE-MARKER " + os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    eid, loc = upload(c, data)
    assert eid == sha
    st, doc, r = c.srv.request("HEAD", loc, token=c.tok, headers=TUS)
    assert r.getheader("Evidence-Id") == sha
    st, ev, _ = c.srv.request("GET", f"/v1/evidence/{sha}", token=c.tok)
    assert st == 200 and ev["sha256"] == sha and ev["size"] == len(data)
    assert ev["filename"] == "clip.mp4"
    ents = entries(c)
    ing = [e for e in ents if e["body"]["type"] == "INGESTED" and e["body"]["artefact"] == sha]
    assert len(ing) == 1 and ing[0]["seq"] == ev["ledger"]["ingested_seq"]
    assert ing[0]["body"]["size"] == len(data) and ing[0]["body"]["actor"]["id"] == "admin"
    # Encrypted at rest: the blob holds no plaintext; staging is emptied.
    blobs = glob.glob(os.path.join(c.srv.data, "blobs", sha[:2], sha))
    assert len(blobs) == 1
    raw = open(blobs[0], "rb").read()
    assert b"EVIDENCE-MARKER" not in raw and raw.startswith(b"DEMSBLOB1\n")
    assert os.listdir(os.path.join(c.srv.data, "staging")) == []
    c.sha, c.data = sha, data


def test_identical_content_stored_once(c):
    eid, _ = upload(c, c.data, filename="copy.mp4")
    assert eid == c.sha
    assert len(glob.glob(os.path.join(c.srv.data, "blobs", "*", "*"))) == 1
    ing = [e for e in entries(c) if e["body"]["type"] == "INGESTED"
           and e["body"]["artefact"] == c.sha]
    assert len(ing) == 2  # each ingest is its own custody event


def test_download_is_ledgered_and_ranged(c):
    before = len(entries(c))
    st, body, r = c.srv.request("GET", f"/v1/evidence/{c.sha}/content", token=c.tok)
    assert st == 200 and body == c.data and r.getheader("ETag") == f'"{c.sha}"'
    st, body, r = c.srv.request("GET", f"/v1/evidence/{c.sha}/content", token=c.tok,
                                headers={"Range": "bytes=70000-140000"})
    assert st == 206 and body == c.data[70000:140001]
    assert r.getheader("Content-Range") == f"bytes 70000-140000/{len(c.data)}"
    st, _, r = c.srv.request("GET", f"/v1/evidence/{c.sha}/content", token=c.tok,
                             headers={"Range": f"bytes={len(c.data)}-"})
    assert st == 416 and r.getheader("Content-Range") == f"bytes */{len(c.data)}"
    st, _, _ = c.srv.request("GET", f"/v1/evidence/{c.sha}/content", token=c.tok,
                             headers={"If-None-Match": f'"{c.sha}"'})
    assert st == 304
    new = entries(c)[before:]
    assert [e["body"]["type"] for e in new] == ["DOWNLOADED", "DOWNLOADED"]
    assert new[1]["body"]["payload"] == {"first": 70000, "last": 140000}
    # Ranges that start inside a 64 KiB chunk of files much larger than one
    # decryption batch (256 KiB): every batch must still fit its buffer.
    big = os.urandom(1_500_000)
    sha, _ = upload(c, big, "big.bin")
    for first, last in ((100, None), (65_535, 1_200_000), (300_001, None), (0, 1_499_999)):
        rng = f"bytes={first}-" + ("" if last is None else str(last))
        st, body, r = c.srv.request("GET", f"/v1/evidence/{sha}/content", token=c.tok,
                                    headers={"Range": rng})
        want = big[first:] if last is None else big[first:last + 1]
        assert st == 206 and body == want, (rng, st, len(body))
    assert c.srv.request("GET", "/healthz")[0] == 200
    assert c.srv.request("GET", "/v1/evidence/" + "0" * 64, token=c.tok)[0] == 404
    assert c.srv.request("GET", "/v1/evidence/xyz/content", token=c.tok)[0] == 404


def statements_during(c, fn):
    """The SQL statements PostgreSQL ran while fn() did (log_statement = all for the
    time being), as the texts logged, and fn's result."""
    log = os.path.join(c.srv.data, "postgresql.log")
    assert c.srv.psql("ALTER SYSTEM SET log_statement = 'all'")[0] == 0
    assert c.srv.psql("SELECT pg_reload_conf()")[0] == 0
    time.sleep(1)
    start = os.path.getsize(log)
    out = fn()
    time.sleep(0.5)
    assert c.srv.psql("ALTER SYSTEM RESET log_statement")[0] == 0
    assert c.srv.psql("SELECT pg_reload_conf()")[0] == 0
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    stmts = [m.group(1) for m in
             re.finditer(r"LOG:  (?:statement|execute [^:]*): (.*)", text)]
    return stmts, out


def logged_requests(c, paths, picks):
    """The statements of the requests to paths that were logged: those picks()
    selects. A backend takes up log_statement only after its next command, so
    a window may log none of them; then it is tried again."""
    for _ in range(5):
        stmts, sts = statements_during(c, lambda: [c.srv.request("GET", p, token=c.tok)[0]
                                                   for p in paths])
        assert sts == [200] * len(paths), sts
        mine = [s for s in stmts if picks(s)]
        if mine:
            return mine
    raise AssertionError("no request's statement was logged")


def test_download_is_one_statement(c):
    """A download by a staff token costs one statement on the request's side:
    the token lookup with the artefact read folded in (the appender's group
    commit is shared by its batch). So does an inclusion proof: every one
    logged must be a folded one."""
    # The token lookup, and every read of one artefact by id (housekeeping reads others).
    mine = logged_requests(c, [f"/v1/evidence/{c.sha}/content"] * 6,
                           lambda s: "auth_tokens" in s or "FROM artefacts a WHERE a.id = $" in s)
    assert all("auth_tokens" in s and "FROM artefacts a" in s for s in mine), mine
    size = int(c.srv.psql("SELECT size FROM ledger_head")[1])
    mine = logged_requests(c, [f"/v1/ledger/proof/inclusion?index={i}&size={size}"
                               for i in range(6)],
                           lambda s: "auth_tokens" in s or "FROM ledger_subtrees st" in s)
    assert all("auth_tokens" in s and "ledger_subtrees" in s for s in mine), mine
    # The same checks still apply in the one statement: an account that does
    # not see the evidence is refused as before (404, ledgered).
    tok = staff_user(c, "fold-officer", "officer")
    before = len(entries(c))
    assert c.srv.request("GET", f"/v1/evidence/{c.sha}/content", token=tok)[0] == 404
    # The refusal is ledgered without the 404 waiting for it.
    new = eventually(lambda: [e["body"] for e in entries(c)[before:]])
    assert [e["type"] for e in new] == ["ACCESS_DENIED"], new


def staff_user(c, name, role):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": "correct horse", "role": role},
                               token=c.tok)
    assert st in (201, 409), doc
    return c.srv.login(name, "correct horse")[1]["token"]


def wait_denied(c, start, n):
    """The ACCESS_DENIED entries from start on, once there are n (they are
    appended after the 403 is answered)."""
    deadline = time.time() + 15
    while True:
        denied = [e["body"] for e in entries(c, start) if e["body"]["type"] == "ACCESS_DENIED"]
        if len(denied) >= n or time.time() > deadline:
            assert len(denied) == n, (len(denied), n)
            return denied
        time.sleep(0.2)


def busy_admin(c, stop, errors, counts):
    """Uploads and downloads as the admin until stop is set; records every non-2xx."""
    conn = c.srv.conn()
    i = 0
    while not stop.is_set():
        try:
            if i % 4 == 0:
                data = os.urandom(2000)
                st, doc, r = c.srv.request(
                    "POST", "/v1/uploads", body=data, token=c.tok, conn=conn,
                    headers=dict(TUS, **{"Upload-Length": str(len(data)), "Content-Type":
                                         "application/offset+octet-stream"}))
            else:
                st, doc, r = c.srv.request("GET", f"/v1/evidence/{c.sha}/content", token=c.tok,
                                           conn=conn)
            counts[0] += 1
            if st >= 300:
                errors.append((st, doc))
        except Exception as e:  # a dropped connection is an error too
            errors.append(repr(e))
            conn = c.srv.conn()
        i += 1


def test_oversized_refusal_fails_alone_and_is_ledgered_truncated(c):
    """A refused request whose path is far beyond the payload cap (issue 19.1)
    used to make an entry too big to append, failing its whole group-commit
    batch: the admin's concurrent ingests and downloads answered 503. Now the
    path is cut and marked, the refusal is ledgered, and nobody else notices."""
    officer = staff_user(c, "lenny", "officer")
    before = len(entries(c))
    stop, errors, counts = threading.Event(), [], [0]
    t = threading.Thread(target=busy_admin, args=(c, stop, errors, counts))
    t.start()
    long_id = "x" * 6000
    sent = 0
    try:
        conn = c.srv.conn()
        deadline = time.time() + 4
        while time.time() < deadline:
            st, doc, _ = c.srv.request("GET", f"/v1/admin/jobs/{long_id}{sent}", token=officer,
                                       conn=conn)
            assert st == 403, (st, doc)
            sent += 1
    finally:
        stop.set()
        t.join()
    assert counts[0] > 10 and not errors, (counts, errors[:3])
    denied = wait_denied(c, before, sent)
    p = denied[0]["payload"]
    full = f"/v1/admin/jobs/{long_id}0"
    assert p["path_truncated"] is True and p["path_length"] == len(full), p
    assert p["path_sha256"] == hashlib.sha256(full.encode()).hexdigest(), p
    assert full.startswith(p["path"]) and 900 < len(p["path"]) <= 1024, len(p["path"])
    assert p["method"] == "GET" and p["reason"] == "role may not use this endpoint", p
    assert "method_truncated" not in p and "reason_truncated" not in p, p
    assert denied[0]["actor"] == {"id": "lenny", "kind": "user"}
    # Bytes that are not UTF-8 are replaced (and marked by the hash of the original).
    s = raw_tls(c.srv)
    s.sendall(b"GET /v1/admin/jobs/caf\xe9 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              + officer.encode() + b"\r\nConnection: close\r\n\r\n")
    st, _, _, _ = read_response(s)
    s.close()
    if st == 403:  # the parser may refuse such a target outright (400)
        last = wait_denied(c, before, sent + 1)[-1]
        assert last["payload"]["path"] == "/v1/admin/jobs/caf\ufffd", last
        assert last["payload"]["path_length"] == 19 and "path_truncated" not in last["payload"]
    c.srv.request("GET", "/healthz")


def run_driver(c):
    """Runs the second appender (tests/integration/ledger_driver.c) beside demsd,
    as the account demsd runs as (it writes DATA/ledger/checkpoint too)."""
    r = subprocess.run([*c.srv.as_service_account(), DRIVER, c.srv.conninfo("dems_app"),
                        os.path.join(c.srv.data, "keys", "master.key"), "dems.localhost/ledger",
                        c.srv.data], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {}
    for line in r.stdout.splitlines():
        name, queued, err, seq = line.split()
        out[name] = (int(queued), int(err), int(seq))
    return out, r.stderr


def test_bad_item_fails_alone_never_its_batch(c):
    """Items that can never be entries, and items whose statements fail, fail
    alone: the good items of the same group-commit batch are appended."""
    EINVAL, EDB = -2, -10
    # A trigger refuses one row of a multi-row insert, failing that statement.
    rc, _, err = c.srv.psql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF convert_from(NEW.bytes, 'UTF8') LIKE '%poison%' THEN "
        "RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER poison BEFORE INSERT ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION poison()")
    assert rc == 0, err
    keys = c.srv.psql("SELECT count(*) FROM ledger_keys")[1]
    try:
        got, log = run_driver(c)
    finally:
        c.srv.psql("DROP TRIGGER poison ON ledger_entries; DROP FUNCTION poison()")
    ok = {k: v for k, v in got.items() if v[0] == 0 and v[1] == 0}
    assert set(ok) == {"blocker", "good1", "good2", "blocker2", "good3", "good4"}, got
    # Refused before joining a batch: too big, and a NUL that no verifier accepts.
    assert got["too_big"][0] == EINVAL and got["nul"][0] == EINVAL, got
    # Failed inside the batch, alone: the batch's good items are consecutive.
    assert got["pre_fails"][1] == EDB and got["rotate"][1] == EINVAL, got
    assert got["good2"][2] == got["good1"][2] + 1, got
    assert c.srv.psql("SELECT count(*) FROM ledger_keys")[1] == keys  # rotation rolled back
    # A failed statement of the batch: each item retried alone; only the poisoned one fails.
    assert got["poison"][1] == EDB and got["good4"][2] == got["good3"][2] + 1, got
    assert "appending each alone" in log, log
    seqs = {e["seq"]: e["body"]["payload"] for e in entries(c, got["good1"][2])}
    assert seqs[got["good1"][2]] == {"n": "1"} and seqs[got["good4"][2]] == {"n": "4"}, seqs
    assert c.srv.request("GET", "/healthz")[0] == 200


def test_checkpoint_key_and_export_verify_offline(c):
    size = len(entries(c))
    note = wait_checkpoint(c, size)
    lines = note.split("\n")
    assert lines[0] == "dems.localhost/ledger" and int(lines[1]) == size
    assert len(base64.b64decode(lines[2])) == 32 and lines[3] == ""
    assert lines[4].startswith("\u2014 dems.localhost/ledger ")
    st, vkey, _ = c.srv.request("GET", "/v1/ledger/key")
    vkey = vkey.decode().strip()
    assert vkey.startswith("dems.localhost/ledger+")
    npath = os.path.join(c.srv.root, "checkpoint.txt")
    open(npath, "w").write(note)
    r = verify("checkpoint", npath, "--key", vkey)
    assert r.returncode == 0, r.stdout + r.stderr
    path = export(c)
    r = verify("ledger", path, "--key", vkey)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    c.vkey = vkey


def test_proofs_verify_offline(c):
    ents = entries(c)
    size = len(ents)
    st, p, _ = c.srv.request("GET", f"/v1/ledger/proof/inclusion?index=1&size={size}",
                             token=c.tok)
    assert st == 200 and p["leaf_hash"] == ents[1]["leaf_hash"]
    r = verify("inclusion", "--leaf-hash", p["leaf_hash"], "--index", "1", "--size", str(size),
               "--root", p["root"], "--proof", ",".join(p["proof"]))
    assert r.returncode == 0, r.stdout + r.stderr
    bad = list(p["proof"])
    bad[0] = ("0" if bad[0][0] != "0" else "1") + bad[0][1:]
    r = verify("inclusion", "--leaf-hash", p["leaf_hash"], "--index", "1", "--size", str(size),
               "--root", p["root"], "--proof", ",".join(bad))
    assert r.returncode == 1
    st, q, _ = c.srv.request("GET", f"/v1/ledger/proof/consistency?old=2&new={size}",
                             token=c.tok)
    assert st == 200
    r = verify("consistency", "--old", "2", "--new", str(size), "--old-root", q["old_root"],
               "--new-root", q["new_root"], "--proof", ",".join(q["proof"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert c.srv.request("GET", f"/v1/ledger/proof/inclusion?index={size}&size={size}",
                         token=c.tok)[0] == 400
    assert c.srv.request("GET", f"/v1/ledger/proof/inclusion?index=0&size={size + 5}",
                         token=c.tok)[0] == 400
    assert c.srv.request("GET", "/v1/ledger/proof/consistency?old=x&new=2",
                         token=c.tok)[0] == 400


def test_entries_page_from_a_start(c):
    every = entries(c)
    assert [e["seq"] for e in every] == list(range(len(every))) and len(every) >= 5
    st, doc, r = c.srv.request("GET", "/v1/ledger/entries?start=2&limit=2", token=c.tok)
    assert st == 200 and [e["seq"] for e in doc["entries"]] == [2, 3], doc
    assert doc["next_cursor"] == "3"
    assert r.getheader("Link") == '</v1/ledger/entries?start=2&limit=2&cursor=3>; rel="next"'
    st, doc, _ = c.srv.request("GET", "/v1/ledger/entries?start=2&limit=2&cursor=3", token=c.tok)
    assert [e["seq"] for e in doc["entries"]] == [4, 5][:len(every) - 4]
    st, doc, _ = c.srv.request("GET", f"/v1/ledger/entries?start={len(every) + 10}", token=c.tok)
    assert st == 200 and doc == {"entries": [], "next_cursor": None}
    for q, name in (("start=x", "start"), ("start=-1", "start"), ("cursor=x", "cursor"),
                    ("limit=201", "limit")):
        st, doc, _ = c.srv.request("GET", "/v1/ledger/entries?" + q, token=c.tok)
        assert st == 400 and f'"{name}"' in doc["detail"], (q, doc)


def test_database_refuses_to_change_history(c):
    for sql in ("UPDATE ledger_entries SET type = 'VIEWED' WHERE seq = 0",
                "DELETE FROM ledger_entries WHERE seq = 0",
                "UPDATE ledger_head SET size = 0", "DELETE FROM ledger_subtrees"):
        rc, _, err = c.srv.psql(sql, user="dems_app")
        assert rc != 0 and ("permission denied" in err or "append-only" in err
                            or "shrink" in err), (sql, err)
    # Even the superuser is stopped by the triggers.
    for sql in ("UPDATE ledger_entries SET type = 'VIEWED' WHERE seq = 0",
                "DELETE FROM ledger_entries WHERE seq = 0", "TRUNCATE ledger_entries CASCADE",
                "DELETE FROM ledger_checkpoints"):
        rc, _, err = c.srv.psql(sql)
        assert rc != 0 and "append-only" in err, (sql, err)
    r = verify("ledger", export(c), "--key", c.vkey)
    assert r.returncode == 0


def tamper(c, sql):
    """Rewrites history as a superuser with triggers disabled, then exports."""
    rc, _, err = c.srv.psql("BEGIN; SET LOCAL session_replication_role = replica; "
                            + sql + "; COMMIT;")
    assert rc == 0, err
    return verify("ledger", export(c), "--key", c.vkey)


def test_rewritten_history_is_caught_and_named(c):
    # Back up the rows so each tamper starts from the true log.
    c.srv.psql("CREATE TABLE saved AS SELECT * FROM ledger_entries")
    restore = ("DELETE FROM ledger_entries; INSERT INTO ledger_entries SELECT * FROM saved")
    # 1. One entry's payload changed (re-encoded bytes, leaf hash left alone).
    r = tamper(c, "UPDATE ledger_entries SET bytes = convert_to(replace(convert_from(bytes, "
                  "'UTF8'), '\"DOWNLOADED\"', '\"VIEWED\"'), 'UTF8') WHERE seq = 3")
    assert r.returncode == 1 and "3" in r.stdout + r.stderr, r.stdout + r.stderr
    c.srv.psql("BEGIN; SET LOCAL session_replication_role = replica; " + restore + "; COMMIT;")
    # 2. One entry deleted.
    r = tamper(c, "DELETE FROM ledger_entries WHERE seq = 2")
    assert r.returncode == 1 and "2" in r.stdout + r.stderr, r.stdout + r.stderr
    c.srv.psql("BEGIN; SET LOCAL session_replication_role = replica; " + restore + "; COMMIT;")
    # 3. Two entries swapped.
    r = tamper(c, "UPDATE ledger_entries SET seq = seq + 1000000 WHERE seq IN (1, 2); "
                  "UPDATE ledger_entries SET seq = CASE seq WHEN 1000001 THEN 2 ELSE 1 END "
                  "WHERE seq IN (1000001, 1000002)")
    assert r.returncode == 1 and ("1" in r.stdout + r.stderr), r.stdout + r.stderr
    c.srv.psql("BEGIN; SET LOCAL session_replication_role = replica; " + restore + "; COMMIT;")
    r = verify("ledger", export(c), "--key", c.vkey)
    assert r.returncode == 0, r.stdout + r.stderr


def test_damaged_blob_is_not_served(c):
    data = os.urandom(150_000)
    sha, _ = upload(c, data, filename="victim.bin")
    path = os.path.join(c.srv.data, "blobs", sha[:2], sha)
    good = open(path, "rb").read()
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0x01
    open(path, "wb").write(bytes(raw))
    try:
        st, body, _ = c.srv.request("GET", f"/v1/evidence/{sha}/content", token=c.tok)
        got = body
    except Exception:
        got = None  # the connection was cut mid-body
    assert got != data, "a damaged blob was served as if intact"
    assert c.srv.request("GET", "/healthz")[0] == 200
    # The command-line sweep names it (beside the running server) ...
    r = c.srv.demsd("admin", "verify-blobs", "--data", c.srv.data)
    assert r.returncode == 1 and f"BAD {sha}: altered" in r.stdout, r.stdout + r.stderr
    # ... and so does the periodic one, in the server's log.
    deadline = time.time() + 15
    want = f'"event":"blob_integrity_failure","evidence":"{sha}"'
    while time.time() < deadline and want not in c.srv.tail(200000):
        time.sleep(0.3)
    assert want in c.srv.tail(200000)
    open(path, "wb").write(good)
    r = c.srv.demsd("admin", "verify-blobs", "--data", c.srv.data)
    assert r.returncode == 0 and ", 0 bad" in r.stdout, r.stdout + r.stderr


def test_log_survives_restart(c):
    size = len(entries(c))
    old = wait_checkpoint(c, size)
    old_root = base64.b64decode(old.split("\n")[2]).hex()
    pw = c.srv.admin_password
    assert c.srv.stop() == 0
    c.srv = Server(SETTINGS, data=c.srv.root).start()
    c.srv.admin_password = pw
    c.tok = c.srv.admin_token()
    upload(c, os.urandom(1000))
    new = len(entries(c))
    assert new == size + 1 and entries(c, size, size + 1)[0]["seq"] == size
    wait_checkpoint(c, new)
    st, q, _ = c.srv.request("GET", f"/v1/ledger/proof/consistency?old={size}&new={new}",
                             token=c.tok)
    assert q["old_root"] == old_root
    r = verify("consistency", "--old", str(size), "--new", str(new), "--old-root", old_root,
               "--new-root", q["new_root"], "--proof", ",".join(q["proof"]))
    assert r.returncode == 0, r.stdout + r.stderr


def test_key_rotation_is_a_ledger_entry(c):
    old_key = c.srv.request("GET", "/v1/ledger/key")[1].decode().strip()
    # Only administrators rotate; bad bodies are refused.
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": "rory", "password": "12345678", "role": "officer"},
                               token=c.tok)
    assert st == 201, doc
    officer = c.srv.login("rory", "12345678")[1]["token"]
    st, doc, _ = c.srv.request("POST", "/v1/admin/ledger/rotate-key", {}, token=officer)
    assert st == 403, doc
    st, doc, _ = c.srv.request("POST", "/v1/admin/ledger/rotate-key", {"reason": 7}, token=c.tok)
    assert st == 400 and "reason" in doc["detail"], doc
    st, doc, _ = c.srv.request("POST", "/v1/admin/ledger/rotate-key",
                               {"reason": "annual rotation"}, token=c.tok)
    assert st == 201 and doc["vkey"] != old_key, doc
    rot_seq, new_key = doc["seq"], doc["vkey"]
    e = entries(c, rot_seq, rot_seq + 1)[0]["body"]
    assert e["type"] == "KEY_ROTATED" and e["payload"] == {"reason": "annual rotation",
                                                           "vkey": new_key}, e
    assert e["actor"] == {"id": "admin", "kind": "user"}, e
    assert c.srv.request("GET", "/v1/ledger/key")[1].decode().strip() == new_key
    st, doc, _ = c.srv.request("GET", "/v1/ledger/keys")
    assert [k["vkey"] for k in doc["keys"]] == [old_key, new_key], doc
    assert [k["rotated_at_seq"] for k in doc["keys"]] == [None, rot_seq], doc
    # Entries after the rotation, the checkpoint and a restart all use the new key.
    upload(c, os.urandom(3000))
    size = len(entries(c))
    note = wait_checkpoint(c, size)
    npath = os.path.join(c.srv.root, "checkpoint2.txt")
    open(npath, "w").write(note)
    assert verify("checkpoint", npath, "--key", new_key).returncode == 0
    r = verify("checkpoint", npath, "--key", old_key)
    assert r.returncode == 1, r.stdout + r.stderr
    pw = c.srv.admin_password
    assert c.srv.stop() == 0
    c.srv = Server(SETTINGS, data=c.srv.root).start()
    c.srv.admin_password = pw
    c.tok = c.srv.admin_token()
    upload(c, os.urandom(2000))
    size = len(entries(c))
    wait_checkpoint(c, size)
    path = export(c)
    head = json.loads(open(path).readline())
    assert head["vkey"] == old_key, head
    # The whole chain verifies pinned to the first key or to the new one, not to another.
    for key in (old_key, new_key):
        for mode in ([], ["--fast"]):
            r = verify("ledger", path, "--key", key, *mode)
            assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    r = verify("ledger", path, "--key", "dems.localhost/ledger+00000000+"
               "AajhWMclMI6RSpVPztrhimtcWLTsaVupygs+cc3awVVv")
    assert r.returncode != 0, r.stdout + r.stderr
    # The database refuses a second key 2 (no one rewrites the chain).
    rc, _, err = c.srv.psql("UPDATE ledger_keys SET public_key = public_key WHERE id = 2",
                            user="dems_app")
    assert rc != 0, err
    # A rotation entry re-signed by the new key (forged) is named, even with --fast.
    lines = open(path).read().split("\n")
    ent = json.loads(lines[1 + rot_seq])
    ent["sig"] = base64.b64encode(bytes(64)).decode()
    lines[1 + rot_seq] = json.dumps(ent, separators=(",", ":"))
    bad = os.path.join(c.srv.root, "forged.jsonl")
    open(bad, "w").write("\n".join(lines))
    r = verify("ledger", bad, "--key", old_key, "--fast")
    assert r.returncode == 1 and f"entry {rot_seq}" in r.stdout, r.stdout + r.stderr
    c.vkey = old_key


def restart(srv):
    """Stops srv and starts demsd again on its data; returns the new Server."""
    pw = srv.admin_password
    assert srv.stop() == 0
    new = Server(SETTINGS, data=srv.root).start()
    new.admin_password = pw
    return new


def serve_refused(srv):
    """Starts demsd on srv's data expecting it to refuse; returns its stderr."""
    r = subprocess.run([os.environ.get("DEMSD"), "serve", "--data", srv.data, "--listen",
                        "127.0.0.1:0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    return r.stderr


def test_tail_truncation_is_caught(c):
    """A superuser who deletes the last entries with their checkpoints leaves
    a shorter log that verifies on its own (issue 19.5). demsd keeps the
    newest checkpoint it signed in DATA/ledger/checkpoint too: it stops
    appending and signing at once, /readyz says so, and it refuses to start
    until an operator moves the file aside on purpose."""
    d = Ctx()
    d.srv = Server(SETTINGS).start()
    try:
        d.tok = d.srv.admin_token()
        for _ in range(4):
            sha, _ = upload(d, os.urandom(700))
        n = len(entries(d))
        wait_checkpoint(d, n)
        anchor = os.path.join(d.srv.data, "ledger", "checkpoint")
        time.sleep(0.5)
        signed = open(anchor).read()
        assert signed.split("\n")[:2] == ["dems.localhost/ledger", str(n)], signed
        assert os.stat(anchor).st_mode & 0o777 == 0o600
        cut = n - 3
        rc, _, err = d.srv.psql(
            "BEGIN; SET LOCAL session_replication_role = replica; "
            f"DELETE FROM ledger_entries WHERE seq >= {cut}; "
            f"DELETE FROM ledger_subtrees WHERE start + (1::bigint << level) > {cut}; "
            f"DELETE FROM ledger_checkpoints WHERE size > {cut}; "
            f"UPDATE ledger_head SET size = {cut}; COMMIT;")
        assert rc == 0, err
        # What an export alone cannot see: the shorter log verifies.
        vkey = d.srv.request("GET", "/v1/ledger/key")[1].decode().strip()
        r = verify("ledger", export(d), "--key", vkey)
        assert r.returncode == 0, r.stdout + r.stderr
        # demsd sees it within a second or two, and says so.
        deadline = time.time() + 10
        while time.time() < deadline:
            st, doc, _ = d.srv.request("GET", "/readyz")
            if st == 503:
                break
            time.sleep(0.2)
        assert st == 503 and doc["code"] == "ledger_inconsistent", (st, doc)
        assert "fewer than" in doc["detail"], doc
        assert '"event":"ledger_inconsistent"' in d.srv.tail(100000)
        # Appends fail; nothing is signed over the gap.
        st, doc, _ = d.srv.request("GET", f"/v1/evidence/{sha}/content", token=d.tok)
        assert st == 503, (st, doc)
        time.sleep(2)
        assert int(d.srv.psql("SELECT max(size) FROM ledger_checkpoints")[1]) <= cut
        assert open(anchor).read() == signed
        # A restart is refused, with one clear line.
        assert d.srv.stop() == 0
        err = serve_refused(d.srv)
        assert "fewer than" in err and "Refusing to start" in err, err
        # An operator who restored an older database on purpose moves the file aside.
        os.rename(anchor, anchor + ".old")
        d.srv = restart(d.srv)
        assert "no checkpoint file" in d.srv.tail(100000)
        d.tok = d.srv.admin_token()
        upload(d, os.urandom(300))
        n = len(entries(d))
        wait_checkpoint(d, n)
        time.sleep(0.5)
        assert open(anchor).read().split("\n")[1] == str(n)
        # A rewritten entry (its subtree hash changed in place) is refused at start too.
        rc, _, err = d.srv.psql(
            "BEGIN; SET LOCAL session_replication_role = replica; "
            "UPDATE ledger_subtrees SET hash = sha256(hash) WHERE start = 0 AND level = "
            "(SELECT max(level) FROM ledger_subtrees WHERE start = 0); COMMIT;")
        assert rc == 0, err
        assert d.srv.stop() == 0
        err = serve_refused(d.srv)
        assert "not an extension" in err and "Refusing to start" in err, err
    finally:
        d.srv.stop()


def test_app_role_appends_only_through_checked_functions(c):
    """The application role can no longer write ledger rows directly: one junk
    row at the head's sequence number used to jam every later append (issue
    19.13). Appends go through ledger_append, which refuses gaps, bytes that
    do not name their seq, wrong leaf hashes and wrong or missing subtree
    hashes; keys and checkpoints go through functions that check them too."""
    head = int(c.srv.psql("SELECT size FROM ledger_head")[1])
    if head % 2:  # an even head: one more entry completes exactly one subtree (level 0)
        upload(c, os.urandom(100))
        head = int(c.srv.psql("SELECT size FROM ledger_head")[1])
    assert head % 2 == 0, head
    kid = int(c.srv.psql("SELECT max(id) FROM ledger_keys")[1])
    origin = c.srv.psql("SELECT name FROM ledger_keys WHERE id = 1")[1]
    zero = "\\x" + "00" * 64
    for sql in (f"INSERT INTO ledger_entries (seq, type, key_id, bytes, leaf_hash, signature) "
                f"VALUES ({head}, 'VIEWED', {kid}, '\\x00', sha256('\\x00'::bytea), '{zero}')",
                f"INSERT INTO ledger_subtrees VALUES (0, {head}, sha256(''::bytea))",
                f"INSERT INTO ledger_checkpoints (size, root, key_id, note) "
                f"VALUES ({head}, sha256(''::bytea), {kid}, 'x')",
                f"INSERT INTO ledger_keys (id, name, public_key, sealed_seed) VALUES "
                f"({kid + 1}, '{origin}', sha256(''::bytea), '{zero}')",
                f"UPDATE ledger_head SET size = {head + 1}"):
        rc, _, err = c.srv.psql(sql, user="dems_app")
        assert rc != 0 and "permission denied" in err, (sql, err)

    def entry(seq, **extra):
        e = {"actor": {"id": "x", "kind": "user"}, "payload": {}, "seq": seq,
             "time": "2026-01-01T00:00:00.000Z", "type": "VIEWED", "v": 1}
        e.update(extra)
        return json.dumps(e, separators=(",", ":")).encode()

    def append(seq, data, leaf=None, levels=None, starts=None, hashes=None, kind="VIEWED"):
        leaf = leaf or hashlib.sha256(b"\0" + data).digest()
        if levels is None:  # the level-0 subtree only (right: head is even)
            levels, starts, hashes = [0], [seq], [leaf]
        arr = lambda xs: "ARRAY[" + ",".join(f"'{x}'" for x in xs) + "]::text[]"  # noqa: E731
        sql = (f"SELECT ledger_append(ARRAY[{seq}]::bigint[], ARRAY['{kind}'], ARRAY[NULL]::text[],"
               f" {kid}, {arr([data.hex()])}, {arr([leaf.hex()])}, {arr(['00' * 64])},"
               f" ARRAY[{','.join(map(str, levels))}]::smallint[],"
               f" ARRAY[{','.join(map(str, starts))}]::bigint[], {arr([h.hex() for h in hashes])})")
        return c.srv.psql(sql, user="dems_app")

    good_leaf = hashlib.sha256(b"\0" + entry(head)).digest()
    cases = {
        "gap": append(head + 1, entry(head + 1)),
        "bytes name another seq": append(head, entry(head + 7)),
        "bytes are not an entry": append(head, b'{"seq":%d,"type":"VIEWED"}' % head),
        "bytes name another type": append(head, entry(head), kind="DOWNLOADED"),
        "leaf hash": append(head, entry(head), leaf=hashlib.sha256(b"x").digest()),
        "no subtrees": append(head, entry(head), levels=[], starts=[], hashes=[]),
        "subtree hash": append(head, entry(head), levels=[0], starts=[head],
                               hashes=[hashlib.sha256(b"y").digest()]),
        "extra subtree": append(head, entry(head), levels=[0, 0], starts=[head, head + 1],
                                hashes=[good_leaf, good_leaf]),
    }
    for what, (rc, _, err) in cases.items():
        assert rc != 0 and "ledger_append" in err, (what, err)
    # A key no KEY_ROTATED entry announces, and a checkpoint of another root.
    rc, _, err = c.srv.psql(f"SELECT ledger_add_key({kid + 1}, '{origin}', '{'11' * 32}', "
                            f"'{'22' * 72}')", user="dems_app")
    assert rc != 0 and "not announced" in err, err
    rc, _, err = c.srv.psql(f"SELECT ledger_add_checkpoint({head}, '{'33' * 32}', {kid}, "
                            f"E'{origin}\\n{head}\\nAAAA\\n')", user="dems_app")
    assert rc != 0 and "ledger_add_checkpoint" in err, err
    assert int(c.srv.psql("SELECT size FROM ledger_head")[1]) == head
    # Nothing jammed: demsd appends on, and the whole log verifies.
    upload(c, os.urandom(1234))
    ents = entries(c, head)
    assert ents and ents[0]["seq"] == head, ents[:1]
    size = len(entries(c))
    wait_checkpoint(c, size)
    r = verify("ledger", export(c), "--key", c.vkey)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ledger_append_refuses_each_inconsistency(c):
    """Every refusal of ledger_append (migrations 0011 and 0029), each on its
    own, with the message that names it: beside the cases above, entry bytes
    whose artefact, v, actor, payload or time is wrong, bytes that are not
    JSON, arrays of different lengths, an empty batch, an older key, a
    misplaced subtree, and a wrong hash of a level-1 subtree (whose left half
    is stored, its right half in the batch) and of a second entry's leaf. A
    batch that is right in every part but its signatures (which only
    dems-verify checks) is not refused: it is rolled back here."""
    while True:  # head 4k + 1: one more entry completes levels 0 and 1, a second level 0
        head = int(c.srv.psql("SELECT size FROM ledger_head")[1])
        if head % 4 == 1:
            break
        upload(c, os.urandom(100))
    wait_checkpoint(c, head)
    assert int(c.srv.psql("SELECT size FROM ledger_head")[1]) == head
    kid = int(c.srv.psql("SELECT max(id) FROM ledger_keys")[1])
    left = bytes.fromhex(c.srv.psql(f"SELECT encode(hash, 'hex') FROM ledger_subtrees "
                                    f"WHERE level = 0 AND start = {head - 1}")[1])
    art = "ab" * 32

    def entry(seq, **extra):
        e = {"actor": {"id": "x", "kind": "user"}, "artefact": art, "payload": {}, "seq": seq,
             "time": "2026-01-01T00:00:00.000Z", "type": "VIEWED", "v": 1}
        e.update(extra)
        return json.dumps(e, separators=(",", ":"), sort_keys=True).encode()

    def leaf(data):
        return hashlib.sha256(b"\0" + data).digest()

    def node(a, b):
        return hashlib.sha256(b"\1" + a + b).digest()

    def batch(datas, leaves=None, subtrees=None, key=kid, types=None, arts=None, rollback=False):
        leaves = leaves or [leaf(d) for d in datas]
        if subtrees is None:  # the right ones for 1 or 2 entries after the head
            subtrees = [(0, head, leaves[0]), (1, head - 1, node(left, leaves[0]))]
            if len(datas) > 1:
                subtrees.append((0, head + 1, leaves[1]))
        types = types or ["VIEWED"] * len(datas)
        arts = arts or [art] * len(datas)
        arr = lambda xs, t: "ARRAY[" + ",".join(xs) + "]::" + t  # noqa: E731
        q = lambda xs: ["NULL" if x is None else f"'{x}'" for x in xs]  # noqa: E731
        sql = ("SELECT ledger_append("
               f"{arr([str(head + i) for i in range(len(datas))], 'bigint[]')}, "
               f"{arr(q(types), 'text[]')}, {arr(q(arts), 'text[]')}, {key}, "
               f"{arr(q([d.hex() for d in datas]), 'text[]')}, "
               f"{arr(q([x.hex() for x in leaves]), 'text[]')}, "
               f"{arr(q(['00' * 64] * len(datas)), 'text[]')}, "
               f"{arr([str(v) for v, _, _ in subtrees], 'smallint[]')}, "
               f"{arr([str(s) for _, s, _ in subtrees], 'bigint[]')}, "
               f"{arr(q([h.hex() for _, _, h in subtrees]), 'text[]')})")
        if not rollback:
            return c.srv.psql(sql, user="dems_app")
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            c.srv.conninfo("dems_app"), "-c", "BEGIN", "-c", sql, "-c",
                            "ROLLBACK"], capture_output=True, text=True)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    e0, e1 = entry(head), entry(head + 1)
    good = [(0, head, leaf(e0)), (1, head - 1, node(left, leaf(e0))), (0, head + 1, leaf(e1))]
    cases = {
        "another artefact": (batch([entry(head, artefact="cd" * 32)]), "does not match"),
        "no artefact": (batch([e0], arts=[None]), "does not match"),
        "v 2": (batch([entry(head, v=2)]), "does not match"),
        "actor not an object": (batch([entry(head, actor="x")]), "does not match"),
        "payload not an object": (batch([entry(head, payload=[])]), "does not match"),
        "time not a string": (batch([entry(head, time=1)]), "does not match"),
        "bytes not JSON": (batch([b"not json"]), "json"),
        "second entry's leaf": (batch([e0, e1], leaves=[leaf(e0), leaf(b"x")]),
                                "does not match"),
        "second entry's type": (batch([e0, e1], types=["VIEWED", "DOWNLOADED"]),
                                "does not match"),
        "older key": (batch([e0], key=0), "older than"),
        "level-1 subtree hash": (batch([e0], subtrees=[(0, head, leaf(e0)),
                                                        (1, head - 1, node(leaf(e0), left))]),
                                 "subtree hash"),
        "subtree of two entries' batch": (batch([e0, e1], subtrees=good[:2] + [(0, head + 1,
                                                                                  leaf(e0))]),
                                          "subtree hash"),
        "misplaced subtree": (batch([e0], subtrees=[(0, head, leaf(e0)),
                                                     (1, head, node(left, leaf(e0)))]),
                              "not the subtrees"),
        "a subtree given twice": (batch([e0, e1], subtrees=good[:2] + [good[0]]),
                                  "duplicate key"),
    }
    sql = (f"SELECT ledger_append(ARRAY[{head}]::bigint[], ARRAY['VIEWED', 'VIEWED'], "
           f"ARRAY[NULL]::text[], {kid}, ARRAY['{e0.hex()}'], ARRAY['{leaf(e0).hex()}'], "
           f"ARRAY['{'00' * 64}'], ARRAY[]::smallint[], ARRAY[]::bigint[], ARRAY[]::text[])")
    cases["arrays of different lengths"] = (c.srv.psql(sql, user="dems_app"), "different lengths")
    sql = ("SELECT ledger_append(ARRAY[]::bigint[], ARRAY[]::text[], ARRAY[]::text[], "
           f"{kid}, ARRAY[]::text[], ARRAY[]::text[], ARRAY[]::text[], ARRAY[]::smallint[], "
           "ARRAY[]::bigint[], ARRAY[]::text[])")
    cases["empty batch"] = (c.srv.psql(sql, user="dems_app"), "different lengths")
    for what, ((rc, _, err), says) in cases.items():
        assert rc != 0 and "ledger_append" in err and says in err, (what, err)
    # The same batches with nothing wrong are taken (and rolled back here).
    for datas in ([e0], [e0, e1]):
        rc, out, err = batch(datas, rollback=True)
        assert rc == 0 and str(head + len(datas)) in out, (len(datas), out, err)
    assert int(c.srv.psql("SELECT size FROM ledger_head")[1]) == head


def test_wrong_master_key_refuses_start(c):
    assert c.srv.stop() == 0
    key = os.path.join(c.srv.data, "keys", "master.key")
    good = open(key, "rb").read()
    open(key, "wb").write(os.urandom(32))
    r = subprocess.run([os.environ.get("DEMSD"), "serve", "--data", c.srv.data, "--listen",
                        "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    open(key, "wb").write(good)
    assert r.returncode == 1 and "master key" in r.stderr, r.stderr
    c.srv = Server(data=c.srv.root).start()


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
