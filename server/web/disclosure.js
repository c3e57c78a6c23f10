// SPDX-License-Identifier: Apache-2.0
// The defence link holder's page (GET /disclosure/, disclosure.html;
// docs/api.md, "Disclosure to the defence"). The link's token arrives in
// the URL fragment, which browsers never send: the page posts it (with the
// passcode when the link has one) to /v1/disclosure/open, which answers
// with an HttpOnly cookie for /v1/disclosure/, and then takes the fragment
// out of the address bar. It shows the case, the disclosed exhibits with
// their hashes, posters and previews (the staff page's player), and the
// court bundle with its progress and download. Read only: nothing here
// changes anything but the record, which notes every view and download.
import { api, problem } from './api.js';
import { $, el, when, bytes, thead } from './ui.js';
import { player } from './player.js';

const POLL_MS = 1000;
let token = null; // in memory only, until the link is open
let p = null; // the player
let timer = null;

function ended(e) {
  if (timer) clearTimeout(timer);
  timer = null;
  if (p) p.hide();
  $('view').hidden = true;
  $('passcode-view').hidden = true;
  $('page-status').textContent = '';
  $('ended-detail').textContent = e && e.message ? `${e.message}.`.replace(/\.\.$/, '.') : '';
  $('ended-view').hidden = false;
}

// Shows a failure where it belongs: an ended link replaces the page.
function fail(e, where) {
  if (e && e.code === 'link_ended') ended(e);
  else (where || $('page-status')).textContent = problem(e);
}

const guarded = (fn, where) => async (ev) => {
  try {
    await fn(ev);
  } catch (e) {
    fail(e, where && where());
  }
};

async function open(passcode) {
  const body = { token };
  if (passcode) body.passcode = passcode;
  try {
    await api('/v1/disclosure/open', { method: 'POST', body });
  } catch (e) {
    if (e.code === 'passcode_required' || e.code === 'passcode_wrong') {
      $('page-status').textContent = '';
      $('passcode-view').hidden = false;
      $('passcode-error').textContent = e.code === 'passcode_wrong' ? `Wrong passcode: ${e.message}` : '';
      $('passcode').focus();
      return;
    }
    if (e.code === 'link_not_found') {
      $('page-status').textContent = 'This link is not valid: check that it was copied whole.';
      return;
    }
    throw e;
  }
  token = null;
  history.replaceState(null, '', location.pathname); // the token leaves the address bar
  $('passcode-view').hidden = true;
  await show();
}

function exhibitRow(x) {
  const kinds = new Set(x.previews || []);
  const base = `/v1/disclosure/exhibits/${x.id}`;
  const poster = kinds.has('poster')
    ? el('img', { class: 'poster', src: `${base}/poster`, alt: `Poster of exhibit ${x.reference}` })
    : el('span', { class: 'hint', textContent: 'no poster' });
  const meta = x.metadata || {};
  const recorded = meta.recording_start
    ? `${when(meta.recording_start)}${meta.recording_end ? ' – ' + when(meta.recording_end) : ''}` : '';
  const actions = el('td', { class: 'actions' });
  if (kinds.has('proxy') || kinds.has('poster')) {
    const b = el('button', { type: 'button', textContent: 'Preview' });
    b.setAttribute('aria-label', `Preview exhibit ${x.reference}`);
    b.addEventListener('click', guarded(async () => {
      p.node.scrollIntoView({ block: 'nearest' });
      await p.showMedia({
        heading: `${x.reference}: ${x.filename || ''}`,
        base,
        kinds: [...kinds],
        noPreview: 'No playable preview of this exhibit.',
        rows: [['SHA-256', x.sha256], ['Size', bytes(x.size)], ['Type', x.content_type],
          ['Recorded', recorded], ['Received', when(x.ingested_at)], ['Ledger entry', x.ingested_seq]],
      });
    }, () => p.status));
    actions.append(b);
  }
  return el('tr', { 'data-exhibit': x.reference },
    el('td', {}, poster),
    el('td', { class: 'ref', textContent: x.reference }),
    el('td', { textContent: x.description || '' }),
    el('td', { class: 'name', textContent: x.filename || '' }),
    el('td', { textContent: bytes(x.size) }),
    el('td', { textContent: recorded }),
    el('td', {}, el('code', { class: 'hash', textContent: x.sha256 })),
    actions);
}

