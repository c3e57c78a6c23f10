// SPDX-License-Identifier: Apache-2.0
// The dems staff application's shell: the API client, small DOM helpers,
// sign-in state and a hash router (#/evidence, #/cases/ID, #/shared, ...).
// Each area of the application is its own file (player.js, evidence.js,
// cases.js, shares.js, bundles.js, disclosures.js), loaded after this one
// with <script defer>, which registers its pages with dems.route(). No
// framework and nothing from other origins (the CSP allows 'self' only).
//
// API calls carry the session token in an Authorization header; the token
// is kept in memory only (a reload signs out). Media elements (video,
// poster, sprite, img) and download links cannot send headers, so login
// also asks for the HttpOnly session cookie, which the server accepts for
// GET and HEAD only. The defence disclosure page (disclosure.html) loads
// this file for its helpers only: without #login-form the shell stays idle.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let token = null;
  let me = null; // GET /v1/me of the signed-in user
  const routes = []; // {pattern, nav, roles, render, update}
  let current = null; // {route, page} on show

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = 'GET', body } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let r;
    try {
      r = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'The server cannot be reached; check the connection and try again.');
    }
    const type = r.headers.get('Content-Type') || '';
    let doc = null;
    if (type.startsWith('application/json') || type.startsWith('application/problem+json')) {
      doc = await r.json();
    }
    else if (r.status !== 204) doc = await r.text();
    if (!r.ok) {
      // Errors are RFC 9457 problem details with a stable "code" member.
      const code = doc && doc.code ? doc.code : 'http_' + r.status;
      const message = doc && doc.detail ? doc.detail : `HTTP ${r.status}`;
      throw new ApiError(r.status, code, message);
    }
    return doc;
  }

  // What a failure means to a person: the server's detail, or for a few
  // codes a sentence that says what to do.
  function problem(e) {
    if (!(e instanceof ApiError)) return e && e.message ? e.message : String(e);
    switch (e.code) {
      case 'share_ended': return 'This share has ended: it was revoked or it expired.';
      case 'forbidden': return `Not allowed: ${e.message}`;
      case 'too_many_refusals': return 'Too many refused requests; wait a little and try again.';
      default: return e.message;
    }
  }

  // Runs an event handler, showing what went wrong instead of throwing.
  // where() gives the element that shows the message (default: the page's
  // status line).
  function guard(fn, where) {
    return async (ev) => {
      try {
        await fn(ev);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401 && token) {
          signedOut('Your session has ended; please sign in again.');
          return;
        }
        const at = where ? where() : $('page-status');
        if (at) at.textContent = problem(e);
        else console.warn(problem(e)); // eslint-disable-line no-console
      }
    };
  }

  const el = (tag, attrs = {}, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null) continue;
      if (k === 'class') n.className = v;
      else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'for' || k === 'role') n.setAttribute(k, v);
      else n[k] = v;
    }
    for (const c of children) {
      if (c !== null && c !== undefined && c !== false) n.append(c);
    }
    return n;
  };

  // A labelled form field: {label, input} where input is an element.
  let fieldSeq = 0;
  function field(label, input, hint) {
    if (!input.id) input.id = `f${++fieldSeq}`;
    const l = el('label', { for: input.id }, label);
    if (hint) l.append(' ', el('span', { class: 'hint', textContent: hint }));
    return el('div', { class: 'field' }, l, input);
  }

  // A form whose submit runs fn(form) and shows a failure in its own
  // error line (role=alert) rather than the page's.
  function form(attrs, children, fn) {
    const err = el('p', { class: 'error', role: 'alert' });
    const submit = children.find((c) => c instanceof HTMLButtonElement && c.type === 'submit');
    const f = el('form', Object.assign({ noValidate: true }, attrs), ...children, err);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      if (submit) submit.disabled = true;
      try {
        await guard(async () => {
          await fn(f);
        }, () => err)();
      } finally {
        if (submit) submit.disabled = false;
      }
    });
    return f;
  }

  const when = (iso) => (iso ? iso.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC') : '');

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
  }

  function clock(t) {
    const s = Math.floor(t % 60), m = Math.floor(t / 60) % 60, h = Math.floor(t / 3600);
    const two = (x) => String(x).padStart(2, '0');
    return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
  }

  // An <input type=datetime-local> value (local time) as RFC 3339 UTC.
  function isoFromLocal(value) {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d+Z$/, 'Z');
  }

  // A datetime-local value for now + days (the default expiry of forms).
  function localIn(days) {
    const d = new Date(Date.now() + days * 86400_000);
    d.setSeconds(0, 0);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
  }

  // Fetches every page of a list (bounded), for the few small lists a page
  // shows whole (members, shares, bundles).
  async function all(path, key, max = 1000) {
    const out = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: '200' });
      if (cursor) q.set('cursor', cursor);
      const doc = await api(`${path}${path.includes('?') ? '&' : '?'}${q}`);
      out.push(...doc[key]);
      cursor = doc.next_cursor;
    } while (cursor && out.length < max);
    return out;
  }

  // ---- the router ----

  // Registers a page: pattern matches the hash without its '#' ('/cases/12');
  // render(view, params, page) builds it into view; update(params, page),
  // when given, is called instead for another hash of the same route.
  // nav names the navigation link to mark; roles limits who may open it.
  function route(pattern, opts) {
    routes.push(Object.assign({ pattern }, opts));
  }

  const home = () => (me && me.role === 'prosecutor' ? '/shared' : '/evidence');

  function leave() {
    if (!current) return;
    current.page.alive = false;
    for (const fn of current.page.cleanups) {
      try {
        fn();
      } catch (e) { /* leaving must not fail */ }
    }
    current = null;
  }

  function navigate() {
    if (!token || !me) return;
    if (!location.hash) history.replaceState(null, '', '#' + home()); // where each role lands
    const path = location.hash.replace(/^#/, '');
    let r = null, m = null;
    for (const x of routes) {
      m = x.pattern.exec(path);
      if (m && (!x.roles || x.roles.includes(me.role))) {
        r = x;
        break;
      }
    }
    if (!r) {
      history.replaceState(null, '', '#' + home());
      if (path !== home()) navigate();
      return;
    }
    const params = m.slice(1).map((v) => (v === undefined ? undefined : decodeURIComponent(v)));
    if (current && current.route === r && r.update) {
      guard(() => r.update(params, current.page))();
      return;
    }
    leave();
    const page = { alive: true, cleanups: [], onLeave(fn) { this.cleanups.push(fn); } };
    current = { route: r, page };
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const view = $('view');
    view.replaceChildren(el('p', { id: 'page-status', role: 'status' }));
    view.hidden = false;
    guard(() => r.render(view, params, page))();
  }

  const go = (path) => {
    if (location.hash === '#' + path) navigate();
    else location.hash = path;
  };

  // ---- signing in and out ----

  function showNav() {
    const nav = $('nav');
    nav.replaceChildren();
    const links = [
      ['evidence', '/evidence', 'Evidence', ['admin', 'officer']],
      ['cases', '/cases', 'Cases', ['admin', 'officer']],
      ['shared', '/shared', 'Shared with me', ['prosecutor']],
    ];
    for (const [name, path, text, roles] of links) {
      if (roles.includes(me.role)) nav.append(el('a', { href: '#' + path, 'data-nav': name, textContent: text }));
    }
    nav.hidden = false;
  }

  async function login(ev) {
    ev.preventDefault();
    const err = $('login-error');
    err.textContent = '';
    const username = $('username').value.trim(), password = $('password').value;
    const totp = $('totp').value.trim();
    if (!username || !password) {
      err.textContent = 'Enter your username and password.';
      return;
    }
    const body = { username, password, cookie: true };
    if (totp) body.totp = totp;
    $('login-submit').disabled = true;
    try {
      const doc = await api('/v1/auth/login', { method: 'POST', body });
      token = doc.token;
      $('password').value = '';
      $('totp').value = '';
      me = await api('/v1/me');
      $('who').textContent = `${me.username} (${me.role})`;
      $('login-view').hidden = true;
      $('logout').hidden = false;
      showNav();
      navigate();
    } catch (e) {
      token = null;
      me = null;
      err.textContent = e.code === 'totp_required' ? 'This account needs its one-time code.' : e.message;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  function signedOut(message) {
    leave();
    token = null;
    me = null;
    $('view').replaceChildren();
    $('view').hidden = true;
    $('nav').replaceChildren();
    $('nav').hidden = true;
    $('logout').hidden = true;
    $('who').textContent = '';
    $('login-view').hidden = false;
    $('login-error').textContent = message || '';
    $('username').focus();
  }

  async function logout() {
    try {
      await api('/v1/auth/logout', { method: 'POST' }); // also clears the cookie
    } finally {
      signedOut('Signed out.');
    }
  }

  window.dems = {
    api, ApiError, problem, guard, el, field, form, when, bytes, clock, isoFromLocal, localIn, all,
    route, go,
    me: () => me,
    $,
  };

  document.addEventListener('DOMContentLoaded', () => {
    if (!$('login-form')) return; // not the staff page (the disclosure page)
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', guard(logout));
    window.addEventListener('hashchange', navigate);
    $('username').focus();
  });
})();
