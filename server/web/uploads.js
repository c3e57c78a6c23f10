// SPDX-License-Identifier: Apache-2.0
// The upload engine: a queue of files sent to POST /v1/uploads with tus
// (tus-js-client, from upload-kit.js), each first hashed in the browser
// (hash.js) so its SHA-256 is declared in the upload's metadata and the
// server refuses bytes that do not match. The queue lives in the store
// (store.get().uploads), so it carries on while the user looks at other
// pages; the upload view (upload.js) draws it. One file is hashed at a
// time and two are sent at a time.
//
// Resuming: tus-js-client keeps each unfinished upload's URL in
// localStorage under a fingerprint (user, name, type, size, last
// modification), so after a pause, a lost connection, a reload or a closed
// tab the same file carries on from the offset the server holds instead of
// starting again. After a reload the browser no longer has the file:
// restored uploads wait ('waiting') until the user chooses the same file
// again. A 401 (the session ended) waits for the user to sign in again and
// then resumes. Every failure ends in 'failed' with the server's message.
//
// An item: {key, file, name, size, type, fields: {filename, device_serial,
// recording_start, recording_end, description}, errors, state, hashed,
// sha256, sent, url, evidence, message, resumedFrom}, state one of ready,
// hash-wait, hashing, queued, uploading, paused, recording, done, failed,
// waiting, signin.
import { Upload } from './upload-kit.js';
import * as store from './store.js';
import { api, csrfHeaders, sessionExpired, problem } from './api.js';
import { sha256File } from './hash.js';
import { metadataProblems, mediaTypeOk } from './meta.js';
import { bytes } from './ui.js';

const ENDPOINT = '/v1/uploads';
const CHUNK = 32 << 20; // bytes per PATCH
const SENDING = 2; // uploads at once
const RECORD_POLL_MS = 2000;
const PREFIX = 'dems-upload::';
const FIELDS = ['filename', 'device_serial', 'recording_start', 'recording_end', 'description'];

let seq = 0;
let owner = null; // the username the queue belongs to

let maxSize = null; // the server's Tus-Max-Size, asked once

const items = () => store.get().uploads;
const changed = (item) => store.set({ uploads: items(), upload: item });

// ---- where unfinished uploads are remembered (tus-js-client's urlStorage) ----

function stored(match) {
  const out = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key || !key.startsWith(PREFIX)) continue;
    try {
      const u = JSON.parse(localStorage.getItem(key));
      if (match(u)) out.push(Object.assign(u, { urlStorageKey: key }));
    } catch (e) { /* not ours */ }
  }
  return out;
}

