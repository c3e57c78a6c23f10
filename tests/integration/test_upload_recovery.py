# SPDX-License-Identifier: Apache-2.0
"""An upload whose bytes are all in is never stranded (#10, #19.2): a ledger
or database failure at the moment it is recorded, or a kill -9 between
sealing it and recording it, leaves it "recording", and the server records it
later without any request from the client (at once, on HEAD/GET, by the
housekeeping task, at restart). Orphan blobs are reported by the integrity
sweep and by `demsd admin verify-blobs`."""
import base64
import hashlib
import os
import time

from harness import Server, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}

# A failure injected by the database superuser, as a real outage would come.
FAIL_LEDGER = """
CREATE OR REPLACE FUNCTION test_injected_failure() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'injected failure'; END$$;
CREATE TRIGGER test_fail_ledger BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION test_injected_failure();
"""
HEAL_LEDGER = "DROP TRIGGER test_fail_ledger ON ledger_entries"
FAIL_COMPLETE = """
CREATE OR REPLACE FUNCTION test_injected_failure() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'injected failure'; END$$;
CREATE TRIGGER test_fail_complete BEFORE UPDATE ON uploads FOR EACH ROW
    WHEN (NEW.state = 'complete') EXECUTE FUNCTION test_injected_failure();
"""
HEAL_COMPLETE = "DROP TRIGGER test_fail_complete ON uploads"

# Housekeeping every second (retries), or only at start (nothing retries
# unless a client asks, or the server restarts).
FAST = {"housekeeping_interval": 1, "blob_verify_interval": 2}
SLOW = {"housekeeping_interval": 3600}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.fast = Server(FAST).start()
    c.fast_tok = c.fast.admin_token()
    c.slow = Server(SLOW).start()
    c.slow_tok = c.slow.admin_token()
    return c


def teardown(c):
    assert c.fast.stop() == 0
    assert c.slow.stop() == 0


def sql(srv, q):
    rc, out, err = srv.psql(q)
    assert rc == 0, err
    return out


def create(srv, tok, length):
    st, doc, r = srv.request("POST", "/v1/uploads", token=tok,
                             headers=dict(TUS, **{"Upload-Length": str(length),
                                                  "Upload-Metadata": "filename "
                                                  + base64.b64encode(b"clip.bin").decode()}))
    assert st == 201, doc
    return r.getheader("Location")


def patch(srv, tok, url, offset, data):
    return srv.request("PATCH", url, body=data, token=tok,
                       headers=dict(OCTETS, **{"Upload-Offset": str(offset)}))


def evidence_of(srv, url):
    uid = url.rsplit("/", 1)[1]
    return sql(srv, f"SELECT coalesce(evidence_id, '') FROM uploads WHERE id = '{uid}'")