function bundleView(node, b) {
  const pr = b.progress || {};
  const bar = el('progress', { 'aria-label': 'Bundle progress' });
  if (b.state === 'done') {
    bar.max = 1;
    bar.value = 1;
  } else if (pr.bytes_total > 0) {
    bar.max = pr.bytes_total;
    bar.value = pr.bytes_done;
  }
  const text = {
    queued: b.error ? `Being prepared (retrying: ${b.error})` : 'Being prepared…',
    running: pr.bytes_total > 0 ? `Being made: ${bytes(pr.bytes_done)} of ${bytes(pr.bytes_total)}` : 'Being made…',
    done: `Ready: ${bytes(b.size || 0)}`,
    failed: `It could not be made: ${b.error || 'no reason given'}`,
  }[b.state] || b.state;
  node.dataset.state = b.state;
  node.replaceChildren(el('p', { class: `state-${b.state}`, textContent: text }), b.state === 'failed' ? null : bar);
  if (b.state === 'done') {
    node.append(el('a', { class: 'download', href: b.content || '/v1/disclosure/bundle/content', download: '', textContent: 'Download the court bundle (ZIP)' }),
      el('p', {}, 'SHA-256 of the bundle: ', el('code', { class: 'hash', id: 'bundle-sha256', textContent: b.sha256 })),
      el('p', { class: 'hint', textContent: 'The bundle checks itself: it holds the originals, their custody records and proofs, and a report (index.html) that says how to verify it offline with dems-verify.' }));
  }
}

async function pollBundle(node) {
  timer = null;
  const b = await api('/v1/disclosure/bundle');
  bundleView(node, b);
  if (b.state === 'queued' || b.state === 'running') timer = setTimeout(guarded(() => pollBundle(node)), POLL_MS);
}

async function show() {
  $('page-status').textContent = 'Loading…';
  const doc = await api('/v1/disclosure');
  const view = $('view');
  p = player();
  const bundle = el('div', { id: 'bundle' });
  const rows = el('tbody', { id: 'exhibit-rows' });
  for (const x of doc.exhibits) rows.append(exhibitRow(x));
  view.replaceChildren(
    el('section', { 'aria-labelledby': 'case-title', class: 'case-head' },
      el('h2', { id: 'case-title', textContent: `${doc.case_reference} · ${doc.case_title}` }),
      el('dl', { class: 'case-details' },
        doc.label ? el('dt', { textContent: 'For' }) : null, doc.label ? el('dd', { textContent: doc.label }) : null,
        el('dt', { textContent: 'Link expires' }), el('dd', { textContent: when(doc.expires_at) }))),
    el('section', { 'aria-labelledby': 'exhibits-title' },
      el('h3', { id: 'exhibits-title', textContent: 'Exhibits' }),
      el('div', { class: 'table-wrap' }, el('table', { class: 'exhibits' },
        thead('Poster', 'Exhibit', 'Description', 'File', 'Size', 'Recorded', 'SHA-256', ''), rows))),
    p.node,
    el('section', { 'aria-labelledby': 'bundle-title' },
      el('h3', { id: 'bundle-title', textContent: 'Court bundle' }), bundle));
  view.hidden = false;
  $('page-status').textContent = doc.exhibits.length ? '' : 'No exhibits are disclosed by this link.';
  await pollBundle(bundle);
}

document.addEventListener('DOMContentLoaded', () => {
  $('passcode-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const code = $('passcode').value.trim();
    if (!code) {
      $('passcode-error').textContent = 'Enter the passcode.';
      return;
    }
    $('passcode-submit').disabled = true;
    guarded(() => open(code), () => $('passcode-error'))().finally(() => {
      $('passcode-submit').disabled = false;
    });
  });
  token = location.hash.replace(/^#/, '');
  if (token) {
    guarded(() => open(null))();
    return;
  }
  // No token: a reload after opening; the session cookie may still hold.
  guarded(async () => {
    try {
      await show();
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        $('page-status').textContent = 'Open the link you were given (it ends with #…) to see the disclosed evidence.';
        return;
      }
      throw e;
    }
  })();
});
