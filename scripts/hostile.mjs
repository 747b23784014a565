// Hostile and crash-test clients for scripts/abuse.sh and scripts/soak.sh, on Node's
// standard library only (node:http, node:net, node:crypto, node:fs).
//
//   node scripts/hostile.mjs COMMAND --port P [--key K] [--pid SERVER_PID] [options]
//
// Every command talks to 127.0.0.1 only, bounds every wait, and prints one JSON object
// of figures on stdout; the shell scripts judge the figures against their targets.
// The server's memory and CPU are read from /proc/PID/status and /proc/PID/stat.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const HOST = '127.0.0.1';

// ------------------------------------------------------------------ arguments
function parseArgs(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const name = a.slice(2);
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) out[name] = true;
      else { out[name] = next; i++; }
    } else out._.push(a);
  }
  return out;
}
const args = parseArgs(process.argv.slice(2));
const num = (name, dflt) => (args[name] === undefined ? dflt : Number(args[name]));
const PORT = num('port');
const KEY = args.key;
const PID = num('pid');

// ------------------------------------------------------------------ helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

/** The request target of a signed URL, exactly as the crate signs (docs/protocol.md, "The signed string"). */
function sign(path, method = 'put', ttl = 3600, key = KEY) {
  const s = `${path}?expiry=${Math.floor(Date.now() / 1000) + ttl}&method=${method}`;
  return `/${s}&signature=${crypto.createHmac('sha256', key).update(s).digest('base64url')}`;
}

/**
 * One HTTP request with node:http; resolves (never rejects) with
 * { status, headers, body, ms, error } once the response is read whole, the request
 * failed, or `timeout` ms passed. `body` may be a Buffer, or a function that writes
 * the body into the request (for streamed and chunked bodies).
 */
function request({ port = PORT, method = 'PUT', path, headers = {}, body = null, agent = false, timeout = 60000 }) {
  return new Promise((resolve) => {
    const t0 = now();
    let done = false;
    const out = { status: 0, headers: {}, body: '', ms: 0, error: null, writeError: null };
    const finish = (extra) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      Object.assign(out, extra || {});
      out.ms = now() - t0;
      resolve(out);
    };
    const req = http.request({ host: HOST, port, method, path, headers, agent });
    const timer = setTimeout(() => { out.error = out.error || 'TIMEOUT'; req.destroy(); finish(); }, timeout);
    req.on('response', (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => { out.body = Buffer.concat(parts).toString('utf8'); finish(); });
      res.on('error', (e) => { out.error = out.error || e.code || String(e); finish(); });
    });
    req.on('error', (e) => {
      // An error after the whole response was read is still reported.
      if (done) out.lateError = e.code || String(e);
      else { out.error = e.code || String(e); finish(); }
    });
    if (typeof body === 'function') body(req, out);
    else req.end(body || undefined);
  });
}

/** The `error.code` of a JSON envelope, or null. */
function errorCode(text) {
  try { return JSON.parse(text)?.error?.code ?? null; } catch { return null; }
}
function envelopeData(text) {
  try { return JSON.parse(text)?.data ?? null; } catch { return null; }
}

/** The server's VmRSS and VmHWM in KiB. */
function mem(pid = PID) {
  try {
    const t = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rss: Number(/VmRSS:\s+(\d+)/.exec(t)[1]), hwm: Number(/VmHWM:\s+(\d+)/.exec(t)[1]) };
  } catch { return null; }
}
/** The server's CPU seconds (user + system) so far. */
function cpu(pid = PID) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // CLK_TCK is 100 on Linux
  } catch { return null; }
}
function fdCount(pid = PID) {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return -1; }
}
const alive = (pid = PID) => { try { process.kill(pid, 0); return true; } catch { return false; } };

/** Samples VmRSS every 100 ms in the background; `stop()` gives the largest sample in KiB. */
function rssSampler(pid = PID) {
  let max = 0;
  const take = () => { const m = mem(pid); if (m && m.rss > max) max = m.rss; };
  take();
  const timer = setInterval(take, 100);
  return { stop: () => { clearInterval(timer); take(); return max; }, peek: () => max };
}

const mib = (kib) => Math.round((kib / 1024) * 10) / 10;
function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
function duBytes(dir) {
  let total = 0;
  const walk = (d) => {
    let entries = [];
    try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else { try { total += fs.statSync(p).size; } catch { /* removed meanwhile */ } }
    }
  };
  walk(dir);
  return total;
}

