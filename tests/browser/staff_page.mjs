// SPDX-License-Identifier: Apache-2.0
// Drives the staff page in headless Chromium (Debian's chromium, through
// playwright-core; no browser download) the way a person would:
//   node staff_page.mjs URL USERNAME PASSWORD EVIDENCE_ID [SCREENSHOT.png [FAILED_ID]]
// opens URL (https://127.0.0.1:PORT/staff/; the self-signed certificate is
// accepted), signs in, picks the evidence, waits until the video can play
// (readyState >= 2), seeks to the middle, checks the thumbnail strip and that
// clicking a tile seeks there, and collects console errors and page errors.
// With FAILED_ID (evidence whose preview job failed) it also opens that one
// and reads the message the page shows instead of a player.
// Prints one JSON line (the summary the Python test asserts on) and exits 0
// when every check passed, 1 otherwise. Bounded by TIMEOUT_MS in all.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const TIMEOUT_MS = 60_000;
const [url, username, password, evidenceId, screenshot, failedId] = process.argv.slice(2);
if (!url || !username || !password || !/^[0-9a-f]{64}$/.test(evidenceId || '')) {
  console.error('usage: node staff_page.mjs URL USERNAME PASSWORD EVIDENCE_ID [SCREENSHOT.png]');
  process.exit(2);
}

const started = Date.now();
const summary = {
  ok: false,
  step: 'launch',
  console_errors: [],
  page_errors: [],
  failed_requests: [],
  media_responses: [],
  error_responses: [],
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

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // CI runs as root, where Chromium's sandbox cannot start.
    // The rest keep it off the network (this machine has none but loopback).
    args: ['--no-sandbox', '--headless=new', '--mute-audio', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync'],
    timeout: 30_000,
  });
  summary.browser = browser.version();
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  // The page asks GET /v1/me on load whether a session cookie holds one:
  // before signing in the answer is 401, which the browser logs.
  const probe = (url) => { try { return new URL(url).pathname === '/v1/me'; } catch { return false; } };
  page.on('console', (m) => {
    if (m.type() === 'error' && !(probe(m.location().url) && /status of 401/.test(m.text()))) summary.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => summary.page_errors.push(String(e)));
  page.on('requestfailed', (r) => {
    // A media element that stops a download it no longer needs is normal.
    const why = r.failure() ? r.failure().errorText : '';
    if (why !== 'net::ERR_ABORTED') summary.failed_requests.push(`${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !(r.status() === 401 && probe(r.url()))) summary.error_responses.push(`${r.request().method()} ${new URL(r.url()).pathname}: ${r.status()}`);
    const m = /^\/v1\/evidence\/([0-9a-f]{64})\/(poster|preview|thumbnails|sprite\.jpg)$/.exec(new URL(r.url()).pathname);
    if (m) summary.media_responses.push({ id: m[1], path: m[2], status: r.status(), type: r.headers()['content-type'] || '' });
  });

  summary.step = 'open page';
  const resp = await page.goto(url, { waitUntil: 'load' });
  summary.page_status = resp.status();
  summary.csp = resp.headers()['content-security-policy'] || null;

  summary.step = 'sign in';
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const item = page.locator(`#evidence-list a[data-id="${evidenceId}"]`);
  await item.waitFor({ state: 'visible' });
  summary.list_items = await page.locator('#evidence-rows tr').count();
  summary.item_text = (await page.locator(`#evidence-rows tr[data-id="${evidenceId}"]`).innerText()).replace(/\s+/g, ' ').trim();
  summary.cookie = (await context.cookies(url.replace(/\/staff\/?$/, '/v1/')))
    .filter((c) => c.name === 'dems_session')
    .map((c) => ({ httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite, path: c.path }))[0] || null;

  summary.step = 'open evidence';
  await item.click();
  const video = page.locator('#video');
  await page.waitForFunction(() => {
    const v = document.getElementById('video'); // the evidence page renders after its answer
    return v !== null && v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 30_000 });
  const first = await video.evaluate((v) => ({ readyState: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight, poster: v.poster }));
  Object.assign(summary, { ready_state: first.readyState, duration: first.duration, video_size: [first.width, first.height], poster: first.poster });

  summary.step = 'seek to the middle';
  const mid = await video.evaluate((v) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no seeked event for the middle')), 20_000);
    v.addEventListener('seeked', () => {
      const check = () => {
        if (v.readyState >= 2) {
          clearTimeout(timer);
          resolve({ currentTime: v.currentTime, readyState: v.readyState });
        } else {
          v.addEventListener('canplay', check, { once: true });
        }
      };
      check();
    }, { once: true });
    v.currentTime = v.duration / 2;
  }));
  summary.seek_middle = mid;

  summary.step = 'thumbnail strip';
  const tiles = page.locator('#strip button');
  await tiles.first().waitFor({ state: 'visible' });
  summary.tiles = await tiles.count();
  summary.tile_style = await tiles.first().evaluate((b) => {
    const s = getComputedStyle(b);
    return { backgroundImage: s.backgroundImage, backgroundPosition: s.backgroundPosition, width: s.width, height: s.height };
  });
  // The sprite itself must load (a CSS background fails silently otherwise).
  summary.sprite_loaded = await page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    try {
      await img.decode();
      return [img.naturalWidth, img.naturalHeight];
    } catch {
      return null;
    }
  }, `/v1/evidence/${evidenceId}/sprite.jpg`);

  summary.step = 'click a tile';
  const pick = Math.min(summary.tiles - 1, Math.max(1, Math.floor(summary.tiles / 3)));
  const tile = tiles.nth(pick);
  const start = Number(await tile.getAttribute('data-start'));
  await video.evaluate((v) => {
    window.__seeks = [];
    v.addEventListener('seeked', () => window.__seeks.push(v.currentTime));
  });
  await tile.click();
  await page.waitForFunction(() => window.__seeks.length > 0 && (document.getElementById('video') || {}).readyState >= 2,
    null, { timeout: 20_000 });
  summary.tile_seek = { tile: pick, start, current_time: await page.evaluate(() => window.__seeks[0]) };
  summary.tile_current = await tile.getAttribute('aria-current');

  summary.step = 'keyboard';
  // The strip is usable without a mouse: focus a tile, press Enter.
  const last = tiles.nth(summary.tiles - 1);
  const lastStart = Number(await last.getAttribute('data-start'));
  await last.focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((t) => Math.abs((document.getElementById('video') || {}).currentTime - t) < 0.5, lastStart, { timeout: 10_000 });
  summary.keyboard_seek = lastStart;

  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  if (failedId) {
    summary.step = 'evidence without a preview';
    await page.goBack();
    await page.locator(`#evidence-list a[data-id="${failedId}"]`).click();
    await page.locator('#no-preview-text').waitFor({ timeout: 10_000 });
    summary.failed_message = await page.locator('#no-preview-text').innerText();
    summary.failed_player = await page.evaluate(() => {
      const v = document.getElementById('video');
      return { video_hidden: !v || v.hidden, src: v ? v.getAttribute('src') : null, tiles: document.querySelectorAll('#strip button').length };
    });
  }
  summary.step = 'done';
  await context.close();
  summary.ok = summary.console_errors.length === 0 && summary.page_errors.length === 0 &&
    summary.failed_requests.length === 0;
} catch (e) {
  summary.error = String(e && e.message ? e.message : e).split('\n')[0];
} finally {
  clearTimeout(watchdog);
  if (browser) await browser.close().catch(() => {});
}
done(summary.ok ? 0 : 1);
