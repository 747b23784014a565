// What the runner (run.mjs) calls in the page through page.evaluate.
function bytesFor(seed, n) {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
async function sha256Hex(u8) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', u8));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

// Files as a file picker gives them: name, type, size, a fixed lastModified.
async function addFiles(uppy, files) {
  const sent = {};
  for (const f of files) {
    const data = bytesFor(f.seed, f.size);
    sent[f.name] = { size: f.size, sha256: await sha256Hex(data) };
    const file = new File([data], f.name, { type: 'application/octet-stream', lastModified: 1700000000000 + f.seed });
    uppy.addFile({ name: f.name, type: file.type, data: file });
  }
  return sent;
}

function results(uppy, sent) {
  return uppy.getFiles().map((f) => ({
    name: f.name,
    ok: !!(f.progress && f.progress.uploadComplete) && !f.error,
    endpoint: (f.tus && f.tus.endpoint) || null,
    url: (f.response && f.response.uploadURL) || null,
    error: f.error || null,
    ...sent[f.name],
  }));
}

// Uploads `files` to their end (or the deadline).
async function runCase({ api, files, tusOptions = {}, deadlineMs = 45_000 }) {
  const uppy = new window.Uppy({ autoProceed: false });
  window.useSignedTus(uppy, { api, tusOptions });
  const sent = await addFiles(uppy, files);
  const events = [];
  uppy.on('upload-error', (file, err, res) => events.push(`upload-error ${file.name}: ${err && err.message} ${res ? res.status : ''}`));
  let timer;
  const result = await Promise.race([
    uppy.upload(),
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`deadline ${deadlineMs} ms`)), deadlineMs);
    }),
  ]).catch((e) => ({ error: String(e && e.message) }));
  clearTimeout(timer);
  const out = results(uppy, sent);
  uppy.destroy();
  return { files: out, events, error: result && result.error };
}

// Starts `files`; pauses `pauseName` once its first chunk is acknowledged (its
// progress is past one chunk), and sets window.reloadReady once that file is
// paused and every other file is done. The runner then reloads the page.
async function beginBeforeReload({ api, files, pauseName, tusOptions }) {
  const uppy = new window.Uppy({ autoProceed: false });
  window.useSignedTus(uppy, { api, tusOptions });
  const sent = await addFiles(uppy, files);
  let paused = false;
  const settled = new Set();
  const check = () => {
    if (paused && settled.size === files.length - 1) {
      window.beforeReload = results(uppy, sent);
      window.reloadReady = true;
    }
  };
  uppy.on('upload-progress', (file, p) => {
    if (!paused && file.name === pauseName && p.bytesUploaded > tusOptions.chunkSize) {
      paused = true;
      uppy.pauseResume(file.id);
      check();
    }
  });
  uppy.on('upload-success', (file) => {
    if (file.name !== pauseName) settled.add(file.name);
    check();
  });
  uppy.on('upload-error', (file) => {
    settled.add(file.name);
    check();
  });
  uppy.upload();
}

window.runCase = runCase;
window.beginBeforeReload = beginBeforeReload;
