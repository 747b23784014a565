// Uppy's Tus plugin with one signed URL per file, minted by the app's backend
// (here POST /upload-url {"filename"} → {"signedUrl"}, the example server's
// route). That URL is both the tus endpoint and the upload URL. A preprocessor
// puts it in each file's own `tus` options before the upload starts; it is
// remembered per file until it expires, so the same file picked again after
// a page reload keeps its tus fingerprint and resumes where it stopped.
import Tus from '@uppy/tus';

export function useSignedTus(uppy, { api, tusOptions = {} }) {
  uppy.use(Tus, {
    endpoint: '', // every file gets its own below
    retryDelays: [0, 1000, 3000, 5000],
    removeFingerprintOnSuccess: true,
    ...tusOptions,
  });
  const key = (id) => `signed-tus:${id}`;
  const remembered = (id) => {
    try {
      const { url, expiry } = JSON.parse(localStorage.getItem(key(id)));
      return expiry * 1000 > Date.now() + 60_000 ? url : null;
    } catch {
      return null;
    }
  };
  uppy.addPreProcessor((fileIDs) =>
    Promise.all(
      fileIDs.map(async (id) => {
        const file = uppy.getFile(id);
        if (file.tus?.endpoint) return;
        let url = remembered(id);
        if (!url) {
          const res = await fetch(`${api}/upload-url`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ filename: file.name }),
            signal: AbortSignal.timeout(15_000),
          });
          if (!res.ok) throw new Error(`upload-url answered ${res.status}`);
          url = (await res.json()).signedUrl;
          const expiry = Number(new URL(url).searchParams.get('expiry'));
          localStorage.setItem(key(id), JSON.stringify({ url, expiry }));
        }
        uppy.setFileState(id, { tus: { ...file.tus, endpoint: url } });
      }),
    ),
  );
  uppy.on('upload-success', (file) => localStorage.removeItem(key(file.id)));
  return uppy;
}
