// SPDX-License-Identifier: Apache-2.0
// The administrator's overview (#/admin, where an administrator lands):
// what needs attention — evidence whose preview could not be made, jobs
// that gave up (with Retry), sign-in lockouts (with Lift) — then the
// newest evidence and the accounts. Each list links on to its full view.
import { api, all } from './api.js';
import { el, guard, localTime, bytes, thead } from './ui.js';
import { route } from './router.js';

function section(id, title, hint) {
  const status = el('p', { class: 'status', role: 'status' });
  const node = el('section', { 'aria-labelledby': `${id}-title`, id },
    el('h3', { id: `${id}-title`, textContent: title }), hint ? el('p', { class: 'hint', textContent: hint }) : null, status);
  node.status = status;
  return node;
}

const evidenceLink = (e) => el('a', { href: `#/evidence/${e.id}`, textContent: e.filename || (e.metadata && e.metadata.filename) || `${e.id.slice(0, 16)}…` });

async function failedPreviews(node, page) {
  const doc = await api('/v1/evidence?preview=failed&limit=10');
  if (!page.alive) return;
  if (!doc.evidence.length) {
    node.status.textContent = 'None: every preview asked for was made or is on its way.';
    return;
  }
  const list = el('ul', { class: 'cards' });
  for (const e of doc.evidence) {
    list.append(el('li', {}, evidenceLink(e), el('span', { class: 'meta' }, localTime(e.created_at), ` · ${bytes(e.size)} · ${e.content_type || 'no type'} · ${e.uploaded_by}`)));
  }
  node.append(list, el('p', {}, el('a', { href: '#/evidence?preview=failed', textContent: 'All evidence without a preview →' })));
}

async function deadJobs(node, page) {
  const doc = await api('/v1/admin/jobs?state=dead&limit=20');
  if (!page.alive) return;
  if (!doc.jobs.length) {
    node.status.textContent = 'None.';
    return;
  }
  const body = el('tbody');
  for (const j of doc.jobs) {
    const retry = el('button', { type: 'button', textContent: 'Retry' });
    retry.setAttribute('aria-label', `Retry job ${j.id}`);
    retry.addEventListener('click', guard(async () => {
      await api(`/v1/admin/jobs/${j.id}/retry`, { method: 'POST' });
      node.status.textContent = `Job ${j.id} queued again.`;
      retry.disabled = true;
    }, () => node.status));
    const ev = j.payload && j.payload.evidence;
    body.append(el('tr', { 'data-job': String(j.id) },
      el('td', { textContent: String(j.id) }), el('td', { textContent: j.kind }),
      el('td', {}, ev ? el('a', { href: `#/evidence/${ev}`, textContent: `${ev.slice(0, 12)}…` }) : ''),
      el('td', { textContent: `${j.attempts} of ${j.max_attempts}` }),
      el('td', { class: 'reason', textContent: j.last_error || '' }),
      el('td', {}, localTime(j.finished_at || j.updated_at)),
      el('td', { class: 'actions' }, retry)));
  }
  node.append(el('div', { class: 'table-wrap' }, el('table', {}, thead('Job', 'Kind', 'Evidence', 'Attempts', 'Last error', 'Ended', ''), body)));
}

async function lockouts(node, page) {
  const list = await all('/v1/admin/lockouts', 'lockouts');
  if (!page.alive) return;
  const body = el('tbody');
  node.querySelectorAll('.table-wrap').forEach((t) => t.remove());
  if (!list.length) {
    node.status.textContent = 'No failed sign-ins are being counted.';
    return;
  }
  for (const l of list) {
    const who = l.kind === 'user' ? l.username : l.address;
    const lift = el('button', { type: 'button', textContent: 'Lift' });
    lift.setAttribute('aria-label', `Lift the lockout of ${who}`);
    lift.addEventListener('click', guard(async () => {
      await api('/v1/admin/lockouts/lift', { method: 'POST', body: l.kind === 'user' ? { username: l.username } : { address: l.address } });
      node.status.textContent = `Lifted for ${who} (recorded in the ledger).`;
      await lockouts(node, page);
    }, () => node.status));
    body.append(el('tr', {},
      el('td', { textContent: `${who} (${l.kind})` }), el('td', { textContent: String(l.failures) }),
      el('td', { textContent: l.locked ? 'locked' : 'counting' }), el('td', {}, localTime(l.until)),
      el('td', { class: 'actions' }, lift)));
  }
  node.append(el('div', { class: 'table-wrap' }, el('table', {}, thead('Who', 'Failures', 'State', 'Until', ''), body)));
}

async function recent(node, page) {
  const doc = await api('/v1/evidence?limit=5');
  if (!page.alive) return;
  if (!doc.evidence.length) {
    node.status.textContent = 'No evidence yet.';
    return;
  }
  const list = el('ul', { class: 'cards' });
  for (const e of doc.evidence) {
    list.append(el('li', {}, evidenceLink(e), el('span', { class: 'meta' }, localTime(e.created_at), ` · ${bytes(e.size)} · ${e.uploaded_by} · preview ${e.preview}`)));
  }
  node.append(list, el('p', {}, el('a', { href: '#/evidence', textContent: 'Find evidence →' })));
}

async function users(node, page) {
  const list = await all('/v1/admin/users', 'users');
  if (!page.alive) return;
  const body = el('tbody', { id: 'user-rows' });
  for (const u of list) {
    body.append(el('tr', { 'data-user': u.username },
      el('td', { textContent: u.username }), el('td', { textContent: u.role }),
      el('td', { textContent: u.totp_enabled ? 'yes' : 'no' }),
      el('td', { textContent: u.disabled ? 'disabled' : 'active' }), el('td', {}, localTime(u.created_at))));
  }
  node.append(el('div', { class: 'table-wrap' }, el('table', {}, thead('User', 'Role', 'Two-step sign-in', 'State', 'Created'), body)));
}

async function render(view, params, page) {
  view.querySelector('#page-status').textContent = '';
  const parts = [
    [section('attention-previews', 'Evidence without a preview', 'Files the preview job refused or gave up on: their originals are kept; look at each to decide.'), failedPreviews],
    [section('attention-jobs', 'Jobs that gave up', 'Background work out of attempts. Retry queues one again.'), deadJobs],
    [section('attention-lockouts', 'Sign-in lockouts'), lockouts],
    [section('recent', 'Newest evidence'), recent],
    [section('users', 'Accounts'), users],
  ];
  view.append(el('h2', { id: 'admin-title', textContent: 'Overview' }), ...parts.map(([n]) => n));
  await Promise.all(parts.map(([n, fn]) => guard(() => fn(n, page), () => n.status)()));
}

route(/^\/admin$/, { nav: 'admin', roles: ['admin'], title: 'overview', render });
