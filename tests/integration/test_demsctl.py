# SPDX-License-Identifier: Apache-2.0
"""demsctl, the administrators' command-line client (docs/demsctl.md),
against a real demsd over real TLS: login with the password on standard
input (and a TOTP code), the token file (0600 in a 0700 directory; refused
when others can read it), users, devices, holds, retention, disposal by an
approved batch (the evidence then 410), jobs, the custody report, ledger
verify (OK; a wrong pinned key is exit 1 with one line), --json output that
parses, --help for every command, and the exit codes: 2 for bad input (one
line), 3 for a server that cannot be reached or a TLS failure, 4 when not
logged in or the token is refused."""
import base64
import hashlib
import hmac
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import time

from harness import Server, free_port, remember_secret, run_tests

CTL = os.environ.get("DEMS_CTL",
                     os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "ctl", "demsctl"))
TUS = {"Tus-Resumable": "1.0.0"}
SETTINGS = {"housekeeping_interval": 1, "job_backoff_base": 1, "job_backoff_max": 2,
            "refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000}


class Ctx:
    pass


def totp(secret_b32, step_offset=0):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int(time.time() // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def ctl(c, *args, input=None, env=None, timeout=120):
    e = dict(c.env)
    e.update(env or {})
    r = subprocess.run([CTL, *args], capture_output=True, text=True, input=input, env=e,
                       timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def ok(c, *args, **kw):
    rc, out, err = ctl(c, *args, **kw)
    assert rc == 0, f"demsctl {' '.join(args)}: exit {rc}: {err}{out}"
    return out


def js(c, *args, **kw):
    return json.loads(ok(c, *args, "--json", **kw))


def one_line(err):
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("demsctl: "), repr(err)
    return lines[0]


def fails(c, code, *args, **kw):
    rc, out, err = ctl(c, *args, **kw)
    assert rc == code, f"demsctl {' '.join(args)}: exit {rc}, want {code}: {err}{out}"
    return one_line(err)


def upload(c, data, name):
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.admin, headers=dict(
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


def setup():
    assert os.access(CTL, os.X_OK), f"demsctl not found at {CTL}"
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.home = tempfile.mkdtemp(prefix="demsctl-home-")
    c.url = f"https://127.0.0.1:{c.srv.port}"
    c.ca = os.path.join(c.srv.data, "tls", "cert.pem")
    c.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": c.home,
             "DEMS_URL": c.url, "DEMS_CA": c.ca}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            c.env[k] = os.environ[k]
    c.token_file = os.path.join(c.home, ".config", "dems", "token")
    c.ev = {k: upload(c, f"DEMSCTL-{k}-".encode() + os.urandom(20_000), f"{k}.bin")
            for k in ("held", "dispose")}
    return c


def teardown(c):
    shutil.rmtree(c.home, ignore_errors=True)
    assert c.srv.stop() == 0


def test_help_for_every_command(c):
    out = ok(c, "--help")
    assert "Exit status" in out and "4  not logged in" in out, out
    groups = []
    on = False
    for line in out.splitlines():
        if line.startswith("Commands:"):
            on = True
        elif on and line.startswith("  ") and line.strip():
            groups.append(line.split()[0])
        elif on and not line.strip():
            on = False
    assert groups == ["login", "logout", "whoami", "users", "devices", "jobs", "holds",
                      "retention", "disposal", "audit", "ledger"], groups
    seen = 0
    for g in groups:
        text = ok(c, g, "--help")
        assert text.startswith("usage: demsctl " + g), text
        if "Commands:" not in text:
            continue
        subs = [ln.split()[0] for ln in text.split("Commands:\n")[1].split("\n\n")[0].splitlines()]
        assert subs, text
        for s in subs:
            t = ok(c, g, s, "--help")
            assert t.startswith(f"usage: demsctl {g} {s}"), t
            seen += 1
    assert seen >= 25, seen
    assert ok(c, "--version").startswith("demsctl (dems) ")


def test_bad_input_is_one_line_and_exit_2(c):
    for args in (["--no-such-option"], ["users", "list", "--bogus"], ["nosuch"],
                 ["users", "frobnicate"], ["holds", "place", "--case", "x", "--reason", "r"],
                 ["holds", "place", "--reason", "r"], ["audit", "custody", "not-an-id"],
                 ["retention", "create-policy", "P", "--days", "ten", "--from", "ingestion"],
                 ["users", "list", "--limit"], ["jobs", "show"], ["jobs", "show", "1", "2"],
                 ["disposal", "approve", "1"], ["ledger", "verify", "--key", "nonsense"],
                 ["users", "list", "--server", "http://127.0.0.1:1"]):
        line = fails(c, 2, *args)
        assert "(try demsctl" in line or "demsctl: " in line, line
    # A config file with a setting demsctl does not know names it.
    path = os.path.join(c.home, "bad.conf")
    with open(path, "w") as f:
        f.write("server = https://x\ncolour = blue\n")
    assert "colour" in fails(c, 2, "users", "list", "--config", path)


def test_not_logged_in_is_4(c):
    assert "not logged in" in fails(c, 4, "users", "list")
    assert "not logged in" in fails(c, 4, "ledger", "verify")


def test_unreachable_or_bad_tls_is_3(c):
    port = free_port()
    line = fails(c, 3, "login", "admin", "--password-stdin", "--server",
                 f"https://127.0.0.1:{port}", input="whatever\n")
    assert "cannot reach" in line, line
    # The server's certificate does not verify against another CA.
    other = os.path.join(c.srv.data, "tls", "device-ca.pem")
    assert os.path.exists(other), os.listdir(os.path.join(c.srv.data, "tls"))
    line = fails(c, 3, "login", "admin", "--password-stdin", "--ca", other,
                 input=c.srv.admin_password + "\n")
    assert "cannot reach" in line, line


def test_wrong_password_is_4_and_one_line(c):
    line = fails(c, 4, "login", "admin", "--password-stdin", input="not the password\n")
    assert "401 invalid_credentials" in line, line
    assert not os.path.exists(c.token_file)


def test_login_keeps_an_api_token_in_a_private_file(c):
    out = ok(c, "login", "admin", "--password-stdin", input=c.srv.admin_password + "\n")
    assert "Logged in to " + c.url in out and c.token_file in out, out
    st = os.stat(c.token_file)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(c.token_file)).st_mode) == 0o700
    text = open(c.token_file).read()
    tok = [ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith("token =")][0]
    remember_secret(tok, "demsctl's API token")
    assert tok.startswith("dems_api_"), "not an API token"
    c.api_token = tok
    me = js(c, "whoami")
    assert me["username"] == "admin" and me["token_kind"] == "api", me
    # The token is listed as the account's, and the login session was ended.
    st, doc, _ = c.srv.request("GET", "/v1/me/tokens", token=c.admin)
    assert any(t["name"].startswith("demsctl on ") for t in doc["tokens"]), doc
    # Without DEMS_URL the token file's server (and CA) are used.
    me = js(c, "whoami", env={"DEMS_URL": "", "DEMS_CA": ""})
    assert me["server"] == c.url, me


def test_token_file_readable_by_others_is_refused(c):
    os.chmod(c.token_file, 0o644)
    try:
        line = fails(c, 4, "users", "list")
        assert "readable by others" in line or "can be read by others" in line, line
    finally:
        os.chmod(c.token_file, 0o600)
    ok(c, "users", "list")


def test_users_list_create_update(c):
    out = ok(c, "users", "create", "ctlofficer", "--role", "officer", "--password-stdin",
             input="correct horse battery\n")
    assert "ctlofficer" in out, out
    line = fails(c, 1, "users", "create", "CTLOFFICER", "--role", "officer",
                 "--password-stdin", input="correct horse battery\n")
    assert line.startswith("demsctl: 409 user_exists: "), line
    table = ok(c, "users", "list")
    assert table.splitlines()[0].split()[:3] == ["id", "username", "role"], table
    users = js(c, "users", "list")["users"]
    assert {u["username"] for u in users} >= {"admin", "ctlofficer"}, users
    assert len(js(c, "users", "list", "--limit", "1")["users"]) == 1
    doc = js(c, "users", "update", "ctlofficer", "--face-search", "on")
    assert doc["face_search"] is True and doc["seq"] > 0, doc
    line = fails(c, 1, "users", "update", "nosuchuser", "--face-search", "on")
    assert "nosuchuser" in line, line
    assert "nothing to change" in fails(c, 2, "users", "update", "ctlofficer")
    assert "on or off" in fails(c, 2, "users", "update", "ctlofficer", "--disabled", "maybe")
    # Role, disabled and TOTP required in one change; the filters find it.
    doc = js(c, "users", "update", "ctlofficer", "--role", "prosecutor", "--face-search", "off",
             "--disabled", "on", "--totp-required", "on")
    assert doc["role"] == "prosecutor" and doc["disabled"] is True, doc
    assert doc["totp_required"] is True and doc["seq"] > 0, doc
    users = js(c, "users", "list", "--disabled", "on")["users"]
    assert [u["username"] for u in users] == ["ctlofficer"], users
    assert [u["username"] for u in js(c, "users", "list", "--prefix", "ctl")["users"]] == \
        ["ctlofficer"]
    assert "last_login" in ok(c, "users", "list").splitlines()[0]
    line = fails(c, 1, "users", "update", "admin", "--disabled", "on")
    assert line.startswith("demsctl: 409 cannot_change_self: "), line
    doc = js(c, "users", "update", "ctlofficer", "--role", "officer", "--disabled", "off",
             "--totp-required", "off")
    assert doc["role"] == "officer" and doc["disabled"] is False, doc
    doc = js(c, "users", "reset-password", "ctlofficer", "--password-stdin",
             input="another good password\n")
    assert doc["seq"] > 0, doc
    st, doc, _ = c.srv.login("ctlofficer", "another good password")
    assert st == 200, doc


def test_devices_enrol_assign_revoke(c):
    key = os.path.join(c.home, "dock.key")
    cert = os.path.join(c.home, "dock.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", "/CN=CTL-DOCK-1", "-days", "30",
                    "-addext", "extendedKeyUsage=clientAuth",
                    "-addext", "keyUsage=critical,digitalSignature"],
                   check=True, capture_output=True)
    doc = js(c, "devices", "enrol", "--name", "Dock 1", "--serial", "CTL-DOCK-1",
             "--certificate", cert)
    assert doc["serial"] == "CTL-DOCK-1" and doc["issued"] is False, doc
    dev = [d for d in js(c, "devices", "list")["devices"] if d["serial"] == "CTL-DOCK-1"][0]
    doc = js(c, "devices", "assign", str(dev["id"]), "ctlofficer")
    assert doc["assigned_to"] == "ctlofficer", doc
    doc = js(c, "devices", "rename", str(dev["id"]), "Dock 1 (front desk)")
    assert doc["name"] == "Dock 1 (front desk)" and doc["seq"] > 0, doc
    key2 = os.path.join(c.home, "dock2.key")
    cert2 = os.path.join(c.home, "dock2.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key2, "-out", cert2,
                    "-subj", "/CN=CTL-DOCK-1", "-days", "30",
                    "-addext", "extendedKeyUsage=clientAuth",
                    "-addext", "keyUsage=critical,digitalSignature"],
                   check=True, capture_output=True)
    doc = js(c, "devices", "reenrol", str(dev["id"]), "--certificate", cert2)
    assert doc["id"] == dev["id"] and doc["cert_sha256"] != dev["cert_sha256"], doc
    line = fails(c, 2, "devices", "reenrol", str(dev["id"]))
    assert "--csr" in line, line
    ok(c, "devices", "assign", str(dev["id"]), "--none")
    assert "revoked" in ok(c, "devices", "revoke", str(dev["id"]))
    line = fails(c, 1, "devices", "revoke", str(dev["id"]))
    assert "409 device_revoked" in line, line


