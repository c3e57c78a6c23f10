# SPDX-License-Identifier: Apache-2.0
"""Media previews against a real demsd and its supervised worker: every
ingested artefact gets a preview job (queued in the ingest transaction); the
worker makes the proxy MP4, poster, sprite and WebVTT index with FFmpeg's
libraries in the sandbox, stores them as blobs and records a PREVIEW_MADE
entry binding source hash, derived hashes, parameters and library versions;
the playback endpoints serve them with ranges, ETags, 206/304/416 and ledger
each user's first view (VIEWED) once; audio-only input gets a proxy only;
hostile input ends as a dead job with a clear reason kept on the artefact,
and demsd and its other jobs carry on. Inputs are generated with the ffmpeg
command line."""
import base64
import hashlib
import json
import os
import subprocess
import time

from harness import Server, run_tests, ledger_entries

TUS = {"Tus-Resumable": "1.0.0"}
SETTINGS = {"job_backoff_base": 1, "job_backoff_max": 2, "job_max_attempts": 2}


class Ctx:
    pass


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=120)


def setup():
    c = Ctx()
    c.srv = Server(SETTINGS).start()
    c.tok = c.srv.admin_token()
    st, _, _ = c.srv.request("POST", "/v1/admin/users",
                             {"username": "viewer", "password": "viewer123", "role": "officer"},
                             token=c.tok)
    assert st == 201
    c.off = c.srv.login("viewer", "viewer123")[1]["token"]
    d = c.srv.root
    c.clip = os.path.join(d, "clip.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000", "-t", "6", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", c.clip)
    c.audio = os.path.join(d, "voice.m4a")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100", "-t", "3", "-c:a", "aac",
           c.audio)
    c.mjpeg = os.path.join(d, "cctv.avi")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=352x288:rate=12.5", "-t", "4", "-c:v", "mjpeg",
           c.mjpeg)
    return c


def teardown(c):
    assert c.srv.stop() == 0


def upload(c, data, filename, token=None):
    meta = "filename " + base64.b64encode(filename.encode()).decode()
    st, doc, r = c.srv.request("POST", "/v1/uploads", body=data, token=token or c.tok,
                               headers=dict(TUS, **{"Upload-Length": str(len(data)),
                                                    "Upload-Metadata": meta,
                                                    "Content-Type":
                                                        "application/offset+octet-stream"}))
    assert st == 201, (st, doc)
    return r.getheader("Evidence-Id")


def wait_preview(c, ev, states=("done", "dead"), timeout=240):
    deadline = time.time() + timeout
    doc = None
    while time.time() < deadline:
        st, doc, _ = c.srv.request("GET", f"/v1/evidence/{ev}", token=c.tok)
        assert st == 200, doc
        if doc.get("preview_job") in states:
            return doc
        time.sleep(0.3)
    raise AssertionError(f"preview of {ev} did not finish: {doc} {c.srv.tail()}")


def entries(c):
    return [e["body"] for e in ledger_entries(c.srv, c.tok)]


