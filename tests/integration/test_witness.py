# SPDX-License-Identifier: Apache-2.0
"""Witnesses (docs/ledger.md, "Witnesses"): C2SP tlog-witness and
tlog-cosignature between real demsd instances on loopback.

Three logs A, B and C witness one another; a fourth demsd, D, is a witness
only (of A), so that A has three witnesses and a quorum of 2 can be met with
one of them down. Checkpoints get cosigned (each cosignature checked here
with an Ed25519 implementation of our own, not demsd's) and published with
their cosignature lines; dems-verify's witness policy accepts them and
refuses too high a quorum or a wrong key. A replayed old checkpoint and a
fork (a copy of A's data directory, so the same log key, that then grows
another history) are refused by every witness, and `dems-verify fork`
proves the fork from two checkpoints of one size. With one of A's witnesses
down A still publishes; with two down nothing new is published while
appends go on."""
import base64
import hashlib
import os
import subprocess
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import contract
import harness
from harness import Server, eventually, run_tests

VERIFY = os.environ.get("DEMS_VERIFY",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "verify",
                                     "dems-verify"))
DASH = "\u2014 "
BASE = {"refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000,
        "workers": 0}


class Node(Server):
    """A Server on a port fixed before its first start (witnesses are
    configured with one another's URLs)."""

    def __init__(self, name, **kw):
        super().__init__(**kw)
        self.name = name
        self.fixed_port = harness.free_port()

    def start(self, extra_args=(), wait=True):
        super().start(extra_args=("--listen", f"127.0.0.1:{self.fixed_port}", *extra_args),
                      wait=False)
        self.port = self.fixed_port
        if wait:
            self.wait_ready()
        return self

    @property
    def url(self):
        return f"https://127.0.0.1:{self.fixed_port}"


def verify(*args):
    return subprocess.run([VERIFY, *args], capture_output=True, text=True, timeout=60)


def text(server, path):
    st, doc, r = server.request("GET", path)
    assert st == 200, (path, st, doc)
    return doc.decode() if isinstance(doc, bytes) else str(doc)


def parse_vkey(vkey):
    name, kh, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    return name, bytes.fromhex(kh), raw[0], raw[1:]


def note_text(note):
    return note[:note.index("\n\n") + 1]


def sig_lines(note):
    return [l for l in note[note.index("\n\n") + 2:].split("\n") if l]


def cosigned_by(note, wvkey):
    """True when note carries a valid cosignature/v1 line by wvkey, checked
    here from the C2SP tlog-cosignature text (not with demsd's code)."""
    name, kh, alg, pk = parse_vkey(wvkey)
    assert alg == 4
    assert hashlib.sha256(name.encode() + b"\n\x04" + pk).digest()[:4] == kh
    for line in sig_lines(note):
        if not line.startswith(DASH + name + " "):
            continue
        blob = base64.b64decode(line.split(" ")[-1])
        if blob[:4] != kh or len(blob) != 76:
            continue
        ts = int.from_bytes(blob[4:12], "big")
        assert abs(ts - time.time()) < 600, ts
        msg = f"cosignature/v1\ntime {ts}\n".encode() + note_text(note).encode()
        Ed25519PublicKey.from_public_bytes(pk).verify(blob[12:], msg)
        return True
    return False


CASES = iter(range(1, 1000000))


def grow(node, n=1):
    """Makes n ledger entries (a CASE_CREATED each)."""
    if getattr(node, "tok", None) is None:
        node.tok = node.admin_token()
    for _ in range(n):
        st, doc, _ = node.request("POST", "/v1/cases",
                                  {"reference": f"W/{next(CASES)}", "title": "witnessed"},
                                  token=node.tok)
        assert st == 201, (st, doc)


def db_size(node):
    rc, out, err = node.psql("SELECT coalesce(max(size), 0) FROM ledger_checkpoints")
    assert rc == 0, err
    return int(out)


