# SPDX-License-Identifier: Apache-2.0
"""Resumable uploads (tus 1.0.0) against a real demsd: protocol headers and
statuses, metadata validation, chunk checksums, declared whole-file hashes,
termination, expiry, resuming after a dropped connection and after kill -9,
a streamed large upload with bounded memory, and a real tus client
(tus-js-client under node) that is cut off mid-way and resumes."""
import base64
import hashlib
import json
import os
import signal
import subprocess
import time

from harness import Server, raw_tls, read_response, run_tests

HERE = os.path.dirname(os.path.abspath(__file__))
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def meta(**kw):
    return ",".join(f"{k} {b64(v)}" for k, v in kw.items())


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server({"housekeeping_interval": 1}).start()
    c.tok = c.srv.admin_token()
    st, _, _ = c.srv.request("POST", "/v1/admin/users",
                             {"username": "pros", "password": "prosecutor1", "role": "prosecutor"},
                             token=c.tok)
    st, _, _ = c.srv.request("POST", "/v1/admin/users",
                             {"username": "off2", "password": "officer22", "role": "officer"},
                             token=c.tok)
    c.pros = c.srv.login("pros", "prosecutor1")[1]["token"]
    c.off2 = c.srv.login("off2", "officer22")[1]["token"]
    return c


def teardown(c):
    assert c.srv.stop() == 0


def create(c, length, token=None, metadata=None, headers=None, body=None):
    h = dict(TUS, **{"Upload-Length": str(length)})
    if metadata is not None:
        h["Upload-Metadata"] = metadata
    h.update(headers or {})
    if body is not None:
        h["Content-Type"] = "application/offset+octet-stream"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=body, token=token or c.tok, headers=h)
    return st, doc, r


def patch(c, url, offset, data, token=None, headers=None, conn=None):
    h = dict(OCTETS, **{"Upload-Offset": str(offset)})
    h.update(headers or {})
    return c.srv.request("PATCH", url, body=data, token=token or c.tok, headers=h, conn=conn)


def state(c, url, token=None):
    return c.srv.request("GET", url, token=token or c.tok)


def test_options_advertises_tus(c):
    st, _, r = c.srv.request("OPTIONS", "/v1/uploads")
    assert st == 204
    assert r.getheader("Tus-Version") == "1.0.0" and r.getheader("Tus-Resumable") == "1.0.0"
    ext = r.getheader("Tus-Extension").split(",")
    for e in ("creation", "creation-with-upload", "termination", "checksum", "expiration"):
        assert e in ext
    assert int(r.getheader("Tus-Max-Size")) > 0
    assert r.getheader("Tus-Checksum-Algorithm") == "sha256"


def test_upload_in_chunks_with_resume_and_hash(c):
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    st, _, r = create(c, len(data), metadata=meta(filename="cam1.mp4", filetype="video/mp4",
                                                   officer_id="PC123", device_serial="BWV-9",
                                                   recording_start="2026-11-24T08:00:00Z",
                                                   recording_end="2026-11-24T09:30:00.5+01:00"))
    assert st == 201, r.getheader("Content-Length")
    url = r.getheader("Location")
    assert url.startswith("/v1/uploads/") and r.getheader("Upload-Expires")
    st, _, r = patch(c, url, 0, data[:100_000])
    assert st == 204 and r.getheader("Upload-Offset") == "100000"
    # A wrong offset is refused and tells the right one.
    st, doc, r = patch(c, url, 50_000, data[50_000:60_000])
    assert st == 409 and doc["code"] == "offset_mismatch"
    st, _, r = c.srv.request("HEAD", url, token=c.tok, headers=TUS)
    assert st == 200 and r.getheader("Upload-Offset") == "100000"
    assert r.getheader("Upload-Length") == str(len(data))
    st, _, r = patch(c, url, 100_000, data[100_000:])
    assert st == 204 and r.getheader("Upload-Offset") == str(len(data))
    assert r.getheader("Upload-Sha256") == digest
    st, doc, _ = state(c, url)
    assert st == 200 and doc["state"] == "complete" and doc["sha256"] == digest
    assert doc["metadata"]["filename"] == "cam1.mp4"
    assert doc["metadata"]["content_type"] == "video/mp4"
    # Finished: no more bytes accepted.
    st, doc, _ = patch(c, url, len(data), b"x")
    assert st == 409 and doc["code"] == "upload_finished"


