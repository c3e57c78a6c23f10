#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checks of deploy/ run as tests: deploy.sh CHECK (from anywhere).
#   deps   ./deploy/run installs only what building and running need: with
#          dpkg, apt-get and npm stubbed out on an empty machine (a copy of
#          deploy/ and the npm manifests),
#          deploy/install-deps installs exactly deploy/packages.txt (no test
#          package) and, with npm, only the staff page's pinned third-party
#          code (npm ci in server/web/vendor), and --test adds
#          deploy/packages-test.txt and the npm installers; tests/run asks
#          for --test, deploy/run does not;
#          as root it creates the accounts dems and dems-sandbox when missing.
#   unit   deploy/demsd.service runs as the dems account under systemd's
#          sandboxing (the directives docs/operations.md lists), passes
#          `systemd-analyze verify`, and `systemd-analyze security` rates its
#          exposure at most 2.5 (skipped parts when systemd-analyze is missing).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "deploy $check: $*"; exit 1; }
check=${1:-}

# Package names from a list file, sorted.
names() { grep -v '^\s*#' "$1" | awk 'NF {print $1}' | sort -u; }

case "$check" in
deps)
    mkdir "$tmp/bin" "$tmp/models"
    # An empty machine: nothing installed; apt-get and npm only record.
    printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/dpkg-query"
    printf '#!/bin/sh\n[ "$1" = install ] && shift 4 && echo "$@" | tr " " "\\n" >>"%s/apt"\nexit 0\n' \
        "$tmp" >"$tmp/bin/apt-get"
    printf '#!/bin/sh\necho "$@" >>"%s/npm"\nexit 0\n' "$tmp" >"$tmp/bin/npm"
    printf '#!/bin/sh\nexec "$@"\n' >"$tmp/bin/sudo"
    printf '#!/bin/sh\nexit 2\n' >"$tmp/bin/getent"
    printf '#!/bin/sh\necho "$@" >>"%s/useradd"\nexit 0\n' "$tmp" >"$tmp/bin/useradd"
    chmod +x "$tmp"/bin/*
    # A copy of the tree's deploy/ and npm manifests: the stubs install
    # nothing, so the installers must not see the real node_modules.
    copy="$tmp/top"
    mkdir -p "$copy/server/web/vendor" "$copy/tests/node" "$copy/tests/browser"
    cp -r "$top/deploy" "$copy/"
    cp "$top/server/web/vendor/package.json" "$top/server/web/vendor/package-lock.json" \
        "$copy/server/web/vendor/"
    cp "$top/tests/node/package.json" "$copy/tests/node/"
    cp "$top/tests/browser/package.json" "$copy/tests/browser/"
    PATH="$tmp/bin:$PATH" DEMS_MODELS="$tmp/models" "$copy/deploy/install-deps" >/dev/null 2>&1 ||
        fail "install-deps failed"
    sort -u "$tmp/apt" >"$tmp/got" 2>/dev/null || : >"$tmp/got"
    names "$top/deploy/packages.txt" >"$tmp/want"
    diff -u "$tmp/want" "$tmp/got" >&2 || fail "install-deps installs other than deploy/packages.txt"
    [ "$(grep -c . "$tmp/npm" 2>/dev/null)" = 1 ] && grep -q '^ci --ignore-scripts' "$tmp/npm" ||
        fail "install-deps must run npm only for server/web/vendor (npm ci): $(cat "$tmp/npm" 2>/dev/null)"
    [ -f "$copy/server/web/vendor/node_modules/.dems-lock-sha256" ] ||
        fail "install-deps did not install server/web/vendor's packages"
    if [ "$(id -u)" = 0 ]; then
        grep -q -- '--system.* dems$' "$tmp/useradd" 2>/dev/null ||
            fail "install-deps (as root) did not create the system account dems"
        grep -q -- '--system.* dems-sandbox$' "$tmp/useradd" 2>/dev/null ||
            fail "install-deps (as root) did not create the system account dems-sandbox"
    fi
    for p in chromium nginx-light wrk clang libcmocka-dev clang-format ffmpeg; do
        ! grep -qx "$p" "$tmp/got" || fail "the runtime list installs the test package $p"
    done
    rm -f "$tmp/apt" "$tmp/npm"
    # The face-model installer then fails its checksums (npm is a stub): fine.
    PATH="$tmp/bin:$PATH" DEMS_MODELS="$tmp/models" "$copy/deploy/install-deps" --test \
        >/dev/null 2>&1
    names "$top/deploy/packages-test.txt" >"$tmp/test"
    sort -u "$tmp/apt" >"$tmp/got"
    sort -u "$tmp/want" "$tmp/test" >"$tmp/all"
    diff -u "$tmp/all" "$tmp/got" >&2 || fail "install-deps --test misses test packages"
    grep -q 'face-api' "$tmp/npm" 2>/dev/null || fail "install-deps --test did not install the face models"
    grep -qx '\./deploy/install-deps' "$top/deploy/run" || fail "deploy/run must call install-deps (no --test)"
    grep -q 'deploy/install-deps --test' "$top/tests/run" || fail "tests/run must call install-deps --test"
    ;;
unit)
  for unit in "$top/deploy/demsd.service" "$top/deploy/demsd-worker@.service"; do
    # key=value lines of the [Service] section
    sed -n '/^\[Service\]/,/^\[/p' "$unit" | grep -E '^[A-Za-z]+=' >"$tmp/service"
    has() { grep -qxF "$1" "$tmp/service" || fail "demsd.service lacks $1"; }
    has 'User=dems'
    has 'Group=dems'
    has 'NoNewPrivileges=yes'
    has 'ProtectSystem=strict'
    has 'ProtectHome=yes'
    has 'PrivateTmp=yes'
    has 'PrivateDevices=yes'
    has 'CapabilityBoundingSet='
    has 'AmbientCapabilities='
    has 'ReadWritePaths=/var/lib/dems'
    has 'StateDirectory=dems'
    has 'UMask=0077'
    has 'KillMode=mixed'
    has 'MemoryDenyWriteExecute=yes'
    has 'SystemCallArchitectures=native'
    grep -q '^SystemCallFilter=@system-service' "$tmp/service" || fail "no SystemCallFilter=@system-service"
    grep -q '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$' "$tmp/service" ||
        fail "RestrictAddressFamilies must be AF_UNIX AF_INET AF_INET6"
    ! grep -qE '^(User=root|PermissionsStartOnly|DynamicUser=yes)' "$tmp/service" ||
        fail "demsd.service must not run as root"
    if ! command -v systemd-analyze >/dev/null; then
        echo "systemd-analyze not installed: directives checked only"; continue
    fi
    # verify wants the binary: point ExecStart at an executable that exists.
    # (A template is verified as one of its instances.)
    name=$(basename "$unit" | sed 's/@\.service$/@1.service/')
    sed 's|^ExecStart=/usr/local/bin/demsd|ExecStart=/bin/true|' "$unit" >"$tmp/$name"
    systemd-analyze verify "$tmp/$name" >"$tmp/verify" 2>&1 ||
        { cat "$tmp/verify"; fail "systemd-analyze verify failed"; }
    ! grep -q . "$tmp/verify" || { cat "$tmp/verify"; fail "systemd-analyze verify warned"; }
    systemd-analyze security --offline=yes --threshold=25 "$tmp/$name" >"$tmp/sec" 2>&1 ||
        { tail -30 "$tmp/sec"; fail "exposure above 2.5"; }
    tail -1 "$tmp/sec"
  done
    ;;
*)
    echo "unknown check $check"; exit 2 ;;
esac
echo "deploy $check: ok"
