# SPDX-License-Identifier: Apache-2.0
"""demsd with its blobs in an object store (docs/configuration.md, "Object
stores"): Azurite (Azure Blob) and s3rver (S3, behind the SigV4-checking
gate), both real emulators from tests/node (stores.py), each reached through
a FaultProxy. For each store:

- evidence uploaded by tus lands in the store as the encrypted blob file
  (never on the node's disk, never in plaintext), and downloads and ranges
  read it back;
- transient failures (503, a connection dropped after the store acted) are
  retried and the upload completes;
- a store that keeps failing leaves the upload "recording" and not evidence
  (nothing is recorded that is not stored); once the store is back, the
  server completes it by itself;
- a blob deleted behind dems's back is named by `demsd admin verify-blobs`
  and by the periodic integrity sweep, and its download fails cleanly;
- wrong credentials stop demsd at start with one clear line."""
import base64
import hashlib
import os
import tempfile
import threading
import time

from harness import Server, eventually, remember_secret, run_tests
from stores import Azurite, S3rver

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
BACKENDS = ("s3", "azure")


def settings_of(env):
    """DEMS_STORE_* → {"store_*": value} for --set (demsd takes at most 16
    options: the empty ones and the default addressing are left out)."""
    return {k[5:].lower(): v for k, v in env.items()
            if k.startswith("DEMS_STORE") and v != "" and k != "DEMS_STORE_ADDRESSING"}


class Ctx:
    pass


def start_server(c, b, **override):
    env = c.store[b].env(via=c.proxy[b], retries=3, timeout=10)
    s = {"workers": 0, "housekeeping_interval": 1, "blob_verify_interval": 2}
    s.update(settings_of(env))
    s.update(override)
    return Server(s).start()


def setup():
    c = Ctx()
    c.tmp = tempfile.mkdtemp(prefix="dems-stores-")
    c.store, c.proxy, c.srv = {}, {}, {}
    try:
        for b, kind in (("s3", S3rver), ("azure", Azurite)):
            c.store[b] = kind(c.tmp)
            c.proxy[b] = c.store[b].fault_proxy()
        remember_secret(c.store["azure"].key, "Azure account key")
        for b in BACKENDS:
            c.srv[b] = start_server(c, b)
        c.tok = {b: c.srv[b].admin_token() for b in BACKENDS}
    except BaseException:
        stop_all(c)  # nothing left running behind a failed start
        raise
    return c


def stop_all(c):
    """Stops everything, whatever fails on the way; demsd's exit codes."""
    codes = []
    try:
        for s in c.srv.values():
            codes.append(s.stop())
    finally:
        for x in list(c.proxy.values()) + list(c.store.values()):
            x.stop()
    return codes


def teardown(c):
    assert stop_all(c) == [0] * len(BACKENDS)


def upload(c, b, data, name="clip.mp4"):
    meta = "filename " + base64.b64encode(name.encode()).decode()
    st, doc, r = c.srv[b].request("POST", "/v1/uploads", body=data, token=c.tok[b], headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta}))
    assert st == 201, (st, doc)
    return r


def key_of(sha):
    return f"blobs/{sha[:2]}/{sha}"


def stored_object(c, b, sha):
    """(status, bytes) of the blob's object, read behind dems's back."""
    s = c.store[b]
    box = s.bucket if b == "s3" else s.container
    st, _, body = s.request("GET", f"/{box}/{key_of(sha)}")
    return st, body


def delete_object(c, b, sha):
    s = c.store[b]
    return s.delete_object(key_of(sha)) if b == "s3" else s.delete_blob(key_of(sha))


def content(c, b, sha, rng=None):
    h = {"Range": rng} if rng else None
    return c.srv[b].request("GET", f"/v1/evidence/{sha}/content", token=c.tok[b], headers=h)


def check_lands_encrypted_in_the_store(c, b):
    data = os.urandom(6 << 20)  # several blocks (Azure: 1 MiB) and parts (S3: 5 MiB)
    r = upload(c, b, data)
    sha = hashlib.sha256(data).hexdigest()
    assert r.getheader("Evidence-Id") == sha, r.getheaders()
    st, obj = stored_object(c, b, sha)
    assert st == 200, st
    assert obj.startswith(b"DEMSBLOB1\n") and len(obj) > len(data), len(obj)
    assert data[4096:4160] not in obj, "plaintext in the object store"
    local = os.path.join(c.srv[b].data, "blobs", sha[:2], sha)
    assert not os.path.exists(local), "the blob was kept on the node's disk too"
    staged = os.listdir(os.path.join(c.srv[b].data, "staging"))
    assert not [f for f in staged if not f.endswith(".json")], staged
    st, body, _ = content(c, b, sha)
    assert st == 200 and body == data, (st, len(body or b""))
    st, body, r = content(c, b, sha, "bytes=5000000-5000099")
    assert st == 206 and body == data[5000000:5000100], (st, len(body or b""))
    st, body, r = content(c, b, sha, f"bytes=-10")
    assert st == 206 and body == data[-10:], st


