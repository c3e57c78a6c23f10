#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Lint checks run as tests: lint.sh CHECK (from the source root).
#   banned     no atoi/strtol/sprintf/strcpy/strcat/strtok/gets in our C
#   layering   common/ never includes server headers (demsd/)
#   migrations every migrations/NNNN_*.sql is listed in migrations/meson.build
#   format     clang-format (14, .clang-format) finds nothing to change
#   spdx       every source file names its licence in its first lines
set -u
cd "$(dirname "$0")/../.."
src=$(git ls-files 'common/*.c' 'common/*.h' 'server/*.c' 'server/*.h' 'include/*.h' 2>/dev/null ||
      find common server include -name '*.[ch]')
case "$1" in
banned)
    bad=$(grep -nE '\b(atoi|atol|strtol|strtoul|strtoll|sprintf|vsprintf|strcpy|strcat|strtok|gets)\s*\(' $src)
    [ -z "$bad" ] || { echo "banned functions:"; echo "$bad"; exit 1; } ;;
layering)
    bad=$(grep -n '#include "demsd/' $(echo "$src" | grep '^common/'))
    [ -z "$bad" ] || { echo "common/ includes server headers:"; echo "$bad"; exit 1; } ;;
migrations)
    for f in migrations/[0-9][0-9][0-9][0-9]_*.sql; do
        grep -q "'$(basename "$f")'" migrations/meson.build ||
            { echo "$f is not listed in migrations/meson.build"; exit 1; }
    done ;;
format)
    command -v clang-format >/dev/null || { echo "clang-format not installed"; exit 77; }
    clang-format --dry-run --Werror $src tests/unit/*/*.c tests/fuzz/*.c || exit 1 ;;
spdx)
    files=$(git ls-files '*.c' '*.h' '*.cpp' '*.py' '*.sh' '*.js' '*.mjs' '*.css' '*.html' \
            '*.svg' '*.sql' 'meson.build' '*/meson.build' '*.service' 'tests/run' \
            'tests/bench/*/run' 'deploy/run' 'deploy/install-deps' 'deploy/install.d/*' \
            'deploy/install-test.d/*' '.ci/run' | grep -vE '^tests/(vectors|fuzz/corpus)/')
    [ -n "$files" ] || { echo "git ls-files found no sources"; exit 77; }
    bad=$(for f in $files; do
        head -3 "$f" | grep -q 'SPDX-License-Identifier: Apache-2.0' || echo "$f"
    done)
    [ -z "$bad" ] || { echo "files without an SPDX-License-Identifier line:"; echo "$bad"; exit 1; } ;;
*)
    echo "unknown check $1"; exit 2 ;;
esac
echo "lint $1: ok"
