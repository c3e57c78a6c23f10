# SPDX-License-Identifier: Apache-2.0
"""ZIP archives from the public (docs/media.md, "Unpacking archives"), end to
end against a real demsd, its PostgreSQL and its worker: a member of the
public submits a ZIP through a portal link; the worker unpacks it with
libarchive in the media sandbox; the archive stays the original evidence and
each member kept is an artefact derived from it (INGESTED by system:unpack,
naming the archive, its path and the submission) with its own preview, and a
file no decoder reads is marked as needing conversion with the format its
first bytes show. A ZIP bomb is refused by the bounds with nothing written;
members with "../", absolute or Windows paths, symlinks and nested archives
are listed with why and the rest extracted; nothing already stored changes;
the case's officers see the members as they see the archive, others do not;
accepting the submission makes the extracted media exhibits too; demsd and
its worker carry on. The archives are made with Python's zipfile, the clips
with the ffmpeg command line."""
import base64
import hashlib
import io
import os
import subprocess
import time
import zipfile

from harness import Server, ledger_entries, run_tests

TUS = {"Tus-Resumable": "1.0.0"}
SETTINGS = {"refusal_max_per_principal": 1000000, "refusal_max_per_address": 1000000,
            "public_rate_per_minute": 600, "public_rate_burst": 600,
            "portal_link_rate_per_minute": 600, "portal_link_burst": 600,
            "job_backoff_base": 1, "job_backoff_max": 2, "job_max_attempts": 2}


class Ctx:
    pass


def sha(data):
    return hashlib.sha256(data).hexdigest()


def ffmpeg(out, *args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args, out], check=True,
                   timeout=120)
    return open(out, "rb").read()


def req(c, method, path, body=None, token=None, headers=None):
    st, doc, r = c.srv.request(method, path, body, token=token, headers=headers)
    if st >= 400 and isinstance(doc, dict):
        assert doc["status"] == st and doc["code"], doc
    return st, doc, r


def make_user(c, name, role):
    st, doc, _ = req(c, "POST", "/v1/admin/users",
                     {"username": name, "password": "correct horse", "role": role}, c.admin)
    assert st == 201, doc
    return c.srv.login(name, "correct horse")[1]["token"]


