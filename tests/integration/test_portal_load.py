# SPDX-License-Identifier: Apache-2.0
"""Fifty members of the public answering one appeal link at once, over
loopback against a real demsd and PostgreSQL: each opens the link, gives a
statement, sends two files by tus in 256 KiB PATCHes (one declaring its
SHA-256) and finishes. Bounded in count (50 submitters, 100 files, 100 MB)
and time (a deadline). Nothing is lost: every file is recorded under its
submission with the bytes sent (its evidence id is its SHA-256), every
submission is finished and ledgered, a receipt of each verifies; demsd's
peak RSS stays bounded; a refused extra file (over the link's per-submission
limit) changes nothing else."""
import hashlib
import json
import os
import subprocess
import threading
import time
import base64

from harness import Server, ledger_entries, run_tests

SUBMITTERS = 50
FILE_BYTES = 1_000_000
PATCH = 256 * 1024
GROWTH_BOUND_KIB = 128 * 1024  # over demsd's resident size before the load (x3 under ASan)
DEADLINE = 240
TUS = {"Tus-Resumable": "1.0.0"}
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
VERIFY = os.environ.get("DEMS_VERIFY", "build/plain/server/verify/dems-verify")


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server({"refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000,
                    "public_rate_per_minute": 6000, "public_rate_burst": 400,
                    "portal_link_rate_per_minute": 6000, "portal_link_burst": 400,
                    "workers": 0}).start()
    c.admin = c.srv.admin_token()
    st, doc, _ = c.srv.request("POST", "/v1/admin/users", {"username": "lofficer",
                               "password": "correct horse", "role": "officer"}, token=c.admin)
    assert st == 201, doc
    c.officer = c.srv.login("lofficer", "correct horse")[1]["token"]
    st, doc, _ = c.srv.request("POST", "/v1/cases", {"reference": "LOAD/1", "title": "Fire"},
                               token=c.officer)
    c.case = doc["id"]
    st, doc, _ = c.srv.request("POST", f"/v1/cases/{c.case}/submission-links",
                               {"kind": "appeal", "title": "Fire on Mill Lane", "max_files": 2,
                                "max_concurrent": 100}, token=c.officer)
    assert st == 201, doc
    c.link = doc
    return c


def teardown(c):
    assert c.srv.stop() == 0


