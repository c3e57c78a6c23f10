# SPDX-License-Identifier: Apache-2.0
"""RFC 3161 timestamps of checkpoints (issue 18; docs/ledger.md,
"Timestamps") against a real TSA on loopback: `openssl ts -reply` behind a
small HTTP responder this test runs, with its own CA made here by openssl.
A good TSA's token is stored, verifies with `openssl ts -verify` over the
checkpoint's note, and is recorded by a TIMESTAMPED entry; a TSA that answers
garbage, a wrong imprint, a wrong nonce, a certificate of another CA, or
nothing within tsa_timeout is refused with one log line naming the reason and
asked again the next round, while appends go on; nothing is asked while the
log does not grow."""
import base64
import hashlib
import http.server
import json
import os
import subprocess
import threading
import time

from harness import (DEMSD, Server, eventually, free_port, ledger_entries, make_data_root,
                     run_tests)

INTERVAL = 1  # tsa_interval, seconds
TIMEOUT = 3   # tsa_timeout, seconds


class Ctx:
    pass


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


EXT = """
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[tsa]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

TSA_SECTION = """
[{name}]
dir = {dir}
serial = $dir/{name}.serial
crypto_device = builtin
signer_cert = $dir/{name}_tsa.crt
signer_key = $dir/{name}_tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def make_pki(d):
    """Two CAs (good, other), each with a TSA certificate whose
    extendedKeyUsage is critical timeStamping, and the `openssl ts` config
    naming both signers."""
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write(EXT)
    for name in ("good", "other"):
        p = os.path.join(d, name)
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", p + "_ca.key", "-out", p + "_ca.crt", "-days", "2",
           "-subj", f"/CN=dems test {name} TSA CA", "-config", os.path.join(d, "ext.cnf"),
           "-extensions", "ca")
        sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", p + "_tsa.key", "-out", p + "_tsa.csr",
           "-subj", f"/CN=dems test {name} TSA", "-config", os.path.join(d, "ext.cnf"))
        sh("openssl", "x509", "-req", "-in", p + "_tsa.csr", "-CA", p + "_ca.crt",
           "-CAkey", p + "_ca.key", "-CAcreateserial", "-out", p + "_tsa.crt", "-days", "2",
           "-extfile", os.path.join(d, "ext.cnf"), "-extensions", "tsa")
        with open(p + ".serial", "w") as f:
            f.write("01\n")
    with open(os.path.join(d, "tsa.cnf"), "w") as f:
        f.write("[tsa]\ndefault_tsa = good\n")
        for name in ("good", "other"):
            f.write(TSA_SECTION.format(name=name, dir=d))
        # A TSA that takes no SHA-256 imprint: it answers status rejection (badAlg).
        f.write(TSA_SECTION.format(name="good", dir=d).replace("[good]", "[sha512only]")
                .replace("digests = sha256", "digests = sha512"))
    for n in os.listdir(d):
        os.chmod(os.path.join(d, n), 0o644)  # demsd runs as its own account


def flip_after(der, marker, skip):
    """der with the last byte of the field after marker (skip bytes of header) flipped."""
    i = der.index(marker) + len(marker)
    if skip == "imprint":
        j = i + 31
    else:  # the nonce INTEGER right after the 32-byte imprint
        k = i + 32
        assert der[k] == 0x02, der.hex()
        j = k + 1 + der[k + 1]
    return der[:j] + bytes([der[j] ^ 1]) + der[j + 1:]


SHA256_ALG_AND_OCTETS = bytes.fromhex("0500" "0420")  # NULL params, then OCTET STRING of 32


