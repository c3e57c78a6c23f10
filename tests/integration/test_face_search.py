# SPDX-License-Identifier: Apache-2.0
"""Face search end to end (docs/face-search.md) against a real demsd, its
PostgreSQL, its worker, the media sandbox and the face engine.

The footage is a slideshow made with the ffmpeg command line from the face
test images (tests/face/images, from face-api's demo photos; provenance in
tests/face/make-images.sh): no face for 3 s, person A (portrait.jpg) from 3 s
to 6 s, two photos of other people (scaled.jpg, flipped.jpg: the
distractors, all at descriptor distance >= 0.63 from A) from 6 s to 12 s,
and A again from 12 s to 15 s. The probe is "a different photo" of A: a
tighter, brighter, smaller, recompressed version of portrait.jpg. After
indexing, a search finds A's times above the threshold and none of the
distractors; a search never returns footage of a case the searcher cannot
see; a removed gallery subject leaves later results; a damaged index file is
rebuilt from PostgreSQL; missing purpose, legal basis or permission is
refused and the refusal ledgered; hostile images and videos fail their job
with a reason and harm nothing."""
import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import time
import zipfile

from harness import Server, eventually, ledger_entries, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "..", "face", "images")

# The default rate (2 frames a second): each appearance of A is a track of
# several detections, in the sanitizer build too (about a minute there).
FPS = 2
SETTINGS = {"refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000,
            "job_backoff_base": 1, "job_backoff_max": 2, "job_max_attempts": 2,
            "worker_slots": 2, "face_sample_fps": FPS}
NOTICE = "investigative lead — not an identification"
BASIS = "DPA 2018 s.35 law enforcement processing"
A_TIMES = [(3, 6), (12, 15)]


class Ctx:
    pass


def sha(data):
    return hashlib.sha256(data).hexdigest()


def req(c, method, path, body=None, token=None, headers=None):
    st, doc, r = c.srv.request(method, path, body, token=token, headers=headers)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc, r


def make_user(c, name, role):
    st, doc, _ = req(c, "POST", "/v1/admin/users",
                     {"username": name, "password": "correct horse", "role": role}, c.admin)
    assert st == 201, doc
    return doc["id"], c.srv.login(name, "correct horse")[1]["token"]


