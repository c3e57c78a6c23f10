# SPDX-License-Identifier: Apache-2.0
"""Court bundles end to end (docs/bundle.md, docs/api.md "Bundles"): a case
with two exhibits (made directly in the database as its owner), a bundle
requested over HTTPS, made by a worker, downloaded whole and as a range (a
DOWNLOADED entry first), verified by `dems-verify bundle` against the
log's published key; the same request again gives the same bytes; a
tampered copy fails; who may ask (lead, investigator, administrator, a
prosecutor with a download share, for the shared exhibits only) and who may
not (viewer 403, no relation 404, a share without downloads 403, an ended
share 403 share_ended); selection errors; and a bundle whose original is
gone fails and leaves no file or blob behind."""
import base64
import glob
import hashlib
import io
import json
import os
import subprocess
import tempfile
import time
import zipfile

from harness import Server, eventually, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
VERIFY = os.environ.get("DEMS_VERIFY", "build/plain/server/verify/dems-verify")
SETTINGS = {"job_poll_interval": 2, "job_backoff_base": 1, "job_backoff_max": 2,
            "job_max_attempts": 2}
USERS = {"lead1": "officer", "inv1": "officer", "view1": "officer", "out1": "officer",
         "prosdl": "prosecutor", "prosno": "prosecutor", "prosend": "prosecutor"}


class Ctx:
    pass


def sql(c, q):
    st, out, err = c.srv.psql(q)
    assert st == 0, (q, err)
    return out


def upload(c, tok, data, filename):
    meta = "filename " + base64.b64encode(filename.encode()).decode()
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=tok, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta,
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def make_case(c, ref, arts):
    """A case led by lead1 with inv1 and view1 as members; its exhibit ids."""
    uid = lambda n: f"(SELECT id FROM users WHERE username = '{n}')"  # noqa: E731
    case = sql(c, "INSERT INTO cases (reference, title, offence, created_by) VALUES"
                  f" ('{ref}', 'R v Smith & <Jones>', 'theft', {uid('lead1')}) RETURNING id")
    for name, role in (("lead1", "lead"), ("inv1", "investigator"), ("view1", "viewer")):
        sql(c, "INSERT INTO case_members (case_id, user_id, role, added_by) VALUES"
               f" ({case}, {uid(name)}, '{role}', {uid('lead1')})")
    ex = []
    for i, a in enumerate(arts):
        ex.append(int(sql(c, "INSERT INTO exhibits (case_id, artefact, reference, description,"
                             f" added_by) VALUES ({case}, '{a}', 'EX{i + 1}',"
                             f" 'exhibit <b>{i + 1}</b>', {uid('lead1')}) RETURNING id")))
    return int(case), ex


def share(c, case, who, download, exhibits=None, ended=False):
    uid = lambda n: f"(SELECT id FROM users WHERE username = '{n}')"  # noqa: E731
    sid = sql(c, "INSERT INTO shares (case_id, prosecutor, whole_case, can_download, expires_at,"
                 f" created_by) VALUES ({case}, {uid(who)}, {exhibits is None},"
                 f" {download}, now() + interval '1 day', {uid('lead1')}) RETURNING id")
    for x in exhibits or ():
        sql(c, f"INSERT INTO share_exhibits (share_id, exhibit_id) VALUES ({sid}, {x})")
    if ended:
        sql(c, f"UPDATE shares SET revoked_at = now(), revoked_by = {uid('lead1')}"
               f" WHERE id = {sid}")


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.tok = {}
    for name, role in USERS.items():
        st, doc, _ = c.srv.request("POST", "/v1/admin/users", {
            "username": name, "password": "correct horse", "role": role}, token=c.admin)
        assert st == 201, doc
        c.tok[name] = c.srv.login(name, "correct horse")[1]["token"]
    c.data = [os.urandom(300_000), os.urandom(70_000)]
    c.arts = [upload(c, c.tok["lead1"], c.data[0], "cam <1>.mp4"),
              upload(c, c.tok["lead1"], c.data[1], "..passwd \"x\"")]
    c.case, c.ex = make_case(c, "CASE-7", c.arts)
    share(c, c.case, "prosdl", True, exhibits=[c.ex[0]])
    share(c, c.case, "prosno", False)
    share(c, c.case, "prosend", True, ended=True)
    c.tmp = tempfile.mkdtemp(prefix="dems-bundles-")
    st, doc, _ = c.srv.request("GET", "/v1/ledger/key")
    assert st == 200, doc
    c.vkey = doc["vkey"] if isinstance(doc, dict) else doc.decode().strip()
    return c