def wait_recorded(srv, url, timeout=20):
    """Polls the database, not the API: recording must need no request."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ev = evidence_of(srv, url)
        if ev:
            return ev
        time.sleep(0.2)
    raise AssertionError("the upload was never recorded: " + srv.tail(3000))


def ingested(srv, sha):
    return int(sql(srv, f"SELECT count(*) FROM ledger_entries WHERE type = 'INGESTED'"
                        f" AND artefact = '{sha}'"))


def restart(srv, settings):
    pw = srv.admin_password
    srv.proc.kill()  # kill -9
    srv.proc.wait()
    time.sleep(0.5)
    new = Server(settings, data=srv.root).start()
    new.admin_password = pw
    return new, new.admin_token()


def test_ledger_failure_then_recorded_by_housekeeping(c):
    srv, tok = c.fast, c.fast_tok
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    url = create(srv, tok, len(data))
    sql(srv, FAIL_LEDGER)
    try:
        st, doc, r = patch(srv, tok, url, 0, data)
        # All the bytes are in: the tus side is done, the evidence is not yet.
        assert st == 204, (st, doc)
        assert r.getheader("Upload-Offset") == str(len(data))
        assert r.getheader("Upload-State") == "recording" and r.getheader("Evidence-Id") is None
        st, doc, r = srv.request("GET", url, token=tok)
        assert st == 200 and doc["state"] == "recording" and doc["sha256"] == sha, doc
        assert doc["offset"] == len(data) and "evidence_id" not in doc
        st, _, r = srv.request("HEAD", url, token=tok, headers=TUS)
        assert r.getheader("Upload-State") == "recording"
        assert r.getheader("Upload-Offset") == str(len(data))
        # A client that retries the final PATCH is answered, not refused (was 409).
        st, doc, r = patch(srv, tok, url, len(data), b"")
        assert st == 204 and r.getheader("Upload-State") == "recording", (st, doc)
        # Its blob is in the store and is not an orphan: the upload names it.
        blob = os.path.join(srv.data, "blobs", sha[:2], sha)
        assert os.path.exists(blob)
        old = time.time() - 7200
        os.utime(blob, (old, old))
        out = srv.demsd("admin", "verify-blobs", "--data", srv.data)
        assert f"ORPHAN {sha}" not in out.stdout, out.stdout
        time.sleep(2.5)  # housekeeping keeps retrying while the ledger fails
        assert evidence_of(srv, url) == ""
    finally:
        sql(srv, HEAL_LEDGER)
    assert wait_recorded(srv, url) == sha
    assert ingested(srv, sha) == 1
    st, doc, r = srv.request("GET", url, token=tok)
    assert doc["state"] == "complete" and r.getheader("Evidence-Id") == sha, doc
    st, body, _ = srv.request("GET", f"/v1/evidence/{sha}/content", token=tok)
    assert st == 200 and body == data
    # Asking again changes nothing: one entry per upload.
    st, _, r = patch(srv, tok, url, len(data), b"")
    assert st == 204 and r.getheader("Evidence-Id") == sha
    time.sleep(1.5)
    assert ingested(srv, sha) == 1


def test_kill_9_after_seal_before_complete_then_restart_records(c):
    # The bytes are sealed and fsynced, but the upload is still "receiving"
    # (the database refused to mark it complete) when demsd is killed: the
    # state a crash between sealing and recording leaves. A tus client saw
    # the full offset and will send nothing more.
    srv, tok = c.slow, c.slow_tok
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    url = create(srv, tok, len(data))
    sql(srv, FAIL_COMPLETE)
    try:
        st, doc, r = patch(srv, tok, url, 0, data)
        assert st == 503 and r.getheader("Upload-State") == "recording", (st, doc)
    finally:
        sql(srv, HEAL_COMPLETE)
    uid = url.rsplit("/", 1)[1]
    assert sql(srv, f"SELECT state FROM uploads WHERE id = '{uid}'") == "receiving"
    c.slow, c.slow_tok = srv, tok = restart(srv, SLOW)
    assert wait_recorded(srv, url) == sha  # no request about the upload was made
    assert ingested(srv, sha) == 1
    assert not os.path.exists(os.path.join(srv.data, "staging", uid))
    assert "upload_sealed_at_start" in srv.tail(100000)
    st, body, _ = srv.request("GET", f"/v1/evidence/{sha}/content", token=tok)
    assert st == 200 and body == data


def test_kill_9_after_complete_before_record_then_restart_records(c):
    srv, tok = c.slow, c.slow_tok
    data = os.urandom(70_000)
    sha = hashlib.sha256(data).hexdigest()
    url = create(srv, tok, len(data))
    sql(srv, FAIL_LEDGER)
    try:
        st, doc, r = patch(srv, tok, url, 0, data)
        assert st == 204 and r.getheader("Upload-State") == "recording", (st, doc)
    finally:
        sql(srv, HEAL_LEDGER)
    c.slow, c.slow_tok = srv, tok = restart(srv, SLOW)
    assert wait_recorded(srv, url) == sha
    assert ingested(srv, sha) == 1


def test_head_completes_a_sealed_upload(c):
    srv, tok = c.slow, c.slow_tok
    data = os.urandom(65_536 * 2)  # ends on a chunk boundary: the last full chunk is FINAL
    sha = hashlib.sha256(data).hexdigest()
    url = create(srv, tok, len(data))
    sql(srv, FAIL_COMPLETE)
    try:
        st, _, r = patch(srv, tok, url, 0, data)
        assert st == 503
    finally:
        sql(srv, HEAL_COMPLETE)
    time.sleep(1)
    assert evidence_of(srv, url) == ""  # nothing retries on its own (housekeeping: 1 h)
    st, _, r = srv.request("HEAD", url, token=tok, headers=TUS)
    assert st == 200 and r.getheader("Upload-Offset") == str(len(data))
    assert r.getheader("Upload-State") == "recording"
    assert wait_recorded(srv, url) == sha
    assert ingested(srv, sha) == 1


def test_orphan_blob_is_reported(c):
    srv, tok = c.fast, c.fast_tok
    data = os.urandom(10_000)
    url = create(srv, tok, len(data))
    st, _, r = patch(srv, tok, url, 0, data)
    sha = r.getheader("Evidence-Id")
    assert st == 204 and sha
    # A blob nothing names (as a lost recording would leave), written an hour
    # ago (newer files are left for the next sweep: previews in flight).
    orphan = hashlib.sha256(b"orphan" + os.urandom(8)).hexdigest()
    path = os.path.join(srv.data, "blobs", orphan[:2], orphan)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join(srv.data, "blobs", sha[:2], sha), "rb") as f:
        open(path, "wb").write(f.read())
    old = time.time() - 7200
    os.utime(path, (old, old))
    want = f'"event":"blob_orphan","blob":"{orphan}"'
    deadline = time.time() + 20
    while time.time() < deadline and want not in srv.tail(400000):
        time.sleep(0.3)
    assert want in srv.tail(400000), srv.tail(3000)
    r = srv.demsd("admin", "verify-blobs", "--data", srv.data)
    assert r.returncode == 1 and f"ORPHAN {orphan}" in r.stdout, r.stdout + r.stderr
    assert f"ORPHAN {sha}" not in r.stdout
    os.unlink(path)
    r = srv.demsd("admin", "verify-blobs", "--data", srv.data)
    assert r.returncode == 0 and ", 0 bad, 0 orphans" in r.stdout, r.stdout + r.stderr


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
