#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
/*
 * Compares two outputs of `demsd face embed` / tests/face/reference.js:
 *   node tests/face/compare.js EXPECTED.json ACTUAL.json
 * Prints per image the matched faces, min IoU, max landmark error (px) and
 * max descriptor distance; files are matched by base name.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const [exp, act] = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
const iou = (a, b) => {
  const w = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const h = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  return (w * h) / (a.width * a.height + b.width * b.height - w * h);
};
let worst = { iou: 1, lm: 0, desc: 0, missing: 0 };
for (const e of exp) {
  const a = act.find((x) => path.basename(x.file) === path.basename(e.file));
  if (!a) { console.log(`${e.file}: missing`); worst.missing++; continue; }
  let minIou = 1; let maxLm = 0; let maxD = 0; let unmatched = 0;
  for (const f of e.faces) {
    let best = null; let bi = 0;
    for (const g of a.faces) { const v = iou(f.box, g.box); if (v > bi) { bi = v; best = g; } }
    if (!best || bi < 0.5) { unmatched++; continue; }
    minIou = Math.min(minIou, bi);
    if (f.landmarks && best.landmarks) f.landmarks.forEach((p, i) => { maxLm = Math.max(maxLm, Math.hypot(p[0] - best.landmarks[i][0], p[1] - best.landmarks[i][1])); });
    if (f.descriptor && best.descriptor) maxD = Math.max(maxD, Math.hypot(...f.descriptor.map((v, i) => v - best.descriptor[i])));
  }
  console.log(`${path.basename(e.file)}: faces ${e.faces.length}/${a.faces.length} unmatched ${unmatched} minIoU ${minIou.toFixed(5)} maxLm ${maxLm.toFixed(4)} maxDesc ${maxD.toFixed(5)}`);
  worst = { iou: Math.min(worst.iou, minIou), lm: Math.max(worst.lm, maxLm), desc: Math.max(worst.desc, maxD), missing: worst.missing + unmatched + Math.abs(e.faces.length - a.faces.length) };
}
console.log('worst', JSON.stringify(worst));
