#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
/*
 * Reference geometry for dems's face engine (common/face/geometry.c): runs
 * @vladmandic/face-api's own classes (FaceDetection, ObjectDetection, Box,
 * FaceLandmarks68, the landmark net's postProcess on the wasm backend) on
 * pseudo-random inputs, most of them steered so that a box edge or an
 * alignment corner lands within 1e-6 px of an integer, and prints the
 * inputs with face-api's boxes, crops and landmarks as JSON (numbers in
 * shortest round-trip form, so doubles survive exactly):
 *
 *   node tests/face/geometry.js > tests/face/expected-geometry.json
 *
 * tests/unit/face/test_face.c (test_geometry_reference) requires the C
 * functions to give the same crops exactly and the same boxes and landmarks
 * to the bit.
 */
'use strict';
const path = require('path');

const top = path.resolve(__dirname, '..', '..');
const nm = path.join(process.env.DEMS_MODELS || path.join(top, '.models'), 'node_modules');
const tf = require(path.join(nm, '@tensorflow/tfjs'));
const wasm = require(path.join(nm, '@tensorflow/tfjs-backend-wasm'));
const faceapi = require(path.join(nm, '@vladmandic/face-api/dist/face-api.node-wasm.js'));

let seed = 12345;
function rnd() { /* xorshift32, deterministic */
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}
const irange = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const f32 = Math.fround;
const dist = (v) => Math.abs(v - Math.round(v));
const rect = (b) => [b.x, b.y, b.width, b.height];

/* The next float32 after v towards +/-inf (k steps). */
function f32step(v, k) {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, v);
  let bits = buf.getInt32(0);
  bits += v >= 0 ? k : -k;
  buf.setInt32(0, bits);
  return buf.getFloat32(0);
}

/* SsdMobilenetv1.locateFaces from one decoded box (ymin, xmin, ymax, xmax). */
function ssdBox(W, H, b) {
  const scale = 512 / Math.max(H, W);
  const rw = Math.round(W * scale); const rh = Math.round(H * scale);
  const padX = 512 / rw; const padY = 512 / rh;
  const [t, bo] = [Math.max(0, b[0]), Math.min(1.0, b[2])].map((v) => v * padY);
  const [l, r] = [Math.max(0, b[1]), Math.min(1.0, b[3])].map((v) => v * padX);
  return new faceapi.FaceDetection(0.9, new faceapi.Rect(l, t, r - l, bo - t), { width: W, height: H });
}

function ssdCases(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const W = irange(64, 1920); const H = irange(64, 1920);
    const b = [f32(rnd() * 0.6 - 0.05), f32(rnd() * 0.6 - 0.05), 0, 0];
    b[2] = f32(b[0] + 0.1 + rnd() * 0.5); b[3] = f32(b[1] + 0.1 + rnd() * 0.5);
    /* Walk xmin over neighbouring floats to put the box's x nearest an integer. */
    let best = b[1];
    for (let k = -2000; k <= 2000; k++) {
      const v = f32step(b[1], k);
      b[1] = v;
      if (dist(ssdBox(W, H, b).box.x) < dist(ssdBox(W, H, [b[0], best, b[2], b[3]]).box.x)) best = v;
    }
    b[1] = best;
    out.push({ W, H, b, box: rect(ssdBox(W, H, b).box) });
  }
  return out;
}

/* TinyYolov2Base.detect + TinyFaceDetector.locateFaces for one candidate. */
function tinyBox(W, H, l, t, w, h) {
  const det = new faceapi.ObjectDetection(0.9, 0.9, '', new faceapi.BoundingBox(l, t, l + w, t + h), { width: W, height: H });
  return new faceapi.FaceDetection(det.score, det.relativeBox, { width: det.imageWidth, height: det.imageHeight });
}

function tinyCases(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const W = irange(64, 1920); const H = irange(64, 1920);
    const X = irange(0, W - 10);
    const l = (X - (i % 3) * 1e-7) / W; const t = rnd() * 0.5; const w = 0.05 + rnd() * 0.4; const h = 0.05 + rnd() * 0.4;
    const b = [l, t, l + w, t + h];
    out.push({ W, H, b, box: rect(tinyBox(W, H, l, t, w, h).box) });
  }
  return out;
}

