// SPDX-License-Identifier: Apache-2.0
// The fragment router: #/path?query. Each view module registers its pages
// with route(pattern, {nav, roles, render, update}); the shell (app.js)
// calls navigate() on every hashchange once someone is signed in. A page is
// {alive, query, onLeave(fn)}: alive turns false when it is left (late
// answers then change nothing), onLeave's functions run then (timers,
// players, subscriptions). render(view, params, page) builds the page into
// view; update(params, page), when given, is called instead for another
// hash of the same route (the find view's query, the selected item), so a
// page keeps its state while its address changes.
import * as store from './store.js';
import { $, el, guard } from './ui.js';

const routes = [];
let current = null; // {route, page}

export function route(pattern, opts) {
  routes.push(Object.assign({ pattern }, opts));
}

// Where each role lands: a prosecutor on what is shared with them, an
// administrator on the overview, an officer on the evidence they can see.
export function home(me = store.get().me) {
  if (!me) return '/';
  if (me.role === 'prosecutor') return '/shared';
  if (me.role === 'admin') return '/admin';
  return '/evidence';
}

function parse() {
  const raw = location.hash.replace(/^#/, '');
  const i = raw.indexOf('?');
  return { path: i < 0 ? raw : raw.slice(0, i), query: new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)) };
}

export function leave() {
  if (!current) return;
  current.page.alive = false;
  for (const fn of current.page.cleanups) {
    try {
      fn();
    } catch (e) { /* leaving must not fail */ }
  }
  current = null;
}

// Gives keyboard and screen-reader users the new page: its first heading.
function focusHeading(view) {
  const h = view.querySelector('h2');
  if (!h) return;
  if (!h.hasAttribute('tabindex')) h.tabIndex = -1;
  const a = document.activeElement;
  if (!a || a === document.body || !document.contains(a) || a.closest('#nav')) h.focus({ preventScroll: true });
}

export function navigate() {
  const me = store.get().me;
  if (!me) return;
  if (!location.hash || location.hash === '#' || location.hash === '#/') history.replaceState(null, '', '#' + home(me));
  const { path, query } = parse();
  let r = null, m = null;
  for (const x of routes) {
    m = x.pattern.exec(path);
    if (m && (!x.roles || x.roles.includes(me.role))) {
      r = x;
      break;
    }
  }
  if (!r) {
    history.replaceState(null, '', '#' + home(me));
    if (path !== home(me)) navigate();
    return;
  }
  const params = m.slice(1).map((v) => (v === undefined ? undefined : decodeURIComponent(v)));
  if (current && current.route === r && r.update) {
    current.page.query = query;
    guard(() => r.update(params, current.page))();
    return;
  }
  leave();
  const page = { alive: true, query, cleanups: [], onLeave(fn) { this.cleanups.push(fn); } };
  current = { route: r, page };
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = $('view');
  view.replaceChildren(el('p', { id: 'page-status', role: 'status' }));
  view.hidden = false;
  if (r.title) document.title = `dems · ${r.title}`;
  const done = guard(() => r.render(view, params, page))();
  // Focus moves once the page has its heading (most add it at once).
  Promise.resolve().then(() => focusHeading(view));
  return done;
}

// Opens path (without '#'); the same path renders the page afresh.
export function go(path) {
  if (location.hash === '#' + path) {
    leave();
    navigate();
  } else {
    location.hash = path;
  }
}

// Replaces the current address's query without opening the page again.
export function replaceQuery(path, query) {
  const q = query.toString();
  history.replaceState(null, '', `#${path}${q ? '?' + q : ''}`);
  if (current) current.page.query = query;
}
