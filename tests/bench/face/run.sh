#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Face engine benchmark: our C engine vs face-api on tfjs's WASM (XNNPACK,
# SIMD, one thread in node) and pure-JS CPU backends, same images, same run,
# stage by stage (detection per image; landmarks and descriptor per face).
#   tests/bench/face/run.sh [BUILD_DIR]       (default build/face)
# Env: REPS (default 5) timed passes per image after one warm-up, CPU_REPS
# (default 1) for the slow CPU backend, which runs on CPU_IMAGES (default
# the first 2 images; 0 skips it) only; IMAGES to override the image list;
# DETECTOR=tiny to measure the tiny detector (default ssd).
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$top/build/face}
models=${DEMS_MODELS:-$top/.models}
demo=$models/node_modules/@vladmandic/face-api/demo
read -r -a imgs <<<"${IMAGES:-$(echo "$demo"/sample{1,2,3,4,5,6}.jpg)}"
ncpu=${CPU_IMAGES:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

det=${DETECTOR:-ssd}
echo "face bench: $det, ${#imgs[@]} images, REPS=${REPS:-5}, CPU_REPS=${CPU_REPS:-1} on $ncpu images" >&2
"$build/tests/bench/face/bench_face" --detector "$det" --reps "${REPS:-5}" "${imgs[@]}" >"$out/c.json"
node "$top/tests/face/reference.js" --detector "$det" --backend wasm --bench "${REPS:-5}" "${imgs[@]}" \
    >"$out/wasm.json"
if [ "$ncpu" -gt 0 ]; then
    node "$top/tests/face/reference.js" --detector "$det" --backend cpu --bench "${CPU_REPS:-1}" \
        "${imgs[@]:0:$ncpu}" >"$out/cpu.json"
else
    echo '{"images": []}' >"$out/cpu.json"
fi

node - "$out" <<'JS'
const fs = require('fs');
const dir = process.argv[2];
const load = (n) => JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8'));
const c = load('c'); const wasm = load('wasm'); const cpu = load('cpu');
/* Mean detect ms per image; landmarks/descriptor ms per face (face-weighted). */
const summary = (r, files) => {
  const im = r.images.filter((i) => !files || files.includes(i.file));
  const faces = im.reduce((s, i) => s + i.faces, 0);
  return {
    images: im.length, faces,
    detect: im.reduce((s, i) => s + i.detect_ms, 0) / im.length,
    detectPerFace: im.reduce((s, i) => s + i.detect_ms, 0) / faces,
    landmarks: im.reduce((s, i) => s + i.landmarks_ms_per_face * i.faces, 0) / faces,
    descriptor: im.reduce((s, i) => s + i.descriptor_ms_per_face * i.faces, 0) / faces,
  };
};
const cpuFiles = cpu.images.map((i) => i.file);
const rows = [
  ['dems C (all images)', summary(c)],
  ['tfjs wasm (all images)', summary(wasm)],
];
if (cpuFiles.length) rows.push(['dems C (CPU subset)', summary(c, cpuFiles)], ['tfjs cpu (CPU subset)', summary(cpu)]);
console.log(`tfjs ${wasm.tfjs}, face-api ${wasm.faceapi}, wasm multithread: ${wasm.wasm_multithread}`);
console.log('| engine | images | faces | detect ms/image | detect ms/face | landmarks ms/face | descriptor ms/face |');
console.log('|---|---|---|---|---|---|---|');
for (const [n, s] of rows) console.log(`| ${n} | ${s.images} | ${s.faces} | ${s.detect.toFixed(1)} | ${s.detectPerFace.toFixed(1)} | ${s.landmarks.toFixed(2)} | ${s.descriptor.toFixed(2)} |`);
const ratio = (a, b) => ['detect', 'landmarks', 'descriptor'].map((k) => `${k} ${(b[k] / a[k]).toFixed(1)}x`).join(', ');
console.log(`\nspeed-up vs wasm: ${ratio(rows[0][1], rows[1][1])}`);
if (rows.length > 2) console.log(`speed-up vs cpu:  ${ratio(rows[2][1], rows[3][1])}`);
JS
