// SPDX-License-Identifier: Apache-2.0
// Face search on a case (docs/face-search.md, issue 14): #/cases/ID/face,
// linked from the case page (faceLink) for users who hold the face-search
// permission an administrator grants (GET /v1/me's face_search). Results
// are investigative leads, never identifications, and the page says so
// above every result it shows.
//
// The page: indexing of the case's footage (enable, disable, progress per
// exhibit, asked again every 1.5 s while anything is queued); the faces
// found, as a grid of crops with their exhibit and times, paged; a search
// (from a face of the grid or from a photo chosen here, read in the
// browser as base64) with its purpose, legal basis (the configured list,
// from GET /v1/cases/{id}/face), authorisation reference and an optional
// higher threshold, over the footage of cases the user may see or a
// gallery opened to them — checked here first, and a 400 of the server
// shown beside the field it names; the results (crop, score, exhibit,
// time, or a gallery subject's reference), asked again while the search
// is queued, each playing its footage at its moment in the page's player;
// and the case's past searches. Without the permission the page only
// says what it needs. The controls on show are those the case role
// allows (indexing and searching: lead, investigator, administrator; a
// viewer sees progress and faces); the server decides anyway.
import { api, all, ApiError } from './api.js';
import * as store from './store.js';
import { el, field, form, guard, invalid, when, clock, bytes, thead } from './ui.js';
import { route, replaceQuery } from './router.js';
import { player } from './player.js';

export const NOTICE = 'investigative lead — not an identification';
const POLL_MS = 1500;
const FACES_PAGE = '24';
const MAX_IMAGE = 10 << 20; // the server's limit on a probe image

const mayFaceSearch = () => {
  const me = store.get().me;
  return Boolean(me && me.face_search);
};

// The case page's way in: a short section with the link, for users with
// the permission only (null otherwise: they see nothing of it).
export function faceLink(c) {
  if (!mayFaceSearch()) return null;
  return el('section', { 'aria-labelledby': 'face-link-title', id: 'face-link' },
    el('h3', { id: 'face-link-title', textContent: 'Face search' }),
    el('p', {}, el('a', { href: `#/cases/${c.id}/face`, textContent: 'Face search in this case\'s footage' }), ' ',
      el('span', { class: 'hint', textContent: `(results are leads: ${NOTICE})` })));
}

// 0:09.5 (a moment in footage, to the tenth of a second).
const stamp = (t) => `${clock(t)}.${Math.floor((t % 1) * 10 + 1e-6)}`;
const span = (a, b) => `${stamp(a)}–${stamp(b)}`;

function stateText(doc) {
  const n = doc.counts || {};
  const total = (doc.artefacts || []).length;
  if (!doc.enabled && !n.done && !n.queued) return 'Face indexing is off for this case.';
  const parts = [`${n.done || 0} of ${total} exhibits indexed`];
  if (n.queued) parts.push(`${n.queued} queued`);
  if (n.failed) parts.push(`${n.failed} failed`);
  if (n.skipped) parts.push(`${n.skipped} skipped`);
  if (n.not_indexed) parts.push(`${n.not_indexed} not indexed`);
  return `${doc.enabled ? 'Face indexing is on' : 'Face indexing is off'}: ${parts.join(', ')}; ${doc.tracks} faces found.`;
}

// ---- indexing ----

