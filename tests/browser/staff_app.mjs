// SPDX-License-Identifier: Apache-2.0
// Drives the staff application's upload, find, evidence, account and
// landing pages in headless Chromium (Debian's chromium through
// playwright-core) the way people would, runs axe-core on every view and
// keeps a screenshot of each:
//   node staff_app.mjs JOURNEY CONFIG.json
// JOURNEY is one of
//   officer  signs in; refused details are marked before anything is sent;
//            uploads three files (one over 200 MB, throttled so it can be
//            paused midway), pauses and resumes it, has the session revoked
//            under it (signs in again over the page, the upload carries
//            on), pauses again and reloads the page (still signed in; the
//            upload waits for its file; choosing it again resumes it at the
//            server's offset); finds the files by filters (the address
//            holds the query: a reload shows the same), pages through the
//            list, has the session revoked during a search; opens the clip
//            (its preview appears without a reload), plays it, copies and
//            checks its hash, downloads the original and sees DOWNLOADED
//            in its custody history; sees why the big file has no preview;
//            enrols TOTP (a wrong code first) with codes computed here,
//            makes and revokes an API token, signs out and signs in with a
//            code; checks the focus ring's contrast and the tablet layout;
//   roles    a prosecutor lands on "Shared with me" (nothing yet), an
//            administrator on the overview (a failed preview, its job);
//            a bookmarked search the server refuses shows its message.
// CONFIG.json holds the URL, users, files and where screenshots go
// (test_staff_app.py writes it). Prints one JSON line (the summary the
// Python test asserts on) and exits 0 when the journey ran to its end
// without unexpected console or page errors, 1 otherwise.
import { createRequire } from 'node:module';
import { createHash, createHmac } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium, request: pwRequest } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const TIMEOUT_MS = 170_000;
const [journey, configPath] = process.argv.slice(2);
const cfg = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : null;
if (!cfg || !['officer', 'roles'].includes(journey)) {
  console.error('usage: node staff_app.mjs officer|roles CONFIG.json');
  process.exit(2);
}
mkdirSync(cfg.shots, { recursive: true });
const base = cfg.url.replace(/\/staff\/?$/, '');

const started = Date.now();
const summary = {
  ok: false, journey, step: 'launch', console_errors: [], page_errors: [], failed_requests: [],
  error_responses: [], axe: {}, shots: [], tablet: {},
};
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
const step = (s) => {
  summary.step = s;
};

// RFC 6238 with the server's parameters: HMAC-SHA1, 30 s, 6 digits.
function totp(secret, offset = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of secret.replace(/[\s=]/g, '').toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + offset));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

