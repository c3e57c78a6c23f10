// SPDX-License-Identifier: Apache-2.0
// The upload view (#/upload): choose or drop many files, give their
// details (device serial, recording start and end, description: checked
// with the server's rules, meta.js, before anything is sent), and follow
// each file through hashing and sending with pause, resume and remove;
// overall progress in a live region; a finished file links to its evidence
// page. Unfinished uploads from before a reload are listed until their file
// is chosen again. The queue itself is uploads.js's, in the store, so
// uploads go on while the user is on other pages.
import * as store from './store.js';
import { el, field, invalid, bytes, isoFromLocal, localFromIso } from './ui.js';
import { route } from './router.js';
import * as uploads from './uploads.js';

const LABELS = {
  filename: 'File name',
  device_serial: 'Device serial',
  recording_start: 'Recording start',
  recording_end: 'Recording end',
  description: 'Description',
};
const HINTS = {
  device_serial: '(as on the camera: letters, digits, . _ -)',
  recording_start: '(your local time)',
  recording_end: '(your local time)',
};

const pct = (a, b) => (b > 0 ? Math.floor((100 * a) / b) : 100);

// Inputs for the detail fields; get()/set() speak the metadata's values
// (times as RFC 3339 UTC), so an item's fields and the defaults use one form.
function detailInputs(prefix, withName) {
  const inputs = {};
  const mk = (k) => {
    if (k === 'recording_start' || k === 'recording_end') return el('input', { type: 'datetime-local', step: 1, name: k });
    if (k === 'description') return el('input', { name: k, maxLength: 2000, autocomplete: 'off' });
    return el('input', { name: k, autocomplete: 'off', spellcheck: false });
  };
  for (const k of uploads.FIELD_NAMES) {
    if (k === 'filename' && !withName) continue;
    inputs[k] = mk(k);
    inputs[k].id = `${prefix}-${k}`;
  }
  const get = () => {
    const out = {};
    for (const [k, i] of Object.entries(inputs)) {
      if (i.type === 'datetime-local') out[k] = i.value ? isoFromLocal(i.value) || `invalid:${i.value}` : '';
      else out[k] = i.value;
    }
    return out;
  };
  const set = (fields) => {
    for (const [k, i] of Object.entries(inputs)) {
      const v = fields[k] || '';
      i.value = i.type === 'datetime-local' ? localFromIso(v) : v;
    }
  };
  const nodes = Object.entries(inputs).map(([k, i]) => field(LABELS[k], i, HINTS[k]));
  return { inputs, get, set, nodes };
}

function stateText(item) {
  switch (item.state) {
    case 'ready': return Object.keys(item.errors).length ? 'Check the details below' : 'Ready to upload';
    case 'hash-wait': return 'Waiting to compute its SHA-256';
    case 'hashing': return `Computing SHA-256: ${pct(item.hashed, item.size)}%`;
    case 'queued': return item.resumedFrom ? `Waiting to resume at ${pct(item.resumedFrom, item.size)}%` : 'Waiting to upload';
    case 'uploading': return `Uploading: ${bytes(item.sent)} of ${bytes(item.size)} (${pct(item.sent, item.size)}%)` +
      (item.resumedFrom ? `, resumed at ${pct(item.resumedFrom, item.size)}%` : '');
    case 'paused': return `Paused at ${pct(item.sent, item.size)}%`;
    case 'recording': return 'All bytes sent: being recorded as evidence…';
    case 'done': return 'Uploaded';
    case 'failed': return `Failed: ${item.message}`;
    case 'waiting': return `Interrupted at ${pct(item.sent, item.size)}%: choose the same file again to resume` +
      (item.message ? ` (${item.message})` : '');
    case 'signin': return 'Waiting for you to sign in again';
    default: return item.state;
  }
}

