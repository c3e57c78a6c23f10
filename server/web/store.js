// SPDX-License-Identifier: Apache-2.0
// The staff application's one piece of shared mutable state: who is signed
// in (me: GET /v1/me; csrf: the session's CSRF token, sent with every state
// change) and the upload queue (uploads.js), which outlives any one view.
// Views read it with get(), change it with set(patch) and hear of changes
// with subscribe(fn) (it returns the function that stops listening). A view
// keeps everything else it needs in its own closure, dropped when it is left.

const state = {
  me: null, // {id, username, role, totp_enabled, created_at, token_kind, csrf_token}
  csrf: null,
  uploads: [], // upload items (uploads.js)
};
const listeners = new Set();

export function get() {
  return state;
}

export function set(patch) {
  Object.assign(state, patch);
  for (const fn of [...listeners]) {
    try {
      fn(state, patch);
    } catch (e) {
      console.error(e); // eslint-disable-line no-console
    }
  }
}

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
