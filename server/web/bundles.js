// SPDX-License-Identifier: Apache-2.0
// Court bundles of a case (docs/api.md, "Bundles"): request one, list them,
// follow a queued or running bundle with a progress bar (its GET is polled
// every second while the page is open) and download it when done. Used by
// the case page (lead, investigator, admin) and by a prosecutor's shared
// case when the share allows downloads.
import { api, all, problem } from './api.js';
import { el, form, guard, when, bytes } from './ui.js';

const POLL_MS = 1000;

function stateText(b) {
  const p = b.progress || {};
  switch (b.state) {
    case 'queued': return b.error ? `waiting to retry (${b.error})` : 'queued';
    case 'running':
      return p.bytes_total > 0 ? `running: ${bytes(p.bytes_done)} of ${bytes(p.bytes_total)}` : 'running';
    case 'done': return `done: ${bytes(b.size)}`;
    case 'failed': return `failed: ${b.error || 'no reason given'}`;
    default: return b.state;
  }
}

function row(b) {
  const p = b.progress || {};
  const bar = el('progress', { 'aria-label': `Bundle ${b.id} progress` });
  if (b.state === 'done') {
    bar.max = 1;
    bar.value = 1;
  } else if (p.bytes_total > 0) {
    bar.max = p.bytes_total;
    bar.value = p.bytes_done;
  } // else indeterminate: nothing is known yet
  const what = el('td', {},
    el('span', { class: `state state-${b.state}`, textContent: stateText(b) }),
    b.state === 'failed' ? null : bar);
  if (b.state === 'done') {
    what.append(el('a', {
      class: 'download', href: b.content, download: '', // the server names the file
      textContent: `Download bundle ${b.id}`,
    }), el('code', { class: 'hash', title: 'SHA-256 of the bundle', textContent: b.sha256 }));
  }
  return el('tr', { 'data-bundle': String(b.id), 'data-state': b.state },
    el('td', { textContent: String(b.id) }),
    el('td', { textContent: `${b.requested_by || ''} · ${when(b.created_at)}` }),
    el('td', { textContent: `${b.exhibits}${b.include_previews ? ' + previews' : ''}` }),
    what);
}

// The bundles section of case caseId. opts.canRequest shows the request
// form; opts.onError(e) sees failures first (a prosecutor's page turns
// share_ended into its ended message) and returns true if it handled one.
export function bundles(page, caseId, opts = {}) {
  const status = el('p', { class: 'status', role: 'status' });
  const body = el('tbody');
  const table = el('div', { class: 'table-wrap' }, el('table', { class: 'bundles' },
    el('thead', {}, el('tr', {}, ...['Bundle', 'Requested', 'Exhibits', 'State'].map((t) => el('th', { scope: 'col', textContent: t })))),
    body));
  const node = el('section', { class: 'bundles-section', 'aria-labelledby': `bundles-title-${caseId}` },
    el('h3', { id: `bundles-title-${caseId}`, textContent: 'Court bundles' }), status, table);
  const rows = new Map(); // id -> bundle
  let timer = null;

  const fail = (e) => {
    if (opts.onError && opts.onError(e)) return;
    status.textContent = problem(e);
  };

  function put(b) {
    rows.set(b.id, b);
    const tr = row(b);
    const old = body.querySelector(`tr[data-bundle="${b.id}"]`);
    if (old) old.replaceWith(tr);
    else body.append(tr);
  }

  async function poll() {
    timer = null;
    if (!page.alive) return;
    const busy = [...rows.values()].filter((b) => b.state === 'queued' || b.state === 'running');
    try {
      for (const b of busy) {
        const doc = await api(b.href);
        if (!page.alive) return;
        put(doc);
      }
    } catch (e) {
      fail(e);
      return; // stop polling: the failure is on show
    }
    schedule();
  }

  function schedule() {
    if (timer || !page.alive) return;
    if ([...rows.values()].some((b) => b.state === 'queued' || b.state === 'running')) {
      timer = setTimeout(poll, POLL_MS);
    }
  }
  page.onLeave(() => {
    if (timer) clearTimeout(timer);
    timer = null;
  });

  async function load() {
    const list = await all(`/v1/cases/${caseId}/bundles`, 'bundles');
    if (!page.alive) return;
    body.replaceChildren();
    rows.clear();
    for (const b of list) put(b);
    status.textContent = list.length ? '' : 'No bundles yet.';
    schedule();
  }

  if (opts.canRequest) {
    const previews = el('input', { type: 'checkbox', name: 'include_previews' });
    const f = form({ class: 'inline', 'aria-label': 'Request a court bundle' }, [
      el('label', { class: 'check' }, previews, ' Include previews'),
      el('button', { type: 'submit', textContent: 'Request bundle' }),
    ], async () => {
      const body = { include_previews: previews.checked };
      if (opts.exhibits) body.exhibits = opts.exhibits();
      try {
        const b = await api(`/v1/cases/${caseId}/bundles`, { method: 'POST', body });
        status.textContent = `Bundle ${b.id} requested.`;
        put(b);
        schedule();
      } catch (e) {
        if (opts.onError && opts.onError(e)) return;
        throw e;
      }
    });
    node.insertBefore(f, status);
  }
  node.load = guard(async () => {
    try {
      await load();
    } catch (e) {
      if (opts.onError && opts.onError(e)) return;
      throw e;
    }
  }, () => status);
  return node;
}
