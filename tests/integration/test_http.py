# SPDX-License-Identifier: Apache-2.0
"""HTTP and TLS behaviour of a real demsd: TLS versions, keep-alive and
pipelining, the error statuses (400, 404, 405, 411/413, 415, 431, 501), the
JSON error shape, request ids and security headers, and slow clients."""
import json
import re
import socket
import ssl
import threading
import time

from harness import Server, raw_tls, read_response, run_tests


def setup():
    return Server({"header_timeout": 2, "body_timeout": 2, "idle_timeout": 5}).start()


def teardown(srv):
    code = srv.stop()
    assert code == 0, f"demsd exit status {code}"


def error_code(doc):
    """The stable code of an RFC 9457 problem details body, checking its shape."""
    assert set(doc.keys()) == {"type", "title", "status", "detail", "code"}, doc
    assert doc["type"] == "urn:dems:problem:" + doc["code"], doc
    assert isinstance(doc["title"], str) and doc["title"], doc
    assert isinstance(doc["status"], int), doc
    assert isinstance(doc["detail"], str) and doc["detail"]
    return doc["code"]


def test_healthz_and_headers(srv):
    st, doc, r = srv.request("GET", "/healthz")
    assert st == 200 and doc == {"status": "ok"}
    assert len(r.getheader("X-Request-Id")) == 16
    assert r.getheader("Strict-Transport-Security").startswith("max-age=")
    assert r.getheader("Content-Type") == "application/json"


def test_readyz(srv):
    st, doc, _ = srv.request("GET", "/readyz")
    assert st == 200 and doc["status"] == "ready" and doc["migrations"] >= 1, doc


def test_tls12_and_tls13_accepted(srv):
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = srv.context(minimum_version=v, maximum_version=v)
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                assert t.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                       ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v]
    # With no limits the client and server settle on 1.3.
    with raw_tls(srv) as t:
        assert t.version() == "TLSv1.3"


def test_tls11_refused(srv):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        try:
            ctx.wrap_socket(s, server_hostname="127.0.0.1")
        except ssl.SSLError as e:
            # The server's alert, not a local refusal to try.
            assert "PROTOCOL_VERSION" in str(e).upper() or "VERSION" in e.reason.upper(), e
        else:
            raise AssertionError("a TLS 1.1 handshake succeeded")


def test_keepalive_reuses_connection(srv):
    c = srv.conn()
    ids = set()
    for _ in range(5):
        st, _, r = srv.request("GET", "/healthz", conn=c)
        assert st == 200 and r.getheader("Connection") == "keep-alive"
        ids.add(r.getheader("X-Request-Id"))
    sock = c.sock
    srv.request("GET", "/healthz", conn=c)
    assert c.sock is sock, "connection was not kept alive"
    assert len(ids) == 5
    c.close()


def test_pipelined_requests(srv):
    with raw_tls(srv) as t:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        rest = b""
        for _ in range(3):
            buf = rest
            while buf.count(b"\r\n\r\n") < 1 or b'{"status":"ok"}' not in buf:
                buf += t.recv(65536)
            idx = buf.index(b'{"status":"ok"}') + len(b'{"status":"ok"}')
            assert buf.startswith(b"HTTP/1.1 200"), buf[:40]
            rest = buf[idx:]


def test_errors_are_problem_details(srv):
    st, doc, r = srv.request("GET", "/nope")
    assert st == 404 and error_code(doc) == "not_found" and doc["status"] == 404
    assert doc["title"] == "Not Found"
    assert r.getheader("Content-Type") == "application/problem+json"
    assert r.getheader("WWW-Authenticate") is None
    # 401 says how to authenticate; with a rejected token, why (RFC 6750).
    st, doc, r = srv.request("GET", "/v1/me")
    assert st == 401 and error_code(doc) == "unauthorized" and doc["status"] == 401
    assert r.getheader("WWW-Authenticate") == 'Bearer realm="dems"', r.getheaders()
    st, doc, r = srv.request("GET", "/v1/me", token="not-a-token")
    assert st == 401 and error_code(doc) == "unauthorized"
    assert r.getheader("WWW-Authenticate") == 'Bearer realm="dems", error="invalid_token"'


