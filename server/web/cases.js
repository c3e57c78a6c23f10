// SPDX-License-Identifier: Apache-2.0
// Cases (docs/api.md, "Cases"): the case list (#/cases: search, filters,
// paging, a new case) and the case page (#/cases/ID: details with edit,
// close and reopen; exhibits with posters, adding evidence and removing
// exhibits; the way to face search (face.js) for users with the
// permission; members; shares (shares.js); court bundles (bundles.js)). The
// controls on show are those the caller's case role (my_role) allows; the
// server decides anyway and its refusals are shown as they come.
import { api, all } from './api.js';
import { el, field, form, guard, when, bytes, thead } from './ui.js';
import { route, go } from './router.js';
import { player } from './player.js';
import { caseShares } from './shares.js';
import { bundles } from './bundles.js';
import { publicSubmissions } from './submissions.js';
import { faceLink } from './face.js';

const input = (attrs) => el('input', attrs);
const select = (name, options, value) => {
  const s = el('select', { name });
  for (const [v, text] of options) s.append(el('option', { value: v, textContent: text, selected: v === value }));
  return s;
};
const tagsOf = (text) => text.split(',').map((t) => t.trim()).filter(Boolean);

// ---- the case list ----

function renderList(view, params, page) {
  const status = view.querySelector('#page-status');
  const q = input({ type: 'search', name: 'q', placeholder: 'reference, title or offence' });
  const st = select('status', [['', 'any'], ['open', 'open'], ['closed', 'closed']], '');
  const tag = input({ name: 'tag', placeholder: "an exhibit's tag" });
  const body = el('tbody', { id: 'case-rows' });
  const more = el('button', { type: 'button', id: 'more-cases', hidden: true, textContent: 'More' });
  let cursor = null;

  async function load(next) {
    const p = new URLSearchParams({ limit: '50' });
    if (q.value.trim()) p.set('q', q.value.trim());
    if (st.value) p.set('status', st.value);
    if (tag.value.trim()) p.set('tag', tag.value.trim());
    if (next && cursor) p.set('cursor', cursor);
    status.textContent = 'Loading…';
    const doc = await api(`/v1/cases?${p}`);
    if (!page.alive) return;
    if (!next) body.replaceChildren();
    for (const c of doc.cases) {
      body.append(el('tr', { 'data-case': String(c.id) },
        el('td', {}, el('a', { href: `#/cases/${c.id}`, textContent: c.reference })),
        el('td', { textContent: c.title }),
        el('td', { textContent: c.offence || '' }),
        el('td', { textContent: c.status }),
        el('td', { textContent: c.my_role || '' }),
        el('td', { textContent: String(c.exhibits) }),
        el('td', { textContent: when(c.updated_at) })));
    }
    cursor = doc.next_cursor;
    more.hidden = !cursor;
    status.textContent = body.children.length ? '' : 'No cases found.';
  }

  const search = form({ class: 'filters', role: 'search', 'aria-label': 'Search cases' }, [
    field('Search', q), field('Status', st), field('Tag', tag),
    el('button', { type: 'submit', textContent: 'Search' }),
  ], () => load(false));

  const ref = input({ name: 'reference', required: true, autocomplete: 'off' });
  const title = input({ name: 'title', required: true });
  const offence = input({ name: 'offence' });
  const create = form({ id: 'new-case', 'aria-label': 'New case' }, [
    field('Reference', ref, '(as your force numbers cases)'), field('Title', title), field('Offence', offence),
    el('button', { type: 'submit', textContent: 'Create case' }),
  ], async () => {
    const body = { reference: ref.value.trim(), title: title.value.trim() };
    if (offence.value.trim()) body.offence = offence.value.trim();
    const c = await api('/v1/cases', { method: 'POST', body });
    go(`/cases/${c.id}`);
  });

  more.addEventListener('click', guard(() => load(true), () => status));
  view.append(el('section', { 'aria-labelledby': 'cases-title' },
    el('h2', { id: 'cases-title', textContent: 'Cases' }),
    el('details', { class: 'panel' }, el('summary', { textContent: 'New case' }), create),
    search,
    el('div', { class: 'table-wrap' }, el('table', {},
      thead('Reference', 'Title', 'Offence', 'Status', 'My role', 'Exhibits', 'Updated'), body)),
    more));
  view.append(status); // below the table: "Loading…", "No cases found."
  return load(false);
}

