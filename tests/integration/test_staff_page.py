# SPDX-License-Identifier: Apache-2.0
"""The staff page end to end: demsd serve (with its supervised worker) serves
/staff/ with its security headers; a real clip made by the ffmpeg command
line is uploaded over tus; once its preview job is done, headless Chromium
(Debian's chromium driven by playwright-core, tests/browser/staff_page.mjs)
signs in as an officer, opens the evidence, plays the preview (readyState >=
2), seeks to the middle, uses the thumbnail strip, and sees no console
errors; the officer's first views are ledgered once each (VIEWED) however
many range requests the player made."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

from harness import Server, run_tests, ledger_entries

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "..", "browser")
CLIP_SECONDS = 24  # thumbnails every 10 s: three tiles to click between
PREVIEW_WAIT = 120  # seconds for its preview job
OFFICER = ("olivia", "officer-pass-1")
CSP = ("default-src 'self'; media-src 'self'; img-src 'self'; style-src 'self'; "
       "script-src 'self'")


class Ctx:
    pass


def b64(s):
    return base64.b64encode(s.encode()).decode()


def make_clip(path):
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                        "-t", str(CLIP_SECONDS), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-shortest", path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def upload(srv, token, data, filename):
    """One tus creation-with-upload request; returns the evidence id."""
    meta = f"filename {b64(filename)},filetype {b64('video/mp4')}"
    st, doc, r = srv.request("POST", "/v1/uploads", body=data, token=token, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta,
        "Content-Type": "application/offset+octet-stream"})
    assert st == 201, (st, doc)
    ev = r.getheader("Evidence-Id")
    assert ev == hashlib.sha256(data).hexdigest(), ev
    return ev


def setup():
    c = Ctx()
    c.srv = Server().start()  # workers = 1: serve supervises a worker process
    c.admin = c.srv.admin_token()
    st, doc, _ = c.srv.request("POST", "/v1/admin/users", {
        "username": OFFICER[0], "password": OFFICER[1], "role": "officer"}, token=c.admin)
    assert st == 201, doc
    c.officer = c.srv.login(*OFFICER)[1]["token"]
    clip = os.path.join(c.srv.root, "clip.mp4")
    make_clip(clip)
    with open(clip, "rb") as f:
        c.data = f.read()
    c.ev = upload(c.srv, c.officer, c.data, "street-cam 2026-11-24.mp4")
    # Not a video at all: its preview job ends dead with the reason.
    c.bad = upload(c.srv, c.officer, b"this is a text file, not an MP4\n" * 100, "notes.mp4")
    c.ready = None
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_page_is_served_with_strict_headers(c):
    st, body, r = c.srv.request("GET", "/staff/")
    assert st == 200 and r.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b'<script type="module" src="/staff/app.js"></script>' in body
    assert b"<script>" not in body and b"style=" not in body  # nothing inline (the CSP forbids it)
    assert r.getheader("Content-Security-Policy").startswith(CSP)
    assert "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert r.getheader("Cache-Control") == "no-cache"
    etag = r.getheader("ETag")
    assert etag == '"%s"' % hashlib.sha256(body).hexdigest()
    # Revalidation: 304 without a body, also for a list with a weak tag.
    st, body, r = c.srv.request("GET", "/staff/", headers={"If-None-Match": etag})
    assert st == 304 and not body and r.getheader("ETag") == etag
    st, _, _ = c.srv.request("GET", "/staff/", headers={"If-None-Match": f'"x", W/{etag}'})
    assert st == 304
    st, _, _ = c.srv.request("GET", "/staff/", headers={"If-None-Match": '"other"'})
    assert st == 200
    js = "text/javascript; charset=utf-8"
    # Every module of server/web is served byte for byte as embedded at
    # build time, and every module another imports is served.
    web = os.path.join(HERE, "..", "..", "server", "web")
    modules = sorted(f for f in os.listdir(web) if f.endswith(".js"))
    for name, ctype in tuple((m, js) for m in modules) + (
            ("app.css", "text/css; charset=utf-8"), ("favicon.svg", "image/svg+xml")):
        st, body, r = c.srv.request("GET", f"/staff/{name}")
        assert st == 200 and r.getheader("Content-Type") == ctype, (name, st)
        with open(os.path.join(web, name), "rb") as f:
            assert body == f.read(), name  # embedded at build time, byte for byte
        if name.endswith(".js"):
            for imp in re.findall(rb"^import (?:[^'\n]* from )?'\./([a-z0-9_.-]+)';$", body, re.M):
                st, _, _ = c.srv.request("HEAD", f"/staff/{imp.decode()}")
                assert st == 200, (name, imp, st)
    # The vendored bundle (tus-js-client, @noble/hashes) and its licences,
    # built by server/web/vendor/build.mjs into the build directory.
    built = os.path.join(os.path.dirname(os.path.dirname(os.environ["DEMSD"])), "server", "web")
    st, body, r = c.srv.request("GET", "/staff/upload-kit.js")
    assert st == 200 and r.getheader("Content-Type") == js
    with open(os.path.join(built, "upload-kit.js"), "rb") as f:
        assert body == f.read()
    assert b"/staff/licenses.txt" in body.split(b"\n", 2)[1]  # the banner names the licences
    assert re.search(rb"^export \{[^}]*\bUpload\b[^}]*\bsha256\b", body, re.M | re.S), body[-300:]
    st, body, r = c.srv.request("GET", "/staff/licenses.txt")
    assert st == 200 and r.getheader("Content-Type") == "text/plain; charset=utf-8"
    text = body.decode()
    lock = json.load(open(os.path.join(web, "vendor", "package-lock.json")))
    for name in ("tus-js-client", "@noble/hashes"):
        version = lock["packages"][f"node_modules/{name}"]["version"]
        assert f"\n{name} {version} (MIT)\n" in text, name
    assert "Permission is hereby granted" in text and "js-base64" in text
    st, body, r = c.srv.request("HEAD", "/staff/app.js")
    assert st == 200 and not body and int(r.getheader("Content-Length")) > 0
    st, doc, _ = c.srv.request("GET", "/staff/nothing.js")
    assert st == 404 and doc["code"] == "not_found"
    st, doc, _ = c.srv.request("POST", "/staff/")
    assert st == 405
    for path in ("/", "/staff"):
        st, _, r = c.srv.request("GET", path)
        assert st == 302 and r.getheader("Location") == "/staff/", (path, st)


def wait_preview(c):
    """Waits (bounded) for the preview job; fails saying where it stood."""
    if c.ready is not None:
        assert c.ready, "the preview did not become ready (see the first failure)"
        return
    deadline = time.time() + PREVIEW_WAIT
    doc = {}
    while time.time() < deadline:
        st, doc, _ = c.srv.request("GET", f"/v1/evidence/{c.ev}", token=c.officer)
        assert st == 200, doc
        if doc.get("preview_job") in ("done", "dead"):
            break
        time.sleep(0.5)
    kinds = sorted(p["kind"] for p in doc.get("previews") or [])
    c.ready = doc.get("preview_job") == "done" and "proxy" in kinds
    while c.ready and time.time() < deadline:  # the bad file comes next in the queue
        st, bad, _ = c.srv.request("GET", f"/v1/evidence/{c.bad}", token=c.officer)
        if bad.get("preview_job") in ("done", "dead"):
            break
        time.sleep(0.2)
    if not c.ready:
        st, jobs, _ = c.srv.request("GET", "/v1/admin/jobs?kind=preview", token=c.admin)
        job = (jobs or {}).get("jobs", [{}])[0] if st == 200 else {}
        raise AssertionError(
            f"the preview did not become ready within {PREVIEW_WAIT} s: preview_job="
            f"{doc.get('preview_job')!r}, previews={kinds}, last_error={job.get('last_error')!r}")
    assert kinds == ["poster", "proxy", "sprite", "sprite_vtt"], kinds


def test_preview_job_finishes(c):
    wait_preview(c)
    st, doc, _ = c.srv.request("GET", "/v1/evidence?limit=5", token=c.officer)
    assert st == 200 and [e["id"] for e in doc["evidence"]] == [c.bad, c.ev], doc
    bad = doc["evidence"][0]
    assert bad["preview_job"] == "dead" and bad["has_preview"] is False, bad
    item = doc["evidence"][1]
    assert item["has_preview"] is True and item["preview_job"] == "done"
    assert item["filename"] == "street-cam 2026-11-24.mp4" and item["uploaded_by"] == OFFICER[0]


def browser_available():
    missing = [p for p in ("/usr/bin/chromium", shutil.which("node") or "/nonexistent/node")
               if not os.path.exists(p)]
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        missing.append("tests/browser/node_modules/playwright-core "
                       "(deploy/install-test.d/browser-test installs it)")
    assert not missing, "cannot run the browser test; missing: " + ", ".join(missing)


def views(c):
    """The VIEWED entries of our evidence, read back through the ledger API."""
    st, note, _ = c.srv.request("GET", "/v1/ledger/checkpoint")
    size = int(note.decode().split("\n")[1])
    return [e["body"] for e in ledger_entries(c.srv, c.admin, 0, size)
            if e["body"]["type"] == "VIEWED" and e["body"].get("artefact") == c.ev]


def wait_views(c, want_kinds, timeout=10):
    """Entries become visible once a checkpoint covers them (at most ~1 s)."""
    deadline = time.time() + timeout
    while True:
        found = views(c)
        if {e["payload"].get("preview") for e in found} >= want_kinds or time.time() > deadline:
            return found
        time.sleep(0.3)


def test_browser_plays_preview_seeks_and_scrubs(c):
    wait_preview(c)
    browser_available()
    shot = os.path.join(c.srv.root, "staff.png")
    t0 = time.time()
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "staff_page.mjs"),
                        f"https://127.0.0.1:{c.srv.port}/staff/", OFFICER[0], OFFICER[1], c.ev,
                        shot, c.bad], capture_output=True, text=True, timeout=90)
    took = time.time() - t0
    # A player's range requests are the first to find some server bugs.
    assert c.srv.proc.poll() is None, (
        f"demsd died (exit {c.srv.proc.returncode}) while the browser played the preview; "
        f"log tail: {c.srv.tail(3000)}")
    lines = r.stdout.strip().splitlines()
    assert lines, f"no summary from the browser (exit {r.returncode}): {r.stderr[-2000:]}"
    s = json.loads(lines[-1])
    print(f"     browser: {took:.1f} s, chromium {s.get('browser')}, summary {json.dumps(s)}")
    assert r.returncode == 0 and s["ok"], s
    assert s["page_status"] == 200 and s["csp"].startswith(CSP)
    assert s["console_errors"] == [] and s["page_errors"] == [] and s["failed_requests"] == []
    assert s["error_responses"] == [], s["error_responses"]
    assert s["cookie"] == {"httpOnly": True, "secure": True, "sameSite": "Strict",
                           "path": "/v1/"}, s["cookie"]
    assert "street-cam 2026-11-24.mp4" in s["item_text"] and s["item_text"].endswith(" ready"), s
    assert s["list_items"] == 2, s["list_items"]
    assert s["ready_state"] >= 2 and abs(s["duration"] - CLIP_SECONDS) < 0.5, s
    assert s["video_size"] == [640, 360], s["video_size"]
    assert s["poster"].endswith(f"/v1/evidence/{c.ev}/poster")
    mid = s["seek_middle"]
    assert mid["readyState"] >= 2 and abs(mid["currentTime"] - s["duration"] / 2) < 0.5, mid
    assert s["tiles"] == 3, s["tiles"]  # 0 s, 10 s, 20 s
    assert "/sprite.jpg" in s["tile_style"]["backgroundImage"], s["tile_style"]
    assert s["sprite_loaded"] and s["sprite_loaded"][0] > 0, s["sprite_loaded"]
    ts = s["tile_seek"]
    assert ts["start"] > 0 and abs(ts["current_time"] - ts["start"]) < 0.5, ts
    assert s["tile_current"] == "true"
    assert s["keyboard_seek"] == 20, s["keyboard_seek"]
    # The file that is no video: a message, no player, no requests for media.
    assert s["failed_message"].startswith("No preview can be made of this file "), s["failed_message"]
    assert "[media_invalid]" in s["failed_message"], s["failed_message"]
    assert s["failed_player"] == {"video_hidden": True, "src": None, "tiles": 0}, s
    assert not [m for m in s["media_responses"] if m["id"] == c.bad], s["media_responses"]
    # Every media answer was a success, served under the cookie.
    bad = [m for m in s["media_responses"] if m["status"] not in (200, 206, 304)]
    assert not bad, bad
    assert {m["id"] for m in s["media_responses"]} == {c.ev}, s["media_responses"]
    previews = [m for m in s["media_responses"] if m["path"] == "preview"]
    assert previews and all(m["type"] == "video/mp4" for m in previews), previews
    c.browser_previews = len(previews)


def test_views_ledgered_once_per_user_and_kind(c):
    wait_preview(c)
    assert getattr(c, "browser_previews", 0) >= 1, "the browser test did not play the preview"
    # More range requests of the same user (as a player makes) add nothing.
    for rng in ("bytes=0-1023", "bytes=2048-", "bytes=-100"):
        st, _, r = c.srv.request("GET", f"/v1/evidence/{c.ev}/preview", token=c.officer,
                                 headers={"Range": rng})
        assert st == 206, (rng, st)
    found = wait_views(c, {"proxy", "poster", "sprite_vtt", "sprite"})
    officer = [e for e in found if e["actor"] == {"id": OFFICER[0], "kind": "user"}]
    kinds = sorted(e["payload"]["preview"] for e in officer)
    assert kinds == ["poster", "proxy", "sprite", "sprite_vtt"], kinds
    # Another user's first view is their own entry.
    st, _, _ = c.srv.request("GET", f"/v1/evidence/{c.ev}/poster", token=c.admin)
    assert st == 200
    deadline = time.time() + 10
    while time.time() < deadline:
        admin = [e for e in views(c) if e["actor"]["id"] == "admin"]
        if admin:
            break
        time.sleep(0.3)
    assert [e["payload"]["preview"] for e in admin] == ["poster"], admin


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