/** A simple PUT of `size` random bytes; { status, ms, ok }. */
async function simpleUpload(path, size = 65536, timeout = 60000) {
  const r = await request({ path: sign(path), body: crypto.randomBytes(size), timeout });
  return { status: r.status, ms: Math.round(r.ms), error: r.error, ok: r.status === 201 };
}

// ------------------------------------------------------------------ silent connections
/**
 * Opens `count` TCP connections that never send a byte (at most `parallel` connects
 * in flight), then a normal upload meanwhile; waits until the server has closed them
 * all, or `bound` seconds. Figures: how many opened, how many the server closed, the
 * longest a connection stayed open, the upload's answer time, server memory and CPU.
 */
async function silent() {
  const count = num('count', 10000);
  const bound = num('bound', 60) * 1000;
  const parallel = num('parallel', 512);
  const cpuWindow = num('cpu-window', 0) * 1000;
  const sampler = rssSampler();
  // The server's open descriptors, sampled: when they are back to what they were
  // before, the server holds none of the connections, whatever the client sees (a
  // connection the kernel's listen queue dropped looks open to a client that never
  // sends, yet never reached the server).
  const baseFds = fdCount();
  let lastBusy = now(), peakFds = baseFds;
  const fdTimer = setInterval(() => {
    const c = fdCount();
    if (c > peakFds) peakFds = c;
    if (c > baseFds + 1) lastBusy = now();
  }, 200);
  const socks = [];
  let connected = 0, failed = 0, closedByServer = 0, ended = 0, lastConnect = now();
  const failures = {};
  const t0 = now();
  let next = 0;
  const openOne = () => new Promise((resolve) => {
    const s = { t: now(), connectedAt: null, closedAt: null };
    const sock = net.connect({ host: HOST, port: PORT });
    s.sock = sock;
    socks.push(s);
    sock.on('connect', () => { s.connectedAt = now(); lastConnect = s.connectedAt; connected++; resolve(); });
    sock.on('data', () => {});
    sock.on('error', (e) => { s.err = e.code; });
    sock.on('close', () => {
      s.closedAt = now();
      ended++;
      if (s.connectedAt === null) { failed++; failures[s.err || 'closed'] = (failures[s.err || 'closed'] || 0) + 1; resolve(); }
      else if (!s.ours) closedByServer++;
    });
  });
  const workers = Array.from({ length: parallel }, async () => {
    while (next < count && now() - t0 < bound) { next++; await openOne(); }
  });
  // Connects that the kernel leaves pending (server at its cap) must not hold the
  // upload back: wait for them at most 20 s.
  await Promise.race([Promise.all(workers), sleep(20000)]);
  const openedMs = now() - t0;
  const openedNow = connected;
  let cpuShare = null;
  // The normal upload, started with the silent connections in place.
  const up0 = now();
  const upload = simpleUpload(`abuse/silent-${process.pid}-${Date.now()}.bin`, 65536, bound);
  if (cpuWindow > 0) {
    const c0 = cpu(); const w0 = now();
    await sleep(cpuWindow);
    const c1 = cpu();
    if (c0 !== null && c1 !== null) cpuShare = (c1 - c0) / ((now() - w0) / 1000);
  }
  const up = await upload;
  const upAfterMs = now() - up0;
  while (ended < socks.length || next < count) {
    if (now() - t0 > bound) break;
    if (next >= count && connected + failed === socks.length && now() - lastBusy > 3000) break;
    await sleep(100);
  }
  clearInterval(fdTimer);
  let longest = 0;
  let stillOpen = 0;
  for (const s of socks) {
    if (s.connectedAt !== null && s.closedAt !== null && !s.ours) longest = Math.max(longest, s.closedAt - s.connectedAt);
    if (s.closedAt === null) { stillOpen++; s.ours = true; s.sock.destroy(); }
  }
  const peak = sampler.stop();
  const m = mem();
  console.log(JSON.stringify({
    requested: count, attempted: socks.length, connected, openedNow, openedSeconds: +(openedMs / 1000).toFixed(1), failed, failures,
    closedByServer, stillOpen, serverFdsPeak: peakFds - baseFds, serverFdsNow: fdCount() - baseFds,
    serverHeldSeconds: +((lastBusy - lastConnect) / 1000).toFixed(1), longestSeconds: +(longest / 1000).toFixed(1),
    allClosedSeconds: +((Math.max(...socks.map((s) => s.closedAt ?? now())) - t0) / 1000).toFixed(1),
    peakRssMiB: mib(peak), hwmMiB: m ? mib(m.hwm) : null,
    upload: { ...up, answeredSeconds: +(upAfterMs / 1000).toFixed(2) },
    cpuShare: cpuShare === null ? null : +cpuShare.toFixed(3), serverAlive: alive(),
  }));
}