function watch(page) {
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // A refused request is also logged by the browser; the responses list
    // below holds each, and the Python test says which are expected.
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) return;
    summary.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => summary.page_errors.push(String(e)));
  page.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : '';
    if (why !== 'net::ERR_ABORTED') summary.failed_requests.push(`${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) summary.error_responses.push(`${r.request().method()} ${new URL(r.url()).pathname.replace(/[0-9a-f]{32,64}/, 'ID')}: ${r.status()}`);
  });
}

// axe-core on the page as it is (evaluated over CDP, so the page's CSP,
// which forbids inline scripts, is left as it is).
async function axe(page, name) {
  await page.evaluate(AXE + '\n;0');
  const res = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  summary.axe[name] = res.violations.map((v) => ({
    id: v.id, impact: v.impact, nodes: v.nodes.length, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
  }));
}

async function shot(page, name) {
  await page.screenshot({ path: join(cfg.shots, `${name}.png`), fullPage: true });
  summary.shots.push(name);
}

async function look(page, name) {
  await axe(page, name);
  await shot(page, name);
}

async function newPage(browser, extra = {}) {
  const context = await browser.newContext(Object.assign({
    ignoreHTTPSErrors: true, acceptDownloads: true, timezoneId: cfg.timezone,
    viewport: { width: 1280, height: 800 }, locale: 'en-US',
  }, extra));
  const page = await context.newPage();
  watch(page);
  return { context, page };
}

async function signIn(page, user, code) {
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(cfg.passwords[user]);
  if (code) await page.getByLabel(/^One-time code/).fill(code);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

// The session is revoked behind the page's back (as an expiry would end it).
async function revokeSession(context) {
  const cookie = (await context.cookies(base + '/v1/')).find((c) => c.name === 'dems_session');
  const api = await pwRequest.newContext({ ignoreHTTPSErrors: true });
  const r = await api.post(base + '/v1/auth/logout', { headers: { Authorization: `Bearer ${cookie.value}` } });
  await api.dispose();
  return r.status();
}

// The sign-in form over the page: what it says, and the page kept beneath.
async function reauth(page, user) {
  await page.locator('#login-view').waitFor({ state: 'visible' });
  const seen = {
    title: await text(page.locator('#login-title')),
    message: await text(page.locator('#login-error')),
    username: await page.getByLabel('Username').inputValue(),
    view_kept: await page.evaluate(() => document.getElementById('view').children.length > 0 && document.getElementById('view').inert),
  };
  await page.getByLabel('Password').fill(cfg.passwords[user]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-view').waitFor({ state: 'hidden' });
  return seen;
}

const item = (page, name) => page.locator('#upload-list li', { has: page.locator('.name', { hasText: new RegExp(`^${name.replace(/\./g, '\\.')}$`) }) });
const itemState = (li) => li.evaluate((n) => {
  const bar = n.querySelector('progress');
  return { state: n.dataset.state, value: bar.value, max: bar.max, text: n.querySelector('.upload-state').textContent, resumed: n.dataset.resumedFrom || null };
});
// Waits until test(itemState) holds, polling from here (a predicate
// evaluated in the page would need eval, which its CSP rightly forbids).
async function waitItem(li, test, timeout = 60_000) {
  const until = Date.now() + timeout;
  let st = null;
  for (;;) {
    st = await itemState(li).catch(() => null);
    if (st && test(st)) return st;
    if (Date.now() > until) throw new Error(`upload item not as awaited after ${timeout} ms: ${JSON.stringify(st)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const sentAtLeast = (f) => (st) => st.state === 'uploading' && st.value >= f * st.max;
const inState = (name) => (st) => st.state === name;

// Focus ring: its colour against what is behind the focused element.
async function focusRing(page, where) {
  return page.evaluate((w) => {
    const el = document.activeElement;
    const cs = getComputedStyle(el);
    const rgb = (s) => (s.match(/[\d.]+/g) || []).slice(0, 4).map(Number);
    let bgEl = el.parentElement, bg = null;
    while (bgEl) {
      const c = rgb(getComputedStyle(bgEl).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0)) {
        bg = c;
        break;
      }
      bgEl = bgEl.parentElement;
    }
    bg = bg || [255, 255, 255];
    const lum = ([r, g, b]) => {
      const f = (v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const a = lum(rgb(cs.outlineColor)), b = lum(bg);
    return {
      where: w, element: `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} ${el.textContent.trim().slice(0, 20)}`,
      style: cs.outlineStyle, width: parseFloat(cs.outlineWidth), color: cs.outlineColor,
      background: `rgb(${bg.slice(0, 3).join(', ')})`,
      contrast: Math.round(((Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)) * 100) / 100,
    };
  }, where);
}

async function tablet(page, name) {
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.waitForTimeout(200);
  const m = await page.evaluate(() => ({ scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth }));
  summary.tablet[name] = m;
  await shot(page, `tablet-${name}`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

// Local wall-clock text for a datetime-local input, in the test's zone.
function localInput(iso) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', {
    timeZone: cfg.timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit',
    minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
}

async function fillDefaults(page) {
  const d = page.locator('fieldset.defaults');
  await d.getByLabel(/^Device serial/).fill(cfg.device);
  await d.getByLabel(/^Recording start/).fill(localInput(cfg.recording_start));
  await d.getByLabel(/^Recording end/).fill(localInput(cfg.recording_end));
  await d.getByLabel(/^Description/).fill(cfg.description);
  await d.getByLabel(/^Description/).blur();
}

async function officer(browser) {
  const { context, page } = await newPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
  const creations = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/uploads') creations.push(r.url());
  });
  const user = cfg.officer;

  step('sign-in page');
  await page.goto(cfg.url, { waitUntil: 'load' });
  await page.getByLabel('Username').waitFor();
  await look(page, 'sign-in');
  await signIn(page, user);
  await page.locator('#find-title').waitFor();
  summary.landing_hash = new URL(page.url()).hash;
  summary.nav = await text(page.locator('#nav'));

  step('focus ring');
  await page.locator('#nav a').first().focus();
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Tab'); // keyboard focus: :focus-visible
  summary.focus = [await focusRing(page, 'header')];
  await page.locator('#find-title').click();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement.tagName === 'BUTTON' && document.activeElement.closest('main'))) break;
  }
  summary.focus.push(await focusRing(page, 'main button'));
  await page.locator('form.filters input[name=q]').focus();
  await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Tab');
  summary.focus.push(await focusRing(page, 'main input'));

  step('upload: details refused before sending');
  await page.getByRole('link', { name: 'Upload', exact: true }).click();
  await page.locator('#upload-title').waitFor();
  const defaults = page.locator('fieldset.defaults');
  await defaults.getByLabel(/^Device serial/).fill('CAM 42');
  await defaults.getByLabel(/^Device serial/).blur();
  summary.bad_serial = await text(page.locator('fieldset.defaults .field-error').filter({ hasText: /./ }).first());
  await fillDefaults(page);
  summary.defaults_errors = await page.locator('fieldset.defaults .field-error').evaluateAll((xs) => xs.map((x) => x.textContent).filter(Boolean));

  step('upload: three files, one refused');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  // Slow uploads down (the big file is paused midway below).
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: cfg.throttle });
  await page.locator('#file-input').setInputFiles([cfg.files.big.path, cfg.files.clip.path, cfg.files.image.path]);
  const big = item(page, cfg.files.big.name), clip = item(page, cfg.files.clip.name), image = item(page, cfg.files.image.name);
  await big.waitFor();
  // The clip's own recording end, before its start: refused here.
  await clip.locator('summary').click();
  const clipEnd = clip.getByLabel(/^Recording end/);
  await clipEnd.fill(localInput(new Date(Date.parse(cfg.recording_start) - 60_000).toISOString()));
  await clipEnd.blur();
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  summary.refused_item = { state: (await itemState(clip)).state, error: await text(clip.locator('.field-error').filter({ hasText: /./ })), invalid: await clipEnd.getAttribute('aria-invalid') };
  summary.start_status = await text(page.locator('#upload-status'));

  step('upload: pause the big file midway');
  await waitItem(big, sentAtLeast(0.1));
  await big.getByRole('button', { name: `Pause ${cfg.files.big.name}` }).focus();
  await page.keyboard.press('Enter'); // by keyboard
  await waitItem(big, inState('paused'));
  const paused = await itemState(big);
  const uploadUrl = await page.evaluate((name) => {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      const u = k.startsWith('dems-upload::') ? JSON.parse(localStorage.getItem(k)) : null;
      if (u && u.metadata && u.metadata.filename === name) return u.uploadUrl;
    }
    return null;
  }, cfg.files.big.name);
  summary.upload_url = uploadUrl;
  const offsetAt = async () => (await (await context.request.get(new URL(uploadUrl, base).href)).json()).offset;
  // Bytes already on their way when the request was stopped still land
  // (a slow server, under ASan, takes a moment); then nothing moves.
  let o1 = await offsetAt();
  for (let i = 0; i < 20; i++) {
    await page.waitForTimeout(250);
    const o = await offsetAt();
    if (o === o1) break;
    o1 = o;
  }
  await page.waitForTimeout(1000);
  const o2 = await offsetAt();
  summary.pause = { text: paused.text, ui_sent: paused.value, size: paused.max, server_offset: o1, server_offset_later: o2 };
  await waitItem(image, inState('done'));
  await look(page, 'upload-paused');

  step('upload: the session ends while paused');
  summary.revoke_1 = await revokeSession(context);
  await big.getByRole('button', { name: `Resume ${cfg.files.big.name}` }).click();
  summary.reauth_upload = await reauth(page, user);
  await waitItem(big, sentAtLeast(0.3));
  await big.getByRole('button', { name: `Pause ${cfg.files.big.name}` }).click();
  await waitItem(big, inState('paused'));
  summary.before_reload = await itemState(big);
  summary.before_reload.server_offset = await offsetAt();

  step('upload: reload');
  await page.reload({ waitUntil: 'load' });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await page.locator('#upload-title').waitFor();
  summary.after_reload = {
    hash: new URL(page.url()).hash,
    signed_in: await text(page.locator('#who')),
    login_visible: await page.locator('#login-view').isVisible(),
  };
  await waitItem(big, inState('waiting'));
  summary.after_reload.big = await itemState(big);
  await shot(page, 'upload-after-reload');

  step('upload: choose the files again');
  await fillDefaults(page);
  await page.locator('#file-input').setInputFiles([cfg.files.big.path, cfg.files.clip.path]);
  await waitItem(clip, inState('ready'));
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await waitItem(big, inState('done'), 120_000);
  await waitItem(clip, inState('done'));
  summary.after_resume = await itemState(big);
  summary.creations = creations.length;
  summary.upload_rows = await page.locator('#upload-list li').evaluateAll((lis) => lis.map((li) => ({
    name: li.querySelector('.name').textContent, state: li.dataset.state,
    link: li.querySelector('a.evidence-link') && !li.querySelector('a.evidence-link').hidden ? li.querySelector('a.evidence-link').getAttribute('href') : null,
  })));
  summary.upload_summary = await text(page.locator('#upload-summary'));
  summary.upload_live = await page.locator('#upload-summary').getAttribute('aria-live');
  await look(page, 'upload-done');
  await tablet(page, 'upload');

  step('upload: a file dropped, one too large, one altered on its way');
  await defaults.getByLabel(/^Description/).fill('');
  await defaults.getByLabel(/^Description/).blur();
  const dt = await page.evaluateHandle(() => {
    const d = new DataTransfer();
    d.items.add(new File(['dropped on the page\n'.repeat(100)], 'dropped.txt', { type: 'text/plain' }));
    return d;
  });
  await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer: dt });
  const dropped = item(page, 'dropped.txt');
  summary.dropped = (await waitItem(dropped, inState('ready'))).text;
  await dropped.getByRole('button', { name: 'Remove dropped.txt' }).click();
  await dropped.waitFor({ state: 'detached' });
  await page.locator('#file-input').setInputFiles([cfg.files.huge.path]);
  const huge = item(page, cfg.files.huge.name);
  summary.too_large = await waitItem(huge, inState('failed'));
  summary.too_large.retry = await huge.getByRole('button', { name: /^Retry/ }).isVisible();
  // The declared hash is changed on its way: the server refuses the bytes.
  const wrong = Buffer.from('0'.repeat(64)).toString('base64');
  await page.route('**/v1/uploads', (route) => {
    const r = route.request();
    if (r.method() !== 'POST') return route.continue();
    const h = r.headers();
    h['upload-metadata'] = h['upload-metadata'].replace(/sha256 [^,]+/, `sha256 ${wrong}`);
    return route.continue({ headers: h });
  });
  await page.locator('#file-input').setInputFiles([cfg.files.altered.path]);
  const altered = item(page, cfg.files.altered.name);
  await waitItem(altered, inState('ready'));
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  summary.mismatch = await waitItem(altered, inState('failed'));
  await page.unroute('**/v1/uploads');
  await altered.getByRole('button', { name: `Retry ${cfg.files.altered.name}` }).click();
  summary.mismatch_retried = await waitItem(altered, inState('done'));
  await shot(page, 'upload-failures');

  step('find: paging');
  await page.getByRole('link', { name: 'Evidence', exact: true }).click();
  await page.locator('#evidence-rows tr').first().waitFor();
  summary.page1 = { rows: await page.locator('#evidence-rows tr').count(), count: await text(page.locator('#result-count')) };
  await page.locator('#next-page').click();
  await page.waitForFunction(() => /cursor=/.test(location.hash) && document.querySelector('#first-page'));
  await page.waitForFunction(() => !document.querySelector('#evidence-rows').hasAttribute('aria-busy'));
  summary.page2 = { rows: await page.locator('#evidence-rows tr').count(), next: await page.locator('#next-page').count() };
  await page.goBack();
  await page.waitForFunction(() => !/cursor=/.test(location.hash) && !document.querySelector('#first-page'));

  step('find: filters in the address');
  const filters = page.getByRole('search', { name: 'Find evidence' });
  await filters.locator('input[name=device]').fill(cfg.device);
  await filters.getByLabel('Type').selectOption('video/');
  await filters.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => /device=/.test(location.hash));
  await page.waitForFunction(() => !document.querySelector('#evidence-rows').hasAttribute('aria-busy') && document.querySelectorAll('#evidence-rows tr').length === 1);
  const rowsOf = () => page.locator('#evidence-rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.id));
  summary.by_device = { hash: new URL(page.url()).hash, rows: await rowsOf() };
  await page.reload({ waitUntil: 'load' });
  await page.locator('#evidence-rows tr').first().waitFor();
  summary.by_device_reloaded = {
    rows: await rowsOf(),
    device: await filters.locator('input[name=device]').inputValue(),
    type: await filters.getByLabel('Type').inputValue(),
  };
  await look(page, 'find');
  await tablet(page, 'find');

  step('find: the session ends during a search');
  summary.revoke_2 = await revokeSession(context);
  await filters.locator('input[name=device]').fill('');
  await filters.getByLabel('Type').selectOption('');
  await filters.getByLabel(/^Text/).fill(cfg.description.split(',')[1].trim().toUpperCase());
  await filters.getByLabel('Sort').selectOption('oldest');
  await filters.getByRole('button', { name: 'Search' }).click();
  summary.reauth_find = await reauth(page, user);
  await page.waitForFunction(() => !document.querySelector('#evidence-rows').hasAttribute('aria-busy') && document.querySelectorAll('#evidence-rows tr').length === 3);
  summary.by_text_oldest = { hash: new URL(page.url()).hash, rows: await rowsOf(), q: await filters.getByLabel(/^Text/).inputValue() };
  await filters.getByLabel('Sort').selectOption('newest');
  await filters.getByRole('button', { name: 'Search' }).click();
  await page.waitForFunction(() => !/sort=/.test(location.hash));
  await page.waitForFunction(() => !document.querySelector('#evidence-rows').hasAttribute('aria-busy') && document.querySelectorAll('#evidence-rows tr').length === 3);
  summary.by_text_newest = await rowsOf();

  step('evidence page: the clip');
  await page.evaluate(() => {
    window.__same_document = true;
  });
  await page.locator(`#evidence-rows a[data-id="${cfg.files.clip.sha256}"]`).click();
  await page.locator('#evidence-title').waitFor();
  summary.clip_first = await page.evaluate(() => (document.getElementById('no-preview-title') ? document.getElementById('no-preview-title').textContent : 'player'));
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v && v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 90_000 });
  summary.same_document = await page.evaluate(() => window.__same_document === true);
  summary.clip_facts = await text(page.locator('#facts'));
  summary.clip_times = await page.locator('#facts time').evaluateAll((ts) => ts.map((t) => ({ text: t.textContent, title: t.title, datetime: t.dateTime })));
  summary.clip_hash = await text(page.locator('#evidence-sha256'));
  await page.getByRole('button', { name: 'Copy the SHA-256' }).click();
  summary.clipboard = await page.evaluate(() => navigator.clipboard.readText());
  summary.probe = await text(page.locator('#probe'));
  summary.tiles = await page.locator('#strip button').count();
  summary.played = await page.locator('#video').evaluate(async (v) => {
    v.muted = true;
    await v.play();
    const t0 = Date.now();
    while (v.currentTime < 0.5 && Date.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 100));
    v.pause();
    return v.currentTime;
  });
  await look(page, 'evidence');
  await tablet(page, 'evidence');

  step('evidence page: download the original');
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.locator('#download').click()]);
  const data = readFileSync(await dl.path());
  summary.download = { name: dl.suggestedFilename(), size: data.length, sha256: sha256(data) };
  await page.locator('#custody-rows tr[data-type="DOWNLOADED"]').waitFor({ timeout: 15_000 });
  summary.custody = await page.locator('#custody-rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.type));
  summary.custody_text = await text(page.locator('#custody-rows tr[data-type="DOWNLOADED"]'));

  step('evidence page: no preview of the big file');
  await page.goto(`${cfg.url}#/evidence/${cfg.files.big.sha256}`);
  await page.locator('#evidence-title').waitFor();
  await page.waitForFunction(() => /^No preview can be made/.test((document.getElementById('no-preview-text') || {}).textContent || ''), null, { timeout: 90_000 });
  summary.no_preview = await text(page.locator('#no-preview'));
  summary.big_facts = await text(page.locator('#facts'));
  await look(page, 'evidence-no-preview');

  step('missing evidence');
  await page.goto(`${cfg.url}#/evidence/${'0'.repeat(64)}`);
  await page.locator('#missing-title').waitFor();
  summary.missing = await text(page.locator('#missing-title').locator('..'));

  step('account: TOTP');
  await page.getByRole('link', { name: 'Account', exact: true }).click();
  await page.locator('#account-title').waitFor();
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click();
  await page.locator('svg.qr').waitFor();
  summary.qr = await page.locator('svg.qr').evaluate((s) => ({ label: s.getAttribute('aria-label'), viewbox: s.getAttribute('viewBox'), modules: (s.querySelector('path').getAttribute('d').match(/M/g) || []).length }));
  const secret = (await text(page.locator('#totp-secret'))).replace(/\s/g, '');
  summary.secret_length = secret.length;
  await look(page, 'account-totp');
  const code = totp(secret);
  const confirm = page.locator('#totp-confirm');
  await confirm.getByLabel(/^Code from the app/).fill(String((Number(code) + 500000) % 1000000).padStart(6, '0'));
  await confirm.getByRole('button', { name: 'Turn on' }).click();
  await confirm.locator('.error').filter({ hasText: /./ }).waitFor();
  summary.wrong_code = await text(confirm.locator('.error'));
  await confirm.getByLabel(/^Code from the app/).fill(totp(secret));
  await confirm.getByRole('button', { name: 'Turn on' }).click();
  await page.getByText('Two-step sign-in is on.').waitFor();
  summary.totp_state = await text(page.locator('#totp-state'));

  step('account: an API token');
  await page.getByText('New API token', { exact: true }).click();
  await page.locator('#token-form').getByLabel(/^Name/).fill('evidence sync');
  await page.getByRole('button', { name: 'Create token' }).click();
  await page.locator('#token-value').waitFor();
  const token = await text(page.locator('#token-value'));
  summary.token_prefix = token.slice(0, 9);
  const api = await pwRequest.newContext({ ignoreHTTPSErrors: true });
  const asToken = async () => (await api.get(base + '/v1/me', { headers: { Authorization: `Bearer ${token}` } })).status();
  summary.token_works = await asToken();
  await page.locator('#token-rows tr[data-token]').first().waitFor();
  summary.token_rows = await page.locator('#token-rows tr[data-token]').count();
  await look(page, 'account');
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Revoke the token evidence sync' }).click();
  await page.getByText('Token "evidence sync" revoked.').waitFor();
  summary.token_rows_after = await page.locator('#token-rows tr[data-token]').count();
  summary.token_after_revoke = await asToken();
  await api.dispose();

  step('sign out, sign in with a code');
  await page.locator('#account-logout').click();
  await page.locator('#login-view').waitFor();
  summary.signed_out = await text(page.locator('#login-error'));
  await signIn(page, user);
  await page.locator('#login-error').filter({ hasText: /code/ }).waitFor();
  summary.without_code = await text(page.locator('#login-error'));
  await signIn(page, user, totp(secret, 1)); // the next step: the one confirmed is used up
  await page.locator('#login-view').waitFor({ state: 'hidden' });
  summary.with_code = { who: await text(page.locator('#who')), hash: new URL(page.url()).hash };
  await context.close();
}

