// SPDX-License-Identifier: Apache-2.0
// Drives the staff application's face-search page (server/web/face.js) in
// headless Chromium (Debian's chromium through playwright-core):
//   node face_page.mjs JOURNEY CONFIG.json
// JOURNEY is one of
//   searcher  an officer with the face-search permission opens the case's
//             face search from the case page, enables indexing, leaves
//             and comes back while it runs, follows it to done, sees the
//             faces, searches from one (first without a purpose, then with
//             a legal basis the server refuses, then as it should be),
//             sees the results under the notice, plays the best one at its
//             moment, searches again with a photo chosen from disk, and
//             reloads the page on the same results;
//   plain     an officer of the case without the permission: no link on
//             the case page, only the explanation at the page's address.
// CONFIG.json holds the URL, the case, the users' passwords and where
// screenshots go (test_face_page.py writes it). Prints one JSON line (the
// summary the Python test asserts on) and exits 0 when the journey ran to
// its end without console or page errors, 1 otherwise.
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const [journey, configPath] = process.argv.slice(2);
const cfg = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : null;
if (!cfg || !['searcher', 'plain'].includes(journey)) {
  console.error('usage: node face_page.mjs searcher|plain CONFIG.json');
  process.exit(2);
}
const TIMEOUT_MS = cfg.timeout_ms || 300_000;
const LONG = TIMEOUT_MS - 30_000; // waits on the worker (indexing, the search)

const started = Date.now();
const summary = { ok: false, journey, step: 'launch', console_errors: [], page_errors: [], failed_requests: [], error_responses: [], axe: {}, shots: [] };
const done = (code) => {
  summary.ms = Date.now() - started;
  console.log(JSON.stringify(summary));
  process.exit(code);
};
const watchdog = setTimeout(() => {
  summary.error = `gave up after ${TIMEOUT_MS} ms at step "${summary.step}"`;
  done(1);
}, TIMEOUT_MS);

const text = async (loc) => (await loc.innerText()).replace(/\s+/g, ' ').trim();
const path = (url) => {
  try {
    return new URL(url).pathname;
  } catch {
    return '';
  }
};

function watch(page, expected) {
  page.setDefaultTimeout(20_000);
  const probe = (url) => path(url) === '/v1/me';
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
    if (r.status() >= 400 && !(r.status() === 401 && probe(r.url()))) summary.error_responses.push(`${r.request().method()} ${path(r.url())}: ${r.status()}`);
  });
}

async function axe(page, name) {
  await page.evaluate(AXE + '\n;0');
  const res = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  summary.axe[name] = res.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
}

async function look(page, name) {
  await axe(page, name);
  mkdirSync(cfg.shots, { recursive: true });
  await page.screenshot({ path: join(cfg.shots, `${name}.png`), fullPage: true });
  summary.shots.push(name);
}

