# SPDX-License-Identifier: Apache-2.0
"""The staff application's face-search page (server/web/face.js) end to
end: a real demsd with its PostgreSQL, its worker (previews, face indexing,
searches), the media sandbox and the face engine, and headless Chromium
(Debian's chromium driven by playwright-core, tests/browser/face_page.mjs);
every check is made on what the page showed and on the server's state.

The footage is a 12 s slideshow made with the ffmpeg command line from the
face test images (tests/face/images), as in test_face_search.py: no face
for 3 s, person A (portrait.jpg) from 3 s to 6 s, a photo of other people
(scaled.jpg, the distractors) from 6 s to 9 s, and A again from 9 s to 12 s.

- An administrator grants the face-search permission to an officer (the
  API, PATCH /v1/admin/users/{id}); the officer's case holds the footage as
  exhibit EX1 (made through the API: the case pages have their own test).
- The officer finds "Face search" on the case page, enables indexing in the
  page, leaves and comes back while it runs (no progress is asked for
  while away), follows the progress to done, sees the faces as crops,
  starts a search from A's first face: first without a purpose (the page
  marks the field and sends nothing), then with a legal basis the server no
  longer offers (its 400, word for word, beside the field), then as it
  should be; sees the results under "investigative lead — not an
  identification", each with a score, finds them all at A's times, opens
  the best one and the footage plays from that moment; the search is in the
  case's list of searches and on the record (FACE_SEARCH, with the purpose
  fields) as the page showed it. A second search, from a photo of A chosen
  from disk (read by the page as base64), finds both of A's appearances;
  reloaded, the page shows the same results (the address keeps them).
- An officer of the same case without the permission sees no link on the
  case page and, at the page's address, only what the permission is.
axe-core runs on each view (no serious or critical violation); screenshots
are kept under build/.../screenshots/face_page/."""
import base64
import hashlib
import os
import shutil
import subprocess
import time

from harness import Server, browser_journey, ledger_entries, run_tests

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "..", "face", "images")
PASSWORD = "correct horse battery"
USERS = {"fiona": "officer", "oscar": "officer"}
SETTINGS = {"refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000,
            "job_backoff_base": 1, "job_backoff_max": 2, "job_max_attempts": 2,
            "worker_slots": 2, "face_sample_fps": 2}
NOTICE = "investigative lead — not an identification"
BASIS = "DPA 2018 s.35 law enforcement processing"
SLIDES = ["noface.jpg", "portrait.jpg", "scaled.jpg", "portrait.jpg"]  # 3 s each
A_TIMES = [(3, 6), (9, 12)]
PREVIEW_WAIT = 300
JOURNEY_TIMEOUT = 600  # the sanitizer build indexes the 12 s slowly


class Ctx:
    pass


def ok(c, method, path, body=None, token=None, want=(200, 201, 202)):
    st, doc, _ = c.srv.request(method, path, body, token=token)
    assert st in want, (method, path, st, doc)
    return doc


def make_video(path):
    inputs, parts = [], []
    for i, name in enumerate(SLIDES):
        inputs += ["-loop", "1", "-t", "3", "-i", os.path.join(IMAGES, name)]
        parts.append(f"[{i}]scale=640:480:force_original_aspect_ratio=decrease,"
                     f"pad=640:480:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=10[v{i}]")
    graph = ";".join(parts) + ";" + "".join(f"[v{i}]" for i in range(len(SLIDES))) + \
        f"concat=n={len(SLIDES)}:v=1:a=0[out]"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *inputs, "-filter_complex", graph,
                    "-map", "[out]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                    "yuv420p", path], check=True, timeout=180)
    with open(path, "rb") as f:
        return f.read()


def upload(c, token, data, filename):
    meta = f"filename {base64.b64encode(filename.encode()).decode()}"
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta,
        "Content-Type": "application/offset+octet-stream"})
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def wait_preview(c):
    deadline = time.time() + PREVIEW_WAIT
    doc = {}
    while time.time() < deadline:
        doc = ok(c, "GET", f"/v1/evidence/{c.ev}", token=c.tok["fiona"])
        if doc.get("preview_job") in ("done", "dead"):
            break
        time.sleep(0.5)
    kinds = sorted(p["kind"] for p in doc.get("previews") or [])
    assert "proxy" in kinds, (doc.get("preview_job"), kinds)


