# SPDX-License-Identifier: Apache-2.0
"""Every program's --version and every program's and sub-command's --help.

--version prints "PROGRAM (dems) VERSION" (meson's project version) and one
line per library the program links, compiled against and running. --help
prints usage on stdout and exits 0; an unknown option prints exactly one
line on stderr (naming it) and exits 2, and starts nothing.

The sub-commands are read from each program's own --help and must include
the known ones, so a command that is added without --help, or loses it,
fails here. No server, database or network is needed."""
import os
import re
import subprocess

from harness import run_tests

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BOGUS = "--no-such-option"

PROGRAMS = {
    "demsd": "DEMSD",
    "dems-verify": "DEMS_VERIFY",
    "dems-media": "DEMS_MEDIA",
    "dems-vector-bench": "DEMS_VECTOR_BENCH",
    "demsctl": "DEMS_CTL",
}

# The libraries each program's --version must name (demsd's face engine adds
# libjpeg-turbo and libpng when it is built in).
FFMPEG = ["FFmpeg", "libavformat", "libavcodec", "libavutil", "libswscale", "libswresample"]
LIBRARIES = {
    "demsd": ["glibc", "OpenSSL", "libevent", "libpq", "libsodium", "jansson", "http-parser",
              "libseccomp", "libarchive"] + FFMPEG,
    "dems-verify": ["glibc", "OpenSSL", "libsodium", "jansson", "libarchive"],
    "dems-media": ["glibc", "libseccomp", "jansson"] + FFMPEG,
    "dems-vector-bench": ["glibc"],
    "demsctl": ["glibc", "OpenSSL", "jansson", "libcurl"],
}

# Sub-commands that must be listed (and each must have --help). Positionals
# put before the bogus option so that it is the option that is refused.
SUBCOMMANDS = {
    "demsd": {"serve": [], "worker": [], "migrate": [], "admin": None, "routes": [], "face": None,
              "media-sandbox": [], "unpack-sandbox": [], "media-frames": []},
    "dems-verify": {"ledger": [], "inclusion": [], "consistency": [], "checkpoint": [],
                    "file": [], "bundle": []},
    "dems-media": {"probe": ["FILE"], "preview": ["FILE", "DIR"], "versions": []},
    "dems-vector-bench": {"build": [], "search": [], "gen": [], "recall": [], "stats": [],
                          "crc": []},
    "demsctl": {"login": [], "logout": [], "whoami": [], "users": None, "devices": None,
                "jobs": None, "holds": None, "retention": None, "disposal": None, "audit": None,
                "ledger": None},
}
NESTED = {("demsd", "admin"): ["create-user", "verify-blobs", "decrypt-blob"], ("demsd", "face"): ["detect", "embed"],
          ("demsctl", "users"): ["list", "create", "update", "reset-password"],
          ("demsctl", "devices"): ["list", "enrol", "revoke", "assign"],
          ("demsctl", "jobs"): ["list", "show", "retry", "enqueue"],
          ("demsctl", "holds"): ["list", "place", "release"],
          ("demsctl", "retention"): ["policies", "create-policy", "set-case", "set-evidence"],
          ("demsctl", "disposal"): ["due", "propose", "show", "items", "approve", "cancel",
                                    "recover"],
          ("demsctl", "audit"): ["evidence", "case", "user", "custody"], ("demsctl", "ledger"): ["verify"]}


def project_version():
    with open(os.path.join(TOP, "meson.build")) as f:
        m = re.search(r"project\([^)]*?version:\s*'([^']+)'", f.read(), re.S)
    assert m, "no project version in meson.build"
    return m.group(1)


def path_of(prog):
    var = PROGRAMS[prog]
    p = os.environ.get(var)
    assert p and os.access(p, os.X_OK), f"{var} does not name the built {prog}"
    return p