def test_creation_with_upload_and_empty_file(c):
    data = b"all in one request"
    st, _, r = create(c, len(data), body=data)
    assert st == 201 and r.getheader("Upload-Offset") == str(len(data))
    assert r.getheader("Upload-Sha256") == hashlib.sha256(data).hexdigest()
    st, _, r = create(c, 0)
    assert st == 201
    st, doc, _ = state(c, r.getheader("Location"))
    assert doc["state"] == "complete" and doc["sha256"] == hashlib.sha256(b"").hexdigest()


def test_protocol_errors(c):
    st, doc, r = c.srv.request("POST", "/v1/uploads", token=c.tok, headers={"Upload-Length": "5"})
    assert st == 412 and r.getheader("Tus-Version") == "1.0.0"
    st, doc, _ = c.srv.request("POST", "/v1/uploads", token=c.tok, headers=TUS)
    assert st == 400 and doc["code"] == "missing_header"
    st, doc, _ = create(c, 1 << 50)
    assert st == 413
    st, doc, _ = create(c, "-5")
    assert st == 400
    st, _, r = create(c, 10)
    url = r.getheader("Location")
    st, doc, _ = c.srv.request("PATCH", url, body=b"12345", token=c.tok,
                               headers=dict(TUS, **{"Upload-Offset": "0",
                                                    "Content-Type": "application/json"}))
    assert st == 415
    st, doc, _ = patch(c, url, 0, b"x" * 11)
    assert st == 413
    st, doc, _ = c.srv.request("PATCH", url, body=b"1", token=c.tok,
                               headers={"Content-Type": "application/offset+octet-stream",
                                        "Upload-Offset": "0"})
    assert st == 412
    st, doc, _ = patch(c, "/v1/uploads/" + "0" * 32, 0, b"x")
    assert st == 404
    st, doc, _ = patch(c, "/v1/uploads/nothex", 0, b"x")
    assert st == 404


def test_number_headers_must_be_digits(c):
    # Upload-Length and Upload-Offset are 1*DIGIT up to 2^63-1: anything else
    # is a malformed header (400), not an oversized upload (413).
    bad = ["1e3", "0x10", "10abc", "", "-1", "+10", " 1 0", "9223372036854775808",
           "99999999999999999999999"]
    for v in bad:
        st, doc, _ = create(c, v)
        assert st == 400 and doc["code"] == "invalid_header", (v, st, doc)
    st, doc, _ = create(c, 1 << 50)  # well-formed, over Tus-Max-Size
    assert st == 413 and doc["code"] == "too_large", doc
    st, _, r = create(c, 10)
    url = r.getheader("Location")
    for v in bad:
        st, doc, _ = c.srv.request("PATCH", url, body=b"x", token=c.tok,
                                   headers=dict(OCTETS, **{"Upload-Offset": v}))
        assert st == 400 and doc["code"] == "invalid_header", (v, st, doc)
    assert patch(c, url, 0, b"x")[0] == 204


def test_metadata_validation_names_the_field(c):
    cases = [
        ("filename !!!notbase64", "filename"),
        (meta(colour="red"), "colour"),
        (meta(recording_start="2026-11-24T10:00:00Z", recording_end="2026-11-24T09:00:00Z"),
         "recording_end"),
        (meta(recording_start="1970-01-01T00:00:00Z"), "recording_start"),
        (meta(recording_start="2026-02-31T00:00:00Z"), "recording_start"),
        (meta(recording_end="yesterday"), "recording_end"),
        (meta(filename="a/b"), "filename"),
        (meta(filetype="not a type"), "filetype"),
        (meta(officer_id="x" * 65), "officer_id"),
        (meta(sha256="abc"), "sha256"),
        (meta(description="x" * 2001), "description"),
        (meta(description="line one\x07bell"), "description"),
        (meta(description="pay\u202etxt.exe"), "description"),
    ]
    for m, field in cases:
        st, doc, _ = create(c, 5, metadata=m)
        assert st == 400 and doc["code"] == "invalid_metadata", (m, doc)
        assert field in doc["detail"], (field, doc)