def make_zip(members):
    """members: (name, bytes) or a zipfile.ZipInfo with its bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def symlink(name, target):
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3  # Unix: the mode below is read
    zi.external_attr = 0o120777 << 16
    return zi, target.encode()


def submit(c, files):
    """Starts a submission through the appeal link, sends files ((name, bytes)) by tus
    and finishes it; returns the submission's id."""
    st, doc, _ = req(c, "POST", "/v1/portal/submissions",
                     {"token": c.link, "description": "shop CCTV export",
                      "location": "12 High St", "declaration": True})
    assert st == 201, doc
    tok, sid = doc["submission_token"], doc["id"]
    for name, data in files:
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                        for k, v in {"filename": name, "sha256": sha(data)}.items())
        st, doc, r = req(c, "POST", "/v1/uploads", token=tok, headers=dict(
            TUS, **{"Upload-Length": str(len(data)), "Upload-Metadata": meta}))
        assert st == 201, (st, doc)
        st, doc, r = req(c, "PATCH", r.getheader("Location"), data, token=tok, headers=dict(
            TUS, **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
        assert st == 204, (st, doc)
    st, doc, _ = req(c, "POST", "/v1/portal/submission/finish", {}, tok)
    assert st == 200, doc
    return dict(doc, id=sid)


def evidence(c, ev, token=None):
    st, doc, _ = req(c, "GET", f"/v1/evidence/{ev}", token=token or c.officer)
    assert st == 200, (st, doc)
    return doc


def wait(c, what, fn, timeout=240):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what}: not in time ({got}); {c.srv.tail()}")


def wait_unpacked(c, ev):
    def done():
        a = evidence(c, ev)["archive"]
        return a if a is not None and a["state"] != "pending" else None
    return wait(c, f"unpacking {ev}", done)


def wait_preview(c, ev):
    def done():
        d = evidence(c, ev)
        return d if d.get("preview_job") in ("done", "dead") else None
    return wait(c, f"preview of {ev}", done)


def blob_path(c, ev):
    return os.path.join(c.srv.data, "blobs", ev[:2], ev)


def db(c, sql):
    rc, out, err = c.srv.psql(sql)
    assert rc == 0, err
    return out


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.admin = c.srv.admin_token()
    c.officer = make_user(c, "uofficer", "officer")
    c.other = make_user(c, "uother", "officer")
    st, doc, _ = req(c, "POST", "/v1/cases", {"reference": "UZ/1", "title": "Shop burglary"},
                     c.officer)
    assert st == 201, doc
    c.case = doc["id"]
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submission-links",
                     {"kind": "appeal", "title": "High St appeal"}, c.officer)
    assert st == 201, doc
    c.link = doc["token"]
    d = c.srv.root
    c.clip1 = ffmpeg(os.path.join(d, "cam1.mp4"), "-f", "lavfi", "-i",
                     "testsrc2=size=320x240:rate=25", "-t", "2", "-c:v", "libx264", "-preset",
                     "ultrafast", "-pix_fmt", "yuv420p")
    c.clip2 = ffmpeg(os.path.join(d, "cam2.avi"), "-f", "lavfi", "-i",
                     "testsrc=size=176x144:rate=12.5", "-t", "2", "-c:v", "mjpeg")
    c.clip3 = ffmpeg(os.path.join(d, "cam3.mp4"), "-f", "lavfi", "-i",
                     "testsrc2=size=192x144:rate=10", "-t", "1", "-c:v", "libx264", "-preset",
                     "ultrafast", "-pix_fmt", "yuv420p")
    c.clip4 = ffmpeg(os.path.join(d, "cam4.mp4"), "-f", "lavfi", "-i",
                     "testsrc2=size=208x160:rate=10", "-t", "1", "-c:v", "libx264", "-preset",
                     "ultrafast", "-pix_fmt", "yuv420p")
    # A proprietary CCTV export file: a Hikvision head and data no decoder reads.
    c.hik = b"IMKH\x01\x01\x00\x00" + bytes((i * 7 + 3) % 251 for i in range(20000))
    c.player = b"MZ\x90\x00" + bytes(range(256)) * 8
    return c


def teardown(c):
    assert c.srv.stop() == 0