// onShow(doc) hears every answer of GET …/face, onChange(doc) those that
// found more faces or finished more exhibits (the grid is then loaded again).
function indexingSection(page, c, can, onShow, onChange) {
  const status = el('p', { id: 'face-summary', class: 'status', role: 'status' });
  const rows = el('tbody', { id: 'face-progress' });
  const toggle = el('button', { type: 'button', id: 'face-toggle', hidden: true });
  const note = el('p', { class: 'error', role: 'alert' });
  const node = el('section', { 'aria-labelledby': 'face-indexing-title', id: 'face-indexing' },
    el('h3', { id: 'face-indexing-title', textContent: 'Indexing the footage' }), status,
    can.index ? el('div', {}, toggle, note) : null,
    el('div', { class: 'table-wrap' }, el('table', {}, thead('Exhibit', 'State', 'Frames', 'Faces', 'Note'), rows)));
  let timer = null;
  let last = null;
  node.doc = null;

  function show(doc) {
    node.doc = doc;
    onShow(doc);
    status.textContent = stateText(doc);
    toggle.hidden = !can.index;
    toggle.textContent = doc.enabled ? 'Disable face indexing' : 'Enable face indexing';
    toggle.className = doc.enabled ? 'danger' : 'primary';
    rows.replaceChildren();
    for (const a of doc.artefacts) {
      if (!a.artefact) continue; // the case's own row: it has no exhibits
      rows.append(el('tr', { 'data-artefact': a.artefact, 'data-state': a.state },
        el('td', { class: 'ref', textContent: a.exhibit }),
        el('td', { class: `state state-${a.state}`, textContent: a.state.replace('_', ' ') }),
        el('td', { textContent: a.state === 'done' ? String(a.frames) : '' }),
        el('td', { textContent: a.state === 'done' ? String(a.tracks) : '' }),
        el('td', { textContent: a.error || '' })));
    }
    if (!rows.children.length) rows.append(el('tr', {}, el('td', { colSpan: 5, textContent: 'The case has no exhibits.' })));
  }

  async function load() {
    const doc = await api(`/v1/cases/${c.id}/face`);
    if (!page.alive) return null;
    show(doc);
    const mark = `${doc.tracks}/${doc.counts.queued}/${doc.counts.done}`;
    if (last !== null && mark !== last) onChange(doc);
    last = mark;
    schedule();
    return doc;
  }

  async function poll() {
    timer = null;
    if (!page.alive) return;
    try {
      await load();
    } catch (e) {
      if (page.alive) status.textContent = `Progress could not be read: ${e.message}`;
    }
  }

  function schedule() {
    if (timer || !page.alive || !node.doc || !node.doc.counts.queued) return;
    timer = setTimeout(poll, POLL_MS);
  }
  page.onLeave(() => {
    if (timer) clearTimeout(timer);
    timer = null;
  });

  toggle.addEventListener('click', guard(async () => {
    note.textContent = '';
    toggle.disabled = true;
    try {
      const on = !node.doc.enabled;
      await api(`/v1/cases/${c.id}/face/indexing`, { method: 'POST', body: { enabled: on } });
      await load();
      status.textContent = `${on ? 'Face indexing enabled' : 'Face indexing disabled'}. ${stateText(node.doc)}`;
    } finally {
      toggle.disabled = false;
    }
  }, () => note));
  node.load = guard(load, () => status);
  return node;
}

// ---- the faces found ----

function facesSection(page, c, can, exhibitOf, onChoose) {
  const status = el('p', { class: 'status', role: 'status' });
  const grid = el('ul', { id: 'face-tracks', class: 'faces', 'aria-labelledby': 'face-tracks-title' });
  const more = el('button', { type: 'button', id: 'more-faces', hidden: true, textContent: 'More faces' });
  const node = el('section', { 'aria-labelledby': 'face-tracks-title' },
    el('h3', { id: 'face-tracks-title', textContent: 'Faces in the footage' }), status, grid, more);
  let cursor = null;

  function card(t) {
    const where = exhibitOf(t.artefact);
    const name = `Face ${t.id}, ${where}, ${span(t.t_first, t.t_last)}`;
    const li = el('li', { 'data-track': String(t.id), 'data-artefact': t.artefact, 'data-first': String(t.t_first) },
      el('img', { src: t.crop, alt: name, width: 128, height: 128 }),
      el('span', { class: 'ref', textContent: where }),
      el('span', { textContent: span(t.t_first, t.t_last) }),
      el('span', { class: 'hint', textContent: `${t.detections} detections` }));
    if (can.search) {
      const b = el('button', { type: 'button', textContent: 'Search with this face' });
      b.setAttribute('aria-label', `Search with this face (${name})`);
      b.addEventListener('click', () => onChoose(t, name));
      li.append(b);
    }
    return li;
  }

  async function load(next) {
    const q = new URLSearchParams({ limit: FACES_PAGE });
    if (next && cursor) q.set('cursor', cursor);
    status.textContent = 'Loading…';
    const doc = await api(`/v1/cases/${c.id}/face/tracks?${q}`);
    if (!page.alive) return;
    if (!next) grid.replaceChildren();
    for (const t of doc.tracks) grid.append(card(t));
    cursor = doc.next_cursor;
    more.hidden = !cursor;
    status.textContent = grid.children.length ? `${grid.children.length} faces shown${cursor ? ' (more below)' : ''}.` : 'No faces found yet.';
  }
  more.addEventListener('click', guard(() => load(true), () => status));
  node.load = guard(() => load(false), () => status);
  return node;
}