def upload(c, token, data, name):
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    st, doc, r = req(c, "POST", "/v1/uploads", body=data, token=token, headers=dict(
        TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta,
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def add_exhibit(c, case, token, ev, ref):
    st, doc, _ = req(c, "POST", f"/v1/cases/{case}/exhibits",
                     {"evidence": ev, "reference": ref}, token)
    assert st == 201, doc


def ffmpeg(out, *args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args, out], check=True,
                   timeout=180)
    return open(out, "rb").read()


def image(name):
    return os.path.join(IMAGES, name)


def b64(data):
    return base64.b64encode(data).decode()


def wait(c, what, fn, timeout=900):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not in time ({got}); {c.srv.tail()}")


def face_status(c, case, token):
    st, doc, _ = req(c, "GET", f"/v1/cases/{case}/face", token=token)
    assert st == 200, doc
    return doc


def wait_indexed(c, case, token):
    def done():
        doc = face_status(c, case, token)
        return doc if doc["counts"]["queued"] == 0 and doc["artefacts"] else None
    return wait(c, "face indexing", done)


def search(c, case, token, body):
    st, doc, _ = req(c, "POST", f"/v1/cases/{case}/face/searches", body, token)
    assert st == 202, (st, doc)
    sid = doc["id"]

    def done():
        st, d, _ = req(c, "GET", f"/v1/cases/{case}/face/searches/{sid}", token=token)
        assert st == 200, d
        return d if d["state"] != "queued" else None
    return wait(c, f"search {sid}", done)


def purpose(**kw):
    body = {"purpose": "identify the suspect of the High St robbery",
            "legal_basis": BASIS, "authorisation": "Supt J Smith, ref AUTH-2026-117"}
    body.update(kw)
    return body


def entries_of(c, kind):
    return [e for e in ledger_entries(c.srv, c.admin) if e["body"]["type"] == kind]


def in_a_times(t):
    return any(lo - 0.6 <= t <= hi + 0.6 for lo, hi in A_TIMES)


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.off_id, c.off = make_user(c, "foff", "officer")
    c.plain_id, c.plain = make_user(c, "fplain", "officer")
    c.other_id, c.other = make_user(c, "fother", "officer")
    c.pros_id, c.pros = make_user(c, "fpros", "prosecutor")
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "F/1", "title": "High St robbery"},
                     c.off)
    assert st == 201, doc
    c.case = doc["id"]
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "F/2", "title": "Other matter"},
                     c.other)
    assert st == 201, doc
    c.other_case = doc["id"]
    d = c.srv.root
    parts, inputs = [], []
    for i, name in enumerate(["noface.jpg", "portrait.jpg", "scaled.jpg", "flipped.jpg",
                              "portrait.jpg"]):
        inputs += ["-loop", "1", "-t", "3", "-i", image(name)]
        parts.append(f"[{i}]scale=640:480:force_original_aspect_ratio=decrease,"
                     f"pad=640:480:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=10[v{i}]")
    graph = ";".join(parts) + ";" + "".join(f"[v{i}]" for i in range(5)) + \
        "concat=n=5:v=1:a=0[out]"
    c.video = ffmpeg(os.path.join(d, "street.mp4"), *inputs, "-filter_complex", graph, "-map",
                     "[out]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
    # "A different photo" of A: tighter, brighter, smaller, recompressed.
    c.probe = ffmpeg(os.path.join(d, "probe.jpg"), "-i", image("portrait.jpg"), "-vf",
                     "crop=300:360:25:40,eq=brightness=0.06:contrast=1.1,scale=220:-2",
                     "-q:v", "7")
    # A distractor's face alone (scaled.jpg's first face, enlarged), for the gallery.
    c.distractor = ffmpeg(os.path.join(d, "distractor.jpg"), "-i", image("scaled.jpg"), "-vf",
                          "crop=150:170:130:110,scale=300:-2", "-q:v", "3")
    c.noface = open(image("noface.jpg"), "rb").read()
    c.three = open(image("flipped.jpg"), "rb").read()
    c.truncated = c.probe[:len(c.probe) // 3]
    # A hostile "video": an MP4 head and then garbage.
    c.hostile = c.video[:4096] + os.urandom(30000)
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_permission_is_granted_by_an_admin_and_ledgered(c):
    st, doc, _ = req(c, "GET", "/v1/me", token=c.off)
    assert st == 200 and doc["face_search"] is False, doc
    for uid in (c.off_id, c.other_id):
        st, doc, _ = req(c, "PATCH", f"/v1/admin/users/{uid}", {"face_search": True}, c.admin)
        assert st == 200 and doc["face_search"] is True and doc["seq"] > 0, doc
    st, doc, _ = req(c, "PATCH", f"/v1/admin/users/{c.off_id}", {"face_search": True}, c.admin)
    assert st == 200 and doc["seq"] is None, doc  # no change, no entry
    st, doc, _ = req(c, "PATCH", f"/v1/admin/users/{c.pros_id}", {"face_search": True}, c.admin)
    assert st == 400 and doc["code"] == "invalid_field", doc
    st, doc, _ = req(c, "PATCH", f"/v1/admin/users/{c.off_id}", {"face_search": "yes"}, c.admin)
    assert st == 400 and "face_search" in doc["detail"], doc
    st, doc, _ = req(c, "PATCH", f"/v1/admin/users/{c.off_id}", {"face_search": True}, c.off)
    assert st == 403, doc
    # A fresh login carries the permission.
    c.off = c.srv.login("foff", "correct horse")[1]["token"]
    c.other = c.srv.login("fother", "correct horse")[1]["token"]
    st, doc, _ = req(c, "GET", "/v1/me", token=c.off)
    assert doc["face_search"] is True, doc
    grants = [e["body"] for e in entries_of(c, "USER_UPDATED")]
    assert {g["payload"]["username"] for g in grants} == {"foff", "fother"}, grants
    assert all(g["payload"]["changes"]["face_search"] == {"from": False, "to": True}
               for g in grants), grants


def test_without_permission_or_purpose_refused_and_ledgered(c):
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/face/indexing", {"enabled": True}, c.plain)
    assert st == 403 and doc["code"] == "face_search_not_permitted", doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/face/searches",
                     purpose(scope="footage", probe={"image": b64(c.probe)}), c.plain)
    assert st == 403 and doc["code"] == "face_search_not_permitted", doc
    cases = [
        (purpose(purpose=None, scope="footage", probe={"track": 1}), "purpose"),
        (purpose(legal_basis="because", scope="footage", probe={"track": 1}), "legal_basis"),
        (purpose(authorisation="", scope="footage", probe={"track": 1}), "authorisation"),
        (purpose(scope="everything", probe={"track": 1}), "scope"),
        (purpose(scope="footage", probe={}), "probe"),
        (purpose(scope="footage", probe={"track": 1}, threshold=0.3), "threshold"),
        (purpose(scope="gallery", probe={"track": 1}), "gallery"),
    ]
    for body, field in cases:
        body = {k: v for k, v in body.items() if v is not None}
        st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/face/searches", body, c.off)
        assert st == 400 and doc["code"] == "invalid_field", (field, doc)
        assert f'"{field}"' in doc["detail"], (field, doc)

    want = {"face-search permission required"} | {
        f"face search refused: field {f}" for _, f in cases}

    def missing():
        reasons = [e["body"]["payload"].get("reason", "") for e in
                   entries_of(c, "ACCESS_DENIED")]
        return [w for w in want if not any(r.startswith(w) for r in reasons)]
    # eventually() waits for a true result: "nothing missing".
    assert eventually(lambda: not missing(), timeout=60), missing()


def test_indexing_finds_tracks_and_hostile_media_fails(c):
    c.video_id = upload(c, c.off, c.video, "street.mp4")
    add_exhibit(c, c.case, c.off, c.video_id, "EX1")
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/face/indexing", {"enabled": True}, c.off)
    assert st == 200 and doc["enabled"] is True and doc["seq"] > 0, doc
    # An exhibit that joins later is queued by the trigger.
    c.hostile_id = upload(c, c.off, c.hostile, "broken.mp4")
    add_exhibit(c, c.case, c.off, c.hostile_id, "EX2")
    doc = wait_indexed(c, c.case, c.off)
    # What a search form offers: the configured legal bases, the lowest threshold.
    assert BASIS in doc["legal_bases"] and len(doc["legal_bases"]) == 3, doc["legal_bases"]
    assert doc["threshold"] == 0.5, doc["threshold"]
    arts = {a["artefact"]: a for a in doc["artefacts"]}
    assert arts[c.video_id]["state"] == "done", arts
    assert arts[c.video_id]["frames"] >= int(15 * FPS) - 1, arts  # 15 s at FPS a second
    assert arts[c.hostile_id]["state"] in ("failed", "skipped"), arts
    assert arts[c.hostile_id]["error"], arts
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/face/tracks?limit=200", token=c.off)
    assert st == 200, doc
    tracks = doc["tracks"]
    c.tracks = tracks
    a_tracks = [t for t in tracks if any(lo - 0.6 <= t["t_first"] <= hi for lo, hi in A_TIMES)
                and t["t_last"] - t["t_first"] >= (1.5 if FPS >= 2 else 0)]
    assert len(a_tracks) >= 2, tracks
    # Nothing before 3 s (no face there).
    assert all(t["t_first"] >= 2.4 for t in tracks), tracks
    c.a_track = min(a_tracks, key=lambda t: t["t_first"])
    st, body, r = req(c, "GET", c.a_track["crop"], token=c.off)
    assert st == 200 and body[:3] == b"\xff\xd8\xff", (st, body[:20])
    assert r.getheader("Content-Type") == "image/jpeg"
    e = [x["body"] for x in entries_of(c, "FACE_INDEXED")]
    assert len(e) == 1 and e[0]["artefact"] == c.video_id, e
    p = e[0]["payload"]
    assert p["counts"]["tracks"] == len(tracks) and p["counts"]["frames"] >= int(15 * FPS) - 1, p
    assert p["params"]["fps"] == f"{FPS:g}" and len(p["engine"]["models"]) == 4, p
    assert all(len(h) == 64 for h in p["engine"]["models"].values()), p
    # The officer without the permission sees progress but not tracks.
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/face/tracks", token=c.plain)
    assert st == 403, doc


def check_found_a(c, res):
    assert res["state"] == "done", res
    assert res["notice"] == NOTICE, res
    cands = res["candidates"]
    assert cands, res
    top = cands[0]
    assert top["score"] >= 0.5 and in_a_times(top["t"]), res
    # Every candidate is A (the distractors are below the threshold).
    assert all(in_a_times(x["t"]) for x in cands), cands
    assert all(x["score"] >= 0.5 for x in cands), cands
    assert top["preview"].startswith(f"/v1/evidence/{c.video_id}/preview#t="), top
    return cands


def test_footage_search_by_photo_finds_a_not_distractors(c):
    res = search(c, c.case, c.off, purpose(scope="footage", probe={"image": b64(c.probe)}))
    cands = check_found_a(c, res)
    assert res["probe_sha256"] == sha(c.probe), res
    assert len({x["track"]["id"] for x in cands}) >= 2, cands  # both appearances
    c.first_result = [(x["track"]["id"], round(x["score"], 3)) for x in cands]
    e = [x["body"] for x in entries_of(c, "FACE_SEARCH")]
    assert e, e
    last = e[-1]
    assert last["actor"]["id"] == "foff" and last["case"] == "F/1", last
    p = last["payload"]
    assert p["purpose"].startswith("identify the suspect") and p["legal_basis"] == BASIS, p
    assert p["authorisation"].startswith("Supt J Smith") and p["probe_sha256"] == sha(c.probe)
    assert p["scope"] == "footage" and p["threshold"] == "0.5000", p
    assert p["results"] == len(cands), p


def test_search_by_track_and_a_raised_threshold(c):
    res = search(c, c.case, c.off, purpose(scope="footage", probe={"track": c.a_track["id"]}))
    cands = check_found_a(c, res)
    assert c.a_track["id"] not in [x["track"]["id"] for x in cands], cands  # not itself
    strict = search(c, c.case, c.off, purpose(scope="footage", probe={"image": b64(c.probe)},
                                              threshold=0.99))
    assert strict["state"] == "done" and strict["candidates"] == [], strict


def test_search_never_returns_footage_the_searcher_cannot_see(c):
    res = search(c, c.other_case, c.other,
                 purpose(scope="footage", probe={"image": b64(c.probe)}))
    assert res["state"] == "done" and res["candidates"] == [], res
    st, doc, _ = req(c, "GET", c.a_track["crop"], token=c.other)
    assert st == 404, doc
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.other_case}/face/searches",
                     purpose(scope="footage", probe={"track": c.a_track["id"]}), c.other)
    assert st == 400 and '"probe"' in doc["detail"], doc
    # Nor a case they have no part in.
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/face/searches", token=c.other)
    assert st == 404, doc