class Tsa:
    """The loopback TSA: mode decides what each POST gets."""

    def __init__(self, d):
        self.d = d
        self.mode = "good"
        self.hang_seconds = TIMEOUT + 4
        self.requests = []  # (mode, time)
        self.in_flight = 0
        self.lock = threading.Lock()
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                query = self.rfile.read(n)
                with tsa.lock:
                    mode = tsa.mode
                    tsa.requests.append((mode, time.time()))
                    tsa.in_flight += 1
                try:
                    body = tsa.answer(mode, query, self.headers.get("Content-Type"))
                    if body is None:
                        return
                    self.send_response(200 if body else 500)
                    self.send_header("Content-Type", "application/timestamp-reply")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with tsa.lock:
                        tsa.in_flight -= 1

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tsa"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, query, section="good"):
        q = os.path.join(self.d, f"q{threading.get_ident()}.der")
        r = os.path.join(self.d, f"r{threading.get_ident()}.der")
        with open(q, "wb") as f:
            f.write(query)
        with self.lock:  # one openssl at a time: the serial file
            sh("openssl", "ts", "-reply", "-config", os.path.join(self.d, "tsa.cnf"),
               "-section", section, "-queryfile", q, "-out", r)
        with open(r, "rb") as f:
            return f.read()

    def answer(self, mode, query, ctype):
        assert ctype == "application/timestamp-query", ctype
        if mode == "good":
            return self.reply(query)
        if mode == "garbage":
            return b"<html>not a timestamp</html>"
        if mode == "imprint":
            return self.reply(flip_after(query, SHA256_ALG_AND_OCTETS, "imprint"))
        if mode == "nonce":
            return self.reply(flip_after(query, SHA256_ALG_AND_OCTETS, "nonce"))
        if mode == "untrusted":
            return self.reply(query, "other")
        if mode == "rejected":
            return self.reply(query, "sha512only")
        if mode == "http500":
            return b""
        if mode == "hang":
            time.sleep(self.hang_seconds)
            return None
        raise AssertionError(mode)

    def count(self, mode=None):
        with self.lock:
            return sum(1 for m, _ in self.requests if mode is None or m == mode)

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode


def verify(*args):
    return subprocess.run([os.environ["DEMS_VERIFY"], *args], capture_output=True, text=True,
                          timeout=60)


def log_events(srv, event, since=0):
    """demsd's log lines with this event, from byte offset since."""
    out = []
    with open(srv.log_path, "rb") as f:
        f.seek(since)
        for line in f.read().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == event:
                out.append(doc)
    return out


def log_size(srv):
    return os.path.getsize(srv.log_path)


def grow(c):
    """One more ledger entry (CASE_CREATED); returns the seconds it took.
    c.grown is then the log's size once that entry is in."""
    c.n += 1
    t0 = time.time()
    st, doc, _ = c.srv.request("POST", "/v1/cases", {"reference": f"T/{c.n}", "title": "t"},
                               token=c.admin)
    took = time.time() - t0
    assert st == 201, doc
    entries = ledger_entries(c.srv, c.admin, start=max(0, c.grown - 1))
    c.grown = 1 + max(e["seq"] for e in entries
                      if e["body"]["type"] == "CASE_CREATED" and e["body"].get("case") == f"T/{c.n}")
    return took


def upload(c, data):
    """A whole upload in one request (creation with data); its INGESTED entry
    is durable when the answer comes. Returns the seconds it took."""
    t0 = time.time()
    meta = "filename " + base64.b64encode(b"tsa.bin").decode()
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.admin, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta,
        "Content-Type": "application/offset+octet-stream"})
    assert st == 201 and r.getheader("Evidence-Id") == hashlib.sha256(data).hexdigest(), (st, doc)
    return time.time() - t0


def covered(c):
    """The size of the newest checkpoint, once it covers the last grow()."""
    got = eventually(lambda: (lambda n: n if n >= c.grown else None)(newest_size(c)), timeout=10)
    assert got, (newest_size(c), c.grown)
    return got


def timestamps(c, size=None):
    q = "" if size is None else f"?size={size}"
    st, doc, _ = c.srv.request("GET", "/v1/ledger/timestamps" + q)
    return st, doc


def newest_size(c):
    st, note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
    assert st == 200
    text = note if isinstance(note, str) else note.decode()
    return int(text.split("\n")[1])


def setup():
    c = Ctx()
    c.pki = make_data_root()
    make_pki(c.pki)
    c.tsa = Tsa(c.pki)
    c.srv = Server({"tsa_urls": c.tsa.url, "tsa_ca_file": os.path.join(c.pki, "good_ca.crt"),
                    "tsa_interval": INTERVAL, "tsa_timeout": TIMEOUT}).start()
    c.admin = c.srv.admin_token()
    c.n = 0
    c.grown = 0
    return c


