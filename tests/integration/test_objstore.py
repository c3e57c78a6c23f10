# SPDX-License-Identifier: Apache-2.0
"""The object-store client (server/store/obj*.c) through dems-objstore-driver
against real emulators started here (stores.py, docs/testing.md): Azurite for
Azure Blob, s3rver (behind S3Gate, which checks SigV4 signatures) for S3. The
driver always speaks to the store through a FaultProxy, which counts the
requests and makes the store fail on demand.

For each backend: round trips of small, empty and multi-block files (random
bytes, sha256 compared), ranges, head and delete, listing by prefix, staged
commit and abort, a blob deleted behind dems's back, wrong credentials
(exit 4, one clear line, no secret on stderr), transient failures (503, 500,
429) retried, retries exhausted (exit 1 naming the status), and connections
dropped mid-block or before the answer, retried with the object intact.

Run alone: meson test -C build/plain integration/test_objstore
(or: DEMS_OBJSTORE_DRIVER=build/plain/tests/integration/dems-objstore-driver
     python3 tests/integration/test_objstore.py, from the source tree's root
     or tests/integration).
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

from harness import run_tests
from stores import Azurite, S3rver, make_tls_pair

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.environ.get("DEMS_OBJSTORE_DRIVER",
                        os.path.join(HERE, "..", "..", "build", "plain", "tests", "integration",
                                     "dems-objstore-driver"))
MIB = 1 << 20
RETRIES = 2  # store_retries in every run here


class Backend:
    """One emulator, its FaultProxy, and the driver's environment."""

    def __init__(self, name, store, part):
        self.name, self.store, self.part = name, store, part
        self.proxy = store.fault_proxy()
        self.env = store.env(via=self.proxy, retries=RETRIES, timeout=10, block_size=MIB)
        self.secrets = [v for k, v in self.env.items() if k in ("DEMS_STORE_KEY",
                                                                "DEMS_STORE_SAS") and v]

    def run(self, *args, env=None, secrets=()):
        """Runs the driver; (exit status, stdout bytes, stderr text). No
        secret of the environment ever reaches stderr."""
        e = dict(os.environ, **self.env)
        e.update(env or {})
        r = subprocess.run([DRIVER, *args], env=e, capture_output=True, timeout=60)
        err = r.stderr.decode(errors="replace")
        for s in list(self.secrets) + list(secrets):
            assert s not in err, f"a secret on the driver's stderr: {err}"
        return r.returncode, r.stdout, err

    def ok(self, *args, **kw):
        rc, out, err = self.run(*args, **kw)
        assert rc == 0, f"{self.name}: driver {' '.join(args[:2])}: exit {rc}: {err}"
        return out

    def put_bytes(self, key, data):
        path = os.path.join(self.dir, "in-" + hashlib.sha256(key.encode()).hexdigest()[:16])
        with open(path, "wb") as f:
            f.write(data)
        self.ok("put", key, path)
        return path

    def get(self, key, *rng):
        return self.ok("get", key, *[str(x) for x in rng])

    def deleted_behind_back(self, key):
        if self.name == "azure":
            return self.store.delete_blob(key)
        return self.store.delete_object(key)


def driver_lines(err):
    """The driver's own lines on stderr (the client also logs one JSON line
    per failure, event objstore_failed)."""
    return [ln for ln in err.splitlines() if ln.startswith("dems-objstore-driver:")]


def staged_parts(b):
    """The Put Block (Azure) or UploadPart (S3) requests the proxy saw."""
    mark = "blockid=" if b.name == "azure" else "partNumber="
    return [p for m, p in b.proxy.seen if m == "PUT" and mark in p]


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Ctx:
    pass


def setup():
    assert os.path.exists(DRIVER), f"{DRIVER} is missing (meson compile -C build/plain)"
    c = Ctx()
    c.tmp = tempfile.mkdtemp(prefix="dems-objstore-")
    c.backends = {}
    az = Azurite(c.tmp)
    c.closers = [az]
    s3 = S3rver(c.tmp)
    c.closers.append(s3)
    # S3 parts are at least 5 MiB (S3Gate refuses smaller ones as S3 does);
    # Azure blocks may be the 1 MiB block size.
    for name, store, part in (("azure", az, MIB), ("s3", s3, 5 * MIB)):
        b = Backend(name, store, part)
        c.closers.insert(0, b.proxy)
        b.dir = os.path.join(c.tmp, name)
        os.makedirs(b.dir)
        c.backends[name] = b
    return c


