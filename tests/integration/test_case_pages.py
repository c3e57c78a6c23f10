# SPDX-License-Identifier: Apache-2.0
"""The staff application's case pages end to end: a real demsd (with its
supervised worker making previews and bundles) and headless Chromium
(Debian's chromium driven by playwright-core, tests/browser/case_pages.mjs)
walk each journey the way people would, and every check is made twice: on
what the page showed and on the server's state through the API and ledger.

- An officer creates a case (the server's refusals of a malformed and of a
  taken reference are shown inline, word for word), adds evidence as an
  exhibit (its poster loads), adds a member, shares the case with a
  prosecutor with downloads, requests a court bundle, follows its progress
  bar to done and downloads it: the downloaded bytes' SHA-256 is the
  bundle's. At phone width nothing scrolls sideways.
- A prosecutor who signs in lands on "Shared with me", opens the live share,
  sees the exhibit's poster, plays its preview, requests and downloads a
  bundle; an expired and a revoked share each say "This share has ended",
  and so does the open page once the share is revoked under it (the server's
  403 share_ended).
- The prosecutor discloses an exhibit to the defence with a passcode; a
  fresh browser context opens the link, is refused a wrong passcode, opens
  it with the right one, sees the exhibit's hash and poster, plays its
  preview and downloads the bundle (its SHA-256 is the bundle's); once the
  prosecutor revokes the link, the same link says "This link has ended".
- Each case role sees its own controls (investigator, viewer, lead), the
  case list pages on with "More" and filters by text, tag and status, and
  the lead changes a member's role, removes an exhibit, closes and reopens
  the case."""
import base64
import json
import os
import subprocess
import time

from harness import Server, browser_journey, ledger_entries, run_tests

PATTERN = "^[0-9]{2}/[0-9]{6}/[0-9]{2}$"
USERS = {"olivia": "officer", "ivan": "officer", "vera": "officer", "pam": "prosecutor"}
PASSWORD = "correct horse battery"
PREVIEW_WAIT = 120


class Ctx:
    pass