def test_holds_place_list_release(c):
    doc = js(c, "holds", "place", "--evidence", c.ev["held"], "--reason", "appeal pending")
    assert doc["active"] is True and doc["placed_seq"] > 0, doc
    hid = doc["id"]
    holds = js(c, "holds", "list", "--active")["holds"]
    assert [h["id"] for h in holds] == [hid], holds
    assert c.ev["held"][:12] in ok(c, "holds", "list")
    doc = js(c, "holds", "release", str(hid), "--reason", "appeal decided")
    assert doc["active"] is False and doc["released_by"] == "admin", doc
    assert js(c, "holds", "list", "--active")["holds"] == []
    line = fails(c, 1, "holds", "release", str(hid), "--reason", "again")
    assert line.startswith("demsctl: 409 hold_released: "), line


def test_retention_and_disposal_to_410(c):
    doc = js(c, "retention", "create-policy", "CTL thirty days", "--days", "30", "--from",
             "ingestion", "--description", "from demsctl")
    pid = doc["id"]
    assert doc["period_days"] == 30, doc
    assert "CTL thirty days" in ok(c, "retention", "policies")
    doc = js(c, "retention", "set-evidence", c.ev["dispose"], str(pid))
    assert doc["policy"] == pid and doc["seq"] > 0, doc
    line = fails(c, 1, "retention", "set-evidence", c.ev["dispose"], "99999")
    assert line.startswith("demsctl: 400 "), line
    st, out, err = c.srv.psql("UPDATE artefacts SET created_at = now() - interval '40 days'"
                              f" WHERE id = '{c.ev['dispose']}'")
    assert st == 0, err
    due = js(c, "disposal", "due")["due"]
    assert [d["evidence"] for d in due] == [c.ev["dispose"]], due
    b = js(c, "disposal", "propose", "--wait")
    assert b["state"] == "proposed" and b["items"]["proposed"] == 1, b
    items = js(c, "disposal", "items", str(b["id"]))["items"]
    assert [i["evidence"] for i in items] == [c.ev["dispose"]], items
    line = fails(c, 2, "disposal", "approve", str(b["id"]))
    assert "--reason" in line, line
    b = js(c, "disposal", "approve", str(b["id"]), "--reason", "NFA, retention ended",
           "--recover-days", "0", "--wait")
    assert b["state"] in ("soft_deleted", "done"), b
    wait("batch done", lambda: js(c, "disposal", "show", str(b["id"]))["state"] == "done")
    st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.ev['dispose']}/content", token=c.admin)
    assert st == 410 and doc["code"] == "evidence_disposed", doc
    assert str(b["id"]) in ok(c, "disposal", "show")
    line = fails(c, 1, "disposal", "recover", c.ev["dispose"], "--reason", "too late")
    assert line.startswith("demsctl: 410 evidence_disposed: "), line
    # The custody report tells the story.
    entries = js(c, "audit", "custody", c.ev["dispose"])["entries"]
    types = [e["entry"]["type"] for e in entries]
    assert types[0] == "INGESTED" and "DISPOSAL_APPROVED" in types and "DISPOSED" in types, types
    table = ok(c, "audit", "custody", c.ev["dispose"])
    assert "DISPOSED" in table and table.splitlines()[0].split()[:3] == ["seq", "time", "type"]


