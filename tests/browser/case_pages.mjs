// SPDX-License-Identifier: Apache-2.0
// Drives the staff application's case pages in headless Chromium (Debian's
// chromium through playwright-core) the way people would:
//   node case_pages.mjs JOURNEY CONFIG.json
// JOURNEY is one of
//   officer     creates a case (first with a reference the server refuses),
//               adds evidence as an exhibit, adds a member, shares with a
//               prosecutor, requests a bundle, follows its progress bar to
//               done, downloads it; also checks the page at phone width;
//   prosecutor  signs in (lands on "Shared with me"), opens the live share,
//               plays an exhibit's preview, requests a bundle and downloads
//               it; opens an expired and a revoked share; sees a share end
//               while its page is open (403 share_ended);
//   disclosure  the prosecutor issues a defence link with a passcode; a
//               fresh context (the defence) opens it: a wrong passcode,
//               the right one, the exhibits with hashes, a poster and a
//               preview, the bundle download; the prosecutor revokes the
//               link and the same link then says "This link has ended";
//   roles       an investigator's and a viewer's controls on a case; the
//               lead pages and filters the case list, changes a member's
//               role, removes an exhibit, closes and reopens the case.
// CONFIG.json holds the URL, the users' passwords and the ids the journey
// needs (test_case_pages.py writes it). Prints one JSON line (the summary
// the Python test asserts on) and exits 0 when the journey ran to its end
// without console or page errors, 1 otherwise. Bounded by TIMEOUT_MS.
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { chromium, request: pwRequest } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const TIMEOUT_MS = 75_000;
const [journey, configPath] = process.argv.slice(2);
const cfg = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : null;
if (!cfg || !['officer', 'prosecutor', 'disclosure', 'roles'].includes(journey)) {
  console.error('usage: node case_pages.mjs officer|prosecutor|disclosure|roles CONFIG.json');
  process.exit(2);
}

const started = Date.now();
const summary = { ok: false, journey, step: 'launch', console_errors: [], page_errors: [], failed_requests: [], error_responses: [], axe: {} };
const done = (code) => {
  summary.ms = Date.now() - started;
  console.log(JSON.stringify(summary));
  process.exit(code);
};
const watchdog = setTimeout(() => {
  summary.error = `gave up after ${TIMEOUT_MS} ms at step "${summary.step}"`;
  done(1);
}, TIMEOUT_MS);

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');
const text = async (loc) => (await loc.innerText()).replace(/\s+/g, ' ').trim();

