// SPDX-License-Identifier: Apache-2.0
// The preview player: the poster, the proxy in <video controls
// preload="metadata">, and a strip of thumbnails cut from sprite.jpg by the
// WebVTT index's #xywh fragments; choosing a thumbnail seeks there.
// player() makes one; the evidence page, a case's exhibits, a shared case,
// the defence disclosure page and the face search's results all use it
// (showEvidence's start option opens the proxy at a moment and plays it). Only one is on show at a
// time (its elements keep the ids the first staff page had).
import { api } from './api.js';
import { el, when, bytes, clock } from './ui.js';

// What the preview job's state means to a person.
export function previewText(item) {
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

function seconds(s) {
  const parts = s.trim().split(':').map(Number);
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => !Number.isFinite(x))) return NaN;
  return parts.reduce((acc, x) => acc * 60 + x, 0);
}

// WebVTT cues naming sprite.jpg#xywh=x,y,w,h (same origin only).
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

// opts.closable: a "Close preview" button (which fires 'closed' on node);
// opts.heading: the title's element (h2 where the player is a section of
// its own, h3 inside a page).
export function player({ closable = true, heading = 'h2' } = {}) {
  const title = el(heading, { id: 'player-title', textContent: 'Preview' });
  const status = el('p', { id: 'player-status', role: 'status' });
  const video = el('video', { id: 'video', controls: true, preload: 'metadata', playsInline: true, hidden: true });
  const strip = el('div', { id: 'strip', role: 'group', 'aria-label': 'Thumbnails: choose one to seek the video', hidden: true });
  const details = el('dl', { id: 'details' });
  const close = closable ? el('button', { type: 'button', class: 'close', textContent: 'Close preview' }) : null;
  const node = el('section', { id: 'player-view', 'aria-labelledby': 'player-title', hidden: true },
    el('div', { class: 'bar' }, title, close), status, video, strip, details);
  let cues = [];
  let showing = null; // a token for the item on show: stale loads stop

  function reset() {
    video.pause();
    video.removeAttribute('src');
    video.removeAttribute('poster');
    video.load();
    video.hidden = true;
    cues = [];
    strip.replaceChildren();
    strip.hidden = true;
    details.replaceChildren();
    status.textContent = '';
  }

  function detail(name, value) {
    if (value !== undefined && value !== null && value !== '') {
      details.append(el('dt', { textContent: name }), el('dd', { textContent: String(value) }));
    }
  }

  async function loadStrip(mine, url) {
    const text = await api(url);
    if (showing !== mine) return;
    cues = parseVtt(text, new URL(url, location.href));
    for (const c of cues) {
      const b = el('button', { type: 'button', title: clock(c.start), 'data-start': String(c.start) });
      b.setAttribute('aria-label', `Seek to ${clock(c.start)}`);
      b.style.width = `${c.w}px`;
      b.style.height = `${c.h}px`;
      b.style.backgroundImage = `url("${c.src}")`;
      b.style.backgroundPosition = `-${c.x}px -${c.y}px`;
      b.addEventListener('click', () => {
        video.currentTime = c.start;
      });
      strip.append(b);
    }
    strip.hidden = cues.length === 0;
  }

  // Shows media under base (base/poster, base/preview, base/thumbnails)
  // given which derivatives exist (kinds) and why there is no proxy
  // (noPreview) when there is none.
  async function media(mine, base, kinds, noPreview, at) {
    if (!kinds.has('proxy')) {
      status.textContent = noPreview;
      if (kinds.has('poster')) {
        video.poster = `${base}/poster`;
        video.hidden = false;
      }
      return;
    }
    if (kinds.has('poster')) video.poster = `${base}/poster`;
    video.src = `${base}/preview`;
    video.hidden = false;
    status.textContent = '';
    if (at) startAt(mine, at);
    if (kinds.has('sprite_vtt') && kinds.has('sprite')) await loadStrip(mine, `${base}/thumbnails`);
  }

  function begin(heading) {
    const mine = {};
    showing = mine;
    reset();
    node.hidden = false;
    title.textContent = heading;
    status.textContent = 'Loading…';
    return mine;
  }

  // Once the proxy's length is known: seek to at.start seconds and, with
  // at.play, play from there (a refusal to autoplay leaves it paused).
  function startAt(mine, at) {
    video.addEventListener('loadedmetadata', () => {
      if (showing !== mine) return;
      const t = Number(at.start) || 0;
      video.currentTime = Number.isFinite(video.duration) ? Math.min(t, video.duration) : t;
      if (at.play) video.play().catch(() => {});
    }, { once: true });
  }

  // Evidence the signed-in user may see, by id (GET /v1/evidence/{id});
  // opts.start (seconds) and opts.play: where the proxy opens, and whether
  // it plays from there.
  async function showEvidence(id, heading, opts = {}) {
    const mine = begin(heading || 'Preview');
    const ev = await api(`/v1/evidence/${id}`);
    if (showing !== mine) return;
    await present(mine, ev, heading || ev.filename || id, true, undefined, opts.start !== undefined ? opts : null);
  }

  // An answer of GET /v1/evidence/{id} the caller already has; noPreview
  // (optional) is the message when there is no proxy to play.
  async function showDoc(ev, heading, noPreview) {
    const mine = begin(heading);
    await present(mine, ev, heading, false, noPreview);
  }

  async function present(mine, ev, heading, withDetails, noPreview, at) {
    const id = ev.id;
    title.textContent = heading;
    const kinds = new Set((ev.previews || []).map((p) => p.kind));
    const why = ev.media && ev.media.preview_error ? `: ${ev.media.preview_error.message}` : '';
    const message = noPreview || `${previewText({ has_preview: false, preview_job: ev.preview_job })}${why}.`;
    if (!withDetails) {
      await media(mine, `/v1/evidence/${id}`, kinds, message, at);
      return;
    }
    detail('SHA-256', ev.sha256);
    detail('Received', when(ev.created_at));
    detail('Uploaded by', ev.uploaded_by);
    detail('Size', bytes(ev.size));
    detail('Type', ev.content_type);
    const probe = (ev.media && ev.media.probe) || ev.media || {};
    if (probe.duration > 0) detail('Duration', clock(probe.duration));
    const vs = (probe.streams || []).find((s) => s.type === 'video' && !s.attached_pic);
    if (vs && vs.width) detail('Video', `${vs.codec || ''} ${vs.width}×${vs.height}`.trim());
    if (probe.creation_time) detail('Recorded', when(probe.creation_time));
    await media(mine, `/v1/evidence/${id}`, kinds, message, at);
  }

  // Media described by the caller (the disclosure page): rows are
  // [name, value] details, kinds the derivatives that exist.
  async function showMedia({ heading, base, kinds, rows, noPreview }) {
    const mine = begin(heading);
    for (const [k, v] of rows) detail(k, v);
    await media(mine, base, new Set(kinds), noPreview || 'No preview.');
  }

  function hide() {
    showing = null;
    reset();
    node.hidden = true;
  }

  // Marks the tile of the current time.
  video.addEventListener('timeupdate', () => {
    const t = video.currentTime;
    const tiles = strip.children;
    for (let i = 0; i < tiles.length && i < cues.length; i++) {
      const on = t >= cues[i].start && t < cues[i].end;
      if (on) tiles[i].setAttribute('aria-current', 'true');
      else tiles[i].removeAttribute('aria-current');
    }
  });
  video.addEventListener('error', () => {
    if (!video.getAttribute('src')) return; // reset, not a failure
    const codes = { 1: 'aborted', 2: 'a network error', 3: 'a decoding error', 4: 'an unsupported format' };
    status.textContent = `The preview cannot be played (${codes[video.error && video.error.code] || 'unknown error'}).`;
  });
  if (close) {
    close.addEventListener('click', () => {
      hide();
      node.dispatchEvent(new Event('closed'));
    });
  }
  return { node, status, video, showEvidence, showDoc, showMedia, hide };
}
