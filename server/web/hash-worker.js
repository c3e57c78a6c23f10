// SPDX-License-Identifier: Apache-2.0
// A module worker that computes a File's SHA-256 a piece at a time
// (@noble/hashes from upload-kit.js; WebCrypto's digest takes the whole
// file at once), so hashing a large file neither holds it in memory nor
// stops the page. Message in: {file}; out: {progress: bytes} now and then,
// then {sha256: hex} or {error: text}. hash.js drives it.
import { sha256 } from './upload-kit.js';

const PIECE = 4 << 20;

self.onmessage = async (ev) => {
  const file = ev.data.file;
  try {
    const h = sha256.create();
    let done = 0;
    while (done < file.size) {
      const buf = new Uint8Array(await file.slice(done, Math.min(done + PIECE, file.size)).arrayBuffer());
      if (buf.length === 0) throw new Error('the file is shorter than it was when chosen');
      h.update(buf);
      done += buf.length;
      self.postMessage({ progress: done });
    }
    const d = h.digest();
    let hex = '';
    for (const b of d) hex += b.toString(16).padStart(2, '0');
    self.postMessage({ sha256: hex });
  } catch (e) {
    self.postMessage({ error: e && e.name === 'NotReadableError'
      ? 'the file can no longer be read (it was changed, moved or deleted since it was chosen); choose it again'
      : String(e && e.message ? e.message : e) });
  }
};