def test_jobs_list_show_enqueue(c):
    doc = js(c, "jobs", "enqueue", "verify-blob", "--evidence", c.ev["held"], "--dedupe-key",
             "ctl-1")
    jid = doc["id"]
    assert doc["kind"] == "verify-blob", doc
    again = js(c, "jobs", "enqueue", "verify-blob", "--evidence", c.ev["held"], "--dedupe-key",
               "ctl-1")
    assert again["id"] == jid, again
    wait("job done", lambda: js(c, "jobs", "show", str(jid))["state"] == "done")
    jobs = js(c, "jobs", "list", "--kind", "verify-blob")["jobs"]
    assert jid in [j["id"] for j in jobs], jobs
    assert js(c, "jobs", "list", "--state", "done", "--limit", "2")["jobs"]
    assert "verify-blob" in ok(c, "jobs", "list")
    line = fails(c, 1, "jobs", "list", "--state", "sleeping")
    assert line.startswith("demsctl: 400 invalid_parameter: "), line
    line = fails(c, 1, "jobs", "retry", str(jid))
    assert line.startswith("demsctl: 409 job_not_retryable: "), line
    line = fails(c, 1, "jobs", "show", "999999")
    assert line.startswith("demsctl: 404 "), line


def other_key(vkey):
    """A well-formed verifier key with the log's name and another public key."""
    name = vkey.split("+")[0]
    pk = bytes([0x01]) + os.urandom(32)
    kh = hashlib.sha256(name.encode() + b"\n" + pk).digest()[:4]
    return f"{name}+{kh.hex()}+{base64.b64encode(pk).decode()}"


