// Uppy 6 (its Tus plugin) in headless Chromium, from a page on one origin
// uploading to the example server on another.
//
//   node uppy/run.mjs --base http://127.0.0.1:PORT --page-port N [--cases a,b]
//
// --base       the server: POST {base}/upload-url mints each file's signed URL
// --page-port  the page's own port on 127.0.0.1; the server must allow the
//              origin http://127.0.0.1:N (--allow-origin), so every request is
//              cross-origin, with preflights
// CHROMIUM     the browser (default /usr/bin/chromium)
//
// Cases: `several` uploads four files in 64 KiB chunks (one of one byte, one
// with an odd name); `reload` uploads two, pauses the larger after its first
// chunk, reloads the page once the other is done, picks the same file again
// and checks that it resumes (HEAD at the stored offset, no new creation).
// One JSON line per file: client, case, ok, endpoint, url, size, sha256 (of
// the bytes the page sent), ms. Exit status 1 if a file failed.
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.base || new URL(args.base).hostname !== '127.0.0.1' || !args['page-port']) {
  console.error('usage: run.mjs --base http://127.0.0.1:PORT --page-port N [--cases a,b]');
  process.exit(2);
}
const BASE = args.base.replace(/\/+$/, '');
const RUN_DEADLINE_MS = 240_000;
setTimeout(() => {
  console.error(`uppy: over ${RUN_DEADLINE_MS} ms, giving up`);
  process.exit(1);
}, RUN_DEADLINE_MS).unref();
const CHUNK = 65536;

const SEVERAL = [
  { name: 'uppy-a.bin', size: 200_000, seed: 22 },
  { name: 'uppy-b.bin', size: 150_000, seed: 23 },
  { name: 'uppy-c.bin', size: 1, seed: 24 },
  { name: "uppy d'été (1) ~!*[x] 100%.bin", size: 70_000, seed: 29 },
];
const RELOAD = [
  { name: 'uppy-reload-small.bin', size: 50_000, seed: 41 },
  { name: 'uppy-reload-big.bin', size: 600_000, seed: 42 },
];

// the page's own origin: a static server for this folder
const types = { '.html': 'text/html', '.js': 'text/javascript' };
const pageServer = http.createServer(async (req, res) => {
  const p = new URL(req.url, 'http://x').pathname.replace(/^\/+/, '') || 'index.html';
  if (!/^[\w.-]+$/.test(p)) return res.writeHead(404).end();
  try {
    const body = await readFile(join(HERE, p));
    res.writeHead(200, { 'Content-Type': types[p.slice(p.lastIndexOf('.'))] || 'application/octet-stream' }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r, rej) => pageServer.once('error', rej).listen(Number(args['page-port']), '127.0.0.1', r));
const PAGE = `http://127.0.0.1:${pageServer.address().port}/index.html`;

// Every tus request the page sends to the server, with its answer.
function watch(page) {
  const wire = [];
  page.on('response', (res) => {
    const req = res.request();
    if (!req.url().startsWith(BASE) || req.method() === 'OPTIONS') return;
    const h = res.headers();
    wire.push({ method: req.method(), path: new URL(req.url()).pathname, status: res.status(), offset: h['upload-offset'] ?? null });
  });
  return wire;
}

async function openPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(PAGE, { timeout: 30_000 });
  return { page, problems };
}

const CASES = {
  several: async (context) => {
    const { page } = await openPage(context);
    const out = await page.evaluate((arg) => window.runCase(arg), { api: BASE, files: SEVERAL, tusOptions: { chunkSize: CHUNK } });
    return out.files.map((f) => (out.error && !f.ok ? { ...f, error: f.error || out.error } : f));
  },
  reload: async (context) => {
    const [small, big] = RELOAD;
    const { page } = await openPage(context);
    await page.evaluate((arg) => window.beginBeforeReload(arg), {
      api: BASE,
      files: RELOAD,
      pauseName: big.name,
      tusOptions: { chunkSize: CHUNK },
    });
    await page.waitForFunction(() => window.reloadReady === true, null, { timeout: 45_000 });
    const before = await page.evaluate(() => window.beforeReload);
    const wire = watch(page);
    await page.reload({ timeout: 30_000 });
    const after = await page.evaluate((arg) => window.runCase(arg), { api: BASE, files: [big], tusOptions: { chunkSize: CHUNK } });
    const resumed = after.files[0];
    const path = resumed.endpoint && new URL(resumed.endpoint).pathname;
    const mine = wire.filter((e) => e.path === path);
    const head = mine.find((e) => e.method === 'HEAD');
    if (resumed.ok) {
      const problem = !head
        ? 'no HEAD after the reload'
        : head.status !== 200 || !(Number(head.offset) >= CHUNK)
          ? `HEAD answered ${head.status} with Upload-Offset ${head.offset}`
          : mine.some((e) => e.method === 'POST')
            ? 'a new creation after the reload'
            : null;
      if (problem) Object.assign(resumed, { ok: false, error: `${problem}; requests: ${mine.map((e) => `${e.method}:${e.status}`).join(' ')}` });
      else resumed.resumed_from = Number(head.offset);
    }
    return [...before.filter((f) => f.name === small.name), resumed];
  },
};

const names = args.cases ? args.cases.split(',') : Object.keys(CASES);
let failed = 0;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  timeout: 60_000,
});
try {
  for (const name of names) {
    if (!CASES[name]) throw new Error(`no case ${name}; cases: ${Object.keys(CASES).join(', ')}`);
    const started = Date.now();
    const context = await browser.newContext();
    let files;
    try {
      files = await CASES[name](context);
    } catch (err) {
      files = [{ name: '*', ok: false, error: String(err && err.message).split('\n')[0].slice(0, 400) }];
    } finally {
      await context.close();
    }
    const ms = Date.now() - started;
    for (const f of files) {
      if (!f.ok) failed++;
      console.log(JSON.stringify({ client: 'uppy', case: name, ...f, ms }));
    }
  }
} finally {
  await browser.close();
  pageServer.close();
}
process.exit(failed ? 1 : 0);