def enrol(c, gallery, ref, data):
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{gallery}/subjects",
                     {"reference": ref, "image": b64(data)}, c.admin)
    assert st == 202, (st, doc)
    return doc["id"]


def subjects(c, gallery):
    st, doc, _ = req(c, "GET", f"/v1/admin/face/galleries/{gallery}/subjects?limit=200",
                     token=c.admin)
    assert st == 200, doc
    return {s["reference"]: s for s in doc["subjects"]}


def test_gallery_enrolment_search_and_removal(c):
    st, doc, _ = req(c, "POST", "/v1/admin/face/galleries",
                     {"name": "Custody images", "description": "force custody suite"}, c.admin)
    assert st == 201, doc
    st, doc, _ = req(c, "POST", "/v1/admin/face/galleries", {"name": "custody IMAGES"}, c.admin)
    assert st == 409 and doc["code"] == "gallery_exists", doc
    st, doc, _ = req(c, "GET", "/v1/face/galleries", token=c.admin)
    g = doc["galleries"][0]["id"]
    c.gallery = g
    ids = {"CUST/A": enrol(c, g, "CUST/A", c.probe),
           "CUST/B": enrol(c, g, "CUST/B", c.distractor),
           "CUST/NOFACE": enrol(c, g, "CUST/NOFACE", c.noface),
           "CUST/THREE": enrol(c, g, "CUST/THREE", c.three),
           "CUST/CUT": enrol(c, g, "CUST/CUT", c.truncated)}
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{g}/subjects",
                     {"reference": "CUST/X", "image": b64(b"not an image at all")}, c.admin)
    assert st == 400 and '"image"' in doc["detail"], doc
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{g}/subjects",
                     {"reference": "CUST/A", "image": b64(c.probe)}, c.admin)
    assert st == 409 and doc["code"] == "subject_exists", doc
    subs = wait(c, "enrolment", lambda: (lambda s: s if all(
        x["state"] != "pending" for x in s.values()) else None)(subjects(c, g)))
    assert subs["CUST/A"]["state"] == "enrolled" and subs["CUST/B"]["state"] == "enrolled", subs
    assert subs["CUST/NOFACE"]["state"] == "failed" and "no face" in subs["CUST/NOFACE"]["error"]
    assert subs["CUST/THREE"]["state"] == "failed" and "faces found" in subs["CUST/THREE"]["error"]
    assert subs["CUST/CUT"]["state"] == "failed", subs
    enrolled = [e["body"]["payload"] for e in entries_of(c, "FACE_ENROLLED")]
    assert sorted(p["reference"] for p in enrolled) == ["CUST/A", "CUST/B"], enrolled
    # Searching a gallery needs the admin's grant.
    body = purpose(scope="gallery", gallery=g, probe={"track": c.a_track["id"]})
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/face/searches", body, c.off)
    assert st == 403 and doc["code"] == "gallery_not_permitted", doc
    st, doc, _ = req(c, "PUT", f"/v1/admin/face/galleries/{g}/users/foff", None, c.admin)
    assert st == 200 and doc["may_search"] is True, doc
    res = search(c, c.case, c.off, body)
    assert res["state"] == "done" and res["notice"] == NOTICE, res
    refs = [x["subject"]["reference"] for x in res["candidates"]]
    assert refs == ["CUST/A"], res
    c.gallery_search = res["id"]
    st, crop, r = req(c, "GET", res["candidates"][0]["crop"], token=c.off)
    assert st == 200 and crop[:3] == b"\xff\xd8\xff", st
    # Removal: descriptors, image and crop deleted, ledgered; later searches
    # and the stored result no longer show the subject.
    image_blob = os.path.join(c.srv.data, "blobs", sha(c.probe)[:2], sha(c.probe))
    st, doc, _ = req(c, "DELETE", f"/v1/admin/face/galleries/{g}/subjects/{ids['CUST/A']}",
                     {"reason": "no further action: not convicted"}, c.admin)
    assert st == 200 and doc["removed"] is True, doc
    removed = [e["body"]["payload"] for e in entries_of(c, "FACE_SUBJECT_REMOVED")]
    assert removed and removed[0]["reference"] == "CUST/A", removed
    assert removed[0]["reason"] == "no further action: not convicted", removed
    # The probe image is also the footage search's probe blob: kept for that record.
    assert os.path.exists(image_blob)
    res2 = search(c, c.case, c.off, body)
    assert [x["subject"]["reference"] for x in res2["candidates"]] == [], res2
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/face/searches/{c.gallery_search}",
                     token=c.off)
    assert st == 200 and doc["candidates"] == [], doc
    st, out, err = c.srv.psql(
        f"SELECT count(*) FROM face_descriptors WHERE subject_id = {ids['CUST/A']}")
    assert st == 0 and out.strip() == "0", (out, err)


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def start_import(c, gallery, data, name):
    ev = upload(c, c.admin, data, name)
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{gallery}/imports", {"evidence": ev},
                     c.admin)
    assert st == 202 and doc["state"] == "queued" and doc["archive"] == ev, (st, doc)
    iid = doc["id"]

    def done():
        st, d, _ = req(c, "GET", f"/v1/admin/face/galleries/{gallery}/imports/{iid}",
                       token=c.admin)
        assert st == 200, d
        return d if d["state"] != "queued" else None
    return wait(c, f"import {iid}", done)


