// SPDX-License-Identifier: Apache-2.0
// Drives the public submission portal in headless Chromium (Debian's
// chromium through playwright-core) as a member of the public on a phone:
//   node portal.mjs submit|triage CONFIG.json
// submit: opens the link an officer sent, is told what the empty statement lacks,
// gives a statement, chooses three files (one large), reloads the page while
// the large one is being sent (the upload throttled so that the reload
// falls mid-file), chooses it again as the page asks, sees it continue,
// finishes, and downloads the receipt. axe-core checks every view (no
// serious or critical violation); screenshots go to CONFIG.shots.
// triage: the officer signs in to the staff application at laptop size,
// opens the case, makes an appeal link (its URL and QR code shown once),
// finds the submission in the triage queue with its statement, plays the
// clip's preview, and accepts it into the case with a reference prefix: the
// files appear among the exhibits.
// CONFIG.json: {"url", "link", "files": {"clip", "still", "big"}, "receipt",
// "shots"; for triage "user", "password", "case", "reference", "prefix"}
// (test_portal_page.py writes it). Prints one JSON line (the summary
// the Python test asserts on); exits 0 when the journey ran to its end
// without console or page errors, 1 otherwise. Bounded by TIMEOUT_MS.
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const TIMEOUT_MS = 150_000;
const [journey, configPath] = process.argv.slice(2);
const cfg = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : null;
if (!cfg || !['submit', 'triage'].includes(journey)) {
  console.error('usage: node portal.mjs submit|triage CONFIG.json');
  process.exit(2);
}

const started = Date.now();
const summary = { ok: false, journey, step: 'launch', console_errors: [], page_errors: [], axe: {} };
const done = (code) => {
  summary.ms = Date.now() - started;
  console.log(JSON.stringify(summary));
  process.exit(code);
};
const watchdog = setTimeout(() => {
  summary.error = `gave up after ${TIMEOUT_MS} ms at step "${summary.step}"`;
  done(1);
}, TIMEOUT_MS);
const step = (s) => { summary.step = s; };
const text = async (loc) => (await loc.innerText()).replace(/\s+/g, ' ').trim();

async function axe(page, view) {
  await page.evaluate(AXE);
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  summary.axe[view] = bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

async function shot(page, name) {
  mkdirSync(cfg.shots, { recursive: true });
  await page.screenshot({ path: join(cfg.shots, `portal-${name}.png`), fullPage: true });
}

// The list item of a file, by its name.
const item = (page, name) => page.locator('#file-list li', { hasText: name });

async function waitText(loc, re, timeout) {
  const until = Date.now() + timeout;
  for (;;) {
    const t = await text(loc);
    if (re.test(t)) return t;
    if (Date.now() > until) throw new Error(`waited for ${re} in "${t}"`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

let browser;

async function submit() {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true, acceptDownloads: true,
    viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => { if (m.type() === 'error') summary.console_errors.push(m.text()); });
  page.on('pageerror', (e) => summary.page_errors.push(String(e)));
  const cookies = async () => (await context.cookies()).length;

  step('open');
  await page.goto(cfg.url + cfg.link);
  await page.locator('#statement-view').waitFor();
  summary.title = await text(page.locator('#request-title'));
  await axe(page, 'statement');
  await shot(page, 'statement');

  step('empty statement');
  await page.click('#statement-submit');
  summary.empty_errors = await text(page.locator('#description-error'));
  summary.invalid_marked = await page.getAttribute('#description', 'aria-invalid');
  summary.focused = await page.evaluate(() => document.activeElement.id);
  await axe(page, 'statement-errors');

  step('statement');
  await page.fill('#description', 'Two people forcing the shop door, seen by the front camera.');
  await page.fill('#location', '12 High St, Anytown');
  await page.fill('#recorded_from', '2026-11-30T21:00');
  await page.fill('#recorded_to', '2026-11-30T22:00');
  await page.fill('#clock_offset', '-2');
  await page.fill('#contact_email', 'shop@example.org');
  await page.check('#declaration');
  await page.click('#statement-submit');
  await page.locator('#files-view').waitFor();
  summary.reference = await text(page.locator('#submission-ref'));

  step('files');
  // Throttle uploads so that the reload falls in the middle of the large file.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 12 * 1024 * 1024,
  });
  await page.setInputFiles('#files', [cfg.files.clip, cfg.files.still, cfg.files.big]);
  const big = basename(cfg.files.big);
  await waitText(item(page, basename(cfg.files.clip)), /Received/, 60_000);
  await waitText(item(page, basename(cfg.files.still)), /Received/, 60_000);
  const before = await waitText(item(page, big), /Sending… ([2-8]\d)%/, 90_000);
  summary.before_reload = before;
  await axe(page, 'files');
  await shot(page, 'files');

  step('reload');
  await page.reload();
  await page.locator('#files-view').waitFor();
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  }).catch(() => {});
  const cdp2 = await context.newCDPSession(page);
  await cdp2.send('Network.enable');
  summary.resume_hint = await text(page.locator('#resume-hint'));
  await axe(page, 'files-after-reload');
  await page.setInputFiles('#files', [cfg.files.big]);
  // The first figure after choosing it again is where it stopped, not 0%.
  summary.after_reload = await waitText(item(page, big), /Sending… ([1-9]\d*)%|Received/, 60_000);
  await waitText(item(page, big), /Received/, 120_000);
  summary.overall = await text(page.locator('#overall-status'));

  step('finish');
  await page.click('#finish');
  await page.locator('#receipt').waitFor({ timeout: 90_000 });
  summary.receipt_ref = await text(page.locator('#receipt-ref'));
  summary.receipt_rows = await page.locator('#receipt-files tr').count();
  await axe(page, 'receipt');
  await shot(page, 'receipt');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  await dl.saveAs(cfg.receipt);
  summary.overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  summary.cookies = await cookies();

  step('ended link');
  // Its own page: the refused POST /v1/portal/open is logged by the browser.
  const p2 = await context.newPage();
  await p2.goto(`${cfg.url}/portal/#dems_sl_${'A'.repeat(43)}`);
  await p2.locator('#ended-view').waitFor();
  summary.unknown_link = await text(p2.locator('#ended-view'));
  await axe(p2, 'ended');
  await shot(p2, 'ended');

}

