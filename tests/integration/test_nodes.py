# SPDX-License-Identifier: Apache-2.0
"""Two demsd nodes, each with a job worker, sharing one PostgreSQL that this
test starts itself (initdb, its own Unix socket: not an embedded cluster),
one object store (s3rver behind the SigV4 gate, stores.py) and one master
key, each with a data directory of its own (docs/operations.md, "Several
nodes"):

- evidence uploaded on one node is downloaded from the other;
- uploads on both nodes append to one ledger that stays gapless and verifies
  offline, and both nodes' checkpoints are consistent with it;
- jobs are claimed by both nodes' workers;
- an upload whose PATCHes alternate between the nodes completes, and one
  whose node is killed mid-PATCH is resumed on the other;
- a login throttle earned on one node holds on the other, and so does a
  public rate limit."""
import base64
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time

from harness import (Server, eventually, ledger_entries, make_data_root, run_tests,
                     service_account)
from stores import S3rver

PG_BIN = os.environ.get("DEMS_PG_BIN", "/usr/lib/postgresql/15/bin")
VERIFY = os.environ.get("DEMS_VERIFY", "build/plain/server/verify/dems-verify")
TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


class Postgres:
    """A PostgreSQL cluster of the test's own: initdb into root/pg, a Unix
    socket in root/sock, no TCP; roles and database as demsd expects them
    (docs/operations.md, "An external PostgreSQL")."""

    def __init__(self, root):
        self.dir = os.path.join(root, "pg")
        self.sock = os.path.join(root, "sock")
        self.log = os.path.join(root, "pg.log")
        os.makedirs(self.sock)
        self.as_user = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
            os.chown(root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run(f"{PG_BIN}/initdb", "-D", self.dir, "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--no-sync")
        self.run(f"{PG_BIN}/pg_ctl", "-D", self.dir, "-l", self.log, "-w", "-o",
                 f"-k {self.sock} -c listen_addresses='' -c fsync=off", "start")
        self.sql("postgres", "CREATE ROLE dems_owner LOGIN; CREATE ROLE dems_app LOGIN;")
        self.sql("postgres", "CREATE DATABASE dems OWNER dems_owner")
        self.sql("dems", "ALTER SCHEMA public OWNER TO dems_owner;"
                 "REVOKE ALL ON SCHEMA public FROM PUBLIC;"
                 "GRANT USAGE ON SCHEMA public TO dems_app;"
                 "REVOKE ALL ON DATABASE dems FROM PUBLIC;"
                 "GRANT CONNECT ON DATABASE dems TO dems_owner, dems_app")

    def run(self, *args):
        r = subprocess.run(self.as_user + list(args), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    def sql(self, db, text):
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-U",
                            "postgres", "-d", db, "-At", "-c", text],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def url(self, user):
        return f"host={self.sock} dbname=dems user={user}"

    def stop(self):
        subprocess.run(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", self.dir, "-m", "fast", "-w",
                                       "stop"], capture_output=True, timeout=60)


class Ctx:
    pass


def node(c, name, via=None):
    settings = {"database_url": c.pg.url("dems_app"),
                "database_owner_url": c.pg.url("dems_owner"),
                "master_key_file": c.master, "workers": 1, "login_max_failures": 3,
                "housekeeping_interval": 1, "public_rate_per_minute": 1, "public_rate_burst": 2}
    env = {k: v for k, v in c.s3.env(via=via, retries=1, timeout=10).items() if v != ""}
    srv = Server(settings, env=env)
    srv.name = name
    return srv


def setup():
    c = Ctx()
    c.root = make_data_root()
    c.pg = c.s3 = c.a = c.b = c.proxy = None
    try:
        c.pg = Postgres(os.path.join(c.root, "db"))
        c.s3 = S3rver(c.root)
        c.proxy = c.s3.fault_proxy()  # node a's way to the store, to fail it alone
        keys = os.path.join(c.root, "keys")  # the shared key's directory: demsd's account's
        os.makedirs(keys, mode=0o700)
        if service_account():
            os.chown(keys, *service_account())
        c.master = os.path.join(keys, "master.key")
        c.a = node(c, "a", via=c.proxy).start()  # makes the master key, migrates, the admin
        c.b = node(c, "b").start()
        c.tok = c.a.admin_token()
    except BaseException:
        stop_all(c)  # nothing left running behind a failed start
        raise
    return c


def stop_all(c):
    """Stops everything, whatever fails on the way; demsd's exit codes."""
    codes = []
    try:
        for s in (c.a, c.b):
            if s is not None:
                codes.append(s.stop())
    finally:
        for x in (c.proxy, c.s3, c.pg):
            if x is not None:
                x.stop()
    return codes


