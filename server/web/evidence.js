// SPDX-License-Identifier: Apache-2.0
// The evidence page (#/evidence/ID): everything known about one artefact —
// what the upload declared (file name, type, device, recording times in the
// viewer's time zone with UTC on hover, description), its size and
// SHA-256 (with a copy button), the media probe, the preview player with
// its thumbnail strip, the original's download (ledgered by the server as
// DOWNLOADED), and its custody history: the ledger entries that name it
// (GET /v1/evidence/ID/custody). While the preview job is queued or
// running the page asks again every few seconds and shows the preview as
// soon as it exists; when none can be made it says why and what to do.
import * as store from './store.js';
import { api } from './api.js';
import { el, guard, localTime, bytes, duration, copyButton } from './ui.js';
import { route } from './router.js';
import { player } from './player.js';

const POLL_MS = 2000;
const CUSTODY_PAGE = 50;
const BUSY = new Set(['queued', 'running', 'failed']); // failed: waiting to retry

const EVENTS = {
  INGESTED: 'Received',
  VIEWED: 'Viewed',
  DOWNLOADED: 'Original downloaded',
  PREVIEW_MADE: 'Preview made',
  EXHIBIT_ADDED: 'Added to a case',
  EXHIBIT_REMOVED: 'Removed from a case',
  ACCESS_DENIED: 'Access refused',
  BUNDLE_MADE: 'In a court bundle',
};

function dl(rows) {
  const d = el('dl', {});
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === '') continue;
    d.append(el('dt', { textContent: k }), el('dd', {}, v));
  }
  return d;
}

// What the preview job's state means here, and what to do about it.
function previewMessage(ev) {
  const err = ev.media && ev.media.preview_error;
  switch (ev.preview_job) {
    case 'queued': return 'The preview is queued; this page shows it as soon as it is made.';
    case 'running': return 'The preview is being made; this page shows it as soon as it is ready.';
    case 'failed': return 'Making the preview failed and will be tried again shortly; this page shows it if it succeeds.';
    default: break;
  }
  const type = ev.content_type ? `declared as ${ev.content_type}` : 'of no declared type';
  if (err) {
    return `No preview can be made of this file (${type}): ${err.message} [${err.code}]. ` +
      'The original is kept unchanged: download it and open it with software made for its format. ' +
      'If it should be a video, ask an administrator: the preview job can be retried.';
  }
  if (ev.preview_job === 'dead') {
    return `No preview could be made of this file (${type}): the preview job gave up. ` +
      'The original is kept unchanged and can be downloaded; an administrator can retry the job.';
  }
  if (ev.preview_job === 'done') return 'This file has nothing to play (no video or audio was found); download the original to open it.';
  return 'No preview has been asked for this file; download the original to open it.';
}

function probeSection(ev) {
  const probe = ev.media && ev.media.probe;
  const node = el('section', { 'aria-labelledby': 'probe-title', id: 'probe' }, el('h3', { id: 'probe-title', textContent: 'Media' }));
  if (!probe) {
    node.append(el('p', { class: 'hint', textContent: BUSY.has(ev.preview_job) ? 'Not probed yet.' : 'Nothing was found that the media probe could read.' }));
    return node;
  }
  const rows = [
    ['Container', probe.format_long || probe.format],
    ['Duration', probe.duration > 0 ? duration(probe.duration) : null],
    ['Bit rate', probe.bit_rate ? `${Math.round(probe.bit_rate / 1000)} kbit/s` : null],
    ['Created (per the file)', probe.creation_time ? localTime(probe.creation_time) : null],
  ];
  const dev = probe.device || {};
  if (dev.make || dev.model) rows.push(['Device (per the file)', [dev.make, dev.model, dev.software].filter(Boolean).join(' ')]);
  const loc = probe.location || {};
  if (loc.latitude !== undefined) rows.push(['Location (per the file)', `${loc.latitude}, ${loc.longitude}${loc.altitude !== undefined ? `, ${loc.altitude} m` : ''}`]);
  node.append(dl(rows));
  const streams = (probe.streams || []).filter((s) => !s.attached_pic);
  if (streams.length) {
    const list = el('ul', { class: 'streams' });
    for (const s of streams) {
      const parts = [s.type, s.codec, s.profile];
      if (s.width) parts.push(`${s.width}×${s.height}`);
      if (s.avg_frame_rate) parts.push(`${Math.round(s.avg_frame_rate * 100) / 100} fps`);
      if (s.rotation) parts.push(`rotated ${s.rotation}°`);
      if (s.sample_rate) parts.push(`${s.sample_rate} Hz`);
      if (s.channels) parts.push(`${s.channels} channel${s.channels === 1 ? '' : 's'}`);
      list.append(el('li', { textContent: parts.filter(Boolean).join(' · ') }));
    }
    node.append(el('h4', { textContent: 'Streams' }), list);
  }
  return node;
}