def test_archive_kept_members_derived_with_previews(c):
    z = make_zip([("CH01/", b""), ("CH01/cam1.mp4", c.clip1), ("CH02/cam2.avi", c.clip2),
                  ("CH01/export.dav", c.hik), ("Player/player.exe", c.player)])
    sub = submit(c, [("export.zip", z)])
    c.sub = sub
    c.zip = sha(z)
    a = wait_unpacked(c, c.zip)
    assert a["state"] == "done" and a["error"] is None, a
    assert a["entries"] == 5 and a["extracted"] == 4 and a["skipped"] == 0, a
    members = {m["path"]: m for m in a["members"]}
    assert sorted(members) == ["CH01/cam1.mp4", "CH01/export.dav", "CH02/cam2.avi",
                               "Player/player.exe"], a
    assert members["CH01/cam1.mp4"]["evidence"] == sha(c.clip1)
    assert members["CH02/cam2.avi"]["evidence"] == sha(c.clip2)
    assert members["CH01/export.dav"]["format"] == "hikvision"
    assert members["Player/player.exe"]["kind"] == "other"
    assert members["Player/player.exe"]["preview"] == "none", members
    # The archive is the original, unchanged: its bytes come back as sent.
    doc = evidence(c, c.zip)
    assert doc["format"] == "zip" and doc["needs_conversion"] is False, doc
    st, body, _ = req(c, "GET", f"/v1/evidence/{c.zip}/content", token=c.officer)
    assert st == 200 and sha(body) == c.zip
    # Each video is a derivative with its own preview.
    for clip, path in ((c.clip1, "CH01/cam1.mp4"), (c.clip2, "CH02/cam2.avi")):
        d = wait_preview(c, sha(clip))
        assert d["preview_job"] == "done", d
        assert {p["kind"] for p in d["previews"]} >= {"proxy", "poster"}, d
        assert d["derived_from"] == [{"archive": c.zip, "path": path,
                                      "index": members[path]["index"]}], d
        assert d["needs_conversion"] is False and d["size"] == len(clip), d
        st, body, _ = req(c, "GET", f"/v1/evidence/{sha(clip)}/content", token=c.officer)
        assert st == 200 and body == clip
    # The file no decoder reads needs conversion, and says what it seems to be.
    d = wait_preview(c, sha(c.hik))
    assert d["preview_job"] == "dead" and d["needs_conversion"] is True, d
    assert d["format"] == "hikvision" and d["media"]["preview_error"]["code"], d
    # Recorded: one INGESTED entry per member, by the system, naming where it came from.
    ents = [e["body"] for e in ledger_entries(c.srv, c.admin)]
    ing = {e["artefact"]: e for e in ents if e["type"] == "INGESTED"
           and e["actor"] == {"kind": "system", "id": "unpack"}}
    assert set(ing) == {sha(c.clip1), sha(c.clip2), sha(c.hik), sha(c.player)}, ing
    p = ing[sha(c.clip1)]["payload"]
    assert p["derived_from"] == c.zip and p["path"] == "CH01/cam1.mp4", p
    assert p["submission"] == sub["id"] and ing[sha(c.clip1)]["size"] == len(c.clip1), p
    # The triage list shows each archive's members, with previews and conversions.
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/submissions", token=c.officer)
    assert st == 200, doc
    s = [x for x in doc["submissions"] if x["id"] == sub["id"]][0]
    f = s["files"][0]
    assert f["evidence"] == c.zip and f["format"] == "zip" and f["archive"]["state"] == "done", f
    listed = {m["path"]: m for m in f["archive"]["members"]}
    assert listed["CH01/cam1.mp4"]["preview"] == "ready", listed
    assert listed["CH01/export.dav"]["needs_conversion"] is True, listed
    assert listed["CH01/export.dav"]["preview"] == "failed", listed


def test_case_members_see_members_and_accept_makes_exhibits(c):
    for ev in (sha(c.clip1), sha(c.hik)):
        assert req(c, "GET", f"/v1/evidence/{ev}", token=c.officer)[0] == 200
        assert req(c, "GET", f"/v1/evidence/{ev}", token=c.other)[0] == 404
        assert req(c, "GET", f"/v1/evidence/{ev}/content", token=c.other)[0] == 404
    st, doc, _ = req(c, "POST", f"/v1/cases/{c.case}/submissions/{c.sub['id']}/accept",
                     {"reference_prefix": "HS"}, c.officer)
    assert st == 200, doc
    added = {x["evidence"]: x["reference"] for x in doc["exhibits_added"]}
    # The archive as now, and what may be media in it; not the player program.
    assert set(added) == {c.zip, sha(c.clip1), sha(c.clip2), sha(c.hik)}, doc
    assert added[c.zip] == "HS/1", added
    st, doc, _ = req(c, "GET", f"/v1/cases/{c.case}/exhibits", token=c.officer)
    assert {x["evidence"]["id"] for x in doc["exhibits"]} >= set(added), doc


def test_zip_bomb_is_refused_with_nothing_written(c):
    small = c.clip3
    zeros = bytes(64 << 20)  # 64 MiB of zeros deflate to about 64 KiB
    z = make_zip([("a-small-clip.mp4", small), ("zeros.bin", zeros)])
    assert len(z) * 100 < len(zeros)
    before = db(c, "SELECT count(*) FROM artefacts")
    submit(c, [("bomb.zip", z)])
    a = wait_unpacked(c, sha(z))
    assert a["state"] == "refused" and "expansion ratio over 100" in a["error"], a
    assert a["members"] == [] and a["members_total"] == 0, a
    # Nothing half-written: neither member's row, entry or blob, and no work files.
    assert int(db(c, "SELECT count(*) FROM artefacts")) == int(before) + 1
    for ev in (sha(small), sha(zeros)):
        assert req(c, "GET", f"/v1/evidence/{ev}", token=c.admin)[0] == 404
        assert not os.path.exists(blob_path(c, ev)), ev
    assert db(c, f"SELECT state FROM jobs WHERE dedupe_key = 'unpack-{sha(z)}'") == "dead"
    work = os.path.join(c.srv.data, "work")
    assert not [n for n in os.listdir(work) if n.startswith("unpack-")], os.listdir(work)


