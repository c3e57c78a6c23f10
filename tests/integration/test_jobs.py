# SPDX-License-Identifier: Apache-2.0
"""The job queue against a real demsd: verify-blob jobs queued through the
admin API and through SQL (inside a transaction, as the ingest will) run to
done; a LISTEN/NOTIFY wake-up picks a job up long before the fallback poll;
a damaged blob's job retries with backoff and ends dead with its last error,
and the retry endpoint brings it back; dedupe keys; unknown kinds and bad
payloads are refused; filters, paging and roles; the application role's
grants; a supervised worker killed with SIGKILL is restarted; serve's
workers stop with it (and die with it); `demsd worker` alone against
another serve's database processes jobs and reclaims the expired leases of
dead workers."""
import base64
import json
import os
import signal
import subprocess
import time

from harness import DEMSD, Server, run_tests

TUS = {"Tus-Resumable": "1.0.0"}

# A long fallback poll, so anything picked up quickly was woken by NOTIFY;
# short backoffs so retries are observable.
SETTINGS = {"job_poll_interval": 120, "job_backoff_base": 1, "job_backoff_max": 2,
            "job_max_attempts": 3}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.tok = c.srv.admin_token()
    st, _, _ = c.srv.request("POST", "/v1/admin/users",
                             {"username": "off1", "password": "officer11", "role": "officer"},
                             token=c.tok)
    assert st == 201
    c.off = c.srv.login("off1", "officer11")[1]["token"]
    c.others = []
    return c


def teardown(c):
    for p in c.others:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert c.srv.stop() == 0


