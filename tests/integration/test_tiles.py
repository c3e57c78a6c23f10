# SPDX-License-Identifier: Apache-2.0
"""The ledger as C2SP tlog-tiles (docs/ledger.md, "Static tiles") against a
real demsd, and `dems-verify monitor`, which follows the log through them.

The log is filled past 256 entries, so there are a full and a partial
level-0 tile and a partial level-1 tile. Inclusion and consistency proofs
are computed here purely from tiles, with this file's own RFC 6962 code,
and must equal the API's; the root from tiles must be the checkpoint's."""
import base64
import hashlib
import http.client
import http.server
import os
import random
import subprocess
import threading
import time

from harness import Server, free_port, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY",
                        os.path.join(os.path.dirname(os.environ.get("DEMSD", "")), "verify",
                                     "dems-verify"))
PREFIX = "/v1/ledger/tlog"


class Ctx:
    pass


def setup():
    c = Ctx()
    c.srv = Server().start()
    c.tok = c.srv.admin_token()
    c.cacert = os.path.join(c.srv.data, "tls", "cert.pem")
    c.url = f"https://127.0.0.1:{c.srv.port}{PREFIX}"
    return c


def teardown(c):
    assert c.srv.stop() == 0


# ---- RFC 6962 over tiles ----

def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf(data):
    return hashlib.sha256(b"\x00" + data).digest()


def index_path(n):
    """N as tlog-tiles path elements: x001/x234/067."""
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(("x%03d" if i < len(groups) - 1 else "%03d") % g for i, g in enumerate(groups))


def tile_path(level, n, width):
    return f"{level}/{index_path(n)}" + (f".p/{width}" if width < 256 else "")