// ---- the case page ----

// What the caller's case role lets them do (docs/api.md, "Cases").
function powers(c) {
  const r = c.my_role;
  const open = c.status === 'open';
  const manage = r === 'lead' || r === 'admin';
  return {
    manage, // edit, close/reopen, members, shares, remove exhibits
    edit: manage && open,
    addExhibit: open && (manage || r === 'investigator'),
    removeExhibit: manage && open,
    bundle: manage || r === 'investigator',
    seeMembers: r !== 'prosecutor',
  };
}

export function details(c) {
  const dl = el('dl', { class: 'case-details' });
  const add = (k, v) => {
    if (v) dl.append(el('dt', { textContent: k }), el('dd', { textContent: v }));
  };
  add('Title', c.title);
  add('Offence', c.offence);
  add('Status', c.closed_at ? `${c.status} (closed ${when(c.closed_at)})` : c.status);
  add('Officer in the case', c.officer_in_case);
  add('Created', `${when(c.created_at)} by ${c.created_by}`);
  add('Updated', when(c.updated_at));
  add('Your role', c.my_role);
  return dl;
}

function editForm(c, done) {
  const title = input({ name: 'title', value: c.title });
  const offence = input({ name: 'offence', value: c.offence || '' });
  const oic = input({ name: 'officer_in_case', value: c.officer_in_case || '', autocomplete: 'off' });
  return form({ class: 'edit-case', 'aria-label': 'Edit case' }, [
    field('Title', title), field('Offence', offence), field('Officer in the case', oic, '(username; empty clears)'),
    el('button', { type: 'submit', textContent: 'Save changes' }),
  ], async () => {
    const body = { title: title.value.trim() };
    body.offence = offence.value.trim() || null;
    body.officer_in_case = oic.value.trim() || null;
    await api(`/v1/cases/${c.id}`, { method: 'PATCH', body });
    await done();
  });
}

function closeForm(c, done) {
  const reason = input({ name: 'reason' });
  const closing = c.status === 'open';
  return form({ class: 'inline', 'aria-label': closing ? 'Close case' : 'Reopen case' }, [
    field('Reason', reason, '(optional)'),
    el('button', { type: 'submit', textContent: closing ? 'Close case' : 'Reopen case' }),
  ], async () => {
    const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
    await api(`/v1/cases/${c.id}/${closing ? 'close' : 'reopen'}`, { method: 'POST', body });
    await done();
  });
}

