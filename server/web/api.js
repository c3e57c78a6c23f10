// SPDX-License-Identifier: Apache-2.0
// The one API client of the staff application (and of the disclosure
// page): fetch with JSON in and out, RFC 9457 problem details turned into
// ApiError (status, the stable code, the server's detail as the message),
// and the session: the browser's HttpOnly dems_session cookie authenticates
// every call (so a reload keeps the session), and state changes carry the
// session's CSRF token (X-CSRF-Token, from the login answer or GET /v1/me).
//
// An expired or revoked session (401 unauthorized) on any call made while
// signed in goes to the handler app.js installs (onSessionExpired): it
// shows the sign-in form over the page as it is and resolves true once the
// same user has signed in again, and the call is then made once more — so
// a form, a poller or an upload carries on where it was. A 401 is answered
// before the server does anything, so repeating a POST is safe.
import * as store from './store.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let expiredHandler = null;

// fn() → Promise<boolean>: true when the same user is signed in again.
export function onSessionExpired(fn) {
  expiredHandler = fn;
}

// For callers that make their own requests (tus uploads): what api() does
// on a 401 unauthorized. Resolves true when the call should be made again.
export function sessionExpired() {
  if (!expiredHandler || !store.get().me) return Promise.resolve(false);
  return expiredHandler();
}

export const isExpiry = (e) => e instanceof ApiError && e.status === 401 && e.code === 'unauthorized';

// The headers of a state change by the session cookie.
export function csrfHeaders() {
  const t = store.get().csrf;
  return t ? { 'X-CSRF-Token': t } : {};
}

async function once(path, method, body, extra) {
  const headers = Object.assign({}, extra);
  if (method !== 'GET' && method !== 'HEAD') Object.assign(headers, csrfHeaders());
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
    try {
      doc = await r.json();
    } catch (e) {
      throw new ApiError(r.status, 'bad_answer', `The server's answer could not be read (HTTP ${r.status}).`);
    }
  } else if (r.status !== 204 && method !== 'HEAD') {
    doc = await r.text();
  }
  if (!r.ok) {
    const code = doc && doc.code ? doc.code : `http_${r.status}`;
    const message = doc && doc.detail ? doc.detail : `HTTP ${r.status} ${r.statusText}`.trim();
    const e = new ApiError(r.status, code, message);
    e.retryAfter = Number(r.headers.get('Retry-After')) || null;
    throw e;
  }
  return doc;
}

// expiry: false for a call whose 401 must not ask to sign in again.
export async function api(path, { method = 'GET', body, headers, expiry = true } = {}) {
  try {
    return await once(path, method, body, headers);
  } catch (e) {
    if (!expiry || !isExpiry(e) || !(await sessionExpired())) throw e;
    return once(path, method, body, headers);
  }
}

// What a failure means to a person: the server's detail, or for a few
// codes a sentence that says what to do.
export function problem(e) {
  if (!(e instanceof ApiError)) return e && e.message ? e.message : String(e);
  switch (e.code) {
    case 'share_ended': return 'This share has ended: it was revoked or it expired.';
    case 'forbidden': return `Not allowed: ${e.message}`;
    case 'too_many_refusals': return 'Too many refused requests; wait a little and try again.';
    case 'unauthorized': return 'Your session has ended; sign in again.';
    default: return e.message;
  }
}

// Every page of a list (bounded), for the few small lists a page shows
// whole (members, shares, bundles).
export async function all(path, key, max = 1000) {
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