def iso_in(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def req(c, method, path, body=None, token=None):
    st, doc, _ = c.srv.request(method, path, body, token=token)
    return st, doc


def ok(c, method, path, body=None, token=None, want=(200, 201, 202)):
    st, doc = req(c, method, path, body, token)
    assert st in want, (method, path, st, doc)
    return doc


def make_clip(path):
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                        "-t", "6", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-shortest", path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


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
        doc = ok(c, "GET", f"/v1/evidence/{c.ev}", token=c.tok["olivia"])
        if doc.get("preview_job") in ("done", "dead"):
            break
        time.sleep(0.5)
    kinds = sorted(p["kind"] for p in doc.get("previews") or [])
    assert "poster" in kinds and "proxy" in kinds, (doc.get("preview_job"), kinds)


def setup():
    c = Ctx()
    c.srv = Server({"case_reference_pattern": PATTERN, "refusal_max_per_principal": 1000000,
                    "refusal_max_per_address": 1000000}).start()
    c.admin = c.srv.admin_token()
    c.tok = {}
    for name, role in USERS.items():
        ok(c, "POST", "/v1/admin/users", {"username": name, "password": PASSWORD, "role": role},
           c.admin)
        c.tok[name] = c.srv.login(name, PASSWORD)[1]["token"]
    clip = os.path.join(c.srv.root, "clip.mp4")
    make_clip(clip)
    with open(clip, "rb") as f:
        c.ev = upload(c, c.tok["olivia"], f.read(), "street camera.mp4")
    # A reference already taken, for the refusal the page must show.
    ok(c, "POST", "/v1/cases", {"reference": "01/000001/26", "title": "Older case"},
       c.tok["olivia"])
    wait_preview(c)
    c.case_id = None
    return c


def teardown(c):
    assert c.srv.stop() == 0


def browser(c, journey, cfg):
    cfg = dict(cfg, url=f"https://127.0.0.1:{c.srv.port}/staff/",
               passwords={u: PASSWORD for u in USERS})
    s = browser_journey(c.srv, "case_pages.mjs", journey, cfg)
    assert s["console_errors"] == [] and s["page_errors"] == [] and s["failed_requests"] == [], s
    # axe-core on each view the journey shows: no serious or critical finding.
    for view, violations in s.get("axe", {}).items():
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, (journey, view, bad)
        for v in violations:
            print(f"     axe {view}: {v['impact']} {v['id']} ×{v['nodes']} {v['targets'][:2]}")
    return s


def entries_of_case(c, reference):
    return [e["body"] for e in ledger_entries(c.srv, c.admin)
            if e["body"].get("case") == reference]


def check_bundle(c, token, case_id, bid, s):
    """The bundle the page followed is done on the server, and the bytes
    the browser downloaded are the bundle's (its SHA-256 and size)."""
    b = ok(c, "GET", f"/v1/cases/{case_id}/bundles/{bid}", token=token)
    assert b["state"] == "done", b
    assert s["bundle_page_sha256"] == b["sha256"], (s["bundle_page_sha256"], b)
    assert s["download"]["sha256"] == b["sha256"] and s["download"]["size"] == b["size"], (
        s["download"], b)
    seen = s["bundle_seen"]
    assert seen["states"][-1] == "done", seen
    assert set(seen["states"]) <= {"queued", "running", "done"}, seen
    return b


def test_officer_journey(c):
    s = browser(c, "officer", {"officer": "olivia", "member": "ivan", "prosecutor": "pam",
                               "evidence": c.ev, "case_title": "Burglary at 4 Elm Road",
                               "case_reference": "01/000002/26",
                               "taken_reference": "01/000001/26"})
    assert s["nav"] == "Evidence Upload Cases Account", s["nav"]
    assert s["hash_cases"] == "#/cases", s["hash_cases"]
    # The server's refusals, word for word.
    st, bad = req(c, "POST", "/v1/cases", {"reference": "not a reference", "title": "x"},
                  c.tok["olivia"])
    assert st == 400 and bad["code"] == "invalid_reference", bad
    assert s["bad_reference_error"] == bad["detail"], (s["bad_reference_error"], bad)
    st, taken = req(c, "POST", "/v1/cases", {"reference": "01/000001/26", "title": "x"},
                    c.tok["olivia"])
    assert st == 409 and taken["code"] == "reference_taken", taken
    assert s["taken_reference_error"] == taken["detail"], (s["taken_reference_error"], taken)
    # The case as the server holds it.
    cid = s["case_id"]
    case = ok(c, "GET", f"/v1/cases/{cid}", token=c.tok["olivia"])
    assert case["reference"] == "01/000002/26" and case["title"] == "Burglary at 4 Elm Road"
    assert case["offence"] == "Burglary dwelling" and case["my_role"] == "lead", case
    assert case["exhibits"] == 1 and case["members"] == 2, case
    assert s["case_title"] == "01/000002/26 · Burglary at 4 Elm Road", s["case_title"]
    assert "Your role lead" in s["case_details"], s["case_details"]
    xs = ok(c, "GET", f"/v1/cases/{cid}/exhibits", token=c.tok["olivia"])["exhibits"]
    assert [(x["reference"], x["evidence"]["id"], x["tags"]) for x in xs] == [
        ("JS/1", c.ev, ["street", "night"])], xs
    assert s["exhibit_hash"] == c.ev and "street camera.mp4" in s["exhibit_row"], s["exhibit_row"]
    assert s["poster_width"] > 0, "the exhibit's poster did not load"
    assert s["player_title"] == "JS/1: street camera.mp4", s["player_title"]
    ms = ok(c, "GET", f"/v1/cases/{cid}/members", token=c.tok["olivia"])["members"]
    assert sorted((m["username"], m["role"]) for m in ms) == [("ivan", "investigator"),
                                                             ("olivia", "lead")], ms
    assert sorted(map(tuple, s["members"])) == [("ivan", "investigator"), ("olivia", "lead")]
    shares = ok(c, "GET", f"/v1/cases/{cid}/shares", token=c.tok["olivia"])["shares"]
    assert len(shares) == 1, shares
    sh = shares[0]
    assert sh["prosecutor"] == "pam" and sh["can_download"] and sh["whole_case"], sh
    assert sh["state"] == "live" and s["share_state"] == "live", (sh, s["share_row"])
    # Expiry: the form's default, 30 days on (within a minute or two).
    left = time.mktime(time.strptime(sh["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(
        time.gmtime())
    assert abs(left - 30 * 86400) < 3 * 3600, sh["expires_at"]
    # The bundle: followed to done, downloaded, the same bytes.
    assert s["bundle_first_state"] in ("queued", "running", "done"), s
    check_bundle(c, c.tok["olivia"], cid, s["bundle_id"], s)
    assert s["bundle_bar"] == [1, 1], s["bundle_bar"]
    assert s["download"]["name"] == f"bundle-01_000002_26-{s['bundle_id']}.zip", s["download"]
    # The refused creations are the only refused requests of the journey.
    assert s["error_responses"] == ["POST /v1/cases: 400", "POST /v1/cases: 409"], \
        s["error_responses"]
    assert s["phone"]["scroll_width"] <= s["phone"]["inner_width"], s["phone"]
    # Every change is on the record, by the officer.
    kinds = [(e["type"], e["actor"]["id"]) for e in entries_of_case(c, "01/000002/26")]
    for want in ("CASE_CREATED", "EXHIBIT_ADDED", "MEMBER_ADDED", "SHARED"):
        assert (want, "olivia") in kinds, (want, kinds)
    downloads = [e["body"] for e in ledger_entries(c.srv, c.admin)
                 if e["body"]["type"] == "DOWNLOADED" and
                 e["body"]["payload"].get("bundle") == s["bundle_id"]]
    assert downloads and downloads[0]["actor"]["id"] == "olivia", downloads
    c.case_id = cid
    c.live_share = sh["id"]


def ended_share(c, reference, expires_in=None, revoke=False):
    """A case shared with pam whose share expires soon or is revoked."""
    case = ok(c, "POST", "/v1/cases", {"reference": reference, "title": "Ended " + reference},
              c.tok["olivia"])
    ok(c, "POST", f"/v1/cases/{case['id']}/exhibits", {"evidence": c.ev, "reference": "E/1"},
       c.tok["olivia"])
    sh = ok(c, "POST", f"/v1/cases/{case['id']}/shares",
            {"prosecutor": "pam", "expires_at": iso_in(expires_in or 3600),
             "can_download": True}, c.tok["olivia"])
    if revoke:
        ok(c, "POST", f"/v1/cases/{case['id']}/shares/{sh['id']}/revoke", {}, c.tok["olivia"])
    return case["id"], sh["id"]


def test_prosecutor_journey(c):
    assert c.case_id, "the officer journey did not make the case"
    _, expired = ended_share(c, "01/000003/26", expires_in=2)
    _, revoked = ended_share(c, "01/000004/26", revoke=True)
    time.sleep(2.5)
    mine = {x["id"]: x["state"] for x in ok(c, "GET", "/v1/me/shares",
                                            token=c.tok["pam"])["shares"]}
    assert mine == {c.live_share: "live", expired: "expired", revoked: "revoked"}, mine
    s = browser(c, "prosecutor", {"prosecutor": "pam", "live_share": c.live_share,
                                  "live_case": c.case_id, "expired_share": expired,
                                  "revoked_share": revoked, "lead_token": c.tok["olivia"]})
    assert s["landing_hash"] == "#/shared" and s["nav"] == "Shared with me Account", s
    assert {x["id"]: x["state"] for x in s["shares"]} == mine, s["shares"]
    live = [x for x in s["shares"] if x["id"] == c.live_share][0]
    assert "01/000002/26" in live["text"] and "view and download" in live["text"], live
    for key, word in (("expired_message", "expired"), ("revoked_message", "revoked")):
        assert s[key].startswith("This share has ended") and word in s[key], s[key]
    assert "whole case, view and download" in s["share_terms"], s["share_terms"]
    assert s["exhibit_rows"] == ["JS/1"] and s["poster_width"] > 0, s
    assert s["video"]["ready"] >= 2 and s["video"]["src"] == f"/v1/evidence/{c.ev}/preview", s
    b = check_bundle(c, c.tok["olivia"], c.case_id, s["bundle_id"], s)
    assert b["requested_by"] == "pam", b
    # Revoked under the open page: the server's 403 share_ended, shown as ended.
    assert s["revoke_status"] == 200, s
    assert s["ended_while_open"].startswith("This share has ended"), s["ended_while_open"]
    assert s["error_responses"] == [f"POST /v1/cases/{c.case_id}/bundles: 403"], \
        s["error_responses"]
    st, doc = req(c, "GET", f"/v1/cases/{c.case_id}", token=c.tok["pam"])
    assert st == 403 and doc["code"] == "share_ended", doc
    denied = [e["body"] for e in ledger_entries(c.srv, c.admin)
              if e["body"]["type"] == "ACCESS_DENIED" and e["body"]["actor"]["id"] == "pam"]
    assert any(d["payload"].get("path") == f"/v1/cases/{c.case_id}/bundles" for d in denied), \
        denied



def test_disclosure_journey(c):
    cid, sid = ended_share(c, "01/000005/26")  # a live share with downloads
    s = browser(c, "disclosure", {"prosecutor": "pam", "live_share": sid,
                                  "label": "Smith & Co, defence"})
    assert s["choices"] == [["E/1", True]], s["choices"]
    prefix = f"https://127.0.0.1:{c.srv.port}/disclosure/#"
    assert s["link"].startswith(prefix) and len(s["link"]) > len(prefix) + 30, s["link"]
    assert s["passcode_shown"], "the passcode was not shown"
    links = ok(c, "GET", f"/v1/cases/{cid}/disclosures", token=c.admin)["disclosures"]
    assert len(links) == 1, links
    link = links[0]
    assert link["id"] == s["disclosure_id"] and link["label"] == "Smith & Co, defence", link
    assert link["passcode_required"] is True and link["exhibits"] == ["E/1"], link
    assert link["created_by"] == "pam" and link["opened"] >= 1, link
    assert link["passcode_failures"] == 1, link  # the wrong passcode, counted
    assert link["state"] == "revoked" and link["revoked_by"] == "pam", link
    # The defence page: the passcode asked for, the wrong one refused in words.
    assert s["passcode_prompt"] == "Passcode", s
    assert s["wrong_passcode"].startswith("Wrong passcode"), s["wrong_passcode"]
    assert "#" not in s["defence_url"], s["defence_url"]  # the token left the address bar
    assert s["defence_title"] == "01/000005/26 · Ended 01/000005/26", s["defence_title"]
    assert s["defence_rows"] == [{"reference": "E/1", "sha256": c.ev}], s["defence_rows"]
    assert s["defence_poster_width"] > 0, "the poster did not load through the link"
    assert s["defence_cookie"] == {"httpOnly": True, "secure": True, "sameSite": "Strict",
                                   "path": "/v1/disclosure"}, s["defence_cookie"]
    assert s["defence_video"].startswith("/v1/disclosure/exhibits/") and \
        s["defence_video"].endswith("/preview"), s["defence_video"]
    b = ok(c, "GET", f"/v1/cases/{cid}/bundles/{link['bundle']}", token=c.admin)
    assert b["state"] == "done" and s["defence_bundle_sha256"] == b["sha256"], (b, s)
    assert s["download"]["sha256"] == b["sha256"] and s["download"]["size"] == b["size"], s
    assert s["ended"].startswith("This link has ended"), s["ended"]
    # On the record, by the link: opened, viewed, downloaded; refused after revocation.
    deadline = time.time() + 10
    while True:
        by_link = [e["body"] for e in ledger_entries(c.srv, c.admin)
                   if e["body"]["actor"] == {"kind": "link", "id": f"disclosure/{link['id']}"}]
        kinds = {e["type"] for e in by_link}
        if {"DISCLOSURE_OPENED", "DISCLOSURE_VIEWED", "DOWNLOADED", "ACCESS_DENIED"} <= kinds or \
                time.time() > deadline:
            break
        time.sleep(0.3)
    assert {"DISCLOSURE_OPENED", "DISCLOSURE_VIEWED", "VIEWED", "DOWNLOADED",
            "ACCESS_DENIED"} <= kinds, sorted(kinds)
    dl = [e for e in by_link if e["type"] == "DOWNLOADED"]
    assert dl[0]["payload"]["disclosure"] == link["id"] and dl[0]["sha256"] == b["sha256"], dl
    # The only refused requests: the passcode asked for and wrong, the ended link.
    assert s["error_responses"] == ["POST /v1/disclosure/open: 401"] * 2 + [
        "POST /v1/disclosure/open: 410"], s["error_responses"]



def test_roles_journey(c):
    case = ok(c, "POST", "/v1/cases", {"reference": "01/000006/26",
                                       "title": "Robbery at the Mill"}, c.tok["olivia"])
    cid = case["id"]
    ok(c, "POST", f"/v1/cases/{cid}/exhibits", {"evidence": c.ev, "reference": "R/1",
                                                "tags": ["doorbell"]}, c.tok["olivia"])
    for who, role in (("ivan", "investigator"), ("vera", "viewer")):
        ok(c, "PUT", f"/v1/cases/{cid}/members/{who}", {"role": role}, c.tok["olivia"])
    ok(c, "POST", f"/v1/cases/{cid}/shares", {"prosecutor": "pam", "expires_at": iso_in(3600)},
       c.tok["olivia"])
    for i in range(52):  # more cases than one page of the list
        ok(c, "POST", "/v1/cases", {"reference": f"03/{i:06d}/26", "title": f"Filler {i}"},
           c.tok["olivia"])
    total = len([1 for _ in ok(c, "GET", "/v1/cases?limit=200",
                               token=c.tok["olivia"])["cases"]])
    s = browser(c, "roles", {"officer": "olivia", "investigator": "ivan", "viewer": "vera",
                             "case_id": cid, "exhibit": "R/1", "case_query": "Mill",
                             "case_tag": "doorbell"})
    everything = {k: True for k in s["controls_olivia"]}
    assert s["controls_olivia"] == everything, s["controls_olivia"]
    assert s["controls_ivan"] == dict(everything, edit_case=False, close_case=False,
                                      remove_exhibit=False, member_controls=False,
                                      share_form=False, revoke_share=False), s["controls_ivan"]
    assert s["controls_vera"] == dict(everything, edit_case=False, close_case=False,
                                      add_exhibit=False, remove_exhibit=False,
                                      member_controls=False, share_form=False,
                                      revoke_share=False, bundles=False,
                                      request_bundle=False), s["controls_vera"]
    # The list: one page of 50, then the rest with "More".
    assert s["first_page"] == 50 and s["more_visible"], s
    assert s["all_rows"] == total and total > 50 and not s["more_after"], (s, total)
    assert s["query_rows"] == ["01/000006/26"] and s["tag_rows"] == ["01/000006/26"], s
    assert s["closed_before"] == 0, s
    # What the lead did, as the server holds it.
    ms = {m["username"]: m["role"] for m in
          ok(c, "GET", f"/v1/cases/{cid}/members", token=c.tok["olivia"])["members"]}
    assert ms == {"olivia": "lead", "ivan": "viewer", "vera": "viewer"}, ms
    assert ok(c, "GET", f"/v1/cases/{cid}/exhibits", token=c.tok["olivia"])["exhibits"] == []
    assert s["exhibits_after_removal"] == 0, s
    assert "closed" in s["closed_details"] and "Status open" in s["reopened_details"], s
    closed = s["controls_closed"]
    assert closed["close_case"] and not closed["edit_case"] and not closed["add_exhibit"], closed
    assert not closed["share_form"] and not closed["member_controls"], closed
    case = ok(c, "GET", f"/v1/cases/{cid}", token=c.tok["olivia"])
    assert case["status"] == "open" and case["exhibits"] == 0, case
    ents = entries_of_case(c, "01/000006/26")
    states = [e["payload"].get("status") for e in ents if e["type"] == "CASE_UPDATED"]
    assert states == ["closed", "open"], states
    assert [e["actor"]["id"] for e in ents if e["type"] == "EXHIBIT_REMOVED"] == ["olivia"]
    changed = [e["payload"] for e in ents if e["type"] == "MEMBER_ADDED"][-1]
    assert changed.get("previous_role") == "investigator", changed
    assert s["phone"]["scroll_width"] <= s["phone"]["inner_width"], s["phone"]


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
