// SPDX-License-Identifier: Apache-2.0
// Public submissions on a case page, the officers' side (docs/api.md,
// "Public submissions", "Triage"): ask the public for footage with a
// request link (one person) or an appeal link (anyone), shown once as a
// URL to copy and a QR code to hand over; the links with their state and a
// revoke button; and the triage queue: each submission's statement and
// files, previews in the page's player, accept into the case as exhibits
// or reject with a reason. The public's page is portal.html (portal.js).
import { api, all } from './api.js';
import { el, field, form, guard, when, bytes, isoFromLocal, copyButton, thead } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';

// A QR code as SVG squares, from POST /v1/qr's rows ("0110…", 1 dark).
function qrSvg(qr, label) {
  const n = qr.size + 2 * qr.quiet_zone;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${n} ${n}`);
  svg.setAttribute('width', '200');
  svg.setAttribute('height', '200');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('class', 'qr');
  const bg = document.createElementNS(SVG, 'rect');
  for (const [k, v] of [['width', n], ['height', n], ['fill', '#fff']]) bg.setAttribute(k, String(v));
  svg.append(bg);
  const path = [];
  qr.rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) {
      if (row[x] === '1') path.push(`M${x + qr.quiet_zone} ${y + qr.quiet_zone}h1v1h-1z`);
    }
  });
  const p = document.createElementNS(SVG, 'path');
  p.setAttribute('d', path.join(''));
  p.setAttribute('fill', '#000');
  svg.append(p);
  return svg;
}

function linkForm(c, onMade) {
  const kind = el('select', { id: 'link-kind', name: 'kind' },
    el('option', { value: 'request', textContent: 'A request to one person' }),
    el('option', { value: 'appeal', textContent: 'An appeal anyone may answer' }));
  const title = el('input', { id: 'link-title', name: 'title', maxLength: 200, required: true });
  const message = el('textarea', { id: 'link-message', name: 'message', maxLength: 4000, rows: 3 });
  const name = el('input', { id: 'link-name', name: 'submitter_name', maxLength: 200 });
  const contact = el('input', { id: 'link-contact', name: 'submitter_contact', maxLength: 200 });
  const needContact = el('input', { id: 'link-contact-required', type: 'checkbox' });
  const expires = el('input', { id: 'link-expires', type: 'datetime-local' });
  const maxFiles = el('input', { id: 'link-max-files', type: 'number', min: 1, max: 1000, inputMode: 'numeric' });
  const who = el('div', { class: 'who' }, field('Their name', name, 'optional, shown to them'),
    field('How you reached them', contact, 'optional, for the record'));
  kind.addEventListener('change', () => {
    who.hidden = kind.value !== 'request';
  });
  return form({ id: 'link-form', 'aria-label': 'Ask the public for footage' }, [
    field('Kind', kind), field('Title', title, 'what the footage is about, shown to the public'),
    field('Message', message, 'optional, shown to the public'), who,
    el('label', { class: 'check', for: needContact.id }, needContact, 'They must give a way to contact them'),
    field('Ends', expires, 'optional: 3 days from now if empty, at most 30'),
    field('Most files per submission', maxFiles, 'optional'),
    el('button', { type: 'submit', textContent: 'Make the link' }),
  ], async () => {
    const body = { kind: kind.value, title: title.value.trim(), contact_required: needContact.checked };
    if (message.value.trim()) body.message = message.value.trim();
    if (kind.value === 'request' && name.value.trim()) body.submitter_name = name.value.trim();
    if (kind.value === 'request' && contact.value.trim()) body.submitter_contact = contact.value.trim();
    if (expires.value) body.expires_at = isoFromLocal(expires.value);
    if (maxFiles.value) body.max_files = Number(maxFiles.value);
    const link = await api(`/v1/cases/${c.id}/submission-links`, { method: 'POST', body });
    title.value = '';
    message.value = '';
    await onMade(link);
  });
}

// The link just made: its URL (to copy) and a QR code, shown this once.
async function showMade(box, link) {
  const url = `${location.origin}${link.path}`;
  const qr = await api('/v1/qr', { method: 'POST', body: { text: url } });
  box.replaceChildren(
    el('h4', { textContent: `Link made: ${link.title}` }),
    el('p', { textContent: 'Send this link by the force\'s own channel. It is shown only now: it is not kept.' }),
    el('p', {}, el('code', { id: 'made-link', class: 'link', textContent: url }), ' ',
      copyButton('Copy the link', url)),
    qrSvg(qr, `QR code of the link for ${link.title}`));
  box.hidden = false;
}

function statementList(s) {
  const dl = el('dl', { class: 'statement' });
  const add = (k, v) => {
    if (v !== null && v !== undefined && v !== '') dl.append(el('dt', { textContent: k }), el('dd', { textContent: String(v) }));
  };
  const st = s.statement;
  add('What it shows', st.description);
  add('Where', st.location);
  if (st.recorded_from || st.recorded_to) add('When', `${when(st.recorded_from) || '?'} – ${when(st.recorded_to) || '?'}`);
  if (st.clock_offset_seconds) add('Camera clock', `${st.clock_offset_seconds > 0 ? 'ahead by' : 'behind by'} ${Math.abs(st.clock_offset_seconds)} s`);
  add('Name', st.contact_name);
  add('E-mail', st.contact_email);
  add('Telephone', st.contact_phone);
  add('Through', `${s.link.kind} “${s.link.title}”`);
  add('Submitted', when(s.submitted_at));
  if (s.decided_at) add(s.state === 'accepted' ? 'Accepted' : 'Rejected', `${when(s.decided_at)} by ${s.decided_by}`);
  add('Reason', s.reason);
  add('Disposed of after', when(s.dispose_after));
  return dl;
}

export function publicSubmissions(page, c, can, p) {
  const status = el('p', { class: 'status', role: 'status' });
  const made = el('div', { id: 'link-made', class: 'made', role: 'status', 'aria-live': 'polite', hidden: true });
  const linkRows = el('tbody', { id: 'link-rows' });
  const queue = el('div', { id: 'triage', class: 'triage' });
  const filter = el('select', { id: 'triage-state' },
    ...[['submitted', 'Waiting for triage'], ['accepted', 'Accepted'], ['rejected', 'Rejected'], ['open', 'Still being sent'], ['all', 'All']]
      .map(([v, t]) => el('option', { value: v, textContent: t })));
  const node = el('section', { 'aria-labelledby': 'submissions-title' },
    el('h3', { id: 'submissions-title', textContent: 'Footage from the public' }), status);

  async function loadLinks() {
    const links = await all(`/v1/cases/${c.id}/submission-links`, 'links');
    if (!page.alive) return;
    linkRows.replaceChildren();
    for (const l of links) {
      const actions = el('td', { class: 'actions' });
      if (l.state === 'live' && can.addExhibit) {
        const b = el('button', { type: 'button', class: 'danger', textContent: 'Revoke' });
        b.setAttribute('aria-label', `Revoke the link ${l.title}`);
        b.addEventListener('click', guard(async () => {
          if (!window.confirm(`Revoke the link "${l.title}"? Nobody can send footage through it after this.`)) return;
          await api(`/v1/cases/${c.id}/submission-links/${l.id}/revoke`, { method: 'POST', body: {} });
          await loadLinks();
        }, () => status));
        actions.append(b);
      }
      linkRows.append(el('tr', { 'data-link': String(l.id) },
        el('td', { textContent: l.title }), el('td', { textContent: l.kind }),
        el('td', { class: 'state', textContent: l.state }), el('td', { textContent: when(l.expires_at) }),
        el('td', { textContent: String(l.submissions) }), el('td', { textContent: bytes(l.bytes_received) }),
        actions));
    }
  }

  function previewButton(s, evidence, name) {
    const b = el('button', { type: 'button', textContent: 'Preview' });
    b.setAttribute('aria-label', `Preview ${name}`);
    b.addEventListener('click', guard(async () => {
      p.node.scrollIntoView({ block: 'nearest' });
      await p.showEvidence(evidence, `${s.reference}: ${name}`);
    }, () => p.status));
    return b;
  }

  // What a file is and whether it plays: its preview, or that it needs
  // converting (with the format its bytes show), or that it is an archive.
  function fileNote(f) {
    const parts = [bytes(f.size)];
    if (f.format) parts.push(f.format);
    if (f.needs_conversion) parts.push(`needs conversion: no decoder reads this ${f.format || 'file'}`);
    else if (f.preview) parts.push({ ready: 'preview ready', pending: 'preview being made', failed: 'no preview could be made', none: 'no preview' }[f.preview] || f.preview);
    if (f.exhibit) parts.push(`exhibit ${f.exhibit}`);
    return parts.join(', ');
  }

  function archiveList(s, a) {
    const head = a.state === 'done'
      ? `Archive: ${a.extracted} extracted, ${a.skipped} left out (${a.entries} entries)`
      : a.state === 'pending' ? 'Archive: being unpacked…' : `Archive ${a.state}: ${a.error || ''}`;
    const ul = el('ul', { class: 'archive-members' });
    for (const m of a.members || []) {
      const li = el('li', { 'data-member': m.path }, el('span', { class: 'name', textContent: m.path }), ' ');
      if (m.skipped) {
        li.append(el('span', { class: 'hint', textContent: `left out: ${m.skipped}${m.detail ? ` (${m.detail})` : ''}` }));
      } else {
        li.append(el('span', { class: 'hint', textContent: fileNote(m) }), ' ');
        if (m.kind === 'video' || m.kind === 'image' || m.kind === 'audio') li.append(previewButton(s, m.evidence, m.path));
      }
      ul.append(li);
    }
    if (a.members_total > (a.members || []).length) {
      ul.append(el('li', { class: 'hint', textContent: `… and ${a.members_total - a.members.length} more` }));
    }
    return el('div', { class: 'archive' }, el('p', { textContent: head }), ul);
  }

  function card(s) {
    const files = el('ul', { class: 'submission-files' });
    for (const f of s.files) {
      const li = el('li', { 'data-evidence': f.evidence },
        el('span', { class: 'name', textContent: f.filename }), ' ',
        el('span', { class: 'hint', textContent: fileNote(f) }), ' ');
      if (!f.archive) li.append(previewButton(s, f.evidence, f.filename));
      else li.append(archiveList(s, f.archive));
      files.append(li);
    }
    const box = el('article', { class: 'submission', 'data-submission': s.reference, 'aria-labelledby': `sub-${s.id}` },
      el('h4', { id: `sub-${s.id}`, textContent: `${s.reference} (${s.state})` }), statementList(s), files);
    if (s.state === 'submitted' && can.addExhibit) {
      const prefix = el('input', { id: `prefix-${s.id}`, maxLength: 24, placeholder: s.reference });
      const accept = form({ class: 'inline', 'aria-label': `Accept ${s.reference}` }, [
        field('Exhibit references start with', prefix, 'optional'),
        el('button', { type: 'submit', textContent: `Accept into the case` }),
      ], async () => {
        const body = {};
        if (prefix.value.trim()) body.reference_prefix = prefix.value.trim();
        const doc = await api(`/v1/cases/${c.id}/submissions/${s.id}/accept`, { method: 'POST', body });
        status.textContent = `${s.reference} accepted: exhibits ${doc.exhibits_added.map((x) => x.reference).join(', ') || '(already exhibits)'}.`;
        await page.reload();
      });
      const reason = el('input', { id: `reason-${s.id}`, maxLength: 1000, required: true });
      const reject = form({ class: 'inline', 'aria-label': `Reject ${s.reference}` }, [
        field('Reason', reason), el('button', { type: 'submit', class: 'danger', textContent: 'Reject' }),
      ], async () => {
        if (!reason.value.trim()) throw new Error('Give the reason for rejecting it.');
        await api(`/v1/cases/${c.id}/submissions/${s.id}/reject`, { method: 'POST', body: { reason: reason.value.trim() } });
        status.textContent = `${s.reference} rejected.`;
        await loadQueue();
      });
      box.append(accept, reject);
    }
    return box;
  }

  async function loadQueue() {
    const list = await all(`/v1/cases/${c.id}/submissions?state=${filter.value}`, 'submissions');
    if (!page.alive) return;
    queue.replaceChildren(...list.map(card));
    if (!list.length) queue.append(el('p', { class: 'hint', textContent: 'None.' }));
  }
  filter.addEventListener('change', guard(loadQueue, () => status));

  if (can.addExhibit) {
    node.append(el('details', { class: 'panel' }, el('summary', { textContent: 'Ask the public for footage' }),
      linkForm(c, async (link) => {
        await showMade(made, link);
        await loadLinks();
      })));
  }
  node.append(made,
    el('h4', { textContent: 'Links' }),
    el('div', { class: 'table-wrap' }, el('table', {}, thead('Title', 'Kind', 'State', 'Ends', 'Submissions', 'Received', ''), linkRows)),
    el('div', { class: 'bar' }, el('h4', { textContent: 'Triage' }), field('Show', filter)),
    queue);
  node.load = guard(async () => {
    await Promise.all([loadLinks(), loadQueue()]);
  }, () => status);
  return node;
}