def checkpoints(node):
    """size -> note of every checkpoint node signed."""
    got = {}
    rc, out, err = node.psql("SELECT size, encode(convert_to(note, 'UTF8'), 'hex')"
                             " FROM ledger_checkpoints ORDER BY size")
    assert rc == 0, err
    for line in out.splitlines():
        size, hexnote = line.split("|")
        got[int(size)] = bytes.fromhex(hexnote).decode()
    return got


def published(node):
    st, doc, _ = node.request("GET", "/v1/ledger/checkpoint")
    if st != 200:
        return None
    return doc.decode() if isinstance(doc, bytes) else doc


def published_size(node):
    note = published(node)
    return int(note.split("\n")[1]) if note else 0


def witness_row(witness, origin):
    rc, out, err = witness.psql(f"SELECT size, encode(root, 'hex') FROM witness_logs"
                                f" WHERE origin = '{origin}'")
    assert rc == 0, err
    if not out:
        return None
    size, root = out.split("|")
    return int(size), root


def add_checkpoint(witness, body):
    """POST /add-checkpoint; (status, content type, body text)."""
    conn = witness.conn()
    h = {"Content-Type": "text/plain"}
    conn.request("POST", "/add-checkpoint", body=body.encode(), headers=h)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    contract.check("POST", "/add-checkpoint", h, r.status, r.headers, raw)
    return r.status, r.headers.get("Content-Type"), raw.decode()


class Ctx:
    pass


def setup():
    c = Ctx()
    c.nodes = {n: Node(n, settings=dict(BASE, ledger_origin=f"dems.test/{n}",
                                        witness_name=f"witness.test/{n}"))
               for n in "ABCD"}
    c.nodes["A"].settings["workers"] = 1  # bundles are made by a job worker
    # First start: TLS certificates, log keys and witness keys are made.
    for n in c.nodes.values():
        n.start()
    c.log_vkey = {k: text(n, "/v1/ledger/key").strip() for k, n in c.nodes.items()}
    c.wit_vkey = {k: text(n, "/v1/ledger/witness/key").strip() for k, n in c.nodes.items()}
    for n in c.nodes.values():
        n.stop()
    c.ca = os.path.join(harness.make_data_root(), "witness-ca.pem")
    with open(c.ca, "w") as f:
        for n in c.nodes.values():
            f.write(open(os.path.join(n.data, "tls", "cert.pem")).read())
    # A, B, C witness one another; D witnesses A only.
    logs = {"A": "BCD", "B": "AC", "C": "AB"}
    for k, n in c.nodes.items():
        watched = [x for x, ws in logs.items() if k in ws]
        n.settings["witness_logs"] = " ".join(c.log_vkey[x] for x in watched)
        if k in logs:
            n.settings["witnesses"] = ", ".join(f"{c.nodes[w].url} {c.wit_vkey[w]}"
                                                for w in logs[k])
            n.settings["witness_quorum"] = 2
            n.settings["witness_ca_file"] = c.ca
    for n in c.nodes.values():
        n.start(wait=False)
    for n in c.nodes.values():
        n.wait_ready()
    return c


def teardown(c):
    for n in list(c.nodes.values()) + [getattr(c, "fork", None)]:
        if n is not None:
            n.stop()