def test_gallery_import_by_zip_with_manifest(c):
    g = c.gallery
    lines = [
        {"file": "img/a.jpg", "reference": "IMP/A"},           # 1 enrolled
        {"file": "img/noface.jpg", "reference": "IMP/NOFACE"},  # 2 accepted, enrolment fails
        {"file": "img/missing.jpg", "reference": "IMP/M"},      # 3 missing_file
        {"file": "notes.txt", "reference": "IMP/T"},            # 4 not_an_image
        {"file": "img/a.jpg", "reference": "imp/a"},            # 5 duplicate_reference
        {"file": "img/a.jpg", "reference": "cust/b"},           # 6 subject_exists (CUST/B)
        {"file": "img/a.jpg", "reference": ""},                 # 7 invalid_reference
        {"file": "img/a.jpg"},                                  # 8 invalid_line
        {"file": "img/a.png", "reference": "IMP/PNG"},          # 9 enrolled (same face, PNG)
    ]
    png = ffmpeg(os.path.join(c.srv.root, "probe.png"), "-i", image("portrait.jpg"))
    data = zip_of({"manifest.json": json.dumps({"subjects": lines}), "img/a.jpg": c.probe,
                   "img/noface.jpg": c.noface, "img/a.png": png, "notes.txt": b"custody notes\n"})
    imp = start_import(c, g, data, "custody.zip")
    assert imp["state"] == "done" and imp["entries"] == 9, imp
    assert imp["accepted"] == 3 and imp["rejected"] == 6, imp
    reasons = {r["line"]: r["reason"] for r in imp["rejections"]}
    assert reasons == {3: "missing_file", 4: "not_an_image", 5: "duplicate_reference",
                       6: "subject_exists", 7: "invalid_reference", 8: "invalid_line"}, reasons
    assert [r["reference"] for r in imp["rejections"] if r["line"] == 5] == ["imp/a"]
    # Each accepted line is enrolled (or fails) as a single image would be.
    subs = wait(c, "imported enrolment", lambda: (lambda s: s if all(
        s.get(r, {}).get("state", "pending") != "pending"
        for r in ("IMP/A", "IMP/NOFACE", "IMP/PNG")) else None)(subjects(c, g)))
    assert subs["IMP/A"]["state"] == "enrolled" and subs["IMP/PNG"]["state"] == "enrolled", subs
    assert subs["IMP/NOFACE"]["state"] == "failed" and "no face" in subs["IMP/NOFACE"]["error"]
    assert subs["IMP/A"]["image_sha256"] == sha(c.probe), subs["IMP/A"]
    st, doc, _ = req(c, "GET", f"/v1/admin/face/galleries/{g}/imports/{imp['id']}",
                     token=c.admin)
    assert doc["subjects"] == {"pending": 0, "enrolled": 2, "failed": 1, "removed": 0}, doc
    # Ledgered: the import (by the admin, naming the archive) and each enrolment.
    e = [x for x in entries_of(c, "FACE_GALLERY_IMPORTED")]
    assert len(e) == 1, e
    body = e[0]["body"]
    assert body["actor"] == {"kind": "user", "id": "admin"}, body
    assert body["artefact"] == imp["archive"], body
    assert (body["payload"]["entries"], body["payload"]["accepted"],
            body["payload"]["rejected"]) == (9, 3, 6), body
    enrolled = {p["reference"] for p in (x["body"]["payload"] for x in
                                         entries_of(c, "FACE_ENROLLED"))}
    assert {"IMP/A", "IMP/PNG"} <= enrolled and "IMP/NOFACE" not in enrolled, enrolled
    # The imported subjects are found by a gallery search.
    res = search(c, c.case, c.off, purpose(scope="gallery", gallery=g,
                                            probe={"track": c.a_track["id"]}))
    refs = sorted(x["subject"]["reference"] for x in res["candidates"])
    assert refs == ["IMP/A", "IMP/PNG"], res
    st, doc, _ = req(c, "GET", f"/v1/admin/face/galleries/{g}/imports", token=c.admin)
    assert st == 200 and [i["id"] for i in doc["imports"]] == [imp["id"]], doc