function watch(page, expected) {
  page.setDefaultTimeout(20_000);
  // The page asks GET /v1/me on load whether a session cookie holds one:
  // before signing in the answer is 401, which the browser logs.
  const probe = (url) => { try { return new URL(url).pathname === '/v1/me'; } catch { return false; } };
  page.on('console', (m) => {
    if (m.type() !== 'error' || expected.some((re) => re.test(m.text()))) return;
    if (probe(m.location().url) && /status of 401/.test(m.text())) return;
    summary.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => summary.page_errors.push(String(e)));
  page.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : '';
    if (why !== 'net::ERR_ABORTED') summary.failed_requests.push(`${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !(r.status() === 401 && probe(r.url()))) summary.error_responses.push(`${r.request().method()} ${new URL(r.url()).pathname}: ${r.status()}`);
  });
}

// axe-core on the page as it is (over CDP: the page's CSP stays as it is);
// the violations by view, for test_case_pages.py to judge.
async function axe(page, name) {
  await page.evaluate(AXE + '\n;0');
  const res = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  summary.axe[name] = res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
}

async function signIn(page, user) {
  summary.step = `sign in as ${user}`;
  await page.goto(cfg.url, { waitUntil: 'load' });
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(cfg.passwords[user]);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

// Polls until the image has loaded (a poster the cookie authorised).
const imageLoaded = (loc) => loc.evaluate((img) => new Promise((resolve) => {
  const check = () => (img.complete ? resolve(img.naturalWidth) : setTimeout(check, 100));
  check();
}));

// Follows a bundle row until done (or failed), noting every state and
// every progress value the page showed on the way.
async function followBundle(page, row) {
  const seen = await row.evaluate((tr) => new Promise((resolve, reject) => {
    const body = tr.parentElement;
    const id = tr.dataset.bundle;
    const states = [];
    const bars = [];
    const note = () => {
      const cur = body.querySelector(`tr[data-bundle="${id}"]`);
      if (!cur) return false;
      const st = cur.dataset.state;
      if (states[states.length - 1] !== st) states.push(st);
      const bar = cur.querySelector('progress');
      if (bar) bars.push([bar.position === -1 ? null : bar.value, bar.max]);
      return st === 'done' || st === 'failed';
    };
    if (note()) {
      resolve({ states, bars });
      return;
    }
    const timer = setTimeout(() => reject(new Error(`bundle ${id} not done in 50 s: ${states.join(' → ')}`)), 50_000);
    new MutationObserver((_, obs) => {
      if (note()) {
        clearTimeout(timer);
        obs.disconnect();
        resolve({ states, bars });
      }
    }).observe(body, { childList: true, subtree: true, attributes: true });
  }));
  return seen;
}

async function download(page, link) {
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 20_000 }), link.click()]);
  const path = await dl.path();
  const data = readFileSync(path);
  return { name: dl.suggestedFilename(), size: data.length, sha256: sha256(data) };
}

async function officer(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  const page = await context.newPage();
  watch(page, [/status of 4(00|09)/]); // the refused references below
  await signIn(page, cfg.officer);
  await page.locator('#evidence-rows tr').first().waitFor();
  summary.nav = await text(page.locator('#nav'));

  summary.step = 'case list';
  await page.getByRole('link', { name: 'Cases' }).click();
  await page.getByRole('heading', { name: 'Cases' }).waitFor();
  summary.hash_cases = new URL(page.url()).hash;
  await axe(page, 'case-list');

  summary.step = 'new case: refused references';
  await page.getByText('New case', { exact: true }).click();
  const create = page.locator('#new-case');
  await create.getByLabel('Reference').fill('not a reference');
  await create.getByLabel('Title').fill(cfg.case_title);
  await create.getByRole('button', { name: 'Create case' }).click();
  await create.locator('.error').filter({ hasText: /./ }).waitFor();
  summary.bad_reference_error = await text(create.locator('.error'));
  await create.getByLabel('Reference').fill(cfg.taken_reference);
  await create.getByRole('button', { name: 'Create case' }).click();
  await create.locator('.error').filter({ hasNotText: summary.bad_reference_error }).filter({ hasText: /./ }).waitFor();
  summary.taken_reference_error = await text(create.locator('.error'));

  summary.step = 'new case';
  await create.getByLabel('Reference').fill(cfg.case_reference);
  await create.getByLabel('Offence').fill('Burglary dwelling');
  await create.getByRole('button', { name: 'Create case' }).click();
  await page.locator('#case-title').waitFor();
  summary.case_id = Number(/#\/cases\/(\d+)$/.exec(page.url())[1]);
  summary.case_title = await text(page.locator('#case-title'));
  summary.case_details = await text(page.locator('.case-details'));

  summary.step = 'add evidence';
  await page.getByText('Add evidence', { exact: true }).click();
  const add = page.locator('#add-exhibit');
  await add.getByLabel('Evidence').locator(`option[value="${cfg.evidence}"]`).waitFor({ state: 'attached' });
  await add.getByLabel('Evidence').selectOption(cfg.evidence);
  await add.getByLabel('Exhibit reference').fill('JS/1');
  await add.getByLabel('Description').fill('Street camera, front of the house');
  await add.getByLabel('Tags').fill('street, night');
  await add.getByRole('button', { name: 'Add exhibit' }).click();
  const exRow = page.locator('#exhibit-rows tr[data-exhibit="JS/1"]');
  await exRow.waitFor();
  summary.exhibit_row = await text(exRow);
  summary.exhibit_hash = await text(exRow.locator('code.hash'));
  summary.poster_width = await imageLoaded(exRow.locator('img.poster'));

  summary.step = 'preview an exhibit';
  await exRow.getByRole('button', { name: 'Preview exhibit JS/1' }).click();
  await page.waitForFunction(() => (document.getElementById('video') || {}).readyState >= 2, null, { timeout: 20_000 });
  summary.player_title = await text(page.locator('#player-title'));

  summary.step = 'add a member';
  await page.getByText('Add a member', { exact: true }).click();
  const mem = page.locator('#add-member');
  await mem.getByLabel('Username').fill(cfg.member);
  await mem.getByLabel('Case role').selectOption('investigator');
  await mem.getByRole('button', { name: 'Add member' }).click();
  await page.locator(`#member-rows tr[data-member="${cfg.member}"]`).waitFor();
  summary.members = await page.locator('#member-rows tr').evaluateAll((rows) => rows.map((r) => [r.dataset.member, r.querySelector('select') ? r.querySelector('select').value : r.children[1].textContent]));

  summary.step = 'share with a prosecutor';
  await page.getByText('Share with a prosecutor', { exact: true }).click();
  const share = page.locator('#share-form');
  await share.getByLabel('Prosecutor').fill(cfg.prosecutor);
  await share.getByLabel('Allow downloading originals and bundles').check();
  await share.getByRole('button', { name: 'Share' }).click();
  const shareRow = page.locator('#share-rows tr').first();
  await shareRow.waitFor();
  summary.share_row = await text(shareRow);
  summary.share_state = await shareRow.getAttribute('data-state');

  summary.step = 'request a bundle';
  await page.getByRole('button', { name: 'Request bundle' }).click();
  const row = page.locator('table.bundles tbody tr').first();
  await row.waitFor();
  summary.bundle_id = Number(await row.getAttribute('data-bundle'));
  summary.bundle_first_state = await row.getAttribute('data-state');
  summary.bundle_seen = await followBundle(page, row);
  const doneRow = page.locator(`table.bundles tr[data-bundle="${summary.bundle_id}"]`);
  summary.bundle_row = await text(doneRow);
  summary.bundle_page_sha256 = await text(doneRow.locator('code.hash'));
  summary.bundle_bar = await doneRow.locator('progress').evaluate((b) => [b.value, b.max]);

  summary.step = 'download the bundle';
  summary.download = await download(page, doneRow.getByRole('link', { name: /Download bundle/ }));
  await axe(page, 'case-page');

  summary.step = 'phone width';
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  summary.phone = await page.evaluate(() => ({
    scroll_width: document.documentElement.scrollWidth,
    inner_width: window.innerWidth,
  }));
  await context.close();
}

async function prosecutor(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  const page = await context.newPage();
  watch(page, [/status of 403/]); // share_ended, on purpose at the end
  await signIn(page, cfg.prosecutor);

  summary.step = 'lands on Shared with me';
  await page.getByRole('heading', { name: 'Shared with me' }).waitFor();
  summary.landing_hash = new URL(page.url()).hash;
  summary.nav = await text(page.locator('#nav'));
  await page.locator('#share-list li').first().waitFor();
  await axe(page, 'shared-list');
  summary.shares = await page.locator('#share-list li').evaluateAll((lis) => lis.map((li) => ({
    id: Number(li.dataset.share), state: li.dataset.state, text: li.innerText.replace(/\s+/g, ' ').trim(),
  })));

  summary.step = 'expired share';
  await page.locator(`#share-list li[data-share="${cfg.expired_share}"] a`).click();
  await page.locator('#share-ended').waitFor();
  summary.expired_message = await text(page.locator('#share-ended'));
  await axe(page, 'share-ended');
  await page.getByRole('link', { name: '← Shared with me' }).click();

  summary.step = 'revoked share';
  await page.locator(`#share-list li[data-share="${cfg.revoked_share}"] a`).click();
  await page.locator('#share-ended').waitFor();
  summary.revoked_message = await text(page.locator('#share-ended'));
  await page.getByRole('link', { name: '← Shared with me' }).click();

  summary.step = 'live share';
  await page.locator(`#share-list li[data-share="${cfg.live_share}"] a`).click();
  const exRow = page.locator('#exhibit-rows tr').first();
  await exRow.waitFor();
  summary.share_terms = await text(page.locator('#share-terms'));
  summary.exhibit_rows = await page.locator('#exhibit-rows tr').evaluateAll((rows) => rows.map((r) => r.dataset.exhibit));
  summary.poster_width = await imageLoaded(exRow.locator('img.poster'));

  summary.step = 'play a preview';
  await exRow.getByRole('button', { name: /^Preview exhibit/ }).click();
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v !== null && v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 20_000 });
  summary.video = await page.locator('#video').evaluate((v) => ({ ready: v.readyState, duration: v.duration, src: new URL(v.src).pathname }));
  await axe(page, 'shared-case');

  summary.step = 'request a bundle';
  await page.getByRole('button', { name: 'Request bundle' }).click();
  const row = page.locator('table.bundles tbody tr').first();
  await row.waitFor();
  summary.bundle_id = Number(await row.getAttribute('data-bundle'));
  summary.bundle_seen = await followBundle(page, row);
  const doneRow = page.locator(`table.bundles tr[data-bundle="${summary.bundle_id}"]`);
  summary.bundle_page_sha256 = await text(doneRow.locator('code.hash'));
  summary.download = await download(page, doneRow.getByRole('link', { name: /Download bundle/ }));

  if (cfg.lead_token) {
    summary.step = 'the share ends while open';
    const api = await pwRequest.newContext({ baseURL: cfg.url.replace(/\/staff\/?$/, ''), ignoreHTTPSErrors: true, extraHTTPHeaders: { Authorization: `Bearer ${cfg.lead_token}` } });
    const r = await api.post(`/v1/cases/${cfg.live_case}/shares/${cfg.live_share}/revoke`, { data: {} });
    summary.revoke_status = r.status();
    await api.dispose();
    await page.getByRole('button', { name: 'Request bundle' }).click();
    await page.locator('#share-ended').waitFor();
    summary.ended_while_open = await text(page.locator('#share-ended'));
  }
  await context.close();
}