// ---- a new search ----

const radio = (name, value, checked) => el('input', { type: 'radio', name, value, checked, id: `face-${name}-${value}` });
const choice = (input, text) => el('label', { class: 'check', for: input.id }, input, text);

// A File as base64 (no data: prefix).
const base64Of = (file) => new Promise((resolve, reject) => {
  const r = new FileReader();
  r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
  r.onerror = () => reject(new Error('The photo could not be read.'));
  r.readAsDataURL(file);
});

const utf8 = (s) => new TextEncoder().encode(s).length;

function searchSection(page, c, galleries, onQueued) {
  const probeTrack = radio('probe', 'track', true);
  const probePhoto = radio('probe', 'photo', false);
  const chosen = el('div', { id: 'face-chosen', class: 'chosen', role: 'status' },
    el('span', { class: 'hint', textContent: 'Choose "Search with this face" on a face above.' }));
  const photo = el('input', { type: 'file', id: 'face-photo', accept: 'image/jpeg,image/png' });
  const scopeFootage = radio('scope', 'footage', true);
  const scopeGallery = radio('scope', 'gallery', false);
  const gallery = el('select', { id: 'face-gallery', name: 'gallery' });
  const purpose = el('textarea', { id: 'face-purpose', name: 'purpose', rows: 2, maxLength: 500 });
  const basis = el('select', { id: 'face-basis', name: 'legal_basis' },
    el('option', { value: '', textContent: 'Choose the legal basis…' }));
  const auth = el('input', { id: 'face-authorisation', name: 'authorisation', maxLength: 200, autocomplete: 'off' });
  const threshold = el('input', { id: 'face-threshold', name: 'threshold', type: 'number', step: '0.01', max: 1, inputMode: 'decimal' });
  const byField = { purpose, legal_basis: basis, authorisation: auth, threshold, gallery };
  let track = null; // the face chosen from the grid: {id, name}
  let lowest = 0.5; // the server's default threshold, the lowest allowed

  const usable = galleries.filter((g) => g.may_search);
  for (const g of usable) gallery.append(el('option', { value: String(g.id), textContent: `${g.name} (${g.subjects} subjects)` }));
  if (!usable.length) {
    scopeGallery.disabled = true;
    gallery.disabled = true;
    gallery.append(el('option', { value: '', textContent: 'No gallery is open to you' }));
  }

  const probeSet = el('fieldset', { class: 'choices' }, el('legend', { textContent: 'Whose face' }),
    choice(probeTrack, 'A face from this case\'s footage'), chosen,
    choice(probePhoto, 'A photo'), field('Photo', photo, '(JPEG or PNG, at most 10 MiB)'));
  const scopeSet = el('fieldset', { class: 'choices' }, el('legend', { textContent: 'Where to search' }),
    choice(scopeFootage, 'Footage of the cases I may see'), choice(scopeGallery, 'A gallery opened to me'),
    field('Gallery', gallery));
  const submit = el('button', { type: 'submit', textContent: 'Start the search' });
  const f = form({ id: 'face-search-form', 'aria-label': 'New face search' }, [
    probeSet, scopeSet,
    field('Purpose', purpose, '(what the search is for: recorded and overseen)'),
    field('Legal basis', basis),
    field('Authorisation reference', auth, '(who authorised it, and their reference)'),
    field('Threshold', threshold, '(optional: it may only be raised, up to 1)'),
    submit,
  ], async () => {
    for (const i of Object.values(byField).concat(photo)) invalid(i, null);
    const body = {
      scope: scopeGallery.checked ? 'gallery' : 'footage',
      purpose: purpose.value.trim(),
      legal_basis: basis.value,
      authorisation: auth.value.trim(),
    };
    const wrong = [];
    const check = (input, ok, message) => {
      if (!ok) {
        invalid(input, message);
        wrong.push(input);
      }
    };
    check(purpose, body.purpose && utf8(body.purpose) <= 500, 'Say what the search is for (at most 500 bytes).');
    check(basis, body.legal_basis, 'Choose the legal basis.');
    check(auth, body.authorisation && utf8(body.authorisation) <= 200, 'Give the authorisation reference (at most 200 bytes).');
    const min = lowest;
    if (threshold.validity.badInput) check(threshold, false, `A number from ${min} to 1, or nothing.`);
    else if (threshold.value !== '') {
      const t = Number(threshold.value);
      check(threshold, Number.isFinite(t) && t >= min && t <= 1, `A number from ${min} to 1: the threshold may only be raised.`);
      body.threshold = t;
    }
    if (body.scope === 'gallery') {
      check(gallery, gallery.value, 'Choose the gallery.');
      body.gallery = Number(gallery.value);
    }
    let file = null;
    if (probePhoto.checked) {
      file = photo.files[0];
      check(photo, file && /^image\/(jpeg|png)$/.test(file.type) && file.size <= MAX_IMAGE,
        file ? `A JPEG or PNG of at most ${bytes(MAX_IMAGE)}.` : 'Choose the photo.');
    }
    if (wrong.length) {
      wrong[0].focus();
      throw new Error('Check the fields marked.');
    }
    if (!file && !track) throw new Error('Choose a face from the footage ("Search with this face" above) or a photo.');
    body.probe = file ? { image: await base64Of(file) } : { track: track.id };
    let doc;
    try {
      doc = await api(`/v1/cases/${c.id}/face/searches`, { method: 'POST', body });
    } catch (e) {
      // The server's 400 names the field: shown beside it.
      const m = e instanceof ApiError && e.code === 'invalid_field' ? /field "(\w+)"/.exec(e.message) : null;
      const at = m && (m[1] === 'probe' && file ? photo : byField[m[1]]);
      if (!at) throw e;
      invalid(at, e.message);
      at.focus();
      throw new Error('Check the fields marked.');
    }
    await onQueued(doc);
  });
  const node = el('section', { 'aria-labelledby': 'face-search-title', id: 'face-search' },
    el('h3', { id: 'face-search-title', textContent: 'New search' }),
    el('p', { class: 'hint', textContent: 'Every search is recorded with its purpose, legal basis and authorisation, and an administrator oversees them.' }),
    f);

  // The server's offer: legal bases and the default (lowest) threshold.
  node.offer = (doc) => {
    const was = basis.value;
    basis.replaceChildren(el('option', { value: '', textContent: 'Choose the legal basis…' }),
      ...(doc.legal_bases || []).map((b) => el('option', { value: b, textContent: b, selected: b === was })));
    lowest = doc.threshold;
    threshold.min = String(lowest);
    threshold.placeholder = String(lowest);
    f.querySelector(`#${threshold.id}-hint`).textContent = `(optional: ${lowest} by default; it may only be raised, up to 1)`;
  };
  // A face chosen on the grid becomes the probe.
  node.choose = (t, name) => {
    track = { id: t.id, name };
    probeTrack.checked = true;
    invalid(photo, null);
    chosen.replaceChildren(el('img', { src: t.crop, alt: '', width: 64, height: 64 }), ' ',
      el('span', { id: 'face-chosen-name', textContent: name }));
    node.scrollIntoView({ block: 'start' });
    purpose.focus({ preventScroll: true });
  };
  photo.addEventListener('change', () => {
    if (photo.files.length) probePhoto.checked = true;
  });
  gallery.addEventListener('change', () => {
    scopeGallery.checked = true;
  });
  return node;
}

