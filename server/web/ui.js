// SPDX-License-Identifier: Apache-2.0
// DOM and formatting helpers every view shares: el() to build elements
// (never innerHTML: every text is textContent), labelled fields, forms that
// show their own failure, guard() for event handlers, times, sizes,
// durations, and a copy button. No state.
import { problem } from './api.js';

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
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
}

// Runs an event handler, showing what went wrong instead of throwing.
// where() gives the element that shows the message (default: the page's
// status line).
export function guard(fn, where) {
  return async (ev) => {
    try {
      return await fn(ev);
    } catch (e) {
      const at = where ? where() : $('page-status');
      if (at) at.textContent = problem(e);
      else console.warn(problem(e)); // eslint-disable-line no-console
      return undefined;
    }
  };
}

// A labelled form field: the label, an optional hint, the input and a
// line for its own error (aria-describedby ties both to the input).
let fieldSeq = 0;
export function field(label, input, hint) {
  if (!input.id) input.id = `f${++fieldSeq}`;
  const l = el('label', { for: input.id }, label);
  const described = [];
  if (hint) {
    const h = el('span', { class: 'hint', id: `${input.id}-hint`, textContent: hint });
    l.append(' ', h);
    described.push(h.id);
  }
  const err = el('span', { class: 'field-error', id: `${input.id}-error` });
  described.push(err.id);
  input.setAttribute('aria-describedby', described.join(' '));
  return el('div', { class: 'field' }, l, input, err);
}

// Marks input invalid with message (or valid with null), next to it.
export function invalid(input, message) {
  const err = document.getElementById(`${input.id}-error`);
  if (err) err.textContent = message || '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  return !message;
}

// A form whose submit runs fn(form) and shows a failure in its own error
// line (role=alert) rather than the page's.
export function form(attrs, children, fn) {
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

// "2026-11-24 10:00:00 UTC" (times the server gives, as the record has them).
export const when = (iso) => (iso ? iso.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC') : '');

const localFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  timeZoneName: 'short',
});

// A <time> in the viewer's time zone, the UTC time on hover (title).
export function localTime(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return document.createTextNode(iso || '');
  return el('time', { dateTime: iso, title: when(d.toISOString().replace(/\.000Z$/, 'Z')), textContent: localFormat.format(d) });
}

export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// 0:24, 12:05, 1:02:03 (a player's clock).
export function clock(t) {
  const s = Math.floor(t % 60), m = Math.floor(t / 60) % 60, h = Math.floor(t / 3600);
  const two = (x) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

// 24.0 s, 3 min 05 s, 1 h 02 min 03 s.
export function duration(t) {
  if (!(t >= 0)) return '';
  if (t < 60) return `${t.toFixed(1)} s`;
  const s = Math.round(t), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  const two = (x) => String(x).padStart(2, '0');
  return h > 0 ? `${h} h ${two(m)} min ${two(r)} s` : `${m} min ${two(r)} s`;
}

// An <input type=datetime-local> value (local time) as RFC 3339 UTC.
export function isoFromLocal(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(/\.\d+Z$/, 'Z');
}

// An RFC 3339 time as a datetime-local value (local time, seconds).
export function localFromIso(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

// A datetime-local value for now + days (the default expiry of forms).
export function localIn(days) {
  const d = new Date(Date.now() + days * 86400_000);
  d.setSeconds(0, 0);
  return localFromIso(d.toISOString());
}

// Puts text on the clipboard (falling back to a selection and copy where
// the Clipboard API is refused).
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch (e) { /* refused: the old way below */ }
  }
  const t = el('textarea', { value: text, readOnly: true, class: 'offscreen' });
  document.body.append(t);
  t.select();
  const ok = document.execCommand('copy');
  t.remove();
  if (!ok) throw new Error('The browser refused to copy; select the text and copy it by hand.');
}

// A button that copies text() and says so in a live region beside it.
export function copyButton(label, text, name) {
  const said = el('span', { class: 'hint', role: 'status' });
  const b = el('button', { type: 'button', class: 'copy', textContent: label });
  if (name) b.setAttribute('aria-label', name);
  b.addEventListener('click', guard(async () => {
    said.textContent = '';
    await copyText(typeof text === 'function' ? text() : text);
    said.textContent = 'Copied.';
  }, () => said));
  return el('span', { class: 'copy-wrap' }, b, said);
}

// A table's head row; an empty name is the actions column, named for
// screen readers only.
export function thead(...names) {
  return el('thead', {}, el('tr', {}, ...names.map((t) => (t
    ? el('th', { scope: 'col', textContent: t })
    : el('th', { scope: 'col' }, el('span', { class: 'offscreen', textContent: 'Actions' }))))));
}