def test_checkpoints_get_cosigned_and_published(c):
    for k in "ABC":
        grow(c.nodes[k], 2)
    for k, ws in (("A", "BCD"), ("B", "AC"), ("C", "AB")):
        node = c.nodes[k]
        want = db_size(node)
        note = eventually(lambda: published_size(node) >= want and published(node), timeout=30)
        assert note, (k, node.tail())
        assert note.startswith(f"dems.test/{k}\n"), note
        good = [w for w in ws if cosigned_by(note, c.wit_vkey[w])]
        assert len(good) >= 2, (k, note)
        # The log's own signature is still there, first.
        assert sig_lines(note)[0].startswith(DASH + f"dems.test/{k} "), note
        # Each witness holds the log's checkpoint it cosigned (or a newer one).
        for w in good:
            size, _ = witness_row(c.nodes[w], f"dems.test/{k}")
            assert size >= int(note.split("\n")[1])
    c.note_a = published(c.nodes["A"])
    # The tlog-tiles checkpoint is the published one too.
    st, doc, _ = c.nodes["A"].request("GET", "/v1/ledger/tlog/checkpoint")
    tiles_note = doc.decode() if isinstance(doc, bytes) else doc
    assert st == 200 and int(tiles_note.split("\n")[1]) >= int(c.note_a.split("\n")[1]), doc
    assert sum(cosigned_by(tiles_note, c.wit_vkey[w]) for w in "BCD") >= 2, tiles_note


def test_witness_key_endpoint(c):
    for k in "ABCD":
        name, kh, alg, pk = parse_vkey(c.wit_vkey[k])
        assert name == f"witness.test/{k}" and alg == 4 and len(pk) == 32
        assert hashlib.sha256(name.encode() + b"\n\x04" + pk).digest()[:4] == kh


def write(c, name, content):
    path = os.path.join(c.nodes["A"].root, name)
    with open(path, "w") as f:
        f.write(content)
    return path


def test_verify_witness_policy(c):
    note = write(c, "a.note", c.note_a)
    wb, wc, wd = c.wit_vkey["B"], c.wit_vkey["C"], c.wit_vkey["D"]
    held = [w for w in (wb, wc, wd) if cosigned_by(c.note_a, w)]
    r = verify("checkpoint", note, "--key", c.log_vkey["A"], *sum((["--witness", w] for w in held),
                                                                  []), "--quorum", "2")
    assert r.returncode == 0 and r.stdout.startswith("OK"), (r.stdout, r.stderr)
    # Quorum 3 where two of the policy's keys cosigned (A's own witness key
    # never cosigns A): refused with one INVALID line.
    r = verify("checkpoint", note, "--key", c.log_vkey["A"], "--witness", held[0], "--witness",
               held[1], "--witness", c.wit_vkey["A"], "--quorum", "3")
    assert r.returncode == 1 and r.stdout.count("\n") == 1, (r.stdout, r.stderr)
    assert r.stdout.startswith("INVALID: witness_quorum"), r.stdout
    # A wrong key (B's log key as a witness key is not a cosignature key;
    # A's own witness key never cosigned A).
    r = verify("checkpoint", note, "--key", c.log_vkey["A"], "--witness", c.wit_vkey["A"],
               "--witness", held[0], "--quorum", "2")
    assert r.returncode == 1 and "INVALID" in r.stdout, r.stdout
    # The same key twice is one witness.
    r = verify("checkpoint", note, "--key", c.log_vkey["A"], "--witness", held[0],
               "--witness", held[0], "--quorum", "2")
    assert r.returncode == 1 and "INVALID" in r.stdout, r.stdout
    r = verify("checkpoint", note, "--key", c.log_vkey["A"], "--witness", "not-a-key",
               "--quorum", "1")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


def test_monitor_holds_the_log_to_the_witness_policy(c):
    """dems-verify monitor with a witness policy: the tiles' checkpoint (the
    published one) passes with the quorum its witnesses met, is refused with
    one INVALID line for a quorum they did not, and the state is kept only
    from the accepted run."""
    a = c.nodes["A"]
    state = os.path.join(a.root, "monitor.state")
    cacert = os.path.join(a.data, "tls", "cert.pem")
    base = [VERIFY, "monitor", a.url + "/v1/ledger/tlog", "--state", state, "--cacert", cacert,
            "--key", c.log_vkey["A"]]
    env = dict(os.environ, DEMS_VERIFY_TOKEN=a.tok)
    run = lambda *args: subprocess.run([*base, *args], capture_output=True, text=True,
                                       timeout=60, env=env)
    # A's own witness key never cosigns A: one policy key at most holds.
    r = run("--witness", c.wit_vkey["A"], "--witness", c.wit_vkey["B"], "--quorum", "2")
    assert r.returncode == 1 and r.stdout.startswith("INVALID: witness_quorum"), (r.stdout,
                                                                                    r.stderr)
    assert r.stdout.count("\n") == 1 and not os.path.exists(state), r.stdout
    r = run(*policy(c, 2))
    assert r.returncode == 0 and r.stdout.startswith("OK"), (r.stdout, r.stderr)
    assert os.path.exists(state)
    r = run("--quorum", "1")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