def test_gallery_import_refuses_bad_archives_and_requests(c):
    g = c.gallery
    before = subjects(c, g)
    no_manifest = start_import(c, g, zip_of({"a.jpg": c.probe}), "nomanifest.zip")
    assert no_manifest["state"] == "failed" and "manifest.json" in no_manifest["error"]
    bad_json = start_import(c, g, zip_of({"manifest.json": b"{not json", "a.jpg": c.probe}),
                            "badjson.zip")
    assert bad_json["state"] == "failed" and "not valid JSON" in bad_json["error"], bad_json
    shape = start_import(c, g, zip_of({"manifest.json": b'{"subjects": "a.jpg"}'}), "shape.zip")
    assert shape["state"] == "failed" and "subjects" in shape["error"], shape
    # A ZIP bomb: 64 MiB of zeros deflate to ~64 KiB, over unpack_max_ratio.
    bomb = zip_of({"manifest.json": b'{"subjects": []}', "zeros.jpg": bytes(64 << 20)})
    refused = start_import(c, g, bomb, "bomb.zip")
    assert refused["state"] == "refused" and "ratio" in refused["error"], refused
    damaged = zip_of({"manifest.json": b'{"subjects": []}', "a.jpg": c.probe})
    cut = start_import(c, g, damaged[:len(damaged) // 2] + os.urandom(200), "cut.zip")
    assert cut["state"] == "failed" and cut["error"], cut
    for imp in (no_manifest, bad_json, shape, refused, cut):
        assert imp["accepted"] is None and imp["ledger_seq"] is None, imp
    assert subjects(c, g) == before  # nothing was added
    # Requests: not a ZIP, no such evidence, no such gallery, bad id, not an admin.
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{g}/imports",
                     {"evidence": c.video_id}, c.admin)
    assert st == 400 and doc["code"] == "invalid_field" and "ZIP" in doc["detail"], doc
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{g}/imports",
                     {"evidence": "0" * 64}, c.admin)
    assert st == 404 and doc["code"] == "evidence_not_found", doc
    st, doc, _ = req(c, "POST", "/v1/admin/face/galleries/99999/imports",
                     {"evidence": c.video_id}, c.admin)
    assert st == 404 and doc["code"] == "gallery_not_found", doc
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{g}/imports",
                     {"evidence": "ZZ"}, c.admin)
    assert st == 400 and '"evidence"' in doc["detail"], doc
    st, doc, _ = req(c, "GET", f"/v1/admin/face/galleries/{g}/imports/99999", token=c.admin)
    assert st == 404 and doc["code"] == "import_not_found", doc
    st, doc, _ = req(c, "POST", f"/v1/admin/face/galleries/{g}/imports",
                     {"evidence": c.video_id}, c.off)
    assert st == 403, doc


