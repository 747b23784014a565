// Peer: the tus reference server for Node (@tus/server + @tus/file-store).
// Usage: PEERS_NODE_DIR=DIR node tus-server.mjs HOST PORT STORE_DIR
// The npm packages are installed outside the repository by scripts/bench.sh, into
// $PEERS_NODE_DIR (a folder with node_modules/@tus/server and node_modules/@tus/file-store).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [host = '127.0.0.1', port = '18081', dir] = process.argv.slice(2);
const nodeDir = process.env.PEERS_NODE_DIR;
if (!dir || !nodeDir) {
  console.error('usage: PEERS_NODE_DIR=DIR node tus-server.mjs HOST PORT STORE_DIR');
  process.exit(2);
}
const req = createRequire(join(nodeDir, 'package.json'));
const load = (name) => import(pathToFileURL(req.resolve(name)).href);
const { Server } = await load('@tus/server');
const { FileStore } = await load('@tus/file-store');

mkdirSync(dir, { recursive: true });
const server = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
server.listen({ host, port: Number(port) }, () => console.error(`tus-node on http://${host}:${port}/files -> ${dir}`));
