#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the committed reference outputs (fixtures) of the face engine's
# tests by running face-api itself (tests/face/reference.js, tfjs wasm backend)
# over face-api's 6 demo photos and the constructed images in images/.
# Needs deploy/install.d/face-models and djpeg (libjpeg-turbo-progs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
D=${DEMS_MODELS:-$top/.models}/node_modules/@vladmandic/face-api/demo
imgs=("$D"/sample{1,2,3,4,5,6}.jpg "$here"/images/{scaled,tiny,rotated,portrait,border,noface,flipped}.jpg)
node "$here/reference.js" --backend wasm --detector ssd "${imgs[@]}" >"$here/expected-ssd.json"
node "$here/reference.js" --backend wasm --detector tiny "${imgs[@]}" >"$here/expected-tiny.json"
# Boxes, crops and landmarks from face-api's own classes (test_geometry_reference).
node "$here/geometry.js" >"$here/expected-geometry.json"
