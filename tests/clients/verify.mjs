// Checks what the clients reported against the example server.
//
//   node verify.mjs --base http://127.0.0.1:PORT --key KEY --results FILE --log FILE [--log FILE…]
//
// FILE of results: the harnesses' JSON lines. For every upload a client
// finished, the stored bytes are downloaded through a signed GET URL (minted
// by POST /signatures with KEY as bearer) and must hash to the sha256 the
// client sent, and the server logs (RUST_LOG=server=info) must hold exactly
// one `upload completed` line for its path, naming its size; a completion no
// client reported fails too. Prints one line per case, then a summary; exit
// status 1 if anything failed or a client reported a failure.
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';

const args = { log: [] };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (k === 'log') args.log.push(process.argv[i + 1]);
  else args[k] = process.argv[i + 1];
}
if (!args.base || new URL(args.base).hostname !== '127.0.0.1' || !args.key || !args.results) {
  console.error('usage: verify.mjs --base http://127.0.0.1:PORT --key KEY --results FILE --log FILE…');
  process.exit(2);
}
const BASE = args.base.replace(/\/+$/, '');
const TIMEOUT_MS = 20_000;

const results = readFileSync(args.results, 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('{'))
  .map((l) => JSON.parse(l));

// url (the unsigned public URL) → sizes named by its completions
const completions = new Map();
for (const file of args.log) {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.includes('upload completed')) continue;
    const field = (name) => line.split(/\s+/).find((f) => f.startsWith(`${name}=`))?.slice(name.length + 1);
    const url = field('url');
    completions.set(url, [...(completions.get(url) || []), Number(field('size'))]);
  }
}

async function download(rawPath) {
  const segments = rawPath.split('/').map(decodeURIComponent);
  const filename = segments.pop();
  const body = { filename, method: 'get', ...(segments.length ? { folder: segments.join('/') } : {}) };
  const minted = await fetch(`${BASE}/signatures`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${args.key}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (!minted.ok) throw new Error(`POST /signatures answered ${minted.status}`);
  const { url } = (await minted.json()).data;
  const got = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (got.status !== 200) throw new Error(`GET of the stored file answered ${got.status}`);
  const hash = crypto.createHash('sha256');
  let size = 0;
  for await (const piece of got.body) {
    hash.update(piece);
    size += piece.length;
  }
  return { size, sha256: hash.digest('hex') };
}

const rows = [];
const seen = new Set();
for (const r of results) {
  const label = `${r.client} ${r.case}${r.name ? ` [${r.name}]` : ''}`;
  if (r.skipped) {
    rows.push({ verdict: 'SKIP', label, ms: r.ms, why: `skipped: ${r.skipped}` });
    continue;
  }
  if (!r.ok) {
    rows.push({ verdict: 'FAIL', label, ms: r.ms, why: `the client failed: ${r.error}` });
    continue;
  }
  if (r.partial) continue; // the first half of an upload finished by a later case
  const rawPath = new URL(r.endpoint).pathname.slice(1);
  const publicUrl = `${BASE}/${rawPath}`;
  seen.add(publicUrl);
  const problems = [];
  try {
    const stored = await download(rawPath);
    if (stored.size !== r.size || stored.sha256 !== r.sha256) {
      problems.push(`stored ${stored.size} bytes sha256 ${stored.sha256}, sent ${r.size} bytes sha256 ${r.sha256}`);
    }
  } catch (err) {
    problems.push(`download: ${err.message}`);
  }
  const sizes = completions.get(publicUrl) || [];
  if (sizes.length !== 1) problems.push(`${sizes.length} completions logged for ${rawPath}, not 1`);
  else if (sizes[0] !== r.size) problems.push(`the completion names ${sizes[0]} bytes, the client sent ${r.size}`);
  rows.push({ verdict: problems.length ? 'FAIL' : 'PASS', label, ms: r.ms, why: problems.join('; ') });
}
for (const [url, sizes] of completions) {
  if (!seen.has(url) && !results.some((r) => r.partial && `${BASE}${new URL(r.endpoint).pathname}` === url)) {
    rows.push({ verdict: 'FAIL', label: `server ${url}`, why: `${sizes.length} completion(s) no client reported` });
  }
}
for (const row of rows) {
  console.log(`${row.verdict}  ${row.label}${row.ms !== undefined ? `  ${row.ms} ms` : ''}${row.why ? `  — ${row.why}` : ''}`);
}
const count = (v) => rows.filter((r) => r.verdict === v).length;
console.log(`clients: ${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped`);
process.exit(count('FAIL') || !rows.length ? 1 : 0);