def test_404_and_405_and_501(srv):
    st, doc, r = srv.request("GET", "/nope")
    assert st == 404 and error_code(doc) == "not_found"
    st, doc, r = srv.request("PUT", "/healthz")
    assert st == 405 and error_code(doc) == "method_not_allowed"
    assert "GET" in r.getheader("Allow")
    with raw_tls(srv) as t:
        t.sendall(b"PROPFIND /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, head, body, _ = read_response(t)
        assert status == 501 and error_code(json.loads(body)) == "not_implemented"
    with raw_tls(srv) as t:
        t.sendall(b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, head, body, _ = read_response(t)
        assert status in (400, 501), status


def test_malformed_request_400(srv):
    for bad in (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
                b"GET healthz HTTP/1.1\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"\x16\x03\x01garbage\r\n\r\n"):
        with raw_tls(srv) as t:
            t.sendall(bad)
            status, head, body, _ = read_response(t)
            assert status == 400, (bad, status, head)
            assert error_code(json.loads(body)) in ("bad_request", "invalid_request")
            assert "Connection: close" in head


def test_header_too_large_431(srv):
    with raw_tls(srv) as t:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        status, head, body, _ = read_response(t)
        assert status == 431 and error_code(json.loads(body)) == "header_too_large"
    with raw_tls(srv) as t:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        t.sendall(b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n")
        status, _, _, _ = read_response(t)
        assert status == 431


def test_body_too_large_413(srv):
    # Declared too large: refused before the body is read.
    with raw_tls(srv) as t:
        t.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000000\r\n\r\n")
        status, head, body, _ = read_response(t)
        assert status == 413 and error_code(json.loads(body)) == "too_large"
    # Chunked and too large: refused once the limit is passed.
    with raw_tls(srv) as t:
        t.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(10):
            try:
                t.sendall(b"1000\r\n" + b"a" * 4096 + b"\r\n")
            except OSError:
                break
        status, head, body, _ = read_response(t)
        assert status == 413, (status, head)
    # A body where none is taken.
    with raw_tls(srv) as t:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        status, _, _, _ = read_response(t)
        assert status == 413


def test_json_body_checks(srv):
    st, doc, _ = srv.request("POST", "/v1/auth/login", body=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert st == 400 and error_code(doc) == "invalid_json"
    st, doc, _ = srv.request("POST", "/v1/auth/login", body=b"[1,2]",
                             headers={"Content-Type": "application/json"})
    assert st == 400 and error_code(doc) == "invalid_json"
    st, doc, _ = srv.request("POST", "/v1/auth/login", body=b'{"username":"a"}',
                             headers={"Content-Type": "text/plain"})
    assert st == 415 and error_code(doc) == "unsupported_media_type"
    st, doc, _ = srv.request("POST", "/v1/auth/login", body={"username": 5, "password": "x"})
    assert st == 400 and error_code(doc) == "invalid_field" and "username" in doc["detail"]


def test_slow_client_cut_off_while_others_served(srv):
    """A slowloris client trickling a head is closed after header_timeout (2 s);
    meanwhile other clients get answers at once."""
    t = raw_tls(srv, timeout=15)
    t.sendall(b"GET /healthz HTTP/1.1\r\n")
    closed = threading.Event()

    def trickle():
        try:
            for i in range(20):
                t.sendall(b"X-Slow-%d: y\r\n" % i)
                time.sleep(0.5)
        except OSError:
            closed.set()
            return
        try:
            if t.recv(1) == b"":
                closed.set()
        except OSError:
            closed.set()

    th = threading.Thread(target=trickle)
    start = time.time()
    th.start()
    for _ in range(10):
        st, _, _ = srv.request("GET", "/healthz")
        assert st == 200
    th.join(15)
    elapsed = time.time() - start
    assert closed.is_set(), "slow client was not cut off"
    assert elapsed < 8, f"cut off only after {elapsed:.1f}s"
    t.close()


def test_idle_connection_closed(srv):
    with raw_tls(srv, timeout=15) as t:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _, _ = read_response(t)
        assert status == 200
        start = time.time()
        assert t.recv(1) == b"", "idle connection got data"
        assert 3 < time.time() - start < 12


def test_stalled_body_cut_off(srv):
    with raw_tls(srv, timeout=15) as t:
        t.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50\r\n\r\n{\"user")
        start = time.time()
        try:
            data = t.recv(100)
        except OSError:
            data = b""
        assert data == b"" and time.time() - start < 8


def test_query_strings_are_decoded(srv):
    """Query strings are decoded once, for every route (form-urlencoded rules:
    %XX and '+' as a space), strictly: bad escapes, NUL bytes and repeated
    names are refused with 400 invalid_parameter before any handler runs."""
    tok = srv.admin_token()

    def get(q):
        return srv.request("GET", q, token=tok)

    st, doc, _ = get("/v1/evidence?before=2026-01-01T00%3A00%3A00Z")
    assert st == 200, (st, doc)
    st, doc, _ = get("/v1/evidence?before=2026-01-01T01%3A00%3A00%2B01%3A00")
    assert st == 200, (st, doc)
    # An unescaped '+' is a space, so this time is not RFC 3339 any more.
    st, doc, _ = get("/v1/evidence?before=2026-01-01T01:00:00+01:00")
    assert st == 400 and error_code(doc) == "invalid_parameter" and '"before"' in doc["detail"]
    # Names and values are both decoded; '+' decodes to a space in a value.
    st, doc, _ = get("/v1/admin/jobs?st%61te=dea%64&kind=verify%2Dblob")
    assert st == 200, (st, doc)
    st, doc, _ = get("/v1/admin/jobs?kind=verify+blob")
    assert st == 400 and '"kind"' in doc["detail"], doc
    for q, why in (("state=%zz", '"state" is malformed'), ("state=dead%", '"state" is malformed'),
                   ("state=dea%6", '"state" is malformed'), ("state=dead%00", '"state" is malformed'),
                   ("limit=1&limit=2", '"limit" is repeated'),
                   ("limit=1&%6cimit=2", '"limit" is repeated')):
        st, doc, _ = get("/v1/admin/jobs?" + q)
        assert st == 400 and error_code(doc) == "invalid_parameter", (q, st, doc)
        assert why in doc["detail"], (q, doc)
    # Refused for every route, before authentication or the handler.
    st, doc, _ = srv.request("GET", "/healthz?x=%zz")
    assert st == 400 and error_code(doc) == "invalid_parameter", (st, doc)
    st, doc, _ = srv.request("GET", "/healthz?x=%41&y=+")
    assert st == 200


def raw_exchange(srv, data, wait_close=False):
    """Sends hand-written bytes; returns (status, head, body, rest, closed).
    closed (the server closed without sending more) is only waited for when
    asked: a refused request's connection lingers about 2 s first."""
    with raw_tls(srv) as t:
        t.sendall(data)
        status, head, body, rest = read_response(t)
        closed = None
        if wait_close:
            try:
                closed = rest == b"" and t.recv(65536) == b""
            except OSError:
                closed = True
        return status, head, body, rest, closed


def test_chunk_data_without_crlf_refused(srv):
    """Chunk data must be followed by CRLF; http-parser as built by Debian
    accepted any two bytes there (a request-smuggling lever). The request is
    refused before it runs, and what follows it is not read as a request."""
    login = b'{"username":"nobody","password":"wrong"}'
    head = (b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    nxt = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    # Well framed: the login runs (and fails), then the pipelined request.
    good = head + b"%x\r\n" % len(login) + login + b"\r\n0\r\n\r\n" + nxt
    status, _, body, rest, _ = raw_exchange(srv, good)
    assert status == 401, (status, body)
    for bad in (b"XY", b"\r\r", b"\rX", b"\n\r"):
        req = head + b"%x\r\n" % len(login) + login + bad + b"0\r\n\r\n" + nxt
        status, rh, body, rest, closed = raw_exchange(srv, req, wait_close=bad == b"XY")
        assert status == 400, (bad, status, body)
        doc = json.loads(body)
        assert error_code(doc) == "bad_request" and "CRLF" in doc["detail"], doc
        assert "Connection: close" in rh and closed in (True, None) and b"HTTP/1.1" not in rest
    # A CR that is not followed by LF ends no chunk-size line either.
    req = head + b"%x\rX" % len(login) + login + b"\r\n0\r\n\r\n"
    status, rh, body, _, _ = raw_exchange(srv, req)
    assert status == 400 and "Connection: close" in rh, (status, body)


def test_unknown_transfer_coding_501(srv):
    base = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    body = b"2\r\n{}\r\n0\r\n\r\n"
    for te, want in ((b"gzip, chunked", 501), (b"deflate,chunked", 501),
                     (b"chunked, chunked", 400), (b"gzip", 400)):
        status, rh, rb, _, closed = raw_exchange(
            srv, base + b"Transfer-Encoding: " + te + b"\r\n\r\n" + body)
        assert status == want, (te, status, rb)
        assert "Connection: close" in rh
        if want == 501:
            assert error_code(json.loads(rb)) == "not_implemented"
    status, _, rb, _, _ = raw_exchange(
        srv, base.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status == 400, (status, rb)


def test_repeated_authorization_and_host_refused(srv):
    tok = srv.admin_token()
    one = b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok.encode() + b"\r\n"
    status, _, body, _, _ = raw_exchange(srv, one + b"\r\n")
    assert status == 200, (status, body)
    # Before: the first Authorization won and this answered 200.
    for extra in (b"Authorization: Bearer junk\r\n", b"authorization: Bearer " + tok.encode() + b"\r\n",
                  b"Host: y\r\n"):
        status, rh, body, _, closed = raw_exchange(srv, one + extra + b"\r\n")
        doc = json.loads(body)
        assert status == 400 and error_code(doc) == "bad_request", (extra, status, body)
        assert "repeated" in doc["detail"] and "Connection: close" in rh, doc
    # Transfer-Encoding with Content-Length, or two Content-Lengths, were refused already.
    for extra in (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
                  b"Content-Length: 0\r\nContent-Length: 0\r\n"):
        status, _, body, _, _ = raw_exchange(srv, one + extra + b"\r\n")
        assert status == 400, (extra, status, body)


def log_line(srv, request_id):
    """The log line of a finished request, found by its id (waits a little)."""
    deadline = time.time() + 5
    while time.time() < deadline:
        with open(srv.log_path, "rb") as f:
            for line in f:
                if request_id.encode() in line and b'"event":"request"' in line:
                    return line
        time.sleep(0.05)
    raise AssertionError("no log line for request " + request_id)


def test_logged_paths_bounded_and_escaped(srv):
    """A 32 KB path used to write a 32 KB log line; a path that is not UTF-8
    lost its field silently. Logged strings are now bounded (256 bytes, then
    a mark) and escaped."""
    path = b"/" + b"a" * 32000
    status, head, _, _, _ = raw_exchange(srv, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 404, status
    rid = re.search(r"X-Request-Id: (\w+)", head).group(1)
    line = log_line(srv, rid)
    assert len(line) < 1000, len(line)
    doc = json.loads(line)
    assert doc["path"] == "/" + "a" * 255 + "...[truncated, 32001 bytes]", doc["path"][-60:]
    # Not UTF-8, and a right-to-left override: escaped, never dropped or raw.
    status, head, _, _, _ = raw_exchange(
        srv, b"GET /x\xff\xfe/evil\xe2\x80\xaetxt.exe\xc2\x9b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 404, status
    rid = re.search(r"X-Request-Id: (\w+)", head).group(1)
    line = log_line(srv, rid)
    assert json.loads(line)["path"] == "/x\\xff\\xfe/evil\\u202etxt.exe\\u009b", line
    assert max(line) < 0x80, line  # the line itself is plain ASCII


def test_server_still_healthy(srv):
    st, _, _ = srv.request("GET", "/healthz")
    assert st == 200
    assert srv.proc.poll() is None


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
