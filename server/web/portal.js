// SPDX-License-Identifier: Apache-2.0
// The public submission portal (docs/api.md, "Public submissions"): a member
// of the public opens the link an officer sent (the token in the URL
// fragment, never sent to the server except in a request body), gives a
// statement, sends files with tus and gets a receipt. No account and no
// cookie: the submission's bearer token is kept in localStorage under the
// link, so that closing and reopening the page on this device continues the
// same submission (tus fingerprints resume each file once it is chosen
// again). Third-party code (tus-js-client, @noble/hashes) comes from
// upload-kit.js, built from pinned npm packages (server/web/vendor).
import { Upload, sha256 } from './upload-kit.js';

const $ = (id) => document.getElementById(id);
const CHUNK = 16 * 1024 * 1024; // one PATCH each: a dropped connection loses at most this
const PARALLEL = 3; // files sent at once
const HASH_PIECE = 4 * 1024 * 1024;
const VIEWS = ['ended-view', 'request-view', 'statement-view', 'files-view', 'receipt-view'];

const state = {
  token: null, storeKey: null, link: null, sub: null, entries: [], active: 0,
  received: { files: 0, bytes: 0 }, // sent before this page was opened
};

function show(...ids) {
  for (const v of VIEWS) $(v).hidden = !ids.includes(v);
}

