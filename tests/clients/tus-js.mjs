// tus-js-client 4 in Node against the example server.
//
//   node tus-js.mjs --base http://127.0.0.1:PORT [--cases a,b] [--state FILE]
//
// Each upload mints its own signed URL with POST {base}/upload-url
// {"filename"} and uses the answered "signedUrl" as the tus `endpoint`. One
// JSON line per case on stdout: client, case, ok, endpoint, url (upload.url at
// the end), size and sha256 (of the bytes sent), ms; or skipped with the
// reason. Exit status 1 if a case failed. Every request has a timeout, every
// case a deadline; 127.0.0.1 only.
//
// `restart-begin` and `restart-finish` are the two halves of one upload around
// a server restart (scripts/clients-test.sh kills the server in between): the
// first stops after two chunks with its URL kept in a FileUrlStorage (--state),
// the second finds it there and resumes by HEAD, and must not create the upload
// again. They speak tus; `restart-begin-ietf-draft-03` and the like do the
// same in tus-js-client's IETF draft modes, each upload under its own
// fingerprint in the same state file.
import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import * as tus from 'tus-js-client';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.base || new URL(args.base).hostname !== '127.0.0.1') {
  console.error('usage: tus-js.mjs --base http://127.0.0.1:PORT [--cases a,b] [--state FILE]');
  process.exit(2);
}
const BASE = args.base.replace(/\/+$/, '');
const CASE_DEADLINE_MS = 60_000;
const REQUEST_TIMEOUT_MS = 20_000;
const CHUNK = 65536;

function bytes(n, seed) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function mint(filename) {
  const r = await fetch(`${BASE}/upload-url`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ filename }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (!r.ok) throw new Error(`upload-url answered ${r.status}`);
  return (await r.json()).signedUrl;
}

// Every request and its answer's status and tus headers, per upload.
class RecordingHttpStack extends tus.DefaultHttpStack {
  constructor() {
    super();
    this.log = [];
  }
  createRequest(method, url) {
    const req = super.createRequest(method, url);
    const send = req.send.bind(req);
    const entry = { method, override: null, status: null, offset: null };
    req.send = async (body) => {
      entry.override = req.getHeader('X-HTTP-Method-Override') || null;
      this.log.push(entry);
      let timer;
      try {
        const res = await Promise.race([
          send(body),
          new Promise((_, rej) => {
            timer = setTimeout(() => {
              req.abort();
              rej(new Error(`${method} ${url}: no answer in ${REQUEST_TIMEOUT_MS} ms`));
            }, REQUEST_TIMEOUT_MS);
          }),
        ]);
        entry.status = res.getStatus();
        entry.offset = res.getHeader('Upload-Offset') ?? null;
        return res;
      } finally {
        clearTimeout(timer);
      }
    };
    return req;
  }
}

// One tus.Upload to its end, or until `stopAfterChunks` chunks were acknowledged.
function upload(data, opts, { stopAfterChunks = 0, beforeStart } = {}) {
  const stack = new RecordingHttpStack();
  return new Promise((resolve, reject) => {
    let up;
    let chunks = 0;
    const timer = setTimeout(() => {
      up?.abort(false);
      reject(new Error(`over the ${CASE_DEADLINE_MS} ms deadline`));
    }, CASE_DEADLINE_MS);
    up = new tus.Upload(data, {
      retryDelays: [0, 500, 1500],
      httpStack: stack,
      ...opts,
      onChunkComplete: () => {
        chunks++;
        if (stopAfterChunks && chunks === stopAfterChunks) {
          clearTimeout(timer);
          up.abort(false).then(() => resolve({ up, log: stack.log }));
        }
      },
      onSuccess: () => {
        clearTimeout(timer);
        resolve({ up, log: stack.log });
      },
      onError: (err) => {
        clearTimeout(timer);
        reject(err);
      },
    });
    Promise.resolve(beforeStart ? beforeStart(up) : null).then(() => up.start(), reject);
  });
}

const methods = (log) => log.map((e) => (e.override ? `${e.method}(${e.override})` : e.method)).join(' ');
function expect(cond, what, log) {
  if (!cond) throw new Error(`${what}; requests: ${methods(log)}`);
}