def policy(c, quorum):
    return sum((["--witness", c.wit_vkey[w]] for w in "BCD"), []) + ["--quorum", str(quorum)]


def test_export_and_bundle_carry_cosignatures(c):
    a = c.nodes["A"]
    # The export ends with the published checkpoint, cosignatures included.
    grow(a)
    tok = a.tok
    want = db_size(a)
    assert eventually(lambda: published_size(a) >= want, timeout=30), a.tail()
    st, data, _ = a.request("GET", "/v1/ledger/export", token=tok)
    assert st == 200, st
    path = os.path.join(a.root, "export.ndjson")
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    held = sum(cosigned_by(published(a), c.wit_vkey[w]) for w in "BCD")
    r = verify("ledger", path, "--key", c.log_vkey["A"], *policy(c, 2))
    assert r.returncode == 0 and r.stdout.startswith("OK"), (r.stdout, r.stderr)
    r = verify("ledger", path, "--key", c.log_vkey["A"], *policy(c, 3))
    if held < 3:
        assert r.returncode == 1 and r.stdout.startswith("INVALID: witness_quorum"), r.stdout
    # A bundle: a case with one exhibit, made by the job worker.
    meta = "filename " + base64.b64encode(b"w.txt").decode()
    body = b"witnessed evidence\n" * 100
    st, doc, resp = a.request("POST", "/v1/uploads", body=body, token=tok, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(body)), "Upload-Metadata": meta,
        "Content-Type": "application/offset+octet-stream"})
    assert st == 201, (st, doc)
    art = resp.getheader("Evidence-Id")
    admin = "(SELECT id FROM users WHERE username = 'admin')"
    rc, case, err = a.psql("INSERT INTO cases (reference, title, offence, created_by) VALUES"
                           f" ('WB/1', 'witnessed', 'theft', {admin}) RETURNING id")
    assert rc == 0, err
    for q in (f"INSERT INTO case_members (case_id, user_id, role, added_by) VALUES ({case},"
              f" {admin}, 'lead', {admin})",
              "INSERT INTO exhibits (case_id, artefact, reference, description, added_by)"
              f" VALUES ({case}, '{art}', 'EX1', 'one', {admin})"):
        rc, _, err = a.psql(q)
        assert rc == 0, err
    st, doc, _ = a.request("POST", f"/v1/cases/{case}/bundles", {}, token=tok)
    assert st == 202, (st, doc)
    href = doc["href"]
    doc = eventually(lambda: (lambda d: d if d[1]["state"] in ("done", "failed") else None)(
        a.request("GET", href, token=tok)), timeout=90)
    assert doc and doc[1]["state"] == "done", doc
    st, data, _ = a.request("GET", doc[1]["content"], token=tok)
    assert st == 200, st
    path = os.path.join(a.root, "bundle.zip")
    with open(path, "wb") as f:
        f.write(data)
    import io
    import zipfile
    note = zipfile.ZipFile(io.BytesIO(data)).read("checkpoint.txt").decode()
    assert sum(cosigned_by(note, c.wit_vkey[w]) for w in "BCD") >= 2, note
    r = verify("bundle", path, "--key", c.log_vkey["A"], *policy(c, 2))
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)
    r = verify("bundle", path, "--key", c.log_vkey["A"], "--witness", c.wit_vkey["A"],
               "--quorum", "1")
    assert r.returncode == 1 and "INVALID: witness_quorum" in r.stdout, r.stdout