def teardown(c):
    assert stop_all(c) == [0, 0]


def upload(srv, tok, data, name="clip.mp4"):
    meta = "filename " + base64.b64encode(name.encode()).decode()
    st, doc, r = srv.request("POST", "/v1/uploads", body=data, token=tok, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta}))
    assert st == 201 and r.getheader("Evidence-Id"), (st, doc, r.getheaders())
    return r.getheader("Evidence-Id")


def test_both_nodes_serve_and_share_the_store(c):
    data = os.urandom(7 << 20)  # a multipart upload into the store
    sha = upload(c.a, c.tok, data)
    assert sha == hashlib.sha256(data).hexdigest()
    st, body, _ = c.b.request("GET", f"/v1/evidence/{sha}/content", token=c.tok)
    assert st == 200 and body == data
    data2 = os.urandom(100_000)
    sha2 = upload(c.b, c.tok, data2)
    st, body, _ = c.a.request("GET", f"/v1/evidence/{sha2}/content", token=c.tok,
                              headers={"Range": "bytes=10-19"})
    assert st == 206 and body == data2[10:20]
    for s in (c.a, c.b):
        assert not os.path.exists(os.path.join(s.data, "blobs", sha[:2], sha))


def test_one_ledger_from_both_nodes(c):
    for i in range(6):
        upload((c.a, c.b)[i % 2], c.tok, os.urandom(5000 + i), f"n{i}.jpg")
    size = len(ledger_entries(c.a, c.tok))
    assert size >= 8, size
    # The export runs up to the newest signed checkpoint: wait until it covers all.
    assert eventually(lambda: checkpoint_at_least(c.a, size), timeout=20), "no checkpoint"
    st, body, r = c.a.request("GET", "/v1/ledger/export", token=c.tok)
    assert st == 200
    path = os.path.join(c.root, "export.jsonl")
    with open(path, "wb") as f:
        f.write(body if isinstance(body, bytes) else json.dumps(body).encode())
    lines = [json.loads(x) for x in open(path, "rb").read().splitlines() if x.strip()]
    st, vkey, _ = c.a.request("GET", "/v1/ledger/key")
    st2, vkey2, _ = c.b.request("GET", "/v1/ledger/key")
    assert vkey == vkey2, "the nodes sign with different keys"
    r = subprocess.run([VERIFY, "ledger", path, "--key", vkey.decode().strip()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    assert len(lines) >= size, (len(lines), size)
    # Both nodes' latest checkpoints are signed notes over this one log and
    # verify; the larger one's size is at most the log's.
    notes = []
    for s in (c.a, c.b):
        note = eventually(lambda: checkpoint_at_least(s, 8), timeout=20)
        assert note, f"node {s.name} signs no checkpoint"
        npath = os.path.join(c.root, f"checkpoint-{s.name}.txt")
        open(npath, "w").write(note)
        r = subprocess.run([VERIFY, "checkpoint", npath, "--key", vkey.decode().strip()],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        notes.append(note)


def checkpoint_at_least(s, size):
    st, note, _ = s.request("GET", "/v1/ledger/checkpoint")
    if st != 200:
        return None
    text = note.decode()
    return text if int(text.split("\n")[1]) >= size else None


def test_jobs_claimed_by_both_workers(c):
    sha = upload(c.a, c.tok, os.urandom(50_000), "jobs.bin")
    ids = []
    for _ in range(16):
        st, doc, _ = c.a.request("POST", "/v1/admin/jobs",
                                 {"kind": "verify-blob", "payload": {"evidence": sha}},
                                 token=c.tok)
        assert st == 201, doc
        ids.append(doc["id"])

    def done():
        states = [c.b.request("GET", f"/v1/admin/jobs/{i}", token=c.tok)[1]["state"]
                  for i in ids]
        return all(s == "done" for s in states)

    assert eventually(done, timeout=60), "the jobs did not finish"
    by = {}
    for s in (c.a, c.b):
        log = open(s.log_path, "rb").read().decode(errors="replace")
        by[s.name] = sum(f'"event":"job_finished","job":{i},' in log for i in ids)
    assert by["a"] + by["b"] == len(ids), by
    assert by["a"] > 0 and by["b"] > 0, f"one worker took every job: {by}"


def create(srv, tok, length, name):
    meta = "filename " + base64.b64encode(name.encode()).decode()
    st, doc, r = srv.request("POST", "/v1/uploads", token=tok, headers=dict(
        TUS, **{"Upload-Length": str(length), "Upload-Metadata": meta}))
    assert st == 201, (st, doc)
    return r.getheader("Location")


def patch(srv, tok, loc, offset, piece):
    return srv.request("PATCH", loc, body=piece, token=tok, headers=dict(
        TUS, **{"Upload-Offset": str(offset)}))


def head_offset(srv, tok, loc):
    st, _, r = srv.request("HEAD", loc, token=tok, headers={"Tus-Resumable": "1.0.0"})
    assert st == 200, st
    return int(r.getheader("Upload-Offset"))


def staged_on_disk(srv):
    """Bytes the node's staging files really occupy (they are sparse)."""
    d = os.path.join(srv.data, "staging")
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in os.listdir(d))


# One staged part's plaintext: 80 chunks of 64 KiB, the fewest that make
# S3's smallest part (5 MiB) once encrypted (the nodes' store_block_size is
# below it, so S3's minimum applies).
PART = 80 * (64 << 10)
DRIVER = os.environ.get("DEMS_OBJSTORE_DRIVER",
                        "build/plain/tests/integration/dems-objstore-driver")


def store_keys(c, prefix):
    env = dict(os.environ, **{k: v for k, v in c.s3.env().items() if v != ""})
    r = subprocess.run([DRIVER, "list", prefix], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return [ln.split()[0] for ln in r.stdout.splitlines()]


def test_an_upload_alternates_between_nodes_mid_file(c):
    """Every PATCH of one upload goes to the other node: each node stages
    whole parts in the store as bytes arrive and commits the upload's state
    to PostgreSQL, so the next node goes on where the last one stopped. No
    node ever holds much more than a part of it on disk."""
    data = os.urandom(3 * PART + (5 << 20) + 12345)
    sha = hashlib.sha256(data).hexdigest()
    loc = create(c.a, c.tok, len(data), "alternating.mp4")
    off, i, chunk = 0, 0, 3 << 20
    while off < len(data):
        srv, other = (c.b, c.a) if i % 2 == 0 else (c.a, c.b)
        piece = data[off:off + chunk]
        st, doc, r = patch(srv, c.tok, loc, off, piece)
        assert st == 204, (srv.name, off, st, doc)
        off += len(piece)
        assert int(r.getheader("Upload-Offset")) == off, r.getheaders()
        if off < len(data):
            assert head_offset(other, c.tok, loc) == off  # the other node agrees
        for s in (c.a, c.b):
            assert staged_on_disk(s) <= 2 * PART + (1 << 20), (s.name, staged_on_disk(s))
        i += 1
    assert r.getheader("Evidence-Id") == sha, r.getheaders()
    st, body, _ = c.a.request("GET", f"/v1/evidence/{sha}/content", token=c.tok)
    assert st == 200 and hashlib.sha256(body).hexdigest() == sha
    # The staged object, its tail objects and the local windows are gone.
    assert eventually(lambda: store_keys(c, "staging/") == [], timeout=10), \
        store_keys(c, "staging/")
    # A file of whole parts: the last part ends it, no empty part is staged.
    whole = os.urandom(2 * PART)
    assert upload(c.b, c.tok, whole, "whole-parts.mp4") == hashlib.sha256(whole).hexdigest()
    # A request on a stale state is refused rather than forking the upload.
    loc2 = create(c.a, c.tok, 3 * PART, "stale.mp4")
    st, _, _ = patch(c.a, c.tok, loc2, 0, data[:PART + 100])
    assert st == 204
    st, doc, _ = patch(c.b, c.tok, loc2, 0, data[:100])
    assert st == 409 and doc["code"] == "offset_mismatch", (st, doc)


def test_a_terminated_upload_leaves_nothing_in_the_store(c):
    """Terminating an upload on the node that did not receive it removes its
    staged parts (the stage is aborted), its tail object and the state, and
    fences any request still writing it."""
    data = os.urandom(PART + (1 << 20))
    loc = create(c.a, c.tok, 3 * PART, "ended.mp4")
    st, _, _ = patch(c.a, c.tok, loc, 0, data)
    assert st == 204
    uid = loc.rsplit("/", 1)[1]
    assert [k for k in store_keys(c, "staging/") if uid in k], store_keys(c, "staging/")
    # s3rver keeps each multipart upload in progress as a directory.
    stages = os.path.join(c.s3.data, c.s3.bucket, "._S3rver_uploads")
    before = len(os.listdir(stages))
    assert before >= 1
    st, _, _ = c.b.request("DELETE", loc, token=c.tok, headers={"Tus-Resumable": "1.0.0"})
    assert st == 204
    assert eventually(lambda: not [k for k in store_keys(c, "staging/") if uid in k],
                      timeout=10), store_keys(c, "staging/")
    assert eventually(lambda: len(os.listdir(stages)) == before - 1, timeout=10), \
        os.listdir(stages)
    st, doc, _ = patch(c.a, c.tok, loc, len(data), data[:100])
    assert st == 404, (st, doc)


def test_a_state_moved_to_another_upload_is_refused(c):
    """The committed state is sealed and bound to its upload and version: one
    copied onto another upload's row (a database-side forgery or mix-up)
    does not open, the PATCH answers 500 staging_corrupt and nothing else is
    disturbed."""
    data = os.urandom(1 << 20)
    x = create(c.a, c.tok, 2 << 20, "x.mp4")
    y = create(c.a, c.tok, 2 << 20, "y.mp4")
    for loc in (x, y):
        st, _, _ = patch(c.a, c.tok, loc, 0, data)
        assert st == 204
    xid, yid = x.rsplit("/", 1)[1], y.rsplit("/", 1)[1]
    c.pg.sql("dems", f"UPDATE uploads SET (stage_state, stage_ver) = (SELECT stage_state,"
                     f" stage_ver FROM uploads WHERE id = '{xid}') WHERE id = '{yid}'")
    st, doc, _ = patch(c.b, c.tok, y, len(data), data)  # node b loads it from the database
    assert st == 500 and doc["code"] == "staging_corrupt", (st, doc)
    assert '"event":"upload_state_unloadable"' in c.b.tail(200000)
    st, _, r = patch(c.b, c.tok, x, len(data), data)  # the other upload is untouched
    assert st == 204 and r.getheader("Evidence-Id") == hashlib.sha256(data + data).hexdigest()
    assert c.b.request("GET", "/healthz")[0] == 200


def test_a_node_killed_mid_upload_is_resumed_on_the_other(c):
    """Node a dies (SIGKILL) in the middle of a long PATCH: what it had
    committed (whole parts) is in the store and PostgreSQL, and the client
    resumes on node b from the offset b reports."""
    data = os.urandom(4 * PART + 777)
    sha = hashlib.sha256(data).hexdigest()
    loc = create(c.a, c.tok, len(data), "killed.mp4")
    conn = c.a.conn(timeout=60)
    conn.putrequest("PATCH", loc)
    for k, v in dict(TUS, **{"Upload-Offset": "0", "Content-Length": str(len(data)),
                             "Authorization": f"Bearer {c.tok}"}).items():
        conn.putheader(k, v)
    conn.endheaders()
    sent = 0
    while sent < 2 * PART + (3 << 20):
        conn.send(data[sent:sent + (1 << 20)])
        sent += 1 << 20
    # Two whole parts are committed (polled on node b) before the kill.
    assert eventually(lambda: head_offset(c.b, c.tok, loc) >= 2 * PART, timeout=30), \
        head_offset(c.b, c.tok, loc)
    c.a.stop(sig=signal.SIGKILL)
    conn.close()
    off = head_offset(c.b, c.tok, loc)
    assert 0 < off < len(data) and off % (64 << 10) == 0, off
    st, doc, r = patch(c.b, c.tok, loc, off, data[off:])
    assert st == 204 and r.getheader("Evidence-Id") == sha, (st, doc, r.getheaders())
    st, body, _ = c.b.request("GET", f"/v1/evidence/{sha}/content", token=c.tok)
    assert st == 200 and hashlib.sha256(body).hexdigest() == sha
    c.a.start()  # for the tests after this one, and a clean stop at the end
    # Local windows go: at a start, and once idle for 30 s (the node that
    # left them cannot know another node went on).
    for s in (c.a, c.b):
        assert eventually(lambda: os.listdir(os.path.join(s.data, "staging")) == [],
                          timeout=60), (s.name, os.listdir(os.path.join(s.data, "staging")))


def test_login_throttle_is_shared(c):
    st, doc, _ = c.a.request("POST", "/v1/admin/users",
                             {"username": "nina", "password": "correct horse",
                              "role": "officer"}, token=c.tok)
    assert st == 201, doc
    for _ in range(3):
        assert c.a.login("nina", "wrong password")[0] == 401
    st, doc, _ = c.b.login("nina", "correct horse")
    assert st == 429 and doc["code"] == "too_many_attempts", (st, doc)


def test_rate_limits_are_shared(c):
    """The public routes' token buckets are rows in the shared database: a
    client address that spends its burst on one node is refused on the other."""
    for _ in range(2):
        st, doc, _ = c.a.request("POST", "/v1/disclosure/open", {"token": "nonsense"})
        assert st != 429, (st, doc)
    st, doc, r = c.b.request("POST", "/v1/disclosure/open", {"token": "nonsense"})
    assert st == 429 and doc["code"] == "too_many_requests", (st, doc)
    assert r.getheader("Retry-After"), r.getheaders()


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