def in_a_times(t):
    return any(lo - 0.6 <= t <= hi + 0.6 for lo, hi in A_TIMES)


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.tok, c.ids = {}, {}
    for name, role in USERS.items():
        u = ok(c, "POST", "/v1/admin/users", {"username": name, "password": PASSWORD,
                                              "role": role}, c.admin)
        c.ids[name] = u["id"]
    # The administrator grants the permission to one officer only.
    doc = ok(c, "PATCH", f"/v1/admin/users/{c.ids['fiona']}", {"face_search": True}, c.admin)
    assert doc["face_search"] is True and doc["seq"] is not None, doc
    for name in USERS:
        c.tok[name] = c.srv.login(name, PASSWORD)[1]["token"]
    case = ok(c, "POST", "/v1/cases", {"reference": "FP/1", "title": "Robbery on the High St"},
              c.tok["fiona"])
    c.case = case["id"]
    c.video = make_video(os.path.join(c.srv.root, "street.mp4"))
    c.ev = upload(c, c.tok["fiona"], c.video, "street camera.mp4")
    # "A different photo" of A (as test_face_search.py makes it).
    c.photo = os.path.join(c.srv.root, "probe.jpg")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i",
                    os.path.join(IMAGES, "portrait.jpg"), "-vf",
                    "crop=300:360:25:40,eq=brightness=0.06:contrast=1.1,scale=220:-2", "-q:v", "7",
                    c.photo], check=True, timeout=60)
    ok(c, "POST", f"/v1/cases/{c.case}/exhibits", {"evidence": c.ev, "reference": "EX1"},
       c.tok["fiona"])
    ok(c, "PUT", f"/v1/cases/{c.case}/members/oscar", {"role": "investigator"}, c.tok["fiona"])
    wait_preview(c)
    build = os.path.dirname(os.path.dirname(os.environ["DEMSD"]))
    c.shots = os.path.join(build, "screenshots", "face_page")
    shutil.rmtree(c.shots, ignore_errors=True)
    return c


def teardown(c):
    assert c.srv.stop() == 0


def browser(c, journey, cfg):
    cfg = dict(cfg, url=f"https://127.0.0.1:{c.srv.port}/staff/", case_id=c.case,
               passwords={u: PASSWORD for u in USERS}, shots=c.shots,
               timeout_ms=(JOURNEY_TIMEOUT - 30) * 1000)
    s = browser_journey(c.srv, "face_page.mjs", journey, cfg, timeout=JOURNEY_TIMEOUT)
    assert s["console_errors"] == [] and s["page_errors"] == [] and s["failed_requests"] == [], s
    for view, violations in s.get("axe", {}).items():
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, (journey, view, bad)
        for v in violations:
            print(f"     axe {view}: {v['impact']} {v['id']} ×{v['nodes']} {v['targets'][:2]}")
    return s


