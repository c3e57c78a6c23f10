// SPDX-License-Identifier: Apache-2.0
// Sharing with prosecutors (docs/api.md, "Sharing with prosecutors"): the
// shares section of the case page (list, share, revoke) and the
// prosecutor's pages: "Shared with me" (#/shared) and one shared case
// (#/shared/SID: its exhibits with posters and previews, court bundles when
// the share allows downloads, and disclosure to the defence). A share that
// was revoked or has expired shows "This share has ended", whether the list
// already says so or the server answers 403 share_ended.
import { api, all } from './api.js';
import { el, field, form, guard, when, isoFromLocal, localIn, thead } from './ui.js';
import { route, go } from './router.js';
import { player } from './player.js';
import { exhibitsSection, details as caseDetails } from './cases.js';
import { bundles } from './bundles.js';
import { disclosures } from './disclosures.js';

const scope = (s) => (s.whole_case ? 'whole case' : `exhibits ${(s.exhibits || []).join(', ')}`);
const access = (s) => (s.can_download ? 'view and download' : 'view only');
const stateText = (s) => {
  if (s.state === 'revoked') return `revoked ${when(s.revoked_at)}${s.revoked_by ? ' by ' + s.revoked_by : ''}`;
  if (s.state === 'expired') return `expired ${when(s.expires_at)}`;
  return s.state;
};

// ---- the case page's shares ----

export function caseShares(page, c, can, exhibits) {
  const status = el('p', { class: 'status', role: 'status' });
  const body = el('tbody', { id: 'share-rows' });
  const node = el('section', { 'aria-labelledby': 'shares-title' },
    el('h3', { id: 'shares-title', textContent: 'Shared with prosecutors' }), status,
    el('div', { class: 'table-wrap' }, el('table', {},
      thead('Prosecutor', 'Scope', 'Access', 'Expires', 'State', 'Shared', ''), body)));

  async function load() {
    const list = await all(`/v1/cases/${c.id}/shares`, 'shares');
    if (!page.alive) return;
    body.replaceChildren();
    for (const s of list) {
      const actions = el('td', { class: 'actions' });
      if (can.manage && s.state === 'live') {
        const b = el('button', { type: 'button', class: 'danger', textContent: 'Revoke' });
        b.setAttribute('aria-label', `Revoke the share with ${s.prosecutor}`);
        b.addEventListener('click', guard(async () => {
          await api(`/v1/cases/${c.id}/shares/${s.id}/revoke`, { method: 'POST', body: {} });
          await load();
        }, () => status));
        actions.append(b);
      }
      body.append(el('tr', { 'data-share': String(s.id), 'data-state': s.state },
        el('td', { textContent: s.prosecutor }), el('td', { textContent: scope(s) }),
        el('td', { textContent: access(s) }), el('td', { textContent: when(s.expires_at) }),
        el('td', { class: `state-${s.state}`, textContent: stateText(s) }),
        el('td', { textContent: `${when(s.created_at)} by ${s.created_by}` }), actions));
    }
    status.textContent = list.length ? '' : 'Not shared with anyone.';
  }

  if (can.edit) node.append(shareForm(c, exhibits, load));
  node.load = guard(load, () => status);
  return node;
}

function shareForm(c, exhibits, done) {
  const who = el('input', { name: 'prosecutor', required: true, autocomplete: 'off' });
  const whole = el('input', { type: 'radio', name: 'scope', value: 'whole', checked: true });
  const chosen = el('input', { type: 'radio', name: 'scope', value: 'chosen' });
  const boxes = el('fieldset', { class: 'choices', hidden: true }, el('legend', { textContent: 'Exhibits to share' }));
  const download = el('input', { type: 'checkbox', name: 'can_download' });
  const expires = el('input', { type: 'datetime-local', name: 'expires_at', step: 1, value: localIn(30) });
  const fillBoxes = () => {
    boxes.replaceChildren(boxes.firstChild);
    for (const x of exhibits()) {
      boxes.append(el('label', { class: 'check' },
        el('input', { type: 'checkbox', name: 'exhibit', value: x.reference }), ` ${x.reference}`));
    }
    if (boxes.children.length === 1) boxes.append(el('p', { class: 'hint', textContent: 'The case has no exhibits yet.' }));
  };
  const onScope = () => {
    boxes.hidden = !chosen.checked;
    if (chosen.checked) fillBoxes();
  };
  whole.addEventListener('change', onScope);
  chosen.addEventListener('change', onScope);
  const f = form({ id: 'share-form', 'aria-label': 'Share with a prosecutor' }, [
    field('Prosecutor', who, '(username)'),
    el('fieldset', { class: 'choices' }, el('legend', { textContent: 'Scope' }),
      el('label', { class: 'check' }, whole, ' Whole case (and exhibits added later)'),
      el('label', { class: 'check' }, chosen, ' Chosen exhibits')),
    boxes,
    el('label', { class: 'check' }, download, ' Allow downloading originals and bundles'),
    field('Expires', expires, '(your local time)'),
    el('button', { type: 'submit', textContent: 'Share' }),
  ], async () => {
    const when = isoFromLocal(expires.value);
    if (!when) throw new Error('Enter when the share expires.');
    const body = { prosecutor: who.value.trim(), expires_at: when, can_download: download.checked };
    if (chosen.checked) body.exhibits = [...boxes.querySelectorAll('input:checked')].map((b) => b.value);
    await api(`/v1/cases/${c.id}/shares`, { method: 'POST', body });
    who.value = '';
    await done();
  });
  return el('details', { class: 'panel' }, el('summary', { textContent: 'Share with a prosecutor' }), f);
}

