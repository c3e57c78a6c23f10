# SPDX-License-Identifier: Apache-2.0
"""Accounts and privileges (docs/operations.md, "Accounts and privileges"):
demsd serve started as root runs as the service account `dems` once it has
bound its socket and started the embedded PostgreSQL (which runs as
`postgres`, under a keeper process); its workers run as `dems` too; nobody
keeps a capability, every one has no_new_privs, and the sandboxed FFmpeg
decoder child runs unprivileged under seccomp. The data directory belongs to
`dems`, the cluster's socket directory only lets `dems` in. Needs root (the
test suite runs as root here and in CI); skipped otherwise."""
import base64
import grp
import os
import pwd
import stat
import subprocess
import sys
import time

from harness import DEMSD, Server, make_data_root, run_tests

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


class Ctx:
    pass


def status(pid):
    """/proc/PID/status as a dict of strings (None if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return None


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            st = status(int(p))
            if st and st.get("PPid") == str(pid):
                out.append(int(p))
    return out


def assert_unprivileged(pid, uid, what):
    st = status(pid)
    assert st is not None, f"{what} ({pid}) is gone"
    assert st["Uid"].split() == [str(uid)] * 4, (what, st["Uid"])
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, (what, cap, st[cap])
    assert st["NoNewPrivs"] == "1", (what, st["NoNewPrivs"])
    return st


def setup():
    if os.geteuid() != 0:
        print("skipped: needs root")
        sys.exit(77)
    c = Ctx()
    c.dems = pwd.getpwnam("dems")
    c.postgres = pwd.getpwnam("postgres")
    c.srv = Server({"job_backoff_base": 1, "job_max_attempts": 2}).start()
    c.tok = c.srv.admin_token()
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_serve_and_workers_run_as_dems_without_capabilities(c):
    serve = c.srv.proc.pid
    st = assert_unprivileged(serve, c.dems.pw_uid, "demsd serve")
    assert st["Gid"].split() == [str(c.dems.pw_gid)] * 4, st["Gid"]
    kids = children(serve)
    workers = [p for p in kids if " worker " in cmdline(p) + " "]
    assert len(workers) == 1, [cmdline(p) for p in kids]
    assert_unprivileged(workers[0], c.dems.pw_uid, "demsd worker")
    # The keeper and the postmaster run as the cluster's own account.
    keepers = [p for p in kids if p not in workers]
    assert len(keepers) == 1, [cmdline(p) for p in kids]
    kst = status(keepers[0])
    assert kst["Uid"].split() == [str(c.postgres.pw_uid)] * 4, kst["Uid"]
    assert int(kst["CapEff"], 16) == 0 and int(kst["CapBnd"], 16) == 0, kst
    pm = children(keepers[0])
    assert len(pm) == 1 and "bin/postgres" in cmdline(pm[0]), [cmdline(p) for p in pm]
    assert status(pm[0])["Uid"].split()[0] == str(c.postgres.pw_uid)
    log = open(c.srv.log_path).read()
    assert '"event":"privileges_dropped"' in log and '"user":"dems"' in log


def test_data_directory_belongs_to_dems(c):
    d = c.srv.data
    for path, mode in ((d, 0o711), (os.path.join(d, "keys", "master.key"), 0o600),
                       (os.path.join(d, "tls", "key.pem"), 0o600),
                       (os.path.join(d, "initial-admin-password"), 0o600)):
        st = os.stat(path)
        assert st.st_uid == c.dems.pw_uid and stat.S_IMODE(st.st_mode) == mode, \
            (path, st.st_uid, oct(st.st_mode))
    run = os.stat(os.path.join(d, "run"))
    assert run.st_uid == c.postgres.pw_uid and run.st_gid == c.dems.pw_gid, run
    assert stat.S_IMODE(run.st_mode) == 0o750, oct(run.st_mode)
    assert os.stat(os.path.join(d, "pg")).st_uid == c.postgres.pw_uid
    # Another account can neither reach the socket nor the data.
    r = subprocess.run(["runuser", "-u", "nobody", "--", "psql", "-X", "-At",
                        c.srv.conninfo("dems_app"), "-c", "SELECT 1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "ermission denied" in r.stderr, (r.returncode, r.stderr)


def test_files_an_operator_put_as_root_are_given_back(c):
    """A master key restored as root (mode 0600) stays readable: a start as
    root gives keys/ and tls/ back to dems."""
    assert c.srv.stop() == 0
    key = os.path.join(c.srv.data, "keys", "master.key")
    os.chown(key, 0, 0)
    os.chown(os.path.join(c.srv.data, "staging"), 0, 0)
    pw = c.srv.admin_password
    c.srv = Server(c.srv.settings, data=c.srv.root).start()
    c.srv.admin_password = pw
    assert os.stat(key).st_uid == c.dems.pw_uid
    assert os.stat(os.path.join(c.srv.data, "staging")).st_uid == c.dems.pw_uid
    c.tok = c.srv.admin_token()


def decoder_status(worker, deadline):
    """Status of the sandboxed decoder (the runner's forked child) while it runs."""
    while time.time() < deadline:
        for runner in children(worker):
            if "media-sandbox" not in cmdline(runner):
                continue
            for child in children(runner):
                st = status(child)
                if st is not None and st.get("Seccomp") == "2":
                    return runner, child, st
        time.sleep(0.01)
    return None, None, None


def test_decoder_child_is_unprivileged_under_seccomp(c):
    path = os.path.join(c.srv.root, "long.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30", "-t", "20", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", path], check=True, timeout=300)
    data = open(path, "rb").read()
    meta = "filename " + base64.b64encode(b"long.mp4").decode()
    h = dict(TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta})
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.tok, headers=h)
    assert st == 201, (st, doc)
    ev = r.getheader("Evidence-Id")
    worker = [p for p in children(c.srv.proc.pid) if " worker " in cmdline(p) + " "][0]
    runner, child, st = decoder_status(worker, time.time() + 120)
    assert st is not None, "no sandboxed decoder seen: " + c.srv.tail()
    assert_unprivileged(runner, c.dems.pw_uid, "sandbox runner")
    # The decoder: the worker's unprivileged account (it cannot switch to
    # another one without privileges), no capabilities, seccomp filter.
    assert_unprivileged(child, c.dems.pw_uid, "decoder child")
    assert st["Seccomp"] == "2"
    deadline = time.time() + 300
    while time.time() < deadline:
        _, doc, _ = c.srv.request("GET", f"/v1/evidence/{ev}", token=c.tok)
        if doc.get("preview_job") in ("done", "dead"):
            break
        time.sleep(0.5)
    assert doc.get("preview_job") == "done", doc


