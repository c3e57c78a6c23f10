// SPDX-License-Identifier: Apache-2.0
// The dems staff page: sign in, list evidence, play a preview with its
// thumbnail strip. No framework and nothing from other origins (the CSP
// allows 'self' only). API calls carry the session token in an
// Authorization header; the token is kept in memory only. Media elements
// (video, poster, sprite) cannot send headers, so login also asks for the
// HttpOnly session cookie, which the server accepts for GET and HEAD only.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  let token = null;
  let nextCursor = null;
  let selected = null; // the evidence id on show
  let cues = []; // thumbnail cues of the evidence on show

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
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
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

  // Runs an event handler, showing what went wrong instead of throwing.
  function guard(fn, where) {
    return async (ev) => {
      try {
        await fn(ev);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401 && token) {
          signedOut('Your session has ended; please sign in again.');
          return;
        }
        (where ? where() : $('list-status')).textContent = e.message || String(e);
      }
    };
  }

  const el = (tag, attrs = {}, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') n.className = v;
      else if (k.startsWith('data-')) n.setAttribute(k, v);
      else n[k] = v;
    }
    for (const c of children) n.append(c);
    return n;
  };

  const when = (iso) => (iso ? iso.replace('T', ' ').replace('Z', ' UTC') : '');

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

  // What the preview job's state means to a person.
  function previewText(item) {
    if (item.has_preview) return 'preview ready';
    switch (item.preview_job) {
      case 'queued': return 'preview queued';
      case 'running': return 'preview being made';
      case 'failed': return 'preview failed; it will be retried';
      case 'dead': return 'preview failed';
      case 'done': return 'no preview (nothing playable)';
      default: return 'no preview';
    }
  }

  // ---- signing in and out ----

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
      const me = await api('/v1/me');
      $('who').textContent = `${me.username} (${me.role})`;
      $('login-view').hidden = true;
      $('list-view').hidden = false;
      $('logout').hidden = false;
      await loadList(false);
      const first = $('evidence-list').querySelector('button');
      (first || $('refresh')).focus();
    } catch (e) {
      token = null;
      err.textContent = e.code === 'totp_required' ? 'This account needs its one-time code.' : e.message;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  function signedOut(message) {
    token = null;
    selected = null;
    resetPlayer();
    $('player-view').hidden = true;
    $('list-view').hidden = true;
    $('logout').hidden = true;
    $('who').textContent = '';
    $('evidence-list').replaceChildren();
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

  // ---- the list ----

  function listItem(item) {
    const state = item.has_preview ? 'done' : item.preview_job || 'none';
    const b = el('button', { type: 'button', 'data-id': item.id },
      el('span', { class: 'name', textContent: item.filename || item.id.slice(0, 16) + '…' }),
      el('span', { class: 'meta', textContent: `${when(item.created_at)} · ${bytes(item.size)} · ${item.uploaded_by}` }),
      el('span', { class: `meta state-${state}`, textContent: previewText(item) }));
    if (item.id === selected) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', guard(() => show(item.id), () => $('player-status')));
    return el('li', {}, b);
  }

  async function loadList(more) {
    const q = new URLSearchParams({ limit: '50' });
    if (more && nextCursor) q.set('cursor', nextCursor);
    $('list-status').textContent = 'Loading…';
    const doc = await api(`/v1/evidence?${q}`);
    const list = $('evidence-list');
    if (!more) list.replaceChildren();
    for (const item of doc.evidence) list.append(listItem(item));
    nextCursor = doc.next_cursor;
    $('older').hidden = !nextCursor;
    $('list-status').textContent = list.children.length ? '' : 'No evidence yet.';
  }

  // ---- the player ----

  function resetPlayer() {
    const v = $('video');
    v.pause();
    v.removeAttribute('src');
    v.removeAttribute('poster');
    v.load();
    v.hidden = true;
    cues = [];
    $('strip').replaceChildren();
    $('strip').hidden = true;
    $('details').replaceChildren();
  }

  function detail(name, value) {
    $('details').append(el('dt', { textContent: name }), el('dd', { textContent: value }));
  }

  async function show(id) {
    selected = id;
    for (const b of $('evidence-list').querySelectorAll('button')) {
      if (b.dataset.id === id) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
    resetPlayer();
    $('player-view').hidden = false;
    $('player-status').textContent = 'Loading…';
    const ev = await api(`/v1/evidence/${id}`);
    if (selected !== id) return; // another was chosen meanwhile
    $('player-title').textContent = ev.filename || id;
    detail('SHA-256', ev.sha256);
    detail('Received', when(ev.created_at));
    detail('Uploaded by', ev.uploaded_by);
    detail('Size', bytes(ev.size));
    if (ev.content_type) detail('Type', ev.content_type);
    const probe = (ev.media && ev.media.probe) || ev.media || {};
    if (probe.duration > 0) detail('Duration', clock(probe.duration));
    const vs = (probe.streams || []).find((s) => s.type === 'video' && !s.attached_pic);
    if (vs && vs.width) detail('Video', `${vs.codec || ''} ${vs.width}×${vs.height}`.trim());
    if (probe.creation_time) detail('Recorded', when(probe.creation_time));
    const kinds = new Set((ev.previews || []).map((p) => p.kind));
    const base = `/v1/evidence/${id}`;
    if (!kinds.has('proxy')) {
      const why = ev.media && ev.media.preview_error ? `: ${ev.media.preview_error.message}` : '';
      $('player-status').textContent = `${previewText({ has_preview: false, preview_job: ev.preview_job })}${why}.`;
      if (kinds.has('poster')) {
        const v = $('video');
        v.poster = `${base}/poster`;
        v.hidden = false;
      }
      return;
    }
    const v = $('video');
    if (kinds.has('poster')) v.poster = `${base}/poster`;
    v.src = `${base}/preview`;
    v.hidden = false;
    $('player-status').textContent = '';
    if (kinds.has('sprite_vtt') && kinds.has('sprite')) await loadStrip(id, `${base}/thumbnails`);
  }

  // ---- the thumbnail strip (WebVTT cues naming sprite.jpg#xywh=x,y,w,h) ----

  function seconds(s) {
    const parts = s.trim().split(':').map(Number);
    if (parts.length < 2 || parts.length > 3 || parts.some((x) => !Number.isFinite(x))) return NaN;
    return parts.reduce((acc, x) => acc * 60 + x, 0);
  }

  function parseVtt(text, url) {
    const blocks = text.replace(/\r\n?/g, '\n').split(/\n{2,}/);
    if (!/^\uFEFF?WEBVTT(?:[ \t]|$)/.test(blocks[0] || '')) throw new Error('the thumbnail index is not WebVTT');
    const out = [];
    for (const block of blocks.slice(1)) {
      const lines = block.split('\n');
      const i = lines.findIndex((l) => l.includes('-->'));
      if (i < 0 || i + 1 >= lines.length) continue; // a NOTE, STYLE or empty cue
      const [a, rest] = lines[i].split('-->');
      const start = seconds(a), end = seconds(rest.trim().split(/\s+/)[0]);
      const ref = new URL(lines[i + 1].trim(), url);
      const m = /^#xywh=(?:pixel:)?(\d+),(\d+),(\d+),(\d+)$/.exec(ref.hash);
      if (!m || !Number.isFinite(start) || ref.origin !== location.origin) continue;
      ref.hash = '';
      out.push({ start, end, src: ref.pathname + ref.search, x: +m[1], y: +m[2], w: +m[3], h: +m[4] });
    }
    return out;
  }

  async function loadStrip(id, url) {
    const text = await api(url);
    if (selected !== id) return;
    cues = parseVtt(text, new URL(url, location.href));
    const strip = $('strip');
    for (const c of cues) {
      const b = el('button', { type: 'button', title: clock(c.start), 'data-start': String(c.start) });
      b.setAttribute('aria-label', `Seek to ${clock(c.start)}`);
      b.style.width = `${c.w}px`;
      b.style.height = `${c.h}px`;
      b.style.backgroundImage = `url("${c.src}")`;
      b.style.backgroundPosition = `-${c.x}px -${c.y}px`;
      b.addEventListener('click', () => {
        $('video').currentTime = c.start;
      });
      strip.append(b);
    }
    strip.hidden = cues.length === 0;
  }

  // Marks the tile of the current time.
  function onTime() {
    const t = $('video').currentTime;
    const tiles = $('strip').children;
    for (let i = 0; i < tiles.length && i < cues.length; i++) {
      const on = t >= cues[i].start && t < cues[i].end;
      if (on) tiles[i].setAttribute('aria-current', 'true');
      else tiles[i].removeAttribute('aria-current');
    }
  }

  function onVideoError() {
    const v = $('video');
    if (!v.getAttribute('src')) return; // reset, not a failure
    const codes = { 1: 'aborted', 2: 'a network error', 3: 'a decoding error', 4: 'an unsupported format' };
    $('player-status').textContent = `The preview cannot be played (${codes[v.error && v.error.code] || 'unknown error'}).`;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', guard(logout));
    $('refresh').addEventListener('click', guard(() => loadList(false)));
    $('older').addEventListener('click', guard(() => loadList(true)));
    $('video').addEventListener('timeupdate', onTime);
    $('video').addEventListener('error', onVideoError);
    $('username').focus();
  });
})();