def teardown(c):
    for x in c.closers:
        x.stop()
    shutil.rmtree(c.tmp, ignore_errors=True)


# Each check below runs for both backends, as test_azure_* and test_s3_*.
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def prepare_creates_the_container(b):
    rc, out, err = b.run("prepare")
    assert rc == 0, err
    assert b.run("prepare")[0] == 0  # again: the container is there already
    kinds = {m for m, _ in b.proxy.seen}
    assert "PUT" in kinds, b.proxy.seen


@check
def small_and_empty_round_trip(b):
    data = os.urandom(1000)
    b.put_bytes("blobs/aa/small", data)
    assert b.get("blobs/aa/small") == data
    assert b.ok("head", "blobs/aa/small") == b"1000\n"
    b.put_bytes("blobs/aa/empty", b"")
    assert b.ok("head", "blobs/aa/empty") == b"0\n"
    assert b.get("blobs/aa/empty") == b""


@check
def multi_block_round_trip(b):
    # Several blocks (Azure: 1 MiB) or parts (S3: 5 MiB), the last one short.
    data = os.urandom(2 * b.part + MIB // 2 + 17)
    b.proxy.reset()
    b.put_bytes("blobs/bb/multi", data)
    assert len(staged_parts(b)) == 3, b.proxy.seen
    got = b.get("blobs/bb/multi")
    assert len(got) == len(data) and sha(got) == sha(data)
    assert b.ok("head", "blobs/bb/multi") == f"{len(data)}\n".encode()
    b.multi = data


@check
def ranges(b):
    data, key = b.multi, "blobs/bb/multi"
    n = len(data)
    assert b.get(key, 1000, 5000) == data[1000:6000]  # the middle
    assert b.get(key, b.part - 10, 20) == data[b.part - 10:b.part + 10]  # across blocks
    assert b.get(key, n - 100) == data[n - 100:]  # the tail, to the end
    assert b.get(key, n - 10, 1000) == data[n - 10:]  # a length past the end
    assert b.get(key, 0, 1) == data[:1]
    assert b.get(key, n, 10) == b""  # at the end: nothing
    assert b.get(key, n + 5000, 10) == b""  # past it: nothing
    assert b.get("blobs/aa/empty", 0, 10) == b""


@check
def head_and_get_of_a_missing_key_are_not_found(b):
    for args in (("head", "blobs/zz/missing"), ("get", "blobs/zz/missing"),
                 ("get", "blobs/zz/missing", "10", "10")):
        rc, out, err = b.run(*args)
        assert rc == 3 and out == b"", (args, rc, err)
        assert len(driver_lines(err)) == 1, err


@check
def delete_then_head_is_not_found(b):
    b.put_bytes("blobs/cc/gone", b"to be deleted " * 10)
    b.ok("delete", "blobs/cc/gone")
    rc, _, err = b.run("head", "blobs/cc/gone")
    assert rc == 3, err
    b.ok("delete", "blobs/cc/gone")  # deleting what is not there is no error


@check
def list_by_prefix(b):
    want = {"list/a/1": 10, "list/a/2": 2000, "list/a/3/deep": 1}
    for k, size in want.items():
        b.put_bytes(k, os.urandom(size))
    b.put_bytes("list/b/1", b"other")
    b.put_bytes("list/ab", b"not under list/a/")
    lines = b.ok("list", "list/a/").decode().splitlines()
    got = {ln.split()[0]: int(ln.split()[1]) for ln in lines}
    assert got == want, lines
    assert [ln.split()[0] for ln in lines] == sorted(want)  # the store's order
    assert b.ok("list", "list/none/") == b""


@check
def staged_commit(b):
    data = os.urandom(2 * b.part + 12345)
    path = os.path.join(b.dir, "staged")
    with open(path, "wb") as f:
        f.write(data)
    b.proxy.reset()
    b.ok("stage", "blobs/dd/staged", path, str(b.part))
    # The driver numbers parts 2, 4, 6 after a superseded part 1, as when
    # another node took an upload over: the commit names only the three.
    assert len(staged_parts(b)) == 4, b.proxy.seen
    assert sha(b.get("blobs/dd/staged")) == sha(data)


@check
def server_side_copy(b):
    """A completed upload's staged object is copied to its content key by
    the store itself: no byte passes through dems."""
    data = os.urandom(3 * MIB + 5)
    b.put_bytes("staging/copy-src", data)
    b.proxy.reset()
    b.ok("copy", "staging/copy-src", "blobs/cc/copied")
    assert sha(b.get("blobs/cc/copied")) == sha(data)
    puts = [p for m, p in b.proxy.seen if m == "PUT"]
    assert len(puts) == 1 and "blobs/cc/copied" in puts[0] and not staged_parts(b), puts
    b.ok("copy", "staging/copy-src", "blobs/cc/copied")  # again: replaces, same bytes
    assert sha(b.get("blobs/cc/copied")) == sha(data)
    rc, _, err = b.run("copy", "staging/no-such-source", "blobs/cc/none")
    assert rc == 3, (rc, err)


@check
def concurrent_stages_of_one_key_never_mix(b):
    """Two staged writes of one key at once (two uploads of the same evidence:
    the key is its hash, the encrypted bytes differ): the object ends up as
    one of them whole, never blocks or parts of both."""
    paths = []
    for i in range(2):
        paths.append(os.path.join(b.dir, f"twin{i}"))
        with open(paths[-1], "wb") as f:
            f.write(os.urandom(3 * b.part + 777))
    e = dict(os.environ, **b.env)
    procs = [subprocess.Popen([DRIVER, "stage", "blobs/tw/twin", p, str(b.part)], env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p in paths]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode(errors="replace")
    got = sha(b.get("blobs/tw/twin"))
    assert got in {sha(open(p, "rb").read()) for p in paths}, "the object mixes both writes"


@check
def tls_to_the_store(b):
    """HTTPS to the store, its certificate checked: against store_ca_file it
    works; without it (the system's trust store does not know this CA) the
    request fails with one line, and nothing is retried for ever."""
    cert, key = make_tls_pair(b.dir)
    with b.store.fault_proxy(tls=(cert, key)) as tp:
        env = {"DEMS_STORE_ENDPOINT": b.store._endpoint_via(tp), "DEMS_STORE_CA_FILE": cert,
               "DEMS_STORE_RETRIES": "1"}
        assert env["DEMS_STORE_ENDPOINT"].startswith("https://127.0.0.1:")
        data = os.urandom(3000)
        path = os.path.join(b.dir, "tls-in")
        with open(path, "wb") as f:
            f.write(data)
        b.ok("put", "blobs/tl/tls", path, env=env)
        assert b.ok("get", "blobs/tl/tls", env=env) == data
        assert tp.count >= 2
        env["DEMS_STORE_CA_FILE"] = ""
        rc, _, err = b.run("head", "blobs/tl/tls", env=env)
        assert rc == 1 and "certificate" in err.lower(), (rc, err)


@check
def abort_leaves_no_object(b):
    path = os.path.join(b.dir, "aborted")
    with open(path, "wb") as f:
        f.write(os.urandom(MIB + 100))
    b.ok("stage-abort", "blobs/ee/aborted", path)
    rc, _, err = b.run("head", "blobs/ee/aborted")
    assert rc == 3, err
    if b.name == "s3":
        assert b.store.pending_uploads() == [], b.store.pending_uploads()
        assert ("DELETE" in {m for m, _ in b.proxy.seen})


@check
def blob_deleted_behind_our_back(b):
    b.put_bytes("blobs/ff/victim", os.urandom(4096))
    assert b.deleted_behind_back("blobs/ff/victim")
    for args in (("head", "blobs/ff/victim"), ("get", "blobs/ff/victim")):
        rc, out, err = b.run(*args)
        assert rc == 3 and out == b"", (args, rc, err)
        assert len(driver_lines(err)) == 1, err


@check
def wrong_credentials_are_refused(b):
    path = b.put_bytes("blobs/gg/ok", b"credentials work")
    if b.name == "azure":
        bad = "V3Jvbmcga2V5IGZvciBkZXZzdG9yZWFjY291bnQxIC0tIHJlZnVzZWQgYnkgQXp1cml0ZQ=="
        cases = [{"DEMS_STORE_KEY": bad}]
    else:
        bad = "wrong-secret-for-s3rver-0123456789"
        cases = [{"DEMS_STORE_KEY": bad}, {"DEMS_STORE_ACCESS_KEY": "NOSUCHKEY"}]
    for env in cases:
        for args in (("put", "blobs/gg/refused", path), ("get", "blobs/gg/ok"),
                     ("head", "blobs/gg/ok")):
            b.proxy.reset()
            rc, out, err = b.run(*args, env=env, secrets=[bad])
            assert rc == 4 and out == b"", (env, args, rc, err)
            lines = driver_lines(err)
            assert len(lines) == 1 and "credentials" in lines[0], err
            # Refused at once: credentials are not retried.
            assert b.proxy.count == 1, b.proxy.seen
    assert b.run("head", "blobs/gg/refused")[0] == 3
    if b.name == "s3":
        assert {code for code, _, _ in b.store.gate.refused} >= {"SignatureDoesNotMatch",
                                                                 "InvalidAccessKeyId"}


@check
def sas_token(b):
    if b.name != "azure":
        return
    sas = b.store.account_sas()
    env = {"DEMS_STORE_KEY": "", "DEMS_STORE_SAS": sas}
    data = os.urandom(MIB + 3)
    path = os.path.join(b.dir, "sas")
    with open(path, "wb") as f:
        f.write(data)
    secret = sas.split("sig=")[1]
    b.ok("put", "blobs/hh/sas", path, env=env, secrets=[secret])
    assert sha(b.ok("get", "blobs/hh/sas", env=env, secrets=[secret])) == sha(data)
    # Read-only: writing is refused as a credentials failure.
    ro = b.store.account_sas(permissions="rl")
    rc, _, err = b.run("put", "blobs/hh/ro", path, env={"DEMS_STORE_KEY": "",
                                                        "DEMS_STORE_SAS": ro})
    assert rc == 4, err
    bad = sas.replace("sig=", "sig=AAAA")
    rc, _, err = b.run("get", "blobs/hh/sas", env={"DEMS_STORE_KEY": "", "DEMS_STORE_SAS": bad})
    assert rc == 4, err


@check
def transient_failures_are_retried(b):
    data = os.urandom(5000)
    path = os.path.join(b.dir, "transient")
    with open(path, "wb") as f:
        f.write(data)
    for kind in ("503", "500", "429"):
        key = f"blobs/ii/{kind}"
        b.proxy.reset()
        b.proxy.fail(RETRIES, kind, method="PUT")
        b.ok("put", key, path)
        puts = [p for m, p in b.proxy.seen if m == "PUT"]
        assert len(puts) == RETRIES + 1 and b.proxy.pending() == 0, (kind, b.proxy.seen)
        b.proxy.fail(RETRIES, kind, method="GET")
        assert b.get(key) == data
        assert b.proxy.pending() == 0


@check
def retries_exhausted_fail_naming_the_status(b):
    path = os.path.join(b.dir, "exhausted")
    with open(path, "wb") as f:
        f.write(os.urandom(5000))
    b.proxy.reset()
    b.proxy.fail(RETRIES + 1, "503", method="PUT")
    rc, _, err = b.run("put", "blobs/jj/never", path)
    assert rc == 1, (rc, err)
    assert len(driver_lines(err)) == 1, err
    assert "503" in err, err
    assert len([m for m, _ in b.proxy.seen if m == "PUT"]) == RETRIES + 1, b.proxy.seen
    assert b.run("head", "blobs/jj/never")[0] == 3  # nothing stored under the key


@check
def dropped_connections_are_retried(b):
    data = os.urandom(2 * b.part + 999)
    path = os.path.join(b.dir, "dropped")
    with open(path, "wb") as f:
        f.write(data)
    second = "blockid=" if b.name == "azure" else "partNumber=2"
    for kind in ("drop-response", "drop-body"):
        key = f"blobs/kk/{kind}"
        b.proxy.reset()
        # Azure: the first block; S3: the second part.
        b.proxy.fail(1, kind, method="PUT", path_contains=second)
        b.ok("put", key, path)
        assert b.proxy.dropped == 1 and b.proxy.pending() == 0, b.proxy.faults
        fault = b.proxy.faults[0][2]
        again = [p for m, p in b.proxy.seen if m == "PUT" and p == fault]
        assert len(again) == 2, b.proxy.seen  # the same block sent again
        assert sha(b.get(key)) == sha(data)
    # A download whose connection dies half way through the answer.
    b.proxy.reset()
    b.proxy.fail(1, "drop-body", method="GET")
    assert sha(b.get("blobs/kk/drop-body")) == sha(data)
    assert b.proxy.dropped == 1


@check
def s3_parts_under_5_mib_are_refused(b):
    """S3 refuses a multipart upload whose parts but the last are under
    5 MiB (EntityTooSmall); s3rver does not, S3Gate does."""
    if b.name != "s3":
        return
    path = os.path.join(b.dir, "small-parts")
    with open(path, "wb") as f:
        f.write(os.urandom(2 * MIB + 1))
    rc, _, err = b.run("stage", "blobs/ll/small-parts", path, str(MIB))
    assert rc == 1 and "EntityTooSmall" in err, (rc, err)


def _make(name, fn):
    def t(c):
        fn(c.backends[name])
    t.__name__ = f"test_{name}_{fn.__name__}"
    return t


for _name in ("s3", "azure"):
    for _fn in CHECKS:
        globals()[f"test_{_name}_{_fn.__name__}"] = _make(_name, _fn)


# After the generated checks: the object it reads is there by then.
def test_s3gate_agrees_with_curls_sigv4(c):
    """The gate's signature check against an independent signer (curl's
    --aws-sigv4; curl 7.88 does not add x-amz-content-sha256 itself)."""
    s3 = c.backends["s3"].store
    url = f"{s3.endpoint}/{s3.bucket}/blobs/aa/small"

    def curl(secret):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "--aws-sigv4", f"aws:amz:{s3.region}:s3",
                            "--user", f"{s3.access_key}:{secret}",
                            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", url],
                           capture_output=True, text=True, timeout=30)
        return r.stdout
    assert curl(s3.secret) == "200"
    assert curl("not-the-secret") == "403"
    assert s3.gate.refused[-1][0] == "SignatureDoesNotMatch"



def test_azurite_launcher_and_fault_proxy(c):
    """The launcher's own requests (SharedKey and account SAS signed in
    Python) and the proxy's faults against Azurite, without the driver: so
    these hold before and beside the Azure backend."""
    b = c.backends["azure"]
    az, fp = b.store, b.proxy
    st, _, body = az.request("PUT", "/selftest", query={"restype": "container"})
    assert st in (201, 409), (st, body)
    data = os.urandom(3000)
    st, _, body = az.request("PUT", "/selftest/x", body=data, via=fp,
                             headers={"x-ms-blob-type": "BlockBlob"})
    assert st == 201, (st, body)
    fp.reset()
    fp.fail(1, "503", method="GET")
    st, h, _ = az.request("GET", "/selftest/x", via=fp)
    assert st == 503 and h["x-ms-error-code"] == "ServerBusy"
    st, _, got = az.request("GET", "/selftest/x", via=fp)
    assert st == 200 and got == data and fp.count == 2
    sas = az.account_sas()
    st, _, got = az.request("GET", "/selftest/x", sas=sas)
    assert st == 200 and got == data
    st, _, _ = az.request("GET", "/selftest/x", sas=az.account_sas(permissions="w"))
    assert st == 403
    st, _, _ = az.request("GET", "/selftest/x", sas=sas.replace("sig=", "sig=AAAA"))
    assert st == 403
    assert az.delete_blob("x", container="selftest")
    assert az.request("HEAD", "/selftest/x")[0] == 404


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