def test_filename_must_be_utf8_without_controls_or_bidi(c):
    bad = [b"caf\xe9.mp4",                   # Latin-1, not UTF-8
           b"\xc0\xaf.mp4",                  # overlong
           b"invoice\xe2\x80\xaegpj.exe",    # U+202E RIGHT-TO-LEFT OVERRIDE
           b"a\xe2\x81\xa6b.mp4",            # U+2066 LEFT-TO-RIGHT ISOLATE
           b"a\xc2\x85b.mp4",                 # U+0085 (C1 control)
           b"a\x1bb.mp4"]                      # C0 control
    for raw in bad:
        st, doc, _ = create(c, 5, metadata="filename " + b64(raw))
        assert st == 400 and doc["code"] == "invalid_metadata", (raw, st, doc)
        assert "filename" in doc["detail"], doc
    st, _, r = create(c, 5, metadata=meta(filename="caf\u00e9 \u8b66\u5bdf.mp4"))
    assert st == 201
    st, doc, _ = state(c, r.getheader("Location"))
    assert doc["metadata"]["filename"] == "caf\u00e9 \u8b66\u5bdf.mp4", doc
    # A description: free text, kept as given.
    text = "Front door, 2nd camera \u2014 \u201cfar\u201d view; see note 3."
    st, _, r = create(c, 5, metadata=meta(description=text))
    assert st == 201
    st, doc, _ = state(c, r.getheader("Location"))
    assert doc["metadata"]["description"] == text, doc


def test_chunk_checksum(c):
    data = b"0123456789" * 100
    st, _, r = create(c, len(data))
    url = r.getheader("Location")
    good = "sha256 " + base64.b64encode(hashlib.sha256(data[:500]).digest()).decode()
    bad = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    st, doc, r = patch(c, url, 0, data[:500], headers={"Upload-Checksum": bad})
    assert st == 460 and doc["code"] == "checksum_mismatch"
    assert state(c, url)[1]["offset"] == 0  # the chunk was discarded
    st, _, r = patch(c, url, 0, data[:500], headers={"Upload-Checksum": good})
    assert st == 204 and r.getheader("Upload-Offset") == "500"
    st, doc, _ = patch(c, url, 500, data[500:], headers={"Upload-Checksum": "md5 AAAA"})
    assert st == 400 and doc["code"] == "checksum_algorithm_unsupported"
    st, _, r = patch(c, url, 500, data[500:])
    assert st == 204
    assert state(c, url)[1]["sha256"] == hashlib.sha256(data).hexdigest()


def test_checksummed_chunks_over_many_batches(c):
    # Chunks of several MiB go through the pipeline (whole 64 KiB chunks
    # hashed, encrypted and written on the work pool while the loop reads
    # on, docs/architecture.md "Intake on two cores"), sent in odd-sized
    # writes so the body ends mid-chunk and mid-batch. A chunk whose
    # Upload-Checksum fails after several batches were written is cut back
    # off the file; the same bytes sent again, then the rest, give the
    # SHA-256 of the whole.
    data = os.urandom((5 << 20) + 12345) + os.urandom((3 << 20) + 777)
    first = (5 << 20) + 12345
    st, _, r = create(c, len(data))
    url = r.getheader("Location")

    def send(offset, part, checksum):
        t = raw_tls(c.srv, timeout=60)
        t.sendall((f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {c.tok}\r\n"
                   f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                   f"Upload-Offset: {offset}\r\nContent-Length: {len(part)}\r\n"
                   f"Upload-Checksum: sha256 {checksum}\r\n\r\n").encode())
        at, step = 0, 1
        while at < len(part):
            n = min(len(part) - at, 1000 + (step * 7919) % 300000)
            t.sendall(part[at:at + n])
            at += n
            step += 1
        status, head, body, _ = read_response(t)
        t.close()
        return status, head, body

    def b64sha(b):
        return base64.b64encode(hashlib.sha256(b).digest()).decode()

    st, head, body = send(0, data[:first], b64sha(b"not these bytes"))
    assert st == 460 and b"checksum_mismatch" in body, (st, head, body)
    assert state(c, url)[1]["offset"] == 0  # several batches' worth cut back off
    st, head, _ = send(0, data[:first], b64sha(data[:first]))
    assert st == 204 and f"upload-offset: {first}" in head.lower(), (st, head)
    st, head, _ = send(first, data[first:], b64sha(data[first:]))
    assert st == 204, (st, head)
    assert hashlib.sha256(data).hexdigest() in head
    doc = state(c, url)[1]
    assert doc["sha256"] == hashlib.sha256(data).hexdigest() and doc["offset"] == len(data), doc


