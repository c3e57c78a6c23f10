# SPDX-License-Identifier: Apache-2.0
"""`demsd media-frames`, the runner a worker spawns to sample a video's frames
for face indexing (docs/media.md, "Frame sampling for face indexing"), run as
a worker runs it: the input on fd 3, a pipe on fd 4 read while it runs, one
JSON line on stdout. Checks the frame stream byte by byte (magic, version,
times, sizes, RGB), the answer, refusals of hostile input with stable codes,
and bad use. No server needed. Inputs are made with the ffmpeg command line."""
import fcntl
import json
import os
import struct
import subprocess
import tempfile

from harness import DEMSD, run_tests

HEAD = struct.Struct("<4sIqIIII")


class Ctx:
    pass


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=120)


def setup():
    c = Ctx()
    c.tmp = tempfile.TemporaryDirectory(prefix="dems-frames-")
    c.clip = os.path.join(c.tmp.name, "counter.mp4")
    # 4 s at 25 fps; frame n is red 20 x (n // 25), green 8 x (n % 25).
    ffmpeg("-f", "lavfi", "-i",
           "color=black:s=320x180:r=25:d=4,geq=r='20*floor(N/25)':g='8*mod(N\\,25)':b=128",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", c.clip)
    c.junk = os.path.join(c.tmp.name, "junk.mp4")
    with open(c.junk, "wb") as f:
        f.write(bytes((i * 7919) % 251 for i in range(40000)))
    return c


def teardown(c):
    c.tmp.cleanup()


def run_frames(src, *args):
    """Runs the runner with src on fd 3 and a pipe on fd 4, reading the frames
    while it runs. Returns (exit status, answer, [(index, t_us, w, h, rgb)],
    stderr)."""
    r, w0 = os.pipe()
    i0 = os.open(src, os.O_RDONLY)
    # Above 4, so that moving one onto 3 or 4 never overwrites the other.
    inp, w = fcntl.fcntl(i0, fcntl.F_DUPFD, 10), fcntl.fcntl(w0, fcntl.F_DUPFD, 10)
    os.close(i0)
    os.close(w0)
    # bash (dash takes single-digit fds only) puts them on 3 and 4, closing the
    # originals, and becomes the runner.
    script = f'exec "$0" media-frames "$@" 3<&{inp} 4>&{w} {inp}<&- {w}>&-'
    proc = subprocess.Popen(["bash", "-c", script, DEMSD, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, pass_fds=(inp, w))
    os.close(inp)
    os.close(w)  # or the reader below never sees the end
    frames = []
    with os.fdopen(r, "rb") as stream:
        while True:
            head = stream.read(HEAD.size)
            if not head:
                break
            assert len(head) == HEAD.size, "a header cut short"
            magic, version, t, width, height, stride, index = HEAD.unpack(head)
            assert magic == b"DFRM" and version == 1, head
            assert stride == width * 3, (width, stride)
            rgb = stream.read(height * stride)
            assert len(rgb) == height * stride, "pixels cut short"
            frames.append((index, t, width, height, rgb))
    out, err = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out), frames, err.decode()


def test_frames_on_a_pipe(c):
    rc, ans, frames, err = run_frames(c.clip, "--fps", "2", "--max-side", "160")
    assert rc == 0, (rc, ans, err)
    res = ans["result"]
    assert res["frames"] == 8 == len(frames), res
    assert res["width"] == 160 and res["height"] == 90, res
    assert res["params"]["fps"] == 2 and res["params"]["max_side"] == 160, res["params"]
    assert res["params"]["skip_nonref"] is True and res["params"]["threads"] == 1
    assert res["source"] == {"codec": "h264", "width": 320, "height": 180, "fps": 25.0,
                             "rotation": 0, "still": False}, res["source"]
    assert "libavcodec" in res["ffmpeg"]
    for k, (index, t, width, height, rgb) in enumerate(frames):
        assert index == k and (width, height) == (160, 90)
        assert 500000 * k <= t < 500000 * k + 3 * 40000, (k, t)
        # The source frame it shows (its centre pixel) is the one at its time.
        mid = (height // 2 * width + width // 2) * 3
        n = round(rgb[mid] / 20) * 25 + round(rgb[mid + 1] / 8)
        assert n * 40000 == t, (k, t, n)


def test_every_frame_kept(c):
    rc, ans, frames, _ = run_frames(c.clip, "--fps", "30", "--keep-nonref", "--threads", "2")
    assert rc == 0, ans
    assert len(frames) == 100 and ans["result"]["decoded"] == 100, ans["result"]
    assert [f[1] for f in frames] == [40000 * n for n in range(100)]
    assert (frames[0][2], frames[0][3]) == (320, 180)


def test_hostile_input_and_limits(c):
    rc, ans, frames, _ = run_frames(c.junk)
    assert rc == 1 and frames == [], (rc, ans)
    assert ans["error"]["code"] == "media_invalid" and ans["error"]["message"], ans
    rc, ans, frames, _ = run_frames(c.clip, "--max-pixels", "50000")
    assert rc == 1 and frames == [], (rc, ans)
    assert ans["error"]["code"] == "media_too_large", ans
    assert "pixel budget exceeded: 320x180" in ans["error"]["message"], ans
    rc, ans, frames, _ = run_frames(c.clip, "--max-duration", "2")
    assert ans["error"]["code"] == "media_too_large" and "duration" in ans["error"]["message"]


def test_bad_use(c):
    for args in (["--fps", "0"], ["--fps", "31"], ["--fps", "-1"], ["--fps", "nan"],
                 ["--fps", "2x"], ["--max-side", "8"], ["--threads", "17"], ["--fps"],
                 ["--frobnicate"]):
        r = subprocess.run([DEMSD, "media-frames", *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and r.stdout == "", (args, r)
        assert r.stderr.count("\n") == 1 and args[0] in r.stderr, (args, r.stderr)
    r = subprocess.run([DEMSD, "media-frames"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r  # fds 3 and 4 are not open here
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "media_internal" and "fd 3" in err["message"], err


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