// ---- the prosecutor's pages ----

async function renderMine(view, params, page) {
  const status = view.querySelector('#page-status');
  const list = el('ul', { id: 'share-list', class: 'cards' });
  view.append(el('section', { 'aria-labelledby': 'shared-title' },
    el('h2', { id: 'shared-title', textContent: 'Shared with me' }), status, list));
  status.textContent = 'Loading…';
  const shares = await all('/v1/me/shares', 'shares');
  if (!page.alive) return;
  for (const s of shares) {
    list.append(el('li', { 'data-share': String(s.id), 'data-state': s.state },
      el('a', { href: `#/shared/${s.id}`, class: 'name', textContent: `${s.case_reference} · ${s.case_title}` }),
      el('span', { class: 'meta', textContent: `${scope(s)} · ${access(s)} · shared by ${s.created_by}` }),
      el('span', { class: `meta state-${s.state}`, textContent: s.state === 'live' ? `until ${when(s.expires_at)}` : stateText(s) })));
  }
  status.textContent = shares.length ? '' : 'Nothing has been shared with you yet. When an officer shares a case with you, it appears here.';
}

function ended(view, s, why) {
  view.replaceChildren(el('section', { id: 'share-ended', role: 'alert', 'aria-labelledby': 'ended-title' },
    el('h2', { id: 'ended-title', textContent: 'This share has ended' }),
    el('p', { textContent: why || (s ? `The share of ${s.case_reference} ${stateText(s)}.` : '') }),
    el('p', { textContent: 'Ask the officer in the case if you still need it.' }),
    el('p', {}, el('a', { href: '#/shared', textContent: '← Shared with me' }))));
}

async function renderShare(view, params, page) {
  const status = view.querySelector('#page-status');
  const sid = Number(params[0]);
  status.textContent = 'Loading…';
  const s = (await all('/v1/me/shares', 'shares')).find((x) => x.id === sid);
  if (!page.alive) return;
  if (!s) {
    status.textContent = 'No such share.';
    return;
  }
  if (s.state !== 'live') {
    ended(view, s);
    return;
  }
  // share_ended from any request of this page: the share ended meanwhile.
  const onError = (e) => {
    if (e.code !== 'share_ended' || !page.alive) return false;
    page.alive = false;
    for (const fn of page.cleanups) fn();
    ended(view, s, 'The share was revoked or expired while you were looking at it.');
    return true;
  };
  let c;
  try {
    c = await api(`/v1/cases/${s.case_id}`);
  } catch (e) {
    if (onError(e)) return;
    throw e;
  }
  if (!page.alive) return;
  status.textContent = '';
  const p = player();
  page.onLeave(p.hide);
  const refresh = el('button', { type: 'button', textContent: 'Refresh' });
  refresh.addEventListener('click', () => go(`/shared/${sid}`));
  const head = el('section', { 'aria-labelledby': 'case-title', class: 'case-head' },
    el('p', {}, el('a', { href: '#/shared', textContent: '← Shared with me' })),
    el('div', { class: 'bar' }, el('h2', { id: 'case-title', textContent: `${c.reference} · ${c.title}` }), refresh),
    el('p', { class: 'meta', id: 'share-terms', textContent: `Shared by ${s.created_by}: ${scope(s)}, ${access(s)}, until ${when(s.expires_at)}.` }),
    caseDetails(c));
  const exhibits = exhibitsSection(page, c, {}, p, onError);
  if (!s.whole_case) exhibits.filter = new Set((s.exhibits || []).map((r) => r.toLowerCase()));
  view.append(head, exhibits, p.node);
  const loads = [exhibits.load()];
  if (s.can_download) {
    const refs = () => exhibits.exhibits.map((x) => x.reference);
    const b = bundles(page, c.id, { canRequest: true, onError });
    view.append(b);
    loads.push(b.load());
    const dd = disclosures(page, c, refs, onError);
    view.append(dd);
    loads.push(dd.load());
  }
  await Promise.all(loads);
  // A load that met share_ended has replaced the page already.
}

route(/^\/shared$/, { nav: 'shared', roles: ['prosecutor'], render: renderMine });
route(/^\/shared\/(\d+)$/, { nav: 'shared', roles: ['prosecutor'], render: renderShare });