async function disclosure(browser) {
  const pctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await pctx.newPage();
  watch(page, []);
  page.on('dialog', (dlg) => dlg.accept()); // "Revoke this link?"
  await signIn(page, cfg.prosecutor);
  await page.locator(`#share-list li[data-share="${cfg.live_share}"] a`).click();
  await page.locator('#exhibit-rows tr').first().waitFor();

  summary.step = 'issue a link';
  await page.getByText('Disclose to the defence', { exact: true }).click();
  const f = page.locator('#disclosure-form');
  summary.choices = await f.locator('input[name=exhibit]').evaluateAll((xs) => xs.map((x) => [x.value, x.checked]));
  await f.getByLabel('Label').fill(cfg.label);
  await f.getByLabel('Require a passcode (given out of band)').check();
  await f.getByRole('button', { name: 'Issue link' }).click();
  await page.locator('#disclosure-link').waitFor();
  summary.link = await page.locator('#disclosure-link').inputValue();
  summary.passcode_shown = /^\d+$/.test(await text(page.locator('#disclosure-passcode')));
  const passcode = await text(page.locator('#disclosure-passcode'));
  await page.locator('#disclosure-rows tr').first().waitFor();
  summary.disclosure_id = Number(await page.locator('#disclosure-rows tr').first().getAttribute('data-disclosure'));
  summary.list_row = await text(page.locator('#disclosure-rows tr').first());
  await axe(page, 'disclosure-issued');

  summary.step = 'the defence opens the link';
  const dctx = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  const def = await dctx.newPage();
  watch(def, [/status of 401/, /status of 410/]); // the passcode asked for, wrong; the ended link
  await def.goto(summary.link, { waitUntil: 'load' });
  await def.locator('#passcode-view').waitFor();
  summary.passcode_prompt = await text(def.locator('#passcode-title'));
  await axe(def, 'disclosure-passcode');
  await def.getByRole('textbox', { name: /^Passcode/ }).fill(passcode === '0000000000' ? '1111111111' : '0000000000');
  await def.getByRole('button', { name: 'Open' }).click();
  await def.locator('#passcode-error').filter({ hasText: /./ }).waitFor();
  summary.wrong_passcode = await text(def.locator('#passcode-error'));
  await def.getByRole('textbox', { name: /^Passcode/ }).fill(passcode);
  await def.getByRole('button', { name: 'Open' }).click();
  const row = def.locator('#exhibit-rows tr').first();
  await row.waitFor();
  summary.defence_url = def.url();
  summary.defence_title = await text(def.locator('#case-title'));
  summary.defence_rows = await def.locator('#exhibit-rows tr').evaluateAll((rows) => rows.map((r) => ({
    reference: r.dataset.exhibit, sha256: r.querySelector('code.hash').textContent,
  })));
  summary.defence_poster_width = await imageLoaded(row.locator('img.poster'));
  summary.defence_cookie = (await dctx.cookies(new URL('/v1/disclosure/', summary.link).href))
    .filter((c) => c.name === 'dems_disclosure')
    .map((c) => ({ httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path }))[0] || null;

  summary.step = 'the defence plays a preview';
  await row.getByRole('button', { name: /^Preview exhibit/ }).click();
  await def.waitForFunction(() => {
    const v = document.getElementById('video');
    return v !== null && v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 20_000 });
  summary.defence_video = await def.locator('#video').evaluate((v) => new URL(v.src).pathname);
  await axe(def, 'disclosure-page');

  summary.step = 'the defence downloads the bundle';
  await def.locator('#bundle[data-state="done"]').waitFor({ timeout: 50_000 });
  summary.defence_bundle_sha256 = await text(def.locator('#bundle-sha256'));
  summary.download = await download(def, def.getByRole('link', { name: /Download the court bundle/ }));

  summary.step = 'revoke the link';
  await page.locator(`#disclosure-rows tr[data-disclosure="${summary.disclosure_id}"]`).getByRole('button', { name: /^Revoke/ }).click();
  await page.locator(`#disclosure-rows tr[data-disclosure="${summary.disclosure_id}"][data-state="revoked"]`).waitFor();

  summary.step = 'the same link has ended';
  const again = await dctx.newPage();
  watch(again, [/status of 410/]);
  await again.goto(summary.link, { waitUntil: 'load' });
  await again.locator('#ended-view').waitFor();
  summary.ended = await text(again.locator('#ended-view'));
  await axe(again, 'disclosure-ended');
  await dctx.close();
  await pctx.close();
}

