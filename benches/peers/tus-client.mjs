// The tus client of the benchmarks: tus-js-client (Node), the same for every tus server.
//
//   PEERS_NODE_DIR=DIR node tus-client.mjs ENDPOINT FILE [--chunk BYTES] [--parallel N]
//                                          [--deadline-s SECONDS]
//
// ENDPOINT is the tus creation URL (a signed URL, or a tus server's /files). The file is
// given to tus-js-client as an fs.ReadStream of its path, so each PATCH body streams from
// the file and the client holds no whole part in memory. Without --chunk, tus-js-client
// sends the whole file (or part) in one PATCH (its default); with --chunk, in PATCHes of
// that many bytes, one at a time. --parallel N > 1 is tus-js-client's `parallelUploads`:
// N partial uploads (`Upload-Concat: partial`) at once, then the final one.
// No retries: a failed request fails the run. tus-js-client is loaded from
// $PEERS_NODE_DIR/node_modules (scripts/bench.sh installs it there, pinned).
//
// Prints one JSON line: {location, requests: {METHOD: count}, last: {method, ms}, bytes,
// seconds}, where `last` is the last request answered (the final upload's POST with parts,
// else the last PATCH) and `ms` the time from its start to its answer; exits 1 on any
// error, or when the whole upload takes longer than --deadline-s (default 300).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const [endpoint, file] = argv;
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const nodeDir = process.env.PEERS_NODE_DIR;
if (!endpoint || !file || !nodeDir) {
  console.error('usage: PEERS_NODE_DIR=DIR node tus-client.mjs ENDPOINT FILE [--chunk BYTES] [--parallel N] [--deadline-s S]');
  process.exit(2);
}
const tus = createRequire(join(nodeDir, 'package.json'))('tus-js-client');
const chunk = opt('chunk');
const parallel = Number(opt('parallel', 1));
const deadlineMs = Number(opt('deadline-s', 300)) * 1000;
const size = fs.statSync(file).size;

const requests = {};
const started = new WeakMap();
let last = null;
const t0 = process.hrtime.bigint();
const input = fs.createReadStream(file);
try {
  const url = await new Promise((resolve, reject) => {
    const options = {
      endpoint,
      retryDelays: null,
      metadata: { filename: file.split('/').pop() },
      onBeforeRequest: (req) => {
        const m = req.getMethod();
        requests[m] = (requests[m] || 0) + 1;
        started.set(req, process.hrtime.bigint());
      },
      onAfterResponse: (req) => {
        const t = started.get(req);
        if (t !== undefined) last = { method: req.getMethod(), ms: Number(process.hrtime.bigint() - t) / 1e6 };
      },
      onSuccess: () => resolve(upload.url),
      onError: reject,
    };
    if (chunk !== undefined) options.chunkSize = Number(chunk);
    if (parallel > 1) options.parallelUploads = parallel;
    const upload = new tus.Upload(input, options);
    const timer = setTimeout(() => {
      upload.abort(false).catch(() => {});
      reject(new Error(`no success within ${deadlineMs / 1000} s`));
    }, deadlineMs);
    timer.unref();
    upload.start();
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ location: url, requests, last, bytes: size, seconds }));
  process.exit(0);
} catch (err) {
  console.error(`tus upload failed: ${String(err && err.message).split('\n').slice(0, 3).join(' ')}`);
  console.error(JSON.stringify({ requests }));
  process.exit(1);
}