def test_unsafe_paths_and_symlinks_are_listed_the_rest_extracted(c):
    # Stored before: an officer's own upload of cam4.mp4. The archive holds it too.
    st, doc, r = req(c, "POST", "/v1/uploads", c.clip4, token=c.officer, headers=dict(
        TUS, **{"Upload-Length": str(len(c.clip4)),
                "Upload-Metadata": "filename " + base64.b64encode(b"mine.mp4").decode(),
                "Content-Type": "application/offset+octet-stream"}))
    assert st == 201, doc
    ev4 = sha(c.clip4)
    row = db(c, f"SELECT filename, metadata, uploaded_by, created_at, upload_id, format"
                f" FROM artefacts WHERE id = '{ev4}'")
    st4 = os.stat(blob_path(c, ev4))
    blob4 = open(blob_path(c, ev4), "rb").read()
    passwd = open("/etc/passwd", "rb").read()
    inner = make_zip([("x.mp4", c.clip3)])
    z = make_zip([("../evil.mp4", c.clip3), ("/abs/evil.mp4", c.clip3),
                  ("..\\..\\win.mp4", c.clip3), ("C:/evil.mp4", c.clip3),
                  symlink("link.mp4", "/etc/passwd"), ("inner.zip", inner),
                  ("ok/clip.mp4", c.clip3), ("again/mine.mp4", c.clip4)])
    submit(c, [("paths.zip", z)])
    a = wait_unpacked(c, sha(z))
    assert a["state"] == "done", a
    got = {m["path"]: m for m in a["members"]}
    skipped = {p: (m["skipped"], m["detail"]) for p, m in got.items() if m["skipped"]}
    assert skipped == {
        "../evil.mp4": ("unsafe_name", "parent directory (..)"),
        "/abs/evil.mp4": ("unsafe_name", "absolute path"),
        "../../win.mp4": ("unsafe_name", "parent directory (..)"),
        "C:/evil.mp4": ("unsafe_name", "drive or device prefix"),
        "link.mp4": ("symlink", "-> /etc/passwd"),
        "inner.zip": ("nested_archive", "ZIP archive"),
    }, skipped
    assert got["ok/clip.mp4"]["evidence"] == sha(c.clip3), got
    assert got["again/mine.mp4"]["evidence"] == ev4, got
    assert a["extracted"] == 2 and a["skipped"] == 6 and a["entries"] == 8, a
    # What a link or a traversal named was neither read nor written anywhere.
    assert req(c, "GET", f"/v1/evidence/{sha(passwd)}", token=c.admin)[0] == 404
    assert req(c, "GET", f"/v1/evidence/{sha(inner)}", token=c.admin)[0] == 404
    for p in ("evil.mp4", "win.mp4", "abs"):
        for d in (c.srv.root, c.srv.data, os.path.join(c.srv.data, "work"), "/"):
            assert not os.path.exists(os.path.join(d, p)), (d, p)
    # Nothing already stored was altered: the officer's artefact and its blob.
    assert db(c, f"SELECT filename, metadata, uploaded_by, created_at, upload_id, format"
                 f" FROM artefacts WHERE id = '{ev4}'") == row
    assert os.stat(blob_path(c, ev4)).st_mtime_ns == st4.st_mtime_ns
    assert open(blob_path(c, ev4), "rb").read() == blob4
    d = evidence(c, ev4, c.officer)
    assert d["filename"] == "mine.mp4" and len(d["derived_from"]) == 1, d


def test_demsd_and_its_worker_carry_on(c):
    st, doc, _ = req(c, "GET", "/readyz")
    assert st == 200, doc
    z = make_zip([("late/clip.mp4", c.clip3 + b"")])
    submit(c, [("late.zip", z)])
    a = wait_unpacked(c, sha(z))
    assert a["state"] == "done" and a["extracted"] == 1, a
    assert c.srv.proc.poll() is None


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