def test_runner_as_root_decodes_as_the_sandbox_account(c):
    """`demsd media-sandbox` run as root (as a worker would be with user
    empty) makes its decoder the sandbox account, never root."""
    sandbox = pwd.getpwnam("dems-sandbox")
    src = os.path.join(c.srv.root, "tiny.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=10", "-t", "1", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", src], check=True, timeout=120)
    outs = [os.path.join(c.srv.root, n) for n in ("p.mp4", "p.jpg", "s.jpg", "i.vtt")]
    script = ("exec 3<\"$1\" 4>\"$2\" 5>\"$3\" 6>\"$4\" 7>\"$5\"; shift 5; exec \"$@\"")
    proc = subprocess.Popen(["sh", "-c", script, "sh", src, *outs, DEMSD, "media-sandbox",
                             "--sandbox-user", "dems-sandbox"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        for child in children(proc.pid):
            st = status(child)
            if st is not None and st.get("Seccomp") == "2":
                seen = st
        time.sleep(0.005)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and '"result"' in out, (out, err)
    assert seen is not None, "the decoder finished before it was seen"
    assert seen["Uid"].split() == [str(sandbox.pw_uid)] * 4, seen["Uid"]
    assert int(seen["CapEff"], 16) == 0 and int(seen["CapBnd"], 16) == 0
    assert seen["NoNewPrivs"] == "1"
    r = subprocess.run(["sh", "-c", script, "sh", src, *outs, DEMSD, "media-sandbox",
                        "--sandbox-user", "no-such-account"], capture_output=True, text=True)
    assert r.returncode == 1 and "sandbox account" in r.stdout, (r.stdout, r.stderr)


def test_missing_account_refuses_start_and_empty_user_stays_root(c):
    root = make_data_root()
    r = subprocess.run([DEMSD, "serve", "--data", root + "/d", "--listen", "127.0.0.1:0",
                        "--set", "user=no-such-account"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "no-such-account" in r.stderr and "does not exist" in r.stderr, \
        r.stderr
    srv = Server({"user": "", "workers": 0}).start()
    st = status(srv.proc.pid)
    assert st["Uid"].split()[0] == "0"
    assert '"event":"running_as_root"' in open(srv.log_path).read()
    assert srv.stop() == 0


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