def meta(**kv):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def submitter(c, i, out):
    conn = c.srv.conn(timeout=60)
    try:
        st, doc, _ = c.srv.request("POST", "/v1/portal/open", {"token": c.link["token"]}, conn=conn)
        assert st == 200, doc
        st, doc, _ = c.srv.request("POST", "/v1/portal/submissions",
                                   {"token": c.link["token"], "description": f"camera {i}",
                                    "location": f"{i} Mill Lane", "declaration": True}, conn=conn)
        assert st == 201, doc
        tok, ref = doc["submission_token"], doc["reference"]
        files = []
        for k in range(2):
            data = MP4_HEAD + os.urandom(FILE_BYTES - len(MP4_HEAD))
            sha = hashlib.sha256(data).hexdigest()
            kv = {"filename": f"cam{i}-{k}.mp4"}
            if k == 0:
                kv["sha256"] = sha
            st, doc, r = c.srv.request("POST", "/v1/uploads", token=tok, conn=conn, headers=dict(
                TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta(**kv)}))
            assert st == 201, doc
            loc = r.getheader("Location")
            for off in range(0, len(data), PATCH):
                st, doc, r = c.srv.request("PATCH", loc, data[off:off + PATCH], token=tok,
                                           conn=conn, headers=dict(TUS, **{
                                               "Upload-Offset": str(off),
                                               "Content-Type": "application/offset+octet-stream"}))
                assert st == 204, (st, doc)
            assert r.getheader("Evidence-Id") == sha, r.getheader("Evidence-Id")
            files.append(sha)
        # The link allows two files per submission: a third is refused.
        st, doc, _ = c.srv.request("POST", "/v1/uploads", token=tok, conn=conn, headers=dict(
            TUS, **{"Upload-Length": "1000", "Upload-Metadata": meta(filename="extra.mp4")}))
        assert st == 409 and doc["code"] == "file_limit_reached", doc
        st, doc, _ = c.srv.request("POST", "/v1/portal/submission/finish", {}, token=tok,
                                   conn=conn)
        assert st == 200 and doc["state"] == "submitted", doc
        out[i] = (tok, ref, files)
    except Exception as e:  # reported by the test
        out[i] = e
    finally:
        conn.close()


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def test_fifty_submitters_on_one_appeal_link(c):
    pid = c.srv.proc.pid
    asan = "libasan" in open(f"/proc/{pid}/maps").read()
    before = status_kib(pid, "VmRSS")
    out = [None] * SUBMITTERS
    threads = [threading.Thread(target=submitter, args=(c, i, out)) for i in range(SUBMITTERS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, DEADLINE - (time.time() - t0)))
    took = time.time() - t0
    assert not any(t.is_alive() for t in threads), f"submitters still running after {took:.0f} s"
    failed = [(i, o) for i, o in enumerate(out) if not isinstance(o, tuple)]
    assert not failed, failed[:3]
    peak = status_kib(pid, "VmHWM")
    print(f"     {SUBMITTERS} submitters, {2 * SUBMITTERS} files in {took:.1f} s;"
          f" demsd RSS {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB")
    assert peak - before < GROWTH_BOUND_KIB * (3 if asan else 1), (before, peak)
    # Nothing lost: each file recorded once, under its own submission.
    rc, got, err = c.srv.psql(
        "SELECT s.reference, u.evidence_id FROM uploads u JOIN submissions s"
        " ON s.id = u.owner_submission_id WHERE u.state = 'complete'")
    assert rc == 0, err
    recorded = {tuple(line.split("|")) for line in got.splitlines()}
    want = {(ref, sha) for _, ref, files in out for sha in files}
    assert recorded == want, (len(recorded), len(want))
    assert c.srv.psql("SELECT count(*) FROM submissions WHERE state = 'submitted'")[1] == \
        str(SUBMITTERS)
    ents = [e["body"] for e in ledger_entries(c.srv, c.admin)]
    assert sum(e["type"] == "SUBMITTED" for e in ents) == SUBMITTERS
    ingested = {e["artefact"] for e in ents if e["type"] == "INGESTED"
                and "submission" in e["payload"]}
    assert ingested == {sha for _, _, files in out for sha in files}
    # A few receipts, verified offline.
    key = c.srv.request("GET", "/v1/ledger/key")[1].decode().strip()
    for tok, ref, _ in (out[0], out[SUBMITTERS // 2], out[-1]):
        deadline = time.time() + 60
        while True:
            st, doc, _ = c.srv.request("GET", "/v1/portal/receipt", token=tok)
            if st == 200 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert st == 200, doc
        path = os.path.join(c.srv.root, f"{ref}.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        r = subprocess.run([VERIFY, "receipt", path, "--key", key], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    assert c.srv.request("GET", "/healthz")[0] == 200


def test_one_submission_of_a_hundred_files(c):
    """A CCTV export handed in file by file: 100 files in one submission
    (an appeal's default limit), then a 101st is refused."""
    st, link, _ = c.srv.request("POST", f"/v1/cases/{c.case}/submission-links",
                                {"kind": "appeal", "title": "Many files"}, token=c.officer)
    assert st == 201 and link["limits"]["max_files"] == 100, link
    st, doc, _ = c.srv.request("POST", "/v1/portal/submissions",
                               {"token": link["token"], "description": "all cameras",
                                "location": "depot", "declaration": True})
    tok = doc["submission_token"]
    conn = c.srv.conn(timeout=60)
    shas = set()
    for i in range(100):
        data = MP4_HEAD + i.to_bytes(4, "big") + os.urandom(2000)
        st, doc, r = c.srv.request("POST", "/v1/uploads", data, token=tok, conn=conn, headers=dict(
            TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta(filename=f"ch{i}.mp4"),
                    "Content-Type": "application/offset+octet-stream"}))
        assert st == 201 and r.getheader("Evidence-Id"), (i, st, doc)
        shas.add(r.getheader("Evidence-Id"))
    st, doc, _ = c.srv.request("POST", "/v1/uploads", token=tok, conn=conn, headers=dict(
        TUS, **{"Upload-Length": "10", "Upload-Metadata": meta(filename="ch100.mp4")}))
    assert st == 409 and doc["code"] == "file_limit_reached", doc
    conn.close()
    st, doc, _ = c.srv.request("POST", "/v1/portal/submission/finish", {}, token=tok)
    assert st == 200 and len(doc["files"]) == 100, doc
    assert {f["sha256"] for f in doc["files"]} == shas


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