def top_atoms(data):
    """The top-level MP4 box types, in order."""
    out, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        kind = data[i + 4:i + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        out.append(kind)
        if size < 8:
            break
        i += size
    return out


def test_video_gets_a_recorded_preview(c):
    data = open(c.clip, "rb").read()
    ev = upload(c, data, "clip.mp4")
    # The officer who plays it below uploaded it too (officers see only
    # what they uploaded): the same content, one artefact, one preview.
    assert upload(c, data, "clip-again.mp4", token=c.off) == ev
    c.ev = ev
    doc = wait_preview(c, ev)
    assert doc["preview_job"] == "done", doc
    probe = doc["media"]["probe"]
    assert abs(probe["duration"] - 6) < 0.5, probe
    kinds = {p["kind"]: p for p in doc["previews"]}
    assert sorted(kinds) == ["poster", "proxy", "sprite", "sprite_vtt"], doc["previews"]
    seq = doc["ledger"]["preview_made_seq"]
    e = [x for x in entries(c) if x["seq"] == seq][0]
    assert e["type"] == "PREVIEW_MADE" and e["artefact"] == ev, e
    assert e["actor"]["kind"] == "system"
    p = e["payload"]
    assert p["source"] == ev
    for k, v in kinds.items():
        assert p["outputs"][k] == {"sha256": v["sha256"], "size": v["size"]}, (k, p)
    assert e["sha256"] == kinds["proxy"]["sha256"]
    assert "libavcodec" in json.dumps(p["ffmpeg"]) and ("params" in p or "params_sha256" in p)
    c.kinds = kinds


def test_playback_endpoints(c):
    ev, kinds = c.ev, c.kinds
    st, body, r = c.srv.request("GET", f"/v1/evidence/{ev}/preview", token=c.off)
    assert st == 200 and r.getheader("Content-Type") == "video/mp4", (st, r.getheaders())
    assert hashlib.sha256(body).hexdigest() == kinds["proxy"]["sha256"]
    assert r.getheader("ETag") == '"%s"' % kinds["proxy"]["sha256"]
    assert r.getheader("Accept-Ranges") == "bytes"
    atoms = top_atoms(body)
    assert "moov" in atoms and atoms.index("moov") < atoms.index("mdat"), atoms  # faststart
    # The proxy is itself decodable H.264 + AAC, at most 720p.
    path = os.path.join(c.srv.root, "proxy.mp4")
    open(path, "wb").write(body)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_name,width,height", "-of", "json", path],
                         capture_output=True, text=True, check=True).stdout
    streams = json.loads(out)["streams"]
    assert {s["codec_name"] for s in streams} == {"h264", "aac"}, streams
    v = [s for s in streams if s["codec_name"] == "h264"][0]
    assert v["height"] <= 720 and v["width"] == 640, v
    # Ranges, conditional requests, bad ranges.
    st, part, r = c.srv.request("GET", f"/v1/evidence/{ev}/preview", token=c.off,
                                headers={"Range": "bytes=100-299"})
    assert st == 206 and part == body[100:300], st
    assert r.getheader("Content-Range") == f"bytes 100-299/{len(body)}"
    st, _, r = c.srv.request("GET", f"/v1/evidence/{ev}/preview", token=c.off,
                             headers={"Range": f"bytes={len(body) + 10}-"})
    assert st == 416 and r.getheader("Content-Range") == f"bytes */{len(body)}"
    st, _, _ = c.srv.request("GET", f"/v1/evidence/{ev}/preview", token=c.off,
                             headers={"If-None-Match": '"%s"' % kinds["proxy"]["sha256"]})
    assert st == 304
    st, poster, r = c.srv.request("GET", f"/v1/evidence/{ev}/poster", token=c.off)
    assert st == 200 and r.getheader("Content-Type") == "image/jpeg"
    assert poster[:3] == b"\xff\xd8\xff"
    st, vtt, r = c.srv.request("GET", f"/v1/evidence/{ev}/thumbnails", token=c.off)
    assert st == 200 and r.getheader("Content-Type").startswith("text/vtt")
    vtt = vtt.decode() if isinstance(vtt, bytes) else vtt
    assert vtt.startswith("WEBVTT") and "sprite.jpg#xywh=" in vtt, vtt[:200]
    st, sprite, _ = c.srv.request("GET", f"/v1/evidence/{ev}/sprite.jpg", token=c.off)
    assert st == 200 and sprite[:3] == b"\xff\xd8\xff"
    # Each first view is ledgered once per user and kind, whatever the range requests.
    views = [e for e in entries(c) if e["type"] == "VIEWED" and e["artefact"] == ev]
    got = sorted((e["actor"]["id"], e["payload"]["preview"]) for e in views)
    assert got == [("viewer", "poster"), ("viewer", "proxy"), ("viewer", "sprite"),
                   ("viewer", "sprite_vtt")], got
    assert [e["sha256"] for e in views if e["payload"]["preview"] == "proxy"] == \
        [c.kinds["proxy"]["sha256"]]
    # Another user's first view is their own entry.
    st, _, _ = c.srv.request("GET", f"/v1/evidence/{ev}/poster", token=c.tok,
                             headers={"Range": "bytes=0-9"})
    assert st == 206
    views = [e for e in entries(c) if e["type"] == "VIEWED" and e["artefact"] == ev]
    assert len(views) == 5
    # Unknown evidence, malformed ids, no token.
    assert c.srv.request("GET", "/v1/evidence/" + "0" * 64 + "/preview",
                         token=c.off)[1]["code"] == "preview_not_ready"
    assert c.srv.request("GET", "/v1/evidence/xyz/preview", token=c.off)[0] == 404
    assert c.srv.request("GET", f"/v1/evidence/{ev}/preview")[0] == 401


