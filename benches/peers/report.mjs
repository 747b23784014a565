// The report of a scripts/bench.sh run, from its records.
//
//   node report.mjs RESULTS_DIR                 the markdown report (figures, targets, ratios)
//   node report.mjs RESULTS_DIR --sweep         the sweep as gnuplot data
//   node report.mjs RESULTS_DIR --into FILE.md  the report into FILE.md, between the lines
//                                               <!-- bench:begin --> and <!-- bench:end -->
//
// Records: runs.tsv (one line per run: scenario entry round wall_s client_cpu_s server_cpu_s
// bytes rc other_cpu_s client_report), rss.tsv (scenario server peak_kib), verify.tsv (one
// line per run: scenario entry round ok|MISMATCH|missing|failed|none), verify-ns.tsv
// (criterion: name median lo hi), status.tsv (criterion / node-sign and their exit codes),
// support.tsv (entries left out of a scenario: scenario entry skipped|unsupported why),
// sign.txt (Node's signer), versions.txt.
// Round 0 of a scenario is its warm-up and is left out of the figures. An entry is measured
// only when every one of its runs, warm-up included, exited 0 and stored the bytes it sent
// (or stores none); otherwise its figures, ratios and targets read "not measured" and why.
// Ratios between two entries are taken round by round (both ran in the same round, one
// after the other), then their median.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
const mode = process.argv[3] || '';
const read = (f) => {
  const p = path.join(dir, f);
  if (!fs.existsSync(p)) return [];
  return fs.readFileSync(p, 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('\t'));
};
const text = (f) => (fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f), 'utf8') : '');
const median = (a) => {
  const s = a.filter(Number.isFinite).sort((x, y) => x - y);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const num = (x) => (x === '-' || x === '' || x === undefined ? NaN : Number(x));
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const GiB = 1024 ** 3;

const LABEL = {
  ours: 'example server (FsStorage)',
  'ours-put': 'example server, simple PUT',
  'ours-small': 'example server, 64 MiB session',
  baseline: 'bare hyper baseline (no fsync)',
  nginx: 'nginx WebDAV (no fsync)',
  sink: 'sink (discards)',
  'tus-node': 'Node tus server (1 in flight)',
  rustus: 'rustus',
  'rustus-seq': 'rustus, 1 in flight',
  'dd-fsync': 'dd bs=1M conv=fsync',
  'dd-nofsync': 'dd bs=1M (no fsync)',
  'tcp-raw': 'raw loopback TCP (socat)',
};
// in the tus scenarios every tus server gets the same client (tus-js-client)
const TUS_LABEL = {
  ours: 'example server (FsStorage, syncs before answering)',
  rustus: 'rustus (does not sync)',
  'tus-node': 'Node tus server (does not sync)',
  'tus-node-one': 'Node tus server, one PATCH (reference: it takes no parts)',
};
const label = (scn, e) => (scn.startsWith('tus-') && TUS_LABEL[e]) || LABEL[e] || e;
const SCENARIO = {
  limits: 'physical limits',
  'simple-new': 'simple PUT, new path',
  'simple-replace': 'simple PUT over an existing file',
  'chunk-seq': '16 MiB chunks, 1 in flight',
  'chunk-par4': '16 MiB chunks, 4 in flight',
  complete: 'completion (16 MiB chunks, 4 in flight)',
  many: '200 concurrent 1 MiB PUTs',
  small: '16 KiB PUTs, 64 in flight',
  'tus-one': 'tus (tus-js-client): one PATCH',
  'tus-seq': 'tus (tus-js-client): 16 MiB PATCHes, one at a time',
  'tus-par4': 'tus (tus-js-client): 4 parts in parallel, one PATCH each',
};
const ORDER = Object.keys(SCENARIO);

// ---- runs
const runs = [];
for (const [scenario, entry, round, wall, ccpu, scpu, bytes, rc, other, report] of read('runs.tsv')) {
  let rep = null;
  try { rep = report && report !== '-' ? JSON.parse(report) : null; } catch { rep = null; }
  runs.push({ scenario, entry, round: Number(round), wall: num(wall), ccpu: num(ccpu), scpu: num(scpu), bytes: Number(bytes), ok: rc === '0', other: num(other), rep });
}
// each run's check of what it stored, and why an entry is not measured (null: it is)
const stored = new Map(read('verify.tsv').map(([s, e, round, v]) => [`${s}\t${e}\t${round}`, v]));
const support = new Map(read('support.tsv').map(([s, e, kind, why]) => [`${s}\t${e}`, { kind, why }]));
function unmeasured(scn, e) {
  const left = support.get(`${scn}\t${e}`);
  if (left) return left.kind === 'unsupported' ? `not supported: ${left.why}` : `not run: ${left.why}`;
  const all = runs.filter((r) => r.scenario === scn && r.entry === e);
  if (!all.some((r) => r.round > 0 || scn === 'sweep')) return 'no timed run';
  const failed = all.filter((r) => !r.ok);
  if (failed.length) return `${failed.length} of ${all.length} runs failed (rounds ${failed.map((r) => r.round).join(', ')})`;
  const bad = all.filter((r) => !['ok', 'none'].includes(stored.get(`${scn}\t${e}\t${r.round}`)));
  if (bad.length) return `stored bytes not right in ${bad.length} of ${all.length} runs (${bad.map((r) => `round ${r.round}: ${stored.get(`${scn}\t${e}\t${r.round}`) || 'not checked'}`).join(', ')})`;
  return null;
}
const timed = (scn, e) => runs.filter((r) => r.scenario === scn && r.entry === e && r.ok && (r.round > 0 || scn === 'sweep'));
const byRound = (scn, e) => new Map(timed(scn, e).map((r) => [r.round, r]));
const rss = new Map(read('rss.tsv').map(([s, srv, kib]) => [`${s}\t${srv}`, num(kib)]));
const serverOf = (e) => (e.startsWith('ours') ? 'ours' : e.startsWith('rustus') ? 'rustus' : e.startsWith('tus-node') ? 'tus-node' : e === 'tcp-raw' ? 'socat' : e);
const completion = (r) => r.rep?.last?.after_body_ms;
// many-client.mjs: how many requests a run made (many, small)
const requestsOf = (r) => (Number.isFinite(r.rep?.requests) ? r.rep.requests : NaN);

function stats(scn, e) {
  if (unmeasured(scn, e)) return null;
  const t = timed(scn, e);
  const wall = median(t.map((r) => r.wall));
  return {
    n: t.length,
    wall,
    lo: Math.min(...t.map((r) => r.wall)),
    hi: Math.max(...t.map((r) => r.wall)),
    mbs: t[0].bytes / wall / 1e6,
    ccpu: median(t.map((r) => r.ccpu)),
    scpu: median(t.map((r) => r.scpu)),
    scpuPerGiB: median(t.map((r) => (r.scpu / r.bytes) * GiB)),
    other: median(t.map((r) => r.other)),
    otherMax: Math.max(...t.map((r) => r.other).filter(Number.isFinite), 0),
    complete: median(t.map(completion)),
    completeAll: median(t.map((r) => r.rep?.last?.ms)),
    // upload-client.mjs range: the other chunks' (202) latency after their last body byte
    chunksAfter: median(t.map((r) => r.rep?.chunks_after_body_ms?.p50)),
    // many-client.mjs: requests per second of wall time, server CPU ms per request
    rps: requestsOf(t[0]) / wall,
    scpuPerReq: median(t.map((r) => (r.scpu / requestsOf(r)) * 1000)),
    p50: median(t.map((r) => r.rep?.latency_ms?.p50)),
    p99: median(t.map((r) => r.rep?.latency_ms?.p99)),
    // tus-client.mjs: the last request answered, from its start to its answer
    lastTus: median(t.map((r) => (r.rep?.last?.method ? r.rep.last.ms : NaN))),
    lastTusMethod: t.find((r) => r.rep?.last?.method)?.rep.last.method,
    bytes: t[0].bytes,
  };
}

// per-round ratio of a value of entry A over entry B in one scenario (rounds where both ran)
function ratio(scn, a, b, value) {
  const ra = byRound(scn, a);
  const rb = byRound(scn, b);
  const out = [];
  for (const [round, x] of ra) {
    const y = rb.get(round);
    if (y) out.push(value(x, y));
  }
  return { median: median(out), n: out.length, all: out };
}
const thr = (x, y) => y.wall / x.wall; // throughput of x over y (same bytes)

if (mode === '--sweep') {
  const rows = [];
  const simple = stats('simple-new', 'ours');
  const base = stats('simple-new', 'baseline');
  rows.push('# chunk_MiB  MB/s_1_in_flight  MB/s_2  MB/s_4  simple_PUT_ours  simple_PUT_baseline');
  for (const c of [4, 8, 16, 32]) {
    const v = [1, 2, 4].map((p) => stats('sweep', `ours-c${c}-p${p}`)?.mbs);
    rows.push([c, ...v, simple?.mbs, base?.mbs].map((x) => (Number.isFinite(x) ? x.toFixed(1) : 'NaN')).join(' '));
  }
  console.log(rows.join('\n'));
  process.exit(0);
}

const out = [];
const versions = text('versions.txt').trim();
const commit = versions.match(/^commit: (.*)$/m)?.[1] || 'unknown (the run recorded none)';
out.push(`Measured at commit ${commit}.`);
out.push('');
out.push('Machine and versions, as the run recorded them:');
out.push('');
out.push('```');
out.push(versions);
out.push('```');
out.push('');

// ---- targets
// A target is judged only on entries this run measured; otherwise it reads "not measured".
const mark = (ok) => (ok === undefined || ok === null || Number.isNaN(ok) ? '–' : ok ? '**met**' : '**missed**');
const targets = [];
const status = read('status.tsv');
const statusOk = (what) => status.some(([w]) => w === what) && status.filter(([w]) => w === what).every(([, rc]) => rc === '0');
const missingOf = (...pairs) => pairs.map(([scn, e]) => [scn, e, unmeasured(scn, e)]).filter(([, , why]) => why).map(([scn, e, why]) => `${label(scn, e)} in ${SCENARIO[scn] || scn}: ${why}`);
const target = (label, missing, row) => targets.push(missing.length ? [label, `not measured (${missing.join('; ')})`, '', '**not measured**'] : [label, ...row()]);
const vns = new Map(read('verify-ns.tsv').map(([n, m, lo, hi]) => [n, { m: num(m), lo: num(lo), hi: num(hi) }]));
const signTxt = text('sign.txt');
const nodeNs = (variant) => median([...signTxt.matchAll(new RegExp(`^${variant}: median (\\d+) ns`, 'gm'))].map((m) => Number(m[1])));
const nodeFixed = nodeNs('fixed');
const nodeVerify = nodeNs('verify');
const ourValid = vns.get('valid')?.m;
const ourInvalid = vns.get('invalid')?.m;
const criterionMissing = statusOk('criterion') && Number.isFinite(ourValid) && Number.isFinite(ourInvalid) ? [] : ['criterion did not run, failed, or left no estimates'];
const nodeMissing = statusOk('node-sign') && Number.isFinite(nodeFixed) && Number.isFinite(nodeVerify) ? [] : ["Node's signer did not run or failed"];
target('verification ≤ 300 ns', criterionMissing, () => [`${f(ourValid, 0)} ns (valid), ${f(ourInvalid, 0)} ns (forged)`, '', mark(ourValid <= 300 && ourInvalid <= 300)]);
// For reference only: the former "10× Node's signer" target is retired (it bought
// nanoseconds nobody can see at the price of hand-written crypto).
target('verification against Node\'s signer (reference, no target)', [...criterionMissing, ...nodeMissing], () => [`Node: ${f(nodeFixed, 0)} ns to sign, ${f(nodeVerify, 0)} ns to sign + compare`, `${f(nodeFixed / ourValid, 1)}× (sign), ${f(nodeVerify / ourValid, 1)}× (sign + compare)`, 'reference']);
const sn = (e) => stats('simple-new', e);
target('simple PUT ≥ 0.9× the bare hyper baseline', missingOf(['simple-new', 'ours'], ['simple-new', 'baseline']), () => {
  const r = ratio('simple-new', 'ours', 'baseline', thr);
  return [`${f(sn('ours').mbs, 0)} vs ${f(sn('baseline').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 0.9)];
});
target('server CPU per GiB ≤ nginx\'s (simple PUT, new path)', missingOf(['simple-new', 'ours'], ['simple-new', 'nginx']), () => {
  const r = ratio('simple-new', 'ours', 'nginx', (x, y) => x.scpu / y.scpu);
  return [`${f(sn('ours').scpuPerGiB)} vs ${f(sn('nginx').scpuPerGiB)} s/GiB`, `${f(r.median)}×`, mark(r.median <= 1)];
});
const cs = (e) => stats('chunk-seq', e);
target(`${SCENARIO['chunk-seq']}: ≥ 1.2× rustus`, missingOf(['chunk-seq', 'ours'], ['chunk-seq', 'rustus']), () => {
  const r = ratio('chunk-seq', 'ours', 'rustus', thr);
  return [`${f(cs('ours').mbs, 0)} vs ${f(cs('rustus').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 1.2)];
});
const cp = (e) => stats('chunk-par4', e);
target(`${SCENARIO['chunk-par4']}: ≥ 0.8× our simple PUT (same rounds)`, missingOf(['chunk-par4', 'ours'], ['chunk-par4', 'ours-put']), () => {
  const r = ratio('chunk-par4', 'ours', 'ours-put', thr);
  return [`${f(cp('ours').mbs, 0)} vs ${f(cp('ours-put').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 0.8)];
});
target(`${SCENARIO['chunk-par4']}: ≥ 2× the Node tus server (its best: 1 in flight)`, missingOf(['chunk-par4', 'ours'], ['chunk-par4', 'tus-node']), () => {
  const r = ratio('chunk-par4', 'ours', 'tus-node', thr);
  return [`${f(cp('ours').mbs, 0)} vs ${f(cp('tus-node').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 2)];
});
// the faster of rustus's two ways, round by round: both ways must have been measured
target(`${SCENARIO['chunk-par4']}: ≥ 1.5× rustus (its faster way, 4 parts or 1 in flight, round by round)`, missingOf(['chunk-par4', 'ours'], ['chunk-par4', 'rustus'], ['chunk-par4', 'rustus-seq']), () => {
  const best = new Map();
  for (const e of ['rustus', 'rustus-seq']) for (const [round, x] of byRound('chunk-par4', e)) if (!best.has(round) || x.wall < best.get(round).wall) best.set(round, x);
  const vals = [];
  for (const [round, x] of byRound('chunk-par4', 'ours')) if (best.has(round)) vals.push(best.get(round).wall / x.wall);
  const bestMbs = Math.max(cp('rustus').mbs, cp('rustus-seq').mbs);
  return [`${f(cp('ours').mbs, 0)} vs ${f(bestMbs, 0)} MB/s`, `${f(median(vals))}×`, mark(median(vals) >= 1.5)];
});
const bigMiB = (runs.find((r) => r.scenario === 'complete' && r.entry === 'ours')?.bytes || 0) / 2 ** 20;
target(`completing ${bigMiB ? `${f(bigMiB, 0)} MiB` : 'the big file'} ≤ 2× completing 64 MiB`, missingOf(['complete', 'ours'], ['complete', 'ours-small']), () => {
  const cs = stats('complete', 'ours-small');
  const cb = stats('complete', 'ours');
  const r = ratio('complete', 'ours', 'ours-small', (x, y) => completion(x) / completion(y));
  return [`last chunk answered ${f(cb.complete, 0)} vs ${f(cs.complete, 0)} ms after its last byte`, `${f(r.median)}×`, mark(r.median <= 2)];
});
// many uploads at once (many-client.mjs): against nginx in the same rounds
const p99 = (r) => r.rep?.latency_ms?.p99;
const mn = (e) => stats('many', e);
const manyMissing = () => missingOf(['many', 'ours'], ['many', 'nginx']);
target(`${SCENARIO.many}: throughput ≥ nginx's`, manyMissing(), () => {
  const r = ratio('many', 'ours', 'nginx', thr);
  return [`${f(mn('ours').mbs, 0)} vs ${f(mn('nginx').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 1)];
});
target(`${SCENARIO.many}: p99 latency ≤ nginx's`, manyMissing(), () => {
  const r = ratio('many', 'ours', 'nginx', (x, y) => p99(x) / p99(y));
  return [`${f(mn('ours').p99, 0)} vs ${f(mn('nginx').p99, 0)} ms`, `${f(r.median)}×`, mark(r.median <= 1)];
});
target(`${SCENARIO.many}: server CPU per GiB ≤ nginx's`, manyMissing(), () => {
  const r = ratio('many', 'ours', 'nginx', (x, y) => x.scpu / y.scpu);
  return [`${f(mn('ours').scpuPerGiB)} vs ${f(mn('nginx').scpuPerGiB)} s/GiB`, `${f(r.median)}×`, mark(r.median <= 1)];
});
const sm = (e) => stats('small', e);
const smallMissing = () => missingOf(['small', 'ours'], ['small', 'nginx']);
target(`${SCENARIO.small}: requests per second ≥ nginx's`, smallMissing(), () => {
  const r = ratio('small', 'ours', 'nginx', thr);
  return [`${f(sm('ours').rps, 0)} vs ${f(sm('nginx').rps, 0)} requests/s`, `${f(r.median)}×`, mark(r.median >= 1)];
});
target(`${SCENARIO.small}: server CPU per request against nginx's (reference, no target)`, smallMissing(), () => {
  const r = ratio('small', 'ours', 'nginx', (x, y) => x.scpu / y.scpu);
  return [`${f(sm('ours').scpuPerReq, 3)} vs ${f(sm('nginx').scpuPerReq, 3)} ms/request`, `${f(r.median)}×`, 'reference'];
});
target(`${SCENARIO.small}: p99 latency against nginx's (reference, no target)`, smallMissing(), () => {
  const r = ratio('small', 'ours', 'nginx', (x, y) => p99(x) / p99(y));
  return [`${f(sm('ours').p99, 1)} vs ${f(sm('nginx').p99, 1)} ms`, `${f(r.median)}×`, 'reference'];
});
// tus: the same client against every tus server
const wallDiff = (scn, a, b) => ratio(scn, a, b, (x, y) => x.wall - y.wall).median;
const ddNote = (scn) => {
  const miss = missingOf([scn, 'dd-fsync'], [scn, 'dd-nofsync']);
  if (miss.length) return `dd not measured (${miss.join('; ')})`;
  return `beside it, same bytes, same rounds: dd conv=fsync ${f(stats(scn, 'dd-fsync').wall)} s, dd ${f(stats(scn, 'dd-nofsync').wall)} s (the flush, dd conv=fsync − dd: ${f(wallDiff(scn, 'dd-fsync', 'dd-nofsync'))} s)`;
};
for (const scn of ['tus-one', 'tus-seq', 'tus-par4']) {
  const st = (e) => stats(scn, e);
  target(`${SCENARIO[scn]}: ≥ 2× the Node tus server`, missingOf([scn, 'ours'], [scn, 'tus-node']), () => {
    const r = ratio(scn, 'ours', 'tus-node', thr);
    return [`${f(st('ours').mbs, 0)} vs ${f(st('tus-node').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 2)];
  });
  if (scn === 'tus-par4') {
    target(`${SCENARIO[scn]}: against the Node tus server's one PATCH in the same rounds (reference, no target)`, missingOf([scn, 'ours'], [scn, 'tus-node-one']), () => {
      const r = ratio(scn, 'ours', 'tus-node-one', thr);
      return [`${f(st('ours').mbs, 0)} vs ${f(st('tus-node-one').mbs, 0)} MB/s`, `${f(r.median)}×`, 'reference'];
    });
    target(`${SCENARIO[scn]}: ≥ 1.5× rustus`, missingOf([scn, 'ours'], [scn, 'rustus']), () => {
      const r = ratio(scn, 'ours', 'rustus', thr);
      return [`${f(st('ours').mbs, 0)} vs ${f(st('rustus').mbs, 0)} MB/s`, `${f(r.median)}×`, mark(r.median >= 1.5)];
    });
  } else {
    target(`${SCENARIO[scn]}: ≥ 1× rustus (on par)`, missingOf([scn, 'ours'], [scn, 'rustus']), () => {
      const r = ratio(scn, 'ours', 'rustus', thr);
      return [`${f(st('ours').mbs, 0)} vs ${f(st('rustus').mbs, 0)} MB/s (${f(st('ours').wall)} vs ${f(st('rustus').wall)} s; ours − rustus: ${f(wallDiff(scn, 'ours', 'rustus'))} s); ${ddNote(scn)}`, `${f(r.median)}×`, mark(r.median >= 1)];
    });
  }
}
for (const scn of ['simple-new', 'simple-replace', 'chunk-seq', 'chunk-par4', 'many', 'small', 'tus-one', 'tus-seq', 'tus-par4']) {
  const kib = rss.get(`${scn}\tours`);
  const missing = missingOf([scn, 'ours']);
  if (!missing.length && !Number.isFinite(kib)) missing.push('no peak RSS recorded');
  target(`server peak RSS ≤ 64 MiB: ${SCENARIO[scn]}`, missing, () => [`${f(kib / 1024, 1)} MiB`, '', mark(kib / 1024 <= 64)]);
}
out.push('### Targets');
out.push('');
out.push('Ratios are medians of round-by-round ratios: both systems ran in the same round, one right after the other.');
out.push('');
out.push('| target | measured | ratio | |');
out.push('|---|---|---|---|');
for (const t of targets) out.push(`| ${t.join(' | ')} |`);
out.push('');

// ---- figures
out.push('### Figures');
out.push('');
out.push('Medians of the timed runs (after one warm-up). MB/s = 10^6 bytes per second of wall time of the client command. Server CPU = user + system seconds of the server process (and its children) during the run, from /proc; peak RSS = VmHWM over the whole scenario (each scenario starts its servers afresh). "other CPU" = CPU seconds the rest of the machine used during a run (median, max).');
out.push('');
out.push('Only entries whose every run (warm-up included) exited 0 and, where it stores a file, stored the bytes it sent (compared after each run) have figures; the others read "not measured" and why.');
out.push('');
out.push('| scenario | system | runs | median s | min–max s | MB/s | client CPU s | server CPU s | server CPU s/GiB | server peak RSS MiB | other CPU s | more | stored bytes |');
out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
// what the stored-bytes checks of a measured entry found: every run ok, or nothing stored
const storedNote = (scn, e) => {
  const v = runs.filter((r) => r.scenario === scn && r.entry === e).map((r) => stored.get(`${scn}\t${e}\t${r.round}`));
  if (v.every((x) => x === 'none')) return ['many', 'small'].includes(scn) ? `every answer 2xx, ${v.length} of ${v.length} runs (bytes not compared)` : '– (stores none)';
  return `identical, ${v.length} of ${v.length} runs`;
};
const entries = [];
const listed = [...runs.map((r) => [r.scenario, r.entry]), ...[...support.keys()].map((k) => k.split('\t'))];
for (const [scn, e] of listed) if (scn !== 'sweep' && !entries.some(([s, x]) => s === scn && x === e)) entries.push([scn, e]);
entries.sort((a, b) => ORDER.indexOf(a[0]) - ORDER.indexOf(b[0]));
for (const [scn, e] of entries) {
  const s = stats(scn, e);
  if (!s) { out.push(`| ${SCENARIO[scn] || scn} | ${label(scn, e)} | not measured: ${unmeasured(scn, e)} | | | | | | | | | | |`); continue; }
  const kib = rss.get(`${scn}\t${serverOf(e)}`);
  let more = '';
  if (Number.isFinite(s.complete)) more = `last chunk: ${f(s.completeAll, 0)} ms, ${f(s.complete, 0)} ms after its body`;
  if (['chunk-seq', 'chunk-par4'].includes(scn) && e === 'ours' && Number.isFinite(s.chunksAfter)) more += `; other chunks: p50 ${f(s.chunksAfter, 1)} ms after their body`;
  if (Number.isFinite(s.p99)) more = `latency p50 ${f(s.p50, 0)} ms, p99 ${f(s.p99, 0)} ms`;
  if (scn === 'small' && Number.isFinite(s.p99)) more = `${f(s.rps, 0)} requests/s; latency p50 ${f(s.p50, 1)} ms, p99 ${f(s.p99, 1)} ms; server CPU ${f(s.scpuPerReq, 3)} ms/request`;
  if (Number.isFinite(s.lastTus)) more = `last request (${s.lastTusMethod}): ${f(s.lastTus, 0)} ms`;
  const d = s.wall < 1 ? 3 : 2;
  out.push(`| ${SCENARIO[scn] || scn} | ${label(scn, e)} | ${s.n} | ${f(s.wall, d)} | ${f(s.lo, d)}–${f(s.hi, d)} | ${f(s.mbs, 0)} | ${f(s.ccpu)} | ${f(s.scpu)} | ${f(s.scpuPerGiB)} | ${Number.isFinite(kib) ? f(kib / 1024, 1) : '–'} | ${f(s.other)} (${f(s.otherMax)}) | ${more} | ${storedNote(scn, e)} |`);
}
out.push('');

// ---- more ratios
const more = [];
const others = [];
const addRatio = (scn, a, b, what, value = thr, into = more, name = '') => {
  if (!stats(scn, a) || !stats(scn, b)) return;
  const r = ratio(scn, a, b, value);
  into.push(`| ${SCENARIO[scn]} |${name ? ` ${name}:` : ''} ${label(scn, a)} ÷ ${label(scn, b)} | ${f(r.median)}× | ${r.all.map((x) => f(x)).join(' ')} | ${what || ''} |`);
};
addRatio('simple-new', 'ours', 'baseline');
addRatio('simple-new', 'ours', 'nginx');
addRatio('simple-new', 'baseline', 'nginx');
addRatio('simple-new', 'ours', 'sink', 'the client alone, no disk');
addRatio('simple-replace', 'ours', 'baseline');
addRatio('simple-replace', 'ours', 'nginx');
addRatio('chunk-seq', 'ours', 'tus-node');
addRatio('chunk-seq', 'ours', 'rustus');
addRatio('chunk-seq', 'ours', 'sink', 'the client alone, no disk');
addRatio('chunk-par4', 'ours', 'rustus');
addRatio('chunk-par4', 'ours', 'rustus-seq');
addRatio('chunk-par4', 'ours', 'sink', 'the client alone, no disk');
for (const scn of ['tus-one', 'tus-seq', 'tus-par4']) {
  addRatio(scn, 'ours', 'rustus');
  addRatio(scn, 'ours', 'tus-node');
  addRatio(scn, 'ours', 'tus-node-one');
  addRatio(scn, 'ours', 'dd-fsync', 'dd conv=fsync of the same bytes');
}
addRatio('many', 'ours', 'baseline');
addRatio('many', 'ours', 'nginx');
addRatio('small', 'ours', 'baseline', 'requests per second');
addRatio('small', 'ours', 'nginx', 'requests per second');
for (const scn of ['many', 'small']) {
  for (const b of ['baseline', 'nginx']) {
    addRatio(scn, 'ours', b, 'lower is better', (x, y) => p99(x) / p99(y), others, 'p99 latency');
    addRatio(scn, 'ours', b, 'lower is better', (x, y) => x.scpu / y.scpu, others, 'server CPU');
  }
}
if (more.length) {
  out.push('### Throughput ratios, round by round');
  out.push('');
  out.push('| scenario | pair | median | each round | |');
  out.push('|---|---|---|---|---|');
  out.push(...more);
  out.push('');
}
if (others.length) {
  out.push('### Latency and CPU ratios, round by round');
  out.push('');
  out.push('Server CPU over the same number of requests and bytes: the ratio of CPU per request and per GiB.');
  out.push('');
  out.push('| scenario | pair | median | each round | |');
  out.push('|---|---|---|---|---|');
  out.push(...others);
  out.push('');
}

// ---- sweep
const sweepRows = [];
for (const p of [1, 2, 4]) {
  const v = [4, 8, 16, 32].map((c) => stats('sweep', `ours-c${c}-p${p}`));
  if (v.some(Boolean)) sweepRows.push(`| ${p} | ${v.map((s) => (s ? `${f(s.mbs, 0)} (${f(s.scpuPerGiB)} s/GiB)` : '–')).join(' | ')} |`);
}
if (sweepRows.length) {
  const n = stats('sweep', 'ours-c16-p4')?.n;
  out.push(`### Sweep: example server, ${f((runs.find((r) => r.scenario === 'sweep')?.bytes || 0) / 2 ** 20, 0)} MiB in chunks, MB/s (server CPU per GiB), median of ${n} runs`);
  out.push('');
  out.push('| in flight | 4 MiB | 8 MiB | 16 MiB | 32 MiB |');
  out.push('|---|---|---|---|---|');
  out.push(...sweepRows);
  out.push('');
}
if (signTxt) {
  out.push('Node\'s signer (`benches/peers/sign-bench.mjs`, one line per process):');
  out.push('');
  out.push('```');
  out.push(...signTxt.split('\n').filter((l) => /^(node|fixed|built|verify):? /.test(l) || /^(fixed|built|verify):/.test(l)));
  out.push('```');
  out.push('');
}
const report = out.join('\n');

if (mode === '--into') {
  const file = process.argv[4];
  if (!/^mode: full,/m.test(versions)) throw new Error(`${dir} is not a full run (see its versions.txt): ${file} is left as it is`);
  const doc = fs.readFileSync(file, 'utf8');
  const begin = '<!-- bench:begin -->';
  const end = '<!-- bench:end -->';
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) throw new Error(`${file} has no ${begin} … ${end} section`);
  fs.writeFileSync(file, `${doc.slice(0, i + begin.length)}\n<!-- written by scripts/bench.sh; do not edit by hand -->\n\n${report}\n${doc.slice(j)}`);
} else {
  console.log(report);
}