def teardown(c):
    rc = c.srv.stop()
    c.tsa.set_mode("good")
    c.tsa.httpd.shutdown()
    assert rc == 0, c.srv.tail()


def stamped(c):
    """The newest timestamped checkpoint's document (waits for one)."""
    def ok():
        st, doc = timestamps(c)
        return doc if st == 200 and doc["timestamps"] else None
    doc = eventually(ok, timeout=15)
    assert doc, timestamps(c)
    return doc


def test_good_tsa(c):
    grow(c)
    size = covered(c)
    doc = eventually(lambda: (lambda r: r[1] if r[0] == 200 and r[1]["size"] >= size
                              and r[1]["timestamps"] else None)(timestamps(c)), timeout=15)
    assert doc, timestamps(c)
    note = doc["checkpoint"].encode()
    assert doc["checkpoint_sha256"] == hashlib.sha256(note).hexdigest()
    assert int(note.split(b"\n")[1]) == doc["size"]
    [ts] = doc["timestamps"]
    assert ts["tsa"] == c.tsa.url
    token = base64.b64decode(ts["token"], validate=True)
    assert ts["token_sha256"] == hashlib.sha256(token).hexdigest()
    # The token verifies with OpenSSL alone over the note's exact bytes.
    tok, data = os.path.join(c.pki, "token.der"), os.path.join(c.pki, "note.txt")
    open(tok, "wb").write(token)
    open(data, "wb").write(note)
    r = subprocess.run(["openssl", "ts", "-verify", "-in", tok, "-token_in", "-data", data,
                        "-CAfile", os.path.join(c.pki, "good_ca.crt")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Verification: OK" in r.stdout, (r.stdout, r.stderr)
    # ... and not under the other CA.
    r = subprocess.run(["openssl", "ts", "-verify", "-in", tok, "-token_in", "-data", data,
                        "-CAfile", os.path.join(c.pki, "other_ca.crt")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    # The TIMESTAMPED entry: size, root, TSA, the token's hash and genTime.
    [e] = [e for e in ledger_entries(c.srv, c.admin) if e["body"]["type"] == "TIMESTAMPED"
           and e["body"]["payload"]["checkpoint_size"] == doc["size"]]
    b = e["body"]
    assert e["seq"] == ts["seq"]
    assert b["actor"] == {"id": "timestamps", "kind": "system"}
    assert b["sha256"] == ts["token_sha256"] and b["size"] == len(token)
    p = b["payload"]
    assert p["checkpoint_root"] == doc["root"]
    assert base64.b64decode(note.split(b"\n")[2]).hex() == doc["root"]
    assert p["checkpoint_sha256"] == doc["checkpoint_sha256"]
    assert p["tsa"] == c.tsa.url and p["gen_time"] == ts["gen_time"]
    assert p["policy"] == "1.2.3.4.1"
    # dems-verify checks the token offline (base64 as served, and DER).
    b64 = os.path.join(c.pki, "token.b64")
    open(b64, "w").write(ts["token"])
    st, vkey, _ = c.srv.request("GET", "/v1/ledger/key")
    vkey = vkey.decode() if isinstance(vkey, bytes) else vkey
    good_ca, other_ca = os.path.join(c.pki, "good_ca.crt"), os.path.join(c.pki, "other_ca.crt")
    for tf in (b64, tok):
        r = verify("timestamp", tf, "--checkpoint", data, "--ca", good_ca, "--key", vkey.strip())
        assert r.returncode == 0 and f"existed by {ts['gen_time']}" in r.stdout, (r.stdout,
                                                                                  r.stderr)
        assert f"tree size {doc['size']}" in r.stdout, r.stdout
    r = verify("timestamp", b64, "--checkpoint", data, "--ca", other_ca)
    assert r.returncode == 1 and "certificate verify error" in r.stdout, (r.stdout, r.stderr)
    other_note = os.path.join(c.pki, "note2.txt")
    open(other_note, "wb").write(note.replace(b"\n\n", b"\n\n\n", 1))
    r = verify("timestamp", b64, "--checkpoint", other_note, "--ca", good_ca)
    assert r.returncode == 1 and "message imprint mismatch" in r.stdout, (r.stdout, r.stderr)
    r = verify("timestamp", data, "--checkpoint", data, "--ca", good_ca)
    assert r.returncode == 2 and "TimeStampToken" in r.stderr, (r.stdout, r.stderr)
    st, same = timestamps(c, doc["size"])
    assert st == 200 and same == doc
    assert log_events(c.srv, "timestamp_stored")


def test_no_request_while_the_log_does_not_grow(c):
    stamped(c)
    time.sleep(2 * INTERVAL)  # the TIMESTAMPED entry's own checkpoint comes and goes
    before = c.tsa.count()
    time.sleep(4 * INTERVAL)
    assert c.tsa.count() == before, c.tsa.requests[-5:]
    # The log grows: the next round asks.
    grow(c)
    assert eventually(lambda: c.tsa.count() > before, timeout=10)
    stamped(c)


def refused_case(c, mode, reason):
    """mode's TSA is refused with one line naming reason, then asked again;
    nothing is stored for the new checkpoint."""
    stamped(c)
    time.sleep(2 * INTERVAL)
    c.tsa.set_mode(mode)
    since = log_size(c.srv)
    grow(c)
    size = covered(c)
    seen = eventually(lambda: len([d for d in log_events(c.srv, "timestamp_refused", since)
                                   if reason in d["reason"]]) >= 2,
                      timeout=10 + 3 * (TIMEOUT + INTERVAL))
    lines = log_events(c.srv, "timestamp_refused", since)
    assert seen, (mode, lines, c.srv.tail())
    for d in lines:
        assert reason in d["reason"] and d["tsa"] == c.tsa.url, d
        assert d["msg"].count("\n") == 0
    assert c.tsa.count(mode) >= 2  # asked again at the next round
    st, doc = timestamps(c, size)
    assert st == 200 and doc["timestamps"] == [], doc
    assert not log_events(c.srv, "timestamp_stored", since)
    c.tsa.set_mode("good")
    # Good again: the newest checkpoint is stamped at the next round.
    eventually(lambda: timestamps(c)[1]["size"] >= size, timeout=15)
    assert timestamps(c)[1]["size"] >= size


def test_garbage(c):
    refused_case(c, "garbage", "not a DER TimeStampResp")


def test_wrong_imprint(c):
    refused_case(c, "imprint", "message imprint mismatch")


def test_wrong_nonce(c):
    refused_case(c, "nonce", "nonce mismatch")


def test_untrusted_certificate(c):
    refused_case(c, "untrusted", "certificate verify error")


def test_rejection_status(c):
    refused_case(c, "rejected", "the TSA answered status rejection (2)")


def test_http_error(c):
    refused_case(c, "http500", "the TSA answered HTTP 500")


def test_timeout_never_blocks_appends(c):
    stamped(c)
    time.sleep(2 * INTERVAL)
    c.tsa.set_mode("hang")
    since = log_size(c.srv)
    grow(c)
    assert eventually(lambda: c.tsa.in_flight > 0, timeout=10)
    # While demsd waits on the hanging TSA, ledgered requests go on as usual.
    took = [grow(c) for _ in range(5)]
    took += [upload(c, os.urandom(100000) + bytes([i])) for i in range(3)]
    assert c.tsa.in_flight > 0  # still hanging
    assert max(took) < 1.0, took
    assert eventually(lambda: len(log_events(c.srv, "timestamp_refused", since)) >= 2,
                      timeout=4 * (TIMEOUT + INTERVAL) + 5)
    for d in log_events(c.srv, "timestamp_refused", since):
        assert f"no answer within tsa_timeout ({TIMEOUT} s)" in d["reason"], d
    size = covered(c)
    c.tsa.set_mode("good")
    assert eventually(lambda: timestamps(c)[1]["size"] >= size, timeout=15)


def test_api_errors(c):
    st, doc = timestamps(c, "abc")
    assert st == 400 and doc["code"] == "invalid_parameter", doc
    st, doc = timestamps(c, 10 ** 9)
    assert st == 404 and doc["code"] == "checkpoint_not_found", doc


def test_stored_tokens_cannot_change(c):
    stamped(c)
    rc, _, err = c.srv.psql("UPDATE ledger_timestamps SET tsa = 'x'", user="dems_app")
    assert rc != 0 and "permission denied" in err, err
    rc, _, err = c.srv.psql("DELETE FROM ledger_timestamps", user="dems_app")
    assert rc != 0 and "permission denied" in err, err
    rc, _, err = c.srv.psql("DELETE FROM ledger_timestamps")
    assert rc != 0 and "append-only" in err, err


def test_configuration_errors(c):
    d = make_data_root()
    for settings, msg in (({"tsa_urls": "http://127.0.0.1:1/"}, "tsa_ca_file: required"),
                          ({"tsa_urls": "ftp://tsa.example", "tsa_ca_file": "/dev/null"},
                           "tsa_urls"),
                          ({"tsa_urls": "http://127.0.0.1:1/",
                            "tsa_ca_file": os.path.join(c.pki, "tsa.cnf")}, "tsa_ca_file")):
        args = [DEMSD, "serve", "--data", os.path.join(d, "data"), "--listen", f"127.0.0.1:{free_port()}"]
        for k, v in settings.items():
            args += ["--set", f"{k}={v}"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and msg in r.stderr, (settings, r.returncode, r.stderr)


def test_two_tsas(c):
    """Each TSA is asked in turn and each token is stored with its own entry;
    a TSA added later is asked at once for the newest checkpoint."""
    second = c.tsa.url.replace("/tsa", "/second")
    assert c.srv.stop() == 0
    c.srv.settings["tsa_urls"] = f"{c.tsa.url}, {second}"
    c.srv.start()
    c.admin = c.srv.admin_token()
    assert eventually(lambda: any(t["tsa"] == second for t in timestamps(c)[1]["timestamps"]),
                      timeout=15), timestamps(c)
    time.sleep(2 * INTERVAL)
    grow(c)
    size = covered(c)

    # Each TSA stamps a checkpoint that holds the new entry (the same one,
    # unless a TSA was slow and the next round stamped the next checkpoint).
    def both():
        rc, out, err = c.srv.psql("SELECT tsa || ' ' || size || ' ' || seq FROM ledger_timestamps"
                                  f" WHERE size >= {size}")
        assert rc == 0, err
        rows = [line.split() for line in out.splitlines()]
        return rows if sorted({r[0] for r in rows}) == sorted([c.tsa.url, second]) else None
    rows = eventually(both, timeout=20)
    assert rows, c.srv.psql("SELECT tsa, size FROM ledger_timestamps")
    entries = {e["seq"]: e["body"] for e in ledger_entries(c.srv, c.admin)}
    for tsa, stamped_size, seq in rows:
        st, doc = timestamps(c, int(stamped_size))
        [t] = [t for t in doc["timestamps"] if t["tsa"] == tsa]
        b = entries[int(seq)]
        assert b["type"] == "TIMESTAMPED" and b["payload"]["tsa"] == tsa, b
        assert b["payload"]["checkpoint_size"] == int(stamped_size)
        assert b["sha256"] == t["token_sha256"] and t["seq"] == int(seq)
    # Their entries are not growth: nothing more is asked.
    time.sleep(2 * INTERVAL)
    before = c.tsa.count()
    time.sleep(3 * INTERVAL)
    assert c.tsa.count() == before


def test_stop_while_a_tsa_hangs(c):
    """A request in flight is cut when demsd stops, not waited for."""
    assert c.srv.stop() == 0
    c.srv.settings.update(tsa_urls=c.tsa.url, tsa_timeout=60)
    c.tsa.hang_seconds = 60
    c.tsa.set_mode("hang")
    c.srv.start()
    c.admin = c.srv.admin_token()
    c.grown = 0
    grow(c)
    assert eventually(lambda: c.tsa.in_flight > 0, timeout=10)
    t0 = time.time()
    assert c.srv.stop() == 0
    assert time.time() - t0 < 15, time.time() - t0
    c.tsa.set_mode("good")
    c.srv.start()  # for teardown


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
