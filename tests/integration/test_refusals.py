# SPDX-License-Identifier: Apache-2.0
"""Refusals are accountable but bounded (issue 19.6): per window each
principal and each client address get a few ACCESS_DENIED entries; past the
bound a refusal is answered 429 too_many_refusals (Retry-After) without an
entry, and counted into one ACCESS_DENIED_SUMMARY entry per principal and
address when the window ends. A load of refused requests with long paths,
beside another user's uploads and downloads, leaves that user untouched and
the ledger within the bound; the summaries carry the right counts; the
export still verifies."""
import os
import subprocess
import threading
import time

from harness import Server, ledger_entries, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "verify",
                                     "dems-verify"))
PER_PRINCIPAL, PER_ADDRESS, WINDOW = 20, 45, 4
SETTINGS = {"refusal_max_per_principal": PER_PRINCIPAL,
            "refusal_max_per_address": PER_ADDRESS, "refusal_window": WINDOW}


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.tok = c.srv.admin_token()
    return c


def teardown(c):
    assert c.srv.stop() == 0


def entries(c, start=0):
    return ledger_entries(c.srv, c.tok, start)


def officer(c, name):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": name, "password": "correct horse", "role": "officer"},
                               token=c.tok)
    assert st == 201, doc
    return c.srv.login(name, "correct horse")[1]["token"]