def upload(srv, tok, data, filename="clip.bin"):
    meta = "filename " + base64.b64encode(filename.encode()).decode()
    st, doc, r = srv.request("POST", "/v1/uploads", body=data, token=tok,
                             headers=dict(TUS, **{"Upload-Length": str(len(data)),
                                                  "Upload-Metadata": meta,
                                                  "Content-Type":
                                                      "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def enqueue(srv, tok, sha, **kw):
    body = dict({"kind": "verify-blob", "payload": {"evidence": sha}}, **kw)
    st, doc, _ = srv.request("POST", "/v1/admin/jobs", body, token=tok)
    assert st == 201, (st, doc)
    return doc


def job(srv, tok, jid):
    st, doc, _ = srv.request("GET", f"/v1/admin/jobs/{jid}", token=tok)
    assert st == 200, (st, doc)
    return doc


def wait_state(srv, tok, jid, states, timeout=30):
    deadline = time.time() + timeout
    while True:
        d = job(srv, tok, jid)
        if d["state"] in states:
            return d
        if time.time() > deadline:
            raise AssertionError(f"job {jid} stuck in {d}: {srv.tail()}")
        time.sleep(0.05)


def children(pid, name="worker"):
    """PIDs of `demsd worker` processes whose parent is pid."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if len(argv) > 1 and argv[1] == name.encode() and ppid == pid:
            out.append(int(p))
    return out


def alive(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def quiesce(srv):
    """Drops waiting jobs (e.g. the preview queued by each upload) and waits
    until none runs, so the next job queued is the next one claimed."""
    deadline = time.time() + 120
    while True:
        rc, _, err = srv.psql("DELETE FROM jobs WHERE state IN ('queued', 'failed')")
        assert rc == 0, err
        rc, out, _ = srv.psql("SELECT count(*) FROM jobs WHERE state = 'running'")
        if out == "0":
            return
        assert time.time() < deadline, "jobs still running: " + srv.tail()
        time.sleep(0.1)


def app_url(srv):
    return srv.conninfo("dems_app")


def test_verify_blob_job_runs_to_done(c):
    sha = upload(c.srv, c.tok, os.urandom(200_000))
    d = enqueue(c.srv, c.tok, sha)
    assert d["kind"] == "verify-blob" and d["payload"] == {"evidence": sha}
    assert d["state"] in ("queued", "running", "done") and d["max_attempts"] == 3
    d = wait_state(c.srv, c.tok, d["id"], ("done", "dead"))
    assert d["state"] == "done" and d["attempts"] == 1, d
    assert d["lease_owner"] is None and d["finished_at"] and d["started_at"], d
    c.good = sha


def test_notify_wakes_an_idle_worker_long_before_the_poll(c):
    time.sleep(1.5)  # the worker is asleep in poll() (fallback: 120 s)
    t0 = time.time()
    d = enqueue(c.srv, c.tok, c.good)
    d = wait_state(c.srv, c.tok, d["id"], ("done", "dead"), timeout=20)
    took = time.time() - t0
    assert d["state"] == "done" and took < 10, (d, took)


def test_enqueue_with_sql_inside_a_transaction_and_dedupe(c):
    # What the ingest transaction does: the job is invisible (and wakes no
    # worker) until the transaction commits.
    sql = ("BEGIN; SELECT dems_enqueue_job('verify-blob', "
           f"jsonb_build_object('evidence', '{c.good}'), 'sql-{c.good}'); "
           f"SELECT dems_enqueue_job('verify-blob', jsonb_build_object('evidence', '{c.good}'), "
           f"'sql-{c.good}'); COMMIT;")
    rc, out, err = c.srv.psql(sql, user="dems_app")
    assert rc == 0, err
    ids = out.split()
    assert len(ids) == 2 and ids[0] == ids[1], out
    d = wait_state(c.srv, c.tok, int(ids[0]), ("done", "dead"))
    assert d["state"] == "done" and d["dedupe_key"] == f"sql-{c.good}"
    # The API's dedupe_key gives the same answer.
    a = enqueue(c.srv, c.tok, c.good, dedupe_key="once")
    b = enqueue(c.srv, c.tok, c.good, dedupe_key="once")
    assert a["id"] == b["id"]
    rc, out, _ = c.srv.psql("SELECT count(*) FROM jobs WHERE dedupe_key = 'once'")
    assert out == "1"
    # The shape the ingest's single pre_sql statement can take: the enqueue in
    # a CTE that the main statement reads (an unread SELECT CTE never runs).
    rc, out, err = c.srv.psql(
        "WITH j AS (SELECT dems_enqueue_job('verify-blob', jsonb_build_object('evidence', "
        f"'{c.good}'::text), 'cte-' || '{c.good}') AS job)"
        f" UPDATE uploads SET evidence_id = '{c.good}' FROM j WHERE evidence_id = '{c.good}'",
        user="dems_app")
    assert rc == 0, err
    rc, out, _ = c.srv.psql(f"SELECT id FROM jobs WHERE dedupe_key = 'cte-{c.good}'")
    assert out.isdigit(), out
    assert wait_state(c.srv, c.tok, int(out), ("done", "dead"))["state"] == "done"
    # A rolled-back enqueue leaves nothing.
    rc, out, _ = c.srv.psql("BEGIN; SELECT dems_enqueue_job('verify-blob', '{}', 'gone'); "
                            "ROLLBACK; SELECT count(*) FROM jobs WHERE dedupe_key = 'gone'",
                            user="dems_app")
    assert out.split()[-1] == "0", out


def test_damaged_blob_retries_with_backoff_then_dead_then_retry(c):
    sha = upload(c.srv, c.tok, os.urandom(300_000), filename="victim.bin")
    path = os.path.join(c.srv.data, "blobs", sha[:2], sha)
    good = open(path, "rb").read()
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0x01
    open(path, "wb").write(bytes(raw))
    t0 = time.time()
    d = enqueue(c.srv, c.tok, sha)
    seen_failed = wait_state(c.srv, c.tok, d["id"], ("failed", "dead"))
    assert seen_failed["state"] == "failed" and "altered" in seen_failed["last_error"], seen_failed
    assert seen_failed["run_after"] >= seen_failed["updated_at"]
    d = wait_state(c.srv, c.tok, d["id"], ("dead", "done"), timeout=60)
    took = time.time() - t0
    assert d["state"] == "dead" and d["attempts"] == 3, d
    assert d["last_error"] == f"blob {sha} is altered: decryption or SHA-256 check failed", d
    assert took >= 2.5, took  # waited 1 s, then 2 s, between attempts
    # Listed as dead.
    st, doc, _ = c.srv.request("GET", "/v1/admin/jobs?state=dead&kind=verify-blob", token=c.tok)
    assert st == 200 and d["id"] in [j["id"] for j in doc["jobs"]]
    assert all(j["state"] == "dead" for j in doc["jobs"])
    # Repaired, retried: queued with its attempts reset, then done.
    open(path, "wb").write(good)
    st, r, _ = c.srv.request("POST", f"/v1/admin/jobs/{d['id']}/retry", token=c.tok)
    assert st == 200 and r["attempts"] == 0 and r["state"] in ("queued", "running", "done"), r
    d = wait_state(c.srv, c.tok, d["id"], ("done", "dead"))
    assert d["state"] == "done" and d["attempts"] == 1, d
    # Only failed or dead jobs can be retried.
    st, r, _ = c.srv.request("POST", f"/v1/admin/jobs/{d['id']}/retry", token=c.tok)
    assert st == 409 and r["code"] == "job_not_retryable", r
    assert "done" in r["detail"]
    for bad in ("999999999", "abc", "0"):
        st, r, _ = c.srv.request("POST", f"/v1/admin/jobs/{bad}/retry", token=c.tok)
        assert st == 404 and r["code"] == "not_found", (bad, r)


def test_missing_evidence_is_dead_at_once(c):
    d = enqueue(c.srv, c.tok, "ab" * 32)
    d = wait_state(c.srv, c.tok, d["id"], ("dead", "done"))
    assert d["state"] == "dead" and d["attempts"] == 1, d
    assert d["last_error"] == "no evidence with id " + "ab" * 32


def test_unknown_kind_and_bad_payloads_are_refused(c):
    cases = [
        ({"kind": "frobnicate", "payload": {}}, "unknown_job_kind", "verify-blob"),
        ({"payload": {}}, "invalid_field", "kind"),
        ({"kind": 7}, "invalid_field", "kind"),
        ({"kind": "verify-blob"}, "invalid_field", "payload.evidence"),
        ({"kind": "verify-blob", "payload": []}, "invalid_field", "payload"),
        ({"kind": "verify-blob", "payload": {"evidence": "XYZ"}}, "invalid_field",
         "payload.evidence"),
        ({"kind": "verify-blob", "payload": {"evidence": "ab" * 32, "x": 1}}, "invalid_field",
         "payload"),
        ({"kind": "verify-blob", "payload": {"evidence": "ab" * 32}, "priority": 101},
         "invalid_field", "priority"),
        ({"kind": "verify-blob", "payload": {"evidence": "ab" * 32}, "max_attempts": 0},
         "invalid_field", "max_attempts"),
        ({"kind": "verify-blob", "payload": {"evidence": "ab" * 32}, "dedupe_key": ""},
         "invalid_field", "dedupe_key"),
    ]
    for body, code, word in cases:
        st, r, _ = c.srv.request("POST", "/v1/admin/jobs", body, token=c.tok)
        assert st == 400 and r["code"] == code and word in r["detail"], \
            (body, st, r)
    # Through SQL an unknown kind is not refused (SQL does not know the
    # kinds) but no worker claims it: it waits, queued, for one that does.
    rc, out, _ = c.srv.psql("SELECT dems_enqueue_job('frobnicate', '{}')", user="dems_app")
    assert rc == 0
    time.sleep(1)
    assert job(c.srv, c.tok, int(out))["state"] == "queued"
    # The schema refuses nonsense.
    rc, _, err = c.srv.psql("SELECT dems_enqueue_job('Bad Kind', '{}')", user="dems_app")
    assert rc != 0 and "jobs_kind_check" in err, err
    rc, _, err = c.srv.psql("SELECT dems_enqueue_job('verify-blob', '[1]')", user="dems_app")
    assert rc != 0 and "jobs_payload_check" in err, err


def test_listing_filters_and_paging(c):
    for q, name in (("state=bogus", "state"), ("state=", "state"), ("kind=Bad!", "kind"),
                    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"),
                    ("cursor=-1", "cursor"), ("cursor=x", "cursor"), ("cursor=1+2", "cursor")):
        st, r, _ = c.srv.request("GET", "/v1/admin/jobs?" + q, token=c.tok)
        assert st == 400 and r["code"] == "invalid_parameter", (q, r)
        assert f'"{name}"' in r["detail"], (q, r)
    st, doc, _ = c.srv.request("GET", "/v1/admin/jobs", token=c.tok)
    ids = [j["id"] for j in doc["jobs"]]
    assert st == 200 and len(ids) >= 5 and ids == sorted(ids, reverse=True), ids
    assert doc["next_cursor"] is None
    got, cursor = [], None
    while True:
        q = "/v1/admin/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        st, page, r = c.srv.request("GET", q, token=c.tok)
        assert st == 200 and len(page["jobs"]) <= 2
        got += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert r.getheader("Link") == f'</v1/admin/jobs?limit=2&cursor={cursor}>; rel="next"'
    # The last page is not padded: exactly the remaining jobs, no empty page after.
    assert len(got) == len(ids)
    assert got == ids
    st, doc, _ = c.srv.request("GET", "/v1/admin/jobs?state=done&kind=verify-blob", token=c.tok)
    assert doc["jobs"] and all(j["state"] == "done" for j in doc["jobs"])
    st, doc, _ = c.srv.request("GET", "/v1/admin/jobs?kind=nothing-like-this", token=c.tok)
    assert st == 200 and doc["jobs"] == []
    st, r, _ = c.srv.request("GET", "/v1/admin/jobs/424242", token=c.tok)
    assert st == 404 and r["code"] == "not_found"


def test_admin_only(c):
    for method, path, body in (("GET", "/v1/admin/jobs", None), ("GET", "/v1/admin/jobs/1", None),
                               ("POST", "/v1/admin/jobs/1/retry", None),
                               ("POST", "/v1/admin/jobs", {"kind": "verify-blob"})):
        st, r, _ = c.srv.request(method, path, body, token=c.off)
        assert st == 403, (method, path, st, r)
        st, r, _ = c.srv.request(method, path, body)
        assert st == 401, (method, path, st, r)


def test_application_role_has_least_privilege(c):
    for sql in ("DELETE FROM jobs", "UPDATE jobs SET payload = '{}'",
                "UPDATE jobs SET kind = 'x'", "UPDATE jobs SET dedupe_key = NULL",
                "TRUNCATE jobs"):
        rc, _, err = c.srv.psql(sql, user="dems_app")
        assert rc != 0 and "permission denied" in err, (sql, err)


def test_killed_worker_is_restarted(c):
    pids = wait_for(lambda: children(c.srv.proc.pid), what="a worker process")
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    new = wait_for(lambda: [p for p in children(c.srv.proc.pid) if p != pids[0]], timeout=30,
                   what="a restarted worker")
    assert "killed by signal 9" in c.srv.tail(100000)
    assert '"event":"worker_exited"' in c.srv.tail(100000)
    # The new one works (and was woken by NOTIFY: the poll is 120 s).
    time.sleep(1)
    d = enqueue(c.srv, c.tok, c.good)
    assert wait_state(c.srv, c.tok, d["id"], ("done", "dead"))["state"] == "done"
    c.worker_pid = new[0]


def test_standalone_worker_and_expired_leases(c):
    """A serve without workers; `demsd worker` alone (database_url given)
    processes its jobs, reclaims the expired leases of a dead worker, and
    stops on SIGTERM."""
    srv = Server({"workers": 0, "job_backoff_base": 1, "job_backoff_max": 1,
                  "job_max_attempts": 2}).start()
    try:
        tok = srv.admin_token()
        assert children(srv.proc.pid) == []
        sha = upload(srv, tok, os.urandom(50_000))
        d = enqueue(srv, tok, sha)
        time.sleep(1)
        assert job(srv, tok, d["id"])["state"] == "queued"  # no worker yet
        # A dead worker's jobs: one with an attempt left, one without.
        rc, out, err = srv.psql(
            "INSERT INTO jobs (kind, payload, state, attempts, lease_owner, lease_expires,"
            f" started_at) VALUES ('verify-blob', '{{\"evidence\": \"{sha}\"}}', 'running', 1,"
            " 'ghost:1:0', now() - interval '1 minute', now() - interval '2 minutes'),"
            f" ('verify-blob', '{{\"evidence\": \"{sha}\"}}', 'running', 2, 'ghost:1:0',"
            " now() - interval '1 second', now() - interval '2 minutes') RETURNING id")
        assert rc == 0, err
        retried, exhausted = [int(x) for x in out.split()]
        log = open(os.path.join(srv.root, "worker.log"), "wb")
        w = subprocess.Popen([DEMSD, "worker", "--data", srv.data, "--set",
                              "database_url=" + app_url(srv), "--set", "job_poll_interval=60",
                              "--set", "job_backoff_base=1", "--set", "job_max_attempts=2"],
                             stdout=subprocess.DEVNULL, stderr=log)
        try:
            assert wait_state(srv, tok, d["id"], ("done", "dead"))["state"] == "done"
            e = wait_state(srv, tok, exhausted, ("dead", "done"))
            assert e["state"] == "dead" and e["last_error"] == "lease expired (worker died?)", e
            r = wait_state(srv, tok, retried, ("done", "dead"))
            assert r["state"] == "done" and r["attempts"] == 2, r
            assert r["last_error"] == "lease expired (worker died?)", r
            wlog = open(os.path.join(srv.root, "worker.log")).read()
            assert '"event":"job_leases_expired","jobs":2' in wlog, wlog
            # Woken by NOTIFY, not the 60 s poll.
            t0 = time.time()
            d = enqueue(srv, tok, sha)
            assert wait_state(srv, tok, d["id"], ("done", "dead"))["state"] == "done"
            assert time.time() - t0 < 10
            w.send_signal(signal.SIGTERM)
            assert w.wait(30) == 0
            assert '"event":"worker_stopped"' in open(os.path.join(srv.root, "worker.log")).read()
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
    finally:
        assert srv.stop() == 0


def test_lease_renewed_while_running_and_reclaimed_after_kill_9(c):
    """A job stuck in its handler (its blob is a FIFO nobody writes) keeps its
    lease while its worker lives, even past job_lease and with another worker
    reaping every second; after kill -9 of that worker the lease expires and
    the other worker runs the job again."""
    srv = Server({"workers": 0}).start()
    procs = []
    try:
        tok = srv.admin_token()
        data = os.urandom(70_000)
        sha = upload(srv, tok, data)
        quiesce(srv)
        path = os.path.join(srv.data, "blobs", sha[:2], sha)
        good = open(path, "rb").read()
        os.unlink(path)
        os.mkfifo(path)
        log = open(os.path.join(srv.root, "workers.log"), "wb")

        def worker():
            p = subprocess.Popen([DEMSD, "worker", "--data", srv.data, "--set", "job_lease=3",
                                  "--set", "job_poll_interval=1", "--set", "job_backoff_base=1"],
                                 stdout=subprocess.DEVNULL, stderr=log)
            procs.append(p)
            return p

        a = worker()
        d = enqueue(srv, tok, sha)
        d = wait_state(srv, tok, d["id"], ("running",))
        assert d["lease_owner"].endswith(f":{a.pid}:0"), d
        b = worker()
        time.sleep(5)  # longer than job_lease: only renewals keep it
        d2 = job(srv, tok, d["id"])
        assert d2["state"] == "running" and d2["lease_owner"] == d["lease_owner"], d2
        assert d2["lease_expires"] > d["lease_expires"], (d, d2)
        a.kill()
        a.wait()
        os.unlink(path)
        open(path, "wb").write(good)
        d = wait_state(srv, tok, d["id"], ("done", "dead"), timeout=30)
        assert d["state"] == "done" and d["attempts"] == 2, d
        assert d["last_error"] == "lease expired (worker died?)", d
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert srv.stop() == 0


def test_serve_kills_a_worker_that_does_not_stop_in_time(c):
    """SIGTERM to serve: a worker whose job cannot finish gets SIGKILL after
    shutdown_timeout, and serve still exits 0."""
    srv = Server({"shutdown_timeout": 2}).start()
    tok = srv.admin_token()
    sha = upload(srv, tok, os.urandom(10_000))
    quiesce(srv)
    path = os.path.join(srv.data, "blobs", sha[:2], sha)
    os.unlink(path)
    os.mkfifo(path)
    d = enqueue(srv, tok, sha)
    wait_state(srv, tok, d["id"], ("running",))
    pids = children(srv.proc.pid)
    t0 = time.time()
    assert srv.stop() == 0
    assert time.time() - t0 < 20
    assert '"event":"worker_killed"' in srv.tail(100000), srv.tail()
    assert not any(alive(p) for p in pids)


def test_worker_waits_quietly_while_the_database_is_down(c):
    """With its database gone a worker retries the connection with backoff
    and sleeps in between: it must not spin (it once polled with a zero
    timeout because renewals and reaping were past due)."""
    srv = Server({"workers": 0}).start()
    assert srv.stop() == 0  # the embedded database stops with serve
    log = open(os.path.join(srv.root, "lonely.log"), "wb")
    w = subprocess.Popen([DEMSD, "worker", "--data", srv.data], stdout=subprocess.DEVNULL,
                         stderr=log)
    try:
        time.sleep(1.5)

        def cpu():
            f = open(f"/proc/{w.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        t0, c0 = time.time(), cpu()
        time.sleep(4)
        used = cpu() - c0
        assert w.poll() is None, "the worker gave up"
        assert used < 0.5 * (time.time() - t0) / 4, f"worker used {used:.2f} s of CPU in 4 s"
        assert '"event":"worker_db_unavailable"' in open(log.name).read()
        w.send_signal(signal.SIGTERM)
        assert w.wait(10) == 0
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()


def test_worker_command_line(c):
    r = subprocess.run([DEMSD, "worker", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage: demsd worker" in r.stdout and "verify-blob" in r.stdout
    r = subprocess.run([DEMSD, "--help"], capture_output=True, text=True)
    assert "worker" in r.stdout
    r = subprocess.run([DEMSD, "worker", "--data", "/tmp/x", "--set", "job_lease=1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "job_lease" in r.stderr, r.stderr
    r = subprocess.run([DEMSD, "worker", "--data", "/tmp/x", "--set", "job_backoff_base=10",
                        "--set", "job_backoff_max=5"], capture_output=True, text=True)
    assert r.returncode == 2 and "job_backoff_max" in r.stderr, r.stderr
    # Elsewhere without the master key: refuses instead of making a new one.
    r = subprocess.run([DEMSD, "worker", "--data", "/tmp/dems-no-such-dir", "--set",
                        "database_url=host=/nonexistent"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "master key" in r.stderr, r.stderr
    assert not os.path.exists("/tmp/dems-no-such-dir/keys/master.key")


def test_workers_stop_with_serve_and_die_with_it(c):
    pid = c.worker_pid
    assert alive(pid)
    # kill -9 of serve: PR_SET_PDEATHSIG stops the worker.
    c.srv.proc.kill()
    c.srv.proc.wait()
    wait_for(lambda: not alive(pid), timeout=30, what="the orphaned worker to exit")
    # Serve again on the same data (adopting the running cluster); SIGTERM
    # stops its worker before it exits.
    pw = c.srv.admin_password
    c.srv = Server(SETTINGS, data=c.srv.root).start()
    c.srv.admin_password = pw
    c.tok = c.srv.admin_token()
    pids = wait_for(lambda: children(c.srv.proc.pid), what="a worker process")
    assert c.srv.stop() == 0
    assert not any(alive(p) for p in pids)
    assert '"event":"worker_stopped"' in c.srv.tail(100000)
    c.srv = Server(SETTINGS, data=c.srv.root).start()


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
