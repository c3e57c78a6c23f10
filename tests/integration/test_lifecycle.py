# SPDX-License-Identifier: Apache-2.0
"""Process lifecycle and operations: the embedded PostgreSQL (start, stop,
nothing left behind, a second demsd refused, recovery after kill -9 with a
stale postmaster.pid), migrations (re-run is a no-op; the application role's
least privilege), graceful shutdown finishing an in-flight request, the
command line (--help, bad configuration exits 2, create-user)."""
import os
import pty
import pwd
import re
import select
import signal
import stat
import subprocess
import time

import harness
from harness import DEMSD, Server, make_data_root, postgres_processes, raw_tls, \
    read_response, remember_secret, run_tests


def test_embedded_start_stop_leaves_nothing():
    srv = Server().start()
    assert postgres_processes(srv.data), "embedded PostgreSQL is not running"
    assert srv.request("GET", "/readyz")[0] == 200
    # No LLVM JIT: deploy/demsd.service forbids writable executable memory.
    assert srv.psql("SHOW jit")[1] == "off"
    assert srv.stop() == 0
    time.sleep(0.2)
    assert postgres_processes(srv.data) == [], "postgres processes left behind"
    # Starting again reuses the cluster, keeps the users, prints no new admin.
    srv2 = Server(data=srv.root).start()
    assert srv2.admin_password is None
    assert srv2.login("admin", srv.admin_password)[0] == 200
    assert srv2.stop() == 0


def test_first_admin_password_in_a_private_file_never_in_the_log():
    srv = Server().start()
    path = os.path.join(srv.data, "initial-admin-password")
    st = os.stat(path)
    # Owned by the account demsd runs as: dems when started as root.
    owner = pwd.getpwnam("dems").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == owner, (oct(st.st_mode), st.st_uid)
    assert srv.admin_password and srv.login("admin", srv.admin_password)[0] == 200
    log = open(srv.log_path, "rb").read()
    assert b'"event":"admin_created"' in log and path.encode() in log
    assert srv.admin_password.encode() not in log
    assert srv.stop() == 0