def test_searcher_journey(c):
    s = browser(c, "searcher", {"user": "fiona", "evidence": c.ev, "basis": BASIS,
                                "stale_basis": "Because we can", "photo": c.photo})
    assert s["face_link"], "no face-search link on the case page"
    # Indexing: enabled by the page, followed to done; nothing asked while away.
    assert s["toggle_before"] == "Enable face indexing", s["toggle_before"]
    assert s["toggle_after"] == "Disable face indexing", s["toggle_after"]
    assert s["polls_while_away"] == 0, s
    assert s["progress_states"][-1] == "done", s["progress_states"]
    assert set(s["progress_states"]) <= {"not_indexed", "queued", "done"}, s["progress_states"]
    status = ok(c, "GET", f"/v1/cases/{c.case}/face", token=c.tok["fiona"])
    assert status["enabled"] and status["enabled_by"] == "fiona", status
    assert [a["state"] for a in status["artefacts"]] == ["done"], status
    assert f"{status['tracks']} faces found" in s["summary"], (s["summary"], status)
    assert s["legal_bases"] == status["legal_bases"] and BASIS in s["legal_bases"], s
    # The faces: as the server lists them, each crop loaded.
    tracks = ok(c, "GET", f"/v1/cases/{c.case}/face/tracks?limit=200",
                token=c.tok["fiona"])["tracks"]
    assert s["tracks"] == [t["id"] for t in tracks][:24], (s["tracks"], tracks)
    assert s["crops_loaded"] == len(s["tracks"]) and len(s["tracks"]) >= 2, s
    probe = [t for t in tracks if t["id"] == s["probe_track"]][0]
    assert 2.4 <= probe["t_first"] <= 6, probe
    # First without a purpose: marked by the page, nothing sent.
    assert s["purpose_error"], s
    assert s["posts_without_purpose"] == 0, s
    # Then a legal basis the server does not offer: its 400 beside the field.
    st, refused, _ = c.srv.request("POST", f"/v1/cases/{c.case}/face/searches", {
        "scope": "footage", "probe": {"track": probe["id"]}, "purpose": "x",
        "legal_basis": "Because we can", "authorisation": "x"}, token=c.tok["fiona"])
    assert st == 400 and refused["code"] == "invalid_field", refused
    assert s["basis_error"] == refused["detail"], (s["basis_error"], refused)
    assert s["error_responses"] == [f"POST /v1/cases/{c.case}/face/searches: 400"], \
        s["error_responses"]
    # The search as the server holds it, and its results as the page showed them.
    searches = ok(c, "GET", f"/v1/cases/{c.case}/face/searches", token=c.tok["fiona"])["searches"]
    assert len(searches) == 2, searches
    sid, pid = searches[0]["id"], searches[1]["id"]
    assert s["search_id"] == sid and s["photo_search_id"] == pid, s
    assert s["history"] == [[pid, "done"], [sid, "done"]], s  # newest first
    res = ok(c, "GET", f"/v1/cases/{c.case}/face/searches/{sid}", token=c.tok["fiona"])
    assert res["state"] == "done" and res["probe_track"] == probe["id"], res
    assert res["purpose"] == "Find where the suspect appears again" and \
        res["legal_basis"] == BASIS and res["authorisation"] == "DI Jones, AUTH-42", res
    assert NOTICE in s["notice"], s["notice"]
    cands = res["candidates"]
    assert cands and all(in_a_times(x["t"]) for x in cands), cands
    assert all(x["score"] >= 0.5 for x in cands), cands
    assert probe["id"] not in [x["track"]["id"] for x in cands], cands
    assert s["results"] == [{"rank": x["rank"], "artefact": x["artefact"], "t": x["t"],
                             "score": f"score {x['score']:.2f}"} for x in cands], \
        (s["results"], cands)
    # The best one plays from its moment.
    v = s["video"]
    assert v["src"] == f"/v1/evidence/{c.ev}/preview", v
    assert abs(v["current_time"] - cands[0]["t"]) < 1.0, (v, cands[0])
    assert NOTICE in s["player_title"], s["player_title"]
    # The photo: the bytes chosen on disk are the probe; both appearances of A.
    assert s["photo_checked"], s
    with open(c.photo, "rb") as f:
        photo_sha = hashlib.sha256(f.read()).hexdigest()
    res2 = ok(c, "GET", f"/v1/cases/{c.case}/face/searches/{pid}", token=c.tok["fiona"])
    assert res2["state"] == "done" and res2["probe_sha256"] == photo_sha, res2
    assert res2["probe_track"] is None, res2
    got = res2["candidates"]
    assert s["photo_results"] == [{"rank": x["rank"], "artefact": x["artefact"], "t": x["t"]}
                                  for x in got], (s["photo_results"], got)
    assert all(in_a_times(x["t"]) for x in got), got
    assert {lo for lo, hi in A_TIMES if any(lo - 0.6 <= x["t"] <= hi + 0.6 for x in got)} == \
        {lo for lo, _ in A_TIMES}, got  # both appearances
    assert s["reloaded_search"] == pid and s["reloaded_results"] == len(got), s
    # On the record: the switch and the searches, by the officer.
    ents = [e["body"] for e in ledger_entries(c.srv, c.admin)]
    switched = [e for e in ents if e["type"] == "FACE_INDEXING_CHANGED"]
    assert [(e["actor"]["id"], e["payload"]["enabled"]) for e in switched] == [("fiona", True)]
    found = [e for e in ents if e["type"] == "FACE_SEARCH"]
    assert [e["actor"]["id"] for e in found] == ["fiona", "fiona"], found
    p = found[0]["payload"]
    assert p["legal_basis"] == BASIS and p["authorisation"] == "DI Jones, AUTH-42", p
    assert p["results"] == len(cands), p
    assert found[1]["payload"]["probe_sha256"] == photo_sha, found[1]


def test_officer_without_the_permission(c):
    s = browser(c, "plain", {"user": "oscar"})
    assert s["case_page"] and not s["face_link"], s
    assert s["explanation"].startswith("Face search needs the face-search permission"), s
    assert s["controls"] == {"toggle": 0, "search_form": 0, "tracks": 0, "history": 0}, s
    assert s["error_responses"] == [], s["error_responses"]
    me = ok(c, "GET", "/v1/me", token=c.tok["oscar"])
    assert me["face_search"] is False, me


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
