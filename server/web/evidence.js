// SPDX-License-Identifier: Apache-2.0
// The evidence page (#/evidence, #/evidence/ID): the evidence the user may
// see, newest first with each item's preview state, and the player for the
// chosen item.
import { api } from './api.js';
import { el, guard, when, bytes } from './ui.js';
import { route, go } from './router.js';
import { player, previewText } from './player.js';

function render(view, params, page) {
  let nextCursor = null;
  const status = el('p', { id: 'list-status', role: 'status' });
  const list = el('ul', { id: 'evidence-list' });
  const older = el('button', { type: 'button', id: 'older', hidden: true, textContent: 'Older evidence' });
  const refresh = el('button', { type: 'button', id: 'refresh', textContent: 'Refresh' });
  const p = player();
  const listView = el('section', { id: 'list-view', 'aria-labelledby': 'list-title' },
    el('div', { class: 'bar' }, el('h2', { id: 'list-title', textContent: 'Evidence' }), refresh),
    status, list, older);
  view.replaceChildren(el('div', { class: 'split' }, listView, p.node));
  page.onLeave(p.hide);
  p.node.addEventListener('closed', () => go('/evidence'));
  page.selected = null;

  function listItem(item) {
    const state = item.has_preview ? 'done' : item.preview_job || 'none';
    const b = el('button', { type: 'button', 'data-id': item.id },
      el('span', { class: 'name', textContent: item.filename || item.id.slice(0, 16) + '…' }),
      el('span', { class: 'meta', textContent: `${when(item.created_at)} · ${bytes(item.size)} · ${item.uploaded_by}` }),
      el('span', { class: `meta state-${state}`, textContent: previewText(item) }));
    if (item.id === page.selected) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => go(`/evidence/${item.id}`));
    return el('li', {}, b);
  }

  async function load(more) {
    const q = new URLSearchParams({ limit: '50' });
    if (more && nextCursor) q.set('cursor', nextCursor);
    status.textContent = 'Loading…';
    const doc = await api(`/v1/evidence?${q}`);
    if (!page.alive) return;
    if (!more) list.replaceChildren();
    for (const item of doc.evidence) list.append(listItem(item));
    nextCursor = doc.next_cursor;
    older.hidden = !nextCursor;
    status.textContent = list.children.length ? '' : 'No evidence yet.';
  }

  page.show = async (id) => {
    page.selected = id || null;
    for (const b of list.querySelectorAll('button')) {
      if (b.dataset.id === id) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
    if (id) await guard(() => p.showEvidence(id), () => p.status)();
    else p.hide();
  };

  refresh.addEventListener('click', guard(() => load(false), () => status));
  older.addEventListener('click', guard(() => load(true), () => status));
  return (async () => {
    await guard(() => load(false), () => status)();
    if (!page.alive) return;
    if (params[0]) await page.show(params[0]);
    else (list.querySelector('button') || refresh).focus();
  })();
}

route(/^\/evidence(?:\/([0-9a-f]{64}))?$/, {
  nav: 'evidence',
  roles: ['admin', 'officer'],
  render,
  update: (params, page) => page.show(params[0]),
});