/* extractFaceTensors' crop of a detection: det.forSize(W, H).box clipped. */
function cropCases(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const W = irange(64, 1920); const H = irange(64, 1920);
    const X = irange(-20, W - 5); const Y = irange(-20, H - 5);
    const eps = [0, 1e-7, -1e-7, 1e-9, -1e-9, 1e-12, -1e-12][i % 7];
    const rel = new faceapi.Rect((X + eps) / W, (Y - eps) / H, (irange(5, 400) + eps) / W, (irange(5, 400) - eps) / H);
    const det = new faceapi.FaceDetection(0.9, rel, { width: W, height: H });
    const c = det.forSize(W, H).box.clipAtImageBorders(W, H);
    out.push({ W, H, box: rect(det.box), crop: c.width > 0 && c.height > 0 ? rect(c) : null });
  }
  return out;
}

/* The landmark net's postProcess and the shift by the detection box. */
function landmarkCases(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const w = irange(20, 600); const h = irange(20, 600);
    const o = Array.from({ length: 136 }, () => f32(rnd() * 1.2 - 0.1));
    const box = [rnd() * 1000 - 50, rnd() * 1000 - 50];
    const rel = faceapi.nets.faceLandmark68Net.postProcess(tf.tensor2d(o, [1, 136]), 112, [{ width: w, height: h }]);
    const d = Array.from(rel.dataSync());
    rel.dispose();
    const pts = Array.from({ length: 68 }, (_, k) => new faceapi.Point(d[2 * k], d[2 * k + 1]));
    const lm = new faceapi.FaceLandmarks68(pts, { width: w, height: h }).shiftBy(box[0], box[1]);
    out.push({ w, h, box, o, lm: lm.positions.map((p) => [p.x, p.y]) });
  }
  return out;
}

/* alignDlib's rect for landmarks of a crop lw x lh, clipped as extractFaceTensors does. */
function alignOf(rel, lw, lh, sx, sy, W, H) {
  const lm = new faceapi.FaceLandmarks68(rel, { width: lw, height: lh }, new faceapi.Point(sx, sy));
  const r = lm.align(null, { useDlibAlignment: true });
  const c = new faceapi.Box(r).clipAtImageBorders(W, H);
  /* The unfloored left edge, to steer it next to an integer. */
  const cs = lm.getRefPointsForAlignment();
  const d2m = (p) => cs[2].sub(p).magnitude();
  const size = Math.floor(((d2m(cs[0]) + d2m(cs[1])) / 2) / 0.45);
  const ref = cs.reduce((s, p) => s.add(p), new faceapi.Point(0, 0)).div(new faceapi.Point(3, 3));
  return { lm, c, edge: ref.x - 0.5 * size };
}

function alignCases(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const W = irange(300, 1920); const H = irange(300, 1920);
    const lw = irange(80, 300); const lh = irange(80, 300);
    const rel = Array.from({ length: 68 }, () => new faceapi.Point(0.2 + rnd() * 0.6, 0.2 + rnd() * 0.6));
    let sx = irange(100, W - 250) + rnd(); const sy = irange(0, H - 300) + rnd();
    /* Move the shift so the crop's left edge falls just below an integer. */
    let a = alignOf(rel, lw, lh, sx, sy, W, H);
    const target = Math.ceil(a.edge) - [1e-7, 1e-9, 1e-12, 0][i % 4];
    for (let k = 0; k < 3; k++) {
      sx += target - a.edge;
      a = alignOf(rel, lw, lh, sx, sy, W, H);
    }
    out.push({ W, H, lmcrop: [lw, lh], lm: a.lm.positions.map((p) => [p.x, p.y]), edge: a.edge, crop: a.c.width > 0 && a.c.height > 0 ? rect(a.c) : null });
  }
  return out;
}

async function main() {
  wasm.setWasmPaths(path.join(nm, '@tensorflow/tfjs-backend-wasm/dist') + path.sep);
  await tf.setBackend('wasm');
  await tf.ready();
  const doc = {
    generator: 'tests/face/geometry.js',
    ssd: ssdCases(40),
    tiny: tinyCases(30),
    crop: cropCases(70),
    landmarks: landmarkCases(20),
    align: alignCases(40),
  };
  process.stdout.write(`${JSON.stringify(doc)}\n`);
}

main().catch((e) => { console.error(e); process.exit(1); });