/** `count` connections that send the HTTP/2 preface one byte every `step` ms. */
async function preface() {
  const count = num('count', 50);
  const step = num('step', 5000);
  const bound = num('bound', 60) * 1000;
  const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  const t0 = now();
  const res = await Promise.all(Array.from({ length: count }, () => new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port: PORT });
    let sent = 0, connectedAt = null, timer = null, closedByServer = true;
    const send = () => {
      if (sent < PREFACE.length && !sock.destroyed) { sock.write(PREFACE.subarray(sent, sent + 1)); sent++; }
    };
    sock.on('connect', () => { connectedAt = now(); send(); timer = setInterval(send, step); });
    sock.on('data', () => {});
    sock.on('error', () => {});
    const guard = setTimeout(() => { closedByServer = false; sock.destroy(); }, bound);
    sock.on('close', () => {
      clearInterval(timer); clearTimeout(guard);
      resolve({ closedByServer: closedByServer && connectedAt !== null, seconds: connectedAt === null ? null : (now() - connectedAt) / 1000, sent });
    });
  })));
  const closed = res.filter((r) => r.closedByServer);
  console.log(JSON.stringify({
    count, closedByServer: closed.length,
    longestSeconds: +Math.max(0, ...closed.map((r) => r.seconds)).toFixed(1),
    maxBytesSent: Math.max(...res.map((r) => r.sent)), seconds: +((now() - t0) / 1000).toFixed(1),
  }));
}

// ------------------------------------------------------------------ trickle
/** A 10 MB PUT that sends one byte every `step` ms: when and how the server cuts it. */
async function trickle() {
  const step = num('step', 5000);
  const size = num('size', 10_000_000);
  const bound = num('bound', 120) * 1000;
  let sent = 0;
  let timer = null;
  const r = await request({
    path: sign(`abuse/trickle-${Date.now()}.bin`),
    headers: { 'content-length': String(size) },
    timeout: bound,
    body: (req) => {
      const send = () => { if (!req.destroyed && sent < size) { req.write(Buffer.from('x')); sent++; } };
      req.on('response', () => clearInterval(timer));
      req.on('close', () => clearInterval(timer));
      send();
      timer = setInterval(send, step);
    },
  });
  clearInterval(timer);
  console.log(JSON.stringify({ status: r.status, code: errorCode(r.body), seconds: +(r.ms / 1000).toFixed(1), bytesSent: sent, error: r.error }));
}

/** `POST /upload-url` declaring a 1000-byte body that never comes. */
async function postNoBody() {
  const bound = num('bound', 120) * 1000;
  const t0 = now();
  const out = await new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port: PORT });
    let text = '';
    const guard = setTimeout(() => { sock.destroy(); resolve({ closed: false, timedOut: true }); }, bound);
    sock.on('connect', () => sock.write(`POST /upload-url HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`));
    sock.on('data', (d) => { text += d; });
    sock.on('error', () => {});
    sock.on('close', () => { clearTimeout(guard); resolve({ closed: true, answer: /^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? null }); });
  });
  console.log(JSON.stringify({ ...out, seconds: +((now() - t0) / 1000).toFixed(1) }));
}

// ------------------------------------------------------------------ many chunks
/**
 * `count` one-byte chunks in order on one signed URL, `parallel` in flight on
 * keep-alive connections; then `stall` chunk requests on the same session whose
 * bodies never come. The declared total leaves room for the stalled ranges, so the
 * session stays open.
 */