// OPTIONS on the signed URL: what the server offers.
async function tusExtensions(endpoint) {
  const r = await fetch(endpoint, {
    method: 'OPTIONS',
    headers: { 'Tus-Resumable': '1.0.0' },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const version = r.headers.get('tus-version');
  if (!version) throw new Error(`OPTIONS answered ${r.status} without Tus-Version: it did not reach the tus server`);
  return (r.headers.get('tus-extension') || '').split(',').map((s) => s.trim());
}

function restartStorage() {
  if (!args.state) throw new Error('--state FILE is needed by the restart cases');
  return new tus.FileUrlStorage(args.state);
}
// One upload around the restart per protocol: its file, fingerprint, and the
// status a HEAD answers (tus 200, the draft's 204).
const RESTARTS = {
  'tus-v1': { suffix: '', name: 'tusjs-restart.bin', size: 400_000, seed: 33, head: 200 },
  'ietf-draft-03': { suffix: '-ietf-draft-03', name: 'tusjs-restart-ietf-draft-03.bin', size: 400_000, seed: 40, head: 204 },
  'ietf-draft-05': { suffix: '-ietf-draft-05', name: 'tusjs-restart-ietf-draft-05.bin', size: 400_000, seed: 41, head: 204 },
};
// FileUrlStorage finds fingerprints by prefix: none is another's prefix.
const fingerprintOf = (protocol) => `tusjs-restart-${protocol}`;

const CASES = {
  whole: async () => {
    const d = bytes(300_000, 31);
    const endpoint = await mint('tusjs-whole.bin');
    const { up, log } = await upload(d, { endpoint, metadata: { filename: 'tusjs-whole.bin', filetype: 'application/octet-stream' } });
    expect(methods(log) === 'POST PATCH', 'one creation, one append', log);
    return { endpoint, url: up.url, data: d };
  },
  chunked: async () => {
    const d = bytes(300_000, 32);
    const endpoint = await mint('tusjs-chunked.bin');
    const { up, log } = await upload(d, { endpoint, chunkSize: CHUNK });
    expect(log.filter((e) => e.method === 'PATCH').length === Math.ceil(d.length / CHUNK), 'one PATCH per chunk', log);
    return { endpoint, url: up.url, data: d };
  },
  'data-during-creation': async () => {
    const d = bytes(200_000, 35);
    const endpoint = await mint('tusjs-ddc.bin');
    const { up, log } = await upload(d, { endpoint, uploadDataDuringCreation: true, chunkSize: CHUNK });
    expect(log[0].method === 'POST' && log[0].offset === String(CHUNK), 'the first chunk stored by the creation', log);
    return { endpoint, url: up.url, data: d };
  },
  'override-patch': async () => {
    const d = bytes(150_000, 36);
    const endpoint = await mint('tusjs-override.bin');
    const { up, log } = await upload(d, { endpoint, overridePatchMethod: true, chunkSize: CHUNK });
    expect(log.filter((e) => e.override === 'PATCH').length === 3 && !log.some((e) => e.method === 'PATCH'), 'every append a POST with X-HTTP-Method-Override: PATCH', log);
    return { endpoint, url: up.url, data: d };
  },
  'deferred-length': async () => {
    const d = bytes(150_000, 37);
    const endpoint = await mint('tusjs-deferred.bin');
    const stream = Readable.from([d.subarray(0, 70_000), d.subarray(70_000)]);
    const { up } = await upload(stream, { endpoint, uploadLengthDeferred: true, chunkSize: CHUNK });
    return { endpoint, url: up.url, data: d };
  },
  // a name whose signed path carries percent-escapes and sub-delimiters; the
  // client must send the path byte for byte as minted
  'odd-name': async () => {
    const d = bytes(70_000, 39);
    const endpoint = await mint("d'été (1) ~!*[x] 100%.bin");
    const { up } = await upload(d, { endpoint, chunkSize: CHUNK });
    return { endpoint, url: up.url, data: d };
  },
  empty: async () => {
    const d = Buffer.alloc(0);
    const endpoint = await mint('tusjs-empty.bin');
    const { up, log } = await upload(d, { endpoint });
    expect(methods(log) === 'POST', 'the creation alone completes an empty upload', log);
    return { endpoint, url: up.url, data: d };
  },
  'parallel-4': async () => {
    const d = bytes(400_000, 34);
    const endpoint = await mint('tusjs-parallel.bin');
    if (!(await tusExtensions(endpoint)).includes('concatenation')) {
      return { skipped: 'the server does not offer concatenation' };
    }
    const { up } = await upload(d, { endpoint, parallelUploads: 4 });
    return { endpoint, url: up.url, data: d };
  },
};
// The IETF resumable upload draft: `protocol: 'ietf-draft-03'` sends interop
// version 5, `'ietf-draft-05'` version 6 (with application/partial-upload).
for (const proto of ['ietf-draft-03', 'ietf-draft-05']) {
  CASES[proto] = async () => {
    const d = bytes(200_000, 38);
    const endpoint = await mint(`tusjs-${proto}.bin`);
    const { up, log } = await upload(d, { endpoint, protocol: proto, chunkSize: CHUNK });
    expect(methods(log) === 'POST PATCH PATCH PATCH PATCH', 'an empty creation, then one PATCH per chunk', log);
    expect(log.at(-1).offset === String(d.length), 'the completing answer carries the final Upload-Offset', log);
    return { endpoint, url: up.url, data: d };
  };
  // no chunkSize: an empty creation, then the whole file in one append
  CASES[`${proto}-whole`] = async () => {
    const d = bytes(300_000, 42);
    const endpoint = await mint(`tusjs-${proto}-whole.bin`);
    const { up, log } = await upload(d, { endpoint, protocol: proto });
    expect(methods(log) === 'POST PATCH', 'an empty creation, then one PATCH', log);
    expect(log[0].status === 201 && log[0].offset === '0', 'the creation answered 201 at offset 0', log);
    expect(log.at(-1).offset === String(d.length), 'the completing answer carries the final Upload-Offset', log);
    return { endpoint, url: up.url, data: d };
  };
}
for (const [protocol, restart] of Object.entries(RESTARTS)) {
  const fingerprint = async () => fingerprintOf(protocol);
  CASES[`restart-begin${restart.suffix}`] = async () => {
    const d = bytes(restart.size, restart.seed);
    const endpoint = await mint(restart.name);
    const { up, log } = await upload(
      d,
      { endpoint, protocol, chunkSize: CHUNK, urlStorage: restartStorage(), fingerprint },
      { stopAfterChunks: 2 },
    );
    expect(log.at(-1).offset === String(2 * CHUNK), 'two chunks acknowledged', log);
    return { endpoint, url: up.url, data: d, partial: true };
  };
  CASES[`restart-finish${restart.suffix}`] = async () => {
    const d = bytes(restart.size, restart.seed);
    const storage = restartStorage();
    const previous = await storage.findUploadsByFingerprint(fingerprintOf(protocol));
    if (previous.length !== 1) throw new Error(`${previous.length} stored uploads for the fingerprint, not 1`);
    const endpoint = previous[0].creationUrl || null;
    const { up, log } = await upload(
      d,
      {
        endpoint: endpoint || previous[0].uploadUrl,
        protocol,
        chunkSize: CHUNK,
        urlStorage: storage,
        fingerprint,
        removeFingerprintOnSuccess: true,
        // the server may be down when this starts, back within a second or two
        retryDelays: [0, 500, 1000, 2000, 4000],
      },
      { beforeStart: (u) => u.resumeFromPreviousUpload(previous[0]) },
    );
    const head = log.find((e) => e.method === 'HEAD' && e.status !== null);
    expect(head && head.status === restart.head, `the HEAD answered ${restart.head}`, log);
    expect(Number(head.offset) >= 2 * CHUNK, 'resumed at the stored offset by HEAD', log);
    expect(!log.some((e) => e.method === 'POST'), 'no new creation', log);
    expect(log.at(-1).offset === String(d.length), 'the completing answer carries the final Upload-Offset', log);
    return { endpoint: previous[0].uploadUrl, url: up.url, data: d, resumed_from: Number(head.offset) };
  };
}
const DEFAULT = ['whole', 'chunked', 'data-during-creation', 'override-patch', 'deferred-length', 'odd-name', 'empty', 'parallel-4', 'ietf-draft-03', 'ietf-draft-05', 'ietf-draft-03-whole', 'ietf-draft-05-whole'];

const names = args.cases ? args.cases.split(',') : DEFAULT;
let failed = 0;
for (const name of names) {
  const fn = CASES[name];
  if (!fn) {
    console.error(`no case ${name}; cases: ${Object.keys(CASES).join(', ')}`);
    process.exit(2);
  }
  const out = { client: 'tus-js-client', case: name };
  const started = Date.now();
  try {
    const { endpoint, url, data, skipped, ...rest } = await fn();
    if (skipped) Object.assign(out, { skipped });
    else Object.assign(out, { ok: true, endpoint, url, size: data.length, sha256: sha256(data), ...rest });
  } catch (err) {
    failed++;
    Object.assign(out, { ok: false, error: String(err && err.message).split('\n')[0].slice(0, 400) });
  }
  out.ms = Date.now() - started;
  console.log(JSON.stringify(out));
}
process.exit(failed ? 1 : 0);
