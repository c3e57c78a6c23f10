// SPDX-License-Identifier: Apache-2.0
// The find view (#/evidence?…): the evidence the user may see
// (GET /v1/evidence), searched and filtered by every filter the API has —
// text in the file name or description, uploader, device, content type,
// preview state, when it was received and when it was recorded — and
// sorted newest or oldest first. The address holds the whole query,
// including the page (the API's cursor), so a search can be bookmarked,
// reloaded or sent to a colleague, and the browser's Back goes to the page
// before. Each item links to its evidence page (evidence.js).
import * as store from './store.js';
import { api } from './api.js';
import { el, field, localTime, bytes, isoFromLocal, localFromIso } from './ui.js';
import { route, go } from './router.js';

const PAGE = 25;
// Query parameters the view keeps in the address, in this order.
const KEYS = ['q', 'uploader', 'device', 'content_type', 'preview', 'from', 'to', 'recorded_from', 'recorded_to', 'sort', 'cursor'];
const TIMES = new Set(['from', 'to', 'recorded_from', 'recorded_to']);
const TYPES = [['', 'any'], ['video/', 'video'], ['audio/', 'audio'], ['image/', 'image'], ['application/pdf', 'PDF'], ['text/', 'text']];
const PREVIEWS = [['', 'any'], ['ready', 'ready'], ['pending', 'being made'], ['failed', 'failed'], ['none', 'none']];
const SORTS = [['newest', 'newest first'], ['oldest', 'oldest first']];

const PREVIEW_TEXT = {
  ready: 'ready',
  pending: 'being made',
  failed: 'cannot be made',
  none: 'none',
};

function select(name, options) {
  const s = el('select', { name });
  for (const [v, t] of options) s.append(el('option', { value: v, textContent: t }));
  return s;
}