def test_declared_hash_mismatch_rejects(c):
    data = b"the real bytes"
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    st, _, r = create(c, len(data), metadata=meta(sha256=wrong))
    url = r.getheader("Location")
    st, doc, _ = patch(c, url, 0, data)
    assert st == 422 and doc["code"] == "sha256_mismatch"
    st, doc, _ = state(c, url)
    assert doc["state"] == "rejected" and "declared" in doc["reason"]
    right = hashlib.sha256(data).hexdigest()
    st, _, r = create(c, len(data), metadata=meta(sha256=right.upper()))
    st, _, r2 = patch(c, r.getheader("Location"), 0, data)
    assert st == 204 and r2.getheader("Upload-Sha256") == right


def test_termination(c):
    st, _, r = create(c, 100)
    url = r.getheader("Location")
    patch(c, url, 0, b"x" * 10)
    uid = url.rsplit("/", 1)[1]
    staged = os.path.join(c.srv.data, "staging", uid)
    assert os.path.exists(staged)
    st, _, r = c.srv.request("DELETE", url, token=c.tok, headers=TUS)
    assert st == 204
    assert not os.path.exists(staged)
    assert state(c, url)[0] == 404
    assert patch(c, url, 10, b"y")[0] == 404
    assert c.srv.request("DELETE", url, token=c.tok, headers=TUS)[0] == 404


def test_expiry(c):
    st, _, r = create(c, 100)
    url = r.getheader("Location")
    uid = url.rsplit("/", 1)[1]
    rc, _, err = c.srv.psql(f"UPDATE uploads SET expires_at = now() - interval '1 second' "
                            f"WHERE id = '{uid}'")
    assert rc == 0, err
    assert patch(c, url, 0, b"x")[0] == 410
    staged = os.path.join(c.srv.data, "staging", uid)
    deadline = time.time() + 10
    while os.path.exists(staged) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(staged), "expired upload's bytes were not cleaned up"
    st, doc, _ = state(c, url)
    assert st == 410


def test_method_override(c):
    st, _, r = create(c, 4)
    url = r.getheader("Location")
    st, _, r = c.srv.request("POST", url, body=b"abcd", token=c.tok,
                             headers=dict(OCTETS, **{"Upload-Offset": "0",
                                                     "X-HTTP-Method-Override": "PATCH"}))
    assert st == 204 and r.getheader("Upload-Offset") == "4"


def test_roles_and_ownership(c):
    assert create(c, 5, token=c.pros)[0] == 403
    st, _, r = create(c, 5, token=c.off2)
    url = r.getheader("Location")
    # Another officer cannot see or write it; an admin can see it.
    assert state(c, url, token=c.pros)[0] == 403
    st, _, _ = create(c, 5)
    other = c.srv.login("off2", "officer22")[1]["token"]
    st, _, r2 = create(c, 5)  # the admin's own upload
    assert state(c, r2.getheader("Location"), token=other)[0] == 404
    assert patch(c, r2.getheader("Location"), 0, b"x", token=other)[0] == 404
    assert state(c, url)[0] == 200
    assert c.srv.request("POST", "/v1/uploads", token=None, headers=TUS)[0] == 401