async function manyChunks() {
  const count = num('count', 100000);
  const parallel = num('parallel', 4);
  const stall = num('stall', 200);
  const stallSize = 65536;
  const maxMs = num('max-seconds', 1200) * 1000;
  const dir = args.dir;
  const total = count + stall * stallSize;
  const path = `abuse/many-${Date.now()}.bin`;
  const target = sign(path, 'put', 24 * 3600);
  const agent = new http.Agent({ keepAlive: true, maxSockets: parallel });
  const lat = new Float64Array(count);
  const statuses = {};
  let next = 0, bad = null;
  const t0 = now();
  const byte = Buffer.from('a');
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < count && !bad && now() - t0 < maxMs) {
      const i = next++;
      const r = await request({ path: target, agent, body: byte, headers: { 'content-range': `bytes ${i}-${i}/${total}` }, timeout: 60000 });
      lat[i] = r.ms;
      statuses[r.status] = (statuses[r.status] || 0) + 1;
      if (r.status !== 202) bad = { index: i, status: r.status, code: errorCode(r.body), error: r.error };
    }
  }));
  const elapsed = (now() - t0) / 1000;
  agent.destroy();
  // Chunks answered, in order (the pool stops at the first refusal or at the time bound).
  let done = bad ? bad.index : next;
  while (done > 0 && lat[done - 1] === 0) done--;
  const head = Array.from(lat.subarray(0, Math.min(1000, done))).sort((a, b) => a - b);
  const tail = Array.from(lat.subarray(Math.max(0, done - 1000), done)).sort((a, b) => a - b);
  const diskBytes = dir ? duBytes(`${dir}/.uploads`) : null;
  // The stalled requests: headers with a Content-Length, no body.
  await sleep(500);
  const before = mem();
  const sampler = rssSampler();
  const socks = [];
  let answered = 0;
  for (let k = 0; k < stall; k++) {
    const first = count + k * stallSize;
    const sock = net.connect({ host: HOST, port: PORT });
    sock.on('error', () => {});
    sock.on('data', () => { answered++; });
    sock.on('connect', () => sock.write(`PUT ${target} HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nContent-Range: bytes ${first}-${first + stallSize - 1}/${total}\r\nContent-Length: ${stallSize}\r\n\r\n`));
    socks.push(sock);
  }
  await sleep(5000);
  const peak = sampler.stop();
  for (const s of socks) s.destroy();
  const status = await request({ path: target, headers: { 'content-range': `bytes */${total}` } });
  const upload = envelopeData(status.body);
  console.log(JSON.stringify({
    count: done, total, seconds: +elapsed.toFixed(1), rate: Math.round(done / elapsed), statuses, bad,
    p50FirstMs: +percentile(head, 50).toFixed(2), p50LastMs: +percentile(tail, 50).toFixed(2),
    p99FirstMs: +percentile(head, 99).toFixed(2), p99LastMs: +percentile(tail, 99).toFixed(2),
    sessionDiskBytes: diskBytes,
    stalled: stall, stalledAnsweredEarly: answered,
    rssBeforeMiB: before ? mib(before.rss) : null, rssPeakStalledMiB: mib(peak),
    stallAddedMiB: before ? mib(peak - before.rss) : null,
    statusAfter: status.status, receivedAfter: upload?.received ?? null, serverAlive: alive(),
  }));
}

// ------------------------------------------------------------------ quota
/**
 * A chunked session with some acknowledged chunks, then `puts` simultaneous simple
 * PUTs of `put-size` bytes on one URL, while the session keeps sending: past the quota
 * 507 storage_full; afterwards the acknowledged chunks are still there and the
 * session completes with the right sha-256.
 */
