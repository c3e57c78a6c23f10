# SPDX-License-Identifier: Apache-2.0
"""The public submission portal's page end to end: a real demsd (with its
worker) and headless Chromium at a phone's size (Debian's chromium driven by
playwright-core, tests/browser/portal.mjs). A member of the public opens the
request link an officer made, is told what an empty statement lacks, gives a
statement, sends three files (one of 200 MB), reloads the page in the middle
of the large one and continues it by choosing it again, finishes and
downloads the receipt, which `dems-verify receipt` accepts. axe-core finds no
serious or critical violation on any view; the page sets no cookie and never
scrolls sideways. Every check is also made on the server's state: one upload
for the large file (resumed, not restarted), its bytes whole, the statement
as given, the SUBMITTED entry."""
import json
import os
import subprocess
import time

from harness import Server, browser_journey, ledger_entries, run_tests

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFY = os.environ.get("DEMS_VERIFY", "build/plain/server/verify/dems-verify")
SHOTS = os.path.join(HERE, "..", "..", "build", "screenshots")
BIG = 200 * 1000 * 1000
MP4_HEAD = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"


class Ctx:
    pass


def ok(c, method, path, body=None, token=None, want=(200, 201, 202)):
    st, doc, _ = c.srv.request(method, path, body, token=token)
    assert st in want, (method, path, st, doc)
    return doc


def make_files(root):
    clip, still, big = (os.path.join(root, n) for n in ("door.mp4", "still.jpg", "big.mp4"))
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=320x240:rate=25", "-t", "3", "-c:v", "libx264", "-preset",
                        "veryfast", "-pix_fmt", "yuv420p", clip], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=640x480", "-frames:v", "1", still], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # A large export: an MP4 header, then bytes no decoder understands.
    with open(big, "wb") as f:
        f.write(MP4_HEAD)
        left = BIG - len(MP4_HEAD)
        block = os.urandom(1 << 20)
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    return clip, still, big


def setup():
    c = Ctx()
    c.srv = Server({"refusal_max_per_principal": 1000000,
                    "refusal_max_per_address": 1000000}).start()
    c.admin = c.srv.admin_token()
    ok(c, "POST", "/v1/admin/users", {"username": "oona", "password": "correct horse",
                                     "role": "officer"}, c.admin)
    c.officer = c.srv.login("oona", "correct horse")[1]["token"]
    c.case = ok(c, "POST", "/v1/cases", {"reference": "PORTAL/1", "title": "Shop burglary"},
                c.officer)["id"]
    c.link = ok(c, "POST", f"/v1/cases/{c.case}/submission-links",
                {"kind": "request", "title": "Footage of the High St burglary",
                 "message": "Please send the front camera, 21:00 to 22:00 on 30 November.",
                 "contact_required": True}, c.officer)
    c.files = make_files(c.srv.root)
    return c


def teardown(c):
    assert c.srv.stop() == 0


def browser(c, journey, cfg):
    cfg = dict(cfg, url=f"https://127.0.0.1:{c.srv.port}", shots=SHOTS)
    return browser_journey(c.srv, "portal.mjs", journey, cfg, timeout=200)


def test_a_member_of_the_public_submits_from_a_phone(c):
    clip, still, big = c.files
    receipt = os.path.join(c.srv.root, "receipt.json")
    s = browser(c, "submit", {"link": c.link["path"], "receipt": receipt,
                              "files": {"clip": clip, "still": still, "big": big}})
    # What the page said.
    assert s["title"] == "Footage of the High St burglary", s
    assert "what the footage shows" in s["empty_errors"].lower(), s
    assert s["invalid_marked"] == "true" and s["focused"] == "description", s
    assert "Sending" in s["before_reload"] and "big.mp4" in s["resume_hint"], s
    assert "3 of 3 files sent" in s["overall"], s
    assert s["receipt_ref"] == s["reference"] and s["receipt_rows"] == 3, s
    assert "not known" in s["unknown_link"], s
    assert not s["overflow"] and s["cookies"] == 0, s
    for view, bad in s["axe"].items():
        assert bad == [], (view, bad)
    # The receipt verifies offline with the log's key.
    key = c.srv.request("GET", "/v1/ledger/key")[1].decode().strip()
    r = subprocess.run([VERIFY, "receipt", receipt, "--key", key], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "OK: receipt " + s["reference"] in r.stdout, r.stdout + r.stderr
    # The server's side: one upload for the large file, resumed rather than
    # restarted after the reload, with every byte.
    rc, out, err = c.srv.psql("SELECT count(*), max(length), min(state) FROM uploads"
                              " WHERE metadata->>'filename' = 'big.mp4'")
    assert rc == 0 and out.strip() == f"1|{BIG}|complete", (out, err)
    doc = json.load(open(receipt))
    want = {os.path.basename(p): (os.path.getsize(p), sha(p)) for p in c.files}
    got = {f["name"]: (f["size"], f["sha256"]) for f in doc["files"]}
    assert got == want, (got, want)
    rc, out, err = c.srv.psql("SELECT state, location, clock_offset_seconds, contact_email"
                              " FROM submissions")
    assert out.strip() == "submitted|12 High St, Anytown|-120|shop@example.org", out
    sub = [e["body"] for e in ledger_entries(c.srv, c.admin) if e["body"]["type"] == "SUBMITTED"]
    assert len(sub) == 1 and sub[0]["payload"]["reference"] == s["reference"], sub


def test_an_officer_triages_it_in_the_staff_application(c):
    clip = c.files[0]
    ev = sha(clip)
    deadline = time.time() + 180
    while time.time() < deadline:
        doc = ok(c, "GET", f"/v1/evidence/{ev}", token=c.officer)
        if doc.get("preview_job") in ("done", "dead"):
            break
        time.sleep(0.5)
    assert doc.get("preview_job") == "done", doc.get("preview_job")
    reference = c.srv.psql("SELECT reference FROM submissions")[1]
    s = browser(c, "triage", {"user": "oona", "password": "correct horse", "case": c.case,
                              "reference": reference, "prefix": "PUB", "files": {"clip": clip}})
    assert s["made_link"].startswith(f"https://127.0.0.1:{c.srv.port}/portal/#dems_sl_"), s
    assert s["qr_modules"] > 100 and s["link_rows"] == 2, s
    assert "12 High St, Anytown" in s["statement"] and "shop@example.org" in s["statement"], s
    assert s["video"]["ready"] >= 2 and ev in s["video"]["src"], s
    assert {"PUB/1", "PUB/2", "PUB/3"} <= set(s["exhibits"]), s
    assert "(accepted)" in s["accepted_card"], s
    for view, bad in s["axe"].items():
        assert bad == [], (view, bad)
    assert c.srv.psql("SELECT state FROM submissions")[1] == "accepted"
    acc = [e["body"] for e in ledger_entries(c.srv, c.admin)
           if e["body"]["type"] == "SUBMISSION_ACCEPTED"]
    assert len(acc) == 1 and acc[0]["actor"]["id"] == "oona", acc


def sha(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