def test_dropped_connection_keeps_bytes_then_resumes(c):
    data = os.urandom(2_000_000)
    st, _, r = create(c, len(data))
    url = r.getheader("Location")
    t = raw_tls(c.srv)
    head = (f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {c.tok}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    t.sendall(head + data[:700_000])
    time.sleep(0.5)
    t.close()  # the cable is pulled
    time.sleep(0.5)
    st, doc, _ = state(c, url)
    got = doc["offset"]
    assert 0 < got <= 700_000, got
    st, _, r = patch(c, url, got, data[got:])
    assert st == 204 and r.getheader("Upload-Sha256") == hashlib.sha256(data).hexdigest()


def test_large_upload_streams_with_bounded_memory(c):
    size = 64 << 20
    chunk = os.urandom(1 << 20)
    st, _, r = create(c, size)
    url = r.getheader("Location")
    t = raw_tls(c.srv, timeout=60)
    t.sendall((f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {c.tok}\r\n"
               f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
               f"Upload-Offset: 0\r\nContent-Length: {size}\r\n\r\n").encode())
    h = hashlib.sha256()

    def rss():
        return int([ln for ln in open(f"/proc/{c.srv.proc.pid}/status")
                    if ln.startswith("VmRSS")][0].split()[1])

    base = rss()
    peak = 0
    for i in range(64):
        t.sendall(chunk)
        h.update(chunk)
        if i % 8 == 0:
            peak = max(peak, rss())
    status, head, body, _ = read_response(t)
    t.close()
    assert status == 204, (status, head)
    assert h.hexdigest() in head
    # 64 MiB went through; the server's resident memory grew far less. (Under
    # AddressSanitizer freed buffers sit in its quarantine, capped at 16 MiB by
    # tests/run, so allow for that there.)
    asan = "libasan" in open(f"/proc/{c.srv.proc.pid}/maps").read()
    limit = (48 if asan else 24) * 1024
    assert peak - base < limit, f"RSS grew by {peak - base} KiB"


def test_kill_9_mid_upload_then_resume(c):
    data = os.urandom(1_000_000)
    st, _, r = create(c, len(data))
    url = r.getheader("Location")
    assert patch(c, url, 0, data[:400_000])[0] == 204
    pw = c.srv.admin_password
    c.srv.proc.kill()
    c.srv.proc.wait()
    time.sleep(0.5)
    srv2 = Server({"housekeeping_interval": 1}, data=c.srv.root).start()
    srv2.admin_password = pw
    c.srv = srv2
    c.tok = srv2.admin_token()
    # Staging holds encrypted 64 KiB chunks, written in page-aligned batches:
    # what the killed process still held in memory (the unsealed tail and at
    # most four buffered chunks) is gone, so the offset steps back to a chunk
    # boundary (tus lets the server keep less; clients HEAD and resend).
    uid = url.rsplit("/", 1)[1]
    staged = os.path.join(c.srv.data, "staging", uid)
    raw = open(staged, "rb").read()
    assert data[1000:1064] not in raw and data[300_000:300_064] not in raw  # no plaintext
    # A torn write at the end (the process died mid-chunk) is cut off on reload.
    with open(staged, "ab") as f:
        f.write(os.urandom(5000))
    st, doc, _ = state(c, url)
    kept = doc["offset"]
    assert kept % 65536 == 0 and 400_000 - 5 * 65536 <= kept < 400_000, doc
    st, _, r = c.srv.request("HEAD", url, token=c.tok, headers=TUS)
    assert st == 200 and r.getheader("Upload-Offset") == str(kept)
    assert patch(c, url, 400_000, data[400_000:])[0] == 409
    st, _, r = patch(c, url, kept, data[kept:])
    assert st == 204 and r.getheader("Upload-Sha256") == hashlib.sha256(data).hexdigest()
    ev = r.getheader("Evidence-Id")
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{ev}/content", token=c.tok)
    assert st == 200 and body == data


def test_tus_js_client_cut_off_and_resumed(c):
    data = os.urandom(3_000_000)
    path = os.path.join(c.srv.root, "clip.bin")
    with open(path, "wb") as f:
        f.write(data)
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=os.path.join(c.srv.data, "tls", "cert.pem"))
    r = subprocess.run(["node", os.path.join(HERE, "..", "node", "tus_upload.mjs"),
                        f"https://127.0.0.1:{c.srv.port}/v1/uploads", c.tok, path, "0.4"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0 < out["resumed_from"] < len(data), out
    url = out["url"][out["url"].index("/v1/uploads/"):]
    st, doc, _ = state(c, url)
    assert doc["state"] == "complete" and doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["metadata"]["filename"] == "clip.bin"


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