function render(view, params, page) {
  const status = view.querySelector('#page-status');
  const inputs = {
    q: el('input', { type: 'search', name: 'q', maxLength: 200, placeholder: 'file name or description' }),
    uploader: el('input', { name: 'uploader', autocomplete: 'off', placeholder: 'username or device:SERIAL' }),
    device: el('input', { name: 'device', autocomplete: 'off', spellcheck: false }),
    content_type: select('content_type', TYPES),
    preview: select('preview', PREVIEWS),
    from: el('input', { type: 'datetime-local', step: 1, name: 'from' }),
    to: el('input', { type: 'datetime-local', step: 1, name: 'to' }),
    recorded_from: el('input', { type: 'datetime-local', step: 1, name: 'recorded_from' }),
    recorded_to: el('input', { type: 'datetime-local', step: 1, name: 'recorded_to' }),
    sort: select('sort', SORTS),
  };
  const body = el('tbody', { id: 'evidence-rows' });
  const count = el('p', { id: 'result-count', role: 'status' });
  const nav = el('nav', { class: 'pager', 'aria-label': 'Result pages' });
  const results = el('section', { 'aria-labelledby': 'results-title' },
    el('h3', { id: 'results-title', textContent: 'Results' }), count,
    el('div', { class: 'table-wrap' }, el('table', { id: 'evidence-list' },
      el('thead', {}, el('tr', {}, ...['File', 'Received', 'Recorded', 'Size', 'Type', 'Uploaded by', 'Device', 'Preview']
        .map((t) => el('th', { scope: 'col', textContent: t })))), body)),
    nav);
  const formEl = el('form', { class: 'filters', role: 'search', 'aria-label': 'Find evidence', noValidate: true },
    field('Text', inputs.q, '(file name or description)'),
    field('Uploader', inputs.uploader),
    field('Device', inputs.device, '(serial)'),
    field('Type', inputs.content_type),
    field('Preview', inputs.preview),
    field('Received from', inputs.from),
    field('Received before', inputs.to),
    field('Recorded from', inputs.recorded_from),
    field('Recorded before', inputs.recorded_to),
    field('Sort', inputs.sort),
    el('div', { class: 'buttons' },
      el('button', { type: 'submit', class: 'primary', textContent: 'Search' }),
      el('button', { type: 'reset', textContent: 'Clear' })));
  const error = el('p', { class: 'error', role: 'alert', id: 'find-error' });
  view.append(el('section', { 'aria-labelledby': 'find-title' },
    el('h2', { id: 'find-title', textContent: 'Evidence' }), formEl, error), results);
  status.remove(); // this page speaks through the count and the error line

  // The address's query → the form.
  function fill(query) {
    for (const [k, i] of Object.entries(inputs)) {
      const v = query.get(k) || '';
      if (TIMES.has(k)) i.value = localFromIso(v);
      else if (i.tagName === 'SELECT') {
        if (v && ![...i.options].some((o) => o.value === v)) i.append(el('option', { value: v, textContent: v }));
        i.value = v || i.options[0].value;
      } else i.value = v;
    }
  }

  // The form → a query (empty fields left out; the default sort too).
  function query() {
    const q = new URLSearchParams();
    for (const k of KEYS) {
      const i = inputs[k];
      if (!i) continue;
      let v = i.value.trim();
      if (TIMES.has(k) && v) v = isoFromLocal(v) || '';
      if (k === 'sort' && v === 'newest') v = '';
      if (v) q.set(k, v);
    }
    return q;
  }

  const href = (q) => `#/evidence${q.toString() ? '?' + q : ''}`;

  function item(e) {
    const m = e.metadata || {};
    const name = e.filename || m.filename || `${e.id.slice(0, 16)}…`;
    return el('tr', { 'data-id': e.id, 'data-preview': e.preview || '' },
      el('td', { class: 'file' }, el('a', { href: `#/evidence/${e.id}`, 'data-id': e.id, textContent: name }),
        m.description ? el('span', { class: 'meta', textContent: m.description }) : null),
      el('td', {}, localTime(e.created_at)),
      el('td', {}, m.recording_start ? localTime(m.recording_start) : ''),
      el('td', { title: `${e.size} bytes`, textContent: bytes(e.size) }),
      el('td', { textContent: e.content_type || '' }),
      el('td', { textContent: e.uploaded_by || '' }),
      el('td', { textContent: m.device_serial || '' }),
      el('td', { class: `state-${e.preview === 'ready' ? 'done' : e.preview === 'failed' ? 'failed' : 'other'}`, textContent: PREVIEW_TEXT[e.preview] || e.preview || '' }));
  }

  async function load() {
    const q = new URLSearchParams(page.query);
    for (const k of [...q.keys()]) if (!KEYS.includes(k)) q.delete(k);
    fill(q);
    store.set({ lastFind: href(q) });
    const api_q = new URLSearchParams(q);
    api_q.set('limit', String(PAGE));
    error.textContent = '';
    count.textContent = 'Searching…';
    body.setAttribute('aria-busy', 'true');
    let doc;
    try {
      doc = await api(`/v1/evidence?${api_q}`);
    } catch (e) {
      if (!page.alive) return;
      body.replaceChildren();
      nav.replaceChildren();
      count.textContent = '';
      error.textContent = e.status === 400 ? `The search was refused: ${e.message}` : e.message;
      return;
    } finally {
      body.removeAttribute('aria-busy');
    }
    if (!page.alive) return;
    body.replaceChildren(...doc.evidence.map(item));
    const filtered = [...q.keys()].some((k) => k !== 'sort' && k !== 'cursor');
    if (!doc.evidence.length) {
      count.textContent = q.get('cursor') ? 'No more evidence.' : filtered ? 'No evidence matches this search.' : 'No evidence yet: upload some, or ask to be added to a case.';
    } else {
      count.textContent = `${doc.evidence.length} item${doc.evidence.length === 1 ? '' : 's'}${q.get('cursor') || doc.next_cursor ? ' on this page' : ''}.`;
    }
    nav.replaceChildren();
    if (q.get('cursor')) {
      const first = new URLSearchParams(q);
      first.delete('cursor');
      nav.append(el('a', { href: href(first), id: 'first-page', textContent: '← First page' }));
    }
    if (doc.next_cursor) {
      const next = new URLSearchParams(q);
      next.set('cursor', doc.next_cursor);
      nav.append(el('a', { href: href(next), id: 'next-page', rel: 'next', textContent: 'Next page →' }));
    }
  }

  formEl.addEventListener('submit', (ev) => {
    ev.preventDefault();
    go(href(query()).slice(1)); // a new search starts on its first page
  });
  formEl.addEventListener('reset', (ev) => {
    ev.preventDefault();
    go('/evidence');
  });
  page.load = load;
  return load();
}

route(/^\/evidence$/, {
  nav: 'evidence',
  roles: ['admin', 'officer'],
  title: 'evidence',
  render,
  update: (params, page) => page.load(),
});
