# SPDX-License-Identifier: Apache-2.0
"""GET /metrics (issue 15; docs/operations.md, "Metrics and alerts"): admins
only, the Prometheus text format as the Prometheus client's own parser reads
it, and the numbers move with what the server does: requests by route and
status, latency, bytes, ledger size and commits, checkpoint age, jobs by kind
and state, workers alive and restarted."""
import base64
import os
import signal
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import Server, run_tests

TUS = {"Tus-Resumable": "1.0.0"}


class Ctx:
    pass


def scrape(c):
    st, body, r = c.srv.request("GET", "/metrics", token=c.admin)
    assert st == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4"), st
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    return fams


def value(fams, name, **labels):
    """The sample of family `name` (the sample's own name may add _total,
    _bucket, ...) whose labels include `labels`; None when there is none."""
    fam = fams.get(name)
    if fam is None:
        return None
    for s in fam.samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name in (name, name + "_total"):
            return s.value
    return None


def setup():
    c = Ctx()
    c.srv = Server({"workers": 1}).start()
    c.admin = c.srv.admin_token()
    st, doc, _ = c.srv.request("POST", "/v1/admin/users", {
        "username": "mofficer", "password": "correct horse", "role": "officer"}, token=c.admin)
    assert st == 201, doc
    c.off = c.srv.login("mofficer", "correct horse")[1]["token"]
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_admins_only(c):
    assert c.srv.request("GET", "/metrics", token=c.off)[0] == 403
    assert c.srv.request("GET", "/metrics")[0] == 401


def test_counters_move_with_requests_and_uploads(c):
    before = scrape(c)
    for _ in range(3):
        assert c.srv.request("GET", "/v1/me", token=c.off)[0] == 200
    assert c.srv.request("GET", "/v1/evidence/" + "0" * 64, token=c.off)[0] == 404
    data = b"METRICS " + os.urandom(100_000)
    meta = f"filename {base64.b64encode(b'm.bin').decode()}"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.off, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta,
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, doc
    # A request is counted when it ends, just after its last byte is written:
    # the client may read the answer first (seen under AddressSanitizer).
    upload = dict(method="POST", route="/v1/uploads", status="201")
    deadline = time.time() + 10
    after = scrape(c)
    while value(after, "dems_http_requests", **upload) != 1 and time.time() < deadline:
        time.sleep(0.1)
        after = scrape(c)
    me = dict(method="GET", route="/v1/me", status="200")
    assert (value(after, "dems_http_requests", **me) or 0) - \
        (value(before, "dems_http_requests", **me) or 0) == 3
    miss = dict(method="GET", route="/v1/evidence/{id}", status="404")
    assert value(after, "dems_http_requests", **miss) == 1, after["dems_http_requests"].samples
    assert value(after, "dems_http_requests", **upload) == 1
    # The upload's bytes came in; answers went out.
    got = value(after, "dems_http_received_bytes") - value(before, "dems_http_received_bytes")
    assert got >= len(data), got
    assert value(after, "dems_http_sent_bytes") > value(before, "dems_http_sent_bytes")
    # Latency: a histogram per route whose count is the route's requests.
    hist = after["dems_http_request_duration_seconds"]
    count = [s for s in hist.samples if s.name.endswith("_count")
             and s.labels.get("route") == "/v1/me"]
    assert count and count[0].value >= 3, count
    # The ledger grew (INGESTED) and this process committed it.
    assert value(after, "dems_ledger_entries") > value(before, "dems_ledger_entries")
    assert value(after, "dems_ledger_committed_entries") >= 1
    ledger = after["dems_ledger_commit_seconds"]
    assert any(s.name.endswith("_count") and s.value >= 1 for s in ledger.samples)


def test_jobs_checkpoint_and_workers(c):
    deadline = time.time() + 30
    while True:
        fams = scrape(c)
        preview = [s for s in fams["dems_jobs"].samples if s.labels.get("kind") == "preview"]
        age = value(fams, "dems_ledger_checkpoint_age_seconds")
        if preview and age is not None and age == age and value(fams, "dems_workers_alive") == 1:
            break
        assert time.time() < deadline, (preview, age, value(fams, "dems_workers_alive"))
        time.sleep(0.5)
    assert 0 <= age < 3600, age
    assert value(fams, "dems_workers_configured") == 1
    assert value(fams, "dems_jobs_lease_expired") == 0
    # A worker killed is restarted, and counted.
    workers = []
    for p in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            stat = open(f"/proc/{p}/stat").read()
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == c.srv.proc.pid and len(argv) > 1 and argv[1] == b"worker":
            workers.append(int(p))
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.time() + 30
    while True:
        fams = scrape(c)
        if value(fams, "dems_worker_restarts") == 1 and value(fams, "dems_workers_alive") == 1:
            break
        assert time.time() < deadline, (value(fams, "dems_worker_restarts"),
                                        value(fams, "dems_workers_alive"))
        time.sleep(0.5)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