def head(node):
    rc, out, err = node.psql("SELECT size FROM ledger_head")
    assert rc == 0, err
    return int(out)


def settle(a, b):
    """Waits until a's log stops growing, is checkpointed and b holds it."""
    def quiet():
        n = head(a)
        return n == db_size(a) and (witness_row(b, "dems.test/A") or (0,))[0] == n
    assert eventually(quiet, timeout=30), a.tail()
    time.sleep(1.5)
    assert eventually(quiet, timeout=30), a.tail()


def test_replay_of_an_old_checkpoint_is_refused(c):
    a, b = c.nodes["A"], c.nodes["B"]
    grow(a, 1)
    settle(a, b)
    held, root = witness_row(b, "dems.test/A")
    old = [n for s, n in checkpoints(a).items() if 0 < s < held]
    assert old
    replay = old[0]
    # From its own size: the old size must be the witness's.
    st, ctype, body = add_checkpoint(b, f"old 0\n\n{replay}")
    assert st == 409 and ctype == "text/x.tlog.size" and body == f"{held}\n", (st, ctype, body)
    # From the witness's size: smaller than it holds, so a bad request.
    st, ctype, body = add_checkpoint(b, f"old {held}\n\n{replay}")
    assert st == 400, (st, body)
    assert witness_row(b, "dems.test/A") == (held, root)
    # The very checkpoint it holds again: cosigned again (idempotent), nothing moves.
    same = checkpoints(a)[held]
    st, ctype, body = add_checkpoint(b, f"old {held}\n\n{same}")
    assert st == 200 and cosigned_by(same + body, c.wit_vkey["B"]), (st, body)
    # Malformed, unknown and unsigned submissions.
    assert add_checkpoint(b, "nonsense")[0] == 400
    assert add_checkpoint(b, f"old 01\n\n{same}")[0] == 400
    other = same.replace("dems.test/A\n", "dems.test/Z\n", 1)
    assert add_checkpoint(b, f"old {held}\n\n{other}")[0] == 404
    lines = same.split("\n")
    forged = "\n".join(lines[:2] + [base64.b64encode(b"\x01" * 32).decode()] + lines[3:])
    assert add_checkpoint(b, f"old {held}\n\n{forged}")[0] == 403
    assert witness_row(b, "dems.test/A") == (held, root)


def test_a_fork_is_refused_by_every_witness_and_proven(c):
    a = c.nodes["A"]
    a.stop()
    # A copy of A's data directory: the same log key, the same history so far.
    c.fork = Node("A2", settings=dict(a.settings))
    # Ownership kept (the embedded cluster's files belong to its account).
    subprocess.run(["cp", "-a", a.data, c.fork.data], check=True)
    c.fork.admin_password = a.admin_password
    c.fork.tok = a.tok
    a.start()
    base = db_size(a)
    # A grows, one entry at a time with a checkpoint after each, and every
    # witness comes to hold A's history.
    for _ in range(3):
        grow(a)
        time.sleep(1.3)
    for w in "BCD":
        settle(a, c.nodes[w])
    held = {w: witness_row(c.nodes[w], "dems.test/A") for w in "BCD"}
    # Then the copy (same key, same history up to base) grows another one
    # and submits it to the same witnesses.
    c.fork.start()
    assert db_size(c.fork) == base
    for _ in range(3):
        grow(c.fork)
        time.sleep(1.3)
    ca, cf = checkpoints(a), checkpoints(c.fork)
    same = [s for s in ca if s in cf and s > base and ca[s] != cf[s]]
    assert same, (sorted(ca)[-5:], sorted(cf)[-5:])
    time.sleep(3)
    fork_note = cf[max(cf)]
    for w in "BCD":
        # Still A's checkpoint: the fork's submissions were refused.
        assert witness_row(c.nodes[w], "dems.test/A") == held[w], w
        size = held[w][0]
        st, ctype, body = add_checkpoint(c.nodes[w], f"old {size}\n\n{fork_note}")
        assert st in (409, 422), (w, st, body)
        assert witness_row(c.nodes[w], "dems.test/A") == held[w], w
    assert published_size(c.fork) <= base
    # Two validly signed checkpoints of one size with different roots: a fork.
    s = same[0]
    n1, n2 = write(c, "fork1.note", ca[s]), write(c, "fork2.note", cf[s])
    r = verify("fork", n1, n2, "--key", c.log_vkey["A"])
    assert r.returncode == 0 and r.stdout.startswith("OK") and "fork" in r.stdout, (r.stdout,
                                                                                     r.stderr)
    r = verify("fork", n1, n1, "--key", c.log_vkey["A"])
    assert r.returncode == 1 and "INVALID" in r.stdout, r.stdout
    r = verify("fork", n1, n2, "--key", c.log_vkey["B"])
    assert r.returncode == 1 and "INVALID" in r.stdout, r.stdout
    c.fork.stop()