// ---- results ----

function resultsSection(page, c, exhibitOf, p, onDone) {
  const status = el('p', { id: 'face-result-status', class: 'status', role: 'status' });
  const about = el('dl', { id: 'face-result-about' });
  const grid = el('ul', { id: 'face-results', class: 'faces', 'aria-labelledby': 'face-results-title', 'aria-describedby': 'face-notice' });
  const title = el('h3', { id: 'face-results-title', textContent: 'Results' });
  const node = el('section', { 'aria-labelledby': 'face-results-title', id: 'face-result', hidden: true },
    title, el('p', { id: 'face-notice', class: 'notice', textContent: `Every result is an ${NOTICE}.` }),
    status, about, grid);
  let timer = null;
  let showing = null;
  page.onLeave(() => {
    if (timer) clearTimeout(timer);
    timer = null;
  });

  function detail(k, v) {
    if (v !== null && v !== undefined && v !== '') about.append(el('dt', { textContent: k }), el('dd', { textContent: String(v) }));
  }

  function candidate(r) {
    const score = `score ${r.score.toFixed(2)}`;
    if (!r.track) { // a gallery subject
      const ref = r.subject.reference;
      return el('li', { 'data-rank': String(r.rank), 'data-subject': ref },
        el('img', { src: r.crop, alt: `Enrolled image of subject ${ref}`, width: 128, height: 128 }),
        el('span', { class: 'ref', textContent: `Subject ${ref}` }),
        el('span', { class: 'score', textContent: score }),
        el('span', { class: 'hint', textContent: `rank ${r.rank}` }));
    }
    const where = exhibitOf(r.artefact);
    const name = `${where} at ${stamp(r.t)}`;
    const b = el('button', { type: 'button', class: 'result' },
      el('img', { src: r.crop, alt: '', width: 128, height: 128 }),
      el('span', { class: 'offscreen', textContent: `Play rank ${r.rank}: ` }),
      el('span', { class: 'ref', textContent: where }),
      el('span', { textContent: `at ${stamp(r.t)} (${span(r.track.t_first, r.track.t_last)})` }),
      el('span', { class: 'score', textContent: score }));
    b.addEventListener('click', guard(async () => {
      p.node.scrollIntoView({ block: 'nearest' });
      await p.showEvidence(r.artefact, `${name} (${NOTICE})`, { start: r.t, play: true });
    }, () => p.status));
    return el('li', { 'data-rank': String(r.rank), 'data-artefact': r.artefact, 'data-t': String(r.t) }, b);
  }

  function show(s) {
    node.dataset.search = String(s.id);
    node.dataset.state = s.state;
    title.textContent = `Results of search ${s.id}`;
    about.replaceChildren();
    detail('Started', `${when(s.created_at)} by ${s.user}`);
    detail('Where', s.scope === 'gallery' ? `gallery ${s.gallery_name || s.gallery}` : 'footage of the cases the searcher may see');
    detail('Whose face', s.probe_track ? `face ${s.probe_track} of the footage` : `a photo (SHA-256 ${s.probe_sha256})`);
    detail('Purpose', s.purpose);
    detail('Legal basis', s.legal_basis);
    detail('Authorisation', s.authorisation);
    detail('Threshold', s.threshold.toFixed(2));
    if (s.ledger_seq) detail('Ledger entry', s.ledger_seq);
    const list = s.candidates || [];
    grid.replaceChildren(...list.map(candidate));
    node.querySelector('#face-notice').textContent = `Every result is an ${s.notice || NOTICE}.`;
    if (s.state === 'queued') status.textContent = 'Searching…';
    else if (s.state === 'failed') status.textContent = `The search failed: ${s.error || 'no reason given'}.`;
    else if (!list.length) status.textContent = 'No face reached the threshold.';
    else status.textContent = `${list.length} ${list.length === 1 ? 'candidate' : 'candidates'}, best first.`;
    if (s.withheld) status.textContent += ` ${s.withheld} more are of footage you may no longer see.`;
  }

  async function poll(sid) {
    timer = null;
    if (!page.alive || showing !== sid) return;
    const s = await api(`/v1/cases/${c.id}/face/searches/${sid}`);
    if (!page.alive || showing !== sid) return;
    show(s);
    if (s.state === 'queued') timer = setTimeout(guard(() => poll(sid), () => status), POLL_MS);
    else onDone(s);
  }

  node.open = async (sid, focus) => {
    if (timer) clearTimeout(timer);
    timer = null;
    showing = sid;
    node.hidden = false;
    grid.replaceChildren();
    about.replaceChildren();
    status.textContent = 'Loading…';
    replaceQuery(`/cases/${c.id}/face`, new URLSearchParams({ search: String(sid) }));
    if (focus) {
      title.tabIndex = -1;
      title.focus({ preventScroll: true });
      node.scrollIntoView({ block: 'start' });
    }
    await guard(() => poll(sid), () => status)();
  };
  return node;
}