// Exhibits: a table with posters; Preview opens the player below it.
export function exhibitsSection(page, c, can, p, onError) {
  const status = el('p', { class: 'status', role: 'status' });
  const body = el('tbody', { id: 'exhibit-rows' });
  const more = el('button', { type: 'button', hidden: true, textContent: 'More exhibits' });
  const node = el('section', { 'aria-labelledby': 'exhibits-title' },
    el('h3', { id: 'exhibits-title', textContent: 'Exhibits' }));
  let cursor = null;
  node.exhibits = []; // loaded so far (the share form's choices)
  node.filter = null; // set by a prosecutor's page: references to show

  function exhibitRow(x) {
    const ev = x.evidence;
    const poster = ev.has_poster
      ? el('img', { class: 'poster', src: `/v1/evidence/${ev.id}/poster`, alt: `Poster of exhibit ${x.reference}` })
      : el('span', { class: 'hint', textContent: 'no poster' });
    const actions = el('td', { class: 'actions' });
    const previewBtn = el('button', { type: 'button', textContent: 'Preview' });
    previewBtn.setAttribute('aria-label', `Preview exhibit ${x.reference}`);
    previewBtn.addEventListener('click', guard(async () => {
      p.node.scrollIntoView({ block: 'nearest' });
      await p.showEvidence(ev.id, `${x.reference}: ${ev.filename || ev.id}`);
    }, () => p.status));
    actions.append(previewBtn);
    if (can.removeExhibit) {
      const rm = el('button', { type: 'button', class: 'danger', textContent: 'Remove' });
      rm.setAttribute('aria-label', `Remove exhibit ${x.reference}`);
      rm.addEventListener('click', guard(async () => {
        if (!window.confirm(`Remove exhibit ${x.reference} from the case? The removal is recorded.`)) return;
        await api(`/v1/cases/${c.id}/exhibits/${x.id}`, { method: 'DELETE', body: {} });
        await page.reload();
      }, () => status));
      actions.append(rm);
    }
    return el('tr', { 'data-exhibit': x.reference, 'data-evidence': ev.id },
      el('td', {}, poster),
      el('td', { class: 'ref', textContent: x.reference }),
      el('td', { textContent: x.description || '' }),
      el('td', { textContent: (x.tags || []).join(', ') }),
      el('td', { class: 'name', textContent: ev.filename || '' }),
      el('td', { textContent: bytes(ev.size) }),
      el('td', {}, el('code', { class: 'hash', textContent: ev.id })),
      actions);
  }

  async function load(next) {
    const q = new URLSearchParams({ limit: '50' });
    if (next && cursor) q.set('cursor', cursor);
    status.textContent = 'Loading…';
    const doc = await api(`/v1/cases/${c.id}/exhibits?${q}`);
    if (!page.alive) return;
    if (!next) {
      body.replaceChildren();
      node.exhibits = [];
    }
    for (const x of doc.exhibits) {
      if (node.filter && !node.filter.has(x.reference.toLowerCase())) continue;
      node.exhibits.push(x);
      body.append(exhibitRow(x));
    }
    cursor = doc.next_cursor;
    more.hidden = !cursor;
    status.textContent = body.children.length ? '' : 'No exhibits.';
  }
  more.addEventListener('click', guard(() => load(true), () => status));

  node.append(status, el('div', { class: 'table-wrap' }, el('table', { class: 'exhibits' },
    thead('Poster', 'Exhibit', 'Description', 'Tags', 'File', 'Size', 'SHA-256', ''), body)), more);
  if (can.addExhibit) node.append(addExhibitPanel(page, c));
  node.load = guard(async () => {
    try {
      await load(false);
    } catch (e) {
      if (onError && onError(e)) return;
      throw e;
    }
  }, () => status);
  return node;
}

// "Add evidence": pick from the evidence the user can see.
function addExhibitPanel(page, c) {
  const pick = el('select', { name: 'evidence', required: true });
  const ref = input({ name: 'reference', required: true, autocomplete: 'off' });
  const desc = input({ name: 'description' });
  const tags = input({ name: 'tags' });
  const f = form({ id: 'add-exhibit', 'aria-label': 'Add evidence to the case' }, [
    field('Evidence', pick), field('Exhibit reference', ref, '(e.g. JS/1)'), field('Description', desc),
    field('Tags', tags, '(comma-separated)'),
    el('button', { type: 'submit', textContent: 'Add exhibit' }),
  ], async () => {
    if (!pick.value) throw new Error('Choose the evidence to add.');
    const body = { evidence: pick.value, reference: ref.value.trim() };
    if (desc.value.trim()) body.description = desc.value.trim();
    const t = tagsOf(tags.value);
    if (t.length) body.tags = t;
    await api(`/v1/cases/${c.id}/exhibits`, { method: 'POST', body });
    await page.reload();
  });
  const panel = el('details', { class: 'panel', id: 'add-exhibit-panel' }, el('summary', { textContent: 'Add evidence' }), f);
  let loaded = false;
  panel.addEventListener('toggle', guard(async () => {
    if (!panel.open || loaded) return;
    loaded = true;
    pick.replaceChildren(el('option', { value: '', textContent: 'Loading…' }));
    const doc = await api('/v1/evidence?limit=200');
    pick.replaceChildren(el('option', { value: '', textContent: doc.evidence.length ? 'Choose evidence…' : 'No evidence you can see' }));
    for (const e of doc.evidence) {
      pick.append(el('option', {
        value: e.id,
        textContent: `${e.filename || e.id.slice(0, 16) + '…'} · ${when(e.created_at)} · ${bytes(e.size)}`,
      }));
    }
  }, () => f.querySelector('.error')));
  return panel;
}