function status(text) {
  $('page-status').textContent = text || '';
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function human(n) {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function storage() {
  try {
    const s = window.localStorage;
    s.getItem('x');
    return s;
  } catch {
    return null; // blocked: the page works, but cannot continue after a reload
  }
}

async function api(method, path, body, bearer) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let r;
  try {
    r = await fetch(path, {
      method, headers, credentials: 'omit', cache: 'no-store',
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch {
    return { status: 0, doc: { detail: 'The connection failed. Check you are online and try again.' } };
  }
  let doc = null;
  try {
    doc = await r.json();
  } catch {
    doc = null;
  }
  return { status: r.status, doc: doc || {}, headers: r.headers };
}

function ended(detail) {
  $('ended-detail').textContent = detail;
  show('ended-view');
  status('');
}

// ---- the link and the statement ----

function showRequest(link) {
  $('request-title').textContent = link.title;
  $('request-message').textContent = link.message || '';
  if (link.submitter_name) {
    $('request-for').textContent = `This request is for ${link.submitter_name}.`;
    $('request-for').hidden = false;
  }
  const l = link.limits;
  $('request-limits').textContent =
    `You can send up to ${l.max_files} files (${human(l.max_bytes)} in all). ` +
    `This link can be used until ${new Date(link.expires_at).toLocaleString()}.`;
  $('contact-need').textContent = link.contact_required
    ? '(required: an e-mail address or a telephone number)'
    : '(optional)';
}

const FIELDS = ['description', 'location', 'recorded_from', 'recorded_to', 'clock_offset_seconds',
  'contact_name', 'contact_email', 'contact_phone', 'declaration'];

function fieldInput(name) {
  return $(name === 'clock_offset_seconds' ? 'clock_offset' : name);
}

function fieldError(name, text) {
  const p = $(`${name}-error`);
  if (p) p.textContent = text || '';
  const input = fieldInput(name);
  if (input) {
    if (text) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

function readStatement() {
  const v = (id) => $(id).value.trim();
  const body = { token: state.token, description: v('description'), location: v('location'),
    declaration: $('declaration').checked };
  for (const name of ['contact_name', 'contact_email', 'contact_phone']) {
    if (v(name)) body[name] = v(name);
  }
  for (const name of ['recorded_from', 'recorded_to']) {
    if (v(name)) body[name] = new Date(v(name)).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }
  if (v('clock_offset') !== '') body.clock_offset_seconds = Math.round(Number(v('clock_offset')) * 60);
  return body;
}

function checkStatement(body) {
  const errs = {};
  if (!body.description) errs.description = 'Say what the footage shows.';
  if (!body.location) errs.location = 'Say where it was recorded.';
  if (!body.declaration) errs.declaration = 'Please confirm the declaration to continue.';
  if (body.contact_email && !/^[^\s@]+@[^\s@]+$/.test(body.contact_email)) {
    errs.contact_email = 'This is not an e-mail address.';
  }
  if (body.contact_phone && !/^[0-9+\-() ]+$/.test(body.contact_phone)) {
    errs.contact_phone = 'Use only digits, spaces and + - ( ).';
  }
  if (state.link.contact_required && !body.contact_email && !body.contact_phone) {
    errs.contact_email = 'Give an e-mail address or a telephone number.';
  }
  if (body.recorded_from && body.recorded_to && body.recorded_to < body.recorded_from) {
    errs.recorded_to = 'This is before the start.';
  }
  if (body.clock_offset_seconds !== undefined && !Number.isFinite(body.clock_offset_seconds)) {
    errs.clock_offset_seconds = 'Give a whole number of minutes.';
  }
  return errs;
}

// The server names the field in its detail ('field "location" ...').
function serverFieldError(doc) {
  const m = /field "([a-z_]+)"/.exec(doc.detail || '');
  if (doc.code === 'declaration_required') return 'declaration';
  if (doc.code === 'contact_required') return 'contact_email';
  return m && FIELDS.includes(m[1]) ? m[1] : null;
}

async function submitStatement(ev) {
  ev.preventDefault();
  for (const f of FIELDS) fieldError(f, '');
  $('statement-error').textContent = '';
  const body = readStatement();
  const errs = checkStatement(body);
  const names = Object.keys(errs);
  if (names.length) {
    for (const n of names) fieldError(n, errs[n]);
    fieldInput(names[0]).focus();
    return;
  }
  $('statement-submit').disabled = true;
  const r = await api('POST', '/v1/portal/submissions', body);
  $('statement-submit').disabled = false;
  if (r.status !== 201) {
    const field = serverFieldError(r.doc);
    if (field) {
      fieldError(field, r.doc.detail);
      fieldInput(field).focus();
    } else if (r.status === 410 || r.status === 404) {
      ended(r.doc.detail);
    } else {
      $('statement-error').textContent = r.doc.detail || `The server refused (${r.status}).`;
    }
    return;
  }
  state.sub = { token: r.doc.submission_token, reference: r.doc.reference };
  storage()?.setItem(state.storeKey, JSON.stringify(state.sub));
  showFiles({ reference: r.doc.reference, files: [] });
}

// ---- files ----

function safeName(name) {
  // Shown to people: no control or direction-changing characters, no path.
  // eslint-disable-next-line no-control-regex
  const s = name.replace(/[\u0000-\u001f\u007f\u202a-\u202e\u2066-\u2069/\\]/g, '_').trim();
  return (s || 'file').slice(0, 200);
}

function overall() {
  let sent = state.received.bytes;
  let total = state.received.bytes;
  let done = state.received.files;
  let busy = 0;
  for (const e of state.entries) {
    if (e.status === 'failed' || e.status === 'removed') continue;
    total += e.file.size;
    sent += e.status === 'done' ? e.file.size : e.sent;
    if (e.status === 'done') done++;
    else busy++;
  }
  $('overall-progress').value = total ? sent / total : 0;
  $('overall-status').textContent = done + busy
    ? `${done} of ${done + busy} files sent (${human(sent)} of ${human(total)})`
    : '';
  $('finish').disabled = !(done > 0 && busy === 0);
}

function setEntry(e, st, text) {
  e.status = st;
  e.stateEl.textContent = text;
  e.stateEl.className = `state ${st}`;
  e.toggle.hidden = !['sending', 'paused'].includes(st);
  e.toggle.textContent = st === 'paused' ? `Resume ${e.file.name}` : `Pause ${e.file.name}`;
  overall();
}

async function hashFile(e) {
  const h = sha256.create();
  for (let at = 0; at < e.file.size; at += HASH_PIECE) {
    const piece = new Uint8Array(await e.file.slice(at, at + HASH_PIECE).arrayBuffer());
    h.update(piece);
    e.progress.value = Math.min(1, (at + piece.length) / e.file.size) * 0.02;
    e.stateEl.textContent = `Checking the file… ${Math.floor(((at + piece.length) / e.file.size) * 100)}%`;
  }
  return hex(h.digest());
}

function problem(err) {
  const res = err && err.originalResponse;
  if (!res) return { status: 0, detail: 'The connection failed.' };
  let doc = {};
  try {
    doc = JSON.parse(res.getBody() || '{}');
  } catch {
    doc = {};
  }
  return { status: res.getStatus(), code: doc.code, detail: doc.detail || `The server refused (${res.getStatus()}).` };
}

function shouldRetry(err) {
  const p = problem(err);
  if (p.status === 0 || p.status >= 500 || p.status === 423) return true;
  return p.status === 409 && (p.code === 'offset_mismatch' || p.code === 'upload_busy');
}

async function start(e) {
  state.active++;
  setEntry(e, 'hashing', 'Checking the file…');
  try {
    e.sha = e.sha || await hashFile(e);
  } catch {
    state.active--;
    setEntry(e, 'failed', 'This file could not be read. Choose it again.');
    pump();
    return;
  }
  const upload = new Upload(e.file, {
    endpoint: '/v1/uploads',
    chunkSize: CHUNK,
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
    headers: { Authorization: `Bearer ${state.sub.token}` },
    metadata: { filename: safeName(e.file.name), filetype: e.file.type || 'application/octet-stream', sha256: e.sha },
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    fingerprint: async (file) => ['dems-portal', state.sub.reference, file.name, file.size, file.lastModified].join('/'),
    onShouldRetry: (err) => shouldRetry(err),
    onProgress: (sent, total) => {
      e.sent = sent;
      e.progress.value = total ? sent / total : 1;
      if (e.status === 'sending') e.stateEl.textContent = `Sending… ${Math.floor((sent / total) * 100)}%`;
      overall();
    },
    onSuccess: () => {
      state.active--;
      e.progress.value = 1;
      setEntry(e, 'done', 'Received');
      pump();
    },
    onError: (err) => {
      state.active--;
      const p = problem(err);
      setEntry(e, 'failed', p.detail);
      pump();
    },
  });
  e.upload = upload;
  try {
    const previous = await upload.findPreviousUploads();
    if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
  } catch {
    // no storage: start afresh
  }
  setEntry(e, 'sending', 'Sending…');
  upload.start();
}

function pump() {
  for (const e of state.entries) {
    if (state.active >= PARALLEL) break;
    if (e.status === 'queued') start(e);
  }
  overall();
}

function addFiles(list) {
  for (const file of list) {
    if (state.entries.some((e) => e.file.name === file.name && e.file.size === file.size &&
        e.file.lastModified === file.lastModified && e.status !== 'failed')) continue;
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = `${file.name} (${human(file.size)})`;
    const progress = document.createElement('progress');
    progress.max = 1;
    progress.value = 0;
    progress.setAttribute('aria-label', `Progress of ${file.name}`);
    const st = document.createElement('span');
    const toggle = document.createElement('button');
    toggle.type = 'button';
    toggle.hidden = true;
    li.append(name, progress, st, toggle);
    $('file-list').append(li);
    const e = { file, li, progress, stateEl: st, toggle, status: 'queued', sent: 0, sha: null, upload: null };
    toggle.addEventListener('click', () => (e.status === 'paused' ? resume(e) : pause(e)));
    state.entries.push(e);
    setEntry(e, 'queued', 'Waiting…');
  }
  pump();
}

function pause(e) {
  if (e.status !== 'sending' || !e.upload) return;
  e.upload.abort(); // keeps the fingerprint: resume continues from the server's offset
  state.active--;
  setEntry(e, 'paused', 'Paused');
  pump();
}

function resume(e) {
  if (e.status !== 'paused') return;
  state.active++;
  setEntry(e, 'sending', 'Sending…');
  e.upload.start();
}

function showFiles(doc) {
  $('submission-ref').textContent = doc.reference;
  const unfinished = (doc.files || []).filter((f) => f.state === 'receiving');
  const received = (doc.files || []).filter((f) => f.state === 'complete');
  const hint = [];
  if (received.length) hint.push(`Already received: ${received.map((f) => f.filename).join(', ')}.`);
  if (unfinished.length) {
    hint.push(`Being sent when the page closed: ${unfinished.map((f) => f.filename).join(', ')}. ` +
      'Choose them again to continue.');
  }
  $('resume-hint').textContent = hint.join(' ');
  $('resume-hint').hidden = hint.length === 0;
  state.received = { files: received.length, bytes: received.reduce((n, f) => n + f.size, 0) };
  show('files-view');
  status('');
  overall();
}

async function finish() {
  $('finish-error').textContent = '';
  $('finish').disabled = true;
  const r = await api('POST', '/v1/portal/submission/finish', {}, state.sub.token);
  if (r.status !== 200) {
    $('finish-error').textContent = r.doc.detail || `The server refused (${r.status}).`;
    overall();
    return;
  }
  showReceipt();
}

// ---- receipt ----

async function showReceipt() {
  show('receipt-view');
  status('');
  $('receipt-status').textContent = 'Preparing your receipt…';
  for (let tries = 0; tries < 150; tries++) {
    const r = await api('GET', '/v1/portal/receipt', undefined, state.sub.token);
    if (r.status === 200) {
      renderReceipt(r.doc);
      return;
    }
    if (r.status !== 202) {
      $('receipt-status').textContent = r.doc.detail || `The receipt is not available (${r.status}).`;
      return;
    }
    const wait = Number(r.headers.get('Retry-After')) || 2;
    await new Promise((ok) => setTimeout(ok, wait * 1000));
  }
  $('receipt-status').textContent = 'The receipt is taking long: open this link again later to get it.';
}

function renderReceipt(doc) {
  $('receipt-status').textContent = 'Your receipt is ready.';
  $('receipt-ref').textContent = doc.reference;
  $('receipt-time').textContent = new Date(doc.submitted_at).toLocaleString();
  $('receipt-time').title = doc.submitted_at;
  const tbody = $('receipt-files');
  tbody.replaceChildren();
  for (const f of doc.files) {
    const tr = document.createElement('tr');
    for (const [text, cls] of [[f.name, ''], [`${human(f.size)} (${f.size} bytes)`, ''], [f.sha256, 'hash'], [String(f.ledger_index), '']]) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    tbody.append(tr);
  }
  const blob = new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' });
  const a = $('download');
  a.href = URL.createObjectURL(blob);
  a.download = `receipt-${doc.reference}.json`;
  $('receipt').hidden = false;
}

// ---- start ----

async function main() {
  $('statement-form').addEventListener('submit', submitStatement);
  $('files').addEventListener('change', (ev) => {
    addFiles(ev.target.files);
    ev.target.value = '';
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    addFiles(ev.dataTransfer.files);
  });
  $('pause-all').addEventListener('click', () => state.entries.forEach(pause));
  $('resume-all').addEventListener('click', () => state.entries.forEach(resume));
  $('finish').addEventListener('click', finish);
  $('print').addEventListener('click', () => window.print());

  const token = decodeURIComponent(location.hash.slice(1));
  if (!/^dems_sl_[A-Za-z0-9_-]{16,60}$/.test(token)) {
    ended('This page needs the whole link you were sent. Check that it was copied completely.');
    return;
  }
  state.token = token;
  state.storeKey = `dems-portal:${hex(sha256(new TextEncoder().encode(token))).slice(0, 32)}`;
  const saved = storage()?.getItem(state.storeKey);
  if (saved) {
    try {
      state.sub = JSON.parse(saved);
    } catch {
      state.sub = null;
    }
    if (state.sub) {
      const r = await api('GET', '/v1/portal/submission', undefined, state.sub.token);
      if (r.status === 200) {
        if (r.doc.state === 'open' && !r.doc.link_ended) showFiles(r.doc);
        else if (r.doc.state === 'open') ended('This link has ended before the submission was finished.');
        else showReceipt();
        return;
      }
      storage()?.removeItem(state.storeKey);
      state.sub = null;
    }
  }
  const r = await api('POST', '/v1/portal/open', { token });
  if (r.status !== 200) {
    ended(r.doc.detail || 'This link cannot be used.');
    return;
  }
  state.link = r.doc;
  showRequest(r.doc);
  show('request-view', 'statement-view');
  status('');
}

main();
