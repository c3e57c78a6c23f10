// SPDX-License-Identifier: Apache-2.0
// The account page (#/account), for every staff role: who is signed in;
// two-step sign-in (TOTP) enrolment: a fresh secret, its QR code drawn
// from POST /v1/qr (an SVG of the server's modules: no image from
// elsewhere, no secret in a URL) and the secret as text, then a code from
// the app to confirm; API tokens for scripts (create: shown once; list;
// revoke); and signing out.
import * as store from './store.js';
import { api, all } from './api.js';
import { el, field, form, guard, localTime, copyButton, thead } from './ui.js';
import { route } from './router.js';

const SVG = 'http://www.w3.org/2000/svg';

// The QR code of text as an SVG: one path of dark modules on white, with
// the quiet zone the server says.
export async function qrCode(text, label) {
  const qr = await api('/v1/qr', { method: 'POST', body: { text } });
  const q = qr.quiet_zone, n = qr.size + 2 * q;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${n} ${n}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('class', 'qr');
  svg.setAttribute('shape-rendering', 'crispEdges');
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', String(n));
  bg.setAttribute('height', String(n));
  bg.setAttribute('fill', '#fff');
  let d = '';
  qr.rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) if (row[x] === '1') d += `M${x + q} ${y + q}h1v1h-1z`;
  });
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000');
  svg.append(bg, path);
  return svg;
}

function totpSection(page) {
  const node = el('section', { 'aria-labelledby': 'totp-title', id: 'totp' },
    el('h3', { id: 'totp-title', textContent: 'Two-step sign-in' }));
  const body = el('div');
  node.append(body);

  function show() {
    const me = store.get().me;
    if (me.totp_enabled) {
      body.replaceChildren(el('p', { id: 'totp-state', class: 'state-done', textContent: 'On: signing in asks for the 6-digit code your authenticator app shows.' }));
      return;
    }
    const start = el('button', { type: 'button', class: 'primary', id: 'totp-start', textContent: 'Set up two-step sign-in' });
    const err = el('p', { class: 'error', role: 'alert' });
    body.replaceChildren(
      el('p', { id: 'totp-state', textContent: 'Off: signing in asks only for your password. With two-step sign-in it also asks for a code from an authenticator app on your phone.' }),
      start, err);
    start.addEventListener('click', guard(async () => {
      start.disabled = true;
      try {
        await enrol();
      } finally {
        start.disabled = false;
      }
    }, () => err));
  }

  async function enrol() {
    const t = await api('/v1/me/totp', { method: 'POST' });
    const svg = await qrCode(t.otpauth_uri, 'QR code of your two-step sign-in secret: scan it with your authenticator app');
    if (!page.alive) return;
    const grouped = t.secret.replace(/(.{4})(?=.)/g, '$1 ');
    const code = el('input', { name: 'code', inputMode: 'numeric', autocomplete: 'one-time-code', maxLength: 6, pattern: '[0-9]{6}' });
    const confirm = form({ id: 'totp-confirm', 'aria-label': 'Confirm two-step sign-in' }, [
      field('Code from the app', code, '(6 digits)'),
      el('button', { type: 'submit', textContent: 'Turn on' }),
    ], async () => {
      const v = code.value.trim();
      if (!/^\d{6}$/.test(v)) throw new Error('Enter the 6 digits the app shows now.');
      await api('/v1/me/totp/confirm', { method: 'POST', body: { code: v } });
      store.set({ me: Object.assign({}, store.get().me, { totp_enabled: true }) });
      show();
      const state = document.getElementById('totp-state');
      state.setAttribute('role', 'status');
      state.textContent = 'Two-step sign-in is on. From now on, signing in asks for the code your app shows.';
    });
    body.replaceChildren(
      el('ol', { class: 'steps' },
        el('li', {}, 'Scan this code with an authenticator app (or type the secret below into it):'),
        el('li', {}, 'Enter the 6-digit code it shows, to prove it works.')),
      el('div', { class: 'qr-wrap' }, svg),
      el('p', {}, el('span', { textContent: 'Secret: ' }),
        el('code', { id: 'totp-secret', class: 'secret', textContent: grouped }),
        copyButton('Copy', t.secret, 'Copy the secret')),
      el('p', { class: 'hint', textContent: 'Keep the secret to yourself: whoever has it can make your codes. Until you turn it on, signing in does not ask for a code.' }),
      confirm);
    code.focus();
  }
  show();
  return node;
}