function custodySection(id, page) {
  const body = el('tbody', { id: 'custody-rows' });
  const status = el('p', { class: 'status', role: 'status' });
  const more = el('button', { type: 'button', hidden: true, textContent: 'Older entries' });
  const refresh = el('button', { type: 'button', textContent: 'Refresh' });
  refresh.setAttribute('aria-label', 'Refresh the custody history');
  const node = el('section', { 'aria-labelledby': 'custody-title', id: 'custody' },
    el('div', { class: 'bar' }, el('h3', { id: 'custody-title', textContent: 'Custody history' }), refresh),
    el('p', { class: 'hint', textContent: 'Every ledger entry that names this evidence, oldest first: what happened, when, and who did it. Each is signed into the ledger; a verifier can prove it (docs: ledger).' }),
    status,
    el('div', { class: 'table-wrap' }, el('table', { class: 'custody' },
      el('thead', {}, el('tr', {}, ...['#', 'When', 'What', 'Who', 'Details'].map((t) => el('th', { scope: 'col', textContent: t })))), body)),
    more);
  let cursor = null;
  let seen = 0;

  function details(e) {
    const p = e.payload || {};
    const out = [];
    if (e.type === 'DOWNLOADED' && p.first !== undefined) out.push(`bytes ${p.first}–${p.last}`);
    if (p.preview) out.push(`${p.preview}`);
    if (p.filename) out.push(`file name "${p.filename}"`);
    if (p.reason) out.push(p.reason);
    if (p.path) out.push(`${p.method || ''} ${p.path}`.trim());
    if (e.case) out.push(`case ${e.case}`);
    if (e.type === 'PREVIEW_MADE' && e.size) out.push(`proxy ${bytes(e.size)}`);
    return out.join('; ');
  }

  function row({ seq, entry }) {
    const actor = entry.actor || {};
    return el('tr', { 'data-seq': String(seq), 'data-type': entry.type },
      el('td', { textContent: String(seq) }),
      el('td', {}, localTime(entry.time)),
      el('td', { title: entry.type, textContent: EVENTS[entry.type] || entry.type }),
      el('td', { textContent: actor.kind === 'user' ? actor.id : `${actor.id} (${actor.kind})` }),
      el('td', { textContent: details(entry) }));
  }

  async function load(next) {
    const q = new URLSearchParams({ limit: String(CUSTODY_PAGE) });
    if (next && cursor) q.set('cursor', cursor);
    const doc = await api(`/v1/evidence/${id}/custody?${q}`);
    if (!page.alive) return;
    if (!next) body.replaceChildren();
    for (const x of doc.entries) body.append(row(x));
    cursor = doc.next_cursor;
    more.hidden = !cursor;
    more.textContent = 'Later entries';
    const n = body.children.length;
    status.textContent = n ? (n !== seen && seen ? `${n - seen} new entr${n - seen === 1 ? 'y' : 'ies'}.` : '') : 'No entries yet.';
    seen = n;
  }
  more.addEventListener('click', guard(() => load(true), () => status));
  refresh.addEventListener('click', guard(() => load(false), () => status));
  node.load = guard(() => load(false), () => status);
  return node;
}