async function roles(browser) {
  step('prosecutor lands on Shared with me');
  let { context, page } = await newPage(browser);
  await page.goto(cfg.url, { waitUntil: 'load' });
  await signIn(page, cfg.prosecutor);
  await page.locator('#shared-title').waitFor();
  await page.getByText(/^Nothing has been shared with you yet/).waitFor();
  summary.prosecutor = { hash: new URL(page.url()).hash, nav: await text(page.locator('#nav')), text: await text(page.locator('#view')) };
  await look(page, 'prosecutor-landing');
  await page.getByRole('link', { name: 'Account', exact: true }).click();
  await page.locator('#account-title').waitFor();
  await page.locator('#token-rows tr').first().waitFor();
  await axe(page, 'prosecutor-account');
  await context.close();

  step('administrator lands on the overview');
  ({ context, page } = await newPage(browser));
  await page.goto(cfg.url, { waitUntil: 'load' });
  await signIn(page, cfg.admin);
  await page.locator('#admin-title').waitFor();
  await page.locator('#attention-previews a').first().waitFor();
  await page.locator('#attention-jobs tr[data-job]').first().waitFor();
  await page.locator('#user-rows tr').first().waitFor();
  summary.admin = {
    hash: new URL(page.url()).hash,
    nav: await text(page.locator('#nav')),
    failed_previews: await page.locator('#attention-previews li a').evaluateAll((as) => as.map((a) => a.textContent)),
    dead_jobs: await page.locator('#attention-jobs tr[data-job]').count(),
    users: await page.locator('#user-rows tr').count(),
  };
  await look(page, 'admin-landing');
  await tablet(page, 'admin');

  step('a refused search shows the server\'s message');
  await page.goto(`${cfg.url}#/evidence?preview=someday`);
  await page.locator('#find-error').filter({ hasText: /./ }).waitFor();
  summary.refused_search = await text(page.locator('#find-error'));
  await axe(page, 'find-refused');
  await context.close();
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--mute-audio', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
    timeout: 30_000,
  });
  summary.browser = browser.version();
  await ({ officer, roles })[journey](browser);
  step('done');
  summary.ok = summary.console_errors.length === 0 && summary.page_errors.length === 0 &&
    summary.failed_requests.length === 0;
} catch (e) {
  summary.error = String(e && e.message ? e.message : e).split('\n').slice(0, 3).join(' | ');
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
}
done(summary.ok ? 0 : 1);
