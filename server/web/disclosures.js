// SPDX-License-Identifier: Apache-2.0
// Disclosure to the defence, the prosecutor's side (docs/api.md,
// "Disclosure to the defence"): on a shared case whose share allows
// downloads, issue a read-only link for chosen exhibits (expiry, label,
// optional passcode), see the full link and the passcode once, list the
// links issued with their state, and revoke one. The holder's page is
// disclosure.html (disclosure.js).
import { api, all } from './api.js';
import { el, field, form, guard, when, isoFromLocal, localIn, thead } from './ui.js';

// The section for case c; refs() lists the references shown on the page
// (the exhibits the share covers); onError sees share_ended first.
export function disclosures(page, c, refs, onError) {
  const status = el('p', { class: 'status', role: 'status' });
  const body = el('tbody', { id: 'disclosure-rows' });
  const issued = el('div', { id: 'disclosure-issued', role: 'status', 'aria-live': 'polite' });
  const node = el('section', { 'aria-labelledby': 'disclosures-title' },
    el('h3', { id: 'disclosures-title', textContent: 'Disclosure to the defence' }),
    el('p', { class: 'hint', textContent: 'A read-only link for the defence: the chosen exhibits, their previews, hashes and a court bundle, until the link expires or you revoke it. Every use is on the record.' }),
    issued, status,
    el('div', { class: 'table-wrap' }, el('table', {},
      thead('Label', 'Exhibits', 'Expires', 'State', 'Opened', ''), body)));

  const fail = (e) => {
    if (onError && onError(e)) return true;
    return false;
  };

  async function load() {
    const list = await all(`/v1/cases/${c.id}/disclosures`, 'disclosures');
    if (!page.alive) return;
    body.replaceChildren();
    for (const x of list) {
      const actions = el('td', { class: 'actions' });
      if (x.state === 'live') {
        const b = el('button', { type: 'button', class: 'danger', textContent: 'Revoke' });
        b.setAttribute('aria-label', `Revoke the link ${x.label || x.id}`);
        b.addEventListener('click', guard(async () => {
          if (!window.confirm('Revoke this link? Its holder loses access at once.')) return;
          await api(`/v1/cases/${c.id}/disclosures/${x.id}/revoke`, { method: 'POST', body: {} });
          await load();
        }, () => status));
        actions.append(b);
      }
      const state = x.state === 'revoked' ? `revoked ${when(x.revoked_at)}` : x.state;
      body.append(el('tr', { 'data-disclosure': String(x.id), 'data-state': x.state },
        el('td', { textContent: `${x.label || '(no label)'}${x.passcode_required ? ' · passcode' : ''}` }),
        el('td', { textContent: (x.exhibits || []).join(', ') }),
        el('td', { textContent: when(x.expires_at) }),
        el('td', { class: `state-${x.state}`, textContent: state }),
        el('td', { textContent: x.opened ? `${x.opened} × (last ${when(x.last_opened_at)})` : 'never' }),
        actions));
    }
    status.textContent = list.length ? '' : 'No links issued.';
  }

  // The link and passcode, shown this once.
  function showIssued(x) {
    const link = location.origin + x.path;
    const url = el('input', { id: 'disclosure-link', readOnly: true, value: link, class: 'secret' });
    const copy = el('button', { type: 'button', textContent: 'Copy link' });
    copy.addEventListener('click', guard(async () => {
      url.select();
      if (navigator.clipboard) await navigator.clipboard.writeText(link);
      copy.textContent = 'Copied';
    }, () => status));
    issued.replaceChildren(el('section', { class: 'issued' },
      el('h4', { textContent: 'Link issued — copy it now: it is not shown again' }),
      field('Link for the defence', url), copy,
      x.passcode ? el('div', {},
        el('p', { textContent: 'Passcode (give it separately, e.g. by phone; it is not shown again):' }),
        el('p', { id: 'disclosure-passcode', class: 'secret', textContent: x.passcode })) : null,
      el('p', { class: 'hint', textContent: `Expires ${when(x.expires_at)}. A court bundle of these exhibits is being made for the holder.` })));
  }

  const boxes = el('fieldset', { class: 'choices' }, el('legend', { textContent: 'Exhibits to disclose' }));
  const expires = el('input', { type: 'datetime-local', name: 'expires_at', step: 1, value: localIn(14) });
  const label = el('input', { name: 'label', placeholder: 'e.g. Smith & Co, defence' });
  const passcode = el('input', { type: 'checkbox', name: 'passcode', checked: true });
  const f = form({ id: 'disclosure-form', 'aria-label': 'Disclose to the defence' }, [
    boxes, field('Label', label, '(who it is for)'), field('Expires', expires, '(your local time)'),
    el('label', { class: 'check' }, passcode, ' Require a passcode (given out of band)'),
    el('button', { type: 'submit', textContent: 'Issue link' }),
  ], async () => {
    const chosen = [...boxes.querySelectorAll('input:checked')].map((b) => b.value);
    if (!chosen.length) throw new Error('Choose at least one exhibit.');
    const at = isoFromLocal(expires.value);
    if (!at) throw new Error('Enter when the link expires.');
    const body = { exhibits: chosen, expires_at: at, passcode: passcode.checked };
    if (label.value.trim()) body.label = label.value.trim();
    let x;
    try {
      x = await api(`/v1/cases/${c.id}/disclosures`, { method: 'POST', body });
    } catch (e) {
      if (fail(e)) return;
      throw e;
    }
    showIssued(x);
    await load();
  });
  const panel = el('details', { class: 'panel', id: 'disclosure-panel' }, el('summary', { textContent: 'Disclose to the defence' }), f);
  panel.addEventListener('toggle', () => {
    if (!panel.open) return;
    boxes.replaceChildren(boxes.firstChild);
    for (const r of refs()) {
      boxes.append(el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'exhibit', value: r, checked: true }), ` ${r}`));
    }
  });
  node.insertBefore(panel, issued);

  node.load = guard(async () => {
    try {
      await load();
    } catch (e) {
      if (fail(e)) return;
      throw e;
    }
  }, () => status);
  return node;
}
