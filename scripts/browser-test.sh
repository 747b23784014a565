#!/usr/bin/env bash
# Drives the example server's uploader page in headless Chromium: uploads, a
# reload midway through a chunked upload, a screenshot under target/browser/.
# Installs Debian's chromium and playwright-core when missing; safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo build --example server
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/debug/examples/server"

work=$(mktemp -d)
log="$work/server.log"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

env -u SIGNED_UPLOAD_KEYS SIGNED_UPLOAD_KEY=browser-test-key \
  "$server" --addr 127.0.0.1:0 --dir "$work/uploads" >"$log" 2>&1 &
pid=$!
url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n 1 | sed 's/listening on //' || true)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "server exited"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$log"; echo "server did not start"; exit 1; }

mkdir -p "$target_dir/browser"
node tests/browser/upload.mjs --url "$url" --dir "$work/uploads" --screenshot "$target_dir/browser/uploader.png"