async function quota() {
  const puts = num('puts', 20);
  const putSize = num('put-size', 8_000_000);
  const chunk = 1 << 20;
  const nChunks = num('chunks', 16);
  const file = crypto.randomBytes(nChunks * chunk);
  const total = file.length;
  const path = `abuse/quota-session-${Date.now()}.bin`;
  const target = sign(path);
  const sendChunk = (i) => request({ path: target, body: file.subarray(i * chunk, (i + 1) * chunk), headers: { 'content-range': `bytes ${i * chunk}-${(i + 1) * chunk - 1}/${total}` } });
  const acked = new Set();
  const statuses = {};
  const count = (s, r) => { const k = `${r.status}${errorCode(r.body) ? ' ' + errorCode(r.body) : ''}${r.error ? ' ' + r.error : ''}`; s[k] = (s[k] || 0) + 1; };
  for (let i = 0; i < 4; i++) { const r = await sendChunk(i); count(statuses, r); if (r.status === 202) acked.add(i); }
  // 20 simple PUTs of 8 MB at once on one URL, streamed, while chunks 4.. go on.
  const putTarget = sign(`abuse/quota-simple-${Date.now()}.bin`);
  const body = crypto.randomBytes(putSize);
  const putStatuses = {};
  const simple = Promise.all(Array.from({ length: puts }, () => request({ path: putTarget, body, timeout: 120000 }).then((r) => count(putStatuses, r))));
  const during = {};
  for (let i = 4; i < nChunks; i++) { const r = await sendChunk(i); count(during, r); if (r.status === 202 || r.status === 201) acked.add(i); }
  await simple;
  // Status query: every acknowledged chunk must still be stored.
  const q = await request({ path: target, headers: { 'content-range': `bytes */${total}` } });
  const data = envelopeData(q.body);
  const ranges = q.status === 308 ? (data?.ranges ?? []) : q.status === 200 ? [[0, total - 1]] : [];
  const covered = (i) => ranges.some(([a, b]) => a <= i * chunk && (i + 1) * chunk - 1 <= b);
  const lost = [...acked].filter((i) => !covered(i)).length;
  // Finish: resend what is missing.
  let final = q;
  for (let i = 0; i < nChunks; i++) if (!covered(i)) final = await sendChunk(i);
  const got = await download(path);
  console.log(JSON.stringify({
    putStatuses, chunkStatuses: statuses, chunkStatusesDuring: during, acked: acked.size, lost,
    statusQuery: q.status, finalStatus: final.status, shaOk: got.status === 200 && got.sha === sha256(file),
    storageFull: Object.keys({ ...putStatuses, ...during }).some((k) => k.startsWith('507 storage_full')),
    other5xx: Object.keys({ ...putStatuses, ...during }).filter((k) => /^5/.test(k) && !k.startsWith('507 storage_full')),
  }));
}

// ------------------------------------------------------------------ over the limit
/**
 * `rounds` PUTs of `size` bytes through Node's http client, with Content-Length or
 * chunked: how often the client read the 413 envelope with no socket error.
 */
async function overLimit() {
  const rounds = num('rounds', 10);
  const size = num('size', 64 << 20);
  const chunked = args.chunked === true;
  const piece = crypto.randomBytes(1 << 20);
  const results = [];
  for (let r = 0; r < rounds; r++) {
    const res = await request({
      path: sign(`abuse/over-${chunked ? 'chunked' : 'length'}-${r}.bin`),
      headers: chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(size) },
      timeout: 120000,
      body: (req, out) => {
        let sent = 0;
        const pump = () => {
          while (sent < size && !req.destroyed) {
            sent += piece.length;
            if (!req.write(piece)) { req.once('drain', pump); return; }
          }
          if (!req.destroyed) req.end();
        };
        req.on('error', (e) => { out.writeError = out.writeError || e.code; });
        pump();
      },
    });
    results.push({ status: res.status, code: errorCode(res.body), error: res.error || res.lateError || null });
  }
  const good = results.filter((x) => x.status === 413 && x.code === 'too_large' && !x.error).length;
  const errors = {};
  for (const x of results) if (x.error) errors[x.error] = (errors[x.error] || 0) + 1;
  console.log(JSON.stringify({ rounds, good, errors, statuses: results.map((x) => x.status) }));
}

// ------------------------------------------------------------------ kill -9 soak
/**
 * One round, before the kill: a random file sent in 1 MiB chunks in random order,
 * `parallel` in flight; the server is killed with SIGKILL at a random moment (or, with
 * --at-completion, just as the last chunks are sent). Writes the round's state for
 * `kill-after` and prints it.
 */