def test_oversight_lists_every_search(c):
    st, doc, _ = req(c, "GET", "/v1/admin/face/searches?limit=200", token=c.admin)
    assert st == 200, doc
    rows = doc["searches"]
    assert len(rows) >= 6 and {r["user"] for r in rows} == {"foff", "fother"}, rows
    assert all(r["legal_basis"] == BASIS for r in rows), rows
    st, body, r = req(c, "GET", "/v1/admin/face/searches?format=csv", token=c.admin)
    assert st == 200 and r.getheader("Content-Type").startswith("text/csv"), st
    table = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(table) == len(rows) and table[0]["purpose"].startswith("identify"), table[:1]
    st, doc, _ = req(c, "GET", "/v1/admin/face/searches", token=c.off)
    assert st == 403, doc


def test_damaged_index_file_is_rebuilt(c):
    path = os.path.join(c.srv.data, "face", "footage.vec")
    assert os.path.exists(path), os.listdir(os.path.dirname(path))
    assert c.srv.stop() == 0
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xde\xad\xbe\xef" * 64)
    c.srv.start()
    c.admin = c.srv.admin_token()
    c.off = c.srv.login("foff", "correct horse")[1]["token"]
    res = search(c, c.case, c.off, purpose(scope="footage", probe={"image": b64(c.probe)}))
    again = [(x["track"]["id"], round(x["score"], 3)) for x in res["candidates"]]
    assert again == c.first_result, (again, c.first_result)
    assert "face_cache_rebuild" in c.srv.tail(), "no rebuild logged"


def test_stored_evidence_unharmed_and_demsd_alive(c):
    st, doc, _ = req(c, "GET", "/healthz")
    assert st == 200
    for ev, data in ((c.video_id, c.video), (c.hostile_id, c.hostile)):
        st, body, _ = req(c, "GET", f"/v1/evidence/{ev}/content", token=c.off)
        assert st == 200 and sha(body) == ev == sha(data)


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
