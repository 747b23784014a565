// Upload client for the peer benchmarks (Node, no dependencies).
//
//   node upload-client.mjs tus   BASE_URL FILE [--chunk BYTES] [--parallel N]
//   node upload-client.mjs range BASE_URL FILE [--chunk BYTES] [--parallel N]
//                                 [--path REL/PATH] [--key KEY] [--expiry-in SECONDS]
//
// tus:   POST BASE_URL (Upload-Length) then PATCH chunks with Upload-Offset,
//        Content-Type application/offset+octet-stream, one after the other.
//        --parallel N > 1 uses the tus concatenation extension the way
//        tus-js-client's parallelUploads does: N partial uploads (one per
//        contiguous part of the file), each sent in chunks, N at once, then
//        one POST with Upload-Concat: final;... .
// range: the new middleware's resumable upload: PUT BASE_URL/PATH?expiry=E&method=put&signature=S
//        with Content-Range: bytes FIRST-LAST/TOTAL, N chunks in flight.
//        Without --key the URL is not signed (for the discard sink).
//
// Every request has a timeout and the number of requests is fixed by the file
// size, so a run always ends. Prints one JSON line: {location|url, requests, bytes, seconds},
// and for range uploads `last`: the request answered 201 (the one that completed the
// file): `ms` from its start to its answer, `after_body_ms` from its last body byte
// handed to the kernel to its answer (the completion latency); and
// `chunks_after_body_ms` {p50, p90}: the same latency for the other chunks (202).
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

const argv = process.argv.slice(2);
const [mode, base, file] = argv;
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
if (!['tus', 'range'].includes(mode) || !base || !file) {
  console.error('usage: node upload-client.mjs tus|range BASE_URL FILE [--chunk BYTES] [--parallel N] [--path P] [--key K]');
  process.exit(2);
}
const CHUNK = Number(opt('chunk', 16 * 1024 * 1024));
const PARALLEL = Number(opt('parallel', 1));
const TIMEOUT_MS = Number(opt('timeout-ms', 120000));
const size = fs.statSync(file).size;
const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(PARALLEL, 1) });
let requests = 0;

// One HTTP request with an in-memory body (a Buffer, or none). Resolves {status, headers}.
function request(method, url, headers, body) {
  requests++;
  const t0 = process.hrtime.bigint();
  let sent = t0;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent, timeout: TIMEOUT_MS }, (res) => {
      const answered = process.hrtime.bigint();
      res.resume();
      res.on('end', () => resolve({
        status: res.statusCode,
        headers: res.headers,
        ms: Number(answered - t0) / 1e6,
        after_body_ms: Number(answered - sent) / 1e6,
      }));
      res.on('error', reject);
    });
    req.on('finish', () => { sent = process.hrtime.bigint(); });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

// Each upload lane (one request in flight) owns one chunk-sized buffer, reused for
// every chunk it sends: the chunk is read from the file (page cache) with pread and
// handed to the socket in one write, so the client spends little CPU per byte.
const fh = await fs.promises.open(file, 'r');
async function readChunk(buf, start, len) {
  for (let got = 0; got < len; ) {
    const { bytesRead } = await fh.read(buf, got, len - got, start + got);
    if (bytesRead === 0) throw new Error(`short read at ${start + got}`);
    got += bytesRead;
  }
  return buf.subarray(0, len);
}

function must(ok, what, r) {
  if (!ok) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.headers)}`);
}

// tus: upload bytes [start, start+len) of FILE into a fresh upload (optionally a partial one).
async function tusUpload(start, len, partial) {
  const h = { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(len), 'Content-Length': '0' };
  if (partial) h['Upload-Concat'] = 'partial';
  const c = await request('POST', base, h);
  must(c.status === 201 && c.headers.location, 'tus create', c);
  const loc = new URL(c.headers.location, base).href;
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, len));
  for (let off = 0; off < len; off += CHUNK) {
    const n = Math.min(CHUNK, len - off);
    const r = await request('PATCH', loc, {
      'Tus-Resumable': '1.0.0',
      'Upload-Offset': String(off),
      'Content-Type': 'application/offset+octet-stream',
      'Content-Length': String(n),
    }, await readChunk(buf, start + off, n));
    must(r.status === 204 && Number(r.headers['upload-offset']) === off + n, `tus PATCH @${off}`, r);
  }
  return loc;
}

async function tus() {
  if (PARALLEL <= 1) return { location: await tusUpload(0, size, false) };
  const part = Math.ceil(size / PARALLEL);
  const parts = [];
  for (let s = 0; s < size; s += part) parts.push([s, Math.min(part, size - s)]);
  const locs = await Promise.all(parts.map(([s, n]) => tusUpload(s, n, true)));
  const paths = locs.map((l) => new URL(l).pathname).join(' ');
  const f = await request('POST', base, { 'Tus-Resumable': '1.0.0', 'Upload-Concat': `final;${paths}`, 'Content-Length': '0' });
  must(f.status === 201 && f.headers.location, 'tus concat final', f);
  return { location: new URL(f.headers.location, base).href, partials: locs };
}

// range: Content-Range PUTs to one (signed) URL, PARALLEL chunks in flight.
async function range() {
  const path = opt('path', 'bench/upload.bin');
  const key = opt('key', process.env.UPLOAD_KEY || '');
  const expiry = Math.floor(Date.now() / 1000) + Number(opt('expiry-in', 3600));
  const s = `${path}?expiry=${expiry}&method=put`;
  const url = key
    ? `${base.replace(/\/$/, '')}/${s}&signature=${crypto.createHmac('sha256', key).update(s).digest('base64url')}`
    : `${base.replace(/\/$/, '')}/${path}`;
  const chunks = [];
  for (let off = 0; off < size; off += CHUNK) chunks.push([off, Math.min(CHUNK, size - off)]);
  let next = 0;
  const statuses = {};
  let last = null;
  const afterBody = [];
  async function worker() {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, size));
    while (next < chunks.length) {
      const [off, n] = chunks[next++];
      const r = await request('PUT', url, {
        'Content-Range': `bytes ${off}-${off + n - 1}/${size}`,
        'Content-Length': String(n),
        'Content-Type': 'application/octet-stream',
      }, await readChunk(buf, off, n));
      must(r.status >= 200 && r.status < 300, `PUT bytes ${off}-${off + n - 1}`, r);
      statuses[r.status] = (statuses[r.status] || 0) + 1;
      if (r.status === 201) last = { ms: r.ms, after_body_ms: r.after_body_ms };
      else afterBody.push(r.after_body_ms);
    }
  }
  await Promise.all(Array.from({ length: Math.max(PARALLEL, 1) }, worker));
  afterBody.sort((a, b) => a - b);
  const pct = (p) => afterBody[Math.min(afterBody.length - 1, Math.ceil((p / 100) * afterBody.length) - 1)];
  const chunks_after_body_ms = afterBody.length ? { p50: pct(50), p90: pct(90) } : null;
  return { url, statuses, last, chunks_after_body_ms };
}

const t0 = process.hrtime.bigint();
const out = await (mode === 'tus' ? tus() : range());
agent.destroy();
await fh.close();
console.log(JSON.stringify({ ...out, requests, bytes: size, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }));