function membersSection(page, c, can) {
  const status = el('p', { class: 'status', role: 'status' });
  const body = el('tbody', { id: 'member-rows' });
  const roles = [['lead', 'lead'], ['investigator', 'investigator'], ['viewer', 'viewer']];
  const node = el('section', { 'aria-labelledby': 'members-title' },
    el('h3', { id: 'members-title', textContent: 'Members' }), status,
    el('div', { class: 'table-wrap' }, el('table', {}, thead('User', 'Role', 'Added', ''), body)));

  const setRole = async (username, role) => {
    await api(`/v1/cases/${c.id}/members/${encodeURIComponent(username)}`, { method: 'PUT', body: { role } });
    await page.reload();
  };

  async function load() {
    const list = await all(`/v1/cases/${c.id}/members`, 'members');
    if (!page.alive) return;
    body.replaceChildren();
    for (const m of list) {
      const role = el('td', { textContent: m.role });
      const actions = el('td', { class: 'actions' });
      if (can.edit) {
        const s = select('role', roles, m.role);
        s.setAttribute('aria-label', `Role of ${m.username}`);
        const change = el('button', { type: 'button', textContent: 'Change' });
        change.setAttribute('aria-label', `Change the role of ${m.username}`);
        change.addEventListener('click', guard(() => setRole(m.username, s.value), () => status));
        role.replaceChildren(s, change);
        const rm = el('button', { type: 'button', class: 'danger', textContent: 'Remove' });
        rm.setAttribute('aria-label', `Remove ${m.username} from the case`);
        rm.addEventListener('click', guard(async () => {
          await api(`/v1/cases/${c.id}/members/${encodeURIComponent(m.username)}`, { method: 'DELETE' });
          await page.reload();
        }, () => status));
        actions.append(rm);
      }
      body.append(el('tr', { 'data-member': m.username }, el('td', { textContent: m.username }), role,
        el('td', { textContent: `${when(m.added_at)} by ${m.added_by}` }), actions));
    }
    status.textContent = '';
  }

  if (can.edit) {
    const user = input({ name: 'username', required: true, autocomplete: 'off' });
    const role = select('role', roles, 'investigator');
    node.append(el('details', { class: 'panel' }, el('summary', { textContent: 'Add a member' }),
      form({ id: 'add-member', 'aria-label': 'Add a member' }, [
        field('Username', user), field('Case role', role),
        el('button', { type: 'submit', textContent: 'Add member' }),
      ], () => setRole(user.value.trim(), role.value))));
  }
  node.load = guard(load, () => status);
  return node;
}

async function renderCase(view, params, page) {
  const status = view.querySelector('#page-status');
  const id = params[0];
  status.textContent = 'Loading…';
  const c = await api(`/v1/cases/${id}`);
  if (!page.alive) return;
  status.textContent = '';
  const can = powers(c);
  const p = player();
  page.onLeave(p.hide);
  page.reload = async () => {
    if (page.alive) go(`/cases/${id}`); // the same hash renders the page afresh
  };
  const head = el('section', { 'aria-labelledby': 'case-title', class: 'case-head' },
    el('p', {}, el('a', { href: '#/cases', textContent: '← All cases' })),
    el('h2', { id: 'case-title', textContent: `${c.reference} · ${c.title}` }), details(c));
  if (can.edit) {
    head.append(el('details', { class: 'panel' }, el('summary', { textContent: 'Edit case' }), editForm(c, page.reload)));
  }
  if (can.manage) head.append(closeForm(c, page.reload));
  const exhibits = exhibitsSection(page, c, can, p);
  view.append(head, exhibits, p.node);
  const face = faceLink(c);
  if (face) view.append(face);
  const loads = [exhibits.load()];
  if (can.seeMembers) {
    const members = membersSection(page, c, can);
    const shares = caseShares(page, c, can, () => exhibits.exhibits);
    const subs = publicSubmissions(page, c, can, p);
    view.append(members, shares, subs);
    loads.push(members.load(), shares.load(), subs.load());
  }
  if (can.bundle) {
    const b = bundles(page, c.id, { canRequest: true });
    view.append(b);
    loads.push(b.load());
  }
  await Promise.all(loads);
}

route(/^\/cases$/, { nav: 'cases', roles: ['admin', 'officer'], render: renderList });
route(/^\/cases\/(\d+)$/, { nav: 'cases', roles: ['admin', 'officer'], render: renderCase });
