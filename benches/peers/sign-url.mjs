// Print a signed URL exactly as the crate signs them (the README's Node.js snippet):
//   node sign-url.mjs BASE_URL PATH KEY [put|get] [TTL_SECONDS=3600]
import crypto from 'node:crypto';
const [base, path, key, method = 'put', ttl = '3600'] = process.argv.slice(2);
if (!base || !path || !key) { console.error('usage: node sign-url.mjs BASE_URL PATH KEY [put|get] [TTL]'); process.exit(2); }
const s = `${path}?expiry=${Math.floor(Date.now() / 1000) + Number(ttl)}&method=${method}`;
console.log(`${base.replace(/\/$/, '')}/${s}&signature=${crypto.createHmac('sha256', key).update(s).digest('base64url')}`);