async function signIn(page, user) {
  summary.step = `sign in as ${user}`;
  await page.goto(cfg.url, { waitUntil: 'load' });
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(cfg.passwords[user]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#nav a').first().waitFor();
}

async function openCase(page) {
  await page.goto(`${cfg.url}#/cases/${cfg.case_id}`);
  await page.locator('#case-title').waitFor();
  await page.locator('#exhibit-rows tr').first().waitFor();
}

const fieldError = (page, id) => page.locator(`#${id}-error`).filter({ hasText: /./ });

async function searcher(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  watch(page, [/status of 400/]); // the legal basis the server refuses, below
  const faceCalls = { status: 0, searches: 0 };
  page.on('request', (r) => {
    const p = path(r.url());
    if (p === `/v1/cases/${cfg.case_id}/face`) faceCalls.status++;
    if (p === `/v1/cases/${cfg.case_id}/face/searches` && r.method() === 'POST') faceCalls.searches++;
  });
  await signIn(page, cfg.user);

  summary.step = 'the case page';
  await openCase(page);
  summary.face_link = await page.locator('#face-link a').count() > 0;
  await page.locator('#face-link a').click();
  await page.locator('#face-toggle').waitFor();
  summary.toggle_before = await text(page.locator('#face-toggle'));
  await look(page, 'face-off');

  summary.step = 'enable indexing';
  await page.locator('#face-toggle').click();
  await page.locator('#face-toggle', { hasText: 'Disable face indexing' }).waitFor();
  summary.toggle_after = await text(page.locator('#face-toggle'));
  const states = [];
  const note = async () => {
    const st = await page.locator('#face-progress tr[data-state]').first().getAttribute('data-state');
    if (states[states.length - 1] !== st) states.push(st);
    return st;
  };
  await note();

  summary.step = 'leave while indexing runs';
  await page.getByRole('link', { name: '← Back to the case' }).click();
  await page.locator('#case-title').waitFor();
  const before = faceCalls.status;
  await page.waitForTimeout(3500);
  summary.polls_while_away = faceCalls.status - before;
  await page.locator('#face-link a').click();
  await page.locator('#face-toggle').waitFor();

  summary.step = 'follow indexing to done';
  const deadline = Date.now() + LONG;
  for (;;) {
    const st = await note();
    if (st === 'done' || st === 'failed' || st === 'skipped') break;
    if (Date.now() > deadline) throw new Error(`indexing not done: ${states.join(' → ')}`);
    await page.waitForTimeout(250);
  }
  summary.progress_states = states;
  await page.locator('#face-tracks li').first().waitFor();
  // The grid is loaded again once the progress says done: let it settle.
  await page.waitForFunction(() => document.querySelector('#face-summary').textContent.includes('1 of 1 exhibits indexed'));
  await page.waitForTimeout(500);
  summary.summary = await text(page.locator('#face-summary'));
  summary.legal_bases = await page.locator('#face-basis option').evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
  summary.tracks = await page.locator('#face-tracks li').evaluateAll((ls) => ls.map((l) => Number(l.dataset.track)));
  summary.crops_loaded = await page.locator('#face-tracks li img').evaluateAll((imgs) => Promise.all(imgs.map((img) => new Promise((resolve) => {
    const check = () => (img.complete ? resolve(img.naturalWidth > 0) : setTimeout(check, 100));
    check();
  })))).then((xs) => xs.filter(Boolean).length);
  await look(page, 'face-tracks');

  summary.step = 'search from a face';
  const probe = await page.locator('#face-tracks li').evaluateAll((ls) => ls
    .map((l) => ({ id: Number(l.dataset.track), first: Number(l.dataset.first) }))
    .filter((t) => t.first >= 2.4 && t.first <= 6)
    .sort((a, b) => a.first - b.first)[0]);
  if (!probe) throw new Error('no face of A between 3 s and 6 s');
  summary.probe_track = probe.id;
  await page.locator(`#face-tracks li[data-track="${probe.id}"] button`).click();
  await page.locator('#face-chosen-name').waitFor();
  const f = page.locator('#face-search-form');
  await f.getByLabel('Legal basis').selectOption(cfg.basis);
  await f.getByLabel('Authorisation reference').fill('DI Jones, AUTH-42');
  await f.getByRole('button', { name: 'Start the search' }).click();
  await fieldError(page, 'face-purpose').waitFor();
  summary.purpose_error = await text(page.locator('#face-purpose-error'));
  summary.purpose_invalid = await page.locator('#face-purpose').getAttribute('aria-invalid');
  summary.posts_without_purpose = faceCalls.searches;

  summary.step = 'a legal basis the server does not offer';
  await f.getByLabel('Purpose').fill('Find where the suspect appears again');
  // As if the configured list had changed since the page was loaded.
  await page.locator('#face-basis').evaluate((s, v) => s.append(new Option(v, v)), cfg.stale_basis);
  await f.getByLabel('Legal basis').selectOption(cfg.stale_basis);
  await f.getByRole('button', { name: 'Start the search' }).click();
  await fieldError(page, 'face-basis').waitFor();
  summary.basis_error = await text(page.locator('#face-basis-error'));
  summary.purpose_error_after = await text(page.locator('#face-purpose-error'));

  summary.step = 'the search';
  await f.getByLabel('Legal basis').selectOption(cfg.basis);
  await f.getByRole('button', { name: 'Start the search' }).click();
  await page.locator('#face-result[data-state="done"], #face-result[data-state="failed"]').waitFor({ timeout: LONG });
  summary.search_id = Number(await page.locator('#face-result').getAttribute('data-search'));
  summary.search_state = await page.locator('#face-result').getAttribute('data-state');
  summary.notice = await text(page.locator('#face-notice'));
  summary.result_status = await text(page.locator('#face-result-status'));
  summary.results = await page.locator('#face-results li').evaluateAll((ls) => ls.map((l) => ({
    rank: Number(l.dataset.rank), artefact: l.dataset.artefact, t: Number(l.dataset.t),
    score: l.querySelector('.score').textContent,
  })));
  await look(page, 'face-results');

  summary.step = 'play the best result';
  await page.locator('#face-results li').first().getByRole('button').click();
  summary.video = await page.locator('#video').evaluate((v) => new Promise((resolve, reject) => {
    const t0 = Date.now();
    const check = () => {
      if (v.getAttribute('src') && v.readyState >= 2 && !v.seeking && v.currentTime > 0) {
        resolve({ current_time: v.currentTime, src: new URL(v.src).pathname, paused: v.paused });
      } else if (Date.now() - t0 > 20_000) {
        reject(new Error(`the video did not open at its moment (readyState ${v.readyState}, ${v.currentTime})`));
      } else {
        setTimeout(check, 50);
      }
    };
    check();
  }));
  summary.player_title = await text(page.locator('#player-title'));
  await look(page, 'face-playing');

  summary.step = 'search with a photo';
  await page.locator('#face-photo').setInputFiles(cfg.photo);
  summary.photo_checked = await page.locator('#face-probe-photo').isChecked();
  await f.getByRole('button', { name: 'Start the search' }).click();
  await page.locator(`#face-result:not([data-search="${summary.search_id}"])`).waitFor({ timeout: LONG });
  await page.locator('#face-result[data-state="done"], #face-result[data-state="failed"]').waitFor({ timeout: LONG });
  summary.photo_search_id = Number(await page.locator('#face-result').getAttribute('data-search'));
  summary.photo_results = await page.locator('#face-results li').evaluateAll((ls) => ls.map((l) => ({
    rank: Number(l.dataset.rank), artefact: l.dataset.artefact, t: Number(l.dataset.t),
  })));
  await page.locator(`#face-searches tr[data-search="${summary.photo_search_id}"][data-state="done"]`).waitFor();
  summary.history = await page.locator('#face-searches tr').evaluateAll((rs) => rs.map((r) => [Number(r.dataset.search), r.dataset.state]));

  summary.step = 'reload on the results';
  await page.reload({ waitUntil: 'load' });
  await page.locator('#face-result[data-state="done"]').waitFor();
  summary.reloaded_search = Number(await page.locator('#face-result').getAttribute('data-search'));
  summary.reloaded_results = await page.locator('#face-results li').count();
  await context.close();
}

async function plain(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  watch(page, []);
  await signIn(page, cfg.user);
  summary.step = 'the case page';
  await openCase(page);
  summary.case_page = true;
  summary.face_link = await page.locator('#face-link').count() > 0;
  summary.step = 'the face page';
  await page.goto(`${cfg.url}#/cases/${cfg.case_id}/face`);
  await page.locator('#face-not-permitted').waitFor();
  summary.explanation = await text(page.locator('#face-not-permitted'));
  summary.controls = {
    toggle: await page.locator('#face-toggle').count(),
    search_form: await page.locator('#face-search-form').count(),
    tracks: await page.locator('#face-tracks').count(),
    history: await page.locator('#face-searches').count(),
  };
  await look(page, 'face-not-permitted');
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
  await ({ searcher, plain })[journey](browser);
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