class Tiles:
    """Complete subtree hashes of the tree of size leaves, from hash tiles only."""

    def __init__(self, c, size):
        self.c, self.size, self.cache = c, size, {}

    def tile(self, level, n):
        width = min(256, (self.size >> (8 * level)) - n * 256)
        key = (level, n, width)
        if key not in self.cache:
            st, body, r = self.c.srv.request("GET", f"{PREFIX}/tile/{tile_path(level, n, width)}")
            assert st == 200, (key, st, body)
            assert len(body) == 32 * width
            self.cache[key] = [body[i:i + 32] for i in range(0, len(body), 32)]
        return self.cache[key]

    def subtree(self, start, height):
        """MTH(D[start : start + 2^height]), a complete subtree."""
        level, r = divmod(height, 8)
        first = start >> (8 * level)  # its first hash at tree level 8 * level
        hashes = self.tile(level, first // 256)[first % 256:first % 256 + (1 << r)]
        assert len(hashes) == 1 << r
        while len(hashes) > 1:
            hashes = [node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def mth(self, lo, hi):
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self.subtree(lo, n.bit_length() - 1)
        k = 1 << ((n - 1).bit_length() - 1)
        return node(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def inclusion(self, m, lo, hi):
        """RFC 6962 section 2.1.1 PATH(m, D[lo:hi])."""
        n = hi - lo
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return self.inclusion(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self.inclusion(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def subproof(self, m, lo, hi, b):
        """RFC 6962 section 2.1.2 SUBPROOF(m, D[lo:hi], b)."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return self.subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


def checkpoint(c, path=PREFIX + "/checkpoint"):
    st, note, r = c.srv.request("GET", path)
    assert st == 200, (st, note)
    lines = note.decode().split("\n")
    return int(lines[1]), base64.b64decode(lines[2]), note, r


def log_size(c):
    st, doc, _ = c.srv.request("GET", "/v1/ledger/entries?start=0&limit=1", token=c.tok)
    return None if st != 200 else doc


def wait_checkpoint(c, size):
    deadline = time.time() + 15
    while time.time() < deadline:
        got = checkpoint(c)
        if got[0] >= size:
            return got
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of {size} entries")


def upload(c, data):
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=c.tok,
                               headers=dict(TUS, **{"Upload-Length": str(len(data)),
                                                    "Content-Type":
                                                        "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def download(c, eid, n):
    conn = c.srv.conn()
    for _ in range(n):
        st, _, _ = c.srv.request("GET", f"/v1/evidence/{eid}/content", token=c.tok, conn=conn)
        assert st == 200
    conn.close()


def head_size(c):
    rc, out, err = c.srv.psql("SELECT size FROM ledger_head")
    assert rc == 0, err
    return int(out.strip())


def monitor(c, state, *args, url=None, env=None):
    cmd = [VERIFY, "monitor", url or c.url, "--state", state, "--cacert", c.cacert, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


# ---- tests ----

def test_fill_past_one_tile(c):
    c.eid = upload(c, os.urandom(3000))
    c.other = upload(c, os.urandom(3000))
    download(c, c.eid, 300 - head_size(c) if head_size(c) < 300 else 1)
    c.size = head_size(c)
    assert c.size >= 300
    c.size, c.root, _, _ = wait_checkpoint(c, c.size)


def test_root_from_tiles_is_the_checkpoints(c):
    size, root, note, r = checkpoint(c)
    t = Tiles(c, size)
    assert t.mth(0, size) == root
    # The same note as the JSON API's (a newer one may have been signed since).
    st, api_note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
    assert st == 200 and int(api_note.decode().split("\n")[1]) >= size
    # The root read the partial level-1 tile (its one hash covers the full
    # level-0 tile) and the partial level-0 tile.
    widths = {(lv, n): w for lv, n, w in t.cache}
    assert widths == {(1, 0): 1, (0, 1): size - 256}, widths
    # The level-1 hash is the MTH of the full level-0 tile.
    level0 = t.tile(0, 0)
    assert len(level0) == 256
    while len(level0) > 1:
        level0 = [node(level0[i], level0[i + 1]) for i in range(0, len(level0), 2)]
    assert level0[0] == t.tile(1, 0)[0]


def test_proofs_from_tiles_equal_the_apis(c):
    size = c.size
    t = Tiles(c, size)
    for index in (0, 1, 200, 255, 256, 257, size - 1):
        st, p, _ = c.srv.request("GET", f"/v1/ledger/proof/inclusion?index={index}&size={size}",
                                 token=c.tok)
        assert st == 200, p
        assert [h.hex() for h in t.inclusion(index, 0, size)] == p["proof"], index
        assert t.subtree(index, 0).hex() == p["leaf_hash"]
        assert t.mth(0, size).hex() == p["root"]
    for old in (1, 2, 7, 255, 256, 257, 290, size):
        st, q, _ = c.srv.request("GET", f"/v1/ledger/proof/consistency?old={old}&new={size}")
        assert st == 200, q
        assert [h.hex() for h in t.subproof(old, 0, size, True)] == q["proof"], old
        assert t.mth(0, old).hex() == q["old_root"]


def test_caching_headers_and_etags(c):
    st, body, r = c.srv.request("GET", f"{PREFIX}/tile/0/000")
    assert st == 200 and len(body) == 8192
    assert r.getheader("Content-Type") == "application/octet-stream"
    assert r.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    etag = r.getheader("ETag")
    assert etag and etag.startswith('"')
    st, body, r = c.srv.request("GET", f"{PREFIX}/tile/0/000", headers={"If-None-Match": etag})
    assert st == 304 and not body
    st, body, r = c.srv.request("GET", f"{PREFIX}/tile/0/000",
                                headers={"If-None-Match": '"t-00", W/' + etag})
    assert st == 304
    st, body, r = c.srv.request("GET", f"{PREFIX}/tile/0/001.p/5")
    assert st == 200 and len(body) == 160
    assert r.getheader("Cache-Control") == "public, max-age=60"
    size, root, note, r = checkpoint(c)
    assert r.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert r.getheader("Cache-Control") == "public, max-age=5"
    st, _, r2 = c.srv.request("GET", f"{PREFIX}/checkpoint",
                              headers={"If-None-Match": r.getheader("ETag")})
    assert st in (200, 304)  # 200 only when a newer checkpoint came meanwhile
    # HEAD is served too.
    st, body, r = c.srv.request("HEAD", f"{PREFIX}/tile/1/000.p/1")
    assert st == 200 and r.getheader("Content-Length") == "32"


def test_entry_bundles_hash_to_the_level_0_tile(c):
    st, body, r = c.srv.request("GET", f"{PREFIX}/tile/entries/000", token=c.tok)
    # Staff-only: cached by the client, never by a shared cache.
    assert st == 200 and r.getheader("Cache-Control") == "private, max-age=31536000, immutable"
    entries, i = [], 0
    while i < len(body):
        n = int.from_bytes(body[i:i + 2], "big")
        entries.append(body[i + 2:i + 2 + n])
        i += 2 + n
    assert i == len(body) and len(entries) == 256
    st, tile, _ = c.srv.request("GET", f"{PREFIX}/tile/0/000")
    assert [leaf(e) for e in entries] == [tile[k:k + 32] for k in range(0, 8192, 32)]
    assert b'"seq":255,' in entries[255]
    st, body, r = c.srv.request("GET", f"{PREFIX}/tile/entries/001.p/3", token=c.tok)
    assert st == 200 and r.getheader("Cache-Control") == "private, max-age=60"
    assert b'"seq":258,' in body
    # Entries are for staff, as GET /v1/ledger/entries; hash tiles are public.
    st, doc, _ = c.srv.request("GET", f"{PREFIX}/tile/entries/000")
    assert st == 401, doc


def test_hostile_paths_are_refused_cleanly(c):
    big = 10 ** 18
    bad = ["tile/0/0", "tile/0/00", "tile/0/0000", "tile/00/000", "tile/01/000",
           "tile/0/x000/001", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/05",
           "tile/0/000.p/", "tile/0/000.p", "tile/0/000.q/5", "tile/0/000/", "tile/0/x001",
           "tile/0/x01/000", "tile/0/001/x002", "tile/64/000", "tile/-1/000", "tile/0/%30%30%30",
           "tile/0/abc", "tile/0/x001/x002/x003/x004/x005/x006/x007/000",
           "tile/entries/0", "tile/entries/x000/000", "tile/entries/000.p/300",
           "tile/0/000.p/5/6", "tile/entries/entries", "tile/0//000", "tile/a/000"]
    for p in bad:
        st, doc, _ = c.srv.request("GET", f"{PREFIX}/{p}", token=c.tok)
        assert st == 400 and doc["code"] == "invalid_tile_path", (p, st, doc)
    beyond = ["tile/0/002", "tile/0/001", "tile/0/001.p/255", "tile/1/000", "tile/1/000.p/2",
              "tile/2/000.p/1", "tile/7/000.p/1", "tile/8/000.p/1", "tile/63/000",
              f"tile/0/{index_path(big)}", f"tile/0/{index_path(2 ** 64 - 1)}",
              "tile/entries/002", "tile/entries/001"]
    for p in beyond:
        st, doc, _ = c.srv.request("GET", f"{PREFIX}/{p}", token=c.tok)
        assert st == 404 and doc["code"] == "tile_not_found", (p, st, doc)
    # Random junk from the path alphabet: always a problem answer, never a crash.
    rng = random.Random(18)
    for _ in range(300):
        p = "".join(rng.choice("0123456789x./p") for _ in range(rng.randint(1, 40)))
        st, doc, _ = c.srv.request("GET", f"{PREFIX}/tile/{p}", token=c.tok)
        assert st in (200, 400, 404), (p, st, doc)
    assert c.srv.request("GET", "/healthz")[0] == 200


# ---- dems-verify monitor ----

class Tamper(http.server.BaseHTTPRequestHandler):
    """A plain-HTTP mirror of the server's tiles that changes what mode says:
    "bundle" changes one byte of entry 3 in every entry bundle, "checkpoint"
    the root line of the checkpoint."""

    def do_GET(self):
        srv = self.server
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=srv.ctx, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
        conn.request("GET", self.path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.status == 200 and srv.mode == "bundle" and "/tile/entries/" in self.path:
            at = 0
            for _ in range(3):
                at += 2 + int.from_bytes(body[at:at + 2], "big")
            body = body[:at + 10] + bytes([body[at + 10] ^ 1]) + body[at + 11:]
        if r.status == 200 and srv.mode == "checkpoint" and self.path.endswith("/checkpoint"):
            lines = body.split(b"\n")
            lines[2] = base64.b64encode(bytes(32))
            body = b"\n".join(lines)
        self.send_response(r.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def tampering(c, mode):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tamper)
    srv.port, srv.ctx, srv.mode = c.srv.port, c.srv.context(), mode
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}{PREFIX}"

def test_monitor_first_run_makes_state(c):
    st, vkey, _ = c.srv.request("GET", "/v1/ledger/key")
    c.vkey = vkey.decode().strip()
    c.state = os.path.join(c.srv.root, "monitor.state")
    r = monitor(c, c.state, "--key", c.vkey, "--token", c.tok, "--watch", f"DOWNLOADED:{c.eid}",
                "--watch", "INGESTED")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("OK: "), r.stdout
    watched = lines[:-1]
    assert len([w for w in watched if " DOWNLOADED " in w]) >= 250, r.stdout
    assert len([w for w in watched if " INGESTED " in w]) == 2, r.stdout
    assert all(c.eid in w for w in watched if " DOWNLOADED " in w)
    state = open(c.state).read()
    assert "size " in state and "root " in state and "key " in state


def test_monitor_reports_only_new_watched_entries(c):
    before = checkpoint(c)[0]
    download(c, c.other, 3)
    download(c, c.eid, 2)
    wait_checkpoint(c, head_size(c))
    r = monitor(c, c.state, "--token", c.tok, "--watch", f"DOWNLOADED:{c.eid}")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("OK: "), r.stdout
    assert len(lines) == 3 and all(" DOWNLOADED " in x and c.eid in x for x in lines[:2]), lines
    assert all(int(x.split()[0]) >= before for x in lines[:2]), lines
    # Nothing new: nothing reported (the token from the environment this time).
    r = monitor(c, c.state, "--watch", "DOWNLOADED", env={"DEMS_VERIFY_TOKEN": c.tok})
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, r.stdout + r.stderr


def test_monitor_names_a_fork(c):
    text = open(c.state).read()
    lines = text.splitlines()
    root_line = [x for x in lines if x.startswith("root ")][0]
    forged = root_line[:5] + ("0" if root_line[5] != "0" else "1") + root_line[6:]
    tampered = os.path.join(c.srv.root, "tampered.state")
    open(tampered, "w").write(text.replace(root_line, forged))
    r = monitor(c, tampered, "--token", c.tok)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("INVALID: ") and "fork" in r.stdout, r.stdout
    assert open(tampered).read() == text.replace(root_line, forged)  # state left alone
    # A smaller size with another root: the new checkpoint is not consistent with it.
    size_line = [x for x in lines if x.startswith("size ")][0]
    open(tampered, "w").write(text.replace(root_line, forged).replace(size_line, "size 100"))
    r = monitor(c, tampered, "--token", c.tok)
    assert r.returncode == 1 and r.stdout.startswith("INVALID: "), r.stdout + r.stderr


def test_monitor_names_tampered_tiles(c):
    for mode, says in (("bundle", "does not hash to its leaf"), ("checkpoint", "not signed")):
        proxy, url = tampering(c, mode)
        try:
            fresh = os.path.join(c.srv.root, f"{mode}.state")
            r = monitor(c, fresh, "--key", c.vkey, "--token", c.tok, url=url)
            assert r.returncode == 1, (mode, r.stdout + r.stderr)
            assert r.stdout.startswith("INVALID: ") and says in r.stdout, (mode, r.stdout)
            assert not os.path.exists(fresh)
        finally:
            proxy.shutdown()
            proxy.server_close()


def test_monitor_refuses_a_foreign_key(c):
    other = os.path.join(c.srv.root, "other.state")
    foreign = "dems.test/cli+b34de997+AajhWMclMI6RSpVPztrhimtcWLTsaVupygs+cc3awVVv"
    r = monitor(c, other, "--key", foreign, "--token", c.tok)
    assert r.returncode == 1 and r.stdout.startswith("INVALID: "), r.stdout + r.stderr
    assert not os.path.exists(other)


def test_monitor_exit_codes(c):
    dead = f"https://127.0.0.1:{free_port()}{PREFIX}"
    r = monitor(c, os.path.join(c.srv.root, "x.state"), "--key", c.vkey, url=dead)
    assert r.returncode == 3, r.stdout + r.stderr
    r = monitor(c, os.path.join(c.srv.root, "x.state"))  # no --key and no state
    assert r.returncode == 2, r.stdout + r.stderr
    r = monitor(c, c.state, "--watch", "NO_SUCH_TYPE")
    assert r.returncode == 2, r.stdout + r.stderr
    # A token goes over https only (plain http is for mirrors, and this machine).
    r = monitor(c, c.state, "--token", c.tok, url=f"http://dems.example{PREFIX}")
    assert r.returncode == 2 and "https" in r.stderr, r.stdout + r.stderr
    r = subprocess.run([VERIFY, "monitor", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "exit" in r.stdout.lower()
    # Entry bundles need a staff token: without one the server refuses (network code).
    fresh = os.path.join(c.srv.root, "fresh.state")
    r = monitor(c, fresh, "--key", c.vkey)
    assert r.returncode == 3 and "401" in r.stderr, r.stdout + r.stderr
    assert not os.path.exists(fresh)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