async function killBefore() {
  const state = args.state;
  const chunk = 1 << 20;
  const size = (8 + crypto.randomInt(25)) * chunk - crypto.randomInt(chunk); // 8..32 MiB, ragged end
  const file = crypto.randomBytes(size);
  const n = Math.ceil(size / chunk);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) { const j = crypto.randomInt(i + 1); [order[i], order[j]] = [order[j], order[i]]; }
  const path = `soak/kill-${args.round}-${Date.now()}.bin`;
  const target = sign(path, 'put', 24 * 3600);
  const atCompletion = args['at-completion'] === true;
  const killAfter = atCompletion ? n : crypto.randomInt(n); // acknowledged chunks before the kill
  const parallel = num('parallel', 4);
  const acked = [];
  const statuses = {};
  let killed = false, sentAll = 0, next = 0;
  const kill = () => { if (!killed) { killed = true; try { process.kill(PID, 'SIGKILL'); } catch { /* gone */ } } };
  const range = (i) => [i * chunk, Math.min(size, (i + 1) * chunk) - 1];
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < n && !killed) {
      const i = order[next++];
      const [a, b] = range(i);
      const last = next === n;
      const r = await request({
        path: target, headers: { 'content-range': `bytes ${a}-${b}/${size}` }, timeout: 30000,
        body: (req) => {
          // Aimed at the completion: kill 0-3 ms after the last chunk's body is written.
          if (atCompletion && last) req.on('finish', () => setTimeout(kill, crypto.randomInt(4)));
          req.end(file.subarray(a, b + 1));
          sentAll++;
        },
      });
      statuses[r.status || r.error] = (statuses[r.status || r.error] || 0) + 1;
      if (r.status === 202 || r.status === 201 || r.status === 200) acked.push(i);
      if (!atCompletion && acked.length >= killAfter) setTimeout(kill, crypto.randomInt(20));
    }
  }));
  if (!killed) kill();
  fs.writeFileSync(`${state}.bin`, file);
  const out = { path, target, size, chunk, n, acked, statuses, atCompletion, killAfter, sent: sentAll };
  fs.writeFileSync(state, JSON.stringify(out));
  console.log(JSON.stringify({ n, acked: acked.length, atCompletion, statuses }));
}

/** One round, after the restart: status query, resend the missing ranges, check sha-256. */
async function killAfter() {
  const st = JSON.parse(fs.readFileSync(args.state, 'utf8'));
  const file = fs.readFileSync(`${args.state}.bin`);
  const { target, size, chunk, n, acked, path } = st;
  const q = await request({ path: target, headers: { 'content-range': `bytes */${size}` } });
  let ranges;
  if (q.status === 308) ranges = envelopeData(q.body)?.ranges ?? [];
  else if (q.status === 200 || q.status === 201) ranges = [[0, size - 1]];
  else ranges = [];
  const range = (i) => [i * chunk, Math.min(size, (i + 1) * chunk) - 1];
  const covered = (i) => { const [a, b] = range(i); return ranges.some(([x, y]) => x <= a && b <= y); };
  const lost = acked.filter((i) => !covered(i)).length;
  let completion = q.status === 200 || q.status === 201 ? q : null;
  const resend = [];
  for (let i = 0; i < n; i++) if (!covered(i)) resend.push(i);
  const errors = {};
  let k = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (k < resend.length) {
      const i = resend[k++];
      const [a, b] = range(i);
      const r = await request({ path: target, body: file.subarray(a, b + 1), headers: { 'content-range': `bytes ${a}-${b}/${size}` } });
      if (r.status === 201 || r.status === 200) completion = r;
      else if (r.status !== 202) errors[r.status || r.error] = (errors[r.status || r.error] || 0) + 1;
    }
  }));
  if (!completion) {
    const again = await request({ path: target, headers: { 'content-range': `bytes */${size}` } });
    if (again.status === 200 || again.status === 201) completion = again;
  }
  const got = await download(path);
  const ok = got.status === 200 && got.sha === sha256(file) && got.size === size;
  console.log(JSON.stringify({ statusQuery: q.status, resent: resend.length, lost, completed: !!completion, corrupted: !!completion && !ok, downloadStatus: got.status, errors }));
}

function download(path, port = PORT) {
  return new Promise((resolve) => {
    const req = http.get({ host: HOST, port, path: sign(path, 'get'), agent: false }, (res) => {
      const h = crypto.createHash('sha256');
      let size = 0;
      res.on('data', (d) => { h.update(d); size += d.length; });
      res.on('end', () => resolve({ status: res.statusCode, sha: h.digest('hex'), size }));
      res.on('error', (e) => resolve({ status: 0, error: e.code }));
    });
    req.setTimeout(60000, () => req.destroy(new Error('TIMEOUT')));
    req.on('error', (e) => resolve({ status: 0, error: e.code || String(e) }));
  });
}

