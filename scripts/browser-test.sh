#!/usr/bin/env bash
# Drives the example server's uploader page in headless Chromium: uploads, a
# reload midway through a chunked upload, a screenshot under target/browser/.
# Installs Debian's chromium and playwright-core when missing; safe to rerun.
#
#   scripts/browser-test.sh           install what is missing, then the test
#   scripts/browser-test.sh install   install what is missing and check that
#                                     both work; fails naming what does not
#
#   CHROMIUM=PATH         the browser (default /usr/bin/chromium, as the test)
#   BROWSER_TIMEOUT=600   seconds allowed for the test itself
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
case "$mode" in
  test | install) ;;
  *) echo "usage: $0 [install]" >&2; exit 2 ;;
esac

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ] && [ -z "${CHROMIUM:-}" ]; then
  echo "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  { timeout 600 apt-get update -qq && timeout 900 apt-get install -y -qq chromium >/dev/null; } ||
    echo "apt-get install chromium failed" >&2
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && timeout 600 npm ci --no-audit --no-fund --loglevel=error) ||
    echo "npm ci in tests/browser failed" >&2
fi
broken=()
timeout 60 "$chromium" --version >/dev/null 2>&1 || broken+=("chromium ($chromium --version fails)")
(cd tests/browser && timeout 60 node --input-type=module -e "import 'playwright-core'") >/dev/null 2>&1 ||
  broken+=("playwright-core (cannot be imported from tests/browser)")
if [ "${#broken[@]}" -gt 0 ]; then
  echo "browser test cannot run: ${broken[*]}" >&2
  exit 1
fi
[ "$mode" = install ] && exit 0

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
CHROMIUM="$chromium" timeout "${BROWSER_TIMEOUT:-600}" node tests/browser/upload.mjs --url "$url" --dir "$work/uploads" --screenshot "$target_dir/browser/uploader.png"