// Which of the case page's controls a user is shown.
async function controls(page) {
  return page.evaluate(() => {
    const has = (sel) => document.querySelector(sel) !== null;
    const button = (name) => [...document.querySelectorAll('button')].some((b) => b.textContent === name);
    return {
      edit_case: has('form.edit-case'),
      close_case: button('Close case') || button('Reopen case'),
      add_exhibit: has('#add-exhibit'),
      remove_exhibit: has('#exhibit-rows button.danger'),
      preview: has('#exhibit-rows button'),
      members: has('#member-rows'),
      member_controls: has('#member-rows select') || has('#add-member'),
      shares: has('#share-rows'),
      share_form: has('#share-form'),
      revoke_share: has('#share-rows button'),
      bundles: has('table.bundles'),
      request_bundle: button('Request bundle'),
    };
  });
}

async function openCase(page, id) {
  await page.goto(`${cfg.url}#/cases/${id}`);
  await page.locator('#case-title').waitFor();
  await page.locator('#exhibit-rows tr').first().waitFor();
  if (await page.locator('#member-rows').count()) await page.locator('#member-rows tr').first().waitFor();
}

async function roles(browser) {
  for (const who of [cfg.investigator, cfg.viewer]) {
    summary.step = `controls of ${who}`;
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    watch(page, []);
    await signIn(page, who);
    await page.locator('#evidence-list').waitFor();
    await openCase(page, cfg.case_id);
    summary[`controls_${who}`] = await controls(page);
    await context.close();
  }

  summary.step = 'case list: paging';
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  watch(page, []);
  page.on('dialog', (dlg) => dlg.accept()); // "Remove exhibit …?"
  await signIn(page, cfg.officer);
  await page.locator('#evidence-list').waitFor();
  await page.getByRole('link', { name: 'Cases' }).click();
  await page.locator('#case-rows tr').first().waitFor();
  summary.first_page = await page.locator('#case-rows tr').count();
  summary.more_visible = await page.locator('#more-cases').isVisible();
  await page.locator('#more-cases').click();
  await page.waitForFunction((n) => document.querySelectorAll('#case-rows tr').length > n, summary.first_page);
  summary.all_rows = await page.locator('#case-rows tr').count();
  summary.more_after = await page.locator('#more-cases').isVisible();

  summary.step = 'case list: filters';
  const search = page.getByRole('search', { name: 'Search cases' });
  await search.getByLabel('Search').fill(cfg.case_query);
  await search.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#case-rows tr').length === 1);
  summary.query_rows = await page.locator('#case-rows tr').evaluateAll((rows) => rows.map((r) => r.cells[0].textContent));
  await search.getByLabel('Search').fill('');
  await search.getByLabel('Tag').fill(cfg.case_tag);
  await search.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#case-rows tr').length === 1);
  summary.tag_rows = await page.locator('#case-rows tr').evaluateAll((rows) => rows.map((r) => r.cells[0].textContent));
  await search.getByLabel('Tag').fill('');
  await search.getByLabel('Status').selectOption('closed');
  await search.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No cases found.').waitFor();
  summary.closed_before = await page.locator('#case-rows tr').count();

  summary.step = 'lead: controls, member role, exhibit removal';
  await openCase(page, cfg.case_id);
  summary[`controls_${cfg.officer}`] = await controls(page);
  const inv = page.locator(`#member-rows tr[data-member="${cfg.investigator}"]`);
  await inv.getByLabel(`Role of ${cfg.investigator}`, { exact: true }).selectOption('viewer');
  await inv.getByRole('button', { name: `Change the role of ${cfg.investigator}` }).click();
  await page.waitForFunction((u) => {
    const s = document.querySelector(`#member-rows tr[data-member="${u}"] select`);
    return s && s.value === 'viewer';
  }, cfg.investigator);
  await page.getByRole('button', { name: `Remove exhibit ${cfg.exhibit}` }).click();
  await page.locator('#exhibit-rows').getByText('No exhibits.').or(page.getByText('No exhibits.')).waitFor();
  summary.exhibits_after_removal = await page.locator('#exhibit-rows tr').count();

  summary.step = 'lead: close and reopen';
  await page.getByLabel('Reason').fill('No further action');
  await page.getByRole('button', { name: 'Close case' }).click();
  await page.getByRole('button', { name: 'Reopen case' }).waitFor();
  summary.closed_details = await text(page.locator('.case-details'));
  summary.controls_closed = await controls(page);
  await page.getByRole('button', { name: 'Reopen case' }).click();
  await page.getByRole('button', { name: 'Close case' }).waitFor();
  summary.reopened_details = await text(page.locator('.case-details'));

  summary.step = 'phone width: the case page';
  await page.setViewportSize({ width: 360, height: 740 });
  await page.waitForTimeout(200);
  summary.phone = await page.evaluate(() => ({ scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth }));
  await context.close();
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--mute-audio', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync'],
    timeout: 30_000,
  });
  summary.browser = browser.version();
  const journeys = { officer, prosecutor, disclosure, roles };
  await journeys[journey](browser);
  summary.step = 'done';
  summary.ok = summary.console_errors.length === 0 && summary.page_errors.length === 0 &&
    summary.failed_requests.length === 0;
} catch (e) {
  summary.error = String(e && e.message ? e.message : e).split('\n')[0];
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
}
done(summary.ok ? 0 : 1);