const urlStorage = {
  findAllUploads: async () => stored((u) => owner !== null && typeof u.fingerprint === 'string' && u.fingerprint.startsWith(`${owner}/`)),
  findUploadsByFingerprint: async (fp) => stored((u) => u.fingerprint === fp),
  removeUpload: async (key) => localStorage.removeItem(key),
  addUpload: async (fp, upload) => {
    const key = `${PREFIX}${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    localStorage.setItem(key, JSON.stringify(Object.assign({}, upload, { fingerprint: fp })));
    return key;
  },
};

const fingerprint = (f) => [owner, f.name, f.type, f.size, f.lastModified].join('/');

// ---- metadata ----

// What the upload declares: the fields given, the browser's media type
// when the server would take it, and the hash.
export function metadataOf(item) {
  const meta = {};
  for (const k of FIELDS) {
    const v = (item.fields[k] || '').trim();
    if (v) meta[k] = k === 'filename' ? item.fields[k] : v;
  }
  if (item.type && mediaTypeOk(item.type)) meta.filetype = item.type;
  if (item.sha256) meta.sha256 = item.sha256;
  return meta;
}

// Checks an item's fields as the server will; sets item.errors and says
// whether it may be sent.
export function check(item) {
  item.errors = metadataProblems(metadataOf(item));
  return Object.keys(item.errors).length === 0;
}

// ---- the queue ----

function newItem(file, fields) {
  return {
    key: `u${++seq}`,
    file,
    name: file ? file.name : fields.filename,
    size: file ? file.size : 0,
    type: file ? file.type : '',
    fields: Object.assign({ filename: file ? file.name : '' }, fields),
    errors: {},
    state: 'ready',
    hashed: 0,
    sha256: null,
    sent: 0,
    url: null,
    evidence: null,
    message: '',
    resumedFrom: null,
  };
}

// The largest upload the server takes (OPTIONS: Tus-Max-Size), so a file
// too large is refused before it is hashed; unknown: no limit here (the
// server still refuses with 413).
async function serverMax() {
  if (maxSize === null) {
    try {
      const r = await fetch(ENDPOINT, { method: 'OPTIONS', credentials: 'same-origin', cache: 'no-store' });
      maxSize = Number(r.headers.get('Tus-Max-Size')) || Infinity;
    } catch (e) {
      return Infinity; // asked again next time
    }
  }
  return maxSize;
}

function tooLarge(item, max) {
  if (item.size <= max) return false;
  item.state = 'failed';
  item.message = `Too large: this server takes files of up to ${max.toLocaleString('en')} bytes (${bytes(max)}); ` +
    `this one has ${item.size.toLocaleString('en')}.`;
  item.refused = true;
  return true;
}

// Adds files with the given default fields. A file that matches an
// unfinished upload (a waiting item, or one remembered from before) is
// attached to it and resumes at once; the others wait for start().
// Returns {added, resumed, skipped} counts.
export async function addFiles(files, defaults = {}) {
  const out = { added: 0, resumed: 0, skipped: 0 };
  for (const file of files) {
    const fp = fingerprint(file);
    const same = items().find((i) => i.file && fingerprint(i.file) === fp && i.state !== 'done' && i.state !== 'failed');
    if (same) {
      out.skipped++;
      continue;
    }
    const waiting = items().find((i) => i.state === 'waiting' && i.fingerprint === fp);
    if (waiting) {
      waiting.file = file;
      waiting.type = file.type;
      waiting.state = 'queued';
      changed(waiting);
      out.resumed++;
      continue;
    }
    const item = newItem(file, Object.assign({}, defaults));
    const prev = await urlStorage.findUploadsByFingerprint(fp);
    if (tooLarge(item, await serverMax())) {
      out.added++;
    } else if (prev.length && prev[0].metadata && prev[0].metadata.sha256) {
      // Begun before (another tab, or its waiting item was dismissed).
      Object.assign(item.fields, pick(prev[0].metadata));
      item.sha256 = prev[0].metadata.sha256;
      item.state = 'queued';
      out.resumed++;
    } else {
      check(item);
      out.added++;
    }
    items().push(item);
    changed(item);
  }
  pump();
  return out;
}

const pick = (meta) => Object.fromEntries(FIELDS.filter((k) => meta[k] !== undefined).map((k) => [k, meta[k]]));

// Queues the item for hashing and sending if its fields pass.
export function start(item) {
  if ((item.state !== 'ready' && item.state !== 'failed') || item.refused) return false;
  if (!check(item)) {
    changed(item);
    return false;
  }
  item.message = '';
  item.state = item.sha256 ? 'queued' : 'hash-wait';
  changed(item);
  pump();
  return true;
}

export function startAll() {
  let n = 0, bad = 0;
  for (const i of items()) {
    if (i.state !== 'ready') continue;
    if (start(i)) n++;
    else bad++;
  }
  return { started: n, refused: bad };
}

export async function pause(item) {
  if (item.state === 'queued') {
    item.state = 'paused';
    changed(item);
    return;
  }
  if (item.state !== 'uploading' || !item.tus) return;
  item.state = 'paused';
  changed(item);
  await item.tus.abort(false);
  pump();
}

export function resume(item) {
  if (item.state !== 'paused') return;
  item.state = 'queued';
  changed(item);
  pump();
}

// Stops an item and drops it from the queue; bytes already sent are
// deleted on the server (tus termination).
export async function remove(item) {
  const i = items().indexOf(item);
  if (i >= 0) items().splice(i, 1);
  const was = item.state;
  item.state = 'removed';
  if (item.hashing) item.hashing.abort();
  store.set({ uploads: items(), upload: null });
  if (item.tus && (was === 'uploading' || was === 'paused' || was === 'failed' || was === 'signin')) {
    await item.tus.abort(true).catch(() => {});
  } else if (item.url && was !== 'done') {
    await api(item.url, { method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0' } }).catch(() => {});
  }
  if (item.storageKey) await urlStorage.removeUpload(item.storageKey);
  pump();
}

function pump() {
  if (!items().some((i) => i.state === 'hashing')) {
    const next = items().find((i) => i.state === 'hash-wait');
    if (next) hash(next);
  }
  let busy = items().filter((i) => i.state === 'uploading').length;
  for (const i of items()) {
    if (busy >= SENDING) break;
    if (i.state === 'queued' && i.file) {
      send(i);
      busy++;
    }
  }
}

async function hash(item) {
  item.state = 'hashing';
  item.hashed = 0;
  item.hashing = new AbortController();
  changed(item);
  try {
    item.sha256 = await sha256File(item.file, {
      signal: item.hashing.signal,
      onProgress: (n) => {
        item.hashed = n;
        changed(item);
      },
    });
    if (item.state !== 'hashing') return;
    item.state = 'queued';
  } catch (e) {
    if (item.state !== 'hashing') return; // stopped
    item.state = 'failed';
    item.message = e.message;
  } finally {
    item.hashing = null;
  }
  changed(item);
  pump();
}

// Stops hashing an item (back to ready).
export function stopHashing(item) {
  if (!item.hashing) return;
  item.state = 'ready';
  item.hashing.abort();
  changed(item);
  pump();
}

async function send(item) {
  item.state = 'uploading';
  item.message = '';
  changed(item);
  if (!item.tus) {
    item.tus = new Upload(item.file, {
      endpoint: ENDPOINT,
      chunkSize: CHUNK,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      metadata: metadataOf(item),
      fingerprint: (file) => Promise.resolve(fingerprint(file)),
      urlStorage,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onBeforeRequest: (req) => {
        const m = req.getMethod();
        if (m !== 'GET' && m !== 'HEAD') {
          for (const [k, v] of Object.entries(csrfHeaders())) req.setHeader(k, v);
        }
      },
      onUploadUrlAvailable: () => {
        item.url = item.tus.url;
      },
      onProgress: (sent) => {
        if (item.state !== 'uploading') return;
        item.sent = sent;
        changed(item);
      },
      onSuccess: ({ lastResponse }) => finished(item, lastResponse),
      onError: (err) => failed(item, err),
    });
    const prev = await item.tus.findPreviousUploads();
    if (prev.length) {
      item.tus.resumeFromPreviousUpload(prev[0]);
      item.url = prev[0].uploadUrl;
      item.storageKey = prev[0].urlStorageKey;
    }
  }
  if (item.url) {
    // Where the server stands (and a 401 here waits for sign-in, which
    // tus-js-client would take for a lost upload and start again).
    try {
      const u = await api(item.url);
      if (item.resumedFrom === null && u.offset > 0) item.resumedFrom = u.offset;
      item.sent = u.offset;
    } catch (e) {
      if (e.status !== 404 && e.status !== 410) {
        fail(item, problem(e));
        return;
      }
      // Gone (terminated or expired): tus-js-client creates a new upload.
    }
    if (item.state !== 'uploading') return; // paused meanwhile
  }
  item.tus.start();
}

function fail(item, message) {
  item.state = 'failed';
  item.message = message;
  changed(item);
  pump();
}

async function finished(item, res) {
  item.sent = item.size;
  const id = res && res.getHeader('Evidence-Id');
  if (id) {
    item.evidence = id;
    item.state = 'done';
    changed(item);
    pump();
    return;
  }
  // All bytes are in; the server records them as evidence by itself
  // (Upload-State: recording) and says so on a later GET.
  item.state = 'recording';
  changed(item);
  pump();
  while (item.state === 'recording' && owner !== null) {
    try {
      const u = await api(item.url);
      if (u.evidence_id) {
        item.evidence = u.evidence_id;
        item.state = 'done';
      } else if (u.state === 'rejected') {
        fail(item, `The server refused the file: ${u.reason || 'no reason given'}.`);
        return;
      }
    } catch (e) {
      fail(item, problem(e));
      return;
    }
    if (item.state === 'recording') await new Promise((r) => setTimeout(r, RECORD_POLL_MS));
  }
  changed(item);
}

function serverMessage(res) {
  try {
    const doc = JSON.parse(res.getBody());
    return { code: doc.code, detail: doc.detail };
  } catch (e) {
    return { code: null, detail: null };
  }
}

async function failed(item, err) {
  if (item.state !== 'uploading') return; // paused or removed: not a failure
  const res = err && err.originalResponse;
  const status = res ? res.getStatus() : 0;
  if (status === 401) {
    item.state = 'signin';
    changed(item);
    if (await sessionExpired()) {
      item.state = 'queued';
      changed(item);
      pump();
    } else if (item.state === 'signin') {
      fail(item, 'Signed out before the upload finished.');
    }
    return;
  }
  const { code, detail } = res ? serverMessage(res) : {};
  let message;
  if (code === 'sha256_mismatch') {
    message = `The server received other bytes than those hashed here, so nothing was kept (${detail}). ` +
      'Was the file changed while it was sent? Upload it again.';
    // That upload is rejected for good: a retry hashes again and makes a
    // new one (and must not find this one to resume).
    item.tus = null;
    item.sha256 = null;
    item.url = null;
    item.storageKey = null;
    for (const u of await urlStorage.findUploadsByFingerprint(fingerprint(item.file))) {
      await urlStorage.removeUpload(u.urlStorageKey);
    }
  } else if (detail) {
    message = `${detail} (HTTP ${status}).`;
  } else if (status) {
    message = `The server answered HTTP ${status}.`;
  } else {
    message = 'The connection to the server was lost. Retry carries on where it stopped.';
  }
  fail(item, message);
}

export function retry(item) {
  if (item.state !== 'failed' || item.refused) return;
  item.message = '';
  if (!item.file) {
    item.state = 'waiting';
    changed(item);
    return;
  }
  item.state = item.sha256 ? 'queued' : 'hash-wait';
  changed(item);
  pump();
}

// ---- who the queue belongs to ----

// Uploads begun before (a reload, another tab that closed) and not
// finished: waiting items, each asked of the server.
async function restore() {
  const me = owner;
  for (const u of await urlStorage.findAllUploads()) {
    if (owner !== me) return;
    if (items().some((i) => i.storageKey === u.urlStorageKey || i.url === u.uploadUrl)) continue;
    const meta = u.metadata || {};
    const item = newItem(null, pick(meta));
    Object.assign(item, {
      name: meta.filename || '(no name)', size: u.size, type: meta.filetype || '', state: 'waiting',
      sha256: meta.sha256 || null, url: u.uploadUrl, storageKey: u.urlStorageKey, fingerprint: u.fingerprint,
    });
    try {
      const s = await api(u.uploadUrl);
      if (owner !== me) return;
      item.sent = s.offset;
      item.resumedFrom = s.offset;
      if (s.evidence_id) {
        item.state = 'done';
        item.evidence = s.evidence_id;
        await urlStorage.removeUpload(u.urlStorageKey);
      } else if (s.state === 'rejected') {
        await urlStorage.removeUpload(u.urlStorageKey);
        continue;
      }
    } catch (e) {
      if (e.status === 404 || e.status === 410) {
        await urlStorage.removeUpload(u.urlStorageKey); // ended or expired on the server
        continue;
      }
      item.message = problem(e);
    }
    items().push(item);
    changed(item);
  }
}

// Forgets a waiting item: its bytes on the server are deleted.
export const discard = remove;

store.subscribe((s, patch) => {
  if (!('me' in patch)) return;
  const user = s.me ? s.me.username : null;
  if (user === owner) return;
  for (const i of items()) {
    if (i.hashing) i.hashing.abort();
    if (i.tus) i.tus.abort(false).catch(() => {});
    i.state = 'removed';
  }
  owner = user;
  store.set({ uploads: [], upload: null });
  if (user) restore().catch(() => {});
});

export const FIELD_NAMES = FIELDS;

// Checks detail fields alone (the defaults form), without a file.
export function checkFields(fields) {
  const meta = {};
  for (const [k, v] of Object.entries(fields)) if (v && v.trim()) meta[k] = v.trim();
  return metadataProblems(meta);
}
