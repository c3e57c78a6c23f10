# SPDX-License-Identifier: Apache-2.0
"""The staff application's upload, find, evidence, account and landing pages
end to end: a real demsd (with its supervised worker making previews) and
headless Chromium (Debian's chromium driven by playwright-core,
tests/browser/staff_app.mjs) walk each journey the way people would, with
axe-core run on every view (no serious or critical violation) and a
screenshot of each kept under build/.../screenshots/staff_app/; every check
is made on what the page showed and on the server's state.

- The upload form's rules are the server's: server/web/meta.js, run under
  node, accepts and refuses exactly what POST /v1/uploads does, value by
  value (file name, description, device serial, times, media type, hash).
- An officer uploads three files (one over 200 MB) from the page: a
  refused detail is marked and nothing of that file is sent; the big file
  is paused midway (the server's offset stays put), its session is revoked
  while it is paused (the sign-in form comes over the page; once signed in
  again the upload carries on), it is paused again and the page reloaded:
  the session holds, the upload waits for its file and, chosen again,
  resumes at the server's offset (three creations in all); each file's
  declared SHA-256 is the server's evidence id, and each links to its
  page. A file dropped on the page is listed (and removed), one over the
  server's size limit is refused before it is hashed, and one whose
  declared hash is altered on its way is refused by the server (422) in
  its words, then sent again. The officer pages through the list, finds the files by device and
  type (the address holds the query: a reload shows the same), by text in
  either order, with the session revoked during a search; opens the clip,
  whose preview appears without a reload, plays it, copies its hash,
  downloads the original (its SHA-256 checked) and sees DOWNLOADED in its
  custody history (and in the ledger); sees why the big file has no
  preview; enrols TOTP (a wrong code refused with the server's message),
  makes and revokes an API token, signs out and signs in with a code. The
  focus ring has at least 3:1 contrast; at tablet width nothing scrolls
  sideways.
- A prosecutor lands on "Shared with me" with nothing shared yet; an
  administrator on the overview with the evidence whose preview failed and
  its dead job; a bookmarked search the server refuses shows its message."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import time

from harness import Server, ledger_entries, run_tests

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
WEB_DIR = os.path.join(HERE, "..", "..", "server", "web")
PASSWORD = "correct horse battery"
USERS = {"olivia": "officer", "ivan": "officer", "pam": "prosecutor", "ada": "admin"}
BIG = 210 * 1000 * 1000  # bytes: over 200 MB
MAX_SIZE = 220 * 1000 * 1000  # upload_max_size
SEEDED = 24  # the officer's evidence before the journey: with three more, two pages of 25
DEVICE = "CAM-42"
DESCRIPTION = "Night patrol, High Street"
TIMEZONE = "America/New_York"
JOURNEY_TIMEOUT = 240


class Ctx:
    pass


def b64(s):
    return base64.b64encode(s.encode("utf-8", "surrogatepass")).decode()


def ok(c, method, path, body=None, token=None, want=(200, 201, 204)):
    st, doc, _ = c.srv.request(method, path, body, token=token)
    assert st in want, (method, path, st, doc)
    return doc


def upload(c, token, data, filename):
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
        "Upload-Metadata": f"filename {b64(filename)}",
        "Content-Type": "application/offset+octet-stream"})
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_files(root):
    """The three files the officer uploads: a short clip, a still image and
    a 210 MB file that is no media (mostly a hole, some random bytes)."""
    files = {}
    clip = os.path.join(root, "street camera.mp4")
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                        "-t", "6", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-shortest", clip], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    image = os.path.join(root, "doorway.jpg")
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "testsrc2=size=640x480", "-frames:v", "1", image],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    big = os.path.join(root, "bodycam-raw.bin")
    with open(big, "wb") as f:
        for at in (0, BIG // 3, 2 * BIG // 3, BIG - (1 << 20)):
            f.seek(at)
            f.write(os.urandom(1 << 20))
        f.truncate(BIG)
    # Over the server's upload_max_size (a hole: no disk), and a small file
    # whose declared hash the browser test alters on its way.
    huge = os.path.join(root, "too-large.bin")
    with open(huge, "wb") as f:
        f.truncate(MAX_SIZE + 1)
    altered = os.path.join(root, "altered.bin")
    with open(altered, "wb") as f:
        f.write(os.urandom(200_000))
    for key, path in (("clip", clip), ("image", image), ("big", big), ("huge", huge),
                      ("altered", altered)):
        files[key] = {"path": path, "name": os.path.basename(path), "sha256": sha256_file(path),
                      "size": os.path.getsize(path)}
    return files


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def setup():
    c = Ctx()
    c.srv = Server({"upload_max_size": MAX_SIZE}).start()  # one worker process: previews
    c.admin = c.srv.admin_token()
    c.tok = {}
    for name, role in USERS.items():
        ok(c, "POST", "/v1/admin/users", {"username": name, "password": PASSWORD, "role": role},
           c.admin)
        c.tok[name] = c.srv.login(name, PASSWORD)[1]["token"]
    # Someone else's file that is no video: the administrator's overview
    # shows it (its preview job dies) and the officer does not see it.
    c.not_video = upload(c, c.tok["ivan"], b"not a video at all\n" * 50, "not-a-video.mp4")
    for i in range(SEEDED):
        upload(c, c.tok["olivia"], f"seed {i}: a note\n".encode(), f"note-{i:02}.txt")
    c.files = make_files(c.srv.root)
    build = os.path.dirname(os.path.dirname(os.environ["DEMSD"]))
    c.shots = os.path.join(build, "screenshots", "staff_app")
    shutil.rmtree(c.shots, ignore_errors=True)
    now = int(time.time())
    c.cfg = {
        "url": f"https://127.0.0.1:{c.srv.port}/staff/",
        "officer": "olivia", "prosecutor": "pam", "admin": "ada",
        "passwords": {u: PASSWORD for u in USERS},
        "files": c.files, "shots": c.shots, "timezone": TIMEZONE,
        "device": DEVICE, "description": DESCRIPTION,
        "recording_start": iso(now - 3 * 3600), "recording_end": iso(now - 3 * 3600 + 600),
        "throttle": 24 * 1024 * 1024,  # bytes/s while the big file is paused midway
    }
    c.summaries = {}
    return c


def teardown(c):
    assert c.srv.stop() == 0


def browser_available():
    missing = [p for p in ("/usr/bin/chromium", shutil.which("node") or "/nonexistent/node")
               if not os.path.exists(p)]
    for pkg in ("playwright-core", "axe-core"):
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", pkg)):
            missing.append(f"tests/browser/node_modules/{pkg} "
                           "(deploy/install-test.d/browser-test installs it)")
    assert not missing, "cannot run the browser test; missing: " + ", ".join(missing)


def journey(c, name):
    """Runs one journey once; its summary (also for later tests)."""
    if name in c.summaries:
        return c.summaries[name]
    browser_available()
    path = os.path.join(c.srv.root, f"staff_app_{name}.json")
    with open(path, "w") as f:
        json.dump(c.cfg, f)
    t0 = time.time()
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "staff_app.mjs"), name, path],
                       capture_output=True, text=True, timeout=JOURNEY_TIMEOUT)
    took = time.time() - t0
    assert c.srv.proc.poll() is None, (
        f"demsd died (exit {c.srv.proc.returncode}) during the {name} journey; "
        f"log tail: {c.srv.tail(3000)}")
    lines = r.stdout.strip().splitlines()
    assert lines, f"no summary from the {name} journey (exit {r.returncode}): {r.stderr[-2000:]}"
    s = json.loads(lines[-1])
    print(f"     {name}: {took:.1f} s, chromium {s.get('browser')}, at {s.get('step')}")
    c.summaries[name] = s
    assert r.returncode == 0 and s["ok"], json.dumps(s, indent=1)[:6000]
    return s


def check_axe(s):
    assert s["axe"], "axe-core ran on no view"
    for view, violations in s["axe"].items():
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, (view, bad)
        for v in violations:  # the lesser ones, for the record
            print(f"     axe {view}: {v['impact']} {v['id']} ×{v['nodes']} {v['targets'][:2]}")


def test_metadata_rules_match_the_server(c):
    """meta.js (the upload form's checks) and the server agree, value by value."""
    future = iso(time.time() + 3 * 86400)
    cases = [
        {"filename": "clip.mp4"}, {"filename": ""}, {"filename": "a/b.mp4"},
        {"filename": "x" * 255}, {"filename": "x" * 256}, {"filename": "é" * 127},
        {"filename": "é" * 128}, {"filename": "invoice\u202egpj.exe"}, {"filename": "tab\there"},
        {"filename": "del\x7f"}, {"filename": "c1\x85"}, {"filename": "\u05e9\u05dc\u05d5\u05dd\u200f.mp4"},
        {"filename": "isolate\u2066x"},
        {"description": "Front door"}, {"description": "x" * 1024}, {"description": "x" * 1025},
        {"description": "x" * 2000}, {"description": "x" * 2001},
        {"description": "two\nlines"}, {"description": ""},
        {"device_serial": DEVICE}, {"device_serial": "cam_1.2"}, {"device_serial": "CAM 42"},
        {"device_serial": "x" * 64}, {"device_serial": "x" * 65}, {"device_serial": "kamera-ü"},
        {"recording_start": "2024-01-01T00:00:00Z"}, {"recording_start": "1999-12-31T23:59:59Z"},
        {"recording_start": "2000-01-01T00:00:00Z"}, {"recording_start": future},
        {"recording_start": "2024-02-30T00:00:00Z"}, {"recording_start": "2024-01-01T00:00:00+01:00"},
        {"recording_start": "2024-01-01 00:00:00Z"}, {"recording_start": "2024-01-01T24:00:00Z"},
        {"recording_start": "2024-01-01T00:00:00.123456789Z"},
        {"recording_start": "2024-01-01T00:00:00.1234567891Z"},
        {"recording_start": "2024-01-01T00:00:00"}, {"recording_start": "2024-01-01T00:00:00.5"},
        {"recording_start": "2024-01-01T00:00:00+24:00"},
        {"recording_start": "2024-01-02T00:00:00Z", "recording_end": "2024-01-01T00:00:00Z"},
        {"recording_start": "2024-01-01T00:00:00Z", "recording_end": "2024-01-08T00:00:00Z"},
        {"recording_start": "2024-01-01T00:00:00Z", "recording_end": "2024-01-08T00:00:01Z"},
        {"filetype": "video/mp4"}, {"filetype": "video"}, {"filetype": "/mp4"},
        {"filetype": "text/html; charset=utf-8"}, {"content_type": "image/jpeg"},
        {"filetype": "video/mp4", "content_type": "video/mp4"},
        {"sha256": "ab" * 32}, {"sha256": "AB" * 32}, {"sha256": "ab" * 31 + "a"},
        {"sha256": "g" * 64}, {"colour": "blue"}, {"officer_id": "u-42"},
    ]
    script = ("import * as m from " + json.dumps(os.path.join(WEB_DIR, "meta.js")) + ";"
              "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(cases.map((x) => m.metadataProblems(x))));")
    script = script.replace("require('fs')", "(await import('node:fs'))")
    r = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(cases),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    browser = json.loads(r.stdout)
    disagree = []
    for case, problems in zip(cases, browser):
        meta = ",".join(f"{k} {b64(v)}" if v else k for k, v in case.items())
        st, doc, resp = c.srv.request("POST", "/v1/uploads", token=c.tok["ivan"], headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": "1", "Upload-Metadata": meta})
        assert st in (201, 400), (case, st, doc)
        if st == 201:
            dst, ddoc, _ = c.srv.request("DELETE", resp.getheader("Location"), token=c.tok["ivan"],
                                         headers={"Tus-Resumable": "1.0.0"})
            assert dst == 204, (dst, ddoc)
        else:
            assert doc["code"] == "invalid_metadata", doc
        if (st == 201) != (not problems):
            disagree.append((case, st, doc if st != 201 else None, problems))
    assert not disagree, disagree


def test_officer_journey(c):
    s = journey(c, "officer")
    f = c.files
    assert s["landing_hash"] == "#/evidence" and s["nav"] == "Evidence Upload Cases Account", s
    # Keyboard focus is visible: a solid ring of at least 3:1 against what
    # is behind it, in the header and in the page.
    for ring in s["focus"]:
        assert ring["style"] == "solid" and ring["width"] >= 2 and ring["contrast"] >= 3, ring
    assert {r["where"] for r in s["focus"]} == {"header", "main button", "main input"}, s["focus"]
    # Refused before sending: the serial (defaults) and the clip's end.
    assert s["bad_serial"] == ("Device serial must be 1 to 64 letters, digits, dots, dashes or "
                               "underscores."), s["bad_serial"]
    assert s["defaults_errors"] == [], s["defaults_errors"]
    assert s["refused_item"] == {"state": "ready", "invalid": "true",
                                 "error": "Recording end is before the recording start."}, s
    assert s["start_status"] == "1 file not started: check the details marked.", s
    # Paused midway: nothing moves on the server while it is.
    p = s["pause"]
    assert p["size"] == BIG and 0 < p["server_offset"] < BIG, p
    assert p["server_offset_later"] == p["server_offset"], p
    assert p["text"].startswith("Paused at "), p
    # The session ended while paused: sign-in over the page, then on.
    assert s["revoke_1"] == 204, s["revoke_1"]
    assert s["reauth_upload"] == {"title": "Your session has ended", "username": "olivia",
                                  "message": "Sign in again to carry on where you were.",
                                  "view_kept": True}, s["reauth_upload"]
    before = s["before_reload"]
    assert before["state"] == "paused" and before["server_offset"] > p["server_offset"], before
    # Reloaded: still signed in, same page; the upload waits for its file.
    after = s["after_reload"]
    assert after["hash"] == "#/upload" and after["signed_in"] == "olivia (officer)", after
    assert not after["login_visible"], after
    assert after["big"]["state"] == "waiting", after
    assert int(after["big"]["resumed"]) == before["server_offset"], (after, before)
    assert after["big"]["text"].startswith("Interrupted at "), after
    # Chosen again: resumed there, not started afresh (three creations in all).
    assert s["after_resume"]["state"] == "done", s["after_resume"]
    assert int(s["after_resume"]["resumed"]) == before["server_offset"], s["after_resume"]
    assert s["creations"] == 3, s["creations"]
    rows = {r["name"]: r for r in s["upload_rows"]}
    assert rows[f["big"]["name"]]["link"] == f"#/evidence/{f['big']['sha256']}", rows
    assert rows[f["clip"]["name"]]["link"] == f"#/evidence/{f['clip']['sha256']}", rows
    assert s["upload_live"] == "polite" and s["upload_summary"] == "All 2 files uploaded (200.5 MiB).", s
    # Dropped on the page, then removed before anything was sent.
    assert s["dropped"] == "Ready to upload", s["dropped"]
    # Too large for the server (Tus-Max-Size): refused before hashing, for good.
    tl = s["too_large"]
    assert tl["text"] == (f"Failed: Too large: this server takes files of up to {MAX_SIZE:,} bytes "
                          f"(209.8 MiB); this one has {MAX_SIZE + 1:,}."), tl
    assert tl["retry"] is False, tl
    # Another hash declared than the bytes': the server's 422 in its words;
    # Retry hashes again and makes a new upload, which is kept.
    mm = s["mismatch"]
    assert mm["text"].startswith("Failed: The server received other bytes than those hashed "
                                 "here, so nothing was kept ("), mm
    assert "Upload it again." in mm["text"], mm
    assert s["mismatch_retried"]["state"] == "done", s["mismatch_retried"]
    ok(c, "GET", f"/v1/evidence/{f['altered']['sha256']}", token=c.tok["olivia"])
    # The server holds what was declared, under the declared hash.
    for key in ("clip", "image", "big"):
        doc = ok(c, "GET", f"/v1/evidence/{f[key]['sha256']}", token=c.tok["olivia"])
        assert doc["size"] == f[key]["size"], (key, doc)
        assert doc["metadata"]["device_serial"] == DEVICE, (key, doc["metadata"])
        assert doc["metadata"]["description"] == DESCRIPTION, (key, doc["metadata"])
        assert doc["metadata"]["recording_start"] == c.cfg["recording_start"], (key, doc["metadata"])
        assert doc["metadata"]["recording_end"] == c.cfg["recording_end"], (key, doc["metadata"])
        assert doc["metadata"]["filename"] == f[key]["name"], (key, doc["metadata"])
    # Find: two pages, then filters the address holds.
    assert s["page1"]["rows"] == 25 and s["page1"]["count"] == "25 items on this page.", s["page1"]
    assert s["page2"] == {"rows": SEEDED + 4 - 25, "next": 0}, s["page2"]
    assert s["by_device"]["hash"] == f"#/evidence?device={DEVICE}&content_type=video%2F", s["by_device"]
    assert s["by_device"]["rows"] == [f["clip"]["sha256"]], s["by_device"]
    assert s["by_device_reloaded"] == {"rows": [f["clip"]["sha256"]], "device": DEVICE,
                                       "type": "video/"}, s["by_device_reloaded"]
    assert s["revoke_2"] == 204
    assert s["reauth_find"]["title"] == "Your session has ended", s["reauth_find"]
    assert s["by_text_oldest"]["q"] == "HIGH STREET", s["by_text_oldest"]
    assert s["by_text_oldest"]["hash"] == "#/evidence?q=HIGH+STREET&sort=oldest", s["by_text_oldest"]
    mine = {f[k]["sha256"] for k in ("clip", "image", "big")}
    assert set(s["by_text_oldest"]["rows"]) == mine, s["by_text_oldest"]
    assert s["by_text_newest"] == list(reversed(s["by_text_oldest"]["rows"])), s
    # The clip's page: its preview came without a reload, and it played.
    assert s["same_document"] is True
    assert s["clip_first"] in ("Preview on its way", "player"), s["clip_first"]
    assert f"Device {DEVICE}" in s["clip_facts"] and f"Description {DESCRIPTION}" in s["clip_facts"], s
    assert "Recording length 10 min 00 s" in s["clip_facts"], s["clip_facts"]
    start_utc = c.cfg["recording_start"].replace("T", " ").replace("Z", " UTC")
    rec = [t for t in s["clip_times"] if t["datetime"] == c.cfg["recording_start"]]
    assert rec and rec[0]["title"] == start_utc, s["clip_times"]
    assert rec[0]["text"].endswith(("EST", "EDT")), rec  # the viewer's zone, not UTC
    assert s["clip_hash"] == f["clip"]["sha256"] and s["clipboard"] == f["clip"]["sha256"], s
    assert "Duration 6.0 s" in s["probe"] and "video · h264" in s["probe"], s["probe"]
    assert s["tiles"] >= 1 and s["played"] >= 0.5, (s["tiles"], s["played"])
    # The original, byte for byte, and its DOWNLOADED entry.
    assert s["download"] == {"name": f["clip"]["name"], "size": f["clip"]["size"],
                             "sha256": f["clip"]["sha256"]}, s["download"]
    assert "INGESTED" in s["custody"] and "PREVIEW_MADE" in s["custody"], s["custody"]
    assert s["custody"].count("DOWNLOADED") == 1 and "olivia" in s["custody_text"], s
    st, note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
    size = int(note.decode().split("\n")[1])
    downloads = [e["body"] for e in ledger_entries(c.srv, c.admin, 0, size)
                 if e["body"]["type"] == "DOWNLOADED" and e["body"].get("artefact") == f["clip"]["sha256"]]
    assert [d["actor"] for d in downloads] == [{"id": "olivia", "kind": "user"}], downloads
    # No preview of the big file: why, and what to do.
    assert s["no_preview"].startswith("No preview No preview can be made of this file "
                                      "(declared as application/octet-stream): "), s["no_preview"]
    assert "[media_invalid]" in s["no_preview"] and "download it" in s["no_preview"], s
    assert "Size 200.3 MiB (210,000,000 bytes)" in s["big_facts"], s["big_facts"]
    assert s["missing"].startswith("No such evidence no such evidence"), s["missing"]
    # TOTP: a QR code to scan, a wrong code refused in the server's words.
    assert s["qr"]["modules"] > 100 and s["qr"]["label"].startswith("QR code"), s["qr"]
    assert s["secret_length"] == 32, s["secret_length"]
    assert s["wrong_code"] == "the one-time code does not match", s["wrong_code"]
    assert s["totp_state"].startswith("Two-step sign-in is on."), s["totp_state"]
    me = ok(c, "GET", "/v1/me", token=c.tok["olivia"])
    assert me["totp_enabled"] is True, me
    # An API token: shown once, works, revoked.
    assert s["token_prefix"] == "dems_api_" and s["token_works"] == 200, s
    assert s["token_rows"] == 1 and s["token_rows_after"] == 0 and s["token_after_revoke"] == 401, s
    # Signed out; signing in then needs the code, and works with one.
    assert s["signed_out"] == "Signed out."
    assert "one-time code" in s["without_code"], s["without_code"]
    assert s["with_code"]["who"] == "olivia (officer)", s["with_code"]
    # At tablet width nothing scrolls sideways.
    for view, m in s["tablet"].items():
        assert m["scroll_width"] <= m["inner_width"], (view, m)
    # Exactly the refusals the journey asked for.
    expected = {"GET /v1/me: 401",  # before signing in, the page asks
                "GET /v1/uploads/ID: 401",  # the revoked session, resuming
                "GET /v1/evidence: 401",  # the revoked session, searching
                "GET /v1/evidence/ID: 404",  # the unknown id
                "PATCH /v1/uploads/ID: 422",  # the altered hash
                "POST /v1/me/totp/confirm: 400",  # the wrong code
                "POST /v1/auth/login: 401"}  # no code
    assert set(s["error_responses"]) == expected, s["error_responses"]
    check_axe(s)


def test_roles_land_somewhere_useful(c):
    deadline = time.time() + 60
    while time.time() < deadline:  # the overview lists the failed preview
        doc = ok(c, "GET", f"/v1/evidence/{c.not_video}", token=c.admin)
        if doc.get("preview_job") == "dead":
            break
        time.sleep(0.5)
    s = journey(c, "roles")
    pr = s["prosecutor"]
    assert pr["hash"] == "#/shared" and pr["nav"] == "Shared with me Account", pr
    assert "Nothing has been shared with you yet." in pr["text"], pr
    a = s["admin"]
    assert a["hash"] == "#/admin" and a["nav"] == "Overview Evidence Upload Cases Account", a
    failed = ok(c, "GET", "/v1/evidence?preview=failed&limit=10", token=c.admin)["evidence"]
    assert a["failed_previews"] == [e["filename"] for e in failed] and a["dead_jobs"] >= 1, a
    assert a["users"] == len(USERS) + 1, a
    assert s["refused_search"].startswith("The search was refused: "), s["refused_search"]
    assert "preview" in s["refused_search"], s["refused_search"]
    assert set(s["error_responses"]) == {"GET /v1/me: 401", "GET /v1/evidence: 400"}, s
    for view, m in s["tablet"].items():
        assert m["scroll_width"] <= m["inner_width"], (view, m)
    check_axe(s)


def test_screenshots_of_every_view(c):
    shots = set()
    for name in ("officer", "roles"):
        s = c.summaries.get(name)
        assert s, f"the {name} journey did not run"
        shots |= set(s["shots"])
    want = {"sign-in", "upload-paused", "upload-after-reload", "upload-done", "upload-failures",
            "find", "evidence",
            "evidence-no-preview", "account-totp", "account", "prosecutor-landing",
            "admin-landing", "tablet-upload", "tablet-find", "tablet-evidence", "tablet-admin"}
    assert want <= shots, want - shots
    for name in want:
        path = os.path.join(c.shots, f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
