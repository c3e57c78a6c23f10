// SPDX-License-Identifier: Apache-2.0
// The staff application's shell, loaded by index.html as an ES module: it
// imports each view module (each registers its pages with the router),
// restores the session on load (the HttpOnly session cookie survives a
// reload: GET /v1/me tells who is signed in and gives the CSRF token back),
// signs in and out, draws the navigation each role has, and handles an
// expired session: the sign-in form comes up over the page as it is, and
// once the same user has signed in again the page carries on (api.js
// repeats the call that met the 401); another user starts afresh.
//
// Modules: api.js (the API client), store.js (the small store), ui.js
// (DOM and format helpers), router.js (pages by URL fragment); one module
// per view: find.js (#/evidence), evidence.js (#/evidence/ID), upload.js
// (#/upload, with uploads.js, meta.js, hash.js and the vendored
// upload-kit.js), account.js (#/account), admin.js (#/admin), cases.js,
// shares.js (with bundles.js, disclosures.js), face.js (#/cases/ID/face,
// face search), and player.js, the preview player several views use. docs/architecture.md, "The staff web
// application", says where a new page goes.
import * as store from './store.js';
import { api, onSessionExpired, ApiError } from './api.js';
import { $, el } from './ui.js';
import { navigate, leave } from './router.js';
import './find.js';
import './evidence.js';
import './upload.js';
import './account.js';
import './admin.js';
import './cases.js';
import './shares.js';
import './face.js';

let reauth = null; // {username, resolve, promise} while a lapsed session waits for its user

const NAV = [
  ['admin', '/admin', 'Overview', ['admin']],
  ['evidence', '/evidence', 'Evidence', ['admin', 'officer']],
  ['upload', '/upload', 'Upload', ['admin', 'officer']],
  ['cases', '/cases', 'Cases', ['admin', 'officer']],
  ['shared', '/shared', 'Shared with me', ['prosecutor']],
  ['account', '/account', 'Account', ['admin', 'officer', 'prosecutor']],
];

function showNav(me) {
  const nav = $('nav');
  nav.replaceChildren();
  for (const [name, path, text, roles] of NAV) {
    if (roles.includes(me.role)) nav.append(el('a', { href: '#' + path, 'data-nav': name, textContent: text }));
  }
  nav.hidden = false;
}

function showSignIn(message, username) {
  $('boot').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message || '';
  if (username) {
    $('username').value = username;
    $('password').focus();
  } else {
    $('username').focus();
  }
}

function signedIn(me) {
  store.set({ me, csrf: me.csrf_token || store.get().csrf });
  $('boot').hidden = true;
  $('login-view').hidden = true;
  $('login-title').textContent = 'Sign in';
  $('who').textContent = `${me.username} (${me.role})`;
  $('logout').hidden = false;
  showNav(me);
}

function signedOut(message) {
  leave();
  store.set({ me: null, csrf: null });
  if (reauth) {
    reauth.resolve(false);
    reauth = null;
  }
  const view = $('view');
  view.replaceChildren();
  view.hidden = true;
  view.inert = false;
  $('nav').replaceChildren();
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login-title').textContent = 'Sign in';
  showSignIn(message);
}

// The session lapsed (401 unauthorized) while signed in: keep the page,
// ask for the password again, resolve true when the same user is back.
function sessionExpired() {
  if (reauth) return reauth.promise;
  const me = store.get().me;
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  reauth = { username: me.username, resolve, promise };
  store.set({ csrf: null });
  const view = $('view');
  view.inert = true;
  view.hidden = true;
  $('nav').hidden = true;
  $('login-title').textContent = 'Your session has ended';
  showSignIn('Sign in again to carry on where you were.', me.username);
  return promise;
}

async function login(ev) {
  ev.preventDefault();
  const err = $('login-error');
  err.textContent = '';
  const username = $('username').value.trim(), password = $('password').value;
  const totp = $('totp').value.trim();
  if (!username || !password) {
    err.textContent = 'Enter your username and password.';
    ($('username').value.trim() ? $('password') : $('username')).focus();
    return;
  }
  if (totp && !/^\d{6}$/.test(totp)) {
    err.textContent = 'The one-time code is the 6 digits your authenticator app shows.';
    $('totp').focus();
    return;
  }
  const body = { username, password, cookie: true };
  if (totp) body.totp = totp;
  $('login-submit').disabled = true;
  try {
    store.set({ csrf: null });
    const doc = await api('/v1/auth/login', { method: 'POST', body });
    store.set({ csrf: doc.csrf_token });
    const me = await api('/v1/me');
    $('password').value = '';
    $('totp').value = '';
    if (reauth) {
      const same = reauth.username === me.username;
      const r = reauth;
      reauth = null;
      if (same) {
        // The page as it was: nav, view and their state untouched.
        store.set({ me, csrf: me.csrf_token || store.get().csrf });
        $('login-view').hidden = true;
        $('login-title').textContent = 'Sign in';
        $('nav').hidden = false;
        const view = $('view');
        view.inert = false;
        view.hidden = false;
        r.resolve(true); // the calls that met the 401 are made again
        return;
      }
      leave(); // another user: nothing of the page is theirs
      r.resolve(false);
    }
    signedIn(me);
    navigate();
  } catch (e) {
    if (e.code === 'totp_required') {
      err.textContent = 'This account needs its one-time code: enter the 6 digits your authenticator app shows.';
      $('totp').focus();
    } else {
      err.textContent = e instanceof ApiError ? e.message : String(e);
    }
  } finally {
    $('login-submit').disabled = false;
  }
}

async function logout() {
  $('logout').disabled = true;
  try {
    await api('/v1/auth/logout', { method: 'POST', expiry: false }); // also clears the cookie
    signedOut('Signed out.');
  } catch (e) {
    // Already ended on the server (401): signed out all the same.
    if (e.status === 401) {
      signedOut('Signed out.');
    } else {
      const at = $('page-status');
      if (at) at.textContent = `Signing out failed: ${e.message}`;
    }
  } finally {
    $('logout').disabled = false;
  }
}

// On load: the cookie may still hold a session (a reload).
async function boot() {
  try {
    const me = await api('/v1/me');
    signedIn(me);
    navigate();
  } catch (e) {
    if (e.status === 401) showSignIn('');
    else showSignIn(`The server did not answer as expected: ${e.message}`);
  }
}

onSessionExpired(sessionExpired);
// The account page's "Sign out" (views do not import the shell).
document.addEventListener('dems:logout', () => logout());
$('login-form').addEventListener('submit', login);
$('logout').addEventListener('click', logout);
window.addEventListener('hashchange', () => {
  if (!reauth) navigate();
});
boot();