def test_ledger_verify(c):
    out = ok(c, "ledger", "verify")
    assert out.startswith("OK: ") and "consistent" in out and "as served" in out, out
    st, vkey, _ = c.srv.request("GET", "/v1/ledger/key")
    vkey = vkey.decode().strip()
    save = os.path.join(c.home, "export.jsonl")
    doc = js(c, "ledger", "verify", "--key", vkey, "--save", save)
    assert doc["ok"] is True and doc["key_pinned"] is True and doc["size"] > 5, doc
    assert doc["served_size"] >= doc["size"], doc
    # The saved export verifies with dems-verify too.
    verify = os.environ.get("DEMS_VERIFY")
    if verify:
        r = subprocess.run([verify, "ledger", save, "--key", vkey], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    assert js(c, "ledger", "verify", "--fast", "--threads", "1")["ok"] is True
    # Pinned to a key that is not the log's: exit 1, one line.
    wrong = other_key(vkey)
    line = fails(c, 1, "ledger", "verify", "--key", wrong)
    assert line.startswith("demsctl: ledger INVALID: header: "), line
    conf = os.path.join(c.home, "pinned.conf")
    with open(conf, "w") as f:
        f.write(f"# pinned\nledger_key = {wrong}\n")
    line = fails(c, 1, "ledger", "verify", "--config", conf)
    assert "INVALID" in line, line
    with open(conf, "w") as f:
        f.write(f"ledger_key = \"{vkey}\"\n")
    assert "(pinned)" in ok(c, "ledger", "verify", "--config", conf)


def test_audit_reports_are_checked(c):
    st, doc, _ = c.srv.request("POST", "/v1/cases", {"reference": "CTL/1", "title": "Ctl case"},
                               token=c.admin)
    assert st == 201, doc
    case = doc["id"]
    st, doc, _ = c.srv.request("POST", f"/v1/cases/{case}/exhibits",
                               {"evidence": c.ev["held"], "reference": "EX1"}, token=c.admin)
    assert st == 201, doc
    # Wait for a checkpoint that covers the exhibit's entry: one of at least
    # the log's size now (its head), not merely a newer one than some
    # earlier reading (which may already have covered it, and then no newer
    # checkpoint comes while the log is still).
    st, out, err = c.srv.psql("SELECT size FROM ledger_head")
    assert st == 0, err
    size = int(out)
    wait("checkpoint", lambda: int(c.srv.request("GET", "/v1/ledger/checkpoint")[1]
                                   .decode().split("\n")[1]) >= size)
    st, vkey, _ = c.srv.request("GET", "/v1/ledger/key")
    vkey = vkey.decode().strip()
    rep = js(c, "audit", "evidence", c.ev["held"], "--key", vkey)
    assert rep["evidence"] == c.ev["held"] and rep["entries"], rep
    types = [e["body"]["type"] for e in rep["entries"]]
    assert types[0] == "INGESTED" and "HOLD_PLACED" in types, types
    out = ok(c, "audit", "evidence", c.ev["held"], "--key", vkey)
    assert "proven included" in out and "(pinned)" in out and "HOLD_RELEASED" in out, out
    out = ok(c, "audit", "case", str(case))
    assert "EXHIBIT_ADDED" in out and "CASE_CREATED" in out, out
    line = fails(c, 1, "audit", "evidence", c.ev["held"], "--key", other_key(vkey))
    assert line.startswith("demsctl: audit report INVALID: the checkpoint is not signed"), line
    line = fails(c, 1, "audit", "case", "999999")
    assert line.startswith("demsctl: 404 case_not_found: "), line
    html = ok(c, "audit", "case", str(case), "--html", "-")
    assert "<html" in html.lower() and "CTL/1" in html, html[:200]
    now = time.time()
    span = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (now - 86400,
                                                                         now + 86400)]
    csv_path = os.path.join(c.home, "admin.csv")
    ok(c, "audit", "user", "admin", "--from", span[0], "--to", span[1], "--output", csv_path)
    text = open(csv_path).read()
    assert text.startswith("index,time,type") or text.startswith('"index","time","type"'), text
    assert "HOLD_PLACED" in text, text
    line = fails(c, 1, "audit", "user", "admin", "--from", "yesterday", "--to", span[1])
    assert line.startswith("demsctl: 400 "), line


