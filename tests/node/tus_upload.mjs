// SPDX-License-Identifier: Apache-2.0
// Drives a real tus client (tus-js-client) against demsd:
//   node tus_upload.mjs URL TOKEN FILE [abort-at-fraction]
// Uploads FILE in 256 KiB chunks. With abort-at-fraction it first aborts
// mid-way (the connection is cut), then starts a new Upload from the stored
// upload URL and resumes to the end. Prints one JSON line:
// {"url": ..., "resumed_from": N, "bytes": N}. The CA is passed through
// NODE_EXTRA_CA_CERTS.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tus = require('tus-js-client');

const [url, token, file, abortAt] = process.argv.slice(2);
const data = readFileSync(file);
const headers = { Authorization: `Bearer ${token}` };

function start(uploadUrl, onProgress) {
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(data, {
      endpoint: url,
      uploadUrl,
      chunkSize: 256 * 1024,
      retryDelays: [],
      headers,
      metadata: { filename: 'clip.bin', filetype: 'application/octet-stream' },
      onError: reject,
      onSuccess: () => resolve({ url: up.url, done: true }),
      onProgress: (sent, total) => onProgress && onProgress(up, sent, total, resolve),
    });
    up.start();
  });
}

let resumedFrom = 0;
let first = null;
if (abortAt) {
  first = await start(null, (up, sent, total, resolve) => {
    if (sent / total >= Number(abortAt) && up.url) {
      up.abort(false).then(() => resolve({ url: up.url, done: false, sent }));
    }
  });
}
let uploadUrl = first ? first.url : null;
if (first && !first.done) {
  // Ask the server how much it has (a HEAD, as any tus client does).
  const r = await fetch(uploadUrl, { method: 'HEAD', headers: { ...headers, 'Tus-Resumable': '1.0.0' } });
  resumedFrom = Number(r.headers.get('upload-offset'));
}
const result = first && first.done ? first : await start(uploadUrl);
console.log(JSON.stringify({ url: result.url, resumed_from: resumedFrom, bytes: data.length }));
