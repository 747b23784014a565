// Many small uploads at once (Node, no dependencies): N simple PUTs of SIZE bytes,
// CONCURRENCY in flight, each to its own path, each signed when a key is given.
//
//   node many-client.mjs BASE_URL --count N --concurrency C --size BYTES
//                        [--prefix REL/PREFIX] [--key KEY] [--timeout-ms MS]
//
// Path of request i: {prefix}-{i}.bin. With --key the URL is signed as the crate
// signs (HMAC-SHA256 over `{path}?expiry=E&method=put`, base64url). The body is one
// random buffer, the same for every request. Every request has a timeout and the
// number of requests is fixed, so a run always ends. Prints one JSON line:
// {requests, bytes, seconds, statuses, latency_ms: {p50, p90, p99, max}}. Exits 1 if
// any request failed or was answered other than 2xx.
import http from 'node:http';
import crypto from 'node:crypto';

const argv = process.argv.slice(2);
const base = argv[0];
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
if (!base || base.startsWith('--')) {
  console.error('usage: node many-client.mjs BASE_URL --count N --concurrency C --size BYTES [--prefix P] [--key K]');
  process.exit(2);
}
const COUNT = Number(opt('count', 1000));
const CONCURRENCY = Number(opt('concurrency', 200));
const SIZE = Number(opt('size', 1 << 20));
const PREFIX = opt('prefix', 'bench/many');
const KEY = opt('key', '');
const TIMEOUT_MS = Number(opt('timeout-ms', 120000));
const body = crypto.randomBytes(SIZE);
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const expiry = Math.floor(Date.now() / 1000) + 3600;
const root = base.replace(/\/$/, '');

function url(i) {
  const path = `${PREFIX}-${i}.bin`;
  if (!KEY) return `${root}/${path}`;
  const s = `${path}?expiry=${expiry}&method=put`;
  return `${root}/${s}&signature=${crypto.createHmac('sha256', KEY).update(s).digest('base64url')}`;
}

function put(u) {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = http.request(u, {
      method: 'PUT',
      agent,
      timeout: TIMEOUT_MS,
      headers: { 'Content-Length': String(SIZE), 'Content-Type': 'application/octet-stream' },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
      res.on('error', () => resolve({ status: 'error', ms: NaN }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve({ status: 'error', ms: NaN }));
    req.end(body);
  });
}

const latencies = [];
const statuses = {};
let next = 0;
async function lane() {
  while (next < COUNT) {
    const i = next++;
    const r = await put(url(i));
    statuses[r.status] = (statuses[r.status] || 0) + 1;
    latencies.push(r.ms);
  }
}
const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: Math.min(CONCURRENCY, COUNT) }, lane));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
agent.destroy();
const sorted = latencies.filter(Number.isFinite).sort((a, b) => a - b);
const pct = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const ok = Object.entries(statuses).every(([s]) => /^2\d\d$/.test(s));
console.log(JSON.stringify({
  requests: COUNT,
  bytes: COUNT * SIZE,
  seconds,
  statuses,
  latency_ms: { p50: pct(50), p90: pct(90), p99: pct(99), max: sorted[sorted.length - 1] },
}));
process.exit(ok ? 0 : 1);