def upload(c, data):
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.tok,
                               headers=dict(TUS, **{"Upload-Length": str(len(data)),
                                                    "Content-Type":
                                                        "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def of_type(ents, t, actor=None):
    return [e["body"] for e in ents if e["body"]["type"] == t
            and (actor is None or e["body"]["actor"]["id"] == actor)]


def window_of(ts):
    return int(ts // WINDOW)


def wait_summaries(c, start, actor, total, timeout=20):
    """The summaries of actor from entry start on, once they count total."""
    deadline = time.time() + timeout
    while True:
        sums = of_type(entries(c, start), "ACCESS_DENIED_SUMMARY", actor)
        got = sum(s["payload"]["count"] for s in sums)
        if got >= total or time.time() > deadline:
            assert got == total, (got, total, sums[-3:])
            return sums
        time.sleep(0.3)


def next_window():
    """Sleeps until just after the next refusal window opens."""
    time.sleep((int(time.time() // WINDOW) + 1) * WINDOW - time.time() + 0.05)


def refuse_loop(c, tok, stop, out, tag):
    conn = c.srv.conn()
    i = 0
    while not stop.is_set():
        path = f"/v1/admin/jobs/{tag}{'y' * 3000}{i}"
        sent = time.time()
        st, doc, r = c.srv.request("GET", path, token=tok, conn=conn)
        out.append((sent, time.time(), st, doc.get("code") if isinstance(doc, dict) else None,
                    r.getheader("Retry-After")))
        i += 1


def busy_admin(c, sha, stop, errors, counts):
    conn = c.srv.conn()
    i = 0
    while not stop.is_set():
        try:
            if i % 4 == 0:
                data = os.urandom(1500)
                st, doc, _ = c.srv.request(
                    "POST", "/v1/uploads", body=data, token=c.tok, conn=conn,
                    headers=dict(TUS, **{"Upload-Length": str(len(data)), "Content-Type":
                                         "application/offset+octet-stream"}))
            else:
                st, doc, _ = c.srv.request("GET", f"/v1/evidence/{sha}/content", token=c.tok,
                                           conn=conn)
            counts[0] += 1
            if st >= 300:
                errors.append((st, doc))
        except Exception as e:
            errors.append(repr(e))
            conn = c.srv.conn()
        i += 1


def test_refusal_load_is_bounded_and_summarised(c):
    sha = upload(c, os.urandom(4000))
    tok = officer(c, "lenny")
    before = len(entries(c))
    stop, errors, counts, out = threading.Event(), [], [0], []
    threads = [threading.Thread(target=busy_admin, args=(c, sha, stop, errors, counts))]
    threads += [threading.Thread(target=refuse_loop, args=(c, tok, stop, out, f"t{k}-"))
                for k in range(2)]
    t0 = time.time()
    for t in threads:
        t.start()
    time.sleep(10)
    stop.set()
    for t in threads:
        t.join()
    t1 = time.time()
    # The admin saw no error at all.
    assert counts[0] > 10 and not errors, (counts, errors[:3])
    denied = sum(1 for o in out if o[2] == 403)
    throttled = [o for o in out if o[2] == 429]
    assert {o[2] for o in out} == {403, 429}, {o[2] for o in out}
    assert all(o[3] == "too_many_refusals" and 1 <= int(o[4]) <= WINDOW for o in throttled)
    windows = window_of(t1) - window_of(t0) + 1
    # Each window ledgers at most PER_PRINCIPAL of lenny's refusals (the 403s; counted
    # where the request was sent and answered in the same window) ...
    per_window = {}
    for o in out:
        if o[2] == 403 and window_of(o[0]) == window_of(o[1]):
            per_window[window_of(o[0])] = per_window.get(window_of(o[0]), 0) + 1
    assert max(per_window.values()) <= PER_PRINCIPAL, per_window
    assert denied <= PER_PRINCIPAL * windows, (denied, windows)
    # ... every one of them is an entry, and every 429 is counted in a summary.
    sums = wait_summaries(c, before, "lenny", len(throttled))
    ents = entries(c, before)
    assert len(of_type(ents, "ACCESS_DENIED", "lenny")) == denied
    # The ledger grew by at most the bound plus one summary per window, plus the admin's own.
    admin = len([e for e in ents if e["body"]["actor"]["id"] == "admin"])
    assert len(ents) - admin <= PER_PRINCIPAL * windows + windows + 1, (len(ents), admin)
    for s in sums:
        p = s["payload"]
        assert s["actor"] == {"id": "lenny", "kind": "user"}, s
        assert p["principal"] == "user:lenny" and p["address"] == "127.0.0.1", p
        assert p["window_end"] > p["window_start"] and p["first"] <= p["last"], p
        assert 1 <= len(p["samples"]) <= 3, p
        smp = p["samples"][0]
        assert smp["method"] == "GET" and smp["path_truncated"] is True, smp
        assert len(smp["path"]) <= 128 and smp["path_length"] > 3000, smp
    c.load = (len(out), denied, len(throttled), counts[0], t1 - t0, len(sums))
    print(f"    {len(out)} refusals in {t1 - t0:.1f} s: {denied} ledgered, {len(throttled)} "
          f"answered 429 and summarised in {len(sums)} entries; admin made {counts[0]} requests",
          flush=True)


def test_address_bound_across_principals(c):
    """Three principals from one address: each stays under its own bound, the
    address reaches its bound, and the rest are summarised per principal."""
    toks = {n: officer(c, n) for n in ("ada", "bob", "cyd")}
    before = len(entries(c))
    next_window()
    conn = c.srv.conn()
    got = {n: [] for n in toks}
    for i in range(18):
        for n, tok in toks.items():
            st, doc, _ = c.srv.request("GET", f"/v1/admin/users?x={i}", token=tok, conn=conn)
            got[n].append(st)
    statuses = [s for n in got for s in got[n]]
    assert statuses.count(403) == PER_ADDRESS and statuses.count(429) == 3 * 18 - PER_ADDRESS, got
    assert all(got[n].count(403) <= PER_PRINCIPAL for n in got), got
    for n in toks:
        sums = wait_summaries(c, before, n, got[n].count(429))
        assert all(s["payload"]["samples"][0]["path"] == "/v1/admin/users" for s in sums)
    assert len(of_type(entries(c, before), "ACCESS_DENIED")) == PER_ADDRESS


def test_summaries_verify_and_survive_shutdown(c):
    """dems-verify accepts the new entry types; what was counted when demsd
    stops is summarised before it exits."""
    tok = c.srv.login("lenny", "correct horse")[1]["token"]
    before = len(entries(c))
    next_window()
    conn = c.srv.conn()
    sts = [c.srv.request("GET", "/v1/admin/devices", token=tok, conn=conn)[0]
           for _ in range(PER_PRINCIPAL + 5)]
    assert sts.count(429) == 5, sts
    pw = c.srv.admin_password
    assert c.srv.stop() == 0
    c.srv = Server(SETTINGS, data=c.srv.root).start()
    c.srv.admin_password = pw
    c.tok = c.srv.admin_token()
    sums = of_type(entries(c, before), "ACCESS_DENIED_SUMMARY", "lenny")
    assert [s["payload"]["count"] for s in sums] == [5], sums
    size = len(entries(c))
    deadline = time.time() + 10
    while time.time() < deadline:
        note = c.srv.request("GET", "/v1/ledger/checkpoint")[1].decode()
        if int(note.split("\n")[1]) >= size:
            break
        time.sleep(0.2)
    vkey = c.srv.request("GET", "/v1/ledger/key")[1].decode().strip()
    st, body, _ = c.srv.request("GET", "/v1/ledger/export", token=c.tok)
    path = os.path.join(c.srv.root, "export.jsonl")
    open(path, "wb").write(body)
    r = subprocess.run([VERIFY, "ledger", path, "--key", vkey], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