def test_totp_login_and_session_token(c):
    st, doc, _ = c.srv.request("POST", "/v1/admin/users",
                               {"username": "ctltotp", "password": "correct horse",
                                "role": "admin"}, token=c.admin)
    assert st == 201, doc
    st, doc, _ = c.srv.login("ctltotp", "correct horse")
    tok = doc["token"]
    st, doc, _ = c.srv.request("POST", "/v1/me/totp", token=tok)
    secret = doc["secret"]
    remember_secret(secret, "TOTP secret")
    st, doc, _ = c.srv.request("POST", "/v1/me/totp/confirm", {"code": totp(secret)}, token=tok)
    assert st == 200, doc
    other = os.path.join(c.home, "second-token")
    # The code is the next line of standard input (one step ahead: the
    # confirming code's step is used up).
    out = ok(c, "login", "ctltotp", "--password-stdin", "--session", "--token-file", other,
             input="correct horse\n" + totp(secret, 1) + "\n")
    assert "session token" in out, out
    me = js(c, "whoami", "--token-file", other)
    assert me["username"] == "ctltotp" and me["token_kind"] == "session", me
    line = fails(c, 4, "login", "ctltotp", "--password-stdin", "--token-file", other,
                 input="correct horse\n000000\n")
    assert "401 invalid_totp" in line, line
    ok(c, "logout", "--token-file", other)
    assert not os.path.exists(other)


def test_logout_revokes_the_token(c):
    out = ok(c, "logout")
    assert "revoked" in out, out
    assert not os.path.exists(c.token_file)
    st, doc, _ = c.srv.request("GET", "/v1/me", token=c.api_token)
    assert st == 401, (st, doc)
    assert "not logged in" in fails(c, 4, "whoami")
    # A revoked token kept in the file: the server's 401 is exit 4.
    os.makedirs(os.path.dirname(c.token_file), exist_ok=True)
    fd = os.open(c.token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f"server = {c.url}\nkind = api\nid = 1\ntoken = {c.api_token}\n".encode())
    os.close(fd)
    line = fails(c, 4, "users", "list")
    assert line.startswith("demsctl: 401 unauthorized: "), line
    # Sent to another server than the token's: refused before any request.
    line = fails(c, 4, "users", "list", "--server", "https://127.0.0.1:1")
    assert "is for " + c.url in line, line
    ok(c, "logout", "--local")


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