// ---- past searches ----

function historySection(page, c, onOpen) {
  const status = el('p', { class: 'status', role: 'status' });
  const rows = el('tbody', { id: 'face-searches' });
  const node = el('section', { 'aria-labelledby': 'face-history-title', id: 'face-history' },
    el('h3', { id: 'face-history-title', textContent: 'Searches in this case' }), status,
    el('div', { class: 'table-wrap' }, el('table', {},
      thead('Search', 'Started', 'By', 'Where', 'Purpose', 'Legal basis', 'Authorisation', 'State', 'Results', ''), rows)));

  async function load() {
    const list = await all(`/v1/cases/${c.id}/face/searches`, 'searches');
    if (!page.alive) return;
    rows.replaceChildren();
    for (const s of list.reverse()) { // newest first
      const open = el('button', { type: 'button', textContent: 'Show results' });
      open.setAttribute('aria-label', `Show results of search ${s.id}`);
      open.addEventListener('click', guard(() => onOpen(s.id, true), () => status));
      rows.append(el('tr', { 'data-search': String(s.id), 'data-state': s.state },
        el('td', { textContent: String(s.id) }),
        el('td', { textContent: when(s.created_at) }),
        el('td', { textContent: s.user }),
        el('td', { textContent: s.scope === 'gallery' ? `gallery ${s.gallery_name || s.gallery}` : 'footage' }),
        el('td', { textContent: s.purpose }),
        el('td', { textContent: s.legal_basis }),
        el('td', { textContent: s.authorisation }),
        el('td', { class: `state state-${s.state}`, textContent: s.state === 'failed' ? `failed: ${s.error || ''}` : s.state }),
        el('td', { textContent: s.results === null ? '' : String(s.results) }),
        el('td', { class: 'actions' }, open)));
    }
    status.textContent = list.length ? '' : 'No searches yet.';
  }
  node.load = guard(load, () => status);
  return node;
}