def check_transient_failures_are_retried(c, b):
    p = c.proxy[b]
    p.reset()
    p.fail(2, "503")
    p.fail(1, "drop-response", method="PUT")
    data = os.urandom(300_000)
    r = upload(c, b, data, "retried.jpg")
    sha = hashlib.sha256(data).hexdigest()
    assert r.getheader("Evidence-Id") == sha, r.getheaders()
    assert p.pending() == 0 and len(p.faults) == 3, p.faults
    st, body, _ = content(c, b, sha)
    assert st == 200 and body == data
    assert '"event":"objstore_retry"' in c.srv[b].tail(400000)


def check_store_down_takes_nothing_until_back(c, b):
    """Uploads are staged in the store as they arrive: with the store down a
    request's bytes are refused (503, nothing committed, nothing recorded),
    and the client resumes the upload once the store is back."""
    p = c.proxy[b]
    p.reset()
    p.fail(100000, "500")
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    meta = "filename " + base64.b64encode(b"while-down.jpg").decode()
    st, doc, r = c.srv[b].request("POST", "/v1/uploads", body=data, token=c.tok[b], headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta}))
    assert st == 503 and doc["code"] == "store_unavailable", (st, doc)
    loc = r.getheader("Location")
    assert loc and r.getheader("Upload-Offset") == "0", r.getheaders()
    st, _, r = c.srv[b].request("HEAD", loc, token=c.tok[b], headers=TUS)
    assert st == 200 and r.getheader("Upload-Offset") == "0", r.getheaders()
    assert r.getheader("Upload-State") == "receiving", r.getheaders()
    st, doc, _ = c.srv[b].request("GET", f"/v1/evidence/{sha}", token=c.tok[b])
    assert st == 404, (st, doc)
    assert stored_object(c, b, sha)[0] == 404
    assert '"event":"objstore_failed"' in c.srv[b].tail(400000)
    assert c.srv[b].request("GET", "/healthz")[0] == 200
    p.reset()  # the store is back: the client sends the bytes again
    st, doc, r = c.srv[b].request("PATCH", loc, body=data, token=c.tok[b], headers=dict(
        TUS, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
    assert st == 204 and r.getheader("Evidence-Id") == sha, (st, doc, r.getheaders())
    st, body, _ = content(c, b, sha)
    assert st == 200 and body == data


def check_blob_deleted_behind_our_back_is_named(c, b):
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    upload(c, b, data, "doomed.jpg")
    assert delete_object(c, b, sha)
    srv = c.srv[b]
    sets = []
    for k, v in settings_of(c.store[b].env(retries=1, timeout=10)).items():
        sets += ["--set", f"{k}={v}"]
    r = srv.demsd("admin", "verify-blobs", "--data", srv.data, *sets)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"BAD {sha}: missing from the blob store" in r.stdout, r.stdout + r.stderr
    want = f'"event":"blob_integrity_failure","evidence":"{sha}"'
    assert eventually(lambda: want in srv.tail(1000000), timeout=20), srv.tail(3000)
    st, body, _ = content(c, b, sha)
    assert st == 500 and body["code"] == "blob_unreadable", (st, body)
    assert srv.request("GET", "/healthz")[0] == 200


def vm_hwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def check_logins_at_once_stay_bounded(c, b):
    """With an object store the work pool has 8 threads; 8 logins at once
    must not each hold Argon2id's 64 MiB (512 MiB): at most two checks run at
    a time (common/crypto/token.c), so the peak grows by about 128 MiB."""
    srv = c.srv[b]
    pid = srv.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base = vm_hwm_kib(pid)
    results = []

    def login(i):
        results.append(srv.login(f"nobody{i}-{b}", "not the password")[0])

    threads = [threading.Thread(target=login, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [401] * 8, results
    grew = (vm_hwm_kib(pid) - base) // 1024
    assert grew <= 200, f"peak RSS grew {grew} MiB for 8 logins at once"


def check_wrong_credentials_stop_start(c, b):
    wrong = {"s3": {"store_key": "not-the-secret"},
             "azure": {"store_key": base64.b64encode(b"w" * 64).decode()}}[b]
    srv = start_server_nowait(c, b, **wrong)
    rc = srv.proc.wait(60)
    assert rc != 0, rc
    out = srv.tail(4000)
    assert "refused" in out, out
    assert "not-the-secret" not in out


def start_server_nowait(c, b, **override):
    env = c.store[b].env(retries=0, timeout=10)
    s = {"workers": 0}
    s.update(settings_of(env))
    s.update(override)
    return Server(s).start(wait=False)


def _each(check):
    def run(c):
        for b in BACKENDS:
            try:
                check(c, b)
            except AssertionError as e:
                raise AssertionError(f"[{b}] {e}") from e
    run.__name__ = check.__name__
    return run


test_lands_encrypted_in_the_store = _each(check_lands_encrypted_in_the_store)
test_transient_failures_are_retried = _each(check_transient_failures_are_retried)
test_store_down_takes_nothing_until_back = _each(check_store_down_takes_nothing_until_back)
test_blob_deleted_behind_our_back_is_named = _each(check_blob_deleted_behind_our_back_is_named)
test_logins_at_once_stay_bounded = _each(check_logins_at_once_stay_bounded)
test_wrong_credentials_stop_start = _each(check_wrong_credentials_stop_start)

if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