def test_audio_only_and_mjpeg(c):
    audio = upload(c, open(c.audio, "rb").read(), "voice.m4a")
    cctv = upload(c, open(c.mjpeg, "rb").read(), "cctv.avi")
    doc = wait_preview(c, audio)
    assert doc["preview_job"] == "done", doc
    assert [p["kind"] for p in doc["previews"]] == ["proxy"], doc["previews"]
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{audio}/poster", token=c.off)
    assert st == 404 and body["code"] == "preview_not_ready"
    doc = wait_preview(c, cctv)
    assert doc["preview_job"] == "done", doc
    v = [s for s in doc["media"]["probe"]["streams"] if s.get("codec") == "mjpeg"
         or s.get("codec_name") == "mjpeg"]
    assert v, doc["media"]["probe"]
    assert len(doc["previews"]) == 4


def test_hostile_input_is_a_dead_job_with_a_reason(c):
    junk = upload(c, b"this is not a video, whatever its name says\n" * 20, "evil.mp4")
    clip = open(c.clip, "rb").read()
    trunc = upload(c, clip[:3000], "truncated.mp4")
    empty = upload(c, b"", "empty.mp4")
    flipped = bytearray(clip)
    for i in range(0, 4096, 7):  # the header (ftyp, moov) bit-flipped
        flipped[i] ^= 0x5A
    flip = upload(c, bytes(flipped), "flipped.mp4")
    for ev in (junk, trunc, empty, flip):
        doc = wait_preview(c, ev, states=("dead",))
        err = doc["media"]["preview_error"]
        assert err["code"].startswith("media_") and err["message"], doc
        assert doc["previews"] == []
        st, jobs, _ = c.srv.request("GET", "/v1/admin/jobs?kind=preview&state=dead", token=c.tok)
        assert any(j["payload"]["evidence"] == ev and j["last_error"].startswith("media_")
                   for j in jobs["jobs"]), jobs
    # demsd is fine, and the originals are untouched.
    assert c.srv.request("GET", "/healthz")[0] == 200
    st, body, _ = c.srv.request("GET", f"/v1/evidence/{junk}/content", token=c.tok)
    assert st == 200 and body.startswith(b"this is not a video")
    # Identical content is previewed once: its job is found, not queued again.
    again = upload(c, open(c.clip, "rb").read(), "copy.mp4")
    assert again == c.ev
    st, jobs, _ = c.srv.request("GET", "/v1/admin/jobs?kind=preview", token=c.tok)
    assert sum(1 for j in jobs["jobs"] if j["payload"]["evidence"] == c.ev) == 1


def procs(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_stopping_worker_releases_a_running_preview(c):
    """SIGTERM to a worker in the middle of a preview kills the sandbox
    runner and returns the job to the queue without using an attempt; the
    restarted worker makes the preview."""
    path = os.path.join(c.srv.root, "long.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "40", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", path)
    ev = upload(c, open(path, "rb").read(), "long.mp4")
    wait_preview(c, ev, states=("running",), timeout=60)
    time.sleep(1)
    workers = procs(f"demsd worker.*{c.srv.data}")
    assert len(workers) == 1, workers

    def ppid(p):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("PPid:"):
                    return int(line.split()[1])
        except OSError:
            return None

    # This worker's runner only (other tests may run previews meanwhile).
    runners = [p for p in procs("media-sandbox --max-pixels") if ppid(p) == workers[0]]
    assert runners, "no sandbox runner under the worker"
    os.kill(workers[0], 15)
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in runners):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") for p in runners), "the runner outlived its job"
    # The worker records the release (and logs it) once its runner is gone.
    deadline = time.time() + 30
    while time.time() < deadline and \
            '"result":"release"' not in open(c.srv.log_path, errors="replace").read():
        time.sleep(0.2)
    assert '"result":"release"' in open(c.srv.log_path, errors="replace").read(), c.srv.tail()
    doc = wait_preview(c, ev, timeout=300)
    assert doc["preview_job"] == "done", doc
    st, job, _ = c.srv.request("GET", "/v1/admin/jobs?kind=preview", token=c.tok)
    j = [x for x in job["jobs"] if x["payload"]["evidence"] == ev][0]
    assert j["attempts"] == 1 and j["state"] == "done", j  # the released attempt is not counted


def test_media_sandbox_runner_refuses_bad_use(c):
    """The internal runner a worker spawns: bad options are one line and exit
    2; without its file descriptors it answers a JSON error, not a crash."""
    r = c.srv.demsd("media-sandbox", "--timeout", "soon")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--timeout" in r.stderr, r
    r = c.srv.demsd("media-sandbox", "--frobnicate")
    assert r.returncode == 2 and "unknown option" in r.stderr
    r = c.srv.demsd("media-sandbox")  # fds 3-7 are not open here
    assert r.returncode == 1, r
    err = json.loads(r.stdout)["error"]
    assert err["code"].startswith("media_") and err["message"], err


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