def teardown(c):
    assert c.srv.stop() == 0


def request_bundle(c, who, body, case=None):
    return c.srv.request("POST", f"/v1/cases/{case or c.case}/bundles", body, token=c.tok.get(
        who, c.admin))


def wait_done(c, who, href, states=("done",), timeout=90):
    deadline = time.time() + timeout
    while True:
        st, doc, _ = c.srv.request("GET", href, token=c.tok.get(who, c.admin))
        assert st == 200, (st, doc)
        if doc["state"] in states:
            return doc
        assert doc["state"] in ("queued", "running"), doc
        assert time.time() < deadline, f"bundle still {doc['state']}: {doc}"
        time.sleep(0.2)


def content(c, who, doc, headers=None):
    st, body, r = c.srv.request("GET", doc["content"], token=c.tok.get(who, c.admin),
                                headers=headers)
    return st, body, r


def verify(c, data, key=True):
    path = os.path.join(c.tmp, "b.zip")
    with open(path, "wb") as f:
        f.write(data)
    args = [VERIFY, "bundle", path] + (["--key", c.vkey] if key else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def make(c, who, body):
    st, doc, r = request_bundle(c, who, body)
    assert st == 202, (st, doc)
    assert r.getheader("Location") == doc["href"], doc
    assert doc["state"] in ("queued", "running", "done"), doc
    return wait_done(c, who, doc["href"])


def test_make_download_verify(c):
    doc = make(c, "lead1", {})
    assert doc["exhibits"] == 2 and doc["progress"]["bytes_total"] == 370_000, doc
    assert doc["progress"]["bytes_done"] == 370_000 and doc["ledger_seq"] >= 0, doc
    st, data, r = content(c, "lead1", doc)
    assert st == 200, (st, data)
    assert len(data) == doc["size"] and hashlib.sha256(data).hexdigest() == doc["sha256"]
    assert r.getheader("Content-Type") == "application/zip", r.getheader("Content-Type")
    assert "attachment" in r.getheader("Content-Disposition")
    c.first = data
    # A range of it.
    st, part, r = content(c, "lead1", doc, {"Range": "bytes=100-4099"})
    assert st == 206 and part == data[100:4100], st
    assert r.getheader("Content-Range") == f"bytes 100-4099/{len(data)}"
    # Each read was ledgered first: DOWNLOADED entries naming the bundle (no artefact).
    n = sql(c, "SELECT count(*) FROM ledger_entries WHERE type = 'DOWNLOADED' AND artefact IS NULL"
               f" AND convert_from(bytes, 'UTF8') LIKE '%\"bundle\":{doc['id']},%'")
    assert int(n) == 2, n
    made = sql(c, f"SELECT type FROM ledger_entries WHERE seq = {doc['ledger_seq']}")
    assert made == "BUNDLE_MADE", made
    # The ZIP: what docs/bundle.md lists, the originals byte for byte.
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    assert names[:4] == ["manifest.json", "checkpoint.txt", "keys.jsonl", "custody.jsonl"], names
    assert "index.html" in names
    assert z.read("exhibits/001-EX1/cam__1_.mp4") == c.data[0]
    assert z.read("exhibits/002-EX2/_.passwd__x_") == c.data[1]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    html = z.read("index.html").decode()
    assert "<script" not in html and "exhibit &lt;b&gt;1&lt;/b&gt;" in html
    assert "R v Smith &amp; &lt;Jones&gt;" in html
    r = verify(c, data)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.strip().endswith("verifies") and "exhibit EX1" in r.stdout, r.stdout


def test_same_request_same_bytes(c):
    doc = make(c, "inv1", {"exhibits": ["ex2", c.ex[0]]})
    st, data, _ = content(c, "inv1", doc)
    assert st == 200 and data == c.first, "a second bundle of the same exhibits differs"


def test_tampered_copy_fails(c):
    z = zipfile.ZipFile(io.BytesIO(c.first))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
        for i in z.infolist():
            b = z.read(i)
            if i.filename == "exhibits/001-EX1/cam__1_.mp4":
                b = b[:1000] + bytes([b[1000] ^ 1]) + b[1001:]
            w.writestr(i, b)
    r = verify(c, out.getvalue())
    assert r.returncode == 1 and "INVALID: file_mismatch: exhibits/001-EX1" in r.stdout, r.stdout
    # Not a ZIP: invalid (1, one line); no such file: a usage error (2, stderr).
    junk = os.path.join(c.tmp, "junk.zip")
    with open(junk, "wb") as f:
        f.write(b"not a zip\n")
    r = subprocess.run([VERIFY, "bundle", junk], capture_output=True, text=True)
    assert r.returncode == 1 and "INVALID: format: not a readable ZIP" in r.stdout, r.stdout
    r = subprocess.run([VERIFY, "bundle", junk + ".missing"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    # Another log's key pinned.
    r = subprocess.run([VERIFY, "bundle", os.path.join(c.tmp, "b.zip"), "--key",
                        "other.example/log+2c8f3c4a+AX0eu6h43sTHNcK+0hK2D8Jj4jXbOxoCnOc9eTn6CO6x"],
                       capture_output=True, text=True)
    assert r.returncode in (1, 2), r.stdout


def test_prosecutor_gets_shared_exhibits_only(c):
    doc = make(c, "prosdl", {})
    assert doc["exhibits"] == 1, doc
    st, data, _ = content(c, "prosdl", doc)
    assert st == 200
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "exhibits/001-EX1/cam__1_.mp4" in names and not any("EX2" in n for n in names)
    assert verify(c, data).returncode == 0
    st, d, _ = request_bundle(c, "prosdl", {"exhibits": ["EX2"]})
    assert st == 400 and d["code"] == "exhibit_not_in_case", d
    # Lists: the prosecutor sees only their own; the lead all, a page at a time.
    st, d, _ = c.srv.request("GET", f"/v1/cases/{c.case}/bundles", token=c.tok["prosdl"])
    assert st == 200 and [b["id"] for b in d["bundles"]] == [doc["id"]], d
    st, d, r = c.srv.request("GET", f"/v1/cases/{c.case}/bundles?limit=1", token=c.tok["lead1"])
    assert st == 200 and len(d["bundles"]) == 1 and d["next_cursor"], d
    assert 'rel="next"' in r.getheader("Link", ""), r.getheader("Link")
    st, d2, _ = c.srv.request("GET", f"/v1/cases/{c.case}/bundles?limit=10&cursor="
                              f"{d['next_cursor']}", token=c.tok["lead1"])
    assert st == 200 and len(d2["bundles"]) == 2 and d2["next_cursor"] is None, d2
    # Another user's bundle is hidden from the prosecutor.
    st, d, _ = c.srv.request("GET", d2["bundles"][0]["href"], token=c.tok["prosdl"])
    assert st == 404, (st, d)


def test_who_may_not(c):
    cases = [("view1", {}, 403, "forbidden"), ("out1", {}, 404, "not_found"),
             ("prosno", {}, 403, "forbidden"), ("prosend", {}, 403, "share_ended"),
             ("lead1", {"exhibits": []}, 400, "empty_selection"),
             ("lead1", {"exhibits": ["NOPE"]}, 400, "exhibit_not_in_case"),
             ("lead1", {"exhibits": [999999]}, 400, "exhibit_not_in_case"),
             ("lead1", {"exhibits": "EX1"}, 400, "invalid_field"),
             ("lead1", {"include_previews": 1}, 400, "invalid_field")]
    for who, body, status, code in cases:
        st, d, _ = request_bundle(c, who, body)
        assert st == status and d["code"] == code, (who, body, st, d)
    st, d, _ = request_bundle(c, "lead1", {}, case=999999)
    assert st == 404 and d["code"] == "not_found", d
    st, d, _ = c.srv.request("GET", f"/v1/cases/{c.case}/bundles", token=c.tok["prosno"])
    assert st == 403, (st, d)
    # The refusals are on the record.
    n = eventually(lambda: int(sql(c, "SELECT count(*) FROM ledger_entries WHERE type ="
                                      " 'ACCESS_DENIED' AND convert_from(bytes, 'UTF8')"
                                      " LIKE '%bundles%'")) >= 4)
    assert n, "fewer than 4 bundle refusals on the record"


def test_previews_included(c):
    clip = os.path.join(c.tmp, "clip.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25", "-t", "2", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", clip], check=True, timeout=120)
    art = upload(c, c.tok["lead1"], open(clip, "rb").read(), "clip.mp4")
    deadline = time.time() + 90
    while int(sql(c, f"SELECT count(*) FROM derivatives WHERE artefact = '{art}'")) == 0:
        assert time.time() < deadline, "no preview made"
        time.sleep(0.3)
    case, _ = make_case(c, "CASE-9", [art])
    st, doc, _ = request_bundle(c, "lead1", {"include_previews": True}, case=case)
    assert st == 202 and doc["include_previews"], doc
    doc = wait_done(c, "lead1", doc["href"])
    st, data, _ = content(c, "lead1", doc)
    assert st == 200
    z = zipfile.ZipFile(io.BytesIO(data))
    assert "exhibits/001-EX1/previews/proxy-proxy.mp4" in z.namelist(), z.namelist()
    m = json.loads(z.read("manifest.json"))
    d = {x["kind"]: x for x in m["exhibits"][0]["derivatives"]}
    assert d["proxy"]["parameters"] and "libavcodec" in json.dumps(d["proxy"]["libraries"]), d
    made = sql(c, f"SELECT type FROM ledger_entries WHERE seq = {d['proxy']['made_seq']}")
    assert made == "PREVIEW_MADE" and d["proxy"]["made_seq"] in m["exhibits"][0]["custody"]
    r = verify(c, data)
    assert r.returncode == 0, r.stdout


def test_failed_bundle_leaves_nothing(c):
    # A third artefact whose blob vanishes before its bundle is made.
    data = os.urandom(50_000)
    art = upload(c, c.tok["lead1"], data, "gone.bin")
    case, _ = make_case(c, "CASE-8", [art])
    blobs = os.path.join(c.srv.data, "blobs")
    os.unlink(os.path.join(blobs, art[:2], art))
    before = sorted(glob.glob(os.path.join(blobs, "*", "*")))
    st, doc, _ = request_bundle(c, "lead1", {}, case=case)
    assert st == 202, doc
    doc = wait_done(c, "lead1", doc["href"], states=("failed",))
    assert "error" in doc and "content" not in doc, doc
    assert sorted(glob.glob(os.path.join(blobs, "*", "*"))) == before
    assert glob.glob(os.path.join(c.srv.data, "work", "bundle-*")) == []
    st, d, _ = c.srv.request("GET", doc["href"] + "/content", token=c.tok["lead1"])
    assert st == 409 and d["code"] == "bundle_not_ready", d


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
