// Headless Chromium test of the uploader page served by the example server.
//
//   node tests/browser/upload.mjs --url http://127.0.0.1:3000 --dir ./uploads \
//        --screenshot target/browser/uploader.png
//
// --url         where the example server listens (GET / serves the page)
// --dir         the server's storage directory (files land at DIR/<filename>)
// --screenshot  where to save a full-page screenshot (directories are created)
// CHROMIUM      path of the browser (default /usr/bin/chromium)
//
// Checks: a 20 MB file (chunked) and a 3x2 PNG (simple PUT) upload and land on
// disk byte for byte; a 64 MiB upload interrupted by a page reload resumes with
// a status query and re-sends only the missing chunks.

import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

// ---------- arguments ----------
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument: ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else out[a.slice(2)] = argv[++i];
  }
  return out;
}
const args = parseArgs(process.argv.slice(2));
if (!args.url || !args.dir) {
  console.error('usage: node tests/browser/upload.mjs --url http://HOST:PORT --dir UPLOAD_DIR [--screenshot FILE.png]');
  process.exit(2);
}
const BASE = args.url.replace(/\/+$/, '');
const UPLOAD_DIR = path.resolve(args.dir);
const SCREENSHOT = args.screenshot ? path.resolve(args.screenshot) : null;
const DONE_TIMEOUT = 60_000;
const MIB = 1024 * 1024;

// ---------- results ----------
let passed = 0;
const failures = [];
function check(name, ok, detail = '') {
  if (ok) {
    passed++;
    console.log(`  ok    ${name}`);
  } else {
    failures.push(`${name}${detail ? `: ${detail}` : ''}`);
    console.log(`  FAIL  ${name}${detail ? `: ${detail}` : ''}`);
  }
  return ok;
}