// ------------------------------------------------------------------ race soak
/**
 * `rounds` rounds against two servers on one folder: every chunk but the last goes to
 * either server at random; the last is sent to both at the same moment. Checks the
 * stored file's sha-256, that both answers carry the same File, and that exactly one
 * completion was logged (the servers' logs, --log1 and --log2, `upload completed`).
 */
async function race() {
  const rounds = num('rounds', 1000);
  const ports = [num('port1'), num('port2')];
  const logs = [args.log1, args.log2];
  const offsets = logs.map((l) => fs.statSync(l).size);
  const newLog = (i) => {
    const size = fs.statSync(logs[i]).size;
    const fd = fs.openSync(logs[i], 'r');
    const buf = Buffer.alloc(size - offsets[i]);
    fs.readSync(fd, buf, 0, buf.length, offsets[i]);
    fs.closeSync(fd);
    offsets[i] = size;
    return buf.toString('utf8');
  };
  const agents = ports.map(() => new http.Agent({ keepAlive: true, maxSockets: 4 }));
  const t0 = now();
  let corrupted = 0, notOne = 0, differentFiles = 0, failed = 0;
  const completionCounts = {};
  const answerPairs = {};
  const failures = [];
  for (let r = 0; r < rounds; r++) {
    const chunk = (16 + crypto.randomInt(49)) * 1024; // 16..64 KiB
    const n = 2 + crypto.randomInt(5); // 2..6 chunks
    const size = n * chunk - crypto.randomInt(chunk);
    const file = crypto.randomBytes(size);
    const path = `soak/race-${process.pid}-${r}.bin`;
    const target = sign(path, 'put', 3600);
    const range = (i) => [i * chunk, Math.min(size, (i + 1) * chunk) - 1];
    const send = (i, s) => { const [a, b] = range(i); return request({ port: ports[s], agent: agents[s], path: target, body: file.subarray(a, b + 1), headers: { 'content-range': `bytes ${a}-${b}/${size}` } }); };
    let ok = true;
    const early = await Promise.all(Array.from({ length: n - 1 }, (_, i) => send(i, crypto.randomInt(2))));
    if (early.some((x) => x.status !== 202)) { ok = false; failures.push({ round: r, early: early.map((x) => x.status || x.error) }); }
    const both = await Promise.all([send(n - 1, 0), send(n - 1, 1)]);
    const pair = both.map((x) => x.status || x.error).sort().join('+');
    answerPairs[pair] = (answerPairs[pair] || 0) + 1;
    const ids = both.map((x) => envelopeData(x.body)?.id);
    if (!ids[0] || ids[0] !== ids[1]) differentFiles++;
    const text = newLog(0) + newLog(1);
    const completions = text.split('\n').filter((l) => l.includes('upload completed') && l.includes(`/${path}`)).length;
    completionCounts[completions] = (completionCounts[completions] || 0) + 1;
    if (completions !== 1) notOne++;
    const got = await download(path, ports[crypto.randomInt(2)]);
    if (!(got.status === 200 && got.sha === sha256(file))) {
      corrupted++;
      failures.push({ round: r, download: got.status, pair });
    }
    if (!ok) failed++;
    try { fs.unlinkSync(`${args.dir}/${path}`); } catch { /* not stored */ }
  }
  agents.forEach((a) => a.destroy());
  console.log(JSON.stringify({
    rounds, corrupted, notOne, differentFiles, failed, completionCounts, answerPairs,
    seconds: +((now() - t0) / 1000).toFixed(1), failures: failures.slice(0, 5),
  }));
}

// ------------------------------------------------------------------ main
const commands = {
  silent, preface, trickle, 'post-no-body': postNoBody, 'many-chunks': manyChunks, quota,
  'over-limit': overLimit, 'kill-before': killBefore, 'kill-after': killAfter, race,
  upload: async () => console.log(JSON.stringify(await simpleUpload(args.path || `probe-${Date.now()}.bin`, num('size', 65536)))),
  sign: async () => console.log(`http://${HOST}:${PORT}${sign(args.path, args.method || 'put')}`),
};
const cmd = commands[args._[0]];
if (!cmd) { console.error(`usage: node hostile.mjs (${Object.keys(commands).join('|')}) --port P --key K ...`); process.exit(2); }
await cmd();
process.exit(0);