function render(view, params, page) {
  const status = el('p', { id: 'upload-status', class: 'status', role: 'status' });
  const input = el('input', { type: 'file', id: 'file-input', multiple: true });
  const defaults = detailInputs('default', false);
  const list = el('ul', { id: 'upload-list', class: 'uploads' });
  const overall = el('progress', { id: 'upload-overall', max: 1, value: 0, 'aria-label': 'All uploads' });
  const summary = el('p', { id: 'upload-summary', role: 'status', 'aria-live': 'polite' });
  const startBtn = el('button', { type: 'button', id: 'upload-start', class: 'primary', textContent: 'Upload' });
  const clearBtn = el('button', { type: 'button', id: 'upload-clear', textContent: 'Clear finished' });
  const drop = el('div', { id: 'drop-zone', class: 'drop' },
    el('p', { textContent: 'Drop files here, or' }),
    field('Choose files', input, '(as many as you like)'));
  const rows = new Map(); // item.key -> {li, update}
  let lastSaid = '';

  view.append(el('section', { 'aria-labelledby': 'upload-title' },
    el('h2', { id: 'upload-title', textContent: 'Upload evidence' }),
    el('p', { class: 'hint', textContent: 'Each file\'s SHA-256 is computed here and declared, and the server keeps the file only if what it received has that hash. An interrupted upload resumes where it stopped, also after a reload: choose the same file again.' }),
    drop,
    el('fieldset', { class: 'defaults' }, el('legend', { textContent: 'Details for the files you add (optional; each file\'s own can be changed below)' }),
      ...defaults.nodes),
    el('div', { class: 'bar' }, el('h3', { textContent: 'Files' }), el('span', {}, startBtn, ' ', clearBtn)),
    status, summary, overall, list));

  // ---- one row per item ----
  function row(item) {
    const name = el('span', { class: 'name' });
    const meta = el('span', { class: 'meta' });
    const state = el('span', { class: 'meta upload-state' });
    const bar = el('progress', { max: 1, value: 0 });
    const link = el('a', { class: 'evidence-link', hidden: true });
    const pause = el('button', { type: 'button', textContent: 'Pause' });
    const resume = el('button', { type: 'button', textContent: 'Resume' });
    const retry = el('button', { type: 'button', textContent: 'Retry' });
    const stop = el('button', { type: 'button', textContent: 'Stop' });
    const removeBtn = el('button', { type: 'button', class: 'danger', textContent: 'Remove' });
    const details = detailInputs(`${item.key}`, true);
    details.set(item.fields);
    const box = el('fieldset', { class: 'item-details' }, el('legend', { class: 'offscreen', textContent: `Details of ${item.name}` }), ...details.nodes);
    const more = el('details', { class: 'panel' }, el('summary', { textContent: 'Details' }), box);
    const li = el('li', { 'data-key': item.key }, name, meta, state, bar, link,
      el('div', { class: 'actions' }, pause, resume, stop, retry, removeBtn), more);
    const label = (b, verb) => b.setAttribute('aria-label', `${verb} ${item.name}`);

    const onField = () => {
      Object.assign(item.fields, details.get());
      uploads.check(item);
      update();
    };
    for (const i of Object.values(details.inputs)) i.addEventListener('change', onField);
    pause.addEventListener('click', () => uploads.pause(item));
    resume.addEventListener('click', () => uploads.resume(item));
    retry.addEventListener('click', () => {
      Object.assign(item.fields, details.get());
      if (item.state === 'failed' && !item.url && !uploads.check(item)) {
        update();
        return;
      }
      uploads.retry(item);
    });
    stop.addEventListener('click', () => uploads.stopHashing(item));
    removeBtn.addEventListener('click', () => {
      const sent = item.state !== 'done' && item.sent > 0;
      if (sent && !window.confirm(`Remove ${item.name}? What was sent of it is deleted.`)) return;
      uploads.remove(item);
    });

    function update() {
      name.textContent = item.name;
      meta.textContent = `${bytes(item.size)}${item.type ? ' · ' + item.type : ''}${item.sha256 ? ' · SHA-256 ' + item.sha256.slice(0, 16) + '…' : ''}`;
      state.textContent = stateText(item);
      li.dataset.state = item.state;
      if (item.resumedFrom !== null) li.dataset.resumedFrom = String(item.resumedFrom);
      label(pause, 'Pause');
      label(resume, 'Resume');
      label(retry, 'Retry');
      label(stop, 'Stop hashing');
      label(removeBtn, item.state === 'waiting' ? 'Discard' : 'Remove');
      removeBtn.textContent = item.state === 'waiting' ? 'Discard' : 'Remove';
      state.className = `meta upload-state state-${item.state === 'done' ? 'done' : item.state === 'failed' ? 'failed' : 'other'}`;
      if (item.state === 'hashing') {
        bar.max = item.size || 1;
        bar.value = item.hashed;
      } else {
        bar.max = item.size || 1;
        bar.value = item.state === 'done' ? bar.max : item.sent;
      }
      bar.setAttribute('aria-label', `${item.name}: ${stateText(item)}`);
      bar.hidden = item.state === 'ready' || item.state === 'failed';
      pause.hidden = !(item.state === 'uploading' || item.state === 'queued');
      resume.hidden = item.state !== 'paused';
      retry.hidden = item.state !== 'failed' || Boolean(item.refused);
      stop.hidden = item.state !== 'hashing';
      removeBtn.hidden = item.state === 'recording';
      box.disabled = !(item.state === 'ready' || (item.state === 'failed' && !item.url));
      for (const [k, i] of Object.entries(details.inputs)) invalid(i, item.errors[k] ? `${LABELS[k]} ${item.errors[k]}.` : null);
      if (Object.keys(item.errors).length && item.state === 'ready') more.open = true;
      if (item.evidence) {
        link.hidden = false;
        link.href = `#/evidence/${item.evidence}`;
        link.textContent = `Open the evidence page of ${item.name}`;
      }
    }
    update();
    return { li, update };
  }

  function sync(changedItem) {
    const all = store.get().uploads;
    for (const [key, r] of rows) {
      if (!all.some((i) => i.key === key)) {
        r.li.remove();
        rows.delete(key);
      }
    }
    for (const item of all) {
      let r = rows.get(item.key);
      if (!r) {
        r = row(item);
        rows.set(item.key, r);
        list.append(r.li);
      } else if (!changedItem || changedItem === item) {
        r.update();
      }
    }
    summarise(all);
  }

  // The overall line: spoken (politely) when a file changes state or the
  // whole passes another tenth, not at every progress event.
  function summarise(all) {
    const sending = all.filter((i) => i.state !== 'ready' && i.state !== 'failed');
    const total = sending.reduce((a, i) => a + i.size, 0);
    const sent = sending.reduce((a, i) => a + (i.state === 'done' ? i.size : i.sent), 0);
    const done = all.filter((i) => i.state === 'done').length;
    overall.max = total || 1;
    overall.value = total ? sent : 0;
    overall.hidden = total === 0;
    const states = all.map((i) => i.state).join();
    let text;
    if (!all.length) text = 'No files chosen yet.';
    else if (!sending.length) text = `${all.length} file${all.length === 1 ? '' : 's'} ready: check the details, then Upload.`;
    else if (done === sending.length) text = `All ${done} file${done === 1 ? '' : 's'} uploaded (${bytes(total)}).`;
    else text = `${done} of ${sending.length} file${sending.length === 1 ? '' : 's'} uploaded; ${bytes(sent)} of ${bytes(total)} sent (about ${Math.floor(pct(sent, total) / 10) * 10}%).`;
    const waiting = all.filter((i) => i.state === 'waiting').length;
    if (waiting) text += ` ${waiting} interrupted upload${waiting === 1 ? '' : 's'} wait${waiting === 1 ? 's' : ''} for ${waiting === 1 ? 'its' : 'their'} file.`;
    const failedN = all.filter((i) => i.state === 'failed').length;
    if (failedN) text += ` ${failedN} failed.`;
    const said = `${text}|${states}`;
    if (said !== lastSaid) {
      lastSaid = said;
      summary.textContent = text;
    }
    startBtn.disabled = !all.some((i) => i.state === 'ready');
    clearBtn.hidden = !all.some((i) => i.state === 'done');
  }

  async function add(files) {
    if (!files || !files.length) return;
    const out = await uploads.addFiles([...files], defaultsNow());
    const parts = [];
    if (out.added) parts.push(`${out.added} added`);
    if (out.resumed) parts.push(`${out.resumed} resuming`);
    if (out.skipped) parts.push(`${out.skipped} already in the list`);
    status.textContent = parts.length ? `Files: ${parts.join(', ')}.` : '';
  }

  // The defaults as metadata values; a bad one is shown beside its field.
  function defaultsNow() {
    const d = defaults.get();
    const out = {};
    for (const [k, v] of Object.entries(d)) if (v) out[k] = v;
    return out;
  }

  input.addEventListener('change', () => {
    add(input.files).finally(() => {
      input.value = '';
    });
  });
  const over = (ev) => {
    ev.preventDefault();
    drop.classList.toggle('over', ev.type === 'dragover' || ev.type === 'dragenter');
  };
  drop.addEventListener('dragenter', over);
  drop.addEventListener('dragover', over);
  drop.addEventListener('dragleave', over);
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    add(ev.dataTransfer && ev.dataTransfer.files);
  });
  // A file dropped beside the zone must not replace the application.
  const guardDrop = (ev) => {
    if (!drop.contains(ev.target)) ev.preventDefault();
  };
  window.addEventListener('dragover', guardDrop);
  window.addEventListener('drop', guardDrop);
  page.onLeave(() => {
    window.removeEventListener('dragover', guardDrop);
    window.removeEventListener('drop', guardDrop);
  });

  startBtn.addEventListener('click', () => {
    const { started, refused } = uploads.startAll();
    status.textContent = refused
      ? `${refused} file${refused === 1 ? '' : 's'} not started: check the details marked.`
      : `${started} file${started === 1 ? '' : 's'} started.`;
    if (refused) {
      const bad = list.querySelector('[aria-invalid=true]');
      if (bad) bad.focus();
    }
  });
  clearBtn.addEventListener('click', () => {
    for (const i of store.get().uploads.filter((x) => x.state === 'done')) uploads.remove(i);
  });
  for (const i of Object.values(defaults.inputs)) {
    i.addEventListener('change', () => {
      const probs = uploads.checkFields(defaultsNow());
      for (const [k, inp] of Object.entries(defaults.inputs)) invalid(inp, probs[k] ? `${LABELS[k]} ${probs[k]}.` : null);
    });
  }

  page.onLeave(store.subscribe((s, patch) => {
    if ('uploads' in patch) sync(patch.upload);
  }));
  sync(null);
}

route(/^\/upload$/, { nav: 'upload', roles: ['admin', 'officer'], title: 'upload', render });