// ---- the page ----

async function renderFace(view, params, page) {
  const status = view.querySelector('#page-status');
  const id = params[0];
  const title = el('h2', { id: 'face-title', textContent: 'Face search' });
  const head = el('section', { 'aria-labelledby': 'face-title', class: 'case-head' },
    el('p', {}, el('a', { href: `#/cases/${id}`, textContent: '← Back to the case' })), title);
  view.append(head);
  if (!mayFaceSearch()) {
    head.append(el('p', { id: 'face-not-permitted', textContent: 'Face search needs the face-search permission, which an administrator grants. Ask one if your work needs it.' }));
    return;
  }
  head.append(el('p', { class: 'notice', textContent: `Face search gives leads for people to look at: every result is an ${NOTICE}.` }));
  status.textContent = 'Loading…';
  const c = await api(`/v1/cases/${id}`);
  if (!page.alive) return;
  status.textContent = '';
  title.textContent = `Face search · ${c.reference} · ${c.title}`;
  document.title = `dems · Face search · ${c.reference}`;
  const editor = ['admin', 'lead', 'investigator'].includes(c.my_role);
  const can = { index: editor && c.status === 'open', search: editor };

  const exhibits = new Map(); // artefact -> exhibit reference
  const exhibitOf = (artefact) => exhibits.get(artefact) || `evidence ${artefact.slice(0, 12)}…`;
  const p = player({ heading: 'h3' });
  page.onLeave(p.hide);
  let faces = null;
  let search = null;
  const indexing = indexingSection(page, c, can, (doc) => {
    for (const a of doc.artefacts) if (a.artefact) exhibits.set(a.artefact, a.exhibit);
  }, () => faces.load());
  faces = facesSection(page, c, can, exhibitOf, (t, name) => search.choose(t, name));
  view.append(indexing, faces);
  const first = await indexing.load();
  if (!page.alive || !first) return;
  const loads = [faces.load()];
  if (can.search) {
    const galleries = await all('/v1/face/galleries', 'galleries').catch(() => []);
    if (!page.alive) return;
    const history = historySection(page, c, (sid, focus) => results.open(sid, focus));
    const results = resultsSection(page, c, exhibitOf, p, () => history.load());
    search = searchSection(page, c, galleries, async (doc) => {
      await history.load();
      await results.open(doc.id, true);
    });
    search.offer(first);
    view.append(search, results, p.node, history);
    loads.push(history.load());
    const sid = Number(page.query.get('search'));
    if (sid > 0) loads.push(results.open(sid, false));
  } else {
    view.append(p.node);
  }
  await Promise.all(loads);
}

route(/^\/cases\/(\d+)\/face$/, { nav: 'cases', roles: ['admin', 'officer'], title: 'Face search', render: renderFace });