def test_first_admin_password_shown_on_a_terminal():
    """./deploy/run in a terminal: the password is printed there (stderr is a
    tty), besides the file; stdout stays clean."""
    root = make_data_root()
    data = os.path.join(root, "data")
    log_path = os.path.join(root, "stdout.log")
    master, slave = pty.openpty()
    with open(log_path, "wb") as out:
        p = subprocess.Popen([DEMSD, "serve", "--data", data, "--listen", "127.0.0.1:0",
                              "--set", "workers=0", "--threads", "1"],
                             stdout=out, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    deadline = time.time() + 60
    try:
        while b'"event":"listening"' not in seen and time.time() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        pw = open(os.path.join(data, "initial-admin-password")).read().strip()
        remember_secret(pw, "first administrator's password (tty)")
        assert f"password: {pw}".encode() in seen, seen[-2000:]
        for line in seen.splitlines():
            if line.startswith(b"{"):
                assert pw.encode() not in line, line
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0
        os.close(master)
    assert open(log_path, "rb").read() == b"", "demsd wrote to stdout"


def test_secret_check_catches_a_leak():
    """The harness's check itself: a remembered secret written to a log fails it."""
    fake = Server()
    os.makedirs(fake.data, exist_ok=True)
    try:
        remember_secret("dems_s_not-a-real-token-0123456789", "test token")
        with open(fake.log_path, "w") as f:
            f.write('{"msg":"ok"}\n{"msg":"token dems_s_not-a-real-token-0123456789"}\n')
        try:
            fake.check_secrets()
            caught = False
        except AssertionError as e:
            caught = "test token" in str(e) and "line 2" in str(e)
        assert caught, "the harness did not catch a token in the log"
    finally:
        harness._LEAKS[:] = [x for x in harness._LEAKS if x[0] != fake.log_path]
        harness._SERVERS.remove(fake)
        os.unlink(fake.log_path)


def test_second_demsd_refused():
    srv = Server().start()
    r = subprocess.run([DEMSD, "serve", "--data", srv.data, "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "already using data directory" in lines[0], r.stderr
    assert srv.request("GET", "/healthz")[0] == 200
    assert srv.stop() == 0


def test_recovers_after_kill_9_with_stale_pid_file():
    srv = Server().start()
    pw = srv.admin_password
    pids = postgres_processes(srv.data)
    srv.proc.kill()
    srv.proc.wait()
    for p in pids:  # the worst case: the postmaster dies too, leaving its pid file
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 20
    while postgres_processes(srv.data) and time.time() < deadline:
        time.sleep(0.1)
    assert os.path.exists(os.path.join(srv.data, "pg", "postmaster.pid"))
    srv2 = Server(data=srv.root).start()
    assert srv2.login("admin", pw)[0] == 200
    assert srv2.stop() == 0
    assert postgres_processes(srv.data) == []


def test_migrations_rerun_is_noop_and_app_role_is_least_privilege():
    srv = Server().start()
    r = srv.demsd("migrate", "--data", srv.data)
    assert r.returncode == 0 and "nothing to do" in r.stdout, (r.stdout, r.stderr)
    rc, out, _ = srv.psql("SELECT count(*), min(version) FROM schema_migrations")
    assert out.startswith("1|1") or out.split("|")[0] >= "1"
    before = srv.psql("SELECT version, sha256, applied_at FROM schema_migrations")[1]
    r = srv.demsd("migrate", "--data", srv.data)
    assert r.returncode == 0
    assert srv.psql("SELECT version, sha256, applied_at FROM schema_migrations")[1] == before
    # The application role may not delete accounts, rename them, alter tables
    # or touch the ledger (role changes are the admin API's, ledgered: 0025).
    for sql in ("DELETE FROM users", "UPDATE users SET username = 'root'",
                "UPDATE ledger_entries SET type = 'X'", "DELETE FROM settings_history",
                "UPDATE auth_tokens SET expires_at = now()", "DROP TABLE users",
                "CREATE TABLE evil (x int)", "DELETE FROM schema_migrations"):
        rc, _, err = srv.psql(sql, user="dems_app")
        assert rc != 0 and ("permission denied" in err or "must be owner" in err), (sql, err)
    rc, out, _ = srv.psql("SELECT count(*) FROM users", user="dems_app")
    assert rc == 0 and int(out) >= 1
    assert srv.stop() == 0


def test_changed_migration_refuses_start():
    srv = Server().start()
    # Pretend migration 1 was applied with different text.
    rc, _, err = srv.psql("UPDATE schema_migrations SET sha256 = 'x' WHERE version = 1")
    assert rc == 0, err
    assert srv.stop() == 0
    r = subprocess.run([DEMSD, "serve", "--data", srv.data, "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "changed after it was applied" in r.stderr, r.stderr
    assert postgres_processes(srv.data) == []


def test_graceful_shutdown_finishes_in_flight_request():
    srv = Server().start()
    body = b'{"username":"admin","password":"%s"}' % srv.admin_password.encode()
    t = raw_tls(srv, timeout=30)
    t.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # New connections are refused while the in-flight one drains.
    try:
        raw_tls(srv, timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused, "still accepting after SIGTERM"
    t.sendall(body[10:])
    status, head, payload, _ = read_response(t)
    assert status == 200 and b"dems_s_" in payload, (status, head)
    assert "Connection: close" in head
    assert srv.proc.wait(30) == 0
    assert postgres_processes(srv.data) == []


def test_help_texts():
    for args in (["--help"], ["serve", "--help"], ["migrate", "--help"],
                 ["admin", "create-user", "--help"]):
        r = subprocess.run([DEMSD, *args], capture_output=True, text=True)
        assert r.returncode == 0 and "Usage: demsd" in r.stdout, args
    r = subprocess.run([DEMSD, "serve", "--help"], capture_output=True, text=True)
    for key in ("--data", "--listen", "--config", "database_url", "tls_cert", "threads"):
        assert key in r.stdout, key
    r = subprocess.run([DEMSD, "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_bad_configuration_exits_2_naming_the_key():
    root = make_data_root()
    cases = [
        (["--set", "threads=lots"], "threads"),
        (["--set", "idle_timeout=0"], "idle_timeout"),
        (["--listen", "nowhere"], "listen"),
        (["--set", "no_such_key=1"], "no_such_key"),
    ]
    for extra, key in cases:
        r = subprocess.run([DEMSD, "serve", "--data", root + "/d", *extra],
                           capture_output=True, text=True, timeout=30)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and key in lines[0], (extra, r.stderr)
    conf = os.path.join(root, "dems.conf")
    with open(conf, "w") as f:
        f.write("# comment\nlisten = 127.0.0.1:1\nauto_migrate = maybe\n")
    r = subprocess.run([DEMSD, "serve", "--data", root + "/d", "--config", conf],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "dems.conf:3" in r.stderr and "auto_migrate" in r.stderr
    env = dict(os.environ, DEMS_HSTS_MAX_AGE="-5")
    r = subprocess.run([DEMSD, "serve", "--data", root + "/d"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "hsts_max_age" in r.stderr
    r = subprocess.run([DEMSD, "serve"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "data_dir" in r.stderr


def test_config_file_and_env_are_used():
    root = make_data_root()
    conf = os.path.join(root, "dems.conf")
    with open(conf, "w") as f:
        f.write('hsts_max_age = "1234"\n')
    srv = Server(data=root).start(["--config", conf])
    r = srv.request("GET", "/healthz")[2]
    assert r.getheader("Strict-Transport-Security") == "max-age=1234"
    assert srv.stop() == 0


def test_create_user_cli():
    srv = Server().start()
    r = srv.demsd("admin", "create-user", "--data", srv.data, "--role", "prosecutor",
                  "--username", "carol", input="a long password\n")
    assert r.returncode == 0, r.stderr
    assert srv.login("carol", "a long password")[0] == 200
    r = srv.demsd("admin", "create-user", "--data", srv.data, "--role", "prosecutor",
                  "--username", "carol", "--password", "another password")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = srv.demsd("admin", "create-user", "--data", srv.data, "--role", "emperor",
                  "--username", "x", "--password", "12345678")
    assert r.returncode == 1 and "role" in r.stderr
    assert srv.stop() == 0
    # With no server running the command starts the cluster itself.
    r = subprocess.run([DEMSD, "admin", "create-user", "--data", srv.data, "--role", "officer",
                        "--username", "dave", "--password", "password-dave"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert postgres_processes(srv.data) == []


def wait_for(fn, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.2)
    return False


def test_database_loss_and_reconnect():
    """Connections killed under demsd: it keeps serving and reconnects by
    itself with backoff."""
    srv = Server().start()
    tok = srv.admin_token()
    rc, out, err = srv.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE usename = 'dems_app'")
    assert rc == 0 and int(out) >= 1, (out, err)
    assert wait_for(lambda: srv.request("GET", "/v1/me", token=tok)[0] == 200)
    assert srv.stop() == 0


TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def upload(srv, tok, data):
    """One tus upload in one request (creation-with-upload): its evidence id."""
    h = dict(TUS, **{"Upload-Length": str(len(data))})
    st, doc, r = srv.request("POST", "/v1/uploads", body=data, token=tok, headers=h)
    assert st == 201 and r.getheader("Evidence-Id"), (st, doc)
    return r.getheader("Evidence-Id")


def postmaster_pid(srv):
    with open(os.path.join(srv.data, "pg", "postmaster.pid")) as f:
        return int(f.readline())


def test_postmaster_killed_is_restarted_and_readyz_tells_the_truth():
    """kill -9 of the embedded postmaster: /readyz answers 503 at once (and
    /healthz stays 200), the keeper restarts the cluster, /readyz is 200
    again, uploads work again, and the log says what happened — never an
    empty "ledger: " line."""
    srv = Server().start()
    tok = srv.admin_token()
    first = upload(srv, tok, os.urandom(5000))
    # Two ledgered actions within a second, the last one just before the
    # kill: its checkpoint is still due when the database goes away.
    st, _, _ = srv.request("GET", f"/v1/evidence/{first}/content", token=tok)
    assert st == 200
    old = postmaster_pid(srv)
    os.kill(old, signal.SIGKILL)
    t0 = time.time()
    seen = []
    assert wait_for(lambda: seen.append(srv.request("GET", "/readyz")) or seen[-1][0] == 503, 5)
    assert seen[-1][1]["code"] in ("database_restarting", "database_unavailable"), seen[-1][1]
    assert time.time() - t0 < 5
    assert srv.request("GET", "/healthz")[0] == 200
    time.sleep(3)  # the old code logged an empty warning every second meanwhile
    assert wait_for(lambda: srv.request("GET", "/readyz")[0] == 200, 90), srv.tail()
    assert postmaster_pid(srv) != old
    # Each loop's pool reconnects on its own backoff (up to 5 s).
    ok = []
    assert wait_for(lambda: ok.append(try_upload(srv, tok)) or ok[-1], 30), srv.tail()
    log = open(srv.log_path, "rb").read().decode(errors="replace")
    assert '"event":"embedded_db_exited"' in log and "killed by signal 9" in log
    assert '"event":"embedded_db_restarted"' in log
    for line in log.splitlines():
        assert not re.search(r'"msg":"ledger: *(\\n)?"', line), line
    assert srv.stop() == 0
    assert postgres_processes(srv.data) == []


def try_upload(srv, tok):
    try:
        upload(srv, tok, os.urandom(3000))
        return True
    except AssertionError:
        return False


def test_readyz_not_ready_below_the_free_space_floor():
    srv = Server({"min_free_space": 1 << 60, "workers": 0}).start()
    st, doc, _ = srv.request("GET", "/readyz")
    assert st == 503 and doc["code"] == "low_disk_space" and "min_free_space" in doc["detail"], doc
    assert srv.request("GET", "/healthz")[0] == 200
    assert srv.stop() == 0
    srv = Server({"min_free_space": 0, "workers": 0}, data=srv.root).start()
    assert srv.request("GET", "/readyz")[0] == 200
    assert srv.stop() == 0


if __name__ == "__main__":
    run_tests(globals())