// ---------- fixtures ----------
// Deterministic pseudo-random bytes (xorshift32).
function pseudoRandom(size, seed) {
  const buf = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (; i < size; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
// A 3x2 RGB PNG: red, green, blue / yellow, magenta, cyan.
function makePng() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(3, 0); // width
  ihdr.writeUInt32BE(2, 4); // height
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // color type: RGB
  const rows = Buffer.from([
    0, 239, 68, 68, 34, 197, 94, 59, 130, 246,
    0, 250, 204, 21, 217, 70, 239, 6, 182, 212,
  ]);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
async function sha256File(file) {
  const h = crypto.createHash('sha256');
  for await (const part of fs.createReadStream(file)) h.update(part);
  return h.digest('hex');
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------- page helpers ----------
const cardSel = (name) => `[data-testid="upload"][data-name="${name.replace(/["\\]/g, '\\$&')}"]`;

async function waitFinished(page, name, timeout = DONE_TIMEOUT) {
  const sel = cardSel(name);
  try {
    await page.waitForFunction((s) => {
      const el = document.querySelector(s);
      return el && el.dataset.state !== 'uploading';
    }, sel, { timeout, polling: 100 });
  } catch {
    const status = await page.locator(`${sel} [data-testid="status"]`).textContent().catch(() => null);
    const pct = await page.locator(`${sel} [role="progressbar"]`).getAttribute('aria-valuenow').catch(() => null);
    throw new Error(`${name} did not finish within ${timeout / 1000}s (progress ${pct}%, status ${JSON.stringify(status)})`);
  }
  const state = await page.locator(sel).getAttribute('data-state');
  if (state !== 'done') {
    const status = await page.locator(`${sel} [data-testid="status"]`).textContent();
    throw new Error(`${name} ended ${state}: ${status}`);
  }
  const json = await page.locator(`${sel} [data-testid="file-json"]`).textContent();
  return JSON.parse(json);
}

async function checkOnDisk(name, expectedSha) {
  const file = path.join(UPLOAD_DIR, name);
  let actual;
  try {
    actual = await sha256File(file);
  } catch (e) {
    return check(`${name} is stored on disk`, false, `${file}: ${e.code || e.message}`);
  }
  return check(`${name} on disk has the same bytes (sha256)`, actual === expectedSha,
    `expected ${expectedSha}, found ${actual}`);
}

// Records every PUT the page sends: its Content-Range and, later, its status.
function trackPuts(page) {
  const log = [];
  page.on('request', (req) => {
    if (req.method() !== 'PUT') return;
    const entry = { url: req.url(), range: req.headers()['content-range'] || null, status: null, phase: log.phase };
    log.push(entry);
    req.response().then((res) => { entry.status = res ? res.status() : null; }, () => {});
  });
  page.on('requestfailed', (req) => {
    const e = log.find((x) => x.url === req.url() && x.status === null);
    if (e) e.failed = true;
  });
  log.phase = 'initial';
  return log;
}

// ---------- scenarios ----------
async function scenarioResume(page, puts, cdp, dir) {
  console.log('resume after reload (64 MiB)');
  const name = 'resume-64mib.bin';
  const size = 64 * MIB;
  const file = path.join(dir, name);
  const data = pseudoRandom(size, 0x5eed64);
  await fsp.writeFile(file, data);
  const expected = sha256(data);
  const sel = cardSel(name);

  // Slow the upload down so that a moment with some chunks stored is catchable.
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 24 * 1000 * 1000,
  });

  puts.phase = 'before-reload';
  await page.locator('[data-testid="file-input"]').setInputFiles(file);
  const deadline = Date.now() + 30_000;
  let midway = null;
  while (Date.now() < deadline) {
    const state = await page.locator(sel).getAttribute('data-state').catch(() => null);
    if (state && state !== 'uploading') break;
    const now = Number(await page.locator(`${sel} [role="progressbar"]`).getAttribute('aria-valuenow').catch(() => 0));
    const stored = puts.filter((p) => p.phase === 'before-reload' && p.status === 202).length;
    if (stored >= 1 && now >= 15 && now < 90) { midway = { pct: now, stored }; break; }
    await sleep(25);
  }
  if (!check('64 MiB upload caught midway (a chunk stored, 15..90%)', !!midway,
    'progress never stood between 15% and 90% with a chunk stored')) {
    return;
  }
  console.log(`        reloading at ${midway.pct}% with ${midway.stored} chunk(s) stored`);

  puts.phase = 'after-reload';
  await page.reload({ waitUntil: 'load' });
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  const saved = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tower-signed-upload')));
  check('the signed URL was kept in localStorage across the reload', saved.length === 1, JSON.stringify(saved));

  await page.locator('[data-testid="file-input"]').setInputFiles(file);
  let resumed = false;
  try {
    await page.waitForFunction((s) => {
      const el = document.querySelector(s);
      return el && (el.dataset.resumed === 'true' || /resum/i.test(el.textContent));
    }, sel, { timeout: 10_000, polling: 20 });
    resumed = true;
  } catch { /* reported below */ }
  check('the card shows it is resuming', resumed);

  const obj = await waitFinished(page, name);
  check(`${name} File object has filesize ${size}`, obj.filesize === size, `filesize ${obj.filesize}`);
  await checkOnDisk(name, expected);

  const after = puts.filter((p) => p.phase === 'after-reload');
  const queries = after.filter((p) => p.range && /^bytes[ =]\*\//.test(p.range));
  const chunks = after.filter((p) => p.range && /^bytes[ =]\d+-\d+\//.test(p.range));
  const totalChunks = Math.ceil(size / (await page.evaluate(() => window.__uploader.chunkSize)));
  check('a status query (Content-Range: bytes */TOTAL) was sent after the reload',
    queries.length >= 1 && queries.some((q) => q.range === `bytes */${size}`),
    JSON.stringify(queries.map((q) => q.range)));
  check('the status query answered 308', queries.length >= 1 && queries[0].status === 308, `status ${queries[0] && queries[0].status}`);
  const resent = new Set(chunks.map((c) => c.range));
  check(`fewer than all ${totalChunks} chunks were re-sent after the reload`,
    resent.size > 0 && resent.size < totalChunks,
    `${resent.size} distinct ranges in ${chunks.length} PUTs: ${[...resent].join(', ')}`);
  console.log(`        after the reload: ${queries.length} status quer${queries.length === 1 ? 'y' : 'ies'}, ${resent.size} of ${totalChunks} chunks re-sent`);
  const left = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tower-signed-upload')));
  check('the saved entry is removed on completion', left.length === 0, JSON.stringify(left));
}

async function scenarioUpload(page, puts, dir) {
  console.log('upload a 20 MB file and a PNG');
  const bigName = 'random-20mb.bin';
  const pngName = 'pixels.png';
  const big = pseudoRandom(20_000_000, 0x20202020);
  const png = makePng();
  const bigPath = path.join(dir, bigName);
  const pngPath = path.join(dir, pngName);
  await fsp.writeFile(bigPath, big);
  await fsp.writeFile(pngPath, png);

  puts.phase = 'upload';
  await page.locator('[data-testid="file-input"]').setInputFiles([bigPath, pngPath]);
  const [bigObj, pngObj] = await Promise.all([waitFinished(page, bigName), waitFinished(page, pngName)]);

  check(`${bigName} File object has filesize 20000000`, bigObj.filesize === 20_000_000, `filesize ${bigObj.filesize}`);
  check(`${bigName} File object names the file`, bigObj.object === 'source' && typeof bigObj.id === 'string' &&
    bigObj.filename === bigName, JSON.stringify(bigObj));
  await checkOnDisk(bigName, sha256(big));

  check(`${pngName} File object has filesize ${png.length}`, pngObj.filesize === png.length, `filesize ${pngObj.filesize}`);
  check(`${pngName} is kind image, type image/png`, pngObj.kind === 'image' && pngObj.type === 'image/png',
    `kind ${pngObj.kind}, type ${pngObj.type}`);
  check(`${pngName} is 3x2`, pngObj.width === 3 && pngObj.height === 2, `${pngObj.width}x${pngObj.height}`);
  await checkOnDisk(pngName, sha256(png));

  const mine = puts.filter((p) => p.phase === 'upload');
  const bigPuts = mine.filter((p) => decodeURIComponent(new URL(p.url).pathname).endsWith(`/${bigName}`));
  const pngPuts = mine.filter((p) => decodeURIComponent(new URL(p.url).pathname).endsWith(`/${pngName}`));
  const { chunkSize, parallel } = await page.evaluate(() => window.__uploader);
  check('window.__uploader: chunks of 8..16 MiB, 4 in flight',
    chunkSize >= 8 * MIB && chunkSize <= 16 * MIB && parallel === 4, JSON.stringify({ chunkSize, parallel }));
  const expectedChunks = Math.ceil(20_000_000 / chunkSize);
  check(`${bigName} went in ${expectedChunks} Content-Range chunks`,
    new Set(bigPuts.map((p) => p.range)).size === expectedChunks &&
      bigPuts.every((p) => /^bytes \d+-\d+\/20000000$/.test(p.range || '')),
    bigPuts.map((p) => p.range).join(', '));
  check(`${bigName}: exactly one chunk answered 201`,
    bigPuts.filter((p) => p.status === 201).length === 1, bigPuts.map((p) => p.status).join(', '));
  check(`${pngName} went in one PUT without Content-Range`,
    pngPuts.length === 1 && !pngPuts[0].range && pngPuts[0].status === 201,
    JSON.stringify(pngPuts.map((p) => ({ range: p.range, status: p.status }))));

  const preview = await page.locator(`${cardSel(pngName)} img.preview`).evaluate((img) => ({
    visible: !img.hidden && img.offsetWidth > 0, w: img.naturalWidth, h: img.naturalHeight,
  })).catch((e) => ({ error: e.message }));
  check(`${pngName} preview image is shown`, preview.visible && preview.w === 3 && preview.h === 2, JSON.stringify(preview));
  const link = await page.locator(`${cardSel(pngName)} a[href]`).first().getAttribute('href').catch(() => null);
  check(`${pngName} card links the file's url`, link === pngObj.url, `${link} vs ${pngObj.url}`);
  const bars = await page.locator('[data-testid="upload"] [role="progressbar"]').evaluateAll((els) =>
    els.map((el) => el.getAttribute('aria-valuenow')));
  check('every done card has a progressbar at aria-valuenow 100', bars.length >= 2 && bars.every((v) => v === '100'),
    JSON.stringify(bars));
}

async function checkKeyboard(page) {
  console.log('keyboard');
  const zone = page.locator('[role="button"][tabindex="0"]').first();
  await page.keyboard.press('Tab');
  const focused = await zone.evaluate((el) => el === document.activeElement).catch(() => false);
  check('Tab focuses the drop zone first', focused);
  const choosers = [];
  const onChooser = (c) => choosers.push(c);
  page.on('filechooser', onChooser); // intercepts the native dialog
  await sleep(300); // interception is switched on asynchronously
  for (const key of ['Enter', 'Space']) {
    choosers.length = 0;
    await zone.focus();
    await page.keyboard.press(key);
    const until = Date.now() + 5_000;
    while (!choosers.length && Date.now() < until) await sleep(50);
    check(`${key} on the drop zone opens the file picker (multiple)`, choosers.length === 1 && choosers[0].isMultiple(),
      `${choosers.length} file chooser(s)`);
  }
  page.off('filechooser', onChooser);
}

// ---------- main ----------
async function main() {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'signed-upload-browser-'));
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-quic', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    context.setDefaultTimeout(30_000);
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      // An HTTP error answer is logged by Chromium too; those are checked where they matter.
      if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of/.test(m.text())) {
        pageErrors.push(`console: ${m.text()}`);
      }
    });
    const puts = trackPuts(page);
    const cdp = await context.newCDPSession(page);

    console.log(`page ${BASE}/`);
    const res = await page.goto(`${BASE}/`, { waitUntil: 'load' });
    check('GET / answers 200 with the page', res && res.status() === 200, `status ${res && res.status()}`);
    check('the page title is tower-signed-upload', (await page.title()) === 'tower-signed-upload', await page.title());

    try {
      await checkKeyboard(page);
    } catch (e) {
      check('keyboard access', false, e.message.split('\n')[0]);
    }
    try {
      await scenarioResume(page, puts, cdp, dir);
    } catch (e) {
      check('resume scenario', false, e.message.split('\n')[0]);
    }
    try {
      await scenarioUpload(page, puts, dir);
    } catch (e) {
      check('upload scenario', false, e.message.split('\n')[0]);
    }

    check('no script errors on the page', pageErrors.length === 0, pageErrors.join(' | '));

    if (SCREENSHOT) {
      await fsp.mkdir(path.dirname(SCREENSHOT), { recursive: true });
      const png = cardSel('pixels.png');
      if (await page.locator(png).count()) {
        await page.locator(`${png} details.raw`).evaluate((d) => { d.open = true; });
      }
      await page.mouse.move(0, 0);
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      console.log(`screenshot ${SCREENSHOT}`);
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

const watchdog = setTimeout(() => {
  console.error('browser: gave up after 5 minutes');
  process.exit(1);
}, 300_000);
watchdog.unref();

try {
  await main();
} catch (e) {
  const reason = String(e && e.message || e).split('\n')[0];
  failures.push(reason);
  console.log(`  FAIL  ${reason}`);
}
if (failures.length) {
  console.log(`browser: ${passed} passed, ${failures.length} failed`);
  for (const f of failures) console.log(`  - ${f}`);
  process.exit(1);
}
console.log(`browser: ${passed} passed, 0 failed`);