function tokensSection(page) {
  const status = el('p', { class: 'status', role: 'status' });
  const rows = el('tbody', { id: 'token-rows' });
  const issued = el('div', { id: 'token-issued' });
  const name = el('input', { name: 'name', maxLength: 100, autocomplete: 'off', required: true });
  const days = el('input', { name: 'ttl_days', type: 'number', min: 1, max: 365, value: 90 });
  const create = form({ id: 'token-form', 'aria-label': 'New API token' }, [
    field('Name', name, '(what it is for, e.g. "dock sync script")'),
    field('Valid for', days, '(days, 1 to 365)'),
    el('button', { type: 'submit', textContent: 'Create token' }),
  ], async () => {
    const n = name.value.trim();
    if (!n) throw new Error('Give the token a name.');
    const d = Number(days.value);
    if (!Number.isInteger(d) || d < 1 || d > 365) throw new Error('Valid for: a whole number of days from 1 to 365.');
    const t = await api('/v1/me/tokens', { method: 'POST', body: { name: n, ttl_days: d } });
    name.value = '';
    issued.replaceChildren(el('section', { class: 'issued', 'aria-labelledby': 'token-issued-title' },
      el('h4', { id: 'token-issued-title', textContent: `Token "${t.name}" — copy it now: it is not shown again` }),
      el('p', {}, el('code', { id: 'token-value', class: 'secret', textContent: t.token }), copyButton('Copy', t.token, 'Copy the token')),
      el('p', { class: 'hint' }, 'Valid until ', localTime(t.expires_at), '. Scripts send it as "Authorization: Bearer …".')));
    await load();
  });

  async function load() {
    const list = await all('/v1/me/tokens', 'tokens');
    if (!page.alive) return;
    rows.replaceChildren();
    for (const t of list) {
      const revoke = el('button', { type: 'button', class: 'danger', textContent: 'Revoke' });
      revoke.setAttribute('aria-label', `Revoke the token ${t.name}`);
      revoke.addEventListener('click', guard(async () => {
        if (!window.confirm(`Revoke the token "${t.name}"? Scripts using it stop working at once.`)) return;
        await api(`/v1/me/tokens/${t.id}`, { method: 'DELETE' });
        await load();
        status.textContent = `Token "${t.name}" revoked.`;
      }, () => status));
      rows.append(el('tr', { 'data-token': String(t.id) },
        el('td', { textContent: t.name }), el('td', {}, localTime(t.created_at)),
        el('td', {}, localTime(t.expires_at)), el('td', { class: 'actions' }, revoke)));
    }
    if (!list.length) rows.append(el('tr', {}, el('td', { colSpan: 4, class: 'hint', textContent: 'No API tokens.' })));
  }

  const node = el('section', { 'aria-labelledby': 'tokens-title', id: 'tokens' },
    el('h3', { id: 'tokens-title', textContent: 'API tokens' }),
    el('p', { class: 'hint', textContent: 'For scripts that use the API as you. A token can do what you can, except make tokens or change two-step sign-in.' }),
    status,
    el('div', { class: 'table-wrap' }, el('table', {},
      thead('Name', 'Created', 'Expires', ''), rows)),
    el('details', { class: 'panel' }, el('summary', { textContent: 'New API token' }), create),
    issued);
  node.load = guard(load, () => status);
  return node;
}

async function render(view, params, page) {
  const status = view.querySelector('#page-status');
  const me = await api('/v1/me'); // afresh: TOTP may have changed elsewhere
  if (!page.alive) return;
  store.set({ me: Object.assign({}, store.get().me, me), csrf: me.csrf_token || store.get().csrf });
  status.textContent = '';
  const out = el('button', { type: 'button', id: 'account-logout', textContent: 'Sign out' });
  out.addEventListener('click', () => document.dispatchEvent(new Event('dems:logout')));
  const tokens = tokensSection(page);
  view.append(
    el('section', { 'aria-labelledby': 'account-title' },
      el('h2', { id: 'account-title', textContent: 'Your account' }),
      el('dl', {},
        el('dt', { textContent: 'Username' }), el('dd', { textContent: me.username }),
        el('dt', { textContent: 'Role' }), el('dd', { textContent: me.role }),
        el('dt', { textContent: 'Account created' }), el('dd', {}, localTime(me.created_at))),
      el('p', {}, out, el('span', { class: 'hint', textContent: ' Signs this browser out: the session ends on the server too.' }))),
    totpSection(page), tokens);
  await tokens.load();
}

route(/^\/account$/, { nav: 'account', title: 'account', render });
