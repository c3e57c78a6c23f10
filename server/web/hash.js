// SPDX-License-Identifier: Apache-2.0
// sha256File(file, {onProgress, signal}): the SHA-256 of a File as 64 hex
// digits, computed in a module worker (hash-worker.js) a piece at a time.
// onProgress(bytesDone) is called as it goes; aborting signal stops the
// worker and rejects with an AbortError. Used by the upload engine
// (uploads.js) to declare each file's hash, which the server checks against
// the bytes it received before anything becomes evidence.

export function sha256File(file, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(new DOMException('hashing stopped', 'AbortError'));
      return;
    }
    const w = new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module', name: 'sha256' });
    const stop = () => {
      w.terminate();
      reject(new DOMException('hashing stopped', 'AbortError'));
    };
    if (signal) signal.addEventListener('abort', stop, { once: true });
    const end = () => {
      w.terminate();
      if (signal) signal.removeEventListener('abort', stop);
    };
    w.onmessage = (ev) => {
      const m = ev.data;
      if (m.progress !== undefined) {
        if (onProgress) onProgress(m.progress);
      } else if (m.sha256) {
        end();
        resolve(m.sha256);
      } else {
        end();
        reject(new Error(`SHA-256 could not be computed: ${m.error}`));
      }
    };
    w.onerror = (ev) => {
      end();
      reject(new Error(`SHA-256 could not be computed: ${ev.message || 'the worker failed to start'}`));
    };
    w.postMessage({ file });
  });
}