def test_witnesses_down_leave_the_quorum_in_charge(c):
    a = c.nodes["A"]
    grow(a)
    eventually(lambda: published_size(a) >= db_size(a), timeout=30)
    # One of A's three witnesses down: two still cosign, A still publishes.
    c.nodes["D"].stop()
    grow(a, 2)
    want = db_size(a)
    assert eventually(lambda: published_size(a) >= want, timeout=30), a.tail()
    # Two down: nothing new is published, and appends go on.
    c.nodes["C"].stop()
    before = published_size(a)
    grow(a, 3)
    time.sleep(1.5)
    grown = db_size(a)
    assert grown > before
    time.sleep(4)
    assert published_size(a) == before
    # One back: the quorum is met again, the newest checkpoint published.
    c.nodes["C"].start()
    assert eventually(lambda: published_size(a) >= grown, timeout=40), a.tail()



def test_concurrent_submissions_advance_once(c):
    """Two submissions checked against the same stored state: the row moves
    by compare-and-swap, so at most one is cosigned and stored."""
    a, b = c.nodes["A"], c.nodes["B"]
    settle(a, b)
    held, root = witness_row(b, "dems.test/A")
    b.stop()
    for _ in range(2):
        grow(a)
        time.sleep(1.3)
    cps = checkpoints(a)
    newer = sorted(s for s in cps if s > held)[:2]
    assert len(newer) == 2, (held, sorted(cps)[-4:])
    bodies = []
    for size in newer:
        st, doc, _ = a.request("GET", f"/v1/ledger/proof/consistency?old={held}&new={size}")
        assert st == 200, (st, doc)
        proof = "".join(base64.b64encode(bytes.fromhex(h)).decode() + "\n" for h in doc["proof"])
        bodies.append(f"old {held}\n{proof}\n{cps[size]}")
    b.start()  # A's own client is in its pause after B's outage: these come first
    got = {}

    def submit(i):
        got[i] = add_checkpoint(b, bodies[i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(got[i][0] for i in range(2))
    assert statuses.count(200) <= 1, got
    size, _ = witness_row(b, "dems.test/A")
    assert size >= held
    for i in range(2):
        if got[i][0] == 409:
            assert got[i][1] == "text/x.tlog.size" and int(got[i][2]) > held, got[i]
    # Nothing the application role may do moves the row back or removes it.
    for sql in ("UPDATE witness_logs SET size = 0", "DELETE FROM witness_logs"):
        rc, _, err = b.psql(sql, user="dems_app")
        assert rc != 0 and ("only moves forward" in err or "permission denied" in err), err
    assert witness_row(b, "dems.test/A")[0] >= size

if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