async function triage() {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => {
    // Before signing in the page asks GET /v1/me, and the browser logs its 401.
    if (m.type() === 'error' && !/401/.test(m.text())) summary.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => summary.page_errors.push(String(e)));

  step('sign in');
  await page.goto(`${cfg.url}/staff/`);
  await page.getByLabel('Username').fill(cfg.user);
  await page.getByLabel('Password').fill(cfg.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.goto(`${cfg.url}/staff/#/cases/${cfg.case}`);
  await page.locator('#submissions-title').waitFor();

  step('make a link');
  await page.getByText('Ask the public for footage').click();
  await page.selectOption('#link-kind', 'appeal');
  await page.fill('#link-title', 'Appeal: fire on Mill Lane');
  await page.getByRole('button', { name: 'Make the link' }).click();
  await page.locator('#link-made svg.qr').waitFor();
  summary.made_link = await text(page.locator('#made-link'));
  summary.qr_modules = await page.locator('#link-made svg.qr path').evaluate((p) => (p.getAttribute('d').match(/M/g) || []).length);
  summary.link_rows = await page.locator('#link-rows tr').count();

  step('triage');
  const card = page.locator(`article[data-submission="${cfg.reference}"]`);
  await card.waitFor();
  summary.statement = await text(card.locator('dl.statement'));
  await axe(page, 'case-triage');
  await shot(page, 'triage');
  await card.getByRole('button', { name: `Preview ${basename(cfg.files.clip)}` }).click();
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v !== null && v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 30_000 });
  summary.video = await page.locator('#video').evaluate((v) => ({ ready: v.readyState, duration: v.duration, src: new URL(v.src).pathname }));

  step('accept');
  await card.getByLabel('Exhibit references start with').fill(cfg.prefix);
  await card.getByRole('button', { name: 'Accept into the case' }).click();
  await page.locator(`#exhibit-rows tr[data-exhibit="${cfg.prefix}/1"]`).waitFor();
  summary.exhibits = await page.locator('#exhibit-rows tr').evaluateAll((rows) => rows.map((r) => r.dataset.exhibit));
  await page.selectOption('#triage-state', 'accepted');
  await page.locator(`article[data-submission="${cfg.reference}"]`).waitFor();
  summary.accepted_card = await text(page.locator(`article[data-submission="${cfg.reference}"] h4`));
  await axe(page, 'case-accepted');
  await shot(page, 'accepted');
}

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  await (journey === 'submit' ? submit() : triage());
  summary.ok = summary.console_errors.length === 0 && summary.page_errors.length === 0;
  step('done');
} catch (e) {
  summary.error = String(e && e.stack ? e.stack : e);
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
}
done(summary.ok ? 0 : 1);