def run(prog, *args):
    r = subprocess.run([path_of(prog), *args], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def listed_commands(text):
    """Names in a "Commands:" section (two-space indent, name, description)."""
    out, on = [], False
    for line in text.splitlines():
        if line.strip().startswith("Commands:"):
            on = True
        elif on and re.match(r"^  [a-z][a-z0-9-]*\s", line):
            out.append(line.split()[0])
        elif on and line.strip() == "":
            if out:
                on = False
    return out


def check_help(prog, *args):
    rc, out, err = run(prog, *args, "--help")
    what = " ".join([prog, *args, "--help"])
    assert rc == 0, f"{what}: exit {rc}, stderr {err!r}"
    assert re.search(r"usage", out, re.I), f"{what}: no usage on stdout: {out[:200]!r}"
    assert err == "", f"{what}: wrote to stderr: {err!r}"
    return out


def check_bad_option(prog, *args):
    rc, out, err = run(prog, *args, BOGUS)
    what = " ".join([prog, *args, BOGUS])
    lines = err.splitlines()
    assert rc == 2, f"{what}: exit {rc}, want 2 (stderr {err!r})"
    assert len(lines) == 1, f"{what}: want one line on stderr, got {len(lines)}: {err!r}"
    assert BOGUS in lines[0] or "unknown command" in lines[0], f"{what}: {lines[0]!r}"
    assert out == "", f"{what}: wrote to stdout: {out[:200]!r}"


def test_version():
    version = project_version()
    for prog, libs in LIBRARIES.items():
        rc, out, err = run(prog, "--version")
        assert rc == 0 and err == "", f"{prog} --version: exit {rc}, stderr {err!r}"
        lines = out.splitlines()
        assert lines[0] == f"{prog} (dems) {version}", f"{prog} --version: {lines[0]!r}"
        assert lines[1].split()[:3] == ["library", "built", "with"], lines[1]
        seen = {}
        for line in lines[2:]:
            name, built, running = line.split()[0], line.split()[1], line.split()[-1]
            seen[name] = (built, running)
            assert re.match(r"^\d+(\.\d+)+", built), f"{prog}: {name} built {built!r}"
            assert running == "-" or re.match(r"^\d+(\.\d+)+", running), line
        missing = [n for n in libs if n not in seen]
        assert not missing, f"{prog} --version does not name {missing}"
        if prog == "demsd" and "face" in listed_commands(run("demsd", "--help")[1]):
            assert "libjpeg-turbo" in seen and "libpng" in seen, out


def test_program_help():
    for prog in PROGRAMS:
        check_help(prog)
        check_bad_option(prog)


def test_every_subcommand_help():
    for prog, want in SUBCOMMANDS.items():
        out = check_help(prog)
        listed = listed_commands(out)
        if prog == "dems-verify":  # usage lines "  dems-verify NAME ..."
            listed = re.findall(r"^  dems-verify ([a-z]+)", out, re.M)
        if prog == "dems-media":  # usage lines "dems-media NAME ..."
            listed = re.findall(r"dems-media ([a-z]+)", out)
        missing = [c for c in want if c not in listed]
        assert not missing, f"{prog} --help does not list {missing}: {listed}"
        for cmd in listed:
            check_help(prog, cmd)
            if (prog, cmd) in NESTED:
                continue
            pos = want.get(cmd) or []
            check_bad_option(prog, cmd, *pos)


def test_nested_subcommands():
    for (prog, cmd), subs in NESTED.items():
        out = check_help(prog, cmd)
        for sub in subs:
            assert sub in out, f"{prog} {cmd} --help does not list {sub}"
            check_help(prog, cmd, sub)
            check_bad_option(prog, cmd, sub)
        rc, _, err = run(prog, cmd, "no-such-command")
        assert rc == 2 and len(err.splitlines()) == 1, f"{prog} {cmd} no-such-command: {rc} {err!r}"


def test_missing_value_is_one_line():
    rc, out, err = run("demsd", "serve", "--data")
    assert rc == 2 and out == "" and len(err.splitlines()) == 1, (rc, err)
    assert "--data" in err and "needs a value" in err, err


if __name__ == "__main__":
    run_tests(globals())