async function render(view, params, page) {
  const id = params[0];
  const status = view.querySelector('#page-status');
  status.textContent = 'Loading…';
  let ev;
  try {
    ev = await api(`/v1/evidence/${id}`);
  } catch (e) {
    if (e.status === 404) {
      status.textContent = '';
      view.append(el('section', { 'aria-labelledby': 'missing-title', class: 'ended' },
        el('h2', { id: 'missing-title', textContent: 'No such evidence' }),
        el('p', { textContent: `${e.message}: either there is no evidence with this id, or you may not see it.` }),
        el('p', {}, el('a', { href: store.get().lastFind || '#/evidence', textContent: '← Evidence' }))));
      return;
    }
    throw e;
  }
  if (!page.alive) return;
  status.textContent = '';
  const m = ev.metadata || {};
  const name = ev.filename || m.filename || id;
  const p = player({ closable: false, heading: 'h3' });
  page.onLeave(p.hide);
  const head = el('section', { 'aria-labelledby': 'evidence-title', class: 'case-head' },
    el('p', {}, el('a', { href: store.get().lastFind || '#/evidence', textContent: '← Evidence' })),
    el('h2', { id: 'evidence-title', textContent: name }));
  const facts = el('div', { id: 'facts' });
  const hash = el('code', { class: 'hash inline', id: 'evidence-sha256', textContent: ev.sha256 });
  const download = el('a', {
    class: 'download', id: 'download', href: `/v1/evidence/${id}/content`, download: '',
    textContent: 'Download the original',
  });
  const preview = el('div', { id: 'preview-slot' });
  const probe = el('div', { id: 'probe-slot' });
  const custody = custodySection(id, page);
  head.append(facts,
    el('p', {}, el('strong', { textContent: 'SHA-256 ' }), hash, copyButton('Copy', ev.sha256, 'Copy the SHA-256')),
    el('p', {}, download, el('span', { class: 'hint', textContent: ' Every download is recorded in the custody history.' })));
  view.append(head, preview, probe, custody);

  function showFacts(doc) {
    const mm = doc.metadata || {};
    const rec = [];
    if (mm.recording_start) rec.push(localTime(mm.recording_start));
    if (mm.recording_end) rec.push(' to ', localTime(mm.recording_end));
    const span = mm.recording_start && mm.recording_end
      ? duration((Date.parse(mm.recording_end) - Date.parse(mm.recording_start)) / 1000) : null;
    const size = el('span', { title: `${doc.size} bytes`, textContent: `${bytes(doc.size)} (${doc.size.toLocaleString('en')} bytes)` });
    const recorded = rec.length ? el('span', {}, ...rec) : null;
    facts.replaceChildren(dl([
      ['File name', mm.filename || doc.filename],
      ['Type', doc.content_type || 'not declared'],
      ['Size', size],
      ['Received', localTime(doc.created_at)],
      ['Uploaded by', doc.uploaded_by],
      ['Device', mm.device_serial],
      ['Recorded', recorded],
      ['Recording length', span],
      ['Description', mm.description],
      ['Ledger', `received in entry ${doc.ledger.ingested_seq}${doc.ledger.preview_made_seq ? `, preview in entry ${doc.ledger.preview_made_seq}` : ''}`],
    ]));
  }

  let shownState = null;
  async function showMedia(doc) {
    const state = `${doc.preview_job}|${(doc.previews || []).length}`;
    if (state === shownState) return;
    shownState = state;
    const kinds = new Set((doc.previews || []).map((x) => x.kind));
    probe.replaceChildren(probeSection(doc));
    if (kinds.has('proxy')) {
      preview.replaceChildren(p.node);
      await p.showDoc(doc, 'Preview');
      return;
    }
    preview.replaceChildren(el('section', { 'aria-labelledby': 'no-preview-title', id: 'no-preview', class: BUSY.has(doc.preview_job) ? 'pending' : 'ended' },
      el('h3', { id: 'no-preview-title', textContent: BUSY.has(doc.preview_job) ? 'Preview on its way' : 'No preview' }),
      el('p', { id: 'no-preview-text', role: 'status', textContent: previewMessage(doc) })));
  }

  // While the preview job runs: ask again, show the preview when it exists.
  let timer = null;
  page.onLeave(() => clearTimeout(timer));
  async function poll() {
    timer = null;
    const doc = await api(`/v1/evidence/${id}`);
    if (!page.alive) return;
    showFacts(doc);
    await showMedia(doc);
    if (BUSY.has(doc.preview_job)) timer = setTimeout(guard(poll), POLL_MS);
    else custody.load(); // PREVIEW_MADE has been written
  }

  // After a download, its DOWNLOADED entry appears in the history.
  download.addEventListener('click', () => {
    for (const ms of [1000, 3000]) {
      setTimeout(() => {
        if (page.alive) custody.load();
      }, ms);
    }
  });

  showFacts(ev);
  await Promise.all([showMedia(ev), custody.load()]);
  if (BUSY.has(ev.preview_job) && page.alive) timer = setTimeout(guard(poll), POLL_MS);
}

route(/^\/evidence\/([0-9a-f]{64})$/, { nav: 'evidence', roles: ['admin', 'officer'], title: 'evidence', render });
