#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
/*
 * The JavaScript reference for dems's face engine: runs @vladmandic/face-api
 * (installed by deploy/install.d/face-models into .models/) under node with
 * tfjs's pure-JS "cpu" or XNNPACK "wasm" backend, offline, one thread.
 *
 *   node tests/face/reference.js [--backend wasm|cpu] [--detector ssd|tiny]
 *        [--models DIR] [--bench N] IMAGE...
 *
 * Default mode prints one JSON array in the same shape as `demsd face embed`
 * (file, width, height, faces[] with score, box, landmarks, descriptor).
 * --bench N instead runs the pipeline stage by stage N times per image and
 * prints per-stage milliseconds (median) as JSON.
 *
 * Images: binary PPM (P6) is read directly; anything else (JPEG) is decoded
 * by `djpeg` (Debian libjpeg-turbo-progs), i.e. by the same libjpeg-turbo with
 * the same default settings the C engine uses, so both see identical pixels.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const top = path.resolve(__dirname, '..', '..');
const args = process.argv.slice(2);
const opt = { backend: 'wasm', detector: 'ssd', models: process.env.DEMS_MODELS || path.join(top, '.models'), bench: 0 };
const files = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--backend') opt.backend = args[++i];
  else if (a === '--detector') opt.detector = args[++i];
  else if (a === '--models') opt.models = args[++i];
  else if (a === '--bench') opt.bench = parseInt(args[++i], 10);
  else files.push(a);
}
const nm = path.join(opt.models, 'node_modules');
const tf = require(path.join(nm, '@tensorflow/tfjs'));
const wasm = require(path.join(nm, '@tensorflow/tfjs-backend-wasm'));
const faceapi = require(path.join(nm, '@vladmandic/face-api/dist/face-api.node-wasm.js'));
const modelDir = path.join(nm, '@vladmandic/face-api/model');

function readPpm(buf) {
  let pos = 0;
  const tok = () => {
    for (;;) {
      while (/\s/.test(String.fromCharCode(buf[pos]))) pos++;
      if (buf[pos] === 0x23) { while (buf[pos] !== 0x0a) pos++; } else break;
    }
    const s = pos;
    while (!/\s/.test(String.fromCharCode(buf[pos]))) pos++;
    return buf.toString('latin1', s, pos);
  };
  if (tok() !== 'P6') throw new Error('not a P6 PPM');
  const w = parseInt(tok(), 10); const h = parseInt(tok(), 10); const max = parseInt(tok(), 10);
  if (max !== 255) throw new Error('PPM maxval must be 255');
  pos++;
  return { w, h, data: buf.subarray(pos, pos + w * h * 3) };
}

function readImage(file) {
  let buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 2) !== 'P6') buf = execFileSync('djpeg', ['-pnm', file], { maxBuffer: 1 << 30 });
  const img = readPpm(buf);
  return { w: img.w, h: img.h, t: tf.tensor3d(new Int32Array(img.data), [img.h, img.w, 3], 'int32') };
}

function detectorOptions() {
  if (opt.detector === 'tiny') return new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 });
  return new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5, maxResults: 100 });
}

const r6 = (v) => Math.round(v * 1e6) / 1e6;

async function full(file) {
  const img = readImage(file);
  const res = await faceapi.detectAllFaces(img.t, detectorOptions()).withFaceLandmarks().withFaceDescriptors();
  img.t.dispose();
  return {
    file: path.basename(file),
    width: img.w,
    height: img.h,
    faces: res.map((r) => ({
      score: r6(r.detection.score),
      box: { x: r6(r.detection.box.x), y: r6(r.detection.box.y), width: r6(r.detection.box.width), height: r6(r.detection.box.height) },
      landmarks: r.landmarks.positions.map((p) => [r6(p.x), r6(p.y)]),
      descriptor: Array.from(r.descriptor, r6),
    })),
  };
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

/* One pass stage by stage, as face-api's composed tasks do it internally. */
async function stages(img) {
  const t0 = performance.now();
  const dets = await faceapi.detectAllFaces(img.t, detectorOptions());
  const t1 = performance.now();
  const crops = await faceapi.extractFaceTensors(img.t, dets);
  const lms = [];
  for (const c of crops) lms.push(await faceapi.nets.faceLandmark68Net.detectLandmarks(c));
  crops.forEach((c) => c.dispose());
  const t2 = performance.now();
  const withLm = dets.map((d, i) => faceapi.extendWithFaceLandmarks({ detection: d }, lms[i]));
  const rects = withLm.map((r) => r.landmarks.align(null, { useDlibAlignment: true }));
  const faces = await faceapi.extractFaceTensors(img.t, rects);
  for (const f of faces) await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(f);
  faces.forEach((f) => f.dispose());
  const t3 = performance.now();
  return { n: dets.length, detect: t1 - t0, landmarks: t2 - t1, descriptor: t3 - t2 };
}

async function bench() {
  const out = [];
  for (const file of files) {
    const img = readImage(file);
    await stages(img); /* warm-up: kernels compiled, weights uploaded */
    const runs = [];
    for (let i = 0; i < opt.bench; i++) runs.push(await stages(img));
    img.t.dispose();
    const n = runs[0].n;
    out.push({
      file: path.basename(file), faces: n,
      detect_ms: median(runs.map((r) => r.detect)),
      landmarks_ms_per_face: n ? median(runs.map((r) => r.landmarks)) / n : 0,
      descriptor_ms_per_face: n ? median(runs.map((r) => r.descriptor)) / n : 0,
    });
  }
  return out;
}

async function main() {
  if (opt.backend === 'wasm') {
    wasm.setWasmPaths(path.join(nm, '@tensorflow/tfjs-backend-wasm/dist') + path.sep);
  }
  await tf.setBackend(opt.backend);
  await tf.ready();
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.tinyFaceDetector.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  let out;
  if (opt.bench > 0) {
    out = { backend: tf.getBackend(), tfjs: tf.version_core, faceapi: faceapi.version, images: await bench() };
    if (opt.backend === 'wasm') out.wasm_multithread = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT');
  } else {
    out = [];
    for (const f of files) out.push(await full(f));
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => { process.stderr.write(`reference.js: ${e.stack || e}\n`); process.exit(1); });
